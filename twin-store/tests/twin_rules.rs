//! IoT Hub twin write rules: new twins, merge patches, metadata, versions, etags, limits.

use proptest::prelude::*;
use serde_json::{Map, Value};
use twinql_store::Doc;
use twinql_store::twin::{
    Applied, ErrorCode, HubError, MAX_DEPTH, MAX_KEY_BYTES, MAX_SAFE_INTEGER, MAX_STRING_BYTES,
    MAX_TAGS_BYTES, MIN_SAFE_INTEGER, Update, apply, apply_owned, check_identity_id,
    etag_for_version, new_twin, section_size, timestamp_now,
};

const T0: &str = "2026-01-01T00:00:00.0000000Z";
const T1: &str = "2026-01-02T00:00:00.1111111Z";
const T2: &str = "2026-01-03T00:00:00.2222222Z";

fn j(text: &str) -> Doc {
    Doc::parse(text).unwrap_or_else(|e| panic!("bad test JSON {text}: {e}"))
}

fn at<'a>(d: &'a Doc, path: &str) -> Option<&'a Doc> {
    let segs: Vec<&str> = path.split('.').collect();
    d.get_path(&segs)
}

fn text(d: &Doc, path: &str) -> String {
    at(d, path)
        .unwrap_or_else(|| panic!("no {path} in {}", d.to_json_string()))
        .to_json_string()
}

fn keys(d: &Doc, path: &str) -> Vec<String> {
    let o = if path.is_empty() {
        d.as_object()
    } else {
        at(d, path).and_then(Doc::as_object)
    };
    o.unwrap_or_else(|| panic!("no object {path}"))
        .iter()
        .map(|(k, _)| k.to_owned())
        .collect()
}

fn device() -> Doc {
    new_twin("dev1", None, T0).expect("new twin")
}

fn ok(twin: &Doc, update: Update<'_>, now: &str) -> Applied {
    let a = apply(twin, &update, None, now).unwrap_or_else(|e| panic!("write refused: {e}"));
    // The owning variant gives the same result.
    let b = apply_owned(twin.clone(), &update, None, now).expect("apply_owned");
    assert_eq!(a, b);
    a
}

fn refused(twin: &Doc, update: Update<'_>) -> HubError {
    let before = twin.clone();
    let e = match apply(twin, &update, None, T1) {
        Ok(a) => panic!("write accepted: {}", a.twin.to_json_string()),
        Err(e) => e,
    };
    assert_eq!(*twin, before);
    let e2 = apply_owned(twin.clone(), &update, None, T1).expect_err("apply_owned accepted");
    assert_eq!(e, e2);
    e
}

fn invalid(twin: &Doc, update: Update<'_>, needles: &[&str]) {
    let e = refused(twin, update);
    assert_eq!(e.code, ErrorCode::ArgumentInvalid, "{e}");
    for n in needles {
        assert!(e.message.contains(n), "{e:?} lacks {n:?}");
    }
}

fn desired(patch: &str) -> Applied {
    let p = j(patch);
    ok(&device(), Update::PatchDesired(&p), T1)
}

fn desired_invalid(patch: &str, needles: &[&str]) {
    let p = j(patch);
    invalid(&device(), Update::PatchDesired(&p), needles);
}

fn desired_ok(patch: &str) {
    let p = j(patch);
    ok(&device(), Update::PatchDesired(&p), T1);
}

// ---- new twins, ids, etags, errors ----

#[test]
fn new_device_twin_shape() {
    let t = device();
    assert_eq!(
        t.to_json_string(),
        concat!(
            r#"{"deviceId":"dev1","etag":"AAAAAAAAAAE=","deviceEtag":"AAAAAAAAAAE=","#,
            r#""status":"enabled","statusUpdateTime":"0001-01-01T00:00:00Z","#,
            r#""connectionState":"Disconnected","lastActivityTime":"0001-01-01T00:00:00Z","#,
            r#""cloudToDeviceMessageCount":0,"authenticationType":"sas","#,
            r#""x509Thumbprint":{"primaryThumbprint":null,"secondaryThumbprint":null},"#,
            r#""modelId":"","version":1,"properties":{"#,
            r#""desired":{"$metadata":{"$lastUpdated":"2026-01-01T00:00:00.0000000Z"},"$version":1},"#,
            r#""reported":{"$metadata":{"$lastUpdated":"2026-01-01T00:00:00.0000000Z"},"$version":1}},"#,
            r#""capabilities":{"iotEdge":false}}"#
        )
    );
    assert!(at(&t, "tags").is_none());
}

