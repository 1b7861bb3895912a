//! Live collections: the loaded base store plus every write since, kept in persistent
//! structures so that a snapshot costs O(1) and never sees half of a write.
//!
//! A written document is copied out of its tape into an owned [`Doc`] held in a hash array
//! mapped trie by document id; created documents get ids after the base's; deleted ones are
//! marked in a bitmap. The index changes go to a [`DeltaIndex`] per collection, computed by
//! diffing the indexed entries of the old and new document under the paths the write touched.

use std::collections::HashMap;

use crate::dict::FxBuild;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use imbl::HashMap as PMap;
use twinql_planner::value::{Key, Kind, Node};

use crate::delta::{Bits, DeltaIndex, Entry};
use crate::doc::Doc;
use crate::index::IndexPolicy;
use crate::packed::{Packed, PackedRef};
use crate::store::{ABSENT_KEY, Collection, CollectionKind, Store};
use crate::tape::NodeRef;

/// A handle to a document node that is either in the base tapes or written since.
#[derive(Clone, Copy, Debug)]
pub enum AnyNode<'a> {
    /// A node of a loaded tape.
    Tape(NodeRef<'a>),
    /// A node of a document being written (or a stand-in `null`).
    Owned(&'a Doc),
    /// A node of a written document, as the overlay keeps it.
    Packed(PackedRef<'a>),
}

impl<'a> AnyNode<'a> {
    /// The first member named exactly `name` (no case-insensitive fallback), if this is an
    /// object.
    pub fn exact_member(self, name: &str) -> Option<AnyNode<'a>> {
        match self {
            AnyNode::Tape(t) => t
                .members()
                .find(|(k, _, _)| *k == name)
                .map(|(_, _, v)| AnyNode::Tape(v)),
            AnyNode::Owned(d) => d.as_object()?.get(name).map(AnyNode::Owned),
            AnyNode::Packed(p) => p.exact_member(name, None).map(AnyNode::Packed),
        }
    }

    /// [`AnyNode::exact_member`] for a name whose key id in the store is `id` (`None`: the
    /// store has no such name): loaded and packed documents compare ids, not text.
    pub fn exact_member_id(self, name: &str, id: Option<u32>) -> Option<AnyNode<'a>> {
        match self {
            AnyNode::Tape(t) => t.member_by_id(id?).map(AnyNode::Tape),
            AnyNode::Owned(d) => d.as_object()?.get(name).map(AnyNode::Owned),
            AnyNode::Packed(p) => p.exact_member(name, id).map(AnyNode::Packed),
        }
    }
}

