//! Live collections: the loaded base store plus every write since, kept in persistent
//! structures so that a snapshot costs O(1) and never sees half of a write.
//!
//! A written document is copied out of its tape into an owned [`Doc`] held in a hash array
//! mapped trie by document id; created documents get ids after the base's; deleted ones are
//! marked in a bitmap. The index changes go to a [`DeltaIndex`] per collection, computed by
//! diffing the indexed entries of the old and new document under the paths the write touched.

use std::collections::HashMap;
use std::sync::Arc;

use imbl::HashMap as PMap;
use roaring::RoaringBitmap;
use twinql_planner::value::{Key, Kind, Node};

use crate::delta::{Bits, DeltaIndex, Entry};
use crate::doc::Doc;
use crate::index::IndexPolicy;
use crate::store::{ABSENT_KEY, Collection, CollectionKind, Store};
use crate::tape::NodeRef;

/// A handle to a document node that is either in the base tapes or written since.
#[derive(Clone, Copy, Debug)]
pub enum AnyNode<'a> {
    /// A node of a loaded tape.
    Tape(NodeRef<'a>),
    /// A node of a written document.
    Owned(&'a Doc),
}

impl<'a> Node<'a> for AnyNode<'a> {
    #[inline]
    fn kind(self) -> Kind {
        match self {
            AnyNode::Tape(n) => n.kind(),
            AnyNode::Owned(d) => d.kind(),
        }
    }
    #[inline]
    fn as_bool(self) -> Option<bool> {
        match self {
            AnyNode::Tape(n) => n.as_bool(),
            AnyNode::Owned(d) => d.as_bool(),
        }
    }
    #[inline]
    fn as_f64(self) -> Option<f64> {
        match self {
            AnyNode::Tape(n) => n.as_f64(),
            AnyNode::Owned(d) => d.as_f64(),
        }
    }
    #[inline]
    fn as_str(self) -> Option<&'a str> {
        match self {
            AnyNode::Tape(n) => n.as_str(),
            AnyNode::Owned(d) => d.as_string(),
        }
    }
    #[inline]
    fn member(self, key: &Key) -> Option<Self> {
        match self {
            AnyNode::Tape(n) => n.member(key).map(AnyNode::Tape),
            AnyNode::Owned(d) => d.member(key).map(AnyNode::Owned),
        }
    }
    #[inline]
    fn element(self, index: usize) -> Option<Self> {
        match self {
            AnyNode::Tape(n) => n.element(index).map(AnyNode::Tape),
            AnyNode::Owned(d) => d.element(index).map(AnyNode::Owned),
        }
    }
    fn len(self) -> usize {
        match self {
            AnyNode::Tape(n) => n.len(),
            AnyNode::Owned(d) => Node::len(d),
        }
    }
    fn write_json(self, out: &mut Vec<u8>) {
        match self {
            AnyNode::Tape(n) => n.write_json(out),
            AnyNode::Owned(d) => d.write(out),
        }
    }
    fn for_each_member(self, f: &mut dyn FnMut(&str, Self)) {
        match self {
            AnyNode::Tape(n) => n.for_each_member(&mut |k, v| f(k, AnyNode::Tape(v))),
            AnyNode::Owned(d) => d.for_each_member(&mut |k, v| f(k, AnyNode::Owned(v))),
        }
    }
}

/// Member names first written after loading, with ids after the store's own.
#[derive(Clone, Debug, Default)]
pub struct KeyExt {
    ids: PMap<Arc<str>, u32>,
    folded: PMap<Arc<str>, Arc<Vec<u32>>>,
    next: u32,
}

impl KeyExt {
    /// The id of `name`: the store's, an earlier extension's, or a new one.
    pub fn id(&mut self, store: &Store, name: &str) -> u32 {
        if let Some(id) = store.key_id(name) {
            return id;
        }
        if let Some(&id) = self.ids.get(name) {
            return id;
        }
        let id = (store.key_count() as u32).max(self.next);
        self.next = id + 1;
        self.ids.insert(name.into(), id);
        let folded: Arc<str> = name.to_lowercase().into();
        let mut list = self
            .folded
            .get(&folded)
            .map(|l| (**l).clone())
            .unwrap_or_default();
        list.push(id);
        self.folded.insert(folded, Arc::new(list));
        id
    }

    /// The id of `name` if known, without adding it.
    pub fn get(&self, store: &Store, name: &str) -> Option<u32> {
        store.key_id(name).or_else(|| self.ids.get(name).copied())
    }

