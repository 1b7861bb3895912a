//! Malformed inputs: error kind, span and help.

mod common;
use common::*;
use twinql_parser::*;

#[test]
fn lexical_errors() {
    let e = query_err("SELECT * FROM devices WHERE a = 'abc");
    assert_err(&e, ErrorKind::UnterminatedString, 32..36);
    let e = routing_err("\"2 = 24");
    assert_err(&e, ErrorKind::UnterminatedString, 0..7);
    let e = query_err("SELECT * FROM devices WHERE a = @x");
    assert_err(&e, ErrorKind::InvalidCharacter, 32..33);
    assert_eq!(e.found.as_deref(), Some("'@'"));
    let e = condition_err(r"a = '\q'");
    assert_err(&e, ErrorKind::InvalidEscape, 5..7);
    let e = condition_err(r"a = '\u12'");
    assert_err(&e, ErrorKind::InvalidEscape, 5..9);
    let e = condition_err(r"a = '\ud83d'");
    assert_err(&e, ErrorKind::InvalidEscape, 5..11);
    let e = condition_err("a = 12abc");
    assert_err(&e, ErrorKind::InvalidNumber, 4..9);
    let e = condition_err("a = 0x");
    assert_err(&e, ErrorKind::InvalidNumber, 4..6);
    let e = condition_err("a = 1e");
    assert_err(&e, ErrorKind::InvalidNumber, 4..6);
    let e = condition_err("a = 1. AND b");
    assert_err(&e, ErrorKind::InvalidNumber, 4..6);
    let e = condition_err("a = 1 /* open");
    assert_err(&e, ErrorKind::UnterminatedComment, 6..13);
    let e = condition_err("tags.[[group = 1");
    assert_err(&e, ErrorKind::UnterminatedIdentifier, 5..16);
    let e = condition_err("tags.[[]] = 1");
    assert_err(&e, ErrorKind::UnterminatedIdentifier, 5..9);
    let e = condition_err("a ! b");
    assert_err(&e, ErrorKind::InvalidCharacter, 2..3);
    let e = condition_err("$ = 1");
    assert_err(&e, ErrorKind::InvalidCharacter, 0..1);
}

#[test]
fn all_lexical_errors_are_reported() {
    let errs = parse_query("SELECT @ FROM devices WHERE a = # AND b = 'open").unwrap_err();
    let kinds: Vec<_> = errs.0.iter().map(|e| (e.kind, e.span.start)).collect();
    assert_eq!(
        kinds,
        vec![
            (ErrorKind::InvalidCharacter, 7),
            (ErrorKind::InvalidCharacter, 32),
            (ErrorKind::UnterminatedString, 42),
        ]
    );
}

