use std::io::{Read as _, Write as _};
use std::net::TcpStream;
use std::time::Duration;

use tlsfallback_cli::commands::playground::{PlaygroundServer, ServerLimits};

use crate::util::run;

#[test]
fn a_directory_that_is_not_a_built_playground_is_refused_with_the_way_to_build_it() {
    let empty = tempfile::tempdir().expect("a temporary directory");
    let dir = empty.path().to_str().expect("a UTF-8 path");
    let output = run(&["playground", "--dir", dir, "--listen", "127.0.0.1:0"], "");
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("is not a built playground")
            && stderr.contains("vendor/policy/policy_engine.js")
            && stderr.contains("scripts/playground"),
        "{stderr}"
    );
}

#[test]
fn listen_must_be_an_address() {
    let output = run(&["playground", "--listen", "localhost"], "");
    assert!(!output.status.success());
    assert!(
        String::from_utf8_lossy(&output.stderr).contains("--listen"),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
}

/// A directory that passes for a built playground: the marker file and an index page.
fn fake_playground() -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let marker = dir
        .path()
        .join(tlsfallback_cli::commands::playground::BUILT_MARKER);
    std::fs::create_dir_all(marker.parent().unwrap()).unwrap();
    std::fs::write(&marker, "export {};\n").unwrap();
    std::fs::write(dir.path().join("index.html"), "<!doctype html>playground\n").unwrap();
    dir
}

/// Serves `root` on a free port on a thread of its own (it runs until the test binary ends).
fn serve(root: &std::path::Path, limits: ServerLimits) -> std::net::SocketAddr {
    let server = PlaygroundServer::bind(root, "127.0.0.1:0".parse().unwrap())
        .expect("the server binds")
        .with_limits(limits);
    let address = server
        .url()
        .unwrap()
        .trim_start_matches("http://")
        .trim_end_matches('/')
        .parse()
        .unwrap();
    std::thread::spawn(move || server.serve_forever());
    address
}

/// One GET, the whole response as text.
fn get(address: std::net::SocketAddr, path: &str) -> String {
    let mut stream = TcpStream::connect(address).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(60)))
        .unwrap();
    write!(stream, "GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    response
}

#[test]
fn symlink_out_of_the_playground_root_is_not_served() {
    let root = fake_playground();
    let outside = tempfile::tempdir().unwrap();
    std::fs::write(outside.path().join("secret.txt"), "the secret\n").unwrap();
    std::fs::write(root.path().join("inside.txt"), "inside\n").unwrap();
    let link = |target: &std::path::Path, name: &str| {
        std::os::unix::fs::symlink(target, root.path().join(name)).unwrap();
    };
    link(&outside.path().join("secret.txt"), "secret.txt");
    link(outside.path(), "escape");
    link(&root.path().join("inside.txt"), "alias.txt");
    // A directory whose index page is a link out.
    std::fs::create_dir(root.path().join("docs")).unwrap();
    std::os::unix::fs::symlink(
        outside.path().join("secret.txt"),
        root.path().join("docs/index.html"),
    )
    .unwrap();
    let address = serve(root.path(), ServerLimits::default());
    for path in ["/secret.txt", "/escape/secret.txt", "/docs/", "/docs"] {
        let response = get(address, path);
        assert!(response.starts_with("HTTP/1.1 403 "), "{path}: {response}");
        assert!(!response.contains("the secret"), "{path}: {response}");
    }
    // Links that stay inside are served, and so is the page itself.
    assert!(get(address, "/alias.txt").ends_with("\r\n\r\ninside\n"));
    assert!(get(address, "/").contains("playground"));
    assert!(get(address, "/missing.js").starts_with("HTTP/1.1 404 "));
}

#[test]
fn many_slow_clients_cannot_exhaust_the_playground_server() {
    // Slow clients each send a byte of their request head now and then: a per-read timeout
    // never fires, and a thread per connection would grow without end.
    let root = fake_playground();
    let limits = ServerLimits {
        max_connections: 4,
        request_timeout: Duration::from_secs(2),
        response_timeout: Duration::from_secs(2),
    };
    let address = serve(root.path(), limits);
    let slow: Vec<_> = (0..24)
        .map(|_| {
            std::thread::spawn(move || {
                let mut stream = TcpStream::connect(address).unwrap();
                stream
                    .set_read_timeout(Some(Duration::from_millis(100)))
                    .unwrap();
                // At most 60 s of a byte every 100 ms, until the server answers or closes.
                for _ in 0..600 {
                    if stream.write_all(b"G").is_err() {
                        return String::new();
                    }
                    let mut response = Vec::new();
                    match stream.read_to_end(&mut response) {
                        Ok(_) => return String::from_utf8_lossy(&response).into_owned(),
                        Err(error) if error.kind() == std::io::ErrorKind::WouldBlock => {}
                        Err(_) => return String::from_utf8_lossy(&response).into_owned(),
                    }
                }
                panic!("a slow client was kept for over a minute");
            })
        })
        .collect();
    let answers: Vec<String> = slow.into_iter().map(|t| t.join().unwrap()).collect();
    // Every slow client was let go: refused at once over the limit, or cut off at the deadline.
    assert!(
        answers.iter().any(|a| a.starts_with("HTTP/1.1 503 ")),
        "over the limit, connections are refused: {answers:?}"
    );
    // And the server still serves a normal client (the slots freed).
    let mut last = String::new();
    for _ in 0..100 {
        last = get(address, "/");
        if last.starts_with("HTTP/1.1 200 ") {
            break;
        }
        assert!(last.starts_with("HTTP/1.1 503 "), "{last}");
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(last.contains("playground"), "{last}");
}
