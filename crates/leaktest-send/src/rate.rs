//! Send-rate control: a token bucket consulted once per batch.
//!
//! The bucket holds a bounded credit (the run driver gives it four batches,
//! 20 ms at a fixed rate), so after an idle moment (a retry back-off, a
//! late wake-up on a busy machine) the sender catches up by at most that
//! much and never bursts beyond it. The batch size itself follows the rate
//! ([`Rate::batch_size`]) so that low rates are smooth rather than bursty.

use std::fmt;
use std::str::FromStr;
use std::time::{Duration, Instant};

/// The requested send rate.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Rate {
    /// As fast as the socket takes frames.
    Max,
    /// Probes per second (> 0).
    Pps(u64),
}

impl Rate {
    /// Batch size for this rate: at most `max_batch`, and about 1/200 s
    /// worth of probes at a fixed rate (at least 1).
    pub fn batch_size(self, max_batch: usize) -> usize {
        match self {
            Rate::Max => max_batch.max(1),
            Rate::Pps(pps) => ((pps / 200) as usize).clamp(1, max_batch.max(1)),
        }
    }
}

impl fmt::Display for Rate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Rate::Max => f.write_str("max"),
            Rate::Pps(p) => write!(f, "{p}"),
        }
    }
}

/// Why a rate did not parse.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error(
    "invalid rate {0:?}: give probes per second (a positive integer, e.g. 10000 or 10k) or \"max\""
)]
pub struct RateParseError(pub String);

impl FromStr for Rate {
    type Err = RateParseError;

    /// `max`, `10000`, `10_000`, `10k`, `1.5m`.
    fn from_str(s: &str) -> Result<Rate, RateParseError> {
        let err = || RateParseError(s.to_string());
        let t = s.trim().to_ascii_lowercase().replace(['_', ','], "");
        if t == "max" || t == "unlimited" {
            return Ok(Rate::Max);
        }
        let (num, mult) = match t.strip_suffix('k') {
            Some(n) => (n, 1_000f64),
            None => match t.strip_suffix('m') {
                Some(n) => (n, 1_000_000f64),
                None => (t.as_str(), 1f64),
            },
        };
        if num.is_empty() || !num.chars().all(|c| c.is_ascii_digit() || c == '.') {
            return Err(err());
        }
        let v: f64 = num.parse().map_err(|_| err())?;
        let pps = (v * mult).round();
        if !(1.0..=1e12).contains(&pps) {
            return Err(err());
        }
        Ok(Rate::Pps(pps as u64))
    }
}

/// A time source, so the limiter can be tested without sleeping.
pub trait Clock {
    /// Monotonic time since an arbitrary origin.
    fn now(&self) -> Duration;
    fn sleep(&self, d: Duration);
}

/// The real monotonic clock.
pub struct SystemClock(Instant);

impl SystemClock {
    pub fn new() -> SystemClock {
        SystemClock(Instant::now())
    }
}

impl Default for SystemClock {
    fn default() -> Self {
        SystemClock::new()
    }
}

impl Clock for SystemClock {
    fn now(&self) -> Duration {
        self.0.elapsed()
    }

    fn sleep(&self, d: Duration) {
        std::thread::sleep(d);
    }
}

/// Token bucket: `rate` tokens per second, at most `burst` stored.
pub struct RateLimiter<C: Clock = SystemClock> {
    rate: Rate,
    burst: f64,
    tokens: f64,
    last: Duration,
    clock: C,
}

impl RateLimiter<SystemClock> {
    pub fn new(rate: Rate, burst: usize) -> Self {
        RateLimiter::with_clock(rate, burst, SystemClock::new())
    }
}

impl<C: Clock> RateLimiter<C> {
    /// The bucket starts full, so the first batch goes out at once.
    pub fn with_clock(rate: Rate, burst: usize, clock: C) -> Self {
        let burst = burst.max(1) as f64;
        let last = clock.now();
        RateLimiter {
            rate,
            burst,
            tokens: burst,
            last,
            clock,
        }
    }

    pub fn clock(&self) -> &C {
        &self.clock
    }

    fn refill(&mut self, pps: u64) {
        let now = self.clock.now();
        let dt = now.saturating_sub(self.last).as_secs_f64();
        self.last = now;
        self.tokens = (self.tokens + dt * pps as f64).min(self.burst);
    }

