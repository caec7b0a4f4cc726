//! The typed report: JSON schema, JUnit read back by an XML reader, the
//! terminal layout, and the JSON read back into the same type.

use super::*;
use crate::classify::{Classifier, ClassifierConfig, Decision};
use crate::testutil::*;
use ipnet::IpNet;
use leaktest_tor::Allowlist;
use leaktest_wire::canary::{CanaryKey, CanaryLedger};
use leaktest_wire::catalogue::ProbeKind;
use leaktest_wire::{Frame, LinkType};
use leaktest_wire::{MarkerKeys, ProbeSpec, RunKey, TcpFlags};
use serde_json::Value;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};

fn healthy() -> CaptureHealth {
    CaptureHealth {
        packets: 0,
        dropped: 0,
        canaries_sent: 4,
        canaries_seen: 4,
        ..CaptureHealth::default()
    }
}

fn report(f: &Findings, h: &CaptureHealth) -> WatchReport {
    WatchReport::build(&WatchOutcome {
        iface: "ext0",
        findings: f,
        health: h,
        flows: FlowStats::default(),
        allowlist: &AllowlistSummary::default(),
        allow: &[],
        stats: CaptureStats::default(),
        elapsed_s: 1.5,
        interrupted: false,
        pcap_frames: 0,
    })
}

/// A watch that saw Tor, housekeeping, a canary, TCP and ICMPv6 probe
/// leaks and one unexpected IPv6 UDP packet.
fn leaky() -> (Findings, CaptureHealth) {
    let ledger = CanaryLedger::new(CanaryKey::new(GW_MAC, [3; 16], 1));
    let mut sent = ledger.clone();
    sent.mark_sent(0, 0);
    let mut c = Classifier::new(
        ClassifierConfig {
            own_macs: vec![GW_MAC],
            own_nets: vec![
                IpNet::new(IpAddr::V4(GW4), 24).unwrap(),
                IpNet::new(IpAddr::V6(GW6), 64).unwrap(),
            ],
            ..ClassifierConfig::default()
        },
        LinkType::Ethernet,
        MarkerKeys::open(),
    )
    .with_canaries(sent);
    let tor: Allowlist = [SocketAddr::new(IpAddr::V4(NET4), 9001)]
        .into_iter()
        .collect();
    let key = RunKey::open(0x1122334455667788);
    let mut frames = vec![
        eth4(GW4, NET4, 6, &tcp(40000, 9001, 0x10, &[])),
        arp_frame(GW_MAC, 1, GW_MAC, GW4, Ipv4Addr::new(198, 51, 100, 1)),
        ledger.key().frame(0).to_vec(),
        eth6(GW6, NET6, 17, &udp(5000, 443, b"x")),
    ];
    for port in [21u16, 22, 23, 25, 80] {
        let spec = ProbeSpec {
            family: leaktest_wire::Family::V4,
            kind: ProbeKind::Tcp {
                flags: TcpFlags(TcpFlags::SYN),
                dst_port: port,
            },
        };
        frames.push(eth4(
            WS4,
            NET4,
            6,
            &tcp(40000, port, TcpFlags::SYN, &key.payload_marker(spec.seq())),
        ));
    }
    let icmp6 = ProbeSpec {
        family: leaktest_wire::Family::V6,
        kind: ProbeKind::Icmp { icmp_type: 128 },
    };
    frames.push(eth6(
        GW6,
        NET6,
        58,
        &icmp(
            128,
            0,
            &[&[0, 1, 0, 1][..], &key.payload_marker(icmp6.seq())].concat(),
        ),
    ));
    let mut f = Findings::new();
    for (i, d) in frames.iter().enumerate() {
        let frame = Frame {
            ts_sec: 1_700_000_000 + i as u64,
            ts_nsec: 1,
            data: d,
            orig_len: d.len() as u32,
        };
        let decision = c.classify(&frame, &tor);
        f.record(&frame, &decision);
    }
    let health = CaptureHealth {
        packets: frames.len() as u64,
        ..healthy()
    };
    (f, health)
}

fn json_of(r: &WatchReport) -> Value {
    let mut buf = Vec::new();
    r.write_json_to(&mut buf).unwrap();
    // The JSON reads back into the same type.
    let back: WatchReport = serde_json::from_slice(&buf).unwrap();
    assert_eq!(&back, r);
    serde_json::from_slice(&buf).unwrap()
}

