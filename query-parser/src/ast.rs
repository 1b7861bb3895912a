//! The syntax tree of the IoT Hub query language.
//!
//! Every node carries a [`Span`] of byte offsets into the query text. Spans never take part in
//! equality: two trees are equal when they mean the same query, wherever it was written. Each
//! node prints back to canonical query text through `Display`, and parsing that text gives an
//! equal tree (`parse(print(ast)) == ast`).
//!
//! The printer never adds parentheses: a tree whose shape needs them holds an
//! [`Expr::Nested`] node where they go (the parser always produces one for `( … )`).

use std::fmt;

/// A half-open byte range `start..end` into the query text.
///
/// Equality and hashing ignore spans, so trees compare by meaning only.
#[derive(Clone, Copy, Debug, Default, Eq)]
pub struct Span {
    /// Offset of the first byte.
    pub start: u32,
    /// Offset one past the last byte.
    pub end: u32,
}

impl Span {
    /// A span from `start` to `end` (byte offsets).
    pub fn new(start: usize, end: usize) -> Span {
        Span {
            start: start as u32,
            end: end as u32,
        }
    }

    /// The smallest span covering both.
    pub fn to(self, other: Span) -> Span {
        Span {
            start: self.start.min(other.start),
            end: self.end.max(other.end),
        }
    }

    /// The span as a `usize` range, for slicing the query text.
    pub fn range(self) -> std::ops::Range<usize> {
        self.start as usize..self.end as usize
    }
}

impl PartialEq for Span {
    fn eq(&self, _other: &Span) -> bool {
        true
    }
}

impl std::hash::Hash for Span {
    fn hash<H: std::hash::Hasher>(&self, _state: &mut H) {}
}

/// A full query: `SELECT … FROM … [WHERE …] [GROUP BY …]`.
#[derive(Clone, Debug, PartialEq)]
pub struct Query {
    /// The `SELECT` clause.
    pub select: Select,
    /// The `FROM` clause.
    pub from: From,
    /// The `WHERE` condition, if any.
    pub filter: Option<Expr>,
    /// The `GROUP BY` paths; empty when there is no `GROUP BY`.
    pub group_by: Vec<Path>,
    /// The whole query.
    pub span: Span,
}

/// `SELECT [TOP n] (* | item, …)`.
#[derive(Clone, Debug, PartialEq)]
pub struct Select {
    /// `TOP n` or `TOP (n)`.
    pub top: Option<Top>,
    /// `*` or the list of items.
    pub list: SelectList,
    /// From `SELECT` to the end of the list.
    pub span: Span,
}

/// `TOP 10` or `TOP (10)`.
#[derive(Clone, Debug, PartialEq)]
pub struct Top {
    /// The number of rows.
    pub count: u64,
    /// Whether it was written `TOP (n)`.
    pub parenthesized: bool,
    /// From `TOP` to the number (or closing parenthesis).
    pub span: Span,
}

/// What a query selects.
#[derive(Clone, Debug, PartialEq)]
pub enum SelectList {
    /// `SELECT *`: whole documents.
    Star(Span),
    /// `SELECT deviceId, COUNT() AS n`: one member per item.
    Items(Vec<SelectItem>),
}

/// One projected item: `tags.location.plant AS plant`, `COUNT() AS n`.
///
/// The parser accepts any expression here; validation allows only paths and aggregate calls.
#[derive(Clone, Debug, PartialEq)]
pub struct SelectItem {
    /// The projected expression.
    pub expr: Expr,
    /// The `AS` name.
    pub alias: Option<Ident>,
    /// The item including its alias.
    pub span: Span,
}

/// `FROM devices`, `FROM devices.modules`, `FROM devices.jobs`.
#[derive(Clone, Debug, PartialEq)]
pub struct From {
    /// Which collection.
    pub collection: Collection,
    /// The collection name as written.
    pub span: Span,
}

/// The three queryable collections.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Collection {
    /// `devices`: device twins.
    Devices,
    /// `devices.modules`: module twins.
    Modules,
    /// `devices.jobs`: per-device job records.
    Jobs,
}

impl Collection {
    /// The collection name as written in canonical text.
    pub fn name(self) -> &'static str {
        match self {
            Collection::Devices => "devices",
            Collection::Modules => "devices.modules",
            Collection::Jobs => "devices.jobs",
        }
    }
}

