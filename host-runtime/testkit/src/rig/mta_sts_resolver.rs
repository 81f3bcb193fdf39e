//! postfix-mta-sts-resolver (`mta-sts-daemon`, the pinned install of
//! `benchmarks/python/requirements-mta-sts-resolver.txt` that `scripts/setup` makes) as a child
//! process over the rig: the daemon `tlsfallback postfix serve --mode policy-table` replaces, run
//! for the differential test and the socketmap benchmark.
//!
//! It resolves the way it does in production, through the machine's resolver configuration: TXT
//! `_mta-sts.DOMAIN` with aiodns (c-ares reads `/etc/resolv.conf`), the policy host with
//! `getaddrinfo`, always on port 443, and the policy's certificate against OpenSSL's default CA
//! paths. So [`MtaStsResolverDaemon::start`] runs it under
//! [`with_resolv_conf`](crate::rig::resolv::with_resolv_conf) naming the rig's unbound on
//! `IP:53` ([`RigSpec::resolver_on`](crate::rig::dnssec::RigSpec::resolver_on)), with
//! `SSL_CERT_FILE` set to the rig's test CA, and the policy server listens on port 443 of an
//! address the rig's `mta-sts.DOMAIN` records give
//! ([`PolicyServer::start_on`](crate::rig::https::PolicyServer::start_on)).
//!
//! [`SocketmapClient`] asks either daemon over one connection, as Postfix does.
//!
//! The daemon runs in a process group of its own, killed when the value is dropped; a watchdog
//! shell whose stdin is a pipe from this process does the same if the process ends without
//! dropping it.

use std::io::{self, Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::time::Duration;

use rustix::process::{Pid, Signal, kill_process_group};

use tlsfallback_mta::clock::Deadline;

/// How long [`MtaStsResolverDaemon::start`] waits for the daemon to answer a first lookup.
const READY_WITHIN: Duration = Duration::from_secs(20);

/// How long one [`MtaStsResolverDaemon::ask`] waits for its answer: above the daemon's own
/// timeout for a cold resolution (a TXT lookup, then a policy fetch).
const ASK_WITHIN: Duration = Duration::from_secs(30);

/// The key of the readiness probe: an IP literal, which the daemon answers `NOTFOUND` without
/// any DNS or HTTPS.
const PROBE_KEY: &str = "192.0.2.1";

/// What went wrong starting or asking the daemon.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ResolverDaemonError {
    /// The pinned install is missing.
    #[error(
        "postfix-mta-sts-resolver is not installed at {}: run scripts/setup (it installs \
         benchmarks/python/requirements-mta-sts-resolver.txt into benchmarks/python/.venv)",
        path.display()
    )]
    NotInstalled {
        /// Where `mta-sts-daemon` was looked for.
        path: PathBuf,
    },
    /// A file, socket or process operation failed.
    #[error("{doing}: {source}")]
    Io {
        /// What was being done.
        doing: String,
        /// The underlying error.
        source: io::Error,
    },
    /// The daemon did not answer its first lookup, or exited; `log` is its output.
    #[error("mta-sts-daemon is not ready: {why}\n--- its output ---\n{log}")]
    NotReady {
        /// What was seen instead.
        why: String,
        /// The daemon's stdout and stderr so far.
        log: String,
    },
    /// An answer that is not one netstring.
    #[error("the socketmap answered {answer:?}, which is not a netstring")]
    BadAnswer {
        /// What came back.
        answer: String,
    },
}

fn io_error(doing: impl Into<String>) -> impl FnOnce(io::Error) -> ResolverDaemonError {
    let doing = doing.into();
    move |source| ResolverDaemonError::Io { doing, source }
}

/// The daemon's `default_zone` and cache settings (its YAML keys), for every map name.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ResolverOptions {
    /// `strict_testing`: answer `testing` policies as if `enforce` (its default: no).
    pub strict_testing: bool,
    /// `require_sni`: add `servername=hostname` (its default: yes).
    pub require_sni: bool,
    /// `tlsrpt`: add Postfix 3.10's TLSRPT attributes (its default: no).
    pub tlsrpt: bool,
    /// `timeout`: seconds for the DNS lookup and, separately, the policy fetch (its default: 4).
    pub timeout_secs: u32,
    /// `cache.options.cache_size`: policies kept in memory (its default: 10,000).
    pub cache_size: usize,
}

