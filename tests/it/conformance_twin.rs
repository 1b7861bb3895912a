//! Runs every twin, module and job query of `../shared/conformance/twin_cases.jsonl` that has
//! expected rows, over its dataset, and compares the rows.
//!
//! Deliberate divergences are listed in [`DIVERGENCES`] with their reasons (and in the
//! README's compatibility notes); the test fails if a listed case starts passing or an unlisted
//! one fails, so the list cannot drift.

use serde_json::Value;
use std::collections::BTreeMap;
use twinql::{Database, QueryOptions};
use twinql_planner::functions::FunctionSet;
use twinql_store::index::IndexPolicy;
use twinql_store::{LoadOptions, Store};

const DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../shared/conformance");

/// Cases twinql deliberately answers differently, by query text, with the reason.
///
/// All are restatements of routing-engine tests (`derived-from-routing`), where the routing
/// engine's rules differ from the twin-query rules of the language reference.
const DIVERGENCES: &[(&str, &str)] = &[
    (
        "SELECT * FROM devices WHERE tags.Weather.Temperature <> '100'",
        "a number compared with a string is Undefined in twin queries (spec §2.3, Cosmos \
         semantics), so `!=` does not match; the routing engine answers `true`",
    ),
    (
        "SELECT * FROM devices WHERE tags.Weather.InvalidKey <> '100'",
        "a missing member is Undefined in twin queries (spec §2.2), so `!=` does not match; \
         the routing engine reads a missing body key as null",
    ),
    (
        "SELECT * FROM devices WHERE tags.Temperature = null",
        "a missing member is Undefined, not null, in twin queries (spec §2.2-§2.3)",
    ),
    (
        "SELECT * FROM devices WHERE tags.Weather.InvalidProperty = null",
        "a missing member is Undefined, not null, in twin queries (spec §2.2-§2.3)",
    ),
    (
        "SELECT * FROM devices WHERE NOT (tags.Weather.InvalidProperty != null)",
        "a missing member is Undefined, not null, in twin queries (spec §2.2-§2.3)",
    ),
    (
        "SELECT * FROM devices WHERE tags.Weather.Temperature != null",
        "a number compared with null is Undefined in twin queries (spec §2.3: `null = x` is \
         Undefined for non-null x); the routing engine answers `true`",
    ),
    (
        "SELECT * FROM devices WHERE tags.Weather.Location.State <> null",
        "a string compared with null is Undefined in twin queries (spec §2.3); the routing \
         engine answers `true`",
    ),
];

fn read(name: &str) -> String {
    let path = format!("{DIR}/{name}");
    std::fs::read_to_string(&path).unwrap_or_else(|e| {
        panic!("cannot read {path}: {e} (the conformance data must sit beside the checkout)")
    })
}

fn load(docs: &[Value], indexed: bool) -> Database {
    let mut text = String::new();
    for d in docs {
        text.push_str(&d.to_string());
        text.push('\n');
    }
    let mut store = Store::new();
    store
        .load_bytes("case", text.as_bytes(), &LoadOptions::default())
        .expect("dataset loads");
    let mut db = Database::from_store(store);
    if indexed {
        db.build_index(&IndexPolicy::default());
    }
    db
}

fn ident(row: &Value, compare: &str) -> Value {
    let pick = |k: &str| row.get(k).cloned().unwrap_or(Value::Null);
    match compare {
        "deviceId" | "deviceId-unordered" => pick("deviceId"),
        "deviceId+moduleId" => Value::Array(vec![pick("deviceId"), pick("moduleId")]),
        "deviceId+jobId" => Value::Array(vec![pick("deviceId"), pick("jobId")]),
        _ => row.clone(),
    }
}

fn sorted(mut v: Vec<Value>) -> Vec<Value> {
    v.sort_by_key(|x| x.to_string());
    v
}

