//! Differential property tests over writes: after any sequence of creates, deletes and
//! patches, the index (base + delta) answers exactly as a full scan of the same snapshot, and
//! both answer exactly as a database freshly loaded from the written twins.

use crate::common;

use proptest::prelude::*;
use std::sync::OnceLock;
use twinql::db::Access;
use twinql::r#gen::{GenOptions, generate_bytes};
use twinql::{Database, TwinId};
use twinql_planner::functions::FunctionSet;
use twinql_store::{LoadOptions, Store};

const TWINS: usize = 600;

fn bytes() -> &'static [u8] {
    static B: OnceLock<Vec<u8>> = OnceLock::new();
    B.get_or_init(|| {
        generate_bytes(&GenOptions {
            count: TWINS as u64,
            seed: 11,
            modules: 1,
            jobs: false,
        })
    })
}

fn fresh() -> Database {
    common::indexed_db(bytes())
}

/// The same twins without indexes: queries read the columns of the loaded twins and the
/// written twins themselves.
fn fresh_unindexed() -> Database {
    let mut s = Store::new();
    s.load_bytes("generated", bytes(), &LoadOptions::default())
        .expect("load");
    Database::from_store(s)
}

fn device_ids() -> &'static [String] {
    static IDS: OnceLock<Vec<String>> = OnceLock::new();
    IDS.get_or_init(|| {
        let db = Database::from_store({
            let mut s = Store::new();
            s.load_bytes("generated", bytes(), &LoadOptions::default())
                .expect("load");
            s
        });
        db.query_all("SELECT deviceId FROM devices")
            .expect("valid")
            .iter()
            .map(|r| {
                let v: serde_json::Value = serde_json::from_str(r).expect("json");
                v["deviceId"].as_str().expect("id").to_string()
            })
            .collect()
    })
}

#[derive(Clone, Debug)]
enum Write {
    Tags(usize, String),
    Desired(usize, String),
    Reported(usize, String),
    Replace(usize, String),
    Create(usize),
    Delete(usize),
}

fn value() -> impl Strategy<Value = String> {
    prop_oneof![
        prop::sample::select(vec![
            "\"EU\"",
            "\"US\"",
            "\"Redmond43\"",
            "\"production\"",
            "\"Error\"",
            "\"cellular\"",
            "\"31\"",
            "\"\"",
            "true",
            "false",
            "null",
            "{\"region\":\"EU\",\"plant\":\"Oslo1\"}",
            "{\"type\":\"cellular\"}",
            "{\"status\":\"Error\"}",
            "{\"x\":{\"y\":1}}",
            "[1,2]",
        ])
        .prop_map(str::to_string),
        (-5i64..120).prop_map(|n| n.to_string()),
        prop::sample::select(vec!["25.5", "30", "-0", "1e1"]).prop_map(str::to_string),
    ]
}

fn patch(keys: &'static [&'static str]) -> impl Strategy<Value = String> {
    prop::collection::vec((prop::sample::select(keys), value()), 1..4).prop_map(|kv| {
        let body: Vec<String> = kv.iter().map(|(k, v)| format!("\"{k}\":{v}")).collect();
        format!("{{{}}}", body.join(","))
    })
}

const TAG_KEYS: &[&str] = &[
    "location",
    "environment",
    "Environment",
    "floor",
    "maintenanceWindow",
    "brandNew",
];
const REPORTED_KEYS: &[&str] = &[
    "temperature",
    "battery",
    "connectivity",
    "telemetryConfig",
    "Temperature",
    "fresh",
];
const DESIRED_KEYS: &[&str] = &["telemetryConfig", "power_level", "mode"];

fn write() -> impl Strategy<Value = Write> {
    let dev = 0..TWINS + 8;
    prop_oneof![
        3 => (dev.clone(), patch(TAG_KEYS)).prop_map(|(d, p)| Write::Tags(d, p)),
        2 => (dev.clone(), patch(DESIRED_KEYS)).prop_map(|(d, p)| Write::Desired(d, p)),
        4 => (dev.clone(), patch(REPORTED_KEYS)).prop_map(|(d, p)| Write::Reported(d, p)),
        1 => (dev.clone(), patch(TAG_KEYS), patch(DESIRED_KEYS)).prop_map(|(d, t, p)| {
            Write::Replace(d, format!("{{\"tags\":{t},\"properties\":{{\"desired\":{p}}}}}"))
        }),
        1 => dev.clone().prop_map(Write::Create),
        1 => dev.prop_map(Write::Delete),
    ]
}

