//! Store segments: round trips, and corrupt or truncated files give positioned errors (at
//! open, or as recorded problems when a chunk or postings list is first read), never panics.

use std::path::Path;

use twinql_store::index::{IndexPolicy, StoreIndex};
use twinql_store::mapped::MappedFile;
use twinql_store::segment::{
    SegmentError, SegmentInfo, SegmentWriter, open_segment, read_segment, write_segment_file,
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

/// The test twins as two files of JSON Lines, and a third whose last line is not JSON.
fn twin_files(dir: &Path) -> [std::path::PathBuf; 3] {
    let text = twins_text();
    let lines: Vec<&str> = text.lines().collect();
    let (a, b) = lines.split_at(lines.len() / 2);
    let paths = [
        dir.join("a.jsonl"),
        dir.join("b.jsonl"),
        dir.join("bad.jsonl"),
    ];
    std::fs::write(&paths[0], a.join("\n")).expect("write a");
    std::fs::write(&paths[1], b.join("\n")).expect("write b");
    let bad = text.replace(r#":"dev"#, r#":"other"#) + "{\"deviceId\": oops}\n";
    std::fs::write(&paths[2], bad).expect("write bad");
    paths
}

#[test]
fn a_segment_written_while_loading_equals_one_written_after() {
    let dir = temp("streamed");
    let [a, b, bad] = twin_files(&dir);

    // Loaded first, written after.
    let mut whole = Store::new();
    whole.load_path(&a, &small_chunks()).expect("a loads");
    whole.load_path(&b, &small_chunks()).expect("b loads");
    let whole_index = StoreIndex::build(&whole, &IndexPolicy::default());
    let after = dir.join("after.tqs");
    write_segment_file(&whole, Some(&whole_index), SegmentInfo::default(), &after)
        .expect("write after");

    // Written while loading, with a failed load in between that must leave no trace.
    let streamed = dir.join("streamed.tqs");
    let mut writer = SegmentWriter::create(&streamed, SegmentInfo::default()).expect("create");
    let mut store = Store::new();
    store
        .load_path_writing(&a, &small_chunks(), &mut writer)
        .expect("a loads");
    let chunks_after_a = writer.chunks();
    assert!(chunks_after_a > 1, "the test wants several chunks per file");
    let tmp_len = |w: &SegmentWriter| std::fs::metadata(w.tmp_path()).map(|m| m.len());
    let err = store
        .load_path_writing(&bad, &small_chunks(), &mut writer)
        .expect_err("bad line");
    assert!(err.to_string().contains("bad.jsonl:331:"), "{err}");
    assert_eq!(writer.chunks(), chunks_after_a);
    assert_eq!(store.devices().len(), 150);
    store
        .load_path_writing(&b, &small_chunks(), &mut writer)
        .expect("b loads");
    assert!(tmp_len(&writer).expect("tmp file") > 0);
    assert!(
        !streamed.exists(),
        "written under a temporary name until finished"
    );
    let tmp = writer.tmp_path().to_path_buf();
    let index = writer
        .finish_building(&store, || {
            Some(StoreIndex::build(&store, &IndexPolicy::default()))
        })
        .expect("finish")
        .expect("index built");
    assert!(!tmp.exists() && streamed.exists());
    assert_eq!(index.stats(), whole_index.stats());

    let (x, y) = (
        open_segment(&after).expect("open after"),
        open_segment(&streamed).expect("open streamed"),
    );
    assert!(x.store.verify().is_ok() && y.store.verify().is_ok());
    assert_eq!(y.store.devices().len(), 300);
    assert_eq!(all_json(&y.store), all_json(&x.store));
    assert_eq!(all_json(&y.store), all_json(&whole));
    for i in [0, 149, 150, 299] {
        let id = format!("dev{i}");
        assert_eq!(
            y.store.devices().find(&id, None),
            x.store.devices().find(&id, None)
        );
    }
    assert_eq!(y.store.modules().find("dev40", Some("m")), Some(4));
    let (xi, yi) = (x.index.expect("index"), y.index.expect("index"));
    assert_eq!(yi.stats(), xi.stats());
    for kind in CollectionKind::ALL {
        for k in xi.collection(kind).path_keys() {
            let (p, q) = (
                xi.collection(kind).path(k).expect("path"),
                yi.collection(kind).path(k).expect("path"),
            );
            assert_eq!(p.defined, q.defined);
            assert_eq!(format!("{:?}", p.strings), format!("{:?}", q.strings));
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_store_written_while_loading_reads_its_documents_from_the_segment() {
    let dir = temp("read-back");
    let [a, b, bad] = twin_files(&dir);
    let array = dir.join("array.json");
    let text = twins_text();
    std::fs::write(
        &array,
        format!("[{}]", text.lines().collect::<Vec<_>>().join(",\n")),
    )
    .expect("write array");
    let mut whole = Store::new();
    whole.load_path(&a, &small_chunks()).expect("a loads");
    whole.load_path(&b, &small_chunks()).expect("b loads");
    let expected = all_json(&whole);
    assert!(whole.memory().tapes > 0);
    let variants = [
        ("one block", small_chunks()),
        (
            "many blocks",
            LoadOptions {
                block_bytes: 8192,
                ..small_chunks()
            },
        ),
        (
            "read in blocks",
            LoadOptions {
                block_bytes: 8192,
                map_files: false,
                ..small_chunks()
            },
        ),
    ];
    for (name, opts) in variants {
        let path = dir.join(format!("{}.tqs", name.replace(' ', "-")));
        let mut writer = SegmentWriter::create(&path, SegmentInfo::default()).expect("create");
        let mut store = Store::new();
        store
            .load_path_writing(&a, &opts, &mut writer)
            .expect("a loads");
        // A load that fails is undone in the store and the file, and what was read back
        // from the file before it still reads the same.
        let before = all_json(&store);
        store
            .load_path_writing(&bad, &opts, &mut writer)
            .expect_err("bad line");
        assert_eq!(all_json(&store), before, "{name}");
        store
            .load_path_writing(&b, &opts, &mut writer)
            .expect("b loads");
        assert!(writer.chunks() > 4, "{name}: the test wants many chunks");
        assert_eq!(
            store.memory().tapes,
            0,
            "{name}: every tape is read from the segment, none kept on the heap"
        );
        assert_eq!(all_json(&store), expected, "{name}");
        assert_eq!(store.devices().find("dev299", None), Some(299), "{name}");
        assert_eq!(store.modules().find("dev40", Some("m")), Some(4), "{name}");
        let index = writer
            .finish_building(&store, || {
                Some(StoreIndex::build(&store, &IndexPolicy::default()))
            })
            .expect("finish")
            .expect("index built");
        assert_eq!(
            index.stats(),
            StoreIndex::build(&whole, &IndexPolicy::default()).stats(),
            "{name}"
        );
        // The renamed file still backs the store's documents.
        assert_eq!(all_json(&store), expected, "{name}");
        let opened = open_segment(&path).expect("open");
        assert_eq!(all_json(&opened.store), expected, "{name}");
    }

    // A JSON array goes the same way.
    let path = dir.join("array.tqs");
    let mut writer = SegmentWriter::create(&path, SegmentInfo::default()).expect("create");
    let mut store = Store::new();
    store
        .load_path_writing(&array, &small_chunks(), &mut writer)
        .expect("array loads");
    assert!(writer.chunks() > 4);
    assert_eq!(store.memory().tapes, 0);
    let mut in_memory = Store::new();
    in_memory
        .load_path(&array, &small_chunks())
        .expect("array loads");
    assert_eq!(all_json(&store), all_json(&in_memory));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_chunk_of_skipped_lines_is_written_and_read_back_empty() {
    // With lines skipped, a chunk can hold no document at all: it has no tape to read back.
    let dir = temp("skipped");
    let text = twins_text();
    let lines: Vec<&str> = text.lines().collect();
    let (a, b) = lines.split_at(lines.len() / 2);
    let bad = vec![r#"{"deviceId": oops}"#; 1000];
    let path = dir.join("mixed.jsonl");
    std::fs::write(&path, [a, &bad[..], b].concat().join("\n")).expect("write");
    let opts = LoadOptions {
        skip_invalid: true,
        ..small_chunks()
    };
    let mut in_memory = Store::new();
    let expected = in_memory.load_path(&path, &opts).expect("loads");
    assert_eq!(expected.skipped, 1000);
    let seg = dir.join("s.tqs");
    let mut writer = SegmentWriter::create(&seg, SegmentInfo::default()).expect("create");
    let mut store = Store::new();
    let report = store
        .load_path_writing(&path, &opts, &mut writer)
        .expect("loads");
    assert_eq!(report.skipped, 1000);
    assert_eq!(store.memory().tapes, 0);
    assert_eq!(all_json(&store), all_json(&in_memory));
    writer.finish_building(&store, || None).expect("finish");
    let opened = open_segment(&seg).expect("open");
    assert!(opened.store.verify().is_ok());
    assert_eq!(all_json(&opened.store), all_json(&in_memory));
    let _ = std::fs::remove_dir_all(&dir);
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(24))]

    /// However the input is cut into blocks and chunks, read or mapped, with invalid lines
    /// skipped anywhere: a store loaded while its segment is written holds no tape on the
    /// heap and reads as the same store loaded in memory, before and after the segment is
    /// finished and opened.
    #[test]
    fn stores_written_while_loading_read_as_loaded_ones(
        sizes in proptest::collection::vec(0usize..120, 1..120),
        bad in proptest::collection::vec(proptest::bool::weighted(0.1), 120),
        chunk_bytes in 4096usize..16384,
        block_bytes in 2048usize..65536,
        map_files: bool,
    ) {
        let dir = temp(&format!("prop-{chunk_bytes}-{block_bytes}"));
        let mut text = String::new();
        for (i, n) in sizes.iter().enumerate() {
            if bad[i] {
                text.push_str("{\"deviceId\": oops}\n");
            }
            text.push_str(&format!(
                r#"{{"deviceId":"d{i}","tags":{{"pad":"{}","i":{i}}},"properties":{{"reported":{{"t":{}.5}}}}}}"#,
                "x".repeat(*n * 7),
                i % 40
            ));
            text.push('\n');
        }
        let path = dir.join("in.jsonl");
        std::fs::write(&path, &text).expect("write");
        let opts = LoadOptions {
            skip_invalid: true,
            chunk_bytes,
            block_bytes,
            map_files,
            ..small_chunks()
        };
        let mut in_memory = Store::new();
        let expected = in_memory.load_path(&path, &opts).expect("loads");
        let seg = dir.join("s.tqs");
        let mut writer = SegmentWriter::create(&seg, SegmentInfo::default()).expect("create");
        let mut store = Store::new();
        let report = store.load_path_writing(&path, &opts, &mut writer).expect("loads");
        proptest::prop_assert_eq!(report.skipped, expected.skipped);
        proptest::prop_assert_eq!(store.memory().tapes, 0);
        let json = all_json(&in_memory);
        proptest::prop_assert_eq!(&all_json(&store), &json);
        writer.finish_building(&store, || None).expect("finish");
        proptest::prop_assert_eq!(&all_json(&store), &json);
        let opened = open_segment(&seg).expect("open");
        proptest::prop_assert_eq!(&all_json(&opened.store), &json);
        let _ = std::fs::remove_dir_all(&dir);
    }
}

#[test]
fn an_unfinished_segment_leaves_no_file_and_a_foreign_store_is_refused() {
    let dir = temp("unfinished");
    let [a, b, _] = twin_files(&dir);
    let path = dir.join("s.tqs");
    let mut writer = SegmentWriter::create(&path, SegmentInfo::default()).expect("create");
    let mut store = Store::new();
    store
        .load_path_writing(&a, &small_chunks(), &mut writer)
        .expect("a loads");
    let tmp = writer.tmp_path().to_path_buf();
    assert!(tmp.exists());
    drop(writer);
    assert!(!tmp.exists() && !path.exists());

    // A store whose chunks were not all written through the writer is refused, when loading
    // and when finishing, and nothing is left behind.
    let mut writer = SegmentWriter::create(&path, SegmentInfo::default()).expect("create");
    let err = store
        .load_path_writing(&b, &small_chunks(), &mut writer)
        .expect_err("store with chunks the segment lacks");
    assert!(
        err.to_string().contains("not written by this store"),
        "{err}"
    );
    match writer.finish_building(&store, || None) {
        Err(SegmentError::Corrupt { message, .. }) => {
            assert!(message.contains("0 chunks written"), "{message}")
        }
        other => panic!("expected a refusal, got {other:?}"),
    }
    assert!(!tmp.exists() && !path.exists());
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn strings_that_need_escaping_round_trip_through_a_segment() {
    // One chunk whose strings need escapes, one whose strings do not: the chunk table
    // records which chunks the renderer may copy strings from unchecked.
    let text = concat!(
        r#"{"deviceId":"plain","tags":{"s":"nothing to escape here"}}"#,
        "\n",
        r#"{"deviceId":"escaped","tags":{"s":"quote \" backslash \\ tab \t ctl \u0001 end","long":"\"0123456789012345678901234567890123456789012345678901234567890123456789"}}"#,
        "\n",
    );
    let dir = temp("escapes");
    let path = dir.join("s.tqs");
    for chunk_bytes in [16, 1 << 20] {
        let mut store = Store::new();
        let opts = LoadOptions {
            chunk_bytes,
            ..small_chunks()
        };
        store
            .load_bytes("t", text.as_bytes(), &opts)
            .expect("loads");
        let _ = std::fs::remove_file(&path);
        write_segment_file(&store, None, SegmentInfo::default(), &path).expect("write");
        let seg = open_segment(&path).expect("open");
        assert_eq!(all_json(&seg.store), all_json(&store));
        let expected: Vec<String> = text
            .lines()
            .map(|l| {
                serde_json::from_str::<serde_json::Value>(l)
                    .unwrap()
                    .to_string()
            })
            .collect();
        assert_eq!(all_json(&seg.store), expected);
        assert!(seg.store.verify().is_ok());
        assert!(seg.store.problems().is_empty());
    }
    let _ = std::fs::remove_dir_all(&dir);
}
