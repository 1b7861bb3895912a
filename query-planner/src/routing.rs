//! Message-routing conditions end to end: the static type check the routing engine runs when a
//! route is saved, compilation for [`eval`] in [`Mode::Routing`], and a
//! [`Message`] to evaluate conditions against (spec §1.7, §3.2–§3.4, §7).
//!
//! The rules follow the Azure IoT Edge routing engine (IoT Hub's message-routing condition
//! language), as pinned down by its test suite (`shared/conformance/routing_conditions.jsonl`):
//!
//! - Every expression has a static type: `number`, `string`, `bool`, `null`, `undefined`, or
//!   *dynamic* for `$body.…` / `$twin.…` queries, whose type is known only per message.
//!   Application and system properties are strings. Operators and functions accept only their
//!   own types (a dynamic operand fits anywhere), so `3 + '4'`, `concat(3)`, `none AND true`
//!   (an application property is a string) and `as_number(true)` are rejected up front.
//! - `$body` queries need [`RoutingFlags::body_query`]; without it `$body.x` is just the system
//!   property `body.x`. `twin_change_includes(…)` needs [`RoutingFlags::twin_change_includes`]
//!   and a twin-change-notification message source.
//! - `$name` reads the application property literally named `$name` if the message has one,
//!   else the system property `name`; `{ $name }` reads the system property (and `{ $body.x }`
//!   the body, ignoring an application property named `$body.x`). Names are case-insensitive.
//! - A body query reads `null` for a missing member and Undefined for an object, an array or a
//!   date-time string (JSON.NET parses ISO timestamps into dates, which routing cannot
//!   compare; spec Q-13).
//!
//! ```
//! use twinql_planner::routing::{compile_routing_text, evaluate, Message, RoutingOptions, Truth};
//!
//! let cond = compile_routing_text("as_number(severity) <= 2", &RoutingOptions::default()).unwrap();
//! let msg = Message::new().app_property("severity", "1");
//! assert_eq!(evaluate(&cond, &msg), Truth::True);
//!
//! let err = compile_routing_text("3 + '4' = 7", &RoutingOptions::default()).unwrap_err();
//! assert_eq!(
//!     err[0].message,
//!     "Invalid operands to binary operator '+': have 'number' and 'string', expected 'number' and 'number'"
//! );
//! ```

use crate::eval::{self, CExpr, CPath, CompileOptions, Const, Context, Mode, Root, Step};
use crate::functions::{self, Func, FunctionSet};
use crate::value::{Key, Node, Value};
use std::borrow::Cow;
use std::fmt;
use twinql_parser::ast::{
    self, Binary, BinaryOp, Braced, Expr, LiteralValue, Nested, Path, Segment, Span,
};

// ---------------------------------------------------------------------------------------------
// Options
// ---------------------------------------------------------------------------------------------

/// Which optional inputs a condition may use (the routing engine's `RouteCompilerFlags`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct RoutingFlags {
    /// `$body.…` queries over a JSON message body.
    pub body_query: bool,
    /// `twin_change_includes(…)` over twin-change notifications.
    pub twin_change_includes: bool,
}

impl RoutingFlags {
    /// Properties only.
    pub const NONE: RoutingFlags = RoutingFlags {
        body_query: false,
        twin_change_includes: false,
    };
    /// Properties and `$body`.
    pub const BODY_QUERY: RoutingFlags = RoutingFlags {
        body_query: true,
        twin_change_includes: false,
    };
    /// Properties and `twin_change_includes`.
    pub const TWIN_CHANGE_INCLUDES: RoutingFlags = RoutingFlags {
        body_query: false,
        twin_change_includes: true,
    };
    /// Everything (what IoT Hub itself allows).
    pub const ALL: RoutingFlags = RoutingFlags {
        body_query: true,
        twin_change_includes: true,
    };

    /// The flags named `None`, `BodyQuery`, `TwinChangeIncludes` or `All` (any case), or a
    /// `|`/`,`-separated combination.
    pub fn from_name(name: &str) -> Option<RoutingFlags> {
        let mut flags = RoutingFlags::NONE;
        for part in name.split(['|', ',']).map(str::trim) {
            let f = match part.to_ascii_lowercase().as_str() {
                "none" => RoutingFlags::NONE,
                "bodyquery" => RoutingFlags::BODY_QUERY,
                "twinchangeincludes" => RoutingFlags::TWIN_CHANGE_INCLUDES,
                "all" => RoutingFlags::ALL,
                _ => return None,
            };
            flags.body_query |= f.body_query;
            flags.twin_change_includes |= f.twin_change_includes;
        }
        Some(flags)
    }
}

/// Where routed messages come from.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum MessageSource {
    /// Device or module telemetry.
    #[default]
    Telemetry,
    /// Twin-change notifications: the body is the twin patch.
    TwinChangeNotification,
}

