//! `leaktest lab --ruleset` with a gateway ruleset written the way Whonix
//! writes its own (uplink `eth0`, internal `eth1`, tor's uid by number, DNS
//! to 5300), loaded unchanged: it passes; its twin whose output chain lets
//! every user send neighbour-discovery ICMPv6 is LEAK naming exactly those
//! probes of the gateway's own sweeps; the iptables-save twins give the
//! same verdicts and findings; with the gateway's tor on an obfs4 bridge it
//! still passes; a ruleset that does not fit the lab is named
//! line by line before any sweep, within seconds.

#[path = "support/lab_cli.rs"]
mod lab_cli;

use lab_cli::{findings, fixture, lab, write_tmp};
use std::path::Path;

/// Tor's uid in the fixtures: a number with no passwd entry here (as on
/// a Whonix-Gateway, whose rulesets name tor by number).
const TOR_UID: &str = "30103";

/// What an output chain accepting the four neighbour-discovery types for
/// every user lets out of the gateway's own sweeps: the `icmp` suite's probe
/// of each type and the `icmp-codes` suite's 256 codes of each, as root and
/// as the unprivileged user.
const ND_FINDINGS: [&str; 4] = [
    "gw-root ipv6 icmp ×4",
    "gw-root ipv6 icmp-codes ×1024",
    "gw-user ipv6 icmp ×4",
    "gw-user ipv6 icmp-codes ×1024",
];

/// The frames to the users' LAN counted apart, over every watch of the run
/// (a gateway ruleset runs in two parts: the probes to port 53 last).
fn allowed_lan_packets(doc: &serde_json::Value) -> u64 {
    doc["profiles"][0]["reports"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|r| r["allowed"].as_array().unwrap())
        .filter(|a| a["entry"] == "net:192.168.1.0/24")
        .map(|a| a["packets"].as_u64().unwrap())
        .sum()
}

#[test]
fn a_whonix_style_ruleset_loads_unchanged_and_its_nd_hole_is_named() {
    if !leaktest_netns::require_root("lab_ruleset") {
        return;
    }
    let nft = fixture("whonix-gateway.nft");
    let common = [
        "--tor-user",
        TOR_UID,
        "--allow-net",
        "192.168.1.0/24",
        "--ruleset",
    ];
    let mut args = common.to_vec();
    args.push(nft.to_str().unwrap());
    let (out, doc, secs) = lab(&args);
    assert!(out.status.success(), "{doc:#}");
    let p = &doc["profiles"][0];
    assert_eq!(p["got"], "pass", "{p:#}");
    assert!(p["gateway_check"].as_str().unwrap().contains("saw exit"));
    assert_eq!(findings(&doc), Vec::<String>::new());
    // Its users' LAN: the gateway sweeps' lan probes to 192.168.1.1 (three
    // transports, root and unprivileged), counted apart.
    assert_eq!(allowed_lan_packets(&doc), 6, "{p:#}");
    eprintln!("--ruleset from nothing to verdict: {secs:.1} s");

    // The same ruleset with neighbour discovery accepted for any user at any
    // hop limit (as Whonix's own output chain has it): LEAK, exactly those.
    let text = std::fs::read_to_string(&nft).unwrap().replace(
        "nd-neighbor-advert } ip6 hoplimit 255 accept\n    icmpv6 type { mld",
        "nd-neighbor-advert } accept\n    icmpv6 type { mld",
    );
    let leaky = write_tmp("nd.nft", &text);
    // Forwarding on (a property of the gateway under test): its forward
    // chain still drops everything, so the findings stay the same.
    let mut args = common.to_vec();
    args.extend([
        leaky.to_str().unwrap(),
        "--expect",
        "leak",
        "--sysctl",
        "net.ipv4.ip_forward=1",
    ]);
    let (out, doc, _) = lab(&args);
    std::fs::remove_file(&leaky).unwrap();
    assert!(out.status.success(), "--expect leak is met: {doc:#}");
    assert_eq!(doc["profiles"][0]["got"], "leak");
    assert_eq!(findings(&doc), ND_FINDINGS);
    assert!(
        doc["profiles"][0]["findings"]
            .to_string()
            .contains("note: sysctl net.ipv4.ip_forward = 1 in the gateway's namespace"),
        "{}",
        doc["profiles"][0]["findings"]
    );
}

