//! `tlsfallback decide`: JSON Lines in, JSON Lines out, one response per request.

use std::borrow::Cow;
use std::io::{BufRead, Write};

use anyhow::Context as _;

use policy_core::Decision;

use crate::config::PolicyFile;
use crate::engine::DecisionEngine;
use crate::wire::{ErrorResponse, Request, Response};

/// Counts of what a `decide` run did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DecideStats {
    /// Requests answered with a decision.
    pub answered: u64,
    /// Requests answered with an error line.
    pub rejected: u64,
}

/// Answers every request line of `input` on `output`. A line that cannot be answered gets an
/// error object naming its line number, and the stream goes on; blank lines are skipped.
///
/// # Errors
///
/// Only when reading the input or writing the output fails.
pub fn run(
    engine: &mut dyn DecisionEngine,
    policy_file: &PolicyFile,
    mut input: impl BufRead,
    mut output: impl Write,
) -> anyhow::Result<DecideStats> {
    let mut stats = DecideStats::default();
    let mut buffers = Buffers::default();
    let mut line = Vec::new();
    let mut line_number = 0u64;
    loop {
        line.clear();
        if input
            .read_until(b'\n', &mut line)
            .context("reading requests")?
            == 0
        {
            break;
        }
        line_number += 1;
        if line.trim_ascii().is_empty() {
            continue;
        }
        match answer(engine, policy_file, &line, &mut buffers, &mut output) {
            Ok(()) => stats.answered += 1,
            Err(Failure::Request(error)) => {
                let error = ErrorResponse {
                    line: line_number,
                    error: format!("{error:#}"),
                };
                serde_json::to_writer(&mut output, &error).context("writing responses")?;
                stats.rejected += 1;
            }
            Err(Failure::Output(error)) => return Err(error),
        }
        output.write_all(b"\n").context("writing responses")?;
    }
    output.flush().context("writing responses")?;
    Ok(stats)
}

/// Scratch space reused from one line to the next.
#[derive(Debug, Default)]
pub struct Buffers {
    history: Vec<u8>,
    history_text: String,
}

/// Why a line got no response.
#[derive(Debug)]
pub enum Failure {
    /// The request was bad or the engine failed: answered with an error line.
    Request(anyhow::Error),
    /// Writing the response failed: the run stops.
    Output(anyhow::Error),
}

/// Answers one request line, writing the response (without the newline) to `output`.
///
/// # Errors
///
/// [`Failure::Request`] when the line is not a valid request or the engine fails (nothing was
/// written); [`Failure::Output`] when writing fails.
pub fn answer(
    engine: &mut dyn DecisionEngine,
    policy_file: &PolicyFile,
    line: &[u8],
    buffers: &mut Buffers,
    output: &mut impl Write,
) -> Result<(), Failure> {
    let (peer, decision) =
        decide_line(engine, policy_file, line, &mut buffers.history).map_err(Failure::Request)?;
    let mut response = Response::new(&peer, &decision, &mut buffers.history_text);
    response.plugin_failure = engine.take_failure().map(|event| event.to_string());
    serde_json::to_writer(output, &response)
        .context("writing responses")
        .map_err(Failure::Output)
}

/// Parses a request line and decides it, returning the peer (borrowed from the line) and the
/// decision.
fn decide_line<'a>(
    engine: &mut dyn DecisionEngine,
    policy_file: &PolicyFile,
    line: &'a [u8],
    history_buffer: &mut Vec<u8>,
) -> anyhow::Result<(Cow<'a, str>, Decision)> {
    let request = Request::parse(line)?;
    let last = request.last.as_ref().map(|l| l.to_report()).transpose()?;
    let history = request.history_bytes(history_buffer)?;
    let policy = request.policy.apply(policy_file.policy_for(&request.peer));
    let decision = engine.decide(
        &policy,
        &request.context,
        history,
        last.as_ref(),
        request.now,
    )?;
    Ok((request.peer, decision))
}
