//! File safety for leaktest's outputs and inputs.
//!
//! * [`check_outputs`]: every output path (reports, pcap, ready file) is
//!   checked before the first packet: its directory exists and is writable,
//!   the path is a regular file or does not exist yet (never a directory,
//!   device, FIFO or socket), and no two outputs are the same file.
//! * [`write_atomic`]: a file is written to a temporary file in the same
//!   directory, synced, and renamed over the target, and only over a
//!   regular file (or nothing): a device such as `/dev/full` is never
//!   replaced, and a failed write leaves no temporary file behind.
//! * [`read_bounded`]: inputs (key files, cookies, journals) are read only if
//!   they are regular files no larger than a cap, so `/dev/zero` or a FIFO
//!   cannot make the tool grow without bound or hang.
//!
//! * [`InstanceLock`]: one holder at a time of a named lock (one watcher per
//!   interface), and the PID of the holder when refused; [`watch_lock_name`]
//!   and [`watched_interfaces`] name and find the watchers' locks, so a probe
//!   on the watched host knows which interfaces are watched.
//!
//! `-` is not standard output: an output is always a file.

use std::ffi::OsString;
use std::fs::{self, File, OpenOptions};
use std::io::{self, BufWriter, Read, Write};
use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

/// Why a file cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum FsError {
    #[error("{what} {}: its directory does not exist", path.display())]
    NoDirectory { what: String, path: PathBuf },
    #[error("{what} {}: its directory is not writable: no file can be created there ({source})", path.display())]
    NotWritable {
        what: String,
        path: PathBuf,
        source: io::Error,
    },
    #[error("{what} {}: is {kind}, not a regular file; give a new or regular file's path", path.display())]
    NotRegular {
        what: String,
        path: PathBuf,
        kind: &'static str,
    },
    #[error("{what} {}: is {kind}, not a regular file", path.display())]
    NotRegularInput {
        what: String,
        path: PathBuf,
        kind: &'static str,
    },
    #[error("{what} and {other} are the same file ({}); give each its own path", path.display())]
    SameFile {
        what: String,
        other: String,
        path: PathBuf,
    },
    #[error("{what} {}: larger than {max} bytes", path.display())]
    TooLarge {
        what: String,
        path: PathBuf,
        max: u64,
    },
    #[error("{what} {}: must hold exactly 32 hex digits (a 16-byte secret, e.g. from `openssl rand -hex 16`)", path.display())]
    BadSecret { what: String, path: PathBuf },
    #[error("{what} is already in use by leaktest pid {pid} (lock {})", path.display())]
    Locked {
        what: String,
        path: PathBuf,
        pid: u32,
    },
    #[error("{what} {}: {source}", path.display())]
    Io {
        what: String,
        path: PathBuf,
        source: io::Error,
    },
}

/// What kind of thing a file type is, for messages.
fn kind_of(t: &fs::FileType) -> &'static str {
    if t.is_dir() {
        "a directory"
    } else if t.is_char_device() || t.is_block_device() {
        "a device"
    } else if t.is_fifo() {
        "a FIFO"
    } else if t.is_socket() {
        "a socket"
    } else if t.is_symlink() {
        "a symbolic link"
    } else {
        "a regular file"
    }
}

/// The path an output is really written to: a symbolic link is followed
/// (the file it names is replaced, not the link).
fn resolve(path: &Path) -> PathBuf {
    fs::canonicalize(path).unwrap_or_else(|_| {
        // Not there yet: the canonical directory and the name.
        match (path.parent(), path.file_name()) {
            (Some(dir), Some(name)) => {
                let dir = if dir.as_os_str().is_empty() {
                    Path::new(".")
                } else {
                    dir
                };
                fs::canonicalize(dir)
                    .map(|d| d.join(name))
                    .unwrap_or_else(|_| path.to_path_buf())
            }
            _ => path.to_path_buf(),
        }
    })
}

