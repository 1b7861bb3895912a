//! Golden tests of `twinql query`, `explain`, `bench` and `demo`, running the real binary over
//! a small fixture of twins (`tests/fixtures/twins.jsonl`).
//!
//! Outputs are insta snapshots under `tests/it/snapshots/`; accept intended changes with
//! `cargo insta review` (or `INSTA_UPDATE=always cargo test --test it cli_query::`).

use crate::common::cli::{TWINS, err, out, run};
use std::process::Output;

fn query(extra: &[&str], q: &str) -> Output {
    let mut args = vec!["query", "--data", TWINS];
    args.extend_from_slice(extra);
    args.push(q);
    run(&args)
}

#[test]
fn select_star_returns_twins_as_stored() {
    let o = query(
        &[],
        "SELECT * FROM devices WHERE tags.location.plant = 'Redmond43'",
    );
    assert_eq!(o.status.code(), Some(0), "{}", err(&o));
    insta::assert_snapshot!("query_star_json", out(&o));
}

#[test]
fn projection_uses_stored_member_casing() {
    let o = query(
        &["--format", "jsonl"],
        "SELECT DeviceId, LastActivityTime, tags.location.plant AS plant FROM devices WHERE status = 'enabled'",
    );
    assert_eq!(o.status.code(), Some(0), "{}", err(&o));
    insta::assert_snapshot!("query_projection_jsonl", out(&o));
}

#[test]
fn group_by_as_a_table() {
    let o = query(
        &["--format", "table"],
        "SELECT properties.reported.telemetryConfig.status AS status, COUNT() AS n FROM devices GROUP BY properties.reported.telemetryConfig.status",
    );
    assert_eq!(o.status.code(), Some(0), "{}", err(&o));
    insta::assert_snapshot!("query_group_table", out(&o));
}

#[test]
fn modules_and_jobs() {
    let o = query(
        &["--format", "jsonl"],
        "SELECT deviceId, moduleId FROM devices.modules WHERE moduleId = '$edgeAgent'",
    );
    assert_eq!(o.status.code(), Some(0), "{}", err(&o));
    insta::assert_snapshot!("query_modules", out(&o));
    let o = query(
        &["--format", "jsonl"],
        "SELECT * FROM devices.jobs WHERE devices.jobs.status = 'completed'",
    );
    assert_eq!(o.status.code(), Some(0), "{}", err(&o));
    insta::assert_snapshot!("query_jobs", out(&o));
}

#[test]
fn paging_with_continuation_tokens() {
    let q = "SELECT deviceId FROM devices";
    let first = query(&["--format", "jsonl", "--page-size", "2"], q);
    assert_eq!(first.status.code(), Some(0), "{}", err(&first));
    assert_eq!(out(&first).lines().count(), 2);
    let token = err(&first)
        .lines()
        .find_map(|l| l.strip_prefix("continuation: "))
        .expect("a continuation token on stderr")
        .to_string();
    let second = query(
        &[
            "--format",
            "jsonl",
            "--page-size",
            "2",
            "--continuation",
            &token,
        ],
        q,
    );
    assert_eq!(second.status.code(), Some(0), "{}", err(&second));
    let all = query(&["--format", "jsonl"], q);
    let joined = format!("{}{}", out(&first), out(&second));
    assert!(
        out(&all).starts_with(&joined),
        "pages are a prefix of the whole result"
    );
    assert_ne!(out(&first), out(&second));
    // A token is bound to its query.
    let wrong = query(
        &["--continuation", &token],
        "SELECT deviceId FROM devices WHERE status = 'enabled'",
    );
    assert_eq!(wrong.status.code(), Some(1));
    assert!(err(&wrong).contains("different query"), "{}", err(&wrong));
    let forged = query(&["--continuation", "v1.AAAA"], q);
    assert_eq!(forged.status.code(), Some(1));
    assert!(err(&forged).contains("malformed"), "{}", err(&forged));
}

#[test]
fn invalid_queries_show_diagnostics() {
    let o = query(
        &[],
        "SELECT * FROM devices WHERE STARTS_WITH(deviceId, 'a')",
    );
    assert_eq!(o.status.code(), Some(1));
    insta::assert_snapshot!("query_invalid", err(&o));
}

