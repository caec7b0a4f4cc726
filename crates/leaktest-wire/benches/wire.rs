//! Speed of the pure packet code, printed as figures (no assertions):
//! `cargo bench -p leaktest-wire --bench wire`.
//!
//! The machine is shared, so each figure is measured over many short
//! batches (about 2,000 operations each) and reported as the fastest batch
//! (the cost when the thread is not preempted) and the median batch.

use leaktest_wire::marker::{MAGIC, MARKER_LEN};
use leaktest_wire::{
    attribute, Endpoints, Family, FrameSummary, LinkType, MarkerKeys, ProbeBuilder, ProbeSpec,
    RunKey, Suite, L2, MAX_PROBE_FRAME,
};
use std::hint::black_box;
use std::time::Instant;

const BATCH: usize = 2000;

/// Runs `op(i)` for i over `0..n` in batches; prints ns/op of the fastest
/// and the median batch.
fn measure(what: &str, n: usize, mut op: impl FnMut(usize)) {
    let mut per_op = Vec::new();
    let mut i = 0;
    while i < n {
        let end = (i + BATCH).min(n);
        let t = Instant::now();
        for j in i..end {
            op(j);
        }
        per_op.push(t.elapsed().as_secs_f64() * 1e9 / (end - i) as f64);
        i = end;
    }
    per_op.sort_by(f64::total_cmp);
    println!(
        "{what:<30} {n:>8} ops  best {:>6.1} ns/op  median {:>6.1} ns/op  ({:.2} M/s at best)",
        per_op[0],
        per_op[per_op.len() / 2],
        1e3 / per_op[0]
    );
}

fn main() {
    let ends = Endpoints {
        src4: Some("10.152.152.11".parse().unwrap()),
        dst4: Some("203.0.113.7".parse().unwrap()),
        src6: Some("fd19:c33d:88bc::11".parse().unwrap()),
        dst6: Some("2001:db8::7".parse().unwrap()),
    };
    let l2 = L2 {
        src: [2, 0, 0, 0, 0, 1],
        dst: [2, 0, 0, 0, 0, 2],
    };
    let key = RunKey::open(42);
    let b = ProbeBuilder::new(key, ends, Some(l2));
    let specs: Vec<ProbeSpec> = Family::BOTH
        .into_iter()
        .flat_map(|f| {
            Suite::ALL
                .into_iter()
                .flat_map(move |s| ProbeSpec::all(f, s))
        })
        .collect();

    // The two MACs every probe needs.
    measure("payload_marker", specs.len(), |i| {
        black_box(key.payload_marker(black_box(specs[i].seq())));
    });
    measure("header_tag", specs.len(), |i| {
        black_box(key.header_tag(black_box(specs[i].seq())));
    });

    // Build: the sender's per-probe cost, whole catalogue.
    let mut buf = [0u8; MAX_PROBE_FRAME];
    measure("build (whole catalogue)", specs.len(), |i| {
        black_box(b.write(black_box(&specs[i]), &mut buf));
        black_box(&buf);
    });

    // Parse and attribute: the watcher's per-frame cost, on every 7th probe.
    let frames: Vec<Vec<u8>> = specs
        .iter()
        .step_by(7)
        .map(|s| {
            let n = b.write(s, &mut buf);
            buf[..n].to_vec()
        })
        .collect();
    measure("parse", frames.len(), |i| {
        black_box(FrameSummary::parse(
            black_box(&frames[i]),
            LinkType::Ethernet,
        ));
    });
    let mut keys = MarkerKeys::open();
    let mut hits = 0;
    measure("attribute (payload marker)", frames.len(), |i| {
        hits += attribute(black_box(&frames[i]), LinkType::Ethernet, &mut keys).is_some() as usize;
    });
    println!("  {hits} of {} attributed", frames.len());

    // Header-only path: markers wiped, run known (learnt above).
    let wiped: Vec<Vec<u8>> = frames
        .iter()
        .map(|f| {
            let mut f = f.clone();
            if let Some(m) = memchr::memmem::find(&f, &MAGIC) {
                f[m..m + MARKER_LEN].fill(0);
            }
            f
        })
        .collect();
    let mut hits = 0;
    measure("attribute (header only)", wiped.len(), |i| {
        hits += attribute(black_box(&wiped[i]), LinkType::Ethernet, &mut keys).is_some() as usize;
    });
    println!("  {hits} of {} attributed", wiped.len());

    // Frames that are no probe (most of a watcher's traffic), no run known yet:
    // short frames are parsed (a NAT-rewritten ip-suite probe is short), long
    // ones (Tor cells) only searched for the marker.
    let short: Vec<Vec<u8>> = wiped.iter().take(20000).cloned().collect();
    let long: Vec<Vec<u8>> = short
        .iter()
        .map(|f| {
            let mut f = f.clone();
            f.extend((0..540u32).map(|i| (i.wrapping_mul(2654435761) >> 24) as u8));
            f
        })
        .collect();
    let mut none = MarkerKeys::open();
    measure("attribute (no probe, short)", short.len(), |i| {
        black_box(attribute(
            black_box(&short[i]),
            LinkType::Ethernet,
            &mut none,
        ));
    });
    measure("attribute (no probe, 600 B)", long.len(), |i| {
        black_box(attribute(
            black_box(&long[i]),
            LinkType::Ethernet,
            &mut none,
        ));
    });
}
