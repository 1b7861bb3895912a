//! The write-ahead log of a durable database.
//!
//! A durable twin database keeps an immutable segment file plus this log of the writes made
//! since. Every write of the database appends one record (an opaque payload, here a serialised
//! twin) carrying the next sequence number, and the write is acknowledged only once
//! [`WalWriter::sync_through`] has returned, which makes the record durable as the
//! [`SyncPolicy`] promises. On open, the database reads the log with [`read_wal`] and replays
//! the records in order, then continues the log with [`WalWriter::append_to`].
//!
//! # File format
//!
//! All integers are little-endian. The file starts with a header of 32 bytes:
//!
//! | offset | size | field                                                          |
//! |-------:|-----:|----------------------------------------------------------------|
//! |      0 |    8 | magic `b"TWQLWAL\0"`                                           |
//! |      8 |    4 | format version, u32 = 1                                        |
//! |     12 |    4 | flags, u32 = 0                                                 |
//! |     16 |    8 | first_seq, u64: the sequence number the first record will carry |
//! |     24 |    4 | reserved, u32 = 0                                              |
//! |     28 |    4 | crc32, u32, of the preceding 28 bytes                          |
//!
//! Records follow back to back, each laid out as:
//!
//! | offset | size | field                                                    |
//! |-------:|-----:|----------------------------------------------------------|
//! |      0 |    4 | len, u32: the payload length                             |
//! |      4 |    4 | crc, u32: crc32 of the 8 seq bytes followed by the payload |
//! |      8 |    8 | seq, u64                                                 |
//! |     16 |  len | payload                                                  |
//!
//! Sequence numbers are consecutive, starting at first_seq. The maximum payload length is
//! [`MAX_RECORD`] (64 MiB): a larger len is treated as corruption. The sequence number
//! `u64::MAX` is never used, so the sequence number after the last record always exists. The
//! checksum is the common CRC-32 (ISO-HDLC, as in zlib and gzip).
//!
//! # Reading
//!
//! A log that does not start with a whole, valid header of a known version is refused
//! ([`WalError::Corrupt`]). After the header, the first record that is incomplete, fails its
//! checksum, is longer than [`MAX_RECORD`] or does not carry the expected sequence number ends
//! the log: it and everything after it are reported in [`WalContents::dropped`] and ignored.
//! That is what a crash in the middle of an append leaves behind (a torn write), and
//! [`WalWriter::append_to`] cuts such a tail off before appending.

use std::fmt;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::{Arc, Weak};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use parking_lot::{Condvar, Mutex, MutexGuard};

/// The 8 bytes a log file starts with.
pub const WAL_MAGIC: &[u8; 8] = b"TWQLWAL\0";

/// The format version this build writes and reads.
pub const WAL_VERSION: u32 = 1;

/// The largest payload a record may carry (64 MiB).
pub const MAX_RECORD: usize = 64 << 20;

/// Bytes in the file header.
const HEADER_LEN: usize = 32;

/// Bytes in a record before its payload: len, crc, seq.
const RECORD_HEADER_LEN: usize = 16;

// ---------------------------------------------------------------------------------------------
// Sync policy
// ---------------------------------------------------------------------------------------------

/// When appended records are made durable, and what an acknowledged write survives.
///
/// With every policy, [`WalWriter::append`] writes the record to the operating system (one
/// `write` system call) before it returns, so an acknowledged write survives a crash of the
/// process (even `SIGKILL`): the kernel still holds the bytes and writes them out.
///
/// [`EveryWrite`](SyncPolicy::EveryWrite) and [`GroupCommit`](SyncPolicy::GroupCommit) also
/// survive an operating system crash or a power loss once acknowledged, that is once
/// [`WalWriter::sync_through`] has returned for the record. [`Interval`](SyncPolicy::Interval)
/// may lose the writes of the last interval on an operating system crash or power loss (never on
/// a process crash).
///
/// The text form ([`SyncPolicy::parse`], [`Display`](fmt::Display)) is `every-write`, `group`
/// or `interval:<duration>` with a whole number and a unit of `ns`, `us`, `ms` or `s`, such as
/// `interval:50ms` or `interval:2s`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum SyncPolicy {
    /// fdatasync before each write is acknowledged (a sync already covering it counts).
    ///
    /// Each [`WalWriter::sync_through`] whose record is not yet covered runs its own fdatasync at
    /// once, without waiting for one already running.
    EveryWrite,
    /// Group commit (the default): a write waits for an fdatasync that covers it; one writer
    /// syncs for everyone waiting, so concurrent writers share syncs.
    #[default]
    GroupCommit,
    /// Acknowledge once the record is written to the OS; a background thread fdatasyncs every
    /// interval.
    ///
    /// The thread syncs only when something was appended since the last sync. An interval of
    /// zero is treated as one millisecond.
    Interval(Duration),
}

impl SyncPolicy {
    /// Parses `every-write`, `group` or `interval:<duration>` (such as `interval:50ms` or
    /// `interval:2s`; units `ns`, `us`, `ms`, `s`). Letter case and surrounding white space are
    /// ignored. A zero interval is refused.
    pub fn parse(s: &str) -> Result<SyncPolicy, String> {
        let t = s.trim();
        if t.eq_ignore_ascii_case("every-write") {
            return Ok(SyncPolicy::EveryWrite);
        }
        if t.eq_ignore_ascii_case("group") {
            return Ok(SyncPolicy::GroupCommit);
        }
        const PREFIX: &str = "interval:";
        if let Some(head) = t.get(..PREFIX.len())
            && head.eq_ignore_ascii_case(PREFIX)
        {
            let rest = t.get(PREFIX.len()..).unwrap_or_default();
            return parse_duration(rest)
                .map(SyncPolicy::Interval)
                .map_err(|e| format!("invalid sync policy {s:?}: {e}"));
        }
        Err(format!(
            "unknown sync policy {s:?}: expected every-write, group or interval:<duration> \
             (such as interval:50ms or interval:2s)"
        ))
    }
}

impl FromStr for SyncPolicy {
    type Err = String;

    fn from_str(s: &str) -> Result<SyncPolicy, String> {
        SyncPolicy::parse(s)
    }
}

impl fmt::Display for SyncPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SyncPolicy::EveryWrite => f.write_str("every-write"),
            SyncPolicy::GroupCommit => f.write_str("group"),
            SyncPolicy::Interval(d) => {
                let nanos = d.subsec_nanos();
                if nanos == 0 {
                    write!(f, "interval:{}s", d.as_secs())
                } else if nanos % 1_000_000 == 0 {
                    write!(f, "interval:{}ms", d.as_millis())
                } else if nanos % 1_000 == 0 {
                    write!(f, "interval:{}us", d.as_micros())
                } else {
                    write!(f, "interval:{}ns", d.as_nanos())
                }
            }
        }
    }
}

/// Parses a whole number followed by a unit (`ns`, `us`, `ms`, `s`) into a non-zero duration.
fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let digits = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(digits);
    if number.is_empty() {
        return Err("the interval needs a whole number and a unit, such as 50ms or 2s".into());
    }
    let unit_nanos: u128 = match unit.trim() {
        "ns" => 1,
        "us" | "µs" => 1_000,
        "ms" => 1_000_000,
        "s" => 1_000_000_000,
        "" => return Err("the interval needs a unit: ns, us, ms or s".into()),
        other => return Err(format!("unknown unit {other:?} (expected ns, us, ms or s)")),
    };
    let too_long = || "the interval is too long".to_string();
    let count: u128 = number.parse().map_err(|_| too_long())?;
    let total = count.checked_mul(unit_nanos).ok_or_else(too_long)?;
    let secs = u64::try_from(total / 1_000_000_000).map_err(|_| too_long())?;
    let nanos = u32::try_from(total % 1_000_000_000).map_err(|_| too_long())?;
    let d = Duration::new(secs, nanos);
    if d.is_zero() {
        return Err("the interval must be longer than zero".into());
    }
    Ok(d)
}

