//! The store: chunks of tape, the key dictionary and the three collections.

use std::hash::{BuildHasher, RandomState};
use std::ops::Range;
use std::sync::{Arc, Mutex, OnceLock};

use rayon::prelude::*;
use twinql_planner::value::{Key, Node};

use crate::dict::KeyDict;
use crate::tape::{Chunk, NodeRef};

/// Dense id of a document within its collection, in load order.
pub type DocId = u32;

/// The key id [`Store::resolve_key`] puts in [`Key::exact`] for a name no document has.
pub const ABSENT_KEY: u32 = u32::MAX;

/// Store-wide ids of the identity members (interned first by [`Store::new`], with `jobs`).
pub(crate) const DEVICE_ID_KEY: u32 = 0;
pub(crate) const MODULE_ID_KEY: u32 = 1;
pub(crate) const JOB_ID_KEY: u32 = 2;

/// The three collections of the query language.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum CollectionKind {
    /// `FROM devices`: device twins, identified by `deviceId`.
    Devices = 0,
    /// `FROM devices.modules`: module twins, identified by (`deviceId`, `moduleId`).
    Modules = 1,
    /// `FROM devices.jobs`: per-device job records, identified by (`deviceId`, `jobId`).
    Jobs = 2,
}

impl CollectionKind {
    /// All collections.
    pub const ALL: [CollectionKind; 3] = [
        CollectionKind::Devices,
        CollectionKind::Modules,
        CollectionKind::Jobs,
    ];

    /// The collection's name in a query: `devices`, `devices.modules`, `devices.jobs`.
    pub fn query_name(self) -> &'static str {
        match self {
            CollectionKind::Devices => "devices",
            CollectionKind::Modules => "devices.modules",
            CollectionKind::Jobs => "devices.jobs",
        }
    }
}

impl std::fmt::Display for CollectionKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            CollectionKind::Devices => "device",
            CollectionKind::Modules => "module",
            CollectionKind::Jobs => "job",
        })
    }
}

/// Where a document starts: chunk and tape position.
#[derive(Clone, Copy, Debug)]
pub(crate) struct DocLoc {
    pub(crate) chunk: u32,
    pub(crate) pos: u32,
}

/// The hasher of document identities: seeded per store, and deterministic for a seed, so a
/// segment can keep the identity hashes it was written with.
pub(crate) type IdHasher = rustc_hash::FxSeededState;

/// Identity hashes of a mapped collection, one little-endian `u32` per document, from which
/// the identity table is built on first use.
pub(crate) struct MappedHashes {
    pub(crate) file: Arc<crate::mapped::MappedFile>,
    pub(crate) start: usize,
}

/// Documents of one collection and the index of their identities.
#[derive(Default)]
pub(crate) struct CollData {
    pub(crate) docs: Vec<DocLoc>,
    /// (document id, 32-bit identity hash): keeping the hash makes growing the table cheap.
    /// Built on first use for a mapped store.
    pub(crate) index: OnceLock<hashbrown::HashTable<(DocId, u32)>>,
    pub(crate) hashes: Option<MappedHashes>,
    /// For a mapped collection: each document is checked on first read.
    pub(crate) checks: Option<crate::mapped::DocChecks>,
}

impl CollData {
    /// The identity table, built from the mapped hashes on first use.
    pub(crate) fn table(&self) -> &hashbrown::HashTable<(DocId, u32)> {
        self.index.get_or_init(|| {
            let mut t = hashbrown::HashTable::with_capacity(self.docs.len());
            if let Some(h) = &self.hashes {
                let bytes = h
                    .file
                    .bytes()
                    .get(h.start..h.start + 4 * self.docs.len())
                    .unwrap_or_default();
                for (id, c) in bytes.chunks_exact(4).enumerate() {
                    let h = u32::from_le_bytes([c[0], c[1], c[2], c[3]]);
                    t.insert_unique(spread(h), (id as DocId, h), |&(_, hh)| spread(hh));
                }
            }
            t
        })
    }

    fn table_mut(&mut self) -> Option<&mut hashbrown::HashTable<(DocId, u32)>> {
        self.table();
        self.index.get_mut()
    }

