//! The datagram libtlsrpt sends `tlsrpt-collectd`, protocol version 1 (`"dpv": "1"`): one JSON
//! object per finished delivery attempt, written byte for byte as libtlsrpt 0.5 writes it
//! (`libtlsrpt.c`: its key order, its `": "` after string keys, its escape table), so that
//! the collectd files our attempts and Postfix's under the same policy key and adds them up.
//!
//! Written by hand rather than with serde_json because the collectd keys its aggregation on
//! the policy object's exact serialization after its own `json.loads`/`json.dumps` round trip,
//! which depends on key order; a struct's field order would do, but the escape table (raw
//! UTF-8, `\u007f`) and the spacing are libtlsrpt's, and a test pins them against its format.

use policy_core::TlsRptResult;

/// The size libtlsrpt names as its buffer (`BUFFER_SIZE`): a datagram above it is not sent
/// (counted instead), so that one oversized policy never reaches a collectd that reads less.
pub const MAX_DATAGRAM_BYTES: usize = 65_000;

/// RFC 8460's `policy-type`, with libtlsrpt's numbers.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum PolicyType {
    /// `tlsa`: DANE (RFC 7672).
    Tlsa,
    /// `sts`: MTA-STS (RFC 8461).
    Sts,
    /// `no-policy-found`.
    NoPolicyFound,
}

impl PolicyType {
    /// libtlsrpt's `tlsrpt_policy_type_t`.
    #[must_use]
    pub const fn code(self) -> u8 {
        match self {
            Self::Tlsa => 1,
            Self::Sts => 2,
            Self::NoPolicyFound => 9,
        }
    }

    /// The name RFC 8460 gives it.
    #[must_use]
    pub const fn name(self) -> &'static str {
        match self {
            Self::Tlsa => "tlsa",
            Self::Sts => "sts",
            Self::NoPolicyFound => "no-policy-found",
        }
    }
}

/// libtlsrpt's `tlsrpt_failure_t` for a result type (RFC 8460 section 4.3 in its order).
#[must_use]
pub const fn failure_code(result: TlsRptResult) -> u16 {
    match result {
        TlsRptResult::StarttlsNotSupported => 201,
        TlsRptResult::CertificateHostMismatch => 202,
        TlsRptResult::CertificateNotTrusted => 203,
        TlsRptResult::CertificateExpired => 204,
        TlsRptResult::ValidationFailure => 205,
        TlsRptResult::StsPolicyFetchError => 301,
        TlsRptResult::StsPolicyInvalid => 302,
        TlsRptResult::StsWebpkiInvalid => 303,
        TlsRptResult::TlsaInvalid => 304,
        TlsRptResult::DnssecInvalid => 305,
        TlsRptResult::DaneRequired => 306,
    }
}

/// The policy a delivery attempt was made under (RFC 8460 section 4.4 `policy`).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct ReportPolicy {
    /// Its type.
    pub policy_type: PolicyType,
    /// `policy-domain`: the TLSA base domain, or the MTA-STS policy's domain; none for
    /// `no-policy-found`.
    pub policy_domain: Option<String>,
    /// `policy-string`: each TLSA record (`3 1 1 <hex>`) or each line of the MTA-STS policy.
    pub policy_strings: Vec<String>,
    /// `mx-host`: the MTA-STS policy's `mx:` patterns.
    pub mx_host_patterns: Vec<String>,
}

impl ReportPolicy {
    /// `no-policy-found` for the recipient domain `domain` (RFC 8460 requires a
    /// `policy-domain` even here; Postfix sends the domain too).
    #[must_use]
    pub fn no_policy_found(domain: &str) -> Self {
        Self {
            policy_type: PolicyType::NoPolicyFound,
            policy_domain: Some(domain.to_owned()),
            policy_strings: Vec::new(),
            mx_host_patterns: Vec::new(),
        }
    }
}

