//! The tape: a compact, 7-bit-clean byte encoding of JSON documents, and [`NodeRef`], the
//! handle the evaluator reads it through.
//!
//! Every byte the encoder writes itself is below `0x80`, so a tape made of these bytes and of
//! the UTF-8 contents of strings is valid UTF-8 as a whole. A chunk keeps its tape as a `str`,
//! and [`NodeRef::as_str`] is a plain slice of it: no validation, no copy, no `unsafe`.
//!
//! | tag | meaning | followed by |
//! |---|---|---|
//! | `0x00` | `null` | |
//! | `0x01` / `0x02` | `false` / `true` | |
//! | `0x03` | integer written canonically (`-?(0\|[1-9][0-9]*)`, fits `i64`) | zig-zag varint |
//! | `0x04` | number whose text equals Rust's `{}` of its `f64` | varint index into the chunk's floats |
//! | `0x05` | any other number | varint float index, varint length, the text |
//! | `0x06` | string of 64 bytes or more | varint length, UTF-8 bytes |
//! | `0x07` | array | varint body length, varint count, elements |
//! | `0x08` | object | varint body length, varint count, members: varint key id + value |
//! | `0x40 + n` | string of `n` < 64 bytes | `n` UTF-8 bytes |
//!
//! Varints are little-endian groups of 6 bits; bit `0x40` of a byte says another follows. Key
//! ids in a chunk's tape are local to the chunk and map to store-wide ids through the chunk's
//! key table. The body length lets a reader skip a subtree without looking inside it.

use std::io::Write;

use twinql_planner::value::{Key, Kind, Node, json_escape_mask, write_json_bytes};

use crate::dict::KeyDict;

pub(crate) const NULL: u8 = 0x00;
pub(crate) const FALSE: u8 = 0x01;
pub(crate) const TRUE: u8 = 0x02;
pub(crate) const INT: u8 = 0x03;
pub(crate) const FLOAT: u8 = 0x04;
pub(crate) const NUM_TEXT: u8 = 0x05;
pub(crate) const STR: u8 = 0x06;
pub(crate) const ARR: u8 = 0x07;
pub(crate) const OBJ: u8 = 0x08;
pub(crate) const SHORT_STR: u8 = 0x40;
/// Strings shorter than this get their length in the tag byte.
pub(crate) const SHORT_STR_MAX: usize = 64;

/// Appends `v` as a 6-bit-group varint.
#[inline]
pub(crate) fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    loop {
        let b = (v & 0x3f) as u8;
        v >>= 6;
        if v == 0 {
            out.push(b);
            return;
        }
        out.push(b | 0x40);
    }
}

/// Number of bytes `put_varint` writes for `v`.
#[inline]
pub(crate) fn varint_len(mut v: u64) -> usize {
    let mut n = 1;
    while v >= 0x40 {
        v >>= 6;
        n += 1;
    }
    n
}

/// Writes `v` as a varint at `at` (the space must exist); returns the position after it.
#[inline]
pub(crate) fn write_varint_at(buf: &mut [u8], mut at: usize, mut v: u64) -> usize {
    loop {
        let b = (v & 0x3f) as u8;
        v >>= 6;
        let byte = if v == 0 { b } else { b | 0x40 };
        if let Some(slot) = buf.get_mut(at) {
            *slot = byte;
        }
        at += 1;
        if v == 0 {
            return at;
        }
    }
}

/// Reads a varint at `pos`; returns the value and the position after it. Reading past the end
/// yields what was read so far (tapes are written by this crate, so that does not happen).
#[inline(always)]
pub(crate) fn get_varint(t: &[u8], pos: usize) -> (u64, usize) {
    match t.get(pos) {
        Some(&b) if b < 0x40 => (u64::from(b), pos + 1),
        _ => get_varint_slow(t, pos),
    }
}

/// [`get_varint`] that also reads two bytes (up to 4,095: most body lengths) without a call:
/// for the renderer's loop (in the index walk the larger code costs more than it saves).
#[inline(always)]
fn get_varint2(t: &[u8], pos: usize) -> (u64, usize) {
    match t.get(pos) {
        Some(&b) if b & 0x40 == 0 => (u64::from(b & 0x3f), pos + 1),
        Some(&b) => match t.get(pos + 1) {
            Some(&c) if c & 0x40 == 0 => (u64::from(b & 0x3f) | u64::from(c & 0x3f) << 6, pos + 2),
            _ => get_varint_slow(t, pos),
        },
        None => get_varint_slow(t, pos),
    }
}