/// A configuration target condition or job `queryCondition`.
#[derive(Clone, Debug, PartialEq)]
pub enum Condition {
    /// `*`: every device.
    All(Span),
    /// A bare expression: `tags.environment = 'prod'`.
    Expr(Expr),
    /// `FROM devices.modules WHERE tags.environment = 'test'`.
    From {
        /// The collection.
        from: From,
        /// The condition after `WHERE`.
        filter: Expr,
        /// The whole condition.
        span: Span,
    },
}

/// An identifier: a path segment or an alias.
#[derive(Clone, Debug, PartialEq)]
pub struct Ident {
    /// The name, without brackets.
    pub name: String,
    /// Whether it was written `[[name]]`.
    pub quoted: bool,
    /// The identifier as written (with brackets).
    pub span: Span,
}

impl Ident {
    /// An unquoted identifier with an empty span.
    pub fn new(name: impl Into<String>) -> Ident {
        Ident {
            name: name.into(),
            quoted: false,
            span: Span::default(),
        }
    }
}

/// A path into a document: `properties.reported.temperature`, `tags.[[group]].name`,
/// `$body.Weather.HistoricalData[0].Month`.
///
/// Paths are their own type because indexes key on them.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Path {
    /// The segments, first to last; never empty.
    pub segments: Vec<Segment>,
    /// The whole path.
    pub span: Span,
}

/// One step of a [`Path`].
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Segment {
    /// A member name: `tags`, `$metadata`, `[[group]]`.
    Name {
        /// The member name, without brackets.
        name: String,
        /// Whether it was written `[[name]]`.
        quoted: bool,
        /// The segment as written.
        span: Span,
    },
    /// An array index: `[0]`.
    Index {
        /// The 0-based index.
        index: u64,
        /// From `[` to `]`.
        span: Span,
    },
}

impl Segment {
    /// The member name, if this is a name segment.
    pub fn name(&self) -> Option<&str> {
        match self {
            Segment::Name { name, .. } => Some(name),
            Segment::Index { .. } => None,
        }
    }

    /// The segment's span.
    pub fn span(&self) -> Span {
        match self {
            Segment::Name { span, .. } | Segment::Index { span, .. } => *span,
        }
    }
}

/// An expression.
#[derive(Clone, Debug, PartialEq)]
pub enum Expr {
    /// A constant: `'Redmond43'`, `42`, `0x1F`, `true`, `null`, `undefined`.
    Literal(Literal),
    /// A path: `tags.location.plant`.
    Path(Path),
    /// An array literal: `['US', 'EU']`.
    Array(ArrayLit),
    /// A parenthesised expression: `(a OR b)`.
    Nested(Nested),
    /// `-x`, `+x`.
    Unary(Unary),
    /// `NOT x`.
    Not(Not),
    /// `a + b`, `a AND b`, `a ?? b`, `'a' || b`.
    Binary(Binary),
    /// `a = b`, `a < b` (non-associative).
    Compare(Compare),
    /// `x IN [...]`, `x NIN [...]`.
    In(In),
    /// `STARTSWITH(deviceId, 'sensor-')`, `COUNT()`.
    Call(Call),
    /// Routing only: `{ $sys1 }`, a system or application property named in braces.
    Braced(Braced),
}

impl Expr {
    /// The expression's span.
    pub fn span(&self) -> Span {
        match self {
            Expr::Literal(x) => x.span,
            Expr::Path(x) => x.span,
            Expr::Array(x) => x.span,
            Expr::Nested(x) => x.span,
            Expr::Unary(x) => x.span,
            Expr::Not(x) => x.span,
            Expr::Binary(x) => x.span,
            Expr::Compare(x) => x.span,
            Expr::In(x) => x.span,
            Expr::Call(x) => x.span,
            Expr::Braced(x) => x.span,
        }
    }

    /// Binding strength of the expression's outermost operator, on the scale of
    /// [`BinaryOp::precedence`]: `NOT` is 3, comparisons and `IN` 4, unary signs 8, and
    /// operands that never need parentheses (literals, paths, calls, arrays, `( … )`) 9.
    pub fn precedence(&self) -> u8 {
        match self {
            Expr::Binary(b) => b.op.precedence(),
            Expr::Not(_) => 3,
            Expr::Compare(_) | Expr::In(_) => 4,
            Expr::Unary(_) => 8,
            Expr::Literal(_)
            | Expr::Path(_)
            | Expr::Array(_)
            | Expr::Nested(_)
            | Expr::Call(_)
            | Expr::Braced(_) => 9,
        }
    }
}

