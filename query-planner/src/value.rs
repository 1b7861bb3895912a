//! The value model shared by every evaluator: JSON values plus Undefined.
//!
//! Documents live in stores with their own layouts; evaluation reaches them through the
//! [`Node`] trait, a cheap copyable handle to one JSON node. Scalars are read out into
//! [`Value`]; arrays and objects stay handles so that projections copy them out exactly as
//! stored.

use std::borrow::Cow;
use std::sync::Arc;

/// The JSON type of a node.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Kind {
    /// `null`
    Null,
    /// `true` / `false`
    Bool,
    /// a number
    Number,
    /// a string
    String,
    /// an array
    Array,
    /// an object
    Object,
}

/// A member name to look up, prepared once per query.
///
/// Lookup is case-insensitive with an exact-case match preferred (spec §2.2). Stores that
/// intern keys fill `exact` and `folded_ids` with their key ids when they compile a plan, so
/// that a lookup compares integers instead of strings.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Key {
    /// The name as written in the query.
    pub name: Box<str>,
    /// The name lower-cased, for case-insensitive matching.
    pub folded: Box<str>,
    /// Store-specific id of the exactly-spelled key, if the store knows it.
    pub exact: Option<u32>,
    /// Store-specific ids of every key equal to `name` ignoring case (including `exact`).
    pub folded_ids: Box<[u32]>,
}

impl Key {
    /// A key for `name`, with no store ids.
    pub fn new(name: &str) -> Key {
        Key {
            name: name.into(),
            folded: name.to_lowercase().into(),
            exact: None,
            folded_ids: Box::new([]),
        }
    }

    /// Whether a stored member name matches this key ignoring case.
    pub fn matches_folded(&self, stored: &str) -> bool {
        stored.len() == self.name.len() && stored.eq_ignore_ascii_case(&self.name)
            || (!stored.is_ascii() && stored.to_lowercase() == *self.folded)
    }
}

/// A handle to one node of a JSON document held by a store.
pub trait Node<'a>: Copy + Sized + Send + Sync {
    /// The node's JSON type.
    fn kind(self) -> Kind;
    /// The Boolean, if this is one.
    fn as_bool(self) -> Option<bool>;
    /// The number as a double, if this is one.
    fn as_f64(self) -> Option<f64>;
    /// The string, if this is one.
    fn as_str(self) -> Option<&'a str>;
    /// The member named by `key` if this is an object: the exactly-spelled member if there is
    /// one, else the first member equal to it ignoring case, in document order.
    fn member(self, key: &Key) -> Option<Self>;
    /// Element `index` if this is an array.
    fn element(self, index: usize) -> Option<Self>;
    /// Number of elements or members (0 for scalars).
    fn len(self) -> usize;
    /// Whether there are no elements or members (always for scalars).
    fn is_empty(self) -> bool {
        self.len() == 0
    }
    /// Appends the node as JSON text, exactly as stored (member order and number text kept).
    fn write_json(self, out: &mut Vec<u8>);
    /// Calls `f` for each member of an object, in order.
    fn for_each_member(self, f: &mut dyn FnMut(&str, Self));

    /// Reads this node as a [`Value`]: scalars are copied out, arrays and objects stay handles.
    fn value(self) -> Value<'a, Self> {
        match self.kind() {
            Kind::Null => Value::Null,
            Kind::Bool => Value::Bool(self.as_bool().unwrap_or(false)),
            Kind::Number => Value::Number(self.as_f64().unwrap_or(f64::NAN)),
            Kind::String => Value::String(Cow::Borrowed(self.as_str().unwrap_or(""))),
            Kind::Array | Kind::Object => Value::Node(self),
        }
    }
}

/// The result of evaluating an expression.
#[derive(Clone, Debug)]
pub enum Value<'a, N> {
    /// No value: a missing member, a type mismatch, an unsupported operation.
    Undefined,
    /// JSON `null`.
    Null,
    /// A Boolean.
    Bool(bool),
    /// A number (IEEE double).
    Number(f64),
    /// A string.
    String(Cow<'a, str>),
    /// An array or object inside a stored document.
    Node(N),
    /// An array or object built by the query itself (an array literal).
    Json(Arc<serde_json::Value>),
}

