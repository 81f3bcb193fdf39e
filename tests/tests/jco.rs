use std::path::Path;
use std::process::Command;

use policy_core::{
    Action, AttemptReport, DeliveryContext, Outcome, Policy, Tier, TlsAlert, TlsVersion, decide,
};
use tlsfallback_engine::component::EMBEDDED_COMPONENT;

/// A simulated peer: what it answers at each tier.
type Peer = fn(Tier) -> Outcome;

/// The simulated peers by name; the same table as benchmarks/js/dance.js.
fn peers() -> [(&'static str, Peer); 3] {
    [
        ("modern", |_| Outcome::Success {
            version: Some(TlsVersion::Tls1_3),
        }),
        ("legacy-only", |tier| match tier {
            Tier::LegacyTls => Outcome::Success {
                version: Some(TlsVersion::Tls1_0),
            },
            Tier::Cleartext => Outcome::Success { version: None },
            _ => Outcome::TlsAlert(TlsAlert::ProtocolVersion),
        }),
        ("no-starttls", |tier| match tier {
            Tier::Cleartext => Outcome::Success { version: None },
            _ => Outcome::StarttlsNotOffered,
        }),
    ]
}

/// The lines dance.js prints, computed with native policy-core.
fn native_lines() -> Vec<String> {
    let mut lines = Vec::new();
    for (name, outcome_at) in peers() {
        let mut history: Option<Vec<u8>> = None;
        for day in 0..3u64 {
            let now = 1_767_225_600 + day * 86_400;
            let mut last = None;
            for _ in 0..8 {
                let decision = decide(
                    &Policy::default(),
                    &DeliveryContext::default(),
                    history.as_deref(),
                    last.as_ref(),
                    now,
                );
                let bytes = decision.history.as_bytes();
                history = Some(bytes.to_vec());
                let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
                let tier = match decision.action {
                    Action::Attempt { tier, .. } => Some(tier),
                    _ => None,
                };
                lines.push(format!(
                    "{name} {} {} {} {hex}",
                    decision.action.name(),
                    tier.map_or("-", Tier::name),
                    decision.reason.name(),
                ));
                let Some(tier) = tier else { break };
                last = Some(AttemptReport {
                    tier,
                    outcome: outcome_at(tier),
                });
            }
        }
    }
    lines
}

fn run(command: &mut Command) -> String {
    let output = command
        .output()
        .expect("node and npx are installed by scripts/setup");
    assert!(
        output.status.success(),
        "{command:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).unwrap()
}

#[test]
fn the_jco_transpiled_component_decides_in_node_exactly_like_native_policy_core() {
    let js = Path::new(env!("CARGO_MANIFEST_DIR")).join("../benchmarks/js");
    let dir = tempfile::tempdir().unwrap();
    let wasm = dir.path().join("policy_engine.wasm");
    std::fs::write(&wasm, EMBEDDED_COMPONENT).unwrap();
    let out = dir.path().join("jco");
    run(Command::new("npx")
        .current_dir(&js)
        .args(["jco", "transpile", "-q", "--name", "policy_engine", "-o"])
        .arg(&out)
        .arg(&wasm));
    let from_node = run(Command::new("node")
        .current_dir(&js)
        .arg("dance.js")
        .arg(&out));
    let from_node: Vec<&str> = from_node.lines().collect();
    let native = native_lines();
    assert!(native.len() > 12, "{native:?}");
    assert_eq!(from_node, native);
}
