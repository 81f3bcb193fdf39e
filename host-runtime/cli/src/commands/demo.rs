//! `tlsfallback demo`: the dance with real sockets and real handshakes against local peers, two
//! rounds: the first shows the dance, the second shows memory and pinning.

use std::io::Write;
use std::path::PathBuf;

use clap::Args;

use policy_core::{DeliveryContext, MtaSts};

use crate::commands::deliver::{format_attempt, summarize};
use crate::flags::EngineArgs;
use tlsfallback_engine::config::{PolicyFile, PolicyOverrides};
use tlsfallback_engine::decider::DecisionEngine;
use tlsfallback_mta::clock::SystemClock;
use tlsfallback_mta::delivery::{DeliveryJob, DeliveryOutputs, Destination, deliver};
use tlsfallback_mta::smtp::{Message, Timeouts};
use tlsfallback_mta::store::HistoryStore;
use tlsfallback_mta::tls::TrustAnchors;
use tlsfallback_testkit::peers::{Identity, LocalPeer, PeerKind, StrippingProxy};

struct DemoPeer {
    name: &'static str,
    what: &'static str,
    address: std::net::SocketAddr,
    context: DeliveryContext,
}

/// Runs the demo, writing the timeline to `out`.
///
/// # Errors
///
/// When a local peer cannot start, or the store or the engine fails.
pub fn run(
    engine: &mut dyn DecisionEngine,
    store: &mut HistoryStore,
    out: &mut dyn Write,
) -> anyhow::Result<()> {
    let identity = Identity::self_signed("mx.demo.test")?;
    let start = |kind| LocalPeer::start(kind, &identity);
    let modern = start(PeerKind::Modern)?;
    let legacy = start(PeerKind::LegacyOnly)?;
    let plain = start(PeerKind::NoStarttls)?;
    let refusing = start(PeerKind::Starttls454)?;
    let resetting = start(PeerKind::ResetInHandshake)?;
    let self_signed = start(PeerKind::Modern)?;
    let behind_proxy = start(PeerKind::Modern)?;
    let proxy = StrippingProxy::start(behind_proxy.address)?;
    let enforce = DeliveryContext {
        mta_sts: MtaSts::Enforce,
        ..DeliveryContext::default()
    };
    let peers = [
        DemoPeer {
            name: "modern.demo.test",
            what: "TLS 1.2/1.3",
            address: modern.address,
            context: DeliveryContext::default(),
        },
        DemoPeer {
            name: "legacy.demo.test",
            what: "TLS 1.0 only",
            address: legacy.address,
            context: DeliveryContext::default(),
        },
        DemoPeer {
            name: "plain.demo.test",
            what: "no STARTTLS",
            address: plain.address,
            context: DeliveryContext::default(),
        },
        DemoPeer {
            name: "refusing.demo.test",
            what: "STARTTLS answered 454",
            address: refusing.address,
            context: DeliveryContext::default(),
        },
        DemoPeer {
            name: "resetting.demo.test",
            what: "resets during the handshake",
            address: resetting.address,
            context: DeliveryContext::default(),
        },
        DemoPeer {
            name: "selfsigned.demo.test",
            what: "self-signed certificate, MTA-STS enforce",
            address: self_signed.address,
            context: enforce,
        },
        DemoPeer {
            name: "stripped.demo.test",
            what: "modern, behind a proxy that strips STARTTLS in round 2",
            address: proxy.address,
            context: DeliveryContext::default(),
        },
    ];
    // Short delays so the demo runs in seconds; everything else is the default policy.
    let policy_file = PolicyFile {
        policy: PolicyOverrides {
            step_down_delay_secs: Some(1),
            ..PolicyOverrides::default()
        },
        ..PolicyFile::default()
    };
    let mut clock = SystemClock;
    let to = vec!["postmaster@demo.test".to_owned()];
    writeln!(out, "history database: {}", store.path().display())?;
    for round in 1..=2 {
        if round == 2 {
            proxy.strip();
        }
        let heading = if round == 1 {
            "round 1: the dance (unknown peers)"
        } else {
            "round 2: memory (legacy peers start low, modern peers untouched, the pinned peer is stripped)"
        };
        writeln!(out, "\n== {heading}")?;
        for peer in &peers {
            writeln!(out, "-- {} ({})", peer.name, peer.what)?;
            let data = format!(
                "From: demo@demo.test\nTo: postmaster@demo.test\nSubject: round {round}\n\nHello from the tlsfallback demo.\n"
            );
            let job = DeliveryJob {
                message: Message {
                    from: "demo@demo.test",
                    to: &to,
                    data: data.as_bytes(),
                },
                destinations: vec![Destination {
                    peer: peer.name.to_owned(),
                    host: peer.name.to_owned(),
                    address: peer.address,
                    resolved: None,
                }],
                context: peer.context,
                helo_name: "demo-client.test".to_owned(),
                anchors: TrustAnchors::default(),
                timeouts: Timeouts {
                    connect: std::time::Duration::from_secs(5),
                    attempt: std::time::Duration::from_secs(30),
                    ..Timeouts::default()
                },
                tlsrpt: None,
            };
            let mut log = |line: &tlsfallback_mta::delivery::AttemptLine| {
                let _ = writeln!(out, "   {}", format_attempt(line));
            };
            let mut warn = |line: &str| eprintln!("tlsfallback: warning: {line}");
            let result = deliver(
                engine,
                store,
                &policy_file,
                &mut clock,
                &job,
                DeliveryOutputs {
                    log: &mut log,
                    warn: &mut warn,
                    tlsrpt: None,
                },
            )?;
            writeln!(out, "   => {}", summarize(&result).0)?;
        }
    }
    let cleartext_via_proxy = behind_proxy
        .messages()
        .iter()
        .filter(|m| m.tls.is_none())
        .count();
    writeln!(
        out,
        "\nmessages the stripped peer received in cleartext: {cleartext_via_proxy} (the pin refused the downgrade)"
    )?;
    Ok(())
}

/// `tlsfallback demo`.
#[derive(Debug, Args)]
pub(crate) struct DemoCommand {
    #[command(flatten)]
    pub(crate) engine: EngineArgs,
    /// Keep the history here (default: a fresh temporary database, so every run starts unknown).
    #[arg(long, value_name = "PATH")]
    pub(crate) db: Option<PathBuf>,
}

impl DemoCommand {
    /// Runs the demo, in a throw-away database unless `--db` is given.
    ///
    /// # Errors
    ///
    /// The engine, the database, the local peers, or writing stdout.
    pub(crate) fn run(&self) -> anyhow::Result<()> {
        let (_, mut engine) = self.engine.resolve()?;
        let temporary = tempfile_dir()?;
        let path = self
            .db
            .clone()
            .unwrap_or_else(|| temporary.join("peers.sqlite3"));
        let mut store = HistoryStore::open(&path)?;
        let mut stdout = std::io::stdout().lock();
        let result = run(engine.as_mut(), &mut store, &mut stdout);
        if self.db.is_none() {
            let _ = std::fs::remove_dir_all(&temporary);
        }
        result
    }
}

/// A fresh private directory for the demo's throw-away history.
fn tempfile_dir() -> anyhow::Result<PathBuf> {
    let dir = std::env::temp_dir().join(format!("tlsfallback-demo-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}