#[test]
fn select_errors() {
    let e = query_err("SELECT FROM devices");
    assert_err(&e, ErrorKind::UnexpectedToken, 7..11);
    assert_eq!(e.found.as_deref(), Some("'FROM'"));
    assert_eq!(e.expected, vec!["'*'", "a select item"]);

    let e = query_err("SELECT * FROM modules");
    assert_err(&e, ErrorKind::UnknownCollection, 14..21);
    assert_eq!(e.help.as_deref(), Some("did you mean `devices.modules`?"));
    let e = query_err("SELECT * FROM jobs");
    assert_eq!(e.help.as_deref(), Some("did you mean `devices.jobs`?"));
    let e = query_err("SELECT * FROM devices.foo");
    assert_err(&e, ErrorKind::UnknownCollection, 14..25);

    let e = query_err("SELECT * FROM");
    assert_err(&e, ErrorKind::UnexpectedEnd, 13..13);
    assert_eq!(e.found.as_deref(), Some("end of query"));
    let e = query_err("");
    assert_err(&e, ErrorKind::UnexpectedEnd, 0..0);
    assert_eq!(e.expected, vec!["SELECT"]);
    let e = query_err("FROM devices");
    assert_err(&e, ErrorKind::UnexpectedToken, 0..4);
    let e = query_err("SELECT *");
    assert_err(&e, ErrorKind::UnexpectedEnd, 8..8);
    let e = query_err("SELECT *, a FROM devices");
    assert_err(&e, ErrorKind::UnexpectedToken, 8..9);

    let e = query_err("SELECT * FROM devices d");
    assert_err(&e, ErrorKind::UnexpectedToken, 22..23);
    assert_eq!(
        e.help.as_deref(),
        Some("aliases after the collection are not supported")
    );
    let e = query_err("SELECT * FROM devices ORDER BY deviceId");
    assert_err(&e, ErrorKind::UnexpectedToken, 22..27);
    assert_eq!(e.help.as_deref(), Some("ORDER BY is not supported"));
    let e = query_err("SELECT tags.x, COUNT() AS n FROM devices GROUP BY tags.x HAVING n > 1");
    assert_eq!(e.help.as_deref(), Some("HAVING is not supported"));
    let e = query_err("SELECT * FROM devices WHERE a = 1 ;");
    assert_err(&e, ErrorKind::UnexpectedToken, 34..35);
    let e = query_err("SELECT * FROM devices WHERE a = 1)");
    assert_err(&e, ErrorKind::UnbalancedParenthesis, 33..34);

    let e = query_err("SELECT a AS FROM devices");
    assert_err(&e, ErrorKind::UnexpectedToken, 12..16);
    let e = query_err("SELECT a AS group FROM devices");
    assert_eq!(
        e.help.as_deref(),
        Some("write [[group]] to use a reserved word as a name")
    );
    let e = query_err("SELECT a b FROM devices");
    assert_err(&e, ErrorKind::UnexpectedToken, 9..10);
    let e = query_err("SELECT * FROM devices GROUP tags.x");
    assert_err(&e, ErrorKind::UnexpectedToken, 28..32);
    let e = query_err("SELECT * FROM devices GROUP BY COUNT()");
    assert_err(&e, ErrorKind::UnexpectedToken, 36..37);
}

#[test]
fn top_errors() {
    for (text, span) in [
        ("SELECT TOP -1 * FROM devices", 11..12),
        ("SELECT TOP 1.5 * FROM devices", 11..14),
        ("SELECT TOP 0 * FROM devices", 11..12),
        ("SELECT TOP 99999999999999999999 * FROM devices", 11..31),
    ] {
        assert_err(&query_err(text), ErrorKind::InvalidTop, span);
    }
    let e = query_err("SELECT TOP * FROM devices");
    assert_err(&e, ErrorKind::UnexpectedToken, 11..12);
    let e = query_err("SELECT TOP (5 * FROM devices");
    assert_err(&e, ErrorKind::UnexpectedToken, 14..15);
}

#[test]
fn several_errors_are_reported() {
    let errs = parse_query("SELECT a +, b, c = = d FROM devices WHERE x = ").unwrap_err();
    let kinds: Vec<_> = errs.0.iter().map(|e| (e.kind, e.span.start)).collect();
    assert_eq!(
        kinds,
        vec![
            (ErrorKind::UnexpectedToken, 10),
            (ErrorKind::UnexpectedToken, 19),
            (ErrorKind::UnexpectedEnd, 46),
        ],
        "{errs}"
    );
}

