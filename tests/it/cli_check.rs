//! Golden tests of `twinql check` and `twinql fmt`, running the real binary.
//!
//! Outputs are insta snapshots under `tests/it/snapshots/`; after an intended change, review
//! and accept them with `cargo insta review` (or
//! `INSTA_UPDATE=always cargo test --test it cli_check::`).

use std::io::Write;
use std::process::{Command, Output, Stdio};

const BIN: &str = env!("CARGO_BIN_EXE_twinql");

/// Runs the binary in the package root with `args`, feeding `stdin`.
fn run(args: &[&str], stdin: Option<&str>) -> Output {
    let mut child = Command::new(BIN)
        .args(args)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .env_remove("CLICOLOR_FORCE")
        .env_remove("FORCE_COLOR")
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run twinql");
    if let Some(input) = stdin {
        child
            .stdin
            .take()
            .expect("stdin")
            .write_all(input.as_bytes())
            .expect("write stdin");
    }
    child.wait_with_output().expect("wait for twinql")
}

fn stdout(o: &Output) -> String {
    String::from_utf8(o.stdout.clone()).expect("UTF-8 stdout")
}

fn stderr(o: &Output) -> String {
    String::from_utf8(o.stderr.clone()).expect("UTF-8 stderr")
}

/// Runs and checks the exit status; returns stdout, which must hold no colour codes.
#[track_caller]
fn check_out(args: &[&str], stdin: Option<&str>, status: i32) -> String {
    let o = run(args, stdin);
    assert_eq!(
        o.status.code(),
        Some(status),
        "twinql {args:?}\nstdout:\n{}\nstderr:\n{}",
        stdout(&o),
        stderr(&o)
    );
    let out = stdout(&o);
    assert!(
        !out.contains('\x1b'),
        "colour codes in non-terminal output:\n{out}"
    );
    out
}

const VALID: &str = "SELECT * FROM devices WHERE tags.location.region = 'US'";
const SYNTAX_ERROR: &str = "SELECT * FROM devices WHERE";
const UNKNOWN_FUNCTION: &str = "SELECT * FROM devices WHERE STARTS_WITH(deviceId, 'sensor')";
const RESERVED_WORD: &str = "select deviceId from devices where tags.group.region = 'EU'";
const MULTI_LINE: &str =
    "SELECT deviceId\nFROM devices\nWHERE CONTAINS(tags.name, 'x')\n  AND tags.a = undefined";

#[test]
fn human_valid_query() {
    let out = check_out(&["check", VALID], None, 0);
    insta::assert_snapshot!("human_valid", out);
}

#[test]
fn human_invalid_queries() {
    let out = check_out(
        &[
            "check",
            VALID,
            SYNTAX_ERROR,
            UNKNOWN_FUNCTION,
            RESERVED_WORD,
            MULTI_LINE,
        ],
        None,
        1,
    );
    insta::assert_snapshot!("human_invalid", out);
}

#[test]
fn json_output() {
    let out = check_out(
        &[
            "check",
            "--format",
            "json",
            VALID,
            SYNTAX_ERROR,
            UNKNOWN_FUNCTION,
            RESERVED_WORD,
            MULTI_LINE,
        ],
        None,
        1,
    );
    insta::assert_snapshot!("json", out);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 5, "one object per query:\n{out}");
    for line in lines {
        let v: serde_json::Value = serde_json::from_str(line).expect("valid JSON");
        let keys: Vec<&String> = v.as_object().expect("object").keys().collect();
        assert_eq!(keys, ["query", "ok", "canonical", "errors", "warnings"]);
        for d in v["errors"]
            .as_array()
            .unwrap()
            .iter()
            .chain(v["warnings"].as_array().unwrap())
        {
            let keys: Vec<&String> = d.as_object().expect("object").keys().collect();
            assert_eq!(
                keys,
                ["code", "message", "start", "end", "line", "column", "help"]
            );
        }
    }
}

#[test]
fn json_positions_in_a_multi_line_query() {
    let out = check_out(&["check", "--format", "json", MULTI_LINE], None, 1);
    let v: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    let e = &v["errors"][0];
    assert_eq!(e["code"], "unknown-function");
    assert_eq!(
        (e["line"].as_u64(), e["column"].as_u64()),
        (Some(3), Some(7))
    );
    assert_eq!(e["start"].as_u64(), Some(35));
    let w = &v["warnings"][0];
    assert_eq!(w["code"], "compare-undefined");
    assert_eq!(
        (w["line"].as_u64(), w["column"].as_u64()),
        (Some(4), Some(7))
    );
    assert_eq!(
        v["canonical"],
        "SELECT deviceId FROM devices WHERE CONTAINS(tags.name, 'x') AND tags.a = undefined"
    );
}