/// Checks one output path (see the crate documentation). `what` names it
/// in errors (`--json`, `--pcap`, ...). The directory's writability is
/// tested by creating (and deleting) a file in it, so a directory that
/// refuses new files whatever its mode bits say (`/proc`, `/sys`, a
/// read-only mount) is found out here, not at the end.
pub fn check_output(what: &str, path: &Path) -> Result<(), FsError> {
    if path.as_os_str() == "-" {
        return Err(FsError::Io {
            what: what.into(),
            path: path.into(),
            source: io::Error::other("standard output is not an output here: give a file"),
        });
    }
    if let Ok(m) = fs::symlink_metadata(path) {
        if m.file_type().is_symlink() && fs::metadata(path).is_err() {
            return Err(FsError::Io {
                what: what.into(),
                path: path.into(),
                source: io::Error::other("a symbolic link to nothing; give the file's own path"),
            });
        }
    }
    let real = resolve(path);
    match fs::metadata(&real) {
        Ok(m) if !m.file_type().is_file() => {
            return Err(FsError::NotRegular {
                what: what.into(),
                path: path.into(),
                kind: kind_of(&m.file_type()),
            })
        }
        _ => {}
    }
    let dir = real.parent().unwrap_or(Path::new("/"));
    match fs::metadata(dir) {
        Ok(m) if m.is_dir() => {}
        _ => {
            return Err(FsError::NoDirectory {
                what: what.into(),
                path: path.into(),
            })
        }
    }
    let probe = dir.join(format!(
        ".leaktest-check-{}-{:08x}",
        std::process::id(),
        getrandom::u32().unwrap_or(0)
    ));
    match OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .custom_flags(libc::O_CLOEXEC | libc::O_NOFOLLOW)
        .open(&probe)
    {
        Ok(_) => {
            let _ = fs::remove_file(&probe);
        }
        Err(source) => {
            return Err(FsError::NotWritable {
                what: what.into(),
                path: path.into(),
                source,
            })
        }
    }
    Ok(())
}

/// Checks every output (name, path) and that no two are the same file.
pub fn check_outputs(outputs: &[(&str, &Path)]) -> Result<(), FsError> {
    for (what, p) in outputs {
        check_output(what, p)?;
    }
    for (i, (a, pa)) in outputs.iter().enumerate() {
        for (b, pb) in &outputs[i + 1..] {
            if resolve(pa) == resolve(pb) {
                return Err(FsError::SameFile {
                    what: (*a).into(),
                    other: (*b).into(),
                    path: pa.to_path_buf(),
                });
            }
        }
    }
    Ok(())
}

/// Writes `path` atomically: `write` fills a temporary file in the same
/// directory, which is synced and renamed over `path` (re-checked just
/// before: only a regular file or nothing is replaced). On any failure the temporary file is removed and
/// `path` is untouched.
pub fn write_atomic(
    what: &str,
    path: &Path,
    write: impl FnOnce(&mut dyn Write) -> io::Result<()>,
) -> Result<(), FsError> {
    let err = |source| FsError::Io {
        what: what.into(),
        path: path.into(),
        source,
    };
    check_output(what, path)?;
    let real = resolve(path);
    let dir = real.parent().unwrap_or(Path::new("/")).to_path_buf();
    let name = real
        .file_name()
        .map(|n| n.to_os_string())
        .unwrap_or_default();
    let mut tmp_name = OsString::from(".");
    tmp_name.push(&name);
    tmp_name.push(format!(
        ".tmp-{}-{:08x}",
        std::process::id(),
        getrandom::u32().unwrap_or(0)
    ));
    let tmp = dir.join(tmp_name);
    let file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o644)
        .custom_flags(libc::O_CLOEXEC | libc::O_NOFOLLOW)
        .open(&tmp)
        .map_err(err)?;
    let result = (|| {
        let mut w = BufWriter::with_capacity(1 << 16, file);
        write(&mut w)?;
        let file = w.into_inner().map_err(|e| e.into_error())?;
        file.sync_all()?;
        // Only a regular file (or nothing) is replaced.
        if let Ok(m) = fs::symlink_metadata(&real) {
            if !m.file_type().is_file() {
                return Err(io::Error::other(format!(
                    "{} became {} while it was written",
                    real.display(),
                    kind_of(&m.file_type())
                )));
            }
        }
        fs::rename(&tmp, &real)?;
        if let Ok(d) = File::open(&dir) {
            let _ = d.sync_all();
        }
        Ok(())
    })();
    if let Err(e) = result {
        let _ = fs::remove_file(&tmp);
        return Err(err(e));
    }
    Ok(())
}

