//! The query API over an in-memory twin store: parse, validate, plan, execute, page.

use crate::token::{self, TokenError};
use std::fmt;
use std::time::Instant;
use twinql_parser::ast::Collection;
use twinql_parser::{ParseErrors, parse_query};
use twinql_planner::eval::CompileError;
use twinql_planner::functions::FunctionSet;
use twinql_planner::plan::{Plan, PlanOptions, plan_query};
use twinql_planner::validate::{self, Diagnostic};
use twinql_store::exec::{self, Candidates, ExecOptions, Position};
use twinql_store::index::{Answer, IndexPolicy, IndexStats, Lookup, StoreIndex};
use twinql_store::{Collection as StoreCollection, Store};

/// The largest page the service returns (spec §6.1); larger requests are clamped (spec D-9).
pub const MAX_PAGE_SIZE: usize = 100;

/// How to run one page of a query.
#[derive(Clone, Debug)]
pub struct QueryOptions {
    /// Rows per page: 1 to [`MAX_PAGE_SIZE`] (default 100; larger values are clamped).
    pub page_size: usize,
    /// The token of the previous page, if this is not the first.
    pub continuation: Option<String>,
    /// Which scalar functions twin queries may use.
    pub functions: FunctionSet,
    /// Use all cores (results are the same either way).
    pub parallel: bool,
}

impl Default for QueryOptions {
    fn default() -> QueryOptions {
        QueryOptions {
            page_size: MAX_PAGE_SIZE,
            continuation: None,
            functions: FunctionSet::Twin,
            parallel: true,
        }
    }
}

/// The `x-ms-item-type` of a result (spec §6.1).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ItemType {
    /// Whole device or module twins.
    Twin,
    /// Whole per-device job records.
    DeviceJob,
    /// Projections and aggregates.
    Raw,
}

impl ItemType {
    /// The header value: `twin`, `deviceJob` or `raw`.
    pub fn as_str(self) -> &'static str {
        match self {
            ItemType::Twin => "twin",
            ItemType::DeviceJob => "deviceJob",
            ItemType::Raw => "raw",
        }
    }
}

impl fmt::Display for ItemType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One page of results.
#[derive(Clone, Debug, PartialEq)]
pub struct Page {
    /// The rows, each as compact JSON text.
    pub items: Vec<String>,
    /// The token for the next page; `None` on the last page.
    pub continuation: Option<String>,
    /// What the rows are.
    pub item_type: ItemType,
}

impl Page {
    /// The rows parsed into JSON values.
    pub fn values(&self) -> Vec<serde_json::Value> {
        self.items
            .iter()
            .map(|r| serde_json::from_str(r).unwrap_or(serde_json::Value::Null))
            .collect()
    }
}

/// Why a query was not run.
#[derive(Debug)]
pub enum QueryError {
    /// The text does not parse.
    Syntax(ParseErrors),
    /// The query parses but breaks a rule of the language.
    Invalid(Vec<Diagnostic>),
    /// The plan could not be built.
    Plan(CompileError),
    /// The continuation token is not valid for this query.
    Continuation(TokenError),
}

impl fmt::Display for QueryError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            QueryError::Syntax(e) => write!(f, "syntax error: {e}"),
            QueryError::Invalid(d) => {
                f.write_str("invalid query: ")?;
                for (i, d) in d.iter().enumerate() {
                    if i > 0 {
                        f.write_str("; ")?;
                    }
                    write!(f, "{} at bytes {}..{}", d.message, d.span.start, d.span.end)?;
                }
                Ok(())
            }
            QueryError::Plan(e) => write!(f, "cannot plan query: {e}"),
            QueryError::Continuation(e) => write!(f, "{e}"),
        }
    }
}

impl std::error::Error for QueryError {}

/// A set of twins you can query: device twins, module twins and job records in memory, with
/// optional path indexes.
#[derive(Default)]
pub struct Database {
    store: Store,
    index: Option<StoreIndex>,
}

/// How the engine reaches the documents of one query (the physical plan).
#[derive(Clone, Debug, PartialEq)]
pub enum Access {
    /// `FullScanExec`: every document, filter evaluated on each.
    FullScan,
    /// `IndexScanExec`: the documents an index lookup returned; `exact` when the lookup is the
    /// whole filter (no residual check).
    IndexScan {
        /// Candidate documents.
        ids: roaring::RoaringBitmap,
        /// Whether no residual filter is needed.
        exact: bool,
    },
    /// `IndexGroupExec`: groups (or the single group of an ungrouped aggregate) formed from
    /// posting lists, counted without reading documents.
    IndexGroups(Vec<roaring::RoaringBitmap>),
}

