//! A JSON parser that writes documents straight into a chunk's tape.
//!
//! One [`ChunkParser`] handles one chunk of input on one thread. It interns member names in a
//! chunk-local table (no locking); the loader maps those local ids to store-wide ones when it
//! adds the chunk to the store. Nothing here allocates per value except the tape itself.

use std::borrow::Cow;
use std::collections::HashMap;
use std::hash::BuildHasher;

use crate::store::IdHasher;

use crate::dict::FxBuild;
use crate::error::DocErrorKind;
use crate::tape::str_at;
use crate::tape::{
    ARR, FALSE, FLOAT, INT, NULL, NUM_TEXT, OBJ, SHORT_STR, SHORT_STR_MAX, STR, TRUE, get_varint,
    put_varint, skip, varint_len, write_varint_at, zigzag,
};
use crate::{CollectionKind, DocKind};

/// An error at a byte offset inside one document's text.
#[derive(Debug)]
pub(crate) struct PErr {
    pub(crate) at: usize,
    pub(crate) kind: DocErrorKind,
}

/// Errors are boxed so that the parser's hot functions return small values.
type R<T = ()> = Result<T, Box<PErr>>;

#[cold]
fn err<T>(at: usize, kind: DocErrorKind) -> R<T> {
    Err(Box::new(PErr { at, kind }))
}

/// What stands at `s[at]`, for an "unexpected …" message.
fn unexpected<T>(s: &[u8], at: usize, expected: &'static str) -> R<T> {
    let Some(&b) = s.get(at) else {
        return err(at, DocErrorKind::UnexpectedEnd { expected });
    };
    let width = match b {
        0x00..=0x7f => 1,
        0xc0..=0xdf => 2,
        0xe0..=0xef => 3,
        _ => 4,
    };
    let end = (at + width).min(s.len());
    match std::str::from_utf8(&s[at..end])
        .ok()
        .and_then(|c| c.chars().next())
    {
        Some(found) => err(at, DocErrorKind::Unexpected { found, expected }),
        None => err(at, DocErrorKind::InvalidUtf8),
    }
}

#[inline(always)]
fn skip_ws(s: &[u8], p: &mut usize) {
    while let Some(&b) = s.get(*p) {
        if b == b' ' || b == b'\n' || b == b'\r' || b == b'\t' {
            *p += 1;
        } else {
            break;
        }
    }
}

const LO: u64 = 0x0101_0101_0101_0101;
const HI: u64 = 0x8080_8080_8080_8080;

/// Index of the first byte at or after `i` that ends the fast path of a string: `"`, `\`, a
/// control character or a non-ASCII byte (or `s.len()`). Eight bytes at a time.
#[inline(always)]
fn find_special(s: &[u8], mut i: usize) -> usize {
    loop {
        let mut w = [b'"'; 8];
        match s.get(i..i + 8) {
            Some(word) => w.copy_from_slice(word),
            None => {
                // The tail, padded with quotes: a padding quote stands for the end.
                let rest = s.get(i..).unwrap_or_default();
                w[..rest.len()].copy_from_slice(rest);
            }
        }
        let w = u64::from_le_bytes(w);
        let q = w ^ (LO * u64::from(b'"'));
        let b = w ^ (LO * u64::from(b'\\'));
        let t = (q.wrapping_sub(LO) & !q | b.wrapping_sub(LO) & !b | w.wrapping_sub(LO * 0x20) | w)
            & HI;
        if t != 0 {
            // The lowest flagged byte is exact (flags above it may be spurious).
            return (i + (t.trailing_zeros() / 8) as usize).min(s.len());
        }
        i += 8;
    }
}

/// Powers of ten that are exact doubles.
const POW10: [f64; 23] = [
    1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11, 1e12, 1e13, 1e14, 1e15, 1e16,
    1e17, 1e18, 1e19, 1e20, 1e21, 1e22,
];

pub(crate) const DEVICE_ID: usize = 0;
pub(crate) const MODULE_ID: usize = 1;
pub(crate) const JOB_ID: usize = 2;
const JOBS: usize = 3;
const SPECIAL: [&str; 4] = ["deviceId", "moduleId", "jobId", "jobs"];

/// `a == b`, without a call to `memcmp` for the short strings member names are.
#[inline(always)]
fn same_bytes(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    let n = a.len();
    if n < 8 {
        return a.iter().zip(b).all(|(x, y)| x == y);
    }
    if n > 64 {
        return a == b;
    }
    let word = |s: &[u8], at: usize| {
        let mut w = [0u8; 8];
        w.copy_from_slice(&s[at..at + 8]);
        u64::from_le_bytes(w)
    };
    // Whole words, then the last eight bytes (overlapping).
    let mut i = 0;
    while i + 8 < n {
        if word(a, i) != word(b, i) {
            return false;
        }
        i += 8;
    }
    word(a, n - 8) == word(b, n - 8)
}

/// Chunk-local member names.
#[derive(Default)]
pub(crate) struct LocalKeys<'i> {
    map: HashMap<&'i [u8], u32, FxBuild>,
    owned: HashMap<Box<[u8]>, u32, FxBuild>,
    pub(crate) names: Vec<Cow<'i, str>>,
    special: [u32; 4],
    /// `next[i + 1]`: the key that followed key `i` last time (`next[0]`: after the start),
    /// checked before hashing because twins repeat their member order.
    next: Vec<u32>,
    /// 1 + the previous key (0 at the start).
    last: usize,
    /// Whether each name is its own JSON string text (no escapes needed).
    plain: Vec<bool>,
    /// Direct-mapped cache in front of `map`, indexed by [`cache_slot`].
    cache: Vec<u32>,
}

const CACHE_SLOTS: usize = 1024;

