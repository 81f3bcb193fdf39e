//! TLS for each tier with OpenSSL (the stack that still has the legacy tier), and the
//! classification of what went wrong into the engine's outcomes.

mod dane;

use std::io;
use std::path::PathBuf;

use openssl::error::ErrorStack;
use openssl::ssl::{
    self, HandshakeError, SslConnector, SslMethod, SslMode, SslStream, SslVerifyMode, SslVersion,
};
use policy_core::{
    CertificateError, CipherPolicy, Outcome, TlsAlert, TlsParameters, TlsVersion, Verification,
};

/// The cipher list for the strong suites (TLS 1.2; TLS 1.3 suites are all AEAD and kept).
const STRONG_CIPHERS: &str = "ECDHE+AESGCM:ECDHE+CHACHA20:DHE+AESGCM:DHE+CHACHA20:!aNULL";
/// Everything the stack still has, at security level 0 (CBC-SHA1, static RSA).
const LEGACY_CIPHERS: &str = "ALL:!aNULL:!eNULL:@SECLEVEL=0";

/// What a successful handshake negotiated.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Negotiated {
    /// The protocol version.
    pub version: Option<TlsVersion>,
    /// The version as OpenSSL names it (`TLSv1.3`).
    pub version_name: String,
    /// The cipher suite as OpenSSL names it.
    pub cipher: String,
}

/// One TLSA record (RFC 6698), as the caller resolved it with DNSSEC.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TlsaRecord {
    /// Certificate usage: 2 DANE-TA, 3 DANE-EE (0 and 1 are unusable for SMTP, RFC 7672 3.1.3).
    pub usage: u8,
    /// Selector: 0 full certificate, 1 SubjectPublicKeyInfo.
    pub selector: u8,
    /// Matching type: 0 exact, 1 SHA-256, 2 SHA-512.
    pub matching_type: u8,
    /// The association data.
    pub data: Vec<u8>,
}

impl TlsaRecord {
    /// The record in presentation format, `USAGE SELECTOR MTYPE HEX` (what the log, the JSON and
    /// TLS-RPT policy strings show).
    #[must_use]
    pub fn presentation(&self) -> String {
        let hex: String = self.data.iter().map(|b| format!("{b:02x}")).collect();
        format!(
            "{} {} {} {hex}",
            self.usage, self.selector, self.matching_type
        )
    }

    /// Parses `USAGE SELECTOR MTYPE HEX` (the presentation format's fields).
    ///
    /// # Errors
    ///
    /// What is wrong with the text.
    pub fn parse(text: &str) -> Result<Self, String> {
        let fields: Vec<&str> = text.split_whitespace().collect();
        let [usage, selector, mtype, rest @ ..] = fields.as_slice() else {
            return Err(format!(
                "a TLSA record is \"USAGE SELECTOR MTYPE HEX\", not {text:?}"
            ));
        };
        let number = |field: &str, name: &str, max: u8| -> Result<u8, String> {
            field
                .parse::<u8>()
                .ok()
                .filter(|n| *n <= max)
                .ok_or_else(|| format!("TLSA {name} must be 0 to {max}, not {field:?}"))
        };
        let hex: String = rest.concat();
        if hex.is_empty()
            || !hex.len().is_multiple_of(2)
            || !hex.bytes().all(|b| b.is_ascii_hexdigit())
        {
            return Err(format!(
                "TLSA data must be an even number of hex digits, not {hex:?}"
            ));
        }
        let data = (0..hex.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).map_err(|e| e.to_string()))
            .collect::<Result<Vec<u8>, String>>()?;
        Ok(Self {
            usage: number(usage, "usage", 3)?,
            selector: number(selector, "selector", 1)?,
            matching_type: number(mtype, "matching type", 2)?,
            data,
        })
    }

    /// Whether the record's usage is one SMTP may use (DANE-TA or DANE-EE, RFC 7672 section
    /// 3.1.3). Necessary, not sufficient: OpenSSL may still find it unusable, see
    /// [`usable_tlsa_records`].
    #[must_use]
    pub const fn usable_for_smtp(&self) -> bool {
        self.usage >= 2
    }
}

