//! What one dance at one MX host comes to in TLS-RPT terms: one final result per delivery
//! attempt, never one per try. The engine names the result types of each step
//! ([`Decision::report`](policy_core::Decision)); a step the dance recovers from (a modern
//! handshake refused, then legacy TLS delivered) is a recoverable failure inside the attempt,
//! which RFC 8460 senders and Postfix's TLSRPT client do not report. Pure: the delivery loop and
//! the Postfix service feed it, tests drive it directly.

use policy_core::{Action, Decision, Tier, TlsRptResult, TlsRptResults};

/// Result types about the policy itself, not about one session: a later successful session
/// does not make them go away.
const POLICY_LEVEL: [TlsRptResult; 6] = [
    TlsRptResult::StsPolicyFetchError,
    TlsRptResult::StsPolicyInvalid,
    TlsRptResult::TlsaInvalid,
    TlsRptResult::DnssecInvalid,
    TlsRptResult::DaneRequired,
    TlsRptResult::StsWebpkiInvalid,
];

/// The final result of one delivery attempt.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FinalResult {
    /// TLS was negotiated as the policy asks.
    Success,
    /// It was not: these result types say why.
    Failure(TlsRptResults),
}

/// One dance at one MX, as it goes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DanceReport {
    /// Every result type the dance's steps named so far.
    seen: TlsRptResults,
}

impl DanceReport {
    /// A dance that has named nothing yet.
    #[must_use]
    pub const fn new() -> Self {
        Self {
            seen: TlsRptResults::EMPTY,
        }
    }

    /// A dance that named `seen` in its earlier steps (the Postfix service keeps them between
    /// Postfix's delivery attempts).
    #[must_use]
    pub const fn resume(seen: TlsRptResults) -> Self {
        Self { seen }
    }

    /// What the dance named so far.
    #[must_use]
    pub const fn seen(&self) -> TlsRptResults {
        self.seen
    }

    /// Takes in one decision of the dance; once it ends the dance (anything but
    /// [`Action::Attempt`]), the attempt's final result, where `delivered_at` is the tier of
    /// the try the peer accepted the message on (`None` if none did). `None` also when the
    /// dance ended without any TLS-RPT event: no session got as far as TLS (every connection
    /// failed), as Postfix reports only MX hosts it could connect to.
    #[must_use]
    pub fn observe(
        &mut self,
        decision: &Decision,
        delivered_at: Option<Tier>,
    ) -> Option<FinalResult> {
        let this_step = decision.report;
        for result in this_step.iter() {
            self.seen.insert(result);
        }
        match decision.action {
            Action::Attempt { .. } => None,
            Action::Done => Some(self.delivered(delivered_at.unwrap_or(Tier::Cleartext))),
            Action::Defer { .. } | Action::Bounce { .. } => {
                let named = if this_step.is_empty() {
                    self.seen
                } else {
                    self.with_policy_level(this_step)
                };
                (!named.is_empty()).then_some(FinalResult::Failure(named))
            }
        }
    }

    /// The final result of a dance that ended without a last decision: the attempt limit
    /// stopped it (`None` if it named nothing).
    #[must_use]
    pub fn abandoned(&self) -> Option<FinalResult> {
        (!self.seen.is_empty()).then_some(FinalResult::Failure(self.seen))
    }

    /// The final result of a dance whose peer accepted the message at `tier` when no further
    /// decision could be taken (the history store failed after the delivery).
    #[must_use]
    pub fn delivered(&self, tier: Tier) -> FinalResult {
        let policy_level = self.with_policy_level(TlsRptResults::EMPTY);
        if tier.uses_tls() {
            return if policy_level.is_empty() {
                FinalResult::Success
            } else {
                FinalResult::Failure(policy_level)
            };
        }
        // Delivered without TLS: what led the dance there; a dance that started in cleartext
        // (a peer remembered without STARTTLS) named nothing, and that is what it means.
        let mut named = self.seen;
        if named.is_empty() {
            named.insert(TlsRptResult::StarttlsNotSupported);
        }
        FinalResult::Failure(named)
    }