impl Default for ResolverOptions {
    /// The daemon's own defaults (its `defaults.py`).
    fn default() -> Self {
        Self {
            strict_testing: false,
            require_sni: true,
            tlsrpt: false,
            timeout_secs: 4,
            cache_size: 10_000,
        }
    }
}

/// Where `scripts/setup` installs `mta-sts-daemon`.
#[must_use]
pub fn installed_daemon() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../benchmarks/python/.venv/bin/mta-sts-daemon")
}

/// The daemon's configuration file for listening on `port` of 127.0.0.1.
fn config_text(port: u16, options: &ResolverOptions) -> String {
    // `reuse_port: true` is not a choice: 1.5.1's responder builds its listening options only in
    // that branch, and with `false` it fails to start (an unbound local `opts`).
    format!(
        "host: 127.0.0.1\nport: {port}\nreuse_port: true\nshutdown_timeout: 1\n\
         cache:\n  type: internal\n  options:\n    cache_size: {cache_size}\n\
         default_zone:\n  strict_testing: {strict}\n  timeout: {timeout}\n  \
         require_sni: {sni}\n  tlsrpt: {tlsrpt}\nzones: {{}}\n",
        cache_size = options.cache_size,
        strict = options.strict_testing,
        timeout = options.timeout_secs,
        sni = options.require_sni,
        tlsrpt = options.tlsrpt,
    )
}

/// A running `mta-sts-daemon`; killed (its whole process group) when dropped.
pub struct MtaStsResolverDaemon {
    child: Child,
    watchdog: Option<(Child, ChildStdin)>,
    addr: SocketAddr,
    log: PathBuf,
}

impl std::fmt::Debug for MtaStsResolverDaemon {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MtaStsResolverDaemon")
            .field("pid", &self.child.id())
            .field("addr", &self.addr)
            .finish_non_exhaustive()
    }
}

impl MtaStsResolverDaemon {
    /// Writes `dir/mta-sts-daemon.yml` and starts the daemon on a free port of 127.0.0.1, its
    /// `/etc/resolv.conf` naming `rig_resolver_ip` (port 53) and `SSL_CERT_FILE` set to
    /// `ca_file`; returns once it answers a lookup. Its output goes to `dir/mta-sts-daemon.log`.
    ///
    /// # Errors
    ///
    /// The daemon is not installed (naming `scripts/setup`), a file or process cannot be made,
    /// or it does not answer within 20 s (with its output).
    pub fn start(
        dir: &Path,
        rig_resolver_ip: Ipv4Addr,
        ca_file: &Path,
        options: &ResolverOptions,
    ) -> Result<Self, ResolverDaemonError> {
        let program = installed_daemon();
        if !program.is_file() {
            return Err(ResolverDaemonError::NotInstalled { path: program });
        }
        let port = free_port()?;
        let config = dir.join("mta-sts-daemon.yml");
        std::fs::write(&config, config_text(port, options))
            .map_err(io_error(format!("writing {}", config.display())))?;
        let log = dir.join("mta-sts-daemon.log");
        let out =
            std::fs::File::create(&log).map_err(io_error(format!("creating {}", log.display())))?;
        let err = out
            .try_clone()
            .map_err(io_error("duplicating a file descriptor"))?;
        let program = program.to_string_lossy().into_owned();
        let config = config.to_string_lossy().into_owned();
        let mut command = crate::rig::resolv::with_resolv_conf(
            dir,
            rig_resolver_ip,
            &program,
            &["-c", &config, "-v", "info"],
        )
        .map_err(io_error("writing the daemon's resolv.conf"))?;
        command
            .env("SSL_CERT_FILE", ca_file)
            // aiohttp would send the policy fetch through a proxy named in the environment.
            .env_remove("https_proxy")
            .env_remove("HTTPS_PROXY")
            .env_remove("all_proxy")
            .env_remove("ALL_PROXY")
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            // A group of its own, so dropping kills whatever it started too.
            .process_group(0);
        let child = command
            .spawn()
            .map_err(io_error(format!("starting {program} under unshare")))?;
        let watchdog = start_watchdog(&child)?;
        let mut daemon = Self {
            child,
            watchdog: Some(watchdog),
            addr: SocketAddr::from((Ipv4Addr::LOCALHOST, port)),
            log,
        };
        daemon.wait_ready()?;
        Ok(daemon)
    }

