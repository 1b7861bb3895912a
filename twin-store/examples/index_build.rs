//! Loads a JSON Lines file once and times building the default indexes several times.
//!
//! `cargo run --release -p twinql-store --example index_build -- twins.jsonl [RUNS]`

use std::path::PathBuf;
use std::time::Instant;

use twinql_store::index::{IndexPolicy, StoreIndex};
use twinql_store::{LoadOptions, Store};

fn main() {
    let mut args = std::env::args_os().skip(1);
    let Some(path) = args.next().map(PathBuf::from) else {
        eprintln!("usage: index_build FILE.jsonl [RUNS]");
        std::process::exit(2);
    };
    let runs: usize = args
        .next()
        .and_then(|r| r.to_str().and_then(|r| r.parse().ok()))
        .unwrap_or(5);
    let mut store = Store::new();
    let start = Instant::now();
    if let Err(e) = store.load_path(&path, &LoadOptions::default()) {
        eprintln!("{e}");
        std::process::exit(1);
    }
    println!("loaded in {:.3} s", start.elapsed().as_secs_f64());
    let policy = IndexPolicy::default();
    let mut times = Vec::new();
    for _ in 0..runs {
        let t = Instant::now();
        let index = StoreIndex::build(&store, &policy);
        times.push(t.elapsed().as_secs_f64());
        let stats = index.stats();
        println!(
            "built {} paths, {} entries, {:.1} MB in {:.3} s",
            stats.paths,
            stats.entries,
            stats.bytes as f64 / 1e6,
            times.last().copied().unwrap_or(0.0)
        );
    }
    times.sort_by(f64::total_cmp);
    println!(
        "min {:.3} s, median {:.3} s",
        times[0],
        times[times.len() / 2]
    );
}
