//! The watch's timeline: events that mark moments of change (`leaktest
//! watch --run-at SECONDS 'COMMAND'`, a line on `--event-fifo`), and what
//! leaked around each. Pure: the events come in with their times, the
//! report goes out annotated ([`annotate`]).
//!
//! Times are Unix nanoseconds of the system clock: the capture's frame
//! timestamps are (libpcap's default `CLOCK_REALTIME` stamps) and so are the
//! event times the watcher takes when it starts a command or reads a line.
//!
//! Phases: the watch before the first event is the phase `start`; each
//! event begins a phase that lasts until the next event begins. A leak
//! belongs to the last event that began at or before its capture time, and
//! says how many milliseconds after that event's start it left
//! (`since_event_ms`). A phase's verdict: LEAK if a packet leaked in it;
//! else INCONCLUSIVE if the watch as a whole could not prove it saw (any
//! capture problem, a canary not seen, too few frames accounted for: the
//! watch's `capture.unproven`), or if the leak details were cut short (a
//! phase's leaks, if any, may not have been kept); else PASS.

use crate::report::WatchReport;
use crate::verdict::Verdict;
use serde::{Deserialize, Serialize};

/// One event on the timeline.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Event {
    /// What the operator called it: the `--event-fifo` line, or the
    /// `--run-at` command.
    pub name: String,
    /// `run-at` or `fifo`.
    pub source: String,
    /// Seconds after the watch began (the capture was open).
    pub at_s: f64,
    pub start_unix_ns: u64,
    /// When its command ended (`run-at` only; `None` while it ran to the
    /// end of the watch, when it was ended).
    pub end_unix_ns: Option<u64>,
    /// The command's exit status (`run-at`), or `None` (killed by a
    /// signal, still running at the end, or a `fifo` event).
    pub exit_code: Option<i32>,
    /// What went wrong running it, if anything.
    #[serde(default)]
    pub problem: Option<String>,
}

impl Event {
    /// How long its command ran, in ms.
    pub fn ran_ms(&self) -> Option<f64> {
        self.end_unix_ns
            .map(|e| e.saturating_sub(self.start_unix_ns) as f64 / 1e6)
    }
}

/// What leaked in one phase.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Phase {
    /// `start`, or the event that began it.
    pub name: String,
    pub from_unix_ns: u64,
    /// `None`: the phase lasted to the end of the watch.
    pub to_unix_ns: Option<u64>,
    pub verdict: Verdict,
    pub leak_packets: u64,
    /// Of those, packets of a probe.
    pub probe_leak_packets: u64,
    /// The first and last leak, ms after the phase began.
    pub first_leak_ms: Option<f64>,
    pub last_leak_ms: Option<f64>,
    /// The pulse rounds (lowest, highest) of the probes that leaked.
    pub rounds: Option<(u32, u32)>,
    /// What leaked, most packets first: `"ipv4 udp/53 ×12"`.
    pub what: Vec<String>,
}

impl Phase {
    /// One line for people: `phase 'reload' (from 1.002 s): LEAK, 12
    /// packets 40-220 ms after it began (rounds 10-12): ipv4 udp/53 ×12`.
    pub fn line(&self, watch_start_unix_ns: u64) -> String {
        let from = self.from_unix_ns.saturating_sub(watch_start_unix_ns) as f64 / 1e9;
        let mut s = format!("phase '{}' (from {from:.3} s): {}", self.name, self.verdict);
        if self.leak_packets > 0 {
            s.push_str(&format!(
                ", {} packet(s) {:.0}-{:.0} ms after it began",
                self.leak_packets,
                self.first_leak_ms.unwrap_or(0.0),
                self.last_leak_ms.unwrap_or(0.0)
            ));
            if let Some((a, b)) = self.rounds {
                s.push_str(&format!(" (pulse rounds {a}-{b})"));
            }
            s.push_str(": ");
            s.push_str(&self.what.join(", "));
        }
        s
    }
}

/// Most distinct kinds of leak a phase lists in `what`.
pub const MAX_PHASE_KINDS: usize = 8;