    /// As [`Store::resolve_key`], knowing the names written since loading too.
    pub fn resolve(&self, store: &Store, key: &mut Key) {
        store.resolve_key(key);
        if key.exact == Some(ABSENT_KEY)
            && let Some(&id) = self.ids.get(&*key.name)
        {
            key.exact = Some(id);
        }
        if let Some(more) = self.folded.get(&*key.folded) {
            let mut ids: Vec<u32> = key.folded_ids.to_vec();
            ids.extend(more.iter().copied());
            key.folded_ids = ids.into();
        }
    }

    /// Number of names added.
    pub fn len(&self) -> usize {
        self.ids.len()
    }

    /// Whether no name was added.
    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }
}

/// One collection's writes since loading.
#[derive(Clone, Debug)]
pub struct LiveColl {
    base_len: u32,
    len: u32,
    docs: PMap<u32, Arc<Doc>>,
    overridden: Bits,
    deleted: Bits,
    created: PMap<(Arc<str>, Option<Arc<str>>), u32>,
    index: DeltaIndex,
}

impl LiveColl {
    fn new(base_len: usize) -> LiveColl {
        LiveColl {
            base_len: base_len as u32,
            len: base_len as u32,
            docs: PMap::new(),
            overridden: Bits::default(),
            deleted: Bits::default(),
            created: PMap::new(),
            index: DeltaIndex::new(),
        }
    }

    /// Whether nothing was written.
    pub fn is_pristine(&self) -> bool {
        self.len == self.base_len && self.docs.is_empty() && self.deleted.is_empty()
    }

    /// Document ids in use: `0..len` (some may be deleted).
    pub fn len(&self) -> usize {
        self.len as usize
    }

    /// Whether the id range is empty.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Number of documents not deleted.
    pub fn live_count(&self) -> u64 {
        u64::from(self.len) - self.deleted.len()
    }

    /// Deleted document ids.
    pub fn deleted(&self) -> &RoaringBitmap {
        &self.deleted
    }

    /// Number of documents written since loading (changed or created, not deleted).
    pub fn written(&self) -> usize {
        self.docs.len()
    }

    /// The ids of live documents.
    pub fn alive(&self) -> RoaringBitmap {
        let mut all = RoaringBitmap::new();
        all.insert_range(0..self.len);
        all -= &*self.deleted;
        all
    }

    /// The index changes.
    pub fn delta(&self) -> &DeltaIndex {
        &self.index
    }

    /// Document `id` as it is now (`None` when deleted or out of range).
    #[inline]
    pub fn get<'a>(&'a self, base: Collection<'a>, id: u32) -> Option<AnyNode<'a>> {
        if self.deleted.contains(id) {
            return None;
        }
        self.node(base, id)
    }

    /// Document `id` as it is now, not checking deletion.
    #[inline]
    pub fn node<'a>(&'a self, base: Collection<'a>, id: u32) -> Option<AnyNode<'a>> {
        if self.overridden.contains(id) {
            return self.docs.get(&id).map(|d| AnyNode::Owned(d));
        }
        if id < self.base_len {
            return Some(AnyNode::Tape(base.doc(id)));
        }
        None
    }

    /// Document `id` as it is now, for scans: deleted documents read as `null` (callers
    /// exclude them through [`LiveColl::alive`]).
    #[inline]
    pub fn doc<'a>(&'a self, base: Collection<'a>, id: u32) -> AnyNode<'a> {
        static NULL: Doc = Doc::Null;
        self.node(base, id).unwrap_or(AnyNode::Owned(&NULL))
    }

    /// The id of the live document with this identity.
    pub fn find(&self, base: Collection<'_>, device_id: &str, sub_id: Option<&str>) -> Option<u32> {
        let key: (Arc<str>, Option<Arc<str>>) = (device_id.into(), sub_id.map(Into::into));
        if let Some(&id) = self.created.get(&key) {
            return Some(id);
        }
        base.find(device_id, sub_id)
            .filter(|&id| !self.deleted.contains(id))
    }
}

