//! Working inside a namespace known only by name (the lab's, whose lifetime
//! its state file records): commands, threads and sysctls.

use crate::netns::{setns_net, sysctl_path};
use crate::{io_err, Error, Result, NETNS_RUN_DIR};
use std::ffi::OsStr;
use std::fs::File;
use std::io::{self, Write};
use std::os::fd::AsRawFd;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::Command;
use std::thread::JoinHandle;

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
