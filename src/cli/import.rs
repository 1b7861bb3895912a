//! `twinql import`: load files of twins into a new store directory.

use crate::cli::data::{index_policy, report_skipped};
use crate::durable;
use clap::Args;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use twinql_store::index::StoreIndex;
use twinql_store::segment::SegmentWriter;
use twinql_store::{DocKind, LoadOptions, Store};

/// Arguments of `twinql import`.
#[derive(Debug, Args)]
pub struct ImportArgs {
    /// A file of twins: JSON Lines or a JSON array of device twins, module twins (with
    /// `moduleId`) and their `jobs`. May be given several times, or with several files.
    #[arg(long = "data", value_name = "FILE", required = true, num_args = 1..)]
    pub data: Vec<PathBuf>,
    /// A file of job records (each with `deviceId` and `jobId`). May be given several times,
    /// or with several files.
    #[arg(long = "jobs", value_name = "FILE", num_args = 1..)]
    pub jobs: Vec<PathBuf>,
    /// The store directory to create (a new or empty directory).
    #[arg(long, value_name = "DIR")]
    pub store: PathBuf,
    /// Index policy as JSON: `{"include": ["tags/*", …], "exclude": […]}` (default: tags,
    /// desired and reported properties without `$metadata`, and the system fields).
    #[arg(long, value_name = "FILE", conflicts_with = "no_index")]
    pub index_policy: Option<PathBuf>,
    /// Build no indexes: every query on the store scans.
    #[arg(long)]
    pub no_index: bool,
    /// Load the valid documents and report the invalid ones instead of failing.
    #[arg(long)]
    pub skip_invalid: bool,
}

/// Files a failed import may leave in a directory (which may be imported into again).
fn is_store_file(name: &str) -> bool {
    name == "LOCK"
        || name == "CURRENT.tmp"
        || (name.starts_with("seg-") && name.ends_with(".tqs"))
        || (name.starts_with("wal-") && name.ends_with(".log"))
}

/// Refuses, before loading anything, a directory that already holds a store or holds other
/// files.
fn check_target(dir: &Path) -> Result<(), String> {
    if dir.join("CURRENT").exists() {
        return Err(format!(
            "store {} already exists (import creates a new store; open it with --store)",
            dir.display()
        ));
    }
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotADirectory => {
            return Err(format!("store {}: not a directory", dir.display()));
        }
        Err(e) => return Err(format!("store {}: {e}", dir.display())),
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        if !is_store_file(&name.to_string_lossy()) {
            return Err(format!(
                "store {}: the directory is not empty (it holds {}); import into a new or empty directory",
                dir.display(),
                Path::new(&name).display()
            ));
        }
    }
    Ok(())
}

/// A spinner on stderr when stderr is a terminal (hidden otherwise).
fn spinner(message: &str) -> ProgressBar {
    if !std::io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let style = ProgressStyle::with_template("{spinner} {msg} {elapsed}")
        .unwrap_or_else(|_| ProgressStyle::default_spinner());
    let bar = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr())
        .with_style(style)
        .with_message(message.to_string());
    bar.enable_steady_tick(Duration::from_millis(100));
    bar
}

/// Loads the files like [`durable::load_for_import`] (same options), but skipping invalid
/// documents and reporting them.
fn load_skipping(
    store: &mut Store,
    segment: &mut SegmentWriter,
    twins: &[PathBuf],
    jobs: &[PathBuf],
) -> Result<(), twinql_store::LoadError> {
    let opts = LoadOptions {
        progress: true,
        skip_invalid: true,
        ..LoadOptions::default()
    };
    for p in twins {
        report_skipped(p, &store.load_path_writing(p, &opts, segment)?);
    }
    let job_opts = LoadOptions {
        kind: DocKind::Jobs,
        ..opts
    };
    for p in jobs {
        report_skipped(p, &store.load_path_writing(p, &job_opts, segment)?);
    }
    Ok(())
}

/// The segment file `CURRENT` names and its size in bytes.
fn segment_size(dir: &Path) -> Option<(String, u64)> {
    let current = std::fs::read_to_string(dir.join("CURRENT")).ok()?;
    let name = current.lines().nth(1)?.to_string();
    let len = std::fs::metadata(dir.join(&name)).ok()?.len();
    Some((name, len))
}

/// Megabytes with enough digits to show small sizes.
fn mb(bytes: u64) -> String {
    let mb = bytes as f64 / 1e6;
    if mb < 1.0 {
        format!("{mb:.3} MB")
    } else {
        format!("{mb:.1} MB")
    }
}

fn plural(n: usize, what: &str) -> String {
    format!("{n} {what}{}", if n == 1 { "" } else { "s" })
}

/// Runs `twinql import`.
pub fn run_import(args: ImportArgs) -> i32 {
    let start = Instant::now();
    let policy = match index_policy(args.no_index, args.index_policy.as_deref()) {
        Ok(p) => p,
        Err(code) => return code,
    };
    if let Err(e) = check_target(&args.store) {
        eprintln!("error: {e}");
        return 2;
    }
    let mut input_bytes = 0u64;
    for p in args.data.iter().chain(&args.jobs) {
        match std::fs::metadata(p) {
            Ok(m) if m.is_file() => input_bytes += m.len(),
            Ok(_) => {
                eprintln!("error: cannot read {}: not a file", p.display());
                return 2;
            }
            Err(e) => {
                eprintln!("error: cannot read {}: {e}", p.display());
                return 2;
            }
        }
    }

    // Each chunk of documents is written to the segment as soon as it is loaded; then the
    // indexes are built on another thread while the document tables are written.
    let t = Instant::now();
    let mut load_s = 0.0;
    let mut bar = None;
    let index_secs = std::sync::Mutex::new(0.0f64);
    let imported = durable::import_store(
        &args.store,
        |store, segment| {
            let loaded = if args.skip_invalid {
                load_skipping(store, segment, &args.data, &args.jobs)
            } else {
                durable::load_for_import(store, segment, &args.data, &args.jobs, true)
            };
            load_s = t.elapsed().as_secs_f64();
            if loaded.is_ok() {
                bar = Some(spinner(&format!(
                    "building indexes and writing the segment to {}",
                    args.store.display()
                )));
            }
            loaded
        },
        |store| {
            let t = Instant::now();
            let index = policy.map(|p| StoreIndex::build(store, &p));
            if let Ok(mut s) = index_secs.lock() {
                *s = t.elapsed().as_secs_f64();
            }
            index
        },
    );
    if let Some(bar) = bar {
        bar.finish_and_clear();
    }
    let (store, index) = match imported {
        Ok(done) => done,
        Err(e) => {
            eprintln!("error: {e}");
            return 2;
        }
    };
    let index_s = index_secs.lock().map(|s| *s).unwrap_or(0.0);
    let write_s = t.elapsed().as_secs_f64() - load_s;
    let total_s = start.elapsed().as_secs_f64();

    eprintln!(
        "imported {}, {}, {} into {}",
        plural(store.devices().len(), "device twin"),
        plural(store.modules().len(), "module twin"),
        plural(store.jobs().len(), "job record"),
        args.store.display()
    );
    eprintln!(
        "  input {}: load {load_s:.2} s (documents written as loaded), index {index_s:.2} s{}, index and write of the rest {write_s:.2} s, total {total_s:.2} s ({:.1} MB/s)",
        mb(input_bytes),
        if index.is_none() { " (no indexes)" } else { "" },
        input_bytes as f64 / 1e6 / total_s.max(1e-9)
    );
    if let Some((name, len)) = segment_size(&args.store) {
        eprintln!("  segment {name}: {}", mb(len));
    }
    0
}