// ---------------------------------------------------------------------------------------------
// Errors
// ---------------------------------------------------------------------------------------------

/// What can go wrong reading or writing a log.
#[derive(Debug, thiserror::Error)]
pub enum WalError {
    /// An I/O error on the file (or a refused append, such as a payload above [`MAX_RECORD`]).
    #[error("wal {}: {source}", path.display())]
    Io {
        /// The log file.
        path: PathBuf,
        /// What the operating system (or the writer) said.
        source: io::Error,
    },
    /// The file is not a log or is corrupt before any record could be trusted (or an append
    /// carried the wrong sequence number).
    #[error("wal {}: at byte {offset}: {message}", path.display())]
    Corrupt {
        /// The log file.
        path: PathBuf,
        /// The byte offset in the file the problem is at.
        offset: u64,
        /// What is wrong.
        message: String,
    },
}

fn io_error(path: &Path, source: io::Error) -> WalError {
    WalError::Io {
        path: path.to_path_buf(),
        source,
    }
}

fn corrupt(path: &Path, offset: u64, message: String) -> WalError {
    WalError::Corrupt {
        path: path.to_path_buf(),
        offset,
        message,
    }
}

// ---------------------------------------------------------------------------------------------
// Encoding
// ---------------------------------------------------------------------------------------------

fn encode_header(first_seq: u64) -> [u8; HEADER_LEN] {
    let mut h = [0u8; HEADER_LEN];
    h[0..8].copy_from_slice(WAL_MAGIC);
    h[8..12].copy_from_slice(&WAL_VERSION.to_le_bytes());
    h[12..16].copy_from_slice(&0u32.to_le_bytes());
    h[16..24].copy_from_slice(&first_seq.to_le_bytes());
    h[24..28].copy_from_slice(&0u32.to_le_bytes());
    let crc = crc32fast::hash(&h[..28]);
    h[28..32].copy_from_slice(&crc.to_le_bytes());
    h
}

/// Appends one encoded record to `out`. The caller has checked `payload.len() <= MAX_RECORD`.
fn encode_record(out: &mut Vec<u8>, seq: u64, payload: &[u8]) {
    let len = u32::try_from(payload.len()).unwrap_or(u32::MAX);
    let seq_bytes = seq.to_le_bytes();
    let mut hasher = crc32fast::Hasher::new();
    hasher.update(&seq_bytes);
    hasher.update(payload);
    out.reserve(RECORD_HEADER_LEN + payload.len());
    out.extend_from_slice(&len.to_le_bytes());
    out.extend_from_slice(&hasher.finalize().to_le_bytes());
    out.extend_from_slice(&seq_bytes);
    out.extend_from_slice(payload);
}

// ---------------------------------------------------------------------------------------------
// Reading
// ---------------------------------------------------------------------------------------------

/// A record read back.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WalRecord {
    /// Its sequence number.
    pub seq: u64,
    /// The byte offset in the file the record starts at (its len field).
    pub offset: u64,
    /// What was appended.
    pub payload: Vec<u8>,
}

/// What was dropped from the end of a log when reading it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Dropped {
    /// The byte offset the dropped bytes start at (the end of the last valid record).
    pub offset: u64,
    /// How many bytes were dropped (up to the end of the file).
    pub bytes: u64,
    /// Why, such as "record at byte 4096: checksum mismatch (...)".
    pub reason: String,
}

/// The contents of a log file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WalContents {
    /// The sequence number of the first record, from the header.
    pub first_seq: u64,
    /// The valid records, in order; their sequence numbers are consecutive from `first_seq`.
    pub records: Vec<WalRecord>,
    /// Bytes of the file up to the end of the last whole, valid record (header included).
    pub valid_len: u64,
    /// Set when bytes after valid_len were not a whole valid record (a torn write from a crash,
    /// or corruption): they are ignored.
    pub dropped: Option<Dropped>,
}

impl WalContents {
    /// The sequence number the next record must carry: one after the last record, or
    /// `first_seq` when there are none.
    pub fn next_seq(&self) -> u64 {
        self.records
            .last()
            .map_or(self.first_seq, |r| r.seq.saturating_add(1))
    }
}

/// Reads a log file (the whole file, then [`parse_wal`]).
pub fn read_wal(path: &Path) -> Result<WalContents, WalError> {
    let bytes = fs::read(path).map_err(|e| io_error(path, e))?;
    parse_wal(path, &bytes)
}

fn u32_at(bytes: &[u8], at: usize) -> Option<u32> {
    let b = bytes.get(at..at.checked_add(4)?)?;
    Some(u32::from_le_bytes(b.try_into().ok()?))
}

fn u64_at(bytes: &[u8], at: usize) -> Option<u64> {
    let b = bytes.get(at..at.checked_add(8)?)?;
    Some(u64::from_le_bytes(b.try_into().ok()?))
}

/// Checks the header and returns first_seq.
fn parse_header(path: &Path, bytes: &[u8]) -> Result<u64, WalError> {
    if bytes.is_empty() {
        return Err(corrupt(
            path,
            0,
            format!("empty file: not a write-ahead log (expected a {HEADER_LEN}-byte header)"),
        ));
    }
    let magic_len = bytes.len().min(WAL_MAGIC.len());
    if bytes.get(..magic_len) != WAL_MAGIC.get(..magic_len) {
        return Err(corrupt(
            path,
            0,
            "not a twinql write-ahead log (bad magic)".into(),
        ));
    }
    if bytes.len() < HEADER_LEN {
        return Err(corrupt(
            path,
            0,
            format!("truncated header ({} of {HEADER_LEN} bytes)", bytes.len()),
        ));
    }
    let field = |at| u32_at(bytes, at).unwrap_or_default();
    // The version comes before the checksum: another version may lay out its header differently.
    let version = field(8);
    if version != WAL_VERSION {
        return Err(corrupt(
            path,
            8,
            format!(
                "unsupported format version {version} (this build reads version {WAL_VERSION})"
            ),
        ));
    }
    let stored = field(28);
    let computed = crc32fast::hash(bytes.get(..28).unwrap_or_default());
    if stored != computed {
        return Err(corrupt(
            path,
            28,
            format!("header checksum mismatch (stored {stored:#010x}, computed {computed:#010x})"),
        ));
    }
    let flags = field(12);
    if flags != 0 {
        return Err(corrupt(
            path,
            12,
            format!("unsupported header flags {flags:#010x} (this build knows none)"),
        ));
    }
    let reserved = field(24);
    if reserved != 0 {
        return Err(corrupt(
            path,
            24,
            format!("reserved header field is {reserved:#010x} (expected 0)"),
        ));
    }
    Ok(u64_at(bytes, 16).unwrap_or_default())
}

/// Checks the record starting at `pos` (`pos < bytes.len()`): returns its payload and the offset
/// after it, or why it is not a whole valid record with sequence number `expected`.
fn parse_record(bytes: &[u8], pos: usize, expected: u64) -> Result<(&[u8], usize), String> {
    let rest = bytes.get(pos..).unwrap_or_default();
    let Some(len) = u32_at(rest, 0) else {
        return Err(format!(
            "record at byte {pos}: incomplete record ({} of at least {RECORD_HEADER_LEN} bytes)",
            rest.len()
        ));
    };
    let len = usize::try_from(len).unwrap_or(usize::MAX);
    if len > MAX_RECORD {
        return Err(format!(
            "record at byte {pos}: length {len} exceeds the maximum of {MAX_RECORD} bytes"
        ));
    }
    let total = RECORD_HEADER_LEN + len;
    let Some(record) = rest.get(..total) else {
        return Err(format!(
            "record at byte {pos}: incomplete record ({} of {total} bytes)",
            rest.len()
        ));
    };
    let stored = u32_at(record, 4).unwrap_or_default();
    let checked = record.get(8..).unwrap_or_default();
    let computed = crc32fast::hash(checked);
    if stored != computed {
        return Err(format!(
            "record at byte {pos}: checksum mismatch \
             (stored {stored:#010x}, computed {computed:#010x})"
        ));
    }
    let seq = u64_at(record, 8).unwrap_or_default();
    if seq != expected {
        return Err(format!(
            "record at byte {pos}: sequence number {seq}, expected {expected}"
        ));
    }
    if seq == u64::MAX {
        return Err(format!(
            "record at byte {pos}: sequence number {seq} is out of range"
        ));
    }
    let payload = record.get(RECORD_HEADER_LEN..).unwrap_or_default();
    Ok((payload, pos + total))
}

