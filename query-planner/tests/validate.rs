//! One test per validation rule: the code, the span (as the text it covers) and the help.

use twinql_parser::{parse_condition, parse_query, parse_routing};
use twinql_planner::functions::FunctionSet;
use twinql_planner::validate::{
    Diagnostic, MAX_TOP, Options, Report, Severity, codes, output_names, validate_condition,
    validate_query, validate_routing,
};

fn query_with(text: &str, opts: &Options) -> Report {
    let q = parse_query(text).unwrap_or_else(|e| panic!("{text:?} does not parse: {e}"));
    validate_query(&q, opts)
}

fn query(text: &str) -> Report {
    query_with(text, &Options::default())
}

fn condition(text: &str) -> Report {
    let c = parse_condition(text).unwrap_or_else(|e| panic!("{text:?} does not parse: {e}"));
    validate_condition(&c, &Options::default())
}

fn routing(text: &str) -> Report {
    let e = parse_routing(text).unwrap_or_else(|e| panic!("{text:?} does not parse: {e}"));
    validate_routing(&e)
}

/// The report holds exactly one diagnostic; checks its code, severity, the text under its span
/// and its help.
#[track_caller]
fn only<'r>(
    report: &'r Report,
    text: &str,
    severity: Severity,
    code: &str,
    spanned: &str,
    help: Option<&str>,
) -> &'r Diagnostic {
    assert_eq!(
        report.diagnostics.len(),
        1,
        "{text:?}: expected one diagnostic, got {:#?}",
        report.diagnostics
    );
    let d = &report.diagnostics[0];
    assert_has(d, text, severity, code, spanned, help);
    d
}

#[track_caller]
fn assert_has(
    d: &Diagnostic,
    text: &str,
    severity: Severity,
    code: &str,
    spanned: &str,
    help: Option<&str>,
) {
    assert_eq!(d.code, code, "{text:?}: {d:#?}");
    assert_eq!(d.severity, severity, "{text:?}: {d:#?}");
    assert_eq!(&text[d.span.range()], spanned, "{text:?}: span of {d:#?}");
    assert_eq!(d.help.as_deref(), help, "{text:?}: help of {d:#?}");
}

#[track_caller]
fn error(text: &str, code: &str, spanned: &str, help: Option<&str>) -> Diagnostic {
    let r = query(text);
    only(&r, text, Severity::Error, code, spanned, help).clone()
}

#[track_caller]
fn warning(text: &str, code: &str, spanned: &str, help: Option<&str>) {
    let r = query(text);
    only(&r, text, Severity::Warning, code, spanned, help);
}

#[track_caller]
fn clean(text: &str) {
    let r = query(text);
    assert!(r.diagnostics.is_empty(), "{text:?}: {:#?}", r.diagnostics);
}

// ---------------------------------------------------------------------------------------------
// Valid queries
// ---------------------------------------------------------------------------------------------

#[test]
fn documented_queries_are_clean() {
    for text in [
        "SELECT * FROM devices",
        "SELECT * FROM devices WHERE tags.location.region = 'US'",
        "SELECT * FROM devices WHERE tags.[[group]].name = 'some_value'",
        "SELECT COUNT() AS totalNumberOfDevices FROM devices",
        "SELECT properties.reported.telemetryConfig.status AS status, COUNT() AS numberOfDevices FROM devices GROUP BY properties.reported.telemetryConfig.status",
        "SELECT DeviceId, LastActivityTime FROM devices WHERE status = 'enabled' AND connectionState = 'Disconnected'",
        "SELECT * FROM devices.modules WHERE properties.reported.status = 'scanning' AND deviceId IN ['device1', 'device2']",
        "SELECT * FROM devices.jobs WHERE devices.jobs.deviceId = 'myDeviceId'",
        "SELECT * FROM devices.jobs WHERE jobId = 'myJobId' AND status = 'completed'",
        "SELECT deviceId, moduleId FROM devices.modules WHERE properties.reported.lastDesiredStatus.code = 200",
        "SELECT COUNT() AS n FROM devices.modules",
        "SELECT TOP 10 deviceId FROM devices WHERE STARTSWITH(devices.deviceId, 'device1')",
        "SELECT TOP 1000000 * FROM devices",
        "SELECT * FROM devices WHERE properties.desired.$version = properties.reported.lastDesiredVersion",
        "SELECT * FROM devices WHERE tags.list[0] = 'a'",
        "SELECT * FROM devices WHERE ENDSWITH(deviceId, 'x') AND IS_STRING(tags.a) AND is_defined(tags.b)",
        "SELECT * FROM devices WHERE array_contains(parentScopes, 'scope')",
        "SELECT * FROM devices WHERE tags.type = 'a'",
        "SELECT * FROM devices WHERE tags.a + 1 = 2 AND -tags.b < 0",
        "SELECT * FROM devices WHERE x509Thumbprint.primaryThumbprint = null",
        "SELECT tags.x, COUNT() AS n, SUM(tags.y) AS s FROM devices GROUP BY tags.x, tags.z",
        "SELECT devices.tags.x, COUNT() AS n FROM devices GROUP BY tags.X",
    ] {
        clean(text);
    }
}

