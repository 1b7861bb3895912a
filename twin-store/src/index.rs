//! Path indexes: posting lists per document path, and the three-valued set algebra that turns
//! a compiled condition into the set of matching documents.
//!
//! For every indexed path (a sequence of store-wide key ids from the document root) a
//! [`PathIndex`] keeps, as roaring bitmaps of document ids: where the path is defined, where it
//! holds each JSON type, and where it holds `true`; and, as arrays of document ids sorted by
//! value, the documents holding strings and numbers — so equality, ranges and prefixes are two
//! binary searches. Values are read back from the tape while searching, so a posting entry
//! costs four bytes.
//!
//! A predicate is answered as a pair of sets: the documents where it is `true` and those where
//! it is `false`; everything else is Undefined. `NOT` swaps them, `AND` intersects the true
//! sets and unites the false ones, `OR` the reverse. This keeps the language's three-valued
//! semantics exact: `NOT (x = 'a')` never returns a twin where `x` is missing or not a string.
//! A predicate the index cannot answer makes its subtree a superset (candidates, re-checked
//! with the full filter) or unanswerable (a full scan).
//!
//! Indexes are built once after loading, in parallel. Incremental maintenance (twin updates)
//! goes to a small mutable delta beside the immutable base, see `ARCHITECTURE.md`.

use std::borrow::Cow;
use std::cmp::Ordering;
use std::collections::HashMap;
use std::ops::Bound;

use ordered_float::OrderedFloat;
use rayon::prelude::*;
use roaring::{MultiOps, RoaringBitmap};
use std::sync::Arc;
use twinql_parser::ast::CompareOp;
use twinql_planner::eval::{CExpr, CPath, Const, Root, Step};
use twinql_planner::functions::Func;
use twinql_planner::plan::Plan;
use twinql_planner::value::{Key, Kind, Node};

use crate::dict::FxBuild;
use crate::store::{Collection, CollectionKind, Store};
use crate::tape::NodeRef;

/// Which paths are indexed: include and exclude patterns over member names separated by `/`.
///
/// A `*` segment matches any one name; a trailing `*` matches one or more further names, so
/// `tags/*` covers every path below `tags`. A path is indexed when some include pattern
/// matches it and no exclude pattern does.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IndexPolicy {
    /// Patterns of indexed paths.
    pub include: Vec<String>,
    /// Patterns of paths never indexed (wins over `include`).
    pub exclude: Vec<String>,
}

impl Default for IndexPolicy {
    /// Every leaf of `tags`, `properties.desired`, `properties.reported` (but not `$metadata`),
    /// the system fields of twins (not the opaque `etag` / `deviceEtag`, which change on every
    /// write and are compared only by `If-Match`) and every member of job records.
    fn default() -> IndexPolicy {
        let include = [
            "deviceId",
            "moduleId",
            "status",
            "statusReason",
            "statusUpdateTime",
            "connectionState",
            "lastActivityTime",
            "cloudToDeviceMessageCount",
            "authenticationType",
            "modelId",
            "version",
            "deviceScope",
            "parentScopes",
            "capabilities/*",
            "configurations/*",
            "tags",
            "tags/*",
            "properties/desired/*",
            "properties/reported/*",
            "jobId",
            "jobType",
            "startTimeUtc",
            "endTimeUtc",
            "createdDateTimeUtc",
            "lastUpdatedDateTimeUtc",
            "outcome/*",
            "error/*",
        ];
        IndexPolicy {
            include: include.iter().map(|s| s.to_string()).collect(),
            exclude: vec!["properties/*/$metadata/*".into()],
        }
    }
}

impl IndexPolicy {
    /// A policy that indexes nothing.
    pub fn none() -> IndexPolicy {
        IndexPolicy {
            include: Vec::new(),
            exclude: Vec::new(),
        }
    }

    /// Reads a policy from JSON: `{"include": ["tags/*", …], "exclude": […]}`.
    pub fn from_json(text: &str) -> Result<IndexPolicy, String> {
        let v: serde_json::Value = serde_json::from_str(text).map_err(|e| e.to_string())?;
        let list = |k: &str| -> Result<Vec<String>, String> {
            match v.get(k) {
                None => Ok(Vec::new()),
                Some(serde_json::Value::Array(a)) => a
                    .iter()
                    .map(|x| {
                        x.as_str()
                            .map(str::to_string)
                            .ok_or_else(|| format!("`{k}` must hold strings"))
                    })
                    .collect(),
                Some(_) => Err(format!("`{k}` must be an array of path patterns")),
            }
        };
        Ok(IndexPolicy {
            include: list("include")?,
            exclude: list("exclude")?,
        })
    }

    fn matches(pattern: &str, path: &[&str]) -> bool {
        let segs: Vec<&str> = pattern.split('/').filter(|s| !s.is_empty()).collect();
        let Some((last, init)) = segs.split_last() else {
            return false;
        };
        if *last == "*" {
            path.len() > init.len() && init.iter().zip(path).all(|(p, n)| *p == "*" || p == n)
        } else {
            path.len() == segs.len() && segs.iter().zip(path).all(|(p, n)| *p == "*" || p == n)
        }
    }

    /// The paths of `paths` (member names from the root) that this policy covers, and
    /// nothing else: the indexes one query can use, for a process that runs only that query.
    /// A name that a pattern cannot spell (empty, `*`, or holding `/`) is left out.
    pub fn only<S: AsRef<str>>(&self, paths: &[Vec<S>]) -> IndexPolicy {
        let mut include: Vec<String> = Vec::new();
        for path in paths {
            let names: Vec<&str> = path.iter().map(AsRef::as_ref).collect();
            let spellable = !names.is_empty()
                && names
                    .iter()
                    .all(|n| !n.is_empty() && *n != "*" && !n.contains('/'));
            if spellable && self.covers(&names) {
                let pattern = names.join("/");
                if !include.contains(&pattern) {
                    include.push(pattern);
                }
            }
        }
        IndexPolicy {
            include,
            exclude: Vec::new(),
        }
    }

    /// This policy narrowed to the paths of `plan` an index could serve in `store` (see
    /// [`Plan::index_paths`]), spelled as the store spells them: a path is kept when each of
    /// its names has exactly one spelling store-wide, the rule lookups follow (a path with a
    /// name of several spellings, or of none, could not be served either way).
    pub fn for_plan(&self, plan: &Plan, store: &Store) -> IndexPolicy {
        let mut paths: Vec<Vec<&str>> = Vec::new();
        for p in plan.index_paths() {
            if p.root != Root::Doc {
                continue;
            }
            let names: Option<Vec<&str>> = p
                .steps
                .iter()
                .map(|s| match s {
                    Step::Member(k) => match key_id(k) {
                        Ok(Some(id)) if (id as usize) < store.key_count() => {
                            Some(store.key_name(id))
                        }
                        _ => None,
                    },
                    Step::Index(_) => None,
                })
                .collect();
            if let Some(names) = names {
                paths.push(names);
            }
        }
        self.only(&paths)
    }

    /// Whether the path (member names from the root) is indexed.
    pub fn covers(&self, path: &[&str]) -> bool {
        self.include.iter().any(|p| Self::matches(p, path))
            && !self.exclude.iter().any(|p| Self::matches(p, path))
    }

    /// Whether anything below `path` (or it) could be indexed.
    pub(crate) fn may_cover_below(&self, path: &[&str]) -> bool {
        if self.exclude.iter().any(|p| {
            p.ends_with("/*") && {
                let init = &p[..p.len() - 2];
                Self::matches(init, path) || Self::matches(p, path)
            }
        }) {
            return false;
        }
        self.include.iter().any(|p| {
            let segs: Vec<&str> = p.split('/').filter(|s| !s.is_empty()).collect();
            let n = segs.len().min(path.len());
            segs.iter()
                .zip(path)
                .take(n)
                .all(|(s, name)| *s == "*" || s == name)
                && (segs.len() > path.len()
                    || segs.last() == Some(&"*")
                    || segs.len() == path.len())
        })
    }
}

use crate::delta::{Bits, DeltaIndex, DeltaPath, KINDS, kind_slot};

/// Documents by value at one path: a dictionary when there are few distinct values, else
/// document ids sorted by value (values are read back from the tape when searching).
#[derive(Clone, Debug)]
pub enum Postings<V> {
    /// Each distinct value with its documents, sorted by value.
    Dict(Vec<(V, RoaringBitmap)>),
    /// Document ids sorted by (value, id), and a bitmap of every [`BLOCK`] of them, so a
    /// long range is mostly a union of whole blocks.
    Sorted {
        /// Document ids sorted by (value, id).
        ids: Vec<u32>,
        /// `blocks[i]` holds `ids[i * BLOCK..(i + 1) * BLOCK]`.
        blocks: Vec<RoaringBitmap>,
    },
}

/// Entries per precomputed block of a sorted posting array.
pub const BLOCK: usize = 1024;

impl<V> Postings<V> {
    fn sorted(ids: Vec<u32>) -> Postings<V> {
        let blocks = ids
            .par_chunks(BLOCK)
            .filter(|c| c.len() == BLOCK)
            .map(sorted_bitmap)
            .collect();
        Postings::Sorted { ids, blocks }
    }
}

/// A bitmap of unsorted ids.
fn sorted_bitmap(ids: &[u32]) -> RoaringBitmap {
    let mut v = ids.to_vec();
    v.sort_unstable();
    v.dedup();
    RoaringBitmap::from_sorted_iter(v).unwrap_or_default()
}

/// A bitmap of unsorted, distinct ids: through a plain bit array when there are many of them
/// (setting bits is cheaper than sorting), else by sorting.
fn bitmap_of_unsorted(ids: &[u32]) -> RoaringBitmap {
    if ids.len() < 2048 {
        return sorted_bitmap(ids);
    }
    let (mut min, mut max) = (u32::MAX, 0);
    for &id in ids {
        min = min.min(id);
        max = max.max(id);
    }
    // Start at a container boundary, so the bytes map onto whole containers.
    let base = min & !0xffff;
    let mut bytes = vec![0u8; ((max - base) as usize >> 3) + 1];
    for &id in ids {
        let o = (id - base) as usize;
        bytes[o >> 3] |= 1 << (o & 7);
    }
    RoaringBitmap::from_lsb0_bytes(base, &bytes)
}