#[test]
fn expression_errors() {
    let e = condition_err("a = b = c");
    assert_err(&e, ErrorKind::ChainedComparison, 6..7);
    let e = condition_err("a < b IN [1]");
    assert_err(&e, ErrorKind::ChainedComparison, 6..8);
    let e = condition_err("x IN (1, 2)");
    assert_err(&e, ErrorKind::UnexpectedToken, 5..11);
    assert_eq!(
        e.help.as_deref(),
        Some("lists use square brackets: IN [1, 2]")
    );
    let e = condition_err("x IN 'a'");
    assert_err(&e, ErrorKind::UnexpectedToken, 5..8);
    let e = condition_err(
        "tags.operator = 'John' AND tags.environment = 'prod' NOT deviceId = 'linuxprod1'",
    );
    assert_err(&e, ErrorKind::UnexpectedToken, 53..56);
    assert_eq!(e.help.as_deref(), Some("missing AND/OR?"));
    let e = query_err("SELECT * FROM devices WHERE a = 1 b = 2");
    assert_eq!(e.help.as_deref(), Some("missing AND/OR?"));
    let e = condition_err("group.name = 1");
    assert_err(&e, ErrorKind::UnexpectedToken, 0..5);
    assert_eq!(
        e.help.as_deref(),
        Some("write [[group]] to use a reserved word as a name")
    );
    let e = condition_err("a = NOT b");
    assert_err(&e, ErrorKind::UnexpectedToken, 4..7);
    let e = condition_err("(a = 1");
    assert_err(&e, ErrorKind::UnbalancedParenthesis, 0..1);
    let e = condition_err("f(a, b");
    assert_err(&e, ErrorKind::UnbalancedParenthesis, 1..2);
    let e = condition_err("f(a,)");
    assert_err(&e, ErrorKind::UnexpectedToken, 4..5);
    let e = condition_err("[1, 2");
    assert_err(&e, ErrorKind::UnexpectedEnd, 5..5);
    let e = condition_err("a.b.");
    assert_err(&e, ErrorKind::UnexpectedEnd, 4..4);
    let e = condition_err("a[]");
    assert_err(&e, ErrorKind::UnexpectedToken, 2..3);
    let e = condition_err("a[-1]");
    assert_err(&e, ErrorKind::UnexpectedToken, 2..3);
    let e = condition_err("a[1.5]");
    assert_err(&e, ErrorKind::UnexpectedToken, 2..5);
    let e = condition_err("a.[0]");
    assert_err(&e, ErrorKind::UnexpectedToken, 2..3);
    let e = condition_err("a = ");
    assert_err(&e, ErrorKind::UnexpectedEnd, 4..4);
    assert_eq!(e.expected, vec!["an expression"]);
    let e = condition_err("");
    assert_err(&e, ErrorKind::UnexpectedEnd, 0..0);
    let e = condition_err("* AND a");
    assert_err(&e, ErrorKind::UnexpectedToken, 2..5);
    let e = condition_err("FROM devices.modules");
    assert_err(&e, ErrorKind::UnexpectedEnd, 20..20);
    let e = condition_err("SELECT * FROM devices");
    assert_err(&e, ErrorKind::UnexpectedToken, 0..6);
}

#[test]
fn routing_syntax_is_routing_only() {
    for (text, span, help) in [
        ("a && b", 2..4, "use AND"),
        ("a || b", 2..4, "use OR"),
        ("a == b", 2..4, "use = to compare"),
        (
            "a ?? b",
            2..4,
            "`??` is only available in routing conditions",
        ),
    ] {
        let e = condition_err(text);
        assert_err(&e, ErrorKind::UnexpectedToken, span);
        assert_eq!(e.help.as_deref(), Some(help));
    }
    let e = query_err("SELECT * FROM devices WHERE deviceId = {deviceId}");
    assert_err(&e, ErrorKind::UnexpectedToken, 39..40);

    let e = routing_err("32 = [32]");
    assert_err(&e, ErrorKind::UnexpectedToken, 5..6);
    let e = routing_err("a IN ['x']");
    assert_err(&e, ErrorKind::UnexpectedToken, 2..4);
    let e = routing_err("{ } = 1");
    assert_err(&e, ErrorKind::UnexpectedToken, 2..3);
    let e = routing_err("$body.properties[]");
    assert_err(&e, ErrorKind::UnexpectedToken, 17..18);
    let e = routing_err("$body.properties[1:2]");
    assert_err(&e, ErrorKind::InvalidCharacter, 18..19);
    let e = routing_err("(2 + 22 )) = 24");
    assert_err(&e, ErrorKind::UnbalancedParenthesis, 9..10);
    let e = routing_err("(2 + 22 = 24");
    assert_err(&e, ErrorKind::UnbalancedParenthesis, 0..1);
}

#[test]
fn messages() {
    let e = query_err("SELECT * FROM devices WHERE");
    assert_eq!(
        e.message(),
        "unexpected end of query: found end of query, expected an expression"
    );
    let errs = parse_query("SELECT * FROM modules").unwrap_err();
    assert_eq!(
        errs.to_string(),
        "unknown collection: found 'modules', expected one of devices, devices.modules, devices.jobs at bytes 14..21"
    );
}