#[test]
fn conditions_are_validated_against_their_collection() {
    assert!(condition("*").diagnostics.is_empty());
    assert!(
        condition("tags.environment = 'prod'")
            .diagnostics
            .is_empty()
    );
    assert!(
        condition("FROM devices.modules WHERE tags.environment = 'test'")
            .diagnostics
            .is_empty()
    );
    let text = "tags.group = 'a' AND CONTAINS(deviceId, 'x')";
    let r = condition(text);
    assert_eq!(r.errors().len(), 2, "{:#?}", r.diagnostics);
    assert_has(
        r.errors()[0],
        text,
        Severity::Error,
        codes::RESERVED_WORD,
        "group",
        Some("write `tags.[[group]]`"),
    );
    assert_eq!(r.errors()[1].code, codes::UNKNOWN_FUNCTION);
    let text = "COUNT() > 1";
    only(
        &condition(text),
        text,
        Severity::Error,
        codes::MISPLACED_AGGREGATE,
        "COUNT()",
        Some(
            "aggregates cannot appear in WHERE, GROUP BY or inside expressions; select it on its own: `SELECT COUNT(…) AS …`",
        ),
    );
}

// ---------------------------------------------------------------------------------------------
// Functions
// ---------------------------------------------------------------------------------------------

#[test]
fn starts_with_in_a_twin_query_suggests_startswith() {
    let d = error(
        "SELECT * FROM devices WHERE STARTS_WITH(deviceId, 'a')",
        codes::UNKNOWN_FUNCTION,
        "STARTS_WITH",
        Some("did you mean `STARTSWITH`?"),
    );
    assert_eq!(d.message, "unknown function `STARTS_WITH` in a twin query");
    error(
        "SELECT * FROM devices WHERE ends_with(deviceId, 'a')",
        codes::UNKNOWN_FUNCTION,
        "ends_with",
        Some("did you mean `ENDSWITH`?"),
    );
}

#[test]
fn routing_functions_in_a_twin_query_point_to_extended() {
    for (text, name, canonical) in [
        (
            "SELECT * FROM devices WHERE CONTAINS(deviceId, 'a')",
            "CONTAINS",
            "CONTAINS",
        ),
        (
            "SELECT * FROM devices WHERE lower(tags.a) = 'x'",
            "lower",
            "LOWER",
        ),
        (
            "SELECT * FROM devices WHERE LENGTH(tags.a) = 2",
            "LENGTH",
            "LENGTH",
        ),
    ] {
        let help = format!(
            "`{canonical}` exists only in routing conditions; twinql accepts it in twin queries with `FunctionSet::Extended` (`--functions extended`)"
        );
        error(text, codes::UNKNOWN_FUNCTION, name, Some(&help));
        let extended = Options {
            functions: FunctionSet::Extended,
            ..Options::default()
        };
        assert!(
            query_with(text, &extended).diagnostics.is_empty(),
            "{text:?} with Extended"
        );
    }
}

#[test]
fn extended_still_lacks_twin_change_includes() {
    let text = "SELECT * FROM devices WHERE TWIN_CHANGE_INCLUDES(tags.a)";
    let extended = Options {
        functions: FunctionSet::Extended,
        ..Options::default()
    };
    let r = query_with(text, &extended);
    only(
        &r,
        text,
        Severity::Error,
        codes::UNKNOWN_FUNCTION,
        "TWIN_CHANGE_INCLUDES",
        Some("`TWIN_CHANGE_INCLUDES` exists only in routing conditions"),
    );
}

