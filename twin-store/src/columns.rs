//! Columns: the values of one path across a collection, dictionary-encoded, for scans.
//!
//! A row store answers `WHERE tags.location.plant = 'Redmond43'` without an index by visiting
//! every twin, which costs a few cache misses per twin. A [`Column`] holds the scalar that
//! one path resolves to in every document of a collection, as one `u32` code per document
//! into a table of the distinct values. A condition over that one path has the same value
//! on every document whose code is the same, so it is evaluated once per distinct value —
//! by the evaluator itself ([`twinql_planner::eval::truth_at`]), so the semantics are the
//! evaluator's, functions, arithmetic and type strictness included — and the scan becomes a
//! table lookup per document. `AND`, `OR` and `NOT` over such conditions combine as pairs
//! of bitsets (where the condition is true, where it is false; the rest is Undefined), as in
//! the index's set algebra.
//!
//! Columns are built the first time a scan needs one (on all cores, through the same path
//! lookup as the evaluator: exact case preferred, then case-insensitive) and kept with the
//! store, whose documents never change, up to a memory budget ([`ColumnCache::budget`]).
//! Documents where the path holds an object or an array are listed; a condition is
//! evaluated once per type for them unless it reads their contents, and then on each such
//! document. Written documents are not the store's: callers evaluate those on their current
//! version (see `Snapshot::access` in the `twinql` crate).
//!
//! ```
//! use twinql_planner::eval::CPath;
//! use twinql_store::columns::ColumnCache;
//! use twinql_store::{CollectionKind, LoadOptions, Store};
//!
//! let mut store = Store::new();
//! let lines = "{\"deviceId\":\"a\",\"tags\":{\"plant\":\"P1\"}}\n{\"deviceId\":\"b\",\"tags\":{\"plant\":\"P2\"}}\n";
//! store.load_bytes("twins", lines.as_bytes(), &LoadOptions::default()).unwrap();
//! let coll = store.collection(CollectionKind::Devices);
//! let column = store.columns().get(coll, &CPath::doc(&["tags", "plant"])).unwrap();
//! assert_eq!(column.distinct(), 2);
//! ```

use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use rayon::prelude::*;
use roaring::RoaringBitmap;
use twinql_planner::eval::{
    CExpr, CPath, ScalarRef, Step, is_constant, single_path, truth_at, truth_fn,
    truth_for_container, truth_on,
};
use twinql_planner::value::{Kind, Node, Value};

use crate::dict::FxBuild;
use crate::store::{Collection, CollectionKind};

/// Code of a document where the path is missing.
const UNDEFINED: u32 = 0;
/// Code of a document where the path holds an object.
const OBJECT: u32 = 1;
/// Code of a document where the path holds an array.
const ARRAY: u32 = 2;
/// Code of the first distinct scalar.
const FIRST: u32 = 3;

/// Documents per task when a column is built or scanned.
const PART: usize = 1 << 14;
/// Most distinct values a column merges into one table; most groups it forms.
const MAX_GROUPS: usize = 1 << 16;

/// A column takes at least this much of the budget; the budget is the larger of this and
/// [`BUDGET_PER_DOC`] bytes per document of the store.
const BUDGET_MIN: usize = 64 << 20;
/// Bytes of columns allowed per document of the store.
const BUDGET_PER_DOC: usize = 256;

/// One distinct scalar of a column; strings are ranges of the column's text.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Scalar {
    Null,
    Bool(bool),
    Number(f64),
    String(usize, usize),
}

impl Scalar {
    fn as_ref(self, text: &str) -> ScalarRef<'_> {
        match self {
            Scalar::Null => ScalarRef::Null,
            Scalar::Bool(b) => ScalarRef::Bool(b),
            Scalar::Number(n) => ScalarRef::Number(n),
            Scalar::String(at, len) => ScalarRef::String(text.get(at..at + len).unwrap_or("")),
        }
    }

    /// The scalar moved `by` bytes along the text.
    fn shifted(self, by: usize) -> Scalar {
        match self {
            Scalar::String(at, len) => Scalar::String(at + by, len),
            s => s,
        }
    }
}

