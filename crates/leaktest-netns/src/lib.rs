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

use std::ffi::OsStr;
use std::fmt;
use std::fs::File;
use std::io::{self, Write};
use std::net::IpAddr;
use std::os::fd::AsRawFd;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::{
    Child, ChildStderr, ChildStdin, ChildStdout, Command, ExitStatus, Output, Stdio,
};
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

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

fn io_err(what: impl Into<String>, source: io::Error) -> Error {
    Error::Io {
        what: what.into(),
        source,
    }
}

/// A name prefix unique to this process and call: `tag` + PID (5 base-36 digits) + a
/// per-process counter (2 base-36 digits) + 2 random base-36 digits, all lowercase.
///
/// The fields after the tag have fixed widths, so no prefix of one run is a prefix of another
/// run's names ([`cleanup_prefix`] of one run never touches another). The prefix is the tag
/// plus 9 characters: with a tag of up to 4 characters a 2-character suffix still gives a
/// valid interface name (≤ 15). Parallel test binaries differ by PID; tests in one binary
/// differ by counter; the random part guards against PID reuse after a crash that left
/// namespaces behind.
pub fn unique_prefix(tag: &str) -> String {
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let mut rnd = [0u8; 2];
    // Entropy only lowers the chance of meeting leftovers; failure to get it is harmless.
    if getrandom::fill(&mut rnd).is_err() {
        let t = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        rnd = (t as u16).to_le_bytes();
    }
    let r = u32::from(u16::from_le_bytes(rnd));
    format!(
        "{tag}{}{}{}",
        base36_fixed(std::process::id(), 5),
        base36_fixed(n, 2),
        base36_fixed(r, 2)
    )
}

/// `v` modulo 36^width in exactly `width` base-36 digits.
fn base36_fixed(v: u32, width: u32) -> String {
    let m = 36u64.pow(width);
    let s = base36((u64::from(v) % m) as u32);
    format!("{s:0>w$}", w = width as usize)
}

fn base36(mut v: u32) -> String {
    const DIGITS: &[u8; 36] = b"0123456789abcdefghijklmnopqrstuvwxyz";
    let mut out = Vec::new();
    loop {
        out.push(DIGITS[(v % 36) as usize]);
        v /= 36;
        if v == 0 {
            break;
        }
    }
    out.reverse();
    String::from_utf8(out).expect("ascii digits")
}

fn check_ns_name(name: &str) -> Result<()> {
    let bad = |why| {
        Err(Error::InvalidName {
            name: name.to_string(),
            why,
        })
    };
    if name.is_empty() {
        return bad("empty");
    }
    if name.len() > 200 {
        return bad("longer than 200 bytes");
    }
    if name == "." || name == ".." {
        return bad("not a file name");
    }
    if !name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.')
    {
        return bad("only ASCII letters, digits, '-', '_' and '.' are allowed");
    }
    Ok(())
}

/// Checks that `name` is a valid Linux interface name (1..=15 bytes, no '/', ':' or spaces).
pub fn check_ifname(name: &str) -> Result<()> {
    let bad = |why| {
        Err(Error::InvalidName {
            name: name.to_string(),
            why,
        })
    };
    if name.is_empty() {
        return bad("empty interface name");
    }
    if name.len() > MAX_IFNAME {
        return bad("interface names are at most 15 bytes");
    }
    if name == "." || name == ".." || name.bytes().any(|b| b == b'/' || b == b':' || b <= b' ') {
        return bad("interface names cannot contain '/', ':' or whitespace");
    }
    Ok(())
}

fn describe(cmd: &Command) -> String {
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

fn ip<I, S>(args: I) -> Result<Output>
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    run_checked(Command::new("ip").args(args))
}

/// Names of all named namespaces (entries of [`NETNS_RUN_DIR`]).
pub fn list() -> Result<Vec<String>> {
    let rd = match std::fs::read_dir(NETNS_RUN_DIR) {
        Ok(rd) => rd,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(io_err(format!("reading {NETNS_RUN_DIR}"), e)),
    };
    let mut names: Vec<String> = rd
        .filter_map(|e| e.ok())
        .filter_map(|e| e.file_name().into_string().ok())
        .collect();
    names.sort();
    Ok(names)
}

