//! MX lookup (RFC 5321 section 5.1) over UDP, for `deliver` without `--mx`.
//!
//! A small synchronous client on hickory-proto's message codec: the delivery path is synchronous
//! and hickory-resolver is async-only. Answers larger than a UDP datagram (truncated) are reported
//! as a temporary failure rather than retried over TCP.

use std::net::{SocketAddr, UdpSocket};
use std::time::Duration;

use hickory_proto::op::{Message, MessageType, OpCode, Query, ResponseCode};
use hickory_proto::rr::{DNSClass, Name, RData, RecordType};

use crate::clock::Deadline;

/// Whether `response` carries exactly our question: `name` (compared without case, RFC 4343),
/// type MX, class IN.
fn answers_the_question(response: &Message, name: &Name) -> bool {
    let [question] = response.queries.as_slice() else {
        return false;
    };
    question.query_type() == RecordType::MX
        && question.query_class() == DNSClass::IN
        && question
            .name()
            .to_ascii()
            .eq_ignore_ascii_case(&name.to_ascii())
}

/// What the DNS says about a domain's mail exchangers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MxAnswer {
    /// The MX hosts, most preferred first (the domain itself when it has no MX: the implicit MX).
    Hosts(Vec<String>),
    /// The domain publishes a null MX (RFC 7505): it accepts no mail.
    NullMx,
    /// The domain does not exist.
    NoSuchDomain,
}

/// The name server to ask: `$TLSFALLBACK_DNS_SERVER` (`ADDR:PORT`), else the first `nameserver`
/// of /etc/resolv.conf, else 127.0.0.1:53.
#[must_use]
pub fn nameserver() -> SocketAddr {
    if let Some(addr) = std::env::var("TLSFALLBACK_DNS_SERVER")
        .ok()
        .and_then(|v| v.parse().ok())
    {
        return addr;
    }
    std::fs::read_to_string("/etc/resolv.conf")
        .ok()
        .and_then(|conf| {
            conf.lines().find_map(|line| {
                let mut words = line.split_whitespace();
                (words.next() == Some("nameserver"))
                    .then(|| words.next()?.parse::<std::net::IpAddr>().ok())
                    .flatten()
            })
        })
        .map_or_else(
            || SocketAddr::from(([127, 0, 0, 1], 53)),
            |ip| SocketAddr::new(ip, 53),
        )
}

/// Looks up the MX hosts of `domain`, waiting at most `timeout` in all.
///
/// Only an answer to the question asked counts: from the server asked, with the query's random
/// id, a response, and the same single question (name, type MX, class IN). Anything else that
/// arrives is ignored (an off-path spoofer has to guess the id, and still could not change the
/// question); when nothing genuine arrives in time, the error says what was ignored.
///
/// # Errors
///
/// A temporary failure (timeout, SERVFAIL, truncation, garbage): the caller keeps the message.
pub fn lookup(domain: &str, server: SocketAddr, timeout: Duration) -> anyhow::Result<MxAnswer> {
    let name = Name::from_ascii(format!("{}.", domain.trim_end_matches('.')))
        .map_err(|e| anyhow::anyhow!("{domain:?} is not a domain name: {e}"))?;
    let id = getrandom::u32()
        .map_err(|e| anyhow::anyhow!("no randomness for the DNS query id: {e}"))?
        .to_le_bytes();
    let id = u16::from_le_bytes([id[0], id[1]]);
    let mut query = Message::new(id, MessageType::Query, OpCode::Query);
    query.metadata.recursion_desired = true;
    query.add_query(Query::query(name.clone(), RecordType::MX));
    let socket = UdpSocket::bind(if server.is_ipv4() {
        "0.0.0.0:0"
    } else {
        "[::]:0"
    })?;
    // A connected socket: the kernel drops datagrams from any other address (checked again below).
    socket.connect(server)?;
    socket.send(&query.to_vec()?)?;
    let deadline = Deadline::after(timeout);
    let mut ignored: Vec<String> = Vec::new();
    let mut buffer = [0u8; 4096];
    let response = loop {
        let left = deadline.left();
        let received = if left.is_zero() {
            Err(std::io::ErrorKind::TimedOut.into())
        } else {
            socket
                .set_read_timeout(Some(left))
                .and_then(|()| socket.recv_from(&mut buffer))
        };
        let (len, from) = match received {
            Ok(received) => received,
            Err(e) if ignored.is_empty() => {
                anyhow::bail!("no answer from the name server {server}: {e}")
            }
            Err(_) => anyhow::bail!(
                "no usable answer from the name server {server} for the MX of {domain}; ignored: {}",
                ignored.join("; ")
            ),
        };
        if from != server {
            ignored.push(format!("a datagram from {from}"));
            continue;
        }
        let Ok(response) = Message::from_vec(&buffer[..len]) else {
            ignored.push("an unreadable answer".to_owned());
            continue;
        };
        if response.metadata.id != id {
            ignored.push(format!(
                "an answer with another id ({})",
                response.metadata.id
            ));
            continue;
        }
        if response.metadata.message_type != MessageType::Response {
            ignored.push("a query instead of an answer".to_owned());
            continue;
        }
        if !answers_the_question(&response, &name) {
            let asked: Vec<String> = response
                .queries
                .iter()
                .map(|q| format!("{} {} {}", q.name(), q.query_class(), q.query_type()))
                .collect();
            ignored.push(format!(
                "an answer for another question ({})",
                if asked.is_empty() {
                    "none".to_owned()
                } else {
                    asked.join(", ")
                }
            ));
            continue;
        }
        break response;
    };
    if response.metadata.truncation {
        anyhow::bail!("the MX answer for {domain} was truncated (DNS over TCP is not built yet)");
    }
    match response.metadata.response_code {
        ResponseCode::NoError => {}
        ResponseCode::NXDomain => return Ok(MxAnswer::NoSuchDomain),
        code => anyhow::bail!("the name server answered {code} for the MX of {domain}"),
    }
    let mut exchangers: Vec<(u16, Name)> = response
        .answers
        .iter()
        .filter_map(|record| match &record.data {
            RData::MX(mx) => Some((mx.preference, mx.exchange.clone())),
            _ => None,
        })
        .collect();
    if exchangers.len() == 1 && exchangers[0].1.is_root() {
        return Ok(MxAnswer::NullMx);
    }
    if exchangers.is_empty() {
        return Ok(MxAnswer::Hosts(vec![
            domain.trim_end_matches('.').to_ascii_lowercase(),
        ]));
    }
    // Lower preference first; ties keep the server's order (RFC 5321 asks for randomising ties,
    // which a deterministic host leaves to the DNS server's rotation).
    exchangers.sort_by_key(|(preference, _)| *preference);
    Ok(MxAnswer::Hosts(
        exchangers
            .into_iter()
            .filter(|(_, host)| !host.is_root())
            .map(|(_, host)| host.to_ascii().trim_end_matches('.').to_ascii_lowercase())
            .collect(),
    ))
}
