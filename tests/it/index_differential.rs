//! Differential property tests: over generated twins and generated queries, the indexed plan,
//! the full scan, a sequential run and the paged API all return exactly the same rows.

use crate::common::query;
use proptest::prelude::*;
use std::sync::OnceLock;
use twinql::db::Access;
use twinql::r#gen::{GenOptions, generate_bytes};
use twinql::{Database, QueryOptions};
use twinql_planner::functions::FunctionSet;
use twinql_store::index::IndexPolicy;
use twinql_store::{LoadOptions, Store};

fn database() -> &'static Database {
    static DB: OnceLock<Database> = OnceLock::new();
    DB.get_or_init(|| load(true))
}

/// The same twins without indexes: queries go to the columns of their paths or scan.
fn unindexed() -> &'static Database {
    static DB: OnceLock<Database> = OnceLock::new();
    DB.get_or_init(|| load(false))
}

fn load(indexed: bool) -> Database {
    load_with(indexed.then(IndexPolicy::default).as_ref())
}

/// The generated twins, as JSON Lines.
fn twin_bytes() -> &'static [u8] {
    static BYTES: OnceLock<Vec<u8>> = OnceLock::new();
    BYTES.get_or_init(|| {
        let mut bytes = generate_bytes(&GenOptions {
            count: 3000,
            seed: 7,
            modules: 1,
            jobs: true,
        });
        // A few twins with case variants and odd types, so the index must decline or agree.
        bytes.extend_from_slice(
            br#"{"deviceId":"odd-1","tags":{"Environment":"production","environment":"test","location":{"region":5}},"properties":{"reported":{"temperature":"31"}}}
{"deviceId":"odd-2","tags":{"location":{"region":null,"plant":["Redmond43"]},"environment":true}}
{"deviceId":"odd-3","tags":{"location":"EU","environment":{"x":1}},"status":null}
{"deviceId":"odd-4","tags":{"location":{"plant":"Redmond43","plant":"Oslo1"}},"status":"disabled","status":"enabled","properties":{"reported":{"battery":5,"battery":"low"}}}
"#,
        );
        bytes
    })
}

/// The generated twins, indexed under `policy` (none: not indexed).
fn load_with(policy: Option<&IndexPolicy>) -> Database {
    let mut store = Store::new();
    store
        .load_bytes("generated", twin_bytes(), &LoadOptions::default())
        .expect("generated twins load");
    let mut db = Database::from_store(store);
    if let Some(policy) = policy {
        db.build_index(policy);
    }
    db
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 400, .. ProptestConfig::default() })]

    #[test]
    fn indexed_plans_equal_full_scans(q in query()) {
        let db = database();
        let plan = db.plan(&q, FunctionSet::Twin).expect("generated queries are valid");
        let access = db.access(&plan);
        let indexed = db.run_access(&plan, &access, true);
        let scanned = db.run_access(&plan, &Access::FullScan, true);
        prop_assert_eq!(&indexed, &scanned, "query: {} via {}", q, access.name());
        let sequential = db.run_access(&plan, &Access::FullScan, false);
        prop_assert_eq!(&sequential, &scanned, "query: {}", q);
        prop_assert_eq!(db.count_plan(&plan, true), scanned.len() as u64, "count of {}", q);
    }

    #[test]
    fn indexes_of_one_query_plan_and_answer_as_the_whole_policy(q in query()) {
        // What `twinql query --data` builds for its one query.
        let full = database();
        let plan = full.plan(&q, FunctionSet::Twin).expect("generated queries are valid");
        let policy = full.index_policy_for(&plan, &IndexPolicy::default());
        prop_assert!(policy.include.len() <= plan.index_paths().len(), "{:?}", policy);
        let narrow = load_with(Some(&policy));
        let narrow_plan = narrow.plan(&q, FunctionSet::Twin).expect("valid");
        prop_assert_eq!(
            narrow.explain(&q, FunctionSet::Twin, false).expect("explains"),
            full.explain(&q, FunctionSet::Twin, false).expect("explains"),
            "query: {}", q
        );
        let rows = narrow.run_access(&narrow_plan, &narrow.access(&narrow_plan), true);
        let expected = full.run_access(&plan, &full.access(&plan), true);
        prop_assert_eq!(rows, expected, "query: {}", q);
    }

    #[test]
    fn column_plans_equal_full_scans(q in query()) {
        let db = unindexed();
        let plan = db.plan(&q, FunctionSet::Twin).expect("generated queries are valid");
        let access = db.access(&plan);
        prop_assert!(!access.name().starts_with("Index"), "{} without indexes", access.name());
        let chosen = db.run_access(&plan, &access, true);
        let scanned = db.run_access(&plan, &Access::FullScan, false);
        prop_assert_eq!(&chosen, &scanned, "query: {} via {}", q, access.name());
        prop_assert_eq!(db.count_plan(&plan, true), scanned.len() as u64, "count of {}", q);
    }

    #[test]
    fn pages_concatenate_to_the_full_result(q in query(), page in 1usize..40) {
        let db = database();
        let all = db.query_all(&q).expect("valid");
        let mut opts = QueryOptions { page_size: page, ..QueryOptions::default() };
        let mut paged = Vec::new();
        let mut pages = 0;
        loop {
            let p = db.query(&q, &opts).expect("valid");
            prop_assert!(p.items.len() <= page);
            paged.extend(p.items);
            pages += 1;
            prop_assert!(pages <= all.len() + 2, "paging does not end");
            match p.continuation {
                Some(t) => opts.continuation = Some(t),
                None => break,
            }
        }
        prop_assert_eq!(paged, all, "query: {}", q);
    }
}

