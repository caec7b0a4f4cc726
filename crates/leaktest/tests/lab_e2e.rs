//! The project's strongest end-to-end test: `leaktest lab` with every
//! built-in profile, the real watch and probe binaries, a real tor on a
//! private Tor network; fails if any verdict or finding differs from the
//! profile's expectation, and checks that nothing of the lab remains.

use std::path::Path;
use std::process::Command;

#[test]
fn lab_runs_every_profile_as_expected_and_leaves_nothing() {
    if !leaktest_netns::require_root("lab_e2e") {
        return;
    }
    let json = std::env::temp_dir().join(format!("leaktest-lab-e2e-{}.json", std::process::id()));
    let html = json.with_extension("html");
    let out = Command::new(env!("CARGO_BIN_EXE_leaktest"))
        // 10.0.0.0/8 let out on purpose: the lan suite's probes there are
        // counted apart and taken out of every expectation.
        .args(["lab", "--all", "--allow-net", "10.0.0.0/8", "--json"])
        .arg(&json)
        .arg("--html")
        .arg(&html)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    eprintln!("{stderr}\n{stdout}");
    let doc: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).expect("lab wrote its JSON")).unwrap();
    std::fs::remove_file(&json).unwrap();
    let profiles = doc["profiles"].as_array().unwrap();
    assert!(profiles.len() >= 7, "every built-in profile ran");
    // The HTML page: a row and a section per profile, every one as expected.
    let page = std::fs::read_to_string(&html).expect("lab wrote its HTML page");
    std::fs::remove_file(&html).unwrap();
    assert!(page.contains("Every profile as expected"), "{page}");
    for p in profiles {
        let name = p["profile"].as_str().unwrap();
        assert!(
            page.contains(&format!("id=\"{name}\"")),
            "no section for {name}"
        );
    }
    assert!(
        !page.contains("class=\"bad\""),
        "a profile marked as differing"
    );
    // Every transition scenario, the right way and the wrong way (their
    // windows are checked by the lab: a mismatch otherwise).
    let transitions: Vec<&str> = profiles
        .iter()
        .filter_map(|p| p["profile"].as_str())
        .filter(|n| n.starts_with("transition "))
        .collect();
    assert_eq!(transitions.len(), 14, "{transitions:?}");
    for sc in [
        "reload",
        "boot",
        "boot-bad-file",
        "fin-rst",
        "iface-bounce",
        "bootstrap",
        "tor-kill",
    ] {
        let n = transitions
            .iter()
            .filter(|t| t.starts_with(&format!("transition {sc} (")))
            .count();
        assert_eq!(n, 2, "{sc} both ways: {transitions:?}");
    }
    for p in profiles {
        assert_eq!(
            p["matched"], true,
            "profile {} differs: {}",
            p["profile"], p["mismatches"]
        );
    }
    // A forwarding profile let the lan probes to 10.0.0.1 out: allowed, not leaks.
    let fm = profiles
        .iter()
        .find(|p| p["profile"] == "forward-masquerade")
        .expect("forward-masquerade ran");
    let allowed: u64 = fm["reports"][0]["allowed"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|a| a["entry"] == "net:10.0.0.0/8")
        .map(|a| a["packets"].as_u64().unwrap())
        .sum();
    assert!(allowed >= 1, "{}", fm["reports"][0]["allowed"]);
    // The gateway whose output lets every user reach every private range:
    // its operator's LAN (the profile's own 192.168.0.0/16) and the run's
    // 10.0.0.0/8 are counted apart, exactly the gateway sweeps' three
    // transports each as root and as an unprivileged user; 172.16.0.1 and
    // fd00::1 leak.
    let lan = profiles
        .iter()
        .find(|p| p["profile"] == "lan-output")
        .expect("lan-output ran");
    let allowed_in = |net: &str| -> u64 {
        lan["reports"][0]["allowed"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|a| a["entry"] == format!("net:{net}"))
            .map(|a| a["packets"].as_u64().unwrap())
            .sum()
    };
    assert_eq!(
        allowed_in("192.168.0.0/16"),
        6,
        "{}",
        lan["reports"][0]["allowed"]
    );
    assert_eq!(
        allowed_in("10.0.0.0/8"),
        6,
        "{}",
        lan["reports"][0]["allowed"]
    );
    assert_eq!(lan["got"], "leak");
    let findings = lan["findings"].to_string();
    for f in [
        "gw-root ipv4 lan ×3",
        "gw-user ipv4 lan ×3",
        "gw-user ipv6 lan ×3",
    ] {
        assert!(findings.contains(f), "{f} in {findings}");
    }
    // No reverse-path check, tor running: DNSPort answers the forged
    // sources that route by the uplink (3 IPv4, 2 IPv6), each answer named
    // by the marker its question copies; TransPort's SYN-ACKs may add more.
    let no_rpf = profiles
        .iter()
        .find(|p| p["profile"] == "no-rpf")
        .expect("no-rpf ran");
    let reflected = |fam: &str| -> u64 {
        no_rpf["reports"]
            .as_array()
            .unwrap()
            .iter()
            .flat_map(|r| r["runs"].as_array().unwrap())
            .map(|r| r["reflections"][fam].as_u64().unwrap())
            .sum()
    };
    assert!(reflected("ipv4") >= 3, "{}", no_rpf["reports"][0]["runs"]);
    assert!(reflected("ipv6") >= 2, "{}", no_rpf["reports"][0]["runs"]);
    // The gateway's tor on the lab's obfs4 bridge: its flow followed from
    // the first segment and counted as Tor, no relay's ORPort reached.
    let bridge = profiles
        .iter()
        .find(|p| p["profile"] == "whonix-bridge")
        .expect("whonix-bridge ran");
    assert_eq!(bridge["got"], "pass");
    let tor = &bridge["reports"][0]["tor"];
    assert!(
        tor["by_role"]["obfs4-bridge"].as_u64().unwrap() > 0,
        "{tor}"
    );
    assert_eq!(tor["by_role"].get("orport"), None, "{tor}");
    assert!(tor["flows"]["started"].as_u64().unwrap() >= 1, "{tor}");
    assert_eq!(profiles[0]["profile"], "whonix");
    assert_eq!(profiles[0]["got"], "pass");
    assert!(profiles[0]["gateway_check"]
        .as_str()
        .unwrap()
        .contains("saw exit"));
    let tor = &profiles[0]["reports"][0]["tor"];
    assert!(
        tor["packets"].as_u64().unwrap() > 0,
        "tor's own traffic was seen and classified as Tor: {tor}"
    );
    assert_eq!(tor["flows"]["violations"], 0, "{tor}");
    // Every profile's watch closed its accounting.
    for p in profiles {
        for r in p["reports"].as_array().unwrap() {
            let a = &r["capture"]["accounting"];
            assert_eq!(a["sealed"], true, "{}: {a}", p["profile"]);
            assert_eq!(a["handled"], a["classified"], "{}: {a}", p["profile"]);
        }
    }
    assert_eq!(out.status.code(), Some(0));
    let prefix = doc["lab"].as_str().unwrap();
    let ns_left = std::fs::read_dir("/run/netns")
        .map(|d| {
            d.flatten()
                .filter(|e| e.file_name().to_string_lossy().starts_with(prefix))
                .count()
        })
        .unwrap_or(0);
    assert_eq!(ns_left, 0);
    assert!(!Path::new(doc["tmpdir"].as_str().unwrap()).exists());
    assert!(!Path::new("/run/leaktest-lab")
        .join(format!("{prefix}.json"))
        .exists());
}

