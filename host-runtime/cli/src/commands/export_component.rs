//! `tlsfallback export-component`: the embedded policy component, for jco, wasmtime-py or a C
//! host (`--tools`: the playground's tools component).

use std::path::PathBuf;

use clap::Args;

/// `tlsfallback export-component`.
#[derive(Debug, Args)]
pub(crate) struct ExportComponentCommand {
    /// Where to write the component.
    #[arg(value_name = "PATH")]
    pub(crate) output: PathBuf,
    /// Write the tools component instead (the engine plus `tlsfallback:policy/tools`: the
    /// simulator, peer presets and history decoder the playground runs).
    #[arg(long)]
    pub(crate) tools: bool,
}

impl ExportComponentCommand {
    /// Writes the component.
    ///
    /// # Errors
    ///
    /// When the file cannot be written.
    pub(crate) fn run(&self) -> anyhow::Result<()> {
        let component = if self.tools {
            tlsfallback_engine::component::TOOLS_COMPONENT
        } else {
            tlsfallback_engine::component::EMBEDDED_COMPONENT
        };
        std::fs::write(&self.output, component)
            .map_err(|e| anyhow::anyhow!("writing {}: {e}", self.output.display()))
    }
}
