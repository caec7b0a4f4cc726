//! End-to-end tests of `leaktest watch` (issue 3), with the built binary, in
//! namespaces this test creates (unique names, deleted on drop, also when a
//! test fails):
//!
//! ```text
//!  ws (workstation)            gw (gateway)                         in ("internet")
//!  ws0 10.152.152.11/24 ─ gw0 10.152.152.10/24     gw1 198.51.100.2/24 ─ in0 198.51.100.1/24
//!      fd19:c33d:88bc::11/64  fd19:c33d:88bc::10/64   2001:db8:1::2/64      2001:db8:1::1/64
//!                                                                        lo 203.0.113.5, .6 ("relays")
//! ```
//!
//! The gateway runs a Whonix-style nftables `inet` policy (forwarding off,
//! workstation TCP SYN and UDP 53 redirected to local ports, output on the
//! external interface only for one uid), and a process of that uid keeps TLS
//! streams (a ClientHello, then application-data records) open to two
//! "relays" on unusual ports (5555, 8443), given to the watcher with
//! `--allow tor:`. Checked:
//! * correct gateway + full probe sweep at full rate: PASS, zero leaks, the
//!   relay streams counted as Tor, no kernel drop, the accounting closed;
//! * a gateway that forwards and masquerades: LEAK, every leaked packet
//!   attributed to the probe it came from, the counts per suite exact;
//! * a hostile root process on the correct gateway writing frames with an
//!   AF_PACKET socket (a replayed canary carrying data, a DHCP-shaped
//!   datagram to the internet, an off-link neighbour solicitation carrying
//!   data, cleartext HTTP to a relay's ORPort and to a DirPort): LEAK, each
//!   with its cause and rule;
//! * the watched interface deleted mid-run: never PASS (INCONCLUSIVE).
//!
//! Needs root: without it the tests say so and pass, unless
//! `LEAKTEST_REQUIRE_ROOT=1` (CI) makes them fail.

#[path = "support/watch_lab.rs"]
mod watch_lab;

use serde_json::Value;
use std::process::Command;
use std::time::{Duration, Instant};
use watch_lab::*;

#[test]
fn correct_gateway_passes_a_full_sweep() {
    if !is_root() {
        return;
    }
    let mut lab = build("wok", false);
    let watch = start_watch(&lab, &[]);
    lab.start_relays();
    let p = probe(&lab, &["--rate", "max"]);
    assert!(u(&p["sent"]) > 700_000, "not the full sweep: {}", p["sent"]);
    // Let the relay streams show up after the sweep too.
    std::thread::sleep(Duration::from_millis(500));
    let (code, out, w) = finish_watch(&lab, watch);
    assert_eq!(w["verdict"], "pass", "{w:#}\n{out}");
    assert_eq!(code, 0, "{out}");
    assert_eq!(u(&w["leak_packets"]), 0);
    assert_eq!(w["leaks"].as_array().unwrap().len(), 0);
    assert!(
        u(&w["tor"]["packets"]) > 0,
        "relay streams not counted as Tor"
    );
    assert_eq!(u(&w["tor"]["endpoints"]), 2);
    // Both relay streams were followed record by record from their SYN.
    let flows = &w["tor"]["flows"];
    assert_eq!(
        (u(&flows["started"]), u(&flows["already_open"])),
        (2, 0),
        "{flows}"
    );
    assert_eq!(
        (u(&flows["violations"]), u(&flows["lost_sync"])),
        (0, 0),
        "{flows}"
    );
    assert!(u(&flows["bytes_followed"]) > 2 * 205, "{flows}");
    let c = &w["capture"];
    assert_eq!(u(&c["dropped"]), 0);
    assert!(u(&c["canaries_sent"]) >= 2);
    assert_eq!(c["canaries_seen"], c["canaries_sent"]);
    // The accounting closed: every frame the kernel counted was classified.
    let a = &c["accounting"];
    assert_eq!(a["sealed"], true, "{a}");
    assert_eq!(u(&a["kernel_received"]), u(&a["delivered"]), "{a}");
    assert_eq!(
        u(&a["delivered"]),
        u(&a["barrier"]) + u(&a["handled"]),
        "{a}"
    );
    assert_eq!(u(&a["handled"]), u(&a["classified"]), "{a}");
    let by_rule: u64 = w["rules"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| u(&r["packets"]))
        .sum();
    assert_eq!(by_rule, u(&a["classified"]));
    assert!(!out.contains("LEAK"), "{out}");
}

