//! What the delivery loop and the Postfix service hold to report: the collectd client (when a
//! socket is configured) and the ledger the preview reads, and the datagram of one attempt.

use std::path::Path;
use std::time::Duration;

use super::client::{SendCounters, TlsRptClient};
use super::dance::FinalResult;
use super::datagram::{Datagram, FailureDetail, PolicyResult, ReportPolicy};
use super::ledger::{LedgerError, ResultLedger};

/// Where one delivery's results go: the recipient domain that publishes a TLSRPT record.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReportTarget {
    /// The recipient domain (`d`).
    pub domain: String,
    /// Its TLSRPT record (`pr`).
    pub record: String,
}

/// The receiving side of one attempt, as the failure details name it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Receiver {
    /// The MX host name.
    pub mx_host: Option<String>,
    /// Its IP address.
    pub ip: Option<String>,
    /// What the host saw on the last failed try (`certificate-error name-mismatch`): the
    /// outcome's stable name, not the peer's words, so that equal failures add up.
    pub failure_reason: Option<String>,
}

/// The datagram of one attempt's final result.
#[must_use]
pub fn attempt_datagram(
    target: &ReportTarget,
    policy: &ReportPolicy,
    result: FinalResult,
    receiver: &Receiver,
) -> Datagram {
    let (failures, failed) = match result {
        FinalResult::Success => (Vec::new(), false),
        FinalResult::Failure(results) => (
            results
                .iter()
                .map(|result| FailureDetail {
                    result,
                    sending_mta_ip: None,
                    receiving_mx_hostname: receiver.mx_host.clone(),
                    receiving_mx_helo: None,
                    receiving_ip: receiver.ip.clone(),
                    additional_information: None,
                    failure_reason_code: receiver.failure_reason.clone(),
                })
                .collect(),
            true,
        ),
    };
    Datagram {
        domain: target.domain.clone(),
        record: target.record.clone(),
        policies: vec![PolicyResult {
            policy: policy.clone(),
            failures,
            failed,
        }],
    }
}

/// The collectd client (optional) and the ledger.
#[derive(Debug)]
pub struct TlsRptReporter {
    client: Option<TlsRptClient>,
    ledger: ResultLedger,
}

impl TlsRptReporter {
    /// Reports to the collectd at `socket` (none: only into the ledger) and keeps every
    /// datagram in the ledger of the history database at `db`.
    ///
    /// # Errors
    ///
    /// The ledger cannot be opened, or the client's socket cannot be made.
    pub fn new(
        socket: Option<&Path>,
        db: &Path,
        busy_timeout: Duration,
    ) -> Result<Self, ReporterError> {
        let client = socket
            .map(TlsRptClient::new)
            .transpose()
            .map_err(ReporterError::Socket)?;
        Ok(Self {
            client,
            ledger: ResultLedger::open(db, busy_timeout)?,
        })
    }

    /// Sends `datagram` (never waiting) and keeps it, at `now`; the lines to log about what
    /// could not be done (nothing when all went well). Neither failure affects the delivery.
    #[must_use]
    pub fn report(&mut self, datagram: &Datagram, now: u64) -> Vec<String> {
        let mut problems = Vec::new();
        if let Some(client) = &mut self.client {
            let sent = client.send(datagram);
            problems.extend(sent.problem(client.path()));
        }
        if let Err(error) = self.ledger.record(datagram, now) {
            problems.push(format!(
                "TLS-RPT result not kept for `tlsrpt preview`: {error}"
            ));
        }
        problems
    }

    /// What the client sent and dropped (`None` without a socket).
    #[must_use]
    pub fn counters(&self) -> Option<SendCounters> {
        self.client.as_ref().map(TlsRptClient::counters)
    }
}

/// Why the reporter cannot be set up.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ReporterError {
    /// The datagram socket could not be made (out of descriptors).
    #[error("making the TLS-RPT datagram socket: {0}")]
    Socket(#[source] std::io::Error),
    /// The ledger.
    #[error(transparent)]
    Ledger(#[from] LedgerError),
}
