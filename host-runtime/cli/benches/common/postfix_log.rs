//! Postfix's log for the scale benchmarks (`scale_log`, `scale_year`): one message at a time, in
//! the line shapes Postfix writes (per message: `smtpd` connect, `client=` and disconnect,
//! `cleanup` `message-id=`, `qmgr` `from=` and `removed`, the `smtp` client's TLS story and its
//! status line; `anvil` statistics now and then), each delivery's lookup answered by the daemon
//! first, as Postfix asks the map before it connects. 70% of the destinations are modern peers,
//! 20% legacy-only, 10% without STARTTLS; 100 SMTP client processes, each replaced after 100
//! deliveries as Postfix's `max_use` does.

use std::fmt::Write as _;

use tlsfallback_mta::postfix::Daemon;
use tlsfallback_mta::postfix::socketmap::Reply;

const PROCESSES: u64 = 100;
/// Deliveries an SMTP client process makes before Postfix replaces it (`max_use`).
const MAX_USE: u64 = 100;

/// What the peer at a destination does.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Peer {
    Modern,
    LegacyOnly,
    NoStarttls,
}

fn peer_of(destination: u64) -> Peer {
    match destination % 10 {
        0 => Peer::NoStarttls,
        1 | 2 => Peer::LegacyOnly,
        _ => Peer::Modern,
    }
}

/// The tier a policy answer asks for, as far as the peer can tell.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Asked {
    Cleartext,
    LegacyTls,
    ModernTls,
}

fn asked(reply: &Reply) -> Option<Asked> {
    match reply {
        Reply::Found(policy) if policy == "none" || policy == "may" => Some(Asked::Cleartext),
        Reply::Found(policy) if policy.contains("ciphers=low") => Some(Asked::LegacyTls),
        Reply::Found(_) => Some(Asked::ModernTls),
        _ => None,
    }
}

/// A cheap deterministic hash (no randomness crate needed here).
pub(crate) const fn mix(i: u64) -> u64 {
    let x = i.wrapping_mul(0x9E37_79B9_7F4A_7C15);
    x ^ (x >> 29)
}

/// Generates the log one message at a time, and answers each delivery's lookup first.
pub(crate) struct Generator {
    /// Messages made so far.
    pub(crate) message: u64,
    /// Status lines of attempts made to a peer (each one outcome for the daemon).
    pub(crate) attempts: u64,
    pending: String,
    lines_pending: usize,
}

impl Generator {
    pub(crate) const fn new() -> Self {
        Self {
            message: 0,
            attempts: 0,
            pending: String::new(),
            lines_pending: 0,
        }
    }

    fn line(&mut self, tag: &str, pid: u64, text: &str, now: u64) {
        let (h, m, s) = ((now / 3600) % 24, (now / 60) % 60, now % 60);
        let _ = writeln!(
            self.pending,
            "Jan 15 {h:02}:{m:02}:{s:02} mx1 postfix/{tag}[{pid}]: {text}"
        );
        self.lines_pending += 1;
    }

