//! `tlsfallback postfix serve --mode policy-table` against postfix-mta-sts-resolver 1.5.1 (the
//! pinned install `scripts/setup` makes), both over the same DNSSEC rig and MTA-STS policy server:
//! every next hop asked of both, every answer of ours equal to theirs or stronger, and the DANE
//! destinations, which they cannot see, strictly stronger. docs/postfix.md ("Compared with
//! postfix-mta-sts-resolver") lists each difference and why; the table below is the same list.
//!
//! Theirs resolves as in production, through libc and c-ares: `/etc/resolv.conf` names the rig's
//! unbound on port 53 of an address of its own (in a private mount namespace), the policy host
//! resolves to the policy server's address, and it fetches from port 443 there. Ours asks the same
//! unbound (`--dns-server`, `--dnssec trust-ad`) and fetches from the same port 443.

use std::collections::BTreeSet;
use std::net::Ipv4Addr;
use std::time::Duration;

use tlsfallback_testkit::rig::dnssec::{
    ChildZone, DnssecRig, RigSpec, Signing, unique_loopback_ip,
};
use tlsfallback_testkit::rig::https::{Certificate, PolicyServer, Response};
use tlsfallback_testkit::rig::mta_sts_resolver::{MtaStsResolverDaemon, ResolverOptions};

use crate::postfix_daemon::{Daemon, netstring};

/// A usable DANE-EE record (its digest need not match anything: nothing connects here).
const TLSA: &str = "IN TLSA 3 1 1 8d02536c887482bc34ff54e41d2ba659bf85b341a0a20afadb5813dcfbcf286d";

/// A zone publishing an MTA-STS policy: the TXT record and `mta-sts.<zone>` on the policy server.
fn with_sts(zone: ChildZone, policy_ip: Ipv4Addr) -> ChildZone {
    zone.record("_mta-sts IN TXT \"v=STSv1; id=20261202\"")
        .record(format!("mta-sts IN A {policy_ip}"))
}

fn policy(mode: &str, mx: &[&str]) -> String {
    let mut text = format!("version: STSv1\r\nmode: {mode}\r\n");
    for pattern in mx {
        text.push_str(&format!("mx: {pattern}\r\n"));
    }
    text.push_str("max_age: 86400\r\n");
    text
}

/// The rig's zones; `policy_ip` is where `mta-sts.*` resolves to.
fn spec(policy_ip: Ipv4Addr) -> RigSpec {
    let sts = |label: &str, signing: Signing| {
        with_sts(
            ChildZone::new(label, signing)
                .record("@ IN MX 10 mx")
                .record("mx IN A 127.0.0.1"),
            policy_ip,
        )
    };
    RigSpec::new()
        .child(sts("sts-one", Signing::Unsigned))
        .child(with_sts(
            ChildZone::new("sts-many", Signing::Unsigned)
                .record("@ IN MX 10 mx1")
                .record("@ IN MX 20 a.backup")
                .record("mx1 IN A 127.0.0.1")
                .record("a.backup IN A 127.0.0.1"),
            policy_ip,
        ))
        .child(sts("sts-signed", Signing::Signed))
        .child(sts("sts-mismatch", Signing::Unsigned))
        .child(sts("sts-testing", Signing::Unsigned))
        .child(sts("sts-none", Signing::Unsigned))
        .child(sts("sts-404", Signing::Unsigned))
        .child(sts("sts-bad", Signing::Unsigned))
        .child(sts("sts-badcert", Signing::Unsigned))
        .child(
            ChildZone::new("no-txt", Signing::Unsigned)
                .record("@ IN MX 10 mx")
                .record("mx IN A 127.0.0.1"),
        )
        .child(
            ChildZone::new("dane-all", Signing::Signed)
                .record("@ IN MX 10 mx1")
                .record("@ IN MX 20 mx2")
                .record("mx1 IN A 127.0.0.1")
                .record("mx2 IN A 127.0.0.1")
                .record(format!("_25._tcp.mx1 {TLSA}"))
                .record(format!("_25._tcp.mx2 {TLSA}")),
        )
        .child(
            ChildZone::new("dane-some", Signing::Signed)
                .record("@ IN MX 10 mx1")
                .record("@ IN MX 20 mx2")
                .record("mx1 IN A 127.0.0.1")
                .record("mx2 IN A 127.0.0.1")
                .record(format!("_25._tcp.mx1 {TLSA}")),
        )
        .child(with_sts(
            ChildZone::new("dane-sts", Signing::Signed)
                .record("@ IN MX 10 mx")
                .record("mx IN A 127.0.0.1")
                .record(format!("_25._tcp.mx {TLSA}")),
            policy_ip,
        ))
        .child(with_sts(
            ChildZone::new("dane-some-sts", Signing::Signed)
                .record("@ IN MX 10 mx1")
                .record("@ IN MX 20 mx2")
                .record("mx1 IN A 127.0.0.1")
                .record("mx2 IN A 127.0.0.1")
                .record(format!("_25._tcp.mx1 {TLSA}")),
            policy_ip,
        ))
        .child(with_sts(
            ChildZone::new("null-mx", Signing::Unsigned).record("@ IN MX 0 ."),
            policy_ip,
        ))
        .child(with_sts(
            ChildZone::new("bogus", Signing::BrokenDs)
                .record("@ IN MX 10 mx")
                .record("mx IN A 127.0.0.1"),
            policy_ip,
        ))
        .child(ChildZone::new("servfail", Signing::Servfail))
}

