//! Byte encoding of index structures for store segments.
//!
//! Everything is little-endian. Variable-length values carry a `u64` length or count
//! prefix: byte strings and UTF-8 strings their byte length, `u32` arrays their element
//! count, and bitmaps the byte length of their portable Roaring serialization (the format of
//! the C, Java and Go implementations).
//!
//! Decoding reads untrusted bytes (segments are mapped from disk), so [`Dec`] never panics,
//! checks every count against the bytes left before allocating for it, and reports failures
//! as a [`FormatError`] naming the absolute file offset and the field being read.
//! [`decode_path_index`] also checks the invariants the query code relies on.
//!
//! A [`PathIndex`] is laid out as:
//!
//! | field     | encoding                                                     |
//! |-----------|--------------------------------------------------------------|
//! | `keys`    | `u32` array                                                  |
//! | `defined` | bitmap                                                       |
//! | `kinds`   | `u64` count (always 6), then that many bitmaps               |
//! | `trues`   | bitmap                                                       |
//! | `strings` | postings, values as strings                                  |
//! | `numbers` | postings, values as `f64` bits                               |
//!
//! Postings start with a tag byte: `0` for a dictionary (a `u64` count, then each value
//! followed by its bitmap, values strictly increasing), `1` for a sorted array (the ids as a
//! `u32` array, then a `u64` count of block bitmaps, exactly one per whole [`BLOCK`] of ids).

use roaring::RoaringBitmap;

use crate::delta::KINDS;
use crate::index::{BLOCK, IndexPolicy, PathIndex, Postings};

/// Where and why bytes could not be decoded.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("at byte {offset}: {message}")]
pub struct FormatError {
    /// Absolute offset (in the file) of the field that could not be decoded.
    pub offset: u64,
    /// What is wrong there.
    pub message: String,
}

impl FormatError {
    /// An error at absolute offset `offset`.
    pub fn new(offset: u64, message: impl Into<String>) -> FormatError {
        FormatError {
            offset,
            message: message.into(),
        }
    }
}

/// Appends encoded values to a byte vector (borrowed, so a caller can write headers and
/// checksums around the encoded parts; `out.len()` is the position of the next value).
pub struct Enc<'a> {
    /// The bytes written so far; values are appended.
    pub out: &'a mut Vec<u8>,
}

impl<'a> Enc<'a> {
    /// An encoder appending to `out`.
    pub fn new(out: &'a mut Vec<u8>) -> Enc<'a> {
        Enc { out }
    }

    /// Appends one byte.
    pub fn u8(&mut self, v: u8) {
        self.out.push(v);
    }

    /// Appends a `u32`, little-endian.
    pub fn u32(&mut self, v: u32) {
        self.out.extend_from_slice(&v.to_le_bytes());
    }

    /// Appends a `u64`, little-endian.
    pub fn u64(&mut self, v: u64) {
        self.out.extend_from_slice(&v.to_le_bytes());
    }

    /// Appends a length or count as a `u64`.
    fn len(&mut self, n: usize) {
        self.u64(n as u64);
    }

    /// Appends an `f64` as its bits ([`f64::to_bits`]), little-endian; every value, `-0.0`
    /// and NaN payloads included, decodes to the same bits.
    pub fn f64(&mut self, v: f64) {
        self.u64(v.to_bits());
    }

    /// Appends bytes after their `u64` length.
    pub fn bytes(&mut self, v: &[u8]) {
        self.len(v.len());
        self.out.extend_from_slice(v);
    }

    /// Appends a string as its UTF-8 bytes after their `u64` length.
    pub fn str(&mut self, v: &str) {
        self.bytes(v.as_bytes());
    }

    /// Appends a `u64` count, then each value as a little-endian `u32`.
    pub fn u32_slice(&mut self, v: &[u32]) {
        self.len(v.len());
        self.out.reserve(4 * v.len());
        for x in v {
            self.out.extend_from_slice(&x.to_le_bytes());
        }
    }

    /// Appends a bitmap's portable Roaring serialization after its `u64` byte length.
    pub fn bitmap(&mut self, v: &RoaringBitmap) {
        let at = self.out.len();
        self.u64(0);
        self.out.reserve(v.serialized_size());
        // Writing to a `Vec` cannot fail; the length is patched from what was written, so the
        // prefix always matches the bytes that follow.
        let _ = v.serialize_into(&mut *self.out);
        let written = (self.out.len() - at - 8) as u64;
        self.out[at..at + 8].copy_from_slice(&written.to_le_bytes());
    }
}

/// Reads encoded values, tracking the absolute offset for errors.
#[derive(Clone, Debug)]
pub struct Dec<'a> {
    bytes: &'a [u8],
    pos: usize,
    base: u64,
}