/// Cache slot of a raw member name: a cheap mix of its length and first and last bytes.
#[inline(always)]
fn cache_slot(raw: &[u8]) -> usize {
    let n = raw.len();
    let word = |at: usize| {
        let mut w = [0u8; 8];
        let part = raw.get(at..(at + 8).min(n)).unwrap_or_default();
        w[..part.len()].copy_from_slice(part);
        u64::from_le_bytes(w)
    };
    let h = (word(0) ^ word(n.saturating_sub(8)).rotate_left(29) ^ n as u64)
        .wrapping_mul(0x9e37_79b9_7f4a_7c15);
    (h >> 54) as usize & (CACHE_SLOTS - 1)
}

impl<'i> LocalKeys<'i> {
    fn new() -> Self {
        LocalKeys {
            special: [u32::MAX; 4],
            next: vec![u32::MAX],
            cache: vec![u32::MAX; CACHE_SLOTS],
            ..Default::default()
        }
    }

    fn add(&mut self, name: Cow<'i, str>) -> u32 {
        let id = self.names.len() as u32;
        if let Some(i) = SPECIAL.iter().position(|s| *s == name) {
            self.special[i] = id;
        }
        let plain = name.bytes().all(|b| b >= 0x20 && b != b'"' && b != b'\\');
        self.plain.push(plain);
        self.names.push(name);
        self.next.push(u32::MAX);
        id
    }

    /// The predicted next key, if the input at `*p` (after the opening quote) is exactly
    /// that name and a closing quote; then `*p` moves past the quote. A name without quotes,
    /// backslashes and control characters is its own JSON text, so this needs no scan.
    #[inline(always)]
    fn predicted(&mut self, s: &[u8], p: &mut usize) -> Option<u32> {
        let id = *self.next.get(self.last)?;
        let name = self.names.get(id as usize)?.as_bytes();
        let end = *p + name.len();
        if s.get(end) == Some(&b'"')
            && self.plain.get(id as usize) == Some(&true)
            && same_bytes(name, s.get(*p..end)?)
        {
            *p = end + 1;
            self.last = id as usize + 1;
            return Some(id);
        }
        None
    }

    /// Remembers that `id` came after the previous key.
    #[inline]
    fn followed_by(&mut self, id: u32) -> u32 {
        if let Some(slot) = self.next.get_mut(self.last) {
            *slot = id;
        }
        self.last = id as usize + 1;
        id
    }

    #[inline]
    fn raw(&mut self, raw: &'i [u8]) -> u32 {
        let slot = cache_slot(raw);
        let cached = self.cache.get(slot).copied().unwrap_or(u32::MAX);
        if let Some(name) = self.names.get(cached as usize)
            && same_bytes(name.as_bytes(), raw)
        {
            return self.followed_by(cached);
        }
        let id = self.raw_lookup(raw);
        if let Some(c) = self.cache.get_mut(slot) {
            *c = id;
        }
        self.followed_by(id)
    }

    fn raw_lookup(&mut self, raw: &'i [u8]) -> u32 {
        if let Some(&id) = self.map.get(raw) {
            return id;
        }
        let id = match self.owned.get(raw) {
            Some(&id) => id,
            None => self.add(String::from_utf8_lossy(raw)),
        };
        self.map.insert(raw, id);
        id
    }

    fn decoded(&mut self, name: &[u8]) -> u32 {
        let id = match self.owned.get(name).or_else(|| self.map.get(name)) {
            Some(&id) => id,
            None => {
                let id = self.add(Cow::Owned(String::from_utf8_lossy(name).into_owned()));
                self.owned.insert(name.into(), id);
                id
            }
        };
        self.followed_by(id)
    }

    /// Local id of a special name, interning it if needed.
    fn special(&mut self, which: usize) -> u32 {
        if self.special[which] == u32::MAX {
            let last = self.last;
            self.decoded(SPECIAL[which].as_bytes());
            self.last = last;
        }
        self.special[which]
    }
}

/// A document parsed into the tape.
#[derive(Clone, Copy, Debug)]
pub(crate) struct ParsedDoc {
    pub(crate) coll: CollectionKind,
    /// Tape position of the document's object.
    pub(crate) pos: u32,
    /// Tape position of the `deviceId` string node.
    pub(crate) id_pos: u32,
    /// Tape position of the `moduleId` / `jobId` string node (devices: unused).
    pub(crate) sub_pos: u32,
    /// Line index relative to the chunk's first line.
    pub(crate) line: u64,
    /// A job record taken from the `jobs` array of the device twin before it.
    pub(crate) from_twin: bool,
    /// Hash of the identity (filled in by [`ChunkParser::finish`], on the parsing thread).
    pub(crate) hash: u32,
}

/// A document error, with its position already turned into a line index and a column.
#[derive(Debug)]
pub(crate) struct RawError {
    pub(crate) line: u64,
    pub(crate) column: u64,
    pub(crate) kind: DocErrorKind,
}

/// The parsed form of one chunk, ready to be added to a store.
pub(crate) struct ParsedChunk<'i> {
    /// The tape; `None` if it were not UTF-8, which the encoding rules out.
    pub(crate) tape: Option<String>,
    pub(crate) floats: Vec<f64>,
    pub(crate) names: Vec<Cow<'i, str>>,
    pub(crate) docs: Vec<ParsedDoc>,
    pub(crate) errors: Vec<RawError>,
    pub(crate) skipped: u64,
    /// Newlines seen (JSON Lines), to number the next chunk's lines.
    pub(crate) newlines: u64,
    /// No string in the tape needs escaping in JSON output.
    pub(crate) plain: bool,
}

/// One unit of input: the text of one document.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Unit {
    pub(crate) start: usize,
    pub(crate) end: usize,
    pub(crate) line: u64,
}

