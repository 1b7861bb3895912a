//! Batches of writes (`Database::write_batch`): the same writes one at a time and in batches
//! give the same results, twins, indexes and notifications; a query sees a batch whole or not
//! at all; a durable database replays a batch after reopening.

use crate::common;

use proptest::prelude::*;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use twinql::db::Access;
use twinql::r#gen::{GenOptions, generate_bytes};
use twinql::wal::SyncPolicy;
use twinql::{BatchWrite, Database, HubError, StoreOptions, TwinId, WriteAck, WriteOp};
use twinql_planner::functions::FunctionSet;

const TWINS: usize = 200;

fn bytes() -> &'static [u8] {
    static B: OnceLock<Vec<u8>> = OnceLock::new();
    B.get_or_init(|| {
        generate_bytes(&GenOptions {
            count: TWINS as u64,
            seed: 5,
            modules: 1,
            jobs: false,
        })
    })
}

/// The twins of the generated data: devices, then modules (as `(device, module)`).
fn twin_ids() -> &'static [TwinId] {
    static IDS: OnceLock<Vec<TwinId>> = OnceLock::new();
    IDS.get_or_init(|| {
        let db = common::indexed_db(bytes());
        let mut ids = Vec::new();
        for q in [
            "SELECT deviceId FROM devices",
            "SELECT deviceId, moduleId FROM devices.modules",
        ] {
            for r in db.query_all(q).expect("valid") {
                let v: serde_json::Value = serde_json::from_str(&r).expect("json");
                let dev = v["deviceId"].as_str().expect("id");
                ids.push(match v["moduleId"].as_str() {
                    Some(m) => TwinId::module(dev, m),
                    None => TwinId::device(dev),
                });
            }
        }
        ids
    })
}

/// Twin `i`: mostly devices, every eighth a module, and a twin that does not exist.
fn id(i: usize) -> TwinId {
    let ids = twin_ids();
    match i % 8 {
        7 if i > 16 => TwinId::device("no-such-device"),
        7 => ids[ids.len() - 1 - i % 5].clone(),
        _ => ids[i % TWINS].clone(),
    }
}

#[derive(Clone, Debug)]
struct W {
    twin: usize,
    op: WriteOp,
    body: String,
    if_match: Option<String>,
}

fn body(keys: &'static [&'static str]) -> impl Strategy<Value = String> {
    let value = prop_oneof![
        prop::sample::select(vec![
            "\"EU\"",
            "\"Error\"",
            "true",
            "null",
            "{\"type\":\"cellular\"}",
            "{\"status\":null,\"x\":{\"y\":1}}",
            "[1,2]",
            "25.5",
        ])
        .prop_map(str::to_string),
        (-5i64..120).prop_map(|n| n.to_string()),
        // Over the 4 KB limit of a string value: refused.
        Just(format!("\"{}\"", "x".repeat(5000))),
    ];
    prop_oneof![
        9 => prop::collection::vec((prop::sample::select(keys), value), 1..4).prop_map(|kv| {
            let members: Vec<String> = kv.iter().map(|(k, v)| format!("\"{k}\":{v}")).collect();
            format!("{{{}}}", members.join(","))
        }),
        // Not JSON, or not an object.
        1 => prop::sample::select(vec!["{\"a\":", "[1]", ""]).prop_map(str::to_string),
    ]
}

const KEYS: &[&str] = &[
    "temperature",
    "battery",
    "telemetryConfig",
    "location",
    "mode",
];

fn write() -> impl Strategy<Value = W> {
    let op = prop::sample::select(vec![
        WriteOp::PatchReported,
        WriteOp::PatchReported,
        WriteOp::PatchReported,
        WriteOp::PatchTags,
        WriteOp::PatchDesired,
        WriteOp::PatchTwin,
        WriteOp::ReplaceTwin,
    ]);
    // A few twins, so that batches write some twins more than once.
    let etag = prop::option::of(prop::sample::select(vec!["*", "\"AAAAAAAAAAE=\"", "nope"]));
    (0usize..24, op, body(KEYS), etag).prop_map(|(twin, op, body, etag)| {
        let body = match op {
            WriteOp::PatchTwin | WriteOp::ReplaceTwin if body.starts_with('{') => {
                format!("{{\"tags\":{body},\"properties\":{{\"desired\":{body}}}}}")
            }
            _ => body,
        };
        W {
            twin,
            op,
            body,
            if_match: etag.map(str::to_string),
        }
    })
}

