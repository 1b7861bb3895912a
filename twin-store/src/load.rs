//! Loading JSON Lines and JSON arrays into a [`Store`], in parallel.
//!
//! The input is cut into chunks of whole documents; each chunk is parsed into its own tape on
//! a rayon worker ([`crate::parse`]); then, in input order, each chunk's member names are
//! added to the store's dictionary and its documents to the collections (which is where
//! duplicates are found). Files are read in blocks so that the whole input never has to be
//! in memory at once; the next block is read while the current one is parsed.

use std::fs::File;
use std::io::{IsTerminal, Read};
use std::path::Path;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use rayon::prelude::*;

use crate::error::{DocError, DocErrorKind, LoadError};
use crate::parse::{ChunkParser, ParsedChunk, TapePool, Unit, scan_array};
use crate::segment::SegmentWriter;
use crate::store::{CollectionKind, DocLoc, IdHasher, LazyChunk, Store};
use twinql_planner::value::Node;

use crate::mapped::MappedStr;
use crate::tape::{Chunk, NodeRef, Tape};

/// What the documents of an input are.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum DocKind {
    /// Device twins and module twins (those with a string `moduleId`). A device twin's
    /// `jobs` array, if any, is moved out of the twin into the job records.
    #[default]
    Twins,
    /// Job records, each with a string `deviceId` and `jobId`.
    Jobs,
}

/// How to load.
#[derive(Clone, Debug)]
pub struct LoadOptions {
    /// What the documents are.
    pub kind: DocKind,
    /// Skip invalid documents (reporting them) instead of failing the load.
    pub skip_invalid: bool,
    /// How many skipped documents the report describes (all are counted).
    pub max_reported_errors: usize,
    /// Show a progress bar on stderr for inputs over 64 MiB when stderr is a terminal.
    pub progress: bool,
    /// Deepest nesting of arrays and objects accepted (the document itself is level 1);
    /// at most 1000.
    pub max_depth: u32,
    /// Bytes of JSON Lines parsed at a time, 32 MiB by default: each block is parsed on all
    /// cores while the one before is added to the store. A file [`Store::load_path`] reads
    /// (not mapped) is read a block at a time, which bounds the input held in memory.
    pub block_bytes: usize,
    /// Whether [`Store::load_path`] maps a regular file and parses it in place (the default)
    /// rather than reading it. A mapped file truncated by another process during the load
    /// makes the process fault; turn this off to load files that may be rewritten meanwhile.
    pub map_files: bool,
    /// Bytes of input parsed into one chunk of tape; 0 picks a size from the input (1 to
    /// 8 MiB). Store segments use small chunks (256 KiB), because a mapped chunk is checked
    /// whole on first use.
    pub chunk_bytes: usize,
}

impl Default for LoadOptions {
    fn default() -> Self {
        LoadOptions {
            kind: DocKind::Twins,
            skip_invalid: false,
            max_reported_errors: 20,
            progress: true,
            max_depth: 64,
            block_bytes: 32 << 20,
            map_files: true,
            chunk_bytes: 0,
        }
    }
}

/// What a load did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LoadReport {
    /// Device twins added.
    pub devices: usize,
    /// Module twins added.
    pub modules: usize,
    /// Job records added.
    pub jobs: usize,
    /// Documents skipped as invalid (only with `skip_invalid`).
    pub skipped: u64,
    /// The first `max_reported_errors` skipped documents, by line.
    pub errors: Vec<DocError>,
    /// Bytes of input.
    pub bytes: u64,
    /// Wall-clock time of the load.
    pub elapsed: Duration,
}

/// Inputs larger than this get a progress bar.
const PROGRESS_MIN: u64 = 64 << 20;

/// The first byte that is not JSON whitespace.
fn first_non_ws(bytes: &[u8]) -> Option<u8> {
    bytes
        .iter()
        .copied()
        .find(|b| !matches!(b, b' ' | b'\t' | b'\n' | b'\r'))
}

