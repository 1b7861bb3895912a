//! The lexer: query text to tokens with byte spans.
//!
//! Token rules (see §1.2 of the language specification):
//!
//! * Whitespace and `/* … */` comments separate tokens and are otherwise dropped.
//! * Keywords (`SELECT`, `TOP`, `FROM`, `WHERE`, `GROUP`, `BY`, `AS`, `AND`, `OR`, `NOT`, `IN`,
//!   `NIN`, `NULL`, `UNDEFINED`, `TRUE`, `FALSE`) are recognised in any case and become
//!   [`TokenKind::Keyword`] tokens; the parser still accepts them as path segments after a `.`.
//! * Identifiers start with a letter or `_` and continue with letters, digits and `_`.
//!   **An identifier also continues through a `-`** when the `-` directly follows identifier
//!   characters and is directly followed by a letter, digit or `_` (no whitespace on either side).
//!   Real IoT Hub end-to-end tests send paths such as
//!   `properties.desired.KeyQuery0b9ef2c4-5d6e-4f70-8a91-b2c3d4e5f607` and aliases spelled the same
//!   way, and the service accepts them (Microsoft's mock grammar reads identifiers greedily too).
//!   So `a-b` is one identifier and `a - b` is a subtraction: write arithmetic with spaces.
//! * `$`-identifiers: `$` followed by identifier characters (`$metadata`, `$version`). In the
//!   routing dialect a `$` name is read like the IoT Edge routing engine reads it: greedily, up to
//!   whitespace or one of `( ) < > @ , ; : \ " / ? = { }`, so `$body.Welcome!.he` is a path with
//!   the segments `$body`, `Welcome!` and `he`, and `$body.a[0]` ends with an index.
//! * `[[…]]` identifiers: any text up to the first `]]`; it must not be empty.
//! * Strings in `'…'` or `"…"` with the escapes `\'`, `\"`, `\\` and `\uXXXX` (exactly four hex
//!   digits; surrogate pairs combine); inside single quotes `''` stands for one `'`.
//! * Numbers: `12`, `1.5`, `1e3`, `1.5E-2`, `0x1F`. A number directly followed by a letter, digit
//!   or `_` (`12abc`, `0x`, `1e`) is an invalid number. There are no negative literals: `-1` is a
//!   unary minus applied to `1`.
//! * Operators and punctuation: `= != <> < <= > >= + - * / % ( ) [ ] , . ;`, and the
//!   routing-only `&& || == ?? { }` (lexed everywhere so the parser can explain them).
//!
//! The lexer never stops at an error: it records it, skips the offending text and goes on, so
//! every lexical error in the text is reported at once.

use crate::ast::{Number, Span};
use crate::error::{ErrorKind, ParseError};
use crate::parser::Dialect;
use nom::branch::alt;
use nom::bytes::complete::{tag, tag_no_case, take_until, take_while, take_while1};
use nom::character::complete::{char, digit1, hex_digit1, one_of, satisfy};
use nom::combinator::{opt, recognize};
use nom::multi::many0;
use nom::{IResult, Parser};

/// A reserved word.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Keyword {
    /// `SELECT`
    Select,
    /// `TOP`
    Top,
    /// `FROM`
    From,
    /// `WHERE`
    Where,
    /// `GROUP`
    Group,
    /// `BY`
    By,
    /// `AS`
    As,
    /// `AND`
    And,
    /// `OR`
    Or,
    /// `NOT`
    Not,
    /// `IN`
    In,
    /// `NIN`
    Nin,
    /// `NULL`
    Null,
    /// `UNDEFINED`
    Undefined,
    /// `TRUE`
    True,
    /// `FALSE`
    False,
}

