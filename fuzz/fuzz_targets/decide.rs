//! AFL++ target: see tlsfallback_host::fuzzing::decide_lines.
fn main() {
    afl::fuzz!(|data: &[u8]| tlsfallback_host::fuzzing::decide_lines(data));
}