/// 1-based line and column (in characters) of byte `at` in `text`.
fn line_col(text: &[u8], at: usize) -> (u64, u64) {
    let before = &text[..at.min(text.len())];
    let line = 1 + memchr::memchr_iter(b'\n', before).count() as u64;
    let start = memchr::memrchr(b'\n', before).map_or(0, |i| i + 1);
    let col = 1 + before[start..]
        .iter()
        .filter(|&&b| b & 0xc0 != 0x80)
        .count() as u64;
    (line, col)
}

/// Byte ranges of `text` of about `target` bytes, each ending after a newline (or at the
/// end).
fn split_lines(text: &[u8], target: usize) -> Vec<std::ops::Range<usize>> {
    let mut out = Vec::new();
    let mut start = 0;
    while start < text.len() {
        let mut end = start.saturating_add(target).min(text.len());
        if end < text.len() {
            end = memchr::memchr(b'\n', &text[end..]).map_or(text.len(), |i| end + i + 1);
        }
        out.push(start..end);
        start = end;
    }
    out
}

fn chunk_target(len: usize, chosen: usize) -> usize {
    if chosen > 0 {
        return chosen.max(4096);
    }
    (len / (rayon::current_num_threads() * 8)).clamp(1 << 20, 8 << 20)
}

struct Loader<'s> {
    store: &'s mut Store,
    name: String,
    opts: LoadOptions,
    chunks_mark: usize,
    docs_mark: [usize; 3],
    /// 1-based line of each document added by this load, per collection.
    lines: [Vec<u64>; 3],
    report: LoadReport,
    progress: Option<ProgressBar>,
    /// A segment each added chunk is written to as it is added.
    sink: Option<&'s mut SegmentWriter>,
    /// With a sink: the parsers' tape buffers, each back in the pool once its tape is read
    /// from the segment file instead.
    pool: Option<std::sync::Arc<TapePool>>,
}

impl<'s> Loader<'s> {
    fn new(store: &'s mut Store, name: &str, opts: &LoadOptions, total: u64) -> Self {
        let mut opts = opts.clone();
        opts.max_depth = opts.max_depth.clamp(1, 1000);
        let progress = (opts.progress && total > PROGRESS_MIN && std::io::stderr().is_terminal())
            .then(|| {
                let style = ProgressStyle::with_template(
                    "{msg} [{bar:40}] {bytes}/{total_bytes} {bytes_per_sec} eta {eta}",
                )
                .unwrap_or_else(|_| ProgressStyle::default_bar());
                ProgressBar::with_draw_target(Some(total), ProgressDrawTarget::stderr())
                    .with_style(style)
                    .with_message(format!("loading {name}"))
            });
        Loader {
            chunks_mark: store.chunks.len(),
            docs_mark: CollectionKind::ALL.map(|k| store.collection(k).len()),
            store,
            name: name.to_string(),
            opts,
            lines: Default::default(),
            report: LoadReport {
                bytes: total,
                ..LoadReport::default()
            },
            progress,
            sink: None,
            pool: None,
        }
    }

    fn doc_error(&self, line: u64, column: u64, kind: DocErrorKind) -> LoadError {
        LoadError::Document {
            file: self.name.clone(),
            error: DocError { line, column, kind },
        }
    }

    /// Loads `text`, whole lines whose first is line `base + 1`; returns the newlines seen.
    fn lines(&mut self, text: &[u8], base: u64) -> Result<u64, LoadError> {
        let hasher = self.store.hasher.clone();
        let pool = self.pool.clone();
        let parsed = parse_lines(
            text,
            &self.opts,
            self.progress.as_ref(),
            &hasher,
            pool.as_deref(),
        );
        self.commit_all(parsed, base)
    }

    /// Loads `bytes` in memory: a JSON array of documents (recognised by its first non-blank
    /// byte, `[`), else JSON Lines in blocks of about `block` bytes.
    fn bytes(&mut self, bytes: &[u8], block: usize) -> Result<(), LoadError> {
        if first_non_ws(bytes) == Some(b'[') {
            self.array(bytes)
        } else {
            self.lines_in_blocks(bytes, block)
        }
    }

