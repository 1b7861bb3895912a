//! Read-only memory maps of store files and of input files: the only place this crate uses
//! `unsafe`.
//!
//! A segment file is mapped once and shared. An input file of JSON Lines is mapped for the
//! time of its load and parsed in place (every byte is checked by the parser). A mapped document's text is handed out only
//! after its bytes were checked (see `DocChecks`), and an import reads the tapes it wrote to
//! its segment from the file once they are found equal to what was written (`MappedStr`):
//! the two other `unsafe` blocks here turn such checked bytes into `&str` without checking
//! them again on every read.
#![allow(unsafe_code)]

use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// A file mapped read-only into memory.
pub struct MappedFile {
    map: memmap2::Mmap,
    /// Bytes of the file (an anonymous map of an empty input has one byte more).
    len: usize,
    path: PathBuf,
}

impl std::fmt::Debug for MappedFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MappedFile")
            .field("path", &self.path)
            .field("len", &self.len)
            .finish()
    }
}

impl MappedFile {
    /// Maps `path` read-only.
    pub fn open(path: &Path) -> std::io::Result<Arc<MappedFile>> {
        let file = File::open(path)?;
        // SAFETY: the map is read-only, and store files are never modified in place: segments
        // are written whole under a temporary name, synced and renamed into place, and the
        // store directory's lock keeps other twinql writers out. The bytes are untrusted all
        // the same: every section is checked before it is used, and nothing here assumes
        // more than "some bytes" until then. (A process outside twinql truncating the file
        // under the map would make reads fault; that is the documented limit of mapping.)
        let map = unsafe { memmap2::Mmap::map(&file)? };
        Ok(Arc::new(MappedFile {
            len: map.len(),
            map,
            path: path.to_path_buf(),
        }))
    }

    /// Maps `file` (an input of documents at `path`) read-only, to be parsed in place.
    pub(crate) fn open_input(file: &File, path: &Path) -> std::io::Result<Arc<MappedFile>> {
        // SAFETY: the map is read-only and lives while the load that parses it; its bytes are
        // untrusted input, every one of which the parser checks. A file another process
        // appends to while it is mapped shows the map's length; one it truncates makes reads
        // past the new end fault (SIGBUS), the documented limit of loading a regular file
        // (see README, "Compatibility notes"); pipes and devices are read, not mapped.
        let map = unsafe { memmap2::Mmap::map(file)? };
        Ok(Arc::new(MappedFile {
            len: map.len(),
            map,
            path: path.to_path_buf(),
        }))
    }

    /// Maps bytes `offset..offset + len` of `file` (a segment this process is writing, opened
    /// for reading; `path` names it in messages) read-only. The map's bytes are the file's
    /// from `offset` on (`memmap2` aligns the map to a page itself).
    pub(crate) fn open_range(
        file: &File,
        path: &Path,
        offset: u64,
        len: usize,
    ) -> std::io::Result<Arc<MappedFile>> {
        // SAFETY: the map is read-only and covers bytes the caller has written and flushed to
        // the file; nothing rewrites or truncates them while the map lives (a segment being
        // written only grows, under the store directory's lock, and is cut back only when a
        // load fails, after the chunks mapped from the cut bytes are dropped). The bytes are
        // not trusted for that: `MappedStr::new_equal` compares them with what was written.
        let map = unsafe {
            memmap2::MmapOptions::new()
                .offset(offset)
                .len(len)
                .map(file)?
        };
        Ok(Arc::new(MappedFile {
            len,
            map,
            path: path.to_path_buf(),
        }))
    }

    /// A copy of `bytes` in anonymous memory, read as if it were the file `path` (for tests
    /// and fuzzing of the segment reader).
    pub fn from_bytes(path: &Path, bytes: &[u8]) -> std::io::Result<Arc<MappedFile>> {
        let mut map = memmap2::MmapMut::map_anon(bytes.len().max(1))?;
        map[..bytes.len()].copy_from_slice(bytes);
        let map = map.make_read_only()?;
        Ok(Arc::new(MappedFile {
            len: bytes.len(),
            map,
            path: path.to_path_buf(),
        }))
    }

    /// The mapped bytes.
    #[inline]
    pub fn bytes(&self) -> &[u8] {
        &self.map[..self.len]
    }

    /// The file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Asks the kernel to read the whole file ahead (for scans).
    pub fn will_need(&self) {
        let _ = self.map.advise(memmap2::Advice::WillNeed);
    }
}

/// Document states in [`DocChecks`].
const UNCHECKED: u8 = 0;
const GOOD: u8 = 1;
const BAD: u8 = 2;

/// The documents of one mapped collection, each checked the first time it is read: its bytes
/// must match their CRC-32, be UTF-8 and form one well-formed node. Only then is its text
/// handed out.
pub(crate) struct DocChecks {
    file: Arc<MappedFile>,
    /// Where the (length, CRC-32) pairs of the documents start in the file.
    meta: usize,
    state: Box<[std::sync::atomic::AtomicU8]>,
}

impl std::fmt::Debug for DocChecks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DocChecks")
            .field("docs", &self.state.len())
            .finish()
    }
}

impl DocChecks {
    /// Checks for `n` documents whose (length, CRC-32) pairs are at byte `meta` of `file`.
    pub(crate) fn new(file: Arc<MappedFile>, meta: usize, n: usize) -> DocChecks {
        DocChecks {
            file,
            meta,
            state: (0..n)
                .map(|_| std::sync::atomic::AtomicU8::new(UNCHECKED))
                .collect(),
        }
    }

