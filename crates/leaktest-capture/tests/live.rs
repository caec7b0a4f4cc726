//! Live capture tests in a network namespace this test creates (a veth pair
//! made inside it, no link to any real interface; deleted on drop).
//! Needs root: without it they say so and pass, unless `LEAKTEST_REQUIRE_ROOT=1`
//! is set (as CI sets it), which makes them fail.

use leaktest_capture::{
    new_ledger, CanaryInjector, CanaryLedger, CaptureConfig, IfaceChange, IfaceInfo, IfaceMonitor,
    LiveCapture,
};
use leaktest_wire::CanarySighting;
use std::process::Command;
use std::time::{Duration, Instant};

struct Netns(String);

impl Netns {
    fn new(tag: &str) -> Option<Netns> {
        let name = format!(
            "ltcap-{tag}-{}-{:08x}",
            std::process::id(),
            getrandom::u32().unwrap()
        );
        let ok = Command::new("ip")
            .args(["netns", "add", &name])
            .status()
            .ok()?
            .success();
        if !ok {
            assert!(
                std::env::var_os("LEAKTEST_REQUIRE_ROOT").is_none_or(|v| v != "1"),
                "LEAKTEST_REQUIRE_ROOT=1 forbids skipping: no network namespace can be made (not root?)"
            );
            eprintln!("skipping: cannot create a network namespace (need root)");
            return None;
        }
        let ns = Netns(name);
        ns.ip(&["link", "add", "lca", "type", "veth", "peer", "name", "lcb"]);
        ns.ip(&["link", "set", "lca", "up"]);
        ns.ip(&["link", "set", "lcb", "up"]);
        Some(ns)
    }
    fn ip(&self, args: &[&str]) {
        let st = Command::new("ip")
            .arg("-n")
            .arg(&self.0)
            .args(args)
            .status()
            .unwrap();
        assert!(st.success(), "ip -n {} {args:?}", self.0);
    }
    /// Runs `f` on a thread that has entered the namespace.
    fn run<T: Send + 'static>(&self, f: impl FnOnce() -> T + Send + 'static) -> T {
        let path = format!("/run/netns/{}", self.0);
        std::thread::spawn(move || {
            let file = std::fs::File::open(&path).unwrap();
            use std::os::fd::AsRawFd;
            // SAFETY: setns on a valid namespace fd; affects this thread only.
            let rc = unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) };
            assert_eq!(rc, 0, "setns: {}", std::io::Error::last_os_error());
            // Carrier comes up asynchronously after `ip link set up`.
            let deadline = Instant::now() + Duration::from_secs(3);
            while !["lca", "lcb"]
                .iter()
                .all(|i| IfaceInfo::read(i).is_some_and(|i| i.is_up()))
                && Instant::now() < deadline
            {
                std::thread::sleep(Duration::from_millis(10));
            }
            f()
        })
        .join()
        .unwrap()
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.0]).status();
    }
}

/// Drains until `done` or the deadline; returns whether `done` became true.
fn drain_until(
    cap: &mut LiveCapture,
    canary: &mut CanaryLedger,
    secs: u64,
    done: impl Fn(&CanaryLedger) -> bool,
) -> bool {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while Instant::now() < deadline {
        cap.drain(|f| {
            if CanaryLedger::has_canary_ethertype(f.data) {
                canary.observe(f.data, false);
            }
        })
        .unwrap();
        if done(canary) {
            return true;
        }
    }
    false
}

#[test]
fn sees_every_canary_and_drops_nothing() {
    let Some(ns) = Netns::new("can") else { return };
    ns.run(|| {
        let mut cap = LiveCapture::open(&CaptureConfig::new("lca")).unwrap();
        let inj = CanaryInjector::open("lca").unwrap();
        let mut canary = new_ledger(inj.mac()).unwrap();
        for _ in 0..500 {
            inj.send_next(&mut canary, 0).unwrap();
        }
        assert!(
            drain_until(&mut cap, &mut canary, 5, |c| c.seen() == 500),
            "seen {} of {}",
            canary.seen(),
            canary.sent()
        );
        assert!(canary.missing().is_empty());
        assert_eq!(canary.forged(), 0);
        let stats = cap.stats().unwrap();
        assert_eq!(stats.dropped, 0);
        assert!(stats.received >= 500, "{stats:?}");
    });
}

