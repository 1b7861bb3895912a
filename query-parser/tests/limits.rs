//! Length and nesting limits: errors, never a stack overflow.

mod common;
use common::*;
use twinql_parser::*;

#[test]
fn too_long() {
    let text = format!("SELECT * FROM devices WHERE a = '{}'", "x".repeat(9000));
    let errs = parse_query(&text).unwrap_err();
    assert_eq!(errs.0.len(), 1);
    assert_err(&errs.0[0], ErrorKind::TooLong, 8192..text.len());
    // Characters, not bytes: 8192 two-byte characters are fine.
    let text = format!("a = '{}'", "é".repeat(8192 - 6));
    assert_eq!(text.chars().count(), 8192);
    parse_condition(&text).unwrap();
    let text = format!("a = '{}'", "é".repeat(8192 - 5));
    let e = condition_err(&text);
    assert_err(&e, ErrorKind::TooLong, 8192 + (8192 - 5)..text.len());
    let e = routing_err(&"(".repeat(100_000));
    assert_eq!(e.kind, ErrorKind::TooLong);
    let e = condition_err(&"NOT ".repeat(100_000));
    assert_eq!(e.kind, ErrorKind::TooLong);
}

#[test]
fn too_deep() {
    let e = routing_err(&"(".repeat(8000));
    assert_eq!(e.kind, ErrorKind::TooDeep);
    assert_eq!(e.span.start as usize, MAX_DEPTH);
    let e = condition_err(&format!("{}a", "NOT ".repeat(2000)));
    assert_eq!(e.kind, ErrorKind::TooDeep);
    let e = condition_err(&format!("{}1", "-".repeat(5000)));
    assert_eq!(e.kind, ErrorKind::TooDeep);
    let e = condition_err(&format!("{}1{}", "f(".repeat(1000), ")".repeat(1000)));
    assert_eq!(e.kind, ErrorKind::TooDeep);
    let e = condition_err(&format!("a IN {}1{}", "[".repeat(1000), "]".repeat(1000)));
    assert!(matches!(
        e.kind,
        ErrorKind::TooDeep | ErrorKind::UnexpectedToken
    ));
    let e = condition_err(&format!("a = {}1{}", "[ ".repeat(1000), "]".repeat(1000)));
    assert_eq!(e.kind, ErrorKind::TooDeep);

    // Exactly at the limit is fine.
    let ok = format!("{}a{}", "(".repeat(MAX_DEPTH), ")".repeat(MAX_DEPTH));
    canon_condition(&ok, &ok);
    let over = format!(
        "{}a{}",
        "(".repeat(MAX_DEPTH + 1),
        ")".repeat(MAX_DEPTH + 1)
    );
    assert_eq!(condition_err(&over).kind, ErrorKind::TooDeep);
}

#[test]
fn worst_case_nesting_fits_the_stack() {
    // Every precedence level climbed at every nesting level.
    let unit = "a ?? b OR c AND NOT d = e + f * -(";
    let n = MAX_DEPTH / 3 - 1;
    let text = format!("{}x{}", unit.repeat(n), ")".repeat(n));
    canon_routing(&text, &text);
}

#[test]
fn long_chains_are_iterative() {
    // About 1300 operands: within the height limit, no recursion per operand.
    let text = format!("a{}", " AND a".repeat(1000));
    canon_condition(&text, &text);
    let text = format!("a{}", " OR a = 1".repeat(900));
    canon_condition(&text, &text);
    let text = format!("SELECT * FROM devices WHERE x = 1{}", " + 1".repeat(1000));
    verified(&text);
    // A tree taller than MAX_HEIGHT is refused rather than handed out.
    let text = format!("a{}", "+a".repeat(4000));
    let e = routing_err(&text);
    assert_err(&e, ErrorKind::TooDeep, 0..text.len());
    let text = format!("a{}", "+a".repeat(MAX_HEIGHT - 1));
    parse_routing(&text).unwrap();
    let text = format!("a{}", "+a".repeat(MAX_HEIGHT));
    assert_eq!(routing_err(&text).kind, ErrorKind::TooDeep);
}

#[test]
fn deep_trees_are_safe_to_walk() {
    // The tallest tree the parser hands out can be printed, cloned, compared and dropped on
    // the default 2 MiB test-thread stack, even in debug builds.
    let text = format!("a{}", "+a".repeat(MAX_HEIGHT - 1));
    let e = parse_routing(&text).unwrap();
    let printed = e.to_string();
    let debug = format!("{e:?}");
    assert!(debug.len() > printed.len());
    let c = e.clone();
    assert_eq!(c, e);
    drop(c);
    drop(e);
}

#[test]
fn printing_can_pass_the_length_limit_and_reparsing_then_says_so() {
    // Found by the `parse` fuzz target: printing escapes control characters (`\0` becomes
    // `\u0000`), so a text under the limit can print to one over it. Reparsing that gives
    // the length error, not a different tree.
    let text = format!("a = '{}'", "\0".repeat(1500));
    let c = parse_condition(&text).unwrap();
    let printed = c.to_string();
    assert!(printed.contains("\\u0000"), "{printed:?}");
    assert!(printed.chars().count() > MAX_CHARS);
    let e = condition_err(&printed);
    assert_eq!(e.kind, ErrorKind::TooLong);
    // Under the limit the printed text parses back to the same tree.
    let text = format!("a = '{}'", "\0".repeat(1000));
    let c = parse_condition(&text).unwrap();
    assert_eq!(parse_condition(&c.to_string()).unwrap(), c);
}
