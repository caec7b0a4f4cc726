//! Plans that cannot test the gateway are refused before the sweep (issue
//! 13), with the built binary, in the watch lab's namespaces:
//!
//! * a target routed through the gateway that *is* the gateway (its uplink
//!   address): the first-hop check (one echo request with TTL/hop limit 1)
//!   gets the answer from the target itself, and the probe refuses with exit
//!   2, sending no sweep; a target beyond gets Time Exceeded from the
//!   gateway, recorded in the JSON;
//! * a gateway-local sweep whose route does not leave by the interface the
//!   running watcher watches is refused, naming the watcher; `--uplink`
//!   states the interface explicitly; a route through the watched uplink
//!   is accepted and says so in the JSON.
//!
//! Needs root: without it the tests say so and pass, unless
//! `LEAKTEST_REQUIRE_ROOT=1` (CI) makes them fail.

#[path = "support/watch_lab.rs"]
mod watch_lab;

use std::process::Output;
use watch_lab::*;

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Packets the "internet" namespace received on in0.
fn in0_rx(lab: &Lab) -> u64 {
    let mut cmd = lab.ns("in").command("cat");
    cmd.arg("/sys/class/net/in0/statistics/rx_packets");
    let o = lab.ns("in").exec(cmd).expect("reading in0's counter");
    String::from_utf8_lossy(&o.stdout).trim().parse().unwrap()
}