/// The documents `ids[lo..hi]` of a sorted posting array: whole blocks' bitmaps where the
/// range is long, a bit array for the rest.
fn sorted_range(ids: &[u32], blocks: &[RoaringBitmap], lo: usize, hi: usize) -> RoaringBitmap {
    let first = lo.div_ceil(BLOCK);
    let last = (hi / BLOCK).min(blocks.len());
    // Unions of many blocks cost more than setting bits, until the range is most of the array.
    if first >= last || (hi - lo) * 2 < ids.len() {
        return bitmap_of_unsorted(&ids[lo..hi]);
    }
    let mut out = blocks[first..last].iter().union();
    out |= sorted_bitmap(&ids[lo..first * BLOCK]);
    out |= sorted_bitmap(&ids[last * BLOCK..hi]);
    out
}

impl<V> Default for Postings<V> {
    fn default() -> Self {
        Postings::Dict(Vec::new())
    }
}

impl<V> Postings<V> {
    fn bytes(&self) -> usize {
        match self {
            Postings::Dict(d) => d.iter().map(|(_, b)| b.serialized_size() + 32).sum(),
            Postings::Sorted { ids, blocks } => {
                4 * ids.len() + blocks.iter().map(|b| b.serialized_size()).sum::<usize>()
            }
        }
    }

    fn entries(&self) -> usize {
        match self {
            Postings::Dict(d) => d.iter().map(|(_, b)| b.len() as usize).sum(),
            Postings::Sorted { ids, .. } => ids.len(),
        }
    }
}

/// The postings of one path.
#[derive(Clone, Debug, Default)]
pub struct PathIndex {
    /// The path as store-wide key ids.
    pub keys: Box<[u32]>,
    /// Documents where the path resolves to anything.
    pub defined: RoaringBitmap,
    /// Documents by the JSON type found at the path.
    pub kinds: [RoaringBitmap; KINDS],
    /// Documents where the path holds `true`.
    pub trues: RoaringBitmap,
    /// Documents holding strings, by value.
    pub strings: Postings<Box<str>>,
    /// Documents holding numbers, by value.
    pub numbers: Postings<f64>,
}

impl PathIndex {
    fn bytes(&self) -> usize {
        let bm = |b: &RoaringBitmap| b.serialized_size();
        bm(&self.defined)
            + self.kinds.iter().map(bm).sum::<usize>()
            + bm(&self.trues)
            + self.strings.bytes()
            + self.numbers.bytes()
            + 4 * self.keys.len()
            + 64
    }
}

/// Follows a path of key ids from a document root.
#[inline]
fn walk<'a>(doc: NodeRef<'a>, keys: &[u32]) -> Option<NodeRef<'a>> {
    let mut n = doc;
    for &k in keys {
        n = n.member_by_id(k)?;
    }
    Some(n)
}

/// The postings of one path: built in memory, or in a mapped segment and decoded on first
/// use.
#[derive(Debug)]
pub(crate) struct LazyPath {
    pub(crate) cell: std::sync::OnceLock<PathIndex>,
    pub(crate) src: Option<crate::segment::PathSrc>,
    pub(crate) entries: usize,
    pub(crate) bytes: usize,
}

impl LazyPath {
    fn ready(p: PathIndex) -> LazyPath {
        LazyPath {
            entries: p.strings.entries() + p.numbers.entries(),
            bytes: p.bytes(),
            cell: std::sync::OnceLock::from(p),
            src: None,
        }
    }

    /// The postings (decoded on first use; empty if the mapped bytes are corrupt, with the
    /// problem reported to the store).
    pub(crate) fn get(&self) -> &PathIndex {
        self.cell.get_or_init(|| match &self.src {
            Some(src) => src.load(),
            None => PathIndex::default(),
        })
    }
}

/// The indexes of one collection.
#[derive(Debug, Default)]
pub struct CollectionIndex {
    pub(crate) paths: HashMap<Box<[u32]>, LazyPath>,
    pub(crate) all: RoaringBitmap,
}

/// Statistics of an index, for reports and `explain`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct IndexStats {
    /// Indexed paths.
    pub paths: usize,
    /// Posting entries (document, path) in sorted value arrays.
    pub entries: usize,
    /// Approximate bytes used.
    pub bytes: usize,
}

/// What the index says about a condition.
#[derive(Clone, Debug, PartialEq)]
pub enum Answer {
    /// Exactly the documents where the condition is `true` (and where it is `false`).
    Exact {
        /// Where the condition is `true`.
        t: RoaringBitmap,
        /// Where it is `false`.
        f: RoaringBitmap,
    },
    /// A superset of the documents where the condition is `true`; re-check each.
    Candidates(RoaringBitmap),
    /// The index cannot narrow the condition down.
    Unknown,
}

impl Answer {
    fn not(self) -> Answer {
        match self {
            Answer::Exact { t, f } => Answer::Exact { t: f, f: t },
            _ => Answer::Unknown,
        }
    }

    fn candidates(&self) -> Option<&RoaringBitmap> {
        match self {
            Answer::Exact { t, .. } => Some(t),
            Answer::Candidates(c) => Some(c),
            Answer::Unknown => None,
        }
    }
}

/// Most distinct values a chunk collects per path in a dictionary before it switches to
/// (value, document) pairs.
const CHUNK_DICT_MAX: usize = 512;
/// Most distinct values a path keeps as a dictionary.
const DICT_MAX: usize = 4096;

/// Values of one kind at one path, collected while walking a chunk.
enum Collect<V> {
    /// Few distinct values so far: each numbered in order of first sight, and the entries as
    /// (value number, document) in document order.
    Dict {
        number: HashMap<V, u32, FxBuild>,
        values: Vec<V>,
        entries: Vec<(u32, u32)>,
    },
    Pairs(Vec<(V, u32)>),
}

impl<V: std::hash::Hash + Eq + Copy> Collect<V> {
    fn new() -> Self {
        Collect::Dict {
            number: HashMap::default(),
            values: Vec::new(),
            entries: Vec::new(),
        }
    }

    /// The chunk's postings: a small dictionary of bitmaps, or the (value, document) pairs.
    /// Leaves the collector empty, its buffers kept for the walker's next chunk.
    fn take(&mut self) -> ChunkPostings<V> {
        match self {
            Collect::Dict {
                number,
                values,
                entries,
            } => {
                // A counting sort by value number keeps each value's documents ascending.
                let mut start = vec![0u32; values.len() + 1];
                for &(v, _) in entries.iter() {
                    start[v as usize + 1] += 1;
                }
                for i in 1..start.len() {
                    start[i] += start[i - 1];
                }
                let bounds = start.clone();
                let docs = scatter(entries, &mut start);
                let dict = ChunkPostings::Dict(
                    values
                        .drain(..)
                        .enumerate()
                        .map(|(i, k)| {
                            let list = &docs[bounds[i] as usize..bounds[i + 1] as usize];
                            let b = RoaringBitmap::from_sorted_iter(list.iter().copied())
                                .unwrap_or_default();
                            (k, b)
                        })
                        .collect(),
                );
                number.clear();
                entries.clear();
                dict
            }
            Collect::Pairs(p) => {
                let pairs = std::mem::take(p);
                *self = Collect::new();
                ChunkPostings::Pairs(pairs)
            }
        }
    }

    /// Whether nothing was collected since the last [`Collect::take`].
    fn is_empty(&self) -> bool {
        match self {
            Collect::Dict { entries, .. } => entries.is_empty(),
            Collect::Pairs(p) => p.is_empty(),
        }
    }

    #[inline]
    fn push(&mut self, v: V, doc: u32) {
        match self {
            Collect::Dict {
                number,
                values,
                entries,
            } => {
                if let Some(&i) = number.get(&v) {
                    entries.push((i, doc));
                } else if values.len() < CHUNK_DICT_MAX {
                    number.insert(v, values.len() as u32);
                    entries.push((values.len() as u32, doc));
                    values.push(v);
                } else {
                    let mut pairs: Vec<(V, u32)> = Vec::with_capacity(entries.len() * 2);
                    pairs.extend(entries.iter().map(|&(i, d)| (values[i as usize], d)));
                    pairs.push((v, doc));
                    *self = Collect::Pairs(pairs);
                }
            }
            Collect::Pairs(p) => p.push((v, doc)),
        }
    }
}

/// One chunk's postings of one kind at one path.
enum ChunkPostings<V> {
    Dict(Vec<(V, RoaringBitmap)>),
    Pairs(Vec<(V, u32)>),
}

/// One chunk's finished postings of one path.
struct ChunkSlot<'a> {
    kinds: [RoaringBitmap; KINDS],
    trues: RoaringBitmap,
    strings: ChunkPostings<&'a str>,
    numbers: ChunkPostings<u64>,
}

/// A set of the documents of one chunk of [`BUILD_CHUNK`] (whose first document is a multiple
/// of 8): a bit per document, allocated on first use, emptied by [`ChunkBits::take`].
#[derive(Default)]
struct ChunkBits {
    bytes: Vec<u8>,
    any: bool,
}

impl ChunkBits {
    /// Adds the chunk's `local`-th document.
    #[inline]
    fn set(&mut self, local: usize) {
        if self.bytes.is_empty() {
            self.bytes = vec![0; BUILD_CHUNK / 8];
        }
        if let Some(b) = self.bytes.get_mut(local >> 3) {
            *b |= 1 << (local & 7);
            self.any = true;
        }
    }

    fn is_empty(&self) -> bool {
        !self.any
    }

    /// The documents added since the last call, for a chunk starting at document `base`.
    fn take(&mut self, base: u32) -> RoaringBitmap {
        if !self.any {
            return RoaringBitmap::new();
        }
        let b = RoaringBitmap::from_lsb0_bytes(base, &self.bytes);
        self.bytes.fill(0);
        self.any = false;
        b
    }
}

/// Everything collected for one path in one chunk.
struct Slot<'a> {
    kinds: [ChunkBits; KINDS],
    trues: ChunkBits,
    strings: Collect<&'a str>,
    /// Numbers by their bits (with -0 folded into 0).
    numbers: Collect<u64>,
}

impl<'a> Slot<'a> {
    /// The chunk's postings at this path, or `None` if the chunk has none. Leaves the slot
    /// empty, its buffers kept for the walker's next chunk.
    fn take(&mut self, base: u32) -> Option<ChunkSlot<'a>> {
        if self.kinds.iter().all(ChunkBits::is_empty)
            && self.strings.is_empty()
            && self.numbers.is_empty()
        {
            return None;
        }
        Some(ChunkSlot {
            kinds: self.kinds.each_mut().map(|k| k.take(base)),
            trues: self.trues.take(base),
            strings: self.strings.take(),
            numbers: self.numbers.take(),
        })
    }

    fn new() -> Slot<'a> {
        Slot {
            kinds: Default::default(),
            trues: ChunkBits::default(),
            strings: Collect::new(),
            numbers: Collect::new(),
        }
    }
}

