//! `leaktest watch --run-at SECONDS 'COMMAND'` and `--event-fifo PATH`: the
//! events of the watch's timeline ([`leaktest_watch::timeline`]), taken in
//! the privileged process (the monitor, or the one process with
//! `--no-sandbox`): a command such as `systemctl restart tor` needs the
//! privilege the sandboxed reader gave up.
//!
//! Each `--run-at` command runs from its own thread at its time, as `sh -c
//! COMMAND` in a process group of its own, stdin and stdout closed (its
//! stderr is the watcher's); its start and end are the event's. A command
//! still running when the watch ends gets SIGTERM, then SIGKILL 2 s later
//! (its group, by the PID this process started). Each line written to the
//! FIFO is an event named by the line (at most 200 characters, control
//! characters dropped); a FIFO the watcher created is removed at the end.

use anyhow::{bail, Context, Result};
use leaktest_watch::timeline::Event;
use std::io::BufRead;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

/// At most this many `--run-at` commands.
pub const MAX_RUN_AT: usize = 64;
/// Longest event name taken from the FIFO.
const MAX_NAME: usize = 200;
/// Most events taken from the FIFO (a writer that floods it is cut off).
const MAX_FIFO_EVENTS: usize = 10_000;

fn unix_ns(t: SystemTime) -> u64 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
}

/// Parses `--run-at` pairs: seconds (≥ 0, finite) and a non-empty command.
pub fn parse_run_at(pairs: &[String]) -> Result<Vec<(f64, String)>> {
    let mut out = Vec::new();
    for pair in pairs.chunks(2) {
        let [at, cmd] = pair else {
            bail!("--run-at takes two values: SECONDS 'COMMAND'");
        };
        let secs: f64 = at
            .parse()
            .ok()
            .filter(|s: &f64| s.is_finite() && (0.0..=1e9).contains(s))
            .with_context(|| {
                format!("--run-at {at}: give seconds after the watch began, e.g. 20 or 2.5")
            })?;
        if cmd.trim().is_empty() {
            bail!("--run-at {at}: the command is empty");
        }
        out.push((secs, cmd.clone()));
    }
    if out.len() > MAX_RUN_AT {
        bail!("--run-at: at most {MAX_RUN_AT} commands");
    }
    Ok(out)
}

/// The events of one watch, being taken.
pub struct Timeline {
    start_unix_ns: u64,
    events: Arc<Mutex<Vec<Event>>>,
    /// PIDs of `--run-at` commands still running (each leads its group).
    running: Arc<Mutex<Vec<u32>>>,
    done: Arc<AtomicBool>,
    threads: Vec<std::thread::JoinHandle<()>>,
    /// A FIFO this watcher created (removed at the end).
    made_fifo: Option<PathBuf>,
}

impl Timeline {
    /// Starts the clock (the watch begins now) and the `--run-at` and
    /// `--event-fifo` threads.
    pub fn start(run_at: &[(f64, String)], fifo: Option<&Path>) -> Result<Timeline> {
        let start = Instant::now();
        let start_unix_ns = unix_ns(SystemTime::now());
        let events = Arc::new(Mutex::new(Vec::new()));
        let running = Arc::new(Mutex::new(Vec::new()));
        let done = Arc::new(AtomicBool::new(false));
        let mut threads = Vec::new();
        let mut made_fifo = None;
        if let Some(path) = fifo {
            let (file, made) = open_fifo(path)?;
            if made {
                made_fifo = Some(path.to_path_buf());
            }
            let events = events.clone();
            // Detached: it blocks reading until the process ends.
            std::thread::Builder::new()
                .name("event-fifo".into())
                .spawn(move || {
                    let mut taken = 0usize;
                    let mut reader = std::io::BufReader::new(file);
                    let mut buf = Vec::new();
                    loop {
                        // A line of at most 4 KiB (the rest of a longer one
                        // is the next "line"): bounded memory in a root process.
                        buf.clear();
                        match std::io::Read::take(&mut reader, 4096).read_until(b'\n', &mut buf) {
                            Ok(0) | Err(_) => break,
                            Ok(_) => {}
                        }
                        let line = String::from_utf8_lossy(&buf);
                        let name: String = line
                            .trim()
                            .chars()
                            .filter(|c| !c.is_control())
                            .take(MAX_NAME)
                            .collect();
                        if name.is_empty() {
                            continue;
                        }
                        let now = SystemTime::now();
                        let at_s = unix_ns(now).saturating_sub(start_unix_ns) as f64 / 1e9;
                        let mut ev = events.lock().unwrap_or_else(|e| e.into_inner());
                        ev.push(Event {
                            name,
                            source: "fifo".into(),
                            at_s,
                            start_unix_ns: unix_ns(now),
                            end_unix_ns: None,
                            exit_code: None,
                            problem: None,
                        });
                        taken += 1;
                        if taken >= MAX_FIFO_EVENTS {
                            ev.last_mut().expect("just pushed").problem = Some(format!(
                                "the FIFO's last event read (at most {MAX_FIFO_EVENTS})"
                            ));
                            break;
                        }
                    }
                })
                .context("starting the --event-fifo reader")?;
        }
        for (at, cmd) in run_at.iter().cloned() {
            let (events, running, done) = (events.clone(), running.clone(), done.clone());
            let h = std::thread::Builder::new()
                .name("run-at".into())
                .spawn(move || {
                    run_at_thread(start, start_unix_ns, at, cmd, &events, &running, &done)
                })
                .context("starting a --run-at thread")?;
            threads.push(h);
        }
        Ok(Timeline {
            start_unix_ns,
            events,
            running,
            done,
            threads,
            made_fifo,
        })
    }

