//! The downgrade campaign (issue 14, "No downgrade, proven"): every attack of the test attacker
//! ([`tlsfallback_testkit::attacker`]) against a modern, a legacy-only and a plain (no STARTTLS) peer,
//! unpinned, pinned, under DANE and under MTA-STS `enforce`, through the real `tlsfallback
//! deliver`, over three simulated weeks (`TLSFALLBACK_TEST_NOW`).
//!
//! Each run: one delivery on day 0 without the attacker (the peer is learnt: its proven tier),
//! three on days 1, 8 and 20 under attack (enough for the engine's threshold of three pieces of
//! cheap evidence, and past the legacy peer's 7-day re-probe), one on day 22 with the attacker
//! gone. The invariants, each what a user relies on:
//!
//! - **floor**: a pinned peer (after its modern success), or one under DANE or MTA-STS `enforce`,
//!   gets no attempt in cleartext or legacy TLS, whatever the attacker does;
//! - **proven**: within one delivery, no attempt below the tier the peer proved, on the evidence
//!   an unauthenticated attacker can make (pinned or not); **proven-threshold** is the same step
//!   when the engine took it after `transient_failure_threshold` pieces of cheap evidence across
//!   deliveries (documented for unpinned peers, and still a walk down by a forger);
//! - **recovered**: once the attacker is gone, the peer gets its mail at its proven tier again
//!   (the history the attack left is correct);
//! - **baseline**: with no attacker every peer gets its mail at its own tier (the plain peer in
//!   cleartext);
//! - **fired**: the attack was carried out on a peer it applies to (else the run proves nothing).
//!
//! Set `TLSFALLBACK_CAMPAIGN_REPORT=FILE` to append each run's row and every attempt line to FILE
//! (docs/reliability.md is written from it).

use std::fmt::Write as _;
use std::sync::OnceLock;

use policy_core::Tier;
use tlsfallback_mta::clock::TEST_NOW_VAR;
use tlsfallback_testkit::attacker::{Attack, AttackProxy, Strip};
use tlsfallback_testkit::peers::{Identity, LocalPeer, PeerKind};

const MESSAGE: &str = "From: a@example.test\nTo: b@example.test\nSubject: campaign\n\nbody\n";
/// 2026-01-01, the simulated start.
const START: u64 = 1_767_225_600;
const DAY: u64 = 86_400;
/// The days the peer is attacked; day 0 learns it, [`RECOVERY_DAY`] checks what the attack left.
const ATTACK_DAYS: [u64; 3] = [1, 8, 20];
/// Two days after the last attack: sooner than the 7-day re-probe, so what the attack left in the
/// history shows.
const RECOVERY_DAY: u64 = 22;
/// The pin of the pinned runs: the default 30 days, longer than the run.
const PIN_SECS: u64 = 30 * DAY;

/// The campaign's certificate: for 127.0.0.1, so that MTA-STS's WebPKI name check can pass.
fn identity() -> &'static Identity {
    static IDENTITY: OnceLock<Identity> = OnceLock::new();
    IDENTITY.get_or_init(|| Identity::self_signed("127.0.0.1").expect("a test certificate"))
}

/// What stands under the dance for the destination.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Floor {
    /// `pin_duration_secs = 0`: only the engine's own caution.
    Unpinned,
    /// The default 30-day pin after a modern success.
    Pinned,
    /// A usable DANE-EE record for the peer's key.
    Dane,
    /// MTA-STS `enforce`, the peer's certificate as the trust anchor.
    MtaStsEnforce,
}

impl Floor {
    const fn name(self) -> &'static str {
        match self {
            Self::Unpinned => "unpinned",
            Self::Pinned => "pinned",
            Self::Dane => "dane",
            Self::MtaStsEnforce => "mta-sts-enforce",
        }
    }

    /// Whether the floor holds from the first delivery (not only after a modern success).
    const fn holds_from_the_start(self) -> bool {
        matches!(self, Self::Dane | Self::MtaStsEnforce)
    }
}

const fn peer_name(kind: PeerKind) -> &'static str {
    match kind {
        PeerKind::Modern => "modern",
        PeerKind::LegacyOnly => "legacy-only",
        PeerKind::NoStarttls => "plain",
        PeerKind::Starttls454 => "starttls-454",
        PeerKind::ResetInHandshake => "reset-in-handshake",
        PeerKind::GarbageAfterStarttls => "garbage-after-starttls",
        PeerKind::TextAfterClientHello => "text-after-client-hello",
        PeerKind::DribblingGreeting => "dribbling-greeting",
    }
}

