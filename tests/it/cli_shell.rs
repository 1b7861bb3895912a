//! Tests of `twinql shell`, running the real binary with scripts piped into its stdin, over
//! the fixture of twins (`tests/fixtures/twins.jsonl`) and over the generated default.

use crate::common::cli::{TWINS, shell};
use serde_json::{Value, json};
use std::process::Output;

/// Runs a script over the fixture; asserts the session ended with status 0.
fn fixture(script: &str) -> (String, String) {
    let o = shell(&["--data", TWINS], script);
    let (out, err) = texts(&o);
    assert_eq!(o.status.code(), Some(0), "stdout:\n{out}\nstderr:\n{err}");
    assert!(!err.contains("panicked"), "stderr:\n{err}");
    (out, err)
}

fn texts(o: &Output) -> (String, String) {
    (
        String::from_utf8(o.stdout.clone()).expect("UTF-8 stdout"),
        String::from_utf8(o.stderr.clone()).expect("UTF-8 stderr"),
    )
}

/// The JSON documents on stdout, in order, skipping the `ok: …`, notification and count
/// lines.
fn json_docs(out: &str) -> Vec<Value> {
    let text: String = out
        .lines()
        .filter(|l| {
            ![
                "ok: ",
                "desired update for ",
                "devices: ",
                "modules: ",
                "jobs: ",
            ]
            .iter()
            .any(|p| l.starts_with(p))
        })
        .map(|l| format!("{l}\n"))
        .collect();
    serde_json::Deserializer::from_str(&text)
        .into_iter::<Value>()
        .collect::<Result<_, _>>()
        .unwrap_or_else(|e| panic!("stdout is not a stream of JSON documents ({e}):\n{out}"))
}

/// The lines of stdout starting with `prefix`.
fn lines_with<'a>(out: &'a str, prefix: &str) -> Vec<&'a str> {
    out.lines().filter(|l| l.starts_with(prefix)).collect()
}

#[test]
fn query_returns_the_expected_rows_as_a_json_array() {
    let (out, err) =
        fixture("SELECT deviceId FROM devices WHERE tags.location.plant = 'Redmond43'\n");
    let docs = json_docs(&out);
    assert_eq!(docs.len(), 1, "{out}");
    let mut ids: Vec<&str> = docs[0]
        .as_array()
        .expect("an array of rows")
        .iter()
        .map(|r| r["deviceId"].as_str().expect("deviceId"))
        .collect();
    ids.sort_unstable();
    assert_eq!(ids, ["myDeviceId", "sensor-3"]);
    assert!(err.contains("2 rows (raw) in "), "{err}");
    assert!(err.contains("4 device twins, 2 module twins"), "{err}");
    assert!(!out.contains("twinql>"), "no prompt on a pipe: {out}");
}

#[test]
fn whole_twins_report_the_twin_item_type_and_empty_results_are_an_empty_array() {
    let (out, err) = fixture(
        "SELECT * FROM devices WHERE deviceId = 'sensor-4'\n\
         SELECT * FROM devices WHERE deviceId = 'nobody'\n",
    );
    let docs = json_docs(&out);
    assert_eq!(docs.len(), 2, "{out}");
    assert_eq!(docs[0][0]["deviceId"], "sensor-4");
    assert_eq!(docs[0][0]["connectionState"], "Connected");
    assert_eq!(docs[1], json!([]));
    assert!(err.contains("1 row (twin) in "), "{err}");
    assert!(err.contains("0 rows (twin) in "), "{err}");
}

#[test]
fn formats_jsonl_and_table() {
    let (out, _) = fixture(
        ".format jsonl\n\
         SELECT deviceId, status FROM devices WHERE status = 'disabled'\n\
         .FORMAT table\n\
         SELECT deviceId, status FROM devices WHERE status = 'disabled'\n",
    );
    let mut lines = out.lines();
    let first: Value = serde_json::from_str(lines.next().expect("a jsonl row")).expect("JSON");
    assert_eq!(first, json!({"deviceId": "sensor-3", "status": "disabled"}));
    let table: Vec<&str> = lines.collect();
    assert_eq!(table[0], "deviceId | status");
    assert!(table[1].starts_with("---"), "{out}");
    assert_eq!(table[2], "sensor-3 | disabled");
    assert_eq!(table[3], "(1 row)");
}