    /// Loads `text`, JSON Lines in memory, in blocks of about `block` bytes: each block is
    /// parsed on all cores while the one before is added to the store (interning its names,
    /// numbering its documents, checking identities), which runs on one thread.
    fn lines_in_blocks(&mut self, text: &[u8], block: usize) -> Result<(), LoadError> {
        let opts = self.opts.clone();
        let progress = self.progress.clone();
        let hasher = self.store.hasher.clone();
        let pool = self.pool.clone();
        let mut blocks = split_lines(text, block.max(1)).into_iter();
        let mut base = 0;
        let mut pending = Vec::new();
        loop {
            let next = blocks.next();
            let (parsed, committed) = rayon::join(
                || {
                    next.map(|r| {
                        parse_lines(&text[r], &opts, progress.as_ref(), &hasher, pool.as_deref())
                    })
                },
                || self.commit_all(std::mem::take(&mut pending), base),
            );
            base += committed?;
            match parsed {
                Some(p) => pending = p,
                None => return Ok(()),
            }
        }
    }

    /// Adds the parsed chunks of one run of lines, the first being line `base + 1`; returns
    /// the newlines they held.
    fn commit_all(&mut self, parsed: Vec<ParsedChunk<'_>>, base: u64) -> Result<u64, LoadError> {
        let mut newlines = 0;
        for chunk in parsed {
            let n = chunk.newlines;
            self.commit(chunk, base + newlines)?;
            newlines += n;
        }
        Ok(newlines)
    }

    /// With a sink: the tape of chunk `i`, just written to the segment file, is read from
    /// the file from now on (once found equal to what was written), and its buffer goes back
    /// to the pool, so an import keeps its documents once, in the file's pages, rather than
    /// also on the heap (the in-memory load's copy of each tape at its exact size, into memory
    /// the process had not touched before, was a tenth of an import's CPU in `perf`).
    fn read_from_sink(&mut self, i: usize) -> Result<(), LoadError> {
        let (Some(sink), Some(pool)) = (self.sink.as_deref_mut(), &self.pool) else {
            return Ok(());
        };
        let Some(chunk) = self.store.chunks.get_mut(i).and_then(|c| c.cell.get_mut()) else {
            return Ok(());
        };
        let Tape::Heap(text) = &chunk.tape else {
            return Ok(());
        };
        if text.is_empty() {
            // Nothing to map (a chunk whose every line was skipped).
            if let Tape::Heap(text) = std::mem::take(&mut chunk.tape) {
                pool.give(text.into_bytes());
            }
            return Ok(());
        }
        let tmp = sink.tmp_path().to_path_buf();
        let io = |source| LoadError::Io {
            path: tmp.clone(),
            source,
        };
        let (map, from) = sink.map_tape(i).map_err(io)?;
        let mapped = MappedStr::new_equal(map, 0, text).map_err(|at| {
            io(std::io::Error::other(format!(
                "the segment's bytes at offset {} differ from those just written there",
                from + at as u64
            )))
        })?;
        if let Tape::Heap(text) = std::mem::replace(&mut chunk.tape, Tape::Mapped(mapped)) {
            pool.give(text.into_bytes());
        }
        Ok(())
    }

    /// Loads `text`, a JSON array of documents.
    fn array(&mut self, text: &[u8]) -> Result<(), LoadError> {
        let units = scan_array(text).map_err(|(at, kind)| {
            let (line, col) = line_col(text, at);
            self.doc_error(line, col, kind)
        })?;
        let target = chunk_target(text.len(), self.opts.chunk_bytes);
        let mut groups = Vec::new();
        let mut first = 0;
        for (i, u) in units.iter().enumerate() {
            if u.end - units[first].start >= target {
                groups.push(&units[first..=i]);
                first = i + 1;
            }
        }
        if first < units.len() {
            groups.push(&units[first..]);
        }
        let opts = &self.opts;
        let progress = &self.progress;
        let hasher = self.store.hasher.clone();
        let parsed: Vec<ParsedChunk<'_>> = groups
            .par_iter()
            .map(|group: &&[Unit]| {
                let bytes =
                    group.last().map_or(0, |l| l.end) - group.first().map_or(0, |f| f.start);
                let parser = ChunkParser::new(
                    opts.kind,
                    opts.skip_invalid,
                    opts.max_reported_errors,
                    opts.max_depth,
                    bytes,
                    hasher.clone(),
                    // Every chunk of an array is parsed before any is added, so there is no
                    // buffer to pass on: the tapes are copied out at their size (and still
                    // read from the segment once written there).
                    None,
                );
                let out = parser.parse_units(text, group);
                if let Some(p) = progress {
                    p.inc(bytes as u64);
                }
                out
            })
            .collect();
        for chunk in parsed {
            self.commit(chunk, 0)?;
        }
        Ok(())
    }

