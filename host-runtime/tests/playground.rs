use crate::util::run;

#[test]
fn a_directory_that_is_not_a_built_playground_is_refused_with_the_way_to_build_it() {
    let empty = tempfile::tempdir().expect("a temporary directory");
    let dir = empty.path().to_str().expect("a UTF-8 path");
    let output = run(&["playground", "--dir", dir, "--listen", "127.0.0.1:0"], "");
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("is not a built playground")
            && stderr.contains("vendor/policy/policy_engine.js")
            && stderr.contains("scripts/playground"),
        "{stderr}"
    );
}

#[test]
fn listen_must_be_an_address() {
    let output = run(&["playground", "--listen", "localhost"], "");
    assert!(!output.status.success());
    assert!(
        String::from_utf8_lossy(&output.stderr).contains("--listen"),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
}
