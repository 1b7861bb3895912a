//! Loads a JSON Lines file and prints load speed and memory.
//!
//! `cargo run --release -p twinql-store --example load -- /tmp/twins_100k.jsonl`

use std::path::PathBuf;
use std::time::Instant;

use twinql_store::{LoadOptions, Store};

/// Resident set size in bytes, from `/proc/self/statm` (Linux).
fn rss() -> Option<u64> {
    let statm = std::fs::read_to_string("/proc/self/statm").ok()?;
    let pages: u64 = statm.split_whitespace().nth(1)?.parse().ok()?;
    Some(pages * 4096)
}

fn main() {
    let Some(path) = std::env::args_os().nth(1).map(PathBuf::from) else {
        eprintln!("usage: load FILE.jsonl");
        std::process::exit(2);
    };
    let size = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
    let rss_before = rss().unwrap_or(0);
    let start = Instant::now();
    let mut store = Store::new();
    let report = match store.load_path(&path, &LoadOptions::default()) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("{e}");
            std::process::exit(1);
        }
    };
    let secs = start.elapsed().as_secs_f64();
    let rss_after = rss().unwrap_or(0);
    let mem = store.memory();
    let mb = |b: f64| b / 1e6;
    println!(
        "{} devices, {} modules, {} jobs, {} keys from {:.1} MB in {:.3} s ({:.0} MB/s, {} threads)",
        report.devices,
        report.modules,
        report.jobs,
        store.key_count(),
        mb(size as f64),
        secs,
        mb(size as f64) / secs,
        rayon::current_num_threads(),
    );
    println!(
        "store {:.1} MB ({:.3}x input): tapes {:.1}, floats {:.1}, key maps {:.2}, dictionary {:.2}, doc tables {:.1}, indexes {:.1}",
        mb(mem.total() as f64),
        mem.total() as f64 / size as f64,
        mb(mem.tapes as f64),
        mb(mem.floats as f64),
        mb(mem.key_maps as f64),
        mb(mem.dictionary as f64),
        mb(mem.doc_tables as f64),
        mb(mem.indexes as f64),
    );
    println!(
        "RSS {:.1} MB ({:.3}x input; {:.1} MB before loading)",
        mb(rss_after as f64),
        rss_after as f64 / size as f64,
        mb(rss_before as f64)
    );
}
