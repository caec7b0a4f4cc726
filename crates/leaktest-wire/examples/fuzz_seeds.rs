//! Writes the decoder fuzz target's seed corpus (`fuzz/seeds/decode`): one
//! Ethernet frame of every probe shape of the catalogue, both families, under
//! the open key of run 0x0102030405060708 (the run the fuzz target knows).
//!
//! `cargo run -p leaktest-wire --example fuzz_seeds [DIR]`; the test
//! `fuzz_seeds_cover_every_probe_shape` checks the committed corpus.

use leaktest_wire::catalogue::{Family, ProbeSpec, Suite};
use leaktest_wire::{Endpoints, Neighbourhood, ProbeBuilder, RunKey, L2, MAX_PROBE_FRAME};
use std::collections::BTreeSet;
use std::path::PathBuf;

fn main() -> std::io::Result<()> {
    let dir: PathBuf = std::env::args()
        .nth(1)
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("fuzz/seeds/decode"));
    std::fs::create_dir_all(&dir)?;
    let ends = Endpoints {
        src4: Some("10.152.152.11".parse().unwrap()),
        dst4: Some("203.0.113.7".parse().unwrap()),
        src6: Some("fd19:c33d:88bc::11".parse().unwrap()),
        dst6: Some("2001:db8::7".parse().unwrap()),
    };
    let hood = Neighbourhood {
        gateway4: Some("10.152.152.10".parse().unwrap()),
        gateway6: Some("fd19:c33d:88bc::10".parse().unwrap()),
        prefix4: Some(18),
        prefix6: Some(64),
        uplink4: Some(("192.0.2.2".parse().unwrap(), 24)),
        uplink6: Some(("2001:db8:1::2".parse().unwrap(), 64)),
        router4: Some("192.0.2.1".parse().unwrap()),
        router6: Some("2001:db8:1::1".parse().unwrap()),
    };
    let l2 = L2 {
        src: [2, 0, 0, 0, 0, 1],
        dst: [2, 0, 0, 0, 0, 2],
    };
    let b = ProbeBuilder::new(RunKey::open(0x0102030405060708), ends, Some(l2))
        .with_neighbourhood(hood);
    let mut shapes = BTreeSet::new();
    let mut buf = [0u8; MAX_PROBE_FRAME];
    let mut written = 0;
    for family in Family::BOTH {
        for suite in Suite::ALL {
            for spec in ProbeSpec::all(family, suite) {
                if !shapes.insert(spec.shape()) {
                    continue;
                }
                let n = b.write(&spec, &mut buf);
                if n == 0 {
                    continue;
                }
                let name = format!("probe-{}-{:08x}", suite.name(), spec.seq());
                std::fs::write(dir.join(name), &buf[..n])?;
                written += 1;
            }
        }
    }
    eprintln!("{written} seed frames in {}", dir.display());
    Ok(())
}
