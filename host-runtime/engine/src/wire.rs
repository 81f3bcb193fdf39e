//! The JSON Lines contract of `tlsfallback decide` (stable: scripts and non-Rust callers rely on
//! it). Names are the kebab-case names of the WIT contract; keys are snake_case.
//!
//! Requests borrow their strings from the line and responses borrow theirs from the decision and
//! from buffers the caller reuses, so answering a line allocates nothing in the common case (the
//! `decide` throughput benchmark).

use std::borrow::Cow;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use policy_core::{
    Action, AttemptReport, CertificateError, Decision, DeliveryContext, Outcome, Tier, TlsAlert,
    TlsRptResults, TlsVersion, UnixSeconds,
};
use serde::{Deserialize, Serialize};

use crate::config::PolicyOverrides;

/// One request line.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Request<'a> {
    /// The peer (MX host name): selects per-destination overrides, echoed in the response.
    #[serde(borrow)]
    pub peer: Cow<'a, str>,
    /// Seconds since the Unix epoch.
    pub now: UnixSeconds,
    /// The history blob the previous response returned for this peer, base64; null for none.
    #[serde(default, borrow)]
    pub history: Option<Cow<'a, str>>,
    /// The outcome of the attempt the previous response asked for; null when a delivery starts.
    #[serde(default, borrow)]
    pub last: Option<LastAttempt<'a>>,
    /// What the host resolved for this delivery; missing fields are none/false.
    #[serde(default)]
    pub context: DeliveryContext,
    /// Changes to the policy file's policy for this request.
    #[serde(default)]
    pub policy: PolicyOverrides,
}

/// The `last` object: the outcome plus the detail keys that apply to it.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LastAttempt<'a> {
    /// The tier attempted.
    pub tier: Tier,
    /// The outcome's kebab-case name.
    #[serde(borrow)]
    pub outcome: Cow<'a, str>,
    /// For `tls-alert`: which alert.
    pub alert: Option<TlsAlert>,
    /// For `certificate-error`: which error.
    pub error: Option<CertificateError>,
    /// For `starttls-rejected`: the SMTP reply code.
    pub code: Option<u16>,
    /// For `success`: the negotiated version (`TLSv1` … `TLSv1.3`), if TLS was used.
    pub version: Option<TlsVersion>,
    /// For `success`: the negotiated cipher (informational: logged, not used by the engine).
    #[serde(borrow)]
    pub cipher: Option<Cow<'a, str>>,
}

/// Why a request line is refused (answered with an error line, nothing decided).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RequestError {
    /// Not JSON, not UTF-8, an unknown key, or a value of the wrong type or range.
    #[error("not a valid request: {0}")]
    NotARequest(serde_json::Error),
    /// `last.outcome` names no outcome.
    #[error(
        "unknown outcome {0:?}: expected success, connect-failed, starttls-not-offered, \
         starttls-rejected, tls-alert, certificate-error, handshake-timeout, connection-reset, \
         post-handshake-failure or policy-lookup-failed"
    )]
    UnknownOutcome(String),
    /// The outcome needs a detail the request does not give.
    #[error("{outcome} needs {needs}")]
    MissingDetail {
        /// The outcome.
        outcome: &'static str,
        /// The detail it needs, and its values.
        needs: &'static str,
    },
    /// A detail was given for an outcome it does not belong to.
    #[error("\"{key}\" applies only to outcome {belongs_to}, not {outcome}")]
    MisplacedDetail {
        /// The detail's key.
        key: &'static str,
        /// The outcome it belongs to.
        belongs_to: &'static str,
        /// The request's outcome.
        outcome: String,
    },
    /// `history` is not base64.
    #[error("\"history\" is not valid base64: {0}")]
    HistoryNotBase64(base64::DecodeError),
}

impl LastAttempt<'_> {
    /// The engine's view of the attempt, checking that each detail key belongs to the outcome.
    ///
    /// # Errors
    ///
    /// An unknown outcome, a missing required detail, or a detail that does not apply.
    pub fn to_report(&self) -> Result<AttemptReport, RequestError> {
        let outcome = match self.outcome.as_ref() {
            "success" => Outcome::Success {
                version: self.version,
            },
            "connect-failed" => Outcome::ConnectFailed,
            "starttls-not-offered" => Outcome::StarttlsNotOffered,
            "starttls-rejected" => Outcome::StarttlsRejected {
                code: self.code.ok_or(RequestError::MissingDetail {
                    outcome: "starttls-rejected",
                    needs: "\"code\" (the SMTP reply code)",
                })?,
            },
            "tls-alert" => Outcome::TlsAlert(self.alert.ok_or(RequestError::MissingDetail {
                outcome: "tls-alert",
                needs: "\"alert\" (protocol-version, handshake-failure, insufficient-security, \
                        inappropriate-fallback or other)",
            })?),
            "certificate-error" => {
                Outcome::CertificateError(self.error.ok_or(RequestError::MissingDetail {
                    outcome: "certificate-error",
                    needs: "\"error\" (expired, untrusted, name-mismatch or dane-mismatch)",
                })?)
            }
            "handshake-timeout" => Outcome::HandshakeTimeout,
            "connection-reset" => Outcome::ConnectionReset,
            "post-handshake-failure" => Outcome::PostHandshakeFailure,
            "policy-lookup-failed" => Outcome::PolicyLookupFailed,
            other => return Err(RequestError::UnknownOutcome(other.to_owned())),
        };
        let misplaced = [
            ("alert", self.alert.is_some(), "tls-alert"),
            ("error", self.error.is_some(), "certificate-error"),
            ("code", self.code.is_some(), "starttls-rejected"),
            ("version", self.version.is_some(), "success"),
            ("cipher", self.cipher.is_some(), "success"),
        ];
        for (key, present, belongs_to) in misplaced {
            if present && self.outcome != belongs_to {
                return Err(RequestError::MisplacedDetail {
                    key,
                    belongs_to,
                    outcome: self.outcome.to_string(),
                });
            }
        }
        Ok(AttemptReport {
            tier: self.tier,
            outcome,
        })
    }
}

