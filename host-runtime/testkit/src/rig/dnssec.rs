//! A DNSSEC-signed fake root with signed, unsigned and broken children, served by NSD, with unbound validating in front.
//!
//! [`DnssecRig::start`] makes a fresh ECDSAP256SHA256 key per signed zone (`dnssec-keygen -a
//! ECDSAP256SHA256 -f KSK`, one CSK each), writes and signs the zones (`dnssec-signzone -z -s
//! now-3600 -e now+30d`, so nothing with an expiry is ever committed), and starts:
//! - `nsd` ([`DnssecRig::nsd_addr`]): authoritative for the root `.`, `test.` and every child
//!   zone the [`RigSpec`] lists, over UDP and TCP on one port;
//! - `unbound` ([`DnssecRig::unbound_addr`]): a validating forwarder to NSD anchored at the rig's
//!   root (the `trust-ad` mode's resolver: AD on secure answers, SERVFAIL on bogus ones), and
//!   also on `IP:53` when the spec asks ([`RigSpec::resolver_on`], [`DnssecRig::resolver_ip`]),
//!   for programs that use libc's resolver, such as Postfix ([`crate::rig::resolv`]);
//! - a small DNS front in this process ([`DnssecRig::direct_addr`]): NSD's answers relayed as
//!   they are, except SERVFAIL for every name in a [`Signing::Servfail`] child. NSD cannot answer
//!   SERVFAIL, so this front is where SERVFAIL comes from, for unbound (which forwards those
//!   children to it) and for a resolver that validates itself against
//!   [`DnssecRig::trust_anchor_file`].
//!
//! Everything lives in one temporary directory; dropping the rig stops both servers by pid and
//! removes it. A watchdog shell, whose stdin is a pipe from this process, does the same if the
//! process ends without dropping the rig (a rig in a `static` is never dropped).
//!
//! A test declares its names as zone-file lines of child zones of `test.`:
//! ```no_run
//! use tlsfallback_testkit::rig::dnssec::{ChildZone, DnssecRig, RigSpec, Signing};
//! let spec = RigSpec::new().child(
//!     ChildZone::new("secure", Signing::Signed)
//!         .record("@ IN MX 10 mx")
//!         .record("mx 300 IN A 127.0.0.1")
//!         .record("_25._tcp.mx IN TLSA 3 1 1 0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"),
//! );
//! let rig = DnssecRig::start(&spec)?;
//! // rig.unbound_addr(), rig.direct_addr(), rig.trust_anchor_file() ...
//! # Ok::<(), tlsfallback_testkit::rig::dnssec::RigError>(())
//! ```

use std::fmt::Write as _;
use std::io::{self, Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::thread::JoinHandle;
use std::time::Duration;

use hickory_proto::op::{Edns, Message, MessageType, OpCode, Query, ResponseCode};
use hickory_proto::rr::{Name, RecordType};

use tlsfallback_mta::clock::{Deadline, Stopwatch};

/// The zone every child is delegated from (the root delegates it; it delegates the children).
pub const PARENT_ZONE: &str = "test.";

/// How long signatures made at set-up stay valid (they start an hour in the past, for clock skew).
const SIGNATURE_VALIDITY_SECS: u64 = 30 * 24 * 3600;

/// How long [`DnssecRig::start`] waits for each server to answer before giving up.
const READY_WITHIN: Duration = Duration::from_secs(10);

/// How long the rig waits for a server to stop after SIGTERM before it sends SIGKILL.
const STOP_WITHIN: Duration = Duration::from_secs(3);

/// The EDNS buffer size the rig's own queries advertise: the DNS flag day 2020 value, which NSD
/// and unbound also use by default, so an RRset above it is truncated over UDP.
pub const EDNS_PAYLOAD: u16 = 1232;

/// What went wrong starting a rig.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RigError {
    /// A program the rig runs is not installed.
    #[error("`{tool}` is not installed (install the Debian package `{package}`)")]
    MissingTool {
        /// The program looked for in `$PATH`, /usr/sbin and /usr/bin.
        tool: &'static str,
        /// The Debian package that ships it.
        package: &'static str,
    },
    /// The spec cannot be turned into zones (a bad label, a duplicate child, a bad record line).
    #[error("bad rig spec: {0}")]
    BadSpec(String),
    /// A file, directory, socket or process operation failed.
    #[error("{doing}: {source}")]
    Io {
        /// What the rig was doing.
        doing: String,
        /// The underlying error.
        source: io::Error,
    },
    /// One of BIND's tools (key generation, signing, DS) failed.
    #[error("`{command}` failed ({status}): {stderr}")]
    ToolFailed {
        /// The command line.
        command: String,
        /// How it ended.
        status: ExitStatus,
        /// What it wrote to stderr.
        stderr: String,
    },
    /// A server did not start answering as it should; `log` is the end of its log.
    #[error("{server} is not ready: {why}\n--- {server} log ---\n{log}")]
    NotReady {
        /// `nsd` or `unbound`.
        server: &'static str,
        /// What the rig saw instead.
        why: String,
        /// The end of the server's log file.
        log: String,
    },
}

fn io_error(doing: impl Into<String>) -> impl FnOnce(io::Error) -> RigError {
    let doing = doing.into();
    move |source| RigError::Io { doing, source }
}

/// How a child zone of `test.` is (or is not) signed, and so what a validator makes of it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Signing {
    /// Signed, with its DS in `test.`: answers validate Secure (AD from unbound).
    Signed,
    /// Not signed and no DS in `test.` (the NSEC there proves it): answers are Insecure.
    Unsigned,
    /// Signed, but `test.` holds the DS of another key: answers are Bogus (SERVFAIL from unbound).
    BrokenDs,
    /// Signed with the right DS, but every signature expired a day ago: answers are Bogus.
    ExpiredSignatures,
    /// Delegated from `test.` (no DS) but never answered: every query for a name in it gets
    /// SERVFAIL, from the rig's front ([`DnssecRig::direct_addr`]) and from unbound. It has no
    /// records (a spec giving it some is refused, since they would never be served).
    Servfail,
}

