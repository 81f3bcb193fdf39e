//! MTA-STS against a real HTTPS server on loopback (rig::https::PolicyServer, its own test CA):
//! the fetch's refusals, each named after what it stops, and the resolver over that server with
//! a scripted TXT record and a real SQLite cache.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use policy_core::MtaSts;
use tlsfallback_mta::mta_sts::{
    FetchError, FetchSettings, Fetcher, HttpsNetwork, Mode, MxVerdict, PolicyCache, PolicyError,
    PolicySource, StsResolver, fetch_policy,
};
use tlsfallback_testkit::rig::https::{Certificate, PolicyServer, Response};

const LOOPBACK: [IpAddr; 1] = [IpAddr::V4(Ipv4Addr::LOCALHOST)];
const ENFORCE: &str = "version: STSv1\r\nmode: enforce\r\nmx: mx.example.net\r\nmx: *.backup.example.net\r\nmax_age: 86400\r\n";

fn settings(server: &PolicyServer) -> FetchSettings {
    FetchSettings {
        port: server.port(),
        timeout: Duration::from_secs(20),
        ca_file: Some(server.ca_file().to_owned()),
    }
}

fn serve(domain: &str, response: Response) -> PolicyServer {
    let server = PolicyServer::start().unwrap();
    server.set(domain, response);
    server
}

fn fetch(server: &PolicyServer, domain: &str) -> Result<Mode, FetchError> {
    fetch_policy(domain, &LOOPBACK, &settings(server)).map(|fetched| fetched.policy.mode)
}

#[test]
fn a_shared_fetcher_connects_only_to_the_addresses_each_fetch_was_given() {
    // One client serves every fetch of a resolver: a connection it kept (or a name it resolved)
    // for one fetch must not carry the next, whose DNS answer may say otherwise.
    let server = serve("example.net", Response::policy(ENFORCE));
    let fetcher = Fetcher::new(settings(&server));
    assert!(fetcher.fetch("example.net", &LOOPBACK).is_ok());
    let elsewhere = [IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2))];
    let error = fetcher.fetch("example.net", &elsewhere).unwrap_err();
    assert!(
        matches!(error, FetchError::Transport { .. }),
        "nothing listens at 127.0.0.2: {error:?}"
    );
    assert!(fetcher.fetch("example.net", &LOOPBACK).is_ok());
    assert_eq!(server.requests("example.net"), 2);
}

#[test]
fn enforce_policy_is_fetched_over_validated_tls() {
    let server = serve("example.net", Response::policy(ENFORCE));
    let fetched = fetch_policy("example.net", &LOOPBACK, &settings(&server)).unwrap();
    assert_eq!(fetched.policy.mode, Mode::Enforce);
    assert_eq!(fetched.policy.max_age, 86400);
    assert!(fetched.policy.matches_mx("mx1.backup.example.net"));
    assert_eq!(fetched.policy.text(), ENFORCE);
    // charset parameters are fine.
    let mut response = Response::policy(ENFORCE);
    response.content_type = Some("text/plain; charset=utf-8".to_owned());
    server.set("example.net", response);
    assert_eq!(fetch(&server, "example.net").unwrap(), Mode::Enforce);
}

#[test]
fn redirect_to_attacker_host_is_not_followed() {
    let server = serve(
        "example.net",
        Response::redirect("https://mta-sts.attacker.example/.well-known/mta-sts.txt"),
    );
    server.set("attacker.example", Response::policy(ENFORCE));
    let error = fetch(&server, "example.net").unwrap_err();
    assert!(
        matches!(&error, FetchError::Redirect { status: 302, location, .. } if location.contains("attacker.example")),
        "{error}"
    );
    assert_eq!(error.result_type(), "sts-policy-fetch-error");
    assert_eq!(server.requests("attacker.example"), 0);
}

