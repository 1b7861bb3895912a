//! Crash test: a child process writes to a durable store and is killed with SIGKILL at random
//! moments, many times; after each kill the store must open with every acknowledged write,
//! no unacknowledged write half applied, and indexes that agree with a full scan.

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};

use twinql::db::Access;
use twinql::{Database, StoreOptions, TwinId};
use twinql_planner::functions::FunctionSet;

/// What the parent knows of one device from the child's lines.
#[derive(Clone, Debug, Default)]
struct Known {
    /// The last acknowledged state: `None` deleted (or never created), `Some(n)` exists with
    /// `n` reported patches.
    acked: Option<Option<u64>>,
    /// A create or delete announced but not acknowledged.
    pending: Option<&'static str>,
    /// Writers killed since the last line about this device.
    kills_since: u64,
}

/// The device's record, with a line just seen about it.
fn entry<'k>(known: &'k mut HashMap<String, Known>, dev: &str) -> &'k mut Known {
    let k = known.entry(dev.to_string()).or_default();
    k.kills_since = 0;
    k
}

/// Takes one line of the writer's output into `known`; `false` for a line it does not know.
fn record(known: &mut HashMap<String, Known>, line: &str, total_acks: &mut u64) -> bool {
    let parts: Vec<&str> = line.split(' ').collect();
    match parts.as_slice() {
        ["ready"] => {}
        ["ack", dev, n, _version] => {
            let k = entry(known, dev);
            k.acked = Some(Some(n.parse().expect("number")));
            k.pending = None;
            *total_acks += 1;
        }
        ["creating", dev] => entry(known, dev).pending = Some("create"),
        ["created", dev] => {
            let k = entry(known, dev);
            k.acked = Some(Some(0));
            k.pending = None;
        }
        ["deleting", dev] => entry(known, dev).pending = Some("delete"),
        ["deleted", dev] => {
            let k = entry(known, dev);
            k.acked = Some(None);
            k.pending = None;
        }
        _ => return false,
    }
    true
}

fn reopen(dir: &Path) -> std::sync::Arc<Database> {
    Database::open_with(
        dir,
        StoreOptions {
            compact_log_bytes: 0,
            ..StoreOptions::default()
        },
    )
    .unwrap_or_else(|e| panic!("store must reopen after a crash: {e}"))
}

fn check(dir: &Path, known: &HashMap<String, Known>) -> usize {
    let db = reopen(dir);
    let mut checked = 0;
    for (dev, k) in known {
        let twin = db.get_twin(&TwinId::device(dev)).ok();
        let state: Option<(u64, u64)> = twin.as_ref().map(|t| {
            let v: serde_json::Value = serde_json::from_str(t).expect("twin is JSON");
            let n = v["properties"]["reported"]["n"].as_u64().unwrap_or(0);
            let version = v["version"].as_u64().expect("twin has a version");
            // One reported patch per version after creation: a write is all there or not.
            assert_eq!(
                version,
                n + 1,
                "{dev}: version {version} but {n} reported patches"
            );
            (n, version)
        });
        // A killed writer has at most one write in flight, so each kill since the device's
        // last line allows at most one unacknowledged write to be there.
        let slack = k.kills_since;
        match (state, k.acked) {
            (Some((m, _)), _) if k.pending == Some("create") => {
                assert!(
                    m <= slack,
                    "{dev}: recreated without acknowledgement, {m} patches"
                )
            }
            (Some((m, _)), Some(Some(n))) => assert!(
                m >= n && m <= n + slack,
                "{dev}: acknowledged patch {n} but the store has {m} ({slack} kills since)"
            ),
            (Some((m, _)), _) => {
                panic!("{dev}: never acknowledged (or deleted) but present with {m}")
            }
            (None, Some(Some(n))) => assert!(
                k.pending.is_some(),
                "{dev}: acknowledged patch {n} but the twin is gone"
            ),
            (None, _) => {}
        }
        checked += 1;
    }
    // Indexes agree with full scans on the recovered store.
    let snap = db.snapshot();
    for q in [
        "SELECT deviceId FROM devices WHERE properties.reported.plant = 'p3'",
        "SELECT deviceId FROM devices WHERE properties.reported.n > 3 AND properties.reported.n <= 9",
        "SELECT properties.reported.plant AS p, COUNT() AS c FROM devices GROUP BY properties.reported.plant",
        "SELECT deviceId FROM devices WHERE NOT (properties.reported.plant IN ['p1', 'p2'])",
    ] {
        let plan = snap.plan(q, FunctionSet::Twin).expect("query plans");
        let access = snap.access(&plan);
        let mut indexed = snap.run_access(&plan, &access, true);
        let mut scanned = snap.run_access(&plan, &Access::FullScan, false);
        indexed.sort();
        scanned.sort();
        assert_eq!(indexed, scanned, "index and scan disagree on {q}");
    }
    checked
}