struct Ctx<'i> {
    floats: Vec<f64>,
    keys: LocalKeys<'i>,
    buf: Vec<u8>,
    max_depth: u32,
    /// Whether any string of the chunk had an escape (only such a string can hold a byte
    /// that JSON output must escape).
    escapes: bool,
}

thread_local! {
    /// The tape buffer of each loading thread, reused from chunk to chunk. A chunk's tape
    /// (about half its JSON) is written into a buffer reserved at the chunk's JSON size, then
    /// copied out at its exact size. Shrinking a fresh buffer in place instead cost a new
    /// allocation, its page faults and a copy per chunk anyway: 10–12% of a load's CPU in
    /// `perf` under mimalloc (see `benches/README.md`, "Allocator: mimalloc in the binary").
    static TAPE_BUF: std::cell::Cell<Vec<u8>> = const { std::cell::Cell::new(Vec::new()) };
}

/// The largest tape buffer a thread keeps for its next chunk (chunks are at most 8 MiB of
/// JSON unless a single document is larger).
const KEPT_TAPE_BUF: usize = 64 << 20;

/// Tape buffers passed from chunk to chunk while a load writes its tapes to a segment file
/// and reads them from there: a chunk's tape is handed over in the buffer it was written into
/// (no copy at its exact size), and the buffer comes back once the tape is in the file.
#[derive(Default)]
pub(crate) struct TapePool(std::sync::Mutex<Vec<Vec<u8>>>);

impl TapePool {
    /// An empty buffer that holds at least `size_hint` bytes.
    fn take(&self, size_hint: usize) -> Vec<u8> {
        let buf = self.0.lock().ok().and_then(|mut p| p.pop());
        match buf {
            Some(b) if b.capacity() >= size_hint => b,
            // Growing a buffer would copy its old capacity; a new one costs no copy.
            _ => Vec::with_capacity(size_hint + size_hint / 8),
        }
    }

    /// Gives a buffer back for a later chunk.
    pub(crate) fn give(&self, mut buf: Vec<u8>) {
        buf.clear();
        if let Ok(mut p) = self.0.lock() {
            p.push(buf);
        }
    }
}

/// Parses the documents of one chunk.
pub(crate) struct ChunkParser<'i> {
    ctx: Ctx<'i>,
    tape: Vec<u8>,
    /// The tape buffer came from a [`TapePool`] (passed to [`ChunkParser::new`]: the tape is
    /// written into a buffer of the pool that holds at least the size hint) and goes out with
    /// the tape, instead of being copied out at its size.
    pooled: bool,
    scratch: Vec<u8>,
    docs: Vec<ParsedDoc>,
    errors: Vec<RawError>,
    skipped: u64,
    mode: DocKind,
    skip_invalid: bool,
    max_errors: usize,
    hasher: IdHasher,
}

/// The hash the identity index uses for the document whose identity strings start at
/// `dev_pos` and `sub_pos` of `tape`.
pub(crate) fn identity_hash(
    hasher: &IdHasher,
    coll: CollectionKind,
    tape: &str,
    dev_pos: u32,
    sub_pos: u32,
) -> u32 {
    let dev = str_at(tape, dev_pos as usize).unwrap_or_default();
    let sub = match coll {
        CollectionKind::Devices => None,
        _ => str_at(tape, sub_pos as usize),
    };
    hasher.hash_one((dev, sub)) as u32
}

impl<'i> ChunkParser<'i> {
    pub(crate) fn new(
        mode: DocKind,
        skip_invalid: bool,
        max_errors: usize,
        max_depth: u32,
        size_hint: usize,
        hasher: IdHasher,
        pool: Option<&TapePool>,
    ) -> Self {
        ChunkParser {
            ctx: Ctx {
                floats: Vec::new(),
                keys: LocalKeys::new(),
                buf: Vec::new(),
                max_depth,
                escapes: false,
            },
            tape: match pool {
                Some(pool) => pool.take(size_hint),
                None => {
                    let mut tape = TAPE_BUF.take();
                    tape.clear();
                    tape.reserve(size_hint);
                    tape
                }
            },
            pooled: pool.is_some(),
            scratch: Vec::new(),
            docs: Vec::new(),
            errors: Vec::new(),
            skipped: 0,
            mode,
            skip_invalid,
            max_errors,
            hasher,
        }
    }

