//! System plumbing for the lab: network namespaces by name (the namespace
//! work itself is leaktest-netns's: [`leaktest_netns::command_in`] and
//! friends), and child processes tracked by PID with their start time, so a
//! recycled PID is never signalled and the records can outlive the process
//! in the lab's state file.

use crate::LabError;
use std::io::Write;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Runs a command to completion; a non-zero status is an error carrying stderr.
pub fn run(cmd: &mut Command) -> Result<String, LabError> {
    let what = format!("{cmd:?}");
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .map_err(|e| LabError::Command(what.clone(), e.to_string()))?;
    if !out.status.success() {
        return Err(LabError::Command(
            what,
            String::from_utf8_lossy(&out.stderr).trim().to_string(),
        ));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Runs `cmd` with `input` on its stdin.
pub fn run_with_input(cmd: &mut Command, input: &str) -> Result<String, LabError> {
    let what = format!("{cmd:?}");
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| LabError::Command(what.clone(), e.to_string()))?;
    child
        .stdin
        .take()
        .expect("stdin is piped")
        .write_all(input.as_bytes())
        .map_err(|e| LabError::Command(what.clone(), e.to_string()))?;
    let out = child
        .wait_with_output()
        .map_err(|e| LabError::Command(what.clone(), e.to_string()))?;
    if !out.status.success() {
        return Err(LabError::Command(
            what,
            String::from_utf8_lossy(&out.stderr).trim().to_string(),
        ));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

fn netns_err(ns: &str) -> impl FnOnce(leaktest_netns::Error) -> LabError + '_ {
    move |e| LabError::Netns(ns.to_string(), e.to_string())
}

/// Creates the named network namespace.
pub fn netns_add(name: &str) -> Result<(), LabError> {
    run(Command::new("ip").args(["netns", "add", name])).map(|_| ())
}

/// Deletes the named network namespace if it exists.
pub fn netns_del(name: &str) -> Result<(), LabError> {
    if !leaktest_netns::exists(name) {
        return Ok(());
    }
    run(Command::new("ip").args(["netns", "delete", name])).map(|_| ())
}

/// Names of every namespace whose name starts with `prefix`.
pub fn netns_list(prefix: &str) -> Vec<String> {
    let mut v = leaktest_netns::list().unwrap_or_default();
    v.retain(|n| n.starts_with(prefix));
    v
}

/// Runs `ip -batch -` inside the namespace (one `ip` process for many commands).
pub fn ip_batch(ns: &str, batch: &str) -> Result<(), LabError> {
    run_with_input(Command::new("ip").args(["-n", ns, "-batch", "-"]), batch).map(|_| ())
}

/// A command that will run inside `ns` (its PID is the program's).
pub fn ns_command(ns: &str, program: &str) -> Result<Command, LabError> {
    leaktest_netns::command_in(ns, program).map_err(netns_err(ns))
}

/// Spawns a thread that runs `f` inside `ns`. Sockets made there belong to
/// `ns` for their whole life, whichever thread later uses them.
pub fn spawn_in<T, F>(
    ns: &str,
    name: &str,
    f: F,
) -> Result<std::thread::JoinHandle<Result<T, LabError>>, LabError>
where
    T: Send + 'static,
    F: FnOnce() -> Result<T, LabError> + Send + 'static,
{
    leaktest_netns::thread_in_named(ns, name, f).map_err(netns_err(ns))
}

/// Runs `f` inside `ns` on a short-lived thread and returns its result.
pub fn run_in<T, F>(ns: &str, f: F) -> Result<T, LabError>
where
    T: Send + 'static,
    F: FnOnce() -> Result<T, LabError> + Send + 'static,
{
    leaktest_netns::run_in_named(ns, f).map_err(netns_err(ns))?
}

/// Sets sysctls inside `ns` (keys like `net.ipv4.ip_forward`).
pub fn sysctls(ns: &str, kv: &[(&str, &str)]) -> Result<(), LabError> {
    for (k, v) in kv {
        leaktest_netns::sysctl_in(ns, k, v).map_err(netns_err(ns))?;
    }
    Ok(())
}

/// Start time of a process in clock ticks since boot (field 22 of
/// /proc/PID/stat), or `None` if there is no such process.
pub fn proc_start_time(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name may contain spaces and parentheses: parse after the last ')'.
    let rest = &stat[stat.rfind(')')? + 2..];
    rest.split_whitespace().nth(19)?.parse().ok()
}

/// A process the lab started: its PID and start time.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Tracked {
    pub pid: u32,
    pub start_time: u64,
    pub what: String,
}

impl Tracked {
    /// Whether this very process (not a recycled PID) is still there.
    pub fn alive(&self) -> bool {
        proc_start_time(self.pid) == Some(self.start_time) && !is_zombie(self.pid)
    }

    /// Sends `sig` if this very process is still there.
    pub fn signal(&self, sig: i32) {
        if proc_start_time(self.pid) == Some(self.start_time) {
            // SAFETY: plain syscall; the PID was checked to be ours just above.
            unsafe {
                libc::kill(self.pid as i32, sig);
            }
        }
    }

    /// SIGTERM, wait up to `grace`, then SIGKILL; reaps it if it is our child.
    pub fn stop(&self, grace: Duration) {
        if !self.alive() {
            reap(self.pid);
            return;
        }
        self.signal(libc::SIGTERM);
        let deadline = Instant::now() + grace;
        while Instant::now() < deadline {
            reap(self.pid);
            if !self.alive() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        self.signal(libc::SIGKILL);
        let deadline = Instant::now() + Duration::from_secs(2);
        while Instant::now() < deadline {
            reap(self.pid);
            if !self.alive() {
                return;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

fn is_zombie(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| s.rfind(')').map(|i| s[i + 2..].starts_with('Z')))
        .unwrap_or(false)
}

/// Reaps `pid` if it is an exited child of ours; harmless otherwise.
fn reap(pid: u32) {
    let mut status = 0;
    // SAFETY: WNOHANG never blocks; a PID that is not our child gives ECHILD.
    unsafe {
        libc::waitpid(pid as i32, &mut status, libc::WNOHANG);
    }
}

/// Whether we run as root (uid 0).
pub fn is_root() -> bool {
    // SAFETY: getuid cannot fail.
    unsafe { libc::geteuid() == 0 }
}

/// uid and gid of a system user, from /etc/passwd.
pub fn user_ids(name: &str) -> Option<(u32, u32)> {
    let passwd = std::fs::read_to_string("/etc/passwd").ok()?;
    passwd.lines().find_map(|l| {
        let f: Vec<&str> = l.split(':').collect();
        (f.len() >= 4 && f[0] == name).then(|| Some((f[2].parse().ok()?, f[3].parse().ok()?)))?
    })
}

/// Tries a TCP connection to each of `addrs` (all within `timeout`) as
/// user `uid`/`gid`, so that an output chain matching `meta skuid` judges
/// it as that user's: `None` at the first that connects, else the last
/// error. Changes the credentials of the calling thread only (the raw
/// `setresgid`/`setresuid` system calls are per thread on Linux; glibc's
/// wrappers would change every thread), so it must run on a thread of
/// its own that ends afterwards, as [`run_in`]'s does.
pub fn connect_as(
    uid: u32,
    gid: u32,
    addrs: &[std::net::SocketAddr],
    timeout: std::time::Duration,
) -> Result<Option<std::io::Error>, LabError> {
    as_user(uid, gid, || connect_any(addrs, timeout))
}

/// Runs `f` as user `uid`/`gid` (no supplementary groups) on a thread of
/// its own that ends with it: the raw `setresgid`/`setresuid` system calls
/// change the calling thread's credentials only (glibc's wrappers would
/// change every thread's), and the thread inherits the caller's network
/// namespace. Sockets made in `f` belong to the user (`meta skuid` sees it).
pub fn as_user<T: Send>(uid: u32, gid: u32, f: impl FnOnce() -> T + Send) -> Result<T, LabError> {
    std::thread::scope(|s| {
        s.spawn(move || {
            // SAFETY: plain system calls on this thread's credentials.
            let r = unsafe {
                if libc::syscall(libc::SYS_setgroups, 0, std::ptr::null::<libc::gid_t>()) != 0
                    || libc::syscall(libc::SYS_setresgid, gid, gid, gid) != 0
                {
                    -1
                } else {
                    libc::syscall(libc::SYS_setresuid, uid, uid, uid)
                }
            };
            if r != 0 {
                return Err(LabError::Io(
                    format!("becoming uid {uid}"),
                    std::io::Error::last_os_error(),
                ));
            }
            Ok(f())
        })
        .join()
        .map_err(|_| LabError::Died(format!("a thread running as uid {uid} panicked")))?
    })
}

/// The first of `addrs` that accepts a TCP connection (`None`), else the
/// last error; all within `timeout`, shared out.
fn connect_any(
    addrs: &[std::net::SocketAddr],
    timeout: std::time::Duration,
) -> Option<std::io::Error> {
    let each = (timeout / addrs.len().max(1) as u32).max(std::time::Duration::from_millis(500));
    let mut last = None;
    for a in addrs {
        match std::net::TcpStream::connect_timeout(a, each) {
            Ok(s) => {
                abort_on_close(&s);
                return None;
            }
            Err(e) => last = Some(e),
        }
    }
    last
}

/// Makes closing `s` abortive (`SO_LINGER` on with a zero timeout: the
/// kernel sends an RST at once and keeps no orphaned socket). A check's
/// connection then ends before the next watch starts, instead of leaving a
/// FIN handshake (or an RST to the relay's late bytes) for it to see.
pub fn abort_on_close(s: &std::net::TcpStream) {
    use std::os::fd::AsRawFd;
    let l = libc::linger {
        l_onoff: 1,
        l_linger: 0,
    };
    // SAFETY: a valid socket descriptor and a correctly sized option value.
    unsafe {
        libc::setsockopt(
            s.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_LINGER,
            (&l as *const libc::linger).cast(),
            std::mem::size_of::<libc::linger>() as libc::socklen_t,
        );
    }
}

/// The primary group of the passwd entry with uid `uid`, if there is one.
pub fn user_gid(uid: u32) -> Option<u32> {
    let passwd = std::fs::read_to_string("/etc/passwd").ok()?;
    passwd.lines().find_map(|l| {
        let f: Vec<&str> = l.split(':').collect();
        (f.len() >= 4 && f[2].parse() == Ok(uid)).then(|| f[3].parse().ok())?
    })
}

/// Empties the conntrack table of `ns` (ctnetlink `IPCTNL_MSG_CT_DELETE`
/// without attributes). Between gateway profiles this keeps one profile's
/// entries (NAT decisions, loosely picked-up TCP) from steering the next
/// profile's probes; tor's own connections are picked up again by its next
/// packet.
pub fn conntrack_flush(ns: &str) -> Result<(), LabError> {
    run_in(ns, || {
        const NETLINK_NETFILTER: i32 = 12;
        const NFNL_SUBSYS_CTNETLINK: u16 = 1;
        const IPCTNL_MSG_CT_DELETE: u16 = 2;
        let err = |what: &str| {
            LabError::Io(
                format!("conntrack flush: {what}"),
                std::io::Error::last_os_error(),
            )
        };
        // SAFETY: plain socket syscalls on a descriptor we own and close.
        unsafe {
            let fd = libc::socket(
                libc::AF_NETLINK,
                libc::SOCK_RAW | libc::SOCK_CLOEXEC,
                NETLINK_NETFILTER,
            );
            if fd < 0 {
                return Err(err("socket"));
            }
            // nlmsghdr (16 bytes) + nfgenmsg (family AF_UNSPEC: both, version 0, res_id 0).
            let mut msg = [0u8; 20];
            msg[0..4].copy_from_slice(&20u32.to_ne_bytes());
            msg[4..6].copy_from_slice(
                &((NFNL_SUBSYS_CTNETLINK << 8) | IPCTNL_MSG_CT_DELETE).to_ne_bytes(),
            );
            msg[6..8]
                .copy_from_slice(&((libc::NLM_F_REQUEST | libc::NLM_F_ACK) as u16).to_ne_bytes());
            msg[8..12].copy_from_slice(&1u32.to_ne_bytes());
            let mut addr: libc::sockaddr_nl = std::mem::zeroed();
            addr.nl_family = libc::AF_NETLINK as u16;
            let sent = libc::sendto(
                fd,
                msg.as_ptr().cast(),
                msg.len(),
                0,
                (&addr as *const libc::sockaddr_nl).cast(),
                std::mem::size_of::<libc::sockaddr_nl>() as u32,
            );
            if sent < 0 {
                libc::close(fd);
                return Err(err("send"));
            }
            let tv = libc::timeval {
                tv_sec: 2,
                tv_usec: 0,
            };
            libc::setsockopt(
                fd,
                libc::SOL_SOCKET,
                libc::SO_RCVTIMEO,
                (&tv as *const libc::timeval).cast(),
                std::mem::size_of::<libc::timeval>() as u32,
            );
            let mut buf = [0u8; 256];
            let n = libc::recv(fd, buf.as_mut_ptr().cast(), buf.len(), 0);
            libc::close(fd);
            if n < 20 {
                return Err(err("no acknowledgement"));
            }
            // NLMSG_ERROR carrying 0 acknowledges; ENOENT: the table was empty.
            let code = i32::from_ne_bytes([buf[16], buf[17], buf[18], buf[19]]);
            if code != 0 && code != -libc::ENOENT {
                return Err(LabError::Io(
                    "conntrack flush".into(),
                    std::io::Error::from_raw_os_error(-code),
                ));
            }
        }
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn own_start_time_is_readable_and_stable() {
        let me = std::process::id();
        let a = proc_start_time(me).unwrap();
        assert_eq!(proc_start_time(me), Some(a));
        let t = Tracked {
            pid: me,
            start_time: a + 1,
            what: "not me".into(),
        };
        assert!(
            !t.alive(),
            "a different start time must not count as the same process"
        );
    }

    #[test]
    fn missing_process_has_no_start_time() {
        assert_eq!(proc_start_time(u32::MAX - 1), None);
    }

    #[test]
    fn root_user_ids() {
        assert_eq!(user_ids("root"), Some((0, 0)));
        assert_eq!(user_ids("no-such-user-leaktest"), None);
    }
}
