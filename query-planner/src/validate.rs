//! Semantic checks on a parsed query: everything the grammar accepts but the language does not.
//!
//! Validation walks the whole tree and reports **every** error and warning it finds, sorted by
//! position, instead of stopping at the first. Errors are queries the service rejects (or that
//! twinql rejects on purpose, like routing functions in a twin query); warnings are queries that
//! run but contain a condition that can never be true.
//!
//! Each diagnostic has a stable kebab-case code, listed in [`codes`] with a query that triggers
//! it.
//!
//! Decisions on points the specification leaves open (§10):
//!
//! - **Un-aliased aggregates** are allowed and named `$n`, where `n` is the 1-based position of
//!   the item in the select list: `SELECT tags.SiteId, COUNT() FROM devices GROUP BY
//!   tags.SiteId` produces members `SiteId` and `$2` (see [`output_names`]).
//! - **Duplicate output names** are an error. Names are compared ignoring case, because member
//!   names are resolved case-insensitively (spec §2.2): a row `{"a": 1, "A": 2}` could not be
//!   read back unambiguously.
//! - **`TOP n`** must lie in `1..=`[`MAX_TOP`] (one million).
//! - **`GROUP BY`** may list several paths; it is allowed only on `FROM devices`. Aggregates
//!   without `GROUP BY` are allowed on `devices.modules` unless
//!   [`Options::allow_module_aggregates`] is off.
//! - A leading collection prefix (`devices.`, `devices.modules.`, `devices.jobs.`) is ignored
//!   when paths are compared (group keys) or classified (twin sections in job queries).

use crate::functions::{self, FuncInfo, FunctionSet};
use twinql_parser::ast::{
    BinaryOp, Call, Collection, Compare, CompareOp, Condition, Expr, In, Literal, LiteralValue,
    Path, Query, Segment, SelectItem, SelectList, Span, UnaryOp, is_keyword,
};

/// The largest accepted `TOP` count. The service documents no maximum (spec §6.2); a million
/// rows is far beyond any page and catches typos such as an extra zero run.
pub const MAX_TOP: u64 = 1_000_000;

/// The stable codes of validation diagnostics, each with a query that triggers it.
pub mod codes {
    /// `SELECT * FROM devices WHERE STARTS_WITH(deviceId, 'a')`: not a function of this dialect.
    pub const UNKNOWN_FUNCTION: &str = "unknown-function";
    /// `SELECT * FROM devices WHERE IS_DEFINED(tags.a, tags.b)`: wrong number of arguments.
    pub const WRONG_ARITY: &str = "wrong-arity";
    /// `SELECT * FROM devices WHERE COUNT() > 1`: an aggregate that is not a whole select item.
    pub const MISPLACED_AGGREGATE: &str = "misplaced-aggregate";
    /// `SELECT SUM(1) AS s FROM devices`: an aggregate whose argument is not a path.
    pub const AGGREGATE_ARGUMENT: &str = "aggregate-argument";
    /// `SELECT COUNT() AS n FROM devices.jobs` or, with module aggregates off,
    /// `SELECT COUNT() AS n FROM devices.modules`.
    pub const AGGREGATE_NOT_ALLOWED: &str = "aggregate-not-allowed";
    /// `SELECT * FROM devices WHERE tags.group.region = 'EU'`: a keyword as a bare segment.
    pub const RESERVED_WORD: &str = "reserved-word";
    /// `SELECT deviceId FROM devices.jobs`: job queries select `*` only.
    pub const JOBS_SELECT: &str = "jobs-select";
    /// `SELECT * FROM devices.jobs WHERE tags.x = 1`: job queries cannot see the device twin.
    pub const JOBS_TWIN_PATH: &str = "jobs-twin-path";
    /// `SELECT COUNT() AS n FROM devices.modules GROUP BY moduleId`: GROUP BY on devices only.
    pub const GROUP_BY_NOT_ALLOWED: &str = "group-by-not-allowed";
    /// `SELECT * FROM devices GROUP BY tags.x`.
    pub const SELECT_STAR_GROUP_BY: &str = "select-star-group-by";
    /// `SELECT deviceId, COUNT() AS n FROM devices GROUP BY tags.x`: neither key nor aggregate.
    pub const NOT_GROUPED: &str = "not-grouped";
    /// `SELECT deviceId, COUNT() AS n FROM devices`: aggregate next to a path without GROUP BY.
    pub const MIXED_AGGREGATE: &str = "mixed-aggregate";
    /// `SELECT tags.id, deviceId AS id FROM devices`: two items produce the same member.
    pub const DUPLICATE_NAME: &str = "duplicate-name";
    /// `SELECT TOP 0 * FROM devices`: `TOP` outside `1..=MAX_TOP`.
    pub const TOP_OUT_OF_RANGE: &str = "top-out-of-range";
    /// `SELECT deviceId = 'a' FROM devices`: a select item that is neither a path nor an
    /// aggregate.
    pub const INVALID_SELECT_ITEM: &str = "invalid-select-item";
    /// `a ?? b`, `'a' || b` or `{ $sys }` in a twin query: syntax that only routing conditions have.
    pub const ROUTING_ONLY_SYNTAX: &str = "routing-only-syntax";

