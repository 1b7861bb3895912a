//! Offline checking of query text: parse, validate, and report every problem with its position.
//!
//! [`check`] runs the parser and the validator of one dialect and returns a [`CheckReport`]:
//! the canonical text when the query parses, and every error and warning as a [`Diag`] with
//! byte offsets and 1-based line/column. The report prints as one JSON object
//! ([`CheckReport::to_json`]) or as rustc-style snippets with carets
//! ([`CheckReport::render`]).
//!
//! ```
//! use twinql::{Dialect, check};
//!
//! let report = check("SELECT * FROM devices WHERE STARTS_WITH(deviceId, 'a')", Dialect::Query);
//! assert!(!report.ok());
//! assert_eq!(report.errors[0].code, "unknown-function");
//! assert_eq!(report.errors[0].column, 29);
//! assert_eq!(report.errors[0].help.as_deref(), Some("did you mean `STARTSWITH`?"));
//! ```

use annotate_snippets::{AnnotationKind, Level, Renderer, Snippet};
use twinql_parser::{ParseErrors, line_col};
use twinql_planner::validate::{self, Diagnostic, Options, Severity};

/// Which grammar a piece of text is written in.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Dialect {
    /// A full query: `SELECT … FROM devices …`.
    Query,
    /// A target condition or job `queryCondition`: `*`, `tags.env = 'prod'`,
    /// `FROM devices.modules WHERE …`.
    Condition,
    /// A message-routing condition: `$body.temp > 50 AND STARTS_WITH($twin.tags.x, 'a')`.
    Routing,
}

/// One error or warning, positioned in the checked text.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Diag {
    /// Stable kebab-case code: a parse error kind (`unexpected-token`) or a validation code
    /// (`unknown-function`).
    pub code: &'static str,
    /// One line, without position.
    pub message: String,
    /// Byte offset where the problem starts.
    pub start: usize,
    /// Byte offset one past its end.
    pub end: usize,
    /// 1-based line of `start`.
    pub line: usize,
    /// 1-based column of `start`, in characters.
    pub column: usize,
    /// How to fix it, when there is a clear fix.
    pub help: Option<String>,
}

impl Diag {
    fn new(
        text: &str,
        code: &'static str,
        message: String,
        span: twinql_parser::Span,
        help: Option<String>,
    ) -> Diag {
        let start = (span.start as usize).min(text.len());
        let end = (span.end as usize).clamp(start, text.len());
        let (line, column) = line_col(text, start);
        Diag {
            code,
            message,
            start,
            end,
            line,
            column,
            help,
        }
    }

    fn to_json(&self) -> serde_json::Value {
        serde_json::json!({
            "code": self.code,
            "message": self.message,
            "start": self.start,
            "end": self.end,
            "line": self.line,
            "column": self.column,
            "help": self.help,
        })
    }
}

/// The outcome of checking one piece of text.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CheckReport {
    /// The text that was checked.
    pub query: String,
    /// The canonical form, when the text parses (even if validation found errors).
    pub canonical: Option<String>,
    /// Syntax and validation errors, in source order.
    pub errors: Vec<Diag>,
    /// Validation warnings (conditions that can never be true), in source order.
    pub warnings: Vec<Diag>,
}

/// How [`CheckReport::render`] lays out its snippets.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RenderOptions {
    /// Where the text came from (`queries.txt`, `<stdin>`), printed as `--> origin:line:col`.
    pub origin: Option<String>,
    /// Line number of the text's first line in its origin (for files of one query per line).
    pub first_line: usize,
    /// Whether to emit ANSI colours.
    pub color: bool,
}

impl Default for RenderOptions {
    fn default() -> RenderOptions {
        RenderOptions {
            origin: None,
            first_line: 1,
            color: false,
        }
    }
}

impl CheckReport {
    /// Whether the text is valid: it parses and validation found no errors (warnings allowed).
    pub fn ok(&self) -> bool {
        self.errors.is_empty()
    }

