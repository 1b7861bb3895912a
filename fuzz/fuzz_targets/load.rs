//! Loads arbitrary bytes as JSON Lines (or a JSON array) into a store and walks every
//! document: nothing may panic, and whatever loads must write back as JSON.

#![no_main]

use libfuzzer_sys::fuzz_target;
use twinql_planner::value::{Key, Node};
use twinql_store::{DocKind, LoadOptions, NodeRef, Store};

fn walk(node: NodeRef<'_>, keys: &[Key], depth: usize) {
    let _ = (node.kind(), node.as_bool(), node.as_f64(), node.as_str(), node.len());
    let _ = node.number_text();
    for key in keys {
        let _ = node.member(key);
    }
    if depth > 80 {
        return;
    }
    node.for_each_member(&mut |name, child| {
        assert!(node.member(&Key::new(name)).is_some());
        walk(child, keys, depth + 1);
    });
    for i in 0..node.len().min(64) {
        if let Some(e) = node.element(i) {
            walk(e, keys, depth + 1);
        }
    }
    let _ = node.element(usize::MAX);
}

fuzz_target!(|data: &[u8]| {
    // The first byte picks the kind (bit 0) and the block size (the rest: small blocks make
    // the loader parse a block while it adds the one before, across many boundaries).
    let (kind, block, data) = match data.split_first() {
        Some((&b, rest)) if b & 1 == 1 => (DocKind::Jobs, 1 + usize::from(b >> 1), rest),
        Some((&b, rest)) => (DocKind::Twins, 1 + usize::from(b >> 1), rest),
        None => (DocKind::Twins, 1, data),
    };
    let mut store = Store::new();
    for skip_invalid in [false, true] {
        let opts = LoadOptions {
            kind,
            skip_invalid,
            progress: false,
            max_depth: 16,
            block_bytes: block,
            ..LoadOptions::default()
        };
        let _ = store.load_bytes("fuzz", data, &opts);
    }
    let mut keys: Vec<Key> = ["deviceId", "DEVICEID", "tags", "x", "a", "A", ""]
        .iter()
        .map(|n| Key::new(n))
        .collect();
    let unresolved = keys.clone();
    for k in &mut keys {
        store.resolve_key(k);
    }
    for coll in [store.devices(), store.modules(), store.jobs()] {
        for doc in coll.iter() {
            walk(doc, &keys, 0);
            walk(doc, &unresolved, 0);
            let mut out = Vec::new();
            doc.write_json(&mut out);
            assert!(std::str::from_utf8(&out).is_ok());
        }
        for id in coll.ids() {
            let (dev, sub) = coll.identity(id).unwrap();
            assert_eq!(coll.find(dev, sub), Some(id));
        }
    }
});
