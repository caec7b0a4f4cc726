//! The private Tor network: keys, torrc files, the relays, and the wait for
//! a first consensus that already carries the flags the lab needs.
//!
//! What makes it fast (see `shared/notes/tor-lab.md`): keys are made in
//! parallel; the authorities vote every few seconds (`TestingTorNetwork`
//! intervals) starting at an offset chosen so the first vote falls just after
//! the relays have published; `V3BandwidthsFile` makes every relay Fast in the
//! first vote; `TestingDirAuthVoteGuard`/`Exit` with `…IsStrict` name exactly
//! the guards and exits, so the gateway's client uses the unusual ORPorts.

use crate::plan::{NodePlan, Role, NODES};
use crate::sys::{self, Tracked};
use crate::LabError;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// Voting schedule of the authorities (seconds).
#[derive(Clone, Copy, Debug)]
pub struct Schedule {
    /// `TestingV3AuthInitialVotingInterval`: the interval while no consensus
    /// exists yet.
    pub initial_interval: u32,
    /// `V3AuthVotingInterval`: the interval once a consensus exists.
    pub interval: u32,
    pub vote_delay: u32,
    pub dist_delay: u32,
}

impl Default for Schedule {
    fn default() -> Self {
        // The smallest values tor accepts with TestingTorNetwork (dirauth
        // config: an initial interval may be 5 s, a later one no less than
        // 10 s; vote and distribution delays 2 s each). A relay uploads its
        // descriptor once at start; if that upload fails it uploads again
        // only after its first self-test, which needs a consensus, so it
        // appears one voting round later (the lab starts relays once the
        // authorities listen: `Lab::start`). Measured from start to a
        // usable consensus for a lone `--ruleset` run: 6-11 s with this
        // schedule and that order, 8-15 s with this schedule alone, 14-40 s
        // with a 10 s initial interval.
        Schedule {
            initial_interval: 5,
            interval: 10,
            vote_delay: 2,
            dist_delay: 2,
        }
    }
}

/// Identity of one node.
#[derive(Clone, Debug)]
pub struct NodeKeys {
    pub plan: NodePlan,
    pub dir: PathBuf,
    /// RSA identity fingerprint (40 hex digits).
    pub fingerprint: String,
    /// Authorities only: the v3 identity (authority certificate fingerprint).
    pub v3ident: Option<String>,
}

/// Generates every node's keys in parallel under `root/NICK`.
pub fn generate_keys(root: &Path) -> Result<Vec<NodeKeys>, LabError> {
    let handles: Vec<_> = NODES
        .iter()
        .map(|plan| {
            let plan = *plan;
            let dir = root.join(plan.nick);
            std::thread::spawn(move || node_keys(plan, dir))
        })
        .collect();
    handles
        .into_iter()
        .map(|h| {
            h.join()
                .unwrap_or_else(|_| Err(LabError::Tor("key generation thread panicked".into())))
        })
        .collect()
}

/// Bits of the authorities' v3 identity keys. Tor's own `tor-gencert` makes
/// 3072-bit keys (about a CPU second each); the lab's throw-away network
/// accepts 1024-bit ones, which take milliseconds.
pub const AUTHORITY_IDENTITY_BITS: u32 = 1024;

