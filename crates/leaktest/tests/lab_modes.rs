//! `leaktest lab --ruleset --mode host|killswitch`: rulesets of boxes that
//! protect themselves (a transparent-Tor host) or that must let nothing out
//! (a VPN kill switch with the tunnel down), loaded as they are. Each mode's
//! correct ruleset passes; a classic mistake of each kind is LEAK with
//! exactly its findings (`--expect leak`, exit 0); the class rulesets
//! written as iptables-save files give their nftables twins' findings.

#[path = "support/lab_cli.rs"]
mod lab_cli;

use lab_cli::{findings, fixture, lab, write_tmp};
use std::time::Instant;

#[test]
fn a_transparent_tor_host_and_its_ipv4_only_twin() {
    if !leaktest_netns::require_root("lab_modes") {
        return;
    }
    let host = fixture("host-tor.nft");
    let (out, doc, _) = lab(&[
        "--mode",
        "host",
        "--tor-user",
        "30103",
        "--ruleset",
        host.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{doc:#}");
    let p = &doc["profiles"][0];
    assert_eq!(p["got"], "pass");
    // The works-check: an unprivileged process's lookup and connection,
    // taken to DNSPort and TransPort by the ruleset, reached the web server
    // from an exit.
    assert!(
        p["gateway_check"].as_str().unwrap().contains("saw exit"),
        "{p:#}"
    );
    assert_eq!(findings(&doc), Vec::<String>::new());
    // Only the host's own sweeps ran.
    let runs: Vec<&str> = p["runs"]
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(runs, ["gw-root", "gw-user"]);

    // The same rules in an IPv4-only table (class 1): every IPv6 probe of
    // both users leaves, and the target's SYN-ACKs get the senders' RSTs.
    let v4only = std::fs::read_to_string(&host)
        .unwrap()
        .replace("table inet host", "table ip host")
        .lines()
        .filter(|l| !l.contains("icmpv6") && !l.contains("ip6 "))
        .collect::<Vec<_>>()
        .join("\n");
    let v4only = write_tmp("v4only.nft", &v4only);
    let (out, doc, _) = lab(&[
        "--mode",
        "host",
        "--tor-user",
        "30103",
        "--ruleset",
        v4only.to_str().unwrap(),
        "--expect",
        "leak",
    ]);
    std::fs::remove_file(&v4only).unwrap();
    assert!(out.status.success(), "{doc:#}");
    let mut want = Vec::new();
    for sweep in ["gw-root", "gw-user"] {
        for (suite, n) in [
            ("icmp", 256),
            ("ip", 256),
            ("tcp", 327680),
            ("udp", 65536),
            ("flags", 68352),
            ("icmp-codes", 2560),
            ("lan", 27),
        ] {
            want.push(format!("{sweep} ipv6 {suite} ×{n}"));
        }
        want.push(format!(
            "{sweep} ipv6 tcp [R] ×18 (the sender's RST to the target's SYN-ACK)"
        ));
    }
    assert_eq!(findings(&doc), want);
}

#[test]
fn a_kill_switch_and_its_port_without_a_destination() {
    if !leaktest_netns::require_root("lab_modes") {
        return;
    }
    let ks = fixture("killswitch.nft");
    let t0 = Instant::now();
    let (out, doc, secs) = lab(&[
        "--mode",
        "killswitch",
        "--allow",
        "udp:198.51.100.7:51820",
        "--ruleset",
        ks.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{doc:#}");
    let p = &doc["profiles"][0];
    assert_eq!(p["got"], "pass");
    assert!(p["gateway_check"].is_null(), "no works-check: {p:#}");
    assert_eq!(findings(&doc), Vec::<String>::new());
    // No anonymizer to wait for: no consensus phase.
    let phases = doc["phases"].to_string();
    assert!(!phases.contains("consensus"), "{phases}");
    eprintln!("kill switch from nothing to verdict: {secs:.1} s");
    assert!(t0.elapsed().as_secs() < 60);

    // Class 6: the VPN's port and DNS accepted to any destination.
    let text = std::fs::read_to_string(&ks).unwrap().replace(
        "    ip daddr 198.51.100.7 udp dport 51820 accept\n",
        "    udp dport { 53, 51820 } accept\n",
    );
    let leaky = write_tmp("ks-port.nft", &text);
    let (out, doc, _) = lab(&[
        "--mode",
        "killswitch",
        "--allow",
        "udp:198.51.100.7:51820",
        "--ruleset",
        leaky.to_str().unwrap(),
        "--expect",
        "leak",
    ]);
    std::fs::remove_file(&leaky).unwrap();
    assert!(out.status.success(), "{doc:#}");
    // UDP to 53 and 51820 of the target, and the lan suite's UDP to port
    // 53 of every LAN destination that exists on the uplink, both users.
    let mut want = Vec::new();
    for sweep in ["gw-root", "gw-user"] {
        want.push(format!("{sweep} ipv4 udp ×2"));
        want.push(format!("{sweep} ipv4 lan ×10"));
        want.push(format!("{sweep} ipv6 udp ×2"));
        want.push(format!("{sweep} ipv6 lan ×6"));
    }
    assert_eq!(findings(&doc), want);
}

/// The kill-switch class profiles written as iptables-save files give the
/// findings pinned for their nftables twins (classes 6, 7 and 8; class 8
/// has no ip6tables file at all, as its recipe).
#[test]
fn kill_switch_classes_as_iptables_save_give_their_nft_twins_findings() {
    if !leaktest_netns::require_root("lab_modes") {
        return;
    }
    let classes = leaktest_lab::ruleset::classes();
    for (name, has_v6) in [
        ("killswitch-any-destination", true),
        ("killswitch-drop-behind-accept", true),
        ("killswitch-ipv4-only", false),
    ] {
        let class = classes.iter().find(|c| c.name == name).unwrap();
        let v4 = fixture(&format!("{name}.iptables"));
        let v6 = fixture(&format!("{name}.ip6tables"));
        let mut args = vec![
            "--mode",
            "killswitch",
            "--allow",
            "udp:198.51.100.7:51820",
            "--format",
            "iptables",
            "--ruleset",
            v4.to_str().unwrap(),
            "--expect",
            "leak",
        ];
        if has_v6 {
            args.extend(["--ruleset6", v6.to_str().unwrap()]);
        }
        let run = || {
            let (out, doc, _) = lab(&args);
            assert!(out.status.success(), "{name}: {doc:#}");
            let got: Vec<String> = findings(&doc)
                .into_iter()
                .filter(|f| !f.contains(" [R] "))
                .collect();
            got
        };
        let got = run();
        if got != class.findings {
            // A user's ruleset has no per-probe model, so the lab sends no
            // probe again: one probe the kernel lost on the way (seen in CI
            // once in several runs: one IPv6 UDP probe of 65,535 from one
            // sweep) shows as a count one short. Such a loss does not
            // repeat; a difference between the twins' rules does: the whole
            // run once more, and its findings must be exact.
            eprintln!("{name}: findings differ from the nft twin's ({got:?}); running once more");
            assert_eq!(run(), class.findings, "{name}");
        }
    }
}

/// The host and gateway class profiles written as iptables-save files give
/// the findings pinned for their nftables twins: class 1 (no ip6tables
/// file, as its tool ships none), 2, 5 (forwarding on, as the class
/// profile sets it) and 9.
#[test]
fn host_and_gateway_classes_as_iptables_save_give_their_nft_twins_findings() {
    if !leaktest_netns::require_root("lab_modes") {
        return;
    }
    use leaktest_lab::ruleset::{Check, Mode};
    let classes = leaktest_lab::ruleset::classes();
    for (name, has_v6) in [
        ("host-ipv4-only", false),
        ("host-output-accept", true),
        ("gateway-echo", true),
        ("gateway-nd-any-user", true),
    ] {
        let class = classes.iter().find(|c| c.name == name).unwrap();
        let v4 = fixture(&format!("{name}.iptables"));
        let v6 = fixture(&format!("{name}.ip6tables"));
        let mode = match class.mode {
            Mode::Gateway => "gateway",
            Mode::Host => "host",
            Mode::Killswitch => "killswitch",
        };
        let check = match class.check {
            Check::Trans => "trans",
            Check::Socks => "socks",
            Check::None => "none",
        };
        let sysctls: Vec<String> = class
            .sysctls
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        let mut args = vec![
            "--mode",
            mode,
            "--format",
            "iptables",
            "--ruleset",
            v4.to_str().unwrap(),
            "--expect",
            "leak",
        ];
        if class.mode == Mode::Host {
            args.extend(["--check", check]);
        }
        for s in &sysctls {
            args.extend(["--sysctl", s]);
        }
        for a in class.allow {
            args.extend(["--allow", a]);
        }
        if has_v6 {
            args.extend(["--ruleset6", v6.to_str().unwrap()]);
        }
        let (out, doc, _) = lab(&args);
        assert!(out.status.success(), "{name}: {doc:#}");
        let got: Vec<String> = findings(&doc)
            .into_iter()
            .filter(|f| !f.contains(" [R] "))
            .collect();
        assert_eq!(got, class.findings, "{name}");
    }
}