/// Runs a query to the end through the paged API (page size 2, to exercise continuation).
fn run_paged(db: &Database, q: &str, functions: FunctionSet) -> Result<Vec<Value>, String> {
    let mut opts = QueryOptions {
        page_size: 2,
        functions,
        ..QueryOptions::default()
    };
    let mut rows = Vec::new();
    loop {
        let page = db.query(q, &opts).map_err(|e| e.to_string())?;
        rows.extend(page.values());
        match page.continuation {
            Some(t) => opts.continuation = Some(t),
            None => return Ok(rows),
        }
    }
}

#[test]
fn twin_cases_with_expected_rows_scanning() {
    run_cases(false);
}

#[test]
fn twin_cases_with_expected_rows_indexed() {
    run_cases(true);
}

fn run_cases(indexed: bool) {
    let datasets: BTreeMap<String, Value> =
        serde_json::from_str(&read("datasets.json")).expect("datasets.json parses");
    let mut failures: BTreeMap<String, String> = BTreeMap::new();
    let mut passed = 0;
    let mut extended = 0;
    for (n, line) in read("twin_cases.jsonl").lines().enumerate() {
        let case: Value = serde_json::from_str(line).expect("case parses");
        let Some(expect) = case["expect"].as_object() else {
            continue;
        };
        let (rows, include) = match (expect.get("rows"), expect.get("rows_include")) {
            (Some(r), _) => (r.as_array().expect("rows").clone(), false),
            (None, Some(r)) => (r.as_array().expect("rows_include").clone(), true),
            _ => continue,
        };
        let q = case["query"].as_str().expect("query");
        let mut docs: Vec<Value> = Vec::new();
        let ds = match case.get("dataset").and_then(Value::as_str) {
            Some(name) => datasets[name].clone(),
            None => serde_json::json!({ "twins": case["twins"].clone() }),
        };
        for key in ["twins", "modules"] {
            if let Some(a) = ds.get(key).and_then(Value::as_array) {
                docs.extend(a.iter().cloned());
            }
        }
        let db = load(&docs, indexed);
        let mut result = run_paged(&db, q, FunctionSet::Twin);
        if result.is_err() && case["expect_origin"] == "derived-from-routing" {
            // Restated routing tests may use routing functions, which twin queries reject by
            // default; twinql's extended function set accepts them.
            result = run_paged(&db, q, FunctionSet::Extended);
            extended += 1;
        }
        let compare = case.get("compare").and_then(Value::as_str).unwrap_or("");
        let outcome = match result {
            Err(e) => Err(format!("error: {e}")),
            Ok(got) => {
                let got: Vec<Value> = got.iter().map(|r| ident(r, compare)).collect();
                let want: Vec<Value> = rows.iter().map(|r| ident(r, compare)).collect();
                let ok = if include {
                    want.iter().all(|w| got.contains(w))
                } else {
                    sorted(got.clone()) == sorted(want.clone())
                };
                if ok {
                    Ok(())
                } else {
                    Err(format!(
                        "got {}, want {}",
                        Value::Array(got),
                        Value::Array(want)
                    ))
                }
            }
        };
        match outcome {
            Ok(()) => passed += 1,
            Err(e) => {
                failures.insert(q.to_string(), format!("line {}: {e}", n + 1));
            }
        }
    }
    println!(
        "twin conformance (indexed: {indexed}): {passed} passed, {} diverging, {extended} with extended functions",
        failures.len()
    );
    let listed: BTreeMap<&str, &str> = DIVERGENCES.iter().copied().collect();
    let unexpected: Vec<_> = failures
        .iter()
        .filter(|(q, _)| !listed.contains_key(q.as_str()))
        .collect();
    let fixed: Vec<_> = listed
        .keys()
        .filter(|q| !failures.contains_key(**q))
        .collect();
    assert!(
        unexpected.is_empty(),
        "unexpected failures:\n{unexpected:#?}"
    );
    assert!(
        fixed.is_empty(),
        "listed divergences that now pass (remove them): {fixed:#?}"
    );
    assert!(
        passed + failures.len() >= 85,
        "only {} cases ran",
        passed + failures.len()
    );
}
