//! Fuzz target `decode`: `FrameSummary::parse` (the one frame parser, also the
//! watcher's), its payload accessors, and the attribution steps on arbitrary
//! bytes, as an Ethernet frame and as a bare IP packet. None may panic, the
//! combined `attribute` must agree with its two steps, and whatever is named
//! must be a real probe.

#![no_main]

use leaktest_wire::{
    attribute, attribute_headers, attribute_payload, FrameSummary, LinkType, MarkerKeys, RunKey,
};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    for link in [LinkType::Ethernet, LinkType::RawIp] {
        // The run of the seed corpus is known for every destination the
        // frame has, so the header-only path runs too.
        let s = FrameSummary::parse(data, link);
        let mut keys = MarkerKeys::with_secret([7; 16]);
        for dst in leaktest_wire::decode::header_destinations(&s) {
            keys.learn_target(RunKey::open(0x0102030405060708), dst);
            keys.learn_target(RunKey::shared(&[7; 16], 1), dst);
        }
        assert_eq!(s.len, data.len());
        assert!(s.upper_bytes(data).len() <= data.len());
        assert!(s.udp_payload(data).len() <= data.len());
        assert!(s.tcp_payload(data).len() <= data.len());
        let mut k2 = keys.clone();
        let a = attribute(data, link, &mut keys);
        let two = attribute_payload(data, &s, &mut k2).or_else(|| attribute_headers(&s, &k2));
        assert_eq!(a, two);
        if let Some(a) = a {
            // Whatever it names must be a real probe with a consistent seq.
            assert_eq!(a.seq, a.spec.seq());
        }
    }
});
