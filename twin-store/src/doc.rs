//! Owned JSON documents: the form a twin takes once it has been written to.
//!
//! Loaded twins live in compact read-only tapes. A twin that an update touches is copied out
//! into a [`Doc`] — a small tree that keeps member order and the original spelling of numbers
//! — which the update rules edit and the evaluator reads through the same
//! [`Node`] trait as tape documents.

use std::sync::Arc;

use twinql_planner::value::{Key, Kind, Node, write_json_string, write_number};

use crate::tape::NodeRef;

/// A JSON value owned by the store.
#[derive(Clone, Debug, PartialEq)]
pub enum Doc {
    /// `null`
    Null,
    /// `true` / `false`
    Bool(bool),
    /// A number, with its original text when the value alone would not reproduce it.
    Number(Number),
    /// A string.
    String(Box<str>),
    /// An array.
    Array(Vec<Doc>),
    /// An object, members in order.
    Object(Object),
}

/// A number and, when it differs from the shortest rendering of the value, its original text.
#[derive(Clone, Debug, PartialEq)]
pub struct Number {
    /// The value.
    pub value: f64,
    /// The text as it was written (`21.50`, `1e3`), if the value would print differently.
    pub text: Option<Box<str>>,
}

impl Number {
    /// A number from a value.
    pub fn new(value: f64) -> Number {
        Number { value, text: None }
    }

    /// A number from its JSON text; the text is kept only when it differs from the rendering
    /// of the value.
    pub fn from_text(value: f64, text: &str) -> Number {
        let mut canon = Vec::new();
        write_number(value, &mut canon);
        Number {
            value,
            text: (canon != text.as_bytes()).then(|| text.into()),
        }
    }
}

/// An object's members, in order. Member names are unique.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Object {
    members: Vec<(Arc<str>, Doc)>,
}

impl Object {
    /// An empty object.
    pub fn new() -> Object {
        Object::default()
    }

    /// The number of members.
    pub fn len(&self) -> usize {
        self.members.len()
    }

    /// Whether there are no members.
    pub fn is_empty(&self) -> bool {
        self.members.is_empty()
    }

    /// The member named exactly `name`.
    pub fn get(&self, name: &str) -> Option<&Doc> {
        self.members
            .iter()
            .find(|(k, _)| &**k == name)
            .map(|(_, v)| v)
    }

    /// The member named exactly `name`, to change.
    pub fn get_mut(&mut self, name: &str) -> Option<&mut Doc> {
        self.members
            .iter_mut()
            .find(|(k, _)| &**k == name)
            .map(|(_, v)| v)
    }

    /// Sets member `name`: in place if it exists, else appended. Returns the old value.
    pub fn insert(&mut self, name: &str, value: Doc) -> Option<Doc> {
        match self.get_mut(name) {
            Some(slot) => Some(std::mem::replace(slot, value)),
            None => {
                self.members.push((name.into(), value));
                None
            }
        }
    }

    /// Appends a member whose name is not in the object yet (the caller knows it is new).
    pub fn push_new(&mut self, name: Arc<str>, value: Doc) {
        self.members.push((name, value));
    }

    /// Removes member `name`, keeping the order of the others. Returns its value.
    pub fn remove(&mut self, name: &str) -> Option<Doc> {
        let i = self.members.iter().position(|(k, _)| &**k == name)?;
        Some(self.members.remove(i).1)
    }

    /// The members in order.
    pub fn iter(&self) -> impl ExactSizeIterator<Item = (&str, &Doc)> {
        self.members.iter().map(|(k, v)| (&**k, v))
    }

    /// The members in order, values mutable.
    pub fn iter_mut(&mut self) -> impl ExactSizeIterator<Item = (&str, &mut Doc)> {
        self.members.iter_mut().map(|(k, v)| (&**k, v))
    }

    /// The member at position `i`.
    pub fn at(&self, i: usize) -> Option<(&str, &Doc)> {
        self.members.get(i).map(|(k, v)| (&**k, v))
    }
}

impl FromIterator<(String, Doc)> for Object {
    fn from_iter<I: IntoIterator<Item = (String, Doc)>>(iter: I) -> Object {
        let mut o = Object::new();
        for (k, v) in iter {
            o.insert(&k, v);
        }
        o
    }
}

/// Shared member names by store key id, so copied documents do not allocate each name.
#[derive(Debug, Default)]
pub struct NameCache {
    names: Vec<Option<Arc<str>>>,
    named: std::collections::HashSet<Arc<str>, crate::dict::FxBuild>,
}