/// A scalar as a hash key: numbers by their bits, with `-0` read as `0` (they are equal).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
enum Key<'a> {
    Null,
    Bool(bool),
    Number(u64),
    String(Cow<'a, str>),
}

impl<'a> Key<'a> {
    /// The key of a resolved value; `Err` holds the code of a value that is not a scalar.
    fn number(n: f64) -> Key<'a> {
        Key::Number(if n == 0.0 { 0 } else { n.to_bits() })
    }

    fn of<N: Node<'a>>(v: Value<'a, N>) -> Result<Key<'a>, u32> {
        Ok(match v {
            Value::Undefined => return Err(UNDEFINED),
            Value::Null => Key::Null,
            Value::Bool(b) => Key::Bool(b),
            Value::Number(n) => Key::number(n),
            Value::String(s) => Key::String(s),
            Value::Node(n) if n.kind() == Kind::Array => return Err(ARRAY),
            Value::Json(j) if j.is_array() => return Err(ARRAY),
            Value::Node(_) | Value::Json(_) => return Err(OBJECT),
        })
    }

    fn of_ref(v: ScalarRef<'a>) -> Option<Key<'a>> {
        Some(match v {
            ScalarRef::Undefined => return None,
            ScalarRef::Null => Key::Null,
            ScalarRef::Bool(b) => Key::Bool(b),
            ScalarRef::Number(n) => Key::number(n),
            ScalarRef::String(s) => Key::String(Cow::Borrowed(s)),
        })
    }

    /// The scalar, its string appended to `text`.
    fn store(&self, text: &mut String) -> Scalar {
        match self {
            Key::Null => Scalar::Null,
            Key::Bool(b) => Scalar::Bool(*b),
            Key::Number(bits) => Scalar::Number(f64::from_bits(*bits)),
            Key::String(s) => {
                text.push_str(s);
                Scalar::String(text.len() - s.len(), s.len())
            }
        }
    }
}

/// The values of one path in every document of a collection (see the module docs).
#[derive(Debug)]
pub struct Column {
    /// Per document: [`UNDEFINED`], [`OBJECT`], [`ARRAY`] or `FIRST + i` for `values[i]`.
    codes: Vec<u32>,
    /// The distinct scalars, in order of first sight.
    values: Vec<Scalar>,
    /// The strings of `values`, one after another.
    text: String,
    /// Documents where the path holds an object or an array.
    complex: Vec<u32>,
    /// Whether equal values share one code (see [`Column::deduplicated`]).
    deduplicated: bool,
}

impl Column {
    /// Builds the column of `path` over `coll`, on all cores.
    pub fn build(coll: Collection<'_>, path: &CPath) -> Column {
        Column::build_merging(coll, path, MAX_GROUPS)
    }

