//! The host's check of a plugin's decision: the plugin is not trusted to keep the promises the
//! built-in engine keeps, so the host recomputes what it can and refuses what breaks them.

use policy_core::{
    Action, AttemptReport, Decision, DeliveryContext, History, Outcome, PeerFacts, PeerMemory,
    Policy, Tier, UnixSeconds, floor, verification_for,
};

/// Bounds on what a plugin may ask for, beyond the floor.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GuardLimits {
    /// The longest delay before an attempt, in seconds (the host waits that long holding the
    /// message).
    pub max_attempt_delay_secs: u32,
    /// The longest deferral, in seconds.
    pub max_retry_after_secs: u32,
}

impl Default for GuardLimits {
    /// An hour before an attempt (the built-in engine's step-down delay is seconds), a day for a
    /// deferral (MTAs back off to an hour or so and give up after days).
    fn default() -> Self {
        Self {
            max_attempt_delay_secs: 3_600,
            max_retry_after_secs: 86_400,
        }
    }
}

/// Why the host refused a plugin's decision.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Refusal {
    /// The attempt's tier is weaker than the floor the host computed from the policy, the
    /// delivery's context and the peer's pin (the host's own record of it, or the history's
    /// when that is longer).
    #[error("an attempt at {} is below the floor of {}", .tier.name(), .floor.name())]
    BelowFloor {
        /// The tier the plugin asked for.
        tier: Tier,
        /// The weakest tier allowed.
        floor: Tier,
    },
    /// A legacy-TLS attempt when the operator's policy disallows legacy TLS.
    #[error("an attempt at legacy-tls, which the operator's policy disallows")]
    LegacyNotAllowed,
    /// The TLS settings are not the ones the host applies for the tier (weaker versions or
    /// ciphers under a stronger tier's name, a verification the context cannot support).
    #[error("the TLS settings of an attempt at {} are not that tier's", .tier.name())]
    TlsParametersMismatch {
        /// The tier the plugin asked for.
        tier: Tier,
    },
    /// The delay before an attempt is longer than [`GuardLimits::max_attempt_delay_secs`].
    #[error("an attempt delayed by {delay_secs} s, more than the {max} s allowed")]
    DelayTooLong {
        /// The delay asked for, in seconds.
        delay_secs: u32,
        /// The limit, in seconds.
        max: u32,
    },
    /// A deferral longer than [`GuardLimits::max_retry_after_secs`].
    #[error("a deferral of {retry_after_secs} s, more than the {max} s allowed")]
    RetryAfterTooLong {
        /// The deferral asked for, in seconds.
        retry_after_secs: u32,
        /// The limit, in seconds.
        max: u32,
    },
    /// A bounce whose status is not an RFC 3463 permanent failure (`5.x.y`, x and y at most 999).
    #[error("a bounce with status {class}.{subject}.{detail}, not a 5.x.y permanent failure")]
    InvalidBounceStatus {
        /// The class given.
        class: u8,
        /// The subject given.
        subject: u16,
        /// The detail given.
        detail: u16,
    },
    /// `done` without a delivery reported: the host would drop the message.
    #[error("done, but no attempt delivered the message")]
    DoneWithoutDelivery,
    /// Anything but `done` after the message was delivered: the host would send it again.
    #[error("{action} after the message was delivered")]
    NotDoneAfterDelivery {
        /// The action asked for.
        action: &'static str,
    },
}

/// What the floor rests on for this peer: the pin the host recorded itself (`facts`, from the
/// successes it observed), or the one the stored history holds when that is in policy-core's
/// format and pins longer. The history can only add to the host's pin: a plugin that rewrites
/// its history, returns an empty one or keeps its own format cannot shorten or drop it.
fn memory_for_floor(history: Option<&[u8]>, facts: &PeerFacts) -> PeerMemory {
    let mut memory = history
        .and_then(|blob| History::decode(blob).ok())
        .map(|history| history.memory)
        .unwrap_or_default();
    memory.pinned_until = memory.pinned_until.max(facts.pinned_until);
    memory
}

