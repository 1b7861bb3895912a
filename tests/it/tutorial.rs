//! The Azure IoT Hub device-twin tutorial (see `examples/device_twins.rs`) as an integration
//! test: every step's answer is checked — query rows, twin `version` and `etag`, section
//! `$version`s and `$metadata`, the desired notification, and the refused stale-etag write.
//!
//! The scenario runs on an empty database and on top of generated twins, each with and without
//! indexes, so both the scan and the index paths (base index plus the delta of live writes)
//! answer the tutorial's queries.

use serde_json::Value;
use std::sync::mpsc::TryRecvError;
use twinql::db::Access;
use twinql::r#gen::{GenOptions, generate_bytes};
use twinql::store::twin::etag_for_version;
use twinql::{Database, ErrorCode, TwinId};
use twinql_planner::functions::FunctionSet;
use twinql_store::index::IndexPolicy;
use twinql_store::{LoadOptions, Store};

const DEVICE: &str = "myDeviceId";

const IN_REDMOND43: &str = "SELECT * FROM devices WHERE tags.location.plant = 'Redmond43'";
const CELLULAR_IN_REDMOND43: &str = "SELECT * FROM devices WHERE tags.location.plant = 'Redmond43' \
     AND properties.reported.connectivity = 'cellular'";

const TUTORIAL_PATCH: &str = r#"{
    "tags": { "location": { "region": "US", "plant": "Redmond43" } },
    "properties": { "desired": { "power_level": 1 } }
}"#;

/// A database of `twins` generated device twins (seed 7 has one `Redmond43` device in its
/// first 500, so the plant's posting list is not empty), with or without default indexes.
fn database(twins: u64, indexed: bool) -> Database {
    let mut db = if twins == 0 {
        Database::new()
    } else {
        let bytes = generate_bytes(&GenOptions {
            count: twins,
            seed: 7,
            modules: 0,
            jobs: false,
        });
        let mut store = Store::new();
        store
            .load_bytes("generated", &bytes, &LoadOptions::default())
            .expect("generated twins load");
        Database::from_store(store)
    };
    if indexed {
        db.build_index(&IndexPolicy::default());
    }
    db
}

fn json(text: &str) -> Value {
    serde_json::from_str(text).expect("valid JSON")
}

fn twin(db: &Database) -> Value {
    json(
        &db.get_twin(&TwinId::device(DEVICE))
            .expect("the twin exists"),
    )
}

/// The rows of `query`, after checking that the chosen access path (index or scan) and a full
/// scan of the same snapshot return the same rows, and that the access path is an index
/// operator when indexes are built and `index_expected`, and never one without indexes.
fn rows(db: &Database, query: &str, indexed: bool, index_expected: bool) -> Vec<Value> {
    let snap = db.snapshot();
    let plan = snap.plan(query, FunctionSet::Twin).expect("valid query");
    let access = snap.access(&plan);
    if indexed && index_expected {
        assert!(
            access.name().starts_with("Index"),
            "{query}: expected an index operator, got {}",
            access.name()
        );
    }
    if !indexed {
        // Without indexes a query scans: the documents or the columns of its paths.
        assert!(
            matches!(
                access,
                Access::FullScan | Access::ColumnScan { .. } | Access::ColumnGroups(_)
            ),
            "{query}: no indexes, yet {access:?}"
        );
    }
    let mut chosen = snap.run_access(&plan, &access, false);
    let mut scanned = snap.run_access(&plan, &Access::FullScan, false);
    chosen.sort();
    scanned.sort();
    assert_eq!(
        chosen,
        scanned,
        "{query}: {} differs from a scan",
        access.name()
    );
    let all = db.query_all(query).expect("valid query");
    assert_eq!(all.len(), chosen.len(), "{query}: query_all vs run_access");
    all.iter().map(|r| json(r)).collect()
}

fn ids(rows: &[Value]) -> Vec<&str> {
    rows.iter()
        .map(|r| r["deviceId"].as_str().expect("deviceId"))
        .collect()
}