fn is_u64(v: &Value) -> bool {
    v.as_u64().is_some()
}

fn check_schema(v: &Value) {
    let o = v.as_object().unwrap();
    assert!(["pass", "leak", "inconclusive"].contains(&o["verdict"].as_str().unwrap()));
    assert!(o["reasons"]
        .as_array()
        .unwrap()
        .iter()
        .all(|r| r.is_string()));
    assert!(o["interface"].is_string());
    for k in ["packets", "dropped", "canaries_sent", "canaries_seen"] {
        assert!(is_u64(&o["capture"][k]), "capture.{k}");
    }
    assert!(is_u64(&o["tor"]["packets"]) && is_u64(&o["tor"]["endpoints"]));
    assert!(is_u64(&o["housekeeping"]["packets"]));
    assert!(is_u64(&o["leak_packets"]));
    let opt_u = |x: &Value, max: u64| x.is_null() || x.as_u64().is_some_and(|n| n <= max);
    let flags = |x: &Value| {
        x.is_null()
            || x.as_str()
                .is_some_and(|s| s.chars().all(|c| "FSRPAUEC".contains(c)))
    };
    for l in o["leaks"].as_array().unwrap() {
        assert!(["ipv4", "ipv6", "other"].contains(&l["family"].as_str().unwrap()));
        assert!(opt_u(&l["protocol"], 255));
        assert!(l["src"].is_string() && l["dst"].is_string());
        assert!(opt_u(&l["src_port"], 65535) && opt_u(&l["dst_port"], 65535));
        assert!(opt_u(&l["icmp_type"], 255));
        assert!(flags(&l["tcp_flags"]));
        let p = &l["probe"];
        if !p.is_null() {
            let run = p["run"].as_str().unwrap();
            assert!(run.len() == 16 && run.chars().all(|c| c.is_ascii_hexdigit()));
            assert!(is_u64(&p["seq"]));
            assert!(["icmp", "ip", "tcp", "udp", "frag"].contains(&p["suite"].as_str().unwrap()));
            assert!(["ipv4", "ipv6"].contains(&p["family"].as_str().unwrap()));
            assert!(opt_u(&p["protocol"], 255) && !p["protocol"].is_null());
            assert!(opt_u(&p["dst_port"], 65535));
            assert!(flags(&p["tcp_flags"]));
            assert!(opt_u(&p["icmp_type"], 255));
        }
    }
}

