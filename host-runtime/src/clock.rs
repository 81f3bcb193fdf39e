//! The one place the host reads the clock: everything else receives `now` as a value.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Time as the delivery loop sees it.
pub trait Clock {
    /// Seconds since the Unix epoch.
    fn now(&self) -> u64;
    /// Waits `secs` seconds (the engine's not-before delay).
    fn sleep(&mut self, secs: u32);
}

/// The system clock.
#[derive(Clone, Copy, Debug, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    #[allow(clippy::disallowed_methods)] // This is the one place the clock is read.
    fn now(&self) -> u64 {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs())
    }

    fn sleep(&mut self, secs: u32) {
        std::thread::sleep(Duration::from_secs(u64::from(secs)));
    }
}

/// Measures how long something took, for reports to the operator (`plugin check`) and for
/// timeouts and idle times (connections); never an input to a decision. Ordered by start, the
/// earlier first.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Stopwatch(std::time::Instant);

impl Stopwatch {
    /// Starts measuring.
    #[allow(clippy::disallowed_methods)] // A duration for a report, not the time of day.
    #[must_use]
    pub fn start() -> Self {
        Self(std::time::Instant::now())
    }

    /// The time since [`start`](Self::start).
    #[must_use]
    pub fn elapsed(&self) -> Duration {
        self.0.elapsed()
    }
}
