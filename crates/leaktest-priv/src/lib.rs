//! Privilege for leaktest, dropped deliberately and in one place.
//!
//! The watcher parses every frame the network sends. Only opening the
//! capture (`CAP_NET_RAW`, and `CAP_NET_ADMIN` for the kernel ring), the
//! canary socket and Tor's control port (whose cookie only root or the tor
//! group can read) needs privilege; parsing needs none. So the watcher is
//! split the way OpenSSH splits its daemon (privilege separation): after
//! opening everything, a small privileged *monitor* keeps only the work that
//! needs root (undoing `--restrict-tor`, writing the reports and the ready
//! file), and a *sandboxed reader* judges frames after [`Sandbox::enter`]:
//!
//! 1. the capability bounding set emptied (while still root: it needs
//!    `CAP_SETPCAP`);
//! 2. supplementary groups dropped, then real, effective and saved gid and
//!    uid set to the target [`User`] (from root every capability is then
//!    cleared by the kernel: capabilities(7), "Effect of user ID changes");
//! 3. effective, permitted, inheritable and ambient capabilities cleared
//!    explicitly (this is all there is to do when started with file
//!    capabilities instead of root);
//! 4. not dumpable (`PR_SET_DUMPABLE` 0: no ptrace, no `pidfd_getfd` of its
//!    sockets by another process of its uid) and `PR_SET_NO_NEW_PRIVS`
//!    (prctl(2)): no exec can give privileges back;
//! 5. a seccomp filter ([`sandbox_filter`]) that allows only the system calls
//!    the capture loop (and the probe's sending loop) makes; anything else
//!    fails with `EPERM`;
//! 6. all of it verified from `/proc/thread-self/status` ([`Status`]), so a
//!    step that silently did nothing is an error, not a sandbox in name only.
//!
//! `leaktest probe` is split the same way once its sockets are open: the
//! sandboxed child sends the sweep, the parent writes the report.
//!
//! The caller must be single-threaded when it enters (threads started later
//! inherit the credentials and the filter; earlier ones would not).

use seccompiler::{
    BpfProgram, SeccompAction, SeccompCmpArgLen, SeccompCmpOp, SeccompCondition, SeccompFilter,
    SeccompRule,
};
use std::collections::BTreeMap;
use std::ffi::{CStr, CString};

/// Errors of dropping privilege. Every one means the sandbox is not there.
#[derive(Debug, thiserror::Error)]
pub enum PrivError {
    #[error("no user {0:?} (give --user NAME or a numeric uid)")]
    NoSuchUser(String),
    #[error(
        "--user {0} needs root: started with capabilities only, leaktest cannot change its uid \
         (leave --user out to keep your own)"
    )]
    NeedsRoot(String),
    #[error("the sandboxed process must not be root (uid 0): give --user an unprivileged user")]
    RootTarget,
    #[error("{op} failed: {source}")]
    Sys {
        op: &'static str,
        #[source]
        source: std::io::Error,
    },
    #[error("clearing capabilities ({op}): {msg}")]
    Caps { op: &'static str, msg: String },
    #[error("building the seccomp filter: {0}")]
    Filter(String),
    #[error("the sandbox did not take: {0}")]
    NotDropped(String),
    #[error("the process has {0} threads; privilege is dropped while it has one")]
    Threads(usize),
}

fn sys(op: &'static str) -> impl FnOnce(std::io::Error) -> PrivError {
    move |source| PrivError::Sys { op, source }
}

fn check(op: &'static str, r: libc::c_int) -> Result<(), PrivError> {
    if r < 0 {
        return Err(PrivError::Sys {
            op,
            source: std::io::Error::last_os_error(),
        });
    }
    Ok(())
}

/// The unprivileged user the sandboxed reader runs as.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct User {
    /// The passwd name, or the number when there is no entry.
    pub name: String,
    pub uid: u32,
    pub gid: u32,
}

/// The dedicated user the Debian package creates.
pub const PACKAGE_USER: &str = "leaktest";
/// The fallback when there is no [`PACKAGE_USER`].
pub const FALLBACK_USER: &str = "nobody";

impl User {
    /// `NAME` (a passwd entry) or `UID` (a number; its passwd entry's group
    /// if it has one, else the group of the same number: a uid with no
    /// passwd entry works). uid 0 is refused.
    pub fn resolve(spec: &str) -> Result<User, PrivError> {
        let u = match spec.parse::<u32>() {
            Ok(uid) => passwd_by_uid(uid)?.unwrap_or(User {
                name: uid.to_string(),
                uid,
                gid: uid,
            }),
            Err(_) => passwd_by_name(spec)?.ok_or_else(|| PrivError::NoSuchUser(spec.into()))?,
        };
        if u.uid == 0 {
            return Err(PrivError::RootTarget);
        }
        Ok(u)
    }

    /// [`PACKAGE_USER`] if it exists, else [`FALLBACK_USER`].
    pub fn default_user() -> Result<User, PrivError> {
        match passwd_by_name(PACKAGE_USER)? {
            Some(u) if u.uid != 0 => Ok(u),
            _ => User::resolve(FALLBACK_USER),
        }
    }
}

