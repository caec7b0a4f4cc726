//! Fuzz target `classify`: the watcher's whole per-frame path (the rule
//! table, the Tor flow judge, housekeeping by content, the canary ledger,
//! findings) on arbitrary frames, several per input so that flow state is
//! exercised. Nothing may panic, every frame is decided by exactly one rule,
//! and the counts add up.

#![no_main]

use leaktest_tor::{Allowlist, Roles};
use leaktest_watch::{Classifier, ClassifierConfig, Findings, Frame, LinkType};
use leaktest_wire::canary::{CanaryKey, CanaryLedger};
use leaktest_wire::MarkerKeys;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut tor = Allowlist::new();
    tor.insert_with("203.0.113.9:9001".parse().unwrap(), Roles::OR_PORT);
    tor.insert_with("[2001:db8::9]:443".parse().unwrap(), Roles::BRIDGE_OBFS4);
    tor.insert_with("203.0.113.10:80".parse().unwrap(), Roles::DIR_PORT);
    let mut ledger = CanaryLedger::new(CanaryKey::new([2, 0, 0, 0, 0, 1], [7; 16], 1));
    ledger.mark_sent(0, 0);
    let (allow, _) = leaktest_watch::parse_allow_list(&["udp:198.51.100.0/24:51820", "tls:203.0.113.11:443"]).unwrap();
    for link in [LinkType::Ethernet, LinkType::RawIp] {
        let mut c = Classifier::new(
            ClassifierConfig {
                own_macs: vec![[2, 0, 0, 0, 0, 1]],
                own_nets: vec!["198.51.100.2/24".parse().unwrap(), "2001:db8:1::2/64".parse().unwrap()],
                allow: allow.clone(),
                routes: Default::default(),
                strict: data.first().is_some_and(|b| b & 1 == 1),
            },
            link,
            MarkerKeys::open(),
        )
        .with_canaries(ledger.clone());
        let mut f = Findings::new();
        // Up to 8 frames separated by 0xff 0xfe.
        let frames: Vec<&[u8]> = data.split(|b| *b == 0xfe).take(8).collect();
        for (i, fr) in frames.iter().enumerate() {
            let frame = Frame {
                ts_sec: i as u64,
                ts_nsec: 0,
                data: fr,
                orig_len: fr.len() as u32,
            };
            let d = c.classify(&frame, &tor);
            f.record(&frame, &d);
        }
        assert_eq!(f.classified(), frames.len() as u64);
        assert_eq!(f.packets, frames.len() as u64);
    }
});
