//! The whole pure pipeline of a watch, as the session drives it: probe
//! frames (built by leaktest-wire), Tor, housekeeping and canary frames are
//! classified and recorded, leaks are streamed to pcapng, and the JSON,
//! JUnit and terminal reports are written. Then every output is read back
//! by an independent reader and checked against the others.

use leaktest_watch::report::AllowlistSummary;
use leaktest_watch::{
    CaptureHealth, CaptureStats, Class, Classifier, ClassifierConfig, Findings, FlowStats, Frame,
    LinkType, PcapngWriter, Verdict, WatchOutcome, WatchReport,
};
use leaktest_wire::canary::{CanaryKey, CanaryLedger};
use leaktest_wire::{
    Endpoints, Family, MarkerKeys, ProbeBuilder, ProbeSpec, RunKey, Suite, L2, MAX_PROBE_FRAME,
};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::process::Command;

const GW_MAC: [u8; 6] = [2, 0, 0, 0, 0, 1];
const NEXT_HOP: [u8; 6] = [2, 0, 0, 0, 0, 0xfe];
const GW4: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 2);
const RELAY: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 9);

fn tor_frame(i: u16) -> Vec<u8> {
    let mut f = NEXT_HOP.to_vec();
    f.extend_from_slice(&GW_MAC);
    f.extend_from_slice(&[0x08, 0x00, 0x45, 0, 0, 40, 0, 1, 0x40, 0, 64, 6, 0, 0]);
    f.extend_from_slice(&GW4.octets());
    f.extend_from_slice(&RELAY.octets());
    f.extend_from_slice(&(40000 + i % 4).to_be_bytes());
    f.extend_from_slice(&9001u16.to_be_bytes());
    f.extend_from_slice(&[0, 0, 0, 1, 0, 0, 0, 1, 0x50, 0x10, 1, 0, 0, 0, 0, 0]);
    f
}

fn arp_frame() -> Vec<u8> {
    let mut f = vec![0xff; 6];
    f.extend_from_slice(&GW_MAC);
    f.extend_from_slice(&[0x08, 0x06, 0, 1, 8, 0, 6, 4, 0, 1]);
    f.extend_from_slice(&GW_MAC);
    f.extend_from_slice(&GW4.octets());
    f.extend_from_slice(&[0; 6]);
    f.extend_from_slice(&[198, 51, 100, 1]);
    f
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
        elapsed_s: 1.0,
        interrupted: false,
        pcap_frames: 0,
    })
}

struct Watch {
    findings: Findings,
    health: CaptureHealth,
    live_lines: Vec<String>,
    pcap_frames: u64,
}

