//! AFL++ target: see tlsfallback_mta::fuzzing::postfix_log.
fn main() {
    afl::fuzz!(|data: &[u8]| tlsfallback_mta::fuzzing::postfix_log(data));
}