/// The records DANE verification can actually use: a usage SMTP allows, and accepted by OpenSSL
/// (a digest of the right length, data that parses as a certificate or key). When none is, the
/// TLSA RRset is "unusable" (RFC 7672 section 2.2, RFC 6698): the delivery context must say
/// [`policy_core::Dane::Unusable`], and nothing may verify the peer another way instead.
///
/// # Errors
///
/// When OpenSSL cannot be set up to check them.
pub fn usable_tlsa_records(records: &[TlsaRecord]) -> Result<Vec<TlsaRecord>, String> {
    let allowed: Vec<TlsaRecord> = records
        .iter()
        .filter(|r| r.usable_for_smtp())
        .cloned()
        .collect();
    dane::accepted(&allowed)
}

/// Where certificate verification gets its trust anchors.
#[derive(Clone, Debug, Default)]
pub struct TrustAnchors {
    /// A PEM file of extra CA certificates (tests, private PKIs); the system roots otherwise.
    pub ca_file: Option<PathBuf>,
    /// TLSA records for DANE verification (the `dane` verification mode).
    pub tlsa: Vec<TlsaRecord>,
}

/// A failed handshake, classified.
#[derive(Debug)]
pub struct HandshakeFailure {
    /// The engine's view of the failure.
    pub outcome: Outcome,
    /// OpenSSL's own words, for the log.
    pub detail: String,
}

fn version(v: TlsVersion) -> SslVersion {
    match v {
        TlsVersion::Tls1_0 => SslVersion::TLS1,
        TlsVersion::Tls1_1 => SslVersion::TLS1_1,
        TlsVersion::Tls1_2 => SslVersion::TLS1_2,
        TlsVersion::Tls1_3 => SslVersion::TLS1_3,
    }
}

/// Builds the connector for one attempt's parameters.
///
/// # Errors
///
/// When OpenSSL rejects the settings (for example a cipher list it cannot satisfy).
pub fn connector(
    params: &TlsParameters,
    anchors: &TrustAnchors,
) -> Result<SslConnector, ErrorStack> {
    let mut builder = SslConnector::builder(SslMethod::tls_client())?;
    builder.set_min_proto_version(Some(version(params.min_version)))?;
    builder.set_max_proto_version(Some(version(params.max_version)))?;
    builder.set_cipher_list(match params.ciphers {
        CipherPolicy::Strong => STRONG_CIPHERS,
        CipherPolicy::LegacyCompatible => LEGACY_CIPHERS,
    })?;
    // The cipher string of the legacy tier carries @SECLEVEL=0 itself; set it for both so the
    // engine's number is what OpenSSL applies.
    builder.set_security_level(u32::from(params.security_level));
    if params.fallback_scsv {
        builder.set_mode(SslMode::SEND_FALLBACK_SCSV);
    }
    match params.verification {
        Verification::None => builder.set_verify(SslVerifyMode::NONE),
        Verification::Dane => {
            builder.set_verify(SslVerifyMode::PEER);
            dane::enable_on_context(&mut builder).map_err(|_| ErrorStack::get())?;
        }
        Verification::Webpki => {
            builder.set_verify(SslVerifyMode::PEER);
            match &anchors.ca_file {
                Some(file) => builder.set_ca_file(file)?,
                None => builder.set_default_verify_paths()?,
            }
        }
    }
    Ok(builder.build())
}

