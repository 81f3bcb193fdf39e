use crate::util::{run, stdout_of};

#[test]
fn legacy_only_timeline_shows_the_dance_then_the_memory() {
    let out = stdout_of(&["simulate", "--preset", "legacy-only", "--days", "3"], "");
    let lines: Vec<&str> = out.lines().collect();
    assert!(lines[0].starts_with("== legacy-only"), "{out}");
    assert!(
        lines[1].contains("modern-tls ✗ alert protocol-version → legacy-tls +5s ✓ TLSv1 → done"),
        "{out}"
    );
    assert!(
        lines[2].contains("legacy-tls ✓ TLSv1 → done") && lines[2].contains("remembered-tier"),
        "{out}"
    );
    assert!(out.contains("12 messages: 12 delivered"), "{out}");
}

#[test]
fn stripping_attacker_timeline_shows_refusals_and_no_cleartext() {
    let out = stdout_of(
        &[
            "simulate",
            "--preset",
            "stripping-attacker",
            "--days",
            "6",
            "--engine",
            "native",
        ],
        "",
    );
    assert!(out.contains("(attacker on path)"), "{out}");
    assert!(out.contains("downgrade-refused-pinned"), "{out}");
    assert!(
        out.contains("attacker: 0 messages handed over in cleartext"),
        "{out}"
    );
    assert!(!out.contains("cleartext +"), "no step to cleartext: {out}");
}

#[test]
fn every_preset_runs_by_default_and_engines_agree() {
    let component = stdout_of(&["simulate", "--days", "5"], "");
    let native = stdout_of(&["simulate", "--days", "5", "--engine", "native"], "");
    assert_eq!(component, native);
    for preset in policy_core::sim::Preset::ALL {
        assert!(
            component.contains(&format!("== {}:", preset.name())),
            "{}",
            preset.name()
        );
    }
}

#[test]
fn an_unknown_preset_is_a_usage_error_listing_the_known_ones() {
    let output = run(&["simulate", "--preset", "sneaky"], "");
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("sneaky") && stderr.contains("legacy-only"),
        "{stderr}"
    );
}

#[test]
fn json_gives_one_object_per_preset_with_totals_and_reasons() {
    let out = stdout_of(
        &[
            "simulate",
            "--preset",
            "legacy-only",
            "--preset",
            "modern",
            "--days",
            "2",
            "--json",
        ],
        "",
    );
    let objects: Vec<serde_json::Value> = out
        .lines()
        .map(|line| serde_json::from_str(line).expect("one JSON object per line"))
        .collect();
    assert_eq!(objects.len(), 2, "{out}");
    let legacy = &objects[0];
    assert_eq!(legacy["preset"], "legacy-only");
    assert_eq!(legacy["summary"]["messages"], 8);
    assert_eq!(legacy["summary"]["delivered_by_tier"]["legacy-tls"], 8);
    let first = &legacy["deliveries"][0];
    assert_eq!(first["first_tier"], "modern-tls");
    assert_eq!(first["delivered_tier"], "legacy-tls");
    assert_eq!(
        first["reasons"],
        serde_json::json!(["strongest-tier", "stepped-down-after-alert", "delivered"])
    );
    assert_eq!(objects[1]["summary"]["delivered_by_tier"]["modern-tls"], 8);
}

#[test]
fn an_inverted_backoff_is_refused_with_a_clear_error_not_a_silent_default() {
    let output = run(
        &[
            "simulate",
            "--preset",
            "modern",
            "--minimal-backoff",
            "600",
            "--maximal-backoff",
            "300",
        ],
        "",
    );
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("maximal backoff (300 s) is below the minimal backoff (600 s)"),
        "{stderr}"
    );
}

fn json_of(args: &[&str]) -> serde_json::Value {
    let out = stdout_of(args, "");
    serde_json::from_str(out.trim()).expect("one JSON object")
}

#[test]
fn json_reports_the_queue_backoff_and_an_attack_month_as_a_few_blocks() {
    let month = json_of(&[
        "simulate",
        "--preset",
        "stripping-attacker",
        "--days",
        "30",
        "--engine",
        "native",
        "--json",
    ]);
    assert_eq!(
        month["backoff"],
        serde_json::json!({"minimal_secs": 300, "maximal_secs": 4000})
    );
    let tries = month["deliveries"].as_array().expect("deliveries").len();
    let blocks = month["blocks"].as_array().expect("blocks");
    assert!(
        tries > 5000 && blocks.len() < 40,
        "{tries} tries, {} blocks",
        blocks.len()
    );
    let counted: u64 = blocks
        .iter()
        .map(|b| b["count"].as_u64().expect("count"))
        .sum();
    assert_eq!(counted as usize, tries, "the blocks cover every try once");
}

#[test]
fn a_longer_maximal_backoff_flag_means_fewer_tries_against_the_attacker() {
    let args = |maximal: &'static str| {
        [
            "simulate",
            "--preset",
            "stripping-attacker",
            "--days",
            "30",
            "--engine",
            "native",
            "--json",
            "--maximal-backoff",
            maximal,
        ]
    };
    let postfix = json_of(&args("4000"));
    let patient = json_of(&args("14400"));
    let deferrals = |v: &serde_json::Value| v["summary"]["deferrals"].as_u64().expect("deferrals");
    assert!(deferrals(&patient) * 2 < deferrals(&postfix));
    assert_eq!(patient["backoff"]["maximal_secs"], 14400);
    assert_eq!(patient["summary"]["cleartext_to_attacker"], 0);
}