/// Opens `path` for an output written as it goes (a pcap file): created
/// if new, emptied if a regular file, refused otherwise. It is opened
/// without blocking and checked before anything is written or truncated,
/// so a FIFO cannot hang the caller and a device is never written.
pub fn create_stream(what: &str, path: &Path) -> Result<File, FsError> {
    let err = |source| FsError::Io {
        what: what.into(),
        path: path.into(),
        source,
    };
    let file = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o644)
        .custom_flags(libc::O_NONBLOCK | libc::O_CLOEXEC)
        .open(path)
        .map_err(err)?;
    let m = file.metadata().map_err(err)?;
    if !m.file_type().is_file() {
        return Err(FsError::NotRegular {
            what: what.into(),
            path: path.into(),
            kind: kind_of(&m.file_type()),
        });
    }
    file.set_len(0).map_err(err)?;
    // Blocking writes again (a regular file ignores the flag; be plain).
    let fd = std::os::fd::AsRawFd::as_raw_fd(&file);
    // SAFETY: fcntl on a descriptor this function owns.
    unsafe {
        let flags = libc::fcntl(fd, libc::F_GETFL);
        if flags >= 0 {
            libc::fcntl(fd, libc::F_SETFL, flags & !libc::O_NONBLOCK);
        }
    }
    Ok(file)
}

/// Default directory of [`InstanceLock`]s (overridden by `LEAKTEST_RUN_DIR`).
pub const DEFAULT_RUN_DIR: &str = "/run/leaktest";

/// `$LEAKTEST_RUN_DIR`, else [`DEFAULT_RUN_DIR`].
pub fn run_dir() -> PathBuf {
    std::env::var_os("LEAKTEST_RUN_DIR")
        .filter(|d| !d.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(DEFAULT_RUN_DIR))
}

/// An exclusive lock held for the life of this value: an advisory `flock`
/// on a file that holds the holder's PID, deleted when the value drops. The
/// kernel releases the lock when the process ends, however it ends (`kill
/// -9` included), so a file left behind never blocks a later run.
#[derive(Debug)]
pub struct InstanceLock {
    path: PathBuf,
    /// Held (not read) so the lock lasts as long as this value.
    _file: File,
    /// Whether dropping it deletes the file (not in a forked child).
    unlink: bool,
}

/// How often [`InstanceLock::acquire`] retries when the file it locked was
/// deleted by the previous holder meanwhile.
const LOCK_ATTEMPTS: usize = 8;

impl InstanceLock {
    /// Takes the lock `dir/name` without waiting (`dir` is created, mode
    /// 0755). Refused with [`FsError::Locked`] and the holder's PID when
    /// another process holds it; `what` names the resource in messages.
    pub fn acquire(what: &str, dir: &Path, name: &str) -> Result<InstanceLock, FsError> {
        use std::os::unix::fs::MetadataExt;
        let path = dir.join(name);
        let err = |source| FsError::Io {
            what: what.into(),
            path: path.clone(),
            source,
        };
        std::os::unix::fs::DirBuilderExt::mode(fs::DirBuilder::new().recursive(true), 0o755)
            .create(dir)
            .map_err(err)?;
        for _ in 0..LOCK_ATTEMPTS {
            let mut file = OpenOptions::new()
                .read(true)
                .write(true)
                .create(true)
                .truncate(false)
                .mode(0o644)
                .custom_flags(libc::O_CLOEXEC | libc::O_NOFOLLOW | libc::O_NONBLOCK)
                .open(&path)
                .map_err(err)?;
            let meta = file.metadata().map_err(err)?;
            if !meta.file_type().is_file() {
                return Err(err(io::Error::other("not a regular file")));
            }
            let fd = std::os::fd::AsRawFd::as_raw_fd(&file);
            // SAFETY: flock on a descriptor this function owns.
            if unsafe { libc::flock(fd, libc::LOCK_EX | libc::LOCK_NB) } != 0 {
                let e = io::Error::last_os_error();
                if e.raw_os_error() != Some(libc::EWOULDBLOCK) {
                    return Err(err(e));
                }
                let mut text = String::new();
                let _ = (&file).take(64).read_to_string(&mut text);
                return Err(FsError::Locked {
                    what: what.into(),
                    path,
                    pid: text.trim().parse().unwrap_or(0),
                });
            }
            // The previous holder deletes the file when it lets go: a lock
            // on a file no longer at `path` locks nothing. Try again.
            match fs::symlink_metadata(&path) {
                Ok(m) if m.ino() == meta.ino() && m.dev() == meta.dev() => {}
                _ => continue,
            }
            file.set_len(0).map_err(err)?;
            writeln!(file, "{}", std::process::id()).map_err(err)?;
            return Ok(InstanceLock {
                path,
                _file: file,
                unlink: true,
            });
        }
        Err(err(io::Error::other(
            "the lock file kept changing under us; try again",
        )))
    }

