//! AFL++ target: see tlsfallback_host::fuzzing::mta_sts_txt.
fn main() {
    afl::fuzz!(|data: &[u8]| tlsfallback_host::fuzzing::mta_sts_txt(data));
}
