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
// The MX lookup against fake DNS servers: forged ids and questions.
mod mx;
// The host's resolver against the DNSSEC rig: DNSSEC status, DANE per MX, `tlsfallback resolve`.
mod resolver;
// `deliver` with no policy flags through the rig's names: DANE, MTA-STS, stripping, insecure.
mod resolved_delivery;
// TLS-RPT: deliveries reported to sys4's real tlsrpt-collectd and reportd; `tlsrpt preview`.
mod tlsrpt;
// The DNSSEC rig (NSD, unbound, the SERVFAIL front): each kind of child zone answers as it says.
mod dnssec_rig;
// The SQLite history store: round trips, concurrent updates, corrupt rows.
mod store;
// The fleet's shared histories on a real redis-server: nodes learning from each other, faults.
mod fleet;
// Lost updates: 8 processes on one key and on 1,000, on one server and on a 3-primary cluster.
mod fleet_lost_updates;
// `deliver --fleet` end to end: two nodes, the stripping proxy, `peers show --fleet`, TLS and ACL.
mod fleet_deliver;
// `tlsfallback deliver` and `peers`: the full loop against local peers, exit codes, bad input.
mod deliver;
// Operators' policy components from the command line: fail modes, the policy file, load errors.
mod plugin;
// End to end against a real Postfix (Debian's package) with differently configured listeners.
mod postfix;
// The daemon's deciding half in process: which delivery an outcome belongs to, when a dance goes on.
mod postfix_attribution;
// `tlsfallback postfix serve`: the socketmap daemon with a real sending Postfix, its log, bad requests.
mod postfix_daemon;
// `postfix serve` operated: a real Prometheus scraping its metrics, its JSON log, SIGHUP reloads
// under load.
mod operations;
// A real Postfix doing DANE through the rig's validating resolver, plain and with our map: the floor
// holds (DANE, MTA-STS, pins) and the dance goes on where there is none.
mod postfix_dane;
// `postfix serve` resolving the floor through the DNSSEC rig: dane-only, dane, secure match=...,
// TEMP when it cannot be known, the policy-table mode, DNS and HTTPS going down, floods.
mod postfix_floor;
// The attacker between a real sending Postfix (with `postfix serve`) and a real receiving one.
mod postfix_campaign;
// The test attacker itself: each attack does to one attempt what it says.
mod attacker;
// The downgrade campaign: every attack × modern, legacy-only and plain peers × pinned, unpinned,
// DANE and MTA-STS, through `deliver` over simulated weeks, against the downgrade invariants.
mod campaign;
// Faults around `deliver`: kill -9, a locked database, a full disk, no file descriptors left.
mod faults;
// The daemon's connections: idle and surplus connections cannot lock Postfix out.
mod postfix_connections;
// The fuzzers' kept corpus (fuzz/corpus/), replayed through the parsers they fuzz.
mod fuzz_corpus;
// MTA-STS against a real HTTPS server with a test CA: the fetch's refusals, the resolver and its cache.
mod mta_sts;
// `postfix serve --mode policy-table` against postfix-mta-sts-resolver (PyPI, pinned) over one rig.
mod mta_sts_differential;
// The crates' one-way shape: what the embedding crate never links, no module cycle, `main` only
// dispatches.
mod architecture;