/// What the policy server answers for each domain of [`spec`] that publishes a TXT record.
fn serve_policies(server: &PolicyServer) {
    let enforce = |mx: &[&str]| Response::policy(&policy("enforce", mx));
    server.set("sts-one.test", enforce(&["mx.sts-one.test"]));
    server.set(
        "sts-many.test",
        enforce(&[
            "mx1.sts-many.test",
            "*.backup.sts-many.test",
            "mx1.sts-many.test",
        ]),
    );
    server.set("sts-signed.test", enforce(&["mx.sts-signed.test"]));
    server.set("sts-mismatch.test", enforce(&["mx.elsewhere.test"]));
    server.set(
        "sts-testing.test",
        Response::policy(&policy("testing", &["mx.sts-testing.test"])),
    );
    server.set("sts-none.test", Response::policy(&policy("none", &[])));
    server.set("sts-404.test", Response::status(404));
    server.set(
        "sts-bad.test",
        Response::policy(&policy("reject", &["mx.sts-bad.test"])),
    );
    server.set("sts-badcert.test", enforce(&["mx.sts-badcert.test"]));
    server.set_certificate("sts-badcert.test", Certificate::OtherName);
    server.set("dane-sts.test", enforce(&["mx.dane-sts.test"]));
    server.set("dane-some-sts.test", enforce(&["*.dane-some-sts.test"]));
    server.set("null-mx.test", enforce(&["mx.null-mx.test"]));
    server.set("bogus.test", enforce(&["mx.bogus.test"]));
}

/// A socketmap answer, read for comparison (`match=` as a set: theirs comes in a Python set's
/// order).
#[derive(Clone, Debug, PartialEq, Eq)]
enum Answer {
    /// `NOTFOUND `: Postfix uses main.cf's level.
    NotFound,
    /// `TEMP ...`: Postfix defers.
    Temp,
    /// `OK secure match=... servername=hostname`.
    Secure(BTreeSet<String>),
    /// `OK dane-only`.
    DaneOnly,
    /// `OK dane`.
    Dane,
    /// Anything else, as it came.
    Other(String),
}

impl Answer {
    fn parse(text: &str) -> Self {
        if text == "NOTFOUND " {
            return Self::NotFound;
        }
        if text.starts_with("TEMP ") {
            return Self::Temp;
        }
        match text.strip_prefix("OK ") {
            Some("dane-only") => Self::DaneOnly,
            Some("dane") => Self::Dane,
            Some(secure) => match secure
                .strip_prefix("secure match=")
                .and_then(|rest| rest.strip_suffix(" servername=hostname"))
            {
                Some(patterns) => Self::Secure(patterns.split(':').map(str::to_owned).collect()),
                None => Self::Other(text.to_owned()),
            },
            None => Self::Other(text.to_owned()),
        }
    }

