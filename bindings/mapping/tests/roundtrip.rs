//! The mapping expanded over the host's generated types (wasmtime's `bindgen!`; the guest's are
//! the same shape): every case crosses and comes back.

#[allow(missing_docs, unreachable_pub, dead_code)]
mod generated {
    wasmtime::component::bindgen!({ path: "../../wit", world: "policy-engine" });
}

use generated::exports::tlsfallback::policy::engine as wit;

tlsfallback_wit_mapping::wit_mapping!();

use policy_core::{
    AttemptReport, CertificateError, Dane, Decision, DeliveryContext, HistoryError, MtaSts,
    Outcome, Policy, Profile, Reason, Tier, TlsAlert, TlsRptResult, TlsVersion, decide,
};

fn round_trip<C, W>(value: C) -> C
where
    C: Copy + Into<W>,
    W: Into<C>,
{
    let crossed: W = value.into();
    crossed.into()
}

#[test]
fn every_enum_case_maps_to_the_wit_and_back_to_itself() {
    for tier in Tier::STRONGEST_FIRST {
        assert_eq!(round_trip::<_, wit::Tier>(tier), tier);
    }
    for profile in Profile::ALL {
        assert_eq!(round_trip::<_, wit::Profile>(profile), profile);
    }
    for dane in Dane::ALL {
        assert_eq!(round_trip::<_, wit::Dane>(dane), dane);
    }
    for mta_sts in MtaSts::ALL {
        assert_eq!(round_trip::<_, wit::MtaSts>(mta_sts), mta_sts);
    }
    for alert in TlsAlert::ALL {
        assert_eq!(round_trip::<_, wit::TlsAlert>(alert), alert);
    }
    for error in CertificateError::ALL {
        assert_eq!(round_trip::<_, wit::CertificateError>(error), error);
    }
    for version in [
        TlsVersion::Tls1_0,
        TlsVersion::Tls1_1,
        TlsVersion::Tls1_2,
        TlsVersion::Tls1_3,
    ] {
        assert_eq!(round_trip::<_, wit::TlsVersion>(version), version);
    }
    for reason in Reason::ALL.iter().copied() {
        assert_eq!(round_trip::<_, wit::Reason>(reason), reason);
    }
}

#[test]
fn a_decision_with_every_report_flag_crosses_unchanged() {
    let policy = Policy::default();
    let context = DeliveryContext {
        dane: Dane::Usable,
        mta_sts: MtaSts::FetchFailed,
        requiretls: true,
        tls_required_no: false,
        sasl: true,
    };
    assert_eq!(
        DeliveryContext::from(wit::DeliveryContext::from(&context)),
        context
    );
    assert_eq!(Policy::from(wit::Policy::from(&policy)), policy);
    let report = AttemptReport {
        tier: Tier::AuthenticatedTls,
        outcome: Outcome::CertificateError(CertificateError::DaneMismatch),
    };
    assert_eq!(
        AttemptReport::from(wit::AttemptReport::from(&report)),
        report
    );
    let mut decision = decide(&policy, &context, None, Some(&report), 1_700_000_000);
    for result in TlsRptResult::ALL {
        decision.report.insert(result);
    }
    decision.history_error = Some(HistoryError::TrailingBytes(3));
    let back = Decision::try_from(wit::Decision::from(&decision)).unwrap();
    assert_eq!(back, decision);
}

#[test]
fn a_component_history_longer_than_any_engine_writes_is_refused() {
    let decision = decide(
        &Policy::default(),
        &DeliveryContext::default(),
        None,
        None,
        1_700_000_000,
    );
    let mut crossed = wit::Decision::from(&decision);
    crossed.history = vec![1; 65];
    assert_eq!(Decision::try_from(crossed), Err(HistoryError::TooLong(65)));
}
