use serde_json::{Value, json};

use crate::util::{decide, run, run_bytes, stdout_of};

fn request(now: u64, history: &Value, last: Value) -> String {
    json!({"peer": "mx.legacy.example", "now": now, "history": history, "last": last}).to_string()
}

#[test]
fn a_legacy_peer_is_danced_down_and_remembered_across_requests_in_one_process() {
    // One process, many requests: each response's history feeds the next request, like an MTA.
    let first = decide(
        &[],
        &(request(1_767_225_600, &Value::Null, Value::Null) + "\n"),
    );
    assert_eq!(first[0]["action"], "attempt");
    assert_eq!(first[0]["tier"], "modern-tls");
    assert_eq!(first[0]["delay_secs"], 0);
    assert_eq!(first[0]["reason"], "strongest-tier");
    assert_eq!(first[0]["tls"]["min_version"], "TLSv1.2");
    let alert = json!({"tier": "modern-tls", "outcome": "tls-alert", "alert": "protocol-version"});
    let second = decide(&[], &request(1_767_225_601, &first[0]["history"], alert));
    assert_eq!(second[0]["tier"], "legacy-tls");
    assert_eq!(second[0]["delay_secs"], 5);
    assert_eq!(second[0]["tls"]["security_level"], 0);
    assert_eq!(second[0]["tls"]["fallback_scsv"], true);
    assert_eq!(second[0]["report"], json!(["validation-failure"]));
    let success = json!({"tier": "legacy-tls", "outcome": "success", "version": "TLSv1", "cipher": "ECDHE-RSA-AES128-SHA"});
    let third = decide(&[], &request(1_767_225_607, &second[0]["history"], success));
    assert_eq!(third[0]["action"], "done");
    assert!(
        third[0].get("tier").is_none(),
        "detail keys only where they apply"
    );
    let next_day = decide(
        &[],
        &request(1_767_312_000, &third[0]["history"], Value::Null),
    );
    assert_eq!(next_day[0]["tier"], "legacy-tls");
    assert_eq!(next_day[0]["reason"], "remembered-tier");
    assert!(
        next_day[0]["explanation"]
            .as_str()
            .unwrap()
            .contains("remembered")
    );
}

#[test]
fn a_malformed_line_gets_an_error_naming_its_line_and_the_stream_goes_on() {
    let good = request(1_767_225_600, &Value::Null, Value::Null);
    let input = [
        good.as_str(),
        "{not json",
        "",
        r#"{"peer": "x", "now": 1, "colour": "blue"}"#,
        r#"{"peer": "x", "now": 1, "last": {"tier": "modern-tls", "outcome": "tls-alert"}}"#,
        r#"{"peer": "x", "now": 1, "last": {"tier": "modern-tls", "outcome": "success", "code": 454}}"#,
        r#"{"peer": "x", "now": 1, "last": {"tier": "wobbly-tls", "outcome": "success"}}"#,
        r#"{"peer": "x", "now": 1, "history": "%%%"}"#,
        r#"{"peer": "x", "now": 1, "context": {"dane": "maybe"}}"#,
        good.as_str(),
    ]
    .join("\n");
    let lines = decide(&[], &input);
    assert_eq!(lines.len(), 9, "one line per non-blank request: {lines:#?}");
    assert_eq!(lines[0]["action"], "attempt");
    let errors = &lines[1..8];
    let expected = [
        (2, "not a valid request"),
        (4, "colour"),
        (5, "tls-alert needs \"alert\""),
        (6, "\"code\" applies only to outcome starttls-rejected"),
        (7, "wobbly-tls"),
        (8, "base64"),
        (9, "maybe"),
    ];
    for (error, (line, text)) in errors.iter().zip(expected) {
        assert_eq!(error["line"], line, "{error}");
        assert!(error["error"].as_str().unwrap().contains(text), "{error}");
    }
    assert_eq!(lines[8]["action"], "attempt");
}

#[test]
fn a_corrupt_history_is_answered_as_an_unknown_peer_and_says_why() {
    let input = json!({"peer": "x", "now": 1_767_225_600, "history": "AQEB"}).to_string();
    let lines = decide(&[], &input);
    assert_eq!(lines[0]["action"], "attempt");
    assert_eq!(lines[0]["tier"], "modern-tls");
    assert_eq!(lines[0]["reason"], "history-unreadable");
    assert!(
        lines[0]["history_error"]
            .as_str()
            .unwrap()
            .contains("truncated")
    );
}

#[test]
fn the_native_and_component_engines_answer_identically() {
    let input = [
        request(1_767_225_600, &Value::Null, Value::Null),
        json!({"peer": "x", "now": 5, "context": {"requiretls": true},
               "last": {"tier": "authenticated-tls", "outcome": "starttls-not-offered"}})
        .to_string(),
    ]
    .join("\n");
    let component = decide(&["--engine", "component"], &input);
    let native = decide(&["--engine", "native"], &input);
    assert_eq!(component, native);
    assert_eq!(native[1]["action"], "bounce");
    assert_eq!(native[1]["status"], "5.7.10");
}