fn passwd_by_name(name: &str) -> Result<Option<User>, PrivError> {
    let c = CString::new(name).map_err(|_| PrivError::NoSuchUser(name.into()))?;
    passwd(&|pw, buf, len, out| {
        // SAFETY: every pointer is valid for the call; buf has len bytes.
        unsafe { libc::getpwnam_r(c.as_ptr(), pw, buf, len, out) }
    })
}

fn passwd_by_uid(uid: u32) -> Result<Option<User>, PrivError> {
    passwd(&|pw, buf, len, out| {
        // SAFETY: as above.
        unsafe { libc::getpwuid_r(uid, pw, buf, len, out) }
    })
}

type PwLookup<'a> = dyn Fn(*mut libc::passwd, *mut libc::c_char, libc::size_t, *mut *mut libc::passwd) -> libc::c_int
    + 'a;

fn passwd(lookup: &PwLookup<'_>) -> Result<Option<User>, PrivError> {
    let mut buf = vec![0 as libc::c_char; 16 * 1024];
    // SAFETY: plain data, filled by the lookup.
    let mut pw: libc::passwd = unsafe { std::mem::zeroed() };
    let mut out: *mut libc::passwd = std::ptr::null_mut();
    let r = lookup(&mut pw, buf.as_mut_ptr(), buf.len(), &mut out);
    if r != 0 {
        return Err(PrivError::Sys {
            op: "reading the passwd database",
            source: std::io::Error::from_raw_os_error(r),
        });
    }
    if out.is_null() {
        return Ok(None);
    }
    // SAFETY: pw_name points into buf, NUL-terminated, when out is set.
    let name = unsafe { CStr::from_ptr(pw.pw_name) }
        .to_string_lossy()
        .into_owned();
    Ok(Some(User {
        name,
        uid: pw.pw_uid,
        gid: pw.pw_gid,
    }))
}

/// A process's privilege as the kernel reports it in `/proc/PID/status`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Status {
    /// Real, effective, saved and filesystem uid.
    pub uids: [u32; 4],
    pub gids: [u32; 4],
    pub cap_inh: u64,
    pub cap_prm: u64,
    pub cap_eff: u64,
    pub cap_bnd: u64,
    pub cap_amb: u64,
    pub no_new_privs: bool,
    /// 0 none, 1 strict, 2 filter.
    pub seccomp: u8,
}

impl Status {
    /// Parses the text of a `/proc/PID/status` file.
    pub fn parse(text: &str) -> Status {
        let mut s = Status::default();
        let hex = |v: &str| u64::from_str_radix(v.trim(), 16).unwrap_or(u64::MAX);
        let four = |v: &str| {
            let mut a = [u32::MAX; 4];
            for (i, x) in v.split_whitespace().take(4).enumerate() {
                a[i] = x.parse().unwrap_or(u32::MAX);
            }
            a
        };
        for line in text.lines() {
            let Some((k, v)) = line.split_once(':') else {
                continue;
            };
            match k {
                "Uid" => s.uids = four(v),
                "Gid" => s.gids = four(v),
                "CapInh" => s.cap_inh = hex(v),
                "CapPrm" => s.cap_prm = hex(v),
                "CapEff" => s.cap_eff = hex(v),
                "CapBnd" => s.cap_bnd = hex(v),
                "CapAmb" => s.cap_amb = hex(v),
                "NoNewPrivs" => s.no_new_privs = v.trim() == "1",
                "Seccomp" => s.seccomp = v.trim().parse().unwrap_or(0),
                _ => {}
            }
        }
        s
    }

    /// The calling thread's.
    pub fn current() -> Result<Status, PrivError> {
        let t = std::fs::read_to_string("/proc/thread-self/status")
            .map_err(sys("reading /proc/thread-self/status"))?;
        Ok(Status::parse(&t))
    }

    /// Process `pid`'s (its main thread).
    pub fn of(pid: u32) -> Result<Status, PrivError> {
        let t = std::fs::read_to_string(format!("/proc/{pid}/status"))
            .map_err(sys("reading /proc/PID/status"))?;
        Ok(Status::parse(&t))
    }

    /// Every capability set empty, no new privileges, a seccomp filter.
    pub fn is_sandboxed(&self) -> bool {
        self.cap_inh == 0
            && self.cap_prm == 0
            && self.cap_eff == 0
            && self.cap_amb == 0
            && self.no_new_privs
            && self.seccomp == 2
    }
}

/// The sandbox of the watcher's reader, prepared before it is entered (the
/// filter is compiled and the user resolved while that can still fail
/// cleanly).
pub struct Sandbox {
    user: Option<User>,
    /// Descriptors nothing may be written or sent on (see [`Sandbox::protect`]).
    protected: Vec<i32>,
    /// The monitor's PID, when entered in a child of [`separate`].
    parent: Option<libc::pid_t>,
}

impl std::fmt::Debug for Sandbox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sandbox").field("user", &self.user).finish()
    }
}

impl Sandbox {
    /// A sandbox that runs as `user` (required when entered as root; `None`
    /// keeps the current unprivileged uid when started with capabilities).
    pub fn new(user: Option<User>) -> Result<Sandbox, PrivError> {
        // Compiled once here so that a filter that cannot be built is an
        // error before anything starts; [`Sandbox::enter`] builds the real one
        // (it names the entering process and the protected descriptors).
        sandbox_filter(1, &[])?;
        Ok(Sandbox {
            user,
            protected: Vec::new(),
            parent: None,
        })
    }

