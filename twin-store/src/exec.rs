//! Plan execution: parallel scans, projection, aggregation, `TOP` and paging.
//!
//! Execution is generic over the document layout: it needs the number of documents and a
//! function from a dense document id to a [`Node`] handle. Documents are visited in id order,
//! so results are deterministic and equal to a sequential run: matches are collected per chunk
//! in parallel and the chunks are concatenated in order; groups are ordered by the first
//! document that formed them.

use rayon::prelude::*;
use std::collections::HashMap;
use twinql_planner::eval::{self, CExpr, CPath, DocContext, Step};
use twinql_planner::plan::{AggFunc, AggItem, Plan, Shape};
use twinql_planner::value::{Node, Scalar, Value, write_json_string, write_number};

/// Documents per unit of parallel work.
const CHUNK: usize = 2048;

/// Where a page starts: the resume point of a previous page.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Position {
    /// Row queries: the next document id to scan. Aggregate queries: the next output row.
    pub next: u64,
    /// Rows returned so far (for `TOP`).
    pub emitted: u64,
}

/// How to execute.
#[derive(Clone, Copy, Debug)]
pub struct ExecOptions {
    /// Where to start.
    pub start: Position,
    /// At most this many rows (a page); `None` for all.
    pub limit: Option<usize>,
    /// Use all cores (the result is the same either way).
    pub parallel: bool,
}

impl Default for ExecOptions {
    fn default() -> ExecOptions {
        ExecOptions {
            start: Position::default(),
            limit: None,
            parallel: true,
        }
    }
}

/// Which documents to look at: all of them, or what an index returned.
#[derive(Clone, Debug, Default, PartialEq)]
pub enum Candidates {
    /// Scan every document and apply the filter.
    #[default]
    Scan,
    /// Only these documents; when `exact`, they are exactly the matches and the filter is
    /// not evaluated again.
    Index {
        /// Candidate document ids.
        ids: roaring::RoaringBitmap,
        /// Whether `ids` are exactly the matching documents.
        exact: bool,
    },
}

/// The rows of one page as JSON texts, and where the next page starts.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Output {
    /// Each row as compact JSON text.
    pub rows: Vec<String>,
    /// The resume point, or `None` when there are no more rows.
    pub next: Option<Position>,
}

/// Runs `plan` over documents `0..len`, reached through `doc`.
pub fn execute<'a, N, F>(plan: &'a Plan, len: usize, doc: F, opts: &ExecOptions) -> Output
where
    N: Node<'a>,
    F: Fn(u32) -> N + Sync,
{
    execute_with(plan, len, doc, opts, &Candidates::Scan)
}

/// Runs `plan` over the documents `cands` allows.
pub fn execute_with<'a, N, F>(
    plan: &'a Plan,
    len: usize,
    doc: F,
    opts: &ExecOptions,
    cands: &Candidates,
) -> Output
where
    N: Node<'a>,
    F: Fn(u32) -> N + Sync,
{
    match &plan.shape {
        Shape::Documents | Shape::Project(_) => rows(plan, len, &doc, opts, cands),
        Shape::Aggregate { keys, items, .. } => {
            let all = aggregate(plan, keys, items, len, &doc, opts.parallel, cands);
            page_of(all, plan.top, opts)
        }
    }
}

/// Counts the rows `plan` returns, without building them.
pub fn count<'a, N, F>(plan: &'a Plan, len: usize, doc: F, parallel: bool) -> u64
where
    N: Node<'a>,
    F: Fn(u32) -> N + Sync,
{
    count_with(plan, len, doc, parallel, &Candidates::Scan)
}

