//! Store segments: round trips, and corrupt or truncated files give positioned errors (at
//! open, or as recorded problems when a chunk or postings list is first read), never panics.

use std::path::Path;

use twinql_store::index::{IndexPolicy, StoreIndex};
use twinql_store::mapped::MappedFile;
use twinql_store::segment::{
    SegmentError, SegmentInfo, open_segment, read_segment, write_segment_file,
};
use twinql_store::{CollectionKind, LoadOptions, Store};

fn twins_text() -> String {
    let mut out = String::new();
    for i in 0..300 {
        let region = ["US", "EU", "APAC"][i % 3];
        out.push_str(&format!(
            r#"{{"deviceId":"dev{i}","version":{v},"tags":{{"region":"{region}","n":{i},"f":{f}}},"properties":{{"reported":{{"temp":{t},"ok":{ok},"name":"unicode é {i}","arr":[1,2.50,{{"x":null}}]}}}}}}"#,
            v = i + 1,
            f = i as f64 / 7.0,
            t = 20 + i % 15,
            ok = i % 2 == 0,
        ));
        out.push('\n');
        if i % 10 == 0 {
            out.push_str(&format!(
                r#"{{"deviceId":"dev{i}","moduleId":"m","version":1,"properties":{{"reported":{{"k":{i}}}}}}}"#
            ));
            out.push('\n');
        }
    }
    out
}

fn small_chunks() -> LoadOptions {
    LoadOptions {
        progress: false,
        chunk_bytes: 4096,
        ..LoadOptions::default()
    }
}

fn build() -> (Store, StoreIndex) {
    let mut store = Store::new();
    store
        .load_bytes("twins", twins_text().as_bytes(), &small_chunks())
        .expect("twins load");
    let index = StoreIndex::build(&store, &IndexPolicy::default());
    (store, index)
}

