//! The delivery loop: decide, attempt, report the outcome, decide again, MX hosts in preference
//! order, history stored per peer.

use std::net::SocketAddr;

use policy_core::{
    Action, AttemptReport, DeliveryContext, MAX_ATTEMPTS_PER_DELIVERY, Outcome, Reason, Tier,
};

use crate::clock::Clock;
use crate::deciding::{self, DecidingError};
use crate::smtp::{self, Message, RecipientRefusal, Timeouts};
use crate::store::{HistoryStore, PendingUpdate, journal_path};
use crate::tls::TrustAnchors;
use crate::tlsrpt::dance::{DanceReport, FinalResult};
use crate::tlsrpt::datagram::{PolicyType, ReportPolicy};
use crate::tlsrpt::reporter::{Receiver, ReportTarget, TlsRptReporter, attempt_datagram};
use tlsfallback_engine::config::PolicyFile;
use tlsfallback_engine::decider::DecisionEngine;

/// One MX host to try.
#[derive(Clone, Debug)]
pub struct Destination {
    /// The peer's key in the history: the MX host name, with `:port` when the port is not 25.
    pub peer: String,
    /// The MX host name certificates must match.
    pub host: String,
    /// Where to connect.
    pub address: SocketAddr,
    /// What the host resolved for this MX (its DANE and MTA-STS states, its TLSA records);
    /// `None`: the job's context and trust anchors apply as given (`--mx`).
    pub resolved: Option<ResolvedFloor>,
}

/// The floor's inputs the host resolved for one MX host.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ResolvedFloor {
    /// The DANE state (RFC 7672).
    pub dane: policy_core::Dane,
    /// The MTA-STS state for this host (RFC 8461).
    pub mta_sts: policy_core::MtaSts,
    /// The TLSA records DANE verification uses (when `dane` is usable).
    pub tlsa: Vec<crate::tls::TlsaRecord>,
    /// `dane=usable mta_sts=enforce policy_id=...`, for each attempt's log line.
    pub summary: String,
    /// The policy TLS-RPT reports this MX's attempts under (DANE's TLSA records, the MTA-STS
    /// policy, or none).
    pub report_policy: ReportPolicy,
}

impl Destination {
    /// The MX host `host` at `address`: its history key is the host's one spelling
    /// ([`crate::store::peer_key`]), with `:port` when the port is not 25.
    #[must_use]
    pub fn new(host: &str, address: SocketAddr, resolved: Option<ResolvedFloor>) -> Self {
        let host = crate::store::peer_key(host);
        let peer = if address.port() == 25 {
            host.clone()
        } else {
            format!("{host}:{}", address.port())
        };
        Self {
            peer,
            host,
            address,
            resolved,
        }
    }

    /// The context of an attempt at this MX: the resolved DANE and MTA-STS states over the
    /// job's.
    #[must_use]
    pub fn context(&self, job: DeliveryContext) -> DeliveryContext {
        match &self.resolved {
            Some(floor) => DeliveryContext {
                dane: floor.dane,
                mta_sts: floor.mta_sts,
                ..job
            },
            None => job,
        }
    }

    /// The policy TLS-RPT reports attempts at this MX under: the resolved one; for an MX the
    /// caller named (`--mx`), DANE when the job has TLSA records, else MTA-STS when the job's
    /// state has a policy, else none, all under the recipient domain `domain`.
    #[must_use]
    pub fn report_policy(&self, job: &DeliveryJob<'_>, domain: &str) -> ReportPolicy {
        if let Some(floor) = &self.resolved {
            return floor.report_policy.clone();
        }
        if !job.anchors.tlsa.is_empty() {
            return ReportPolicy {
                policy_type: PolicyType::Tlsa,
                policy_domain: Some(self.host.clone()),
                policy_strings: job
                    .anchors
                    .tlsa
                    .iter()
                    .map(crate::tls::TlsaRecord::presentation)
                    .collect(),
                mx_host_patterns: Vec::new(),
            };
        }
        match job.context.mta_sts {
            policy_core::MtaSts::Enforce
            | policy_core::MtaSts::Testing
            | policy_core::MtaSts::FetchFailed => ReportPolicy {
                policy_type: PolicyType::Sts,
                policy_domain: Some(domain.to_owned()),
                policy_strings: Vec::new(),
                mx_host_patterns: Vec::new(),
            },
            _ => ReportPolicy::no_policy_found(domain),
        }
    }

