//! The seed's Step 0 / Step 9 done safely: restrict Tor to ports 80 and 443 at run time
//! (`ReachableDirAddresses *:80`, `ReachableORAddresses *:443`, `FascistFirewall 1`, as Whonix
//! also sets) through `SETCONF`, with the previous values written to a journal *first*, so that
//! a crash or `kill -9` never leaves Tor restricted: every leaktest start calls
//! [`recover_leftover`], which restores a journal whose owner is gone.
//!
//! With the Tor-aware allowlist this restriction is unnecessary; it also changes which guards
//! Tor picks (only relays on 80/443 qualify), so use it only to reproduce the seed's procedure.
//!
//! The journal (JSON, mode 0600, in `$LEAKTEST_STATE_DIR` or `/var/lib/leaktest`, one per
//! network namespace: `tor-restrict-net<INODE>.json`) records the previous values, the owner's
//! pid and start time, how to reach the control port (address or path, authentication method,
//! and for password authentication only the *name* of the environment variable holding it —
//! never a secret), and whose restriction it is: the network namespace (the inode of
//! `/proc/self/ns/net`) and the Tor process (`GETINFO process/pid`, control-spec section 3.9,
//! with its start time from `/proc/PID/stat`).
//!
//! A journal is only ever applied to the Tor it was written for. The same control address can
//! lead to another Tor (another namespace's, or a Tor started since); then:
//! * another namespace's journal is left alone ([`TorError::OtherNamespace`]);
//! * a journal whose Tor still runs but is not the one answering is refused
//!   ([`TorError::OtherTor`]) and kept;
//! * a journal whose Tor has exited is obsolete (a `SETCONF` lives only as long as the Tor
//!   process; nothing was saved to its torrc) and is deleted without touching any Tor.
//!
//! ## Using [`RestrictGuard`] from a watch session with signal handling
//! Restore on drop must run in normal code, not in a signal handler (it does I/O and takes
//! locks). Install SIGINT/SIGTERM handlers that only set a flag (`signal_hook::flag::register`),
//! create the guard with [`RestrictGuard::restrict`] before the capture starts, let the capture
//! loop end when the flag is set, then call [`RestrictGuard::restore`] (to report a failure) or
//! simply drop the guard; a panic unwinding through the session drops it too. Only `kill -9`
//! or a crash skips it, and the next leaktest start repairs that.

use crate::auth::AuthMethod;
use crate::client::{ConnectOptions, ControlTarget, Controller};
use crate::error::{Result, TorError};
use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

/// The options changed and the values they get.
pub const RESTRICTION: [(&str, &str); 3] = [
    ("ReachableDirAddresses", "*:80"),
    ("ReachableORAddresses", "*:443"),
    ("FascistFirewall", "1"),
];

/// Default state directory (overridden by `LEAKTEST_STATE_DIR`).
pub const DEFAULT_STATE_DIR: &str = "/var/lib/leaktest";
/// Journal file name inside the state directory, for the network namespace whose
/// `/proc/self/ns/net` has inode `netns` (the initial namespace's is 4026531840 on Linux).
pub fn journal_file(netns: u64) -> String {
    format!("tor-restrict-net{netns}.json")
}
/// The version written; version 1 (no owner identity) is still read.
const JOURNAL_VERSION: u32 = 2;
/// The largest journal read (a journal is a few hundred bytes).
pub const MAX_JOURNAL_BYTES: u64 = 64 * 1024;

/// The inode of this process's network namespace (`/proc/self/ns/net`), which names it for
/// as long as it exists.
pub fn current_netns() -> Option<u64> {
    use std::os::unix::fs::MetadataExt;
    fs::metadata("/proc/self/ns/net").ok().map(|m| m.ino())
}

/// The state directory: `$LEAKTEST_STATE_DIR`, else `/var/lib/leaktest`.
pub fn state_dir() -> PathBuf {
    std::env::var_os("LEAKTEST_STATE_DIR")
        .filter(|d| !d.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(DEFAULT_STATE_DIR))
}

/// This network namespace's journal: `STATE_DIR/tor-restrict-net<INODE>.json`.
pub fn default_journal_path() -> PathBuf {
    state_dir().join(journal_file(current_netns().unwrap_or(0)))
}

