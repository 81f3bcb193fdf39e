use std::path::Path;

use policy_core::Action;
use tlsfallback_testkit::peers::{LocalPeer, PeerKind};

use crate::attempts::identity;
use crate::util::{decide, run};

// The hostile components of the workspace tests, built from the same source (this binary uses
// a few of them).
#[path = "../../../tests/tests/plugins/hostile.rs"]
#[allow(dead_code)]
mod hostile;

const REQUEST: &str = r#"{"peer":"mx.example.net","now":1767225600}"#;

fn write(dir: &Path, name: &str, bytes: &[u8]) -> String {
    let path = dir.join(name);
    std::fs::write(&path, bytes).unwrap();
    path.to_str().unwrap().to_owned()
}

fn trap_plugin(dir: &Path) -> String {
    write(
        dir,
        "trap.wasm",
        &hostile::component(&hostile::Behaviour::Trap, hostile::VERSION),
    )
}

#[test]
fn a_trapping_plugin_falls_back_to_the_built_in_engine_on_every_line() {
    let dir = tempfile::tempdir().unwrap();
    let plugin = trap_plugin(dir.path());
    let input = format!("{REQUEST}\n{REQUEST}\n");
    let answers = decide(
        &[
            "--policy-component",
            &plugin,
            "--fail-mode",
            "fallback-builtin",
        ],
        &input,
    );
    let native = decide(&["--engine", "native"], &input);
    assert_eq!(answers.len(), 2);
    for (mut answer, expected) in answers.into_iter().zip(native) {
        let failure = answer["plugin_failure"].as_str().unwrap().to_owned();
        assert!(failure.contains("trapped"), "{failure}");
        assert!(failure.contains("fallback-builtin"), "{failure}");
        answer.as_object_mut().unwrap().remove("plugin_failure");
        assert_eq!(answer, expected);
    }
}

#[test]
fn the_policy_file_names_the_plugin_relative_to_itself_and_fails_closed_by_default() {
    let dir = tempfile::tempdir().unwrap();
    trap_plugin(dir.path());
    let policy = write(
        dir.path(),
        "policy.toml",
        b"[policy]\nretry_after_secs = 1234\n\n[plugin]\ncomponent = \"trap.wasm\"\n",
    );
    let output = run(&["decide", "--policy", &policy], &format!("{REQUEST}\n"));
    assert!(output.status.success());
    let answer: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(answer["action"], "defer");
    assert_eq!(answer["retry_after_secs"], 1234);
    assert_eq!(answer["reason"], "policy-lookup-failed");
    assert!(
        answer["plugin_failure"]
            .as_str()
            .unwrap()
            .contains("fail-closed"),
        "{answer}"
    );
    // The cause is logged too, naming the component.
    let log = String::from_utf8_lossy(&output.stderr);
    assert!(
        log.contains("trap.wasm") && log.contains("trapped"),
        "{log}"
    );
}

#[test]
fn the_built_in_component_loaded_as_a_plugin_decides_alike_and_is_cached() {
    let dir = tempfile::tempdir().unwrap();
    let exported = dir.path().join("builtin.wasm");
    let exported = exported.to_str().unwrap();
    assert!(run(&["export-component", exported], "").status.success());
    let cache = dir.path().join("cache");
    let input = format!("{REQUEST}\n");
    let as_plugin = decide(
        &[
            "--policy-component",
            exported,
            "--component-cache",
            cache.to_str().unwrap(),
        ],
        &input,
    );
    assert_eq!(as_plugin, decide(&[], &input));
    let cached: Vec<_> = std::fs::read_dir(&cache).unwrap().collect();
    assert_eq!(cached.len(), 1, "one precompiled artifact");
}