#[test]
fn killed_writers_lose_no_acknowledged_write() {
    let dir = std::env::temp_dir().join(format!("twinql-crash-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let mut known: HashMap<String, Known> = HashMap::new();
    let mut rng = 0x2545_f491_4f6c_dd1du64;
    let mut total_acks = 0u64;
    let mut runs = 0;
    for round in 0..30 {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        // Kill after a random number of output lines: sometimes at once, sometimes late.
        let stop_after = match round % 3 {
            0 => rng % 8,
            1 => 20 + rng % 200,
            _ => 200 + rng % 1500,
        };
        let sync = ["group", "every-write", "group", "interval:5ms"][round % 4];
        let mut child = Command::new(env!("CARGO_BIN_EXE_twinql"))
            .args(["soak", "--store"])
            .arg(&dir)
            .args(["--devices", "12", "--threads", "2", "--sync", sync])
            .args(["--compact-bytes", "65536"])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("start the writer");
        let stdout = child.stdout.take().expect("piped");
        let mut lines = BufReader::new(stdout).lines();
        let mut seen = 0u64;
        while let Some(Ok(line)) = lines.next() {
            assert!(
                record(&mut known, &line, &mut total_acks),
                "unexpected line from the writer: {line:?}"
            );
            seen += 1;
            if seen >= stop_after {
                break;
            }
        }
        child.kill().expect("SIGKILL the writer");
        let _ = child.wait();
        // Drain what the child wrote before it died: those writes were acknowledged too.
        for line in lines.map_while(Result::ok) {
            record(&mut known, &line, &mut total_acks);
        }
        for k in known.values_mut() {
            k.kills_since += 1;
        }
        check(&dir, &known);
        runs += 1;
    }
    assert_eq!(runs, 30);
    assert!(
        total_acks > 500,
        "the writers acknowledged only {total_acks} writes"
    );
    // The store was compacted along the way (segments beyond the first).
    let segs: Vec<_> = std::fs::read_dir(&dir)
        .expect("store dir")
        .filter_map(Result::ok)
        .map(|e| e.file_name().to_string_lossy().to_string())
        .filter(|n| n.starts_with("seg-") && n != "seg-000001.tqs")
        .collect();
    assert!(
        !segs.is_empty(),
        "no compaction happened during the crash runs"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_second_writer_is_refused() {
    let dir = std::env::temp_dir().join(format!("twinql-lock-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let db = reopen(&dir);
    let err = Database::open(&dir).err().expect("a second open must fail");
    assert!(matches!(err, twinql::StoreError::Locked { .. }), "{err}");
    // Another process too.
    let out = Command::new(env!("CARGO_BIN_EXE_twinql"))
        .args(["soak", "--writes", "1", "--store"])
        .arg(&dir)
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("already open"), "{stderr}");
    drop(db);
    // Released on drop.
    drop(reopen(&dir));
    let _ = std::fs::remove_dir_all(&dir);
}