/// Parses the bytes of a log.
///
/// Header problems (short file, bad magic, bad header crc, unknown version, unknown flags) are
/// [`WalError::Corrupt`] with the offset. In the record area, the first record that is
/// incomplete, has a bad crc, a len above [`MAX_RECORD`], or a seq that is not the expected next
/// one ends the log: everything from its offset on is reported in [`WalContents::dropped`]
/// (offset, byte count, reason like "record at byte 4096: checksum mismatch (...)" or "record at
/// byte 4096: incomplete record (12 of 40 bytes)"). Never panics, and never allocates more than
/// the input size. `path` only names the file in errors.
pub fn parse_wal(path: &Path, bytes: &[u8]) -> Result<WalContents, WalError> {
    let first_seq = parse_header(path, bytes)?;
    let mut records = Vec::new();
    let mut pos = HEADER_LEN;
    let mut expected = first_seq;
    let mut dropped = None;
    while pos < bytes.len() {
        match parse_record(bytes, pos, expected) {
            Ok((payload, end)) => {
                records.push(WalRecord {
                    seq: expected,
                    offset: pos as u64,
                    payload: payload.to_vec(),
                });
                expected += 1; // parse_record refuses u64::MAX
                pos = end;
            }
            Err(reason) => {
                dropped = Some(Dropped {
                    offset: pos as u64,
                    bytes: (bytes.len() - pos) as u64,
                    reason,
                });
                break;
            }
        }
    }
    Ok(WalContents {
        first_seq,
        records,
        valid_len: pos as u64,
        dropped,
    })
}

// ---------------------------------------------------------------------------------------------
// Writing
// ---------------------------------------------------------------------------------------------

/// The writer's bookkeeping, under one lock.
struct State {
    /// Bytes in the file (header included): the end of the last appended record.
    appended: u64,
    /// Bytes known durable.
    synced: u64,
    /// A group-commit leader is running an fdatasync.
    syncing: bool,
    /// The sequence number the next record must carry.
    next_seq: u64,
    /// Set once a write could not be rolled back or an fdatasync failed: the file can no
    /// longer be trusted (after a failed fsync the kernel may have dropped dirty pages), so
    /// every later append and sync fails.
    failed: Option<String>,
    /// How many fdatasyncs ran (for tests and diagnostics).
    syncs: u64,
}

/// What the writer and its background thread share.
struct Shared {
    path: PathBuf,
    /// Opened in append mode: every write lands at the end of the file.
    file: File,
    state: Mutex<State>,
    /// Signalled whenever an fdatasync finishes.
    sync_done: Condvar,
}

impl Shared {
    fn failed_error(&self, message: &str) -> WalError {
        io_error(
            &self.path,
            io::Error::other(format!(
                "an earlier write or sync of the log failed ({message}); reopen the log"
            )),
        )
    }

    /// Returns once the bytes up to `pos` (at most everything appended) are durable. With
    /// `share`, waits for an fdatasync already running and re-checks (group commit); without,
    /// runs its own at once.
    fn sync(&self, pos: u64, share: bool) -> Result<(), WalError> {
        let mut st = self.state.lock();
        loop {
            if let Some(message) = &st.failed {
                return Err(self.failed_error(message));
            }
            if st.synced >= pos.min(st.appended) {
                return Ok(());
            }
            if share && st.syncing {
                self.sync_done.wait(&mut st);
                continue;
            }
            let target = st.appended;
            if share {
                st.syncing = true;
            }
            let result = MutexGuard::unlocked(&mut st, || self.file.sync_data());
            if share {
                st.syncing = false;
            }
            st.syncs += 1;
            let result = match result {
                Ok(()) => {
                    st.synced = st.synced.max(target);
                    Ok(())
                }
                Err(e) => {
                    st.failed = Some(format!("fdatasync: {e}"));
                    Err(io_error(&self.path, e))
                }
            };
            self.sync_done.notify_all();
            result?;
        }
    }
}

/// Tells the interval thread to stop.
struct Stopper {
    stop: Mutex<bool>,
    wake: Condvar,
}

/// Appends records to a log file.
///
/// The writer is `Send + Sync` and synchronised inside: appends from many threads land one after
/// the other, and [`sync_through`](WalWriter::sync_through) runs without blocking appends.
/// Dropping the writer stops its background thread (with [`SyncPolicy::Interval`]) and makes a
/// last fdatasync, ignoring errors.
pub struct WalWriter {
    shared: Arc<Shared>,
    policy: SyncPolicy,
    interval: Option<(Arc<Stopper>, JoinHandle<()>)>,
}

impl fmt::Debug for WalWriter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let st = self.shared.state.lock();
        f.debug_struct("WalWriter")
            .field("path", &self.shared.path)
            .field("policy", &self.policy)
            .field("len", &st.appended)
            .field("synced", &st.synced)
            .field("next_seq", &st.next_seq)
            .field("failed", &st.failed)
            .finish()
    }
}

/// Makes the creation of `path` durable: fsyncs its directory. Errors are ignored (some
/// platforms cannot open or sync a directory).
fn sync_parent_dir(path: &Path) {
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    if let Ok(d) = File::open(dir) {
        let _ = d.sync_all();
    }
}

impl WalWriter {
    /// Creates a new log file (fails if it exists), writes and fsyncs the header, and fsyncs
    /// the parent directory. The first record must carry `first_seq`.
    pub fn create(path: &Path, first_seq: u64, policy: SyncPolicy) -> Result<WalWriter, WalError> {
        let mut file = OpenOptions::new()
            .append(true)
            .create_new(true)
            .open(path)
            .map_err(|e| io_error(path, e))?;
        let header = encode_header(first_seq);
        if let Err(e) = file.write_all(&header).and_then(|()| file.sync_all()) {
            drop(file);
            let _ = fs::remove_file(path);
            return Err(io_error(path, e));
        }
        sync_parent_dir(path);
        WalWriter::start(path, file, HEADER_LEN as u64, first_seq, policy)
    }

    /// Opens an existing log for appending after reading it (`contents` is what [`read_wal`]
    /// returned for `path`): truncates the file to `contents.valid_len`, dropping a torn tail
    /// for good, fdatasyncs it (so the records about to be replayed are durable) and appends
    /// after it. The next record must carry `contents.next_seq()`.
    ///
    /// Fails with [`WalError::Corrupt`] when the file's header does not match `contents` or the
    /// file is shorter than `contents.valid_len`.
    pub fn append_to(
        path: &Path,
        contents: &WalContents,
        policy: SyncPolicy,
    ) -> Result<WalWriter, WalError> {
        let io = |e| io_error(path, e);
        let file = OpenOptions::new()
            .read(true)
            .append(true)
            .open(path)
            .map_err(io)?;
        let mut header = Vec::with_capacity(HEADER_LEN);
        (&file)
            .take(HEADER_LEN as u64)
            .read_to_end(&mut header)
            .map_err(io)?;
        let first_seq = parse_header(path, &header)?;
        if first_seq != contents.first_seq {
            return Err(corrupt(
                path,
                16,
                format!(
                    "the log starts at sequence number {first_seq}, but the contents given start \
                     at {}",
                    contents.first_seq
                ),
            ));
        }
        let file_len = file.metadata().map_err(io)?.len();
        if contents.valid_len < HEADER_LEN as u64 || contents.valid_len > file_len {
            return Err(corrupt(
                path,
                contents.valid_len,
                format!(
                    "the contents given end at byte {}, outside the log ({file_len} bytes)",
                    contents.valid_len
                ),
            ));
        }
        if file_len > contents.valid_len {
            file.set_len(contents.valid_len).map_err(io)?;
        }
        file.sync_data().map_err(io)?;
        WalWriter::start(path, file, contents.valid_len, contents.next_seq(), policy)
    }

