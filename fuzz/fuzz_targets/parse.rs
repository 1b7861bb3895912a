//! Fuzz target: any UTF-8 text through the three parsers and their validation (and, for
//! queries that validate, the planner). Nothing may panic, and a successful parse must print
//! back to text that parses to an equal tree, unless the printed text is over the length
//! limit (printing escapes control characters, `\0` becoming `\u0000`), which must then be
//! the one error.
#![no_main]

use libfuzzer_sys::fuzz_target;
use std::fmt::Debug;
use twinql_parser::parser::MAX_CHARS;
use twinql_parser::{ErrorKind, ParseErrors, parse_condition, parse_query, parse_routing};
use twinql_planner::functions::FunctionSet;
use twinql_planner::plan::{PlanOptions, plan_query};
use twinql_planner::routing::{RoutingFlags, compile_routing};
use twinql_planner::validate::{Options, validate_condition, validate_query, validate_routing};

/// Checks that `printed`, the text of `tree`, parses back to `tree`.
fn reparses<T: PartialEq + Debug>(
    text: &str,
    printed: &str,
    tree: &T,
    parse: impl Fn(&str) -> Result<T, ParseErrors>,
) {
    let again = parse(printed);
    if printed.chars().count() > MAX_CHARS {
        let too_long =
            matches!(&again, Err(e) if e.0.iter().any(|e| e.kind == ErrorKind::TooLong));
        assert!(too_long, "{text:?} -> {printed:?}: {again:?}");
    } else {
        assert_eq!(again.as_ref(), Ok(tree), "{text:?} -> {printed:?}");
    }
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };

    if let Ok(query) = parse_query(text) {
        reparses(text, &query.to_string(), &query, parse_query);
        for functions in [FunctionSet::Twin, FunctionSet::Extended] {
            let opts = Options {
                functions,
                ..Options::default()
            };
            if !validate_query(&query, &opts).has_errors() {
                // A valid query must plan.
                let plan = plan_query(&query, &PlanOptions { functions });
                assert!(plan.is_ok(), "{text:?}: valid but does not plan: {plan:?}");
            }
        }
    }

    if let Ok(condition) = parse_condition(text) {
        reparses(text, &condition.to_string(), &condition, parse_condition);
        let _ = validate_condition(&condition, &Options::default());
    }

    if let Ok(expr) = parse_routing(text) {
        reparses(text, &expr.to_string(), &expr, parse_routing);
        let _ = validate_routing(&expr);
        let _ = compile_routing(&expr, RoutingFlags::ALL);
    }
});