#[test]
fn sealed_capture_accounts_for_every_frame_the_kernel_counted() {
    let Some(ns) = Netns::new("acc") else { return };
    ns.run(|| {
        let mut cap = LiveCapture::open(&CaptureConfig::new("lca")).unwrap();
        let inj = CanaryInjector::open("lca").unwrap();
        let mut canary = new_ledger(inj.mac()).unwrap();
        let mut handled = 0u64;
        let mut canaries = 0u64;
        let mut count = |f: &leaktest_capture::Frame<'_>| {
            if CanaryLedger::has_canary_ethertype(f.data) {
                canaries += 1;
            }
        };
        // Frames keep going out while the capture is read and sealed: the
        // seal must still leave nothing uncounted.
        for round in 0..20 {
            for _ in 0..100 {
                inj.send_next(&mut canary, 0).unwrap();
            }
            if round % 3 == 0 {
                handled += cap.drain(&mut count).unwrap() as u64;
            }
        }
        handled += cap.seal(&mut count).unwrap();
        // After the seal nothing more is queued or counted.
        for _ in 0..100 {
            inj.send_next(&mut canary, 0).unwrap();
        }
        std::thread::sleep(Duration::from_millis(120));
        handled += cap.drain(&mut count).unwrap() as u64;
        let s = cap.stats().unwrap();
        assert_eq!(s.dropped, 0, "{s:?}");
        assert_eq!(
            s.received,
            cap.delivered() + s.dropped,
            "kernel counted {} frames, the ring delivered {}",
            s.received,
            cap.delivered()
        );
        assert_eq!(handled + cap.barrier_frames(), cap.delivered());
        // The link's own IPv6 housekeeping may go out too; of the canaries,
        // every one sent before the seal and none after.
        assert_eq!(canaries, 2000, "canaries captured");
    });
}

#[test]
fn inbound_frames_are_not_captured() {
    let Some(ns) = Netns::new("dir") else { return };
    ns.run(|| {
        let mut cap = LiveCapture::open(&CaptureConfig::new("lca")).unwrap();
        // Frames sent from the peer arrive on lca as inbound.
        let peer = CanaryInjector::open("lcb").unwrap();
        let mut theirs = new_ledger(peer.mac()).unwrap();
        let mine_inj = CanaryInjector::open("lca").unwrap();
        let mut mine = new_ledger(mine_inj.mac()).unwrap();
        for _ in 0..50 {
            peer.send_next(&mut theirs, 0).unwrap();
        }
        // One outbound canary at the end, to know the ring was drained past them.
        mine_inj.send_next(&mut mine, 0).unwrap();
        let mut inbound_seen = 0;
        let deadline = Instant::now() + Duration::from_secs(5);
        while mine.seen() == 0 && Instant::now() < deadline {
            cap.drain(|f| {
                if !CanaryLedger::has_canary_ethertype(f.data) {
                    return;
                }
                if matches!(theirs.observe(f.data, false), CanarySighting::Ours(_)) {
                    inbound_seen += 1;
                }
                mine.observe(f.data, false);
            })
            .unwrap();
        }
        assert_eq!(mine.seen(), 1);
        assert_eq!(inbound_seen, 0, "the capture saw inbound frames");
    });
}

#[test]
fn notices_the_interface_disappearing() {
    let Some(ns) = Netns::new("del") else { return };
    let name = ns.0.clone();
    ns.run(move || {
        let mut cap = LiveCapture::open(&CaptureConfig::new("lca")).unwrap();
        let mut mon = IfaceMonitor::new("lca").unwrap();
        assert_eq!(mon.check(), None);
        let st = Command::new("ip")
            .args(["-n", &name, "link", "del", "lca"])
            .status()
            .unwrap();
        assert!(st.success());
        // Gone (an event: it may come back and be followed), not yet lost.
        let Some(IfaceChange::Gone(problem)) = mon.check() else {
            panic!("the monitor did not notice");
        };
        assert!(problem.contains("disappeared"), "{problem}");
        assert!(mon.is_gone() && mon.is_down() && !mon.is_lost());
        // Reported once per episode.
        assert_eq!(mon.check(), None);
        // libpcap reports an error (and never blocks forever).
        let deadline = Instant::now() + Duration::from_secs(3);
        let mut errored = false;
        while Instant::now() < deadline {
            if cap.drain(|_| {}).is_err() {
                errored = true;
                break;
            }
        }
        assert!(
            errored,
            "libpcap kept reading a deleted interface without error"
        );
    });
}

#[test]
fn notices_the_interface_going_down() {
    let Some(ns) = Netns::new("down") else { return };
    let name = ns.0.clone();
    ns.run(move || {
        let mut mon = IfaceMonitor::new("lca").unwrap();
        assert_eq!(mon.check(), None);
        let st = Command::new("ip")
            .args(["-n", &name, "link", "set", "lca", "down"])
            .status()
            .unwrap();
        assert!(st.success());
        let Some(IfaceChange::Down(what)) = mon.check() else {
            panic!("the monitor did not notice");
        };
        assert!(what.contains("went down"), "{what}");
        assert!(mon.is_down());
        // Once per change; then up again.
        assert_eq!(mon.check(), None);
        let st = Command::new("ip")
            .args(["-n", &name, "link", "set", "lca", "up"])
            .status()
            .unwrap();
        assert!(st.success());
        // (A veth is operationally up once its peer is.)
        let deadline = Instant::now() + Duration::from_secs(3);
        let mut up = None;
        while Instant::now() < deadline {
            up = mon.check();
            if up.is_some() {
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        assert_eq!(up, Some(IfaceChange::Up));
    });
}
