//! Store segments: a store and its indexes in one immutable file, opened by mapping it.
//!
//! The byte format is specified in `docs/store-format.md` at the repository root. In short:
//! a 64-byte header (magic, format version, file length, write sequence number), a section
//! table, and sections for the key dictionary, the chunk table, the chunks' bytes (key maps,
//! doubles and tapes), one document table per collection (chunk and tape position, identity
//! hash) and the path indexes (a directory and the postings of each path). All integers are
//! little-endian. Every small section carries a CRC-32 checked when the segment is opened;
//! each chunk and each path's postings carry their own, checked (with the structure of the
//! bytes) on first use, so opening a segment reads a few megabytes whatever its size.
//!
//! ```
//! use twinql_store::index::{IndexPolicy, StoreIndex};
//! use twinql_store::segment::{open_segment, write_segment_file, SegmentInfo};
//! use twinql_store::{LoadOptions, Store};
//!
//! let mut store = Store::new();
//! store.load_bytes("twins", br#"{"deviceId":"d1","tags":{"plant":"Redmond43"}}"#, &LoadOptions::default())?;
//! let index = StoreIndex::build(&store, &IndexPolicy::default());
//! let dir = std::env::temp_dir().join(format!("twinql-seg-doc-{}", std::process::id()));
//! std::fs::create_dir_all(&dir)?;
//! let path = dir.join("segment.tqs");
//! write_segment_file(&store, Some(&index), SegmentInfo::default(), &path)?;
//!
//! let seg = open_segment(&path)?;
//! assert_eq!(seg.store.devices().len(), 1);
//! assert_eq!(seg.store.devices().doc(0).to_json_string(), r#"{"deviceId":"d1","tags":{"plant":"Redmond43"}}"#);
//! # std::fs::remove_dir_all(&dir)?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::collections::HashMap;

use rayon::prelude::*;
use std::io::{BufWriter, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use crate::codec::{
    Dec, Enc, FormatError, decode_path_index, decode_policy, encode_path_index, encode_policy,
};
use crate::dict::KeyDict;
use crate::index::{CollectionIndex, LazyPath, PathIndex, Postings, StoreIndex};
use crate::mapped::{DocChecks, MappedFile};
use crate::store::{CollData, CollectionKind, DocLoc, LazyChunk, MappedHashes, Store};
use crate::tape::{Chunk, check_tape};

/// The first eight bytes of a segment.
pub const MAGIC: &[u8; 8] = b"TWQLSEG\0";
/// The format version this build writes and reads.
pub const VERSION: u32 = 1;
/// Bytes of the header.
pub const HEADER_LEN: usize = 64;
/// Bytes of one section table entry.
const ENTRY_LEN: usize = 32;

/// Section kinds.
const SEC_META: u32 = 1;
const SEC_CHUNKS: u32 = 2;
const SEC_CHUNK_DATA: u32 = 3;
const SEC_DOCS: [u32; 3] = [4, 5, 6];
const SEC_INDEX: u32 = 7;
const SEC_INDEX_DATA: u32 = 8;
/// Section flag: the section's CRC field is unused; its items carry their own.
const FLAG_ITEMS_CHECKED: u32 = 1;
/// Bytes of one chunk table entry.
const CHUNK_ENTRY: usize = 32;
/// Chunk flag: no string of the chunk holds a byte JSON output escapes.
const CHUNK_PLAIN: u32 = 1;

/// What a segment records besides its documents.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SegmentInfo {
    /// The write sequence number of the last write folded into the segment.
    pub seq: u64,
    /// The database generation that wrote it.
    pub generation: u64,
}

/// A segment that could not be read: the file, the byte offset and what is wrong.
#[derive(Debug, thiserror::Error)]
pub enum SegmentError {
    /// An I/O error.
    #[error("segment {}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
    /// Bytes that are not a segment this build can read.
    #[error("segment {}: at byte {offset}: {message}", path.display())]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// Where the problem is.
        offset: u64,
        /// What it is.
        message: String,
    },
}

/// An opened segment.
pub struct Segment {
    /// The documents (chunks are checked on first use).
    pub store: Store,
    /// The path indexes, if the segment has them (postings are decoded on first use).
    pub index: Option<StoreIndex>,
    /// What the segment records.
    pub info: SegmentInfo,
    /// The mapped file.
    pub file: Arc<MappedFile>,
}

impl std::fmt::Debug for Segment {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Segment")
            .field("store", &self.store)
            .field("info", &self.info)
            .field("file", &self.file)
            .finish()
    }
}

// ---------------------------------------------------------------------------------------
// Writing

/// Counts bytes and their CRC as they pass to the file.
struct Out<W: Write> {
    w: W,
    pos: u64,
    crc: crc32fast::Hasher,
    /// Whether the section being written has a CRC of its own (sections whose items carry
    /// their own CRCs do not: their bytes are not hashed twice).
    hashing: bool,
}

impl<W: Write> Out<W> {
    fn put(&mut self, b: &[u8]) -> std::io::Result<()> {
        self.w.write_all(b)?;
        if self.hashing {
            self.crc.update(b);
        }
        self.pos += b.len() as u64;
        Ok(())
    }

    fn start(&mut self) -> (u64, crc32fast::Hasher) {
        (self.pos, std::mem::take(&mut self.crc))
    }
}