    /// Forbids writing or sending on these descriptors once entered: a
    /// packet socket kept open for reading (the capture, the canary socket)
    /// must not become a way to put frames on the wire.
    pub fn protect(&mut self, fds: &[i32]) {
        self.protected.extend_from_slice(fds);
    }

    /// The user the reader runs as, if it changes uid.
    pub fn user(&self) -> Option<&User> {
        self.user.as_ref()
    }

    /// Drops every privilege of the calling (only) thread, in the order of the
    /// module documentation, and verifies it; the process is also killed
    /// (SIGKILL) when its parent ends (`PR_SET_PDEATHSIG`). In a [`Side::Reader`] use
    /// [`Reader::enter`], which also checks that the monitor is still there.
    /// After an error the caller must not go on reading frames.
    pub fn enter(&self) -> Result<Status, PrivError> {
        let threads = thread_count()?;
        if threads != 1 {
            return Err(PrivError::Threads(threads));
        }
        // SAFETY: no preconditions.
        let root = unsafe { libc::geteuid() } == 0;
        if root {
            let u = self.user.as_ref().ok_or(PrivError::RootTarget)?;
            if u.uid == 0 {
                return Err(PrivError::RootTarget);
            }
            caps::clear(None, caps::CapSet::Bounding).map_err(|e| PrivError::Caps {
                op: "bounding set",
                msg: e.to_string(),
            })?;
            // SAFETY: plain system calls on the calling process.
            unsafe {
                check("setgroups", libc::setgroups(0, std::ptr::null()))?;
                check("setresgid", libc::setresgid(u.gid, u.gid, u.gid))?;
                check("setresuid", libc::setresuid(u.uid, u.uid, u.uid))?;
            }
        } else if let Some(u) = &self.user {
            // SAFETY: no preconditions.
            if u.uid != unsafe { libc::getuid() } {
                return Err(PrivError::NeedsRoot(u.name.clone()));
            }
        }
        for (set, op) in [
            (caps::CapSet::Ambient, "ambient"),
            (caps::CapSet::Effective, "effective"),
            (caps::CapSet::Permitted, "permitted"),
            (caps::CapSet::Inheritable, "inheritable"),
        ] {
            caps::clear(None, set).map_err(|e| PrivError::Caps {
                op,
                msg: e.to_string(),
            })?;
        }
        // The reader dies with its monitor (set after the uid change, which
        // clears it): with nobody to take its report it has nothing to do.
        // SAFETY: prctl with integer arguments.
        check("prctl(PR_SET_PDEATHSIG)", unsafe {
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL, 0, 0, 0)
        })?;
        if let Some(parent) = self.parent {
            // SAFETY: no preconditions.
            if unsafe { libc::getppid() } != parent {
                return Err(PrivError::NotDropped("the monitor is gone".into()));
            }
        }
        // Not dumpable: no process of the same uid (a capability-only run keeps
        // the caller's) may ptrace it or take its descriptors with
        // pidfd_getfd, such as the capture socket to send frames on.
        // SAFETY: prctl with integer arguments.
        check("prctl(PR_SET_DUMPABLE)", unsafe {
            libc::prctl(libc::PR_SET_DUMPABLE, 0, 0, 0, 0)
        })?;
        // SAFETY: as above.
        if unsafe { libc::prctl(libc::PR_GET_DUMPABLE, 0, 0, 0, 0) } != 0 {
            return Err(PrivError::NotDropped("still dumpable".into()));
        }
        // SAFETY: prctl with integer arguments.
        check("prctl(PR_SET_NO_NEW_PRIVS)", unsafe {
            libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0)
        })?;
        // SAFETY: no preconditions.
        let me = unsafe { libc::getpid() };
        for f in &sandbox_filter(me, &self.protected)? {
            seccompiler::apply_filter(f).map_err(|e| PrivError::Filter(e.to_string()))?;
        }
        let st = Status::current()?;
        if !st.is_sandboxed() {
            return Err(PrivError::NotDropped(format!("{st:?}")));
        }
        if let Some(u) = &self.user {
            if st.uids.iter().any(|&x| x != u.uid) || st.gids.iter().any(|&x| x != u.gid) {
                return Err(PrivError::NotDropped(format!(
                    "uids {:?} gids {:?}, expected {}:{}",
                    st.uids, st.gids, u.uid, u.gid
                )));
            }
        }
        if st.uids.contains(&0) {
            return Err(PrivError::NotDropped("still uid 0".into()));
        }
        Ok(st)
    }
}

fn thread_count() -> Result<usize, PrivError> {
    Ok(std::fs::read_dir("/proc/self/task")
        .map_err(sys("reading /proc/self/task"))?
        .count())
}

#[cfg(target_arch = "x86_64")]
const ARCH: seccompiler::TargetArch = seccompiler::TargetArch::x86_64;
#[cfg(target_arch = "aarch64")]
const ARCH: seccompiler::TargetArch = seccompiler::TargetArch::aarch64;