#[test]
fn missing_policy_404_is_a_fetch_error_with_its_status() {
    let server = serve("example.net", Response::status(404));
    let error = fetch(&server, "example.net").unwrap_err();
    assert!(
        matches!(error, FetchError::Status { status: 404, .. }),
        "{error}"
    );
    assert!(error.detail().contains("404"));
    assert_eq!(error.result_type(), "sts-policy-fetch-error");
}

#[test]
fn html_page_served_as_200_is_not_read_as_a_policy() {
    let mut response = Response::policy(ENFORCE);
    response.content_type = Some("text/html".to_owned());
    let server = serve("example.net", response);
    let error = fetch(&server, "example.net").unwrap_err();
    assert!(matches!(error, FetchError::ContentType { .. }), "{error}");
    assert!(error.detail().contains("text/html"));
    let mut response = Response::policy(ENFORCE);
    response.content_type = None;
    server.set("example.net", response);
    assert!(matches!(
        fetch(&server, "example.net"),
        Err(FetchError::ContentType { .. })
    ));
}

#[test]
fn oversize_policy_is_refused_without_reading_it_all() {
    let mut huge = ENFORCE.to_owned();
    huge.push_str(
        &"x-padding: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\n".repeat(40_000),
    );
    let server = serve("example.net", Response::policy(&huge));
    let error = fetch(&server, "example.net").unwrap_err();
    assert!(matches!(error, FetchError::TooLarge { .. }), "{error}");
    assert_eq!(error.result_type(), "sts-policy-fetch-error");
    // Without a Content-Length the read itself stops at the cap.
    let mut response = Response::policy(&huge);
    response.content_length = false;
    server.set("example.net", response);
    assert!(matches!(
        fetch(&server, "example.net"),
        Err(FetchError::TooLarge { .. })
    ));
    // Exactly at the cap is not over it (and then fails only as a policy if it is not one).
    let mut exact = ENFORCE.to_owned();
    exact.push_str("x-pad: ");
    exact.push_str(&"a".repeat(tlsfallback_mta::mta_sts::MAX_POLICY_BYTES - exact.len() - 1));
    exact.push('\n');
    assert_eq!(exact.len(), tlsfallback_mta::mta_sts::MAX_POLICY_BYTES);
    let mut response = Response::policy(&exact);
    response.content_length = false;
    server.set("example.net", response);
    assert_eq!(fetch(&server, "example.net").unwrap(), Mode::Enforce);
}

#[test]
fn certificate_for_another_name_is_webpki_invalid() {
    let server = serve("example.net", Response::policy(ENFORCE));
    server.set_certificate("example.net", Certificate::OtherName);
    let error = fetch(&server, "example.net").unwrap_err();
    assert!(matches!(error, FetchError::Certificate { .. }), "{error}");
    assert_eq!(error.result_type(), "sts-webpki-invalid");
    assert!(error.detail().contains("hostname mismatch"), "{error}");
}

#[test]
fn expired_certificate_is_webpki_invalid() {
    let server = serve("example.net", Response::policy(ENFORCE));
    server.set_certificate("example.net", Certificate::Expired);
    let error = fetch(&server, "example.net").unwrap_err();
    assert_eq!(error.result_type(), "sts-webpki-invalid", "{error}");
    assert!(error.detail().contains("expired"), "{error}");
}

#[test]
fn certificate_from_an_untrusted_ca_is_webpki_invalid() {
    // The system roots do not include the test CA: a self-made CA is what an attacker has.
    let server = serve("example.net", Response::policy(ENFORCE));
    let untrusted = FetchSettings {
        ca_file: None,
        ..settings(&server)
    };
    let error = fetch_policy("example.net", &LOOPBACK, &untrusted).unwrap_err();
    assert_eq!(error.result_type(), "sts-webpki-invalid", "{error}");
    assert_eq!(server.requests("example.net"), 0);
}