struct Entry {
    kind: u32,
    flags: u32,
    offset: u64,
    len: u64,
    crc: u32,
}

/// Writes `store` and `index` as a segment to `path` (created or truncated), and syncs it.
/// Prefer [`write_segment_file`], which writes under a temporary name and renames.
pub fn write_segment(
    store: &Store,
    index: Option<&StoreIndex>,
    info: SegmentInfo,
    path: &Path,
) -> Result<(), SegmentError> {
    write_segment_inner(store, info, path, || Ok(index)).map(drop)
}

/// Writes the documents, then takes the indexes from `get_index` (the documents' bytes are
/// synced while it runs, so an index built meanwhile overlaps the write), then writes them.
fn write_segment_inner<R: std::borrow::Borrow<StoreIndex>>(
    store: &Store,
    info: SegmentInfo,
    path: &Path,
    get_index: impl FnOnce() -> Result<Option<R>, SegmentError>,
) -> Result<Option<R>, SegmentError> {
    refuse_mapped(store, path)?;
    let mut w = SegmentWriter::create_at(path, path.to_path_buf(), info)?;
    for i in 0..store.chunks.len() as u32 {
        w.add_chunk(store.chunk(i))
            .map_err(|source| SegmentError::Io {
                path: path.to_path_buf(),
                source,
            })?;
    }
    w.finish_inner(store, get_index)
}

fn refuse_mapped(store: &Store, path: &Path) -> Result<(), SegmentError> {
    if store.colls.iter().any(|c| c.checks.is_some()) {
        return Err(SegmentError::Corrupt {
            path: path.to_path_buf(),
            offset: 0,
            message: "a segment is written from a loaded store, not a mapped one".into(),
        });
    }
    Ok(())
}

/// A segment file being written while its store is loaded: each chunk goes to the file as
/// soon as the load adds it (its bytes are final then, and still in cache), and
/// [`SegmentWriter::finish_building`] writes the rest once the load is done.
///
/// The file is written under a temporary name (the path plus `.tmp`) and renamed into place
/// when finished; a writer dropped unfinished removes it. Pass the writer to
/// [`Store::load_path_writing`] for each input, in the order the store loads them.
pub struct SegmentWriter {
    out: Out<BufWriter<std::fs::File>>,
    /// The file being written, and where it goes when finished.
    tmp: PathBuf,
    path: PathBuf,
    info: SegmentInfo,
    /// The chunk table's entries, one per chunk written.
    chunks: Vec<[u8; CHUNK_ENTRY]>,
    /// The file opened for reading, once chunks are read back from it.
    reader: Option<std::fs::File>,
    /// Where the chunk data section starts.
    data_start: u64,
    /// An I/O error left the file in an unknown state.
    failed: bool,
    finished: bool,
}

impl std::fmt::Debug for SegmentWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SegmentWriter")
            .field("path", &self.path)
            .field("chunks", &self.chunks.len())
            .field("bytes", &self.out.pos)
            .finish()
    }
}

impl SegmentWriter {
    /// Starts a segment that will be `path` (written as `path` + `.tmp` until finished).
    pub fn create(path: &Path, info: SegmentInfo) -> Result<SegmentWriter, SegmentError> {
        SegmentWriter::create_at(&tmp_path(path), path.to_path_buf(), info)
    }

    fn create_at(
        tmp: &Path,
        path: PathBuf,
        info: SegmentInfo,
    ) -> Result<SegmentWriter, SegmentError> {
        let io = |source| SegmentError::Io {
            path: tmp.to_path_buf(),
            source,
        };
        let file = std::fs::File::create(tmp).map_err(io)?;
        let mut out = Out {
            w: BufWriter::with_capacity(1 << 20, file),
            pos: 0,
            crc: crc32fast::Hasher::new(),
            hashing: true,
        };
        out.put(&[0u8; HEADER_LEN]).map_err(io)?;
        // The chunk data section comes first, so chunks can be written as they are loaded;
        // its items carry their own CRCs.
        out.start();
        out.hashing = false;
        Ok(SegmentWriter {
            data_start: out.pos,
            out,
            tmp: tmp.to_path_buf(),
            path,
            info,
            chunks: Vec::new(),
            reader: None,
            failed: false,
            finished: false,
        })
    }

    /// The file being written (the final path plus `.tmp`).
    pub fn tmp_path(&self) -> &Path {
        &self.tmp
    }

    /// Chunks written so far.
    pub fn chunks(&self) -> usize {
        self.chunks.len()
    }

    /// Appends one chunk record: key map, doubles, tape.
    pub(crate) fn add_chunk(&mut self, c: &Chunk) -> std::io::Result<()> {
        if self.failed {
            return Err(std::io::Error::other(
                "an earlier write to this segment failed",
            ));
        }
        let at = self.out.pos;
        let mut crc = crc32fast::Hasher::new();
        let result = chunk_head(c, &mut |b| {
            crc.update(b);
            self.out.put(b)
        })
        .and_then(|()| self.out.put(c.tape.as_bytes()));
        if let Err(e) = result {
            self.failed = true;
            return Err(e);
        }
        let mut b = [0u8; CHUNK_ENTRY];
        b[0..8].copy_from_slice(&at.to_le_bytes());
        b[8..16].copy_from_slice(&(c.tape.len() as u64).to_le_bytes());
        b[16..20].copy_from_slice(&(c.floats.len() as u32).to_le_bytes());
        b[20..24].copy_from_slice(&(c.keys.len() as u32).to_le_bytes());
        b[24..28].copy_from_slice(&crc.finalize().to_le_bytes());
        b[28..32].copy_from_slice(&(if c.plain { CHUNK_PLAIN } else { 0 }).to_le_bytes());
        self.chunks.push(b);
        Ok(())
    }