#[test]
fn forwarding_gateway_leaks_every_probe_attributed() {
    if !is_root() {
        return;
    }
    let mut lab = build("wfw", true);
    let watch = start_watch(&lab, &[]);
    lab.start_relays();
    // A rate the forwarding gateway carries without loss, so every probe
    // it forwards is one the watcher must report.
    let p = probe(
        &lab,
        &["--suite", "icmp,udp", "--family", "both", "--rate", "20000"],
    );
    std::thread::sleep(Duration::from_millis(500));
    let (code, out, w) = finish_watch(&lab, watch);
    assert_eq!(w["verdict"], "leak", "{out}");
    assert_eq!(code, 1);
    assert_eq!(u(&w["capture"]["dropped"]), 0);
    assert!(
        out.lines().any(|l| l.starts_with("LEAK")),
        "no live leak line: {out}"
    );
    let run = p["run_id"].as_str().unwrap();

    // Every leaked packet carries a probe, and the probe fits the packet.
    let leaks = w["leaks"].as_array().unwrap();
    assert!(!leaks.is_empty());
    for l in leaks {
        let pr = &l["probe"];
        assert!(pr.is_object(), "unattributed leak: {l}");
        assert_eq!(pr["run"], run, "{l}");
        assert_eq!(pr["family"], l["family"], "{l}");
        match pr["suite"].as_str().unwrap() {
            "udp" => {
                assert_eq!(l["protocol"], 17, "{l}");
                assert_eq!(l["dst_port"], pr["dst_port"], "{l}");
            }
            "icmp" => {
                assert_eq!(l["icmp_type"], pr["icmp_type"], "{l}");
                assert_eq!(l["protocol"], pr["protocol"], "{l}");
            }
            s => panic!("a probe of suite {s} was never sent: {l}"),
        }
        // Masqueraded or not, it left through the gateway towards the target.
        let dst = l["dst"].as_str().unwrap();
        assert!(dst == "198.51.100.1" || dst == "2001:db8:1::1", "{l}");
    }

    // Counts per family and suite, from the leak groups (UDP probes are the
    // only protocol-17 traffic; ICMP probes the only ICMP/ICMPv6 traffic).
    let mut udp = [0u64; 2];
    let mut icmp = [0u64; 2];
    let mut unattributed = 0u64;
    for g in w["groups"].as_array().unwrap() {
        let f = usize::from(g["family"] == "ipv6");
        if g["probes"] != true {
            unattributed += u(&g["packets"]);
            continue;
        }
        match g["protocol"].as_u64() {
            Some(17) => udp[f] += u(&g["packets"]),
            Some(1) | Some(58) => icmp[f] += u(&g["packets"]),
            other => panic!("unexpected leak group protocol {other:?}: {g}"),
        }
    }
    assert_eq!(unattributed, 0, "{w:#}");
    for (f, name) in [(0, "ipv4"), (1, "ipv6")] {
        let sent_udp = u(&p["counts"][name]["udp"]);
        assert_eq!(sent_udp, 65536);
        assert_eq!(udp[f], sent_udp, "{name}: UDP probes leaked vs sent");
        let sent_icmp = u(&p["counts"][name]["icmp"]);
        // The forward chain accepts everything and nothing drops conntrack-
        // invalid packets, so every ICMP type is forwarded too (the ones
        // conntrack cannot track leave un-NATed).
        assert_eq!(icmp[f], sent_icmp, "{name}: ICMP probes leaked vs sent");
    }
    // Exactly the probes sent, each exactly once: the run's seq set is the
    // icmp and udp suites of both families.
    let run = &w["runs"][0];
    assert_eq!(run["run"], run_of(&p));
    let want: Vec<String> = leaktest_wire::Family::BOTH
        .into_iter()
        .flat_map(|fam| {
            [leaktest_wire::Suite::Icmp, leaktest_wire::Suite::Udp].map(move |s| {
                let base = s.base()
                    + if fam == leaktest_wire::Family::V6 {
                        1 << 20
                    } else {
                        0
                    };
                format!("{}-{}", base, base + s.probe_count(fam) - 1)
            })
        })
        .collect();
    assert_eq!(run["seqs"], want.join(","), "{run}");
    assert_eq!(
        u(&run["distinct"]),
        u(&run["packets"]),
        "a probe seen twice: {run}"
    );
    assert_eq!(u(&w["leak_packets"]), udp[0] + udp[1] + icmp[0] + icmp[1]);
    // The relay streams are still Tor, not leaks.
    assert_eq!(u(&w["tor"]["endpoints"]), 2);
}

