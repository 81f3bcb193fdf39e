//! The MTA-STS policy body (RFC 8461 section 3.2), parsed strictly: a policy that does not say
//! exactly what it means is an error the log names by line, never a guess.
//!
//! Two readings are deliberately lenient, because rejecting a policy makes it not apply at all
//! (the sender then delivers as without one), which is the downgrade this crate exists to stop:
//! - a `max_age` above 31557600 (still at most 10 digits, as the ABNF allows) is capped at
//!   31557600, as section 3.2 says, instead of failing the policy;
//! - blank (or whitespace-only) lines are skipped: they carry no field, and real policies end in
//!   one more often than the ABNF admits.
//!
//! Everything else follows the ABNF: field names and the values `STSv1`, `enforce`, `testing`,
//! `none` are case-sensitive (`%s"…"`), lines end in LF or CRLF, `version`, `mode` and
//! `max_age` appear once each, `mx` is repeatable and required unless the mode is `none`, and
//! unknown (extension) fields are ignored.

use std::fmt;
use std::net::IpAddr;

/// The largest policy body accepted, in bytes (RFC 8461 section 3.3 asks for a cap; a real policy
/// is a few hundred bytes).
pub const MAX_POLICY_BYTES: usize = 64 * 1024;

/// The largest `max_age` that applies (RFC 8461 section 3.2: about one year); larger values are
/// capped to it.
pub const MAX_MAX_AGE: u32 = 31_557_600;

/// What a policy asks of senders (the `mode` field).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Mode {
    /// Deliver only to matching MX hosts over authenticated TLS.
    Enforce,
    /// Report failures, deliver as without a policy.
    Testing,
    /// No policy (how a domain withdraws one).
    None,
}

impl Mode {
    /// Every mode.
    pub const ALL: [Self; 3] = [Self::Enforce, Self::Testing, Self::None];

    /// The field's value for this mode.
    #[must_use]
    pub const fn name(self) -> &'static str {
        match self {
            Self::Enforce => "enforce",
            Self::Testing => "testing",
            Self::None => "none",
        }
    }

    fn parse(value: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|mode| mode.name() == value)
    }
}

impl fmt::Display for Mode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Why an `mx` value is not a pattern.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum MxPatternError {
    /// The value is an IP address: MTA-STS names MX hosts, whose certificates carry names.
    #[error("an IP address literal, not a host name")]
    IpLiteral,
    /// A `*` anywhere but as the whole left-most label (`*.example.net`).
    #[error("a wildcard is only allowed as the whole left-most label (`*.example.net`)")]
    BadWildcard,
    /// An empty label (`..`, a leading or trailing dot, or nothing at all).
    #[error("an empty label")]
    EmptyLabel,
    /// A label with a character other than letters, digits and inner hyphens (RFC 5321
    /// `sub-domain`; internationalized names must be A-labels).
    #[error("a label with a character other than letters, digits and inner hyphens")]
    BadLabel,
    /// A label over 63 bytes or a name over 253.
    #[error("a label over 63 bytes or a name over 253")]
    TooLong,
}

/// One `mx` pattern: a host name, or `*.` and a name (matching exactly one more left label).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct MxPattern {
    /// The name after the optional `*.`, in lower case.
    base: String,
    wildcard: bool,
}

impl MxPattern {
    /// Parses an `mx` value (`["*."] Domain`).
    ///
    /// # Errors
    ///
    /// When it is not a host name, optionally behind `*.`.
    pub fn parse(value: &str) -> Result<Self, MxPatternError> {
        // Brackets would not pass as labels anyway; strip them only to name the mistake.
        if value
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse::<IpAddr>()
            .is_ok()
        {
            return Err(MxPatternError::IpLiteral);
        }
        let (wildcard, base) = match value.strip_prefix("*.") {
            Some(base) => (true, base),
            None => (false, value),
        };
        check_host_name(base)?;
        Ok(Self {
            base: base.to_ascii_lowercase(),
            wildcard,
        })
    }

