//! The daemon: answers Postfix's TLS policy lookups with the engine's decision, and feeds the
//! outcomes Postfix logs back to the engine.
//!
//! One thread owns the engine and the database and does all deciding, in arrival order; one
//! thread per Postfix connection only frames requests and replies (Postfix keeps a connection per
//! SMTP client process, at most `default_process_limit` of them), and the log is read between
//! requests. Deciding takes microseconds, so one decider is not the bottleneck; it keeps the
//! engine, which is not thread-safe, and the history free of races.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use policy_core::{Action, AttemptReport, DeliveryContext, Outcome, Tier, TlsRptResults};

use super::connections::Prepared;
use super::events::{AnswerReason, Answered, Event, OutcomeTaken};
use super::floor::{Floor, FloorLookup, FloorSource, ResolvedFloor, Target};
use super::follow::LogFollower;
use super::log::{LogSource, Observed, Tracker};
use super::policy::{reply_for, tls_policy};
use super::socketmap::{Reply, Request};
use super::state::{self, Attribution, ClientPid, Continuation, StateError};
use crate::causes::Causes;
use crate::deciding::{self, DecidingError};
use crate::store::{Batch, HistoryStore, StoreError};
use crate::tlsrpt::client::TlsRptClient;
use crate::tlsrpt::dance::DanceReport;
use crate::tlsrpt::datagram::{Datagram, ReportPolicy};
use crate::tlsrpt::reporter::{Receiver, ReportTarget, attempt_datagram};
use tlsfallback_engine::config::PolicyFile;
use tlsfallback_engine::decider::{Decided, DecisionEngine};

/// Why the daemon could not answer a lookup or take in the log.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DaemonError {
    /// The history database failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The daemon's own tables failed (or hold what no daemon writes).
    #[error(transparent)]
    State(#[from] StateError),
    /// No decision was made (or stored).
    #[error(transparent)]
    Deciding(#[from] DecidingError),
    /// The log cannot be read.
    #[error("{}", Causes(.0))]
    ReadLog(std::io::Error),
}

/// The cause name of a failure of the history database (or the daemon's tables in it).
pub const HISTORY_STORE_CAUSE: &str = "history-store";

impl DaemonError {
    /// The cause's name: `history-store`, `engine` or `read-log`.
    #[must_use]
    pub const fn cause(&self) -> &'static str {
        match self {
            Self::Store(_) | Self::State(_) | Self::Deciding(DecidingError::Store(_)) => {
                HISTORY_STORE_CAUSE
            }
            Self::Deciding(_) => "engine",
            Self::ReadLog(_) => "read-log",
        }
    }
}

/// How the daemon behaves.
#[derive(Clone, Debug)]
pub struct DaemonOptions {
    /// The map name Postfix sends (`socketmap:inet:HOST:PORT:NAME`); other names are refused.
    pub map_name: String,
    /// How long the next step of a dance stands after an outcome (Postfix's retry must come
    /// within it), in seconds; later lookups start a new delivery.
    pub dance_window_secs: u64,
    /// How often the log is read, when no lookup arrives.
    pub poll_interval: Duration,
    /// How long a connection may wait for its next request (or take its reply) before it is
    /// closed. Postfix closes its own after 10 s idle and 100 s in all (dict_sockmap's
    /// `max_idle` and `max_ttl`), so no connection of Postfix's waits longer than this.
    pub idle_timeout: Duration,
    /// The most connections served at once (fewer if the descriptor limit allows fewer). At the
    /// limit a new connection takes the place of the one idle longest: see
    /// [`super::connections`].
    pub max_connections: usize,
    /// Which log lines are the Postfix SMTP client's.
    pub log_source: LogSource,
    /// What the answers carry: the dance under the floor, or the floor alone.
    pub mode: AnswerMode,
    /// Whether answers carry Postfix 3.10's TLSRPT attributes (Postfix 3.9 and older refuse
    /// them as unknown attributes, so they are off unless asked for).
    pub tlsrpt: bool,
    /// How long a destination is remembered once nothing changes its memory (with the log
    /// followed, every delivery's outcome does). Past it, and past its pin, its history,
    /// recorded facts, unfinished dance and TLS-RPT ledger rows are forgotten, so the database
    /// holds the destinations of that span and no more (docs/scale.md: a year of churning
    /// destinations). `None` keeps everything forever.
    pub forget_after: Option<Duration>,
}

/// The default of [`DaemonOptions::forget_after`], in days. Forgetting a destination costs its
/// memory: a legacy-only peer pays its dance once more, and a peer seen doing TLS loses the
/// suspicion that makes a missing STARTTLS only transient evidence. Six months keeps that for
/// every destination used twice a year, and is six times the default pin (30 days).
pub const DEFAULT_FORGET_AFTER_DAYS: u64 = 180;

/// How often a sweep for unused destinations starts, in seconds.
const SWEEP_EVERY_SECS: u64 = 3600;

/// Rows of the history a call of [`Daemon::housekeeping`] looks at (one transaction of a few
/// milliseconds, between lookups).
const SWEEP_SLICE: u32 = 5_000;