/// Checks a plugin's `decision` for a call with these inputs; `facts` is what the host itself
/// recorded about the peer ([`PeerFacts::default`] when it keeps no record, e.g. `decide`, whose
/// caller owns the history).
///
/// # Errors
///
/// The first [`Refusal`] that applies.
#[expect(
    clippy::too_many_arguments,
    reason = "the inputs of the call being checked, and the host's facts"
)]
pub fn check(
    decision: &Decision,
    limits: &GuardLimits,
    policy: &Policy,
    context: &DeliveryContext,
    history: Option<&[u8]>,
    facts: &PeerFacts,
    last: Option<&AttemptReport>,
    now: UnixSeconds,
) -> Result<(), Refusal> {
    let delivered = matches!(
        last,
        Some(AttemptReport {
            outcome: Outcome::Success { .. },
            ..
        })
    );
    match decision.action {
        Action::Attempt { .. } | Action::Defer { .. } | Action::Bounce { .. } if delivered => {
            return Err(Refusal::NotDoneAfterDelivery {
                action: decision.action.name(),
            });
        }
        Action::Attempt {
            tier,
            tls,
            delay_secs,
        } => {
            let bounds = floor(policy, context, &memory_for_floor(history, facts), now);
            if tier < bounds.floor {
                return Err(Refusal::BelowFloor {
                    tier,
                    floor: bounds.floor,
                });
            }
            if tier == Tier::LegacyTls && !policy.allow_legacy_tls {
                return Err(Refusal::LegacyNotAllowed);
            }
            if tls != tier.parameters(verification_for(context)) {
                return Err(Refusal::TlsParametersMismatch { tier });
            }
            if delay_secs > limits.max_attempt_delay_secs {
                return Err(Refusal::DelayTooLong {
                    delay_secs,
                    max: limits.max_attempt_delay_secs,
                });
            }
        }
        Action::Defer { retry_after_secs } => {
            if retry_after_secs > limits.max_retry_after_secs {
                return Err(Refusal::RetryAfterTooLong {
                    retry_after_secs,
                    max: limits.max_retry_after_secs,
                });
            }
        }
        Action::Bounce { status } => {
            if status.class != 5 || status.subject > 999 || status.detail > 999 {
                return Err(Refusal::InvalidBounceStatus {
                    class: status.class,
                    subject: status.subject,
                    detail: status.detail,
                });
            }
        }
        Action::Done if !delivered => return Err(Refusal::DoneWithoutDelivery),
        Action::Done => {}
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use policy_core::{Dane, EnhancedStatus, MtaSts, Reason, TlsRptResults};

    const NOW: UnixSeconds = 1_700_000_000;

    fn decision(action: Action) -> Decision {
        Decision {
            action,
            reason: Reason::StrongestTier,
            report: TlsRptResults::EMPTY,
            history: policy_core::HistoryBlob::from_slice(&[]).unwrap(),
            history_error: None,
        }
    }

    fn attempt(tier: Tier, context: &DeliveryContext) -> Action {
        Action::Attempt {
            tier,
            tls: tier.parameters(verification_for(context)),
            delay_secs: 0,
        }
    }

    fn check_plain(action: Action, context: &DeliveryContext) -> Result<(), Refusal> {
        let policy = Policy::default();
        check(
            &decision(action),
            &GuardLimits::default(),
            &policy,
            context,
            None,
            &PeerFacts::default(),
            None,
            NOW,
        )
    }

    #[test]
    fn the_built_in_engines_first_decisions_pass() {
        for context in [
            DeliveryContext::default(),
            DeliveryContext {
                dane: Dane::Usable,
                ..DeliveryContext::default()
            },
            DeliveryContext {
                requiretls: true,
                ..DeliveryContext::default()
            },
        ] {
            let d = policy_core::decide(&Policy::default(), &context, None, None, NOW);
            check(
                &d,
                &GuardLimits::default(),
                &Policy::default(),
                &context,
                None,
                &PeerFacts::default(),
                None,
                NOW,
            )
            .unwrap();
        }
    }

    #[test]
    fn cleartext_under_mta_sts_enforce_is_below_the_floor() {
        let context = DeliveryContext {
            mta_sts: MtaSts::Enforce,
            ..DeliveryContext::default()
        };
        assert_eq!(
            check_plain(attempt(Tier::Cleartext, &context), &context),
            Err(Refusal::BelowFloor {
                tier: Tier::Cleartext,
                floor: Tier::AuthenticatedTls
            })
        );
    }

    #[test]
    fn a_pin_in_policy_core_history_raises_the_floor() {
        let mut history = History::default();
        history.memory.pinned_until = NOW + 10;
        let blob = history.encode();
        let context = DeliveryContext::default();
        let refused = check(
            &decision(attempt(Tier::LegacyTls, &context)),
            &GuardLimits::default(),
            &Policy::default(),
            &context,
            Some(blob.as_bytes()),
            &PeerFacts::default(),
            None,
            NOW,
        );
        assert_eq!(
            refused,
            Err(Refusal::BelowFloor {
                tier: Tier::LegacyTls,
                floor: Tier::ModernTls
            })
        );
    }

    #[test]
    fn the_hosts_pin_holds_whatever_history_the_plugin_returned() {
        let facts = PeerFacts {
            pinned_until: NOW + 10,
            ..PeerFacts::default()
        };
        let unpinned = History::default().encode();
        let context = DeliveryContext::default();
        for (name, history) in [
            ("no history", None),
            ("an empty blob", Some(&[][..])),
            ("the plugin's own format", Some(&b"my own format"[..])),
            ("policy-core's format, unpinned", Some(unpinned.as_bytes())),
        ] {
            let refused = check(
                &decision(attempt(Tier::Cleartext, &context)),
                &GuardLimits::default(),
                &Policy::default(),
                &context,
                history,
                &facts,
                None,
                NOW,
            );
            assert_eq!(
                refused,
                Err(Refusal::BelowFloor {
                    tier: Tier::Cleartext,
                    floor: Tier::ModernTls
                }),
                "{name}"
            );
        }
    }

    #[test]
    fn weak_tls_settings_under_a_strong_name_are_refused() {
        let context = DeliveryContext::default();
        let action = Action::Attempt {
            tier: Tier::ModernTls,
            tls: Tier::LegacyTls.parameters(verification_for(&context)),
            delay_secs: 0,
        };
        assert_eq!(
            check_plain(action, &context),
            Err(Refusal::TlsParametersMismatch {
                tier: Tier::ModernTls
            })
        );
    }

    #[test]
    fn done_needs_a_delivery_and_a_delivery_needs_done() {
        let context = DeliveryContext::default();
        assert_eq!(
            check_plain(Action::Done, &context),
            Err(Refusal::DoneWithoutDelivery)
        );
        let delivered = AttemptReport {
            tier: Tier::ModernTls,
            outcome: Outcome::Success { version: None },
        };
        let again = check(
            &decision(attempt(Tier::ModernTls, &context)),
            &GuardLimits::default(),
            &Policy::default(),
            &context,
            None,
            &PeerFacts::default(),
            Some(&delivered),
            NOW,
        );
        assert_eq!(
            again,
            Err(Refusal::NotDoneAfterDelivery { action: "attempt" })
        );
    }

    #[test]
    fn absurd_delays_and_statuses_are_refused() {
        let context = DeliveryContext::default();
        let slow = Action::Attempt {
            tier: Tier::ModernTls,
            tls: Tier::ModernTls.parameters(verification_for(&context)),
            delay_secs: 86_400 * 365,
        };
        assert!(matches!(
            check_plain(slow, &context),
            Err(Refusal::DelayTooLong { .. })
        ));
        assert!(matches!(
            check_plain(
                Action::Defer {
                    retry_after_secs: u32::MAX
                },
                &context
            ),
            Err(Refusal::RetryAfterTooLong { .. })
        ));
        let status = EnhancedStatus {
            class: 2,
            subject: 0,
            detail: 0,
        };
        assert!(matches!(
            check_plain(Action::Bounce { status }, &context),
            Err(Refusal::InvalidBounceStatus { .. })
        ));
        assert_eq!(
            check_plain(
                Action::Bounce {
                    status: EnhancedStatus::ENCRYPTION_NEEDED
                },
                &context
            ),
            Ok(())
        );
    }
}
