//! Loading twins for the commands that run queries: from files (`--data`) or from a store
//! directory (`--store`).

use crate::db::Database;
use crate::durable::StoreOptions;
use clap::{ArgGroup, Args};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;
use twinql_planner::functions::FunctionSet;
use twinql_store::index::IndexPolicy;
use twinql_store::{LoadOptions, Store};

/// Where twins come from: files of twins loaded into memory, or a store directory.
#[derive(Debug, Args)]
#[command(group(ArgGroup::new("source").required(true).args(["data", "store"])))]
pub struct DataArgs {
    /// A file of twins: JSON Lines or a JSON array of device twins, module twins (with
    /// `moduleId`) and their `jobs`. May be given several times.
    #[arg(long = "data", value_name = "FILE")]
    pub data: Vec<PathBuf>,
    /// A store directory made by `twinql import` (instead of `--data`): opened, not loaded.
    #[arg(long, value_name = "DIR")]
    pub store: Option<PathBuf>,
    /// Load the valid documents and report the invalid ones instead of failing.
    #[arg(long, conflicts_with = "store")]
    pub skip_invalid: bool,
    /// Index policy as JSON: `{"include": ["tags/*", …], "exclude": […]}` (default: tags,
    /// desired and reported properties without `$metadata`, and the system fields).
    #[arg(long, value_name = "FILE", conflicts_with_all = ["no_index", "store"])]
    pub index_policy: Option<PathBuf>,
    /// Build no indexes: every query scans (the columns of its filter's paths, built on first
    /// use, or whole twins).
    #[arg(long, conflicts_with = "store")]
    pub no_index: bool,
    /// Report the size of the indexes and how long they took to build (on stderr).
    #[arg(long, conflicts_with = "store")]
    pub verbose_index: bool,
}

/// Loads every `--data` file (or opens `--store`); on failure prints the error and returns
/// the exit status.
pub fn load_database(args: &DataArgs) -> Result<Arc<Database>, i32> {
    load_with_time(args).map(|(db, _)| db)
}

/// Loads every `--data` file and builds the indexes, or opens the `--store` directory for
/// reading; returns the time that took (seconds).
pub fn load_with_time(args: &DataArgs) -> Result<(Arc<Database>, f64), i32> {
    load(args, None)
}

/// [`load_database`] for a process that runs one query, `text`: over `--data` files only the
/// indexes it can use are built (the paths of its condition, GROUP BY keys and aggregates
/// that the policy covers). That gives the plan and rows the whole policy would, for a
/// fraction of the build (one path of 1M twins: 0.6 s, against 3–4 s for the default
/// policy's 51).
pub fn load_database_for(
    args: &DataArgs,
    text: &str,
    functions: FunctionSet,
) -> Result<Arc<Database>, i32> {
    load(args, Some((text, functions))).map(|(db, _)| db)
}

fn load(args: &DataArgs, query: Option<(&str, FunctionSet)>) -> Result<(Arc<Database>, f64), i32> {
    let start = Instant::now();
    if let Some(dir) = &args.store {
        let db = open_store(dir, true)?;
        return Ok((db, start.elapsed().as_secs_f64()));
    }
    // A policy file that cannot be read is reported before the twins are loaded.
    let policy = index_policy(args.no_index, args.index_policy.as_deref())?;
    let mut store = Store::new();
    let opts = LoadOptions {
        skip_invalid: args.skip_invalid,
        progress: true,
        ..LoadOptions::default()
    };
    for path in &args.data {
        match store.load_path(path, &opts) {
            Ok(report) => report_skipped(path, &report),
            Err(e) => {
                eprintln!("error: {e}");
                return Err(2);
            }
        }
    }
    let mut db = Database::from_store(store);
    if let Some(policy) = policy {
        let policy = match query {
            // A query that does not plan is reported by the caller; it needs no index.
            Some((text, functions)) => match db.plan(text, functions) {
                Ok(plan) => db.index_policy_for(&plan, &policy),
                Err(_) => IndexPolicy::none(),
            },
            None => policy,
        };
        build_with(&mut db, &policy, args.verbose_index);
    }
    let secs = start.elapsed().as_secs_f64();
    Ok((Arc::new(db), secs))
}

