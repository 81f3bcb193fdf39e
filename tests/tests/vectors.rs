use base64::Engine as _;
use serde_json::{Value, json};
use tlsfallback_engine::component::PolicyComponent;
use tlsfallback_engine::config::PolicyFile;
use tlsfallback_engine::decider::NativeEngine;

use crate::differential::{PLAIN_OUTCOMES, respond};

/// The shared vectors every embedding kit checks (kits/vectors/decide.jsonl).
const VECTORS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../kits/vectors/decide.jsonl");
/// What a kit needs besides the component to write the JSON response of `tlsfallback decide`:
/// the interface, every case of every WIT enum, flags and variant (generated from
/// `wit/policy.wit`, see `names.rs`), the wire names of the TLS versions, the default policy, each
/// reason's explanation, each history error's message.
const CONTRACT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../kits/vectors/contract.json");
/// The fleet's history merge, for every pair of the histories above (kits/vectors/merge.jsonl):
/// what `fleet.adopt-shared` and `fleet.blob-to-share` answer.
const MERGE_VECTORS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../kits/vectors/merge.jsonl");
const NOW: u64 = 1_767_225_600;
const DAY: u64 = 86_400;

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// History blobs a host meets: real ones made by the engine, and corrupt ones.
fn histories() -> Vec<(&'static str, Option<String>)> {
    use policy_core::{
        AttemptReport, DeliveryContext, Outcome, Policy, Tier, TlsAlert, TlsVersion, decide,
    };
    let policy = Policy::default();
    let context = DeliveryContext::default();
    let run = |steps: &[AttemptReport]| {
        let mut history = decide(&policy, &context, None, None, NOW - DAY).history;
        for step in steps {
            history = decide(
                &policy,
                &context,
                Some(history.as_bytes()),
                Some(step),
                NOW - DAY,
            )
            .history;
        }
        history.as_bytes().to_vec()
    };
    let report = |tier, outcome| AttemptReport { tier, outcome };
    let pinned = run(&[report(
        Tier::ModernTls,
        Outcome::Success {
            version: Some(TlsVersion::Tls1_3),
        },
    )]);
    let legacy = run(&[
        report(
            Tier::ModernTls,
            Outcome::TlsAlert(TlsAlert::ProtocolVersion),
        ),
        report(
            Tier::LegacyTls,
            Outcome::Success {
                version: Some(TlsVersion::Tls1_0),
            },
        ),
    ]);
    let cleartext = run(&[
        report(Tier::ModernTls, Outcome::StarttlsNotOffered),
        report(Tier::Cleartext, Outcome::Success { version: None }),
    ]);
    let mid_dance = run(&[report(
        Tier::ModernTls,
        Outcome::TlsAlert(TlsAlert::ProtocolVersion),
    )]);
    let flaky = run(&[report(Tier::ModernTls, Outcome::ConnectionReset)]);
    let mut trailing = pinned.clone();
    trailing.push(0);
    vec![
        ("new-peer", None),
        ("pinned-modern", Some(b64(&pinned))),
        ("remembered-legacy", Some(b64(&legacy))),
        ("remembered-cleartext", Some(b64(&cleartext))),
        ("mid-dance-after-alert", Some(b64(&mid_dance))),
        ("after-a-reset", Some(b64(&flaky))),
        ("corrupt-empty", Some(String::new())),
        ("corrupt-unknown-version", Some(b64(&[9, 0, 0]))),
        ("corrupt-truncated", Some(b64(&pinned[..3]))),
        ("corrupt-trailing-bytes", Some(b64(&trailing))),
        ("corrupt-too-long", Some(b64(&[1; 65]))),
        (
            "corrupt-malformed",
            Some(b64(&[1, 7, 7, 7, 7, 7, 7, 7, 7, 7])),
        ),
    ]
}

