//! End-to-end tests of the control-port client against a real `tor` started by the test
//! (`DisableNetwork 1`, `SocksPort 0`: it never touches the network). Each test runs its own
//! tor in a temporary directory and kills it by PID on drop.

use leaktest_tor::restrict::{self, Journal, JournalMode, RestrictGuard};
use leaktest_tor::{
    fetch_allowlist, AllowlistFeed, AuthMethod, ConnectOptions, ControlTarget, Controller,
    FeedHealth, TorError,
};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const STARTUP: Duration = Duration::from_secs(25);

/// A tor process that dies with the guard.
struct Tor {
    child: Child,
    dir: tempfile::TempDir,
    port: u16,
}

impl Tor {
    fn start(extra: &str) -> Tor {
        let dir = tempfile::tempdir().unwrap();
        let port = free_port();
        let d = dir.path();
        let torrc = d.join("torrc");
        std::fs::write(d.join("defaults"), "").unwrap();
        // Tor creates a control socket only in a directory nobody else can enter.
        std::os::unix::fs::DirBuilderExt::mode(&mut std::fs::DirBuilder::new(), 0o700)
            .create(d.join("ctl"))
            .unwrap();
        std::fs::write(
            &torrc,
            format!(
                "DataDirectory {data}\nDisableNetwork 1\nSocksPort 0\nControlPort 127.0.0.1:{port}\n\
                 ControlSocket {sock}\nLog notice file {log}\n{extra}\n",
                data = d.join("data").display(),
                sock = d.join("ctl/sock").display(),
                log = d.join("log").display(),
            ),
        )
        .unwrap();
        let child = Tor::spawn(d);
        let mut tor = Tor { child, dir, port };
        tor.wait_ready();
        tor
    }

    fn spawn(d: &Path) -> Child {
        Command::new("tor")
            .arg("-f")
            .arg(d.join("torrc"))
            .arg("--defaults-torrc")
            .arg(d.join("defaults"))
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(d.join("stdout")).unwrap())
            .stderr(Stdio::null())
            .spawn()
            .expect("tor is installed (scripts/install-deps.sh)")
    }

    /// Kills this tor and starts a new one with the same configuration and control port.
    fn restart(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_file(self.socket());
        self.child = Tor::spawn(self.dir.path());
        self.wait_ready();
    }

    fn wait_ready(&mut self) {
        let deadline = Instant::now() + STARTUP;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                panic!(
                    "tor exited with {status} during startup; log:\n{}",
                    self.log()
                );
            }
            if self.socket().exists() && TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "tor did not open its control port; log:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn log(&self) -> String {
        let read = |n: &str| std::fs::read_to_string(self.dir.path().join(n)).unwrap_or_default();
        format!("{}{}", read("stdout"), read("log"))
    }
    fn tcp(&self) -> ControlTarget {
        ControlTarget::Tcp(SocketAddr::from(([127, 0, 0, 1], self.port)))
    }
    fn socket(&self) -> PathBuf {
        self.dir.path().join("ctl/sock")
    }
    fn unix(&self) -> ControlTarget {
        ControlTarget::Unix(self.socket())
    }
    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }
}