#[test]
fn queries_continue_over_lines_ending_with_a_backslash() {
    let (out, err) = fixture(
        "-- a comment, then an empty line\n\
         \n\
         SELECT deviceId \\\n\
         \x20 FROM devices \\\n\
         \x20 WHERE status = 'disabled';\n\
         select COUNT() AS n FROM devices.modules\n",
    );
    let docs = json_docs(&out);
    assert_eq!(docs, [json!([{"deviceId": "sensor-3"}]), json!([{"n": 2}])]);
    assert!(!err.contains("error"), "{err}");
}

#[test]
fn patch_reported_is_seen_by_the_next_query() {
    let (out, err) = fixture(
        "patch-reported sensor-2 {\"temperature\": 31.5, \"firmware\": {\"version\": \"1.2\"}}\n\
         SELECT deviceId, properties.reported.firmware.version AS fw FROM devices \
         WHERE properties.reported.temperature > 30\n",
    );
    let ok = lines_with(&out, "ok: ");
    assert_eq!(ok.len(), 1, "{out}\n{err}");
    assert!(ok[0].starts_with("ok: version "), "{}", ok[0]);
    assert!(ok[0].contains(", etag "), "{}", ok[0]);
    assert_eq!(
        json_docs(&out),
        [json!([{"deviceId": "sensor-2", "fw": "1.2"}])]
    );
}

#[test]
fn stale_etag_is_refused_and_the_twin_is_unchanged() {
    // myDeviceId has etag AAAAAAAAAAc= and version 2 in the fixture.
    let (out, err) = fixture(
        "patch-tags myDeviceId {\"owner\": \"ops\"} --etag AAAAAAAAAAA=\n\
         get myDeviceId\n\
         patch-desired myDeviceId {\"fw\": \"9\"} --etag \"AAAAAAAAAAA=\"\n\
         replace-twin myDeviceId {\"tags\": {}} --etag AAAAAAAAAAA=\n\
         delete myDeviceId AAAAAAAAAAA=\n\
         get myDeviceId\n\
         patch-tags myDeviceId {\"owner\": \"ops\"} --etag AAAAAAAAAAc=\n\
         get myDeviceId\n",
    );
    assert_eq!(
        err.matches("error: PreconditionFailed (412001)").count(),
        4,
        "{err}"
    );
    let docs = json_docs(&out);
    assert_eq!(docs.len(), 3, "{out}");
    for before in &docs[..2] {
        assert_eq!(before["etag"], "AAAAAAAAAAc=");
        assert_eq!(before["version"], 2);
        assert_eq!(
            before["tags"],
            json!({"location": {"region": "US", "plant": "Redmond43"}})
        );
    }
    let ok = lines_with(&out, "ok: ");
    assert_eq!(ok.len(), 1, "{out}");
    assert!(ok[0].starts_with("ok: version 3, etag "), "{}", ok[0]);
    assert_eq!(docs[2]["version"], 3);
    assert_eq!(docs[2]["tags"]["owner"], "ops");
    assert_eq!(docs[2]["tags"]["location"]["plant"], "Redmond43");
}

#[test]
fn subscribe_prints_desired_updates_with_their_version() {
    // sensor-3's desired $version is 1, its $edgeAgent module's is 3.
    let (out, err) = fixture(
        "subscribe sensor-3\n\
         subscribe sensor-3/$edgeAgent\n\
         patch-desired sensor-3 {\"fw\": \"2.0\"}\n\
         patch-tags sensor-3 {\"owner\": \"ops\"}\n\
         patch-twin sensor-3 {\"properties\": {\"desired\": {\"interval\": 5}}}\n\
         patch-desired sensor-3/$edgeAgent {\"mode\": \"fast\"}\n\
         patch-desired sensor-4 {\"fw\": \"1.0\"}\n",
    );
    assert!(!err.contains("error"), "{err}");
    assert_eq!(
        lines_with(&out, "desired update for "),
        [
            r#"desired update for sensor-3: $version 2: {"fw":"2.0","$version":2}"#,
            r#"desired update for sensor-3: $version 3: {"interval":5,"$version":3}"#,
            r#"desired update for sensor-3/$edgeAgent: $version 4: {"mode":"fast","$version":4}"#,
        ]
    );
    // Notifications come right after the write that caused them.
    let lines: Vec<&str> = out.lines().collect();
    let first = lines
        .iter()
        .position(|l| l.starts_with("desired update for sensor-3: $version 2"))
        .expect("first notification");
    assert!(lines[first - 1].starts_with("ok: version "), "{out}");
}