/// The position just after the varint at `pos`, found without decoding it: the first byte
/// whose continuation bit (`0x40`) is clear ends it, looked for eight bytes at a time (the
/// long varints, the bits of a double in a packed twin, take eleven bytes).
#[inline]
pub(crate) fn skip_varint(t: &[u8], pos: usize) -> usize {
    let mut at = pos;
    while let Some(w) = t.get(at..at + 8) {
        let mut b = [0u8; 8];
        b.copy_from_slice(w);
        let last = !u64::from_le_bytes(b) & 0x4040_4040_4040_4040;
        if last != 0 {
            return at + (last.trailing_zeros() / 8) as usize + 1;
        }
        at += 8;
    }
    get_varint_slow(t, at).1
}

#[inline(never)]
fn get_varint_slow(t: &[u8], mut pos: usize) -> (u64, usize) {
    let mut v = 0u64;
    let mut shift = 0u32;
    while let Some(&b) = t.get(pos) {
        pos += 1;
        if shift < 64 {
            v |= u64::from(b & 0x3f) << shift;
        }
        shift += 6;
        if b & 0x40 == 0 {
            break;
        }
    }
    (v, pos)
}

/// Zig-zag encoding of a signed integer.
#[inline]
pub(crate) fn zigzag(i: i64) -> u64 {
    ((i << 1) ^ (i >> 63)) as u64
}

#[inline]
fn unzigzag(u: u64) -> i64 {
    ((u >> 1) as i64) ^ -((u & 1) as i64)
}

/// Position just after the node that starts at `pos`.
#[inline]
pub(crate) fn skip(t: &[u8], pos: usize) -> usize {
    let Some(&tag) = t.get(pos) else {
        return pos;
    };
    match tag {
        NULL | FALSE | TRUE => pos + 1,
        INT | FLOAT => skip_varint(t, pos + 1),
        NUM_TEXT => {
            let p = skip_varint(t, pos + 1);
            let (len, p) = get_varint(t, p);
            p + len as usize
        }
        STR => {
            let (len, p) = get_varint(t, pos + 1);
            p + len as usize
        }
        ARR | OBJ => {
            let (len, p) = get_varint(t, pos + 1);
            let (_, p) = get_varint(t, p);
            p + len as usize
        }
        _ => pos + 1 + usize::from(tag - SHORT_STR),
    }
}

/// The string whose node starts at `pos` of `tape`, if it is one.
#[inline]
pub(crate) fn str_at(tape: &str, pos: usize) -> Option<&str> {
    let t = tape.as_bytes();
    let (start, len) = match t.get(pos).copied() {
        Some(STR) => {
            let (len, p) = get_varint(t, pos + 1);
            (p, len as usize)
        }
        Some(tag) if tag >= SHORT_STR => (pos + 1, usize::from(tag - SHORT_STR)),
        _ => return None,
    };
    tape.get(start..start + len)
}

/// Where a chunk's tape lives: on the heap, or in the pages of a segment file the store
/// wrote itself (an import reads its documents from the file it wrote: see
/// [`crate::mapped::MappedStr`]).
pub(crate) enum Tape {
    Heap(String),
    Mapped(crate::mapped::MappedStr),
}

impl Tape {
    /// Bytes of the tape held on the heap.
    pub(crate) fn heap_bytes(&self) -> usize {
        match self {
            Tape::Heap(s) => s.len(),
            Tape::Mapped(_) => 0,
        }
    }
}

impl Default for Tape {
    fn default() -> Self {
        Tape::Heap(String::new())
    }
}

impl From<&str> for Tape {
    fn from(s: &str) -> Self {
        Tape::Heap(s.to_string())
    }
}

impl std::ops::Deref for Tape {
    type Target = str;
    #[inline]
    fn deref(&self) -> &str {
        match self {
            Tape::Heap(s) => s,
            Tape::Mapped(m) => m.as_str(),
        }
    }
}