/// One attempt line of `deliver`'s log.
#[derive(Clone, Debug)]
struct Attempt {
    tier: Tier,
    outcome: String,
    reason: String,
}

impl Attempt {
    /// Parses `attempt peer=… tier=… [after=…] outcome=… [version=… cipher=…] reason=… detail=…`.
    fn parse(line: &str) -> Option<Self> {
        let field = |name: &str| -> Option<&str> {
            let start = line.find(&format!(" {name}="))? + name.len() + 2;
            Some(&line[start..])
        };
        let tier = Tier::from_name(field("tier")?.split(' ').next()?)?;
        let outcome = field("outcome")?;
        let end = [" version=", " reason="]
            .iter()
            .filter_map(|m| outcome.find(m))
            .min()?;
        let reason = field("reason")?.split(' ').next()?;
        Some(Self {
            tier,
            outcome: outcome[..end].to_owned(),
            reason: reason.to_owned(),
        })
    }

    fn succeeded(&self) -> bool {
        self.outcome == "success"
    }
}

/// One run of `deliver`.
struct Delivery {
    day: u64,
    attacked: bool,
    code: i32,
    attempts: Vec<Attempt>,
    /// What the peer received during it: the TLS version, `None` for cleartext.
    arrived: Vec<Option<String>>,
    log: String,
}

impl Delivery {
    /// The tier the message went at, if it was delivered.
    fn delivered_at(&self) -> Option<Tier> {
        (self.code == 0)
            .then(|| {
                self.attempts
                    .last()
                    .filter(|a| a.succeeded())
                    .map(|a| a.tier)
            })
            .flatten()
    }
}

/// One combination of the campaign and what came of it.
struct Run {
    attack: Attack,
    peer: PeerKind,
    floor: Floor,
    deliveries: Vec<Delivery>,
    /// The strongest tier the peer was delivered at before the attack.
    proven: Option<Tier>,
    fired: usize,
    violations: Vec<String>,
}

struct Target {
    dir: tempfile::TempDir,
    proxy: AttackProxy,
    peer: LocalPeer,
    floor: Floor,
}

impl Target {
    fn new(kind: PeerKind, floor: Floor) -> Self {
        let peer = LocalPeer::start(kind, identity()).unwrap();
        let proxy = AttackProxy::start(peer.address, Attack::PassThrough).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let pin = if floor == Floor::Pinned { PIN_SECS } else { 0 };
        // The simulated clock makes the default step-down delay free: it is kept.
        std::fs::write(
            dir.path().join("policy.toml"),
            format!("[policy]\npin_duration_secs = {pin}\n"),
        )
        .unwrap();
        std::fs::write(
            dir.path().join("ca.pem"),
            identity().certificate.to_pem().unwrap(),
        )
        .unwrap();
        Self {
            dir,
            proxy,
            peer,
            floor,
        }
    }

    fn deliver(&self, day: u64) -> Delivery {
        let path = |name: &str| self.dir.path().join(name).to_str().unwrap().to_owned();
        let mx = format!("127.0.0.1:{}", self.proxy.address.port());
        let mut args = vec![
            "deliver".to_owned(),
            "--from".to_owned(),
            "a@example.test".to_owned(),
            "--to".to_owned(),
            "b@example.test".to_owned(),
            "--mx".to_owned(),
            mx,
            "--db".to_owned(),
            path("peers.sqlite3"),
            "--policy".to_owned(),
            path("policy.toml"),
        ];
        match self.floor {
            Floor::Unpinned | Floor::Pinned => {}
            Floor::Dane => {
                args.push("--tlsa".to_owned());
                args.push(crate::attempts::tlsa_3_1_1(&identity().certificate));
            }
            Floor::MtaStsEnforce => {
                args.extend(["--mta-sts".to_owned(), "enforce".to_owned()]);
                args.extend(["--ca-file".to_owned(), path("ca.pem")]);
            }
        }
        let before = self.peer.messages().len();
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        // An hour into the day, so that deliveries on one day would still be apart.
        let now = START + day * DAY + 3_600;
        let output = crate::util::run_with_env(&args, MESSAGE, &[(TEST_NOW_VAR, now.to_string())]);
        let log = String::from_utf8_lossy(&output.stderr).into_owned();
        let attempts = log
            .lines()
            .filter(|l| l.starts_with("attempt "))
            .map(|l| Attempt::parse(l).unwrap_or_else(|| panic!("unparsable line {l:?}")))
            .collect();
        let arrived = self.peer.messages()[before..]
            .iter()
            .map(|m| m.tls.as_ref().map(|(version, _)| version.clone()))
            .collect();
        Delivery {
            day,
            attacked: false,
            // A signal (a crash) shows as -1, never as a delivery.
            code: output.status.code().unwrap_or(-1),
            attempts,
            arrived,
            log,
        }
    }
}

