//! Durable stores: writes survive reopening, compaction keeps every twin and index answer,
//! torn logs recover, corrupt files give positioned errors, and the checked-in store of the
//! current format still opens.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use twinql::db::Access;
use twinql::wal::SyncPolicy;
use twinql::{Database, QueryError, StoreError, StoreOptions, TwinId};
use twinql_planner::functions::FunctionSet;

fn temp(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("twinql-durable-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

fn opts(sync: SyncPolicy) -> StoreOptions {
    StoreOptions {
        sync,
        compact_log_bytes: 0,
        ..StoreOptions::default()
    }
}

fn open(dir: &Path) -> Arc<Database> {
    Database::open_with(dir, opts(SyncPolicy::GroupCommit)).expect("store opens")
}

const QUERIES: [&str; 6] = [
    "SELECT * FROM devices",
    "SELECT deviceId, version FROM devices WHERE tags.plant = 'p1'",
    "SELECT deviceId FROM devices WHERE properties.reported.n > 3",
    "SELECT tags.plant AS plant, COUNT() AS n FROM devices GROUP BY tags.plant",
    "SELECT * FROM devices.modules",
    "SELECT deviceId FROM devices WHERE NOT (tags.plant = 'p2')",
];

fn answers(db: &Database) -> Vec<Vec<String>> {
    QUERIES
        .iter()
        .map(|q| {
            let mut rows = db.query_all(q).expect("query runs");
            rows.sort();
            rows
        })
        .collect()
}

/// Index answers equal full scans on the current snapshot.
fn index_equals_scan(db: &Database) {
    let snap = db.snapshot();
    for q in QUERIES {
        let plan = snap.plan(q, FunctionSet::Twin).expect("plans");
        let mut a = snap.run_access(&plan, &snap.access(&plan), true);
        let mut b = snap.run_access(&plan, &Access::FullScan, false);
        a.sort();
        b.sort();
        assert_eq!(a, b, "{q}");
    }
}

/// The same writes on a durable and an in-memory database.
fn write_some(dbs: &[&Database], round: u64) {
    for db in dbs {
        for i in 0..30u64 {
            if round >= 2 && i == 3 {
                continue;
            }
            let id = TwinId::device(&format!("d{i}"));
            if round == 0 {
                db.create_twin(&id).expect("create");
                if i % 3 == 0 {
                    db.create_twin(&TwinId::module(&format!("d{i}"), "m"))
                        .expect("module");
                }
            }
            db.patch_tags(&id, &format!(r#"{{"plant":"p{}"}}"#, (i + round) % 4), None)
                .expect("tags");
            db.patch_reported(&id, &format!(r#"{{"n":{}}}"#, i + round))
                .expect("reported");
        }
        if round == 1 {
            db.delete_twin(&TwinId::device("d3"), None).expect("delete");
        }
    }
}

/// Twins without their write timestamps (which differ between the two databases).
fn without_times(rows: Vec<Vec<String>>) -> Vec<Vec<String>> {
    rows.into_iter()
        .map(|q| {
            q.into_iter()
                .map(|r| {
                    let mut v: serde_json::Value = serde_json::from_str(&r).expect("json");
                    strip(&mut v);
                    v.to_string()
                })
                .collect()
        })
        .collect()
}

fn strip(v: &mut serde_json::Value) {
    if let Some(o) = v.as_object_mut() {
        o.remove("$metadata");
        o.remove("lastActivityTime");
        o.remove("statusUpdateTime");
        for (_, x) in o.iter_mut() {
            strip(x);
        }
    }
}

#[test]
fn writes_survive_reopening_and_compaction() {
    let dir = temp("reopen");
    let memory = Database::new();
    {
        let db = open(&dir);
        write_some(&[&db, &memory], 0);
        write_some(&[&db, &memory], 1);
        assert_eq!(without_times(answers(&db)), without_times(answers(&memory)));
    }
    let db = open(&dir);
    let rec = db.recovery().expect("durable");
    assert_eq!(rec.dropped, None);
    assert!(rec.replayed >= 120, "replayed {}", rec.replayed);
    let before = answers(&db);
    assert_eq!(
        without_times(before.clone()),
        without_times(answers(&memory))
    );
    index_equals_scan(&db);
    // Compaction folds the log into a new segment: same answers, short log.
    assert!(db.compact_store().expect("compacts"));
    assert_eq!(answers(&db), before);
    index_equals_scan(&db);
    assert_eq!(db.log_bytes(), Some(32), "only the log header is left");
    assert!(!db.compact_store().expect("nothing to do"));
    write_some(&[&db, &memory], 2);
    let after = answers(&db);
    drop(db);
    let db = open(&dir);
    assert_eq!(answers(&db), after);
    assert_eq!(without_times(after), without_times(answers(&memory)));
    index_equals_scan(&db);
    let files: Vec<String> = std::fs::read_dir(&dir)
        .expect("dir")
        .filter_map(Result::ok)
        .map(|e| e.file_name().to_string_lossy().to_string())
        .collect();
    assert!(files.contains(&"seg-000002.tqs".to_string()), "{files:?}");
    assert!(
        !files.contains(&"seg-000001.tqs".to_string()),
        "old segment removed: {files:?}"
    );
    drop(db);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn every_sync_policy_keeps_acknowledged_writes() {
    for (i, sync) in [
        SyncPolicy::EveryWrite,
        SyncPolicy::GroupCommit,
        SyncPolicy::Interval(std::time::Duration::from_millis(5)),
    ]
    .into_iter()
    .enumerate()
    {
        let dir = temp(&format!("sync{i}"));
        {
            let db = Database::open_with(&dir, opts(sync)).expect("open");
            let id = TwinId::device("s");
            db.create_twin(&id).expect("create");
            for n in 0..20 {
                db.patch_reported(&id, &format!(r#"{{"n":{n}}}"#))
                    .expect("patch");
            }
        }
        let db = open(&dir);
        let rows = db
            .query_all("SELECT properties.reported.n AS n, version FROM devices")
            .expect("query");
        assert_eq!(rows, [r#"{"n":19,"version":21}"#], "{sync}");
        drop(db);
        let _ = std::fs::remove_dir_all(&dir);
    }
}

#[test]
fn writes_go_on_during_compaction() {
    let dir = temp("concurrent");
    let db = open(&dir);
    for i in 0..8 {
        db.create_twin(&TwinId::device(&format!("c{i}")))
            .expect("create");
    }
    let writers: Vec<_> = (0..4)
        .map(|t| {
            let db = db.clone();
            std::thread::spawn(move || {
                let mut last = Vec::new();
                for n in 1..=150u64 {
                    let dev = format!("c{}", (t * 2 + n as usize % 2) % 8);
                    let ack = db
                        .patch_reported(&TwinId::device(&dev), &format!(r#"{{"w{t}":{n}}}"#))
                        .expect("patch");
                    last.push((dev, ack.version));
                }
                last
            })
        })
        .collect();
    for _ in 0..3 {
        db.compact_store()
            .expect("compaction succeeds under writes");
    }
    let acks: Vec<(String, u64)> = writers
        .into_iter()
        .flat_map(|w| w.join().expect("writer"))
        .collect();
    let check = |db: &Database| {
        for (dev, version) in &acks {
            let twin: serde_json::Value =
                serde_json::from_str(&db.get_twin(&TwinId::device(dev)).expect("twin"))
                    .expect("json");
            assert!(twin["version"].as_u64().expect("version") >= *version);
        }
        let total: u64 = db
            .query_all("SELECT version FROM devices")
            .expect("query")
            .iter()
            .map(|r| {
                serde_json::from_str::<serde_json::Value>(r).expect("json")["version"]
                    .as_u64()
                    .expect("v")
            })
            .sum();
        assert_eq!(total, 8 + 600, "every write counted once");
        index_equals_scan(db);
    };
    check(&db);
    drop(db);
    let db = open(&dir);
    check(&db);
    drop(db);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_torn_log_tail_is_dropped_and_reported() {
    let dir = temp("torn");
    {
        let db = open(&dir);
        db.create_twin(&TwinId::device("t")).expect("create");
        db.patch_tags(&TwinId::device("t"), r#"{"a":1}"#, None)
            .expect("tags");
    }
    let wal = dir.join("wal-000001.log");
    let mut bytes = std::fs::read(&wal).expect("log");
    let whole = bytes.len();
    // Half a record: a crash in the middle of a write that was never acknowledged.
    bytes.extend_from_slice(&[40, 0, 0, 0, 1, 2, 3, 4, 3, 0, 0, 0, 0, 0, 0, 0, b'[', b'{']);
    std::fs::write(&wal, &bytes).expect("write");
    let db = open(&dir);
    let rec = db.recovery().expect("durable");
    let dropped = rec.dropped.expect("the torn tail is reported");
    assert_eq!(dropped.offset, whole as u64);
    assert_eq!(dropped.bytes, 18);
    assert_eq!(rec.replayed, 2);
    assert_eq!(
        db.query_all("SELECT tags.a AS a FROM devices")
            .expect("query"),
        [r#"{"a":1}"#]
    );
    // Appending continues after the last whole record.
    db.patch_tags(&TwinId::device("t"), r#"{"a":2}"#, None)
        .expect("tags");
    drop(db);
    let db = open(&dir);
    assert_eq!(db.recovery().expect("durable").dropped, None);
    assert_eq!(
        db.query_all("SELECT tags.a AS a FROM devices")
            .expect("query"),
        [r#"{"a":2}"#]
    );
    drop(db);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn corrupt_files_name_the_file_and_offset() {
    let dir = temp("corrupt");
    {
        let db = open(&dir);
        db.create_twin(&TwinId::device("x")).expect("create");
        db.compact_store().expect("compact");
    }
    let seg = dir.join("seg-000002.tqs");
    let good = std::fs::read(&seg).expect("segment");
    // A flipped header byte: refused at open.
    let mut bad = good.clone();
    bad[20] ^= 1;
    std::fs::write(&seg, &bad).expect("write");
    let err = Database::open_with(&dir, opts(SyncPolicy::GroupCommit))
        .err()
        .expect("refused");
    let text = err.to_string();
    assert!(matches!(err, StoreError::Segment(_)), "{text}");
    assert!(
        text.contains("seg-000002.tqs") && text.contains("at byte"),
        "{text}"
    );
    // A flipped byte inside the twin: opens, and the query that reads it fails clearly.
    let at = good
        .windows(b"x".len() + 1)
        .position(|w| w == [0x41, b'x'])
        .expect("the deviceId string in the tape");
    let mut bad = good.clone();
    bad[at + 1] = b'y';
    std::fs::write(&seg, &bad).expect("write");
    let db = open(&dir);
    let err = db
        .query_all("SELECT * FROM devices")
        .expect_err("corrupt twin");
    assert!(matches!(err, QueryError::Corrupt(_)), "{err}");
    let text = err.to_string();
    assert!(
        text.contains("seg-000002.tqs") && text.contains("checksum"),
        "{text}"
    );
    drop(db);
    // A damaged CURRENT.
    std::fs::write(dir.join("CURRENT"), "twinql-store 7\n").expect("write");
    let err = Database::open(&dir).err().expect("refused");
    assert!(err.to_string().contains("CURRENT"), "{err}");
    let _ = std::fs::remove_dir_all(&dir);
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("dir");
    for e in std::fs::read_dir(from).expect("fixture") {
        let e = e.expect("entry");
        std::fs::copy(e.path(), to.join(e.file_name())).expect("copy");
    }
}

#[test]
fn the_checked_in_store_of_format_1_opens() {
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/store-v1");
    let dir = temp("fixture");
    copy_dir(&fixture, &dir);
    let db = open(&dir);
    let rec = db.recovery().expect("durable");
    assert_eq!((rec.replayed, rec.dropped), (5, None));
    assert_eq!(
        db.query_all("SELECT deviceId FROM devices").expect("query"),
        [
            r#"{"deviceId":"myDeviceId"}"#,
            r#"{"deviceId":"sensor-2"}"#,
            r#"{"deviceId":"sensor-4"}"#,
            r#"{"deviceId":"fixtureDevice"}"#
        ]
    );
    assert_eq!(
        db.query_all(
            "SELECT deviceId, properties.reported.firmware AS fw, version FROM devices \
             WHERE tags.location.plant = 'Fixture1'"
        )
        .expect("query"),
        [r#"{"deviceId":"fixtureDevice","fw":"1.2.3","version":3}"#]
    );
    assert_eq!(
        db.query_all("SELECT properties.reported.connectivity.type AS c FROM devices WHERE deviceId = 'myDeviceId'")
            .expect("query"),
        [r#"{"c":"wifi"}"#]
    );
    // Deleting sensor-3 (logged) took its two modules with it.
    assert_eq!(
        db.query_all("SELECT * FROM devices.modules")
            .expect("query")
            .len(),
        0
    );
    assert_eq!(
        db.query_all("SELECT * FROM devices.jobs")
            .expect("query")
            .len(),
        1
    );
    index_equals_scan(&db);
    drop(db);
    let _ = std::fs::remove_dir_all(&dir);
}