    /// Adds a parsed chunk whose line indexes are relative to line index `base`.
    fn commit(&mut self, parsed: ParsedChunk<'_>, base: u64) -> Result<(), LoadError> {
        let ParsedChunk {
            tape,
            floats,
            names,
            docs,
            errors,
            skipped,
            newlines: _,
            plain,
        } = parsed;
        let keys: Box<[u32]> = names.iter().map(|n| self.store.dict.intern(n)).collect();
        let Some(tape) = tape else {
            // The tape is UTF-8 by construction; this guards the invariant without panicking.
            return Err(self.doc_error(base + 1, 1, DocErrorKind::InvalidUtf8));
        };
        let chunk_idx = self.store.chunks.len();
        if chunk_idx >= u32::MAX as usize {
            return Err(LoadError::TooManyDocuments);
        }
        let chunk_idx = chunk_idx as u32;
        self.store.chunks.push(LazyChunk::ready(Chunk {
            tape: Tape::Heap(tape),
            floats: floats.into_boxed_slice(),
            keys,
            plain,
        }));
        if let Some(sink) = self.sink.as_deref_mut() {
            sink.add_chunk(self.store.chunk(chunk_idx))
                .map_err(|source| LoadError::Io {
                    path: sink.tmp_path().to_path_buf(),
                    source,
                })?;
            // Read back while the bytes just written are still in cache.
            self.read_from_sink(chunk_idx as usize)?;
        }

        let mut rejected_twin: Option<u64> = None;
        for d in docs {
            if d.from_twin && rejected_twin == Some(d.line) {
                continue;
            }
            let line = base + d.line + 1;
            let k = d.coll as usize;
            if self.store.colls[k].docs.len() >= u32::MAX as usize {
                return Err(LoadError::TooManyDocuments);
            }
            let loc = DocLoc {
                chunk: chunk_idx,
                pos: d.pos,
            };
            let sub_pos = match d.coll {
                CollectionKind::Devices => None,
                _ => Some(d.sub_pos),
            };
            match self.store.insert(d.coll, loc, d.id_pos, sub_pos, d.hash) {
                Ok(_) => {
                    self.lines[k].push(line);
                    match d.coll {
                        CollectionKind::Devices => self.report.devices += 1,
                        CollectionKind::Modules => self.report.modules += 1,
                        CollectionKind::Jobs => self.report.jobs += 1,
                    }
                }
                Err(existing) => {
                    let chunk = self.store.chunk(chunk_idx);
                    let node = |pos: u32| NodeRef {
                        chunk,
                        tape: &chunk.tape,
                        dict: &self.store.dict,
                        pos,
                    };
                    let dev = node(d.id_pos).as_str().unwrap_or_default();
                    let sub = sub_pos.and_then(|p| node(p).as_str());
                    let first_line = (existing as usize)
                        .checked_sub(self.docs_mark[k])
                        .and_then(|i| self.lines[k].get(i))
                        .copied();
                    let identity = match (d.coll, sub) {
                        (CollectionKind::Modules, Some(m)) => {
                            format!("deviceId {dev:?}, moduleId {m:?}")
                        }
                        (CollectionKind::Jobs, Some(j)) => format!("deviceId {dev:?}, jobId {j:?}"),
                        _ => format!("deviceId {dev:?}"),
                    };
                    let error = DocError {
                        line,
                        column: 1,
                        kind: DocErrorKind::Duplicate {
                            collection: d.coll,
                            identity,
                            first_line,
                        },
                    };
                    if !self.opts.skip_invalid {
                        return Err(LoadError::Document {
                            file: self.name.clone(),
                            error,
                        });
                    }
                    if d.coll == CollectionKind::Devices {
                        rejected_twin = Some(d.line);
                    }
                    self.report.skipped += 1;
                    self.push_error(error);
                }
            }
        }
        for e in errors {
            let error = DocError {
                line: base + e.line + 1,
                column: e.column,
                kind: e.kind,
            };
            if !self.opts.skip_invalid {
                return Err(LoadError::Document {
                    file: self.name.clone(),
                    error,
                });
            }
            self.push_error(error);
        }
        self.report.skipped += skipped;
        Ok(())
    }

