//! What the daemon tells its operator: one typed record per thing it did (a lookup answered, an
//! outcome taken in, a warning), as KumoMTA's log records are typed.
//!
//! A record has three readers, and one source for all three: its [`Display`](std::fmt::Display)
//! is the daemon's human line (`lookup=... tier=... reason=...`); [`Event::emit`] hands it to
//! `tracing` with its fields (the `--log-format json` lines); and the metrics count it
//! ([`super::metrics`]). Every field a metric labels with is a name from a fixed set (a tier, a
//! reason, an outcome kind), never a peer's name: the record keeps those apart by type.

use std::fmt;

use policy_core::{Outcome, Reason, Tier};

/// Why a lookup got the answer it got.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AnswerReason {
    /// The engine decided, for this reason.
    Engine(Reason),
    /// The dance in progress goes on: the step the engine asked for after the last outcome.
    DanceContinues,
    /// The floor alone answered (the policy table, or a floor not known yet).
    Floor,
}

impl AnswerReason {
    /// The kebab-case name (the engine's reason code, `dance-continues` or `floor`).
    #[must_use]
    pub const fn name(self) -> &'static str {
        match self {
            Self::Engine(reason) => reason.name(),
            Self::DanceContinues => "dance-continues",
            Self::Floor => "floor",
        }
    }

    /// Whether this answer refused to walk the peer below what it proved (a pinned peer that
    /// lost STARTTLS, a downgrade the engine suspects): a downgrade prevented.
    #[must_use]
    pub const fn refused_downgrade(self) -> bool {
        matches!(
            self,
            Self::Engine(
                Reason::DowngradeRefusedPinned
                    | Reason::StarttlsMissingAfterTls
                    | Reason::DowngradeAttackSuspected
            )
        )
    }
}

/// One lookup answered.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Answered {
    /// The next hop Postfix asked for (the history key).
    pub peer: String,
    /// The Postfix process that asked, or `unknown`.
    pub client: String,
    /// The floor's name ([`Floor::name`](super::floor::Floor::name)), `none` or `unknown`.
    pub floor: &'static str,
    /// The tier answered, if the answer is one.
    pub tier: Option<Tier>,
    /// What the answer does: the engine's action (`attempt`, `defer`, `bounce`, `done`), or for
    /// an answer without the engine `attempt`, `defer` or `postfix-default` (NOTFOUND).
    pub action: &'static str,
    /// Why.
    pub reason: AnswerReason,
    /// The MTA-STS policy's id, when one applies.
    pub policy_id: Option<String>,
    /// The socketmap reply, as sent.
    pub answer: String,
}

/// One outcome read from Postfix's log and given to the engine.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OutcomeTaken {
    /// The next hop it was attributed to.
    pub peer: String,
    /// Postfix's queue id.
    pub queue_id: String,
    /// The Postfix process that made the attempt.
    pub pid: u32,
    /// How it was attributed: `process` (the very process answered) or `destination`.
    pub attributed_by: &'static str,
    /// The tier of the attempt.
    pub tier: Tier,
    /// The outcome.
    pub outcome: Outcome,
    /// What the engine does next: `attempt TIER`, or the action's name.
    pub next: String,
    /// The engine's reason.
    pub reason: Reason,
    /// Postfix's own words.
    pub postfix: String,
    /// The plugin failure that came with the decision, if any.
    pub plugin_failure: Option<String>,
}