/// Every outcome with each of its details, as the `last` object of a request.
fn outcomes() -> Vec<(String, Value)> {
    let mut all = vec![
        (
            "success-cleartext".to_owned(),
            json!({"outcome": "success"}),
        ),
        (
            "success-tlsv1".to_owned(),
            json!({"outcome": "success", "version": "TLSv1", "cipher": "ECDHE-RSA-AES256-SHA"}),
        ),
        (
            "success-tlsv1.2".to_owned(),
            json!({"outcome": "success", "version": "TLSv1.2"}),
        ),
        (
            "success-tlsv1.3".to_owned(),
            json!({"outcome": "success", "version": "TLSv1.3", "cipher": "TLS_AES_256_GCM_SHA384"}),
        ),
        (
            "starttls-rejected-454".to_owned(),
            json!({"outcome": "starttls-rejected", "code": 454}),
        ),
        (
            "starttls-rejected-554".to_owned(),
            json!({"outcome": "starttls-rejected", "code": 554}),
        ),
    ];
    for plain in PLAIN_OUTCOMES {
        all.push((plain.to_owned(), json!({"outcome": plain})));
    }
    for alert in [
        "protocol-version",
        "handshake-failure",
        "insufficient-security",
        "inappropriate-fallback",
        "other",
    ] {
        all.push((
            format!("tls-alert-{alert}"),
            json!({"outcome": "tls-alert", "alert": alert}),
        ));
    }
    for error in ["expired", "untrusted", "name-mismatch", "dane-mismatch"] {
        all.push((
            format!("certificate-error-{error}"),
            json!({"outcome": "certificate-error", "error": error}),
        ));
    }
    all
}

const TIERS: [&str; 4] = ["authenticated-tls", "modern-tls", "legacy-tls", "cleartext"];
const PROFILES: [&str; 5] = [
    "opportunistic",
    "mandatory",
    "authenticated-only",
    "no-fallback",
    "browser-style",
];

fn contexts() -> Vec<(&'static str, Value)> {
    vec![
        ("no-context", json!({})),
        ("dane-usable", json!({"dane": "usable"})),
        ("dane-unusable", json!({"dane": "unusable"})),
        ("dane-lookup-failed", json!({"dane": "lookup-failed"})),
        ("mta-sts-enforce", json!({"mta_sts": "enforce"})),
        ("mta-sts-testing", json!({"mta_sts": "testing"})),
        ("mta-sts-fetch-failed", json!({"mta_sts": "fetch-failed"})),
        ("requiretls", json!({"requiretls": true})),
        ("tls-required-no", json!({"tls_required_no": true})),
        ("sasl", json!({"sasl": true})),
        (
            "requiretls-and-dane",
            json!({"requiretls": true, "dane": "usable"}),
        ),
        (
            "tls-required-no-and-mta-sts",
            json!({"tls_required_no": true, "mta_sts": "enforce"}),
        ),
    ]
}

fn request(
    now: u64,
    history: &Option<String>,
    last: Option<(&str, &Value)>,
    context: &Value,
    policy: &Value,
) -> Value {
    let last = last.map(|(tier, outcome)| {
        let mut object = outcome.clone();
        object["tier"] = json!(tier);
        object
    });
    json!({"peer": "mx.example.net", "now": now, "history": history, "last": last, "context": context, "policy": policy})
}

