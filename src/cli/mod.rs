//! Command-line interface: one module per subcommand.

use clap::{Parser, Subcommand};

pub mod check;

/// The IoT Hub twin query language, without a hub.
#[derive(Debug, Parser)]
#[command(name = "twinql", version, about, propagate_version = true)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Validate queries offline and print diagnostics.
    Check(check::CheckArgs),
    /// Print the canonical form of a query.
    Fmt(check::FmtArgs),
}

/// Runs the command line; returns the process exit status.
pub fn main() -> i32 {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let code = if e.use_stderr() { 2 } else { 0 };
            let _ = e.print();
            return code;
        }
    };
    match cli.command {
        Command::Check(args) => check::run_check(args),
        Command::Fmt(args) => check::run_fmt(args),
    }
}