#[test]
fn non_utf8_policy_is_policy_invalid() {
    let mut response = Response::policy(ENFORCE);
    response.body.extend_from_slice(b"x-ext: \xc3\x28\n");
    let server = serve("example.net", response);
    let error = fetch(&server, "example.net").unwrap_err();
    assert!(
        matches!(
            error,
            FetchError::Invalid {
                error: PolicyError::NotUtf8 { .. },
                ..
            }
        ),
        "{error}"
    );
    assert_eq!(error.result_type(), "sts-policy-invalid");
}

#[test]
fn unknown_mode_bad_max_age_and_bad_wildcards_are_policy_invalid() {
    let server = PolicyServer::start().unwrap();
    for body in [
        "version: STSv1\nmode: reject\nmx: mx.example.net\nmax_age: 86400\n",
        "version: STSv1\nmode: enforce\nmx: mx.example.net\nmax_age: -1\n",
        "version: STSv1\nmode: enforce\nmx: mx*.example.net\nmax_age: 86400\n",
        "version: STSv1\nmode: enforce\nmx: 192.0.2.25\nmax_age: 86400\n",
    ] {
        server.set("example.net", Response::policy(body));
        let error = fetch(&server, "example.net").unwrap_err();
        assert_eq!(error.result_type(), "sts-policy-invalid", "{body}: {error}");
        assert!(error.detail().contains("line "), "{error}");
    }
}

#[test]
fn unreachable_policy_host_is_a_fetch_error_not_a_hang() {
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = closed.local_addr().unwrap().port();
    drop(closed);
    let settings = FetchSettings {
        port,
        timeout: Duration::from_secs(5),
        ca_file: None,
    };
    let error = fetch_policy("example.net", &LOOPBACK, &settings).unwrap_err();
    assert!(matches!(error, FetchError::Transport { .. }), "{error}");
    let error = fetch_policy("example.net", &[], &settings).unwrap_err();
    assert!(matches!(error, FetchError::NoAddress { .. }), "{error}");
}

#[test]
fn domain_with_userinfo_cannot_move_the_fetch_to_another_host() {
    // `https://mta-sts.user@attacker.example/…` would be a request to attacker.example.
    let server = serve("attacker.example", Response::policy(ENFORCE));
    for domain in [
        "user@attacker.example",
        "example.net/@attacker.example",
        "example.net#x",
        "127.0.0.1",
    ] {
        let error = fetch(&server, domain).unwrap_err();
        assert!(
            matches!(error, FetchError::BadDomain { .. }),
            "{domain}: {error}"
        );
    }
    assert_eq!(server.requests("attacker.example"), 0);
}

#[test]
fn policy_server_on_an_address_of_its_own_serves_only_there() {
    // A client that always fetches from port 443 of the address DNS gives needs the server on
    // an address of its own; 127.0.0.0/8 is all loopback.
    let own = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 61));
    let server = PolicyServer::start_on((own, 0).into()).unwrap();
    server.set("example.net", Response::policy(ENFORCE));
    assert_eq!(server.address().ip(), own);
    let fetched = fetch_policy("example.net", &[own], &settings(&server)).unwrap();
    assert_eq!(fetched.policy.mode, Mode::Enforce);
    let error = fetch_policy("example.net", &LOOPBACK, &settings(&server)).unwrap_err();
    assert!(matches!(error, FetchError::Transport { .. }), "{error}");
}

/// The resolver over the server: TXT records scripted per name, `mta-sts.*` on loopback.
struct Rig {
    server: PolicyServer,
    txt: Arc<Mutex<HashMap<String, Vec<Vec<u8>>>>>,
}

impl Rig {
    fn new() -> Self {
        Self {
            server: PolicyServer::start().unwrap(),
            txt: Arc::default(),
        }
    }

    fn publish(&self, domain: &str, id: &str, response: Response) {
        self.txt.lock().unwrap().insert(
            format!("_mta-sts.{domain}"),
            vec![format!("v=STSv1; id={id}").into_bytes()],
        );
        self.server.set(domain, response);
    }

