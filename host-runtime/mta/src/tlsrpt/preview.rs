//! The RFC 8460 report a day's datagrams make, aggregated and named as sys4's
//! `tlsrpt-reportd` 0.6 aggregates and names them (`render_report`): one report per recipient
//! domain and TLSRPT record, one entry per distinct policy with its session counts, one
//! failure-details entry per distinct failure with its count. `tlsrpt preview` prints it.
//! Pure: datagrams in, reports out.

use std::collections::HashMap;

use serde::Serialize;

use super::datagram::{Datagram, FailureDetail, ReportPolicy};

/// Who the report says made it (RFC 8460 `organization-name`, `contact-info`).
#[derive(Clone, Debug)]
pub struct Reporter {
    /// `organization-name`.
    pub organization_name: String,
    /// `contact-info`.
    pub contact_info: String,
}

/// One RFC 8460 report (section 4.4), its fields named as the RFC's schema names them.
#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub struct Report {
    /// The reporting organization.
    pub organization_name: String,
    /// The UTC day covered.
    pub date_range: DateRange,
    /// How to reach the reporter.
    pub contact_info: String,
    /// `<start-datetime>_idx<n>_<domain>`, as reportd names them.
    pub report_id: String,
    /// One entry per policy.
    pub policies: Vec<PolicyReport>,
    /// The domain the report is about (not part of the JSON: reportd puts it in the mail).
    #[serde(skip)]
    pub domain: String,
    /// The TLSRPT record whose `rua` receives it (not part of the JSON either).
    #[serde(skip)]
    pub record: String,
}

/// `date-range`.
#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub struct DateRange {
    /// `YYYY-MM-DDT00:00:00Z`.
    pub start_datetime: String,
    /// `YYYY-MM-DDT23:59:59Z`.
    pub end_datetime: String,
}

/// One policy's part of a report.
#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub struct PolicyReport {
    /// The policy.
    pub policy: PolicyDescription,
    /// Its session counts.
    pub summary: Summary,
    /// Its failures, each with its count.
    pub failure_details: Vec<FailureCount>,
}

/// `policy`.
#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub struct PolicyDescription {
    /// `tlsa`, `sts` or `no-policy-found`.
    pub policy_type: &'static str,
    /// The TLSA records or the MTA-STS policy's lines.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub policy_string: Vec<String>,
    /// The policy domain.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub policy_domain: Option<String>,
    /// The MTA-STS policy's MX patterns.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub mx_host: Vec<String>,
}

/// `summary`.
#[derive(Clone, Copy, Debug, Serialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub struct Summary {
    /// Sessions that negotiated TLS as the policy asks.
    pub total_successful_session_count: u64,
    /// Sessions that did not.
    pub total_failure_session_count: u64,
}

/// One entry of `failure-details`.
#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub struct FailureCount {
    /// The RFC 8460 result type.
    pub result_type: &'static str,
    /// `sending-mta-ip`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sending_mta_ip: Option<String>,
    /// `receiving-mx-hostname`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub receiving_mx_hostname: Option<String>,
    /// `receiving-mx-helo`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub receiving_mx_helo: Option<String>,
    /// `receiving-ip`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub receiving_ip: Option<String>,
    /// How many sessions failed so.
    pub failed_session_count: u64,
    /// `additional-information`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub additional_information: Option<String>,
    /// `failure-reason-code`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub failure_reason_code: Option<String>,
}

/// One policy's counts while aggregating.
#[derive(Default)]
struct PolicyTally {
    total: u64,
    failed: u64,
    /// Distinct failures in the order first seen, with their counts.
    failures: Vec<(FailureDetail, u64)>,
    index: HashMap<FailureDetail, usize>,
}

/// The reports `datagrams` (all of one UTC `day`, `YYYY-MM-DD`) make: one per domain and
/// TLSRPT record, in the order they first appear, policies and failures too.
#[must_use]
pub fn reports(day: &str, datagrams: &[Datagram], reporter: &Reporter) -> Vec<Report> {
    type Key = (String, String);
    let mut order: Vec<Key> = Vec::new();
    let mut tallies: HashMap<Key, (Vec<ReportPolicy>, HashMap<ReportPolicy, PolicyTally>)> =
        HashMap::new();
    for datagram in datagrams {
        let key = (datagram.domain.clone(), datagram.record.clone());
        let (policy_order, policies) = tallies.entry(key.clone()).or_insert_with(|| {
            order.push(key);
            (Vec::new(), HashMap::new())
        });
        for result in &datagram.policies {
            let tally = policies.entry(result.policy.clone()).or_insert_with(|| {
                policy_order.push(result.policy.clone());
                PolicyTally::default()
            });
            tally.total += 1;
            tally.failed += u64::from(result.failed);
            for failure in &result.failures {
                match tally.index.get(failure) {
                    Some(&at) => tally.failures[at].1 += 1,
                    None => {
                        tally.index.insert(failure.clone(), tally.failures.len());
                        tally.failures.push((failure.clone(), 1));
                    }
                }
            }
        }
    }
    let mut per_domain: HashMap<String, u32> = HashMap::new();
    order
        .into_iter()
        .map(|key| {
            let (policy_order, mut policies) = tallies.remove(&key).unwrap_or_default();
            let (domain, record) = key;
            let index = per_domain.entry(domain.clone()).or_insert(0);
            *index += 1;
            let start = format!("{day}T00:00:00Z");
            Report {
                organization_name: reporter.organization_name.clone(),
                date_range: DateRange {
                    start_datetime: start.clone(),
                    end_datetime: format!("{day}T23:59:59Z"),
                },
                contact_info: reporter.contact_info.clone(),
                report_id: format!("{start}_idx{index}_{domain}"),
                policies: policy_order
                    .into_iter()
                    .filter_map(|policy| {
                        let tally = policies.remove(&policy)?;
                        Some(policy_report(policy, tally))
                    })
                    .collect(),
                domain,
                record,
            }
        })
        .collect()
}