/// Who is responsible for restoring.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum JournalMode {
    /// A running leaktest (watch `--restrict-tor`) restores when it ends; if it died, the next
    /// leaktest start restores.
    Guard,
    /// `leaktest tor restrict`: stays until `leaktest tor restore`.
    Manual,
}

/// One option's value before the restriction.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct PreviousValue {
    pub key: String,
    /// The GETCONF values, in order (empty when unset).
    pub values: Vec<String>,
    /// Not set in Tor's configuration: restored with RESETCONF.
    pub was_default: bool,
}

/// How to reach the control port again.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ControlRecord {
    pub target: ControlTarget,
    /// The method that worked (`NULL`, `COOKIE`, `SAFECOOKIE`, `HASHEDPASSWORD`).
    pub auth: Option<String>,
    /// For password authentication: the environment variable to read it from again.
    pub password_env: Option<String>,
}

/// The Tor process a journal restricted.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct TorIdentity {
    /// `GETINFO process/pid`.
    pub pid: u32,
    /// Its start time in clock ticks since boot (`/proc/PID/stat` field 22), when visible.
    pub process_start: Option<u64>,
    /// Tor's version (PROTOCOLINFO), for messages.
    pub version: Option<String>,
}

/// How the Tor answering a control port relates to the one a journal restricted.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TorMatch {
    /// The same process (or a version-1 journal, which does not record it).
    Same,
    /// Another Tor answers, and the restricted one still runs.
    Other { restricted: u32, answering: u32 },
    /// The restricted Tor has exited: its run-time restriction went with it.
    Gone { restricted: u32 },
}

/// The journal file's content.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Journal {
    pub version: u32,
    pub pid: u32,
    /// The owner's start time in clock ticks since boot (`/proc/PID/stat` field 22), so a
    /// recycled pid is not mistaken for the owner.
    pub process_start: Option<u64>,
    pub process_name: Option<String>,
    pub mode: JournalMode,
    pub created_unix: u64,
    pub control: ControlRecord,
    pub previous: Vec<PreviousValue>,
    /// The network namespace (inode) it was written in; `None` in version 1.
    #[serde(default)]
    pub netns: Option<u64>,
    /// The Tor it restricted; `None` in version 1.
    #[serde(default)]
    pub tor: Option<TorIdentity>,
}

fn journal_err(path: &Path, message: impl Into<String>) -> TorError {
    TorError::Journal {
        path: path.to_path_buf(),
        message: message.into(),
    }
}

/// (state, start time, name) of a process from `/proc/PID/stat`.
fn proc_stat(pid: u32) -> Option<(char, u64, String)> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let open = stat.find('(')?;
    let close = stat.rfind(')')?;
    let name = stat.get(open + 1..close)?.to_string();
    let fields: Vec<&str> = stat.get(close + 1..)?.split_ascii_whitespace().collect();
    // fields[0] is field 3 (state); field 22 (starttime) is fields[19].
    let state = fields.first()?.chars().next()?;
    let start = fields.get(19)?.parse().ok()?;
    Some((state, start, name))
}

impl Journal {
    /// Reads the journal; `Ok(None)` if there is none. Only a regular file of at most
    /// [`MAX_JOURNAL_BYTES`] is read.
    pub fn load(path: &Path) -> Result<Option<Journal>> {
        if let Err(e) = fs::symlink_metadata(path) {
            if e.kind() == std::io::ErrorKind::NotFound {
                return Ok(None);
            }
        }
        // Only a journal this user wrote is trusted: it names a control port
        // to connect to (with the cookie) and settings to apply there, so one
        // planted by another user (a group-writable state directory, a
        // sandboxed process) must never be acted on.
        if let Ok(m) = fs::symlink_metadata(path) {
            use std::os::unix::fs::{MetadataExt, PermissionsExt};
            // SAFETY: no preconditions.
            let me = unsafe { libc::geteuid() };
            if m.uid() != me || m.permissions().mode() & 0o022 != 0 {
                return Err(journal_err(
                    path,
                    format!(
                        "not trusted: owned by uid {} with mode {:o}, not written by this user \
                         (uid {me}); left alone. Delete it if you did not write it",
                        m.uid(),
                        m.permissions().mode() & 0o7777
                    ),
                ));
            }
        }
        let text = leaktest_fs::read_bounded_string("journal", path, MAX_JOURNAL_BYTES)
            .map_err(|e| journal_err(path, format!("cannot read: {e}")))?;
        let j: Journal = serde_json::from_str(&text).map_err(|e| {
            journal_err(
                path,
                format!("unreadable ({e}); inspect it; `leaktest tor restore --forget` deletes it"),
            )
        })?;
        if !(1..=JOURNAL_VERSION).contains(&j.version) {
            return Err(journal_err(
                path,
                format!("unknown journal version {}", j.version),
            ));
        }
        Ok(Some(j))
    }