    /// Whether `host` (an MX host name; case and a trailing dot do not matter) matches: equal to
    /// the name, or for `*.example.net` one more label on the left (`mx.example.net`, not
    /// `example.net` nor `a.b.example.net`).
    #[must_use]
    pub fn matches(&self, host: &str) -> bool {
        let host = host.strip_suffix('.').unwrap_or(host).to_ascii_lowercase();
        if !self.wildcard {
            return host == self.base;
        }
        host.split_once('.')
            .is_some_and(|(left, rest)| !left.is_empty() && rest == self.base)
    }

    /// Whether this is a `*.` pattern.
    #[must_use]
    pub const fn is_wildcard(&self) -> bool {
        self.wildcard
    }
}

impl fmt::Display for MxPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.wildcard {
            f.write_str("*.")?;
        }
        f.write_str(&self.base)
    }
}

/// Why a policy body is not a policy. Every variant that comes from a line names it (1-based).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PolicyError {
    /// The body is larger than [`MAX_POLICY_BYTES`].
    #[error("the policy is over {MAX_POLICY_BYTES} bytes")]
    TooLarge,
    /// The body is not UTF-8 (RFC 8461 section 3.2 requires it).
    #[error("the policy is not UTF-8 (invalid byte at offset {offset})")]
    NotUtf8 {
        /// Where the first invalid byte is.
        offset: usize,
    },
    /// A line that is not `name: value` with a valid field name, or a CR not before LF, or a
    /// control character.
    #[error("line {line}: not a `name: value` field: {text}")]
    MalformedLine {
        /// The line.
        line: usize,
        /// The line as read, quoted and shortened.
        text: String,
    },
    /// `version`, `mode` or `max_age` appears twice.
    #[error("line {line}: `{field}` appears twice")]
    DuplicateField {
        /// The line of the second one.
        line: usize,
        /// The field.
        field: &'static str,
    },
    /// A `version` other than `STSv1`.
    #[error("line {line}: unsupported version {value} (only STSv1)")]
    UnsupportedVersion {
        /// The line.
        line: usize,
        /// The value, quoted and shortened.
        value: String,
    },
    /// A `mode` other than `enforce`, `testing` or `none`.
    #[error("line {line}: unknown mode {value} (enforce, testing or none)")]
    UnknownMode {
        /// The line.
        line: usize,
        /// The value, quoted and shortened.
        value: String,
    },
    /// A `max_age` that is not 1 to 10 decimal digits.
    #[error("line {line}: max_age {value} is not a number of seconds (1 to 10 digits)")]
    BadMaxAge {
        /// The line.
        line: usize,
        /// The value, quoted and shortened.
        value: String,
    },
    /// An `mx` value that is not a host name pattern.
    #[error("line {line}: mx {value}: {reason}")]
    BadMx {
        /// The line.
        line: usize,
        /// The value, quoted and shortened.
        value: String,
        /// What is wrong with it.
        reason: MxPatternError,
    },
    /// A required field is absent (`mx` only when the mode is not `none`).
    #[error("the policy has no `{field}` field")]
    MissingField {
        /// The field.
        field: &'static str,
    },
}

/// The longest piece of outside text an error quotes.
const QUOTE_LIMIT: usize = 80;

/// Outside text for an error message: quoted, control characters escaped, shortened.
pub(crate) fn quoted(text: &str) -> String {
    let mut end = text.len().min(QUOTE_LIMIT);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    let ellipsis = if end < text.len() { "…" } else { "" };
    format!("{:?}{ellipsis}", &text[..end])
}

/// A parsed policy.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Policy {
    /// What it asks of senders.
    pub mode: Mode,
    /// How long it may be cached, in seconds (capped at [`MAX_MAX_AGE`]).
    pub max_age: u32,
    /// The MX patterns, in the policy's order.
    pub mx: Vec<MxPattern>,
    /// The body it was parsed from (what the cache stores and TLS-RPT quotes).
    text: String,
}

