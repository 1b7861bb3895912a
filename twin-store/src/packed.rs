//! Written twins, packed: the form a twin keeps in the overlay between writes.
//!
//! A written twin is kept as one string, [`Packed`]: a tape of tagged nodes in which objects
//! and arrays carry their body length (so a lookup skips siblings) and member names are the
//! store's key ids (a name the store's dictionary does not hold is written inline). A packed
//! twin takes about a sixth of the memory of its tree and half its JSON text (one allocation
//! instead of one per node and string), is freed with one call, and is read by queries
//! through [`PackedRef`], a [`Node`] like any other. A packed document is read with the store
//! it was packed for ([`Packed::root`]): its key ids are that store's.
//!
//! A device's reported patch is made on the packed bytes
//! ([`twin::apply_packed`](crate::twin::apply_packed)): the members it does not name are
//! copied whole, and a loaded twin is first packed straight from its tape
//! ([`Packed::from_tape`]). Any other write copies the twin into an owned [`Doc`] tree,
//! applies the IoT Hub rules to it, and packs the result.
//!
//! Every byte the packer writes itself is below `0x80` and strings are copied whole, so the
//! packed text is valid UTF-8 and string reads are plain slices of it. Nothing here is
//! persisted: the write-ahead log and segments have their own formats.
//!
//! ```
//! use twinql_planner::value::{Key, Node};
//! use twinql_store::Doc;
//! use twinql_store::packed::Packed;
//!
//! let store = twinql_store::Store::new();
//! let doc = Doc::parse(r#"{"deviceId":"d1","properties":{"reported":{"temp":21.50}}}"#).unwrap();
//! let packed = Packed::pack(&doc, &store);
//! let root = packed.root(&store);
//! let temp = root
//!     .member(&Key::new("properties"))
//!     .and_then(|p| p.member(&Key::new("reported")))
//!     .and_then(|r| r.member(&Key::new("TEMP")))
//!     .unwrap();
//! assert_eq!(temp.as_f64(), Some(21.5));
//! let mut text = Vec::new();
//! root.write_json(&mut text);
//! assert_eq!(text, doc.to_json_string().into_bytes());
//! ```

use twinql_planner::value::{Key, Kind, Node, write_json_string, write_number};

use crate::dict::KeyDict;
use crate::doc::{Doc, NameCache, Number, Object};
use crate::store::Store;
use crate::tape::{NodeRef, get_varint, put_varint, skip_varint, varint_len, zigzag};

const NULL: u8 = 0x00;
const FALSE: u8 = 0x01;
const TRUE: u8 = 0x02;
/// An integer-valued double below 2^53 in magnitude (not `-0`): zigzag varint.
const INT: u8 = 0x03;
/// Any other double: its bits as a varint.
const FLOAT: u8 = 0x04;
/// A double and the text it was written with: bits, text length, text.
const NUM_TEXT: u8 = 0x05;
/// Length, bytes.
const STR: u8 = 0x06;
/// Body length (five varint bytes), count, elements.
const ARR: u8 = 0x07;
/// Body length (five varint bytes), count, then per member: name, value. A name is a varint
/// `h`: the store's key id `h - 1`, or for `0` a varint length and the name's text.
pub(crate) const OBJ: u8 = 0x08;

/// Bytes of the body length of an array or object: a varint of 30 bits, written in full so
/// that it can be filled in after the body.
const LEN_BYTES: usize = 5;

/// A packed document.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Packed(Box<str>);

impl Packed {
    /// Packs `doc`. Bodies longer than 2^30 bytes do not fit a twin's limits; such a document
    /// is packed as `null`.
    pub fn pack(doc: &Doc, store: &Store) -> Packed {
        Packed::build(|out| pack_into(doc, &store.dict, out))
    }

    /// Packs a loaded document straight from its tape: the same bytes as
    /// `Packed::pack(&Doc::from_tape(n, names), store)` (the first of repeated member names kept,
    /// number text kept where the value would print differently), without the tree.
    pub fn from_tape(n: NodeRef<'_>) -> Packed {
        let mut seen = Vec::new();
        Packed::build(|out| pack_tape(n, out, &mut seen))
    }

    /// Runs `write` on an empty buffer and keeps what it wrote (`null` if it gave up).
    pub(crate) fn build(write: impl FnOnce(&mut Vec<u8>) -> Option<()>) -> Packed {
        Packed::try_build(write).unwrap_or_else(|| Packed(Box::from("\u{0}")))
    }