#[test]
fn json_report_of_a_leak() {
    let (f, h) = leaky();
    let r = report(&f, &h);
    assert_eq!(r.verdict, Verdict::Leak);
    let v = json_of(&r);
    check_schema(&v);
    assert_eq!(v["verdict"], "leak");
    assert_eq!(v["interface"], "ext0");
    assert_eq!(v["capture"]["packets"], 10);
    assert_eq!(v["capture"]["canaries_seen"], 4);
    assert_eq!(
        (v["tor"]["packets"].as_u64(), v["tor"]["endpoints"].as_u64()),
        (Some(1), Some(1))
    );
    assert_eq!(v["housekeeping"]["packets"], 1);
    assert_eq!(v["housekeeping"]["by_kind"]["arp"], 1);
    assert_eq!(v["leak_packets"], 7);
    let leaks = v["leaks"].as_array().unwrap();
    assert_eq!(leaks.len(), 7);
    let u = &leaks[0];
    assert_eq!(u["family"], "ipv6");
    assert_eq!(u["protocol"], 17);
    assert_eq!(u["src"], GW6.to_string());
    assert_eq!(u["dst_port"], 443);
    assert_eq!(u["tcp_flags"], Value::Null);
    assert_eq!(u["probe"], Value::Null);
    assert_eq!(
        (u["cause"].as_str(), u["rule"].as_str()),
        (Some("unexpected"), Some("default"))
    );
    let t = &leaks[1];
    assert_eq!(
        (t["family"].as_str(), t["protocol"].as_u64()),
        (Some("ipv4"), Some(6))
    );
    assert_eq!(
        (t["dst_port"].as_u64(), t["tcp_flags"].as_str()),
        (Some(21), Some("S"))
    );
    assert_eq!(t["src"], WS4.to_string());
    assert_eq!(t["probe"]["run"], "1122334455667788");
    assert_eq!(t["probe"]["suite"], "tcp");
    assert_eq!(t["probe"]["family"], "ipv4");
    assert_eq!(t["probe"]["protocol"], 6);
    assert_eq!(t["probe"]["dst_port"], 21);
    assert_eq!(t["probe"]["tcp_flags"], "S");
    assert_eq!(t["probe"]["icmp_type"], Value::Null);
    assert_eq!(t["probe"]["evidence"], "payload");
    assert_eq!(
        (t["cause"].as_str(), t["rule"].as_str()),
        (Some("probe"), Some("probe-marker"))
    );
    let i = &leaks[6];
    assert_eq!(
        (i["protocol"].as_u64(), i["icmp_type"].as_u64()),
        (Some(58), Some(128))
    );
    assert_eq!(i["probe"]["suite"], "icmp");
    assert_eq!(i["probe"]["family"], "ipv6");
    assert_eq!(i["probe"]["icmp_type"], 128);
    assert_eq!(i["probe"]["dst_port"], Value::Null);
    let groups = v["groups"].as_array().unwrap();
    assert_eq!(groups.len(), 3);
    assert_eq!(groups[1]["dst_ports"], "21-23,25,80");
    assert_eq!(groups[1]["packets"], 5);
    assert_eq!(groups[1]["rule"], "probe-marker");
    // Frames per rule, in table order, add up to every frame.
    let rules = v["rules"].as_array().unwrap();
    assert_eq!(rules.len(), RULES.len());
    assert_eq!(
        rules
            .iter()
            .map(|r| r["packets"].as_u64().unwrap())
            .sum::<u64>(),
        10
    );
    assert_eq!(rules[0]["rule"], "allow-net");
    assert_eq!(rules[0]["packets"], 0);
    assert_eq!(rules[1]["rule"], "probe-marker");
    assert_eq!(rules[1]["packets"], 6);
    assert_eq!(rules[2]["packets"], 1, "the canary");
    // Every probe of the run, as seq ranges.
    let run = &v["runs"][0];
    assert_eq!(run["run"], "1122334455667788");
    assert_eq!(run["distinct"], 6);
    let seqs = r.runs[0].seq_ranges().unwrap();
    assert_eq!(seqs.iter().map(|(a, b)| b - a + 1).sum::<u32>(), 6);
}

#[test]
fn json_report_of_a_pass_and_an_inconclusive_watch() {
    let mut f = Findings::new();
    let ep = SocketAddr::new(IpAddr::V4(Ipv4Addr::new(203, 0, 113, 5)), 443);
    let d = [0u8; 60];
    f.record(
        &Frame::whole(&d),
        &Decision {
            class: crate::classify::Class::Tor(crate::classify::TorFrame {
                endpoint: ep,
                roles: leaktest_tor::Roles::OR_PORT,
                followed: crate::classify::flows::Followed::FromStart,
            }),
            rule: Rule::Tor,
        },
    );
    let h = CaptureHealth {
        packets: 5,
        ..healthy()
    };
    let v = json_of(&report(&f, &h));
    check_schema(&v);
    assert_eq!(v["verdict"], "pass");
    assert_eq!(v["leaks"], Value::Array(vec![]));
    let h = CaptureHealth { dropped: 9, ..h };
    let v = json_of(&report(&f, &h));
    check_schema(&v);
    assert_eq!(v["verdict"], "inconclusive");
    assert!(v["reasons"][0]
        .as_str()
        .unwrap()
        .contains("dropped 9 packets"));
}

