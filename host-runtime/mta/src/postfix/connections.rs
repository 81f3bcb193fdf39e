//! The daemon's connections: accepting them within the connection and descriptor limits, and
//! framing each one's requests and replies on a thread of its own.
//!
//! Any local user can connect, so open connections are something an attacker can hold on to.
//! Three things keep Postfix from being locked out:
//!
//! - **The connection idle longest makes room.** At the limit, a new connection closes the one
//!   that has waited longest for its next request, rather than being refused. Postfix loses
//!   nothing by it: its socketmap client closes a connection idle for 10 s and any older than
//!   100 s itself (dict_sockmap's `max_idle` and `max_ttl`), and retries a lookup once on a
//!   connection that was closed under it. An attacker holding idle connections only ever holds
//!   the oldest ones, which go first. A connection waiting for the decider is never closed.
//! - **Descriptors are counted.** The soft descriptor limit is raised to the hard one at start,
//!   the connection limit is lowered to what the descriptors left allow ([`connection_limit`]),
//!   and each connection holds one descriptor. Should `accept` still fail for want of one, a
//!   spare descriptor is given up to take the waiting connection and answer it `TEMP`, rather
//!   than leaving it queued (where `accept` fails again at once, a busy loop).
//! - **Idle connections are closed** after [`super::DaemonOptions::idle_timeout`] (100 s: no
//!   Postfix connection lives longer), and a reply that the client does not read times out too.

use std::collections::HashMap;
use std::io::{self, BufReader, BufWriter, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::os::unix::net::{UnixListener, UnixStream};
use std::sync::mpsc;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use super::client;
use super::floor::FloorLookup;
use super::socketmap::{self, FrameError, MAX_REQUEST_LEN, Reply};
use super::state::ClientPid;
use crate::clock::Stopwatch;

/// Descriptors kept out of the connection budget: what the daemon opens besides connections
/// after it starts (SQLite's journal and temporary files, the log reopened after rotation, the
/// spare for `accept`), with room to spare.
const DESCRIPTOR_RESERVE: u64 = 32;

/// Assumed open at start where `/proc/self/fd` cannot be read.
const ASSUMED_OPEN_AT_START: u64 = 64;

/// How often a kind of warning is logged at most: an attacker opening connections in a loop
/// must not flood the log.
const WARNING_INTERVAL: Duration = Duration::from_secs(60);

/// What a connection's thread does before it hands a request to the deciding thread: look up
/// its floor, waiting at most the budget, so that a slow resolution holds up this connection
/// alone.
pub(super) type Prepare = Arc<dyn Fn(&[u8]) -> Prepared + Send + Sync>;

/// Told how long each lookup took, from its request read to its reply ready (the metrics).
pub(super) type LookupTimer = Arc<dyn Fn(Duration) + Send + Sync>;

/// What the connections' threads do for each request besides framing it.
#[derive(Clone, Default)]
pub(super) struct Hooks {
    /// Looks up the floor first.
    pub(super) prepare: Option<Prepare>,
    /// Is told each lookup's duration.
    pub(super) timer: Option<LookupTimer>,
}

/// What a connection's thread made of a request.
pub(super) enum Prepared {
    /// For the decider, with the request's floor (`None`: a request answered without one).
    Floor(Option<FloorLookup>),
    /// Answered already (the policy table needs no engine).
    Answered(Reply),
}

/// What a connection thread asks of the deciding thread.
pub(super) enum Job {
    /// A request's netstring data, and where its reply goes.
    Lookup {
        /// The data.
        data: Vec<u8>,
        /// The PID of the process on the other end of the connection, if known.
        client: ClientPid,
        /// The reply's way back.
        reply: mpsc::Sender<Reply>,
        /// The request's floor, looked up on the connection's thread (`None`: no floor service,
        /// or a request answered without one).
        floor: Option<FloorLookup>,
    },
    /// A warning for the daemon's log (only the deciding thread writes it).
    Warning(String),
    /// Read the policy anew (SIGHUP), between two lookups.
    Reload,
}

/// Raises the soft descriptor limit to the hard one, and returns how many connections of the
/// `wanted` fit in the descriptors left, with a warning when that is fewer.
pub(super) fn connection_limit(wanted: usize) -> (usize, Option<String>) {
    use rustix::process::{Resource, getrlimit, setrlimit};
    let mut limit = getrlimit(Resource::Nofile);
    if limit.current != limit.maximum {
        let raised = rustix::process::Rlimit {
            current: limit.maximum,
            maximum: limit.maximum,
        };
        // Refused (a hard limit over the kernel's nr_open, say): the soft limit stands.
        if setrlimit(Resource::Nofile, raised).is_ok() {
            limit = raised;
        }
    }
    let Some(soft) = limit.current else {
        return (wanted, None);
    };
    let open = std::fs::read_dir("/proc/self/fd")
        .map(|entries| entries.count() as u64)
        .unwrap_or(ASSUMED_OPEN_AT_START);
    let budget = soft.saturating_sub(open + DESCRIPTOR_RESERVE).max(1);
    let fits = usize::try_from(budget).unwrap_or(usize::MAX);
    if fits >= wanted {
        return (wanted, None);
    }
    let warning = format!(
        "the descriptor limit ({soft}, {open} open) leaves room for {fits} connections, not the \
         {wanted} of --max-connections: raise the limit (LimitNOFILE=, ulimit -n) to serve more"
    );
    (fits, Some(warning))
}

/// A connection's socket, shared by its reading and writing halves and by whoever closes it for
/// a newer connection: one descriptor per connection.
pub(super) trait Stream: Send + Sync + 'static {
    /// `read(2)`.
    fn receive(&self, buf: &mut [u8]) -> io::Result<usize>;
    /// `write(2)`.
    fn send(&self, buf: &[u8]) -> io::Result<usize>;
    /// The read and write timeouts.
    fn set_timeouts(&self, timeout: Duration) -> io::Result<()>;
    /// Shuts both directions down, waking the connection's thread from a blocked read or write.
    fn shut_down(&self);
    /// The PID of the process on the other end, if it can be learnt ([`super::client`]).
    fn client_pid(&self) -> ClientPid;
}