/// One failure of a session (RFC 8460 section 4.4 `failure-details`, one session's worth).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct FailureDetail {
    /// `result-type`.
    pub result: TlsRptResult,
    /// `sending-mta-ip`.
    pub sending_mta_ip: Option<String>,
    /// `receiving-mx-hostname`.
    pub receiving_mx_hostname: Option<String>,
    /// `receiving-mx-helo`.
    pub receiving_mx_helo: Option<String>,
    /// `receiving-ip`.
    pub receiving_ip: Option<String>,
    /// `additional-information`.
    pub additional_information: Option<String>,
    /// `failure-reason-code`: what the host saw (`certificate-error name-mismatch`).
    pub failure_reason_code: Option<String>,
}

/// One policy's final result within a datagram.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct PolicyResult {
    /// The policy.
    pub policy: ReportPolicy,
    /// The failures (empty for a success).
    pub failures: Vec<FailureDetail>,
    /// The final result: `true` for failure (`"f":1`).
    pub failed: bool,
}

/// One datagram: the final result of one delivery attempt to a policy domain.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Datagram {
    /// `d`: the recipient domain (the one that publishes the TLSRPT record), in A-labels.
    pub domain: String,
    /// `pr`: its TLSRPT record, as published (`v=TLSRPTv1; rua=...`).
    pub record: String,
    /// The policies (one per attempt here, as Postfix sends).
    pub policies: Vec<PolicyResult>,
}

impl Datagram {
    /// The datagram as libtlsrpt writes it.
    #[must_use]
    pub fn encode(&self) -> String {
        let mut out = String::with_capacity(256);
        out.push('{');
        first_attribute(&mut out, "dpv", "1");
        attribute(&mut out, "d", &self.domain);
        attribute(&mut out, "pr", &self.record);
        for (index, result) in self.policies.iter().enumerate() {
            out.push_str(if index == 0 { ",\"policies\":[{" } else { ",{" });
            out.push_str(&format!(
                "\"policy-type\":{}",
                result.policy.policy_type.code()
            ));
            if let Some(domain) = &result.policy.policy_domain {
                attribute(&mut out, "policy-domain", domain);
            }
            string_list(&mut out, "policy-string", &result.policy.policy_strings);
            string_list(&mut out, "mx-host", &result.policy.mx_host_patterns);
            if !result.failures.is_empty() {
                out.push_str(",\"failure-details\":[");
                for (index, failure) in result.failures.iter().enumerate() {
                    if index > 0 {
                        out.push(',');
                    }
                    out.push_str(&format!("{{\"c\":{}", failure_code(failure.result)));
                    for (key, value) in [
                        ("s", &failure.sending_mta_ip),
                        ("n", &failure.receiving_mx_hostname),
                        ("h", &failure.receiving_mx_helo),
                        ("r", &failure.receiving_ip),
                        ("a", &failure.additional_information),
                        ("f", &failure.failure_reason_code),
                    ] {
                        if let Some(value) = value {
                            attribute(&mut out, key, value);
                        }
                    }
                    out.push('}');
                }
                out.push(']');
            }
            out.push_str(&format!(
                ",\"t\":{},\"f\":{}}}",
                result.failures.len(),
                u8::from(result.failed)
            ));
        }
        if !self.policies.is_empty() {
            out.push(']');
        }
        out.push('}');
        out
    }
}

/// Why a stored datagram cannot be read back.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DecodeError {
    /// Not JSON of the datagram's shape (a missing key, a wrong type).
    #[error("not a TLS-RPT datagram: {0}")]
    Shape(#[from] serde_json::Error),
    /// A protocol version other than libtlsrpt's `"1"`.
    #[error("datagram protocol version {0:?}, not \"1\"")]
    Version(String),
    /// A `policy-type` number libtlsrpt does not define.
    #[error("unknown policy type {0}")]
    PolicyType(u8),
    /// A failure code libtlsrpt does not define.
    #[error("unknown failure code {0}")]
    FailureCode(u16),
    /// `t` differs from the number of failure details.
    #[error("the datagram counts {counted} failure(s) but details {listed}")]
    FailureCount {
        /// `t`.
        counted: usize,
        /// The length of `failure-details`.
        listed: usize,
    },
    /// `f` is neither 0 nor 1.
    #[error("final result {0}, not 0 or 1")]
    FinalResult(u8),
}

