//! The lab's state file: which namespaces, processes and directory one lab
//! owns, written before each is created, so that a lab left over from a crash
//! (or kept with `--keep`) can be found and removed later — only what the lab
//! itself made, processes by PID and start time.

use crate::sys::{self, Tracked};
use crate::topology::{self, Names};
use crate::LabError;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Where state files live (one JSON file per lab).
pub const STATE_DIR: &str = "/run/leaktest-lab";
/// Prefix of every lab's namespace names.
pub const NS_PREFIX: &str = "ltlab-";
/// The largest lab state file read (one is a few kilobytes).
pub const MAX_STATE_FILE: u64 = 1 << 20;

/// What one lab owns.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct State {
    pub prefix: String,
    pub names: Names,
    pub tmpdir: PathBuf,
    /// The `leaktest lab` process that owns this lab.
    pub owner: Tracked,
    /// Left up on purpose (`--keep`): removed only by `leaktest lab down`.
    pub kept: bool,
    pub processes: Vec<Tracked>,
}

impl State {
    pub fn path_in(dir: &Path, prefix: &str) -> PathBuf {
        dir.join(format!("{prefix}.json"))
    }

    /// Writes the state atomically (temp file + rename).
    pub fn save(&self, dir: &Path) -> Result<(), LabError> {
        std::fs::create_dir_all(dir)
            .map_err(|e| LabError::Io(format!("creating {}", dir.display()), e))?;
        let path = Self::path_in(dir, &self.prefix);
        let tmp = path.with_extension("json.tmp");
        let text = serde_json::to_string_pretty(self).expect("state serialises");
        std::fs::write(&tmp, text)
            .map_err(|e| LabError::Io(format!("writing {}", tmp.display()), e))?;
        std::fs::rename(&tmp, &path)
            .map_err(|e| LabError::Io(format!("renaming {}", path.display()), e))
    }

    /// Every state file in `dir` (regular files of at most [`MAX_STATE_FILE`] bytes).
    pub fn load_all(dir: &Path) -> Vec<(PathBuf, State)> {
        let Ok(rd) = std::fs::read_dir(dir) else {
            return Vec::new();
        };
        let mut v = Vec::new();
        for e in rd.flatten() {
            let p = e.path();
            if p.extension().and_then(|x| x.to_str()) != Some("json") {
                continue;
            }
            if let Some(s) = leaktest_fs::read_bounded_string("lab state", &p, MAX_STATE_FILE)
                .ok()
                .and_then(|t| serde_json::from_str::<State>(&t).ok())
            {
                v.push((p, s));
            }
        }
        v
    }

    /// Removes everything this state lists: processes (SIGTERM then SIGKILL,
    /// only if PID and start time still match), namespaces, the temporary
    /// directory, and finally the state file itself.
    pub fn remove(&self, dir: &Path) -> Result<(), LabError> {
        // Stop in parallel: each gets a grace period.
        let handles: Vec<_> = self
            .processes
            .iter()
            .cloned()
            .map(|t| std::thread::spawn(move || t.stop(Duration::from_secs(3))))
            .collect();
        for h in handles {
            let _ = h.join();
        }
        let mut first = topology::destroy(&self.names);
        if self.tmpdir.starts_with(std::env::temp_dir()) && self.tmpdir.exists() {
            if let Err(e) = std::fs::remove_dir_all(&self.tmpdir) {
                if first.is_ok() {
                    first = Err(LabError::Io(
                        format!("removing {}", self.tmpdir.display()),
                        e,
                    ));
                }
            }
        }
        first?;
        let p = Self::path_in(dir, &self.prefix);
        match std::fs::remove_file(&p) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(LabError::Io(format!("removing {}", p.display()), e)),
        }
    }
}

/// Removes labs whose owner died without tearing down (crash, kill -9), and
/// with `include_kept` also labs kept on purpose. Returns the prefixes removed.
pub fn remove_leftovers(dir: &Path, include_kept: bool) -> Result<Vec<String>, LabError> {
    let mut removed = Vec::new();
    for (_, s) in State::load_all(dir) {
        let owner_alive = s.owner.alive() && s.owner.pid != std::process::id();
        if owner_alive && !s.kept {
            continue; // another lab is running right now
        }
        if s.kept && !include_kept {
            continue;
        }
        s.remove(dir)?;
        removed.push(s.prefix.clone());
    }
    Ok(removed)
}

/// A fresh, unique lab prefix like `ltlab-3fa9c1`.
pub fn new_prefix() -> String {
    let mut b = [0u8; 3];
    getrandom::fill(&mut b).expect("the kernel's random source works");
    format!("{NS_PREFIX}{}", hex::encode(b))
}

/// The tracked record of the current process.
pub fn me() -> Tracked {
    let pid = std::process::id();
    Tracked {
        pid,
        start_time: sys::proc_start_time(pid).unwrap_or(0),
        what: "leaktest lab".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn state_round_trips_and_leftovers_of_dead_owners_are_removed() {
        let dir = tempfile_dir();
        let tmp =
            std::env::temp_dir().join(format!("leaktest-lab-statetest-{}", std::process::id()));
        std::fs::create_dir_all(&tmp).unwrap();
        let prefix = new_prefix();
        let dead_owner = Tracked {
            pid: std::process::id(),
            start_time: 1,
            what: "gone".into(),
        };
        let s = State {
            prefix: prefix.clone(),
            names: Names::new(&prefix),
            tmpdir: tmp.clone(),
            owner: dead_owner,
            kept: false,
            processes: vec![],
        };
        s.save(&dir).unwrap();
        let all = State::load_all(&dir);
        assert_eq!(all.len(), 1);
        assert_eq!(all[0].1.prefix, prefix);
        let removed = remove_leftovers(&dir, false).unwrap();
        assert_eq!(removed, vec![prefix]);
        assert!(!tmp.exists());
        assert!(State::load_all(&dir).is_empty());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_running_owner_is_left_alone() {
        let dir = tempfile_dir();
        let prefix = new_prefix();
        // The test harness's parent is alive and is not us.
        let parent = std::os::unix::process::parent_id();
        let owner = Tracked {
            pid: parent,
            start_time: sys::proc_start_time(parent).unwrap(),
            what: "alive".into(),
        };
        let s = State {
            prefix,
            names: Names::new("x"),
            tmpdir: "/nonexistent".into(),
            owner,
            kept: false,
            processes: vec![],
        };
        s.save(&dir).unwrap();
        assert!(remove_leftovers(&dir, false).unwrap().is_empty());
        assert_eq!(State::load_all(&dir).len(), 1);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    fn tempfile_dir() -> PathBuf {
        let mut b = [0u8; 6];
        getrandom::fill(&mut b).unwrap();
        let d = std::env::temp_dir().join(format!("leaktest-lab-state-{}", hex::encode(b)));
        std::fs::create_dir_all(&d).unwrap();
        d
    }
}
