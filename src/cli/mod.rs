//! Command-line interface: one module per subcommand.

use clap::{Parser, Subcommand};

pub mod bench;
pub mod check;
pub mod data;
pub mod demo;
pub mod explain;
pub mod r#gen;
pub mod import;
pub mod query;
pub mod shell;
pub mod soak;

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
    /// Run a query over files of twins (or a store) and print the rows.
    Query(query::QueryArgs),
    /// Print the logical and physical plan of a query (and run it with --analyze).
    Explain(explain::ExplainArgs),
    /// Load twins once and time a file of queries.
    Bench(bench::BenchArgs),
    /// Generate twins in memory and take a tour of the language with timings.
    Demo(demo::DemoArgs),
    /// Write deterministic synthetic twins as JSON Lines.
    Gen(r#gen::GenArgs),
    /// An interactive session: queries, plans, twin reads and writes, desired updates.
    Shell(shell::ShellArgs),
    /// Load files of twins into a new store directory (a mapped segment and a log), to be
    /// opened with `--store DIR` by the other commands.
    Import(import::ImportArgs),
    /// Write to a durable store until killed, printing each acknowledged write (crash testing).
    #[command(hide = true)]
    Soak(soak::SoakArgs),
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
        Command::Query(args) => query::run_query(args),
        Command::Explain(args) => explain::run_explain(args),
        Command::Bench(args) => bench::run_bench(args),
        Command::Demo(args) => demo::run_demo(args),
        Command::Gen(args) => r#gen::run_gen(args),
        Command::Shell(args) => shell::run_shell(args),
        Command::Soak(args) => soak::run_soak(args),
        Command::Import(args) => import::run_import(args),
    }
}
