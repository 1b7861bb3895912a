//! Every case of `shared/conformance/routing_conditions.jsonl` (the Azure IoT Edge routing
//! engine's condition tests) against the routing type checker, compiler and evaluator.
//!
//! - `{"compiles": false}`: the condition must be rejected (syntax or type error); where the
//!   case has the engine's `error` text, one of our errors must carry exactly that text.
//! - `{"value": v}`: it must compile under the case's flags and evaluate to `v` against the
//!   fixture message.
//! - `{"constant": c}`: it must compile to the constant `c` (`Infinity`, `-Infinity`, `NaN` as
//!   strings).
//!
//! Cases with `disabled_upstream: true` count like the others. Deliberate divergences are listed
//! in [`DIVERGENCES`] with a reason each; the test fails if that list and the set of failing
//! cases differ in either direction.

use serde_json::Value as Json;
use twinql_planner::eval::{CExpr, Const};
use twinql_planner::routing::{
    Message, MessageSource, RoutingFlags, RoutingOptions, Truth, compile_routing_text, evaluate,
};

const CONDITIONS: &str = include_str!(concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../shared/conformance/routing_conditions.jsonl"
));
const FIXTURES: &str = include_str!(concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../shared/conformance/routing_fixtures.json"
));

/// Cases we deliberately do not follow: (line number in the JSONL file, 1-based, condition,
/// reason). Keep this list as short as possible.
const DIVERGENCES: &[(usize, &str, &str)] = &[];

fn truth_name(t: Truth) -> &'static str {
    match t {
        Truth::True => "true",
        Truth::False => "false",
        Truth::Undefined => "undefined",
    }
}

fn const_matches(c: &CExpr, want: &Json) -> bool {
    let CExpr::Const(c) = c else {
        return false;
    };
    match (c, want) {
        (Const::Number(n), Json::String(s)) if s == "NaN" => n.is_nan(),
        (Const::Number(n), Json::String(s)) if s == "Infinity" => *n == f64::INFINITY,
        (Const::Number(n), Json::String(s)) if s == "-Infinity" => *n == f64::NEG_INFINITY,
        (Const::Number(n), Json::Number(w)) => {
            let w = w.as_f64().unwrap_or(f64::NAN);
            (n - w).abs() <= 1e-12 * w.abs().max(1.0)
        }
        (Const::String(s), Json::String(w)) => &**s == w,
        (Const::Bool(b), Json::Bool(w)) => b == w,
        (Const::Null, Json::Null) => true,
        _ => false,
    }
}

/// Runs one case; `Err` explains a failure.
fn run_case(case: &Json, fixtures: &Json) -> Result<(), String> {
    let condition = case["condition"].as_str().ok_or("no condition")?;
    let flags_name = case["flags"].as_str().unwrap_or("None");
    let flags =
        RoutingFlags::from_name(flags_name).ok_or_else(|| format!("unknown flags {flags_name}"))?;
    let context = case["context"].as_str();
    let (fixture_key, source) = match context {
        None => (None, MessageSource::Telemetry),
        Some("twin_change_notification") => (
            Some("twin_change_notification"),
            MessageSource::TwinChangeNotification,
        ),
        // "msg_props (telemetry source, not twin-change)"
        Some(c) => (
            Some(c.split(" (").next().unwrap_or(c)),
            MessageSource::Telemetry,
        ),
    };
    let message = match fixture_key {
        Some(k) => Message::from_fixture(
            fixtures.get(k).ok_or_else(|| format!("no fixture {k}"))?,
            source,
        ),
        None => Message::new(),
    };
    let opts = RoutingOptions {
        flags,
        source: Some(source),
    };
    let compiled = compile_routing_text(condition, &opts);
    let expect = &case["expect"];
    if expect.get("compiles") == Some(&Json::Bool(false)) {
        let errors = match compiled {
            Ok(c) => return Err(format!("compiled, expected rejection: {c:?}")),
            Err(e) => e,
        };
        if let Some(text) = expect.get("error").and_then(Json::as_str)
            && !errors.iter().any(|e| e.message == text)
        {
            return Err(format!("expected error {text:?}, got {errors:?}"));
        }
        return Ok(());
    }
    let compiled = compiled.map_err(|e| format!("rejected: {e:?}"))?;
    if let Some(v) = expect.get("value").and_then(Json::as_str) {
        let got = truth_name(evaluate(&compiled, &message));
        return if got == v {
            Ok(())
        } else {
            Err(format!("evaluated to {got}, expected {v}"))
        };
    }
    if let Some(c) = expect.get("constant") {
        return if const_matches(&compiled, c) {
            Ok(())
        } else {
            Err(format!("compiled to {compiled:?}, expected constant {c}"))
        };
    }
    Err(format!("unknown expectation {expect}"))
}

#[test]
fn routing_conformance() {
    let fixtures: Json = serde_json::from_str(FIXTURES).expect("fixtures parse");
    let mut total = 0;
    let mut passed = 0;
    let mut failing: Vec<(usize, String, String)> = Vec::new();
    for (i, line) in CONDITIONS.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let case: Json = serde_json::from_str(line).expect("case parses");
        total += 1;
        match run_case(&case, &fixtures) {
            Ok(()) => passed += 1,
            Err(why) => failing.push((
                i + 1,
                case["condition"].as_str().unwrap_or_default().to_string(),
                why,
            )),
        }
    }
    println!(
        "routing conformance: {passed}/{total} passed, {} listed divergences",
        DIVERGENCES.len()
    );
    for (line, cond, why) in &failing {
        let listed = DIVERGENCES.iter().any(|(l, c, _)| l == line && c == cond);
        println!(
            "  {} line {line}: {cond:?}: {why}",
            if listed { "divergence" } else { "FAIL" }
        );
    }
    let unexpected: Vec<_> = failing
        .iter()
        .filter(|(l, c, _)| !DIVERGENCES.iter().any(|(dl, dc, _)| dl == l && dc == c))
        .collect();
    let stale: Vec<_> = DIVERGENCES
        .iter()
        .filter(|(dl, dc, _)| !failing.iter().any(|(l, c, _)| dl == l && dc == c))
        .collect();
    assert!(
        unexpected.is_empty(),
        "{} cases fail without being listed: {unexpected:#?}",
        unexpected.len()
    );
    assert!(
        stale.is_empty(),
        "listed divergences now pass (remove them): {stale:#?}"
    );
    assert_eq!(passed + DIVERGENCES.len(), total);
}