/// Where the sweep for unused destinations stands.
#[derive(Debug, Default)]
pub(super) struct Sweep {
    /// The row id the sweep under way goes on after (`None`: no sweep under way).
    after: Option<i64>,
    /// When the last sweep started.
    started: Option<u64>,
    /// Destinations the sweep under way forgot so far.
    forgotten: u64,
}

/// What the daemon's answers carry.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum AnswerMode {
    /// The engine's dance under the floor DNS and MTA-STS give (the default).
    #[default]
    Dance,
    /// The floor alone (`dane-only`, `dane`, `secure match=...`), `NOTFOUND` where there is
    /// none: a drop-in replacement for postfix-mta-sts-resolver, with DANE first.
    PolicyTable,
}

impl AnswerMode {
    /// Parses `dance` or `policy-table`.
    ///
    /// # Errors
    ///
    /// A message naming both.
    pub fn parse(name: &str) -> Result<Self, String> {
        match name {
            "dance" => Ok(Self::Dance),
            "policy-table" => Ok(Self::PolicyTable),
            _ => Err(format!("unknown mode {name:?}: dance or policy-table")),
        }
    }
}

impl Default for DaemonOptions {
    fn default() -> Self {
        Self {
            map_name: "tlsfallback".to_owned(),
            dance_window_secs: 3 * 3600,
            poll_interval: Duration::from_millis(250),
            idle_timeout: Duration::from_secs(100),
            max_connections: 512,
            log_source: LogSource::default(),
            mode: AnswerMode::Dance,
            tlsrpt: false,
            forget_after: Some(Duration::from_secs(DEFAULT_FORGET_AFTER_DAYS * 86_400)),
        }
    }
}

/// The Postfix service without sockets, threads or a clock (sans-IO, as quinn-proto is): it
/// answers one lookup ([`answer`](Self::answer)) and takes in log lines
/// ([`observe`](Self::observe)), each at the `now` its caller gives, over the engine, the
/// database, the policy file, and the floors resolved. [`serve`](super::serve) owns the sockets, the threads
/// and the clock; tests drive this directly, with time as a field of the test.
pub struct Daemon<'a> {
    pub(super) engine: Box<dyn DecisionEngine>,
    pub(super) store: HistoryStore,
    pub(super) policy: PolicyFile,
    pub(super) options: DaemonOptions,
    pub(super) log: &'a mut dyn FnMut(&Event),
    pub(super) floors: Option<Arc<dyn FloorSource>>,
    /// Set when the daemon reports TLS-RPT from the log: the collectd client, if a socket is
    /// configured (the ledger is in the history database either way).
    pub(super) tlsrpt: Option<Option<TlsRptClient>>,
    pub(super) sweep: Sweep,
}

/// What a lookup does, once the floor is known.
enum Plan {
    /// Answer this, without the engine.
    Reply(Reply, Option<Tier>),
    /// Ask the engine under `context`, and add `extras` to a TLS answer.
    Decide {
        context: DeliveryContext,
        extras: String,
    },
}

impl<'a> Daemon<'a> {
    /// A daemon over `store` (its tables are created if missing).
    ///
    /// # Errors
    ///
    /// A database error.
    pub fn new(
        engine: Box<dyn DecisionEngine>,
        store: HistoryStore,
        policy: PolicyFile,
        options: DaemonOptions,
        log: &'a mut dyn FnMut(&Event),
    ) -> Result<Self, DaemonError> {
        state::ensure_schema(store.connection())?;
        // A lookup commits a transaction (the history, the answer given): in WAL mode,
        // `synchronous = NORMAL` keeps every transaction atomic and survives a crash of the
        // daemon (the kernel has the pages); only an operating-system crash can lose the last
        // commits, whole, which then look like lookups never made. `FULL` would add an fsync to
        // every lookup Postfix makes.
        store
            .connection()
            .pragma_update(None, "synchronous", "NORMAL")
            .map_err(StoreError::from)?;
        Ok(Self {
            engine,
            store,
            policy,
            options,
            log,
            floors: None,
            tlsrpt: None,
            sweep: Sweep::default(),
        })
    }

    /// Reports each finished dance Postfix's log shows to TLS-RPT (RFC 8460): into the ledger
    /// of the history database (`tlsrpt preview`), and to the collectd `client` when given.
    /// Needs the floors ([`with_floors`](Self::with_floors) with
    /// [`FloorSettings::tlsrpt_records`](super::floor::FloorSettings)): the TLSRPT record and
    /// the policies come with them. For a Postfix that does not report itself (no libtlsrpt,
    /// or `smtp_tlsrpt_enable = no`), or each attempt is reported twice.
    #[must_use]
    pub fn with_tlsrpt(mut self, client: Option<TlsRptClient>) -> Self {
        self.tlsrpt = Some(client);
        self
    }

    /// Resolves each next hop's floor with `floors` (without it, no DNS is asked and every next
    /// hop is answered as if nothing raised its floor).
    #[must_use]
    pub fn with_floors(mut self, floors: Arc<dyn FloorSource>) -> Self {
        self.floors = Some(floors);
        self
    }