/// Counts the rows `plan` returns over the documents `cands` allows.
pub fn count_with<'a, N, F>(
    plan: &'a Plan,
    len: usize,
    doc: F,
    parallel: bool,
    cands: &Candidates,
) -> u64
where
    N: Node<'a>,
    F: Fn(u32) -> N + Sync,
{
    let n = match (&plan.shape, cands) {
        (Shape::Aggregate { keys, items, .. }, _) => {
            aggregate(plan, keys, items, len, &doc, parallel, cands).len() as u64
        }
        // `TOP n` stops after n matches.
        (_, _) if plan.top.is_some() => {
            let opts = ExecOptions {
                parallel,
                ..ExecOptions::default()
            };
            page_ids(plan, len, &doc, &opts, cands).0.len() as u64
        }
        (_, Candidates::Index { ids, exact: true }) => ids.len(),
        (_, Candidates::Index { ids, exact: false }) => {
            let ids: Vec<u32> = ids.iter().collect();
            let test = |id: &u32| passes(plan.filter.as_ref(), doc(*id));
            if parallel {
                ids.par_iter().filter(|i| test(i)).count() as u64
            } else {
                ids.iter().filter(|i| test(i)).count() as u64
            }
        }
        (_, Candidates::Scan) => {
            let test = |id: usize| passes(plan.filter.as_ref(), doc(id as u32));
            if parallel {
                (0..len).into_par_iter().filter(|&i| test(i)).count() as u64
            } else {
                (0..len).filter(|&i| test(i)).count() as u64
            }
        }
    };
    plan.top.map_or(n, |t| n.min(t))
}

/// The ids of `cands` from `from` on that pass the filter (all of them when exact), stopping
/// once `want` are found; returns them and where the scan stopped.
fn candidate_ids<'a, N, F>(
    filter: Option<&'a CExpr>,
    ids: &roaring::RoaringBitmap,
    exact: bool,
    from: u32,
    want: Option<usize>,
    doc: &F,
    parallel: bool,
) -> Vec<u32>
where
    N: Node<'a>,
    F: Fn(u32) -> N + Sync,
{
    let iter = ids.range(from..);
    if exact {
        return match want {
            Some(w) => iter.take(w + 1).collect(),
            None => iter.collect(),
        };
    }
    let test = |id: &u32| passes(filter, doc(*id));
    let mut iter = iter.peekable();
    let mut out = Vec::new();
    let mut window = want.map_or(usize::MAX, |w| (w * 2).max(64));
    let mut part: Vec<u32> = Vec::new();
    while iter.peek().is_some() && want.is_none_or(|w| out.len() <= w) {
        part.clear();
        part.extend(iter.by_ref().take(window));
        if parallel && part.len() > CHUNK {
            let found: Vec<Vec<u32>> = part
                .par_chunks(CHUNK)
                .map(|c| c.iter().copied().filter(|i| test(i)).collect())
                .collect();
            out.extend(found.concat());
        } else {
            out.extend(part.iter().copied().filter(|i| test(i)));
        }
        window = window.saturating_mul(2);
    }
    out
}

/// The ids of matching documents among `range`, in order.
pub fn filter_ids<'a, N, F>(
    filter: Option<&'a CExpr>,
    range: std::ops::Range<usize>,
    doc: &F,
    parallel: bool,
) -> Vec<u32>
where
    N: Node<'a>,
    F: Fn(u32) -> N + Sync,
{
    let test = |id: &u32| passes(filter, doc(*id));
    let ids = range.start as u32..range.end as u32;
    if parallel && range.len() > CHUNK {
        let starts: Vec<u32> = ids.clone().step_by(CHUNK).collect();
        let parts: Vec<Vec<u32>> = starts
            .par_iter()
            .map(|&s| {
                (s..(s + CHUNK as u32).min(ids.end))
                    .filter(|i| test(i))
                    .collect()
            })
            .collect();
        parts.concat()
    } else {
        ids.filter(|i| test(i)).collect()
    }
}

fn passes<'a, N: Node<'a>>(filter: Option<&'a CExpr>, node: N) -> bool {
    match filter {
        None => true,
        Some(f) => eval::matches(f, &DocContext(node)),
    }
}