fn node_keys(plan: NodePlan, dir: PathBuf) -> Result<NodeKeys, LabError> {
    let keys = dir.join("keys");
    std::fs::create_dir_all(&keys)
        .map_err(|e| LabError::Io(format!("creating {}", keys.display()), e))?;
    let mut v3ident = None;
    if plan.role == Role::Authority {
        let dir_port = plan.dir_port.expect("authorities have a DirPort");
        let id = keys.join("authority_identity_key");
        sys::run(
            Command::new("openssl")
                .args(["genrsa", "-traditional", "-out"])
                .arg(&id)
                .arg(AUTHORITY_IDENTITY_BITS.to_string()),
        )?;
        sys::run(
            Command::new("tor-gencert")
                .args(["--passphrase-fd", "0", "-m", "12", "-a"])
                .arg(format!("{}:{}", plan.addr, dir_port))
                .arg("-i")
                .arg(&id)
                .arg("-s")
                .arg(keys.join("authority_signing_key"))
                .arg("-c")
                .arg(keys.join("authority_certificate"))
                .current_dir(&dir),
        )?;
        let cert = std::fs::read_to_string(keys.join("authority_certificate"))
            .map_err(|e| LabError::Io("reading authority certificate".into(), e))?;
        v3ident = Some(
            cert.lines()
                .find_map(|l| l.strip_prefix("fingerprint "))
                .ok_or_else(|| {
                    LabError::Tor("authority certificate has no fingerprint line".into())
                })?
                .trim()
                .to_string(),
        );
    }
    // The relay identity key, made the way tor makes it (RSA-1024, e = 65537),
    // and its fingerprint: SHA-1 of the PKCS#1 DER public key. Much cheaper
    // than starting tor once just for `--list-fingerprint`.
    let sk = keys.join("secret_id_key");
    sys::run(
        Command::new("openssl")
            .args(["genrsa", "-traditional", "-out"])
            .arg(&sk)
            .arg("1024"),
    )?;
    let out = sys::run(
        Command::new("sh")
            .arg("-c")
            .arg("openssl rsa -in \"$1\" -RSAPublicKey_out -outform DER 2>/dev/null | openssl dgst -sha1 -r")
            .arg("sh")
            .arg(&sk),
    )?;
    let fingerprint = parse_sha1_hex(&out)
        .ok_or_else(|| LabError::Tor(format!("no fingerprint for {} in {out:?}", plan.nick)))?;
    Ok(NodeKeys {
        plan,
        dir,
        fingerprint,
        v3ident,
    })
}

/// The digest from `openssl dgst -sha1 -r` output, upper case.
pub fn parse_sha1_hex(out: &str) -> Option<String> {
    let hex = out.split_whitespace().next()?;
    (hex.len() == 40 && hex.chars().all(|c| c.is_ascii_hexdigit()))
        .then(|| hex.to_ascii_uppercase())
}

/// The fingerprint from `tor --list-fingerprint` output (`NICK AAAA BBBB …`).
pub fn parse_fingerprint(out: &str) -> Option<String> {
    let line = out.lines().rev().find(|l| !l.trim().is_empty())?;
    let hex: String = line.split_whitespace().skip(1).collect();
    (hex.len() == 40 && hex.chars().all(|c| c.is_ascii_hexdigit())).then_some(hex)
}

/// `DirAuthority` lines shared by every torrc.
pub fn dir_authority_lines(keys: &[NodeKeys]) -> String {
    keys.iter()
        .filter(|k| k.plan.role == Role::Authority)
        .map(|k| {
            format!(
                "DirAuthority {} orport={} v3ident={} {}:{} {}\n",
                k.plan.nick,
                k.plan.or_port,
                k.v3ident.as_deref().unwrap_or_default(),
                k.plan.addr,
                k.plan.dir_port.unwrap_or_default(),
                k.fingerprint
            )
        })
        .collect()
}

/// Seconds to add to the wall-clock voting boundary so that the first
/// consensus becomes valid about `lead` seconds from `now`: the authorities
/// vote at valid-after minus both delays, which must come after the relays
/// have published their descriptors.
pub fn voting_offset(now_unix: u64, lead: u32, s: Schedule) -> u32 {
    let target = now_unix + lead as u64;
    (target % s.initial_interval as u64) as u32
}

