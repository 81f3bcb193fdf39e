//! TLS-RPT (RFC 8460): the final result of each delivery attempt, sent to sys4's
//! `tlsrpt-collectd` over its local datagram socket exactly as libtlsrpt sends it.
//!
//! - [`datagram`]: the datagram, byte for byte as libtlsrpt writes it.
//! - [`client`]: sending it without ever waiting; what could not be sent is counted.
//! - [`dance`]: one final result per delivery attempt, from the engine's decisions.
//! - [`record`]: the recipient domain's `_smtp._tls` TXT record.
//! - [`message`]: whether a message is itself a TLS-RPT report.
//! - [`reporter`]: where results go (the collectd, the ledger), and one attempt's datagram.
//! - [`ledger`]: the host's own copy of its datagrams, per UTC day.
//! - [`preview`]: the RFC 8460 report a day's datagrams make, as `tlsrpt-reportd` makes it.

pub mod client;
pub mod dance;
pub mod datagram;
pub mod ledger;
pub mod message;
pub mod preview;
pub mod record;
pub mod reporter;
