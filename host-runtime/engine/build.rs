//! Builds the policy component from `bindings/` so that the host embeds the very component it
//! ships, and the tools component from `bindings/tools/` (the engine plus the simulator, presets
//! and history decoder, for the playground): `cargo build` of the host is the only step, on a
//! clean clone.
//!
//! The guest is compiled for `wasm32-unknown-unknown`, where std imports nothing (on
//! `wasm32-wasip2` std's panic and stdio paths drag in 13 WASI interfaces), and the core module is
//! then wrapped into a component with `wit-component`, which is what `wasm-tools component new`
//! does. A nested cargo with its own target directory avoids the outer build's lock.

use std::env;
use std::path::{Path, PathBuf};
use std::process::Command;

const GUEST_TARGET: &str = "wasm32-unknown-unknown";

fn main() {
    let manifest_dir = PathBuf::from(env::var_os("CARGO_MANIFEST_DIR").expect("set by cargo"));
    let workspace = manifest_dir
        .ancestors()
        .nth(2)
        .expect("host-runtime/engine sits two levels down in the workspace");
    for watched in [
        "policy-core/src",
        "policy-core/Cargo.toml",
        "bindings",
        "wit",
        "Cargo.lock",
        // The guest profile lives in the workspace manifest.
        "Cargo.toml",
    ] {
        println!(
            "cargo:rerun-if-changed={}",
            workspace.join(watched).display()
        );
    }
    let out_dir = PathBuf::from(env::var_os("OUT_DIR").expect("set by cargo"));
    let modules = build_guests(workspace);
    for (core_module, component_name) in [
        (
            modules.join("tlsfallback_bindings.wasm"),
            "policy_engine.wasm",
        ),
        (modules.join("tlsfallback_tools.wasm"), "policy_tools.wasm"),
    ] {
        let module = std::fs::read(&core_module)
            .unwrap_or_else(|e| panic!("reading {}: {e}", core_module.display()));
        let component = wit_component::ComponentEncoder::default()
            .module(&module)
            .and_then(|encoder| encoder.validate(true).encode())
            .unwrap_or_else(|e| {
                panic!("wrapping {} into a component: {e:?}", core_module.display())
            });
        std::fs::write(out_dir.join(component_name), component)
            .unwrap_or_else(|e| panic!("writing {component_name}: {e}"));
    }
}

/// Builds both guests in one cargo run (so policy-core's features are the same for both and
/// neither build undoes the other's); returns the directory holding their core modules.
fn build_guests(workspace: &Path) -> PathBuf {
    let target_dir = env::var_os("TLSFALLBACK_GUEST_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace.join("target").join("guest"));
    let cargo = env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut command = Command::new(cargo);
    command
        .current_dir(workspace)
        .args([
            "build",
            "--quiet",
            "-p",
            "tlsfallback-bindings",
            "-p",
            "tlsfallback-tools",
            "--profile",
            "guest",
        ])
        .args(["--target", GUEST_TARGET])
        .arg("--target-dir")
        .arg(&target_dir);
    // The outer build's flags and wrappers (clippy, coverage, host RUSTFLAGS) are not for the guest.
    for var in [
        "CARGO_ENCODED_RUSTFLAGS",
        "RUSTFLAGS",
        "RUSTC_WRAPPER",
        "RUSTC_WORKSPACE_WRAPPER",
        "CARGO_BUILD_TARGET",
        "CARGO_TARGET_DIR",
        "CARGO_PRIMARY_PACKAGE",
    ] {
        command.env_remove(var);
    }
    let status = command
        .status()
        .unwrap_or_else(|e| panic!("running cargo for the guest component: {e}"));
    if !status.success() {
        panic!(
            "building the guest component failed (the errors are above); if the target is \
             missing, run `rustup target add {GUEST_TARGET}` (scripts/setup does it)"
        );
    }
    target_dir.join(GUEST_TARGET).join("guest")
}