    /// Serves with `policy` and `engine` from the next lookup on (a reload): the lookup being
    /// answered, if any, finishes under the old ones, and none is dropped or answered twice,
    /// since one thread answers them all in order. A dance under way goes on only if its
    /// destination's policy is unchanged (its continuation is keyed by the policy it was made
    /// under).
    ///
    /// Returns the tables of the new file that differ from the old one's but are read at start
    /// only (`[dns]`, `[tlsrpt]`, `[fleet]`: the resolver, the reporter and the fleet were set
    /// up with them), for the operator to be told that they wait for a restart.
    pub fn replace_policy(
        &mut self,
        policy: PolicyFile,
        engine: Box<dyn DecisionEngine>,
    ) -> Vec<&'static str> {
        let old = &self.policy;
        let waiting = [
            ("[dns]", old.dns != policy.dns),
            ("[tlsrpt]", old.tlsrpt != policy.tlsrpt),
            ("[fleet]", old.fleet != policy.fleet),
        ]
        .into_iter()
        .filter_map(|(table, changed)| changed.then_some(table))
        .collect();
        self.policy = policy;
        self.engine = engine;
        waiting
    }

    /// Writes `event` to the daemon's log.
    pub fn log(&mut self, event: &Event) {
        (self.log)(event);
    }

    /// The history store, for the socket owner's gauges (the fleet's circuit).
    #[must_use]
    pub fn store(&self) -> &HistoryStore {
        &self.store
    }

    /// The floor service, for the connection threads to wait on.
    #[must_use]
    pub fn floors(&self) -> Option<Arc<dyn FloorSource>> {
        self.floors.clone()
    }

    /// Answers one request (a netstring's data) from the client process `client` at `now`
    /// (Unix seconds), resolving its floor here (waiting at most the budget).
    #[must_use = "the reply is what Postfix gets"]
    pub fn answer(&mut self, data: &[u8], client: ClientPid, now: u64) -> Reply {
        let floor = match (&self.floors, lookup_target(data, &self.options.map_name)) {
            (Some(floors), Some((_, target))) => Some(floors.lookup(&target)),
            _ => None,
        };
        self.answer_with_floor(data, client, floor, now)
    }

    /// Answers one request whose floor was looked up already (by the connection's thread, so
    /// that waiting for DNS holds up only that connection).
    #[must_use = "the reply is what Postfix gets"]
    pub fn answer_with_floor(
        &mut self,
        data: &[u8],
        client: ClientPid,
        floor: Option<FloorLookup>,
        now: u64,
    ) -> Reply {
        let request = match Request::parse(data) {
            Ok(request) => request,
            Err(reason) => {
                (self.log)(&Event::LookupFailed {
                    key: "malformed".to_owned(),
                    cause: "malformed",
                    error: reason.clone(),
                });
                return Reply::Perm(reason);
            }
        };
        if request.map != self.options.map_name {
            let reason = format!(
                "this daemon serves the map {:?}, not {:?}",
                self.options.map_name, request.map
            );
            (self.log)(&Event::LookupFailed {
                key: request.key.to_owned(),
                cause: "wrong-map",
                error: reason.clone(),
            });
            return Reply::Perm(reason);
        }
        let Some(key) = destination_key(request.key) else {
            // Parent-domain probes (".example.com") and keys that are not a next hop.
            return Reply::NotFound;
        };
        match self.lookup(&key, client, floor.as_ref(), now) {
            Ok((reply, event)) => {
                (self.log)(&event);
                reply
            }
            Err(error) => {
                let reason = format!("tlsfallback could not decide for {key}: {error:#}");
                (self.log)(&Event::LookupFailed {
                    key,
                    cause: error.cause(),
                    error: reason.clone(),
                });
                Reply::Temp(reason)
            }
        }
    }

    fn lookup(
        &mut self,
        key: &str,
        client: ClientPid,
        floor: Option<&FloorLookup>,
        now: u64,
    ) -> Result<(Reply, Event), DaemonError> {
        let policy = self.policy.policy_for(host_of(key));
        let plan = plan(
            &self.options,
            self.store.connection(),
            key,
            &policy,
            floor,
            now,
        )?;
        let engine = &mut *self.engine;
        let (reply, tier, action, reason, failure) = match plan {
            Plan::Reply(reply, tier) => {
                // The policy table keeps no history: nothing to attribute outcomes to.
                if self.options.mode == AnswerMode::Dance {
                    self.store.batch(|batch| {
                        state::record_answer(batch.connection(), key, client, tier, now)
                            .map_err(DaemonError::from)
                    })?;
                }
                let action = reply_action(&reply);
                (reply, tier, action, AnswerReason::Floor, None)
            }
            Plan::Decide { context, extras } => {
                let made_under = fingerprint(&policy, &context, &extras);
                self.store.batch(|batch| {
                    // The dance in progress goes on: Postfix's retry is the engine's next attempt.
                    let answer = if let Some(next) =
                        state::continuation(batch.connection(), key, &made_under, now)?
                    {
                        (
                            Reply::Found(next.policy),
                            Some(next.tier),
                            "attempt",
                            AnswerReason::DanceContinues,
                            None,
                        )
                    } else {
                        let Decided {
                            decision,
                            plugin_failure: failure,
                        } = deciding::decide_in(batch, engine, key, &policy, &context, None, now)?;
                        let tier = match decision.action {
                            Action::Attempt { tier, .. } => Some(tier),
                            _ => None,
                        };
                        let reply = with_extras(reply_for(&decision), &extras);
                        (
                            reply,
                            tier,
                            decision.action.name(),
                            AnswerReason::Engine(decision.reason),
                            failure,
                        )
                    };
                    state::record_answer(batch.connection(), key, client, answer.1, now)?;
                    Ok::<_, DaemonError>(answer)
                })?
            }
        };
        if let Some(failure) = failure {
            (self.log)(&Event::PluginFailure {
                peer: key.to_owned(),
                cause: failure.failure.cause(),
                failure: failure.to_string(),
            });
        }
        self.log_fleet_warnings();
        let pid = client.map_or_else(|| "unknown".to_owned(), |p| p.to_string());
        let event = lookup_event(key, pid, floor, tier, action, reason, &reply);
        Ok((reply, event))
    }

    /// Feeds log lines, read at `now`, to `tracker` and the attempts they finish to the engine,
    /// in one transaction with the new log position, so that a crash repeats or loses nothing.
    ///
    /// # Errors
    ///
    /// A database error; nothing of the batch is kept then, and `tracker` is as before.
    pub fn observe(
        &mut self,
        log_path: &str,
        lines: &[String],
        position: Option<state::LogPosition>,
        tracker: &mut Tracker,
        now: u64,
    ) -> Result<(), DaemonError> {
        let mut working = tracker.clone();
        let mut lines_out = Vec::new();
        let engine = &mut *self.engine;
        let policy_file = &self.policy;
        let window = self.options.dance_window_secs;
        let options = &self.options;
        let source = &self.options.log_source;
        let floors = self.floors.as_deref();
        let reporting = self.tlsrpt.is_some();
        let mut datagrams = Vec::new();
        self.store.batch(|batch| {
            for line in lines {
                if let Some(observed) = working.feed_from(source, line) {
                    let fed = feed_outcome(
                        batch,
                        engine,
                        policy_file,
                        options,
                        floors,
                        &observed,
                        now,
                        window,
                        reporting,
                    )?;
                    lines_out.extend(fed.event);
                    datagrams.extend(fed.datagram);
                }
            }
            if let Some(position) = position {
                state::save_log_state(batch.connection(), log_path, position, &working, now)?;
            }
            Ok::<_, DaemonError>(())
        })?;
        *tracker = working;
        for event in lines_out {
            (self.log)(&event);
        }
        self.log_fleet_warnings();
        // Sent once the results are committed with the log position (a crash in between loses
        // the datagram, never repeats it; the ledger has it either way).
        if let Some(Some(client)) = &mut self.tlsrpt {
            for datagram in &datagrams {
                let problem = client.send(datagram).problem(client.path());
                (self.log)(&Event::TlsRpt {
                    domain: datagram.domain.clone(),
                    problem,
                });
            }
        }
        Ok(())
    }

    /// Forgets a slice of the destinations unused for [`DaemonOptions::forget_after`]; the
    /// server calls it between lookups. A sweep of the whole history starts at most once an
    /// hour and goes on a slice per call (so no lookup waits behind it); its end also drops the
    /// unfinished dances and TLS-RPT ledger rows older than the retention, and logs how many
    /// destinations it forgot. Whether a sweep is under way (call again soon).
    ///
    /// # Errors
    ///
    /// A database error; the slice is kept, and tried again at the next call.
    pub fn housekeeping(&mut self, now: u64) -> Result<bool, DaemonError> {
        let Some(keep) = self.options.forget_after else {
            return Ok(false);
        };
        let after = match self.sweep.after {
            Some(after) => after,
            None if self
                .sweep
                .started
                .is_some_and(|started| now < started.saturating_add(SWEEP_EVERY_SECS)) =>
            {
                return Ok(false);
            }
            None => {
                self.sweep.started = Some(now);
                0
            }
        };
        let unused_since = now.saturating_sub(keep.as_secs());
        let swept = self
            .store
            .forget_unused(unused_since, now, after, SWEEP_SLICE)?;
        self.sweep.forgotten += swept.forgotten;
        self.sweep.after = swept.next;
        if swept.next.is_some() {
            return Ok(true);
        }
        state::forget_unused(self.store.connection(), unused_since)?;
        let forgotten = std::mem::take(&mut self.sweep.forgotten);
        if forgotten > 0 {
            (self.log)(&Event::Forgotten {
                destinations: forgotten,
                unused_for_days: keep.as_secs() / 86_400,
            });
        }
        Ok(false)
    }

    /// Logs what went wrong with the fleet (decisions went on from local state).
    fn log_fleet_warnings(&mut self) {
        for warning in self.store.take_fleet_warnings() {
            (self.log)(&Event::Warning(format!("fleet: {warning}")));
        }
    }

    /// The saved state of the log at `path`, and a follower resuming there.
    ///
    /// # Errors
    ///
    /// A database error, or saved state that does not parse.
    pub fn resume_log(
        &self,
        path: &Path,
        forget: bool,
    ) -> Result<(LogFollower, Tracker), DaemonError> {
        let key = path.display().to_string();
        if forget {
            state::forget_log_state(self.store.connection(), &key)?;
        }
        let saved = state::log_state(self.store.connection(), &key)?;
        let (position, tracker) = match saved {
            Some((position, tracker)) => (Some(position), tracker),
            None => (None, Tracker::default()),
        };
        Ok((LogFollower::new(path, position, true), tracker))
    }

    /// Reads what the log has and feeds it at `now`; whether there were lines.
    ///
    /// # Errors
    ///
    /// When the log cannot be read or the database fails.
    pub fn poll_log(
        &mut self,
        follower: &mut LogFollower,
        tracker: &mut Tracker,
        now: u64,
    ) -> Result<bool, DaemonError> {
        let chunk = follower.read().map_err(DaemonError::ReadLog)?;
        for warning in &chunk.warnings {
            (self.log)(&Event::Warning(warning.to_string()));
        }
        if chunk.lines.is_empty() && chunk.position.is_none() {
            return Ok(false);
        }
        let path = follower.path().display().to_string();
        self.observe(&path, &chunk.lines, chunk.position, tracker, now)?;
        if let Some(position) = chunk.position {
            follower.commit(position);
        }
        Ok(!chunk.lines.is_empty())
    }
}