/// A node of the path trie a walker keeps: which paths are indexed, and where their slot is.
struct TrieNode {
    /// Children in order of first sight, as (key id, node).
    order: Vec<(u32, u32)>,
    /// Key id to position in `order`.
    children: HashMap<u32, u32, FxBuild>,
    covered: bool,
    descend: bool,
    slot: u32,
}

impl TrieNode {
    fn new(covered: bool, descend: bool, slot: u32) -> TrieNode {
        TrieNode {
            order: Vec::new(),
            children: HashMap::default(),
            covered,
            descend,
            slot,
        }
    }
}

struct Walker<'p, 'a> {
    policy: &'p IndexPolicy,
    store: &'a Store,
    nodes: Vec<TrieNode>,
    slots: Vec<(Box<[u32]>, Slot<'a>)>,
    ids: Vec<u32>,
    /// The first document of the chunk being walked.
    base: u32,
    /// Key ids met so far in the object being visited at each depth.
    seen: Vec<Vec<u32>>,
}

impl<'p, 'a> Walker<'p, 'a> {
    fn new(policy: &'p IndexPolicy, store: &'a Store) -> Walker<'p, 'a> {
        Walker {
            policy,
            store,
            nodes: vec![TrieNode::new(false, true, u32::MAX)],
            slots: Vec::new(),
            ids: Vec::new(),
            base: 0,
            seen: Vec::new(),
        }
    }

    /// The position in `parent`'s children and the trie node of its child `key` (the last of
    /// `self.ids`), made and classified on first sight.
    fn child(&mut self, parent: u32, key: u32) -> (usize, u32) {
        if let Some(&at) = self.nodes[parent as usize].children.get(&key) {
            return (
                at as usize,
                self.nodes[parent as usize].order[at as usize].1,
            );
        }
        let names: Vec<&str> = self.ids.iter().map(|&k| self.store.key_name(k)).collect();
        let covered = self.policy.covers(&names);
        let descend = self.policy.may_cover_below(&names);
        let slot = if covered {
            self.slots
                .push((self.ids.clone().into_boxed_slice(), Slot::new()));
            (self.slots.len() - 1) as u32
        } else {
            u32::MAX
        };
        let id = self.nodes.len() as u32;
        self.nodes.push(TrieNode::new(covered, descend, slot));
        let p = &mut self.nodes[parent as usize];
        let at = p.order.len();
        p.order.push((key, id));
        p.children.insert(key, at as u32);
        (at, id)
    }

    fn visit(&mut self, doc: u32, node: NodeRef<'a>, trie: u32) {
        let depth = self.ids.len();
        if self.seen.len() <= depth {
            self.seen.resize_with(depth + 1, Vec::new);
        }
        self.seen[depth].clear();
        // A 64-bit filter over the ids seen, so the exact check runs only on a likely repeat.
        let mut filter = 0u64;
        // Documents of one shape list members in the same order: try the child after the
        // previous member's before looking the key up.
        let mut cursor = 0usize;
        for (_, id, child) in node.members() {
            // A repeated member name: lookups find the first one, so only it is indexed.
            let bit = 1u64 << (id & 63);
            if filter & bit != 0 && self.seen[depth].contains(&id) {
                continue;
            }
            filter |= bit;
            self.seen[depth].push(id);
            self.ids.push(id);
            let t = match self.nodes[trie as usize].order.get(cursor) {
                Some(&(k, c)) if k == id => {
                    cursor += 1;
                    c
                }
                _ => {
                    let (at, c) = self.child(trie, id);
                    cursor = at + 1;
                    c
                }
            };
            let (covered, descend, slot) = {
                let n = &self.nodes[t as usize];
                (n.covered, n.descend, n.slot)
            };
            let kind = child.kind();
            if covered {
                let s = &mut self.slots[slot as usize].1;
                let local = (doc - self.base) as usize;
                s.kinds[kind_slot(kind)].set(local);
                match kind {
                    Kind::Bool if child.as_bool() == Some(true) => s.trues.set(local),
                    Kind::String => s.strings.push(child.as_str().unwrap_or(""), doc),
                    Kind::Number => {
                        let v = child.as_f64().unwrap_or(f64::NAN);
                        let v = if v == 0.0 { 0.0 } else { v };
                        s.numbers.push(v.to_bits(), doc);
                    }
                    _ => {}
                }
            }
            if kind == Kind::Object && descend {
                self.visit(doc, child, t);
            }
            self.ids.pop();
        }
    }
}

/// An order-preserving prefix of a value (see [`SortValue::sort_key`]). Values with equal keys
/// are compared in full.
type SortKey = u128;

/// How the values of one kind are ordered when postings are built.
trait SortValue: Copy + Send + Sync + std::hash::Hash + Eq {
    /// The values' order.
    fn order(&self, other: &Self) -> Ordering;
    /// The number of leading bytes two values share (0 where keys are not byte strings).
    fn shared_prefix(&self, other: &Self) -> usize;
    /// An order-preserving key of the value past its first `skip` bytes, where every value
    /// compared shares those bytes: the next 16 bytes of a string, a number's bits in
    /// `f64::total_cmp` order.
    fn sort_key(&self, skip: usize) -> SortKey;
}

impl SortValue for &str {
    fn order(&self, other: &Self) -> Ordering {
        self.cmp(other)
    }

    fn shared_prefix(&self, other: &Self) -> usize {
        self.bytes()
            .zip(other.bytes())
            .take_while(|(a, b)| a == b)
            .count()
    }

    fn sort_key(&self, skip: usize) -> SortKey {
        let rest = self.as_bytes().get(skip..).unwrap_or_default();
        let mut k = [0u8; 16];
        let n = rest.len().min(16);
        k[..n].copy_from_slice(&rest[..n]);
        u128::from_be_bytes(k)
    }
}

/// Numbers by their bits (with -0 folded into 0).
impl SortValue for u64 {
    fn order(&self, other: &Self) -> Ordering {
        f64::from_bits(*self).total_cmp(&f64::from_bits(*other))
    }

    fn shared_prefix(&self, _: &Self) -> usize {
        0
    }

    fn sort_key(&self, _: usize) -> SortKey {
        // The order of `f64::total_cmp` as an unsigned integer.
        let b = *self;
        u128::from(if b >> 63 == 1 { !b } else { b | (1 << 63) })
    }
}

/// The bytes every value of `values` starts with (0 for numbers).
fn common_prefix<V: SortValue>(values: &[V]) -> usize {
    let Some(first) = values.first() else {
        return 0;
    };
    let mut n = first.shared_prefix(first);
    for v in values {
        if n == 0 {
            break;
        }
        n = n.min(first.shared_prefix(v));
    }
    n
}

/// Builds the postings of one kind from the chunks' postings.
fn postings<V: SortValue, O>(parts: Vec<ChunkPostings<V>>, own: impl Fn(V) -> O) -> Postings<O> {
    if parts.iter().all(|p| matches!(p, ChunkPostings::Dict(_))) {
        let mut dict: HashMap<V, RoaringBitmap, FxBuild> = HashMap::default();
        for p in &parts {
            if let ChunkPostings::Dict(d) = p {
                for (k, b) in d {
                    *dict.entry(*k).or_default() |= b;
                }
            }
            if dict.len() > DICT_MAX {
                break;
            }
        }
        if dict.len() <= DICT_MAX {
            let mut entries: Vec<(V, RoaringBitmap)> = dict.into_iter().collect();
            entries.sort_by(|a, b| a.0.order(&b.0));
            return Postings::Dict(entries.into_iter().map(|(k, b)| (own(k), b)).collect());
        }
    }
    // Many distinct values (ids, timestamps): sort the (value, document) pairs. Few: number
    // the values and counting-sort the documents, which needs no comparisons between entries.
    if many_distinct(&parts) {
        return sorted_pairs(parts);
    }
    // Number the distinct values in order of first sight, and list every (value, document)
    // entry in document order: parts come in chunk order and each value's documents ascend
    // within a part.
    let total: usize = parts
        .iter()
        .map(|p| match p {
            ChunkPostings::Dict(d) => d.iter().map(|(_, b)| b.len() as usize).sum(),
            ChunkPostings::Pairs(p) => p.len(),
        })
        .sum();
    let mut number: HashMap<V, u32, FxBuild> = HashMap::default();
    let mut distinct: Vec<V> = Vec::new();
    let mut counts: Vec<u32> = Vec::new();
    let mut entries: Vec<(u32, u32)> = Vec::with_capacity(total);
    let mut intern = |k: V, n: u32| -> u32 {
        let i = *number.entry(k).or_insert_with(|| {
            distinct.push(k);
            counts.push(0);
            (distinct.len() - 1) as u32
        });
        counts[i as usize] += n;
        i
    };
    for p in parts {
        match p {
            ChunkPostings::Dict(d) => {
                for (k, b) in d {
                    let i = intern(k, b.len() as u32);
                    entries.extend(b.iter().map(|x| (i, x)));
                }
            }
            ChunkPostings::Pairs(p) => {
                entries.extend(p.into_iter().map(|(k, x)| (intern(k, 1), x)));
            }
        }
    }
    drop(number);
    // Rank the distinct values: by an order-preserving 128-bit key first, so most comparisons
    // are one integer comparison instead of a string comparison in the tape.
    let skip = common_prefix(&distinct);
    let mut order: Vec<(SortKey, u32)> = distinct
        .iter()
        .enumerate()
        .map(|(i, v)| (v.sort_key(skip), i as u32))
        .collect();
    order.par_sort_unstable_by(|a, b| {
        a.0.cmp(&b.0)
            .then_with(|| distinct[a.1 as usize].order(&distinct[b.1 as usize]))
    });
    // A stable counting sort of the entries by rank keeps each value's documents ascending.
    let mut start_of = vec![0u32; distinct.len()];
    let mut at = 0u32;
    for &(_, i) in &order {
        start_of[i as usize] = at;
        at += counts[i as usize];
    }
    let ids = scatter(&entries, &mut start_of);
    drop(entries);
    if distinct.len() <= DICT_MAX {
        let mut dict = Vec::with_capacity(distinct.len());
        let mut from = 0usize;
        for &(_, i) in &order {
            let n = counts[i as usize] as usize;
            let docs = RoaringBitmap::from_sorted_iter(ids[from..from + n].iter().copied())
                .unwrap_or_default();
            dict.push((own(distinct[i as usize]), docs));
            from += n;
        }
        return Postings::Dict(dict);
    }
    Postings::sorted(ids)
}

/// The documents of (key, document) `entries` grouped by key, each key's in their order in
/// `entries`: key `k`'s group starts at `start[k]` (which ends where the group ends).
fn scatter(entries: &[(u32, u32)], start: &mut [u32]) -> Vec<u32> {
    let mut docs = vec![0u32; entries.len()];
    for &(k, d) in entries {
        let at = &mut start[k as usize];
        docs[*at as usize] = d;
        *at += 1;
    }
    docs
}

/// Whether the first entries of `parts` hint at mostly distinct values.
fn many_distinct<V: std::hash::Hash + Eq + Copy>(parts: &[ChunkPostings<V>]) -> bool {
    const SAMPLE: usize = 16 * 1024;
    let mut seen: std::collections::HashSet<V, FxBuild> = Default::default();
    let mut n = 0usize;
    'outer: for p in parts {
        match p {
            ChunkPostings::Dict(d) => {
                for (k, b) in d {
                    seen.insert(*k);
                    n += b.len() as usize;
                    if n >= SAMPLE {
                        break 'outer;
                    }
                }
            }
            ChunkPostings::Pairs(p) => {
                for (k, _) in p {
                    seen.insert(*k);
                    n += 1;
                    if n >= SAMPLE {
                        break 'outer;
                    }
                }
            }
        }
    }
    seen.len() * 4 > n
}

