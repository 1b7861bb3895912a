//! Fuzz target: any UTF-8 text through the three parsers. Parsing must never panic, and a
//! successful parse must print back to text that parses to an equal tree.
#![no_main]

use libfuzzer_sys::fuzz_target;
use twinql_parser::{parse_condition, parse_query, parse_routing};

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
        // Validation of `query` goes here once the planner's validator is wired in.
    }

    if let Ok(condition) = parse_condition(text) {
        let printed = condition.to_string();
        assert_eq!(
            parse_condition(&printed).as_ref(),
            Ok(&condition),
            "{text:?} -> {printed:?}"
        );
        // Validation of `condition` goes here.
    }

    if let Ok(expr) = parse_routing(text) {
        let printed = expr.to_string();
        assert_eq!(
            parse_routing(&printed).as_ref(),
            Ok(&expr),
            "{text:?} -> {printed:?}"
        );
        // Validation of the routing condition `expr` goes here.
    }
});