    /// [`Column::build`], merging the parts' tables into one when they hold at most
    /// `merge` values in all (or values repeat within parts).
    fn build_merging(coll: Collection<'_>, path: &CPath, merge: usize) -> Column {
        let n = coll.len();
        let starts: Vec<usize> = (0..n).step_by(PART).collect();
        type Part<'a> = (Vec<u32>, Vec<Key<'a>>, Vec<u32>);
        let parts: Vec<Part<'_>> = starts
            .into_par_iter()
            .map(|start| {
                let end = (start + PART).min(n);
                let mut number: HashMap<Key<'_>, u32, FxBuild> = HashMap::default();
                let mut values = Vec::new();
                let mut codes = Vec::with_capacity(end - start);
                let mut complex = Vec::new();
                for id in start as u32..end as u32 {
                    let code = match Key::of(path.resolve(Value::Node(coll.doc(id)))) {
                        Err(code) => {
                            if code != UNDEFINED {
                                complex.push(id);
                            }
                            code
                        }
                        Ok(k) => match number.get(&k) {
                            Some(&c) => c,
                            None => {
                                let c = FIRST + values.len() as u32;
                                number.insert(k.clone(), c);
                                values.push(k);
                                c
                            }
                        },
                    };
                    codes.push(code);
                }
                (codes, values, complex)
            })
            .collect();
        let seen: usize = parts.iter().map(|p| p.1.len()).sum();
        // Values repeat within a part (statuses, temperatures): merge them into one table.
        let repeating = seen <= merge || seen * 2 <= n;
        if !repeating {
            // Mostly distinct values (ids, timestamps): the parts' tables are concatenated
            // without merging equal values across parts, on all cores. A value may then
            // have several codes, which evaluation does not mind; such a column does not
            // group ([`Column::deduplicated`]).
            let mut offsets = Vec::with_capacity(parts.len());
            let mut at = 0u32;
            for p in &parts {
                offsets.push(at);
                at += p.1.len() as u32;
            }
            type Piece = (Vec<u32>, Vec<Scalar>, String, Vec<u32>);
            let pieces: Vec<Piece> = parts
                .into_par_iter()
                .zip(offsets)
                .map(|((codes, keys, complex), off)| {
                    let codes = codes
                        .into_iter()
                        .map(|c| if c >= FIRST { c + off } else { c })
                        .collect();
                    let mut text = String::new();
                    let values = keys.iter().map(|k| k.store(&mut text)).collect();
                    (codes, values, text, complex)
                })
                .collect();
            let mut column = Column {
                codes: Vec::with_capacity(n),
                values: Vec::with_capacity(seen),
                text: String::with_capacity(pieces.iter().map(|p| p.2.len()).sum()),
                complex: Vec::new(),
                deduplicated: false,
            };
            for (codes, values, text, complex) in pieces {
                let by = column.text.len();
                column.codes.extend(codes);
                column
                    .values
                    .extend(values.into_iter().map(|v| v.shifted(by)));
                column.text.push_str(&text);
                column.complex.extend(complex);
            }
            return column;
        }
        let mut number: HashMap<Key<'_>, u32, FxBuild> = HashMap::default();
        let mut values = Vec::new();
        let mut text = String::new();
        let mut codes = Vec::with_capacity(n);
        let mut complex = Vec::new();
        let mut map = Vec::new();
        for (part_codes, part_values, part_complex) in parts {
            map.clear();
            map.extend([UNDEFINED, OBJECT, ARRAY]);
            for k in part_values {
                let c = *number.entry(k).or_insert_with_key(|k| {
                    values.push(k.store(&mut text));
                    FIRST + values.len() as u32 - 1
                });
                map.push(c);
            }
            codes.extend(part_codes.iter().map(|&c| map[c as usize]));
            complex.extend(part_complex);
        }
        Column {
            codes,
            values,
            text,
            complex,
            deduplicated: true,
        }
    }

    /// Whether every distinct value has one code (so codes can form groups).
    pub fn deduplicated(&self) -> bool {
        self.deduplicated
    }

    /// Number of documents the column covers.
    pub fn len(&self) -> usize {
        self.codes.len()
    }

    /// Whether the column covers no documents.
    pub fn is_empty(&self) -> bool {
        self.codes.is_empty()
    }

    /// Number of distinct scalars.
    pub fn distinct(&self) -> usize {
        self.values.len()
    }

    /// Heap bytes held.
    pub fn heap_bytes(&self) -> usize {
        self.codes.capacity() * 4
            + self.complex.capacity() * 4
            + self.values.capacity() * std::mem::size_of::<Scalar>()
            + self.text.capacity()
    }

    /// The truth of `e` (an expression over this column's path only) on every document.
    fn eval(&self, e: &CExpr, coll: Collection<'_>) -> Tri {
        // Per code: 0 Undefined, 1 true, 2 false, 3 read the document (an object or array
        // whose contents the expression reads).
        const PER_DOC: u8 = 3;
        let enc = |t: Option<bool>| match t {
            None => 0u8,
            Some(true) => 1,
            Some(false) => 2,
        };
        let container = |array| truth_for_container(e, array).map_or(PER_DOC, enc);
        let truth = truth_fn(e);
        let mut table = Vec::with_capacity(self.values.len() + FIRST as usize);
        table.push(enc(truth(ScalarRef::Undefined)));
        table.push(container(false));
        table.push(container(true));
        if self.values.len() >= PART {
            table.par_extend(
                self.values
                    .par_iter()
                    .with_min_len(PART / 4)
                    .map(|v| enc(truth(v.as_ref(&self.text)))),
            );
        } else {
            table.extend(self.values.iter().map(|v| enc(truth(v.as_ref(&self.text)))));
        }
        let mut tri = Tri::new(self.codes.len());
        tri.t
            .par_chunks_mut(PART / 64)
            .zip(tri.f.par_chunks_mut(PART / 64))
            .zip(self.codes.par_chunks(PART))
            .for_each(|((tw, fw), codes)| {
                for ((t, f), codes) in tw.iter_mut().zip(fw.iter_mut()).zip(codes.chunks(64)) {
                    let (mut tb, mut fb) = (0u64, 0u64);
                    for (i, &c) in codes.iter().enumerate() {
                        let v = table[c as usize];
                        tb |= u64::from(v == 1) << i;
                        fb |= u64::from(v == 2) << i;
                    }
                    *t = tb;
                    *f = fb;
                }
            });
        for &id in &self.complex {
            if table[self.codes[id as usize] as usize] != PER_DOC {
                continue;
            }
            match truth_on(e, coll.doc(id)) {
                Some(true) => tri.set_t(id),
                Some(false) => tri.set_f(id),
                None => {}
            }
        }
        tri
    }

    /// The code a value would have in this column, if the column holds it.
    fn code_of(&self, lookup: &HashMap<Key<'_>, u32, FxBuild>, v: ScalarRef<'_>) -> Option<u32> {
        match Key::of_ref(v) {
            None => Some(UNDEFINED),
            Some(k) => lookup.get(&k).copied(),
        }
    }
}