/// One entry to sort: the value's key (as two words, so an entry takes 24 bytes), the
/// document, and where the value is in the list of values.
#[derive(Clone, Copy)]
struct SortEntry {
    hi: u64,
    lo: u64,
    doc: u32,
    value: u32,
}

/// Sorted postings from (value, document) pairs, sorted by an order-preserving 128-bit key
/// first (taken past the bytes every value shares, so timestamps of one minute still differ
/// in it), so most comparisons are integer comparisons, not string comparisons in the tape.
fn sorted_pairs<V: SortValue, O>(parts: Vec<ChunkPostings<V>>) -> Postings<O> {
    let total = parts
        .iter()
        .map(|p| match p {
            ChunkPostings::Dict(d) => d.iter().map(|(_, b)| b.len() as usize).sum(),
            ChunkPostings::Pairs(p) => p.len(),
        })
        .sum();
    // The entries first, keys once every value (and so their shared prefix) is known.
    let mut values: Vec<V> = Vec::new();
    let mut pairs: Vec<SortEntry> = Vec::with_capacity(total);
    let mut add = |value: V, docs: &mut dyn Iterator<Item = u32>| {
        let v = values.len() as u32;
        values.push(value);
        pairs.extend(docs.map(|doc| SortEntry {
            hi: 0,
            lo: 0,
            doc,
            value: v,
        }));
    };
    for p in parts {
        match p {
            ChunkPostings::Dict(d) => {
                for (k, b) in d {
                    add(k, &mut b.iter());
                }
            }
            ChunkPostings::Pairs(p) => {
                for (k, x) in p {
                    add(k, &mut std::iter::once(x));
                }
            }
        }
    }
    let skip = common_prefix(&values);
    for e in &mut pairs {
        let key = values[e.value as usize].sort_key(skip);
        (e.hi, e.lo) = ((key >> 64) as u64, key as u64);
    }
    pairs.par_sort_unstable_by(|a, b| {
        (a.hi, a.lo)
            .cmp(&(b.hi, b.lo))
            .then_with(|| {
                if a.value == b.value {
                    Ordering::Equal
                } else {
                    values[a.value as usize].order(&values[b.value as usize])
                }
            })
            .then(a.doc.cmp(&b.doc))
    });
    Postings::sorted(pairs.into_iter().map(|e| e.doc).collect())
}

const BUILD_CHUNK: usize = 8192;
/// Chunks one walker goes through in a row.
const WALK_RUN: usize = 2;

impl CollectionIndex {
    /// Builds the indexes of one collection under `policy`, in parallel.
    pub fn build(coll: Collection<'_>, policy: &IndexPolicy) -> CollectionIndex {
        let n = coll.len();
        let mut all = RoaringBitmap::new();
        all.insert_range(0..n as u32);
        if policy.include.is_empty() || n == 0 {
            return CollectionIndex {
                paths: HashMap::new(),
                all,
            };
        }
        let store = coll.store();
        let starts: Vec<usize> = (0..n).step_by(BUILD_CHUNK).collect();
        // One walker goes through a run of consecutive chunks, keeping its path trie and the
        // buffers it collects into (which each chunk leaves empty but allocated).
        let parts: Vec<Vec<(Box<[u32]>, ChunkSlot<'_>)>> = starts
            .par_chunks(WALK_RUN)
            .flat_map_iter(|run| {
                let mut w = Walker::new(policy, store);
                run.iter()
                    .map(|&s| {
                        w.base = s as u32;
                        for id in s..(s + BUILD_CHUNK).min(n) {
                            w.visit(id as u32, coll.doc(id as u32), 0);
                        }
                        w.slots
                            .iter_mut()
                            .filter_map(|(k, slot)| Some((k.clone(), slot.take(s as u32)?)))
                            .collect()
                    })
                    .collect::<Vec<_>>()
            })
            .collect();
        // Gather each path's slots in chunk order (so every list stays sorted by document
        // id); the paths are then merged on all cores.
        let mut merged: HashMap<Box<[u32]>, Vec<ChunkSlot<'_>>> = HashMap::new();
        for part in parts {
            for (k, v) in part {
                merged.entry(k).or_default().push(v);
            }
        }
        let merged: Vec<(Box<[u32]>, Vec<ChunkSlot<'_>>)> = merged.into_iter().collect();
        let paths: HashMap<Box<[u32]>, LazyPath> = merged
            .into_par_iter()
            .map(|(keys, slots)| {
                let kinds: [RoaringBitmap; KINDS] =
                    std::array::from_fn(|i| slots.iter().map(|s| &s.kinds[i]).union());
                let trues = slots.iter().map(|s| &s.trues).union();
                let (strings, numbers): (Vec<_>, Vec<_>) =
                    slots.into_iter().map(|s| (s.strings, s.numbers)).unzip();
                let idx = PathIndex {
                    keys: keys.clone(),
                    defined: kinds.iter().union(),
                    kinds,
                    trues,
                    strings: postings(strings, |v| v.into()),
                    numbers: postings(numbers, f64::from_bits),
                };
                (keys, LazyPath::ready(idx))
            })
            .collect();
        CollectionIndex { paths, all }
    }

    /// Size figures.
    pub fn stats(&self) -> IndexStats {
        IndexStats {
            paths: self.paths.len(),
            entries: self.paths.values().map(|p| p.entries).sum(),
            bytes: self.paths.values().map(|p| p.bytes).sum::<usize>() + self.all.serialized_size(),
        }
    }

    /// All document ids.
    pub fn all(&self) -> &RoaringBitmap {
        &self.all
    }

    /// The postings of a path given as key ids, if it is indexed.
    pub fn path(&self, keys: &[u32]) -> Option<&PathIndex> {
        self.paths.get(keys).map(LazyPath::get)
    }

    /// The indexed paths, as key ids (without decoding their postings).
    pub fn path_keys(&self) -> impl Iterator<Item = &[u32]> {
        self.paths.keys().map(|k| &**k)
    }
}

/// A compiled path, resolved against the index: where its postings are, or why there are none.
enum Resolved<'i> {
    /// The path is indexed (in the base, the delta or both).
    Indexed(Leaf<'i>),
    /// The path is covered by the policy but no document has it: Undefined everywhere.
    Nowhere,
    /// The index cannot answer for this path.
    Unindexed,
}

/// The postings of one path: the base index's and the changes written since.
#[derive(Clone, Copy)]
struct Leaf<'i> {
    base: Option<&'i PathIndex>,
    delta: Option<&'i DeltaPath>,
}

type Set<'i> = Cow<'i, RoaringBitmap>;

impl<'i> Leaf<'i> {
    /// `(base − changed) ∪ delta` of one kind of posting, where the delta's part is the
    /// union of the sets `d` picks.
    fn mix(
        self,
        b: impl FnOnce(&'i PathIndex) -> Set<'i>,
        d: impl FnOnce(&'i DeltaPath) -> &'i [Bits],
    ) -> Set<'i> {
        match (self.base, self.delta) {
            (Some(p), None) => b(p),
            (None, Some(dp)) => match d(dp) {
                [one] => one.bitmap(),
                parts => {
                    let mut x = RoaringBitmap::new();
                    for part in parts {
                        part.union_into(&mut x);
                    }
                    Cow::Owned(x)
                }
            },
            (Some(p), Some(dp)) => {
                let mut x = b(p).into_owned();
                dp.changed.subtract_from(&mut x);
                for part in d(dp) {
                    part.union_into(&mut x);
                }
                Cow::Owned(x)
            }
            (None, None) => Cow::Owned(RoaringBitmap::new()),
        }
    }

    fn kind(self, slot: usize) -> Set<'i> {
        self.mix(
            |p| Cow::Borrowed(&p.kinds[slot]),
            |d| std::slice::from_ref(&d.kinds[slot]),
        )
    }

    fn trues(self) -> Set<'i> {
        self.mix(
            |p| Cow::Borrowed(&p.trues),
            |d| std::slice::from_ref(&d.trues),
        )
    }

    fn defined(self) -> Set<'i> {
        self.mix(|p| Cow::Borrowed(&p.defined), |d| &d.kinds[..])
    }

    fn falses(self) -> RoaringBitmap {
        &*self.kind(kind_slot(Kind::Bool)) - &*self.trues()
    }

    fn sorted_base(self) -> bool {
        self.base.is_some_and(|pi| {
            matches!(pi.strings, Postings::Sorted { .. })
                || matches!(pi.numbers, Postings::Sorted { .. })
        })
    }
}

/// Whether `v` lies below the lower bound `lo`.
fn below<T: PartialOrd + ?Sized>(v: &T, lo: Bound<&T>) -> bool {
    match lo {
        Bound::Included(x) => v < x,
        Bound::Excluded(x) => v <= x,
        Bound::Unbounded => false,
    }
}

/// An index over a whole store: one [`CollectionIndex`] per collection.
#[derive(Debug, Default)]
pub struct StoreIndex {
    pub(crate) policy: Option<IndexPolicy>,
    pub(crate) colls: [CollectionIndex; 3],
}

