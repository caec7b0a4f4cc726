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
//! external interface only for one uid), and a process of that uid keeps TCP
//! streams open to two "relays" on unusual ports (5555, 8443), given to the
//! watcher with `--allow`. Checked:
//! * correct gateway + full probe sweep at full rate: PASS, zero leaks, the
//!   relay streams counted as Tor, no kernel drop;
//! * a gateway that forwards and masquerades: LEAK, every leaked packet
//!   attributed to the probe it came from, the counts per suite right;
//! * the watched interface deleted mid-run: never PASS (INCONCLUSIVE).
//!
//! Needs root; without it the tests say so and pass vacuously.

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
    // SAFETY: geteuid has no preconditions.
    let root = unsafe { libc::geteuid() } == 0;
    if !root {
        eprintln!("skipping: end-to-end watch tests need root");
    }
    root
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
/// streams to the relays, a little data on each every 50 ms, for at most
/// two minutes.
const RELAY_CLIENT: &str = r#"
use IO::Socket::INET;
$| = 1;
my @s = map { IO::Socket::INET->new(PeerAddr => $_, Proto => 'tcp', Timeout => 5)
              or die "connect $_: $!\n" } @ARGV;
print "connected\n";
my $end = time + 120;
while (time < $end) {
    for my $s (@s) { print {$s} ('x' x 100) or exit 0; }
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
    let mut lab = Lab {
        dir,
        stop,
        listeners,
        relay_client: None,
        topo,
    };
    // The "Tor" process: only its uid may leave through gw1.
    let mut cmd = lab.ns("gw").command("setpriv");
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
    let client = lab.ns("gw").spawn(cmd).expect("relay client");
    let out = client.take_stdout().unwrap();
    let mut line = String::new();
    let _ = BufReader::new(out).read_line(&mut line);
    assert_eq!(
        line.trim(),
        "connected",
        "the relay client could not connect"
    );
    lab.relay_client = Some(client);
    // Resolve neighbours before the sweep (the gateway answers no ping).
    for target in ["10.152.152.10", "fd19:c33d:88bc::10"] {
        let mut ping = lab.ns("ws").command("ping");
        ping.args(["-c", "1", "-W", "1", target]);
        let _ = ping.output();
    }
    lab
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
            cmd.args(["--allow", r]);
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

fn u(v: &Value) -> u64 {
    v.as_u64().unwrap_or_else(|| panic!("not a count: {v}"))
}

#[test]
fn correct_gateway_passes_a_full_sweep() {
    if !is_root() {
        return;
    }
    let lab = build("wok", false);
    let watch = start_watch(&lab, &[]);
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
    let c = &w["capture"];
    assert_eq!(u(&c["dropped"]), 0);
    assert!(u(&c["canaries_sent"]) >= 2);
    assert_eq!(c["canaries_seen"], c["canaries_sent"]);
    assert!(!out.contains("LEAK"), "{out}");
}

#[test]
fn forwarding_gateway_leaks_every_probe_attributed() {
    if !is_root() {
        return;
    }
    let lab = build("wfw", true);
    let watch = start_watch(&lab, &[]);
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
        assert!(
            icmp[f] > 0 && icmp[f] <= sent_icmp,
            "{name}: {} ICMP leaks of {sent_icmp} probes",
            icmp[f]
        );
    }
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
    let lab = build("wtr", false);
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

#[test]
fn bad_options_and_missing_interface_exit_2() {
    // No namespace needed: these fail before any capture starts.
    let run = |args: &[&str]| {
        let out = Command::new(BIN).args(args).output().unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (code, err) = run(&["watch"]);
    assert_eq!(code, Some(2), "{err}");
    let (code, err) = run(&["watch", "--iface", "lt-nonexist0", "--allow", "nonsense"]);
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("--allow"), "{err}");
    let (code, err) = run(&["watch", "--iface", "lt-nonexist0", "--duration", "-3"]);
    assert_eq!(code, Some(2), "{err}");
    if is_root() {
        let (code, err) = run(&["watch", "--iface", "lt-nonexist0", "--duration", "1"]);
        assert_eq!(code, Some(2), "{err}");
        assert!(err.starts_with("leaktest: error:"), "{err}");
        assert!(err.contains("lt-nonexist0"), "{err}");
        assert_eq!(err.trim().lines().count(), 1, "{err}");
        // A control port nobody listens on (a port in a fresh namespace).
        let topo_ns = Netns::create(&leaktest_netns::unique_prefix("wcp")).unwrap();
        let mut cmd = topo_ns.command(BIN);
        cmd.args(["watch", "--iface", "lo", "--tor-control", "127.0.0.1:9"]);
        let out = cmd.output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{err}");
        assert!(err.starts_with("leaktest: error:"), "{err}");
        assert!(err.to_lowercase().contains("control"), "{err}");
    }
}
