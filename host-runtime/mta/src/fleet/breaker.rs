//! The circuit breaker in front of Redis: after repeated errors, stop calling it for a while, so
//! that a dead or stalled server costs a decision nothing instead of a timeout each.
//!
//! Sans-IO: it is told the time (`now`, measured from any fixed origin) and each call's result,
//! and answers whether the next call may go out.

use std::time::Duration;

/// When the breaker opens and how long it stays open.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BreakerSettings {
    /// Errors in a row (timeouts included) that open the circuit.
    pub errors_to_open: u32,
    /// How long an open circuit refuses calls before one trial call may go out.
    pub cooldown: Duration,
}

impl Default for BreakerSettings {
    fn default() -> Self {
        Self {
            errors_to_open: 5,
            cooldown: Duration::from_secs(2),
        }
    }
}

/// Where the circuit stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CircuitState {
    /// Calls go out.
    Closed,
    /// Calls are refused until the cooldown ends (at `until`, from the breaker's origin).
    Open {
        /// When a trial call may go out.
        until: Duration,
    },
    /// The cooldown is over and one trial call is out: its result closes or reopens the circuit.
    HalfOpen,
}

/// The breaker.
#[derive(Clone, Debug)]
pub struct Breaker {
    settings: BreakerSettings,
    state: CircuitState,
    errors_in_a_row: u32,
    /// Times the circuit opened (a counter for operators and tests).
    opened: u64,
    /// Times it closed again after being open.
    closed_again: u64,
}

impl Breaker {
    /// A closed breaker.
    #[must_use]
    pub fn new(settings: BreakerSettings) -> Self {
        Self {
            settings,
            state: CircuitState::Closed,
            errors_in_a_row: 0,
            opened: 0,
            closed_again: 0,
        }
    }

    /// Whether a call may go out at `now`. An open circuit whose cooldown is over lets one trial
    /// call through (half-open) and refuses the rest until that call's result is known.
    #[must_use]
    pub fn allow(&mut self, now: Duration) -> bool {
        match self.state {
            CircuitState::Closed => true,
            CircuitState::Open { until } if now >= until => {
                self.state = CircuitState::HalfOpen;
                true
            }
            CircuitState::Open { .. } | CircuitState::HalfOpen => false,
        }
    }

    /// A call answered (whatever the answer: a CAS conflict is an answer). Closes the circuit;
    /// whether it had been open, so the caller merges up what it could not write meanwhile.
    #[must_use]
    pub fn succeeded(&mut self) -> bool {
        self.errors_in_a_row = 0;
        let was_open = self.state != CircuitState::Closed;
        if was_open {
            self.closed_again += 1;
        }
        self.state = CircuitState::Closed;
        was_open
    }

    /// A call failed or ran out of time at `now`.
    pub fn failed(&mut self, now: Duration) {
        self.errors_in_a_row = self.errors_in_a_row.saturating_add(1);
        let reopen = self.state == CircuitState::HalfOpen;
        if reopen || self.errors_in_a_row >= self.settings.errors_to_open {
            if self.state == CircuitState::Closed {
                self.opened += 1;
            }
            self.state = CircuitState::Open {
                until: now.saturating_add(self.settings.cooldown),
            };
        }
    }

    /// Where the circuit stands.
    #[must_use]
    pub fn state(&self) -> CircuitState {
        self.state
    }

    /// How many times the circuit opened, and how many times it closed again.
    #[must_use]
    pub fn transitions(&self) -> (u64, u64) {
        (self.opened, self.closed_again)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: Duration = Duration::from_secs(1);

    fn breaker() -> Breaker {
        Breaker::new(BreakerSettings {
            errors_to_open: 3,
            cooldown: 10 * S,
        })
    }

    #[test]
    fn opens_after_errors_in_a_row_and_not_after_scattered_ones() {
        let mut b = breaker();
        for _ in 0..5 {
            b.failed(S);
            b.failed(S);
            assert!(!b.succeeded());
        }
        assert_eq!(b.state(), CircuitState::Closed);
        for _ in 0..3 {
            assert!(b.allow(S));
            b.failed(S);
        }
        assert_eq!(b.state(), CircuitState::Open { until: 11 * S });
        assert!(!b.allow(5 * S));
        assert_eq!(b.transitions(), (1, 0));
    }

    #[test]
    fn after_the_cooldown_one_trial_call_closes_or_reopens_it() {
        let mut b = breaker();
        for _ in 0..3 {
            b.failed(S);
        }
        assert!(b.allow(11 * S));
        assert!(!b.allow(11 * S), "only one trial call at a time");
        b.failed(12 * S);
        assert_eq!(b.state(), CircuitState::Open { until: 22 * S });
        assert!(b.allow(22 * S));
        assert!(b.succeeded(), "closing an open circuit is reported");
        assert_eq!(b.state(), CircuitState::Closed);
        assert!(b.allow(22 * S));
        assert_eq!(b.transitions(), (1, 1));
    }
}