#[test]
fn a_plugin_that_cannot_be_loaded_stops_the_host_with_the_reason() {
    let dir = tempfile::tempdir().unwrap();
    let wasi = write(dir.path(), "wasi.wasm", &hostile::importing_wasi());
    let old = write(
        dir.path(),
        "old.wasm",
        &hostile::component(&hostile::Behaviour::Answer(Action::Done), "0.1.0"),
    );
    let missing = dir.path().join("missing.wasm");
    for (args, expected) in [
        (
            vec!["decide", "--policy-component", &wasi],
            "must import nothing",
        ),
        (
            vec!["decide", "--policy-component", &old],
            "tlsfallback:policy/engine@0.1.0",
        ),
        (
            vec!["decide", "--policy-component", missing.to_str().unwrap()],
            "missing.wasm",
        ),
        (
            vec!["decide", "--engine", "native", "--policy-component", &wasi],
            "--engine native",
        ),
    ] {
        let output = run(&args, &format!("{REQUEST}\n"));
        assert!(!output.status.success(), "{args:?}");
        let error = String::from_utf8_lossy(&output.stderr);
        assert!(error.contains(expected), "{args:?}: {error}");
        assert!(output.stdout.is_empty(), "{args:?}");
    }
    let options_only = write(
        dir.path(),
        "p.toml",
        b"[plugin]\nfail_mode = \"fail-closed\"\n",
    );
    let output = run(&["decide", "--policy", &options_only], "");
    assert!(String::from_utf8_lossy(&output.stderr).contains("no `component`"));
}

fn deliver_with(plugin: &str, fail_mode: &str, peer: &LocalPeer, db: &Path) -> (i32, String) {
    let output = run(
        &[
            &crate::util::DELIVER_TO_MX[..],
            &[
                &format!("127.0.0.1:{}", peer.address.port()),
                "--db",
                db.to_str().unwrap(),
                "--policy-component",
                plugin,
                "--fail-mode",
                fail_mode,
            ],
        ]
        .concat(),
        "Subject: plugin\n\nbody\n",
    );
    (
        output.status.code().unwrap(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[test]
fn a_broken_plugin_keeps_the_message_fail_closed_and_delivers_it_with_the_fallback() {
    let dir = tempfile::tempdir().unwrap();
    let plugin = trap_plugin(dir.path());
    let peer = LocalPeer::start(PeerKind::Modern, identity()).unwrap();
    let db = dir.path().join("peers.sqlite3");

    let (code, log) = deliver_with(&plugin, "fail-closed", &peer, &db);
    assert_eq!(code, 75, "deferred, the caller keeps the message: {log}");
    assert!(log.contains("policy-lookup-failed"), "{log}");
    assert!(log.contains("trapped"), "{log}");
    assert!(peer.messages().is_empty());

    let (code, log) = deliver_with(&plugin, "fallback-builtin", &peer, &db);
    assert_eq!(code, 0, "{log}");
    assert!(log.contains("tier=modern-tls outcome=success"), "{log}");
    assert_eq!(peer.messages().len(), 1);
}

#[test]
fn plugin_check_compares_with_the_built_in_engine_and_counts_what_the_guard_stopped() {
    let dir = tempfile::tempdir().unwrap();
    let exported = dir.path().join("builtin.wasm");
    let exported = exported.to_str().unwrap();
    assert!(run(&["export-component", exported], "").status.success());
    let report = crate::util::stdout_of(&["plugin", "check", exported, "--days", "3"], "");
    assert!(report.contains("imports nothing"), "{report}");
    for preset in policy_core::sim::Preset::ALL {
        assert!(report.contains(preset.name()), "{report}");
    }
    assert!(report.contains(" 0 refused, 0 failed calls"), "{report}");
    assert!(report.contains("cost per decision"), "{report}");

    let trap = trap_plugin(dir.path());
    let report = crate::util::stdout_of(&["plugin", "check", &trap, "--days", "3"], "");
    let guard_line = report.lines().find(|l| l.starts_with("guard:")).unwrap();
    assert!(!guard_line.contains(" 0 failed calls"), "{report}");
}
