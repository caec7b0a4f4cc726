//! The watch session: the I/O loop that drives the pure parts of this crate.
//!
//! It opens the capture (leaktest-capture), starts the Tor allowlist feed
//! (leaktest-tor) or uses the `--allow tor:`/`obfs4:` entries alone,
//! classifies every outbound frame, records it in [`Findings`], prints each
//! new leak group live as one line, writes the pcapng of leaks as it goes,
//! and measures the capture's health:
//!
//! * canaries at the start, every [`SessionConfig::canary_every`] and at the
//!   end, each of which the capture must see exactly once and exactly as
//!   built (a grace period at the end lets the ring drain);
//! * the kernel's drop counters, and accounting that closes: at the end the
//!   capture is sealed (detached from the interface) and drained, and the
//!   frames the kernel counted, the frames delivered and the frames
//!   classified must agree;
//! * the interface going down, away or being replaced, and capture errors;
//! * the Tor allowlist feed becoming unavailable at any time.
//!
//! It ends after the duration, or when the stop flag is raised (the CLI
//! raises it on SIGINT/SIGTERM), and always returns the full outcome so the
//! reports are written. Only failures before the watch starts (no capture,
//! no control port, an unwritable pcap file) are errors.

use crate::classify::allow::AllowEntry;
use crate::classify::flows::FlowStats;
use crate::classify::housekeeping::LinkRoutes;
use crate::classify::LeakCause;
use crate::classify::{Class, Classifier, ClassifierConfig, Decision};
use crate::findings::{cause_text, Findings};
use crate::hold::{HeldFrame, Hold};
use crate::pcapng::PcapngWriter;
use crate::report::{AllowlistSummary, ReportError, WatchOutcome, WatchReport};
use crate::verdict::{Accounting, CaptureHealth};
use leaktest_capture::{
    iface_networks, new_ledger, CanaryInjector, CaptureConfig, CaptureError, CaptureStats,
    IfaceMonitor, LiveCapture,
};
use leaktest_tor::{Allowlist, AllowlistFeed, ConnectOptions, PendingFeed, Roles, TorError};
use leaktest_wire::{Frame, FrameSummary, IpProtocol, LinkType, MarkerKeys};
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
    /// Tor endpoints given by hand (`--allow tor:`/`obfs4:`).
    pub tor_extra: Allowlist,
    /// Other `--allow` entries.
    pub allow: Vec<AllowEntry>,
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
            tor_extra: Allowlist::new(),
            allow: Vec::new(),
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
    #[error("dropping privilege: {0}")]
    Sandbox(String),
    #[error("writing the ready file {path}: {source}")]
    ReadyFile {
        path: PathBuf,
        source: std::io::Error,
    },
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
    pub flows: FlowStats,
    pub allow: Vec<AllowEntry>,
    /// How long the capture ran.
    pub elapsed: Duration,
    /// Whether the watch was ended by the stop flag (a signal).
    pub interrupted: bool,
    /// Frames written to the pcapng file.
    pub pcap_frames: u64,
    /// What did not affect the verdict but the user must know (a pcap file
    /// cut short by a full disk); they go into every report's warnings.
    pub warnings: Vec<String>,
    /// When the watch began (Unix ns).
    pub start_unix_ns: u64,
    /// The watched interface going down and coming back up, each seen at
    /// (Unix ns): timeline events ([`crate::timeline`]), not capture
    /// problems by themselves. While it is down (`IFF_UP` and `IFF_RUNNING`
    /// not both set) no canary is sent; every canary that was sent must
    /// still be seen (one lost with the link leaves the watch unproven),
    /// one goes out as soon as the link is up again, and a link still down
    /// at the end is a problem (no end canary can prove the tail).
    ///
    /// Also the Tor allowlist's feed lost (its control port gone: tor
    /// restarting) and current again: while it is lost, frames are judged
    /// against the last list (which only grows, and approves only
    /// endpoints Tor named: a stale list can make a frame a leak, never a
    /// leak Tor). A feed still lost at the end is a problem. Each event:
    /// (source `link` or `tor`, what, when in Unix ns).
    pub link_events: Vec<(&'static str, String, u64)>,
}

