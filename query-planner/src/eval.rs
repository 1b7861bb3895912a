//! Expressions compiled for evaluation, and the evaluator: the one implementation of the
//! language's semantics (spec §2, §3).
//!
//! An AST expression is compiled once per query into a [`CExpr`]: function names resolved,
//! literals turned into values, paths split into a [`Root`] and [`Step`]s whose keys a store
//! can resolve to its own key ids. Evaluation is generic over the document layout through
//! [`Node`] and over where paths start through [`Context`] (a twin, a job record, or a routed
//! message).

use crate::functions::{self, Func, FunctionSet};
use crate::value::{Key, Kind, Node, Value};
use std::borrow::Cow;
use std::cmp::Ordering;
use std::sync::Arc;
use twinql_parser::ast::{self, BinaryOp, CompareOp, Expr, LiteralValue, Segment, UnaryOp};

/// Which rule book an expression follows where twin queries and routing differ.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Mode {
    /// Twin, module and job queries and target conditions.
    Twin,
    /// Message-routing conditions.
    Routing,
}

/// Where a path starts.
#[derive(Clone, Debug, PartialEq)]
pub enum Root {
    /// The document being queried (a twin or job record).
    Doc,
    /// Routing: `$body`.
    Body,
    /// Routing: `$twin`.
    Twin,
    /// Routing: `$name`, a system property (falling back to an application property).
    System(Key),
    /// Routing: a bare name, an application property.
    App(Key),
}

/// One step along a path.
#[derive(Clone, Debug, PartialEq)]
pub enum Step {
    /// Member lookup.
    Member(Key),
    /// Array element.
    Index(usize),
}

/// A compiled path.
#[derive(Clone, Debug, PartialEq)]
pub struct CPath {
    /// Where it starts.
    pub root: Root,
    /// The steps after the root.
    pub steps: Vec<Step>,
}

impl CPath {
    /// A path over the queried document from dotted segment names.
    pub fn doc(names: &[&str]) -> CPath {
        CPath {
            root: Root::Doc,
            steps: names.iter().map(|n| Step::Member(Key::new(n))).collect(),
        }
    }

    /// The member names of a `Root::Doc` path with only member steps, e.g. for index lookups.
    pub fn member_names(&self) -> Option<Vec<&str>> {
        if self.root != Root::Doc {
            return None;
        }
        self.steps
            .iter()
            .map(|s| match s {
                Step::Member(k) => Some(&*k.name),
                Step::Index(_) => None,
            })
            .collect()
    }

    /// Follows the path from `start`; Undefined as soon as a step finds nothing.
    pub fn resolve<'a, N: Node<'a>>(&self, start: Value<'a, N>) -> Value<'a, N> {
        if self.steps.is_empty() {
            return start;
        }
        let Value::Node(mut node) = start else {
            return Value::Undefined;
        };
        for step in &self.steps {
            let next = match step {
                Step::Member(k) => node.member(k),
                Step::Index(i) => node.element(*i),
            };
            match next {
                Some(n) => node = n,
                None => return Value::Undefined,
            }
        }
        node.value()
    }

    /// The last member step's key, which names a projected column.
    pub fn last_key(&self) -> Option<&Key> {
        self.steps.iter().rev().find_map(|s| match s {
            Step::Member(k) => Some(k),
            Step::Index(_) => None,
        })
    }
}

/// A constant value owned by a compiled expression.
#[derive(Clone, Debug, PartialEq)]
pub enum Const {
    /// `undefined`
    Undefined,
    /// `null`
    Null,
    /// a Boolean
    Bool(bool),
    /// a number
    Number(f64),
    /// a string
    String(Arc<str>),
    /// an array literal
    Json(Arc<serde_json::Value>),
}

impl Const {
    /// As an evaluation value.
    pub fn value<'a, N: Node<'a>>(&'a self) -> Value<'a, N> {
        match self {
            Const::Undefined => Value::Undefined,
            Const::Null => Value::Null,
            Const::Bool(b) => Value::Bool(*b),
            Const::Number(n) => Value::Number(*n),
            Const::String(s) => Value::String(Cow::Borrowed(s)),
            Const::Json(j) => Value::Json(j.clone()),
        }
    }

    fn to_json(&self) -> serde_json::Value {
        match self {
            Const::Undefined | Const::Null => serde_json::Value::Null,
            Const::Bool(b) => serde_json::Value::Bool(*b),
            Const::Number(n) => serde_json::Number::from_f64(*n)
                .map(serde_json::Value::Number)
                .unwrap_or(serde_json::Value::Null),
            Const::String(s) => serde_json::Value::String(s.to_string()),
            Const::Json(j) => (**j).clone(),
        }
    }
}

/// Arithmetic operators.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Arith {
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

/// A compiled expression.
#[derive(Clone, Debug, PartialEq)]
pub enum CExpr {
    /// A constant.
    Const(Const),
    /// A path.
    Path(CPath),
    /// `NOT x`
    Not(Box<CExpr>),
    /// `a AND b AND …`
    And(Vec<CExpr>),
    /// `a OR b OR …`
    Or(Vec<CExpr>),
    /// `a ?? b`
    Coalesce(Box<CExpr>, Box<CExpr>),
    /// A comparison.
    Compare(CompareOp, Box<CExpr>, Box<CExpr>),
    /// `x IN [...]` (`negated` for `NIN`).
    In {
        /// The tested value.
        expr: Box<CExpr>,
        /// The list.
        list: Vec<Const>,
        /// `NIN`.
        negated: bool,
    },
    /// Arithmetic.
    Arith(Arith, Box<CExpr>, Box<CExpr>),
    /// Unary minus.
    Neg(Box<CExpr>),
    /// Unary plus.
    Plus(Box<CExpr>),
    /// A scalar function call.
    Call(Func, Vec<CExpr>),
}

/// Why an expression could not be compiled (validation reports these better; this is the
/// evaluator's own guard).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CompileError {
    /// What is wrong.
    pub message: String,
    /// Where.
    pub span: ast::Span,
}

impl std::fmt::Display for CompileError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} at bytes {}..{}",
            self.message, self.span.start, self.span.end
        )
    }
}

