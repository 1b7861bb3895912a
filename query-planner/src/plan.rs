//! The logical plan of a query: Scan → Filter → Project | Aggregate → Top.
//!
//! A plan is built from a validated [`Query`]; its expressions are compiled ([`CExpr`]) so a
//! store can execute it directly. It prints as an indented operator tree for `explain`.

use crate::eval::{self, CExpr, CPath, CompileError, CompileOptions};
use crate::functions::{self, Func, FunctionSet};
use crate::value::Key;
use std::fmt;
use twinql_parser::ast::{Collection, Expr, Query, SelectList};

/// An aggregate function.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum AggFunc {
    /// `COUNT()`
    Count,
    /// `SUM(path)`
    Sum,
    /// `AVG(path)`
    Avg,
    /// `MIN(path)`
    Min,
    /// `MAX(path)`
    Max,
}

impl AggFunc {
    /// The upper-case name.
    pub fn name(self) -> &'static str {
        match self {
            AggFunc::Count => "COUNT",
            AggFunc::Sum => "SUM",
            AggFunc::Avg => "AVG",
            AggFunc::Min => "MIN",
            AggFunc::Max => "MAX",
        }
    }
}

/// One projected column of a plain projection.
#[derive(Clone, Debug, PartialEq)]
pub struct ProjectItem {
    /// What to read.
    pub path: CPath,
    /// The output name when aliased; otherwise the last segment as stored in the document.
    pub alias: Option<String>,
    /// The path as written, for printing.
    pub text: String,
}

/// One output column of an aggregate query.
#[derive(Clone, Debug, PartialEq)]
pub enum AggItem {
    /// A group key: the value of `keys[index]`.
    Key {
        /// Which GROUP BY path.
        index: usize,
        /// The output name when aliased; otherwise the last segment as stored.
        alias: Option<String>,
    },
    /// An aggregate over the group.
    Agg {
        /// Which aggregate.
        func: AggFunc,
        /// Its argument (none for `COUNT()`).
        path: Option<CPath>,
        /// The output name: the alias, or `$n` for the n-th select item.
        name: String,
    },
}

/// What a query returns.
#[derive(Clone, Debug, PartialEq)]
pub enum Shape {
    /// `SELECT *`: whole documents as stored.
    Documents,
    /// `SELECT a, b AS c`: one object per document.
    Project(Vec<ProjectItem>),
    /// Aggregates, grouped by `keys` (no keys: one row over everything).
    Aggregate {
        /// The GROUP BY paths.
        keys: Vec<CPath>,
        /// The GROUP BY paths as written.
        key_texts: Vec<String>,
        /// The output columns in select order.
        items: Vec<AggItem>,
    },
}

/// A logical query plan.
#[derive(Clone, Debug, PartialEq)]
pub struct Plan {
    /// Which collection is scanned.
    pub collection: Collection,
    /// The WHERE condition, compiled.
    pub filter: Option<CExpr>,
    /// The WHERE condition as canonical text, for printing.
    pub filter_text: Option<String>,
    /// What each result row is.
    pub shape: Shape,
    /// `TOP n`.
    pub top: Option<u64>,
}

/// How to plan.
#[derive(Clone, Copy, Debug)]
pub struct PlanOptions {
    /// Which scalar functions exist in twin queries.
    pub functions: FunctionSet,
}

impl Default for PlanOptions {
    fn default() -> PlanOptions {
        PlanOptions {
            functions: FunctionSet::Twin,
        }
    }
}

fn agg_func(f: Func) -> Option<AggFunc> {
    Some(match f {
        Func::Count => AggFunc::Count,
        Func::Sum => AggFunc::Sum,
        Func::Avg => AggFunc::Avg,
        Func::Min => AggFunc::Min,
        Func::Max => AggFunc::Max,
        _ => return None,
    })
}

fn same_path(a: &CPath, b: &CPath) -> bool {
    a.root == b.root
        && a.steps.len() == b.steps.len()
        && a.steps.iter().zip(&b.steps).all(|(x, y)| match (x, y) {
            (eval::Step::Member(k1), eval::Step::Member(k2)) => k1.folded == k2.folded,
            (eval::Step::Index(i), eval::Step::Index(j)) => i == j,
            _ => false,
        })
}