/// Whether the engine's floor without DNS (the operator's profile, the peer's pin) already
/// excludes cleartext for `key`.
fn requires_tls(
    connection: &rusqlite::Connection,
    key: &str,
    policy: &policy_core::Policy,
    now: u64,
) -> Result<bool, StoreError> {
    let facts = crate::store::facts::read(connection, key)?;
    let memory = policy_core::PeerMemory {
        pinned_until: facts.pinned_until,
        ..policy_core::PeerMemory::default()
    };
    let bounds = policy_core::floor(policy, &DeliveryContext::default(), &memory, now);
    Ok(bounds.floor > Tier::Cleartext)
}

/// The answer of `--mode policy-table` (the floor alone, no engine and no history): the same
/// for a lookup answered on its connection's thread and one answered by the decider.
#[must_use]
pub fn table_answer(options: &DaemonOptions, key: &str, floor: Option<&FloorLookup>) -> Reply {
    let resolved = match floor {
        None | Some(FloorLookup::NoName) => return Reply::NotFound,
        Some(FloorLookup::NotYet { why }) => return Reply::Temp(unknown_floor(key, why)),
        Some(FloorLookup::Known(resolved)) => resolved,
    };
    let found = |text: &str| Reply::Found(text.to_owned());
    match &resolved.floor {
        Floor::Unknown { why } => Reply::Temp(unknown_floor(key, why)),
        Floor::NoMail { .. } | Floor::Open { .. } => Reply::NotFound,
        Floor::DaneEvery | Floor::DaneSome { sts_enforce: true } => found("dane-only"),
        Floor::DaneSome { sts_enforce: false } => found("dane"),
        Floor::StsEnforce { patterns } => found(&format!(
            "secure{}{}",
            sts_match(patterns),
            tlsrpt_extras(options, resolved)
        )),
    }
}