#[test]
fn the_policy_file_and_per_request_overrides_apply_per_destination() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("policy.toml");
    std::fs::write(
        &path,
        "[policy]\nstep_down_delay_secs = 9\n\n[[destination]]\npeer = \".bank.example\"\nprofile = \"mandatory\"\n",
    )
    .unwrap();
    let no_starttls = json!({"tier": "modern-tls", "outcome": "starttls-not-offered"});
    let ask = |peer: &str, policy: Value| {
        json!({"peer": peer, "now": 100, "last": no_starttls, "policy": policy}).to_string()
    };
    let input = [
        ask("mx.bank.example", json!({})),
        ask("mx.shop.example", json!({})),
        ask("mx.shop.example", json!({"allow_cleartext": false})),
    ]
    .join("\n");
    let lines = decide(&["--policy", path.to_str().unwrap()], &input);
    assert_eq!(lines[0]["action"], "defer", "mandatory: never cleartext");
    assert_eq!(lines[1]["tier"], "cleartext");
    assert_eq!(lines[1]["delay_secs"], 9);
    assert_eq!(lines[2]["action"], "defer");
}

#[test]
fn a_bad_policy_file_stops_with_a_clear_message() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("policy.toml");
    std::fs::write(&path, "[policy]\nprofile = \"paranoid\"\n").unwrap();
    let output = run(&["decide", "--policy", path.to_str().unwrap()], "");
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("policy.toml") && stderr.contains("paranoid"),
        "{stderr}"
    );
}

#[test]
fn export_component_writes_the_embedded_component() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("policy_engine.wasm");
    stdout_of(&["export-component", path.to_str().unwrap()], "");
    assert_eq!(
        std::fs::read(&path).unwrap(),
        tlsfallback_engine::component::EMBEDDED_COMPONENT
    );
}

#[test]
fn a_line_with_invalid_utf8_gets_an_error_line_and_the_stream_goes_on() {
    // The request reader works on bytes; a bad byte in one line must not end the run.
    let mut input = b"{\"peer\":\"mx\xff.example\",\"now\":1}\n".to_vec();
    input.extend_from_slice(b"{\"peer\":\"mx.example\",\"now\":1}\n");
    let output = run_bytes(&["decide"], &input);
    assert!(output.status.success());
    let lines: Vec<Value> = String::from_utf8(output.stdout)
        .unwrap()
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect();
    assert_eq!(lines[0]["line"], 1, "{lines:?}");
    assert!(
        lines[0]["error"]
            .as_str()
            .unwrap()
            .contains("not a valid request")
    );
    assert_eq!(lines[1]["action"], "attempt");
}

#[test]
fn decide_answers_each_request_before_the_next_arrives() {
    // An MTA running `decide` as a coprocess: one request, wait for its answer, send the next
    // with the history it returned. Answers that waited for more input (or the end of it) would
    // leave the MTA waiting for good; the timeout only bounds how long this test hangs then.
    use std::io::{BufRead as _, BufReader, Write as _};
    use std::process::{Command, Stdio};
    use std::sync::mpsc;
    use std::time::Duration;

    let mut child = Command::new(env!("CARGO_BIN_EXE_tlsfallback"))
        .arg("decide")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("the binary starts");
    let mut stdin = child.stdin.take().unwrap();
    let stdout = BufReader::new(child.stdout.take().unwrap());
    let (answers, inbox) = mpsc::channel();
    std::thread::spawn(move || {
        for line in stdout.lines().map_while(Result::ok) {
            if answers.send(line).is_err() {
                break;
            }
        }
    });
    let mut ask = |line: String| -> Value {
        stdin.write_all(line.as_bytes()).unwrap();
        stdin.write_all(b"\n").unwrap();
        stdin.flush().unwrap();
        let answer = inbox
            .recv_timeout(Duration::from_secs(60))
            .expect("an answer while stdin is still open");
        serde_json::from_str(&answer).unwrap()
    };
    let first = ask(request(1_767_225_600, &Value::Null, Value::Null));
    assert_eq!(first["tier"], "modern-tls");
    let alert = json!({"tier": "modern-tls", "outcome": "tls-alert", "alert": "protocol-version"});
    let second = ask(request(1_767_225_601, &first["history"], alert));
    assert_eq!(second["tier"], "legacy-tls", "{second}");
    // The end of the input ends the process.
    drop(stdin);
    assert!(child.wait().unwrap().success());
}

#[test]
fn overlong_decide_line_is_refused_and_the_stream_goes_on() {
    let good = request(1_767_225_600, &Value::Null, Value::Null);
    let limit = tlsfallback_engine::answer::MAX_LINE_LEN;
    // A request whose peer alone is over the limit, then a line of a few times the limit.
    let long_peer = json!({"peer": "x".repeat(limit), "now": 1}).to_string();
    let garbage = "y".repeat(3 * limit);
    let input = [good.as_str(), &long_peer, &garbage, good.as_str()].join("\n");
    let lines = decide(&[], &input);
    assert_eq!(lines.len(), 4, "one line per request");
    assert_eq!(lines[0]["action"], "attempt");
    for (error, line) in lines[1..3].iter().zip([2, 3]) {
        assert_eq!(error["line"], line, "{error}");
        let text = error["error"].as_str().unwrap();
        assert!(text.contains("line longer than 1048576 bytes"), "{text}");
    }
    assert_eq!(lines[3]["action"], "attempt");
}