impl std::fmt::Debug for Tape {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Tape::Heap(s) => write!(f, "Heap({} bytes)", s.len()),
            Tape::Mapped(m) => write!(f, "Mapped({} bytes)", m.as_str().len()),
        }
    }
}

/// One parsed chunk of documents: its tape, the doubles of its non-integer numbers, and the
/// map from its local key ids to store-wide ones.
#[derive(Debug)]
pub(crate) struct Chunk {
    /// The tape (empty for a chunk of an opened segment: its documents are checked and read
    /// one by one).
    pub(crate) tape: Tape,
    pub(crate) floats: Box<[f64]>,
    pub(crate) keys: Box<[u32]>,
    /// No string in the tape holds a byte JSON output escapes (known for loaded chunks;
    /// `false` where unknown, and the renderer then checks each string).
    pub(crate) plain: bool,
}

/// The deepest nesting [`check_tape`] accepts (the loader's limit is at most 1,000, and a job
/// record sits one level below its twin).
pub(crate) const CHECK_MAX_DEPTH: usize = 1024;

/// Checks that `t` is a sequence of well-formed nodes: known tags, varints that end, lengths
/// and counts that agree with the bytes, member key ids below `keys`, float indexes below
/// `floats`, nesting at most [`CHECK_MAX_DEPTH`]. Returns the start of every top-level node,
/// or the offset and description of the first problem. Reading a checked tape from any
/// returned start never leaves the tape, and recursion over it is bounded.
pub(crate) fn check_tape(
    t: &[u8],
    keys: usize,
    floats: usize,
    plain: bool,
) -> Result<Vec<u32>, (usize, String)> {
    // In a chunk marked plain, no string may hold a byte JSON output escapes (the renderer
    // copies them as they are).
    let check_plain = |p: usize, start: usize, end: usize| -> Result<(), (usize, String)> {
        if plain && t.get(start..end).is_some_and(needs_escape) {
            return Err((p, "a string needs escaping in a chunk marked plain".into()));
        }
        Ok(())
    };
    fn varint(t: &[u8], pos: usize, end: usize) -> Result<(u64, usize), (usize, String)> {
        let mut v = 0u64;
        let mut shift = 0u32;
        let mut p = pos;
        loop {
            if p >= end {
                return Err((pos, "unterminated number".into()));
            }
            let b = t[p];
            p += 1;
            if shift >= 64 {
                return Err((pos, "number too long".into()));
            }
            v |= u64::from(b & 0x3f) << shift;
            shift += 6;
            if b & 0x40 == 0 {
                return Ok((v, p));
            }
        }
    }
    fn span(pos: usize, start: usize, len: u64, end: usize) -> Result<usize, (usize, String)> {
        usize::try_from(len)
            .ok()
            .and_then(|l| start.checked_add(l))
            .filter(|&e| e <= end)
            .ok_or((pos, "length runs past its container".to_string()))
    }
    if t.len() >= u32::MAX as usize {
        return Err((0, "tape too long".into()));
    }
    // Open containers: (end of body, members left, is object).
    let mut stack: Vec<(usize, u64, bool)> = Vec::new();
    let mut starts = Vec::new();
    let mut p = 0usize;
    loop {
        // Close finished containers; find where the next node must end.
        while let Some(&(end, left, _)) = stack.last() {
            if left == 0 {
                if p != end {
                    return Err((p, "container body longer than its members".into()));
                }
                stack.pop();
            } else {
                break;
            }
        }
        let end = stack.last().map_or(t.len(), |c| c.0);
        if stack.is_empty() {
            if p == t.len() {
                return Ok(starts);
            }
            starts.push(p as u32);
        }
        if let Some(top) = stack.last_mut() {
            top.1 -= 1;
            if top.2 {
                let (k, vp) = varint(t, p, end)?;
                if k >= keys as u64 {
                    return Err((p, format!("member name {k} out of range")));
                }
                p = vp;
            }
        }
        if p >= end {
            return Err((p, "missing value".into()));
        }
        let tag = t[p];
        p = match tag {
            NULL | FALSE | TRUE => p + 1,
            INT => varint(t, p + 1, end)?.1,
            FLOAT => {
                let (i, q) = varint(t, p + 1, end)?;
                if i >= floats as u64 {
                    return Err((p, format!("number {i} out of range")));
                }
                q
            }
            NUM_TEXT => {
                let (i, q) = varint(t, p + 1, end)?;
                if i >= floats as u64 {
                    return Err((p, format!("number {i} out of range")));
                }
                let (len, q) = varint(t, q, end)?;
                span(p, q, len, end)?
            }
            STR => {
                let (len, q) = varint(t, p + 1, end)?;
                let after = span(p, q, len, end)?;
                check_plain(p, q, after)?;
                after
            }
            ARR | OBJ => {
                let (len, q) = varint(t, p + 1, end)?;
                let (count, q) = varint(t, q, end)?;
                let body_end = span(p, q, len, end)?;
                if stack.len() >= CHECK_MAX_DEPTH {
                    return Err((p, "nesting too deep".into()));
                }
                stack.push((body_end, count, tag == OBJ));
                q
            }
            SHORT_STR.. => {
                let after = span(p, p + 1, u64::from(tag - SHORT_STR), end)?;
                check_plain(p, p + 1, after)?;
                after
            }
            _ => return Err((p, format!("unknown tag {tag:#04x}"))),
        };
        if p > end {
            return Err((p, "value runs past its container".into()));
        }
    }
}

