//! The socket owner of the Postfix service (as mini-redis's server owns its sockets and
//! `Command::apply` knows none): it listens, accepts and frames connections on their own threads
//! ([`connections`](super::connections)), follows the log, reads the clock, and hands each
//! lookup and each batch of log lines, with `now`, to the sans-IO [`Daemon`].

use std::net::TcpListener;
use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};
use std::sync::{Arc, mpsc};

use super::connections::{self, Hooks, Job};
use super::daemon::{Daemon, DaemonError, LookupLines, prepare};
use super::events::Event;
use super::metrics::Metrics;
use crate::causes::Causes;
use crate::clock::{Clock, Stopwatch};
use tlsfallback_engine::config::PolicyFile;
use tlsfallback_engine::decider::DecisionEngine;

/// A new policy file and the engine it asks for, or why they cannot serve.
pub type Reloaded = Result<(PolicyFile, Box<dyn DecisionEngine>), String>;

/// What serving does besides answering lookups and reading the log.
#[derive(Default)]
pub struct Operations<'r> {
    /// Times each lookup and keeps `up` and the fleet's circuit (the events are counted by
    /// the daemon's log sink, which sees them all).
    pub metrics: Option<Arc<Metrics>>,
    /// On SIGHUP, reads the policy file (and plugin) anew; `Err` keeps the old one serving.
    pub reload: Option<&'r mut dyn FnMut() -> Reloaded>,
    /// The policy file's name in the log (`built-in` when there is none).
    pub policy_name: String,
}

/// Why the service stopped.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ServeError {
    /// The address cannot be listened on.
    #[error("listening on {address}: {cause}")]
    Listen {
        /// The address.
        address: ListenAddress,
        /// Why.
        cause: std::io::Error,
    },
    /// The socket (its address, a stale one in the way) or the listener's thread failed.
    #[error("{}", Causes(.0))]
    Io(std::io::Error),
    /// The daemon could not resume the log.
    #[error(transparent)]
    Daemon(#[from] DaemonError),
    /// The listener's thread is gone.
    #[error("the listener stopped accepting connections")]
    ListenerStopped,
    /// SIGHUP could not be caught.
    #[error("catching SIGHUP for reloads: {0}")]
    Signal(std::io::Error),
}

impl From<std::io::Error> for ServeError {
    fn from(cause: std::io::Error) -> Self {
        Self::Io(cause)
    }
}

/// Where Postfix connects.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ListenAddress {
    /// `inet:HOST:PORT` (Postfix's chrooted smtp(8) can reach it).
    Inet(String),
    /// `unix:PATH`.
    Unix(PathBuf),
}

impl ListenAddress {
    /// Parses `inet:HOST:PORT`, `HOST:PORT` or `unix:PATH`.
    ///
    /// # Errors
    ///
    /// A message naming the accepted forms.
    pub fn parse(text: &str) -> Result<Self, String> {
        if let Some(path) = text.strip_prefix("unix:") {
            if path.is_empty() {
                return Err("unix: needs a path".to_owned());
            }
            return Ok(Self::Unix(PathBuf::from(path)));
        }
        let address = text.strip_prefix("inet:").unwrap_or(text);
        match address.rsplit_once(':') {
            Some((host, port)) if !host.is_empty() && port.parse::<u16>().is_ok() => {
                Ok(Self::Inet(address.to_owned()))
            }
            _ => Err(format!(
                "{text:?} is not inet:HOST:PORT, HOST:PORT or unix:PATH"
            )),
        }
    }

    /// The table Postfix's `main.cf` names for this address and map name.
    #[must_use]
    pub fn postfix_table(&self, map_name: &str) -> String {
        format!("socketmap:{self}:{map_name}")
    }
}

impl std::fmt::Display for ListenAddress {
    /// `inet:HOST:PORT` or `unix:PATH`, as [`ListenAddress::parse`] reads it.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Inet(address) => write!(f, "inet:{address}"),
            Self::Unix(path) => write!(f, "unix:{}", path.display()),
        }
    }
}