fn policy_report(policy: ReportPolicy, tally: PolicyTally) -> PolicyReport {
    PolicyReport {
        policy: PolicyDescription {
            policy_type: policy.policy_type.name(),
            policy_string: policy.policy_strings,
            policy_domain: policy.policy_domain,
            mx_host: policy.mx_host_patterns,
        },
        summary: Summary {
            total_successful_session_count: tally.total - tally.failed,
            total_failure_session_count: tally.failed,
        },
        failure_details: tally
            .failures
            .into_iter()
            .map(|(failure, count)| FailureCount {
                result_type: failure.result.name(),
                sending_mta_ip: failure.sending_mta_ip,
                receiving_mx_hostname: failure.receiving_mx_hostname,
                receiving_mx_helo: failure.receiving_mx_helo,
                receiving_ip: failure.receiving_ip,
                failed_session_count: count,
                additional_information: failure.additional_information,
                failure_reason_code: failure.failure_reason_code,
            })
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tlsrpt::datagram::{PolicyResult, PolicyType};
    use policy_core::TlsRptResult;

    const RECORD: &str = "v=TLSRPTv1; rua=mailto:tlsrpt@example.com";

    fn reporter() -> Reporter {
        Reporter {
            organization_name: "Company-X".to_owned(),
            contact_info: "sts-reporting@company-x.example".to_owned(),
        }
    }

    fn sts() -> ReportPolicy {
        ReportPolicy {
            policy_type: PolicyType::Sts,
            policy_domain: Some("company-y.example".to_owned()),
            policy_strings: vec!["version: STSv1".to_owned(), "mode: testing".to_owned()],
            mx_host_patterns: vec!["*.mail.company-y.example".to_owned()],
        }
    }

    fn attempt(failure: Option<TlsRptResult>) -> Datagram {
        Datagram {
            domain: "company-y.example".to_owned(),
            record: RECORD.to_owned(),
            policies: vec![PolicyResult {
                policy: sts(),
                failures: failure
                    .into_iter()
                    .map(|result| FailureDetail {
                        result,
                        sending_mta_ip: None,
                        receiving_mx_hostname: Some("mx1.mail.company-y.example".to_owned()),
                        receiving_mx_helo: None,
                        receiving_ip: Some("2001:db8:abcd:0012::1".to_owned()),
                        additional_information: None,
                        failure_reason_code: None,
                    })
                    .collect(),
                failed: failure.is_some(),
            }],
        }
    }

    /// RFC 8460 appendix B's example, rebuilt from datagrams: the same field names, the same
    /// counts.
    #[test]
    fn the_rfc_example_comes_out_with_its_field_names_and_counts() {
        let mut datagrams = vec![attempt(None); 3];
        datagrams.extend(vec![attempt(Some(TlsRptResult::CertificateExpired)); 2]);
        let reports = reports("2016-04-01", &datagrams, &reporter());
        assert_eq!(reports.len(), 1);
        let json = serde_json::to_value(&reports[0]).unwrap();
        assert_eq!(json["organization-name"], "Company-X");
        assert_eq!(json["date-range"]["start-datetime"], "2016-04-01T00:00:00Z");
        assert_eq!(json["date-range"]["end-datetime"], "2016-04-01T23:59:59Z");
        assert_eq!(json["contact-info"], "sts-reporting@company-x.example");
        assert_eq!(
            json["report-id"],
            "2016-04-01T00:00:00Z_idx1_company-y.example"
        );
        let policy = &json["policies"][0];
        assert_eq!(policy["policy"]["policy-type"], "sts");
        assert_eq!(policy["policy"]["policy-domain"], "company-y.example");
        assert_eq!(policy["policy"]["mx-host"][0], "*.mail.company-y.example");
        assert_eq!(policy["summary"]["total-successful-session-count"], 3);
        assert_eq!(policy["summary"]["total-failure-session-count"], 2);
        let failure = &policy["failure-details"][0];
        assert_eq!(failure["result-type"], "certificate-expired");
        assert_eq!(
            failure["receiving-mx-hostname"],
            "mx1.mail.company-y.example"
        );
        assert_eq!(failure["receiving-ip"], "2001:db8:abcd:0012::1");
        assert_eq!(failure["failed-session-count"], 2);
        assert_eq!(policy["failure-details"].as_array().unwrap().len(), 1);
    }

    #[test]
    fn domains_and_records_get_reports_of_their_own() {
        let mut other = attempt(None);
        other.record = "v=TLSRPTv1; rua=https://r.example/".to_owned();
        let mut elsewhere = attempt(None);
        elsewhere.domain = "b.example".to_owned();
        let reports = reports(
            "2026-12-01",
            &[attempt(None), other, elsewhere],
            &reporter(),
        );
        let ids: Vec<&str> = reports.iter().map(|r| r.report_id.as_str()).collect();
        assert_eq!(
            ids,
            [
                "2026-12-01T00:00:00Z_idx1_company-y.example",
                "2026-12-01T00:00:00Z_idx2_company-y.example",
                "2026-12-01T00:00:00Z_idx1_b.example"
            ]
        );
    }
}