impl Drop for Tor {
    fn drop(&mut self) {
        // Child::kill signals exactly this child's PID.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn sa(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

fn wait_until(what: &str, limit: Duration, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

const FP: &str = "0123456789ABCDEF0123456789ABCDEF01234567";

fn restricted_values(ctl: &mut Controller) -> Vec<(String, Option<String>)> {
    ctl.getconf(&[
        "ReachableDirAddresses",
        "ReachableORAddresses",
        "FascistFirewall",
    ])
    .unwrap()
}

#[test]
fn cookie_auth_info_conf_and_feed() {
    let tor = Tor::start(&format!(
        "CookieAuthentication 1\n\
         DirAuthority lab1 orport=5001 v3ident={FP} 203.0.113.11:7001 {FP}\n\
         FallbackDir 203.0.113.12:7002 orport=5002 id={FP} ipv6=[2001:db8::12]:5002\n\
         Bridge obfs4 198.51.100.20:8443 {FP} cert=AAAA iat-mode=0\n\
         Bridge 198.51.100.21:9001"
    ));

    // PROTOCOLINFO before authentication, over TCP.
    let mut c = Controller::open(&tor.tcp(), Duration::from_secs(5)).unwrap();
    let info = c.protocol_info().unwrap();
    assert_eq!(info.protocol_version, 1);
    assert!(info.methods.contains(&AuthMethod::Cookie), "{info:?}");
    assert!(info.methods.contains(&AuthMethod::SafeCookie), "{info:?}");
    assert_eq!(
        info.cookie_file.as_deref(),
        Some(tor.path("data/control_auth_cookie").as_path())
    );
    assert!(
        info.tor_version
            .as_deref()
            .is_some_and(|v| v.starts_with("0.")),
        "{info:?}"
    );
    // Commands before authentication are refused (Tor then closes the connection).
    assert!(c.getinfo(&["version"]).is_err());

    // Each cookie method explicitly, over TCP and over the unix socket.
    for target in [tor.tcp(), tor.unix()] {
        for method in [AuthMethod::Cookie, AuthMethod::SafeCookie] {
            let mut c = Controller::open(&target, Duration::from_secs(5)).unwrap();
            let info = c.protocol_info().unwrap();
            c.authenticate_with(&method, &info, None).unwrap();
            assert_eq!(c.auth_method(), Some(&method));
            let v = c.getinfo_one("version").unwrap();
            assert_eq!(Some(v.as_str()), info.tor_version.as_deref());
        }
    }

    // Automatic choice prefers SAFECOOKIE.
    let opts = ConnectOptions::new(tor.unix()).with_timeout(Duration::from_secs(5));
    let mut c = Controller::connect(&opts).unwrap();
    assert_eq!(c.auth_method(), Some(&AuthMethod::SafeCookie));

    // A wrong cookie (an impostor's file) is rejected: SAFECOOKIE's server hash check fails.
    let fake = tor.path("fake_cookie");
    std::fs::write(&fake, [0u8; 32]).unwrap();
    let mut bad = Controller::open(&tor.tcp(), Duration::from_secs(5)).unwrap();
    let mut info = bad.protocol_info().unwrap();
    info.cookie_file = Some(fake.clone());
    assert!(matches!(
        bad.authenticate_with(&AuthMethod::SafeCookie, &info, None),
        Err(TorError::Auth(_))
    ));
    let mut bad = Controller::open(&tor.tcp(), Duration::from_secs(5)).unwrap();
    let mut info = bad.protocol_info().unwrap();
    info.cookie_file = Some(fake);
    assert!(matches!(
        bad.authenticate_with(&AuthMethod::Cookie, &info, None),
        Err(TorError::Auth(_))
    ));

    // GETINFO config/defaults: the compiled-in authorities.
    let defaults = c.getinfo_one("config/defaults").unwrap();
    assert!(
        defaults
            .lines()
            .filter(|l| l.starts_with("DirAuthority "))
            .count()
            >= 5
    );
    // GETCONF of configured directory servers and bridges.
    let auth = c.getconf_values("DirAuthority").unwrap();
    assert_eq!(auth.len(), 1, "{auth:?}");
    assert!(auth[0].contains("203.0.113.11:7001"));
    assert_eq!(c.getconf_values("FallbackDir").unwrap().len(), 1);
    assert_eq!(c.getconf_values("Bridge").unwrap().len(), 2);
    // Errors are typed and the connection stays usable after a refused command.
    match c.getinfo(&["no/such/key"]) {
        Err(TorError::Refused { code: 552, .. }) => {}
        other => panic!("{other:?}"),
    }
    // The allowlist from all sources.
    let (list, counts) = fetch_allowlist(&mut c).unwrap();
    assert_eq!(counts.consensus, 0, "no consensus with DisableNetwork");
    for w in [
        "203.0.113.11:5001",
        "203.0.113.12:5002",
        "[2001:db8::12]:5002",
        "198.51.100.20:8443",
        "198.51.100.21:9001",
    ] {
        assert!(list.contains(&sa(w)), "{w} missing");
    }
    // This Tor is a client (no ORPort): it never uses the DirPorts.
    for w in ["203.0.113.11:7001", "203.0.113.12:7002"] {
        assert!(
            !list.contains(&sa(w)),
            "{w}: a client's allowlist holds a DirPort"
        );
    }
    // With its own DirAuthority, Tor uses none of its compiled-in directory servers.
    assert!(!list.contains(&sa("128.31.0.39:9231")));
    assert_eq!(counts.default_dirs, 0);
    assert_eq!(counts.dir_authorities, 2);
    assert_eq!(counts.fallback_dirs, 3);
    assert_eq!(counts.bridges, 2);

    // The feed: starts live, picks up a new bridge on CONF_CHANGED, keeps static entries.
    let mut extra = leaktest_tor::Allowlist::new();
    extra.insert(sa("198.51.100.99:5555"));
    let feed = AllowlistFeed::start(opts.clone(), extra).unwrap();
    assert!(feed.health().is_live());
    let mut reader = feed.reader();
    assert!(reader.get().contains(&sa("198.51.100.99:5555")));
    assert!(reader.get().contains(&sa("203.0.113.11:5001")));
    assert!(!reader.get().contains(&sa("198.51.100.30:443")));
    let g0 = feed.generation();
    c.setconf(&[("Bridge", Some("198.51.100.30:443"))]).unwrap();
    wait_until(
        "the feed to refresh on CONF_CHANGED",
        Duration::from_secs(10),
        || feed.generation() > g0,
    );
    assert!(reader.get().contains(&sa("198.51.100.30:443")));
    // Endpoints seen earlier stay (the list only grows during a run).
    assert!(reader.get().contains(&sa("198.51.100.21:9001")));
    assert!(feed.first_outage().is_none());

    // Tor goes away: the feed becomes unavailable and remembers it.
    drop(c);
    drop(tor);
    wait_until(
        "the feed to notice Tor is gone",
        Duration::from_secs(10),
        || !feed.health().is_live(),
    );
    assert!(matches!(feed.health(), FeedHealth::Unavailable { .. }));
    assert!(feed.first_outage().is_some());
    let t = Instant::now();
    feed.shutdown();
    assert!(t.elapsed() < Duration::from_secs(5));
}

#[test]
fn feed_reconnects_after_tor_restart_but_remembers_the_outage() {
    let mut tor = Tor::start("CookieAuthentication 1");
    let opts = ConnectOptions::new(tor.tcp()).with_timeout(Duration::from_secs(5));
    let feed = AllowlistFeed::start(opts, leaktest_tor::Allowlist::new()).unwrap();
    assert!(feed.health().is_live());
    let g0 = feed.generation();
    tor.restart();
    wait_until(
        "the feed to reconnect to the new tor",
        Duration::from_secs(15),
        || feed.health().is_live() && feed.generation() > g0,
    );
    let outage = feed.first_outage().expect("the outage is remembered");
    assert!(outage.reason.contains("lost"), "{outage:?}");
    assert!(feed.current().contains(&sa("128.31.0.39:9201")));
    feed.shutdown();
}

#[test]
fn restrict_restore_round_trip_and_guard() {
    let tor = Tor::start("CookieAuthentication 1");
    let journal = tor.path("state/tor-restrict.json");
    let opts = ConnectOptions::new(tor.tcp()).with_timeout(Duration::from_secs(5));
    let mut c = Controller::connect(&opts).unwrap();

    // Case 1: everything at its defaults.
    let before = restricted_values(&mut c);
    assert_eq!(
        before,
        vec![
            ("ReachableDirAddresses".to_string(), None),
            ("ReachableORAddresses".to_string(), None),
            ("FascistFirewall".to_string(), Some("0".to_string())),
        ]
    );
    let j = restrict::restrict(&mut c, &journal, JournalMode::Manual).unwrap();
    assert!(j.previous.iter().all(|p| p.was_default), "{j:?}");
    assert_eq!(Journal::load(&journal).unwrap().as_ref(), Some(&j));
    assert_eq!(
        restricted_values(&mut c),
        vec![
            (
                "ReachableDirAddresses".to_string(),
                Some("*:80".to_string())
            ),
            (
                "ReachableORAddresses".to_string(),
                Some("*:443".to_string())
            ),
            ("FascistFirewall".to_string(), Some("1".to_string())),
        ]
    );
    // A second restriction is refused while the first stands.
    assert!(matches!(
        restrict::restrict(&mut c, &journal, JournalMode::Manual),
        Err(TorError::AlreadyRestricted { .. })
    ));
    assert!(matches!(
        restrict::restore(&mut c, &journal).unwrap(),
        restrict::Restored::Applied(_)
    ));
    assert_eq!(restricted_values(&mut c), before);
    assert!(!journal.exists());
    assert_eq!(
        restrict::restore(&mut c, &journal).unwrap(),
        restrict::Restored::Nothing
    );

    // Case 2: values set by the operator, including a repeated line option.
    c.setconf(&[
        ("ReachableORAddresses", Some("accept *:9001")),
        ("ReachableORAddresses", Some("accept *:443, reject *:*")),
        ("ReachableDirAddresses", Some("*:8080")),
    ])
    .unwrap();
    let before = restricted_values(&mut c);
    assert_eq!(before.len(), 4, "{before:?}");
    restrict::restrict(&mut c, &journal, JournalMode::Manual).unwrap();
    assert_ne!(restricted_values(&mut c), before);
    restrict::restore(&mut c, &journal).unwrap();
    assert_eq!(restricted_values(&mut c), before);
    // config-text agrees: what was default is default again.
    let text = c.getinfo_one("config-text").unwrap();
    assert!(!text.contains("FascistFirewall"), "{text}");

    // The guard restores on drop.
    {
        let guard = RestrictGuard::restrict(&opts, &journal).unwrap();
        assert!(guard.journal_path().exists());
        assert_eq!(
            Journal::load(&journal).unwrap().unwrap().mode,
            JournalMode::Guard
        );
        assert_eq!(restricted_values(&mut c)[2].1.as_deref(), Some("1"));
        // The journal's owner (this process) is alive: recovery leaves it alone.
        assert_eq!(restrict::recover_leftover_at(&journal).unwrap(), None);
    }
    assert_eq!(restricted_values(&mut c), before);
    assert!(!journal.exists());
    // And explicitly.
    let guard = RestrictGuard::restrict(&opts, &journal).unwrap();
    guard.restore().unwrap();
    assert_eq!(restricted_values(&mut c), before);
}

/// The same control address can lead to another Tor (another namespace's tor on
/// 127.0.0.1:9051, or one started since): a journal is applied only to the Tor it restricted.
#[test]
fn a_journal_is_never_applied_to_another_tor() {
    let mut a = Tor::start("CookieAuthentication 1");
    let b = Tor::start("CookieAuthentication 1");
    let journal = a.path("state/tor-restrict.json");
    let connect = |t: &Tor| {
        Controller::connect(&ConnectOptions::new(t.tcp()).with_timeout(Duration::from_secs(5)))
            .unwrap()
    };
    let mut ca = connect(&a);
    let mut cb = connect(&b);
    let b_before = restricted_values(&mut cb);
    let j = restrict::restrict(&mut ca, &journal, JournalMode::Manual).unwrap();
    let tor_a = j.tor.as_ref().expect("the journal names its Tor").pid;
    assert_eq!(tor_a, a.child.id());
    assert_eq!(j.netns, restrict::current_netns());
    // Through B's control port (as if A's address now led to B): refused, nothing changed.
    let e = restrict::restore(&mut cb, &journal).unwrap_err();
    assert!(matches!(e, TorError::OtherTor { .. }), "{e}");
    assert!(
        e.to_string()
            .contains(&format!("restricted Tor pid {tor_a}, which still runs")),
        "{e}"
    );
    assert!(journal.exists());
    assert_eq!(restricted_values(&mut cb), b_before);
    assert_eq!(restricted_values(&mut ca)[2].1.as_deref(), Some("1"));
    // A exits: its run-time restriction is gone with it. The journal is obsolete and goes,
    // and B is still untouched.
    drop(ca);
    let _ = a.child.kill();
    let _ = a.child.wait();
    let r = restrict::restore(&mut cb, &journal).unwrap();
    assert!(matches!(r, restrict::Restored::TorGone(_)), "{r:?}");
    assert!(!journal.exists());
    assert_eq!(restricted_values(&mut cb), b_before);
}

/// Env vars through which `crash_recovery_after_kill_9` drives its child.
const CHILD_CONTROL: &str = "LEAKTEST_TOR_TEST_CHILD_CONTROL";
const CHILD_JOURNAL: &str = "LEAKTEST_TOR_TEST_CHILD_JOURNAL";
const CHILD_READY: &str = "LEAKTEST_TOR_TEST_CHILD_READY";

/// Not a test by itself: the child process of `crash_recovery_after_kill_9` (run only when
/// that test re-executes this binary with the variables set). It restricts Tor with a guard,
/// says it is ready, and waits to be killed.
#[test]
#[ignore = "helper process for crash_recovery_after_kill_9"]
fn child_restricts_and_waits() {
    let (Ok(control), Ok(journal), Ok(ready)) = (
        std::env::var(CHILD_CONTROL),
        std::env::var(CHILD_JOURNAL),
        std::env::var(CHILD_READY),
    ) else {
        return;
    };
    let opts = ConnectOptions::new(ControlTarget::parse(&control).unwrap());
    let guard = RestrictGuard::restrict(&opts, Path::new(&journal)).unwrap();
    std::fs::write(&ready, "ready").unwrap();
    // Bounded: the parent kills us long before this.
    std::thread::sleep(Duration::from_secs(30));
    drop(guard);
}

#[test]
fn crash_recovery_after_kill_9() {
    let tor = Tor::start("CookieAuthentication 1");
    let journal = tor.path("state/tor-restrict.json");
    let ready = tor.path("child-ready");
    let opts = ConnectOptions::new(tor.unix()).with_timeout(Duration::from_secs(5));
    let mut c = Controller::connect(&opts).unwrap();
    let before = restricted_values(&mut c);

    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([
            "--ignored",
            "--exact",
            "child_restricts_and_waits",
            "--test-threads=1",
        ])
        .env(CHILD_CONTROL, tor.unix().to_string())
        .env(CHILD_JOURNAL, &journal)
        .env(CHILD_READY, &ready)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    struct Reap<'a>(&'a mut Child);
    impl Drop for Reap<'_> {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let reap = Reap(&mut child);
    wait_until("the child to restrict Tor", Duration::from_secs(20), || {
        ready.exists()
    });
    assert_eq!(restricted_values(&mut c)[2].1.as_deref(), Some("1"));
    let j = Journal::load(&journal).unwrap().unwrap();
    assert_eq!(j.pid, reap.0.id());
    // Its owner is alive: a new leaktest start must leave it alone.
    assert!(j.owner_alive());
    assert_eq!(restrict::recover_leftover_at(&journal).unwrap(), None);
    assert_eq!(restricted_values(&mut c)[2].1.as_deref(), Some("1"));

    // kill -9: no destructor runs, the journal stays, Tor stays restricted.
    reap.0.kill().unwrap();
    reap.0.wait().unwrap();
    drop(reap);
    assert!(journal.exists());
    assert_eq!(restricted_values(&mut c)[2].1.as_deref(), Some("1"));

    // The next start restores and says so.
    let msg = restrict::recover_leftover_at(&journal).unwrap().unwrap();
    assert!(msg.contains(&format!("pid {}", j.pid)), "{msg}");
    assert!(msg.contains("restored Tor's configuration"), "{msg}");
    assert_eq!(restricted_values(&mut c), before);
    assert!(!journal.exists());
    assert_eq!(restrict::recover_leftover_at(&journal).unwrap(), None);
}

#[test]
fn password_and_null_auth() {
    let out = Command::new("tor")
        .args(["--quiet", "--hash-password", "correct horse \"battery\""])
        .output()
        .unwrap();
    let hashed = String::from_utf8_lossy(&out.stdout)
        .lines()
        .rfind(|l| l.starts_with("16:"))
        .expect("tor --hash-password prints 16:...")
        .to_string();
    let tor = Tor::start(&format!("HashedControlPassword {hashed}"));
    let mut c = Controller::open(&tor.tcp(), Duration::from_secs(5)).unwrap();
    assert_eq!(
        c.protocol_info().unwrap().methods,
        vec![AuthMethod::HashedPassword]
    );

    let opts = ConnectOptions::new(tor.tcp()).with_timeout(Duration::from_secs(5));
    match Controller::connect(&opts) {
        Err(TorError::Auth(m)) => assert!(m.contains("--tor-password-env"), "{m}"),
        other => panic!("{other:?}"),
    }
    let mut wrong = opts.clone();
    wrong.password = Some("wrong".into());
    assert!(matches!(
        Controller::connect(&wrong),
        Err(TorError::Auth(_))
    ));

    let var = format!("LEAKTEST_TOR_TEST_PW_{}", std::process::id());
    std::env::set_var(&var, "correct horse \"battery\"");
    let good = opts.clone().password_from_env(&var).unwrap();
    let mut c = Controller::connect(&good).unwrap();
    assert_eq!(c.auth_method(), Some(&AuthMethod::HashedPassword));
    assert!(c
        .getinfo_one("config/defaults")
        .unwrap()
        .contains("DirAuthority"));
    // A stock configuration: the compiled-in authorities and fallbacks are Tor endpoints.
    let (list, counts) = fetch_allowlist(&mut c).unwrap();
    assert!(counts.default_dirs > 100, "{counts:?}");
    // Every one of them, less the ten authorities' DirPorts (a client never uses a DirPort).
    assert_eq!(list.len(), counts.default_dirs - 10);
    assert!(list.contains(&sa("128.31.0.39:9201")));
    assert!(!list.contains(&sa("128.31.0.39:9231")));

    // The journal names the variable, never the password; restore reads it again.
    let journal = tor.path("tor-restrict.json");
    restrict::restrict(&mut c, &journal, JournalMode::Guard).unwrap();
    let text = std::fs::read_to_string(&journal).unwrap();
    assert!(!text.contains("battery"), "{text}");
    assert!(text.contains(&var), "{text}");
    let j = Journal::load(&journal).unwrap().unwrap();
    let again = restrict::journal_connect_options(&j, None, None).unwrap();
    let mut c2 = Controller::connect(&again).unwrap();
    restrict::restore(&mut c2, &journal).unwrap();
    assert_eq!(restricted_values(&mut c2)[2].1.as_deref(), Some("0"));
    std::env::remove_var(&var);
    drop(tor);

    // No authentication configured at all: NULL.
    let tor = Tor::start("");
    let opts = ConnectOptions::new(tor.unix()).with_timeout(Duration::from_secs(5));
    let mut c = Controller::connect(&opts).unwrap();
    assert_eq!(c.auth_method(), Some(&AuthMethod::Null));
    c.setevents(&["NEWCONSENSUS"]).unwrap();
    assert!(matches!(
        c.setevents(&["NO_SUCH_EVENT"]),
        Err(TorError::Refused { code: 552, .. })
    ));
    assert_eq!(c.next_event(Duration::from_millis(100)).unwrap(), None);
}
