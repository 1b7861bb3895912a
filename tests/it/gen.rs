//! The twin generator: determinism, prefix stability, document shapes, and what the anchor
//! queries (`shared/bench/queries.txt`) need from the data; and `twinql gen` run for real.

use std::collections::HashSet;
use std::io::Read;
use std::process::{Command, Stdio};

use serde_json::{Map, Value};
use twinql::r#gen::{GenOptions, generate_bytes, write_jsonl};

fn opts(count: u64, seed: u64) -> GenOptions {
    GenOptions {
        count,
        seed,
        modules: 0,
        jobs: false,
    }
}

fn docs(bytes: &[u8]) -> Vec<Value> {
    assert_eq!(bytes.last(), Some(&b'\n'), "output ends with a newline");
    bytes
        .split(|&b| b == b'\n')
        .filter(|l| !l.is_empty())
        .map(|l| {
            serde_json::from_slice(l)
                .unwrap_or_else(|e| panic!("invalid JSON ({e}): {}", String::from_utf8_lossy(l)))
        })
        .collect()
}

fn get<'a>(doc: &'a Value, path: &str) -> Option<&'a Value> {
    path.split('.').try_fold(doc, |v, k| v.get(k))
}

fn str_at<'a>(doc: &'a Value, path: &str) -> Option<&'a str> {
    get(doc, path).and_then(Value::as_str)
}

fn num_at(doc: &Value, path: &str) -> Option<f64> {
    get(doc, path).and_then(Value::as_f64)
}

#[test]
fn same_seed_same_bytes_other_seed_other_bytes() {
    let a = generate_bytes(&opts(300, 7));
    assert_eq!(a, generate_bytes(&opts(300, 7)));
    assert_ne!(a, generate_bytes(&opts(300, 8)));
    let mut streamed = Vec::new();
    let n = write_jsonl(&opts(300, 7), &mut streamed).unwrap();
    assert_eq!(n, a.len() as u64);
    assert_eq!(streamed, a, "write_jsonl and generate_bytes agree");
}

#[test]
fn output_does_not_depend_on_thread_count() {
    let o = GenOptions {
        count: 3000,
        seed: 42,
        modules: 2,
        jobs: true,
    };
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(1)
        .build()
        .unwrap();
    let single = pool.install(|| generate_bytes(&o));
    assert_eq!(single, generate_bytes(&o));
    let mut streamed = Vec::new();
    pool.install(|| write_jsonl(&o, &mut streamed)).unwrap();
    assert_eq!(streamed, single);
}

#[test]
fn prefix_stable() {
    let big = generate_bytes(&opts(5000, 42));
    let small = generate_bytes(&opts(1234, 42));
    assert!(
        big.starts_with(&small),
        "the first 1234 twins of 5000 are the 1234-twin run"
    );
    // Adding modules appends module twins and leaves the device twins alone.
    let with_modules = generate_bytes(&GenOptions {
        modules: 3,
        ..opts(1234, 42)
    });
    assert!(with_modules.starts_with(&small));
}

#[test]
fn every_line_is_a_device_twin_with_a_unique_id() {
    let all = docs(&generate_bytes(&opts(4000, 42)));
    assert_eq!(all.len(), 4000);
    let mut ids = HashSet::new();
    for (i, d) in all.iter().enumerate() {
        let id = str_at(d, "deviceId").expect("deviceId");
        assert!(id.ends_with(&format!("-{i}")), "{id} is device number {i}");
        assert!(ids.insert(id.to_string()), "duplicate deviceId {id}");
        assert!(d.get("moduleId").is_none());
        assert!(d.get("jobs").is_none(), "no jobs unless asked for");
        for member in [
            "etag",
            "deviceEtag",
            "status",
            "statusUpdateTime",
            "connectionState",
            "lastActivityTime",
            "cloudToDeviceMessageCount",
            "authenticationType",
            "x509Thumbprint",
            "modelId",
            "version",
            "properties",
            "capabilities",
        ] {
            assert!(d.get(member).is_some(), "{id} lacks {member}");
        }
        assert!(matches!(str_at(d, "status"), Some("enabled" | "disabled")));
        assert!(matches!(
            str_at(d, "connectionState"),
            Some("Connected" | "Disconnected")
        ));
        assert!(get(d, "capabilities.iotEdge").unwrap().is_boolean());
        assert_eq!(
            get(d, "capabilities.iotEdge"),
            Some(&Value::Bool(id.starts_with("gateway-")))
        );
        assert!(get(d, "x509Thumbprint.primaryThumbprint").is_some());
        check_section(&d["properties"]["desired"], true, id);
        check_section(&d["properties"]["reported"], false, id);
        if let Some(tags) = d.get("tags") {
            assert_no_nulls(tags, id);
        }
        assert_no_nulls(&d["properties"], id);
    }
}

