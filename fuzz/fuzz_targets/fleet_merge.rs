//! AFL++ target: see tlsfallback_mta::fuzzing::fleet_merge.
fn main() {
    afl::fuzz!(|data: &[u8]| tlsfallback_mta::fuzzing::fleet_merge(data));
}