/// Writes every node's torrc and the authorities' bandwidth file.
pub fn write_configs(
    root: &Path,
    keys: &[NodeKeys],
    s: Schedule,
    offset: u32,
) -> Result<(), LabError> {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs();
    let auth_lines = dir_authority_lines(keys);
    let mut bw = format!("{now}\n");
    for k in keys {
        bw.push_str(&format!("node_id=${} bw=1000\n", k.fingerprint));
    }
    let bw_file = root.join("bandwidths");
    write(&bw_file, &bw)?;
    let nick_list = |role: Role| -> String {
        keys.iter()
            .filter(|k| k.plan.role == role)
            .map(|k| k.plan.nick)
            .collect::<Vec<_>>()
            .join(",")
    };
    for k in keys {
        let p = &k.plan;
        let d = k.dir.display();
        let mut t = format!(
            "DataDirectory {d}\nPidFile {d}/pid\nLog notice file {d}/notice.log\n\
             TestingTorNetwork 1\nAssumeReachable 1\nPathsNeededToBuildCircuits 0.67\n\
             V3AuthNIntervalsValid 2\nNickname {nick}\nContactInfo leaktest-lab\n\
             Address {a}\nORPort {a}:{or}\nOutboundBindAddress {a}\nSocksPort 0\n\
             SafeLogging 0\nRunAsDaemon 0\nFetchDirInfoEarly 1\nFetchDirInfoExtraEarly 1\n{auth_lines}",
            nick = p.nick,
            a = p.addr,
            or = p.or_port,
        );
        match p.role {
            Role::Authority => t.push_str(&format!(
                "AuthoritativeDirectory 1\nV3AuthoritativeDirectory 1\nDirPort {a}:{dp}\n\
                 TestingV3AuthInitialVotingInterval {ii}\nTestingV3AuthInitialVoteDelay {vd}\n\
                 TestingV3AuthInitialDistDelay {dd}\nV3AuthVotingInterval {i}\nV3AuthVoteDelay {vd}\n\
                 V3AuthDistDelay {dd}\nTestingV3AuthVotingStartOffset {offset}\n\
                 V3BandwidthsFile {bw}\n\
                 AuthDirVoteStableGuaranteeMinUptime 0\nAuthDirVoteStableGuaranteeMTBF 0\n\
                 TestingDirAuthVoteGuard {guards}\nTestingDirAuthVoteGuardIsStrict 1\n\
                 TestingDirAuthVoteExit {exits}\nTestingDirAuthVoteExitIsStrict 1\n\
                 TestingMinExitFlagThreshold 0\nExitRelay 0\nExitPolicy reject *:*\n",
                a = p.addr,
                dp = p.dir_port.unwrap_or_default(),
                i = s.interval,
                ii = s.initial_interval,
                vd = s.vote_delay,
                dd = s.dist_delay,
                bw = bw_file.display(),
                guards = nick_list(Role::Guard),
                exits = nick_list(Role::Exit),
            )),
            Role::Guard => t.push_str("ExitRelay 0\nExitPolicy reject *:*\n"),
            // Tor's manual (BridgeRelay, ServerTransportPlugin,
            // ServerTransportListenAddr, ExtORPort): obfs4proxy is started by
            // tor and writes the client's bridge line (with its `cert=`) to
            // pt_state/obfs4_bridgeline.txt.
            Role::Bridge => t.push_str(&format!(
                "BridgeRelay 1\nPublishServerDescriptor 0\nExitRelay 0\nExitPolicy reject *:*\n\
                 ServerTransportPlugin obfs4 exec {OBFS4PROXY}\n\
                 ServerTransportListenAddr obfs4 {a}:{port}\nExtORPort auto\n",
                a = p.addr,
                port = crate::plan::BRIDGE_OBFS4_PORT,
            )),
            Role::Exit => t.push_str(&format!(
                "ExitRelay 1\nExitPolicyRejectPrivate 0\nExitPolicy accept *:*\n\
                 ServerDNSResolvConfFile {}\nServerDNSAllowBrokenConfig 1\nServerDNSDetectHijacking 0\n\
                 ServerDNSTestAddresses {}\n",
                root.join("resolv.conf").display(),
                crate::plan::WEB_NAME,
            )),
        }
        write(&k.dir.join("torrc"), &t)?;
    }
    write(
        &root.join("resolv.conf"),
        &format!("nameserver {}\n", crate::plan::DNS4),
    )?;
    Ok(())
}

