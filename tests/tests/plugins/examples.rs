//! The example plugins in `examples/`, built the way their READMEs say (once per test run).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ sits in the workspace")
        .to_path_buf()
}

/// `examples/plugin-rust`: cargo for `wasm32-unknown-unknown`, then wrapped into a component
/// with `wit-component` (what `wasm-tools component new` does).
pub(super) fn rust_plugin() -> Vec<u8> {
    static BUILT: OnceLock<Vec<u8>> = OnceLock::new();
    BUILT
        .get_or_init(|| {
            let workspace = workspace();
            // The guest target directory the host's build script uses: its dependencies are
            // already compiled there.
            let target_dir = workspace.join("target").join("guest");
            let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
            let status = Command::new(cargo)
                .current_dir(&workspace)
                .args([
                    "build",
                    "--quiet",
                    "--locked",
                    "-p",
                    "tlsfallback-example-plugin",
                ])
                .args(["--profile", "guest", "--target", "wasm32-unknown-unknown"])
                .arg("--target-dir")
                .arg(&target_dir)
                .env_remove("RUSTFLAGS")
                .env_remove("CARGO_ENCODED_RUSTFLAGS")
                .env_remove("CARGO_TARGET_DIR")
                .status()
                .expect("running cargo for the Rust example plugin");
            assert!(status.success(), "building examples/plugin-rust failed");
            let core =
                target_dir.join("wasm32-unknown-unknown/guest/tlsfallback_example_plugin.wasm");
            let module =
                std::fs::read(&core).unwrap_or_else(|e| panic!("reading {}: {e}", core.display()));
            wit_component::ComponentEncoder::default()
                .module(&module)
                .and_then(|encoder| encoder.validate(true).encode())
                .expect("wrapping the Rust example into a component")
        })
        .clone()
}

/// `examples/plugin-js`: `node build.mjs OUT` (ComponentizeJS; `scripts/setup` installed the
/// pinned npm packages).
pub(super) fn javascript_plugin() -> Vec<u8> {
    static BUILT: OnceLock<Vec<u8>> = OnceLock::new();
    BUILT
        .get_or_init(|| {
            let out = tempfile::tempdir().expect("a temporary directory");
            let wasm = out.path().join("plugin.wasm");
            let output = Command::new("node")
                .current_dir(workspace().join("examples/plugin-js"))
                .arg("build.mjs")
                .arg(&wasm)
                .output()
                .expect("running node (scripts/setup installs it)");
            assert!(
                output.status.success(),
                "building examples/plugin-js failed (run scripts/setup first):\n{}{}",
                String::from_utf8_lossy(&output.stdout),
                String::from_utf8_lossy(&output.stderr)
            );
            std::fs::read(&wasm).unwrap_or_else(|e| panic!("reading {}: {e}", wasm.display()))
        })
        .clone()
}
