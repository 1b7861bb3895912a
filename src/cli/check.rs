//! `twinql check` and `twinql fmt`: offline validation and canonical formatting.
//!
//! Exit status of `check`: 0 when every query is valid (warnings do not fail), 1 when any is
//! invalid, 2 for usage or I/O errors (no queries given, unreadable file).

use std::io::{IsTerminal, Read, Write};
use std::path::PathBuf;

use clap::{Args, ValueEnum};
use twinql_planner::functions::FunctionSet;
use twinql_planner::validate::Options;

use crate::diagnostics::{CheckReport, Dialect, RenderOptions, check_with};

/// The grammar of the input text.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum DialectArg {
    /// Full queries: `SELECT … FROM devices …`.
    Query,
    /// Target conditions and job queryConditions: `tags.env = 'prod'`, `*`.
    Condition,
    /// Message-routing conditions: `$body.temp > 50`.
    Routing,
}

impl From<DialectArg> for Dialect {
    fn from(d: DialectArg) -> Dialect {
        match d {
            DialectArg::Query => Dialect::Query,
            DialectArg::Condition => Dialect::Condition,
            DialectArg::Routing => Dialect::Routing,
        }
    }
}

/// How `check` prints its results.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum FormatArg {
    /// rustc-style snippets with carets, and a summary line.
    Human,
    /// One JSON object per query, one per line.
    Json,
}

/// Which functions twin queries may call.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum FunctionsArg {
    /// What the service accepts (`IS_DEFINED`, `STARTSWITH`, …).
    Twin,
    /// Also the routing scalar functions (`CONTAINS`, `LOWER`, …), a twinql extension.
    Extended,
}

/// Arguments of `twinql check`.
#[derive(Debug, Args)]
pub struct CheckArgs {
    /// The grammar of the queries.
    #[arg(long, value_enum, default_value_t = DialectArg::Query)]
    pub dialect: DialectArg,
    /// Output format.
    #[arg(long, value_enum, default_value_t = FormatArg::Human)]
    pub format: FormatArg,
    /// Function table for twin queries.
    #[arg(long, value_enum, default_value_t = FunctionsArg::Twin)]
    pub functions: FunctionsArg,
    /// Read queries from a file, one per line (blank lines and lines starting with `#` are
    /// skipped); `-` reads standard input.
    #[arg(long, value_name = "FILE")]
    pub file: Option<PathBuf>,
    /// Human format: no `ok:` lines and no summary line; errors and warnings are still shown.
    #[arg(long, short)]
    pub quiet: bool,
    /// Queries to check; `-` reads one query (possibly multi-line) from standard input.
    #[arg(value_name = "QUERY")]
    pub queries: Vec<String>,
}

/// Arguments of `twinql fmt`.
#[derive(Debug, Args)]
pub struct FmtArgs {
    /// The grammar of the query.
    #[arg(long, value_enum, default_value_t = DialectArg::Query)]
    pub dialect: DialectArg,
    /// The query; `-` reads it from standard input.
    #[arg(value_name = "QUERY")]
    pub query: String,
}

/// One query to check and where it came from.
struct Input {
    text: String,
    origin: String,
    first_line: usize,
}

fn read_stdin() -> Result<String, String> {
    let mut s = String::new();
    std::io::stdin()
        .read_to_string(&mut s)
        .map_err(|e| format!("cannot read standard input: {e}"))?;
    Ok(s)
}

/// The queries named on the command line, in order: positional arguments first, then the file.
fn collect_inputs(args: &CheckArgs) -> Result<Vec<Input>, String> {
    let mut inputs = Vec::new();
    let mut stdin_used = false;
    for (i, q) in args.queries.iter().enumerate() {
        if q == "-" {
            if stdin_used {
                return Err("standard input can be read only once".to_string());
            }
            stdin_used = true;
            let text = read_stdin()?;
            let text = text.strip_suffix('\n').unwrap_or(&text);
            let text = text.strip_suffix('\r').unwrap_or(text);
            inputs.push(Input {
                text: text.to_string(),
                origin: "<stdin>".to_string(),
                first_line: 1,
            });
        } else {
            inputs.push(Input {
                text: q.clone(),
                origin: format!("<arg {}>", i + 1),
                first_line: 1,
            });
        }
    }
    if let Some(path) = &args.file {
        let (content, origin) = if path.as_os_str() == "-" {
            if stdin_used {
                return Err("standard input can be read only once".to_string());
            }
            (read_stdin()?, "<stdin>".to_string())
        } else {
            let content = std::fs::read_to_string(path)
                .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
            (content, path.display().to_string())
        };
        for (n, line) in content.lines().enumerate() {
            let trimmed = line.trim();
            if trimmed.is_empty() || trimmed.starts_with('#') {
                continue;
            }
            inputs.push(Input {
                text: line.to_string(),
                origin: origin.clone(),
                first_line: n + 1,
            });
        }
    }
    Ok(inputs)
}

