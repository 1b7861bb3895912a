//! One-line round-trip tests: parse, print canonically, re-parse, compare trees.

mod common;
use common::*;
use twinql_parser::*;

#[test]
fn select_forms() {
    verified("SELECT * FROM devices");
    canon("select * from devices", "SELECT * FROM devices");
    canon("SeLeCt * FrOm DEVICES", "SELECT * FROM devices");
    canon(
        "SELECT * FROM Devices.Modules",
        "SELECT * FROM devices.modules",
    );
    canon("select * from devices.jobs", "SELECT * FROM devices.jobs");
    verified("SELECT TOP 10 * FROM devices");
    verified("SELECT TOP (10) * FROM devices");
    canon(
        "select top 5 deviceId from devices",
        "SELECT TOP 5 deviceId FROM devices",
    );
    canon(
        "SELECT TOP 0x10 * FROM devices",
        "SELECT TOP 16 * FROM devices",
    );
    verified("SELECT deviceId, moduleId FROM devices.modules");
    verified("SELECT deviceId AS id, [[group]] AS [[select]] FROM devices");
    canon(
        "SELECT COUNT() as TotalNumber FROM devices",
        "SELECT COUNT() AS TotalNumber FROM devices",
    );
    verified(
        "SELECT properties.reported.telemetryConfig.status AS status, COUNT() AS numberOfDevices FROM devices GROUP BY properties.reported.telemetryConfig.status",
    );
    verified("SELECT a, b, COUNT() AS n FROM devices GROUP BY a, b.c, [[group]].x[2]");
    canon(
        "select a from devices group by a",
        "SELECT a FROM devices GROUP BY a",
    );
    verified("SELECT MAX(properties.reported.temperature) AS t FROM devices");
    verified("SELECT * FROM devices WHERE a = 1 GROUP BY tags.x");
}

#[test]
fn dash_identifiers() {
    verified(
        "SELECT properties.desired.KeyQuery0b9ef2c4-5d6e-4f70-8a91-b2c3d4e5f607 AS KeyQuery0b9ef2c4-5d6e-4f70-8a91-b2c3d4e5f607 FROM devices",
    );
    // With spaces, `-` is subtraction.
    verified("SELECT * FROM devices WHERE a - b = 1");
    let q = parse_query("SELECT * FROM devices WHERE a-b = 1").unwrap();
    let Some(Expr::Compare(c)) = &q.filter else {
        panic!("{q:?}")
    };
    let Expr::Path(p) = &*c.left else {
        panic!("{c:?}")
    };
    assert_eq!(p.segments[0].name(), Some("a-b"));
    // `x -1` is a subtraction too; `x-` followed by a space is not part of the name.
    canon(
        "SELECT * FROM devices WHERE x -1 = 0",
        "SELECT * FROM devices WHERE x - 1 = 0",
    );
    canon(
        "SELECT * FROM devices WHERE x- 1 = 0",
        "SELECT * FROM devices WHERE x - 1 = 0",
    );
}

#[test]
fn paths() {
    verified("SELECT * FROM devices WHERE tags.[[group]].name = 'some_value'");
    verified("SELECT * FROM devices WHERE configurations.[[my-config 1]].status = 'Applied'");
    verified(
        "SELECT * FROM devices WHERE properties.desired.$version = properties.reported.lastDesiredVersion",
    );
    verified("SELECT * FROM devices WHERE $metadata.x = 1");
    verified("SELECT * FROM devices WHERE a.b[0].c[12] = 1");
    canon(
        "SELECT * FROM devices WHERE a [ 0 ] . b = 1",
        "SELECT * FROM devices WHERE a[0].b = 1",
    );
    verified("SELECT * FROM devices WHERE devices.deviceId = 'd1'");
    verified("SELECT * FROM devices.jobs WHERE devices.jobs.jobId = 'myJobId'");
    // A keyword after `.` is kept as an unquoted segment (the validator reports it).
    verified("SELECT * FROM devices WHERE tags.group.region = 'US'");
    canon(
        "SELECT * FROM devices WHERE tags.Group = 1",
        "SELECT * FROM devices WHERE tags.Group = 1",
    );
    verified("SELECT * FROM devices WHERE _x.y_1 = 1");
}

