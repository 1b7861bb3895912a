//! Helpers shared by the integration tests.
#![allow(dead_code)]

use twinql_parser::{ErrorKind, ParseError, Span, parse_condition, parse_query, parse_routing};

/// Parses `text` as a query, checks it prints as `expected`, and that the printed text parses
/// back to an equal tree.
pub fn canon(text: &str, expected: &str) {
    let q = parse_query(text).unwrap_or_else(|e| panic!("{text:?} should parse: {e}"));
    let printed = q.to_string();
    assert_eq!(printed, expected, "canonical text of {text:?}");
    let again =
        parse_query(&printed).unwrap_or_else(|e| panic!("{printed:?} should re-parse: {e}"));
    assert_eq!(again, q, "re-parsed tree of {printed:?}");
}

/// Like [`canon`] when the text is already canonical.
pub fn verified(text: &str) {
    canon(text, text);
}

/// [`canon`] for conditions.
pub fn canon_condition(text: &str, expected: &str) {
    let c = parse_condition(text).unwrap_or_else(|e| panic!("{text:?} should parse: {e}"));
    let printed = c.to_string();
    assert_eq!(printed, expected, "canonical text of {text:?}");
    let again =
        parse_condition(&printed).unwrap_or_else(|e| panic!("{printed:?} should re-parse: {e}"));
    assert_eq!(again, c, "re-parsed tree of {printed:?}");
}

/// [`canon`] for routing conditions.
pub fn canon_routing(text: &str, expected: &str) {
    let c = parse_routing(text).unwrap_or_else(|e| panic!("{text:?} should parse: {e}"));
    let printed = c.to_string();
    assert_eq!(printed, expected, "canonical text of {text:?}");
    let again =
        parse_routing(&printed).unwrap_or_else(|e| panic!("{printed:?} should re-parse: {e}"));
    assert_eq!(again, c, "re-parsed tree of {printed:?}");
}

/// The first error of a query that must fail.
pub fn query_err(text: &str) -> ParseError {
    match parse_query(text) {
        Ok(q) => panic!("{text:?} should fail, parsed as {q}"),
        Err(e) => e.0[0].clone(),
    }
}

/// The first error of a condition that must fail.
pub fn condition_err(text: &str) -> ParseError {
    match parse_condition(text) {
        Ok(c) => panic!("{text:?} should fail, parsed as {c}"),
        Err(e) => e.0[0].clone(),
    }
}

/// The first error of a routing condition that must fail.
pub fn routing_err(text: &str) -> ParseError {
    match parse_routing(text) {
        Ok(c) => panic!("{text:?} should fail, parsed as {c}"),
        Err(e) => e.0[0].clone(),
    }
}

/// Asserts kind and span (as byte offsets) of an error.
pub fn assert_err(e: &ParseError, kind: ErrorKind, span: std::ops::Range<usize>) {
    assert_eq!(e.kind, kind, "kind of {e:?}");
    assert_eq!(
        (e.span.start as usize, e.span.end as usize),
        (span.start, span.end),
        "span of {e:?}"
    );
    let _ = Span::default();
}