#[test]
fn bad_data_names_file_line_and_column() {
    let dir = std::env::temp_dir().join(format!("twinql-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let bad = dir.join("bad.jsonl");
    std::fs::write(
        &bad,
        "{\"deviceId\":\"a\"}\n{\"deviceId\":\"b\",\"tags\":{\"x\":}}\n{\"tags\":{}}\n",
    )
    .unwrap();
    let bad = bad.to_str().unwrap();
    let o = run(&["query", "--data", bad, "SELECT * FROM devices"]);
    assert_eq!(o.status.code(), Some(2));
    let e = err(&o);
    assert!(e.contains("bad.jsonl:2:"), "{e}");
    let o = run(&[
        "query",
        "--data",
        bad,
        "--skip-invalid",
        "--format",
        "jsonl",
        "SELECT deviceId FROM devices",
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", err(&o));
    assert_eq!(out(&o), "{\"deviceId\":\"a\"}\n");
    assert!(err(&o).contains("skipped 2 invalid lines"), "{}", err(&o));
}

#[test]
fn explain_shows_index_use() {
    let o = run(&[
        "explain",
        "--data",
        TWINS,
        "SELECT * FROM devices WHERE tags.location.plant = 'Redmond43'",
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", err(&o));
    insta::assert_snapshot!("explain_index", out(&o));
    let o = run(&[
        "explain",
        "--no-index",
        "--data",
        TWINS,
        "SELECT * FROM devices WHERE tags.location.plant = 'Redmond43'",
    ]);
    // Without indexes the scan reads the column of `tags.location.plant`.
    assert!(out(&o).contains("ColumnScanExec on devices"), "{}", out(&o));
    let o = run(&[
        "explain",
        "--analyze",
        "--data",
        TWINS,
        "SELECT COUNT() AS n FROM devices WHERE status = 'enabled'",
    ]);
    assert!(out(&o).contains("actual rows 1"), "{}", out(&o));
    // The access time covers building a column when the scan needs one.
    assert!(
        out(&o).contains("ms, access (indexes or columns) "),
        "{}",
        out(&o)
    );
}

#[test]
fn one_query_builds_only_the_indexes_it_uses() {
    let q = "SELECT deviceId FROM devices WHERE tags.location.plant = 'Redmond43' OR properties.reported.connectivity.type = 'cellular'";
    let o = query(&["--format", "jsonl", "--verbose-index"], q);
    assert_eq!(o.status.code(), Some(0), "{}", err(&o));
    // Two paths of the query, not the whole default policy.
    assert!(err(&o).contains("indexed 2 paths:"), "{}", err(&o));
    let scanned = query(&["--format", "jsonl", "--no-index"], q);
    assert_eq!(out(&o), out(&scanned));
    assert!(!out(&o).is_empty());
    // A query on no indexed path builds none, and still answers.
    let o = query(
        &["--verbose-index"],
        "SELECT COUNT() AS n FROM devices WHERE properties.desired.$metadata.$lastUpdated != ''",
    );
    assert_eq!(o.status.code(), Some(0), "{}", err(&o));
    assert!(err(&o).contains("indexed 0 paths:"), "{}", err(&o));
    // The policy still decides: a path it leaves out is not indexed for the query either.
    let policy = std::env::temp_dir().join(format!("twinql-policy-{}.json", std::process::id()));
    std::fs::write(&policy, r#"{"include": ["tags/*"]}"#).expect("write policy");
    let explain = |q: &str| {
        run(&[
            "explain",
            "--data",
            TWINS,
            "--index-policy",
            policy.to_str().expect("utf-8 path"),
            "--verbose-index",
            q,
        ])
    };
    let plant = "SELECT deviceId FROM devices WHERE tags.location.plant = 'Redmond43'";
    let both = explain(&q.replace(" OR ", " AND "));
    let o = explain(plant);
    let _ = std::fs::remove_file(&policy);
    assert_eq!(both.status.code(), Some(0), "{}", err(&both));
    assert!(err(&both).contains("indexed 1 path:"), "{}", err(&both));
    assert_eq!(o.status.code(), Some(0), "{}", err(&o));
    assert!(err(&o).contains("indexed 1 path:"), "{}", err(&o));
    assert!(out(&o).contains("IndexScanExec on devices"), "{}", out(&o));
    // A policy file that cannot be read is reported before any twin is loaded.
    let o = query(&["--index-policy", "/nonexistent/policy.json"], q);
    assert_eq!(o.status.code(), Some(2), "{}", err(&o));
    assert!(err(&o).contains("/nonexistent/policy.json"), "{}", err(&o));
}

#[test]
fn bench_reports_json() {
    let o = run(&[
        "bench",
        "--data",
        TWINS,
        "--queries",
        concat!(env!("CARGO_MANIFEST_DIR"), "/../shared/bench/queries.txt"),
        "--runs",
        "1",
        "--warmup",
        "0",
        "--mode",
        "count",
        "--format",
        "json",
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", err(&o));
    let v: serde_json::Value = serde_json::from_str(&out(&o)).expect("one JSON object");
    assert!(v["load_s"].is_number() && v["rss_bytes"].is_number());
    let qs = v["queries"].as_array().expect("queries");
    assert_eq!(qs.len(), 13);
    assert_eq!(qs[0]["id"], "Q01");
    assert_eq!(qs[0]["rows"], 2, "two twins in plant Redmond43");
    // Aggregates report their rows in select order, sorted, for cross-checking with peers.
    assert_eq!(qs[8]["id"], "Q09");
    assert_eq!(
        qs[8]["rows"],
        serde_json::json!([["Pending", 1], ["Success", 2], [null, 1]])
    );
}

#[test]
fn demo_runs_a_tour() {
    let o = run(&["demo", "--count", "2000"]);
    assert_eq!(o.status.code(), Some(0), "{}", err(&o));
    let s = out(&o);
    assert!(s.contains("generated 2000 twins"), "{s}");
    assert!(s.contains("== Paging"), "{s}");
}

#[test]
fn version() {
    let o = run(&["--version"]);
    assert_eq!(
        out(&o).trim(),
        format!("twinql {}", env!("CARGO_PKG_VERSION"))
    );
}
