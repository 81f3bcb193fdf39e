//! The TLSRPT policy record a recipient domain publishes at `_smtp._tls.DOMAIN` (RFC 8460
//! section 3): `v=TLSRPTv1; rua=mailto:...,https://...`. Attacker-controlled DNS text, so the
//! parser is total (any bytes give a record or a reason) and fuzzed.
//!
//! The selection is Postfix's (`smtp_tlsrpt.c`): only TXT records starting with `v=TLSRPTv1`
//! then optional spaces and `;` count, and there must be exactly one; on top of it, the record
//! must name at least one `rua` URI of a scheme RFC 8460 allows (`mailto:` or `https:`), since
//! a report with nowhere to go helps nobody.

/// Why a domain has no usable TLSRPT record.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RecordError {
    /// No TXT record starts with `v=TLSRPTv1;`.
    #[error("no TLSRPT record (v=TLSRPTv1)")]
    Absent,
    /// More than one does (RFC 8460 section 3: then none applies).
    #[error("{count} TLSRPT records: RFC 8460 says none applies then")]
    Several {
        /// How many.
        count: usize,
    },
    /// The record is not valid text or has no usable `rua`.
    #[error("the TLSRPT record {record:?} is unusable: {why}")]
    Malformed {
        /// The record (lossily decoded).
        record: String,
        /// What is wrong with it.
        why: &'static str,
    },
}

/// The one TLSRPT record among a name's TXT records (each the concatenation of its strings).
///
/// # Errors
///
/// See [`RecordError`].
pub fn select(records: &[Vec<u8>]) -> Result<String, RecordError> {
    let candidates: Vec<&Vec<u8>> = records.iter().filter(|r| is_tlsrpt(r)).collect();
    let record = match candidates.as_slice() {
        [] => return Err(RecordError::Absent),
        [one] => *one,
        many => return Err(RecordError::Several { count: many.len() }),
    };
    let malformed = |why| RecordError::Malformed {
        record: String::from_utf8_lossy(record).into_owned(),
        why,
    };
    let text = std::str::from_utf8(record).map_err(|_| malformed("not UTF-8"))?;
    if text.chars().any(char::is_control) {
        return Err(malformed("it holds control characters"));
    }
    let mut usable = 0usize;
    for field in text.split(';').skip(1) {
        let Some((key, value)) = field.split_once('=') else {
            continue;
        };
        if key.trim() != "rua" {
            continue;
        }
        usable += value
            .split(',')
            .map(str::trim)
            .filter(|uri| {
                let lower = uri.to_ascii_lowercase();
                (lower.starts_with("mailto:") && uri.len() > "mailto:".len())
                    || (lower.starts_with("https://") && uri.len() > "https://".len())
            })
            .count();
    }
    if usable == 0 {
        return Err(malformed("no rua=mailto: or rua=https:// destination"));
    }
    Ok(text.to_owned())
}

/// `v=TLSRPTv1` followed by optional spaces or tabs and `;`.
fn is_tlsrpt(record: &[u8]) -> bool {
    let Some(rest) = record.strip_prefix(b"v=TLSRPTv1") else {
        return false;
    };
    rest.iter()
        .find(|b| !matches!(b, b' ' | b'\t'))
        .is_some_and(|b| *b == b';')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn txt(records: &[&str]) -> Vec<Vec<u8>> {
        records.iter().map(|r| r.as_bytes().to_vec()).collect()
    }

    #[test]
    fn the_rfc_examples_are_accepted() {
        for record in [
            "v=TLSRPTv1; rua=mailto:reports@example.com",
            "v=TLSRPTv1; rua=https://reporting.example.com/v1/tlsrpt",
            "v=TLSRPTv1;rua=mailto:a@example.com,https://r.example.com/x",
        ] {
            assert_eq!(
                select(&txt(&[record, "v=spf1 -all"])),
                Ok(record.to_owned())
            );
        }
    }

    #[test]
    fn none_several_or_nowhere_to_send_is_no_record() {
        assert_eq!(select(&txt(&["v=spf1 -all"])), Err(RecordError::Absent));
        assert_eq!(
            select(&txt(&["v=TLSRPTv10; rua=mailto:a@b"])),
            Err(RecordError::Absent)
        );
        assert_eq!(
            select(&txt(&[
                "v=TLSRPTv1; rua=mailto:a@b",
                "v=TLSRPTv1; rua=mailto:c@d"
            ])),
            Err(RecordError::Several { count: 2 })
        );
        assert!(matches!(
            select(&txt(&["v=TLSRPTv1; rua=ftp://x"])),
            Err(RecordError::Malformed { .. })
        ));
    }

    /// A record is copied into every datagram and report: a newline in it would let the DNS
    /// forge lines wherever it is logged.
    #[test]
    fn a_record_with_control_characters_is_refused() {
        let forged = "v=TLSRPTv1; rua=mailto:a@b\nattempt peer=forged";
        assert!(matches!(
            select(&txt(&[forged])),
            Err(RecordError::Malformed { .. })
        ));
        assert!(matches!(
            select(&[b"v=TLSRPTv1; rua=mailto:\xff@b".to_vec()]),
            Err(RecordError::Malformed { .. })
        ));
    }
}