    /// Ends the timeline (commands still running are ended) and puts it
    /// into `report`.
    pub fn finish_into(mut self, report: &mut leaktest_watch::WatchReport) {
        self.end();
        let events = std::mem::take(&mut *self.events.lock().unwrap_or_else(|e| e.into_inner()));
        for e in &events {
            if e.source == "run-at" {
                match (&e.problem, e.exit_code) {
                    (Some(p), _) => report
                        .warnings
                        .push(format!("--run-at command '{}' {p}", e.name)),
                    (None, Some(c)) if c != 0 => report
                        .warnings
                        .push(format!("--run-at command '{}' exited {c}", e.name)),
                    _ => {}
                }
            }
        }
        leaktest_watch::timeline::annotate(report, self.start_unix_ns, events);
    }

    /// Ends what still runs (idempotent): no command starts after this;
    /// those running get SIGTERM to their group, SIGKILL 2 s later; the
    /// FIFO this watcher made is removed.
    fn end(&mut self) {
        let pids: Vec<u32> = {
            let run = self.running.lock().unwrap_or_else(|e| e.into_inner());
            self.done.store(true, Ordering::SeqCst);
            run.clone()
        };
        for &pid in &pids {
            // SAFETY: signals the process group this process started
            // (process_group(0): the group id is the child's PID).
            unsafe { libc::kill(-(pid as libc::pid_t), libc::SIGTERM) };
        }
        let deadline = Instant::now() + Duration::from_secs(2);
        while Instant::now() < deadline
            && !self
                .running
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .is_empty()
        {
            std::thread::sleep(Duration::from_millis(20));
        }
        for &pid in self
            .running
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
        {
            // SAFETY: as above.
            unsafe { libc::kill(-(pid as libc::pid_t), libc::SIGKILL) };
        }
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
        if let Some(p) = self.made_fifo.take() {
            let _ = std::fs::remove_file(p);
        }
    }
}

impl Drop for Timeline {
    /// A watch that ends without a report (an error) still ends its
    /// commands and removes its FIFO.
    fn drop(&mut self) {
        self.end();
    }
}

/// Opens (creating if missing) the FIFO for reading without blocking on a
/// writer: read-write, so it never reads end-of-file between writers.
fn open_fifo(path: &Path) -> Result<(std::fs::File, bool)> {
    use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
    let made = match std::fs::symlink_metadata(path) {
        Ok(m) if m.file_type().is_fifo() => false,
        Ok(_) => bail!("--event-fifo {}: exists and is not a FIFO", path.display()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let c = std::ffi::CString::new(path.as_os_str().as_encoded_bytes())
                .context("--event-fifo: the path has a NUL byte")?;
            // SAFETY: c is a valid NUL-terminated path.
            if unsafe { libc::mkfifo(c.as_ptr(), 0o600) } != 0 {
                return Err(std::io::Error::last_os_error())
                    .with_context(|| format!("--event-fifo {}: creating it", path.display()));
            }
            true
        }
        Err(e) => return Err(e).with_context(|| format!("--event-fifo {}", path.display())),
    };
    let f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(libc::O_NOFOLLOW)
        .open(path)
        .with_context(|| format!("--event-fifo {}: opening it", path.display()))?;
    // What was opened (not what was looked at before): a FIFO of this
    // user's that no one else may write to, so no one else marks events.
    use std::os::unix::fs::MetadataExt;
    let m = f
        .metadata()
        .with_context(|| format!("--event-fifo {}", path.display()))?;
    // SAFETY: geteuid cannot fail.
    let me = unsafe { libc::geteuid() };
    if !m.file_type().is_fifo() || m.uid() != me || m.mode() & 0o022 != 0 {
        bail!(
            "--event-fifo {}: must be a FIFO owned by uid {me} that no one else may write to (mode {:o}, owner {})",
            path.display(),
            m.mode() & 0o7777,
            m.uid()
        );
    }
    Ok((f, made))
}