impl NameCache {
    /// The shared name of key `id` (spelled `name`).
    pub fn get(&mut self, id: u32, name: &str) -> Arc<str> {
        let i = id as usize;
        if i >= self.names.len() {
            if i > 1 << 24 {
                return name.into();
            }
            self.names.resize(i + 1, None);
        }
        self.names[i].get_or_insert_with(|| name.into()).clone()
    }

    /// The shared name spelled `name` (for documents without key ids).
    pub fn named(&mut self, name: &str) -> Arc<str> {
        if let Some(n) = self.named.get(name) {
            return n.clone();
        }
        let n: Arc<str> = name.into();
        // Names are few in practice; a flood of distinct ones is not kept.
        if self.named.len() < 1 << 16 {
            self.named.insert(n.clone());
        }
        n
    }
}

/// Why a text is not a JSON document.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("invalid JSON at line {line}, column {column}: {message}")]
pub struct JsonError {
    /// 1-based line.
    pub line: usize,
    /// 1-based column.
    pub column: usize,
    /// What is wrong.
    pub message: String,
}

impl Doc {
    /// An empty object.
    pub fn object() -> Doc {
        Doc::Object(Object::new())
    }

    /// Parses JSON text: the same tree as [`Doc::from_json`] of the `serde_json` value of the
    /// text (a repeated member name keeps its first position and its last value; numbers
    /// keep the text `serde_json` gives them), built without the value in between.
    pub fn parse(text: &str) -> Result<Doc, JsonError> {
        serde_json::from_str(text).map_err(|e| JsonError {
            line: e.line(),
            column: e.column(),
            message: e.to_string(),
        })
    }

    /// Converts a `serde_json` value.
    pub fn from_json(v: &serde_json::Value) -> Doc {
        match v {
            serde_json::Value::Null => Doc::Null,
            serde_json::Value::Bool(b) => Doc::Bool(*b),
            serde_json::Value::Number(n) => json_number(n),
            serde_json::Value::String(s) => Doc::String(s.as_str().into()),
            serde_json::Value::Array(a) => Doc::Array(a.iter().map(Doc::from_json).collect()),
            serde_json::Value::Object(o) => Doc::Object(
                o.iter()
                    .map(|(k, v)| (k.clone(), Doc::from_json(v)))
                    .collect(),
            ),
        }
    }

    /// Copies any document node (a tape node, for example) into an owned tree, keeping member
    /// order and number text.
    pub fn from_node<'a, N: Node<'a>>(n: N) -> Doc {
        match n.kind() {
            Kind::Null => Doc::Null,
            Kind::Bool => Doc::Bool(n.as_bool().unwrap_or(false)),
            Kind::Number => {
                let mut text = Vec::new();
                n.write_json(&mut text);
                let text = String::from_utf8(text).unwrap_or_default();
                Doc::Number(Number::from_text(n.as_f64().unwrap_or(f64::NAN), &text))
            }
            Kind::String => Doc::String(n.as_str().unwrap_or("").into()),
            Kind::Array => Doc::Array(
                (0..n.len())
                    .filter_map(|i| n.element(i))
                    .map(Doc::from_node)
                    .collect(),
            ),
            Kind::Object => {
                let mut o = Object::new();
                n.for_each_member(&mut |k, v| {
                    if o.get(k).is_none() {
                        o.members.push((k.into(), Doc::from_node(v)));
                    }
                });
                Doc::Object(o)
            }
        }
    }

    /// Copies a tape node into an owned tree, keeping member order and number text; member
    /// names come from `names`, shared rather than copied.
    pub fn from_tape(n: NodeRef<'_>, names: &mut NameCache) -> Doc {
        match n.kind() {
            Kind::Number => {
                let value = n.as_f64().unwrap_or(f64::NAN);
                // Integers beyond 2^53 are stored exactly in the tape: keep their text.
                if value.abs() >= 9.0e15 {
                    return Doc::from_node(n);
                }
                Doc::Number(Number {
                    value,
                    text: n.kept_number_text().map(Into::into),
                })
            }
            Kind::Array => Doc::Array(n.elements().map(|e| Doc::from_tape(e, names)).collect()),
            Kind::Object => {
                let members = n.members();
                let mut o = Object {
                    members: Vec::with_capacity(members.len()),
                };
                for (k, id, v) in members {
                    if o.members.iter().any(|(m, _)| &**m == k) {
                        continue;
                    }
                    o.members.push((names.get(id, k), Doc::from_tape(v, names)));
                }
                Doc::Object(o)
            }
            _ => Doc::from_node(n),
        }
    }

