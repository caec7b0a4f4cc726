//! The client and the feed against a scripted control port on 127.0.0.1: NEWCONSENSUS events
//! (which a `DisableNetwork` tor never sends), events interleaved with replies, a peer that
//! never answers (timeouts), and a peer that sends garbage.

use leaktest_tor::{AllowlistFeed, ConnectOptions, ControlTarget, Controller, TorError};
use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const RELAY_A: &str = "r relayA AAoQ1DAR6kkoo19hBAX5K0QztNw 5pWVo+vGpyKuCYh6+tt2mGC9JDY 2038-01-01 00:00:00 198.51.100.1 9001 0";
const RELAY_B: &str = "r relayB ABG9JIWtRdmE7EFZyI/AZuXjMA4 TT0ZnCVFx2b8Hqu1cv3MaV8uGTA 2038-01-01 00:00:00 198.51.100.2 443 80\na [2001:db8::2]:443";

/// A scripted Tor: NULL authentication; `ns/all` lists relay A, and relay B too once a
/// consensus was "published" with [`FakeTor::publish`].
struct FakeTor {
    addr: SocketAddr,
    /// The writer of the current connection, shared with the test to push events.
    writer: Arc<Mutex<Option<TcpStream>>>,
    consensus: Arc<AtomicUsize>,
    /// Offer HASHEDPASSWORD instead of NULL.
    password: Arc<std::sync::atomic::AtomicBool>,
}

impl FakeTor {
    fn start() -> FakeTor {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let writer = Arc::new(Mutex::new(None));
        let consensus = Arc::new(AtomicUsize::new(0));
        let password = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let (w, c, pw) = (writer.clone(), consensus.clone(), password.clone());
        std::thread::spawn(move || {
            // Serves connections one after another until the test process ends.
            for stream in listener.incoming() {
                let Ok(stream) = stream else { return };
                *w.lock().unwrap() = Some(stream.try_clone().unwrap());
                serve(stream, &w, &c, &pw);
            }
        });
        FakeTor {
            addr,
            writer,
            consensus,
            password,
        }
    }

    fn send(&self, bytes: &str) {
        let mut guard = self.writer.lock().unwrap();
        let s = guard.as_mut().expect("a client is connected");
        s.write_all(bytes.as_bytes()).unwrap();
    }

    /// A new consensus with relay B, announced as Tor does.
    fn publish(&self) {
        self.consensus.store(1, Ordering::SeqCst);
        let body = format!("{RELAY_A}\r\n{}", RELAY_B.replace('\n', "\r\n"));
        self.send(&format!("650+NEWCONSENSUS\r\n{body}\r\n.\r\n650 OK\r\n"));
    }

    fn drop_connection(&self) {
        if let Some(s) = self.writer.lock().unwrap().take() {
            let _ = s.shutdown(std::net::Shutdown::Both);
        }
    }
}

