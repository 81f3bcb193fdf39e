//! `tlsfallback export-component`: the embedded policy component, for jco, wasmtime-py or a C
//! host.

use std::path::PathBuf;

use clap::Args;

/// `tlsfallback export-component`.
#[derive(Debug, Args)]
pub(crate) struct ExportComponentCommand {
    /// Where to write the component.
    #[arg(value_name = "PATH")]
    pub(crate) output: PathBuf,
}

impl ExportComponentCommand {
    /// Writes the component.
    ///
    /// # Errors
    ///
    /// When the file cannot be written.
    pub(crate) fn run(&self) -> anyhow::Result<()> {
        std::fs::write(
            &self.output,
            tlsfallback_engine::component::EMBEDDED_COMPONENT,
        )
        .map_err(|e| anyhow::anyhow!("writing {}: {e}", self.output.display()))
    }
}
