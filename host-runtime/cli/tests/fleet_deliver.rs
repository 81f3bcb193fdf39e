//! `tlsfallback deliver --fleet` end to end: two nodes (each its own history file) sharing a real
//! redis-server, real local peers, and the attacker proxy stripping STARTTLS on node B's path;
//! `peers show --fleet` saying how the copies compare; TLS and an ACL user to Redis.

use std::path::PathBuf;

use tlsfallback_testkit::peers::{LocalPeer, PeerKind, StrippingProxy};
use tlsfallback_testkit::rig::redis::RedisServer;

use crate::attempts::identity;

const MESSAGE: &str = "From: a@example.test\nTo: b@example.test\nSubject: fleet\n\nbody\n";

/// One node of the fleet: its history file and policy file, and the fleet's flags.
struct Node {
    dir: tempfile::TempDir,
    fleet: Vec<String>,
}

impl Node {
    fn new(fleet: &[&str]) -> Self {
        Self::with_policy_file(fleet, "")
    }

    /// A node whose policy file also has `more` (a `[fleet]` table, say).
    fn with_policy_file(fleet: &[&str], more: &str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        // No step-down delay: the dance, not the waiting, is under test.
        std::fs::write(
            dir.path().join("policy.toml"),
            format!("[policy]\nstep_down_delay_secs = 0\n{more}"),
        )
        .unwrap();
        Self {
            dir,
            fleet: fleet.iter().map(|&arg| arg.to_owned()).collect(),
        }
    }

    fn db(&self) -> PathBuf {
        self.dir.path().join("peers.sqlite3")
    }

    fn deliver(&self, mx: &str) -> (i32, String) {
        let (db, policy) = (self.db(), self.dir.path().join("policy.toml"));
        let mut args = crate::util::deliver_args(mx, &policy, &db);
        args.extend(self.fleet.iter().map(String::as_str));
        let output = crate::util::run(&args, MESSAGE);
        (
            output.status.code().unwrap(),
            String::from_utf8_lossy(&output.stderr).into_owned(),
        )
    }