/// A child zone `<label>.test.` and its records.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChildZone {
    label: String,
    signing: Signing,
    records: Vec<String>,
}

impl ChildZone {
    /// The zone `<label>.test.` (`label` may have dots: `a.b` is `a.b.test.`), without records.
    #[must_use]
    pub fn new(label: &str, signing: Signing) -> Self {
        Self {
            label: label.trim_end_matches('.').to_ascii_lowercase(),
            signing,
            records: Vec::new(),
        }
    }

    /// Adds one zone-file line, relative to the zone (`$ORIGIN` is the zone, `$TTL` 300): `"mx
    /// 300 IN A 127.0.0.1"`, `"@ IN MX 10 mx"`, `"_25._tcp.mx IN TLSA 3 1 1 <hex>"`,
    /// `"www IN CNAME mx.other.test."`. The SOA and the apex NS are the rig's.
    #[must_use]
    pub fn record(mut self, line: impl Into<String>) -> Self {
        self.records.push(line.into());
        self
    }

    /// Adds zone-file lines, as [`ChildZone::record`] does for one.
    #[must_use]
    pub fn records<S: Into<String>>(mut self, lines: impl IntoIterator<Item = S>) -> Self {
        self.records.extend(lines.into_iter().map(Into::into));
        self
    }

    /// The zone's name, fully qualified: `secure.test.`.
    #[must_use]
    pub fn name(&self) -> String {
        format!("{}.{PARENT_ZONE}", self.label)
    }

    /// How the zone is signed.
    #[must_use]
    pub fn signing(&self) -> Signing {
        self.signing
    }

    fn check(&self) -> Result<(), RigError> {
        let label_ok = |l: &str| {
            !l.is_empty()
                && l.len() <= 63
                && l.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        };
        if !self.label.split('.').all(label_ok) {
            return Err(RigError::BadSpec(format!(
                "{:?} is not a child label (letters, digits, '-', '_', dot-separated)",
                self.label
            )));
        }
        if self.signing == Signing::Servfail && !self.records.is_empty() {
            return Err(RigError::BadSpec(format!(
                "{} answers SERVFAIL: its {} records would never be served",
                self.name(),
                self.records.len()
            )));
        }
        for line in &self.records {
            // One record per line, and no directives: a line cannot reach outside its zone.
            if line.trim().is_empty()
                || line.contains(['\n', '\r'])
                || line.trim_start().starts_with('$')
            {
                return Err(RigError::BadSpec(format!(
                    "{line:?} in {} is not one zone-file record line",
                    self.name()
                )));
            }
        }
        Ok(())
    }
}

/// The child zones a rig serves. Specs compose: a rig shared by several tests is started from
/// the [`RigSpec::merge`] of theirs.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RigSpec {
    children: Vec<ChildZone>,
    resolver_ip: Option<Ipv4Addr>,
}

impl RigSpec {
    /// A spec without children (the rig still serves `.` and `test.`).
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a child zone.
    #[must_use]
    pub fn child(mut self, zone: ChildZone) -> Self {
        self.children.push(zone);
        self
    }

    /// Both specs' children (a child in both is refused by [`DnssecRig::start`]), and this
    /// spec's [`RigSpec::resolver_on`] address, or else the other's.
    #[must_use]
    pub fn merge(mut self, other: Self) -> Self {
        self.children.extend(other.children);
        self.resolver_ip = self.resolver_ip.or(other.resolver_ip);
        self
    }

    /// unbound also listens on `ip` port 53 (UDP and TCP), besides its free port: the one
    /// address a libc resolver can be pointed at, since `resolv.conf` has no port (see
    /// [`crate::rig::resolv`]). [`unique_loopback_ip`] picks an `ip` no other rig uses.
    #[must_use]
    pub fn resolver_on(mut self, ip: Ipv4Addr) -> Self {
        self.resolver_ip = Some(ip);
        self
    }

    /// The address given to [`RigSpec::resolver_on`].
    #[must_use]
    pub fn resolver_ip(&self) -> Option<Ipv4Addr> {
        self.resolver_ip
    }

    /// The child zones, in the order they were added.
    #[must_use]
    pub fn children(&self) -> &[ChildZone] {
        &self.children
    }
}

/// TXT record lines at `owner` whose RRset is at least `at_least` bytes of text: 255-byte strings,
/// several per record. Over [`EDNS_PAYLOAD`] the RRset does not fit a UDP answer (TC set), so a
/// resolver must retry over TCP.
#[must_use]
pub fn big_txt(owner: &str, at_least: usize) -> Vec<String> {
    let mut lines = Vec::new();
    let mut written = 0;
    let mut record = 0;
    while written < at_least {
        // Distinct contents: identical records would be one record.
        let filler = format!("{record:04}-");
        let text: String = filler.chars().cycle().take(255).collect();
        lines.push(format!("{owner} IN TXT \"{text}\" \"{text}\""));
        written += 2 * 255;
        record += 1;
    }
    lines
}

/// A transport for [`ask`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Transport {
    /// One datagram each way (an answer over [`EDNS_PAYLOAD`] comes back truncated).
    Udp,
    /// DNS over TCP (RFC 7766): two-byte length, then the message.
    Tcp,
}

