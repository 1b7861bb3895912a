//! `twinql bench`: load once, time a file of queries.

use crate::cli::data::{DataArgs, check_store, load_with_time};
use crate::db::Database;
use clap::{Args, ValueEnum};
use std::path::PathBuf;
use std::time::Instant;
use twinql_planner::functions::FunctionSet;
use twinql_store::CollectionKind;

/// What a timed run includes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Mode {
    /// Build every result row as JSON text (not printed). A run is timed until the rows are
    /// returned; freeing them afterwards is not timed.
    Full,
    /// Only count the rows.
    Count,
}

/// Output format of the report.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum ReportFormat {
    /// A table for people.
    Human,
    /// `{"load_s", "rss_bytes", "queries": [{"id", "median_ms", "min_ms", "first_ms", "rows"}],
    /// "columns": {"count", "bytes"}, "rss_after_bytes"}`; with `--store`, `"open_s"` (the time
    /// to open the store) and `"store"` instead of `"load_s"`.
    Json,
}

/// Arguments of `twinql bench`.
#[derive(Debug, Args)]
pub struct BenchArgs {
    /// Where the twins come from (`--data FILE…` or `--store DIR`).
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
    /// Apply this many reported-property patches (one writer thread, random devices) after
    /// loading and report the write rate (not with `--store`: the store is only read).
    #[arg(long, default_value_t = 0, value_name = "N", conflicts_with = "store")]
    pub writes: usize,
    /// Time the queries a second time while one writer thread applies reported-property
    /// patches flat out, and report both latencies (not with `--store`).
    #[arg(long, conflicts_with = "store")]
    pub under_writes: bool,
    /// Send the patches of `--writes` and `--under-writes` in batches of this many
    /// (`Database::write_batch`: the IoT Hub rules on all cores, one critical section per
    /// batch); 1 sends them one at a time.
    #[arg(long, default_value_t = 1, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=100_000))]
    pub batch: u32,
}

/// A tiny deterministic generator for benchmark patches.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

