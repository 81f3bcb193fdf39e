//! AFL++ target: see tlsfallback_host::fuzzing::postfix_log.
fn main() {
    afl::fuzz!(|data: &[u8]| tlsfallback_host::fuzzing::postfix_log(data));
}