/// A leak carried in an 802.1Q (and a QinQ) tagged frame names its VLAN ids
/// in the leak record, in the group, and on the group's line.
#[test]
fn vlan_ids_are_in_leak_records() {
    let mut c = Classifier::new(
        ClassifierConfig::default(),
        LinkType::Ethernet,
        MarkerKeys::open(),
    );
    let inner = eth4(GW4, NET4, 17, &udp(5000, 53, b"query"));
    // Insert a tag after the MAC addresses: TPID then TCI (PCP 0, VID).
    let tag = |frame: &[u8], tpid: u16, vid: u16| {
        let mut v = frame[..12].to_vec();
        v.extend_from_slice(&tpid.to_be_bytes());
        v.extend_from_slice(&vid.to_be_bytes());
        v.extend_from_slice(&frame[12..]);
        v
    };
    let single = tag(&inner, 0x8100, 42);
    let double = tag(&tag(&inner, 0x8100, 7), 0x88a8, 300);
    let mut f = Findings::new();
    for d in [&single, &double] {
        let frame = Frame::whole(d);
        let decision = c.classify(&frame, &Allowlist::new());
        f.record(&frame, &decision);
    }
    let r = report(&f, &healthy());
    assert_eq!(r.leaks.len(), 2);
    assert_eq!(r.leaks[0].vlan, Some(42));
    // QinQ: the outer (service) tag's id.
    assert_eq!(r.leaks[1].vlan, Some(300));
    assert_eq!(r.leaks[0].dst_port, Some(53), "decoded past the tag");
    let v = json_of(&r);
    assert_eq!(v["leaks"][0]["vlan"], 42);
    let vlans: Vec<u16> = r.groups.iter().flat_map(|g| g.vlans.clone()).collect();
    assert!(vlans.contains(&42) && vlans.contains(&300), "{vlans:?}");
    assert!(
        r.groups.iter().any(|g| g.line().contains("vlan 42")),
        "{:?}",
        r.groups
    );
}

#[test]
fn write_json_creates_the_file() {
    let (f, h) = leaky();
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("r.json");
    report(&f, &h).write_json(&p).unwrap();
    let v: Value = serde_json::from_slice(&std::fs::read(&p).unwrap()).unwrap();
    check_schema(&v);
    let err = report(&f, &h)
        .write_json(&dir.path().join("missing/r.json"))
        .unwrap_err();
    assert!(err.to_string().contains("does not exist"), "{err}");
}

#[test]
fn junit_read_back_by_an_xml_reader() {
    let (f, h) = leaky();
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("junit.xml");
    let mut r = report(&f, &h);
    r.families_probed = Some(Family::BOTH.to_vec());
    r.write_junit(&p).unwrap();
    let text = std::fs::read_to_string(&p).unwrap();
    let doc = roxmltree::Document::parse(&text).unwrap();
    let cases: Vec<_> = doc
        .descendants()
        .filter(|n| n.has_tag_name("testcase"))
        .collect();
    // 2 families x 12 suites, 3 "other traffic" cases, capture health.
    assert_eq!(cases.len(), 2 * leaktest_wire::Suite::ALL.len() + 4);
    let failed: Vec<String> = cases
        .iter()
        .filter(|c| c.children().any(|n| n.has_tag_name("failure")))
        .map(|c| c.attribute("name").unwrap().to_string())
        .collect();
    assert_eq!(failed, vec!["ipv4 tcp", "ipv6 icmp", "ipv6 other traffic"]);
    let tcp = cases
        .iter()
        .find(|c| c.attribute("name") == Some("ipv4 tcp"))
        .unwrap();
    assert_eq!(tcp.attribute("classname"), Some("leaktest.probes.ipv4"));
    let failure = tcp.children().find(|n| n.has_tag_name("failure")).unwrap();
    assert_eq!(
        failure.attribute("message"),
        Some("5 ipv4 tcp probe packets leaked")
    );
    assert!(failure
        .text()
        .unwrap_or("")
        .contains("dst ports 21-23,25,80"));
    let suite = doc
        .descendants()
        .find(|n| n.has_tag_name("testsuite"))
        .unwrap();
    assert_eq!(
        suite.attribute("tests"),
        Some(
            (2 * leaktest_wire::Suite::ALL.len() + 4)
                .to_string()
                .as_str()
        )
    );
    assert_eq!(suite.attribute("failures"), Some("3"));

    // Warnings reach the JUnit report too.
    let mut warned = report(&f, &h);
    warned
        .warnings
        .push("pcap truncated: 1 of 9 frames written to x (full)".into());
    let xml = junit::junit(&warned).to_string().unwrap();
    let doc = roxmltree::Document::parse(&xml).unwrap();
    let err = doc
        .descendants()
        .find(|n| n.has_tag_name("system-err"))
        .expect("a system-err with the warnings");
    assert!(
        err.text().unwrap().contains("pcap truncated: 1 of 9"),
        "{xml}"
    );

    // An inconclusive watch fails only the capture-health case.
    let clean = Findings::new();
    let h = CaptureHealth {
        canaries_seen: 1,
        ..healthy()
    };
    let xml = junit::junit(&report(&clean, &h)).to_string().unwrap();
    let doc = roxmltree::Document::parse(&xml).unwrap();
    let failed: Vec<_> = doc
        .descendants()
        .filter(|n| n.has_tag_name("testcase"))
        .filter(|c| c.children().any(|n| n.has_tag_name("failure")))
        .map(|c| c.attribute("name").unwrap())
        .collect();
    assert_eq!(failed, vec!["capture health"]);
}

