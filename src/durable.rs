//! Durable databases: a store directory of one mapped segment and a write-ahead log.
//!
//! ```text
//! DIR/
//!   LOCK              locked by the process that has the store open (a second is refused)
//!   CURRENT           the segment and the logs to replay after it, one file name a line
//!   seg-000001.tqs    immutable segment: documents, key dictionary, indexes (mapped)
//!   wal-000001.log    writes since the segment (see `crate::wal`)
//! ```
//!
//! Every acknowledged write is in the log (and synced per [`SyncPolicy`]) before the write
//! returns. Opening a store maps its segment (a few megabytes are read, whatever its size)
//! and replays the log over it. A compaction writes the live twins to a new segment while
//! writes go on into a new log, then switches to the new segment in a short critical section;
//! `CURRENT` is replaced by rename, so a crash at any point leaves a store that opens.
//! The byte formats are in `docs/store-format.md`.
//!
//! ```
//! use twinql::{Database, TwinId};
//!
//! let dir = std::env::temp_dir().join(format!("twinql-durable-doc-{}", std::process::id()));
//! # let _ = std::fs::remove_dir_all(&dir);
//! {
//!     let db = Database::open(&dir)?;
//!     db.create_twin(&TwinId::device("d1"))?;
//!     db.patch_tags(&TwinId::device("d1"), r#"{"plant":"Redmond43"}"#, None)?;
//! }
//! // Reopened (after a restart, or a crash), the twin is there.
//! let db = Database::open(&dir)?;
//! assert_eq!(db.query_all("SELECT deviceId FROM devices WHERE tags.plant = 'Redmond43'")?, [r#"{"deviceId":"d1"}"#]);
//! # drop(db);
//! # std::fs::remove_dir_all(&dir)?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::fs::{File, OpenOptions};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Weak};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use twinql_planner::value::Node;
use twinql_store::CollectionKind;
use twinql_store::doc::Doc;
use twinql_store::index::{IndexPolicy, StoreIndex};
use twinql_store::live::{AnyNode, Overlay, PolicyCache};
use twinql_store::packed::Packed;
use twinql_store::segment::{
    SegmentError, SegmentInfo, SegmentWriter, open_segment, sync_dir, write_segment_file,
};
use twinql_store::twin::{ErrorCode, HubError};
use twinql_store::{DocKind, LoadOptions, Store};

use crate::db::{Base, Database, Writer};
use crate::wal::{Dropped, SyncPolicy, WalError, WalWriter, read_wal};

/// How a durable database syncs and compacts.
#[derive(Clone, Debug)]
pub struct StoreOptions {
    /// When writes are made durable (group commit by default).
    pub sync: SyncPolicy,
    /// Compact in the background once the log holds this many bytes (0: never on its own;
    /// [`Database::compact_store`] compacts on request).
    pub compact_log_bytes: u64,
    /// The index policy of a store created by [`Database::open`] (`None`: no indexes).
    pub index_policy: Option<IndexPolicy>,
}

impl Default for StoreOptions {
    fn default() -> Self {
        StoreOptions {
            sync: SyncPolicy::default(),
            compact_log_bytes: 256 << 20,
            index_policy: Some(IndexPolicy::default()),
        }
    }
}

/// Why a store could not be opened, created or compacted.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// An I/O error on a file of the store.
    #[error("store {}: {source}", path.display())]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
    /// Another process (or another `Database` in this one) has the store open.
    #[error("store {} is already open by another process (its LOCK file is locked)", dir.display())]
    Locked {
        /// The store directory.
        dir: PathBuf,
    },
    /// A directory that already holds a store, where a new one was to be created.
    #[error("store {} already exists", dir.display())]
    Exists {
        /// The store directory.
        dir: PathBuf,
    },
    /// A corrupt or unreadable segment.
    #[error(transparent)]
    Segment(#[from] SegmentError),
    /// A corrupt or unreadable log.
    #[error(transparent)]
    Wal(#[from] WalError),
    /// A file of the store that does not make sense (names the file and the offset).
    #[error("store {}: at byte {offset}: {message}", path.display())]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// Where.
        offset: u64,
        /// What.
        message: String,
    },
}

/// What opening a store found in its log.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Recovery {
    /// Log records replayed over the segment.
    pub replayed: u64,
    /// Bytes at the end of the log that were not a whole record (a write cut short by a
    /// crash, never acknowledged) and were dropped.
    pub dropped: Option<Dropped>,
}

