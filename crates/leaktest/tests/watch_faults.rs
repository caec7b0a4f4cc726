//! Bad input and bad luck against `leaktest watch` and `leaktest tor`
//! (issue 13), with the built binary, in namespaces this test creates:
//!
//! * outputs and inputs are checked before anything starts: a device (made
//!   with `mknod` in a temporary directory, never a system one), a FIFO,
//!   `/dev/zero` as a key file, one path for two outputs: exit 2 at once,
//!   the device untouched;
//! * a report whose directory disappears mid-watch: the verdict's exit code
//!   stands and the failure is a warning on stderr and in the JSON;
//! * SIGHUP and SIGQUIT end a watch like SIGTERM, with the full report;
//! * a second watcher on the same interface is refused with the first's PID;
//! * a WireGuard-like UDP endpoint let out with `--allow udp:` passes, counted
//!   apart from Tor;
//! * a signal while connecting to a control port that drops SYNs ends the
//!   wait at once (exit 130), not after the connect timeout;
//! * `tor restore --forget` deletes a journal that cannot be read;
//! * a relay tor connects to the moment its new consensus names it (as a
//!   bootstrapping tor does) is counted as Tor once the control port's
//!   `NEWCONSENSUS` refresh arrives, its frames held meanwhile; a relay the
//!   control port never names stays a leak after the wait, and so does one
//!   set as a `Bridge` (`CONF_CHANGED`) after its frames left.
//!
//! Needs root: without it the tests say so and pass, unless
//! `LEAKTEST_REQUIRE_ROOT=1` (CI) makes them fail.

#[path = "support/watch_lab.rs"]
mod watch_lab;

use leaktest_netns::{Netns, Proc};
use std::os::unix::fs::FileTypeExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use watch_lab::*;