/// What the watcher cannot know is not claimed: without --families the
/// probe cases that did not leak are skipped, and with `--families 4` the
/// IPv6 ones are skipped while a leak still fails its case.
#[test]
fn junit_passes_only_the_families_declared_probed() {
    let (f, h) = leaky();
    let statuses = |families: Option<Vec<Family>>| {
        let mut r = report(&f, &h);
        r.families_probed = families;
        let xml = junit::junit(&r).to_string().unwrap();
        let doc = roxmltree::Document::parse(&xml).unwrap();
        doc.descendants()
            .filter(|n| n.has_tag_name("testcase"))
            .filter(|c| {
                c.attribute("classname")
                    .unwrap()
                    .starts_with("leaktest.probes")
            })
            .map(|c| {
                let st = if c.children().any(|n| n.has_tag_name("failure")) {
                    "failed"
                } else if c.children().any(|n| n.has_tag_name("skipped")) {
                    "skipped"
                } else {
                    "passed"
                };
                (c.attribute("name").unwrap().to_string(), st)
            })
            .collect::<std::collections::BTreeMap<_, _>>()
    };
    let undeclared = statuses(None);
    assert_eq!(undeclared["ipv4 tcp"], "failed");
    assert_eq!(undeclared["ipv6 icmp"], "failed");
    assert_eq!(undeclared["ipv4 udp"], "skipped");
    assert_eq!(undeclared["ipv6 udp"], "skipped");
    let v4 = statuses(Some(vec![Family::V4]));
    assert_eq!(v4["ipv4 udp"], "passed");
    assert_eq!(v4["ipv6 udp"], "skipped");
    // A leak is a leak, declared or not.
    assert_eq!(v4["ipv6 icmp"], "failed");
    let both = statuses(Some(Family::BOTH.to_vec()));
    assert_eq!(both["ipv6 udp"], "passed");
    assert_eq!(both.values().filter(|s| **s == "skipped").count(), 0);
}

#[test]
fn thousands_separators() {
    let t: Vec<String> = [0, 7, 999, 1000, 65535, 1_000_000, u64::MAX]
        .into_iter()
        .map(terminal::thousands)
        .collect();
    assert_eq!(
        t,
        [
            "0",
            "7",
            "999",
            "1,000",
            "65,535",
            "1,000,000",
            "18,446,744,073,709,551,615"
        ]
    );
}

#[test]
fn terminal_report_is_grouped_and_aligned() {
    let (f, h) = leaky();
    let mut out = Vec::new();
    report(&f, &h).print_terminal(&mut out).unwrap();
    let text = String::from_utf8(out).unwrap();
    assert!(text.starts_with("leaktest watch on ext0\n"), "{text}");
    assert!(
        text.contains("  tor           1 packet to 1 endpoint\n"),
        "{text}"
    );
    assert!(
        text.contains("  housekeeping  1 packet (arp 1)\n"),
        "{text}"
    );
    assert!(text.contains("verdict: LEAK (exit 1)\n"), "{text}");
    assert!(
        text.contains(
            "  - 6 of them carried the marker of a leaktest probe (ipv4 tcp 5, ipv6 icmp 1)\n"
        ),
        "{text}"
    );
    let table: Vec<&str> = text
        .lines()
        .skip_while(|l| !l.trim_start().starts_with("family"))
        .take_while(|l| !l.is_empty())
        .collect();
    assert_eq!(table.len(), 4, "{text}");
    // Columns line up: "packets" is right-aligned under its header.
    let col = table[0].find("packets").unwrap() + "packets".len();
    for row in &table[1..] {
        assert_eq!(row.as_bytes()[col], b' ', "{text}");
        assert!(row.as_bytes()[col - 1].is_ascii_digit(), "{text}");
    }
    assert!(table[2].contains("tcp [S]") && table[2].contains("dst ports 21-23,25,80"));
    assert!(table[2].contains("probes tcp, run 1122334455667788"));
    assert!(
        table[2].contains("probe-marker"),
        "the rule is in the table: {text}"
    );
    assert!(
        text.contains("  rules         probe-marker 6, canary 1, tor 1, arp 1, default 1\n"),
        "{text}"
    );
    println!("{text}");
}

