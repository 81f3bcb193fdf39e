use std::net::{SocketAddr, UdpSocket};
use std::time::Duration;

use hickory_proto::op::{Message, MessageType, Query};
use hickory_proto::rr::rdata::MX;
use hickory_proto::rr::{Name, RData, Record, RecordType};
use tlsfallback_mta::dns::{DnsSettings, DnssecMode, MxRecord, Resolver};

/// How a fake server bends an answer before sending it.
type Forge = fn(&Message, &mut Message);

/// A fake DNS server on 127.0.0.1 that answers the first query with one answer per entry of
/// `forgeries` (each the genuine answer, MX `exchange`, bent by the forgery), in order.
fn dns_server(exchange: &'static str, forgeries: Vec<Forge>) -> SocketAddr {
    let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
    let address = socket.local_addr().unwrap();
    std::thread::spawn(move || {
        let mut buffer = [0u8; 1500];
        let Ok((len, from)) = socket.recv_from(&mut buffer) else {
            return;
        };
        let query = Message::from_vec(&buffer[..len]).unwrap();
        for forge in forgeries {
            let mut response = Message::new(
                query.metadata.id,
                MessageType::Response,
                query.metadata.op_code,
            );
            response.add_query(query.queries[0].clone());
            response.add_answer(Record::from_rdata(
                query.queries[0].name().clone(),
                60,
                RData::MX(MX::new(10, Name::from_ascii(exchange).unwrap())),
            ));
            forge(&query, &mut response);
            let _ = socket.send_to(&response.to_vec().unwrap(), from);
        }
    });
    address
}

fn genuine(_: &Message, _: &mut Message) {}

fn wrong_id(query: &Message, response: &mut Message) {
    response.metadata.id = query.metadata.id.wrapping_add(1);
    response.answers[0] = Record::from_rdata(
        query.queries[0].name().clone(),
        60,
        RData::MX(MX::new(10, Name::from_ascii("attacker.test.").unwrap())),
    );
}

fn another_question(query: &Message, response: &mut Message) {
    let other = Name::from_ascii("other.test.").unwrap();
    response.queries = vec![Query::query(other.clone(), RecordType::MX)];
    response.answers = vec![Record::from_rdata(
        other,
        60,
        RData::MX(MX::new(10, Name::from_ascii("attacker.test.").unwrap())),
    )];
    let _ = query;
}

fn another_type(_: &Message, response: &mut Message) {
    let name = response.queries[0].name().clone();
    response.queries = vec![Query::query(name, RecordType::A)];
}

fn resolver(server: SocketAddr, timeout: Duration) -> Resolver {
    Resolver::new(DnsSettings {
        server: Some(server),
        dnssec: DnssecMode::Off,
        timeout,
        ..DnsSettings::default()
    })
    .unwrap()
}

fn exchanges(answer: &tlsfallback_mta::dns::Answer<MxRecord>) -> Vec<String> {
    answer
        .records
        .iter()
        .map(|mx| mx.exchange.clone())
        .collect()
}

#[test]
fn mx_answer_with_wrong_id_is_ignored() {
    // The forged answer comes first; the genuine one after it is what counts.
    let server = dns_server("mx.example.test.", vec![wrong_id, genuine]);
    let answer = resolver(server, Duration::from_secs(5))
        .mx("example.test")
        .unwrap();
    assert_eq!(exchanges(&answer), ["mx.example.test"]);
}

#[test]
fn mx_answer_for_another_question_is_refused() {
    for forge in [another_question as Forge, another_type, wrong_id] {
        let server = dns_server("mx.example.test.", vec![forge]);
        let result = resolver(server, Duration::from_millis(500)).mx("example.test");
        // Never the forged exchange: an error (nothing genuine came), or no record at all.
        match result {
            Err(error) => assert!(!error.to_string().contains("attacker"), "{error}"),
            Ok(answer) => assert!(
                !exchanges(&answer).iter().any(|e| e.contains("attacker")),
                "{answer:?}"
            ),
        }
    }
}

#[test]
fn the_question_name_matches_without_regard_to_case() {
    let server = dns_server("mx.example.test.", vec![genuine]);
    let answer = resolver(server, Duration::from_secs(5))
        .mx("Example.TEST")
        .unwrap();
    assert_eq!(exchanges(&answer), ["mx.example.test"]);
}