    /// The report as one line of JSON:
    /// `{"query", "ok", "canonical", "errors": [{"code", "message", "start", "end", "line",
    /// "column", "help"}], "warnings": [...]}`.
    pub fn to_json(&self) -> String {
        let list = |d: &[Diag]| d.iter().map(Diag::to_json).collect::<Vec<_>>();
        serde_json::json!({
            "query": self.query,
            "ok": self.ok(),
            "canonical": self.canonical,
            "errors": list(&self.errors),
            "warnings": list(&self.warnings),
        })
        .to_string()
    }

    /// Every error, then every warning, as rustc-style snippets: the query line(s), a caret
    /// under the span, the message and a `help:` note. Snippets are separated by a blank line
    /// and the text ends with a newline; it is empty when there is nothing to report.
    pub fn render(&self, opts: &RenderOptions) -> String {
        let renderer = if opts.color {
            Renderer::styled()
        } else {
            Renderer::plain()
        };
        let mut out = String::new();
        let all = self
            .errors
            .iter()
            .map(|d| (Level::ERROR, d))
            .chain(self.warnings.iter().map(|d| (Level::WARNING, d)));
        for (level, d) in all {
            let mut snippet = Snippet::source(self.query.as_str())
                .line_start(opts.first_line)
                .annotation(AnnotationKind::Primary.span(d.start..d.end));
            if let Some(origin) = &opts.origin {
                snippet = snippet.path(origin.as_str());
            }
            let mut group = level
                .primary_title(d.message.as_str())
                .id(d.code)
                .element(snippet);
            if let Some(help) = &d.help {
                group = group.element(Level::HELP.message(help.as_str()));
            }
            if !out.is_empty() {
                out.push('\n');
            }
            out.push_str(&renderer.render(&[group]));
            out.push('\n');
        }
        out
    }
}

/// Parses and validates `text` in `dialect` with the default (strict) [`Options`].
pub fn check(text: &str, dialect: Dialect) -> CheckReport {
    check_with(text, dialect, &Options::default())
}

/// Parses and validates `text` in `dialect` with the given validation options (which do not
/// apply to routing conditions).
pub fn check_with(text: &str, dialect: Dialect, opts: &Options) -> CheckReport {
    let parsed = match dialect {
        Dialect::Query => twinql_parser::parse_query(text)
            .map(|q| (q.to_string(), validate::validate_query(&q, opts))),
        Dialect::Condition => twinql_parser::parse_condition(text)
            .map(|c| (c.to_string(), validate::validate_condition(&c, opts))),
        Dialect::Routing => twinql_parser::parse_routing(text)
            .map(|e| (e.to_string(), validate::validate_routing(&e))),
    };
    match parsed {
        Ok((canonical, report)) => {
            let (mut errors, mut warnings) = (Vec::new(), Vec::new());
            for d in report.diagnostics {
                let Diagnostic {
                    severity,
                    code,
                    message,
                    span,
                    help,
                } = d;
                let diag = Diag::new(text, code, message, span, help);
                match severity {
                    Severity::Error => errors.push(diag),
                    Severity::Warning => warnings.push(diag),
                }
            }
            CheckReport {
                query: text.to_string(),
                canonical: Some(canonical),
                errors,
                warnings,
            }
        }
        Err(ParseErrors(errs)) => CheckReport {
            query: text.to_string(),
            canonical: None,
            errors: errs
                .into_iter()
                .map(|e| {
                    let message = e.message();
                    Diag::new(text, e.kind.code(), message, e.span, e.help)
                })
                .collect(),
            warnings: Vec::new(),
        },
    }
}

/// [`CheckReport::render`] without an origin: the snippets of every error and warning.
pub fn render_human(report: &CheckReport, color: bool) -> String {
    report.render(&RenderOptions {
        color,
        ..RenderOptions::default()
    })
}