impl Policy {
    /// A policy with these fields, its text in the canonical form (`version` first, LF line ends).
    #[must_use]
    pub fn new(mode: Mode, max_age: u32, mx: Vec<MxPattern>) -> Self {
        let max_age = max_age.min(MAX_MAX_AGE);
        let mut text = format!("version: STSv1\nmode: {mode}\n");
        for pattern in &mx {
            text.push_str(&format!("mx: {pattern}\n"));
        }
        text.push_str(&format!("max_age: {max_age}\n"));
        Self {
            mode,
            max_age,
            mx,
            text,
        }
    }

    /// Parses a policy body.
    ///
    /// # Errors
    ///
    /// See [`PolicyError`]: the first problem, by line.
    pub fn parse(body: &[u8]) -> Result<Self, PolicyError> {
        if body.len() > MAX_POLICY_BYTES {
            return Err(PolicyError::TooLarge);
        }
        let text = std::str::from_utf8(body).map_err(|e| PolicyError::NotUtf8 {
            offset: e.valid_up_to(),
        })?;
        let mut version = None;
        let mut mode = None;
        let mut max_age = None;
        let mut mx = Vec::new();
        for (index, raw) in text.split_terminator('\n').enumerate() {
            let line = index + 1;
            let content = raw.strip_suffix('\r').unwrap_or(raw);
            if content.trim_matches(is_wsp).is_empty() {
                continue;
            }
            let malformed = || PolicyError::MalformedLine {
                line,
                text: quoted(content),
            };
            let (name, value) = content.split_once(':').ok_or_else(malformed)?;
            // `field-delim = ":" *WSP`, and `*WSP` before the line's end.
            let value = value.trim_matches(is_wsp);
            if !is_field_name(name) || !is_field_value(value) {
                return Err(malformed());
            }
            let once = |seen: bool, field: &'static str| {
                if seen {
                    Err(PolicyError::DuplicateField { line, field })
                } else {
                    Ok(())
                }
            };
            match name {
                "version" => {
                    once(version.is_some(), "version")?;
                    if value != "STSv1" {
                        return Err(PolicyError::UnsupportedVersion {
                            line,
                            value: quoted(value),
                        });
                    }
                    version = Some(());
                }
                "mode" => {
                    once(mode.is_some(), "mode")?;
                    mode = Some(Mode::parse(value).ok_or_else(|| PolicyError::UnknownMode {
                        line,
                        value: quoted(value),
                    })?);
                }
                "max_age" => {
                    once(max_age.is_some(), "max_age")?;
                    max_age = Some(parse_max_age(value).ok_or_else(|| PolicyError::BadMaxAge {
                        line,
                        value: quoted(value),
                    })?);
                }
                "mx" => mx.push(
                    MxPattern::parse(value).map_err(|reason| PolicyError::BadMx {
                        line,
                        value: quoted(value),
                        reason,
                    })?,
                ),
                // Extension fields (section 3.2): ignored.
                _ => {}
            }
        }
        let missing = |field| PolicyError::MissingField { field };
        version.ok_or_else(|| missing("version"))?;
        let mode = mode.ok_or_else(|| missing("mode"))?;
        let max_age = max_age.ok_or_else(|| missing("max_age"))?;
        if mx.is_empty() && mode != Mode::None {
            return Err(missing("mx"));
        }
        Ok(Self {
            mode,
            max_age,
            mx,
            text: text.to_owned(),
        })
    }

    /// The body it was parsed from.
    #[must_use]
    pub fn text(&self) -> &str {
        &self.text
    }

    /// The policy as TLS-RPT's `policy-string` (RFC 8460 section 4.4): its lines, without line
    /// ends, blank lines left out.
    #[must_use]
    pub fn policy_string(&self) -> Vec<String> {
        self.text
            .lines()
            .filter(|line| !line.trim_matches(is_wsp).is_empty())
            .map(str::to_owned)
            .collect()
    }

    /// Whether an MX host matches one of the patterns.
    #[must_use]
    pub fn matches_mx(&self, host: &str) -> bool {
        self.mx.iter().any(|pattern| pattern.matches(host))
    }
}

