//! Parse + validate time of the 13 anchor queries (`shared/bench/queries.txt`).
//!
//! `cargo bench --bench parse -- --warm-up-time 1 --measurement-time 3`

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use twinql_planner::validate::{Options, validate_query};

const QUERIES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../shared/bench/queries.txt");

/// `(id, query)` for each `ID<TAB>KIND<TAB>QUERY` line; `#` lines are comments.
fn load() -> Vec<(String, String)> {
    let text =
        std::fs::read_to_string(QUERIES).unwrap_or_else(|e| panic!("cannot read {QUERIES}: {e}"));
    text.lines()
        .filter(|l| !l.trim().is_empty() && !l.starts_with('#'))
        .map(|l| {
            let mut parts = l.splitn(3, '\t');
            let id = parts.next().unwrap_or_default().to_string();
            let query = parts.nth(1).unwrap_or_else(|| panic!("bad line: {l}"));
            (id, query.to_string())
        })
        .collect()
}

fn parse_and_validate(text: &str, opts: &Options) -> bool {
    let query = twinql_parser::parse_query(text).expect("anchor queries parse");
    !validate_query(&query, opts).has_errors()
}

fn bench_parse(c: &mut Criterion) {
    let queries = load();
    assert_eq!(queries.len(), 13, "13 anchor queries");
    let opts = Options::default();
    for (_, q) in &queries {
        assert!(parse_and_validate(q, &opts), "valid: {q}");
    }
    let mut group = c.benchmark_group("parse_validate");
    for (id, q) in &queries {
        group.bench_function(id.as_str(), |b| {
            b.iter(|| parse_and_validate(black_box(q), &opts))
        });
    }
    group.bench_function("all13", |b| {
        b.iter(|| {
            queries
                .iter()
                .filter(|(_, q)| parse_and_validate(black_box(q), &opts))
                .count()
        })
    });
    group.finish();
}

criterion_group!(benches, bench_parse);
criterion_main!(benches);