/// The durable side of a database: the store directory, its lock and the open log.
pub(crate) struct Durable {
    pub(crate) dir: PathBuf,
    _lock: File,
    pub(crate) wal: Arc<WalWriter>,
    /// Log files to replay after the segment, oldest first (the last is `wal`'s).
    pub(crate) wals: Vec<String>,
    pub(crate) segment: String,
    pub(crate) opts: StoreOptions,
    pub(crate) recovery: Recovery,
    /// Wakes the compaction thread.
    pub(crate) kick: Option<std::sync::mpsc::SyncSender<()>>,
}

/// One change in a log record.
#[derive(Serialize, Deserialize)]
struct LogOp {
    /// `put` or `delete`.
    op: String,
    /// 0 devices, 1 modules, 2 jobs.
    kind: u8,
    #[serde(rename = "deviceId")]
    device_id: String,
    #[serde(rename = "subId", default, skip_serializing_if = "Option::is_none")]
    sub_id: Option<String>,
    /// The twin after the write (for `put`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    doc: Option<Box<serde_json::value::RawValue>>,
}

/// A change a write makes, to be logged.
pub(crate) enum Change<'a> {
    /// The twin with this identity is now `doc` (created if new).
    Put {
        kind: CollectionKind,
        device_id: &'a str,
        sub_id: Option<&'a str>,
        doc: AnyNode<'a>,
    },
    /// The twin with this identity is gone.
    Delete {
        kind: CollectionKind,
        device_id: &'a str,
        sub_id: Option<&'a str>,
    },
}