impl Chunk {
    pub(crate) fn empty() -> Chunk {
        Chunk {
            tape: Tape::default(),
            floats: Box::default(),
            keys: Box::default(),
            plain: true,
        }
    }

    #[inline]
    pub(crate) fn global_key(&self, local: u64) -> u32 {
        usize::try_from(local)
            .ok()
            .and_then(|i| self.keys.get(i))
            .copied()
            .unwrap_or(u32::MAX)
    }
}

/// A handle to one JSON node inside a [`Store`](crate::Store): a chunk, a position in its tape
/// and the store's key dictionary. Copying it is free; reading it never allocates.
#[derive(Clone, Copy)]
pub struct NodeRef<'a> {
    pub(crate) chunk: &'a Chunk,
    /// The tape the node is in: the chunk's, or (in a mapped segment) its document's, checked.
    pub(crate) tape: &'a str,
    pub(crate) dict: &'a KeyDict,
    pub(crate) pos: u32,
}

impl std::fmt::Debug for NodeRef<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.to_json_string())
    }
}

impl<'a> NodeRef<'a> {
    #[inline(always)]
    fn bytes(self) -> &'a [u8] {
        self.tape.as_bytes()
    }

    #[inline(always)]
    fn tag(self) -> u8 {
        self.bytes().get(self.pos as usize).copied().unwrap_or(NULL)
    }

    #[inline(always)]
    fn at(self, pos: usize) -> NodeRef<'a> {
        NodeRef {
            chunk: self.chunk,
            tape: self.tape,
            dict: self.dict,
            pos: pos as u32,
        }
    }

    /// For an array or object: (count, position of the first child, end position).
    #[inline(always)]
    fn container(self, want: u8) -> Option<(usize, usize, usize)> {
        let t = self.bytes();
        if self.tag() != want {
            return None;
        }
        let (len, p) = get_varint(t, self.pos as usize + 1);
        let (count, p) = get_varint(t, p);
        Some((count as usize, p, p + len as usize))
    }

    /// The JSON text of this node, as [`Node::write_json`] writes it.
    pub fn to_json_string(self) -> String {
        let mut out = Vec::new();
        self.write_json(&mut out);
        String::from_utf8(out).unwrap_or_default()
    }

    /// The members of an object in document order (empty for other nodes).
    pub fn members(self) -> Members<'a> {
        match self.container(OBJ) {
            Some((count, start, _)) => Members {
                node: self,
                pos: start,
                left: count,
            },
            None => Members {
                node: self,
                pos: 0,
                left: 0,
            },
        }
    }

    /// The elements of an array in order (empty for other nodes).
    pub fn elements(self) -> Elements<'a> {
        match self.container(ARR) {
            Some((count, start, _)) => Elements {
                node: self,
                pos: start,
                left: count,
            },
            None => Elements {
                node: self,
                pos: 0,
                left: 0,
            },
        }
    }

    /// The number exactly as written in the input (`1.50`, `1e3`, `-0`), if this is a number.
    pub fn number_text(self) -> Option<std::borrow::Cow<'a, str>> {
        let t = self.bytes();
        let pos = self.pos as usize;
        match self.tag() {
            INT | FLOAT => {
                let mut out = Vec::new();
                self.write_json(&mut out);
                String::from_utf8(out).ok().map(std::borrow::Cow::Owned)
            }
            NUM_TEXT => {
                let (_, p) = get_varint(t, pos + 1);
                let (len, p) = get_varint(t, p);
                self.tape
                    .get(p..p + len as usize)
                    .map(std::borrow::Cow::Borrowed)
            }
            _ => None,
        }
    }

    /// The number's text when the input spelled it differently from its value's rendering
    /// (`1.50`, `1e3`, `-0`); `None` for other numbers and non-numbers.
    pub fn kept_number_text(self) -> Option<&'a str> {
        if self.tag() != NUM_TEXT {
            return None;
        }
        let t = self.bytes();
        let (_, p) = get_varint(t, self.pos as usize + 1);
        let (len, p) = get_varint(t, p);
        self.tape.get(p..p + len as usize)
    }

    /// The member with the store-wide key id `id`, if this is an object that has it.
    #[inline]
    pub fn member_by_id(self, id: u32) -> Option<NodeRef<'a>> {
        let (count, mut p, _) = self.container(OBJ)?;
        let t = self.bytes();
        for _ in 0..count {
            let (local, vp) = get_varint(t, p);
            if self.chunk.global_key(local) == id {
                return Some(self.at(vp));
            }
            p = skip(t, vp);
        }
        None
    }
}