fn serve(
    stream: TcpStream,
    writer: &Mutex<Option<TcpStream>>,
    consensus: &AtomicUsize,
    password: &std::sync::atomic::AtomicBool,
) {
    let mut reader = BufReader::new(stream);
    let mut line = String::new();
    loop {
        line.clear();
        match reader.read_line(&mut line) {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
        let cmd = line.trim_end().to_string();
        let reply = match cmd.split(' ').next().unwrap_or("") {
            "PROTOCOLINFO" => format!(
                "250-PROTOCOLINFO 1\r\n250-AUTH METHODS={}\r\n250-VERSION Tor=\"0.4.9.11\"\r\n250 OK\r\n",
                if password.load(Ordering::SeqCst) {
                    "HASHEDPASSWORD"
                } else {
                    "NULL"
                }
            ),
            "AUTHENTICATE" | "SETEVENTS" | "SETCONF" | "RESETCONF" => "250 OK\r\n".to_string(),
            "GETINFO" if cmd == "GETINFO ns/all" => {
                let mut body = RELAY_A.to_string();
                if consensus.load(Ordering::SeqCst) > 0 {
                    body.push('\n');
                    body.push_str(RELAY_B);
                }
                // An unrelated event arrives just before the reply.
                format!(
                    "650 BW 1024 2048\r\n250+ns/all=\r\n{}\r\n.\r\n250 OK\r\n",
                    body.replace('\n', "\r\n")
                )
            }
            "GETINFO" if cmd == "GETINFO config/defaults" => {
                "250+config/defaults=\r\nFascistFirewall \"0\"\r\n.\r\n250 OK\r\n".to_string()
            }
            "GETINFO" => "552 Unrecognized key\r\n".to_string(),
            "GETCONF" => {
                let key = cmd.split(' ').nth(1).unwrap_or("");
                if key == "UseDefaultFallbackDirs" {
                    format!("250 {key}=1\r\n")
                } else {
                    format!("250 {key}\r\n")
                }
            }
            "QUIT" => {
                let _ = write_locked(writer, "250 closing connection\r\n");
                return;
            }
            _ => "510 Unrecognized command\r\n".to_string(),
        };
        if write_locked(writer, &reply).is_err() {
            return;
        }
    }
}

fn write_locked(writer: &Mutex<Option<TcpStream>>, s: &str) -> std::io::Result<()> {
    match writer.lock().unwrap().as_mut() {
        Some(w) => w.write_all(s.as_bytes()),
        None => Err(std::io::ErrorKind::NotConnected.into()),
    }
}

fn sa(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

fn wait_until(what: &str, limit: Duration, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn events_between_a_command_and_its_reply_are_queued() {
    let tor = FakeTor::start();
    let opts = ConnectOptions::new(ControlTarget::Tcp(tor.addr));
    let mut c = Controller::connect(&opts).unwrap();
    let ns = c.getinfo_one("ns/all").unwrap();
    assert_eq!(ns, RELAY_A);
    let ev = c
        .next_event(Duration::ZERO)
        .unwrap()
        .expect("the BW event was queued");
    assert_eq!(ev.event_name(), Some("BW"));
    assert_eq!(c.next_event(Duration::from_millis(50)).unwrap(), None);
}

#[test]
fn feed_refreshes_on_newconsensus_and_reports_loss() {
    let tor = FakeTor::start();
    let opts = ConnectOptions::new(ControlTarget::Tcp(tor.addr));
    let feed = AllowlistFeed::start(opts, leaktest_tor::Allowlist::new()).unwrap();
    let mut reader = feed.reader();
    assert!(reader.get().contains(&sa("198.51.100.1:9001")));
    assert!(!reader.get().contains(&sa("198.51.100.2:443")));
    assert_eq!(feed.source_counts().consensus, 1);

    let g0 = feed.generation();
    tor.publish();
    wait_until(
        "a refresh after NEWCONSENSUS",
        Duration::from_secs(5),
        || feed.generation() > g0,
    );
    for w in ["198.51.100.1:9001", "198.51.100.2:443", "[2001:db8::2]:443"] {
        assert!(reader.get().contains(&sa(w)), "{w}");
    }
    // A Tor client (no ORPort) never uses a relay's DirPort: not in the list.
    assert!(!reader.get().contains(&sa("198.51.100.2:80")));
    assert_eq!(feed.source_counts().consensus, 4);
    assert!(feed.health().is_live());

    // Garbage on the control connection: the feed no longer trusts it.
    tor.send("this is not a control-port reply\r\n");
    // (It may reconnect at once, so the outage record is what to look at.)
    wait_until(
        "the feed to give up on garbage",
        Duration::from_secs(5),
        || feed.first_outage().is_some(),
    );
    let outage = feed.first_outage().unwrap();
    assert!(outage.reason.contains("malformed"), "{outage:?}");
    // It reconnects (the fake serves the next connection) but the outage stays on record.
    wait_until("reconnection", Duration::from_secs(10), || {
        feed.health().is_live()
    });
    assert!(feed.first_outage().is_some());
    tor.drop_connection();
    feed.shutdown();
}

/// While tor restarts, whatever listens on its control address is not
/// trusted unless it authenticates as the first connection did: a
/// listener offering NULL where tor wanted a password gets no hearing (the
/// feed stays lost); the real one, back, is trusted again.
#[test]
fn a_reconnection_must_authenticate_as_the_first_did() {
    let tor = FakeTor::start();
    tor.password.store(true, Ordering::SeqCst);
    let mut opts = ConnectOptions::new(ControlTarget::Tcp(tor.addr));
    opts.password = Some("secret".into());
    let feed = AllowlistFeed::start(opts, leaktest_tor::Allowlist::new()).unwrap();
    assert!(feed.health().is_live());
    // "tor restarts": a listener that offers NULL answers meanwhile.
    tor.password.store(false, Ordering::SeqCst);
    tor.drop_connection();
    wait_until("the loss", Duration::from_secs(5), || {
        !feed.health().is_live()
    });
    // Two reconnection rounds (every 2 s) with the NULL listener: still lost.
    std::thread::sleep(leaktest_tor::feed::RECONNECT_EVERY * 2 + Duration::from_millis(500));
    assert!(!feed.health().is_live(), "a NULL listener was trusted");
    // The real one again.
    tor.password.store(true, Ordering::SeqCst);
    tor.drop_connection();
    wait_until("reconnection", Duration::from_secs(10), || {
        feed.health().is_live()
    });
    tor.drop_connection();
    feed.shutdown();
}

#[test]
fn a_silent_peer_times_out() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let t = Instant::now();
    let mut c = Controller::open(&ControlTarget::Tcp(addr), Duration::from_millis(300)).unwrap();
    match c.protocol_info() {
        Err(TorError::Timeout(d)) => assert_eq!(d, Duration::from_millis(300)),
        other => panic!("{other:?}"),
    }
    assert!(t.elapsed() >= Duration::from_millis(300));
    // After a timeout the connection is not reused (replies could be out of step).
    assert!(c.getinfo(&["version"]).is_err());
    drop(listener);
}

/// A raised cancel flag (a signal in the CLI) ends a wait on a silent peer within
/// `CANCEL_POLL`, long before the connection's own timeout.
#[test]
fn a_cancel_flag_ends_the_wait_for_a_silent_peer() {
    use std::sync::atomic::AtomicBool;
    // Accepted by the kernel (backlog) and then never answered.
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let flag = Arc::new(AtomicBool::new(false));
    let opts = ConnectOptions::new(ControlTarget::Tcp(addr))
        .with_timeout(Duration::from_secs(60))
        .with_cancel(flag.clone());
    let raise = {
        let flag = flag.clone();
        std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(300));
            flag.store(true, Ordering::SeqCst);
            Instant::now()
        })
    };
    let r = Controller::connect(&opts);
    let ended = Instant::now();
    let raised = raise.join().unwrap();
    assert!(matches!(r, Err(TorError::Interrupted)), "{r:?}");
    let late = ended.saturating_duration_since(raised);
    eprintln!("ended {late:?} after the flag was raised");
    // Ended by the flag, not by the 60 s timeout.
    assert!(late < Duration::from_secs(10), "{late:?}");
    // Without the flag the same options still wait (uncancellable copy ignores it).
    assert!(opts.uncancellable().cancel.is_none());
    drop(listener);
}