/// What the daemon did, for its log and its metrics.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Event {
    /// A lookup was answered.
    Answered(Answered),
    /// A lookup got no decision: malformed, another map's, or the database failed.
    LookupFailed {
        /// The key asked for (`malformed` when the request did not parse).
        key: String,
        /// Why: `malformed`, `wrong-map`, `history-store` (the database failed) or `engine`
        /// (the engine gave no decision).
        cause: &'static str,
        /// The error, as Postfix was told.
        error: String,
    },
    /// An outcome read from the log was given to the engine.
    Outcome(Box<OutcomeTaken>),
    /// A batch of the log could not be taken in (nothing of it was kept; it is read again).
    LogFailed {
        /// The log file.
        path: String,
        /// Why: `read-log`, `history-store` or `engine`.
        cause: &'static str,
        /// The error.
        error: String,
    },
    /// An outcome read from the log could not be attributed to one tier, and was left out.
    OutcomeIgnored {
        /// The next hop.
        peer: String,
        /// Postfix's queue id.
        queue_id: String,
        /// The process that made the attempt.
        pid: u32,
        /// Postfix's own words.
        postfix: String,
    },
    /// The policy component failed on a lookup (the fail mode decided instead).
    PluginFailure {
        /// The next hop.
        peer: String,
        /// The cause's name ([`PluginFailure::cause`](tlsfallback_engine::failure::PluginFailure::cause)).
        cause: &'static str,
        /// The whole account.
        failure: String,
    },
    /// A TLS-RPT datagram was sent, or could not be.
    TlsRpt {
        /// The recipient domain it reports for.
        domain: String,
        /// Why it was not sent, when it was not.
        problem: Option<String>,
    },
    /// The policy file (and plugin) were read anew and serve from now on.
    Reloaded {
        /// The policy file, or `built-in`.
        policy: String,
    },
    /// A new policy file (or plugin) was refused; the one before keeps serving.
    ReloadRefused {
        /// The policy file, or `built-in`.
        policy: String,
        /// Why.
        error: String,
    },
    /// A sweep forgot the destinations nothing touched for the retention (`--forget-after`).
    Forgotten {
        /// How many.
        destinations: u64,
        /// The retention, in days.
        unused_for_days: u64,
    },
    /// Something the operator should know; the daemon goes on.
    Warning(String),
}

impl Event {
    /// The stable name of the record's kind: the `event` field of its JSON line.
    #[must_use]
    pub const fn name(&self) -> &'static str {
        match self {
            Self::Answered(_) => "decision",
            Self::LookupFailed { .. } => "lookup-failed",
            Self::Outcome(_) => "outcome",
            Self::LogFailed { .. } => "log-failed",
            Self::OutcomeIgnored { .. } => "outcome-ignored",
            Self::PluginFailure { .. } => "plugin-failure",
            Self::TlsRpt { .. } => "tlsrpt",
            Self::Reloaded { .. } => "reloaded",
            Self::ReloadRefused { .. } => "reload-refused",
            Self::Forgotten { .. } => "forgotten",
            Self::Warning(_) => "warning",
        }
    }

    /// Hands the record to `tracing`: the human line as its message, and each field as its
    /// own (the JSON log format writes both). Decisions and outcomes are `INFO`, the rest
    /// `WARN`, a lookup without a decision `ERROR`.
    pub fn emit(&self) {
        let event = self.name();
        match self {
            Self::Answered(a) => tracing::info!(
                event,
                peer = a.peer,
                client = a.client,
                floor = a.floor,
                tier = tier_name(a.tier),
                action = a.action,
                reason = a.reason.name(),
                policy_id = a.policy_id,
                answer = a.answer,
                "{self}"
            ),
            Self::LookupFailed { key, cause, error } => {
                tracing::error!(event, peer = key, cause, error, "{self}");
            }
            Self::Outcome(o) => tracing::info!(
                event,
                peer = o.peer,
                queue_id = o.queue_id,
                pid = o.pid,
                attributed_by = o.attributed_by,
                tier = o.tier.name(),
                outcome = o.outcome.name(),
                result = crate::delivery::describe_outcome(&o.outcome),
                next = o.next,
                reason = o.reason.name(),
                postfix = o.postfix,
                plugin_failure = o.plugin_failure,
                "{self}"
            ),
            Self::LogFailed { path, cause, error } => {
                tracing::error!(event, path, cause, error, "{self}");
            }
            Self::OutcomeIgnored {
                peer,
                queue_id,
                pid,
                postfix,
            } => tracing::warn!(event, peer, queue_id, pid, postfix, "{self}"),
            Self::PluginFailure {
                peer,
                cause,
                failure,
            } => tracing::warn!(event, peer, cause, failure, "{self}"),
            Self::TlsRpt { domain, problem } => match problem {
                Some(problem) => tracing::warn!(event, domain, problem, "{self}"),
                None => tracing::debug!(event, domain, "{self}"),
            },
            Self::Reloaded { policy } => tracing::info!(event, policy, "{self}"),
            Self::ReloadRefused { policy, error } => {
                tracing::error!(event, policy, error, "{self}");
            }
            Self::Forgotten {
                destinations,
                unused_for_days,
            } => tracing::info!(event, destinations, unused_for_days, "{self}"),
            Self::Warning(_) => tracing::warn!(event, "{self}"),
        }
    }
}