impl StoreIndex {
    /// Builds the indexes of every collection of `store`.
    pub fn build(store: &Store, policy: &IndexPolicy) -> StoreIndex {
        let colls =
            CollectionKind::ALL.map(|k| CollectionIndex::build(store.collection(k), policy));
        StoreIndex {
            policy: Some(policy.clone()),
            colls,
        }
    }

    /// The index of one collection.
    pub fn collection(&self, kind: CollectionKind) -> &CollectionIndex {
        &self.colls[kind as usize]
    }

    /// Size figures over all collections.
    pub fn stats(&self) -> IndexStats {
        self.colls
            .iter()
            .map(CollectionIndex::stats)
            .fold(IndexStats::default(), |a, b| IndexStats {
                paths: a.paths + b.paths,
                entries: a.entries + b.entries,
                bytes: a.bytes + b.bytes,
            })
    }

    /// The policy the index was built with.
    pub fn policy(&self) -> Option<&IndexPolicy> {
        self.policy.as_ref()
    }
}

/// Answers conditions of one query from one collection's index.
pub struct Lookup<'i, 's> {
    index: &'i CollectionIndex,
    policy: &'i IndexPolicy,
    coll: Collection<'s>,
    prefer_residual: bool,
    delta: Option<&'i DeltaIndex>,
    all: &'i RoaringBitmap,
}

fn key_id(k: &Key) -> Result<Option<u32>, ()> {
    // Sargable only when the name has exactly one spelling store-wide (or none at all), so that
    // the index path and the evaluator's case-insensitive lookup find the same member.
    match k.folded_ids.len() {
        0 => Ok(None),
        1 => Ok(Some(k.folded_ids[0])),
        _ => Err(()),
    }
}

impl<'i, 's> Lookup<'i, 's> {
    /// A lookup over `coll` with its `index`.
    pub fn new(index: &'i StoreIndex, coll: Collection<'s>) -> Option<Lookup<'i, 's>> {
        let policy = index.policy.as_ref()?;
        let index = index.collection(coll.kind());
        Some(Lookup {
            index,
            policy,
            coll,
            prefer_residual: false,
            delta: None,
            all: &index.all,
        })
    }

    /// Answers over the base index plus the changes in `delta`, where the live documents are
    /// `all` (the base's documents less the deleted ones plus the created ones; `None` when
    /// they are the base's).
    pub fn with_delta(mut self, delta: &'i DeltaIndex, all: Option<&'i RoaringBitmap>) -> Self {
        self.delta = Some(delta);
        if let Some(all) = all {
            self.all = all;
        }
        self
    }

    /// Prefer re-checking expensive conjuncts per document over materialising them: right for
    /// `TOP n` row queries, which stop after `n` matches. A range or prefix over a path with
    /// many distinct values is expensive (its documents must be sorted into a bitmap); when an
    /// `AND` also has a cheap conjunct, the expensive ones become a residual filter.
    pub fn prefer_residual(mut self, yes: bool) -> Self {
        self.prefer_residual = yes;
        self
    }

    /// Whether answering `e` means materialising a range of a sorted posting array.
    fn is_expensive(&self, e: &CExpr) -> bool {
        let path = match e {
            CExpr::Compare(CompareOp::Eq | CompareOp::Ne, _, _) => return false,
            CExpr::Compare(_, a, b) => match (&**a, &**b) {
                (CExpr::Path(p), CExpr::Const(_)) | (CExpr::Const(_), CExpr::Path(p)) => p,
                _ => return false,
            },
            CExpr::Call(Func::StartsWith, args) => match args.first() {
                Some(CExpr::Path(p)) => p,
                _ => return false,
            },
            _ => return false,
        };
        matches!(self.resolve(path), Resolved::Indexed(leaf) if leaf.sorted_base())
    }

