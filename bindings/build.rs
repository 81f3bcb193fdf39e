//! Link settings for the guest.

fn main() {
    // The engine's deepest call path needs a few KiB of stack; rust-lld's default for wasm is
    // 1 MiB. A small stack keeps the instance's linear memory to a page or two, which is what a
    // pooled instance costs to reset between uses (the benchmark's fresh-instance row).
    if std::env::var("CARGO_CFG_TARGET_FAMILY").as_deref() == Ok("wasm") {
        println!("cargo:rustc-link-arg=-zstack-size=32768");
    }
}