#[test]
fn deleting_a_subscribed_twin_ends_the_subscription() {
    let (out, err) = fixture(
        "subscribe sensor-4\n\
         delete sensor-4\n\
         get sensor-4\n\
         count\n",
    );
    assert!(out.contains("ok: deleted sensor-4"), "{out}");
    assert!(err.contains("subscription to sensor-4 ended"), "{err}");
    assert!(err.contains("error: DeviceNotFound"), "{err}");
    assert!(out.contains("devices: 3\n"), "{out}");
}

#[test]
fn errors_are_reported_and_the_session_continues() {
    let (out, err) = fixture(
        "patch-tags sensor-2 {\"owner\": \n\
         frobnicate sensor-2\n\
         SELECT deviceId FROM devices WHERE\n\
         SELECT FROM devicez\n\
         get nobody\n\
         get a/b/c\n\
         patch-reported sensor-2 {\"a\": 1} --etag X\n\
         patch-desired sensor-2\n\
         create sensor-2\n\
         count\n",
    );
    assert!(err.contains("error: ArgumentInvalid (400004): "), "{err}");
    assert!(err.contains("unknown command `frobnicate`"), "{err}");
    assert!(err.contains("patch-reported"), "the command list: {err}");
    // rustc-style diagnostics with the query and a caret under the offending token.
    assert!(err.contains("error[unknown-collection]"), "{err}");
    assert!(err.contains("1 | SELECT FROM devicez"), "{err}");
    assert!(err.contains("^^^^^^^"), "{err}");
    assert!(err.contains("error: DeviceNotFound (404001): "), "{err}");
    assert!(err.contains("is not a twin id"), "{err}");
    assert!(err.contains("patch-reported takes no --etag"), "{err}");
    assert!(err.contains("usage: patch-desired"), "{err}");
    assert!(err.contains("error: DeviceAlreadyExists"), "{err}");
    assert_eq!(out, "devices: 4\nmodules: 2\njobs: 1\n");
}

#[test]
fn exit_ends_the_session_and_ignores_the_rest() {
    for word in ["exit", "quit", "EXIT"] {
        let (out, _) = fixture(&format!("count\n{word}\nget sensor-2\n"));
        assert_eq!(out, "devices: 4\nmodules: 2\njobs: 1\n", "{word}");
    }
    // The end of the input ends it too, with status 0.
    let (out, _) = fixture("");
    assert_eq!(out, "");
}

#[test]
fn explain_prints_the_plan() {
    let (out, _) = fixture(
        "EXPLAIN SELECT * FROM devices WHERE status = 'enabled'\n\
         explain analyze SELECT * FROM devices WHERE status = 'enabled'\n",
    );
    assert!(out.contains("Logical plan:"), "{out}");
    assert!(out.contains("Physical plan:"), "{out}");
    assert!(out.contains("actual rows 3"), "{out}");
}

#[test]
fn create_get_and_delete_device_and_module_twins() {
    let (out, err) = fixture(
        "create edge-1\n\
         create edge-1/$edgeHub\n\
         create ghost/m\n\
         get edge-1/$edgeHub\n\
         count\n\
         delete edge-1\n\
         count\n",
    );
    assert!(
        out.contains("ok: created edge-1, version 1, etag "),
        "{out}"
    );
    assert!(
        out.contains("ok: created edge-1/$edgeHub, version 1, etag "),
        "{out}"
    );
    assert!(err.contains("error: DeviceNotFound"), "{err}");
    let docs = json_docs(&out);
    assert_eq!(docs[0]["deviceId"], "edge-1");
    assert_eq!(docs[0]["moduleId"], "$edgeHub");
    assert!(out.contains("devices: 5\nmodules: 3\n"), "{out}");
    assert!(out.contains("ok: deleted edge-1"), "{out}");
    assert!(out.ends_with("devices: 4\nmodules: 2\njobs: 1\n"), "{out}");
}

