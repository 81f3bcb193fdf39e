//! AFL++ target: see tlsfallback_mta::fuzzing::history.
fn main() {
    afl::fuzz!(|data: &[u8]| tlsfallback_mta::fuzzing::history(data));
}