    /// The trust anchors of an attempt at this MX: the resolved TLSA records over the job's.
    #[must_use]
    pub fn anchors(&self, job: &TrustAnchors) -> TrustAnchors {
        match &self.resolved {
            Some(floor) => TrustAnchors {
                ca_file: job.ca_file.clone(),
                tlsa: floor.tlsa.clone(),
            },
            None => job.clone(),
        }
    }
}

/// Everything one delivery needs besides the engine, the store and the clock.
#[derive(Clone, Debug)]
pub struct DeliveryJob<'a> {
    /// The message.
    pub message: Message<'a>,
    /// MX hosts in preference order.
    pub destinations: Vec<Destination>,
    /// What the host resolved (DANE, MTA-STS, REQUIRETLS, TLS-Required: No, SASL).
    pub context: DeliveryContext,
    /// Our EHLO name.
    pub helo_name: String,
    /// Trust anchors for verified tiers.
    pub anchors: TrustAnchors,
    /// Network timeouts.
    pub timeouts: Timeouts,
    /// The recipient domain's TLSRPT record, when its attempts are reported (none: TLS-RPT is
    /// off, the domain publishes no record, or the message is itself a report).
    pub tlsrpt: Option<ReportTarget>,
}

/// One line of the delivery log: an attempt and what came of it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AttemptLine {
    /// The MX host.
    pub peer: String,
    /// The tier attempted.
    pub tier: Tier,
    /// Seconds waited before it.
    pub delay_secs: u32,
    /// The outcome's kebab-case name, with its detail (alert, code, error).
    pub outcome: String,
    /// The negotiated version and cipher, if TLS was up.
    pub negotiated: Option<(String, String)>,
    /// Why the engine chose this tier.
    pub reason: &'static str,
    /// The peer's or OpenSSL's own words.
    pub detail: String,
    /// What the host resolved for this MX (`dane=... mta_sts=...`), when it resolved it.
    pub resolved: Option<String>,
}

/// How the delivery ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DeliveryResult {
    /// Accepted by `peer` at `tier`.
    Delivered {
        /// The MX host that accepted it.
        peer: String,
        /// The tier it went at.
        tier: Tier,
        /// Set when the history could not be updated after the peer accepted the message: what
        /// happened to the update (kept in the journal for the next run, or lost). Still
        /// delivered: sending it again would duplicate it.
        history_warning: Option<String>,
        /// The recipients that peer refused (the others have the message): each bounces (5xx)
        /// or is deferred (4xx).
        refused: Vec<RecipientRefusal>,
    },
    /// Keep the message and retry later.
    Deferred {
        /// The earliest retry any MX asked for, in seconds.
        retry_after_secs: u32,
        /// Why, per MX host.
        reasons: Vec<String>,
    },
    /// Return the message to its sender.
    Bounced {
        /// The enhanced status code.
        status: String,
        /// Why.
        reason: String,
    },
}

/// The name of an outcome with its detail, as the log and the CLI's JSON write it.
#[must_use]
pub fn describe_outcome(outcome: &Outcome) -> String {
    match outcome {
        Outcome::TlsAlert(alert) => format!("tls-alert {}", alert.name()),
        Outcome::CertificateError(error) => format!("certificate-error {}", error.name()),
        Outcome::StarttlsRejected { code } => format!("starttls-rejected {code}"),
        other => other.name().to_owned(),
    }
}

/// Where a delivery's account of itself goes.
pub struct DeliveryOutputs<'a> {
    /// One line per attempt.
    pub log: &'a mut dyn FnMut(&AttemptLine),
    /// What went wrong besides the delivery (the store, the reporter).
    pub warn: &'a mut dyn FnMut(&str),
    /// The TLS-RPT reporter, when results are reported (see [`DeliveryJob::tlsrpt`]).
    pub tlsrpt: Option<&'a mut TlsRptReporter>,
}

