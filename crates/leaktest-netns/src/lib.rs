//! Network namespaces for leaktest's lab and tests: unique names, veth pairs made inside
//! namespaces, processes tracked by PID, and guards that delete everything on drop.
//!
//! Everything leaktest sends in a test or in the lab must stay inside namespaces that the run
//! itself created, with no link to the host's interfaces. This crate is the one place that
//! creates and destroys those namespaces:
//!
//! * [`unique_prefix`] gives every run (and every test inside a run) its own name prefix, so
//!   parallel tests never collide and [`cleanup_prefix`] can remove what a crashed run left.
//! * [`Netns::create`] makes a named namespace (`ip netns add`) with `lo` up and deletes it on
//!   drop, after ending every process it started there.
//! * [`veth`] creates a veth pair whose two ends are born directly inside two namespaces
//!   (`ip link add name A netns NS1 type veth peer name B netns NS2`); the pair never exists
//!   in the host namespace, not even for a moment.
//! * [`Netns::command`] / [`Netns::spawn`] run programs inside a namespace; spawned programs are
//!   tracked by PID and ended (SIGTERM, short grace, SIGKILL, reap) when the namespace is dropped.
//! * [`Netns::run_in`] / [`Netns::thread`] run a closure on a thread that has `setns`-ed into the
//!   namespace, so sockets it opens live there (in-process servers and captures).
//! * [`Topology`] owns several namespaces and tears them down in the right order on drop, also
//!   while a panic unwinds.
//! * [`command_in`], [`run_in_named`], [`thread_in_named`] and [`sysctl_in`] do the same by
//!   name, without owning the namespace: for namespaces whose lifetime is recorded elsewhere
//!   (the lab's state file, which outlives the process for `--keep` and crash recovery).
//!
//! Shelling out to `ip` keeps the semantics identical to what an operator would type; the
//! crate needs root (CAP_SYS_ADMIN and CAP_NET_ADMIN).

mod named;
mod names;
mod netns;
mod process;
mod topology;

pub use named::{command_in, enter, run_in_named, sysctl_in, thread_in_named};
pub use names::{check_ifname, cleanup_prefix, exists, list, pids_in, unique_prefix};
pub use netns::{veth, Netns};
pub use process::{pid_alive, status_text, Proc};
pub use topology::Topology;

use std::ffi::OsStr;
use std::io;
use std::process::{Command, ExitStatus, Output, Stdio};
use std::time::Duration;

/// Where `ip netns` keeps the bind mounts that name namespaces.
pub const NETNS_RUN_DIR: &str = "/run/netns";

/// Longest interface name Linux accepts (IFNAMSIZ - 1).
pub const MAX_IFNAME: usize = 15;

/// How long a tracked process gets between SIGTERM and SIGKILL.
pub const DEFAULT_GRACE: Duration = Duration::from_millis(1500);

/// Errors of this crate.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A namespace or interface name that `ip` or the kernel would reject.
    #[error("invalid name {name:?}: {why}")]
    InvalidName { name: String, why: &'static str },
    /// An external command (usually `ip`) ran but failed.
    #[error("`{cmd}` failed ({status}): {stderr}")]
    Command {
        cmd: String,
        status: ExitStatus,
        stderr: String,
    },
    /// An external command could not be started at all.
    #[error("cannot run `{cmd}`: {source}")]
    Spawn { cmd: String, source: io::Error },
    /// Other I/O (opening the namespace file, writing a sysctl, setns ...).
    #[error("{what}: {source}")]
    Io { what: String, source: io::Error },
    /// The namespace was already deleted (explicitly or by its [`Topology`]).
    #[error("namespace {0} was already deleted")]
    Deleted(String),
    /// A closure run inside a namespace panicked.
    #[error("thread inside namespace {0} panicked")]
    ThreadPanicked(String),
}

/// Result alias of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

pub(crate) fn io_err(what: impl Into<String>, source: io::Error) -> Error {
    Error::Io {
        what: what.into(),
        source,
    }
}

/// For tests that need root (namespaces, raw sockets): whether this process
/// is root. Without root it says the test is skipped and returns `false`,
/// unless `LEAKTEST_REQUIRE_ROOT=1` is set (as CI sets it): then it panics,
/// so a test that cannot run fails instead of passing.
pub fn require_root(test: &str) -> bool {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } == 0 {
        return true;
    }
    if std::env::var_os("LEAKTEST_REQUIRE_ROOT").is_some_and(|v| v == "1") {
        panic!("{test}: needs root, and LEAKTEST_REQUIRE_ROOT=1 forbids skipping it");
    }
    eprintln!("skipping {test}: needs root (set LEAKTEST_REQUIRE_ROOT=1 to make this a failure)");
    false
}