/// Runs one combination: learn, attack, recover.
fn run(attack: Attack, peer: PeerKind, floor: Floor) -> Run {
    let target = Target::new(peer, floor);
    let mut deliveries = vec![target.deliver(0)];
    let proven = deliveries[0].delivered_at();
    target.proxy.set_attack(attack);
    let fired_before = target.proxy.fired();
    for day in ATTACK_DAYS {
        let mut delivery = target.deliver(day);
        delivery.attacked = true;
        deliveries.push(delivery);
    }
    let fired = target.proxy.fired() - fired_before;
    target.proxy.set_attack(Attack::PassThrough);
    deliveries.push(target.deliver(RECOVERY_DAY));
    let mut run = Run {
        attack,
        peer,
        floor,
        deliveries,
        proven,
        fired,
        violations: Vec::new(),
    };
    run.violations = check(&run);
    run
}

/// The invariants of the module doc, as lines naming the day and what broke.
fn check(run: &Run) -> Vec<String> {
    let mut broken = Vec::new();
    let attacked = run.attack != Attack::PassThrough;
    let pinned_from = if run.floor.holds_from_the_start() {
        Some(0)
    } else if run.floor == Floor::Pinned {
        run.deliveries
            .iter()
            .find(|d| d.delivered_at().is_some_and(|t| t >= Tier::ModernTls))
            .map(|d| d.day + 1)
    } else {
        None
    };
    for delivery in &run.deliveries {
        let day = delivery.day;
        if delivery.code < 0 {
            broken.push(format!("crash: day {day}: deliver died: {}", delivery.log));
        }
        // floor
        if let Some(from) = pinned_from.filter(|from| day >= *from) {
            for attempt in delivery
                .attempts
                .iter()
                .filter(|a| a.tier < Tier::ModernTls)
            {
                broken.push(format!(
                    "floor: day {day}: {} attempt ({}) to a {} peer{}",
                    attempt.tier.name(),
                    attempt.reason,
                    run.floor.name(),
                    if from > 0 {
                        " after its modern success"
                    } else {
                        ""
                    }
                ));
            }
        }
        // proven: no step below the proven tier within one delivery.
        if let Some(proven) = run.proven.filter(|_| day > 0) {
            for pair in delivery.attempts.windows(2) {
                if pair[1].tier < proven {
                    // Cheap evidence counted across deliveries (the engine's documented threshold
                    // for unpinned peers) is told apart from a step on one piece of evidence.
                    let kind = if pair[1].reason == "stepped-down-repeated-failures" {
                        "proven-threshold"
                    } else {
                        "proven"
                    };
                    broken.push(format!(
                        "{kind}: day {day}: {} -> {} below the proven {} after `{}` (reason {})",
                        pair[0].tier.name(),
                        pair[1].tier.name(),
                        proven.name(),
                        pair[0].outcome,
                        pair[1].reason
                    ));
                }
            }
        }
        for version in &delivery.arrived {
            let exposed = match version {
                None => Some("cleartext"),
                Some(v) if v == "TLSv1" || v == "TLSv1.1" => Some("legacy TLS"),
                Some(_) => None,
            };
            if let (Some(how), Some(from)) = (exposed, pinned_from)
                && day >= from
            {
                broken.push(format!(
                    "floor: day {day}: the peer received the message in {how}"
                ));
            }
        }
    }
    let last = run.deliveries.last().expect("a recovery delivery");
    // recovered
    if let Some(proven) = run.proven
        && last.delivered_at().is_none_or(|t| t < proven)
    {
        broken.push(format!(
            "recovered: day {}: without the attacker, {} (exit {}) instead of {}: {}",
            last.day,
            last.delivered_at().map_or("not delivered", Tier::name),
            last.code,
            proven.name(),
            last.attempts
                .iter()
                .map(|a| format!("{} {} ({})", a.tier.name(), a.outcome, a.reason))
                .collect::<Vec<_>>()
                .join(", ")
        ));
    }
    // baseline
    if !attacked {
        let expected = match (run.peer, run.floor.holds_from_the_start()) {
            (PeerKind::Modern, true) => Some(Tier::AuthenticatedTls),
            (PeerKind::Modern, false) => Some(Tier::ModernTls),
            (PeerKind::LegacyOnly, false) => Some(Tier::LegacyTls),
            (PeerKind::NoStarttls, false) => Some(Tier::Cleartext),
            // Under DANE or MTA-STS a peer without modern TLS is never delivered to.
            _ => None,
        };
        for delivery in &run.deliveries {
            if delivery.delivered_at() != expected {
                broken.push(format!(
                    "baseline: day {}: {} (exit {}) instead of {}",
                    delivery.day,
                    delivery.delivered_at().map_or("not delivered", Tier::name),
                    delivery.code,
                    expected.map_or("not delivered", Tier::name)
                ));
            }
        }
    }
    // fired: every attack applies to a peer that does STARTTLS.
    if attacked && run.peer != PeerKind::NoStarttls && run.fired == 0 {
        broken.push("fired: the attack never happened".to_owned());
    }
    broken
}