/// Asks `server` for `name` (fully qualified or not) and `record_type` with RD and DO set and an
/// EDNS buffer of [`EDNS_PAYLOAD`], waiting at most `timeout`; the answer, whatever its code.
///
/// # Errors
///
/// No answer in time, an unreadable answer, or an answer to another query id.
pub fn ask(
    server: SocketAddr,
    name: &str,
    record_type: RecordType,
    transport: Transport,
    timeout: Duration,
) -> io::Result<Message> {
    let fqdn = format!("{}.", name.trim_end_matches('.'));
    let name = Name::from_ascii(&fqdn)
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, format!("{fqdn:?}: {e}")))?;
    let id = u16::try_from(getrandom::u32().map_err(io::Error::other)? & 0xffff).unwrap_or(0);
    let mut query = Message::new(id, MessageType::Query, OpCode::Query);
    query.metadata.recursion_desired = true;
    query.add_query(Query::query(name, record_type));
    let mut edns = Edns::new();
    edns.set_max_payload(EDNS_PAYLOAD);
    edns.set_dnssec_ok(true);
    query.set_edns(edns);
    let bytes = query.to_vec().map_err(io::Error::other)?;
    let answer = match transport {
        Transport::Udp => exchange_udp(server, &bytes, timeout)?,
        Transport::Tcp => exchange_tcp(server, &bytes, timeout)?,
    };
    let answer = Message::from_vec(&answer)
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e.to_string()))?;
    if answer.metadata.id != id {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "an answer to another query id",
        ));
    }
    Ok(answer)
}

fn exchange_udp(server: SocketAddr, query: &[u8], timeout: Duration) -> io::Result<Vec<u8>> {
    let socket = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0))?;
    socket.connect(server)?;
    socket.set_read_timeout(Some(timeout))?;
    socket.send(query)?;
    let mut buffer = vec![0u8; 65535];
    let len = socket.recv(&mut buffer)?;
    buffer.truncate(len);
    Ok(buffer)
}

fn exchange_tcp(server: SocketAddr, query: &[u8], timeout: Duration) -> io::Result<Vec<u8>> {
    let mut stream = TcpStream::connect_timeout(&server, timeout)?;
    stream.set_read_timeout(Some(timeout))?;
    stream.set_write_timeout(Some(timeout))?;
    write_framed(&mut stream, query)?;
    read_framed(&mut stream)
}

fn write_framed(stream: &mut TcpStream, message: &[u8]) -> io::Result<()> {
    let len = u16::try_from(message.len())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "message over 65535 bytes"))?;
    let mut framed = len.to_be_bytes().to_vec();
    framed.extend_from_slice(message);
    stream.write_all(&framed)
}

fn read_framed(stream: &mut TcpStream) -> io::Result<Vec<u8>> {
    let mut len = [0u8; 2];
    stream.read_exact(&mut len)?;
    let mut message = vec![0u8; usize::from(u16::from_be_bytes(len))];
    stream.read_exact(&mut message)?;
    Ok(message)
}

/// The programs the rig runs, each with the Debian package that ships it.
const TOOLS: [(&str, &str); 5] = [
    ("nsd", "nsd"),
    ("unbound", "unbound"),
    ("dnssec-keygen", "bind9-utils"),
    ("dnssec-signzone", "bind9-utils"),
    ("dnssec-dsfromkey", "bind9-utils"),
];

/// Where `tool` is: `$PATH`, then /usr/sbin and /usr/bin (a user's `$PATH` often lacks sbin).
fn find_tool(tool: &'static str) -> Result<PathBuf, RigError> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    let dirs = std::env::split_paths(&path)
        .chain([PathBuf::from("/usr/sbin"), PathBuf::from("/usr/bin")])
        .collect::<Vec<_>>();
    find_tool_in(tool, &dirs)
}

/// Where `tool` is in `dirs`, or the error naming the package that ships it.
fn find_tool_in(tool: &'static str, dirs: &[PathBuf]) -> Result<PathBuf, RigError> {
    let package = TOOLS
        .iter()
        .find(|(name, _)| *name == tool)
        .map_or("?", |(_, package)| package);
    dirs.iter()
        .map(|dir| dir.join(tool))
        .find(|candidate| candidate.is_file())
        .ok_or(RigError::MissingTool { tool, package })
}

/// Runs all `commands` at once and returns their outputs (stdout) in order.
fn run_all(commands: Vec<Command>) -> Result<Vec<String>, RigError> {
    let mut running = Vec::new();
    for mut command in commands {
        let shown = format!("{command:?}");
        let child = command
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(io_error(format!("running {shown}")))?;
        running.push((shown, child));
    }
    let mut outputs = Vec::new();
    for (shown, child) in running {
        let output = child
            .wait_with_output()
            .map_err(io_error(format!("waiting for {shown}")))?;
        if !output.status.success() {
            return Err(RigError::ToolFailed {
                command: shown,
                status: output.status,
                stderr: String::from_utf8_lossy(&output.stderr).trim().to_owned(),
            });
        }
        outputs.push(String::from_utf8_lossy(&output.stdout).into_owned());
    }
    Ok(outputs)
}

/// A zone the rig serves from NSD, with its keys once generated.
struct Zone {
    /// Fully qualified, lowercase (`.`, `test.`, `secure.test.`).
    name: String,
    /// `None`: unsigned.
    signing: Option<Signing>,
    /// The file name (in the rig's directory) NSD loads.
    file: String,
}

/// The servers the rig started; stopped by pid when dropped.
struct Servers {
    children: Vec<(&'static str, Child)>,
}

impl Drop for Servers {
    fn drop(&mut self) {
        for (_, child) in &self.children {
            let _ = rustix::process::kill_process(
                rustix::process::Pid::from_child(child),
                rustix::process::Signal::TERM,
            );
        }
        let deadline = Deadline::after(STOP_WITHIN);
        for (_, child) in &mut self.children {
            while matches!(child.try_wait(), Ok(None)) && !deadline.left().is_zero() {
                std::thread::sleep(Duration::from_millis(10));
            }
            if matches!(child.try_wait(), Ok(None)) {
                let _ = child.kill();
            }
            let _ = child.wait();
        }
    }
}

/// The in-process DNS front: relays to NSD, answers SERVFAIL for the `Servfail` children.
struct Front {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<()>>,
}

impl Drop for Front {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wake the threads blocked in recv and accept.
        if let Ok(socket) = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)) {
            let _ = socket.send_to(&[0], self.addr);
        }
        let _ = TcpStream::connect_timeout(&self.addr, Duration::from_secs(1));
        for thread in self.threads.drain(..) {
            let _ = thread.join();
        }
    }
}