    /// The lock file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// In a child forked while the lock was held: closes this process's
    /// descriptor and leaves the file alone. The lock stays held by the
    /// parent's descriptor (a `flock` belongs to the open file description,
    /// which both share) and goes with the parent.
    pub fn close_in_child(mut self) {
        self.unlink = false;
    }
}

impl Drop for InstanceLock {
    fn drop(&mut self) {
        // Deleted while still held: a process that opened it meanwhile
        // notices (its inode is no longer at the path) and starts over.
        if self.unlink {
            let _ = fs::remove_file(&self.path);
        }
    }
}

/// The name of the lock a watcher holds on interface `ifindex` of the
/// network namespace whose `/proc/self/ns/net` inode is `netns`.
pub fn watch_lock_name(netns: u64, ifindex: u32) -> String {
    format!("watch-net{netns}-if{ifindex}.lock")
}

/// The inode of the calling thread's network namespace (`/proc/thread-self/ns/net`).
pub fn netns_inode() -> io::Result<u64> {
    use std::os::unix::fs::MetadataExt;
    Ok(fs::metadata("/proc/thread-self/ns/net")?.ino())
}

/// A watcher found by [`watched_interfaces`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Watched {
    pub ifindex: u32,
    /// The holder's PID as the lock file records it (0 if unreadable).
    pub pid: u32,
}

/// The interfaces of network namespace `netns` that a watcher watches now:
/// the [`watch_lock_name`] files in `dir` whose lock is held. Whether a lock
/// is held is read from `/proc/locks` (the kernel's table of `flock` locks,
/// by device and inode), never by taking it, so a starting watcher is never
/// refused because someone looked. A file left by a killed watcher is not
/// held and not listed. An unreadable `dir` is an error; a missing one is no
/// watcher.
pub fn watched_interfaces(dir: &Path, netns: u64) -> io::Result<Vec<Watched>> {
    use std::os::unix::fs::MetadataExt;
    let entries = match fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    let prefix = format!("watch-net{netns}-if");
    let mut candidates = Vec::new();
    for e in entries {
        let e = e?;
        let name = e.file_name();
        let Some(idx) = name
            .to_str()
            .and_then(|n| n.strip_prefix(&prefix))
            .and_then(|n| n.strip_suffix(".lock"))
            .and_then(|n| n.parse::<u32>().ok())
        else {
            continue;
        };
        let Ok(m) = fs::symlink_metadata(e.path()) else {
            continue;
        };
        if m.file_type().is_file() {
            candidates.push((idx, m.dev(), m.ino(), e.path()));
        }
    }
    if candidates.is_empty() {
        return Ok(Vec::new());
    }
    let held = held_flocks(&fs::read_to_string("/proc/locks")?);
    let mut out: Vec<Watched> = candidates
        .into_iter()
        .filter(|(_, dev, ino, _)| held.contains(&(*dev, *ino)))
        .map(|(ifindex, _, _, path)| {
            let pid = read_bounded_string("lock", &path, 64)
                .ok()
                .and_then(|t| t.trim().parse().ok())
                .unwrap_or(0);
            Watched { ifindex, pid }
        })
        .collect();
    out.sort_by_key(|w| w.ifindex);
    Ok(out)
}

