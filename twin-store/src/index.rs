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

use std::cmp::Ordering;
use std::collections::HashMap;

use rayon::prelude::*;
use roaring::RoaringBitmap;
use twinql_parser::ast::CompareOp;
use twinql_planner::eval::{CExpr, CPath, Const, Root, Step};
use twinql_planner::functions::Func;
use twinql_planner::value::{Key, Kind, Node};

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
    /// the system fields of twins and every member of job records.
    fn default() -> IndexPolicy {
        let include = [
            "deviceId",
            "moduleId",
            "etag",
            "deviceEtag",
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

    /// Whether the path (member names from the root) is indexed.
    pub fn covers(&self, path: &[&str]) -> bool {
        self.include.iter().any(|p| Self::matches(p, path))
            && !self.exclude.iter().any(|p| Self::matches(p, path))
    }

    /// Whether anything below `path` (or it) could be indexed.
    fn may_cover_below(&self, path: &[&str]) -> bool {
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

const KINDS: usize = 6;

fn kind_slot(k: Kind) -> usize {
    match k {
        Kind::Null => 0,
        Kind::Bool => 1,
        Kind::Number => 2,
        Kind::String => 3,
        Kind::Array => 4,
        Kind::Object => 5,
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
    /// Documents holding a string, sorted by (string, document id).
    pub strings: Vec<u32>,
    /// Documents holding a number, sorted by (number, document id).
    pub numbers: Vec<u32>,
}

impl PathIndex {
    fn bytes(&self) -> usize {
        let bm = |b: &RoaringBitmap| b.serialized_size();
        bm(&self.defined)
            + self.kinds.iter().map(bm).sum::<usize>()
            + bm(&self.trues)
            + 4 * (self.strings.len() + self.numbers.len())
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

/// The indexes of one collection.
#[derive(Debug, Default)]
pub struct CollectionIndex {
    paths: HashMap<Box<[u32]>, PathIndex>,
    all: RoaringBitmap,
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

struct LocalPath<'a> {
    defined: Vec<u32>,
    kinds: [Vec<u32>; KINDS],
    trues: Vec<u32>,
    strings: Vec<(&'a str, u32)>,
    numbers: Vec<(f64, u32)>,
}

impl<'a> LocalPath<'a> {
    fn new() -> LocalPath<'a> {
        LocalPath {
            defined: Vec::new(),
            kinds: Default::default(),
            trues: Vec::new(),
            strings: Vec::new(),
            numbers: Vec::new(),
        }
    }

    fn append(&mut self, other: LocalPath<'a>) {
        self.defined.extend(other.defined);
        for (a, b) in self.kinds.iter_mut().zip(other.kinds) {
            a.extend(b);
        }
        self.trues.extend(other.trues);
        self.strings.extend(other.strings);
        self.numbers.extend(other.numbers);
    }
}

struct Walker<'p, 'a> {
    policy: &'p IndexPolicy,
    names: Vec<&'a str>,
    ids: Vec<u32>,
    out: HashMap<Box<[u32]>, LocalPath<'a>>,
}

impl<'a> Walker<'_, 'a> {
    fn visit(&mut self, doc: u32, node: NodeRef<'a>) {
        for (name, id, child) in node.members() {
            self.names.push(name);
            self.ids.push(id);
            if self.policy.covers(&self.names) {
                let entry = self
                    .out
                    .entry(self.ids.clone().into_boxed_slice())
                    .or_insert_with(LocalPath::new);
                let kind = child.kind();
                entry.defined.push(doc);
                entry.kinds[kind_slot(kind)].push(doc);
                match kind {
                    Kind::Bool if child.as_bool() == Some(true) => entry.trues.push(doc),
                    Kind::String => entry.strings.push((child.as_str().unwrap_or(""), doc)),
                    Kind::Number => entry
                        .numbers
                        .push((child.as_f64().unwrap_or(f64::NAN), doc)),
                    _ => {}
                }
            }
            if child.kind() == Kind::Object && self.policy.may_cover_below(&self.names) {
                self.visit(doc, child);
            }
            self.names.pop();
            self.ids.pop();
        }
    }
}

const BUILD_CHUNK: usize = 8192;

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
        let starts: Vec<usize> = (0..n).step_by(BUILD_CHUNK).collect();
        let parts: Vec<HashMap<Box<[u32]>, LocalPath<'_>>> = starts
            .par_iter()
            .map(|&s| {
                let mut w = Walker {
                    policy,
                    names: Vec::new(),
                    ids: Vec::new(),
                    out: HashMap::new(),
                };
                for id in s..(s + BUILD_CHUNK).min(n) {
                    w.visit(id as u32, coll.doc(id as u32));
                }
                w.out
            })
            .collect();
        // Merge the chunks in order, so every list stays sorted by document id.
        let mut merged: HashMap<Box<[u32]>, LocalPath<'_>> = HashMap::new();
        for part in parts {
            for (k, v) in part {
                match merged.get_mut(&k) {
                    Some(m) => m.append(v),
                    None => {
                        merged.insert(k, v);
                    }
                }
            }
        }
        let paths: HashMap<Box<[u32]>, PathIndex> = merged
            .into_par_iter()
            .map(|(keys, mut lp)| {
                lp.strings
                    .sort_unstable_by(|a, b| a.0.cmp(b.0).then(a.1.cmp(&b.1)));
                lp.numbers
                    .sort_unstable_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
                let bm = |v: Vec<u32>| RoaringBitmap::from_sorted_iter(v).unwrap_or_default();
                let [k0, k1, k2, k3, k4, k5] = lp.kinds;
                let idx = PathIndex {
                    keys: keys.clone(),
                    defined: bm(lp.defined),
                    kinds: [bm(k0), bm(k1), bm(k2), bm(k3), bm(k4), bm(k5)],
                    trues: bm(lp.trues),
                    strings: lp.strings.into_iter().map(|(_, d)| d).collect(),
                    numbers: lp.numbers.into_iter().map(|(_, d)| d).collect(),
                };
                (keys, idx)
            })
            .collect();
        CollectionIndex { paths, all }
    }

    /// Size figures.
    pub fn stats(&self) -> IndexStats {
        IndexStats {
            paths: self.paths.len(),
            entries: self
                .paths
                .values()
                .map(|p| p.strings.len() + p.numbers.len())
                .sum(),
            bytes: self.paths.values().map(PathIndex::bytes).sum::<usize>()
                + self.all.serialized_size(),
        }
    }

    /// All document ids.
    pub fn all(&self) -> &RoaringBitmap {
        &self.all
    }

    /// The postings of a path given as key ids, if it is indexed.
    pub fn path(&self, keys: &[u32]) -> Option<&PathIndex> {
        self.paths.get(keys)
    }
}

/// A compiled path, resolved against the index: where its postings are, or why there are none.
enum Resolved<'i> {
    /// The path is indexed.
    Indexed(&'i PathIndex),
    /// The path is covered by the policy but no document has it: Undefined everywhere.
    Nowhere,
    /// The index cannot answer for this path.
    Unindexed,
}

/// An index over a whole store: one [`CollectionIndex`] per collection.
#[derive(Debug, Default)]
pub struct StoreIndex {
    policy: Option<IndexPolicy>,
    colls: [CollectionIndex; 3],
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
        Some(Lookup {
            index: index.collection(coll.kind()),
            policy: index.policy.as_ref()?,
            coll,
        })
    }

    fn resolve(&self, p: &CPath) -> Resolved<'i> {
        if p.root != Root::Doc || p.steps.is_empty() {
            return Resolved::Unindexed;
        }
        let mut ids = Vec::with_capacity(p.steps.len());
        let mut names = Vec::with_capacity(p.steps.len());
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
            names.push(&*k.name);
        }
        if missing {
            return Resolved::Nowhere;
        }
        match self.index.paths.get(ids.as_slice()) {
            Some(pi) => Resolved::Indexed(pi),
            None => {
                // Covered but absent: no document has it. The stored spelling may differ from
                // the query's, so check the policy against the stored names.
                let stored: Vec<&str> = ids.iter().map(|&i| self.coll_key_name(i)).collect();
                if self.policy.covers(&stored) {
                    Resolved::Nowhere
                } else {
                    Resolved::Unindexed
                }
            }
        }
    }

    fn coll_key_name(&self, id: u32) -> &'s str {
        self.coll.store().key_name(id)
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

    /// The range `lo..hi` of `pi.strings` whose values compare to `s` as `pred` wants.
    fn str_range(&self, pi: &PathIndex, below: impl Fn(&str) -> bool) -> usize {
        pi.strings
            .partition_point(|&d| below(self.value_str(pi, d)))
    }

    fn num_range(&self, pi: &PathIndex, below: impl Fn(f64) -> bool) -> usize {
        pi.numbers
            .partition_point(|&d| below(self.value_num(pi, d)))
    }

    fn bitmap(ids: &[u32]) -> RoaringBitmap {
        let mut v = ids.to_vec();
        v.sort_unstable();
        RoaringBitmap::from_sorted_iter(v).unwrap_or_default()
    }

    /// Documents where the path equals the constant (true set) and where it has the
    /// constant's type but another value (false set).
    fn compare(&self, pi: &PathIndex, op: CompareOp, c: &Const) -> Answer {
        let (t, same_type) = match c {
            Const::String(s) => {
                let s: &str = s;
                let lo_eq = self.str_range(pi, |v| v < s);
                let hi_eq = self.str_range(pi, |v| v <= s);
                let n = pi.strings.len();
                let range = match op {
                    CompareOp::Eq | CompareOp::Ne => lo_eq..hi_eq,
                    CompareOp::Lt => 0..lo_eq,
                    CompareOp::Le => 0..hi_eq,
                    CompareOp::Gt => hi_eq..n,
                    CompareOp::Ge => lo_eq..n,
                };
                (
                    Self::bitmap(&pi.strings[range]),
                    &pi.kinds[kind_slot(Kind::String)],
                )
            }
            Const::Number(x) => {
                let x = *x;
                if x.is_nan() {
                    return Answer::Unknown;
                }
                let lo_eq = self.num_range(pi, |v| v < x);
                let hi_eq = self.num_range(pi, |v| v <= x);
                let n = pi.numbers.len();
                let range = match op {
                    CompareOp::Eq | CompareOp::Ne => lo_eq..hi_eq,
                    CompareOp::Lt => 0..lo_eq,
                    CompareOp::Le => 0..hi_eq,
                    CompareOp::Gt => hi_eq..n,
                    CompareOp::Ge => lo_eq..n,
                };
                (
                    Self::bitmap(&pi.numbers[range]),
                    &pi.kinds[kind_slot(Kind::Number)],
                )
            }
            Const::Bool(b) => {
                let bools = &pi.kinds[kind_slot(Kind::Bool)];
                let falses = bools - &pi.trues;
                let t = match (op, b) {
                    (CompareOp::Eq | CompareOp::Ne, true) => pi.trues.clone(),
                    (CompareOp::Eq | CompareOp::Ne, false) => falses,
                    (CompareOp::Lt, true) => falses,
                    (CompareOp::Lt, false) => RoaringBitmap::new(),
                    (CompareOp::Le, true) => bools.clone(),
                    (CompareOp::Le, false) => falses,
                    (CompareOp::Gt, true) => RoaringBitmap::new(),
                    (CompareOp::Gt, false) => pi.trues.clone(),
                    (CompareOp::Ge, true) => pi.trues.clone(),
                    (CompareOp::Ge, false) => bools.clone(),
                };
                (t, bools)
            }
            Const::Null => {
                let nulls = &pi.kinds[kind_slot(Kind::Null)];
                let t = match op {
                    CompareOp::Eq | CompareOp::Le | CompareOp::Ge | CompareOp::Ne => nulls.clone(),
                    CompareOp::Lt | CompareOp::Gt => RoaringBitmap::new(),
                };
                (t, nulls)
            }
            // Undefined, arrays and objects never compare: Undefined everywhere.
            Const::Undefined | Const::Json(_) => {
                return Answer::Exact {
                    t: RoaringBitmap::new(),
                    f: RoaringBitmap::new(),
                };
            }
        };
        let f = same_type - &t;
        if op == CompareOp::Ne {
            Answer::Exact { t: f, f: t }
        } else {
            Answer::Exact { t, f }
        }
    }

    fn primitives(pi: &PathIndex) -> RoaringBitmap {
        &(&pi.kinds[0] | &pi.kinds[1]) | &(&pi.kinds[2] | &pi.kinds[3])
    }

    fn nothing() -> Answer {
        Answer::Exact {
            t: RoaringBitmap::new(),
            f: RoaringBitmap::new(),
        }
    }

    fn path_answer(&self, p: &CPath, f: impl FnOnce(&PathIndex) -> Answer) -> Option<Answer> {
        match self.resolve(p) {
            Resolved::Indexed(pi) => Some(f(pi)),
            Resolved::Nowhere => None,
            Resolved::Unindexed => Some(Answer::Unknown),
        }
    }

    /// What the index says about condition `e`.
    pub fn answer(&self, e: &CExpr) -> Answer {
        match e {
            CExpr::Const(Const::Bool(true)) => Answer::Exact {
                t: self.index.all.clone(),
                f: RoaringBitmap::new(),
            },
            CExpr::Const(Const::Bool(false)) => Answer::Exact {
                t: RoaringBitmap::new(),
                f: self.index.all.clone(),
            },
            CExpr::Const(_) => Self::nothing(),
            CExpr::Path(p) => self
                .path_answer(p, |pi| Answer::Exact {
                    t: pi.trues.clone(),
                    f: &pi.kinds[kind_slot(Kind::Bool)] - &pi.trues,
                })
                .unwrap_or_else(Self::nothing),
            CExpr::Not(x) => self.answer(x).not(),
            CExpr::And(items) => {
                let answers: Vec<Answer> = items.iter().map(|i| self.answer(i)).collect();
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
                        t: t.unwrap_or_else(|| self.index.all.clone()),
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
                let answers: Vec<Answer> = items.iter().map(|i| self.answer(i)).collect();
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
                    .path_answer(p, |pi| self.compare(pi, *op, c))
                    .unwrap_or_else(Self::nothing),
                (CExpr::Const(c), CExpr::Path(p)) => self
                    .path_answer(p, |pi| self.compare(pi, op.flip(), c))
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
                    .path_answer(p, |pi| {
                        let mut t = RoaringBitmap::new();
                        for c in list {
                            match self.compare(pi, CompareOp::Eq, c) {
                                Answer::Exact { t: ct, .. } => t |= ct,
                                _ => return Answer::Unknown,
                            }
                        }
                        let f = Self::primitives(pi) - &t;
                        Answer::Exact { t, f }
                    })
                    .unwrap_or_else(Self::nothing);
                if *negated { ans.not() } else { ans }
            }
            CExpr::Call(func, args) => self.call(*func, args),
            _ => Answer::Unknown,
        }
    }

    fn call(&self, func: Func, args: &[CExpr]) -> Answer {
        let Some(CExpr::Path(p)) = args.first() else {
            return Answer::Unknown;
        };
        let all = &self.index.all;
        let type_check = |slots: &[usize]| {
            self.path_answer(p, |pi| {
                let mut t = RoaringBitmap::new();
                for &s in slots {
                    t |= &pi.kinds[s];
                }
                let f = all - &t;
                Answer::Exact { t, f }
            })
            .unwrap_or_else(|| Answer::Exact {
                t: RoaringBitmap::new(),
                f: all.clone(),
            })
        };
        match func {
            Func::IsDefined => self
                .path_answer(p, |pi| Answer::Exact {
                    t: pi.defined.clone(),
                    f: all - &pi.defined,
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
                self.path_answer(p, |pi| {
                    let lo = self.str_range(pi, |v| v < prefix);
                    let hi = lo
                        + pi.strings[lo..]
                            .partition_point(|&d| self.value_str(pi, d).starts_with(prefix));
                    let t = Self::bitmap(&pi.strings[lo..hi]);
                    let f = &pi.kinds[kind_slot(Kind::String)] - &t;
                    Answer::Exact { t, f }
                })
                .unwrap_or_else(Self::nothing)
            }
            _ => Answer::Unknown,
        }
    }

    /// Groups for `GROUP BY path` answered from the index: for each distinct value among
    /// `docs`, its documents, ordered by their first document. `None` when the path is not
    /// indexed or holds arrays or objects among `docs`.
    pub fn groups(&self, p: &CPath, docs: &RoaringBitmap) -> Option<Vec<RoaringBitmap>> {
        let pi = match self.resolve(p) {
            Resolved::Indexed(pi) => pi,
            Resolved::Nowhere => return Some(vec![docs.clone()]).filter(|_| !docs.is_empty()),
            Resolved::Unindexed => return None,
        };
        let composite = &pi.kinds[kind_slot(Kind::Array)] | &pi.kinds[kind_slot(Kind::Object)];
        if !composite.is_disjoint(docs) {
            return None;
        }
        let mut groups: Vec<RoaringBitmap> = Vec::new();
        let mut push = |b: RoaringBitmap| {
            if !b.is_empty() {
                groups.push(b);
            }
        };
        push(docs - &pi.defined);
        push(docs & &pi.kinds[kind_slot(Kind::Null)]);
        push(docs & &pi.trues);
        push(docs & &(&pi.kinds[kind_slot(Kind::Bool)] - &pi.trues));
        let runs =
            |list: &[u32], same: &dyn Fn(u32, u32) -> bool, push: &mut dyn FnMut(RoaringBitmap)| {
                let mut i = 0;
                while i < list.len() {
                    let mut j = i + 1;
                    while j < list.len() && same(list[i], list[j]) {
                        j += 1;
                    }
                    let mut b = Self::bitmap(&list[i..j]);
                    b &= docs;
                    push(b);
                    i = j;
                }
            };
        runs(
            &pi.strings,
            &|a, b| self.value_str(pi, a) == self.value_str(pi, b),
            &mut push,
        );
        runs(
            &pi.numbers,
            &|a, b| {
                self.value_num(pi, a).total_cmp(&self.value_num(pi, b)) == Ordering::Equal
                    || self.value_num(pi, a) == self.value_num(pi, b)
            },
            &mut push,
        );
        groups.sort_by_key(|g| g.min());
        Some(groups)
    }
}