/// Three-valued truth over documents `0..n`: where it is true and where it is false, as
/// bitsets (the rest is Undefined).
#[derive(Clone, Debug)]
pub struct Tri {
    t: Vec<u64>,
    f: Vec<u64>,
    n: usize,
}

impl Tri {
    fn new(n: usize) -> Tri {
        let words = n.div_ceil(64);
        Tri {
            t: vec![0; words],
            f: vec![0; words],
            n,
        }
    }

    fn constant(n: usize, v: Option<bool>) -> Tri {
        let mut tri = Tri::new(n);
        match v {
            Some(true) => tri.t.fill(!0),
            Some(false) => tri.f.fill(!0),
            None => {}
        }
        tri.trim();
        tri
    }

    /// Clears the bits past `n` in the last word.
    fn trim(&mut self) {
        let rem = self.n % 64;
        if rem != 0 {
            let mask = (1u64 << rem) - 1;
            if let Some(w) = self.t.last_mut() {
                *w &= mask;
            }
            if let Some(w) = self.f.last_mut() {
                *w &= mask;
            }
        }
    }

    fn set_t(&mut self, id: u32) {
        self.t[id as usize / 64] |= 1 << (id % 64);
    }

    fn set_f(&mut self, id: u32) {
        self.f[id as usize / 64] |= 1 << (id % 64);
    }

    fn and(&mut self, o: &Tri) {
        for (a, b) in self.t.iter_mut().zip(&o.t) {
            *a &= b;
        }
        for (a, b) in self.f.iter_mut().zip(&o.f) {
            *a |= b;
        }
    }

    fn or(&mut self, o: &Tri) {
        for (a, b) in self.t.iter_mut().zip(&o.t) {
            *a |= b;
        }
        for (a, b) in self.f.iter_mut().zip(&o.f) {
            *a &= b;
        }
    }

    fn not(&mut self) {
        std::mem::swap(&mut self.t, &mut self.f);
    }

    /// The documents where the condition is true.
    pub fn trues(&self) -> RoaringBitmap {
        bitmap_of_words(&self.t)
    }
}

/// The set whose members are the bits of `words`, bit `i` of word `w` being `64 * w + i`.
fn bitmap_of_words<'w>(words: impl IntoIterator<Item = &'w u64>) -> RoaringBitmap {
    let mut bytes = Vec::new();
    for w in words {
        bytes.extend_from_slice(&w.to_le_bytes());
    }
    RoaringBitmap::from_lsb0_bytes(0, &bytes)
}

/// What the columns say of a condition over a collection's documents.
#[derive(Clone, Debug)]
pub enum ColumnAnswer {
    /// Exactly the documents where the condition is true.
    Exact(RoaringBitmap),
    /// A superset of them (an `AND` some of whose parts the columns could not evaluate).
    Candidates(RoaringBitmap),
}

