//! The JSON Lines contract of `tlsfallback decide` (stable: scripts and non-Rust callers rely on
//! it). Names are the kebab-case names of the WIT contract; keys are snake_case.

use anyhow::{Context as _, anyhow, bail};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use policy_core::{
    Action, AttemptReport, CertificateError, Decision, DeliveryContext, Outcome, Tier, TlsAlert,
    TlsVersion, UnixSeconds,
};
use serde::{Deserialize, Serialize};

use crate::config::PolicyOverrides;

/// One request line.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Request {
    /// The peer (MX host name): selects per-destination overrides, echoed in the response.
    pub peer: String,
    /// Seconds since the Unix epoch.
    pub now: UnixSeconds,
    /// The history blob the previous response returned for this peer, base64; null for none.
    #[serde(default)]
    pub history: Option<String>,
    /// The outcome of the attempt the previous response asked for; null when a delivery starts.
    #[serde(default)]
    pub last: Option<LastAttempt>,
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
pub struct LastAttempt {
    /// The tier attempted.
    pub tier: Tier,
    /// The outcome's kebab-case name.
    pub outcome: String,
    /// For `tls-alert`: which alert.
    pub alert: Option<TlsAlert>,
    /// For `certificate-error`: which error.
    pub error: Option<CertificateError>,
    /// For `starttls-rejected`: the SMTP reply code.
    pub code: Option<u16>,
    /// For `success`: the negotiated version (`TLSv1` … `TLSv1.3`), if TLS was used.
    pub version: Option<TlsVersion>,
    /// For `success`: the negotiated cipher (informational: logged, not used by the engine).
    pub cipher: Option<String>,
}

impl LastAttempt {
    /// The engine's view of the attempt, checking that each detail key belongs to the outcome.
    ///
    /// # Errors
    ///
    /// An unknown outcome, a missing required detail, or a detail that does not apply.
    pub fn to_report(&self) -> anyhow::Result<AttemptReport> {
        let outcome = match self.outcome.as_str() {
            "success" => Outcome::Success {
                version: self.version,
            },
            "connect-failed" => Outcome::ConnectFailed,
            "starttls-not-offered" => Outcome::StarttlsNotOffered,
            "starttls-rejected" => Outcome::StarttlsRejected {
                code: self
                    .code
                    .context("starttls-rejected needs \"code\" (the SMTP reply code)")?,
            },
            "tls-alert" => Outcome::TlsAlert(self.alert.context(
                "tls-alert needs \"alert\" (protocol-version, handshake-failure, \
                 insufficient-security, inappropriate-fallback or other)",
            )?),
            "certificate-error" => Outcome::CertificateError(self.error.context(
                "certificate-error needs \"error\" (expired, untrusted, name-mismatch or dane-mismatch)",
            )?),
            "handshake-timeout" => Outcome::HandshakeTimeout,
            "connection-reset" => Outcome::ConnectionReset,
            "post-handshake-failure" => Outcome::PostHandshakeFailure,
            "policy-lookup-failed" => Outcome::PolicyLookupFailed,
            other => bail!(
                "unknown outcome {other:?}: expected success, connect-failed, starttls-not-offered, \
                 starttls-rejected, tls-alert, certificate-error, handshake-timeout, \
                 connection-reset, post-handshake-failure or policy-lookup-failed"
            ),
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
                bail!(
                    "\"{key}\" applies only to outcome {belongs_to}, not {}",
                    self.outcome
                );
            }
        }
        Ok(AttemptReport {
            tier: self.tier,
            outcome,
        })
    }
}

impl Request {
    /// Parses one request line.
    ///
    /// # Errors
    ///
    /// Invalid JSON, an unknown key or value, or invalid base64 history.
    pub fn parse(line: &str) -> anyhow::Result<Self> {
        serde_json::from_str(line).context("not a valid request")
    }

    /// The history blob's bytes.
    ///
    /// # Errors
    ///
    /// When `history` is not base64. (Bytes that are not a history blob are not an error here:
    /// the engine reports them in its decision and treats the peer as unknown.)
    pub fn history_bytes(&self) -> anyhow::Result<Option<Vec<u8>>> {
        self.history
            .as_deref()
            .map(|text| {
                BASE64
                    .decode(text)
                    .map_err(|e| anyhow!("\"history\" is not valid base64: {e}"))
            })
            .transpose()
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
    pub history: String,
    /// The reason code.
    pub reason: &'static str,
    /// One line for a human.
    pub explanation: &'static str,
    /// RFC 8460 result types to report.
    pub report: Vec<&'static str>,
    /// Why the history passed in was unreadable, when it was.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub history_error: Option<String>,
}

impl<'a> Response<'a> {
    /// The response for a decision.
    #[must_use]
    pub fn new(peer: &'a str, decision: &Decision) -> Self {
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
            history: BASE64.encode(decision.history.as_bytes()),
            reason: decision.reason.name(),
            explanation: decision.reason.explanation(),
            report: decision.report.iter().map(|r| r.name()).collect(),
            history_error: decision.history_error.map(|e| e.to_string()),
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