#[test]
fn unknown_function_without_a_suggestion() {
    error(
        "SELECT * FROM devices WHERE HAS_INTERFACE('id', 1)",
        codes::UNKNOWN_FUNCTION,
        "HAS_INTERFACE",
        None,
    );
}

#[test]
fn wrong_arity() {
    let d = error(
        "SELECT * FROM devices WHERE IS_DEFINED(tags.a, tags.b)",
        codes::WRONG_ARITY,
        "IS_DEFINED(tags.a, tags.b)",
        None,
    );
    assert_eq!(d.message, "`IS_DEFINED` takes 1 argument, found 2");
    let d = error(
        "SELECT * FROM devices WHERE STARTSWITH(deviceId)",
        codes::WRONG_ARITY,
        "STARTSWITH(deviceId)",
        None,
    );
    assert_eq!(d.message, "`STARTSWITH` takes 2 arguments, found 1");
}

#[test]
fn every_error_is_reported_not_just_the_first() {
    let text = "SELECT * FROM devices WHERE STARTS_WITH(tags.group, 'a') AND CONTAINS(deviceId, 'b') AND IS_DEFINED()";
    let r = query(text);
    let codes: Vec<&str> = r.errors().iter().map(|d| d.code).collect();
    assert_eq!(
        codes,
        [
            codes::UNKNOWN_FUNCTION,
            codes::RESERVED_WORD,
            codes::UNKNOWN_FUNCTION,
            codes::WRONG_ARITY
        ]
    );
    let starts: Vec<u32> = r.diagnostics.iter().map(|d| d.span.start).collect();
    assert!(starts.is_sorted(), "{starts:?}");
}

// ---------------------------------------------------------------------------------------------
// Aggregates
// ---------------------------------------------------------------------------------------------

#[test]
fn aggregates_only_as_whole_select_items() {
    let help = "aggregates cannot appear in WHERE, GROUP BY or inside expressions; select it on its own: `SELECT COUNT(…) AS …`";
    error(
        "SELECT * FROM devices WHERE COUNT() > 1",
        codes::MISPLACED_AGGREGATE,
        "COUNT()",
        Some(help),
    );
    // Inside an expression in the select list: the item itself is invalid too.
    let text = "SELECT COUNT() + 1 AS n FROM devices";
    let r = query(text);
    assert_eq!(r.errors().len(), 2, "{:#?}", r.diagnostics);
    assert_has(
        r.errors()[0],
        text,
        Severity::Error,
        codes::INVALID_SELECT_ITEM,
        "COUNT() + 1",
        None,
    );
    assert_has(
        r.errors()[1],
        text,
        Severity::Error,
        codes::MISPLACED_AGGREGATE,
        "COUNT()",
        Some(help),
    );
    let text = "SELECT MAX(SUM(tags.a)) AS m FROM devices";
    let r = query(text);
    let codes: Vec<&str> = r.errors().iter().map(|d| d.code).collect();
    assert_eq!(
        codes,
        [codes::AGGREGATE_ARGUMENT, codes::MISPLACED_AGGREGATE],
        "{:#?}",
        r.diagnostics
    );
}

#[test]
fn aggregate_arguments() {
    let d = error(
        "SELECT COUNT(deviceId) AS n FROM devices",
        codes::WRONG_ARITY,
        "COUNT(deviceId)",
        Some("write `COUNT()`"),
    );
    assert_eq!(d.message, "`COUNT` takes no arguments");
    error(
        "SELECT SUM() AS n FROM devices",
        codes::WRONG_ARITY,
        "SUM()",
        None,
    );
    let d = error(
        "SELECT AVG(1) AS n FROM devices",
        codes::AGGREGATE_ARGUMENT,
        "1",
        None,
    );
    assert_eq!(d.message, "the argument of `AVG` must be a path");
    clean("SELECT MIN(tags.a) AS lo, MAX(tags.a) AS hi, AVG(tags.a) AS mean FROM devices");
}

#[test]
fn module_aggregates_follow_the_option() {
    let text = "SELECT COUNT() AS n FROM devices.modules";
    clean(text);
    let strict = Options {
        allow_module_aggregates: false,
        ..Options::default()
    };
    let r = query_with(text, &strict);
    only(
        &r,
        text,
        Severity::Error,
        codes::AGGREGATE_NOT_ALLOWED,
        "COUNT()",
        None,
    );
}

