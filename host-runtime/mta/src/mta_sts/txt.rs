//! The `_mta-sts.<domain>` TXT record (RFC 8461 section 3.1): whether the domain has a policy,
//! and its id (which says when the cached copy is stale).

use super::policy::quoted;

/// The longest `v=STSv1` record accepted, in bytes: a real one is `v=STSv1; id=` and at most 32
/// characters; extensions get room, an unbounded record does not reach the logs.
pub const MAX_TXT_RECORD_BYTES: usize = 1024;

/// What the record says: the policy's id.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StsTxt {
    /// `id=`: 1 to 32 letters and digits.
    pub id: String,
}

/// Why the TXT records give no usable policy id.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TxtError {
    /// More than one record starts with `v=STSv1` (section 3.1: senders assume no policy).
    #[error("several v=STSv1 records ({count}): no policy (RFC 8461 section 3.1)")]
    Several {
        /// How many.
        count: usize,
    },
    /// The `v=STSv1` record is longer than [`MAX_TXT_RECORD_BYTES`].
    #[error("the v=STSv1 record is {len} bytes, over {MAX_TXT_RECORD_BYTES}")]
    TooLarge {
        /// Its length.
        len: usize,
    },
    /// The record does not follow the ABNF (`v=STSv1; id=…; name=value`).
    #[error("the v=STSv1 record is malformed at field {field}: {text}")]
    Malformed {
        /// The field (1-based; the version is field 0).
        field: usize,
        /// The field as read, quoted and shortened.
        text: String,
    },
    /// No `id=` field.
    #[error("the v=STSv1 record has no id")]
    MissingId,
    /// More than one `id=` field.
    #[error("the v=STSv1 record has several ids")]
    SeveralIds,
    /// An `id=` that is not 1 to 32 letters and digits.
    #[error("the v=STSv1 record's id {id} is not 1 to 32 letters and digits")]
    BadId {
        /// The id as read, quoted and shortened.
        id: String,
    },
}

const VERSION: &[u8] = b"v=STSv1";

/// Reads the TXT records of `_mta-sts.<domain>` (each record's strings already concatenated).
///
/// Records that do not start with `v=STSv1` and a `;` (after optional WSP, as `sts-sep` allows)
/// are not MTA-STS records and are discarded.
///
/// # Errors
///
/// See [`TxtError`]: several candidates, or the one candidate malformed. Either way there is
/// no policy id.
pub fn parse_txt(records: &[Vec<u8>]) -> Result<Option<StsTxt>, TxtError> {
    let mut candidates = records.iter().filter(|record| is_sts_record(record));
    let Some(record) = candidates.next() else {
        return Ok(None);
    };
    let others = candidates.count();
    if others > 0 {
        return Err(TxtError::Several { count: others + 1 });
    }
    if record.len() > MAX_TXT_RECORD_BYTES {
        return Err(TxtError::TooLarge { len: record.len() });
    }
    let text = std::str::from_utf8(record).map_err(|_| TxtError::Malformed {
        field: 0,
        text: quoted(&String::from_utf8_lossy(record)),
    })?;
    let mut id = None;
    // `sts-version 1*(sts-sep sts-field) [sts-sep]`: split at `;`, the WSP around it is the
    // separator's; only the last piece may be empty (a trailing separator).
    let pieces: Vec<&str> = text.split(';').collect();
    let last = pieces.len() - 1;
    for (field, piece) in pieces.iter().enumerate().skip(1) {
        let piece = piece.trim_matches([' ', '\t']);
        if piece.is_empty() && field == last && field > 1 {
            break;
        }
        let malformed = || TxtError::Malformed {
            field,
            text: quoted(piece),
        };
        let (name, value) = piece.split_once('=').ok_or_else(malformed)?;
        if name == "id" {
            if id.is_some() {
                return Err(TxtError::SeveralIds);
            }
            if value.is_empty()
                || value.len() > 32
                || !value.bytes().all(|b| b.is_ascii_alphanumeric())
            {
                return Err(TxtError::BadId { id: quoted(value) });
            }
            id = Some(value.to_owned());
        } else if !is_extension_name(name) || !is_extension_value(value) {
            return Err(malformed());
        }
    }
    id.map(|id| Some(StsTxt { id })).ok_or(TxtError::MissingId)
}