/// The vectors' requests, named; deterministic.
fn requests() -> Vec<(String, Value)> {
    let histories = histories();
    let outcomes = outcomes();
    let none = json!({});
    let mut all = Vec::new();
    // Every history × every tier and outcome, and the start of a delivery.
    for (history_name, history) in &histories {
        all.push((
            format!("outcomes/{history_name}/start"),
            request(NOW, history, None, &none, &none),
        ));
        for tier in TIERS {
            for (outcome_name, outcome) in &outcomes {
                all.push((
                    format!("outcomes/{history_name}/{tier}/{outcome_name}"),
                    request(NOW, history, Some((tier, outcome)), &none, &none),
                ));
            }
        }
    }
    // Every profile × every context, on a few histories and outcomes.
    let steps = [
        ("start", None),
        (
            "modern-protocol-version",
            Some((
                "modern-tls",
                json!({"outcome": "tls-alert", "alert": "protocol-version"}),
            )),
        ),
        (
            "modern-no-starttls",
            Some(("modern-tls", json!({"outcome": "starttls-not-offered"}))),
        ),
        (
            "authenticated-untrusted",
            Some((
                "authenticated-tls",
                json!({"outcome": "certificate-error", "error": "untrusted"}),
            )),
        ),
        (
            "legacy-connection-reset",
            Some(("legacy-tls", json!({"outcome": "connection-reset"}))),
        ),
    ];
    for profile in PROFILES {
        let policy = json!({"profile": profile});
        for (context_name, context) in contexts() {
            for (history_name, history) in histories.iter().take(3) {
                for (step_name, step) in &steps {
                    all.push((
                        format!("profiles/{profile}/{context_name}/{history_name}/{step_name}"),
                        request(
                            NOW,
                            history,
                            step.as_ref().map(|(t, o)| (*t, o)),
                            &context,
                            &policy,
                        ),
                    ));
                }
            }
        }
    }
    // Each policy input on its own.
    let inputs = [
        ("no-legacy", json!({"allow_legacy_tls": false})),
        ("no-cleartext", json!({"allow_cleartext": false})),
        (
            "no-legacy-no-cleartext",
            json!({"allow_legacy_tls": false, "allow_cleartext": false}),
        ),
        ("step-down-delay-0", json!({"step_down_delay_secs": 0})),
        ("step-down-delay-60", json!({"step_down_delay_secs": 60})),
        ("reprobe-1s", json!({"reprobe_interval_secs": 1})),
        ("no-pin", json!({"pin_duration_secs": 0})),
        (
            "transient-threshold-1",
            json!({"transient_failure_threshold": 1}),
        ),
        ("retry-after-60", json!({"retry_after_secs": 60})),
    ];
    for (input_name, policy) in &inputs {
        for (history_name, history) in histories.iter().take(6) {
            for (step_name, step) in &steps {
                all.push((
                    format!("inputs/{input_name}/{history_name}/{step_name}"),
                    request(
                        NOW,
                        history,
                        step.as_ref().map(|(t, o)| (*t, o)),
                        &none,
                        policy,
                    ),
                ));
            }
        }
    }
    // Time: within and past the re-probe interval and the pin.
    for (label, later) in [
        ("next-day", DAY),
        ("after-8-days", 8 * DAY),
        ("after-31-days", 31 * DAY),
    ] {
        for (history_name, history) in histories.iter().take(6) {
            for (step_name, step) in &steps[..3] {
                all.push((
                    format!("time/{label}/{history_name}/{step_name}"),
                    request(
                        NOW + later,
                        history,
                        step.as_ref().map(|(t, o)| (*t, o)),
                        &none,
                        &none,
                    ),
                ));
            }
        }
    }
    all
}

/// The vector file as the native engine makes it: one `{"name", "request", "response"}` a line,
/// the response exactly as `tlsfallback decide` writes it (so that a C test can compare bytes).
fn generate() -> String {
    let policy_file = PolicyFile::default();
    let mut out = String::new();
    for (name, request) in requests() {
        let line = serde_json::to_string(&request).unwrap();
        let response = respond(&mut NativeEngine, &policy_file, &line);
        out.push_str(&format!(
            "{{\"name\":{},\"request\":{line},\"response\":{response}}}\n",
            serde_json::to_string(&name).unwrap()
        ));
    }
    out
}

/// One line per (local, shared) pair of [`histories`]: `adopt` (absent when there is no shared
/// copy to adopt) and `share` (absent when there is no local history to share), each
/// `{"history": base64}` or `{"error": message}`.
fn merge_vectors() -> String {
    let blob = |text: &Option<String>| {
        text.as_ref().map(|text| {
            base64::engine::general_purpose::STANDARD
                .decode(text)
                .unwrap()
        })
    };
    let answer = |result: Result<policy_core::HistoryBlob, policy_core::HistoryError>| match result
    {
        Ok(history) => json!({ "history": b64(history.as_bytes()) }),
        Err(error) => json!({ "error": error.to_string() }),
    };
    let mut out = String::new();
    for (local_name, local) in histories() {
        for (shared_name, shared) in histories() {
            let (local_blob, shared_blob) = (blob(&local), blob(&shared));
            let mut line = json!({
                "name": format!("{local_name}+{shared_name}"),
                "local": local,
                "shared": shared,
            });
            if let Some(shared) = &shared_blob {
                line["adopt"] = answer(policy_core::adopt_shared(local_blob.as_deref(), shared));
            }
            if let Some(local) = &local_blob {
                line["share"] = answer(policy_core::blob_to_share(local, shared_blob.as_deref()));
            }
            out.push_str(&serde_json::to_string(&line).unwrap());
            out.push('\n');
        }
    }
    out
}