/// Runs every combination of `attacks` × peers × floors, prints the table, and fails with every
/// broken invariant.
fn campaign(attacks: &[Attack]) {
    let mut runs = Vec::new();
    for attack in attacks {
        let attacked = *attack != Attack::PassThrough;
        for peer in [PeerKind::Modern, PeerKind::LegacyOnly, PeerKind::NoStarttls] {
            for floor in [Floor::Unpinned, Floor::Pinned] {
                // A plain peer is never pinned: under attack, its pinned run is its unpinned one.
                if peer == PeerKind::NoStarttls && floor == Floor::Pinned && attacked {
                    continue;
                }
                runs.push(run(*attack, peer, floor));
            }
            // Under DANE or MTA-STS only a modern peer gets mail at all; the others are covered by
            // the baseline.
            if peer == PeerKind::Modern || !attacked {
                for floor in [Floor::Dane, Floor::MtaStsEnforce] {
                    runs.push(run(*attack, peer, floor));
                }
            }
        }
    }
    let table = table(&runs);
    println!("{table}");
    if let Some(path) = std::env::var_os("TLSFALLBACK_CAMPAIGN_REPORT") {
        use std::io::Write as _;
        let mut file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .unwrap();
        writeln!(file, "{table}").unwrap();
        for run in &runs {
            for delivery in &run.deliveries {
                for line in delivery.log.lines() {
                    writeln!(
                        file,
                        "# {} {} {} day {}: {line}",
                        run.attack.name(),
                        peer_name(run.peer),
                        run.floor.name(),
                        delivery.day
                    )
                    .unwrap();
                }
            }
        }
    }
    // What the invariants forbid fails the test. A step below the proven tier taken on
    // cheap evidence repeated across deliveries (`transient_failure_threshold`), and what it
    // leaves after the attacker is gone, is what docs/policy.md documents for a peer without a
    // pin (pinning off, or a peer whose proof is legacy TLS, which never pins): it is reported
    // here and in docs/reliability.md as a known weakness, not asserted away.
    type Flagged = Vec<(bool, String)>;
    let (known, broken): (Flagged, Flagged) = runs
        .iter()
        .flat_map(|run| {
            let threshold = run
                .violations
                .iter()
                .any(|v| v.starts_with("proven-threshold:"));
            run.violations.iter().map(move |v| {
                let known = v.starts_with("proven-threshold:")
                    || (threshold && v.starts_with("recovered:"));
                let line = format!(
                    "{} × {} × {}: {v}",
                    run.attack.name(),
                    peer_name(run.peer),
                    run.floor.name()
                );
                (known, line)
            })
        })
        .partition(|(known, _)| *known);
    let known: Vec<String> = known.into_iter().map(|(_, l)| l).collect();
    let broken: Vec<String> = broken.into_iter().map(|(_, l)| l).collect();
    if !known.is_empty() {
        println!(
            "{} known weaknesses (threshold steps without a pin, documented):\n{}",
            known.len(),
            known.join("\n")
        );
    }
    assert!(
        broken.is_empty(),
        "{} invariant violations:\n{}\n\n{table}",
        broken.len(),
        broken.join("\n")
    );
}