    fn secure(patterns: &[&str]) -> Self {
        Self::Secure(patterns.iter().map(|p| (*p).to_owned()).collect())
    }
}

/// How ours compares with theirs on one next hop.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Verdict {
    /// The same answer.
    Equal,
    /// Ours asks more of the delivery: a policy where theirs has none, DANE where theirs has
    /// MTA-STS (RFC 8461 section 2: DANE takes precedence), or a deferral where theirs guesses
    /// there is no policy.
    Stronger,
    /// Ours asks less, or the answers cannot be compared: refused, except for the cases below.
    Weaker,
}

/// Why a case where ours is [`Verdict::Weaker`] is let through.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Exception {
    /// None: ours must be equal or stronger.
    None,
    /// Postfix delivers nothing either way (a null MX: it bounces by itself).
    NoDelivery,
}

/// Ours against theirs, as the module's promise reads.
fn compare(ours: &Answer, theirs: &Answer) -> Verdict {
    use Answer::{Dane, DaneOnly, NotFound, Secure, Temp};
    match (ours, theirs) {
        _ if ours == theirs => Verdict::Equal,
        (Temp | Secure(_) | Dane | DaneOnly, NotFound) => Verdict::Stronger,
        // `dane` would leave the MX hosts without TLSA records to opportunistic TLS, which an
        // enforced policy does not: only `dane-only` (or a deferral) is stronger than `secure`.
        (Temp | DaneOnly, Secure(_)) => Verdict::Stronger,
        _ => Verdict::Weaker,
    }
}

/// One next hop: what each daemon is expected to answer, and why they differ.
struct Case {
    key: &'static str,
    theirs: Answer,
    ours: Answer,
    verdict: Verdict,
    exception: Exception,
    why: &'static str,
}