fn id(i: usize) -> TwinId {
    match device_ids().get(i) {
        Some(d) => TwinId::device(d),
        None => TwinId::device(&format!("new-device-{i}")),
    }
}

fn apply(db: &Database, w: &Write) {
    // Refusals (a missing device, a patch over a limit) are part of the game: they must
    // change nothing, which the comparison with a fresh load checks.
    let _ = match w {
        Write::Tags(d, p) => db.patch_tags(&id(*d), p, None).map(|_| ()),
        Write::Desired(d, p) => db.patch_desired(&id(*d), p, Some("*")).map(|_| ()),
        Write::Reported(d, p) => db.patch_reported(&id(*d), p).map(|_| ()),
        Write::Replace(d, p) => db.replace_twin(&id(*d), p, None).map(|_| ()),
        Write::Create(d) => db.create_twin(&id(*d)).map(|_| ()),
        Write::Delete(d) => db.delete_twin(&id(*d), None),
    };
}

fn rows(db: &Database, q: &str) -> (Vec<String>, Vec<String>, String) {
    let snap = db.snapshot();
    let plan = snap.plan(q, FunctionSet::Twin).expect("valid query");
    let access = snap.access(&plan);
    let indexed = snap.run_access(&plan, &access, true);
    let scanned = snap.run_access(&plan, &Access::FullScan, false);
    (indexed, scanned, access.name().to_string())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, .. ProptestConfig::default() })]

    #[test]
    fn writes_keep_index_scan_and_reload_equal(
        writes in prop::collection::vec(write(), 1..60),
        queries in prop::collection::vec(common::query(), 8),
    ) {
        check_writes(fresh(), &writes, &queries)?;
    }

    #[test]
    fn writes_keep_column_scan_and_reload_equal(
        writes in prop::collection::vec(write(), 1..60),
        queries in prop::collection::vec(common::query(), 8),
    ) {
        check_writes(fresh_unindexed(), &writes, &queries)?;
    }
}

/// After `writes`, every query answers the same through the chosen access path and a full
/// scan, and again after the writes are folded into a new base.
fn check_writes(
    mut db: Database,
    writes: &[Write],
    queries: &[String],
) -> Result<(), TestCaseError> {
    {
        for w in writes {
            apply(&db, w);
        }
        let mut before = Vec::new();
        for q in queries {
            let (indexed, scanned, how) = rows(&db, q);
            prop_assert_eq!(
                &indexed,
                &scanned,
                "query {} via {} after {:?}",
                q,
                how,
                writes
            );
            let snap = db.snapshot();
            let plan = snap.plan(q, FunctionSet::Twin).expect("valid");
            prop_assert_eq!(
                snap.count_plan(&plan, true),
                scanned.len() as u64,
                "count of {}",
                q
            );
            before.push(scanned);
        }
        // Folding the writes into a freshly loaded base changes no answer.
        db.compact();
        for (q, want) in queries.iter().zip(&before) {
            let (indexed, scanned, how) = rows(&db, q);
            prop_assert_eq!(
                &scanned,
                want,
                "query {} after compaction, writes {:?}",
                q,
                writes
            );
            prop_assert_eq!(&indexed, want, "query {} via {} after compaction", q, how);
        }
    }
    Ok(())
}