/// How to check and compile a routing condition.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct RoutingOptions {
    /// Which inputs the condition may use.
    pub flags: RoutingFlags,
    /// The route's message source, when known: `twin_change_includes` is valid only for
    /// [`MessageSource::TwinChangeNotification`]. `None` accepts it for any source.
    pub source: Option<MessageSource>,
}

impl Default for RoutingOptions {
    /// All flags, source unknown: what IoT Hub accepts for a route whose source is not known.
    fn default() -> RoutingOptions {
        RoutingOptions {
            flags: RoutingFlags::ALL,
            source: None,
        }
    }
}

impl RoutingOptions {
    /// Options with `flags` and no known source.
    pub fn with_flags(flags: RoutingFlags) -> RoutingOptions {
        RoutingOptions {
            flags,
            source: None,
        }
    }
}

/// A rejected routing condition: a syntax or type error, with the routing engine's wording.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RoutingError {
    /// The message, e.g. `Invalid built-in function 'nope'`.
    pub message: String,
    /// Byte offsets of the offending part of the condition.
    pub span: Span,
    /// For syntax errors: the parser's own, more specific description.
    pub detail: Option<String>,
}

impl fmt::Display for RoutingError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} at bytes {}..{}",
            self.message, self.span.start, self.span.end
        )
    }
}

impl std::error::Error for RoutingError {}

// ---------------------------------------------------------------------------------------------
// Type checking
// ---------------------------------------------------------------------------------------------

/// The static type of a routing expression.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum RoutingType {
    /// A number (IEEE double; NaN is the undefined number).
    Number,
    /// A string (application and system properties are strings, possibly `null`).
    String,
    /// A Boolean (true, false or undefined).
    Bool,
    /// The literal `null` and what `AND`/`OR` make of it.
    Null,
    /// The literal `undefined`.
    Undefined,
    /// A `$body` / `$twin` query: known per message only; fits where any type is expected.
    Dynamic,
    /// An expression that already has an error (fits anywhere, so errors do not cascade).
    Error,
}

impl RoutingType {
    /// The name the routing engine uses in error messages.
    pub fn name(self) -> &'static str {
        match self {
            RoutingType::Number => "number",
            RoutingType::String => "string",
            RoutingType::Bool => "bool",
            RoutingType::Null => "null",
            RoutingType::Undefined => "undefined",
            RoutingType::Dynamic | RoutingType::Error => "unknown",
        }
    }

    fn fits(self, expected: RoutingType) -> bool {
        self == expected || matches!(self, RoutingType::Dynamic | RoutingType::Error)
    }
}

/// Type-checks a routing condition under `flags` (message source unknown). Returns every
/// error; empty means the condition compiles.
pub fn check_routing(e: &Expr, flags: RoutingFlags) -> Vec<RoutingError> {
    check_routing_with(e, &RoutingOptions::with_flags(flags))
}

/// [`check_routing`] with full options.
pub fn check_routing_with(e: &Expr, opts: &RoutingOptions) -> Vec<RoutingError> {
    let mut c = Checker {
        opts,
        errors: Vec::new(),
    };
    c.expr(e);
    c.errors
}

/// The static type of a condition, or its errors.
pub fn routing_type(e: &Expr, opts: &RoutingOptions) -> Result<RoutingType, Vec<RoutingError>> {
    let mut c = Checker {
        opts,
        errors: Vec::new(),
    };
    let t = c.expr(e);
    if c.errors.is_empty() {
        Ok(t)
    } else {
        Err(c.errors)
    }
}

struct Checker<'o> {
    opts: &'o RoutingOptions,
    errors: Vec<RoutingError>,
}

/// The span between two operands: where the operator is.
fn op_span(l: &Expr, r: &Expr) -> Span {
    let (a, b) = (l.span().end, r.span().start);
    if a < b {
        Span { start: a, end: b }
    } else {
        l.span().to(r.span())
    }
}

fn is_body_root(p: &Path) -> bool {
    matches!(p.segments.first(), Some(Segment::Name { name, quoted: false, .. }) if name.eq_ignore_ascii_case("$body"))
}

fn is_twin_root(p: &Path) -> bool {
    matches!(p.segments.first(), Some(Segment::Name { name, quoted: false, .. }) if name.eq_ignore_ascii_case("$twin"))
}

fn is_body_name(name: &str) -> bool {
    name.get(..6)
        .is_some_and(|p| p.eq_ignore_ascii_case("$body."))
        && name.len() > 6
}

/// A path as one dotted property name, the way the routing engine reads it.
fn path_text(p: &Path) -> String {
    let mut s = String::new();
    for (i, seg) in p.segments.iter().enumerate() {
        match seg {
            Segment::Name { name, .. } => {
                if i > 0 {
                    s.push('.');
                }
                s.push_str(name);
            }
            Segment::Index { index, .. } => {
                s.push('[');
                s.push_str(&index.to_string());
                s.push(']');
            }
        }
    }
    s
}