    fn push_error(&mut self, error: DocError) {
        self.report.errors.push(error);
    }

    /// Finishes the load: on error, puts the store back as it was.
    fn end(
        mut self,
        result: Result<(), LoadError>,
        start: Instant,
    ) -> Result<LoadReport, LoadError> {
        if let Some(p) = &self.progress {
            p.finish_and_clear();
        }
        match result {
            Ok(()) => {
                self.report.errors.sort_by_key(|e| (e.line, e.column));
                self.report.errors.truncate(self.opts.max_reported_errors);
                self.report.elapsed = start.elapsed();
                Ok(self.report)
            }
            Err(e) => {
                for kind in CollectionKind::ALL {
                    self.store.truncate(kind, self.docs_mark[kind as usize]);
                }
                self.store.chunks.truncate(self.chunks_mark);
                if let Some(sink) = self.sink {
                    sink.truncate_chunks(self.chunks_mark);
                }
                Err(e)
            }
        }
    }
}

/// Parses `text` (whole lines) into chunks of documents on all cores.
fn parse_lines<'t>(
    text: &'t [u8],
    opts: &LoadOptions,
    progress: Option<&ProgressBar>,
    hasher: &IdHasher,
    pool: Option<&TapePool>,
) -> Vec<ParsedChunk<'t>> {
    let ranges = split_lines(text, chunk_target(text.len(), opts.chunk_bytes));
    ranges
        .par_iter()
        .map(|r| {
            let parser = ChunkParser::new(
                opts.kind,
                opts.skip_invalid,
                opts.max_reported_errors,
                opts.max_depth,
                r.len(),
                hasher.clone(),
                pool,
            );
            let out = parser.parse_lines(&text[r.clone()]);
            if let Some(p) = progress {
                p.inc(r.len() as u64);
            }
            out
        })
        .collect()
}

/// Reads about `block` bytes more onto `buf` (less if it already holds a partial line, so
/// that a buffer's capacity stays the same from block to block); also says whether the file
/// ended.
fn read_block(file: &mut File, mut buf: Vec<u8>, block: usize) -> std::io::Result<(Vec<u8>, bool)> {
    let want = block.saturating_sub(buf.len()).max(block / 2).max(1);
    let before = buf.len();
    buf.reserve(want);
    file.take(want as u64).read_to_end(&mut buf)?;
    let eof = buf.len() - before < want;
    Ok((buf, eof))
}

impl Store {
    /// Loads a file of JSON Lines (one document per line, blank lines skipped) or a JSON
    /// array of documents (recognised by its first non-blank byte, `[`).
    ///
    /// On error the store is left as it was (except that its key dictionary may have grown).
    pub fn load_path(&mut self, path: &Path, opts: &LoadOptions) -> Result<LoadReport, LoadError> {
        self.load_path_inner(path, opts, None)
    }

    /// [`Store::load_path`], also writing each chunk to `segment` as it is added (a store
    /// being imported: its documents reach the file while the input is still being parsed).
    /// On error the store and the segment are both left as they were.
    pub fn load_path_writing(
        &mut self,
        path: &Path,
        opts: &LoadOptions,
        segment: &mut SegmentWriter,
    ) -> Result<LoadReport, LoadError> {
        if segment.chunks() != self.chunks.len() {
            return Err(LoadError::Io {
                path: segment.tmp_path().to_path_buf(),
                source: std::io::Error::other(format!(
                    "the segment has {} chunks and the store {}: it was not written by this store",
                    segment.chunks(),
                    self.chunks.len()
                )),
            });
        }
        self.load_path_inner(path, opts, Some(segment))
    }

