//! Property tests: printed trees parse back to themselves, and no input makes the parser panic.

use proptest::prelude::*;
use twinql_parser::lexer::number_value;
use twinql_parser::*;

#[derive(Clone, Copy, Debug, PartialEq)]
enum D {
    Twin,
    Routing,
}

fn plain_name() -> impl Strategy<Value = String> {
    "[a-zA-Z_][a-zA-Z0-9_]{0,5}(-[a-zA-Z0-9_]{1,4}){0,2}"
        .prop_filter("not a keyword", |s| !is_keyword(s))
}

fn quoted_name() -> impl Strategy<Value = String> {
    // Anything without `]` (a `]]` would end the name early).
    "[^\\]]{1,8}"
}

fn dollar_name() -> impl Strategy<Value = String> {
    "\\$[a-zA-Z0-9_]{1,6}"
}

fn number() -> impl Strategy<Value = Number> {
    prop_oneof![
        any::<u32>().prop_map(|n| n.to_string()),
        (any::<u16>(), 0u32..1000).prop_map(|(a, b)| format!("{a}.{b}")),
        (any::<u16>(), -40i32..40, any::<bool>())
            .prop_map(|(a, e, up)| format!("{a}{}{e}", if up { "E" } else { "e" })),
        any::<u64>().prop_map(|n| format!("0x{n:X}")),
        Just("0100".to_string()),
        Just("10e1000".to_string()),
    ]
    .prop_map(|text| Number {
        value: number_value(&text).expect("generated number text parses"),
        text,
    })
}

fn literal() -> impl Strategy<Value = Expr> {
    prop_oneof![
        any::<String>().prop_map(LiteralValue::String),
        number().prop_map(LiteralValue::Number),
        any::<bool>().prop_map(LiteralValue::Bool),
        Just(LiteralValue::Null),
        Just(LiteralValue::Undefined),
    ]
    .prop_map(|value| {
        Expr::Literal(Literal {
            value,
            span: Span::default(),
        })
    })
}

fn name_segment(first: bool) -> BoxedStrategy<Segment> {
    let mut options = vec![
        plain_name().prop_map(|n| (n, false)).boxed(),
        quoted_name().prop_map(|n| (n, true)).boxed(),
        dollar_name().prop_map(|n| (n, false)).boxed(),
    ];
    if !first {
        // Keywords are accepted (and kept) as segments after a dot.
        options.push(
            prop::sample::select(KEYWORDS)
                .prop_map(|k| (k.to_lowercase(), false))
                .boxed(),
        );
    }
    prop::strategy::Union::new(options)
        .prop_map(|(name, quoted)| Segment::Name {
            name,
            quoted,
            span: Span::default(),
        })
        .boxed()
}

fn path() -> impl Strategy<Value = Path> {
    let later = prop_oneof![
        name_segment(false),
        (0u64..1000).prop_map(|index| Segment::Index {
            index,
            span: Span::default()
        }),
    ];
    (name_segment(true), prop::collection::vec(later, 0..4)).prop_map(|(first, rest)| {
        let mut segments = vec![first];
        segments.extend(rest);
        Path {
            segments,
            span: Span::default(),
        }
    })
}

fn ident() -> impl Strategy<Value = Ident> {
    prop_oneof![
        plain_name().prop_map(|n| (n, false)),
        quoted_name().prop_map(|n| (n, true)),
    ]
    .prop_map(|(name, quoted)| Ident {
        name,
        quoted,
        span: Span::default(),
    })
}

fn boxed(e: Expr) -> Box<Expr> {
    Box::new(e)
}

fn array(items: Vec<Expr>) -> ArrayLit {
    ArrayLit {
        items,
        span: Span::default(),
    }
}

