//! `leaktest probe` as a program: its refusals (one line, exit status 2, no
//! network touched) and a real run between two namespaces this test creates
//! (with `leaktest-netns`: unique names, deleted on drop), checked through
//! its JSON report and the receiving interface's own packet counter.

use leaktest_netns::{Netns, Topology};
use leaktest_wire::RunKey;
use std::process::{Command, Output};
use std::sync::Arc;

const BIN: &str = env!("CARGO_BIN_EXE_leaktest");

fn is_root() -> bool {
    leaktest_netns::require_root("probe_cli")
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// The last stderr line must be the one error line.
fn assert_error(o: &Output, needle: &str) {
    let e = stderr(o);
    assert_eq!(o.status.code(), Some(2), "exit status; stderr: {e}");
    let last = e.lines().last().unwrap_or_default();
    assert!(last.starts_with("leaktest: error: "), "{e}");
    assert!(last.contains(needle), "{needle:?} not in {last:?}");
    assert!(!e.contains("panicked"), "{e}");
}

#[test]
fn refusals_are_one_line_and_exit_2() {
    let run = |args: &[&str]| Command::new(BIN).arg("probe").args(args).output().unwrap();
    assert_error(&run(&[]), "no target");
    assert_error(&run(&["--target", "127.0.0.1"]), "loopback");
    assert_error(&run(&["--target", "224.0.0.251"]), "multicast");
    assert_error(&run(&["--target", "0.0.0.0"]), "unspecified");
    assert_error(&run(&["--target6", "::1"]), "loopback");
    assert_error(&run(&["--target6", "ff02::1"]), "multicast");
    assert_error(
        &run(&["--target", "10.152.152.10", "--family", "both"]),
        "--target6",
    );
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("key");
    std::fs::write(&key, "not hex").unwrap();
    assert_error(
        &run(&[
            "--target",
            "10.152.152.10",
            "--key-file",
            key.to_str().unwrap(),
        ]),
        "32 hex digits",
    );
    // Option syntax errors come from clap, also with status 2.
    for args in [
        &["--target", "10.152.152.10", "--rate", "0"][..],
        &["--target", "10.152.152.10", "--suite", "nope"],
        &["--target", "fd19::1"],
    ] {
        let o = run(args);
        assert_eq!(o.status.code(), Some(2), "{args:?}: {}", stderr(&o));
        assert!(stderr(&o).contains("error"), "{}", stderr(&o));
    }
}

#[test]
fn help_documents_the_contract() {
    let o = Command::new(BIN)
        .args(["probe", "--help"])
        .output()
        .unwrap();
    assert!(o.status.success());
    let h = String::from_utf8_lossy(&o.stdout);
    for needle in [
        "--target <IPV4>",
        "--target6 <IPV6>",
        "--suite <LIST>",
        "--family <4|6|both>",
        "--rate <PPS|max>",
        "--json <FILE>",
        "--key-file <FILE>",
        "--socket <SOCKET>",
        "--iface <IFACE>",
        "--gateway-mac <MAC>",
        "787,460",
        "CAP_NET_RAW",
    ] {
        assert!(h.contains(needle), "--help lacks {needle:?}");
    }
}

const WS4: &str = "10.152.152.11";
const GW4: &str = "10.152.152.10";
const WS6: &str = "fd19:c33d:88bc::11";
const GW6: &str = "fd19:c33d:88bc::10";

struct Pair {
    _topo: Topology,
    ws: Arc<Netns>,
    gw: Arc<Netns>,
    gw_if: String,
}

fn pair() -> Pair {
    let mut topo = Topology::new("ltc");
    let ws = topo.add("w").unwrap();
    let gw = topo.add("g").unwrap();
    let ws_if = format!("{}w", topo.prefix());
    let gw_if = format!("{}g", topo.prefix());
    leaktest_netns::veth(&ws, &ws_if, &gw, &gw_if).unwrap();
    for (ns, ifn, a4, a6) in [(&ws, &ws_if, WS4, WS6), (&gw, &gw_if, GW4, GW6)] {
        ns.add_addr(ifn, &format!("{a4}/24")).unwrap();
        ns.add_addr(ifn, &format!("{a6}/64")).unwrap();
    }
    Pair {
        _topo: topo,
        ws,
        gw,
        gw_if,
    }
}

/// Packets received on `ifname` so far (the kernel's own counter).
fn rx_packets(ns: &Netns, ifname: &str) -> u64 {
    let o = ns.ip(["-j", "-s", "link", "show", "dev", ifname]).unwrap();
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    v[0]["stats64"]["rx"]["packets"].as_u64().unwrap()
}

#[test]
fn probe_run_between_namespaces() {
    if !is_root() {
        return;
    }
    let p = pair();
    let dir = tempfile::tempdir().unwrap();
    let key_file = dir.path().join("key");
    std::fs::write(&key_file, "00112233445566778899aabbccddeeff\n").unwrap();
    let json = dir.path().join("run.json");
    let before = rx_packets(&p.gw, &p.gw_if);
    let mut cmd = p.ws.command(BIN);
    // The peer is on the link: --on-link says so on purpose.
    cmd.args(["probe", "--on-link", "--target", GW4, "--target6", GW6])
        .args([
            "--suite",
            "icmp,frag",
            "--rate",
            "max",
            "--run-id",
            "00c0ffee",
        ])
        .arg("--key-file")
        .arg(&key_file)
        .arg("--json")
        .arg(&json);
    let o = cmd.output().unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    let after = rx_packets(&p.gw, &p.gw_if);
    // icmp 256 per family; frag 9 (IPv4) and 11 (IPv6).
    let planned = 256 + 9 + 256 + 11;
    // Probes plus ARP/NDP and the two resolution datagrams.
    assert!(after - before >= planned, "{before} -> {after}");

    let key = RunKey::shared(
        &hex::decode("00112233445566778899aabbccddeeff")
            .unwrap()
            .try_into()
            .unwrap(),
        0xc0ffee,
    );
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(
        out.starts_with("sent 532 probes (ipv4 265, ipv6 267) in "),
        "{out}"
    );
    assert!(
        out.trim_end().ends_with(&format!(
            "run 0000000000c0ffee, key shared {}",
            key.fingerprint()
        )),
        "{out}"
    );
    let j: serde_json::Value = serde_json::from_slice(&std::fs::read(&json).unwrap()).unwrap();
    assert_eq!(j["run_id"], "0000000000c0ffee");
    assert_eq!(j["key"]["mode"], "shared");
    assert_eq!(j["key"]["fingerprint"], key.fingerprint());
    assert_eq!(j["targets"]["ipv4"], GW4);
    assert_eq!(j["targets"]["ipv6"], GW6);
    assert_eq!(j["socket"], "packet");
    assert_eq!(j["rate"], "max");
    assert_eq!(j["planned"], planned);
    assert_eq!(j["sent"], planned);
    assert_eq!(j["counts"]["ipv4"]["icmp"], 256);
    assert_eq!(j["counts"]["ipv6"]["frag"], 11);
    assert_eq!(j["suite_totals"]["icmp"], 512);
    assert_eq!(j["complete"], true);
    let gw_mac: String =
        p.gw.mac(&p.gw_if)
            .unwrap()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect::<Vec<_>>()
            .join(":");
    assert_eq!(j["paths"]["ipv4"]["dst_mac"], gw_mac.as_str());
    assert_eq!(j["paths"]["ipv6"]["next_hop"], GW6);
    assert!(j["seconds"].as_f64().unwrap() > 0.0);
}

#[test]
fn unroutable_and_unprivileged_runs_fail_cleanly() {
    if !is_root() {
        return;
    }
    let p = pair();
    let o =
        p.ws.command(BIN)
            .args(["probe", "--target", "203.0.113.9"])
            .output()
            .unwrap();
    assert_error(&o, "no route to 203.0.113.9");
    // The gateway's own address (on the link, no router between): refused
    // with the fix, for both socket kinds and both families, before a single
    // datagram leaves. The gateway counts every IP packet from the
    // workstation except the kernel's own neighbour discovery and MLD.
    let rules = tempfile::NamedTempFile::new().unwrap();
    let nd = "nd-router-solicit, nd-neighbor-solicit, nd-neighbor-advert, \
              mld-listener-report, mld2-listener-report";
    let ruleset = [
        "table inet seen {".to_string(),
        "counter v4 { }".into(),
        "counter v6 { }".into(),
        "chain pre {".into(),
        "type filter hook prerouting priority -300; policy accept;".into(),
        format!("ip saddr {WS4} counter name v4"),
        format!("ip6 saddr {WS6} icmpv6 type {{ {nd} }} accept"),
        format!("ip6 saddr {WS6} counter name v6"),
        "}".into(),
        "}".into(),
    ];
    std::fs::write(rules.path(), ruleset.join("\n") + "\n").unwrap();
    let mut nft = p.gw.command("nft");
    nft.arg("-f").arg(rules.path());
    p.gw.exec(nft).unwrap();
    for socket in ["packet", "raw"] {
        for target in [["--target", GW4], ["--target6", GW6]] {
            let o =
                p.ws.command(BIN)
                    .args(["probe", "--socket", socket])
                    .args(target)
                    .output()
                    .unwrap();
            assert_error(&o, "is on the link of");
            assert!(stderr(&o).contains("beyond the gateway"), "{}", stderr(&o));
        }
    }
    // A --json that cannot be written is found out before the first probe,
    // not after the sweep.
    let dir = tempfile::tempdir().unwrap();
    for (json, want) in [
        (dir.path().join("missing/run.json"), "does not exist"),
        (dir.path().to_path_buf(), "a directory"),
    ] {
        let o =
            p.ws.command(BIN)
                .args(["probe", "--on-link", "--target", GW4, "--suite", "frag"])
                .arg("--json")
                .arg(&json)
                .output()
                .unwrap();
        assert_error(&o, want);
    }
    // --iface lo is named for what it is.
    let o =
        p.ws.command(BIN)
            .args(["probe", "--iface", "lo", "--target", "203.0.113.9"])
            .output()
            .unwrap();
    assert_error(&o, "loopback interface");
    let o =
        p.gw.command("nft")
            .args(["-j", "list", "counters", "table", "inet", "seen"])
            .output()
            .unwrap();
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let counted: Vec<u64> = v["nftables"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|e| e["counter"]["packets"].as_u64())
        .collect();
    assert_eq!(counted, [0, 0], "probes sent before the refusal");
    let o =
        p.ws.command("setpriv")
            .args([
                "--reuid",
                "65534",
                "--regid",
                "65534",
                "--clear-groups",
                BIN,
            ])
            .args(["probe", "--on-link", "--target", GW4, "--suite", "frag"])
            .output()
            .unwrap();
    assert_error(&o, "needs root or CAP_NET_RAW");
    // SIGHUP (a dropped SSH session) ends a sweep like SIGTERM: exit 2, and
    // the JSON is written, saying it is incomplete.
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("hup.json");
    let mut cmd = p.ws.command(BIN);
    cmd.args([
        "probe",
        "--on-link",
        "--target",
        GW4,
        "--suite",
        "udp",
        "--rate",
        "2000",
    ])
    .arg("--json")
    .arg(&json)
    .stdout(std::process::Stdio::null())
    .stderr(std::process::Stdio::null());
    let sweep = p.ws.spawn(cmd).unwrap();
    std::thread::sleep(std::time::Duration::from_millis(700));
    sweep.signal(libc::SIGHUP).unwrap();
    let st = sweep
        .wait_timeout(std::time::Duration::from_secs(20))
        .unwrap()
        .expect("the probe did not end on SIGHUP");
    assert_eq!(st.code(), Some(2));
    let j: serde_json::Value = serde_json::from_slice(&std::fs::read(&json).unwrap()).unwrap();
    assert_eq!(j["complete"], false);
    assert!(j["sent"].as_u64().unwrap() < 65_536, "{j}");
}

/// Issue 12: the sweep is sent by a child that runs as `--user` (a uid
/// without a passwd entry) with no capability, no new privileges and a
/// seccomp filter; the privileged parent writes the report. SIGTERM to the
/// parent (the PID a user knows) reaches the sender once: the report says
/// how far it got.
#[test]
fn the_sender_is_sandboxed() {
    if !is_root() {
        return;
    }
    let p = pair();
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("run.json");
    let mut cmd = p.ws.command(BIN);
    cmd.args(["probe", "--on-link", "--target", GW4, "--suite", "udp"])
        .args(["--rate", "20000", "--user", "4000124", "--json"])
        .arg(&json)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped());
    let probe = p.ws.spawn(cmd).unwrap();
    let pid = probe.pid();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(3);
    let child = loop {
        let kids =
            std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children")).unwrap_or_default();
        if let Some(c) = kids.split_whitespace().next() {
            break c.parse::<u32>().unwrap();
        }
        assert!(std::time::Instant::now() < deadline, "no sandboxed sender");
        std::thread::sleep(std::time::Duration::from_millis(20));
    };
    // The sender has entered the sandbox once its filter shows.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(2);
    let st = loop {
        let st = leaktest_priv::Status::of(child).unwrap();
        if st.seccomp == 2 || std::time::Instant::now() > deadline {
            break st;
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    };
    assert_eq!(st.uids, [4_000_124; 4], "{st:?}");
    assert!(st.is_sandboxed(), "{st:?}");
    assert_eq!(st.cap_bnd, 0, "{st:?}");
    assert_eq!(leaktest_priv::Status::of(pid).unwrap().uids, [0; 4]);
    std::thread::sleep(std::time::Duration::from_millis(500));
    probe.signal(libc::SIGTERM).unwrap();
    let end = probe
        .wait_timeout(std::time::Duration::from_secs(10))
        .unwrap()
        .expect("the probe must end on SIGTERM");
    assert_eq!(end.code(), Some(2));
    let j: serde_json::Value = serde_json::from_slice(&std::fs::read(&json).unwrap()).unwrap();
    assert_eq!(j["complete"], false);
    let sent = j["sent"].as_u64().unwrap();
    assert!(sent > 0 && sent < 65_536, "{sent}");
}
