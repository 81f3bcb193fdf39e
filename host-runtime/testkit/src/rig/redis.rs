//! A real `redis-server` (Debian's) on a free loopback port, without persistence, for the fleet's
//! tests: started by [`RedisServer::start`], stopped by pid when dropped. Faults are injected
//! with the server's own commands ([`RedisServer::cli`]) or signals to its pid.

use std::io;
use std::net::{Ipv4Addr, TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// A running redis-server.
#[derive(Debug)]
pub struct RedisServer {
    child: Child,
    port: u16,
    dir: tempfile::TempDir,
}

impl RedisServer {
    /// Starts one on a free loopback port and waits until it accepts connections.
    ///
    /// # Errors
    ///
    /// No `redis-server` on the PATH (`scripts/setup` installs it), or it did not start.
    pub fn start() -> io::Result<Self> {
        let port = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))?
            .local_addr()?
            .port();
        Self::start_on(port)
    }

    /// Starts one on `port` (a restart after [`kill`](Self::kill) keeps its address).
    ///
    /// # Errors
    ///
    /// As [`start`](Self::start).
    pub fn start_on(port: u16) -> io::Result<Self> {
        let dir = tempfile::tempdir()?;
        let child = Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .args(["--enable-debug-command", "local", "--protected-mode", "no"])
            .arg("--dir")
            .arg(dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| io::Error::new(e.kind(), format!("starting redis-server: {e}")))?;
        let server = Self { child, port, dir };
        for _ in 0..200 {
            if TcpStream::connect((Ipv4Addr::LOCALHOST, port)).is_ok() {
                return Ok(server);
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        Err(io::Error::other(format!(
            "redis-server on port {port} did not start"
        )))
    }

    /// `redis://127.0.0.1:PORT`.
    #[must_use]
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// The port.
    #[must_use]
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The pid, for SIGSTOP/SIGCONT.
    #[must_use]
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Runs `redis-cli` with `args` against this server; its standard output.
    ///
    /// # Errors
    ///
    /// redis-cli missing or failing.
    pub fn cli(&self, args: &[&str]) -> io::Result<String> {
        let out = Command::new("redis-cli")
            .args(["-h", "127.0.0.1", "-p", &self.port.to_string()])
            .args(args)
            .output()?;
        if !out.status.success() {
            return Err(io::Error::other(
                String::from_utf8_lossy(&out.stderr).into_owned(),
            ));
        }
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
    }

    /// Sends `signal` (`STOP`, `CONT`) to the server.
    ///
    /// # Errors
    ///
    /// `kill` failing.
    pub fn signal(&self, signal: &str) -> io::Result<()> {
        let status = Command::new("kill")
            .arg(format!("-{signal}"))
            .arg(self.pid().to_string())
            .status()?;
        if status.success() {
            Ok(())
        } else {
            Err(io::Error::other(format!("kill -{signal} failed")))
        }
    }

    /// Kills the server with SIGKILL (it forgets everything: no persistence) and waits for it.
    pub fn kill(mut self) -> u16 {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = &self.dir;
        self.port
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .arg("-CONT")
            .arg(self.pid().to_string())
            .stderr(Stdio::null())
            .status();
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