pub(crate) fn describe(cmd: &Command) -> String {
    let mut s = cmd.get_program().to_string_lossy().into_owned();
    for a in cmd.get_args() {
        s.push(' ');
        s.push_str(&a.to_string_lossy());
    }
    s
}

/// Runs `cmd` to completion, capturing output; an unsuccessful exit is an [`Error::Command`].
pub fn run_checked(cmd: &mut Command) -> Result<Output> {
    cmd.stdin(Stdio::null());
    let out = cmd.output().map_err(|source| Error::Spawn {
        cmd: describe(cmd),
        source,
    })?;
    if !out.status.success() {
        return Err(Error::Command {
            cmd: describe(cmd),
            status: out.status,
            stderr: String::from_utf8_lossy(&out.stderr).trim().to_string(),
        });
    }
    Ok(out)
}

pub(crate) fn ip<I, S>(args: I) -> Result<Output>
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    run_checked(Command::new("ip").args(args))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::names::{base36, base36_fixed, check_ns_name};
    use crate::netns::{parse_mac, sysctl_path};
    use std::path::Path;

    #[test]
    fn prefixes_are_unique_short_and_valid() {
        let a = unique_prefix("lt");
        let b = unique_prefix("lt");
        assert_ne!(a, b);
        for p in [&a, &b] {
            assert!(p.starts_with("lt"));
            assert_eq!(p.len(), 11, "{p}");
            check_ifname(&format!("ltnx{}ab", &p[2..])).unwrap();
            check_ns_name(p).unwrap();
        }
    }

    #[test]
    fn prefixes_never_prefix_each_other() {
        // All of one tag have the same length, so one starts with another only if equal;
        // within 1296 calls the counter field alone keeps them distinct.
        let ps: Vec<String> = (0..1296).map(|_| unique_prefix("lt")).collect();
        assert!(ps.iter().all(|p| p.len() == 11));
        let distinct: std::collections::HashSet<_> = ps.iter().collect();
        assert_eq!(distinct.len(), ps.len());
        assert_eq!(base36_fixed(5, 2), "05");
        assert_eq!(base36_fixed(36 * 36 + 1, 2), "01");
        assert_eq!(base36_fixed(4_194_304, 5), "2hwcg");
    }

    #[test]
    fn base36_digits() {
        assert_eq!(base36(0), "0");
        assert_eq!(base36(35), "z");
        assert_eq!(base36(36), "10");
        assert_eq!(base36(u32::MAX), "1z141z3");
    }

    #[test]
    fn names_are_checked() {
        assert!(check_ifname("veth0").is_ok());
        assert!(check_ifname("").is_err());
        assert!(check_ifname("sixteen-chars-xx").is_err());
        assert!(check_ifname("a/b").is_err());
        assert!(check_ns_name("ok-name_1.x").is_ok());
        assert!(check_ns_name("../etc").is_err());
        assert!(check_ns_name("a b").is_err());
    }

    #[test]
    fn sysctl_keys_map_to_proc_paths() {
        assert_eq!(
            sysctl_path("net.ipv4.ip_forward").unwrap(),
            Path::new("/proc/sys/net/ipv4/ip_forward")
        );
        assert_eq!(
            sysctl_path("net/ipv6/conf/eth0.5/accept_dad").unwrap(),
            Path::new("/proc/sys/net/ipv6/conf/eth0.5/accept_dad")
        );
        assert!(sysctl_path("net..x").is_err());
        assert!(sysctl_path("net/../../etc").is_err());
    }

    #[test]
    fn macs_parse() {
        assert_eq!(
            parse_mac("02:00:5e:10:00:01"),
            Some([2, 0, 0x5e, 0x10, 0, 1])
        );
        assert_eq!(parse_mac("02:00:5e:10:00"), None);
        assert_eq!(parse_mac("02:00:5e:10:00:01:02"), None);
    }

    #[test]
    fn short_cleanup_prefix_is_refused() {
        assert!(cleanup_prefix("").is_err());
        assert!(cleanup_prefix("lt").is_err());
    }
}
