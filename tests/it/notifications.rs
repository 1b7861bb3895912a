//! Desired-property notifications (`Database::subscribe_desired`): what a device receives,
//! in which order, and when its subscription ends.

use serde_json::Value;
use std::sync::mpsc::{Receiver, RecvTimeoutError, TryRecvError};
use std::time::Duration;
use twinql::{Database, DesiredUpdate, ErrorCode, TwinId};
use twinql_store::index::IndexPolicy;

fn json(text: &str) -> Value {
    serde_json::from_str(text).expect("valid JSON")
}

/// Every message already delivered, without waiting.
fn drain(rx: &Receiver<DesiredUpdate>) -> Vec<DesiredUpdate> {
    rx.try_iter().collect()
}

/// Checks a message: its `version` is the patch's `$version`, which comes last.
fn check_message(m: &DesiredUpdate) {
    let v = json(&m.patch);
    let o = v.as_object().expect("a patch is an object");
    assert_eq!(
        o.keys().next_back().map(String::as_str),
        Some("$version"),
        "{m:?}"
    );
    assert_eq!(v["$version"].as_u64(), Some(m.version), "{m:?}");
}

fn desired_version(db: &Database, id: &TwinId) -> u64 {
    json(&db.get_twin(id).expect("twin"))["properties"]["desired"]["$version"]
        .as_u64()
        .expect("$version")
}

fn device_db(device: &str) -> (Database, TwinId) {
    let db = Database::new();
    let id = TwinId::device(device);
    db.create_twin(&id).expect("create");
    (db, id)
}