#[test]
fn a_patched_twin_moves_between_index_answers() {
    let db = fresh();
    let dev = id(0);
    let q = "SELECT deviceId FROM devices WHERE tags.location.plant = 'Plant-Zeta'";
    assert!(db.query_all(q).unwrap().is_empty());
    db.patch_tags(&dev, r#"{"location":{"plant":"Plant-Zeta"}}"#, None)
        .unwrap();
    let found = db.query_all(q).unwrap();
    assert_eq!(
        found,
        vec![format!("{{\"deviceId\":\"{}\"}}", dev.device_id)]
    );
    let plan = db.plan(q, FunctionSet::Twin).unwrap();
    assert_eq!(db.access(&plan).name(), "IndexScanExec");
    // NOT keeps three-valued semantics through the delta: the twin's plant is a string.
    let not_q = "SELECT COUNT() AS n FROM devices WHERE NOT (tags.location.plant = 'Plant-Zeta')";
    let snap = db.snapshot();
    let plan = snap.plan(not_q, FunctionSet::Twin).unwrap();
    assert_eq!(
        snap.run_access(&plan, &snap.access(&plan), true),
        snap.run_access(&plan, &Access::FullScan, true)
    );
    db.patch_tags(&dev, r#"{"location":null}"#, None).unwrap();
    assert!(db.query_all(q).unwrap().is_empty());
    db.delete_twin(&dev, None).unwrap();
    assert!(db.get_twin(&dev).is_err());
    let all = db.query_all("SELECT COUNT() AS n FROM devices").unwrap();
    assert_eq!(all, vec![format!("{{\"n\":{}}}", TWINS - 1)]);
}

/// A section patch re-indexes only the members it names, so the members every such write
/// changes besides them must be re-indexed too: the twin's `version` and `etag`, and the
/// section's `$version` and `$metadata` (indexed here by a policy that includes them).
#[test]
fn section_patches_reindex_versions_etags_and_metadata() {
    let mut store = Store::new();
    store
        .load_bytes("generated", bytes(), &LoadOptions::default())
        .expect("load");
    let mut db = Database::from_store(store);
    let policy = twinql_store::index::IndexPolicy::from_json(
        r#"{"include": ["tags/*", "properties/*", "version", "etag"], "exclude": []}"#,
    )
    .expect("policy");
    db.build_index(&policy);
    let dev = id(3);
    let before: serde_json::Value =
        serde_json::from_str(&db.get_twin(&dev).expect("twin")).expect("json");
    db.patch_reported(&dev, r#"{"temperature":-41.5}"#).unwrap();
    db.patch_desired(&dev, r#"{"mode":"eco"}"#, None).unwrap();
    db.patch_tags(&dev, r#"{"floor":77}"#, None).unwrap();
    let after: serde_json::Value =
        serde_json::from_str(&db.get_twin(&dev).expect("twin")).expect("json");
    let reported_at = after["properties"]["reported"]["$metadata"]["temperature"]["$lastUpdated"]
        .as_str()
        .expect("dated")
        .to_string();
    // (condition, whether the written twin meets it now)
    let checks = [
        (format!("version = {}", after["version"]), true),
        (format!("version = {}", before["version"]), false),
        (
            format!("etag = '{}'", after["etag"].as_str().unwrap()),
            true,
        ),
        (
            format!("etag = '{}'", before["etag"].as_str().unwrap()),
            false,
        ),
        (
            format!(
                "properties.reported.$version = {}",
                after["properties"]["reported"]["$version"]
            ),
            true,
        ),
        (
            format!(
                "properties.reported.$version = {}",
                before["properties"]["reported"]["$version"]
            ),
            false,
        ),
        (
            format!(
                "properties.desired.$version = {}",
                after["properties"]["desired"]["$version"]
            ),
            true,
        ),
        (
            format!("properties.reported.$metadata.temperature.$lastUpdated = '{reported_at}'"),
            true,
        ),
        (
            format!("properties.reported.$metadata.$lastUpdated = '{reported_at}'"),
            true,
        ),
        (
            format!(
                "properties.desired.$metadata.mode.$lastUpdated = '{}'",
                after["properties"]["desired"]["$metadata"]["mode"]["$lastUpdated"]
                    .as_str()
                    .expect("dated")
            ),
            true,
        ),
        ("properties.reported.temperature = -41.5".to_string(), true),
        ("tags.floor = 77".to_string(), true),
    ];
    for (cond, found) in checks {
        let q = format!("SELECT deviceId FROM devices WHERE {cond}");
        let (indexed, scanned, how) = rows(&db, &q);
        assert_eq!(indexed, scanned, "{q} via {how}");
        assert!(
            how.starts_with("Index"),
            "{q} is answered by the index ({how})"
        );
        assert_eq!(
            scanned.iter().any(|r| r.contains(&dev.device_id)),
            found,
            "{q}: {scanned:?}"
        );
    }
}

/// A twin reads back as the same JSON text whether it is rendered from the loaded tape or,
/// after a write, from its packed form: strings with every kind of escape included.
#[test]
fn written_twins_render_strings_as_loaded_twins_do() {
    let tags = serde_json::json!({
        "note": "tab\there \"quoted\" back\\slash \u{8}\u{c}\n\r \u{1}\u{1f}\u{7f} é€😀",
        "plain": "a string long enough to span several eight-byte words of text",
        "n": [1, 2.5, -0.0, 1e21, 12345678901234567890u64]
    });
    let twin = serde_json::json!({"deviceId": "d1", "tags": tags, "properties": {"desired": {}, "reported": {}}});
    let mut store = Store::new();
    store
        .load_bytes(
            "one",
            format!("{twin}\n").as_bytes(),
            &LoadOptions::default(),
        )
        .expect("load");
    let db = Database::from_store(store);
    let q = "SELECT tags FROM devices";
    let loaded = db.query_all(q).unwrap();
    assert_eq!(
        loaded,
        vec![serde_json::json!({ "tags": tags }).to_string()]
    );
    // A reported patch leaves the tags alone, but the twin is now read from its packed form.
    db.patch_reported(&TwinId::device("d1"), r#"{"x": 1}"#)
        .unwrap();
    let plan = db.plan("SELECT * FROM devices", FunctionSet::Twin).unwrap();
    assert!(db.run_plan(&plan, true)[0].contains("\"x\":1"));
    assert_eq!(db.query_all(q).unwrap(), loaded);
}

#[test]
fn counts_after_writes_equal_the_rows() {
    // Counting reads a range's length off the base postings only while no write changed the
    // path and no twin was created or deleted; every other count builds the documents' set.
    let db = fresh();
    let queries = [
        "SELECT * FROM devices WHERE STARTSWITH(deviceId, 'sensor-1')",
        "SELECT * FROM devices WHERE tags.location.plant = 'Redmond43'",
        "SELECT * FROM devices WHERE tags.location.plant >= 'R' AND tags.location.plant < 'S'",
        "SELECT * FROM devices WHERE properties.reported.battery >= 20 AND properties.reported.battery < 60",
        "SELECT * FROM devices WHERE properties.reported.temperature > 25",
        "SELECT * FROM devices WHERE version > 3",
    ];
    let check = |when: &str| {
        let snap = db.snapshot();
        for q in queries {
            let plan = snap.plan(q, FunctionSet::Twin).unwrap();
            let scanned = snap.run_access(&plan, &Access::FullScan, false);
            assert_eq!(
                snap.count_plan(&plan, false),
                scanned.len() as u64,
                "{q} {when}"
            );
            // The same filter under `SELECT COUNT()`.
            let counted = q.replacen("SELECT *", "SELECT COUNT() AS n", 1);
            let plan = snap.plan(&counted, FunctionSet::Twin).unwrap();
            let rows = snap.run_access(&plan, &snap.access(&plan), false);
            assert_eq!(
                rows,
                vec![format!("{{\"n\":{}}}", scanned.len())],
                "{counted} {when}"
            );
        }
    };
    check("before any write");
    // Reported patches move twins between battery and temperature values (and versions);
    // tags and ids are untouched.
    for (i, b) in [(0, 10), (1, 30), (2, 59), (3, 60), (4, 95)] {
        db.patch_reported(&id(i), &format!(r#"{{"battery":{b},"temperature":40}}"#))
            .unwrap();
    }
    check("after reported patches");
    db.patch_tags(&id(5), r#"{"location":{"plant":"Redmond43"}}"#, None)
        .unwrap();
    check("after a tags patch");
    db.create_twin(&TwinId::device("sensor-1-new")).unwrap();
    check("after a create");
    db.delete_twin(&id(6), None).unwrap();
    check("after a delete");
}