/// `v=STSv1`, then WSP, then `;` (case-sensitive: `%s"v=STSv1"`).
fn is_sts_record(record: &[u8]) -> bool {
    record
        .strip_prefix(VERSION)
        .and_then(|rest| rest.iter().find(|b| !matches!(b, b' ' | b'\t')))
        == Some(&b';')
}

/// `sts-ext-name = (ALPHA / DIGIT) *31(ALPHA / DIGIT / "_" / "-" / ".")`
fn is_extension_name(name: &str) -> bool {
    let bytes = name.as_bytes();
    !bytes.is_empty()
        && bytes.len() <= 32
        && bytes[0].is_ascii_alphanumeric()
        && bytes
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'))
}

/// `sts-ext-value = 1*(%x21-3A / %x3C / %x3E-7E)`: visible ASCII but `;` and `=`.
fn is_extension_value(value: &str) -> bool {
    !value.is_empty()
        && value
            .bytes()
            .all(|b| matches!(b, 0x21..=0x3a | 0x3c | 0x3e..=0x7e))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(records: &[&str]) -> Result<Option<StsTxt>, TxtError> {
        let records: Vec<Vec<u8>> = records.iter().map(|r| r.as_bytes().to_vec()).collect();
        parse_txt(&records)
    }

    fn id(id: &str) -> Result<Option<StsTxt>, TxtError> {
        Ok(Some(StsTxt { id: id.to_owned() }))
    }

    #[test]
    fn the_rfc_example_and_its_spacing_variants_parse() {
        assert_eq!(
            parse(&["v=STSv1; id=20160831085700Z;"]),
            id("20160831085700Z")
        );
        assert_eq!(parse(&["v=STSv1;id=abc"]), id("abc"));
        assert_eq!(parse(&["v=STSv1 ;\tid=abc ; ext.x=1"]), id("abc"));
        assert_eq!(parse(&["v=STSv1; foo=bar; id=A1"]), id("A1"));
    }

    #[test]
    fn other_records_are_discarded() {
        assert_eq!(parse(&[]), Ok(None));
        assert_eq!(
            parse(&["v=spf1 -all", "V=STSv1; id=x", "v=STSv10; id=x", "v=STSv1"]),
            Ok(None)
        );
        assert_eq!(parse(&["v=spf1 -all", "v=STSv1; id=x"]), id("x"));
    }

    #[test]
    fn several_sts_records_mean_no_policy_and_say_so() {
        let error = parse(&["v=STSv1; id=a", "v=STSv1; id=b"]).unwrap_err();
        assert_eq!(error, TxtError::Several { count: 2 });
        assert!(error.to_string().contains("several v=STSv1 records"));
    }

    #[test]
    fn huge_txt_record_is_refused() {
        let record = format!("v=STSv1; id=a; x={}", "y".repeat(70_000));
        assert_eq!(
            parse(&[&record]),
            Err(TxtError::TooLarge { len: record.len() })
        );
    }

    #[test]
    fn bad_ids_are_refused() {
        assert_eq!(parse(&["v=STSv1; x=1"]), Err(TxtError::MissingId));
        assert_eq!(parse(&["v=STSv1; id=a; id=b"]), Err(TxtError::SeveralIds));
        for bad in [
            "v=STSv1; id=",
            "v=STSv1; id=a-b",
            &format!("v=STSv1; id={}", "a".repeat(33)),
        ] {
            assert!(
                matches!(parse(&[bad]), Err(TxtError::BadId { .. })),
                "{bad}"
            );
        }
    }

    #[test]
    fn malformed_fields_are_refused() {
        for bad in [
            "v=STSv1; id=a;; x=1",
            "v=STSv1;",
            "v=STSv1; id=a; x",
            "v=STSv1; id=a; x=a=b",
            "v=STSv1; id=a; x=\u{e9}",
            "v=STSv1; id=a b",
        ] {
            assert!(parse(&[bad]).is_err(), "{bad}");
        }
        let bytes = vec![b"v=STSv1; id=a; x=\xff".to_vec()];
        assert!(matches!(parse_txt(&bytes), Err(TxtError::Malformed { .. })));
    }

    proptest::proptest! {
        #[test]
        fn the_parser_never_panics(records in proptest::collection::vec(
            proptest::collection::vec(proptest::arbitrary::any::<u8>(), 0..60), 0..4)
        ) {
            let _ = parse_txt(&records);
        }
    }
}