    /// Writes the journal durably: temporary file, fsync, rename, fsync of the directory.
    pub fn store(&self, path: &Path) -> Result<()> {
        let err = |m: String| journal_err(path, m);
        let dir = path
            .parent()
            .filter(|d| !d.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(|e| err(format!("cannot create {}: {e}", dir.display())))?;
        let tmp = path.with_extension(format!("tmp.{}", std::process::id()));
        let text = serde_json::to_string_pretty(self).map_err(|e| err(e.to_string()))?;
        let write = || -> std::io::Result<()> {
            let mut f = OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .mode(0o600)
                .open(&tmp)?;
            f.write_all(text.as_bytes())?;
            f.write_all(b"\n")?;
            f.sync_all()?;
            fs::rename(&tmp, path)?;
            File::open(dir)?.sync_all()
        };
        write().map_err(|e| {
            let _ = fs::remove_file(&tmp);
            err(format!("cannot write: {e}"))
        })
    }

    /// Deletes the journal at `path` (and syncs its directory); no error if it is gone.
    pub fn remove(path: &Path) -> Result<()> {
        remove_journal(path)
    }

    /// Whether this journal belongs to another network namespace than this process's.
    pub fn other_namespace(&self) -> bool {
        matches!((self.netns, current_netns()), (Some(a), Some(b)) if a != b)
    }

    /// The error for a journal of another namespace.
    fn namespace_error(&self, path: &Path) -> TorError {
        TorError::OtherNamespace {
            path: path.to_path_buf(),
            netns: self.netns.unwrap_or(0),
            ours: current_netns().unwrap_or(0),
        }
    }

    /// How the Tor behind `ctl` relates to the one this journal restricted.
    pub fn match_tor(&self, ctl: &mut Controller) -> Result<TorMatch> {
        let Some(t) = &self.tor else {
            return Ok(TorMatch::Same);
        };
        let now = tor_identity(ctl)?;
        let same_start = match (t.process_start, now.process_start) {
            (Some(a), Some(b)) => a == b,
            _ => true,
        };
        if now.pid == t.pid && same_start {
            return Ok(TorMatch::Same);
        }
        Ok(if !self.tor_exited() {
            TorMatch::Other {
                restricted: t.pid,
                answering: now.pid,
            }
        } else {
            TorMatch::Gone { restricted: t.pid }
        })
    }

    /// True when the Tor this journal restricted has certainly exited: its pid is gone or
    /// belongs to a younger process. (Only known when its start time was visible in this
    /// process's `/proc` when the journal was written, i.e. the same pid namespace.)
    pub fn tor_exited(&self) -> bool {
        let Some(TorIdentity {
            pid,
            process_start: Some(start),
            ..
        }) = &self.tor
        else {
            return false;
        };
        match proc_stat(*pid) {
            None | Some(('Z', _, _)) | Some(('X', _, _)) => true,
            Some((_, s, _)) => s != *start,
        }
    }

    /// True when the process that wrote this journal still runs (same pid *and* start time).
    pub fn owner_alive(&self) -> bool {
        match proc_stat(self.pid) {
            None => false,
            Some(('Z', _, _)) | Some(('X', _, _)) => false,
            Some((_, start, name)) => match self.process_start {
                Some(s) => s == start,
                None => self.process_name.as_deref() == Some(name.as_str()),
            },
        }
    }
}

/// The identity of the Tor behind `ctl`: `GETINFO process/pid` and that process's start time.
pub fn tor_identity(ctl: &mut Controller) -> Result<TorIdentity> {
    let text = ctl.getinfo_one("process/pid")?;
    let pid: u32 = text
        .trim()
        .parse()
        .map_err(|_| TorError::Protocol(format!("process/pid is {text:?}, not a number")))?;
    Ok(TorIdentity {
        pid,
        process_start: proc_stat(pid).map(|s| s.1),
        version: ctl
            .protocol_info_cached()
            .and_then(|p| p.tor_version.clone()),
    })
}

/// Removes the journal (and syncs its directory).
fn remove_journal(path: &Path) -> Result<()> {
    match fs::remove_file(path) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(journal_err(path, format!("cannot delete: {e}"))),
    }
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        if let Ok(d) = File::open(dir) {
            let _ = d.sync_all();
        }
    }
    Ok(())
}