/// A constant with its span.
#[derive(Clone, Debug, PartialEq)]
pub struct Literal {
    /// The value.
    pub value: LiteralValue,
    /// The literal as written.
    pub span: Span,
}

/// The value of a constant.
#[derive(Clone, Debug, PartialEq)]
pub enum LiteralValue {
    /// A string, with escapes resolved.
    String(String),
    /// A number.
    Number(Number),
    /// `true` or `false`.
    Bool(bool),
    /// `null`.
    Null,
    /// `undefined`.
    Undefined,
}

/// A number literal. Equality compares values, so `1e3` equals `1000`.
#[derive(Clone, Debug)]
pub struct Number {
    /// The value as a double.
    pub value: f64,
    /// The text as written (`0x1F`, `1.50`, `1e3`); printed back unchanged.
    pub text: String,
}

impl PartialEq for Number {
    fn eq(&self, other: &Number) -> bool {
        self.value == other.value || (self.value.is_nan() && other.value.is_nan())
    }
}

/// `[c1, c2, …]`.
#[derive(Clone, Debug, PartialEq)]
pub struct ArrayLit {
    /// The elements (constants in the documented grammar).
    pub items: Vec<Expr>,
    /// From `[` to `]`.
    pub span: Span,
}

/// `( expr )`.
#[derive(Clone, Debug, PartialEq)]
pub struct Nested {
    /// The inner expression.
    pub expr: Box<Expr>,
    /// From `(` to `)`.
    pub span: Span,
}

/// Unary plus or minus: `-x`.
#[derive(Clone, Debug, PartialEq)]
pub struct Unary {
    /// Which sign.
    pub op: UnaryOp,
    /// The operand.
    pub expr: Box<Expr>,
    /// Sign and operand.
    pub span: Span,
}

/// A unary sign.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum UnaryOp {
    /// `-`
    Neg,
    /// `+`
    Plus,
}

/// `NOT x`.
#[derive(Clone, Debug, PartialEq)]
pub struct Not {
    /// The operand.
    pub expr: Box<Expr>,
    /// `NOT` and operand.
    pub span: Span,
}

/// A binary operator application: `a + b`, `a AND b`.
#[derive(Clone, Debug, PartialEq)]
pub struct Binary {
    /// Left operand.
    pub left: Box<Expr>,
    /// The operator.
    pub op: BinaryOp,
    /// Right operand.
    pub right: Box<Expr>,
    /// Both operands and the operator.
    pub span: Span,
}

/// Binary operators other than comparisons, with their precedence in [`BinaryOp::precedence`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum BinaryOp {
    /// `OR`.
    Or,
    /// `AND` (routing also `&&`).
    And,
    /// Routing only: `a ?? b`, `a` unless it is Undefined, else `b`. Binds loosest of all
    /// operators (below `OR`), as in the IoT Edge routing grammar.
    Coalesce,
    /// Routing only: `'a' || key1`, string concatenation (same strength as `+`).
    Concat,
    /// `+`
    Add,
    /// `-`
    Sub,
    /// `*`
    Mul,
    /// `/`
    Div,
    /// `%`
    Mod,
}

impl BinaryOp {
    /// Binding strength: higher binds tighter. Comparisons sit at 4, `NOT` at 3, `??` at 0
    /// (looser than `OR`). See also [`Expr::precedence`].
    pub fn precedence(self) -> u8 {
        match self {
            BinaryOp::Coalesce => 0,
            BinaryOp::Or => 1,
            BinaryOp::And => 2,
            BinaryOp::Add | BinaryOp::Sub | BinaryOp::Concat => 6,
            BinaryOp::Mul | BinaryOp::Div | BinaryOp::Mod => 7,
        }
    }

    /// The canonical spelling.
    pub fn symbol(self) -> &'static str {
        match self {
            BinaryOp::Or => "OR",
            BinaryOp::And => "AND",
            BinaryOp::Coalesce => "??",
            BinaryOp::Concat => "||",
            BinaryOp::Add => "+",
            BinaryOp::Sub => "-",
            BinaryOp::Mul => "*",
            BinaryOp::Div => "/",
            BinaryOp::Mod => "%",
        }
    }
}