/// The tutorial, step by step, on `db` (which must not hold `myDeviceId`; its other twins of
/// plant Redmond43, if any, must not report `connectivity = 'cellular'` as a string).
fn tutorial(db: &Database, indexed: bool) {
    let id = TwinId::device(DEVICE);
    let background = rows(db, IN_REDMOND43, indexed, false).len();
    assert!(rows(db, CELLULAR_IN_REDMOND43, indexed, false).is_empty());
    let devices_before = db.snapshot().count(twinql_store::CollectionKind::Devices);

    // 1. Create the identity: a fresh twin at version 1.
    let created = json(&db.create_twin(&id).expect("create"));
    assert_eq!(created["deviceId"], DEVICE);
    assert_eq!(created["version"], 1);
    assert_eq!(created["etag"], etag_for_version(1));
    assert_eq!(created["status"], "enabled");
    assert_eq!(created["connectionState"], "Disconnected");
    assert!(
        created.get("tags").is_none(),
        "a new twin has no tags member"
    );
    for section in ["desired", "reported"] {
        let s = &created["properties"][section];
        assert_eq!(s["$version"], 1, "{section}");
        assert!(s["$metadata"]["$lastUpdated"].is_string(), "{section}");
        assert_eq!(s.as_object().map(|o| o.len()), Some(2), "{section}: {s}");
    }
    assert_eq!(created, twin(db), "get_twin returns the created twin");
    assert_eq!(
        db.create_twin(&id).map_err(|e| e.code),
        Err(ErrorCode::DeviceAlreadyExists)
    );
    assert_eq!(
        db.snapshot().count(twinql_store::CollectionKind::Devices),
        devices_before + 1
    );

    // 2. The device subscribes to desired updates.
    let updates = db.subscribe_desired(&id).expect("subscribe");
    assert_eq!(updates.try_recv(), Err(TryRecvError::Empty));

    // 3. The back end reads the etag and patches tags and desired in one conditional write.
    let first_etag = twin(db)["etag"].as_str().expect("etag").to_string();
    let created_at = created["properties"]["reported"]["$metadata"]["$lastUpdated"]
        .as_str()
        .expect("timestamp")
        .to_string();
    let ack = db
        .patch_twin(&id, TUTORIAL_PATCH, Some(&first_etag))
        .expect("patch with the current etag");
    assert_eq!(ack.version, 2);
    assert_eq!(ack.etag, etag_for_version(2));
    assert_ne!(ack.etag, first_etag);
    let t = twin(db);
    assert_eq!(t["version"], 2);
    assert_eq!(t["etag"], ack.etag.as_str());
    assert_eq!(
        t["deviceEtag"], created["deviceEtag"],
        "the identity is unchanged"
    );
    assert_eq!(
        t["tags"],
        json(r#"{"location":{"region":"US","plant":"Redmond43"}}"#)
    );
    let desired = &t["properties"]["desired"];
    assert_eq!(desired["power_level"], 1);
    assert_eq!(desired["$version"], 2);
    let meta = &desired["$metadata"];
    let stamp = meta["power_level"]["$lastUpdated"]
        .as_str()
        .expect("$metadata.power_level.$lastUpdated");
    assert!(stamp >= created_at.as_str(), "{stamp} before {created_at}");
    assert_eq!(meta["power_level"]["$lastUpdatedVersion"], 2);
    assert_eq!(meta["$lastUpdated"].as_str(), Some(stamp));
    assert_eq!(meta["$lastUpdatedVersion"], 2);
    assert_eq!(
        t["properties"]["reported"], created["properties"]["reported"],
        "a back-end write leaves reported alone"
    );
    // The metadata is queryable like any member (spec §4.3).
    let m = rows(
        db,
        "SELECT properties.desired.$metadata.power_level.$lastUpdated AS t, \
         properties.desired.$version AS v FROM devices WHERE deviceId = 'myDeviceId'",
        indexed,
        true,
    );
    assert_eq!(m, vec![json(&format!(r#"{{"t":"{stamp}","v":2}}"#))]);

    // 4. The plant query finds the device, the cellular one does not (yet).
    let found = rows(db, IN_REDMOND43, indexed, true);
    assert_eq!(found.len(), background + 1);
    assert!(ids(&found).contains(&DEVICE));
    let mine = found
        .iter()
        .find(|r| r["deviceId"] == DEVICE)
        .expect("found");
    assert_eq!(mine, &t, "SELECT * returns the twin as get_twin does");
    assert!(rows(db, CELLULAR_IN_REDMOND43, indexed, false).is_empty());

    // 5. The device reports its connectivity and finds the desired patch waiting.
    let ack = db
        .patch_reported(&id, r#"{"connectivity": "cellular"}"#)
        .expect("report");
    assert_eq!(ack.version, 3);
    assert_eq!(ack.etag, etag_for_version(3));
    let update = updates.try_recv().expect("the desired patch was delivered");
    assert_eq!(update.version, 2);
    assert_eq!(update.patch, r#"{"power_level":1,"$version":2}"#);
    assert_eq!(
        updates.try_recv(),
        Err(TryRecvError::Empty),
        "one patch only"
    );
    let t3 = twin(db);
    assert_eq!(t3["version"], 3);
    let reported = &t3["properties"]["reported"];
    assert_eq!(reported["connectivity"], "cellular");
    assert_eq!(reported["$version"], 2);
    let rmeta = &reported["$metadata"];
    assert!(rmeta["connectivity"]["$lastUpdated"].is_string(), "{rmeta}");
    assert_eq!(rmeta["$lastUpdated"], rmeta["connectivity"]["$lastUpdated"]);
    assert!(
        rmeta["connectivity"].get("$lastUpdatedVersion").is_none(),
        "only desired entries carry $lastUpdatedVersion (spec §4.3): {rmeta}"
    );
    assert_eq!(t3["properties"]["desired"], t["properties"]["desired"]);
    assert_eq!(t3["tags"], t["tags"]);

    // 6. Both queries find it now.
    let found = rows(db, IN_REDMOND43, indexed, true);
    assert_eq!(found.len(), background + 1);
    let cellular = rows(db, CELLULAR_IN_REDMOND43, indexed, true);
    assert_eq!(ids(&cellular), vec![DEVICE]);
    assert_eq!(cellular[0], t3);
    let count = rows(
        db,
        "SELECT COUNT() AS n FROM devices WHERE tags.location.plant = 'Redmond43' \
         AND properties.reported.connectivity = 'cellular'",
        indexed,
        true,
    );
    assert_eq!(count, vec![json(r#"{"n":1}"#)]);

    // 7. The stale etag of step 3 is refused, and nothing changes.
    let before = db.get_twin(&id).expect("twin");
    let seq = db.snapshot().seq();
    for write in [
        db.patch_twin(
            &id,
            r#"{"properties":{"desired":{"power_level":2}}}"#,
            Some(&first_etag),
        ),
        db.patch_desired(&id, r#"{"power_level":2}"#, Some(&first_etag)),
        db.patch_tags(&id, r#"{"location":null}"#, Some(&first_etag)),
        db.replace_twin(&id, "{}", Some(&format!("\"{first_etag}\""))),
    ] {
        let err = write.expect_err("a stale etag is refused");
        assert_eq!(err.code, ErrorCode::PreconditionFailed, "{err}");
        assert_eq!(err.code.http_status(), 412);
    }
    assert_eq!(
        db.delete_twin(&id, Some(&first_etag)).map_err(|e| e.code),
        Err(ErrorCode::PreconditionFailed)
    );
    assert_eq!(
        db.get_twin(&id).expect("twin"),
        before,
        "the twin is unchanged"
    );
    assert_eq!(db.snapshot().seq(), seq, "nothing was written");
    assert_eq!(
        updates.try_recv(),
        Err(TryRecvError::Empty),
        "and nothing sent"
    );
    assert_eq!(
        ids(&rows(db, CELLULAR_IN_REDMOND43, indexed, true)),
        vec![DEVICE]
    );

    // The current etag (quoted, as HTTP sends it) is accepted.
    let current = format!("\"{}\"", t3["etag"].as_str().expect("etag"));
    let ack = db
        .patch_desired(&id, r#"{"power_level":2}"#, Some(&current))
        .expect("the current etag is accepted");
    assert_eq!(ack.version, 4);
    let update = updates.try_recv().expect("second desired patch");
    assert_eq!(update.version, 3);
    assert_eq!(update.patch, r#"{"power_level":2,"$version":3}"#);
}

#[test]
fn tutorial_on_empty_database_without_indexes() {
    tutorial(&database(0, false), false);
}

#[test]
fn tutorial_on_empty_database_with_indexes() {
    let db = database(0, true);
    tutorial(&db, true);
}

#[test]
fn tutorial_among_generated_twins_without_indexes() {
    tutorial(&database(500, false), false);
}

#[test]
fn tutorial_among_generated_twins_with_indexes() {
    let db = database(500, true);
    assert_eq!(
        db.query_all(IN_REDMOND43).expect("valid").len(),
        1,
        "seed 7 has one Redmond43 twin in its first 500"
    );
    tutorial(&db, true);
}

#[test]
fn tutorial_survives_compaction_and_reindexing() {
    let mut db = database(500, true);
    tutorial(&db, true);
    let before = db.query_all(CELLULAR_IN_REDMOND43).expect("valid");
    let twin_before = db.get_twin(&TwinId::device(DEVICE)).expect("twin");
    db.compact();
    assert_eq!(db.query_all(CELLULAR_IN_REDMOND43).expect("valid"), before);
    assert_eq!(
        db.get_twin(&TwinId::device(DEVICE)).expect("twin"),
        twin_before
    );
    db.build_index(&IndexPolicy::default());
    let found = rows(&db, CELLULAR_IN_REDMOND43, true, true);
    assert_eq!(ids(&found), vec![DEVICE]);
}

/// Spec §4.1: real payloads list `deviceId`, `etag`, `deviceEtag`, `status`, …, `modelId`,
/// `version`, `tags`, `properties`, then `capabilities` (the §4.5 sample too has `version`
/// right before `tags`); the generator writes that order. A created twin should follow it.
#[test]
fn created_twin_members_follow_spec_order() {
    let db = Database::new();
    let id = TwinId::device(DEVICE);
    let created = json(&db.create_twin(&id).expect("create"));
    let keys: Vec<&str> = created
        .as_object()
        .expect("object")
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(
        keys,
        [
            "deviceId",
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
        ],
        "spec §4.1 member order"
    );
    db.patch_twin(&id, TUTORIAL_PATCH, None).expect("patch");
    let t = twin(&db);
    let keys: Vec<&str> = t
        .as_object()
        .expect("object")
        .keys()
        .map(String::as_str)
        .collect();
    let at = |k: &str| keys.iter().position(|x| *x == k);
    assert_eq!(at("tags").map(|i| i + 1), at("properties"), "{keys:?}");
    assert_eq!(at("version").map(|i| i + 1), at("tags"), "{keys:?}");
}

/// A module twin (spec §4.2): `moduleId` right after `deviceId`, no `capabilities`.
#[test]
fn module_twin_shape() {
    let db = Database::new();
    db.create_twin(&TwinId::device(DEVICE)).expect("device");
    let m = json(
        &db.create_twin(&TwinId::module(DEVICE, "sensor"))
            .expect("module"),
    );
    let keys: Vec<&str> = m
        .as_object()
        .expect("object")
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(&keys[..2], ["deviceId", "moduleId"]);
    assert!(m.get("capabilities").is_none());
    assert_eq!(m["version"], 1);
    let rows = db
        .query_all("SELECT moduleId FROM devices.modules WHERE deviceId = 'myDeviceId'")
        .expect("valid");
    assert_eq!(rows, vec![r#"{"moduleId":"sensor"}"#.to_string()]);
}

/// Checks that `meta` mirrors `section` (spec §4.3): every key of the section, at every level,
/// has an object entry holding `$lastUpdated` (and, in desired, a `$lastUpdatedVersion` no
/// later than the section's `$version`), and no entry exists for a key that does not.
fn check_mirror(path: &str, section: &Value, meta: &Value, desired: Option<u64>) {
    let meta = meta
        .as_object()
        .unwrap_or_else(|| panic!("{path}: $metadata entry is not an object: {meta}"));
    assert!(meta["$lastUpdated"].is_string(), "{path}: no $lastUpdated");
    // A desired section never written to (a new twin's, or a generated empty one) has only
    // `$lastUpdated` at its root.
    let untouched = path == "desired"
        && section
            .as_object()
            .is_some_and(|o| o.keys().all(|k| k.starts_with('$')));
    if let Some(version) =
        desired.filter(|_| !untouched || meta.contains_key("$lastUpdatedVersion"))
    {
        let v = meta
            .get("$lastUpdatedVersion")
            .and_then(Value::as_u64)
            .unwrap_or_else(|| panic!("{path}: no $lastUpdatedVersion"));
        assert!(
            v <= version,
            "{path}: $lastUpdatedVersion {v} > $version {version}"
        );
    } else if desired.is_none() {
        assert!(meta.get("$lastUpdatedVersion").is_none(), "{path}");
    }
    let members = section.as_object();
    for (k, entry) in meta.iter().filter(|(k, _)| !k.starts_with('$')) {
        assert!(
            members.is_some_and(|m| m.contains_key(k)),
            "{path}.{k}: a $metadata entry for a missing key"
        );
        check_mirror(&format!("{path}.{k}"), &section[k], entry, desired);
    }
    if let Some(m) = members {
        for k in m.keys().filter(|k| !k.starts_with('$')) {
            assert!(meta.contains_key(k), "{path}.{k}: no $metadata entry");
        }
    }
}

fn check_sections(t: &Value) {
    for name in ["desired", "reported"] {
        let s = &t["properties"][name];
        let version = s["$version"].as_u64().expect("$version");
        check_mirror(
            name,
            s,
            &s["$metadata"],
            (name == "desired").then_some(version),
        );
    }
}

/// A run of merge patches, deletions and replacements keeps `$metadata` mirroring both
/// sections, dates the keys each write sets (and their parents), and bumps `$version` once.
#[test]
fn metadata_mirrors_sections_through_writes() {
    let db = Database::new();
    let id = TwinId::device(DEVICE);
    db.create_twin(&id).expect("create");
    let writes: &[(&str, &str)] = &[
        ("desired", r#"{"a":{"b":1,"c":{"d":true}},"e":"x"}"#),
        ("reported", r#"{"a":{"b":1,"c":{"d":true}},"e":"x"}"#),
        ("desired", r#"{"a":{"c":{"d":null,"f":2}}}"#),
        ("reported", r#"{"a":{"c":null},"g":[1,2]}"#),
        ("desired", r#"{"a":null,"h":{"i":{}}}"#),
        ("reported", r#"{"e":{"now":"an object"}}"#),
        (
            "twin",
            r#"{"tags":{"t":1},"properties":{"desired":{"h":{"i":{"j":3}}}}}"#,
        ),
        ("replace", r#"{"properties":{"desired":{"k":{"l":"m"}}}}"#),
        ("twin", r#"{"properties":{"desired":null}}"#),
    ];
    let mut last = twin(&db);
    for (i, (what, body)) in writes.iter().enumerate() {
        match *what {
            "desired" => db.patch_desired(&id, body, None),
            "reported" => db.patch_reported(&id, body),
            "twin" => db.patch_twin(&id, body, None),
            _ => db.replace_twin(&id, body, None),
        }
        .unwrap_or_else(|e| panic!("write {i}: {e}"));
        let t = twin(&db);
        check_sections(&t);
        let section = if *what == "reported" {
            "reported"
        } else {
            "desired"
        };
        let other = if section == "reported" {
            "desired"
        } else {
            "reported"
        };
        let s = &t["properties"][section];
        assert_eq!(
            s["$version"].as_u64(),
            last["properties"][section]["$version"]
                .as_u64()
                .map(|v| v + 1),
            "write {i}: one write, one $version"
        );
        assert_eq!(
            t["properties"][other], last["properties"][other],
            "write {i} touched {other}"
        );
        // The section root is dated by every write to it.
        assert!(
            s["$metadata"]["$lastUpdated"].as_str()
                >= last["properties"][section]["$metadata"]["$lastUpdated"].as_str(),
            "write {i}"
        );
        last = t;
    }
    let desired = &last["properties"]["desired"];
    assert_eq!(
        desired.as_object().map(|o| o.len()),
        Some(2),
        "desired: null leaves only $metadata and $version: {desired}"
    );
    let reported = &last["properties"]["reported"];
    assert_eq!(reported["a"], json(r#"{"b":1}"#));
    assert_eq!(reported["e"], json(r#"{"now":"an object"}"#));
    assert!(reported["$metadata"]["e"]["now"]["$lastUpdated"].is_string());
}

/// Generated twins carry full `$metadata`; writes on top of them keep it mirroring.
#[test]
fn metadata_mirrors_sections_on_generated_twins() {
    let db = database(50, true);
    let rows = db.query_all("SELECT deviceId FROM devices").expect("valid");
    for (i, row) in rows.iter().enumerate() {
        let dev = json(row)["deviceId"].as_str().expect("id").to_string();
        let id = TwinId::device(&dev);
        check_sections(&json(&db.get_twin(&id).expect("twin")));
        db.patch_desired(
            &id,
            r#"{"telemetryConfig":{"sendFrequencyInSecs":60,"extra":{"x":1}}}"#,
            None,
        )
        .expect("desired");
        db.patch_reported(
            &id,
            &format!(r#"{{"telemetryConfig":{{"status":null}},"connectivity":{{"type":"wifi","n":{i}}}}}"#),
        )
        .expect("reported");
        let t = json(&db.get_twin(&id).expect("twin"));
        check_sections(&t);
        let d = &t["properties"]["desired"];
        let v = d["$version"].as_u64().expect("$version");
        assert_eq!(
            d["$metadata"]["telemetryConfig"]["sendFrequencyInSecs"]["$lastUpdatedVersion"],
            v
        );
        assert_eq!(d["$metadata"]["telemetryConfig"]["$lastUpdatedVersion"], v);
        assert_eq!(d["$metadata"]["$lastUpdatedVersion"], v);
    }
}