    /// The identity hash of every document, in id order.
    pub(crate) fn hashes(&self) -> Vec<u32> {
        let mut out = vec![0u32; self.docs.len()];
        for &(id, h) in self.table() {
            if let Some(slot) = out.get_mut(id as usize) {
                *slot = h;
            }
        }
        out
    }
}

/// A chunk of documents: parsed in memory, or in a mapped segment and checked on first use.
pub(crate) struct LazyChunk {
    pub(crate) cell: OnceLock<Chunk>,
    pub(crate) src: Option<crate::segment::ChunkSrc>,
}

impl LazyChunk {
    pub(crate) fn ready(chunk: Chunk) -> LazyChunk {
        LazyChunk {
            cell: OnceLock::from(chunk),
            src: None,
        }
    }
}

/// The chunk every out-of-range or corrupt chunk reads as: no bytes.
fn empty_chunk() -> &'static Chunk {
    static EMPTY: OnceLock<Chunk> = OnceLock::new();
    EMPTY.get_or_init(Chunk::empty)
}

/// The 64-bit hash the index uses for a 32-bit identity hash (hashbrown takes the bucket
/// from the low bits and a tag from the top seven).
#[inline]
fn spread(h: u32) -> u64 {
    (u64::from(h) << 32) | u64::from(h)
}

/// Bytes held by a store, by part.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MemoryUsage {
    /// Document tapes.
    pub tapes: usize,
    /// Doubles of non-integer numbers.
    pub floats: usize,
    /// Per-chunk maps from local to store-wide key ids.
    pub key_maps: usize,
    /// The key dictionary.
    pub dictionary: usize,
    /// Per-collection document tables (chunk and position of each document).
    pub doc_tables: usize,
    /// Identity indexes.
    pub indexes: usize,
}

impl MemoryUsage {
    /// The sum of all parts.
    pub fn total(&self) -> usize {
        self.tapes + self.floats + self.key_maps + self.dictionary + self.doc_tables + self.indexes
    }
}

/// An in-memory store of device twins, module twins and job records.
///
/// Documents are immutable once loaded; loading appends. See the crate docs for an example.
pub struct Store {
    pub(crate) dict: KeyDict,
    pub(crate) chunks: Vec<LazyChunk>,
    pub(crate) colls: [CollData; 3],
    pub(crate) hasher: IdHasher,
    pub(crate) seed: u64,
    /// Problems found in mapped bytes when they were first used (file and offset each).
    pub(crate) problems: Arc<Mutex<Vec<String>>>,
    /// Columns of paths, built when scans need them (see [`crate::columns`]).
    pub(crate) columns: crate::columns::ColumnCache,
}

impl Default for Store {
    fn default() -> Self {
        Store::new()
    }
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("devices", &self.devices().len())
            .field("modules", &self.modules().len())
            .field("jobs", &self.jobs().len())
            .field("keys", &self.dict.len())
            .field("chunks", &self.chunks.len())
            .finish()
    }
}

/// The identity of a document: `deviceId` and, for modules and jobs, `moduleId` / `jobId`.
pub(crate) fn identity_of(node: NodeRef<'_>, kind: CollectionKind) -> (&str, Option<&str>) {
    let str_of = |id| node.member_by_id(id).and_then(|n| n.as_str());
    let dev = str_of(DEVICE_ID_KEY).unwrap_or_default();
    let sub = match kind {
        CollectionKind::Devices => None,
        CollectionKind::Modules => str_of(MODULE_ID_KEY),
        CollectionKind::Jobs => str_of(JOB_ID_KEY),
    };
    (dev, sub)
}

/// The identity of the loaded (not mapped) document at `loc`.
pub(crate) fn identity(store: &Store, kind: CollectionKind, loc: DocLoc) -> (&str, Option<&str>) {
    let chunk = store.chunk(loc.chunk);
    identity_of(
        NodeRef {
            chunk,
            tape: &chunk.tape,
            dict: &store.dict,
            pos: loc.pos,
        },
        kind,
    )
}

impl Store {
    /// An empty store.
    pub fn new() -> Store {
        let mut dict = KeyDict::default();
        dict.intern("deviceId");
        dict.intern("moduleId");
        dict.intern("jobId");
        dict.intern("jobs");
        Store::with_seed(dict, RandomState::new().hash_one(0x7477_696e_716c_u64))
    }

