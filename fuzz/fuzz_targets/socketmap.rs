//! AFL++ target: see tlsfallback_host::fuzzing::socketmap_requests.
fn main() {
    afl::fuzz!(|data: &[u8]| tlsfallback_host::fuzzing::socketmap_requests(data));
}