#[test]
fn starts_with_generated_twins_without_data() {
    let o = shell(
        &["--count", "50"],
        "SELECT COUNT() AS n FROM devices\nget sensor-7\n",
    );
    let (out, err) = texts(&o);
    assert_eq!(o.status.code(), Some(0), "{err}");
    assert!(err.contains("50 device twins"), "{err}");
    assert!(err.contains("generated"), "{err}");
    assert!(err.contains("help"), "{err}");
    let docs = json_docs(&out);
    assert_eq!(docs[0], json!([{"n": 50}]));
    assert_eq!(docs[1]["deviceId"], "sensor-7");
}

#[test]
fn default_generated_set_has_1000_twins_and_accepts_writes() {
    let o = shell(
        &[],
        "SELECT COUNT() AS n FROM devices\n\
         get sensor-0\n\
         subscribe sensor-0\n\
         patch-desired sensor-0 {\"fw\": \"3.1\"}\n\
         SELECT deviceId FROM devices WHERE properties.desired.fw = '3.1'\n",
    );
    let (out, err) = texts(&o);
    assert_eq!(o.status.code(), Some(0), "{err}");
    assert!(err.contains("1000 device twins"), "{err}");
    assert!(err.contains("seed 42"), "{err}");
    let docs = json_docs(&out);
    assert_eq!(docs[0], json!([{"n": 1000}]));
    let before = docs[1]["properties"]["desired"]["$version"]
        .as_u64()
        .expect("desired $version");
    assert_eq!(docs[2], json!([{"deviceId": "sensor-0"}]));
    let v = before + 1;
    assert_eq!(
        lines_with(&out, "desired update for "),
        [format!(
            r#"desired update for sensor-0: $version {v}: {{"fw":"3.1","$version":{v}}}"#
        )]
    );
}

#[test]
fn a_load_failure_is_a_nonzero_exit() {
    let o = shell(
        &["--data", "tests/fixtures/does-not-exist.jsonl"],
        "count\n",
    );
    let (out, err) = texts(&o);
    assert_ne!(o.status.code(), Some(0));
    assert!(err.contains("error"), "{err}");
    assert_eq!(out, "");
}

#[test]
fn garbage_input_never_panics() {
    let script = [
        "\\",
        "explain",
        "explain analyze",
        "EXPLAIN ANALYZE select",
        "select",
        "SELECT * FROM devices WHERE deviceId = 'é",
        "SELECT * FROM devices WHERE 1 = 1 GROUP BY",
        "sé",
        "获取 设备",
        "get /",
        "get é/",
        "delete",
        "delete sensor-2 a b",
        "create",
        "create bad id",
        "create \u{0}",
        "patch-tags",
        "patch-tags sensor-2",
        "patch-tags sensor-2 --etag",
        "patch-tags sensor-2 --etag=",
        "patch-tags sensor-2 []",
        "patch-tags sensor-2 null",
        "patch-desired sensor-2 {\"$version\": 5}",
        "patch-twin sensor-2 {\"deviceId\": \"x\"}",
        "replace-twin sensor-2 \"text\"",
        "patch-reported sensor-2 {\"a\": {\"b\": {\"c\": {\"d\": {\"e\": {\"f\": {\"g\": {\"h\": {\"i\": {\"j\": {\"k\": 1}}}}}}}}}}}",
        "subscribe",
        "subscribe nobody",
        "unsubscribe sensor-2",
        ".format",
        ".format xml",
        ".functions routing",
        ".functions",
        "\u{feff}count",
        "help",
    ]
    .join("\n");
    let (out, err) = fixture(&format!("{script}\ncount\n"));
    assert!(out.contains("Commands"), "help is printed: {out}");
    assert!(out.ends_with("devices: 4\nmodules: 2\njobs: 1\n"), "{out}");
    assert!(!err.contains("internal error"), "{err}");
}