impl Keyword {
    /// The keyword spelled `word` (in any case), if there is one.
    pub fn from_word(word: &str) -> Option<Keyword> {
        const ALL: [(&str, Keyword); 16] = [
            ("SELECT", Keyword::Select),
            ("TOP", Keyword::Top),
            ("FROM", Keyword::From),
            ("WHERE", Keyword::Where),
            ("GROUP", Keyword::Group),
            ("BY", Keyword::By),
            ("AS", Keyword::As),
            ("AND", Keyword::And),
            ("OR", Keyword::Or),
            ("NOT", Keyword::Not),
            ("IN", Keyword::In),
            ("NIN", Keyword::Nin),
            ("NULL", Keyword::Null),
            ("UNDEFINED", Keyword::Undefined),
            ("TRUE", Keyword::True),
            ("FALSE", Keyword::False),
        ];
        ALL.iter()
            .find(|(w, _)| w.eq_ignore_ascii_case(word))
            .map(|(_, k)| *k)
    }
}

/// What a token is.
#[derive(Clone, Debug, PartialEq)]
pub enum TokenKind {
    /// A keyword, in any case.
    Keyword(Keyword),
    /// A plain identifier: `deviceId`, `KeyQuery0b9e-5d6e`.
    Ident(String),
    /// A `$`-identifier, with the `$`: `$metadata`.
    DollarIdent(String),
    /// A `[[…]]` identifier; the text between the brackets.
    QuotedIdent(String),
    /// A string literal, escapes resolved.
    String(String),
    /// A number literal.
    Number(Number),
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
    /// `+`
    Plus,
    /// `-`
    Minus,
    /// `*`
    Star,
    /// `/`
    Slash,
    /// `%`
    Percent,
    /// `(`
    LParen,
    /// `)`
    RParen,
    /// `[`
    LBracket,
    /// `]`
    RBracket,
    /// `,`
    Comma,
    /// `.`
    Dot,
    /// `;`
    Semicolon,
    /// `&&` (routing: `AND`)
    AndAnd,
    /// `||` (routing: string concatenation)
    OrOr,
    /// `==` (routing: `=`)
    EqEq,
    /// `??` (routing: coalesce)
    Coalesce,
    /// `{`
    LBrace,
    /// `}`
    RBrace,
    /// The end of the text.
    Eof,
}

/// A token and where it was written.
#[derive(Clone, Debug, PartialEq)]
pub struct Token {
    /// What it is.
    pub kind: TokenKind,
    /// Its bytes in the text.
    pub span: Span,
}

/// Splits `text` into tokens (the last one is always [`TokenKind::Eof`]) and every lexical error.
pub fn tokenize(text: &str, dialect: Dialect) -> (Vec<Token>, Vec<ParseError>) {
    let mut lx = Lexer {
        text,
        pos: 0,
        tokens: Vec::new(),
        errors: Vec::new(),
        dialect,
    };
    lx.run();
    let end = text.len();
    lx.tokens.push(Token {
        kind: TokenKind::Eof,
        span: Span::new(end, end),
    });
    (lx.tokens, lx.errors)
}

type PResult<'a> = IResult<&'a str, &'a str>;

fn is_ident_start(c: char) -> bool {
    c.is_alphabetic() || c == '_'
}

fn is_ident_continue(c: char) -> bool {
    c.is_alphanumeric() || c == '_'
}

/// A plain identifier, including the `-` continuation rule.
fn identifier(i: &str) -> PResult<'_> {
    recognize((
        satisfy(is_ident_start),
        take_while(is_ident_continue),
        many0((char('-'), take_while1(is_ident_continue))),
    ))
    .parse(i)
}

/// The part of a `$`-identifier after the `$`.
fn dollar_tail(i: &str) -> PResult<'_> {
    recognize((
        take_while1(is_ident_continue),
        many0((char('-'), take_while1(is_ident_continue))),
    ))
    .parse(i)
}

/// A number: hexadecimal, or decimal with optional fraction and exponent.
fn number(i: &str) -> PResult<'_> {
    alt((
        recognize((tag_no_case("0x"), hex_digit1)),
        recognize((
            digit1,
            opt((char('.'), digit1)),
            opt((one_of("eE"), opt(one_of("+-")), digit1)),
        )),
    ))
    .parse(i)
}