#[test]
fn warnings_do_not_fail() {
    let out = check_out(
        &["check", "SELECT * FROM devices WHERE tags.x = null"],
        None,
        0,
    );
    insta::assert_snapshot!("human_warning", out);
}

#[test]
fn extended_functions() {
    let q = "SELECT * FROM devices WHERE CONTAINS(deviceId, 'sensor')";
    check_out(&["check", q], None, 1);
    let out = check_out(&["check", "--functions", "extended", q], None, 0);
    assert_eq!(
        out,
        format!("ok: {q}\n1 query: 1 ok, 0 invalid\n"),
        "valid queries print one line each"
    );
}

#[test]
fn dialects() {
    let out = check_out(
        &[
            "check",
            "--dialect",
            "condition",
            "tags.environment='prod' AND deviceId IN ['a']",
            "*",
        ],
        None,
        0,
    );
    assert_eq!(
        out,
        "ok: tags.environment = 'prod' AND deviceId IN ['a']\nok: *\n2 queries: 2 ok, 0 invalid\n"
    );
    let out = check_out(
        &[
            "check",
            "--dialect",
            "routing",
            "STARTSWITH($body.name, 'a')",
        ],
        None,
        1,
    );
    insta::assert_snapshot!("human_routing", out);
}

#[test]
fn quiet_prints_only_problems() {
    let out = check_out(&["check", "--quiet", VALID, VALID], None, 0);
    assert_eq!(out, "");
    let out = check_out(&["check", "-q", VALID, SYNTAX_ERROR], None, 1);
    assert!(out.contains("error[unexpected-end]"), "{out}");
    assert!(!out.contains("ok:"), "{out}");
}

#[test]
fn file_with_comments_and_blank_lines() {
    let out = check_out(
        &["check", "--file", "tests/fixtures/check_queries.txt"],
        None,
        1,
    );
    insta::assert_snapshot!("human_file", out);
    let out = check_out(
        &[
            "check",
            "--format",
            "json",
            "--file",
            "tests/fixtures/check_queries.txt",
        ],
        None,
        1,
    );
    assert_eq!(
        out.lines().count(),
        4,
        "comments and blank lines skipped:\n{out}"
    );
}

#[test]
fn file_from_stdin() {
    let input = "# comment\n\nSELECT * FROM devices\nSELECT * FROM devices WHERE\n";
    let out = check_out(&["check", "--file", "-"], Some(input), 1);
    insta::assert_snapshot!("human_file_stdin", out);
}

#[test]
fn query_from_stdin() {
    let out = check_out(
        &["check", "-"],
        Some("SELECT *\nFROM devices\nWHERE tags.a = 1\n"),
        0,
    );
    assert_eq!(
        out,
        "ok: SELECT * FROM devices WHERE tags.a = 1\n1 query: 1 ok, 0 invalid\n"
    );
}

#[test]
fn usage_and_io_errors_exit_2() {
    let o = run(&["check"], None);
    assert_eq!(o.status.code(), Some(2));
    assert_eq!(
        stderr(&o),
        "error: no queries given (pass QUERY arguments, `-` or --file)\n"
    );
    let o = run(
        &["check", "--file", "tests/fixtures/does-not-exist.txt"],
        None,
    );
    assert_eq!(o.status.code(), Some(2));
    assert!(
        stderr(&o).starts_with("error: cannot read tests/fixtures/does-not-exist.txt"),
        "{}",
        stderr(&o)
    );
    let o = run(&["check", "--format", "xml", VALID], None);
    assert_eq!(o.status.code(), Some(2));
    let o = run(&["check", "--file", "-", "-"], Some("x"));
    assert_eq!(o.status.code(), Some(2));
}

#[test]
fn fmt_prints_the_canonical_form() {
    let out = check_out(
        &[
            "fmt",
            "select   deviceId as id from devices where tags.[[group]]='a' and NOT is_defined(tags.x)",
        ],
        None,
        0,
    );
    assert_eq!(
        out,
        "SELECT deviceId AS id FROM devices WHERE tags.[[group]] = 'a' AND NOT is_defined(tags.x)\n"
    );
    let out = check_out(
        &["fmt", "--dialect", "condition", "-"],
        Some("tags.a=1\n"),
        0,
    );
    assert_eq!(out, "tags.a = 1\n");
}

#[test]
fn fmt_of_invalid_text_fails_with_diagnostics() {
    let o = run(&["fmt", SYNTAX_ERROR], None);
    assert_eq!(o.status.code(), Some(1));
    assert_eq!(stdout(&o), "");
    insta::assert_snapshot!("fmt_error", stderr(&o));
}
