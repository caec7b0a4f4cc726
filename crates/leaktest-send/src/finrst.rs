//! The FIN/RST check's client (`leaktest fin-rst`): real TCP connections
//! from the workstation through the gateway's transparent proxy to a
//! server beyond, held open across a moment of change on the gateway (tor
//! killed, the connections' conntrack entries flushed, the firewall
//! reloaded), then ended the ways that leak through a gateway that forgot
//! them: marked data, a FIN, and 0.5 s later a RST.
//!
//! Why: a transparent proxy redirects a connection by its conntrack entry.
//! Once the entry is gone (`conntrack -D`, a flush, a timeout, tor's
//! restart with a firewall that flushes conntrack), the client's next
//! segments are no new connection to the NAT (not a SYN) and go wherever
//! the filter lets them: a gateway whose filter accepts all TCP and whose
//! NAT redirects only SYNs sends them to the real destination, with the
//! workstation's address. This is the "FIN/RST leak" of transparent
//! proxies.
//!
//! Each connection's data is the payload marker of probe `tcp [A]` to the
//! target's port under the run's key (the watcher attributes a leaked copy
//! to this run, as it does probes); its FIN and RST carry no payload and
//! are leaks by themselves, named by their ports in the report
//! ([`FinRstConnection::local`]).
//!
//! Plain sockets: no privilege, no raw socket; nothing but the connections
//! asked for (at most [`MAX_CONNECTIONS`] per target).

use leaktest_wire::catalogue::{Family, ProbeKind, ProbeSpec, TcpFlags};
use leaktest_wire::RunKey;
use serde::{Deserialize, Serialize};
use std::io::Write;
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::os::fd::AsRawFd;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant, SystemTime};

/// Most connections per target.
pub const MAX_CONNECTIONS: usize = 64;
/// From the FIN to the RST (the abortive close): long enough for the FIN
/// and its first retransmissions to leave, short enough that nothing of
/// the connection is retransmitted into a later watch.
pub const ABORT_AFTER: Duration = Duration::from_millis(500);

/// What to do.
#[derive(Clone, Debug)]
pub struct FinRstConfig {
    /// Servers beyond the gateway, at most one per family.
    pub targets: Vec<SocketAddr>,
    /// Connections per target (1..=[`MAX_CONNECTIONS`]).
    pub connections: usize,
    pub connect_timeout: Duration,
    /// Longest hold before the connections are ended.
    pub hold: Duration,
    /// End them as soon as this file exists (checked every 10 ms).
    pub close_on: Option<PathBuf>,
    pub key: RunKey,
}

/// One connection, as it went.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FinRstConnection {
    /// `ipv4` or `ipv6`.
    pub family: String,
    /// The workstation's end (address and source port).
    pub local: String,
    pub remote: String,
    /// Unix ns: connected, marked data written, FIN sent (shutdown of the
    /// write side), RST sent (closed with `SO_LINGER` 0).
    pub connected_unix_ns: u64,
    pub data_unix_ns: Option<u64>,
    pub fin_unix_ns: Option<u64>,
    pub rst_unix_ns: Option<u64>,
    /// What failed ending it (the gateway reset it first, for example).
    pub error: Option<String>,
}

/// The run.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FinRstReport {
    /// Run id, 16 hex digits (the markers' run).
    pub run_id: String,
    /// `open` or `shared` (`--key-file`).
    pub key_mode: String,
    /// The probe whose payload marker each connection's data is, per
    /// family: its `seq` in the watcher's JSON.
    pub marker_seq: Vec<(String, u32)>,
    /// `file` (the --close-on file appeared), `hold` (the hold ended) or
    /// `signal` (interrupted: ended with a RST at once, no data, no FIN).
    pub ended_by: String,
    pub connections: Vec<FinRstConnection>,
}

/// Errors: a connection that cannot be opened (nothing to check then).
#[derive(Debug, thiserror::Error)]
pub enum FinRstError {
    #[error("connecting to {target} (connection {n} of {of}): {source}")]
    Connect {
        target: SocketAddr,
        n: usize,
        of: usize,
        source: std::io::Error,
    },
    #[error("{0}")]
    Config(String),
}

fn unix_ns() -> u64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
}

/// The probe whose marker the data of a connection to `target` carries.
pub fn marker_spec(target: &SocketAddr) -> ProbeSpec {
    ProbeSpec {
        family: if target.is_ipv4() {
            Family::V4
        } else {
            Family::V6
        },
        kind: ProbeKind::Tcp {
            flags: TcpFlags(TcpFlags::ACK),
            dst_port: target.port(),
        },
    }
}

