//! `twinql bench`: load once, time a file of queries.

use crate::cli::data::{DataArgs, load_with_time};
use crate::db::Database;
use clap::{Args, ValueEnum};
use std::path::PathBuf;
use std::time::Instant;
use twinql_planner::functions::FunctionSet;

/// What a timed run includes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Mode {
    /// Build every result row as JSON text (not printed).
    Full,
    /// Only count the rows.
    Count,
}

/// Output format of the report.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum ReportFormat {
    /// A table for people.
    Human,
    /// `{"load_s", "rss_bytes", "queries": [{"id", "median_ms", "min_ms", "rows"}]}`.
    Json,
}

/// Arguments of `twinql bench`.
#[derive(Debug, Args)]
pub struct BenchArgs {
    /// Where the twins come from.
    #[command(flatten)]
    pub data: DataArgs,
    /// Queries, one per line as `ID<TAB>KIND<TAB>QUERY` (or just the query); `#` lines skipped.
    #[arg(long, value_name = "FILE")]
    pub queries: PathBuf,
    /// Timed runs per query.
    #[arg(long, default_value_t = 5)]
    pub runs: usize,
    /// Untimed runs before the timed ones.
    #[arg(long, default_value_t = 1)]
    pub warmup: usize,
    /// Whether rows are built as JSON or only counted.
    #[arg(long, value_enum, default_value_t = Mode::Full)]
    pub mode: Mode,
    /// Report format.
    #[arg(long, value_enum, default_value_t = ReportFormat::Human)]
    pub format: ReportFormat,
}

/// One query's timings.
#[derive(Clone, Debug, serde::Serialize)]
pub struct QueryTiming {
    /// The query id (or its line number).
    pub id: String,
    /// Median wall time of the timed runs, in milliseconds.
    pub median_ms: f64,
    /// Fastest timed run, in milliseconds.
    pub min_ms: f64,
    /// Rows returned.
    pub rows: u64,
}

/// Parses a query file: `(id, query)` pairs.
pub fn read_queries(text: &str) -> Vec<(String, String)> {
    text.lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty() && !l.trim_start().starts_with('#'))
        .map(|(i, l)| {
            let parts: Vec<&str> = l.splitn(3, '\t').collect();
            match parts.as_slice() {
                [id, _kind, q] => (id.trim().to_string(), q.trim().to_string()),
                _ => (format!("L{}", i + 1), l.trim().to_string()),
            }
        })
        .collect()
}

/// Resident memory of this process in bytes (Linux), or 0 when unknown.
pub fn rss_bytes() -> u64 {
    std::fs::read_to_string("/proc/self/statm")
        .ok()
        .and_then(|s| s.split_whitespace().nth(1)?.parse::<u64>().ok())
        .map_or(0, |pages| pages * 4096)
}

/// Times each query: `runs` timed runs after `warmup` untimed ones.
pub fn time_queries(
    db: &Database,
    queries: &[(String, String)],
    runs: usize,
    warmup: usize,
    mode: Mode,
) -> Result<Vec<QueryTiming>, (String, crate::db::QueryError)> {
    let mut out = Vec::new();
    for (id, q) in queries {
        let mut rows = 0;
        let mut times = Vec::new();
        for i in 0..warmup + runs.max(1) {
            let start = Instant::now();
            let plan = db.plan(q, FunctionSet::Twin).map_err(|e| (q.clone(), e))?;
            rows = match mode {
                Mode::Full => {
                    let r = db.run_plan(&plan, true);
                    std::hint::black_box(&r);
                    r.len() as u64
                }
                Mode::Count => db.count_plan(&plan, true),
            };
            let ms = start.elapsed().as_secs_f64() * 1000.0;
            if i >= warmup {
                times.push(ms);
            }
        }
        times.sort_by(f64::total_cmp);
        let median = if times.len() % 2 == 1 {
            times[times.len() / 2]
        } else {
            (times[times.len() / 2 - 1] + times[times.len() / 2]) / 2.0
        };
        out.push(QueryTiming {
            id: id.clone(),
            median_ms: median,
            min_ms: times[0],
            rows,
        });
    }
    Ok(out)
}

/// Runs `twinql bench`.
pub fn run_bench(args: BenchArgs) -> i32 {
    let text = match std::fs::read_to_string(&args.queries) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("error: {}: {e}", args.queries.display());
            return 2;
        }
    };
    let queries = read_queries(&text);
    let (db, load_s) = match load_with_time(&args.data) {
        Ok(x) => x,
        Err(code) => return code,
    };
    let rss = rss_bytes();
    let timings = match time_queries(&db, &queries, args.runs, args.warmup, args.mode) {
        Ok(t) => t,
        Err((q, e)) => {
            crate::cli::query::report_query_error(&q, &e);
            return 1;
        }
    };
    match args.format {
        ReportFormat::Json => {
            let report = serde_json::json!({
                "load_s": load_s,
                "rss_bytes": rss,
                "mode": match args.mode { Mode::Full => "full", Mode::Count => "count" },
                "queries": timings,
            });
            println!("{report}");
        }
        ReportFormat::Human => {
            println!(
                "loaded {} devices, {} modules, {} jobs in {:.2} s; resident memory {:.1} MB",
                db.store().devices().len(),
                db.store().modules().len(),
                db.store().jobs().len(),
                load_s,
                rss as f64 / 1e6
            );
            println!(
                "{:<6} {:>12} {:>12} {:>10}",
                "query", "median ms", "min ms", "rows"
            );
            for t in &timings {
                println!(
                    "{:<6} {:>12.3} {:>12.3} {:>10}",
                    t.id, t.median_ms, t.min_ms, t.rows
                );
            }
        }
    }
    0
}