    /// Warning. `tags.x = [1]`: comparing with an array literal is never true.
    pub const COMPARE_ARRAY: &str = "compare-array";
    /// Warning. `tags.x = undefined`: always Undefined.
    pub const COMPARE_UNDEFINED: &str = "compare-undefined";
    /// Warning. `tags.x = null`: tags and properties never hold null.
    pub const COMPARE_NULL: &str = "compare-null";
    /// Warning. `1 = '1'`: two literals of different types.
    pub const LITERAL_TYPE_MISMATCH: &str = "literal-type-mismatch";
    /// Warning. `tags.x IN [[1, 2]]`: an array in an `IN` list never matches.
    pub const IN_LIST_ARRAY: &str = "in-list-array";
    /// Warning. `tags.x IN []`: an empty `IN` list never matches.
    pub const EMPTY_IN_LIST: &str = "empty-in-list";
    /// Warning. `tags.x + 'a' = 1`: arithmetic on a string, boolean, null or array literal.
    pub const NON_NUMERIC_ARITHMETIC: &str = "non-numeric-arithmetic";
    /// Error. A routing condition the routing engine's type check rejects: `3 + '4'`,
    /// `none AND true` (application properties are strings), `as_number(true)`, `$body` or
    /// `twin_change_includes` where the route's flags do not allow them (see
    /// [`crate::routing`]). The message is the engine's own wording.
    pub const ROUTING_TYPE: &str = "routing-type";
}

/// How strictly to validate.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Options {
    /// The function table of twin queries: [`FunctionSet::Twin`] (the default) is what the
    /// service accepts; [`FunctionSet::Extended`] also allows the routing scalar functions.
    pub functions: FunctionSet,
    /// Whether aggregates are allowed on `devices.modules` (default `true`). `GROUP BY` is
    /// allowed on `devices` only, whatever this says.
    pub allow_module_aggregates: bool,
}

impl Default for Options {
    fn default() -> Options {
        Options {
            functions: FunctionSet::Twin,
            allow_module_aggregates: true,
        }
    }
}

/// How bad a diagnostic is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Severity {
    /// The query is invalid.
    Error,
    /// The query runs, but part of it can never be true.
    Warning,
}

/// One finding, with the span it is about.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Diagnostic {
    /// Error or warning.
    pub severity: Severity,
    /// A stable kebab-case code (see [`codes`]).
    pub code: &'static str,
    /// One line, no position.
    pub message: String,
    /// Byte range in the query text.
    pub span: Span,
    /// How to fix it, when there is a clear fix.
    pub help: Option<String>,
}

/// Everything validation found, sorted by position.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Report {
    /// Errors and warnings, in source order.
    pub diagnostics: Vec<Diagnostic>,
}

impl Report {
    /// Whether any diagnostic is an error.
    pub fn has_errors(&self) -> bool {
        self.diagnostics
            .iter()
            .any(|d| d.severity == Severity::Error)
    }

    /// The errors, in source order.
    pub fn errors(&self) -> Vec<&Diagnostic> {
        self.of(Severity::Error)
    }

    /// The warnings, in source order.
    pub fn warnings(&self) -> Vec<&Diagnostic> {
        self.of(Severity::Warning)
    }

    fn of(&self, severity: Severity) -> Vec<&Diagnostic> {
        self.diagnostics
            .iter()
            .filter(|d| d.severity == severity)
            .collect()
    }
}