/// A gateway developer's ruleset with a classic mistake: the output chain
/// lets every user send DNS ("the gateway may resolve names itself"). The
/// lab must load it, find the gateway working, and fail it: exit 1, the
/// verdict LEAK against the expected PASS, with the gateway-local DNS probes
/// of both sweeps (root and unprivileged) as the findings.
#[test]
fn a_user_ruleset_that_leaks_dns_fails_the_lab() {
    if !leaktest_netns::require_root("lab_e2e") {
        return;
    }
    let (uid, _) = leaktest_lab::sys::user_ids("debian-tor").expect("the tor package's user");
    let good = leaktest_lab::profiles::Policy::WHONIX.ruleset(uid);
    let skuid = format!("meta skuid {uid} accept\n");
    assert!(good.contains(&skuid), "{good}");
    let bad = good.replacen(&skuid, &format!("udp dport 53 accept\n{skuid}"), 1);
    let dir = tempfile::tempdir().unwrap();
    let ruleset = dir.path().join("my-gateway.nft");
    std::fs::write(&ruleset, bad).unwrap();
    let json = dir.path().join("lab.json");
    let out = Command::new(env!("CARGO_BIN_EXE_leaktest"))
        .args(["lab", "--ruleset"])
        .arg(&ruleset)
        .arg("--json")
        .arg(&json)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    eprintln!("{stderr}\n{stdout}");
    assert_eq!(
        out.status.code(),
        Some(1),
        "a leaking ruleset fails the lab"
    );
    let doc: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).expect("lab wrote its JSON")).unwrap();
    let profiles = doc["profiles"].as_array().unwrap();
    assert_eq!(profiles.len(), 1);
    let p = &profiles[0];
    assert_eq!(p["profile"], "my-gateway.nft");
    assert_eq!(
        (&p["expected"], &p["got"], &p["matched"]),
        (&"pass".into(), &"leak".into(), &false.into())
    );
    assert!(
        p["gateway_check"].as_str().unwrap().contains("saw exit"),
        "the gateway worked"
    );
    let findings: Vec<&str> = p["findings"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|f| f.as_str())
        .collect();
    // Exactly the DNS probe of each family, from both gateway-local sweeps,
    // and the lan suite's UDP to port 53 of every LAN destination that
    // exists on the uplink (IPv4: 10.0.0.1, 172.16.0.1, 192.168.1.1,
    // 100.64.0.1, 169.254.1.1, both broadcasts, all-hosts, the 6to4 relay,
    // the router; IPv6: fd00::1, all-nodes, 6to4, Teredo, NAT64, the
    // router; not the absent uplink host, fe80::1 or the subnet-router
    // anycast address, which are never resolved).
    assert_eq!(
        findings,
        [
            "gw-root ipv4 udp ×1",
            "gw-root ipv4 lan ×10",
            "gw-root ipv6 udp ×1",
            "gw-root ipv6 lan ×6",
            "gw-user ipv4 udp ×1",
            "gw-user ipv4 lan ×10",
            "gw-user ipv6 udp ×1",
            "gw-user ipv6 lan ×6",
        ],
        "{findings:?}"
    );
    let mismatches = p["mismatches"].to_string();
    assert!(
        mismatches.contains("Udp { dst_port: 53 }"),
        "the table names the probe: {mismatches}"
    );
    assert!(
        mismatches
            .contains("gw-root: 18 probes leaked that the model stops (ipv4 udp 1, ipv4 lan 10, ipv6 udp 1, ipv6 lan 6)"),
        "{mismatches}"
    );
    assert!(stdout.contains("0 of 1 profile(s) as expected"), "{stdout}");
}