impl<'a> Node<'a> for AnyNode<'a> {
    #[inline]
    fn kind(self) -> Kind {
        match self {
            AnyNode::Tape(n) => n.kind(),
            AnyNode::Owned(d) => d.kind(),
            AnyNode::Packed(p) => p.kind(),
        }
    }
    #[inline]
    fn as_bool(self) -> Option<bool> {
        match self {
            AnyNode::Tape(n) => n.as_bool(),
            AnyNode::Owned(d) => d.as_bool(),
            AnyNode::Packed(p) => p.as_bool(),
        }
    }
    #[inline]
    fn as_f64(self) -> Option<f64> {
        match self {
            AnyNode::Tape(n) => n.as_f64(),
            AnyNode::Owned(d) => d.as_f64(),
            AnyNode::Packed(p) => p.as_f64(),
        }
    }
    #[inline]
    fn as_str(self) -> Option<&'a str> {
        match self {
            AnyNode::Tape(n) => n.as_str(),
            AnyNode::Owned(d) => d.as_string(),
            AnyNode::Packed(p) => p.as_str(),
        }
    }
    #[inline]
    fn member(self, key: &Key) -> Option<Self> {
        match self {
            AnyNode::Tape(n) => n.member(key).map(AnyNode::Tape),
            AnyNode::Owned(d) => d.member(key).map(AnyNode::Owned),
            AnyNode::Packed(p) => p.member(key).map(AnyNode::Packed),
        }
    }
    #[inline]
    fn element(self, index: usize) -> Option<Self> {
        match self {
            AnyNode::Tape(n) => n.element(index).map(AnyNode::Tape),
            AnyNode::Owned(d) => d.element(index).map(AnyNode::Owned),
            AnyNode::Packed(p) => p.element(index).map(AnyNode::Packed),
        }
    }
    fn len(self) -> usize {
        match self {
            AnyNode::Tape(n) => n.len(),
            AnyNode::Owned(d) => Node::len(d),
            AnyNode::Packed(p) => p.len(),
        }
    }
    fn write_json(self, out: &mut Vec<u8>) {
        match self {
            AnyNode::Tape(n) => n.write_json(out),
            AnyNode::Owned(d) => d.write(out),
            AnyNode::Packed(p) => p.write_json(out),
        }
    }
    fn for_each_member(self, f: &mut dyn FnMut(&str, Self)) {
        match self {
            AnyNode::Tape(n) => n.for_each_member(&mut |k, v| f(k, AnyNode::Tape(v))),
            AnyNode::Owned(d) => d.for_each_member(&mut |k, v| f(k, AnyNode::Owned(v))),
            AnyNode::Packed(p) => p.for_each_member(&mut |k, v| f(k, AnyNode::Packed(v))),
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
    docs: crate::delta::FxPMap<u32, Arc<Packed>>,
    overridden: Bits,
    deleted: Bits,
    created: PMap<(Arc<str>, Option<Arc<str>>), u32>,
    index: DeltaIndex,
    alive: Bits,
}

impl LiveColl {
    fn new(base_len: usize) -> LiveColl {
        LiveColl {
            base_len: base_len as u32,
            len: base_len as u32,
            docs: crate::delta::FxPMap::default(),
            overridden: Bits::default(),
            deleted: Bits::default(),
            created: PMap::new(),
            index: DeltaIndex::new(),
            alive: Bits::full(base_len as u32),
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
    pub fn deleted(&self) -> &Bits {
        &self.deleted
    }

    /// Number of documents written since loading (changed or created, not deleted).
    pub fn written(&self) -> usize {
        self.docs.len()
    }

    /// The ids of live documents.
    pub fn alive(&self) -> &Bits {
        &self.alive
    }

    /// Whether documents were created or deleted (else the live documents are the base's).
    pub fn reshaped(&self) -> bool {
        self.len != self.base_len || !self.deleted.is_empty()
    }

    /// Ids of the documents written since loading (changed or created; deleted ones too).
    pub fn written_ids(&self) -> roaring::RoaringBitmap {
        let mut ids = self.overridden.bitmap().into_owned();
        ids.insert_range(self.base_len..self.len);
        ids |= &*self.deleted.bitmap();
        ids
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

    /// The written version of document `id`, if any (a shared handle, so the overlay can
    /// change while it is read).
    pub fn held(&self, id: u32) -> Option<Arc<Packed>> {
        if self.overridden.contains(id) {
            self.docs.get(&id).cloned()
        } else {
            None
        }
    }

    /// Document `id` before a write: `held` when written, else the base's.
    fn old_node<'a>(
        &self,
        base: Collection<'a>,
        id: u32,
        held: Option<&'a Packed>,
    ) -> Option<AnyNode<'a>> {
        if self.deleted.contains(id) {
            return None;
        }
        match held {
            Some(p) => Some(AnyNode::Packed(p.root(base.store()))),
            None if id < self.base_len => Some(AnyNode::Tape(base.doc(id))),
            None => None,
        }
    }

    /// Document `id` as it is now, not checking deletion.
    #[inline]
    pub fn node<'a>(&'a self, base: Collection<'a>, id: u32) -> Option<AnyNode<'a>> {
        if self.overridden.contains(id) {
            return self
                .docs
                .get(&id)
                .map(|p| AnyNode::Packed(p.root(base.store())));
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
        if !self.created.is_empty() {
            let key: (Arc<str>, Option<Arc<str>>) = (device_id.into(), sub_id.map(Into::into));
            if let Some(&id) = self.created.get(&key) {
                return Some(id);
            }
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
    /// The write sequence number of the overlay this one was cloned from, as writes go on:
    /// shared by every clone, so a snapshot can tell whether writes followed it.
    latest: Arc<AtomicU64>,
}

/// Writer-side cache (not shared with snapshots): the index policy's verdict per path, as a
/// trie of key ids.
#[derive(Debug)]
pub struct PolicyCache {
    nodes: Vec<PathNode>,
}

#[derive(Debug)]
struct PathNode {
    children: HashMap<u32, u32, FxBuild>,
    covered: bool,
    descend: bool,
    path: Arc<[u32]>,
}

impl Default for PolicyCache {
    fn default() -> PolicyCache {
        PolicyCache {
            nodes: vec![PathNode {
                children: HashMap::default(),
                covered: false,
                descend: true,
                path: Arc::from(Vec::new()),
            }],
        }
    }
}

impl PolicyCache {
    /// The trie node of `parent`'s child `key`, classified on first sight (`names` is the path
    /// of member names down to the child).
    fn child(&mut self, policy: &IndexPolicy, parent: u32, key: u32, names: &[&str]) -> u32 {
        if let Some(&c) = self.nodes[parent as usize].children.get(&key) {
            return c;
        }
        let mut path = self.nodes[parent as usize].path.to_vec();
        path.push(key);
        let id = self.nodes.len() as u32;
        self.nodes.push(PathNode {
            children: HashMap::default(),
            covered: policy.covers(names),
            descend: policy.may_cover_below(names),
            path: path.into(),
        });
        self.nodes[parent as usize].children.insert(key, id);
        id
    }
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
            latest: Arc::default(),
        }
    }

    /// A stand-in with no documents (for moving an overlay out of its holder).
    pub fn empty() -> Overlay {
        Overlay {
            colls: CollectionKind::ALL.map(|_| LiveColl::new(0)),
            keys: KeyExt::default(),
            seq: 0,
            latest: Arc::default(),
        }
    }

    /// Whether no write followed this overlay in the overlay it was cloned from (then it
    /// shares all its parts with that overlay, and dropping it frees nothing).
    pub fn is_latest(&self) -> bool {
        self.latest.load(Ordering::Relaxed) == self.seq
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
        self.latest.store(seq, Ordering::Relaxed);
    }

    /// Stores `packed` as document `id` of `kind` (`None`: a new document), keeping the index
    /// changes in step. `roots` lists the subtrees the write changed (empty: the whole
    /// document). Returns the document's id and the version it replaced (for the caller to
    /// drop where it costs nothing).
    #[allow(clippy::too_many_arguments)]
    pub fn put(
        &mut self,
        store: &Store,
        policy: Option<&IndexPolicy>,
        cache: &mut PolicyCache,
        kind: CollectionKind,
        id: Option<u32>,
        packed: Packed,
        roots: &[Root<'_>],
    ) -> (u32, Option<Arc<Packed>>) {
        let base = store.collection(kind);
        let new = AnyNode::Packed(packed.root(store));
        let identity = identity_of(kind, new);
        let ci = kind as usize;
        let id = match id {
            Some(id) => id,
            None => {
                let c = &mut self.colls[ci];
                let id = c.len;
                c.len += 1;
                c.alive.insert(id);
                if let Some(key) = identity {
                    c.created.insert(key, id);
                }
                id
            }
        };
        if let Some(policy) = policy {
            let held = self.colls[ci].held(id);
            let old = self.colls[ci].old_node(base, id, held.as_deref());
            let mut ix = Indexer {
                store,
                policy,
                cache,
                keys: &mut self.keys,
            };
            let olds = ix.entries(old, roots);
            let news = ix.entries(Some(new), roots);
            let is_base = id < self.colls[ci].base_len;
            apply_diff(&mut self.colls[ci].index, cache, id, is_base, olds, news);
        }
        // Without indexes no key ids are needed: written documents are read by member name.
        let c = &mut self.colls[ci];
        let replaced = c.docs.insert(id, Arc::new(packed));
        c.overridden.insert(id);
        self.seq += 1;
        self.latest.store(self.seq, Ordering::Relaxed);
        (id, replaced)
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
        if self.colls[ci].deleted.contains(id) {
            return;
        }
        let held = self.colls[ci].held(id);
        let Some(old) = self.colls[ci].old_node(base, id, held.as_deref()) else {
            return;
        };
        let identity = held
            .as_deref()
            .and_then(|p| identity_of(kind, AnyNode::Packed(p.root(store))));
        if let Some(policy) = policy {
            let mut ix = Indexer {
                store,
                policy,
                cache,
                keys: &mut self.keys,
            };
            let olds = ix.entries(Some(old), &[]);
            let is_base = id < self.colls[ci].base_len;
            apply_diff(
                &mut self.colls[ci].index,
                cache,
                id,
                is_base,
                olds,
                Vec::new(),
            );
        }
        let c = &mut self.colls[ci];
        if let Some(key) = identity
            && c.created.get(&key) == Some(&id)
        {
            c.created.remove(&key);
        }
        c.docs.remove(&id);
        c.overridden.remove(id);
        c.deleted.insert(id);
        c.alive.remove(id);
        self.seq += 1;
        self.latest.store(self.seq, Ordering::Relaxed);
    }
}

fn identity_of(kind: CollectionKind, d: AnyNode<'_>) -> Option<(Arc<str>, Option<Arc<str>>)> {
    let text = |name: &str| {
        d.exact_member(name)
            .and_then(|n| n.as_str())
            .map(Arc::<str>::from)
    };
    let dev = text("deviceId")?;
    let sub = match kind {
        CollectionKind::Devices => None,
        CollectionKind::Modules => Some(text("moduleId")?),
        CollectionKind::Jobs => Some(text("jobId")?),
    };
    Some((dev, sub))
}

type Entries<'d> = Vec<(u32, Entry<'d>)>;

fn apply_diff(
    delta: &mut DeltaIndex,
    cache: &PolicyCache,
    id: u32,
    is_base: bool,
    mut olds: Entries<'_>,
    mut news: Entries<'_>,
) {
    // Overlapping roots can list a path twice: keep one of each.
    olds.sort_by_key(|e| e.0);
    olds.dedup_by_key(|e| e.0);
    news.sort_by_key(|e| e.0);
    news.dedup_by_key(|e| e.0);
    let path = |n: u32| &cache.nodes[n as usize].path;
    let (mut i, mut j) = (0, 0);
    while i < olds.len() || j < news.len() {
        let ord = match (olds.get(i), news.get(j)) {
            (Some(a), Some(b)) => a.0.cmp(&b.0),
            (Some(_), None) => std::cmp::Ordering::Less,
            _ => std::cmp::Ordering::Greater,
        };
        match ord {
            std::cmp::Ordering::Less => {
                delta.set(path(olds[i].0), id, is_base, Some(&olds[i].1), None);
                i += 1;
            }
            std::cmp::Ordering::Greater => {
                delta.set(path(news[j].0), id, is_base, None, Some(&news[j].1));
                j += 1;
            }
            std::cmp::Ordering::Equal => {
                if olds[i].1 != news[j].1 {
                    delta.set(
                        path(olds[i].0),
                        id,
                        is_base,
                        Some(&olds[i].1),
                        Some(&news[j].1),
                    );
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
    /// The entries under each root (and at the roots' ancestors); all of them for no roots.
    fn entries<'d>(&mut self, doc: Option<AnyNode<'d>>, roots: &[Root<'_>]) -> Entries<'d> {
        let Some(doc) = doc else {
            return Vec::new();
        };
        let mut out = Vec::with_capacity(if roots.is_empty() {
            64
        } else {
            roots.len() + 4
        });
        let mut names: Vec<&str> = Vec::with_capacity(8);
        if roots.is_empty() {
            self.walk(doc, 0, &mut names, &mut out);
            return out;
        }
        // The nodes (and trie nodes) the previous root went through: roots that share a
        // prefix (`properties.reported.…`) start below it instead of at the document.
        let mut through: Vec<(AnyNode<'d>, u32)> = Vec::with_capacity(8);
        let mut prev: &[&str] = &[];
        for root in roots {
            let shared = prev
                .iter()
                .zip(root.iter())
                .take_while(|(a, b)| a == b)
                .count()
                .min(through.len())
                .min(root.len().saturating_sub(1));
            prev = root;
            through.truncate(shared);
            names.truncate(shared);
            let (mut node, mut trie) = match through.last() {
                Some(&(n, t)) => (Some(n), t),
                None => (Some(doc), 0u32),
            };
            if shared > 0 && !self.cache.nodes[trie as usize].descend {
                continue;
            }
            for (depth, name) in root.iter().enumerate().skip(shared) {
                // The policy first: a member nothing at or below is indexed (`$metadata`, the
                // last member of a section, as a rule) is not looked for.
                let key = self.keys.id(self.store, name);
                let stored = (key < self.store.key_count() as u32).then_some(key);
                names.push(name);
                trie = self.cache.child(self.policy, trie, key, &names);
                let (covered, descend) = {
                    let t = &self.cache.nodes[trie as usize];
                    (t.covered, t.descend)
                };
                if !covered && !descend {
                    break;
                }
                node = node.and_then(|n| n.exact_member_id(name, stored));
                let Some(n) = node else { break };
                through.push((n, trie));
                if covered {
                    out.push((trie, Entry::of(n)));
                }
                if depth + 1 == root.len() && descend && n.kind() == Kind::Object {
                    self.walk(n, trie, &mut names, &mut out);
                }
                if !descend {
                    break;
                }
            }
        }
        out
    }

    fn visit<'d, 'n>(
        &mut self,
        trie: u32,
        key: u32,
        name: &'n str,
        child: AnyNode<'d>,
        names: &mut Vec<&'n str>,
        out: &mut Entries<'d>,
    ) where
        'd: 'n,
    {
        names.push(name);
        let t = self.cache.child(self.policy, trie, key, names);
        let (covered, descend) = {
            let n = &self.cache.nodes[t as usize];
            (n.covered, n.descend)
        };
        if covered {
            out.push((t, Entry::of(child)));
        }
        if descend && child.kind() == Kind::Object {
            self.walk(child, t, names, out);
        }
        names.pop();
    }

    fn walk<'d, 'n>(
        &mut self,
        node: AnyNode<'d>,
        trie: u32,
        names: &mut Vec<&'n str>,
        out: &mut Entries<'d>,
    ) where
        'd: 'n,
    {
        match node {
            AnyNode::Tape(t) => {
                let mut seen: Vec<u32> = Vec::new();
                for (k, id, child) in t.members() {
                    if seen.contains(&id) {
                        continue;
                    }
                    seen.push(id);
                    self.visit(trie, id, k, AnyNode::Tape(child), names, out);
                }
            }
            AnyNode::Owned(d) => {
                if let Some(o) = d.as_object() {
                    // Member names of an owned object are unique.
                    for (k, child) in o.iter() {
                        let id = self.keys.id(self.store, k);
                        self.visit(trie, id, k, AnyNode::Owned(child), names, out);
                    }
                }
            }
            AnyNode::Packed(p) => {
                // Packed objects come from owned ones: member names are unique.
                for (k, child) in p.members() {
                    let id = self.keys.id(self.store, k);
                    self.visit(trie, id, k, AnyNode::Packed(child), names, out);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::LoadOptions;

    #[test]
    fn a_clone_knows_whether_writes_followed_it() {
        let mut store = Store::new();
        store
            .load_bytes(
                "t",
                br#"{"deviceId":"a","tags":{"x":0}}"#,
                &LoadOptions::default(),
            )
            .expect("load");
        let mut overlay = Overlay::new(&store);
        let snapshot = overlay.clone();
        assert!(snapshot.is_latest() && overlay.is_latest());
        let doc = Doc::parse(r#"{"deviceId":"a","tags":{"x":1}}"#).expect("json");
        let mut cache = PolicyCache::default();
        overlay.put(
            &store,
            None,
            &mut cache,
            CollectionKind::Devices,
            Some(0),
            Packed::pack(&doc, &store),
            &[],
        );
        assert!(overlay.is_latest());
        assert!(!snapshot.is_latest());
        assert!(overlay.clone().is_latest());
        assert!(Overlay::empty().is_pristine() && Overlay::empty().is_latest());
    }
}
