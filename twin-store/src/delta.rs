//! The mutable side of the path indexes: what writes changed since the base index was built.
//!
//! The base index ([`crate::index::CollectionIndex`]) is immutable. For every indexed path a
//! write touches, a [`DeltaPath`] records which base documents no longer hold what the base
//! postings say (`changed`) and the current postings of those documents and of documents
//! created since (by type, `true`, string and number value). A lookup at a path answers
//! `(base − changed) ∪ delta`, so the set algebra above it is unchanged.
//!
//! Everything here is persistent: cloning a [`DeltaIndex`] is O(1) (hash array mapped tries
//! and ordered B-trees from `imbl`, bitmaps behind `Arc`s copied on first write), which is how
//! a query takes a consistent snapshot while writers go on.

use std::borrow::Cow;
use std::sync::Arc;

use imbl::OrdMap;
use ordered_float::OrderedFloat;
use roaring::{MultiOps, RoaringBitmap};
use twinql_planner::value::{Kind, Node};

/// A persistent set of document ids: one shared roaring bitmap per range of 65,536 ids, in
/// a shared list. A clone is one pointer copy; a write while a snapshot holds the set copies
/// the list (a pointer per range) and the one range it changes (at most 8 KB), not the set,
/// and a write that changes nothing copies nothing.
#[derive(Clone, Debug, Default)]
pub struct Bits {
    chunks: Arc<Vec<(u16, Arc<RoaringBitmap>)>>,
}

impl Bits {
    /// `0..n`.
    pub fn full(n: u32) -> Bits {
        let mut chunks = Vec::new();
        let mut start = 0u32;
        while start < n {
            let hi = start >> 16;
            let end = (((hi + 1) as u64) << 16).min(n as u64) as u32;
            let mut r = RoaringBitmap::new();
            r.insert_range(start..end);
            chunks.push((hi as u16, Arc::new(r)));
            start = end;
        }
        Bits {
            chunks: Arc::new(chunks),
        }
    }

    fn find(&self, x: u32) -> Result<usize, usize> {
        let hi = (x >> 16) as u16;
        self.chunks.binary_search_by_key(&hi, |c| c.0)
    }

    /// Whether `x` is in the set.
    #[inline]
    pub fn contains(&self, x: u32) -> bool {
        match self.find(x) {
            Ok(i) => self.chunks[i].1.contains(x),
            Err(_) => false,
        }
    }

    /// Adds `x`; whether it was new.
    pub fn insert(&mut self, x: u32) -> bool {
        match self.find(x) {
            Ok(i) => {
                // Unshared: insert in place (one search). Shared with a snapshot: copy the
                // list and the range only if `x` is new to it.
                if let Some(chunks) = Arc::get_mut(&mut self.chunks)
                    && let Some(r) = Arc::get_mut(&mut chunks[i].1)
                {
                    return r.insert(x);
                }
                if self.chunks[i].1.contains(x) {
                    return false;
                }
                Arc::make_mut(&mut Arc::make_mut(&mut self.chunks)[i].1).insert(x)
            }
            Err(i) => {
                let mut r = RoaringBitmap::new();
                r.insert(x);
                Arc::make_mut(&mut self.chunks).insert(i, ((x >> 16) as u16, Arc::new(r)));
                true
            }
        }
    }

    /// Removes `x`; whether it was there.
    pub fn remove(&mut self, x: u32) -> bool {
        let Ok(i) = self.find(x) else {
            return false;
        };
        if !self.chunks[i].1.contains(x) {
            return false;
        }
        let chunks = Arc::make_mut(&mut self.chunks);
        let c = &mut chunks[i].1;
        Arc::make_mut(c).remove(x);
        if c.is_empty() {
            chunks.remove(i);
        }
        true
    }

    /// Whether the set is empty.
    pub fn is_empty(&self) -> bool {
        self.chunks.is_empty()
    }

    /// Number of ids.
    pub fn len(&self) -> u64 {
        self.chunks.iter().map(|c| c.1.len()).sum()
    }

