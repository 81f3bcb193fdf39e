//! sys4's TLSRPT reporter (`tlsrpt-collectd`, `tlsrpt-fetcher`, `tlsrpt-reportd`: the pinned
//! install of `benchmarks/python/requirements-tlsrpt-reporter.txt` that `scripts/setup` makes),
//! run as Postfix 3.10 runs it, on files in a test's directory.
//!
//! The reporter reports on finished UTC days only: reportd fetches "yesterday". A test cannot
//! wait for midnight, so [`Collectd::roll_over`] uses the collectd's own development switch
//! (SIGUSR2), which moves today's results to yesterday and hands yesterday's database to the
//! fetcher exactly as the midnight rollover does. [`Reportd::run`] then runs the reportd until
//! it has written the reports, with its debug delivery target (a directory) instead of mail.
//!
//! Each program runs in a process group of its own, killed when its value is dropped (or by a
//! watchdog shell if this process ends without dropping it).

use std::io;
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::time::Duration;

use rustix::process::{Pid, Signal, kill_process, kill_process_group};

use tlsfallback_mta::clock::Deadline;

/// How long the collectd may take to listen, to read what was sent, or to roll over; and the
/// reportd to write its reports.
const WITHIN: Duration = Duration::from_secs(60);

/// What went wrong with the reporter.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ReporterError {
    /// The pinned install is missing.
    #[error(
        "tlsrpt-reporter is not installed at {}: run scripts/setup (it installs \
         benchmarks/python/requirements-tlsrpt-reporter.txt into benchmarks/python/.venv)",
        path.display()
    )]
    NotInstalled {
        /// Where the program was looked for.
        path: PathBuf,
    },
    /// A file or process operation failed.
    #[error("{doing}: {source}")]
    Io {
        /// What was being done.
        doing: String,
        /// The underlying error.
        source: io::Error,
    },
    /// A program did not get where it should within the time allowed; `log` is its log.
    #[error("{program}: {why}\n--- its log ---\n{log}")]
    Stuck {
        /// Which program.
        program: &'static str,
        /// What was waited for.
        why: String,
        /// Its log so far.
        log: String,
    },
}

fn io_error(doing: impl Into<String>) -> impl FnOnce(io::Error) -> ReporterError {
    let doing = doing.into();
    move |source| ReporterError::Io { doing, source }
}

/// Where `scripts/setup` installs the reporter's program `name`.
#[must_use]
pub fn installed(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../benchmarks/python/.venv/bin")
        .join(name)
}

/// The version `scripts/setup` pins (for reports and notes), read from the pin file.
#[must_use]
pub fn pinned_version() -> String {
    let pins = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../benchmarks/python/requirements-tlsrpt-reporter.txt");
    std::fs::read_to_string(pins)
        .unwrap_or_default()
        .lines()
        .find_map(|line| line.strip_prefix("tlsrpt-reporter=="))
        .unwrap_or("unknown")
        .trim()
        .to_owned()
}

/// A child in a process group of its own, with its watchdog.
struct Daemon {
    child: Child,
    watchdog: Option<(Child, ChildStdin)>,
    log: PathBuf,
    program: &'static str,
}

impl Daemon {
    fn start(program: &'static str, args: &[String], log: PathBuf) -> Result<Self, ReporterError> {
        let path = installed(program);
        if !path.is_file() {
            return Err(ReporterError::NotInstalled { path });
        }
        let output = std::fs::File::create(log.with_extension("out"))
            .map_err(io_error(format!("creating {}", log.display())))?;
        let errors = output
            .try_clone()
            .map_err(io_error("duplicating a file descriptor"))?;
        let child = Command::new(&path)
            .args(args)
            // No configuration file of the machine's: only the flags count.
            .env_remove("TLSRPT_COLLECTD_STORAGE")
            .env_remove("TLSRPT_REPORTD_DBNAME")
            .stdin(Stdio::null())
            .stdout(output)
            .stderr(errors)
            .process_group(0)
            .spawn()
            .map_err(io_error(format!("starting {}", path.display())))?;
        let watchdog = crate::rig::mta_sts_resolver::start_watchdog(&child).map_err(|e| {
            ReporterError::Io {
                doing: "starting a watchdog".into(),
                source: io::Error::other(e.to_string()),
            }
        })?;
        Ok(Self {
            child,
            watchdog: Some(watchdog),
            log,
            program,
        })
    }