#[test]
fn html_page_of_a_leak_escapes_what_it_shows() {
    let (f, h) = leaky();
    let mut r = report(&f, &h);
    // Text that came from the network or the system, made hostile.
    r.reasons
        .push("<script>alert(1)</script> & \"quoted\"".into());
    r.interface = "eth0<b>".into();
    let page = r.to_html();
    assert!(page.starts_with("<!DOCTYPE html>"));
    assert!(page.contains("class=\"verdict leak\""));
    assert!(page.contains("LEAK (exit 1)"));
    assert!(page.contains("&lt;script&gt;alert(1)&lt;/script&gt; &amp; &quot;quoted&quot;"));
    assert!(page.contains("eth0&lt;b&gt;"));
    assert!(!page.contains("<script"));
    assert!(!page.contains("<b>"));
    // Every group is a row, and the leaked packets are listed.
    for g in &r.groups {
        let what = g
            .what
            .replace('&', "&amp;")
            .replace('<', "&lt;")
            .replace('>', "&gt;");
        assert!(page.contains(&what), "{what}");
    }
    assert!(page.contains("Leaked packets"));
    // A port strip per family and protocol with ports, whose total is the
    // number of distinct destination ports of that family's groups.
    assert!(page.contains("<figure class=\"strip\">"));
    assert!(page.contains("of 65536 destination ports leaked"));

    let (f, h) = (Findings::new(), healthy());
    let pass = report(&f, &h).to_html();
    assert!(pass.contains("class=\"verdict pass\""));
    assert!(pass.contains("No leaked packet."));
}

#[test]
fn port_strip_counts_distinct_ports_once() {
    let (f, h) = leaky();
    let mut r = report(&f, &h);
    // Two groups of one family and protocol whose port sets overlap.
    let mut a = r.groups[0].clone();
    a.protocol = Some(17);
    a.dst_ports = Some("0-99,200".into());
    let mut b = a.clone();
    b.dst_ports = Some("50-149".into());
    r.groups = vec![a, b];
    let strip = super::html::port_strips(&r.groups).into_string();
    assert!(
        strip.contains("UDP: <span class=\"strip-total\">151</span>"),
        "{strip}"
    );
    // Pixel 0 (ports 0-63) is full, pixel 2 (128-191) holds 22 ports, pixel 3 one.
    assert!(
        strip.contains(
            "x=\"0\" y=\"0\" width=\"1\" height=\"16\" fill=\"#b3261e\" fill-opacity=\"1.00\""
        ),
        "{strip}"
    );
    assert!(
        strip.contains(
            "x=\"2\" y=\"0\" width=\"1\" height=\"16\" fill=\"#b3261e\" fill-opacity=\"0.34\""
        ),
        "{strip}"
    );
    assert!(
        strip.contains(
            "x=\"3\" y=\"0\" width=\"1\" height=\"16\" fill=\"#b3261e\" fill-opacity=\"0.02\""
        ),
        "{strip}"
    );
}