/// Iterator over an object's members: `(name, key id, value)`.
#[derive(Clone)]
pub struct Members<'a> {
    node: NodeRef<'a>,
    pos: usize,
    left: usize,
}

impl<'a> Iterator for Members<'a> {
    type Item = (&'a str, u32, NodeRef<'a>);

    fn next(&mut self) -> Option<Self::Item> {
        if self.left == 0 {
            return None;
        }
        self.left -= 1;
        let t = self.node.bytes();
        let (local, vp) = get_varint(t, self.pos);
        self.pos = skip(t, vp);
        let id = self.node.chunk.global_key(local);
        Some((self.node.dict.name(id), id, self.node.at(vp)))
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        (self.left, Some(self.left))
    }
}

impl ExactSizeIterator for Members<'_> {}

/// Iterator over an array's elements.
#[derive(Clone)]
pub struct Elements<'a> {
    node: NodeRef<'a>,
    pos: usize,
    left: usize,
}

impl<'a> Iterator for Elements<'a> {
    type Item = NodeRef<'a>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.left == 0 {
            return None;
        }
        self.left -= 1;
        let here = self.pos;
        self.pos = skip(self.node.bytes(), here);
        Some(self.node.at(here))
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        (self.left, Some(self.left))
    }
}

impl ExactSizeIterator for Elements<'_> {}

/// Whether a key was resolved against a store by [`Store::resolve_key`](crate::Store::resolve_key).
#[inline(always)]
fn is_resolved(key: &Key) -> bool {
    key.exact.is_some() || !key.folded_ids.is_empty()
}