/// The system calls a sandboxed process (the watcher's reader, the probe's
/// sender) may make, with no argument conditions. Measured with `strace -f`
/// on watch and probe runs in namespaces (the capture loop over libpcap's
/// TPACKET_V3 ring, canary sends, netlink queries of the interface monitor,
/// the Tor allowlist thread, the pcapng writer; the sending threads'
/// `sendmmsg` batches and pacing sleeps; the report sent to the monitor) and
/// nothing else: no `execve`, no `connect`, no socket but netlink.
pub const SANDBOX_SYSCALLS: &[i64] = &[
    libc::SYS_read,
    libc::SYS_readv,
    libc::SYS_pread64,
    libc::SYS_lseek,
    libc::SYS_close,
    libc::SYS_fstat,
    libc::SYS_newfstatat,
    libc::SYS_statx,
    libc::SYS_openat,
    libc::SYS_getdents64,
    libc::SYS_readlinkat,
    libc::SYS_ppoll,
    libc::SYS_pselect6,
    libc::SYS_mmap,
    libc::SYS_munmap,
    libc::SYS_mprotect,
    libc::SYS_mremap,
    libc::SYS_madvise,
    libc::SYS_brk,
    libc::SYS_futex,
    libc::SYS_set_robust_list,
    libc::SYS_rseq,
    libc::SYS_sched_yield,
    libc::SYS_sched_getaffinity,
    libc::SYS_getrandom,
    libc::SYS_rt_sigaction,
    libc::SYS_rt_sigprocmask,
    libc::SYS_rt_sigreturn,
    libc::SYS_sigaltstack,
    libc::SYS_clone,
    libc::SYS_clone3,
    libc::SYS_exit,
    libc::SYS_exit_group,
    libc::SYS_getpid,
    libc::SYS_gettid,
    libc::SYS_getuid,
    libc::SYS_geteuid,
    libc::SYS_getgid,
    libc::SYS_getegid,
    libc::SYS_clock_gettime,
    libc::SYS_clock_getres,
    libc::SYS_gettimeofday,
    libc::SYS_clock_nanosleep,
    libc::SYS_nanosleep,
    libc::SYS_bind,
    libc::SYS_getsockname,
    libc::SYS_recvfrom,
    libc::SYS_recvmsg,
    libc::SYS_recvmmsg,
    libc::SYS_getsockopt,
    libc::SYS_setsockopt,
    libc::SYS_shutdown,
    libc::SYS_ftruncate,
    libc::SYS_fsync,
    libc::SYS_fdatasync,
    libc::SYS_uname,
    #[cfg(target_arch = "x86_64")]
    libc::SYS_poll,
    #[cfg(target_arch = "x86_64")]
    libc::SYS_select,
];

