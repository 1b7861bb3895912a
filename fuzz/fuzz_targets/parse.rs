//! Fuzz target: any UTF-8 text through the three parsers and their validation (and, for
//! queries that validate, the planner). Nothing may panic, and a successful parse must print
//! back to text that parses to an equal tree.
#![no_main]

use libfuzzer_sys::fuzz_target;
use twinql_parser::{parse_condition, parse_query, parse_routing};
use twinql_planner::functions::FunctionSet;
use twinql_planner::plan::{PlanOptions, plan_query};
use twinql_planner::routing::{RoutingFlags, compile_routing};
use twinql_planner::validate::{Options, validate_condition, validate_query, validate_routing};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };

    if let Ok(query) = parse_query(text) {
        let printed = query.to_string();
        assert_eq!(
            parse_query(&printed).as_ref(),
            Ok(&query),
            "{text:?} -> {printed:?}"
        );
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
        let printed = condition.to_string();
        assert_eq!(
            parse_condition(&printed).as_ref(),
            Ok(&condition),
            "{text:?} -> {printed:?}"
        );
        let _ = validate_condition(&condition, &Options::default());
    }

    if let Ok(expr) = parse_routing(text) {
        let printed = expr.to_string();
        assert_eq!(
            parse_routing(&printed).as_ref(),
            Ok(&expr),
            "{text:?} -> {printed:?}"
        );
        let _ = validate_routing(&expr);
        let _ = compile_routing(&expr, RoutingFlags::ALL);
    }
});