/// `$version`, and a `$metadata` mirror with `$lastUpdated` at every level (plus
/// `$lastUpdatedVersion` in a non-empty desired section).
fn check_section(section: &Value, desired: bool, id: &str) {
    assert!(section["$version"].is_i64(), "{id}: $version");
    let meta = section["$metadata"].as_object().expect("$metadata");
    assert!(
        meta["$lastUpdated"].is_string(),
        "{id}: $metadata.$lastUpdated"
    );
    let user: Vec<_> = section
        .as_object()
        .unwrap()
        .iter()
        .filter(|(k, _)| !k.starts_with('$'))
        .collect();
    if desired && !user.is_empty() {
        assert!(meta["$lastUpdatedVersion"].is_i64(), "{id}");
    }
    fn mirror(obj: &[(&String, &Value)], meta: &Map<String, Value>, desired: bool, id: &str) {
        for (k, v) in obj {
            let m = meta
                .get(k.as_str())
                .and_then(Value::as_object)
                .unwrap_or_else(|| panic!("{id}: no $metadata for {k}"));
            assert!(m["$lastUpdated"].is_string(), "{id}: {k}");
            if desired {
                assert!(m["$lastUpdatedVersion"].is_i64(), "{id}: {k}");
            }
            if let Value::Object(inner) = v {
                let inner: Vec<_> = inner.iter().collect();
                mirror(&inner, m, desired, id);
            }
        }
    }
    mirror(&user, meta, desired, id);
}

fn assert_no_nulls(v: &Value, id: &str) {
    match v {
        Value::Null => panic!("{id}: null inside tags or properties"),
        Value::Object(m) => m.values().for_each(|v| assert_no_nulls(v, id)),
        Value::Array(a) => a.iter().for_each(|v| assert_no_nulls(v, id)),
        _ => {}
    }
}