/// Adds the events, each leak's event and `since_event_ms`, and the phases
/// with their verdicts to `report`. `watch_start_unix_ns` is the moment
/// the watch began (the first phase's start). Events may come in any
/// order; they are sorted by start, with those the report already has (the
/// watcher's own link events: the interface down, up again).
pub fn annotate(report: &mut WatchReport, watch_start_unix_ns: u64, mut events: Vec<Event>) {
    // Events already there (the watch's own link events) stay.
    events.append(&mut report.events);
    events.sort_by_key(|e| e.start_unix_ns);
    // Phase starts: the watch, then each event.
    let mut starts: Vec<(String, u64)> = vec![("start".into(), watch_start_unix_ns)];
    starts.extend(events.iter().map(|e| (e.name.clone(), e.start_unix_ns)));
    let phase_of = |ts: u64| -> usize { starts.iter().rposition(|(_, s)| *s <= ts).unwrap_or(0) };
    struct Acc {
        packets: u64,
        probes: u64,
        first: Option<u64>,
        last: Option<u64>,
        rounds: Option<(u32, u32)>,
        kinds: Vec<(String, u64)>,
    }
    let mut acc: Vec<Acc> = starts
        .iter()
        .map(|_| Acc {
            packets: 0,
            probes: 0,
            first: None,
            last: None,
            rounds: None,
            kinds: Vec::new(),
        })
        .collect();
    for l in report.leaks.iter_mut() {
        let ts = l.ts_sec * 1_000_000_000 + u64::from(l.ts_nsec);
        let i = phase_of(ts);
        if i > 0 {
            l.event = Some(starts[i].0.clone());
            l.since_event_ms = Some(ts.saturating_sub(starts[i].1) as f64 / 1e6);
        }
        let a = &mut acc[i];
        a.packets += 1;
        a.first = Some(a.first.map_or(ts, |f| f.min(ts)));
        a.last = Some(a.last.map_or(ts, |f| f.max(ts)));
        if let Some(p) = &l.probe {
            a.probes += 1;
            if let Some(r) = p.round {
                a.rounds = Some(a.rounds.map_or((r, r), |(lo, hi)| (lo.min(r), hi.max(r))));
            }
        }
        let kind = l.kind();
        match a.kinds.iter_mut().find(|(k, _)| *k == kind) {
            Some((_, n)) => *n += 1,
            None => a.kinds.push((kind, 1)),
        }
    }
    let unproven = report.verdict == Verdict::Inconclusive
        || !report.capture.problems.is_empty()
        || !report.capture.unproven.is_empty();
    report.phases = starts
        .iter()
        .enumerate()
        .zip(acc)
        .map(|((i, (name, from)), mut a)| {
            let to = starts.get(i + 1).map(|(_, s)| *s);
            // Details kept are the first ones processed, not the first
            // captured (held frames come later): with any cut, a phase
            // without a kept leak may have had one.
            let cut_short = report.leaks_truncated;
            let verdict = if a.packets > 0 {
                Verdict::Leak
            } else if unproven || cut_short {
                Verdict::Inconclusive
            } else {
                Verdict::Pass
            };
            a.kinds.sort_by(|x, y| y.1.cmp(&x.1).then(x.0.cmp(&y.0)));
            let ms = |t: Option<u64>| t.map(|t| t.saturating_sub(*from) as f64 / 1e6);
            Phase {
                name: name.clone(),
                from_unix_ns: *from,
                to_unix_ns: to,
                verdict,
                leak_packets: a.packets,
                probe_leak_packets: a.probes,
                first_leak_ms: ms(a.first),
                last_leak_ms: ms(a.last),
                rounds: a.rounds,
                what: a
                    .kinds
                    .iter()
                    .take(MAX_PHASE_KINDS)
                    .map(|(k, n)| format!("{k} ×{n}"))
                    .collect(),
            }
        })
        .collect();
    report.watch_start_unix_ns = Some(watch_start_unix_ns);
    report.events = events;
}