/// A comparison: `a = b`, `a != b`, `a < b`.
#[derive(Clone, Debug, PartialEq)]
pub struct Compare {
    /// Left operand.
    pub left: Box<Expr>,
    /// The operator.
    pub op: CompareOp,
    /// Right operand.
    pub right: Box<Expr>,
    /// Both operands and the operator.
    pub span: Span,
}

/// Comparison operators (`<>` parses as [`CompareOp::Ne`], routing `==` as [`CompareOp::Eq`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum CompareOp {
    /// `=`
    Eq,
    /// `!=` or `<>`
    Ne,
    /// `<`
    Lt,
    /// `<=`
    Le,
    /// `>`
    Gt,
    /// `>=`
    Ge,
}

impl CompareOp {
    /// The canonical spelling.
    pub fn symbol(self) -> &'static str {
        match self {
            CompareOp::Eq => "=",
            CompareOp::Ne => "!=",
            CompareOp::Lt => "<",
            CompareOp::Le => "<=",
            CompareOp::Gt => ">",
            CompareOp::Ge => ">=",
        }
    }

    /// The operator with its operands swapped: `a < b` is `b > a`.
    pub fn flip(self) -> CompareOp {
        match self {
            CompareOp::Lt => CompareOp::Gt,
            CompareOp::Le => CompareOp::Ge,
            CompareOp::Gt => CompareOp::Lt,
            CompareOp::Ge => CompareOp::Le,
            other => other,
        }
    }
}

/// `x IN ['a', 'b']` or `x NIN ['a', 'b']`.
#[derive(Clone, Debug, PartialEq)]
pub struct In {
    /// The tested value.
    pub expr: Box<Expr>,
    /// `true` for `NIN`.
    pub negated: bool,
    /// The list.
    pub list: ArrayLit,
    /// The whole predicate.
    pub span: Span,
}

/// A function call: `IS_DEFINED(tags.x)`, `COUNT()`.
#[derive(Clone, Debug, PartialEq)]
pub struct Call {
    /// The function name as written (resolved case-insensitively by the planner).
    pub name: Ident,
    /// The arguments.
    pub args: Vec<Expr>,
    /// From the name to `)`.
    pub span: Span,
}

/// Routing only: `{ $name }` or `{ name }`, a property named inside braces.
#[derive(Clone, Debug, PartialEq)]
pub struct Braced {
    /// The property name as written inside the braces (trimmed).
    pub name: String,
    /// From `{` to `}`.
    pub span: Span,
}

// ---------------------------------------------------------------------------------------------
// Printing
// ---------------------------------------------------------------------------------------------

/// The keywords of the language (upper case). A bare path segment spelled like one of these,
/// in any case, is printed inside `[[…]]`-brackets only when it was written that way.
pub const KEYWORDS: &[&str] = &[
    "SELECT",
    "TOP",
    "FROM",
    "WHERE",
    "GROUP",
    "BY",
    "AS",
    "AND",
    "OR",
    "NOT",
    "IN",
    "NIN",
    "NULL",
    "UNDEFINED",
    "TRUE",
    "FALSE",
];

/// Whether `word` is a keyword, ignoring case.
pub fn is_keyword(word: &str) -> bool {
    KEYWORDS.iter().any(|k| k.eq_ignore_ascii_case(word))
}

/// Writes `s` as a canonical single-quoted string literal.
pub fn write_string_literal(f: &mut impl fmt::Write, s: &str) -> fmt::Result {
    f.write_char('\'')?;
    for c in s.chars() {
        match c {
            '\'' => f.write_str("\\'")?,
            '\\' => f.write_str("\\\\")?,
            c if (c as u32) < 0x20 || c == '\u{7f}' => write!(f, "\\u{:04x}", c as u32)?,
            c => f.write_char(c)?,
        }
    }
    f.write_char('\'')
}

fn write_name(f: &mut fmt::Formatter<'_>, name: &str, quoted: bool) -> fmt::Result {
    if quoted {
        write!(f, "[[{name}]]")
    } else {
        f.write_str(name)
    }
}

impl fmt::Display for Ident {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write_name(f, &self.name, self.quoted)
    }
}

