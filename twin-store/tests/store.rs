//! Loading, round trips, member lookup, collections and errors.

use serde_json::{Value, json};
use twinql_planner::value::{Key, Kind, Node};
use twinql_store::{CollectionKind, DocErrorKind, DocKind, LoadError, LoadOptions, NodeRef, Store};

fn quiet() -> LoadOptions {
    LoadOptions {
        progress: false,
        ..LoadOptions::default()
    }
}

fn load(text: &str) -> Store {
    let mut store = Store::new();
    store
        .load_bytes("test.jsonl", text.as_bytes(), &quiet())
        .unwrap_or_else(|e| panic!("{e}"));
    store
}

fn json_of(node: NodeRef<'_>) -> String {
    let mut out = Vec::new();
    node.write_json(&mut out);
    String::from_utf8(out).unwrap()
}

fn load_err(text: &str) -> LoadError {
    let mut store = Store::new();
    match store.load_bytes("in.jsonl", text.as_bytes(), &quiet()) {
        Ok(r) => panic!("expected an error, loaded {r:?}"),
        Err(e) => {
            assert_eq!(
                store.devices().len(),
                0,
                "a failed load leaves the store empty"
            );
            e
        }
    }
}

#[test]
fn compact_input_round_trips_byte_for_byte() {
    let lines = [
        r#"{"deviceId":"d1","n":[1.50,1e3,-0,12345678901234567890,1E+2,-0.0,0.1,3.0,1e-7,-9223372036854775808,9223372036854775808,0,-1,42,0.000001,123456789012.25,1.7976931348623157e308,5e-324,1e400]}"#,
        r#"{"deviceId":"d2","s":"caf\u00e9 é \"q\" \\ \n\t\u0001 / 😀","e":{},"a":[],"nested":{"x":[{"y":null},true,false]}}"#,
        r#"{"deviceId":"d3","long":"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa","k":1}"#,
    ];
    let store = load(&lines.join("\n"));
    let devices = store.devices();
    assert_eq!(devices.len(), 3);
    // Line 1 is compact with no escapes: byte-identical.
    assert_eq!(json_of(devices.doc(0)), lines[0]);
    assert_eq!(json_of(devices.doc(2)), lines[2]);
    // Line 2 has escapes: re-escaped minimally, the same JSON value.
    let back: Value = serde_json::from_str(&json_of(devices.doc(1))).unwrap();
    let orig: Value = serde_json::from_str(lines[1]).unwrap();
    assert_eq!(back, orig);
    assert_eq!(
        json_of(devices.doc(1).member(&Key::new("s")).unwrap()),
        r#""café é \"q\" \\ \n\t\u0001 / 😀""#
    );
}

#[test]
fn numbers_keep_text_and_value() {
    let store = load(
        r#"{"deviceId":"d","a":1.50,"b":1e3,"c":-0,"d":12345678901234567890,"e":-7,"f":26.17}"#,
    );
    let d = store.devices().doc(0);
    let num = |k: &str| d.member(&Key::new(k)).unwrap();
    assert_eq!(num("a").as_f64(), Some(1.5));
    assert_eq!(num("a").number_text().as_deref(), Some("1.50"));
    assert_eq!(num("b").as_f64(), Some(1000.0));
    assert_eq!(num("c").as_f64(), Some(0.0));
    assert!(num("c").as_f64().unwrap().is_sign_negative());
    assert_eq!(num("d").as_f64(), Some(12345678901234567890.0));
    assert_eq!(num("e").as_f64(), Some(-7.0));
    assert_eq!(num("f").as_f64(), Some(26.17));
    assert_eq!(num("f").kind(), Kind::Number);
    assert_eq!(num("f").as_str(), None);
}