impl<'a> Dec<'a> {
    /// A decoder over `bytes`, whose first byte is at absolute offset `base` in the file
    /// (used only in error messages).
    pub fn new(bytes: &'a [u8], base: u64) -> Dec<'a> {
        Dec {
            bytes,
            pos: 0,
            base,
        }
    }

    /// The absolute offset of the next byte to read.
    pub fn offset(&self) -> u64 {
        self.at(self.pos)
    }

    /// The absolute offset of `bytes[pos]`.
    fn at(&self, pos: usize) -> u64 {
        self.base.saturating_add(pos as u64)
    }

    /// Bytes not read yet.
    pub fn remaining(&self) -> usize {
        self.bytes.len() - self.pos
    }

    /// Whether every byte has been read.
    pub fn is_empty(&self) -> bool {
        self.remaining() == 0
    }

    /// An error at the current offset.
    pub fn error(&self, message: impl Into<String>) -> FormatError {
        FormatError::new(self.offset(), message)
    }

    fn end_of_data(&self, pos: usize, what: &str) -> FormatError {
        FormatError::new(
            self.at(pos),
            format!("unexpected end of data reading {what}"),
        )
    }

    /// The next `n` bytes.
    pub fn take(&mut self, n: usize, what: &str) -> Result<&'a [u8], FormatError> {
        if n > self.remaining() {
            return Err(self.end_of_data(self.pos, what));
        }
        let out = &self.bytes[self.pos..self.pos + n];
        self.pos += n;
        Ok(out)
    }

    fn array<const N: usize>(&mut self, what: &str) -> Result<[u8; N], FormatError> {
        let b = self.take(N, what)?;
        let mut out = [0u8; N];
        out.copy_from_slice(b);
        Ok(out)
    }

    /// One byte.
    pub fn u8(&mut self, what: &str) -> Result<u8, FormatError> {
        Ok(self.array::<1>(what)?[0])
    }

    /// A little-endian `u32`.
    pub fn u32(&mut self, what: &str) -> Result<u32, FormatError> {
        self.array(what).map(u32::from_le_bytes)
    }

    /// A little-endian `u64`.
    pub fn u64(&mut self, what: &str) -> Result<u64, FormatError> {
        self.array(what).map(u64::from_le_bytes)
    }

    /// An `f64` from its little-endian bits (any bits, NaN included).
    pub fn f64(&mut self, what: &str) -> Result<f64, FormatError> {
        self.u64(what).map(f64::from_bits)
    }

    /// A `u64` length prefix, then that many bytes; fails at the prefix when fewer remain.
    pub fn bytes(&mut self, what: &str) -> Result<&'a [u8], FormatError> {
        let start = self.pos;
        let n = self.u64(what)?;
        match usize::try_from(n) {
            Ok(n) if n <= self.remaining() => self.take(n, what),
            _ => {
                self.pos = start;
                Err(self.end_of_data(start, what))
            }
        }
    }

    /// A string stored as [`Dec::bytes`], checked to be UTF-8.
    pub fn str(&mut self, what: &str) -> Result<&'a str, FormatError> {
        let b = self.bytes(what)?;
        std::str::from_utf8(b).map_err(|e| {
            let at = self.pos - b.len() + e.valid_up_to();
            FormatError::new(self.at(at), format!("invalid UTF-8 in {what}"))
        })
    }

    /// A `u64` count, checked so that `count * min_bytes_each` bytes remain after it: the
    /// count is then safe to allocate for. A `min_bytes_each` of 0 is taken as 1. On error
    /// nothing is consumed.
    pub fn count(&mut self, min_bytes_each: usize, what: &str) -> Result<usize, FormatError> {
        let start = self.pos;
        let n = self.u64(what)?;
        let fits = usize::try_from(n).ok().filter(|&n| {
            n.checked_mul(min_bytes_each.max(1))
                .is_some_and(|b| b <= self.remaining())
        });
        fits.ok_or_else(|| {
            let left = self.remaining();
            self.pos = start;
            FormatError::new(
                self.at(start),
                format!("count of {what} ({n}) exceeds the {left} bytes left"),
            )
        })
    }

    /// A `u64` count, then that many little-endian `u32`s.
    pub fn u32_vec(&mut self, what: &str) -> Result<Vec<u32>, FormatError> {
        let n = self.count(4, what)?;
        let b = self.take(4 * n, what)?;
        Ok(b.chunks_exact(4)
            .map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect())
    }

    /// A bitmap: a `u64` byte length, then a portable Roaring serialization of exactly that
    /// length, validated (sorted containers and values, matching cardinalities).
    pub fn bitmap(&mut self, what: &str) -> Result<RoaringBitmap, FormatError> {
        let body = self.bytes(what)?;
        let start = self.at(self.pos - body.len());
        let bad = |m: &str| FormatError::new(start, format!("invalid bitmap in {what}: {m}"));
        // Walk the layout first: it proves every container is present before the Roaring
        // reader allocates for it.
        let extent = roaring_extent(body).map_err(bad)?;
        if extent != body.len() {
            return Err(bad(&format!(
                "{} bytes given, the bitmap takes {extent}",
                body.len()
            )));
        }
        let mut reader = body;
        let out = RoaringBitmap::deserialize_from(&mut reader).map_err(|e| bad(&e.to_string()))?;
        if !reader.is_empty() {
            return Err(bad("trailing bytes"));
        }
        Ok(out)
    }

    /// Fails if any bytes remain after `what`.
    pub fn finish(&self, what: &str) -> Result<(), FormatError> {
        if self.is_empty() {
            Ok(())
        } else {
            Err(self.error(format!(
                "{} unexpected bytes after {what}",
                self.remaining()
            )))
        }
    }
}

