//! Twin generation speed: 10,000 device twins in memory and streamed.
//!
//! `cargo bench --bench gen -- --warm-up-time 1 --measurement-time 3`

use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use twinql::r#gen::{GenOptions, generate_bytes, write_jsonl};

fn bench_gen(c: &mut Criterion) {
    let opts = GenOptions {
        count: 10_000,
        seed: 42,
        modules: 0,
        jobs: false,
    };
    let bytes = generate_bytes(&opts).len() as u64;
    let mut group = c.benchmark_group("gen");
    group.throughput(Throughput::Bytes(bytes));
    group.sample_size(20);
    group.bench_function("generate_bytes_10k", |b| {
        b.iter(|| generate_bytes(black_box(&opts)))
    });
    group.bench_function("write_jsonl_10k_sink", |b| {
        b.iter(|| write_jsonl(black_box(&opts), &mut std::io::sink()))
    });
    group.finish();
}

criterion_group!(benches, bench_gen);
criterion_main!(benches);