impl std::error::Error for CompileError {}

/// How to compile: the dialect, its function set, and the collection prefix to strip.
#[derive(Clone, Copy, Debug)]
pub struct CompileOptions {
    /// Twin or routing rules.
    pub mode: Mode,
    /// Which functions exist.
    pub functions: FunctionSet,
    /// An optional leading prefix accepted on paths (`devices`, `devices.modules`,
    /// `devices.jobs`), spec §1.5.
    pub prefix: &'static [&'static str],
}

impl CompileOptions {
    /// Options for a twin query over `collection`.
    pub fn twin(collection: ast::Collection, functions: FunctionSet) -> CompileOptions {
        CompileOptions {
            mode: Mode::Twin,
            functions,
            prefix: match collection {
                ast::Collection::Devices => &["devices"],
                ast::Collection::Modules => &["devices", "modules"],
                ast::Collection::Jobs => &["devices", "jobs"],
            },
        }
    }

    /// Options for a routing condition.
    pub fn routing() -> CompileOptions {
        CompileOptions {
            mode: Mode::Routing,
            functions: FunctionSet::Routing,
            prefix: &[],
        }
    }
}

/// Compiles a path of the AST.
pub fn compile_path(path: &ast::Path, opts: &CompileOptions) -> CPath {
    let segs = &path.segments[..];
    let mut skip = 0;
    if opts.mode == Mode::Twin
        && segs.len() > opts.prefix.len()
        && opts
            .prefix
            .iter()
            .zip(segs)
            .all(|(p, s)| matches!(s, Segment::Name { name, .. } if name.eq_ignore_ascii_case(p)))
    {
        skip = opts.prefix.len();
    }
    let mut root = Root::Doc;
    if opts.mode == Mode::Routing
        && let Some(Segment::Name { name, quoted, .. }) = segs.first()
    {
        skip = 1;
        root = if !quoted && name.eq_ignore_ascii_case("$body") {
            Root::Body
        } else if !quoted && name.eq_ignore_ascii_case("$twin") {
            Root::Twin
        } else if !quoted && name.starts_with('$') {
            Root::System(Key::new(name))
        } else {
            Root::App(Key::new(name))
        };
    }
    let steps = segs[skip..]
        .iter()
        .map(|s| match s {
            Segment::Name { name, .. } => Step::Member(Key::new(name)),
            Segment::Index { index, .. } => Step::Index((*index).min(usize::MAX as u64) as usize),
        })
        .collect();
    CPath { root, steps }
}

fn literal_const(v: &LiteralValue) -> Const {
    match v {
        LiteralValue::String(s) => Const::String(s.as_str().into()),
        LiteralValue::Number(n) => Const::Number(n.value),
        LiteralValue::Bool(b) => Const::Bool(*b),
        LiteralValue::Null => Const::Null,
        LiteralValue::Undefined => Const::Undefined,
    }
}

/// Compiles an expression. Aggregates and unknown functions are errors here.
pub fn compile(expr: &Expr, opts: &CompileOptions) -> Result<CExpr, CompileError> {
    Ok(match expr {
        Expr::Literal(l) => CExpr::Const(literal_const(&l.value)),
        Expr::Path(p) => CExpr::Path(compile_path(p, opts)),
        Expr::Array(a) => CExpr::Const(Const::Json(Arc::new(serde_json::Value::Array(
            a.items
                .iter()
                .map(|e| Ok(const_of(&compile(e, opts)?).to_json()))
                .collect::<Result<_, CompileError>>()?,
        )))),
        Expr::Nested(n) => compile(&n.expr, opts)?,
        Expr::Unary(u) => {
            let inner = Box::new(compile(&u.expr, opts)?);
            match u.op {
                UnaryOp::Neg => fold(CExpr::Neg(inner), opts.mode),
                UnaryOp::Plus => CExpr::Plus(inner),
            }
        }
        Expr::Not(n) => CExpr::Not(Box::new(compile(&n.expr, opts)?)),
        Expr::Binary(b) => {
            let l = compile(&b.left, opts)?;
            let r = compile(&b.right, opts)?;
            match b.op {
                BinaryOp::And => match l {
                    CExpr::And(mut v) => {
                        v.push(r);
                        CExpr::And(v)
                    }
                    l => CExpr::And(vec![l, r]),
                },
                BinaryOp::Or => match l {
                    CExpr::Or(mut v) => {
                        v.push(r);
                        CExpr::Or(v)
                    }
                    l => CExpr::Or(vec![l, r]),
                },
                BinaryOp::Coalesce => CExpr::Coalesce(Box::new(l), Box::new(r)),
                // Routing `'a' || b` is `CONCAT('a', b)`.
                BinaryOp::Concat => fold(CExpr::Call(Func::Concat, vec![l, r]), opts.mode),
                op => {
                    let a = match op {
                        BinaryOp::Add => Arith::Add,
                        BinaryOp::Sub => Arith::Sub,
                        BinaryOp::Mul => Arith::Mul,
                        BinaryOp::Div => Arith::Div,
                        _ => Arith::Mod,
                    };
                    fold(CExpr::Arith(a, Box::new(l), Box::new(r)), opts.mode)
                }
            }
        }
        Expr::Compare(c) => CExpr::Compare(
            c.op,
            Box::new(compile(&c.left, opts)?),
            Box::new(compile(&c.right, opts)?),
        ),
        Expr::In(i) => CExpr::In {
            expr: Box::new(compile(&i.expr, opts)?),
            list: i
                .list
                .items
                .iter()
                .map(|e| compile(e, opts).map(|c| const_of(&c)))
                .collect::<Result<_, _>>()?,
            negated: i.negated,
        },
        Expr::Call(c) => {
            let info =
                functions::lookup(opts.functions, &c.name.name).ok_or_else(|| CompileError {
                    message: format!("unknown function `{}`", c.name.name),
                    span: c.name.span,
                })?;
            if c.args.len() < info.min_args || c.args.len() > info.max_args {
                return Err(CompileError {
                    message: format!("wrong number of arguments to `{}`", info.name),
                    span: c.span,
                });
            }
            let args = c
                .args
                .iter()
                .map(|a| compile(a, opts))
                .collect::<Result<Vec<_>, _>>()?;
            if info.func == Func::TwinChangeIncludes {
                // The argument is a twin path, not a value: keep it as written.
                return Ok(CExpr::Call(info.func, args));
            }
            fold(CExpr::Call(info.func, args), opts.mode)
        }
        Expr::Braced(b) => {
            let name = b.name.trim();
            CExpr::Path(CPath {
                root: if name.starts_with('$') {
                    Root::System(Key::new(name))
                } else {
                    Root::App(Key::new(name))
                },
                steps: Vec::new(),
            })
        }
    })
}