    /// Parses every line of `text` (a run of whole lines) as one document.
    pub(crate) fn parse_lines(mut self, text: &'i [u8]) -> ParsedChunk<'i> {
        let mut start = 0;
        let mut line = 0u64;
        let mut newlines = 0u64;
        while start < text.len() {
            let end = match memchr::memchr(b'\n', &text[start..]) {
                Some(i) => {
                    newlines += 1;
                    start + i
                }
                None => text.len(),
            };
            let unit = Unit { start, end, line };
            if !self.unit(text, unit) {
                break;
            }
            line += 1;
            start = end + 1;
        }
        self.finish(newlines)
    }

    /// Parses each unit of `text` as one document.
    pub(crate) fn parse_units(mut self, text: &'i [u8], units: &[Unit]) -> ParsedChunk<'i> {
        for &unit in units {
            if !self.unit(text, unit) {
                break;
            }
        }
        self.finish(0)
    }

    fn finish(mut self, newlines: u64) -> ParsedChunk<'i> {
        // The tape is copied out at its exact size and the buffer kept for the thread's next
        // chunk (see `TAPE_BUF`); a pooled buffer goes out with its tape.
        let tape = if self.pooled {
            String::from_utf8(std::mem::take(&mut self.tape)).ok()
        } else {
            String::from_utf8(self.tape.as_slice().to_vec()).ok()
        };
        if !self.pooled && self.tape.capacity() <= KEPT_TAPE_BUF {
            TAPE_BUF.set(std::mem::take(&mut self.tape));
        }
        self.ctx.floats.shrink_to_fit();
        if let Some(tape) = &tape {
            for d in &mut self.docs {
                d.hash = identity_hash(&self.hasher, d.coll, tape, d.id_pos, d.sub_pos);
            }
        }
        ParsedChunk {
            tape,
            floats: self.ctx.floats,
            names: self.ctx.keys.names,
            docs: self.docs,
            errors: self.errors,
            skipped: self.skipped,
            newlines,
            plain: !self.ctx.escapes,
        }
    }

    /// Parses one unit; returns whether to go on.
    fn unit(&mut self, text: &'i [u8], unit: Unit) -> bool {
        let s = &text[unit.start..unit.end];
        let tape_mark = self.tape.len();
        let float_mark = self.ctx.floats.len();
        let doc_mark = self.docs.len();
        match self.document(s, unit.line) {
            Ok(()) => true,
            Err(e) => {
                self.tape.truncate(tape_mark);
                self.ctx.floats.truncate(float_mark);
                self.docs.truncate(doc_mark);
                self.skipped += 1;
                if self.errors.len() < self.max_errors.max(1) {
                    let at = e.at.min(s.len());
                    let before = &s[..at];
                    let nl = memchr::memchr_iter(b'\n', before).count() as u64;
                    let line_start = memchr::memrchr(b'\n', before).map_or(0, |i| i + 1);
                    let column = 1 + before[line_start..]
                        .iter()
                        .filter(|&&b| b & 0xc0 != 0x80)
                        .count();
                    self.errors.push(RawError {
                        line: unit.line + nl,
                        column: column as u64,
                        kind: e.kind,
                    });
                }
                self.skip_invalid
            }
        }
    }

    /// Parses one top-level document (a device twin, module twin or job record).
    fn document(&mut self, s: &'i [u8], line: u64) -> R {
        let mut p = 0;
        skip_ws(s, &mut p);
        match s.get(p) {
            None => return Ok(()),
            Some(b'{') => {}
            Some(&c) => {
                let found = match c {
                    b'[' => "an array",
                    b'"' => "a string",
                    b'-' | b'0'..=b'9' => "a number",
                    b't' | b'f' => "a Boolean",
                    b'n' => "null",
                    _ => return unexpected(s, p, "a JSON object"),
                };
                return err(p, DocErrorKind::NotAnObject { found });
            }
        }
        let jobs_key = match self.mode {
            DocKind::Twins => self.ctx.keys.special(JOBS),
            DocKind::Jobs => u32::MAX,
        };
        let dev_key = self.ctx.keys.special(DEVICE_ID);
        let sub_key = match self.mode {
            DocKind::Twins => self.ctx.keys.special(MODULE_ID),
            DocKind::Jobs => self.ctx.keys.special(JOB_ID),
        };
        let doc_pos = self.tape.len();
        let tape = &mut self.tape;
        p += 1;
        tape.extend_from_slice(&[OBJ, 0, 0]);
        let body = tape.len();
        let mut count = 0u64;
        // (tape position, offset in `s`) of the first `deviceId` / `moduleId` / `jobId`.
        let mut dev: Option<(usize, usize)> = None;
        let mut sub: Option<(usize, usize)> = None;
        let mut jobs_at: Option<usize> = None;
        skip_ws(s, &mut p);
        if s.get(p) == Some(&b'}') {
            p += 1;
        } else {
            loop {
                match s.get(p) {
                    Some(b'"') => p += 1,
                    _ => return unexpected(s, p, "a member name"),
                }
                let id = self.ctx.key(s, &mut p)?;
                skip_ws(s, &mut p);
                match s.get(p) {
                    Some(b':') => p += 1,
                    _ => return unexpected(s, p, "':'"),
                }
                skip_ws(s, &mut p);
                if id == jobs_key {
                    if jobs_at.is_some() {
                        return err(p, DocErrorKind::DuplicateJobs);
                    }
                    jobs_at = Some(p);
                    self.scratch.clear();
                    self.ctx.value(s, &mut p, &mut self.scratch, 1)?;
                } else {
                    put_varint(tape, u64::from(id));
                    let vpos = tape.len();
                    let at = p;
                    self.ctx.value(s, &mut p, tape, 1)?;
                    count += 1;
                    if id == dev_key && dev.is_none() {
                        dev = Some((vpos, at));
                    } else if id == sub_key && sub.is_none() {
                        sub = Some((vpos, at));
                    }
                }
                skip_ws(s, &mut p);
                match s.get(p) {
                    Some(b',') => {
                        p += 1;
                        skip_ws(s, &mut p);
                    }
                    Some(b'}') => {
                        p += 1;
                        break;
                    }
                    _ => return unexpected(s, p, "',' or '}'"),
                }
            }
        }
        finish_container(tape, doc_pos, body, count);
        skip_ws(s, &mut p);
        if p < s.len() {
            return err(p, DocErrorKind::TrailingCharacters);
        }
        if tape.len() >= u32::MAX as usize {
            return err(0, DocErrorKind::TooLarge);
        }
        // Positions moved if the header grew.
        let header_growth = header_len(tape, doc_pos) - 3;
        let fix = |x: Option<(usize, usize)>| x.map(|(pos, at)| (pos + header_growth, at));
        let (dev, sub) = (fix(dev), fix(sub));

        let string_at = |tape: &[u8], x: Option<(usize, usize)>, member: &'static str| match x {
            Some((pos, at)) => match tape.get(pos) {
                Some(&t) if t == STR || t >= SHORT_STR => Ok(Some(pos)),
                _ => err(at, DocErrorKind::NotAString { member }),
            },
            None => Ok(None),
        };
        let Some(dev_pos) = string_at(tape, dev, "deviceId")? else {
            return err(0, DocErrorKind::MissingMember { member: "deviceId" });
        };
        let (coll, sub_pos) = match self.mode {
            DocKind::Twins => match string_at(tape, sub, "moduleId")? {
                Some(pos) => (CollectionKind::Modules, pos),
                None => (CollectionKind::Devices, u32::MAX as usize),
            },
            DocKind::Jobs => match string_at(tape, sub, "jobId")? {
                Some(pos) => (CollectionKind::Jobs, pos),
                None => return err(0, DocErrorKind::MissingMember { member: "jobId" }),
            },
        };
        self.docs.push(ParsedDoc {
            coll,
            pos: doc_pos as u32,
            id_pos: dev_pos as u32,
            sub_pos: sub_pos as u32,
            line,
            from_twin: false,
            hash: 0,
        });
        if let Some(at) = jobs_at {
            if coll == CollectionKind::Modules {
                return err(at, DocErrorKind::JobsOnModule);
            }
            self.jobs(at, dev_pos, line)?;
        }
        Ok(())
    }