/// The member name each select item produces: the alias if there is one, else the last name
/// segment of a path (as written; the evaluator uses the stored spelling), else `$n` with `n`
/// the 1-based position of the item.
pub fn output_names(items: &[SelectItem]) -> Vec<String> {
    items
        .iter()
        .enumerate()
        .map(|(i, item)| output_name(item, i + 1))
        .collect()
}

/// The member name of one select item at 1-based `position` (see [`output_names`]).
pub fn output_name(item: &SelectItem, position: usize) -> String {
    if let Some(alias) = &item.alias {
        return alias.name.clone();
    }
    let last_name = match &item.expr {
        Expr::Path(p) => p.segments.iter().rev().find_map(Segment::name),
        _ => None,
    };
    if let Some(name) = last_name {
        return name.to_string();
    }
    format!("${position}")
}

/// Validates a full query (`SELECT … FROM …`).
pub fn validate_query(q: &Query, opts: &Options) -> Report {
    let mut v = Validator::new(opts, q.from.collection);
    v.select(q);
    if let Some(filter) = &q.filter {
        v.expr(filter);
    }
    for p in &q.group_by {
        v.path(p);
    }
    if let (Some(first), Some(last), false) = (
        q.group_by.first(),
        q.group_by.last(),
        q.from.collection == Collection::Devices,
    ) {
        v.error(
            codes::GROUP_BY_NOT_ALLOWED,
            format!(
                "GROUP BY is not supported on `{}`, only on `devices`",
                q.from.collection.name()
            ),
            first.span.to(last.span),
            None,
        );
    }
    v.finish()
}

/// Validates a target condition or job `queryCondition` (`*`, a bare expression over device
/// twins, or `FROM devices.modules WHERE …`).
pub fn validate_condition(c: &Condition, opts: &Options) -> Report {
    match c {
        Condition::All(_) => Report::default(),
        Condition::Expr(e) => {
            let mut v = Validator::new(opts, Collection::Devices);
            v.expr(e);
            v.finish()
        }
        Condition::From { from, filter, .. } => {
            let mut v = Validator::new(opts, from.collection);
            v.expr(filter);
            v.finish()
        }
    }
}

/// What a select item is.
enum ItemKind<'a> {
    Aggregate(&'a Call, FuncInfo),
    Path(&'a Path),
    Other,
}

fn classify(e: &Expr) -> ItemKind<'_> {
    match e {
        Expr::Path(p) => ItemKind::Path(p),
        Expr::Call(c) => match functions::lookup_aggregate(&c.name.name) {
            Some(info) => ItemKind::Aggregate(c, info),
            None => ItemKind::Other,
        },
        _ => ItemKind::Other,
    }
}

struct Validator<'o> {
    opts: &'o Options,
    collection: Collection,
    diags: Vec<Diagnostic>,
}