#[test]
fn a_target_that_is_the_gateway_itself_is_refused() {
    if !is_root() {
        return;
    }
    // The forwarding gateway, made to answer pings on every address.
    let lab = build("php", true);
    for rule in [
        "insert rule inet ltgw input icmp type echo-request accept",
        "insert rule inet ltgw input icmpv6 type echo-request accept",
    ] {
        let mut c = lab.ns("gw").command("nft");
        c.args(rule.split(' '));
        lab.ns("gw").exec(c).expect("adding the echo rule");
    }
    let before = in0_rx(&lab);
    for (target, flag, family) in [
        ("198.51.100.2", "--target", "4"),
        ("2001:db8:1::2", "--target6", "6"),
    ] {
        let json = lab.path(&format!("refused{family}.json"));
        let mut cmd = lab.ns("ws").command(BIN);
        cmd.args(["probe", flag, target, "--family", family, "--json"])
            .arg(&json);
        let o = cmd.output().unwrap();
        let err = stderr(&o);
        assert_eq!(o.status.code(), Some(2), "{err}");
        assert!(err.contains("is the first hop"), "{err}");
        assert!(err.contains("echo reply"), "{err}");
        assert!(err.contains("--on-link"), "{err}");
        assert_eq!(err.trim().lines().count(), 1, "one line: {err}");
        assert!(!json.exists(), "refused before the sweep, no report");
    }
    // The check itself never left the gateway (TTL 1), the sweep never began.
    let after = in0_rx(&lab);
    assert!(
        after - before <= 2,
        "{} packets reached the internet side",
        after - before
    );

    // A target beyond: Time Exceeded from the gateway, in the JSON.
    let v = probe(&lab, &["--suite", "icmp"]);
    for (fam, gw) in [("ipv4", "10.152.152.10"), ("ipv6", "fd19:c33d:88bc::10")] {
        let fh = v["paths"][fam]["first_hop"].as_str().unwrap();
        assert_eq!(
            fh,
            format!("beyond the first hop (time exceeded from {gw})")
        );
    }

    // A gateway that answers nothing to the check: the sweep goes on, and
    // stderr says that the target could not be placed.
    let mut flush = lab.ns("gw").command("nft");
    flush.args(["flush", "chain", "inet", "ltgw", "input"]);
    lab.ns("gw").exec(flush).expect("flushing the input chain");
    let mut drop_all = lab.ns("gw").command("nft");
    drop_all.args(["add", "rule", "inet", "ltgw", "input", "drop"]);
    lab.ns("gw").exec(drop_all).expect("dropping all input");
    let mut cmd = lab.ns("ws").command(BIN);
    cmd.args([
        "probe",
        "--target",
        "198.51.100.2",
        "--family",
        "4",
        "--suite",
        "icmp",
    ]);
    let o = cmd.output().unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("cannot tell whether 198.51.100.2 lies beyond the gateway"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn a_gateway_sweep_must_leave_by_the_watched_uplink() {
    if !is_root() {
        return;
    }
    let lab = build("pup", false);
    // A network behind the workstation side: routed, not on the link.
    ip(
        lab.ns("gw"),
        &["route", "add", "192.0.2.0/24", "via", "10.152.152.11"],
    );
    let watch = start_watch(&lab, &[]);
    let run = lab.path("run");
    let probe_gw = |target: &str, extra: &[&str]| {
        let json = lab.path("gwprobe.json");
        let _ = std::fs::remove_file(&json);
        let mut cmd = lab.ns("gw").command(BIN);
        cmd.args([
            "probe", "--socket", "raw", "--target", target, "--suite", "icmp", "--json",
        ])
        .arg(&json)
        .args(extra)
        .env("LEAKTEST_RUN_DIR", &run);
        (cmd.output().unwrap(), json)
    };
    let (o, json) = probe_gw("192.0.2.7", &[]);
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert!(err.contains("leaves by gw0"), "{err}");
    assert!(err.contains(&format!("PID {}", watch.pid())), "{err}");
    assert!(err.contains("watches gw1"), "{err}");
    assert!(!json.exists());

    // Stated explicitly: the other interface is refused too, and named.
    let (o, _) = probe_gw("192.0.2.7", &["--uplink", "gw1"]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(stderr(&o).contains("--uplink names gw1"), "{}", stderr(&o));

    // On the watched uplink's own link (a point-to-point or link-scope route,
    // as on ppp or a tunnel): its probes cross the watched interface.
    let (o, _) = probe_gw("198.51.100.1", &[]);
    assert!(o.status.success(), "{}", stderr(&o));

    // Through the watched uplink: accepted, and the JSON says why unchecked.
    let (o, json) = probe_gw("203.0.113.7", &[]);
    assert!(o.status.success(), "{}", stderr(&o));
    let v = read_json(&json);
    let fh = v["paths"]["ipv4"]["first_hop"].as_str().unwrap();
    assert!(
        fh.starts_with("not checked: the route leaves by the watched uplink"),
        "{fh}"
    );
    assert!(fh.contains("watches gw1"), "{fh}");

    let (code, _, _) = finish_watch(&lab, watch);
    // The correct gateway drops the local sweep: PASS.
    assert_eq!(code, 0);

    // With the watcher gone its lock is not held (the file may stay): no
    // watched uplink to match, and a raw sweep is this host's own output path.
    let (o, json) = probe_gw("192.0.2.7", &[]);
    assert!(o.status.success(), "{}", stderr(&o));
    let v = read_json(&json);
    let fh = v["paths"]["ipv4"]["first_hop"].as_str().unwrap();
    assert_eq!(
        fh,
        "not checked (--socket raw: this host's own output path)"
    );
}

/// No blind IPv6 (issue 9): a gateway whose output chain lets root's IPv6
/// out but drops its own neighbour solicitations never resolves its IPv6
/// router, so the kernel drops every probe it queued: the sweep must not
/// look clean. `leaktest probe --socket raw` says so (exit 3, JSON
/// `unreached`); with the router in the neighbour cache, as a running
/// gateway usually has it, the same sweep reaches the wire.
#[test]
fn a_sweep_whose_next_hop_never_resolves_is_not_clean() {
    if !is_root() {
        return;
    }
    let lab = build("pnd", false);
    let gw = lab.ns("gw");
    // A target beyond the router, assigned in the lab's own namespace.
    ip(
        lab.ns("in"),
        &["-6", "addr", "add", "2001:db8:5::7/128", "dev", "lo"],
    );
    let rules = lab.path("nd-block.nft");
    std::fs::write(
        &rules,
        "flush ruleset\ntable inet t {\n  chain out {\n    type filter hook output priority filter; policy accept;\n    icmpv6 type nd-neighbor-solicit drop\n  }\n}\n",
    )
    .unwrap();
    let mut nft = gw.command("nft");
    nft.arg("-f").arg(&rules);
    gw.exec(nft).expect("loading the ND-blocking ruleset");
    ip(gw, &["-6", "neigh", "flush", "dev", "gw1"]);
    let sweep = || {
        let json = lab.path("nd.json");
        let _ = std::fs::remove_file(&json);
        let mut cmd = gw.command(BIN);
        cmd.args([
            "probe",
            "--socket",
            "raw",
            "--target6",
            "2001:db8:5::7",
            "--suite",
            "icmp",
            "--json",
        ])
        .arg(&json)
        .env("LEAKTEST_RUN_DIR", lab.path("run"));
        let before = in0_rx(&lab);
        let o = cmd.output().unwrap();
        (o, read_json(&json), in0_rx(&lab) - before)
    };
    let (o, v, rx) = sweep();
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(3), "{err}");
    assert!(err.contains("ipv6 probes never reached the wire"), "{err}");
    let u = &v["unreached"][0];
    assert_eq!(u["family"], "ipv6", "{v:#}");
    assert_eq!(u["next_hop"], "2001:db8:1::1");
    assert_eq!(u["state"], "FAILED");
    // The icmp suite's 256 types but 135, the solicitation the rule drops
    // (refused locally, EPERM).
    assert_eq!(u["probes"], 255);
    assert_eq!(v["refused_total"], 1);
    assert!(rx < 10, "nothing reached the router ({rx} frames)");

    // The router in the neighbour cache: the same sweep leaves.
    ip(
        gw,
        &[
            "-6",
            "neigh",
            "replace",
            "2001:db8:1::1",
            "lladdr",
            &mac(lab.ns("in"), "in0"),
            "dev",
            "gw1",
            "nud",
            "permanent",
        ],
    );
    let (o, v, rx) = sweep();
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(v["unreached"], serde_json::json!([]));
    assert!(rx >= 255, "every probe reached the router ({rx} frames)");
}

/// The MAC address of `dev` in `ns`.
fn mac(ns: &leaktest_netns::Netns, dev: &str) -> String {
    let mut cmd = ns.command("cat");
    cmd.arg(format!("/sys/class/net/{dev}/address"));
    let o = ns.exec(cmd).expect("reading a MAC address");
    String::from_utf8_lossy(&o.stdout).trim().to_string()
}
