//! Processes started inside namespaces, tracked and ended by PID only.

use crate::{io_err, Result, DEFAULT_GRACE};
use std::fmt;
use std::io;
use std::os::unix::process::ExitStatusExt;
use std::process::{Child, ChildStderr, ChildStdin, ChildStdout, ExitStatus};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// Ends processes that are not our children (so cannot be reaped here): SIGTERM, poll until
/// gone or `grace` passed, then SIGKILL.
pub(crate) fn terminate_pids(pids: &[u32], grace: Duration) {
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
    pub(crate) inner: Arc<ProcInner>,
}

pub(crate) struct ProcInner {
    pub(crate) pid: u32,
    pub(crate) label: String,
    pub(crate) child: Mutex<Option<Child>>,
    pub(crate) status: Mutex<Option<ExitStatus>>,
}

impl ProcInner {
    pub(crate) fn lock(&self) -> MutexGuard<'_, Option<Child>> {
        self.child.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub(crate) fn record(&self, st: ExitStatus) {
        *self.status.lock().unwrap_or_else(|p| p.into_inner()) = Some(st);
    }

    pub(crate) fn try_wait(&self) -> io::Result<Option<ExitStatus>> {
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
    pub(crate) fn terminate(&self, grace: Duration) -> Option<ExitStatus> {
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

/// Describes an exit status in one short phrase ("exit 3", "signal 9").
pub fn status_text(st: &ExitStatus) -> String {
    match (st.code(), st.signal()) {
        (Some(c), _) => format!("exit {c}"),
        (None, Some(s)) => format!("signal {s}"),
        _ => "unknown".into(),
    }
}