/// The summary: one row per combination.
fn table(runs: &[Run]) -> String {
    let mut out = String::from(
        "| attack | peer | floor | proven | delivered / runs | tiers delivered | attempts below proven | fired | held |\n|---|---|---|---|---|---|---|---|---|\n",
    );
    for run in runs {
        let delivered: Vec<Tier> = run
            .deliveries
            .iter()
            .filter_map(Delivery::delivered_at)
            .collect();
        let mut tiers = String::new();
        for tier in Tier::STRONGEST_FIRST {
            let n = delivered.iter().filter(|t| **t == tier).count();
            if n > 0 {
                let _ = write!(tiers, "{}×{n} ", tier.name());
            }
        }
        let below = run.proven.map_or(0, |proven| {
            run.deliveries
                .iter()
                .filter(|d| d.attacked || d.day == RECOVERY_DAY)
                .flat_map(|d| &d.attempts)
                .filter(|a| a.tier < proven)
                .count()
        });
        let held = if run.violations.is_empty() {
            "yes".to_owned()
        } else {
            let mut kinds: Vec<&str> = run
                .violations
                .iter()
                .map(|v| v.split(':').next().unwrap_or(""))
                .collect();
            kinds.dedup();
            format!("**NO** ({})", kinds.join(", "))
        };
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} | {} / {} | {} | {} | {} | {} |",
            run.attack.name(),
            peer_name(run.peer),
            run.floor.name(),
            run.proven.map_or("-", Tier::name),
            delivered.len(),
            run.deliveries.len(),
            tiers.trim_end(),
            below,
            run.fired,
            held
        );
    }
    out
}

fn attacks(filter: impl Fn(&Attack) -> bool) -> Vec<Attack> {
    Attack::every().into_iter().filter(filter).collect()
}

#[test]
fn without_an_attacker_every_peer_gets_mail_at_its_own_tier() {
    campaign(&[Attack::PassThrough]);
}

#[test]
fn stripped_starttls_never_walks_a_proven_peer_down() {
    campaign(&attacks(|a| matches!(a, Attack::StripStarttls(_))));
}

#[test]
fn bytes_injected_after_220_never_walk_a_proven_peer_down() {
    campaign(&attacks(|a| matches!(a, Attack::InjectAfter220 { .. })));
}

#[test]
fn forged_tls_alerts_never_walk_a_proven_peer_down() {
    campaign(&attacks(|a| matches!(a, Attack::ForgeAlert(_))));
}

#[test]
fn resets_at_each_handshake_step_never_walk_a_proven_peer_down() {
    campaign(&attacks(|a| matches!(a, Attack::ResetAt(_))));
}

#[test]
fn delays_and_corrupted_records_never_walk_a_proven_peer_down() {
    campaign(&attacks(|a| {
        matches!(a, Attack::Delay(_) | Attack::CorruptRecords)
    }));
}

#[test]
fn the_campaign_covers_every_attack_of_the_attacker() {
    let covered = [
        attacks(|a| matches!(a, Attack::StripStarttls(_))),
        attacks(|a| matches!(a, Attack::InjectAfter220 { .. })),
        attacks(|a| matches!(a, Attack::ForgeAlert(_))),
        attacks(|a| matches!(a, Attack::ResetAt(_))),
        attacks(|a| matches!(a, Attack::Delay(_) | Attack::CorruptRecords)),
    ]
    .concat();
    assert_eq!(covered, Attack::every());
    assert!(covered.contains(&Attack::StripStarttls(Strip::Answer502)));
}

#[test]
fn the_test_clock_sets_the_time_of_deliver_and_a_bad_value_is_refused() {
    let target = Target::new(PeerKind::Modern, Floor::Pinned);
    let delivery = target.deliver(3);
    assert_eq!(delivery.code, 0, "{}", delivery.log);
    let db = target.dir.path().join("peers.sqlite3");
    let store = tlsfallback_mta::store::HistoryStore::open(&db).unwrap();
    let row = store.list().unwrap().pop().expect("the peer's row");
    assert_eq!(row.updated_at, START + 3 * DAY + 3_600);
    let output = crate::util::run_with_env(
        &[&crate::util::DELIVER_TO_MX[..], &["127.0.0.1:9"]].concat(),
        MESSAGE,
        &[
            (TEST_NOW_VAR, "next tuesday".to_owned()),
            ("TLSFALLBACK_DB", db.to_str().unwrap().to_owned()),
        ],
    );
    let log = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(75), "{log}");
    assert!(log.contains(TEST_NOW_VAR), "{log}");
}