#[test]
fn selective_queries_use_the_index() {
    let db = database();
    for q in [
        "SELECT * FROM devices WHERE tags.location.plant = 'Redmond43'",
        "SELECT * FROM devices WHERE STARTSWITH(deviceId, 'sensor-1')",
        "SELECT * FROM devices WHERE NOT (status = 'enabled')",
        "SELECT * FROM devices WHERE tags.location.region IN ['EU', 'US'] AND properties.reported.temperature >= 30",
    ] {
        let plan = db.plan(q, FunctionSet::Twin).unwrap();
        assert_eq!(
            db.access(&plan).name(),
            "IndexScanExec",
            "{q} should be answered by the index"
        );
    }
    let plan = db
        .plan(
            "SELECT properties.reported.telemetryConfig.status AS s, COUNT() AS n FROM devices GROUP BY properties.reported.telemetryConfig.status",
            FunctionSet::Twin,
        )
        .unwrap();
    assert_eq!(db.access(&plan).name(), "IndexGroupExec");
    // A case variant held by one twin makes `tags.environment` ambiguous: the index declines,
    // and the column of the path, built by the evaluator's own lookup, answers instead.
    let q = "SELECT * FROM devices WHERE tags.environment = 'production'";
    let plan = db.plan(q, FunctionSet::Twin).unwrap();
    let access = db.access(&plan);
    assert_eq!(access.name(), "ColumnScanExec");
    let mut chosen = db.run_access(&plan, &access, false);
    let mut scanned = db.run_access(&plan, &Access::FullScan, false);
    chosen.sort();
    scanned.sort();
    assert!(!scanned.is_empty());
    assert_eq!(chosen, scanned);
}

#[test]
fn unindexed_queries_read_columns() {
    let db = unindexed();
    for (q, how) in [
        (
            "SELECT * FROM devices WHERE tags.location.plant = 'Redmond43'",
            "ColumnScanExec",
        ),
        (
            "SELECT * FROM devices WHERE STARTSWITH(deviceId, 'sensor-1') OR IS_DEFINED(tags.maintenanceWindow)",
            "ColumnScanExec",
        ),
        (
            "SELECT * FROM devices WHERE NOT (tags.environment = 'production')",
            "ColumnScanExec",
        ),
        // Two paths in one comparison: the other conjunct narrows, the filter checks.
        (
            "SELECT * FROM devices WHERE tags.location.region = 'EU' AND properties.reported.temperature > properties.reported.battery",
            "ColumnScanExec+Filter",
        ),
        (
            "SELECT COUNT() AS n FROM devices WHERE properties.reported.connectivity.type = 'cellular'",
            "ColumnGroupExec",
        ),
        (
            "SELECT tags.location.region AS r, COUNT() AS n FROM devices GROUP BY tags.location.region",
            "ColumnGroupExec",
        ),
        // TOP over rows stops early in a scan; a path-to-path filter cannot use columns.
        (
            "SELECT TOP 3 * FROM devices WHERE status = 'enabled'",
            "FullScanExec",
        ),
        (
            "SELECT * FROM devices WHERE tags.location.plant = deviceId",
            "FullScanExec",
        ),
    ] {
        let plan = db.plan(q, FunctionSet::Twin).unwrap();
        let access = db.access(&plan);
        assert_eq!(access.name(), how, "{q}");
        let chosen = db.run_access(&plan, &access, true);
        let scanned = db.run_access(&plan, &Access::FullScan, false);
        assert_eq!(chosen, scanned, "{q}");
    }
}

