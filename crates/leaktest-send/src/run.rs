//! The probe run: walks the plan (families × suites, in catalogue order),
//! writes each probe into a preallocated batch slot, paces the batches and
//! hands them to the family's sender, counting what went out.

use crate::rate::{Rate, RateLimiter};
use crate::socket::{Batch, FrameSender};
use crate::Error;
use leaktest_wire::{Family, ProbeSpec, Suite};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// Largest batch handed to one `sendmmsg` call.
pub const MAX_BATCH: usize = 128;

/// How often the progress callback runs at most.
const PROGRESS_EVERY: Duration = Duration::from_millis(50);

/// Writes probe frames (implemented by `leaktest_wire::ProbeBuilder`).
pub trait ProbeWriter: Send {
    /// Writes `spec` into `buf`, returns its length (0 = nothing to send).
    fn write(&self, spec: &ProbeSpec, buf: &mut [u8]) -> usize;
    /// Marks the probes written from now on with pulse round `round`
    /// ([`leaktest_wire::RunKey::with_round`]).
    fn set_round(&mut self, round: u32);
}

impl ProbeWriter for leaktest_wire::ProbeBuilder {
    fn write(&self, spec: &ProbeSpec, buf: &mut [u8]) -> usize {
        leaktest_wire::ProbeBuilder::write(self, spec, buf)
    }
    fn set_round(&mut self, round: u32) {
        leaktest_wire::ProbeBuilder::set_round(self, round)
    }
}

/// Which probes a run sends: every probe of some suites in some families,
/// or of those only the probes whose `seq` is in a set of ranges (to send
/// again exactly the probes a watcher missed).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Plan {
    families: Vec<Family>,
    suites: Vec<Suite>,
    /// Inclusive `seq` ranges, sorted and merged; `None`: every probe.
    only: Option<Vec<(u32, u32)>>,
}

impl Plan {
    /// Families and suites are deduplicated and put in catalogue order.
    pub fn new(families: &[Family], suites: &[Suite]) -> Plan {
        let mut families = families.to_vec();
        families.sort();
        families.dedup();
        let mut suites = suites.to_vec();
        suites.sort();
        suites.dedup();
        Plan {
            families,
            suites,
            only: None,
        }
    }

    /// Keeps only the probes whose `seq` is in one of the inclusive
    /// `ranges` (e.g. the watcher's `runs[].seqs`).
    pub fn only(mut self, ranges: &[(u32, u32)]) -> Plan {
        let mut r: Vec<(u32, u32)> = ranges.iter().copied().filter(|(a, b)| a <= b).collect();
        r.sort();
        let mut merged: Vec<(u32, u32)> = Vec::new();
        for (a, b) in r {
            match merged.last_mut() {
                Some(last) if a <= last.1.saturating_add(1) => last.1 = last.1.max(b),
                _ => merged.push((a, b)),
            }
        }
        self.only = Some(merged);
        self
    }

    pub fn families(&self) -> &[Family] {
        &self.families
    }

    pub fn suites(&self) -> &[Suite] {
        &self.suites
    }

    /// The probes of one family and suite as runs of catalogue indexes
    /// within the suite (`start..end`).
    fn spans(&self, family: Family, suite: Suite) -> Vec<(u32, u32)> {
        let n = suite.probe_count(family);
        let Some(only) = &self.only else {
            return vec![(0, n)];
        };
        let fam = match family {
            Family::V4 => 0,
            Family::V6 => leaktest_wire::catalogue::SEQ_FAMILY_BIT,
        };
        let (lo, hi) = (fam | suite.base(), (fam | suite.base()) + n - 1);
        only.iter()
            .filter(|(a, b)| *b >= lo && *a <= hi)
            .map(|(a, b)| ((*a).max(lo) - lo, (*b).min(hi) - lo + 1))
            .collect()
    }

    /// Probes of one family.
    pub fn count(&self, family: Family) -> u64 {
        if !self.families.contains(&family) {
            return 0;
        }
        self.suites
            .iter()
            .flat_map(|s| self.spans(family, *s))
            .map(|(a, b)| u64::from(b - a))
            .sum()
    }

    /// Probes of the whole plan.
    pub fn total(&self) -> u64 {
        self.families.iter().map(|f| self.count(*f)).sum()
    }
}

/// One family's writer and sender, used by one sending thread.
pub struct Lane {
    pub family: Family,
    pub writer: Box<dyn ProbeWriter>,
    pub sender: Box<dyn FrameSender>,
}

