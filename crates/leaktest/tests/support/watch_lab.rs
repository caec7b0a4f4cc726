//! The watch lab of the end-to-end tests (`watch_e2e`, `watch_faults`): a
//! workstation, a Whonix-style gateway (correct or forwarding) and an
//! "internet" in namespaces the test creates, relays on lo, the built
//! binary's watch and probe, and a real tor when asked.
//!
//! ```text
//!  ws (workstation)            gw (gateway)                         in ("internet")
//!  ws0 10.152.152.11/24 ─ gw0 10.152.152.10/24     gw1 198.51.100.2/24 ─ in0 198.51.100.1/24
//!      fd19:c33d:88bc::11/64  fd19:c33d:88bc::10/64   2001:db8:1::2/64      2001:db8:1::1/64
//!                                                                        lo 203.0.113.5, .6 ("relays")
//! ```
#![allow(dead_code)]

use leaktest_netns::{veth, Netns, Proc, Topology};
use serde_json::Value;
use std::io::{BufRead, BufReader, Read};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

pub const BIN: &str = env!("CARGO_BIN_EXE_leaktest");
/// The uid the gateway lets out (Tor's, on a real gateway).
pub const TOR_UID: &str = "65534";
pub const RELAYS: [&str; 2] = ["203.0.113.5:5555", "203.0.113.6:8443"];

pub fn is_root() -> bool {
    leaktest_netns::require_root("watch lab")
}

/// The Whonix-style gateway policy (with a reverse-path check, and no ICMP
/// error of its own out of the uplink, so forged sources get nothing out).
/// `broken`: forwarding with masquerade (and none of the redirections), the
/// classic misconfiguration.
pub fn ruleset(broken: bool) -> String {
    let common_out = format!(
        r#"
    chain output {{
        type filter hook output priority filter; policy drop;
        ct state invalid drop
        oifname "lo" accept
        oifname "gw1" icmp type {{ destination-unreachable, time-exceeded, parameter-problem }} drop
        oifname "gw1" icmpv6 type {{ destination-unreachable, packet-too-big, time-exceeded, parameter-problem }} drop
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
    chain rpfilter {{
        type filter hook prerouting priority raw; policy accept;
        iifname "gw0" fib saddr . iif oif missing drop
    }}
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
pub const RELAY_CLIENT: &str = r#"
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

pub struct Lab {
    dir: tempfile::TempDir,
    stop: Arc<AtomicBool>,
    listeners: Vec<std::thread::JoinHandle<()>>,
    relay_client: Option<Proc>,
    // Dropped last: namespaces (and every process in them) go away.
    topo: Topology,
}

impl Lab {
    pub fn ns(&self, s: &str) -> &Arc<Netns> {
        self.topo.get(s).expect("namespace")
    }
    pub fn path(&self, name: &str) -> PathBuf {
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

pub fn ip(ns: &Netns, args: &[&str]) {
    ns.ip(args.iter().copied())
        .unwrap_or_else(|e| panic!("ip -n {} {args:?}: {e}", ns.name()));
}

/// Accepts connections on `addr` in `ns` and reads them until the lab stops.
pub fn listener(
    ns: &Netns,
    addr: &'static str,
    stop: Arc<AtomicBool>,
) -> std::thread::JoinHandle<()> {
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

pub fn build(tag: &str, broken: bool) -> Lab {
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
    pub fn start_relays(&mut self) {
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
pub fn start_watch(lab: &Lab, extra: &[&str]) -> Proc {
    start_watch_with(lab, extra, true)
}

pub fn start_watch_with(lab: &Lab, extra: &[&str], allow_relays: bool) -> Proc {
    let ready = lab.path("ready");
    let mut cmd = lab.ns("gw").command(BIN);
    cmd.args(["watch", "--iface", "gw1"]);
    if allow_relays {
        for r in RELAYS {
            cmd.args(["--allow", &format!("tor:{r}")]);
        }
    }
    cmd.env("LEAKTEST_STATE_DIR", lab.path("state"))
        .env("LEAKTEST_RUN_DIR", lab.path("run"));
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
pub fn finish_watch(lab: &Lab, p: Proc) -> (i32, String, Value) {
    p.signal(libc::SIGTERM).unwrap();
    wait_watch(lab, p)
}

pub fn wait_watch(lab: &Lab, p: Proc) -> (i32, String, Value) {
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

pub fn read_json(p: &Path) -> Value {
    let text = std::fs::read_to_string(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
    serde_json::from_str(&text).unwrap()
}

/// Runs `leaktest probe` from the workstation and returns its JSON report.
pub fn probe(lab: &Lab, args: &[&str]) -> Value {
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
    // Everything but the probes that need the gateway's uplink (not given).
    let skipped = v["skipped"].as_array().map_or(0, |s| s.len() as u64);
    assert_eq!(v["unbuilt"].as_u64(), Some(skipped), "{v}");
    assert_eq!(
        v["sent"].as_u64().unwrap() + skipped,
        v["planned"].as_u64().unwrap(),
        "the probe did not send everything"
    );
    v
}

pub fn run_of(probe: &Value) -> &str {
    probe["run_id"].as_str().unwrap()
}

pub fn u(v: &Value) -> u64 {
    v.as_u64().unwrap_or_else(|| panic!("not a count: {v}"))
}

/// A real tor in the gateway namespace (`DisableNetwork 1`: it never
/// connects anywhere) whose configured bridges are the two relays.
pub fn start_tor(lab: &Lab) -> Proc {
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
pub fn tor_conf(lab: &Lab, key: &'static str) -> String {
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

/// Runs `leaktest watch ARGS` in a fresh namespace of its own (never in the
/// host's: the watcher injects canaries) and returns its exit code and stderr.
pub fn watch_in_empty_ns(args: &[&str]) -> (Option<i32>, String) {
    let ns = Netns::create(&leaktest_netns::unique_prefix("wbo")).unwrap();
    let mut cmd = ns.command(BIN);
    cmd.arg("watch").args(args);
    let out = cmd.output().unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}