impl SessionOutcome {
    /// The report of this watch (and its verdict).
    pub fn report(&self) -> WatchReport {
        let mut r = WatchReport::build(&WatchOutcome {
            iface: &self.iface,
            findings: &self.findings,
            health: &self.health,
            flows: self.flows,
            allowlist: &self.allowlist,
            allow: &self.allow,
            stats: self.stats,
            elapsed_s: self.elapsed.as_secs_f64(),
            interrupted: self.interrupted,
            pcap_frames: self.pcap_frames,
        });
        r.warnings.extend(self.warnings.iter().cloned());
        if !self.link_events.is_empty() {
            let events = self
                .link_events
                .iter()
                .map(|(source, name, at)| crate::timeline::Event {
                    name: name.clone(),
                    source: (*source).into(),
                    at_s: at.saturating_sub(self.start_unix_ns) as f64 / 1e9,
                    start_unix_ns: *at,
                    end_unix_ns: None,
                    exit_code: None,
                    problem: None,
                })
                .collect();
            crate::timeline::annotate(&mut r, self.start_unix_ns, events);
        }
        r
    }
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

/// Writes `path` atomically (temporary file, then rename over a regular
/// file or nothing), so a reader never sees it half written.
pub fn write_ready_file(path: &Path, iface: &str) -> Result<(), SessionError> {
    let body = format!(
        "{{\"ready\": true, \"interface\": {}, \"pid\": {}}}\n",
        serde_json::Value::from(iface),
        std::process::id()
    );
    leaktest_fs::write_atomic("--ready-file", path, |w| w.write_all(body.as_bytes())).map_err(|e| {
        SessionError::ReadyFile {
            path: path.to_owned(),
            source: std::io::Error::other(e.to_string()),
        }
    })
}

/// The pcapng comment of a frame: the rule that decided it and why it leaked.
fn pcap_comment(d: &Decision) -> String {
    match &d.class {
        Class::Leak(l) => format!("leak: {} [rule {}]", cause_text(l.cause), d.rule),
        _ => format!("rule {}", d.rule),
    }
}

/// The interface's connected routes and next hops, as the classifier takes them.
fn link_routes_of(iface: &str) -> LinkRoutes {
    let r = leaktest_capture::link_routes(iface);
    LinkRoutes {
        prefixes: r.prefixes,
        next_hops: r.next_hops,
    }
}

/// Nanoseconds since `start` (the clock of the canary ledger).
fn ns_since(start: Instant) -> u64 {
    start.elapsed().as_nanos() as u64
}

fn unix_ns_of(t: std::time::SystemTime) -> u64 {
    t.duration_since(std::time::SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
}

/// Timeline events of the Tor allowlist feed: lost (its control port gone,
/// e.g. tor restarting), and current again (see
/// [`SessionOutcome::link_events`]).
fn feed_events(
    feed: &AllowlistFeed,
    lost: &mut bool,
    events: &mut Vec<(&'static str, String, u64)>,
) {
    match feed.health() {
        leaktest_tor::FeedHealth::Unavailable { since, reason } if !*lost => {
            *lost = true;
            events.push((
                "tor",
                format!("Tor's allowlist unavailable: {reason}"),
                unix_ns_of(since),
            ));
        }
        leaktest_tor::FeedHealth::Live { .. } if *lost => {
            *lost = false;
            events.push(("tor", "Tor's allowlist current again".into(), unix_now_ns()));
        }
        _ => {}
    }
}

fn unix_now_ns() -> u64 {
    unix_ns_of(std::time::SystemTime::now())
}

/// The watched interface: its monitor and whether an unbound capture was
/// already reported.
struct Watched {
    monitor: IfaceMonitor,
    unbound_reported: bool,
    /// When the capture was last bound to a re-created interface: read
    /// errors libpcap reports for the vanished one are expected shortly
    /// after (see the drain loop).
    rebound_at: Option<Instant>,
    /// The watch is over (the capture sealed): a change now cannot be
    /// followed or proven, so it is a problem.
    ended: bool,
}

/// Looks at the interface and acts on what changed: a lost interface is a
/// problem; down, up again, gone and back (re-created, with the capture
/// bound to it again) are link events (see [`SessionOutcome::link_events`]);
/// coming up or back up asks for a canary at once (the capture must be
/// proven again). No canary is ever forgiven: one lost when the link went
/// down or away stays missing. A capture no longer bound to the interface
/// it follows (it left the namespace and came back between two looks) is
/// a problem. Returns whether it went down or away just now.
fn look_at_iface(
    w: &mut Watched,
    cap: &mut LiveCapture,
    iface: &str,
    start: Instant,
    problems: &mut Problems,
    link_events: &mut Vec<(&'static str, String, u64)>,
    next_canary: &mut Instant,
) -> bool {
    use leaktest_capture::IfaceChange;
    let mut change = w.monitor.check();
    if w.ended {
        // After the seal nothing is followed: a change is unproven (the
        // binding is still checked below).
        match change.take() {
            Some(IfaceChange::Lost(what) | IfaceChange::Gone(what)) => {
                problems.push(start, format_args!("at the end of the watch: {what}"))
            }
            Some(IfaceChange::Back { what, .. }) => {
                problems.push(start, format_args!("at the end of the watch: {what}"))
            }
            _ => {}
        }
    } else if let Some(IfaceChange::Back { ifindex, what }) = change.clone() {
        // Bound first, then proven: still down and never up once bound.
        change = match cap.rebind(ifindex) {
            Ok(()) => match w.monitor.confirm_back() {
                None => {
                    w.rebound_at = Some(Instant::now());
                    Some(IfaceChange::Back { ifindex, what })
                }
                other => other,
            },
            Err(e) => {
                problems.push(
                    start,
                    format_args!("following the re-created interface {iface} failed: {e}"),
                );
                None
            }
        };
    }
    let went_down = matches!(change, Some(IfaceChange::Down(_) | IfaceChange::Gone(_)));
    match change {
        Some(IfaceChange::Lost(p)) => problems.push(start, p),
        Some(IfaceChange::Down(what) | IfaceChange::Gone(what)) => {
            link_events.push(("link", what, unix_now_ns()));
        }
        // Down until it comes up (an Up event, then a canary).
        Some(IfaceChange::Back { what, .. }) => {
            link_events.push(("link", what, unix_now_ns()));
        }
        Some(IfaceChange::Up) => {
            link_events.push((
                "link",
                format!("interface {iface} is up again"),
                unix_now_ns(),
            ));
            *next_canary = Instant::now();
        }
        None => {}
    }
    if !w.monitor.is_gone() && !w.unbound_reported {
        let bound = cap.bound_ifindex();
        if bound.as_ref().ok() != Some(&(w.monitor.ifindex() as i32)) {
            w.unbound_reported = true;
            problems.push(
                start,
                format_args!(
                    "the capture is no longer bound to interface {iface} (ifindex {}; bound: {}): it left the network namespace, or was replaced, between two looks",
                    w.monitor.ifindex(),
                    match bound {
                        Ok(i) => i.to_string(),
                        Err(e) => e.to_string(),
                    }
                ),
            );
        }
    }
    went_down
}

/// Runs one watch until `cfg.duration` passes or `stop` is raised. Leak
/// groups are printed to `live` as they first appear.
pub fn run(
    cfg: SessionConfig,
    stop: &AtomicBool,
    live: &mut dyn Write,
) -> Result<SessionOutcome, SessionError> {
    run_with(cfg, stop, live, &mut NoHooks)
}

/// What a caller may do at the two moments of a watch that concern
/// privilege (see `leaktest_priv` and the CLI's privilege separation).
pub trait SessionHooks {
    /// Called once everything that needs privilege is open (the capture, the
    /// canary socket, the Tor control connection with its cookie read, the
    /// pcapng file) and before any frame is read or any thread started: a
    /// privilege-separated caller drops privilege here. An error ends the
    /// watch before it begins.
    ///
    /// `feed` is the Tor control connection, connected and holding the first
    /// allowlist (`None` without `--tor-control`); the hook returns the feed
    /// the watch reads from. The default starts its refresh thread here; a
    /// privilege-separated caller keeps the connection in its privileged
    /// monitor and returns a detached feed that it updates through
    /// [`SessionHooks::poll_feed`].
    fn opened(
        &mut self,
        opened: Opened<'_>,
        feed: Option<PendingFeed>,
    ) -> Result<Option<AllowlistFeed>, SessionError> {
        let _ = opened;
        Ok(match feed {
            Some(p) => Some(p.spawn()?),
            None => None,
        })
    }

    /// Called every health check (a quarter of a second) and at the end: a
    /// chance to publish allowlist updates and outages that arrived from
    /// elsewhere ([`AllowlistFeed::publish_update`]).
    fn poll_feed(&mut self, feed: &AllowlistFeed) {
        let _ = feed;
    }

    /// Sends one canary frame ([`CANARY_FRAME_LEN`] bytes, built by the
    /// ledger); `None`: send it on the session's own canary socket. A
    /// sandboxed reader that may not send frames hands them to its monitor.
    ///
    /// [`CANARY_FRAME_LEN`]: leaktest_wire::canary::CANARY_FRAME_LEN
    fn send_canary(&mut self, frame: &[u8]) -> Option<std::io::Result<()>> {
        let _ = frame;
        None
    }

    /// Called once, when the capture is proven live (its first canary was
    /// seen), with [`SessionConfig::ready_file`]. The default writes it.
    fn ready(&mut self, path: &Path, iface: &str) -> Result<(), SessionError> {
        write_ready_file(path, iface)
    }
}

/// What [`SessionHooks::opened`] is shown: the canary socket (a monitor
/// keeps sending canaries on it) and the capture's descriptor (a sandbox
/// forbids sending on both).
pub struct Opened<'a> {
    pub injector: &'a CanaryInjector,
    pub capture_fd: std::os::fd::RawFd,
}

/// Sends the ledger's next canary through the hooks (or the socket) and
/// records it as sent.
fn send_canary(
    injector: &CanaryInjector,
    hooks: &mut dyn SessionHooks,
    ledger: &mut leaktest_wire::canary::CanaryLedger,
    at_ns: u64,
) -> Result<(), String> {
    let (id, frame) = ledger.next_frame();
    let sent = match hooks.send_canary(&frame) {
        Some(r) => r,
        None => injector.send_frame(&frame),
    };
    sent.map_err(|e| format!("sending canary {id}: {e}"))?;
    ledger.mark_sent(id, at_ns);
    Ok(())
}

/// The hooks of an unseparated watch: nothing dropped, the ready file written here.
pub struct NoHooks;

impl SessionHooks for NoHooks {}

/// The held frames to judge now ([`Hold::release`]): looked at only when
/// the allowlist changed (`generation` differs from `*seen`), a wait ended,
/// or (`all`) the watch ends.
fn take_released(
    hold: &mut Hold,
    reader: &mut leaktest_tor::AllowlistReader,
    generation: u64,
    seen: &mut u64,
    all: bool,
) -> Vec<HeldFrame> {
    let now = Instant::now();
    if hold.is_empty()
        || !(all || generation != *seen || hold.next_deadline().is_some_and(|d| now >= d))
    {
        return Vec::new();
    }
    *seen = generation;
    let tor = reader.get();
    // Only the consensus, which the directory authorities sign, may approve
    // a frame after the fact: a `Bridge`, `FallbackDir` or proxy set over
    // the control port after the frame left does not (crate::hold).
    hold.release(
        |ep| {
            tor.roles(ep)
                .is_some_and(|r| r.contains(Roles::IN_CONSENSUS))
        },
        now,
        all,
    )
}

/// [`run`] with [`SessionHooks`].
pub fn run_with(
    cfg: SessionConfig,
    stop: &AtomicBool,
    live: &mut dyn Write,
    hooks: &mut dyn SessionHooks,
) -> Result<SessionOutcome, SessionError> {
    let iface = cfg.capture.iface.clone();
    // Everything that can fail outright happens before the capture starts.
    let mut watched = Watched {
        monitor: IfaceMonitor::new(&iface)
            .ok_or_else(|| CaptureError::NoSuchInterface(iface.clone()))?,
        unbound_reported: false,
        rebound_at: None,
        ended: false,
    };
    // Whether the followed (re-created) uplink got addresses again.
    let mut readdressed = false;
    // Connected (the cookie read) now; the refresh thread starts after the
    // hook, with whatever credentials the hook left.
    let pending = match cfg.tor_control.clone() {
        Some(opts) => Some(AllowlistFeed::connect(opts, cfg.tor_extra.clone())?),
        None => None,
    };
    let canary_err = |e: &dyn std::fmt::Display| SessionError::Canary {
        iface: iface.clone(),
        msg: e.to_string(),
    };
    let injector = CanaryInjector::open(&iface).map_err(|e| canary_err(&e))?;
    let ledger = new_ledger(injector.mac()).map_err(|e| canary_err(&e))?;
    let mut pcap = match &cfg.pcap {
        Some(p) => Some(PcapngWriter::create(p, &iface)?),
        None => None,
    };
    let mut classifier = Classifier::new(
        ClassifierConfig {
            strict: cfg.strict,
            own_macs: vec![injector.mac()],
            own_nets: iface_networks(&iface),
            routes: link_routes_of(&iface),
            allow: cfg.allow.clone(),
        },
        LinkType::Ethernet,
        cfg.keys.clone(),
    )
    .with_canaries(ledger);
    let mut cap = LiveCapture::open(&cfg.capture)?;
    // A link change (the uplink deleted, re-created) ends a wait at once.
    cap.set_wake_fd(watched.monitor.wake_fd());
    // Everything privileged is open: the caller may drop privilege now,
    // before a single frame is read.
    let feed = hooks
        .opened(
            Opened {
                injector: &injector,
                capture_fd: cap.raw_fd(),
            },
            pending,
        )?
        .unwrap_or_else(|| AllowlistFeed::fixed(cfg.tor_extra.clone()));
    let first_generation = feed.generation();
    let mut reader = feed.reader();

    let start = Instant::now();
    let start_unix_ns = unix_now_ns();
    let mut link_events: Vec<(&'static str, String, u64)> = Vec::new();
    // The allowlist feed is lost (since the event recorded for it).
    let mut feed_lost = false;
    let mut findings = Findings::new();
    let mut problems = Problems::default();
    let mut ready_pending = cfg.ready_file.clone();
    let mut live_announced = false;
    let mut capture_broken = false;
    let mut canary_send_failed = false;
    let mut handled = 0u64;

    // Handles one frame: classify, record, print a new group, write the
    // pcap. With `may_hold`, TCP that would be an unexpected leak waits for
    // an allowlist refresh instead ([`crate::hold`]), and so does every
    // later frame to a held endpoint.
    let can_hold = cfg.tor_control.is_some();
    let mut hold = Hold::default();
    let mut handle = |f: &Frame<'_>,
                      classifier: &mut Classifier,
                      findings: &mut Findings,
                      reader: &mut leaktest_tor::AllowlistReader,
                      pcap: &mut Option<PcapngWriter>,
                      live: &mut dyn Write,
                      hold: &mut Hold,
                      may_hold: bool,
                      as_it_was: bool| {
        if may_hold && !hold.is_empty() {
            let s = FrameSummary::parse(f.data, LinkType::Ethernet);
            if let Some(ep) = crate::classify::flows::endpoint(&s) {
                // (With no room left it is judged now, out of turn: a
                // flow's frames out of order can only make it a leak.)
                if s.ip.is(IpProtocol::TCP) && hold.holds(&ep) && hold.has_room(f.data.len()) {
                    hold.push(f, ep, Instant::now());
                    return;
                }
            }
        }
        // A held frame whose wait ended unapproved is judged as it was when
        // it left: no Tor endpoint approved it then, and none set since (a
        // `Bridge` over the control port) may approve it after the fact.
        let d = if as_it_was {
            classifier.classify(f, &Allowlist::new())
        } else {
            classifier.classify(f, reader.get())
        };
        if may_hold && can_hold {
            if let Class::Leak(l) = &d.class {
                if l.cause == LeakCause::Unexpected
                    && l.probe.is_none()
                    && l.summary.ip.is(IpProtocol::TCP)
                    && classifier.sent_by_us(l.summary.ip.src)
                {
                    if let Some(ep) = crate::classify::flows::endpoint(&l.summary) {
                        if hold.may_hold(&ep, f.data.len()) {
                            hold.push(f, ep, Instant::now());
                            return;
                        }
                    }
                }
            }
        }
        handled += 1;
        if let Some(group) = findings.record(f, &d) {
            // A closed stdout must not stop the watch.
            let _ = writeln!(live, "{}", group.live_line());
            let _ = live.flush();
        }
        if let Some(w) = pcap.as_mut() {
            if matches!(d.class, Class::Leak(_)) || cfg.pcap_all {
                // A failed write cuts the file back to whole blocks and
                // later frames are only counted: the summary at the end
                // says how many made it (a warning; the verdict stands).
                let _ = w.write_with_comment(f, Some(pcap_comment(&d)));
            }
        }
    };
    let mut hold_generation = feed.generation();
    // Judges the held frames [`take_released`] lets go (`all`: every one),
    // each approved one with the allowlist now, the others as they were.
    macro_rules! judge_released {
        ($all:expr) => {
            for h in take_released(
                &mut hold,
                &mut reader,
                feed.generation(),
                &mut hold_generation,
                $all,
            ) {
                handle(
                    &h.frame(),
                    &mut classifier,
                    &mut findings,
                    &mut reader,
                    &mut pcap,
                    live,
                    &mut hold,
                    false,
                    !h.approved,
                );
            }
        };
    }
    let canaries_seen = |c: &Classifier| c.canaries().map_or(0, |l| l.seen());
    let canaries_missing = |c: &Classifier| c.canaries().is_some_and(|l| !l.missing().is_empty());

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
        if now >= next_canary && !watched.monitor.is_down() {
            next_canary = now + cfg.canary_every;
            if let Some(l) = classifier.canaries_mut() {
                if let Err(e) = send_canary(&injector, &mut *hooks, l, ns_since(start)) {
                    // A link that went down since the last look: an event,
                    // not a failure of the capture.
                    let went_down = look_at_iface(
                        &mut watched,
                        &mut cap,
                        &iface,
                        start,
                        &mut problems,
                        &mut link_events,
                        &mut next_canary,
                    );
                    if !went_down && !watched.monitor.is_down() && !canary_send_failed {
                        canary_send_failed = true;
                        problems.push(start, e);
                    }
                }
            }
        }
        let r = cap.drain(|f| {
            handle(
                f,
                &mut classifier,
                &mut findings,
                &mut reader,
                &mut pcap,
                live,
                &mut hold,
                true,
                false,
            )
        });
        let woken = cap.woken() || watched.monitor.link_event_pending();
        if let Err(e) = r {
            // libpcap reports an interface that disappeared (its check of
            // the name after ENETDOWN) as an error; the handle works again
            // once bound to one of that name. Tolerated while the
            // interface is gone, and for 2 s after the capture followed a
            // re-created one; any other read error ends the watch.
            look_at_iface(
                &mut watched,
                &mut cap,
                &iface,
                start,
                &mut problems,
                &mut link_events,
                &mut next_canary,
            );
            // Lost: already a problem (INCONCLUSIVE); the watch runs on to
            // its end (its --run-at commands are not cut short).
            let followed = watched.monitor.is_gone()
                || watched.monitor.is_lost()
                || watched
                    .rebound_at
                    .is_some_and(|t| t.elapsed() < Duration::from_secs(2));
            if !followed {
                problems.push(start, format_args!("the capture failed: {e}"));
                capture_broken = true;
                break;
            }
            // Not a busy loop while it is gone or lost: wait for a link change.
            watched.monitor.wait_link_event(Duration::from_millis(20));
        } else if woken || watched.monitor.is_gone() {
            // A link change: look at once (a re-created interface must be
            // followed before it comes up).
            if watched.monitor.is_gone() && !woken {
                watched.monitor.wait_link_event(Duration::from_millis(20));
            }
            look_at_iface(
                &mut watched,
                &mut cap,
                &iface,
                start,
                &mut problems,
                &mut link_events,
                &mut next_canary,
            );
        }
        judge_released!(false);
        if canaries_seen(&classifier) > 0 {
            if !live_announced {
                // The moment a person (or script) may start the probes.
                live_announced = true;
                eprintln!("leaktest: capture on {iface} is live (its first canary was seen): start the probes");
            }
            if let Some(path) = ready_pending.take() {
                hooks.ready(&path, &iface)?;
            }
        }
        if Instant::now() >= next_health {
            next_health = Instant::now() + HEALTH_EVERY;
            hooks.poll_feed(&feed);
            if let Err(e) = cap.stats() {
                problems.push(
                    start,
                    format_args!("reading the kernel's counters failed: {e}"),
                );
            }
            look_at_iface(
                &mut watched,
                &mut cap,
                &iface,
                start,
                &mut problems,
                &mut link_events,
                &mut next_canary,
            );
            feed_events(&feed, &mut feed_lost, &mut link_events);
            // While the uplink is gone or has no address yet (re-created),
            // its last addresses stay its own: an ARP of the re-created
            // interface is not judged against an empty list.
            let nets = iface_networks(&iface);
            let keep = nets.is_empty()
                && (watched.monitor.is_gone() || watched.rebound_at.is_some_and(|_| !readdressed));
            if !keep {
                readdressed |= watched.rebound_at.is_some() && !nets.is_empty();
                classifier.set_own_nets(nets, link_routes_of(&iface));
            }
        }
    }

    // The end canary, then drain until every canary is seen or the grace
    // period is over (a second signal-free wait, whatever ended the watch).
    let mut sealed = false;
    // A link down at the end takes no end canary, so nothing proves the
    // capture after its last canary was seen: not proven.
    if watched.monitor.is_down() {
        problems.push(
            start,
            format_args!(
                "interface {iface} was {} when the watch ended: no end canary could prove the capture after the last one seen",
                if watched.monitor.is_gone() { "gone" } else { "down" }
            ),
        );
    }
    if !capture_broken && !watched.monitor.is_down() {
        if let Some(l) = classifier.canaries_mut() {
            if let Err(e) = send_canary(&injector, &mut *hooks, l, ns_since(start)) {
                if !canary_send_failed {
                    problems.push(start, e);
                }
            }
        }
        let grace_end = Instant::now() + cfg.end_grace;
        while Instant::now() < grace_end && canaries_missing(&classifier) {
            let r = cap.drain(|f| {
                handle(
                    f,
                    &mut classifier,
                    &mut findings,
                    &mut reader,
                    &mut pcap,
                    live,
                    &mut hold,
                    true,
                    false,
                )
            });
            if let Err(e) = r {
                problems.push(start, format_args!("the capture failed: {e}"));
                capture_broken = true;
                break;
            }
        }
    }
    // Seal: nothing more enters the ring or the kernel's count; what is in
    // the ring is still classified.
    if !capture_broken {
        let r = cap.seal(|f| {
            handle(
                f,
                &mut classifier,
                &mut findings,
                &mut reader,
                &mut pcap,
                live,
                &mut hold,
                true,
                false,
            )
        });
        match r {
            Ok(_) => sealed = true,
            Err(e) => problems.push(start, format_args!("sealing the capture failed: {e}")),
        }
    }
    // The last look, right after the seal: a change since the last one
    // (gone, re-created, replaced, the capture unbound) is a problem; one
    // after it no longer matters.
    watched.ended = true;
    look_at_iface(
        &mut watched,
        &mut cap,
        &iface,
        start,
        &mut problems,
        &mut link_events,
        &mut next_canary,
    );
    // Held frames: each gets the rest of its wait for a refresh (polled as
    // at every health check; the oldest's deadline, recomputed as frames
    // leave), then every one is judged.
    // (Every frame's wait is bounded, and the capture is sealed: this ends
    // within HOLD_MAX.)
    while !hold.is_empty() {
        {
            hooks.poll_feed(&feed);
            judge_released!(false);
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    judge_released!(true);
    let elapsed = start.elapsed();
    let stats = match cap.stats() {
        Ok(s) => s,
        Err(e) => {
            problems.push(
                start,
                format_args!("reading the kernel's final counters failed: {e}"),
            );
            sealed = false;
            cap.last_stats()
        }
    };
    hooks.poll_feed(&feed);
    feed_events(&feed, &mut feed_lost, &mut link_events);
    if let leaktest_tor::FeedHealth::Unavailable { reason, .. } = feed.health() {
        problems.push(
            start,
            format_args!("the Tor allowlist became unavailable and was not current again by the end: {reason}"),
        );
    } else if let (Some(o), false) = (
        feed.first_outage(),
        link_events.iter().any(|(src, _, _)| *src == "tor"),
    ) {
        // Lost and back between two looks: still on the timeline.
        let at = unix_ns_of(o.since);
        link_events.push((
            "tor",
            format!("Tor's allowlist unavailable: {}", o.reason),
            at,
        ));
        link_events.push(("tor", "Tor's allowlist current again".into(), at));
    }
    let allowlist = AllowlistSummary {
        endpoints: feed.current().len(),
        from_control_port: cfg.tor_control.is_some(),
        refreshes: feed.generation().saturating_sub(first_generation),
        held_frames: hold.held,
    };
    drop(reader);
    feed.shutdown();
    let mut warnings = Vec::new();
    let pcap_frames = match (pcap, &cfg.pcap) {
        (Some(w), Some(path)) => {
            let summary = w.finish(&stats);
            warnings.extend(summary.warning(path));
            // Its directory removed (or the file deleted) during the watch: the frames are
            // gone with it, whatever the writes said.
            if summary.error.is_none() && std::fs::symlink_metadata(path).is_err() {
                warnings.push(format!(
                    "pcap {}: the file was removed during the watch; its {} frames are lost",
                    path.display(),
                    summary.written
                ));
            }
            summary.written
        }
        _ => 0,
    };
    let (sent, seen) = classifier
        .canaries()
        .map_or((0, 0), |l| (l.sent(), l.seen()));
    let flows = classifier.flows().stats();
    let health = CaptureHealth {
        packets: findings.packets,
        dropped: stats.dropped + stats.if_dropped,
        canaries_sent: sent,
        canaries_seen: seen,
        accounting: Some(Accounting {
            kernel_received: stats.received,
            delivered: cap.delivered(),
            barrier: cap.barrier_frames(),
            handled,
            classified: findings.classified(),
            sealed,
        }),
        untracked_flow_frames: flows.untracked_frames,
        problems: problems.list,
    };
    Ok(SessionOutcome {
        iface,
        findings,
        health,
        stats,
        allowlist,
        flows,
        allow: cfg.allow,
        elapsed,
        interrupted,
        pcap_frames,
        warnings,
        start_unix_ns,
        link_events,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ready_file_is_written_whole() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("ready");
        write_ready_file(&p, "eth0").unwrap();
        let v: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&p).unwrap()).unwrap();
        assert_eq!(v["ready"], true);
        assert_eq!(v["interface"], "eth0");
        assert_eq!(
            std::fs::read_dir(dir.path()).unwrap().count(),
            1,
            "no temporary file left"
        );
    }

    #[test]
    fn missing_interface_is_an_error_before_anything_starts() {
        let cfg = SessionConfig::new("lt-nonexist0");
        let stop = AtomicBool::new(false);
        let e = run(cfg, &stop, &mut Vec::new()).unwrap_err();
        assert!(e.to_string().contains("does not exist"), "{e}");
    }
}
