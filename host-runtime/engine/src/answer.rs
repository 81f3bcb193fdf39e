//! `tlsfallback decide`: JSON Lines in, JSON Lines out, one response per request.

use std::borrow::Cow;
use std::io::{BufRead, Write};

use crate::config::PolicyFile;
use crate::decider::{DecideError, Decided, DecisionEngine};
use crate::plugin::FailureEvent;
use crate::wire::{ErrorResponse, Request, RequestError, Response};

/// Counts of what a `decide` run did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DecideStats {
    /// Requests answered with a decision.
    pub answered: u64,
    /// Requests answered with an error line.
    pub rejected: u64,
}

/// The longest request line read, newline excluded: 1 MiB.
///
/// Every key of a request is bounded (a peer name, a history blob of at most 64 bytes, a dozen
/// fixed keys), so the longest sensible request is well under 1 KiB. The limit is there to bound
/// what one line can make the process hold, not to judge requests, so it is set a thousand times
/// above that; a longer line is answered with an error and skipped without being buffered.
pub const MAX_LINE_LEN: usize = 1 << 20;

/// Answers every request line of `input` on `output`. A line that cannot be answered gets an
/// error object naming its line number, and the stream goes on; blank lines are skipped.
///
/// The answers are flushed whenever no more input is waiting, so a caller that writes one
/// request and waits for its answer (an MTA running `decide` as a coprocess) gets it at once,
/// while piped files are still answered in large writes.
///
/// # Errors
///
/// Only when reading the input or writing the output fails.
///
/// Each plugin failure goes into its response's `plugin_failure`, and to `report` as well (the
/// CLI writes it on stderr, naming the component).
pub fn run(
    engine: &mut dyn DecisionEngine,
    policy_file: &PolicyFile,
    input: impl BufRead,
    mut output: impl Write,
    report: &mut dyn FnMut(&FailureEvent),
) -> Result<DecideStats, Failure> {
    let mut stats = DecideStats::default();
    let mut buffers = Buffers::default();
    let mut lines = LineReader::new(input);
    let mut line = Vec::new();
    let mut line_number = 0u64;
    loop {
        let read = lines.read_line(&mut line, || output.flush().map_err(writing))?;
        if read == LineRead::End {
            break;
        }
        line_number += 1;
        let result = if read == LineRead::TooLong {
            Err(Failure::TooLong)
        } else if line.trim_ascii().is_empty() {
            continue;
        } else {
            answer(engine, policy_file, &line, &mut buffers, &mut output)
        };
        match result {
            Ok(failure) => {
                stats.answered += 1;
                if let Some(failure) = failure {
                    report(&failure);
                }
            }
            Err(failure) if failure.stops_the_run() => return Err(failure),
            Err(failure) => {
                let error = ErrorResponse {
                    line: line_number,
                    error: error_text(&failure),
                };
                serde_json::to_writer(&mut output, &error).map_err(writing_json)?;
                stats.rejected += 1;
            }
        }
        output.write_all(b"\n").map_err(writing)?;
    }
    output.flush().map_err(writing)?;
    Ok(stats)
}

/// What [`LineReader::read_line`] found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum LineRead {
    /// A line (its newline, if it had one, included).
    Line,
    /// A line longer than [`MAX_LINE_LEN`], consumed up to its newline but not kept.
    TooLong,
    /// The end of the input.
    End,
}

/// Splits a byte stream into lines of at most [`MAX_LINE_LEN`] bytes, knowing when its input's
/// buffer is empty (the next read would wait).
struct LineReader<R> {
    input: R,
    /// The bytes `input` still holds after the last `consume`. `fill_buf` returns everything
    /// buffered, so this is exact; `BufRead` has no other way to ask without reading.
    buffered: usize,
}

impl<R: BufRead> LineReader<R> {
    fn new(input: R) -> Self {
        Self { input, buffered: 0 }
    }

    /// Reads the next line into `line` (cleared first), calling `before_waiting` whenever the
    /// input's buffer is empty, before reading more.
    fn read_line(
        &mut self,
        line: &mut Vec<u8>,
        mut before_waiting: impl FnMut() -> Result<(), Failure>,
    ) -> Result<LineRead, Failure> {
        line.clear();
        let mut too_long = false;
        loop {
            if self.buffered == 0 {
                before_waiting()?;
            }
            let available = match self.input.fill_buf() {
                Ok(available) => available,
                Err(error) if error.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(cause) => {
                    return Err(Failure::Io {
                        doing: "reading requests",
                        cause,
                    });
                }
            };
            if available.is_empty() {
                self.buffered = 0;
                return Ok(match (too_long, line.is_empty()) {
                    (true, _) => LineRead::TooLong,
                    (false, true) => LineRead::End,
                    (false, false) => LineRead::Line,
                });
            }
            let newline = memchr::memchr(b'\n', available);
            let used = newline.map_or(available.len(), |at| at + 1);
            let content = newline.unwrap_or(available.len());
            if !too_long {
                if line.len() + content > MAX_LINE_LEN {
                    too_long = true;
                    line.clear();
                } else {
                    line.extend_from_slice(&available[..used]);
                }
            }
            self.buffered = available.len() - used;
            self.input.consume(used);
            if newline.is_some() {
                return Ok(if too_long {
                    LineRead::TooLong
                } else {
                    LineRead::Line
                });
            }
        }
    }
}