/// `(st_dev, st_ino)` of every file with a `FLOCK` lock in `/proc/locks`
/// text. Lines look like `1: FLOCK  ADVISORY  WRITE 812 00:19:4242 0 EOF`
/// (fs/locks.c `lock_get_status`: major and minor in hex, inode in
/// decimal); blocked waiters (`1: -> FLOCK ...`) are not holders.
fn held_flocks(text: &str) -> Vec<(u64, u64)> {
    let mut v = Vec::new();
    for line in text.lines() {
        let mut f = line.split_whitespace();
        let _ordinal = f.next();
        if f.next() != Some("FLOCK") {
            continue;
        }
        let Some(id) = f.nth(3) else { continue };
        let mut p = id.split(':');
        let (Some(maj), Some(min), Some(ino)) = (p.next(), p.next(), p.next()) else {
            continue;
        };
        let (Ok(maj), Ok(min), Ok(ino)) = (
            u32::from_str_radix(maj, 16),
            u32::from_str_radix(min, 16),
            ino.parse::<u64>(),
        ) else {
            continue;
        };
        v.push((libc::makedev(maj, min), ino));
    }
    v
}

/// Reads a regular file of at most `max` bytes. A FIFO, device or
/// directory is refused without blocking (it is opened non-blocking and
/// checked before any read).
pub fn read_bounded(what: &str, path: &Path, max: u64) -> Result<Vec<u8>, FsError> {
    let err = |source| FsError::Io {
        what: what.into(),
        path: path.into(),
        source,
    };
    let f = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_CLOEXEC)
        .open(path)
        .map_err(err)?;
    let m = f.metadata().map_err(err)?;
    if !m.file_type().is_file() {
        return Err(FsError::NotRegularInput {
            what: what.into(),
            path: path.into(),
            kind: kind_of(&m.file_type()),
        });
    }
    if m.len() > max {
        return Err(FsError::TooLarge {
            what: what.into(),
            path: path.into(),
            max,
        });
    }
    let mut buf = Vec::with_capacity(m.len() as usize);
    f.take(max + 1).read_to_end(&mut buf).map_err(err)?;
    if buf.len() as u64 > max {
        return Err(FsError::TooLarge {
            what: what.into(),
            path: path.into(),
            max,
        });
    }
    Ok(buf)
}

/// [`read_bounded`] as UTF-8 text.
pub fn read_bounded_string(what: &str, path: &Path, max: u64) -> Result<String, FsError> {
    let b = read_bounded(what, path, max)?;
    String::from_utf8(b).map_err(|_| FsError::Io {
        what: what.into(),
        path: path.into(),
        source: io::Error::new(io::ErrorKind::InvalidData, "not UTF-8 text"),
    })
}

/// Longest marker secret file read: 32 hex digits and whitespace.
pub const MAX_SECRET_FILE: u64 = 4096;