/// The sandbox's filters (installed in this order; the kernel
/// applies the strictest answer of all):
///
/// 1. `clone3` fails with `ENOSYS`, so that the C library falls back to
///    `clone`, whose flags a filter can read;
/// 2. [`SANDBOX_SYSCALLS`], plus with their arguments checked: `socket` for
///    route netlink only; `write`, `writev`, `pwrite64`, `sendto`, `sendmsg`
///    and `sendmmsg` on any descriptor but the `protected` ones (the packet
///    sockets kept for reading); `ioctl` for the `SIOCGIF*` reads and a
///    terminal's `TCGETS`/`TIOCGWINSZ`/`FIONREAD` only (never `TIOCSTI`);
///    `fcntl` without `F_DUPFD`; `tgkill` to the process `me` only; `prctl`
///    for `PR_SET_NAME`/`PR_GET_NAME` only; `clone` with `CLONE_THREAD` only
///    (a thread, not a process). Every other call fails with `EPERM`.
///
/// Arguments are compared as 32-bit values (`Dword`): the kernel reads
/// descriptors, ioctl requests and flags as `int`.
pub fn sandbox_filter(me: libc::pid_t, protected: &[i32]) -> Result<Vec<BpfProgram>, PrivError> {
    let ferr = |e: seccompiler::BackendError| PrivError::Filter(e.to_string());
    let cond = |arg: u8, op: SeccompCmpOp, v: u64| {
        SeccompCondition::new(arg, SeccompCmpArgLen::Dword, op, v).map_err(ferr)
    };
    let mut rules: BTreeMap<i64, Vec<SeccompRule>> = SANDBOX_SYSCALLS
        .iter()
        .filter(|&&n| n != libc::SYS_clone)
        .map(|&n| (n, vec![]))
        .collect();
    let rule = |conds: Vec<SeccompCondition>| SeccompRule::new(conds).map_err(ferr);
    // Route netlink only (interface addresses, routes): raw or datagram.
    let netlink = |ty: i32| -> Result<SeccompRule, PrivError> {
        rule(vec![
            cond(0, SeccompCmpOp::Eq, libc::AF_NETLINK as u64)?,
            cond(1, SeccompCmpOp::MaskedEq(0xf), ty as u64)?,
            cond(2, SeccompCmpOp::Eq, libc::NETLINK_ROUTE as u64)?,
        ])
    };
    rules.insert(
        libc::SYS_socket,
        vec![netlink(libc::SOCK_RAW)?, netlink(libc::SOCK_DGRAM)?],
    );
    // Writing and sending, except on the protected descriptors. With none
    // protected the calls are plainly allowed.
    for call in [
        libc::SYS_write,
        libc::SYS_writev,
        libc::SYS_pwrite64,
        libc::SYS_sendto,
        libc::SYS_sendmsg,
        libc::SYS_sendmmsg,
    ] {
        let conds = protected
            .iter()
            .map(|&fd| cond(0, SeccompCmpOp::Ne, fd as u64))
            .collect::<Result<Vec<_>, _>>()?;
        rules.insert(
            call,
            if conds.is_empty() {
                vec![]
            } else {
                vec![rule(conds)?]
            },
        );
    }
    // The interface ioctls of the monitor, and a terminal's size and mode
    // (read only: never TIOCSTI, which would type into the terminal).
    let ioctls = [
        libc::SIOCGIFINDEX,
        libc::SIOCGIFFLAGS,
        libc::SIOCGIFHWADDR,
        libc::SIOCGIFMTU,
        libc::TCGETS,
        libc::TIOCGWINSZ,
        libc::FIONREAD,
    ];
    rules.insert(
        libc::SYS_ioctl,
        ioctls
            .iter()
            // The request's type is c_ulong on glibc and c_int on musl.
            .map(|&r| {
                #[allow(clippy::unnecessary_cast)]
                let r = r as u64;
                rule(vec![cond(1, SeccompCmpOp::Eq, r & 0xffff_ffff)?])
            })
            .collect::<Result<_, _>>()?,
    );
    // fcntl without F_DUPFD*: no new number for a protected descriptor.
    rules.insert(
        libc::SYS_fcntl,
        [libc::F_GETFD, libc::F_SETFD, libc::F_GETFL, libc::F_SETFL]
            .iter()
            .map(|&c| rule(vec![cond(1, SeccompCmpOp::Eq, c as u64)?]))
            .collect::<Result<_, _>>()?,
    );
    // Signals to its own threads only (a panic's abort).
    rules.insert(
        libc::SYS_tgkill,
        vec![rule(vec![cond(0, SeccompCmpOp::Eq, me as u64)?])?],
    );
    rules.insert(
        libc::SYS_prctl,
        vec![
            SeccompRule::new(vec![cond(0, SeccompCmpOp::Eq, libc::PR_SET_NAME as u64)?])
                .map_err(ferr)?,
            SeccompRule::new(vec![cond(0, SeccompCmpOp::Eq, libc::PR_GET_NAME as u64)?])
                .map_err(ferr)?,
        ],
    );
    rules.insert(
        libc::SYS_clone,
        vec![SeccompRule::new(vec![cond(
            0,
            SeccompCmpOp::MaskedEq(libc::CLONE_THREAD as u64),
            libc::CLONE_THREAD as u64,
        )?])
        .map_err(ferr)?],
    );
    let main = SeccompFilter::new(
        rules,
        SeccompAction::Errno(libc::EPERM as u32),
        SeccompAction::Allow,
        ARCH,
    )
    .map_err(ferr)?;
    let clone3 = SeccompFilter::new(
        [(libc::SYS_clone3, vec![])].into_iter().collect(),
        SeccompAction::Allow,
        SeccompAction::Errno(libc::ENOSYS as u32),
        ARCH,
    )
    .map_err(ferr)?;
    // The allowlist last: installing a filter calls prctl(PR_SET_NO_NEW_PRIVS),
    // which the allowlist itself refuses.
    Ok(vec![
        clone3.try_into().map_err(ferr)?,
        main.try_into().map_err(ferr)?,
    ])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_lines() {
        let t = "Name:\tleaktest\nUid:\t65534\t65534\t65534\t65534\nGid:\t65534\t65534\t65534\t65534\n\
                 CapInh:\t0000000000000000\nCapPrm:\t0000000000000000\nCapEff:\t0000000000000000\n\
                 CapBnd:\t0000000000000000\nCapAmb:\t0000000000000000\nNoNewPrivs:\t1\nSeccomp:\t2\n";
        let s = Status::parse(t);
        assert_eq!(s.uids, [65534; 4]);
        assert!(s.is_sandboxed());
        let root = t.replace("CapEff:\t0000000000000000", "CapEff:\t000001ffffffffff");
        assert!(!Status::parse(&root).is_sandboxed());
        let no_filter = t.replace("Seccomp:\t2", "Seccomp:\t0");
        assert!(!Status::parse(&no_filter).is_sandboxed());
        // A field that does not parse is never "no capabilities".
        let junk = t.replace("CapPrm:\t0000000000000000", "CapPrm:\tzz");
        assert!(!Status::parse(&junk).is_sandboxed());
    }

    #[test]
    fn users_resolve_by_name_and_number() {
        let n = User::resolve("nobody").unwrap();
        assert_eq!(n.uid, 65534);
        // A uid with no passwd entry works, with the group of the same number.
        let bare = User::resolve("4000123").unwrap();
        assert_eq!((bare.uid, bare.gid), (4_000_123, 4_000_123));
        assert!(matches!(User::resolve("0"), Err(PrivError::RootTarget)));
        assert!(matches!(User::resolve("root"), Err(PrivError::RootTarget)));
        assert!(matches!(
            User::resolve("no-such-user-lt"),
            Err(PrivError::NoSuchUser(_))
        ));
    }

    #[test]
    fn control_characters_are_made_visible() {
        use std::io::Write;
        let mut w = Sanitized::new(Vec::new());
        w.write_all(b"ok \x1b]0;title\x07\x1b[2J\tA\n\x7f \xc2")
            .unwrap();
        // A C1 control split over two writes, and a real U+00E9 after it.
        w.write_all(b"\x9b x \xc3\xa9").unwrap();
        w.flush().unwrap();
        let out = String::from_utf8(w.inner).unwrap();
        assert_eq!(
            out,
            "ok \\x1b]0;title\\x07\\x1b[2J\tA\n\\x7f \\xc2\\x9b x \u{e9}"
        );
    }

    #[test]
    fn the_filter_compiles() {
        assert_eq!(sandbox_filter(1, &[]).unwrap().len(), 2);
        assert_eq!(sandbox_filter(1, &[3, 4]).unwrap().len(), 2);
    }
}

