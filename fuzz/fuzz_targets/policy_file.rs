//! AFL++ target: see tlsfallback_host::fuzzing::policy_file.
fn main() {
    afl::fuzz!(|data: &[u8]| tlsfallback_host::fuzzing::policy_file(data));
}
