//! The one mapping between policy-core's types and the WIT contract's generated types.
//!
//! wit-bindgen (the guest) and wasmtime's `bindgen!` (the host) each generate their own Rust types
//! for `tlsfallback:policy/engine`, with the same names. Rather than write the mapping twice and
//! keep the copies in step by hand, both sides expand this macro over their generated module:
//! a field added to the WIT fails to compile on both sides at once.

/// Expands to conversion functions between policy-core's types and the generated types of the
/// `tlsfallback:policy/engine` interface, which must be in scope as `wit` at the call site.
///
/// Generated: `policy_to_wit`/`policy_from_wit`, `context_to_wit`/`context_from_wit`,
/// `report_to_wit`/`report_from_wit`, `decision_to_wit`/`decision_from_wit`.
#[macro_export]
macro_rules! wit_mapping {
    () => {
        use $crate as core_types;

        $crate::__wit_enum_both_ways!(
            tier_to_wit,
            tier_from_wit,
            core_types::Tier,
            wit::Tier,
            [Cleartext, LegacyTls, ModernTls, AuthenticatedTls]
        );
        $crate::__wit_enum_both_ways!(
            profile_to_wit,
            profile_from_wit,
            core_types::Profile,
            wit::Profile,
            [
                Opportunistic,
                Mandatory,
                AuthenticatedOnly,
                NoFallback,
                BrowserStyle
            ]
        );
        $crate::__wit_enum_both_ways!(
            dane_to_wit,
            dane_from_wit,
            core_types::Dane,
            wit::Dane,
            [None, Usable, Unusable, LookupFailed]
        );
        $crate::__wit_enum_both_ways!(
            mta_sts_to_wit,
            mta_sts_from_wit,
            core_types::MtaSts,
            wit::MtaSts,
            [None, Testing, Enforce, FetchFailed]
        );
        $crate::__wit_enum_both_ways!(
            alert_to_wit,
            alert_from_wit,
            core_types::TlsAlert,
            wit::TlsAlert,
            [
                ProtocolVersion,
                HandshakeFailure,
                InsufficientSecurity,
                InappropriateFallback,
                Other
            ]
        );
        $crate::__wit_enum_both_ways!(
            cert_error_to_wit,
            cert_error_from_wit,
            core_types::CertificateError,
            wit::CertificateError,
            [Expired, Untrusted, NameMismatch, DaneMismatch]
        );
        $crate::__wit_enum_both_ways!(
            ciphers_to_wit,
            ciphers_from_wit,
            core_types::CipherPolicy,
            wit::CipherPolicy,
            [Strong, LegacyCompatible]
        );
        $crate::__wit_enum_both_ways!(
            verification_to_wit,
            verification_from_wit,
            core_types::Verification,
            wit::Verification,
            [None, Dane, Webpki]
        );
        $crate::__wit_enum_both_ways!(
            reason_to_wit,
            reason_from_wit,
            core_types::Reason,
            wit::Reason,
            [
                StrongestTier,
                RememberedTier,
                ReprobeUpward,
                HistoryUnreadable,
                SteppedDownAfterAlert,
                SteppedDownNoStarttls,
                SteppedDownRepeatedFailures,
                SteppedUpPeerWantsStronger,
                Delivered,
                ConnectFailed,
                PolicyLookupFailed,
                DaneLookupFailed,
                TransientFailure,
                DowngradeRefusedPinned,
                StarttlsMissingAfterTls,
                TlsRequiredNotOffered,
                NoTierLeft,
                AuthenticationFailed,
                RequiretlsUnsatisfiable,
                DowngradeAttackSuspected,
                NoFallbackProfile,
                AttemptLimit,
                InconsistentOutcome,
            ]
        );

        #[allow(dead_code)]
        pub(crate) fn version_to_wit(value: core_types::TlsVersion) -> wit::TlsVersion {
            match value {
                core_types::TlsVersion::Tls1_0 => wit::TlsVersion::Tls10,
                core_types::TlsVersion::Tls1_1 => wit::TlsVersion::Tls11,
                core_types::TlsVersion::Tls1_2 => wit::TlsVersion::Tls12,
                core_types::TlsVersion::Tls1_3 => wit::TlsVersion::Tls13,
            }
        }

        #[allow(dead_code)]
        pub(crate) fn version_from_wit(value: wit::TlsVersion) -> core_types::TlsVersion {
            match value {
                wit::TlsVersion::Tls10 => core_types::TlsVersion::Tls1_0,
                wit::TlsVersion::Tls11 => core_types::TlsVersion::Tls1_1,
                wit::TlsVersion::Tls12 => core_types::TlsVersion::Tls1_2,
                wit::TlsVersion::Tls13 => core_types::TlsVersion::Tls1_3,
            }
        }

        #[allow(dead_code)]
        pub(crate) fn policy_to_wit(p: &core_types::Policy) -> wit::Policy {
            wit::Policy {
                profile: profile_to_wit(p.profile),
                allow_legacy_tls: p.allow_legacy_tls,
                allow_cleartext: p.allow_cleartext,
                step_down_delay_secs: p.step_down_delay_secs,
                reprobe_interval_secs: p.reprobe_interval_secs,
                pin_duration_secs: p.pin_duration_secs,
                transient_failure_threshold: p.transient_failure_threshold,
                retry_after_secs: p.retry_after_secs,
            }
        }

        #[allow(dead_code)]
        pub(crate) fn policy_from_wit(p: wit::Policy) -> core_types::Policy {
            core_types::Policy {
                profile: profile_from_wit(p.profile),
                allow_legacy_tls: p.allow_legacy_tls,
                allow_cleartext: p.allow_cleartext,
                step_down_delay_secs: p.step_down_delay_secs,
                reprobe_interval_secs: p.reprobe_interval_secs,
                pin_duration_secs: p.pin_duration_secs,
                transient_failure_threshold: p.transient_failure_threshold,
                retry_after_secs: p.retry_after_secs,
            }
        }

        #[allow(dead_code)]
        pub(crate) fn context_to_wit(c: &core_types::DeliveryContext) -> wit::DeliveryContext {
            wit::DeliveryContext {
                dane: dane_to_wit(c.dane),
                mta_sts: mta_sts_to_wit(c.mta_sts),
                requiretls: c.requiretls,
                tls_required_no: c.tls_required_no,
                sasl: c.sasl,
            }
        }

        #[allow(dead_code)]
        pub(crate) fn context_from_wit(c: wit::DeliveryContext) -> core_types::DeliveryContext {
            core_types::DeliveryContext {
                dane: dane_from_wit(c.dane),
                mta_sts: mta_sts_from_wit(c.mta_sts),
                requiretls: c.requiretls,
                tls_required_no: c.tls_required_no,
                sasl: c.sasl,
            }
        }

        #[allow(dead_code)]
        pub(crate) fn report_to_wit(r: &core_types::AttemptReport) -> wit::AttemptReport {
            use core_types::Outcome as O;
            let outcome = match r.outcome {
                O::Success { version } => wit::Outcome::Success(version.map(version_to_wit)),
                O::ConnectFailed => wit::Outcome::ConnectFailed,
                O::StarttlsNotOffered => wit::Outcome::StarttlsNotOffered,
                O::StarttlsRejected { code } => wit::Outcome::StarttlsRejected(code),
                O::TlsAlert(a) => wit::Outcome::TlsAlert(alert_to_wit(a)),
                O::CertificateError(e) => wit::Outcome::CertificateError(cert_error_to_wit(e)),
                O::HandshakeTimeout => wit::Outcome::HandshakeTimeout,
                O::ConnectionReset => wit::Outcome::ConnectionReset,
                O::PostHandshakeFailure => wit::Outcome::PostHandshakeFailure,
                O::PolicyLookupFailed => wit::Outcome::PolicyLookupFailed,
            };
            wit::AttemptReport {
                tier: tier_to_wit(r.tier),
                outcome,
            }
        }

        #[allow(dead_code)]
        pub(crate) fn report_from_wit(r: wit::AttemptReport) -> core_types::AttemptReport {
            use core_types::Outcome as O;
            let outcome = match r.outcome {
                wit::Outcome::Success(version) => O::Success {
                    version: version.map(version_from_wit),
                },
                wit::Outcome::ConnectFailed => O::ConnectFailed,
                wit::Outcome::StarttlsNotOffered => O::StarttlsNotOffered,
                wit::Outcome::StarttlsRejected(code) => O::StarttlsRejected { code },
                wit::Outcome::TlsAlert(a) => O::TlsAlert(alert_from_wit(a)),
                wit::Outcome::CertificateError(e) => O::CertificateError(cert_error_from_wit(e)),
                wit::Outcome::HandshakeTimeout => O::HandshakeTimeout,
                wit::Outcome::ConnectionReset => O::ConnectionReset,
                wit::Outcome::PostHandshakeFailure => O::PostHandshakeFailure,
                wit::Outcome::PolicyLookupFailed => O::PolicyLookupFailed,
            };
            core_types::AttemptReport {
                tier: tier_from_wit(r.tier),
                outcome,
            }
        }

        /// The RFC 8460 result types and their WIT flags, in one table for both directions.
        #[allow(dead_code)]
        fn report_flags() -> [(core_types::TlsRptResult, wit::TlsRptResults); 11] {
            use core_types::TlsRptResult as R;
            [
                (
                    R::StarttlsNotSupported,
                    wit::TlsRptResults::STARTTLS_NOT_SUPPORTED,
                ),
                (
                    R::CertificateHostMismatch,
                    wit::TlsRptResults::CERTIFICATE_HOST_MISMATCH,
                ),
                (
                    R::CertificateExpired,
                    wit::TlsRptResults::CERTIFICATE_EXPIRED,
                ),
                (
                    R::CertificateNotTrusted,
                    wit::TlsRptResults::CERTIFICATE_NOT_TRUSTED,
                ),
                (R::ValidationFailure, wit::TlsRptResults::VALIDATION_FAILURE),
                (R::TlsaInvalid, wit::TlsRptResults::TLSA_INVALID),
                (R::DnssecInvalid, wit::TlsRptResults::DNSSEC_INVALID),
                (R::DaneRequired, wit::TlsRptResults::DANE_REQUIRED),
                (
                    R::StsPolicyFetchError,
                    wit::TlsRptResults::STS_POLICY_FETCH_ERROR,
                ),
                (R::StsPolicyInvalid, wit::TlsRptResults::STS_POLICY_INVALID),
                (R::StsWebpkiInvalid, wit::TlsRptResults::STS_WEBPKI_INVALID),
            ]
        }

        // wit-bindgen's flags (without its bitflags feature) have `|` but no `|=`.
        #[allow(dead_code, clippy::assign_op_pattern)]
        pub(crate) fn decision_to_wit(d: &core_types::Decision) -> wit::Decision {
            let action = match d.action {
                core_types::Action::Attempt {
                    tier,
                    tls,
                    delay_secs,
                } => wit::Action::Attempt(wit::Attempt {
                    tier: tier_to_wit(tier),
                    tls: tls.map(|t| wit::TlsParameters {
                        min_version: version_to_wit(t.min_version),
                        max_version: version_to_wit(t.max_version),
                        ciphers: ciphers_to_wit(t.ciphers),
                        security_level: t.security_level,
                        verification: verification_to_wit(t.verification),
                        fallback_scsv: t.fallback_scsv,
                    }),
                    delay_secs,
                }),
                core_types::Action::Defer { retry_after_secs } => {
                    wit::Action::Defer(retry_after_secs)
                }
                core_types::Action::Bounce { status } => wit::Action::Bounce(wit::EnhancedStatus {
                    class: status.class,
                    subject: status.subject,
                    detail: status.detail,
                }),
                core_types::Action::Done => wit::Action::Done,
            };
            let mut report = wit::TlsRptResults::empty();
            for (result, flag) in report_flags() {
                if d.report.contains(result) {
                    report = report | flag;
                }
            }
            let history_error = d.history_error.map(|e| match e {
                core_types::HistoryError::TooLong(n) => {
                    wit::HistoryError::TooLong(u32::try_from(n).unwrap_or(u32::MAX))
                }
                core_types::HistoryError::UnsupportedVersion(v) => {
                    wit::HistoryError::UnsupportedVersion(v)
                }
                core_types::HistoryError::Truncated => wit::HistoryError::Truncated,
                core_types::HistoryError::TrailingBytes(n) => {
                    wit::HistoryError::TrailingBytes(u32::try_from(n).unwrap_or(u32::MAX))
                }
                core_types::HistoryError::Empty => wit::HistoryError::Empty,
                // Malformed, and any kind a later policy-core adds before the WIT does.
                _ => wit::HistoryError::Malformed,
            });
            wit::Decision {
                action,
                reason: reason_to_wit(d.reason),
                report,
                history: d.history.as_bytes().to_vec(),
                history_error,
            }
        }

        /// Maps a decision that came out of a component back; fails when the history it returned
        /// is longer than any engine writes.
        #[allow(dead_code)]
        pub(crate) fn decision_from_wit(
            d: wit::Decision,
        ) -> Result<core_types::Decision, core_types::HistoryError> {
            let action = match d.action {
                wit::Action::Attempt(a) => core_types::Action::Attempt {
                    tier: tier_from_wit(a.tier),
                    tls: a.tls.map(|t| core_types::TlsParameters {
                        min_version: version_from_wit(t.min_version),
                        max_version: version_from_wit(t.max_version),
                        ciphers: ciphers_from_wit(t.ciphers),
                        security_level: t.security_level,
                        verification: verification_from_wit(t.verification),
                        fallback_scsv: t.fallback_scsv,
                    }),
                    delay_secs: a.delay_secs,
                },
                wit::Action::Defer(retry_after_secs) => {
                    core_types::Action::Defer { retry_after_secs }
                }
                wit::Action::Bounce(s) => core_types::Action::Bounce {
                    status: core_types::EnhancedStatus {
                        class: s.class,
                        subject: s.subject,
                        detail: s.detail,
                    },
                },
                wit::Action::Done => core_types::Action::Done,
            };
            let mut report = core_types::TlsRptResults::EMPTY;
            for (result, flag) in report_flags() {
                if (d.report & flag) == flag {
                    report.insert(result);
                }
            }
            let history_error = d.history_error.map(|e| match e {
                wit::HistoryError::Empty => core_types::HistoryError::Empty,
                wit::HistoryError::TooLong(n) => core_types::HistoryError::TooLong(n as usize),
                wit::HistoryError::UnsupportedVersion(v) => {
                    core_types::HistoryError::UnsupportedVersion(v)
                }
                wit::HistoryError::Truncated => core_types::HistoryError::Truncated,
                wit::HistoryError::Malformed => core_types::HistoryError::Malformed,
                wit::HistoryError::TrailingBytes(n) => {
                    core_types::HistoryError::TrailingBytes(n as usize)
                }
            });
            Ok(core_types::Decision {
                action,
                reason: reason_from_wit(d.reason),
                report,
                history: core_types::HistoryBlob::from_slice(&d.history)?,
                history_error,
            })
        }
    };
}

/// One enum mapped both ways, variant for variant (an implementation detail of [`wit_mapping!`]).
#[doc(hidden)]
#[macro_export]
macro_rules! __wit_enum_both_ways {
    ($to:ident, $from:ident, $core:ty, $wit:ty, [$($variant:ident),* $(,)?]) => {
        #[allow(dead_code)]
        pub(crate) fn $to(value: $core) -> $wit {
            match value { $(<$core>::$variant => <$wit>::$variant,)* }
        }
        #[allow(dead_code)]
        pub(crate) fn $from(value: $wit) -> $core {
            match value { $(<$wit>::$variant => <$core>::$variant,)* }
        }
    };
}
