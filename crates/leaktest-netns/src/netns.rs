//! [`Netns`]: a named namespace owned by this process and deleted on drop,
//! and [`veth`] pairs born inside namespaces.

use crate::named::{run_in_named, sysctl_in, thread_in_named};
use crate::names::check_ns_name;
use crate::names::{exists, pids_in};
use crate::process::{Proc, ProcInner};
use crate::{
    check_ifname, describe, io_err, ip, run_checked, Error, Result, DEFAULT_GRACE, NETNS_RUN_DIR,
};
use std::ffi::OsStr;
use std::fmt;
use std::fs::File;
use std::io;
use std::net::IpAddr;
use std::os::fd::AsRawFd;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

/// A named network namespace, deleted on drop after ending every process it started.
pub struct Netns {
    name: String,
    procs: Mutex<Vec<Arc<ProcInner>>>,
    deleted: AtomicBool,
    keep: AtomicBool,
}

impl fmt::Debug for Netns {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Netns").field("name", &self.name).finish()
    }
}

impl Netns {
    /// Creates the namespace `name` (`ip netns add`) and brings its `lo` up.
    ///
    /// Fails if a namespace of that name already exists: a test must never adopt (and later
    /// delete) somebody else's namespace. Use [`unique_prefix`] for the name.
    pub fn create(name: &str) -> Result<Netns> {
        check_ns_name(name)?;
        ip(["netns", "add", name])?;
        let ns = Netns {
            name: name.to_string(),
            procs: Mutex::new(Vec::new()),
            deleted: AtomicBool::new(false),
            keep: AtomicBool::new(false),
        };
        // From here on `ns` deletes itself on error.
        ns.link_up("lo")?;
        Ok(ns)
    }

    /// Takes ownership of an existing named namespace (it will be deleted on drop).
    pub fn adopt(name: &str) -> Result<Netns> {
        check_ns_name(name)?;
        if !exists(name) {
            return Err(io_err(
                format!("namespace {name}"),
                io::Error::from(io::ErrorKind::NotFound),
            ));
        }
        Ok(Netns {
            name: name.to_string(),
            procs: Mutex::new(Vec::new()),
            deleted: AtomicBool::new(false),
            keep: AtomicBool::new(false),
        })
    }

    /// The namespace's name (as used by `ip netns` / `ip -n`).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The bind-mounted namespace file (`/run/netns/NAME`).
    pub fn path(&self) -> PathBuf {
        Path::new(NETNS_RUN_DIR).join(&self.name)
    }

    /// Keeps the namespace (and its processes) after drop, e.g. for `lab --keep`.
    pub fn keep(&self) {
        self.keep.store(true, Ordering::SeqCst);
    }

    fn alive(&self) -> Result<()> {
        if self.deleted.load(Ordering::SeqCst) {
            return Err(Error::Deleted(self.name.clone()));
        }
        Ok(())
    }

