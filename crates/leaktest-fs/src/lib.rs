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
//! The path `-` means standard output for outputs.

use std::ffi::OsString;
use std::fs::{self, File, OpenOptions};
use std::io::{self, BufWriter, Read, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

/// Why a file cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum FsError {
    #[error("{what} {}: its directory does not exist", path.display())]
    NoDirectory { what: String, path: PathBuf },
    #[error("{what} {}: the directory is not writable ({source})", path.display())]
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
/// in errors (`--json`, `--pcap`, ...).
pub fn check_output(what: &str, path: &Path) -> Result<(), FsError> {
    if path.as_os_str() == "-" {
        return Ok(());
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
    let c =
        std::ffi::CString::new(dir.as_os_str().as_bytes()).map_err(|_| FsError::NoDirectory {
            what: what.into(),
            path: path.into(),
        })?;
    // SAFETY: a valid NUL-terminated path.
    if unsafe { libc::access(c.as_ptr(), libc::W_OK | libc::X_OK) } != 0 {
        return Err(FsError::NotWritable {
            what: what.into(),
            path: path.into(),
            source: io::Error::last_os_error(),
        });
    }
    Ok(())
}

/// Checks every output (name, path) and that no two are the same file
/// (standard output, `-`, may be given once).
pub fn check_outputs(outputs: &[(&str, &Path)]) -> Result<(), FsError> {
    for (what, p) in outputs {
        check_output(what, p)?;
    }
    for (i, (a, pa)) in outputs.iter().enumerate() {
        for (b, pb) in &outputs[i + 1..] {
            let same = if pa.as_os_str() == "-" || pb.as_os_str() == "-" {
                pa.as_os_str() == "-" && pb.as_os_str() == "-"
            } else {
                resolve(pa) == resolve(pb)
            };
            if same {
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
/// before: only a regular file or nothing is replaced). `-` writes to
/// standard output. On any failure the temporary file is removed and
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
    if path.as_os_str() == "-" {
        let mut out = io::stdout().lock();
        return write(&mut out).and_then(|_| out.flush()).map_err(err);
    }
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
        return Err(FsError::NotRegular {
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
        assert!(check_outputs(&[("--json", Path::new("-")), ("--junit", Path::new("-"))]).is_err());
        assert!(check_outputs(&[("--json", Path::new("-")), ("--junit", &b)]).is_ok());
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
            Err(FsError::NotRegular { .. })
        ));
        assert!(read_secret("--key-file", &d.path().join("missing")).is_err());
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
            Err(FsError::NotRegular { .. })
        ));
        assert!(matches!(
            read_bounded("key", d.path(), 64),
            Err(FsError::NotRegular { .. })
        ));
        let fifo = d.path().join("fifo");
        let c = std::ffi::CString::new(fifo.as_os_str().as_bytes()).unwrap();
        // SAFETY: a valid path.
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
        // Does not hang: refused at once.
        assert!(matches!(
            read_bounded("key", &fifo, 64),
            Err(FsError::NotRegular { .. })
        ));
        assert!(read_bounded_string("key", &p, 10).is_ok());
    }
}