/// A listening socket of the kind whose streams are [`Stream`]s.
pub(super) trait Listener: Send + 'static {
    /// The accepted connections.
    type Stream: Stream;
    /// `accept(2)`.
    fn accept_one(&self) -> io::Result<Self::Stream>;
}

macro_rules! socket_kind {
    ($listener:ty, $stream:ty, $client_pid:expr) => {
        impl Stream for $stream {
            fn receive(&self, buf: &mut [u8]) -> io::Result<usize> {
                Read::read(&mut &*self, buf)
            }
            fn send(&self, buf: &[u8]) -> io::Result<usize> {
                Write::write(&mut &*self, buf)
            }
            fn set_timeouts(&self, timeout: Duration) -> io::Result<()> {
                self.set_read_timeout(Some(timeout))?;
                self.set_write_timeout(Some(timeout))
            }
            fn shut_down(&self) {
                let _ = self.shutdown(Shutdown::Both);
            }
            fn client_pid(&self) -> ClientPid {
                $client_pid(self)
            }
        }

        impl Listener for $listener {
            type Stream = $stream;
            fn accept_one(&self) -> io::Result<$stream> {
                self.accept().map(|(stream, _)| stream)
            }
        }
    };
}

socket_kind!(TcpListener, TcpStream, |stream: &TcpStream| {
    match (stream.local_addr(), stream.peer_addr()) {
        (Ok(local), Ok(peer)) => client::tcp_peer_pid(local, peer),
        _ => None,
    }
});
socket_kind!(UnixListener, UnixStream, client::unix_peer_pid);

/// One half of a shared [`Stream`], for the buffered reader or writer.
struct Half<S>(Arc<S>);

impl<S: Stream> Read for Half<S> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.0.receive(buf)
    }
}

impl<S: Stream> Write for Half<S> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.send(buf)
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// The open connections, each with the time it became idle (`None` while it waits for the
/// decider).
struct Connections<S> {
    limit: usize,
    open: Mutex<Open<S>>,
}

struct Open<S> {
    next_id: u64,
    entries: HashMap<u64, Entry<S>>,
}

struct Entry<S> {
    idle_since: Option<Stopwatch>,
    stream: Arc<S>,
}

/// What [`Connections::admit`] did.
enum Admission {
    /// Admitted under the limit.
    Admitted(u64),
    /// Admitted in the place of a connection idle for so long, which was shut down.
    Replaced(u64, Duration),
    /// Every connection waits for the decider: none could make room.
    Full,
}