    /// Runs `write` on an empty buffer and keeps what it wrote; `None` if it gave up.
    pub(crate) fn try_build(write: impl FnOnce(&mut Vec<u8>) -> Option<()>) -> Option<Packed> {
        thread_local! {
            /// Each writing thread packs into one buffer, then copies the result out at its
            /// exact size: no growth steps and no shrinking per write.
            static BUF: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
        }
        BUF.with_borrow_mut(|out| {
            out.clear();
            let packed = write(out).map(|()| {
                // Every byte written is ASCII or copied from a `str`: this never fails.
                Packed(Box::from(
                    simdutf8::basic::from_utf8(out).unwrap_or_default(),
                ))
            });
            if out.capacity() > 1 << 20 {
                *out = Vec::new();
            }
            packed
        })
    }

    /// The root node, read with the store the document was packed for.
    pub fn root<'a>(&'a self, store: &'a Store) -> PackedRef<'a> {
        self.root_in(&store.dict)
    }

    /// The root node, read with the key dictionary the document was packed with.
    pub(crate) fn root_in<'a>(&'a self, dict: &'a KeyDict) -> PackedRef<'a> {
        PackedRef {
            s: &self.0,
            pos: 0,
            dict,
        }
    }

    /// Bytes held.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether nothing is held (never, for a packed document).
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Unpacks into an owned tree; member names come from `names`, shared rather than copied.
    pub fn unpack(&self, store: &Store, names: &mut NameCache) -> Doc {
        unpack(self.root(store), names)
    }
}

pub(crate) fn pack_into(doc: &Doc, dict: &KeyDict, out: &mut Vec<u8>) -> Option<()> {
    match doc {
        Doc::Null => out.push(NULL),
        Doc::Bool(false) => out.push(FALSE),
        Doc::Bool(true) => out.push(TRUE),
        Doc::Number(Number { value, text }) => pack_number(*value, text.as_deref(), out),
        Doc::String(s) => pack_str(s, out),
        Doc::Array(a) => {
            let at = open(out, ARR, a.len());
            for v in a {
                pack_into(v, dict, out)?;
            }
            close(out, at)?;
        }
        Doc::Object(o) => {
            let at = open(out, OBJ, o.len());
            for (k, v) in o.iter() {
                pack_name(dict, k, out);
                pack_into(v, dict, out)?;
            }
            close(out, at)?;
        }
    }
    Some(())
}

/// A number and the text it keeps (when its value alone would print differently).
pub(crate) fn pack_number(v: f64, text: Option<&str>, out: &mut Vec<u8>) {
    match text {
        Some(t) => {
            out.push(NUM_TEXT);
            put_varint(out, v.to_bits());
            put_varint(out, t.len() as u64);
            out.extend_from_slice(t.as_bytes());
        }
        None if v.fract() == 0.0
            && v.abs() < 9_007_199_254_740_992.0
            && !(v == 0.0 && v.is_sign_negative()) =>
        {
            out.push(INT);
            put_varint(out, zigzag(v as i64));
        }
        None => {
            out.push(FLOAT);
            put_varint(out, v.to_bits());
        }
    }
}

pub(crate) fn pack_str(s: &str, out: &mut Vec<u8>) {
    out.push(STR);
    put_varint(out, s.len() as u64);
    out.extend_from_slice(s.as_bytes());
}

/// A member name, as an object's member starts: its key id in `dict`, else its text.
pub(crate) fn pack_name(dict: &KeyDict, name: &str, out: &mut Vec<u8>) {
    NameKey::new(dict, name).pack(out);
}

/// A member name given by its key id.
#[inline]
pub(crate) fn pack_id(id: u32, out: &mut Vec<u8>) {
    put_varint(out, u64::from(id) + 1);
}

/// A member name looked up once in the dictionary, to write and compare without hashing.
#[derive(Clone, Copy, Debug)]
pub(crate) struct NameKey<'k> {
    id: Option<u32>,
    pub(crate) text: &'k str,
}