/// Identity of a cached column: collection and path as written.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct PathKey {
    kind: CollectionKind,
    steps: Vec<StepKey>,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
enum StepKey {
    Member(Box<str>),
    Index(usize),
}

impl PathKey {
    fn of(kind: CollectionKind, path: &CPath) -> PathKey {
        PathKey {
            kind,
            steps: path
                .steps
                .iter()
                .map(|s| match s {
                    Step::Member(k) => StepKey::Member(k.name.clone()),
                    Step::Index(i) => StepKey::Index(*i),
                })
                .collect(),
        }
    }
}

/// The columns of a store, built on first use and kept up to a memory budget.
#[derive(Debug, Default)]
pub struct ColumnCache {
    columns: Mutex<HashMap<PathKey, Arc<Column>>>,
    bytes: AtomicUsize,
}

impl ColumnCache {
    /// The most bytes the columns of a store with `docs` documents may take: 256 bytes per
    /// document, at least 64 MiB. Once it is reached, no more columns are built and scans
    /// that would need one read the documents instead.
    pub fn budget(docs: usize) -> usize {
        BUDGET_MIN.max(docs.saturating_mul(BUDGET_PER_DOC))
    }

    /// Heap bytes of the columns built so far.
    pub fn heap_bytes(&self) -> usize {
        self.bytes.load(Ordering::Relaxed)
    }

