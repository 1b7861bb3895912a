//! The function tables of the two dialects (spec §3, §10 D-3).
//!
//! Twin queries (`FROM devices…`, target conditions) know `IS_DEFINED`, `STARTSWITH`,
//! `ENDSWITH`, the `IS_*` type checks and the aggregates; routing conditions know the math,
//! type-checking, casting and string functions, spelled `STARTS_WITH` / `ENDS_WITH`. A twin
//! query may opt into the routing scalar functions with [`FunctionSet::Extended`].

/// Every function the engine evaluates.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Func {
    /// `IS_DEFINED(x)`
    IsDefined,
    /// `IS_NULL(x)`
    IsNull,
    /// `IS_BOOL(x)`
    IsBool,
    /// `IS_NUMBER(x)`
    IsNumber,
    /// `IS_STRING(x)`
    IsString,
    /// `IS_OBJECT(x)`
    IsObject,
    /// `IS_ARRAY(x)`
    IsArray,
    /// `IS_PRIMITIVE(x)`
    IsPrimitive,
    /// `STARTSWITH(s, prefix)` (twin) / `STARTS_WITH` (routing)
    StartsWith,
    /// `ENDSWITH(s, suffix)` (twin) / `ENDS_WITH` (routing)
    EndsWith,
    /// `CONTAINS(s, sub)`
    Contains,
    /// `ARRAY_CONTAINS(array, value)`: undocumented, sent by the Azure CLI for `parentScopes`.
    ArrayContains,
    /// `ABS(x)`
    Abs,
    /// `EXP(x)`
    Exp,
    /// `POWER(x, y)`
    Power,
    /// `SQUARE(x)`
    Square,
    /// `CEILING(x)`
    Ceiling,
    /// `FLOOR(x)`
    Floor,
    /// `SIGN(x)`
    Sign,
    /// `SQRT(x)`
    Sqrt,
    /// `AS_NUMBER(x)`
    AsNumber,
    /// `CONCAT(x, y, …)`
    Concat,
    /// `LENGTH(s)`
    Length,
    /// `LOWER(s)`
    Lower,
    /// `UPPER(s)`
    Upper,
    /// `SUBSTRING(s, start [, length])`
    Substring,
    /// `INDEX_OF(s, fragment)`
    IndexOf,
    /// `TWIN_CHANGE_INCLUDES(path)`: routing over twin-change notifications.
    TwinChangeIncludes,
    /// `COUNT()`
    Count,
    /// `SUM(path)`
    Sum,
    /// `AVG(path)`
    Avg,
    /// `MIN(path)`
    Min,
    /// `MAX(path)`
    Max,
}

/// Which dialect a name is looked up in.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum FunctionSet {
    /// Twin queries as the service accepts them.
    Twin,
    /// Twin queries plus the routing scalar functions (a documented extension of twinql).
    Extended,
    /// Message-routing conditions.
    Routing,
}

/// One entry of a function table.
#[derive(Clone, Copy, Debug)]
pub struct FuncInfo {
    /// The function.
    pub func: Func,
    /// Canonical upper-case name in this dialect.
    pub name: &'static str,
    /// Fewest arguments.
    pub min_args: usize,
    /// Most arguments (`usize::MAX` for variadic).
    pub max_args: usize,
}

const fn f(func: Func, name: &'static str, min_args: usize, max_args: usize) -> FuncInfo {
    FuncInfo {
        func,
        name,
        min_args,
        max_args,
    }
}

/// Functions of twin queries (spec §3.1), including the undocumented `IS_*` checks.
pub const TWIN_FUNCTIONS: &[FuncInfo] = &[
    f(Func::IsDefined, "IS_DEFINED", 1, 1),
    f(Func::StartsWith, "STARTSWITH", 2, 2),
    f(Func::EndsWith, "ENDSWITH", 2, 2),
    f(Func::IsNull, "IS_NULL", 1, 1),
    f(Func::IsBool, "IS_BOOL", 1, 1),
    f(Func::IsNumber, "IS_NUMBER", 1, 1),
    f(Func::IsString, "IS_STRING", 1, 1),
    f(Func::IsObject, "IS_OBJECT", 1, 1),
    f(Func::IsArray, "IS_ARRAY", 1, 1),
    f(Func::IsPrimitive, "IS_PRIMITIVE", 1, 1),
    f(Func::ArrayContains, "ARRAY_CONTAINS", 2, 2),
];

