//! `tlsfallback playground`: serves the built browser playground (playground/ after its build)
//! on 127.0.0.1.
//!
//! A static file server and nothing more: the page runs the policy component in the browser, so
//! the server has no logic to offer. It answers GET and HEAD for files under one directory, with
//! the MIME types browsers insist on (`application/wasm` for `WebAssembly.compileStreaming`,
//! `text/javascript` for module scripts) and `Cache-Control: no-cache` so a rebuilt component is
//! picked up on reload.

use std::fs;
use std::io::{self, BufRead as _, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Component, Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use anyhow::{Context as _, bail};
use clap::Args;

use tlsfallback_mta::clock::Stopwatch;

/// The file whose presence shows the playground was built (the transpiled built-in component).
pub const BUILT_MARKER: &str = "vendor/policy/policy_engine.js";

/// The longest request head read (request line and headers).
const MAX_HEAD_BYTES: u64 = 16 * 1024;

/// How many connections the server works on at once, and how long each may take.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ServerLimits {
    /// Connections answered at once, a thread each; more are answered 503 at once and closed.
    pub max_connections: usize,
    /// How long a connection may take to send its whole request head (not per read: a client
    /// sending a byte at a time would reset a per-read timeout forever).
    pub request_timeout: Duration,
    /// How long a connection may take to take its whole response.
    pub response_timeout: Duration,
}

impl Default for ServerLimits {
    /// 32 connections (a browser opens 6 at most to one host), 10 s for the request, 60 s for
    /// the response (the 12 MB JavaScript component through a slow tunnel).
    fn default() -> Self {
        Self {
            max_connections: 32,
            request_timeout: Duration::from_secs(10),
            response_timeout: Duration::from_secs(60),
        }
    }
}

/// A bound playground server.
///
/// HTTP by hand: GET/HEAD of static files, one request per connection (`Connection: close`),
/// a thread per connection up to [`ServerLimits::max_connections`]. tiny_http 0.12, tried
/// first, left some of Chromium's parallel keep-alive requests pending for good (3 page loads
/// in 6 stalled on module scripts); this server has no keep-alive state to get wrong, and what
/// it parses is bounded and timed out.
pub struct PlaygroundServer {
    listener: TcpListener,
    root: PathBuf,
    limits: ServerLimits,
}

impl PlaygroundServer {
    /// Binds `listen` (port 0 picks a free port) to serve the built playground in `root`.
    ///
    /// # Errors
    ///
    /// When `root` is not a built playground or the address cannot be bound.
    pub fn bind(root: &Path, listen: SocketAddr) -> anyhow::Result<Self> {
        if !root.join(BUILT_MARKER).is_file() {
            bail!(
                "{} is not a built playground (no {BUILT_MARKER}): run scripts/playground, or \
                 `npm ci` at the repository root, then `npm run build` in playground/ with \
                 TLSFALLBACK_WASM and TLSFALLBACK_TOOLS_WASM set to the files \
                 `tlsfallback export-component` and `export-component --tools` write",
                root.display()
            );
        }
        let root = root
            .canonicalize()
            .with_context(|| format!("resolving {}", root.display()))?;
        let listener =
            TcpListener::bind(listen).with_context(|| format!("listening on {listen}"))?;
        Ok(Self {
            listener,
            root,
            limits: ServerLimits::default(),
        })
    }

    /// The same server with other limits.
    #[must_use]
    pub fn with_limits(self, limits: ServerLimits) -> Self {
        Self { limits, ..self }
    }

    /// The page's address.
    ///
    /// # Errors
    ///
    /// When the socket's address cannot be read.
    pub fn url(&self) -> io::Result<String> {
        Ok(format!("http://{}/", self.listener.local_addr()?))
    }

    /// Answers requests until the process ends. A connection that fails (the browser went away,
    /// a malformed request, too slow) is logged and the server goes on; one over the limit is
    /// answered 503.
    pub fn serve_forever(&self) {
        let active = Arc::new(AtomicUsize::new(0));
        for stream in self.listener.incoming() {
            let mut stream = match stream {
                Ok(stream) => stream,
                Err(error) => {
                    eprintln!("tlsfallback playground: accepting a connection: {error}");
                    // Out of descriptors, say: the connection stays queued, so do not spin.
                    std::thread::sleep(Duration::from_millis(50));
                    continue;
                }
            };
            let Some(slot) = Slot::take(&active, self.limits.max_connections) else {
                refuse_busy(&mut stream);
                continue;
            };
            let root = self.root.clone();
            let limits = self.limits;
            let spawned = std::thread::Builder::new()
                .name("playground-connection".to_owned())
                .spawn(move || {
                    let _slot = slot;
                    if let Err(error) = answer(&root, &stream, limits) {
                        eprintln!("tlsfallback playground: answering a request: {error}");
                    }
                });
            if let Err(error) = spawned {
                eprintln!("tlsfallback playground: starting a thread: {error}");
            }
        }
    }
}