    /// Maps the tape of chunk `i` from the file, once the buffered bytes are flushed to it;
    /// returns the map and the file offset where it starts.
    pub(crate) fn map_tape(&mut self, i: usize) -> std::io::Result<(Arc<MappedFile>, u64)> {
        if self.failed {
            return Err(std::io::Error::other(
                "an earlier write to this segment failed",
            ));
        }
        let Some(e) = self.chunks.get(i) else {
            return Err(std::io::Error::other("no such chunk in the segment"));
        };
        let head = 4 * u64::from(u32_at(e, 20)) + 8 * u64::from(u32_at(e, 16));
        let start = u64_at(e, 0) + head;
        let len = usize::try_from(u64_at(e, 8)).map_err(std::io::Error::other)?;
        if let Err(e) = self.out.w.flush() {
            self.failed = true;
            return Err(e);
        }
        let reader = match &mut self.reader {
            Some(r) => r,
            slot @ None => slot.insert(std::fs::File::open(&self.tmp)?),
        };
        Ok((
            MappedFile::open_range(reader, &self.tmp, start, len)?,
            start,
        ))
    }

    /// Forgets the chunks after the first `n` (a load that failed is undone in the store, and
    /// here): the file is cut back to where chunk `n` started.
    pub(crate) fn truncate_chunks(&mut self, n: usize) {
        let Some(entry) = self.chunks.get(n) else {
            return;
        };
        let mut at = [0u8; 8];
        at.copy_from_slice(&entry[0..8]);
        let at = u64::from_le_bytes(at);
        let cut = self.out.w.flush().and_then(|()| {
            let f = self.out.w.get_mut();
            f.set_len(at)?;
            f.seek(SeekFrom::Start(at)).map(drop)
        });
        if cut.is_err() {
            self.failed = true;
        }
        self.out.pos = at;
        self.chunks.truncate(n);
    }

    /// Finishes the segment for `store` (whose chunks must be exactly those written), with
    /// indexes from `build`, run on another thread while the rest of the documents' bytes
    /// are written and synced; renames the file into place and returns the indexes.
    pub fn finish_building(
        self,
        store: &Store,
        build: impl FnOnce() -> Option<StoreIndex> + Send,
    ) -> Result<Option<StoreIndex>, SegmentError> {
        let path = self.path.clone();
        let index = std::thread::scope(|s| {
            let worker = s.spawn(build);
            self.finish_inner(store, || {
                worker.join().map_err(|_| SegmentError::Corrupt {
                    path: path.clone(),
                    offset: 0,
                    message: "building the indexes failed".into(),
                })
            })
        })?;
        Ok(index)
    }

    /// Writes everything after the chunk data, syncs, and renames the file into place (when
    /// it was written under a temporary name).
    fn finish_inner<R: std::borrow::Borrow<StoreIndex>>(
        mut self,
        store: &Store,
        get_index: impl FnOnce() -> Result<Option<R>, SegmentError>,
    ) -> Result<Option<R>, SegmentError> {
        let tmp = self.tmp.clone();
        let io = |source| SegmentError::Io {
            path: tmp.clone(),
            source,
        };
        refuse_mapped(store, &self.path)?;
        if self.failed {
            return Err(io(std::io::Error::other(
                "an earlier write to this segment failed",
            )));
        }
        if self.chunks.len() != store.chunks.len() {
            return Err(SegmentError::Corrupt {
                path: tmp.clone(),
                offset: self.out.pos,
                message: format!(
                    "{} chunks written for a store of {}",
                    self.chunks.len(),
                    store.chunks.len()
                ),
            });
        }
        let held = self.write_rest(store, get_index, &io)?;
        self.finished = true;
        if self.tmp != self.path {
            std::fs::rename(&self.tmp, &self.path).map_err(|source| SegmentError::Io {
                path: self.path.clone(),
                source,
            })?;
            sync_dir(&self.path);
        }
        Ok(held)
    }