impl<'a> Node<'a> for NodeRef<'a> {
    #[inline]
    fn kind(self) -> Kind {
        match self.tag() {
            NULL => Kind::Null,
            FALSE | TRUE => Kind::Bool,
            INT | FLOAT | NUM_TEXT => Kind::Number,
            ARR => Kind::Array,
            OBJ => Kind::Object,
            _ => Kind::String,
        }
    }

    #[inline]
    fn as_bool(self) -> Option<bool> {
        match self.tag() {
            TRUE => Some(true),
            FALSE => Some(false),
            _ => None,
        }
    }

    #[inline]
    fn as_f64(self) -> Option<f64> {
        let t = self.bytes();
        match self.tag() {
            INT => Some(unzigzag(get_varint(t, self.pos as usize + 1).0) as f64),
            FLOAT | NUM_TEXT => {
                let (i, _) = get_varint(t, self.pos as usize + 1);
                usize::try_from(i)
                    .ok()
                    .and_then(|i| self.chunk.floats.get(i))
                    .copied()
            }
            _ => None,
        }
    }

    #[inline]
    fn as_str(self) -> Option<&'a str> {
        str_at(self.tape, self.pos as usize)
    }

    #[inline]
    fn member(self, key: &Key) -> Option<Self> {
        let (count, mut p, _) = self.container(OBJ)?;
        let t = self.bytes();
        let mut folded: Option<usize> = None;
        if is_resolved(key) {
            let exact = key.exact.unwrap_or(u32::MAX);
            let only_exact = match &*key.folded_ids {
                [] => true,
                [one] => Some(*one) == key.exact,
                _ => false,
            };
            for _ in 0..count {
                let (local, vp) = get_varint(t, p);
                let id = self.chunk.global_key(local);
                if id == exact {
                    return Some(self.at(vp));
                }
                if !only_exact && folded.is_none() && key.folded_ids.contains(&id) {
                    folded = Some(vp);
                }
                p = skip(t, vp);
            }
        } else {
            for _ in 0..count {
                let (local, vp) = get_varint(t, p);
                let name = self.dict.name(self.chunk.global_key(local));
                if name == &*key.name {
                    return Some(self.at(vp));
                }
                if folded.is_none() && key.matches_folded(name) {
                    folded = Some(vp);
                }
                p = skip(t, vp);
            }
        }
        folded.map(|vp| self.at(vp))
    }

    #[inline]
    fn element(self, index: usize) -> Option<Self> {
        let (count, mut p, _) = self.container(ARR)?;
        if index >= count {
            return None;
        }
        let t = self.bytes();
        for _ in 0..index {
            p = skip(t, p);
        }
        Some(self.at(p))
    }

    #[inline]
    fn len(self) -> usize {
        match self.tag() {
            ARR | OBJ => {
                let t = self.bytes();
                let (_, p) = get_varint(t, self.pos as usize + 1);
                get_varint(t, p).0 as usize
            }
            _ => 0,
        }
    }

    fn write_json(self, out: &mut Vec<u8>) {
        write_node(self.chunk, self.tape, self.dict, self.pos as usize, out);
    }

    fn for_each_member(self, f: &mut dyn FnMut(&str, Self)) {
        for (name, _, value) in self.members() {
            f(name, value);
        }
    }
}

/// Writes the node at `pos` as JSON text; returns the position after it.
fn write_node(chunk: &Chunk, tape: &str, dict: &KeyDict, pos: usize, out: &mut Vec<u8>) -> usize {
    let t = tape.as_bytes();
    match t.get(pos) {
        Some(&OBJ) | Some(&ARR) => write_container(chunk, t, dict, pos, out),
        _ => write_scalar(chunk, t, pos, out),
    }
}

/// Writes the object or array at `pos`; returns the position after it. Scalars are written
/// in the loop: only nested containers recurse. Every member or element is written after a
/// comma, the first of which then becomes the opening bracket: no per-member test.
fn write_container(
    chunk: &Chunk,
    t: &[u8],
    dict: &KeyDict,
    pos: usize,
    out: &mut Vec<u8>,
) -> usize {
    let object = t.get(pos) == Some(&OBJ);
    let (len, p) = get_varint2(t, pos + 1);
    let (count, mut p) = get_varint2(t, p);
    let end = p.saturating_add(usize::try_from(len).unwrap_or(usize::MAX));
    // JSON text takes about twice the tape's bytes: one reservation covers most documents.
    out.reserve(usize::try_from(len).unwrap_or(0).min(1 << 24) * 9 / 4 + 2);
    let (open, close) = if object { (b'{', b'}') } else { (b'[', b']') };
    if count == 0 {
        out.push(open);
        out.push(close);
        return end;
    }
    let first = out.len();
    if object {
        for _ in 0..count {
            let (local, vp) = get_varint2(t, p);
            dict.write_json_name_after_comma(chunk.global_key(local), out);
            p = match t.get(vp) {
                Some(&OBJ) | Some(&ARR) => write_container(chunk, t, dict, vp, out),
                _ => write_scalar(chunk, t, vp, out),
            };
        }
    } else {
        for _ in 0..count {
            out.push(b',');
            p = match t.get(p) {
                Some(&OBJ) | Some(&ARR) => write_container(chunk, t, dict, p, out),
                _ => write_scalar(chunk, t, p, out),
            };
        }
    }
    if let Some(b) = out.get_mut(first) {
        *b = open;
    }
    out.push(close);
    end
}