/// Runs the client handshake on an SMTP connection after `220` to STARTTLS.
///
/// `mx_host` is the name the certificate must match when the parameters ask to verify.
///
/// # Errors
///
/// The classified failure.
pub fn handshake<S: io::Read + io::Write>(
    params: &TlsParameters,
    anchors: &TrustAnchors,
    mx_host: &str,
    stream: S,
) -> Result<(SslStream<S>, Negotiated), HandshakeFailure> {
    let setup = |e: ErrorStack| HandshakeFailure {
        outcome: Outcome::TlsAlert(TlsAlert::Other),
        detail: format!("TLS set-up failed: {e}"),
    };
    let usable: Vec<TlsaRecord> = anchors
        .tlsa
        .iter()
        .filter(|r| r.usable_for_smtp())
        .cloned()
        .collect();
    if params.verification == Verification::Dane && usable.is_empty() {
        // The engine asked for DANE but the host has no usable records to verify with: a failure
        // of the policy inputs, not evidence about the peer.
        return Err(HandshakeFailure {
            outcome: Outcome::PolicyLookupFailed,
            detail: "DANE verification asked for, but no usable TLSA records were given".to_owned(),
        });
    }
    let connector = connector(params, anchors).map_err(setup)?;
    let mut config = connector.configure().map_err(setup)?;
    if params.verification == Verification::None {
        config.set_verify_hostname(false);
        config.set_verify(SslVerifyMode::NONE);
    }
    if params.verification == Verification::Dane {
        // DANE does its own name checks (none for DANE-EE, RFC 7672 section 3.2.1).
        config.set_verify_hostname(false);
        let accepted =
            dane::enable_on_connection(&mut config, mx_host, &usable).map_err(|detail| {
                HandshakeFailure {
                    outcome: Outcome::PolicyLookupFailed,
                    detail,
                }
            })?;
        if accepted == 0 {
            // OpenSSL verifies against the CA roots when no record was added: that would make an
            // unusable TLSA RRset authenticate by WebPKI. A failure of the policy inputs instead.
            return Err(HandshakeFailure {
                outcome: Outcome::PolicyLookupFailed,
                detail: "OpenSSL can use none of the TLSA records (RFC 7672 section 2.2: an \
                         unusable TLSA RRset); not verifying the peer another way"
                    .to_owned(),
            });
        }
    }
    // SNI only for names, never for address literals.
    config.set_use_server_name_indication(mx_host.parse::<std::net::IpAddr>().is_err());
    match config.connect(mx_host, stream) {
        Ok(stream) => {
            let ssl = stream.ssl();
            let negotiated = Negotiated {
                version: TlsVersion::from_name(ssl.version_str()),
                version_name: ssl.version_str().to_owned(),
                cipher: ssl
                    .current_cipher()
                    .map_or_else(String::new, |c| c.name().to_owned()),
            };
            Ok((stream, negotiated))
        }
        Err(HandshakeError::SetupFailure(e)) => Err(setup(e)),
        Err(HandshakeError::WouldBlock(_)) => Err(HandshakeFailure {
            outcome: Outcome::HandshakeTimeout,
            detail: "the TLS handshake timed out".to_owned(),
        }),
        Err(HandshakeError::Failure(mid)) => {
            let verify = mid.ssl().verify_result();
            Err(classify(
                mid.error(),
                verify.as_raw(),
                verify.error_string(),
            ))
        }
    }
}

/// OpenSSL reports an alert received from the peer as reason 1000 + the alert number
/// (`SSL_AD_REASON_OFFSET`: "tlsv1 alert protocol version", "sslv3 alert handshake failure").
/// An alert OpenSSL itself sends carries its own local reason instead.
const ALERT_OFFSET: i32 = 1000;

/// TLS alert descriptions (RFC 8446 section 6) the engine tells apart: what OpenSSL reports for
/// an alert the peer sent is 1000 plus one of these, and the test attacker forges them.
pub mod alert {
    /// `handshake_failure`: definitive evidence for the engine today.
    pub const HANDSHAKE_FAILURE: u8 = 40;
    /// `protocol_version`: definitive evidence for the engine today.
    pub const PROTOCOL_VERSION: u8 = 70;
    /// `insufficient_security`: skips the legacy tier.
    pub const INSUFFICIENT_SECURITY: u8 = 71;
    /// `internal_error`: one of the alerts the engine does not classify (`other`).
    pub const INTERNAL_ERROR: u8 = 80;
    /// `inappropriate_fallback`: the answer to the fallback SCSV.
    pub const INAPPROPRIATE_FALLBACK: u8 = 86;

    /// Every description above, with its RFC name.
    pub const ALL: [(u8, &str); 5] = [
        (PROTOCOL_VERSION, "protocol-version"),
        (HANDSHAKE_FAILURE, "handshake-failure"),
        (INSUFFICIENT_SECURITY, "insufficient-security"),
        (INAPPROPRIATE_FALLBACK, "inappropriate-fallback"),
        (INTERNAL_ERROR, "internal-error"),
    ];

    /// The RFC name of a description, or `other`.
    #[must_use]
    pub fn name(description: u8) -> &'static str {
        ALL.iter()
            .find(|(code, _)| *code == description)
            .map_or("other", |(_, name)| name)
    }
}

/// The peer's well-formed ServerHello chose a version (`unsupported protocol`) or a suite
/// (`wrong cipher returned`) outside what we offered: how a server that predates our versions
/// answers (RFC 5246 appendix E.1), a TLS message the peer sent, as much its statement as an
/// alert.
const SSL_R_UNSUPPORTED_PROTOCOL: i32 = 258;
const SSL_R_WRONG_CIPHER_RETURNED: i32 = 261;
/// OpenSSL's reason for a handshake that failed on the peer's certificate (also what the MTA-STS fetch
/// reads to tell `sts-webpki-invalid` from other failures).
pub(crate) const SSL_R_CERTIFICATE_VERIFY_FAILED: i32 = 134;
/// X509 verify results (`X509_V_ERR_*`).
const X509_V_ERR_CERT_HAS_EXPIRED: i32 = 10;
const X509_V_ERR_HOSTNAME_MISMATCH: i32 = 62;
const X509_V_ERR_DANE_NO_MATCH: i32 = 65;

