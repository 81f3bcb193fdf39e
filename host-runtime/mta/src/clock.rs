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

/// Set to a number of seconds since the Unix epoch, starts the binary's clock at that time and
/// makes its sleeps advance it instead of waiting: for tests that run `deliver` or `postfix serve`
/// over simulated weeks (`host-runtime/cli/tests/campaign.rs`). Not for production: it is read by
/// [`HostClock::from_env`] and nowhere else.
pub const TEST_NOW_VAR: &str = "TLSFALLBACK_TEST_NOW";

/// Why the clock cannot be set up.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ClockError {
    /// [`TEST_NOW_VAR`] is set but is not a number of seconds.
    #[error(
        "${} must be seconds since the Unix epoch, not {value:?}",
        TEST_NOW_VAR
    )]
    BadTestNow {
        /// The variable's value.
        value: std::ffi::OsString,
    },
}

/// The clock the binary runs on: the system's, or the simulated one [`TEST_NOW_VAR`] asks for.
#[derive(Clone, Copy, Debug)]
pub enum HostClock {
    /// The system clock.
    System(SystemClock),
    /// Simulated time (tests): starts at the given second; a sleep advances it at once.
    Simulated(u64),
}

impl HostClock {
    /// The system clock, unless [`TEST_NOW_VAR`] is set.
    ///
    /// # Errors
    ///
    /// When the variable is set but is not a number of seconds: a bad value is refused rather
    /// than silently replaced by the system time.
    pub fn from_env() -> Result<Self, ClockError> {
        let Some(value) = std::env::var_os(TEST_NOW_VAR) else {
            return Ok(Self::System(SystemClock));
        };
        value
            .to_str()
            .and_then(|text| text.parse::<u64>().ok())
            .map(Self::Simulated)
            .ok_or_else(|| ClockError::BadTestNow {
                value: value.clone(),
            })
    }
}

impl Clock for HostClock {
    fn now(&self) -> u64 {
        match self {
            Self::System(clock) => clock.now(),
            Self::Simulated(now) => *now,
        }
    }

    fn sleep(&mut self, secs: u32) {
        match self {
            Self::System(clock) => clock.sleep(secs),
            Self::Simulated(now) => *now = now.saturating_add(u64::from(secs)),
        }
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

/// The moment a network operation must be over by (socket time limits: an SMTP stage, an
/// attempt, a DNS lookup); never an input to a decision.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Deadline(std::time::Instant);

impl Deadline {
    /// The longest limit taken as it is (a century); longer ones are cut to it rather than
    /// overflowing.
    const LONGEST: Duration = Duration::from_secs(100 * 365 * 24 * 3600);

    /// `limit` from now.
    #[allow(clippy::disallowed_methods)] // A time limit on I/O, not the time of day.
    #[must_use]
    pub fn after(limit: Duration) -> Self {
        let now = std::time::Instant::now();
        Self(now.checked_add(limit.min(Self::LONGEST)).unwrap_or(now))
    }

    /// The time left (zero once passed).
    #[allow(clippy::disallowed_methods)] // A time limit on I/O, not the time of day.
    #[must_use]
    pub fn left(&self) -> Duration {
        self.0.saturating_duration_since(std::time::Instant::now())
    }
}