    fn load_path_inner(
        &mut self,
        path: &Path,
        opts: &LoadOptions,
        sink: Option<&mut SegmentWriter>,
    ) -> Result<LoadReport, LoadError> {
        let start = Instant::now();
        let io = |source| LoadError::Io {
            path: path.to_path_buf(),
            source,
        };
        let mut file = File::open(path).map_err(io)?;
        let meta = file.metadata().ok();
        let total = meta.as_ref().map_or(0, |m| m.len());
        let name = path.display().to_string();
        let block = opts.block_bytes.max(1);
        let mut loader = Loader::new(self, &name, opts, total);
        loader.pool = sink.is_some().then(Default::default);
        loader.sink = sink;
        // A regular file is mapped and parsed in place: no copy into read buffers. Other
        // files (pipes, devices) are read in blocks.
        let mapped = meta
            .is_some_and(|m| opts.map_files && m.is_file() && m.len() > 0)
            .then(|| crate::mapped::MappedFile::open_input(&file, path).ok())
            .flatten();
        if let Some(map) = mapped {
            let result = loader.bytes(map.bytes(), block);
            return loader.end(result, start);
        }
        let result = (|| {
            let (mut buf, mut eof) = read_block(&mut file, Vec::new(), block).map_err(io)?;
            if first_non_ws(&buf) == Some(b'[') {
                if !eof {
                    file.read_to_end(&mut buf).map_err(io)?;
                }
                return loader.array(&buf);
            }
            let mut base = 0;
            // Two buffers in turn: the next block is read while this one is parsed, and
            // neither is given back to the allocator between blocks.
            let mut spare = Vec::new();
            loop {
                if eof {
                    loader.lines(&buf, base)?;
                    return Ok(());
                }
                let cut = memchr::memrchr(b'\n', &buf).map_or(0, |i| i + 1);
                if cut == 0 {
                    // One line longer than a block: read on.
                    (buf, eof) = read_block(&mut file, buf, block).map_err(io)?;
                    continue;
                }
                spare.clear();
                spare.extend_from_slice(&buf[cut..]);
                let (parsed, next) = rayon::join(
                    || loader.lines(&buf[..cut], base),
                    || read_block(&mut file, std::mem::take(&mut spare), block),
                );
                base += parsed?;
                let (next, next_eof) = next.map_err(io)?;
                spare = std::mem::replace(&mut buf, next);
                eof = next_eof;
            }
        })();
        loader.end(result, start)
    }

    /// Loads JSON Lines or a JSON array from memory; `name` names the input in errors.
    ///
    /// On error the store is left as it was (except that its key dictionary may have grown).
    pub fn load_bytes(
        &mut self,
        name: &str,
        bytes: &[u8],
        opts: &LoadOptions,
    ) -> Result<LoadReport, LoadError> {
        let start = Instant::now();
        let mut loader = Loader::new(self, name, opts, bytes.len() as u64);
        let result = loader.bytes(bytes, opts.block_bytes);
        loader.end(result, start)
    }

    /// Adds documents given as JSON values (device or module twins for [`DocKind::Twins`],
    /// job records for [`DocKind::Jobs`]); for tests and conformance datasets.
    pub fn add_json<'v>(
        &mut self,
        kind: DocKind,
        docs: impl IntoIterator<Item = &'v serde_json::Value>,
    ) -> Result<LoadReport, LoadError> {
        let mut text = Vec::new();
        for doc in docs {
            // Writing a `Value` to a `Vec` cannot fail, and compact output has no newline.
            let _ = serde_json::to_writer(&mut text, doc);
            text.push(b'\n');
        }
        let opts = LoadOptions {
            kind,
            progress: false,
            ..LoadOptions::default()
        };
        self.load_bytes("<json>", &text, &opts)
    }

    /// Adds one device or module twin given as a JSON value.
    pub fn add_twin(&mut self, twin: &serde_json::Value) -> Result<(), LoadError> {
        self.add_json(DocKind::Twins, [twin]).map(|_| ())
    }

    /// Adds one job record given as a JSON value.
    pub fn add_job(&mut self, job: &serde_json::Value) -> Result<(), LoadError> {
        self.add_json(DocKind::Jobs, [job]).map(|_| ())
    }
}