    pub(crate) fn with_seed(dict: KeyDict, seed: u64) -> Store {
        Store {
            dict,
            chunks: Vec::new(),
            colls: Default::default(),
            hasher: IdHasher::with_seed(seed as usize),
            seed,
            problems: Arc::new(Mutex::new(Vec::new())),
            columns: Default::default(),
        }
    }

    /// Chunk `i`; a chunk of a mapped segment is checked on first use (an empty chunk if it
    /// is corrupt or `i` is out of range, with the problem recorded for [`Store::problems`]).
    #[inline]
    pub(crate) fn chunk(&self, i: u32) -> &Chunk {
        let Some(slot) = self.chunks.get(i as usize) else {
            return empty_chunk();
        };
        if let Some(c) = slot.cell.get() {
            return c;
        }
        self.chunk_slow(i, slot)
    }

    #[cold]
    fn chunk_slow<'s>(&'s self, i: u32, slot: &'s LazyChunk) -> &'s Chunk {
        slot.cell.get_or_init(|| match &slot.src {
            Some(src) => match src.load(self, i) {
                Ok(c) => c,
                Err(e) => {
                    self.report_problem(e);
                    Chunk::empty()
                }
            },
            None => Chunk::empty(),
        })
    }

    /// Document `id` of a mapped collection, checked on first read.
    #[cold]
    #[inline(never)]
    fn mapped_doc_slow<'s>(
        &'s self,
        err: (usize, String),
        kind: CollectionKind,
        id: DocId,
    ) -> NodeRef<'s> {
        let (off, why) = err;
        if !why.is_empty() {
            let path = self
                .chunks
                .iter()
                .find_map(|c| c.src.as_ref().map(|s| s.path().display().to_string()))
                .unwrap_or_default();
            self.report_problem(format!(
                "segment {path}: {kind} document {id} at byte {off}: {why}"
            ));
        }
        let chunk = empty_chunk();
        NodeRef {
            chunk,
            tape: "",
            dict: &self.dict,
            pos: 0,
        }
    }

    #[inline]
    pub(crate) fn mapped_doc<'s>(
        &'s self,
        checks: &'s crate::mapped::DocChecks,
        kind: CollectionKind,
        chunk: &'s Chunk,
        loc: DocLoc,
        id: DocId,
    ) -> NodeRef<'s> {
        let start = self
            .chunks
            .get(loc.chunk as usize)
            .and_then(|c| c.src.as_ref())
            .map_or(0, |s| s.tape_start())
            + loc.pos as usize;
        let checked = checks.doc(id as usize, start, |bytes| {
            match crate::tape::check_tape(bytes, chunk.keys.len(), chunk.floats.len(), chunk.plain)?
                .as_slice()
            {
                [0] => Ok(()),
                _ => Err((0, "document is not one node".to_string())),
            }
        });
        match checked {
            Ok(tape) => NodeRef {
                chunk,
                tape,
                dict: &self.dict,
                pos: 0,
            },
            Err(e) => self.mapped_doc_slow(e, kind, id),
        }
    }

    /// Records a problem found in mapped bytes.
    pub(crate) fn report_problem(&self, message: String) {
        if let Ok(mut p) = self.problems.lock()
            && p.len() < 100
            && !p.contains(&message)
        {
            p.push(message);
        }
    }

    /// Problems found in the bytes of a mapped segment since it was opened (each names the
    /// file and offset). Documents in a corrupt part read as empty, so a query that met one
    /// must not be trusted; [`Store::check`] reports them as an error.
    pub fn problems(&self) -> Vec<String> {
        self.problems.lock().map(|p| p.clone()).unwrap_or_default()
    }

    /// `Err` with the first problem found in mapped bytes, if any (see [`Store::problems`]).
    pub fn check(&self) -> Result<(), String> {
        match self.problems.lock() {
            Ok(p) if !p.is_empty() => Err(p.join("; ")),
            _ => Ok(()),
        }
    }

    /// Checks every chunk of a mapped store now (a full read), rather than on first use.
    pub fn verify(&self) -> Result<(), String> {
        (0..self.chunks.len() as u32).into_par_iter().for_each(|i| {
            self.chunk(i);
        });
        for kind in CollectionKind::ALL {
            let coll = self.collection(kind);
            coll.par_iter().for_each(drop);
        }
        self.check()
    }

    /// Device twins (`FROM devices`).
    pub fn devices(&self) -> Collection<'_> {
        self.collection(CollectionKind::Devices)
    }

    /// Module twins (`FROM devices.modules`).
    pub fn modules(&self) -> Collection<'_> {
        self.collection(CollectionKind::Modules)
    }

    /// Job records (`FROM devices.jobs`).
    pub fn jobs(&self) -> Collection<'_> {
        self.collection(CollectionKind::Jobs)
    }

    /// One collection.
    pub fn collection(&self, kind: CollectionKind) -> Collection<'_> {
        Collection {
            store: self,
            kind,
            docs: &self.colls[kind as usize].docs,
        }
    }

    /// Fills `key.exact` and `key.folded_ids` with this store's key ids, so that
    /// [`Node::member`] compares integers. A name no document has gets
    /// `exact = Some(ABSENT_KEY)`, which makes every lookup a quick miss.
    ///
    /// Resolve keys after loading: a key resolved before a later load does not know the
    /// names that load added. A key resolved by another store gives wrong answers here.
    pub fn resolve_key(&self, key: &mut Key) {
        key.exact = Some(self.dict.get(&key.name).unwrap_or(ABSENT_KEY));
        key.folded_ids = self.dict.folded(&key.folded).into();
    }

    /// The store-wide id of a member name, if some document has it.
    pub fn key_id(&self, name: &str) -> Option<u32> {
        self.dict.get(name)
    }

    /// The member name with id `id` (empty if unknown).
    pub fn key_name(&self, id: u32) -> &str {
        self.dict.name(id)
    }

    /// Number of distinct member names.
    pub fn key_count(&self) -> usize {
        self.dict.len()
    }

    /// The columns built for scans so far (see [`crate::columns`]).
    pub fn columns(&self) -> &crate::columns::ColumnCache {
        &self.columns
    }

    /// Heap bytes held, by part.
    pub fn memory(&self) -> MemoryUsage {
        let mut m = MemoryUsage {
            dictionary: self.dict.heap_bytes(),
            ..MemoryUsage::default()
        };
        for c in self.chunks.iter().filter_map(|c| c.cell.get()) {
            m.tapes += c.tape.heap_bytes();
            m.floats += c.floats.len() * 8;
            m.key_maps += c.keys.len() * 4;
        }
        m.key_maps += self.chunks.capacity() * std::mem::size_of::<LazyChunk>();
        for coll in &self.colls {
            m.doc_tables += coll.docs.capacity() * std::mem::size_of::<DocLoc>();
            m.indexes += coll.index.get().map_or(0, |t| t.capacity())
                * (std::mem::size_of::<(DocId, u32)>() + 1);
        }
        m
    }

    /// Total heap bytes held (tapes, dictionary, tables).
    pub fn memory_bytes(&self) -> usize {
        self.memory().total()
    }

    /// Adds a document at `loc` to collection `kind`; `Err` holds the id of the document that
    /// already has this identity.
    /// The identity members are the strings at tape positions `dev_pos` and `sub_pos` of
    /// the document's chunk; `h` is their hash (`hasher.hash_one((dev, sub)) as u32`).
    pub(crate) fn insert(
        &mut self,
        kind: CollectionKind,
        loc: DocLoc,
        dev_pos: u32,
        sub_pos: Option<u32>,
        h: u32,
    ) -> Result<DocId, DocId> {
        let chunk = self.chunk(loc.chunk);
        let dict = &self.dict;
        let string = |pos| {
            NodeRef {
                chunk,
                tape: &chunk.tape,
                dict,
                pos,
            }
            .as_str()
        };
        let dev = string(dev_pos).unwrap_or_default();
        let sub = sub_pos.and_then(string);
        let data = &self.colls[kind as usize];
        let found = data.table().find(spread(h), |&(id, hh)| {
            hh == h
                && data
                    .docs
                    .get(id as usize)
                    .is_some_and(|&l| identity(self, kind, l) == (dev, sub))
        });
        if let Some(&(id, _)) = found {
            return Err(id);
        }
        let data = &mut self.colls[kind as usize];
        let id = data.docs.len() as DocId;
        data.docs.push(loc);
        if let Some(t) = data.table_mut() {
            t.insert_unique(spread(h), (id, h), |&(_, hh)| spread(hh));
        }
        Ok(id)
    }

    /// Removes the documents with ids from `keep` on from collection `kind`.
    pub(crate) fn truncate(&mut self, kind: CollectionKind, keep: usize) {
        let len = self.colls[kind as usize].docs.len();
        let hashes: Vec<(usize, u32)> = (keep..len)
            .rev()
            .map(|id| {
                let loc = self.colls[kind as usize].docs[id];
                (id, self.hasher.hash_one(identity(self, kind, loc)) as u32)
            })
            .collect();
        let data = &mut self.colls[kind as usize];
        if let Some(index) = data.table_mut() {
            for (id, h) in hashes {
                if let Ok(entry) = index.find_entry(spread(h), |&(x, _)| x as usize == id) {
                    entry.remove();
                }
            }
        }
        data.docs.truncate(keep);
    }
}

