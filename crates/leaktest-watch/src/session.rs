//! The watch session: the I/O loop that drives the pure parts of this crate.
//!
//! It opens the capture (leaktest-capture), starts the Tor allowlist feed
//! (leaktest-tor) or uses the static `--allow` entries alone, classifies every
//! outbound frame, records it in [`Findings`], prints each new leak group live
//! as one line, writes the pcapng of leaks as it goes, and measures the
//! capture's health:
//!
//! * canaries at the start, every [`SessionConfig::canary_every`] and at the
//!   end, each of which the capture must see (a grace period at the end lets
//!   the ring drain);
//! * the kernel's drop counters;
//! * the interface going down, away or being replaced, and capture errors;
//! * the Tor allowlist feed becoming unavailable at any time.
//!
//! It ends after the duration, or when the stop flag is raised (the CLI
//! raises it on SIGINT/SIGTERM), and always returns the full outcome so the
//! reports are written. Only failures before the watch starts (no capture,
//! no control port, an unwritable pcap file) are errors.

use crate::classify::{Class, Classifier, ClassifierConfig, Leak, LeakCause, LeakFamily};
use crate::findings::Findings;
use crate::pcapng::PcapngWriter;
use crate::report::ReportError;
use crate::verdict::CaptureHealth;
use leaktest_capture::canary::CanarySighting;
use leaktest_capture::{
    iface_addresses, Canary, CanaryInjector, CaptureConfig, CaptureError, CaptureStats,
    IfaceMonitor, LiveCapture,
};
use leaktest_tor::{Allowlist, AllowlistFeed, ConnectOptions, TorError};
use leaktest_wire::{LinkType, MarkerKeys};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// How often health (kernel counters, interface, feed, own addresses) is checked.
const HEALTH_EVERY: Duration = Duration::from_millis(250);

/// Everything a watch session needs.
#[derive(Debug)]
pub struct SessionConfig {
    /// How to open the capture (interface, ring size, snap length, timeout).
    pub capture: CaptureConfig,
    /// Tor's control port, for the live allowlist; `None`: static entries only.
    pub tor_control: Option<ConnectOptions>,
    /// Static allowlist entries (`--allow`).
    pub allow: Allowlist,
    /// Stop after this long; `None`: until the stop flag is raised.
    pub duration: Option<Duration>,
    /// Housekeeping counts as a leak.
    pub strict: bool,
    /// Marker keys (open runs, plus the shared secret of `--key-file`).
    pub keys: MarkerKeys,
    /// Write leaked packets (and everything else with `pcap_all`) here.
    pub pcap: Option<PathBuf>,
    pub pcap_all: bool,
    /// Written once the first canary has been seen: the capture is live.
    pub ready_file: Option<PathBuf>,
    /// Interval between canaries.
    pub canary_every: Duration,
    /// How long to wait for the last canaries after the end.
    pub end_grace: Duration,
}

impl SessionConfig {
    /// Defaults for watching `iface`: static allowlist (empty), no end, one
    /// canary a second, two seconds of grace at the end.
    pub fn new(iface: &str) -> SessionConfig {
        SessionConfig {
            capture: CaptureConfig::new(iface),
            tor_control: None,
            allow: Allowlist::new(),
            duration: None,
            strict: false,
            keys: MarkerKeys::open(),
            pcap: None,
            pcap_all: false,
            ready_file: None,
            canary_every: Duration::from_secs(1),
            end_grace: Duration::from_secs(2),
        }
    }
}

