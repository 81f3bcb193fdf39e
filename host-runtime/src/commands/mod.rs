//! What each subcommand does, apart from argument parsing (in the binary's `args` module).

pub mod decide;
pub mod deliver;
pub mod demo;
pub mod playground;
pub mod plugin;
pub mod postfix;
pub mod resolve;
pub mod simulate;