    fn resolve(&self, p: &CPath) -> Resolved<'i> {
        if p.root != Root::Doc || p.steps.is_empty() {
            return Resolved::Unindexed;
        }
        let mut ids = Vec::with_capacity(p.steps.len());
        let mut missing = false;
        for s in &p.steps {
            let Step::Member(k) = s else {
                return Resolved::Unindexed;
            };
            match key_id(k) {
                Ok(Some(id)) => ids.push(id),
                Ok(None) => missing = true,
                Err(()) => return Resolved::Unindexed,
            }
        }
        if missing {
            return Resolved::Nowhere;
        }
        let leaf = Leaf {
            base: self.index.path(&ids),
            delta: self.delta.and_then(|d| d.path(&ids)),
        };
        if leaf.base.is_some() || leaf.delta.is_some() {
            return Resolved::Indexed(leaf);
        }
        // Covered but absent: no document has it. The stored spelling may differ from the
        // query's, so check the policy against the stored names (names written after the
        // base was built are not in the store's dictionary: leave those to a scan).
        let store = self.coll.store();
        if ids.iter().any(|&i| i as usize >= store.key_count()) {
            return Resolved::Unindexed;
        }
        let stored: Vec<&str> = ids.iter().map(|&i| store.key_name(i)).collect();
        if self.policy.covers(&stored) {
            Resolved::Nowhere
        } else {
            Resolved::Unindexed
        }
    }

    fn value_str(&self, pi: &PathIndex, doc: u32) -> &'s str {
        walk(self.coll.doc(doc), &pi.keys)
            .and_then(|n| n.as_str())
            .unwrap_or("")
    }

    fn value_num(&self, pi: &PathIndex, doc: u32) -> f64 {
        walk(self.coll.doc(doc), &pi.keys)
            .and_then(|n| n.as_f64())
            .unwrap_or(f64::NAN)
    }

    /// Where the base postings of `pi` hold a string `v` at or above `lo` with `end(v)`:
    /// `end` is monotone (true then false over the value order), so this is one contiguous
    /// range of the dictionary or of the sorted array.
    fn str_range(&self, pi: &PathIndex, lo: Bound<&str>, end: impl Fn(&str) -> bool) -> Range {
        let start = |v: &str| below(v, lo);
        match &pi.strings {
            Postings::Dict(d) => {
                let a = d.partition_point(|(v, _)| start(v));
                a..d.partition_point(|(v, _)| end(v)).max(a)
            }
            Postings::Sorted { ids, .. } => {
                let a = ids.partition_point(|&x| start(self.value_str(pi, x)));
                a..ids.partition_point(|&x| end(self.value_str(pi, x))).max(a)
            }
        }
    }

    /// As [`Self::str_range`], for numbers.
    fn num_range(&self, pi: &PathIndex, lo: Bound<f64>, end: impl Fn(f64) -> bool) -> Range {
        let start = |v: f64| below(&v, lo.as_ref());
        match &pi.numbers {
            Postings::Dict(d) => {
                let a = d.partition_point(|(v, _)| start(*v));
                a..d.partition_point(|(v, _)| end(*v)).max(a)
            }
            Postings::Sorted { ids, .. } => {
                let a = ids.partition_point(|&x| start(self.value_num(pi, x)));
                a..ids.partition_point(|&x| end(self.value_num(pi, x))).max(a)
            }
        }
    }

    /// Documents holding a string `v` at or above `lo` with `end(v)` (see [`Self::str_range`]).
    fn str_select(
        &self,
        leaf: Leaf<'i>,
        lo: Bound<&str>,
        end: impl Fn(&str) -> bool,
    ) -> RoaringBitmap {
        let base = leaf
            .base
            .map(|pi| range_set(&pi.strings, self.str_range(pi, lo, &end)));
        let delta = leaf.delta.map(|dp| {
            let from: Bound<Arc<str>> = match lo {
                Bound::Included(x) => Bound::Included(x.into()),
                Bound::Excluded(x) => Bound::Excluded(x.into()),
                Bound::Unbounded => Bound::Unbounded,
            };
            dp.strings
                .range((from, Bound::Unbounded))
                .take_while(|(v, _)| end(v))
                .map(|(_, b)| &**b)
                .union()
        });
        combine(leaf, base, delta)
    }

    /// As [`Self::str_select`], for numbers.
    fn num_select(
        &self,
        leaf: Leaf<'i>,
        lo: Bound<f64>,
        end: impl Fn(f64) -> bool,
    ) -> RoaringBitmap {
        let base = leaf
            .base
            .map(|pi| range_set(&pi.numbers, self.num_range(pi, lo, &end)));
        let delta = leaf.delta.map(|dp| {
            dp.numbers
                .range((lo.map(OrderedFloat), Bound::Unbounded))
                .take_while(|(v, _)| end(v.0))
                .map(|(_, b)| &**b)
                .union()
        });
        combine(leaf, base, delta)
    }

    /// How many documents make `e` true, when that is the length of one range of the
    /// postings (or of a few): `e` compares an indexed path with a string or a number (`=`,
    /// `<`, `<=`, `>`, `>=`, either side), is an `AND` of such comparisons of one path, an
    /// `IN` list of strings and numbers, or `STARTSWITH` of a path, no write changed the path,
    /// and no document was created or deleted. `None`
    /// otherwise (then [`Lookup::answer`] gives the documents to count).
    ///
    /// A path has one value per document, so the entries of a range are as many documents;
    /// no set of documents is built.
    pub fn count(&self, e: &CExpr) -> Option<u64> {
        // Created or deleted documents: the live documents are not the base's. (Creates and
        // deletes also put every path their twin holds in the delta, which `unwritten`
        // declines; this keeps the count right should that ever change.)
        if !std::ptr::eq(self.all, &self.index.all) {
            return None;
        }
        let (p, span) = match e {
            CExpr::Call(Func::StartsWith, args) => match args.as_slice() {
                [CExpr::Path(p), CExpr::Const(Const::String(prefix))] => {
                    let pi = self.unwritten(p)?;
                    let prefix: &str = prefix;
                    let r = self.str_range(pi, Bound::Included(prefix), |v| {
                        v < prefix || v.starts_with(prefix)
                    });
                    return Some(range_len(&pi.strings, r));
                }
                _ => return None,
            },
            CExpr::And(items) => match merge_spans(items).as_slice() {
                [Part::Span(p, span)] => (*p, *span),
                _ => return None,
            },
            // The values of an `IN` list are disjoint ranges once repeats are dropped.
            CExpr::In {
                expr,
                list,
                negated: false,
            } => {
                let CExpr::Path(p) = &**expr else {
                    return None;
                };
                let pi = self.unwritten(p)?;
                let mut seen: Vec<Span<'_>> = Vec::with_capacity(list.len());
                let mut n = 0;
                for c in list {
                    let span = Span::of(CompareOp::Eq, c)?;
                    if !seen.contains(&span) {
                        n += self.span_len(pi, span);
                        seen.push(span);
                    }
                }
                return Some(n);
            }
            e => span_of(e)?,
        };
        Some(self.span_len(self.unwritten(p)?, span))
    }

    /// How many documents of the base postings `pi` hold a value in `span`.
    fn span_len(&self, pi: &PathIndex, span: Span<'_>) -> u64 {
        match span {
            Span::Num { lo, hi } => range_len(
                &pi.numbers,
                self.num_range(pi, lo, |v| within(&v, hi.as_ref())),
            ),
            Span::Str { lo, hi } => {
                range_len(&pi.strings, self.str_range(pi, lo, |v| within(v, hi)))
            }
        }
    }

    /// The base postings of `p` when no write changed the path (`None` when writes did, or
    /// when the path is not indexed); the postings of no document when no document has it.
    fn unwritten(&self, p: &CPath) -> Option<&'i PathIndex> {
        static NONE: std::sync::OnceLock<PathIndex> = std::sync::OnceLock::new();
        match self.resolve(p) {
            Resolved::Indexed(Leaf {
                base: Some(pi),
                delta: None,
            }) => Some(pi),
            Resolved::Indexed(_) | Resolved::Unindexed => None,
            Resolved::Nowhere => Some(NONE.get_or_init(PathIndex::default)),
        }
    }

    /// The documents whose value lies in `span`, and the slot of the span's type.
    fn span_select(&self, leaf: Leaf<'i>, span: Span<'_>) -> (RoaringBitmap, usize) {
        match span {
            Span::Num { lo, hi } => (
                self.num_select(leaf, lo, |v| within(&v, hi.as_ref())),
                kind_slot(Kind::Number),
            ),
            Span::Str { lo, hi } => (
                self.str_select(leaf, lo, |v| within(v, hi)),
                kind_slot(Kind::String),
            ),
        }
    }

    /// The documents whose value at `p` lies in `span` (and, when `need_f`, those holding
    /// another value of its type).
    fn span_answer(&self, p: &CPath, span: Span<'_>, need_f: bool) -> Answer {
        self.path_answer(p, |leaf| {
            let (t, kind) = self.span_select(leaf, span);
            let f = if need_f {
                &*leaf.kind(kind) - &t
            } else {
                RoaringBitmap::new()
            };
            Answer::Exact { t, f }
        })
        .unwrap_or_else(Self::nothing)
    }

    fn part_answer(&self, part: &Part<'_>, need_f: bool) -> Answer {
        match part {
            Part::Expr(e) => self.eval(e, need_f),
            Part::Span(p, span) => self.span_answer(p, *span, need_f),
        }
    }

    fn part_is_expensive(&self, part: &Part<'_>) -> bool {
        match part {
            Part::Expr(e) => self.is_expensive(e),
            Part::Span(p, _) => {
                matches!(self.resolve(p), Resolved::Indexed(leaf) if leaf.sorted_base())
            }
        }
    }

    /// Documents where the path equals the constant (true set) and where it has the
    /// constant's type but another value (false set).
    fn compare(&self, leaf: Leaf<'i>, op: CompareOp, c: &Const, need_f: bool) -> Answer {
        let (t, same_type): (RoaringBitmap, usize) = match c {
            Const::String(_) | Const::Number(_) => {
                // `!=` selects the equal values: its sets are swapped below.
                let eq = if op == CompareOp::Ne {
                    CompareOp::Eq
                } else {
                    op
                };
                let Some(span) = Span::of(eq, c) else {
                    return Answer::Unknown;
                };
                self.span_select(leaf, span)
            }
            Const::Bool(b) => {
                let bools = || leaf.kind(kind_slot(Kind::Bool)).into_owned();
                let t = match (op, b) {
                    (CompareOp::Eq | CompareOp::Ne, true) => leaf.trues().into_owned(),
                    (CompareOp::Eq | CompareOp::Ne, false) => leaf.falses(),
                    (CompareOp::Lt, true) => leaf.falses(),
                    (CompareOp::Lt, false) => RoaringBitmap::new(),
                    (CompareOp::Le, true) => bools(),
                    (CompareOp::Le, false) => leaf.falses(),
                    (CompareOp::Gt, true) => RoaringBitmap::new(),
                    (CompareOp::Gt, false) => leaf.trues().into_owned(),
                    (CompareOp::Ge, true) => leaf.trues().into_owned(),
                    (CompareOp::Ge, false) => bools(),
                };
                (t, kind_slot(Kind::Bool))
            }
            Const::Null => {
                let t = match op {
                    CompareOp::Eq | CompareOp::Le | CompareOp::Ge | CompareOp::Ne => {
                        leaf.kind(kind_slot(Kind::Null)).into_owned()
                    }
                    CompareOp::Lt | CompareOp::Gt => RoaringBitmap::new(),
                };
                (t, kind_slot(Kind::Null))
            }
            // Undefined, arrays and objects never compare: Undefined everywhere.
            Const::Undefined | Const::Json(_) => {
                return Answer::Exact {
                    t: RoaringBitmap::new(),
                    f: RoaringBitmap::new(),
                };
            }
        };
        let f = if need_f || op == CompareOp::Ne {
            &*leaf.kind(same_type) - &t
        } else {
            RoaringBitmap::new()
        };
        if op == CompareOp::Ne {
            Answer::Exact { t: f, f: t }
        } else {
            Answer::Exact { t, f }
        }
    }

    fn primitives(leaf: Leaf<'i>) -> RoaringBitmap {
        let mut out = leaf.kind(0).into_owned();
        for k in 1..4 {
            out |= &*leaf.kind(k);
        }
        out
    }

    fn nothing() -> Answer {
        Answer::Exact {
            t: RoaringBitmap::new(),
            f: RoaringBitmap::new(),
        }
    }

    fn path_answer(&self, p: &CPath, f: impl FnOnce(Leaf<'i>) -> Answer) -> Option<Answer> {
        match self.resolve(p) {
            Resolved::Indexed(leaf) => Some(f(leaf)),
            Resolved::Nowhere => None,
            Resolved::Unindexed => Some(Answer::Unknown),
        }
    }

    /// What the index says about condition `e`: the documents where it is `true` (the false
    /// set of an exact answer is left empty; see [`Lookup::answer_full`]).
    pub fn answer(&self, e: &CExpr) -> Answer {
        self.eval(e, false)
    }

    /// As [`Lookup::answer`], with the false set of an exact answer filled in.
    pub fn answer_full(&self, e: &CExpr) -> Answer {
        self.eval(e, true)
    }

    /// The answer for `e`; the false set is computed only when `need_f` (under `NOT`, or when
    /// the caller needs it), since it costs a pass over a whole type's bitmap.
    fn eval(&self, e: &CExpr, need_f: bool) -> Answer {
        match e {
            CExpr::Const(Const::Bool(true)) => Answer::Exact {
                t: self.all.clone(),
                f: RoaringBitmap::new(),
            },
            CExpr::Const(Const::Bool(false)) => Answer::Exact {
                t: RoaringBitmap::new(),
                f: self.all.clone(),
            },
            CExpr::Const(_) => Self::nothing(),
            CExpr::Path(p) => self
                .path_answer(p, |leaf| Answer::Exact {
                    t: leaf.trues().into_owned(),
                    f: if need_f {
                        leaf.falses()
                    } else {
                        RoaringBitmap::new()
                    },
                })
                .unwrap_or_else(Self::nothing),
            CExpr::Not(x) => self.eval(x, true).not(),
            CExpr::And(items) => {
                // Comparisons of one path with constants of one type make one range.
                let items = merge_spans(items);
                if self.prefer_residual {
                    let (expensive, cheap): (Vec<&Part<'_>>, Vec<&Part<'_>>) =
                        items.iter().partition(|i| self.part_is_expensive(i));
                    if !expensive.is_empty() && !cheap.is_empty() {
                        let mut c: Option<RoaringBitmap> = None;
                        for item in cheap {
                            if let Some(s) = self.part_answer(item, false).candidates() {
                                c = Some(match c {
                                    None => s.clone(),
                                    Some(c) => c & s,
                                });
                            }
                        }
                        if let Some(c) = c {
                            return Answer::Candidates(c);
                        }
                    }
                }
                let answers: Vec<Answer> =
                    items.iter().map(|i| self.part_answer(i, need_f)).collect();
                let all_exact = answers.iter().all(|a| matches!(a, Answer::Exact { .. }));
                if all_exact {
                    let mut t: Option<RoaringBitmap> = None;
                    let mut f = RoaringBitmap::new();
                    for a in answers {
                        if let Answer::Exact { t: at, f: af } = a {
                            t = Some(match t {
                                None => at,
                                Some(t) => t & at,
                            });
                            f |= af;
                        }
                    }
                    Answer::Exact {
                        t: t.unwrap_or_else(|| self.all.clone()),
                        f,
                    }
                } else {
                    let mut c: Option<RoaringBitmap> = None;
                    for a in &answers {
                        if let Some(s) = a.candidates() {
                            c = Some(match c {
                                None => s.clone(),
                                Some(c) => c & s,
                            });
                        }
                    }
                    c.map_or(Answer::Unknown, Answer::Candidates)
                }
            }
            CExpr::Or(items) => {
                let answers: Vec<Answer> = items.iter().map(|i| self.eval(i, need_f)).collect();
                if answers.iter().any(|a| matches!(a, Answer::Unknown)) {
                    return Answer::Unknown;
                }
                let all_exact = answers.iter().all(|a| matches!(a, Answer::Exact { .. }));
                let mut t = RoaringBitmap::new();
                let mut f: Option<RoaringBitmap> = None;
                for a in answers {
                    match a {
                        Answer::Exact { t: at, f: af } => {
                            t |= at;
                            f = Some(match f {
                                None => af,
                                Some(f) => f & af,
                            });
                        }
                        Answer::Candidates(c) => t |= c,
                        Answer::Unknown => {}
                    }
                }
                if all_exact {
                    Answer::Exact {
                        t,
                        f: f.unwrap_or_default(),
                    }
                } else {
                    Answer::Candidates(t)
                }
            }
            CExpr::Compare(op, a, b) => match (&**a, &**b) {
                (CExpr::Path(p), CExpr::Const(c)) => self
                    .path_answer(p, |leaf| self.compare(leaf, *op, c, need_f))
                    .unwrap_or_else(Self::nothing),
                (CExpr::Const(c), CExpr::Path(p)) => self
                    .path_answer(p, |leaf| self.compare(leaf, op.flip(), c, need_f))
                    .unwrap_or_else(Self::nothing),
                _ => Answer::Unknown,
            },
            CExpr::In {
                expr,
                list,
                negated,
            } => {
                let CExpr::Path(p) = &**expr else {
                    return Answer::Unknown;
                };
                let ans = self
                    .path_answer(p, |leaf| {
                        let mut t = RoaringBitmap::new();
                        for c in list {
                            match self.compare(leaf, CompareOp::Eq, c, false) {
                                Answer::Exact { t: ct, .. } => t |= ct,
                                _ => return Answer::Unknown,
                            }
                        }
                        let f = if need_f || *negated {
                            Self::primitives(leaf) - &t
                        } else {
                            RoaringBitmap::new()
                        };
                        Answer::Exact { t, f }
                    })
                    .unwrap_or_else(Self::nothing);
                if *negated { ans.not() } else { ans }
            }
            CExpr::Call(func, args) => self.call(*func, args, need_f),
            _ => Answer::Unknown,
        }
    }

    fn call(&self, func: Func, args: &[CExpr], need_f: bool) -> Answer {
        let Some(CExpr::Path(p)) = args.first() else {
            return Answer::Unknown;
        };
        let all = self.all;
        let type_check = |slots: &[usize]| {
            self.path_answer(p, |leaf| {
                let mut t = RoaringBitmap::new();
                for &s in slots {
                    t |= &*leaf.kind(s);
                }
                let f = if need_f {
                    all - &t
                } else {
                    RoaringBitmap::new()
                };
                Answer::Exact { t, f }
            })
            .unwrap_or_else(|| Answer::Exact {
                t: RoaringBitmap::new(),
                f: all.clone(),
            })
        };
        match func {
            Func::IsDefined => self
                .path_answer(p, |leaf| {
                    let t = leaf.defined().into_owned();
                    let f = if need_f {
                        all - &t
                    } else {
                        RoaringBitmap::new()
                    };
                    Answer::Exact { t, f }
                })
                .unwrap_or_else(|| Answer::Exact {
                    t: RoaringBitmap::new(),
                    f: all.clone(),
                }),
            Func::IsNull => type_check(&[0]),
            Func::IsBool => type_check(&[1]),
            Func::IsNumber => type_check(&[2]),
            Func::IsString => type_check(&[3]),
            Func::IsArray => type_check(&[4]),
            Func::IsObject => type_check(&[5]),
            Func::IsPrimitive => type_check(&[0, 1, 2, 3]),
            Func::StartsWith => {
                let Some(CExpr::Const(Const::String(prefix))) = args.get(1) else {
                    return Answer::Unknown;
                };
                let prefix: &str = prefix;
                self.path_answer(p, |leaf| {
                    let t = self.str_select(leaf, Bound::Included(prefix), |v| {
                        v < prefix || v.starts_with(prefix)
                    });
                    let f = if need_f {
                        &*leaf.kind(kind_slot(Kind::String)) - &t
                    } else {
                        RoaringBitmap::new()
                    };
                    Answer::Exact { t, f }
                })
                .unwrap_or_else(Self::nothing)
            }
            _ => Answer::Unknown,
        }
    }

    /// Groups for `GROUP BY path` answered from the index: for each distinct value among
    /// `docs`, its documents, ordered by their first document. `None` when the path is not
    /// indexed, has too many distinct values to keep a dictionary, or holds arrays or objects
    /// among `docs`.
    pub fn groups(&self, p: &CPath, docs: &RoaringBitmap) -> Option<Vec<RoaringBitmap>> {
        let leaf = match self.resolve(p) {
            Resolved::Indexed(leaf) => leaf,
            Resolved::Nowhere => return Some(vec![docs.clone()]).filter(|_| !docs.is_empty()),
            Resolved::Unindexed => return None,
        };
        let composite = &*leaf.kind(kind_slot(Kind::Array)) | &*leaf.kind(kind_slot(Kind::Object));
        if !composite.is_disjoint(docs) {
            return None;
        }
        let (strings, numbers) = match leaf.base {
            Some(pi) => match (&pi.strings, &pi.numbers) {
                (Postings::Dict(s), Postings::Dict(n)) => (&s[..], &n[..]),
                _ => return None,
            },
            None => (&[][..], &[][..]),
        };
        let changed = leaf.delta.map(|d| &d.changed);
        let mut groups: Vec<RoaringBitmap> = Vec::new();
        let mut push = |b: RoaringBitmap| {
            if !b.is_empty() {
                groups.push(b);
            }
        };
        push(docs - &*leaf.defined());
        push(docs & &*leaf.kind(kind_slot(Kind::Null)));
        push(docs & &*leaf.trues());
        push(docs & &leaf.falses());
        let base_part = |b: &RoaringBitmap| {
            let mut g = docs & b;
            if let Some(c) = changed {
                c.subtract_from(&mut g);
            }
            g
        };
        let dstrings = leaf.delta.map(|d| &d.strings);
        for (v, b) in strings {
            let mut g = base_part(b);
            if let Some(extra) = dstrings.and_then(|m| m.get(&**v)) {
                g |= docs & &**extra;
            }
            push(g);
        }
        if let Some(m) = dstrings {
            for (v, b) in m {
                if strings.binary_search_by(|(x, _)| (**x).cmp(&**v)).is_err() {
                    push(docs & &**b);
                }
            }
        }
        let dnumbers = leaf.delta.map(|d| &d.numbers);
        for (v, b) in numbers {
            let mut g = base_part(b);
            if let Some(extra) = dnumbers.and_then(|m| m.get(&OrderedFloat(*v))) {
                g |= docs & &**extra;
            }
            push(g);
        }
        if let Some(m) = dnumbers {
            for (v, b) in m {
                if numbers
                    .binary_search_by(|(x, _)| x.total_cmp(&v.0))
                    .is_err()
                {
                    push(docs & &**b);
                }
            }
        }
        groups.sort_by_key(|g| g.min());
        Some(groups)
    }
}