    /// Moves the job records of the `jobs` array in `scratch` into the tape, each with the
    /// twin's `deviceId` first unless it has one.
    fn jobs(&mut self, at: usize, dev_pos: usize, line: u64) -> R {
        let dev_key = self.ctx.keys.special(DEVICE_ID);
        let job_key = self.ctx.keys.special(JOB_ID);
        let sc = &self.scratch;
        if sc.first() != Some(&ARR) {
            return err(at, DocErrorKind::JobsNotArray);
        }
        let (_, p) = get_varint(sc, 1);
        let (count, mut e) = get_varint(sc, p);
        let dev_end = skip(&self.tape, dev_pos);
        for index in 0..count as usize {
            let e_end = skip(sc, e);
            let bad = |problem| err(at, DocErrorKind::BadJob { index, problem });
            if sc.get(e) != Some(&OBJ) {
                return bad("not an object");
            }
            let (_, mp) = get_varint(sc, e + 1);
            let (members, mp) = get_varint(sc, mp);
            let mut job_dev = None;
            let mut job_id = None;
            let mut q = mp;
            for _ in 0..members {
                let (k, vp) = get_varint(sc, q);
                if k == u64::from(dev_key) && job_dev.is_none() {
                    job_dev = Some(vp);
                } else if k == u64::from(job_key) && job_id.is_none() {
                    job_id = Some(vp);
                }
                q = skip(sc, vp);
            }
            let is_str = |pos: usize| matches!(sc.get(pos), Some(&t) if t == STR || t >= SHORT_STR);
            match job_id {
                Some(pos) if is_str(pos) => {}
                Some(_) => return bad("`jobId` is not a string"),
                None => return bad("no `jobId`"),
            }
            let job_pos = self.tape.len();
            match job_dev {
                Some(pos) => {
                    let same = sc.get(pos..skip(sc, pos)) == self.tape.get(dev_pos..dev_end);
                    if !same {
                        return bad("`deviceId` differs from the twin's");
                    }
                    self.tape.extend_from_slice(&sc[e..e_end]);
                }
                None => {
                    self.tape.extend_from_slice(&[OBJ, 0, 0]);
                    let body = self.tape.len();
                    put_varint(&mut self.tape, u64::from(dev_key));
                    self.tape.extend_from_within(dev_pos..dev_end);
                    self.tape.extend_from_slice(&sc[mp..e_end]);
                    finish_container(&mut self.tape, job_pos, body, members + 1);
                }
            }
            let id_pos = find_member(&self.tape, job_pos, dev_key);
            let sub_pos = find_member(&self.tape, job_pos, job_key);
            if self.tape.len() >= u32::MAX as usize {
                return err(0, DocErrorKind::TooLarge);
            }
            self.docs.push(ParsedDoc {
                coll: CollectionKind::Jobs,
                pos: job_pos as u32,
                id_pos: id_pos as u32,
                sub_pos: sub_pos as u32,
                line,
                from_twin: true,
                hash: 0,
            });
            e = e_end;
        }
        Ok(())
    }
}

/// Length of the container header at `pos` (tag and two varints).
fn header_len(t: &[u8], pos: usize) -> usize {
    let (_, p) = get_varint(t, pos + 1);
    let (_, p) = get_varint(t, p);
    p - pos
}

/// Tape position of the value of the first member with local key `key` of the object at
/// `obj` (or `usize::MAX`).
fn find_member(t: &[u8], obj: usize, key: u32) -> usize {
    let (_, p) = get_varint(t, obj + 1);
    let (count, mut p) = get_varint(t, p);
    for _ in 0..count {
        let (k, vp) = get_varint(t, p);
        if k == u64::from(key) {
            return vp;
        }
        p = skip(t, vp);
    }
    usize::MAX
}

/// Writes the final header of the container that starts at `tag_pos` (which reserved two
/// bytes for it), moving the body if the header needs more.
#[inline]
fn finish_container(tape: &mut Vec<u8>, tag_pos: usize, body: usize, count: u64) {
    let len = (tape.len() - body) as u64;
    let need = varint_len(len) + varint_len(count);
    if need > 2 {
        let extra = need - 2;
        let old = tape.len();
        tape.resize(old + extra, 0);
        tape.copy_within(body..old, body + extra);
    }
    let at = write_varint_at(tape, tag_pos + 1, len);
    write_varint_at(tape, at, count);
}

impl<'i> Ctx<'i> {
    /// Parses a member name (after its opening quote) and returns its local id.
    #[inline]
    fn key(&mut self, s: &'i [u8], p: &mut usize) -> R<u32> {
        if let Some(id) = self.keys.predicted(s, p) {
            return Ok(id);
        }
        match self.string(s, p)? {
            Some(raw) => Ok(self.keys.raw(raw)),
            None => Ok(self.keys.decoded(&self.buf)),
        }
    }