/// Opens every connection, calls `connected` once they all are, holds
/// them until the `close_on` file appears, the hold ends or `stop` is
/// raised, then ends each: marked data and a FIN (not when stopped), and
/// [`ABORT_AFTER`] later a RST.
pub fn run(
    cfg: &FinRstConfig,
    stop: &AtomicBool,
    connected: &mut dyn FnMut(&[FinRstConnection]),
) -> Result<FinRstReport, FinRstError> {
    if cfg.targets.is_empty() {
        return Err(FinRstError::Config("no target".into()));
    }
    if !(1..=MAX_CONNECTIONS).contains(&cfg.connections) {
        return Err(FinRstError::Config(format!(
            "--connections {}: give 1 to {MAX_CONNECTIONS}",
            cfg.connections
        )));
    }
    let mut open: Vec<(
        TcpStream,
        FinRstConnection,
        [u8; leaktest_wire::marker::MARKER_LEN],
    )> = Vec::new();
    for target in &cfg.targets {
        let marker = cfg.key.payload_marker(marker_spec(target).seq());
        for n in 0..cfg.connections {
            let s = TcpStream::connect_timeout(target, cfg.connect_timeout).map_err(|source| {
                FinRstError::Connect {
                    target: *target,
                    n: n + 1,
                    of: cfg.connections,
                    source,
                }
            })?;
            let local = s
                .local_addr()
                .map_or_else(|_| "?".into(), |a| a.to_string());
            open.push((
                s,
                FinRstConnection {
                    family: if target.is_ipv4() { "ipv4" } else { "ipv6" }.into(),
                    local,
                    remote: target.to_string(),
                    connected_unix_ns: unix_ns(),
                    data_unix_ns: None,
                    fin_unix_ns: None,
                    rst_unix_ns: None,
                    error: None,
                },
                marker,
            ));
        }
    }
    connected(&open.iter().map(|(_, c, _)| c.clone()).collect::<Vec<_>>());
    let until = Instant::now() + cfg.hold;
    let ended_by = loop {
        if stop.load(Ordering::Relaxed) {
            break "signal";
        }
        if cfg.close_on.as_ref().is_some_and(|p| p.exists()) {
            break "file";
        }
        if Instant::now() >= until {
            break "hold";
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    if ended_by != "signal" {
        for (s, c, marker) in open.iter_mut() {
            let mut w: &TcpStream = s;
            match w.write_all(&marker[..]) {
                Ok(()) => c.data_unix_ns = Some(unix_ns()),
                Err(e) => c.error = Some(format!("writing the marked data: {e}")),
            }
            match s.shutdown(Shutdown::Write) {
                Ok(()) => c.fin_unix_ns = Some(unix_ns()),
                Err(e) => {
                    c.error.get_or_insert(format!("shutting down (FIN): {e}"));
                }
            }
        }
        let abort_at = Instant::now() + ABORT_AFTER;
        while Instant::now() < abort_at && !stop.load(Ordering::Relaxed) {
            std::thread::sleep(Duration::from_millis(10));
        }
    }
    let mut connections = Vec::with_capacity(open.len());
    for (s, mut c, _) in open {
        let linger = libc::linger {
            l_onoff: 1,
            l_linger: 0,
        };
        // SAFETY: a valid linger struct of its size on a socket this owns.
        let r = unsafe {
            libc::setsockopt(
                s.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_LINGER,
                (&linger as *const libc::linger).cast(),
                std::mem::size_of::<libc::linger>() as libc::socklen_t,
            )
        };
        if r == 0 {
            drop(s);
            c.rst_unix_ns = Some(unix_ns());
        } else {
            c.error
                .get_or_insert(format!("SO_LINGER: {}", std::io::Error::last_os_error()));
        }
        connections.push(c);
    }
    Ok(FinRstReport {
        run_id: format!("{:016x}", cfg.key.run_id),
        key_mode: match cfg.key.mode {
            leaktest_wire::marker::KeyMode::Open => "open".into(),
            leaktest_wire::marker::KeyMode::Shared => "shared".into(),
        },
        marker_seq: cfg
            .targets
            .iter()
            .map(|t| {
                let s = marker_spec(t);
                (s.family.name().to_string(), s.seq())
            })
            .collect(),
        ended_by: ended_by.into(),
        connections,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;
    use std::net::TcpListener;

    /// Over loopback (no namespace needed: nothing leaves the host): the
    /// server reads each connection's data, then its FIN (end of stream),
    /// then the RST (ECONNRESET on a later write) — in that order.
    #[test]
    fn each_connection_sends_its_marker_then_a_fin_then_a_rst() {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        let dir = tempfile::tempdir().unwrap();
        let go = dir.path().join("go");
        let key = RunKey::open(0x0102_0304_0506_0708);
        let cfg = FinRstConfig {
            targets: vec![addr],
            connections: 3,
            connect_timeout: Duration::from_secs(2),
            hold: Duration::from_secs(10),
            close_on: Some(go.clone()),
            key,
        };
        let server = std::thread::spawn(move || {
            let mut got = Vec::new();
            let mut conns = Vec::new();
            for _ in 0..3 {
                conns.push(l.accept().unwrap().0);
            }
            for mut c in conns {
                c.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
                let mut data = Vec::new();
                // Data, then the FIN: read_to_end returns at the FIN.
                c.read_to_end(&mut data).unwrap();
                got.push(data);
                // The RST: a write after it fails (one may be buffered first).
                std::thread::sleep(Duration::from_millis(800));
                let reset = (0..3).any(|_| {
                    let r = c.write_all(b"x");
                    std::thread::sleep(Duration::from_millis(50));
                    r.is_err()
                });
                assert!(reset, "no RST");
            }
            got
        });
        let mut seen = 0;
        let stop = AtomicBool::new(false);
        let go2 = go.clone();
        let r = run(&cfg, &stop, &mut |c| {
            seen = c.len();
            std::fs::write(&go2, b"").unwrap();
        })
        .unwrap();
        assert_eq!(seen, 3);
        assert_eq!(r.ended_by, "file");
        let marker = key.payload_marker(marker_spec(&addr).seq());
        for data in server.join().unwrap() {
            assert_eq!(data, marker.to_vec());
        }
        assert_eq!(r.connections.len(), 3);
        for c in &r.connections {
            assert_eq!(c.error, None);
            let (d, f, x) = (
                c.data_unix_ns.unwrap(),
                c.fin_unix_ns.unwrap(),
                c.rst_unix_ns.unwrap(),
            );
            assert!(c.connected_unix_ns <= d && d <= f && f < x, "{c:?}");
            assert!(x - f >= ABORT_AFTER.as_nanos() as u64 - 20_000_000, "{c:?}");
        }
        assert_eq!(r.run_id, "0102030405060708");
        assert_eq!(
            r.marker_seq,
            vec![("ipv4".into(), marker_spec(&addr).seq())]
        );
    }

    #[test]
    fn a_stop_ends_them_with_a_rst_only() {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        let stop = AtomicBool::new(false);
        let cfg = FinRstConfig {
            targets: vec![addr],
            connections: 1,
            connect_timeout: Duration::from_secs(2),
            hold: Duration::from_secs(10),
            close_on: None,
            key: RunKey::open(1),
        };
        let t0 = Instant::now();
        let r = run(&cfg, &stop, &mut |_| stop.store(true, Ordering::SeqCst)).unwrap();
        assert!(t0.elapsed() < Duration::from_secs(2));
        assert_eq!(r.ended_by, "signal");
        let c = &r.connections[0];
        assert_eq!((c.data_unix_ns, c.fin_unix_ns), (None, None));
        assert!(c.rst_unix_ns.is_some());
        let (mut s, _) = l.accept().unwrap();
        s.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
        let mut b = [0u8; 16];
        // Reset, not a clean end of stream.
        assert!(s.read(&mut b).is_err());
    }

    #[test]
    fn bounds() {
        let stop = AtomicBool::new(false);
        let mut cfg = FinRstConfig {
            targets: vec![],
            connections: 1,
            connect_timeout: Duration::from_secs(1),
            hold: Duration::from_secs(1),
            close_on: None,
            key: RunKey::open(1),
        };
        assert!(run(&cfg, &stop, &mut |_| {}).is_err());
        cfg.targets = vec!["127.0.0.1:9".parse().unwrap()];
        cfg.connections = MAX_CONNECTIONS + 1;
        assert!(run(&cfg, &stop, &mut |_| {})
            .unwrap_err()
            .to_string()
            .contains("1 to 64"));
        cfg.connections = 0;
        assert!(run(&cfg, &stop, &mut |_| {}).is_err());
    }
}
