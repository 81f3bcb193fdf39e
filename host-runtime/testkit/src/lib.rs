//! Local parts for tlsfallback's tests, its `demo` and its benchmarks, on loopback only.
//!
//! - [`peers`]: local SMTP peers (modern, legacy, no STARTTLS, 454, reset).
//! - [`attacker`]: the on-path attacker (STARTTLS stripping, forged alerts) the downgrade
//!   campaign puts in front of them.
//! - [`rig`]: a DNSSEC-signed zone server with a validating resolver, an MTA-STS policy server,
//!   and postfix-mta-sts-resolver, started on free loopback ports and stopped by pid.
//!
//! The embedding crate (`tlsfallback-engine`) and the MTA host (`tlsfallback-mta`) must never
//! depend on this crate: nothing here ships in a library an MTA links.
#![forbid(unsafe_code)]

mod accept;
pub mod attacker;
pub mod peers;
pub mod rig;