/// What the front does with a query.
struct FrontRules {
    /// Fully qualified, lowercase zones whose every name gets SERVFAIL.
    servfail_zones: Vec<String>,
    nsd: SocketAddr,
}

impl FrontRules {
    /// The answer to send back for `query`, or `None` to drop it (unreadable, or NSD silent).
    fn answer(&self, query: &[u8], transport: Transport) -> Option<Vec<u8>> {
        let message = Message::from_vec(query).ok()?;
        let name = message
            .queries
            .first()?
            .name()
            .to_ascii()
            .to_ascii_lowercase();
        let in_servfail_zone = self
            .servfail_zones
            .iter()
            .any(|zone| name == *zone || name.ends_with(&format!(".{zone}")));
        if in_servfail_zone {
            let mut response = Message::error_msg(
                message.metadata.id,
                message.metadata.op_code,
                ResponseCode::ServFail,
            );
            response.metadata.recursion_desired = message.metadata.recursion_desired;
            response.metadata.recursion_available = true;
            response.add_queries(message.queries);
            return response.to_vec().ok();
        }
        let timeout = Duration::from_secs(3);
        match transport {
            Transport::Udp => exchange_udp(self.nsd, query, timeout).ok(),
            Transport::Tcp => exchange_tcp(self.nsd, query, timeout).ok(),
        }
    }
}

/// Starts the front on `udp` and `tcp` (bound to the same port).
fn start_front(udp: UdpSocket, tcp: TcpListener, rules: FrontRules) -> Result<Front, RigError> {
    let addr = udp
        .local_addr()
        .map_err(io_error("reading the front's address"))?;
    let stop = Arc::new(AtomicBool::new(false));
    let rules = Arc::new(rules);
    let udp_thread = {
        let (stop, rules) = (Arc::clone(&stop), Arc::clone(&rules));
        std::thread::Builder::new()
            .name("dnssec-rig-front-udp".into())
            .spawn(move || {
                let mut buffer = vec![0u8; 65535];
                while !stop.load(Ordering::SeqCst) {
                    let Ok((len, from)) = udp.recv_from(&mut buffer) else {
                        continue;
                    };
                    if let Some(answer) = rules.answer(&buffer[..len], Transport::Udp) {
                        let _ = udp.send_to(&answer, from);
                    }
                }
            })
            .map_err(io_error("starting the front's UDP thread"))?
    };
    let tcp_thread = {
        let (stop, rules) = (Arc::clone(&stop), Arc::clone(&rules));
        std::thread::Builder::new()
            .name("dnssec-rig-front-tcp".into())
            .spawn(move || {
                for stream in tcp.incoming() {
                    if stop.load(Ordering::SeqCst) {
                        break;
                    }
                    let Ok(mut stream) = stream else { continue };
                    let rules = Arc::clone(&rules);
                    // One thread per connection; a connection serves queries until it closes
                    // or idles for 10 s.
                    let _ = std::thread::Builder::new()
                        .name("dnssec-rig-front-conn".into())
                        .spawn(move || {
                            let _ = stream.set_read_timeout(Some(Duration::from_secs(10)));
                            while let Ok(query) = read_framed(&mut stream) {
                                let Some(answer) = rules.answer(&query, Transport::Tcp) else {
                                    break;
                                };
                                if write_framed(&mut stream, &answer).is_err() {
                                    break;
                                }
                            }
                        });
                }
            })
            .map_err(io_error("starting the front's TCP thread"))?
    };
    Ok(Front {
        addr,
        stop,
        threads: vec![udp_thread, tcp_thread],
    })
}

/// A loopback port free for both UDP and TCP, with both sockets still bound.
fn bind_free_port() -> Result<(UdpSocket, TcpListener), RigError> {
    let mut last = None;
    for _ in 0..50 {
        let udp = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0))
            .map_err(io_error("binding a loopback UDP port"))?;
        let port = udp
            .local_addr()
            .map_err(io_error("reading a bound port"))?
            .port();
        match TcpListener::bind((Ipv4Addr::LOCALHOST, port)) {
            Ok(tcp) => return Ok((udp, tcp)),
            Err(e) => last = Some(e),
        }
    }
    Err(RigError::Io {
        doing: "finding a loopback port free for UDP and TCP".into(),
        source: last.unwrap_or_else(|| io::Error::other("no port")),
    })
}

/// A loopback port free for both UDP and TCP right now, for a server to bind.
fn free_port() -> Result<u16, RigError> {
    let (udp, _tcp) = bind_free_port()?;
    Ok(udp
        .local_addr()
        .map_err(io_error("reading a bound port"))?
        .port())
}

/// The loopback addresses [`unique_loopback_ip`] handed out in this process: their port 53 is
/// free until the rig that asked binds it, so without this two rigs starting at once could get
/// the same one.
static HANDED_OUT: std::sync::Mutex<Vec<Ipv4Addr>> = std::sync::Mutex::new(Vec::new());

/// A loopback address `127.53.x.y` whose port 53 is free for UDP and TCP right now, for
/// [`RigSpec::resolver_on`]: random (so test processes running at once do not collide), never
/// the same twice in one process. Binding port 53 needs root or `CAP_NET_BIND_SERVICE`.
///
/// # Errors
///
/// No free address after many tries (the last bind error, e.g. permission denied).
pub fn unique_loopback_ip() -> Result<Ipv4Addr, RigError> {
    let mut last = None;
    for _ in 0..200 {
        let random = getrandom::u32().map_err(|e| RigError::Io {
            doing: "drawing a random loopback address".into(),
            source: io::Error::other(e),
        })?;
        let [_, _, x, y] = random.to_be_bytes();
        // .0 and .255 look like network and broadcast addresses to people reading logs.
        let ip = Ipv4Addr::new(127, 53, x.clamp(1, 254), y.clamp(1, 254));
        let mut handed_out = HANDED_OUT
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if handed_out.contains(&ip) {
            continue;
        }
        let free = UdpSocket::bind((ip, 53)).and_then(|_udp| TcpListener::bind((ip, 53)));
        match free {
            Ok(_) => {
                handed_out.push(ip);
                return Ok(ip);
            }
            Err(e) => last = Some(e),
        }
    }
    Err(RigError::Io {
        doing: "finding a loopback address whose port 53 is free (binding port 53 needs root)"
            .into(),
        source: last.unwrap_or_else(|| io::Error::other("every address tried was taken")),
    })
}