    fn start(
        path: &Path,
        file: File,
        len: u64,
        next_seq: u64,
        policy: SyncPolicy,
    ) -> Result<WalWriter, WalError> {
        let shared = Arc::new(Shared {
            path: path.to_path_buf(),
            file,
            state: Mutex::new(State {
                appended: len,
                synced: len,
                syncing: false,
                next_seq,
                failed: None,
                syncs: 0,
            }),
            sync_done: Condvar::new(),
        });
        let interval = match policy {
            SyncPolicy::Interval(every) => {
                let stopper = Arc::new(Stopper {
                    stop: Mutex::new(false),
                    wake: Condvar::new(),
                });
                let weak = Arc::downgrade(&shared);
                let thread_stopper = Arc::clone(&stopper);
                let handle = std::thread::Builder::new()
                    .name("twinql-wal-sync".into())
                    .spawn(move || interval_loop(&weak, &thread_stopper, every))
                    .map_err(|e| io_error(path, e))?;
                Some((stopper, handle))
            }
            SyncPolicy::EveryWrite | SyncPolicy::GroupCommit => None,
        };
        Ok(WalWriter {
            shared,
            policy,
            interval,
        })
    }

    /// Appends one record with sequence number `seq` and writes it to the OS (one `write`
    /// system call in the normal case) before returning. Returns the log position (the byte
    /// offset after the record) to pass to [`sync_through`](WalWriter::sync_through).
    ///
    /// `seq` must be [`next_seq`](WalWriter::next_seq), else the append is refused with a
    /// [`WalError::Corrupt`] saying "out of order" (the sequence number `u64::MAX` is refused
    /// too). A payload above [`MAX_RECORD`] is refused with an [`io::ErrorKind::InvalidInput`]
    /// error. When the write fails, the file is cut back to the previous record; if even that
    /// fails, every later append and sync fails.
    pub fn append(&self, seq: u64, payload: &[u8]) -> Result<u64, WalError> {
        let shared = &*self.shared;
        if payload.len() > MAX_RECORD {
            return Err(io_error(
                &shared.path,
                io::Error::new(
                    io::ErrorKind::InvalidInput,
                    format!(
                        "record payload of {} bytes exceeds the maximum of {MAX_RECORD} bytes",
                        payload.len()
                    ),
                ),
            ));
        }
        let mut buf = Vec::new();
        encode_record(&mut buf, seq, payload);
        let mut st = shared.state.lock();
        if let Some(message) = &st.failed {
            return Err(shared.failed_error(message));
        }
        if seq != st.next_seq {
            return Err(corrupt(
                &shared.path,
                st.appended,
                format!(
                    "out of order: append of sequence number {seq}, expected {}",
                    st.next_seq
                ),
            ));
        }
        if seq == u64::MAX {
            return Err(corrupt(
                &shared.path,
                st.appended,
                "out of sequence numbers".into(),
            ));
        }
        match (&shared.file).write_all(&buf) {
            Ok(()) => {
                st.appended += buf.len() as u64;
                st.next_seq += 1;
                Ok(st.appended)
            }
            Err(e) => {
                if let Err(e2) = shared.file.set_len(st.appended) {
                    st.failed = Some(format!("write: {e}; cutting the partial record off: {e2}"));
                }
                Err(io_error(&shared.path, e))
            }
        }
    }

    /// Blocks until the record ending at `pos` is durable per the policy. Positions beyond the
    /// end count as the end.
    ///
    /// - [`EveryWrite`](SyncPolicy::EveryWrite): returns at once if a sync already covered
    ///   `pos`, else runs an fdatasync.
    /// - [`GroupCommit`](SyncPolicy::GroupCommit): if no sync is running, this thread syncs
    ///   (covering everything appended so far) and wakes the others; else it waits for the
    ///   running one and re-checks.
    /// - [`Interval`](SyncPolicy::Interval): returns at once.
    ///
    /// Fails once any earlier sync failed.
    pub fn sync_through(&self, pos: u64) -> Result<(), WalError> {
        match self.policy {
            SyncPolicy::EveryWrite => self.shared.sync(pos, false),
            SyncPolicy::GroupCommit => self.shared.sync(pos, true),
            SyncPolicy::Interval(_) => match &self.shared.state.lock().failed {
                Some(message) => Err(self.shared.failed_error(message)),
                None => Ok(()),
            },
        }
    }

    /// fdatasyncs everything appended, whatever the policy (used before closing and at
    /// checkpoints).
    pub fn sync_all(&self) -> Result<(), WalError> {
        self.shared.sync(u64::MAX, true)
    }

    /// The log file.
    pub fn path(&self) -> &Path {
        &self.shared.path
    }

    /// Bytes in the file (header included).
    pub fn len(&self) -> u64 {
        self.shared.state.lock().appended
    }

    /// Whether the log holds no records.
    pub fn is_empty(&self) -> bool {
        self.len() <= HEADER_LEN as u64
    }

    /// Sequence number the next record must carry.
    pub fn next_seq(&self) -> u64 {
        self.shared.state.lock().next_seq
    }

    /// The sync policy.
    pub fn policy(&self) -> SyncPolicy {
        self.policy
    }
}

impl Drop for WalWriter {
    fn drop(&mut self) {
        if let Some((stopper, handle)) = self.interval.take() {
            *stopper.stop.lock() = true;
            stopper.wake.notify_all();
            let _ = handle.join();
        }
        let dirty = {
            let st = self.shared.state.lock();
            st.synced < st.appended || st.failed.is_some()
        };
        if dirty {
            let _ = self.shared.file.sync_data();
        }
    }
}

