//! AFL++ target: see tlsfallback_mta::fuzzing::socketmap_requests.
fn main() {
    afl::fuzz!(|data: &[u8]| tlsfallback_mta::fuzzing::socketmap_requests(data));
}