fn write(path: &Path, text: &str) -> Result<(), LabError> {
    std::fs::write(path, text).map_err(|e| LabError::Io(format!("writing {}", path.display()), e))
}

/// Where Debian's obfs4proxy package installs the transport.
pub const OBFS4PROXY: &str = "/usr/bin/obfs4proxy";

/// The client's `Bridge` line for the lab bridge, from the line obfs4proxy
/// writes once it listens (`pt_state/obfs4_bridgeline.txt`: `Bridge obfs4
/// <IP ADDRESS>:<PORT> <FINGERPRINT> cert=... iat-mode=0`), with the
/// bridge's address, obfs4 port and identity fingerprint filled in.
/// Waits up to `timeout` for the file.
pub fn bridge_line(bridge: &NodeKeys, timeout: Duration) -> Result<String, LabError> {
    let file = bridge.dir.join("pt_state").join("obfs4_bridgeline.txt");
    let start = Instant::now();
    loop {
        if let Ok(text) = std::fs::read_to_string(&file) {
            if let Some(args) = parse_obfs4_bridgeline(&text) {
                return Ok(format!(
                    "obfs4 {}:{} {} {args}",
                    bridge.plan.addr,
                    crate::plan::BRIDGE_OBFS4_PORT,
                    bridge.fingerprint
                ));
            }
        }
        if start.elapsed() >= timeout {
            return Err(LabError::Tor(format!(
                "the lab bridge wrote no usable {} in {timeout:?} (is obfs4proxy installed at {OBFS4PROXY}?)",
                file.display()
            )));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The transport arguments (`cert=... iat-mode=N`) of obfs4proxy's bridge
/// line file; comment lines are skipped.
pub fn parse_obfs4_bridgeline(text: &str) -> Option<String> {
    let line = text
        .lines()
        .map(str::trim)
        .find(|l| l.starts_with("Bridge obfs4 "))?;
    let args: Vec<&str> = line
        .split_whitespace()
        .filter(|w| w.starts_with("cert=") || w.starts_with("iat-mode="))
        .collect();
    (args.len() == 2 && args[0].len() > "cert=".len()).then(|| args.join(" "))
}

/// Starts tor with `torrc` inside `ns`; stderr goes to `log`.
pub fn start_tor(ns: &str, torrc: &Path, log: &Path, what: &str) -> Result<Tracked, LabError> {
    start_tor_as(ns, torrc, log, what, None)
}

/// [`start_tor`], as the user `as_user` (uid, gid) from the start when
/// given (`setpriv --reuid --regid --clear-groups`).
pub fn start_tor_as(
    ns: &str,
    torrc: &Path,
    log: &Path,
    what: &str,
    as_user: Option<(u32, u32)>,
) -> Result<Tracked, LabError> {
    let err = std::fs::File::create(log)
        .map_err(|e| LabError::Io(format!("creating {}", log.display()), e))?;
    let mut cmd = match as_user {
        Some((uid, gid)) => {
            let mut c = sys::ns_command(ns, "setpriv")?;
            c.arg(format!("--reuid={uid}"))
                .arg(format!("--regid={gid}"))
                .args(["--clear-groups", "tor"]);
            c
        }
        None => sys::ns_command(ns, "tor")?,
    };
    let child = cmd
        .arg("-f")
        .arg(torrc)
        .arg("--quiet")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(err)
        .spawn()
        .map_err(|e| LabError::Io(format!("starting tor ({what})"), e))?;
    let pid = child.id();
    // The Child handle is dropped: the lab tracks and reaps by PID.
    std::mem::forget(child);
    let start_time = sys::proc_start_time(pid).ok_or_else(|| {
        LabError::Tor(format!(
            "tor ({what}) exited at once; see {}",
            log.display()
        ))
    })?;
    Ok(Tracked {
        pid,
        start_time,
        what: what.to_string(),
    })
}

/// Waits until every address in `addrs` accepts a TCP connection from
/// inside `ns` (an authority's DirPort once its tor has started).
pub fn wait_listening(
    ns: &str,
    addrs: &[std::net::SocketAddr],
    timeout: Duration,
    alive: &dyn Fn() -> Result<(), LabError>,
) -> Result<Duration, LabError> {
    let start = Instant::now();
    let mut waiting: Vec<std::net::SocketAddr> = addrs.to_vec();
    while !waiting.is_empty() {
        let list = waiting.clone();
        waiting = sys::run_in(ns, move || {
            Ok(list
                .into_iter()
                .filter(|a| {
                    std::net::TcpStream::connect_timeout(a, Duration::from_millis(200)).is_err()
                })
                .collect())
        })?;
        if waiting.is_empty() {
            break;
        }
        if start.elapsed() >= timeout {
            return Err(LabError::Tor(format!(
                "the authorities' DirPorts {waiting:?} did not listen within {timeout:?}"
            )));
        }
        alive()?;
        std::thread::sleep(Duration::from_millis(20));
    }
    Ok(start.elapsed())
}

/// Flags of each relay (by nickname) in a consensus document.
pub fn consensus_flags(doc: &str) -> BTreeMap<String, Vec<String>> {
    let mut out = BTreeMap::new();
    let mut nick: Option<String> = None;
    for line in doc.lines() {
        if let Some(r) = line.strip_prefix("r ") {
            nick = r.split_whitespace().next().map(str::to_string);
        } else if let Some(s) = line.strip_prefix("s ") {
            if let Some(n) = nick.take() {
                out.insert(n, s.split_whitespace().map(str::to_string).collect());
            }
        }
    }
    out
}

/// Whether the consensus lists every guard and exit with the flags the
/// gateway's client needs to use them.
pub fn consensus_ready(flags: &BTreeMap<String, Vec<String>>) -> bool {
    crate::plan::consensus_nodes()
        .filter(|n| n.role != Role::Authority)
        .all(|n| {
            let Some(f) = flags.get(n.nick) else {
                return false;
            };
            let has = |x: &str| f.iter().any(|g| g == x);
            let base = has("Running") && has("Valid") && has("Fast");
            match n.role {
                Role::Guard => base && has("Guard") && has("Stable"),
                Role::Exit => base && has("Exit"),
                Role::Authority | Role::Bridge => true,
            }
        })
}

/// How many microdescriptors a relay's cache holds.
fn cached_microdescs(dir: &Path) -> usize {
    ["cached-microdescs", "cached-microdescs.new"]
        .iter()
        .filter_map(|f| std::fs::read_to_string(dir.join(f)).ok())
        .map(|t| {
            t.lines()
                .filter(|l| l.starts_with("ntor-onion-key "))
                .count()
        })
        .sum()
}

/// Waits until an authority has a consensus with every flag we need, and the
/// guards (the gateway's directory guards) cache every relay's
/// microdescriptor: a client that asks a guard too early is told "outdated"
/// and retries only ten seconds later.
pub fn wait_consensus(
    keys: &[NodeKeys],
    timeout: Duration,
    alive: &dyn Fn() -> Result<(), LabError>,
) -> Result<Duration, LabError> {
    let start = Instant::now();
    let files: Vec<PathBuf> = keys
        .iter()
        .filter(|k| k.plan.role == Role::Authority)
        .map(|k| k.dir.join("cached-consensus"))
        .collect();
    let mut last = BTreeMap::new();
    while start.elapsed() < timeout {
        for f in &files {
            if let Ok(doc) = std::fs::read_to_string(f) {
                let flags = consensus_flags(&doc);
                if consensus_ready(&flags)
                    && keys.iter().filter(|k| k.plan.role == Role::Guard).all(|k| {
                        cached_microdescs(&k.dir) >= crate::plan::consensus_nodes().count()
                    })
                {
                    return Ok(start.elapsed());
                }
                last = flags;
            }
        }
        alive()?;
        std::thread::sleep(Duration::from_millis(100));
    }
    Err(LabError::Tor(format!(
        "no usable consensus after {timeout:?}; last seen: {last:?}"
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn obfs4_bridgeline_is_parsed() {
        let text = "# obfs4 torrc client bridge line\n#\n# This file is an automatically generated bridge line.\n\
                    Bridge obfs4 <IP ADDRESS>:<PORT> <FINGERPRINT> cert=ssH+9rP8dG2NLDN2XuFw63hIO/9MNNinLmxQDpVa+7kTOa9/m+tGWT1SmSYpQ9uTBGa6Hw iat-mode=0\n";
        assert_eq!(
            parse_obfs4_bridgeline(text).as_deref(),
            Some("cert=ssH+9rP8dG2NLDN2XuFw63hIO/9MNNinLmxQDpVa+7kTOa9/m+tGWT1SmSYpQ9uTBGa6Hw iat-mode=0")
        );
        assert_eq!(parse_obfs4_bridgeline("# nothing yet\n"), None);
        assert_eq!(
            parse_obfs4_bridgeline(
                "Bridge obfs4 <IP ADDRESS>:<PORT> <FINGERPRINT> cert= iat-mode=0"
            ),
            None
        );
    }

    #[test]
    fn sha1_line_is_parsed() {
        assert_eq!(
            parse_sha1_hex("91088da58034c879a12a272ce15fe5153c06036c *stdin\n").as_deref(),
            Some("91088DA58034C879A12A272CE15FE5153C06036C")
        );
        assert_eq!(parse_sha1_hex("nope"), None);
    }

    #[test]
    fn fingerprint_line_is_parsed() {
        let out =
            "Nov 27 05:00 [notice] x\nltguard1 0123 4567 89AB CDEF 0123 4567 89AB CDEF 0123 4567\n";
        assert_eq!(
            parse_fingerprint(out).as_deref(),
            Some("0123456789ABCDEF0123456789ABCDEF01234567")
        );
        assert_eq!(parse_fingerprint("garbage\n"), None);
    }

    #[test]
    fn offset_puts_first_consensus_at_the_lead() {
        let s = Schedule::default();
        for now in [1_000_000u64, 1_000_003, 1_000_009] {
            let off = voting_offset(now, 7, s);
            assert!(off < s.initial_interval);
            // valid-after = next boundary of (t - off) after now, plus off.
            assert_eq!((now + 7 - off as u64) % s.initial_interval as u64, 0);
        }
    }

    #[test]
    fn consensus_flags_and_readiness() {
        let mut doc = String::new();
        for n in crate::plan::consensus_nodes() {
            let flags = match n.role {
                Role::Authority => "Authority Running Valid",
                Role::Guard => "Fast Guard Running Stable Valid",
                Role::Exit => "Exit Fast Running Valid",
                Role::Bridge => unreachable!("bridges are not in the consensus"),
            };
            doc.push_str(&format!(
                "r {} AAAA BBBB 2026-01-01 00:00:00 {} {} 0\ns {flags}\n",
                n.nick, n.addr, n.or_port
            ));
        }
        let f = consensus_flags(&doc);
        assert_eq!(f.len(), crate::plan::consensus_nodes().count());
        assert!(consensus_ready(&f));
        let without_guard = doc.replace("Fast Guard Running", "Fast Running");
        assert!(!consensus_ready(&consensus_flags(&without_guard)));
    }
}