/// The background thread of [`SyncPolicy::Interval`]: every `every`, syncs what was appended
/// since the last sync, until stopped or the writer is gone.
fn interval_loop(shared: &Weak<Shared>, stopper: &Stopper, every: Duration) {
    let every = every.max(Duration::from_millis(1));
    let mut stop = stopper.stop.lock();
    loop {
        let deadline = Instant::now().checked_add(every);
        while !*stop {
            match deadline {
                Some(deadline) => {
                    if stopper.wake.wait_until(&mut stop, deadline).timed_out() {
                        break;
                    }
                }
                None => stopper.wake.wait(&mut stop),
            }
        }
        if *stop {
            return;
        }
        let Some(shared) = shared.upgrade() else {
            return;
        };
        // Errors mark the writer failed; its next append or sync reports them.
        MutexGuard::unlocked(&mut stop, || {
            let _ = shared.sync(u64::MAX, true);
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    struct TempDir(PathBuf);

    impl TempDir {
        fn new(tag: &str) -> TempDir {
            static COUNTER: AtomicUsize = AtomicUsize::new(0);
            let n = COUNTER.fetch_add(1, Ordering::Relaxed);
            let dir = std::env::temp_dir()
                .join(format!("twinql-wal-test-{}-{n}-{tag}", std::process::id()));
            let _ = fs::remove_dir_all(&dir);
            fs::create_dir_all(&dir).unwrap();
            TempDir(dir)
        }

        fn file(&self, name: &str) -> PathBuf {
            self.0.join(name)
        }
    }

    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = fs::remove_dir_all(&self.0);
        }
    }

    fn payload(i: usize) -> Vec<u8> {
        let len = match i {
            _ if i.is_multiple_of(10) => 0,
            _ if i % 250 == 7 => 100_000 + i,
            _ => (i * 7919) % 3000,
        };
        (0..len).map(|j| (i * 31 + j * 7) as u8).collect()
    }

    fn build(first_seq: u64, records: &[(u64, &[u8])]) -> Vec<u8> {
        let mut out = encode_header(first_seq).to_vec();
        for (seq, p) in records {
            encode_record(&mut out, *seq, p);
        }
        out
    }

    /// What must hold for whatever parse_wal returns for `len` input bytes.
    fn check_invariants(c: &WalContents, len: usize) {
        assert!(c.valid_len >= HEADER_LEN as u64 && c.valid_len <= len as u64);
        let mut end = HEADER_LEN as u64;
        for (i, r) in c.records.iter().enumerate() {
            assert_eq!(Some(r.seq), c.first_seq.checked_add(i as u64));
            assert_eq!(r.offset, end);
            assert!(r.payload.len() <= MAX_RECORD);
            end = r.offset + (RECORD_HEADER_LEN + r.payload.len()) as u64;
        }
        assert_eq!(end, c.valid_len);
        assert_eq!(
            c.next_seq(),
            c.first_seq + c.records.len() as u64,
            "next_seq"
        );
        match &c.dropped {
            Some(d) => {
                assert_eq!(d.offset, c.valid_len);
                assert!(d.bytes > 0);
                assert_eq!(c.valid_len + d.bytes, len as u64);
                assert!(
                    d.reason
                        .starts_with(&format!("record at byte {}: ", d.offset))
                );
            }
            None => assert_eq!(c.valid_len, len as u64),
        }
    }

    fn corrupt_parts(e: WalError) -> (u64, String, String) {
        let text = e.to_string();
        match e {
            WalError::Corrupt {
                offset, message, ..
            } => (offset, message, text),
            WalError::Io { .. } => panic!("expected Corrupt, got {text}"),
        }
    }

    #[test]
    fn writer_is_send_and_sync() {
        fn check<T: Send + Sync>() {}
        check::<WalWriter>();
        check::<WalError>();
    }

    #[test]
    fn round_trip_and_append_to() {
        let dir = TempDir::new("roundtrip");
        let path = dir.file("log.wal");
        let first = 1_000_000u64;
        let w = WalWriter::create(&path, first, SyncPolicy::GroupCommit).unwrap();
        assert!(w.is_empty());
        assert_eq!(w.len(), HEADER_LEN as u64);
        assert_eq!(w.next_seq(), first);
        assert_eq!(w.path(), path);
        assert_eq!(w.policy(), SyncPolicy::GroupCommit);
        let mut ends = Vec::new();
        for i in 0..1000 {
            ends.push(w.append(first + i as u64, &payload(i)).unwrap());
        }
        assert!(!w.is_empty());
        assert_eq!(w.next_seq(), first + 1000);
        assert_eq!(w.len(), *ends.last().unwrap());
        w.sync_through(*ends.last().unwrap()).unwrap();
        w.sync_all().unwrap();
        drop(w);

        let bytes = fs::read(&path).unwrap();
        assert_eq!(&bytes[0..8], b"TWQLWAL\0");
        assert_eq!(u32_at(&bytes, 8), Some(1));
        assert_eq!(u32_at(&bytes, 12), Some(0));
        assert_eq!(u64_at(&bytes, 16), Some(first));
        assert_eq!(u32_at(&bytes, 24), Some(0));
        assert_eq!(u32_at(&bytes, 28), Some(crc32fast::hash(&bytes[..28])));
        assert_eq!(bytes.len() as u64, *ends.last().unwrap());

        let c = read_wal(&path).unwrap();
        check_invariants(&c, bytes.len());
        assert_eq!(c.first_seq, first);
        assert_eq!(c.records.len(), 1000);
        assert_eq!(c.dropped, None);
        assert_eq!(c.next_seq(), first + 1000);
        let mut start = HEADER_LEN as u64;
        for (i, r) in c.records.iter().enumerate() {
            assert_eq!(r.seq, first + i as u64);
            assert_eq!(r.offset, start);
            assert_eq!(r.payload, payload(i));
            start = ends[i];
        }

        let w = WalWriter::append_to(&path, &c, SyncPolicy::EveryWrite).unwrap();
        assert_eq!(w.next_seq(), first + 1000);
        assert_eq!(w.len(), c.valid_len);
        for i in 1000..1010 {
            let pos = w.append(first + i as u64, &payload(i)).unwrap();
            w.sync_through(pos).unwrap();
        }
        drop(w);
        let c = read_wal(&path).unwrap();
        assert_eq!(c.records.len(), 1010);
        assert_eq!(c.dropped, None);
        for (i, r) in c.records.iter().enumerate() {
            assert_eq!((r.seq, &r.payload), (first + i as u64, &payload(i)));
        }
    }

    #[test]
    fn empty_log_round_trip() {
        let dir = TempDir::new("empty");
        let path = dir.file("log.wal");
        drop(WalWriter::create(&path, 0, SyncPolicy::default()).unwrap());
        let c = read_wal(&path).unwrap();
        assert_eq!(
            c,
            WalContents {
                first_seq: 0,
                records: vec![],
                valid_len: 32,
                dropped: None
            }
        );
        let w = WalWriter::append_to(&path, &c, SyncPolicy::GroupCommit).unwrap();
        assert!(w.is_empty());
        assert_eq!(w.next_seq(), 0);
        let pos = w.append(0, b"x").unwrap();
        assert_eq!(pos, 32 + 16 + 1);
        w.sync_through(pos).unwrap();
        drop(w);
        let c = read_wal(&path).unwrap();
        assert_eq!(c.records.len(), 1);
        assert_eq!(c.records[0].payload, b"x");
    }

    #[test]
    fn create_refuses_an_existing_file() {
        let dir = TempDir::new("exists");
        let path = dir.file("log.wal");
        fs::write(&path, b"something precious").unwrap();
        let err = WalWriter::create(&path, 1, SyncPolicy::GroupCommit).unwrap_err();
        let kind = match &err {
            WalError::Io { source, .. } => Some(source.kind()),
            WalError::Corrupt { .. } => None,
        };
        assert_eq!(kind, Some(io::ErrorKind::AlreadyExists));
        assert!(
            err.to_string()
                .starts_with(&format!("wal {}: ", path.display()))
        );
        assert_eq!(fs::read(&path).unwrap(), b"something precious");
    }

    #[test]
    fn append_refuses_wrong_seq_and_oversized_payload() {
        let dir = TempDir::new("refuse");
        let path = dir.file("log.wal");
        let w = WalWriter::create(&path, 5, SyncPolicy::GroupCommit).unwrap();
        let (offset, message, _) = corrupt_parts(w.append(6, b"a").unwrap_err());
        assert_eq!(offset, 32);
        assert!(message.contains("out of order"), "{message}");
        let (_, message, _) = corrupt_parts(w.append(4, b"a").unwrap_err());
        assert!(message.contains("out of order"), "{message}");
        let big = vec![0u8; MAX_RECORD + 1];
        match w.append(5, &big).unwrap_err() {
            WalError::Io { source, .. } => {
                assert_eq!(source.kind(), io::ErrorKind::InvalidInput);
                assert!(source.to_string().contains("exceeds the maximum"));
            }
            e => panic!("unexpected {e}"),
        }
        // Nothing was written, and the writer still works.
        assert_eq!(w.len(), 32);
        assert_eq!(w.next_seq(), 5);
        let pos = w.append(5, b"ok").unwrap();
        w.sync_through(pos).unwrap();
        drop(w);
        let c = read_wal(&path).unwrap();
        assert_eq!(c.records.len(), 1);
        assert_eq!(
            (c.records[0].seq, &c.records[0].payload[..]),
            (5, &b"ok"[..])
        );
    }

    #[test]
    fn torn_tail_at_every_offset() {
        let dir = TempDir::new("torn");
        let path = dir.file("log.wal");
        let first = 100u64;
        let payloads: Vec<Vec<u8>> = (0..10u8).map(|i| vec![i; usize::from(i) * 3]).collect();
        let w = WalWriter::create(&path, first, SyncPolicy::GroupCommit).unwrap();
        let mut ends = vec![HEADER_LEN as u64];
        for (i, p) in payloads.iter().enumerate() {
            ends.push(w.append(first + i as u64, p).unwrap());
        }
        w.sync_all().unwrap();
        drop(w);
        let full = fs::read(&path).unwrap();
        let n = payloads.len();
        let cut_path = dir.file("cut.wal");
        for cut in ends[n - 2]..=ends[n] {
            let bytes = &full[..cut as usize];
            let whole = ends.iter().filter(|&&e| e <= cut).count() - 1;
            let valid = ends[whole];
            let c = parse_wal(&cut_path, bytes).unwrap();
            check_invariants(&c, bytes.len());
            assert_eq!(c.records.len(), whole, "cut at {cut}");
            assert_eq!(c.valid_len, valid);
            for (i, r) in c.records.iter().enumerate() {
                assert_eq!((r.seq, &r.payload), (first + i as u64, &payloads[i]));
            }
            match &c.dropped {
                None => assert_eq!(cut, valid),
                Some(d) => {
                    assert_eq!((d.offset, d.bytes), (valid, cut - valid), "cut at {cut}");
                    assert!(d.reason.contains("incomplete record"), "{}", d.reason);
                }
            }

            // Reopening cuts the torn tail off, and appending continues cleanly.
            let _ = fs::remove_file(&cut_path);
            fs::write(&cut_path, bytes).unwrap();
            let c = read_wal(&cut_path).unwrap();
            let w = WalWriter::append_to(&cut_path, &c, SyncPolicy::GroupCommit).unwrap();
            assert_eq!(w.len(), valid);
            assert_eq!(fs::metadata(&cut_path).unwrap().len(), valid);
            assert_eq!(w.next_seq(), first + whole as u64);
            let pos = w.append(first + whole as u64, b"after").unwrap();
            w.sync_through(pos).unwrap();
            drop(w);
            let again = read_wal(&cut_path).unwrap();
            assert_eq!(again.dropped, None, "cut at {cut}");
            assert_eq!(again.records.len(), whole + 1);
            assert_eq!(again.records[whole].payload, b"after");
            assert_eq!(again.records[..whole], c.records[..]);
        }
    }

    #[test]
    fn flipped_payload_byte_drops_from_that_record() {
        let payloads: Vec<Vec<u8>> = (0..10u8).map(|i| vec![i; 20]).collect();
        let recs: Vec<(u64, &[u8])> = payloads
            .iter()
            .enumerate()
            .map(|(i, p)| (7 + i as u64, &p[..]))
            .collect();
        let good = build(7, &recs);
        let rec5 = HEADER_LEN + 5 * (RECORD_HEADER_LEN + 20);
        let path = Path::new("/data/flip.wal");
        // A flipped byte in the payload, the seq or the crc of record 5.
        for at in [rec5 + 16 + 3, rec5 + 8, rec5 + 4] {
            let mut bytes = good.clone();
            bytes[at] ^= 0x40;
            let c = parse_wal(path, &bytes).unwrap();
            check_invariants(&c, bytes.len());
            assert_eq!(c.records.len(), 5);
            let d = c.dropped.unwrap();
            assert_eq!(d.offset, rec5 as u64);
            assert_eq!(d.bytes, (bytes.len() - rec5) as u64);
            assert!(
                d.reason
                    .starts_with(&format!("record at byte {rec5}: checksum mismatch")),
                "{}",
                d.reason
            );
        }
        // A flipped length: the record no longer checks out either way.
        let mut bytes = good.clone();
        bytes[rec5] ^= 0x01;
        let c = parse_wal(path, &bytes).unwrap();
        check_invariants(&c, bytes.len());
        assert_eq!(c.records.len(), 5);
        assert_eq!(c.dropped.unwrap().offset, rec5 as u64);
    }

    #[test]
    fn oversized_length_is_dropped() {
        let mut bytes = build(1, &[(1, b"one")]);
        let at = bytes.len();
        bytes.extend_from_slice(&(MAX_RECORD as u32 + 1).to_le_bytes());
        bytes.extend_from_slice(&[0u8; 40]);
        let c = parse_wal(Path::new("big.wal"), &bytes).unwrap();
        check_invariants(&c, bytes.len());
        assert_eq!(c.records.len(), 1);
        let d = c.dropped.unwrap();
        assert_eq!(d.offset, at as u64);
        assert!(d.reason.contains("exceeds the maximum"), "{}", d.reason);
        // A length that runs past the end of the input is incomplete, and nothing is allocated
        // for it.
        let mut bytes = build(1, &[]);
        bytes.extend_from_slice(&(MAX_RECORD as u32).to_le_bytes());
        bytes.extend_from_slice(&[0u8; 20]);
        let c = parse_wal(Path::new("big.wal"), &bytes).unwrap();
        assert_eq!(
            c.dropped.unwrap().reason,
            format!(
                "record at byte 32: incomplete record (24 of {} bytes)",
                MAX_RECORD + 16
            )
        );
    }

    #[test]
    fn seq_gap_is_dropped() {
        let bytes = build(5, &[(5, b"a"), (6, b"b"), (8, b"c"), (9, b"d")]);
        let c = parse_wal(Path::new("gap.wal"), &bytes).unwrap();
        check_invariants(&c, bytes.len());
        assert_eq!(c.records.len(), 2);
        assert_eq!(c.next_seq(), 7);
        let d = c.dropped.unwrap();
        let third = HEADER_LEN as u64 + 2 * 17;
        assert_eq!((d.offset, d.bytes), (third, 2 * 17));
        assert_eq!(
            d.reason,
            format!("record at byte {third}: sequence number 8, expected 7")
        );
        // The first record must carry first_seq.
        let bytes = build(5, &[(4, b"a"), (5, b"b")]);
        let c = parse_wal(Path::new("gap.wal"), &bytes).unwrap();
        assert!(c.records.is_empty());
        assert_eq!(c.valid_len, 32);
        assert_eq!(c.dropped.unwrap().offset, 32);
        // A repeated record is not the next one either.
        let bytes = build(5, &[(5, b"a"), (5, b"a")]);
        let c = parse_wal(Path::new("gap.wal"), &bytes).unwrap();
        assert_eq!(c.records.len(), 1);
        assert!(c.dropped.is_some());
    }

    #[test]
    fn seq_max_is_never_used() {
        let bytes = build(u64::MAX - 1, &[(u64::MAX - 1, b"a"), (u64::MAX, b"b")]);
        let c = parse_wal(Path::new("max.wal"), &bytes).unwrap();
        check_invariants(&c, bytes.len());
        assert_eq!(c.records.len(), 1);
        assert_eq!(c.next_seq(), u64::MAX);
        assert!(c.dropped.unwrap().reason.contains("out of range"));

        let dir = TempDir::new("max");
        let path = dir.file("log.wal");
        let w = WalWriter::create(&path, u64::MAX - 1, SyncPolicy::GroupCommit).unwrap();
        w.append(u64::MAX - 1, b"a").unwrap();
        assert_eq!(w.next_seq(), u64::MAX);
        assert!(matches!(
            w.append(u64::MAX, b"b"),
            Err(WalError::Corrupt { .. })
        ));
    }

    #[test]
    fn header_problems_are_corrupt() {
        let path = Path::new("/var/lib/twinql/db.wal");
        let good = build(42, &[(42, b"x")]);
        let with_field = |at: usize, value: u32| {
            let mut b = good.clone();
            b[at..at + 4].copy_from_slice(&value.to_le_bytes());
            let crc = crc32fast::hash(&b[..28]);
            b[28..32].copy_from_slice(&crc.to_le_bytes());
            b
        };

        let mut bad_magic = good.clone();
        bad_magic[3] ^= 0x20;
        let (offset, message, text) = corrupt_parts(parse_wal(path, &bad_magic).unwrap_err());
        assert_eq!(offset, 0);
        assert!(message.contains("magic"), "{message}");
        assert!(
            text.starts_with("wal /var/lib/twinql/db.wal: at byte 0: "),
            "{text}"
        );

        let (offset, _, text) = corrupt_parts(parse_wal(path, &with_field(8, 7)).unwrap_err());
        assert_eq!(offset, 8);
        assert_eq!(
            text,
            "wal /var/lib/twinql/db.wal: at byte 8: unsupported format version 7 \
             (this build reads version 1)"
        );

        let (offset, message, _) = corrupt_parts(parse_wal(path, &with_field(12, 1)).unwrap_err());
        assert_eq!(offset, 12);
        assert!(message.contains("flags"), "{message}");

        let (offset, message, _) = corrupt_parts(parse_wal(path, &with_field(24, 9)).unwrap_err());
        assert_eq!(offset, 24);
        assert!(message.contains("reserved"), "{message}");

        let mut bad_crc = good.clone();
        bad_crc[17] ^= 1; // first_seq
        let (offset, message, text) = corrupt_parts(parse_wal(path, &bad_crc).unwrap_err());
        assert_eq!(offset, 28);
        assert!(message.contains("header checksum mismatch"), "{message}");
        assert!(text.contains("/var/lib/twinql/db.wal"));

        for len in [1, 8, 20, 31] {
            let (offset, message, text) = corrupt_parts(parse_wal(path, &good[..len]).unwrap_err());
            assert_eq!(offset, 0);
            assert_eq!(message, format!("truncated header ({len} of 32 bytes)"));
            assert!(text.contains("/var/lib/twinql/db.wal"));
        }
        let (offset, message, _) = corrupt_parts(parse_wal(path, b"").unwrap_err());
        assert_eq!(offset, 0);
        assert!(message.contains("empty file"), "{message}");
        let (_, message, _) = corrupt_parts(parse_wal(path, b"{\"json\":1}").unwrap_err());
        assert!(message.contains("magic"), "{message}");
    }

    #[test]
    fn read_wal_reports_io_errors_with_path() {
        let dir = TempDir::new("missing");
        let path = dir.file("nope.wal");
        let err = read_wal(&path).unwrap_err();
        assert!(
            matches!(&err, WalError::Io { source, .. } if source.kind() == io::ErrorKind::NotFound)
        );
        assert!(
            err.to_string()
                .starts_with(&format!("wal {}: ", path.display()))
        );
    }

    #[test]
    fn append_to_checks_the_contents_match() {
        let dir = TempDir::new("mismatch");
        let a = dir.file("a.wal");
        let b = dir.file("b.wal");
        let w = WalWriter::create(&a, 1, SyncPolicy::GroupCommit).unwrap();
        w.append(1, b"one").unwrap();
        drop(w);
        drop(WalWriter::create(&b, 9, SyncPolicy::GroupCommit).unwrap());
        let ca = read_wal(&a).unwrap();
        let (offset, message, _) =
            corrupt_parts(WalWriter::append_to(&b, &ca, SyncPolicy::GroupCommit).unwrap_err());
        assert_eq!(offset, 16);
        assert!(message.contains("sequence number 9"), "{message}");
        let mut longer = ca.clone();
        longer.valid_len += 100;
        let (_, message, _) =
            corrupt_parts(WalWriter::append_to(&a, &longer, SyncPolicy::GroupCommit).unwrap_err());
        assert!(message.contains("outside the log"), "{message}");
        // The file was left alone.
        assert_eq!(read_wal(&a).unwrap(), ca);
    }

    #[test]
    fn every_policy_is_readable_after_drop() {
        let dir = TempDir::new("policies");
        for (i, policy) in [
            SyncPolicy::EveryWrite,
            SyncPolicy::GroupCommit,
            SyncPolicy::Interval(Duration::from_millis(2)),
        ]
        .into_iter()
        .enumerate()
        {
            let path = dir.file(&format!("{i}.wal"));
            let w = WalWriter::create(&path, 10, policy).unwrap();
            assert_eq!(w.policy(), policy);
            for j in 0..50 {
                let pos = w.append(10 + j as u64, &payload(j)).unwrap();
                w.sync_through(pos).unwrap();
                if policy != SyncPolicy::Interval(Duration::from_millis(2)) {
                    assert!(w.shared.state.lock().synced >= pos);
                }
            }
            if let SyncPolicy::Interval(_) = policy {
                // The background thread catches up by itself.
                let deadline = Instant::now() + Duration::from_secs(20);
                loop {
                    let st = w.shared.state.lock();
                    if st.synced == st.appended {
                        break;
                    }
                    drop(st);
                    assert!(
                        Instant::now() < deadline,
                        "the interval thread never synced"
                    );
                    std::thread::sleep(Duration::from_millis(2));
                }
            }
            drop(w);
            let c = read_wal(&path).unwrap();
            assert_eq!(c.dropped, None);
            assert_eq!(c.records.len(), 50);
            for (j, r) in c.records.iter().enumerate() {
                assert_eq!((r.seq, &r.payload), (10 + j as u64, &payload(j)));
            }
        }
    }

    #[test]
    fn interval_thread_stops_promptly_on_drop() {
        let dir = TempDir::new("interval-drop");
        let path = dir.file("log.wal");
        let w =
            WalWriter::create(&path, 0, SyncPolicy::Interval(Duration::from_secs(3600))).unwrap();
        let pos = w.append(0, b"kept").unwrap();
        w.sync_through(pos).unwrap();
        // Nothing synced it yet: the interval is an hour.
        assert!(w.shared.state.lock().synced < pos);
        let weak = Arc::downgrade(&w.shared);
        let started = Instant::now();
        drop(w);
        assert!(started.elapsed() < Duration::from_secs(10));
        assert!(weak.upgrade().is_none(), "the thread kept the writer alive");
        let c = read_wal(&path).unwrap();
        assert_eq!(c.records.len(), 1);
        assert_eq!(c.records[0].payload, b"kept");
    }

    #[test]
    fn a_sync_already_covering_a_write_counts() {
        let dir = TempDir::new("covering");
        for policy in [SyncPolicy::GroupCommit, SyncPolicy::EveryWrite] {
            let path = dir.file(&format!("{policy}.wal"));
            let w = WalWriter::create(&path, 0, policy).unwrap();
            let ends: Vec<u64> = (0..10).map(|i| w.append(i, b"rec").unwrap()).collect();
            let syncs = |w: &WalWriter| w.shared.state.lock().syncs;
            assert_eq!(syncs(&w), 0);
            // The sync for record 3 covers everything appended so far.
            w.sync_through(ends[3]).unwrap();
            assert_eq!(syncs(&w), 1);
            for &end in &ends {
                w.sync_through(end).unwrap();
            }
            w.sync_all().unwrap();
            w.sync_through(u64::MAX).unwrap();
            assert_eq!(syncs(&w), 1);
            let pos = w.append(10, b"more").unwrap();
            w.sync_through(ends[9]).unwrap();
            assert_eq!(syncs(&w), 1);
            w.sync_through(pos).unwrap();
            assert_eq!(syncs(&w), 2);
        }
    }

    #[test]
    fn concurrent_group_commit() {
        const THREADS: usize = 8;
        const PER_THREAD: usize = 200;
        let dir = TempDir::new("concurrent");
        let path = dir.file("log.wal");
        let w = WalWriter::create(&path, 1, SyncPolicy::GroupCommit).unwrap();
        // The database orders its writes under its own lock and syncs outside it.
        let order = Mutex::new(());
        let written: Vec<Vec<(u64, Vec<u8>)>> = std::thread::scope(|s| {
            let handles: Vec<_> = (0..THREADS)
                .map(|t| {
                    let (w, order) = (&w, &order);
                    s.spawn(move || {
                        let mut mine = Vec::new();
                        for i in 0..PER_THREAD {
                            let p = format!("thread {t} write {i}").into_bytes();
                            let (seq, pos) = {
                                let _g = order.lock();
                                let seq = w.next_seq();
                                (seq, w.append(seq, &p).unwrap())
                            };
                            w.sync_through(pos).unwrap();
                            assert!(w.shared.state.lock().synced >= pos);
                            mine.push((seq, p));
                        }
                        mine
                    })
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        let total = THREADS * PER_THREAD;
        let syncs = w.shared.state.lock().syncs;
        assert!((1..=total as u64).contains(&syncs));
        drop(w);
        let c = read_wal(&path).unwrap();
        assert_eq!(c.dropped, None);
        assert_eq!(c.records.len(), total);
        let mut expected: Vec<(u64, Vec<u8>)> = written.into_iter().flatten().collect();
        expected.sort();
        for (i, (r, (seq, p))) in c.records.iter().zip(&expected).enumerate() {
            assert_eq!(r.seq, 1 + i as u64);
            assert_eq!((r.seq, &r.payload), (*seq, p));
        }
    }

    #[test]
    fn sync_policy_parse_and_display() {
        let cases = [
            ("every-write", SyncPolicy::EveryWrite),
            ("group", SyncPolicy::GroupCommit),
            (
                "interval:50ms",
                SyncPolicy::Interval(Duration::from_millis(50)),
            ),
            ("interval:2s", SyncPolicy::Interval(Duration::from_secs(2))),
            (
                "interval:1500us",
                SyncPolicy::Interval(Duration::from_micros(1500)),
            ),
            (
                "interval:7ns",
                SyncPolicy::Interval(Duration::from_nanos(7)),
            ),
        ];
        for (text, policy) in cases {
            assert_eq!(SyncPolicy::parse(text), Ok(policy), "{text}");
            assert_eq!(policy.to_string(), text);
            assert_eq!(text.parse::<SyncPolicy>(), Ok(policy));
        }
        assert_eq!(SyncPolicy::default(), SyncPolicy::GroupCommit);
        assert_eq!(
            SyncPolicy::parse(" Interval:2500ms "),
            Ok(SyncPolicy::Interval(Duration::from_millis(2500)))
        );
        assert_eq!(SyncPolicy::parse("GROUP"), Ok(SyncPolicy::GroupCommit));
        for d in [
            Duration::from_millis(2500),
            Duration::new(3, 5),
            Duration::new(u64::MAX, 999_999_999),
            Duration::from_secs(86_400),
        ] {
            let p = SyncPolicy::Interval(d);
            assert_eq!(SyncPolicy::parse(&p.to_string()), Ok(p), "{p}");
        }
        assert_eq!(
            SyncPolicy::Interval(Duration::from_millis(2500)).to_string(),
            "interval:2500ms"
        );
        for bad in [
            "",
            "sometimes",
            "every",
            "interval",
            "interval:",
            "interval:ms",
            "interval:5",
            "interval:5h",
            "interval:0ms",
            "interval:-5ms",
            "interval:1.5s",
            "interval:99999999999999999999999999999999999999999s",
            "interval:18446744073709551616s",
            "ééééé5ms",
            "interv\u{e9}l:5ms",
        ] {
            let err = SyncPolicy::parse(bad).unwrap_err();
            assert!(err.contains("sync policy"), "{bad}: {err}");
        }
        assert!(
            SyncPolicy::parse("interval:0s")
                .unwrap_err()
                .contains("longer than zero")
        );
    }

    #[test]
    fn fuzz_seeds_parse() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/seeds/wal");
        let Ok(entries) = fs::read_dir(&dir) else {
            return;
        };
        for entry in entries {
            let path = entry.unwrap().path();
            let bytes = fs::read(&path).unwrap();
            let c = parse_wal(&path, &bytes).unwrap();
            check_invariants(&c, bytes.len());
            assert!(
                !c.records.is_empty() || c.dropped.is_none(),
                "{}",
                path.display()
            );
        }
    }

    mod props {
        use super::*;
        use proptest::collection::vec;
        use proptest::prelude::*;

        proptest! {
            #[test]
            fn parse_never_panics_on_arbitrary_bytes(bytes in vec(any::<u8>(), 0..600)) {
                if let Ok(c) = parse_wal(Path::new("p.wal"), &bytes) {
                    check_invariants(&c, bytes.len());
                }
            }

            #[test]
            fn parse_never_panics_after_a_valid_header(
                first_seq in any::<u64>(),
                tail in vec(any::<u8>(), 0..600),
            ) {
                let mut bytes = encode_header(first_seq).to_vec();
                bytes.extend_from_slice(&tail);
                let c = parse_wal(Path::new("p.wal"), &bytes).unwrap();
                prop_assert_eq!(c.first_seq, first_seq);
                check_invariants(&c, bytes.len());
            }

            #[test]
            fn encode_then_parse_round_trips(
                first_seq in prop_oneof![0..1000u64, (u64::MAX - 100)..(u64::MAX - 40)],
                payloads in vec(vec(any::<u8>(), 0..100), 0..30),
                cut in any::<prop::sample::Index>(),
                flip in any::<prop::sample::Index>(),
            ) {
                let recs: Vec<(u64, &[u8])> = payloads
                    .iter()
                    .enumerate()
                    .map(|(i, p)| (first_seq + i as u64, &p[..]))
                    .collect();
                let bytes = build(first_seq, &recs);
                let c = parse_wal(Path::new("p.wal"), &bytes).unwrap();
                check_invariants(&c, bytes.len());
                prop_assert_eq!(c.dropped, None);
                prop_assert_eq!(c.records.len(), payloads.len());
                for (r, p) in c.records.iter().zip(&payloads) {
                    prop_assert_eq!(&r.payload, p);
                }

                // Any prefix keeps exactly the whole records in it.
                let cut = HEADER_LEN + cut.index(bytes.len() - HEADER_LEN + 1);
                let cc = parse_wal(Path::new("p.wal"), &bytes[..cut]).unwrap();
                check_invariants(&cc, cut);
                let whole: Vec<_> = c
                    .records
                    .iter()
                    .filter(|r| r.offset + (16 + r.payload.len()) as u64 <= cut as u64)
                    .cloned()
                    .collect();
                prop_assert_eq!(cc.records, whole);

                // Any flipped bit in the record area keeps exactly the records before it.
                if bytes.len() > HEADER_LEN {
                    let at = HEADER_LEN + flip.index(bytes.len() - HEADER_LEN);
                    let mut bad = bytes.clone();
                    bad[at] ^= 1 << (at % 8);
                    let cb = parse_wal(Path::new("p.wal"), &bad).unwrap();
                    check_invariants(&cb, bad.len());
                    let before: Vec<_> = c
                        .records
                        .iter()
                        .filter(|r| r.offset + (16 + r.payload.len()) as u64 <= at as u64)
                        .cloned()
                        .collect();
                    prop_assert_eq!(cb.records, before);
                    prop_assert!(cb.dropped.is_some());
                }
            }
        }
    }
}
