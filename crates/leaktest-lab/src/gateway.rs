//! The gateway's tor: a real `tor` client running as `debian-tor` (or the
//! user a ruleset lets out, [`TorUser`]), with Whonix-Gateway's TransPort,
//! DNSPort, SocksPorts and HTTPTunnelPorts on the internal addresses and a
//! cookie-authenticated ControlPort on the gateway's loopback.

use crate::plan::*;
use crate::sys::{self, Tracked};
use crate::tornet;
use crate::LabError;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// The user tor runs as by default: the nftables policy lets only this uid out.
pub const TOR_USER: &str = "debian-tor";

/// Who the gateway's tor runs as (`leaktest lab --tor-user NAME|UID`): the
/// user a ruleset lets out, by name or by number. A number needs no passwd
/// entry (Whonix rulesets name tor's uid by number, which differs from
/// system to system).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TorUser {
    Name(String),
    Uid(u32),
}

impl Default for TorUser {
    fn default() -> Self {
        TorUser::Name(TOR_USER.into())
    }
}

impl std::str::FromStr for TorUser {
    type Err = String;
    fn from_str(s: &str) -> Result<TorUser, String> {
        if s.is_empty() {
            return Err("an empty user name".into());
        }
        if s.bytes().all(|b| b.is_ascii_digit()) {
            return s
                .parse()
                .map(TorUser::Uid)
                .map_err(|e| format!("uid {s}: {e}"));
        }
        Ok(TorUser::Name(s.into()))
    }
}

impl std::fmt::Display for TorUser {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            TorUser::Name(n) => f.write_str(n),
            TorUser::Uid(u) => write!(f, "uid {u}"),
        }
    }
}

impl TorUser {
    /// (uid, gid): a name from the passwd database; a number as it is, with
    /// its passwd entry's group if it has one, else the group of the same
    /// number. Root is refused (the sweeps run as root: a ruleset that lets
    /// tor out would let them out), and so is the unprivileged sweep's uid.
    pub fn resolve(&self) -> Result<(u32, u32), LabError> {
        let (uid, gid) = match self {
            TorUser::Name(n) => sys::user_ids(n).ok_or_else(|| {
                LabError::Missing(if n == TOR_USER {
                    format!("the system user {TOR_USER} (install the Debian `tor` package)")
                } else {
                    format!("the user {n:?} (no passwd entry; give tor's uid by number instead)")
                })
            })?,
            TorUser::Uid(u) => (*u, sys::user_gid(*u).unwrap_or(*u)),
        };
        if uid == 0 || gid == 0 || uid == crate::suite::UNPRIVILEGED_UID {
            return Err(LabError::Missing(format!(
                "a tor user other than uid {uid} (gid {gid}): the lab's sweeps run as root and as uid {}, and tor must not have root's group (--tor-user)",
                crate::suite::UNPRIVILEGED_UID
            )));
        }
        Ok((uid, gid))
    }
}

/// Paths, user and ports of the gateway tor.
#[derive(Clone, Debug)]
pub struct GatewayTor {
    pub dir: PathBuf,
    pub uid: u32,
    pub gid: u32,
    /// TransPort, DNSPort and SocksPort (their port numbers, as
    /// configured).
    pub trans_port: u16,
    pub dns_port: u16,
    pub socks_port: u16,
}

impl GatewayTor {
    pub fn log(&self) -> PathBuf {
        self.dir.join("notice.log")
    }
    pub fn cookie(&self) -> PathBuf {
        self.dir.join("control_auth_cookie")
    }
}

/// The options a `--torrc` line may set: tor's client listeners. Nothing
/// else: tor runs on the host's filesystem, and other options write files
/// or start programs (`ClientTransportPlugin … exec`, `PidFile`, …).
const TORRC_OPTIONS: [&str; 5] = [
    "socksport",
    "transport",
    "dnsport",
    "httptunnelport",
    "natdport",
];

