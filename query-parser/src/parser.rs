//! The parser: tokens to syntax tree, by recursive descent with precedence climbing.
//!
//! Binary operators go through one loop (`Parser::binary`) that is iterative along a chain
//! (`a AND b AND c …` does not recurse per operand) and recurses only to climb to a tighter
//! operator, so the native stack grows with *nesting* (parentheses, `NOT`, signs, calls, arrays),
//! which is capped at [`MAX_DEPTH`].

use crate::ast::*;
use crate::error::{ErrorKind, ParseError, ParseErrors};
use crate::lexer::{Keyword, Token, TokenKind, tokenize, truncate};

/// The longest accepted text, in characters (the service answers `PreconditionFailed` beyond).
pub const MAX_CHARS: usize = 8192;

/// How deeply parentheses, `NOT`, unary signs, calls and array literals may nest.
pub const MAX_DEPTH: usize = 128;

/// How tall an expression tree may be (nodes on the longest root-to-leaf path).
///
/// Operator chains are parsed without recursion, but the tree they build is as tall as the chain
/// (`a + a + …` nests to the left). Capping the height keeps every recursive walk over a returned
/// tree (printing, `Debug`, `Clone`, evaluators) safe on a small thread stack.
pub const MAX_HEIGHT: usize = 1024;

/// The three languages that share the expression grammar.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Dialect {
    /// Full queries: `SELECT … FROM devices …`.
    Query,
    /// Configuration target conditions and job `queryCondition`s.
    Condition,
    /// Message-routing conditions: adds `&&`, `==`, `||` (concatenation), `??` and `{ $name }`;
    /// array literals and `IN`/`NIN` are not part of it.
    Routing,
}

/// Parses a full query: `SELECT [TOP n] (* | item, …) FROM collection [WHERE …] [GROUP BY …]`.
pub fn parse_query(text: &str) -> Result<Query, ParseErrors> {
    let mut p = Parser::new(text, Dialect::Query)?;
    let q = p.query();
    p.finish(q)
}

/// Parses a configuration target condition or job `queryCondition`: `*`, a bare expression, or
/// `FROM collection WHERE expression`.
pub fn parse_condition(text: &str) -> Result<Condition, ParseErrors> {
    let mut p = Parser::new(text, Dialect::Condition)?;
    let c = p.condition();
    p.finish(c)
}

/// Parses a message-routing condition (a bare expression with the routing-only syntax).
///
/// An empty or blank condition is accepted, as IoT Edge accepts it, and comes back as the
/// literal `undefined` with the span `0..0` (it routes nothing).
pub fn parse_routing(text: &str) -> Result<Expr, ParseErrors> {
    let mut p = Parser::new(text, Dialect::Routing)?;
    let e = p.routing();
    p.finish(e)
}

/// Parses a bare expression in the given dialect (no `*`, `SELECT` or `FROM` form; for the
/// routing dialect, the empty text is an error here).
pub fn parse_expression(text: &str, dialect: Dialect) -> Result<Expr, ParseErrors> {
    let mut p = Parser::new(text, dialect)?;
    let e = p.standalone_expr();
    p.finish(e)
}

/// Where an infix operator binds, and what it builds.
#[derive(Clone, Copy)]
enum Infix {
    Binary(BinaryOp),
    Compare(CompareOp),
    In { negated: bool },
}

const PREC_NOT: u8 = 3;
const PREC_COMPARE: u8 = 4;
const PREC_UNARY: u8 = 8;

struct Parser<'a> {
    text: &'a str,
    tokens: Vec<Token>,
    pos: usize,
    dialect: Dialect,
    depth: usize,
    errors: Vec<ParseError>,
}

type PResult<T> = Result<T, ParseError>;