/// The datagram's JSON shape, for reading back what [`Datagram::encode`] wrote.
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct WireDatagram {
    dpv: String,
    d: String,
    pr: String,
    #[serde(default)]
    policies: Vec<WirePolicy>,
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct WirePolicy {
    #[serde(rename = "policy-type")]
    policy_type: u8,
    #[serde(rename = "policy-domain")]
    policy_domain: Option<String>,
    #[serde(rename = "policy-string", default)]
    policy_strings: Vec<String>,
    #[serde(rename = "mx-host", default)]
    mx_host_patterns: Vec<String>,
    #[serde(rename = "failure-details", default)]
    failures: Vec<WireFailure>,
    t: usize,
    f: u8,
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct WireFailure {
    c: u16,
    s: Option<String>,
    n: Option<String>,
    h: Option<String>,
    r: Option<String>,
    a: Option<String>,
    f: Option<String>,
}

impl PolicyType {
    /// The policy type libtlsrpt numbers `code`.
    #[must_use]
    pub const fn from_code(code: u8) -> Option<Self> {
        match code {
            1 => Some(Self::Tlsa),
            2 => Some(Self::Sts),
            9 => Some(Self::NoPolicyFound),
            _ => None,
        }
    }
}

/// The result type libtlsrpt numbers `code` (the inverse of [`failure_code`]).
#[must_use]
pub fn result_of_code(code: u16) -> Option<TlsRptResult> {
    TlsRptResult::ALL
        .into_iter()
        .find(|result| failure_code(*result) == code)
}

impl Datagram {
    /// Reads back a datagram [`encode`](Self::encode) wrote (the host keeps its own for
    /// `tlsrpt preview`); strict: anything libtlsrpt would not write is refused.
    ///
    /// # Errors
    ///
    /// What is wrong with the text ([`DecodeError`]).
    pub fn decode(text: &str) -> Result<Self, DecodeError> {
        let wire: WireDatagram = serde_json::from_str(text)?;
        if wire.dpv != "1" {
            return Err(DecodeError::Version(wire.dpv));
        }
        let mut policies = Vec::with_capacity(wire.policies.len());
        for policy in wire.policies {
            if policy.t != policy.failures.len() {
                return Err(DecodeError::FailureCount {
                    counted: policy.t,
                    listed: policy.failures.len(),
                });
            }
            let failed = match policy.f {
                0 => false,
                1 => true,
                other => return Err(DecodeError::FinalResult(other)),
            };
            let mut failures = Vec::with_capacity(policy.failures.len());
            for failure in policy.failures {
                failures.push(FailureDetail {
                    result: result_of_code(failure.c).ok_or(DecodeError::FailureCode(failure.c))?,
                    sending_mta_ip: failure.s,
                    receiving_mx_hostname: failure.n,
                    receiving_mx_helo: failure.h,
                    receiving_ip: failure.r,
                    additional_information: failure.a,
                    failure_reason_code: failure.f,
                });
            }
            policies.push(PolicyResult {
                policy: ReportPolicy {
                    policy_type: PolicyType::from_code(policy.policy_type)
                        .ok_or(DecodeError::PolicyType(policy.policy_type))?,
                    policy_domain: policy.policy_domain,
                    policy_strings: policy.policy_strings,
                    mx_host_patterns: policy.mx_host_patterns,
                },
                failures,
                failed,
            });
        }
        Ok(Self {
            domain: wire.d,
            record: wire.pr,
            policies,
        })
    }
}

/// `"key": "value"` (libtlsrpt's `write_first_attribute`).
fn first_attribute(out: &mut String, key: &str, value: &str) {
    out.push('"');
    out.push_str(key);
    out.push_str("\": \"");
    escape(out, value);
    out.push('"');
}

/// `,"key": "value"`.
fn attribute(out: &mut String, key: &str, value: &str) {
    out.push(',');
    first_attribute(out, key, value);
}

/// `,"key":["a","b"]`, nothing when empty (libtlsrpt writes a list only if it has entries).
fn string_list(out: &mut String, key: &str, values: &[String]) {
    if values.is_empty() {
        return;
    }
    out.push_str(",\"");
    out.push_str(key);
    out.push_str("\":[");
    for (index, value) in values.iter().enumerate() {
        if index > 0 {
            out.push(',');
        }
        out.push('"');
        escape(out, value);
        out.push('"');
    }
    out.push(']');
}

/// libtlsrpt's escape table: the short escapes, `\u00XX` for other control characters and
/// DEL, everything else (UTF-8 included) as it is.
fn escape(out: &mut String, value: &str) {
    for c in value.chars() {
        match c {
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            c if c < ' ' || c == '\u{7f}' => out.push_str(&format!("\\u{:04x}", u32::from(c))),
            c => out.push(c),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn failure(result: TlsRptResult) -> FailureDetail {
        FailureDetail {
            result,
            sending_mta_ip: None,
            receiving_mx_hostname: Some("mx.example.net".to_owned()),
            receiving_mx_helo: None,
            receiving_ip: Some("192.0.2.7".to_owned()),
            additional_information: None,
            failure_reason_code: Some("certificate-error dane-mismatch".to_owned()),
        }
    }

    /// What libtlsrpt writes for Example 2 of its doc/example.txt shape: one TLSA policy with
    /// two records and one failure (the bytes follow `libtlsrpt.c` call by call).
    #[test]
    fn a_tlsa_failure_is_written_as_libtlsrpt_writes_it() {
        let datagram = Datagram {
            domain: "example.net".to_owned(),
            record: "v=TLSRPTv1; rua=mailto:r@example.net".to_owned(),
            policies: vec![PolicyResult {
                policy: ReportPolicy {
                    policy_type: PolicyType::Tlsa,
                    policy_domain: Some("mx.example.net".to_owned()),
                    policy_strings: vec!["3 1 1 aa".to_owned(), "3 1 1 bb".to_owned()],
                    mx_host_patterns: Vec::new(),
                },
                failures: vec![failure(TlsRptResult::ValidationFailure)],
                failed: true,
            }],
        };
        assert_eq!(
            datagram.encode(),
            "{\"dpv\": \"1\",\"d\": \"example.net\",\"pr\": \"v=TLSRPTv1; rua=mailto:r@example.net\",\
             \"policies\":[{\"policy-type\":1,\"policy-domain\": \"mx.example.net\",\
             \"policy-string\":[\"3 1 1 aa\",\"3 1 1 bb\"],\
             \"failure-details\":[{\"c\":205,\"n\": \"mx.example.net\",\"r\": \"192.0.2.7\",\
             \"f\": \"certificate-error dane-mismatch\"}],\"t\":1,\"f\":1}]}"
        );
    }

    #[test]
    fn a_success_without_policy_has_its_domain_and_no_lists() {
        let datagram = Datagram {
            domain: "example.org".to_owned(),
            record: "v=TLSRPTv1;rua=https://r.example.org/".to_owned(),
            policies: vec![PolicyResult {
                policy: ReportPolicy::no_policy_found("example.org"),
                failures: Vec::new(),
                failed: false,
            }],
        };
        assert_eq!(
            datagram.encode(),
            "{\"dpv\": \"1\",\"d\": \"example.org\",\"pr\": \"v=TLSRPTv1;rua=https://r.example.org/\",\
             \"policies\":[{\"policy-type\":9,\"policy-domain\": \"example.org\",\"t\":0,\"f\":0}]}"
        );
    }

    /// Policy strings come from an MTA-STS policy file and host names from the DNS: whatever
    /// they hold, the datagram stays one valid JSON object with the same strings inside.
    #[test]
    fn hostile_strings_cannot_break_out_of_the_json() {
        let nasty = "a\"b\\c\nd\u{1}e\u{7f}f é\"],\"f\":0}";
        let datagram = Datagram {
            domain: "example.org".to_owned(),
            record: nasty.to_owned(),
            policies: vec![PolicyResult {
                policy: ReportPolicy {
                    policy_type: PolicyType::Sts,
                    policy_domain: Some(nasty.to_owned()),
                    policy_strings: vec![nasty.to_owned()],
                    mx_host_patterns: vec![nasty.to_owned()],
                },
                failures: vec![FailureDetail {
                    additional_information: Some(nasty.to_owned()),
                    ..failure(TlsRptResult::StsWebpkiInvalid)
                }],
                failed: true,
            }],
        };
        let parsed: serde_json::Value = serde_json::from_str(&datagram.encode()).unwrap();
        assert_eq!(parsed["pr"], nasty);
        assert_eq!(parsed["policies"][0]["policy-string"][0], nasty);
        assert_eq!(parsed["policies"][0]["failure-details"][0]["a"], nasty);
        assert_eq!(parsed["policies"][0]["failure-details"][0]["c"], 303);
        assert_eq!(parsed["policies"][0]["f"], 1);
        assert!(datagram.encode().contains("\\u0001e\\u007ff é"));
        assert_eq!(Datagram::decode(&datagram.encode()).unwrap(), datagram);
    }

    #[test]
    fn a_datagram_reads_back_as_written() {
        let datagram = Datagram {
            domain: "example.net".to_owned(),
            record: "v=TLSRPTv1; rua=mailto:r@example.net".to_owned(),
            policies: vec![
                PolicyResult {
                    policy: ReportPolicy::no_policy_found("example.org"),
                    failures: Vec::new(),
                    failed: false,
                },
                PolicyResult {
                    policy: ReportPolicy {
                        policy_type: PolicyType::Tlsa,
                        policy_domain: Some("mx.example.net".to_owned()),
                        policy_strings: vec!["3 1 1 aa".to_owned()],
                        mx_host_patterns: Vec::new(),
                    },
                    failures: vec![failure(TlsRptResult::DaneRequired)],
                    failed: true,
                },
            ],
        };
        assert_eq!(Datagram::decode(&datagram.encode()).unwrap(), datagram);
    }

    #[test]
    fn a_datagram_libtlsrpt_would_not_write_is_refused() {
        for (text, why) in [
            ("{}", "missing field"),
            ("{\"dpv\": \"2\",\"d\": \"a\",\"pr\": \"b\"}", "version"),
            (
                "{\"dpv\": \"1\",\"d\": \"a\",\"pr\": \"b\",\"policies\":[{\"policy-type\":3,\"t\":0,\"f\":0}]}",
                "policy type",
            ),
            (
                "{\"dpv\": \"1\",\"d\": \"a\",\"pr\": \"b\",\"policies\":[{\"policy-type\":9,\"t\":1,\"f\":1}]}",
                "counts",
            ),
            (
                "{\"dpv\": \"1\",\"d\": \"a\",\"pr\": \"b\",\"policies\":[{\"policy-type\":9,\"failure-details\":[{\"c\":999}],\"t\":1,\"f\":1}]}",
                "failure code",
            ),
            (
                "{\"dpv\": \"1\",\"d\": \"a\",\"pr\": \"b\",\"policies\":[{\"policy-type\":9,\"t\":0,\"f\":2}]}",
                "final result",
            ),
        ] {
            let error = Datagram::decode(text).unwrap_err().to_string();
            assert!(error.contains(why), "{text}: {error}");
        }
    }
}
