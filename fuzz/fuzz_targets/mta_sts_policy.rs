//! AFL++ target: see tlsfallback_host::fuzzing::mta_sts_policy.
fn main() {
    afl::fuzz!(|data: &[u8]| tlsfallback_host::fuzzing::mta_sts_policy(data));
}