#[test]
fn literals() {
    verified("SELECT * FROM devices WHERE a = 'x'");
    canon(
        "SELECT * FROM devices WHERE a = \"x\"",
        "SELECT * FROM devices WHERE a = 'x'",
    );
    canon(
        r#"SELECT * FROM devices WHERE a = 'it\'s'"#,
        r#"SELECT * FROM devices WHERE a = 'it\'s'"#,
    );
    canon(
        "SELECT * FROM devices WHERE a = 'it''s'",
        r#"SELECT * FROM devices WHERE a = 'it\'s'"#,
    );
    canon(
        r#"SELECT * FROM devices WHERE a = "say \"hi\"""#,
        r#"SELECT * FROM devices WHERE a = 'say "hi"'"#,
    );
    canon(
        r#"SELECT * FROM devices WHERE a = 'back\\slash'"#,
        r#"SELECT * FROM devices WHERE a = 'back\\slash'"#,
    );
    canon(
        r"SELECT * FROM devices WHERE a = '\u00e9\u00C9'",
        "SELECT * FROM devices WHERE a = 'éÉ'",
    );
    canon(
        r"SELECT * FROM devices WHERE a = '\ud83d\ude00'",
        "SELECT * FROM devices WHERE a = '😀'",
    );
    canon(
        r"SELECT * FROM devices WHERE a = '\u0001'",
        r"SELECT * FROM devices WHERE a = '\u0001'",
    );
    canon(
        "SELECT * FROM devices WHERE a = 'two\nlines'",
        r"SELECT * FROM devices WHERE a = 'two\u000alines'",
    );
    verified("SELECT * FROM devices WHERE a = ''");
    verified("SELECT * FROM devices WHERE a = 42");
    verified("SELECT * FROM devices WHERE a = 1.50");
    verified("SELECT * FROM devices WHERE a = 1e3");
    verified("SELECT * FROM devices WHERE a = 1.5E-2");
    verified("SELECT * FROM devices WHERE a = 2e+5");
    verified("SELECT * FROM devices WHERE a = 0x1F");
    verified("SELECT * FROM devices WHERE a = 0100");
    canon(
        "SELECT * FROM devices WHERE a = TRUE",
        "SELECT * FROM devices WHERE a = true",
    );
    canon(
        "SELECT * FROM devices WHERE a = False",
        "SELECT * FROM devices WHERE a = false",
    );
    canon(
        "SELECT * FROM devices WHERE a = NULL",
        "SELECT * FROM devices WHERE a = null",
    );
    canon(
        "SELECT * FROM devices WHERE a = Undefined",
        "SELECT * FROM devices WHERE a = undefined",
    );
    // Number equality is by value.
    let a = parse_query("SELECT * FROM devices WHERE a = 1e3").unwrap();
    let b = parse_query("SELECT * FROM devices WHERE a = 1000").unwrap();
    assert_eq!(a, b);
}

#[test]
fn arrays() {
    verified("SELECT * FROM devices WHERE deviceId IN ['a', 'b']");
    verified("SELECT * FROM devices WHERE deviceId IN ['MyDevice1']");
    verified("SELECT * FROM devices WHERE deviceId IN []");
    canon(
        "SELECT * FROM devices WHERE x nin [1,2 , 3]",
        "SELECT * FROM devices WHERE x NIN [1, 2, 3]",
    );
    verified("SELECT * FROM devices WHERE x IN [1, 'a', true, null, -1]");
    verified("SELECT * FROM devices WHERE x = [1, 2]");
    // A leading nested array prints with a space so it cannot read as `[[…]]`.
    verified("SELECT * FROM devices WHERE x = [ [1], [2, 3]]");
    verified("SELECT * FROM devices WHERE x IN [ []]");
    verified("SELECT * FROM devices WHERE NOT x IN ['a']");
}

#[test]
fn comments_and_whitespace() {
    canon(
        "/* Include the double brackets. */ SELECT deviceId FROM devices",
        "SELECT deviceId FROM devices",
    );
    canon(
        "SELECT/**/*/* x */FROM\tdevices\r\n WHERE a=1",
        "SELECT * FROM devices WHERE a = 1",
    );
    canon(
        "SELECT * FROM devices WHERE tags.x='a'AND tags.y=1",
        "SELECT * FROM devices WHERE tags.x = 'a' AND tags.y = 1",
    );
}