/// Random expressions of the dialect; precedence is repaired afterwards by [`fix`].
fn expr(d: D) -> impl Strategy<Value = Expr> {
    let mut leaves = vec![literal().boxed(), path().prop_map(Expr::Path).boxed()];
    if d == D::Routing {
        leaves.push(
            (dollar_name(), prop::collection::vec(plain_name(), 0..2))
                .prop_map(|(root, rest)| {
                    let mut name = root;
                    for r in rest {
                        name.push('.');
                        name.push_str(&r);
                    }
                    Expr::Braced(Braced {
                        name,
                        span: Span::default(),
                    })
                })
                .boxed(),
        );
    }
    let leaf = prop::strategy::Union::new(leaves);
    leaf.prop_recursive(5, 48, 4, move |inner| {
        let mut binops = vec![
            BinaryOp::Or,
            BinaryOp::And,
            BinaryOp::Add,
            BinaryOp::Sub,
            BinaryOp::Mul,
            BinaryOp::Div,
            BinaryOp::Mod,
        ];
        if d == D::Routing {
            binops.extend([BinaryOp::Coalesce, BinaryOp::Concat]);
        }
        let compares = vec![
            CompareOp::Eq,
            CompareOp::Ne,
            CompareOp::Lt,
            CompareOp::Le,
            CompareOp::Gt,
            CompareOp::Ge,
        ];
        let mut options = vec![
            (prop::sample::select(binops), inner.clone(), inner.clone())
                .prop_map(|(op, l, r)| {
                    Expr::Binary(Binary {
                        left: boxed(l),
                        op,
                        right: boxed(r),
                        span: Span::default(),
                    })
                })
                .boxed(),
            (prop::sample::select(compares), inner.clone(), inner.clone())
                .prop_map(|(op, l, r)| {
                    Expr::Compare(Compare {
                        left: boxed(l),
                        op,
                        right: boxed(r),
                        span: Span::default(),
                    })
                })
                .boxed(),
            inner
                .clone()
                .prop_map(|e| {
                    Expr::Not(Not {
                        expr: boxed(e),
                        span: Span::default(),
                    })
                })
                .boxed(),
            (any::<bool>(), inner.clone())
                .prop_map(|(neg, e)| {
                    Expr::Unary(Unary {
                        op: if neg { UnaryOp::Neg } else { UnaryOp::Plus },
                        expr: boxed(e),
                        span: Span::default(),
                    })
                })
                .boxed(),
            inner
                .clone()
                .prop_map(|e| {
                    Expr::Nested(Nested {
                        expr: boxed(e),
                        span: Span::default(),
                    })
                })
                .boxed(),
            (plain_name(), prop::collection::vec(inner.clone(), 0..4))
                .prop_map(|(name, args)| {
                    Expr::Call(Call {
                        name: Ident::new(name),
                        args,
                        span: Span::default(),
                    })
                })
                .boxed(),
        ];
        if d == D::Twin {
            options.push(
                prop::collection::vec(inner.clone(), 0..4)
                    .prop_map(|items| Expr::Array(array(items)))
                    .boxed(),
            );
            options.push(
                (
                    inner.clone(),
                    any::<bool>(),
                    prop::collection::vec(inner, 0..4),
                )
                    .prop_map(|(e, negated, items)| {
                        Expr::In(In {
                            expr: boxed(e),
                            negated,
                            list: array(items),
                            span: Span::default(),
                        })
                    })
                    .boxed(),
            );
        }
        prop::strategy::Union::new(options)
    })
    .prop_map(fix)
}

fn nest_if(e: Expr, needed: bool) -> Box<Expr> {
    if needed {
        boxed(Expr::Nested(Nested {
            expr: boxed(e),
            span: Span::default(),
        }))
    } else {
        boxed(e)
    }
}

/// Inserts `Nested` wherever the printed text would otherwise parse differently.
fn fix(e: Expr) -> Expr {
    match e {
        Expr::Binary(b) => {
            let p = b.op.precedence();
            let l = fix(*b.left);
            let r = fix(*b.right);
            let (lp, rp) = (l.precedence(), r.precedence());
            Expr::Binary(Binary {
                left: nest_if(l, lp < p),
                op: b.op,
                right: nest_if(r, rp <= p),
                span: b.span,
            })
        }
        Expr::Compare(c) => {
            let l = fix(*c.left);
            let r = fix(*c.right);
            let (lp, rp) = (l.precedence(), r.precedence());
            Expr::Compare(Compare {
                left: nest_if(l, lp <= 4),
                op: c.op,
                right: nest_if(r, rp <= 4),
                span: c.span,
            })
        }
        Expr::In(i) => {
            let x = fix(*i.expr);
            let xp = x.precedence();
            Expr::In(In {
                expr: nest_if(x, xp <= 4),
                negated: i.negated,
                list: array(i.list.items.into_iter().map(fix).collect()),
                span: i.span,
            })
        }
        Expr::Not(n) => {
            let x = fix(*n.expr);
            let xp = x.precedence();
            Expr::Not(Not {
                expr: nest_if(x, xp < 3),
                span: n.span,
            })
        }
        Expr::Unary(u) => {
            let x = fix(*u.expr);
            let xp = x.precedence();
            Expr::Unary(Unary {
                op: u.op,
                expr: nest_if(x, xp < 8),
                span: u.span,
            })
        }
        Expr::Nested(n) => Expr::Nested(Nested {
            expr: boxed(fix(*n.expr)),
            span: n.span,
        }),
        Expr::Call(c) => Expr::Call(Call {
            name: c.name,
            args: c.args.into_iter().map(fix).collect(),
            span: c.span,
        }),
        Expr::Array(a) => Expr::Array(array(a.items.into_iter().map(fix).collect())),
        leaf => leaf,
    }
}