/// Warns about the documents a `--skip-invalid` load skipped.
pub fn report_skipped(path: &Path, report: &twinql_store::LoadReport) {
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

/// Opens a store directory. `read_only`: the directory must already hold a store (nothing is
/// created) and the log is never compacted in the background; otherwise a missing store is
/// created and the log is compacted as it grows. Failures are printed (`error: …`) and give
/// exit status 2.
pub fn open_store(dir: &Path, read_only: bool) -> Result<Arc<Database>, i32> {
    if read_only && !dir.join("CURRENT").is_file() {
        if dir.is_dir() {
            eprintln!(
                "error: {} is not a twinql store (it has no CURRENT file); create one with `twinql import`",
                dir.display()
            );
        } else {
            eprintln!(
                "error: store {}: no such directory; create one with `twinql import`",
                dir.display()
            );
        }
        return Err(2);
    }
    let opts = if read_only {
        StoreOptions {
            compact_log_bytes: 0,
            ..StoreOptions::default()
        }
    } else {
        StoreOptions::default()
    };
    let db = Database::open_with(dir, opts).map_err(|e| {
        eprintln!("error: {e}");
        2
    })?;
    if let Some(dropped) = db.recovery().and_then(|r| r.dropped) {
        eprintln!(
            "warning: store {}: dropped {} byte{} at the end of the log from byte {} (a write cut short, never acknowledged): {}",
            dir.display(),
            dropped.bytes,
            if dropped.bytes == 1 { "" } else { "s" },
            dropped.offset,
            dropped.reason
        );
    }
    Ok(db)
}

/// The index policy the flags ask for: `None` for `--no-index`, the policy in the file for
/// `--index-policy FILE`, else the default. A file that cannot be read or parsed is reported
/// and gives exit code 2.
pub fn index_policy(
    no_index: bool,
    index_policy: Option<&Path>,
) -> Result<Option<IndexPolicy>, i32> {
    if no_index {
        return Ok(None);
    }
    match index_policy {
        None => Ok(Some(IndexPolicy::default())),
        Some(path) => {
            let parsed = std::fs::read_to_string(path)
                .map_err(|e| e.to_string())
                .and_then(|t| IndexPolicy::from_json(&t));
            match parsed {
                Ok(p) => Ok(Some(p)),
                Err(e) => {
                    eprintln!("error: {}: {e}", path.display());
                    Err(2)
                }
            }
        }
    }
}

/// Builds the indexes the flags ask for (`--no-index`, `--index-policy FILE`,
/// `--verbose-index`); a policy file that cannot be read is reported and gives exit code 2.
pub fn build_indexes(
    db: &mut Database,
    no_index: bool,
    index_policy_file: Option<&Path>,
    verbose: bool,
) -> Result<(), i32> {
    let Some(policy) = index_policy(no_index, index_policy_file)? else {
        return Ok(());
    };
    build_with(db, &policy, verbose);
    Ok(())
}

/// Builds the indexes of `policy`, reporting their size with `verbose`.
fn build_with(db: &mut Database, policy: &IndexPolicy, verbose: bool) {
    let t = Instant::now();
    let stats = db.build_index(policy);
    if verbose {
        eprintln!(
            "indexed {} path{}: {} value entries, {:.1} MB, built in {:.2} s",
            stats.paths,
            if stats.paths == 1 { "" } else { "s" },
            stats.entries,
            stats.bytes as f64 / 1e6,
            t.elapsed().as_secs_f64()
        );
    }
}

/// Whether the documents and indexes read so far were sound: a mapped segment checks each
/// chunk and each path's postings on first use, and a corrupt one reads as empty, so the
/// result of a query that met one must not be trusted. Prints the problems (`error: …`,
/// naming the file and the offset) and gives exit status 2; always `Ok` in memory.
pub fn check_store(db: &Database) -> Result<(), i32> {
    match db.snapshot().store().check() {
        Ok(()) => Ok(()),
        Err(problems) => {
            eprintln!("error: the store is corrupt: {problems}");
            Err(2)
        }
    }
}