#[test]
fn deleted_interface_is_never_a_pass() {
    if !is_root() {
        return;
    }
    let lab = build("wdl", false);
    let watch = start_watch(&lab, &["--duration", "6"]);
    std::thread::sleep(Duration::from_millis(1500));
    ip(lab.ns("gw"), &["link", "del", "gw1"]);
    let (code, out, w) = wait_watch(&lab, watch);
    assert_eq!(w["verdict"], "inconclusive", "{w:#}\n{out}");
    assert_eq!(code, 3);
    let reasons = w["reasons"].to_string();
    assert!(reasons.contains("gw1"), "{reasons}");
}

#[test]
fn tor_control_port_allowlist_and_restrict_tor() {
    if !is_root() {
        return;
    }
    let mut lab = build("wtr", false);
    let _tor = start_tor(&lab);
    let before = tor_conf(&lab, "ReachableORAddresses");
    let watch = start_watch_with(
        &lab,
        &["--tor-control", "127.0.0.1:9051", "--restrict-tor"],
        false,
    );
    // Restricted while the watch runs, with a journal to undo it.
    assert_eq!(tor_conf(&lab, "FascistFirewall"), "1");
    assert!(tor_conf(&lab, "ReachableORAddresses").contains("443"));
    assert!(lab.path("state").read_dir().unwrap().next().is_some());
    lab.start_relays();
    std::thread::sleep(Duration::from_millis(800));
    // A dropped SSH session (SIGHUP) ends the watch like SIGTERM: full
    // report, restriction undone.
    watch.signal(libc::SIGHUP).unwrap();
    let (code, out, w) = wait_watch(&lab, watch);
    // The relay streams are Tor because Tor's control port says so (bridges).
    assert_eq!(w["verdict"], "pass", "{w:#}\n{out}");
    assert_eq!(code, 0);
    assert_eq!(u(&w["tor"]["endpoints"]), 2, "{w:#}");
    assert!(u(&w["tor"]["packets"]) > 0);
    // SIGHUP ended the watch and the restriction was undone.
    assert_eq!(tor_conf(&lab, "FascistFirewall"), "0");
    assert_eq!(tor_conf(&lab, "ReachableORAddresses"), before);
    assert!(lab.path("state").read_dir().unwrap().next().is_none());
}

/// A DHCPv4 BOOTREQUEST from `mac` carrying `hostname` (option 12).
fn dhcp_request(mac: [u8; 6], hostname: &[u8]) -> Vec<u8> {
    let mut b = vec![0u8; 240];
    b[0..3].copy_from_slice(&[1, 1, 6]);
    b[28..34].copy_from_slice(&mac);
    b[236..240].copy_from_slice(&[0x63, 0x82, 0x53, 0x63]);
    b.extend_from_slice(&[53, 1, 1, 12, hostname.len() as u8]);
    b.extend_from_slice(hostname);
    b.push(255);
    b
}

