//! A real `redis-server` (Debian's) on a free loopback port, without persistence, for the fleet's
//! tests: started by [`RedisServer::start`] (plain), [`RedisServer::start_tls`] (TLS and an ACL
//! user) or as a Redis Cluster of primaries ([`RedisCluster::start`]), stopped by pid when
//! dropped. Faults are injected with the server's own commands ([`RedisServer::cli`]) or signals
//! to its pid.

use std::io;
use std::net::{Ipv4Addr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::peers::Identity;

/// The ACL user [`RedisServer::start_tls`] creates: only the fleet's keys, and no dangerous
/// command (`CONFIG`, `DEBUG`, `FLUSHALL`, …), which is all a node needs.
pub const FLEET_USER: &str = "tlsfb";

/// How a server is reached.
#[derive(Debug)]
enum Access {
    Plain,
    /// TLS on the port, with the CA file that verifies the server and the user's password.
    Tls {
        ca_file: PathBuf,
        password: String,
    },
}

/// A running redis-server.
#[derive(Debug)]
pub struct RedisServer {
    child: Child,
    port: u16,
    access: Access,
    dir: tempfile::TempDir,
}

impl RedisServer {
    /// Starts one on a free loopback port and waits until it accepts connections.
    ///
    /// # Errors
    ///
    /// No `redis-server` on the PATH (`scripts/setup` installs it), or it did not start.
    pub fn start() -> io::Result<Self> {
        Self::start_on(super::free_tcp_port()?)
    }

    /// Starts one on `port` (a restart after [`kill`](Self::kill) keeps its address).
    ///
    /// # Errors
    ///
    /// As [`start`](Self::start).
    pub fn start_on(port: u16) -> io::Result<Self> {
        let dir = tempfile::tempdir()?;
        let args = vec!["--port".to_owned(), port.to_string()];
        Self::spawn(port, args, Access::Plain, dir)
    }

    /// Starts one that speaks only TLS, with a certificate for `127.0.0.1` (its own CA file:
    /// [`ca_file`](Self::ca_file)), the default user disabled and [`FLEET_USER`] with `password`.
    ///
    /// # Errors
    ///
    /// As [`start`](Self::start), or OpenSSL failing to make the certificate.
    pub fn start_tls(password: &str) -> io::Result<Self> {
        let port = super::free_tcp_port()?;
        let dir = tempfile::tempdir()?;
        let identity = Identity::self_signed("127.0.0.1").map_err(io::Error::other)?;
        let (cert, key) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
        std::fs::write(
            &cert,
            identity.certificate.to_pem().map_err(io::Error::other)?,
        )?;
        std::fs::write(
            &key,
            identity
                .key
                .private_key_to_pem_pkcs8()
                .map_err(io::Error::other)?,
        )?;
        let path = |p: &Path| p.to_string_lossy().into_owned();
        let args = vec![
            "--port".to_owned(),
            "0".to_owned(),
            "--tls-port".to_owned(),
            port.to_string(),
            "--tls-cert-file".to_owned(),
            path(&cert),
            "--tls-key-file".to_owned(),
            path(&key),
            "--tls-ca-cert-file".to_owned(),
            path(&cert),
            "--tls-auth-clients".to_owned(),
            "no".to_owned(),
            "--user".to_owned(),
            "default".to_owned(),
            "off".to_owned(),
            "--user".to_owned(),
            FLEET_USER.to_owned(),
            "on".to_owned(),
            format!(">{password}"),
            "~tlsfb:*".to_owned(),
            "+@all".to_owned(),
            "-@dangerous".to_owned(),
        ];
        let access = Access::Tls {
            ca_file: cert,
            password: password.to_owned(),
        };
        Self::spawn(port, args, access, dir)
    }

    fn spawn(
        port: u16,
        args: Vec<String>,
        access: Access,
        dir: tempfile::TempDir,
    ) -> io::Result<Self> {
        let child = Command::new("redis-server")
            .args(&args)
            .args(["--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
            .args(["--enable-debug-command", "local", "--protected-mode", "no"])
            .arg("--dir")
            .arg(dir.path())
            .current_dir(dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| io::Error::new(e.kind(), format!("starting redis-server: {e}")))?;
        let server = Self {
            child,
            port,
            access,
            dir,
        };
        for _ in 0..300 {
            if TcpStream::connect((Ipv4Addr::LOCALHOST, port)).is_ok() {
                return Ok(server);
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        Err(io::Error::other(format!(
            "redis-server on port {port} did not start"
        )))
    }

    /// `redis://127.0.0.1:PORT`, or for a TLS server
    /// `rediss://tlsfb:PASSWORD@127.0.0.1:PORT`.
    #[must_use]
    pub fn url(&self) -> String {
        match &self.access {
            Access::Plain => format!("redis://127.0.0.1:{}", self.port),
            Access::Tls { password, .. } => {
                format!("rediss://{FLEET_USER}:{password}@127.0.0.1:{}", self.port)
            }
        }
    }

    /// The CA file that verifies a TLS server's certificate.
    #[must_use]
    pub fn ca_file(&self) -> Option<&Path> {
        match &self.access {
            Access::Plain => None,
            Access::Tls { ca_file, .. } => Some(ca_file),
        }
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
        let mut command = Command::new("redis-cli");
        command.args(["-h", "127.0.0.1", "-p", &self.port.to_string()]);
        if let Access::Tls { ca_file, password } = &self.access {
            command.arg("--tls").arg("--cacert").arg(ca_file).args([
                "--user",
                FLEET_USER,
                "--pass",
                password,
                "--no-auth-warning",
            ]);
        }
        let out = command.args(args).output()?;
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

/// A Redis Cluster of primaries without replicas on free loopback ports, created with
/// `redis-cli --cluster create`: a killed primary's slots have no one to fail over to.
#[derive(Debug)]
pub struct RedisCluster {
    /// The primaries, in the order they were started.
    pub primaries: Vec<Option<RedisServer>>,
}

impl RedisCluster {
    /// Starts `primaries` servers (at least 3, Redis's minimum), joins them and waits until every
    /// one says the cluster is ok.
    ///
    /// # Errors
    ///
    /// A server not starting, `redis-cli --cluster create` failing, or the cluster not becoming ok
    /// within 20 s.
    pub fn start(primaries: usize) -> io::Result<Self> {
        let mut servers = Vec::with_capacity(primaries);
        for _ in 0..primaries {
            let port = super::free_tcp_port()?;
            let dir = tempfile::tempdir()?;
            let args = [
                "--port",
                &port.to_string(),
                "--cluster-enabled",
                "yes",
                "--cluster-config-file",
                "nodes.conf",
                // A dead primary is noticed within a second, not the default 15.
                "--cluster-node-timeout",
                "1000",
            ]
            .map(str::to_owned)
            .to_vec();
            servers.push(RedisServer::spawn(port, args, Access::Plain, dir)?);
        }
        let mut create = Command::new("redis-cli");
        create.arg("--cluster").arg("create");
        for server in &servers {
            create.arg(format!("127.0.0.1:{}", server.port));
        }
        let out = create
            .args(["--cluster-replicas", "0", "--cluster-yes"])
            .output()?;
        if !out.status.success() {
            return Err(io::Error::other(format!(
                "redis-cli --cluster create: {}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            )));
        }
        for _ in 0..400 {
            let ok = servers.iter().all(|server| {
                server
                    .cli(&["CLUSTER", "INFO"])
                    .is_ok_and(|info| info.contains("cluster_state:ok"))
            });
            if ok {
                return Ok(Self {
                    primaries: servers.into_iter().map(Some).collect(),
                });
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Err(io::Error::other(
            "the cluster did not become ok within 20 s",
        ))
    }

    /// The seed URL of the first live primary (the client learns the others from it).
    ///
    /// # Panics
    ///
    /// Every primary killed.
    #[must_use]
    pub fn url(&self) -> String {
        self.primaries
            .iter()
            .flatten()
            .next()
            .expect("a live primary")
            .url()
    }

    /// The primary that serves `key`'s slot (by `CLUSTER KEYSLOT` and `CLUSTER SLOTS`).
    ///
    /// # Errors
    ///
    /// redis-cli failing or answering something unexpected.
    pub fn primary_of(&self, key: &str) -> io::Result<usize> {
        let any = self
            .primaries
            .iter()
            .flatten()
            .next()
            .expect("a live primary");
        let slot: u16 = any
            .cli(&["CLUSTER", "KEYSLOT", key])?
            .parse()
            .map_err(io::Error::other)?;
        for (index, server) in self.primaries.iter().enumerate() {
            let Some(server) = server else { continue };
            // `CLUSTER SHARDS` would be neater; `CLUSTER NODES` is in every 7.x: `myself`'s
            // line ends with its slot ranges.
            let nodes = server.cli(&["CLUSTER", "NODES"])?;
            let mine = nodes
                .lines()
                .find(|line| line.contains("myself"))
                .unwrap_or("");
            let serves = mine.split_whitespace().skip(8).any(|range| {
                let (low, high) = range.split_once('-').unwrap_or((range, range));
                matches!((low.parse::<u16>(), high.parse::<u16>()), (Ok(l), Ok(h)) if (l..=h).contains(&slot))
            });
            if serves {
                return Ok(index);
            }
        }
        Err(io::Error::other(format!("no primary serves slot {slot}")))
    }

    /// Kills primary `index` with SIGKILL.
    pub fn kill(&mut self, index: usize) {
        if let Some(server) = self.primaries[index].take() {
            let _ = server.kill();
        }
    }
}