#[test]
fn unaliased_aggregates_are_named_by_position() {
    let text = "SELECT tags.SiteId, COUNT() FROM devices WHERE tags.DeviceType = 'Application' GROUP BY tags.SiteId";
    clean(text);
    let q = parse_query(text).unwrap();
    let twinql_parser::SelectList::Items(items) = &q.select.list else {
        panic!("expected items")
    };
    assert_eq!(output_names(items), ["SiteId", "$2"]);
}

// ---------------------------------------------------------------------------------------------
// Reserved words
// ---------------------------------------------------------------------------------------------

#[test]
fn reserved_word_as_bare_segment() {
    let d = error(
        "SELECT * FROM devices WHERE tags.group.region = 'EU'",
        codes::RESERVED_WORD,
        "group",
        Some("write `tags.[[group]].region`"),
    );
    assert_eq!(
        d.message,
        "`group` is a reserved word and cannot be a bare path segment"
    );
    // Every reserved segment is reported; each help fixes the whole path.
    let text = "SELECT * FROM devices WHERE tags.Select.from = 1";
    let r = query(text);
    assert_eq!(r.errors().len(), 2, "{:#?}", r.diagnostics);
    for (d, word) in r.errors().into_iter().zip(["Select", "from"]) {
        assert_has(
            d,
            text,
            Severity::Error,
            codes::RESERVED_WORD,
            word,
            Some("write `tags.[[Select]].[[from]]`"),
        );
    }
    // In select items and GROUP BY too.
    error(
        "SELECT tags.by AS b FROM devices",
        codes::RESERVED_WORD,
        "by",
        Some("write `tags.[[by]]`"),
    );
}

// ---------------------------------------------------------------------------------------------
// devices.jobs
// ---------------------------------------------------------------------------------------------

#[test]
fn jobs_select_star_only() {
    let d = error(
        "SELECT deviceId, jobId FROM devices.jobs",
        codes::JOBS_SELECT,
        "deviceId, jobId",
        Some("write `SELECT * FROM devices.jobs …`"),
    );
    assert!(d.message.contains("only `SELECT *`"));
    error(
        "SELECT COUNT() AS n FROM devices.jobs",
        codes::JOBS_SELECT,
        "COUNT() AS n",
        Some("write `SELECT * FROM devices.jobs …`"),
    );
}

#[test]
fn jobs_group_by_is_rejected() {
    error(
        "SELECT * FROM devices.jobs GROUP BY status",
        codes::GROUP_BY_NOT_ALLOWED,
        "status",
        None,
    );
}

#[test]
fn jobs_cannot_see_the_twin() {
    let help = "job records have deviceId, jobId, jobType, status, startTimeUtc, endTimeUtc, createdDateTimeUtc, lastUpdatedDateTimeUtc, outcome and error";
    let d = error(
        "SELECT * FROM devices.jobs WHERE tags.location = 'US'",
        codes::JOBS_TWIN_PATH,
        "tags.location",
        Some(help),
    );
    assert!(d.message.contains("`tags`"));
    error(
        "SELECT * FROM devices.jobs WHERE devices.jobs.properties.reported.x = 1",
        codes::JOBS_TWIN_PATH,
        "devices.jobs.properties.reported.x",
        Some(help),
    );
    let text = "FROM devices.jobs WHERE tags.a = 1";
    if let Ok(c) = parse_condition(text) {
        let r = validate_condition(&c, &Options::default());
        assert_eq!(r.errors()[0].code, codes::JOBS_TWIN_PATH);
    }
}

// ---------------------------------------------------------------------------------------------
// GROUP BY
// ---------------------------------------------------------------------------------------------

#[test]
fn group_by_only_on_devices() {
    error(
        "SELECT moduleId, COUNT() AS n FROM devices.modules GROUP BY moduleId",
        codes::GROUP_BY_NOT_ALLOWED,
        "moduleId",
        None,
    );
    let text = "SELECT tags.a, COUNT() AS n FROM devices.modules GROUP BY tags.a, tags.b";
    let d = error(text, codes::GROUP_BY_NOT_ALLOWED, "tags.a, tags.b", None);
    assert_eq!(
        d.message,
        "GROUP BY is not supported on `devices.modules`, only on `devices`"
    );
}

#[test]
fn select_star_with_group_by() {
    error(
        "SELECT * FROM devices GROUP BY tags.a",
        codes::SELECT_STAR_GROUP_BY,
        "*",
        Some("select the group keys and aggregates, e.g. `SELECT tags.a, COUNT() AS count`"),
    );
}