impl<'k> NameKey<'k> {
    pub(crate) fn new(dict: &KeyDict, text: &'k str) -> NameKey<'k> {
        NameKey {
            id: dict.get(text),
            text,
        }
    }

    /// [`KNOWN`](crate::dict::KNOWN)`[i]`, whose id the dictionary keeps at hand.
    pub(crate) fn known(dict: &KeyDict, i: usize) -> NameKey<'static> {
        NameKey {
            id: dict.known(i),
            text: crate::dict::KNOWN.get(i).copied().unwrap_or(""),
        }
    }

    /// The name's key id, if the dictionary has it.
    #[cfg(test)]
    pub(crate) fn id(&self) -> Option<u32> {
        self.id
    }

    /// Writes the name as [`pack_name`] does.
    #[inline]
    pub(crate) fn pack(&self, out: &mut Vec<u8>) {
        match self.id {
            Some(id) => pack_id(id, out),
            None => {
                out.push(0);
                put_varint(out, self.text.len() as u64);
                out.extend_from_slice(self.text.as_bytes());
            }
        }
    }
}

/// A member name as packed: a key id or inline text.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) enum Name<'a> {
    Id(u32),
    Text(&'a str),
}

impl Name<'_> {
    /// Whether this is the name `key` (an id compares as an integer: ids are unique names).
    #[inline]
    pub(crate) fn is(self, key: &NameKey<'_>) -> bool {
        match self {
            Name::Id(x) => key.id == Some(x),
            Name::Text(t) => t == key.text,
        }
    }
}

/// Packs a tape node as [`pack_into`] packs its tree (see [`Packed::from_tape`]). `seen` is
/// scratch space: the key ids of the members of the objects being packed.
fn pack_tape(n: NodeRef<'_>, out: &mut Vec<u8>, seen: &mut Vec<u32>) -> Option<()> {
    match n.kind() {
        Kind::Null => out.push(NULL),
        Kind::Bool => out.push(if n.as_bool() == Some(true) {
            TRUE
        } else {
            FALSE
        }),
        Kind::Number => {
            let value = n.as_f64().unwrap_or(f64::NAN);
            if value.abs() >= 9.0e15 {
                // As `Doc::from_tape`: integers beyond 2^53 keep the text they print as.
                pack_into(&Doc::from_node(n), n.dict, out)?;
            } else {
                pack_number(value, n.kept_number_text(), out);
            }
        }
        Kind::String => pack_str(n.as_str().unwrap_or(""), out),
        Kind::Array => {
            let at = open(out, ARR, n.elements().len());
            for e in n.elements() {
                pack_tape(e, out, seen)?;
            }
            close(out, at)?;
        }
        Kind::Object => {
            // Member names are store-wide key ids: a repeated name is a repeated id, and only
            // its first member is kept.
            let members = n.members();
            let listed = members.len();
            let at = open(out, OBJ, listed);
            let from = seen.len();
            for (_, id, v) in members {
                if seen[from..].contains(&id) {
                    continue;
                }
                seen.push(id);
                pack_id(id, out);
                let mark = seen.len();
                pack_tape(v, out, seen)?;
                seen.truncate(mark);
            }
            let kept = seen.len() - from;
            seen.truncate(from);
            if kept != listed {
                recount(out, at, listed, kept);
            }
            close(out, at)?;
        }
    }
    Some(())
}

/// Writes a container's tag, a placeholder for its body length and its count; returns where
/// the placeholder is.
pub(crate) fn open(out: &mut Vec<u8>, tag: u8, count: usize) -> usize {
    out.push(tag);
    let at = out.len();
    out.extend_from_slice(&[0; LEN_BYTES]);
    put_varint(out, count as u64);
    at
}

/// Replaces the count `listed` that [`open`] wrote after the placeholder at `at` by `kept`.
fn recount(out: &mut Vec<u8>, at: usize, listed: usize, kept: usize) {
    let start = at + LEN_BYTES;
    let old = varint_len(listed as u64);
    if kept < 64 && old == 1 {
        // The usual case (a count written as 0, or a few members): one byte in place.
        if let Some(b) = out.get_mut(start) {
            *b = kept as u8;
            return;
        }
    }
    let mut count = Vec::new();
    put_varint(&mut count, kept as u64);
    out.splice(start..start + old, count);
}

/// Closes a container [`open`]ed with a count of 0 that holds `count` elements or members.
pub(crate) fn finish(out: &mut Vec<u8>, at: usize, count: usize) -> Option<()> {
    if count != 0 {
        recount(out, at, 0, count);
    }
    close(out, at)
}