    fn write_rest<R: std::borrow::Borrow<StoreIndex>>(
        &mut self,
        store: &Store,
        get_index: impl FnOnce() -> Result<Option<R>, SegmentError>,
        io: &dyn Fn(std::io::Error) -> SegmentError,
    ) -> Result<Option<R>, SegmentError> {
        let out = &mut self.out;
        let mut entries = vec![Entry {
            kind: SEC_CHUNK_DATA,
            flags: FLAG_ITEMS_CHECKED,
            offset: self.data_start,
            len: out.pos - self.data_start,
            crc: 0,
        }];
        out.hashing = true;

        // Key dictionary and store facts.
        section(out, &mut entries, SEC_META, 0, |out| {
            let mut b = Vec::new();
            let mut e = Enc { out: &mut b };
            e.u64(store.seed);
            e.u64(store.chunks.len() as u64);
            e.u64(store.dict.len() as u64);
            for id in 0..store.dict.len() as u32 {
                e.str(store.dict.name(id));
            }
            out.put(&b)
        })
        .map_err(io)?;

        // Chunk table: where each chunk's bytes are in the chunk data.
        let chunks = &self.chunks;
        section(out, &mut entries, SEC_CHUNKS, 0, |out| {
            for b in chunks {
                out.put(b)?;
            }
            Ok(())
        })
        .map_err(io)?;

        // Document tables.
        for kind in CollectionKind::ALL {
            let data = &store.colls[kind as usize];
            section(out, &mut entries, SEC_DOCS[kind as usize], 0, |out| {
                out.put(&(data.docs.len() as u64).to_le_bytes())?;
                let mut b = Vec::with_capacity(8 * data.docs.len());
                for l in &data.docs {
                    b.extend_from_slice(&l.chunk.to_le_bytes());
                    b.extend_from_slice(&l.pos.to_le_bytes());
                }
                out.put(&b)?;
                b.clear();
                for h in data.hashes() {
                    b.extend_from_slice(&h.to_le_bytes());
                }
                out.put(&b)?;
                b.clear();
                for l in &data.docs {
                    let tape = store.chunk(l.chunk).tape.as_bytes();
                    let pos = l.pos as usize;
                    let end = crate::tape::skip(tape, pos).min(tape.len());
                    let doc = tape.get(pos..end).unwrap_or_default();
                    b.extend_from_slice(&(doc.len() as u32).to_le_bytes());
                    b.extend_from_slice(&crc32fast::hash(doc).to_le_bytes());
                }
                out.put(&b)
            })
            .map_err(io)?;
        }

        // The documents are written: sync them while the indexes are finished elsewhere.
        out.w.flush().map_err(io)?;
        out.w.get_ref().sync_data().map_err(io)?;
        let held = get_index()?;
        // Indexes: the directory, then each path's postings.
        if let Some(index) = held.as_ref().map(|r| r.borrow()) {
            let mut blobs: Vec<Vec<u8>> = Vec::new();
            let mut dir = Vec::new();
            {
                let mut e = Enc { out: &mut dir };
                match &index.policy {
                    Some(p) => {
                        e.u8(1);
                        encode_policy(p, &mut e);
                    }
                    None => e.u8(0),
                }
            }
            // Offsets are relative to the start of the index data section.
            let mut at = 0u64;
            for kind in CollectionKind::ALL {
                let coll = &index.colls[kind as usize];
                let mut paths: Vec<(&Box<[u32]>, &LazyPath)> = coll.paths.iter().collect();
                paths.sort_by(|a, b| a.0.cmp(b.0));
                let mut e = Enc { out: &mut dir };
                e.u64(paths.len() as u64);
                // Each path's postings are encoded on all cores.
                let encoded: Vec<Vec<u8>> = paths
                    .par_iter()
                    .map(|(_, lazy)| {
                        let mut blob = Vec::new();
                        encode_path_index(lazy.get(), &mut Enc { out: &mut blob });
                        blob
                    })
                    .collect();
                for ((keys, lazy), blob) in paths.into_iter().zip(encoded) {
                    let mut e = Enc { out: &mut dir };
                    e.u32_slice(keys);
                    e.u64(at);
                    e.u64(blob.len() as u64);
                    e.u32(crc32fast::hash(&blob));
                    e.u64(lazy.entries as u64);
                    e.u64(lazy.bytes as u64);
                    at += blob.len() as u64;
                    blobs.push(blob);
                }
            }
            section(out, &mut entries, SEC_INDEX, 0, |out| out.put(&dir)).map_err(io)?;
            section(
                out,
                &mut entries,
                SEC_INDEX_DATA,
                FLAG_ITEMS_CHECKED,
                |out| {
                    for b in &blobs {
                        out.put(b)?;
                    }
                    Ok(())
                },
            )
            .map_err(io)?;
        }

        // Section table and its CRC, then the header.
        let table_offset = out.pos;
        let mut t = Vec::with_capacity(entries.len() * ENTRY_LEN + 4);
        for e in &entries {
            t.extend_from_slice(&e.kind.to_le_bytes());
            t.extend_from_slice(&e.flags.to_le_bytes());
            t.extend_from_slice(&e.offset.to_le_bytes());
            t.extend_from_slice(&e.len.to_le_bytes());
            t.extend_from_slice(&e.crc.to_le_bytes());
            t.extend_from_slice(&0u32.to_le_bytes());
        }
        let tcrc = crc32fast::hash(&t);
        t.extend_from_slice(&tcrc.to_le_bytes());
        out.put(&t).map_err(io)?;
        let file_len = out.pos;
        out.w.flush().map_err(io)?;
        let w = out.w.get_mut();
        let mut h = [0u8; HEADER_LEN];
        h[0..8].copy_from_slice(MAGIC);
        h[8..12].copy_from_slice(&VERSION.to_le_bytes());
        h[16..24].copy_from_slice(&file_len.to_le_bytes());
        h[24..28].copy_from_slice(&(entries.len() as u32).to_le_bytes());
        h[32..40].copy_from_slice(&table_offset.to_le_bytes());
        h[40..48].copy_from_slice(&self.info.seq.to_le_bytes());
        h[48..56].copy_from_slice(&self.info.generation.to_le_bytes());
        let hcrc = crc32fast::hash(&h[..56]);
        h[56..60].copy_from_slice(&hcrc.to_le_bytes());
        w.seek(SeekFrom::Start(0)).map_err(io)?;
        w.write_all(&h).map_err(io)?;
        w.sync_all().map_err(io)?;
        Ok(held)
    }
}

