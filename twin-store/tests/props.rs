//! Property tests: random documents round-trip; arbitrary bytes never panic.

use proptest::prelude::*;
use serde_json::{Map, Value};
use twinql_planner::value::{Key, Node};
use twinql_store::{LoadOptions, NodeRef, Store};

fn quiet() -> LoadOptions {
    LoadOptions {
        progress: false,
        skip_invalid: true,
        ..LoadOptions::default()
    }
}

fn leaf() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(Value::from),
        (-1000i32..1000, 0u32..4)
            .prop_map(|(m, e)| Value::from(f64::from(m) / 10f64.powi(e as i32))),
        ".{0,80}".prop_map(Value::String),
    ]
}

fn json() -> impl Strategy<Value = Value> {
    leaf().prop_recursive(5, 64, 8, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..8).prop_map(Value::Array),
            // Short names, and long ones (past the renderer's 31-byte fast path), some with
            // characters JSON escapes.
            prop::collection::vec(("[a-zA-Z$é]{0,6}|[a-z\"\\\\\t]{26,40}", inner), 0..8)
                .prop_map(|m| Value::Object(m.into_iter().collect::<Map<_, _>>())),
        ]
    })
}

fn twin() -> impl Strategy<Value = Value> {
    (
        "[a-z0-9-]{1,12}",
        prop::collection::vec(("[a-zA-Z$]{1,8}", json()), 0..10),
    )
        .prop_map(|(id, members)| {
            let mut m = Map::new();
            m.insert("deviceId".into(), Value::String(id));
            for (k, v) in members {
                if k != "deviceId" && k != "moduleId" && k != "jobs" {
                    m.insert(k, v);
                }
            }
            Value::Object(m)
        })
}

fn to_value(node: NodeRef<'_>) -> Value {
    let mut out = Vec::new();
    node.write_json(&mut out);
    serde_json::from_slice(&out).unwrap()
}

/// Walks every node through the `Node` methods.
fn walk(node: NodeRef<'_>, depth: usize) {
    let _ = (
        node.kind(),
        node.as_bool(),
        node.as_f64(),
        node.as_str(),
        node.len(),
    );
    if depth > 100 {
        return;
    }
    node.for_each_member(&mut |name, child| {
        assert!(node.member(&Key::new(name)).is_some());
        walk(child, depth + 1);
    });
    for i in 0..node.len().min(50) {
        if let Some(e) = node.element(i) {
            walk(e, depth + 1);
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    #[test]
    fn random_twins_round_trip(twins in prop::collection::vec(twin(), 1..6)) {
        let mut seen = std::collections::HashSet::new();
        let twins: Vec<Value> = twins
            .into_iter()
            .filter(|t| seen.insert(t["deviceId"].clone()))
            .collect();
        let mut text = Vec::new();
        for t in &twins {
            serde_json::to_writer(&mut text, t).unwrap();
            text.push(b'\n');
        }
        let mut store = Store::new();
        store.load_bytes("p", &text, &LoadOptions { skip_invalid: false, ..quiet() }).unwrap();
        prop_assert_eq!(store.devices().len(), twins.len());
        for (doc, orig) in store.devices().iter().zip(&twins) {
            // serde_json's own float parsing is not exact, so compare through it both ways.
            let compact = serde_json::to_string(orig).unwrap();
            let t: &Value = &serde_json::from_str(&compact).unwrap();
            prop_assert_eq!(&to_value(doc), t);
            // Compact serde_json output comes back byte for byte.
            let mut out = Vec::new();
            doc.write_json(&mut out);
            prop_assert_eq!(String::from_utf8(out).unwrap(), compact);
            walk(doc, 0);
            for (k, v) in t.as_object().unwrap() {
                let mut key = Key::new(k);
                let unresolved = doc.member(&key).map(to_value);
                store.resolve_key(&mut key);
                let resolved = doc.member(&key).map(to_value);
                prop_assert_eq!(resolved.as_ref(), Some(v));
                prop_assert_eq!(unresolved.as_ref(), Some(v));
            }
        }
    }

    #[test]
    fn numbers_round_trip(f in any::<f64>().prop_filter("finite", |f| f.is_finite()), i in any::<i64>()) {
        for text in [format!("{f}"), format!("{f:e}"), format!("{f:?}"), i.to_string(), format!("{i}.0")] {
            let line = format!("{{\"deviceId\":\"d\",\"n\":{text}}}");
            let store = { let mut s = Store::new(); s.load_bytes("n", line.as_bytes(), &quiet()).unwrap(); s };
            let n = store.devices().doc(0).member(&Key::new("n")).unwrap();
            let mut out = Vec::new();
            n.write_json(&mut out);
            prop_assert_eq!(String::from_utf8(out).unwrap(), text.clone());
            prop_assert_eq!(n.as_f64(), Some(text.parse::<f64>().unwrap()));
        }
    }

    #[test]
    fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..400)) {
        let mut store = Store::new();
        let _ = store.load_bytes("g", &bytes, &quiet());
        let _ = store.load_bytes("g", &bytes, &LoadOptions { skip_invalid: false, ..quiet() });
        for doc in store.devices().iter().chain(store.modules().iter()).chain(store.jobs().iter()) {
            walk(doc, 0);
        }
    }

    #[test]
    fn mutated_json_never_panics(
        twins in prop::collection::vec(twin(), 1..3),
        cuts in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 0..6),
        array in any::<bool>(),
    ) {
        let mut text = Vec::new();
        if array { text.push(b'['); }
        for (i, t) in twins.iter().enumerate() {
            if array && i > 0 { text.push(b','); }
            serde_json::to_writer(&mut text, t).unwrap();
            text.push(b'\n');
        }
        if array { text.push(b']'); }
        for (at, b) in cuts {
            let i = at.index(text.len());
            text[i] = b"{}[]\",:\\\n 0-e.tfn\xff"[usize::from(b) % 18];
        }
        let mut store = Store::new();
        if let Ok(report) = store.load_bytes("m", &text, &quiet()) {
            prop_assert_eq!(report.devices + report.modules + report.jobs,
                store.devices().len() + store.modules().len() + store.jobs().len());
        }
        for doc in store.devices().iter().chain(store.modules().iter()).chain(store.jobs().iter()) {
            walk(doc, 0);
            let mut out = Vec::new();
            doc.write_json(&mut out);
            // What was loaded writes back as JSON text (serde_json may still reject a number
            // out of its range, such as 1e999).
            if let Err(e) = serde_json::from_slice::<Value>(&out) {
                prop_assert!(e.to_string().contains("number out of range"), "{}", e);
            }
        }
    }
}