fn tier_name(tier: Option<Tier>) -> &'static str {
    tier.map_or("none", Tier::name)
}

/// `key=value` pairs, a value quoted when it has a space or is empty: the daemon's human line.
fn write_pairs(f: &mut fmt::Formatter<'_>, parts: &[(&str, &str)]) -> fmt::Result {
    for (index, (key, value)) in parts.iter().enumerate() {
        if index > 0 {
            f.write_str(" ")?;
        }
        if value.contains(' ') || value.is_empty() {
            write!(f, "{key}={value:?}")?;
        } else {
            write!(f, "{key}={value}")?;
        }
    }
    Ok(())
}

impl fmt::Display for Event {
    /// The daemon's human line for the record.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Answered(a) => {
                let mut parts = vec![
                    ("lookup", a.peer.as_str()),
                    ("client", &a.client),
                    ("floor", a.floor),
                    ("tier", tier_name(a.tier)),
                    ("reason", a.reason.name()),
                ];
                if let Some(id) = &a.policy_id {
                    parts.push(("policy_id", id));
                }
                parts.push(("answer", &a.answer));
                write_pairs(f, &parts)
            }
            Self::LookupFailed { key, error, .. } => {
                write_pairs(f, &[("lookup", key), ("error", error)])
            }
            Self::Outcome(o) => {
                write_pairs(
                    f,
                    &[
                        ("outcome", &o.peer),
                        ("queue_id", &o.queue_id),
                        ("pid", &o.pid.to_string()),
                        ("attributed_by", o.attributed_by),
                        ("tier", o.tier.name()),
                        ("result", &crate::delivery::describe_outcome(&o.outcome)),
                        ("next", &o.next),
                        ("reason", o.reason.name()),
                        ("postfix", &o.postfix),
                    ],
                )?;
                if let Some(failure) = &o.plugin_failure {
                    write!(f, " plugin-failure={failure:?}")?;
                }
                Ok(())
            }
            Self::LogFailed { path, error, .. } => {
                write!(f, "warning: reading {path}: {error}; retrying")
            }
            Self::OutcomeIgnored {
                peer,
                queue_id,
                pid,
                postfix,
            } => write_pairs(
                f,
                &[
                    ("outcome", peer),
                    ("queue_id", queue_id),
                    ("pid", &pid.to_string()),
                    (
                        "ignored",
                        "answers of several tiers to unknown processes await outcomes",
                    ),
                    ("postfix", postfix),
                ],
            ),
            Self::PluginFailure { peer, failure, .. } => {
                write!(f, "plugin-failure destination={peer} {failure}")
            }
            Self::TlsRpt { domain, problem } => match problem {
                Some(problem) => write!(f, "tlsrpt destination={domain} {problem}"),
                None => write!(f, "tlsrpt destination={domain} sent"),
            },
            Self::Reloaded { policy } => write_pairs(f, &[("reload", policy), ("result", "ok")]),
            Self::ReloadRefused { policy, error } => write_pairs(
                f,
                &[
                    ("reload", policy),
                    ("result", "refused; the policy before keeps serving"),
                    ("error", error),
                ],
            ),
            Self::Forgotten {
                destinations,
                unused_for_days,
            } => write!(
                f,
                "forgotten destinations={destinations} unused-for-days={unused_for_days}"
            ),
            Self::Warning(text) => write!(f, "warning: {text}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_human_line_of_a_lookup_is_the_daemons_line() {
        let event = Event::Answered(Answered {
            peer: "[mx.example]:25".into(),
            client: "4242".into(),
            floor: "none",
            tier: Some(Tier::ModernTls),
            action: "attempt",
            reason: AnswerReason::Engine(Reason::StrongestTier),
            policy_id: None,
            answer: "OK encrypt protocols=>=TLSv1.2".into(),
        });
        assert_eq!(
            event.to_string(),
            "lookup=[mx.example]:25 client=4242 floor=none tier=modern-tls \
             reason=strongest-tier answer=\"OK encrypt protocols=>=TLSv1.2\""
        );
        assert_eq!(event.name(), "decision");
    }

    #[test]
    fn refused_downgrades_are_the_pin_and_attack_reasons() {
        assert!(AnswerReason::Engine(Reason::DowngradeRefusedPinned).refused_downgrade());
        assert!(!AnswerReason::Engine(Reason::StrongestTier).refused_downgrade());
        assert!(!AnswerReason::Floor.refused_downgrade());
    }
}