/// Checks a `--torrc LINE` argument: a client listener line, `Option
/// [ADDR:]PORT [FLAGS…]`, with a TCP address (no `unix:` path) and word
/// flags only (tor's isolation and listener flags); no `+`, `/` or `%`
/// prefix (tor's append, clear and include forms).
pub fn parse_torrc_line(s: &str) -> Result<String, String> {
    let line = s.trim();
    let bad = || {
        format!(
            "{s:?}: one listener line, `SocksPort|TransPort|DNSPort|HTTPTunnelPort|NATDPort [ADDR:]PORT [FLAGS]`"
        )
    };
    if line.is_empty() || line.contains(['\n', '\r', '/', '%', '"']) || line.starts_with('+') {
        return Err(bad());
    }
    let mut w = line.split_whitespace();
    let option = w.next().unwrap_or("").to_ascii_lowercase();
    if !TORRC_OPTIONS.contains(&option.as_str()) {
        return Err(format!(
            "{option}: only tor's client listeners can be set (SocksPort, TransPort, DNSPort, HTTPTunnelPort, NATDPort)"
        ));
    }
    let addr = w.next().ok_or_else(bad)?;
    let port = addr.rsplit(':').next().unwrap_or(addr);
    if addr.to_ascii_lowercase().starts_with("unix") || port.parse::<u16>().is_err() {
        return Err(bad());
    }
    if !w.all(|f| {
        f.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '=' || c == '_')
    }) {
        return Err(bad());
    }
    Ok(line.to_string())
}

/// The port of the first `OPTION [ADDR:]PORT` line for `option` in
/// `lines`, if any.
fn port_of(lines: &[String], option: &str) -> Option<u16> {
    lines.iter().find_map(|l| {
        let mut w = l.split_whitespace();
        (w.next()?.eq_ignore_ascii_case(option))
            .then(|| w.next()?.rsplit(':').next()?.parse().ok())?
    })
}

/// The options `--torrc` lines set, lower-case: each replaces every line
/// of the lab's own for that option.
fn options_of(lines: &[String]) -> Vec<String> {
    lines
        .iter()
        .filter_map(|l| l.split_whitespace().next())
        .map(str::to_ascii_lowercase)
        .collect()
}

/// Writes the gateway torrc and its data directory `root/gw-tor` (0700),
/// both owned by `user` (tor starts as that user, [`start`]). SocksPort,
/// TransPort and DNSPort listen on the internal addresses (a gateway's
/// workstation) and on 127.0.0.1 and ::1 (a host's own processes), with
/// Whonix's other SocksPorts and HTTPTunnelPorts on the internal ones.
/// `extra` (`--torrc`) lines are added; each replaces every line of the
/// lab's own for its option (`DNSPort 127.0.0.1:5353` moves DNSPort).
pub fn configure(
    root: &Path,
    dir_authority_lines: &str,
    user: &TorUser,
    extra: &[String],
) -> Result<GatewayTor, LabError> {
    let (uid, gid) = user.resolve()?;
    let dir = root.join("gw-tor");
    std::fs::create_dir_all(&dir)
        .map_err(|e| LabError::Io(format!("creating {}", dir.display()), e))?;
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700))
        .map_err(|e| LabError::Io("chmod gateway tor dir".into(), e))?;
    std::os::unix::fs::chown(&dir, Some(uid), Some(gid))
        .map_err(|e| LabError::Io("chown gateway tor dir".into(), e))?;
    let d = dir.display();
    let (l4, l6) = (std::net::Ipv4Addr::LOCALHOST, std::net::Ipv6Addr::LOCALHOST);
    let mut ports = Vec::new();
    for (option, port) in [
        ("SocksPort", SOCKS_PORT),
        ("TransPort", TRANS_PORT),
        ("DNSPort", DNS_PORT),
    ] {
        ports.push(format!("{option} {GW_INT4}:{port}"));
        ports.push(format!("{option} [{GW_INT6}]:{port}"));
        ports.push(format!("{option} {l4}:{port}"));
        ports.push(format!("{option} [{l6}]:{port}"));
    }
    let (a4, a6) = (GW_INT4, GW_INT6);
    for &(a, b) in &WHONIX_SOCKS_PORTS {
        for p in a..=b {
            ports.push(format!("SocksPort {a4}:{p}"));
            ports.push(format!("SocksPort [{a6}]:{p}"));
        }
    }
    for p in WHONIX_HTTP_TUNNEL_PORTS.0..=WHONIX_HTTP_TUNNEL_PORTS.1 {
        ports.push(format!("HTTPTunnelPort {a4}:{p}"));
        ports.push(format!("HTTPTunnelPort [{a6}]:{p}"));
    }
    let replaced = options_of(extra);
    ports.retain(|l| !replaced.contains(&l.split(' ').next().unwrap_or("").to_ascii_lowercase()));
    let all: Vec<String> = ports.iter().chain(extra).cloned().collect();
    let trans_port = port_of(&all, "TransPort").unwrap_or(TRANS_PORT);
    let dns_port = port_of(&all, "DNSPort").unwrap_or(DNS_PORT);
    // The loopback SocksPort: the lab's own check uses it.
    let socks_port = all
        .iter()
        .filter(|l| l.to_ascii_lowercase().starts_with("socksport ") && l.contains("127.0.0.1"))
        .find_map(|l| l.rsplit(':').next()?.parse().ok())
        .or_else(|| port_of(&all, "SocksPort"))
        .unwrap_or(SOCKS_PORT);
    let port_lines: String = all.iter().map(|l| format!("{l}\n")).collect();
    let torrc = format!(
        "DataDirectory {d}\nLog notice file {d}/notice.log\nLog info file {d}/info.log\nRunAsDaemon 0\n\
         TestingTorNetwork 1\nPathsNeededToBuildCircuits 0.67\nClientUseIPv6 0\nSafeLogging 0\n\
         SocksTimeout 30\n{port_lines}\
         ControlPort 127.0.0.1:{CONTROL_PORT}\nCookieAuthentication 1\n\
         DisableNetwork 1\n\
         CookieAuthFile {d}/control_auth_cookie\n{dir_authority_lines}"
    );
    // The torrc lives beside the data directory, readable by tor's user only.
    let torrc_path = root.join("gw-torrc");
    std::fs::write(&torrc_path, torrc)
        .map_err(|e| LabError::Io("writing gateway torrc".into(), e))?;
    std::fs::set_permissions(&torrc_path, std::fs::Permissions::from_mode(0o600))
        .map_err(|e| LabError::Io("chmod gateway torrc".into(), e))?;
    std::os::unix::fs::chown(&torrc_path, Some(uid), Some(gid))
        .map_err(|e| LabError::Io("chown gateway torrc".into(), e))?;
    Ok(GatewayTor {
        dir,
        uid,
        gid,
        trans_port,
        dns_port,
        socks_port,
    })
}