    /// The set as one bitmap (borrowed when it spans a single range).
    pub fn bitmap(&self) -> Cow<'_, RoaringBitmap> {
        match self.chunks.as_slice() {
            [] => Cow::Owned(RoaringBitmap::new()),
            [(_, one)] => Cow::Borrowed(one),
            many => Cow::Owned(many.iter().map(|c| &*c.1).union()),
        }
    }

    /// Removes the set's ids from `x`, range by range: no bitmap of the whole set is made
    /// (a query under writes subtracts the changed documents from every base posting it
    /// reads, and a union of their ranges was a copy of up to 8 KB per range each time).
    pub fn subtract_from(&self, x: &mut RoaringBitmap) {
        for (_, r) in self.chunks.iter() {
            if x.is_empty() {
                return;
            }
            *x -= &**r;
        }
    }

    /// Adds the set's ids to `x`, range by range.
    pub fn union_into(&self, x: &mut RoaringBitmap) {
        for (_, r) in self.chunks.iter() {
            *x |= &**r;
        }
    }

    /// Bytes the bitmaps would take serialised.
    pub fn serialized_size(&self) -> usize {
        self.chunks.iter().map(|c| c.1.serialized_size() + 16).sum()
    }
}

pub(crate) const KINDS: usize = 6;

pub(crate) fn kind_slot(k: Kind) -> usize {
    match k {
        Kind::Null => 0,
        Kind::Bool => 1,
        Kind::Number => 2,
        Kind::String => 3,
        Kind::Array => 4,
        Kind::Object => 5,
    }
}

/// What a document holds at one indexed path, as the index sees it.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Entry<'s> {
    /// `null`
    Null,
    /// A Boolean.
    Bool(bool),
    /// A number (`-0` folded into `0`).
    Number(f64),
    /// A string.
    String(&'s str),
    /// An array (not indexed further).
    Array,
    /// An object.
    Object,
}

impl<'s> Entry<'s> {
    /// The entry of a node.
    pub fn of<N: Node<'s>>(n: N) -> Entry<'s> {
        match n.kind() {
            Kind::Null => Entry::Null,
            Kind::Bool => Entry::Bool(n.as_bool().unwrap_or(false)),
            Kind::Number => {
                let v = n.as_f64().unwrap_or(f64::NAN);
                Entry::Number(if v == 0.0 { 0.0 } else { v })
            }
            Kind::String => Entry::String(n.as_str().unwrap_or("")),
            Kind::Array => Entry::Array,
            Kind::Object => Entry::Object,
        }
    }

    fn slot(&self) -> usize {
        match self {
            Entry::Null => 0,
            Entry::Bool(_) => 1,
            Entry::Number(_) => 2,
            Entry::String(_) => 3,
            Entry::Array => 4,
            Entry::Object => 5,
        }
    }
}

/// The changes at one path.
#[derive(Clone, Debug, Default)]
pub struct DeltaPath {
    /// Base documents whose base postings at this path are stale (their current postings, if
    /// any, are below).
    pub changed: Bits,
    /// Changed or created documents by JSON type at the path.
    pub kinds: [Bits; KINDS],
    /// Changed or created documents holding `true`.
    pub trues: Bits,
    /// Changed or created documents holding strings, by value.
    pub strings: OrdMap<Arc<str>, Small>,
    /// Changed or created documents holding numbers, by value.
    pub numbers: OrdMap<OrderedFloat<f64>, Small>,
}

/// A persistent hash map hashed by FxHash, for keys that are store-made integers (document
/// ids, key ids): SipHash took 2–4% of a write.
pub(crate) type FxPMap<K, V> =
    imbl::GenericHashMap<K, V, crate::dict::FxBuild, imbl::shared_ptr::DefaultSharedPtr>;

/// The documents of one value: a shared bitmap copied whole on a write while a snapshot holds
/// it (a value's documents are a small part of a path's).
pub type Small = Arc<RoaringBitmap>;

fn insert(b: &mut Bits, doc: u32) {
    b.insert(doc);
}

fn remove(b: &mut Bits, doc: u32) {
    b.remove(doc);
}