/// Which side of [`separate`] the caller is on.
#[derive(Debug)]
pub enum Side {
    /// The privileged parent: keeps what needs root, never reads a frame.
    Monitor(Monitor),
    /// The child that drops privilege and reads frames.
    Reader(Reader),
}

/// Forks the calling process (which must be single-threaded) into a
/// privileged monitor and a reader joined by a pipe. The reader starts a
/// session of its own (no controlling terminal), so a Ctrl-C reaches the
/// monitor alone, which passes it on ([`Monitor::signal`]).
pub fn separate(relay_stdio: bool) -> Result<Side, PrivError> {
    let threads = thread_count()?;
    if threads != 1 {
        return Err(PrivError::Threads(threads));
    }
    // With `relay_stdio` the reader gets /dev/null as its input and pipes as
    // its output, which the monitor copies to its own with control
    // characters made visible ([`Sanitized`]): the reader never touches the
    // operator's terminal (no keystrokes read, no escape sequences written).
    let stdio = if relay_stdio {
        let null = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open("/dev/null")
            .map_err(sys("opening /dev/null"))?;
        Some((null, pipe()?, pipe()?))
    } else {
        None
    };
    let mut fds = [0; 2];
    // A stream socket pair: messages both ways (reports and canaries up,
    // Tor allowlist updates down).
    // SAFETY: fds has room for two descriptors.
    check("socketpair", unsafe {
        libc::socketpair(
            libc::AF_UNIX,
            libc::SOCK_STREAM | libc::SOCK_CLOEXEC,
            0,
            fds.as_mut_ptr(),
        )
    })?;
    // SAFETY: both descriptors were just created and are owned here alone.
    let (up, down) = unsafe {
        use std::os::fd::FromRawFd;
        (
            std::os::fd::OwnedFd::from_raw_fd(fds[0]),
            std::os::fd::OwnedFd::from_raw_fd(fds[1]),
        )
    };
    // SAFETY: no preconditions.
    let parent = unsafe { libc::getpid() };
    // SAFETY: the process is single-threaded (checked above), so the child
    // may run ordinary code.
    let pid = unsafe { libc::fork() };
    match pid {
        -1 => Err(PrivError::Sys {
            op: "fork",
            source: std::io::Error::last_os_error(),
        }),
        0 => {
            drop(up);
            if let Some((null, (_, out), (_, err))) = &stdio {
                use std::os::fd::AsRawFd;
                // SAFETY: dup2 onto the standard descriptors of this process.
                unsafe {
                    libc::dup2(null.as_raw_fd(), 0);
                    libc::dup2(out.as_raw_fd(), 1);
                    libc::dup2(err.as_raw_fd(), 2);
                }
            }
            drop(stdio);
            // A session of its own: no controlling terminal (so no TIOCSTI
            // into it and no job-control stops), and a Ctrl-C reaches the
            // monitor alone.
            // SAFETY: setsid on the calling process.
            unsafe { libc::setsid() };
            Ok(Side::Reader(Reader {
                chan: Channel::new(down),
                parent,
            }))
        }
        child => {
            drop(down);
            let mut relays = Vec::new();
            if let Some((_, (out_r, out_w), (err_r, err_w))) = stdio {
                drop((out_w, err_w));
                relays.push(relay(out_r, || Box::new(std::io::stdout())));
                relays.push(relay(err_r, || Box::new(std::io::stderr())));
            }
            Ok(Side::Monitor(Monitor {
                child,
                chan: Channel::new(up),
                relays,
            }))
        }
    }
}

fn pipe() -> Result<(std::os::fd::OwnedFd, std::os::fd::OwnedFd), PrivError> {
    let mut fds = [0; 2];
    // SAFETY: fds has room for two descriptors.
    check("pipe2", unsafe {
        libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC)
    })?;
    // SAFETY: both were just created and are owned here alone.
    Ok(unsafe {
        use std::os::fd::FromRawFd;
        (
            std::os::fd::OwnedFd::from_raw_fd(fds[0]),
            std::os::fd::OwnedFd::from_raw_fd(fds[1]),
        )
    })
}

/// Copies what the reader writes on `from` to `to()` through [`Sanitized`],
/// until the reader closes it.
fn relay(
    from: std::os::fd::OwnedFd,
    to: fn() -> Box<dyn std::io::Write + Send>,
) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        let mut src = std::fs::File::from(from);
        let mut dst = Sanitized::new(to());
        let _ = std::io::copy(&mut src, &mut dst);
        let _ = std::io::Write::flush(&mut dst);
    })
}