impl Checker<'_> {
    fn error(&mut self, message: String, span: Span) -> RoutingType {
        self.errors.push(RoutingError {
            message,
            span,
            detail: None,
        });
        RoutingType::Error
    }

    fn operands(
        &mut self,
        symbol: &str,
        span: Span,
        have: &[RoutingType],
        expected: &[RoutingType],
    ) -> RoutingType {
        let names = |ts: &[RoutingType]| {
            ts.iter()
                .map(|t| format!("'{}'", t.name()))
                .collect::<Vec<_>>()
                .join(" and ")
        };
        let arity = match expected.len() {
            1 => "unary ",
            2 => "binary ",
            _ => "",
        };
        self.error(
            format!(
                "Invalid operands to {arity}operator '{symbol}': have {}, expected {}",
                names(have),
                names(expected)
            ),
            span,
        )
    }

    fn expr(&mut self, e: &Expr) -> RoutingType {
        use RoutingType as T;
        match e {
            Expr::Literal(l) => match l.value {
                LiteralValue::String(_) => T::String,
                LiteralValue::Number(_) => T::Number,
                LiteralValue::Bool(_) => T::Bool,
                LiteralValue::Null => T::Null,
                LiteralValue::Undefined => T::Undefined,
            },
            Expr::Path(p) => {
                let queries = p.segments.len() > 1
                    && (is_twin_root(p) || is_body_root(p) && self.opts.flags.body_query);
                if queries { T::Dynamic } else { T::String }
            }
            Expr::Braced(b) => {
                if self.opts.flags.body_query && is_body_name(b.name.trim()) {
                    T::Dynamic
                } else {
                    T::String
                }
            }
            Expr::Array(a) => self.error(
                "Syntax error: array literals are not supported in routing conditions".into(),
                a.span,
            ),
            Expr::In(i) => {
                self.expr(&i.expr);
                self.error(
                    format!(
                        "Syntax error: {} is not supported in routing conditions; use OR",
                        if i.negated { "NIN" } else { "IN" }
                    ),
                    i.span,
                )
            }
            Expr::Nested(n) => self.expr(&n.expr),
            Expr::Unary(u) => {
                let t = self.expr(&u.expr);
                let symbol = match u.op {
                    ast::UnaryOp::Neg => "-",
                    ast::UnaryOp::Plus => "+",
                };
                if t.fits(T::Number) || t == T::Undefined {
                    T::Number
                } else {
                    let span = Span {
                        start: u.span.start,
                        end: u.span.start + 1,
                    };
                    self.operands(symbol, span, &[t], &[T::Number])
                }
            }
            Expr::Not(n) => {
                let t = self.expr(&n.expr);
                if matches!(t, T::Null | T::Bool | T::Undefined) || t.fits(T::Bool) {
                    T::Bool
                } else {
                    let span = Span {
                        start: n.span.start,
                        end: n.span.start + 3,
                    };
                    self.operands("NOT", span, &[t], &[T::Bool])
                }
            }
            Expr::Binary(b) => self.binary(b),
            Expr::Compare(c) => {
                let l = self.expr(&c.left);
                let r = self.expr(&c.right);
                if l == T::Error || r == T::Error || l.fits(r) || r.fits(l) {
                    T::Bool
                } else {
                    self.operands(c.op.symbol(), op_span(&c.left, &c.right), &[l, r], &[l, l])
                }
            }
            Expr::Call(c) => self.call(c),
        }
    }

    fn binary(&mut self, b: &Binary) -> RoutingType {
        use RoutingType as T;
        let l = self.expr(&b.left);
        let r = self.expr(&b.right);
        let span = op_span(&b.left, &b.right);
        let symbol = b.op.symbol();
        match b.op {
            BinaryOp::And | BinaryOp::Or => {
                let ok =
                    |t: T| matches!(t, T::Null | T::Bool | T::Undefined | T::Dynamic | T::Error);
                if !ok(l) || !ok(r) {
                    return self.operands(symbol, span, &[l, r], &[T::Bool, T::Bool]);
                }
                let null = if b.op == BinaryOp::And {
                    l == T::Null || r == T::Null
                } else {
                    l == T::Null && r == T::Null
                };
                if null { T::Null } else { T::Bool }
            }
            BinaryOp::Coalesce => {
                if !(l.fits(r) || r.fits(l)) {
                    return self.operands(symbol, span, &[l, r], &[l, l]);
                }
                if l == T::Undefined {
                    r
                } else if l == T::Dynamic || r == T::Dynamic {
                    T::Dynamic
                } else {
                    l
                }
            }
            BinaryOp::Concat => {
                if l.fits(T::String) && r.fits(T::String) {
                    T::String
                } else {
                    self.operands(symbol, span, &[l, r], &[T::String, T::String])
                }
            }
            BinaryOp::Add | BinaryOp::Sub | BinaryOp::Mul | BinaryOp::Div | BinaryOp::Mod => {
                if l.fits(T::Number) && r.fits(T::Number) {
                    T::Number
                } else {
                    self.operands(symbol, span, &[l, r], &[T::Number, T::Number])
                }
            }
        }
    }

    fn call(&mut self, c: &ast::Call) -> RoutingType {
        use RoutingType as T;
        let written = c.name.name.as_str();
        let invalid = |this: &mut Self| {
            this.error(
                format!("Invalid built-in function '{written}'"),
                c.name.span,
            )
        };
        let Some(info) = functions::lookup(FunctionSet::Routing, written) else {
            for a in &c.args {
                self.expr(a);
            }
            return invalid(self);
        };
        if info.func == Func::TwinChangeIncludes {
            if !self.opts.flags.twin_change_includes
                || self.opts.source == Some(MessageSource::Telemetry)
            {
                return invalid(self);
            }
            return self.twin_change_includes(c);
        }
        let args: Vec<T> = c.args.iter().map(|a| self.expr(a)).collect();
        if args.contains(&T::Error) {
            return result_type(info.func);
        }
        let n = args.len();
        let all = |expected: T| args.iter().all(|t| t.fits(expected));
        let ok = match info.func {
            Func::Abs
            | Func::Exp
            | Func::Square
            | Func::Ceiling
            | Func::Floor
            | Func::Sign
            | Func::Sqrt => n == 1 && all(T::Number),
            Func::Power => n == 2 && all(T::Number),
            Func::AsNumber => n == 1 && (args[0].fits(T::String) || args[0] == T::Number),
            Func::IsDefined
            | Func::IsNull
            | Func::IsBool
            | Func::IsNumber
            | Func::IsString
            | Func::IsObject
            | Func::IsArray
            | Func::IsPrimitive => n == 1,
            Func::Concat => n >= 2 && all(T::String),
            Func::Length | Func::Lower | Func::Upper => n == 1 && all(T::String),
            Func::Substring => {
                (n == 2 || n == 3)
                    && args[0].fits(T::String)
                    && args[1..].iter().all(|t| t.fits(T::Number))
            }
            Func::IndexOf | Func::StartsWith | Func::EndsWith | Func::Contains => {
                n == 2 && all(T::String)
            }
            _ => false,
        };
        if ok {
            result_type(info.func)
        } else {
            let given = args.iter().map(|t| t.name()).collect::<Vec<_>>().join(", ");
            self.error(
                format!("Invalid arguments to built-in function '{written}': {written}({given})"),
                c.name.span,
            )
        }
    }

    /// `twin_change_includes(path)`: the argument is a twin path under `properties.reported.`,
    /// `properties.desired.` or `tags.`, member names only.
    fn twin_change_includes(&mut self, c: &ast::Call) -> RoutingType {
        let written = c.name.name.as_str();
        let detail = match c.args.as_slice() {
            [] => Some("twin_change_includes argument cannot be empty".to_string()),
            [Expr::Path(p)] => {
                let names_only = p
                    .segments
                    .iter()
                    .all(|s| matches!(s, Segment::Name { quoted: false, .. }))
                    && !is_body_root(p)
                    && !is_twin_root(p);
                let text = path_text(p);
                let lower = text.to_ascii_lowercase();
                let prefixed = ["properties.reported.", "properties.desired.", "tags."]
                    .iter()
                    .any(|pre| lower.starts_with(pre) && lower.len() > pre.len());
                if !names_only {
                    Some(format!("'{text}' is not a supported twin path"))
                } else if !prefixed {
                    Some(format!(
                        "'{text}' is not supported. Supported prefixes: 'properties.reported.', 'properties.desired.', 'tags.'."
                    ))
                } else {
                    None
                }
            }
            _ => Some("the argument must be one twin path".to_string()),
        };
        match detail {
            None => RoutingType::Bool,
            Some(d) => self.error(
                format!("Invalid arguments to built-in function '{written}': {written}(string). Error: {d}"),
                c.span,
            ),
        }
    }
}