/// Builds the plan of a query. The query should have passed validation; this only guards
/// against what would make the plan meaningless.
pub fn plan_query(q: &Query, opts: &PlanOptions) -> Result<Plan, CompileError> {
    let copts = CompileOptions::twin(q.from.collection, opts.functions);
    let filter = q
        .filter
        .as_ref()
        .map(|f| eval::compile(f, &copts))
        .transpose()?;
    let keys: Vec<CPath> = q
        .group_by
        .iter()
        .map(|p| eval::compile_path(p, &copts))
        .collect();
    let key_texts = q.group_by.iter().map(|p| p.to_string()).collect();
    let shape = match &q.select.list {
        SelectList::Star(span) => {
            if !keys.is_empty() {
                return Err(CompileError {
                    message: "SELECT * cannot be grouped".into(),
                    span: *span,
                });
            }
            Shape::Documents
        }
        SelectList::Items(items) => {
            let is_agg = |e: &Expr| matches!(e, Expr::Call(c) if functions::lookup_aggregate(&c.name.name).is_some());
            let any_agg = items.iter().any(|i| is_agg(&i.expr));
            if any_agg || !keys.is_empty() {
                let mut out = Vec::new();
                for (pos, item) in items.iter().enumerate() {
                    let alias = item.alias.as_ref().map(|a| a.name.clone());
                    match &item.expr {
                        Expr::Call(c) if is_agg(&item.expr) => {
                            let info = functions::lookup_aggregate(&c.name.name)
                                .expect("checked by is_agg");
                            let func = agg_func(info.func).expect("aggregate table");
                            let path = match (func, c.args.as_slice()) {
                                (AggFunc::Count, []) => None,
                                (AggFunc::Count, _) => {
                                    return Err(CompileError {
                                        message: "COUNT() takes no argument".into(),
                                        span: c.span,
                                    });
                                }
                                (_, [Expr::Path(p)]) => Some(eval::compile_path(p, &copts)),
                                _ => {
                                    return Err(CompileError {
                                        message: format!("{} takes one path", func.name()),
                                        span: c.span,
                                    });
                                }
                            };
                            out.push(AggItem::Agg {
                                func,
                                path,
                                name: alias.unwrap_or_else(|| format!("${}", pos + 1)),
                            });
                        }
                        Expr::Path(p) => {
                            let cp = eval::compile_path(p, &copts);
                            let Some(index) = keys.iter().position(|k| same_path(k, &cp)) else {
                                return Err(CompileError {
                                    message: format!(
                                        "`{p}` is neither a GROUP BY path nor an aggregate"
                                    ),
                                    span: p.span,
                                });
                            };
                            out.push(AggItem::Key { index, alias });
                        }
                        other => {
                            return Err(CompileError {
                                message: "select items must be paths or aggregates".into(),
                                span: other.span(),
                            });
                        }
                    }
                }
                Shape::Aggregate {
                    keys,
                    key_texts,
                    items: out,
                }
            } else {
                let mut out = Vec::new();
                for item in items {
                    let Expr::Path(p) = &item.expr else {
                        return Err(CompileError {
                            message: "select items must be paths or aggregates".into(),
                            span: item.expr.span(),
                        });
                    };
                    out.push(ProjectItem {
                        path: eval::compile_path(p, &copts),
                        alias: item.alias.as_ref().map(|a| a.name.clone()),
                        text: p.to_string(),
                    });
                }
                Shape::Project(out)
            }
        }
    };
    Ok(Plan {
        collection: q.from.collection,
        filter,
        filter_text: q.filter.as_ref().map(|f| f.to_string()),
        shape,
        top: q.select.top.as_ref().map(|t| t.count),
    })
}

impl Plan {
    /// Visits every member key in the plan, so a store can resolve them to its key ids.
    pub fn for_each_key(&mut self, f: &mut dyn FnMut(&mut Key)) {
        if let Some(filter) = &mut self.filter {
            eval::for_each_key(filter, f);
        }
        match &mut self.shape {
            Shape::Documents => {}
            Shape::Project(items) => {
                for i in items {
                    eval::for_each_path_key(&mut i.path, f);
                }
            }
            Shape::Aggregate { keys, items, .. } => {
                for k in keys {
                    eval::for_each_path_key(k, f);
                }
                for i in items {
                    if let AggItem::Agg { path: Some(p), .. } = i {
                        eval::for_each_path_key(p, f);
                    }
                }
            }
        }
    }

    /// The paths an index could serve: those of the WHERE condition, the GROUP BY keys and
    /// the aggregates' arguments (not the projected ones, which are read from each row).
    pub fn index_paths(&self) -> Vec<&CPath> {
        let mut out = Vec::new();
        if let Some(filter) = &self.filter {
            eval::for_each_path(filter, &mut |p| out.push(p));
        }
        if let Shape::Aggregate { keys, items, .. } = &self.shape {
            out.extend(keys);
            out.extend(items.iter().filter_map(|i| match i {
                AggItem::Agg { path: Some(p), .. } => Some(p),
                _ => None,
            }));
        }
        out
    }

    /// The `x-ms-item-type` of the results (spec §6.1): `twin`, `deviceJob` or `raw`.
    pub fn item_type(&self) -> &'static str {
        match (&self.shape, self.collection) {
            (Shape::Documents, Collection::Jobs) => "deviceJob",
            (Shape::Documents, _) => "twin",
            _ => "raw",
        }
    }
}

impl fmt::Display for Plan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut lines: Vec<String> = Vec::new();
        if let Some(n) = self.top {
            lines.push(format!("Top: {n}"));
        }
        match &self.shape {
            Shape::Documents => lines.push("Project: *".into()),
            Shape::Project(items) => lines.push(format!(
                "Project: {}",
                items
                    .iter()
                    .map(|i| match &i.alias {
                        Some(a) => format!("{} AS {a}", i.text),
                        None => i.text.clone(),
                    })
                    .collect::<Vec<_>>()
                    .join(", ")
            )),
            Shape::Aggregate {
                key_texts, items, ..
            } => {
                let cols = items
                    .iter()
                    .map(|i| match i {
                        AggItem::Key { index, alias } => match alias {
                            Some(a) => format!("{} AS {a}", key_texts[*index]),
                            None => key_texts[*index].clone(),
                        },
                        AggItem::Agg { func, name, .. } => format!("{}(…) AS {name}", func.name()),
                    })
                    .collect::<Vec<_>>()
                    .join(", ");
                if key_texts.is_empty() {
                    lines.push(format!("Aggregate: {cols}"));
                } else {
                    lines.push(format!(
                        "Aggregate: {cols} GROUP BY {}",
                        key_texts.join(", ")
                    ));
                }
            }
        }
        if let Some(t) = &self.filter_text {
            lines.push(format!("Filter: {t}"));
        }
        lines.push(format!("Scan: {}", self.collection.name()));
        for (depth, line) in lines.iter().enumerate() {
            writeln!(f, "{}{line}", "  ".repeat(depth))?;
        }
        Ok(())
    }
}