    /// Blocks until `n` probes may be sent, then takes their tokens.
    /// `n` above the burst size is allowed and simply waits longer.
    pub fn acquire(&mut self, n: usize) {
        let Rate::Pps(pps) = self.rate else {
            return;
        };
        let pps = pps.max(1);
        self.refill(pps);
        // The bucket may go into debt; the sleep pays it off, and the next
        // refill (which counts the sleep, oversleep included) brings it back
        // to zero or a little credit, never above `burst`.
        self.tokens -= n as f64;
        if self.tokens < 0.0 {
            self.clock
                .sleep(Duration::from_secs_f64(-self.tokens / pps as f64));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::Cell;

    /// A clock that only moves when slept on (plus an optional oversleep).
    struct FakeClock {
        t: Cell<Duration>,
        slept: Cell<Duration>,
        oversleep: Duration,
    }

    impl FakeClock {
        fn new(oversleep: Duration) -> FakeClock {
            FakeClock {
                t: Cell::new(Duration::ZERO),
                slept: Cell::new(Duration::ZERO),
                oversleep,
            }
        }
        fn advance(&self, d: Duration) {
            self.t.set(self.t.get() + d);
        }
    }

    impl Clock for FakeClock {
        fn now(&self) -> Duration {
            self.t.get()
        }
        fn sleep(&self, d: Duration) {
            self.slept.set(self.slept.get() + d);
            self.advance(d + self.oversleep);
        }
    }

    #[test]
    fn parses_rates() {
        assert_eq!("max".parse(), Ok(Rate::Max));
        assert_eq!("MAX".parse(), Ok(Rate::Max));
        assert_eq!("10000".parse(), Ok(Rate::Pps(10_000)));
        assert_eq!("10_000".parse(), Ok(Rate::Pps(10_000)));
        assert_eq!("10k".parse(), Ok(Rate::Pps(10_000)));
        assert_eq!("1.5m".parse(), Ok(Rate::Pps(1_500_000)));
        assert_eq!("1".parse(), Ok(Rate::Pps(1)));
        for bad in ["0", "", "-5", "fast", "1e3", "k", "0.2", "1.2.3"] {
            assert!(bad.parse::<Rate>().is_err(), "{bad:?}");
        }
        assert_eq!(Rate::Pps(250).to_string(), "250");
        assert_eq!(Rate::Max.to_string(), "max");
    }

    #[test]
    fn batch_size_follows_rate() {
        assert_eq!(Rate::Max.batch_size(128), 128);
        assert_eq!(Rate::Pps(10_000).batch_size(128), 50);
        assert_eq!(Rate::Pps(1_000_000).batch_size(128), 128);
        assert_eq!(Rate::Pps(50).batch_size(128), 1);
    }

    #[test]
    fn max_never_waits() {
        let mut l = RateLimiter::with_clock(Rate::Max, 64, FakeClock::new(Duration::ZERO));
        for _ in 0..10_000 {
            l.acquire(64);
        }
        assert_eq!(l.clock().slept.get(), Duration::ZERO);
    }

    fn time_for(rate: u64, batch: usize, total: usize, oversleep: Duration) -> f64 {
        let mut l = RateLimiter::with_clock(Rate::Pps(rate), batch, FakeClock::new(oversleep));
        let mut sent = 0;
        while sent < total {
            let n = batch.min(total - sent);
            l.acquire(n);
            sent += n;
        }
        l.clock().now().as_secs_f64()
    }

    #[test]
    fn paces_to_the_rate() {
        // 100,000 probes at 10,000 pps: 10 s less the initial full bucket.
        let t = time_for(10_000, 50, 100_000, Duration::ZERO);
        assert!((t - (100_000.0 - 50.0) / 10_000.0).abs() < 1e-6, "{t}");
        let t = time_for(1_000, 5, 1_000, Duration::ZERO);
        assert!((t - 0.995).abs() < 1e-6, "{t}");
    }

    #[test]
    fn oversleeping_does_not_lower_the_average_rate() {
        // Every sleep overshoots by 1 ms (a busy machine); the credit lands in
        // the bucket and the average stays within 1 % of the target.
        let t = time_for(10_000, 50, 100_000, Duration::from_millis(1));
        let pps = 100_000.0 / t;
        assert!((9_900.0..=10_100.0).contains(&pps), "{pps}");
    }

    #[test]
    fn idle_time_earns_at_most_one_batch() {
        let mut l = RateLimiter::with_clock(Rate::Pps(1_000), 10, FakeClock::new(Duration::ZERO));
        l.acquire(10);
        l.clock().advance(Duration::from_secs(60));
        l.acquire(10); // the bucket was full again: no wait
        assert_eq!(l.clock().slept.get(), Duration::ZERO);
        l.acquire(10); // but only one batch was stored: this one waits 10 ms
        assert_eq!(l.clock().slept.get(), Duration::from_millis(10));
    }

    #[test]
    fn oversized_request_waits_for_all_of_it() {
        let mut l = RateLimiter::with_clock(Rate::Pps(100), 1, FakeClock::new(Duration::ZERO));
        l.acquire(1);
        l.acquire(100);
        let s = l.clock().slept.get().as_secs_f64();
        assert!((s - 1.0).abs() < 1e-9, "{s}");
    }
}