/// Options set in Tor's configuration (`GETINFO config-text` lists those that differ from the
/// defaults).
fn configured_keys(ctl: &mut Controller) -> Result<Vec<String>> {
    let text = ctl.getinfo_one("config-text")?;
    Ok(text
        .lines()
        .filter_map(|l| l.split_ascii_whitespace().next())
        .map(str::to_ascii_lowercase)
        .collect())
}

/// Reads the current values of the restricted options.
pub fn current_values(ctl: &mut Controller) -> Result<Vec<PreviousValue>> {
    let configured = configured_keys(ctl)?;
    let keys: Vec<&str> = RESTRICTION.iter().map(|(k, _)| *k).collect();
    let values = ctl.getconf(&keys)?;
    Ok(keys
        .iter()
        .map(|key| {
            let vals: Vec<String> = values
                .iter()
                .filter(|(k, _)| k.eq_ignore_ascii_case(key))
                .filter_map(|(_, v)| v.clone())
                .collect();
            let was_default = vals.is_empty() || !configured.contains(&key.to_ascii_lowercase());
            PreviousValue {
                key: key.to_string(),
                values: vals,
                was_default,
            }
        })
        .collect())
}

/// Records the current values in the journal (fsynced), then applies the restriction.
/// Refuses if a journal already exists.
pub fn restrict(ctl: &mut Controller, journal_path: &Path, mode: JournalMode) -> Result<Journal> {
    if let Some(j) = Journal::load(journal_path)? {
        return Err(TorError::AlreadyRestricted {
            path: journal_path.to_path_buf(),
            pid: j.pid,
        });
    }
    let previous = current_values(ctl)?;
    // A control port that refuses `process/pid` (a filtering proxy) still gets a journal,
    // without the Tor's identity (then restored to whichever Tor answers, as in version 1).
    let tor = match tor_identity(ctl) {
        Ok(t) => Some(t),
        Err(TorError::Refused { .. }) => None,
        Err(e) => return Err(e),
    };
    let me = proc_stat(std::process::id());
    let journal = Journal {
        version: JOURNAL_VERSION,
        pid: std::process::id(),
        process_start: me.as_ref().map(|m| m.1),
        process_name: me.map(|m| m.2),
        mode,
        created_unix: SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0),
        control: ControlRecord {
            target: ctl.target().clone(),
            auth: ctl.auth_method().map(|m| m.to_string()),
            password_env: ctl.password_env().map(str::to_string),
        },
        previous,
        netns: current_netns(),
        tor,
    };
    journal.store(journal_path)?;
    let pairs: Vec<(&str, Option<&str>)> =
        RESTRICTION.iter().map(|(k, v)| (*k, Some(*v))).collect();
    if let Err(e) = ctl.setconf(&pairs) {
        // Tor refused: nothing changed, and the journal would only cause a pointless restore.
        // Any other failure (timeout, lost connection) may have happened after Tor applied
        // the change, so the journal stays and a later restore puts the old values back.
        if matches!(e, TorError::Refused { .. }) {
            let _ = remove_journal(journal_path);
        }
        return Err(e);
    }
    Ok(journal)
}