    /// The JSON type.
    pub fn kind(&self) -> Kind {
        match self {
            Doc::Null => Kind::Null,
            Doc::Bool(_) => Kind::Bool,
            Doc::Number(_) => Kind::Number,
            Doc::String(_) => Kind::String,
            Doc::Array(_) => Kind::Array,
            Doc::Object(_) => Kind::Object,
        }
    }

    /// The object, if this is one.
    pub fn as_object(&self) -> Option<&Object> {
        match self {
            Doc::Object(o) => Some(o),
            _ => None,
        }
    }

    /// The object, if this is one, to change.
    pub fn as_object_mut(&mut self) -> Option<&mut Object> {
        match self {
            Doc::Object(o) => Some(o),
            _ => None,
        }
    }

    /// The string, if this is one.
    pub fn as_string(&self) -> Option<&str> {
        match self {
            Doc::String(s) => Some(s),
            _ => None,
        }
    }

    /// The number, if this is one.
    pub fn as_number(&self) -> Option<f64> {
        match self {
            Doc::Number(n) => Some(n.value),
            _ => None,
        }
    }

    /// Follows member names exactly.
    pub fn get_path(&self, path: &[&str]) -> Option<&Doc> {
        let mut d = self;
        for p in path {
            d = d.as_object()?.get(p)?;
        }
        Some(d)
    }

    /// Appends the JSON text.
    pub fn write(&self, out: &mut Vec<u8>) {
        match self {
            Doc::Null => out.extend_from_slice(b"null"),
            Doc::Bool(b) => out.extend_from_slice(if *b { b"true" } else { b"false" }),
            Doc::Number(n) => match &n.text {
                Some(t) => out.extend_from_slice(t.as_bytes()),
                None => write_number(n.value, out),
            },
            Doc::String(s) => write_json_string(s, out),
            Doc::Array(a) => {
                out.push(b'[');
                for (i, v) in a.iter().enumerate() {
                    if i > 0 {
                        out.push(b',');
                    }
                    v.write(out);
                }
                out.push(b']');
            }
            Doc::Object(o) => {
                out.push(b'{');
                for (i, (k, v)) in o.iter().enumerate() {
                    if i > 0 {
                        out.push(b',');
                    }
                    write_json_string(k, out);
                    out.push(b':');
                    v.write(out);
                }
                out.push(b'}');
            }
        }
    }

    /// The JSON text.
    pub fn to_json_string(&self) -> String {
        let mut out = Vec::new();
        self.write(&mut out);
        String::from_utf8(out).unwrap_or_default()
    }

    /// Converts to a `serde_json` value (number text is not kept).
    pub fn to_json(&self) -> serde_json::Value {
        match self {
            Doc::Null => serde_json::Value::Null,
            Doc::Bool(b) => serde_json::Value::Bool(*b),
            Doc::Number(n) => {
                if n.value.fract() == 0.0 && n.value.abs() < 9.0e15 {
                    serde_json::Value::from(n.value as i64)
                } else {
                    serde_json::Number::from_f64(n.value)
                        .map_or(serde_json::Value::Null, serde_json::Value::Number)
                }
            }
            Doc::String(s) => serde_json::Value::String(s.to_string()),
            Doc::Array(a) => serde_json::Value::Array(a.iter().map(Doc::to_json).collect()),
            Doc::Object(o) => serde_json::Value::Object(
                o.iter()
                    .map(|(k, v)| (k.to_string(), v.to_json()))
                    .collect(),
            ),
        }
    }
}

impl<'a> Node<'a> for &'a Doc {
    fn kind(self) -> Kind {
        Doc::kind(self)
    }
    fn as_bool(self) -> Option<bool> {
        match self {
            Doc::Bool(b) => Some(*b),
            _ => None,
        }
    }
    fn as_f64(self) -> Option<f64> {
        self.as_number()
    }
    fn as_str(self) -> Option<&'a str> {
        self.as_string()
    }
    fn member(self, key: &Key) -> Option<Self> {
        let o = self.as_object()?;
        if let Some(v) = o.get(&key.name) {
            return Some(v);
        }
        o.iter()
            .find(|(k, _)| key.matches_folded(k))
            .map(|(_, v)| v)
    }
    fn element(self, index: usize) -> Option<Self> {
        match self {
            Doc::Array(a) => a.get(index),
            _ => None,
        }
    }
    fn len(self) -> usize {
        match self {
            Doc::Array(a) => a.len(),
            Doc::Object(o) => o.len(),
            _ => 0,
        }
    }
    fn write_json(self, out: &mut Vec<u8>) {
        self.write(out);
    }
    fn for_each_member(self, f: &mut dyn FnMut(&str, Self)) {
        if let Doc::Object(o) = self {
            for (k, v) in o.iter() {
                f(k, v);
            }
        }
    }
}

