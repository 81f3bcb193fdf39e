//! `tlsfallback decide`: JSON Lines decision requests on stdin, answers on stdout (the loop is
//! the embedding crate's [`answer::run`](tlsfallback_engine::answer::run), which the C kit shares).

use std::io;

use clap::Args;
use tlsfallback_engine::answer;

use crate::flags::EngineArgs;

/// `tlsfallback decide`.
#[derive(Debug, Args)]
pub(crate) struct DecideCommand {
    #[command(flatten)]
    pub(crate) engine: EngineArgs,
}

impl DecideCommand {
    /// Answers every request line until the end of stdin; each plugin failure is in its answer
    /// and on stderr.
    ///
    /// # Errors
    ///
    /// The policy file, the engine, or reading and writing the streams.
    pub(crate) fn run(&self) -> anyhow::Result<()> {
        let (policy_file, mut engine) = self.engine.resolve()?;
        let stdin = io::stdin().lock();
        let stdout = io::BufWriter::new(io::stdout().lock());
        answer::run(
            engine.as_mut(),
            &policy_file,
            stdin,
            stdout,
            &mut |failure| {
                eprintln!("tlsfallback: {failure}");
            },
        )?;
        Ok(())
    }
}
