//! The host as operators and scripts use it. One test binary; each module says what it covers.

// Shared helpers: run the binary with arguments and input.
mod util;
// `tlsfallback decide`: the JSON Lines contract, errors per line, engines, policy files.
mod decide;
// `tlsfallback simulate`: the readable timeline over simulated time, and its JSON.
mod simulate;
// `tlsfallback playground`: refusing what is not a built playground, links out of it, slow clients
// (the page: playground/test).
mod playground;
// One SMTP attempt per tier against local OpenSSL peers: what is negotiated, how failures classify.
mod attempts;
// The SQLite history store: round trips, concurrent updates, corrupt rows.
mod store;
// `tlsfallback deliver` and `peers`: the full loop against local peers, exit codes, bad input.
mod deliver;
// Operators' policy components from the command line: fail modes, the policy file, load errors.
mod plugin;
// End to end against a real Postfix (Debian's package) with differently configured listeners.
mod postfix;
// `tlsfallback postfix serve`: the socketmap daemon with a real sending Postfix, its log, bad requests.
mod postfix_daemon;
// The daemon's connections: idle and surplus connections cannot lock Postfix out.
mod postfix_connections;
// The fuzzers' kept corpus (fuzz/corpus/), replayed through the parsers they fuzz.
mod fuzz_corpus;
