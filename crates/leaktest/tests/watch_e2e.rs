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

use leaktest_netns::{veth, Netns, Proc, Topology};
use serde_json::Value;
use std::io::{BufRead, BufReader, Read};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_leaktest");
/// The uid the gateway lets out (Tor's, on a real gateway).
const TOR_UID: &str = "65534";
const RELAYS: [&str; 2] = ["203.0.113.5:5555", "203.0.113.6:8443"];

fn is_root() -> bool {
    leaktest_netns::require_root("watch_e2e")
}

/// The Whonix-style gateway policy. `broken`: forwarding with masquerade
/// (and none of the redirections), the classic misconfiguration.
fn ruleset(broken: bool) -> String {
    let common_out = format!(
        r#"
    chain output {{
        type filter hook output priority filter; policy drop;
        ct state invalid drop
        oifname "lo" accept
        ct state established,related accept
        icmpv6 type {{ nd-router-solicit, nd-neighbor-solicit, nd-neighbor-advert }} accept
        oifname "gw0" accept
        oifname "gw1" meta skuid {TOR_UID} accept
    }}
    chain input {{
        type filter hook input priority filter; policy drop;
        ct state invalid drop
        iifname "lo" accept
        ct state established,related accept
        icmpv6 type {{ nd-neighbor-solicit, nd-neighbor-advert, nd-router-advert }} accept
        iifname "gw0" tcp dport 9040 accept
        iifname "gw0" udp dport 5300 accept
    }}"#
    );
    if broken {
        format!(
            r#"table inet ltgw {{
    chain forward {{ type filter hook forward priority filter; policy accept; }}
    chain postrouting {{
        type nat hook postrouting priority srcnat; policy accept;
        oifname "gw1" masquerade
    }}{common_out}
}}
"#
        )
    } else {
        format!(
            r#"table inet ltgw {{
    chain prerouting {{
        type nat hook prerouting priority dstnat; policy accept;
        iifname "gw0" udp dport 53 redirect to :5300
        iifname "gw0" tcp flags & (fin | syn | rst | ack) == syn redirect to :9040
    }}
    chain forward {{ type filter hook forward priority filter; policy drop; }}{common_out}
}}
"#
        )
    }
}

/// Script of the "Tor" process (perl: part of every Debian system): two
/// streams to the relays shaped like Tor's TLS links (a handshake record
/// holding a ClientHello, then application-data records of one 514-byte cell
/// of random bytes), one record on each every 50 ms, for at most two minutes.
const RELAY_CLIENT: &str = r#"
use IO::Socket::INET;
$| = 1;
my @s = map { IO::Socket::INET->new(PeerAddr => $_, Proto => 'tcp', Timeout => 5)
              or die "connect $_: $!\n" } @ARGV;
sub rnd { join '', map { chr(int(rand(256))) } 1 .. $_[0] }
for my $s (@s) { print {$s} "\x16\x03\x01\x00\xc8\x01" . rnd(199) or die "write: $!\n"; }
print "connected\n";
my $end = time + 120;
while (time < $end) {
    for my $s (@s) { print {$s} ("\x17\x03\x03\x02\x02" . rnd(514)) or exit 0; }
    select(undef, undef, undef, 0.05);
}
"#;

struct Lab {
    dir: tempfile::TempDir,
    stop: Arc<AtomicBool>,
    listeners: Vec<std::thread::JoinHandle<()>>,
    relay_client: Option<Proc>,
    // Dropped last: namespaces (and every process in them) go away.
    topo: Topology,
}

impl Lab {
    fn ns(&self, s: &str) -> &Arc<Netns> {
        self.topo.get(s).expect("namespace")
    }
    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(p) = self.relay_client.take() {
            p.terminate(Duration::from_millis(500));
        }
        for l in self.listeners.drain(..) {
            let _ = l.join();
        }
    }
}

fn ip(ns: &Netns, args: &[&str]) {
    ns.ip(args.iter().copied())
        .unwrap_or_else(|e| panic!("ip -n {} {args:?}: {e}", ns.name()));
}