#[test]
fn grouped_items_must_be_keys_or_aggregates() {
    let d = error(
        "SELECT tags.a, deviceId, COUNT() AS n FROM devices GROUP BY tags.a",
        codes::NOT_GROUPED,
        "deviceId",
        Some("add `deviceId` to GROUP BY, or select an aggregate instead"),
    );
    assert_eq!(
        d.message,
        "`deviceId` is neither a GROUP BY key nor an aggregate"
    );
    // A prefix of a key is not the key.
    error(
        "SELECT tags, COUNT() AS n FROM devices GROUP BY tags.a",
        codes::NOT_GROUPED,
        "tags",
        Some("add `tags` to GROUP BY, or select an aggregate instead"),
    );
}

#[test]
fn ungrouped_aggregate_next_to_a_path() {
    error(
        "SELECT deviceId, COUNT() AS n FROM devices",
        codes::MIXED_AGGREGATE,
        "deviceId",
        Some("group by it: `GROUP BY deviceId`"),
    );
}

// ---------------------------------------------------------------------------------------------
// Select list
// ---------------------------------------------------------------------------------------------

#[test]
fn duplicate_output_names() {
    let d = error(
        "SELECT deviceId, tags.deviceId FROM devices",
        codes::DUPLICATE_NAME,
        "tags.deviceId",
        Some("give one of them a different name with `AS`"),
    );
    assert_eq!(
        d.message,
        "duplicate output name `deviceId` (select items 1 and 2)"
    );
    // Aliases count, and names compare ignoring case.
    let d = error(
        "SELECT deviceId AS id, moduleId AS ID FROM devices.modules",
        codes::DUPLICATE_NAME,
        "ID",
        Some("give one of them a different name with `AS`"),
    );
    assert!(d.message.contains("case-insensitive"), "{}", d.message);
    // An alias may reuse a name no other item produces.
    clean("SELECT deviceId AS id, tags.deviceId AS tagId FROM devices");
}

#[test]
fn top_range() {
    let text = format!("SELECT TOP {} * FROM devices", MAX_TOP + 1);
    let r = query(&text);
    only(
        &r,
        &text,
        Severity::Error,
        codes::TOP_OUT_OF_RANGE,
        "TOP 1000001",
        Some("TOP takes a count from 1 to 1000000"),
    );
    // The parser already rejects `TOP 0`; a tree built by other means is still checked.
    let text = "SELECT TOP 1 * FROM devices";
    let mut q = parse_query(text).unwrap();
    q.select.top.as_mut().unwrap().count = 0;
    let r = validate_query(&q, &Options::default());
    let d = only(
        &r,
        text,
        Severity::Error,
        codes::TOP_OUT_OF_RANGE,
        "TOP 1",
        Some("TOP takes a count from 1 to 1000000"),
    );
    assert_eq!(d.message, "TOP 0 selects no rows");
}

#[test]
fn select_items_are_paths_or_aggregates() {
    error(
        "SELECT deviceId = 'a' AS x FROM devices",
        codes::INVALID_SELECT_ITEM,
        "deviceId = 'a'",
        None,
    );
    error(
        "SELECT 'constant' AS c FROM devices",
        codes::INVALID_SELECT_ITEM,
        "'constant'",
        None,
    );
    error(
        "SELECT IS_DEFINED(tags.a) AS d FROM devices",
        codes::INVALID_SELECT_ITEM,
        "IS_DEFINED(tags.a)",
        None,
    );
}

// ---------------------------------------------------------------------------------------------
// Warnings
// ---------------------------------------------------------------------------------------------

#[test]
fn comparing_with_an_array_literal() {
    warning(
        "SELECT * FROM devices WHERE tags.x = [1]",
        codes::COMPARE_ARRAY,
        "tags.x = [1]",
        Some("to test membership write `tags.x IN [1]`"),
    );
    warning(
        "SELECT * FROM devices WHERE ['a'] != tags.x",
        codes::COMPARE_ARRAY,
        "['a'] != tags.x",
        None,
    );
}

#[test]
fn comparing_with_undefined() {
    warning(
        "SELECT * FROM devices WHERE tags.x = undefined",
        codes::COMPARE_UNDEFINED,
        "tags.x = undefined",
        Some("to test for a missing value write `NOT IS_DEFINED(tags.x)`"),
    );
    warning(
        "SELECT * FROM devices WHERE undefined != tags.x",
        codes::COMPARE_UNDEFINED,
        "undefined != tags.x",
        Some("to test for a present value write `IS_DEFINED(tags.x)`"),
    );
}