/// A number as [`Doc::from_json`] takes it from a `serde_json` number.
fn json_number(n: &serde_json::Number) -> Doc {
    Doc::Number(Number::from_text(
        n.as_f64().unwrap_or(f64::NAN),
        &n.to_string(),
    ))
}

impl<'de> serde::Deserialize<'de> for Doc {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Doc, D::Error> {
        d.deserialize_any(DocVisitor)
    }
}

struct DocVisitor;

/// Objects with more members than this find repeated names through a hash map.
const LINEAR_MEMBERS: usize = 32;

impl<'de> serde::de::Visitor<'de> for DocVisitor {
    type Value = Doc;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_bool<E>(self, v: bool) -> Result<Doc, E> {
        Ok(Doc::Bool(v))
    }

    fn visit_i64<E>(self, v: i64) -> Result<Doc, E> {
        Ok(json_number(&v.into()))
    }

    fn visit_u64<E>(self, v: u64) -> Result<Doc, E> {
        Ok(json_number(&v.into()))
    }

    fn visit_f64<E>(self, v: f64) -> Result<Doc, E> {
        Ok(serde_json::Number::from_f64(v).map_or(Doc::Null, |n| json_number(&n)))
    }

    fn visit_str<E>(self, v: &str) -> Result<Doc, E> {
        Ok(Doc::String(v.into()))
    }

    fn visit_string<E>(self, v: String) -> Result<Doc, E> {
        Ok(Doc::String(v.into_boxed_str()))
    }

    fn visit_unit<E>(self) -> Result<Doc, E> {
        Ok(Doc::Null)
    }

    fn visit_none<E>(self) -> Result<Doc, E> {
        Ok(Doc::Null)
    }

    fn visit_some<D: serde::Deserializer<'de>>(self, d: D) -> Result<Doc, D::Error> {
        d.deserialize_any(DocVisitor)
    }

    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut a: A) -> Result<Doc, A::Error> {
        let mut out = Vec::with_capacity(a.size_hint().unwrap_or(0).min(1024));
        while let Some(e) = a.next_element::<Doc>()? {
            out.push(e);
        }
        Ok(Doc::Array(out))
    }

    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut a: A) -> Result<Doc, A::Error> {
        let mut o = Object::new();
        let mut index: Option<std::collections::HashMap<Arc<str>, usize>> = None;
        while let Some(k) = a.next_key::<std::borrow::Cow<'de, str>>()? {
            let v: Doc = a.next_value()?;
            if o.members.len() == LINEAR_MEMBERS && index.is_none() {
                index = Some(
                    o.members
                        .iter()
                        .enumerate()
                        .map(|(i, (name, _))| (name.clone(), i))
                        .collect(),
                );
            }
            match &mut index {
                None => {
                    o.insert(&k, v);
                }
                Some(index) => match index.get(&*k) {
                    Some(&i) => o.members[i].1 = v,
                    None => {
                        let name: Arc<str> = k.as_ref().into();
                        index.insert(name.clone(), o.members.len());
                        o.members.push((name, v));
                    }
                },
            }
        }
        Ok(Doc::Object(o))
    }
}

