//! Names: unique prefixes for a run's namespaces, name checks, and the
//! registry of named namespaces (listing, leftovers of a crashed run).

use crate::process::terminate_pids;
use crate::{io_err, ip, Error, Result, DEFAULT_GRACE, MAX_IFNAME, NETNS_RUN_DIR};
use std::io;
use std::path::Path;
use std::sync::atomic::{AtomicU32, Ordering};

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
pub(crate) fn base36_fixed(v: u32, width: u32) -> String {
    let m = 36u64.pow(width);
    let s = base36((u64::from(v) % m) as u32);
    format!("{s:0>w$}", w = width as usize)
}

pub(crate) fn base36(mut v: u32) -> String {
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

pub(crate) fn check_ns_name(name: &str) -> Result<()> {
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
