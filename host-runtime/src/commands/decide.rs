//! `tlsfallback decide`: JSON Lines in, JSON Lines out, one response per request.

use std::io::{BufRead, Write};

use anyhow::Context as _;

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
    input: impl BufRead,
    mut output: impl Write,
) -> anyhow::Result<DecideStats> {
    let mut stats = DecideStats::default();
    let mut line = String::new();
    let mut input = input;
    let mut line_number = 0u64;
    loop {
        line.clear();
        if input.read_line(&mut line).context("reading requests")? == 0 {
            break;
        }
        line_number += 1;
        if line.trim().is_empty() {
            continue;
        }
        match answer(engine, policy_file, &line) {
            Ok(response) => {
                output.write_all(response.as_bytes())?;
                stats.answered += 1;
            }
            Err(error) => {
                let error = ErrorResponse {
                    line: line_number,
                    error: format!("{error:#}"),
                };
                serde_json::to_writer(&mut output, &error)?;
                stats.rejected += 1;
            }
        }
        output.write_all(b"\n").context("writing responses")?;
    }
    output.flush().context("writing responses")?;
    Ok(stats)
}

/// Answers one request line with a response line (without the newline).
///
/// # Errors
///
/// When the line is not a valid request, or the engine fails.
pub fn answer(
    engine: &mut dyn DecisionEngine,
    policy_file: &PolicyFile,
    line: &str,
) -> anyhow::Result<String> {
    let request = Request::parse(line)?;
    let last = request.last.as_ref().map(|l| l.to_report()).transpose()?;
    let history = request.history_bytes()?;
    let policy = request.policy.apply(policy_file.policy_for(&request.peer));
    let decision = engine.decide(
        &policy,
        &request.context,
        history.as_deref(),
        last.as_ref(),
        request.now,
    )?;
    Ok(serde_json::to_string(&Response::new(
        &request.peer,
        &decision,
    ))?)
}