impl<'o> Validator<'o> {
    fn new(opts: &'o Options, collection: Collection) -> Validator<'o> {
        Validator {
            opts,
            collection,
            diags: Vec::new(),
        }
    }

    fn finish(mut self) -> Report {
        self.diags
            .sort_by_key(|d| (d.span.start, std::cmp::Reverse(d.span.end), d.severity));
        Report {
            diagnostics: self.diags,
        }
    }

    fn push(
        &mut self,
        severity: Severity,
        code: &'static str,
        message: String,
        span: Span,
        help: Option<String>,
    ) {
        self.diags.push(Diagnostic {
            severity,
            code,
            message,
            span,
            help,
        });
    }

    fn error(&mut self, code: &'static str, message: String, span: Span, help: Option<String>) {
        self.push(Severity::Error, code, message, span, help);
    }

    fn warning(&mut self, code: &'static str, message: String, span: Span, help: Option<String>) {
        self.push(Severity::Warning, code, message, span, help);
    }

    // -----------------------------------------------------------------------------------------
    // SELECT
    // -----------------------------------------------------------------------------------------

    fn select(&mut self, q: &Query) {
        if let Some(top) = q
            .select
            .top
            .as_ref()
            .filter(|t| t.count == 0 || t.count > MAX_TOP)
        {
            let message = if top.count == 0 {
                "TOP 0 selects no rows".to_string()
            } else {
                format!("TOP {} is above the maximum of {MAX_TOP}", top.count)
            };
            self.error(
                codes::TOP_OUT_OF_RANGE,
                message,
                top.span,
                Some(format!("TOP takes a count from 1 to {MAX_TOP}")),
            );
        }
        let grouped = !q.group_by.is_empty();
        let items = match &q.select.list {
            SelectList::Star(span) => {
                if grouped && self.collection == Collection::Devices {
                    self.error(
                        codes::SELECT_STAR_GROUP_BY,
                        "SELECT * cannot be combined with GROUP BY".to_string(),
                        *span,
                        Some(format!(
                            "select the group keys and aggregates, e.g. `SELECT {}, COUNT() AS count`",
                            q.group_by[0]
                        )),
                    );
                }
                return;
            }
            SelectList::Items(items) => items,
        };
        let jobs = self.collection == Collection::Jobs;
        if let (true, Some(first), Some(last)) = (jobs, items.first(), items.last()) {
            self.error(
                codes::JOBS_SELECT,
                "`devices.jobs` queries support only `SELECT *`: no projections or aggregates"
                    .to_string(),
                first.span.to(last.span),
                Some("write `SELECT * FROM devices.jobs …`".to_string()),
            );
        }

        let mut has_aggregate = false;
        let mut plain_paths = Vec::new();
        for item in items {
            match classify(&item.expr) {
                ItemKind::Aggregate(call, info) => {
                    has_aggregate = true;
                    self.aggregate(call, info);
                }
                ItemKind::Path(p) => {
                    self.path(p);
                    plain_paths.push(p);
                }
                ItemKind::Other => {
                    self.error(
                        codes::INVALID_SELECT_ITEM,
                        "a select item must be a path or an aggregate (`COUNT()`, `SUM(path)`, …)"
                            .to_string(),
                        item.expr.span(),
                        None,
                    );
                    self.expr(&item.expr);
                }
            }
            if let Some(alias) = item
                .alias
                .as_ref()
                .filter(|a| !a.quoted && is_keyword(&a.name))
            {
                self.error(
                    codes::RESERVED_WORD,
                    format!(
                        "`{}` is a reserved word and cannot be a bare alias",
                        alias.name
                    ),
                    alias.span,
                    Some(format!("write `AS [[{}]]`", alias.name)),
                );
            }
        }

        if !jobs {
            if grouped {
                for p in plain_paths {
                    if !q.group_by.iter().any(|k| same_path(k, p, self.collection)) {
                        self.error(
                            codes::NOT_GROUPED,
                            format!("`{p}` is neither a GROUP BY key nor an aggregate"),
                            p.span,
                            Some(format!(
                                "add `{p}` to GROUP BY, or select an aggregate instead"
                            )),
                        );
                    }
                }
            } else if has_aggregate {
                for p in plain_paths {
                    self.error(
                        codes::MIXED_AGGREGATE,
                        format!("`{p}` cannot be selected next to an aggregate without GROUP BY"),
                        p.span,
                        Some(format!("group by it: `GROUP BY {p}`")),
                    );
                }
            }
        }

        let names = output_names(items);
        for (i, name) in names.iter().enumerate() {
            if let Some(j) = names[..i].iter().position(|n| n.eq_ignore_ascii_case(name)) {
                let item = &items[i];
                let span = item.alias.as_ref().map_or(item.expr.span(), |a| a.span);
                let message = if names[j] == *name {
                    format!(
                        "duplicate output name `{name}` (select items {} and {})",
                        j + 1,
                        i + 1
                    )
                } else {
                    format!(
                        "duplicate output name `{name}`: names are case-insensitive and item {} is `{}`",
                        j + 1,
                        names[j]
                    )
                };
                self.error(
                    codes::DUPLICATE_NAME,
                    message,
                    span,
                    Some("give one of them a different name with `AS`".to_string()),
                );
            }
        }
    }

    fn aggregate(&mut self, call: &Call, info: FuncInfo) {
        let name = &call.name.name;
        if self.collection == Collection::Modules && !self.opts.allow_module_aggregates {
            self.error(
                codes::AGGREGATE_NOT_ALLOWED,
                format!("aggregate `{name}` is not allowed on `devices.modules`"),
                call.span,
                None,
            );
        }
        if call.args.len() < info.min_args || call.args.len() > info.max_args {
            let message = if info.max_args == 0 {
                format!("`{}` takes no arguments", info.name)
            } else {
                format!(
                    "`{}` takes {}, found {}",
                    info.name,
                    arity_text(&info),
                    call.args.len()
                )
            };
            let help = (info.max_args == 0).then(|| "write `COUNT()`".to_string());
            self.error(codes::WRONG_ARITY, message, call.span, help);
        } else if let Some(arg) = call.args.first().filter(|a| !matches!(a, Expr::Path(_))) {
            self.error(
                codes::AGGREGATE_ARGUMENT,
                format!("the argument of `{}` must be a path", info.name),
                arg.span(),
                None,
            );
        }
        for arg in &call.args {
            self.expr(arg);
        }
    }

    // -----------------------------------------------------------------------------------------
    // Expressions
    // -----------------------------------------------------------------------------------------

    fn expr(&mut self, e: &Expr) {
        match e {
            Expr::Literal(_) => {}
            Expr::Path(p) => self.path(p),
            Expr::Array(a) => {
                for item in &a.items {
                    self.expr(item);
                }
            }
            Expr::Nested(n) => self.expr(&n.expr),
            Expr::Unary(u) => {
                if let Some(kind) = const_kind(&u.expr).filter(|k| *k != ConstKind::Number) {
                    self.non_numeric(kind, &u.expr, false);
                }
                self.expr(&u.expr);
            }
            Expr::Not(n) => self.expr(&n.expr),
            Expr::Binary(b) => {
                match b.op {
                    BinaryOp::Coalesce | BinaryOp::Concat => self.error(
                        codes::ROUTING_ONLY_SYNTAX,
                        format!("`{}` exists only in routing conditions", b.op.symbol()),
                        b.span,
                        None,
                    ),
                    BinaryOp::And | BinaryOp::Or => {}
                    op => {
                        for side in [&b.left, &b.right] {
                            if let Some(kind) = const_kind(side).filter(|k| *k != ConstKind::Number)
                            {
                                self.non_numeric(kind, side, op == BinaryOp::Add);
                            }
                        }
                    }
                }
                self.expr(&b.left);
                self.expr(&b.right);
            }
            Expr::Compare(c) => {
                self.compare(c);
                self.expr(&c.left);
                self.expr(&c.right);
            }
            Expr::In(i) => {
                self.in_list(i);
                self.expr(&i.expr);
                for item in &i.list.items {
                    self.expr(item);
                }
            }
            Expr::Call(c) => self.call(c),
            Expr::Braced(b) => self.error(
                codes::ROUTING_ONLY_SYNTAX,
                "`{ … }` property references exist only in routing conditions".to_string(),
                b.span,
                None,
            ),
        }
    }

    fn call(&mut self, c: &Call) {
        let name = &c.name.name;
        if let Some(info) = functions::lookup_aggregate(name) {
            self.error(
                codes::MISPLACED_AGGREGATE,
                format!("aggregate `{name}` is allowed only as a whole select item"),
                c.span,
                Some(format!(
                    "aggregates cannot appear in WHERE, GROUP BY or inside expressions; select it on its own: `SELECT {}(…) AS …`",
                    info.name
                )),
            );
        } else {
            match functions::lookup(self.opts.functions, name) {
                Some(info) => self.arity(c, &info),
                None => {
                    let help = unknown_function_help(self.opts.functions, name);
                    self.error(
                        codes::UNKNOWN_FUNCTION,
                        format!("unknown function `{name}` in a twin query"),
                        c.name.span,
                        help,
                    );
                }
            }
        }
        for arg in &c.args {
            self.expr(arg);
        }
    }

    fn arity(&mut self, c: &Call, info: &FuncInfo) {
        check_arity(&mut self.diags, c, info);
    }

    fn path(&mut self, p: &Path) {
        let reserved: Vec<&Segment> = p
            .segments
            .iter()
            .filter(|s| matches!(s, Segment::Name { name, quoted: false, .. } if is_keyword(name)))
            .collect();
        if !reserved.is_empty() {
            let mut fixed = p.clone();
            for s in &mut fixed.segments {
                if let Segment::Name { name, quoted, .. } = s {
                    *quoted |= is_keyword(name);
                }
            }
            for s in reserved {
                let name = s.name().unwrap_or_default();
                self.error(
                    codes::RESERVED_WORD,
                    format!("`{name}` is a reserved word and cannot be a bare path segment"),
                    s.span(),
                    Some(format!("write `{fixed}`")),
                );
            }
        }
        let jobs_section = match self.collection {
            Collection::Jobs => twin_section(p, self.collection),
            _ => None,
        };
        if let Some(section) = jobs_section {
            self.error(
                codes::JOBS_TWIN_PATH,
                format!(
                    "`devices.jobs` queries can reference only job-record members, not the device twin's `{section}`"
                ),
                p.span,
                Some(
                    "job records have deviceId, jobId, jobType, status, startTimeUtc, endTimeUtc, createdDateTimeUtc, lastUpdatedDateTimeUtc, outcome and error"
                        .to_string(),
                ),
            );
        }
    }

    // -----------------------------------------------------------------------------------------
    // Warnings: conditions that can never be true
    // -----------------------------------------------------------------------------------------

    fn compare(&mut self, c: &Compare) {
        let (l, r) = (unwrap(&c.left), unwrap(&c.right));
        let (lk, rk) = (const_kind(l), const_kind(r));
        if lk == Some(ConstKind::Array) || rk == Some(ConstKind::Array) {
            let help = (c.op == CompareOp::Eq && rk == Some(ConstKind::Array) && lk.is_none())
                .then(|| format!("to test membership write `{l} IN {r}`"));
            self.warning(
                codes::COMPARE_ARRAY,
                "comparison with an array literal is never true: only primitive values compare"
                    .to_string(),
                c.span,
                help,
            );
            return;
        }
        if lk == Some(ConstKind::Undefined) || rk == Some(ConstKind::Undefined) {
            let other = if lk == Some(ConstKind::Undefined) {
                r
            } else {
                l
            };
            let help = match c.op {
                CompareOp::Eq => {
                    format!("to test for a missing value write `NOT IS_DEFINED({other})`")
                }
                CompareOp::Ne => format!("to test for a present value write `IS_DEFINED({other})`"),
                _ => format!("use `IS_DEFINED({other})` to test whether a value exists"),
            };
            self.warning(
                codes::COMPARE_UNDEFINED,
                "comparison with `undefined` is never true: it always evaluates to Undefined"
                    .to_string(),
                c.span,
                Some(help),
            );
            return;
        }
        if let Some((a, b)) = lk.zip(rk).filter(|(a, b)| a != b) {
            self.warning(
                codes::LITERAL_TYPE_MISMATCH,
                format!(
                    "comparison between {} and {} is never true: values of different types do not compare",
                    a.describe(),
                    b.describe()
                ),
                c.span,
                None,
            );
            return;
        }
        let null_vs_path = match (lk, rk) {
            (Some(ConstKind::Null), None) => Some(r),
            (None, Some(ConstKind::Null)) => Some(l),
            _ => None,
        };
        let null_section = match null_vs_path {
            Some(Expr::Path(p)) if self.collection != Collection::Jobs => {
                twin_section(p, self.collection).map(|s| (p, s))
            }
            _ => None,
        };
        if let Some((p, section)) = null_section {
            let help = match c.op {
                CompareOp::Eq | CompareOp::Le | CompareOp::Ge => Some(format!(
                    "to test for a missing value write `NOT IS_DEFINED({p})`"
                )),
                CompareOp::Ne => Some(format!(
                    "to test for a present value write `IS_DEFINED({p})`"
                )),
                CompareOp::Lt | CompareOp::Gt => None,
            };
            self.warning(
                codes::COMPARE_NULL,
                format!(
                    "comparison with `null` is never true here: `{section}` cannot hold null (writing null deletes the key)"
                ),
                c.span,
                help,
            );
        }
    }

    fn in_list(&mut self, i: &In) {
        match const_kind(unwrap(&i.expr)) {
            Some(ConstKind::Array) => self.warning(
                codes::COMPARE_ARRAY,
                "`IN` on an array literal is never true: only primitive values compare".to_string(),
                i.expr.span(),
                None,
            ),
            Some(ConstKind::Undefined) => self.warning(
                codes::COMPARE_UNDEFINED,
                "`undefined IN …` is never true: it always evaluates to Undefined".to_string(),
                i.expr.span(),
                None,
            ),
            _ => {}
        }
        if i.list.items.is_empty() && !i.negated {
            self.warning(
                codes::EMPTY_IN_LIST,
                "`IN []` is never true: the list is empty".to_string(),
                i.list.span,
                None,
            );
        }
        for item in &i.list.items {
            if const_kind(item) == Some(ConstKind::Array) {
                self.warning(
                    codes::IN_LIST_ARRAY,
                    "an array in an `IN` list never matches: only primitive values compare"
                        .to_string(),
                    item.span(),
                    None,
                );
            }
        }
    }

    fn non_numeric(&mut self, kind: ConstKind, operand: &Expr, is_add: bool) {
        let help = (is_add && kind == ConstKind::String).then(|| {
            "`+` does not concatenate strings (routing conditions have `CONCAT`)".to_string()
        });
        self.warning(
            codes::NON_NUMERIC_ARITHMETIC,
            format!(
                "arithmetic on {} is always Undefined: only numbers take part in arithmetic",
                kind.describe()
            ),
            operand.span(),
            help,
        );
    }
}

/// The kind of a constant expression, for the "never true" warnings.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum ConstKind {
    String,
    Number,
    Bool,
    Null,
    Undefined,
    Array,
}