impl<'a, N: Node<'a>> Value<'a, N> {
    /// The JSON type, or `None` for Undefined.
    pub fn kind(&self) -> Option<Kind> {
        Some(match self {
            Value::Undefined => return None,
            Value::Null => Kind::Null,
            Value::Bool(_) => Kind::Bool,
            Value::Number(_) => Kind::Number,
            Value::String(_) => Kind::String,
            Value::Node(n) => n.kind(),
            Value::Json(j) => match &**j {
                serde_json::Value::Array(_) => Kind::Array,
                _ => Kind::Object,
            },
        })
    }

    /// Whether this is the Boolean `true` (the only value that passes a condition).
    pub fn is_true(&self) -> bool {
        matches!(self, Value::Bool(true))
    }

    /// Whether the value is defined.
    pub fn is_defined(&self) -> bool {
        !matches!(self, Value::Undefined)
    }

    /// The string, if this is one.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::String(s) => Some(s),
            _ => None,
        }
    }

    /// The number, if this is one.
    pub fn as_f64(&self) -> Option<f64> {
        match self {
            Value::Number(n) => Some(*n),
            _ => None,
        }
    }

    /// Appends the value as JSON text (nothing for Undefined).
    pub fn write_json(&self, out: &mut Vec<u8>) {
        match self {
            Value::Undefined => {}
            Value::Null => out.extend_from_slice(b"null"),
            Value::Bool(b) => out.extend_from_slice(if *b { b"true" } else { b"false" }),
            Value::Number(n) => write_number(*n, out),
            Value::String(s) => write_json_string(s, out),
            Value::Node(n) => n.write_json(out),
            Value::Json(j) => {
                out.extend_from_slice(serde_json::to_string(&**j).unwrap_or_default().as_bytes())
            }
        }
    }

    /// Converts to an owned value with no lifetime (for group keys and aggregates).
    pub fn to_owned_scalar(&self) -> Scalar {
        match self {
            Value::Undefined => Scalar::Undefined,
            Value::Null => Scalar::Null,
            Value::Bool(b) => Scalar::Bool(*b),
            Value::Number(n) => Scalar::Number(ordered_float::OrderedFloat(*n)),
            Value::String(s) => Scalar::String(s.to_string().into()),
            other => {
                let mut out = Vec::new();
                other.write_json(&mut out);
                Scalar::Json(String::from_utf8(out).unwrap_or_default().into())
            }
        }
    }
}

/// An owned, hashable value: group keys and aggregate results.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Scalar {
    /// Undefined (a group whose key is missing).
    Undefined,
    /// `null`
    Null,
    /// a Boolean
    Bool(bool),
    /// a number
    Number(ordered_float::OrderedFloat<f64>),
    /// a string
    String(Arc<str>),
    /// an array or object, as its JSON text
    Json(Arc<str>),
}

impl Scalar {
    /// Appends the scalar as JSON text (nothing for Undefined).
    pub fn write_json(&self, out: &mut Vec<u8>) {
        match self {
            Scalar::Undefined => {}
            Scalar::Null => out.extend_from_slice(b"null"),
            Scalar::Bool(b) => out.extend_from_slice(if *b { b"true" } else { b"false" }),
            Scalar::Number(n) => write_number(n.0, out),
            Scalar::String(s) => write_json_string(s, out),
            Scalar::Json(j) => out.extend_from_slice(j.as_bytes()),
        }
    }
}

/// Appends a computed number as JSON: integers without a fraction, others in shortest form;
/// non-finite numbers (which JSON cannot hold) as `null`.
pub fn write_number(n: f64, out: &mut Vec<u8>) {
    use std::io::Write;
    if !n.is_finite() {
        out.extend_from_slice(b"null");
    } else if n.fract() == 0.0 && n.abs() < 1e17 {
        let _ = write!(out, "{}", n as i64);
    } else {
        let _ = write!(out, "{n}");
    }
}

/// The high bit of each byte of the eight-byte word `w` that JSON must escape (a control
/// character, `"` or `\\`). Borrows can also flag bytes above a flagged one, never below it,
/// so the lowest flagged byte is always a real one, and the mask is zero exactly when no byte
/// needs an escape.
#[inline(always)]
pub fn json_escape_mask(w: u64) -> u64 {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    let zeros = |w: u64| w.wrapping_sub(ONES) & !w & HIGH;
    (w.wrapping_sub(ONES * 0x20) & !w & HIGH)
        | zeros(w ^ (ONES * u64::from(b'"')))
        | zeros(w ^ (ONES * u64::from(b'\\')))
}

/// Appends `s` as a JSON string literal, escaped as `serde_json` escapes: `\"`, `\\`, the
/// short escapes `\b \f \n \r \t`, and `\u00XX` for the other control characters.
pub fn write_json_string(s: &str, out: &mut Vec<u8>) {
    write_json_bytes(s.as_bytes(), out);
}

