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
    /// For aggregate queries (`agg` in the query file): the result rows as lists of values in
    /// select order (`null` for an omitted member), sorted, for cross-checking with peers.
    #[serde(skip)]
    pub result: Option<serde_json::Value>,
}

impl QueryTiming {
    /// The JSON of the report: `rows` is the row count, or the result rows of an aggregate.
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::json!({
            "id": self.id,
            "median_ms": self.median_ms,
            "min_ms": self.min_ms,
            "rows": self.result.clone().unwrap_or_else(|| self.rows.into()),
        })
    }
}

/// The output member names of an aggregate plan, in select order.
fn output_names(plan: &twinql_planner::plan::Plan) -> Vec<String> {
    use twinql_planner::plan::{AggItem, Shape};
    let Shape::Aggregate {
        items, key_texts, ..
    } = &plan.shape
    else {
        return Vec::new();
    };
    items
        .iter()
        .map(|i| match i {
            AggItem::Key { index, alias } => alias.clone().unwrap_or_else(|| {
                key_texts[*index]
                    .rsplit('.')
                    .next()
                    .unwrap_or_default()
                    .to_string()
            }),
            AggItem::Agg { name, .. } => name.clone(),
        })
        .collect()
}

/// Aggregate rows as sorted lists of values in select order, the peers' cross-check format.
fn normalized(plan: &twinql_planner::plan::Plan, rows: &[String]) -> serde_json::Value {
    let names = output_names(plan);
    let mut out: Vec<Vec<serde_json::Value>> = rows
        .iter()
        .map(|r| {
            let obj: serde_json::Map<String, serde_json::Value> =
                serde_json::from_str(r).unwrap_or_default();
            names
                .iter()
                .map(|n| obj.get(n).cloned().unwrap_or(serde_json::Value::Null))
                .collect()
        })
        .collect();
    let key = |row: &Vec<serde_json::Value>| -> Vec<(bool, String)> {
        row.iter()
            .map(|v| match v {
                serde_json::Value::Null => (true, "None".to_string()),
                serde_json::Value::String(s) => (false, s.clone()),
                other => (false, other.to_string()),
            })
            .collect()
    };
    out.sort_by_key(key);
    serde_json::Value::Array(out.into_iter().map(serde_json::Value::Array).collect())
}

/// One line of a query file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BenchQuery {
    /// The id (or `L<line>`).
    pub id: String,
    /// `rows` or `agg` (empty when the line has no kind).
    pub kind: String,
    /// The query text.
    pub query: String,
}

/// Parses a query file: `ID<TAB>KIND<TAB>QUERY` lines, or bare queries.
pub fn read_queries(text: &str) -> Vec<BenchQuery> {
    text.lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty() && !l.trim_start().starts_with('#'))
        .map(|(i, l)| {
            let parts: Vec<&str> = l.splitn(3, '\t').collect();
            match parts.as_slice() {
                [id, kind, q] => BenchQuery {
                    id: id.trim().to_string(),
                    kind: kind.trim().to_string(),
                    query: q.trim().to_string(),
                },
                _ => BenchQuery {
                    id: format!("L{}", i + 1),
                    kind: String::new(),
                    query: l.trim().to_string(),
                },
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
    queries: &[BenchQuery],
    runs: usize,
    warmup: usize,
    mode: Mode,
) -> Result<Vec<QueryTiming>, (String, crate::db::QueryError)> {
    let mut out = Vec::new();
    for BenchQuery { id, kind, query: q } in queries {
        let mut rows = 0;
        let mut result = None;
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
            if i == 0 && kind == "agg" {
                result = Some(normalized(&plan, &db.run_plan(&plan, true)));
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
            result,
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
                "queries": timings.iter().map(QueryTiming::to_json).collect::<Vec<_>>(),
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