    /// Runs `ip -n NAME ARGS...` and returns its output.
    pub fn ip<I, S>(&self, args: I) -> Result<Output>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        self.alive()?;
        run_checked(Command::new("ip").arg("-n").arg(&self.name).args(args))
    }

    /// Sets an interface up.
    pub fn link_up(&self, ifname: &str) -> Result<()> {
        check_ifname(ifname)?;
        self.ip(["link", "set", "dev", ifname, "up"]).map(drop)
    }

    /// Sets an interface down.
    pub fn link_down(&self, ifname: &str) -> Result<()> {
        check_ifname(ifname)?;
        self.ip(["link", "set", "dev", ifname, "down"]).map(drop)
    }

    /// Brings the loopback interface up (already done by [`Netns::create`]).
    pub fn lo_up(&self) -> Result<()> {
        self.link_up("lo")
    }

    /// Adds an address (`203.0.113.1/24`, `2001:db8::1/64`). IPv6 addresses get `nodad`, so
    /// they are usable at once instead of staying tentative for a second or two.
    pub fn add_addr(&self, ifname: &str, cidr: &str) -> Result<()> {
        check_ifname(ifname)?;
        let mut args = vec!["addr", "add", cidr, "dev", ifname];
        if cidr.contains(':') {
            args.push("nodad");
        }
        self.ip(args).map(drop)
    }

    /// Adds a route: `dest` is a CIDR or `default`; at least one of `via` and `dev` is given.
    pub fn route_add(&self, dest: &str, via: Option<IpAddr>, dev: Option<&str>) -> Result<()> {
        let mut args: Vec<String> = Vec::new();
        let v6 = dest.contains(':') || matches!(via, Some(IpAddr::V6(_)));
        if v6 {
            args.push("-6".into());
        }
        args.extend(["route".into(), "add".into(), dest.into()]);
        if let Some(v) = via {
            args.extend(["via".into(), v.to_string()]);
        }
        if let Some(d) = dev {
            check_ifname(d)?;
            args.extend(["dev".into(), d.into()]);
        }
        self.ip(args).map(drop)
    }

    /// MAC address of an interface in this namespace (asked from `ip`: this process's
    /// `/sys` shows the host's interfaces, not the namespace's).
    pub fn mac(&self, ifname: &str) -> Result<[u8; 6]> {
        check_ifname(ifname)?;
        let out = self.ip(["-o", "link", "show", "dev", ifname])?;
        let text = String::from_utf8_lossy(&out.stdout);
        text.split_whitespace()
            .skip_while(|w| *w != "link/ether")
            .nth(1)
            .and_then(parse_mac)
            .ok_or_else(|| {
                io_err(
                    format!("reading MAC of {ifname} in {}", self.name),
                    io::Error::from(io::ErrorKind::InvalidData),
                )
            })
    }

    /// Sets a sysctl inside the namespace, e.g. `net.ipv6.conf.all.accept_dad` = `0` or
    /// `net.ipv4.ip_forward` = `1`. A `key` containing '/' is taken as a path below
    /// `/proc/sys` (for interface names containing dots).
    pub fn sysctl(&self, key: &str, value: &str) -> Result<()> {
        self.alive()?;
        sysctl_in(&self.name, key, value)
    }

    /// Reads a sysctl inside the namespace (trimmed).
    pub fn sysctl_get(&self, key: &str) -> Result<String> {
        let path = sysctl_path(key)?;
        let what = format!("reading sysctl {key} in {}", self.name);
        self.run_in(move || std::fs::read_to_string(&path))?
            .map(|s| s.trim().to_string())
            .map_err(|e| io_err(what, e))
    }

    /// A command that runs `program` inside the namespace (`ip netns exec NAME program`).
    /// `ip` switches namespace and then execs `program`, so the child's PID is `program`'s.
    pub fn command(&self, program: impl AsRef<OsStr>) -> Command {
        let mut c = Command::new("ip");
        c.arg("netns").arg("exec").arg(&self.name).arg(program);
        c
    }

    /// Runs a command built by [`Netns::command`] to completion; failure is an error.
    pub fn exec(&self, mut cmd: Command) -> Result<Output> {
        self.alive()?;
        run_checked(&mut cmd)
    }

    /// Starts `cmd` (normally from [`Netns::command`]) as a tracked process in its own
    /// process group. It is ended when the returned [`Proc`] or this namespace drops,
    /// whichever comes first.
    pub fn spawn(&self, mut cmd: Command) -> Result<Proc> {
        self.alive()?;
        // Own process group: terminal signals don't reach it behind our back, and ending
        // the group also ends helpers it forked.
        cmd.process_group(0);
        let label = describe(&cmd);
        let child = cmd.spawn().map_err(|source| Error::Spawn {
            cmd: label.clone(),
            source,
        })?;
        let inner = Arc::new(ProcInner {
            pid: child.id(),
            label,
            child: Mutex::new(Some(child)),
            status: Mutex::new(None),
        });
        let mut procs = self.procs.lock().unwrap_or_else(|p| p.into_inner());
        // Forget processes already reaped so the list stays short in long labs.
        procs.retain(|p| p.lock().is_some());
        procs.push(inner.clone());
        Ok(Proc { inner })
    }

    /// PIDs of the tracked processes not yet reaped.
    pub fn tracked_pids(&self) -> Vec<u32> {
        self.procs
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .filter(|p| p.lock().is_some())
            .map(|p| p.pid)
            .collect()
    }

    /// PIDs of all processes whose network namespace is this one (tracked or not).
    pub fn pids(&self) -> Result<Vec<u32>> {
        self.alive()?;
        pids_in(&self.name)
    }

    /// Ends every tracked process (SIGTERM, `grace`, SIGKILL, reap), in reverse start order.
    pub fn terminate_all(&self, grace: Duration) {
        let procs: Vec<_> =
            std::mem::take(&mut *self.procs.lock().unwrap_or_else(|p| p.into_inner()));
        for p in procs.iter().rev() {
            p.terminate(grace);
        }
    }

    /// Runs `f` on a new thread that has joined this namespace and waits for its result.
    ///
    /// Sockets `f` opens belong to the namespace and stay there even when moved out of the
    /// closure. `f` may borrow from the caller (scoped thread).
    pub fn run_in<F, T>(&self, f: F) -> Result<T>
    where
        F: FnOnce() -> T + Send,
        T: Send,
    {
        self.alive()?;
        run_in_named(&self.name, f)
    }

    /// Starts `f` on a background thread that has joined this namespace (servers, captures).
    /// Returns once the thread is inside the namespace; an error if it could not get there.
    pub fn thread<F, T>(&self, f: F) -> Result<JoinHandle<T>>
    where
        F: FnOnce() -> T + Send + 'static,
        T: Send + 'static,
    {
        self.alive()?;
        thread_in_named(&self.name, &format!("netns-{}", self.name), f)
    }

    /// Ends the tracked processes and deletes the namespace now (idempotent).
    pub fn delete(&self) -> Result<()> {
        if self.deleted.swap(true, Ordering::SeqCst) {
            return Ok(());
        }
        self.terminate_all(DEFAULT_GRACE);
        ip(["netns", "delete", self.name.as_str()]).map(drop)
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        if self.keep.load(Ordering::SeqCst) {
            return;
        }
        if let Err(e) = self.delete() {
            // Never panic in drop (we may be unwinding already); say what was left behind.
            eprintln!("leaktest-netns: cleanup of {} failed: {e}", self.name);
        }
    }
}