/// Checks a host name (RFC 5321 `Domain`): LDH labels, none empty, within DNS lengths. A `*`
/// label is named as a misplaced wildcard.
fn check_host_name(name: &str) -> Result<(), MxPatternError> {
    if name.len() > 253 {
        return Err(MxPatternError::TooLong);
    }
    for label in name.split('.') {
        if label.is_empty() {
            return Err(MxPatternError::EmptyLabel);
        }
        if label.contains('*') {
            return Err(MxPatternError::BadWildcard);
        }
        if label.len() > 63 {
            return Err(MxPatternError::TooLong);
        }
        let bytes = label.as_bytes();
        let ldh = bytes
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || *b == b'-');
        if !ldh || bytes[0] == b'-' || bytes[bytes.len() - 1] == b'-' {
            return Err(MxPatternError::BadLabel);
        }
    }
    Ok(())
}

/// Whether `domain` is a host name (no IP literal, no URL syntax): what may become
/// `mta-sts.<domain>` in a URL and `_mta-sts.<domain>` in a query.
#[must_use]
pub fn is_host_name(domain: &str) -> bool {
    domain.parse::<IpAddr>().is_err() && check_host_name(domain).is_ok()
}

const fn is_wsp(c: char) -> bool {
    c == ' ' || c == '\t'
}

/// `sts-policy-field-name`: `(ALPHA / DIGIT) *31(ALPHA / DIGIT / "_" / "-" / ".")`; the known
/// names (`max_age` included) fit it.
fn is_field_name(name: &str) -> bool {
    let bytes = name.as_bytes();
    !bytes.is_empty()
        && bytes.len() <= 32
        && bytes[0].is_ascii_alphanumeric()
        && bytes
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'))
}

/// `sts-policy-ext-value`: visible characters (any UTF-8 beyond ASCII) with inner WSP; no control
/// characters (a bare CR included), not empty.
fn is_field_value(value: &str) -> bool {
    !value.is_empty() && !value.chars().any(|c| c.is_control() && c != '\t')
}

