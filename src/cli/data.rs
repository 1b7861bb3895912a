//! Loading twins for the commands that run queries.

use crate::db::Database;
use clap::Args;
use std::path::PathBuf;
use std::time::Instant;
use twinql_store::index::IndexPolicy;
use twinql_store::{LoadOptions, Store};

/// Where twins come from.
#[derive(Debug, Args)]
pub struct DataArgs {
    /// A file of twins: JSON Lines or a JSON array of device twins, module twins (with
    /// `moduleId`) and their `jobs`. May be given several times.
    #[arg(long = "data", value_name = "FILE", required = true)]
    pub data: Vec<PathBuf>,
    /// Load the valid documents and report the invalid ones instead of failing.
    #[arg(long)]
    pub skip_invalid: bool,
    /// Index policy as JSON: `{"include": ["tags/*", …], "exclude": […]}` (default: tags,
    /// desired and reported properties without `$metadata`, and the system fields).
    #[arg(long, value_name = "FILE", conflicts_with = "no_index")]
    pub index_policy: Option<PathBuf>,
    /// Build no indexes: every query scans.
    #[arg(long)]
    pub no_index: bool,
    /// Report the size of the indexes and how long they took to build (on stderr).
    #[arg(long)]
    pub verbose_index: bool,
}

/// Loads every `--data` file; on failure prints the error and returns the exit status.
pub fn load_database(args: &DataArgs) -> Result<Database, i32> {
    load_with_time(args).map(|(db, _)| db)
}

/// Loads every `--data` file and builds the indexes; returns the time both took (seconds).
pub fn load_with_time(args: &DataArgs) -> Result<(Database, f64), i32> {
    let mut store = Store::new();
    let opts = LoadOptions {
        skip_invalid: args.skip_invalid,
        progress: true,
        ..LoadOptions::default()
    };
    let start = Instant::now();
    for path in &args.data {
        match store.load_path(path, &opts) {
            Ok(report) => {
                if report.skipped > 0 {
                    eprintln!(
                        "warning: {}: skipped {} invalid line{}",
                        path.display(),
                        report.skipped,
                        if report.skipped == 1 { "" } else { "s" }
                    );
                    for reason in report.errors.iter().take(10) {
                        eprintln!("  {reason}");
                    }
                }
            }
            Err(e) => {
                eprintln!("error: {e}");
                return Err(2);
            }
        }
    }
    let mut db = Database::from_store(store);
    build_indexes(
        &mut db,
        args.no_index,
        args.index_policy.as_deref(),
        args.verbose_index,
    )?;
    let secs = start.elapsed().as_secs_f64();
    Ok((db, secs))
}

/// Builds the indexes the flags ask for (`--no-index`, `--index-policy FILE`,
/// `--verbose-index`); a policy file that cannot be read is reported and gives exit code 2.
pub fn build_indexes(
    db: &mut Database,
    no_index: bool,
    index_policy: Option<&std::path::Path>,
    verbose: bool,
) -> Result<(), i32> {
    if no_index {
        return Ok(());
    }
    let policy = match index_policy {
        None => IndexPolicy::default(),
        Some(path) => {
            let parsed = std::fs::read_to_string(path)
                .map_err(|e| e.to_string())
                .and_then(|t| IndexPolicy::from_json(&t));
            match parsed {
                Ok(p) => p,
                Err(e) => {
                    eprintln!("error: {}: {e}", path.display());
                    return Err(2);
                }
            }
        }
    };
    let t = Instant::now();
    let stats = db.build_index(&policy);
    if verbose {
        eprintln!(
            "indexed {} paths: {} value entries, {:.1} MB, built in {:.2} s",
            stats.paths,
            stats.entries,
            stats.bytes as f64 / 1e6,
            t.elapsed().as_secs_f64()
        );
    }
    Ok(())
}
