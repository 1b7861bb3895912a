//! Loading: parsing 100,000 generated device twins from JSON Lines into a store, and
//! building the default indexes over them (both on all cores).
//!
//! `cargo bench --bench load -- --warm-up-time 1 --measurement-time 5`

use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use twinql::r#gen::{GenOptions, generate_bytes};
use twinql::store::index::{IndexPolicy, StoreIndex};
use twinql::store::{LoadOptions, Store};

fn bench_load(c: &mut Criterion) {
    let bytes = generate_bytes(&GenOptions {
        count: 100_000,
        seed: 7,
        modules: 0,
        jobs: false,
    });
    let opts = LoadOptions {
        progress: false,
        ..LoadOptions::default()
    };
    let load = || {
        let mut store = Store::new();
        store
            .load_bytes("twins", &bytes, &opts)
            .expect("generated twins load");
        store
    };
    let store = load();
    let policy = IndexPolicy::default();
    let mut group = c.benchmark_group("load");
    group.throughput(Throughput::Bytes(bytes.len() as u64));
    group.sample_size(10);
    group.bench_function("parse_100k", |b| b.iter(|| black_box(load())));
    group.bench_function("index_100k", |b| {
        b.iter(|| StoreIndex::build(black_box(&store), &policy))
    });
    group.finish();
}

criterion_group!(benches, bench_load);
criterion_main!(benches);