/// The last lines of a log file, for an error message.
fn log_tail(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(40)..].join("\n")
}

/// A running rig: NSD, unbound and the front on loopback, the zones and keys in a temporary
/// directory. Dropping it stops the servers and removes the directory.
pub struct DnssecRig {
    // Field order is drop order: the watchdog first (so it does not act), then the servers, the
    // front, and last the directory.
    watchdog: Option<(Child, ChildStdin)>,
    _servers: Servers,
    _front: Front,
    dir: tempfile::TempDir,
    nsd: SocketAddr,
    unbound: SocketAddr,
    direct: SocketAddr,
    children: Vec<ChildZone>,
    resolver_ip: Option<Ipv4Addr>,
    started_in: Duration,
}

impl Drop for DnssecRig {
    fn drop(&mut self) {
        if let Some((mut watchdog, _stdin)) = self.watchdog.take() {
            let _ = watchdog.kill();
            let _ = watchdog.wait();
        }
    }
}

impl std::fmt::Debug for DnssecRig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DnssecRig")
            .field("dir", &self.dir.path())
            .field("nsd", &self.nsd)
            .field("unbound", &self.unbound)
            .field("direct", &self.direct)
            .field("resolver_ip", &self.resolver_ip)
            .finish_non_exhaustive()
    }
}