/// `(base − changed) ∪ delta` of a selection made on both parts of a leaf.
fn combine(
    leaf: Leaf<'_>,
    base: Option<RoaringBitmap>,
    delta: Option<RoaringBitmap>,
) -> RoaringBitmap {
    let mut out = base.unwrap_or_default();
    if let Some(dp) = leaf.delta {
        dp.changed.subtract_from(&mut out);
    }
    if let Some(d) = delta {
        out |= d;
    }
    out
}

/// Bounds on the values of one type at a path: what comparisons of the path with constants
/// (`=`, `<`, `<=`, `>`, `>=`) say, alone or met in an `AND`.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Span<'e> {
    Num {
        lo: Bound<f64>,
        hi: Bound<f64>,
    },
    Str {
        lo: Bound<&'e str>,
        hi: Bound<&'e str>,
    },
}

/// A conjunct of an `AND` as the index answers it: as written, or met with the other
/// comparisons of its path into one range.
#[derive(Debug)]
enum Part<'e> {
    Expr(&'e CExpr),
    Span(&'e CPath, Span<'e>),
}

/// `e` as bounds on a path, when it compares a path with a number (not NaN) or a string.
fn span_of(e: &CExpr) -> Option<(&CPath, Span<'_>)> {
    let CExpr::Compare(op, a, b) = e else {
        return None;
    };
    match (&**a, &**b) {
        (CExpr::Path(p), CExpr::Const(c)) => Some((p, Span::of(*op, c)?)),
        (CExpr::Const(c), CExpr::Path(p)) => Some((p, Span::of(op.flip(), c)?)),
        _ => None,
    }
}

/// The higher of two lower bounds (the exclusive one when they are at one value).
fn higher<T: PartialOrd + Copy>(a: Bound<T>, b: Bound<T>) -> Bound<T> {
    match (a, b) {
        (Bound::Unbounded, x) | (x, Bound::Unbounded) => x,
        (Bound::Included(x), Bound::Included(y)) => Bound::Included(if y > x { y } else { x }),
        (Bound::Excluded(x), Bound::Excluded(y)) => Bound::Excluded(if y > x { y } else { x }),
        (Bound::Included(x), Bound::Excluded(y)) | (Bound::Excluded(y), Bound::Included(x)) => {
            if x > y {
                Bound::Included(x)
            } else {
                Bound::Excluded(y)
            }
        }
    }
}

/// The lower of two upper bounds (the exclusive one when they are at one value).
fn lower<T: PartialOrd + Copy>(a: Bound<T>, b: Bound<T>) -> Bound<T> {
    match (a, b) {
        (Bound::Unbounded, x) | (x, Bound::Unbounded) => x,
        (Bound::Included(x), Bound::Included(y)) => Bound::Included(if y < x { y } else { x }),
        (Bound::Excluded(x), Bound::Excluded(y)) => Bound::Excluded(if y < x { y } else { x }),
        (Bound::Included(x), Bound::Excluded(y)) | (Bound::Excluded(y), Bound::Included(x)) => {
            if x < y {
                Bound::Included(x)
            } else {
                Bound::Excluded(y)
            }
        }
    }
}