/// ` match=P1:P2 servername=hostname`: the `secure` attributes of an enforced MTA-STS policy.
fn sts_match(patterns: &[String]) -> String {
    format!(" match={} servername=hostname", patterns.join(":"))
}

/// ` policy_type=...`: the TLSRPT attributes, when the operator asked for them.
fn tlsrpt_extras(options: &DaemonOptions, resolved: &ResolvedFloor) -> String {
    resolved
        .tlsrpt
        .as_deref()
        .filter(|_| options.tlsrpt)
        .map(|attributes| format!(" {attributes}"))
        .unwrap_or_default()
}

/// What to do for `key` given its floor.
fn plan(
    options: &DaemonOptions,
    connection: &rusqlite::Connection,
    key: &str,
    policy: &policy_core::Policy,
    floor: Option<&FloorLookup>,
    now: u64,
) -> Result<Plan, StoreError> {
    if options.mode == AnswerMode::PolicyTable {
        return Ok(Plan::Reply(table_answer(options, key, floor), None));
    }
    let resolved = match floor {
        None | Some(FloorLookup::NoName) => {
            return Ok(Plan::Decide {
                context: DeliveryContext::default(),
                extras: String::new(),
            });
        }
        Some(FloorLookup::NotYet { why }) => {
            return Ok(Plan::Reply(Reply::Temp(unknown_floor(key, why)), None));
        }
        Some(FloorLookup::Known(resolved)) => resolved,
    };
    let tlsrpt = tlsrpt_extras(options, resolved);
    Ok(match &resolved.floor {
        Floor::Unknown { why } => Plan::Reply(Reply::Temp(unknown_floor(key, why)), None),
        Floor::NoMail { .. } => Plan::Reply(Reply::NotFound, None),
        Floor::DaneSome { sts_enforce: false } if !requires_tls(connection, key, policy, now)? => {
            // Postfix's own DANE: verified where TLSA records are usable, opportunistic
            // elsewhere (as plain Postfix with `smtp_tls_security_level = dane`).
            Plan::Reply(Reply::Found("dane".to_owned()), None)
        }
        floor @ Floor::StsEnforce { patterns } => Plan::Decide {
            context: floor.context(true),
            extras: format!("{}{tlsrpt}", sts_match(patterns)),
        },
        floor @ Floor::Open { .. } => Plan::Decide {
            context: floor.context(false),
            extras: tlsrpt,
        },
        floor => Plan::Decide {
            context: floor.context(true),
            extras: String::new(),
        },
    })
}

