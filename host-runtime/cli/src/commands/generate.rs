//! `tlsfallback generate`: the man pages and shell completions, made from the command line's
//! own definition (clap_mangen, clap_complete), so they cannot drift from it. `scripts/package`
//! puts them into the Debian package.

use std::path::{Path, PathBuf};

use anyhow::Context as _;
use clap::{Args, CommandFactory as _, Subcommand, ValueEnum};

use super::Cli;

/// `tlsfallback generate`.
#[derive(Debug, Args)]
pub(crate) struct GenerateCommand {
    #[command(subcommand)]
    pub(crate) what: Generated,
}

#[derive(Debug, Subcommand)]
pub(crate) enum Generated {
    /// Write the man pages (tlsfallback.1, and tlsfallback-SUBCOMMAND.1 for each subcommand,
    /// its own subcommands included) into DIR.
    Man {
        /// The directory (made if missing).
        #[arg(value_name = "DIR")]
        dir: PathBuf,
    },
    /// Print the default policy file (every setting commented out at its built-in value) on
    /// stdout: /etc/tlsfallback/policy.toml in the Debian package.
    PolicyFile,
    /// Print the completion script for SHELL on stdout.
    Completion {
        /// The shell.
        #[arg(value_enum)]
        shell: Shell,
    },
}

/// The shells completions are made for.
#[derive(Clone, Copy, Debug, ValueEnum)]
pub(crate) enum Shell {
    /// bash (bash-completion).
    Bash,
    /// zsh.
    Zsh,
    /// fish.
    Fish,
}

impl GenerateCommand {
    /// Writes what was asked for.
    ///
    /// # Errors
    ///
    /// When a file cannot be written.
    pub(crate) fn run(&self) -> anyhow::Result<()> {
        match &self.what {
            Generated::Man { dir } => {
                std::fs::create_dir_all(dir)
                    .with_context(|| format!("making {}", dir.display()))?;
                let command = Cli::command();
                write_pages(&command, dir)
            }
            Generated::PolicyFile => {
                std::io::Write::write_all(&mut std::io::stdout(), default_policy_file().as_bytes())
                    .context("writing the policy file")
            }
            Generated::Completion { shell } => {
                let shell = match shell {
                    Shell::Bash => clap_complete::Shell::Bash,
                    Shell::Zsh => clap_complete::Shell::Zsh,
                    Shell::Fish => clap_complete::Shell::Fish,
                };
                let mut command = Cli::command();
                // Into memory first: clap_complete panics when its writer fails (a closed
                // pipe), and a write error here must be an error.
                let mut script = Vec::new();
                clap_complete::generate(shell, &mut command, "tlsfallback", &mut script);
                std::io::Write::write_all(&mut std::io::stdout(), &script)
                    .context("writing the completion script")
            }
        }
    }
}

/// The page of `command` (named after its full path: `tlsfallback-postfix-serve.1`) and those
/// of its subcommands.
fn write_pages(command: &clap::Command, dir: &Path) -> anyhow::Result<()> {
    let command = command.clone().disable_help_subcommand(true);
    clap_mangen::generate_to(command, dir)
        .with_context(|| format!("writing the man pages into {}", dir.display()))
}

/// The policy file that changes nothing: each setting of `[policy]` commented out at the
/// engine's own default (policy-core's `Policy::DEFAULT`, so the file cannot disagree with it).
fn default_policy_file() -> String {
    let defaults = policy_core::Policy::DEFAULT;
    let profiles: Vec<&str> = policy_core::Profile::ALL
        .iter()
        .map(|profile| profile.name())
        .collect();
    format!(
        "# The tlsfallback policy: what `tlsfallback postfix serve` decides under (man\n\
         # tlsfallback-postfix-serve; the rules: /usr/share/doc/tlsfallback/policy.md).\n\
         # Each setting is shown at its built-in default; uncomment one to change it, then\n\
         # `systemctl reload tlsfallback-postfix` (SIGHUP): a file that does not parse is\n\
         # refused with its error in the journal, and the policy before keeps serving.\n\
         \n\
         [policy]\n\
         # {profiles}\n\
         # profile = \"{profile}\"\n\
         # allow_legacy_tls = {legacy}\n\
         # allow_cleartext = {cleartext}\n\
         # step_down_delay_secs = {step_down}\n\
         # reprobe_interval_secs = {reprobe}\n\
         # pin_duration_secs = {pin}\n\
         # transient_failure_threshold = {transient}\n\
         # retry_after_secs = {retry}\n\
         \n\
         # Per destination (MX host name; a leading dot matches the domain and every name under\n\
         # it); the most specific match wins:\n\
         # [[destination]]\n\
         # peer = \".bank.example\"\n\
         # profile = \"mandatory\"\n\
         \n\
         # An operator's own policy component, under limits; the floor still holds:\n\
         # [plugin]\n\
         # component = \"site-rules.wasm\"\n\
         # fail_mode = \"fail-closed\"\n",
        profiles = format_args!("profile: {}", profiles.join(", ")),
        profile = defaults.profile.name(),
        legacy = defaults.allow_legacy_tls,
        cleartext = defaults.allow_cleartext,
        step_down = defaults.step_down_delay_secs,
        reprobe = defaults.reprobe_interval_secs,
        pin = defaults.pin_duration_secs,
        transient = defaults.transient_failure_threshold,
        retry = defaults.retry_after_secs,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_policy_file_parses_to_the_built_in_policy() {
        let text = default_policy_file();
        let file = tlsfallback_engine::config::PolicyFile::parse(&text).unwrap();
        assert_eq!(file, tlsfallback_engine::config::PolicyFile::default());
        // Uncommented, every setting still parses to the defaults.
        let uncommented: String = text
            .lines()
            .filter(|line| line.starts_with("# ") && line.contains(" = "))
            .take(8)
            .map(|line| format!("{}\n", &line[2..]))
            .collect();
        let file =
            tlsfallback_engine::config::PolicyFile::parse(&format!("[policy]\n{uncommented}"))
                .unwrap();
        assert_eq!(file.policy_for("mx.example"), policy_core::Policy::DEFAULT);
    }
}
