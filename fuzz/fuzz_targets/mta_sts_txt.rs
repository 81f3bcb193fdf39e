//! AFL++ target: see tlsfallback_mta::fuzzing::mta_sts_txt.
fn main() {
    afl::fuzz!(|data: &[u8]| tlsfallback_mta::fuzzing::mta_sts_txt(data));
}
