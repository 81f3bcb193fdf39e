//! libtlsfallback as a C program uses it: the shared vectors and the example, compiled with gcc
//! against the library cargo built, linked through the pkg-config file.

#![allow(unsafe_code)] // One test calls the C ABI directly, as C would.

use std::path::{Path, PathBuf};
use std::process::Command;

/// The directory holding libtlsfallback.so: this test runs from `<target>/<profile>/deps`, and
/// `cargo build -p tlsfallback-c` (run by scripts/test first: `cargo test` builds only the rlib)
/// puts the library in `<target>/<profile>`.
fn library_dir() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let dir = exe.parent().and_then(Path::parent).unwrap().to_owned();
    assert!(
        dir.join("libtlsfallback.so").exists(),
        "{} has no libtlsfallback.so: run `cargo build -p tlsfallback-c` first (scripts/test does)",
        dir.display()
    );
    dir
}

/// An install prefix with include/, lib/ and lib/pkgconfig/tlsfallback.pc, as `make install`
/// would lay it out.
fn install(prefix: &Path) {
    let kit = Path::new(env!("CARGO_MANIFEST_DIR"));
    for sub in ["include", "lib/pkgconfig"] {
        std::fs::create_dir_all(prefix.join(sub)).unwrap();
    }
    std::fs::copy(
        kit.join("include/tlsfallback.h"),
        prefix.join("include/tlsfallback.h"),
    )
    .unwrap();
    std::fs::copy(
        library_dir().join("libtlsfallback.so"),
        prefix.join("lib/libtlsfallback.so"),
    )
    .unwrap();
    let pc = std::fs::read_to_string(kit.join("tlsfallback.pc.in"))
        .unwrap()
        .replace("@PREFIX@", prefix.to_str().unwrap());
    std::fs::write(prefix.join("lib/pkgconfig/tlsfallback.pc"), pc).unwrap();
}

/// Compiles `source` with gcc, flags from pkg-config, warnings as errors.
fn compile(prefix: &Path, source: &str, output: &Path) {
    compile_with(prefix, source, output, &[]);
}

/// As [`compile`], linking `libraries` too.
fn compile_with(prefix: &Path, source: &str, output: &Path, libraries: &[&str]) {
    let flags = Command::new("pkg-config")
        .args(["--cflags", "--libs", "tlsfallback"])
        .env("PKG_CONFIG_PATH", prefix.join("lib/pkgconfig"))
        .output()
        .expect("pkg-config runs");
    assert!(flags.status.success(), "{flags:?}");
    let flags = String::from_utf8(flags.stdout).unwrap();
    let source = Path::new(env!("CARGO_MANIFEST_DIR")).join(source);
    let status = Command::new("gcc")
        .args([
            "-std=c11",
            "-D_GNU_SOURCE",
            "-Wall",
            "-Wextra",
            "-Werror",
            "-o",
        ])
        .arg(output)
        .arg(&source)
        .args(flags.split_whitespace())
        .args(libraries)
        .status()
        .expect("gcc runs");
    assert!(status.success(), "gcc failed on {}", source.display());
}

#[test]
fn a_c_program_gets_every_vector_byte_for_byte() {
    let prefix = tempfile::tempdir().unwrap();
    install(prefix.path());
    let program = prefix.path().join("vectors");
    compile(prefix.path(), "tests/vectors.c", &program);
    let vectors = Path::new(env!("CARGO_MANIFEST_DIR")).join("../vectors/decide.jsonl");
    let output = Command::new(&program).arg(&vectors).output().unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(stdout.ends_with(" passed, 0 failed\n"), "{stdout}");
}

#[test]
fn the_c_example_runs_the_dance() {
    let prefix = tempfile::tempdir().unwrap();
    install(prefix.path());
    let program = prefix.path().join("example");
    compile(prefix.path(), "examples/deliver_decisions.c", &program);
    let output = Command::new(&program).output().unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{stdout}");
    assert!(stdout.contains("first: attempt modern-tls"), "{stdout}");
    assert!(stdout.contains("then: attempt legacy-tls"), "{stdout}");
    assert!(
        stdout.starts_with("0.1.0 tlsfallback:policy@0.2.0"),
        "{stdout}"
    );
}

#[test]
fn bad_policies_are_refused_with_a_message() {
    use std::ffi::{CStr, CString};
    let mut error = std::ptr::null_mut();
    let policy = CString::new("[policy]\nprofile = \"paranoid\"\n").unwrap();
    // SAFETY: a valid C string and a writable error slot.
    let engine = unsafe { tlsfallback::tlsfallback_engine_new(policy.as_ptr(), &mut error) };
    assert!(engine.is_null());
    // SAFETY: the library set a C string it owns.
    let message = unsafe { CStr::from_ptr(error) }
        .to_string_lossy()
        .into_owned();
    assert!(message.contains("paranoid"), "{message}");
    // SAFETY: freed once.
    unsafe { tlsfallback::tlsfallback_string_free(error) };
}

/// Two C nodes of one fleet through a real redis-server (hiredis, as a C MTA would): what node A
/// learned about a legacy-only peer makes node B start at legacy-tls, and a forged shared copy
/// is refused (`tests/fleet.c`).
#[test]
fn two_c_nodes_share_a_legacy_only_peer_through_redis_and_refuse_a_forged_copy() {
    let redis = tlsfallback_testkit::rig::redis::RedisServer::start().unwrap();
    let prefix = tempfile::tempdir().unwrap();
    install(prefix.path());
    let program = prefix.path().join("fleet");
    compile_with(prefix.path(), "tests/fleet.c", &program, &["-lhiredis"]);
    let output = Command::new(&program)
        .arg(redis.port().to_string())
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&output.stdout), "ok\n");
}