    /// `peers show PEER --fleet … --json`.
    fn show(&self, peer: &str) -> serde_json::Value {
        let db = self.db();
        let mut args = vec![
            "peers",
            "show",
            peer,
            "--json",
            "--db",
            db.to_str().unwrap(),
        ];
        args.extend(self.fleet.iter().map(String::as_str));
        let output = crate::util::run(&args, "");
        assert!(
            output.status.success(),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
        serde_json::from_slice(&output.stdout).unwrap()
    }
}

#[test]
fn a_pin_node_a_learned_makes_node_b_refuse_a_stripped_peer_a_lone_node_delivers_in_cleartext() {
    let redis = RedisServer::start().unwrap();
    let url = redis.url();
    let peer = LocalPeer::start(PeerKind::Modern, identity()).unwrap();
    let proxy = StrippingProxy::start(peer.address).unwrap();
    let mx = format!("127.0.0.1:{}", proxy.address.port());
    let (a, b) = (Node::new(&["--fleet", &url]), Node::new(&["--fleet", &url]));
    let lone = Node::new(&[]);

    let (code, log) = a.deliver(&mx);
    assert_eq!(code, 0, "{log}");
    assert!(log.contains("tier=modern-tls outcome=success"), "{log}");
    assert_eq!(b.show(&mx)["shared_state"], "only-shared");

    proxy.strip();
    let (code, log) = b.deliver(&mx);
    assert_eq!(code, 75, "node B must defer behind the stripper: {log}");
    assert!(!log.contains("tier=cleartext"), "{log}");
    let (code, log) = lone.deliver(&mx);
    assert_eq!(code, 0, "{log}");
    assert!(
        log.contains("tier=cleartext outcome=success"),
        "without the fleet a node has nothing to hold the floor with: {log}"
    );
    assert_eq!(
        peer.messages().len(),
        2,
        "A's over TLS, the lone node's in cleartext"
    );
    let shown = b.show(&mx);
    assert!(shown["local"]["pinned_until"].as_u64().is_some(), "{shown}");
    assert_ne!(shown["shared_state"], "unavailable", "{shown}");
}

#[test]
fn a_legacy_only_peer_node_a_danced_down_is_reached_directly_by_node_b() {
    let redis = RedisServer::start().unwrap();
    let url = redis.url();
    let peer = LocalPeer::start(PeerKind::LegacyOnly, identity()).unwrap();
    let mx = format!("127.0.0.1:{}", peer.address.port());
    let (a, b) = (Node::new(&["--fleet", &url]), Node::new(&["--fleet", &url]));
    let (code, log) = a.deliver(&mx);
    assert_eq!(code, 0, "{log}");
    assert!(log.contains("tier=modern-tls outcome=tls-alert"), "{log}");
    let (code, log) = b.deliver(&mx);
    assert_eq!(code, 0, "{log}");
    assert!(
        !log.contains("tier=modern-tls"),
        "node B paid the dance again: {log}"
    );
    assert!(log.contains("tier=legacy-tls outcome=success"), "{log}");
    // (Node A may know as much as node B: both succeeded within one second.)
    assert_eq!(b.show(&mx)["shared_state"], "same");
    assert_eq!(b.show(&mx)["shared"]["start_tier"], "legacy-tls");
}

#[test]
fn redis_over_tls_with_an_acl_user_shares_and_a_wrong_password_never_reaches_the_log() {
    let redis = RedisServer::start_tls("s3cret-fleet").unwrap();
    let ca = redis.ca_file().unwrap().to_str().unwrap().to_owned();
    let url = redis.url();
    assert!(url.starts_with("rediss://"), "{url}");
    let peer = LocalPeer::start(PeerKind::LegacyOnly, identity()).unwrap();
    let mx = format!("127.0.0.1:{}", peer.address.port());

    let a = Node::new(&["--fleet", &url, "--fleet-ca-file", &ca]);
    let (code, log) = a.deliver(&mx);
    assert_eq!(code, 0, "{log}");
    assert_eq!(a.show(&mx)["shared_state"], "same");
    let key = tlsfallback_mta::fleet::key_of(&mx);
    assert!(
        !redis.cli(&["HGET", &key, "v"]).unwrap().is_empty(),
        "the ACL user wrote the peer's key"
    );

    let wrong = url.replace("s3cret-fleet", "guessed-wrong");
    let b = Node::new(&["--fleet", &wrong, "--fleet-ca-file", &ca]);
    let (code, log) = b.deliver(&mx);
    assert_eq!(code, 0, "a refused login leaves the decision local: {log}");
    assert!(log.contains("fleet"), "{log}");
    assert!(
        !log.contains("guessed-wrong"),
        "the password reached the log: {log}"
    );
    assert!(
        log.contains("tier=modern-tls"),
        "no shared copy without the login: {log}"
    );

    // Without the CA, the server's certificate is not trusted: no copy, no leak, a decision.
    let c = Node::new(&["--fleet", &url]);
    let (code, log) = c.deliver(&mx);
    assert_eq!(code, 0, "{log}");
    assert!(log.contains("fleet"), "{log}");
    assert!(!log.contains("s3cret-fleet"), "{log}");
}

#[test]
fn forgetting_a_peer_with_the_fleet_deletes_its_shared_copy_and_says_other_nodes_keep_theirs() {
    let redis = RedisServer::start().unwrap();
    let url = redis.url();
    let peer = LocalPeer::start(PeerKind::LegacyOnly, identity()).unwrap();
    let mx = format!("127.0.0.1:{}", peer.address.port());
    let a = Node::new(&["--fleet", &url]);
    let (code, log) = a.deliver(&mx);
    assert_eq!(code, 0, "{log}");

    // Forgotten on this node only: the fleet's copy brings it back at the next delivery.
    let db = a.db();
    let forget = |extra: &[&str]| {
        let mut args = vec!["peers", "forget", &mx, "--db", db.to_str().unwrap()];
        args.extend_from_slice(extra);
        crate::util::run(&args, "")
    };
    assert!(forget(&[]).status.success());
    let (_, log) = a.deliver(&mx);
    assert!(
        !log.contains("tier=modern-tls"),
        "the fleet's copy came back: {log}"
    );

    let output = forget(&["--fleet", &url]);
    let said = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{output:?}");
    assert!(said.contains("on this node and in the fleet"), "{said}");
    assert!(
        said.contains("other nodes keep their own history"),
        "{said}"
    );
    assert_eq!(
        redis
            .cli(&["EXISTS", &tlsfallback_mta::fleet::key_of(&mx)])
            .unwrap(),
        "0"
    );
    let (code, log) = Node::new(&["--fleet", &url]).deliver(&mx);
    assert_eq!(code, 0, "{log}");
    assert!(
        log.contains("tier=modern-tls"),
        "a new node knows nothing of the forgotten peer: {log}"
    );

    // The fleet down: forgotten here, but the command fails and says why.
    drop(redis);
    let output = forget(&["--fleet", &url]);
    let said = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success());
    assert!(said.contains("the fleet did not answer"), "{said}");
}

#[test]
fn the_fleet_table_of_the_policy_file_shares_with_its_ca_file_relative_to_the_file() {
    let redis = RedisServer::start_tls("s3cret-fleet").unwrap();
    let peer = LocalPeer::start(PeerKind::LegacyOnly, identity()).unwrap();
    let mx = format!("127.0.0.1:{}", peer.address.port());
    let table = format!(
        "[fleet]\nurl = \"{}\"\nca_file = \"redis-ca.pem\"\n",
        redis.url()
    );
    let nodes = [
        Node::with_policy_file(&[], &table),
        Node::with_policy_file(&[], &table),
    ];
    for node in &nodes {
        std::fs::copy(
            redis.ca_file().unwrap(),
            node.dir.path().join("redis-ca.pem"),
        )
        .unwrap();
    }
    let (code, log) = nodes[0].deliver(&mx);
    assert_eq!(code, 0, "{log}");
    let (code, log) = nodes[1].deliver(&mx);
    assert_eq!(code, 0, "{log}");
    assert!(
        !log.contains("tier=modern-tls"),
        "node B did not get node A's copy through the policy file's fleet: {log}"
    );

    // A fleet table that is wrong is refused before any delivery, saying what is wrong.
    for (bad, says) in [
        (
            "[fleet]\nurl = \"http://127.0.0.1:1\"\n",
            "http://127.0.0.1:1",
        ),
        (
            "[fleet]\nurl = \"redis://127.0.0.1:1\"\nbudget = 5\n",
            "budget",
        ),
        (
            "[fleet]\nurl = \"rediss://127.0.0.1:1\"\nca_file = \"missing.pem\"\n",
            "missing.pem",
        ),
    ] {
        let (code, log) = Node::with_policy_file(&[], bad).deliver(&mx);
        assert_ne!(code, 0, "{bad}: {log}");
        assert!(log.contains(says), "{bad}: {log}");
    }
    assert_eq!(
        peer.messages().len(),
        2,
        "no message went out under a bad table"
    );
}