/// Patches arrive in write order, each with the desired section's next `$version`, whichever
/// back-end call wrote them.
fn in_order(db: &Database, id: &TwinId) {
    let rx = db.subscribe_desired(id).expect("subscribe");
    let start = desired_version(db, id);
    for i in 0..10 {
        if i % 2 == 0 {
            db.patch_desired(id, &format!(r#"{{"n":{i}}}"#), None)
                .expect("patch desired");
        } else {
            db.patch_twin(
                id,
                &format!(r#"{{"properties":{{"desired":{{"n":{i},"odd":true}}}}}}"#),
                Some("*"),
            )
            .expect("patch twin");
        }
    }
    let got = drain(&rx);
    assert_eq!(got.len(), 10);
    for (i, m) in got.iter().enumerate() {
        check_message(m);
        let v = start + 1 + i as u64;
        assert_eq!(m.version, v);
        let want = if i % 2 == 0 {
            format!(r#"{{"n":{i},"$version":{v}}}"#)
        } else {
            format!(r#"{{"n":{i},"odd":true,"$version":{v}}}"#)
        };
        assert_eq!(m.patch, want);
    }
    assert_eq!(desired_version(db, id), start + 10);
    // A patch with nulls is delivered as given, so the device deletes too.
    db.patch_desired(id, r#"{"odd":null,"nested":{"a":{"b":1}}}"#, None)
        .expect("patch");
    let m = rx.try_recv().expect("message");
    assert_eq!(
        m.patch,
        format!(
            r#"{{"odd":null,"nested":{{"a":{{"b":1}}}},"$version":{}}}"#,
            start + 11
        )
    );
}

#[test]
fn device_notifications_arrive_in_order() {
    let (db, id) = device_db("dev");
    in_order(&db, &id);
}

#[test]
fn module_notifications_arrive_in_order_and_only_to_the_module() {
    let (db, dev) = device_db("dev");
    assert_eq!(
        db.subscribe_desired(&TwinId::module("dev", "m1"))
            .map(|_| ())
            .map_err(|e| e.code),
        Err(ErrorCode::ModuleNotFound)
    );
    assert_eq!(
        db.create_twin(&TwinId::module("nodev", "m1"))
            .map_err(|e| e.code),
        Err(ErrorCode::DeviceNotFound)
    );
    let m1 = TwinId::module("dev", "m1");
    let m2 = TwinId::module("dev", "m2");
    db.create_twin(&m1).expect("module 1");
    db.create_twin(&m2).expect("module 2");
    let dev_rx = db.subscribe_desired(&dev).expect("device");
    let m2_rx = db.subscribe_desired(&m2).expect("module 2");
    in_order(&db, &m1);
    assert!(
        drain(&dev_rx).is_empty(),
        "the device gets its module's patches"
    );
    assert!(
        drain(&m2_rx).is_empty(),
        "a module gets its sibling's patches"
    );
    // And the other way round.
    db.patch_desired(&dev, r#"{"x":1}"#, None)
        .expect("device patch");
    assert_eq!(drain(&dev_rx).len(), 1);
    assert!(drain(&m2_rx).is_empty());
}

#[test]
fn tags_and_reported_writes_send_nothing() {
    let (db, id) = device_db("dev");
    let rx = db.subscribe_desired(&id).expect("subscribe");
    db.patch_twin(&id, r#"{"tags":{"a":1}}"#, None)
        .expect("tags via patch_twin");
    db.patch_tags(&id, r#"{"b":{"c":"d"}}"#, None)
        .expect("patch_tags");
    db.patch_reported(&id, r#"{"r":1}"#).expect("reported");
    db.patch_twin(&id, r#"{"tags":null}"#, None)
        .expect("delete tags");
    assert_eq!(rx.try_recv(), Err(TryRecvError::Empty));
    assert_eq!(desired_version(&db, &id), 1, "desired was not written");
    db.patch_desired(&id, r#"{"p":1}"#, None).expect("desired");
    let m = rx.try_recv().expect("desired patch");
    assert_eq!(m.patch, r#"{"p":1,"$version":2}"#);
    // A patch_twin with both sections sends the desired part only.
    db.patch_twin(
        &id,
        r#"{"tags":{"t":1},"properties":{"desired":{"p":2}}}"#,
        None,
    )
    .expect("both");
    assert_eq!(
        drain(&rx),
        vec![DesiredUpdate {
            version: 3,
            patch: r#"{"p":2,"$version":3}"#.into()
        }]
    );
}

#[test]
fn deleting_the_desired_section_sends_a_null_per_key() {
    let (db, id) = device_db("dev");
    db.patch_desired(&id, r#"{"a":1,"b":{"c":2}}"#, None)
        .expect("patch");
    let rx = db.subscribe_desired(&id).expect("subscribe");
    db.patch_twin(&id, r#"{"properties":{"desired":null}}"#, None)
        .expect("delete all");
    assert_eq!(
        drain(&rx),
        vec![DesiredUpdate {
            version: 3,
            patch: r#"{"a":null,"b":null,"$version":3}"#.into()
        }]
    );
}

#[test]
fn replace_sends_the_whole_desired_section() {
    let (db, id) = device_db("dev");
    db.patch_desired(&id, r#"{"a":1,"b":{"c":2}}"#, None)
        .expect("patch");
    let rx = db.subscribe_desired(&id).expect("subscribe");
    let ack = db
        .replace_twin(
            &id,
            r#"{"tags":{"x":1},"properties":{"desired":{"b":{"d":3},"e":"f"}}}"#,
            None,
        )
        .expect("replace");
    assert_eq!(ack.version, 3);
    assert_eq!(
        drain(&rx),
        vec![DesiredUpdate {
            version: 3,
            patch: r#"{"b":{"d":3},"e":"f","$version":3}"#.into()
        }]
    );
    let t = json(&db.get_twin(&id).expect("twin"));
    let desired = &t["properties"]["desired"];
    assert!(
        desired.get("a").is_none(),
        "replaced, not merged: {desired}"
    );
    assert_eq!(desired["b"], json(r#"{"d":3}"#));
    let meta = desired["$metadata"].as_object().expect("$metadata");
    let keys: Vec<&str> = meta.keys().map(String::as_str).collect();
    assert_eq!(keys, ["$lastUpdated", "$lastUpdatedVersion", "b", "e"]);
    assert!(meta["b"]["d"]["$lastUpdated"].is_string());
    assert_eq!(meta["b"]["d"]["$lastUpdatedVersion"], 3);

    // A twin read back can be sent as is: its `$metadata` / `$version` are ignored, and the
    // device gets the same section again under the next `$version`.
    db.replace_twin(&id, &db.get_twin(&id).expect("twin"), None)
        .expect("round trip");
    assert_eq!(
        drain(&rx),
        vec![DesiredUpdate {
            version: 4,
            patch: r#"{"b":{"d":3},"e":"f","$version":4}"#.into()
        }]
    );

    // Replacing with no desired section empties it: the device is told the new, empty state.
    db.replace_twin(&id, r#"{"tags":{"x":2}}"#, None)
        .expect("replace without desired");
    assert_eq!(
        drain(&rx),
        vec![DesiredUpdate {
            version: 5,
            patch: r#"{"$version":5}"#.into()
        }]
    );
}

#[test]
fn refused_writes_send_nothing() {
    let (db, id) = device_db("dev");
    let rx = db.subscribe_desired(&id).expect("subscribe");
    let before = db.get_twin(&id).expect("twin");
    let refusals = [
        (
            db.patch_desired(&id, r#"{"a":1}"#, Some("AAAAAAAAAAk=")),
            ErrorCode::PreconditionFailed,
        ),
        (
            db.patch_twin(
                &id,
                r#"{"properties":{"desired":{"a":1}}}"#,
                Some("nope"),
            ),
            ErrorCode::PreconditionFailed,
        ),
        (
            db.replace_twin(&id, r#"{"properties":{"desired":{"a":1}}}"#, Some("x")),
            ErrorCode::PreconditionFailed,
        ),
        (
            db.patch_desired(&id, r#"{"a.b":1}"#, None),
            ErrorCode::ArgumentInvalid,
        ),
        (
            db.patch_desired(&id, r#"{"$a":1}"#, None),
            ErrorCode::ArgumentInvalid,
        ),
        (
            db.patch_desired(
                &id,
                r#"{"l1":{"l2":{"l3":{"l4":{"l5":{"l6":{"l7":{"l8":{"l9":{"l10":{"l11":1}}}}}}}}}}}"#,
                None,
            ),
            ErrorCode::ArgumentInvalid,
        ),
        (
            db.patch_desired(&id, &format!(r#"{{"s":"{}"}}"#, "x".repeat(5000)), None),
            ErrorCode::ArgumentInvalid,
        ),
        (
            db.patch_twin(&id, r#"{"properties":{"reported":{"a":1}}}"#, None),
            ErrorCode::ArgumentInvalid,
        ),
        (
            db.patch_desired(&id, "not json", None),
            ErrorCode::ArgumentInvalid,
        ),
        (
            db.patch_desired(&TwinId::device("other"), r#"{"a":1}"#, None),
            ErrorCode::DeviceNotFound,
        ),
    ];
    for (i, (result, code)) in refusals.into_iter().enumerate() {
        assert_eq!(
            result.map(|_| ()).map_err(|e| e.code),
            Err(code),
            "write {i}"
        );
    }
    assert_eq!(rx.try_recv(), Err(TryRecvError::Empty));
    assert_eq!(db.get_twin(&id).expect("twin"), before, "nothing changed");
    // The next accepted write gets the next `$version`: refusals consumed none.
    db.patch_desired(&id, r#"{"a":1}"#, None).expect("accepted");
    assert_eq!(
        drain(&rx),
        vec![DesiredUpdate {
            version: 2,
            patch: r#"{"a":1,"$version":2}"#.into()
        }]
    );
}

#[test]
fn every_subscriber_receives_every_patch() {
    let (db, id) = device_db("dev");
    let early = db.subscribe_desired(&id).expect("first");
    db.patch_desired(&id, r#"{"a":1}"#, None).expect("patch");
    let late = db.subscribe_desired(&id).expect("second");
    for i in 2..6 {
        db.patch_desired(&id, &format!(r#"{{"a":{i}}}"#), None)
            .expect("patch");
    }
    let e = drain(&early);
    let l = drain(&late);
    assert_eq!(e.len(), 5);
    assert_eq!(l.len(), 4, "a subscription starts when it is made");
    assert_eq!(&e[1..], &l[..]);
    assert_eq!(e[0].patch, r#"{"a":1,"$version":2}"#);
    assert_eq!(l[3].patch, r#"{"a":5,"$version":6}"#);
}

#[test]
fn dropping_a_receiver_does_not_break_later_writes() {
    let (db, id) = device_db("dev");
    let a = db.subscribe_desired(&id).expect("a");
    let b = db.subscribe_desired(&id).expect("b");
    drop(a);
    for i in 0..3 {
        db.patch_desired(&id, &format!(r#"{{"n":{i}}}"#), None)
            .expect("write after a drop");
    }
    assert_eq!(drain(&b).len(), 3);
    drop(b);
    // No subscriber at all: writes go on.
    let ack = db
        .patch_desired(&id, r#"{"n":9}"#, None)
        .expect("write with no subscriber");
    assert_eq!(ack.version, 5);
    // A new subscription receives only what follows it.
    let c = db.subscribe_desired(&id).expect("c");
    db.patch_desired(&id, r#"{"n":10}"#, None).expect("write");
    assert_eq!(
        drain(&c),
        vec![DesiredUpdate {
            version: 6,
            patch: r#"{"n":10,"$version":6}"#.into()
        }]
    );
}

#[test]
fn deleting_a_twin_ends_its_subscription() {
    let (db, id) = device_db("dev");
    let rx = db.subscribe_desired(&id).expect("subscribe");
    db.patch_desired(&id, r#"{"a":1}"#, None).expect("patch");
    db.patch_desired(&id, r#"{"a":2}"#, None).expect("patch");
    db.delete_twin(&id, None).expect("delete");
    // The pending messages are still delivered, then the channel is closed.
    assert_eq!(rx.recv().map(|m| m.version), Ok(2));
    assert_eq!(rx.recv().map(|m| m.version), Ok(3));
    assert!(rx.recv().is_err(), "the subscription ended with the twin");
    assert_eq!(
        db.subscribe_desired(&id).map(|_| ()).map_err(|e| e.code),
        Err(ErrorCode::DeviceNotFound)
    );
    // A new device of the same name starts afresh; the old receiver stays closed.
    db.create_twin(&id).expect("create again");
    let fresh = db.subscribe_desired(&id).expect("subscribe again");
    db.patch_desired(&id, r#"{"b":1}"#, None).expect("patch");
    assert_eq!(rx.try_recv(), Err(TryRecvError::Disconnected));
    assert_eq!(
        drain(&fresh),
        vec![DesiredUpdate {
            version: 2,
            patch: r#"{"b":1,"$version":2}"#.into()
        }]
    );
}

#[test]
fn deleting_a_module_or_its_device_ends_the_module_subscription() {
    let (db, dev) = device_db("dev");
    let m1 = TwinId::module("dev", "m1");
    let m2 = TwinId::module("dev", "m2");
    db.create_twin(&m1).expect("m1");
    db.create_twin(&m2).expect("m2");
    let dev_rx = db.subscribe_desired(&dev).expect("device");
    let m1_rx = db.subscribe_desired(&m1).expect("m1");
    let m2_rx = db.subscribe_desired(&m2).expect("m2");
    db.patch_desired(&m1, r#"{"a":1}"#, None).expect("patch m1");

    // Deleting a module ends its subscription only.
    db.delete_twin(&m1, None).expect("delete m1");
    assert_eq!(m1_rx.recv().map(|m| m.version), Ok(2));
    assert!(m1_rx.recv().is_err());
    db.patch_desired(&dev, r#"{"d":1}"#, None).expect("device");
    db.patch_desired(&m2, r#"{"d":1}"#, None).expect("m2");
    assert_eq!(dev_rx.try_recv().map(|m| m.version), Ok(2));
    assert_eq!(m2_rx.try_recv().map(|m| m.version), Ok(2));

    // Deleting the device takes its modules, and their subscriptions, with it.
    db.delete_twin(&dev, Some("*")).expect("delete device");
    assert_eq!(
        dev_rx.recv_timeout(Duration::from_secs(5)),
        Err(RecvTimeoutError::Disconnected)
    );
    assert_eq!(
        m2_rx.recv_timeout(Duration::from_secs(5)),
        Err(RecvTimeoutError::Disconnected)
    );
    assert_eq!(
        db.get_twin(&m2).map_err(|e| e.code),
        Err(ErrorCode::ModuleNotFound)
    );
}

#[test]
fn deleting_another_device_keeps_the_subscription() {
    let db = Database::new();
    let a = TwinId::device("a");
    let b = TwinId::device("ab");
    db.create_twin(&a).expect("a");
    db.create_twin(&b).expect("b");
    let rx = db.subscribe_desired(&a).expect("subscribe");
    db.delete_twin(&b, None).expect("delete b");
    db.patch_desired(&a, r#"{"x":1}"#, None).expect("patch");
    assert_eq!(rx.try_recv().map(|m| m.version), Ok(2));
}

#[test]
fn subscriptions_survive_compaction_and_index_builds() {
    let (mut db, id) = device_db("dev");
    let rx = db.subscribe_desired(&id).expect("subscribe");
    db.patch_desired(&id, r#"{"a":1}"#, None).expect("patch");
    db.build_index(&IndexPolicy::default());
    db.patch_desired(&id, r#"{"a":2}"#, None).expect("patch");
    db.compact();
    db.patch_desired(&id, r#"{"a":3}"#, None).expect("patch");
    let versions: Vec<u64> = drain(&rx).iter().map(|m| m.version).collect();
    assert_eq!(versions, [2, 3, 4]);
}

/// Concurrent writers to one twin: the device sees every patch exactly once, `$version`s
/// consecutive, each writer's patches in its own order.
#[test]
fn concurrent_writers_deliver_consecutive_versions() {
    const WRITERS: u64 = 4;
    const EACH: u64 = 200;
    let (db, id) = device_db("dev");
    let rx = db.subscribe_desired(&id).expect("subscribe");
    std::thread::scope(|s| {
        for w in 0..WRITERS {
            let (db, id) = (&db, &id);
            s.spawn(move || {
                for i in 0..EACH {
                    db.patch_desired(id, &format!(r#"{{"w{w}":{i}}}"#), None)
                        .expect("patch");
                }
            });
        }
    });
    let got = drain(&rx);
    assert_eq!(got.len() as u64, WRITERS * EACH);
    let mut next = [0u64; WRITERS as usize];
    for (k, m) in got.iter().enumerate() {
        check_message(m);
        assert_eq!(m.version, 2 + k as u64, "consecutive $version");
        let v = json(&m.patch);
        let (key, n) = v
            .as_object()
            .and_then(|o| o.iter().next())
            .expect("one member");
        let w: usize = key[1..].parse().expect("writer");
        assert_eq!(n.as_u64(), Some(next[w]), "writer {w} out of order");
        next[w] += 1;
    }
    assert_eq!(desired_version(&db, &id), 1 + WRITERS * EACH);
}