fn comment(i: &str) -> PResult<'_> {
    recognize((tag("/*"), take_until("*/"), tag("*/"))).parse(i)
}

fn operator(i: &str) -> IResult<&str, TokenKind> {
    let two = alt((
        tag("!=").map(|_| TokenKind::Ne),
        tag("<>").map(|_| TokenKind::Ne),
        tag("<=").map(|_| TokenKind::Le),
        tag(">=").map(|_| TokenKind::Ge),
        tag("==").map(|_| TokenKind::EqEq),
        tag("&&").map(|_| TokenKind::AndAnd),
        tag("||").map(|_| TokenKind::OrOr),
        tag("??").map(|_| TokenKind::Coalesce),
    ));
    let one = alt((
        char('=').map(|_| TokenKind::Eq),
        char('<').map(|_| TokenKind::Lt),
        char('>').map(|_| TokenKind::Gt),
        char('+').map(|_| TokenKind::Plus),
        char('-').map(|_| TokenKind::Minus),
        char('*').map(|_| TokenKind::Star),
        char('/').map(|_| TokenKind::Slash),
        char('%').map(|_| TokenKind::Percent),
        char('(').map(|_| TokenKind::LParen),
        char(')').map(|_| TokenKind::RParen),
        char('[').map(|_| TokenKind::LBracket),
        char(']').map(|_| TokenKind::RBracket),
        char(',').map(|_| TokenKind::Comma),
        char('.').map(|_| TokenKind::Dot),
        char(';').map(|_| TokenKind::Semicolon),
        char('{').map(|_| TokenKind::LBrace),
        char('}').map(|_| TokenKind::RBrace),
    ));
    alt((two, one)).parse(i)
}

/// Characters that end a routing `$` name (besides whitespace), as in the IoT Edge grammar.
fn is_routing_path_char(c: char) -> bool {
    !c.is_whitespace() && !"()<>@,;:\\\"/?={}".contains(c)
}

/// The value of a number literal's text (`None` if it is not one).
pub fn number_value(text: &str) -> Option<f64> {
    if let Some(hex) = text.strip_prefix("0x").or_else(|| text.strip_prefix("0X")) {
        if hex.is_empty() {
            return None;
        }
        let mut v = 0f64;
        for c in hex.chars() {
            v = v * 16.0 + f64::from(c.to_digit(16)?);
        }
        Some(v)
    } else {
        if !text.starts_with(|c: char| c.is_ascii_digit()) {
            return None;
        }
        text.parse::<f64>().ok()
    }
}

struct Lexer<'a> {
    text: &'a str,
    pos: usize,
    tokens: Vec<Token>,
    errors: Vec<ParseError>,
    dialect: Dialect,
}