fn result_type(f: Func) -> RoutingType {
    match f {
        Func::Abs
        | Func::Exp
        | Func::Power
        | Func::Square
        | Func::Ceiling
        | Func::Floor
        | Func::Sign
        | Func::Sqrt
        | Func::AsNumber
        | Func::Length
        | Func::IndexOf => RoutingType::Number,
        Func::Concat | Func::Lower | Func::Upper | Func::Substring => RoutingType::String,
        _ => RoutingType::Bool,
    }
}

// ---------------------------------------------------------------------------------------------
// Compilation
// ---------------------------------------------------------------------------------------------

/// Type-checks and compiles a routing condition (message source unknown).
pub fn compile_routing(e: &Expr, flags: RoutingFlags) -> Result<CExpr, Vec<RoutingError>> {
    compile_routing_with(e, &RoutingOptions::with_flags(flags))
}

/// [`compile_routing`] with full options.
///
/// Property references are rewritten to the routing engine's reading before compiling with
/// [`CompileOptions::routing`]: `$name` becomes "the application property `$name`, else the
/// system property `name`" (a `??`), a dotted bare name is one application-property name,
/// `$body.x` (with body queries on) is "the application property `$body.x`, else the body
/// query", `{ $body.x }` the body query alone. A condition of static type `null` always routes
/// nothing, so it compiles to `false`.
pub fn compile_routing_with(e: &Expr, opts: &RoutingOptions) -> Result<CExpr, Vec<RoutingError>> {
    let ty = routing_type(e, opts)?;
    let rewritten = rewrite(e, opts.flags);
    let compiled = eval::compile(&rewritten, &CompileOptions::routing()).map_err(|err| {
        vec![RoutingError {
            message: err.message,
            span: err.span,
            detail: None,
        }]
    })?;
    Ok(if ty == RoutingType::Null {
        CExpr::Const(Const::Bool(false))
    } else {
        compiled
    })
}