/// Whether a named namespace exists.
pub fn exists(name: &str) -> bool {
    Path::new(NETNS_RUN_DIR).join(name).exists()
}

/// PIDs of the processes whose network namespace is the named namespace.
pub fn pids_in(name: &str) -> Result<Vec<u32>> {
    let out = ip(["netns", "pids", name])?;
    Ok(String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .filter_map(|p| p.parse().ok())
        .collect())
}

/// Removes leftover namespaces whose names start with `prefix` (crash recovery, `lab down`).
///
/// Processes still living in such a namespace were started by the run that created it (the
/// prefix is that run's own), so they are ended by PID first (SIGTERM, grace, SIGKILL);
/// otherwise they would keep the namespace and its veth pairs alive after the name is gone.
/// Returns the names removed. A prefix shorter than 3 characters is refused so that a slip
/// cannot wipe unrelated namespaces.
pub fn cleanup_prefix(prefix: &str) -> Result<Vec<String>> {
    if prefix.len() < 3 {
        return Err(Error::InvalidName {
            name: prefix.to_string(),
            why: "cleanup prefix must be at least 3 characters",
        });
    }
    let mut removed = Vec::new();
    let mut first_err = None;
    for name in list()?.into_iter().filter(|n| n.starts_with(prefix)) {
        if let Ok(pids) = pids_in(&name) {
            terminate_pids(&pids, DEFAULT_GRACE);
        }
        match ip(["netns", "delete", name.as_str()]) {
            Ok(_) => removed.push(name),
            Err(e) => {
                if first_err.is_none() {
                    first_err = Some(e);
                }
            }
        }
    }
    match first_err {
        Some(e) => Err(e),
        None => Ok(removed),
    }
}

/// Ends processes that are not our children (so cannot be reaped here): SIGTERM, poll until
/// gone or `grace` passed, then SIGKILL.
fn terminate_pids(pids: &[u32], grace: Duration) {
    let alive = |p: u32| pid_alive(p);
    let me = std::process::id();
    let pids: Vec<u32> = pids.iter().copied().filter(|&p| p != me && p > 1).collect();
    for &p in &pids {
        unsafe { libc::kill(p as libc::pid_t, libc::SIGTERM) };
    }
    let deadline = Instant::now() + grace;
    while Instant::now() < deadline && pids.iter().any(|&p| alive(p)) {
        std::thread::sleep(Duration::from_millis(20));
    }
    for &p in &pids {
        if alive(p) {
            unsafe { libc::kill(p as libc::pid_t, libc::SIGKILL) };
        }
    }
}

/// Whether `pid` names a process that has not exited (zombies count as exited).
pub fn pid_alive(pid: u32) -> bool {
    if unsafe { libc::kill(pid as libc::pid_t, 0) } != 0 {
        return io::Error::last_os_error().raw_os_error() == Some(libc::EPERM);
    }
    // kill(0) succeeds on zombies too; their state in /proc/PID/stat is 'Z' (or 'X').
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => !matches!(
            stat.rsplit_once(')')
                .and_then(|(_, rest)| rest.trim_start().chars().next()),
            Some('Z') | Some('X')
        ),
        Err(_) => false,
    }
}

/// A process started inside a namespace, tracked by PID.
///
/// The handle and the namespace share it: whichever comes first ends it. Dropping the
/// handle ends the process too (use [`Proc::wait`] to let it finish on its own). Once reaped
/// the PID is never signalled again, so a reused PID cannot be hit.
pub struct Proc {
    inner: Arc<ProcInner>,
}

struct ProcInner {
    pid: u32,
    label: String,
    child: Mutex<Option<Child>>,
    status: Mutex<Option<ExitStatus>>,
}

impl ProcInner {
    fn lock(&self) -> MutexGuard<'_, Option<Child>> {
        self.child.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn record(&self, st: ExitStatus) {
        *self.status.lock().unwrap_or_else(|p| p.into_inner()) = Some(st);
    }