#[test]
fn a_hostile_process_on_the_gateway_cannot_pass() {
    use etherparse::{Icmpv6Type, PacketBuilder};
    if !is_root() {
        return;
    }
    let mut lab = build("whp", false);
    let watch = start_watch(&lab, &[]);
    lab.start_relays();
    let gw_mac = lab.ns("gw").mac("gw1").unwrap();
    let hop_mac = lab.ns("in").mac("in0").unwrap();
    let gw4 = [198, 51, 100, 2];
    let internet4 = [203, 0, 113, 7];
    let gw6: [u8; 16] = "2001:db8:1::2"
        .parse::<std::net::Ipv6Addr>()
        .unwrap()
        .octets();
    // Frames a root process writes with an AF_PACKET socket: no firewall sees them.
    let mut frames: Vec<(&str, Vec<u8>)> = Vec::new();
    // 1. The watcher's own canary, sniffed, sent on to the next hop with 93 bytes of data.
    let canary = lab
        .ns("gw")
        .run_in(|| {
            let mut cap = pcap::Capture::from_device("gw1")
                .unwrap()
                .immediate_mode(true)
                .timeout(100)
                .open()
                .unwrap();
            cap.filter("ether proto 0x88b5", true).unwrap();
            let deadline = Instant::now() + Duration::from_secs(5);
            while Instant::now() < deadline {
                if let Ok(p) = cap.next_packet() {
                    return Some(p.data.to_vec());
                }
            }
            None
        })
        .unwrap()
        .expect("a canary of the watcher on gw1");
    let mut replay = canary.clone();
    replay[0..6].copy_from_slice(&hop_mac);
    replay.extend_from_slice(&[b'D'; 93]);
    frames.push(("replayed canary", replay));
    // 2. A DHCP-shaped datagram from the gateway's MAC to an internet address,
    //    with data in its hostname option.
    let mut f = Vec::new();
    PacketBuilder::ethernet2(gw_mac, hop_mac)
        .ipv4(gw4, internet4, 64)
        .udp(68, 67)
        .write(&mut f, &dhcp_request(gw_mac, b"SECRET-DATA"))
        .unwrap();
    frames.push(("dhcp to the internet", f));
    // 3. A neighbour solicitation from the global address to an off-link
    //    address, with data after its options.
    let mut ns = "2001:db8:1::1"
        .parse::<std::net::Ipv6Addr>()
        .unwrap()
        .octets()
        .to_vec();
    ns.extend_from_slice(&[1, 1]);
    ns.extend_from_slice(&gw_mac);
    ns.extend_from_slice(b"exfiltrated after the options");
    let mut f = Vec::new();
    PacketBuilder::ethernet2(gw_mac, hop_mac)
        .ipv6(
            gw6,
            "2001:db8:99::7"
                .parse::<std::net::Ipv6Addr>()
                .unwrap()
                .octets(),
            255,
        )
        .icmpv6(Icmpv6Type::Unknown {
            type_u8: 135,
            code_u8: 0,
            bytes5to8: [0; 4],
        })
        .write(&mut f, &ns)
        .unwrap();
    frames.push(("off-link neighbour solicitation", f));
    // 4. Cleartext HTTP to a relay's ORPort, from its SYN; and to a DirPort.
    for (name, dst, port) in [
        ("http to the orport", [203, 0, 113, 5], 5555u16),
        ("http to a dirport", [203, 0, 113, 6], 9030),
    ] {
        let mut syn = Vec::new();
        PacketBuilder::ethernet2(gw_mac, hop_mac)
            .ipv4(gw4, dst, 64)
            .tcp(45123, port, 1000, 64240)
            .syn()
            .write(&mut syn, &[])
            .unwrap();
        frames.push((name, syn));
        let mut get = Vec::new();
        PacketBuilder::ethernet2(gw_mac, hop_mac)
            .ipv4(gw4, dst, 64)
            .tcp(45123, port, 1001, 64240)
            .psh()
            .ack(1)
            .write(&mut get, b"GET /secret HTTP/1.1\r\nHost: relay\r\n\r\n")
            .unwrap();
        frames.push((name, get));
    }
    let sent = frames.len();
    lab.ns("gw")
        .run_in(move || {
            let inj = leaktest_capture::CanaryInjector::open("gw1").unwrap();
            for (name, f) in &frames {
                inj.send_frame(f).unwrap_or_else(|e| panic!("{name}: {e}"));
                std::thread::sleep(Duration::from_millis(20));
            }
        })
        .unwrap();
    assert_eq!(sent, 7);
    std::thread::sleep(Duration::from_millis(300));
    let (code, out, w) = finish_watch(&lab, watch);
    assert_eq!(
        (w["verdict"].as_str(), code),
        (Some("leak"), 1),
        "{w:#}\n{out}"
    );
    let leaks = w["leaks"].as_array().unwrap();
    let has = |cause: &str, rule: &str, pick: &dyn Fn(&Value) -> bool| {
        leaks
            .iter()
            .any(|l| l["cause"] == cause && l["rule"] == rule && pick(l))
    };
    assert!(
        has("forged-canary", "canary", &|l| l["len"] == 64 + 93
            && l["cause_detail"] == "altered"),
        "the replayed canary: {w:#}"
    );
    assert!(
        has("housekeeping-shaped", "dhcpv4", &|l| l["dst"]
            == "203.0.113.7"),
        "the DHCP datagram: {w:#}"
    );
    assert!(
        has("housekeeping-shaped", "neighbour-discovery", &|l| l["dst"]
            == "2001:db8:99::7"),
        "the neighbour solicitation: {w:#}"
    );
    assert!(
        has("not-tor", "tor", &|l| l["dst_port"] == 5555
            && l["cause_detail"] == "an HTTP request in the clear"),
        "HTTP to the ORPort: {w:#}"
    );
    assert!(
        has("unexpected", "default", &|l| l["dst_port"] == 9030
            && l["tcp_flags"] == "PA"),
        "HTTP to the DirPort: {w:#}"
    );
    // The relay streams (real TLS-shaped flows) stayed Tor.
    assert!(u(&w["tor"]["packets"]) > 0);
    assert_eq!(
        u(&w["tor"]["flows"]["started"]),
        3,
        "two relay streams and the attacker's SYN"
    );
    // The live lines name the rule.
    assert!(
        out.contains("[rule canary]") && out.contains("[rule dhcpv4]"),
        "{out}"
    );
}

