//! AFL++ target: see tlsfallback_host::fuzzing::history.
fn main() {
    afl::fuzz!(|data: &[u8]| tlsfallback_host::fuzzing::history(data));
}