/// [`write_json_string`] for UTF-8 text given as bytes.
#[inline]
pub fn write_json_bytes(bytes: &[u8], out: &mut Vec<u8>) {
    out.reserve(bytes.len() + 2);
    out.push(b'"');
    let mut start = 0;
    let mut i = 0;
    while i < bytes.len() {
        // Eight bytes at a time while none needs an escape.
        while let Some(word) = bytes.get(i..i + 8) {
            let mut w = [0u8; 8];
            w.copy_from_slice(word);
            if json_escape_mask(u64::from_le_bytes(w)) != 0 {
                break;
            }
            i += 8;
        }
        let Some(&b) = bytes.get(i) else {
            break;
        };
        i += 1;
        if b >= 0x20 && b != b'"' && b != b'\\' {
            continue;
        }
        out.extend_from_slice(&bytes[start..i - 1]);
        start = i;
        let short = match b {
            b'"' => b'"',
            b'\\' => b'\\',
            0x08 => b'b',
            0x0c => b'f',
            b'\n' => b'n',
            b'\r' => b'r',
            b'\t' => b't',
            _ => {
                const HEX: &[u8; 16] = b"0123456789abcdef";
                out.extend_from_slice(b"\\u00");
                out.push(HEX[usize::from(b >> 4)]);
                out.push(HEX[usize::from(b & 0xf)]);
                continue;
            }
        };
        out.push(b'\\');
        out.push(short);
    }
    out.extend_from_slice(&bytes[start..]);
    out.push(b'"');
}

impl<'a> Node<'a> for &'a serde_json::Value {
    fn kind(self) -> Kind {
        match self {
            serde_json::Value::Null => Kind::Null,
            serde_json::Value::Bool(_) => Kind::Bool,
            serde_json::Value::Number(_) => Kind::Number,
            serde_json::Value::String(_) => Kind::String,
            serde_json::Value::Array(_) => Kind::Array,
            serde_json::Value::Object(_) => Kind::Object,
        }
    }
    fn as_bool(self) -> Option<bool> {
        serde_json::Value::as_bool(self)
    }
    fn as_f64(self) -> Option<f64> {
        serde_json::Value::as_f64(self)
    }
    fn as_str(self) -> Option<&'a str> {
        serde_json::Value::as_str(self)
    }
    fn member(self, key: &Key) -> Option<Self> {
        let obj = self.as_object()?;
        if let Some(v) = obj.get(&*key.name) {
            return Some(v);
        }
        obj.iter()
            .find(|(k, _)| key.matches_folded(k))
            .map(|(_, v)| v)
    }
    fn element(self, index: usize) -> Option<Self> {
        self.as_array()?.get(index)
    }
    fn len(self) -> usize {
        match self {
            serde_json::Value::Array(a) => a.len(),
            serde_json::Value::Object(o) => o.len(),
            _ => 0,
        }
    }
    fn write_json(self, out: &mut Vec<u8>) {
        out.extend_from_slice(serde_json::to_string(self).unwrap_or_default().as_bytes());
    }
    fn for_each_member(self, f: &mut dyn FnMut(&str, Self)) {
        if let Some(o) = self.as_object() {
            for (k, v) in o {
                f(k, v);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::write_json_string;
    use proptest::prelude::*;

    fn written(s: &str) -> String {
        let mut out = Vec::new();
        write_json_string(s, &mut out);
        String::from_utf8(out).unwrap()
    }

    /// Strings rich in the characters JSON escapes, at every position of a word.
    fn escapable() -> impl Strategy<Value = String> {
        prop::collection::vec(
            prop_oneof![
                prop::sample::select(vec!['"', '\\', '\u{8}', '\u{c}', '\n', '\r', '\t', '\0']),
                prop::sample::select(vec!['\u{1f}', '\u{7f}', 'a', ' ', 'é', '€', '😀']),
                any::<char>(),
            ],
            0..40,
        )
        .prop_map(|cs| cs.into_iter().collect())
    }

    proptest! {
        #[test]
        fn strings_are_written_as_serde_json_writes_them(s in escapable()) {
            prop_assert_eq!(written(&s), serde_json::to_string(&s).unwrap());
        }
    }

    #[test]
    fn each_escaped_character_at_each_offset() {
        for c in (0u8..0x20).chain([b'"', b'\\', b'a', 0x7f]) {
            for at in 0..17 {
                let mut s = "x".repeat(at);
                s.push(char::from(c));
                s.push_str("yz");
                assert_eq!(
                    written(&s),
                    serde_json::to_string(&s).unwrap(),
                    "{c:#x} at {at}"
                );
            }
        }
    }
}
