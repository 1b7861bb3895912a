//! Applies arbitrary writes to a few twins: each input line is one write, its first byte the
//! kind (tags, desired, reported, twin patch, replace, create, delete), its second byte the
//! twin, the rest the JSON body (any bytes). Nothing may panic; every twin stays a JSON object
//! whose version only grows; refused writes change nothing; and the index (base plus delta)
//! answers exactly as a full scan afterwards.

#![no_main]

use libfuzzer_sys::fuzz_target;
use twinql::db::Access;
use twinql::{Database, TwinId};
use twinql_planner::functions::FunctionSet;
use twinql_store::index::IndexPolicy;
use twinql_store::{LoadOptions, Store};

const TWINS: &[u8] = br#"{"deviceId":"d0","version":3,"etag":"AAAAAAAAAAM=","tags":{"location":{"region":"US","plant":"Redmond43"},"floor":3},"properties":{"desired":{"power_level":1,"$metadata":{"$lastUpdated":"2024-01-01T00:00:00Z"},"$version":2},"reported":{"temperature":21.5,"connectivity":{"type":"cellular"},"$metadata":{"$lastUpdated":"2024-01-01T00:00:00Z"},"$version":4}}}
{"deviceId":"d1","tags":{"location":{"region":"EU"}},"properties":{"reported":{"temperature":"31","battery":5}}}
{"deviceId":"d2"}
{"deviceId":"d0","moduleId":"m0","properties":{"desired":{},"reported":{}}}
"#;

const QUERIES: &[&str] = &[
    "SELECT * FROM devices WHERE tags.location.plant = 'Redmond43'",
    "SELECT deviceId FROM devices WHERE properties.reported.temperature > 20",
    "SELECT deviceId FROM devices WHERE NOT (tags.location.region = 'US')",
    "SELECT deviceId FROM devices WHERE IS_DEFINED(tags.floor) OR properties.reported.battery < 10",
    "SELECT deviceId FROM devices WHERE IS_STRING(properties.reported.temperature)",
    "SELECT tags.location.region AS r, COUNT() AS n FROM devices GROUP BY tags.location.region",
    "SELECT COUNT() AS n FROM devices WHERE properties.desired.power_level = 1",
    "SELECT * FROM devices.modules WHERE properties.reported.x = 1",
];

fn id(b: u8) -> TwinId {
    match b % 6 {
        0..=2 => TwinId::device(&format!("d{}", b % 6)),
        3 => TwinId::module("d0", "m0"),
        4 => TwinId::device("new"),
        _ => TwinId::module("new", "m1"),
    }
}

fn version(db: &Database, t: &TwinId) -> Option<u64> {
    let text = db.get_twin(t).ok()?;
    let v: serde_json::Value = serde_json::from_str(&text).expect("a stored twin is JSON");
    assert!(v.is_object(), "a stored twin is an object");
    Some(v.get("version").and_then(|x| x.as_u64()).unwrap_or(0))
}

fuzz_target!(|data: &[u8]| {
    let mut store = Store::new();
    store
        .load_bytes("twins", TWINS, &LoadOptions { progress: false, ..LoadOptions::default() })
        .expect("fixture loads");
    let mut db = Database::from_store(store);
    db.build_index(&IndexPolicy::default());
    for line in data.split(|&b| b == b'\n').take(64) {
        let [op, who, body @ ..] = line else { continue };
        let body = String::from_utf8_lossy(body);
        let t = id(*who);
        let before = db.get_twin(&t).ok();
        let v0 = version(&db, &t);
        let r = match op % 7 {
            0 => db.patch_tags(&t, &body, None).map(|_| ()),
            1 => db.patch_desired(&t, &body, Some("*")).map(|_| ()),
            2 => db.patch_reported(&t, &body).map(|_| ()),
            3 => db.patch_twin(&t, &body, None).map(|_| ()),
            4 => db.replace_twin(&t, &body, Some("AAAAAAAAAAM=")).map(|_| ()),
            5 => db.create_twin(&t).map(|_| ()),
            _ => db.delete_twin(&t, None),
        };
        match r {
            Err(_) => assert_eq!(db.get_twin(&t).ok(), before, "a refused write changed {t}"),
            Ok(()) if op % 7 < 5 => {
                let v1 = version(&db, &t);
                assert!(v1 > v0, "version of {t} did not grow: {v0:?} -> {v1:?}");
            }
            Ok(()) => {}
        }
    }
    let snap = db.snapshot();
    for q in QUERIES {
        let plan = snap.plan(q, FunctionSet::Twin).expect("fixed queries are valid");
        let indexed = snap.run_access(&plan, &snap.access(&plan), false);
        let scanned = snap.run_access(&plan, &Access::FullScan, false);
        assert_eq!(indexed, scanned, "index and scan disagree on {q}");
    }
});