fn insert_small(b: &mut Small, doc: u32) {
    if let Some(r) = Arc::get_mut(b) {
        r.insert(doc);
    } else if !b.contains(doc) {
        Arc::make_mut(b).insert(doc);
    }
}

fn remove_small(b: &mut Small, doc: u32) {
    if let Some(r) = Arc::get_mut(b) {
        r.remove(doc);
    } else if b.contains(doc) {
        Arc::make_mut(b).remove(doc);
    }
}

impl DeltaPath {
    fn add(&mut self, doc: u32, e: &Entry<'_>) {
        insert(&mut self.kinds[e.slot()], doc);
        if matches!(e, Entry::Bool(true)) {
            insert(&mut self.trues, doc);
        }
        self.add_value(doc, e);
    }

    /// Adds `doc` to the postings of the string or number `e`.
    fn add_value(&mut self, doc: u32, e: &Entry<'_>) {
        match e {
            Entry::String(s) => match self.strings.get_mut(*s) {
                Some(b) => insert_small(b, doc),
                None => {
                    let mut b = RoaringBitmap::new();
                    b.insert(doc);
                    self.strings.insert((*s).into(), Arc::new(b));
                }
            },
            Entry::Number(x) => {
                let b = self.numbers.entry(OrderedFloat(*x)).or_default();
                insert_small(b, doc);
            }
            _ => {}
        }
    }

    fn remove(&mut self, doc: u32, e: &Entry<'_>) {
        remove(&mut self.kinds[e.slot()], doc);
        if matches!(e, Entry::Bool(true)) {
            remove(&mut self.trues, doc);
        }
        self.remove_value(doc, e);
    }

    /// `doc` held `old` and now holds `new` (both in the delta). The sets it stays in are not
    /// touched: removing and re-adding would copy their shared parts while a snapshot holds
    /// them (up to 8 KB per set and write).
    fn replace(&mut self, doc: u32, old: &Entry<'_>, new: &Entry<'_>) {
        if old.slot() != new.slot() {
            remove(&mut self.kinds[old.slot()], doc);
            insert(&mut self.kinds[new.slot()], doc);
        }
        match (
            matches!(old, Entry::Bool(true)),
            matches!(new, Entry::Bool(true)),
        ) {
            (true, false) => remove(&mut self.trues, doc),
            (false, true) => insert(&mut self.trues, doc),
            _ => {}
        }
        self.remove_value(doc, old);
        self.add_value(doc, new);
    }

    /// Removes `doc` from the postings of the string or number `e`.
    fn remove_value(&mut self, doc: u32, e: &Entry<'_>) {
        match e {
            Entry::String(s) => {
                let empty = match self.strings.get_mut(*s) {
                    Some(b) => {
                        remove_small(b, doc);
                        b.is_empty()
                    }
                    None => false,
                };
                if empty {
                    self.strings.remove(*s);
                }
            }
            Entry::Number(x) => {
                let k = OrderedFloat(*x);
                let empty = match self.numbers.get_mut(&k) {
                    Some(b) => {
                        remove_small(b, doc);
                        b.is_empty()
                    }
                    None => false,
                };
                if empty {
                    self.numbers.remove(&k);
                }
            }
            _ => {}
        }
    }

    /// Documents of the delta defined at this path.
    pub fn defined(&self) -> RoaringBitmap {
        let mut out = RoaringBitmap::new();
        for k in &self.kinds {
            k.union_into(&mut out);
        }
        out
    }
}

/// The changes of one collection's index since it was built.
#[derive(Clone, Debug, Default)]
pub struct DeltaIndex {
    paths: FxPMap<Arc<[u32]>, Arc<DeltaPath>>,
}

impl DeltaIndex {
    /// An empty delta.
    pub fn new() -> DeltaIndex {
        DeltaIndex::default()
    }

    /// The changes at a path, if any.
    pub fn path(&self, keys: &[u32]) -> Option<&DeltaPath> {
        self.paths.get(keys).map(|p| &**p)
    }

    /// Number of paths with changes.
    pub fn len(&self) -> usize {
        self.paths.len()
    }

