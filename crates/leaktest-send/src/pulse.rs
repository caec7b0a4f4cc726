//! Sending a pulse (`leaktest probe --duration`): the compact probe set of
//! [`leaktest_wire::pulse`] every interval, each round's markers naming the
//! round, from one thread.
//!
//! Rounds start on a fixed schedule (round `r` at `r × interval` after the
//! first), not one interval after the last ended, so a slow round does not
//! shift the ones after it; a round that starts after its slot is counted
//! as late. Every round's real send time is kept: a watcher's leak with
//! round `r` was sent at `round_sent_unix_ns[r]`.

use crate::rate::RateLimiter;
use crate::run::{Lane, RunStats};
use crate::socket::Batch;
use crate::Error;
use crate::Rate;
use leaktest_wire::{Family, ProbeSpec};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant, SystemTime};

/// Rounds a pulse may have: the round is 24 bits of the marker
/// ([`leaktest_wire::marker::ROUND_BITS`]).
pub const MAX_ROUNDS: u64 = 1 << leaktest_wire::marker::ROUND_BITS;

/// How a pulse is sent.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PulseConfig {
    /// From one round's start to the next's.
    pub interval: Duration,
    /// Rounds to send (at most [`MAX_ROUNDS`]).
    pub rounds: u32,
    pub rate: Rate,
}

impl PulseConfig {
    /// The rounds that fill `duration` at `interval` (at least one).
    /// Errors name the bound that was broken.
    pub fn for_duration(
        duration: Duration,
        interval: Duration,
        rate: Rate,
    ) -> Result<PulseConfig, String> {
        if interval < Duration::from_millis(1) {
            return Err("the interval must be at least 1 ms".into());
        }
        let rounds = (duration.as_nanos().div_ceil(interval.as_nanos())).max(1);
        if rounds > u128::from(MAX_ROUNDS) {
            return Err(format!(
                "{rounds} rounds: a pulse has at most {MAX_ROUNDS} (the marker's 24-bit round); use a longer interval or a shorter duration"
            ));
        }
        Ok(PulseConfig {
            interval,
            rounds: rounds as u32,
            rate,
        })
    }
}

/// What a pulse sent, and when.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PulseStats {
    pub run: RunStats,
    /// Each round's send time (Unix ns, when its first probe was built), in
    /// round order; as many as rounds were sent.
    pub round_sent_unix_ns: Vec<u64>,
    /// Rounds that started more than one interval after their slot.
    pub late_rounds: u64,
}

fn unix_ns(t: SystemTime) -> u64 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
}

/// Sends `cfg.rounds` rounds through `lanes` (one per family). `stop` ends
/// the pulse between rounds or at a batch boundary; the stats then say
/// `complete: false`. Waits in slices of at most 50 ms, so a stop is seen
/// promptly even with long intervals. A send error ends it too: the stats
/// then say what went out before (round times included) and the error is
/// returned with them.
pub fn run_pulse(
    lanes: &mut [Lane],
    cfg: &PulseConfig,
    stop: Option<&AtomicBool>,
    progress: &mut dyn FnMut(u32),
) -> (PulseStats, Option<Error>) {
    let per_family = leaktest_wire::pulse::PER_FAMILY;
    let mut batch = Batch::new(per_family, leaktest_wire::MAX_PROBE_FRAME);
    let mut limiter = RateLimiter::new(cfg.rate, 4 * per_family);
    let mut st = PulseStats::default();
    let stopped = || stop.is_some_and(|s| s.load(Ordering::Relaxed));
    let start = Instant::now();
    let mut specs: Vec<ProbeSpec> = Vec::with_capacity(per_family);
    for round in 0..cfg.rounds {
        let slot = start + cfg.interval * round;
        loop {
            if stopped() {
                st.run.elapsed = start.elapsed();
                return (st, None);
            }
            let now = Instant::now();
            if now >= slot {
                if now.duration_since(slot) > cfg.interval {
                    st.late_rounds += 1;
                }
                break;
            }
            std::thread::sleep((slot - now).min(Duration::from_millis(50)));
        }
        st.round_sent_unix_ns.push(unix_ns(SystemTime::now()));
        for lane in lanes.iter_mut() {
            lane.writer.set_round(round);
            specs.clear();
            specs.extend(leaktest_wire::pulse::specs(lane.family, round));
            batch.clear();
            for spec in &specs {
                if !batch.push_with(|buf| lane.writer.write(spec, buf)) {
                    st.run.unbuilt += 1;
                }
            }
            if batch.is_empty() {
                continue;
            }
            limiter.acquire(batch.len());
            let out = match lane.sender.send_batch(&mut batch) {
                Ok(o) => o,
                Err(error) => {
                    st.run.elapsed = start.elapsed();
                    return (st, Some(error));
                }
            };
            count(&mut st.run, lane.family, &specs, out.sent, out.refused);
            st.run.retries += out.retries;
        }
        progress(round + 1);
    }
    st.run.elapsed = start.elapsed();
    st.run.complete = !stopped();
    (st, None)
}