fn temp(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("twinql-segtest-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("temp dir");
    dir
}

fn all_json(store: &Store) -> Vec<String> {
    CollectionKind::ALL
        .iter()
        .flat_map(|&k| {
            let c = store.collection(k);
            c.iter().map(|d| d.to_json_string()).collect::<Vec<_>>()
        })
        .collect()
}

fn written() -> (Vec<u8>, Store, StoreIndex) {
    let (store, index) = build();
    let dir = temp("written");
    let path = dir.join("s.tqs");
    write_segment_file(
        &store,
        Some(&index),
        SegmentInfo {
            seq: 7,
            generation: 3,
        },
        &path,
    )
    .expect("write");
    let bytes = std::fs::read(&path).expect("read back");
    let _ = std::fs::remove_dir_all(&dir);
    (bytes, store, index)
}

#[test]
fn round_trip_keeps_documents_identities_and_postings() {
    let (store, index) = build();
    let dir = temp("round");
    let path = dir.join("s.tqs");
    write_segment_file(
        &store,
        Some(&index),
        SegmentInfo {
            seq: 7,
            generation: 3,
        },
        &path,
    )
    .expect("write");
    let seg = open_segment(&path).expect("open");
    assert_eq!(
        seg.info,
        SegmentInfo {
            seq: 7,
            generation: 3
        }
    );
    assert!(seg.store.devices().len() == 300 && seg.store.modules().len() == 30);
    assert!(all_json(&seg.store) == all_json(&store));
    assert_eq!(seg.store.devices().identity(42), Some(("dev42", None)));
    assert_eq!(seg.store.devices().find("dev42", None), Some(42));
    assert_eq!(seg.store.modules().find("dev40", Some("m")), Some(4));
    assert_eq!(seg.store.devices().find("nope", None), None);
    let mapped = seg.index.as_ref().expect("index kept");
    assert_eq!(mapped.policy(), index.policy());
    assert_eq!(mapped.stats(), index.stats());
    for kind in CollectionKind::ALL {
        let (a, b) = (index.collection(kind), mapped.collection(kind));
        let mut keys: Vec<Vec<u32>> = a.path_keys().map(<[u32]>::to_vec).collect();
        keys.sort();
        let mut keys_b: Vec<Vec<u32>> = b.path_keys().map(<[u32]>::to_vec).collect();
        keys_b.sort();
        assert_eq!(keys, keys_b);
        for k in keys {
            let (pa, pb) = (a.path(&k).expect("path"), b.path(&k).expect("path"));
            assert_eq!(pa.defined, pb.defined);
            assert_eq!(pa.kinds, pb.kinds);
            assert_eq!(format!("{:?}", pa.strings), format!("{:?}", pb.strings));
        }
    }
    assert!(seg.store.verify().is_ok());
    assert!(seg.store.problems().is_empty());
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn truncated_segments_are_refused_with_the_offset() {
    let (bytes, _, _) = written();
    for cut in [
        0,
        10,
        63,
        64,
        200,
        bytes.len() / 2,
        bytes.len() - 5,
        bytes.len() - 1,
    ] {
        let f = MappedFile::from_bytes(Path::new("cut.tqs"), &bytes[..cut]).expect("map");
        let err = read_segment(f).expect_err("a truncated segment must not open");
        let text = err.to_string();
        assert!(
            text.contains("cut.tqs") && text.contains("at byte"),
            "{text}"
        );
    }
}

#[test]
fn newer_format_versions_are_refused_clearly() {
    let (mut bytes, _, _) = written();
    bytes[8] = 2;
    let h = crc32fast::hash(&bytes[..56]);
    bytes[56..60].copy_from_slice(&h.to_le_bytes());
    let f = MappedFile::from_bytes(Path::new("v2.tqs"), &bytes).expect("map");
    let err = read_segment(f).expect_err("version 2 must be refused");
    assert!(
        err.to_string()
            .contains("format version 2; this build reads version 1"),
        "{err}"
    );
}

#[test]
fn every_corrupted_byte_is_caught_at_open_or_on_first_use() {
    let (bytes, store, _) = written();
    let expected = all_json(&store);
    // Flip one byte at a time across the file (strided to keep the test quick).
    let mut at_open = 0;
    let mut on_use = 0;
    for pos in (0..bytes.len()).step_by(37) {
        let mut b = bytes.clone();
        b[pos] ^= 0x5a;
        let f = MappedFile::from_bytes(Path::new("flip.tqs"), &b).expect("map");
        match read_segment(f) {
            Err(SegmentError::Corrupt { offset, .. }) => {
                assert!(offset <= bytes.len() as u64);
                at_open += 1;
            }
            Err(e) => panic!("unexpected error {e}"),
            Ok(seg) => {
                // The chunk or postings holding the byte is refused when first read.
                let verified = seg.store.verify();
                let mut index_problem = false;
                if let Some(ix) = &seg.index {
                    for kind in CollectionKind::ALL {
                        let c = ix.collection(kind);
                        let keys: Vec<Vec<u32>> = c.path_keys().map(<[u32]>::to_vec).collect();
                        for k in keys {
                            let _ = c.path(&k);
                        }
                    }
                    index_problem = !seg.store.problems().is_empty();
                }
                if verified.is_ok() && !index_problem {
                    // Only possible if the byte was in padding no reader uses: the data is intact.
                    assert_eq!(
                        all_json(&seg.store),
                        expected,
                        "byte {pos} changed data unnoticed"
                    );
                } else {
                    let p = seg.store.problems();
                    assert!(
                        p.iter()
                            .all(|m| m.contains("flip.tqs") && m.contains("byte")),
                        "{p:?}"
                    );
                    on_use += 1;
                }
            }
        }
    }
    assert!(
        at_open > 0 && on_use > 0,
        "at open {at_open}, on use {on_use}"
    );
}

#[test]
fn a_store_without_indexes_round_trips() {
    let (store, _) = build();
    let dir = temp("noindex");
    let path = dir.join("s.tqs");
    write_segment_file(&store, None, SegmentInfo::default(), &path).expect("write");
    let seg = open_segment(&path).expect("open");
    assert!(seg.index.is_none());
    assert!(all_json(&seg.store) == all_json(&store));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_missing_file_names_the_path() {
    let err = open_segment(Path::new("/nonexistent/twinql/seg.tqs")).expect_err("missing");
    assert!(
        err.to_string().contains("/nonexistent/twinql/seg.tqs"),
        "{err}"
    );
}