/// Starts `leaktest watch --iface gw1 ARGS --ready-file R` with stdout and
/// stderr to files in the lab directory, and waits until it is ready.
fn spawn_watch(lab: &Lab, args: &[&str]) -> Proc {
    let ready = lab.path("ready");
    let _ = std::fs::remove_file(&ready);
    let mut cmd = lab.ns("gw").command(BIN);
    cmd.args(["watch", "--iface", "gw1"])
        .args(args)
        .arg("--ready-file")
        .arg(&ready)
        .env("LEAKTEST_STATE_DIR", lab.path("state"))
        .env("LEAKTEST_RUN_DIR", lab.path("run"))
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(lab.path("watch.out")).unwrap())
        .stderr(std::fs::File::create(lab.path("watch.err")).unwrap());
    let p = lab.ns("gw").spawn(cmd).expect("spawning leaktest watch");
    let deadline = Instant::now() + Duration::from_secs(20);
    while !ready.exists() {
        if let Ok(Some(st)) = p.try_wait() {
            panic!(
                "leaktest watch ended before it was ready: {st:?}\n{}",
                text(&lab.path("watch.err"))
            );
        }
        assert!(
            Instant::now() < deadline,
            "leaktest watch never became ready"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    p
}

/// Ends the watch with `sig` and returns its exit code.
fn end_watch(p: &Proc, sig: i32) -> i32 {
    p.signal(sig).unwrap();
    let st = p
        .wait_timeout(Duration::from_secs(30))
        .unwrap()
        .expect("leaktest watch did not end");
    st.code().expect("leaktest watch killed by a signal")
}

fn text(p: &Path) -> String {
    std::fs::read_to_string(p).unwrap_or_default()
}

#[test]
fn signals_a_vanished_report_directory_and_a_second_watcher() {
    if !is_root() {
        return;
    }
    let mut lab = build("wfs", false);
    let reports = lab.path("reports");
    std::fs::create_dir(&reports).unwrap();
    let junit = reports.join("watch.xml");
    let json = lab.path("watch.json");
    let mut args = vec![
        "--json".to_string(),
        json.display().to_string(),
        "--junit".into(),
        junit.display().to_string(),
        "--families".into(),
        "both".into(),
    ];
    for r in RELAYS {
        args.extend(["--allow".into(), format!("tor:{r}")]);
    }
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let watch = spawn_watch(&lab, &args);
    lab.start_relays();

    // One watcher per interface: the second is refused at start, naming the first.
    let mut second = lab.ns("gw").command(BIN);
    second
        .args(["watch", "--iface", "gw1", "--duration", "1"])
        .env("LEAKTEST_RUN_DIR", lab.path("run"));
    let o = second.output().unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert!(
        err.contains(&format!("already in use by leaktest pid {}", watch.pid())),
        "{err}"
    );
    assert!(err.contains("one watcher per interface"), "{err}");

    // The JUnit report's directory goes away mid-watch.
    std::fs::remove_dir_all(&reports).unwrap();
    std::thread::sleep(Duration::from_millis(600));
    // A dropped SSH session: SIGHUP ends the watch like SIGTERM.
    let code = end_watch(&watch, libc::SIGHUP);
    let w = read_json(&json);
    let err = text(&lab.path("watch.err"));
    assert_eq!(w["verdict"], "pass", "{w:#}\n{err}");
    assert_eq!(code, 0, "the verdict's exit code stands: {err}");
    assert_eq!(w["exit_code"], 0);
    assert_eq!(w["capture"]["interrupted"], true);
    let warnings = w["warnings"].to_string();
    assert!(
        warnings.contains("JUnit report") && warnings.contains("does not exist"),
        "{warnings}"
    );
    assert!(
        err.contains("leaktest: warning: JUnit report"),
        "stderr: {err}"
    );
    assert!(!junit.exists());
    // Its lock went with it: a new watch on the interface starts, and SIGQUIT ends it with
    // the full report too.
    let watch = spawn_watch(&lab, &["--json", json.to_str().unwrap()]);
    std::fs::remove_file(&json).unwrap();
    let code = end_watch(&watch, libc::SIGQUIT);
    let w = read_json(&json);
    assert_eq!(w["capture"]["interrupted"], true, "{w:#}");
    assert_eq!(code, w["exit_code"].as_i64().unwrap() as i32);
}

/// A WireGuard-like client on the gateway (Tor's uid, the only one the
/// gateway lets out) sends UDP to its server; `--allow udp:` with the
/// provider's range makes that allowed traffic, counted apart from Tor.
#[test]
fn a_udp_allowed_vpn_endpoint_passes() {
    if !is_root() {
        return;
    }
    let lab = build("wfv", false);
    let json = lab.path("watch.json");
    let watch = spawn_watch(
        &lab,
        &[
            "--allow",
            "udp:198.51.100.0/24:51820",
            "--json",
            json.to_str().unwrap(),
        ],
    );
    // 20 datagrams of a WireGuard handshake initiation's size (148 bytes).
    let mut vpn = lab.ns("gw").command("setpriv");
    vpn.args([
        &format!("--reuid={TOR_UID}"),
        &format!("--regid={TOR_UID}"),
        "--clear-groups",
        "perl",
        "-e",
        // Unconnected: the server's ICMP port unreachable must not fail later sends.
        "use IO::Socket::INET; my $s = IO::Socket::INET->new(Proto => 'udp') or die \"$!\"; \
         my $to = sockaddr_in(51820, inet_aton('198.51.100.1')); \
         for (1 .. 20) { $s->send(\"\\x01\" x 148, 0, $to) or die \"$!\"; \
         select(undef, undef, undef, 0.02) }",
    ]);
    let o = lab.ns("gw").exec(vpn).expect("the VPN client");
    assert!(o.status.success());
    std::thread::sleep(Duration::from_millis(300));
    let code = end_watch(&watch, libc::SIGTERM);
    let w = read_json(&json);
    assert_eq!(w["verdict"], "pass", "{w:#}");
    assert_eq!(code, 0);
    assert_eq!(w["allowed"][0]["entry"], "udp:198.51.100.0/24:51820");
    assert_eq!(w["allowed"][0]["packets"], 20, "{w:#}");
    assert_eq!(w["tor"]["packets"], 0);
    assert_eq!(w["leak_packets"], 0);
}

/// A network namespace of its own with only `lo` (up), for runs that must
/// not reach anything.
fn lone_ns(tag: &str) -> Netns {
    let ns = Netns::create(&leaktest_netns::unique_prefix(tag)).unwrap();
    ns.ip(["link", "set", "lo", "up"]).unwrap();
    ns
}

fn run_in(ns: &Netns, args: &[&str], env: &[(&str, &Path)]) -> (Option<i32>, String, Duration) {
    let mut cmd = ns.command(BIN);
    cmd.args(args);
    for (k, v) in env {
        cmd.env(k, v);
    }
    let t = Instant::now();
    let o = cmd.output().unwrap();
    (
        o.status.code(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
        t.elapsed(),
    )
}

#[test]
fn inputs_and_outputs_are_checked_before_anything_starts() {
    if !is_root() {
        return;
    }
    let ns = lone_ns("wfi");
    let dir = tempfile::tempdir().unwrap();
    let d = |n: &str| dir.path().join(n);
    // A character device of our own (1:7 is what /dev/full is), and a FIFO.
    let dev = d("full");
    let c = std::ffi::CString::new(dev.to_str().unwrap()).unwrap();
    // SAFETY: a valid path; makedev(1, 7).
    assert_eq!(
        unsafe { libc::mknod(c.as_ptr(), libc::S_IFCHR | 0o666, libc::makedev(1, 7)) },
        0
    );
    let fifo = d("fifo");
    let c = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
    // SAFETY: a valid path.
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
    let key = d("key");
    std::fs::write(&key, "00112233445566778899aabbccddeeff\n").unwrap();
    let dev_s = dev.to_str().unwrap();
    let fifo_s = fifo.to_str().unwrap();
    let same = d("r.out");
    let same_s = same.to_str().unwrap();
    let cases: &[(&[&str], &str)] = &[
        (&["--ready-file", dev_s], "a device"),
        (&["--pcap", dev_s], "a device"),
        (&["--json", fifo_s], "a FIFO"),
        (&["--junit", dir.path().to_str().unwrap()], "a directory"),
        (&["--json", same_s, "--junit", same_s], "same file"),
        (&["--json", same_s, "--pcap", same_s], "same file"),
        (&["--key-file", "/dev/zero"], "a device"),
        (&["--key-file", fifo_s], "a FIFO"),
        // A directory that takes no new files whatever its mode bits say.
        (&["--json", "/proc/x"], "not writable"),
        (&["--ready-file", "/proc/x"], "not writable"),
    ];
    for (extra, want) in cases {
        let mut args = vec!["watch", "--iface", "lo", "--duration", "1"];
        args.extend_from_slice(extra);
        let (code, err, took) = run_in(&ns, &args, &[("LEAKTEST_RUN_DIR", &d("run"))]);
        assert_eq!(code, Some(2), "{extra:?}: {err}");
        assert!(err.starts_with("leaktest: error:"), "{extra:?}: {err}");
        assert!(err.contains(want), "{extra:?}: {err}");
        // Refused at once, not after reading a never-ending file or waiting on a FIFO.
        assert!(took < Duration::from_secs(5), "{extra:?}: {took:?}");
    }
    // The device is still a device; nothing was left next to it.
    assert!(std::fs::symlink_metadata(&dev)
        .unwrap()
        .file_type()
        .is_char_device());
    let names: Vec<PathBuf> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert!(
        names
            .iter()
            .all(|p| [&dev, &fifo, &key].contains(&p) || p == &d("run")),
        "{names:?}"
    );
    // Without privileges: one line naming the capability, exit 2.
    let mut cmd = ns.command("setpriv");
    cmd.args([
        "--reuid",
        "65534",
        "--regid",
        "65534",
        "--clear-groups",
        BIN,
    ])
    .args(["watch", "--iface", "lo", "--duration", "1"])
    .env("LEAKTEST_RUN_DIR", d("run"));
    let o = cmd.output().unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(
        err.starts_with("leaktest: error:") && err.contains("CAP_NET_RAW"),
        "{err}"
    );
    // The probe side: --key-file and --json the same way, before a probe is built.
    for (extra, want) in [
        (&["--key-file", "/dev/zero"][..], "a device"),
        (&["--json", dev_s][..], "a device"),
    ] {
        let mut args = vec!["probe", "--target", "203.0.113.9"];
        args.extend_from_slice(extra);
        let (code, err, _) = run_in(&ns, &args, &[]);
        assert_eq!(code, Some(2), "{extra:?}: {err}");
        assert!(err.contains(want), "{extra:?}: {err}");
    }
}

/// A control port that drops SYNs: connecting would wait for the 10 s
/// timeout; a signal ends the wait at once.
#[test]
fn a_signal_while_connecting_to_a_silent_control_port() {
    if !is_root() {
        return;
    }
    let ns = lone_ns("wfc");
    let dir = tempfile::tempdir().unwrap();
    let rules = dir.path().join("drop.nft");
    std::fs::write(
        &rules,
        "table inet silent {\n chain in {\n type filter hook input priority 0; policy accept;\n \
         tcp dport 9051 drop\n }\n}\n",
    )
    .unwrap();
    let mut nft = ns.command("nft");
    nft.arg("-f").arg(&rules);
    ns.exec(nft).unwrap();
    let mut cmd = ns.command(BIN);
    cmd.args(["watch", "--iface", "lo", "--tor-control", "127.0.0.1:9051"])
        .env("LEAKTEST_RUN_DIR", dir.path().join("run"))
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(dir.path().join("err")).unwrap());
    let p = ns.spawn(cmd).unwrap();
    std::thread::sleep(Duration::from_millis(800));
    assert!(p.is_running(), "{}", text(&dir.path().join("err")));
    let signalled = Instant::now();
    p.signal(libc::SIGINT).unwrap();
    let st = p
        .wait_timeout(Duration::from_secs(15))
        .unwrap()
        .expect("leaktest watch did not end");
    let took = signalled.elapsed();
    let err = text(&dir.path().join("err"));
    eprintln!("ended {took:?} after SIGINT");
    assert_eq!(st.code(), Some(130), "{err}");
    assert!(err.contains("interrupted before the watch began"), "{err}");
    // Well before the connect timeout (10 s) would have ended it.
    assert!(took < Duration::from_secs(5), "{took:?}");
}

#[test]
fn tor_restore_forget_deletes_an_unreadable_journal() {
    let dir = tempfile::tempdir().unwrap();
    let journal = dir.path().join("tor-restrict.json");
    std::fs::write(&journal, "{ this is not a journal").unwrap();
    let run = |extra: &[&str]| {
        let o = Command::new(BIN)
            .env("LEAKTEST_STATE_DIR", dir.path())
            .args(["tor", "restore", "--journal"])
            .arg(&journal)
            .args(extra)
            .output()
            .unwrap();
        (
            o.status.code(),
            String::from_utf8_lossy(&o.stdout).into_owned(),
            String::from_utf8_lossy(&o.stderr).into_owned(),
        )
    };
    // Without --forget: an error that says how to get rid of it (and no Tor contacted).
    let (code, _, err) = run(&[]);
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("--forget"), "{err}");
    assert!(journal.exists());
    let (code, out, err) = run(&["--forget"]);
    assert_eq!(code, Some(0), "{err}");
    assert!(out.contains("unreadable"), "{out}");
    assert!(!journal.exists());
    // --forget deletes journals only: not a file that is neither a journal nor named like
    // one (a typo in --journal), not a FIFO, and not the journal of a leaktest still running.
    let forget = |path: &Path| {
        let o = Command::new(BIN)
            .env("LEAKTEST_STATE_DIR", dir.path())
            .args(["tor", "restore", "--forget", "--journal"])
            .arg(path)
            .output()
            .unwrap();
        (
            o.status.code(),
            String::from_utf8_lossy(&o.stderr).into_owned(),
        )
    };
    let torrc = dir.path().join("torrc");
    std::fs::write(&torrc, "SocksPort 9050\n").unwrap();
    let (code, err) = forget(&torrc);
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("not a journal"), "{err}");
    assert!(torrc.exists());
    let fifo = dir.path().join("tor-restrict-fifo.json");
    let c = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
    // SAFETY: a valid path.
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
    let (code, err) = forget(&fifo);
    assert_eq!(code, Some(2), "{err}");
    assert!(fifo.exists());
    // A journal whose owner (this test process) is alive.
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap();
    let start: u64 = stat[stat.rfind(')').unwrap() + 2..]
        .split(' ')
        .nth(19)
        .unwrap()
        .parse()
        .unwrap();
    let live = dir.path().join("tor-restrict-live.json");
    std::fs::write(
        &live,
        serde_json::json!({
            "version": 2, "pid": std::process::id(), "process_start": start,
            "process_name": null, "mode": "guard", "created_unix": 1,
            "control": {"target": {"tcp": "127.0.0.1:9"}, "auth": null, "password_env": null},
            "previous": [], "netns": null, "tor": null
        })
        .to_string(),
    )
    .unwrap();
    let (code, err) = forget(&live);
    assert_eq!(code, Some(2), "{err}");
    assert!(
        err.contains(&format!("leaktest pid {}", std::process::id())),
        "{err}"
    );
    assert!(live.exists());
    let (code, out, _) = run(&["--forget"]);
    assert_eq!(code, Some(0));
    assert!(out.contains("nothing to forget"), "{out}");
}