/// `1*10DIGIT`, capped at [`MAX_MAX_AGE`].
fn parse_max_age(value: &str) -> Option<u32> {
    if value.is_empty() || value.len() > 10 || !value.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    // Ten digits fit in a u64.
    let seconds: u64 = value.parse().ok()?;
    Some(u32::try_from(seconds.min(u64::from(MAX_MAX_AGE))).unwrap_or(MAX_MAX_AGE))
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = "version: STSv1\r\nmode: enforce\r\nmx: mail.example.com\r\nmx: *.example.net\r\nmax_age: 604800\r\n";

    fn parse(text: &str) -> Result<Policy, PolicyError> {
        Policy::parse(text.as_bytes())
    }

    fn with(line: &str) -> String {
        format!("version: STSv1\nmode: enforce\nmax_age: 86400\n{line}\n")
    }

    #[test]
    fn the_rfc_example_parses() {
        let policy = parse(GOOD).unwrap();
        assert_eq!(policy.mode, Mode::Enforce);
        assert_eq!(policy.max_age, 604_800);
        let mx: Vec<String> = policy.mx.iter().map(ToString::to_string).collect();
        assert_eq!(mx, ["mail.example.com", "*.example.net"]);
        assert_eq!(policy.text(), GOOD);
        assert_eq!(policy.policy_string().len(), 5);
        assert_eq!(policy.policy_string()[0], "version: STSv1");
    }

    #[test]
    fn fields_in_any_order_with_lf_and_extensions_parse() {
        let policy = parse("mx: mx.example.org\nmax_age:86400\nfoo-bar.x: anything at all\nmode:\ttesting\nversion: STSv1").unwrap();
        assert_eq!(policy.mode, Mode::Testing);
        assert_eq!(policy.max_age, 86400);
    }

    #[test]
    fn mode_none_needs_no_mx() {
        let policy = parse("version: STSv1\nmode: none\nmax_age: 0\n").unwrap();
        assert_eq!(policy.mode, Mode::None);
        assert!(policy.mx.is_empty());
    }

    #[test]
    fn enforce_without_mx_is_refused_not_an_empty_allow_list() {
        assert_eq!(
            parse("version: STSv1\nmode: enforce\nmax_age: 10\n"),
            Err(PolicyError::MissingField { field: "mx" })
        );
    }

    #[test]
    fn non_utf8_policy_is_refused() {
        let mut body = with("mx: mx.example.net").into_bytes();
        body.extend_from_slice(b"x-ext: \xff\xfe\n");
        assert!(matches!(
            Policy::parse(&body),
            Err(PolicyError::NotUtf8 { .. })
        ));
    }

    #[test]
    fn policy_over_the_size_cap_is_refused() {
        let mut body = with("mx: mx.example.net");
        body.push_str(&"x-pad: a\n".repeat(MAX_POLICY_BYTES / 8));
        assert_eq!(parse(&body), Err(PolicyError::TooLarge));
    }

    #[test]
    fn unknown_mode_is_refused_not_read_as_none() {
        let error = parse("version: STSv1\nmode: strict\nmx: a.example\nmax_age: 1").unwrap_err();
        assert!(matches!(error, PolicyError::UnknownMode { line: 2, .. }));
        assert_eq!(
            error.to_string(),
            "line 2: unknown mode \"strict\" (enforce, testing or none)"
        );
        // Case-sensitive, as the ABNF's %s says.
        assert!(parse("version: STSv1\nmode: Enforce\nmx: a.example\nmax_age: 1").is_err());
    }

    #[test]
    fn bad_max_age_is_refused() {
        for value in ["", "-1", "1e6", "0x10", "12345678901", "+5", "1 2", "١٢"] {
            let body = format!("version: STSv1\nmode: enforce\nmx: a.example\nmax_age: {value}");
            assert!(
                matches!(
                    parse(&body),
                    Err(PolicyError::BadMaxAge { .. } | PolicyError::MalformedLine { .. })
                ),
                "{value:?}"
            );
        }
    }

    #[test]
    fn huge_max_age_is_capped_at_a_year() {
        let body = "version: STSv1\nmode: enforce\nmx: a.example\nmax_age: 9999999999";
        assert_eq!(parse(body).unwrap().max_age, MAX_MAX_AGE);
        let body = "version: STSv1\nmode: enforce\nmx: a.example\nmax_age: 31557600";
        assert_eq!(parse(body).unwrap().max_age, MAX_MAX_AGE);
    }

    #[test]
    fn mx_lines_with_bad_wildcards_are_refused() {
        for value in [
            "a*.example.net",
            "*example.net",
            "ex.*.net",
            "*",
            "*.",
            "*.*.example.net",
            "mx..example.net",
            ".example.net",
            "example.net.",
            "-mx.example.net",
            "mx_1.example.net",
            "mx.exämple.net",
        ] {
            let error = parse(&with(&format!("mx: {value}"))).unwrap_err();
            assert!(
                matches!(error, PolicyError::BadMx { line: 4, .. }),
                "{value:?}: {error}"
            );
        }
    }

    #[test]
    fn mx_that_is_an_ip_literal_is_refused() {
        for value in ["192.0.2.1", "[192.0.2.1]", "2001:db8::1", "[2001:db8::1]"] {
            assert!(
                matches!(
                    parse(&with(&format!("mx: {value}"))),
                    Err(PolicyError::BadMx {
                        reason: MxPatternError::IpLiteral,
                        ..
                    })
                ),
                "{value}"
            );
        }
    }

    #[test]
    fn duplicate_fields_are_refused_not_last_one_wins() {
        for line in ["mode: testing", "max_age: 5", "version: STSv1"] {
            assert!(
                matches!(
                    parse(&with(line)),
                    Err(PolicyError::DuplicateField { line: 4, .. })
                ),
                "{line}"
            );
        }
    }

    #[test]
    fn missing_or_wrong_version_is_refused() {
        assert_eq!(
            parse("mode: enforce\nmx: a.example\nmax_age: 1"),
            Err(PolicyError::MissingField { field: "version" })
        );
        assert!(matches!(
            parse("version: STSv2\nmode: enforce\nmx: a.example\nmax_age: 1"),
            Err(PolicyError::UnsupportedVersion { line: 1, .. })
        ));
    }

    #[test]
    fn html_or_garbage_lines_are_refused() {
        assert!(matches!(
            parse("<html><body>Not found</body></html>"),
            Err(PolicyError::MalformedLine { line: 1, .. })
        ));
        // A bare CR inside a line could hide a field from another parser.
        assert!(matches!(
            parse(&with("mx: a.example\rmode: none")),
            Err(PolicyError::MalformedLine { .. })
        ));
        assert!(matches!(
            parse(&with(" mx: a.example")),
            Err(PolicyError::MalformedLine { .. })
        ));
    }

    #[test]
    fn patterns_match_one_left_label_only() {
        let wildcard = MxPattern::parse("*.Example.NET").unwrap();
        assert!(wildcard.matches("mx.example.net"));
        assert!(wildcard.matches("MX.EXAMPLE.NET."));
        assert!(!wildcard.matches("a.b.example.net"));
        assert!(!wildcard.matches("example.net"));
        assert!(!wildcard.matches(".example.net"));
        assert!(!wildcard.matches("mxexample.net"));
        let exact = MxPattern::parse("mail.example.com").unwrap();
        assert!(exact.matches("Mail.Example.Com."));
        assert!(!exact.matches("x.mail.example.com"));
        let policy = parse(GOOD).unwrap();
        assert!(policy.matches_mx("a.example.net"));
        assert!(!policy.matches_mx("evil.example"));
    }

    #[test]
    fn error_messages_quote_outside_text_escaped_and_short() {
        let error = parse(&format!(
            "version: STSv1\nmode: {}\x1b[31m",
            "x".repeat(200)
        ))
        .unwrap_err();
        let message = error.to_string();
        assert!(!message.contains('\x1b'), "{message}");
        assert!(message.len() < 200, "{message}");
    }

    mod properties {
        use super::*;
        use proptest::prelude::*;

        fn pattern() -> impl Strategy<Value = MxPattern> {
            (
                "[a-z0-9]([a-z0-9-]{0,8}[a-z0-9])?(\\.[a-z][a-z0-9]{0,6}){1,3}",
                any::<bool>(),
            )
                .prop_map(|(name, wildcard)| {
                    let value = if wildcard { format!("*.{name}") } else { name };
                    MxPattern::parse(&value).unwrap()
                })
        }

        proptest! {
            #[test]
            fn the_parser_never_panics(body in proptest::collection::vec(any::<u8>(), 0..400)) {
                let _ = Policy::parse(&body);
            }

            #[test]
            fn the_parser_never_panics_on_field_like_text(
                lines in proptest::collection::vec("(version|mode|mx|max_age|x)[: \t]{0,3}[ -~\u{80}-\u{10ffff}\r]{0,20}", 0..8)
            ) {
                let body = lines.join("\n");
                if let Ok(policy) = Policy::parse(body.as_bytes()) {
                    prop_assert_eq!(Policy::parse(policy.text().as_bytes()), Ok(policy));
                }
            }

            #[test]
            fn a_policy_round_trips_through_its_text(
                mode in proptest::sample::select(Mode::ALL.to_vec()),
                max_age in any::<u32>(),
                mx in proptest::collection::vec(pattern(), 1..5),
            ) {
                let policy = Policy::new(mode, max_age, mx);
                prop_assert_eq!(Policy::parse(policy.text().as_bytes()), Ok(policy.clone()));
                prop_assert!(policy.max_age <= MAX_MAX_AGE);
            }
        }
    }
}