#[test]
fn new_module_twin_shape() {
    let t = new_twin("dev1", Some("$edgeAgent"), T0).unwrap();
    assert_eq!(
        keys(&t, ""),
        [
            "deviceId",
            "moduleId",
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
            "properties"
        ]
    );
    assert_eq!(text(&t, "moduleId"), r#""$edgeAgent""#);
    assert_eq!(keys(&t, "properties"), ["desired", "reported"]);
}

#[test]
fn identity_ids() {
    assert!(check_identity_id("a-b:c.d+e%f_g#h*i?j!k(l)m,n=o@p;q$r's").is_ok());
    assert!(check_identity_id(&"x".repeat(128)).is_ok());
    for bad in ["", "a b", "a/b", "é", "a\"b", "a\\b", "a&b"] {
        let e = check_identity_id(bad).unwrap_err();
        assert_eq!(e.code, ErrorCode::ArgumentInvalid, "{bad:?}");
    }
    let e = check_identity_id(&"x".repeat(129)).unwrap_err();
    assert!(e.message.contains("129"), "{e}");
    assert_eq!(
        new_twin("a b", None, T0).unwrap_err().code,
        ErrorCode::ArgumentInvalid
    );
    assert_eq!(
        new_twin("d", Some(""), T0).unwrap_err().code,
        ErrorCode::ArgumentInvalid
    );
}

#[test]
fn etags_follow_versions() {
    assert_eq!(etag_for_version(7), "AAAAAAAAAAc=");
    assert_eq!(etag_for_version(1), "AAAAAAAAAAE=");
    assert_eq!(etag_for_version(0), "AAAAAAAAAAA=");
    assert_eq!(etag_for_version(256), "AAAAAAAAAQA=");
}

#[test]
fn error_codes() {
    let all = [
        (ErrorCode::ArgumentInvalid, "ArgumentInvalid", 400_004, 400),
        (ErrorCode::ArgumentNull, "ArgumentNull", 400_005, 400),
        (
            ErrorCode::PreconditionFailed,
            "PreconditionFailed",
            412_001,
            412,
        ),
        (ErrorCode::DeviceNotFound, "DeviceNotFound", 404_001, 404),
        (ErrorCode::ModuleNotFound, "ModuleNotFound", 404_010, 404),
        (
            ErrorCode::DeviceAlreadyExists,
            "DeviceAlreadyExists",
            409_001,
            409,
        ),
        (
            ErrorCode::ModuleAlreadyExists,
            "ModuleAlreadyExists",
            409_301,
            409,
        ),
    ];
    for (c, name, code, status) in all {
        assert_eq!((c.name(), c.code(), c.http_status()), (name, code, status));
    }
    let e = HubError::new(ErrorCode::ArgumentInvalid, "nope");
    assert_eq!(e.to_string(), "ArgumentInvalid (400004): nope");
}

#[test]
fn timestamps_have_seven_digits() {
    let t = timestamp_now();
    let b = t.as_bytes();
    assert_eq!(b.len(), 28, "{t}");
    assert!(t.starts_with("20"), "{t}");
    for (i, c) in [
        (4, b'-'),
        (7, b'-'),
        (10, b'T'),
        (13, b':'),
        (16, b':'),
        (19, b'.'),
        (27, b'Z'),
    ] {
        assert_eq!(b[i], c, "{t}");
    }
    assert!(t[20..27].bytes().all(|c| c.is_ascii_digit()), "{t}");
}

// ---- versions, etags, $version, metadata ----

#[test]
fn desired_patch_bumps_versions_and_dates_metadata() {
    let a = desired(r#"{"fan":{"speed":3,"mode":"auto"},"led":true}"#);
    let t = &a.twin;
    assert_eq!(text(t, "version"), "2");
    assert_eq!(text(t, "etag"), r#""AAAAAAAAAAI=""#);
    assert_eq!(text(t, "properties.desired.$version"), "2");
    assert_eq!(text(t, "properties.reported.$version"), "1");
    assert_eq!(
        keys(t, "properties.desired"),
        ["fan", "led", "$metadata", "$version"]
    );
    assert_eq!(
        text(t, "properties.desired.$metadata"),
        concat!(
            r#"{"$lastUpdated":"2026-01-02T00:00:00.1111111Z","$lastUpdatedVersion":2,"#,
            r#""fan":{"$lastUpdated":"2026-01-02T00:00:00.1111111Z","$lastUpdatedVersion":2,"#,
            r#""speed":{"$lastUpdated":"2026-01-02T00:00:00.1111111Z","$lastUpdatedVersion":2},"#,
            r#""mode":{"$lastUpdated":"2026-01-02T00:00:00.1111111Z","$lastUpdatedVersion":2}},"#,
            r#""led":{"$lastUpdated":"2026-01-02T00:00:00.1111111Z","$lastUpdatedVersion":2}}"#
        )
    );
    // Reported is untouched, including its metadata.
    assert_eq!(
        text(t, "properties.reported"),
        r#"{"$metadata":{"$lastUpdated":"2026-01-01T00:00:00.0000000Z"},"$version":1}"#
    );
    assert_eq!(
        a.desired_notification.unwrap().to_json_string(),
        r#"{"fan":{"speed":3,"mode":"auto"},"led":true,"$version":2}"#
    );
}

#[test]
fn nested_patch_redates_only_the_path_it_touches() {
    let a = desired(r#"{"fan":{"speed":3,"mode":"auto"},"led":true}"#);
    let p = j(r#"{"fan":{"speed":4}}"#);
    let b = ok(&a.twin, Update::PatchDesired(&p), T2);
    let t = &b.twin;
    assert_eq!(text(t, "version"), "3");
    assert_eq!(text(t, "etag"), format!("\"{}\"", etag_for_version(3)));
    assert_eq!(text(t, "properties.desired.$version"), "3");
    assert_eq!(
        text(t, "properties.desired.fan"),
        r#"{"speed":4,"mode":"auto"}"#
    );
    let m = "properties.desired.$metadata";
    assert_eq!(text(t, &format!("{m}.$lastUpdated")), format!("\"{T2}\""));
    assert_eq!(text(t, &format!("{m}.$lastUpdatedVersion")), "3");
    assert_eq!(
        text(t, &format!("{m}.fan.$lastUpdated")),
        format!("\"{T2}\"")
    );
    assert_eq!(text(t, &format!("{m}.fan.$lastUpdatedVersion")), "3");
    assert_eq!(
        text(t, &format!("{m}.fan.speed")),
        format!(r#"{{"$lastUpdated":"{T2}","$lastUpdatedVersion":3}}"#)
    );
    assert_eq!(
        text(t, &format!("{m}.fan.mode")),
        format!(r#"{{"$lastUpdated":"{T1}","$lastUpdatedVersion":2}}"#)
    );
    assert_eq!(
        text(t, &format!("{m}.led")),
        format!(r#"{{"$lastUpdated":"{T1}","$lastUpdatedVersion":2}}"#)
    );
    assert_eq!(
        b.desired_notification.unwrap().to_json_string(),
        r#"{"fan":{"speed":4},"$version":3}"#
    );
}

#[test]
fn equal_values_still_bump_and_redate() {
    let a = desired(r#"{"x":1}"#);
    let p = j(r#"{"x":1}"#);
    let b = ok(&a.twin, Update::PatchDesired(&p), T2);
    assert_eq!(text(&b.twin, "properties.desired.$version"), "3");
    assert_eq!(text(&b.twin, "version"), "3");
    assert_eq!(
        text(&b.twin, "properties.desired.$metadata.x.$lastUpdated"),
        format!("\"{T2}\"")
    );
    // An empty patch is still a write of the section.
    let e = j("{}");
    let c = ok(&b.twin, Update::PatchDesired(&e), T2);
    assert_eq!(text(&c.twin, "properties.desired.$version"), "4");
    assert_eq!(
        c.desired_notification.unwrap().to_json_string(),
        r#"{"$version":4}"#
    );
}

#[test]
fn null_deletes_key_and_its_metadata() {
    let a = desired(r#"{"fan":{"speed":3,"mode":"auto"},"led":true}"#);
    let p = j(r#"{"fan":{"mode":null},"led":null,"ghost":null}"#);
    let b = ok(&a.twin, Update::PatchDesired(&p), T2);
    let t = &b.twin;
    assert_eq!(
        text(t, "properties.desired"),
        concat!(
            r#"{"fan":{"speed":3},"$metadata":{"$lastUpdated":"2026-01-03T00:00:00.2222222Z","#,
            r#""$lastUpdatedVersion":3,"fan":{"$lastUpdated":"2026-01-03T00:00:00.2222222Z","#,
            r#""$lastUpdatedVersion":3,"speed":{"$lastUpdated":"2026-01-02T00:00:00.1111111Z","#,
            r#""$lastUpdatedVersion":2}}},"$version":3}"#
        )
    );
    assert_eq!(
        b.desired_notification.unwrap().to_json_string(),
        r#"{"fan":{"mode":null},"led":null,"ghost":null,"$version":3}"#
    );
}

#[test]
fn leaf_object_swaps_rebuild_metadata() {
    let a = desired(r#"{"a":1,"b":{"c":{"d":2},"e":3}}"#);
    let p = j(r#"{"a":{"x":{"y":5},"z":null},"b":"flat"}"#);
    let b = ok(&a.twin, Update::PatchDesired(&p), T2);
    let t = &b.twin;
    assert_eq!(
        text(t, "properties.desired.a"),
        r#"{"x":{"y":5}}"#,
        "nulls inside a new object are dropped"
    );
    assert_eq!(text(t, "properties.desired.b"), r#""flat""#);
    let leaf = format!(r#"{{"$lastUpdated":"{T2}","$lastUpdatedVersion":3}}"#);
    assert_eq!(
        text(t, "properties.desired.$metadata.a"),
        format!(
            r#"{{"$lastUpdated":"{T2}","$lastUpdatedVersion":3,"x":{{"$lastUpdated":"{T2}","$lastUpdatedVersion":3,"y":{leaf}}}}}"#
        )
    );
    assert_eq!(text(t, "properties.desired.$metadata.b"), leaf);
    // And back: object → leaf → object.
    let p = j(r#"{"a":[1,{"k":null}]}"#);
    let c = ok(&b.twin, Update::PatchDesired(&p), T2);
    assert_eq!(text(&c.twin, "properties.desired.a"), r#"[1,{"k":null}]"#);
    assert_eq!(
        text(&c.twin, "properties.desired.$metadata.a"),
        r#"{"$lastUpdated":"2026-01-03T00:00:00.2222222Z","$lastUpdatedVersion":4}"#
    );
}

#[test]
fn new_keys_keep_metadata_and_version_last() {
    let a = desired(r#"{"a":1}"#);
    let p = j(r#"{"b":2,"a":5}"#);
    let b = ok(&a.twin, Update::PatchDesired(&p), T2);
    assert_eq!(
        keys(&b.twin, "properties.desired"),
        ["a", "b", "$metadata", "$version"]
    );
    assert_eq!(
        keys(&b.twin, "properties.desired.$metadata"),
        ["$lastUpdated", "$lastUpdatedVersion", "a", "b"]
    );
    // Top-level member order is untouched by property writes.
    assert_eq!(keys(&b.twin, ""), keys(&device(), ""));
}

#[test]
fn reported_patch_from_the_device() {
    let p = j(r#"{"temp":{"value":21.5},"fw":"1.2"}"#);
    let a = ok(&device(), Update::PatchReported(&p), T1);
    let t = &a.twin;
    assert!(a.desired_notification.is_none());
    assert_eq!(text(t, "version"), "2");
    assert_eq!(text(t, "properties.reported.$version"), "2");
    assert_eq!(text(t, "properties.desired.$version"), "1");
    assert_eq!(
        text(t, "properties.reported"),
        concat!(
            r#"{"temp":{"value":21.5},"fw":"1.2","$metadata":{"$lastUpdated":"2026-01-02T00:00:00.1111111Z","#,
            r#""temp":{"$lastUpdated":"2026-01-02T00:00:00.1111111Z","value":{"$lastUpdated":"2026-01-02T00:00:00.1111111Z"}},"#,
            r#""fw":{"$lastUpdated":"2026-01-02T00:00:00.1111111Z"}},"$version":2}"#
        )
    );
    let p = j(r#"{"temp":null}"#);
    let b = ok(t, Update::PatchReported(&p), T2);
    assert_eq!(
        text(&b.twin, "properties.reported.$metadata"),
        format!(r#"{{"$lastUpdated":"{T2}","fw":{{"$lastUpdated":"{T1}"}}}}"#)
    );
    assert_eq!(text(&b.twin, "properties.reported.$version"), "3");
}

// ---- tags ----

#[test]
fn tags_appear_before_properties_and_vanish_when_empty() {
    let p = j(r#"{"location":{"region":"US"},"n":1}"#);
    let a = ok(&device(), Update::PatchTags(&p), T1);
    let t = &a.twin;
    assert!(a.desired_notification.is_none());
    let k = keys(t, "");
    let i = k.iter().position(|k| k == "tags").unwrap();
    assert_eq!(k[i + 1], "properties");
    assert_eq!(k.len(), keys(&device(), "").len() + 1);
    assert_eq!(text(t, "tags"), r#"{"location":{"region":"US"},"n":1}"#);
    assert_eq!(text(t, "version"), "2");
    assert_eq!(text(t, "properties.desired.$version"), "1");
    assert_eq!(text(t, "properties.reported.$version"), "1");

    let p = j(r#"{"location":{"region":null}}"#);
    let b = ok(t, Update::PatchTags(&p), T2);
    assert_eq!(text(&b.twin, "tags"), r#"{"location":{},"n":1}"#);
    let p = j(r#"{"location":null,"n":null}"#);
    let c = ok(&b.twin, Update::PatchTags(&p), T2);
    assert!(at(&c.twin, "tags").is_none());
    assert_eq!(keys(&c.twin, ""), keys(&device(), ""));
    assert_eq!(text(&c.twin, "version"), "4");

    // `tags: null` in a twin patch removes them all.
    let p = j(r#"{"tags":null}"#);
    let d = ok(t, Update::PatchTwin(&p), T2);
    assert!(at(&d.twin, "tags").is_none());
    assert!(d.desired_notification.is_none());
}

#[test]
fn tags_patch_of_nulls_only_adds_nothing() {
    let p = j(r#"{"a":null}"#);
    let a = ok(&device(), Update::PatchTags(&p), T1);
    assert!(at(&a.twin, "tags").is_none());
    assert_eq!(text(&a.twin, "version"), "2");
}

// ---- PatchTwin ----

#[test]
fn twin_patch_writes_tags_and_desired() {
    let p = j(r#"{"tags":{"t":1},"properties":{"desired":{"d":{"e":null,"f":2}}}}"#);
    let a = ok(&device(), Update::PatchTwin(&p), T1);
    let t = &a.twin;
    assert_eq!(text(t, "tags"), r#"{"t":1}"#);
    assert_eq!(text(t, "properties.desired.d"), r#"{"f":2}"#);
    assert_eq!(text(t, "properties.desired.$version"), "2");
    assert_eq!(text(t, "version"), "2", "one write, one version");
    assert_eq!(
        a.desired_notification.unwrap().to_json_string(),
        r#"{"d":{"e":null,"f":2},"$version":2}"#
    );

    // Tags only: desired untouched, no notification.
    let p = j(r#"{"tags":{"u":2},"properties":{}}"#);
    let b = ok(t, Update::PatchTwin(&p), T2);
    assert!(b.desired_notification.is_none());
    assert_eq!(text(&b.twin, "properties.desired.$version"), "2");
    assert_eq!(text(&b.twin, "tags"), r#"{"t":1,"u":2}"#);

    // desired: null deletes every desired property and tells the device which.
    let p = j(r#"{"properties":{"desired":null}}"#);
    let c = ok(&b.twin, Update::PatchTwin(&p), T2);
    assert_eq!(
        text(&c.twin, "properties.desired"),
        format!(
            r#"{{"$metadata":{{"$lastUpdated":"{T2}","$lastUpdatedVersion":3}},"$version":3}}"#
        )
    );
    assert_eq!(
        c.desired_notification.unwrap().to_json_string(),
        r#"{"d":null,"$version":3}"#
    );
}

#[test]
fn twin_patch_refusals() {
    let t = device();
    let cases: [(&str, &[&str]); 9] = [
        (
            r#"{"properties":{"reported":{"a":1}}}"#,
            &["reported properties are written by the device"],
        ),
        (r#"{"etag":"AAAAAAAAAAE="}"#, &["'etag'"]),
        (r#"{"deviceId":"dev1"}"#, &["'deviceId'"]),
        (r#"{"properties":{"other":{}}}"#, &["'properties.other'"]),
        (r#"{"tags":[1]}"#, &["'tags'", "an array"]),
        (r#"{"tags":"x"}"#, &["'tags'"]),
        (r#"{"properties":{"desired":5}}"#, &["'properties.desired'"]),
        (r#"{"properties":null}"#, &["'properties'"]),
        (r#"{"properties":[]}"#, &["'properties'"]),
    ];
    for (body, needles) in cases {
        let p = j(body);
        invalid(&t, Update::PatchTwin(&p), needles);
    }
    for body in ["[]", "null", "1", r#""s""#] {
        let p = j(body);
        invalid(&t, Update::PatchTwin(&p), &["must be a JSON object"]);
        invalid(&t, Update::PatchTags(&p), &["must be a JSON object"]);
        invalid(&t, Update::PatchDesired(&p), &["must be a JSON object"]);
        invalid(&t, Update::PatchReported(&p), &["must be a JSON object"]);
        invalid(&t, Update::ReplaceTwin(&p), &["must be a JSON object"]);
    }
    // Patches cannot write the read-only members.
    desired_invalid(r#"{"$version":5}"#, &["'$'"]);
    desired_invalid(r#"{"$metadata":{}}"#, &["'$'"]);
}

// ---- ReplaceTwin ----

#[test]
fn replace_twin_replaces_tags_and_desired_wholesale() {
    let p = j(r#"{"tags":{"old":1,"keep":2},"properties":{"desired":{"x":1,"y":{"z":2}}}}"#);
    let a = ok(&device(), Update::PatchTwin(&p), T1);
    let r =
        j(r#"{"tags":{"keep":3,"new":{"n":true}},"properties":{"desired":{"y":[1,2],"w":"v"}}}"#);
    let b = ok(&a.twin, Update::ReplaceTwin(&r), T2);
    let t = &b.twin;
    assert_eq!(text(t, "tags"), r#"{"keep":3,"new":{"n":true}}"#);
    assert_eq!(
        text(t, "properties.desired"),
        format!(
            r#"{{"y":[1,2],"w":"v","$metadata":{{"$lastUpdated":"{T2}","$lastUpdatedVersion":3,"y":{{"$lastUpdated":"{T2}","$lastUpdatedVersion":3}},"w":{{"$lastUpdated":"{T2}","$lastUpdatedVersion":3}}}},"$version":3}}"#
        )
    );
    assert_eq!(text(t, "version"), "3");
    assert_eq!(
        b.desired_notification.unwrap().to_json_string(),
        r#"{"y":[1,2],"w":"v","$version":3}"#
    );
    // Reported is not the back end's to replace: ignored.
    assert_eq!(
        text(t, "properties.reported"),
        text(&a.twin, "properties.reported")
    );

    // Missing parts become empty: no tags member, an empty desired.
    let r = j("{}");
    let c = ok(t, Update::ReplaceTwin(&r), T2);
    assert!(at(&c.twin, "tags").is_none());
    assert_eq!(
        text(&c.twin, "properties.desired"),
        format!(
            r#"{{"$metadata":{{"$lastUpdated":"{T2}","$lastUpdatedVersion":4}},"$version":4}}"#
        )
    );
    assert_eq!(
        c.desired_notification.unwrap().to_json_string(),
        r#"{"$version":4}"#
    );
}

#[test]
fn replace_twin_accepts_a_twin_read_back() {
    let p = j(r#"{"tags":{"a":1},"properties":{"desired":{"x":1}}}"#);
    let a = ok(&device(), Update::PatchTwin(&p), T1);
    // The whole twin, with deviceId, etag, $metadata, $version, reported…
    let b = ok(&a.twin, Update::ReplaceTwin(&a.twin), T2);
    assert_eq!(text(&b.twin, "tags"), r#"{"a":1}"#);
    assert_eq!(text(&b.twin, "properties.desired.x"), "1");
    assert_eq!(text(&b.twin, "properties.desired.$version"), "3");
    assert_eq!(
        keys(&b.twin, "properties.desired.$metadata"),
        ["$lastUpdated", "$lastUpdatedVersion", "x"]
    );
}

#[test]
fn replace_twin_refuses_nulls_and_bad_shapes() {
    let t = device();
    let r = j(r#"{"tags":{"a":null}}"#);
    invalid(&t, Update::ReplaceTwin(&r), &["'Value types'", "'tags.a'"]);
    let r = j(r#"{"properties":{"desired":{"a":{"b":null}}}}"#);
    invalid(
        &t,
        Update::ReplaceTwin(&r),
        &["'Value types'", "'properties.desired.a.b'"],
    );
    let r = j(r#"{"tags":[]}"#);
    invalid(&t, Update::ReplaceTwin(&r), &["'tags'"]);
    let r = j(r#"{"properties":{"desired":"x"}}"#);
    invalid(&t, Update::ReplaceTwin(&r), &["'properties.desired'"]);
    let r = j(r#"{"properties":"x"}"#);
    invalid(&t, Update::ReplaceTwin(&r), &["'properties'"]);
    // Nulls inside arrays are values, not deletions.
    let r = j(r#"{"tags":{"a":[null,{"b":null}]}}"#);
    let a = ok(&t, Update::ReplaceTwin(&r), T1);
    assert_eq!(text(&a.twin, "tags"), r#"{"a":[null,{"b":null}]}"#);
    // Limits apply to replacements too.
    let r = j(r#"{"tags":{"a.b":1}}"#);
    invalid(&t, Update::ReplaceTwin(&r), &["'Key characters'"]);
}

// ---- If-Match ----

#[test]
fn if_match_conditions() {
    let t = device();
    let p = j(r#"{"a":1}"#);
    let u = Update::PatchDesired(&p);
    for cond in [
        None,
        Some("*"),
        Some("AAAAAAAAAAE="),
        Some("\"AAAAAAAAAAE=\""),
    ] {
        let a = apply(&t, &u, cond, T1).unwrap_or_else(|e| panic!("{cond:?}: {e}"));
        assert_eq!(text(&a.twin, "version"), "2");
    }
    let a = apply(&t, &u, Some("AAAAAAAAAAE="), T1).unwrap();
    // The old etag is stale now.
    let before = a.twin.clone();
    let e = apply(&a.twin, &u, Some("AAAAAAAAAAE="), T2).unwrap_err();
    assert_eq!(e.code, ErrorCode::PreconditionFailed);
    assert_eq!(e.code.http_status(), 412);
    assert!(e.message.contains("AAAAAAAAAAE="), "{e}");
    assert!(e.message.contains("AAAAAAAAAAI="), "{e}");
    assert!(e.to_string().starts_with("PreconditionFailed (412001): "));
    assert_eq!(a.twin, before);
    // The current one works.
    let b = apply(&a.twin, &u, Some(&etag_for_version(2)), T2).unwrap();
    assert_eq!(text(&b.twin, "etag"), r#""AAAAAAAAAAM=""#);
}

#[test]
fn twins_without_version_or_etag() {
    let t = j(r#"{"deviceId":"odd","properties":{"desired":{"a":1}}}"#);
    let p = j(r#"{"b":2}"#);
    let u = Update::PatchDesired(&p);
    let e = apply(&t, &u, Some("AAAAAAAAAAE="), T1).unwrap_err();
    assert_eq!(e.code, ErrorCode::PreconditionFailed);
    let a = apply(&t, &u, Some("*"), T1).unwrap();
    assert_eq!(text(&a.twin, "version"), "1");
    assert_eq!(text(&a.twin, "etag"), r#""AAAAAAAAAAE=""#);
    assert_eq!(text(&a.twin, "properties.desired.$version"), "1");
    // Metadata is rebuilt for the keys that had none.
    assert_eq!(
        keys(&a.twin, "properties.desired.$metadata"),
        ["$lastUpdated", "$lastUpdatedVersion", "a", "b"]
    );
    // A reported write creates the section.
    let r = j(r#"{"r":1}"#);
    let b = ok(&a.twin, Update::PatchReported(&r), T2);
    assert_eq!(text(&b.twin, "properties.reported.$version"), "1");
    assert_eq!(text(&b.twin, "version"), "2");
    // Not a twin at all.
    let e = apply(&j("[1]"), &u, None, T1).unwrap_err();
    assert_eq!(e.code, ErrorCode::ArgumentInvalid);
}

// ---- limits ----

#[test]
fn key_characters() {
    desired_ok(r#"{"a-b_c:d/é":1}"#);
    desired_invalid(
        r#"{"a":{"b.c":1}}"#,
        &["'Key characters'", "properties.desired.a.b.c", "'.'"],
    );
    desired_invalid(r#"{"a":{"b$":1}}"#, &["'Key characters'", "'$'"]);
    desired_invalid(r#"{"$a":1}"#, &["'Key characters'", "'$'"]);
    desired_invalid(r#"{"a b":1}"#, &["'Key characters'", "' '"]);
    desired_invalid(r#"{"a\u0001":1}"#, &["'Key characters'", "control"]);
    desired_invalid(r#"{"a\u007f":1}"#, &["'Key characters'"]);
    desired_invalid(r#"{"a\u0085":1}"#, &["'Key characters'", "control"]);
    desired_invalid(r#"{"":1}"#, &["'Key length'"]);
    // Keys inside arrays' objects are keys too.
    desired_invalid(
        r#"{"a":[{"b c":1}]}"#,
        &["'Key characters'", "properties.desired.a[0].b c"],
    );
    // Tags and reported follow the same rules.
    let p = j(r#"{"x":{"y.z":1}}"#);
    invalid(&device(), Update::PatchTags(&p), &["'tags.x.y.z'"]);
    invalid(
        &device(),
        Update::PatchReported(&p),
        &["'properties.reported.x.y.z'"],
    );
}

#[test]
fn key_length() {
    let k = "k".repeat(MAX_KEY_BYTES);
    desired_ok(&format!(r#"{{"{k}":1}}"#));
    desired_invalid(&format!(r#"{{"{k}k":1}}"#), &["'Key length'", "1025"]);
    // Bytes, not characters: 512 × "é" is 1024 bytes, 513 is 1026.
    desired_ok(&format!(r#"{{"{}":1}}"#, "é".repeat(512)));
    desired_invalid(
        &format!(r#"{{"{}":1}}"#, "é".repeat(513)),
        &["'Key length'", "1026"],
    );
}

#[test]
fn string_length() {
    let s = "s".repeat(MAX_STRING_BYTES);
    desired_ok(&format!(r#"{{"a":"{s}"}}"#));
    desired_invalid(
        &format!(r#"{{"a":{{"b":"{s}s"}}}}"#),
        &["'String value length'", "properties.desired.a.b", "4097"],
    );
    desired_invalid(
        &format!(r#"{{"a":["{s}s"]}}"#),
        &["'String value length'", "a[0]"],
    );
    desired_ok(&format!(r#"{{"a":"{}"}}"#, "é".repeat(2048)));
    desired_invalid(
        &format!(r#"{{"a":"{}s"}}"#, "é".repeat(2048)),
        &["'String value length'"],
    );
}

#[test]
fn integer_range() {
    assert_eq!(MAX_SAFE_INTEGER, (1i64 << 52) - 1);
    assert_eq!(MIN_SAFE_INTEGER, -(1i64 << 52));
    desired_ok(r#"{"a":4503599627370495,"b":-4503599627370496,"c":0.5}"#);
    // The range is for integers as written: a fraction or an exponent makes a double.
    desired_ok(r#"{"d":1.5e300,"e":4503599627370496.0,"f":-1e20}"#);
    desired_invalid(
        r#"{"a":4503599627370496}"#,
        &["'Integer range'", "properties.desired.a"],
    );
    desired_invalid(r#"{"a":-4503599627370497}"#, &["'Integer range'"]);
    // A number built from a value is written in its shortest form: integral means integer.
    let mut o = twinql_store::Object::new();
    o.insert(
        "big",
        Doc::Number(twinql_store::Number::new(4_503_599_627_370_496.0)),
    );
    invalid(
        &device(),
        Update::PatchDesired(&Doc::Object(o)),
        &["'Integer range'"],
    );
    desired_invalid(
        r#"{"a":[1,{"b":9007199254740993}]}"#,
        &["'Integer range'", "a[1].b"],
    );
}

fn nested(levels: usize, leaf: &str) -> String {
    let mut s = leaf.to_owned();
    for i in (1..=levels).rev() {
        s = format!(r#"{{"a{i}":{s}}}"#);
    }
    s
}

#[test]
fn object_depth() {
    assert_eq!(MAX_DEPTH, 10);
    // A value at desired.a1…a10 is fine; one more object level is not.
    desired_ok(&nested(10, "1"));
    desired_ok(&nested(10, "{}"));
    desired_ok(&nested(9, "[1]"));
    desired_invalid(
        &nested(11, "1"),
        &[
            "'Object depth'",
            "properties.desired.a1.a2.a3.a4.a5.a6.a7.a8.a9.a10.a11",
        ],
    );
    desired_invalid(&nested(10, r#"{"x":{}}"#), &["'Object depth'"]);
    // Array levels count too.
    desired_invalid(&nested(10, "[1]"), &["'Object depth'", "a10[0]"]);
    desired_invalid(&nested(9, "[[1]]"), &["'Object depth'", "a9[0][0]"]);
    // Tags the same.
    let p = j(&nested(11, "true"));
    invalid(
        &device(),
        Update::PatchTags(&p),
        &["'Object depth'", "tags.a1"],
    );
    let p = j(&nested(10, "true"));
    ok(&device(), Update::PatchTags(&p), T1);
}

#[test]
fn section_sizes() {
    assert_eq!(section_size(&j("{}")), 0);
    assert_eq!(section_size(&j(r#"{"ab":"cde"}"#)), 5);
    assert_eq!(
        section_size(&j(r#"{"n":1.5,"b":true,"z":null}"#)),
        1 + 8 + 1 + 4 + 1
    );
    assert_eq!(
        section_size(&j(r#"{"o":{"p":[1,"xy",false]}}"#)),
        1 + 1 + 8 + 2 + 4
    );
    // Characters, not bytes; control characters not counted.
    assert_eq!(section_size(&j(r#"{"é":"ü\n\u0085"}"#)), 2);
    // Read-only members of the section root are not counted.
    let d = j(r#"{"a":1,"$metadata":{"$lastUpdated":"x","a":{}},"$version":3,"$etag":"e"}"#);
    assert_eq!(section_size(&d), 9);
    assert_eq!(section_size(&j(r#""abc""#)), 3);
}

#[test]
fn tags_section_size_limit() {
    assert_eq!(MAX_TAGS_BYTES, 8192);
    // Two keys of one character: (1 + 4095) × 2 = 8192 — exactly at the limit.
    let s = "v".repeat(4095);
    let inside = j(&format!(r#"{{"a":"{s}","b":"{s}"}}"#));
    let a = ok(&device(), Update::PatchTags(&inside), T1);
    assert_eq!(section_size(at(&a.twin, "tags").unwrap()), 8192);
    let over = j(&format!(r#"{{"a":"{s}","b":"{s}v"}}"#));
    invalid(
        &device(),
        Update::PatchTags(&over),
        &["'Section size'", "'tags'", "8193", "8192"],
    );
    // The limit is on the result: one more key on a full section is refused…
    let more = j(r#"{"c":1}"#);
    invalid(&a.twin, Update::PatchTags(&more), &["'Section size'"]);
    // …and a patch that shrinks it is fine.
    let shrink = j(r#"{"a":null,"c":1}"#);
    ok(&a.twin, Update::PatchTags(&shrink), T2);
    let r = j(&format!(r#"{{"tags":{{"a":"{s}","b":"{s}v"}}}}"#));
    invalid(&device(), Update::ReplaceTwin(&r), &["'Section size'"]);
}

#[test]
fn desired_and_reported_size_limits() {
    // Eight keys "k0".."k7" with 4094-byte strings: 8 × 4096 = 32768.
    let s = "v".repeat(4094);
    let body = |extra: &str| {
        let members: Vec<String> = (0..8)
            .map(|i| format!(r#""k{i}":"{s}{}""#, if i == 7 { extra } else { "" }))
            .collect();
        j(&format!("{{{}}}", members.join(",")))
    };
    let inside = body("");
    let over = body("v");
    let a = ok(&device(), Update::PatchDesired(&inside), T1);
    assert_eq!(
        section_size(at(&a.twin, "properties.desired").unwrap()),
        32768
    );
    invalid(
        &device(),
        Update::PatchDesired(&over),
        &["'Section size'", "'properties.desired'", "32769"],
    );
    ok(&device(), Update::PatchReported(&inside), T1);
    invalid(
        &device(),
        Update::PatchReported(&over),
        &["'Section size'", "'properties.reported'"],
    );
}

#[test]
fn arrays_are_values() {
    let a = desired(r#"{"list":[1,"two",{"three":3},[4],null,true]}"#);
    assert_eq!(
        text(&a.twin, "properties.desired.list"),
        r#"[1,"two",{"three":3},[4],null,true]"#
    );
    assert_eq!(
        keys(&a.twin, "properties.desired.$metadata.list"),
        ["$lastUpdated", "$lastUpdatedVersion"]
    );
    // A patch replaces an array wholesale.
    let p = j(r#"{"list":[9]}"#);
    let b = ok(&a.twin, Update::PatchDesired(&p), T2);
    assert_eq!(text(&b.twin, "properties.desired.list"), "[9]");
}

// ---- property test: merge semantics and metadata coverage ----

/// RFC 7386, independently, on serde_json values (order kept: new keys appended).
fn merge_patch(target: &mut Value, patch: &Value) {
    let Value::Object(p) = patch else {
        *target = patch.clone();
        return;
    };
    if !target.is_object() {
        *target = Value::Object(Map::new());
    }
    let Value::Object(t) = target else {
        unreachable!()
    };
    for (k, v) in p {
        if v.is_null() {
            t.shift_remove(k);
        } else {
            merge_patch(t.entry(k.clone()).or_insert(Value::Null), v);
        }
    }
}

fn user_part(section: &Value) -> Value {
    let mut s = section.clone();
    if let Value::Object(o) = &mut s {
        o.shift_remove("$metadata");
        o.shift_remove("$version");
    }
    s
}

/// Every user key has a metadata object with `$lastUpdated` (and `$lastUpdatedVersion` in
/// desired), and there is no entry for anything else. (The root metadata of a desired
/// section never written, as a new twin has it, holds only `$lastUpdated`.)
fn check_metadata(value: &Value, meta: &Value, desired: bool, path: &str) {
    let Value::Object(m) = meta else {
        panic!("metadata of {path} is not an object: {meta}")
    };
    assert!(
        m.get("$lastUpdated").is_some_and(Value::is_string),
        "{path}: {meta}"
    );
    let fresh = path == "desired" && !m.contains_key("$lastUpdatedVersion");
    assert_eq!(
        m.contains_key("$lastUpdatedVersion") || fresh,
        desired,
        "{path}: {meta}"
    );
    let entries: Vec<&String> = m.keys().filter(|k| !k.starts_with('$')).collect();
    match value {
        Value::Object(o) => {
            let user: Vec<&String> = o.keys().filter(|k| !k.starts_with('$')).collect();
            assert_eq!(entries, user, "{path}");
            for k in user {
                check_metadata(&o[k], &m[k], desired, &format!("{path}.{k}"));
            }
        }
        _ => assert!(
            entries.is_empty(),
            "{path}: leaf metadata has children {meta}"
        ),
    }
}

fn patch_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        2 => Just(Value::Null),
        1 => any::<bool>().prop_map(Value::Bool),
        2 => (-50i64..50).prop_map(Value::from),
        1 => "[a-z]{0,3}".prop_map(Value::String),
        1 => prop::collection::vec((-5i64..5).prop_map(Value::from), 0..3).prop_map(Value::Array),
    ];
    leaf.prop_recursive(3, 24, 4, |inner| {
        prop::collection::vec(("[a-d]", inner), 0..4)
            .prop_map(|kv| Value::Object(kv.into_iter().collect()))
    })
}

fn patch_object() -> impl Strategy<Value = Value> {
    prop::collection::vec(("[a-d]", patch_value()), 0..5)
        .prop_map(|kv| Value::Object(kv.into_iter().collect()))
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn merges_match_rfc7386_and_metadata_mirrors(
        patches in prop::collection::vec((patch_object(), 0u8..3), 1..6)
    ) {
        let mut twin = device();
        let mut want_desired = Value::Object(Map::new());
        let mut want_reported = Value::Object(Map::new());
        let mut want_tags = Value::Object(Map::new());
        for (n, (patch, which)) in patches.iter().enumerate() {
            let p = Doc::from_json(patch);
            let (update, want) = match which {
                0 => (Update::PatchDesired(&p), &mut want_desired),
                1 => (Update::PatchReported(&p), &mut want_reported),
                _ => (Update::PatchTags(&p), &mut want_tags),
            };
            let etag = etag_for_version(n as u64 + 1);
            let a = apply(&twin, &update, Some(&etag), T1).map_err(|e| TestCaseError::fail(e.to_string()))?;
            merge_patch(want, patch);
            let got = a.twin.to_json();
            prop_assert_eq!(&got["version"], &Value::from(n as u64 + 2));
            for (name, want) in [("desired", &want_desired), ("reported", &want_reported)] {
                let section = &got["properties"][name];
                let user = user_part(section);
                prop_assert_eq!(&user, want);
                prop_assert_eq!(user.to_string(), want.to_string(), "member order");
                check_metadata(&user, &section["$metadata"], name == "desired", name);
                if name == "desired" && section["$metadata"].get("$lastUpdatedVersion").is_none() {
                    prop_assert_eq!(&section["$version"], &Value::from(1));
                }
                let keys: Vec<&String> = section.as_object().unwrap().keys().collect();
                let last: Vec<&str> = keys.iter().rev().take(2).map(|k| k.as_str()).collect();
                prop_assert_eq!(last, ["$version", "$metadata"]);
            }
            match got.get("tags") {
                Some(tags) => {
                    prop_assert_eq!(tags.to_string(), want_tags.to_string());
                    prop_assert!(!tags.as_object().unwrap().is_empty());
                }
                None => prop_assert_eq!(&want_tags, &Value::Object(Map::new())),
            }
            if *which == 0 {
                let mut note = patch.clone();
                note.as_object_mut().unwrap().insert("$version".into(), got["properties"]["desired"]["$version"].clone());
                prop_assert_eq!(a.desired_notification.map(|d| d.to_json()), Some(note));
                prop_assert_eq!(
                    &got["properties"]["desired"]["$metadata"]["$lastUpdatedVersion"],
                    &got["properties"]["desired"]["$version"]
                );
            } else {
                prop_assert!(a.desired_notification.is_none());
            }
            twin = a.twin;
        }
    }
}