/// The constant an expression folds to (Undefined when it is not constant).
fn const_of(e: &CExpr) -> Const {
    match e {
        CExpr::Const(c) => c.clone(),
        other => match eval_const(other) {
            Some(c) => c,
            None => Const::Undefined,
        },
    }
}

/// A document type that has no nodes, for evaluating constant expressions.
#[derive(Clone, Copy, Debug)]
enum NoNode {}

impl<'a> Node<'a> for NoNode {
    fn kind(self) -> Kind {
        match self {}
    }
    fn as_bool(self) -> Option<bool> {
        match self {}
    }
    fn as_f64(self) -> Option<f64> {
        match self {}
    }
    fn as_str(self) -> Option<&'a str> {
        match self {}
    }
    fn member(self, _: &Key) -> Option<Self> {
        match self {}
    }
    fn element(self, _: usize) -> Option<Self> {
        match self {}
    }
    fn len(self) -> usize {
        match self {}
    }
    fn write_json(self, _: &mut Vec<u8>) {
        match self {}
    }
    fn for_each_member(self, _: &mut dyn FnMut(&str, Self)) {
        match self {}
    }
}

struct NoContext;

impl<'a> Context<'a> for NoContext {
    type N = NoNode;
    fn root(&self, _: &Root) -> Value<'a, NoNode> {
        Value::Undefined
    }
}

/// A scalar a column holds for one document (see [`truth_at`]).
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum ScalarRef<'a> {
    /// The path is missing.
    Undefined,
    /// `null`
    Null,
    /// A Boolean.
    Bool(bool),
    /// A number.
    Number(f64),
    /// A string.
    String(&'a str),
}

impl<'a> ScalarRef<'a> {
    /// The scalar as an evaluator value.
    fn value(self) -> Value<'a, NoNode> {
        match self {
            ScalarRef::Undefined => Value::Undefined,
            ScalarRef::Null => Value::Null,
            ScalarRef::Bool(b) => Value::Bool(b),
            ScalarRef::Number(n) => Value::Number(n),
            ScalarRef::String(s) => Value::String(Cow::Borrowed(s)),
        }
    }
}

/// The one document path an expression reads, if it reads exactly one (and nothing but the
/// queried document): such an expression has the same value on every document where the
/// path has the same scalar value, so a column store can evaluate it once per distinct
/// value. Paths without steps (the whole document) do not count as one path.
pub fn single_path(e: &CExpr) -> Option<&CPath> {
    fn walk<'e>(e: &'e CExpr, found: &mut Option<&'e CPath>) -> bool {
        match e {
            CExpr::Const(_) => true,
            CExpr::Path(p) => {
                if p.root != Root::Doc || p.steps.is_empty() {
                    return false;
                }
                match found {
                    Some(q) => *q == p,
                    None => {
                        *found = Some(p);
                        true
                    }
                }
            }
            CExpr::Not(x) | CExpr::Neg(x) | CExpr::Plus(x) => walk(x, found),
            CExpr::And(v) | CExpr::Or(v) => v.iter().all(|x| walk(x, found)),
            CExpr::Coalesce(a, b) | CExpr::Compare(_, a, b) | CExpr::Arith(_, a, b) => {
                walk(a, found) && walk(b, found)
            }
            CExpr::In { expr, .. } => walk(expr, found),
            CExpr::Call(f, args) => {
                *f != Func::TwinChangeIncludes && args.iter().all(|x| walk(x, found))
            }
        }
    }
    let mut found = None;
    if walk(e, &mut found) { found } else { None }
}

/// The three-valued truth of a twin-query expression over one path (see [`single_path`])
/// on a document where that path holds `value`: `Some(b)` for a Boolean, `None` otherwise.
pub fn truth_at(e: &CExpr, value: ScalarRef<'_>) -> Option<bool> {
    struct At<'v>(ScalarRef<'v>);
    impl<'a, 'v: 'a> Context<'a> for At<'v> {
        type N = NoNode;
        fn root(&self, _: &Root) -> Value<'a, NoNode> {
            Value::Undefined
        }
        fn path(&self, _: &CPath) -> Value<'a, NoNode> {
            self.0.value()
        }
    }
    truth(&eval(e, &At(value), Mode::Twin))
}