/// One of the connections being answered; the count goes down when it is dropped, whatever
/// ended the connection (a panic included).
struct Slot(Arc<AtomicUsize>);

impl Slot {
    /// A slot, unless `max` are taken.
    fn take(active: &Arc<AtomicUsize>, max: usize) -> Option<Self> {
        active
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| {
                (n < max).then_some(n + 1)
            })
            .ok()
            .map(|_| Self(Arc::clone(active)))
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Answers 503 on the accepting thread, which must not wait on the client: a short write
/// timeout, and the few bytes fit the socket's send buffer anyway.
fn refuse_busy(stream: &mut TcpStream) {
    let _ = stream.set_write_timeout(Some(Duration::from_millis(100)));
    let _ = respond(
        &mut Deadlined::new(stream, Duration::from_millis(100)),
        503,
        "text/plain; charset=utf-8",
        b"too many connections: try again\n",
        false,
    );
}

/// A connection whose reads (or writes) must all be done by a deadline, however the client
/// spaces its bytes: each call gets the time left as its socket timeout.
struct Deadlined<'a> {
    stream: &'a TcpStream,
    started: Stopwatch,
    within: Duration,
}

impl<'a> Deadlined<'a> {
    fn new(stream: &'a TcpStream, within: Duration) -> Self {
        Self {
            stream,
            started: Stopwatch::start(),
            within,
        }
    }

    /// The time left, or `TimedOut` when there is none.
    fn time_left(&self) -> io::Result<Duration> {
        self.within
            .checked_sub(self.started.elapsed())
            .filter(|left| !left.is_zero())
            .ok_or_else(|| io::Error::new(io::ErrorKind::TimedOut, "the client was too slow"))
    }
}

impl Read for Deadlined<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.stream.set_read_timeout(Some(self.time_left()?))?;
        self.stream.read(buf)
    }
}

impl Write for Deadlined<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.stream.set_write_timeout(Some(self.time_left()?))?;
        self.stream.write(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.stream.flush()
    }
}

/// Reads one request from `stream` and answers it.
fn answer(root: &Path, stream: &TcpStream, limits: ServerLimits) -> io::Result<()> {
    let mut reader =
        BufReader::new(Deadlined::new(stream, limits.request_timeout).take(MAX_HEAD_BYTES));
    let mut request_line = String::new();
    reader.read_line(&mut request_line)?;
    // The headers say nothing a static GET needs; read them so the client sees a clean close.
    loop {
        let mut header = String::new();
        if reader.read_line(&mut header)? == 0 || header.trim_end().is_empty() {
            break;
        }
    }
    let mut stream = Deadlined::new(stream, limits.response_timeout);
    let stream = &mut stream;
    let text = "text/plain; charset=utf-8";
    let mut parts = request_line.split_ascii_whitespace();
    let (Some(method), Some(target)) = (parts.next(), parts.next()) else {
        return respond(stream, 400, text, b"bad request\n", false);
    };
    let head = method == "HEAD";
    if !head && method != "GET" {
        return respond(stream, 405, text, b"only GET and HEAD are served\n", false);
    }
    let Some(path) = resolve(root, target) else {
        return respond(stream, 400, text, b"bad path\n", head);
    };
    let path = match confine(root, &path) {
        Ok(path) => path,
        Err(Refusal::NotFound) => return respond(stream, 404, text, b"not found\n", head),
        Err(Refusal::OutsideRoot) => {
            return respond(
                stream,
                403,
                text,
                b"a link out of the playground directory is not served\n",
                head,
            );
        }
    };
    match fs::read(&path) {
        Ok(body) => respond(stream, 200, mime_type(&path), &body, head),
        Err(error) if error.kind() == io::ErrorKind::NotFound => {
            respond(stream, 404, text, b"not found\n", head)
        }
        Err(error) => {
            eprintln!(
                "tlsfallback playground: reading {}: {error}",
                path.display()
            );
            respond(stream, 500, text, b"the file could not be read\n", head)
        }
    }
}

/// Why a path under the root is not served.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Refusal {
    /// Nothing is there, or nothing that is a regular file (a FIFO would block the reader).
    NotFound,
    /// It is a link (or under one) to something outside the root.
    OutsideRoot,
}

/// The file to serve for `path` (from [`resolve`]): links followed, a directory's
/// `index.html`, and refused unless the real file is a regular file under `root` (itself
/// canonical, as [`PlaygroundServer::bind`] keeps it).
fn confine(root: &Path, path: &Path) -> Result<PathBuf, Refusal> {
    let canonical = |path: &Path| path.canonicalize().map_err(|_| Refusal::NotFound);
    let mut real = canonical(path)?;
    if real.is_dir() {
        real = canonical(&real.join("index.html"))?;
    }
    if !real.starts_with(root) {
        return Err(Refusal::OutsideRoot);
    }
    if !real.is_file() {
        return Err(Refusal::NotFound);
    }
    Ok(real)
}