impl ConstKind {
    fn describe(self) -> &'static str {
        match self {
            ConstKind::String => "a string literal",
            ConstKind::Number => "a number literal",
            ConstKind::Bool => "a boolean literal",
            ConstKind::Null => "`null`",
            ConstKind::Undefined => "`undefined`",
            ConstKind::Array => "an array literal",
        }
    }
}

fn unwrap(e: &Expr) -> &Expr {
    match e {
        Expr::Nested(n) => unwrap(&n.expr),
        e => e,
    }
}

/// The kind of `e` if it is a constant (a literal, an array literal, or a signed number).
fn const_kind(e: &Expr) -> Option<ConstKind> {
    match unwrap(e) {
        Expr::Literal(Literal { value, .. }) => Some(match value {
            LiteralValue::String(_) => ConstKind::String,
            LiteralValue::Number(_) => ConstKind::Number,
            LiteralValue::Bool(_) => ConstKind::Bool,
            LiteralValue::Null => ConstKind::Null,
            LiteralValue::Undefined => ConstKind::Undefined,
        }),
        Expr::Array(_) => Some(ConstKind::Array),
        Expr::Unary(u) if matches!(u.op, UnaryOp::Neg | UnaryOp::Plus) => {
            (const_kind(&u.expr) == Some(ConstKind::Number)).then_some(ConstKind::Number)
        }
        _ => None,
    }
}