fn rows<'a, N, F>(
    plan: &'a Plan,
    len: usize,
    doc: &F,
    opts: &ExecOptions,
    cands: &Candidates,
) -> Output
where
    N: Node<'a>,
    F: Fn(u32) -> N + Sync,
{
    let (ids, next) = page_ids(plan, len, doc, opts, cands);
    // Rows are written into a buffer each worker reuses, then copied out at their exact size.
    let render = |buf: &mut Vec<u8>, id: &u32| render_row_with(plan, doc(*id), buf);
    let rows = if opts.parallel && ids.len() > 256 {
        ids.par_iter().map_init(Vec::new, render).collect()
    } else {
        let mut buf = Vec::new();
        ids.iter().map(|id| render(&mut buf, id)).collect()
    };
    Output { rows, next }
}

/// The documents of one page of a row query, in order, and where the next page starts.
fn page_ids<'a, N, F>(
    plan: &'a Plan,
    len: usize,
    doc: &F,
    opts: &ExecOptions,
    cands: &Candidates,
) -> (Vec<u32>, Option<Position>)
where
    N: Node<'a>,
    F: Fn(u32) -> N + Sync,
{
    let remaining_top = plan
        .top
        .map(|t| t.saturating_sub(opts.start.emitted) as usize);
    let want = match (opts.limit, remaining_top) {
        (Some(l), Some(t)) => Some(l.min(t)),
        (l, t) => l.or(t),
    };
    let mut ids: Vec<u32> = Vec::new();
    let mut pos = (opts.start.next as usize).min(len);
    match cands {
        Candidates::Scan => {
            let mut window = match want {
                Some(w) => (w * 16).clamp(256, 1 << 20),
                None => len,
            };
            while pos < len && want.is_none_or(|w| ids.len() <= w) {
                let end = (pos + window).min(len);
                ids.extend(filter_ids(
                    plan.filter.as_ref(),
                    pos..end,
                    doc,
                    opts.parallel,
                ));
                pos = end;
                window = window.saturating_mul(2);
            }
        }
        Candidates::Index { ids: set, exact } => {
            ids = candidate_ids(
                plan.filter.as_ref(),
                set,
                *exact,
                pos as u32,
                want,
                doc,
                opts.parallel,
            );
            pos = len;
        }
    }
    let mut next_doc = pos as u64;
    if let Some(w) = want
        && ids.len() > w
    {
        next_doc = ids[w] as u64;
        ids.truncate(w);
    }
    let emitted = opts.start.emitted + ids.len() as u64;
    let more_docs = (next_doc as usize) < len;
    let top_done = plan.top.is_some_and(|t| emitted >= t);
    let next = if more_docs && !top_done && want.is_some() {
        Some(Position {
            next: next_doc,
            emitted,
        })
    } else {
        None
    };
    (ids, next)
}

/// The JSON text of one result row for a row query.
pub fn render_row<'a, N: Node<'a>>(plan: &'a Plan, node: N) -> String {
    render_row_with(plan, node, &mut Vec::new())
}

/// [`render_row`] through `out`, a buffer the caller reuses across rows (cleared first).
pub fn render_row_with<'a, N: Node<'a>>(plan: &'a Plan, node: N, out: &mut Vec<u8>) -> String {
    out.clear();
    match &plan.shape {
        Shape::Documents => node.write_json(out),
        Shape::Project(items) => {
            out.push(b'{');
            let mut first = true;
            for item in items {
                let v = item.path.resolve(Value::Node(node));
                if !v.is_defined() {
                    continue;
                }
                if !first {
                    out.push(b',');
                }
                first = false;
                let name = match &item.alias {
                    Some(a) => a.clone(),
                    None => stored_name(&item.path, node),
                };
                write_json_string(&name, out);
                out.push(b':');
                v.write_json(out);
            }
            out.push(b'}');
        }
        Shape::Aggregate { .. } => {}
    }
    // The text is UTF-8 by construction (tapes are); the check is SIMD-wide.
    simdutf8::basic::from_utf8(out)
        .map(str::to_owned)
        .unwrap_or_default()
}