/// Run settings.
#[derive(Clone, Copy, Debug)]
pub struct RunConfig {
    pub rate: Rate,
    /// Largest batch (the rate may choose smaller ones).
    pub max_batch: usize,
    /// Bytes per frame slot (`leaktest_wire::MAX_PROBE_FRAME`).
    pub slot: usize,
    /// At `Rate::Max`, send from one thread per worker (see [`run`]).
    pub parallel: bool,
}

impl Default for RunConfig {
    fn default() -> Self {
        RunConfig {
            rate: Rate::Pps(10_000),
            max_batch: MAX_BATCH,
            slot: leaktest_wire::MAX_PROBE_FRAME,
            parallel: true,
        }
    }
}

/// A snapshot for progress display.
#[derive(Clone, Copy, Debug)]
pub struct Progress {
    pub done: u64,
    pub total: u64,
    pub family: Family,
    pub suite: Suite,
    pub elapsed: Duration,
    /// Several threads are sending (`family` and `suite` then name the
    /// unit most recently taken).
    pub parallel: bool,
}

/// What a run sent.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RunStats {
    /// Probes the kernel accepted, per family and suite.
    pub sent: BTreeMap<Family, BTreeMap<Suite, u64>>,
    /// Probes the local stack refused (raw IP sockets: firewall drops).
    pub refused: BTreeMap<Family, BTreeMap<Suite, u64>>,
    /// Probes the writer could not build (no endpoints for the family).
    pub unbuilt: u64,
    /// Send retries after ENOBUFS/EAGAIN.
    pub retries: u64,
    /// From the first send to the last.
    pub elapsed: Duration,
    /// False if the run was stopped or failed before the end of the plan.
    pub complete: bool,
}

impl RunStats {
    pub fn sent_family(&self, f: Family) -> u64 {
        self.sent.get(&f).map_or(0, |m| m.values().sum())
    }

    pub fn sent_total(&self) -> u64 {
        self.sent.keys().map(|f| self.sent_family(*f)).sum()
    }

    pub fn refused_total(&self) -> u64 {
        self.refused.values().flat_map(|m| m.values()).sum()
    }

    /// Adds another lane's counts (not its elapsed time).
    pub fn merge(&mut self, other: &RunStats) {
        for (dst, src) in [
            (&mut self.sent, &other.sent),
            (&mut self.refused, &other.refused),
        ] {
            for (f, m) in src {
                for (s, n) in m {
                    *dst.entry(*f).or_default().entry(*s).or_default() += n;
                }
            }
        }
        self.unbuilt += other.unbuilt;
        self.retries += other.retries;
    }

    /// Sent per suite over all families.
    pub fn sent_suite(&self, s: Suite) -> u64 {
        self.sent.values().filter_map(|m| m.get(&s)).sum()
    }

    /// Probes (sent or refused) per second over the run.
    pub fn pps(&self) -> f64 {
        let secs = self.elapsed.as_secs_f64();
        if secs <= 0.0 {
            return 0.0;
        }
        (self.sent_total() + self.refused_total()) as f64 / secs
    }
}

/// A run that ended early with an error; `stats` says what went out before.
#[derive(Debug, thiserror::Error)]
#[error("{error}")]
pub struct RunFailure {
    pub error: Error,
    pub stats: Box<RunStats>,
}

/// Probes per work unit. Sending threads take a family's plan one unit at a
/// time, so threads that share a family split it evenly and a thread that
/// finishes early helps with what is left.
const UNIT: u32 = 4096;

/// A run of consecutive probes of one suite: catalogue indexes
/// `start..end` within the suite.
#[derive(Clone, Copy, Debug)]
struct Unit {
    suite: Suite,
    start: u32,
    end: u32,
}

/// One family's plan cut into units, and how far the threads have taken it.
struct FamilyQueue {
    family: Family,
    units: Vec<Unit>,
    next: AtomicUsize,
}

impl FamilyQueue {
    fn new(plan: &Plan, family: Family) -> FamilyQueue {
        let mut units = Vec::new();
        for &suite in plan.suites() {
            for (mut start, n) in plan.spans(family, suite) {
                while start < n {
                    let end = (start + UNIT).min(n);
                    units.push(Unit { suite, start, end });
                    start = end;
                }
            }
        }
        FamilyQueue {
            family,
            units,
            next: AtomicUsize::new(0),
        }
    }