    /// The length and CRC-32 recorded for document `id`.
    fn meta(&self, id: usize) -> (usize, u32) {
        let at = self.meta + 8 * id;
        match self.file.bytes().get(at..at + 8) {
            Some(b) => (
                u32::from_le_bytes([b[0], b[1], b[2], b[3]]) as usize,
                u32::from_le_bytes([b[4], b[5], b[6], b[7]]),
            ),
            None => (0, 0),
        }
    }

    /// The text of document `id`, which starts at byte `start` of the file (callers derive
    /// `start` from the immutable document and chunk tables, so it is the same on every call
    /// for an `id`; the soundness of the fast path rests on that). The first read
    /// checks its CRC, that it is UTF-8, and `structure` (which must accept the bytes as one
    /// well-formed node); a document that fails is refused every time (`Err` with the offset
    /// and reason the first time, `Err` with an empty reason after).
    pub(crate) fn doc(
        &self,
        id: usize,
        start: usize,
        structure: impl FnOnce(&[u8]) -> Result<(), (usize, String)>,
    ) -> Result<&str, (usize, String)> {
        use std::sync::atomic::Ordering;
        let Some(state) = self.state.get(id) else {
            return Err((start, String::new()));
        };
        let (len, crc) = self.meta(id);
        let Some(bytes) = start
            .checked_add(len)
            .and_then(|end| self.file.bytes().get(start..end))
        else {
            state.store(BAD, Ordering::Release);
            return Err((start, "document runs past the end of the file".into()));
        };
        match state.load(Ordering::Acquire) {
            GOOD => {}
            BAD => return Err((start, String::new())),
            _ => {
                if crc32fast::hash(bytes) != crc {
                    state.store(BAD, Ordering::Release);
                    return Err((start, "document checksum mismatch".into()));
                }
                if let Err(e) = std::str::from_utf8(bytes) {
                    state.store(BAD, Ordering::Release);
                    return Err((start + e.valid_up_to(), "document is not UTF-8".into()));
                }
                if let Err((off, why)) = structure(bytes) {
                    state.store(BAD, Ordering::Release);
                    return Err((start + off, why));
                }
                state.store(GOOD, Ordering::Release);
            }
        }
        // SAFETY: the state is GOOD only after `from_utf8` accepted exactly these bytes: the
        // same `start` (see above) and the length read from the same immutable map; mapped
        // bytes never change (see `MappedFile::open`).
        Ok(unsafe { std::str::from_utf8_unchecked(bytes) })
    }
}

/// Text in a mapped file that was checked once, when made, to be exactly a given `&str`.
pub(crate) struct MappedStr {
    file: Arc<MappedFile>,
    start: usize,
    len: usize,
}

impl MappedStr {
    /// The bytes `start..start + expected.len()` of `file` as text, if they are exactly the
    /// bytes of `expected` (the text just written there); else the offset of the first byte
    /// that differs (or of the end of the file).
    pub(crate) fn new_equal(
        file: Arc<MappedFile>,
        start: usize,
        expected: &str,
    ) -> Result<MappedStr, usize> {
        let len = expected.len();
        let Some(bytes) = file.bytes().get(start..start + len) else {
            return Err(file.bytes().len());
        };
        if bytes != expected.as_bytes() {
            let at = bytes
                .iter()
                .zip(expected.as_bytes())
                .position(|(a, b)| a != b)
                .unwrap_or(0);
            return Err(start + at);
        }
        Ok(MappedStr { file, start, len })
    }

    /// The text.
    #[inline]
    pub(crate) fn as_str(&self) -> &str {
        let bytes = &self.file.bytes()[self.start..self.start + self.len];
        // SAFETY: `new_equal` found exactly these bytes (same map, same range) equal to the
        // bytes of a `&str`, so they are UTF-8; mapped bytes never change (see
        // `MappedFile::open_range`).
        unsafe { std::str::from_utf8_unchecked(bytes) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mapped_text_is_handed_out_only_when_it_equals_what_was_written() {
        let dir = std::env::temp_dir().join(format!("twinql-mapped-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let path = dir.join("f");
        // Past a page, so that the range's map starts at an offset memmap2 has to align.
        let mut bytes = vec![b'x'; 5000];
        bytes.extend_from_slice("héllo tape".as_bytes());
        std::fs::write(&path, &bytes).expect("write");
        let file = File::open(&path).expect("open");
        let map = MappedFile::open_range(&file, &path, 4990, bytes.len() - 4990).expect("map");
        assert_eq!(map.bytes(), &bytes[4990..]);
        let ok = MappedStr::new_equal(map.clone(), 10, "héllo tape").expect("equal");
        assert_eq!(ok.as_str(), "héllo tape");
        assert_eq!(
            MappedStr::new_equal(map.clone(), 10, "héllo tapE").err(),
            Some(10 + 10)
        );
        assert_eq!(MappedStr::new_equal(map.clone(), 9, "xx").err(), Some(10));
        // A range past the end of the map is refused, not read.
        assert_eq!(
            MappedStr::new_equal(map.clone(), 12, "héllo tape").err(),
            Some(map.bytes().len())
        );
        let _ = std::fs::remove_dir_all(&dir);
    }
}