/// Parses, type-checks and compiles a routing condition. Syntax errors come back as
/// [`RoutingError`]s too, worded as the routing engine words them (see [`syntax_error`]).
pub fn compile_routing_text(text: &str, opts: &RoutingOptions) -> Result<CExpr, Vec<RoutingError>> {
    let e = twinql_parser::parse_routing(text).map_err(|errs| {
        errs.0
            .iter()
            .map(|err| syntax_error(text, err))
            .collect::<Vec<_>>()
    })?;
    compile_routing_with(&e, opts)
}

/// A parse error in the routing engine's words: `Syntax error: invalid symbol '@'`,
/// `Syntax error: unterminated string`, `Syntax error: missing closing ')'` (an unclosed
/// parenthesised expression), `Syntax error: unmatched closing ')'`, and otherwise the
/// generic `Syntax error.` (also for an unclosed function call). The parser's own description
/// is kept in [`RoutingError::detail`].
pub fn syntax_error(text: &str, err: &twinql_parser::ParseError) -> RoutingError {
    use twinql_parser::ErrorKind;
    let at = text.get(err.span.range()).unwrap_or("");
    let message = match err.kind {
        ErrorKind::InvalidCharacter => {
            let c = at.chars().next().map(String::from).unwrap_or_default();
            format!("Syntax error: invalid symbol '{c}'")
        }
        ErrorKind::UnterminatedString => "Syntax error: unterminated string".to_string(),
        ErrorKind::UnbalancedParenthesis if at == ")" => {
            "Syntax error: unmatched closing ')'".to_string()
        }
        ErrorKind::UnbalancedParenthesis if at == "(" => {
            let before = text[..err.span.start as usize].trim_end();
            let is_call = before
                .chars()
                .next_back()
                .is_some_and(|c| c.is_alphanumeric() || c == '_');
            if is_call {
                "Syntax error.".to_string()
            } else {
                "Syntax error: missing closing ')'".to_string()
            }
        }
        _ => "Syntax error.".to_string(),
    };
    RoutingError {
        message,
        span: err.span,
        detail: Some(err.message()),
    }
}

fn quoted_name(name: String, span: Span) -> Expr {
    Expr::Path(Path {
        segments: vec![Segment::Name {
            name,
            quoted: true,
            span,
        }],
        span,
    })
}

fn coalesce(left: Expr, right: Expr, span: Span) -> Expr {
    Expr::Binary(Binary {
        left: Box::new(left),
        op: BinaryOp::Coalesce,
        right: Box::new(right),
        span,
    })
}

/// Splits `message.Weather.HistoricalData[0].Month` into path segments.
fn parse_dotted(text: &str, span: Span) -> Vec<Segment> {
    let mut segs = Vec::new();
    for part in text.split('.') {
        let (name, mut rest) = match part.find('[') {
            Some(i) => (&part[..i], &part[i..]),
            None => (part, ""),
        };
        if !name.is_empty() {
            segs.push(Segment::Name {
                name: name.to_string(),
                quoted: false,
                span,
            });
        }
        while let Some(stripped) = rest.strip_prefix('[') {
            let end = stripped.find(']').unwrap_or(stripped.len());
            match stripped[..end].trim().parse::<u64>() {
                Ok(index) => segs.push(Segment::Index { index, span }),
                Err(_) => segs.push(Segment::Name {
                    name: stripped[..end].to_string(),
                    quoted: true,
                    span,
                }),
            }
            rest = stripped.get(end + 1..).unwrap_or("");
        }
    }
    segs
}