fn one(db: &Database, w: &W) -> Result<WriteAck, HubError> {
    let id = id(w.twin);
    let m = w.if_match.as_deref();
    match w.op {
        WriteOp::PatchTags => db.patch_tags(&id, &w.body, m),
        WriteOp::PatchDesired => db.patch_desired(&id, &w.body, m),
        WriteOp::PatchTwin => db.patch_twin(&id, &w.body, m),
        WriteOp::ReplaceTwin => db.replace_twin(&id, &w.body, m),
        WriteOp::PatchReported => db.patch_reported(&id, &w.body),
    }
}

fn batch(db: &Database, ws: &[W]) -> Vec<Result<WriteAck, HubError>> {
    let ids: Vec<TwinId> = ws.iter().map(|w| id(w.twin)).collect();
    let writes: Vec<BatchWrite<'_>> = ws
        .iter()
        .zip(&ids)
        .map(|(w, id)| BatchWrite {
            id,
            op: w.op,
            body: &w.body,
            if_match: w.if_match.as_deref(),
        })
        .collect();
    db.write_batch(&writes)
}

/// Every twin as JSON, with write times (which differ between two runs) blanked.
fn twins(db: &Database) -> Vec<String> {
    fn blank(v: &mut serde_json::Value) {
        if let Some(o) = v.as_object_mut() {
            for (k, x) in o.iter_mut() {
                if k == "$lastUpdated" || k == "lastActivityTime" {
                    *x = serde_json::Value::Null;
                } else {
                    blank(x);
                }
            }
        }
    }
    let mut rows = Vec::new();
    for q in ["SELECT * FROM devices", "SELECT * FROM devices.modules"] {
        for r in db.query_all(q).expect("valid") {
            let mut v: serde_json::Value = serde_json::from_str(&r).expect("json");
            blank(&mut v);
            rows.push(v.to_string());
        }
    }
    rows
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 40, .. ProptestConfig::default() })]

    #[test]
    fn batches_write_as_the_same_writes_one_at_a_time(
        writes in prop::collection::vec(write(), 1..48),
        cuts in prop::collection::vec(1usize..12, 8),
        queries in prop::collection::vec(common::query(), 6),
    ) {
        let single = common::indexed_db(bytes());
        let batched = common::indexed_db(bytes());
        let mut expected = Vec::new();
        for w in &writes {
            expected.push(one(&single, w));
        }
        let mut got = Vec::new();
        let (mut at, mut k) = (0, 0);
        while at < writes.len() {
            let end = (at + cuts[k % cuts.len()]).min(writes.len());
            got.extend(batch(&batched, &writes[at..end]));
            at = end;
            k += 1;
        }
        // The same acknowledgements (versions, etags) and the same refusals.
        prop_assert_eq!(&got, &expected);
        prop_assert_eq!(twins(&batched), twins(&single));
        // The index delta the batches left answers as a full scan.
        let snap = batched.snapshot();
        for q in &queries {
            let plan = snap.plan(q, FunctionSet::Twin).expect("valid query");
            let access = snap.access(&plan);
            let mut indexed = snap.run_access(&plan, &access, true);
            let mut scanned = snap.run_access(&plan, &Access::FullScan, false);
            indexed.sort();
            scanned.sort();
            prop_assert_eq!(indexed, scanned, "{} ({})", q, access.name());
        }
    }
}