fn respond(
    stream: &mut impl Write,
    status: u16,
    content_type: &str,
    body: &[u8],
    head: bool,
) -> io::Result<()> {
    let reason = match status {
        200 => "OK",
        400 => "Bad Request",
        404 => "Not Found",
        403 => "Forbidden",
        405 => "Method Not Allowed",
        503 => "Service Unavailable",
        _ => "Internal Server Error",
    };
    write!(
        stream,
        "HTTP/1.1 {status} {reason}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n\
         Cache-Control: no-cache\r\nConnection: close\r\n\r\n",
        body.len()
    )?;
    if !head {
        stream.write_all(body)?;
    }
    stream.flush()
}

/// The file a request path names under `root`: the query string dropped, percent-escapes decoded,
/// and anything that could leave `root` (`..`, absolute parts, NUL, invalid UTF-8) refused.
#[must_use]
pub fn resolve(root: &Path, url: &str) -> Option<PathBuf> {
    let path = url.split(['?', '#']).next().unwrap_or_default();
    let decoded = percent_decode(path)?;
    let mut out = root.to_path_buf();
    for component in Path::new(decoded.trim_start_matches('/')).components() {
        match component {
            Component::Normal(part) => out.push(part),
            Component::CurDir => {}
            Component::ParentDir | Component::RootDir | Component::Prefix(_) => return None,
        }
    }
    Some(out)
}

// By hand: a few lines, and the only decoding a static server needs (no crate in the tree has it).
fn percent_decode(text: &str) -> Option<String> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = text.get(i + 1..i + 3)?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    let decoded = String::from_utf8(out).ok()?;
    (!decoded.contains('\0')).then_some(decoded)
}

fn mime_type(path: &Path) -> &'static str {
    match path
        .extension()
        .and_then(|e| e.to_str())
        .unwrap_or_default()
    {
        "html" => "text/html; charset=utf-8",
        "js" | "mjs" => "text/javascript; charset=utf-8",
        "css" => "text/css; charset=utf-8",
        "json" | "map" => "application/json",
        "wasm" => "application/wasm",
        "svg" => "image/svg+xml",
        "png" => "image/png",
        "ico" => "image/x-icon",
        "txt" | "md" | "ts" => "text/plain; charset=utf-8",
        _ => "application/octet-stream",
    }
}

/// `tlsfallback playground`.
#[derive(Debug, Args)]
pub(crate) struct PlaygroundCommand {
    /// The built playground directory (default: ./playground, else the one in this source tree).
    #[arg(long, value_name = "DIR")]
    pub(crate) dir: Option<PathBuf>,
    /// Address to listen on (port 0 picks a free port; the URL printed says which).
    #[arg(long, default_value = "127.0.0.1:8437")]
    pub(crate) listen: SocketAddr,
}

impl PlaygroundCommand {
    /// Serves the built playground until the process is stopped.
    ///
    /// # Errors
    ///
    /// When the address cannot be bound or stdout written.
    pub(crate) fn run(self) -> anyhow::Result<()> {
        let dir = self.dir.unwrap_or_else(|| {
            let here = PathBuf::from("playground");
            if here.join(BUILT_MARKER).is_file() {
                here
            } else {
                Path::new(env!("CARGO_MANIFEST_DIR")).join("../../playground")
            }
        });
        let server = PlaygroundServer::bind(&dir, self.listen)?;
        let mut stdout = io::stdout().lock();
        writeln!(stdout, "playground: {}", server.url()?)?;
        writeln!(stdout, "serving {} (Ctrl-C stops)", dir.display())?;
        stdout.flush()?;
        drop(stdout);
        server.serve_forever();
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_stay_under_the_root() {
        let root = Path::new("/srv/playground");
        assert_eq!(resolve(root, "/"), Some(root.to_path_buf()));
        assert_eq!(
            resolve(root, "/src/app.js?x=1#y"),
            Some(root.join("src/app.js"))
        );
        assert_eq!(resolve(root, "/a%20b.js"), Some(root.join("a b.js")));
        assert_eq!(resolve(root, "/../etc/passwd"), None);
        assert_eq!(resolve(root, "/src/%2e%2e/%2e%2e/etc/passwd"), None);
        assert_eq!(resolve(root, "//etc/passwd"), Some(root.join("etc/passwd")));
        assert_eq!(resolve(root, "/%00"), None);
        assert_eq!(resolve(root, "/%zz"), None);
        assert_eq!(resolve(root, "/%ff"), None);
    }

    #[test]
    fn wasm_and_modules_get_the_types_browsers_require() {
        assert_eq!(mime_type(Path::new("a.core.wasm")), "application/wasm");
        assert_eq!(
            mime_type(Path::new("policy_engine.js")),
            "text/javascript; charset=utf-8"
        );
    }
}