fn rewrite(e: &Expr, flags: RoutingFlags) -> Expr {
    let r = |x: &Expr| Box::new(rewrite(x, flags));
    match e {
        Expr::Path(p) => {
            let first_dollar = matches!(p.segments.first(), Some(Segment::Name { name, quoted: false, .. }) if name.starts_with('$'));
            let text = path_text(p);
            if p.segments.len() > 1 && is_twin_root(p) {
                e.clone()
            } else if p.segments.len() > 1 && is_body_root(p) && flags.body_query {
                coalesce(quoted_name(text, p.span), e.clone(), p.span)
            } else if first_dollar {
                coalesce(
                    quoted_name(text.clone(), p.span),
                    Expr::Braced(Braced {
                        name: text,
                        span: p.span,
                    }),
                    p.span,
                )
            } else {
                quoted_name(text, p.span)
            }
        }
        Expr::Braced(b) => {
            let name = b.name.trim();
            if flags.body_query && is_body_name(name) {
                let mut segments = vec![Segment::Name {
                    name: name[..5].to_string(),
                    quoted: false,
                    span: b.span,
                }];
                segments.extend(parse_dotted(&name[6..], b.span));
                Expr::Path(Path {
                    segments,
                    span: b.span,
                })
            } else {
                e.clone()
            }
        }
        Expr::Literal(_) | Expr::Array(_) | Expr::In(_) => e.clone(),
        Expr::Nested(n) => Expr::Nested(Nested {
            expr: r(&n.expr),
            span: n.span,
        }),
        Expr::Unary(u) => Expr::Unary(ast::Unary {
            op: u.op,
            expr: r(&u.expr),
            span: u.span,
        }),
        Expr::Not(n) => Expr::Not(ast::Not {
            expr: r(&n.expr),
            span: n.span,
        }),
        Expr::Binary(b) => Expr::Binary(Binary {
            left: r(&b.left),
            op: b.op,
            right: r(&b.right),
            span: b.span,
        }),
        Expr::Compare(c) => Expr::Compare(ast::Compare {
            left: r(&c.left),
            op: c.op,
            right: r(&c.right),
            span: c.span,
        }),
        Expr::Call(c) => {
            let is_tci = functions::lookup(FunctionSet::Routing, &c.name.name)
                .is_some_and(|i| i.func == Func::TwinChangeIncludes);
            Expr::Call(ast::Call {
                name: c.name.clone(),
                args: if is_tci {
                    c.args.clone()
                } else {
                    c.args.iter().map(|a| rewrite(a, flags)).collect()
                },
                span: c.span,
            })
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Messages and evaluation
// ---------------------------------------------------------------------------------------------

/// A routed message: properties, body, the sender's twin.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Message {
    /// Application properties: strings, or `None` for a property whose value is null.
    pub app_properties: Vec<(String, Option<String>)>,
    /// System properties, named without `$` (`contentType`, `connectionDeviceId`, …).
    pub system_properties: Vec<(String, Option<String>)>,
    /// The body, when it is JSON (content type `application/json`, UTF-8/16/32); `$body`
    /// queries read Undefined otherwise.
    pub body: Option<serde_json::Value>,
    /// The sender's device or module twin, for `$twin` paths.
    pub twin: Option<serde_json::Value>,
    /// Where the message comes from; for [`MessageSource::TwinChangeNotification`] the body is
    /// the twin-change notification that `twin_change_includes` inspects.
    pub source: MessageSource,
}

impl Message {
    /// An empty telemetry message.
    pub fn new() -> Message {
        Message::default()
    }

    /// Adds an application property.
    pub fn app_property(mut self, name: &str, value: &str) -> Message {
        self.app_properties
            .push((name.to_string(), Some(value.to_string())));
        self
    }

    /// Adds a system property (named without `$`).
    pub fn system_property(mut self, name: &str, value: &str) -> Message {
        self.system_properties
            .push((name.to_string(), Some(value.to_string())));
        self
    }

    /// Sets the JSON body.
    pub fn with_body(mut self, body: serde_json::Value) -> Message {
        self.body = Some(body);
        self
    }

    /// Sets the sender's twin.
    pub fn with_twin(mut self, twin: serde_json::Value) -> Message {
        self.twin = Some(twin);
        self
    }

    /// Builds a message from the conformance fixture shape: `{"app_properties": {…},
    /// "system_properties": {…}, "body": …, "twin": …}` (property values strings or null).
    pub fn from_fixture(v: &serde_json::Value, source: MessageSource) -> Message {
        let props = |key: &str| -> Vec<(String, Option<String>)> {
            v.get(key)
                .and_then(|p| p.as_object())
                .map(|o| {
                    o.iter()
                        .map(|(k, v)| (k.clone(), v.as_str().map(str::to_string)))
                        .collect()
                })
                .unwrap_or_default()
        };
        let json = |key: &str| v.get(key).filter(|b| !b.is_null()).cloned();
        Message {
            app_properties: props("app_properties"),
            system_properties: props("system_properties"),
            body: json("body"),
            twin: json("twin"),
            source,
        }
    }

    fn lookup<'a>(props: &'a [(String, Option<String>)], name: &str) -> Option<&'a Option<String>> {
        props
            .iter()
            .find(|(k, _)| k == name)
            .or_else(|| {
                let key = Key::new(name);
                props.iter().find(|(k, _)| key.matches_folded(k))
            })
            .map(|(_, v)| v)
    }

    fn prop<'a>(
        props: &'a [(String, Option<String>)],
        name: &str,
    ) -> Value<'a, &'a serde_json::Value> {
        match Message::lookup(props, name) {
            Some(Some(s)) => Value::String(Cow::Borrowed(s)),
            Some(None) => Value::Null,
            None => Value::Undefined,
        }
    }

    /// Application property `name` (any case).
    fn app<'a>(&'a self, name: &str) -> Value<'a, &'a serde_json::Value> {
        Message::prop(&self.app_properties, name)
    }

    /// `$name`: the system property `name`, else the application property `$name`.
    fn system<'a>(&'a self, dollar_name: &str) -> Value<'a, &'a serde_json::Value> {
        let bare = dollar_name.strip_prefix('$').unwrap_or(dollar_name);
        match Message::prop(&self.system_properties, bare) {
            Value::Undefined => self.app(dollar_name),
            v => v,
        }
    }
}

