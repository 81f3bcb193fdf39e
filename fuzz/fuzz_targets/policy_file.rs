//! AFL++ target: see tlsfallback_mta::fuzzing::policy_file.
fn main() {
    afl::fuzz!(|data: &[u8]| tlsfallback_mta::fuzzing::policy_file(data));
}