    fn take(&self) -> Option<Unit> {
        self.units
            .get(self.next.fetch_add(1, Ordering::Relaxed))
            .copied()
    }
}

/// Where the run is, for progress: the family and suite of the unit most
/// recently taken.
struct Position(AtomicU32);

impl Position {
    fn set(&self, family: Family, suite: Suite) {
        let f = Family::BOTH.iter().position(|&x| x == family).unwrap_or(0) as u32;
        let s = Suite::ALL.iter().position(|&x| x == suite).unwrap_or(0) as u32;
        self.0.store(f << 8 | s, Ordering::Relaxed);
    }

    fn get(&self) -> (Family, Suite) {
        let v = self.0.load(Ordering::Relaxed);
        (
            Family::BOTH[(v >> 8) as usize % Family::BOTH.len()],
            Suite::ALL[(v & 0xff) as usize % Suite::ALL.len()],
        )
    }
}

/// Sends the plan. `workers` holds one set of lanes per sending thread; a
/// family that no worker has a lane for is skipped (the plan is the caller's
/// to make consistent). `stop` ends the run early at a batch boundary (e.g.
/// on SIGINT); the stats then say `complete: false`.
///
/// At `Rate::Max` with `cfg.parallel`, every worker sends from its own
/// thread, and workers with a lane for the same family share that family's
/// probes unit by unit (each unit in catalogue order). On a veth the
/// receiving namespace's stack runs in the sender's syscalls, so a second
/// thread uses a second core even for one family. Otherwise, and at any
/// fixed rate (whose pacing is one thread's), only the first worker sends,
/// every probe in catalogue order.
pub fn run(
    plan: &Plan,
    workers: &mut [Vec<Lane>],
    cfg: &RunConfig,
    stop: Option<&AtomicBool>,
    progress: &mut dyn FnMut(&Progress),
) -> Result<RunStats, RunFailure> {
    let total = plan.total();
    let start = Instant::now();
    let done = AtomicU64::new(0);
    let abort = AtomicBool::new(false);
    let position = Position(AtomicU32::new(0));
    if let (Some(&f), Some(&s)) = (plan.families().first(), plan.suites().first()) {
        position.set(f, s);
    }
    let stopped =
        || stop.is_some_and(|s| s.load(Ordering::Relaxed)) || abort.load(Ordering::Relaxed);
    let queues: Vec<FamilyQueue> = plan
        .families()
        .iter()
        .map(|&f| FamilyQueue::new(plan, f))
        .collect();
    let threads = if cfg.parallel && cfg.rate == Rate::Max {
        workers.len()
    } else {
        workers.len().min(1)
    };
    let parallel = threads > 1;
    let results: Vec<(RunStats, Option<Error>)> = std::thread::scope(|scope| {
        let handles: Vec<_> = workers
            .iter_mut()
            .take(threads)
            .enumerate()
            .map(|(i, lanes)| {
                let (queues, done, abort, stopped, position) =
                    (&queues, &done, &abort, &stopped, &position);
                scope.spawn(move || {
                    let mut st = RunStats::default();
                    // Start each thread on a different family, so that two
                    // threads with lanes for both families begin apart.
                    let mut err = None;
                    for k in 0..queues.len() {
                        let queue = &queues[(i + k) % queues.len()];
                        let Some(lane) = lanes.iter_mut().find(|l| l.family == queue.family) else {
                            continue;
                        };
                        if let Err(e) =
                            send_units(queue, lane, cfg, &mut st, done, stopped, position)
                        {
                            abort.store(true, Ordering::Relaxed);
                            err = Some(e);
                            break;
                        }
                    }
                    (st, err)
                })
            })
            .collect();
        let mut last_progress = start;
        while !handles.iter().all(|h| h.is_finished()) {
            std::thread::sleep(Duration::from_millis(5));
            let now = Instant::now();
            if now.duration_since(last_progress) >= PROGRESS_EVERY {
                last_progress = now;
                let (family, suite) = position.get();
                progress(&Progress {
                    done: done.load(Ordering::Relaxed),
                    total,
                    family,
                    suite,
                    elapsed: now.duration_since(start),
                    parallel,
                });
            }
        }
        handles
            .into_iter()
            .map(|h| {
                h.join().unwrap_or_else(|_| {
                    (
                        RunStats::default(),
                        Some(Error::Io(std::io::Error::other("a sender thread panicked"))),
                    )
                })
            })
            .collect()
    });
    let mut stats = RunStats::default();
    let mut first_error = None;
    for (st, err) in results {
        stats.merge(&st);
        if first_error.is_none() {
            first_error = err;
        }
    }
    stats.elapsed = start.elapsed();
    if let Some(error) = first_error {
        return Err(RunFailure {
            error,
            stats: Box::new(stats),
        });
    }
    if stop.is_some_and(|s| s.load(Ordering::Relaxed)) {
        return Ok(stats);
    }
    stats.complete = true;
    if let (Some(&family), Some(&suite)) = (plan.families().last(), plan.suites().last()) {
        progress(&Progress {
            done: done.load(Ordering::Relaxed),
            total,
            family,
            suite,
            elapsed: stats.elapsed,
            parallel: false,
        });
    }
    Ok(stats)
}