/// The segments of `p` after an optional collection prefix (`devices.`, `devices.modules.`,
/// `devices.jobs.`), which the service accepts in front of member paths.
fn strip_prefix(p: &Path, collection: Collection) -> &[Segment] {
    let prefix: &[&str] = match collection {
        Collection::Devices => &["devices"],
        Collection::Modules => &["devices", "modules"],
        Collection::Jobs => &["devices", "jobs"],
    };
    let segs = &p.segments[..];
    let matches = segs.len() > prefix.len()
        && prefix.iter().zip(segs).all(|(want, s)| {
            matches!(s, Segment::Name { name, quoted: false, .. } if name.eq_ignore_ascii_case(want))
        });
    if matches { &segs[prefix.len()..] } else { segs }
}

/// `tags` or `properties` if `p` reaches into that twin section.
fn twin_section(p: &Path, collection: Collection) -> Option<&'static str> {
    let first = strip_prefix(p, collection).first()?.name()?;
    ["tags", "properties"]
        .into_iter()
        .find(|s| s.eq_ignore_ascii_case(first))
}

/// Whether two paths name the same member: same segments, names compared ignoring case,
/// collection prefixes ignored.
fn same_path(a: &Path, b: &Path, collection: Collection) -> bool {
    let (a, b) = (strip_prefix(a, collection), strip_prefix(b, collection));
    a.len() == b.len()
        && a.iter().zip(b).all(|(x, y)| match (x, y) {
            (Segment::Name { name: x, .. }, Segment::Name { name: y, .. }) => {
                x.eq_ignore_ascii_case(y)
            }
            (Segment::Index { index: x, .. }, Segment::Index { index: y, .. }) => x == y,
            _ => false,
        })
}

