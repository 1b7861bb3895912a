//! `twinql explain`: print how a query runs.

use crate::cli::data::{DataArgs, check_store, load_database_for};
use crate::cli::query::{Functions, report_query_error};
use clap::Args;

/// Arguments of `twinql explain`.
#[derive(Debug, Args)]
pub struct ExplainArgs {
    /// Where the twins come from (`--data FILE…` or `--store DIR`).
    #[command(flatten)]
    pub data: DataArgs,
    /// Run the query and show estimated versus actual rows and the time per stage.
    #[arg(long)]
    pub analyze: bool,
    /// Which functions twin queries may use.
    #[arg(long, value_enum, default_value_t = Functions::Twin)]
    pub functions: Functions,
    /// The query.
    pub query: String,
}

/// Runs `twinql explain`.
pub fn run_explain(args: ExplainArgs) -> i32 {
    let db = match load_database_for(&args.data, &args.query, args.functions.into()) {
        Ok(db) => db,
        Err(code) => return code,
    };
    let explained = db.explain(&args.query, args.functions.into(), args.analyze);
    if let Err(code) = check_store(&db) {
        return code;
    }
    match explained {
        Ok(text) => {
            print!("{text}");
            0
        }
        Err(e) => {
            report_query_error(&args.query, &e);
            1
        }
    }
}
