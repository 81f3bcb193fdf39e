use base64::Engine as _;
use serde_json::{Value, json};
use tlsfallback_engine::answer::{Buffers, answer};
use tlsfallback_engine::component::{CallLimits, ComponentConfig, PolicyComponent};
use tlsfallback_engine::config::PolicyFile;
use tlsfallback_engine::decider::{DecisionEngine, NativeEngine};

/// One response line from `engine` for `request`, as `tlsfallback decide` would write it.
pub(crate) fn respond(
    engine: &mut dyn DecisionEngine,
    policy_file: &PolicyFile,
    request: &str,
) -> String {
    let mut output = Vec::new();
    let answered = answer(
        engine,
        policy_file,
        request.as_bytes(),
        &mut Buffers::default(),
        &mut output,
    );
    assert!(answered.is_ok(), "{answered:?} for {request}");
    String::from_utf8(output).unwrap()
}

/// The outcomes that carry no detail, by their wire names.
pub(crate) const PLAIN_OUTCOMES: [&str; 6] = [
    "connect-failed",
    "starttls-not-offered",
    "handshake-timeout",
    "connection-reset",
    "post-handshake-failure",
    "policy-lookup-failed",
];

/// A small deterministic generator (xorshift64*): the differential run is the same every time.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
        items[self.below(items.len() as u64) as usize]
    }

    fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }
}

const TIERS: &[&str] = &["authenticated-tls", "modern-tls", "legacy-tls", "cleartext"];

fn random_last(rng: &mut Rng, tier: &str) -> Value {
    match rng.below(10) {
        0 => {
            let version = rng.pick(&["TLSv1", "TLSv1.1", "TLSv1.2", "TLSv1.3"]);
            json!({"tier": tier, "outcome": "success", "version": version, "cipher": "TLS_AES_128_GCM_SHA256"})
        }
        1 => json!({"tier": tier, "outcome": "starttls-rejected", "code": 400 + rng.below(200)}),
        2 | 3 => {
            let alert = rng.pick(&[
                "protocol-version",
                "handshake-failure",
                "insufficient-security",
                "inappropriate-fallback",
                "other",
            ]);
            json!({"tier": tier, "outcome": "tls-alert", "alert": alert})
        }
        4 => {
            let error = rng.pick(&["expired", "untrusted", "name-mismatch", "dane-mismatch"]);
            json!({"tier": tier, "outcome": "certificate-error", "error": error})
        }
        _ => {
            let outcome = rng.pick(&PLAIN_OUTCOMES);
            json!({"tier": tier, "outcome": outcome})
        }
    }
}

fn random_request(
    rng: &mut Rng,
    now: &mut u64,
    history: &mut Option<String>,
    tier: &mut String,
) -> String {
    *now += rng.below(3 * 86_400);
    if rng.chance(10) {
        let len = rng.below(70) as usize;
        let bytes: Vec<u8> = (0..len).map(|_| rng.next() as u8).collect();
        *history = Some(base64::engine::general_purpose::STANDARD.encode(bytes));
    } else if rng.chance(5) {
        *history = None;
    }
    let last = if rng.chance(30) {
        Value::Null
    } else {
        if rng.chance(20) {
            *tier = rng.pick(TIERS).to_owned();
        }
        random_last(rng, tier)
    };
    let context = json!({
        "dane": rng.pick(&["none", "none", "none", "usable", "unusable", "lookup-failed"]),
        "mta_sts": rng.pick(&["none", "none", "testing", "enforce", "fetch-failed"]),
        "requiretls": rng.chance(10),
        "tls_required_no": rng.chance(10),
        "sasl": rng.chance(10),
    });
    let policy = json!({
        "profile": rng.pick(&["opportunistic", "opportunistic", "mandatory", "authenticated-only", "no-fallback", "browser-style"]),
        "allow_legacy_tls": !rng.chance(15),
        "allow_cleartext": !rng.chance(15),
        "step_down_delay_secs": rng.below(30),
        "reprobe_interval_secs": rng.below(30 * 86_400),
        "pin_duration_secs": rng.below(60 * 86_400),
        "transient_failure_threshold": rng.below(5),
        "retry_after_secs": 1 + rng.below(3600),
    });
    json!({
        "peer": "mx.example.net",
        "now": *now,
        "history": history.clone(),
        "last": last,
        "context": context,
        "policy": policy,
    })
    .to_string()
}

#[test]
fn component_and_native_give_byte_identical_responses_on_10000_random_requests() {
    // The component three ways: one warm instance (the default), a fresh instance per call, and
    // with the sandbox limits on. Random policies make nearly every request configure a new
    // decider, so the warm instance also goes through dropping its deciders when it has too many.
    let mut warm = PolicyComponent::builtin().unwrap();
    let mut fresh =
        PolicyComponent::builtin_with(ComponentConfig::FRESH_INSTANCE_PER_CALL).unwrap();
    let mut limited =
        PolicyComponent::builtin_with(ComponentConfig::with_limits(CallLimits::default())).unwrap();
    let mut native = NativeEngine;
    let policy_file = PolicyFile::default();
    let mut rng = Rng(0x7e57_f00d);
    let mut now = 1_767_225_600;
    let mut history = None;
    let mut tier = "modern-tls".to_owned();
    let mut actions = std::collections::BTreeMap::<String, u32>::new();
    for i in 0..10_000 {
        let request = random_request(&mut rng, &mut now, &mut history, &mut tier);
        let from_native = respond(&mut native, &policy_file, &request);
        for (name, component) in [
            ("warm", &mut warm),
            ("fresh", &mut fresh),
            ("limited", &mut limited),
        ] {
            let from_component = respond(component, &policy_file, &request);
            assert_eq!(
                from_component, from_native,
                "{name}, request {i}: {request}"
            );
        }
        let response: Value = serde_json::from_str(&from_native).unwrap();
        history = response["history"].as_str().map(str::to_owned);
        if let Some(next) = response["tier"].as_str() {
            next.clone_into(&mut tier);
        }
        *actions
            .entry(format!("{}/{}", response["action"], response["reason"]))
            .or_default() += 1;
    }
    // The random requests reach every action and most reasons, or the comparison proves little.
    for action in ["attempt", "defer", "bounce", "done"] {
        assert!(
            actions.keys().any(|k| k.contains(action)),
            "no {action} among {actions:?}"
        );
    }
    assert!(
        actions.len() >= 20,
        "only {} action/reason pairs: {actions:?}",
        actions.len()
    );
}

#[test]
fn a_huge_garbage_history_gets_the_same_decision_from_the_component() {
    // 1 MiB does not fit in the guest's static heap: the guest must grow its memory, not trap.
    let history = vec![0xa5; 1 << 20];
    let expected = policy_core::decide(
        &Default::default(),
        &Default::default(),
        Some(&history),
        None,
        1_767_225_600,
    );
    assert_eq!(expected.reason, policy_core::Reason::HistoryUnreadable);
    let mut component = PolicyComponent::builtin().unwrap();
    for _ in 0..3 {
        let decision = component
            .decide(
                &Default::default(),
                &Default::default(),
                Some(&history),
                None,
                1_767_225_600,
            )
            .unwrap();
        assert_eq!(decision, expected);
    }
}