fn run_at_thread(
    start: Instant,
    start_unix_ns: u64,
    at: f64,
    cmd: String,
    events: &Mutex<Vec<Event>>,
    running: &Mutex<Vec<u32>>,
    done: &AtomicBool,
) {
    let when = start + Duration::from_secs_f64(at);
    loop {
        if done.load(Ordering::SeqCst) {
            return;
        }
        let now = Instant::now();
        if now >= when {
            break;
        }
        std::thread::sleep((when - now).min(Duration::from_millis(20)));
    }
    let t0 = unix_ns(SystemTime::now());
    let mut event = Event {
        name: cmd.clone(),
        source: "run-at".into(),
        at_s: t0.saturating_sub(start_unix_ns) as f64 / 1e9,
        start_unix_ns: t0,
        end_unix_ns: None,
        exit_code: None,
        problem: None,
    };
    // Started and recorded under the lock that the end takes to set `done`
    // and signal what runs: no command starts after the end began.
    let mut run = running.lock().unwrap_or_else(|e| e.into_inner());
    if done.load(Ordering::SeqCst) {
        return;
    }
    let child = Command::new("/bin/sh")
        .arg("-c")
        .arg(&cmd)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .process_group(0)
        .spawn();
    let mut child = match child {
        Ok(c) => c,
        Err(e) => {
            drop(run);
            event.problem = Some(format!("could not start it: {e}"));
            events.lock().unwrap_or_else(|e| e.into_inner()).push(event);
            return;
        }
    };
    let pid = child.id();
    run.push(pid);
    drop(run);
    let index = {
        let mut ev = events.lock().unwrap_or_else(|e| e.into_inner());
        ev.push(event);
        ev.len() - 1
    };
    let status = child.wait();
    let end = unix_ns(SystemTime::now());
    running
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .retain(|p| *p != pid);
    let mut ev = events.lock().unwrap_or_else(|e| e.into_inner());
    let e = &mut ev[index];
    e.end_unix_ns = Some(end);
    match status {
        Ok(s) => {
            e.exit_code = s.code();
            if s.code().is_none() {
                e.problem = Some("ended by a signal".into());
            }
        }
        Err(err) => e.problem = Some(format!("waiting for it: {err}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn run_at_pairs_are_checked() {
        let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();
        assert_eq!(
            parse_run_at(&s(&["2.5", "true", "0", "nft -f x"])).unwrap(),
            vec![(2.5, "true".to_string()), (0.0, "nft -f x".to_string())]
        );
        assert!(parse_run_at(&s(&["-1", "true"])).is_err());
        assert!(parse_run_at(&s(&["nan", "true"])).is_err());
        assert!(parse_run_at(&s(&["1", " "])).is_err());
        assert!(parse_run_at(&s(&["1"])).is_err());
    }

    #[test]
    fn commands_and_fifo_lines_become_events_and_late_commands_are_ended() {
        let dir = std::env::temp_dir().join(format!("leaktest-timeline-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let fifo = dir.join("events");
        let run_at = vec![(0.05, "exit 3".to_string()), (0.1, "sleep 30".to_string())];
        let t0 = Instant::now();
        let t = Timeline::start(&run_at, Some(&fifo)).unwrap();
        // A writer, as an operator's script would be.
        std::fs::OpenOptions::new()
            .write(true)
            .open(&fifo)
            .and_then(|mut f| std::io::Write::write_all(&mut f, b"reload\n\n tor \x07down\n"))
            .unwrap();
        while t0.elapsed() < Duration::from_millis(400) {
            std::thread::sleep(Duration::from_millis(20));
        }
        let t_end = Instant::now();
        let findings = leaktest_watch::Findings::new();
        let health = leaktest_watch::CaptureHealth::default();
        let mut report = leaktest_watch::WatchReport::build(&leaktest_watch::WatchOutcome {
            iface: "eth0",
            findings: &findings,
            health: &health,
            flows: leaktest_watch::FlowStats::default(),
            allowlist: &leaktest_watch::report::AllowlistSummary::default(),
            allow: &[],
            stats: leaktest_watch::CaptureStats::default(),
            elapsed_s: 0.4,
            interrupted: false,
            pcap_frames: 0,
        });
        t.finish_into(&mut report);
        assert!(
            t_end.elapsed() < Duration::from_secs(5),
            "the sleep was ended"
        );
        let by = |n: &str| report.events.iter().find(|e| e.name == n).unwrap().clone();
        let e = by("exit 3");
        assert_eq!((e.exit_code, e.source.as_str()), (Some(3), "run-at"));
        assert!(e.at_s >= 0.05 && e.at_s < 1.0, "{e:?}");
        let s = by("sleep 30");
        assert_eq!(s.exit_code, None);
        assert!(s.end_unix_ns.is_some() && s.problem.is_some(), "{s:?}");
        assert_eq!(by("reload").source, "fifo");
        assert!(report.events.iter().any(|e| e.name == "tor down"));
        assert_eq!(report.events.len(), 4);
        // Sorted by start; phases: start and one per event.
        assert!(report
            .events
            .windows(2)
            .all(|w| w[0].start_unix_ns <= w[1].start_unix_ns));
        assert_eq!(report.phases.len(), 5);
        assert!(!fifo.exists(), "the FIFO it made is removed");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