#[test]
fn node_accessors() {
    let store = load(
        r#"{"deviceId":"d","t":true,"f":false,"z":null,"arr":[10,"x",{"k":"v"}],"o":{"a":1,"b":2}}"#,
    );
    let d = store.devices().doc(0);
    let m = |k: &str| d.member(&Key::new(k)).unwrap();
    assert_eq!(m("t").as_bool(), Some(true));
    assert_eq!(m("f").as_bool(), Some(false));
    assert_eq!(m("z").kind(), Kind::Null);
    let arr = m("arr");
    assert_eq!(arr.kind(), Kind::Array);
    assert_eq!(arr.len(), 3);
    assert_eq!(arr.element(0).unwrap().as_f64(), Some(10.0));
    assert_eq!(arr.element(1).unwrap().as_str(), Some("x"));
    assert_eq!(json_of(arr.element(2).unwrap()), r#"{"k":"v"}"#);
    assert!(arr.element(3).is_none());
    assert_eq!(arr.elements().count(), 3);
    let o = m("o");
    assert_eq!(o.len(), 2);
    let mut seen = Vec::new();
    o.for_each_member(&mut |k, v| seen.push((k.to_string(), v.as_f64())));
    assert_eq!(
        seen,
        [("a".to_string(), Some(1.0)), ("b".to_string(), Some(2.0))]
    );
    assert_eq!(d.len(), 6);
    assert!(d.member(&Key::new("missing")).is_none());
    assert!(m("t").member(&Key::new("x")).is_none());
    assert!(m("o").element(0).is_none());
}

#[test]
fn member_lookup_prefers_exact_case() {
    // Two keys that differ only in case, in both orders.
    let store = load(concat!(
        r#"{"deviceId":"d1","tags":{"Color":"upper","color":"lower"}}"#,
        "\n",
        r#"{"deviceId":"d2","tags":{"color":"lower","Color":"upper"}}"#,
        "\n",
        r#"{"deviceId":"d3","tags":{"COLOR":"shout","CoLoR":"mixed"}}"#,
        "\n",
    ));
    for resolve in [false, true] {
        let mk = |name: &str| {
            let mut k = Key::new(name);
            if resolve {
                store.resolve_key(&mut k);
            }
            k
        };
        let (tags, lower, upper, other) = (mk("tags"), mk("color"), mk("Color"), mk("cOLOR"));
        let get = |i, k: &Key| {
            store
                .devices()
                .doc(i)
                .member(&tags)
                .unwrap()
                .member(k)
                .unwrap()
                .as_str()
                .unwrap()
        };
        assert_eq!(get(0, &lower), "lower", "resolved: {resolve}");
        assert_eq!(get(0, &upper), "upper");
        assert_eq!(get(1, &lower), "lower");
        assert_eq!(get(1, &upper), "upper");
        // No exact match: the first case-insensitive one in document order.
        assert_eq!(get(0, &other), "upper");
        assert_eq!(get(1, &other), "lower");
        assert_eq!(get(2, &lower), "shout");
        assert_eq!(get(2, &upper), "shout");
    }
    let mut k = Key::new("nothing");
    store.resolve_key(&mut k);
    assert_eq!(k.exact, Some(twinql_store::ABSENT_KEY));
    assert!(store.devices().doc(0).member(&k).is_none());
    let mut k = Key::new("COLOR");
    store.resolve_key(&mut k);
    assert_eq!(k.folded_ids.len(), 4);
}

#[test]
fn non_ascii_keys_fold() {
    let store = load(r#"{"deviceId":"d","Größe":1,"ÉTÉ":2}"#);
    let d = store.devices().doc(0);
    for resolve in [false, true] {
        let mut k = Key::new("größe");
        let mut e = Key::new("été");
        if resolve {
            store.resolve_key(&mut k);
            store.resolve_key(&mut e);
        }
        assert_eq!(d.member(&k).unwrap().as_f64(), Some(1.0));
        assert_eq!(d.member(&e).unwrap().as_f64(), Some(2.0));
    }
}

#[test]
fn modules_and_jobs() {
    let text = concat!(
        r#"{"deviceId":"d1","jobs":[{"jobId":"j1","status":"completed"},{"deviceId":"d1","jobId":"j2","status":"running"}],"tags":{"a":1}}"#,
        "\n",
        r#"{"deviceId":"d1","moduleId":"$edgeAgent","tags":{}}"#,
        "\n",
        r#"{"deviceId":"d2","moduleId":"$edgeAgent"}"#,
        "\n",
        r#"{"deviceId":"d2","jobs":[]}"#,
        "\n",
    );
    let mut store = Store::new();
    let report = store.load_bytes("t", text.as_bytes(), &quiet()).unwrap();
    assert_eq!((report.devices, report.modules, report.jobs), (2, 2, 2));
    assert_eq!(
        json_of(store.devices().doc(0)),
        r#"{"deviceId":"d1","tags":{"a":1}}"#
    );
    assert_eq!(json_of(store.devices().doc(1)), r#"{"deviceId":"d2"}"#);
    assert_eq!(
        json_of(store.jobs().doc(0)),
        r#"{"deviceId":"d1","jobId":"j1","status":"completed"}"#
    );
    assert_eq!(
        json_of(store.jobs().doc(1)),
        r#"{"deviceId":"d1","jobId":"j2","status":"running"}"#
    );
    assert_eq!(
        store
            .modules()
            .doc(1)
            .member(&Key::new("deviceId"))
            .unwrap()
            .as_str(),
        Some("d2")
    );
    assert_eq!(store.devices().find("d2", None), Some(1));
    assert_eq!(store.modules().find("d1", Some("$edgeAgent")), Some(0));
    assert_eq!(store.modules().find("d3", Some("$edgeAgent")), None);
    assert_eq!(store.jobs().find("d1", Some("j2")), Some(1));
    assert_eq!(store.jobs().identity(0), Some(("d1", Some("j1"))));
    assert_eq!(store.collection(CollectionKind::Modules).len(), 2);

    // A separate file of job records.
    let jobs = r#"{"deviceId":"d2","jobId":"j9","jobType":"scheduleDeviceMethod"}"#;
    let opts = LoadOptions {
        kind: DocKind::Jobs,
        ..quiet()
    };
    let report = store.load_bytes("jobs", jobs.as_bytes(), &opts).unwrap();
    assert_eq!(report.jobs, 1);
    assert_eq!(json_of(store.jobs().doc(2)), jobs);
    // Missing jobId in a job file.
    let err = store
        .load_bytes("jobs", br#"{"deviceId":"d2"}"#, &opts)
        .unwrap_err();
    assert_eq!(
        err.doc_error().unwrap().kind,
        DocErrorKind::MissingMember { member: "jobId" }
    );
    assert_eq!(store.jobs().len(), 3);
}

#[test]
fn bad_jobs_are_rejected() {
    let cases = [
        (r#"{"deviceId":"d","jobs":{}}"#, DocErrorKind::JobsNotArray),
        (
            r#"{"deviceId":"d","jobs":[1]}"#,
            DocErrorKind::BadJob {
                index: 0,
                problem: "not an object",
            },
        ),
        (
            r#"{"deviceId":"d","jobs":[{"jobId":"a"},{"status":"x"}]}"#,
            DocErrorKind::BadJob {
                index: 1,
                problem: "no `jobId`",
            },
        ),
        (
            r#"{"deviceId":"d","jobs":[{"jobId":"a","deviceId":"e"}]}"#,
            DocErrorKind::BadJob {
                index: 0,
                problem: "`deviceId` differs from the twin's",
            },
        ),
        (
            r#"{"deviceId":"d","moduleId":"m","jobs":[]}"#,
            DocErrorKind::JobsOnModule,
        ),
        (
            r#"{"deviceId":"d","jobs":[],"jobs":[]}"#,
            DocErrorKind::DuplicateJobs,
        ),
        (
            r#"{"deviceId":"d","jobs":[{"jobId":"a"},{"jobId":"a"}]}"#,
            DocErrorKind::Duplicate {
                collection: CollectionKind::Jobs,
                identity: r#"deviceId "d", jobId "a""#.into(),
                first_line: Some(1),
            },
        ),
    ];
    for (text, kind) in cases {
        let e = load_err(text);
        assert_eq!(e.doc_error().unwrap().kind, kind, "{text}");
    }
}

#[test]
fn errors_name_line_and_column() {
    let e = load_err("{\"deviceId\":\"a\"}\n\n{\"deviceId\":\"b\",\"x\":tru}\n");
    assert_eq!(
        e.to_string(),
        "in.jsonl:3:24: unexpected '}', expected a value"
    );
    let e = load_err("{\"deviceId\":\"a\"}\n{\"x\":1}\n");
    let d = e.doc_error().unwrap();
    assert_eq!((d.line, d.column), (2, 1));
    assert_eq!(d.kind, DocErrorKind::MissingMember { member: "deviceId" });
    let e = load_err(r#"{"deviceId":5}"#);
    assert_eq!(
        e.doc_error().unwrap().kind,
        DocErrorKind::NotAString { member: "deviceId" }
    );
    assert_eq!(e.doc_error().unwrap().column, 13);
    // Columns count characters, not bytes.
    let e = load_err(r#"{"deviceId":"é","x":01}"#);
    assert_eq!(e.doc_error().unwrap().kind, DocErrorKind::InvalidNumber);
    assert_eq!(e.doc_error().unwrap().column, 21);
    let e = load_err("[1]");
    assert_eq!(
        e.doc_error().unwrap().kind,
        DocErrorKind::NotAnObject { found: "a number" }
    );
    let e = load_err("{\"deviceId\":\"a\"} x");
    assert_eq!(
        e.doc_error().unwrap().kind,
        DocErrorKind::TrailingCharacters
    );
    let mut bad = b"{\"deviceId\":\"a\",\"s\":\"ab".to_vec();
    bad.extend_from_slice(&[0xff, b'"', b'}']);
    let mut store = Store::new();
    let e = store.load_bytes("bin", &bad, &quiet()).unwrap_err();
    assert_eq!(e.doc_error().unwrap().kind, DocErrorKind::InvalidUtf8);
    assert_eq!(e.doc_error().unwrap().column, 24);
    let e = load_err(r#"{"deviceId":"a","s":"\ud800"}"#);
    assert_eq!(e.doc_error().unwrap().kind, DocErrorKind::LoneSurrogate);
    let e = load_err(r#"{"deviceId":"a","s":"\q"}"#);
    assert_eq!(e.doc_error().unwrap().kind, DocErrorKind::InvalidEscape);
    let e = load_err("{\"deviceId\":\"a\",\"s\":\"\t\"}");
    assert_eq!(
        e.doc_error().unwrap().kind,
        DocErrorKind::ControlCharacter(9)
    );
    let e = load_err(r#"{"deviceId":"a","s":"abc"#);
    assert!(matches!(
        e.doc_error().unwrap().kind,
        DocErrorKind::UnexpectedEnd { .. }
    ));
}

#[test]
fn nesting_is_limited() {
    let deep = |n: usize| {
        format!(
            "{{\"deviceId\":\"a\",\"x\":{}{}}}",
            "[".repeat(n),
            "]".repeat(n)
        )
    };
    // The document is level 1, so 63 more levels fit in the default limit of 64.
    load(&deep(63));
    let e = load_err(&deep(64));
    assert_eq!(
        e.doc_error().unwrap().kind,
        DocErrorKind::TooDeep { limit: 64 }
    );
    let e = load_err(&deep(100_000));
    assert_eq!(
        e.doc_error().unwrap().kind,
        DocErrorKind::TooDeep { limit: 64 }
    );
}

#[test]
fn skip_invalid_reports_and_loads_the_rest() {
    let text = "{\"deviceId\":\"a\"}\nnot json\n{\"deviceId\":\"b\"}\n{\"x\":1}\n{\"deviceId\":\"a\"}\n{\"deviceId\":\"c\"}\n";
    let mut store = Store::new();
    let opts = LoadOptions {
        skip_invalid: true,
        max_reported_errors: 2,
        ..quiet()
    };
    let report = store.load_bytes("t", text.as_bytes(), &opts).unwrap();
    assert_eq!(report.devices, 3);
    assert_eq!(report.skipped, 3);
    assert_eq!(report.errors.len(), 2);
    assert_eq!(report.errors[0].line, 2);
    assert_eq!(report.errors[1].line, 4);
    let ids: Vec<_> = store
        .devices()
        .iter()
        .map(|d| d.member(&Key::new("deviceId")).unwrap().as_str().unwrap())
        .collect();
    assert_eq!(ids, ["a", "b", "c"]);
}

#[test]
fn duplicates_name_both_lines() {
    let e = load_err("{\"deviceId\":\"a\"}\n{\"deviceId\":\"b\"}\n{\"deviceId\":\"a\"}\n");
    assert_eq!(
        e.to_string(),
        r#"in.jsonl:3:1: duplicate device deviceId "a" (first at line 1)"#
    );
    let e = load_err(concat!(
        r#"{"deviceId":"a","moduleId":"m"}"#,
        "\n",
        r#"{"deviceId":"a"}"#,
        "\n",
        r#"{"deviceId":"a","moduleId":"m"}"#
    ));
    assert_eq!(
        e.doc_error().unwrap().kind,
        DocErrorKind::Duplicate {
            collection: CollectionKind::Modules,
            identity: r#"deviceId "a", moduleId "m""#.into(),
            first_line: Some(1)
        }
    );
    // Against an earlier load; the failed load leaves the store as it was.
    let mut store = load("{\"deviceId\":\"a\"}");
    let e = store
        .load_bytes(
            "more",
            b"{\"deviceId\":\"z\"}\n{\"deviceId\":\"a\"}",
            &quiet(),
        )
        .unwrap_err();
    assert!(e.to_string().ends_with("(loaded earlier)"), "{e}");
    assert_eq!(store.devices().len(), 1);
    assert_eq!(store.devices().find("z", None), None);
    store
        .load_bytes("more", b"{\"deviceId\":\"z\"}", &quiet())
        .unwrap();
    assert_eq!(store.devices().find("z", None), Some(1));
    // Same deviceId in devices and modules is fine.
    load("{\"deviceId\":\"a\"}\n{\"deviceId\":\"a\",\"moduleId\":\"a\"}");
}

#[test]
fn json_array_input() {
    let text = "  [\n {\"deviceId\":\"a\",\"v\":[1,{\"w\":\"]\"}]},\n {\"deviceId\":\"b\",\n  \"x\":\"y\"}\n]\n";
    let store = load(text);
    assert_eq!(store.devices().len(), 2);
    assert_eq!(
        json_of(store.devices().doc(0)),
        r#"{"deviceId":"a","v":[1,{"w":"]"}]}"#
    );
    assert_eq!(
        json_of(store.devices().doc(1)),
        r#"{"deviceId":"b","x":"y"}"#
    );
    load("[]");
    load("");
    load("\n\n  \n");
    let e = load_err("[\n{\"deviceId\":\"a\"},\n{\"deviceId\":\"b\",\n\"x\":nul}]");
    let d = e.doc_error().unwrap();
    assert_eq!((d.line, d.column), (4, 8));
    let e = load_err("[{\"deviceId\":\"a\"} {\"deviceId\":\"b\"}]");
    assert!(matches!(
        e.doc_error().unwrap().kind,
        DocErrorKind::Unexpected { .. }
    ));
    let e = load_err("[{\"deviceId\":\"a\"},]");
    assert!(matches!(
        e.doc_error().unwrap().kind,
        DocErrorKind::Unexpected { .. }
    ));
    let e = load_err("[{\"deviceId\":\"a\"}");
    assert!(matches!(
        e.doc_error().unwrap().kind,
        DocErrorKind::UnexpectedEnd { .. }
    ));
}

#[test]
fn load_path_reads_in_blocks() {
    let dir = std::env::temp_dir().join(format!("twinql-store-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("twins.jsonl");
    let mut text = String::new();
    for i in 0..200 {
        let pad = "x".repeat(i % 37);
        text.push_str(&format!(
            "{{\"deviceId\":\"d{i}\",\"pad\":\"{pad}\",\"n\":{i}}}\n"
        ));
        if i % 50 == 0 {
            text.push('\n');
        }
    }
    // A line longer than a block.
    text.push_str(&format!(
        "{{\"deviceId\":\"long\",\"pad\":\"{}\"}}",
        "y".repeat(500)
    ));
    std::fs::write(&path, &text).unwrap();
    // Mapped and parsed in place (a block parsed while the one before is added), read block
    // by block, and from memory: the same documents in the same order.
    for map_files in [true, false] {
        for block in [7, 64, 100, 1 << 20] {
            let opts = LoadOptions {
                block_bytes: block,
                map_files,
                ..quiet()
            };
            let mut from_file = Store::new();
            let mut from_bytes = Store::new();
            let report = from_file.load_path(&path, &opts).unwrap();
            assert_eq!(report.devices, 201, "block {block}, mapped {map_files}");
            let report = from_bytes.load_bytes("t", text.as_bytes(), &opts).unwrap();
            assert_eq!(report.devices, 201, "block {block}, from memory");
            for (i, line) in text.lines().filter(|l| !l.is_empty()).enumerate() {
                assert_eq!(json_of(from_file.devices().doc(i as u32)), line);
                assert_eq!(json_of(from_bytes.devices().doc(i as u32)), line);
            }
        }
    }
    // Line numbers stay right across blocks, and a failed load leaves the store empty.
    let bad = format!("{}\n{{\"deviceId\":1}}\n", text.trim_end());
    std::fs::write(&path, &bad).unwrap();
    let bad_line = text.trim_end().lines().count() as u64 + 1;
    for map_files in [true, false] {
        let opts = LoadOptions {
            block_bytes: 64,
            map_files,
            ..quiet()
        };
        let mut store = Store::new();
        let e = store.load_path(&path, &opts).unwrap_err();
        assert_eq!(e.doc_error().unwrap().line, bad_line, "mapped {map_files}");
        assert_eq!(store.devices().len(), 0);
        let e = store.load_bytes("t", bad.as_bytes(), &opts).unwrap_err();
        assert_eq!(e.doc_error().unwrap().line, bad_line);
        assert_eq!(store.devices().len(), 0);
    }
    std::fs::write(&path, "[{\"deviceId\":\"a\"}]").unwrap();
    assert_eq!(Store::new().load_path(&path, &quiet()).unwrap().devices, 1);
    let e = Store::new()
        .load_path(&dir.join("missing"), &quiet())
        .unwrap_err();
    assert!(matches!(e, LoadError::Io { .. }));
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn conformance_datasets_load() {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../shared/conformance/datasets.json"
    );
    let Ok(text) = std::fs::read_to_string(path) else {
        // The shared conformance data lives outside the repository.
        return;
    };
    let datasets: serde_json::Map<String, Value> = serde_json::from_str(&text).unwrap();
    for (name, set) in &datasets {
        let mut store = Store::new();
        let twins = set["twins"]
            .as_array()
            .map(Vec::as_slice)
            .unwrap_or_default();
        let modules = set["modules"]
            .as_array()
            .map(Vec::as_slice)
            .unwrap_or_default();
        let r = store
            .add_json(DocKind::Twins, twins.iter().chain(modules))
            .unwrap();
        assert_eq!(r.devices + r.modules, twins.len() + modules.len(), "{name}");
        for (doc, orig) in store.devices().iter().zip(twins) {
            let mut orig = orig.clone();
            if let Some(o) = orig.as_object_mut() {
                o.remove("jobs");
            }
            assert_eq!(serde_json::from_str::<Value>(&json_of(doc)).unwrap(), orig);
        }
    }
}

#[test]
fn add_json_helpers_and_memory() {
    let mut store = Store::new();
    store
        .add_twin(&json!({"deviceId": "a", "tags": {"x": 1}}))
        .unwrap();
    store
        .add_job(&json!({"deviceId": "a", "jobId": "j"}))
        .unwrap();
    assert!(store.add_twin(&json!({"deviceId": "a"})).is_err());
    assert!(store.add_twin(&json!([1])).is_err());
    assert_eq!(store.devices().len(), 1);
    assert_eq!(store.jobs().len(), 1);
    assert!(store.memory_bytes() > 0);
    assert_eq!(store.memory().total(), store.memory_bytes());
    assert!(store.key_id("tags").is_some());
    assert_eq!(store.key_name(store.key_id("tags").unwrap()), "tags");
    let ids: Vec<u32> = store.devices().ids().collect();
    assert_eq!(ids, [0]);
    assert!(store.devices().get(1).is_none());
    use rayon::prelude::*;
    assert_eq!(store.devices().par_iter().count(), 1);
    assert_eq!(
        format!("{:?}", store.devices().doc(0)),
        r#"{"deviceId":"a","tags":{"x":1}}"#
    );
}

#[test]
fn member_names_in_varying_order_and_spelling() {
    // Member order changes from twin to twin; the same name written with and without escapes
    // is one key; names that need escapes round-trip.
    let text = concat!(
        r#"{"deviceId":"a","ab":1,"q\"x":2,"b\\c":3}"#,
        "\n",
        r#"{"b\\c":4,"deviceId":"b","a\u0062":5,"q\"x":6}"#,
        "\n",
        r#"{"q\"x":7,"ab":8,"deviceId":"c"}"#,
        "\n",
        r#"{"deviceId":"d","ab":9,"q\"x":10,"b\\c":11}"#,
    );
    let store = load(text);
    let ab = |i| {
        store
            .devices()
            .doc(i)
            .member(&Key::new("ab"))
            .and_then(|n| n.as_f64())
    };
    let quote = |i| {
        store
            .devices()
            .doc(i)
            .member(&Key::new("q\"x"))
            .and_then(|n| n.as_f64())
    };
    assert_eq!(
        [ab(0), ab(1), ab(2), ab(3)],
        [Some(1.0), Some(5.0), Some(8.0), Some(9.0)]
    );
    assert_eq!(
        [quote(0), quote(1), quote(2), quote(3)],
        [Some(2.0), Some(6.0), Some(7.0), Some(10.0)]
    );
    assert_eq!(
        json_of(store.devices().doc(0)),
        r#"{"deviceId":"a","ab":1,"q\"x":2,"b\\c":3}"#
    );
    assert_eq!(
        json_of(store.devices().doc(1)),
        r#"{"b\\c":4,"deviceId":"b","ab":5,"q\"x":6}"#
    );
    // deviceId, moduleId, jobId, jobs (always known), ab, q"x, b\c.
    assert_eq!(store.key_count(), 7);
}