impl Drop for SegmentWriter {
    fn drop(&mut self) {
        if !self.finished && self.tmp != self.path {
            let _ = std::fs::remove_file(&self.tmp);
        }
    }
}

/// Writes one section through `body`, recording its table entry.
fn section<W: Write>(
    out: &mut Out<W>,
    entries: &mut Vec<Entry>,
    kind: u32,
    flags: u32,
    body: impl FnOnce(&mut Out<W>) -> std::io::Result<()>,
) -> std::io::Result<()> {
    let (offset, _) = out.start();
    out.hashing = flags & FLAG_ITEMS_CHECKED == 0;
    body(out)?;
    out.hashing = true;
    let (end, crc) = out.start();
    entries.push(Entry {
        kind,
        flags,
        offset,
        len: end - offset,
        crc: if flags & FLAG_ITEMS_CHECKED != 0 {
            0
        } else {
            crc.finalize()
        },
    });
    Ok(())
}

/// The head of one chunk record, which its CRC covers: key map and doubles (the tape after
/// them is covered by the CRCs of its documents).
fn chunk_head(c: &Chunk, put: &mut dyn FnMut(&[u8]) -> std::io::Result<()>) -> std::io::Result<()> {
    let mut b = Vec::with_capacity(4 * c.keys.len() + 8 * c.floats.len());
    for k in c.keys.iter() {
        b.extend_from_slice(&k.to_le_bytes());
    }
    for f in c.floats.iter() {
        b.extend_from_slice(&f.to_bits().to_le_bytes());
    }
    put(&b)
}

/// Writes a segment to `path` safely: to `path` + `.tmp`, synced, then renamed over `path`,
/// and the directory synced, so `path` is always either the old segment or the whole new one.
pub fn write_segment_file(
    store: &Store,
    index: Option<&StoreIndex>,
    info: SegmentInfo,
    path: &Path,
) -> Result<(), SegmentError> {
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    write_segment(store, index, info, &tmp)?;
    std::fs::rename(&tmp, path).map_err(|source| SegmentError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    sync_dir(path);
    Ok(())
}

fn tmp_path(path: &Path) -> PathBuf {
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    PathBuf::from(tmp)
}

/// Syncs the directory holding `path` (so a rename in it is durable); errors are ignored
/// where directories cannot be synced.
pub fn sync_dir(path: &Path) {
    if let Some(dir) = path.parent() {
        let dir = if dir.as_os_str().is_empty() {
            Path::new(".")
        } else {
            dir
        };
        if let Ok(d) = std::fs::File::open(dir) {
            let _ = d.sync_all();
        }
    }
}

// ---------------------------------------------------------------------------------------
// Reading

/// Where a chunk's bytes are in a mapped segment; checked on first use.
pub(crate) struct ChunkSrc {
    file: Arc<MappedFile>,
    offset: usize,
    floats: usize,
    keys: usize,
    crc: u32,
    /// The chunk table marks the chunk plain (checked with each document).
    plain: bool,
}

impl ChunkSrc {
    /// Where the chunk's tape starts in the file.
    pub(crate) fn tape_start(&self) -> usize {
        self.offset + 4 * self.keys + 8 * self.floats
    }

    /// The segment file's path.
    pub(crate) fn path(&self) -> &Path {
        self.file.path()
    }

    /// Checks and decodes the head of chunk `i` of `store`: CRC and key ids. (Its documents
    /// are checked one by one when first read.)
    pub(crate) fn load(&self, store: &Store, i: u32) -> Result<Chunk, String> {
        let path = self.file.path().display();
        let at =
            |off: usize, what: &str| format!("segment {path}: chunk {i} at byte {off}: {what}");
        let floats_end = self.tape_start();
        let Some(bytes) = self.file.bytes().get(self.offset..floats_end) else {
            return Err(at(self.offset, "chunk runs past the end of the file"));
        };
        if crc32fast::hash(bytes) != self.crc {
            return Err(at(self.offset, "checksum mismatch"));
        }
        let mut keys = Vec::with_capacity(self.keys);
        for c in bytes[..4 * self.keys].chunks_exact(4) {
            let k = u32::from_le_bytes([c[0], c[1], c[2], c[3]]);
            if k as usize >= store.dict.len() {
                return Err(at(self.offset, &format!("member name id {k} out of range")));
            }
            keys.push(k);
        }
        let floats: Vec<f64> = bytes[4 * self.keys..]
            .chunks_exact(8)
            .map(|c| {
                f64::from_bits(u64::from_le_bytes([
                    c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7],
                ]))
            })
            .collect();
        Ok(Chunk {
            tape: Default::default(),
            floats: floats.into_boxed_slice(),
            keys: keys.into_boxed_slice(),
            plain: self.plain,
        })
    }
}