    /// `step` with the policy-level result types the dance named before it.
    fn with_policy_level(&self, step: TlsRptResults) -> TlsRptResults {
        let mut out = step;
        for result in POLICY_LEVEL {
            if self.seen.contains(result) {
                out.insert(result);
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use policy_core::{
        AttemptReport, DeliveryContext, MtaSts, Outcome, Policy, TlsAlert, TlsVersion, decide,
    };

    /// Runs a dance of `outcomes` from an unknown peer and returns its final result.
    fn dance(context: &DeliveryContext, outcomes: &[Outcome]) -> Option<FinalResult> {
        let policy = Policy {
            step_down_delay_secs: 0,
            ..Policy::default()
        };
        let mut report = DanceReport::new();
        let mut history: Option<Vec<u8>> = None;
        let mut last: Option<AttemptReport> = None;
        let mut outcomes = outcomes.iter();
        loop {
            let decision = decide(&policy, context, history.as_deref(), last.as_ref(), 1_000);
            history = Some(decision.history.as_bytes().to_vec());
            let delivered = match last {
                Some(AttemptReport {
                    tier,
                    outcome: Outcome::Success { .. },
                }) => Some(tier),
                _ => None,
            };
            if let Some(result) = report.observe(&decision, delivered) {
                return Some(result);
            }
            let Action::Attempt { tier, .. } = decision.action else {
                return None;
            };
            let outcome = *outcomes.next().expect("the dance asked for another try");
            last = Some(AttemptReport { tier, outcome });
        }
    }

    fn success() -> Outcome {
        Outcome::Success {
            version: Some(TlsVersion::Tls1_3),
        }
    }

    #[test]
    fn a_recovered_step_down_is_one_success() {
        let got = dance(
            &DeliveryContext::default(),
            &[Outcome::TlsAlert(TlsAlert::ProtocolVersion), success()],
        );
        assert_eq!(got, Some(FinalResult::Success));
    }

    #[test]
    fn cleartext_after_missing_starttls_is_a_starttls_failure() {
        let got = dance(
            &DeliveryContext::default(),
            &[Outcome::StarttlsNotOffered, success()],
        );
        let mut expected = TlsRptResults::EMPTY;
        expected.insert(TlsRptResult::StarttlsNotSupported);
        assert_eq!(got, Some(FinalResult::Failure(expected)));
    }

    #[test]
    fn a_connection_that_never_reached_tls_is_not_reported() {
        assert_eq!(
            dance(&DeliveryContext::default(), &[Outcome::ConnectFailed]),
            None
        );
    }

    #[test]
    fn a_wrong_name_under_mta_sts_enforce_is_a_host_mismatch_not_a_policy_failure() {
        let context = DeliveryContext {
            mta_sts: MtaSts::Enforce,
            ..DeliveryContext::default()
        };
        let got = dance(
            &context,
            &[Outcome::CertificateError(
                policy_core::CertificateError::NameMismatch,
            )],
        );
        let Some(FinalResult::Failure(results)) = got else {
            panic!("{got:?}");
        };
        assert!(results.contains(TlsRptResult::CertificateHostMismatch));
        assert!(!results.contains(TlsRptResult::StsWebpkiInvalid));
    }

    #[test]
    fn a_policy_fetch_error_stays_a_failure_after_a_successful_session() {
        let context = DeliveryContext {
            mta_sts: MtaSts::FetchFailed,
            ..DeliveryContext::default()
        };
        let got = dance(&context, &[success()]);
        let mut expected = TlsRptResults::EMPTY;
        expected.insert(TlsRptResult::StsPolicyFetchError);
        assert_eq!(got, Some(FinalResult::Failure(expected)));
    }
}