/// Fills in the body length of the container whose placeholder is at `at`.
pub(crate) fn close(out: &mut [u8], at: usize) -> Option<()> {
    let body = out.len() - (at + LEN_BYTES);
    if body >= 1 << (6 * LEN_BYTES) {
        return None;
    }
    let mut v = body as u64;
    for (i, b) in out[at..at + LEN_BYTES].iter_mut().enumerate() {
        let more = if i + 1 < LEN_BYTES { 0x40 } else { 0 };
        *b = (v & 0x3f) as u8 | more;
        v >>= 6;
    }
    Some(())
}

/// Reads a container's body length at `pos` (always [`LEN_BYTES`] varint bytes, as
/// [`close`] writes it); returns it and the position after it.
#[inline(always)]
fn body_len(t: &[u8], pos: usize) -> (u64, usize) {
    match t.get(pos..pos + LEN_BYTES) {
        Some(b) => {
            let v = b
                .iter()
                .rev()
                .fold(0u64, |v, &byte| (v << 6) | u64::from(byte & 0x3f));
            (v, pos + LEN_BYTES)
        }
        None => get_varint(t, pos),
    }
}

fn unzigzag(u: u64) -> i64 {
    ((u >> 1) as i64) ^ -((u & 1) as i64)
}

/// A node of a packed document, with the key dictionary its names are ids of.
#[derive(Clone, Copy)]
pub struct PackedRef<'a> {
    s: &'a str,
    pos: usize,
    dict: &'a KeyDict,
}

impl std::fmt::Debug for PackedRef<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut out = Vec::new();
        self.write_json(&mut out);
        f.write_str(&String::from_utf8_lossy(&out))
    }
}