impl DnssecRig {
    /// Generates keys, signs the zones, starts NSD, unbound and the front on free loopback ports,
    /// and returns once each answers (NSD serves every zone; unbound validates `test.`).
    ///
    /// # Errors
    ///
    /// A missing program (naming its package), a bad spec, a failing tool, or a server that does
    /// not come up (with the end of its log).
    pub fn start(spec: &RigSpec) -> Result<Self, RigError> {
        let began = Stopwatch::start();
        let nsd_bin = find_tool("nsd")?;
        let unbound_bin = find_tool("unbound")?;
        let keygen = find_tool("dnssec-keygen")?;
        let signzone = find_tool("dnssec-signzone")?;
        let dsfromkey = find_tool("dnssec-dsfromkey")?;

        let mut names = std::collections::HashSet::new();
        for child in &spec.children {
            child.check()?;
            if !names.insert(child.name()) {
                return Err(RigError::BadSpec(format!(
                    "{} is declared twice (merge the records into one ChildZone)",
                    child.name()
                )));
            }
        }

        let dir = tempfile::Builder::new()
            .prefix("tlsfallback-dnssec-rig-")
            .tempdir()
            .map_err(io_error("creating the rig's directory"))?;
        let path = dir.path().to_owned();
        let keys_dir = path.join("keys");
        let decoys_dir = path.join("decoys");
        for d in [&keys_dir, &decoys_dir] {
            std::fs::create_dir(d).map_err(io_error(format!("creating {}", d.display())))?;
        }

        let mut zones = vec![
            Zone {
                name: ".".into(),
                signing: Some(Signing::Signed),
                file: "root.zone".into(),
            },
            Zone {
                name: PARENT_ZONE.into(),
                signing: Some(Signing::Signed),
                file: "test.zone".into(),
            },
        ];
        for child in &spec.children {
            if child.signing != Signing::Servfail {
                zones.push(Zone {
                    name: child.name(),
                    signing: (child.signing != Signing::Unsigned).then_some(child.signing),
                    file: format!("{}.zone", child.label),
                });
            }
        }

        // Wave 1: one CSK per signed zone, and a decoy key (whose DS `test.` publishes) per
        // BrokenDs zone.
        let keygen_for = |zone: &str, dir: &Path| {
            let mut command = Command::new(&keygen);
            command
                .args([
                    "-q",
                    "-a",
                    "ECDSAP256SHA256",
                    "-f",
                    "KSK",
                    "-n",
                    "ZONE",
                    "-K",
                ])
                .arg(dir)
                .arg(zone);
            command
        };
        let signed: Vec<&Zone> = zones.iter().filter(|z| z.signing.is_some()).collect();
        let broken: Vec<&Zone> = signed
            .iter()
            .copied()
            .filter(|z| z.signing == Some(Signing::BrokenDs))
            .collect();
        let mut commands: Vec<Command> = signed
            .iter()
            .map(|z| keygen_for(&z.name, &keys_dir))
            .collect();
        commands.extend(broken.iter().map(|z| keygen_for(&z.name, &decoys_dir)));
        let key_names: Vec<String> = run_all(commands)?
            .into_iter()
            .map(|out| out.trim().to_owned())
            .collect();
        let key_file = |dir: &Path, base: &str| dir.join(format!("{base}.key"));
        let (zone_keys, decoy_keys) = key_names.split_at(signed.len());
        let key_of = |zone: &str| -> Option<PathBuf> {
            let at = signed.iter().position(|z| z.name == zone)?;
            Some(key_file(&keys_dir, &zone_keys[at]))
        };

        // Wave 2: the DS records (the decoy's for a BrokenDs zone).
        let ds_key_of = |zone: &Zone| -> Option<PathBuf> {
            match zone.signing? {
                Signing::BrokenDs => {
                    let at = broken.iter().position(|z| z.name == zone.name)?;
                    Some(key_file(&decoys_dir, &decoy_keys[at]))
                }
                _ => key_of(&zone.name),
            }
        };
        let ds_zones: Vec<&Zone> = zones.iter().filter(|z| z.name != ".").collect();
        let mut ds_commands = Vec::new();
        let mut ds_owners = Vec::new();
        for zone in &ds_zones {
            if let Some(key) = ds_key_of(zone) {
                let mut command = Command::new(&dsfromkey);
                command.arg("-2").arg(key);
                ds_commands.push(command);
                ds_owners.push(zone.name.clone());
            }
        }
        let root_ds_command = {
            let mut command = Command::new(&dsfromkey);
            command.arg("-2").arg(key_of(".").ok_or_else(|| {
                RigError::BadSpec("the root has no key (a bug in the rig)".into())
            })?);
            command
        };
        ds_commands.push(root_ds_command);
        let mut ds_lines = run_all(ds_commands)?;
        let root_ds = ds_lines.pop().unwrap_or_default();
        let ds_of = |zone: &str| -> Option<&str> {
            let at = ds_owners.iter().position(|z| z == zone)?;
            Some(ds_lines[at].trim())
        };

        // The zone files.
        let soa = "@ IN SOA ns.test. hostmaster.test. 1 3600 600 86400 300";
        let dnskey_of = |zone: &str| -> Result<String, RigError> {
            let Some(key) = key_of(zone) else {
                return Ok(String::new());
            };
            let text = std::fs::read_to_string(&key)
                .map_err(io_error(format!("reading {}", key.display())))?;
            Ok(text
                .lines()
                .filter(|l| !l.starts_with(';'))
                .collect::<Vec<_>>()
                .join("\n"))
        };
        let mut root = format!("$ORIGIN .\n$TTL 300\n{soa}\n@ IN NS ns.test.\n");
        root.push_str("test. IN NS ns.test.\nns.test. IN A 127.0.0.1\n");
        let _ = writeln!(root, "{}", ds_of(PARENT_ZONE).unwrap_or_default());
        let _ = writeln!(root, "{}", dnskey_of(".")?);
        let mut test = format!("$ORIGIN test.\n$TTL 300\n{soa}\n@ IN NS ns\nns IN A 127.0.0.1\n");
        for child in &spec.children {
            let _ = writeln!(test, "{} IN NS ns.test.", child.name());
            if let Some(ds) = ds_of(&child.name()) {
                let _ = writeln!(test, "{ds}");
            }
        }
        let _ = writeln!(test, "{}", dnskey_of(PARENT_ZONE)?);
        let mut texts = vec![root, test];
        for child in spec
            .children
            .iter()
            .filter(|c| c.signing != Signing::Servfail)
        {
            let mut text = format!(
                "$ORIGIN {}\n$TTL 300\n{soa}\n@ IN NS ns.test.\n",
                child.name()
            );
            for line in &child.records {
                let _ = writeln!(text, "{line}");
            }
            let _ = writeln!(text, "{}", dnskey_of(&child.name())?);
            texts.push(text);
        }
        for (zone, text) in zones.iter().zip(&texts) {
            let file = path.join(&zone.file);
            std::fs::write(&file, text).map_err(io_error(format!("writing {}", file.display())))?;
        }

        // Wave 3: signing. `-z`: the one key (a KSK) signs every RRset; `-P` for the expired
        // zone, whose post-sign verification fails by design.
        let mut sign_commands = Vec::new();
        for zone in &zones {
            let Some(signing) = zone.signing else {
                continue;
            };
            let (start, end) = if signing == Signing::ExpiredSignatures {
                ("now-172800".to_owned(), "now-86400".to_owned())
            } else {
                (
                    "now-3600".to_owned(),
                    format!("now+{SIGNATURE_VALIDITY_SECS}"),
                )
            };
            let mut command = Command::new(&signzone);
            command
                .current_dir(&path)
                .args(["-q", "-z", "-s", &start, "-e", &end, "-o", &zone.name])
                .arg("-d")
                .arg(&keys_dir)
                .arg("-f")
                .arg(format!("{}.signed", zone.file));
            if signing == Signing::ExpiredSignatures {
                command.arg("-P");
            }
            command
                .arg(&zone.file)
                .arg(key_of(&zone.name).unwrap_or_default());
            sign_commands.push(command);
        }
        run_all(sign_commands)?;

        let trust_anchor = path.join("root.dnskey");
        let root_ds_file = path.join("root.ds");
        std::fs::write(&trust_anchor, format!("{}\n", dnskey_of(".")?))
            .map_err(io_error("writing the trust anchor"))?;
        std::fs::write(&root_ds_file, root_ds.trim_start())
            .map_err(io_error("writing the root DS"))?;

        // The front first (its sockets stay bound), so unbound can forward to it.
        let nsd_port = free_port()?;
        let nsd = SocketAddr::from((Ipv4Addr::LOCALHOST, nsd_port));
        let (front_udp, front_tcp) = bind_free_port()?;
        let servfail_zones: Vec<String> = spec
            .children
            .iter()
            .filter(|c| c.signing == Signing::Servfail)
            .map(ChildZone::name)
            .collect();
        let front = start_front(
            front_udp,
            front_tcp,
            FrontRules {
                servfail_zones: servfail_zones.clone(),
                nsd,
            },
        )?;
        let direct = front.addr;

        let mut nsd_conf = format!(
            "server:\n  ip-address: 127.0.0.1@{nsd_port}\n  do-ip6: no\n  database: \"\"\n  \
             username: \"\"\n  chroot: \"\"\n  zonesdir: \"{d}\"\n  pidfile: \"{d}/nsd.pid\"\n  \
             logfile: \"{d}/nsd.log\"\n  xfrdfile: \"{d}/xfrd.state\"\n  xfrdir: \"{d}\"\n  \
             zonelistfile: \"{d}/zone.list\"\n  server-count: 1\n  verbosity: 1\n  \
             hide-version: yes\n  round-robin: no\n  reuseport: no\n\
             remote-control:\n  control-enable: no\n",
            d = path.display()
        );
        for zone in &zones {
            let file = if zone.signing.is_some() {
                format!("{}.signed", zone.file)
            } else {
                zone.file.clone()
            };
            let _ = write!(
                nsd_conf,
                "zone:\n  name: \"{}\"\n  zonefile: \"{file}\"\n",
                zone.name
            );
        }
        let nsd_conf_file = path.join("nsd.conf");
        std::fs::write(&nsd_conf_file, nsd_conf).map_err(io_error("writing nsd.conf"))?;

        let unbound_port = free_port()?;
        let unbound = SocketAddr::from((Ipv4Addr::LOCALHOST, unbound_port));
        let mut unbound_conf = format!(
            "server:\n  interface: 127.0.0.1@{unbound_port}\n  do-ip6: no\n  \
             access-control: 127.0.0.0/8 allow\n  do-not-query-localhost: no\n  \
             module-config: \"validator iterator\"\n  trust-anchor-file: \"{ds}\"\n  \
             local-zone: \"test.\" nodefault\n  username: \"\"\n  chroot: \"\"\n  \
             directory: \"{d}\"\n  pidfile: \"{d}/unbound.pid\"\n  logfile: \"{d}/unbound.log\"\n  \
             use-syslog: no\n  do-daemonize: no\n  num-threads: 1\n  so-reuseport: no\n  \
             outgoing-range: 64\n  num-queries-per-thread: 32\n  msg-cache-size: 1m\n  \
             rrset-cache-size: 1m\n  key-cache-size: 1m\n  verbosity: 1\n  val-log-level: 2\n  \
             ede: yes\n\
             remote-control:\n  control-enable: no\n\
             forward-zone:\n  name: \".\"\n  forward-addr: 127.0.0.1@{nsd_port}\n",
            ds = root_ds_file.display(),
            d = path.display()
        );
        for zone in &servfail_zones {
            let _ = write!(
                unbound_conf,
                "forward-zone:\n  name: \"{zone}\"\n  forward-addr: 127.0.0.1@{}\n",
                direct.port()
            );
        }
        if let Some(ip) = spec.resolver_ip {
            // The first `server:` clause goes on: unbound reads clauses in order, and a
            // `forward-zone:` cannot take an `interface:` line.
            unbound_conf =
                unbound_conf.replacen("server:\n", &format!("server:\n  interface: {ip}@53\n"), 1);
        }
        let unbound_conf_file = path.join("unbound.conf");
        std::fs::write(&unbound_conf_file, unbound_conf)
            .map_err(io_error("writing unbound.conf"))?;

        let mut servers = Servers {
            children: Vec::new(),
        };
        let spawn = |program: &Path, args: &[&std::ffi::OsStr], log: &Path| {
            let log = std::fs::File::create(log).map_err(io_error("creating a server's output"))?;
            let err = log.try_clone().map_err(io_error("duplicating a file"))?;
            Command::new(program)
                .args(args)
                .stdin(Stdio::null())
                .stdout(log)
                .stderr(err)
                .spawn()
                .map_err(io_error(format!("starting {}", program.display())))
        };
        // `-d`: NSD stays in the foreground, so its pid is the one we stop.
        let nsd_child = spawn(
            &nsd_bin,
            &["-d".as_ref(), "-c".as_ref(), nsd_conf_file.as_os_str()],
            &path.join("nsd.out"),
        )?;
        servers.children.push(("nsd", nsd_child));
        let unbound_child = spawn(
            &unbound_bin,
            &["-c".as_ref(), unbound_conf_file.as_os_str()],
            &path.join("unbound.out"),
        )?;
        servers.children.push(("unbound", unbound_child));

        // The watchdog: when this process ends without dropping the rig, its stdin closes and it
        // stops the servers and removes the directory.
        let pids: Vec<String> = servers
            .children
            .iter()
            .map(|(_, c)| c.id().to_string())
            .collect();
        let mut watchdog = Command::new("sh")
            .arg("-c")
            .arg(
                "read -r _; kill -TERM \"$@\" 2>/dev/null; sleep 1; kill -KILL \"$@\" 2>/dev/null; \
                 rm -rf -- \"$RIG_DIR\"",
            )
            .arg("sh")
            .args(&pids)
            .env("RIG_DIR", &path)
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(io_error("starting the rig's watchdog shell"))?;
        let watchdog_stdin = watchdog.stdin.take();

        let mut rig_servers = servers;
        let resolver = spec.resolver_ip.map(|ip| SocketAddr::from((ip, 53)));
        wait_ready(
            &mut rig_servers,
            &zones,
            nsd,
            &[Some(unbound), resolver],
            &path,
        )?;

        Ok(Self {
            watchdog: watchdog_stdin.map(|stdin| (watchdog, stdin)),
            _servers: rig_servers,
            _front: front,
            dir,
            nsd,
            unbound,
            direct,
            children: spec.children.clone(),
            resolver_ip: spec.resolver_ip,
            started_in: began.elapsed(),
        })
    }

