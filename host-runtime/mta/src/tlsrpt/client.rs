//! The sending side of libtlsrpt's local socket: one datagram per finished delivery attempt to
//! `tlsrpt-collectd`'s Unix datagram socket, never waiting (libtlsrpt sends with
//! `MSG_DONTWAIT`). A collectd that is absent, slow or full costs the delivery nothing: the
//! datagram is dropped, counted, and the caller told why.

use std::io;
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};

use super::datagram::{Datagram, MAX_DATAGRAM_BYTES};

/// What became of one datagram.
#[derive(Debug)]
#[must_use = "a datagram that was not sent should be logged"]
#[non_exhaustive]
pub enum Sent {
    /// The collectd's socket took it.
    Sent {
        /// Its size.
        bytes: usize,
    },
    /// Nothing listens at the socket (no such file, or connection refused).
    NoCollector(io::Error),
    /// The collectd's queue is full (it reads too slowly): dropped rather than waited for.
    CollectorFull(io::Error),
    /// Larger than [`MAX_DATAGRAM_BYTES`] (or than the socket takes): not sent.
    TooLarge {
        /// Its size.
        bytes: usize,
    },
    /// Another socket error.
    Failed(io::Error),
}

impl Sent {
    /// One line for the log when it was not sent; `None` when it was.
    #[must_use]
    pub fn problem(&self, socket: &Path) -> Option<String> {
        let at = socket.display();
        match self {
            Self::Sent { .. } => None,
            Self::NoCollector(e) => Some(format!(
                "TLS-RPT result dropped: no tlsrpt-collectd listens at {at} ({e})"
            )),
            Self::CollectorFull(e) => Some(format!(
                "TLS-RPT result dropped: tlsrpt-collectd at {at} is not keeping up ({e})"
            )),
            Self::TooLarge { bytes } => Some(format!(
                "TLS-RPT result dropped: its datagram is {bytes} bytes, over the limit of \
                 {MAX_DATAGRAM_BYTES}"
            )),
            Self::Failed(e) => Some(format!(
                "TLS-RPT result dropped: sending to {at} failed ({e})"
            )),
        }
    }
}

/// How many datagrams went which way since the client was made.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SendCounters {
    /// Sent.
    pub sent: u64,
    /// Dropped: no collectd.
    pub no_collector: u64,
    /// Dropped: the collectd's queue was full.
    pub collector_full: u64,
    /// Dropped: too large.
    pub too_large: u64,
    /// Dropped: another error.
    pub failed: u64,
}

impl SendCounters {
    /// Every datagram dropped.
    #[must_use]
    pub const fn dropped(&self) -> u64 {
        self.no_collector + self.collector_full + self.too_large + self.failed
    }
}

/// A client of one collectd socket.
#[derive(Debug)]
pub struct TlsRptClient {
    socket: UnixDatagram,
    path: PathBuf,
    counters: SendCounters,
}

impl TlsRptClient {
    /// A client for the collectd socket at `path` (nothing is sent or checked yet: a collectd
    /// started later is found by the first datagram after it).
    ///
    /// # Errors
    ///
    /// The process cannot make a socket (out of descriptors).
    pub fn new(path: &Path) -> io::Result<Self> {
        let socket = UnixDatagram::unbound()?;
        socket.set_nonblocking(true)?;
        Ok(Self {
            socket,
            path: path.to_owned(),
            counters: SendCounters::default(),
        })
    }

    /// The collectd socket.
    #[must_use]
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Sends one datagram, without waiting.
    pub fn send(&mut self, datagram: &Datagram) -> Sent {
        let text = datagram.encode();
        let sent = if text.len() > MAX_DATAGRAM_BYTES {
            Sent::TooLarge { bytes: text.len() }
        } else {
            match self.socket.send_to(text.as_bytes(), &self.path) {
                Ok(bytes) => Sent::Sent { bytes },
                Err(e) => classify(e, text.len()),
            }
        };
        let counter = match &sent {
            Sent::Sent { .. } => &mut self.counters.sent,
            Sent::NoCollector(_) => &mut self.counters.no_collector,
            Sent::CollectorFull(_) => &mut self.counters.collector_full,
            Sent::TooLarge { .. } => &mut self.counters.too_large,
            Sent::Failed(_) => &mut self.counters.failed,
        };
        *counter += 1;
        sent
    }

    /// The counts so far.
    #[must_use]
    pub const fn counters(&self) -> SendCounters {
        self.counters
    }
}