/// The name a projected path gets without an alias: its last member name, spelled as stored
/// in `root` (spec §6.2), or as written when the document does not have it.
pub fn stored_name<'a, N: Node<'a>>(path: &CPath, root: N) -> String {
    let Some(last) = path.last_key() else {
        return String::new();
    };
    let last_member = path
        .steps
        .iter()
        .rposition(|s| matches!(s, Step::Member(_)))
        .unwrap_or(0);
    let parent = CPath {
        root: path.root.clone(),
        steps: path.steps[..last_member].to_vec(),
    };
    let Value::Node(parent) = parent.resolve(Value::Node(root)) else {
        return last.name.to_string();
    };
    let mut exact = false;
    let mut folded: Option<String> = None;
    parent.for_each_member(&mut |k, _| {
        if *k == *last.name {
            exact = true;
        } else if folded.is_none() && last.matches_folded(k) {
            folded = Some(k.to_string());
        }
    });
    if exact {
        last.name.to_string()
    } else {
        folded.unwrap_or_else(|| last.name.to_string())
    }
}

/// Running state of one aggregate.
#[derive(Clone, Debug, Default)]
struct AggState {
    count: u64,
    sum: f64,
    numbers: u64,
    min_num: Option<f64>,
    max_num: Option<f64>,
    min_str: Option<String>,
    max_str: Option<String>,
}

impl AggState {
    fn add<'a, N: Node<'a>>(&mut self, v: &Value<'a, N>) {
        self.count += 1;
        match v {
            Value::Number(n) => {
                self.sum += n;
                self.numbers += 1;
                self.min_num = Some(self.min_num.map_or(*n, |m| m.min(*n)));
                self.max_num = Some(self.max_num.map_or(*n, |m| m.max(*n)));
            }
            Value::String(s) => {
                if self.min_str.as_deref().is_none_or(|m| s.as_ref() < m) {
                    self.min_str = Some(s.to_string());
                }
                if self.max_str.as_deref().is_none_or(|m| s.as_ref() > m) {
                    self.max_str = Some(s.to_string());
                }
            }
            _ => {}
        }
    }

    fn merge(&mut self, o: AggState) {
        self.count += o.count;
        self.sum += o.sum;
        self.numbers += o.numbers;
        self.min_num = match (self.min_num, o.min_num) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        self.max_num = match (self.max_num, o.max_num) {
            (Some(a), Some(b)) => Some(a.max(b)),
            (a, b) => a.or(b),
        };
        self.min_str = match (self.min_str.take(), o.min_str) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        self.max_str = match (self.max_str.take(), o.max_str) {
            (Some(a), Some(b)) => Some(a.max(b)),
            (a, b) => a.or(b),
        };
    }

    /// The result, or `None` when the member is to be omitted.
    fn result(&self, func: AggFunc, out: &mut Vec<u8>) -> bool {
        match func {
            AggFunc::Count => write_number(self.count as f64, out),
            AggFunc::Sum if self.numbers > 0 => write_number(self.sum, out),
            AggFunc::Avg if self.numbers > 0 => write_number(self.sum / self.numbers as f64, out),
            AggFunc::Min | AggFunc::Max => {
                let (n, s) = if func == AggFunc::Min {
                    (self.min_num, &self.min_str)
                } else {
                    (self.max_num, &self.max_str)
                };
                match (n, s) {
                    (Some(n), _) => write_number(n, out),
                    (None, Some(s)) => write_json_string(s, out),
                    (None, None) => return false,
                }
            }
            _ => return false,
        }
        true
    }
}

/// One group: its first document, key names as stored, and the aggregates' states.
#[derive(Clone, Debug)]
struct Group {
    first: u32,
    names: Vec<Option<String>>,
    states: Vec<AggState>,
}