#[test]
fn a_batch_sends_desired_patches_in_order() {
    let db = common::indexed_db(bytes());
    let dev = id(1);
    let rx = db.subscribe_desired(&dev).expect("subscribe");
    let bodies = [r#"{"mode":1}"#, r#"{"mode":2}"#, r#"{"other":true}"#];
    let mut writes: Vec<BatchWrite<'_>> = bodies
        .iter()
        .map(|b| BatchWrite {
            id: &dev,
            op: WriteOp::PatchDesired,
            body: b,
            if_match: None,
        })
        .collect();
    // A refused write in between sends nothing and stops nothing.
    writes.insert(
        1,
        BatchWrite {
            id: &dev,
            op: WriteOp::PatchDesired,
            body: r#"{"mode":3}"#,
            if_match: Some("\"AAAAAAAAAAE=\""),
        },
    );
    assert!(db.write_batch(&[]).is_empty());
    let results = db.write_batch(&writes);
    assert!(results[1].is_err(), "{:?}", results[1]);
    let versions: Vec<u64> = results
        .iter()
        .filter_map(|r| r.as_ref().ok().map(|a| a.version))
        .collect();
    assert_eq!(versions.len(), 3);
    assert!(
        versions.windows(2).all(|v| v[1] == v[0] + 1),
        "{versions:?}"
    );
    let got: Vec<String> = rx.try_iter().map(|u| u.patch).collect();
    assert_eq!(got.len(), 3, "{got:?}");
    for (patch, body) in got.iter().zip(bodies) {
        assert!(
            patch.starts_with(&body[..body.len() - 1]),
            "{patch} for {body}"
        );
    }
}

#[test]
fn queries_see_a_batch_whole_or_not_at_all() {
    let db = Arc::new(common::indexed_db(bytes()));
    let ids: Vec<TwinId> = twin_ids()[..40].to_vec();
    let stop = Arc::new(AtomicBool::new(false));
    let reader = {
        let (db, stop) = (db.clone(), stop.clone());
        std::thread::spawn(move || {
            let mut seen = 0;
            while !stop.load(Ordering::Relaxed) {
                // Every batch sets one round on all 40 twins: any snapshot holds one or two
                // rounds, each on all of its twins.
                let rows = db
                    .query_all(
                        "SELECT properties.reported.round AS r, COUNT() AS n FROM devices \
                         WHERE IS_DEFINED(properties.reported.round) GROUP BY properties.reported.round",
                    )
                    .expect("valid");
                for r in &rows {
                    let v: serde_json::Value = serde_json::from_str(r).expect("json");
                    assert_eq!(v["n"], 40, "a batch seen in part: {rows:?}");
                }
                seen += 1;
            }
            seen
        })
    };
    for round in 0..200 {
        let body = format!(r#"{{"round":{round}}}"#);
        let writes: Vec<BatchWrite<'_>> = ids
            .iter()
            .map(|id| BatchWrite {
                id,
                op: WriteOp::PatchReported,
                body: &body,
                if_match: None,
            })
            .collect();
        assert!(db.write_batch(&writes).iter().all(Result::is_ok));
    }
    stop.store(true, Ordering::Relaxed);
    let seen = reader.join().expect("reader");
    assert!(seen > 0);
}

#[test]
fn a_durable_batch_is_replayed_after_reopening() {
    let dir = std::env::temp_dir().join(format!("twinql-batch-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let opts = StoreOptions {
        sync: SyncPolicy::GroupCommit,
        compact_log_bytes: 0,
        ..StoreOptions::default()
    };
    let ids: Vec<TwinId> = (0..5).map(|i| TwinId::device(&format!("d{i}"))).collect();
    let expected = {
        let db = Database::open_with(&dir, opts.clone()).expect("store opens");
        for id in &ids {
            db.create_twin(id).expect("create");
        }
        // Twin d0 twice in one batch, and one refused write.
        let mut writes: Vec<BatchWrite<'_>> = ids
            .iter()
            .map(|id| BatchWrite {
                id,
                op: WriteOp::PatchTags,
                body: r#"{"plant":"p1"}"#,
                if_match: Some("*"),
            })
            .collect();
        writes.push(BatchWrite {
            id: &ids[0],
            op: WriteOp::PatchReported,
            body: r#"{"n":7}"#,
            if_match: None,
        });
        writes.push(BatchWrite {
            id: &ids[1],
            op: WriteOp::PatchTags,
            body: r#"{"plant":"p2"}"#,
            if_match: Some("\"stale\""),
        });
        let results = db.write_batch(&writes);
        assert_eq!(results.iter().filter(|r| r.is_ok()).count(), 6);
        assert_eq!(results[5].as_ref().map(|a| a.version), Ok(3));
        // A batch of more writes than one log record takes: 600 patches, 120 per twin.
        let bodies: Vec<String> = (0..600).map(|k| format!(r#"{{"n":{k}}}"#)).collect();
        let writes: Vec<BatchWrite<'_>> = bodies
            .iter()
            .enumerate()
            .map(|(k, body)| BatchWrite {
                id: &ids[k % 5],
                op: WriteOp::PatchReported,
                body,
                if_match: None,
            })
            .collect();
        let results = db.write_batch(&writes);
        assert!(results.iter().all(Result::is_ok));
        assert_eq!(results[599].as_ref().map(|a| a.version), Ok(2 + 120));
        twins(&db)
    };
    let db = Database::open_with(&dir, opts).expect("store reopens");
    assert_eq!(twins(&db), expected);
    let last = db
        .query_all("SELECT properties.reported.n AS n FROM devices WHERE deviceId = 'd4'")
        .expect("valid");
    assert_eq!(last, vec![r#"{"n":599}"#.to_string()]);
    let plant = db
        .query_all("SELECT COUNT() AS n FROM devices WHERE tags.plant = 'p1'")
        .expect("valid");
    assert_eq!(plant, vec![r#"{"n":5}"#.to_string()]);
    drop(db);
    let _ = std::fs::remove_dir_all(&dir);
}
