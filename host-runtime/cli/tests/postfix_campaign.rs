//! The attacker in front of a real receiving Postfix, and a real sending Postfix whose TLS policy
//! `postfix serve` answers: every attack of the test kit against a pinned destination, through
//! Postfix's own queue and retries. The invariant a user relies on: once the destination is
//! pinned (its modern success), no message reaches it in cleartext or legacy TLS, and the daemon
//! never answers it `none` or a legacy policy, whatever the attacker does; once the attacker is
//! gone, every message arrives over modern TLS.

use std::time::Duration;

use tlsfallback_testkit::attacker::{
    Attack, AttackProxy, HandshakeStep, InjectTiming, Injection, Strip,
};

use crate::postfix::{PrivatePostfix, received_header};
use crate::postfix_daemon::{Scene, send};

/// Postfix's retries are the dance's next steps: each flush is one more lookup (and, unless the
/// daemon defers, one more attempt) per queued message. Waits (10 s at most: Postfix may hold a
/// destination it found dead) for the next lookup of `key`, then briefly for the log to be read.
fn flush_and_wait(scene: &Scene, key: &str) {
    let lookup = format!("lookup={key} ");
    let before = scene.daemon.matching(&[&lookup]).len();
    scene.sender.command("postqueue", &["-f"], "");
    for _ in 0..200 {
        if scene.daemon.matching(&[&lookup]).len() > before {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    std::thread::sleep(Duration::from_millis(300));
}

#[test]
fn no_attack_through_postfix_walks_a_pinned_destination_down() {
    let receiver = PrivatePostfix::start();
    let upstream = format!("127.0.0.1:{}", receiver.modern).parse().unwrap();
    let proxy = AttackProxy::start(upstream, Attack::PassThrough).unwrap();
    let port = proxy.address.port();
    let scene = Scene::start_with_policy(
        &[("victim.test", port)],
        "[policy]\nstep_down_delay_secs = 0\n",
    );
    let key = format!("[127.0.0.1]:{port}");

    // Day 0, no attacker: the destination proves modern TLS and is pinned.
    send(&scene.sender, "user@victim.test", "proof");
    scene
        .daemon
        .wait_for(&[&format!("outcome={key}"), "result=success"]);
    let proven_at = scene.daemon.lines().len();

    let mut report = Vec::new();
    // One attack of each kind the engine tells apart (a real Postfix retry costs seconds).
    let attacks = [
        Attack::StripStarttls(Strip::RemoveFromEhlo),
        Attack::StripStarttls(Strip::Answer454),
        Attack::InjectAfter220 {
            payload: Injection::Garbage,
            timing: InjectTiming::AfterClientHello,
        },
        Attack::ForgeAlert(70),
        Attack::ForgeAlert(40),
        Attack::ForgeAlert(71),
        Attack::ForgeAlert(86),
        Attack::ResetAt(HandshakeStep::AfterClientHello),
        Attack::CorruptRecords,
    ];
    for (n, attack) in attacks.iter().enumerate() {
        proxy.set_attack(*attack);
        let fired = proxy.fired();
        let subject = format!("attack {n} {}", attack.name());
        send(&scene.sender, "user@victim.test", &subject);
        // The first try, then a retry of everything queued, under this attack.
        flush_and_wait(&scene, &key);
        report.push((attack.name(), proxy.fired() - fired));
    }
    proxy.set_attack(Attack::PassThrough);
    for _ in 0..20 {
        if receiver.messages().len() > attacks.len() {
            break;
        }
        flush_and_wait(&scene, &key);
    }
    let messages = receiver.messages();
    assert_eq!(
        messages.len(),
        attacks.len() + 1,
        "every message arrives once the attacker is gone: {}",
        scene.sender.log()
    );

    let answers: Vec<String> = scene.daemon.lines()[proven_at..]
        .iter()
        .filter(|l| l.starts_with(&format!("lookup={key} ")))
        .cloned()
        .collect();
    let weak: Vec<&String> = answers
        .iter()
        .filter(|l| l.contains("answer=\"") && (l.contains("OK none") || l.contains("ciphers=low")))
        .collect();
    assert!(weak.is_empty(), "answers below the pin: {weak:#?}");
    for message in &messages {
        let received = received_header(message);
        assert!(
            received.contains("using TLSv1.3") || received.contains("using TLSv1.2"),
            "every message arrived over modern TLS: {received}"
        );
    }
    let idle: Vec<_> = report
        .iter()
        .filter(|(name, fired)| *fired == 0 && !name.starts_with("delay/"))
        .collect();
    assert!(
        idle.is_empty(),
        "attacks that never fired prove nothing: {idle:?}"
    );
    eprintln!(
        "postfix campaign: {} attacks, {} lookups after the pin, {} messages delivered over modern TLS",
        attacks.len(),
        answers.len(),
        messages.len()
    );
}