/// A writer that makes control characters visible: every C0 control but
/// newline and tab, DEL, and the C1 controls (UTF-8 `0xc2 0x80..=0x9f`)
/// become `\xNN`. For text from a less trusted source (the sandboxed
/// reader's output, a report read from a file) on the way to a terminal,
/// where an escape sequence could clear the screen, fake a verdict or set
/// the window title.
pub struct Sanitized<W: std::io::Write> {
    inner: W,
    /// A `0xc2` held back: it may start a C1 control.
    pending_c2: bool,
}

impl<W: std::io::Write> Sanitized<W> {
    pub fn new(inner: W) -> Sanitized<W> {
        Sanitized {
            inner,
            pending_c2: false,
        }
    }
}

impl<W: std::io::Write> std::io::Write for Sanitized<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let mut out = Vec::with_capacity(buf.len() + 8);
        for &b in buf {
            if self.pending_c2 {
                self.pending_c2 = false;
                if (0x80..=0x9f).contains(&b) {
                    out.extend_from_slice(format!("\\xc2\\x{b:02x}").as_bytes());
                    continue;
                }
                out.push(0xc2);
            }
            match b {
                b'\n' | b'\t' => out.push(b),
                0x00..=0x1f | 0x7f => out.extend_from_slice(format!("\\x{b:02x}").as_bytes()),
                0xc2 => self.pending_c2 = true,
                _ => out.push(b),
            }
        }
        self.inner.write_all(&out)?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        if std::mem::take(&mut self.pending_c2) {
            self.inner.write_all(&[0xc2])?;
        }
        self.inner.flush()
    }
}

/// One end of the monitor/reader socket pair: messages of one line each.
#[derive(Debug)]
pub struct Channel {
    fd: std::os::fd::OwnedFd,
    buf: Vec<u8>,
}

impl Channel {
    fn new(fd: std::os::fd::OwnedFd) -> Channel {
        Channel {
            fd,
            buf: Vec::new(),
        }
    }

    /// Sends one message (a line; `msg` must not hold a newline). Plain
    /// `write(2)` calls on the descriptor: nothing the sandbox refuses.
    pub fn send(&self, msg: &[u8]) -> std::io::Result<()> {
        debug_assert!(!msg.contains(&b'\n'));
        self.write_all(msg)?;
        self.write_all(b"\n")
    }

    /// Sends one message written by `f` straight onto the descriptor (no
    /// copy of a large message in memory), then the newline that ends it.
    /// `f` must not write a newline (compact JSON has none).
    pub fn send_with(
        &self,
        f: impl FnOnce(&mut dyn std::io::Write) -> std::io::Result<()>,
    ) -> std::io::Result<()> {
        struct Raw<'a>(&'a Channel);
        impl std::io::Write for Raw<'_> {
            fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
                self.0.write_all(buf)?;
                Ok(buf.len())
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        let mut w = std::io::BufWriter::with_capacity(64 * 1024, Raw(self));
        f(&mut w)?;
        std::io::Write::flush(&mut w)?;
        drop(w);
        self.write_all(b"\n")
    }

    fn write_all(&self, buf: &[u8]) -> std::io::Result<()> {
        use std::os::fd::AsRawFd;
        let mut rest = buf;
        while !rest.is_empty() {
            // SAFETY: rest is readable for its length.
            let n = unsafe { libc::write(self.fd.as_raw_fd(), rest.as_ptr().cast(), rest.len()) };
            if n < 0 {
                let e = std::io::Error::last_os_error();
                if e.kind() == std::io::ErrorKind::Interrupted {
                    continue;
                }
                return Err(e);
            }
            rest = &rest[n as usize..];
        }
        Ok(())
    }

    /// The next message, waiting at most `timeout` (zero: only what is
    /// there already). A message longer than [`MAX_MESSAGE`] is an error.
    pub fn recv(&mut self, timeout: std::time::Duration) -> std::io::Result<Recv> {
        use std::os::fd::AsRawFd;
        loop {
            if let Some(i) = self.buf.iter().position(|&b| b == b'\n') {
                // The message keeps the buffer (no copy of a large one); what
                // follows it moves to a new buffer.
                let rest = self.buf.split_off(i + 1);
                let mut line = std::mem::replace(&mut self.buf, rest);
                line.pop();
                return Ok(Recv::Message(line));
            }
            let mut pfd = libc::pollfd {
                fd: self.fd.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            };
            let ms = timeout.as_millis().min(i32::MAX as u128) as i32;
            // SAFETY: one valid pollfd.
            let r = unsafe { libc::poll(&mut pfd, 1, ms) };
            if r < 0 {
                let e = std::io::Error::last_os_error();
                if e.kind() == std::io::ErrorKind::Interrupted {
                    return Ok(Recv::Timeout);
                }
                return Err(e);
            }
            if r == 0 {
                return Ok(Recv::Timeout);
            }
            let mut chunk = vec![0u8; 64 * 1024];
            // SAFETY: chunk is writable for its length.
            let n =
                unsafe { libc::read(self.fd.as_raw_fd(), chunk.as_mut_ptr().cast(), chunk.len()) };
            if n < 0 {
                let e = std::io::Error::last_os_error();
                if e.kind() == std::io::ErrorKind::Interrupted {
                    continue;
                }
                return Err(e);
            }
            if n == 0 {
                return Ok(Recv::Closed);
            }
            self.buf.extend_from_slice(&chunk[..n as usize]);
            if self.buf.len() > MAX_MESSAGE {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::InvalidData,
                    format!("a message longer than {MAX_MESSAGE} bytes"),
                ));
            }
        }
    }
}

