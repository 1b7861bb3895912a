//! Every conformance case the service accepts must parse and validate without errors.
//!
//! Exception, by design: the `derived-from-routing` cases that call routing-only functions
//! (`CONTAINS`, `LOWER`, `STARTS_WITH`, …). The service rejects those in twin queries (spec §3.1,
//! §7 ), and so does twinql's default function set; they must validate cleanly with
//! `FunctionSet::Extended`, the documented opt-in.

use serde_json::Value;
use twinql_parser::{Condition, Expr, Query, SelectList, parse_condition, parse_query};
use twinql_planner::functions::{self, FunctionSet};
use twinql_planner::validate::{Options, Report, codes, validate_condition, validate_query};

const CASES: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../shared/conformance/twin_cases.jsonl"
);

enum Parsed {
    Query(Query),
    Condition(Condition),
}

impl Parsed {
    fn validate(&self, opts: &Options) -> Report {
        match self {
            Parsed::Query(q) => validate_query(q, opts),
            Parsed::Condition(c) => validate_condition(c, opts),
        }
    }

    fn calls(&self) -> Vec<String> {
        let mut names = Vec::new();
        match self {
            Parsed::Query(q) => {
                if let SelectList::Items(items) = &q.select.list {
                    items.iter().for_each(|i| calls(&i.expr, &mut names));
                }
                if let Some(f) = &q.filter {
                    calls(f, &mut names);
                }
            }
            Parsed::Condition(Condition::Expr(e) | Condition::From { filter: e, .. }) => {
                calls(e, &mut names)
            }
            Parsed::Condition(Condition::All(_)) => {}
        }
        names
    }
}

fn calls(e: &Expr, out: &mut Vec<String>) {
    match e {
        Expr::Call(c) => {
            out.push(c.name.name.clone());
            c.args.iter().for_each(|a| calls(a, out));
        }
        Expr::Nested(n) => calls(&n.expr, out),
        Expr::Unary(u) => calls(&u.expr, out),
        Expr::Not(n) => calls(&n.expr, out),
        Expr::Binary(b) => {
            calls(&b.left, out);
            calls(&b.right, out);
        }
        Expr::Compare(c) => {
            calls(&c.left, out);
            calls(&c.right, out);
        }
        Expr::In(i) => calls(&i.expr, out),
        Expr::Array(a) => a.items.iter().for_each(|x| calls(x, out)),
        Expr::Literal(_) | Expr::Path(_) | Expr::Braced(_) => {}
    }
}

/// A function the routing dialect has and twin queries do not.
fn routing_only(name: &str) -> bool {
    functions::lookup(FunctionSet::Twin, name).is_none()
        && functions::lookup_aggregate(name).is_none()
        && functions::lookup(FunctionSet::Routing, name).is_some()
}

#[test]
fn accepted_conformance_cases_validate() {
    let text = std::fs::read_to_string(CASES).expect("conformance data beside the checkout");
    let extended = Options {
        functions: FunctionSet::Extended,
        ..Options::default()
    };
    let (mut checked, mut strict_rejected) = (0, Vec::new());
    let mut failures = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let case: Value = serde_json::from_str(line).expect("valid JSON line");
        let expect = &case["expect"];
        let accepted = expect.get("rows").is_some()
            || expect.get("rows_include").is_some()
            || expect.get("parses") == Some(&Value::Bool(true));
        if !accepted {
            continue;
        }
        let query = case["query"].as_str().expect("query text");
        let parsed = if query.to_ascii_uppercase().contains("SELECT") {
            parse_query(query).map(Parsed::Query)
        } else {
            parse_condition(query).map(Parsed::Condition)
        };
        let parsed = match parsed {
            Ok(p) => p,
            Err(e) => {
                failures.push(format!("line {}: {query:?} does not parse: {e}", n + 1));
                continue;
            }
        };
        checked += 1;
        let origin = case["expect_origin"].as_str().unwrap_or_default();
        let uses_routing_only = parsed.calls().iter().any(|c| routing_only(c));
        if origin == "derived-from-routing" && uses_routing_only {
            let strict = parsed.validate(&Options::default());
            let rejected = strict.has_errors()
                && strict
                    .errors()
                    .iter()
                    .all(|d| d.code == codes::UNKNOWN_FUNCTION);
            if !rejected {
                failures.push(format!(
                    "line {}: {query:?} should be rejected with the twin function set only for its routing functions: {:#?}",
                    n + 1,
                    strict.diagnostics
                ));
            }
            strict_rejected.push(query.to_string());
            let ext = parsed.validate(&extended);
            if ext.has_errors() {
                failures.push(format!(
                    "line {}: {query:?} with Extended: {:#?}",
                    n + 1,
                    ext.errors()
                ));
            }
        } else {
            let report = parsed.validate(&Options::default());
            if report.has_errors() {
                failures.push(format!("line {}: {query:?}: {:#?}", n + 1, report.errors()));
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    assert!(checked > 100, "only {checked} accepted cases found");
    // The routing-function cases of the data set (CONCAT, CONTAINS, ENDS_WITH, LOWER, …).
    assert!(
        strict_rejected.len() >= 15,
        "expected the routing-function cases, found {strict_rejected:#?}"
    );
    assert!(
        strict_rejected
            .iter()
            .any(|q| q.contains("starts_with(tags.Weather.Location.Street"))
    );
}