/// Cookie of the Roaring format without run containers.
const COOKIE_NO_RUNS: u32 = 12346;
/// Cookie (low 16 bits) of the Roaring format with run containers.
const COOKIE_RUNS: u16 = 12347;
/// Most values in an array container.
const ARRAY_LIMIT: usize = 4096;

/// The byte length of the portable Roaring serialization at the start of `b`, found by
/// walking its header and container sizes (contents are not checked).
fn roaring_extent(b: &[u8]) -> Result<usize, &'static str> {
    let u16_at = |at: usize| -> Option<u16> {
        let s = b.get(at..at.checked_add(2)?)?;
        Some(u16::from_le_bytes(s.try_into().ok()?))
    };
    let u32_at = |at: usize| -> Option<u32> {
        let s = b.get(at..at.checked_add(4)?)?;
        Some(u32::from_le_bytes(s.try_into().ok()?))
    };
    const SHORT: &str = "truncated";
    let cookie = u32_at(0).ok_or(SHORT)?;
    // (containers, offset of the run flags, offset of the descriptions, offset of the data)
    let (size, runs_at, desc_at, data_at) = if cookie == COOKIE_NO_RUNS {
        let size = u32_at(4).ok_or(SHORT)? as usize;
        if size > 1 << 16 {
            return Err("too many containers");
        }
        (size, None, 8, 8 + 8 * size)
    } else if cookie as u16 == COOKIE_RUNS {
        let size = (cookie >> 16) as usize + 1;
        let desc_at = 4 + size.div_ceil(8);
        let offsets = if size >= 4 { 4 * size } else { 0 };
        (size, Some(4), desc_at, desc_at + 4 * size + offsets)
    } else {
        return Err("unknown cookie");
    };
    if data_at > b.len() {
        return Err(SHORT);
    }
    let mut pos = data_at;
    for i in 0..size {
        let cardinality = usize::from(u16_at(desc_at + 4 * i + 2).ok_or(SHORT)?) + 1;
        let is_run = match runs_at {
            Some(r) => b.get(r + i / 8).ok_or(SHORT)? & (1 << (i % 8)) != 0,
            None => false,
        };
        let len = if is_run {
            2 + 4 * usize::from(u16_at(pos).ok_or(SHORT)?)
        } else if cardinality <= ARRAY_LIMIT {
            2 * cardinality
        } else {
            8192
        };
        pos = pos
            .checked_add(len)
            .filter(|&p| p <= b.len())
            .ok_or(SHORT)?;
    }
    Ok(pos)
}

/// Fewest bytes a bitmap field takes: its length and an empty bitmap.
const MIN_BITMAP: usize = 8 + 8;
/// Fewest bytes a string field takes: its length.
const MIN_STR: usize = 8;

/// Writes an index policy: the include patterns, then the exclude patterns, each a `u64`
/// count followed by the strings.
pub fn encode_policy(p: &IndexPolicy, e: &mut Enc) {
    for list in [&p.include, &p.exclude] {
        e.len(list.len());
        for s in list {
            e.str(s);
        }
    }
}

/// Reads an index policy written by [`encode_policy`].
pub fn decode_policy(d: &mut Dec) -> Result<IndexPolicy, FormatError> {
    let mut list = |what: &str| -> Result<Vec<String>, FormatError> {
        let n = d.count(MIN_STR, what)?;
        let mut out = Vec::with_capacity(n);
        for _ in 0..n {
            out.push(d.str(what)?.to_string());
        }
        Ok(out)
    };
    let include = list("policy include patterns")?;
    let exclude = list("policy exclude patterns")?;
    Ok(IndexPolicy { include, exclude })
}

const DICT: u8 = 0;
const SORTED: u8 = 1;

fn encode_postings<V>(p: &Postings<V>, e: &mut Enc, value: impl Fn(&mut Enc, &V)) {
    match p {
        Postings::Dict(entries) => {
            e.u8(DICT);
            e.len(entries.len());
            for (v, b) in entries {
                value(e, v);
                e.bitmap(b);
            }
        }
        Postings::Sorted { ids, blocks } => {
            e.u8(SORTED);
            e.u32_slice(ids);
            e.len(blocks.len());
            for b in blocks {
                e.bitmap(b);
            }
        }
    }
}