    fn wait_ready(&mut self) -> Result<(), ResolverDaemonError> {
        let deadline = Deadline::after(READY_WITHIN);
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Err(ResolverDaemonError::NotReady {
                    why: format!("it exited ({status})"),
                    log: self.log(),
                });
            }
            let why = match self.ask_within(PROBE_KEY, Duration::from_millis(500)) {
                Ok(answer) if answer == "NOTFOUND " => return Ok(()),
                Ok(answer) => format!("it answered {answer:?} for {PROBE_KEY}"),
                Err(e) => e.to_string(),
            };
            if deadline.left().is_zero() {
                return Err(ResolverDaemonError::NotReady {
                    why: format!("no answer within {READY_WITHIN:?}: {why}"),
                    log: self.log(),
                });
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Where it listens (127.0.0.1, a free port).
    #[must_use]
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Its output so far (its log lines and any Python traceback).
    #[must_use]
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// One socketmap lookup `postfix KEY` on a new connection; the answer without its netstring
    /// framing (`OK secure match=... servername=hostname`, `NOTFOUND `). A first lookup of a
    /// domain waits for the daemon's resolution.
    ///
    /// # Errors
    ///
    /// No connection, no answer within 30 s, or an answer that is not a netstring.
    pub fn ask(&self, key: &str) -> Result<String, ResolverDaemonError> {
        self.ask_within(key, ASK_WITHIN)
    }

    fn ask_within(&self, key: &str, within: Duration) -> Result<String, ResolverDaemonError> {
        SocketmapClient::connect(self.addr, within)?.ask("postfix", key)
    }
}

/// One socketmap connection to a daemon (either one: ours or theirs), asked one lookup at a
/// time, as Postfix's proxymap does.
#[derive(Debug)]
pub struct SocketmapClient {
    stream: TcpStream,
    addr: SocketAddr,
}

impl SocketmapClient {
    /// Connects to `addr`; every read waits at most `within`.
    ///
    /// # Errors
    ///
    /// No connection within `within`.
    pub fn connect(addr: SocketAddr, within: Duration) -> Result<Self, ResolverDaemonError> {
        let doing = || format!("connecting to the socketmap at {addr}");
        let stream = TcpStream::connect_timeout(&addr, within).map_err(io_error(doing()))?;
        stream
            .set_read_timeout(Some(within))
            .map_err(io_error(doing()))?;
        // One small request per answer: without this, Nagle holds each request for the ACK.
        stream.set_nodelay(true).map_err(io_error(doing()))?;
        Ok(Self { stream, addr })
    }

