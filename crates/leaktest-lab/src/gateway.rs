//! The gateway's tor: a real `tor` client running as `debian-tor`, with
//! TransPort, DNSPort and SocksPort on the internal addresses and a cookie-
//! authenticated ControlPort on the gateway's loopback.

use crate::plan::*;
use crate::sys::{self, Tracked};
use crate::tornet;
use crate::LabError;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// The user tor runs as: the nftables policy lets only this uid out.
pub const TOR_USER: &str = "debian-tor";

/// Paths of the gateway tor.
#[derive(Clone, Debug)]
pub struct GatewayTor {
    pub dir: PathBuf,
    pub uid: u32,
    pub gid: u32,
}

impl GatewayTor {
    pub fn log(&self) -> PathBuf {
        self.dir.join("notice.log")
    }
    pub fn cookie(&self) -> PathBuf {
        self.dir.join("control_auth_cookie")
    }
}

/// Writes the gateway torrc under `root/gw-tor` (owned by debian-tor, 0700).
pub fn configure(root: &Path, dir_authority_lines: &str) -> Result<GatewayTor, LabError> {
    let (uid, gid) = sys::user_ids(TOR_USER).ok_or_else(|| {
        LabError::Missing(format!(
            "the system user {TOR_USER} (install the Debian `tor` package)"
        ))
    })?;
    let dir = root.join("gw-tor");
    std::fs::create_dir_all(&dir)
        .map_err(|e| LabError::Io(format!("creating {}", dir.display()), e))?;
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700))
        .map_err(|e| LabError::Io("chmod gateway tor dir".into(), e))?;
    std::os::unix::fs::chown(&dir, Some(uid), Some(gid))
        .map_err(|e| LabError::Io("chown gateway tor dir".into(), e))?;
    let d = dir.display();
    let torrc = format!(
        "DataDirectory {d}\nLog notice file {d}/notice.log\nLog info file {d}/info.log\nUser {TOR_USER}\nRunAsDaemon 0\n\
         TestingTorNetwork 1\nPathsNeededToBuildCircuits 0.67\nClientUseIPv6 0\nSafeLogging 0\n\
         SocksPort {GW_INT4}:{SOCKS_PORT}\nSocksPort [{GW_INT6}]:{SOCKS_PORT}\n\
         TransPort {GW_INT4}:{TRANS_PORT}\nTransPort [{GW_INT6}]:{TRANS_PORT}\n\
         DNSPort {GW_INT4}:{DNS_PORT}\nDNSPort [{GW_INT6}]:{DNS_PORT}\n\
         ControlPort 127.0.0.1:{CONTROL_PORT}\nCookieAuthentication 1\n\
         DisableNetwork 1\n\
         CookieAuthFile {d}/control_auth_cookie\n{dir_authority_lines}"
    );
    // The torrc lives beside the data directory, readable by root only.
    let torrc_path = root.join("gw-torrc");
    std::fs::write(&torrc_path, torrc)
        .map_err(|e| LabError::Io("writing gateway torrc".into(), e))?;
    Ok(GatewayTor { dir, uid, gid })
}

/// Starts the gateway tor inside `ns`.
pub fn start(ns: &str, root: &Path) -> Result<Tracked, LabError> {
    tornet::start_tor(
        ns,
        &root.join("gw-torrc"),
        &root.join("gw-tor.stderr"),
        "gateway tor",
    )
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