#[test]
fn bad_options_and_missing_interface_exit_2() {
    // Parsing errors: refused before anything starts (no namespace needed).
    let run = |args: &[&str]| {
        let out = Command::new(BIN).args(args).output().unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (code, err) = run(&["watch"]);
    assert_eq!(code, Some(2), "{err}");
    let (code, err) = run(&["watch", "--iface", "lt-nonexist0", "--duration", "-3"]);
    assert_eq!(code, Some(2), "{err}");
    if !is_root() {
        return;
    }
    // Everything else in a namespace of its own.
    for (args, want) in [
        (
            &["--iface", "lt-nonexist0", "--allow", "nonsense"][..],
            "--allow",
        ),
        (
            &["--iface", "lt-nonexist0", "--allow", "ssh:198.51.100.7:22"][..],
            "unknown kind",
        ),
        (
            &["--iface", "lt-nonexist0", "--duration", "1"][..],
            "lt-nonexist0",
        ),
        (
            &["--iface", "lo", "--tor-control", "127.0.0.1:9"][..],
            "control",
        ),
        (&["--iface", "lo", "--json", "/dev/full"][..], "device"),
        (
            &["--iface", "lo", "--json", "/nonexistent-dir/w.json"][..],
            "does not exist",
        ),
    ] {
        let (code, err) = watch_in_empty_ns(args);
        assert_eq!(code, Some(2), "{args:?}: {err}");
        assert!(err.starts_with("leaktest: error:"), "{args:?}: {err}");
        assert!(
            err.to_lowercase().contains(&want.to_lowercase()),
            "{args:?}: {err}"
        );
        assert_eq!(err.trim().lines().count(), 1, "{args:?}: {err}");
    }
}

/// The watch's children (its sandboxed reader), from /proc.
fn children(pid: u32) -> Vec<u32> {
    std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children"))
        .unwrap_or_default()
        .split_whitespace()
        .map(|p| p.parse().unwrap())
        .collect()
}

/// Issue 12: the frames are read and judged by a child that runs as the
/// `--user` (here a uid without a passwd entry) with no capability, no new
/// privileges and a seccomp filter, while the privileged parent reads
/// nothing from the network; the verdict and the counts are those of the
/// forwarding gateway (every ICMP probe leaks, each attributed). A reader
/// killed mid-watch is exit 2, never a verdict; `--no-sandbox` keeps one
/// privileged process.
#[test]
fn the_reader_is_sandboxed_and_judges_the_same() {
    if !is_root() {
        return;
    }
    let lab = build("wsb", true);
    let html = lab.path("watch.html");
    let html_arg = html.display().to_string();
    let watch = start_watch(&lab, &["--user", "4000123", "--html", &html_arg]);
    let kids = children(watch.pid());
    assert_eq!(kids.len(), 1, "one sandboxed reader: {kids:?}");
    let reader = leaktest_priv::Status::of(kids[0]).unwrap();
    assert_eq!(reader.uids, [4_000_123; 4], "{reader:?}");
    assert_eq!(reader.gids, [4_000_123; 4], "{reader:?}");
    assert_eq!(
        (
            reader.cap_eff,
            reader.cap_prm,
            reader.cap_inh,
            reader.cap_amb
        ),
        (0, 0, 0, 0),
        "{reader:?}"
    );
    assert_eq!(reader.cap_bnd, 0, "bounding set emptied: {reader:?}");
    assert!(reader.no_new_privs, "{reader:?}");
    assert_eq!(reader.seccomp, 2, "{reader:?}");
    assert!(reader.is_sandboxed());
    let monitor = leaktest_priv::Status::of(watch.pid()).unwrap();
    assert_eq!(
        monitor.uids, [0; 4],
        "the monitor stays root to restore Tor"
    );
    assert_eq!(monitor.seccomp, 0);

    // UDP too, so that the HTML page has its port strips.
    let p = probe(
        &lab,
        &["--suite", "icmp,udp", "--family", "both", "--rate", "20000"],
    );
    std::thread::sleep(Duration::from_millis(500));
    let (code, out, w) = finish_watch(&lab, watch);
    assert_eq!(code, 1, "{out}");
    assert_eq!(w["verdict"], "leak");
    assert_eq!(u(&w["leak_packets"]), u(&p["sent"]), "{out}");
    assert!(w["leaks"]
        .as_array()
        .unwrap()
        .iter()
        .all(|l| l["probe"]["run"] == p["run_id"]));
    assert!(
        lab.path("ready").exists(),
        "the monitor wrote the ready file"
    );
    check_html_page(&html, p["run_id"].as_str().unwrap(), &w);

    // A reader that dies is never a verdict.
    let _ = std::fs::remove_file(lab.path("watch.json"));
    std::fs::remove_file(lab.path("ready")).unwrap();
    let watch = start_watch(&lab, &[]);
    let kids = children(watch.pid());
    assert_eq!(kids.len(), 1);
    // SAFETY: kill of the reader this test's watch started, by PID.
    assert_eq!(unsafe { libc::kill(kids[0] as i32, libc::SIGKILL) }, 0);
    let st = watch
        .wait_timeout(Duration::from_secs(20))
        .unwrap()
        .expect("the watch must end when its reader dies");
    assert_eq!(st.code(), Some(2));
    assert!(
        !lab.path("watch.json").exists(),
        "no report without a reader"
    );

    // --no-sandbox: one process, privileged.
    let _ = std::fs::remove_file(lab.path("ready"));
    let watch = start_watch(&lab, &["--no-sandbox"]);
    assert!(children(watch.pid()).is_empty());
    let one = leaktest_priv::Status::of(watch.pid()).unwrap();
    assert_ne!(one.cap_eff, 0);
    let (code, out, _) = finish_watch(&lab, watch);
    assert_eq!(code, 0, "{out}");
}

/// The HTML report of a LEAK (issue 12): the page names the verdict, the
/// probe run and the leak groups, holds no script, is made again identically
/// from the JSON by `leaktest report`, and renders in a real browser
/// (chromium, headless) with the red verdict banner on screen.
fn check_html_page(html: &std::path::Path, run: &str, report: &serde_json::Value) {
    let page = std::fs::read_to_string(html).unwrap();
    assert!(
        page.starts_with("<!DOCTYPE html>"),
        "{}",
        &page[..80.min(page.len())]
    );
    assert!(page.contains("class=\"verdict leak\""), "no LEAK banner");
    assert!(page.contains(run), "the probe run is not named");
    assert!(page.contains("leaked packets in"), "no leak groups");
    assert!(!page.contains("<script"), "the page must hold no script");

    // The same page again from the JSON, by `leaktest report`.
    let json = html.with_file_name("watch.json");
    let again = html.with_file_name("again.html");
    let o = Command::new(BIN)
        .arg("report")
        .arg(&json)
        .arg("--html")
        .arg(&again)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(std::fs::read_to_string(&again).unwrap(), page);

    let found = |c: &str| {
        Command::new("sh")
            .args(["-c", &format!("command -v {c}")])
            .output()
            .is_ok_and(|o| o.status.success())
    };
    let Some(chromium) = ["chromium", "chromium-browser"]
        .into_iter()
        .find(|c| found(c))
    else {
        assert!(
            std::env::var_os("LEAKTEST_REQUIRE_ROOT").is_none(),
            "chromium is needed to render the HTML report (scripts/install-deps.sh installs it)"
        );
        eprintln!("skipped: no chromium to render the HTML report");
        return;
    };
    // The page as the browser built it: no console message (the page has no
    // script, so any would be an error), and the numbers it shows are the
    // JSON report's.
    let o = Command::new(chromium)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            // Console messages are logged at verbosity 1 as
            // `[…:INFO:CONSOLE:LINE] "message", source: …` (measured).
            "--enable-logging=stderr",
            "--v=1",
            "--dump-dom",
        ])
        .arg(format!(
            "--user-data-dir={}",
            html.with_file_name("chromium-profile").display()
        ))
        .arg(format!("file://{}", html.display()))
        .env("HOME", html.parent().unwrap())
        .output()
        .unwrap();
    let dom = String::from_utf8_lossy(&o.stdout);
    let log = String::from_utf8_lossy(&o.stderr);
    assert!(
        !log.contains(":CONSOLE"),
        "console messages while rendering: {log}"
    );
    let shown = |id: &str| -> u64 {
        let at = dom
            .find(&format!("id=\"{id}\">"))
            .unwrap_or_else(|| panic!("no #{id} in the rendered page"));
        let rest = &dom[at..];
        let start = rest.find('>').unwrap() + 1;
        let end = rest[start..].find('<').unwrap() + start;
        rest[start..end].trim().parse().unwrap()
    };
    assert_eq!(shown("leak-packets"), u(&report["leak_packets"]));
    assert_eq!(
        shown("leak-groups"),
        report["groups"].as_array().unwrap().len() as u64
    );
    assert_eq!(shown("dropped"), u(&report["capture"]["dropped"]));
    assert_eq!(shown("captured"), u(&report["capture"]["packets"]));
    assert_eq!(
        shown("canaries-sent"),
        u(&report["capture"]["canaries_sent"])
    );
    assert_eq!(
        shown("canaries-seen"),
        u(&report["capture"]["canaries_seen"])
    );
    // Every UDP port leaked, in each family: two full strips.
    assert_eq!(
        dom.matches("<span class=\"strip-total\">65536</span>")
            .count(),
        2,
        "{}",
        &dom[..dom.len().min(2000)]
    );

    let shot = html.with_file_name("watch.png");
    let o = Command::new(chromium)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--hide-scrollbars",
            "--window-size=1200,900",
        ])
        .arg(format!(
            "--user-data-dir={}",
            html.with_file_name("chromium-profile").display()
        ))
        .arg(format!("--screenshot={}", shot.display()))
        .arg(format!("file://{}", html.display()))
        .env("HOME", html.parent().unwrap())
        .output()
        .unwrap();
    assert!(
        shot.exists(),
        "chromium made no screenshot: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    // The verdict banner's red (#b3261e) covers a good part of the screen.
    let decoder = png::Decoder::new(std::io::BufReader::new(std::fs::File::open(&shot).unwrap()));
    let mut reader = decoder.read_info().unwrap();
    let mut buf = vec![0; reader.output_buffer_size().unwrap()];
    let info = reader.next_frame(&mut buf).unwrap();
    let bpp = info.color_type.samples();
    let red = buf[..info.buffer_size()]
        .chunks(bpp)
        .filter(|p| p[0] == 0xb3 && p[1] == 0x26 && p[2] == 0x1e)
        .count();
    assert!(
        red > 20_000,
        "the red LEAK banner is not on the screenshot ({red} pixels of it, {}x{})",
        info.width,
        info.height
    );
}