/// Puts the journal's values back in one atomic `RESETCONF` (bare keys for options that were
/// default, `Key=value` for the others) and checks with `GETCONF` that they are back exactly.
pub fn apply_previous(ctl: &mut Controller, previous: &[PreviousValue]) -> Result<()> {
    let mut pairs: Vec<(&str, Option<&str>)> = Vec::new();
    for p in previous {
        if p.was_default || p.values.is_empty() {
            pairs.push((&p.key, None));
        } else {
            pairs.extend(p.values.iter().map(|v| (p.key.as_str(), Some(v.as_str()))));
        }
    }
    if pairs.is_empty() {
        return Ok(());
    }
    ctl.resetconf(&pairs)?;
    let keys: Vec<&str> = previous.iter().map(|p| p.key.as_str()).collect();
    let now = ctl.getconf(&keys)?;
    for p in previous {
        let got: Vec<String> = now
            .iter()
            .filter(|(k, _)| k.eq_ignore_ascii_case(&p.key))
            .filter_map(|(_, v)| v.clone())
            .collect();
        if got != p.values {
            return Err(TorError::Protocol(format!(
                "after restoring, {} is {:?}, expected {:?}",
                p.key, got, p.values
            )));
        }
    }
    Ok(())
}

/// What [`restore`] did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Restored {
    /// There was no journal.
    Nothing,
    /// The previous values are back; the journal is deleted.
    Applied(Journal),
    /// The restricted Tor has exited, so there was nothing to put back (a `SETCONF` does not
    /// outlive the process); the journal is deleted and no Tor was changed.
    TorGone(Journal),
}

impl Restored {
    /// The journal, unless there was none.
    pub fn journal(&self) -> Option<&Journal> {
        match self {
            Restored::Nothing => None,
            Restored::Applied(j) | Restored::TorGone(j) => Some(j),
        }
    }
}

/// Restores from the journal at `journal_path` over `ctl` and deletes the journal, but only
/// for the Tor and network namespace it was written for: a journal of another namespace is
/// refused ([`TorError::OtherNamespace`]), and so is one whose Tor still runs while another
/// answers `ctl` ([`TorError::OtherTor`]); both are kept.
pub fn restore(ctl: &mut Controller, journal_path: &Path) -> Result<Restored> {
    let Some(j) = Journal::load(journal_path)? else {
        return Ok(Restored::Nothing);
    };
    if j.other_namespace() {
        return Err(j.namespace_error(journal_path));
    }
    match j.match_tor(ctl)? {
        TorMatch::Same => {}
        TorMatch::Other {
            restricted,
            answering,
        } => {
            return Err(TorError::OtherTor {
                path: journal_path.to_path_buf(),
                target: ctl.target().to_string(),
                restricted,
                answering,
            })
        }
        TorMatch::Gone { .. } => {
            remove_journal(journal_path)?;
            return Ok(Restored::TorGone(j));
        }
    }
    apply_previous(ctl, &j.previous)?;
    remove_journal(journal_path)?;
    Ok(Restored::Applied(j))
}

/// Connection options to reach the Tor a journal was written for: its recorded target (unless
/// `target` overrides it) and, for password authentication, the password from the recorded
/// environment variable (unless `password_env` names another).
pub fn journal_connect_options(
    j: &Journal,
    target: Option<ControlTarget>,
    password_env: Option<&str>,
) -> Result<ConnectOptions> {
    let opts = ConnectOptions::new(target.unwrap_or_else(|| j.control.target.clone()));
    let wants_password = j.control.auth.as_deref() == Some(&AuthMethod::HashedPassword.to_string());
    match password_env.or(j.control.password_env.as_deref()) {
        Some(var) if std::env::var_os(var).is_some() => opts.password_from_env(var),
        Some(var) if wants_password => Err(TorError::Auth(format!(
            "Tor's control port wants a password: set {var} (or another variable named with --tor-password-env)"
        ))),
        None if wants_password => Err(TorError::Auth(
            "Tor's control port wants a password: name its environment variable with --tor-password-env".into(),
        )),
        _ => Ok(opts),
    }
}

/// A lock on the journal file, so two leaktest processes starting at once do not both restore.
struct JournalLock {
    /// Held (not read) so the lock lasts as long as this value.
    _file: File,
}