/// Runs `udp_leaks` UDP probe leaks (ports 0.., both families), 16 TCP SYN
/// probe leaks, Tor and housekeeping through the pipeline.
fn run(dir: &std::path::Path, udp_leaks: u32) -> Watch {
    let key = RunKey::open(0x0dd5ee0);
    let b = ProbeBuilder::new(
        key,
        Endpoints {
            src4: Some(Ipv4Addr::new(10, 152, 152, 11)),
            dst4: Some(Ipv4Addr::new(198, 51, 100, 7)),
            src6: Some("fd19:c33d:88bc::11".parse::<Ipv6Addr>().unwrap()),
            dst6: Some("2001:db8::7".parse::<Ipv6Addr>().unwrap()),
        },
        Some(L2 {
            src: GW_MAC,
            dst: NEXT_HOP,
        }),
    );
    let mut allow = leaktest_tor::Allowlist::new();
    allow.insert(SocketAddr::new(IpAddr::V4(RELAY), 9001));
    let ledger = CanaryLedger::new(CanaryKey::new(GW_MAC, [5; 16], 1));
    let mut sent = ledger.clone();
    sent.mark_sent(0, 0);
    sent.mark_sent(1, 0);
    let mut c = Classifier::new(
        ClassifierConfig {
            own_macs: vec![GW_MAC],
            own_nets: vec!["198.51.100.2/24".parse().unwrap()],
            ..ClassifierConfig::default()
        },
        LinkType::Ethernet,
        MarkerKeys::open(),
    )
    .with_canaries(sent);
    let mut pcap = PcapngWriter::create(dir.join("leaks.pcapng"), "ext0").unwrap();
    let mut findings = Findings::new();
    let mut live_lines = Vec::new();
    let mut buf = [0u8; MAX_PROBE_FRAME];
    let mut packets = 0u64;
    let mut canaries = 0u64;
    let mut ts = 1_750_000_000u64 * 1_000_000_000;
    let mut feed = |data: &[u8]| {
        ts += 1_000;
        let fr = Frame {
            ts_sec: ts / 1_000_000_000,
            ts_nsec: (ts % 1_000_000_000) as u32,
            data,
            orig_len: data.len() as u32,
        };
        let d = c.classify(&fr, &allow);
        packets += 1;
        if d.class == Class::Canary {
            canaries += 1;
        }
        if let Some(g) = findings.record(&fr, &d) {
            live_lines.push(g.live_line());
        }
        if matches!(d.class, Class::Leak(_)) {
            pcap.write(&fr).unwrap();
        }
    };
    feed(&ledger.key().frame(0));
    let udp: Vec<ProbeSpec> = Family::BOTH
        .into_iter()
        .flat_map(|f| ProbeSpec::all(f, Suite::Udp))
        .take(udp_leaks as usize)
        .collect();
    for (i, spec) in udp.iter().enumerate() {
        if i % 3 == 0 {
            feed(&tor_frame(i as u16));
        }
        if i % 100 == 0 {
            feed(&arp_frame());
        }
        let n = b.write(spec, &mut buf);
        feed(&buf[..n]);
    }
    for spec in ProbeSpec::all(Family::V4, Suite::Tcp).skip(20).take(16) {
        let n = b.write(&spec, &mut buf);
        feed(&buf[..n]);
    }
    feed(&ledger.key().frame(1));
    let summary = pcap.finish(&CaptureStats {
        received: packets,
        dropped: 0,
        if_dropped: 0,
    });
    assert_eq!(summary.error, None);
    let pcap_frames = summary.written;
    Watch {
        findings,
        health: CaptureHealth {
            packets,
            dropped: 0,
            canaries_sent: 2,
            canaries_seen: canaries,
            ..CaptureHealth::default()
        },
        live_lines,
        pcap_frames,
    }
}

#[test]
fn outputs_agree_with_each_other() {
    let dir = tempfile::tempdir().unwrap();
    let w = run(dir.path(), 300);
    assert_eq!(w.live_lines.len(), 2, "{:#?}", w.live_lines);
    assert!(
        w.live_lines[0].starts_with("LEAK ipv4 udp dst ports 0;"),
        "{}",
        w.live_lines[0]
    );
    assert!(
        w.live_lines[1].starts_with("LEAK ipv4 tcp [S] dst ports 20;"),
        "{}",
        w.live_lines[1]
    );
    let report = report(&w.findings, &w.health);
    assert_eq!(report.verdict, Verdict::Leak);
    report.write_json(&dir.path().join("r.json")).unwrap();
    report.write_junit(&dir.path().join("r.xml")).unwrap();

    let v: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.path().join("r.json")).unwrap()).unwrap();
    assert_eq!(v["leak_packets"], 316);
    assert_eq!(w.pcap_frames, 316);
    assert_eq!(v["tor"]["packets"], 100);
    assert_eq!(v["tor"]["endpoints"], 1);
    assert_eq!(v["housekeeping"]["packets"], 3);
    assert_eq!(v["capture"]["canaries_seen"], 2);
    let leaks = v["leaks"].as_array().unwrap();
    assert_eq!(leaks.len(), 316);

    // pcapng read back by tshark: frame i is JSON leak i.
    if Command::new("tshark").arg("-v").output().is_ok() {
        let out = Command::new("tshark")
            .args(["-n", "-r"])
            .arg(dir.path().join("leaks.pcapng"))
            .args(["-T", "fields", "-E", "separator=,"])
            .args([
                "-e",
                "ip.dst",
                "-e",
                "ip.proto",
                "-e",
                "udp.dstport",
                "-e",
                "tcp.dstport",
            ])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let text = String::from_utf8(out.stdout).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), leaks.len());
        for (line, l) in lines.iter().zip(leaks) {
            let port = l["dst_port"].as_u64().unwrap().to_string();
            let (udp, tcp) = if l["protocol"] == 17 {
                (port.as_str(), "")
            } else {
                ("", port.as_str())
            };
            let want = format!(
                "{},{},{udp},{tcp}",
                l["dst"].as_str().unwrap(),
                l["protocol"]
            );
            assert_eq!(*line, want);
        }
    }

    // JUnit read back by an independent XML reader.
    let xml = std::fs::read_to_string(dir.path().join("r.xml")).unwrap();
    let doc = roxmltree::Document::parse(&xml).unwrap();
    let failed: Vec<&str> = doc
        .descendants()
        .filter(|n| n.has_tag_name("testcase"))
        .filter(|c| c.children().any(|n| n.has_tag_name("failure")))
        .map(|c| c.attribute("name").unwrap())
        .collect();
    assert_eq!(failed, ["ipv4 tcp", "ipv4 udp"]);

    let mut term = Vec::new();
    report.print_terminal(&mut term).unwrap();
    let term = String::from_utf8(term).unwrap();
    assert!(term.contains("dst ports 0-299;"), "{term}");
    assert!(term.contains("verdict: LEAK (exit 1)"), "{term}");
}