fn collection() -> impl Strategy<Value = From> {
    prop::sample::select(vec![
        Collection::Devices,
        Collection::Modules,
        Collection::Jobs,
    ])
    .prop_map(|collection| From {
        collection,
        span: Span::default(),
    })
}

fn query() -> impl Strategy<Value = Query> {
    let top = prop::option::of((1u64..u64::MAX, any::<bool>()).prop_map(|(count, p)| Top {
        count,
        parenthesized: p,
        span: Span::default(),
    }));
    let item = (expr(D::Twin), prop::option::of(ident())).prop_map(|(expr, alias)| SelectItem {
        expr,
        alias,
        span: Span::default(),
    });
    let list = prop_oneof![
        Just(SelectList::Star(Span::default())),
        prop::collection::vec(item, 1..4).prop_map(SelectList::Items),
    ];
    (
        top,
        list,
        collection(),
        prop::option::of(expr(D::Twin)),
        prop::collection::vec(path(), 0..3),
    )
        .prop_map(|(top, list, from, filter, group_by)| Query {
            select: Select {
                top,
                list,
                span: Span::default(),
            },
            from,
            filter,
            group_by,
            span: Span::default(),
        })
}

fn condition() -> impl Strategy<Value = Condition> {
    prop_oneof![
        Just(Condition::All(Span::default())),
        expr(D::Twin).prop_map(Condition::Expr),
        (collection(), expr(D::Twin)).prop_map(|(from, filter)| Condition::From {
            from,
            filter,
            span: Span::default()
        }),
    ]
}

/// Token-like fragments, to reach deep into the grammar with random input.
fn fragments() -> impl Strategy<Value = String> {
    let frag = prop::sample::select(vec![
        "SELECT",
        "select",
        "TOP",
        "(",
        ")",
        "[",
        "]",
        "[[",
        "]]",
        "*",
        ",",
        ".",
        "FROM",
        "devices",
        "devices.modules",
        "modules",
        "WHERE",
        "GROUP",
        "BY",
        "AS",
        "AND",
        "OR",
        "NOT",
        "IN",
        "NIN",
        "=",
        "!=",
        "<>",
        "<",
        "<=",
        ">",
        ">=",
        "+",
        "-",
        "/",
        "%",
        "&&",
        "||",
        "==",
        "??",
        "{",
        "}",
        "'s'",
        "\"d\"",
        "'",
        "\"",
        "1",
        "0x1F",
        "1.5e3",
        "true",
        "null",
        "undefined",
        "a",
        "b-c",
        "$x",
        "$body.a[0]",
        "f(",
        "count()",
        "/*",
        "*/",
        ";",
        "@",
        "\\u00e9",
        " ",
    ]);
    prop::collection::vec(frag, 0..40).prop_map(|v| v.concat())
}

fn check_text(text: &str) {
    if let Ok(q) = parse_query(text) {
        assert_eq!(parse_query(&q.to_string()).as_ref(), Ok(&q), "{text:?}");
    }
    if let Ok(c) = parse_condition(text) {
        assert_eq!(parse_condition(&c.to_string()).as_ref(), Ok(&c), "{text:?}");
    }
    if let Ok(e) = parse_routing(text) {
        assert_eq!(parse_routing(&e.to_string()).as_ref(), Ok(&e), "{text:?}");
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn query_roundtrip(q in query()) {
        let text = q.to_string();
        let parsed = parse_query(&text);
        prop_assert_eq!(parsed.as_ref(), Ok(&q), "text: {}", text);
    }

    #[test]
    fn condition_roundtrip(c in condition()) {
        let text = c.to_string();
        let parsed = parse_condition(&text);
        prop_assert_eq!(parsed.as_ref(), Ok(&c), "text: {}", text);
    }

    #[test]
    fn routing_roundtrip(e in expr(D::Routing)) {
        let text = e.to_string();
        let parsed = parse_routing(&text);
        prop_assert_eq!(parsed.as_ref(), Ok(&e), "text: {}", text);
    }

    #[test]
    fn arbitrary_strings_never_panic(text in any::<String>()) {
        check_text(&text);
    }

    #[test]
    fn token_soup_never_panics(text in fragments()) {
        check_text(&text);
    }
}