/// Writes the scalar at `pos`; returns the position after it.
#[inline(always)]
fn write_scalar(chunk: &Chunk, t: &[u8], pos: usize, out: &mut Vec<u8>) -> usize {
    let Some(&tag) = t.get(pos) else {
        return pos;
    };
    if tag >= SHORT_STR {
        let start = pos + 1;
        let len = usize::from(tag - SHORT_STR);
        let end = start + len;
        let bytes = t.get(start..end).unwrap_or_default();
        // A string of up to 32 bytes that needs no escape is copied as the 32 bytes from its
        // start (the tape goes on after it), then cut to its length: no call for a short copy.
        if let Some(Ok(word)) = t.get(start..start + 32).map(<&[u8; 32]>::try_from)
            && len <= 32
            && (chunk.plain || first_to_escape(word, len) >= len)
        {
            out.push(b'"');
            let cut = out.len() + len;
            out.extend_from_slice(word);
            out.truncate(cut);
            out.push(b'"');
            return end;
        }
        write_json_bytes(bytes, out);
        return end;
    }
    match tag {
        NULL => {
            out.extend_from_slice(b"null");
            pos + 1
        }
        FALSE => {
            out.extend_from_slice(b"false");
            pos + 1
        }
        TRUE => {
            out.extend_from_slice(b"true");
            pos + 1
        }
        INT => {
            let (u, p) = get_varint2(t, pos + 1);
            out.extend_from_slice(itoa::Buffer::new().format(unzigzag(u)).as_bytes());
            p
        }
        FLOAT => {
            let (i, p) = get_varint2(t, pos + 1);
            let f = usize::try_from(i)
                .ok()
                .and_then(|i| chunk.floats.get(i))
                .copied()
                .unwrap_or(0.0);
            let _ = write!(out, "{f}");
            p
        }
        NUM_TEXT => {
            let (_, p) = get_varint2(t, pos + 1);
            let (len, p) = get_varint2(t, p);
            let end = p.saturating_add(usize::try_from(len).unwrap_or(usize::MAX));
            out.extend_from_slice(t.get(p..end).unwrap_or_default());
            end
        }
        STR => {
            let (len, p) = get_varint2(t, pos + 1);
            let end = p.saturating_add(usize::try_from(len).unwrap_or(usize::MAX));
            write_json_bytes(t.get(p..end).unwrap_or_default(), out);
            end
        }
        // Not a tag a checked tape holds.
        _ => {
            out.extend_from_slice(b"null");
            pos + 1
        }
    }
}

/// Whether any byte of `s` is one JSON must escape.
fn needs_escape(s: &[u8]) -> bool {
    let word_has = |c: &[u8]| {
        // Padded with spaces, which need no escape.
        let mut w = [b' '; 8];
        w[..c.len()].copy_from_slice(c);
        json_escape_mask(u64::from_le_bytes(w)) != 0
    };
    let mut words = s.chunks_exact(8);
    words.by_ref().any(word_has) || word_has(words.remainder())
}

/// The index of the first byte JSON must escape among the first `len` (at most 32) bytes of
/// `word`, or `len` or more when there is none.
#[inline(always)]
fn first_to_escape(word: &[u8; 32], len: usize) -> usize {
    for (i, chunk) in word.chunks_exact(8).enumerate().take(len.div_ceil(8)) {
        let mut b = [0u8; 8];
        b.copy_from_slice(chunk);
        let m = json_escape_mask(u64::from_le_bytes(b));
        if m != 0 {
            return i * 8 + (m.trailing_zeros() / 8) as usize;
        }
    }
    32
}

#[cfg(test)]
mod tests {
    use super::*;

    fn escaped(s: &str) -> String {
        let mut out = Vec::new();
        write_json_bytes(s.as_bytes(), &mut out);
        String::from_utf8(out).unwrap()
    }