pub(crate) fn setns_net(fd: &File, name: &str) -> Result<()> {
    // CLONE_NEWNET may be changed per thread even in a multi-threaded process.
    if unsafe { libc::setns(fd.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
        return Err(io_err(
            format!("setns into {name}"),
            io::Error::last_os_error(),
        ));
    }
    Ok(())
}

pub(crate) fn sysctl_path(key: &str) -> Result<PathBuf> {
    let rel = if key.contains('/') {
        key.trim_start_matches('/').to_string()
    } else {
        key.replace('.', "/")
    };
    if rel.is_empty() || rel.split('/').any(|c| c.is_empty() || c == "..") {
        return Err(Error::InvalidName {
            name: key.to_string(),
            why: "not a sysctl key",
        });
    }
    Ok(Path::new("/proc/sys").join(rel))
}

pub(crate) fn parse_mac(s: &str) -> Option<[u8; 6]> {
    let mut mac = [0u8; 6];
    let mut parts = s.split(':');
    for b in mac.iter_mut() {
        *b = u8::from_str_radix(parts.next()?, 16).ok()?;
    }
    parts.next().is_none().then_some(mac)
}

/// Creates a veth pair with `a_if` inside `a` and `b_if` inside `b`, both ends created
/// directly in their namespaces (never in the host's), and sets both up.
pub fn veth(a: &Netns, a_if: &str, b: &Netns, b_if: &str) -> Result<()> {
    check_ifname(a_if)?;
    check_ifname(b_if)?;
    a.alive()?;
    b.alive()?;
    ip([
        "link",
        "add",
        "name",
        a_if,
        "netns",
        a.name(),
        "type",
        "veth",
        "peer",
        "name",
        b_if,
        "netns",
        b.name(),
    ])?;
    a.link_up(a_if)?;
    b.link_up(b_if)
}