    /// NSD: authoritative for `.`, `test.` and every child except the `Servfail` ones (UDP and
    /// TCP, one port). No recursion, no validation: bogus data comes back as it is.
    #[must_use]
    pub fn nsd_addr(&self) -> SocketAddr {
        self.nsd
    }

    /// unbound: validating, anchored at the rig's root; AD on secure answers, none on insecure
    /// ones, SERVFAIL on bogus ones and for the `Servfail` children (with an Extended DNS Error
    /// saying why). The server of the `trust-ad` mode.
    #[must_use]
    pub fn unbound_addr(&self) -> SocketAddr {
        self.unbound
    }

    /// The address where unbound also answers on port 53, when the spec asked for one
    /// ([`RigSpec::resolver_on`]): the same validating server as [`DnssecRig::unbound_addr`],
    /// for programs that use libc's resolver (through [`crate::rig::resolv::with_resolv_conf`]).
    #[must_use]
    pub fn resolver_ip(&self) -> Option<Ipv4Addr> {
        self.resolver_ip
    }

    /// NSD's answers, relayed as they are (UDP and TCP), but SERVFAIL for every name in a
    /// `Servfail` child: the server for a resolver that validates itself with
    /// [`DnssecRig::trust_anchor_file`], which then sees bogus data as bogus and SERVFAIL where
    /// the spec asks for it.
    #[must_use]
    pub fn direct_addr(&self) -> SocketAddr {
        self.direct
    }