/// Reads a marker secret file (`--key-file`, shared by `probe` and `watch`):
/// exactly 32 hex digits (a 16-byte secret), whitespace around ignored; a
/// regular file of at most [`MAX_SECRET_FILE`] bytes.
pub fn read_secret(what: &str, path: &Path) -> Result<[u8; 16], FsError> {
    let text = read_bounded_string(what, path, MAX_SECRET_FILE)?;
    let t = text.trim();
    let bad = || FsError::BadSecret {
        what: what.into(),
        path: path.into(),
    };
    if t.len() != 32 || !t.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(bad());
    }
    let mut key = [0u8; 16];
    for (i, k) in key.iter_mut().enumerate() {
        *k = u8::from_str_radix(&t[2 * i..2 * i + 2], 16).map_err(|_| bad())?;
    }
    Ok(key)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::ffi::OsStrExt;

    #[test]
    fn outputs_must_be_regular_new_and_distinct() {
        let d = tempfile::tempdir().unwrap();
        let a = d.path().join("a.json");
        let b = d.path().join("b.xml");
        assert!(check_outputs(&[("--json", &a), ("--junit", &b)]).is_ok());
        // The same file twice, also through another spelling.
        let again = d.path().join(".").join("a.json");
        let e = check_outputs(&[("--json", &a), ("--pcap", &again)]).unwrap_err();
        assert!(matches!(e, FsError::SameFile { .. }), "{e}");
        assert!(e.to_string().contains("--json and --pcap"), "{e}");
        // "-" is not standard output here (it was never documented as such).
        assert!(check_output("--json", Path::new("-")).is_err());
        // A symbolic link to nothing; /proc, which refuses new files whatever its mode says.
        let dangling = d.path().join("dangling");
        std::os::unix::fs::symlink(d.path().join("nothing"), &dangling).unwrap();
        let e = check_output("--json", &dangling).unwrap_err();
        assert!(e.to_string().contains("symbolic link to nothing"), "{e}");
        let e = check_output("--json", Path::new("/proc/x")).unwrap_err();
        assert!(matches!(e, FsError::NotWritable { .. }), "{e}");
        // The check leaves nothing behind.
        assert_eq!(fs::read_dir(d.path()).unwrap().count(), 1);
        // A directory, a device, a FIFO, a missing directory.
        for (p, kind) in [
            (d.path().to_path_buf(), "directory"),
            (PathBuf::from("/dev/full"), "device"),
            (d.path().join("nodir/x.json"), "does not exist"),
        ] {
            let e = check_output("--json", &p).unwrap_err();
            assert!(e.to_string().contains(kind), "{e}");
        }
        let fifo = d.path().join("fifo");
        let c = std::ffi::CString::new(fifo.as_os_str().as_bytes()).unwrap();
        // SAFETY: a valid path.
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
        assert!(check_output("--json", &fifo)
            .unwrap_err()
            .to_string()
            .contains("FIFO"));
    }

    #[test]
    fn atomic_writes_replace_only_regular_files() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("r.json");
        write_atomic("--json", &p, |w| w.write_all(b"one")).unwrap();
        write_atomic("--json", &p, |w| w.write_all(b"two")).unwrap();
        assert_eq!(fs::read(&p).unwrap(), b"two");
        // A failing writer leaves the old file and no temporary file.
        let e = write_atomic("--json", &p, |_| Err(io::Error::other("disk full"))).unwrap_err();
        assert!(e.to_string().contains("disk full"), "{e}");
        assert_eq!(fs::read(&p).unwrap(), b"two");
        assert_eq!(fs::read_dir(d.path()).unwrap().count(), 1);
        // A symbolic link: the file it names is written, the link stays.
        let target = d.path().join("t.json");
        fs::write(&target, "old").unwrap();
        let link = d.path().join("link.json");
        std::os::unix::fs::symlink(&target, &link).unwrap();
        write_atomic("--json", &link, |w| w.write_all(b"new")).unwrap();
        assert_eq!(fs::read(&target).unwrap(), b"new");
        assert!(fs::symlink_metadata(&link)
            .unwrap()
            .file_type()
            .is_symlink());
        // A device is never replaced.
        let e = write_atomic("--ready-file", Path::new("/dev/full"), |w| {
            w.write_all(b"x")
        });
        assert!(e.is_err());
        assert!(fs::metadata("/dev/full")
            .unwrap()
            .file_type()
            .is_char_device());
    }

    #[test]
    fn secrets() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("k");
        fs::write(&p, "00112233445566778899AABBccddeeff\n").unwrap();
        assert_eq!(read_secret("--key-file", &p).unwrap()[15], 0xff);
        for bad in [
            "0011",
            "zz112233445566778899aabbccddeeff",
            "00112233445566778899aabbccddeeff00",
            "",
        ] {
            fs::write(&p, bad).unwrap();
            let e = read_secret("--key-file", &p).unwrap_err();
            assert!(e.to_string().contains("32 hex digits"), "{e}");
        }
        assert!(matches!(
            read_secret("--key-file", Path::new("/dev/zero")),
            Err(FsError::NotRegularInput { .. })
        ));
        assert!(read_secret("--key-file", &d.path().join("missing")).is_err());
    }

    #[test]
    fn streams_only_into_regular_files() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("x.pcapng");
        fs::write(&p, "old contents").unwrap();
        let mut f = create_stream("--pcap", &p).unwrap();
        f.write_all(b"new").unwrap();
        assert_eq!(fs::read(&p).unwrap(), b"new");
        let fifo = d.path().join("fifo");
        let c = std::ffi::CString::new(fifo.as_os_str().as_bytes()).unwrap();
        // SAFETY: a valid path.
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
        // No reader: a blocking open would hang; this one is refused.
        let e = create_stream("--pcap", &fifo).unwrap_err();
        assert!(
            e.to_string().contains("FIFO") || e.to_string().contains("No such device"),
            "{e}"
        );
        assert!(create_stream("--pcap", d.path()).is_err());
    }

    #[test]
    fn instance_locks_refuse_a_second_holder_with_its_pid() {
        let d = tempfile::tempdir().unwrap();
        let dir = d.path().join("run");
        let a = InstanceLock::acquire("interface eth0", &dir, "watch-1-2.lock").unwrap();
        assert_eq!(
            fs::read_to_string(a.path()).unwrap().trim(),
            std::process::id().to_string()
        );
        // flock locks belong to the open file: a second open in this process conflicts too.
        let e = InstanceLock::acquire("interface eth0", &dir, "watch-1-2.lock").unwrap_err();
        assert!(
            matches!(e, FsError::Locked { pid, .. } if pid == std::process::id()),
            "{e}"
        );
        assert!(
            e.to_string()
                .contains(&format!("leaktest pid {}", std::process::id())),
            "{e}"
        );
        // Another name is another lock.
        let _b = InstanceLock::acquire("interface eth1", &dir, "watch-1-3.lock").unwrap();
        // Released with the value (and by the kernel when a process dies),
        // and the file goes with it.
        let path = a.path().to_path_buf();
        drop(a);
        assert!(!path.exists());
        InstanceLock::acquire("interface eth0", &dir, "watch-1-2.lock").unwrap();
    }

    #[test]
    fn watched_interfaces_lists_held_locks_only() {
        let d = tempfile::tempdir().unwrap();
        let dir = d.path().join("run");
        assert_eq!(watched_interfaces(&dir, 7).unwrap(), vec![]);
        let a = InstanceLock::acquire("interface eth0", &dir, &watch_lock_name(7, 2)).unwrap();
        let _b = InstanceLock::acquire("interface eth1", &dir, &watch_lock_name(7, 5)).unwrap();
        // Another namespace's watcher is not ours.
        let _c = InstanceLock::acquire("interface eth0", &dir, &watch_lock_name(8, 3)).unwrap();
        // A file left by a killed watcher: present, not locked.
        fs::write(dir.join(watch_lock_name(7, 9)), "4242\n").unwrap();
        let me = std::process::id();
        assert_eq!(
            watched_interfaces(&dir, 7).unwrap(),
            vec![
                Watched {
                    ifindex: 2,
                    pid: me
                },
                Watched {
                    ifindex: 5,
                    pid: me
                }
            ]
        );
        drop(a);
        assert_eq!(
            watched_interfaces(&dir, 7).unwrap(),
            vec![Watched {
                ifindex: 5,
                pid: me
            }]
        );
    }

    #[test]
    fn proc_locks_lines() {
        let t = "1: FLOCK  ADVISORY  WRITE 812 00:19:4242 0 EOF\n\
                 1: -> FLOCK  ADVISORY  WRITE 900 00:19:4243 0 EOF\n\
                 2: POSIX  ADVISORY  WRITE 77 fd:01:99 0 EOF\n\
                 3: FLOCK  ADVISORY  WRITE 813 103:0a:17 0 EOF\n";
        assert_eq!(
            held_flocks(t),
            vec![
                (libc::makedev(0, 0x19), 4242),
                (libc::makedev(0x103, 0x0a), 17)
            ]
        );
    }

    #[test]
    fn bounded_reads() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("k");
        fs::write(&p, "0123").unwrap();
        assert_eq!(read_bounded("key", &p, 4).unwrap(), b"0123");
        assert!(matches!(
            read_bounded("key", &p, 3),
            Err(FsError::TooLarge { .. })
        ));
        assert!(matches!(
            read_bounded("key", Path::new("/dev/zero"), 64),
            Err(FsError::NotRegularInput { .. })
        ));
        assert!(matches!(
            read_bounded("key", d.path(), 64),
            Err(FsError::NotRegularInput { .. })
        ));
        let fifo = d.path().join("fifo");
        let c = std::ffi::CString::new(fifo.as_os_str().as_bytes()).unwrap();
        // SAFETY: a valid path.
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
        // Does not hang: refused at once.
        assert!(matches!(
            read_bounded("key", &fifo, 64),
            Err(FsError::NotRegularInput { .. })
        ));
        assert!(read_bounded_string("key", &p, 10).is_ok());
    }
}