impl JournalLock {
    fn take(path: &Path) -> Option<JournalLock> {
        let f = File::open(path).ok()?;
        // SAFETY: flock on a valid, owned descriptor; released when the file is closed.
        let rc = unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX) };
        (rc == 0).then_some(JournalLock { _file: f })
    }
}

/// At every leaktest start: restores a journal left by a leaktest that did not clean up (crash,
/// `kill -9`) and says so. Leaves alone a journal whose owner still runs, and a manual one
/// (`leaktest tor restrict`, undone by `leaktest tor restore`).
pub fn recover_leftover() -> Result<Option<String>> {
    recover_leftover_at(&default_journal_path())
}

/// [`recover_leftover`] with an explicit journal path.
pub fn recover_leftover_at(path: &Path) -> Result<Option<String>> {
    if !path.exists() {
        return Ok(None);
    }
    let Some(_lock) = JournalLock::take(path) else {
        return Ok(None);
    };
    // Re-read under the lock: another process may have restored it meanwhile.
    let Some(j) = Journal::load(path)? else {
        return Ok(None);
    };
    // Another namespace's journal is that namespace's business (its Tor is not ours).
    if j.mode == JournalMode::Manual || j.owner_alive() || j.other_namespace() {
        return Ok(None);
    }
    if j.tor_exited() {
        remove_journal(path)?;
        return Ok(Some(gone_message(&j, path)));
    }
    let opts = journal_connect_options(&j, None, None).map_err(|e| {
        journal_err(
            path,
            format!(
                "Tor is still restricted by an earlier run (pid {}) and cannot be restored automatically: {e}; run `leaktest tor restore`",
                j.pid
            ),
        )
    })?;
    let mut ctl = Controller::connect(&opts).map_err(|e| {
        journal_err(
            path,
            format!(
                "Tor may still be restricted by an earlier run (pid {}): {e}; run `leaktest tor restore` once Tor's control port answers (or `leaktest tor restore --forget` if that Tor is gone)",
                j.pid
            ),
        )
    })?;
    let restored = restore(&mut ctl, path);
    ctl.quit();
    Ok(match restored? {
        Restored::Nothing => None,
        Restored::Applied(j) => Some(format!(
            "restored Tor's configuration left restricted by an earlier run (pid {})",
            j.pid
        )),
        Restored::TorGone(j) => Some(gone_message(&j, path)),
    })
}

fn gone_message(j: &Journal, path: &Path) -> String {
    format!(
        "an earlier run (pid {}) left Tor pid {} restricted, and that Tor has exited (its \
         run-time restriction with it): removed the journal {} without changing any Tor",
        j.pid,
        j.tor.as_ref().map_or(0, |t| t.pid),
        path.display()
    )
}

/// Restricts Tor for its lifetime (`watch --restrict-tor`) and restores on [`restore`] or drop.
///
/// [`restore`]: RestrictGuard::restore
pub struct RestrictGuard {
    opts: ConnectOptions,
    journal: PathBuf,
    /// The journal as written: if its file is deleted meanwhile (`tor restore --forget
    /// --force`), the restriction is still undone from this copy.
    written: Journal,
    active: bool,
}

impl std::fmt::Debug for RestrictGuard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RestrictGuard")
            .field("target", &self.opts.target)
            .field("journal", &self.journal)
            .field("active", &self.active)
            .finish()
    }
}

impl RestrictGuard {
    /// Connects, journals, restricts. The restore uses a fresh connection with the same options.
    pub fn restrict(opts: &ConnectOptions, journal: &Path) -> Result<RestrictGuard> {
        let mut ctl = Controller::connect(opts)?;
        let written = restrict(&mut ctl, journal, JournalMode::Guard)?;
        ctl.quit();
        Ok(RestrictGuard {
            written,
            // Undoing the restriction runs after a stop request: never cancelled.
            opts: opts.uncancellable(),
            journal: journal.to_path_buf(),
            active: true,
        })
    }

    pub fn journal_path(&self) -> &Path {
        &self.journal
    }