/// Accepts connections on `addr` in `ns` and reads them until the lab stops.
fn listener(ns: &Netns, addr: &'static str, stop: Arc<AtomicBool>) -> std::thread::JoinHandle<()> {
    ns.thread(move || {
        let l = TcpListener::bind(addr).unwrap_or_else(|e| panic!("bind {addr}: {e}"));
        l.set_nonblocking(true).unwrap();
        let mut conns = Vec::new();
        let deadline = Instant::now() + Duration::from_secs(300);
        while !stop.load(Ordering::SeqCst) && Instant::now() < deadline {
            if let Ok((mut c, _)) = l.accept() {
                let stop = stop.clone();
                c.set_read_timeout(Some(Duration::from_millis(200)))
                    .unwrap();
                conns.push(std::thread::spawn(move || {
                    let mut buf = [0u8; 4096];
                    while !stop.load(Ordering::SeqCst) {
                        match c.read(&mut buf) {
                            Ok(0) => break,
                            Ok(_) => {}
                            Err(e)
                                if matches!(
                                    e.kind(),
                                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                                ) => {}
                            Err(_) => break,
                        }
                    }
                }));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        for c in conns {
            let _ = c.join();
        }
    })
    .expect("listener thread")
}

fn build(tag: &str, broken: bool) -> Lab {
    let mut topo = Topology::new(tag);
    let ws = topo.add("ws").unwrap();
    let gw = topo.add("gw").unwrap();
    let inet = topo.add("in").unwrap();
    veth(&ws, "ws0", &gw, "gw0").unwrap();
    veth(&gw, "gw1", &inet, "in0").unwrap();
    for (ns, dev, v4, v6) in [
        (&ws, "ws0", "10.152.152.11/24", "fd19:c33d:88bc::11/64"),
        (&gw, "gw0", "10.152.152.10/24", "fd19:c33d:88bc::10/64"),
        (&gw, "gw1", "198.51.100.2/24", "2001:db8:1::2/64"),
        (&inet, "in0", "198.51.100.1/24", "2001:db8:1::1/64"),
    ] {
        ip(ns, &["addr", "add", v4, "dev", dev]);
        ip(ns, &["-6", "addr", "add", v6, "dev", dev, "nodad"]);
    }
    ip(&inet, &["addr", "add", "203.0.113.5/32", "dev", "lo"]);
    ip(&inet, &["addr", "add", "203.0.113.6/32", "dev", "lo"]);
    ip(&ws, &["route", "add", "default", "via", "10.152.152.10"]);
    ip(
        &ws,
        &["-6", "route", "add", "default", "via", "fd19:c33d:88bc::10"],
    );
    ip(&gw, &["route", "add", "default", "via", "198.51.100.1"]);
    ip(
        &gw,
        &["-6", "route", "add", "default", "via", "2001:db8:1::1"],
    );
    let fwd = if broken { "1" } else { "0" };
    gw.sysctl("net.ipv4.ip_forward", fwd).unwrap();
    gw.sysctl("net.ipv6.conf.all.forwarding", fwd).unwrap();

    let dir = tempfile::tempdir().unwrap();
    let rules = dir.path().join("gw.nft");
    std::fs::write(&rules, ruleset(broken)).unwrap();
    let mut nft = gw.command("nft");
    nft.arg("-f").arg(&rules);
    gw.exec(nft).expect("loading the gateway ruleset");

    let stop = Arc::new(AtomicBool::new(false));
    let listeners = RELAYS
        .iter()
        .map(|a| listener(&inet, a, stop.clone()))
        .collect();
    let lab = Lab {
        dir,
        stop,
        listeners,
        relay_client: None,
        topo,
    };
    // Resolve neighbours before the sweep (the gateway answers no ping).
    for target in ["10.152.152.10", "fd19:c33d:88bc::10"] {
        let mut ping = lab.ns("ws").command("ping");
        ping.args(["-c", "1", "-W", "1", target]);
        let _ = ping.output();
    }
    lab
}

impl Lab {
    /// Starts the "Tor" process: only its uid may leave through gw1. Started
    /// after the watch, its flows are followed from their SYN.
    fn start_relays(&mut self) {
        let mut cmd = self.ns("gw").command("setpriv");
        cmd.args([
            &format!("--reuid={TOR_UID}"),
            &format!("--regid={TOR_UID}"),
            "--clear-groups",
            "perl",
            "-e",
            RELAY_CLIENT,
        ])
        .args(RELAYS)
        .stdout(std::process::Stdio::piped());
        let client = self.ns("gw").spawn(cmd).expect("relay client");
        let out = client.take_stdout().unwrap();
        let mut line = String::new();
        let _ = BufReader::new(out).read_line(&mut line);
        assert_eq!(
            line.trim(),
            "connected",
            "the relay client could not connect"
        );
        self.relay_client = Some(client);
    }
}

/// Starts `leaktest watch` on gw1 and waits until its capture is proven live.
fn start_watch(lab: &Lab, extra: &[&str]) -> Proc {
    start_watch_with(lab, extra, true)
}

fn start_watch_with(lab: &Lab, extra: &[&str], allow_relays: bool) -> Proc {
    let ready = lab.path("ready");
    let mut cmd = lab.ns("gw").command(BIN);
    cmd.args(["watch", "--iface", "gw1"]);
    if allow_relays {
        for r in RELAYS {
            cmd.args(["--allow", &format!("tor:{r}")]);
        }
    }
    cmd.env("LEAKTEST_STATE_DIR", lab.path("state"));
    cmd.arg("--json")
        .arg(lab.path("watch.json"))
        .arg("--junit")
        .arg(lab.path("watch.xml"))
        .arg("--pcap")
        .arg(lab.path("leaks.pcapng"))
        .arg("--ready-file")
        .arg(&ready)
        .args(extra)
        .stdout(std::process::Stdio::piped());
    let p = lab.ns("gw").spawn(cmd).expect("spawning leaktest watch");
    let deadline = Instant::now() + Duration::from_secs(20);
    while !ready.exists() {
        if let Ok(Some(st)) = p.try_wait() {
            panic!("leaktest watch ended before it was ready: {st:?}");
        }
        assert!(
            Instant::now() < deadline,
            "leaktest watch never became ready"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    p
}

/// Ends the watch with SIGTERM and returns its exit code, stdout and JSON report.
fn finish_watch(lab: &Lab, p: Proc) -> (i32, String, Value) {
    p.signal(libc::SIGTERM).unwrap();
    wait_watch(lab, p)
}

fn wait_watch(lab: &Lab, p: Proc) -> (i32, String, Value) {
    let mut out = String::new();
    if let Some(mut o) = p.take_stdout() {
        let _ = o.read_to_string(&mut out);
    }
    let st = p
        .wait_timeout(Duration::from_secs(30))
        .unwrap()
        .expect("leaktest watch did not end");
    let code = st.code().expect("leaktest watch killed by a signal");
    let json = read_json(&lab.path("watch.json"));
    (code, out, json)
}

fn read_json(p: &Path) -> Value {
    let text = std::fs::read_to_string(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
    serde_json::from_str(&text).unwrap()
}

/// Runs `leaktest probe` from the workstation and returns its JSON report.
fn probe(lab: &Lab, args: &[&str]) -> Value {
    let json = lab.path("probe.json");
    let mut cmd = lab.ns("ws").command(BIN);
    cmd.args([
        "probe",
        "--target",
        "198.51.100.1",
        "--target6",
        "2001:db8:1::1",
    ])
    .args(args)
    .arg("--json")
    .arg(&json);
    let out = cmd.output().expect("running leaktest probe");
    assert!(
        out.status.success(),
        "leaktest probe failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v = read_json(&json);
    assert_eq!(v["sent"], v["planned"], "the probe did not send everything");
    v
}

fn run_of(probe: &Value) -> &str {
    probe["run_id"].as_str().unwrap()
}

fn u(v: &Value) -> u64 {
    v.as_u64().unwrap_or_else(|| panic!("not a count: {v}"))
}

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
                format!("{}-{}", base, base + s.probe_count() - 1)
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

/// A real tor in the gateway namespace (`DisableNetwork 1`: it never
/// connects anywhere) whose configured bridges are the two relays.
fn start_tor(lab: &Lab) -> Proc {
    let d = lab.path("tor");
    std::os::unix::fs::DirBuilderExt::mode(&mut std::fs::DirBuilder::new(), 0o700)
        .create(&d)
        .unwrap();
    std::fs::write(d.join("defaults"), "").unwrap();
    std::fs::write(
        d.join("torrc"),
        format!(
            "DataDirectory {data}\nDisableNetwork 1\nSocksPort 0\nControlPort 127.0.0.1:9051\n\
             CookieAuthentication 1\nLog notice file {log}\nBridge {b0}\nBridge {b1}\n",
            data = d.join("data").display(),
            log = d.join("log").display(),
            b0 = RELAYS[0],
            b1 = RELAYS[1],
        ),
    )
    .unwrap();
    let mut cmd = lab.ns("gw").command("tor");
    cmd.arg("-f")
        .arg(d.join("torrc"))
        .arg("--defaults-torrc")
        .arg(d.join("defaults"))
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null());
    let tor = lab.ns("gw").spawn(cmd).expect("tor is installed");
    let deadline = Instant::now() + Duration::from_secs(25);
    while lab
        .ns("gw")
        .run_in(|| std::net::TcpStream::connect("127.0.0.1:9051").is_err())
        .unwrap()
    {
        assert!(
            tor.is_running(),
            "tor exited: {}",
            std::fs::read_to_string(d.join("log")).unwrap_or_default()
        );
        assert!(
            Instant::now() < deadline,
            "tor did not open its control port"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    tor
}

/// Tor's current value of `key`, read through its control port.
fn tor_conf(lab: &Lab, key: &'static str) -> String {
    lab.ns("gw")
        .run_in(move || {
            let target = leaktest_tor::ControlTarget::parse("127.0.0.1:9051").unwrap();
            let opts = leaktest_tor::ConnectOptions::new(target);
            let mut c = leaktest_tor::Controller::connect(&opts).unwrap();
            let v = c.getconf(&[key]).unwrap();
            v.into_iter()
                .next()
                .and_then(|(_, v)| v)
                .unwrap_or_default()
        })
        .unwrap()
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
    let (code, out, w) = finish_watch(&lab, watch);
    // The relay streams are Tor because Tor's control port says so (bridges).
    assert_eq!(w["verdict"], "pass", "{w:#}\n{out}");
    assert_eq!(code, 0);
    assert_eq!(u(&w["tor"]["endpoints"]), 2, "{w:#}");
    assert!(u(&w["tor"]["packets"]) > 0);
    // SIGTERM ended the watch and the restriction was undone.
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

/// Runs `leaktest watch ARGS` in a fresh namespace of its own (never in the
/// host's: the watcher injects canaries) and returns its exit code and stderr.
fn watch_in_empty_ns(args: &[&str]) -> (Option<i32>, String) {
    let ns = Netns::create(&leaktest_netns::unique_prefix("wbo")).unwrap();
    let mut cmd = ns.command(BIN);
    cmd.arg("watch").args(args);
    let out = cmd.output().unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
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