/// What a dance was decided under: the policy for its destination, and the floor's context and
/// extras. A continuation made under another policy (the operator changed it and restarted) or
/// another floor (the domain published DANE meanwhile) is not taken. Debug's text is only
/// compared for equality, never parsed.
fn fingerprint(policy: &policy_core::Policy, context: &DeliveryContext, extras: &str) -> String {
    format!("{policy:?} {context:?}{extras}")
}

/// An outcome as the floor it was attempted under explains it: Postfix logs a certificate that
/// fails DANE verification as merely untrusted ("Untrusted TLS connection established", "Server
/// certificate not verified"), but under a `dane-only` answer (usable TLSA records) that is a
/// DANE mismatch, which TLS-RPT reports apart (`tlsa-invalid`).
fn under_floor(outcome: Outcome, context: &DeliveryContext) -> Outcome {
    use policy_core::{CertificateError, Outcome};
    match outcome {
        Outcome::CertificateError(CertificateError::Untrusted | CertificateError::NameMismatch)
            if context.dane == policy_core::Dane::Usable =>
        {
            Outcome::CertificateError(CertificateError::DaneMismatch)
        }
        outcome => outcome,
    }
}

/// `reply` with the floor's `extras` (`match=...`, TLSRPT attributes) added to a TLS answer.
fn with_extras(reply: Reply, extras: &str) -> Reply {
    match reply {
        Reply::Found(text) if text != "none" => Reply::Found(text + extras),
        reply => reply,
    }
}

/// The `TEMP` text for a next hop whose floor is not known.
fn unknown_floor(key: &str, why: &str) -> String {
    format!(
        "tlsfallback cannot know the TLS floor of {key} yet ({why}); Postfix defers and retries"
    )
}

/// The target a request's floor is resolved for: `None` for requests that are answered without
/// one (malformed, another map, a parent-domain probe). Cheap, so the connection threads call it.
#[must_use]
pub fn lookup_target(data: &[u8], map_name: &str) -> Option<(String, Target)> {
    let request = Request::parse(data).ok()?;
    if request.map != map_name {
        return None;
    }
    destination_key(request.key).map(|key| {
        let target = Target::of(&key);
        (key, target)
    })
}

/// What a connection's thread makes of a request: its floor looked up (waiting at most the
/// budget, holding up that connection alone), and in `--mode policy-table`, which needs neither
/// the engine nor the history, its answer and log line too.
pub(super) fn prepare(
    options: &DaemonOptions,
    floors: &dyn FloorSource,
    lines: &LookupLines,
    data: &[u8],
) -> Prepared {
    let Some((key, target)) = lookup_target(data, &options.map_name) else {
        // Malformed, another map, a probe: the decider answers and logs those.
        return Prepared::Floor(None);
    };
    let floor = floors.lookup(&target);
    if options.mode != AnswerMode::PolicyTable {
        return Prepared::Floor(Some(floor));
    }
    let reply = table_answer(options, &key, Some(&floor));
    lines.push(lookup_event(
        &key,
        "unknown".to_owned(),
        Some(&floor),
        None,
        reply_action(&reply),
        AnswerReason::Floor,
        &reply,
    ));
    Prepared::Answered(reply)
}

/// The log lines of lookups the connections' threads answered, for the deciding thread (which
/// alone writes the log) to write when it next wakes (a job, or the log poll): waking it for
/// each line would cost every lookup a context switch.
#[derive(Default)]
pub(super) struct LookupLines {
    lines: std::sync::Mutex<Vec<Event>>,
    dropped: std::sync::atomic::AtomicU64,
}

impl LookupLines {
    /// At most this many lines wait; past it they are counted, not kept (a stuck log must not
    /// grow without bound).
    const LIMIT: usize = 100_000;

    fn push(&self, line: Event) {
        let mut lines = self
            .lines
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if lines.len() < Self::LIMIT {
            lines.push(line);
        } else {
            self.dropped
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
    }

    pub(super) fn drain(&self, log: &mut dyn FnMut(&Event)) {
        let lines = std::mem::take(
            &mut *self
                .lines
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner),
        );
        for line in &lines {
            log(line);
        }
        let dropped = self.dropped.swap(0, std::sync::atomic::Ordering::Relaxed);
        if dropped > 0 {
            log(&Event::Warning(format!(
                "{dropped} lookup lines were not written (more than {} waited)",
                Self::LIMIT
            )));
        }
    }
}