impl<'e> Span<'e> {
    /// The values `v` for which `v op c` holds, when `c` is a number (not NaN) or a string
    /// and `op` is not `!=`.
    fn of(op: CompareOp, c: &'e Const) -> Option<Span<'e>> {
        fn bounds<T: Copy>(op: CompareOp, x: T) -> Option<(Bound<T>, Bound<T>)> {
            Some(match op {
                CompareOp::Eq => (Bound::Included(x), Bound::Included(x)),
                CompareOp::Lt => (Bound::Unbounded, Bound::Excluded(x)),
                CompareOp::Le => (Bound::Unbounded, Bound::Included(x)),
                CompareOp::Gt => (Bound::Excluded(x), Bound::Unbounded),
                CompareOp::Ge => (Bound::Included(x), Bound::Unbounded),
                CompareOp::Ne => return None,
            })
        }
        match c {
            Const::Number(x) if !x.is_nan() => {
                // -0 is stored as 0.
                let x = if *x == 0.0 { 0.0 } else { *x };
                let (lo, hi) = bounds(op, x)?;
                Some(Span::Num { lo, hi })
            }
            Const::String(s) => {
                let (lo, hi) = bounds(op, &**s)?;
                Some(Span::Str { lo, hi })
            }
            _ => None,
        }
    }

    /// Both bounds at once; `None` for bounds of different types.
    fn meet(self, other: Span<'e>) -> Option<Span<'e>> {
        match (self, other) {
            (Span::Num { lo: a, hi: b }, Span::Num { lo: c, hi: d }) => Some(Span::Num {
                lo: higher(a, c),
                hi: lower(b, d),
            }),
            (Span::Str { lo: a, hi: b }, Span::Str { lo: c, hi: d }) => Some(Span::Str {
                lo: higher(a, c),
                hi: lower(b, d),
            }),
            _ => None,
        }
    }
}

/// The conjuncts of an `AND`, with the comparisons of one path with constants of one type
/// met into one range (in the place of the first of them); the rest as written.
fn merge_spans(items: &[CExpr]) -> Vec<Part<'_>> {
    let mut parts: Vec<Part<'_>> = Vec::with_capacity(items.len());
    // For each part made of comparisons: the first comparison and how many were met in.
    let mut met: Vec<(usize, &CExpr, usize)> = Vec::new();
    for item in items {
        let Some((p, span)) = span_of(item) else {
            parts.push(Part::Expr(item));
            continue;
        };
        let joined = met.iter_mut().find_map(|(at, _, n)| match &mut parts[*at] {
            Part::Span(q, s) if *q == p => s.meet(span).map(|m| {
                *s = m;
                *n += 1;
            }),
            _ => None,
        });
        if joined.is_none() {
            met.push((parts.len(), item, 1));
            parts.push(Part::Span(p, span));
        }
    }
    // A comparison met with no other is answered as written.
    for (at, item, n) in met {
        if n == 1 {
            parts[at] = Part::Expr(item);
        }
    }
    parts
}

/// Whether `v` lies at or below the upper bound `hi`.
fn within<T: PartialOrd + ?Sized>(v: &T, hi: Bound<&T>) -> bool {
    match hi {
        Bound::Included(x) => v <= x,
        Bound::Excluded(x) => v < x,
        Bound::Unbounded => true,
    }
}

/// A range of a path's postings: of the dictionary's values, or of the sorted array.
type Range = std::ops::Range<usize>;

/// The documents of a range of postings.
fn range_set<V>(p: &Postings<V>, r: Range) -> RoaringBitmap {
    match p {
        Postings::Dict(d) => d[r].iter().map(|(_, b)| b).union(),
        Postings::Sorted { ids, blocks } => sorted_range(ids, blocks, r.start, r.end),
    }
}

/// How many documents a range of postings holds.
fn range_len<V>(p: &Postings<V>, r: Range) -> u64 {
    match p {
        Postings::Dict(d) => d[r].iter().map(|(_, b)| b.len()).sum(),
        Postings::Sorted { .. } => r.len() as u64,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sorted_ranges_from_blocks_equal_naive_ranges() {
        // A scrambled permutation of 0..n, as value-sorted postings look.
        let n = 5 * BLOCK as u32 + 123;
        let ids: Vec<u32> = (0..n)
            .map(|i| ((u64::from(i) * 7919) % u64::from(n)) as u32)
            .collect();
        let Postings::<f64>::Sorted { ids, blocks } = Postings::sorted(ids) else {
            panic!("sorted postings expected");
        };
        assert_eq!(blocks.len(), 5);
        let bounds = [
            0,
            1,
            BLOCK - 1,
            BLOCK,
            BLOCK + 1,
            2 * BLOCK,
            3 * BLOCK + 7,
            ids.len(),
        ];
        for &lo in &bounds {
            for &hi in &bounds {
                if lo > hi {
                    continue;
                }
                let naive = sorted_bitmap(&ids[lo..hi]);
                assert_eq!(sorted_range(&ids, &blocks, lo, hi), naive, "{lo}..{hi}");
            }
        }
    }

    #[test]
    fn policy_patterns() {
        let p = IndexPolicy::default();
        assert!(p.covers(&["tags", "location", "plant"]));
        assert!(p.covers(&["properties", "reported", "temperature"]));
        assert!(!p.covers(&["properties", "reported", "$metadata", "temperature"]));
        assert!(!p.covers(&["properties"]));
        assert!(p.covers(&["deviceId"]));
        assert!(!p.covers(&["x509Thumbprint", "primaryThumbprint"]));
        let custom = IndexPolicy::from_json(r#"{"include": ["tags/*/b"], "exclude": []}"#).unwrap();
        assert!(custom.covers(&["tags", "a", "b"]));
        assert!(!custom.covers(&["tags", "a", "c"]));
        assert!(IndexPolicy::from_json(r#"{"include": "tags"}"#).is_err());
    }

    #[test]
    fn a_policy_narrowed_to_some_paths_covers_those_it_covered_only() {
        let p = IndexPolicy::default();
        let only = p.only(&[
            vec!["tags", "location", "plant"],
            vec!["tags", "location", "plant"],
            vec!["properties", "reported", "$metadata", "temperature"],
            vec!["tags", "a/b"],
            vec!["tags", "*"],
            vec!["tags", ""],
            vec!["deviceId"],
        ]);
        assert_eq!(only.include, ["tags/location/plant", "deviceId"]);
        assert!(only.exclude.is_empty());
        assert!(only.covers(&["tags", "location", "plant"]));
        assert!(only.covers(&["deviceId"]));
        assert!(!only.covers(&["tags", "location"]));
        assert!(!only.covers(&["tags", "location", "plant", "x"]));
        assert!(!only.covers(&["tags", "location", "region"]));
        assert!(!only.may_cover_below(&["properties"]));
        assert!(only.may_cover_below(&["tags", "location"]));
        let none: &[Vec<&str>] = &[];
        assert!(p.only(none).include.is_empty());
    }

    /// Documents in posting order, and whether each dictionary's values ascend.
    fn posting_order<V: PartialOrd>(p: &Postings<V>) -> (Vec<u32>, bool) {
        match p {
            Postings::Dict(d) => (
                d.iter().flat_map(|(_, b)| b.iter()).collect(),
                d.windows(2).all(|w| w[0].0 < w[1].0),
            ),
            Postings::Sorted { ids, blocks } => {
                let whole = blocks
                    .iter()
                    .enumerate()
                    .all(|(i, b)| *b == sorted_bitmap(&ids[i * BLOCK..(i + 1) * BLOCK]));
                (ids.clone(), whole)
            }
        }
    }

    #[test]
    fn postings_of_every_build_strategy_list_documents_by_value_then_id() {
        use crate::load::LoadOptions;
        use std::fmt::Write;
        // 40,000 documents, several chunks. `low`: 3 values (a dictionary in every chunk);
        // `few`: 700 values (each chunk overflows its dictionary, the path keeps one);
        // `mid`: 4,200 values repeating in runs (counted, too many for a dictionary);
        // `uniq`: a value per document (sorted pairs). `stamp` and `midp`: like `uniq` and
        // `mid`, but every value starts with the same 20 bytes (sort keys are taken past
        // them) and values of different lengths, some the prefix of others, follow.
        let n = 40_000u32;
        let mut text = String::new();
        // `sparse`: only in documents 1,000–1,999, 12,000–12,049 and 17,000–17,049 (in both
        // chunks of a walker's run at other places, then in the first chunk only).
        let sparse = |i: u32| {
            (1_000..2_000).contains(&i)
                || (12_000..12_050).contains(&i)
                || (17_000..17_050).contains(&i)
        };
        for i in 0..n {
            let sp = if sparse(i) {
                format!(r#""sparse":"s{}","#, i % 7)
            } else {
                String::new()
            };
            let _ = writeln!(
                text,
                r#"{{"deviceId":"d{i}","tags":{{{sp}"low":{},"few":"v{:03}","mid":{},"uniq":"u{:07}","stamp":"2025-01-01T00:00:00.{}","midp":"2025-01-01T00:00:00.{}"}}}}"#,
                i % 3,
                (i * 7919) % 700,
                (i / 8) % 4200,
                (i * 104_729) % n,
                (i * 104_729) % n,
                (i / 8) % 4200,
            );
        }
        let mut store = Store::new();
        let opts = LoadOptions {
            progress: false,
            ..LoadOptions::default()
        };
        store.load_bytes("t.jsonl", text.as_bytes(), &opts).unwrap();
        let index = StoreIndex::build(&store, &IndexPolicy::default());
        let devices = index.collection(CollectionKind::Devices);
        let coll = store.collection(CollectionKind::Devices);
        let key = |s: &str| store.key_id(s).unwrap();
        let value_of = |doc: u32, name: &str| {
            let v = walk(coll.doc(doc), &[key("tags"), key(name)]);
            v.map(|v| (v.as_f64(), v.as_str().map(str::to_owned)))
        };
        for (name, dict) in [
            ("low", true),
            ("few", true),
            ("mid", false),
            ("uniq", false),
            ("stamp", false),
            ("midp", false),
        ] {
            let p = devices.path(&[key("tags"), key(name)]).unwrap();
            let postings_dict = |d: bool| if d { "a dictionary" } else { "sorted ids" };
            let (order, ascending) = if name == "low" || name == "mid" {
                assert_eq!(
                    matches!(p.numbers, Postings::Dict(_)),
                    dict,
                    "{name}: {}",
                    postings_dict(dict)
                );
                posting_order(&p.numbers)
            } else {
                assert_eq!(
                    matches!(p.strings, Postings::Dict(_)),
                    dict,
                    "{name}: {}",
                    postings_dict(dict)
                );
                posting_order(&p.strings)
            };
            assert!(
                ascending,
                "{name}: dictionary values or blocks out of order"
            );
            let mut expected: Vec<u32> = (0..n).collect();
            expected.sort_by(|&a, &b| {
                let (va, vb) = (value_of(a, name).unwrap(), value_of(b, name).unwrap());
                va.0.partial_cmp(&vb.0)
                    .unwrap_or(Ordering::Equal)
                    .then_with(|| va.1.cmp(&vb.1))
                    .then(a.cmp(&b))
            });
            assert!(
                order == expected,
                "{name}: postings not in (value, id) order"
            );
        }
        let p = devices.path(&[key("tags"), key("sparse")]).unwrap();
        let expected: RoaringBitmap = (0..n).filter(|&i| sparse(i)).collect();
        assert_eq!(p.defined, expected, "sparse: defined");
        let Postings::Dict(d) = &p.strings else {
            panic!("sparse: a dictionary expected");
        };
        for (v, docs) in d {
            let want: RoaringBitmap = (0..n)
                .filter(|&i| sparse(i) && format!("s{}", i % 7) == **v)
                .collect();
            assert_eq!(docs, &want, "sparse: documents of {v}");
        }
        assert_eq!(d.len(), 7, "sparse: values");
    }
}