fn cases() -> Vec<Case> {
    use Answer::{Dane, DaneOnly, NotFound, Temp};
    let case = |key, theirs, ours, verdict, why| Case {
        key,
        theirs,
        ours,
        verdict,
        exception: Exception::None,
        why,
    };
    let except = |exception, case: Case| Case { exception, ..case };
    let sts_one = || Answer::secure(&["mx.sts-one.test"]);
    vec![
        case(
            "sts-one.test",
            sts_one(),
            sts_one(),
            Verdict::Equal,
            "enforce, one MX pattern",
        ),
        case(
            "sts-one.test:25",
            sts_one(),
            sts_one(),
            Verdict::Equal,
            "domain:port is the domain's policy",
        ),
        case(
            "STS-One.Test",
            sts_one(),
            sts_one(),
            Verdict::Equal,
            "case does not matter",
        ),
        case(
            "sts-many.test",
            Answer::secure(&["mx1.sts-many.test", ".backup.sts-many.test"]),
            Answer::secure(&["mx1.sts-many.test", ".backup.sts-many.test"]),
            Verdict::Equal,
            "several patterns, a `*.` wildcard written `.`, a repeat dropped",
        ),
        case(
            "sts-signed.test",
            Answer::secure(&["mx.sts-signed.test"]),
            Answer::secure(&["mx.sts-signed.test"]),
            Verdict::Equal,
            "DNSSEC-signed, no TLSA: MTA-STS is the floor",
        ),
        case(
            "sts-mismatch.test",
            Answer::secure(&["mx.elsewhere.test"]),
            Answer::secure(&["mx.elsewhere.test"]),
            Verdict::Equal,
            "the MX matches no pattern: both hand Postfix the patterns, Postfix defers",
        ),
        case(
            "sts-testing.test",
            NotFound,
            NotFound,
            Verdict::Equal,
            "mode testing",
        ),
        case(
            "sts-none.test",
            NotFound,
            NotFound,
            Verdict::Equal,
            "mode none",
        ),
        case(
            "no-txt.test",
            NotFound,
            NotFound,
            Verdict::Equal,
            "no _mta-sts TXT record",
        ),
        case(
            "sts-404.test",
            NotFound,
            NotFound,
            Verdict::Equal,
            "policy fetch 404, nothing cached",
        ),
        case(
            "sts-bad.test",
            NotFound,
            NotFound,
            Verdict::Equal,
            "invalid policy (mode: reject)",
        ),
        case(
            "sts-badcert.test",
            NotFound,
            NotFound,
            Verdict::Equal,
            "policy host's certificate for another name",
        ),
        case(
            "[192.0.2.1]:25",
            NotFound,
            NotFound,
            Verdict::Equal,
            "IP literal",
        ),
        case(
            "192.0.2.1",
            NotFound,
            NotFound,
            Verdict::Equal,
            "bare IP literal",
        ),
        case(
            ".sts-one.test",
            NotFound,
            NotFound,
            Verdict::Equal,
            "parent-domain probe",
        ),
        case(
            "[sts-one.test]:25",
            sts_one(),
            sts_one(),
            Verdict::Equal,
            "[host] naming a policy domain: both apply the policy the host name publishes",
        ),
        case(
            "[mx.sts-one.test]:25",
            NotFound,
            NotFound,
            Verdict::Equal,
            "[host]:port without DANE",
        ),
        case(
            "dane-all.test",
            NotFound,
            DaneOnly,
            Verdict::Stronger,
            "signed, TLSA on every MX: theirs has no DANE",
        ),
        case(
            "dane-all.test:25",
            NotFound,
            DaneOnly,
            Verdict::Stronger,
            "domain:port, TLSA at _25._tcp of every MX",
        ),
        case(
            "dane-all.test:2525",
            NotFound,
            NotFound,
            Verdict::Equal,
            "domain:port whose port has no TLSA record (_2525._tcp)",
        ),
        case(
            "dane-some.test",
            NotFound,
            Dane,
            Verdict::Stronger,
            "TLSA on one MX of two: Postfix's `dane` verifies that one",
        ),
        case(
            "[mx1.dane-all.test]:25",
            NotFound,
            DaneOnly,
            Verdict::Stronger,
            "[host]:port with TLSA: the host's own DANE",
        ),
        case(
            "[mx1.dane-all.test]",
            NotFound,
            DaneOnly,
            Verdict::Stronger,
            "[host] with TLSA",
        ),
        case(
            "dane-sts.test",
            Answer::secure(&["mx.dane-sts.test"]),
            DaneOnly,
            Verdict::Stronger,
            "DANE and MTA-STS enforce: DANE first (RFC 8461 section 2), theirs MTA-STS",
        ),
        case(
            "dane-some-sts.test",
            Answer::secure(&[".dane-some-sts.test"]),
            DaneOnly,
            Verdict::Stronger,
            "TLSA on one MX of two and MTA-STS enforce: `dane-only`, never `dane`",
        ),
        case(
            "bogus.test",
            NotFound,
            Temp,
            Verdict::Stronger,
            "DNSSEC-bogus: theirs sees SERVFAIL as no policy, ours defers",
        ),
        case(
            "servfail.test",
            NotFound,
            Temp,
            Verdict::Stronger,
            "SERVFAIL: theirs sees no policy, ours defers",
        ),
        except(
            Exception::NoDelivery,
            case(
                "null-mx.test",
                Answer::secure(&["mx.null-mx.test"]),
                NotFound,
                Verdict::Weaker,
                "null MX (RFC 7505) with a policy: Postfix bounces whatever the table says",
            ),
        ),
        case(
            "nxdomain.test",
            NotFound,
            NotFound,
            Verdict::Equal,
            "no such domain",
        ),
    ]
}

/// The socketmap answer's data, without the netstring framing.
fn unframe(reply: &str) -> String {
    reply
        .split_once(':')
        .and_then(|(_, rest)| rest.strip_suffix(','))
        .unwrap_or(reply)
        .to_owned()
}