fn aggregate<'a, N, F>(
    plan: &'a Plan,
    keys: &'a [CPath],
    items: &'a [AggItem],
    len: usize,
    doc: &F,
    parallel: bool,
    cands: &Candidates,
) -> Vec<String>
where
    N: Node<'a>,
    F: Fn(u32) -> N + Sync,
{
    let n_aggs = items
        .iter()
        .filter(|i| matches!(i, AggItem::Agg { .. }))
        .count();
    let (list, check): (Option<Vec<u32>>, bool) = match cands {
        Candidates::Scan => (None, true),
        Candidates::Index { ids, exact } => (Some(ids.iter().collect()), !*exact),
    };
    let fold_range = |range: std::ops::Range<u32>| {
        let mut groups: HashMap<Vec<Scalar>, Group> = HashMap::new();
        for i in range {
            let id = match &list {
                Some(l) => l[i as usize],
                None => i,
            };
            let node = doc(id);
            if check && !passes(plan.filter.as_ref(), node) {
                continue;
            }
            let key: Vec<Scalar> = keys
                .iter()
                .map(|k| k.resolve(Value::Node(node)).to_owned_scalar())
                .collect();
            let g = groups.entry(key).or_insert_with(|| Group {
                first: id,
                names: keys
                    .iter()
                    .map(|k| {
                        k.resolve(Value::Node(node))
                            .is_defined()
                            .then(|| stored_name(k, node))
                    })
                    .collect(),
                states: vec![AggState::default(); n_aggs],
            });
            let mut s = 0;
            for item in items {
                if let AggItem::Agg { path, .. } = item {
                    match path {
                        Some(p) => {
                            let v = p.resolve(Value::Node(node));
                            if v.is_defined() {
                                g.states[s].add(&v);
                            }
                        }
                        None => g.states[s].count += 1,
                    }
                    s += 1;
                }
            }
        }
        groups
    };
    let merge = |mut a: HashMap<Vec<Scalar>, Group>, b: HashMap<Vec<Scalar>, Group>| {
        for (k, g) in b {
            match a.get_mut(&k) {
                Some(existing) => {
                    if g.first < existing.first {
                        existing.first = g.first;
                        existing.names = g.names.clone();
                    }
                    for (s, o) in existing.states.iter_mut().zip(g.states) {
                        s.merge(o);
                    }
                }
                None => {
                    a.insert(k, g);
                }
            }
        }
        a
    };
    let n = list.as_ref().map_or(len, Vec::len);
    let groups = if parallel && n > CHUNK {
        let starts: Vec<u32> = (0..n as u32).step_by(CHUNK).collect();
        starts
            .par_iter()
            .map(|&s| fold_range(s..(s + CHUNK as u32).min(n as u32)))
            .reduce(HashMap::new, merge)
    } else {
        fold_range(0..n as u32)
    };
    let mut groups: Vec<(Vec<Scalar>, Group)> = groups.into_iter().collect();
    if groups.is_empty() && keys.is_empty() {
        groups.push((
            Vec::new(),
            Group {
                first: 0,
                names: Vec::new(),
                states: vec![AggState::default(); n_aggs],
            },
        ));
    }
    groups.sort_by_key(|(_, g)| g.first);
    render_groups(&groups, items)
}

fn render_groups(groups: &[(Vec<Scalar>, Group)], items: &[AggItem]) -> Vec<String> {
    groups
        .iter()
        .map(|(key, g)| {
            let mut out = Vec::with_capacity(64);
            out.push(b'{');
            let mut first = true;
            let mut s = 0;
            for item in items {
                let mut member = Vec::new();
                let name = match item {
                    AggItem::Key { index, alias } => {
                        if key[*index] == Scalar::Undefined {
                            continue;
                        }
                        key[*index].write_json(&mut member);
                        match alias {
                            Some(a) => a.clone(),
                            None => g.names[*index].clone().unwrap_or_default(),
                        }
                    }
                    AggItem::Agg { func, name, .. } => {
                        let present = g.states[s].result(*func, &mut member);
                        s += 1;
                        if !present {
                            continue;
                        }
                        name.clone()
                    }
                };
                if !first {
                    out.push(b',');
                }
                first = false;
                write_json_string(&name, &mut out);
                out.push(b':');
                out.extend_from_slice(&member);
            }
            out.push(b'}');
            String::from_utf8(out).unwrap_or_default()
        })
        .collect()
}