/// A pulse's probes leaked 40-220 ms after a `reload` event and nowhere
/// else: the leaks name the event, the phases say where and when.
#[test]
fn the_timeline_puts_each_leak_in_its_phase() {
    use crate::timeline::{annotate, Event};
    let mut c = Classifier::new(
        ClassifierConfig::default(),
        LinkType::Ethernet,
        MarkerKeys::open(),
    );
    let tor = Allowlist::new();
    let base = RunKey::open(leaktest_wire::marker::pulse_run_id(0x1122334455667788));
    const T0: u64 = 1_700_000_000;
    let ns = |ms: u64| T0 * 1_000_000_000 + ms * 1_000_000;
    // Round r of the pulse leaves at 100 ms × r; the reload begins at 1 s
    // and the leaks are rounds 10 (40 ms after) to 12 (220 ms after).
    let mut f = Findings::new();
    for (round, at_ms) in [(10u32, 1040u64), (11, 1130), (12, 1220)] {
        let spec = leaktest_wire::pulse::specs(leaktest_wire::Family::V4, round)
            .into_iter()
            .find(|s| matches!(s.kind, ProbeKind::Udp { dst_port: 53 }))
            .unwrap();
        let key = base.with_round(round);
        let d = eth4(
            WS4,
            NET4,
            17,
            &udp(40000, 53, &key.payload_marker(spec.seq())),
        );
        let frame = Frame {
            ts_sec: T0 + at_ms / 1000,
            ts_nsec: ((at_ms % 1000) * 1_000_000) as u32,
            data: &d,
            orig_len: d.len() as u32,
        };
        let decision = c.classify(&frame, &tor);
        f.record(&frame, &decision);
    }
    let mut r = report(&f, &healthy());
    let event = |name: &str, at_ms: u64, ran_ms: u64| Event {
        name: name.into(),
        source: "run-at".into(),
        at_s: at_ms as f64 / 1e3,
        start_unix_ns: ns(at_ms),
        end_unix_ns: Some(ns(at_ms + ran_ms)),
        exit_code: Some(0),
        problem: None,
    };
    // Out of order on purpose: annotate sorts them.
    annotate(
        &mut r,
        ns(0),
        vec![event("after", 2000, 5), event("reload", 1000, 300)],
    );
    assert_eq!(r.events[0].name, "reload");
    let rounds: Vec<Option<u32>> = r
        .leaks
        .iter()
        .map(|l| l.probe.as_ref().unwrap().round)
        .collect();
    assert_eq!(rounds, vec![Some(10), Some(11), Some(12)]);
    for (l, ms) in r.leaks.iter().zip([40.0, 130.0, 220.0]) {
        assert_eq!(l.event.as_deref(), Some("reload"));
        assert!((l.since_event_ms.unwrap() - ms).abs() < 1e-6, "{l:?}");
    }
    let names: Vec<&str> = r.phases.iter().map(|p| p.name.as_str()).collect();
    assert_eq!(names, ["start", "reload", "after"]);
    let verdicts: Vec<Verdict> = r.phases.iter().map(|p| p.verdict).collect();
    assert_eq!(verdicts, [Verdict::Pass, Verdict::Leak, Verdict::Pass]);
    let p = &r.phases[1];
    assert_eq!(
        (p.leak_packets, p.probe_leak_packets, p.rounds),
        (3, 3, Some((10, 12)))
    );
    assert_eq!((p.first_leak_ms, p.last_leak_ms), (Some(40.0), Some(220.0)));
    assert_eq!(p.to_unix_ns, Some(ns(2000)));
    assert_eq!(p.what, ["ipv4 udp/53 ×3"]);
    assert_eq!(
        p.line(ns(0)),
        "phase 'reload' (from 1.000 s): LEAK, 3 packet(s) 40-220 ms after it began (pulse rounds 10-12): ipv4 udp/53 ×3"
    );
    // The JSON carries all of it and reads back.
    let v = json_of(&r);
    assert_eq!(v["leaks"][0]["event"], "reload");
    assert_eq!(v["leaks"][0]["probe"]["round"], 10);
    assert_eq!(v["phases"][1]["verdict"], "leak");
    let mut text = Vec::new();
    r.print_terminal(&mut text).unwrap();
    let text = String::from_utf8(text).unwrap();
    assert!(
        text.contains("timeline:") && text.contains("run-at 'reload' ran 300 ms, exit 0"),
        "{text}"
    );

    // A watch that could not prove it saw: no phase without leaks passes.
    let mut unproven = report(
        &f,
        &CaptureHealth {
            canaries_seen: 0,
            ..healthy()
        },
    );
    annotate(&mut unproven, ns(0), vec![event("reload", 1000, 300)]);
    let verdicts: Vec<Verdict> = unproven.phases.iter().map(|p| p.verdict).collect();
    assert_eq!(verdicts[0], Verdict::Inconclusive);
    assert_eq!(verdicts[1], Verdict::Leak);
}
