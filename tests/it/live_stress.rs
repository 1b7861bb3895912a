//! Stress tests of live updates: writer threads and reader threads on one [`Database`] of a
//! few thousand generated twins with the default indexes.
//!
//! Each test runs a bounded number of operations: one side (the readers, or the writers in
//! the first test) makes a fixed number of them, and the other keeps going until it is done,
//! with a minimum and a hard maximum, so the two overlap without any timing. Threads meet only
//! through the database and atomics, and nothing is asserted about time. The invariants:
//!
//! * an acknowledged write is visible to every query started after the ack, and to the
//!   writer's own next query exactly;
//! * the versions readers see of a twin never go back, and move in step with its content;
//! * on any snapshot, index answers equal full scans, and `COUNT()` is what it must be;
//! * no query or snapshot sees half of a write;
//! * the pages of one paged query all read the snapshot of its first page;
//! * creates and deletes keep counts within their known bounds and the indexes exact.

use crate::common;
use serde_json::Value;
use std::collections::HashSet;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering::SeqCst};
use std::thread;
use twinql::db::Access;
use twinql::r#gen::{GenOptions, generate_bytes};
use twinql::{Database, ErrorCode, ItemType, QueryOptions, Snapshot, TwinId};
use twinql_planner::functions::FunctionSet;
use twinql_store::CollectionKind;

/// Device twins in the database.
const TWINS: usize = 3000;
const WRITERS: usize = 2;
const READERS: usize = 2;

fn bytes() -> &'static [u8] {
    static B: OnceLock<Vec<u8>> = OnceLock::new();
    B.get_or_init(|| {
        generate_bytes(&GenOptions {
            count: TWINS as u64,
            seed: 2024,
            modules: 0,
            jobs: false,
        })
    })
}

/// A fresh database of the generated twins with the default indexes.
fn fresh() -> Database {
    common::indexed_db(bytes())
}

fn json(text: &str) -> Value {
    serde_json::from_str(text).expect("valid JSON")
}

/// The device ids and twin versions, in document order.
fn devices(db: &Database) -> Vec<(String, u64)> {
    let rows = db
        .query_all("SELECT deviceId, version FROM devices")
        .expect("valid query");
    assert_eq!(rows.len(), TWINS);
    rows.iter()
        .map(|r| {
            let v = json(r);
            (
                v["deviceId"].as_str().expect("deviceId").to_string(),
                v["version"].as_u64().expect("version"),
            )
        })
        .collect()
}

/// A small deterministic random stream (SplitMix64).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

/// How long a thread goes on: at least `min` rounds, then until `others` threads (the
/// writers, or the readers) have counted themselves done in `done`, and never more than `max`
/// rounds.
struct Rounds<'a> {
    done: &'a AtomicUsize,
    others: usize,
    min: usize,
    max: usize,
    i: usize,
}

impl<'a> Rounds<'a> {
    fn new(done: &'a AtomicUsize, others: usize, min: usize, max: usize) -> Rounds<'a> {
        Rounds {
            done,
            others,
            min,
            max,
            i: 0,
        }
    }
}

impl Iterator for Rounds<'_> {
    type Item = usize;

    fn next(&mut self) -> Option<usize> {
        let stop =
            self.i >= self.max || (self.i >= self.min && self.done.load(SeqCst) >= self.others);
        if stop {
            return None;
        }
        self.i += 1;
        Some(self.i - 1)
    }
}

/// Runs `query` on `snap` through the access path the engine chooses and through a full scan,
/// asserts that both return the same rows (as multisets), and returns the rows and the
/// operator's name.
fn index_equals_scan(snap: &Snapshot, query: &str) -> (Vec<String>, &'static str) {
    let plan = snap.plan(query, FunctionSet::Twin).expect("valid query");
    let access = snap.access(&plan);
    let mut chosen = snap.run_access(&plan, &access, false);
    let mut scanned = snap.run_access(&plan, &Access::FullScan, false);
    chosen.sort();
    scanned.sort();
    assert_eq!(
        chosen,
        scanned,
        "{query}: {} differs from a full scan (snapshot seq {})",
        access.name(),
        snap.seq()
    );
    (chosen, access.name())
}