    fn resolver(&self, cache: PolicyCache) -> StsResolver<HttpsNetwork> {
        let txt = Arc::clone(&self.txt);
        let network = HttpsNetwork {
            txt: Box::new(move |name| Ok(txt.lock().unwrap().get(name).cloned())),
            addresses: Box::new(|_| Ok(LOOPBACK.to_vec())),
            fetcher: Fetcher::new(settings(&self.server)),
        };
        // A fixed jitter: refresh at half of max_age.
        StsResolver::with_jitter(network, cache, Box::new(|| 0))
    }
}

#[test]
fn enforce_testing_and_none_policies_reach_the_engine_as_such() {
    let rig = Rig::new();
    let testing = ENFORCE.replace("enforce", "testing");
    rig.publish("enforce.example", "e1", Response::policy(ENFORCE));
    rig.publish("testing.example", "t1", Response::policy(&testing));
    rig.publish(
        "none.example",
        "n1",
        Response::policy("version: STSv1\nmode: none\nmax_age: 86400\n"),
    );
    let resolver = rig.resolver(PolicyCache::in_memory().unwrap());
    let enforce = resolver.resolve("enforce.example", 1000);
    assert_eq!(enforce.state, MtaSts::Enforce);
    assert_eq!(enforce.source, PolicySource::Fetched);
    assert_eq!(enforce.policy_id.as_deref(), Some("e1"));
    assert_eq!(enforce.for_mx("mx.example.net"), MxVerdict::Enforce);
    assert_eq!(enforce.for_mx("mx.attacker.example"), MxVerdict::NotAllowed);
    let testing = resolver.resolve("testing.example", 1000);
    assert_eq!(testing.state, MtaSts::Testing);
    assert_eq!(
        testing.for_mx("mx.attacker.example"),
        MxVerdict::Testing { mx_matches: false }
    );
    let none = resolver.resolve("none.example", 1000);
    assert_eq!(none.state, MtaSts::None);
    assert_eq!(none.for_mx("anything.example"), MxVerdict::NoPolicy);
    let nothing = resolver.resolve("nothing.example", 1000);
    assert_eq!(
        (nothing.state, nothing.source),
        (MtaSts::None, PolicySource::None)
    );
}

#[test]
fn invalid_policy_without_cache_is_fetch_failed_and_reported_invalid() {
    let rig = Rig::new();
    rig.publish(
        "example.net",
        "a",
        Response::policy("version: STSv1\nmode: enforce\nmax_age: 86400\n"),
    );
    let result = rig
        .resolver(PolicyCache::in_memory().unwrap())
        .resolve("example.net", 0);
    assert_eq!(result.state, MtaSts::FetchFailed);
    let failure = result.failure.unwrap();
    assert_eq!(failure.result_type, "sts-policy-invalid");
    assert!(failure.detail.contains("no `mx`"), "{}", failure.detail);
}

#[test]
fn bad_certificate_404_wrong_type_redirect_and_oversize_each_fail_the_fetch() {
    let rig = Rig::new();
    let mut html = Response::policy(ENFORCE);
    html.content_type = Some("text/html".to_owned());
    let cases = [
        (
            "cert.example",
            Response::policy(ENFORCE),
            "sts-webpki-invalid",
        ),
        (
            "missing.example",
            Response::status(404),
            "sts-policy-fetch-error",
        ),
        ("html.example", html, "sts-policy-fetch-error"),
        (
            "redirect.example",
            Response::redirect("https://mta-sts.attacker.example/"),
            "sts-policy-fetch-error",
        ),
        (
            "big.example",
            Response::policy(&"x".repeat(100_000)),
            "sts-policy-fetch-error",
        ),
    ];
    for (domain, response, _) in &cases {
        rig.publish(domain, "a", response.clone());
    }
    rig.server
        .set_certificate("cert.example", Certificate::OtherName);
    let resolver = rig.resolver(PolicyCache::in_memory().unwrap());
    for (domain, _, result_type) in cases {
        let result = resolver.resolve(domain, 0);
        assert_eq!(result.state, MtaSts::FetchFailed, "{domain}");
        assert_eq!(result.failure.unwrap().result_type, result_type, "{domain}");
        assert!(result.policy.is_none());
    }
}