/// [`truth_at`] as a function of the value, prepared once for an expression: the shapes
/// columns meet most (a path compared with a constant, `IN`, `STARTSWITH` and its kin) skip
/// the tree walk and call the same comparison functions directly; anything else walks.
pub fn truth_fn<'e>(e: &'e CExpr) -> Box<dyn Fn(ScalarRef<'_>) -> Option<bool> + Send + Sync + 'e> {
    match e {
        CExpr::Compare(op, a, b) => match (&**a, &**b) {
            (CExpr::Path(_), CExpr::Const(c)) => {
                let op = *op;
                Box::new(move |v| compare(op, &v.value(), &c.value::<NoNode>()))
            }
            (CExpr::Const(c), CExpr::Path(_)) => {
                let op = *op;
                Box::new(move |v| compare(op, &c.value::<NoNode>(), &v.value()))
            }
            _ => Box::new(move |v| truth_at(e, v)),
        },
        CExpr::In {
            expr,
            list,
            negated,
        } if matches!(**expr, CExpr::Path(_)) => {
            let negated = *negated;
            Box::new(move |v| in_list(&v.value(), list).map(|b| b != negated))
        }
        CExpr::Call(f @ (Func::StartsWith | Func::EndsWith | Func::Contains), args) => {
            match args.as_slice() {
                [CExpr::Path(_), CExpr::Const(Const::String(p))] => {
                    let f = *f;
                    Box::new(move |v| match v {
                        ScalarRef::String(s) => Some(match f {
                            Func::StartsWith => s.starts_with(&**p),
                            Func::EndsWith => s.ends_with(&**p),
                            _ => s.contains(&**p),
                        }),
                        _ => None,
                    })
                }
                _ => Box::new(move |v| truth_at(e, v)),
            }
        }
        _ => Box::new(move |v| truth_at(e, v)),
    }
}

/// The three-valued truth of an expression over one path (see [`single_path`]) on every
/// document where that path holds an object (`array` false) or an array (`array` true), if
/// it does not depend on what the object or array holds (type checks, `IS_DEFINED`,
/// comparisons with scalars); `None` if it does.
pub fn truth_for_container(e: &CExpr, array: bool) -> Option<Option<bool>> {
    use std::sync::atomic::{AtomicBool, Ordering};
    /// A node of a known type whose contents are never read: reading them is noted.
    #[derive(Clone, Copy)]
    struct Probe<'t> {
        kind: Kind,
        read: &'t AtomicBool,
    }
    impl<'a, 't> Node<'a> for Probe<'t> {
        fn kind(self) -> Kind {
            self.kind
        }
        fn as_bool(self) -> Option<bool> {
            None
        }
        fn as_f64(self) -> Option<f64> {
            None
        }
        fn as_str(self) -> Option<&'a str> {
            None
        }
        fn member(self, _: &Key) -> Option<Self> {
            self.read.store(true, Ordering::Relaxed);
            None
        }
        fn element(self, _: usize) -> Option<Self> {
            self.read.store(true, Ordering::Relaxed);
            None
        }
        fn len(self) -> usize {
            self.read.store(true, Ordering::Relaxed);
            0
        }
        fn write_json(self, _: &mut Vec<u8>) {
            self.read.store(true, Ordering::Relaxed);
        }
        fn for_each_member(self, _: &mut dyn FnMut(&str, Self)) {
            self.read.store(true, Ordering::Relaxed);
        }
    }
    struct At<'t>(Probe<'t>);
    impl<'a, 't: 'a> Context<'a> for At<'t> {
        type N = Probe<'t>;
        fn root(&self, _: &Root) -> Value<'a, Probe<'t>> {
            Value::Undefined
        }
        fn path(&self, _: &CPath) -> Value<'a, Probe<'t>> {
            Value::Node(self.0)
        }
    }
    let read = AtomicBool::new(false);
    let probe = Probe {
        kind: if array { Kind::Array } else { Kind::Object },
        read: &read,
    };
    let t = truth(&eval(e, &At(probe), Mode::Twin));
    (!read.load(Ordering::Relaxed)).then_some(t)
}

/// The three-valued truth of a twin-query condition on a document.
pub fn truth_on<'a, N: Node<'a>>(e: &'a CExpr, doc: N) -> Option<bool> {
    truth(&eval(e, &DocContext(doc), Mode::Twin))
}

/// Whether an expression reads nothing from the document.
pub fn is_constant(e: &CExpr) -> bool {
    match e {
        CExpr::Const(_) => true,
        CExpr::Path(_) => false,
        CExpr::Not(x) | CExpr::Neg(x) | CExpr::Plus(x) => is_constant(x),
        CExpr::And(v) | CExpr::Or(v) => v.iter().all(is_constant),
        CExpr::Coalesce(a, b) | CExpr::Compare(_, a, b) | CExpr::Arith(_, a, b) => {
            is_constant(a) && is_constant(b)
        }
        CExpr::In { expr, .. } => is_constant(expr),
        CExpr::Call(f, args) => *f != Func::TwinChangeIncludes && args.iter().all(is_constant),
    }
}

/// Evaluates a constant expression (the constant folder: same semantics as everything else).
pub fn eval_const(e: &CExpr) -> Option<Const> {
    eval_const_in(e, Mode::Twin)
}

/// [`eval_const`] under the rules of `mode` (routing folds `3 / 0` to Infinity, twin queries
/// to Undefined).
pub fn eval_const_in(e: &CExpr, mode: Mode) -> Option<Const> {
    if !is_constant(e) {
        return None;
    }
    let v: Value<'_, NoNode> = eval(e, &NoContext, mode);
    Some(match v {
        Value::Undefined => Const::Undefined,
        Value::Null => Const::Null,
        Value::Bool(b) => Const::Bool(b),
        Value::Number(n) => Const::Number(n),
        Value::String(s) => Const::String(s.as_ref().into()),
        Value::Json(j) => Const::Json(j),
        Value::Node(n) => match n {},
    })
}