#[test]
fn the_data_has_what_the_anchor_queries_need() {
    let all = docs(&generate_bytes(&opts(10_000, 42)));
    let n = all.len() as f64;
    let count = |f: &dyn Fn(&Value) -> bool| all.iter().filter(|d| f(d)).count();

    let q01 = count(&|d| str_at(d, "tags.location.plant") == Some("Redmond43"));
    let q02 = count(&|d| {
        str_at(d, "tags.location.plant") == Some("Redmond43")
            && str_at(d, "properties.reported.connectivity.type") == Some("cellular")
    });
    let q03 = count(&|d| matches!(str_at(d, "tags.location.region"), Some("US" | "EU")));
    let q04 = count(&|d| {
        num_at(d, "properties.reported.temperature").is_some_and(|t| (30.0..35.0).contains(&t))
    });
    let q05 = count(&|d| str_at(d, "deviceId").unwrap().starts_with("sensor-1"));
    let q06 = count(&|d| get(d, "tags.maintenanceWindow").is_some());
    let q07 = count(&|d| {
        str_at(d, "properties.reported.telemetryConfig.status") == Some("Error")
            || num_at(d, "properties.reported.battery").is_some_and(|b| b < 10.0)
    });
    let q08 = count(&|d| str_at(d, "tags.environment").is_some_and(|e| e != "production"));
    let q10 = count(&|d| {
        str_at(d, "properties.reported.connectivity.type") == Some("cellular")
            && str_at(d, "connectionState") == Some("Disconnected")
    });
    let q11 = count(&|d| {
        str_at(d, "tags.location.region") == Some("EU")
            && num_at(d, "properties.reported.temperature").is_some_and(|t| t > 25.0)
    });
    let q12 = count(&|d| str_at(d, "status") == Some("enabled"));
    for (id, c) in [
        ("Q01", q01),
        ("Q02", q02),
        ("Q03", q03),
        ("Q04", q04),
        ("Q05", q05),
        ("Q06", q06),
        ("Q07", q07),
        ("Q08", q08),
        ("Q10", q10),
        ("Q11", q11),
    ] {
        assert!(c > 0, "{id} matches nothing");
        assert!((c as f64) < 0.7 * n, "{id} matches {c} of {n}");
    }
    assert!((q01 as f64) < 0.02 * n, "Q01 is selective: {q01}");
    assert!((q05 as f64) < 0.15 * n, "Q05 is selective: {q05}");
    assert!((q12 as f64) > 0.9 * n, "Q12 is broad: {q12}");
    assert!(q12 < all.len(), "some devices are disabled");

    // Q09 groups: every status, and devices without one.
    for status in ["Success", "Pending", "Error"] {
        assert!(
            count(&|d| str_at(d, "properties.reported.telemetryConfig.status") == Some(status)) > 0
        );
    }
    assert!(count(&|d| get(d, "properties.reported.telemetryConfig.status").is_none()) > 0);
    // Q13 groups: rare regions appear, and twins without a region.
    assert!(count(&|d| str_at(d, "tags.location.region") == Some("ANZ")) > 0);
    assert!(count(&|d| get(d, "tags.location.region").is_none()) > 0);

    // Missing and oddly typed fields.
    assert!(
        count(&|d| d.get("tags").is_none()) > 0,
        "some twins have no tags"
    );
    assert!(count(&|d| get(d, "tags.maintenanceWindow").is_none()) > 0);
    assert!(
        count(&|d| get(d, "properties.reported.temperature").is_some_and(Value::is_string)) > 0
    );
    assert!(count(&|d| get(d, "tags.floor").is_some_and(Value::is_string)) > 0);
    assert!(count(&|d| str_at(d, "properties.reported.battery") == Some("low")) > 0);
    assert!(
        count(&|d| get(d, "properties.reported.firmwareVersion").is_some_and(Value::is_number)) > 0
    );
    assert!(count(&|d| str_at(d, "statusReason").is_some()) > 0);
    assert!(count(&|d| str_at(d, "authenticationType") == Some("selfSigned")) > 0);

    // About the size of a real twin (the anchor data averages 1.9 KB).
    let bytes = generate_bytes(&opts(10_000, 42)).len() as f64 / n;
    assert!((1500.0..2500.0).contains(&bytes), "{bytes} bytes per twin");
}

#[test]
fn module_twins_follow_the_devices() {
    let o = GenOptions {
        count: 300,
        seed: 42,
        modules: 4,
        jobs: false,
    };
    let all = docs(&generate_bytes(&o));
    assert_eq!(all.len() as u64, o.documents());
    assert_eq!(all.len(), 300 * 5);
    let (devices, modules) = all.split_at(300);
    let device_ids: HashSet<&str> = devices
        .iter()
        .map(|d| str_at(d, "deviceId").unwrap())
        .collect();
    let mut seen = HashSet::new();
    let mut system = 0;
    for m in modules {
        let device = str_at(m, "deviceId").unwrap();
        let module = str_at(m, "moduleId").expect("module twins have a moduleId");
        assert!(
            device_ids.contains(device),
            "{device} is a generated device"
        );
        assert!(
            seen.insert((device, module)),
            "duplicate module {device}/{module}"
        );
        if module.starts_with('$') {
            assert!(
                device.starts_with("gateway-"),
                "system modules only on edge devices"
            );
            assert!(matches!(module, "$edgeAgent" | "$edgeHub"));
            system += 1;
        }
        check_section(&m["properties"]["desired"], true, module);
        check_section(&m["properties"]["reported"], false, module);
    }
    assert_eq!(seen.len(), 300 * 4);
    assert!(system > 0, "some $edgeAgent / $edgeHub twins");
    let agent = modules
        .iter()
        .find(|m| str_at(m, "moduleId") == Some("$edgeAgent"))
        .unwrap();
    assert!(
        get(
            agent,
            "properties.desired.systemModules.edgeHub.settings.image"
        )
        .is_some()
    );
    assert!(get(agent, "properties.reported.lastDesiredStatus.code").is_some());
}