/// Number texts for tests: signed zeros, kept text (`21.50`, `1e3`), integers past 2^53 and
/// past 64 bits, extremes.
#[cfg(test)]
pub(crate) const NUMBER_TEXTS: &[&str] = &[
    "0",
    "-0",
    "1",
    "-1",
    "-17",
    "21.5",
    "21.50",
    "1e3",
    "1E+2",
    "-0.0",
    "3.0",
    "0.1",
    "9007199254740993",
    "4503599627370496.5",
    "18446744073709551615",
    "-9223372036854775808",
    "123456789012345678901234567890",
    "5e-324",
    "1.7976931348623157e308",
];

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn json() -> impl Strategy<Value = String> {
        let leaf = prop::sample::select(
            [
                "null",
                "true",
                "false",
                "\"\"",
                "\"a\"",
                "\"caf\\u00e9\"",
                "\"tab\\t\"",
            ]
            .into_iter()
            .chain(NUMBER_TEXTS.iter().copied())
            .collect::<Vec<_>>(),
        )
        .prop_map(str::to_string);
        leaf.prop_recursive(3, 64, 40, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..5)
                    .prop_map(|v| format!("[{}]", v.join(","))),
                // Up to 40 members of 26 names: repeated names, and past the linear search.
                prop::collection::vec(("[a-z]", inner), 0..40).prop_map(|kv| {
                    let body: Vec<String> =
                        kv.iter().map(|(k, v)| format!("\"{k}\":{v}")).collect();
                    format!("{{{}}}", body.join(","))
                }),
            ]
        })
    }

    proptest! {
        #[test]
        fn parsed_trees_equal_the_trees_of_serde_values(text in json()) {
            let value: serde_json::Value = serde_json::from_str(&text).expect("generated JSON");
            let parsed = Doc::parse(&text).expect("generated JSON");
            prop_assert_eq!(&parsed, &Doc::from_json(&value));
            prop_assert_eq!(parsed.to_json_string(), Doc::from_json(&value).to_json_string());
        }
    }

    #[test]
    fn names_repeated_in_large_objects_keep_their_first_place() {
        // 40 distinct names, then repeats of the 3rd and the 35th: past the linear search.
        let mut members: Vec<String> = (0..40).map(|i| format!("\"k{i}\":{i}")).collect();
        members.push("\"k2\":\"late\"".into());
        members.push("\"k34\":null".into());
        let text = format!("{{{}}}", members.join(","));
        let value: serde_json::Value = serde_json::from_str(&text).expect("json");
        let parsed = Doc::parse(&text).expect("json");
        assert_eq!(parsed, Doc::from_json(&value));
        let o = parsed.as_object().expect("object");
        assert_eq!(o.len(), 40);
        assert_eq!(o.at(2), Some(("k2", &Doc::String("late".into()))));
        assert_eq!(o.at(34), Some(("k34", &Doc::Null)));
    }

    #[test]
    fn parse_errors_carry_serde_positions() {
        let e = Doc::parse("{\"a\":\n  [1,}").expect_err("invalid");
        assert_eq!((e.line, e.column), (2, 6));
        let deep = "[".repeat(200) + &"]".repeat(200);
        assert!(
            Doc::parse(&deep).is_err(),
            "serde_json's recursion limit holds"
        );
    }

    #[test]
    fn parse_and_write_keep_order() {
        let d = Doc::parse(r#"{"b":1,"a":{"x":[1,"s",null,true]},"c":2.5}"#).unwrap();
        assert_eq!(
            d.to_json_string(),
            r#"{"b":1,"a":{"x":[1,"s",null,true]},"c":2.5}"#
        );
    }

    #[test]
    fn member_lookup_prefers_exact_case() {
        let d = Doc::parse(r#"{"Name":1,"name":2}"#).unwrap();
        let k = Key::new("name");
        assert_eq!((&d).member(&k).and_then(|n| n.as_f64()), Some(2.0));
        let k = Key::new("NAME");
        assert_eq!((&d).member(&k).and_then(|n| n.as_f64()), Some(1.0));
    }

    #[test]
    fn number_text_is_kept_when_it_differs() {
        let n = Number::from_text(21.5, "21.50");
        assert_eq!(n.text.as_deref(), Some("21.50"));
        assert_eq!(Number::from_text(21.5, "21.5").text, None);
        let mut out = Vec::new();
        Doc::Number(n).write(&mut out);
        assert_eq!(out, b"21.50");
    }

    #[test]
    fn bad_json_has_a_position() {
        let e = Doc::parse("{\"a\":\n  [1,}").unwrap_err();
        assert_eq!((e.line, e.column), (2, 6));
    }
}

#[cfg(test)]
mod tape_tests {
    use super::*;
    use crate::{LoadOptions, Store};

    #[test]
    fn tape_copies_write_back_identically() {
        let text = br#"{"deviceId":"a","n":[1,1.5,1.50,1e3,-0,0.1,123456789012345678901234567890,1e-7,2.5e20,-3],"s":"x\"y\u00e9\n","o":{"k":{"k2":null,"t":true}},"dup":1,"dup":2}
{"deviceId":"b","tags":{},"properties":{"reported":{"temperature":21.50,"big":9007199254740993}}}
"#;
        let mut store = Store::new();
        store
            .load_bytes("t", text, &LoadOptions::default())
            .unwrap();
        let mut names = NameCache::default();
        for n in store.devices().iter() {
            let d = Doc::from_tape(n, &mut names);
            let mut want = n.to_json_string();
            // A repeated member is kept once (lookups only ever see the first).
            want = want.replace(",\"dup\":2", "");
            assert_eq!(d.to_json_string(), want);
            assert_eq!(d, Doc::from_node(n));
        }
    }
}
