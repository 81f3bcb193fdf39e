//! The `tlsfallback` command as scripts and non-Rust callers use it. Each module says what it covers.

// Shared helpers: run the binary with arguments and input.
mod util;
// `tlsfallback decide`: the JSON Lines contract, errors per line, engines, policy files.
mod decide;
// `tlsfallback simulate`: the readable timeline over simulated time.
mod simulate;