#[test]
fn job_records_have_the_documented_shape() {
    let o = GenOptions {
        jobs: true,
        ..opts(2000, 42)
    };
    let all = docs(&generate_bytes(&o));
    let mut records = 0;
    let mut statuses = HashSet::new();
    let mut job_ids = HashSet::new();
    for d in &all {
        let Some(jobs) = d.get("jobs") else { continue };
        for j in jobs.as_array().expect("jobs is an array") {
            records += 1;
            assert_eq!(j["deviceId"], d["deviceId"]);
            job_ids.insert(str_at(j, "jobId").unwrap().to_string());
            assert!(matches!(
                str_at(j, "jobType"),
                Some("scheduleUpdateTwin" | "scheduleDeviceMethod")
            ));
            let status = str_at(j, "status").unwrap();
            assert!(matches!(
                status,
                "pending" | "scheduled" | "running" | "completed" | "failed" | "canceled"
            ));
            statuses.insert(status.to_string());
            for t in [
                "startTimeUtc",
                "endTimeUtc",
                "createdDateTimeUtc",
                "lastUpdatedDateTimeUtc",
            ] {
                assert!(j[t].is_string(), "{t}");
            }
            let response = &j["outcome"]["deviceMethodResponse"];
            assert!(response.is_null() || response["status"].is_i64());
            if status == "failed" {
                assert!(j["error"]["code"].is_string());
            }
        }
    }
    let with_jobs = all.iter().filter(|d| d.get("jobs").is_some()).count();
    assert!(
        with_jobs > 0 && with_jobs < all.len(),
        "some device twins have jobs"
    );
    assert!(records > with_jobs, "some devices have several jobs");
    assert!(
        job_ids.len() > 1 && job_ids.len() < records,
        "jobs are shared by devices"
    );
    assert!(statuses.contains("completed") && statuses.contains("failed"));
    // The job records do not disturb the rest of the twin's random stream.
    let plain = docs(&generate_bytes(&opts(2000, 42)));
    for (a, b) in all.iter().zip(&plain) {
        assert_eq!(a["tags"], b["tags"]);
        assert_eq!(a["properties"], b["properties"]);
    }
}

#[test]
fn cli_gen_writes_json_lines() {
    let out = Command::new(env!("CARGO_BIN_EXE_twinql"))
        .args(["gen", "--count", "10", "--seed", "1"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.stderr.is_empty());
    assert_eq!(out.stdout, generate_bytes(&opts(10, 1)));
    assert_eq!(docs(&out.stdout).len(), 10);
}

#[test]
fn cli_gen_writes_a_file_with_modules_and_jobs() {
    let dir = std::env::temp_dir().join(format!("twinql-gen-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("twins.jsonl");
    let status = Command::new(env!("CARGO_BIN_EXE_twinql"))
        .args([
            "gen",
            "--count",
            "50",
            "--modules",
            "2",
            "--jobs",
            "--output",
        ])
        .arg(&path)
        .status()
        .unwrap();
    assert!(status.success());
    let written = std::fs::read(&path).unwrap();
    let _ = std::fs::remove_dir_all(&dir);
    let expected = generate_bytes(&GenOptions {
        count: 50,
        seed: 42,
        modules: 2,
        jobs: true,
    });
    assert_eq!(written, expected);
}

#[test]
fn cli_gen_rejects_too_many_modules() {
    let out = Command::new(env!("CARGO_BIN_EXE_twinql"))
        .args(["gen", "--count", "1", "--modules", "51"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(out.stdout.is_empty());
}

#[test]
fn cli_gen_into_a_closed_pipe_exits_quietly() {
    let mut child = Command::new(env!("CARGO_BIN_EXE_twinql"))
        .args(["gen", "--count", "200000"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdout = child.stdout.take().unwrap();
    let mut first = [0u8; 4096];
    stdout.read_exact(&mut first).unwrap();
    drop(stdout); // like `| head`
    let mut stderr = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .unwrap();
    let status = child.wait().unwrap();
    assert!(first.starts_with(b"{\"deviceId\":"));
    assert_eq!(stderr, "", "no panic or error message");
    assert_eq!(status.code(), Some(0));
}
