//! AFL++ target: see tlsfallback_host::fuzzing::smtp_replies.
fn main() {
    afl::fuzz!(|data: &[u8]| tlsfallback_host::fuzzing::smtp_replies(data));
}
