//! Inputs that once crashed a fuzz target, kept as tests.

use twinql_parser::parse_routing;
use twinql_planner::routing::{RoutingFlags, compile_routing};
use twinql_planner::validate::validate_routing;

#[test]
fn braced_body_name_with_multibyte_character() {
    // `{$body…}` where the sixth byte falls inside a two-byte character.
    let text = "{$body\u{24b}ags.aeWte} < 'CA'";
    let expr = parse_routing(text).expect("parses as a braced property");
    let report = validate_routing(&expr);
    // A system property compared with a string is well typed.
    assert!(!report.has_errors(), "{:?}", report.errors());
    assert!(compile_routing(&expr, RoutingFlags::ALL).is_ok());
}