/// Reads postings; `value` reads one dictionary value, `increasing` tells whether a value
/// may follow another.
fn decode_postings<'a, V>(
    d: &mut Dec<'a>,
    what: &str,
    min_value: usize,
    mut value: impl FnMut(&mut Dec<'a>) -> Result<V, FormatError>,
    increasing: impl Fn(&V, &V) -> bool,
) -> Result<Postings<V>, FormatError> {
    let tag_at = d.offset();
    match d.u8(what)? {
        DICT => {
            let n = d.count(min_value + MIN_BITMAP, what)?;
            let mut entries: Vec<(V, RoaringBitmap)> = Vec::with_capacity(n);
            for _ in 0..n {
                let at = d.offset();
                let v = value(d)?;
                if entries
                    .last()
                    .is_some_and(|(prev, _)| !increasing(prev, &v))
                {
                    return Err(FormatError::new(
                        at,
                        format!("values of {what} are not strictly increasing"),
                    ));
                }
                let b = d.bitmap(what)?;
                entries.push((v, b));
            }
            Ok(Postings::Dict(entries))
        }
        SORTED => {
            let ids = d.u32_vec(what)?;
            let at = d.offset();
            let n = d.count(MIN_BITMAP, what)?;
            if n != ids.len() / BLOCK {
                return Err(FormatError::new(
                    at,
                    format!(
                        "{what} has {n} blocks for {} ids, expected {}",
                        ids.len(),
                        ids.len() / BLOCK
                    ),
                ));
            }
            let mut blocks = Vec::with_capacity(n);
            for _ in 0..n {
                let at = d.offset();
                let b = d.bitmap(what)?;
                if b.len() != BLOCK as u64 {
                    return Err(FormatError::new(
                        at,
                        format!("a block of {what} holds {} ids, not {BLOCK}", b.len()),
                    ));
                }
                blocks.push(b);
            }
            Ok(Postings::Sorted { ids, blocks })
        }
        t => Err(FormatError::new(
            tag_at,
            format!("unknown postings tag {t} in {what}"),
        )),
    }
}

/// Writes the postings of one path (layout in the module documentation).
pub fn encode_path_index(p: &PathIndex, e: &mut Enc) {
    e.u32_slice(&p.keys);
    e.bitmap(&p.defined);
    e.len(p.kinds.len());
    for k in &p.kinds {
        e.bitmap(k);
    }
    e.bitmap(&p.trues);
    encode_postings(&p.strings, e, |e, v| e.str(v));
    encode_postings(&p.numbers, e, |e, v| e.f64(*v));
}