/// Serves lookups on `listener` and follows the log, until the listener fails. `ready` is called
/// once with the address Postfix should use (the port chosen when it was 0).
///
/// # Errors
///
/// When listening fails, or the log cannot be read or the database fails persistently.
pub fn serve(
    daemon: &mut Daemon<'_>,
    clock: &mut dyn Clock,
    address: &ListenAddress,
    log_file: Option<(&Path, bool)>,
    operations: Operations<'_>,
    ready: &mut dyn FnMut(&ListenAddress),
) -> Result<(), ServeError> {
    let Operations {
        metrics,
        mut reload,
        policy_name,
    } = operations;
    let (jobs, inbox) = mpsc::channel::<Job>();
    let lookup_lines = Arc::new(LookupLines::default());
    let prepare: Option<connections::Prepare> = daemon.floors().map(|floors| {
        let options = daemon.options.clone();
        let lines = Arc::clone(&lookup_lines);
        let prepare: connections::Prepare =
            Arc::new(move |data: &[u8]| prepare(&options, floors.as_ref(), &lines, data));
        prepare
    });
    let timer: Option<connections::LookupTimer> = metrics.clone().map(|metrics| {
        let timer: connections::LookupTimer =
            Arc::new(move |took| metrics.observe_lookup_duration(took.as_secs_f64()));
        timer
    });
    let hooks = Hooks { prepare, timer };
    if reload.is_some() {
        catch_sighup(jobs.clone())?;
    }
    let (max_connections, descriptor_warning) =
        connections::connection_limit(daemon.options.max_connections);
    let idle = daemon.options.idle_timeout;
    let bound = match address {
        ListenAddress::Inet(text) => {
            let listener = TcpListener::bind(text).map_err(|cause| ServeError::Listen {
                address: address.clone(),
                cause,
            })?;
            let bound = ListenAddress::Inet(listener.local_addr()?.to_string());
            connections::spawn_listener(listener, jobs, hooks, max_connections, idle)?;
            bound
        }
        ListenAddress::Unix(path) => {
            // A socket left by an earlier run would make bind fail.
            if std::fs::symlink_metadata(path)
                .is_ok_and(|m| std::os::unix::fs::FileTypeExt::is_socket(&m.file_type()))
            {
                std::fs::remove_file(path)?;
            }
            let listener = UnixListener::bind(path).map_err(|cause| ServeError::Listen {
                address: address.clone(),
                cause,
            })?;
            connections::spawn_listener(listener, jobs, hooks, max_connections, idle)?;
            address.clone()
        }
    };
    let mut follower = match log_file {
        Some((path, forget)) => Some(daemon.resume_log(path, forget)?),
        None => None,
    };
    ready(&bound);
    if let Some(metrics) = &metrics {
        metrics.set_up(true);
    }
    if let Some(warning) = descriptor_warning {
        daemon.log(&Event::Warning(warning));
    }
    let poll = daemon.options.poll_interval;
    let mut last_poll: Option<Stopwatch> = None;
    loop {
        let poll_due = last_poll.is_none_or(|since| since.elapsed() >= poll);
        if poll_due {
            last_poll = Some(Stopwatch::start());
            // A slice of the sweep for unused destinations, at most one per poll interval.
            if let Err(error) = daemon.housekeeping(clock.now()) {
                daemon.log(&Event::Warning(format!(
                    "forgetting unused destinations: {error:#} (tried again at the next poll)"
                )));
            }
        }
        if let Some((follower, tracker)) = follower.as_mut()
            && poll_due
        {
            // Keep reading while a backlog lasts, without starving lookups for long.
            for _ in 0..64 {
                match daemon.poll_log(follower, tracker, clock.now()) {
                    Ok(true) => {}
                    Ok(false) => break,
                    Err(error) => {
                        let event = Event::LogFailed {
                            path: follower.path().display().to_string(),
                            cause: error.cause(),
                            error: format!("{error:#}"),
                        };
                        daemon.log(&event);
                        break;
                    }
                }
            }
        }
        lookup_lines.drain(daemon.log);
        if let Some(metrics) = &metrics {
            let circuit = daemon.store().fleet().map(crate::fleet::Fleet::circuit);
            metrics.set_fleet_circuit(circuit.as_ref());
        }
        // Wait only until the next poll is due: a lookup in between must not put it off by a
        // whole interval (it did: docs/scale.md, the delay from a status line to the history).
        let until_poll = last_poll.map_or(poll, |since| poll.saturating_sub(since.elapsed()));
        match inbox.recv_timeout(until_poll) {
            Ok(Job::Lookup {
                data,
                client,
                reply,
                floor,
            }) => {
                let _ = reply.send(daemon.answer_with_floor(&data, client, floor, clock.now()));
            }
            Ok(Job::Warning(warning)) => daemon.log(&Event::Warning(warning)),
            Ok(Job::Reload) => {
                if let Some(reload) = reload.as_deref_mut() {
                    let event = match reload() {
                        Ok((policy, engine)) => {
                            for table in daemon.replace_policy(policy, engine) {
                                daemon.log(&Event::Warning(format!(
                                    "{policy_name}: the {table} table changed; it is read at \
                                     start only, and takes effect at the next restart"
                                )));
                            }
                            Event::Reloaded {
                                policy: policy_name.clone(),
                            }
                        }
                        Err(error) => Event::ReloadRefused {
                            policy: policy_name.clone(),
                            error,
                        },
                    };
                    daemon.log(&event);
                }
            }
            Err(mpsc::RecvTimeoutError::Timeout) => {}
            Err(mpsc::RecvTimeoutError::Disconnected) => {
                return Err(ServeError::ListenerStopped);
            }
        }
    }
}

/// Turns each SIGHUP into a reload job, queued behind the lookups that came before it.
fn catch_sighup(jobs: mpsc::Sender<Job>) -> Result<(), ServeError> {
    let mut signals = signal_hook::iterator::Signals::new([signal_hook::consts::SIGHUP])
        .map_err(ServeError::Signal)?;
    std::thread::Builder::new()
        .name("sighup".to_owned())
        .spawn(move || {
            for _ in signals.forever() {
                if jobs.send(Job::Reload).is_err() {
                    return;
                }
            }
        })
        .map_err(ServeError::Signal)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listen_addresses() {
        assert_eq!(
            ListenAddress::parse("inet:127.0.0.1:10027").unwrap(),
            ListenAddress::Inet("127.0.0.1:10027".into())
        );
        assert_eq!(
            ListenAddress::parse("127.0.0.1:0")
                .unwrap()
                .postfix_table("m"),
            "socketmap:inet:127.0.0.1:0:m"
        );
        assert!(ListenAddress::parse("unix:").is_err());
        assert!(ListenAddress::parse("nonsense").is_err());
    }
}