fn arity_text(info: &FuncInfo) -> String {
    let plural = |n: usize| if n == 1 { "argument" } else { "arguments" };
    if info.max_args == usize::MAX {
        format!("at least {} {}", info.min_args, plural(info.min_args))
    } else if info.min_args == info.max_args {
        format!("{} {}", info.min_args, plural(info.min_args))
    } else {
        format!("{} to {} arguments", info.min_args, info.max_args)
    }
}

fn check_arity(diags: &mut Vec<Diagnostic>, c: &Call, info: &FuncInfo) {
    let n = c.args.len();
    if n < info.min_args || n > info.max_args {
        diags.push(Diagnostic {
            severity: Severity::Error,
            code: codes::WRONG_ARITY,
            message: format!("`{}` takes {}, found {n}", info.name, arity_text(info)),
            span: c.span,
            help: None,
        });
    }
}

/// The hint for an unknown function: a near-miss spelling in the same dialect, or where the
/// function does exist.
fn unknown_function_help(set: FunctionSet, name: &str) -> Option<String> {
    if let Some(s) = functions::suggest(set, name).filter(|s| !s.eq_ignore_ascii_case(name)) {
        return Some(format!("did you mean `{s}`?"));
    }
    match set {
        FunctionSet::Twin | FunctionSet::Extended => {
            let info = functions::lookup(FunctionSet::Routing, name)?;
            if set == FunctionSet::Twin && functions::lookup(FunctionSet::Extended, name).is_some()
            {
                Some(format!(
                    "`{}` exists only in routing conditions; twinql accepts it in twin queries with `FunctionSet::Extended` (`--functions extended`)",
                    info.name
                ))
            } else {
                Some(format!("`{}` exists only in routing conditions", info.name))
            }
        }
        FunctionSet::Routing => {
            if functions::lookup_aggregate(name).is_some() {
                Some("aggregates exist only in twin queries".to_string())
            } else {
                let info = functions::lookup(FunctionSet::Twin, name)?;
                Some(format!("`{}` exists only in twin queries", info.name))
            }
        }
    }
}