#[test]
fn operators_and_precedence() {
    for op in ["=", "!=", "<", "<=", ">", ">="] {
        verified(&format!("SELECT * FROM devices WHERE a {op} 1"));
    }
    canon(
        "SELECT * FROM devices WHERE a <> 1",
        "SELECT * FROM devices WHERE a != 1",
    );
    for op in ["+", "-", "*", "/", "%"] {
        verified(&format!("SELECT * FROM devices WHERE a {op} 1 = 2"));
    }
    verified("SELECT * FROM devices WHERE a OR b AND c");
    verified("SELECT * FROM devices WHERE (a OR b) AND c");
    verified("SELECT * FROM devices WHERE NOT a = 1 AND b");
    verified("SELECT * FROM devices WHERE NOT (a = 1 AND b)");
    verified("SELECT * FROM devices WHERE NOT NOT a");
    verified("SELECT * FROM devices WHERE a AND NOT b OR NOT c");
    verified("SELECT * FROM devices WHERE x = 1 + 2 * 3");
    verified("SELECT * FROM devices WHERE x = (1 + 2) * 3");
    verified("SELECT * FROM devices WHERE x = -y");
    verified("SELECT * FROM devices WHERE x = +y");
    verified("SELECT * FROM devices WHERE x = - -y");
    verified("SELECT * FROM devices WHERE x = 1 - -2");
    verified("SELECT * FROM devices WHERE x = -(1 + 2)");
    verified("SELECT * FROM devices WHERE a - b - c = a - (b - c)");
    verified("SELECT * FROM devices WHERE (a = b) = c");
    verified("SELECT * FROM devices WHERE (((a)))");

    // The tree shape, not just the text.
    let q = parse_query("SELECT * FROM devices WHERE a OR b AND c").unwrap();
    let Some(Expr::Binary(b)) = q.filter else {
        panic!()
    };
    assert_eq!(b.op, BinaryOp::Or);
    assert!(matches!(&*b.right, Expr::Binary(r) if r.op == BinaryOp::And));

    let q = parse_query("SELECT * FROM devices WHERE NOT a = 1 AND b").unwrap();
    let Some(Expr::Binary(b)) = q.filter else {
        panic!()
    };
    assert_eq!(b.op, BinaryOp::And);
    assert!(matches!(&*b.left, Expr::Not(n) if matches!(*n.expr, Expr::Compare(_))));

    let q = parse_query("SELECT * FROM devices WHERE x = 1 + 2 * 3").unwrap();
    let Some(Expr::Compare(c)) = q.filter else {
        panic!()
    };
    assert!(matches!(&*c.right, Expr::Binary(b) if b.op == BinaryOp::Add
        && matches!(&*b.right, Expr::Binary(m) if m.op == BinaryOp::Mul)));

    let q = parse_query("SELECT * FROM devices WHERE -x * 2 = 1").unwrap();
    let Some(Expr::Compare(c)) = q.filter else {
        panic!()
    };
    assert!(matches!(&*c.left, Expr::Binary(b) if b.op == BinaryOp::Mul
        && matches!(&*b.left, Expr::Unary(_))));
}

#[test]
fn functions() {
    verified("SELECT * FROM devices WHERE is_defined(properties.reported.connectivity)");
    verified("SELECT * FROM devices WHERE STARTSWITH(devices.deviceId, 'device1')");
    verified("SELECT * FROM devices WHERE NOT IS_DEFINED(tags.c)");
    canon(
        "SELECT * FROM devices WHERE NOT(is_defined(tags.c))",
        "SELECT * FROM devices WHERE NOT (is_defined(tags.c))",
    );
    verified("SELECT * FROM devices WHERE power(a, length(b)) = square(a)");
    verified("SELECT * FROM devices WHERE f() = g(1, 'x', [1], (2))");
    canon(
        "SELECT count ( ) AS n FROM devices",
        "SELECT count() AS n FROM devices",
    );
    let q = parse_query("SELECT COUNT() FROM devices").unwrap();
    let SelectList::Items(items) = &q.select.list else {
        panic!()
    };
    let Expr::Call(c) = &items[0].expr else {
        panic!()
    };
    assert_eq!(c.name.name, "COUNT");
    assert!(c.args.is_empty());
}

#[test]
fn conditions() {
    canon_condition("*", "*");
    canon_condition("  *  ", "*");
    canon_condition("tags.environment='test'", "tags.environment = 'test'");
    canon_condition(
        "deviceId='operator''sDevice'",
        r"deviceId = 'operator\'sDevice'",
    );
    canon_condition(
        "DeviceId IN ['QueryClientE2ETests_1']",
        "DeviceId IN ['QueryClientE2ETests_1']",
    );
    canon_condition(
        "from devices.modules where tags.environment='test'",
        "FROM devices.modules WHERE tags.environment = 'test'",
    );
    canon_condition(
        "FROM devices WHERE a = 1 OR b",
        "FROM devices WHERE a = 1 OR b",
    );
    canon_condition("NOT deviceId=''", "NOT deviceId = ''");
    assert!(matches!(parse_condition("*").unwrap(), Condition::All(_)));
}