/// Reads the postings of one path written by [`encode_path_index`], checking what queries
/// rely on: one bitmap per kind, dictionary values strictly increasing (strings by byte
/// order, numbers by [`f64::total_cmp`] with no NaN), and exactly one block bitmap of
/// [`BLOCK`] ids per whole block of a sorted array. Document ids are not checked against a
/// collection.
pub fn decode_path_index(d: &mut Dec) -> Result<PathIndex, FormatError> {
    let keys = d.u32_vec("path keys")?.into_boxed_slice();
    let defined = d.bitmap("defined bitmap")?;
    let at = d.offset();
    let n = d.u64("kind count")?;
    if n != KINDS as u64 {
        return Err(FormatError::new(
            at,
            format!("{n} kind bitmaps, expected {KINDS}"),
        ));
    }
    let mut kinds: [RoaringBitmap; KINDS] = Default::default();
    for k in &mut kinds {
        *k = d.bitmap("kind bitmap")?;
    }
    let trues = d.bitmap("trues bitmap")?;
    let strings = decode_postings(
        d,
        "string postings",
        MIN_STR,
        |d| Ok(Box::<str>::from(d.str("string value")?)),
        |a, b| a < b,
    )?;
    let numbers = decode_postings(
        d,
        "number postings",
        8,
        |d| {
            let at = d.offset();
            let v = d.f64("number value")?;
            if v.is_nan() {
                return Err(FormatError::new(at, "NaN in number postings"));
            }
            Ok(v)
        },
        |a, b| a.total_cmp(b).is_lt(),
    )?;
    Ok(PathIndex {
        keys,
        defined,
        kinds,
        trues,
        strings,
        numbers,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::index::StoreIndex;
    use crate::{CollectionKind, LoadOptions, Store};
    use proptest::prelude::*;

    fn bm(ids: impl IntoIterator<Item = u32>) -> RoaringBitmap {
        ids.into_iter().collect()
    }

    fn encode(p: &PathIndex) -> Vec<u8> {
        let mut out = Vec::new();
        encode_path_index(p, &mut Enc::new(&mut out));
        out
    }

    fn decode(bytes: &[u8]) -> Result<PathIndex, FormatError> {
        let mut d = Dec::new(bytes, 0);
        let p = decode_path_index(&mut d)?;
        d.finish("path index")?;
        Ok(p)
    }

    fn same_postings<V>(a: &Postings<V>, b: &Postings<V>, eq: impl Fn(&V, &V) -> bool) -> bool {
        match (a, b) {
            (Postings::Dict(x), Postings::Dict(y)) => {
                x.len() == y.len()
                    && x.iter()
                        .zip(y)
                        .all(|((va, ba), (vb, bb))| eq(va, vb) && ba == bb)
            }
            (
                Postings::Sorted {
                    ids: i1,
                    blocks: b1,
                },
                Postings::Sorted {
                    ids: i2,
                    blocks: b2,
                },
            ) => i1 == i2 && b1 == b2,
            _ => false,
        }
    }

    fn assert_same(a: &PathIndex, b: &PathIndex) {
        assert_eq!(a.keys, b.keys);
        assert_eq!(a.defined, b.defined);
        assert_eq!(a.kinds, b.kinds);
        assert_eq!(a.trues, b.trues);
        assert!(same_postings(&a.strings, &b.strings, |x, y| x == y));
        assert!(same_postings(&a.numbers, &b.numbers, |x, y| x.to_bits() == y.to_bits()));
    }

    /// The ids `0..n` in a scrambled order, with their block bitmaps.
    fn sorted_postings<V>(n: u32, seed: u32) -> Postings<V> {
        // 7919 is prime, so this is a permutation of 0..n for n below it.
        let ids: Vec<u32> = (0..n)
            .map(|i| ((u64::from(i) * 7919 + u64::from(seed)) % u64::from(n)) as u32)
            .collect();
        let blocks = ids
            .chunks_exact(BLOCK)
            .map(|c| bm(c.iter().copied()))
            .collect();
        Postings::Sorted { ids, blocks }
    }

    /// A path index with every kind, dictionary numbers and sorted strings.
    fn sample() -> PathIndex {
        let kinds: [RoaringBitmap; KINDS] = [
            bm([0, 1]),
            bm([2, 3]),
            bm([4, 5, 6, 7, 8, 9]),
            bm(0..2500),
            bm([100_000]),
            bm(200_000..205_000),
        ];
        let mut defined = RoaringBitmap::new();
        for k in &kinds {
            defined |= k;
        }
        PathIndex {
            keys: vec![3, 1, 4].into_boxed_slice(),
            defined,
            kinds,
            trues: bm([2]),
            strings: sorted_postings(2500, 7),
            numbers: Postings::Dict(vec![
                (f64::NEG_INFINITY, bm([4])),
                (-1.5, bm([5])),
                (-0.0, bm([6])),
                (0.0, bm([7])),
                (f64::MIN_POSITIVE / 4.0, bm([8])),
                (f64::INFINITY, bm([9])),
            ]),
        }
    }

    #[test]
    fn primitives_round_trip() {
        let mut out = vec![0xaa];
        let mut e = Enc::new(&mut out);
        e.u8(7);
        e.u32(0xdead_beef);
        e.u64(u64::MAX - 1);
        e.f64(-0.0);
        e.f64(f64::from_bits(0x7ff8_0000_0000_0001));
        e.bytes(b"\x00\xff");
        e.str("héllo");
        e.str("");
        e.u32_slice(&[1, u32::MAX, 0]);
        e.bitmap(&RoaringBitmap::new());
        let big = bm((0..70_000).chain([u32::MAX]));
        e.bitmap(&big);
        let mut runs = bm(10..100_000);
        runs.optimize();
        e.bitmap(&runs);

        let mut d = Dec::new(&out[1..], 1);
        assert_eq!(d.offset(), 1);
        assert_eq!(d.u8("a").unwrap(), 7);
        assert_eq!(d.u32("b").unwrap(), 0xdead_beef);
        assert_eq!(d.u64("c").unwrap(), u64::MAX - 1);
        assert_eq!(d.f64("d").unwrap().to_bits(), (-0.0f64).to_bits());
        assert_eq!(d.f64("e").unwrap().to_bits(), 0x7ff8_0000_0000_0001);
        assert_eq!(d.bytes("f").unwrap(), b"\x00\xff");
        assert_eq!(d.str("g").unwrap(), "héllo");
        assert_eq!(d.str("h").unwrap(), "");
        assert_eq!(d.u32_vec("i").unwrap(), [1, u32::MAX, 0]);
        assert_eq!(d.bitmap("j").unwrap(), RoaringBitmap::new());
        assert_eq!(d.bitmap("k").unwrap(), big);
        assert_eq!(d.bitmap("l").unwrap(), runs);
        assert!(d.is_empty());
        assert_eq!(d.remaining(), 0);
        d.finish("all").unwrap();
        assert_eq!(d.offset(), out.len() as u64);

        let err = d.u32("the answer").unwrap_err();
        assert_eq!(err.offset, out.len() as u64);
        assert_eq!(err.message, "unexpected end of data reading the answer");
        assert_eq!(
            err.to_string(),
            format!(
                "at byte {}: unexpected end of data reading the answer",
                out.len()
            )
        );
    }

    #[test]
    fn primitive_errors() {
        // A length beyond the data fails at the length, and consumes nothing.
        let mut out = Vec::new();
        let mut e = Enc::new(&mut out);
        e.u64(9);
        e.u64(1);
        let mut d = Dec::new(&out, 100);
        let err = d.bytes("name").unwrap_err();
        assert_eq!(err.offset, 100);
        assert_eq!(d.remaining(), 16);
        assert_eq!(d.take(3, "x").unwrap().len(), 3);
        assert_eq!(d.finish("x").unwrap_err().offset, 103);

        // Huge counts are refused before allocating.
        let mut out = Vec::new();
        let mut e = Enc::new(&mut out);
        e.u64(u64::MAX);
        e.u64(3);
        e.u32(0);
        let mut d = Dec::new(&out, 0);
        assert_eq!(d.u32_vec("ids").unwrap_err().offset, 0);
        let mut d = Dec::new(&out, 0);
        assert!(d.count(usize::MAX, "x").is_err());
        let mut d = Dec::new(&out[8..], 8);
        assert_eq!(d.count(4, "x").unwrap_err().offset, 8);
        let mut d = Dec::new(&out[8..], 8);
        assert_eq!(d.count(1, "x").unwrap(), 3);
        let mut d = Dec::new(&out[8..], 8);
        assert_eq!(d.count(0, "x").unwrap(), 3);

        // Invalid UTF-8 is reported where it starts.
        let mut out = Vec::new();
        Enc::new(&mut out).bytes(b"ab\xffc");
        let err = Dec::new(&out, 10).str("name").unwrap_err();
        assert_eq!(err.offset, 10 + 8 + 2);

        // Offsets never overflow.
        let d = Dec::new(&out, u64::MAX);
        assert_eq!(d.offset(), u64::MAX);
    }

    #[test]
    fn bitmap_errors() {
        let mut good = Vec::new();
        Enc::new(&mut good).bitmap(&bm([1, 5, 70_000]));
        assert!(Dec::new(&good, 0).bitmap("b").is_ok());

        // A longer length prefix with trailing bytes.
        let mut long = good.clone();
        long[0] += 1;
        long.push(0);
        let err = Dec::new(&long, 0).bitmap("b").unwrap_err();
        assert_eq!(err.offset, 8);
        // A shorter length prefix.
        let mut short = good.clone();
        short[0] -= 1;
        assert!(Dec::new(&short, 0).bitmap("b").is_err());
        // Unsorted values in an array container.
        let mut unsorted = Vec::new();
        Enc::new(&mut unsorted).bitmap(&bm([1, 5]));
        let n = unsorted.len();
        unsorted.swap(n - 4, n - 2);
        assert!(Dec::new(&unsorted, 0).bitmap("b").is_err());
        // A bad cookie.
        let mut cookie = good.clone();
        cookie[8] ^= 0xff;
        assert!(Dec::new(&cookie, 0).bitmap("b").is_err());
        // A huge container count in a tiny input.
        let mut tiny = Vec::new();
        let mut e = Enc::new(&mut tiny);
        e.u64(8);
        e.u32(COOKIE_NO_RUNS);
        e.u32(1 << 16);
        assert!(Dec::new(&tiny, 0).bitmap("b").is_err());
    }

    #[test]
    fn policies_round_trip() {
        let custom = IndexPolicy {
            include: vec![
                "tags/*".into(),
                "properties/reported/température".into(),
                "".into(),
            ],
            exclude: vec!["tags/secret".into()],
        };
        for p in [IndexPolicy::default(), IndexPolicy::none(), custom] {
            let mut out = Vec::new();
            encode_policy(&p, &mut Enc::new(&mut out));
            let mut d = Dec::new(&out, 0);
            assert_eq!(decode_policy(&mut d).unwrap(), p);
            d.finish("policy").unwrap();
            for cut in 0..out.len() {
                let err = decode_policy(&mut Dec::new(&out[..cut], 0)).unwrap_err();
                assert!(err.offset <= cut as u64);
            }
        }
    }

    #[test]
    fn path_index_round_trips() {
        let p = sample();
        let bytes = encode(&p);
        assert_same(&decode(&bytes).unwrap(), &p);
        let q = PathIndex::default();
        assert_same(&decode(&encode(&q)).unwrap(), &q);
    }

    #[test]
    fn built_path_indexes_round_trip() {
        let text = br#"{"deviceId":"d0","tags":{"v":null,"s":"b","n":1.5}}
{"deviceId":"d1","tags":{"v":true,"s":"a","n":-2}}
{"deviceId":"d2","tags":{"v":false,"s":"b","n":0}}
{"deviceId":"d3","tags":{"v":3,"s":"","n":-0.0}}
{"deviceId":"d4","tags":{"v":"x","s":"\u00e9"}}
{"deviceId":"d5","tags":{"v":[1,2],"n":1e300}}
{"deviceId":"d6","tags":{"v":{"a":1}}}
"#;
        let mut store = Store::new();
        let opts = LoadOptions {
            progress: false,
            ..LoadOptions::default()
        };
        store.load_bytes("t.jsonl", text, &opts).unwrap();
        let index = StoreIndex::build(&store, &IndexPolicy::default());
        let devices = index.collection(CollectionKind::Devices);
        let key = |n: &str| store.key_id(n).unwrap();
        let mut seen = 0;
        for path in [
            vec![key("tags"), key("v")],
            vec![key("tags"), key("s")],
            vec![key("tags"), key("n")],
            vec![key("tags"), key("v"), key("a")],
            vec![key("deviceId")],
        ] {
            let p = devices.path(&path).unwrap();
            let bytes = encode(p);
            let q = decode(&bytes).unwrap();
            assert_same(&q, p);
            seen += 1;
        }
        assert_eq!(seen, 5);
        let v = devices.path(&[key("tags"), key("v")]).unwrap();
        assert!(v.kinds.iter().all(|k| !k.is_empty()));
        assert!(matches!(&v.strings, Postings::Dict(d) if d.len() == 1));
        let s = devices.path(&[key("tags"), key("s")]).unwrap();
        assert!(matches!(&s.strings, Postings::Dict(d) if d.len() == 4));
    }

    #[test]
    fn sorted_postings_have_whole_blocks() {
        let p = sample();
        let Postings::Sorted { ids, blocks } = &p.strings else {
            panic!("sorted strings expected");
        };
        assert_eq!((ids.len(), blocks.len()), (2500, 2));
        assert_same(&decode(&encode(&p)).unwrap(), &p);
    }

    /// A smaller path index, for the tests that decode once per byte: every kind, dictionary
    /// strings, sorted numbers with one block, and a run container.
    fn small() -> PathIndex {
        let mut runs = bm(70_000..75_000);
        runs.optimize();
        let kinds: [RoaringBitmap; KINDS] = [
            bm([0]),
            bm([1, 2]),
            bm(3..3 + BLOCK as u32 + 5),
            bm([1100, 1101, 1102]),
            bm([1200]),
            runs,
        ];
        let mut defined = RoaringBitmap::new();
        for k in &kinds {
            defined |= k;
        }
        PathIndex {
            keys: vec![2, 7].into_boxed_slice(),
            defined,
            kinds,
            trues: bm([1]),
            strings: Postings::Dict(vec![
                ("a".into(), bm([1100])),
                ("b".into(), bm([1101])),
                ("é".into(), bm([1102])),
            ]),
            numbers: sorted_postings(BLOCK as u32 + 5, 9),
        }
    }

    #[test]
    fn truncation_is_an_error_everywhere() {
        let bytes = encode(&small());
        for cut in 0..bytes.len() {
            let err = decode_path_index(&mut Dec::new(&bytes[..cut], 0))
                .err()
                .unwrap_or_else(|| panic!("prefix of {cut} bytes decoded"));
            assert!(err.offset <= cut as u64, "{cut}: {err}");
        }
        let mut d = Dec::new(&bytes, 0);
        assert_same(&decode_path_index(&mut d).unwrap(), &small());
        assert!(d.is_empty());
    }

    #[test]
    fn flipped_bytes_never_panic() {
        let bytes = encode(&small());
        let mut copy = bytes.clone();
        for i in 0..bytes.len() {
            // Vary the flipped bits with the position: low bits, high bits, all bits.
            copy[i] ^= [0x01, 0x80, 0xff, 0x10][i % 4];
            if let Err(e) = decode(&copy) {
                assert!(e.offset <= bytes.len() as u64);
            }
            copy[i] = bytes[i];
        }
    }

    fn rejects(p: &PathIndex, edit: impl FnOnce(&mut Vec<u8>)) -> FormatError {
        let mut bytes = encode(p);
        edit(&mut bytes);
        decode(&bytes).unwrap_err()
    }

    #[test]
    fn broken_invariants_are_rejected() {
        let dict = |strings: Vec<&str>, numbers: Vec<f64>| PathIndex {
            strings: Postings::Dict(strings.into_iter().map(|s| (s.into(), bm([1]))).collect()),
            numbers: Postings::Dict(numbers.into_iter().map(|v| (v, bm([2]))).collect()),
            ..PathIndex::default()
        };
        let ok = |p: &PathIndex| decode(&encode(p)).map(|_| ());
        assert!(ok(&dict(vec!["a", "b"], vec![-0.0, 0.0])).is_ok());
        assert!(ok(&dict(vec!["b", "a"], vec![])).is_err());
        assert!(ok(&dict(vec!["a", "a"], vec![])).is_err());
        assert!(ok(&dict(vec![], vec![1.0, 1.0])).is_err());
        assert!(ok(&dict(vec![], vec![0.0, -0.0])).is_err());
        assert!(ok(&dict(vec![], vec![f64::NAN])).is_err());
        let err = ok(&dict(vec!["a", "c", "b"], vec![])).unwrap_err();
        assert!(err.message.contains("strictly increasing"), "{err}");

        // Blocks must match the ids.
        let mut p = PathIndex::default();
        let Postings::Sorted { ids, mut blocks } = sorted_postings::<f64>(2048, 1) else {
            unreachable!()
        };
        blocks.pop();
        p.numbers = Postings::Sorted {
            ids: ids.clone(),
            blocks,
        };
        assert!(ok(&p).is_err());
        p.numbers = Postings::Sorted {
            ids: ids.clone(),
            blocks: vec![bm(0..1024), bm(0..1023)],
        };
        assert!(ok(&p).unwrap_err().message.contains("holds 1023 ids"));
        p.numbers = Postings::Sorted {
            ids,
            blocks: vec![bm(0..1024), bm(0..1024), bm(0..1024)],
        };
        assert!(ok(&p).is_err());

        // The kind count: it follows the keys (8 + 0) and the defined bitmap.
        let empty = PathIndex::default();
        let at = 8 + 8 + RoaringBitmap::new().serialized_size();
        let err = rejects(&empty, |b| b[at] = 5);
        assert_eq!(err.offset, at as u64);
        // An unknown postings tag.
        let err = rejects(&empty, |b| {
            let n = b.len();
            b[n - 9] = 2;
        });
        assert!(err.message.contains("tag 2"), "{err}");
        // Trailing bytes.
        assert!(rejects(&empty, |b| b.push(0)).message.contains("after"));
    }

    fn arb_strings() -> impl Strategy<Value = Postings<Box<str>>> {
        prop_oneof![
            prop::collection::btree_map(".{0,8}", prop::collection::vec(any::<u32>(), 0..8), 0..12)
                .prop_map(|m| Postings::Dict(
                    m.into_iter().map(|(k, v)| (k.into(), bm(v))).collect()
                )),
            (0u32..2600, any::<u32>()).prop_map(|(n, s)| sorted_postings(n, s)),
        ]
    }

    fn arb_numbers() -> impl Strategy<Value = Postings<f64>> {
        prop_oneof![
            prop::collection::vec(
                (any::<f64>(), prop::collection::vec(0u32..100_000, 0..8)),
                0..12
            )
            .prop_map(|mut v| {
                v.retain(|(x, _)| !x.is_nan());
                v.sort_by(|a, b| a.0.total_cmp(&b.0));
                v.dedup_by(|a, b| a.0.to_bits() == b.0.to_bits());
                Postings::Dict(v.into_iter().map(|(x, ids)| (x, bm(ids))).collect())
            }),
            (0u32..2600, any::<u32>()).prop_map(|(n, s)| sorted_postings(n, s)),
        ]
    }

    fn arb_path_index() -> impl Strategy<Value = PathIndex> {
        (
            prop::collection::vec(any::<u32>(), 0..5),
            prop::collection::vec(prop::collection::vec(any::<u32>(), 0..20), KINDS + 1),
            arb_strings(),
            arb_numbers(),
        )
            .prop_map(|(keys, mut sets, strings, numbers)| {
                let trues = bm(sets.pop().unwrap_or_default());
                let kinds: [RoaringBitmap; KINDS] = std::array::from_fn(|i| bm(sets[i].clone()));
                PathIndex {
                    keys: keys.into_boxed_slice(),
                    defined: kinds.iter().fold(RoaringBitmap::new(), |a, b| a | b),
                    kinds,
                    trues,
                    strings,
                    numbers,
                }
            })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        #[test]
        fn random_path_indexes_round_trip(p in arb_path_index()) {
            let bytes = encode(&p);
            let q = decode(&bytes).unwrap();
            assert_same(&q, &p);
        }

        #[test]
        fn random_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..600)) {
            if let Err(e) = decode(&bytes) {
                prop_assert!(e.offset <= bytes.len() as u64);
            }
            let _ = decode_policy(&mut Dec::new(&bytes, 0));
        }

        #[test]
        fn edited_encodings_never_panic(
            p in arb_path_index(),
            edits in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..6),
            cut in any::<prop::sample::Index>(),
        ) {
            let mut bytes = encode(&p);
            for (i, b) in edits {
                let i = i.index(bytes.len());
                bytes[i] = b;
            }
            let n = cut.index(bytes.len() + 1);
            for b in [&bytes[..], &bytes[..n]] {
                if let Err(e) = decode(b) {
                    prop_assert!(e.offset <= b.len() as u64);
                }
            }
        }
    }
}