/// Ours: asked again while it answers TEMP for a floor still being resolved (its first lookup
/// of a domain may outrun the budget); a floor that cannot be known stays TEMP.
fn ask_ours(daemon: &Daemon, key: &str) -> String {
    let mut answer = String::new();
    for _ in 0..5 {
        answer = unframe(&daemon.ask(&netstring(&format!("postfix {key}"))));
        if !answer.contains("still resolving") {
            break;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    answer
}

/// Both daemons over one rig, theirs with `tlsrpt: tlsrpt` and ours with `--tlsrpt` to match.
/// Field order is drop order: the daemons stop before the servers they ask.
struct Scene {
    theirs: MtaStsResolverDaemon,
    ours: Daemon,
    _server: PolicyServer,
    _rig: DnssecRig,
    _state: tempfile::TempDir,
}

impl Scene {
    fn start(tlsrpt: bool) -> Self {
        let resolver_ip = unique_loopback_ip().expect("a loopback address with port 53 free");
        let policy_ip = unique_loopback_ip().expect("a second loopback address");
        let rig = DnssecRig::start(&spec(policy_ip).resolver_on(resolver_ip))
            .expect("the DNSSEC rig starts");
        let server = PolicyServer::start_on((policy_ip, 443).into())
            .expect("the policy server binds port 443 (as root)");
        serve_policies(&server);
        let state = tempfile::tempdir().unwrap();
        let theirs = MtaStsResolverDaemon::start(
            state.path(),
            resolver_ip,
            server.ca_file(),
            &ResolverOptions {
                tlsrpt,
                ..ResolverOptions::default()
            },
        )
        .unwrap_or_else(|e| panic!("{e}"));
        let unbound = rig.unbound_addr().to_string();
        let ca = server.ca_file().to_string_lossy().into_owned();
        let mut args = vec![
            "--mode",
            "policy-table",
            "--map-name",
            "postfix",
            "--dns-server",
            &unbound,
            "--dnssec",
            "trust-ad",
            // Generous, as theirs waits for its fetch too: the answers are compared, not speed.
            "--resolve-budget-ms",
            "8000",
            "--mta-sts-ca-file",
            &ca,
            "--mta-sts-port",
            "443",
        ];
        if tlsrpt {
            args.push("--tlsrpt");
        }
        let ours = Daemon::start(&state.path().join("history.sqlite3"), None, &args);
        Self {
            theirs,
            ours,
            _server: server,
            _rig: rig,
            _state: state,
        }
    }
}

#[test]
fn every_answer_is_postfix_mta_sts_resolvers_or_stronger_and_dane_strictly_stronger() {
    let Scene { theirs, ours, .. } = &Scene::start(false);
    let mut table = Vec::new();
    let mut wrong = Vec::new();
    for case in cases() {
        let their_text = theirs.ask(case.key).unwrap_or_else(|e| panic!("{e}"));
        let our_text = ask_ours(ours, case.key);
        // Asked again, from the cache: the same answers.
        let their_again = theirs.ask(case.key).unwrap_or_else(|e| panic!("{e}"));
        let our_again = ask_ours(ours, case.key);
        let (their_answer, our_answer) = (Answer::parse(&their_text), Answer::parse(&our_text));
        let verdict = compare(&our_answer, &their_answer);
        table.push(format!(
            "{:<24} theirs {their_text:?}\n{:<24} ours   {our_text:?}\n{:<24} {verdict:?} \
             ({:?}): {}",
            case.key, "", "", case.exception, case.why
        ));
        let mut problems = Vec::new();
        if their_answer != case.theirs {
            problems.push(format!("theirs expected {:?}", case.theirs));
        }
        if our_answer != case.ours {
            problems.push(format!("ours expected {:?}", case.ours));
        }
        if Answer::parse(&their_again) != their_answer || Answer::parse(&our_again) != our_answer {
            problems.push(format!(
                "asked again: theirs {their_again:?}, ours {our_again:?}"
            ));
        }
        if verdict != case.verdict {
            problems.push(format!("verdict {verdict:?}, expected {:?}", case.verdict));
        }
        if verdict == Verdict::Weaker && case.exception == Exception::None {
            problems.push("ours is weaker".to_owned());
        }
        if !problems.is_empty() {
            wrong.push(format!("{}: {}", case.key, problems.join("; ")));
        }
    }
    let table = table.join("\n");
    eprintln!("{table}");
    assert!(
        wrong.is_empty(),
        "{}\n\n{table}\n\ntheirs' log:\n{}\nours' log:\n{}",
        wrong.join("\n"),
        theirs.log(),
        ours.lines().join("\n")
    );
    // Every destination with usable TLSA records is one where ours is strictly stronger.
    let dane = cases()
        .into_iter()
        .filter(|c| matches!(c.ours, Answer::Dane | Answer::DaneOnly))
        .collect::<Vec<_>>();
    assert!(dane.len() >= 7, "the DANE cases are all here");
    for case in dane {
        assert_eq!(case.verdict, Verdict::Stronger, "{}", case.key);
    }
}

#[test]
fn answers_compare_as_the_promise_reads() {
    use Answer::{Dane, DaneOnly, NotFound, Temp};
    let secure = Answer::secure(&["mx.a.test", ".b.test"]);
    assert_eq!(
        Answer::parse("OK secure match=.b.test:mx.a.test servername=hostname"),
        secure
    );
    assert_eq!(compare(&secure, &secure), Verdict::Equal);
    assert_eq!(compare(&DaneOnly, &secure), Verdict::Stronger);
    assert_eq!(compare(&Temp, &NotFound), Verdict::Stronger);
    // Weaker, or not comparable: refused.
    assert_eq!(compare(&NotFound, &secure), Verdict::Weaker);
    assert_eq!(compare(&Dane, &secure), Verdict::Weaker);
    assert_eq!(
        compare(&Answer::secure(&["mx.a.test"]), &secure),
        Verdict::Weaker
    );
    assert_eq!(
        compare(&Answer::parse("OK encrypt"), &NotFound),
        Verdict::Weaker,
        "an answer of another shape is not taken as stronger"
    );
}

/// The TLSRPT attributes of an answer (Postfix 3.10): the `name=value` words and the
/// `{ policy_string = ... }` groups, each as a sorted list (theirs writes the policy's `mx`
/// lines first, ours in the policy's order; Postfix reports the set).
fn tlsrpt_parts(answer: &str) -> (Vec<String>, Vec<String>) {
    let mut words = Vec::new();
    let mut strings = Vec::new();
    let mut rest = answer;
    while let Some(open) = rest.find("{ policy_string = ") {
        words.extend(rest[..open].split_whitespace().map(str::to_owned));
        let after = &rest[open + "{ policy_string = ".len()..];
        let close = after.find(" }").unwrap_or(after.len());
        strings.push(after[..close].to_owned());
        rest = after.get(close + 2..).unwrap_or("");
    }
    words.extend(rest.split_whitespace().map(str::to_owned));
    words.retain(|w| w.starts_with("policy_") || w.starts_with("mx_host_pattern="));
    words.sort();
    strings.sort();
    (words, strings)
}

#[test]
fn tlsrpt_attributes_carry_the_policy_postfix_mta_sts_resolver_reports() {
    let Scene { theirs, ours, .. } = &Scene::start(true);
    for key in ["sts-one.test", "sts-many.test", "sts-signed.test"] {
        let their_text = theirs.ask(key).unwrap_or_else(|e| panic!("{e}"));
        let our_text = ask_ours(ours, key);
        eprintln!("{key}\n theirs {their_text:?}\n ours   {our_text:?}");
        let (their_words, their_strings) = tlsrpt_parts(&their_text);
        let (our_words, our_strings) = tlsrpt_parts(&our_text);
        assert!(
            their_words.contains(&"policy_type=sts".to_owned()),
            "{key}: theirs {their_text:?}"
        );
        assert_eq!(
            our_words, their_words,
            "{key}:\n theirs {their_text:?}\n ours   {our_text:?}"
        );
        assert_eq!(
            our_strings, their_strings,
            "{key}:\n theirs {their_text:?}\n ours   {our_text:?}"
        );
    }
}