/// Whether a string is an ISO-8601 date-time (`2017-03-09T00:00:00.000Z`), which the routing
/// engine's JSON reader turns into a date (spec Q-13).
pub fn looks_like_datetime(s: &str) -> bool {
    let b = s.as_bytes();
    let digits =
        |r: std::ops::Range<usize>| b.get(r).is_some_and(|x| x.iter().all(u8::is_ascii_digit));
    if b.len() < 19
        || !digits(0..4)
        || b[4] != b'-'
        || !digits(5..7)
        || b[7] != b'-'
        || !digits(8..10)
        || b[10] != b'T'
        || !digits(11..13)
        || b[13] != b':'
        || !digits(14..16)
        || b[16] != b':'
        || !digits(17..19)
    {
        return false;
    }
    let mut i = 19;
    if b.get(i) == Some(&b'.') {
        i += 1;
        let start = i;
        while b.get(i).is_some_and(u8::is_ascii_digit) {
            i += 1;
        }
        if i == start {
            return false;
        }
    }
    match b.get(i) {
        None => true,
        Some(b'Z') => i + 1 == b.len(),
        Some(b'+' | b'-') => {
            b.len() == i + 6 && digits(i + 1..i + 3) && b[i + 3] == b':' && digits(i + 4..i + 6)
        }
        _ => false,
    }
}

/// The name a property path spells: `a.b[0]` for root `a` and steps `b`, `[0]`.
fn dotted(first: &str, steps: &[Step]) -> String {
    let mut s = first.to_string();
    for step in steps {
        match step {
            Step::Member(k) => {
                s.push('.');
                s.push_str(&k.name);
            }
            Step::Index(i) => {
                s.push('[');
                s.push_str(&i.to_string());
                s.push(']');
            }
        }
    }
    s
}

/// A `$body` / `$twin` query: a missing member reads as `null`; objects, arrays and
/// date-time strings as Undefined; the whole document (no steps) as Undefined.
fn message_query<'a>(
    doc: Option<&'a serde_json::Value>,
    steps: &[Step],
) -> Value<'a, &'a serde_json::Value> {
    let Some(mut node) = doc else {
        return Value::Undefined;
    };
    if steps.is_empty() {
        return Value::Undefined;
    }
    for step in steps {
        let next = match step {
            Step::Member(k) => node.member(k),
            Step::Index(i) => node.element(*i),
        };
        match next {
            Some(n) => node = n,
            None => return Value::Null,
        }
    }
    match node.value() {
        Value::Node(_) => Value::Undefined,
        Value::String(s) if looks_like_datetime(&s) => Value::Undefined,
        v => v,
    }
}