/// Starts the gateway tor inside `ns`, as `g`'s user from the start
/// (`setpriv`, no supplementary groups): a uid with no passwd entry works,
/// which tor's own `User` option (a name) would not allow.
pub fn start(ns: &str, root: &Path, g: &GatewayTor) -> Result<Tracked, LabError> {
    tornet::start_tor_as(
        ns,
        &root.join("gw-torrc"),
        &root.join("gw-tor.stderr"),
        "gateway tor",
        Some((g.uid, g.gid)),
    )
}

/// Makes the gateway tor retry its directory downloads now: `SIGNAL
/// RELOAD` (tor's `do_hup` resets the consensus and descriptor download
/// failures; it also rereads the torrc, whose `DisableNetwork 1` the caller
/// then lifts with [`enable_network`]). A tor whose network was on before
/// the private network's first consensus existed has been told 404 and
/// backs off (measured: 9.5 s more to bootstrap in one run of five).
pub fn retry_downloads(ns: &str) -> Result<(), LabError> {
    sys::run_in(ns, || {
        let mut c = leaktest_tor::Controller::connect(&control_options()).map_err(tor_err)?;
        c.command("SIGNAL RELOAD").map(drop).map_err(tor_err)
    })
}

/// Lets the gateway tor use the network (`SETCONF DisableNetwork=0` on its
/// control port). It starts with the network disabled so that it can run,
/// with a working control port, while the private Tor network forms, and
/// then bootstraps at once instead of after retries backed off.
pub fn enable_network(ns: &str) -> Result<(), LabError> {
    sys::run_in(ns, || {
        let mut c = leaktest_tor::Controller::connect(&control_options()).map_err(tor_err)?;
        c.setconf(&[("DisableNetwork", Some("0"))]).map_err(tor_err)
    })
}

/// Takes the gateway tor's network away (`SETCONF DisableNetwork=1`): tor
/// closes every connection and circuit it has and keeps its cached
/// directory, as at boot before its network is up.
pub fn disable_network(ns: &str) -> Result<(), LabError> {
    sys::run_in(ns, || {
        let mut c = leaktest_tor::Controller::connect(&control_options()).map_err(tor_err)?;
        c.setconf(&[("DisableNetwork", Some("1"))]).map_err(tor_err)
    })
}