/// Delivers one message. First applies the history updates earlier deliveries could not store
/// (a failure there is only reported through `warn`: it must not hold up this message).
///
/// # Errors
///
/// A database or engine failure before the message was accepted; the message is then neither
/// delivered nor lost (the caller keeps it, as for a deferral). Once a peer accepted it, the
/// delivery succeeds whatever the store does (see [`DeliveryResult::Delivered`]).
pub fn deliver(
    engine: &mut dyn DecisionEngine,
    store: &mut HistoryStore,
    policy_file: &PolicyFile,
    clock: &mut dyn Clock,
    job: &DeliveryJob<'_>,
    outputs: DeliveryOutputs<'_>,
) -> Result<DeliveryResult, DecidingError> {
    let DeliveryOutputs {
        log,
        warn,
        mut tlsrpt,
    } = outputs;
    match deciding::apply_pending(store, engine, warn) {
        Ok(applied) => {
            if applied.applied > 0 || applied.skipped > 0 {
                warn(&format!(
                    "applied {} pending history update(s) from {} ({} already applied)",
                    applied.applied,
                    journal_path(store.path()).display(),
                    applied.skipped
                ));
            }
            for line in &applied.unreadable {
                warn(&format!(
                    "dropped an unreadable pending history update: {line}"
                ));
            }
        }
        Err(error) => warn(&format!(
            "pending history updates not applied yet (kept for the next delivery): {error:#}"
        )),
    }
    let mut retry_after_secs = u32::MAX;
    let mut reasons = Vec::new();
    for destination in &job.destinations {
        let policy = policy_file.policy_for(&destination.host);
        let context = destination.context(job.context);
        let anchors = destination.anchors(&job.anchors);
        let mut last: Option<AttemptReport> = None;
        let mut smtp_verdict: Option<DeliveryResult> = None;
        let mut refused: Vec<RecipientRefusal> = Vec::new();
        let mut own_history: Option<Vec<u8>> = None;
        let mut attempts = 0u8;
        let mut dance = DanceReport::new();
        let mut receiver = Receiver {
            mx_host: Some(destination.host.clone()),
            ip: Some(destination.address.ip().to_string()),
            failure_reason: None,
        };
        loop {
            let now = clock.now();
            // After the first step, this delivery's own dance goes with the shared memory.
            let decided = match (&last, &own_history) {
                (Some(report), Some(own)) => deciding::decide_in_delivery(
                    store,
                    engine,
                    &destination.peer,
                    &policy,
                    &context,
                    report,
                    own,
                    now,
                ),
                _ => deciding::decide(
                    store,
                    engine,
                    &destination.peer,
                    &policy,
                    &context,
                    last.as_ref(),
                    now,
                ),
            };
            for warning in store.take_fleet_warnings() {
                warn(&warning);
            }
            let decision = match decided {
                Ok(decided) => {
                    if let Some(failure) = &decided.plugin_failure {
                        warn(&format!("{}: {failure}", destination.peer));
                    }
                    decided.decision
                }
                Err(error) => match last {
                    // The peer has the message: delivered, whatever the store says now.
                    Some(
                        success @ AttemptReport {
                            tier,
                            outcome: Outcome::Success { .. },
                        },
                    ) if smtp_verdict.is_none() => {
                        report(
                            &mut tlsrpt,
                            job,
                            destination,
                            Some(dance.delivered(tier)),
                            &receiver,
                            now,
                            warn,
                        );
                        let update =
                            PendingUpdate::new(&destination.peer, policy, context, success, now);
                        let kept = update.and_then(|update| store.record_pending(&update));
                        let warning = match kept {
                            Ok(()) => format!(
                                "the history update for {} is kept in {} and applied by the next \
                                 delivery: {error:#}",
                                destination.peer,
                                journal_path(store.path()).display()
                            ),
                            Err(journal) => format!(
                                "the history update for {} is LOST (the journal {} failed too: \
                                 {journal}): {error:#}",
                                destination.peer,
                                journal_path(store.path()).display()
                            ),
                        };
                        return Ok(DeliveryResult::Delivered {
                            peer: destination.peer.clone(),
                            tier,
                            history_warning: Some(warning),
                            refused,
                        });
                    }
                    _ => return Err(error),
                },
            };
            own_history = Some(decision.history.as_bytes().to_vec());
            let delivered_at = match last {
                Some(AttemptReport {
                    tier,
                    outcome: Outcome::Success { .. },
                }) => Some(tier),
                _ => None,
            };
            report(
                &mut tlsrpt,
                job,
                destination,
                dance.observe(&decision, delivered_at),
                &receiver,
                now,
                warn,
            );
            match decision.action {
                // The built-in engine never asks for more; a plugin is not trusted not to.
                Action::Attempt { .. } if attempts >= MAX_ATTEMPTS_PER_DELIVERY => {
                    report(
                        &mut tlsrpt,
                        job,
                        destination,
                        dance.abandoned(),
                        &receiver,
                        now,
                        warn,
                    );
                    retry_after_secs = retry_after_secs.min(policy.retry_after_secs);
                    reasons.push(format!(
                        "{}: {} ({})",
                        destination.peer,
                        Reason::AttemptLimit.name(),
                        Reason::AttemptLimit.explanation()
                    ));
                    break;
                }
                Action::Attempt {
                    tier,
                    tls,
                    delay_secs,
                } => {
                    attempts += 1;
                    clock.sleep(delay_secs);
                    let result = smtp::attempt(
                        destination.address,
                        &destination.host,
                        &job.helo_name,
                        tls.as_ref(),
                        &anchors,
                        job.timeouts,
                        &job.message,
                    );
                    log(&AttemptLine {
                        peer: destination.peer.clone(),
                        tier,
                        delay_secs,
                        outcome: describe_outcome(&result.outcome),
                        negotiated: result
                            .negotiated
                            .as_ref()
                            .map(|n| (n.version_name.clone(), n.cipher.clone())),
                        reason: decision.reason.name(),
                        detail: result.detail.clone(),
                        resolved: destination.resolved.as_ref().map(|r| r.summary.clone()),
                    });
                    // The session worked but the message itself was refused: the engine still
                    // learns what the tier did; the SMTP verdict decides the message's fate.
                    if let Some(text) = &result.rejected {
                        smtp_verdict = Some(DeliveryResult::Bounced {
                            status: "5.0.0".to_owned(),
                            reason: format!("{} refused the message: {text}", destination.peer),
                        });
                    } else if let Some(text) = &result.deferred {
                        smtp_verdict = Some(DeliveryResult::Deferred {
                            retry_after_secs: policy.retry_after_secs,
                            reasons: vec![format!("{}: {text}", destination.peer)],
                        });
                    }
                    refused = result.refused_recipients;
                    if !matches!(result.outcome, Outcome::Success { .. }) {
                        receiver.failure_reason = Some(describe_outcome(&result.outcome));
                    }
                    last = Some(AttemptReport {
                        tier,
                        outcome: result.outcome,
                    });
                }
                Action::Done => {
                    if let Some(verdict) = smtp_verdict {
                        if let DeliveryResult::Deferred { reasons: r, .. } = &verdict {
                            reasons.extend(r.iter().cloned());
                            retry_after_secs = retry_after_secs.min(policy.retry_after_secs);
                            break;
                        }
                        return Ok(verdict);
                    }
                    let tier = last.map_or(Tier::Cleartext, |l| l.tier);
                    return Ok(DeliveryResult::Delivered {
                        peer: destination.peer.clone(),
                        tier,
                        history_warning: None,
                        refused,
                    });
                }
                Action::Defer {
                    retry_after_secs: after,
                } => {
                    retry_after_secs = retry_after_secs.min(after);
                    reasons.push(format!(
                        "{}: {} ({})",
                        destination.peer,
                        decision.reason.name(),
                        decision.reason.explanation()
                    ));
                    break;
                }
                Action::Bounce { status } => {
                    return Ok(DeliveryResult::Bounced {
                        status: status.to_string(),
                        reason: format!(
                            "{}: {} ({})",
                            destination.peer,
                            decision.reason.name(),
                            decision.reason.explanation()
                        ),
                    });
                }
            }
        }
    }
    Ok(DeliveryResult::Deferred {
        retry_after_secs: if retry_after_secs == u32::MAX {
            0
        } else {
            retry_after_secs
        },
        reasons,
    })
}

/// Reports one attempt's final result at `destination`, once it is known (never per try), when
/// the job's results are reported; what could not be sent or kept goes to `warn`.
fn report(
    tlsrpt: &mut Option<&mut TlsRptReporter>,
    job: &DeliveryJob<'_>,
    destination: &Destination,
    final_result: Option<FinalResult>,
    receiver: &Receiver,
    now: u64,
    warn: &mut dyn FnMut(&str),
) {
    let (Some(reporter), Some(target), Some(result)) =
        (tlsrpt.as_deref_mut(), &job.tlsrpt, final_result)
    else {
        return;
    };
    let policy = destination.report_policy(job, &target.domain);
    let datagram = attempt_datagram(target, &policy, result, receiver);
    for problem in reporter.report(&datagram, now) {
        warn(&format!("{}: {problem}", destination.peer));
    }
}