impl<'a> PackedRef<'a> {
    fn bytes(self) -> &'a [u8] {
        self.s.as_bytes()
    }

    fn tag(self) -> u8 {
        self.bytes().get(self.pos).copied().unwrap_or(NULL)
    }

    /// For an array or object: the position after it and its count, and where its first
    /// element or member starts.
    fn container(self) -> Option<(usize, u64, usize)> {
        match self.tag() {
            ARR | OBJ => {
                let (len, p) = body_len(self.bytes(), self.pos + 1);
                let (count, first) = get_varint(self.bytes(), p);
                Some((p + len as usize, count, first))
            }
            _ => None,
        }
    }

    /// The position just after this node.
    fn end(self) -> usize {
        let t = self.bytes();
        let p = self.pos + 1;
        match self.tag() {
            INT | FLOAT => skip_varint(t, p),
            NUM_TEXT => {
                let p = skip_varint(t, p);
                let (len, p) = get_varint(t, p);
                p + len as usize
            }
            STR => {
                let (len, p) = get_varint(t, p);
                p + len as usize
            }
            ARR | OBJ => {
                let (len, p) = body_len(t, p);
                p + len as usize
            }
            _ => p,
        }
    }

    fn at(self, pos: usize) -> PackedRef<'a> {
        PackedRef {
            s: self.s,
            pos,
            dict: self.dict,
        }
    }

    /// The member name starting at `pos`, and where its value starts.
    #[inline]
    fn name_at(self, pos: usize) -> Option<(Name<'a>, usize)> {
        let (h, p) = get_varint(self.bytes(), pos);
        if h != 0 {
            return Some((Name::Id(u32::try_from(h - 1).ok()?), p));
        }
        let (len, p) = get_varint(self.bytes(), p);
        let end = p.checked_add(usize::try_from(len).ok()?)?;
        Some((Name::Text(self.s.get(p..end)?), end))
    }

    /// The first member named exactly `name`, whose key id in the store is `id` (`None`
    /// when the store has no such name, or to compare text only).
    pub(crate) fn exact_member(self, name: &str, id: Option<u32>) -> Option<PackedRef<'a>> {
        // Names packed as ids are ids of this dictionary: one lookup, then integers compare.
        let id = id.or_else(|| self.dict.get(name));
        if self.tag() != OBJ {
            return None;
        }
        // The index diff's hot loop: positions only, no handle per member.
        let (end, count, mut p) = self.container()?;
        let wanted = id.map_or(0, |id| u64::from(id) + 1);
        for _ in 0..count {
            if p >= end {
                break;
            }
            let (h, vp) = get_varint(self.bytes(), p);
            let vp = if h != 0 {
                if h == wanted {
                    return Some(self.at(vp));
                }
                vp
            } else {
                let (Name::Text(t), vp) = self.name_at(p)? else {
                    return None;
                };
                if t == name {
                    return Some(self.at(vp));
                }
                vp
            };
            p = self.at(vp).end();
        }
        None
    }

    /// The text of a name.
    #[inline]
    pub(crate) fn text(self, name: Name<'a>) -> &'a str {
        match name {
            Name::Id(id) => self.dict.name(id),
            Name::Text(t) => t,
        }
    }

    /// The members of an object, in order (none for other nodes).
    pub fn members(self) -> PackedMembers<'a> {
        match self.tag() {
            OBJ => {
                let (end, count, first) = self.container().unwrap_or((0, 0, 0));
                PackedMembers {
                    node: self.at(first),
                    end,
                    left: count,
                }
            }
            _ => PackedMembers {
                node: self,
                end: 0,
                left: 0,
            },
        }
    }

    /// The members of an object with the bytes of each (name and value), to copy whole.
    pub(crate) fn member_bytes(self) -> impl Iterator<Item = (&'a [u8], Name<'a>, PackedRef<'a>)> {
        let mut members = self.members();
        std::iter::from_fn(move || {
            let start = members.node.pos;
            let (name, value) = members.next_raw()?;
            let bytes = self.bytes().get(start..value.end())?;
            Some((bytes, name, value))
        })
    }

    /// The members of an object with their names as packed.
    pub(crate) fn raw_members(self) -> impl Iterator<Item = (Name<'a>, PackedRef<'a>)> {
        let mut members = self.members();
        std::iter::from_fn(move || members.next_raw())
    }

    /// The first member named `key`.
    pub(crate) fn member_named(self, key: &NameKey<'_>) -> Option<PackedRef<'a>> {
        self.raw_members().find(|(n, _)| n.is(key)).map(|(_, v)| v)
    }

    /// The elements of an array, in order (none for other nodes).
    pub fn elements(self) -> impl Iterator<Item = PackedRef<'a>> {
        let (mut pos, left) = match self.tag() {
            ARR => {
                let (_, count, first) = self.container().unwrap_or((0, 0, 0));
                (first, count)
            }
            _ => (0, 0),
        };
        (0..left).map(move |_| {
            let e = self.at(pos);
            pos = e.end();
            e
        })
    }

    /// The text a number was written with, when its value alone would print differently.
    pub fn kept_number_text(self) -> Option<&'a str> {
        if self.tag() != NUM_TEXT {
            return None;
        }
        let (_, p) = get_varint(self.bytes(), self.pos + 1);
        let (len, p) = get_varint(self.bytes(), p);
        self.s.get(p..p + len as usize)
    }
}

/// The members of a packed object: name and value.
#[derive(Clone, Debug)]
pub struct PackedMembers<'a> {
    node: PackedRef<'a>,
    end: usize,
    left: u64,
}

impl<'a> PackedMembers<'a> {
    /// The next member with its name as packed.
    #[inline]
    fn next_raw(&mut self) -> Option<(Name<'a>, PackedRef<'a>)> {
        if self.left == 0 || self.node.pos >= self.end {
            return None;
        }
        self.left -= 1;
        let (name, p) = self.node.name_at(self.node.pos)?;
        let value = self.node.at(p);
        self.node = self.node.at(value.end());
        Some((name, value))
    }
}

impl<'a> Iterator for PackedMembers<'a> {
    type Item = (&'a str, PackedRef<'a>);

    fn next(&mut self) -> Option<Self::Item> {
        self.next_raw().map(|(name, v)| (v.text(name), v))
    }
}

