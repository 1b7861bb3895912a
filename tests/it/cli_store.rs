//! Tests of store directories on the command line: `twinql import`, and `--store DIR` on
//! `query`, `explain`, `bench` and `shell`, running the real binary over the fixture of twins
//! (`tests/fixtures/twins.jsonl`).

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};

use crate::common::cli::{BIN, TWINS, err, out, run, shell};

/// A scratch directory under the system temp directory, removed when dropped.
struct Scratch(PathBuf);

impl Scratch {
    fn new(name: &str) -> Scratch {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let dir = std::env::temp_dir().join(format!(
            "twinql-cli-store-{name}-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("create the scratch directory");
        Scratch(dir)
    }

    fn path(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn s(p: &Path) -> &str {
    p.to_str().expect("UTF-8 path")
}

/// `twinql import --data TWINS --store DIR EXTRA…`; asserts it succeeded.
fn import(store: &Path, extra: &[&str]) -> Output {
    let mut args = vec!["import", "--data", TWINS, "--store", s(store)];
    args.extend_from_slice(extra);
    let o = run(&args);
    assert_eq!(o.status.code(), Some(0), "import failed:\n{}", err(&o));
    o
}

/// `twinql query --format jsonl SOURCE… QUERY`.
fn query(source: &[&str], q: &str) -> Output {
    let mut args = vec!["query", "--format", "jsonl"];
    args.extend_from_slice(source);
    args.push(q);
    run(&args)
}

/// Rows of a successful `query`.
fn rows(source: &[&str], q: &str) -> String {
    let o = query(source, q);
    assert_eq!(o.status.code(), Some(0), "{q}:\n{}", err(&o));
    out(&o)
}

/// The file name of the store's segment (the second line of `CURRENT`).
fn segment_file(store: &Path) -> PathBuf {
    let current = std::fs::read_to_string(store.join("CURRENT")).expect("read CURRENT");
    let name = current.lines().nth(1).expect("a segment line in CURRENT");
    assert!(name.starts_with("seg-") && name.ends_with(".tqs"), "{name}");
    store.join(name)
}

/// Copies the files of a store directory.
fn copy_store(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("create the copy");
    for e in std::fs::read_dir(from).expect("read the store") {
        let e = e.expect("a directory entry");
        std::fs::copy(e.path(), to.join(e.file_name())).expect("copy a store file");
    }
}

/// Inverts the byte at `offset` of `file`.
fn flip_byte(file: &Path, offset: usize) {
    let mut bytes = std::fs::read(file).expect("read the segment");
    bytes[offset] ^= 0xff;
    std::fs::write(file, bytes).expect("write the segment");
}

const QUERIES: &[&str] = &[
    "SELECT * FROM devices",
    "SELECT * FROM devices WHERE tags.location.plant = 'Redmond43'",
    "SELECT deviceId, properties.reported.temperature FROM devices WHERE status = 'enabled' AND connectionState = 'Connected'",
    "SELECT properties.reported.telemetryConfig.status AS status, COUNT() AS n FROM devices GROUP BY properties.reported.telemetryConfig.status",
    "SELECT tags.location.region AS region, COUNT() AS n FROM devices WHERE status = 'enabled' GROUP BY tags.location.region",
    "SELECT TOP 2 deviceId FROM devices",
    "SELECT TOP 1 * FROM devices WHERE tags.location.region = 'US'",
    "SELECT COUNT() AS n FROM devices",
    "SELECT deviceId, moduleId FROM devices.modules WHERE moduleId = '$edgeAgent'",
    "SELECT * FROM devices.jobs WHERE devices.jobs.status = 'completed'",
];

#[test]
fn query_on_an_imported_store_gives_the_rows_of_the_files() {
    let dir = Scratch::new("same-rows");
    let store = dir.path("store");
    let o = import(&store, &[]);
    let summary = err(&o);
    for part in [
        "imported 4 device twins, 2 module twins, 1 job record",
        "input ",
        "load ",
        "index ",
        "write ",
        "total ",
        "MB/s",
        "segment seg-",
    ] {
        assert!(
            summary.contains(part),
            "{part:?} in the summary:\n{summary}"
        );
    }
    assert!(segment_file(&store).is_file());
    for q in QUERIES {
        let from_files = rows(&["--data", TWINS], q);
        let from_store = rows(&["--store", s(&store)], q);
        assert!(!from_files.is_empty(), "{q} returns rows");
        assert_eq!(from_store, from_files, "{q}");
    }
    // Without indexes, the same rows too.
    let plain = dir.path("plain");
    import(&plain, &["--no-index"]);
    for q in QUERIES {
        assert_eq!(
            rows(&["--store", s(&plain)], q),
            rows(&["--data", TWINS], q),
            "{q}"
        );
    }
}

#[test]
fn import_takes_job_files_and_an_index_policy() {
    let dir = Scratch::new("jobs-policy");
    let jobs = dir.path("jobs.jsonl");
    std::fs::write(
        &jobs,
        "{\"deviceId\":\"sensor-2\",\"jobId\":\"job-9\",\"status\":\"running\"}\n",
    )
    .expect("write jobs");
    let policy = dir.path("policy.json");
    std::fs::write(&policy, r#"{"include": ["tags/*"]}"#).expect("write the policy");
    let store = dir.path("store");
    let o = import(&store, &["--jobs", s(&jobs), "--index-policy", s(&policy)]);
    assert!(err(&o).contains("2 job records"), "{}", err(&o));
    let jobs = rows(
        &["--store", s(&store)],
        "SELECT * FROM devices.jobs WHERE devices.jobs.status = 'running'",
    );
    assert_eq!(jobs.lines().count(), 1, "{jobs}");
    assert!(jobs.contains("\"jobId\":\"job-9\""), "{jobs}");
    // Tags are indexed; the status is not.
    let tags = run(&[
        "explain",
        "--store",
        s(&store),
        "SELECT deviceId FROM devices WHERE tags.location.plant = 'Redmond43'",
    ]);
    assert!(out(&tags).contains("IndexScanExec"), "{}", out(&tags));
    let status = run(&[
        "explain",
        "--store",
        s(&store),
        "SELECT deviceId FROM devices WHERE status = 'enabled'",
    ]);
    assert!(!out(&status).contains("IndexScanExec"), "{}", out(&status));
}

#[test]
fn explain_on_a_store_shows_an_index_plan() {
    let dir = Scratch::new("explain");
    let store = dir.path("store");
    import(&store, &[]);
    let o = run(&[
        "explain",
        "--store",
        s(&store),
        "SELECT deviceId FROM devices WHERE tags.location.plant = 'Redmond43'",
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", err(&o));
    assert!(out(&o).contains("IndexScanExec"), "{}", out(&o));
    let analyzed = run(&[
        "explain",
        "--analyze",
        "--store",
        s(&store),
        "SELECT deviceId FROM devices WHERE tags.location.plant = 'Redmond43'",
    ]);
    assert_eq!(analyzed.status.code(), Some(0), "{}", err(&analyzed));
}

#[test]
fn import_into_an_existing_store_fails() {
    let dir = Scratch::new("exists");
    let store = dir.path("store");
    import(&store, &[]);
    let before = std::fs::read(segment_file(&store)).expect("read the segment");
    let o = run(&["import", "--data", TWINS, "--store", s(&store)]);
    assert_eq!(o.status.code(), Some(2));
    assert!(err(&o).starts_with("error: "), "{}", err(&o));
    assert!(err(&o).contains("already exists"), "{}", err(&o));
    // The store is untouched.
    assert_eq!(std::fs::read(segment_file(&store)).expect("read"), before);
    assert_eq!(
        rows(&["--store", s(&store)], "SELECT COUNT() AS n FROM devices"),
        "{\"n\":4}\n"
    );

    // A directory holding other files is refused too.
    let other = dir.path("other");
    std::fs::create_dir_all(&other).expect("mkdir");
    std::fs::write(other.join("notes.txt"), "mine").expect("write");
    let o = run(&["import", "--data", TWINS, "--store", s(&other)]);
    assert_eq!(o.status.code(), Some(2));
    assert!(err(&o).contains("not empty"), "{}", err(&o));
}

#[test]
fn import_errors_exit_2_and_create_nothing() {
    let dir = Scratch::new("import-errors");
    let store = dir.path("store");
    let missing = dir.path("missing.jsonl");
    let o = run(&["import", "--data", s(&missing), "--store", s(&store)]);
    assert_eq!(o.status.code(), Some(2));
    assert!(err(&o).starts_with("error: "), "{}", err(&o));
    assert!(err(&o).contains("missing.jsonl"), "{}", err(&o));
    assert!(!store.exists());

    let bad = dir.path("bad.jsonl");
    std::fs::write(
        &bad,
        "{\"deviceId\":\"ok-1\"}\n{\"status\":\"enabled\"}\n{\"deviceId\":\"ok-2\"}\n",
    )
    .expect("write");
    let o = run(&["import", "--data", s(&bad), "--store", s(&store)]);
    assert_eq!(o.status.code(), Some(2));
    assert!(err(&o).contains("bad.jsonl:2"), "{}", err(&o));
    assert!(!store.join("CURRENT").exists());

    // With --skip-invalid the valid twins are imported and the others reported.
    let o = run(&[
        "import",
        "--data",
        s(&bad),
        "--store",
        s(&store),
        "--skip-invalid",
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", err(&o));
    assert!(err(&o).contains("skipped 1 invalid line"), "{}", err(&o));
    assert_eq!(
        rows(&["--store", s(&store)], "SELECT deviceId FROM devices"),
        "{\"deviceId\":\"ok-1\"}\n{\"deviceId\":\"ok-2\"}\n"
    );

    let policy = dir.path("policy.json");
    std::fs::write(&policy, "not json").expect("write");
    let o = run(&[
        "import",
        "--data",
        TWINS,
        "--store",
        s(&dir.path("p")),
        "--index-policy",
        s(&policy),
    ]);
    assert_eq!(o.status.code(), Some(2));
    assert!(err(&o).contains("policy.json"), "{}", err(&o));
}

#[test]
fn data_and_store_together_is_a_usage_error() {
    let dir = Scratch::new("usage");
    let store = dir.path("store");
    import(&store, &[]);
    let st = s(&store);
    for args in [
        vec![
            "query",
            "--data",
            TWINS,
            "--store",
            st,
            "SELECT * FROM devices",
        ],
        vec![
            "explain",
            "--store",
            st,
            "--data",
            TWINS,
            "SELECT * FROM devices",
        ],
        vec![
            "bench",
            "--data",
            TWINS,
            "--store",
            st,
            "--queries",
            "q.txt",
        ],
        vec!["shell", "--data", TWINS, "--store", st],
    ] {
        let o = run(&args);
        assert_eq!(o.status.code(), Some(2), "{args:?}");
        assert!(
            err(&o).contains("cannot be used with"),
            "{args:?}: {}",
            err(&o)
        );
    }
    // One of the two is required.
    let o = run(&["query", "SELECT * FROM devices"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(err(&o).contains("--store"), "{}", err(&o));
    // In-memory flags make no sense on a store.
    let o = run(&[
        "query",
        "--store",
        st,
        "--no-index",
        "SELECT * FROM devices",
    ]);
    assert_eq!(o.status.code(), Some(2));
    // --store names an existing store for the read-only commands; nothing is created.
    let nowhere = dir.path("nowhere");
    let o = query(&["--store", s(&nowhere)], "SELECT * FROM devices");
    assert_eq!(o.status.code(), Some(2));
    assert!(err(&o).starts_with("error: "), "{}", err(&o));
    assert!(!nowhere.exists());
}

#[test]
fn a_corrupt_segment_header_is_an_open_error_naming_the_file() {
    let dir = Scratch::new("corrupt-header");
    let store = dir.path("store");
    import(&store, &[]);
    let seg = segment_file(&store);
    let name = seg
        .file_name()
        .and_then(|n| n.to_str())
        .expect("name")
        .to_string();
    // Bytes 60..64 of the header are reserved (not checked).
    for offset in [0, 9, 20, 40, 59] {
        let copy = dir.path(&format!("copy-{offset}"));
        copy_store(&store, &copy);
        flip_byte(&copy.join(&name), offset);
        let o = query(&["--store", s(&copy)], "SELECT * FROM devices");
        assert_eq!(o.status.code(), Some(2), "byte {offset}: {}", err(&o));
        assert!(err(&o).starts_with("error: "), "{}", err(&o));
        assert!(err(&o).contains(&name), "byte {offset}: {}", err(&o));
        assert!(out(&o).is_empty(), "byte {offset}: {}", out(&o));
    }
}

#[test]
fn a_corrupt_segment_never_gives_wrong_rows() {
    // Wherever a byte of the segment is damaged, a query gives the right rows (the byte was
    // not used) or fails with exit 2 naming the segment: at open, or when the damaged chunk
    // or postings are first read.
    let dir = Scratch::new("corrupt-any");
    let store = dir.path("store");
    import(&store, &[]);
    let seg = segment_file(&store);
    let name = seg
        .file_name()
        .and_then(|n| n.to_str())
        .expect("name")
        .to_string();
    let len = std::fs::metadata(&seg).expect("stat").len() as usize;
    let queries = [
        "SELECT * FROM devices",
        "SELECT deviceId FROM devices WHERE tags.location.plant = 'Redmond43'",
    ];
    let good: Vec<String> = queries
        .iter()
        .map(|q| rows(&["--store", s(&store)], q))
        .collect();
    let copy = dir.path("copy");
    let mut failed = 0;
    for offset in (64..len).step_by(len / 60 + 1) {
        let _ = std::fs::remove_dir_all(&copy);
        copy_store(&store, &copy);
        flip_byte(&copy.join(&name), offset);
        for (q, good) in queries.iter().zip(&good) {
            let o = query(&["--store", s(&copy)], q);
            match o.status.code() {
                Some(0) => assert_eq!(&out(&o), good, "byte {offset} damaged: {q}"),
                Some(2) => {
                    failed += 1;
                    assert!(err(&o).contains(&name), "byte {offset}: {}", err(&o));
                    assert!(out(&o).is_empty(), "byte {offset}: {}", out(&o));
                }
                other => panic!("byte {offset}: exit {other:?}: {}", err(&o)),
            }
        }
    }
    assert!(failed > 0, "some damage is found");
}

#[test]
fn shell_writes_to_the_store_durably() {
    let dir = Scratch::new("shell");
    let store = dir.path("store");
    import(&store, &[]);
    let st = s(&store);
    let o = shell(
        &["--store", st],
        "create newdev\n\
         patch-tags newdev {\"location\": {\"plant\": \"Paris9\"}}\n\
         patch-reported sensor-2 {\"temperature\": 30}\n\
         delete sensor-3\n\
         stats\n\
         exit\n",
    );
    let (stdout, stderr) = (out(&o), err(&o));
    assert_eq!(o.status.code(), Some(0), "{stderr}");
    assert!(stdout.contains("ok: created newdev"), "{stdout}\n{stderr}");
    assert!(stdout.contains("ok: version 2"), "{stdout}\n{stderr}");
    assert!(
        stdout.contains("ok: deleted sensor-3"),
        "{stdout}\n{stderr}"
    );
    let store_line = stdout
        .lines()
        .find(|l| l.starts_with("store: "))
        .unwrap_or_else(|| panic!("a store line in stats: {stdout}"));
    assert!(
        store_line.contains(st) && store_line.contains(", log: "),
        "{store_line}"
    );
    assert!(!store_line.contains("log: 0 bytes"), "{store_line}");

    let expect_writes = |store: &Path| {
        let src = ["--store", s(store)];
        assert_eq!(
            rows(
                &src,
                "SELECT deviceId FROM devices WHERE tags.location.plant = 'Paris9'"
            ),
            "{\"deviceId\":\"newdev\"}\n"
        );
        assert_eq!(
            rows(
                &src,
                "SELECT properties.reported.temperature AS t FROM devices WHERE deviceId = 'sensor-2'"
            ),
            "{\"t\":30}\n"
        );
        assert_eq!(
            rows(
                &src,
                "SELECT COUNT() AS n FROM devices WHERE deviceId = 'sensor-3'"
            ),
            "{\"n\":0}\n"
        );
        assert_eq!(
            rows(&src, "SELECT COUNT() AS n FROM devices"),
            "{\"n\":4}\n"
        );
    };
    expect_writes(&store);

    // `compact` folds the log into a new segment; the twins stay as they were.
    let old_segment = segment_file(&store);
    let o = shell(&["--store", st], "compact\nstats\ncompact\n");
    let stdout = out(&o);
    assert_eq!(o.status.code(), Some(0), "{}", err(&o));
    assert!(stdout.contains("ok: compacted"), "{stdout}");
    assert!(stdout.contains("ok: nothing to compact"), "{stdout}");
    assert_ne!(segment_file(&store), old_segment);
    assert!(!old_segment.exists());
    expect_writes(&store);

    // Without a store, `compact` is an error and the session goes on.
    let o = shell(&["--data", TWINS], "compact\ncount\n");
    assert_eq!(o.status.code(), Some(0));
    assert!(
        err(&o).contains("error: compact needs a store"),
        "{}",
        err(&o)
    );
    assert!(out(&o).contains("devices: 4"), "{}", out(&o));
}

#[test]
fn shell_creates_a_missing_store() {
    let dir = Scratch::new("shell-new");
    let store = dir.path("fresh");
    let o = shell(
        &["--store", s(&store)],
        "create d1\npatch-tags d1 {\"a\": 1}\n",
    );
    assert_eq!(o.status.code(), Some(0), "{}", err(&o));
    assert_eq!(
        rows(
            &["--store", s(&store)],
            "SELECT deviceId, tags FROM devices"
        ),
        "{\"deviceId\":\"d1\",\"tags\":{\"a\":1}}\n"
    );
}

#[test]
fn a_store_open_in_a_shell_is_locked() {
    let dir = Scratch::new("locked");
    let store = dir.path("store");
    import(&store, &[]);
    let mut child = Command::new(BIN)
        .args(["shell", "--store", s(&store)])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run twinql shell");
    // Wait for the banner: the store is open.
    let mut stderr = BufReader::new(child.stderr.take().expect("stderr"));
    let mut banner = String::new();
    while !banner.contains("type `help`") {
        let mut line = String::new();
        if stderr.read_line(&mut line).expect("read the banner") == 0 {
            break;
        }
        banner.push_str(&line);
    }
    assert!(banner.contains("opened from store"), "{banner}");

    let o = query(&["--store", s(&store)], "SELECT * FROM devices");
    assert_eq!(o.status.code(), Some(2));
    assert!(err(&o).starts_with("error: "), "{}", err(&o));
    assert!(err(&o).contains("already open"), "{}", err(&o));
    let o = run(&["import", "--data", TWINS, "--store", s(&store)]);
    assert_eq!(o.status.code(), Some(2));

    drop(child.stdin.take());
    assert!(child.wait().expect("wait").success());
    // Closed, it opens again.
    assert_eq!(
        rows(&["--store", s(&store)], "SELECT COUNT() AS n FROM devices"),
        "{\"n\":4}\n"
    );
}

#[test]
fn bench_on_a_store_reports_the_open_time() {
    let dir = Scratch::new("bench");
    let store = dir.path("store");
    import(&store, &[]);
    let queries = dir.path("queries.txt");
    std::fs::write(
        &queries,
        "q1\trows\tSELECT * FROM devices WHERE tags.location.plant = 'Redmond43'\n\
         q2\tagg\tSELECT status, COUNT() AS n FROM devices GROUP BY status\n",
    )
    .expect("write queries");
    let common = ["--queries", s(&queries), "--runs", "2", "--warmup", "0"];

    let mut args = vec!["bench", "--store", s(&store), "--format", "json"];
    args.extend_from_slice(&common);
    let o = run(&args);
    assert_eq!(o.status.code(), Some(0), "{}", err(&o));
    assert!(err(&o).contains("opened store"), "{}", err(&o));
    assert!(err(&o).contains("resident memory"), "{}", err(&o));
    let v: serde_json::Value = serde_json::from_str(&out(&o)).expect("a JSON report");
    assert!(v["open_s"].is_number(), "{v}");
    assert!(v.get("load_s").is_none(), "{v}");
    assert_eq!(v["store"], s(&store));
    assert_eq!(v["queries"][0]["rows"], 2);

    // The aggregate agrees with the in-memory run.
    let mut args = vec!["bench", "--data", TWINS, "--format", "json"];
    args.extend_from_slice(&common);
    let mem = run(&args);
    assert_eq!(mem.status.code(), Some(0), "{}", err(&mem));
    let m: serde_json::Value = serde_json::from_str(&out(&mem)).expect("a JSON report");
    assert!(m["load_s"].is_number(), "{m}");
    assert_eq!(m["queries"][1]["rows"], v["queries"][1]["rows"]);

    let mut args = vec!["bench", "--store", s(&store)];
    args.extend_from_slice(&common);
    let o = run(&args);
    assert_eq!(o.status.code(), Some(0), "{}", err(&o));
    assert!(out(&o).starts_with("opened store "), "{}", out(&o));

    // A bench on a store only reads it.
    let mut args = vec!["bench", "--store", s(&store), "--writes", "10"];
    args.extend_from_slice(&common);
    assert_eq!(run(&args).status.code(), Some(2));
}