impl<'a> Lexer<'a> {
    fn rest(&self) -> &'a str {
        &self.text[self.pos..]
    }

    fn push(&mut self, kind: TokenKind, start: usize, end: usize) {
        self.tokens.push(Token {
            kind,
            span: Span::new(start, end),
        });
    }

    fn error(&mut self, kind: ErrorKind, start: usize, end: usize, help: Option<&str>) {
        let mut e = ParseError::new(kind, Span::new(start, end));
        e.found = Some(format!("'{}'", truncate(&self.text[start..end])));
        e.help = help.map(str::to_string);
        self.errors.push(e);
    }

    /// Byte length of the run matched by `p` at the current position, if it matches.
    fn matched(&self, p: fn(&str) -> PResult<'_>) -> Option<usize> {
        p(self.rest()).ok().map(|(_, m)| m.len())
    }

    fn run(&mut self) {
        while let Some(c) = self.rest().chars().next() {
            let start = self.pos;
            if c.is_whitespace() {
                let n = self.rest().len() - self.rest().trim_start().len();
                self.pos += n;
            } else if self.rest().starts_with("/*") {
                match self.matched(comment) {
                    Some(n) => self.pos += n,
                    None => {
                        let end = self.text.len();
                        self.error(
                            ErrorKind::UnterminatedComment,
                            start,
                            end,
                            Some("close the comment with `*/`"),
                        );
                        self.pos = end;
                    }
                }
            } else if c == '\'' || c == '"' {
                self.string(c);
            } else if c.is_ascii_digit() {
                self.number();
            } else if is_ident_start(c) {
                let n = self.matched(identifier).unwrap_or(c.len_utf8());
                let word = &self.text[start..start + n];
                let kind = match Keyword::from_word(word) {
                    Some(k) => TokenKind::Keyword(k),
                    None => TokenKind::Ident(word.to_string()),
                };
                self.pos += n;
                self.push(kind, start, self.pos);
            } else if c == '$' {
                self.dollar();
            } else if self.rest().starts_with("[[") {
                self.quoted_ident();
            } else if let Ok((rest, kind)) = operator(self.rest()) {
                self.pos = self.text.len() - rest.len();
                self.push(kind, start, self.pos);
            } else {
                self.pos += c.len_utf8();
                let help = match c {
                    '!' => Some("write `!=` for “not equal”, or NOT for negation"),
                    '&' => Some("use AND"),
                    '|' => Some("use OR"),
                    '"' | '\'' => None,
                    _ => None,
                };
                self.error(ErrorKind::InvalidCharacter, start, self.pos, help);
            }
        }
    }

    fn number(&mut self) {
        let start = self.pos;
        let n = self.matched(number).unwrap_or(1);
        self.pos += n;
        // A number glued to letters or a dangling `.` is malformed (`12abc`, `0x`, `1e`, `1.`).
        let glued = self.rest().starts_with(is_ident_continue)
            || (self.rest().starts_with('.')
                && !self.rest()[1..].starts_with(|c: char| is_ident_start(c) || c == '$'));
        if glued {
            if self.rest().starts_with('.') {
                self.pos += 1;
            }
            let extra = self.rest().len()
                - self
                    .rest()
                    .trim_start_matches(|c: char| is_ident_continue(c) || c == '.')
                    .len();
            self.pos += extra;
            self.error(ErrorKind::InvalidNumber, start, self.pos, None);
            return;
        }
        let text = &self.text[start..self.pos];
        match number_value(text) {
            Some(value) => {
                let kind = TokenKind::Number(Number {
                    value,
                    text: text.to_string(),
                });
                self.push(kind, start, self.pos);
            }
            None => self.error(ErrorKind::InvalidNumber, start, self.pos, None),
        }
    }

    fn quoted_ident(&mut self) {
        let start = self.pos;
        let body = &self.rest()[2..];
        match body.find("]]") {
            Some(0) => {
                self.pos += 4;
                self.error(
                    ErrorKind::UnterminatedIdentifier,
                    start,
                    self.pos,
                    Some("a [[…]] name must not be empty"),
                );
            }
            Some(n) => {
                let name = body[..n].to_string();
                self.pos += n + 4;
                self.push(TokenKind::QuotedIdent(name), start, self.pos);
            }
            None => {
                let end = self.text.len();
                self.error(
                    ErrorKind::UnterminatedIdentifier,
                    start,
                    end,
                    Some("close the name with `]]`"),
                );
                self.pos = end;
            }
        }
    }

    fn dollar(&mut self) {
        let start = self.pos;
        self.pos += 1;
        if self.dialect == Dialect::Routing {
            self.routing_path(start);
            return;
        }
        match self.matched(dollar_tail) {
            Some(n) => {
                self.pos += n;
                let name = self.text[start..self.pos].to_string();
                self.push(TokenKind::DollarIdent(name), start, self.pos);
            }
            None => self.error(ErrorKind::InvalidCharacter, start, self.pos, None),
        }
    }

    /// A routing `$` path, read greedily and split into name, `.`, `[`, number and `]` tokens.
    fn routing_path(&mut self, start: usize) {
        let name_len = |s: &str| {
            s.len()
                - s.trim_start_matches(|c: char| is_routing_path_char(c) && !".[]".contains(c))
                    .len()
        };
        let n = name_len(self.rest());
        if n == 0 {
            self.error(ErrorKind::InvalidCharacter, start, self.pos, None);
            return;
        }
        self.pos += n;
        let name = self.text[start..self.pos].to_string();
        self.push(TokenKind::DollarIdent(name), start, self.pos);
        loop {
            let s = self.pos;
            let rest = self.rest();
            if rest.starts_with('.') {
                self.pos += 1;
                self.push(TokenKind::Dot, s, self.pos);
                if self.rest().starts_with("[[") {
                    self.quoted_ident();
                    continue;
                }
                let n = name_len(self.rest());
                if n > 0 {
                    let name = self.rest()[..n].to_string();
                    self.pos += n;
                    self.push(TokenKind::Ident(name), s + 1, self.pos);
                }
            } else if rest.starts_with('[') && !rest.starts_with("[[") {
                self.pos += 1;
                self.push(TokenKind::LBracket, s, self.pos);
                let digits = self.rest().len()
                    - self
                        .rest()
                        .trim_start_matches(|c: char| c.is_ascii_digit())
                        .len();
                let n = name_len(self.rest());
                if digits > 0 && digits == n {
                    self.number();
                } else if n > 0 {
                    let t = self.pos;
                    let name = self.rest()[..n].to_string();
                    self.pos += n;
                    self.push(TokenKind::Ident(name), t, self.pos);
                }
                if self.rest().starts_with(']') {
                    let t = self.pos;
                    self.pos += 1;
                    self.push(TokenKind::RBracket, t, self.pos);
                }
            } else if rest.starts_with(']') {
                self.pos += 1;
                self.push(TokenKind::RBracket, s, self.pos);
            } else {
                break;
            }
        }
    }

    fn string(&mut self, quote: char) {
        let start = self.pos;
        self.pos += 1;
        let mut value = String::new();
        let mut pending_high: Option<(u32, usize)> = None;
        loop {
            let Some(c) = self.rest().chars().next() else {
                let end = self.text.len();
                self.error(
                    ErrorKind::UnterminatedString,
                    start,
                    end,
                    Some(if quote == '\'' {
                        "close the string with `'`"
                    } else {
                        "close the string with `\"`"
                    }),
                );
                return;
            };
            let at = self.pos;
            if c == quote {
                if quote == '\'' && self.rest()[1..].starts_with('\'') {
                    self.flush_surrogate(&mut pending_high);
                    value.push('\'');
                    self.pos += 2;
                    continue;
                }
                self.flush_surrogate(&mut pending_high);
                self.pos += 1;
                self.push(TokenKind::String(value), start, self.pos);
                return;
            }
            if c != '\\' {
                self.flush_surrogate(&mut pending_high);
                value.push(c);
                self.pos += c.len_utf8();
                continue;
            }
            // An escape.
            let next = self.rest()[1..].chars().next();
            match next {
                Some(e @ ('\'' | '"' | '\\')) => {
                    self.flush_surrogate(&mut pending_high);
                    value.push(e);
                    self.pos += 2;
                }
                Some('u') => {
                    let hex: String = self.rest()[2..].chars().take(4).collect();
                    if hex.len() == 4 && hex.chars().all(|h| h.is_ascii_hexdigit()) {
                        let code = u32::from_str_radix(&hex, 16).unwrap_or(0);
                        self.pos += 6;
                        match (code, pending_high.take()) {
                            (0xDC00..=0xDFFF, Some((high, _))) => {
                                let combined = 0x10000 + ((high - 0xD800) << 10) + (code - 0xDC00);
                                value.push(char::from_u32(combined).unwrap_or('\u{FFFD}'));
                            }
                            (0xD800..=0xDBFF, prev) => {
                                if let Some((_, p)) = prev {
                                    self.lone_surrogate(p);
                                }
                                pending_high = Some((code, at));
                            }
                            (0xDC00..=0xDFFF, None) => self.lone_surrogate(at),
                            (c, prev) => {
                                if let Some((_, p)) = prev {
                                    self.lone_surrogate(p);
                                }
                                value.push(char::from_u32(c).unwrap_or('\u{FFFD}'));
                            }
                        }
                    } else {
                        self.flush_surrogate(&mut pending_high);
                        let len = 2 + hex
                            .chars()
                            .take_while(|h| h.is_ascii_hexdigit())
                            .map(char::len_utf8)
                            .sum::<usize>();
                        self.pos += len;
                        self.error(
                            ErrorKind::InvalidEscape,
                            at,
                            self.pos,
                            Some("`\\u` needs exactly four hex digits: `\\u00e9`"),
                        );
                    }
                }
                Some(other) => {
                    self.flush_surrogate(&mut pending_high);
                    self.pos += 1 + other.len_utf8();
                    self.error(
                        ErrorKind::InvalidEscape,
                        at,
                        self.pos,
                        Some("the escapes are \\' \\\" \\\\ and \\uXXXX"),
                    );
                }
                None => {
                    // A backslash at the very end: the string is unterminated.
                    self.pos += 1;
                }
            }
        }
    }

    fn flush_surrogate(&mut self, pending: &mut Option<(u32, usize)>) {
        if let Some((_, at)) = pending.take() {
            self.lone_surrogate(at);
        }
    }

    fn lone_surrogate(&mut self, at: usize) {
        self.error(
            ErrorKind::InvalidEscape,
            at,
            at + 6,
            Some("a UTF-16 surrogate must come in a pair: `\\ud83d\\ude00`"),
        );
    }
}

