//! Fuzz target `decode`: `FrameSummary::parse` and `attribute` on arbitrary
//! bytes, as an Ethernet frame and as a bare IP packet. Neither may panic,
//! and random bytes must not decode as a probe of a known run.

#![no_main]

use leaktest_wire::{attribute, FrameSummary, LinkType, MarkerKeys, RunKey};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // The run of the seed corpus is known, so the header-only path runs too.
    let mut keys = MarkerKeys::with_secret([7; 16]);
    keys.learn(RunKey::open(0x0102030405060708));
    keys.learn(RunKey::shared(&[7; 16], 1));
    for link in [LinkType::Ethernet, LinkType::RawIp] {
        let s = FrameSummary::parse(data, link);
        assert_eq!(s.len, data.len());
        if let Some(a) = attribute(data, link, &mut keys) {
            // Whatever it names must be a real probe with a consistent seq.
            assert_eq!(a.seq, a.spec.seq());
        }
    }
});
