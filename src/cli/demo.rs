//! `twinql demo`: generate twins in memory and take a tour of the language.

use crate::db::{Database, QueryOptions};
use crate::r#gen::{GenOptions, generate_bytes};
use clap::Args;
use std::time::Instant;
use twinql_planner::functions::FunctionSet;
use twinql_store::index::IndexPolicy;
use twinql_store::{LoadOptions, Store};

/// Arguments of `twinql demo`.
#[derive(Debug, Args)]
pub struct DemoArgs {
    /// How many device twins to generate.
    #[arg(long, default_value_t = 100_000)]
    pub count: u64,
    /// Seed of the generator.
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// Rows shown per query.
    #[arg(long, default_value_t = 3)]
    pub show: usize,
    /// Build no indexes: every query scans (the columns of its filter's paths, built on first
    /// use, or whole twins).
    #[arg(long)]
    pub no_index: bool,
}

/// The tour: a caption and a query each.
pub const TOUR: &[(&str, &str)] = &[
    (
        "Devices in one plant",
        "SELECT * FROM devices WHERE tags.location.plant = 'Redmond43'",
    ),
    (
        "A plant and a reported property",
        "SELECT deviceId, properties.reported.connectivity.type AS connectivity FROM devices WHERE tags.location.plant = 'Redmond43' AND properties.reported.connectivity.type = 'cellular'",
    ),
    (
        "Devices per reported status (GROUP BY)",
        "SELECT properties.reported.telemetryConfig.status AS status, COUNT() AS numberOfDevices FROM devices GROUP BY properties.reported.telemetryConfig.status",
    ),
    (
        "Prefix search",
        "SELECT TOP 5 deviceId, status FROM devices WHERE STARTSWITH(deviceId, 'sensor-1')",
    ),
    (
        "IN lists",
        "SELECT COUNT() AS n FROM devices WHERE tags.location.region IN ['US', 'EU']",
    ),
    (
        "Three-valued logic: != skips twins without the tag",
        "SELECT COUNT() AS n FROM devices WHERE tags.environment != 'production'",
    ),
    (
        "…and IS_DEFINED brings them back",
        "SELECT COUNT() AS n FROM devices WHERE NOT IS_DEFINED(tags.environment) OR tags.environment != 'production'",
    ),
    (
        "Numeric range (string temperatures never match)",
        "SELECT COUNT() AS n FROM devices WHERE properties.reported.temperature >= 30 AND properties.reported.temperature < 35",
    ),
    (
        "Regions with errors",
        "SELECT tags.location.region AS region, COUNT() AS n FROM devices WHERE properties.reported.telemetryConfig.status = 'Error' GROUP BY tags.location.region",
    ),
];

/// Runs `twinql demo`.
pub fn run_demo(args: DemoArgs) -> i32 {
    let start = Instant::now();
    let bytes = generate_bytes(&GenOptions {
        count: args.count,
        seed: args.seed,
        ..GenOptions::default()
    });
    let gen_s = start.elapsed().as_secs_f64();
    let mut store = Store::new();
    let start = Instant::now();
    if let Err(e) = store.load_bytes("generated", &bytes, &LoadOptions::default()) {
        eprintln!("error: {e}");
        return 2;
    }
    let load_s = start.elapsed().as_secs_f64();
    println!(
        "twinql demo: generated {} twins ({:.1} MB of JSON Lines) in {:.2} s, loaded in {:.2} s ({:.0} MB/s)\n",
        args.count,
        bytes.len() as f64 / 1e6,
        gen_s,
        load_s,
        bytes.len() as f64 / 1e6 / load_s.max(1e-9)
    );
    drop(bytes);
    let mut db = Database::from_store(store);
    if !args.no_index {
        let start = Instant::now();
        let stats = db.build_index(&IndexPolicy::default());
        println!(
            "indexed {} paths ({} value entries, {:.1} MB) in {:.2} s\n",
            stats.paths,
            stats.entries,
            stats.bytes as f64 / 1e6,
            start.elapsed().as_secs_f64()
        );
    }
    for (caption, q) in TOUR {
        println!("== {caption}\n   {q}");
        let start = Instant::now();
        let plan = match db.plan(q, FunctionSet::Twin) {
            Ok(p) => p,
            Err(e) => {
                eprintln!("error: {e}");
                return 1;
            }
        };
        let rows = db.run_plan(&plan, true);
        let ms = start.elapsed().as_secs_f64() * 1000.0;
        println!(
            "   {} row(s) in {ms:.2} ms ({})",
            rows.len(),
            db.access(&plan).name()
        );
        for r in rows.iter().take(args.show) {
            let shown = if r.len() > 160 {
                format!("{}…", &r[..r.floor_char_boundary(160)])
            } else {
                r.clone()
            };
            println!("   {shown}");
        }
        println!();
    }
    // Paging, as a hub client sees it.
    let q = "SELECT deviceId FROM devices WHERE tags.location.region = 'EU'";
    let mut opts = QueryOptions::default();
    let mut pages = 0;
    let mut rows = 0;
    let start = Instant::now();
    loop {
        match db.query(q, &opts) {
            Ok(page) => {
                pages += 1;
                rows += page.items.len();
                match page.continuation {
                    Some(t) => opts.continuation = Some(t),
                    None => break,
                }
            }
            Err(e) => {
                eprintln!("error: {e}");
                return 1;
            }
        }
    }
    println!(
        "== Paging\n   {q}\n   {rows} rows in {pages} pages of ≤100 in {:.1} ms",
        start.elapsed().as_secs_f64() * 1000.0
    );
    0
}