// =============================================================================================
// Routing conditions
//
// Minimal on purpose: function names and arity against the routing table. The routing type
// checker extends this section.
// =============================================================================================

/// Validates a message-routing condition: unknown functions (with the reverse spelling hint,
/// `STARTSWITH` → `STARTS_WITH`), wrong arity, and the routing type check
/// ([`crate::routing::check_routing_with`]) with every flag on and the source unknown.
pub fn validate_routing(e: &Expr) -> Report {
    validate_routing_with(e, &crate::routing::RoutingOptions::default())
}

/// [`validate_routing`] for a route with the given flags and message source.
pub fn validate_routing_with(e: &Expr, opts: &crate::routing::RoutingOptions) -> Report {
    let mut diags = Vec::new();
    routing_expr(&mut diags, e);
    // Type errors, except where a name or arity error above already covers the spot.
    for err in crate::routing::check_routing_with(e, opts) {
        let covered = diags
            .iter()
            .any(|d| d.span.start < err.span.end && err.span.start < d.span.end);
        if !covered {
            diags.push(Diagnostic {
                severity: Severity::Error,
                code: codes::ROUTING_TYPE,
                message: err.message,
                span: err.span,
                help: None,
            });
        }
    }
    diags.sort_by_key(|d| (d.span.start, std::cmp::Reverse(d.span.end), d.severity));
    Report { diagnostics: diags }
}

fn routing_expr(diags: &mut Vec<Diagnostic>, e: &Expr) {
    match e {
        Expr::Literal(_) | Expr::Path(_) | Expr::Braced(_) => {}
        Expr::Array(a) => a.items.iter().for_each(|i| routing_expr(diags, i)),
        Expr::Nested(n) => routing_expr(diags, &n.expr),
        Expr::Unary(u) => routing_expr(diags, &u.expr),
        Expr::Not(n) => routing_expr(diags, &n.expr),
        Expr::Binary(b) => {
            routing_expr(diags, &b.left);
            routing_expr(diags, &b.right);
        }
        Expr::Compare(c) => {
            routing_expr(diags, &c.left);
            routing_expr(diags, &c.right);
        }
        Expr::In(i) => {
            routing_expr(diags, &i.expr);
            i.list.items.iter().for_each(|x| routing_expr(diags, x));
        }
        Expr::Call(c) => {
            let name = &c.name.name;
            match functions::lookup(FunctionSet::Routing, name) {
                Some(info) => check_arity(diags, c, &info),
                None => diags.push(Diagnostic {
                    severity: Severity::Error,
                    code: codes::UNKNOWN_FUNCTION,
                    message: format!("unknown function `{name}` in a routing condition"),
                    span: c.name.span,
                    help: unknown_function_help(FunctionSet::Routing, name),
                }),
            }
            c.args.iter().for_each(|a| routing_expr(diags, a));
        }
    }
}