impl<S: Stream> Connections<S> {
    fn new(limit: usize) -> Self {
        Self {
            limit,
            open: Mutex::new(Open {
                next_id: 0,
                entries: HashMap::new(),
            }),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Open<S>> {
        // Nothing panics while the lock is held; a poisoned lock still holds consistent data.
        self.open.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Registers `stream`, closing the connection idle longest when at the limit.
    fn admit(&self, stream: Arc<S>) -> Admission {
        let mut open = self.lock();
        let mut replaced = None;
        if open.entries.len() >= self.limit {
            let oldest = open
                .entries
                .iter()
                .filter_map(|(id, entry)| entry.idle_since.map(|since| (since, *id)))
                .min();
            let Some((since, id)) = oldest else {
                return Admission::Full;
            };
            if let Some(entry) = open.entries.remove(&id) {
                entry.stream.shut_down();
            }
            replaced = Some(since.elapsed());
        }
        let id = open.next_id;
        open.next_id += 1;
        open.entries.insert(
            id,
            Entry {
                idle_since: Some(Stopwatch::start()),
                stream,
            },
        );
        match replaced {
            Some(idle) => Admission::Replaced(id, idle),
            None => Admission::Admitted(id),
        }
    }

    /// Marks connection `id` waiting for the decider (not to be closed), or idle again.
    fn set_waiting(&self, id: u64, waiting: bool) {
        if let Some(entry) = self.lock().entries.get_mut(&id) {
            entry.idle_since = (!waiting).then(Stopwatch::start);
        }
    }

    fn leave(&self, id: u64) {
        self.lock().entries.remove(&id);
    }
}

/// A connection's place in [`Connections`], given up when its thread ends, however it ends.
struct Registration<S: Stream> {
    connections: Arc<Connections<S>>,
    id: u64,
}

impl<S: Stream> Drop for Registration<S> {
    fn drop(&mut self) {
        self.connections.leave(self.id);
    }
}

/// A warning logged at most once an interval, saying how often it happened.
struct Throttled {
    interval: Duration,
    count: u64,
    last: Option<Stopwatch>,
}

impl Throttled {
    const fn new(interval: Duration) -> Self {
        Self {
            interval,
            count: 0,
            last: None,
        }
    }

    /// Counts one more; the count to report (since the last report), when one is due.
    fn note(&mut self) -> Option<u64> {
        self.count += 1;
        if self.last.is_some_and(|last| last.elapsed() < self.interval) {
            return None;
        }
        self.last = Some(Stopwatch::start());
        Some(std::mem::take(&mut self.count))
    }
}

/// Accepts connections on `listener` on a thread of its own, each served on a thread of its
/// own, at most `max_connections` at once, each closed after `idle_timeout` without a request.
pub(super) fn spawn_listener<L: Listener>(
    listener: L,
    jobs: mpsc::Sender<Job>,
    hooks: Hooks,
    max_connections: usize,
    idle_timeout: Duration,
) -> io::Result<()> {
    let acceptor = Acceptor {
        connections: Arc::new(Connections::new(max_connections)),
        jobs,
        hooks,
        idle_timeout,
        replaced: Throttled::new(WARNING_INTERVAL),
        refused: Throttled::new(WARNING_INTERVAL),
        out_of_descriptors: Throttled::new(WARNING_INTERVAL),
        // Opened now, while descriptors are plenty; see `out_of_descriptors`.
        spare: std::fs::File::open("/dev/null").ok(),
    };
    std::thread::Builder::new()
        .name("socketmap-accept".to_owned())
        .spawn(move || acceptor.run(&listener))
        .map(drop)
}

/// The accepting thread's state.
struct Acceptor<S: Stream> {
    connections: Arc<Connections<S>>,
    jobs: mpsc::Sender<Job>,
    hooks: Hooks,
    idle_timeout: Duration,
    replaced: Throttled,
    refused: Throttled,
    out_of_descriptors: Throttled,
    /// A descriptor held in reserve, given up when `accept` fails for want of one.
    spare: Option<std::fs::File>,
}

impl<S: Stream> Acceptor<S> {
    fn run(mut self, listener: &impl Listener<Stream = S>) {
        loop {
            match listener.accept_one() {
                Ok(stream) => self.admit(stream),
                Err(error) => self.accept_failed(listener, &error),
            }
        }
    }

    fn warn(&self, text: String) {
        let _ = self.jobs.send(Job::Warning(text));
    }

    /// Serves `stream` on a thread of its own, in the place of the connection idle longest when
    /// at the limit; answers `TEMP` and closes it when no connection can make room.
    fn admit(&mut self, stream: S) {
        if stream.set_timeouts(self.idle_timeout).is_err() {
            return;
        }
        let stream = Arc::new(stream);
        let id = match self.connections.admit(Arc::clone(&stream)) {
            Admission::Admitted(id) => id,
            Admission::Replaced(id, idle) => {
                if let Some(count) = self.replaced.note() {
                    self.warn(format!(
                        "{} connections open (the limit): closed the one idle longest ({} s) \
                         for a new one, {count} time(s) since the last such warning",
                        self.connections.limit,
                        idle.as_secs()
                    ));
                }
                id
            }
            Admission::Full => {
                refuse(&stream, "too many connections waiting for an answer");
                if let Some(count) = self.refused.note() {
                    self.warn(format!(
                        "{} connections open (the limit), each waiting for an answer: refused a \
                         new one with TEMP, {count} time(s) since the last such warning",
                        self.connections.limit
                    ));
                }
                return;
            }
        };
        let registration = Registration {
            connections: Arc::clone(&self.connections),
            id,
        };
        let jobs = self.jobs.clone();
        let hooks = self.hooks.clone();
        let thread_stream = Arc::clone(&stream);
        let spawned = std::thread::Builder::new()
            .name("socketmap-connection".to_owned())
            .spawn(move || serve_connection(&thread_stream, &registration, &jobs, &hooks));
        if let Err(error) = spawned {
            // The registration went with the closure and is given up already.
            refuse(&stream, "could not start a thread for the connection");
            self.warn(format!("starting a connection's thread: {error}"));
        }
    }

    /// After a failed `accept`: out of descriptors, the waiting connection would make every
    /// `accept` fail at once, so the spare descriptor makes room to take it and answer `TEMP`.
    fn accept_failed(&mut self, listener: &impl Listener<Stream = S>, error: &io::Error) {
        use rustix::io::Errno;
        let errno = Errno::from_io_error(error);
        if !matches!(errno, Some(Errno::MFILE | Errno::NFILE)) {
            // A connection reset before it was accepted, say; anything else, do not spin on.
            if !matches!(errno, Some(Errno::CONNABORTED | Errno::INTR)) {
                std::thread::sleep(Duration::from_millis(10));
            }
            return;
        }
        drop(self.spare.take());
        if let Ok(stream) = listener.accept_one() {
            refuse(&Arc::new(stream), "out of file descriptors");
        }
        self.spare = std::fs::File::open("/dev/null").ok();
        if self.spare.is_none() {
            // No spare to be had (the whole system is out): at least do not spin.
            std::thread::sleep(Duration::from_millis(10));
        }
        if let Some(count) = self.out_of_descriptors.note() {
            self.warn(format!(
                "accepting a connection: {error}; answered TEMP, {count} time(s) since the last \
                 such warning"
            ));
        }
    }
}

/// Answers `TEMP tlsfallback: <why>` and closes the connection (when `stream` is dropped).
/// Called on the accepting thread, so it waits at most a second for a client that does not read
/// (the few bytes fit a new socket's buffer anyway).
fn refuse<S: Stream>(stream: &Arc<S>, why: &str) {
    let _ = stream.set_timeouts(Duration::from_secs(1));
    let reply = Reply::Temp(format!("tlsfallback: {why}")).encode();
    let _ = socketmap::write_netstring(&mut Half(Arc::clone(stream)), &reply);
}

/// One connection: requests in, replies out, until it closes, idles out, is closed for a newer
/// one, or sends something that is not a netstring (answered `PERM`, then closed: the stream is
/// out of step).
fn serve_connection<S: Stream>(
    stream: &Arc<S>,
    registration: &Registration<S>,
    jobs: &mpsc::Sender<Job>,
    hooks: &Hooks,
) {
    let connections = &registration.connections;
    // Finding the process behind a TCP connection reads /proc: done here, on the connection's
    // own thread, once per connection, so that accepting never waits for it.
    let client = stream.client_pid();
    let mut reader = BufReader::new(Half(Arc::clone(stream)));
    let mut writer = BufWriter::new(Half(Arc::clone(stream)));
    loop {
        let reply = match socketmap::read_netstring(&mut reader, MAX_REQUEST_LEN) {
            Ok(None) | Err(FrameError::Io(_) | FrameError::Truncated) => return,
            Ok(Some(data)) => {
                let received = Stopwatch::start();
                let timed = || {
                    if let Some(timer) = &hooks.timer {
                        timer(received.elapsed());
                    }
                };
                connections.set_waiting(registration.id, true);
                let floor = match hooks.prepare.as_ref().map(|prepare| prepare(&data)) {
                    None | Some(Prepared::Floor(None)) => None,
                    Some(Prepared::Floor(floor)) => floor,
                    Some(Prepared::Answered(reply)) => {
                        timed();
                        connections.set_waiting(registration.id, false);
                        if socketmap::write_netstring(&mut writer, &reply.encode()).is_err() {
                            return;
                        }
                        continue;
                    }
                };
                let (tx, rx) = mpsc::channel();
                let job = Job::Lookup {
                    data,
                    client,
                    reply: tx,
                    floor,
                };
                if jobs.send(job).is_err() {
                    return;
                }
                let reply = rx.recv();
                timed();
                // Idle again before the reply is written: a client that does not read its
                // replies can be closed for a newer connection.
                connections.set_waiting(registration.id, false);
                match reply {
                    Ok(reply) => reply,
                    Err(_) => return,
                }
            }
            Err(error) => {
                let _ = socketmap::write_netstring(
                    &mut writer,
                    &Reply::Perm(error.to_string()).encode(),
                );
                return;
            }
        };
        if socketmap::write_netstring(&mut writer, &reply.encode()).is_err() {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A pair of connected sockets; the server's end goes into `connections`.
    fn pair() -> (Arc<UnixStream>, UnixStream) {
        let (server, client) = UnixStream::pair().unwrap();
        (Arc::new(server), client)
    }

    #[test]
    fn at_the_limit_the_connection_idle_longest_is_closed_and_a_waiting_one_never() {
        let connections = Connections::new(2);
        let admitted = |admission| match admission {
            Admission::Admitted(id) | Admission::Replaced(id, _) => id,
            Admission::Full => panic!("no room"),
        };
        let (first, _first_client) = pair();
        let first = admitted(connections.admit(first));
        std::thread::sleep(Duration::from_millis(2));
        let (second, _second_client) = pair();
        let second = admitted(connections.admit(second));
        // The first, idle longest, waits for the decider: the second goes instead.
        connections.set_waiting(first, true);
        let (third, _third_client) = pair();
        let third = connections.admit(third);
        assert!(matches!(third, Admission::Replaced(..)));
        let third = admitted(third);
        let open = |id| connections.lock().entries.contains_key(&id);
        assert!(open(first) && !open(second) && open(third));
        // Both waiting: nothing can make room.
        connections.set_waiting(third, true);
        let (fourth, _fourth_client) = pair();
        assert!(matches!(connections.admit(fourth), Admission::Full));
        // Idle again, the first is now the one idle longest.
        connections.set_waiting(first, false);
        std::thread::sleep(Duration::from_millis(2));
        connections.set_waiting(third, false);
        let (fifth, _fifth_client) = pair();
        admitted(connections.admit(fifth));
        assert!(!open(first) && open(third));
    }

    #[test]
    fn a_replaced_connection_is_shut_down_so_its_thread_wakes() {
        let connections = Connections::new(1);
        let (old, mut old_client) = pair();
        let reader = Arc::clone(&old);
        let blocked = std::thread::spawn(move || reader.receive(&mut [0; 8]));
        connections.admit(old);
        let (new, _new_client) = pair();
        assert!(matches!(connections.admit(new), Admission::Replaced(..)));
        assert_eq!(blocked.join().unwrap().unwrap(), 0, "the read ends");
        let mut rest = Vec::new();
        old_client.read_to_end(&mut rest).unwrap();
        assert!(rest.is_empty(), "the client sees the connection closed");
    }

    #[test]
    fn warnings_are_throttled_but_counted() {
        let mut throttled = Throttled::new(WARNING_INTERVAL);
        assert_eq!(throttled.note(), Some(1));
        assert_eq!(throttled.note(), None);
        assert_eq!(throttled.note(), None);
        throttled.interval = Duration::ZERO;
        assert_eq!(throttled.note(), Some(3));
    }

    #[test]
    fn the_connection_limit_fits_the_descriptors() {
        let (limit, _) = connection_limit(usize::MAX);
        let soft = rustix::process::getrlimit(rustix::process::Resource::Nofile).current;
        if let Some(soft) = soft {
            assert!((limit as u64) < soft);
        }
        assert_eq!(connection_limit(1), (1, None));
    }
}
