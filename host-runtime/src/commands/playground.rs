//! `tlsfallback playground`: serves the built browser playground (playground/ after its build)
//! on 127.0.0.1.
//!
//! A static file server and nothing more: the page runs the policy component in the browser, so
//! the server has no logic to offer. It answers GET and HEAD for files under one directory, with
//! the MIME types browsers insist on (`application/wasm` for `WebAssembly.compileStreaming`,
//! `text/javascript` for module scripts) and `Cache-Control: no-cache` so a rebuilt component is
//! picked up on reload.

use std::fs;
use std::io::{self, BufRead as _, BufReader, Write as _};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Component, Path, PathBuf};
use std::time::Duration;

use anyhow::{Context as _, bail};

/// The file whose presence shows the playground was built (the transpiled built-in component).
pub const BUILT_MARKER: &str = "vendor/policy/policy_engine.js";

/// The longest request head read (request line and headers).
const MAX_HEAD_BYTES: u64 = 16 * 1024;
/// How long a connection may take to send its request or accept its response.
const IO_TIMEOUT: Duration = Duration::from_secs(10);

/// A bound playground server.
///
/// HTTP by hand: GET/HEAD of static files, one request per connection (`Connection: close`),
/// a thread per connection. tiny_http 0.12, tried first, left some of Chromium's parallel
/// keep-alive requests pending for good (3 page loads in 6 stalled on module scripts); this
/// server has no keep-alive state to get wrong, and what it parses is bounded and timed out.
pub struct PlaygroundServer {
    listener: TcpListener,
    root: PathBuf,
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
                 `npm ci && npm run build` in playground/ with TLSFALLBACK_WASM set to the file \
                 `tlsfallback export-component` writes",
                root.display()
            );
        }
        let root = root
            .canonicalize()
            .with_context(|| format!("resolving {}", root.display()))?;
        let listener =
            TcpListener::bind(listen).with_context(|| format!("listening on {listen}"))?;
        Ok(Self { listener, root })
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
    /// a malformed request) is logged and the server goes on.
    pub fn serve_forever(&self) {
        for stream in self.listener.incoming() {
            let stream = match stream {
                Ok(stream) => stream,
                Err(error) => {
                    eprintln!("tlsfallback playground: accepting a connection: {error}");
                    continue;
                }
            };
            let root = self.root.clone();
            std::thread::spawn(move || {
                if let Err(error) = answer(&root, stream) {
                    eprintln!("tlsfallback playground: answering a request: {error}");
                }
            });
        }
    }
}

/// Reads one request from `stream` and answers it.
fn answer(root: &Path, mut stream: TcpStream) -> io::Result<()> {
    stream.set_read_timeout(Some(IO_TIMEOUT))?;
    stream.set_write_timeout(Some(IO_TIMEOUT))?;
    let mut reader = BufReader::new(io::Read::take(stream.try_clone()?, MAX_HEAD_BYTES));
    let mut request_line = String::new();
    reader.read_line(&mut request_line)?;
    // The headers say nothing a static GET needs; read them so the client sees a clean close.
    loop {
        let mut header = String::new();
        if reader.read_line(&mut header)? == 0 || header.trim_end().is_empty() {
            break;
        }
    }
    let mut parts = request_line.split_ascii_whitespace();
    let (Some(method), Some(target)) = (parts.next(), parts.next()) else {
        return respond(
            &mut stream,
            400,
            "text/plain; charset=utf-8",
            b"bad request\n",
            false,
        );
    };
    let head = method == "HEAD";
    if !head && method != "GET" {
        return respond(
            &mut stream,
            405,
            "text/plain; charset=utf-8",
            b"only GET and HEAD are served\n",
            false,
        );
    }
    let Some(path) = resolve(root, target) else {
        return respond(
            &mut stream,
            400,
            "text/plain; charset=utf-8",
            b"bad path\n",
            head,
        );
    };
    let path = if path.is_dir() {
        path.join("index.html")
    } else {
        path
    };
    match fs::read(&path) {
        Ok(body) => respond(&mut stream, 200, mime_type(&path), &body, head),
        Err(error) if error.kind() == io::ErrorKind::NotFound => respond(
            &mut stream,
            404,
            "text/plain; charset=utf-8",
            b"not found\n",
            head,
        ),
        Err(error) => {
            eprintln!(
                "tlsfallback playground: reading {}: {error}",
                path.display()
            );
            respond(
                &mut stream,
                500,
                "text/plain; charset=utf-8",
                b"the file could not be read\n",
                head,
            )
        }
    }
}

fn respond(
    stream: &mut TcpStream,
    status: u16,
    content_type: &str,
    body: &[u8],
    head: bool,
) -> io::Result<()> {
    let reason = match status {
        200 => "OK",
        400 => "Bad Request",
        404 => "Not Found",
        405 => "Method Not Allowed",
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