/// A listener on the control address that offers plain COOKIE only, naming a
/// file of its choice, gets nothing: leaktest authenticates with SAFECOOKIE
/// only (the server proves it knows the cookie before anything is sent), so
/// the contents of a root-only 32-byte file never leave.
#[test]
fn a_cookie_only_listener_gets_no_cookie() {
    let dir = tempfile::tempdir().unwrap();
    let secret = dir.path().join("secret32");
    std::fs::write(&secret, [0x5au8; 32]).unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let path = secret.display().to_string();
    let server = std::thread::spawn(move || {
        let (s, _) = listener.accept().unwrap();
        let mut w = s.try_clone().unwrap();
        let mut lines = Vec::new();
        for line in BufReader::new(s).lines() {
            let Ok(line) = line else { break };
            if line.starts_with("PROTOCOLINFO") {
                write!(
                    w,
                    "250-PROTOCOLINFO 1\r\n250-AUTH METHODS=COOKIE COOKIEFILE=\"{path}\"\r\n250-VERSION Tor=\"0.4.8.13\"\r\n250 OK\r\n"
                )
                .unwrap();
            } else {
                write!(w, "515 Authentication failed\r\n").unwrap();
            }
            lines.push(line);
        }
        lines
    });
    let r = Controller::connect(&ConnectOptions::new(ControlTarget::Tcp(addr)));
    let Err(e) = r else {
        panic!("a COOKIE-only listener was accepted")
    };
    assert!(e.to_string().contains("not SAFECOOKIE"), "{e}");
    let seen = server.join().unwrap();
    let hex = "5A".repeat(32);
    assert!(
        seen.iter().all(|l| !l.to_ascii_uppercase().contains(&hex)),
        "the secret was sent: {seen:?}"
    );
}