/// The reader's end.
#[derive(Debug)]
pub struct Reader {
    chan: Channel,
    parent: libc::pid_t,
}

impl Reader {
    /// Enters `sandbox` (see [`Sandbox::enter`]), failing if the monitor is
    /// already gone.
    pub fn enter(&self, sandbox: &mut Sandbox) -> Result<Status, PrivError> {
        sandbox.parent = Some(self.parent);
        sandbox.enter()
    }

    /// Sends one message to the monitor ([`Channel::send`]).
    pub fn send(&self, msg: &[u8]) -> std::io::Result<()> {
        self.chan.send(msg)
    }

    /// Sends one message written by `f` ([`Channel::send_with`]).
    pub fn send_with(
        &self,
        f: impl FnOnce(&mut dyn std::io::Write) -> std::io::Result<()>,
    ) -> std::io::Result<()> {
        self.chan.send_with(f)
    }

    /// The next message from the monitor ([`Channel::recv`]).
    pub fn recv(&mut self, timeout: std::time::Duration) -> std::io::Result<Recv> {
        self.chan.recv(timeout)
    }
}

/// What [`Channel::recv`] got.
#[derive(Debug, PartialEq, Eq)]
pub enum Recv {
    Message(Vec<u8>),
    /// Nothing within the timeout.
    Timeout,
    /// The other end closed (its process exited).
    Closed,
}

/// How the reader ended ([`Monitor::wait`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ended {
    Exited(i32),
    Signaled(i32),
}

/// The longest message the monitor accepts (a watch report of hundreds of
/// thousands of leaks is a few MiB): a reader cannot make the privileged
/// monitor grow without bound.
pub const MAX_MESSAGE: usize = 64 << 20;

/// The monitor's end.
#[derive(Debug)]
pub struct Monitor {
    child: libc::pid_t,
    chan: Channel,
    /// The threads copying the reader's output ([`separate`]'s `relay_stdio`).
    relays: Vec<std::thread::JoinHandle<()>>,
}

impl Monitor {
    /// The reader's PID.
    pub fn reader_pid(&self) -> u32 {
        self.child as u32
    }

    /// The next message from the reader, waiting at most `timeout`.
    pub fn recv(&mut self, timeout: std::time::Duration) -> std::io::Result<Recv> {
        self.chan.recv(timeout)
    }

    /// Sends one message to the reader (blocking while its socket is full;
    /// see [`Monitor::sender`]).
    pub fn send(&self, msg: &[u8]) -> std::io::Result<()> {
        self.chan.send(msg)
    }

    /// A second handle on the channel for sending from another thread, so
    /// that a large message to a busy reader never stops the monitor from
    /// reading what the reader sends meanwhile.
    pub fn sender(&self) -> std::io::Result<Channel> {
        Ok(Channel::new(self.chan.fd.try_clone()?))
    }

    /// How the reader ended, if it has.
    pub fn try_wait(&self) -> std::io::Result<Option<Ended>> {
        let mut st = 0;
        // SAFETY: waitpid of our own child, without blocking.
        let r = unsafe { libc::waitpid(self.child, &mut st, libc::WNOHANG) };
        if r < 0 {
            return Err(std::io::Error::last_os_error());
        }
        if r == 0 {
            return Ok(None);
        }
        Ok(Some(ended(st)))
    }

    /// Waits at most `grace` for the reader to end, then kills it (SIGKILL)
    /// and reaps it: a reader that ignores SIGTERM or closed its pipe and
    /// kept running cannot hold the monitor.
    pub fn end(self, grace: std::time::Duration) -> std::io::Result<Ended> {
        let deadline = std::time::Instant::now() + grace;
        while std::time::Instant::now() < deadline {
            if let Some(e) = self.try_wait()? {
                return Ok(e);
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        self.signal(libc::SIGKILL);
        self.wait()
    }

    /// Sends `sig` to the reader.
    pub fn signal(&self, sig: i32) {
        // SAFETY: kill of our own child, by PID.
        unsafe { libc::kill(self.child, sig) };
    }

    /// Waits for the reader to end.
    pub fn wait(mut self) -> std::io::Result<Ended> {
        let mut st = 0;
        loop {
            // SAFETY: waitpid of our own child.
            let r = unsafe { libc::waitpid(self.child, &mut st, 0) };
            if r == self.child {
                break;
            }
            let e = std::io::Error::last_os_error();
            if e.kind() != std::io::ErrorKind::Interrupted {
                return Err(e);
            }
        }
        // Everything the reader printed is out before the monitor goes on.
        for h in self.relays.drain(..) {
            let _ = h.join();
        }
        Ok(ended(st))
    }
}

fn ended(st: libc::c_int) -> Ended {
    if libc::WIFEXITED(st) {
        Ended::Exited(libc::WEXITSTATUS(st))
    } else {
        Ended::Signaled(libc::WTERMSIG(st))
    }
}