/// Scratch space reused from one line to the next.
#[derive(Debug, Default)]
pub struct Buffers {
    history: Vec<u8>,
    history_text: String,
}

/// Why a line got no response.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Failure {
    /// The request was bad: answered with an error line.
    #[error(transparent)]
    Request(#[from] RequestError),
    /// The line is longer than [`MAX_LINE_LEN`]: answered with an error line.
    #[error("line longer than {MAX_LINE_LEN} bytes (the longest request line read): skipped")]
    TooLong,
    /// The engine failed: answered with an error line.
    #[error(transparent)]
    Engine(#[from] DecideError),
    /// Reading the requests or writing the response failed: the run stops.
    #[error("{doing}: {cause}")]
    Io {
        /// Reading requests, or writing responses.
        doing: &'static str,
        /// Why.
        cause: std::io::Error,
    },
}

impl Failure {
    /// Whether the run stops (an I/O failure) rather than answering the line with an error.
    #[must_use]
    pub const fn stops_the_run(&self) -> bool {
        matches!(self, Self::Io { .. })
    }
}

fn writing(cause: std::io::Error) -> Failure {
    Failure::Io {
        doing: "writing responses",
        cause,
    }
}

fn writing_json(error: serde_json::Error) -> Failure {
    writing(std::io::Error::from(error))
}

/// Answers one request line, writing the response (without the newline) to `output`; returns
/// the plugin failure behind the decision, if any (it is in the response too).
///
/// # Errors
///
/// [`Failure::Request`] when the line is not a valid request, [`Failure::Engine`] when the engine
/// fails (nothing was written then); [`Failure::Io`] when writing fails.
pub fn answer(
    engine: &mut dyn DecisionEngine,
    policy_file: &PolicyFile,
    line: &[u8],
    buffers: &mut Buffers,
    output: &mut impl Write,
) -> Result<Option<FailureEvent>, Failure> {
    let (peer, decided) = decide_line(engine, policy_file, line, &mut buffers.history)?;
    let mut response = Response::new(&peer, &decided.decision, &mut buffers.history_text);
    response.plugin_failure = decided.plugin_failure.as_ref().map(ToString::to_string);
    serde_json::to_writer(output, &response).map_err(writing_json)?;
    Ok(decided.plugin_failure)
}

/// The text of an error line. Each error of this crate says its cause in its own message (none
/// is also given as a `source`, so that a chain printer never repeats it).
#[must_use]
pub fn error_text(failure: &Failure) -> String {
    failure.to_string()
}

/// Parses a request line and decides it, returning the peer (borrowed from the line) and the
/// decision.
fn decide_line<'a>(
    engine: &mut dyn DecisionEngine,
    policy_file: &PolicyFile,
    line: &'a [u8],
    history_buffer: &mut Vec<u8>,
) -> Result<(Cow<'a, str>, Decided), Failure> {
    let request = Request::parse(line)?;
    let last = request.last.as_ref().map(|l| l.to_report()).transpose()?;
    let history = request.history_bytes(history_buffer)?;
    let policy = request.policy.apply(policy_file.policy_for(&request.peer));
    let decided = engine.decide(
        &policy,
        &request.context,
        history,
        last.as_ref(),
        request.now,
    )?;
    Ok((request.peer, decided))
}

#[cfg(test)]
mod tests {
    use std::io::BufReader;

    use super::*;

    /// Every line of `input`, read through a buffer of `capacity` bytes, and how often the
    /// reader would have flushed.
    fn lines_of(input: &[u8], capacity: usize) -> (Vec<(LineRead, Vec<u8>)>, usize) {
        let mut reader = LineReader::new(BufReader::with_capacity(capacity, input));
        let mut flushes = 0;
        let mut out = Vec::new();
        let mut line = Vec::new();
        loop {
            let read = reader
                .read_line(&mut line, || {
                    flushes += 1;
                    Ok(())
                })
                .unwrap();
            if read == LineRead::End {
                return (out, flushes);
            }
            out.push((read, line.clone()));
        }
    }

    #[test]
    fn a_line_over_the_limit_is_skipped_to_its_newline_whatever_the_buffer_size() {
        let mut input = b"first\n".to_vec();
        input.extend(std::iter::repeat_n(b'x', MAX_LINE_LEN + 1));
        input.extend_from_slice(b"\nlast");
        for capacity in [7, 8192, 3 * MAX_LINE_LEN] {
            let (lines, _) = lines_of(&input, capacity);
            assert_eq!(
                lines,
                [
                    (LineRead::Line, b"first\n".to_vec()),
                    (LineRead::TooLong, Vec::new()),
                    (LineRead::Line, b"last".to_vec()),
                ],
                "capacity {capacity}"
            );
        }
        let exactly = [vec![b'y'; MAX_LINE_LEN], b"\n".to_vec()].concat();
        assert_eq!(lines_of(&exactly, 8192).0[0].0, LineRead::Line);
    }

    #[test]
    fn answers_are_flushed_before_each_wait_for_input_and_not_per_line() {
        // 100 short lines in one buffer: one flush before the first read, one before the end.
        let input = b"{}\n".repeat(100);
        let (lines, flushes) = lines_of(&input, 8192);
        assert_eq!(lines.len(), 100);
        assert_eq!(flushes, 2);
    }
}