fn encode(changes: &[Change<'_>]) -> Vec<u8> {
    let ops: Vec<LogOp> = changes
        .iter()
        .map(|c| match *c {
            Change::Put {
                kind,
                device_id,
                sub_id,
                doc,
            } => LogOp {
                op: "put".into(),
                kind: kind as u8,
                device_id: device_id.into(),
                sub_id: sub_id.map(Into::into),
                doc: {
                    let mut text = Vec::new();
                    doc.write_json(&mut text);
                    String::from_utf8(text)
                        .ok()
                        .and_then(|t| serde_json::value::RawValue::from_string(t).ok())
                },
            },
            Change::Delete {
                kind,
                device_id,
                sub_id,
            } => LogOp {
                op: "delete".into(),
                kind: kind as u8,
                device_id: device_id.into(),
                sub_id: sub_id.map(Into::into),
                doc: None,
            },
        })
        .collect();
    serde_json::to_vec(&ops).unwrap_or_default()
}

/// A logged write not yet acknowledged: sync it, then answer.
pub(crate) struct Pending(Option<(Arc<WalWriter>, u64)>);

impl Pending {
    pub(crate) fn none() -> Pending {
        Pending(None)
    }

    /// Waits until the write is durable per the sync policy.
    pub(crate) fn sync(self) -> Result<(), HubError> {
        if let Some((wal, pos)) = self.0 {
            wal.sync_through(pos).map_err(server_error)?;
        }
        Ok(())
    }
}

fn server_error(e: WalError) -> HubError {
    HubError::new(
        ErrorCode::ServerError,
        format!("the write could not be made durable: {e}"),
    )
}

impl Writer {
    /// Appends the changes of one write to the log of a durable database (nothing for an
    /// in-memory one). Call before applying them: a write that cannot be logged is refused.
    pub(crate) fn log(&mut self, changes: &[Change<'_>]) -> Result<Pending, HubError> {
        let Some(d) = &self.durable else {
            return Ok(Pending::none());
        };
        let seq = d.wal.next_seq();
        let pos = d.wal.append(seq, &encode(changes)).map_err(server_error)?;
        if d.opts.compact_log_bytes > 0
            && d.wal.len() >= d.opts.compact_log_bytes
            && let Some(k) = &d.kick
        {
            let _ = k.try_send(());
        }
        Ok(Pending(Some((d.wal.clone(), pos))))
    }
}

/// Applies logged changes to an overlay.
fn replay(
    base: &Base,
    overlay: &mut Overlay,
    cache: &mut PolicyCache,
    payload: &[u8],
    path: &Path,
    offset: u64,
) -> Result<(), StoreError> {
    let corrupt = |message: String| StoreError::Corrupt {
        path: path.to_path_buf(),
        offset,
        message,
    };
    let ops: Vec<LogOp> = serde_json::from_slice(payload)
        .map_err(|e| corrupt(format!("log record is not a list of changes: {e}")))?;
    let store = &base.store;
    let policy = base.policy();
    for op in ops {
        let kind = match op.kind {
            0 => CollectionKind::Devices,
            1 => CollectionKind::Modules,
            2 => CollectionKind::Jobs,
            k => return Err(corrupt(format!("unknown collection {k}"))),
        };
        let coll = store.collection(kind);
        let id = overlay
            .coll(kind)
            .find(coll, &op.device_id, op.sub_id.as_deref());
        match (op.op.as_str(), op.doc) {
            ("put", Some(raw)) => {
                let doc = Doc::parse(raw.get())
                    .map_err(|e| corrupt(format!("log record holds an invalid twin: {e}")))?;
                let packed = Packed::pack(&doc, store);
                overlay.put(store, policy, cache, kind, id, packed, &[]);
            }
            ("delete", _) => {
                if let Some(id) = id {
                    overlay.delete(store, policy, cache, kind, id);
                }
            }
            (op, _) => return Err(corrupt(format!("unknown change {op:?}"))),
        }
    }
    Ok(())
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> StoreError + '_ {
    move |source| StoreError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Replaces `CURRENT` (write, sync, rename, sync the directory).
fn write_current(dir: &Path, segment: &str, wals: &[String]) -> Result<(), StoreError> {
    let mut text = String::from("twinql-store 1\n");
    text.push_str(segment);
    text.push('\n');
    for w in wals {
        text.push_str(w);
        text.push('\n');
    }
    let tmp = dir.join("CURRENT.tmp");
    let path = dir.join("CURRENT");
    {
        use std::io::Write;
        let mut f = File::create(&tmp).map_err(io_err(&tmp))?;
        f.write_all(text.as_bytes()).map_err(io_err(&tmp))?;
        f.sync_all().map_err(io_err(&tmp))?;
    }
    std::fs::rename(&tmp, &path).map_err(io_err(&path))?;
    sync_dir(&path);
    Ok(())
}

/// Reads `CURRENT`: the segment's file name and the logs'.
fn read_current(dir: &Path) -> Result<Option<(String, Vec<String>)>, StoreError> {
    let path = dir.join("CURRENT");
    let text = match std::fs::read(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(io_err(&path)(e)),
    };
    let corrupt = |offset: usize, message: &str| StoreError::Corrupt {
        path: path.clone(),
        offset: offset as u64,
        message: message.into(),
    };
    let text = std::str::from_utf8(&text).map_err(|e| corrupt(e.valid_up_to(), "not UTF-8"))?;
    let mut lines = text.lines();
    if lines.next() != Some("twinql-store 1") {
        return Err(corrupt(
            0,
            "not a twinql store (expected `twinql-store 1` on the first line)",
        ));
    }
    let ok_name = |n: &str| {
        !n.is_empty()
            && n.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.')
    };
    let segment = lines
        .next()
        .filter(|s| ok_name(s))
        .ok_or_else(|| corrupt(15, "no segment named on the second line"))?;
    let mut wals = Vec::new();
    for l in lines {
        if !ok_name(l) {
            return Err(corrupt(0, "a log name is not a plain file name"));
        }
        wals.push(l.to_string());
    }
    if wals.is_empty() {
        return Err(corrupt(0, "no log named"));
    }
    Ok(Some((segment.to_string(), wals)))
}

/// The number in a file name like `seg-000012.tqs`.
fn file_number(name: &str) -> u64 {
    name.split(['-', '.'])
        .nth(1)
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}

fn seg_name(n: u64) -> String {
    format!("seg-{n:06}.tqs")
}

fn wal_name(n: u64) -> String {
    format!("wal-{n:06}.log")
}

fn lock_dir(dir: &Path) -> Result<File, StoreError> {
    std::fs::create_dir_all(dir).map_err(io_err(dir))?;
    let path = dir.join("LOCK");
    let f = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(io_err(&path))?;
    // A lock is a property of the open file, and a child process of this one holds a copy of
    // every descriptor between fork and exec: a store just closed here can look locked for
    // that moment. Wait such a moment out before calling the store taken.
    let mut waited = Duration::ZERO;
    loop {
        match f.try_lock() {
            Ok(()) => return Ok(f),
            Err(std::fs::TryLockError::WouldBlock) if waited < LOCK_PATIENCE => {
                std::thread::sleep(Duration::from_millis(10));
                waited += Duration::from_millis(10);
            }
            Err(std::fs::TryLockError::WouldBlock) => {
                return Err(StoreError::Locked {
                    dir: dir.to_path_buf(),
                });
            }
            Err(std::fs::TryLockError::Error(e)) => return Err(io_err(&path)(e)),
        }
    }
}

/// How long opening waits for a store's lock before refusing.
const LOCK_PATIENCE: Duration = Duration::from_millis(200);

/// Loads JSON Lines / arrays of twins (and job records) into `store`, writing each chunk of
/// documents to `segment` as it is loaded (see [`import_store`]).
pub fn load_for_import(
    store: &mut Store,
    segment: &mut SegmentWriter,
    twins: &[PathBuf],
    jobs: &[PathBuf],
    progress: bool,
) -> Result<(), twinql_store::LoadError> {
    let opts = LoadOptions {
        progress,
        ..LoadOptions::default()
    };
    for p in twins {
        store.load_path_writing(p, &opts, segment)?;
    }
    for p in jobs {
        store.load_path_writing(
            p,
            &LoadOptions {
                kind: DocKind::Jobs,
                ..opts.clone()
            },
            segment,
        )?;
    }
    Ok(())
}

/// Why [`import_store`] failed.
#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    /// An input could not be loaded (nothing was created).
    #[error(transparent)]
    Load(#[from] twinql_store::LoadError),
    /// The store directory could not be created or written.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Creates a store directory (a new directory, or an empty one) from what `load` adds to a
/// fresh store: `load` passes the given segment writer to
/// [`Store::load_path_writing`](twinql_store::Store::load_path_writing), so each chunk of
/// documents reaches the segment file while the rest of the input is still parsed; then the
/// indexes `build` makes are built on another thread while the document tables are written
/// and synced. Returns the store and its indexes. If anything fails, the directory is left
/// without a store (a partly written segment is removed).
pub fn import_store(
    dir: &Path,
    load: impl FnOnce(&mut Store, &mut SegmentWriter) -> Result<(), twinql_store::LoadError>,
    build: impl FnOnce(&Store) -> Option<StoreIndex> + Send,
) -> Result<(Store, Option<StoreIndex>), ImportError> {
    let _lock = lock_dir(dir)?;
    if read_current(dir)?.is_some() {
        return Err(StoreError::Exists {
            dir: dir.to_path_buf(),
        }
        .into());
    }
    let seg = seg_name(1);
    let mut writer =
        SegmentWriter::create(&dir.join(&seg), SegmentInfo::default()).map_err(StoreError::from)?;
    let mut store = Store::new();
    load(&mut store, &mut writer)?;
    let index = writer
        .finish_building(&store, || build(&store))
        .map_err(StoreError::from)?;
    start_log(dir, seg)?;
    Ok((store, index))
}

/// Creates a store directory holding `store` and `index` (a new directory, or an empty one).
pub fn create_store(
    dir: &Path,
    store: &Store,
    index: Option<&StoreIndex>,
) -> Result<(), StoreError> {
    create_store_with(dir, |path| {
        write_segment_file(store, index, SegmentInfo::default(), path)
    })
}

fn create_store_with(
    dir: &Path,
    write: impl FnOnce(&Path) -> Result<(), SegmentError>,
) -> Result<(), StoreError> {
    let _lock = lock_dir(dir)?;
    if read_current(dir)?.is_some() {
        return Err(StoreError::Exists {
            dir: dir.to_path_buf(),
        });
    }
    let seg = seg_name(1);
    write(&dir.join(&seg))?;
    start_log(dir, seg)
}

/// Creates the first log of a new store whose segment `seg` is written, and names both in
/// `CURRENT`.
fn start_log(dir: &Path, seg: String) -> Result<(), StoreError> {
    let wal = wal_name(1);
    let wal_path = dir.join(&wal);
    if wal_path.exists() {
        std::fs::remove_file(&wal_path).map_err(io_err(&wal_path))?;
    }
    WalWriter::create(&wal_path, 1, SyncPolicy::EveryWrite)?;
    write_current(dir, &seg, &[wal])
}

impl Database {
    /// Opens (or creates) the durable store in directory `dir` with default options: group
    /// commit, background compaction past 256 MiB of log, default indexes for a new store.
    pub fn open(dir: impl AsRef<Path>) -> Result<Arc<Database>, StoreError> {
        Database::open_with(dir, StoreOptions::default())
    }

    /// Opens (or creates) the durable store in `dir`. The store is locked until the database
    /// is dropped; a second open (from any process) is refused with [`StoreError::Locked`].
    pub fn open_with(
        dir: impl AsRef<Path>,
        opts: StoreOptions,
    ) -> Result<Arc<Database>, StoreError> {
        let dir = dir.as_ref().to_path_buf();
        let lock = lock_dir(&dir)?;
        let (segment, wals) = match read_current(&dir)? {
            Some(c) => c,
            None => {
                let store = Store::new();
                let index = opts
                    .index_policy
                    .as_ref()
                    .map(|p| StoreIndex::build(&store, p));
                let seg = seg_name(1);
                write_segment_file(
                    &store,
                    index.as_ref(),
                    SegmentInfo::default(),
                    &dir.join(&seg),
                )?;
                let wal = wal_name(1);
                let wal_path = dir.join(&wal);
                if wal_path.exists() {
                    std::fs::remove_file(&wal_path).map_err(io_err(&wal_path))?;
                }
                WalWriter::create(&wal_path, 1, opts.sync)?;
                write_current(&dir, &seg, std::slice::from_ref(&wal))?;
                (seg, vec![wal])
            }
        };
        let seg = open_segment(&dir.join(&segment))?;
        let info = seg.info;
        let db = Database::from_parts(seg.store, seg.index, info.generation, 0);
        let mut recovery = Recovery::default();
        let mut wal_writer = None;
        {
            let mut w = db.lock_writer();
            let Writer {
                base,
                overlay,
                cache,
                ..
            } = &mut *w;
            let mut expect = info.seq + 1;
            for (i, name) in wals.iter().enumerate() {
                let path = dir.join(name);
                let contents = read_wal(&path)?;
                let last = i + 1 == wals.len();
                if let Some(d) = &contents.dropped
                    && !last
                {
                    return Err(StoreError::Corrupt {
                        path,
                        offset: d.offset,
                        message: format!(
                            "a log that is not the last one is cut short: {}",
                            d.reason
                        ),
                    });
                }
                for r in &contents.records {
                    if r.seq < expect {
                        continue;
                    }
                    if r.seq != expect {
                        return Err(StoreError::Corrupt {
                            path,
                            offset: r.offset,
                            message: format!("log record {} where {expect} was expected", r.seq),
                        });
                    }
                    replay(base, overlay, cache, &r.payload, &path, r.offset)?;
                    recovery.replayed += 1;
                    expect += 1;
                }
                if last {
                    recovery.dropped = contents.dropped.clone();
                    if contents.next_seq() < expect {
                        return Err(StoreError::Corrupt {
                            path,
                            offset: 0,
                            message: format!(
                                "the log starts at write {} but the segment holds writes up to {}",
                                contents.first_seq,
                                expect - 1
                            ),
                        });
                    }
                    wal_writer = Some(WalWriter::append_to(&path, &contents, opts.sync)?);
                }
            }
        }
        let Some(wal) = wal_writer else {
            return Err(StoreError::Corrupt {
                path: dir.join("CURRENT"),
                offset: 0,
                message: "no log named".into(),
            });
        };
        let db = Arc::new(db);
        let kick = (opts.compact_log_bytes > 0).then(|| spawn_compactor(Arc::downgrade(&db)));
        db.lock_writer().durable = Some(Durable {
            dir,
            _lock: lock,
            wal: Arc::new(wal),
            wals,
            segment,
            opts,
            recovery,
            kick,
        });
        Ok(db)
    }

    /// What opening found in the log (`None` for an in-memory database).
    pub fn recovery(&self) -> Option<Recovery> {
        self.lock_writer()
            .durable
            .as_ref()
            .map(|d| d.recovery.clone())
    }

    /// The store directory of a durable database.
    pub fn store_dir(&self) -> Option<PathBuf> {
        self.lock_writer().durable.as_ref().map(|d| d.dir.clone())
    }

    /// Bytes in the current log of a durable database.
    pub fn log_bytes(&self) -> Option<u64> {
        self.lock_writer().durable.as_ref().map(|d| d.wal.len())
    }

    /// Folds the log of a durable database into a new segment, while writes go on (they are
    /// held up only to switch logs and, at the end, to switch segments). Returns `false` when
    /// there was nothing to fold (or the database is in memory). Continuation tokens issued
    /// before are refused afterwards.
    pub fn compact_store(&self) -> Result<bool, StoreError> {
        let _one = self.compacting.lock();
        // 1. Switch to a new log; the snapshot taken at the same moment holds exactly the
        //    writes of the old logs.
        let (snap, dir, old_segment, old_wals, new_wal, policy, generation) = {
            let mut w = self.lock_writer();
            let generation = w.generation;
            let Some(d) = w.durable.as_mut() else {
                return Ok(false);
            };
            if d.wal.is_empty() && d.wals.len() == 1 {
                return Ok(false);
            }
            d.wal.sync_all()?;
            let next = file_number(d.wals.last().map_or("", |s| s.as_str())) + 1;
            let name = wal_name(next);
            let path = d.dir.join(&name);
            let _ = std::fs::remove_file(&path);
            let wal = WalWriter::create(&path, d.wal.next_seq(), d.opts.sync)?;
            let mut wals = d.wals.clone();
            wals.push(name.clone());
            write_current(&d.dir, &d.segment, &wals)?;
            let old_wals = std::mem::replace(&mut d.wals, wals);
            let first = wal.next_seq();
            d.wal = Arc::new(wal);
            let info = (d.dir.clone(), d.segment.clone(), old_wals, (name, first));
            let policy = w.base.policy().cloned();
            drop(w);
            let snap = self.snapshot();
            (snap, info.0, info.1, info.2, info.3, policy, generation)
        };
        // 2. Write the new segment from the snapshot (outside any lock).
        let text = crate::db::export_all(&snap);
        drop(snap);
        let (store, index) = crate::db::rebuild(&text, policy.as_ref());
        drop(text);
        let seg = seg_name(file_number(&old_segment) + 1);
        let info = SegmentInfo {
            seq: new_wal.1 - 1,
            generation: generation + 1,
        };
        write_segment_file(&store, index.as_ref(), info, &dir.join(&seg))?;
        drop((store, index));
        let opened = open_segment(&dir.join(&seg))?;
        let base = Arc::new(Base {
            store: opened.store,
            index: opened.index,
        });
        // 3. Replay the writes made meanwhile over the new segment: most of them outside the
        //    lock, the rest inside it.
        let wal_path = dir.join(&new_wal.0);
        let mut overlay = Overlay::new(&base.store);
        let mut cache = PolicyCache::default();
        let mut done = new_wal.1;
        let mut catch_up =
            |overlay: &mut Overlay, cache: &mut PolicyCache| -> Result<(), StoreError> {
                let contents = read_wal(&wal_path)?;
                let from = done;
                for r in contents.records.iter().filter(|r| r.seq >= from) {
                    replay(&base, overlay, cache, &r.payload, &wal_path, r.offset)?;
                    done = r.seq + 1;
                }
                Ok(())
            };
        catch_up(&mut overlay, &mut cache)?;
        {
            let mut w = self.lock_writer();
            catch_up(&mut overlay, &mut cache)?;
            let Some(d) = w.durable.as_mut() else {
                return Ok(false);
            };
            write_current(&dir, &seg, std::slice::from_ref(&new_wal.0))?;
            d.segment = seg.clone();
            d.wals = vec![new_wal.0.clone()];
            let seq = w.overlay.seq();
            overlay.set_seq(seq);
            w.base = base.clone();
            w.overlay = overlay;
            w.cache = cache;
            w.generation = generation + 1;
        }
        self.clear_kept_snapshots();
        // 4. The old files are no longer named by CURRENT.
        let _ = std::fs::remove_file(dir.join(&old_segment));
        for name in old_wals {
            let _ = std::fs::remove_file(dir.join(name));
        }
        sync_dir(&dir.join("CURRENT"));
        Ok(true)
    }
}

/// Starts the thread that compacts a durable database when its log grows past the limit.
fn spawn_compactor(db: Weak<Database>) -> std::sync::mpsc::SyncSender<()> {
    let (tx, rx) = std::sync::mpsc::sync_channel::<()>(1);
    let _ = std::thread::Builder::new()
        .name("twinql-compact".into())
        .spawn(move || {
            while rx.recv().is_ok() {
                let Some(db) = db.upgrade() else { return };
                let due = {
                    let w = db.lock_writer();
                    w.durable.as_ref().is_some_and(|d| {
                        d.opts.compact_log_bytes > 0 && d.wal.len() >= d.opts.compact_log_bytes
                    })
                };
                if due && let Err(e) = db.compact_store() {
                    eprintln!("twinql: background compaction failed: {e}");
                    std::thread::sleep(Duration::from_secs(1));
                }
            }
        });
    tx
}
