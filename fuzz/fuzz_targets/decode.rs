//! Fuzz target `decode`: `FrameSummary::parse` (the one frame parser, also the
//! watcher's), its payload accessors, `attribute` and `attribute_parsed` on
//! arbitrary bytes, as an Ethernet frame and as a bare IP packet. None may
//! panic, the two attributions must agree, and whatever is named must be a
//! real probe.

#![no_main]

use leaktest_wire::{attribute, attribute_parsed, FrameSummary, LinkType, MarkerKeys, RunKey};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // The run of the seed corpus is known, so the header-only path runs too.
    let mut keys = MarkerKeys::with_secret([7; 16]);
    keys.learn(RunKey::open(0x0102030405060708));
    keys.learn(RunKey::shared(&[7; 16], 1));
    for link in [LinkType::Ethernet, LinkType::RawIp] {
        let s = FrameSummary::parse(data, link);
        assert_eq!(s.len, data.len());
        assert!(s.upper_bytes(data).len() <= data.len());
        assert!(s.udp_payload(data).len() <= data.len());
        let a = attribute(data, link, &mut keys);
        assert_eq!(attribute_parsed(data, &s, &mut keys), a);
        if let Some(a) = a {
            // Whatever it names must be a real probe with a consistent seq.
            assert_eq!(a.seq, a.spec.seq());
        }
    }
});