#[test]
fn routing() {
    canon_routing(
        "$contentEncoding = 'UTF-8' AND processingPath = 'hot'",
        "$contentEncoding = 'UTF-8' AND processingPath = 'hot'",
    );
    canon_routing(
        "$body.Weather.HistoricalData[0].Month = 'Feb'",
        "$body.Weather.HistoricalData[0].Month = 'Feb'",
    );
    canon_routing(
        "$twin.properties.desired.telemetryConfig.sendFrequency = '5m'",
        "$twin.properties.desired.telemetryConfig.sendFrequency = '5m'",
    );
    canon_routing("a && b", "a AND b");
    canon_routing("a == 1", "a = 1");
    canon_routing("'a' || key1 || 'd' = 'x'", "'a' || key1 || 'd' = 'x'");
    canon_routing(
        "(key1 ?? \"hello\") = \"value1\"",
        "(key1 ?? 'hello') = 'value1'",
    );
    canon_routing("none ?? none ?? 'x'", "none ?? none ?? 'x'");
    canon_routing("{$sys1} = 'v'", "{ $sys1 } = 'v'");
    canon_routing("{ $body.a.b } <> 'CA'", "{ $body.a.b } != 'CA'");
    canon_routing("$body.Welcome!.he = 'x'", "$body.Welcome!.he = 'x'");
    canon_routing(
        "$body.I'mnotusingspaces%1.es = 'x'",
        "$body.I'mnotusingspaces%1.es = 'x'",
    );
    canon_routing("as_number(severity) <= 2", "as_number(severity) <= 2");
    canon_routing("-(3 + 4) = -7", "-(3 + 4) = -7");
    canon_routing("0xDeadBeef", "0xDeadBeef");
    canon_routing("1.234e+1", "1.234e+1");
    canon_routing("10e1000", "10e1000");

    // `??` binds loosest: `a ?? b = c` is `a ?? (b = c)`.
    let e = parse_routing("key1 ?? 'hello' = 'value1'").unwrap();
    assert!(matches!(&e, Expr::Binary(b) if b.op == BinaryOp::Coalesce
        && matches!(&*b.right, Expr::Compare(_))));
    let e = parse_routing("a ?? b OR c").unwrap();
    assert!(matches!(&e, Expr::Binary(b) if b.op == BinaryOp::Coalesce));
    // `||` concatenates at the strength of `+`.
    let e = parse_routing("'a' || 'b' = 'ab'").unwrap();
    assert!(
        matches!(&e, Expr::Compare(c) if matches!(&*c.left, Expr::Binary(b) if b.op == BinaryOp::Concat))
    );
    let e = parse_routing("{ $sys1 }").unwrap();
    assert!(matches!(&e, Expr::Braced(b) if b.name == "$sys1"));

    // Empty conditions compile to `undefined`.
    for empty in ["", "   ", "/* nothing */"] {
        let e = parse_routing(empty).unwrap();
        assert_eq!(
            e,
            Expr::Literal(Literal {
                value: LiteralValue::Undefined,
                span: Span::new(0, 0)
            })
        );
        assert_eq!(e.span().range(), 0..0);
    }
}

#[test]
fn spans() {
    let text = "SELECT deviceId AS id FROM devices.modules WHERE tags.[[a b]][1] = 'x'";
    let q = parse_query(text).unwrap();
    assert_eq!(&text[q.span.range()], text);
    assert_eq!(&text[q.from.span.range()], "devices.modules");
    let SelectList::Items(items) = &q.select.list else {
        panic!()
    };
    assert_eq!(&text[items[0].span.range()], "deviceId AS id");
    let Some(Expr::Compare(c)) = &q.filter else {
        panic!()
    };
    assert_eq!(&text[c.span.range()], "tags.[[a b]][1] = 'x'");
    let Expr::Path(p) = &*c.left else { panic!() };
    assert_eq!(&text[p.segments[1].span().range()], "[[a b]]");
    assert_eq!(&text[p.segments[2].span().range()], "[1]");
    assert_eq!(&text[c.right.span().range()], "'x'");
}
