//! AFL++ target: see tlsfallback_mta::fuzzing::decide_lines.
fn main() {
    afl::fuzz!(|data: &[u8]| tlsfallback_mta::fuzzing::decide_lines(data));
}