fn classify(error: io::Error, bytes: usize) -> Sent {
    use rustix::io::Errno;
    let errno = error.raw_os_error().map(Errno::from_raw_os_error);
    match (error.kind(), errno) {
        (io::ErrorKind::NotFound | io::ErrorKind::ConnectionRefused, _) => Sent::NoCollector(error),
        (io::ErrorKind::WouldBlock, _) => Sent::CollectorFull(error),
        (_, Some(Errno::NOBUFS)) => Sent::CollectorFull(error),
        (_, Some(Errno::MSGSIZE)) => Sent::TooLarge { bytes },
        // A socket file whose collectd died leaves a path that refuses (handled above) or, when
        // it is not a socket at all, this.
        (_, Some(Errno::NOTSOCK | Errno::PROTOTYPE)) => Sent::NoCollector(error),
        _ => Sent::Failed(error),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tlsrpt::datagram::{PolicyResult, ReportPolicy};

    fn datagram(record: &str) -> Datagram {
        Datagram {
            domain: "example.org".to_owned(),
            record: record.to_owned(),
            policies: vec![PolicyResult {
                policy: ReportPolicy::no_policy_found("example.org"),
                failures: Vec::new(),
                failed: false,
            }],
        }
    }

    #[test]
    fn a_listening_socket_gets_the_datagram_whole() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("collectd.sock");
        let collectd = UnixDatagram::bind(&path).unwrap();
        let mut client = TlsRptClient::new(&path).unwrap();
        let sent = client.send(&datagram("v=TLSRPTv1; rua=mailto:a@example.org"));
        assert!(matches!(sent, Sent::Sent { .. }), "{sent:?}");
        let mut buffer = vec![0; 70_000];
        let n = collectd.recv(&mut buffer).unwrap();
        assert_eq!(
            std::str::from_utf8(&buffer[..n]).unwrap(),
            datagram("v=TLSRPTv1; rua=mailto:a@example.org").encode()
        );
        assert_eq!(client.counters().sent, 1);
    }

    #[test]
    fn an_absent_collectd_is_counted_not_fatal() {
        let dir = tempfile::tempdir().unwrap();
        let mut client = TlsRptClient::new(&dir.path().join("none.sock")).unwrap();
        let sent = client.send(&datagram("v=TLSRPTv1; rua=mailto:a@example.org"));
        assert!(matches!(sent, Sent::NoCollector(_)), "{sent:?}");
        assert!(
            sent.problem(client.path())
                .unwrap()
                .contains("no tlsrpt-collectd")
        );
        // A dead collectd's socket file refuses.
        let path = dir.path().join("dead.sock");
        drop(UnixDatagram::bind(&path).unwrap());
        let mut client = TlsRptClient::new(&path).unwrap();
        let sent = client.send(&datagram("v=TLSRPTv1; rua=mailto:a@example.org"));
        assert!(matches!(sent, Sent::NoCollector(_)), "{sent:?}");
        assert_eq!(client.counters().no_collector, 1);
    }

    /// A collectd that stops reading: Linux queues a few datagrams per socket
    /// (`net.unix.max_dgram_qlen`), then the send would block; it must not.
    #[test]
    fn a_full_collectd_never_blocks_the_sender() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("slow.sock");
        let _collectd = UnixDatagram::bind(&path).unwrap();
        let mut client = TlsRptClient::new(&path).unwrap();
        for _ in 0..2_000 {
            let _ = client.send(&datagram("v=TLSRPTv1; rua=mailto:a@example.org"));
        }
        let counters = client.counters();
        assert!(counters.collector_full > 0, "{counters:?}");
        assert_eq!(
            counters.sent + counters.collector_full,
            2_000,
            "{counters:?}"
        );
    }

    #[test]
    fn an_oversized_datagram_is_not_sent() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("collectd.sock");
        let collectd = UnixDatagram::bind(&path).unwrap();
        collectd.set_nonblocking(true).unwrap();
        let mut client = TlsRptClient::new(&path).unwrap();
        let huge = format!("v=TLSRPTv1; rua=mailto:{}@example.org", "a".repeat(70_000));
        let sent = client.send(&datagram(&huge));
        assert!(matches!(sent, Sent::TooLarge { .. }), "{sent:?}");
        assert!(collectd.recv(&mut [0; 16]).is_err(), "nothing arrived");
        assert_eq!(client.counters().too_large, 1);
        assert_eq!(client.counters().dropped(), 1);
    }
}