impl fmt::Display for Path {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, seg) in self.segments.iter().enumerate() {
            match seg {
                Segment::Name { name, quoted, .. } => {
                    if i > 0 {
                        f.write_str(".")?;
                    }
                    write_name(f, name, *quoted)?;
                }
                Segment::Index { index, .. } => write!(f, "[{index}]")?,
            }
        }
        Ok(())
    }
}

impl fmt::Display for Literal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.value {
            LiteralValue::String(s) => write_string_literal(f, s),
            LiteralValue::Number(n) => f.write_str(&n.text),
            LiteralValue::Bool(true) => f.write_str("true"),
            LiteralValue::Bool(false) => f.write_str("false"),
            LiteralValue::Null => f.write_str("null"),
            LiteralValue::Undefined => f.write_str("undefined"),
        }
    }
}

impl fmt::Display for ArrayLit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // `[[` would start a `[[name]]` identifier, so a first item that itself starts with `[`
        // (a nested array, a `[[name]]` path) is separated by a space.
        for (i, item) in self.items.iter().enumerate() {
            if i == 0 {
                let text = item.to_string();
                let open = if text.starts_with('[') { "[ " } else { "[" };
                write!(f, "{open}{text}")?;
            } else {
                write!(f, ", {item}")?;
            }
        }
        if self.items.is_empty() {
            f.write_str("[")?;
        }
        f.write_str("]")
    }
}

impl fmt::Display for Expr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Expr::Literal(l) => write!(f, "{l}"),
            Expr::Path(p) => write!(f, "{p}"),
            Expr::Array(a) => write!(f, "{a}"),
            Expr::Nested(n) => write!(f, "({})", n.expr),
            Expr::Unary(u) => {
                let sign = match u.op {
                    UnaryOp::Neg => "-",
                    UnaryOp::Plus => "+",
                };
                // `- -x` must not print as `--x`.
                match &*u.expr {
                    Expr::Unary(_) => write!(f, "{sign} {}", u.expr),
                    e => write!(f, "{sign}{e}"),
                }
            }
            Expr::Not(n) => write!(f, "NOT {}", n.expr),
            Expr::Binary(b) => write!(f, "{} {} {}", b.left, b.op.symbol(), b.right),
            Expr::Compare(c) => write!(f, "{} {} {}", c.left, c.op.symbol(), c.right),
            Expr::In(i) => write!(
                f,
                "{} {} {}",
                i.expr,
                if i.negated { "NIN" } else { "IN" },
                i.list
            ),
            Expr::Call(c) => {
                write!(f, "{}(", c.name)?;
                for (i, a) in c.args.iter().enumerate() {
                    if i > 0 {
                        f.write_str(", ")?;
                    }
                    write!(f, "{a}")?;
                }
                f.write_str(")")
            }
            Expr::Braced(b) => write!(f, "{{ {} }}", b.name),
        }
    }
}

impl fmt::Display for SelectItem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.expr)?;
        if let Some(a) = &self.alias {
            write!(f, " AS {a}")?;
        }
        Ok(())
    }
}

impl fmt::Display for Select {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SELECT ")?;
        if let Some(top) = &self.top {
            if top.parenthesized {
                write!(f, "TOP ({}) ", top.count)?;
            } else {
                write!(f, "TOP {} ", top.count)?;
            }
        }
        match &self.list {
            SelectList::Star(_) => f.write_str("*"),
            SelectList::Items(items) => {
                for (i, item) in items.iter().enumerate() {
                    if i > 0 {
                        f.write_str(", ")?;
                    }
                    write!(f, "{item}")?;
                }
                Ok(())
            }
        }
    }
}

impl fmt::Display for Query {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} FROM {}", self.select, self.from.collection.name())?;
        if let Some(w) = &self.filter {
            write!(f, " WHERE {w}")?;
        }
        if !self.group_by.is_empty() {
            f.write_str(" GROUP BY ")?;
            for (i, p) in self.group_by.iter().enumerate() {
                if i > 0 {
                    f.write_str(", ")?;
                }
                write!(f, "{p}")?;
            }
        }
        Ok(())
    }
}

impl fmt::Display for Condition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Condition::All(_) => f.write_str("*"),
            Condition::Expr(e) => write!(f, "{e}"),
            Condition::From { from, filter, .. } => {
                write!(f, "FROM {} WHERE {filter}", from.collection.name())
            }
        }
    }
}