    /// One lookup `MAP KEY`; the answer without its netstring framing.
    ///
    /// # Errors
    ///
    /// The connection failed or closed, or the answer is not a netstring.
    pub fn ask(&mut self, map: &str, key: &str) -> Result<String, ResolverDaemonError> {
        let doing = || format!("asking the socketmap at {} for {map} {key:?}", self.addr);
        let request = format!("{map} {key}");
        self.stream
            .write_all(format!("{}:{request},", request.len()).as_bytes())
            .map_err(io_error(doing()))?;
        read_netstring(&mut self.stream).map_err(|e| match e {
            NetstringError::Io(source) => ResolverDaemonError::Io {
                doing: doing(),
                source,
            },
            NetstringError::Malformed(answer) => ResolverDaemonError::BadAnswer { answer },
        })
    }
}

impl Drop for MtaStsResolverDaemon {
    fn drop(&mut self) {
        let _ = kill_process_group(Pid::from_child(&self.child), Signal::KILL);
        let _ = self.child.wait();
        if let Some((mut watchdog, _stdin)) = self.watchdog.take() {
            let _ = watchdog.kill();
            let _ = watchdog.wait();
        }
    }
}

/// A shell that kills the daemon's process group when its stdin (a pipe from this process)
/// closes: when this process ends without dropping the daemon.
pub(crate) fn start_watchdog(daemon: &Child) -> Result<(Child, ChildStdin), ResolverDaemonError> {
    let mut watchdog = Command::new("sh")
        .arg("-c")
        .arg("read -r _; kill -KILL -- \"-$0\" 2>/dev/null")
        .arg(daemon.id().to_string())
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(io_error("starting the daemon's watchdog shell"))?;
    let stdin = watchdog
        .stdin
        .take()
        .ok_or_else(|| ResolverDaemonError::Io {
            doing: "taking the watchdog's stdin".into(),
            source: io::Error::other("no pipe"),
        })?;
    Ok((watchdog, stdin))
}

/// A port of 127.0.0.1 free right now, for the daemon to bind.
fn free_port() -> Result<u16, ResolverDaemonError> {
    super::free_tcp_port().map_err(io_error("binding a free port"))
}

/// Why a netstring could not be read.
enum NetstringError {
    Io(io::Error),
    Malformed(String),
}

/// The longest answer read: the daemon's TLSRPT answers carry the whole policy, still far less.
const MAX_ANSWER: usize = 100_000;

/// Reads one netstring (`LEN:DATA,`), its data as text.
fn read_netstring(stream: &mut impl Read) -> Result<String, NetstringError> {
    let mut length = Vec::new();
    let mut byte = [0u8; 1];
    loop {
        stream.read_exact(&mut byte).map_err(NetstringError::Io)?;
        match byte[0] {
            b':' => break,
            digit @ b'0'..=b'9' if length.len() < 6 => length.push(digit),
            other => {
                length.push(other);
                return Err(NetstringError::Malformed(
                    String::from_utf8_lossy(&length).into_owned(),
                ));
            }
        }
    }
    let shown = String::from_utf8_lossy(&length).into_owned();
    let len: usize = shown
        .parse()
        .map_err(|_| NetstringError::Malformed(shown.clone()))?;
    if len > MAX_ANSWER {
        return Err(NetstringError::Malformed(format!("{shown}:...")));
    }
    let mut data = vec![0u8; len + 1];
    stream.read_exact(&mut data).map_err(NetstringError::Io)?;
    if data.pop() != Some(b',') {
        return Err(NetstringError::Malformed(format!(
            "{shown}:{}",
            String::from_utf8_lossy(&data)
        )));
    }
    String::from_utf8(data)
        .map_err(|e| NetstringError::Malformed(String::from_utf8_lossy(e.as_bytes()).into_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_keeps_reuse_port_on_since_off_crashes_1_5_1() {
        let text = config_text(8461, &ResolverOptions::default());
        assert!(text.contains("reuse_port: true\n"), "{text}");
        assert!(text.contains("port: 8461\n"), "{text}");
        assert!(text.contains("  require_sni: true\n"), "{text}");
        assert!(text.contains("    cache_size: 10000\n"), "{text}");
    }

    #[test]
    fn answer_that_is_not_one_netstring_is_refused_not_trusted() {
        let read = |bytes: &[u8]| read_netstring(&mut &bytes[..]);
        assert!(matches!(read(b"9:NOTFOUND ,"), Ok(a) if a == "NOTFOUND "));
        for bad in [&b"9:NOTFOUND X"[..], b"x:OK,", b"99999999:", b"2:OK;"] {
            assert!(
                matches!(read(bad), Err(NetstringError::Malformed(_))),
                "{bad:?}"
            );
        }
        assert!(matches!(read(b"9:NOT"), Err(NetstringError::Io(_))));
    }

    #[test]
    fn missing_install_names_scripts_setup() {
        let error = ResolverDaemonError::NotInstalled {
            path: PathBuf::from("/nowhere/mta-sts-daemon"),
        };
        assert!(error.to_string().contains("run scripts/setup"), "{error}");
    }
}