    fn log(&self) -> String {
        let mut text = std::fs::read_to_string(&self.log).unwrap_or_default();
        text.push_str(&std::fs::read_to_string(self.log.with_extension("out")).unwrap_or_default());
        text
    }

    /// Waits until `done` holds of the log, or fails with `why`.
    fn wait_for(&mut self, why: &str, done: impl Fn(&str) -> bool) -> Result<(), ReporterError> {
        let deadline = Deadline::after(WITHIN);
        loop {
            let log = self.log();
            if done(&log) {
                return Ok(());
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                return Err(self.stuck(format!("exited ({status}) before {why}")));
            }
            if deadline.left().is_zero() {
                return Err(self.stuck(format!("not {why} within {WITHIN:?}")));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn stuck(&self, why: String) -> ReporterError {
        ReporterError::Stuck {
            program: self.program,
            why,
            log: self.log(),
        }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = kill_process_group(Pid::from_child(&self.child), Signal::KILL);
        let _ = self.child.wait();
        if let Some((mut watchdog, _stdin)) = self.watchdog.take() {
            let _ = watchdog.kill();
            let _ = watchdog.wait();
        }
    }
}

/// A running `tlsrpt-collectd` on a socket in a test's directory.
pub struct Collectd {
    daemon: Daemon,
    socket: PathBuf,
    storage: String,
}

impl std::fmt::Debug for Collectd {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Collectd")
            .field("pid", &self.daemon.child.id())
            .field("socket", &self.socket)
            .finish_non_exhaustive()
    }
}

/// The largest `(N total)` the collectd's debug log has counted.
fn datagrams_counted(log: &str) -> usize {
    log.lines()
        .filter_map(|line| {
            let (_, rest) = line.split_once(" datagrams (")?;
            rest.strip_suffix(" total)")?.parse::<usize>().ok()
        })
        .max()
        .unwrap_or(0)
}

impl Collectd {
    /// Starts the collectd with its socket at `dir/collectd.sock` and its database at
    /// `dir/collectd.sqlite`; returns once it listens and has set up today's and yesterday's
    /// databases.
    ///
    /// # Errors
    ///
    /// Not installed (naming `scripts/setup`), or not ready within a minute (with its log).
    pub fn start(dir: &Path) -> Result<Self, ReporterError> {
        let socket = dir.join("collectd.sock");
        let storage = format!("sqlite://{}", dir.join("collectd.sqlite").display());
        let log = dir.join("collectd.log");
        let args = [
            "--storage",
            &storage,
            "--socketname",
            &socket.to_string_lossy(),
            // Commit after one idle second (the default is five), so that what a test sent is
            // counted in the log soon.
            "--sockettimeout",
            "1",
            "--logfilename",
            &log.to_string_lossy(),
            "--log_level",
            "debug",
        ]
        .map(ToOwned::to_owned);
        let mut daemon = Daemon::start("tlsrpt-collectd", &args, log)?;
        daemon.wait_for("listening with its databases set up", |log| {
            log.contains("FOR INITIALIZATION") && log.matches("setup finished").count() >= 2
        })?;
        Ok(Self {
            daemon,
            socket,
            storage,
        })
    }

    /// The socket `--tlsrpt-socket` names.
    #[must_use]
    pub fn socket(&self) -> &Path {
        &self.socket
    }

    /// The `--storage` URL (for the fetcher).
    #[must_use]
    pub fn storage(&self) -> &str {
        &self.storage
    }

    /// Its log so far.
    #[must_use]
    pub fn log(&self) -> String {
        self.daemon.log()
    }

    /// How many datagrams it has read and committed so far.
    #[must_use]
    pub fn received(&self) -> usize {
        datagrams_counted(&self.daemon.log())
    }

    /// Waits until it has read and committed `count` datagrams in all.
    ///
    /// # Errors
    ///
    /// Fewer within a minute (with its log).
    pub fn wait_received(&mut self, count: usize) -> Result<(), ReporterError> {
        self.daemon
            .wait_for(&format!("counting {count} datagrams"), |log| {
                datagrams_counted(log) >= count
            })
    }

    /// Ends "today" now, as midnight UTC would: today's results become yesterday's, which
    /// the fetcher and the reportd then report on.
    ///
    /// # Errors
    ///
    /// The signal cannot be sent, or the rollover does not finish within a minute.
    pub fn roll_over(&mut self) -> Result<(), ReporterError> {
        let rollovers = |log: &str| log.matches("rollover FOR DEVELOPMENT").count();
        let setups = |log: &str| log.matches("setup finished").count();
        let log = self.daemon.log();
        let (before, set_up) = (rollovers(&log), setups(&log));
        kill_process(Pid::from_child(&self.daemon.child), Signal::USR2)
            .map_err(|e| io_error("sending SIGUSR2 to tlsrpt-collectd")(e.into()))?;
        self.daemon.wait_for("rolling over to a new day", |log| {
            rollovers(log) > before && setups(log) > set_up
        })
    }
}

/// Runs the fetcher for `day` and `domain` on `storage`: the collectd's per-policy counts as
/// JSON (what the reportd aggregates).
///
/// # Errors
///
/// Not installed, or the fetcher failed (with its output).
pub fn fetch(storage: &str, day: &str, domain: &str) -> Result<String, ReporterError> {
    let path = installed("tlsrpt-fetcher");
    if !path.is_file() {
        return Err(ReporterError::NotInstalled { path });
    }
    let output = Command::new(&path)
        .args(["--storage", storage, day, domain])
        .output()
        .map_err(io_error(format!("running {}", path.display())))?;
    if !output.status.success() {
        return Err(ReporterError::Stuck {
            program: "tlsrpt-fetcher",
            why: format!("exited with {}", output.status),
            log: String::from_utf8_lossy(&output.stderr).into_owned(),
        });
    }
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}

/// A report the reportd would have sent, from its debug delivery directory.
#[derive(Clone, Debug)]
pub struct WrittenReport {
    /// The recipient domain.
    pub domain: String,
    /// The `rua` destination it would have gone to.
    pub destination: String,
    /// The RFC 8460 JSON.
    pub json: String,
    /// The whole mail message, for `mailto:` destinations (its headers and the gzipped JSON).
    pub mail: Option<String>,
}

/// `tlsrpt-reportd` with its debug delivery target.
pub struct Reportd;

impl Reportd {
    /// Runs the reportd over the collectd at `storage` until it has written the reports of
    /// `domains` (one per domain: each test domain has one TLSRPT record with one `mailto:`
    /// rua) into `dir/reports`, then stops it.
    ///
    /// # Errors
    ///
    /// Not installed, or the reports are not written within a minute (with its log).
    pub fn run(
        dir: &Path,
        storage: &str,
        domains: &[&str],
        organization: &str,
        contact: &str,
    ) -> Result<Vec<WrittenReport>, ReporterError> {
        let out = dir.join("reports");
        std::fs::create_dir_all(&out).map_err(io_error(format!("creating {}", out.display())))?;
        let fetcher = format!(
            "{} --storage {storage}",
            installed("tlsrpt-fetcher").display()
        );
        let log = dir.join("reportd.log");
        let mut args: Vec<String> = [
            "--dbname",
            &dir.join("reportd.sqlite").to_string_lossy(),
            "--fetchers",
            &fetcher,
            "--organization_name",
            organization,
            "--contact_info",
            contact,
            "--sender_address",
            contact,
            "--debug_send_file_dest",
            &out.to_string_lossy(),
            // With the debug target the mail still goes to the sendmail script as well; nothing
            // may leave the machine, so that script swallows it.
            "--sendmail_script",
            "cat >/dev/null",
            "--http_script",
            "cat >/dev/null",
            "--logfilename",
            &log.to_string_lossy(),
            "--log_level",
            "info",
        ]
        .map(ToOwned::to_owned)
        .to_vec();
        // Its waits, all made short: a test has seconds, not the hours production spreads over.
        for (flag, value) in [
            ("--interval_main_loop", "1"),
            ("--spread_out_delivery", "1"),
            ("--min_wait_delivery", "0"),
            ("--max_wait_delivery", "1"),
            ("--min_wait_domainlist", "0"),
            ("--max_wait_domainlist", "1"),
            ("--min_wait_domaindetails", "0"),
            ("--max_wait_domaindetails", "1"),
        ] {
            args.extend([flag.to_owned(), value.to_owned()]);
        }
        let mut daemon = Daemon::start("tlsrpt-reportd", &args, log)?;
        let written = |out: &Path| -> Vec<PathBuf> {
            std::fs::read_dir(out)
                .map(|entries| {
                    entries
                        .filter_map(Result::ok)
                        .map(|entry| entry.path())
                        .filter(|path| {
                            let name = path.file_name().unwrap_or_default().to_string_lossy();
                            name.starts_with("testreport-") && !name.contains("THE_EMAIL_TO")
                        })
                        .collect()
                })
                .unwrap_or_default()
        };
        let deadline = Deadline::after(WITHIN);
        loop {
            let files = written(&out);
            let all = domains.iter().all(|domain| {
                files.iter().any(|path| {
                    path.file_name()
                        .unwrap_or_default()
                        .to_string_lossy()
                        .starts_with(&format!("testreport-{domain}-"))
                })
            });
            if all {
                break;
            }
            if let Ok(Some(status)) = daemon.child.try_wait() {
                return Err(daemon.stuck(format!("exited ({status}) before writing the reports")));
            }
            if deadline.left().is_zero() {
                return Err(daemon.stuck(format!(
                    "no report for each of {domains:?} within {WITHIN:?} (written: {files:?})"
                )));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        // The files are written whole before the next is begun; a moment more lets the last
        // one be closed before the process is killed.
        std::thread::sleep(Duration::from_millis(300));
        drop(daemon);
        let mut reports = Vec::new();
        for path in written(&out) {
            let name = path
                .file_name()
                .unwrap_or_default()
                .to_string_lossy()
                .into_owned();
            // testreport-<domain>-<id>-<destination with / as _>.json
            let Some(domain) = domains
                .iter()
                .find(|domain| name.starts_with(&format!("testreport-{domain}-")))
            else {
                continue;
            };
            let rest = &name[format!("testreport-{domain}-").len()..];
            let destination = rest
                .split_once('-')
                .map_or(rest, |(_, destination)| destination)
                .trim_end_matches(".json")
                .to_owned();
            let json = std::fs::read_to_string(&path)
                .map_err(io_error(format!("reading {}", path.display())))?;
            let mail_name = name.replacen(
                &format!("-{}.json", destination),
                &format!(
                    "-THE_EMAIL_TO_{}.json",
                    destination.trim_start_matches("mailto:")
                ),
                1,
            );
            let mail = std::fs::read_to_string(path.with_file_name(mail_name)).ok();
            reports.push(WrittenReport {
                domain: (*domain).to_owned(),
                destination,
                json,
                mail,
            });
        }
        Ok(reports)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_collectd_log_counts_datagrams() {
        let log = "x DEBUG tlsrpt 576 : Database commit due to overdue with 1 datagrams (1 total)\n\
                   y DEBUG tlsrpt 576 : Midnight UTC database rollover FOR DEVELOPMENT with 2 datagrams (3 total)\n";
        assert_eq!(datagrams_counted(log), 3);
        assert_eq!(datagrams_counted(""), 0);
    }

    #[test]
    fn the_pin_is_read_from_the_requirements_file() {
        assert_eq!(pinned_version(), "0.6.0");
    }
}