    /// Restores now and reports failure (the journal then stays for the next start).
    pub fn restore(mut self) -> Result<()> {
        self.active = false;
        self.restore_inner()
    }

    fn restore_inner(&self) -> Result<()> {
        let mut ctl = Controller::connect(&self.opts)?;
        let r = match restore(&mut ctl, &self.journal) {
            // The file went away under us: undo the restriction from the copy in memory, if
            // the Tor it restricted is the one answering.
            Ok(Restored::Nothing) => match self.written.match_tor(&mut ctl) {
                Ok(TorMatch::Same) => apply_previous(&mut ctl, &self.written.previous),
                Ok(_) => Ok(()),
                Err(e) => Err(e),
            },
            r => r.map(|_| ()),
        };
        ctl.quit();
        r
    }
}

impl Drop for RestrictGuard {
    fn drop(&mut self) {
        if self.active {
            self.active = false;
            if let Err(e) = self.restore_inner() {
                tracing::error!(
                    "could not restore Tor's configuration ({e}); the journal {} stays and the next leaktest start retries",
                    self.journal.display()
                );
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(pid: u32, start: Option<u64>) -> Journal {
        Journal {
            version: JOURNAL_VERSION,
            pid,
            process_start: start,
            process_name: Some("leaktest".into()),
            mode: JournalMode::Guard,
            created_unix: 1,
            control: ControlRecord {
                target: ControlTarget::Unix("/run/tor/control".into()),
                auth: Some("SAFECOOKIE".into()),
                password_env: None,
            },
            previous: vec![PreviousValue {
                key: "FascistFirewall".into(),
                values: vec!["0".into()],
                was_default: true,
            }],
            netns: current_netns(),
            tor: None,
        }
    }

    /// A pid no process has (beyond the kernel's pid_max default range in use here).
    fn dead_pid() -> u32 {
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let pid = child.id();
        child.wait().unwrap();
        pid
    }

    #[test]
    fn another_namespaces_journal_is_left_alone() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("j.json");
        // Its owner is dead and its Tor unreachable from here: in its own namespace it would
        // be restored; from this one it must not even be tried.
        let mut j = sample(dead_pid(), Some(0));
        j.netns = Some(current_netns().unwrap() + 1);
        j.control.target = ControlTarget::Unix(dir.path().join("no-such-socket"));
        j.store(&path).unwrap();
        assert_eq!(recover_leftover_at(&path).unwrap(), None);
        assert!(path.exists());
        assert!(j.other_namespace());
        assert!(!sample(1, None).other_namespace());
    }

    #[test]
    fn a_journal_whose_tor_exited_is_obsolete() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("j.json");
        let mut j = sample(dead_pid(), Some(0));
        // Its Tor exited too (a pid and start time no live process has): the journal goes,
        // without contacting any Tor (the control socket does not even exist).
        j.tor = Some(TorIdentity {
            pid: dead_pid(),
            process_start: Some(1),
            version: None,
        });
        j.control.target = ControlTarget::Unix(dir.path().join("no-such-socket"));
        j.store(&path).unwrap();
        assert!(j.tor_exited());
        let msg = recover_leftover_at(&path).unwrap().unwrap();
        assert!(msg.contains("has exited"), "{msg}");
        assert!(!path.exists());
        // This process as "Tor": alive, so not exited.
        let me = proc_stat(std::process::id()).unwrap();
        j.tor = Some(TorIdentity {
            pid: std::process::id(),
            process_start: Some(me.1),
            version: None,
        });
        assert!(!j.tor_exited());
        // Without a start time (another pid namespace) nothing is concluded.
        j.tor.as_mut().unwrap().process_start = None;
        j.tor.as_mut().unwrap().pid = dead_pid();
        assert!(!j.tor_exited());
    }

    #[test]
    fn version_1_journals_still_load_and_bad_files_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("j.json");
        let mut v = serde_json::to_value(sample(1, None)).unwrap();
        let o = v.as_object_mut().unwrap();
        o.remove("netns");
        o.remove("tor");
        o.insert("version".into(), 1.into());
        fs::write(&path, v.to_string()).unwrap();
        let j = Journal::load(&path).unwrap().unwrap();
        assert_eq!((j.version, j.netns, j.tor), (1, None, None));
        // Larger than a journal can be, a FIFO: refused at once, nothing read or hung.
        fs::write(&path, vec![b' '; MAX_JOURNAL_BYTES as usize + 1]).unwrap();
        assert!(Journal::load(&path).is_err());
        let fifo = dir.path().join("fifo");
        let c = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
        // SAFETY: a valid path.
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
        let e = Journal::load(&fifo).unwrap_err().to_string();
        assert!(e.contains("FIFO"), "{e}");
    }

