//! Real servers on loopback for the resolver's tests and benchmarks: a DNSSEC-signed fake root
//! and its children served by NSD with unbound validating in front ([`dnssec`]), and an HTTPS
//! server for MTA-STS policies with its own test CA ([`https`]). Each is started on free loopback
//! ports and stopped (by pid) when dropped. [`resolv`] runs a program (Postfix) whose libc
//! resolver asks the rig instead of the machine's. [`mta_sts_resolver`] runs
//! postfix-mta-sts-resolver, the daemon `postfix serve --mode policy-table` is compared with, over
//! the rig. [`tlsrpt_reporter`] runs sys4's tlsrpt-collectd and tlsrpt-reportd, the reporter
//! Postfix's libtlsrpt reports to. [`redis`] runs redis-server for the fleet's shared histories.
//! [`prometheus`] runs Prometheus scraping the daemon's metrics.

pub mod dnssec;
pub mod https;
pub mod mta_sts_resolver;
pub mod prometheus;
pub mod redis;
pub mod resolv;
pub mod tlsrpt_reporter;

/// A TCP port of 127.0.0.1 free right now, for a server the rig starts to bind (the server is
/// told the number: these programs cannot report the port they chose).
///
/// # Errors
///
/// When no port can be bound.
pub fn free_tcp_port() -> std::io::Result<u16> {
    Ok(
        std::net::TcpListener::bind((std::net::Ipv4Addr::LOCALHOST, 0))?
            .local_addr()?
            .port(),
    )
}