    /// Number of columns built so far.
    pub fn count(&self) -> usize {
        self.lock().len()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<PathKey, Arc<Column>>> {
        self.columns.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The column of `path` over `coll`: the kept one, or one built now if the budget
    /// allows. `None` for a path that does not start at the document or has no steps, or
    /// when the budget is spent.
    pub fn get(&self, coll: Collection<'_>, path: &CPath) -> Option<Arc<Column>> {
        if path.root != twinql_planner::eval::Root::Doc || path.steps.is_empty() {
            return None;
        }
        let key = PathKey::of(coll.kind(), path);
        if let Some(c) = self.lock().get(&key) {
            // Loading appends documents: a column of fewer documents is rebuilt.
            if c.len() == coll.len() {
                return Some(c.clone());
            }
        }
        let store = coll.store();
        let docs: usize = CollectionKind::ALL
            .iter()
            .map(|&k| store.collection(k).len())
            .sum();
        if self.heap_bytes() + 4 * coll.len() > Self::budget(docs) {
            return None;
        }
        let column = Arc::new(Column::build(coll, path));
        let mut map = self.lock();
        let added = column.heap_bytes();
        if let Some(old) = map.insert(key, column.clone()) {
            self.bytes.fetch_sub(old.heap_bytes(), Ordering::Relaxed);
        }
        self.bytes.fetch_add(added, Ordering::Relaxed);
        Some(column)
    }

    /// The truth of condition `e` on every document of `coll`, if the columns can evaluate
    /// all of it: constants, conditions over one path each, and `AND` / `OR` / `NOT` of
    /// those.
    pub fn evaluate(&self, coll: Collection<'_>, e: &CExpr) -> Option<Tri> {
        let n = coll.len();
        if is_constant(e) {
            return Some(Tri::constant(n, truth_at(e, ScalarRef::Undefined)));
        }
        if let Some(p) = single_path(e) {
            return Some(self.get(coll, p)?.eval(e, coll));
        }
        match e {
            CExpr::Not(x) => {
                let mut t = self.evaluate(coll, x)?;
                t.not();
                Some(t)
            }
            CExpr::And(items) => {
                let mut acc = Tri::constant(n, Some(true));
                for item in items {
                    acc.and(&self.evaluate(coll, item)?);
                }
                Some(acc)
            }
            CExpr::Or(items) => {
                let mut acc = Tri::constant(n, Some(false));
                for item in items {
                    acc.or(&self.evaluate(coll, item)?);
                }
                Some(acc)
            }
            _ => None,
        }
    }

    /// The documents of `coll` where condition `e` is true: exactly, or (when only some
    /// parts of a top-level `AND` can be evaluated) a superset to check with the filter.
    pub fn answer(&self, coll: Collection<'_>, e: &CExpr) -> Option<ColumnAnswer> {
        if let CExpr::And(items) = e
            && single_path(e).is_none()
        {
            let mut acc: Option<Tri> = None;
            let mut exact = true;
            for item in items {
                match self.evaluate(coll, item) {
                    Some(t) => match &mut acc {
                        Some(a) => a.and(&t),
                        None => acc = Some(t),
                    },
                    None => exact = false,
                }
            }
            let t = acc?.trues();
            return Some(if exact {
                ColumnAnswer::Exact(t)
            } else {
                ColumnAnswer::Candidates(t)
            });
        }
        self.evaluate(coll, e)
            .map(|t| ColumnAnswer::Exact(t.trues()))
    }

    /// Splits `docs` of `coll` by the value of `key`: one set per distinct value (the
    /// documents where `key` is missing form one too), in no particular order. `extra`
    /// documents (written since the store was loaded; `value_of` gives their value of
    /// `key`) join the group of their value. `None` when the columns cannot do it: no
    /// column, objects or arrays at `key`, or too many distinct values.
    pub fn groups<'v>(
        &self,
        coll: Collection<'_>,
        key: &CPath,
        docs: &RoaringBitmap,
        extra: &[(u32, ScalarRef<'v>)],
    ) -> Option<Vec<RoaringBitmap>> {
        let col = self.get(coll, key)?;
        if !col.complex.is_empty() || !col.deduplicated || col.values.len() > MAX_GROUPS {
            return None;
        }
        if docs.max().is_some_and(|m| m as usize >= col.len()) {
            return None;
        }
        let codes = col.values.len() + FIRST as usize;
        let mut groups: Vec<RoaringBitmap> = if codes <= 64 && docs.len() as usize >= col.len() / 8
        {
            // Few groups: one bitset per code, filled a range of documents per task.
            let n = col.len();
            let parts: Vec<Vec<Vec<u64>>> = (0..n.div_ceil(PART))
                .into_par_iter()
                .map(|p| {
                    let lo = (p * PART) as u32;
                    let hi = ((p + 1) * PART).min(n) as u32;
                    let mut bits = vec![vec![0u64; PART / 64]; codes];
                    for id in docs.range(lo..hi) {
                        let at = (id - lo) as usize;
                        bits[col.codes[id as usize] as usize][at / 64] |= 1 << (at % 64);
                    }
                    bits
                })
                .collect();
            (0..codes)
                .map(|c| bitmap_of_words(parts.iter().flat_map(|p| &p[c])))
                .collect()
        } else {
            let mut lists: Vec<Vec<u32>> = vec![Vec::new(); codes];
            for id in docs.iter() {
                lists[col.codes[id as usize] as usize].push(id);
            }
            lists
                .into_iter()
                .map(|l| RoaringBitmap::from_sorted_iter(l).unwrap_or_default())
                .collect()
        };
        if !extra.is_empty() {
            let lookup: HashMap<Key<'_>, u32, FxBuild> = col
                .values
                .iter()
                .enumerate()
                .filter_map(|(i, v)| Some((Key::of_ref(v.as_ref(&col.text))?, FIRST + i as u32)))
                .collect();
            let mut new: HashMap<Key<'_>, usize, FxBuild> = HashMap::default();
            for &(id, v) in extra {
                let at = match col.code_of(&lookup, v) {
                    Some(c) => c as usize,
                    None => {
                        let k = Key::of_ref(v)?;
                        *new.entry(k).or_insert_with(|| {
                            groups.push(RoaringBitmap::new());
                            groups.len() - 1
                        })
                    }
                };
                groups[at].insert(id);
            }
        }
        groups.retain(|g| !g.is_empty());
        Some(groups)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{LoadOptions, Store};
    use twinql_planner::eval::{CompileOptions, compile};
    use twinql_planner::functions::FunctionSet;

    fn store(lines: &str) -> Store {
        let mut s = Store::new();
        s.load_bytes("twins", lines.as_bytes(), &LoadOptions::default())
            .unwrap();
        s
    }

    fn cond(text: &str) -> CExpr {
        let q = twinql_parser::parse_query(&format!("SELECT * FROM devices WHERE {text}")).unwrap();
        let opts = CompileOptions::twin(q.from.collection, FunctionSet::Twin);
        compile(q.filter.as_ref().unwrap(), &opts).unwrap()
    }

    /// The ids where the evaluator says `text` is true, document by document.
    fn scanned(s: &Store, text: &str) -> Vec<u32> {
        let e = cond(text);
        let coll = s.collection(CollectionKind::Devices);
        coll.ids()
            .filter(|&id| truth_on(&e, coll.doc(id)) == Some(true))
            .collect()
    }

    fn answered(s: &Store, text: &str) -> Option<ColumnAnswer> {
        s.columns()
            .answer(s.collection(CollectionKind::Devices), &cond(text))
    }

    const TWINS: &str = concat!(
        r#"{"deviceId":"d0","tags":{"plant":"A","n":1},"status":"enabled"}"#,
        "\n",
        r#"{"deviceId":"d1","tags":{"Plant":"B","n":-0.0},"status":"disabled"}"#,
        "\n",
        r#"{"deviceId":"d2","tags":{"plant":{"x":1},"n":"1"}}"#,
        "\n",
        r#"{"deviceId":"d3","tags":{"plant":null,"n":2.5}}"#,
        "\n",
        r#"{"deviceId":"d4","tags":{"plant":"A","PLANT":"C","n":0},"status":"enabled"}"#,
        "\n",
        r#"{"deviceId":"d5","tags":{"plant":["A","B"]}}"#,
        "\n",
        r#"{"deviceId":"d6","tags":{"plant":["C"],"n":[]}}"#,
        "\n",
    );

    #[test]
    fn conditions_over_columns_equal_the_evaluator() {
        let s = store(TWINS);
        for text in [
            "tags.plant = 'A'",
            "tags.plant = 'B'",
            "tags.plant != 'A'",
            "NOT (tags.plant = 'A')",
            "IS_DEFINED(tags.plant)",
            "NOT IS_DEFINED(tags.plant)",
            "IS_OBJECT(tags.plant)",
            "IS_ARRAY(tags.plant) OR IS_ARRAY(tags.n)",
            "IS_PRIMITIVE(tags.plant)",
            "ARRAY_CONTAINS(tags.plant, 'A')",
            "NOT ARRAY_CONTAINS(tags.plant, 'C')",
            "tags.plant = tags.plant",
            "IS_NULL(tags.plant)",
            "tags.n = 0",
            "tags.n > 0 AND tags.n < 3",
            "tags.n * 2 = 5",
            "tags.n IN [1, '1']",
            "tags.n NIN [1]",
            "STARTSWITH(tags.plant, 'A') OR status = 'disabled'",
            "NOT (tags.plant = 'A' OR status = 'enabled')",
            "status = 'enabled' AND tags.plant = 'A'",
            "true",
            "1 = 2",
        ] {
            let want = scanned(&s, text);
            match answered(&s, text) {
                Some(ColumnAnswer::Exact(b)) => {
                    assert_eq!(b.iter().collect::<Vec<_>>(), want, "{text}")
                }
                other => panic!("{text}: {other:?}"),
            }
        }
    }

    #[test]
    fn a_partly_columnar_and_gives_candidates() {
        let s = store(TWINS);
        // Two paths in one comparison cannot be evaluated per value.
        let text = "status = 'enabled' AND tags.plant = deviceId";
        match answered(&s, text) {
            Some(ColumnAnswer::Candidates(b)) => {
                assert_eq!(b.iter().collect::<Vec<_>>(), vec![0, 4]);
                assert!(scanned(&s, text).iter().all(|id| b.contains(*id)));
            }
            other => panic!("{other:?}"),
        }
        assert!(answered(&s, "tags.plant = deviceId").is_none());
    }

    #[test]
    fn groups_split_by_value_and_take_written_documents() {
        let s = store(TWINS);
        let coll = s.collection(CollectionKind::Devices);
        let key = CPath::doc(&["status"]);
        let all: RoaringBitmap = coll.ids().collect();
        let mut groups: Vec<Vec<u32>> = s
            .columns()
            .groups(coll, &key, &all, &[])
            .unwrap()
            .iter()
            .map(|g| g.iter().collect())
            .collect();
        groups.sort();
        assert_eq!(groups, vec![vec![0, 4], vec![1], vec![2, 3, 5, 6]]);
        let extra = [
            (7, ScalarRef::String("enabled")),
            (8, ScalarRef::String("new")),
            (9, ScalarRef::Undefined),
        ];
        let mut groups: Vec<Vec<u32>> = s
            .columns()
            .groups(coll, &key, &all, &extra)
            .unwrap()
            .iter()
            .map(|g| g.iter().collect())
            .collect();
        groups.sort();
        assert_eq!(
            groups,
            vec![vec![0, 4, 7], vec![1], vec![2, 3, 5, 6, 9], vec![8]]
        );
        // Objects at the key: the documents decide.
        assert!(
            s.columns()
                .groups(coll, &CPath::doc(&["tags", "plant"]), &all, &[])
                .is_none()
        );
    }

    #[test]
    fn distinct_values_across_parts_keep_their_codes_apart() {
        // Three parts of documents; `n` is distinct everywhere, `s` repeats.
        let mut lines = String::new();
        for i in 0..(2 * PART + 100) {
            let n = if i % 1000 == 7 {
                "null".to_string()
            } else {
                i.to_string()
            };
            lines.push_str(&format!(
                "{{\"deviceId\":\"d{i}\",\"n\":{n},\"s\":\"v{}\"}}\n",
                i % 4
            ));
        }
        let s = store(&lines);
        let coll = s.collection(CollectionKind::Devices);
        let n = Column::build_merging(coll, &CPath::doc(&["n"]), 0);
        assert!(!n.deduplicated());
        assert_eq!(n.len(), 2 * PART + 100);
        let e = cond("n >= 16380 AND n < 16390 OR IS_NULL(n)");
        let want: Vec<u32> = coll
            .ids()
            .filter(|&id| truth_on(&e, coll.doc(id)) == Some(true))
            .collect();
        assert_eq!(n.eval(&e, coll).trues().iter().collect::<Vec<_>>(), want);
        assert!(want.len() > 10);
        // `s` repeats within parts: one code per value even with no merge allowance.
        let sc = Column::build_merging(coll, &CPath::doc(&["s"]), 0);
        assert!(sc.deduplicated());
        assert_eq!(sc.distinct(), 4);
        let all: RoaringBitmap = coll.ids().collect();
        let groups = s
            .columns()
            .groups(coll, &CPath::doc(&["s"]), &all, &[])
            .unwrap();
        assert_eq!(groups.len(), 4);
        assert!(
            groups
                .iter()
                .all(|g| g.len() as usize == (2 * PART + 100) / 4)
        );
        // A column that keeps equal values apart does not group.
        s.columns().lock().insert(
            PathKey::of(CollectionKind::Devices, &CPath::doc(&["n"])),
            Arc::new(n),
        );
        assert!(
            s.columns()
                .groups(coll, &CPath::doc(&["n"]), &all, &[])
                .is_none()
        );
    }

    #[test]
    fn columns_are_kept_and_rebuilt_after_loading_more() {
        let mut s = store(TWINS);
        let p = CPath::doc(&["status"]);
        let a = s
            .columns()
            .get(s.collection(CollectionKind::Devices), &p)
            .unwrap();
        let b = s
            .columns()
            .get(s.collection(CollectionKind::Devices), &p)
            .unwrap();
        assert!(Arc::ptr_eq(&a, &b));
        assert_eq!(s.columns().count(), 1);
        assert!(s.columns().heap_bytes() >= 7 * 4);
        s.load_bytes(
            "more",
            b"{\"deviceId\":\"d9\",\"status\":\"enabled\"}\n",
            &LoadOptions::default(),
        )
        .unwrap();
        let c = s
            .columns()
            .get(s.collection(CollectionKind::Devices), &p)
            .unwrap();
        assert_eq!(c.len(), 8);
        assert_eq!(scanned(&s, "status = 'enabled'"), vec![0, 4, 7]);
        match answered(&s, "status = 'enabled'") {
            Some(ColumnAnswer::Exact(b)) => assert_eq!(b.iter().collect::<Vec<_>>(), vec![0, 4, 7]),
            other => panic!("{other:?}"),
        }
    }
}