/// Why a watch could not start.
#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    #[error(transparent)]
    Capture(#[from] CaptureError),
    #[error("canary frames on {iface}: {msg}")]
    Canary { iface: String, msg: String },
    #[error("Tor control port: {0}")]
    Tor(#[from] TorError),
    #[error(transparent)]
    Report(#[from] ReportError),
    #[error("writing the ready file {path}: {source}")]
    ReadyFile {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// What the Tor allowlist looked like during the watch.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AllowlistSummary {
    /// Endpoints in the allowlist at the end.
    pub endpoints: usize,
    /// Whether it came from a control port (else static `--allow` only).
    pub from_control_port: bool,
    /// Refreshes published during the watch (after the first list).
    pub refreshes: u64,
}

/// Everything a finished watch measured; the reports are made from it.
#[derive(Debug)]
pub struct SessionOutcome {
    pub iface: String,
    pub findings: Findings,
    pub health: CaptureHealth,
    /// The kernel's counters at the end.
    pub stats: CaptureStats,
    pub allowlist: AllowlistSummary,
    /// How long the capture ran.
    pub elapsed: Duration,
    /// Whether the watch was ended by the stop flag (a signal).
    pub interrupted: bool,
    /// Frames written to the pcapng file.
    pub pcap_frames: u64,
}

/// Health problems, each reported once.
#[derive(Default)]
struct Problems {
    list: Vec<String>,
}

impl Problems {
    fn push(&mut self, start: Instant, what: impl std::fmt::Display) {
        let msg = format!(
            "{what} ({:.1} s into the watch)",
            start.elapsed().as_secs_f64()
        );
        self.list.push(msg);
    }
}

/// Writes `path` atomically (temporary file, then rename), so a reader never
/// sees it half written.
fn write_ready_file(path: &Path, iface: &str) -> Result<(), SessionError> {
    let err = |source| SessionError::ReadyFile {
        path: path.to_owned(),
        source,
    };
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    let body = format!(
        "{{\"ready\": true, \"interface\": {}, \"pid\": {}}}\n",
        serde_json::Value::from(iface),
        std::process::id()
    );
    std::fs::write(&tmp, body).map_err(err)?;
    std::fs::rename(&tmp, path).map_err(err)
}

/// A leak record for a frame that has the canary EtherType but is not one of
/// this session's canaries: nothing proves it harmless.
fn foreign_canary_leak(data: &[u8]) -> Leak {
    let mac = |r: std::ops::Range<usize>| data.get(r).and_then(|b| <[u8; 6]>::try_from(b).ok());
    Leak {
        family: LeakFamily::Other,
        cause: LeakCause::Unexpected,
        src_mac: mac(6..12),
        dst_mac: mac(0..6),
        ethertype: Some(leaktest_capture::CANARY_ETHERTYPE),
        protocol: None,
        src: None,
        dst: None,
        src_port: None,
        dst_port: None,
        icmp_type: None,
        tcp_flags: None,
        fragment: false,
        probe: None,
    }
}

/// Runs one watch until `cfg.duration` passes or `stop` is raised. Leak
/// groups are printed to `live` as they first appear.
pub fn run(
    cfg: SessionConfig,
    stop: &AtomicBool,
    live: &mut dyn Write,
) -> Result<SessionOutcome, SessionError> {
    let iface = cfg.capture.iface.clone();
    // Everything that can fail outright happens before the capture starts.
    let mut monitor =
        IfaceMonitor::new(&iface).ok_or_else(|| CaptureError::NoSuchInterface(iface.clone()))?;
    let feed = match cfg.tor_control.clone() {
        Some(opts) => AllowlistFeed::start(opts, cfg.allow.clone())?,
        None => AllowlistFeed::fixed(cfg.allow.clone()),
    };
    let canary_err = |e: &dyn std::fmt::Display| SessionError::Canary {
        iface: iface.clone(),
        msg: e.to_string(),
    };
    let injector = CanaryInjector::open(&iface).map_err(|e| canary_err(&e))?;
    let mut canary = Canary::new(injector.mac()).map_err(|e| canary_err(&e))?;
    let first_generation = feed.generation();
    let mut reader = feed.reader();
    let mut pcap = match &cfg.pcap {
        Some(p) => Some(PcapngWriter::create(p, &iface)?),
        None => None,
    };
    let mut classifier = Classifier::new(
        ClassifierConfig {
            strict: cfg.strict,
            own_macs: vec![injector.mac()],
            own_addrs: iface_addresses(&iface),
        },
        cfg.keys.clone(),
    );
    let mut cap = LiveCapture::open(&cfg.capture)?;

    let start = Instant::now();
    let mut findings = Findings::new();
    let mut problems = Problems::default();
    let mut pcap_failed = false;
    let mut ready_pending = cfg.ready_file.clone();
    let mut live_announced = false;
    let mut capture_broken = false;
    let mut canary_send_failed = false;
    let mut feed_outage_reported = false;
    let mut foreign_canaries = 0u64;

    // Handles one batch of frames; returns the capture error, if any.
    let mut drain = |cap: &mut LiveCapture,
                     canary: &mut Canary,
                     classifier: &mut Classifier,
                     findings: &mut Findings,
                     reader: &mut leaktest_tor::AllowlistReader,
                     pcap: &mut Option<PcapngWriter>,
                     problems: &mut Problems,
                     live: &mut dyn Write|
     -> Result<usize, CaptureError> {
        cap.drain(|f| {
            let sighting = if Canary::has_canary_ethertype(f.data) {
                canary.observe(f.data)
            } else {
                CanarySighting::NotCanary
            };
            let class = match sighting {
                CanarySighting::Ours(_) | CanarySighting::Duplicate(_) => Class::Canary,
                CanarySighting::Foreign => {
                    foreign_canaries += 1;
                    Class::Leak(foreign_canary_leak(f.data))
                }
                CanarySighting::NotCanary => {
                    classifier.classify(f.data, LinkType::Ethernet, reader.get())
                }
            };
            let frame = *f;
            if let Some(group) = findings.record(&frame, &class) {
                // A closed stdout must not stop the watch.
                let _ = writeln!(live, "{}", group.live_line());
                let _ = live.flush();
            }
            if let Some(w) = pcap.as_mut() {
                if (matches!(class, Class::Leak(_)) || cfg.pcap_all) && !pcap_failed {
                    if let Err(e) = w.write(&frame) {
                        pcap_failed = true;
                        problems.push(start, format_args!("writing the pcap file failed: {e}"));
                    }
                }
            }
        })
    };

    // Start canary.
    let mut next_canary = Instant::now();
    let mut next_health = Instant::now() + HEALTH_EVERY;
    let deadline = cfg.duration.map(|d| start + d);
    let mut interrupted = false;
    loop {
        if stop.load(Ordering::Relaxed) {
            interrupted = true;
            break;
        }
        let now = Instant::now();
        if deadline.is_some_and(|d| now >= d) {
            break;
        }
        if now >= next_canary {
            if let Err(e) = injector.send_next(&mut canary, now) {
                if !canary_send_failed {
                    canary_send_failed = true;
                    problems.push(start, e);
                }
            }
            next_canary = now + cfg.canary_every;
        }
        if let Err(e) = drain(
            &mut cap,
            &mut canary,
            &mut classifier,
            &mut findings,
            &mut reader,
            &mut pcap,
            &mut problems,
            live,
        ) {
            problems.push(start, format_args!("the capture failed: {e}"));
            capture_broken = true;
            break;
        }
        if canary.seen() > 0 {
            if !live_announced {
                // The moment a person (or script) may start the probes.
                live_announced = true;
                eprintln!("leaktest: capture on {iface} is live (its first canary was seen): start the probes");
            }
            if let Some(path) = ready_pending.take() {
                write_ready_file(&path, &iface)?;
            }
        }
        if Instant::now() >= next_health {
            next_health = Instant::now() + HEALTH_EVERY;
            if let Err(e) = cap.stats() {
                problems.push(
                    start,
                    format_args!("reading the kernel's counters failed: {e}"),
                );
            }
            if let Some(p) = monitor.check() {
                problems.push(start, p);
            }
            if !feed_outage_reported {
                if let Some(o) = feed.first_outage() {
                    feed_outage_reported = true;
                    problems.push(
                        start,
                        format_args!("the Tor allowlist became unavailable: {}", o.reason),
                    );
                }
            }
            classifier.set_own_addrs(iface_addresses(&iface));
        }
    }

    // The end canary, then drain until every canary is seen or the grace
    // period is over (a second signal-free wait, whatever ended the watch).
    if !capture_broken {
        if let Err(e) = injector.send_next(&mut canary, Instant::now()) {
            if !canary_send_failed {
                problems.push(start, e);
            }
        }
        let grace_end = Instant::now() + cfg.end_grace;
        while Instant::now() < grace_end && !canary.missing().is_empty() {
            if let Err(e) = drain(
                &mut cap,
                &mut canary,
                &mut classifier,
                &mut findings,
                &mut reader,
                &mut pcap,
                &mut problems,
                live,
            ) {
                problems.push(start, format_args!("the capture failed: {e}"));
                break;
            }
        }
    }
    if let Some(p) = monitor.check() {
        problems.push(start, p);
    }
    let elapsed = start.elapsed();
    let stats = match cap.stats() {
        Ok(s) => s,
        Err(e) => {
            problems.push(
                start,
                format_args!("reading the kernel's final counters failed: {e}"),
            );
            cap.last_stats()
        }
    };
    if !feed_outage_reported {
        if let Some(o) = feed.first_outage() {
            problems.push(
                start,
                format_args!("the Tor allowlist became unavailable: {}", o.reason),
            );
        }
    }
    if foreign_canaries > 0 {
        problems.push(
            start,
            format_args!(
                "{foreign_canaries} frame(s) with the canary EtherType were not this watch's canaries (another watcher or a forgery); counted as leaks"
            ),
        );
    }
    let allowlist = AllowlistSummary {
        endpoints: feed.current().len(),
        from_control_port: cfg.tor_control.is_some(),
        refreshes: feed.generation().saturating_sub(first_generation),
    };
    drop(reader);
    feed.shutdown();
    let pcap_frames = match pcap {
        Some(w) => {
            let n = w.frames();
            if let Err(e) = w.finish(&stats) {
                problems.push(start, format_args!("finishing the pcap file failed: {e}"));
            }
            n
        }
        None => 0,
    };
    let health = CaptureHealth {
        packets: findings.packets,
        dropped: stats.dropped + stats.if_dropped,
        canaries_sent: canary.sent(),
        canaries_seen: canary.seen(),
        problems: problems.list,
    };
    Ok(SessionOutcome {
        iface,
        findings,
        health,
        stats,
        allowlist,
        elapsed,
        interrupted,
        pcap_frames,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn foreign_canaries_are_recorded_as_leaks() {
        let mut frame = [0u8; 64];
        frame[0..6].copy_from_slice(&[2, 0, 0, 0, 0, 9]);
        frame[6..12].copy_from_slice(&[2, 0, 0, 0, 0, 1]);
        frame[12..14].copy_from_slice(&0x88b5u16.to_be_bytes());
        let leak = foreign_canary_leak(&frame);
        assert_eq!(leak.src_mac, Some([2, 0, 0, 0, 0, 1]));
        assert_eq!(leak.dst_mac, Some([2, 0, 0, 0, 0, 9]));
        assert_eq!(leak.ethertype, Some(0x88b5));
        assert_eq!(leak.family, LeakFamily::Other);
        // Never panics on short frames.
        assert_eq!(foreign_canary_leak(&frame[..3]).src_mac, None);
    }

    #[test]
    fn ready_file_is_written_whole() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("ready");
        write_ready_file(&p, "eth0").unwrap();
        let v: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&p).unwrap()).unwrap();
        assert_eq!(v["ready"], true);
        assert_eq!(v["interface"], "eth0");
        assert!(!dir.path().join("ready.tmp").exists());
    }

    #[test]
    fn missing_interface_is_an_error_before_anything_starts() {
        let cfg = SessionConfig::new("lt-nonexist0");
        let stop = AtomicBool::new(false);
        let e = run(cfg, &stop, &mut Vec::new()).unwrap_err();
        assert!(e.to_string().contains("does not exist"), "{e}");
    }
}