impl<'a> Request<'a> {
    /// Parses one request line.
    ///
    /// # Errors
    ///
    /// Invalid JSON (or UTF-8), an unknown key or value.
    pub fn parse(line: &'a [u8]) -> Result<Self, RequestError> {
        serde_json::from_slice(line).map_err(RequestError::NotARequest)
    }

    /// The history blob's bytes, decoded into `buffer` (cleared first; reuse it across requests).
    ///
    /// # Errors
    ///
    /// When `history` is not base64. (Bytes that are not a history blob are not an error here:
    /// the engine reports them in its decision and treats the peer as unknown.)
    pub fn history_bytes<'b>(
        &self,
        buffer: &'b mut Vec<u8>,
    ) -> Result<Option<&'b [u8]>, RequestError> {
        let Some(text) = self.history.as_deref() else {
            return Ok(None);
        };
        buffer.clear();
        BASE64
            .decode_vec(text, buffer)
            .map_err(RequestError::HistoryNotBase64)?;
        Ok(Some(buffer.as_slice()))
    }
}

/// One response line.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Response<'a> {
    /// The peer, echoed.
    pub peer: &'a str,
    /// `attempt`, `defer`, `bounce` or `done`.
    pub action: &'static str,
    /// For `attempt`: the tier.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tier: Option<Tier>,
    /// For `attempt` at a TLS tier: the TLS settings to apply.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls: Option<policy_core::TlsParameters>,
    /// For `attempt`: seconds to wait before connecting.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub delay_secs: Option<u32>,
    /// For `defer`: seconds before the next try.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub retry_after_secs: Option<u32>,
    /// For `bounce`: the enhanced status code, like `5.7.10`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status: Option<String>,
    /// The peer's new history, base64: pass it back in the next request for this peer.
    pub history: &'a str,
    /// The reason code.
    pub reason: &'static str,
    /// One line for a human.
    pub explanation: &'static str,
    /// RFC 8460 result types to report.
    #[serde(serialize_with = "serialize_report")]
    pub report: TlsRptResults,
    /// Why the history passed in was unreadable, when it was.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub history_error: Option<String>,
    /// When a policy component failed and the fail mode decided instead: what went wrong and
    /// what was done.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub plugin_failure: Option<String>,
}

/// The result types by name, as a JSON array.
fn serialize_report<S: serde::Serializer>(
    report: &TlsRptResults,
    serializer: S,
) -> Result<S::Ok, S::Error> {
    serializer.collect_seq(report.iter().map(|result| result.name()))
}

impl<'a> Response<'a> {
    /// The response for a decision; the base64 history is written into `history_text` (cleared
    /// first; reuse it across responses).
    #[must_use]
    pub fn new(peer: &'a str, decision: &Decision, history_text: &'a mut String) -> Self {
        let (tier, tls, delay_secs, retry_after_secs, status) = match decision.action {
            Action::Attempt {
                tier,
                tls,
                delay_secs,
            } => (Some(tier), tls, Some(delay_secs), None, None),
            Action::Defer { retry_after_secs } => (None, None, None, Some(retry_after_secs), None),
            Action::Bounce { status } => (None, None, None, None, Some(status.to_string())),
            Action::Done => (None, None, None, None, None),
        };
        Self {
            peer,
            action: decision.action.name(),
            tier,
            tls,
            delay_secs,
            retry_after_secs,
            status,
            history: {
                history_text.clear();
                BASE64.encode_string(decision.history.as_bytes(), history_text);
                history_text
            },
            reason: decision.reason.name(),
            explanation: decision.reason.explanation(),
            report: decision.report,
            history_error: decision.history_error.map(|e| e.to_string()),
            plugin_failure: None,
        }
    }
}

/// The error line for a request that could not be answered.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ErrorResponse {
    /// The 1-based line number of the request.
    pub line: u64,
    /// What was wrong.
    pub error: String,
}
