use std::io::Read as _;
use std::net::TcpStream;
use std::time::Duration;

use tlsfallback_mta::postfix::DaemonOptions;

use crate::postfix_daemon::{Daemon, MODERN, netstring, reply};

/// `count` connections to the daemon that never send a request.
fn idle_connections(daemon: &Daemon, count: usize) -> Vec<TcpStream> {
    (0..count)
        .map(|_| TcpStream::connect(("127.0.0.1", daemon.port)).expect("a connection"))
        .collect()
}

#[test]
fn idle_local_connections_cannot_lock_postfix_out() {
    // Any local user can connect: as many idle connections as the daemon serves at once must
    // not keep Postfix's lookups out.
    let state = tempfile::tempdir().unwrap();
    let daemon = Daemon::start(&state.path().join("h.sqlite3"), None, &[]);
    let limit = DaemonOptions::default().max_connections;
    let mut idle = idle_connections(&daemon, limit);
    for round in 0..3 {
        assert_eq!(
            daemon.ask(&netstring(&format!("tlsfallback round{round}.example"))),
            reply(MODERN),
            "a lookup with {limit} idle connections open"
        );
    }
    // The connection idle longest made room, and the client sees it closed.
    idle[0]
        .set_read_timeout(Some(Duration::from_secs(60)))
        .unwrap();
    assert_eq!(idle[0].read(&mut [0; 16]).unwrap(), 0);
    daemon.wait_for(&["warning:", "connections open (the limit)", "idle longest"]);
}

#[test]
fn descriptor_exhaustion_cannot_lock_postfix_out() {
    // A daemon under a low descriptor limit: connections beyond what its descriptors allow must
    // neither make accept fail nor starve SQLite of descriptors.
    let state = tempfile::tempdir().unwrap();
    let daemon = Daemon::start_under(
        &["prlimit", "--nofile=64:64", "--"],
        &state.path().join("h.sqlite3"),
        None,
        &[],
    );
    daemon.wait_for(&["warning:", "descriptor limit (64"]);
    let _idle = idle_connections(&daemon, 200);
    for round in 0..3 {
        // While the idle connections are still being taken in, a lookup may meet a moment with
        // no descriptor left: it is answered TEMP (Postfix retries), never left hanging, and a
        // retry is answered.
        let request = netstring(&format!("tlsfallback round{round}.example"));
        let mut answers = Vec::new();
        for _ in 0..20 {
            let answer = daemon.ask(&request);
            let done = answer == reply(MODERN);
            answers.push(answer);
            if done {
                break;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        assert_eq!(
            answers.last(),
            Some(&reply(MODERN)),
            "a lookup with 200 idle connections open under 64 descriptors: {answers:?}"
        );
        assert!(
            answers[..answers.len() - 1]
                .iter()
                .all(|a| a.is_empty() || a.contains("TEMP")),
            "{answers:?}"
        );
    }
}