impl<'a> Node<'a> for PackedRef<'a> {
    fn kind(self) -> Kind {
        match self.tag() {
            NULL => Kind::Null,
            FALSE | TRUE => Kind::Bool,
            INT | FLOAT | NUM_TEXT => Kind::Number,
            STR => Kind::String,
            ARR => Kind::Array,
            _ => Kind::Object,
        }
    }

    fn as_bool(self) -> Option<bool> {
        match self.tag() {
            FALSE => Some(false),
            TRUE => Some(true),
            _ => None,
        }
    }

    fn as_f64(self) -> Option<f64> {
        let (v, _) = get_varint(self.bytes(), self.pos + 1);
        match self.tag() {
            INT => Some(unzigzag(v) as f64),
            FLOAT | NUM_TEXT => Some(f64::from_bits(v)),
            _ => None,
        }
    }

    fn as_str(self) -> Option<&'a str> {
        if self.tag() != STR {
            return None;
        }
        let (len, p) = get_varint(self.bytes(), self.pos + 1);
        self.s.get(p..p + len as usize)
    }

    fn member(self, key: &Key) -> Option<Self> {
        // As `NodeRef::member`: with the key's ids resolved against this store, names that are
        // ids compare as integers (inline names, new to the store, compare as text); the
        // exact spelling wins, else the first name equal ignoring case.
        if self.tag() != OBJ {
            return None;
        }
        let (end, count, mut p) = self.container()?;
        let resolved = key.exact.is_some() || !key.folded_ids.is_empty();
        let mut folded: Option<usize> = None;
        for _ in 0..count {
            if p >= end {
                break;
            }
            let (name, vp) = self.name_at(p)?;
            let (exact, fold) = match name {
                Name::Id(id) if resolved => (
                    key.exact == Some(id),
                    folded.is_none() && key.folded_ids.contains(&id),
                ),
                _ => {
                    let text = self.text(name);
                    (
                        text == &*key.name,
                        folded.is_none() && key.matches_folded(text),
                    )
                }
            };
            if exact {
                return Some(self.at(vp));
            }
            if fold {
                folded = Some(vp);
            }
            p = self.at(vp).end();
        }
        folded.map(|vp| self.at(vp))
    }

    fn element(self, index: usize) -> Option<Self> {
        self.elements().nth(index)
    }

    fn len(self) -> usize {
        self.container().map_or(0, |(_, count, _)| count as usize)
    }

    fn write_json(self, out: &mut Vec<u8>) {
        match self.tag() {
            NULL => out.extend_from_slice(b"null"),
            FALSE => out.extend_from_slice(b"false"),
            TRUE => out.extend_from_slice(b"true"),
            INT | FLOAT => write_number(self.as_f64().unwrap_or(f64::NAN), out),
            NUM_TEXT => out.extend_from_slice(self.kept_number_text().unwrap_or("").as_bytes()),
            STR => write_json_string(self.as_str().unwrap_or(""), out),
            ARR => {
                out.push(b'[');
                for (i, e) in self.elements().enumerate() {
                    if i > 0 {
                        out.push(b',');
                    }
                    e.write_json(out);
                }
                out.push(b']');
            }
            _ => {
                out.push(b'{');
                let mut members = self.members();
                let mut first = true;
                while let Some((name, v)) = members.next_raw() {
                    if !first {
                        out.push(b',');
                    }
                    first = false;
                    match name {
                        // The dictionary keeps each name's `"name":` escaped.
                        Name::Id(id) => out.extend_from_slice(self.dict.json_name(id)),
                        Name::Text(k) => {
                            write_json_string(k, out);
                            out.push(b':');
                        }
                    }
                    v.write_json(out);
                }
                out.push(b'}');
            }
        }
    }

    fn for_each_member(self, f: &mut dyn FnMut(&str, Self)) {
        for (k, v) in self.members() {
            f(k, v);
        }
    }
}