#[test]
fn txt_id_change_refetches_and_same_id_does_not() {
    let rig = Rig::new();
    rig.publish("example.net", "a", Response::policy(ENFORCE));
    let resolver = rig.resolver(PolicyCache::in_memory().unwrap());
    resolver.resolve("example.net", 0);
    assert_eq!(
        resolver.resolve("example.net", 100).source,
        PolicySource::Cached
    );
    assert_eq!(rig.server.requests("example.net"), 1);
    let testing = ENFORCE.replace("enforce", "testing");
    rig.publish("example.net", "b", Response::policy(&testing));
    let result = resolver.resolve("example.net", 200);
    assert_eq!(result.source, PolicySource::Fetched);
    assert_eq!(result.state, MtaSts::Testing);
    assert_eq!(result.policy_id.as_deref(), Some("b"));
    assert_eq!(rig.server.requests("example.net"), 2);
}

#[test]
fn cached_enforce_policy_survives_a_blocked_refresh() {
    let rig = Rig::new();
    rig.publish("example.net", "a", Response::policy(ENFORCE));
    let dir = tempfile::tempdir().unwrap();
    let database = dir.path().join("peers.sqlite3");
    rig.resolver(PolicyCache::open(&database).unwrap())
        .resolve("example.net", 0);
    // The attacker now answers the policy host with its own certificate, under a new id, and
    // the host has restarted: the cached policy in the database still applies.
    rig.publish(
        "example.net",
        "b",
        Response::policy(&ENFORCE.replace("enforce", "none")),
    );
    rig.server
        .set_certificate("example.net", Certificate::OtherName);
    let resolver = rig.resolver(PolicyCache::open(&database).unwrap());
    let result = resolver.resolve("example.net", 10_000);
    assert_eq!(result.state, MtaSts::Enforce);
    assert_eq!(result.source, PolicySource::CachedAfterFailedRefresh);
    assert_eq!(result.policy_id.as_deref(), Some("a"));
    assert_eq!(result.for_mx("mx.attacker.example"), MxVerdict::NotAllowed);
    assert_eq!(result.failure.unwrap().result_type, "sts-webpki-invalid");
    // The refresh time (half of max_age) passed with the same id and a 404: still enforced.
    rig.publish("example.net", "a", Response::status(404));
    rig.server
        .set_certificate("example.net", Certificate::Valid);
    let result = resolver.resolve("example.net", 50_000);
    assert_eq!(
        (result.state, result.source),
        (MtaSts::Enforce, PolicySource::CachedAfterFailedRefresh)
    );
    // Expired, and the fetch still fails: the failure is reported, nothing is enforced.
    let result = resolver.resolve("example.net", 86_400);
    assert_eq!(result.state, MtaSts::FetchFailed);
    assert_eq!(
        result.failure.unwrap().result_type,
        "sts-policy-fetch-error"
    );
}

#[test]
fn stripped_txt_record_does_not_switch_off_a_cached_policy() {
    let rig = Rig::new();
    rig.publish("example.net", "a", Response::policy(ENFORCE));
    let resolver = rig.resolver(PolicyCache::in_memory().unwrap());
    resolver.resolve("example.net", 0);
    rig.txt.lock().unwrap().clear();
    let result = resolver.resolve("example.net", 10);
    assert_eq!(
        (result.state, result.source),
        (MtaSts::Enforce, PolicySource::Cached)
    );
    rig.txt.lock().unwrap().insert(
        "_mta-sts.example.net".to_owned(),
        vec![b"v=STSv1; id=a".to_vec(), b"v=STSv1; id=evil".to_vec()],
    );
    let result = resolver.resolve("example.net", 20);
    assert_eq!(result.state, MtaSts::Enforce);
    assert!(
        result
            .failure
            .unwrap()
            .detail
            .contains("several v=STSv1 records")
    );
    assert_eq!(rig.server.requests("example.net"), 1);
}