impl Access {
    /// The operator's name, as `explain` prints it.
    pub fn name(&self) -> &'static str {
        match self {
            Access::FullScan => "FullScanExec",
            Access::IndexScan { exact: true, .. } => "IndexScanExec",
            Access::IndexScan { exact: false, .. } => "IndexScanExec+Filter",
            Access::IndexGroups(_) => "IndexGroupExec",
        }
    }
}

impl Database {
    /// An empty database.
    pub fn new() -> Database {
        Database::default()
    }

    /// A database over an already loaded store (no indexes; see [`Database::build_index`]).
    pub fn from_store(store: Store) -> Database {
        Database { store, index: None }
    }

    /// Builds path indexes under `policy` (replacing any), and returns their size figures.
    pub fn build_index(&mut self, policy: &IndexPolicy) -> IndexStats {
        let index = StoreIndex::build(&self.store, policy);
        let stats = index.stats();
        self.index = Some(index);
        stats
    }

    /// Drops the indexes: every query scans.
    pub fn drop_index(&mut self) {
        self.index = None;
    }

    /// The indexes, if built.
    pub fn index(&self) -> Option<&StoreIndex> {
        self.index.as_ref()
    }

    /// The underlying store.
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// The underlying store, to load more documents.
    pub fn store_mut(&mut self) -> &mut Store {
        &mut self.store
    }

    /// Parses, validates and plans `text`, resolving its member names against the store.
    pub fn plan(&self, text: &str, functions: FunctionSet) -> Result<Plan, QueryError> {
        let query = parse_query(text).map_err(QueryError::Syntax)?;
        let opts = validate::Options {
            functions,
            ..validate::Options::default()
        };
        let report = validate::validate_query(&query, &opts);
        if report.has_errors() {
            return Err(QueryError::Invalid(
                report.errors().into_iter().cloned().collect(),
            ));
        }
        let mut plan = plan_query(&query, &PlanOptions { functions }).map_err(QueryError::Plan)?;
        plan.for_each_key(&mut |k| self.store.resolve_key(k));
        Ok(plan)
    }