impl<'a> Parser<'a> {
    fn new(text: &'a str, dialect: Dialect) -> Result<Parser<'a>, ParseErrors> {
        if let Some((cut, _)) = text.char_indices().nth(MAX_CHARS) {
            let mut e = ParseError::new(ErrorKind::TooLong, Span::new(cut, text.len()));
            e.help = Some(format!(
                "the text has {} characters; the limit is {MAX_CHARS}",
                text.chars().count()
            ));
            return Err(ParseErrors(vec![e]));
        }
        let (tokens, errors) = tokenize(text, dialect);
        if !errors.is_empty() {
            return Err(ParseErrors(errors));
        }
        Ok(Parser {
            text,
            tokens,
            pos: 0,
            dialect,
            depth: 0,
            errors: Vec::new(),
        })
    }

    fn finish<T>(self, result: PResult<T>) -> Result<T, ParseErrors> {
        let mut errors = self.errors;
        match result {
            Ok(v) if errors.is_empty() => Ok(v),
            Ok(_) => Err(ParseErrors(errors)),
            Err(e) => {
                errors.push(e);
                errors.sort_by_key(|e| (e.span.start, e.span.end));
                Err(ParseErrors(errors))
            }
        }
    }

    // -----------------------------------------------------------------------------------------
    // Token access
    // -----------------------------------------------------------------------------------------

    fn peek(&self) -> &Token {
        &self.tokens[self.pos.min(self.tokens.len() - 1)]
    }

    fn peek_at(&self, n: usize) -> &TokenKind {
        &self.tokens[(self.pos + n).min(self.tokens.len() - 1)].kind
    }

    fn kind(&self) -> &TokenKind {
        &self.peek().kind
    }

    fn span(&self) -> Span {
        self.peek().span
    }

    fn bump(&mut self) -> Token {
        let t = self.peek().clone();
        if self.pos < self.tokens.len() - 1 {
            self.pos += 1;
        }
        t
    }

    fn at_kw(&self, k: Keyword) -> bool {
        *self.kind() == TokenKind::Keyword(k)
    }

    fn at_eof(&self) -> bool {
        *self.kind() == TokenKind::Eof
    }

    fn prev_end(&self) -> usize {
        if self.pos == 0 {
            0
        } else {
            self.tokens[self.pos - 1].span.end as usize
        }
    }

    /// How the current token is shown in messages: `'WHERE'` or `end of query`.
    fn found(&self) -> String {
        let t = self.peek();
        if t.kind == TokenKind::Eof {
            "end of query".to_string()
        } else {
            format!("'{}'", truncate(&self.text[t.span.range()]))
        }
    }

    /// An "expected …, found …" error at the current token.
    fn unexpected(&self, expected: &[&str]) -> ParseError {
        let kind = if self.at_eof() {
            ErrorKind::UnexpectedEnd
        } else {
            ErrorKind::UnexpectedToken
        };
        let mut e = ParseError::new(kind, self.span());
        e.expected = expected.iter().map(|s| s.to_string()).collect();
        e.found = Some(self.found());
        e.help = self.help_for_current();
        e
    }

    /// A hint for the current (unexpected) token, if one applies everywhere.
    fn help_for_current(&self) -> Option<String> {
        let routing = self.dialect == Dialect::Routing;
        let s = match self.kind() {
            TokenKind::AndAnd if !routing => "use AND",
            TokenKind::OrOr if !routing => "use OR",
            TokenKind::EqEq if !routing => "use = to compare",
            TokenKind::Coalesce if !routing => "`??` is only available in routing conditions",
            TokenKind::LBrace if !routing => {
                "braces are only available in routing conditions; write the value itself"
            }
            TokenKind::Semicolon => "remove the `;`: a query is a single statement",
            TokenKind::Keyword(_) if *self.peek_at(1) == TokenKind::Dot => {
                return Some(format!(
                    "write [[{}]] to use a reserved word as a name",
                    &self.text[self.span().range()]
                ));
            }
            _ => return None,
        };
        Some(s.to_string())
    }

    fn expect(&mut self, kind: TokenKind, what: &str) -> PResult<Token> {
        if *self.kind() == kind {
            Ok(self.bump())
        } else {
            Err(self.unexpected(&[what]))
        }
    }

    fn enter(&mut self) -> PResult<()> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            let mut e = ParseError::new(ErrorKind::TooDeep, self.span());
            e.help = Some(format!(
                "at most {MAX_DEPTH} levels of parentheses, NOT, signs, calls and arrays are allowed"
            ));
            return Err(e);
        }
        Ok(())
    }

    fn leave(&mut self) {
        self.depth -= 1;
    }

    /// Skips tokens up to (not including) one that satisfies `stop` outside any brackets.
    fn skip_until(&mut self, stop: impl Fn(&TokenKind) -> bool) {
        // An error may have left the nesting counter raised.
        self.depth = 0;
        let mut depth = 0usize;
        while !self.at_eof() {
            let k = self.kind();
            if depth == 0 && stop(k) {
                return;
            }
            match k {
                TokenKind::LParen | TokenKind::LBracket | TokenKind::LBrace => depth += 1,
                TokenKind::RParen | TokenKind::RBracket | TokenKind::RBrace => {
                    depth = depth.saturating_sub(1)
                }
                _ => {}
            }
            self.bump();
        }
    }

    // -----------------------------------------------------------------------------------------
    // Statements
    // -----------------------------------------------------------------------------------------

    fn query(&mut self) -> PResult<Query> {
        let start = self.span();
        if !self.at_kw(Keyword::Select) {
            let mut e = self.unexpected(&["SELECT"]);
            if self.at_kw(Keyword::From) {
                e.help = Some("a query starts with SELECT: SELECT * FROM devices …".into());
            }
            return Err(e);
        }
        let select_tok = self.bump();
        let top = if self.at_kw(Keyword::Top) {
            match self.top() {
                Ok(t) => Some(t),
                Err(e) => {
                    self.errors.push(e);
                    self.skip_until(|k| {
                        matches!(k, TokenKind::Star | TokenKind::Keyword(Keyword::From))
                            || starts_operand(k)
                    });
                    None
                }
            }
        } else {
            None
        };
        let list = self.select_list();
        let select = Select {
            top,
            list,
            span: select_tok
                .span
                .to(Span::new(self.prev_end(), self.prev_end())),
        };

        if !self.at_kw(Keyword::From) {
            let mut e = self.unexpected(&["','", "FROM"]);
            if starts_operand(self.kind()) && e.help.is_none() {
                e.help = Some("separate select items with commas".into());
            }
            self.errors.push(e);
            self.skip_until(|k| *k == TokenKind::Keyword(Keyword::From));
            if self.at_eof() {
                return Err(self
                    .errors
                    .pop()
                    .unwrap_or_else(|| self.unexpected(&["FROM"])));
            }
        }
        self.bump();
        let from = match self.collection() {
            Ok(f) => f,
            Err(e) => {
                self.errors.push(e);
                self.skip_until(|k| {
                    matches!(
                        k,
                        TokenKind::Keyword(Keyword::Where | Keyword::Group | Keyword::Select)
                    )
                });
                From {
                    collection: Collection::Devices,
                    span: Span::default(),
                }
            }
        };
        if matches!(self.kind(), TokenKind::Ident(_) | TokenKind::QuotedIdent(_))
            && !is_unsupported_clause(self.kind())
        {
            let mut e = self.unexpected(&["WHERE", "GROUP BY", "end of query"]);
            e.help = Some("aliases after the collection are not supported".into());
            self.errors.push(e);
            self.bump();
        }

        let mut filter = None;
        if self.at_kw(Keyword::Where) {
            self.bump();
            match self.top_expr() {
                Ok(e) => filter = Some(e),
                Err(e) => {
                    self.errors.push(e);
                    self.skip_until(|k| *k == TokenKind::Keyword(Keyword::Group));
                }
            }
        }

        let mut group_by = Vec::new();
        if self.at_kw(Keyword::Group) {
            self.bump();
            self.expect(TokenKind::Keyword(Keyword::By), "BY")?;
            loop {
                group_by.push(self.path_only()?);
                if *self.kind() == TokenKind::Comma {
                    self.bump();
                } else {
                    break;
                }
            }
        }

        let expected: &[&str] = match (filter.is_some(), group_by.is_empty()) {
            (_, false) => &["','", "end of query"],
            (true, true) => &["AND", "OR", "GROUP BY", "end of query"],
            (false, true) => &["WHERE", "GROUP BY", "end of query"],
        };
        self.end(expected)?;
        Ok(Query {
            select,
            from,
            filter,
            group_by,
            span: start.to(Span::new(self.prev_end(), self.prev_end())),
        })
    }

    fn top(&mut self) -> PResult<Top> {
        let top_tok = self.bump();
        let parenthesized = *self.kind() == TokenKind::LParen;
        if parenthesized {
            self.bump();
        }
        let t = self.peek().clone();
        let count = match &t.kind {
            TokenKind::Number(n) => parse_integer(&n.text).filter(|c| *c > 0),
            _ => None,
        };
        let Some(count) = count else {
            let is_number_like = matches!(
                t.kind,
                TokenKind::Number(_) | TokenKind::Minus | TokenKind::Plus
            );
            if !is_number_like {
                let mut e = self.unexpected(&["a row count"]);
                e.help = Some("write TOP 10 or TOP (10)".into());
                return Err(e);
            }
            let mut e = ParseError::new(ErrorKind::InvalidTop, t.span);
            e.found = Some(self.found());
            e.expected = vec!["a positive integer".into()];
            e.help = Some(format!("TOP takes a whole number from 1 to {}", u64::MAX));
            return Err(e);
        };
        self.bump();
        let mut end = t.span;
        if parenthesized {
            end = self.expect(TokenKind::RParen, "')'")?.span;
        }
        Ok(Top {
            count,
            parenthesized,
            span: top_tok.span.to(end),
        })
    }

    fn select_list(&mut self) -> SelectList {
        if *self.kind() == TokenKind::Star {
            let t = self.bump();
            return SelectList::Star(t.span);
        }
        let mut items = Vec::new();
        loop {
            if self.at_kw(Keyword::From) || self.at_eof() {
                let mut e = self.unexpected(&["'*'", "a select item"]);
                if self.at_kw(Keyword::From) && items.is_empty() {
                    e.help = Some("select everything with SELECT * FROM …".into());
                }
                self.errors.push(e);
                break;
            }
            match self.select_item() {
                Ok(item) => items.push(item),
                Err(e) => {
                    self.errors.push(e);
                    self.skip_until(|k| {
                        matches!(k, TokenKind::Comma | TokenKind::Keyword(Keyword::From))
                    });
                }
            }
            if *self.kind() == TokenKind::Comma {
                self.bump();
            } else {
                break;
            }
        }
        SelectList::Items(items)
    }

    fn select_item(&mut self) -> PResult<SelectItem> {
        if *self.kind() == TokenKind::Star {
            let mut e = self.unexpected(&["a select item"]);
            e.help = Some("`*` must be the only item: SELECT * FROM …".into());
            return Err(e);
        }
        let expr = self.top_expr()?;
        let mut span = expr.span();
        let alias = if self.at_kw(Keyword::As) {
            self.bump();
            let a = self.alias()?;
            span = span.to(a.span);
            Some(a)
        } else {
            None
        };
        Ok(SelectItem { expr, alias, span })
    }

    fn alias(&mut self) -> PResult<Ident> {
        let t = self.peek().clone();
        match t.kind {
            TokenKind::Ident(name) => {
                self.bump();
                Ok(Ident {
                    name,
                    quoted: false,
                    span: t.span,
                })
            }
            TokenKind::QuotedIdent(name) => {
                self.bump();
                Ok(Ident {
                    name,
                    quoted: true,
                    span: t.span,
                })
            }
            TokenKind::Keyword(_) => {
                let mut e = self.unexpected(&["an alias"]);
                e.help = Some(format!(
                    "write [[{}]] to use a reserved word as a name",
                    &self.text[t.span.range()]
                ));
                Err(e)
            }
            _ => Err(self.unexpected(&["an alias"])),
        }
    }

    fn collection(&mut self) -> PResult<From> {
        let first = self.peek().clone();
        let TokenKind::Ident(name) = &first.kind else {
            let mut e = self.unexpected(&["devices", "devices.modules", "devices.jobs"]);
            if self.at_eof() {
                e.help = Some("name a collection: FROM devices".into());
            }
            return Err(e);
        };
        self.bump();
        let lower = name.to_ascii_lowercase();
        if lower != "devices" {
            let mut e = ParseError::new(ErrorKind::UnknownCollection, first.span);
            e.found = Some(format!("'{}'", truncate(name)));
            e.expected = vec![
                "devices".into(),
                "devices.modules".into(),
                "devices.jobs".into(),
            ];
            e.help = match lower.as_str() {
                "modules" => Some("did you mean `devices.modules`?".into()),
                "jobs" => Some("did you mean `devices.jobs`?".into()),
                "device" => Some("did you mean `devices`?".into()),
                _ => None,
            };
            return Err(e);
        }
        if *self.kind() != TokenKind::Dot {
            return Ok(From {
                collection: Collection::Devices,
                span: first.span,
            });
        }
        self.bump();
        let second = self.peek().clone();
        let collection = match &second.kind {
            TokenKind::Ident(n) if n.eq_ignore_ascii_case("modules") => Some(Collection::Modules),
            TokenKind::Ident(n) if n.eq_ignore_ascii_case("jobs") => Some(Collection::Jobs),
            _ => None,
        };
        match collection {
            Some(collection) => {
                self.bump();
                Ok(From {
                    collection,
                    span: first.span.to(second.span),
                })
            }
            None => {
                let span = if second.kind == TokenKind::Eof {
                    first.span
                } else {
                    first.span.to(second.span)
                };
                let mut e = ParseError::new(ErrorKind::UnknownCollection, span);
                e.found = Some(format!("'{}'", truncate(&self.text[span.range()])));
                e.expected = vec!["devices.modules".into(), "devices.jobs".into()];
                e.help =
                    Some("the collections are devices, devices.modules and devices.jobs".into());
                Err(e)
            }
        }
    }

    fn condition(&mut self) -> PResult<Condition> {
        if self.at_eof() {
            return Err(self.unexpected(&["'*'", "FROM", "an expression"]));
        }
        if *self.kind() == TokenKind::Star {
            let t = self.bump();
            self.end(&["end of condition"])?;
            return Ok(Condition::All(t.span));
        }
        if self.at_kw(Keyword::From) {
            let from_tok = self.bump();
            let from = self.collection()?;
            self.expect(TokenKind::Keyword(Keyword::Where), "WHERE")?;
            let filter = self.top_expr()?;
            self.end(&["AND", "OR", "end of condition"])?;
            let span = from_tok.span.to(filter.span());
            return Ok(Condition::From { from, filter, span });
        }
        if self.at_kw(Keyword::Select) {
            let mut e = self.unexpected(&["'*'", "FROM", "an expression"]);
            e.help = Some("a condition has no SELECT: write the WHERE part only".into());
            return Err(e);
        }
        let e = self.top_expr()?;
        self.end(&["AND", "OR", "end of condition"])?;
        Ok(Condition::Expr(e))
    }

    fn routing(&mut self) -> PResult<Expr> {
        if self.at_eof() {
            return Ok(Expr::Literal(Literal {
                value: LiteralValue::Undefined,
                span: Span::new(0, 0),
            }));
        }
        self.standalone_expr()
    }

    fn standalone_expr(&mut self) -> PResult<Expr> {
        let e = self.top_expr()?;
        self.end(&["AND", "OR", "end of condition"])?;
        Ok(e)
    }

    /// Requires the end of the text, explaining the most likely mistakes otherwise.
    fn end(&mut self, expected: &[&str]) -> PResult<()> {
        if self.at_eof() {
            return Ok(());
        }
        let mut e = self.unexpected(expected);
        match self.kind() {
            TokenKind::RParen => {
                e.kind = ErrorKind::UnbalancedParenthesis;
                e.help = Some("this `)` has no matching `(`".into());
            }
            TokenKind::Ident(word) if word.eq_ignore_ascii_case("order") => {
                e.help = Some("ORDER BY is not supported".into());
            }
            TokenKind::Ident(word) if word.eq_ignore_ascii_case("having") => {
                e.help = Some("HAVING is not supported".into());
            }
            TokenKind::Ident(word) if word.eq_ignore_ascii_case("limit") => {
                e.help = Some("write SELECT TOP n … to limit the rows".into());
            }
            k if e.help.is_none()
                && (starts_operand(k) || *k == TokenKind::Keyword(Keyword::Not)) =>
            {
                e.help = Some("missing AND/OR?".into());
            }
            _ => {}
        }
        Err(e)
    }

    // -----------------------------------------------------------------------------------------
    // Expressions
    // -----------------------------------------------------------------------------------------

    fn expr(&mut self) -> PResult<Expr> {
        self.binary(0)
    }

    /// A whole expression (a select item, a `WHERE`, a condition), height-checked.
    fn top_expr(&mut self) -> PResult<Expr> {
        let e = self.binary(0)?;
        if height_exceeds(&e, MAX_HEIGHT) {
            let mut err = ParseError::new(ErrorKind::TooDeep, e.span());
            err.help = Some(format!(
                "the expression is more than {MAX_HEIGHT} operators deep; split long operator chains with parentheses or use IN"
            ));
            return Err(err);
        }
        Ok(e)
    }

    /// The infix operator at the current token, with its precedence.
    fn infix(&self) -> PResult<Option<(Infix, u8)>> {
        let routing = self.dialect == Dialect::Routing;
        let op = match self.kind() {
            TokenKind::Keyword(Keyword::Or) => Infix::Binary(BinaryOp::Or),
            TokenKind::Keyword(Keyword::And) => Infix::Binary(BinaryOp::And),
            TokenKind::AndAnd if routing => Infix::Binary(BinaryOp::And),
            TokenKind::OrOr if routing => Infix::Binary(BinaryOp::Concat),
            TokenKind::Coalesce if routing => Infix::Binary(BinaryOp::Coalesce),
            TokenKind::Plus => Infix::Binary(BinaryOp::Add),
            TokenKind::Minus => Infix::Binary(BinaryOp::Sub),
            TokenKind::Star => Infix::Binary(BinaryOp::Mul),
            TokenKind::Slash => Infix::Binary(BinaryOp::Div),
            TokenKind::Percent => Infix::Binary(BinaryOp::Mod),
            TokenKind::Eq => Infix::Compare(CompareOp::Eq),
            TokenKind::EqEq if routing => Infix::Compare(CompareOp::Eq),
            TokenKind::Ne => Infix::Compare(CompareOp::Ne),
            TokenKind::Lt => Infix::Compare(CompareOp::Lt),
            TokenKind::Le => Infix::Compare(CompareOp::Le),
            TokenKind::Gt => Infix::Compare(CompareOp::Gt),
            TokenKind::Ge => Infix::Compare(CompareOp::Ge),
            TokenKind::Keyword(k @ (Keyword::In | Keyword::Nin)) => {
                if routing {
                    let mut e = self.unexpected(&["an operator"]);
                    e.help = Some(
                        "IN and NIN are not supported in routing conditions; combine comparisons with OR"
                            .into(),
                    );
                    return Err(e);
                }
                Infix::In {
                    negated: *k == Keyword::Nin,
                }
            }
            TokenKind::AndAnd | TokenKind::OrOr | TokenKind::EqEq | TokenKind::Coalesce => {
                return Err(self.unexpected(&["an operator"]));
            }
            _ => return Ok(None),
        };
        let prec = match op {
            Infix::Binary(b) => b.precedence(),
            Infix::Compare(_) | Infix::In { .. } => PREC_COMPARE,
        };
        Ok(Some((op, prec)))
    }

    /// Precedence climbing: parses operators binding at least as tightly as `min_prec`.
    fn binary(&mut self, min_prec: u8) -> PResult<Expr> {
        let mut lhs = self.prefix(min_prec)?;
        let mut compared = false;
        while let Some((op, prec)) = self.infix()? {
            if prec < min_prec {
                break;
            }
            if prec == PREC_COMPARE && compared {
                let mut e = ParseError::new(ErrorKind::ChainedComparison, self.span());
                e.found = Some(self.found());
                e.help =
                    Some("comparisons do not chain: join them with AND, or add parentheses".into());
                return Err(e);
            }
            let op_tok = self.bump();
            match op {
                Infix::Binary(op) => {
                    let right = self.binary(prec + 1)?;
                    let span = lhs.span().to(right.span());
                    lhs = Expr::Binary(Binary {
                        left: Box::new(lhs),
                        op,
                        right: Box::new(right),
                        span,
                    });
                    compared = false;
                }
                Infix::Compare(op) => {
                    let right = self.binary(PREC_COMPARE + 1)?;
                    let span = lhs.span().to(right.span());
                    lhs = Expr::Compare(Compare {
                        left: Box::new(lhs),
                        op,
                        right: Box::new(right),
                        span,
                    });
                    compared = true;
                }
                Infix::In { negated } => {
                    let list = self.in_list(&op_tok)?;
                    let span = lhs.span().to(list.span);
                    lhs = Expr::In(In {
                        expr: Box::new(lhs),
                        negated,
                        list,
                        span,
                    });
                    compared = true;
                }
            }
        }
        Ok(lhs)
    }

    fn in_list(&mut self, op_tok: &Token) -> PResult<ArrayLit> {
        match self.kind() {
            TokenKind::LBracket => self.array(),
            TokenKind::LParen => {
                let start = self.span();
                let mut end = start;
                let mut depth = 0usize;
                for t in &self.tokens[self.pos..] {
                    match t.kind {
                        TokenKind::LParen => depth += 1,
                        TokenKind::RParen => {
                            depth -= 1;
                            if depth == 0 {
                                end = t.span;
                                break;
                            }
                        }
                        _ => {}
                    }
                }
                let mut e = self.unexpected(&["'['"]);
                e.span = start.to(end);
                e.help = Some("lists use square brackets: IN [1, 2]".into());
                Err(e)
            }
            _ => {
                let mut e = self.unexpected(&["'['"]);
                e.help = Some(format!(
                    "{} takes a list in square brackets: {} ['a', 'b']",
                    &self.text[op_tok.span.range()],
                    &self.text[op_tok.span.range()]
                ));
                Err(e)
            }
        }
    }

    /// An operand, with any prefix `NOT` / sign.
    fn prefix(&mut self, min_prec: u8) -> PResult<Expr> {
        match self.kind() {
            TokenKind::Keyword(Keyword::Not) => {
                if min_prec > PREC_NOT {
                    let mut e = self.unexpected(&["an expression"]);
                    e.help = Some("NOT binds looser than comparisons: write (NOT …)".into());
                    return Err(e);
                }
                self.enter()?;
                let not_tok = self.bump();
                let operand = self.binary(PREC_NOT)?;
                self.leave();
                let span = not_tok.span.to(operand.span());
                Ok(Expr::Not(Not {
                    expr: Box::new(operand),
                    span,
                }))
            }
            TokenKind::Minus | TokenKind::Plus => {
                self.enter()?;
                let sign = self.bump();
                let op = if sign.kind == TokenKind::Minus {
                    UnaryOp::Neg
                } else {
                    UnaryOp::Plus
                };
                let operand = self.prefix(PREC_UNARY)?;
                self.leave();
                let span = sign.span.to(operand.span());
                Ok(Expr::Unary(Unary {
                    op,
                    expr: Box::new(operand),
                    span,
                }))
            }
            _ => self.primary(),
        }
    }

    fn primary(&mut self) -> PResult<Expr> {
        let t = self.peek().clone();
        let literal = |value| {
            Ok(Expr::Literal(Literal {
                value,
                span: t.span,
            }))
        };
        match &t.kind {
            TokenKind::String(s) => {
                self.bump();
                literal(LiteralValue::String(s.clone()))
            }
            TokenKind::Number(n) => {
                self.bump();
                literal(LiteralValue::Number(n.clone()))
            }
            TokenKind::Keyword(Keyword::True) if *self.peek_at(1) != TokenKind::Dot => {
                self.bump();
                literal(LiteralValue::Bool(true))
            }
            TokenKind::Keyword(Keyword::False) if *self.peek_at(1) != TokenKind::Dot => {
                self.bump();
                literal(LiteralValue::Bool(false))
            }
            TokenKind::Keyword(Keyword::Null) if *self.peek_at(1) != TokenKind::Dot => {
                self.bump();
                literal(LiteralValue::Null)
            }
            TokenKind::Keyword(Keyword::Undefined) if *self.peek_at(1) != TokenKind::Dot => {
                self.bump();
                literal(LiteralValue::Undefined)
            }
            TokenKind::Ident(_) if *self.peek_at(1) == TokenKind::LParen => self.call(),
            TokenKind::Ident(_) | TokenKind::DollarIdent(_) | TokenKind::QuotedIdent(_) => {
                Ok(Expr::Path(self.path()?))
            }
            TokenKind::LBracket => {
                if self.dialect == Dialect::Routing {
                    let mut e = self.unexpected(&["an expression"]);
                    e.help = Some("array literals are not supported in routing conditions".into());
                    return Err(e);
                }
                Ok(Expr::Array(self.array()?))
            }
            TokenKind::LParen => self.nested(),
            TokenKind::LBrace if self.dialect == Dialect::Routing => self.braced(),
            _ => Err(self.unexpected(&["an expression"])),
        }
    }

    fn nested(&mut self) -> PResult<Expr> {
        self.enter()?;
        let open = self.bump();
        let inner = self.expr()?;
        if *self.kind() != TokenKind::RParen {
            let mut e = self.unexpected(&["')'"]);
            if self.at_eof() {
                e.kind = ErrorKind::UnbalancedParenthesis;
                e.span = open.span;
                e.help = Some("this `(` is never closed".into());
            } else if e.help.is_none() && (starts_operand(self.kind()) || self.at_kw(Keyword::Not))
            {
                e.help = Some("missing AND/OR?".into());
            }
            return Err(e);
        }
        let close = self.bump();
        self.leave();
        Ok(Expr::Nested(Nested {
            expr: Box::new(inner),
            span: open.span.to(close.span),
        }))
    }

    fn call(&mut self) -> PResult<Expr> {
        self.enter()?;
        let name_tok = self.bump();
        let TokenKind::Ident(name) = name_tok.kind else {
            return Err(self.unexpected(&["a function name"]));
        };
        let open = self.bump();
        let mut args = Vec::new();
        if *self.kind() != TokenKind::RParen {
            loop {
                args.push(self.expr()?);
                match self.kind() {
                    TokenKind::Comma => {
                        self.bump();
                    }
                    TokenKind::RParen => break,
                    _ => {
                        let mut e = self.unexpected(&["','", "')'"]);
                        if self.at_eof() {
                            e.kind = ErrorKind::UnbalancedParenthesis;
                            e.span = open.span;
                            e.help = Some(format!("the call to {name} is never closed"));
                        }
                        return Err(e);
                    }
                }
            }
        }
        let close = self.bump();
        self.leave();
        Ok(Expr::Call(Call {
            name: Ident {
                name,
                quoted: false,
                span: name_tok.span,
            },
            args,
            span: name_tok.span.to(close.span),
        }))
    }

    fn array(&mut self) -> PResult<ArrayLit> {
        self.enter()?;
        let open = self.bump();
        let mut items = Vec::new();
        if *self.kind() != TokenKind::RBracket {
            loop {
                items.push(self.expr()?);
                match self.kind() {
                    TokenKind::Comma => {
                        self.bump();
                    }
                    TokenKind::RBracket => break,
                    _ => return Err(self.unexpected(&["','", "']'"])),
                }
            }
        }
        let close = self.bump();
        self.leave();
        Ok(ArrayLit {
            items,
            span: open.span.to(close.span),
        })
    }

    fn braced(&mut self) -> PResult<Expr> {
        let open = self.bump();
        let first = self.span();
        let mut last = None;
        while matches!(
            self.kind(),
            TokenKind::Ident(_)
                | TokenKind::DollarIdent(_)
                | TokenKind::QuotedIdent(_)
                | TokenKind::Keyword(_)
                | TokenKind::Dot
                | TokenKind::LBracket
                | TokenKind::RBracket
                | TokenKind::Number(_)
        ) {
            last = Some(self.bump().span);
        }
        let Some(last) = last else {
            return Err(self.unexpected(&["a property name"]));
        };
        let close = self.expect(TokenKind::RBrace, "'}'")?;
        let name = self.text[first.start as usize..last.end as usize].to_string();
        Ok(Expr::Braced(Braced {
            name,
            span: open.span.to(close.span),
        }))
    }

    /// A path where only a path may stand (`GROUP BY`).
    fn path_only(&mut self) -> PResult<Path> {
        match self.kind() {
            TokenKind::Ident(_) | TokenKind::DollarIdent(_) | TokenKind::QuotedIdent(_) => {
                let p = self.path()?;
                if *self.kind() == TokenKind::LParen {
                    let mut e = self.unexpected(&["','", "end of query"]);
                    e.help = Some("GROUP BY takes property paths, not function calls".into());
                    return Err(e);
                }
                Ok(p)
            }
            _ => Err(self.unexpected(&["a property path"])),
        }
    }

    fn path(&mut self) -> PResult<Path> {
        let first = self.bump();
        let mut segments = vec![match first.kind {
            TokenKind::Ident(name) | TokenKind::DollarIdent(name) => Segment::Name {
                name,
                quoted: false,
                span: first.span,
            },
            TokenKind::QuotedIdent(name) => Segment::Name {
                name,
                quoted: true,
                span: first.span,
            },
            _ => {
                self.pos -= 1;
                return Err(self.unexpected(&["a property path"]));
            }
        }];
        loop {
            match self.kind() {
                TokenKind::Dot => {
                    self.bump();
                    let t = self.peek().clone();
                    let seg = match t.kind {
                        TokenKind::Ident(name) | TokenKind::DollarIdent(name) => Segment::Name {
                            name,
                            quoted: false,
                            span: t.span,
                        },
                        TokenKind::QuotedIdent(name) => Segment::Name {
                            name,
                            quoted: true,
                            span: t.span,
                        },
                        TokenKind::Keyword(_) => Segment::Name {
                            name: self.text[t.span.range()].to_string(),
                            quoted: false,
                            span: t.span,
                        },
                        _ => {
                            let mut e = self.unexpected(&["a property name after '.'"]);
                            if matches!(t.kind, TokenKind::LBracket) {
                                e.help = Some("write an index without a dot: a[0]".into());
                            }
                            return Err(e);
                        }
                    };
                    self.bump();
                    segments.push(seg);
                }
                TokenKind::LBracket => {
                    let open = self.bump();
                    let t = self.peek().clone();
                    let index = match &t.kind {
                        TokenKind::Number(n) if n.text.bytes().all(|b| b.is_ascii_digit()) => {
                            n.text.parse::<u64>().ok()
                        }
                        _ => None,
                    };
                    let Some(index) = index else {
                        let mut e = self.unexpected(&["an array index"]);
                        e.help = Some("index arrays with a whole number: a[0]".into());
                        return Err(e);
                    };
                    self.bump();
                    let close = self.expect(TokenKind::RBracket, "']'")?;
                    segments.push(Segment::Index {
                        index,
                        span: open.span.to(close.span),
                    });
                }
                _ => break,
            }
        }
        let span = segments[0]
            .span()
            .to(segments.last().map(Segment::span).unwrap_or_default());
        Ok(Path { segments, span })
    }
}