fn fold(e: CExpr, mode: Mode) -> CExpr {
    match eval_const_in(&e, mode) {
        Some(c) => CExpr::Const(c),
        None => e,
    }
}

/// Where evaluation finds the roots of paths.
pub trait Context<'a> {
    /// The node type of the documents.
    type N: Node<'a>;
    /// The value at a path root.
    fn root(&self, root: &Root) -> Value<'a, Self::N>;
    /// The value of a whole path. By default the path's steps are followed from
    /// [`Context::root`]; a routed message resolves some paths as a whole (dotted property
    /// names, `$body` queries where a missing member reads as `null`).
    fn path(&self, path: &CPath) -> Value<'a, Self::N> {
        path.resolve(self.root(&path.root))
    }
    /// `TWIN_CHANGE_INCLUDES(path)`: whether a twin-change notification touches `path`.
    fn twin_change_includes(&self, _path: &CPath) -> Value<'a, Self::N> {
        Value::Undefined
    }
}

/// A context whose only root is one document: a twin, module twin or job record.
#[derive(Clone, Copy, Debug)]
pub struct DocContext<N>(pub N);

impl<'a, N: Node<'a>> Context<'a> for DocContext<N> {
    type N = N;
    fn root(&self, root: &Root) -> Value<'a, N> {
        match root {
            Root::Doc => Value::Node(self.0),
            _ => Value::Undefined,
        }
    }
}

/// Evaluates a condition: `true` only when the expression is the Boolean `true`.
pub fn matches<'a, C: Context<'a>>(e: &'a CExpr, ctx: &C) -> bool {
    eval(e, ctx, Mode::Twin).is_true()
}

/// Three-valued truth: `Some(b)` for Booleans, `None` for anything else.
fn truth<'a, N: Node<'a>>(v: &Value<'a, N>) -> Option<bool> {
    match v {
        Value::Bool(b) => Some(*b),
        _ => None,
    }
}

fn tv<'a, N>(t: Option<bool>) -> Value<'a, N> {
    match t {
        Some(b) => Value::Bool(b),
        None => Value::Undefined,
    }
}