    /// One message to `destination` at `now`: its delivery's lookup made through `daemon`,
    /// then its lines.
    pub(crate) fn message(&mut self, daemon: &mut Daemon<'_>, destination: u64, now: u64) {
        let n = self.message;
        let domain = format!("d{destination}.bench.test");
        let (slot, generation) = (n % PROCESSES, n / (PROCESSES * MAX_USE));
        let smtp_pid = 20_000 + generation * PROCESSES + slot;
        let smtpd_pid = 5_000 + n % 50;
        let queue_id = format!("4Z{:011X}", mix(n) >> 20);
        let relay_ip = format!(
            "10.{}.{}.{}",
            destination >> 16,
            (destination >> 8) & 255,
            destination & 255
        );
        let relay = format!("mx.{domain}[{relay_ip}]:25");
        let client = format!("client{}.sender.test[192.0.2.{}]", n % 200, n % 250 + 1);
        self.line("smtpd", smtpd_pid, &format!("connect from {client}"), now);
        self.line(
            "smtpd",
            smtpd_pid,
            &format!("{queue_id}: client={client}"),
            now,
        );
        self.line(
            "cleanup",
            7_000 + n % 4,
            &format!("{queue_id}: message-id=<{n}.{:x}@sender.test>", mix(n)),
            now,
        );
        self.line(
            "qmgr",
            900,
            &format!(
                "{queue_id}: from=<user{}@sender.test>, size={}, nrcpt=1 (queue active)",
                n % 997,
                2_000 + mix(n) % 60_000
            ),
            now,
        );
        self.line(
            "smtpd",
            smtpd_pid,
            &format!(
                "disconnect from {client} ehlo=2 starttls=1 mail=1 rcpt=1 data=1 quit=1 commands=7"
            ),
            now,
        );
        let request = format!("tlsfallback {domain}");
        let reply = daemon.answer(request.as_bytes(), Some(smtp_pid as u32), now);
        let rcpt = format!("to=<user{}@{domain}>", n % 1_009);
        let delays = "delay=0.41, delays=0.02/0.01/0.2/0.18";
        self.attempts += u64::from(asked(&reply).is_some());
        match (asked(&reply), peer_of(destination)) {
            (None, _) => {
                // The daemon deferred the destination: Postfix logs the deferral itself.
                self.line(
                    "smtp",
                    smtp_pid,
                    &format!("{queue_id}: {rcpt}, relay=none, {delays}, dsn=4.3.0, status=deferred (mail transport unavailable)"), now);
            }
            (Some(Asked::Cleartext), _) => self.sent(smtp_pid, &queue_id, &rcpt, &relay, now),
            (Some(_), Peer::NoStarttls) => self.line(
                "smtp",
                smtp_pid,
                &format!("{queue_id}: {rcpt}, relay={relay}, {delays}, dsn=4.7.4, status=deferred (TLS is required, but was not offered by host mx.{domain}[{relay_ip}])"), now),
            (Some(Asked::ModernTls), Peer::LegacyOnly) => {
                self.line("smtp", smtp_pid, &format!("SSL_connect error to {relay}: -1"), now);
                self.line(
                    "smtp",
                    smtp_pid,
                    "warning: TLS library problem: error:0A00042E:SSL routines::tlsv1 alert protocol version:../ssl/record/rec_layer_s3.c:1605:SSL alert number 70:", now);
                self.line(
                    "smtp",
                    smtp_pid,
                    &format!("{queue_id}: {rcpt}, relay={relay}, {delays}, dsn=4.7.5, status=deferred (Cannot start TLS: handshake failure)"), now);
            }
            (Some(tier), peer) => {
                let version = if tier == Asked::LegacyTls || peer == Peer::LegacyOnly {
                    "TLSv1 with cipher ECDHE-RSA-AES256-SHA (256/256 bits)"
                } else {
                    "TLSv1.3 with cipher TLS_AES_256_GCM_SHA384 (256/256 bits)"
                };
                self.line(
                    "smtp",
                    smtp_pid,
                    &format!("Untrusted TLS connection established to {relay}: {version}"), now);
                self.sent(smtp_pid, &queue_id, &rcpt, &relay, now);
            }
        }
        self.line("qmgr", 900, &format!("{queue_id}: removed"), now);
        if n.is_multiple_of(500) {
            self.line(
                "anvil",
                800,
                &format!("statistics: max connection rate 12/60s for (smtp:192.0.2.{}) at Jan 15 12:00:00", n % 250 + 1), now);
        }
        self.message += 1;
    }

    fn sent(&mut self, pid: u64, queue_id: &str, rcpt: &str, relay: &str, now: u64) {
        self.line(
            "smtp",
            pid,
            &format!("{queue_id}: {rcpt}, relay={relay}, delay=0.41, delays=0.02/0.01/0.2/0.18, dsn=2.0.0, status=sent (250 2.0.0 Ok: queued as 4Z9X)"), now);
    }

    /// The lines made since the last call, and how many they are.
    pub(crate) fn take(&mut self) -> (String, usize) {
        let made = std::mem::take(&mut self.lines_pending);
        (std::mem::take(&mut self.pending), made)
    }

    /// Lines so far not taken.
    #[allow(dead_code, reason = "scale_year takes each batch whole and never asks")]
    pub(crate) const fn lines_pending(&self) -> usize {
        self.lines_pending
    }
}
