//! AFL++ target: see tlsfallback_mta::fuzzing::smtp_replies.
fn main() {
    afl::fuzz!(|data: &[u8]| tlsfallback_mta::fuzzing::smtp_replies(data));
}