fn unpack(n: PackedRef<'_>, names: &mut NameCache) -> Doc {
    match n.tag() {
        NULL => Doc::Null,
        FALSE => Doc::Bool(false),
        TRUE => Doc::Bool(true),
        INT | FLOAT | NUM_TEXT => Doc::Number(Number {
            value: n.as_f64().unwrap_or(f64::NAN),
            text: n.kept_number_text().map(Into::into),
        }),
        STR => Doc::String(n.as_str().unwrap_or("").into()),
        ARR => Doc::Array(n.elements().map(|e| unpack(e, names)).collect()),
        _ => {
            let mut o = Object::new();
            for (k, v) in n.members() {
                // Packed objects come from trees, whose member names are unique.
                o.push_new(names.named(k), unpack(v, names));
            }
            Doc::Object(o)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn json() -> impl Strategy<Value = String> {
        let leaf = prop_oneof![
            Just("null".to_string()),
            Just("true".to_string()),
            Just("false".to_string()),
            prop::sample::select(crate::doc::NUMBER_TEXTS.to_vec()).prop_map(str::to_string),
            "[a-zA-Z0-9 \u{e9}\u{4e2d}\"\\\\\n\t]{0,12}"
                .prop_map(|s| serde_json::to_string(&s).unwrap_or_default()),
        ];
        leaf.prop_recursive(4, 48, 6, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..6)
                    .prop_map(|v| format!("[{}]", v.join(","))),
                prop::collection::vec(
                    (
                        prop::sample::select(vec![
                            "a", "A", "b", "$meta", "Temp", "temp", "x y", "\u{e9}"
                        ]),
                        inner
                    ),
                    0..6
                )
                .prop_map(|kv| {
                    let body: Vec<String> = kv
                        .iter()
                        .map(|(k, v)| {
                            format!("{}:{v}", serde_json::to_string(k).unwrap_or_default())
                        })
                        .collect();
                    format!("{{{}}}", body.join(","))
                }),
            ]
        })
    }

    /// Every path reachable in `d` by member names and indexes reads the same from the tree
    /// and from the packed copy.
    /// Keys are probed unresolved (compared as text) and resolved against `store` (the store
    /// `p` was packed for: ids compare as integers).
    fn same_reads(d: &Doc, p: PackedRef<'_>, store: &Store) -> Result<(), TestCaseError> {
        prop_assert_eq!(Node::kind(d), p.kind());
        prop_assert_eq!(Node::len(d), p.len());
        prop_assert_eq!(Node::as_bool(d), p.as_bool());
        prop_assert_eq!(
            Node::as_f64(d).map(f64::to_bits),
            p.as_f64().map(f64::to_bits)
        );
        prop_assert_eq!(Node::as_str(d), p.as_str());
        let (mut a, mut b) = (Vec::new(), Vec::new());
        Node::write_json(d, &mut a);
        p.write_json(&mut b);
        prop_assert_eq!(a, b);
        let mut names = Vec::new();
        Node::for_each_member(d, &mut |k, _| names.push(k.to_string()));
        let packed_names: Vec<String> = p.members().map(|(k, _)| k.to_string()).collect();
        prop_assert_eq!(&names, &packed_names);
        for probe in names
            .iter()
            .map(String::as_str)
            .chain(["A", "TEMP", "missing", "B"])
        {
            let mut resolved = Key::new(probe);
            store.resolve_key(&mut resolved);
            for key in [Key::new(probe), resolved] {
                match (Node::member(d, &key), p.member(&key)) {
                    (Some(x), Some(y)) => same_reads(x, y, store)?,
                    (None, None) => {}
                    (x, y) => prop_assert!(false, "member {probe}: {x:?} vs {y:?}"),
                }
            }
        }
        for i in 0..Node::len(d) + 1 {
            match (Node::element(d, i), p.element(i)) {
                (Some(x), Some(y)) => same_reads(x, y, store)?,
                (None, None) => {}
                (x, y) => prop_assert!(false, "element {i}: {x:?} vs {y:?}"),
            }
        }
        Ok(())
    }

    /// A store whose dictionary holds some of the generated names (`a`, `Temp`, `$meta`):
    /// those are packed as key ids, the others (`A`, `b`, `temp`, …) inline.
    fn store_knowing_some_names() -> Store {
        let mut store = Store::new();
        store
            .load_bytes(
                "t",
                br#"{"deviceId":"x","a":1,"Temp":2,"$meta":3}"#,
                &crate::LoadOptions::default(),
            )
            .expect("twin");
        store
    }

    proptest! {
        #[test]
        fn packed_documents_read_and_unpack_as_their_trees(text in json()) {
            let doc = Doc::parse(&text).expect("generated JSON");
            for store in [Store::new(), store_knowing_some_names()] {
                let packed = Packed::pack(&doc, &store);
                same_reads(&doc, packed.root(&store), &store)?;
                let mut names = NameCache::default();
                prop_assert_eq!(packed.unpack(&store, &mut names), doc.clone());
            }
        }
    }

    #[test]
    fn names_the_store_knows_are_packed_as_ids_and_found_by_resolved_keys() {
        let store = store_knowing_some_names();
        let doc = Doc::parse(r#"{"Temp":1,"temp":2,"a":3,"b":4}"#).expect("json");
        let packed = Packed::pack(&doc, &store);
        let unknown = Packed::pack(&doc, &Store::new());
        // `Temp` and `a` are one-byte ids instead of a zero, a length and their text.
        assert_eq!(unknown.len() - packed.len(), 2 + "Temp".len() + "a".len());
        let root = packed.root(&store);
        let find = |name: &str, resolve: bool| {
            let mut key = Key::new(name);
            if resolve {
                store.resolve_key(&mut key);
            }
            root.member(&key).and_then(Node::as_f64)
        };
        for resolve in [false, true] {
            // Exact spellings first, an id or inline text alike; else the first folded match.
            assert_eq!(find("Temp", resolve), Some(1.0));
            assert_eq!(find("temp", resolve), Some(2.0));
            assert_eq!(find("TEMP", resolve), Some(1.0));
            assert_eq!(find("A", resolve), Some(3.0));
            assert_eq!(find("B", resolve), Some(4.0));
            assert_eq!(find("c", resolve), None);
        }
        // The index diff's exact lookups: by id, by text for inline names, never folded.
        let exact = |name: &str, id: Option<u32>| root.exact_member(name, id)?.as_f64();
        assert_eq!(exact("Temp", store.key_id("Temp")), Some(1.0));
        assert_eq!(exact("Temp", None), Some(1.0));
        assert_eq!(exact("temp", None), Some(2.0));
        assert_eq!(exact("a", store.key_id("a")), Some(3.0));
        assert_eq!(exact("b", None), Some(4.0));
        assert_eq!(exact("TEMP", None), None);
        assert_eq!(exact("c", None), None);
        let mut out = Vec::new();
        root.write_json(&mut out);
        assert_eq!(out, doc.to_json_string().into_bytes());
    }

    proptest! {
        #[test]
        fn tapes_pack_as_their_trees(
            members in prop::collection::vec(
                (prop::sample::select(vec!["a", "b", "A", "$metadata", "x y"]), json()),
                0..6,
            )
        ) {
            // Twins with repeated member names at the root and below, numbers that keep their
            // text, and integers beyond 2^53.
            let body: Vec<String> = members
                .iter()
                .map(|(k, v)| format!("{}:{v}", serde_json::to_string(k).unwrap_or_default()))
                .collect();
            let mut text = r#"{"deviceId":"d","n":9007199254740993"#.to_string();
            for m in &body {
                text.push(',');
                text.push_str(m);
            }
            text.push('}');
            let mut store = crate::Store::new();
            store
                .load_bytes("t", text.as_bytes(), &crate::LoadOptions::default())
                .expect("generated twin");
            let tape = store.devices().doc(0);
            let mut names = NameCache::default();
            let expected = Packed::pack(&Doc::from_tape(tape, &mut names), &store);
            prop_assert_eq!(Packed::from_tape(tape), expected);
        }
    }

    #[test]
    fn a_packed_twin_takes_about_its_text() {
        let text = r#"{"deviceId":"sensor-000001","etag":"AAAAAAAAAAE=","version":4,"tags":{"location":{"region":"US","plant":"Redmond43"}},"properties":{"desired":{"$metadata":{"$lastUpdated":"2026-11-27T10:00:00.0000000Z"},"$version":1},"reported":{"temperature":21.5,"battery":87,"$metadata":{"$lastUpdated":"2026-11-27T10:00:00.0000000Z","temperature":{"$lastUpdated":"2026-11-27T10:00:00.0000000Z"},"battery":{"$lastUpdated":"2026-11-27T10:00:00.0000000Z"}},"$version":3}}}"#;
        let doc = Doc::parse(text).expect("json");
        let mut store = Store::new();
        store
            .load_bytes("t", text.as_bytes(), &crate::LoadOptions::default())
            .expect("twin");
        let unknown = Packed::pack(&doc, &Store::new());
        assert!(
            unknown.len() <= text.len() + text.len() / 10,
            "{} bytes packed for {} of JSON",
            unknown.len(),
            text.len()
        );
        // Names the store holds are key ids: well under the text.
        let packed = Packed::pack(&doc, &store);
        assert!(
            packed.len() <= text.len() * 3 / 4,
            "{} bytes packed with key ids for {} of JSON",
            packed.len(),
            text.len()
        );
        let mut out = Vec::new();
        packed.root(&store).write_json(&mut out);
        assert_eq!(String::from_utf8(out).expect("utf-8"), text);
    }
}
