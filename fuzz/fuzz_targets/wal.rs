//! Parses arbitrary bytes as a write-ahead log: nothing may panic, and whatever parses must be
//! consistent: records carry consecutive sequence numbers from `first_seq` and lie back to back
//! from the header on, and the valid prefix plus the dropped tail cover the input exactly.

#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;
use twinql::wal::{MAX_RECORD, WalError, parse_wal};

const HEADER_LEN: u64 = 32;
const RECORD_HEADER_LEN: u64 = 16;

fuzz_target!(|data: &[u8]| {
    let path = Path::new("fuzz.wal");
    let contents = match parse_wal(path, data) {
        Ok(contents) => contents,
        Err(e) => {
            assert!(e.to_string().starts_with("wal fuzz.wal: "));
            match e {
                WalError::Corrupt { offset, .. } => assert!(offset < HEADER_LEN),
                WalError::Io { .. } => panic!("parse_wal does no I/O"),
            }
            return;
        }
    };
    let len = data.len() as u64;
    assert!(contents.valid_len >= HEADER_LEN && contents.valid_len <= len);

    let mut end = HEADER_LEN;
    for (i, r) in contents.records.iter().enumerate() {
        assert_eq!(Some(r.seq), contents.first_seq.checked_add(i as u64));
        assert_ne!(r.seq, u64::MAX);
        assert_eq!(r.offset, end);
        assert!(r.payload.len() <= MAX_RECORD);
        end = r.offset + RECORD_HEADER_LEN + r.payload.len() as u64;
    }
    assert_eq!(end, contents.valid_len);
    assert_eq!(
        Some(contents.next_seq()),
        contents
            .first_seq
            .checked_add(contents.records.len() as u64)
    );

    match &contents.dropped {
        Some(d) => {
            assert_eq!(d.offset, contents.valid_len);
            assert!(d.bytes > 0);
            assert_eq!(contents.valid_len + d.bytes, len);
            assert!(
                d.reason
                    .starts_with(&format!("record at byte {}: ", d.offset))
            );
        }
        None => assert_eq!(contents.valid_len, len),
    }

    // The valid prefix alone reads back the same, with nothing dropped.
    let valid = &data[..contents.valid_len as usize];
    let again = parse_wal(path, valid).expect("the valid prefix parses");
    assert_eq!(again.first_seq, contents.first_seq);
    assert_eq!(again.records, contents.records);
    assert_eq!(again.dropped, None);
});