    fn collection(&self, plan: &Plan) -> StoreCollection<'_> {
        match plan.collection {
            Collection::Devices => self.store.devices(),
            Collection::Modules => self.store.modules(),
            Collection::Jobs => self.store.jobs(),
        }
    }

    /// Chooses how to reach the documents of `plan`: an index lookup when the indexes can
    /// narrow the filter down, else a full scan.
    pub fn access(&self, plan: &Plan) -> Access {
        let coll = self.collection(plan);
        let Some(lookup) = self.index.as_ref().and_then(|i| Lookup::new(i, coll)) else {
            return Access::FullScan;
        };
        let rows_with_top = plan.top.is_some()
            && !matches!(plan.shape, twinql_planner::plan::Shape::Aggregate { .. });
        let lookup = lookup.prefer_residual(rows_with_top);
        let answer = match &plan.filter {
            Some(f) => lookup.answer(f),
            None => Answer::Exact {
                t: all_ids(coll.len()),
                f: roaring::RoaringBitmap::new(),
            },
        };
        match answer {
            Answer::Exact { t, .. } => {
                if let twinql_planner::plan::Shape::Aggregate { keys, .. } = &plan.shape {
                    match keys.as_slice() {
                        [] => return Access::IndexGroups(vec![t]),
                        [k] => {
                            if let Some(groups) = lookup.groups(k, &t) {
                                return Access::IndexGroups(groups);
                            }
                        }
                        _ => {}
                    }
                }
                if plan.filter.is_none() {
                    return Access::FullScan;
                }
                Access::IndexScan {
                    ids: t,
                    exact: true,
                }
            }
            // A weak narrowing is not worth the random access: scan instead.
            Answer::Candidates(c) if c.len() * 2 < coll.len() as u64 => Access::IndexScan {
                ids: c,
                exact: false,
            },
            _ => Access::FullScan,
        }
    }

    fn execute(&self, plan: &Plan, access: &Access, opts: &ExecOptions) -> exec::Output {
        let coll = self.collection(plan);
        let doc = |id| coll.doc(id);
        match access {
            Access::FullScan => exec::execute(plan, coll.len(), doc, opts),
            Access::IndexScan { ids, exact } => exec::execute_with(
                plan,
                coll.len(),
                doc,
                opts,
                &Candidates::Index {
                    ids: ids.clone(),
                    exact: *exact,
                },
            ),
            Access::IndexGroups(groups) => exec::aggregate_from_groups(plan, groups, doc, opts),
        }
    }

    /// Runs a planned query to the end through the given access path.
    pub fn run_access(&self, plan: &Plan, access: &Access, parallel: bool) -> Vec<String> {
        self.execute(
            plan,
            access,
            &ExecOptions {
                parallel,
                ..ExecOptions::default()
            },
        )
        .rows
    }

    fn run(&self, plan: &Plan, opts: &ExecOptions) -> exec::Output {
        let access = self.access(plan);
        self.execute(plan, &access, opts)
    }

    /// The logical and physical plan of a query; with `analyze`, runs it and adds the
    /// estimated and actual row counts and the time taken.
    pub fn explain(
        &self,
        text: &str,
        functions: FunctionSet,
        analyze: bool,
    ) -> Result<String, QueryError> {
        let start = Instant::now();
        let plan = self.plan(text, functions)?;
        let plan_time = start.elapsed();
        let start = Instant::now();
        let access = self.access(&plan);
        let access_time = start.elapsed();
        let coll = self.collection(&plan);
        let estimate = match &access {
            Access::FullScan => coll.len() as u64,
            Access::IndexScan { ids, .. } => ids.len(),
            Access::IndexGroups(g) => g.len() as u64,
        };
        let mut out = String::new();
        out.push_str("Logical plan:\n");
        for line in plan.to_string().lines() {
            out.push_str("  ");
            out.push_str(line);
            out.push('\n');
        }
        out.push_str("Physical plan:\n");
        let detail = match &access {
            Access::FullScan => format!("{} documents", coll.len()),
            Access::IndexScan { ids, exact } => format!(
                "{} candidate{}{}",
                ids.len(),
                if ids.len() == 1 { "" } else { "s" },
                if *exact {
                    ", exact"
                } else {
                    ", residual filter"
                }
            ),
            Access::IndexGroups(g) => format!(
                "{} group{} from posting lists",
                g.len(),
                if g.len() == 1 { "" } else { "s" }
            ),
        };
        out.push_str(&format!(
            "  {} on {} ({detail}; est. rows {estimate})\n",
            access.name(),
            plan.collection.name()
        ));
        if analyze {
            let start = Instant::now();
            let rows = self.execute(&plan, &access, &ExecOptions::default()).rows;
            let exec_time = start.elapsed();
            out.push_str(&format!(
                "Analyze: est. rows {estimate}, actual rows {}; plan {:.3} ms, index {:.3} ms, execute {:.3} ms\n",
                rows.len(),
                plan_time.as_secs_f64() * 1e3,
                access_time.as_secs_f64() * 1e3,
                exec_time.as_secs_f64() * 1e3,
            ));
        }
        Ok(out)
    }

    /// Runs one page of a query (spec §6): at most `page_size` rows, and a continuation token
    /// when more remain.
    pub fn query(&self, text: &str, opts: &QueryOptions) -> Result<Page, QueryError> {
        let start = match &opts.continuation {
            Some(t) => token::decode(text, t).map_err(QueryError::Continuation)?,
            None => Position::default(),
        };
        let plan = self.plan(text, opts.functions)?;
        let out = self.run(
            &plan,
            &ExecOptions {
                start,
                limit: Some(opts.page_size.clamp(1, MAX_PAGE_SIZE)),
                parallel: opts.parallel,
            },
        );
        Ok(Page {
            items: out.rows,
            continuation: out.next.map(|p| token::encode(text, p)),
            item_type: item_type(&plan),
        })
    }

    /// Runs a query to the end and returns every row.
    pub fn query_all(&self, text: &str) -> Result<Vec<String>, QueryError> {
        let plan = self.plan(text, FunctionSet::Twin)?;
        Ok(self.run(&plan, &ExecOptions::default()).rows)
    }

    /// Runs a planned query to the end.
    pub fn run_plan(&self, plan: &Plan, parallel: bool) -> Vec<String> {
        self.run(
            plan,
            &ExecOptions {
                parallel,
                ..ExecOptions::default()
            },
        )
        .rows
    }

    /// Counts the rows of a planned query without building them.
    pub fn count_plan(&self, plan: &Plan, parallel: bool) -> u64 {
        let coll = self.collection(plan);
        let doc = |id| coll.doc(id);
        match self.access(plan) {
            Access::FullScan => exec::count(plan, coll.len(), doc, parallel),
            Access::IndexScan { ids, exact } => exec::count_with(
                plan,
                coll.len(),
                doc,
                parallel,
                &Candidates::Index { ids, exact },
            ),
            Access::IndexGroups(groups) => {
                let grouped = matches!(
                    &plan.shape,
                    twinql_planner::plan::Shape::Aggregate { keys, .. } if !keys.is_empty()
                );
                let n = if grouped { groups.len() as u64 } else { 1 };
                plan.top.map_or(n, |t| n.min(t))
            }
        }
    }
}

/// Every document id of a collection of `len` documents.
fn all_ids(len: usize) -> roaring::RoaringBitmap {
    let mut all = roaring::RoaringBitmap::new();
    all.insert_range(0..len as u32);
    all
}

/// The item type of a plan's rows.
pub fn item_type(plan: &Plan) -> ItemType {
    match plan.item_type() {
        "twin" => ItemType::Twin,
        "deviceJob" => ItemType::DeviceJob,
        _ => ItemType::Raw,
    }
}