    fn try_wait(&self) -> io::Result<Option<ExitStatus>> {
        let mut g = self.lock();
        match g.as_mut() {
            None => Ok(*self.status.lock().unwrap_or_else(|p| p.into_inner())),
            Some(c) => match c.try_wait()? {
                Some(st) => {
                    *g = None;
                    self.record(st);
                    Ok(Some(st))
                }
                None => Ok(None),
            },
        }
    }

    /// SIGTERM to the process group, wait up to `grace`, SIGKILL, reap.
    fn terminate(&self, grace: Duration) -> Option<ExitStatus> {
        let mut g = self.lock();
        let Some(child) = g.as_mut() else {
            return *self.status.lock().unwrap_or_else(|p| p.into_inner());
        };
        if let Ok(Some(st)) = child.try_wait() {
            *g = None;
            self.record(st);
            return Some(st);
        }
        // The child leads its own process group (set in `Netns::spawn`), and is not reaped
        // yet, so the group id cannot belong to anybody else: signal the whole group so that
        // helpers it forked go too.
        let pgid = -(self.pid as libc::pid_t);
        unsafe { libc::kill(pgid, libc::SIGTERM) };
        let deadline = Instant::now() + grace;
        let mut status = None;
        while Instant::now() < deadline {
            match child.try_wait() {
                Ok(Some(st)) => {
                    status = Some(st);
                    break;
                }
                Ok(None) => std::thread::sleep(Duration::from_millis(10)),
                Err(_) => break,
            }
        }
        if status.is_none() {
            unsafe { libc::kill(pgid, libc::SIGKILL) };
            status = child.wait().ok();
        } else {
            // Leader gone; stragglers of its group still carry the pgid, which cannot be
            // reused while they exist.
            unsafe { libc::kill(pgid, libc::SIGKILL) };
        }
        *g = None;
        if let Some(st) = status {
            self.record(st);
        }
        status
    }
}

impl Proc {
    /// The process id.
    pub fn pid(&self) -> u32 {
        self.inner.pid
    }

    /// Exit status if it has exited (reaps it), `None` while it runs.
    pub fn try_wait(&self) -> Result<Option<ExitStatus>> {
        self.inner
            .try_wait()
            .map_err(|e| io_err(format!("waiting for {}", self.inner.label), e))
    }

    /// Whether it is still running.
    pub fn is_running(&self) -> bool {
        matches!(self.inner.try_wait(), Ok(None))
    }