/// The alert outcome OpenSSL's reason codes for a failed handshake stand for, if any: shared by
/// our own handshakes and the lines Postfix logs (`TLS library problem: error:0A00042E:…`).
///
/// Only what the peer said in TLS counts: an alert record it sent, or a ServerHello naming what
/// we did not offer. Every other reason is `None`, above all the record layer's complaints about
/// bytes that are not TLS at all (`wrong version number`, `packet length too long`, `record
/// layer failure`, `http request`, …): whatever answers the ClientHello with text (a peer or
/// middlebox that does not do TLS after its `220`, or an attacker's injected bytes) produces
/// them for free, and garbage is not a peer's alert. Local failures (`no protocols available`)
/// say nothing about the peer either. The callers then report [`TlsAlert::Other`] or a reset,
/// which the engine counts as cheap, transient evidence and never as a definitive refusal.
#[must_use]
pub fn outcome_for_reasons(reasons: &[i32]) -> Option<Outcome> {
    let any = |codes: &[i32]| codes.iter().any(|code| reasons.contains(code));
    Some(
        if any(&[
            ALERT_OFFSET + i32::from(alert::PROTOCOL_VERSION),
            SSL_R_UNSUPPORTED_PROTOCOL,
        ]) {
            Outcome::TlsAlert(TlsAlert::ProtocolVersion)
        } else if any(&[
            ALERT_OFFSET + i32::from(alert::HANDSHAKE_FAILURE),
            SSL_R_WRONG_CIPHER_RETURNED,
        ]) {
            Outcome::TlsAlert(TlsAlert::HandshakeFailure)
        } else if any(&[ALERT_OFFSET + i32::from(alert::INSUFFICIENT_SECURITY)]) {
            Outcome::TlsAlert(TlsAlert::InsufficientSecurity)
        } else if any(&[ALERT_OFFSET + i32::from(alert::INAPPROPRIATE_FALLBACK)]) {
            Outcome::TlsAlert(TlsAlert::InappropriateFallback)
        } else {
            return None;
        },
    )
}

/// Maps an OpenSSL handshake error (and the verify result) to the engine's outcome.
fn classify(error: &ssl::Error, verify_result: i32, verify_text: &str) -> HandshakeFailure {
    let detail = error.to_string();
    if let Some(io) = error.io_error() {
        let outcome = match io.kind() {
            io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut => Outcome::HandshakeTimeout,
            _ => Outcome::ConnectionReset,
        };
        return HandshakeFailure { outcome, detail };
    }
    let reasons: Vec<i32> = error
        .ssl_error()
        .map(|stack| {
            stack
                .errors()
                .iter()
                .map(openssl::error::Error::reason_code)
                .collect()
        })
        .unwrap_or_default();
    if reasons.contains(&SSL_R_CERTIFICATE_VERIFY_FAILED) {
        let kind = match verify_result {
            X509_V_ERR_CERT_HAS_EXPIRED => CertificateError::Expired,
            X509_V_ERR_HOSTNAME_MISMATCH => CertificateError::NameMismatch,
            X509_V_ERR_DANE_NO_MATCH => CertificateError::DaneMismatch,
            _ => CertificateError::Untrusted,
        };
        return HandshakeFailure {
            outcome: Outcome::CertificateError(kind),
            detail: format!("{detail} ({verify_text})"),
        };
    }
    let outcome = outcome_for_reasons(&reasons).unwrap_or(
        if error.code() == ssl::ErrorCode::SYSCALL || error.code() == ssl::ErrorCode::ZERO_RETURN {
            // The peer closed the connection in the middle of the handshake.
            Outcome::ConnectionReset
        } else {
            // Any other alert, or bytes that are not TLS (see `outcome_for_reasons`): `other`,
            // which the engine treats as transient (like a reset), so it cannot walk a peer down
            // in one delivery.
            Outcome::TlsAlert(TlsAlert::Other)
        },
    );
    HandshakeFailure { outcome, detail }
}