/// Where a path's postings are in a mapped segment; decoded and checked on first use.
pub(crate) struct PathSrc {
    file: Arc<MappedFile>,
    offset: usize,
    len: usize,
    crc: u32,
    docs: u32,
    problems: Arc<Mutex<Vec<String>>>,
}

impl std::fmt::Debug for PathSrc {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PathSrc")
            .field("offset", &self.offset)
            .field("len", &self.len)
            .finish()
    }
}

impl PathSrc {
    pub(crate) fn load(&self) -> PathIndex {
        match self.decode() {
            Ok(p) => p,
            Err(e) => {
                let msg = format!("segment {}: {e}", self.file.path().display());
                if let Ok(mut p) = self.problems.lock()
                    && p.len() < 100
                    && !p.contains(&msg)
                {
                    p.push(msg);
                }
                PathIndex::default()
            }
        }
    }

    fn decode(&self) -> Result<PathIndex, FormatError> {
        let err = |offset: usize, message: &str| FormatError {
            offset: offset as u64,
            message: message.into(),
        };
        let bytes = self
            .offset
            .checked_add(self.len)
            .and_then(|end| self.file.bytes().get(self.offset..end))
            .ok_or_else(|| err(self.offset, "index postings run past the end of the file"))?;
        if crc32fast::hash(bytes) != self.crc {
            return Err(err(self.offset, "index postings checksum mismatch"));
        }
        let mut d = Dec::new(bytes, self.offset as u64);
        let p = decode_path_index(&mut d)?;
        d.finish("index postings")?;
        // Every document id must exist: queries read the documents the postings name.
        let n = self.docs;
        let bad = |b: &roaring::RoaringBitmap| b.max().is_some_and(|m| m >= n);
        let mut out_of_range = bad(&p.defined) || bad(&p.trues) || p.kinds.iter().any(bad);
        for (bitmaps, ids) in [postings_parts(&p.strings), postings_parts(&p.numbers)] {
            out_of_range |= bitmaps.iter().any(|b| bad(b)) || ids.iter().any(|&id| id >= n);
        }
        if out_of_range {
            return Err(err(
                self.offset,
                "index postings name a document that does not exist",
            ));
        }
        Ok(p)
    }
}

/// The bitmaps and the sorted ids of a posting list.
fn postings_parts<V>(p: &Postings<V>) -> (Vec<&roaring::RoaringBitmap>, &[u32]) {
    match p {
        Postings::Dict(d) => (d.iter().map(|(_, b)| b).collect(), &[]),
        Postings::Sorted { ids, blocks } => (blocks.iter().collect(), ids),
    }
}

#[inline]
fn u32_at(b: &[u8], at: usize) -> u32 {
    b.get(at..at + 4)
        .map_or(0, |c| u32::from_le_bytes([c[0], c[1], c[2], c[3]]))
}

#[inline]
fn u64_at(b: &[u8], at: usize) -> u64 {
    b.get(at..at + 8).map_or(0, |c| {
        u64::from_le_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]])
    })
}

