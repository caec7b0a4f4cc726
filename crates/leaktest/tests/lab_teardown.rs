//! `leaktest lab` leaves nothing behind: after a failure injected half-way
//! (`LEAKTEST_LAB_FAIL_AT`), after SIGINT, after `kill -9` followed by
//! `leaktest lab down`, and after `--keep` followed by `leaktest lab down`, no
//! lab namespace, no lab process, no state file and no temporary directory
//! remain.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn is_root() -> bool {
    leaktest_netns::require_root("lab_teardown")
}

/// The lab's prefix and temporary directory, from its first progress line.
fn parse_lab_line(line: &str) -> Option<(String, PathBuf)> {
    let rest = &line[line.find("] lab ")? + 6..];
    let mut w = rest.split_whitespace();
    let prefix = w.next()?.to_string();
    let _in = w.next()?;
    Some((prefix, PathBuf::from(w.next()?)))
}

fn processes_mentioning(needle: &str) -> Vec<u32> {
    let mut v = Vec::new();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        if let Ok(c) = std::fs::read(format!("/proc/{pid}/cmdline")) {
            if String::from_utf8_lossy(&c).contains(needle) {
                v.push(pid);
            }
        }
    }
    v
}

fn assert_nothing_left(prefix: &str, tmpdir: &Path) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let ns: Vec<String> = std::fs::read_dir("/run/netns")
            .map(|d| {
                d.flatten()
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .filter(|n| n.starts_with(prefix))
                    .collect()
            })
            .unwrap_or_default();
        let procs = processes_mentioning(&tmpdir.to_string_lossy());
        let state = Path::new("/run/leaktest-lab").join(format!("{prefix}.json"));
        if ns.is_empty() && procs.is_empty() && !tmpdir.exists() && !state.exists() {
            return;
        }
        if Instant::now() > deadline {
            panic!("left behind: namespaces {ns:?}, processes {procs:?}, tmpdir exists {}, state file exists {}", tmpdir.exists(), state.exists());
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Starts the lab and returns it with its prefix and temporary directory.
// The child is handed to the caller, which waits for it.
#[allow(clippy::zombie_processes)]
fn start(
    args: &[&str],
    env: &[(&str, &str)],
) -> (
    std::process::Child,
    String,
    PathBuf,
    BufReader<std::process::ChildStderr>,
) {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_leaktest"));
    cmd.arg("lab")
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().unwrap();
    let mut err = BufReader::new(child.stderr.take().unwrap());
    let mut line = String::new();
    loop {
        line.clear();
        if err.read_line(&mut line).unwrap() == 0 {
            let st = child.wait().unwrap();
            panic!("lab ended ({st}) before announcing itself");
        }
        if let Some((p, t)) = parse_lab_line(&line) {
            return (child, p, t, err);
        }
    }
}

/// Starts a lab whose first profile leaks, and returns 1.5 s after every tor
/// is up: that profile then runs at once, so the lab is mid-profile, with
/// the watcher and a sweep running.
// The child is handed to the caller, which waits for it.
#[allow(clippy::zombie_processes)]
fn start_mid_profile() -> (std::process::Child, String, PathBuf) {
    let (child, prefix, tmpdir, mut err) = start(&["--profile", "forward-masquerade"], &[]);
    wait_for_line(&mut err, "tor started");
    // Keep draining stderr so the lab never blocks on a full pipe; it goes to
    // this test's stderr, shown when the test fails (a teardown error is there).
    std::thread::spawn(move || std::io::copy(&mut err, &mut std::io::stderr()));
    std::thread::sleep(Duration::from_millis(1500));
    (child, prefix, tmpdir)
}

/// Runs `leaktest lab down`, which must succeed; returns what it printed.
fn lab_down() -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_leaktest"))
        .args(["lab", "down"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn wait_for_line(err: &mut BufReader<std::process::ChildStderr>, needle: &str) {
    let mut line = String::new();
    loop {
        line.clear();
        assert!(
            err.read_line(&mut line).unwrap() > 0,
            "lab ended before {needle:?}"
        );
        if line.contains(needle) {
            return;
        }
    }
}

#[test]
fn injected_failure_tears_everything_down() {
    if !is_root() {
        return;
    }
    let (mut child, prefix, tmpdir, mut err) = start(
        &["--profile", "whonix"],
        &[("LEAKTEST_LAB_FAIL_AT", "gateway bootstrap")],
    );
    let mut rest = String::new();
    let _ = std::io::Read::read_to_string(&mut err, &mut rest);
    let st = child.wait().unwrap();
    assert_eq!(
        st.code(),
        Some(2),
        "an injected failure is an error: {rest}"
    );
    assert!(rest.contains("injected failure"), "{rest}");
    assert_nothing_left(&prefix, &tmpdir);
}

#[test]
fn sigint_tears_everything_down() {
    if !is_root() {
        return;
    }
    let (mut child, prefix, tmpdir) = start_mid_profile();
    // SAFETY: signalling our own child.
    unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
    let st = child.wait().unwrap();
    assert_eq!(st.code(), Some(130));
    assert_nothing_left(&prefix, &tmpdir);
}

#[test]
fn kill_9_leftovers_are_removed_by_lab_down() {
    if !is_root() {
        return;
    }
    let (mut child, prefix, tmpdir) = start_mid_profile();
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(tmpdir.exists(), "a killed lab cannot clean up after itself");
    let removed = lab_down();
    assert!(removed.contains(&prefix), "{removed}");
    assert_nothing_left(&prefix, &tmpdir);
}

#[test]
fn keep_leaves_the_profile_up_until_lab_down() {
    if !is_root() {
        return;
    }
    let (mut child, prefix, tmpdir, mut err) = start(&["--profile", "dns-forward", "--keep"], &[]);
    let mut rest = String::new();
    let _ = std::io::Read::read_to_string(&mut err, &mut rest);
    let st = child.wait().unwrap();
    assert_eq!(st.code(), Some(0), "{rest}");
    // Still up: namespaces, tor processes, and the profile's own ruleset
    // (DNS forwarded out of the external interface), not the Whonix one
    // the gateway bootstrapped behind.
    let gw = format!("{prefix}-gw");
    assert!(Path::new("/run/netns").join(&gw).exists(), "{rest}");
    assert!(!processes_mentioning(&tmpdir.to_string_lossy()).is_empty());
    let rules = Command::new("ip")
        .args(["netns", "exec", &gw, "nft", "list", "ruleset"])
        .output()
        .unwrap();
    let rules = String::from_utf8_lossy(&rules.stdout);
    assert!(
        rules.contains(r#"oifname "eth0" udp dport 53 accept"#),
        "{rules}"
    );
    lab_down();
    assert_nothing_left(&prefix, &tmpdir);
}