#[test]
fn counts_read_off_postings_equal_the_rows() {
    // One comparison or prefix over an indexed path is counted as the length of a range of
    // its postings: value dictionaries (few values) and sorted arrays (ids, versions, dates)
    // alike, with the constant on either side, `TOP` capping the count.
    let db = database();
    let mut nonempty = 0;
    for q in [
        "SELECT * FROM devices WHERE STARTSWITH(deviceId, 'sensor-1')",
        "SELECT * FROM devices WHERE STARTSWITH(deviceId, '')",
        "SELECT * FROM devices WHERE STARTSWITH(deviceId, 'zzz')",
        "SELECT * FROM devices WHERE STARTSWITH(tags.location.plant, 'Red')",
        "SELECT deviceId FROM devices WHERE deviceId = 'odd-2'",
        "SELECT * FROM devices WHERE deviceId >= 'meter-5'",
        "SELECT * FROM devices WHERE 'meter-5' > deviceId",
        "SELECT * FROM devices WHERE deviceId <= 'odd-1'",
        "SELECT * FROM devices WHERE tags.location.plant = 'Redmond43'",
        "SELECT * FROM devices WHERE tags.location.plant < 'Redmond43'",
        "SELECT * FROM devices WHERE properties.reported.temperature >= 30",
        "SELECT * FROM devices WHERE 30 <= properties.reported.temperature",
        "SELECT * FROM devices WHERE properties.reported.temperature < 20.5",
        "SELECT * FROM devices WHERE properties.reported.battery > 50",
        "SELECT * FROM devices WHERE properties.reported.battery = -0",
        "SELECT * FROM devices WHERE version > 100",
        "SELECT * FROM devices WHERE version <= 100",
        "SELECT * FROM devices WHERE lastActivityTime > '2025-01-01'",
        "SELECT TOP 7 * FROM devices WHERE version > 100",
        "SELECT * FROM devices WHERE tags.nowhere.at.all = 3",
        "SELECT * FROM devices.modules WHERE STARTSWITH(moduleId, 'm')",
        // Comparisons of one path in an AND make one range.
        "SELECT * FROM devices WHERE properties.reported.temperature >= 30 AND properties.reported.temperature < 35",
        "SELECT * FROM devices WHERE 30 <= properties.reported.temperature AND properties.reported.temperature <= 30.5 AND properties.reported.temperature > 30",
        "SELECT * FROM devices WHERE properties.reported.battery = 50 AND properties.reported.battery <= 50",
        "SELECT * FROM devices WHERE properties.reported.battery >= 50 AND properties.reported.battery > 50",
        "SELECT * FROM devices WHERE properties.reported.battery > 50 AND properties.reported.battery >= 50",
        "SELECT * FROM devices WHERE properties.reported.battery <= 50 AND properties.reported.battery < 50",
        "SELECT * FROM devices WHERE properties.reported.battery < 50 AND properties.reported.battery <= 50",
        "SELECT * FROM devices WHERE properties.reported.battery >= 50 AND properties.reported.battery < 50",
        "SELECT * FROM devices WHERE version > 100 AND version < 50",
        "SELECT * FROM devices WHERE version > 100 AND 400 >= version",
        "SELECT * FROM devices WHERE deviceId >= 'meter' AND deviceId < 'sensor'",
        "SELECT * FROM devices WHERE deviceId > 'meter-1' AND deviceId <= 'meter-1'",
        // IN lists: one range per distinct value.
        "SELECT * FROM devices WHERE tags.location.region IN ['US', 'EU']",
        "SELECT * FROM devices WHERE tags.location.region IN ['US', 'US', 'EU', 'US']",
        "SELECT * FROM devices WHERE properties.reported.battery IN [10, 20, 10, -0, 0, '10']",
        "SELECT * FROM devices WHERE tags.location.region IN ['US', 5, null]",
        "SELECT * FROM devices WHERE tags.location.region NIN ['US', 'EU']",
        "SELECT * FROM devices WHERE deviceId IN ['odd-1', 'odd-3', 'odd-1', 'nobody']",
    ] {
        let plan = db.plan(q, FunctionSet::Twin).unwrap();
        let rows = db.run_access(&plan, &Access::FullScan, false);
        nonempty += usize::from(!rows.is_empty());
        assert_eq!(db.count_plan(&plan, false), rows.len() as u64, "{q}");
        let access = db.access(&plan);
        assert_eq!(db.run_access(&plan, &access, false), rows, "{q}");
    }
    assert!(nonempty >= 25, "{nonempty} of the queries match twins");
}

