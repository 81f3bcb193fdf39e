//! `tlsfallback deliver` and `tlsfallback peers`: real deliveries, and the history they leave.

use std::net::{SocketAddr, ToSocketAddrs};

use anyhow::{Context as _, bail};
use policy_core::{History, Tier};
use serde::Serialize;

use crate::delivery::{AttemptLine, DeliveryResult, Destination};
use crate::store::PeerRow;

/// sendmail's exit codes (sysexits.h), which MTAs and scripts understand.
pub mod exit {
    /// Delivered.
    pub const OK: u8 = 0;
    /// A command-line usage error, such as an invalid address.
    pub const USAGE: u8 = 64;
    /// The message itself is unusable (a line over the SMTP limit).
    pub const DATA_ERROR: u8 = 65;
    /// Permanent failure: return the message to its sender.
    pub const UNAVAILABLE: u8 = 69;
    /// Temporary failure: keep the message and retry later.
    pub const TEMPFAIL: u8 = 75;
}

/// Parses `HOST[:PORT]` (port 25 by default) into the peer name and the address to connect to.
///
/// # Errors
///
/// An empty host, a bad port, or a name that does not resolve.
pub fn parse_mx(spec: &str) -> anyhow::Result<Destination> {
    let (host, port) = match spec.rsplit_once(':') {
        Some((host, port)) if !host.contains(':') => (
            host,
            port.parse::<u16>()
                .with_context(|| format!("bad port in --mx {spec:?}"))?,
        ),
        _ => (spec, 25),
    };
    // One spelling per peer (see `peer_key`); also the name resolved and verified.
    let host = crate::store::peer_key(host);
    if host.is_empty() {
        bail!("--mx {spec:?} has no host");
    }
    let address: SocketAddr = (host.as_str(), port)
        .to_socket_addrs()
        .with_context(|| format!("resolving the MX host {host:?}"))?
        .next()
        .with_context(|| format!("the MX host {host:?} has no address"))?;
    Ok(Destination::new(&host, address, None))
}

/// Checks an envelope address: no spaces, angle brackets or control characters; a recipient needs
/// an `@`. The null reverse path (empty) is allowed for `--from`.
///
/// # Errors
///
/// What is wrong with it.
pub fn check_address(address: &str, recipient: bool) -> anyhow::Result<()> {
    if address.is_empty() && !recipient {
        return Ok(());
    }
    if address.len() > 254 {
        bail!("the address {address:?} is longer than 254 characters");
    }
    if address
        .chars()
        .any(|c| c.is_control() || c.is_whitespace() || c == '<' || c == '>')
    {
        bail!("the address {address:?} has spaces, control characters or angle brackets");
    }
    match address.rsplit_once('@') {
        Some((local, domain)) if !local.is_empty() && !domain.is_empty() => Ok(()),
        _ => bail!("the address {address:?} is not local@domain"),
    }
}

/// Checks our EHLO name: a domain or an address literal as RFC 5321 section 4.1.2 defines them
/// (`mail.example.org`, `[192.0.2.1]`, `[IPv6:2001:db8::1]`). Anything else, above all a CR or
/// LF, would let the name smuggle SMTP commands into the session.
///
/// # Errors
///
/// What is wrong with it.
pub fn check_helo_name(name: &str) -> anyhow::Result<()> {
    if name.chars().any(|c| c.is_control()) {
        bail!(
            "the EHLO name {name:?} has control characters (CR or LF would inject SMTP commands)"
        );
    }
    if let Some(literal) = name
        .strip_prefix('[')
        .and_then(|rest| rest.strip_suffix(']'))
    {
        let valid = match literal.strip_prefix("IPv6:") {
            Some(v6) => v6.parse::<std::net::Ipv6Addr>().is_ok(),
            None => literal.parse::<std::net::Ipv4Addr>().is_ok(),
        };
        if !valid {
            bail!(
                "the EHLO name {name:?} is not an address literal ([192.0.2.1] or [IPv6:2001:db8::1])"
            );
        }
        return Ok(());
    }
    // Let-dig [Ldh-str]: letters, digits and inner hyphens, 63 octets at most per label.
    let label_ok = |label: &str| {
        (1..=63).contains(&label.len())
            && label
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-')
            && !label.starts_with('-')
            && !label.ends_with('-')
    };
    if name.len() > 255 || !name.split('.').all(label_ok) {
        bail!(
            "the EHLO name {name:?} is not a domain (letters, digits and hyphens in dot-separated labels) or an address literal"
        );
    }
    Ok(())
}