    /// Whether nothing changed.
    pub fn is_empty(&self) -> bool {
        self.paths.is_empty()
    }

    /// Records that document `doc` now holds `new` at `path` where it held `old` (`None`:
    /// undefined). `base` says whether `doc` is a document of the base index.
    pub fn set(
        &mut self,
        path: &[u32],
        doc: u32,
        base: bool,
        old: Option<&Entry<'_>>,
        new: Option<&Entry<'_>>,
    ) {
        if old == new {
            return;
        }
        let slot = match self.paths.get_mut(path) {
            Some(p) => p,
            None => {
                self.paths.insert(path.into(), Arc::default());
                match self.paths.get_mut(path) {
                    Some(p) => p,
                    None => return,
                }
            }
        };
        let dp = Arc::make_mut(slot);
        // A base document changed for the first time: the base postings hold its old entry,
        // hidden from now on. Otherwise the old entry is in the delta.
        let old = if base && dp.changed.insert(doc) {
            None
        } else {
            old
        };
        match (old, new) {
            (Some(o), Some(n)) => dp.replace(doc, o, n),
            (Some(o), None) => dp.remove(doc, o),
            (None, Some(n)) => dp.add(doc, n),
            (None, None) => {}
        }
    }

    /// Approximate bytes held.
    pub fn bytes(&self) -> usize {
        self.paths
            .values()
            .map(|p| {
                p.changed.serialized_size()
                    + p.kinds.iter().map(|k| k.serialized_size()).sum::<usize>()
                    + p.trues.serialized_size()
                    + p.strings
                        .iter()
                        .map(|(k, b)| k.len() + b.serialized_size() + 48)
                        .sum::<usize>()
                    + p.numbers
                        .values()
                        .map(|b| b.serialized_size() + 48)
                        .sum::<usize>()
            })
            .sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bits_of(ids: &[u32]) -> Bits {
        let mut b = Bits::default();
        for &x in ids {
            b.insert(x);
        }
        b
    }

    proptest::proptest! {
        /// Range by range, subtracting and uniting give what the set as one bitmap gives.
        #[test]
        fn subtract_from_and_union_into_agree_with_the_whole_set(
            set in proptest::collection::vec(0u32..400_000, 0..300),
            other in proptest::collection::vec(0u32..400_000, 0..300),
        ) {
            let b = bits_of(&set);
            let x: RoaringBitmap = other.iter().copied().collect();
            let mut minus = x.clone();
            b.subtract_from(&mut minus);
            proptest::prop_assert_eq!(&minus, &(&x - &*b.bitmap()));
            let mut plus = x.clone();
            b.union_into(&mut plus);
            proptest::prop_assert_eq!(&plus, &(&x | &*b.bitmap()));
        }
    }

    #[test]
    fn a_write_to_a_shared_set_copies_only_what_it_changes() {
        let mut b = bits_of(&[1, 70_000, 140_000]);
        let snapshot = b.clone();
        assert!(Arc::ptr_eq(&b.chunks, &snapshot.chunks));
        // Already there: nothing is copied, not even the list of ranges.
        assert!(!b.insert(70_000));
        assert!(!b.remove(5));
        assert!(Arc::ptr_eq(&b.chunks, &snapshot.chunks));
        // New to its range: the list and that range are copied, the other ranges shared.
        assert!(b.insert(70_001));
        assert!(!Arc::ptr_eq(&b.chunks, &snapshot.chunks));
        assert!(!Arc::ptr_eq(&b.chunks[1].1, &snapshot.chunks[1].1));
        assert!(Arc::ptr_eq(&b.chunks[0].1, &snapshot.chunks[0].1));
        assert!(Arc::ptr_eq(&b.chunks[2].1, &snapshot.chunks[2].1));
        // Removing the last id of a range drops the range here only.
        assert!(b.remove(1));
        assert_eq!(
            b.bitmap().iter().collect::<Vec<_>>(),
            [70_000, 70_001, 140_000]
        );
        assert_eq!(
            snapshot.bitmap().iter().collect::<Vec<_>>(),
            [1, 70_000, 140_000]
        );
        // Unshared again: changes are made in place.
        drop(snapshot);
        let list = Arc::as_ptr(&b.chunks);
        assert!(b.insert(140_001) && b.remove(70_000));
        assert_eq!(Arc::as_ptr(&b.chunks), list);
    }

    #[test]
    fn base_documents_are_hidden_then_reindexed() {
        let mut d = DeltaIndex::new();
        let p: &[u32] = &[1, 2];
        d.set(
            p,
            7,
            true,
            Some(&Entry::String("a")),
            Some(&Entry::String("b")),
        );
        let dp = d.path(p).unwrap();
        assert!(dp.changed.contains(7));
        assert!(dp.strings.get("b").unwrap().contains(7));
        assert!(dp.strings.get("a").is_none());
        // A second change removes the delta's own entry.
        let snapshot = d.clone();
        d.set(
            p,
            7,
            true,
            Some(&Entry::String("b")),
            Some(&Entry::Number(3.0)),
        );
        let dp = d.path(p).unwrap();
        assert!(dp.strings.get("b").is_none());
        assert!(dp.numbers.get(&OrderedFloat(3.0)).unwrap().contains(7));
        assert!(dp.kinds[2].contains(7) && !dp.kinds[3].contains(7));
        // The snapshot did not move.
        let sp = snapshot.path(p).unwrap();
        assert!(sp.strings.get("b").unwrap().contains(7));
        assert!(sp.kinds[3].contains(7));
    }

    #[test]
    fn a_new_value_of_the_same_type_leaves_the_shared_type_sets_alone() {
        let mut d = DeltaIndex::new();
        let p: &[u32] = &[2];
        d.set(
            p,
            9,
            true,
            Some(&Entry::Number(1.0)),
            Some(&Entry::Number(2.0)),
        );
        d.set(p, 70_000, false, None, Some(&Entry::Bool(true)));
        let snapshot = d.clone();
        d.set(
            p,
            9,
            true,
            Some(&Entry::Number(2.0)),
            Some(&Entry::Number(5.0)),
        );
        d.set(
            p,
            70_000,
            false,
            Some(&Entry::Bool(true)),
            Some(&Entry::Bool(false)),
        );
        let (dp, sp) = (d.path(p).unwrap(), snapshot.path(p).unwrap());
        // The number set still holds 9, and is still the snapshot's (not copied).
        assert!(dp.kinds[2].contains(9));
        assert!(Arc::ptr_eq(
            &dp.kinds[2].chunks[0].1,
            &sp.kinds[2].chunks[0].1
        ));
        assert!(dp.numbers.get(&OrderedFloat(2.0)).is_none());
        assert!(dp.numbers.get(&OrderedFloat(5.0)).unwrap().contains(9));
        assert!(sp.numbers.get(&OrderedFloat(2.0)).unwrap().contains(9));
        // `true` to `false`: still a Boolean, no longer in the `true` set.
        assert!(dp.kinds[1].contains(70_000) && !dp.trues.contains(70_000));
        assert!(sp.trues.contains(70_000));
        // And back, and to another type.
        d.set(
            p,
            70_000,
            false,
            Some(&Entry::Bool(false)),
            Some(&Entry::Bool(true)),
        );
        d.set(
            p,
            9,
            true,
            Some(&Entry::Number(5.0)),
            Some(&Entry::String("x")),
        );
        let dp = d.path(p).unwrap();
        assert!(dp.trues.contains(70_000) && dp.kinds[1].contains(70_000));
        assert!(!dp.kinds[2].contains(9) && dp.kinds[3].contains(9));
        assert!(dp.numbers.is_empty() && dp.strings.get("x").unwrap().contains(9));
    }

    #[test]
    fn created_documents_never_touch_changed() {
        let mut d = DeltaIndex::new();
        let p: &[u32] = &[4];
        d.set(p, 100, false, None, Some(&Entry::Bool(true)));
        d.set(p, 100, false, Some(&Entry::Bool(true)), None);
        let dp = d.path(p).unwrap();
        assert!(dp.changed.is_empty());
        assert!(dp.trues.is_empty() && dp.defined().is_empty());
    }
}