/// Waits until the gateway tor has a BUILT circuit (`GETINFO
/// circuit-status`, control-spec 4.1.1); returns how long that took.
pub fn wait_circuit(
    ns: &str,
    timeout: Duration,
    alive: &dyn Fn() -> Result<(), LabError>,
) -> Result<Duration, LabError> {
    let start = Instant::now();
    let mut c = sys::run_in(ns, || {
        leaktest_tor::Controller::connect(&control_options()).map_err(tor_err)
    })?;
    let mut last = String::new();
    while start.elapsed() < timeout {
        let status = c.getinfo_one("circuit-status").map_err(tor_err)?;
        if status
            .lines()
            .any(|l| l.split_whitespace().nth(1) == Some("BUILT"))
        {
            return Ok(start.elapsed());
        }
        last = status;
        alive()?;
        std::thread::sleep(Duration::from_millis(20));
    }
    Err(LabError::Tor(format!(
        "the gateway tor built no circuit in {timeout:?}; circuits: {last:?}"
    )))
}

/// Waits until the gateway tor's control port accepts an authenticated
/// connection (the watcher's `--tor-control` needs it).
pub fn wait_control(
    ns: &str,
    timeout: Duration,
    alive: &dyn Fn() -> Result<(), LabError>,
) -> Result<Duration, LabError> {
    let start = Instant::now();
    loop {
        let r = sys::run_in(ns, || {
            leaktest_tor::Controller::connect(&control_options())
                .map(drop)
                .map_err(tor_err)
        });
        match r {
            Ok(()) => return Ok(start.elapsed()),
            Err(e) if start.elapsed() >= timeout => return Err(e),
            Err(_) => {}
        }
        alive()?;
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Makes the gateway's tor reach the network only through the lab's obfs4
/// bridge, with its network off: one `SETCONF DisableNetwork=1 UseBridges=1
/// Bridge=LINE ClientTransportPlugin="obfs4 exec OBFS4PROXY"` (tor checks
/// them together and closes every connection it has). A watcher started
/// now finds the bridge in `GETCONF Bridge`; [`bridge_circuit`] then lets
/// tor connect, so the watcher sees the obfs4 flow from its first byte.
pub fn configure_bridge(ns: &str, line: &str) -> Result<(), LabError> {
    let transport = format!("obfs4 exec {}", crate::tornet::OBFS4PROXY);
    let line = line.to_string();
    sys::run_in(ns, move || {
        let mut c = leaktest_tor::Controller::connect(&control_options()).map_err(tor_err)?;
        c.setconf(&[
            ("DisableNetwork", Some("1")),
            ("UseBridges", Some("1")),
            ("Bridge", Some(&line)),
            ("ClientTransportPlugin", Some(&transport)),
        ])
        .map_err(tor_err)
    })
}

/// After [`configure_bridge`]: `SETCONF DisableNetwork=0`, then waits
/// until a circuit is BUILT whose first hop is the bridge (`GETINFO
/// circuit-status`, control-spec 4.1.1 path `$FINGERPRINT~nick`). Returns
/// how long that took.
pub fn bridge_circuit(
    ns: &str,
    bridge_fingerprint: &str,
    timeout: Duration,
    alive: &dyn Fn() -> Result<(), LabError>,
) -> Result<Duration, LabError> {
    let start = Instant::now();
    sys::run_in(ns, move || {
        let mut c = leaktest_tor::Controller::connect(&control_options()).map_err(tor_err)?;
        c.setconf(&[("DisableNetwork", Some("0"))]).map_err(tor_err)
    })?;
    let mut last = String::new();
    while start.elapsed() < timeout {
        let status = sys::run_in(ns, || {
            let mut c = leaktest_tor::Controller::connect(&control_options()).map_err(tor_err)?;
            c.getinfo_one("circuit-status").map_err(tor_err)
        })?;
        if built_through(&status, bridge_fingerprint) {
            return Ok(start.elapsed());
        }
        last = status;
        alive()?;
        std::thread::sleep(Duration::from_millis(100));
    }
    Err(LabError::Tor(format!(
        "the gateway's tor built no circuit through the obfs4 bridge in {timeout:?}; circuits: {last:?}"
    )))
}

/// Undoes [`configure_bridge`]: `RESETCONF DisableNetwork UseBridges Bridge
/// ClientTransportPlugin` (tor ends the obfs4proxy it no longer needs and
/// goes back to its guards).
pub fn stop_bridge(ns: &str) -> Result<(), LabError> {
    sys::run_in(ns, || {
        let mut c = leaktest_tor::Controller::connect(&control_options()).map_err(tor_err)?;
        c.resetconf(&[
            ("DisableNetwork", None),
            ("UseBridges", None),
            ("Bridge", None),
            ("ClientTransportPlugin", None),
        ])
        .map_err(tor_err)
    })
}

/// Whether `GETINFO circuit-status` lists a BUILT circuit whose first hop
/// is the relay with identity `fingerprint` (40 hex digits).
pub fn built_through(circuit_status: &str, fingerprint: &str) -> bool {
    circuit_status.lines().any(|l| {
        let mut w = l.split_whitespace();
        let (_id, status, path) = (w.next(), w.next(), w.next());
        status == Some("BUILT")
            && path
                .and_then(|p| p.split(',').next())
                .and_then(|hop| hop.strip_prefix('$'))
                .map(|hop| hop.split(['~', '=']).next().unwrap_or(""))
                .is_some_and(|id| id.eq_ignore_ascii_case(fingerprint))
    })
}

fn control_options() -> leaktest_tor::ConnectOptions {
    let target = leaktest_tor::ControlTarget::Tcp(std::net::SocketAddr::from((
        [127, 0, 0, 1],
        CONTROL_PORT,
    )));
    leaktest_tor::ConnectOptions::new(target).with_timeout(Duration::from_secs(5))
}

fn tor_err(e: leaktest_tor::TorError) -> LabError {
    LabError::Tor(format!("gateway control port: {e}"))
}

/// Whether the gateway tor's log says "Bootstrapped 100%".
pub fn bootstrapped(g: &GatewayTor) -> bool {
    std::fs::read_to_string(g.log()).is_ok_and(|l| l.contains("Bootstrapped 100%"))
}

/// Waits for "Bootstrapped 100%" in the gateway tor's log.
pub fn wait_bootstrap(
    g: &GatewayTor,
    timeout: Duration,
    alive: &dyn Fn() -> Result<(), LabError>,
) -> Result<Duration, LabError> {
    let start = Instant::now();
    let mut last = String::new();
    while start.elapsed() < timeout {
        if let Ok(log) = std::fs::read_to_string(g.log()) {
            if log.contains("Bootstrapped 100%") {
                return Ok(start.elapsed());
            }
            if let Some(l) = log.lines().rev().find(|l| l.contains("Bootstrapped")) {
                last = l.to_string();
            }
        }
        alive()?;
        std::thread::sleep(Duration::from_millis(100));
    }
    Err(LabError::Tor(format!(
        "gateway tor did not bootstrap in {timeout:?} (last: {last})"
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn torrc_lines_are_listeners_only() {
        for ok in [
            "DNSPort 127.0.0.1:5353",
            "TransPort 9041",
            "SocksPort [::1]:9150 IsolateDestAddr",
            "httptunnelport 10.152.152.10:9191",
        ] {
            assert_eq!(parse_torrc_line(ok).as_deref(), Ok(ok), "{ok}");
        }
        for bad in [
            "+Log notice file /tmp/x",
            "/ControlPort",
            "%include /etc/tor",
            "l notice file /tmp/x",
            "DirServer x",
            "ClientTransportPlugin obfs4 exec /bin/sh",
            "PidFile /tmp/pid",
            "SocksPort unix:/tmp/s",
            "DNSPort 127.0.0.1:notaport",
            "DNSPort 5353 \"quoted\"",
            "DNSPort 5353\nControlPort 1",
            "",
        ] {
            assert!(parse_torrc_line(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn circuits_through_the_bridge_are_recognised() {
        let fp = "0E56BF5C5ADD1012636396522D97940E2E85162D";
        let built = format!(
            "3 BUILT ${fp}~ltbridge1,$AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA~ltguard1,$BBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBB~ltexit1 BUILD_FLAGS=NEED_CAPACITY PURPOSE=GENERAL"
        );
        assert!(built_through(&built, fp));
        assert!(built_through(&built.replace(fp, &fp.to_lowercase()), fp));
        // Still extending, or through the bridge only as a later hop.
        assert!(!built_through(&built.replace("BUILT", "EXTENDED"), fp));
        let later =
            format!("4 BUILT $AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA~ltguard1,${fp}~ltbridge1");
        assert!(!built_through(&later, fp));
        assert!(!built_through("", fp));
    }

    #[test]
    fn root_and_its_group_are_refused_as_tor_user() {
        assert!(TorUser::Uid(0).resolve().is_err());
        assert!(TorUser::Uid(crate::suite::UNPRIVILEGED_UID)
            .resolve()
            .is_err());
        assert!("root".parse::<TorUser>().unwrap().resolve().is_err());
        assert_eq!("30103".parse::<TorUser>(), Ok(TorUser::Uid(30103)));
        assert_eq!(TorUser::Uid(30103).resolve().unwrap(), (30103, 30103));
    }
}