/// Aggregates, allowed only in the select list of a query.
pub const AGGREGATES: &[FuncInfo] = &[
    f(Func::Count, "COUNT", 0, 0),
    f(Func::Sum, "SUM", 1, 1),
    f(Func::Avg, "AVG", 1, 1),
    f(Func::Min, "MIN", 1, 1),
    f(Func::Max, "MAX", 1, 1),
];

/// Functions of routing conditions (spec §3.2–§3.4).
pub const ROUTING_FUNCTIONS: &[FuncInfo] = &[
    f(Func::Abs, "ABS", 1, 1),
    f(Func::Exp, "EXP", 1, 1),
    f(Func::Power, "POWER", 2, 2),
    f(Func::Square, "SQUARE", 1, 1),
    f(Func::Ceiling, "CEILING", 1, 1),
    f(Func::Floor, "FLOOR", 1, 1),
    f(Func::Sign, "SIGN", 1, 1),
    f(Func::Sqrt, "SQRT", 1, 1),
    f(Func::AsNumber, "AS_NUMBER", 1, 1),
    f(Func::IsArray, "IS_ARRAY", 1, 1),
    f(Func::IsBool, "IS_BOOL", 1, 1),
    f(Func::IsDefined, "IS_DEFINED", 1, 1),
    f(Func::IsNull, "IS_NULL", 1, 1),
    f(Func::IsNumber, "IS_NUMBER", 1, 1),
    f(Func::IsObject, "IS_OBJECT", 1, 1),
    f(Func::IsPrimitive, "IS_PRIMITIVE", 1, 1),
    f(Func::IsString, "IS_STRING", 1, 1),
    f(Func::Concat, "CONCAT", 2, usize::MAX),
    f(Func::Length, "LENGTH", 1, 1),
    f(Func::Lower, "LOWER", 1, 1),
    f(Func::Upper, "UPPER", 1, 1),
    f(Func::Substring, "SUBSTRING", 2, 3),
    f(Func::IndexOf, "INDEX_OF", 2, 2),
    f(Func::StartsWith, "STARTS_WITH", 2, 2),
    f(Func::EndsWith, "ENDS_WITH", 2, 2),
    f(Func::Contains, "CONTAINS", 2, 2),
    f(Func::TwinChangeIncludes, "TWIN_CHANGE_INCLUDES", 1, 1),
];

/// Looks up a scalar function by name (any case) in a dialect. Aggregates are not scalar
/// functions: see [`lookup_aggregate`].
pub fn lookup(set: FunctionSet, name: &str) -> Option<FuncInfo> {
    let find = |table: &[FuncInfo]| {
        table
            .iter()
            .find(|i| i.name.eq_ignore_ascii_case(name))
            .copied()
    };
    match set {
        FunctionSet::Twin => find(TWIN_FUNCTIONS),
        FunctionSet::Extended => find(TWIN_FUNCTIONS)
            .or_else(|| find(ROUTING_FUNCTIONS).filter(|i| i.func != Func::TwinChangeIncludes)),
        FunctionSet::Routing => find(ROUTING_FUNCTIONS),
    }
}

/// Looks up an aggregate (`COUNT`, `SUM`, `AVG`, `MIN`, `MAX`) by name, any case.
pub fn lookup_aggregate(name: &str) -> Option<FuncInfo> {
    AGGREGATES
        .iter()
        .find(|i| i.name.eq_ignore_ascii_case(name))
        .copied()
}

/// The name a user probably meant when `name` is unknown in `set` (`STARTS_WITH` in a twin
/// query → `STARTSWITH`, and the reverse in routing).
pub fn suggest(set: FunctionSet, name: &str) -> Option<&'static str> {
    let squash = |s: &str| s.replace('_', "").to_ascii_lowercase();
    let wanted = squash(name);
    let table: &[FuncInfo] = match set {
        FunctionSet::Twin => TWIN_FUNCTIONS,
        FunctionSet::Extended => TWIN_FUNCTIONS,
        FunctionSet::Routing => ROUTING_FUNCTIONS,
    };
    table
        .iter()
        .chain(if set == FunctionSet::Extended {
            ROUTING_FUNCTIONS
        } else {
            &[]
        })
        .find(|i| squash(i.name) == wanted)
        .map(|i| i.name)
}