impl<'a> Context<'a> for &'a Message {
    type N = &'a serde_json::Value;

    fn root(&self, root: &Root) -> Value<'a, Self::N> {
        let msg: &'a Message = self;
        match root {
            Root::App(k) => msg.app(&k.name),
            Root::System(k) => msg.system(&k.name),
            Root::Body => msg.body.as_ref().map_or(Value::Undefined, Value::Node),
            Root::Twin => msg.twin.as_ref().map_or(Value::Undefined, Value::Node),
            Root::Doc => Value::Undefined,
        }
    }

    fn path(&self, path: &CPath) -> Value<'a, Self::N> {
        let msg: &'a Message = self;
        match &path.root {
            Root::App(k) if !path.steps.is_empty() => msg.app(&dotted(&k.name, &path.steps)),
            Root::System(k) if !path.steps.is_empty() => msg.system(&dotted(&k.name, &path.steps)),
            Root::Body => message_query(msg.body.as_ref(), &path.steps),
            Root::Twin => message_query(msg.twin.as_ref(), &path.steps),
            _ => path.resolve(self.root(&path.root)),
        }
    }

    fn twin_change_includes(&self, path: &CPath) -> Value<'a, Self::N> {
        let msg: &'a Message = self;
        if msg.source != MessageSource::TwinChangeNotification {
            return Value::Undefined;
        }
        let Some(body) = msg.body.as_ref() else {
            return Value::Undefined;
        };
        let mut steps = Vec::with_capacity(path.steps.len() + 1);
        match &path.root {
            Root::App(k) | Root::System(k) => steps.push(Step::Member(k.clone())),
            Root::Doc => {}
            Root::Body | Root::Twin => return Value::Undefined,
        }
        steps.extend(path.steps.iter().cloned());
        let mut node = body;
        for step in &steps {
            let next = match step {
                Step::Member(k) => node.member(k),
                Step::Index(i) => node.element(*i),
            };
            match next {
                Some(n) => node = n,
                None => return Value::Bool(false),
            }
        }
        Value::Bool(true)
    }
}

/// The outcome of a condition: a message is routed only on [`Truth::True`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Truth {
    /// Boolean `true`.
    True,
    /// Boolean `false`.
    False,
    /// Anything else (Undefined, `null` from a body query, a number, a string).
    Undefined,
}

/// Evaluates a compiled routing condition against a message.
pub fn evaluate(cond: &CExpr, msg: &Message) -> Truth {
    match eval::eval(cond, &msg, Mode::Routing) {
        Value::Bool(true) => Truth::True,
        Value::Bool(false) => Truth::False,
        _ => Truth::Undefined,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn compile(text: &str, flags: RoutingFlags) -> Result<CExpr, Vec<RoutingError>> {
        compile_routing_text(text, &RoutingOptions::with_flags(flags))
    }

    #[test]
    fn app_property_named_dollar_wins_over_system_property() {
        let msg = Message::new()
            .app_property("$sys4", "value4")
            .system_property("sys4", "sysvalue4");
        let c = compile("$sys4 = 'value4'", RoutingFlags::NONE).unwrap();
        assert_eq!(evaluate(&c, &msg), Truth::True);
        let c = compile("{$sys4} = 'sysvalue4'", RoutingFlags::NONE).unwrap();
        assert_eq!(evaluate(&c, &msg), Truth::True);
    }

    #[test]
    fn body_needs_the_flag() {
        assert!(compile("$body.a >= 50", RoutingFlags::NONE).is_err());
        let c = compile("$body.a >= 50", RoutingFlags::BODY_QUERY).unwrap();
        let msg = Message::new().with_body(serde_json::json!({"a": 50}));
        assert_eq!(evaluate(&c, &msg), Truth::True);
    }

    #[test]
    fn dates_and_objects_in_bodies_are_undefined() {
        assert!(looks_like_datetime("2017-03-09T00:00:00.000Z"));
        assert!(looks_like_datetime("2017-03-09T00:00:00+01:00"));
        assert!(!looks_like_datetime("2017-03-09"));
        let msg =
            Message::new().with_body(serde_json::json!({"t": "2017-03-09T00:00:00Z", "o": {}}));
        for text in ["$body.t <> '1'", "$body.o <> null", "is_defined($body.o)"] {
            let c = compile(text, RoutingFlags::ALL).unwrap();
            assert_ne!(evaluate(&c, &msg), Truth::True, "{text}");
        }
    }

    #[test]
    fn type_errors_have_spans() {
        let e = twinql_parser::parse_routing("3 + '4' = 7").unwrap();
        let errs = check_routing(&e, RoutingFlags::NONE);
        assert_eq!(errs.len(), 1);
        assert_eq!((errs[0].span.start, errs[0].span.end), (1, 4));
    }

    #[test]
    fn validation_reports_type_errors_once() {
        use crate::validate::{codes, validate_routing};
        let e = twinql_parser::parse_routing("none AND true").unwrap();
        let r = validate_routing(&e);
        assert_eq!(r.diagnostics.len(), 1);
        assert_eq!(r.diagnostics[0].code, codes::ROUTING_TYPE);
        let e = twinql_parser::parse_routing("nope(1) = 1").unwrap();
        let r = validate_routing(&e);
        assert_eq!(r.diagnostics.len(), 1);
        assert_eq!(r.diagnostics[0].code, codes::UNKNOWN_FUNCTION);
    }

    #[test]
    fn as_number_reads_dotnet_numbers() {
        use crate::eval::routing_parse_number as p;
        assert_eq!(p(" 1,000.5 "), Some(1000.5));
        assert_eq!(p("10e1000"), Some(f64::INFINITY));
        assert_eq!(p("-Infinity"), Some(f64::NEG_INFINITY));
        assert_eq!(p("apple"), None);
        assert_eq!(p("inf"), None);
    }
}