    /// The root's DNSKEY in zone-file format (`. IN DNSKEY 257 3 13 ...`), as hickory's
    /// `TrustAnchors::from_file` reads it.
    #[must_use]
    pub fn trust_anchor_file(&self) -> PathBuf {
        self.dir.path().join("root.dnskey")
    }

    /// The root's DS (`. IN DS <tag> 13 2 <sha-256>`), unbound's `trust-anchor-file`.
    #[must_use]
    pub fn root_ds_file(&self) -> PathBuf {
        self.dir.path().join("root.ds")
    }

    /// The rig's directory: zones, keys, configurations and the servers' logs (`nsd.log`,
    /// `unbound.log`).
    #[must_use]
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The child zones served (a test can check the shared rig holds the ones it needs).
    #[must_use]
    pub fn children(&self) -> &[ChildZone] {
        &self.children
    }

    /// How long [`DnssecRig::start`] took, from the first key to both servers answering.
    #[must_use]
    pub fn started_in(&self) -> Duration {
        self.started_in
    }
}

/// Waits until NSD serves every zone (SOA, authoritative) and unbound validates `test.` (AD) on
/// each of its addresses, failing early when a server exits.
fn wait_ready(
    servers: &mut Servers,
    zones: &[Zone],
    nsd: SocketAddr,
    unbound: &[Option<SocketAddr>],
    dir: &Path,
) -> Result<(), RigError> {
    let deadline = Deadline::after(READY_WITHIN);
    let not_ready = |server: &'static str, why: String| RigError::NotReady {
        server,
        why,
        log: {
            let mut log = log_tail(&dir.join(format!("{server}.log")));
            let out = log_tail(&dir.join(format!("{server}.out")));
            if !out.is_empty() {
                log.push_str("\n--- output ---\n");
                log.push_str(&out);
            }
            log
        },
    };
    let mut check = |server: &'static str,
                     addr: SocketAddr,
                     name: &str,
                     good: &dyn Fn(&Message) -> Result<(), String>|
     -> Result<(), RigError> {
        let mut last;
        loop {
            if let Some((_, child)) = servers.children.iter_mut().find(|(s, _)| *s == server)
                && let Ok(Some(status)) = child.try_wait()
            {
                return Err(not_ready(server, format!("it exited ({status})")));
            }
            match ask(
                addr,
                name,
                RecordType::SOA,
                Transport::Udp,
                Duration::from_millis(200),
            ) {
                Ok(answer) => match good(&answer) {
                    Ok(()) => return Ok(()),
                    Err(why) => last = why,
                },
                Err(e) => last = e.to_string(),
            }
            if deadline.left().is_zero() {
                return Err(not_ready(
                    server,
                    format!("no good answer for {name} SOA within {READY_WITHIN:?}: {last}"),
                ));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    };
    for zone in zones {
        check("nsd", nsd, &zone.name, &|answer| {
            if answer.metadata.response_code == ResponseCode::NoError
                && answer.metadata.authoritative
            {
                Ok(())
            } else {
                Err(format!(
                    "{} (authoritative: {}): the zone did not load",
                    answer.metadata.response_code, answer.metadata.authoritative
                ))
            }
        })?;
    }
    for addr in unbound.iter().flatten() {
        check("unbound", *addr, PARENT_ZONE, &|answer| match (
            answer.metadata.response_code,
            answer.metadata.authentic_data,
        ) {
            (ResponseCode::NoError, true) => Ok(()),
            (ResponseCode::NoError, false) => {
                Err("test. answered without AD: the root anchor does not validate".into())
            }
            (code, _) => Err(code.to_string()),
        })?;
    }
    Ok(())
}

/// A rig started on first use and shared by the tests of one binary, in a `static`:
/// ```no_run
/// use tlsfallback_testkit::rig::dnssec::{ChildZone, RigSpec, SharedRig, Signing};
/// static RIG: SharedRig = SharedRig::new(|| {
///     RigSpec::new().child(ChildZone::new("secure", Signing::Signed).record("mx IN A 127.0.0.1"))
/// });
/// let rig = RIG.get().expect("the DNSSEC rig starts");
/// ```
/// A static is never dropped: the rig's watchdog stops the servers when the test binary exits.
/// Since all tests share it, its spec holds every test's records ([`RigSpec::merge`]).
pub struct SharedRig {
    spec: fn() -> RigSpec,
    rig: OnceLock<Result<DnssecRig, RigError>>,
}

impl SharedRig {
    /// A rig to be started from `spec()` on the first [`SharedRig::get`].
    #[must_use]
    pub const fn new(spec: fn() -> RigSpec) -> Self {
        Self {
            spec,
            rig: OnceLock::new(),
        }
    }

    /// The rig, started on the first call (by one thread; the others wait for it).
    ///
    /// # Errors
    ///
    /// Why it did not start (the same error for every caller).
    pub fn get(&self) -> Result<&DnssecRig, &RigError> {
        self.rig
            .get_or_init(|| DnssecRig::start(&(self.spec)()))
            .as_ref()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_server_or_signer_names_the_package_to_install() {
        let empty = tempfile::tempdir().unwrap();
        let dirs = [empty.path().to_owned()];
        for (tool, package) in TOOLS {
            let error = find_tool_in(tool, &dirs).unwrap_err();
            assert_eq!(
                error.to_string(),
                format!("`{tool}` is not installed (install the Debian package `{package}`)")
            );
        }
        assert!(find_tool_in("sh", &[PathBuf::from("/bin")]).is_ok());
    }
}