/// Adds one round's sent and refused probes per suite. A batch is sent in
/// order, so the first `sent` probes went out (the refused ones are among
/// them; they are counted by suite as the round's last ones).
fn count(stats: &mut RunStats, family: Family, specs: &[ProbeSpec], sent: usize, refused: usize) {
    let fam = stats.sent.entry(family).or_default();
    for s in specs.iter().take(sent) {
        *fam.entry(s.suite()).or_default() += 1;
    }
    if refused > 0 {
        let r = stats.refused.entry(family).or_default();
        for s in specs.iter().rev().take(refused) {
            *r.entry(s.suite()).or_default() += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rounds_fill_the_duration_and_are_bounded() {
        let c = PulseConfig::for_duration(
            Duration::from_secs(60),
            Duration::from_millis(100),
            Rate::Max,
        )
        .unwrap();
        assert_eq!(c.rounds, 600);
        let c = PulseConfig::for_duration(
            Duration::from_millis(150),
            Duration::from_millis(100),
            Rate::Max,
        )
        .unwrap();
        assert_eq!(c.rounds, 2);
        let c = PulseConfig::for_duration(Duration::ZERO, Duration::from_millis(100), Rate::Max)
            .unwrap();
        assert_eq!(c.rounds, 1);
        assert!(
            PulseConfig::for_duration(Duration::from_secs(1), Duration::ZERO, Rate::Max).is_err()
        );
        let too_long = Duration::from_millis(MAX_ROUNDS + 1);
        assert!(PulseConfig::for_duration(too_long, Duration::from_millis(1), Rate::Max).is_err());
        assert!(PulseConfig::for_duration(
            Duration::from_millis(MAX_ROUNDS),
            Duration::from_millis(1),
            Rate::Max
        )
        .is_ok());
    }

    #[test]
    fn every_round_goes_out_marked_with_its_round_on_schedule() {
        use crate::run::tests::lane;
        use std::sync::{Arc, Mutex};
        let frames = Arc::new(Mutex::new(Vec::new()));
        let mut lanes = vec![
            lane(Family::V4, &frames, false),
            lane(Family::V6, &frames, false),
        ];
        let cfg = PulseConfig {
            interval: Duration::from_millis(20),
            rounds: 5,
            rate: Rate::Max,
        };
        let mut seen_progress = Vec::new();
        let (st, err) = run_pulse(&mut lanes, &cfg, None, &mut |r| seen_progress.push(r));
        assert!(err.is_none());
        assert!(st.run.complete);
        assert_eq!(seen_progress, vec![1, 2, 3, 4, 5]);
        let per = leaktest_wire::pulse::PER_FAMILY;
        assert_eq!(st.run.sent_total(), 5 * 2 * per as u64);
        let f = frames.lock().unwrap();
        for round in 0..5u32 {
            let mut want: Vec<u32> = Family::BOTH
                .into_iter()
                .flat_map(|fam| leaktest_wire::pulse::specs(fam, round))
                .map(|s| s.seq() | round << 21)
                .collect();
            let mut got: Vec<u32> = f.iter().copied().filter(|v| v >> 21 == round).collect();
            want.sort();
            got.sort();
            assert_eq!(got, want, "round {round}");
        }
        // On schedule: round r starts r intervals after round 0.
        let t = &st.round_sent_unix_ns;
        assert_eq!(t.len(), 5);
        for r in 1..5 {
            assert!(t[r] - t[0] >= r as u64 * 20_000_000, "{t:?}");
        }
    }

    #[test]
    fn a_stop_ends_the_pulse_between_rounds() {
        use crate::run::tests::lane;
        use std::sync::{Arc, Mutex};
        let frames = Arc::new(Mutex::new(Vec::new()));
        let mut lanes = vec![lane(Family::V4, &frames, false)];
        let cfg = PulseConfig {
            interval: Duration::from_secs(3600),
            rounds: 3,
            rate: Rate::Max,
        };
        let stop = AtomicBool::new(false);
        let t0 = Instant::now();
        let (st, err) = run_pulse(&mut lanes, &cfg, Some(&stop), &mut |_| {
            stop.store(true, Ordering::Relaxed)
        });
        assert!(err.is_none());
        assert!(!st.run.complete);
        assert_eq!(st.round_sent_unix_ns.len(), 1);
        assert!(t0.elapsed() < Duration::from_secs(60));
    }
}