/// The documents of one collection, in load order, with dense ids `0..len()`.
#[derive(Clone, Copy)]
pub struct Collection<'a> {
    store: &'a Store,
    kind: CollectionKind,
    docs: &'a [DocLoc],
}

impl<'a> Collection<'a> {
    /// The store the collection belongs to.
    pub fn store(&self) -> &'a Store {
        self.store
    }

    /// Which collection this is.
    pub fn kind(&self) -> CollectionKind {
        self.kind
    }

    /// Number of documents.
    pub fn len(&self) -> usize {
        self.docs.len()
    }

    /// Whether there are no documents.
    pub fn is_empty(&self) -> bool {
        self.docs.is_empty()
    }

    /// All document ids, `0..len()`.
    pub fn ids(&self) -> Range<DocId> {
        0..self.docs.len() as DocId
    }

    /// The document with id `id`.
    ///
    /// # Panics
    ///
    /// If `id` is not below [`len`](Self::len).
    #[inline]
    pub fn doc(&self, id: DocId) -> NodeRef<'a> {
        match self.get(id) {
            Some(n) => n,
            None => panic!("document id {id} out of range ({} documents)", self.len()),
        }
    }

    /// The document with id `id`, if there is one. A document of a mapped segment is checked
    /// on first read; one that fails reads as an empty document and the problem is recorded
    /// (see [`Store::problems`]).
    #[inline]
    pub fn get(&self, id: DocId) -> Option<NodeRef<'a>> {
        let loc = *self.docs.get(id as usize)?;
        let store = self.store;
        let chunk = store.chunk(loc.chunk);
        match &store.colls[self.kind as usize].checks {
            None => Some(NodeRef {
                chunk,
                tape: &chunk.tape,
                dict: &store.dict,
                pos: loc.pos,
            }),
            Some(checks) => Some(store.mapped_doc(checks, self.kind, chunk, loc, id)),
        }
    }

    /// The documents in id order.
    pub fn iter(&self) -> impl ExactSizeIterator<Item = NodeRef<'a>> + DoubleEndedIterator + 'a {
        let this = *self;
        self.ids().map(move |id| this.doc(id))
    }

    /// The documents as a parallel iterator (ids in order, for `enumerate`).
    pub fn par_iter(&self) -> impl IndexedParallelIterator<Item = NodeRef<'a>> + 'a {
        let this = *self;
        (0..self.docs.len() as DocId)
            .into_par_iter()
            .map(move |id| this.doc(id))
    }

    /// The id of the document with this identity: `sub_id` is the `moduleId` for modules,
    /// the `jobId` for jobs, and `None` for devices.
    pub fn find(&self, device_id: &str, sub_id: Option<&str>) -> Option<DocId> {
        let store = self.store;
        let h = store.hasher.hash_one((device_id, sub_id)) as u32;
        store.colls[self.kind as usize]
            .table()
            .find(spread(h), |&(id, hh)| {
                hh == h
                    && self
                        .get(id)
                        .is_some_and(|n| identity_of(n, self.kind) == (device_id, sub_id))
            })
            .map(|&(id, _)| id)
    }

    /// The identity of document `id` (`deviceId`, and `moduleId` / `jobId`).
    pub fn identity(&self, id: DocId) -> Option<(&'a str, Option<&'a str>)> {
        Some(identity_of(self.get(id)?, self.kind))
    }
}

impl std::fmt::Debug for Collection<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Collection")
            .field("kind", &self.kind)
            .field("len", &self.len())
            .finish()
    }
}