/// `s`, cut to at most 40 characters for messages.
pub(crate) fn truncate(s: &str) -> String {
    match s.char_indices().nth(40) {
        Some((i, _)) => format!("{}…", &s[..i]),
        None => s.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kinds(text: &str, dialect: Dialect) -> Vec<TokenKind> {
        let (tokens, errors) = tokenize(text, dialect);
        assert!(errors.is_empty(), "{text:?}: {errors:?}");
        tokens.into_iter().map(|t| t.kind).collect()
    }

    fn ident(s: &str) -> TokenKind {
        TokenKind::Ident(s.to_string())
    }

    #[test]
    fn keywords_in_any_case() {
        assert_eq!(
            kinds("select Select SELECT nin", Dialect::Query),
            vec![
                TokenKind::Keyword(Keyword::Select),
                TokenKind::Keyword(Keyword::Select),
                TokenKind::Keyword(Keyword::Select),
                TokenKind::Keyword(Keyword::Nin),
                TokenKind::Eof
            ]
        );
    }

    #[test]
    fn dash_continues_identifiers_only_when_glued() {
        assert_eq!(
            kinds("a-b", Dialect::Query),
            vec![ident("a-b"), TokenKind::Eof]
        );
        assert_eq!(
            kinds("a - b", Dialect::Query),
            vec![ident("a"), TokenKind::Minus, ident("b"), TokenKind::Eof]
        );
        assert_eq!(
            kinds("a -b", Dialect::Query),
            vec![ident("a"), TokenKind::Minus, ident("b"), TokenKind::Eof]
        );
        assert_eq!(
            kinds("a- b", Dialect::Query),
            vec![ident("a"), TokenKind::Minus, ident("b"), TokenKind::Eof]
        );
        assert_eq!(
            kinds("a--b", Dialect::Query),
            vec![
                ident("a"),
                TokenKind::Minus,
                TokenKind::Minus,
                ident("b"),
                TokenKind::Eof
            ]
        );
        assert_eq!(
            kinds("x-1", Dialect::Query),
            vec![ident("x-1"), TokenKind::Eof]
        );
        assert_eq!(
            kinds("1-x", Dialect::Query)[1..3],
            [TokenKind::Minus, ident("x")]
        );
        assert_eq!(
            kinds("$a-b", Dialect::Query),
            vec![TokenKind::DollarIdent("$a-b".into()), TokenKind::Eof]
        );
    }

    #[test]
    fn spans_are_bytes() {
        let (tokens, _) = tokenize("é = 'ü'", Dialect::Query);
        let spans: Vec<_> = tokens.iter().map(|t| t.span.range()).collect();
        assert_eq!(spans, vec![0..2, 3..4, 5..9, 9..9]);
    }

    #[test]
    fn strings() {
        let s = |text: &str| match &kinds(text, Dialect::Query)[0] {
            TokenKind::String(s) => s.clone(),
            other => panic!("{other:?}"),
        };
        assert_eq!(s(r#"'a\'b\"c\\d'"#), "a'b\"c\\d");
        assert_eq!(s(r#""a\'b\"c""#), "a'b\"c");
        assert_eq!(s("'it''s'"), "it's");
        assert_eq!(s(r"'\u00e9\uD83D\uDE00'"), "é😀");
        assert_eq!(s("''"), "");
    }

    #[test]
    fn numbers() {
        let n = |text: &str| match &kinds(text, Dialect::Query)[0] {
            TokenKind::Number(n) => (n.text.clone(), n.value),
            other => panic!("{other:?}"),
        };
        assert_eq!(n("42"), ("42".into(), 42.0));
        assert_eq!(n("1.5"), ("1.5".into(), 1.5));
        assert_eq!(n("1e3"), ("1e3".into(), 1000.0));
        assert_eq!(n("1.5E-2"), ("1.5E-2".into(), 0.015));
        assert_eq!(n("0x1F"), ("0x1F".into(), 31.0));
        assert_eq!(n("0XdeadBEEF"), ("0XdeadBEEF".into(), 3735928559.0));
        assert_eq!(n("10e1000").1, f64::INFINITY);
        for bad in ["12abc", "0x", "1e", "1e+", "1.", "0x1G"] {
            let (_, errors) = tokenize(bad, Dialect::Query);
            assert_eq!(errors[0].kind, ErrorKind::InvalidNumber, "{bad}");
        }
    }

    #[test]
    fn routing_dollar_paths_are_greedy() {
        assert_eq!(
            kinds("$body.Welcome!.he[0]", Dialect::Routing),
            vec![
                TokenKind::DollarIdent("$body".into()),
                TokenKind::Dot,
                ident("Welcome!"),
                TokenKind::Dot,
                ident("he"),
                TokenKind::LBracket,
                TokenKind::Number(Number {
                    value: 0.0,
                    text: "0".into()
                }),
                TokenKind::RBracket,
                TokenKind::Eof
            ]
        );
        // In twin queries `!` is not a name character.
        let (_, errors) = tokenize("$body.Welcome!.he", Dialect::Query);
        assert_eq!(errors[0].kind, ErrorKind::InvalidCharacter);
    }

    #[test]
    fn operators() {
        assert_eq!(
            kinds(
                "= != <> < <= > >= + - * / % ( ) [ ] , . ; && || == ?? { }",
                Dialect::Query
            ),
            vec![
                TokenKind::Eq,
                TokenKind::Ne,
                TokenKind::Ne,
                TokenKind::Lt,
                TokenKind::Le,
                TokenKind::Gt,
                TokenKind::Ge,
                TokenKind::Plus,
                TokenKind::Minus,
                TokenKind::Star,
                TokenKind::Slash,
                TokenKind::Percent,
                TokenKind::LParen,
                TokenKind::RParen,
                TokenKind::LBracket,
                TokenKind::RBracket,
                TokenKind::Comma,
                TokenKind::Dot,
                TokenKind::Semicolon,
                TokenKind::AndAnd,
                TokenKind::OrOr,
                TokenKind::EqEq,
                TokenKind::Coalesce,
                TokenKind::LBrace,
                TokenKind::RBrace,
                TokenKind::Eof
            ]
        );
    }
}