/// Sends units of one family's queue until it is empty. Returns early (Ok)
/// when `stopped()` turns true.
fn send_units(
    queue: &FamilyQueue,
    lane: &mut Lane,
    cfg: &RunConfig,
    stats: &mut RunStats,
    done: &AtomicU64,
    stopped: &(dyn Fn() -> bool + Sync),
    position: &Position,
) -> Result<(), Error> {
    let family = lane.family;
    let batch_size = cfg.rate.batch_size(cfg.max_batch);
    let mut batch = Batch::new(batch_size, cfg.slot);
    // Up to four batches (20 ms at a fixed rate) of credit: a sender that
    // was scheduled late (a busy machine) catches up instead of losing rate.
    let mut limiter = RateLimiter::new(cfg.rate, 4 * batch_size);
    let fam_bit = match family {
        Family::V4 => 0,
        Family::V6 => leaktest_wire::catalogue::SEQ_FAMILY_BIT,
    };
    while let Some(unit) = queue.take() {
        position.set(family, unit.suite);
        let base = unit.suite.base() | fam_bit;
        let mut index = unit.start;
        while index < unit.end {
            if stopped() {
                return Ok(());
            }
            batch.clear();
            let mut taken = 0u64;
            while !batch.is_full() && index < unit.end {
                let spec = ProbeSpec::from_seq(base + index).expect("catalogue index in range");
                index += 1;
                taken += 1;
                if !batch.push_with(|buf| lane.writer.write(&spec, buf)) {
                    stats.unbuilt += 1;
                }
            }
            if !batch.is_empty() {
                limiter.acquire(batch.len());
                let out = lane.sender.send_batch(&mut batch)?;
                let suite = unit.suite;
                *stats
                    .sent
                    .entry(family)
                    .or_default()
                    .entry(suite)
                    .or_default() += out.sent as u64;
                if out.refused > 0 {
                    *stats
                        .refused
                        .entry(family)
                        .or_default()
                        .entry(suite)
                        .or_default() += out.refused as u64;
                }
                stats.retries += out.retries;
            }
            done.fetch_add(taken, Ordering::Relaxed);
        }
    }
    Ok(())
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    #[test]
    fn a_plan_of_some_probes_only() {
        let all = Plan::new(&Family::BOTH, &Suite::ALL);
        assert_eq!(all.total(), 928_253);
        let v6 = leaktest_wire::catalogue::SEQ_FAMILY_BIT;
        let udp = Suite::Udp.base();
        // Two ranges crossing suite and family bounds, one overlapping, one empty.
        let p = Plan::new(&Family::BOTH, &[Suite::Icmp, Suite::Udp]).only(&[
            (250, 260),
            (udp + 10, udp + 19),
            (udp + 15, udp + 24),
            (v6 | 3, v6 | 3),
            (9, 8),
        ]);
        assert_eq!(p.count(Family::V4), 6 + 15);
        assert_eq!(p.count(Family::V6), 1);
        assert_eq!(p.spans(Family::V4, Suite::Icmp), vec![(250, 256)]);
        assert_eq!(p.spans(Family::V4, Suite::Udp), vec![(10, 25)]);
        assert_eq!(p.spans(Family::V6, Suite::Icmp), vec![(3, 4)]);
        // The queue hands out exactly those probes.
        let q = FamilyQueue::new(&p, Family::V4);
        let mut seqs = Vec::new();
        while let Some(u) = q.take() {
            seqs.extend((u.start..u.end).map(|i| u.suite.base() + i));
        }
        let want: Vec<u32> = (250..256).chain(udp + 10..udp + 25).collect();
        assert_eq!(seqs, want);
    }
    use crate::socket::SendOutcome;
    use std::sync::{Arc, Mutex};

    /// Writes the probe's seq as 4 bytes, the pulse round above its 21
    /// bits (IPv6 probes of protocol 0 are "unbuildable" to exercise
    /// skipping).
    pub(crate) struct SeqWriter {
        pub(crate) skip_ip0: bool,
        pub(crate) round: u32,
    }

    impl ProbeWriter for SeqWriter {
        fn write(&self, spec: &ProbeSpec, buf: &mut [u8]) -> usize {
            if self.skip_ip0 && spec.suite() == Suite::Ip && spec.protocol() == 0 {
                return 0;
            }
            buf[..4].copy_from_slice(&(spec.seq() | self.round << 21).to_be_bytes());
            4
        }
        fn set_round(&mut self, round: u32) {
            self.round = round;
        }
    }

    /// Records every frame; refuses every 10th batch's first frame; can fail.
    pub(crate) struct Recorder {
        frames: Arc<Mutex<Vec<u32>>>,
        calls: usize,
        fail_at: Option<usize>,
        refuse_first_every: Option<usize>,
        /// Waited on before the first batch: holds a thread until the
        /// others have taken work too.
        barrier: Option<Arc<std::sync::Barrier>>,
    }

    impl FrameSender for Recorder {
        fn send_batch(&mut self, batch: &mut Batch) -> Result<SendOutcome, Error> {
            self.calls += 1;
            if self.calls == 1 {
                if let Some(b) = &self.barrier {
                    b.wait();
                }
            }
            if Some(self.calls) == self.fail_at {
                return Err(Error::Send(std::io::Error::from_raw_os_error(
                    libc::ENETDOWN,
                )));
            }
            let mut out = SendOutcome::default();
            let mut f = self.frames.lock().unwrap();
            for i in 0..batch.len() {
                if i == 0 && self.refuse_first_every.is_some_and(|k| self.calls % k == 0) {
                    out.refused += 1;
                    continue;
                }
                f.push(u32::from_be_bytes(batch.frame(i)[..4].try_into().unwrap()));
                out.sent += 1;
            }
            Ok(out)
        }
        fn wants_ethernet(&self) -> bool {
            true
        }
        fn kind(&self) -> &'static str {
            "test"
        }
    }

    /// A recorder into `frames` that refuses and fails nothing.
    pub(crate) fn recorder(frames: &Arc<Mutex<Vec<u32>>>) -> Recorder {
        Recorder {
            frames: frames.clone(),
            calls: 0,
            fail_at: None,
            refuse_first_every: None,
            barrier: None,
        }
    }

    pub(crate) fn lane(family: Family, frames: &Arc<Mutex<Vec<u32>>>, skip: bool) -> Lane {
        Lane {
            family,
            writer: Box::new(SeqWriter {
                skip_ip0: skip,
                round: 0,
            }),
            sender: Box::new(recorder(frames)),
        }
    }

    /// Every planned probe's seq, in catalogue order.
    fn catalogue_order(plan: &Plan) -> Vec<u32> {
        plan.families()
            .iter()
            .flat_map(|&f| {
                plan.suites()
                    .iter()
                    .flat_map(move |&s| ProbeSpec::all(f, s))
            })
            .map(|s| s.seq())
            .collect()
    }

    fn cfg() -> RunConfig {
        RunConfig {
            rate: Rate::Max,
            max_batch: 64,
            slot: 16,
            parallel: false,
        }
    }

    #[test]
    fn plan_counts_and_order() {
        let p = Plan::new(
            &[Family::V6, Family::V4, Family::V6],
            &[Suite::Udp, Suite::Icmp],
        );
        assert_eq!(p.families(), &[Family::V4, Family::V6]);
        assert_eq!(p.suites(), &[Suite::Icmp, Suite::Udp]);
        assert_eq!(p.count(Family::V4), 256 + 65536);
        assert_eq!(p.total(), 2 * (256 + 65536));
        let all = Plan::new(&Family::BOTH, &Suite::ALL);
        assert_eq!(all.total(), 463_474 + 464_779);
        assert_eq!(Plan::new(&[Family::V4], &Suite::ALL).count(Family::V6), 0);
    }

    #[test]
    fn every_planned_probe_once_in_catalogue_order() {
        let frames = Arc::new(Mutex::new(Vec::new()));
        let plan = Plan::new(
            &Family::BOTH,
            &[Suite::Icmp, Suite::Ip, Suite::Frag, Suite::Udp],
        );
        let mut workers = [vec![
            lane(Family::V4, &frames, false),
            lane(Family::V6, &frames, false),
        ]];
        let mut calls = 0;
        let stats = run(&plan, &mut workers, &cfg(), None, &mut |p| {
            calls += 1;
            assert!(p.done <= p.total);
        })
        .unwrap();
        let got = frames.lock().unwrap().clone();
        let want = catalogue_order(&plan);
        assert_eq!(got, want);
        assert!(stats.complete);
        assert_eq!(stats.sent_total(), plan.total());
        assert_eq!(stats.sent_family(Family::V6), plan.count(Family::V6));
        assert_eq!(stats.sent[&Family::V4][&Suite::Frag], 9);
        assert_eq!(stats.sent[&Family::V6][&Suite::Frag], 11);
        assert_eq!(stats.sent_suite(Suite::Udp), 2 * 65536);
        assert!(calls >= 1, "a final progress report is always given");
    }

    #[test]
    fn parallel_lanes_send_each_family_once_in_order() {
        let frames = Arc::new(Mutex::new(Vec::new()));
        let plan = Plan::new(&Family::BOTH, &[Suite::Icmp, Suite::Udp, Suite::Frag]);
        let mut workers = [
            vec![lane(Family::V4, &frames, false)],
            vec![lane(Family::V6, &frames, false)],
        ];
        let c = RunConfig {
            parallel: true,
            ..cfg()
        };
        let stats = run(&plan, &mut workers, &c, None, &mut |_| {}).unwrap();
        assert!(stats.complete);
        assert_eq!(stats.sent_total(), plan.total());
        let got = frames.lock().unwrap().clone();
        for family in Family::BOTH {
            let mine: Vec<u32> = got
                .iter()
                .copied()
                .filter(|s| ProbeSpec::from_seq(*s).unwrap().family == family)
                .collect();
            let want: Vec<u32> = plan
                .suites()
                .iter()
                .flat_map(|&s| ProbeSpec::all(family, s))
                .map(|s| s.seq())
                .collect();
            assert_eq!(mine, want, "{family}");
        }
    }

    /// A lane whose sender records into `frames` and, on its first batch,
    /// waits for `barrier`.
    fn held_lane(
        family: Family,
        frames: &Arc<Mutex<Vec<u32>>>,
        barrier: &Arc<std::sync::Barrier>,
    ) -> Lane {
        let mut l = lane(family, frames, false);
        l.sender = Box::new(Recorder {
            barrier: Some(barrier.clone()),
            ..recorder(frames)
        });
        l
    }

    #[test]
    fn workers_share_a_family_unit_by_unit() {
        let plan = Plan::new(&Family::BOTH, &[Suite::Icmp, Suite::Udp, Suite::Frag]);
        let mine = [
            Arc::new(Mutex::new(Vec::new())),
            Arc::new(Mutex::new(Vec::new())),
        ];
        // No IPv4 probe leaves before both threads have taken an IPv4 unit
        // (one starts with IPv4, the other comes to it after IPv6): both
        // must share IPv4, whatever the scheduler does.
        let barrier = Arc::new(std::sync::Barrier::new(2));
        let mut workers: Vec<Vec<Lane>> = mine
            .iter()
            .map(|f| {
                vec![
                    held_lane(Family::V4, f, &barrier),
                    lane(Family::V6, f, false),
                ]
            })
            .collect();
        let c = RunConfig {
            parallel: true,
            ..cfg()
        };
        let stats = run(&plan, &mut workers, &c, None, &mut |_| {}).unwrap();
        assert!(stats.complete);
        assert_eq!(stats.sent_total(), plan.total());
        assert_eq!(stats.sent_family(Family::V6), plan.count(Family::V6));
        let want = catalogue_order(&plan);
        let mut all = Vec::new();
        for frames in &mine {
            let got = frames.lock().unwrap().clone();
            assert!(
                got.iter()
                    .any(|s| ProbeSpec::from_seq(*s).unwrap().family == Family::V4),
                "each worker sent a share of IPv4"
            );
            // A worker's probes come in whole units, each in catalogue
            // order: every step is +1 or a jump to a new unit's start.
            for w in got.windows(2) {
                let (a, b) = (
                    ProbeSpec::from_seq(w[0]).unwrap(),
                    ProbeSpec::from_seq(w[1]).unwrap(),
                );
                let unit_start = (b.seq() & (leaktest_wire::catalogue::SEQ_FAMILY_BIT - 1))
                    .checked_sub(b.suite().base())
                    .is_some_and(|i| i % UNIT == 0);
                assert!(w[1] == w[0] + 1 || unit_start, "{a:?} then {b:?}");
            }
            all.extend(got);
        }
        all.sort_unstable();
        assert_eq!(all, want, "every planned probe exactly once");
    }

    #[test]
    fn a_failing_parallel_lane_stops_the_other() {
        let frames = Arc::new(Mutex::new(Vec::new()));
        let plan = Plan::new(&Family::BOTH, &[Suite::Tcp]);
        let mut bad = lane(Family::V6, &frames, false);
        bad.sender = Box::new(Recorder {
            fail_at: Some(2),
            ..recorder(&frames)
        });
        let c = RunConfig {
            parallel: true,
            ..cfg()
        };
        let f = run(
            &plan,
            &mut [vec![lane(Family::V4, &frames, false)], vec![bad]],
            &c,
            None,
            &mut |_| {},
        )
        .unwrap_err();
        assert!(matches!(f.error, Error::Send(_)));
        assert!(!f.stats.complete);
        assert_eq!(f.stats.sent_family(Family::V6), 64);
        assert!(f.stats.sent_total() < plan.total());
    }

    #[test]
    fn unbuilt_and_refused_are_counted_apart() {
        let frames = Arc::new(Mutex::new(Vec::new()));
        let plan = Plan::new(&[Family::V6], &[Suite::Ip]);
        let mut l = lane(Family::V6, &frames, true);
        l.sender = Box::new(Recorder {
            refuse_first_every: Some(2),
            ..recorder(&frames)
        });
        let stats = run(&plan, &mut [vec![l]], &cfg(), None, &mut |_| {}).unwrap();
        assert_eq!(stats.unbuilt, 1);
        // 255 built probes in 4 batches (64, 64, 64, 63); batches 2 and 4 refuse one.
        assert_eq!(stats.refused_total(), 2);
        assert_eq!(stats.sent_total(), 253);
        assert_eq!(frames.lock().unwrap().len(), 253);
    }

    #[test]
    fn failure_reports_partial_stats() {
        let frames = Arc::new(Mutex::new(Vec::new()));
        let plan = Plan::new(&[Family::V4], &[Suite::Udp]);
        let mut l = lane(Family::V4, &frames, false);
        l.sender = Box::new(Recorder {
            fail_at: Some(3),
            ..recorder(&frames)
        });
        let f = run(&plan, &mut [vec![l]], &cfg(), None, &mut |_| {}).unwrap_err();
        assert!(matches!(f.error, Error::Send(_)));
        assert_eq!(f.stats.sent_total(), 128);
        assert!(!f.stats.complete);
    }

    #[test]
    fn stop_flag_ends_the_run_early() {
        let frames = Arc::new(Mutex::new(Vec::new()));
        let plan = Plan::new(&[Family::V4], &[Suite::Udp]);
        let stop = AtomicBool::new(true);
        let stats = run(
            &plan,
            &mut [vec![lane(Family::V4, &frames, false)]],
            &cfg(),
            Some(&stop),
            &mut |_| {},
        )
        .unwrap();
        assert!(!stats.complete);
        assert_eq!(stats.sent_total(), 0);
    }

    #[test]
    fn rate_limited_run_takes_its_time() {
        let frames = Arc::new(Mutex::new(Vec::new()));
        let plan = Plan::new(&[Family::V4], &[Suite::Icmp]);
        let c = RunConfig {
            rate: Rate::Pps(2_000),
            ..cfg()
        };
        let t = Instant::now();
        let stats = run(
            &plan,
            &mut [vec![lane(Family::V4, &frames, false)]],
            &c,
            None,
            &mut |_| {},
        )
        .unwrap();
        // 256 probes at 2,000 pps in batches of 10, 40 of them on the initial
        // credit: at least 0.108 s.
        assert!(
            t.elapsed() >= Duration::from_millis(105),
            "{:?}",
            t.elapsed()
        );
        assert_eq!(stats.sent_total(), 256);
    }
}