/// The daemon's record of one lookup.
fn lookup_event(
    key: &str,
    client: String,
    floor: Option<&FloorLookup>,
    tier: Option<Tier>,
    action: &'static str,
    reason: AnswerReason,
    reply: &Reply,
) -> Event {
    let floor_name = match floor {
        None | Some(FloorLookup::NoName) => "none",
        Some(FloorLookup::NotYet { .. }) => "unknown",
        Some(FloorLookup::Known(resolved)) => resolved.floor.name(),
    };
    let policy_id = match floor {
        Some(FloorLookup::Known(resolved)) => resolved.policy_id.clone(),
        _ => None,
    };
    Event::Answered(Answered {
        peer: key.to_owned(),
        client,
        floor: floor_name,
        tier,
        action,
        reason,
        policy_id,
        answer: String::from_utf8_lossy(&reply.encode()).into_owned(),
    })
}

/// What an answer made without the engine does: a TLS policy is an attempt, TEMP defers,
/// NOTFOUND leaves Postfix to its own default, PERM refuses the request.
const fn reply_action(reply: &Reply) -> &'static str {
    match reply {
        Reply::Found(_) => "attempt",
        Reply::Temp(_) => "defer",
        Reply::NotFound => "postfix-default",
        Reply::Perm(_) => "refused",
    }
}

/// The outcome of one observed attempt, given to the engine for the destination and tier that
/// this daemon answered the very process that made it; the log line saying so.
#[allow(clippy::too_many_arguments)]
/// What one outcome from the log led to.
#[derive(Default)]
struct Fed {
    /// The daemon's record of it.
    event: Option<Event>,
    /// The TLS-RPT datagram of the dance it ended (kept in the ledger already), to send.
    datagram: Option<Datagram>,
}

#[allow(clippy::too_many_arguments)] // The batch's parts, each borrowed apart.
fn feed_outcome(
    batch: &mut Batch<'_>,
    engine: &mut dyn DecisionEngine,
    policy_file: &PolicyFile,
    options: &DaemonOptions,
    floors: Option<&dyn FloorSource>,
    observed: &Observed,
    now: u64,
    window: u64,
    reporting: bool,
) -> Result<Fed, DaemonError> {
    let (key, tier, how) = match state::attribute(
        batch.connection(),
        &observed.candidates,
        observed.pid,
        &observed.queue_id,
        now,
    )? {
        Attribution::Exact { destination, tier } => (destination, tier, "process"),
        Attribution::Unambiguous { destination, tier } => (destination, tier, "destination"),
        Attribution::Ambiguous { destination } => {
            return Ok(Fed::event(Event::OutcomeIgnored {
                peer: destination,
                queue_id: observed.queue_id.clone(),
                pid: observed.pid,
                postfix: observed.detail.clone(),
            }));
        }
        Attribution::Unanswered => return Ok(Fed::default()),
    };
    let report = AttemptReport {
        tier,
        outcome: observed.outcome,
    };
    let policy = policy_file.policy_for(host_of(&key));
    // The outcome is judged under the floor the lookup was answered with (the one cached now).
    let known = floors.and_then(|floors| floors.peek(&Target::of(&key)));
    let floor = known.clone().map(FloorLookup::Known);
    let (context, extras) = match plan(
        options,
        batch.connection(),
        &key,
        &policy,
        floor.as_ref(),
        now,
    )? {
        Plan::Decide { context, extras } => (context, extras),
        Plan::Reply(..) => (DeliveryContext::default(), String::new()),
    };
    let report = AttemptReport {
        outcome: under_floor(report.outcome, &context),
        ..report
    };
    let Decided {
        decision,
        plugin_failure: failure,
    } = deciding::decide_in(batch, engine, &key, &policy, &context, Some(&report), now)?;
    let datagram = if reporting {
        report_dance(
            batch,
            &key,
            known.as_deref(),
            observed,
            &report,
            &decision,
            now,
            window,
        )?
    } else {
        None
    };
    let next = match decision.action {
        Action::Attempt { tier, tls, .. } => {
            let text = match with_extras(Reply::Found(tls_policy(tls.as_ref())), &extras) {
                Reply::Found(text) => text,
                _ => tls_policy(tls.as_ref()),
            };
            let dance = Continuation {
                tier,
                policy: text,
                made_under: fingerprint(&policy, &context, &extras),
                made_at: now,
                until: now.saturating_add(window),
            };
            state::save_dance(batch.connection(), &key, &dance)?;
            format!("attempt {}", tier.name())
        }
        action => {
            state::end_dance(batch.connection(), &key)?;
            action.name().to_owned()
        }
    };
    let event = Event::Outcome(Box::new(OutcomeTaken {
        peer: key,
        queue_id: observed.queue_id.clone(),
        pid: observed.pid,
        attributed_by: how,
        tier,
        outcome: report.outcome,
        next,
        reason: decision.reason,
        postfix: observed.detail.clone(),
        plugin_failure: failure.map(|failure| failure.to_string()),
    }));
    Ok(Fed {
        event: Some(event),
        datagram,
    })
}