/// A device's reported-property patch as a device would send it: telemetry readings and
/// now and then a configuration status.
fn reported_patch(rng: &mut Rng) -> String {
    let t = 15.0 + rng.below(250) as f64 / 10.0;
    let b = rng.below(101);
    match rng.below(10) {
        0 => {
            let s = ["Success", "Pending", "Error"][rng.below(3) as usize];
            format!(r#"{{"temperature":{t},"battery":{b},"telemetryConfig":{{"status":"{s}"}}}}"#)
        }
        _ => format!(r#"{{"temperature":{t},"battery":{b}}}"#),
    }
}

/// The device ids of the loaded store.
fn device_ids(db: &Database) -> Vec<String> {
    let snap = db.snapshot();
    let devices = snap.store().devices();
    (0..devices.len() as u32)
        .filter_map(|i| devices.identity(i).map(|(d, _)| d.to_string()))
        .collect()
}

/// Applies reported patches to random devices until `n` are done or `stop` is set; returns
/// how many were acknowledged and the seconds taken.
#[allow(clippy::too_many_arguments)]
fn write_load(
    db: &Database,
    ids: &[String],
    n: usize,
    batch: usize,
    seed: u64,
    stop: &std::sync::atomic::AtomicBool,
    progress: &std::sync::atomic::AtomicUsize,
) -> (usize, f64) {
    let mut rng = Rng(seed | 1);
    let twin_ids: Vec<crate::write::TwinId> = ids
        .iter()
        .map(|d| crate::write::TwinId::device(d))
        .collect();
    let start = Instant::now();
    let mut done = 0;
    let mut patches: Vec<(usize, String)> = Vec::with_capacity(batch);
    while done < n && !stop.load(std::sync::atomic::Ordering::Relaxed) {
        if twin_ids.is_empty() {
            break;
        }
        if batch <= 1 {
            let id = &twin_ids[rng.below(twin_ids.len() as u64) as usize];
            let patch = reported_patch(&mut rng);
            if db.patch_reported(id, &patch).is_ok() {
                done += 1;
                progress.store(done, std::sync::atomic::Ordering::Relaxed);
            }
            continue;
        }
        patches.clear();
        for _ in 0..batch.min(n - done) {
            let i = rng.below(twin_ids.len() as u64) as usize;
            patches.push((i, reported_patch(&mut rng)));
        }
        let writes: Vec<crate::write::BatchWrite<'_>> = patches
            .iter()
            .map(|(i, p)| crate::write::BatchWrite {
                id: &twin_ids[*i],
                op: crate::write::WriteOp::PatchReported,
                body: p,
                if_match: None,
            })
            .collect();
        done += db.write_batch(&writes).iter().filter(|r| r.is_ok()).count();
        progress.store(done, std::sync::atomic::Ordering::Relaxed);
    }
    (done, start.elapsed().as_secs_f64())
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
    /// The very first run (warm-up included), in milliseconds: on a store just opened, the
    /// cold run that reads and checks the documents for the first time.
    pub first_ms: f64,
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
            "first_ms": self.first_ms,
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
        let mut first_ms = 0.0;
        for i in 0..warmup + runs.max(1) {
            let start = Instant::now();
            // One snapshot per run: the query is planned and run on the same state.
            let snap = db.snapshot();
            let plan = snap
                .plan(q, FunctionSet::Twin)
                .map_err(|e| (q.clone(), e))?;
            let built = match mode {
                Mode::Full => snap.run_plan(&plan, true),
                Mode::Count => {
                    rows = snap.count_plan(&plan, true);
                    Vec::new()
                }
            };
            let ms = start.elapsed().as_secs_f64() * 1000.0;
            // The clock stops when the rows are returned; freeing them is the caller's.
            if mode == Mode::Full {
                rows = std::hint::black_box(&built).len() as u64;
            }
            drop(built);
            drop(snap);
            if i == 0 {
                first_ms = ms;
            }
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
            first_ms,
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
    if let Some(dir) = &args.data.store {
        eprintln!(
            "opened store {} in {load_s:.3} s; resident memory {:.1} MB",
            dir.display(),
            rss as f64 / 1e6
        );
    }
    let never = std::sync::atomic::AtomicBool::new(false);
    let ids = if args.writes > 0 || args.under_writes {
        device_ids(&db)
    } else {
        Vec::new()
    };
    let progress = std::sync::atomic::AtomicUsize::new(0);
    let writes = (args.writes > 0).then(|| {
        write_load(
            &db,
            &ids,
            args.writes,
            args.batch as usize,
            7,
            &never,
            &progress,
        )
    });
    let timings = match time_queries(&db, &queries, args.runs, args.warmup, args.mode) {
        Ok(t) => t,
        Err((q, e)) => {
            crate::cli::query::report_query_error(&q, &e);
            return 1;
        }
    };
    let under = if args.under_writes {
        let stop = std::sync::atomic::AtomicBool::new(false);
        let progress = std::sync::atomic::AtomicUsize::new(0);
        let (t, w) = std::thread::scope(|s| {
            let writer = s.spawn(|| {
                write_load(
                    &db,
                    &ids,
                    usize::MAX,
                    args.batch as usize,
                    11,
                    &stop,
                    &progress,
                )
            });
            // Time the queries only once the writer runs at full speed.
            let ready = Instant::now();
            while progress.load(std::sync::atomic::Ordering::Relaxed) < 10_000
                && ready.elapsed().as_secs() < 30
                && !writer.is_finished()
            {
                std::thread::sleep(std::time::Duration::from_millis(10));
            }
            let t = time_queries(&db, &queries, args.runs, args.warmup, args.mode);
            stop.store(true, std::sync::atomic::Ordering::Relaxed);
            (t, writer.join().unwrap_or((0, 0.0)))
        });
        match t {
            Ok(t) => Some((t, w)),
            Err((q, e)) => {
                crate::cli::query::report_query_error(&q, &e);
                return 1;
            }
        }
    } else {
        None
    };
    if let Err(code) = check_store(&db) {
        return code;
    }
    let rate = |(n, s): (usize, f64)| if s > 0.0 { n as f64 / s } else { 0.0 };
    let batch_note = match args.batch {
        1 => String::new(),
        n => format!(", batches of {n}"),
    };
    let (columns, column_bytes) = db.snapshot().column_stats();
    let rss_after = rss_bytes();
    match args.format {
        ReportFormat::Json => {
            let mut report = serde_json::json!({
                "rss_bytes": rss,
                "mode": match args.mode { Mode::Full => "full", Mode::Count => "count" },
                "queries": timings.iter().map(QueryTiming::to_json).collect::<Vec<_>>(),
                "columns": {"count": columns, "bytes": column_bytes},
                "rss_after_bytes": rss_after,
            });
            match &args.data.store {
                Some(dir) => {
                    report["open_s"] = load_s.into();
                    report["store"] = dir.display().to_string().into();
                }
                None => report["load_s"] = load_s.into(),
            }
            if let Some(w) = writes {
                report["writes"] = serde_json::json!({"patches": w.0, "seconds": w.1, "per_second": rate(w), "batch": args.batch});
            }
            if let Some((t, w)) = &under {
                report["under_writes"] = serde_json::json!({
                    "writer_patches": w.0,
                    "writer_per_second": rate(*w),
                    "queries": t.iter().map(QueryTiming::to_json).collect::<Vec<_>>(),
                });
            }
            println!("{report}");
        }
        ReportFormat::Human => {
            let snap = db.snapshot();
            let how = match &args.data.store {
                Some(dir) => format!("opened store {} with", dir.display()),
                None => "loaded".to_string(),
            };
            println!(
                "{how} {} devices, {} modules, {} jobs in {:.2} s; resident memory {:.1} MB",
                snap.count(CollectionKind::Devices),
                snap.count(CollectionKind::Modules),
                snap.count(CollectionKind::Jobs),
                load_s,
                rss as f64 / 1e6
            );
            drop(snap);
            println!(
                "{:<6} {:>12} {:>12} {:>12} {:>10}",
                "query", "median ms", "min ms", "first ms", "rows"
            );
            for t in &timings {
                println!(
                    "{:<6} {:>12.3} {:>12.3} {:>12.3} {:>10}",
                    t.id, t.median_ms, t.min_ms, t.first_ms, t.rows
                );
            }
            println!(
                "columns built for scans: {columns} ({:.1} MB); resident memory after the queries {:.1} MB",
                column_bytes as f64 / 1e6,
                rss_after as f64 / 1e6
            );
            if let Some(w) = writes {
                println!(
                    "writes: {} reported patches in {:.2} s = {:.0} patches/s (one writer thread{})",
                    w.0,
                    w.1,
                    rate(w),
                    batch_note
                );
            }
            if let Some((t, w)) = &under {
                println!(
                    "under writes (one writer thread{}, {:.0} patches/s while the queries ran):",
                    batch_note,
                    rate(*w)
                );
                println!(
                    "{:<6} {:>12} {:>12} {:>8} {:>10}",
                    "query", "at rest ms", "writing ms", "ratio", "rows"
                );
                for (a, b) in timings.iter().zip(t) {
                    println!(
                        "{:<6} {:>12.3} {:>12.3} {:>8.2} {:>10}",
                        a.id,
                        a.median_ms,
                        b.median_ms,
                        b.median_ms / a.median_ms.max(1e-9),
                        b.rows
                    );
                }
            }
        }
    }
    0
}