    proptest::proptest! {
        #[test]
        fn varints_are_skipped_where_they_are_read_to(
            before in proptest::collection::vec(0u8..0x80, 0..12),
            value in proptest::prelude::any::<u64>(),
            shift in 0u32..64,
            after in proptest::collection::vec(0u8..0x80, 0..20),
            cut in 0usize..40,
        ) {
            let mut t = before.clone();
            put_varint(&mut t, value >> shift);
            t.extend_from_slice(&after);
            // Half the cases end the bytes early, anywhere after `before` (a varint cut short
            // reads to the end).
            let keep = if cut < 20 {
                t.len()
            } else {
                before.len() + (cut - 20) % (t.len() - before.len() + 1)
            };
            let t = &t[..keep];
            proptest::prop_assert_eq!(skip_varint(t, before.len()), get_varint(t, before.len()).1);
        }

        #[test]
        fn first_to_escape_finds_the_first_byte_to_escape(
            word in proptest::prelude::any::<[u8; 32]>(),
            len in 0usize..=32,
            // Bytes JSON escapes, planted at random places (random bytes rarely are one).
            plants in proptest::collection::vec((0usize..32, proptest::sample::select(vec![0u8, 0x1f, b'"', b'\\', 0x20, 0x7f, 0x80, 0xa2, 0xdc])), 0..4),
        ) {
            let mut word = word;
            for (at, b) in plants {
                word[at] = b;
            }
            let naive = word[..len]
                .iter()
                .position(|&b| b < 0x20 || b == b'"' || b == b'\\')
                .unwrap_or(len);
            let fast = first_to_escape(&word, len);
            if naive < len {
                proptest::prop_assert_eq!(fast, naive);
            } else {
                proptest::prop_assert!(fast >= len);
            }
        }
    }

    #[test]
    fn strings_are_escaped_like_serde_json_at_every_position() {
        // Each character that needs an escape, and one that does not, at every offset of
        // strings up to three words long.
        for special in ['"', '\\', '\n', '\u{1}', '\u{1f}', ' ', 'é', '\u{7f}'] {
            for len in 0..24 {
                for at in 0..len {
                    let s: String = (0..len)
                        .map(|i| if i == at { special } else { 'x' })
                        .collect();
                    assert_eq!(escaped(&s), serde_json::to_string(&s).unwrap(), "{s:?}");
                }
            }
        }
    }

    proptest::proptest! {
        #[test]
        fn escaping_matches_serde_json(s in "\\PC*|[\\x00-\\x7f]{0,40}") {
            proptest::prop_assert_eq!(escaped(&s), serde_json::to_string(&s).unwrap());
        }
    }

    proptest::proptest! {
        /// The inline one- and two-byte paths read exactly what the general loop reads, on
        /// any bytes (a checked tape holds no others, but the reader never relies on it).
        #[test]
        fn inline_varint_paths_agree_with_the_loop(
            bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..12),
            pos in 0usize..12,
        ) {
            proptest::prop_assert_eq!(get_varint(&bytes, pos), get_varint_slow(&bytes, pos));
            proptest::prop_assert_eq!(get_varint2(&bytes, pos), get_varint_slow(&bytes, pos));
        }
    }

    #[test]
    fn a_chunk_marked_plain_refuses_strings_that_need_escaping() {
        let short = [SHORT_STR + 3, b'a', b'"', b'b'];
        let mut long = vec![STR];
        put_varint(&mut long, 70);
        long.extend(std::iter::repeat_n(b'x', 69));
        long.push(0x01);
        for (tape, at) in [(&short[..], 0), (&long[..], 0)] {
            assert!(check_tape(tape, 0, 0, false).is_ok());
            let err = check_tape(tape, 0, 0, true).expect_err("marked plain");
            assert_eq!(err.0, at);
            assert!(err.1.contains("plain"), "{}", err.1);
        }
        let fine = [SHORT_STR + 3, b'a', b'/', b'b'];
        assert!(check_tape(&fine, 0, 0, true).is_ok());
    }

    #[test]
    fn varints_round_trip() {
        for v in [0u64, 1, 63, 64, 65, 127, 128, 4095, 4096, 1 << 40, u64::MAX] {
            let mut out = Vec::new();
            put_varint(&mut out, v);
            assert_eq!(out.len(), varint_len(v));
            assert!(out.iter().all(|&b| b < 0x80));
            assert_eq!(get_varint(&out, 0), (v, out.len()));
            assert_eq!(get_varint2(&out, 0), (v, out.len()));
            let mut buf = vec![0; out.len()];
            write_varint_at(&mut buf, 0, v);
            assert_eq!(buf, out);
        }
        for i in [0i64, -1, 1, i64::MIN, i64::MAX, -32, 31] {
            assert_eq!(unzigzag(zigzag(i)), i);
        }
    }
}