/// Evaluates an expression against a context.
pub fn eval<'a, C: Context<'a>>(e: &'a CExpr, ctx: &C, mode: Mode) -> Value<'a, C::N> {
    match e {
        CExpr::Const(c) => c.value(),
        CExpr::Path(p) => ctx.path(p),
        CExpr::Not(x) if mode == Mode::Routing => match eval(x, ctx, mode) {
            // The IoT Edge routing engine: `NOT null` is true.
            Value::Null => Value::Bool(true),
            v => tv(truth(&v).map(|b| !b)),
        },
        CExpr::Not(x) => tv(truth(&eval(x, ctx, mode)).map(|b| !b)),
        CExpr::And(items) if mode == Mode::Routing => routing_and_or(items, ctx, true),
        CExpr::Or(items) if mode == Mode::Routing => routing_and_or(items, ctx, false),
        CExpr::And(items) => {
            let mut all_true = true;
            for item in items {
                match truth(&eval(item, ctx, mode)) {
                    Some(false) => return Value::Bool(false),
                    Some(true) => {}
                    None => all_true = false,
                }
            }
            if all_true {
                Value::Bool(true)
            } else {
                Value::Undefined
            }
        }
        CExpr::Or(items) => {
            let mut all_false = true;
            for item in items {
                match truth(&eval(item, ctx, mode)) {
                    Some(true) => return Value::Bool(true),
                    Some(false) => {}
                    None => all_false = false,
                }
            }
            if all_false {
                Value::Bool(false)
            } else {
                Value::Undefined
            }
        }
        CExpr::Coalesce(a, b) => match eval(a, ctx, mode) {
            Value::Undefined => eval(b, ctx, mode),
            // Routing: an undefined number is NaN (`3 % 0 ?? 1` is 1).
            Value::Number(n) if mode == Mode::Routing && n.is_nan() => eval(b, ctx, mode),
            v => v,
        },
        CExpr::Compare(op, a, b) => {
            let l = eval(a, ctx, mode);
            let r = eval(b, ctx, mode);
            match mode {
                Mode::Twin => tv(compare(*op, &l, &r)),
                Mode::Routing => tv(routing_compare(*op, &l, &r)),
            }
        }
        CExpr::In {
            expr,
            list,
            negated,
        } => {
            let v = eval(expr, ctx, mode);
            tv(in_list(&v, list).map(|b| b != *negated))
        }
        CExpr::Arith(op, a, b) => {
            let (Some(x), Some(y)) = (eval(a, ctx, mode).as_f64(), eval(b, ctx, mode).as_f64())
            else {
                return Value::Undefined;
            };
            arith(*op, x, y, mode)
        }
        CExpr::Neg(x) => match eval(x, ctx, mode) {
            Value::Number(n) => Value::Number(-n),
            _ => Value::Undefined,
        },
        CExpr::Plus(x) => match eval(x, ctx, mode) {
            Value::Number(n) => Value::Number(n),
            _ => Value::Undefined,
        },
        CExpr::Call(f, args) => call(*f, args, ctx, mode),
    }
}

fn arith<'a, N>(op: Arith, x: f64, y: f64, mode: Mode) -> Value<'a, N> {
    let r = match op {
        Arith::Add => x + y,
        Arith::Sub => x - y,
        Arith::Mul => x * y,
        Arith::Div => {
            if y == 0.0 && mode == Mode::Twin {
                return Value::Undefined;
            }
            x / y
        }
        Arith::Mod => {
            if y == 0.0 && mode == Mode::Twin {
                return Value::Undefined;
            }
            x % y
        }
    };
    Value::Number(r)
}

/// Routing `AND` / `OR` over a flattened chain. Besides the three-valued rules, the IoT Edge
/// routing engine gives `null` its own algebra: `null AND x` is `null` whatever `x` is, and in
/// `OR` a `null` operand drops out (`null OR x` is `x`; `null OR null` is `null`).
fn routing_and_or<'a, C: Context<'a>>(items: &'a [CExpr], ctx: &C, and: bool) -> Value<'a, C::N> {
    let mut saw_null = false;
    let mut saw_undefined = false;
    let mut decided = false;
    let mut all_null = true;
    for item in items {
        match eval(item, ctx, Mode::Routing) {
            Value::Null => saw_null = true,
            Value::Bool(b) => {
                all_null = false;
                if b != and {
                    decided = true;
                }
            }
            _ => {
                all_null = false;
                saw_undefined = true;
            }
        }
    }
    if and && saw_null || !and && all_null {
        return Value::Null;
    }
    if decided {
        Value::Bool(!and)
    } else if saw_undefined {
        Value::Undefined
    } else {
        Value::Bool(and)
    }
}

/// Routing comparison (IoT Edge routing engine). Operands are statically typed there, so
/// values of different types meet only through `$body` / `$twin` queries, where `=` is `false`
/// and `!=` is `true` (`$body.temperature = '50'` is false, `$body.temperature != null` true); a
/// missing body member reads as `null`, so it equals `null`. Undefined and NaN (the engine's
/// undefined number) compare to nothing.
pub fn routing_compare<'a, N: Node<'a>>(
    op: CompareOp,
    l: &Value<'a, N>,
    r: &Value<'a, N>,
) -> Option<bool> {
    let undefined = |v: &Value<'a, N>| match v {
        Value::Undefined | Value::Node(_) | Value::Json(_) => true,
        Value::Number(n) => n.is_nan(),
        _ => false,
    };
    if undefined(l) || undefined(r) {
        return None;
    }
    match op {
        CompareOp::Eq => Some(equals(l, r).unwrap_or(false)),
        CompareOp::Ne => Some(!equals(l, r).unwrap_or(false)),
        _ => compare(op, l, r),
    }
}

/// Parses a string the way `AS_NUMBER` does in routing (.NET `double.TryParse` with
/// `NumberStyles.Any`, invariant culture): surrounding spaces, a sign, thousands separators,
/// a fraction and an exponent; `Infinity`, `-Infinity` and `NaN` by name. Out-of-range
/// exponents give ±Infinity (`'10e1000'`).
pub fn routing_parse_number(s: &str) -> Option<f64> {
    let t = s.trim();
    let body = t.strip_prefix(['+', '-']).unwrap_or(t);
    if body.eq_ignore_ascii_case("infinity") || body.eq_ignore_ascii_case("nan") {
        let v = if body.eq_ignore_ascii_case("nan") {
            f64::NAN
        } else {
            f64::INFINITY
        };
        return Some(if t.starts_with('-') { -v } else { v });
    }
    if body.is_empty() || !body.starts_with(|c: char| c.is_ascii_digit() || c == '.') {
        return None;
    }
    let mut mantissa_end = body.len();
    if let Some(e) = body.find(['e', 'E']) {
        mantissa_end = e;
    }
    if body[..mantissa_end].contains(',') && body[..mantissa_end].contains('.') {
        let dot = body.find('.').unwrap_or(0);
        if body[dot..mantissa_end].contains(',') {
            return None;
        }
    }
    let cleaned: String = body[..mantissa_end].chars().filter(|&c| c != ',').collect();
    let text = format!(
        "{}{}{}",
        if t.starts_with('-') { "-" } else { "" },
        cleaned,
        &body[mantissa_end..]
    );
    if !text
        .bytes()
        .all(|b| b.is_ascii_digit() || matches!(b, b'.' | b'e' | b'E' | b'+' | b'-'))
    {
        return None;
    }
    text.parse::<f64>().ok()
}

/// Type-strict equality (spec §2.3): `Some(bool)` between primitives of one type, `None`
/// (Undefined) otherwise.
pub fn equals<'a, N: Node<'a>>(l: &Value<'a, N>, r: &Value<'a, N>) -> Option<bool> {
    match (l, r) {
        (Value::Null, Value::Null) => Some(true),
        (Value::Bool(a), Value::Bool(b)) => Some(a == b),
        (Value::Number(a), Value::Number(b)) => Some(a == b),
        (Value::String(a), Value::String(b)) => Some(a == b),
        _ => None,
    }
}

/// Ordering between primitives of one type (spec §2.4); `None` when they do not compare.
pub fn order<'a, N: Node<'a>>(l: &Value<'a, N>, r: &Value<'a, N>) -> Option<Ordering> {
    match (l, r) {
        (Value::Null, Value::Null) => Some(Ordering::Equal),
        (Value::Bool(a), Value::Bool(b)) => Some(a.cmp(b)),
        (Value::Number(a), Value::Number(b)) => a.partial_cmp(b),
        (Value::String(a), Value::String(b)) => Some(a.as_ref().cmp(b.as_ref())),
        _ => None,
    }
}

/// A comparison under the three-valued rules.
pub fn compare<'a, N: Node<'a>>(op: CompareOp, l: &Value<'a, N>, r: &Value<'a, N>) -> Option<bool> {
    match op {
        CompareOp::Eq => equals(l, r),
        CompareOp::Ne => equals(l, r).map(|b| !b),
        _ => {
            let o = order(l, r)?;
            Some(match op {
                CompareOp::Lt => o == Ordering::Less,
                CompareOp::Le => o != Ordering::Greater,
                CompareOp::Gt => o == Ordering::Greater,
                _ => o != Ordering::Less,
            })
        }
    }
}

/// `x IN list` (spec §2.7): Undefined for Undefined or composite `x`; otherwise whether an
/// element of the same type equals it (elements of other types simply do not match).
pub fn in_list<'a, N: Node<'a>>(v: &Value<'a, N>, list: &'a [Const]) -> Option<bool> {
    match v {
        Value::Undefined | Value::Node(_) | Value::Json(_) => None,
        v => Some(
            list.iter()
                .any(|c| equals(v, &c.value::<N>()) == Some(true)),
        ),
    }
}

fn str_arg<'a, C: Context<'a>>(e: &'a CExpr, ctx: &C, mode: Mode) -> Option<Cow<'a, str>> {
    match eval(e, ctx, mode) {
        Value::String(s) => Some(s),
        _ => None,
    }
}

fn num_arg<'a, C: Context<'a>>(e: &'a CExpr, ctx: &C, mode: Mode) -> Option<f64> {
    eval(e, ctx, mode).as_f64()
}

fn num<'a, N>(x: Option<f64>) -> Value<'a, N> {
    match x {
        Some(n) => Value::Number(n),
        None => Value::Undefined,
    }
}

fn kind_check<'a, C: Context<'a>>(
    e: &'a CExpr,
    ctx: &C,
    mode: Mode,
    test: fn(Kind) -> bool,
) -> Value<'a, C::N> {
    Value::Bool(eval(e, ctx, mode).kind().is_some_and(test))
}

fn call<'a, C: Context<'a>>(f: Func, args: &'a [CExpr], ctx: &C, mode: Mode) -> Value<'a, C::N> {
    let arg = |i: usize| &args[i];
    match f {
        Func::IsDefined if mode == Mode::Routing => {
            // Routing (spec §3.3, Q-13): objects, arrays and NaN are not "defined", and neither
            // is a `null` read from `$body` / `$twin`; a `null` application property or the
            // literal `null` is.
            let dynamic = is_message_query(arg(0));
            Value::Bool(match eval(arg(0), ctx, mode) {
                Value::Undefined | Value::Node(_) | Value::Json(_) => false,
                Value::Number(n) => !n.is_nan(),
                Value::Null => !dynamic,
                _ => true,
            })
        }
        Func::IsNumber if mode == Mode::Routing => {
            // Routing: Infinity and NaN are not numbers (`is_number(3 / 0)` is false).
            Value::Bool(matches!(eval(arg(0), ctx, mode), Value::Number(n) if n.is_finite()))
        }
        Func::IsDefined => Value::Bool(eval(arg(0), ctx, mode).is_defined()),
        Func::IsNull => kind_check(arg(0), ctx, mode, |k| k == Kind::Null),
        Func::IsBool => kind_check(arg(0), ctx, mode, |k| k == Kind::Bool),
        Func::IsNumber => kind_check(arg(0), ctx, mode, |k| k == Kind::Number),
        Func::IsString => kind_check(arg(0), ctx, mode, |k| k == Kind::String),
        Func::IsObject => kind_check(arg(0), ctx, mode, |k| k == Kind::Object),
        Func::IsArray => kind_check(arg(0), ctx, mode, |k| k == Kind::Array),
        Func::IsPrimitive => kind_check(arg(0), ctx, mode, |k| {
            matches!(k, Kind::Null | Kind::Bool | Kind::Number | Kind::String)
        }),
        Func::StartsWith | Func::EndsWith | Func::Contains => {
            let (Some(s), Some(p)) = (str_arg(arg(0), ctx, mode), str_arg(arg(1), ctx, mode))
            else {
                return Value::Undefined;
            };
            Value::Bool(match f {
                Func::StartsWith => s.starts_with(p.as_ref()),
                Func::EndsWith => s.ends_with(p.as_ref()),
                _ => s.contains(p.as_ref()),
            })
        }
        Func::ArrayContains => {
            let needle = eval(arg(1), ctx, mode);
            match eval(arg(0), ctx, mode) {
                Value::Node(n) if n.kind() == Kind::Array => {
                    let found = (0..n.len())
                        .filter_map(|i| n.element(i))
                        .any(|el| equals(&el.value(), &needle) == Some(true));
                    Value::Bool(found)
                }
                Value::Json(j) => match &*j {
                    serde_json::Value::Array(items) => {
                        let found = items.iter().any(|el| {
                            let ev: Value<'_, &serde_json::Value> = el.value();
                            let nv: Value<'_, &serde_json::Value> = match &needle {
                                Value::Null => Value::Null,
                                Value::Bool(b) => Value::Bool(*b),
                                Value::Number(n) => Value::Number(*n),
                                Value::String(s) => Value::String(Cow::Owned(s.to_string())),
                                _ => Value::Undefined,
                            };
                            equals(&ev, &nv) == Some(true)
                        });
                        Value::Bool(found)
                    }
                    _ => Value::Undefined,
                },
                _ => Value::Undefined,
            }
        }
        Func::Abs => num(num_arg(arg(0), ctx, mode).map(f64::abs)),
        Func::Exp => num(num_arg(arg(0), ctx, mode).map(f64::exp)),
        Func::Power => match (num_arg(arg(0), ctx, mode), num_arg(arg(1), ctx, mode)) {
            (Some(x), Some(y)) => Value::Number(x.powf(y)),
            _ => Value::Undefined,
        },
        Func::Square => num(num_arg(arg(0), ctx, mode).map(|x| x * x)),
        Func::Ceiling => num(num_arg(arg(0), ctx, mode).map(f64::ceil)),
        Func::Floor => num(num_arg(arg(0), ctx, mode).map(f64::floor)),
        Func::Sign => num(num_arg(arg(0), ctx, mode).map(|x| {
            if x.is_nan() && mode == Mode::Routing {
                f64::NAN
            } else if x > 0.0 {
                1.0
            } else if x < 0.0 {
                -1.0
            } else {
                0.0
            }
        })),
        Func::Sqrt => num(num_arg(arg(0), ctx, mode).map(f64::sqrt)),
        Func::AsNumber => match eval(arg(0), ctx, mode) {
            Value::Number(n) => Value::Number(n),
            Value::String(s) if mode == Mode::Routing => num(routing_parse_number(&s)),
            Value::String(s) => num(s.trim().parse::<f64>().ok()),
            _ => Value::Undefined,
        },
        Func::Concat => {
            let mut out = String::new();
            for a in args {
                match eval(a, ctx, mode) {
                    Value::String(s) => out.push_str(&s),
                    // Routing: a `null` application property concatenates as ''.
                    Value::Null if mode == Mode::Routing => {}
                    _ => return Value::Undefined,
                }
            }
            Value::String(Cow::Owned(out))
        }
        Func::Length => num(str_arg(arg(0), ctx, mode).map(|s| s.chars().count() as f64)),
        Func::Lower => match str_arg(arg(0), ctx, mode) {
            Some(s) => Value::String(Cow::Owned(s.to_lowercase())),
            None => Value::Undefined,
        },
        Func::Upper => match str_arg(arg(0), ctx, mode) {
            Some(s) => Value::String(Cow::Owned(s.to_uppercase())),
            None => Value::Undefined,
        },
        Func::Substring => {
            let Some(s) = str_arg(arg(0), ctx, mode) else {
                return Value::Undefined;
            };
            let Some(start) = num_arg(arg(1), ctx, mode) else {
                return Value::Undefined;
            };
            let len = match args.get(2) {
                Some(e) => match num_arg(e, ctx, mode) {
                    Some(l) => Some(l),
                    None => return Value::Undefined,
                },
                None => None,
            };
            let count = s.chars().count() as f64;
            if start < 0.0 || start.fract() != 0.0 || start > count {
                return Value::Undefined;
            }
            let take = match len {
                Some(l) if l < 0.0 || l.fract() != 0.0 => return Value::Undefined,
                // Routing: a range past the end is an error there, so Undefined.
                Some(l) if mode == Mode::Routing && start + l > count => return Value::Undefined,
                Some(l) => l.min(count - start),
                None => count - start,
            };
            Value::String(Cow::Owned(
                s.chars().skip(start as usize).take(take as usize).collect(),
            ))
        }
        Func::IndexOf => {
            let (Some(s), Some(p)) = (str_arg(arg(0), ctx, mode), str_arg(arg(1), ctx, mode))
            else {
                return Value::Undefined;
            };
            Value::Number(match s.find(p.as_ref()) {
                Some(byte) => s[..byte].chars().count() as f64,
                None => -1.0,
            })
        }
        Func::TwinChangeIncludes => match arg(0) {
            CExpr::Path(p) => ctx.twin_change_includes(p),
            _ => Value::Undefined,
        },
        Func::Count | Func::Sum | Func::Avg | Func::Min | Func::Max => Value::Undefined,
    }
}

/// Whether an expression reads the message body or twin (`$body.…`, `$twin.…`), possibly
/// behind a `??` fallback: the routing engine's dynamically typed values.
fn is_message_query(e: &CExpr) -> bool {
    match e {
        CExpr::Path(p) => matches!(p.root, Root::Body | Root::Twin),
        CExpr::Coalesce(a, b) => is_message_query(a) || is_message_query(b),
        _ => false,
    }
}

/// Visits every [`Key`] of an expression mutably, so a store can resolve them to its key ids.
pub fn for_each_key(e: &mut CExpr, f: &mut dyn FnMut(&mut Key)) {
    match e {
        CExpr::Const(_) => {}
        CExpr::Path(p) => for_each_path_key(p, f),
        CExpr::Not(x) | CExpr::Neg(x) | CExpr::Plus(x) => for_each_key(x, f),
        CExpr::And(v) | CExpr::Or(v) => v.iter_mut().for_each(|x| for_each_key(x, f)),
        CExpr::Coalesce(a, b) | CExpr::Compare(_, a, b) | CExpr::Arith(_, a, b) => {
            for_each_key(a, f);
            for_each_key(b, f);
        }
        CExpr::In { expr, .. } => for_each_key(expr, f),
        CExpr::Call(_, args) => args.iter_mut().for_each(|x| for_each_key(x, f)),
    }
}

/// Visits every path of an expression.
pub fn for_each_path<'e>(e: &'e CExpr, f: &mut dyn FnMut(&'e CPath)) {
    match e {
        CExpr::Const(_) => {}
        CExpr::Path(p) => f(p),
        CExpr::Not(x) | CExpr::Neg(x) | CExpr::Plus(x) => for_each_path(x, f),
        CExpr::And(v) | CExpr::Or(v) => v.iter().for_each(|x| for_each_path(x, f)),
        CExpr::Coalesce(a, b) | CExpr::Compare(_, a, b) | CExpr::Arith(_, a, b) => {
            for_each_path(a, f);
            for_each_path(b, f);
        }
        CExpr::In { expr, .. } => for_each_path(expr, f),
        CExpr::Call(_, args) => args.iter().for_each(|x| for_each_path(x, f)),
    }
}

/// Visits every member key of a path.
pub fn for_each_path_key(p: &mut CPath, f: &mut dyn FnMut(&mut Key)) {
    for s in &mut p.steps {
        if let Step::Member(k) = s {
            f(k);
        }
    }
}
