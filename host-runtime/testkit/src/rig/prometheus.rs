//! A real Prometheus (Debian's `prometheus` package) on a free loopback port, scraping the
//! targets a test gives it every second, its storage in a temporary directory; stopped by pid
//! when dropped. [`Prometheus::query`] asks its HTTP API, as a dashboard would.

use std::io::{self, Read as _, Write as _};
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// A running Prometheus.
#[derive(Debug)]
pub struct Prometheus {
    child: Child,
    port: u16,
    dir: tempfile::TempDir,
}

impl Prometheus {
    /// Starts one scraping `targets` (`HOST:PORT`, path `/metrics`) every second as the job
    /// `tlsfallback`, and waits until it is ready.
    ///
    /// # Errors
    ///
    /// No `prometheus` on the PATH (`scripts/setup` installs it), or it did not become ready.
    pub fn start(targets: &[SocketAddr]) -> io::Result<Self> {
        let dir = tempfile::tempdir()?;
        let port = super::free_tcp_port()?;
        let listed: Vec<String> = targets.iter().map(|t| format!("'{t}'")).collect();
        let config = format!(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n\
             scrape_configs:\n  - job_name: tlsfallback\n    scrape_interval: 1s\n    \
             scrape_timeout: 900ms\n    static_configs:\n      - targets: [{}]\n",
            listed.join(", ")
        );
        let config_path = dir.path().join("prometheus.yml");
        std::fs::write(&config_path, config)?;
        let log = std::fs::File::create(dir.path().join("prometheus.log"))?;
        let child = Command::new("prometheus")
            .arg(format!("--config.file={}", config_path.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.path().join("data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .map_err(|e| io::Error::new(e.kind(), format!("starting prometheus: {e}")))?;
        let mut prometheus = Self { child, port, dir };
        for _ in 0..600 {
            if prometheus
                .get("/-/ready")
                .is_ok_and(|(status, _)| status == 200)
            {
                return Ok(prometheus);
            }
            if let Ok(Some(status)) = prometheus.child.try_wait() {
                return Err(io::Error::other(format!(
                    "prometheus exited ({status}):\n{}",
                    prometheus.log()
                )));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Err(io::Error::other(format!(
            "prometheus on port {port} did not become ready:\n{}",
            prometheus.log()
        )))
    }

    /// Its own log, for a failing test's message.
    #[must_use]
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("prometheus.log")).unwrap_or_default()
    }

    /// The HTTP API's answer to an instant query of `expression`: the `data` object's JSON
    /// (`{"resultType":"vector","result":[...]}`).
    ///
    /// # Errors
    ///
    /// When Prometheus does not answer 200.
    pub fn query(&self, expression: &str) -> io::Result<String> {
        let (status, body) = self.get(&format!("/api/v1/query?query={}", encode(expression)))?;
        if status != 200 {
            return Err(io::Error::other(format!(
                "prometheus answered {status}: {body}"
            )));
        }
        Ok(body)
    }

    /// One GET on a connection of its own: the status and the body.
    fn get(&self, path: &str) -> io::Result<(u16, String)> {
        let mut stream = TcpStream::connect((Ipv4Addr::LOCALHOST, self.port))?;
        stream.set_read_timeout(Some(Duration::from_secs(10)))?;
        write!(
            stream,
            "GET {path} HTTP/1.0\r\nHost: 127.0.0.1:{}\r\nConnection: close\r\n\r\n",
            self.port
        )?;
        let mut response = String::new();
        stream.read_to_string(&mut response)?;
        let status = response
            .split(' ')
            .nth(1)
            .and_then(|code| code.parse().ok())
            .ok_or_else(|| io::Error::other(format!("not an HTTP response: {response:?}")))?;
        let body = response
            .split_once("\r\n\r\n")
            .map_or("", |(_, body)| body)
            .to_owned();
        Ok((status, body))
    }
}

/// Percent-encodes a query parameter.
fn encode(text: &str) -> String {
    text.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
                char::from(b).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