/// One log line for an attempt.
#[must_use]
pub fn format_attempt(line: &AttemptLine) -> String {
    let negotiated = line
        .negotiated
        .as_ref()
        .map_or_else(String::new, |(v, c)| format!(" version={v} cipher={c}"));
    let delay = if line.delay_secs > 0 {
        format!(" after={}s", line.delay_secs)
    } else {
        String::new()
    };
    let resolved = line
        .resolved
        .as_ref()
        .map_or_else(String::new, |summary| format!(" {summary}"));
    format!(
        "attempt peer={} tier={}{delay} outcome={}{negotiated} reason={}{resolved} detail={:?}",
        line.peer,
        line.tier.name(),
        line.outcome,
        line.reason,
        line.detail
    )
}

/// The summary (one line, after one line per refused recipient and any warning) and the exit
/// code for a delivery result.
///
/// One exit code covers every recipient of the run, as for sendmail's delivery agents: 0 only
/// when every recipient has the message; when the peer refused some, the code is theirs (75 if
/// any was deferred with 4xx, else 69), although the others have it. A caller that needs a result
/// per recipient delivers to one recipient per run (Postfix: `destination_recipient_limit = 1`).
#[must_use]
pub fn summarize(result: &DeliveryResult) -> (String, u8) {
    match result {
        DeliveryResult::Delivered {
            peer,
            tier,
            history_warning,
            refused,
        } => {
            let mut lines: Vec<String> = history_warning
                .iter()
                .map(|warning| format!("warning: {warning}"))
                .collect();
            for refusal in refused {
                let fate = if refusal.permanent {
                    "bounced"
                } else {
                    "deferred"
                };
                lines.push(format!(
                    "recipient <{}> {fate}: {peer} answered {}",
                    refusal.recipient, refusal.reply
                ));
            }
            let code = if refused.is_empty() {
                exit::OK
            } else if refused.iter().any(|r| !r.permanent) {
                exit::TEMPFAIL
            } else {
                exit::UNAVAILABLE
            };
            let partly = if refused.is_empty() {
                String::new()
            } else {
                format!(" for all but {} recipient(s)", refused.len())
            };
            lines.push(format!("delivered to {peer} over {}{partly}", tier.name()));
            (lines.join("\n"), code)
        }
        DeliveryResult::Deferred {
            retry_after_secs,
            reasons,
        } => (
            format!(
                "deferred, retry in {retry_after_secs}s: {}",
                reasons.join("; ")
            ),
            exit::TEMPFAIL,
        ),
        DeliveryResult::Bounced { status, reason } => {
            (format!("bounced {status}: {reason}"), exit::UNAVAILABLE)
        }
    }
}

/// A peer's history, decoded for people and scripts.
#[derive(Clone, Debug, Serialize)]
pub struct PeerView {
    /// The MX host.
    pub peer: String,
    /// When its history last changed (seconds since the epoch).
    pub updated_at: u64,
    /// The tier its next delivery starts at when below the top (`null`: the top tier).
    pub start_tier: Option<Tier>,
    /// The tier of its last success.
    pub last_success_tier: Option<Tier>,
    /// When that was.
    pub last_success_at: Option<u64>,
    /// Whether it was ever seen doing TLS.
    pub seen_tls: bool,
    /// Until when cleartext and legacy TLS are refused (`null`: not pinned).
    pub pinned_until: Option<u64>,
    /// Cheap failures in a row.
    pub transient_failures: u8,
    /// Why the stored blob could not be read, if it could not.
    pub unreadable: Option<String>,
}

impl PeerView {
    /// Decodes a stored row; an unreadable blob is shown as such, not hidden.
    #[must_use]
    pub fn new(row: &PeerRow) -> Self {
        let (memory, unreadable) = match History::decode(&row.history) {
            Ok(history) => (history.memory, None),
            Err(e) => (policy_core::PeerMemory::default(), Some(e.to_string())),
        };
        let nonzero = |t: u64| (t != 0).then_some(t);
        Self {
            peer: row.peer.clone(),
            updated_at: row.updated_at,
            start_tier: memory.start_tier,
            last_success_tier: memory.last_success_tier,
            last_success_at: nonzero(memory.last_success_at),
            seen_tls: memory.seen_tls,
            pinned_until: nonzero(memory.pinned_until),
            transient_failures: memory.transient_failures,
            unreadable,
        }
    }

    /// One line for a terminal.
    #[must_use]
    pub fn line(&self) -> String {
        if let Some(error) = &self.unreadable {
            return format!("{}  UNREADABLE HISTORY: {error}", self.peer);
        }
        let tier = |t: Option<Tier>| t.map_or("-", Tier::name);
        format!(
            "{}  starts-at={}  last-success={}{}  seen-tls={}  pinned-until={}  transient-failures={}",
            self.peer,
            self.start_tier.map_or("top", Tier::name),
            tier(self.last_success_tier),
            self.last_success_at
                .map_or_else(String::new, |t| format!("@{t}")),
            self.seen_tls,
            self.pinned_until
                .map_or_else(|| "-".to_owned(), |t| t.to_string()),
            self.transient_failures
        )
    }
}
