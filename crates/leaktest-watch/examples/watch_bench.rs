//! Figures for the pure side of `leaktest watch`: classifier cost per frame
//! by class (the Tor path following a TLS flow record by record), the cost
//! under a flood of forged open-mode markers, and memory of findings and
//! pcapng writing over a long leak.
//!
//! Run: `cargo run -p leaktest-watch --example watch_bench [-- FRAMES]`
//! (default 1,000,000 leaked frames). Prints figures; asserts nothing.
//! Per-frame costs are this thread's CPU time, so a busy machine skews them less.

use leaktest_watch::report::AllowlistSummary;
use leaktest_watch::{
    CaptureHealth, CaptureStats, Classifier, ClassifierConfig, Findings, FlowStats, Frame,
    LinkType, PcapngWriter, WatchOutcome, WatchReport,
};
use leaktest_wire::{
    Endpoints, Family, MarkerKeys, ProbeBuilder, ProbeSpec, RunKey, Suite, L2, MAX_PROBE_FRAME,
};
use std::hint::black_box;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Instant;

const GW_MAC: [u8; 6] = [2, 0, 0, 0, 0, 1];
const GW4: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 2);
const RELAY: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 9);

fn status_kib(field: &str) -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with(field))
                .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}

fn eth_ipv4(proto: u8, src: Ipv4Addr, dst: Ipv4Addr, l4: &[u8]) -> Vec<u8> {
    let mut f = vec![2, 0, 0, 0, 0, 0xfe];
    f.extend_from_slice(&GW_MAC);
    f.extend_from_slice(&[0x08, 0x00, 0x45, 0]);
    f.extend_from_slice(&((20 + l4.len()) as u16).to_be_bytes());
    f.extend_from_slice(&[0, 1, 0x40, 0, 64, proto, 0, 0]);
    f.extend_from_slice(&src.octets());
    f.extend_from_slice(&dst.octets());
    f.extend_from_slice(l4);
    f
}

fn tcp(dport: u16, flags: u8, payload: &[u8]) -> Vec<u8> {
    tcp_seq(40000, dport, 0, flags, payload)
}

fn tcp_seq(sport: u16, dport: u16, seq: u32, flags: u8, payload: &[u8]) -> Vec<u8> {
    let mut t = vec![0u8; 20];
    t[0..2].copy_from_slice(&sport.to_be_bytes());
    t[2..4].copy_from_slice(&dport.to_be_bytes());
    t[4..8].copy_from_slice(&seq.to_be_bytes());
    t[12] = 0x50;
    t[13] = flags;
    t.extend_from_slice(payload);
    t
}

/// A Tor-like TLS flow from its SYN: ClientHello, then 514-byte cells in
/// application-data records, cut into 1448-byte segments.
fn tor_flow(sport: u16, records: u32) -> Vec<Vec<u8>> {
    let mut stream = vec![22, 3, 1, 0, 200, 1];
    stream.extend([0x42; 199]);
    for i in 0..records {
        stream.extend_from_slice(&[23, 3, 3, 0x02, 0x02]);
        stream.extend((0..514u32).map(|j| ((i * 131 + j * 7919) % 251) as u8));
    }
    let mut frames = vec![eth_ipv4(
        6,
        GW4,
        RELAY,
        &tcp_seq(sport, 9001, 99, 0x02, &[]),
    )];
    for (k, chunk) in stream.chunks(1448).enumerate() {
        let seq = 100 + (k * 1448) as u32;
        frames.push(eth_ipv4(
            6,
            GW4,
            RELAY,
            &tcp_seq(sport, 9001, seq, 0x18, chunk),
        ));
    }
    frames
}

fn frame(d: &[u8]) -> Frame<'_> {
    Frame {
        ts_sec: 1_700_000_000,
        ts_nsec: 0,
        data: d,
        orig_len: d.len() as u32,
    }
}