    /// A journal names a control port and settings to restore: one that this
    /// user did not write (another owner, or writable by others) is never
    /// acted on, however well-formed.
    #[test]
    fn journals_of_another_writer_are_not_trusted() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("j.json");
        sample(1, None).store(&path).unwrap();
        assert!(Journal::load(&path).unwrap().is_some());
        fs::set_permissions(&path, fs::Permissions::from_mode(0o666)).unwrap();
        let e = Journal::load(&path).unwrap_err().to_string();
        assert!(e.contains("not trusted"), "{e}");
        fs::set_permissions(&path, fs::Permissions::from_mode(0o600)).unwrap();
        // SAFETY: no preconditions.
        if unsafe { libc::geteuid() } == 0 {
            std::os::unix::fs::chown(&path, Some(4_000_127), None).unwrap();
            let e = Journal::load(&path).unwrap_err().to_string();
            assert!(e.contains("owned by uid 4000127"), "{e}");
        }
    }

    #[test]
    fn journal_round_trip_and_mode() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/tor-restrict.json");
        assert_eq!(Journal::load(&path).unwrap(), None);
        let j = sample(1, None);
        j.store(&path).unwrap();
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(
            fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o600
        );
        assert_eq!(Journal::load(&path).unwrap(), Some(j));
        remove_journal(&path).unwrap();
        assert!(!path.exists());
        fs::write(&path, "{not json").unwrap();
        assert!(matches!(
            Journal::load(&path),
            Err(TorError::Journal { .. })
        ));
    }

    #[test]
    fn owner_liveness_uses_pid_and_start_time() {
        let me = proc_stat(std::process::id()).unwrap();
        assert!(sample(std::process::id(), Some(me.1)).owner_alive());
        // Same pid, different start time: a recycled pid, not the owner.
        assert!(!sample(std::process::id(), Some(me.1 + 1)).owner_alive());
        // A child that has exited and been reaped.
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let pid = child.id();
        child.wait().unwrap();
        assert!(!sample(pid, Some(0)).owner_alive());
    }

    #[test]
    fn manual_and_live_journals_are_left_alone() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tor-restrict.json");
        let me = proc_stat(std::process::id()).unwrap();
        sample(std::process::id(), Some(me.1)).store(&path).unwrap();
        assert_eq!(recover_leftover_at(&path).unwrap(), None);
        let mut j = sample(1, Some(0));
        j.mode = JournalMode::Manual;
        j.store(&path).unwrap();
        assert_eq!(recover_leftover_at(&path).unwrap(), None);
        assert!(path.exists());
        assert_eq!(
            recover_leftover_at(&dir.path().join("none.json")).unwrap(),
            None
        );
    }

    #[test]
    fn leftover_with_unreachable_tor_is_an_error_and_keeps_the_journal() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tor-restrict.json");
        let mut j = sample(1, Some(0));
        j.control.target = ControlTarget::Unix(dir.path().join("no-such-socket"));
        j.store(&path).unwrap();
        let e = recover_leftover_at(&path).unwrap_err().to_string();
        assert!(e.contains("pid 1"), "{e}");
        assert!(path.exists());
    }

    #[test]
    fn password_journal_needs_the_variable() {
        let mut j = sample(1, None);
        j.control.auth = Some("HASHEDPASSWORD".into());
        j.control.password_env = Some("LEAKTEST_TEST_SURELY_UNSET_VAR".into());
        assert!(matches!(
            journal_connect_options(&j, None, None),
            Err(TorError::Auth(_))
        ));
        j.control.auth = Some("SAFECOOKIE".into());
        assert!(journal_connect_options(&j, None, None).is_ok());
    }
}