fn is_index(name: &str) -> bool {
    name.starts_with("Index")
}

/// The single number of a `SELECT COUNT() AS n …` result.
fn count_of(rows: &[String]) -> u64 {
    assert_eq!(rows.len(), 1, "{rows:?}");
    json(&rows[0])["n"].as_u64().expect("a count")
}

/// (a) and (b): every acknowledged `{"seq": n}` is visible to queries started after the ack
/// (to the writer's own next query exactly), and readers see each twin's version go up only,
/// always in step with its `seq` (one write, one version).
#[test]
fn acknowledged_writes_are_visible_and_versions_only_increase() {
    const OWNED: usize = 40;
    const ROUNDS: u64 = 20;
    let db = fresh();
    let all = devices(&db);
    let watched: Vec<(String, u64)> = all
        .iter()
        .step_by(7)
        .take(OWNED * WRITERS)
        .cloned()
        .collect();
    let acked: Vec<AtomicU64> = (0..watched.len()).map(|_| AtomicU64::new(0)).collect();
    let done = AtomicUsize::new(0);
    let point = |id: &str| {
        format!("SELECT version, properties.reported.seq AS s FROM devices WHERE deviceId = '{id}'")
    };

    thread::scope(|s| {
        for w in 0..WRITERS {
            let (db, watched, acked, done, point) = (&db, &watched, &acked, &done, &point);
            s.spawn(move || {
                for n in 1..=ROUNDS {
                    for (k, (dev, v0)) in watched.iter().enumerate() {
                        if k % WRITERS != w {
                            continue;
                        }
                        let id = TwinId::device(dev);
                        let ack = db
                            .patch_reported(&id, &format!(r#"{{"seq":{n}}}"#))
                            .expect("patch");
                        assert_eq!(ack.version, v0 + n, "{dev}: one write, one version");
                        acked[k].store(n, SeqCst);
                        // The writer's own next query sees exactly its write.
                        let rows = db.query_all(&point(dev)).expect("valid");
                        assert_eq!(
                            rows,
                            vec![format!(r#"{{"version":{},"s":{n}}}"#, ack.version)],
                            "{dev}"
                        );
                        if n % 4 == 0 {
                            let t = json(&db.get_twin(&id).expect("twin"));
                            assert_eq!(t["properties"]["reported"]["seq"], n);
                            assert_eq!(t["etag"], ack.etag.as_str());
                        }
                    }
                }
                done.fetch_add(1, SeqCst);
            });
        }
        for r in 0..READERS {
            let (db, watched, acked, done, point) = (&db, &watched, &acked, &done, &point);
            s.spawn(move || {
                let mut rng = Rng(r as u64 + 1);
                let mut last = vec![0u64; watched.len()];
                let mut checks = 0u64;
                for i in Rounds::new(done, WRITERS, 400, 20_000) {
                    let k = rng.below(watched.len());
                    let (dev, v0) = &watched[k];
                    let floor = acked[k].load(SeqCst);
                    let (version, seq) = if i % 2 == 0 {
                        let rows = db.query_all(&point(dev)).expect("valid");
                        assert_eq!(rows.len(), 1, "{dev}: {rows:?}");
                        let v = json(&rows[0]);
                        (v["version"].as_u64().expect("version"), v["s"].as_u64())
                    } else {
                        let t = json(&db.get_twin(&TwinId::device(dev)).expect("twin"));
                        let seq = t["properties"]["reported"]["seq"].as_u64();
                        (t["version"].as_u64().expect("version"), seq)
                    };
                    let seq = seq.unwrap_or(0);
                    assert!(
                        seq >= floor,
                        "{dev}: seq {seq} acknowledged as {floor} before the read started"
                    );
                    assert_eq!(version, v0 + seq, "{dev}: version out of step with content");
                    assert!(
                        version >= last[k],
                        "{dev}: version went back from {} to {version}",
                        last[k]
                    );
                    last[k] = version;
                    checks += 1;
                }
                assert!(checks >= 400);
            });
        }
    });

    for (k, (dev, v0)) in watched.iter().enumerate() {
        assert_eq!(acked[k].load(SeqCst), ROUNDS);
        let rows = db.query_all(&point(dev)).expect("valid");
        assert_eq!(
            rows,
            vec![format!(r#"{{"version":{},"s":{ROUNDS}}}"#, v0 + ROUNDS)]
        );
    }
}

/// Queries whose index answers are compared with full scans while writes run.
const DIFF_QUERIES: &[&str] = &[
    "SELECT deviceId FROM devices WHERE tags.location.region = 'US'",
    "SELECT deviceId FROM devices WHERE tags.location.region IN ['EU', 'CN'] AND tags.stress >= 3",
    "SELECT deviceId, properties.reported.temperature AS t FROM devices \
     WHERE properties.reported.temperature > 30",
    "SELECT deviceId FROM devices WHERE properties.desired.power_level = 2",
    "SELECT deviceId FROM devices WHERE IS_DEFINED(properties.reported.stress)",
    "SELECT COUNT() AS n FROM devices WHERE tags.location.region = 'EU'",
    "SELECT tags.location.region AS r, COUNT() AS n FROM devices GROUP BY tags.location.region",
    "SELECT deviceId FROM devices WHERE properties.desired.mode = 'eco' OR tags.stress = 1",
];

/// (c): at random moments a reader takes a snapshot and checks that index answers equal full
/// scans on it, and the device count never moves while only patches run.
#[test]
fn snapshots_answer_by_index_as_by_scan_and_count_is_constant() {
    const READS: usize = 48;
    let db = fresh();
    let all = devices(&db);
    let readers_done = AtomicUsize::new(0);
    let regions = ["EU", "US", "CN", "ANTARCTICA"];

    thread::scope(|s| {
        for w in 0..WRITERS {
            let (db, all, readers_done) = (&db, &all, &readers_done);
            s.spawn(move || {
                let mut rng = Rng(100 + w as u64);
                for k in Rounds::new(readers_done, READERS, 500, 10_000) {
                    let id = TwinId::device(&all[rng.below(all.len())].0);
                    let region = regions[rng.below(regions.len())];
                    let x = rng.below(10);
                    match k % 5 {
                        0 => db.patch_tags(
                            &id,
                            &format!(r#"{{"location":{{"region":"{region}"}},"stress":{x}}}"#),
                            None,
                        ),
                        1 => db.patch_reported(
                            &id,
                            &format!(r#"{{"temperature":{},"stress":{x}}}"#, 20 + 2 * x),
                        ),
                        2 => db.patch_desired(&id, &format!(r#"{{"power_level":{}}}"#, x % 4), None),
                        3 => db.patch_twin(
                            &id,
                            &format!(
                                r#"{{"tags":{{"stress":{}}},"properties":{{"desired":{{"power_level":null,"mode":"eco"}}}}}}"#,
                                if x < 5 { "null".to_string() } else { x.to_string() }
                            ),
                            Some("*"),
                        ),
                        _ => {
                            if x == 0 {
                                db.replace_twin(
                                    &id,
                                    r#"{"tags":{"stress":1},"properties":{"desired":{"mode":"eco"}}}"#,
                                    None,
                                )
                            } else {
                                db.patch_reported(&id, r#"{"stress":null,"temperature":null}"#)
                            }
                        }
                    }
                    .expect("write");
                }
            });
        }
        for r in 0..READERS {
            let (db, readers_done) = (&db, &readers_done);
            s.spawn(move || {
                let mut rng = Rng(200 + r as u64);
                let mut snapshots = 0;
                for _ in 0..READS {
                    let n = count_of(
                        &db.query_all("SELECT COUNT() AS n FROM devices")
                            .expect("valid"),
                    );
                    assert_eq!(n, TWINS as u64, "COUNT() moved while only patches ran");
                    if rng.below(4) != 0 {
                        continue;
                    }
                    let snap = db.snapshot();
                    snapshots += 1;
                    assert_eq!(snap.count(CollectionKind::Devices), TWINS as u64);
                    let (rows, op) = index_equals_scan(&snap, "SELECT COUNT() AS n FROM devices");
                    assert_eq!(count_of(&rows), TWINS as u64, "{op}");
                    let plan = snap
                        .plan("SELECT * FROM devices", FunctionSet::Twin)
                        .expect("valid");
                    assert_eq!(snap.count_plan(&plan, false), TWINS as u64);
                    for (q, query) in DIFF_QUERIES.iter().enumerate() {
                        let (_, op) = index_equals_scan(&snap, query);
                        if q == 0 || q == 5 || q == 6 {
                            assert!(is_index(op), "{query}: {op}");
                        }
                    }
                    // The region groups add up to all devices (every group, including the
                    // one of twins without a region).
                    let (groups, _) = index_equals_scan(&snap, DIFF_QUERIES[6]);
                    let total: u64 = groups
                        .iter()
                        .map(|g| json(g)["n"].as_u64().expect("n"))
                        .sum();
                    assert_eq!(total, TWINS as u64);
                }
                assert!(snapshots >= 5, "only {snapshots} snapshots checked");
                readers_done.fetch_add(1, SeqCst);
            });
        }
    });

    // Quiet again: the live database and a freshly compacted and re-indexed one agree.
    let mut db = db;
    let before: Vec<Vec<String>> = DIFF_QUERIES
        .iter()
        .map(|q| index_equals_scan(&db.snapshot(), q).0)
        .collect();
    db.compact();
    for (q, want) in DIFF_QUERIES.iter().zip(&before) {
        assert_eq!(
            &index_equals_scan(&db.snapshot(), q).0,
            want,
            "{q} after compaction"
        );
    }
}

/// (d): a two-property patch, and a tags-plus-desired patch, are seen whole or not at all.
#[test]
fn no_query_or_snapshot_sees_half_a_write() {
    const OWNED: usize = 100;
    const READS: usize = 80;
    let db = fresh();
    let all = devices(&db);
    let readers_done = AtomicUsize::new(0);
    let pairs = "SELECT properties.reported.a AS a, properties.reported.b AS b FROM devices \
                 WHERE IS_DEFINED(properties.reported.a)";
    let tagged = "SELECT tags.pair AS t, properties.desired.pair AS d FROM devices \
                  WHERE IS_DEFINED(tags.pair)";

    thread::scope(|s| {
        for w in 0..WRITERS {
            let (db, all, readers_done) = (&db, &all, &readers_done);
            s.spawn(move || {
                for n in Rounds::new(readers_done, READERS, 2, 100) {
                    for (dev, _) in all.iter().skip(w).step_by(WRITERS).take(OWNED) {
                        let id = TwinId::device(dev);
                        db.patch_reported(&id, &format!(r#"{{"a":{n},"b":{n}}}"#))
                            .expect("reported");
                        db.patch_twin(
                            &id,
                            &format!(
                                r#"{{"tags":{{"pair":{n}}},"properties":{{"desired":{{"pair":{n}}}}}}}"#
                            ),
                            None,
                        )
                        .expect("twin");
                    }
                }
            });
        }
        for r in 0..READERS {
            let (db, readers_done) = (&db, &readers_done);
            s.spawn(move || {
                let mut rng = Rng(300 + r as u64);
                let mut seen_pairs = 0;
                let mut seen_tagged = 0;
                for i in 0..READS {
                    let rows = db.query_all(pairs).expect("valid");
                    for row in &rows {
                        let v = json(row);
                        assert_eq!(v["a"], v["b"], "half a reported patch: {row}");
                    }
                    assert!(rows.len() >= seen_pairs, "a written property disappeared");
                    seen_pairs = rows.len();
                    let rows = db.query_all(tagged).expect("valid");
                    for row in &rows {
                        let v = json(row);
                        assert_eq!(v["t"], v["d"], "half a tags+desired patch: {row}");
                    }
                    assert!(rows.len() >= seen_tagged);
                    seen_tagged = rows.len();
                    if i % 4 != 0 {
                        continue;
                    }
                    // On one snapshot, the index and the scan agree, and so do the counts of
                    // the two halves of each write, value by value.
                    let snap = db.snapshot();
                    let (rows, _) = index_equals_scan(&snap, pairs);
                    assert!(rows.iter().all(|r| {
                        let v = json(r);
                        v["a"] == v["b"]
                    }));
                    let n = rng.below(4);
                    let counts: Vec<u64> = [
                        format!(
                            "SELECT COUNT() AS n FROM devices WHERE properties.reported.a = {n}"
                        ),
                        format!(
                            "SELECT COUNT() AS n FROM devices WHERE properties.reported.b = {n}"
                        ),
                        format!("SELECT COUNT() AS n FROM devices WHERE tags.pair = {n}"),
                        format!(
                            "SELECT COUNT() AS n FROM devices WHERE properties.desired.pair = {n}"
                        ),
                    ]
                    .iter()
                    .map(|q| count_of(&index_equals_scan(&snap, q).0))
                    .collect();
                    assert_eq!(counts[0], counts[1], "a = {n} vs b = {n}");
                    assert_eq!(
                        counts[2], counts[3],
                        "tags.pair = {n} vs desired.pair = {n}"
                    );
                }
                readers_done.fetch_add(1, SeqCst);
            });
        }
    });

    let rows = db.query_all(pairs).expect("valid");
    assert_eq!(rows.len(), OWNED * WRITERS);
    assert!(rows.iter().all(|r| {
        let v = json(r);
        v["a"] == v["b"]
    }));
}

/// (e): a paged query reads one snapshot. One writer stamps `a = round` on the first
/// `STAMPED` devices in document order, round after round; any single snapshot shows the
/// stamps non-increasing along that order and at most one round apart, while pages read at
/// different moments would show a later page ahead of an earlier one.
#[test]
fn pages_of_one_query_read_one_snapshot() {
    const STAMPED: usize = 600;
    const PAGE: usize = 50;
    const READS: usize = 12;
    let db = fresh();
    let all = devices(&db);
    let readers_done = AtomicUsize::new(0);
    let query = "SELECT deviceId, properties.reported.a AS a FROM devices";

    // Pages through `query`, checking the pages, and returns the rows.
    let page_through = |db: &Database| -> Vec<Value> {
        let mut out = Vec::with_capacity(TWINS);
        let mut opts = QueryOptions {
            page_size: PAGE,
            parallel: false,
            ..QueryOptions::default()
        };
        loop {
            let page = db.query(query, &opts).expect("page");
            assert_eq!(page.item_type, ItemType::Raw);
            assert!(page.items.len() <= PAGE);
            out.extend(page.values());
            match page.continuation {
                Some(t) => {
                    assert_eq!(page.items.len(), PAGE, "a short page before the last");
                    opts.continuation = Some(t);
                }
                None => break,
            }
        }
        out
    };
    let check = |rows: &[Value]| {
        assert_eq!(rows.len(), TWINS, "pages lost or repeated rows");
        let ids: HashSet<&str> = rows
            .iter()
            .map(|r| r["deviceId"].as_str().expect("deviceId"))
            .collect();
        assert_eq!(ids.len(), TWINS, "duplicate deviceIds across pages");
        let stamps: Vec<u64> = rows[..STAMPED]
            .iter()
            .zip(&all)
            .map(|(r, (dev, _))| {
                assert_eq!(r["deviceId"].as_str(), Some(dev.as_str()), "document order");
                r["a"].as_u64().unwrap_or(0)
            })
            .collect();
        assert!(
            stamps.windows(2).all(|w| w[0] >= w[1]) && stamps[0] - stamps[STAMPED - 1] <= 1,
            "the pages mix moments: {stamps:?}"
        );
    };

    let rounds = thread::scope(|s| {
        let stamper = {
            let (db, all, readers_done) = (&db, &all, &readers_done);
            s.spawn(move || {
                let mut rounds = 0;
                for n in Rounds::new(readers_done, READERS, 2, 100) {
                    rounds = n + 1;
                    for (dev, _) in &all[..STAMPED] {
                        db.patch_reported(&TwinId::device(dev), &format!(r#"{{"a":{rounds}}}"#))
                            .expect("stamp");
                    }
                }
                rounds
            })
        };
        {
            // Churn elsewhere: tags writes on the other devices.
            let (db, all, readers_done) = (&db, &all, &readers_done);
            s.spawn(move || {
                let mut rng = Rng(400);
                for k in Rounds::new(readers_done, READERS, 100, 30_000) {
                    let (dev, _) = &all[STAMPED + rng.below(TWINS - STAMPED)];
                    db.patch_tags(&TwinId::device(dev), &format!(r#"{{"churn":{k}}}"#), None)
                        .expect("churn");
                }
            });
        }
        for _ in 0..READERS {
            let (db, readers_done, page_through, check) =
                (&db, &readers_done, &page_through, &check);
            s.spawn(move || {
                for _ in 0..READS {
                    check(&page_through(db));
                }
                readers_done.fetch_add(1, SeqCst);
            });
        }
        stamper.join().expect("the stamping writer")
    });

    // Quiet: the pages equal the whole result.
    let paged = page_through(&db);
    check(&paged);
    let whole: Vec<Value> = db
        .query_all(query)
        .expect("valid")
        .iter()
        .map(|r| json(r))
        .collect();
    assert_eq!(paged, whole);
    assert!(whole[..STAMPED].iter().all(|r| r["a"] == rounds));
}

/// Creates and deletes alongside patches and queries: `COUNT()` stays within the bounds the
/// acknowledged and attempted writes allow, every snapshot is self-consistent, and its index
/// answers equal full scans.
#[test]
fn creates_and_deletes_keep_counts_bounded_and_indexes_exact() {
    const READS: usize = 48;
    let db = fresh();
    let all = devices(&db);
    let readers_done = AtomicUsize::new(0);
    let created_started = AtomicUsize::new(0);
    let created_acked = AtomicUsize::new(0);
    let deleted_started = AtomicUsize::new(0);
    let deleted_acked = AtomicUsize::new(0);
    let new_id = |i: usize| TwinId::device(&format!("stress-new-{i}"));
    // New device `i` is deleted once `i + 1` exists, if `i` is a multiple of 3.
    let deleted = |i: usize, created: usize| i.is_multiple_of(3) && i + 1 < created;
    let queries = [
        "SELECT deviceId FROM devices WHERE tags.kind = 'new'",
        "SELECT COUNT() AS n FROM devices WHERE tags.kind = 'new'",
        "SELECT deviceId FROM devices WHERE STARTSWITH(deviceId, 'stress-new-')",
        "SELECT deviceId FROM devices WHERE tags.n >= 100 AND tags.n < 200",
        "SELECT deviceId FROM devices WHERE properties.reported.churn > 10",
        "SELECT COUNT() AS n FROM devices WHERE status = 'enabled'",
    ];

    let created = thread::scope(|s| {
        let creator = {
            let (db, readers_done) = (&db, &readers_done);
            let (cs, ca, ds, da) = (
                &created_started,
                &created_acked,
                &deleted_started,
                &deleted_acked,
            );
            let new_id = &new_id;
            s.spawn(move || {
                let mut created = 0;
                for i in Rounds::new(readers_done, READERS, 150, 600) {
                    let id = new_id(i);
                    cs.fetch_add(1, SeqCst);
                    db.create_twin(&id).expect("create");
                    ca.fetch_add(1, SeqCst);
                    created = i + 1;
                    db.patch_tags(&id, &format!(r#"{{"kind":"new","n":{i}}}"#), None)
                        .expect("tag");
                    if i % 5 == 0 {
                        db.create_twin(&TwinId::module(&id.device_id, "m"))
                            .expect("module");
                    }
                    if i >= 1 && (i - 1) % 3 == 0 {
                        ds.fetch_add(1, SeqCst);
                        db.delete_twin(&new_id(i - 1), Some("*")).expect("delete");
                        da.fetch_add(1, SeqCst);
                    }
                }
                created
            })
        };
        {
            let (db, all, readers_done) = (&db, &all, &readers_done);
            s.spawn(move || {
                let mut rng = Rng(500);
                for k in Rounds::new(readers_done, READERS, 500, 10_000) {
                    let (dev, _) = &all[rng.below(all.len())];
                    db.patch_reported(&TwinId::device(dev), &format!(r#"{{"churn":{}}}"#, k % 20))
                        .expect("patch");
                }
            });
        }
        for r in 0..READERS {
            let (db, readers_done, queries) = (&db, &readers_done, &queries);
            let (cs, ca, ds, da) = (
                &created_started,
                &created_acked,
                &deleted_started,
                &deleted_acked,
            );
            s.spawn(move || {
                let mut rng = Rng(600 + r as u64);
                for _ in 0..READS {
                    let (c_acked, d_acked) = (ca.load(SeqCst), da.load(SeqCst));
                    let n = count_of(
                        &db.query_all("SELECT COUNT() AS n FROM devices")
                            .expect("valid"),
                    );
                    let (c_started, d_started) = (cs.load(SeqCst), ds.load(SeqCst));
                    let lo = (TWINS + c_acked - d_started) as u64;
                    let hi = (TWINS + c_started - d_acked) as u64;
                    assert!(lo <= n && n <= hi, "COUNT() = {n}, expected {lo}..={hi}");
                    if rng.below(3) != 0 {
                        continue;
                    }
                    let snap = db.snapshot();
                    let live = snap.count(CollectionKind::Devices);
                    let (count, _) = index_equals_scan(&snap, "SELECT COUNT() AS n FROM devices");
                    assert_eq!(count_of(&count), live);
                    let (ids, _) = index_equals_scan(&snap, "SELECT deviceId FROM devices");
                    assert_eq!(ids.len() as u64, live);
                    assert_eq!(
                        ids.iter().collect::<HashSet<_>>().len(),
                        ids.len(),
                        "duplicates"
                    );
                    let mut answers = Vec::new();
                    for q in queries {
                        answers.push(index_equals_scan(&snap, q).0);
                    }
                    // Tags come after the create: tagged new devices are a subset of new ones.
                    let new: HashSet<&String> = answers[2].iter().collect();
                    assert!(answers[0].iter().all(|t| new.contains(t)));
                    assert_eq!(count_of(&answers[1]), answers[0].len() as u64);
                    assert_eq!(live, (TWINS + new.len()) as u64);
                    let enabled = count_of(&answers[5]);
                    assert!(enabled <= live);
                }
                readers_done.fetch_add(1, SeqCst);
            });
        }
        creator.join().expect("the creating writer")
    });

    let gone = (0..created).filter(|&i| deleted(i, created)).count();
    let expected = (TWINS + created - gone) as u64;
    let mut db = db;
    assert_eq!(
        count_of(
            &db.query_all("SELECT COUNT() AS n FROM devices")
                .expect("valid")
        ),
        expected
    );
    for i in 0..created {
        let got = db.get_twin(&new_id(i)).map(|_| ()).map_err(|e| e.code);
        let want = if deleted(i, created) {
            Err(ErrorCode::DeviceNotFound)
        } else {
            Ok(())
        };
        assert_eq!(got, want, "stress-new-{i}");
    }
    let modules = (0..created)
        .filter(|&i| i % 5 == 0 && !deleted(i, created))
        .count();
    let m = db
        .query_all("SELECT COUNT() AS n FROM devices.modules")
        .expect("valid");
    assert_eq!(
        count_of(&m),
        modules as u64,
        "a deleted device keeps its modules"
    );
    let before: Vec<Vec<String>> = queries
        .iter()
        .map(|q| index_equals_scan(&db.snapshot(), q).0)
        .collect();
    db.compact();
    for (q, want) in queries.iter().zip(&before) {
        assert_eq!(
            &index_equals_scan(&db.snapshot(), q).0,
            want,
            "{q} after compaction"
        );
    }
    assert_eq!(db.snapshot().count(CollectionKind::Devices), expected);
}