fn per_frame(name: &str, c: &mut Classifier, allow: &leaktest_tor::Allowlist, f: &[u8]) {
    let n = 2_000_000u32;
    let fr = frame(f);
    let t = cpu_ns();
    for _ in 0..n {
        black_box(c.classify(black_box(&fr), allow));
    }
    let ns = (cpu_ns() - t) as f64 / f64::from(n);
    println!(
        "  {name:<40} {:>5} B  {ns:>7.1} ns/frame  {:>6.2} Mframes/s",
        f.len(),
        1e3 / ns
    );
}

/// CPU time of this thread: the machine may be shared, and wall time would
/// count the time other processes ran.
fn cpu_ns() -> u128 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes into the timespec we own.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    ts.tv_sec as u128 * 1_000_000_000 + ts.tv_nsec as u128
}

fn time_it<S>(name: &str, setup: impl FnOnce() -> S, mut f: impl FnMut(&mut S) -> bool) {
    let mut st = setup();
    let n = 2_000_000u32;
    let t = cpu_ns();
    for _ in 0..n {
        black_box(f(&mut st));
    }
    let ns = (cpu_ns() - t) as f64 / f64::from(n);
    println!("  {name:<48} {ns:>7.1} ns");
}

fn main() {
    let total: u64 = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(1_000_000);
    let mut allow = leaktest_tor::Allowlist::new();
    // A consensus-sized allowlist: 8,000 relays, two ports each.
    for i in 0..8000u32 {
        let a = Ipv4Addr::from(0xcb00_7100 + i); // 203.0.113.0 and beyond: addresses only, never sent to
        allow.insert(SocketAddr::new(IpAddr::V4(a), 9001));
        allow.insert(SocketAddr::new(IpAddr::V4(a), 443));
    }
    allow.insert(SocketAddr::new(IpAddr::V4(RELAY), 9001));
    let cfg = ClassifierConfig {
        own_macs: vec![GW_MAC],
        own_nets: vec!["198.51.100.2/24".parse().unwrap()],
        ..ClassifierConfig::default()
    };
    let key = RunKey::open(0xbe4c);
    let builder = ProbeBuilder::new(
        key,
        Endpoints {
            src4: Some(Ipv4Addr::new(10, 152, 152, 11)),
            dst4: Some(Ipv4Addr::new(198, 51, 100, 7)),
            src6: Some("fd19:c33d:88bc::11".parse::<Ipv6Addr>().unwrap()),
            dst6: Some("2001:db8::7".parse::<Ipv6Addr>().unwrap()),
        },
        Some(L2 {
            src: GW_MAC,
            dst: [2, 0, 0, 0, 0, 0xfe],
        }),
    );

    println!(
        "classifier CPU time per frame (allowlist of {} endpoints):",
        allow.len()
    );
    let tls: Vec<u8> = (0..1400u32).map(|i| (i * 7919 % 251) as u8).collect();
    let tor_data = eth_ipv4(6, GW4, RELAY, &tcp(9001, 0x18, &tls));
    let tor_ack = eth_ipv4(6, GW4, RELAY, &tcp(9001, 0x10, &[]));
    let mut arp = vec![0xff; 6];
    arp.extend_from_slice(&GW_MAC);
    arp.extend_from_slice(&[0x08, 0x06, 0, 1, 8, 0, 6, 4, 0, 1]);
    arp.extend_from_slice(&GW_MAC);
    arp.extend_from_slice(&GW4.octets());
    arp.extend_from_slice(&[0; 6]);
    arp.extend_from_slice(&[198, 51, 100, 1]);
    let leak_udp = eth_ipv4(
        17,
        GW4,
        Ipv4Addr::new(198, 51, 100, 7),
        &[0, 53, 0, 53, 0, 8, 0, 0],
    );
    let mut buf = [0u8; MAX_PROBE_FRAME];
    let spec = ProbeSpec::all(Family::V4, Suite::Tcp).nth(443).unwrap();
    let n = builder.write(&spec, &mut buf);
    let probe = buf[..n].to_vec();
    // The same probe with its payload marker cut off: header evidence only.
    let mut headers_only = probe[..14 + 20 + 20].to_vec();
    headers_only[16..18].copy_from_slice(&40u16.to_be_bytes());

    let new = || Classifier::new(cfg.clone(), LinkType::Ethernet, MarkerKeys::open());
    // A Tor flow followed from its start, record by record.
    {
        let mut c = new();
        let flows: Vec<Vec<Vec<u8>>> = (0..16).map(|i| tor_flow(41000 + i, 4000)).collect();
        let frames: usize = flows.iter().map(Vec::len).sum();
        let bytes: usize = flows.iter().flatten().map(Vec::len).sum();
        let t = cpu_ns();
        for flow in &flows {
            for f in flow {
                black_box(c.classify(&frame(f), &allow));
            }
        }
        let ns = (cpu_ns() - t) as f64 / frames as f64;
        println!(
            "  {:<40} {:>5} B  {ns:>7.1} ns/frame  {:>6.2} Mframes/s  ({:.1} Gbit/s of Tor)",
            "tor TLS flow followed from its SYN",
            bytes / frames,
            1e3 / ns,
            bytes as f64 * 8.0 / ns / frames as f64
        );
        let st = c.flows().stats();
        assert_eq!((st.started, st.violations, st.lost_sync), (16, 0, 0));
    }
    let mut fresh = new();
    per_frame(
        "tor TLS data, already open, no run known",
        &mut fresh,
        &allow,
        &tor_data,
    );
    let mut c = new();
    c.classify(&frame(&probe), &allow); // learns the run and its target
    per_frame(
        "tor TLS data, already open, run known",
        &mut c,
        &allow,
        &tor_data,
    );
    per_frame("tor ACK, one run known", &mut c, &allow, &tor_ack);
    per_frame("housekeeping ARP", &mut c, &allow, &arp);
    per_frame("unexpected UDP leak", &mut c, &allow, &leak_udp);
    per_frame("probe leak, payload marker", &mut c, &allow, &probe);
    per_frame(
        "probe leak, header marker only",
        &mut c,
        &allow,
        &headers_only,
    );

    // Forged open-mode markers: frames stuffed with markers of distinct
    // made-up runs (each would need its own run key), to an address where
    // runs are known, so the header labelling runs too.
    println!("under a flood of forged open-mode markers:");
    for markers in [1usize, 4, 40, 150] {
        let mut c = new();
        c.classify(&frame(&probe), &allow);
        let frames: Vec<Vec<u8>> = (0..4096u64)
            .map(|i| {
                let mut payload = vec![0u8; 8];
                for m in 0..markers as u64 {
                    let mut mk = RunKey::open(i * 1000 + m).payload_marker(3);
                    mk[25] ^= 1;
                    payload.extend_from_slice(&mk);
                }
                eth_ipv4(17, GW4, Ipv4Addr::new(198, 51, 100, 7), &payload)
            })
            .collect();
        let n = 200_000;
        let t = cpu_ns();
        for i in 0..n {
            black_box(c.classify(&frame(&frames[i % frames.len()]), &allow));
        }
        let ns = (cpu_ns() - t) as f64 / n as f64;
        println!(
            "  {:<40} {:>5} B  {ns:>7.1} ns/frame  {:>6.2} Mframes/s",
            format!("{markers} forged markers per frame"),
            frames[0].len(),
            1e3 / ns
        );
    }

    println!("breakdown on the Tor ACK frame:");
    time_it(
        "leaktest_wire::attribute (run known for its target)",
        || {
            let mut k = MarkerKeys::open();
            k.learn_target(key, IpAddr::V4(RELAY));
            k
        },
        |k| leaktest_wire::attribute(black_box(&tor_ack), LinkType::Ethernet, k).is_some(),
    );
    time_it(
        "leaktest_wire::attribute (no run known)",
        MarkerKeys::open,
        |k| leaktest_wire::attribute(black_box(&tor_ack), LinkType::Ethernet, k).is_some(),
    );
    time_it("Marker::find_verified on 1454 B", MarkerKeys::open, |k| {
        leaktest_wire::Marker::find_verified(black_box(&tor_data), k).is_some()
    });
    time_it(
        "leaktest_wire::FrameSummary::parse",
        || (),
        |_| {
            leaktest_wire::FrameSummary::parse(black_box(&tor_ack), LinkType::Ethernet)
                .ip
                .protocol
                .is_some()
        },
    );
    let ep = SocketAddr::new(IpAddr::V4(RELAY), 9001);
    time_it(
        "Allowlist::contains",
        || (),
        |_| allow.contains(black_box(&ep)),
    );

    // A long leak: every frame of a full sweep (repeated) is a probe leak,
    // recorded in the findings and streamed to a pcapng file.
    let rss0 = status_kib("VmRSS:");
    let dir = std::env::temp_dir().join(format!("leaktest-watch-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let pcap_path = dir.join("leaks.pcapng");
    let mut pcap = PcapngWriter::create(&pcap_path, "bench0").unwrap();
    let mut findings = Findings::new();
    let specs: Vec<ProbeSpec> = Family::BOTH
        .into_iter()
        .flat_map(|f| {
            Suite::ALL
                .into_iter()
                .flat_map(move |s| ProbeSpec::all(f, s))
        })
        .collect();
    let t = Instant::now();
    let cpu0 = cpu_ns();
    let mut new_groups = 0;
    for i in 0..total {
        let spec = &specs[(i % specs.len() as u64) as usize];
        let n = builder.write(spec, &mut buf);
        let fr = frame(&buf[..n]);
        let class = c.classify(&fr, &allow);
        if findings.record(&fr, &class).is_some() {
            new_groups += 1;
        }
        pcap.write(&fr).unwrap();
    }
    let el = t.elapsed();
    let cpu = (cpu_ns() - cpu0) as f64 / 1e9;
    let summary = pcap.finish(&CaptureStats {
        received: total,
        dropped: 0,
        if_dropped: 0,
    });
    assert_eq!(summary.error, None, "writing the pcapng file");
    let written = summary.written;
    let rss1 = status_kib("VmRSS:");
    println!(
        "\n{total} leaked probe frames built, classified, recorded and written to pcapng in {:.2} s wall, {cpu:.2} s CPU ({:.0} kframes/s of CPU time)",
        el.as_secs_f64(),
        total as f64 / cpu / 1e3
    );
    println!(
        "  findings: {} leak packets, {} kept in detail, {} groups ({new_groups} live lines); pcapng {} frames, {:.1} MiB",
        findings.leak_packets,
        findings.leaks().len(),
        findings.groups().len(),
        written,
        std::fs::metadata(&pcap_path).map(|m| m.len()).unwrap_or(0) as f64 / 1048576.0
    );
    println!(
        "  RSS before {rss0} KiB, after {rss1} KiB (growth {} KiB); peak RSS (VmHWM) {} KiB",
        rss1.saturating_sub(rss0),
        status_kib("VmHWM:")
    );
    let health = CaptureHealth {
        packets: total,
        dropped: 0,
        canaries_sent: 3,
        canaries_seen: 3,
        ..CaptureHealth::default()
    };
    let t = Instant::now();
    let report = WatchReport::build(&WatchOutcome {
        iface: "bench0",
        findings: &findings,
        health: &health,
        flows: FlowStats::default(),
        allowlist: &AllowlistSummary::default(),
        allow: &[],
        stats: CaptureStats::default(),
        elapsed_s: el.as_secs_f64(),
        interrupted: false,
        pcap_frames: written,
    });
    let tb = t.elapsed();
    let t = Instant::now();
    report.write_json(&dir.join("r.json")).unwrap();
    let tj = t.elapsed();
    let t = Instant::now();
    report.write_junit(&dir.join("r.xml")).unwrap();
    let tx = t.elapsed();
    println!(
        "  report built in {:.0} ms, JSON ({:.1} MiB) written in {:.0} ms, JUnit in {:.1} ms; verdict {}",
        tb.as_secs_f64() * 1e3,
        std::fs::metadata(dir.join("r.json"))
            .map(|m| m.len())
            .unwrap_or(0) as f64
            / 1048576.0,
        tj.as_secs_f64() * 1e3,
        tx.as_secs_f64() * 1e3,
        report.verdict
    );
    println!();
    report.print_terminal(&mut std::io::stdout()).unwrap();
    let _ = std::fs::remove_dir_all(&dir);
}
