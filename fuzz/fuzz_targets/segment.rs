//! Arbitrary bytes as a store segment: opening must fail with a positioned error or give a
//! store whose every document, chunk and index path can be read (corrupt parts reported as
//! problems), never a panic or undefined behaviour.
#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;
use twinql_store::CollectionKind;
use twinql_store::mapped::MappedFile;
use twinql_store::segment::read_segment;

fuzz_target!(|data: &[u8]| {
    // The same bytes as a tape: whatever passes the check reads without panicking.
    twinql_store::segment::fuzz_tape(data);
    let Ok(file) = MappedFile::from_bytes(Path::new("fuzz.tqs"), data) else {
        return;
    };
    let Ok(seg) = read_segment(file) else {
        return;
    };
    let store = &seg.store;
    let _ = store.verify();
    for kind in CollectionKind::ALL {
        let coll = store.collection(kind);
        for doc in coll.iter() {
            let _ = doc.to_json_string();
        }
        for id in coll.ids() {
            let _ = coll.identity(id);
        }
        let _ = coll.find("d1", None);
        if let Some(index) = &seg.index {
            let ci = index.collection(kind);
            let keys: Vec<Vec<u32>> = ci.path_keys().map(|k| k.to_vec()).collect();
            for k in keys {
                if let Some(p) = ci.path(&k) {
                    assert!(p.defined.max().is_none_or(|m| (m as usize) < coll.len()));
                }
            }
        }
    }
});
