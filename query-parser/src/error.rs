//! Parse errors: typed values with a span, never strings with positions baked in.

use crate::ast::Span;
use std::fmt;

/// What went wrong. Each kind has a stable code (`kind.code()`) used by the JSON output.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ErrorKind {
    /// A character that starts no token: `@` in `deviceId = @x`.
    InvalidCharacter,
    /// A string literal without its closing quote: `'abc`.
    UnterminatedString,
    /// A bad escape inside a string: `'\q'`, `'\u12'`.
    InvalidEscape,
    /// A malformed number: `0x`, `1e`, `12abc`.
    InvalidNumber,
    /// A `/* …` comment that never ends.
    UnterminatedComment,
    /// A `[[…` identifier that never ends, or an empty `[[]]`.
    UnterminatedIdentifier,
    /// A token that does not fit the grammar where it stands: `SELECT FROM devices`.
    UnexpectedToken,
    /// The text ended where more was needed: `SELECT * FROM`.
    UnexpectedEnd,
    /// `(` without `)` or the reverse.
    UnbalancedParenthesis,
    /// `a = b = c`: comparisons do not chain.
    ChainedComparison,
    /// `FROM modules`, `FROM devices.foo`: not a collection.
    UnknownCollection,
    /// `TOP` without a usable count (`TOP -1`, `TOP 1.5`, `TOP 99999999999999999999`).
    InvalidTop,
    /// Expressions nested deeper than the parser's limit.
    TooDeep,
    /// Query text longer than 8192 characters (the service answers `PreconditionFailed`).
    TooLong,
}

impl ErrorKind {
    /// A stable, kebab-case code for machines (`unexpected-token`).
    pub fn code(self) -> &'static str {
        match self {
            ErrorKind::InvalidCharacter => "invalid-character",
            ErrorKind::UnterminatedString => "unterminated-string",
            ErrorKind::InvalidEscape => "invalid-escape",
            ErrorKind::InvalidNumber => "invalid-number",
            ErrorKind::UnterminatedComment => "unterminated-comment",
            ErrorKind::UnterminatedIdentifier => "unterminated-identifier",
            ErrorKind::UnexpectedToken => "unexpected-token",
            ErrorKind::UnexpectedEnd => "unexpected-end",
            ErrorKind::UnbalancedParenthesis => "unbalanced-parenthesis",
            ErrorKind::ChainedComparison => "chained-comparison",
            ErrorKind::UnknownCollection => "unknown-collection",
            ErrorKind::InvalidTop => "invalid-top",
            ErrorKind::TooDeep => "too-deep",
            ErrorKind::TooLong => "query-too-long",
        }
    }
}

/// One syntax error.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ParseError {
    /// What went wrong.
    pub kind: ErrorKind,
    /// Where, as byte offsets into the query text.
    pub span: Span,
    /// What the parser would have accepted here (`"FROM"`, `"an expression"`).
    pub expected: Vec<String>,
    /// What it found instead (`"'WHERE'"`, `"end of query"`).
    pub found: Option<String>,
    /// A hint for the fix, when there is one.
    pub help: Option<String>,
}

impl ParseError {
    /// An error of `kind` at `span`, with nothing expected or found.
    pub fn new(kind: ErrorKind, span: Span) -> ParseError {
        ParseError {
            kind,
            span,
            expected: Vec::new(),
            found: None,
            help: None,
        }
    }

    /// The one-line message, without position.
    pub fn message(&self) -> String {
        let what = match self.kind {
            ErrorKind::InvalidCharacter => "invalid character",
            ErrorKind::UnterminatedString => "unterminated string literal",
            ErrorKind::InvalidEscape => "invalid escape sequence in string",
            ErrorKind::InvalidNumber => "invalid number literal",
            ErrorKind::UnterminatedComment => "unterminated comment",
            ErrorKind::UnterminatedIdentifier => "unterminated [[…]] identifier",
            ErrorKind::UnexpectedToken => "unexpected token",
            ErrorKind::UnexpectedEnd => "unexpected end of query",
            ErrorKind::UnbalancedParenthesis => "unbalanced parenthesis",
            ErrorKind::ChainedComparison => "comparisons cannot be chained",
            ErrorKind::UnknownCollection => "unknown collection",
            ErrorKind::InvalidTop => "invalid TOP count",
            ErrorKind::TooDeep => "expression nested too deeply",
            ErrorKind::TooLong => "query longer than 8192 characters",
        };
        let mut s = what.to_string();
        if let Some(found) = &self.found {
            s.push_str(&format!(": found {found}"));
        }
        match self.expected.as_slice() {
            [] => {}
            [one] => s.push_str(&format!(", expected {one}")),
            many => s.push_str(&format!(", expected one of {}", many.join(", "))),
        }
        s
    }
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} at bytes {}..{}",
            self.message(),
            self.span.start,
            self.span.end
        )
    }
}

impl std::error::Error for ParseError {}

/// Every error found in one piece of query text (at least one).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ParseErrors(pub Vec<ParseError>);

impl fmt::Display for ParseErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("; ")?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ParseErrors {}

/// Line and column (both 1-based, column counted in characters) of byte `offset` in `text`.
pub fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let offset = offset.min(text.len());
    let mut line = 1;
    let mut col = 1;
    for (i, c) in text.char_indices() {
        if i >= offset {
            break;
        }
        if c == '\n' {
            line += 1;
            col = 1;
        } else {
            col += 1;
        }
    }
    (line, col)
}