/// The gateway as many users run it: tor reaches the network only through
/// an obfs4 bridge. The watcher takes the bridge from `GETCONF Bridge`,
/// follows its obfs4 flow from the first segment (tor connects during the
/// watch), counts it as Tor, and nothing else goes out: PASS.
#[test]
fn a_whonix_style_ruleset_passes_with_tor_on_an_obfs4_bridge() {
    if !leaktest_netns::require_root("lab_ruleset") {
        return;
    }
    let nft = fixture("whonix-gateway.nft");
    let (out, doc, _) = lab(&[
        "--tor-user",
        TOR_UID,
        "--allow-net",
        "192.168.1.0/24",
        "--bridge",
        "--ruleset",
        nft.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{doc:#}");
    let p = &doc["profiles"][0];
    assert_eq!(p["got"], "pass", "{p:#}");
    assert!(p["gateway_check"].as_str().unwrap().contains("saw exit"));
    assert_eq!(findings(&doc), Vec::<String>::new());
    let tor = &p["reports"][0]["tor"];
    assert!(
        tor["by_role"]["obfs4-bridge"].as_u64().unwrap() > 0,
        "{tor}"
    );
    // Through the bridge alone: no frame to a relay's ORPort.
    assert_eq!(tor["by_role"].get("orport"), None, "{tor}");
    assert!(tor["flows"]["started"].as_u64().unwrap() >= 1, "{tor}");
    assert_eq!(tor["flows"]["violations"], 0, "{tor}");
    assert_eq!(tor["allowlist"]["from_control_port"], true, "{tor}");
}

#[test]
fn iptables_save_twins_give_the_same_verdicts() {
    if !leaktest_netns::require_root("lab_ruleset") {
        return;
    }
    let v4 = fixture("whonix-gateway.iptables");
    let v6 = fixture("whonix-gateway.ip6tables");
    let run = |v6: &Path, expect: &str| {
        lab(&[
            "--tor-user",
            TOR_UID,
            "--allow-net",
            "192.168.1.0/24",
            "--format",
            "iptables",
            "--ruleset",
            v4.to_str().unwrap(),
            "--ruleset6",
            v6.to_str().unwrap(),
            "--expect",
            expect,
        ])
    };
    let (out, doc, _) = run(&v6, "pass");
    assert!(out.status.success(), "{doc:#}");
    assert_eq!(doc["profiles"][0]["got"], "pass");
    assert_eq!(findings(&doc), Vec::<String>::new());
    assert_eq!(allowed_lan_packets(&doc), 6);

    let text = std::fs::read_to_string(&v6).unwrap();
    let leaky: String = text
        .lines()
        .map(|l| {
            if l.starts_with("-A OUTPUT") && l.contains("--hl-eq 255") {
                l.replace(" -m hl --hl-eq 255", "")
            } else {
                l.to_string()
            }
        })
        .collect::<Vec<_>>()
        .join("\n")
        + "\n";
    let leaky = write_tmp("nd.ip6tables", &leaky);
    let (out, doc, _) = run(&leaky, "leak");
    std::fs::remove_file(&leaky).unwrap();
    assert!(out.status.success(), "{doc:#}");
    assert_eq!(findings(&doc), ND_FINDINGS);
}

#[test]
fn a_ruleset_that_does_not_fit_is_named_before_any_sweep() {
    if !leaktest_netns::require_root("lab_ruleset") {
        return;
    }
    // Written for other interface names, another DNS port and another tor
    // uid, and run without --tor-user.
    let text = std::fs::read_to_string(fixture("whonix-gateway.nft"))
        .unwrap()
        .replace("\"eth1\"", "\"int0\"")
        .replace("\"eth0\"", "\"ext0\"")
        .replace("redirect to :5300", "redirect to :5353");
    let broken = write_tmp("broken.nft", &text);
    let (out, _, _) = lab(&["--ruleset", broken.to_str().unwrap()]);
    std::fs::remove_file(&broken).unwrap();
    assert_eq!(out.status.code(), Some(2), "an error, not a verdict");
    let err = String::from_utf8_lossy(&out.stderr);
    for want in [
        "interface \"int0\", which the lab's gateway does not have",
        "interface \"ext0\", which the lab's gateway does not have",
        "names uid 30103, which nothing in the lab runs as",
        "pass --tor-user 30103",
        "redirected to port 5353, where nothing listens",
        "the workstation's TCP to 198.51.100.80:80 was not answered",
        "cannot connect to its guards",
    ] {
        assert!(err.contains(want), "{want:?} in:\n{err}");
    }
    // Named before tor has the network: no DNS check yet (tor's DNSPort
    // answers only then), and no probe sent.
    assert!(!err.contains("DNS to 10.152.152.10:53"), "{err}");
    // A fib lookup's keys (`fib saddr . iif oif missing`) are no interfaces.
    assert!(!err.contains("interface \"oif\""), "{err}");
    assert!(!err.contains("interface \"missing\""), "{err}");
    // Found within seconds of loading the ruleset, not after a time-out.
    let took: f64 = err
        .split("named in ")
        .nth(1)
        .and_then(|s| s.split(" s").next())
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("the diagnosis time in:\n{err}"));
    assert!(took <= 10.0, "diagnosed in {took} s");

    // A ruleset whose only fault is that its input chain drops DNSPort:
    // the DNS check, once tor has the network, names it (after every probe
    // but those to port 53 was sent, none of which leaked).
    let text = std::fs::read_to_string(fixture("whonix-gateway.nft"))
        .unwrap()
        .replace("    iifname \"eth1\" udp dport 5300 accept\n", "");
    let no_dns = write_tmp("no-dns.nft", &text);
    let (out, _, _) = lab(&[
        "--tor-user",
        TOR_UID,
        "--allow-net",
        "192.168.1.0/24",
        "--ruleset",
        no_dns.to_str().unwrap(),
    ]);
    std::fs::remove_file(&no_dns).unwrap();
    assert_eq!(out.status.code(), Some(2), "an error, not a verdict");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("the workstation's DNS to 10.152.152.10:53 was not answered"),
        "{err}"
    );
    assert!(!err.contains("TCP to 198.51.100.80:80"), "{err}");
    assert!(!err.contains("cannot connect to its guards"), "{err}");
}

/// `--transition reload --reload-with`: a Whonix-style ruleset replaced, in
/// one transaction, under pulses from the workstation and the gateway.
/// Into itself: PASS in every phase. Into its twin whose output chain
/// accepts neighbour discovery for any user: LEAK, and only after the
/// change, exactly the gateway pulses' neighbour solicitations.
#[test]
fn a_ruleset_reloaded_into_a_leaky_one_leaks_only_after_the_change() {
    if !leaktest_netns::require_root("lab_ruleset") {
        return;
    }
    let nft = fixture("whonix-gateway.nft");
    let (out, doc, _) = lab(&[
        "--tor-user",
        TOR_UID,
        "--ruleset",
        nft.to_str().unwrap(),
        "--transition",
        "reload",
    ]);
    assert!(out.status.success(), "{doc:#}");
    let p = &doc["profiles"][0];
    assert_eq!(p["got"], "pass", "{p:#}");
    let phases = p["reports"][0]["phases"].as_array().unwrap();
    assert_eq!(phases.len(), 2);
    assert!(
        phases.iter().all(|ph| ph["verdict"] == "pass"),
        "{phases:?}"
    );

    let text = std::fs::read_to_string(&nft).unwrap().replace(
        "nd-neighbor-advert } ip6 hoplimit 255 accept\n    icmpv6 type { mld",
        "nd-neighbor-advert } accept\n    icmpv6 type { mld",
    );
    let leaky = write_tmp("reload-nd.nft", &text);
    let (out, doc, _) = lab(&[
        "--tor-user",
        TOR_UID,
        "--ruleset",
        nft.to_str().unwrap(),
        "--transition",
        "reload",
        "--reload-with",
        leaky.to_str().unwrap(),
        "--expect",
        "leak",
    ]);
    std::fs::remove_file(&leaky).unwrap();
    assert!(out.status.success(), "{doc:#}");
    let p = &doc["profiles"][0];
    assert_eq!(p["got"], "leak", "{p:#}");
    let w = &p["reports"][0];
    let phases = w["phases"].as_array().unwrap();
    assert_eq!(phases[0]["verdict"], "pass", "{phases:?}");
    assert_eq!(phases[1]["verdict"], "leak", "{phases:?}");
    let event_start = w["events"][0]["start_unix_ns"].as_u64().unwrap();
    let runs = &p["runs"];
    for l in w["leaks"].as_array().unwrap() {
        let at = l["ts_sec"].as_u64().unwrap() * 1_000_000_000 + l["ts_nsec"].as_u64().unwrap();
        assert!(at >= event_start, "a leak before the change: {l}");
        assert_eq!(
            (l["protocol"].as_u64(), l["icmp_type"].as_u64()),
            (Some(58), Some(135)),
            "{l}"
        );
        let run = &l["probe"]["run"];
        assert!(
            run == &runs["gw-root"] || run == &runs["gw-user"],
            "not a gateway pulse: {l}"
        );
    }
}