    /// Parses a string after its opening quote. Returns the raw bytes when there was no
    /// escape, or `None` when the decoded text is in `self.buf`.
    #[inline]
    fn string(&mut self, s: &'i [u8], p: &mut usize) -> R<Option<&'i [u8]>> {
        let start = *p;
        let mut i = start;
        let mut escaped = false;
        let mut non_ascii = false;
        loop {
            i = find_special(s, i);
            match s.get(i) {
                Some(b'"') => break,
                Some(b'\\') => {
                    escaped = true;
                    i += 2;
                }
                Some(&c) if c < 0x20 => {
                    return err(i, DocErrorKind::ControlCharacter(c));
                }
                Some(_) => {
                    non_ascii = true;
                    i += 1;
                }
                None => {
                    return err(
                        s.len(),
                        DocErrorKind::UnexpectedEnd {
                            expected: "'\"' closing the string",
                        },
                    );
                }
            }
        }
        let content = &s[start..i];
        *p = i + 1;
        if non_ascii && let Err(e) = std::str::from_utf8(content) {
            return err(start + e.valid_up_to(), DocErrorKind::InvalidUtf8);
        }
        if !escaped {
            return Ok(Some(content));
        }
        self.unescape(content, start)?;
        Ok(None)
    }

    /// Decodes the escapes of `content` (which starts at offset `base`) into `self.buf`.
    fn unescape(&mut self, content: &[u8], base: usize) -> R {
        self.escapes = true;
        self.buf.clear();
        let mut i = 0;
        while i < content.len() {
            let Some(off) = memchr::memchr(b'\\', &content[i..]) else {
                self.buf.extend_from_slice(&content[i..]);
                break;
            };
            self.buf.extend_from_slice(&content[i..i + off]);
            i += off;
            let esc_at = base + i;
            let c = content.get(i + 1).copied().unwrap_or(0);
            i += 2;
            let simple = match c {
                b'"' => b'"',
                b'\\' => b'\\',
                b'/' => b'/',
                b'b' => 0x08,
                b'f' => 0x0c,
                b'n' => b'\n',
                b'r' => b'\r',
                b't' => b'\t',
                b'u' => {
                    let Some(hi) = hex4(content, i) else {
                        return err(esc_at, DocErrorKind::InvalidEscape);
                    };
                    i += 4;
                    let code = if (0xd800..0xdc00).contains(&hi) {
                        let lo = if content.get(i) == Some(&b'\\')
                            && content.get(i + 1) == Some(&b'u')
                        {
                            hex4(content, i + 2)
                        } else {
                            None
                        };
                        match lo {
                            Some(lo) if (0xdc00..0xe000).contains(&lo) => {
                                i += 6;
                                0x10000 + ((hi - 0xd800) << 10) + (lo - 0xdc00)
                            }
                            _ => return err(esc_at, DocErrorKind::LoneSurrogate),
                        }
                    } else if (0xdc00..0xe000).contains(&hi) {
                        return err(esc_at, DocErrorKind::LoneSurrogate);
                    } else {
                        hi
                    };
                    let Some(ch) = char::from_u32(code) else {
                        return err(esc_at, DocErrorKind::LoneSurrogate);
                    };
                    let mut enc = [0u8; 4];
                    self.buf
                        .extend_from_slice(ch.encode_utf8(&mut enc).as_bytes());
                    continue;
                }
                _ => return err(esc_at, DocErrorKind::InvalidEscape),
            };
            self.buf.push(simple);
        }
        Ok(())
    }

    /// Parses any value at `*p` (after whitespace) into `tape`; `depth` counts the containers
    /// around it.
    fn value(&mut self, s: &'i [u8], p: &mut usize, tape: &mut Vec<u8>, depth: u32) -> R {
        skip_ws(s, p);
        let Some(&c) = s.get(*p) else {
            return err(
                *p,
                DocErrorKind::UnexpectedEnd {
                    expected: "a value",
                },
            );
        };
        match c {
            b'"' => {
                *p += 1;
                let bytes = match self.string(s, p)? {
                    Some(raw) => raw,
                    None => &self.buf[..],
                };
                write_string(tape, bytes);
                Ok(())
            }
            b'{' => self.object(s, p, tape, depth + 1),
            b'[' => self.array(s, p, tape, depth + 1),
            b'-' | b'0'..=b'9' => self.number(s, p, tape),
            b't' => literal(s, p, b"true", TRUE, tape),
            b'f' => literal(s, p, b"false", FALSE, tape),
            b'n' => literal(s, p, b"null", NULL, tape),
            _ => unexpected(s, *p, "a value"),
        }
    }

    fn object(&mut self, s: &'i [u8], p: &mut usize, tape: &mut Vec<u8>, depth: u32) -> R {
        if depth > self.max_depth {
            return err(
                *p,
                DocErrorKind::TooDeep {
                    limit: self.max_depth,
                },
            );
        }
        *p += 1;
        let tag_pos = tape.len();
        tape.extend_from_slice(&[OBJ, 0, 0]);
        let body = tape.len();
        let mut count = 0u64;
        skip_ws(s, p);
        if s.get(*p) == Some(&b'}') {
            *p += 1;
            finish_container(tape, tag_pos, body, 0);
            return Ok(());
        }
        loop {
            match s.get(*p) {
                Some(b'"') => *p += 1,
                _ => return unexpected(s, *p, "a member name"),
            }
            let id = self.key(s, p)?;
            put_varint(tape, u64::from(id));
            skip_ws(s, p);
            match s.get(*p) {
                Some(b':') => *p += 1,
                _ => return unexpected(s, *p, "':'"),
            }
            self.value(s, p, tape, depth)?;
            count += 1;
            skip_ws(s, p);
            match s.get(*p) {
                Some(b',') => {
                    *p += 1;
                    skip_ws(s, p);
                }
                Some(b'}') => {
                    *p += 1;
                    break;
                }
                _ => return unexpected(s, *p, "',' or '}'"),
            }
        }
        finish_container(tape, tag_pos, body, count);
        Ok(())
    }

    fn array(&mut self, s: &'i [u8], p: &mut usize, tape: &mut Vec<u8>, depth: u32) -> R {
        if depth > self.max_depth {
            return err(
                *p,
                DocErrorKind::TooDeep {
                    limit: self.max_depth,
                },
            );
        }
        *p += 1;
        let tag_pos = tape.len();
        tape.extend_from_slice(&[ARR, 0, 0]);
        let body = tape.len();
        let mut count = 0u64;
        skip_ws(s, p);
        if s.get(*p) == Some(&b']') {
            *p += 1;
            finish_container(tape, tag_pos, body, 0);
            return Ok(());
        }
        loop {
            self.value(s, p, tape, depth)?;
            count += 1;
            skip_ws(s, p);
            match s.get(*p) {
                Some(b',') => *p += 1,
                Some(b']') => {
                    *p += 1;
                    break;
                }
                _ => return unexpected(s, *p, "',' or ']'"),
            }
        }
        finish_container(tape, tag_pos, body, count);
        Ok(())
    }

    /// Parses a number, keeping its text unless it can be rebuilt from the stored value.
    fn number(&mut self, s: &'i [u8], p: &mut usize, tape: &mut Vec<u8>) -> R {
        let start = *p;
        let mut i = start;
        let neg = s.get(i) == Some(&b'-');
        if neg {
            i += 1;
        }
        let int_start = i;
        match s.get(i) {
            Some(b'0') => i += 1,
            Some(b'1'..=b'9') => {
                while matches!(s.get(i), Some(b'0'..=b'9')) {
                    i += 1;
                }
            }
            _ => return err(i, DocErrorKind::InvalidNumber),
        }
        let int_end = i;
        let mut frac = None;
        if s.get(i) == Some(&b'.') {
            i += 1;
            let fs = i;
            while matches!(s.get(i), Some(b'0'..=b'9')) {
                i += 1;
            }
            if i == fs {
                return err(i, DocErrorKind::InvalidNumber);
            }
            frac = Some(fs);
        }
        let mut exp = false;
        if matches!(s.get(i), Some(b'e' | b'E')) {
            i += 1;
            if matches!(s.get(i), Some(b'+' | b'-')) {
                i += 1;
            }
            let es = i;
            while matches!(s.get(i), Some(b'0'..=b'9')) {
                i += 1;
            }
            if i == es {
                return err(i, DocErrorKind::InvalidNumber);
            }
            exp = true;
        }
        if matches!(s.get(i), Some(b'0'..=b'9')) {
            // A leading zero followed by more digits.
            return err(start, DocErrorKind::InvalidNumber);
        }
        *p = i;
        let text = &s[start..i];
        match (frac, exp) {
            (None, false) => {
                let mut v: i64 = 0;
                let mut ok = int_end - int_start <= 19;
                for &d in &s[int_start..int_end] {
                    let d = i64::from(d - b'0');
                    match v.checked_mul(10).and_then(|v| {
                        if neg {
                            v.checked_sub(d)
                        } else {
                            v.checked_add(d)
                        }
                    }) {
                        Some(n) => v = n,
                        None => {
                            ok = false;
                            break;
                        }
                    }
                }
                if ok && !(neg && v == 0) {
                    tape.push(INT);
                    put_varint(tape, zigzag(v));
                    return Ok(());
                }
            }
            (Some(fs), false) => {
                let frac_len = i - fs;
                let last_nonzero = s.get(i - 1) != Some(&b'0');
                if last_nonzero && frac_len < POW10.len() {
                    let mut m: u64 = 0;
                    let mut sig = 0;
                    for &d in s[int_start..int_end].iter().chain(&s[fs..i]) {
                        if m == 0 && d == b'0' {
                            continue;
                        }
                        sig += 1;
                        if sig > 15 {
                            break;
                        }
                        m = m * 10 + u64::from(d - b'0');
                    }
                    if sig <= 15 {
                        let v = m as f64 / POW10[frac_len];
                        let v = if neg { -v } else { v };
                        tape.push(FLOAT);
                        put_varint(tape, self.floats.len() as u64);
                        self.floats.push(v);
                        return Ok(());
                    }
                }
            }
            _ => {}
        }
        let v = std::str::from_utf8(text)
            .ok()
            .and_then(|t| t.parse::<f64>().ok())
            .unwrap_or(f64::NAN);
        tape.push(NUM_TEXT);
        put_varint(tape, self.floats.len() as u64);
        self.floats.push(v);
        put_varint(tape, text.len() as u64);
        tape.extend_from_slice(text);
        Ok(())
    }
}

fn hex4(s: &[u8], at: usize) -> Option<u32> {
    let digits = s.get(at..at + 4)?;
    let mut v = 0u32;
    for &d in digits {
        v = v * 16 + (d as char).to_digit(16)?;
    }
    Some(v)
}

fn literal(s: &[u8], p: &mut usize, word: &[u8], tag: u8, tape: &mut Vec<u8>) -> R {
    if s.get(*p..*p + word.len()) == Some(word) {
        *p += word.len();
        tape.push(tag);
        Ok(())
    } else {
        // Point at the first byte that differs.
        let mut i = *p;
        while s.get(i).is_some() && s.get(i) == word.get(i - *p) {
            i += 1;
        }
        unexpected(s, i, "a value")
    }
}

#[inline]
fn write_string(tape: &mut Vec<u8>, bytes: &[u8]) {
    if bytes.len() < SHORT_STR_MAX {
        tape.push(SHORT_STR + bytes.len() as u8);
    } else {
        tape.push(STR);
        put_varint(tape, bytes.len() as u64);
    }
    tape.extend_from_slice(bytes);
}

/// Splits a JSON array of documents into units, one per element, without parsing them.
/// Errors are (offset, kind) in `s`.
pub(crate) fn scan_array(s: &[u8]) -> Result<Vec<Unit>, (usize, DocErrorKind)> {
    let mut p = 0;
    skip_ws(s, &mut p);
    let mut units = Vec::new();
    if s.get(p) != Some(&b'[') {
        return Err((
            p,
            DocErrorKind::Unexpected {
                found: '?',
                expected: "'['",
            },
        ));
    }
    p += 1;
    let mut line = memchr::memchr_iter(b'\n', &s[..p]).count() as u64;
    let mut counted = p;
    skip_ws(s, &mut p);
    if s.get(p) == Some(&b']') {
        p += 1;
    } else {
        loop {
            let start = p;
            p = scan_value(s, p)?;
            line += memchr::memchr_iter(b'\n', &s[counted..start]).count() as u64;
            counted = start;
            units.push(Unit {
                start,
                end: p,
                line,
            });
            skip_ws(s, &mut p);
            match s.get(p) {
                Some(b',') => {
                    p += 1;
                    skip_ws(s, &mut p);
                }
                Some(b']') => {
                    p += 1;
                    break;
                }
                Some(&c) => {
                    return Err((
                        p,
                        DocErrorKind::Unexpected {
                            found: char::from(c),
                            expected: "',' or ']'",
                        },
                    ));
                }
                None => {
                    return Err((
                        p,
                        DocErrorKind::UnexpectedEnd {
                            expected: "',' or ']'",
                        },
                    ));
                }
            }
        }
    }
    skip_ws(s, &mut p);
    if p < s.len() {
        return Err((p, DocErrorKind::TrailingCharacters));
    }
    Ok(units)
}

/// End of the value that starts at `p`, found by matching brackets outside strings.
fn scan_value(s: &[u8], mut p: usize) -> Result<usize, (usize, DocErrorKind)> {
    let end_err = |at| {
        Err((
            at,
            DocErrorKind::UnexpectedEnd {
                expected: "the end of the document",
            },
        ))
    };
    match s.get(p) {
        Some(b'{' | b'[') => {
            let mut depth = 0u64;
            while let Some(&c) = s.get(p) {
                match c {
                    b'"' => {
                        p = skip_string(s, p + 1).ok_or((
                            p,
                            DocErrorKind::UnexpectedEnd {
                                expected: "'\"' closing the string",
                            },
                        ))?;
                        continue;
                    }
                    b'{' | b'[' => depth += 1,
                    b'}' | b']' => {
                        depth -= 1;
                        if depth == 0 {
                            return Ok(p + 1);
                        }
                    }
                    _ => {}
                }
                p += 1;
            }
            end_err(p)
        }
        Some(b'"') => skip_string(s, p + 1).ok_or((
            s.len(),
            DocErrorKind::UnexpectedEnd {
                expected: "'\"' closing the string",
            },
        )),
        Some(&c @ (b',' | b']')) => Err((
            p,
            DocErrorKind::Unexpected {
                found: char::from(c),
                expected: "a value",
            },
        )),
        None => Err((
            p,
            DocErrorKind::UnexpectedEnd {
                expected: "a value",
            },
        )),
        Some(_) => {
            while let Some(&c) = s.get(p) {
                if matches!(c, b',' | b']' | b' ' | b'\t' | b'\n' | b'\r') {
                    break;
                }
                p += 1;
            }
            Ok(p)
        }
    }
}

/// Position after the closing quote of a string whose content starts at `p`.
fn skip_string(s: &[u8], mut p: usize) -> Option<usize> {
    loop {
        let i = p + memchr::memchr2(b'"', b'\\', s.get(p..)?)?;
        if s[i] == b'"' {
            return Some(i + 1);
        }
        p = i + 2;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn special_bytes_are_found() {
        let s = b"abcdefghijklmnop\"";
        assert_eq!(find_special(s, 0), 16);
        assert_eq!(find_special(b"abc\\def", 0), 3);
        assert_eq!(find_special(b"abcdefgh\x01", 0), 8);
        assert_eq!(find_special("abcdefghé".as_bytes(), 0), 8);
        assert_eq!(find_special(b"abcdefghijk", 0), 11);
    }

    fn parse_on_this_thread(text: &[u8]) -> (Option<String>, u64) {
        let parser = ChunkParser::new(
            DocKind::Twins,
            true,
            10,
            64,
            text.len(),
            IdHasher::with_seed(7),
            None,
        );
        let chunk = parser.parse_lines(text);
        (chunk.tape, chunk.skipped)
    }

    #[test]
    fn a_reused_tape_buffer_starts_empty() {
        let first = br#"{"deviceId":"a","tags":{"plant":"Redmond43","n":[1,2.5,"x"]}}
{"deviceId":"b","properties":{"reported":{"t":21.5}}}
not json at all
"#;
        let second = br#"{"deviceId":"c","tags":{"z":true}}"#;
        // A fresh thread has no buffer yet: the reference tape.
        let alone = std::thread::spawn(move || parse_on_this_thread(second))
            .join()
            .expect("parser thread");
        let (first_tape, skipped) = parse_on_this_thread(first);
        assert_eq!(skipped, 1);
        assert!(first_tape.is_some_and(|t| t.len() > alone.0.as_ref().map_or(0, String::len)));
        // The same text after a larger chunk (and a failed document) on this thread.
        assert_eq!(parse_on_this_thread(second), alone);
        assert_eq!(parse_on_this_thread(second), alone);
    }
}