/// Where an index walk starts: member names from the document root.
pub type Root<'p> = &'p [&'p str];

/// Every write since loading, over all collections. Cloning is O(1): that is a snapshot.
#[derive(Clone, Debug)]
pub struct Overlay {
    colls: [LiveColl; 3],
    keys: KeyExt,
    seq: u64,
}

/// A cache of the index policy's verdict per path of key ids (writer side, not shared).
#[derive(Debug, Default)]
pub struct PolicyCache {
    verdicts: HashMap<Box<[u32]>, (bool, bool)>,
}

impl Overlay {
    /// No writes yet over `store`.
    pub fn new(store: &Store) -> Overlay {
        Overlay {
            colls: CollectionKind::ALL.map(|k| LiveColl::new(store.collection(k).len())),
            keys: KeyExt {
                next: store.key_count() as u32,
                ..KeyExt::default()
            },
            seq: 0,
        }
    }

    /// One collection.
    pub fn coll(&self, kind: CollectionKind) -> &LiveColl {
        &self.colls[kind as usize]
    }

    /// The member names written since loading.
    pub fn keys(&self) -> &KeyExt {
        &self.keys
    }

    /// The number of writes applied.
    pub fn seq(&self) -> u64 {
        self.seq
    }

    /// Whether nothing was written.
    pub fn is_pristine(&self) -> bool {
        self.colls.iter().all(LiveColl::is_pristine)
    }

    /// Sets the write sequence number (it carries on across a compaction).
    pub fn set_seq(&mut self, seq: u64) {
        self.seq = seq;
    }

    /// Stores `new` as document `id` of `kind` (`None`: a new document), keeping the index
    /// changes in step. `roots` lists the subtrees the write changed (empty: the whole
    /// document). Returns the document's id.
    #[allow(clippy::too_many_arguments)]
    pub fn put(
        &mut self,
        store: &Store,
        policy: Option<&IndexPolicy>,
        cache: &mut PolicyCache,
        kind: CollectionKind,
        id: Option<u32>,
        new: Doc,
        roots: &[Root<'_>],
    ) -> u32 {
        let base = store.collection(kind);
        let identity = identity_of(kind, &new);
        let ci = kind as usize;
        let id = match id {
            Some(id) => id,
            None => {
                let c = &mut self.colls[ci];
                let id = c.len;
                c.len += 1;
                if let Some(key) = identity {
                    c.created.insert(key, id);
                }
                id
            }
        };
        if let Some(policy) = policy {
            let old = self.colls[ci].get(base, id);
            let mut ix = Indexer {
                store,
                policy,
                cache,
                keys: &mut self.keys,
            };
            let (olds, news) = (
                ix.entries(old, roots),
                ix.entries(Some(AnyNode::Owned(&new)), roots),
            );
            let is_base = id < self.colls[ci].base_len;
            apply_diff(&mut self.colls[ci].index, id, is_base, olds, news);
        } else {
            // Keep member names known even without indexes, so plans resolve them.
            name_walk(&mut self.keys, store, &new);
        }
        let c = &mut self.colls[ci];
        c.docs.insert(id, Arc::new(new));
        if !c.overridden.contains(id) {
            Arc::make_mut(&mut c.overridden).insert(id);
        }
        self.seq += 1;
        id
    }

    /// Deletes document `id` of `kind`.
    pub fn delete(
        &mut self,
        store: &Store,
        policy: Option<&IndexPolicy>,
        cache: &mut PolicyCache,
        kind: CollectionKind,
        id: u32,
    ) {
        let base = store.collection(kind);
        let ci = kind as usize;
        let Some(old) = self.colls[ci].get(base, id) else {
            return;
        };
        let identity = match old {
            AnyNode::Owned(d) => identity_of(kind, d),
            AnyNode::Tape(_) => None,
        };
        if let Some(policy) = policy {
            let mut ix = Indexer {
                store,
                policy,
                cache,
                keys: &mut self.keys,
            };
            let olds = ix.entries(Some(old), &[]);
            let is_base = id < self.colls[ci].base_len;
            apply_diff(&mut self.colls[ci].index, id, is_base, olds, Vec::new());
        }
        let c = &mut self.colls[ci];
        if let Some(key) = identity
            && c.created.get(&key) == Some(&id)
        {
            c.created.remove(&key);
        }
        c.docs.remove(&id);
        if c.overridden.contains(id) {
            Arc::make_mut(&mut c.overridden).remove(id);
        }
        Arc::make_mut(&mut c.deleted).insert(id);
        self.seq += 1;
    }
}

fn identity_of(kind: CollectionKind, d: &Doc) -> Option<(Arc<str>, Option<Arc<str>>)> {
    let o = d.as_object()?;
    let dev: Arc<str> = o.get("deviceId")?.as_string()?.into();
    let sub = match kind {
        CollectionKind::Devices => None,
        CollectionKind::Modules => Some(o.get("moduleId")?.as_string()?.into()),
        CollectionKind::Jobs => Some(o.get("jobId")?.as_string()?.into()),
    };
    Some((dev, sub))
}

fn name_walk(keys: &mut KeyExt, store: &Store, d: &Doc) {
    match d {
        Doc::Object(o) => {
            for (k, v) in o.iter() {
                keys.id(store, k);
                name_walk(keys, store, v);
            }
        }
        Doc::Array(a) => a.iter().for_each(|v| name_walk(keys, store, v)),
        _ => {}
    }
}

type Entries = Vec<(Box<[u32]>, Entry)>;

fn apply_diff(
    delta: &mut DeltaIndex,
    id: u32,
    is_base: bool,
    mut olds: Entries,
    mut news: Entries,
) {
    olds.sort_by(|a, b| a.0.cmp(&b.0));
    news.sort_by(|a, b| a.0.cmp(&b.0));
    let (mut i, mut j) = (0, 0);
    while i < olds.len() || j < news.len() {
        let ord = match (olds.get(i), news.get(j)) {
            (Some(a), Some(b)) => a.0.cmp(&b.0),
            (Some(_), None) => std::cmp::Ordering::Less,
            _ => std::cmp::Ordering::Greater,
        };
        match ord {
            std::cmp::Ordering::Less => {
                delta.set(&olds[i].0, id, is_base, Some(&olds[i].1), None);
                i += 1;
            }
            std::cmp::Ordering::Greater => {
                delta.set(&news[j].0, id, is_base, None, Some(&news[j].1));
                j += 1;
            }
            std::cmp::Ordering::Equal => {
                if olds[i].1 != news[j].1 {
                    delta.set(&olds[i].0, id, is_base, Some(&olds[i].1), Some(&news[j].1));
                }
                i += 1;
                j += 1;
            }
        }
    }
}

/// Collects the indexed entries of a document, as the index build does: every covered path,
/// descending into objects (not arrays), the first of repeated member names only.
struct Indexer<'w> {
    store: &'w Store,
    policy: &'w IndexPolicy,
    cache: &'w mut PolicyCache,
    keys: &'w mut KeyExt,
}

impl Indexer<'_> {
    fn verdict(&mut self, ids: &[u32], names: &[&str]) -> (bool, bool) {
        if let Some(&v) = self.cache.verdicts.get(ids) {
            return v;
        }
        let v = (
            self.policy.covers(names),
            self.policy.may_cover_below(names),
        );
        self.cache.verdicts.insert(ids.into(), v);
        v
    }

    /// The entries under each root (and at the roots' ancestors); all of them for no roots.
    fn entries(&mut self, doc: Option<AnyNode<'_>>, roots: &[Root<'_>]) -> Entries {
        let mut out = Vec::new();
        let Some(doc) = doc else {
            return out;
        };
        let mut ids = Vec::new();
        let mut names = Vec::new();
        if roots.is_empty() {
            self.walk(doc, &mut ids, &mut names, &mut out);
            return out;
        }
        for root in roots {
            ids.clear();
            names.clear();
            let mut node = Some(doc);
            for (depth, name) in root.iter().enumerate() {
                node = node.and_then(|n| first_member(n, name));
                let Some(n) = node else { break };
                ids.push(self.keys.id(self.store, name));
                names.push(*name);
                let (covered, descend) = self.verdict(&ids, &names);
                let at_root = depth + 1 == root.len();
                if covered {
                    out.push((ids.clone().into_boxed_slice(), Entry::of(n)));
                }
                if at_root && descend && n.kind() == Kind::Object {
                    self.walk(n, &mut ids, &mut names, &mut out);
                }
                if !descend {
                    break;
                }
            }
        }
        out.sort_by(|a, b| a.0.cmp(&b.0));
        out.dedup_by(|a, b| a.0 == b.0);
        out
    }

    fn walk<'n>(
        &mut self,
        node: AnyNode<'n>,
        ids: &mut Vec<u32>,
        names: &mut Vec<&'n str>,
        out: &mut Entries,
    ) {
        let mut seen: Vec<&str> = Vec::new();
        for (k, child) in members_of(node) {
            if seen.contains(&k) {
                continue;
            }
            seen.push(k);
            ids.push(self.keys.id(self.store, k));
            names.push(k);
            let (covered, descend) = self.verdict(ids, names);
            if covered {
                out.push((ids.clone().into_boxed_slice(), Entry::of(child)));
            }
            if descend && child.kind() == Kind::Object {
                self.walk(child, ids, names, out);
            }
            ids.pop();
            names.pop();
        }
    }
}

/// The members of an object node, in order.
fn members_of(n: AnyNode<'_>) -> Vec<(&str, AnyNode<'_>)> {
    match n {
        AnyNode::Tape(t) => t.members().map(|(k, _, v)| (k, AnyNode::Tape(v))).collect(),
        AnyNode::Owned(d) => match d.as_object() {
            Some(o) => o.iter().map(|(k, v)| (k, AnyNode::Owned(v))).collect(),
            None => Vec::new(),
        },
    }
}

/// The first member named exactly `name`.
fn first_member<'a>(n: AnyNode<'a>, name: &str) -> Option<AnyNode<'a>> {
    match n {
        AnyNode::Tape(t) => t
            .members()
            .find(|(k, _, _)| *k == name)
            .map(|(_, _, v)| AnyNode::Tape(v)),
        AnyNode::Owned(d) => d.as_object()?.get(name).map(AnyNode::Owned),
    }
}
