//! AFL++ target: see tlsfallback_mta::fuzzing::tlsrpt_record.
fn main() {
    afl::fuzz!(|data: &[u8]| tlsfallback_mta::fuzzing::tlsrpt_record(data));
}