fn options(functions: FunctionsArg) -> Options {
    Options {
        functions: match functions {
            FunctionsArg::Twin => FunctionSet::Twin,
            FunctionsArg::Extended => FunctionSet::Extended,
        },
        ..Options::default()
    }
}

fn plural(n: usize, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

/// Runs `twinql check`; returns the exit status.
pub fn run_check(args: CheckArgs) -> i32 {
    let inputs = match collect_inputs(&args) {
        Ok(inputs) => inputs,
        Err(e) => {
            eprintln!("error: {e}");
            return 2;
        }
    };
    if inputs.is_empty() {
        eprintln!("error: no queries given (pass QUERY arguments, `-` or --file)");
        return 2;
    }
    let opts = options(args.functions);
    let dialect = Dialect::from(args.dialect);
    let color = std::io::stdout().is_terminal();
    let mut out = anstream::stdout().lock();
    let (mut valid, mut invalid, mut warnings) = (0, 0, 0);
    for input in &inputs {
        let report = check_with(&input.text, dialect, &opts);
        warnings += report.warnings.len();
        if report.ok() {
            valid += 1;
        } else {
            invalid += 1;
        }
        let written = match args.format {
            FormatArg::Json => writeln!(out, "{}", report.to_json()),
            FormatArg::Human => write_human(&mut out, &report, input, color, args.quiet),
        };
        if written.is_err() {
            // Closed pipe or full disk: nothing more can be reported on stdout.
            return 2;
        }
    }
    if args.format == FormatArg::Human && !args.quiet {
        let mut summary = format!(
            "{}: {valid} ok, {invalid} invalid",
            plural(inputs.len(), "query", "queries")
        );
        if warnings > 0 {
            summary.push_str(&format!(" ({})", plural(warnings, "warning", "warnings")));
        }
        if writeln!(out, "{summary}").is_err() {
            return 2;
        }
    }
    if invalid > 0 { 1 } else { 0 }
}

fn write_human(
    out: &mut impl Write,
    report: &CheckReport,
    input: &Input,
    color: bool,
    quiet: bool,
) -> std::io::Result<()> {
    let opts = RenderOptions {
        origin: Some(input.origin.clone()),
        first_line: input.first_line,
        color,
    };
    let rendered = report.render(&opts);
    if !rendered.is_empty() {
        writeln!(out, "{rendered}")?;
    }
    if report.ok() && !quiet {
        writeln!(
            out,
            "ok: {}",
            report.canonical.as_deref().unwrap_or_default()
        )?;
    }
    Ok(())
}

/// Runs `twinql fmt`: prints the canonical form, or the syntax errors and exit status 1.
pub fn run_fmt(args: FmtArgs) -> i32 {
    let (text, origin) = if args.query == "-" {
        match read_stdin() {
            Ok(s) => {
                let s = s.strip_suffix('\n').unwrap_or(&s).to_string();
                (s, "<stdin>")
            }
            Err(e) => {
                eprintln!("error: {e}");
                return 2;
            }
        }
    } else {
        (args.query, "<arg>")
    };
    let report = check_with(&text, args.dialect.into(), &Options::default());
    match &report.canonical {
        Some(canonical) => {
            println!("{canonical}");
            0
        }
        None => {
            let opts = RenderOptions {
                origin: Some(origin.to_string()),
                first_line: 1,
                color: std::io::stderr().is_terminal(),
            };
            let _ = write!(anstream::stderr(), "{}", report.render(&opts));
            1
        }
    }
}