impl Fed {
    fn event(event: Event) -> Self {
        Self {
            event: Some(event),
            datagram: None,
        }
    }
}

/// Takes one step of the dance at `key` into its TLS-RPT account; when the step ends the
/// dance, its final result for the recipient domain: kept in the ledger (in this batch) and
/// returned to be sent. Nothing for a destination whose floor says no TLSRPT record applies
/// (a next hop that is not a recipient domain, or a domain without a record).
#[allow(clippy::too_many_arguments)] // One step's facts, all needed for its datagram.
fn report_dance(
    batch: &mut Batch<'_>,
    key: &str,
    floor: Option<&ResolvedFloor>,
    observed: &Observed,
    report: &AttemptReport,
    decision: &policy_core::Decision,
    now: u64,
    window: u64,
) -> Result<Option<Datagram>, DaemonError> {
    let connection = batch.connection();
    let mut dance = DanceReport::resume(state::dance_results(connection, key, now)?);
    let delivered_at = matches!(report.outcome, Outcome::Success { .. }).then_some(report.tier);
    let Some(result) = dance.observe(decision, delivered_at) else {
        let seen = match decision.action {
            Action::Attempt { .. } => dance.seen(),
            _ => TlsRptResults::EMPTY,
        };
        state::save_dance_results(connection, key, seen, now.saturating_add(window))?;
        return Ok(None);
    };
    state::save_dance_results(connection, key, TlsRptResults::EMPTY, now)?;
    let Some(destination) = floor.and_then(|floor| floor.report.as_ref()) else {
        return Ok(None);
    };
    let Ok(record) = &destination.record else {
        return Ok(None);
    };
    let (host, ip) = observed
        .relay
        .clone()
        .map_or((None, None), |(host, ip)| (Some(host), Some(ip)));
    let policy = host.as_deref().map_or_else(
        || ReportPolicy::no_policy_found(&destination.domain),
        |host| destination.policy_for(host),
    );
    let receiver = Receiver {
        mx_host: host,
        ip,
        failure_reason: (!matches!(report.outcome, Outcome::Success { .. }))
            .then(|| crate::delivery::describe_outcome(&report.outcome)),
    };
    let target = ReportTarget {
        domain: destination.domain.clone(),
        record: record.clone(),
    };
    let datagram = attempt_datagram(&target, &policy, result, &receiver);
    crate::tlsrpt::ledger::record_in(connection, &datagram, now).map_err(StoreError::from)?;
    Ok(Some(datagram))
}

/// The host of a destination key (what `[[destination]]` entries of the policy file match).
fn host_of(key: &str) -> &str {
    match key.strip_prefix('[') {
        Some(rest) => rest.split(']').next().unwrap_or(rest),
        None => key.split(':').next().unwrap_or(key),
    }
}

/// The history key for a lookup key: [`peer_key`](crate::store::peer_key)'s spelling (lower
/// case, no trailing dot), the same as `deliver`'s; `None` for parent-domain probes and for keys
/// that are not a next hop (`domain`, `[host]`, `[host]:port`, `host:port`).
#[must_use]
pub fn destination_key(key: &str) -> Option<String> {
    let key = key.to_ascii_lowercase();
    let allowed =
        |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_' | ':' | '[' | ']');
    if key.starts_with('.') || key.len() > 300 || !key.chars().all(allowed) {
        return None;
    }
    let (host, port) = if let Some(rest) = key.strip_prefix('[') {
        let (host, after) = rest.split_once(']')?;
        match after {
            "" => (host, None),
            _ => (host, Some(after.strip_prefix(':')?)),
        }
    } else {
        match key.rsplit_once(':') {
            // An IPv6 address needs brackets; a single colon is a port.
            Some((host, port)) if !host.contains(':') => (host, Some(port)),
            Some(_) => return None,
            None => (key.as_str(), None),
        }
    };
    let host_ok = !host.is_empty() && !host.contains(['[', ']']) && !host.starts_with('.');
    let port_ok = port.is_none_or(|p| p.parse::<u16>().is_ok_and(|p| p > 0));
    (host_ok && port_ok).then(|| crate::store::peer_key(&key))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lookup_keys() {
        for good in [
            "example.com",
            "[127.0.0.1]:2525",
            "127.0.0.1:2525",
            "[mx.example.com]",
            "[::1]:25",
            "EXAMPLE.com",
        ] {
            assert!(destination_key(good).is_some(), "{good}");
        }
        assert_eq!(destination_key("EXAMPLE.com").unwrap(), "example.com");
        for bad in [
            ".example.com",
            "[x",
            "a b",
            "host:99999",
            "host:0",
            "a:b:c",
            "[]:25",
            "x]",
            "ex\u{e9}.com",
        ] {
            assert!(destination_key(bad).is_none(), "{bad}");
        }
    }
}
