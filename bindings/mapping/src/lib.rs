//! The one mapping between policy-core's types and the Rust types generated from `wit/policy.wit`.
//!
//! wit-bindgen (the guest adapter, `bindings/`, and Rust plugins) and wasmtime's `bindgen!` (the
//! host) each generate their own Rust types for `tlsfallback:policy/engine`, with the same names.
//! Rather than write the mapping twice and keep the copies in step by hand, each side expands
//! [`wit_mapping!`] over its generated module: a field or case added to the WIT fails to compile
//! on every side at once.
//!
//! The mapping lives here, not in policy-core, so that the engine knows no WIT-generated name.
//! It is a set of `From`/`TryFrom` impls: each side uses the direction it needs and no
//! conversion is dead code on the other. Must never depend on anything but policy-core (it is
//! compiled into the `no_std` guest).
#![no_std]
#![forbid(unsafe_code)]

#[doc(hidden)]
pub use policy_core as __core;

/// Expands to `From` (and, for a decision, `TryFrom`) impls between policy-core's types and the
/// generated types of the `tlsfallback:policy/engine` interface, which must be in scope as `wit`
/// at the call site. Expand it once per crate.
///
/// Host to guest (by reference, what a host has): `wit::Policy: From<&Policy>`,
/// `wit::DeliveryContext: From<&DeliveryContext>`, `wit::AttemptReport: From<&AttemptReport>`,
/// `wit::Decision: From<&Decision>`. Guest to host (by value, what a generated export receives):
/// `Policy: From<wit::Policy>`, `DeliveryContext: From<wit::DeliveryContext>`,
/// `AttemptReport: From<wit::AttemptReport>`, and `Decision: TryFrom<wit::Decision>`, which fails
/// with [`HistoryError`](policy_core::HistoryError) when the history a component returned is
/// longer than any engine writes. Every enum, and `Outcome`, converts both ways by value.
#[macro_export]
macro_rules! wit_mapping {
    () => {
        $crate::__wit_enum_both_ways!(
            $crate::__core::Tier,
            wit::Tier,
            [Cleartext, LegacyTls, ModernTls, AuthenticatedTls]
        );
        $crate::__wit_enum_both_ways!(
            $crate::__core::Profile,
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
            $crate::__core::Dane,
            wit::Dane,
            [None, Usable, Unusable, LookupFailed]
        );
        $crate::__wit_enum_both_ways!(
            $crate::__core::MtaSts,
            wit::MtaSts,
            [None, Testing, Enforce, FetchFailed]
        );
        $crate::__wit_enum_both_ways!(
            $crate::__core::TlsAlert,
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
            $crate::__core::CertificateError,
            wit::CertificateError,
            [Expired, Untrusted, NameMismatch, DaneMismatch]
        );
        $crate::__wit_enum_both_ways!(
            $crate::__core::CipherPolicy,
            wit::CipherPolicy,
            [Strong, LegacyCompatible]
        );
        $crate::__wit_enum_both_ways!(
            $crate::__core::Verification,
            wit::Verification,
            [None, Dane, Webpki]
        );
        $crate::__wit_enum_both_ways!(
            $crate::__core::Reason,
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

        // The WIT names versions `tls10` (tooling rejects a segment starting with a digit after
        // a dash); policy-core names them `Tls1_0`.
        impl ::core::convert::From<$crate::__core::TlsVersion> for wit::TlsVersion {
            fn from(value: $crate::__core::TlsVersion) -> Self {
                use $crate::__core::TlsVersion as V;
                match value {
                    V::Tls1_0 => Self::Tls10,
                    V::Tls1_1 => Self::Tls11,
                    V::Tls1_2 => Self::Tls12,
                    V::Tls1_3 => Self::Tls13,
                }
            }
        }

        impl ::core::convert::From<wit::TlsVersion> for $crate::__core::TlsVersion {
            fn from(value: wit::TlsVersion) -> Self {
                match value {
                    wit::TlsVersion::Tls10 => Self::Tls1_0,
                    wit::TlsVersion::Tls11 => Self::Tls1_1,
                    wit::TlsVersion::Tls12 => Self::Tls1_2,
                    wit::TlsVersion::Tls13 => Self::Tls1_3,
                }
            }
        }

        impl ::core::convert::From<&$crate::__core::Policy> for wit::Policy {
            fn from(p: &$crate::__core::Policy) -> Self {
                Self {
                    profile: p.profile.into(),
                    allow_legacy_tls: p.allow_legacy_tls,
                    allow_cleartext: p.allow_cleartext,
                    step_down_delay_secs: p.step_down_delay_secs,
                    reprobe_interval_secs: p.reprobe_interval_secs,
                    pin_duration_secs: p.pin_duration_secs,
                    transient_failure_threshold: p.transient_failure_threshold,
                    retry_after_secs: p.retry_after_secs,
                }
            }
        }

        impl ::core::convert::From<wit::Policy> for $crate::__core::Policy {
            fn from(p: wit::Policy) -> Self {
                Self {
                    profile: p.profile.into(),
                    allow_legacy_tls: p.allow_legacy_tls,
                    allow_cleartext: p.allow_cleartext,
                    step_down_delay_secs: p.step_down_delay_secs,
                    reprobe_interval_secs: p.reprobe_interval_secs,
                    pin_duration_secs: p.pin_duration_secs,
                    transient_failure_threshold: p.transient_failure_threshold,
                    retry_after_secs: p.retry_after_secs,
                }
            }
        }

        impl ::core::convert::From<&$crate::__core::DeliveryContext> for wit::DeliveryContext {
            fn from(c: &$crate::__core::DeliveryContext) -> Self {
                Self {
                    dane: c.dane.into(),
                    mta_sts: c.mta_sts.into(),
                    requiretls: c.requiretls,
                    tls_required_no: c.tls_required_no,
                    sasl: c.sasl,
                }
            }
        }

        impl ::core::convert::From<wit::DeliveryContext> for $crate::__core::DeliveryContext {
            fn from(c: wit::DeliveryContext) -> Self {
                Self {
                    dane: c.dane.into(),
                    mta_sts: c.mta_sts.into(),
                    requiretls: c.requiretls,
                    tls_required_no: c.tls_required_no,
                    sasl: c.sasl,
                }
            }
        }

        impl ::core::convert::From<$crate::__core::Outcome> for wit::Outcome {
            fn from(outcome: $crate::__core::Outcome) -> Self {
                use $crate::__core::Outcome as O;
                match outcome {
                    O::Success { version } => wit::Outcome::Success(version.map(Into::into)),
                    O::ConnectFailed => wit::Outcome::ConnectFailed,
                    O::StarttlsNotOffered => wit::Outcome::StarttlsNotOffered,
                    O::StarttlsRejected { code } => wit::Outcome::StarttlsRejected(code),
                    O::TlsAlert(a) => wit::Outcome::TlsAlert(a.into()),
                    O::CertificateError(e) => wit::Outcome::CertificateError(e.into()),
                    O::HandshakeTimeout => wit::Outcome::HandshakeTimeout,
                    O::ConnectionReset => wit::Outcome::ConnectionReset,
                    O::PostHandshakeFailure => wit::Outcome::PostHandshakeFailure,
                    O::PolicyLookupFailed => wit::Outcome::PolicyLookupFailed,
                }
            }
        }

        impl ::core::convert::From<wit::Outcome> for $crate::__core::Outcome {
            fn from(outcome: wit::Outcome) -> Self {
                use $crate::__core::Outcome as O;
                match outcome {
                    wit::Outcome::Success(version) => O::Success {
                        version: version.map(Into::into),
                    },
                    wit::Outcome::ConnectFailed => O::ConnectFailed,
                    wit::Outcome::StarttlsNotOffered => O::StarttlsNotOffered,
                    wit::Outcome::StarttlsRejected(code) => O::StarttlsRejected { code },
                    wit::Outcome::TlsAlert(a) => O::TlsAlert(a.into()),
                    wit::Outcome::CertificateError(e) => O::CertificateError(e.into()),
                    wit::Outcome::HandshakeTimeout => O::HandshakeTimeout,
                    wit::Outcome::ConnectionReset => O::ConnectionReset,
                    wit::Outcome::PostHandshakeFailure => O::PostHandshakeFailure,
                    wit::Outcome::PolicyLookupFailed => O::PolicyLookupFailed,
                }
            }
        }

        impl ::core::convert::From<&$crate::__core::AttemptReport> for wit::AttemptReport {
            fn from(r: &$crate::__core::AttemptReport) -> Self {
                Self {
                    tier: r.tier.into(),
                    outcome: r.outcome.into(),
                }
            }
        }

        impl ::core::convert::From<wit::AttemptReport> for $crate::__core::AttemptReport {
            fn from(r: wit::AttemptReport) -> Self {
                Self {
                    tier: r.tier.into(),
                    outcome: r.outcome.into(),
                }
            }
        }

        /// The RFC 8460 result types and their WIT flags, in one table for both directions.
        fn tls_rpt_flags() -> [($crate::__core::TlsRptResult, wit::TlsRptResults); 11] {
            use $crate::__core::TlsRptResult as R;
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

        impl ::core::convert::From<$crate::__core::HistoryError> for wit::HistoryError {
            fn from(e: $crate::__core::HistoryError) -> Self {
                use $crate::__core as core_types;
                match e {
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
                }
            }
        }

        impl ::core::convert::From<&$crate::__core::Decision> for wit::Decision {
            // wit-bindgen's flags (without its bitflags feature) have `|` but no `|=`.
            #[allow(clippy::assign_op_pattern)]
            fn from(d: &$crate::__core::Decision) -> Self {
                use $crate::__core as core_types;
                let action = match d.action {
                    core_types::Action::Attempt {
                        tier,
                        tls,
                        delay_secs,
                    } => wit::Action::Attempt(wit::Attempt {
                        tier: tier.into(),
                        tls: tls.map(|t| wit::TlsParameters {
                            min_version: t.min_version.into(),
                            max_version: t.max_version.into(),
                            ciphers: t.ciphers.into(),
                            security_level: t.security_level,
                            verification: t.verification.into(),
                            fallback_scsv: t.fallback_scsv,
                        }),
                        delay_secs,
                    }),
                    core_types::Action::Defer { retry_after_secs } => {
                        wit::Action::Defer(retry_after_secs)
                    }
                    core_types::Action::Bounce { status } => {
                        wit::Action::Bounce(wit::EnhancedStatus {
                            class: status.class,
                            subject: status.subject,
                            detail: status.detail,
                        })
                    }
                    core_types::Action::Done => wit::Action::Done,
                };
                let mut report = wit::TlsRptResults::empty();
                for (result, flag) in tls_rpt_flags() {
                    if d.report.contains(result) {
                        report = report | flag;
                    }
                }
                let history_error = d.history_error.map(wit::HistoryError::from);
                Self {
                    action,
                    reason: d.reason.into(),
                    report,
                    history: d.history.as_bytes().to_vec(),
                    history_error,
                }
            }
        }

        impl ::core::convert::TryFrom<wit::Decision> for $crate::__core::Decision {
            type Error = $crate::__core::HistoryError;

            /// Fails when the history the component returned is longer than any engine writes.
            fn try_from(d: wit::Decision) -> Result<Self, Self::Error> {
                use $crate::__core as core_types;
                let action = match d.action {
                    wit::Action::Attempt(a) => core_types::Action::Attempt {
                        tier: a.tier.into(),
                        tls: a.tls.map(|t| core_types::TlsParameters {
                            min_version: t.min_version.into(),
                            max_version: t.max_version.into(),
                            ciphers: t.ciphers.into(),
                            security_level: t.security_level,
                            verification: t.verification.into(),
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
                for (result, flag) in tls_rpt_flags() {
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
                Ok(Self {
                    action,
                    reason: d.reason.into(),
                    report,
                    history: core_types::HistoryBlob::from_slice(&d.history)?,
                    history_error,
                })
            }
        }
    };
}

/// One enum mapped both ways, variant for variant (an implementation detail of [`wit_mapping!`]).
#[doc(hidden)]
#[macro_export]
macro_rules! __wit_enum_both_ways {
    ($core:ty, $wit:ty, [$($variant:ident),* $(,)?]) => {
        impl ::core::convert::From<$core> for $wit {
            fn from(value: $core) -> Self {
                match value { $(<$core>::$variant => Self::$variant,)* }
            }
        }
        impl ::core::convert::From<$wit> for $core {
            fn from(value: $wit) -> Self {
                match value { $(<$wit>::$variant => Self::$variant,)* }
            }
        }
    };
}