/// Walks a pcapng image block by block (each block's total length is at
/// offset 4, little-endian, as leaktest writes it) and returns the number of
/// Enhanced Packet Blocks and whether a statistics block is there; panics if
/// the image does not end at a block boundary.
fn pcapng_blocks(bytes: &[u8]) -> (u64, bool) {
    let (mut at, mut packets, mut stats) = (0usize, 0u64, false);
    while at < bytes.len() {
        assert!(at + 12 <= bytes.len(), "a block header cut at {at}");
        let kind = u32::from_le_bytes(bytes[at..at + 4].try_into().unwrap());
        let len = u32::from_le_bytes(bytes[at + 4..at + 8].try_into().unwrap()) as usize;
        assert!(len >= 12 && at + len <= bytes.len(), "a block cut at {at}");
        let trailer = u32::from_le_bytes(bytes[at + len - 4..at + len].try_into().unwrap());
        assert_eq!(trailer as usize, len, "block at {at}");
        packets += u64::from(kind == 6);
        stats |= kind == 5;
        at += len;
    }
    (packets, stats)
}

/// `--pcap` on a file system that fills up (a 64 KiB tmpfs in a private
/// mount namespace): the watch's verdict stands, the file keeps every whole
/// block, and the warning says how many of the leaked frames it holds.
#[test]
fn a_full_disk_cuts_the_pcap_at_a_block_and_says_so() {
    if !is_root() {
        return;
    }
    let lab = build("wfp", true);
    let small = lab.path("small");
    std::fs::create_dir(&small).unwrap();
    let (json, ready, kept) = (
        lab.path("watch.json"),
        lab.path("ready"),
        lab.path("kept.pcapng"),
    );
    // The tmpfs exists only in this shell's mount namespace: the file is
    // copied out before the namespace ends.
    let script = format!(
        "set -u; mount -t tmpfs -o size=64k leaktest-test {small} || exit 90; \
         {bin} watch --iface gw1 --duration 6 --json {json} --ready-file {ready} \
         --pcap {small}/leaks.pcapng; rc=$?; cp {small}/leaks.pcapng {kept}; exit $rc",
        small = small.display(),
        bin = BIN,
        json = json.display(),
        ready = ready.display(),
        kept = kept.display(),
    );
    let mut cmd = lab.ns("gw").command("unshare");
    cmd.args(["--mount", "--propagation", "private", "sh", "-c", &script])
        .env("LEAKTEST_RUN_DIR", lab.path("run"))
        .stdout(std::fs::File::create(lab.path("watch.out")).unwrap())
        .stderr(std::fs::File::create(lab.path("watch.err")).unwrap());
    let watch = lab.ns("gw").spawn(cmd).unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while !ready.exists() {
        assert!(
            watch.is_running() && Instant::now() < deadline,
            "the watch never became ready: {}",
            text(&lab.path("watch.err"))
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    // 65,536 UDP probes through the forwarding gateway: far more than 64 KiB.
    probe(
        &lab,
        &["--suite", "udp", "--family", "4", "--rate", "20000"],
    );
    let st = watch
        .wait_timeout(Duration::from_secs(30))
        .unwrap()
        .expect("the watch did not end");
    let err = text(&lab.path("watch.err"));
    let w = read_json(&json);
    assert_eq!(w["verdict"], "leak", "{err}");
    assert_eq!(st.code(), Some(1), "the verdict's exit code: {err}");
    let leaked = u(&w["leak_packets"]);
    let written = u(&w["capture"]["pcap_frames"]);
    assert!(written > 0 && written < leaked, "{written} of {leaked}");
    let warning = format!("pcap truncated: {written} of {leaked} frames written to");
    assert!(w["warnings"].to_string().contains(&warning), "{w:#}");
    assert!(err.contains(&warning), "{err}");
    assert!(err.contains("No space left on device"), "{err}");
    let (packets, stats) = pcapng_blocks(&std::fs::read(&kept).unwrap());
    assert_eq!(packets, written);
    assert!(!stats, "no statistics block after the disk filled");
}

/// Issue 12, capabilities instead of root: a watch started by an ordinary
/// uid holding only CAP_NET_RAW (as a `setcap` install gives it) runs to a
/// PASS; its monitor keeps that one capability and nothing else, its reader
/// has none; the lock lives in a run directory that uid may write.
#[test]
fn a_watch_with_cap_net_raw_alone_passes_and_drops_it() {
    if !is_root() {
        return;
    }
    let lab = build("wcp", false);
    let dir = lab.path("user");
    std::fs::create_dir(&dir).unwrap();
    let uid = 4_000_125;
    std::os::unix::fs::chown(&dir, Some(uid), Some(uid)).unwrap();
    let ready = dir.join("ready");
    let json = dir.join("watch.json");
    let mut cmd = lab.ns("gw").command("setpriv");
    cmd.args([
        "--reuid=4000125",
        "--regid=4000125",
        "--clear-groups",
        "--inh-caps=+net_raw",
        "--ambient-caps=+net_raw",
        BIN,
        "watch",
        "--iface",
        "gw1",
        "--duration",
        "4",
        "--json",
    ])
    .arg(&json)
    .arg("--ready-file")
    .arg(&ready)
    .env("LEAKTEST_RUN_DIR", dir.join("run"))
    .stdout(Stdio::null())
    .stderr(Stdio::piped());
    let p = lab.ns("gw").spawn(cmd).expect("spawning the watch");
    let deadline = Instant::now() + Duration::from_secs(10);
    while !ready.exists() {
        assert!(p.try_wait().unwrap().is_none(), "the watch ended early");
        assert!(Instant::now() < deadline, "never ready");
        std::thread::sleep(Duration::from_millis(50));
    }
    // setpriv execs leaktest: the PID is the monitor's.
    let monitor = leaktest_priv::Status::of(p.pid()).unwrap();
    assert_eq!(monitor.uids, [uid; 4], "{monitor:?}");
    assert_eq!(monitor.cap_eff, 1 << 13, "CAP_NET_RAW only: {monitor:?}");
    let kids = std::fs::read_to_string(format!("/proc/{0}/task/{0}/children", p.pid())).unwrap();
    let reader: u32 = kids
        .split_whitespace()
        .next()
        .expect("a reader")
        .parse()
        .unwrap();
    let st = leaktest_priv::Status::of(reader).unwrap();
    assert_eq!(st.uids, [uid; 4], "{st:?}");
    assert!(st.is_sandboxed(), "{st:?}");
    // Another process of the same uid cannot take the reader's descriptors
    // (the capture socket would let it send frames the watch never sees):
    // pidfd_open(434) then pidfd_getfd(438) of every descriptor, as that uid.
    let steal = format!(
        "my $p = syscall(434, {reader}, 0); die \"pidfd_open: $!\\n\" if $p < 0; \
         my ($ok, $eperm) = (0, 0); for my $fd (0..64) {{ my $r = syscall(438, $p, $fd, 0); \
         if ($r >= 0) {{ $ok++ }} elsif ($!{{EPERM}}) {{ $eperm++ }} }} print \"$ok $eperm\\n\";"
    );
    let mut thief = lab.ns("gw").command("setpriv");
    thief
        .args([
            "--reuid=4000125",
            "--regid=4000125",
            "--clear-groups",
            "perl",
            "-e",
        ])
        .arg(&steal);
    let o = lab.ns("gw").exec(thief).expect("running the thief");
    let out = String::from_utf8_lossy(&o.stdout);
    let counts: Vec<u32> = out.split_whitespace().map(|n| n.parse().unwrap()).collect();
    assert_eq!(
        counts.len(),
        2,
        "{out} {}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert_eq!(counts[0], 0, "a descriptor of the reader was taken");
    assert!(counts[1] > 0, "no attempt was refused: {out}");
    let end = p
        .wait_timeout(Duration::from_secs(20))
        .unwrap()
        .expect("the watch must end after --duration");
    assert_eq!(end.code(), Some(0), "PASS expected");
    let v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    assert_eq!(v["verdict"], "pass");
}

/// A scripted control port in the gateway's namespace (NULL
/// authentication): `ns/all` lists the first of [`RELAYS`], and the second
/// too once [`FakeControl::publish`] announced a new consensus the way tor
/// does (`650+NEWCONSENSUS`).
struct FakeControl {
    port: u16,
    writer: std::sync::Arc<std::sync::Mutex<Option<std::net::TcpStream>>>,
    published: std::sync::Arc<std::sync::atomic::AtomicBool>,
    bridged: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

const FAKE_RELAY_A: &str =
    "r relayA AAoQ1DAR6kkoo19hBAX5K0QztNw 5pWVo+vGpyKuCYh6+tt2mGC9JDY 2038-01-01 00:00:00 203.0.113.5 5555 0";
const FAKE_RELAY_B: &str =
    "r relayB ABG9JIWtRdmE7EFZyI/AZuXjMA4 TT0ZnCVFx2b8Hqu1cv3MaV8uGTA 2038-01-01 00:00:00 203.0.113.6 8443 0";

impl FakeControl {
    fn start(lab: &Lab) -> FakeControl {
        use std::io::{BufRead, BufReader, Write};
        use std::sync::atomic::Ordering;
        let listener = lab
            .ns("gw")
            .thread(|| std::net::TcpListener::bind("127.0.0.1:0").unwrap())
            .unwrap()
            .join()
            .unwrap();
        let port = listener.local_addr().unwrap().port();
        let writer = std::sync::Arc::new(std::sync::Mutex::new(None::<std::net::TcpStream>));
        let published = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let bridged = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let (w, p, b) = (writer.clone(), published.clone(), bridged.clone());
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(stream) = stream else { return };
                *w.lock().unwrap() = Some(stream.try_clone().unwrap());
                let mut reader = BufReader::new(stream);
                let mut line = String::new();
                loop {
                    line.clear();
                    if !matches!(reader.read_line(&mut line), Ok(n) if n > 0) {
                        break;
                    }
                    let cmd = line.trim_end().to_string();
                    let reply = match cmd.split(' ').next().unwrap_or("") {
                        "PROTOCOLINFO" => "250-PROTOCOLINFO 1\r\n250-AUTH METHODS=NULL\r\n250-VERSION Tor=\"0.4.9.11\"\r\n250 OK\r\n".to_string(),
                        "AUTHENTICATE" | "SETEVENTS" => "250 OK\r\n".to_string(),
                        "GETINFO" if cmd == "GETINFO ns/all" => {
                            let mut body = FAKE_RELAY_A.to_string();
                            if p.load(Ordering::SeqCst) {
                                body = format!("{body}\r\n{FAKE_RELAY_B}");
                            }
                            format!("250+ns/all=\r\n{body}\r\n.\r\n250 OK\r\n")
                        }
                        "GETINFO" if cmd == "GETINFO config/defaults" => {
                            "250+config/defaults=\r\n.\r\n250 OK\r\n".to_string()
                        }
                        "GETINFO" => "552 Unrecognized key\r\n".to_string(),
                        "GETCONF" => {
                            let key = cmd.split(' ').nth(1).unwrap_or("");
                            if key == "UseDefaultFallbackDirs" {
                                format!("250 {key}=0\r\n")
                            } else if key == "Bridge" && b.load(Ordering::SeqCst) {
                                "250 Bridge=203.0.113.6:8443\r\n".to_string()
                            } else {
                                format!("250 {key}\r\n")
                            }
                        }
                        _ => "510 Unrecognized command\r\n".to_string(),
                    };
                    let mut g = w.lock().unwrap();
                    if g.as_mut()
                        .is_none_or(|s| s.write_all(reply.as_bytes()).is_err())
                    {
                        break;
                    }
                }
            }
        });
        FakeControl {
            port,
            writer,
            published,
            bridged,
        }
    }

    /// The second relay set as a plain `Bridge` over the control port, as a
    /// process with the control port could (tor announces `CONF_CHANGED`).
    fn set_bridge(&self) {
        use std::io::Write;
        self.bridged
            .store(true, std::sync::atomic::Ordering::SeqCst);
        let mut g = self.writer.lock().unwrap();
        g.as_mut()
            .expect("the watcher is connected")
            .write_all(b"650-CONF_CHANGED\r\n650-Bridge=203.0.113.6:8443\r\n650 OK\r\n")
            .unwrap();
    }

    /// A new consensus that also names the second relay.
    fn publish(&self) {
        use std::io::Write;
        self.published
            .store(true, std::sync::atomic::Ordering::SeqCst);
        let body = format!("{FAKE_RELAY_A}\r\n{FAKE_RELAY_B}");
        let mut g = self.writer.lock().unwrap();
        g.as_mut()
            .expect("the watcher is connected")
            .write_all(format!("650+NEWCONSENSUS\r\n{body}\r\n.\r\n650 OK\r\n").as_bytes())
            .unwrap();
    }
}

/// The relays' traffic from the moment they connect (the "Tor" process
/// starts after the watch), with only the control port to tell relays.
#[derive(Clone, Copy, PartialEq)]
enum Then {
    Nothing,
    Publish,
    SetBridge,
}

fn watch_relays_via_control(tag: &str, then: Then) -> (i32, serde_json::Value) {
    let mut lab = build(tag, false);
    let ctl = FakeControl::start(&lab);
    let control = format!("127.0.0.1:{}", ctl.port);
    let watch = start_watch_with(&lab, &["--tor-control", &control], false);
    lab.start_relays();
    std::thread::sleep(Duration::from_millis(100));
    match then {
        // As tor: it connects to the relay its new consensus names, and
        // announces that consensus on the control port meanwhile.
        Then::Publish => ctl.publish(),
        // As an attacker with the control port: traffic first, then the
        // destination declared a bridge, inside the hold's wait.
        Then::SetBridge => ctl.set_bridge(),
        Then::Nothing => {}
    }
    std::thread::sleep(Duration::from_millis(600));
    let t = Instant::now();
    let (code, _, w) = finish_watch(&lab, watch);
    // Held frames get the rest of their wait, no more.
    assert!(t.elapsed() < Duration::from_secs(20), "{:?}", t.elapsed());
    (code, w)
}

#[test]
fn a_relay_named_by_the_next_consensus_is_tor_once_the_refresh_arrives() {
    if !is_root() {
        return;
    }
    let (code, w) = watch_relays_via_control("wfh", Then::Publish);
    assert_eq!(w["verdict"], "pass", "{w:#}");
    assert_eq!(code, 0);
    assert!(
        w["tor"]["allowlist"]["held_frames"].as_u64().unwrap() >= 1,
        "{w:#}"
    );
    assert_eq!(w["tor"]["allowlist"]["refreshes"], 1, "{w:#}");
    assert_eq!(w["tor"]["endpoints"], 2, "{w:#}");
    // Both flows followed from their SYN, the held one included.
    assert_eq!(w["tor"]["flows"]["started"], 2, "{w:#}");
    assert_eq!(w["leak_packets"], 0);
}

#[test]
fn a_relay_the_control_port_never_names_stays_a_leak_after_the_wait() {
    if !is_root() {
        return;
    }
    let (code, w) = watch_relays_via_control("wfn", Then::Nothing);
    assert_eq!(w["verdict"], "leak", "{w:#}");
    assert_eq!(code, 1);
    assert!(
        w["tor"]["allowlist"]["held_frames"].as_u64().unwrap() >= 1,
        "{w:#}"
    );
    assert!(w["leak_packets"].as_u64().unwrap() >= 3, "{w:#}");
    let leaks = w["leaks"].as_array().unwrap();
    assert!(!leaks.is_empty());
    for l in leaks {
        assert_eq!(
            (l["dst"].as_str(), l["dst_port"].as_u64()),
            (Some("203.0.113.6"), Some(8443)),
            "{l}"
        );
        assert_eq!(l["cause"], "unexpected");
    }
    // The named relay's flow is Tor all along.
    assert_eq!(w["tor"]["endpoints"], 1, "{w:#}");
}

#[test]
fn a_bridge_set_after_the_frames_left_approves_none_of_them() {
    if !is_root() {
        return;
    }
    let (code, w) = watch_relays_via_control("wfb", Then::SetBridge);
    assert_eq!(w["verdict"], "leak", "{w:#}");
    assert_eq!(code, 1);
    assert_eq!(w["tor"]["allowlist"]["refreshes"], 1, "{w:#}");
    assert!(
        w["tor"]["allowlist"]["held_frames"].as_u64().unwrap() >= 1,
        "{w:#}"
    );
    // Every frame to it before the refresh stays a leak.
    let leaks = w["leaks"].as_array().unwrap();
    assert!(!leaks.is_empty());
    assert!(leaks
        .iter()
        .all(|l| l["dst"] == "203.0.113.6" && l["dst_port"] == 8443));
}