#[test]
fn comparing_tags_and_properties_with_null() {
    warning(
        "SELECT * FROM devices WHERE tags.x = null",
        codes::COMPARE_NULL,
        "tags.x = null",
        Some("to test for a missing value write `NOT IS_DEFINED(tags.x)`"),
    );
    warning(
        "SELECT * FROM devices.modules WHERE properties.reported.x != null",
        codes::COMPARE_NULL,
        "properties.reported.x != null",
        Some("to test for a present value write `IS_DEFINED(properties.reported.x)`"),
    );
    // System fields can hold null.
    clean("SELECT * FROM devices WHERE x509Thumbprint.primaryThumbprint = null");
    clean("SELECT * FROM devices WHERE null = null");
}

#[test]
fn comparing_literals_of_different_types() {
    let text = "SELECT * FROM devices WHERE 1 = '1'";
    let r = query(text);
    let d = only(
        &r,
        text,
        Severity::Warning,
        codes::LITERAL_TYPE_MISMATCH,
        "1 = '1'",
        None,
    );
    assert_eq!(
        d.message,
        "comparison between a number literal and a string literal is never true: values of different types do not compare"
    );
    warning(
        "SELECT * FROM devices WHERE (true) < -2",
        codes::LITERAL_TYPE_MISMATCH,
        "(true) < -2",
        None,
    );
    clean("SELECT * FROM devices WHERE 1 = 1.0");
}

#[test]
fn arrays_in_in_lists() {
    warning(
        "SELECT * FROM devices WHERE tags.x IN ['a', ['b']]",
        codes::IN_LIST_ARRAY,
        "['b']",
        None,
    );
}

#[test]
fn arithmetic_on_non_numbers() {
    warning(
        "SELECT * FROM devices WHERE tags.x + 'a' = 'ba'",
        codes::NON_NUMERIC_ARITHMETIC,
        "'a'",
        Some("`+` does not concatenate strings (routing conditions have `CONCAT`)"),
    );
    warning(
        "SELECT * FROM devices WHERE tags.x * true = 1",
        codes::NON_NUMERIC_ARITHMETIC,
        "true",
        None,
    );
    warning(
        "SELECT * FROM devices WHERE -'a' = tags.x",
        codes::NON_NUMERIC_ARITHMETIC,
        "'a'",
        None,
    );
}

#[test]
fn warnings_do_not_make_errors() {
    let r = query("SELECT * FROM devices WHERE tags.x = [1] OR tags.y = undefined");
    assert!(!r.has_errors());
    assert_eq!(r.warnings().len(), 2);
}

// ---------------------------------------------------------------------------------------------
// Routing
// ---------------------------------------------------------------------------------------------

#[test]
fn routing_suggests_the_underscore_spelling() {
    let text = "STARTSWITH($body.name, 'a')";
    only(
        &routing(text),
        text,
        Severity::Error,
        codes::UNKNOWN_FUNCTION,
        "STARTSWITH",
        Some("did you mean `STARTS_WITH`?"),
    );
    assert!(
        routing("STARTS_WITH($body.name, 'a') AND CONTAINS($twin.tags.x, 'b') AND length(x) = 2")
            .diagnostics
            .is_empty()
    );
}

#[test]
fn routing_arity_and_twin_only_functions() {
    let text = "SUBSTRING($body.a)";
    let r = routing(text);
    let d = only(&r, text, Severity::Error, codes::WRONG_ARITY, text, None);
    assert_eq!(d.message, "`SUBSTRING` takes 2 to 3 arguments, found 1");
    let text = "CONCAT('a')";
    let d = only(
        &routing(text),
        text,
        Severity::Error,
        codes::WRONG_ARITY,
        text,
        None,
    )
    .clone();
    assert_eq!(d.message, "`CONCAT` takes at least 2 arguments, found 1");
    let text = "ARRAY_CONTAINS($body.a, 1)";
    only(
        &routing(text),
        text,
        Severity::Error,
        codes::UNKNOWN_FUNCTION,
        "ARRAY_CONTAINS",
        Some("`ARRAY_CONTAINS` exists only in twin queries"),
    );
}