/// The fleet's protocol around the merge, from the Rust host's constants: the key of a peer's
/// shared copy, its fields, the compare-and-set script, how many rounds a write tries, the
/// shortest TTL of a copy.
fn fleet_protocol() -> Value {
    use tlsfallback_mta::fleet;
    json!({
        "interface": crate::names::wit().fleet_interface,
        "key_prefix": fleet::KEY_PREFIX,
        "key_suffix": fleet::KEY_SUFFIX,
        "version_field": fleet::VERSION_FIELD,
        "blob_field": fleet::BLOB_FIELD,
        "compare_and_set": fleet::COMPARE_AND_SET_SCRIPT,
        "compare_and_set_rounds": fleet::CAS_ROUNDS,
        "shortest_key_ttl_secs": fleet::SHORTEST_KEY_TTL.as_secs(),
        "default_budget_ms": u64::try_from(fleet::DEFAULT_BUDGET.as_millis()).unwrap(),
        "default_cache_ttl_ms": u64::try_from(fleet::DEFAULT_CACHE_TTL.as_millis()).unwrap(),
    })
}

fn contract() -> String {
    use policy_core::{HistoryError, Policy, Reason};
    let policy = Policy::DEFAULT;
    let explanations: serde_json::Map<String, Value> = Reason::ALL
        .iter()
        .map(|r| (r.name().to_owned(), json!(r.explanation())))
        .collect();
    // Messages with their number as {0}, for the errors that carry one.
    let errors = [
        HistoryError::Empty,
        HistoryError::TooLong(1_234_567),
        HistoryError::UnsupportedVersion(123),
        HistoryError::Truncated,
        HistoryError::Malformed,
        HistoryError::TrailingBytes(1_234_567),
    ];
    let history_errors: serde_json::Map<String, Value> = errors
        .iter()
        .map(|e| {
            let text = e
                .to_string()
                .replace("1234567", "{0}")
                .replace("version 123,", "version {0},");
            (e.name().to_owned(), json!(text))
        })
        .collect();
    let wit = crate::names::wit();
    let contract = json!({
        "interface": wit.interface,
        "wit": wit.contract_section(),
        "tls_version_names": crate::names::tls_version_names(),
        "default_policy": {
            "profile": policy.profile.name(),
            "allow_legacy_tls": policy.allow_legacy_tls,
            "allow_cleartext": policy.allow_cleartext,
            "step_down_delay_secs": policy.step_down_delay_secs,
            "reprobe_interval_secs": policy.reprobe_interval_secs,
            "pin_duration_secs": policy.pin_duration_secs,
            "transient_failure_threshold": policy.transient_failure_threshold,
            "retry_after_secs": policy.retry_after_secs,
        },
        "explanations": explanations,
        "history_errors": history_errors,
        "fleet": fleet_protocol(),
    });
    serde_json::to_string_pretty(&contract).unwrap() + "\n"
}

#[test]
fn the_shared_vectors_are_what_the_native_engine_decides() {
    let fresh = generate();
    let fresh_contract = contract();
    let fresh_merge = merge_vectors();
    if std::env::var_os("UPDATE_VECTORS").is_some() {
        std::fs::write(VECTORS, &fresh).unwrap();
        std::fs::write(CONTRACT, &fresh_contract).unwrap();
        std::fs::write(MERGE_VECTORS, &fresh_merge).unwrap();
    }
    let stored = std::fs::read_to_string(VECTORS).unwrap_or_default();
    let stored_contract = std::fs::read_to_string(CONTRACT).unwrap_or_default();
    let stored_merge = std::fs::read_to_string(MERGE_VECTORS).unwrap_or_default();
    assert!(
        stored == fresh && stored_contract == fresh_contract && stored_merge == fresh_merge,
        "kits/vectors/ is not what the engine decides and wit/policy.wit says: regenerate it \
         with UPDATE_VECTORS=1 cargo test -p tlsfallback-tests vectors, and review the diff"
    );
    let names: std::collections::BTreeSet<_> = fresh
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap()["name"].to_string())
        .collect();
    assert_eq!(names.len(), fresh.lines().count(), "names are unique");
}

#[test]
fn the_component_answers_every_vector_byte_for_byte() {
    let policy_file = PolicyFile::default();
    let mut component = PolicyComponent::builtin().unwrap();
    let stored = std::fs::read_to_string(VECTORS).unwrap();
    for line in stored.lines() {
        let vector: Value = serde_json::from_str(line).unwrap();
        let request = serde_json::to_string(&vector["request"]).unwrap();
        let response: Value =
            serde_json::from_str(&respond(&mut component, &policy_file, &request)).unwrap();
        assert_eq!(response, vector["response"], "{}", vector["name"]);
    }
}
