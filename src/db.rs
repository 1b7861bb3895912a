//! The query API over an in-memory twin store: parse, validate, plan, execute, page.

use crate::token::{self, TokenError};
use std::fmt;
use twinql_parser::ast::Collection;
use twinql_parser::{ParseErrors, parse_query};
use twinql_planner::eval::CompileError;
use twinql_planner::functions::FunctionSet;
use twinql_planner::plan::{Plan, PlanOptions, plan_query};
use twinql_planner::validate::{self, Diagnostic};
use twinql_store::Store;
use twinql_store::exec::{self, ExecOptions, Position};

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

/// A set of twins you can query: device twins, module twins and job records in memory.
#[derive(Default)]
pub struct Database {
    store: Store,
}

impl Database {
    /// An empty database.
    pub fn new() -> Database {
        Database::default()
    }

    /// A database over an already loaded store.
    pub fn from_store(store: Store) -> Database {
        Database { store }
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

    fn run(&self, plan: &Plan, opts: &ExecOptions) -> exec::Output {
        let coll = match plan.collection {
            Collection::Devices => self.store.devices(),
            Collection::Modules => self.store.modules(),
            Collection::Jobs => self.store.jobs(),
        };
        exec::execute(plan, coll.len(), |id| coll.doc(id), opts)
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
        let coll = match plan.collection {
            Collection::Devices => self.store.devices(),
            Collection::Modules => self.store.modules(),
            Collection::Jobs => self.store.jobs(),
        };
        exec::count(plan, coll.len(), |id| coll.doc(id), parallel)
    }
}

/// The item type of a plan's rows.
pub fn item_type(plan: &Plan) -> ItemType {
    match plan.item_type() {
        "twin" => ItemType::Twin,
        "deviceJob" => ItemType::DeviceJob,
        _ => ItemType::Raw,
    }
}