    /// Waits at most `timeout` for it to exit on its own; `None` if still running.
    pub fn wait_timeout(&self, timeout: Duration) -> Result<Option<ExitStatus>> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(st) = self.try_wait()? {
                return Ok(Some(st));
            }
            if Instant::now() >= deadline {
                return Ok(None);
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Waits until it exits on its own (unbounded: prefer [`Proc::wait_timeout`]).
    pub fn wait(&self) -> Result<ExitStatus> {
        loop {
            if let Some(st) = self.try_wait()? {
                return Ok(st);
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Ends it now: SIGTERM to its process group, `grace`, SIGKILL, reap.
    pub fn terminate(&self, grace: Duration) -> Option<ExitStatus> {
        self.inner.terminate(grace)
    }

    /// Sends one signal to the process (only while it is not reaped).
    pub fn signal(&self, sig: i32) -> Result<()> {
        let g = self.inner.lock();
        if g.is_none() {
            return Err(io_err(
                format!("signalling {}", self.inner.label),
                io::Error::from_raw_os_error(libc::ESRCH),
            ));
        }
        if unsafe { libc::kill(self.inner.pid as libc::pid_t, sig) } != 0 {
            return Err(io_err(
                format!("signalling {}", self.inner.label),
                io::Error::last_os_error(),
            ));
        }
        Ok(())
    }

    /// Takes its stdin pipe (if it was spawned with `Stdio::piped()`).
    pub fn take_stdin(&self) -> Option<ChildStdin> {
        self.inner.lock().as_mut().and_then(|c| c.stdin.take())
    }

    /// Takes its stdout pipe (if it was spawned with `Stdio::piped()`).
    pub fn take_stdout(&self) -> Option<ChildStdout> {
        self.inner.lock().as_mut().and_then(|c| c.stdout.take())
    }

    /// Takes its stderr pipe (if it was spawned with `Stdio::piped()`).
    pub fn take_stderr(&self) -> Option<ChildStderr> {
        self.inner.lock().as_mut().and_then(|c| c.stderr.take())
    }

    /// Lets the process outlive this handle (it is still ended when its namespace drops).
    pub fn detach(self) {
        std::mem::forget(self);
    }
}

impl fmt::Debug for Proc {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Proc")
            .field("pid", &self.inner.pid)
            .field("label", &self.inner.label)
            .finish()
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.inner.terminate(DEFAULT_GRACE);
    }
}

/// Opens the namespace file of `name` (`/run/netns/NAME`).
fn open_named(name: &str) -> Result<File> {
    let path = Path::new(NETNS_RUN_DIR).join(name);
    File::open(&path).map_err(|e| io_err(format!("opening {}", path.display()), e))
}

/// Moves the calling thread into the named namespace. Only for threads made
/// for that purpose: [`run_in_named`] and [`thread_in_named`] do it for you.
pub fn enter(name: &str) -> Result<()> {
    setns_net(&open_named(name)?, name)
}

/// A command that runs `program` inside the named namespace: the child joins
/// it with `setns` before `exec`, so its PID is `program`'s and no `ip`
/// process sits in between. For namespaces whose lifetime someone else
/// manages (the lab's, recorded in its state file); [`Netns::command`] is
/// the owning guard's equivalent.
pub fn command_in(name: &str, program: impl AsRef<OsStr>) -> Result<Command> {
    let fd = open_named(name)?;
    let mut cmd = Command::new(program);
    let raw = fd.as_raw_fd();
    // SAFETY: setns is async-signal-safe; `fd` moves into the closure, so it
    // stays open in the parent until the command is dropped.
    unsafe {
        cmd.pre_exec(move || {
            let _keep = &fd;
            if libc::setns(raw, libc::CLONE_NEWNET) != 0 {
                return Err(io::Error::last_os_error());
            }
            Ok(())
        });
    }
    Ok(cmd)
}

/// Runs `f` on a new thread that has joined the named namespace and waits for
/// its result. Sockets `f` opens belong to the namespace and stay there even
/// when moved out of the closure. `f` may borrow from the caller.
pub fn run_in_named<F, T>(name: &str, f: F) -> Result<T>
where
    F: FnOnce() -> T + Send,
    T: Send,
{
    let fd = open_named(name)?;
    std::thread::scope(|s| {
        let h = std::thread::Builder::new()
            .name(format!("netns-{name}"))
            .spawn_scoped(s, move || {
                setns_net(&fd, name)?;
                drop(fd);
                Ok(f())
            })
            .map_err(|e| io_err("spawning namespace thread", e))?;
        h.join()
            .map_err(|_| Error::ThreadPanicked(name.to_string()))?
    })
}

/// Starts `f` on a background thread named `thread_name` that has joined the
/// named namespace (servers, captures). Returns once the thread is inside the
/// namespace; an error if it could not get there (then `f` never runs).
pub fn thread_in_named<F, T>(name: &str, thread_name: &str, f: F) -> Result<JoinHandle<T>>
where
    F: FnOnce() -> T + Send + 'static,
    T: Send + 'static,
{
    let fd = open_named(name)?;
    let ns = name.to_string();
    let (tx, rx) = std::sync::mpsc::sync_channel::<Result<()>>(1);
    let h = std::thread::Builder::new()
        .name(thread_name.to_string())
        .spawn(move || {
            let r = setns_net(&fd, &ns);
            drop(fd);
            let ok = r.is_ok();
            let _ = tx.send(r);
            if !ok {
                // The caller got the error; never run `f` in the wrong namespace.
                panic!("setns into {ns} failed");
            }
            f()
        })
        .map_err(|e| io_err("spawning namespace thread", e))?;
    match rx.recv() {
        Ok(Ok(())) => Ok(h),
        Ok(Err(e)) => {
            let _ = h.join();
            Err(e)
        }
        Err(_) => {
            let _ = h.join();
            Err(Error::ThreadPanicked(name.to_string()))
        }
    }
}

/// Sets a sysctl inside the named namespace (see [`Netns::sysctl`] for keys).
pub fn sysctl_in(name: &str, key: &str, value: &str) -> Result<()> {
    let path = sysctl_path(key)?;
    let what = format!("sysctl {key}={value} in {name}");
    // /proc/sys/net resolves against the namespace of the task that opens it, so a
    // thread that joined the namespace sees (and writes) the namespace's values.
    run_in_named(name, || -> io::Result<()> {
        let mut f = std::fs::OpenOptions::new().write(true).open(&path)?;
        f.write_all(value.as_bytes())
    })?
    .map_err(|e| io_err(what, e))
}

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

fn setns_net(fd: &File, name: &str) -> Result<()> {
    // CLONE_NEWNET may be changed per thread even in a multi-threaded process.
    if unsafe { libc::setns(fd.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
        return Err(io_err(
            format!("setns into {name}"),
            io::Error::last_os_error(),
        ));
    }
    Ok(())
}

fn sysctl_path(key: &str) -> Result<PathBuf> {
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

fn parse_mac(s: &str) -> Option<[u8; 6]> {
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

/// Describes an exit status in one short phrase ("exit 3", "signal 9").
pub fn status_text(st: &ExitStatus) -> String {
    match (st.code(), st.signal()) {
        (Some(c), _) => format!("exit {c}"),
        (None, Some(s)) => format!("signal {s}"),
        _ => "unknown".into(),
    }
}

/// Owns several namespaces named `<prefix><suffix>`; on drop (also while unwinding) it first
/// ends every tracked process in all of them (newest namespace first), then deletes the
/// namespaces (newest first), then sweeps anything else left with its prefix.
pub struct Topology {
    prefix: String,
    nss: Vec<Arc<Netns>>,
    keep: bool,
}

impl fmt::Debug for Topology {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Topology")
            .field("prefix", &self.prefix)
            .field("namespaces", &self.nss)
            .finish()
    }
}

impl Topology {
    /// A topology with a fresh [`unique_prefix`] of `tag`.
    pub fn new(tag: &str) -> Topology {
        Topology::with_prefix(unique_prefix(tag))
    }

    /// A topology with a caller-chosen prefix (e.g. the lab's fixed one, so `lab down`
    /// can find leftovers with [`cleanup_prefix`]).
    pub fn with_prefix(prefix: impl Into<String>) -> Topology {
        Topology {
            prefix: prefix.into(),
            nss: Vec::new(),
            keep: false,
        }
    }

    /// The name prefix of every namespace this topology creates.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// Creates namespace `<prefix><suffix>`.
    pub fn add(&mut self, suffix: &str) -> Result<Arc<Netns>> {
        let ns = Arc::new(Netns::create(&format!("{}{suffix}", self.prefix))?);
        self.nss.push(ns.clone());
        Ok(ns)
    }

    /// The namespaces created so far, oldest first.
    pub fn namespaces(&self) -> &[Arc<Netns>] {
        &self.nss
    }

    /// Finds a namespace by its suffix.
    pub fn get(&self, suffix: &str) -> Option<&Arc<Netns>> {
        let full = format!("{}{suffix}", self.prefix);
        self.nss.iter().find(|n| n.name() == full)
    }

    /// Leaves everything in place on drop (`lab --keep`).
    pub fn keep(&mut self) {
        self.keep = true;
        for ns in &self.nss {
            ns.keep();
        }
    }

    /// Tears everything down now; errors are collected, teardown continues past them.
    pub fn teardown(&mut self) -> Result<()> {
        let mut first = None;
        for ns in self.nss.iter().rev() {
            ns.terminate_all(DEFAULT_GRACE);
        }
        for ns in self.nss.iter().rev() {
            if let Err(e) = ns.delete() {
                first.get_or_insert(e);
            }
        }
        self.nss.clear();
        if self.prefix.len() >= 3 {
            if let Err(e) = cleanup_prefix(&self.prefix) {
                first.get_or_insert(e);
            }
        }
        first.map_or(Ok(()), Err)
    }
}

impl Drop for Topology {
    fn drop(&mut self) {
        if self.keep {
            return;
        }
        if let Err(e) = self.teardown() {
            eprintln!(
                "leaktest-netns: teardown of {}* incomplete: {e}",
                self.prefix
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