/// Opens the segment at `path`: maps it and checks the header, the section table and every
/// small section. Chunks and postings are checked on first use (see [`Store::problems`]);
/// [`Store::verify`] checks them all at once.
pub fn open_segment(path: &Path) -> Result<Segment, SegmentError> {
    let file = MappedFile::open(path).map_err(|source| SegmentError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    read_segment(file)
}

/// Reads a mapped segment (see [`open_segment`]).
pub fn read_segment(file: Arc<MappedFile>) -> Result<Segment, SegmentError> {
    let path = file.path().to_path_buf();
    let corrupt = |offset: u64, message: String| SegmentError::Corrupt {
        path: path.clone(),
        offset,
        message,
    };
    let b = file.bytes();
    if b.len() < HEADER_LEN {
        return Err(corrupt(
            b.len() as u64,
            format!(
                "file too short for a segment header ({} of {HEADER_LEN} bytes)",
                b.len()
            ),
        ));
    }
    if &b[0..8] != MAGIC {
        return Err(corrupt(0, "not a twinql segment (bad magic)".into()));
    }
    if crc32fast::hash(&b[..56]) != u32_at(b, 56) {
        return Err(corrupt(56, "header checksum mismatch".into()));
    }
    let version = u32_at(b, 8);
    if version != VERSION {
        return Err(corrupt(
            8,
            format!("segment format version {version}; this build reads version {VERSION}"),
        ));
    }
    let file_len = u64_at(b, 16);
    if file_len != b.len() as u64 {
        return Err(corrupt(
            16,
            format!(
                "the header says {file_len} bytes but the file has {} (truncated?)",
                b.len()
            ),
        ));
    }
    let count = u32_at(b, 24) as usize;
    let table_offset = u64_at(b, 32);
    let info = SegmentInfo {
        seq: u64_at(b, 40),
        generation: u64_at(b, 48),
    };
    let table = usize::try_from(table_offset)
        .ok()
        .and_then(|t| b.get(t..t.checked_add(count.checked_mul(ENTRY_LEN)?.checked_add(4)?)?))
        .ok_or_else(|| corrupt(32, "section table outside the file".into()))?;
    let (entries, tcrc) = table.split_at(count * ENTRY_LEN);
    if crc32fast::hash(entries) != u32_at(tcrc, 0) {
        return Err(corrupt(
            table_offset,
            "section table checksum mismatch".into(),
        ));
    }
    let mut sections: HashMap<u32, (usize, usize)> = HashMap::new();
    for (i, e) in entries.chunks_exact(ENTRY_LEN).enumerate() {
        let at = table_offset + (i * ENTRY_LEN) as u64;
        let (kind, flags, off, len, crc) = (
            u32_at(e, 0),
            u32_at(e, 4),
            u64_at(e, 8),
            u64_at(e, 16),
            u32_at(e, 24),
        );
        let range = usize::try_from(off)
            .ok()
            .zip(usize::try_from(len).ok())
            .and_then(|(o, l)| Some((o, o.checked_add(l)?)))
            .filter(|&(o, end)| o >= HEADER_LEN && end as u64 <= table_offset)
            .ok_or_else(|| corrupt(at, format!("section {kind} outside the file")))?;
        if flags & FLAG_ITEMS_CHECKED == 0 && crc32fast::hash(&b[range.0..range.1]) != crc {
            return Err(corrupt(off, format!("section {kind} checksum mismatch")));
        }
        if sections.insert(kind, range).is_some() {
            return Err(corrupt(at, format!("section {kind} appears twice")));
        }
    }
    let section = |kind: u32, name: &str| {
        sections
            .get(&kind)
            .copied()
            .ok_or_else(|| corrupt(table_offset, format!("no {name} section")))
    };
    let fmt = |e: FormatError| corrupt(e.offset, e.message);

    // Key dictionary.
    let (mo, me) = section(SEC_META, "key dictionary")?;
    let mut d = Dec::new(&b[mo..me], mo as u64);
    let seed = d.u64("store seed").map_err(fmt)?;
    let nchunks = d.u64("chunk count").map_err(fmt)?;
    let nchunks = usize::try_from(nchunks)
        .ok()
        .filter(|&n| n <= b.len() / CHUNK_ENTRY)
        .ok_or_else(|| {
            corrupt(
                mo as u64 + 8,
                format!("{nchunks} chunks cannot fit in the file"),
            )
        })?;
    let nkeys = d.count(8, "key count").map_err(fmt)?;
    let mut dict = KeyDict::default();
    for i in 0..nkeys {
        let at = d.offset();
        let name = d.str("member name").map_err(fmt)?;
        if dict.intern(name) != i as u32 {
            return Err(corrupt(at, format!("member name {name:?} appears twice")));
        }
    }
    d.finish("key dictionary").map_err(fmt)?;
    if nkeys < 4
        || ["deviceId", "moduleId", "jobId", "jobs"]
            .iter()
            .enumerate()
            .any(|(i, n)| dict.name(i as u32) != *n)
    {
        return Err(corrupt(
            mo as u64,
            "the key dictionary does not start with the identity members".into(),
        ));
    }
    let mut store = Store::with_seed(dict, seed);

    // Chunk table.
    let (co, ce) = section(SEC_CHUNKS, "chunk table")?;
    let (dato, date) = section(SEC_CHUNK_DATA, "chunk data")?;
    if ce - co != nchunks.saturating_mul(CHUNK_ENTRY) {
        return Err(corrupt(
            co as u64,
            format!("chunk table has {} bytes for {nchunks} chunks", ce - co),
        ));
    }
    store.chunks.reserve(nchunks);
    for (i, e) in b[co..ce].chunks_exact(CHUNK_ENTRY).enumerate() {
        let at = (co + i * CHUNK_ENTRY) as u64;
        let offset = u64_at(e, 0);
        let tape_len = u64_at(e, 8);
        let floats = u32_at(e, 16) as u64;
        let keys = u32_at(e, 20) as u64;
        let flags = u32_at(e, 28);
        if flags & !CHUNK_PLAIN != 0 {
            return Err(corrupt(
                at + 28,
                format!("chunk {i} has unknown flags {flags:#x}"),
            ));
        }
        let total = tape_len
            .checked_add(8 * floats)
            .and_then(|t| t.checked_add(4 * keys))
            .and_then(|t| t.checked_add(offset));
        match total {
            Some(end)
                if offset >= dato as u64 && end <= date as u64 && tape_len < u32::MAX as u64 => {}
            _ => {
                return Err(corrupt(
                    at,
                    format!("chunk {i} outside the chunk data section"),
                ));
            }
        }
        store.chunks.push(LazyChunk {
            cell: std::sync::OnceLock::new(),
            src: Some(ChunkSrc {
                file: file.clone(),
                offset: offset as usize,
                floats: floats as usize,
                keys: keys as usize,
                crc: u32_at(e, 24),
                plain: flags & CHUNK_PLAIN != 0,
            }),
        });
    }

    // Document tables: sorted by (chunk, position), so a chunk finds its documents when it
    // is checked.
    for kind in CollectionKind::ALL {
        let (o, e) = section(SEC_DOCS[kind as usize], "document table")?;
        let s = &b[o..e];
        let n = u64_at(s, 0);
        if s.len() < 8 || Some((s.len() - 8) as u64) != n.checked_mul(20) {
            return Err(corrupt(
                o as u64,
                format!(
                    "{kind} document table has {} bytes for {n} documents",
                    s.len()
                ),
            ));
        }
        let n = n as usize;
        if n >= u32::MAX as usize {
            return Err(corrupt(o as u64, "too many documents".into()));
        }
        let mut docs = Vec::with_capacity(n);
        let mut prev = (0u32, 0u32);
        for (i, c) in s[8..8 + 8 * n].chunks_exact(8).enumerate() {
            let loc = (u32_at(c, 0), u32_at(c, 4));
            if loc.0 as usize >= nchunks || (i > 0 && loc <= prev) {
                return Err(corrupt(
                    (o + 8 + 8 * i) as u64,
                    format!(
                        "{kind} document {i}: chunk {} position {} out of order or range",
                        loc.0, loc.1
                    ),
                ));
            }
            prev = loc;
            docs.push(DocLoc {
                chunk: loc.0,
                pos: loc.1,
            });
        }
        store.colls[kind as usize] = CollData {
            docs,
            index: std::sync::OnceLock::new(),
            hashes: Some(MappedHashes {
                file: file.clone(),
                start: o + 8 + 8 * n,
            }),
            checks: Some(DocChecks::new(file.clone(), o + 8 + 12 * n, n)),
        };
    }

    // Indexes.
    let index = match sections.get(&SEC_INDEX).copied() {
        None => None,
        Some((io, ie)) => {
            let (xo, xe) = section(SEC_INDEX_DATA, "index data")?;
            let mut d = Dec::new(&b[io..ie], io as u64);
            let policy = match d.u8("policy flag").map_err(fmt)? {
                0 => None,
                _ => Some(decode_policy(&mut d).map_err(fmt)?),
            };
            let problems = store.problems.clone();
            let mut colls: [CollectionIndex; 3] = Default::default();
            for kind in CollectionKind::ALL {
                let docs = store.colls[kind as usize].docs.len() as u32;
                let npaths = d.count(8, "path count").map_err(fmt)?;
                let mut paths = HashMap::with_capacity(npaths);
                for _ in 0..npaths {
                    let at = d.offset();
                    let keys = d.u32_vec("path keys").map_err(fmt)?;
                    if keys.is_empty() || keys.iter().any(|&k| k as usize >= store.dict.len()) {
                        return Err(corrupt(at, "index path names an unknown member".into()));
                    }
                    let off = d.u64("postings offset").map_err(fmt)?;
                    let len = d.u64("postings length").map_err(fmt)?;
                    let crc = d.u32("postings checksum").map_err(fmt)?;
                    let entries = d.u64("postings entries").map_err(fmt)?;
                    let bytes = d.u64("postings bytes").map_err(fmt)?;
                    if off
                        .checked_add(len)
                        .is_none_or(|end| end > (xe - xo) as u64)
                    {
                        return Err(corrupt(
                            at,
                            "index postings outside the index data section".into(),
                        ));
                    }
                    let lazy = LazyPath {
                        cell: std::sync::OnceLock::new(),
                        src: Some(PathSrc {
                            file: file.clone(),
                            offset: xo + off as usize,
                            len: len as usize,
                            crc,
                            docs,
                            problems: problems.clone(),
                        }),
                        entries: entries as usize,
                        bytes: bytes as usize,
                    };
                    if paths.insert(keys.into_boxed_slice(), lazy).is_some() {
                        return Err(corrupt(at, "index path appears twice".into()));
                    }
                }
                let mut all = roaring::RoaringBitmap::new();
                all.insert_range(0..docs);
                colls[kind as usize] = CollectionIndex { paths, all };
            }
            d.finish("index directory").map_err(fmt)?;
            Some(StoreIndex { policy, colls })
        }
    };
    Ok(Segment {
        store,
        index,
        info,
        file,
    })
}

/// Fuzzing support: checks `bytes` as a tape (8 member names, 4 doubles) and, when it passes,
/// reads every node of it every way the engine does (JSON text, members, elements, values,
/// copies into owned trees). Returns the number of top-level nodes read. Never panics.
#[doc(hidden)]
pub fn fuzz_tape(bytes: &[u8]) -> usize {
    use twinql_planner::value::Node;
    let Ok(text) = std::str::from_utf8(bytes) else {
        return 0;
    };
    let Ok(starts) = check_tape(bytes, 8, 4, false) else {
        return 0;
    };
    let mut dict = KeyDict::default();
    for i in 0..8 {
        dict.intern(&format!("k{i}"));
    }
    let chunk = Chunk {
        tape: text.into(),
        floats: vec![1.5, -0.0, 1e300, f64::MIN_POSITIVE].into_boxed_slice(),
        keys: (0..8).collect(),
        plain: false,
    };
    fn visit(n: crate::NodeRef<'_>, depth: usize) {
        let _ = (
            n.kind(),
            n.as_bool(),
            n.as_f64(),
            n.as_str(),
            n.number_text(),
        );
        if depth > crate::tape::CHECK_MAX_DEPTH {
            return;
        }
        for (_, _, v) in n.members() {
            visit(v, depth + 1);
        }
        for v in n.elements() {
            visit(v, depth + 1);
        }
    }
    let mut names = crate::NameCache::default();
    for &pos in &starts {
        let n = crate::NodeRef {
            chunk: &chunk,
            tape: text,
            dict: &dict,
            pos,
        };
        let _ = n.to_json_string();
        visit(n, 0);
        let _ = crate::Doc::from_tape(n, &mut names).to_json_string();
    }
    starts.len()
}