/// Aggregate rows for groups already formed (by an index): one row per group, in the order
/// given. `COUNT()` comes from the group sizes; other aggregates read the group's documents.
pub fn aggregate_from_groups<'a, N, F>(
    plan: &'a Plan,
    groups: &[roaring::RoaringBitmap],
    doc: F,
    opts: &ExecOptions,
) -> Output
where
    N: Node<'a>,
    F: Fn(u32) -> N + Sync,
{
    let Shape::Aggregate { keys, items, .. } = &plan.shape else {
        return Output::default();
    };
    let needs_docs = items
        .iter()
        .any(|i| matches!(i, AggItem::Agg { path: Some(_), .. }));
    let mut built: Vec<(Vec<Scalar>, Group)> = groups
        .iter()
        .filter_map(|g| {
            let first = g.min()?;
            let node = doc(first);
            let key = keys
                .iter()
                .map(|k| k.resolve(Value::Node(node)).to_owned_scalar())
                .collect();
            let names = keys
                .iter()
                .map(|k| {
                    k.resolve(Value::Node(node))
                        .is_defined()
                        .then(|| stored_name(k, node))
                })
                .collect();
            let mut states = Vec::new();
            for item in items {
                if let AggItem::Agg { path, .. } = item {
                    let mut st = AggState::default();
                    match path {
                        None => st.count = g.len(),
                        Some(p) if needs_docs => {
                            for id in g {
                                let v = p.resolve(Value::Node(doc(id)));
                                if v.is_defined() {
                                    st.add(&v);
                                }
                            }
                        }
                        Some(_) => {}
                    }
                    states.push(st);
                }
            }
            Some((
                key,
                Group {
                    first,
                    names,
                    states,
                },
            ))
        })
        .collect();
    if built.is_empty() && keys.is_empty() {
        let n_aggs = items
            .iter()
            .filter(|i| matches!(i, AggItem::Agg { .. }))
            .count();
        built.push(lone_group(vec![AggState::default(); n_aggs]));
    }
    built.sort_by_key(|(_, g)| g.first);
    page_of(render_groups(&built, items), plan.top, opts)
}

/// The row of an ungrouped aggregate whose items are all `COUNT()`, each `n` (the count of a
/// filter known without reading documents). `None` for any other aggregate.
pub fn aggregate_counted(plan: &Plan, n: u64, opts: &ExecOptions) -> Option<Output> {
    let Shape::Aggregate { keys, items, .. } = &plan.shape else {
        return None;
    };
    if !counts_only(keys, items) {
        return None;
    }
    let states = items
        .iter()
        .map(|_| AggState {
            count: n,
            ..AggState::default()
        })
        .collect();
    Some(page_of(
        render_groups(&[lone_group(states)], items),
        plan.top,
        opts,
    ))
}

/// The one group of an aggregate without GROUP BY.
fn lone_group(states: Vec<AggState>) -> (Vec<Scalar>, Group) {
    (
        Vec::new(),
        Group {
            first: 0,
            names: Vec::new(),
            states,
        },
    )
}

/// Whether an aggregate has no GROUP BY and only `COUNT()` items: its one row is known from
/// how many documents pass the filter.
pub fn counts_only(keys: &[CPath], items: &[AggItem]) -> bool {
    keys.is_empty()
        && items.iter().all(|i| {
            matches!(
                i,
                AggItem::Agg {
                    func: AggFunc::Count,
                    path: None,
                    ..
                }
            )
        })
}

fn page_of(mut all: Vec<String>, top: Option<u64>, opts: &ExecOptions) -> Output {
    if let Some(t) = top {
        all.truncate(t.min(usize::MAX as u64) as usize);
    }
    let start = (opts.start.next as usize).min(all.len());
    let end = match opts.limit {
        Some(l) => (start + l).min(all.len()),
        None => all.len(),
    };
    let next = (end < all.len()).then_some(Position {
        next: end as u64,
        emitted: end as u64,
    });
    Output {
        rows: all.drain(start..end).collect(),
        next,
    }
}
