//! The shared conformance data, parser's share: everything that must parse parses, and every
//! routing condition that fails for a *syntactic* reason is rejected.

use serde_json::Value;
use twinql_parser::{parse_condition, parse_query, parse_routing};

const DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../shared/conformance/");

fn lines(file: &str) -> Vec<Value> {
    let path = format!("{DIR}{file}");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| {
        panic!("conformance data {path} is missing ({e}); it lives in the shared folder next to the project")
    });
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            serde_json::from_str(l).unwrap_or_else(|e| panic!("bad JSON line in {file}: {e}: {l}"))
        })
        .collect()
}

#[test]
fn twin_cases_parse() {
    let mut checked = 0;
    let mut failures = Vec::new();
    for case in lines("twin_cases.jsonl") {
        let expect = &case["expect"];
        let must_parse = expect.get("rows").is_some()
            || expect.get("rows_include").is_some()
            || expect.get("parses") == Some(&Value::Bool(true));
        let text = case["query"].as_str().expect("every twin case has a query");
        let result = if text.to_ascii_lowercase().contains("select") {
            parse_query(text).map(|q| q.to_string())
        } else {
            parse_condition(text).map(|c| c.to_string())
        };
        // Cases with no known result (`expect: null`) are real queries too; hold them to the
        // same standard.
        match result {
            Ok(_) => checked += 1,
            Err(e) if must_parse || expect.is_null() => failures.push(format!("{text:?}: {e}")),
            Err(_) => {}
        }
    }
    assert!(
        failures.is_empty(),
        "twin cases that do not parse:\n{}",
        failures.join("\n")
    );
    assert!(checked > 100, "only {checked} twin cases checked");
}

/// `compiles: false` routing cases that fail for a syntactic reason, so the parser must reject
/// them:
///
/// * unterminated strings: `none = "`, `"2 = 24`, `"unterminated = 'unterminated'`;
/// * invalid symbols: `3 = @ 3`, `@32 = 32`, `(@)`, `$body;@`, `$body.properties[1:2]` (`:`),
///   `$body.Welcome!['I'm using spaces %1'] = …` (a quoted member access, which routing paths
///   do not have);
/// * unbalanced parentheses: `(2 + 22 = 24`, `as_number("2" = 24`, `(2 + 22 )) = 24`,
///   `as_number("2")) = 24`;
/// * malformed paths: `$body.properties[]`, `properties.` / `properties[123].` /
///   `properties[123].props11.` (trailing dot), `properties.desired.[123]`,
///   `WeatherTwin[]`, `properties[]`;
/// * malformed arguments: `twin_change_includes(123abc)` (invalid number),
///   `twin_change_includes(properties.desired.twin,,,,,)`;
/// * `32 = [32]`: the routing grammar has no array literals.
const SYNTACTIC: &[&str] = &[
    "none = \"",
    "$body.properties[]",
    "$body.properties[1:2]",
    "$body;@",
    "twin_change_includes(properties.)",
    "twin_change_includes(123abc)",
    "twin_change_includes(properties.desired.twin,,,,,)",
    "twin_change_includes(properties.desired.[123])",
    "twin_change_includes(properties.desired.WeatherTwin[])",
    "twin_change_includes(properties[])",
    "twin_change_includes(properties[123].)",
    "twin_change_includes(properties[123].props11.)",
    "$body.Welcome!['I'm using spaces %1'] = 'ברוכים הבאים!'",
    "$body.tags.Welcome!['I'm using spaces %1'] = 'ברוכים הבאים!'",
    "(2 + 22 = 24",
    "as_number(\"2\" = 24",
    "(2 + 22 )) = 24",
    "as_number(\"2\")) = 24",
    "\"2 = 24",
    "3 = @ 3",
    "\"unterminated = 'unterminated'",
    "@32 = 32",
    "32 = [32]",
    "(@)",
];

// The other `compiles: false` cases are syntactically fine and are left to the type checker,
// so this test requires that they *parse*:
//
// * operand types: `is_defined(3 + true)`, `'a' - 'b'`, `3 = none` (application properties
//   are strings), `3 + '4' = 7`, `none and true`, `undefined and "hello"`, `- (key1)`,
//   `is_defined(not key1)`, `'a' || null = …` (`||` concatenates strings);
// * `??` operands of different types: `(key1 ?? 12.34)`, `(key1 ?? null)`, and
//   `key1 ?? "hello" = "value1"`, which is `key1 ?? ("hello" = "value1")` because `??` binds
//   loosest (string ?? bool);
// * `&&` / `==` cases (`(true && key1)`, `test == true`): with `&&` as AND and `==` as `=`
//   they are bool-vs-string type errors;
// * function arity and argument types: `concat()`, `concat(3)`, `length(12.34)`,
//   `substring('hello', 'a')`, `abs(3, 4)`, `as_number(true) = true`, …;
// * unknown functions: `nope(true) = true`;
// * inputs not allowed by the case's flags: `$BODY…` / `$body…` without `BodyQuery`,
//   `twin_change_includes(…)` without `TwinChangeIncludes`;
// * `twin_change_includes` argument rules: `()`, `(      )`, `(123123)`,
//   `(properties.abcd123)`, `(properties[0])`, `(properties.desired.twin[0].test1)`,
//   `(properties[123].props11, abc)`, `(properties.reportedWeatherTwin)`.
#[test]
fn routing_conditions() {
    let mut failures = Vec::new();
    let mut rejected = 0;
    for case in lines("routing_conditions.jsonl") {
        let text = case["condition"]
            .as_str()
            .expect("every routing case has a condition");
        let expect = &case["expect"];
        let result = parse_routing(text);
        if expect.get("compiles") == Some(&Value::Bool(false)) {
            let syntactic = SYNTACTIC.contains(&text);
            match (syntactic, &result) {
                (true, Ok(e)) => {
                    failures.push(format!("{text:?} should be rejected, parsed as {e}"))
                }
                (true, Err(_)) => rejected += 1,
                (false, Err(e)) => failures.push(format!(
                    "{text:?} is left to the type checker but does not parse: {e}"
                )),
                (false, Ok(_)) => {}
            }
        } else if expect.get("value").is_some() || expect.get("constant").is_some() {
            match &result {
                Ok(e) => {
                    // And the canonical text means the same.
                    let printed = e.to_string();
                    match parse_routing(&printed) {
                        Ok(again) if again == *e => {}
                        other => failures.push(format!(
                            "{text:?} printed as {printed:?} re-parses as {other:?}"
                        )),
                    }
                }
                Err(e) => failures.push(format!("{text:?} should parse: {e}")),
            }
        }
    }
    assert!(
        failures.is_empty(),
        "routing conformance failures:\n{}",
        failures.join("\n")
    );
    // Some SYNTACTIC entries appear more than once in the data.
    assert!(
        rejected >= SYNTACTIC.len(),
        "only {rejected} syntactic rejections"
    );
}