#[test]
fn long_leak_keeps_ten_thousand_details_and_counts_all() {
    let dir = tempfile::tempdir().unwrap();
    let w = run(dir.path(), 70_000);
    assert_eq!(w.findings.leak_packets, 70_016);
    assert_eq!(w.pcap_frames, 70_016);
    let report = report(&w.findings, &w.health);
    let mut buf = Vec::new();
    report.write_json_to(&mut buf).unwrap();
    let v: serde_json::Value = serde_json::from_slice(&buf).unwrap();
    assert_eq!(v["leak_packets"], 70_016);
    assert_eq!(v["leaks"].as_array().unwrap().len(), 10_000);
    assert_eq!(v["leaks_truncated"], true);
    // IPv4 UDP 0-65535 then IPv6 UDP 0-4463: two groups, plus TCP.
    let groups = v["groups"].as_array().unwrap();
    assert_eq!(groups.len(), 3);
    assert_eq!(groups[0]["dst_ports"], "0-65535");
    assert_eq!(groups[1]["family"], "ipv6");
    assert_eq!(groups[1]["dst_ports"], "0-4463");
    // Every probe is in the run's seq ranges, though only 10,000 are detailed.
    let run = &report.runs[0];
    assert_eq!(run.distinct, 70_016);
    let total: u64 = run
        .seq_ranges()
        .unwrap()
        .iter()
        .map(|(a, b)| u64::from(b - a + 1))
        .sum();
    assert_eq!(total, 70_016);
}

#[test]
fn clean_watch_passes_and_unproven_watch_is_inconclusive() {
    let mut f = Findings::new();
    let tor = tor_frame(0);
    let fr = Frame {
        ts_sec: 1,
        ts_nsec: 0,
        data: &tor,
        orig_len: tor.len() as u32,
    };
    let mut allow = leaktest_tor::Allowlist::new();
    allow.insert(SocketAddr::new(IpAddr::V4(RELAY), 9001));
    let mut c = Classifier::new(
        ClassifierConfig::default(),
        LinkType::Ethernet,
        MarkerKeys::open(),
    );
    f.record(&fr, &c.classify(&fr, &allow));
    let ok = CaptureHealth {
        packets: 3,
        dropped: 0,
        canaries_sent: 2,
        canaries_seen: 2,
        ..CaptureHealth::default()
    };
    assert_eq!(report(&f, &ok).verdict, Verdict::Pass);
    let gone = CaptureHealth {
        problems: vec!["interface ext0 went away".into()],
        ..ok
    };
    let r = report(&f, &gone);
    assert_eq!(r.verdict, Verdict::Inconclusive);
    assert_eq!(r.reasons, ["interface ext0 went away"]);
}
