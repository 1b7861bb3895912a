//! Rendering whole twins as JSON text (`SELECT *`): 20,000 generated device twins, one
//! thread, so the figure is the renderer's own speed per core.
//!
//! `cargo bench --bench render -- --warm-up-time 1 --measurement-time 5`

use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use twinql::Database;
use twinql::r#gen::{GenOptions, generate_bytes};
use twinql::planner::functions::FunctionSet;
use twinql::store::{LoadOptions, Store};

fn bench_render(c: &mut Criterion) {
    let bytes = generate_bytes(&GenOptions {
        count: 20_000,
        seed: 7,
        modules: 0,
        jobs: false,
    });
    let mut store = Store::new();
    store
        .load_bytes("twins", &bytes, &LoadOptions::default())
        .expect("generated twins load");
    let db = Database::from_store(store);
    let plan = db
        .plan("SELECT * FROM devices", FunctionSet::Twin)
        .expect("query plans");
    let out: usize = db.run_plan(&plan, false).iter().map(String::len).sum();
    let mut group = c.benchmark_group("render");
    group.throughput(Throughput::Bytes(out as u64));
    group.sample_size(20);
    group.bench_function("select_star_20k_one_thread", |b| {
        b.iter(|| db.run_plan(black_box(&plan), false))
    });
    group.finish();
}

criterion_group!(benches, bench_render);
criterion_main!(benches);