#[test]
fn comparisons_of_one_path_met_in_a_range_answer_as_a_scan() {
    // Ranges met from several comparisons, under NOT (their false sets), beside other
    // conditions, with constants of two types on one path, and with TOP.
    let db = database();
    let mut nonempty = 0;
    for q in [
        "SELECT * FROM devices WHERE NOT (properties.reported.temperature >= 30 AND properties.reported.temperature < 35)",
        "SELECT * FROM devices WHERE properties.reported.temperature >= 30 AND properties.reported.temperature < '35'",
        "SELECT * FROM devices WHERE properties.reported.temperature > 30 AND properties.reported.temperature > 31 AND properties.reported.temperature <= 31.5 AND tags.location.region = 'EU'",
        "SELECT * FROM devices WHERE properties.reported.battery < 20 AND (properties.reported.battery > 5 OR tags.floor = 3) AND properties.reported.battery >= 3",
        "SELECT TOP 5 * FROM devices WHERE version >= 10 AND version < 300 AND tags.location.region = 'US'",
        "SELECT * FROM devices WHERE NOT (deviceId >= 'meter' AND deviceId < 'sensor' AND version > 100)",
        "SELECT properties.reported.telemetryConfig.status AS s, COUNT() AS n FROM devices WHERE properties.reported.battery > 10 AND properties.reported.battery <= 60 GROUP BY properties.reported.telemetryConfig.status",
    ] {
        let plan = db.plan(q, FunctionSet::Twin).unwrap();
        let access = db.access(&plan);
        let rows = db.run_access(&plan, &access, false);
        let scanned = db.run_access(&plan, &Access::FullScan, false);
        nonempty += usize::from(!scanned.is_empty());
        assert_eq!(rows, scanned, "{q} via {}", access.name());
        assert_eq!(db.count_plan(&plan, false), scanned.len() as u64, "{q}");
    }
    assert!(nonempty >= 6, "{nonempty} of the queries match twins");
}

#[test]
fn ungrouped_counts_of_a_range_are_read_off_postings() {
    // `SELECT COUNT() … WHERE <one range>` is answered by the range's length; aggregates that
    // need values, or filters the postings cannot count, go the way they went before.
    let db = database();
    for (q, how) in [
        (
            "SELECT COUNT() AS n FROM devices WHERE STARTSWITH(deviceId, 'sensor-1')",
            "IndexCountExec",
        ),
        (
            "SELECT COUNT() FROM devices WHERE properties.reported.battery >= 20 AND properties.reported.battery < 60",
            "IndexCountExec",
        ),
        (
            "SELECT COUNT() AS a, COUNT() AS b FROM devices WHERE version > 100",
            "IndexCountExec",
        ),
        (
            "SELECT COUNT() AS n FROM devices WHERE deviceId = 'no-such-device'",
            "IndexCountExec",
        ),
        (
            "SELECT COUNT() AS n FROM devices.modules WHERE STARTSWITH(moduleId, 'm')",
            "IndexCountExec",
        ),
        (
            "SELECT COUNT() AS n FROM devices WHERE tags.location.region IN ['US', 'EU', 'US']",
            "IndexCountExec",
        ),
        (
            "SELECT COUNT() AS n, SUM(properties.reported.battery) AS s FROM devices WHERE version > 100",
            "IndexGroupExec",
        ),
        (
            "SELECT COUNT() AS n FROM devices WHERE version > 100 AND tags.location.region = 'EU'",
            "IndexGroupExec",
        ),
    ] {
        let plan = db.plan(q, FunctionSet::Twin).unwrap();
        let access = db.access(&plan);
        assert_eq!(access.name(), how, "{q}");
        let rows = db.run_access(&plan, &access, false);
        let scanned = db.run_access(&plan, &Access::FullScan, false);
        assert_eq!(rows.len(), 1, "{q}");
        assert_eq!(rows, scanned, "{q}");
        assert_eq!(db.count_plan(&plan, false), 1, "{q}");
        assert_eq!(db.query_all(q).unwrap(), scanned, "{q}");
    }
    // The counts are those of the rows the same filter selects.
    let n = db
        .query_all("SELECT COUNT() AS n FROM devices WHERE STARTSWITH(deviceId, 'sensor-1')")
        .unwrap();
    let rows = db
        .query_all("SELECT deviceId FROM devices WHERE STARTSWITH(deviceId, 'sensor-1')")
        .unwrap();
    assert!(!rows.is_empty());
    assert_eq!(n, vec![format!("{{\"n\":{}}}", rows.len())]);
}