/// Whether the tree `e` is more than `limit` nodes tall (walked without recursion).
fn height_exceeds(e: &Expr, limit: usize) -> bool {
    let mut stack: Vec<(&Expr, usize)> = vec![(e, 1)];
    while let Some((e, h)) = stack.pop() {
        if h > limit {
            return true;
        }
        match e {
            Expr::Literal(_) | Expr::Path(_) | Expr::Braced(_) => {}
            Expr::Array(a) => stack.extend(a.items.iter().map(|i| (i, h + 1))),
            Expr::Nested(n) => stack.push((&n.expr, h + 1)),
            Expr::Unary(u) => stack.push((&u.expr, h + 1)),
            Expr::Not(n) => stack.push((&n.expr, h + 1)),
            Expr::Binary(b) => {
                stack.push((&b.left, h + 1));
                stack.push((&b.right, h + 1));
            }
            Expr::Compare(c) => {
                stack.push((&c.left, h + 1));
                stack.push((&c.right, h + 1));
            }
            Expr::In(i) => {
                stack.push((&i.expr, h + 1));
                stack.extend(i.list.items.iter().map(|x| (x, h + 2)));
            }
            Expr::Call(c) => stack.extend(c.args.iter().map(|a| (a, h + 1))),
        }
    }
    false
}

/// Whether a token can begin an operand (used to guess a missing operator).
fn starts_operand(k: &TokenKind) -> bool {
    matches!(
        k,
        TokenKind::Ident(_)
            | TokenKind::DollarIdent(_)
            | TokenKind::QuotedIdent(_)
            | TokenKind::String(_)
            | TokenKind::Number(_)
            | TokenKind::LParen
            | TokenKind::Keyword(
                Keyword::True | Keyword::False | Keyword::Null | Keyword::Undefined
            )
    )
}

fn is_unsupported_clause(k: &TokenKind) -> bool {
    matches!(k, TokenKind::Ident(w) if ["order", "having", "limit"].iter().any(|c| w.eq_ignore_ascii_case(c)))
}

/// A whole number written in decimal or hexadecimal that fits a `u64`.
fn parse_integer(text: &str) -> Option<u64> {
    if let Some(hex) = text.strip_prefix("0x").or_else(|| text.strip_prefix("0X")) {
        u64::from_str_radix(hex, 16).ok()
    } else if text.bytes().all(|b| b.is_ascii_digit()) {
        text.parse().ok()
    } else {
        None
    }
}
