//! The query API over an in-memory twin store: parse, validate, plan, execute, page.

use crate::token::{self, TokenError};
use parking_lot::{FairMutex, FairMutexGuard, Mutex, MutexGuard};
use roaring::RoaringBitmap;
use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::sync::mpsc::Sender;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};
use twinql_parser::ast::Collection;
use twinql_parser::{ParseErrors, parse_query};
use twinql_planner::eval::CompileError;
use twinql_planner::functions::FunctionSet;
use twinql_planner::plan::{Plan, PlanOptions, plan_query};
use twinql_planner::validate::{self, Diagnostic};
use twinql_planner::value::Node;
use twinql_store::exec::{self, Candidates, ExecOptions, Position};
use twinql_store::index::{Answer, IndexPolicy, IndexStats, Lookup, StoreIndex};
use twinql_store::live::{Overlay, PolicyCache};
use twinql_store::{CollectionKind, DocKind, LoadOptions, Store};

/// The largest page the service returns (spec §6.1); larger requests are clamped (spec D-9).
pub const MAX_PAGE_SIZE: usize = 100;

/// How to run one page of a query.
#[derive(Clone, Debug)]
pub struct QueryOptions {
    /// Rows per page: 1 to [`MAX_PAGE_SIZE`] (default 100; larger values are clamped).
    pub page_size: usize,
    /// The token of the previous page, if this is not the first.
    pub continuation: Option<String>,
    /// Which scalar functions twin queries may use.
    pub functions: FunctionSet,
    /// Use all cores (results are the same either way).
    pub parallel: bool,
}

impl Default for QueryOptions {
    fn default() -> QueryOptions {
        QueryOptions {
            page_size: MAX_PAGE_SIZE,
            continuation: None,
            functions: FunctionSet::Twin,
            parallel: true,
        }
    }
}

/// The `x-ms-item-type` of a result (spec §6.1).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ItemType {
    /// Whole device or module twins.
    Twin,
    /// Whole per-device job records.
    DeviceJob,
    /// Projections and aggregates.
    Raw,
}

impl ItemType {
    /// The header value: `twin`, `deviceJob` or `raw`.
    pub fn as_str(self) -> &'static str {
        match self {
            ItemType::Twin => "twin",
            ItemType::DeviceJob => "deviceJob",
            ItemType::Raw => "raw",
        }
    }
}

impl fmt::Display for ItemType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One page of results.
#[derive(Clone, Debug, PartialEq)]
pub struct Page {
    /// The rows, each as compact JSON text.
    pub items: Vec<String>,
    /// The token for the next page; `None` on the last page.
    pub continuation: Option<String>,
    /// What the rows are.
    pub item_type: ItemType,
}

impl Page {
    /// The rows parsed into JSON values.
    pub fn values(&self) -> Vec<serde_json::Value> {
        self.items
            .iter()
            .map(|r| serde_json::from_str(r).unwrap_or(serde_json::Value::Null))
            .collect()
    }
}

/// Why a query was not run.
#[derive(Debug)]
pub enum QueryError {
    /// The text does not parse.
    Syntax(ParseErrors),
    /// The query parses but breaks a rule of the language.
    Invalid(Vec<Diagnostic>),
    /// The plan could not be built.
    Plan(CompileError),
    /// The continuation token is not valid for this query.
    Continuation(TokenError),
    /// The query read documents or index postings of a mapped store that failed their
    /// checks (each problem names the file and the byte offset); the answer is not given.
    Corrupt(String),
}

impl fmt::Display for QueryError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            QueryError::Syntax(e) => write!(f, "syntax error: {e}"),
            QueryError::Invalid(d) => {
                f.write_str("invalid query: ")?;
                for (i, d) in d.iter().enumerate() {
                    if i > 0 {
                        f.write_str("; ")?;
                    }
                    write!(f, "{} at bytes {}..{}", d.message, d.span.start, d.span.end)?;
                }
                Ok(())
            }
            QueryError::Plan(e) => write!(f, "cannot plan query: {e}"),
            QueryError::Continuation(e) => write!(f, "{e}"),
            QueryError::Corrupt(e) => write!(f, "corrupt store: {e}"),
        }
    }
}

impl std::error::Error for QueryError {}

/// The loaded documents and their indexes: immutable once queries run.
pub(crate) struct Base {
    pub(crate) store: Store,
    pub(crate) index: Option<StoreIndex>,
}

impl Base {
    pub(crate) fn policy(&self) -> Option<&IndexPolicy> {
        self.index.as_ref().and_then(|i| i.policy())
    }
}

/// The writer's side: the current base and overlay, and what only writers touch.
pub(crate) struct Writer {
    /// The loaded (or mapped) documents the overlay is over; replaced by a compaction.
    pub(crate) base: Arc<Base>,
    /// Bumped whenever the base is replaced (continuation tokens name it).
    pub(crate) generation: u64,
    /// The write-ahead log of a durable database.
    pub(crate) durable: Option<crate::durable::Durable>,
    pub(crate) overlay: Overlay,
    pub(crate) cache: PolicyCache,
    pub(crate) subscribers: HashMap<(String, Option<String>), Vec<Sender<DesiredUpdate>>>,
}

/// A desired-property patch as a device receives it.
#[derive(Clone, Debug, PartialEq)]
pub struct DesiredUpdate {
    /// The section's `$version` after the write.
    pub version: u64,
    /// The patch as JSON text, with its `$version` member.
    pub patch: String,
}

/// Snapshots kept for continuation tokens: (generation, seq, last use, snapshot).
type KeptSnapshots = VecDeque<(u64, u64, Instant, Arc<Snapshot>)>;

/// How long a snapshot kept for continuation tokens survives without use.
pub const SNAPSHOT_TTL: Duration = Duration::from_secs(300);
/// How many snapshots are kept for continuation tokens at most.
pub const MAX_SNAPSHOTS: usize = 32;

/// A set of twins you can query and update: device twins, module twins and job records in
/// memory, with optional path indexes.
///
/// Every method takes `&self`: queries run on a consistent [`Snapshot`] taken when they start
/// (O(1), never blocked by more than one write), and writes go through one short critical
/// section each. A query never sees half of a write, and sees every write acknowledged before
/// it started.
pub struct Database {
    pub(crate) writer: FairMutex<Writer>,
    /// Shared member names for twins copied out of tapes (writers copy outside the lock).
    pub(crate) names: Mutex<twinql_store::NameCache>,
    snapshots: Mutex<KeptSnapshots>,
    /// Serialises compactions of a durable database.
    pub(crate) compacting: Mutex<()>,
}

impl Default for Database {
    fn default() -> Database {
        Database::from_store(Store::new())
    }
}

/// A consistent view of a [`Database`] at one moment: the loaded documents plus every write
/// acknowledged before it was taken. Queries on a snapshot never see later writes.
#[derive(Clone)]
pub struct Snapshot {
    base: Arc<Base>,
    overlay: Overlay,
    generation: u64,
    alive: [std::sync::OnceLock<RoaringBitmap>; 3],
}

/// How the engine reaches the documents of one query (the physical plan).
#[derive(Clone, Debug, PartialEq)]
pub enum Access {
    /// `FullScanExec`: every document, filter evaluated on each.
    FullScan,
    /// `IndexScanExec`: the documents an index lookup returned; `exact` when the lookup is the
    /// whole filter (no residual check).
    IndexScan {
        /// Candidate documents.
        ids: roaring::RoaringBitmap,
        /// Whether no residual filter is needed.
        exact: bool,
    },
    /// `IndexGroupExec`: groups (or the single group of an ungrouped aggregate) formed from
    /// posting lists, counted without reading documents.
    IndexGroups(Vec<roaring::RoaringBitmap>),
    /// `ColumnScanExec`: the documents a pass over the columns of the filter's paths found
    /// (see `twinql_store::columns`); `exact` when the columns evaluated the whole filter.
    ColumnScan {
        /// Candidate documents.
        ids: roaring::RoaringBitmap,
        /// Whether no residual filter is needed.
        exact: bool,
    },
    /// `ColumnGroupExec`: groups formed from the columns of the filter and of the group key,
    /// counted without reading documents.
    ColumnGroups(Vec<roaring::RoaringBitmap>),
    /// `IndexCountExec`: an ungrouped aggregate of `COUNT()`s whose filter's documents are
    /// one range of postings: the range's length, with no set of documents built.
    IndexCount(u64),
}

impl Access {
    /// The operator's name, as `explain` prints it.
    pub fn name(&self) -> &'static str {
        match self {
            Access::FullScan => "FullScanExec",
            Access::IndexScan { exact: true, .. } => "IndexScanExec",
            Access::IndexScan { exact: false, .. } => "IndexScanExec+Filter",
            Access::IndexGroups(_) => "IndexGroupExec",
            Access::ColumnScan { exact: true, .. } => "ColumnScanExec",
            Access::ColumnScan { exact: false, .. } => "ColumnScanExec+Filter",
            Access::ColumnGroups(_) => "ColumnGroupExec",
            Access::IndexCount(_) => "IndexCountExec",
        }
    }
}

/// Runs `$body` with `$len` and `$doc` bound to the id range and the document accessor of
/// collection `$coll` in snapshot `$snap`: tape documents directly when nothing was written
/// to the collection, else through the overlay.
macro_rules! with_docs {
    ($snap:expr, $kind:expr, |$len:ident, $doc:ident| $body:expr) => {{
        let snap: &Snapshot = $snap;
        let kind: CollectionKind = $kind;
        let coll = snap.base.store.collection(kind);
        let live = snap.overlay.coll(kind);
        if live.is_pristine() {
            let $len = coll.len();
            let $doc = |id: u32| coll.doc(id);
            $body
        } else {
            let $len = live.len();
            let $doc = |id: u32| live.doc(coll, id);
            $body
        }
    }};
}

fn kind_of(c: Collection) -> CollectionKind {
    match c {
        Collection::Devices => CollectionKind::Devices,
        Collection::Modules => CollectionKind::Modules,
        Collection::Jobs => CollectionKind::Jobs,
    }
}

impl Database {
    /// An empty database.
    pub fn new() -> Database {
        Database::default()
    }

    /// A database over an already loaded store (no indexes; see [`Database::build_index`]).
    pub fn from_store(store: Store) -> Database {
        Database::from_parts(store, None, 0, 0)
    }

    pub(crate) fn from_parts(
        store: Store,
        index: Option<StoreIndex>,
        generation: u64,
        seq: u64,
    ) -> Database {
        let mut overlay = Overlay::new(&store);
        overlay.set_seq(seq);
        Database {
            writer: FairMutex::new(Writer {
                base: Arc::new(Base { store, index }),
                generation,
                durable: None,
                overlay,
                cache: PolicyCache::default(),
                subscribers: HashMap::new(),
            }),
            snapshots: Mutex::new(VecDeque::new()),
            names: Mutex::new(twinql_store::NameCache::default()),
            compacting: Mutex::new(()),
        }
    }

    /// `policy` narrowed to the paths `plan` could use an index on (see
    /// [`Snapshot::index_policy_for`]).
    pub fn index_policy_for(&self, plan: &Plan, policy: &IndexPolicy) -> IndexPolicy {
        self.snapshot().index_policy_for(plan, policy)
    }

    /// Builds path indexes under `policy` (replacing any), and returns their size figures.
    /// Writes made so far are folded into the loaded documents first (see
    /// [`Database::compact`]).
    pub fn build_index(&mut self, policy: &IndexPolicy) -> IndexStats {
        self.compact();
        let base = self.base_mut();
        let index = StoreIndex::build(&base.store, policy);
        let stats = index.stats();
        base.index = Some(index);
        self.writer_mut().cache = PolicyCache::default();
        stats
    }

    /// Drops the indexes: every query scans (columns of its paths, or whole twins).
    pub fn drop_index(&mut self) {
        self.compact();
        self.base_mut().index = None;
    }

    fn writer_mut(&mut self) -> &mut Writer {
        self.writer.get_mut()
    }

    /// The base, for changing it: no snapshot may hold it (the snapshot cache is cleared; a
    /// snapshot the caller still holds keeps its own copy).
    fn base_mut(&mut self) -> &mut Base {
        self.lock_snapshots().clear();
        let shared = Arc::get_mut(&mut self.writer_mut().base).is_none();
        if shared {
            // Someone holds a snapshot: give this database a base of its own.
            let text = export_all(&self.snapshot());
            let w = self.writer_mut();
            let (store, index) = rebuild(&text, w.base.policy());
            w.base = Arc::new(Base { store, index });
        }
        match Arc::get_mut(&mut self.writer_mut().base) {
            Some(b) => b,
            None => unreachable_base(),
        }
    }

    /// Folds every write into a new loaded base (documents re-encoded into tapes, indexes
    /// rebuilt), so queries read no overlay. Continuation tokens issued before are refused
    /// afterwards.
    pub fn compact(&mut self) {
        let pristine = self.writer_mut().overlay.is_pristine();
        if pristine {
            return;
        }
        let snap = self.snapshot();
        let text = export_all(&snap);
        let policy = snap.base.policy().cloned();
        drop(snap);
        let (store, index) = rebuild(&text, policy.as_ref());
        let w = self.writer_mut();
        let seq = w.overlay.seq();
        let mut overlay = Overlay::new(&store);
        overlay.set_seq(seq);
        w.base = Arc::new(Base { store, index });
        w.overlay = overlay;
        w.cache = PolicyCache::default();
        w.generation += 1;
        self.lock_snapshots().clear();
    }

    /// Whether path indexes are built.
    pub fn has_index(&self) -> bool {
        self.lock_writer().base.index.is_some()
    }

    /// The writer state. The lock is fair (handed to the longest waiter on release), so a
    /// query waiting for its snapshot gets in after at most the write in progress, however
    /// fast writers come back.
    pub(crate) fn lock_writer(&self) -> FairMutexGuard<'_, Writer> {
        self.writer.lock()
    }

    fn lock_snapshots(&self) -> MutexGuard<'_, KeptSnapshots> {
        self.snapshots.lock()
    }

    /// A consistent view of everything written so far. O(1); writers are held up for the time
    /// it takes to copy a few pointers.
    pub fn snapshot(&self) -> Snapshot {
        // Writers hold the lock for microseconds at a time, and leave it free for longer while
        // they copy and patch a twin: a reader that spins for it gets it in the next gap,
        // where one that parks waits to be handed it and woken (tens of microseconds more,
        // with the writer held up meanwhile). Past the spin, it waits in line.
        let spin_until = Instant::now() + SNAPSHOT_SPIN;
        let w = loop {
            if let Some(w) = self.writer.try_lock() {
                break w;
            }
            if Instant::now() >= spin_until {
                break self.lock_writer();
            }
            for _ in 0..32 {
                std::hint::spin_loop();
            }
        };
        Snapshot::new(w.base.clone(), w.overlay.clone(), w.generation)
    }

    /// Parses, validates and plans `text`, resolving its member names.
    pub fn plan(&self, text: &str, functions: FunctionSet) -> Result<Plan, QueryError> {
        self.snapshot().plan(text, functions)
    }

    /// Chooses how to reach the documents of `plan` (see [`Snapshot::access`]).
    pub fn access(&self, plan: &Plan) -> Access {
        self.snapshot().access(plan)
    }

    /// Runs a planned query to the end through the given access path.
    pub fn run_access(&self, plan: &Plan, access: &Access, parallel: bool) -> Vec<String> {
        self.snapshot().run_access(plan, access, parallel)
    }

    /// The logical and physical plan of a query (see [`Snapshot::explain`]).
    pub fn explain(
        &self,
        text: &str,
        functions: FunctionSet,
        analyze: bool,
    ) -> Result<String, QueryError> {
        self.snapshot().explain(text, functions, analyze)
    }

    /// Runs one page of a query (spec §6): at most `page_size` rows, and a continuation token
    /// when more remain.
    ///
    /// Every page of one query reads the snapshot its first page was run on, so pages never
    /// repeat or skip rows while writes go on. Snapshots are kept for [`SNAPSHOT_TTL`] after
    /// their last use (at most [`MAX_SNAPSHOTS`]); a token whose snapshot is gone is refused
    /// with [`TokenError::Expired`] unless nothing was written since it was issued.
    pub fn query(&self, text: &str, opts: &QueryOptions) -> Result<Page, QueryError> {
        let (start, snap) = match &opts.continuation {
            Some(t) => {
                let tok = token::decode(text, t).map_err(QueryError::Continuation)?;
                let snap = self
                    .kept_snapshot(tok.generation, tok.seq)
                    .ok_or(QueryError::Continuation(TokenError::Expired))?;
                (tok.position, snap)
            }
            None => (Position::default(), Arc::new(self.snapshot())),
        };
        let plan = snap.plan(text, opts.functions)?;
        let out = snap.run(
            &plan,
            &ExecOptions {
                start,
                limit: Some(opts.page_size.clamp(1, MAX_PAGE_SIZE)),
                parallel: opts.parallel,
            },
        );
        snap.check()?;
        let continuation = out.next.map(|p| {
            self.keep_snapshot(&snap);
            token::encode(
                text,
                token::Token {
                    position: p,
                    generation: snap.generation,
                    seq: snap.overlay.seq(),
                },
            )
        });
        Ok(Page {
            items: out.rows,
            continuation,
            item_type: item_type(&plan),
        })
    }

    pub(crate) fn clear_kept_snapshots(&self) {
        self.lock_snapshots().clear();
    }

    fn keep_snapshot(&self, snap: &Arc<Snapshot>) {
        let mut kept = self.lock_snapshots();
        let now = Instant::now();
        kept.retain(|e| now.duration_since(e.2) < SNAPSHOT_TTL);
        let key = (snap.generation, snap.overlay.seq());
        if let Some(e) = kept.iter_mut().find(|e| (e.0, e.1) == key) {
            e.2 = now;
            return;
        }
        if kept.len() >= MAX_SNAPSHOTS {
            kept.pop_front();
        }
        kept.push_back((key.0, key.1, now, snap.clone()));
    }

    fn kept_snapshot(&self, generation: u64, seq: u64) -> Option<Arc<Snapshot>> {
        {
            let mut kept = self.lock_snapshots();
            let now = Instant::now();
            kept.retain(|e| now.duration_since(e.2) < SNAPSHOT_TTL);
            if let Some(e) = kept.iter_mut().find(|e| (e.0, e.1) == (generation, seq)) {
                e.2 = now;
                return Some(e.3.clone());
            }
        }
        // Nothing written since the token was issued (a token from another process over the
        // same data, for example): the current state is that snapshot.
        let current = self.snapshot();
        (current.generation == generation && current.overlay.seq() == seq)
            .then(|| Arc::new(current))
    }

    /// Runs a query to the end and returns every row.
    pub fn query_all(&self, text: &str) -> Result<Vec<String>, QueryError> {
        self.snapshot().query_all(text)
    }

    /// Runs a planned query to the end.
    pub fn run_plan(&self, plan: &Plan, parallel: bool) -> Vec<String> {
        self.snapshot().run_plan(plan, parallel)
    }

    /// Counts the rows of a planned query without building them.
    pub fn count_plan(&self, plan: &Plan, parallel: bool) -> u64 {
        self.snapshot().count_plan(plan, parallel)
    }
}

fn unreachable_base() -> ! {
    // `base_mut` replaced the shared base with an unshared one just before.
    std::process::abort()
}

/// Every live document of a snapshot as JSON Lines: twins, then job records.
pub(crate) fn export_all(snap: &Snapshot) -> (String, String) {
    let mut twins = String::new();
    let mut jobs = String::new();
    for kind in CollectionKind::ALL {
        let out = if kind == CollectionKind::Jobs {
            &mut jobs
        } else {
            &mut twins
        };
        with_docs!(snap, kind, |len, doc| {
            let deleted = snap.overlay.coll(kind).deleted();
            for id in 0..len as u32 {
                if deleted.contains(id) {
                    continue;
                }
                let mut buf = Vec::new();
                doc(id).write_json(&mut buf);
                out.push_str(&String::from_utf8_lossy(&buf));
                out.push('\n');
            }
        });
    }
    (twins, jobs)
}

/// A store (and indexes under `policy`) over exported documents.
pub(crate) fn rebuild(
    text: &(String, String),
    policy: Option<&IndexPolicy>,
) -> (Store, Option<StoreIndex>) {
    let mut store = Store::new();
    let opts = LoadOptions {
        progress: false,
        ..LoadOptions::default()
    };
    // The documents were valid when written; a failure here would be a bug, and the load
    // reports it by skipping nothing silently: keep what loads.
    let lenient = LoadOptions {
        skip_invalid: true,
        ..opts.clone()
    };
    let _ = store.load_bytes("<compacted twins>", text.0.as_bytes(), &lenient);
    let _ = store.load_bytes(
        "<compacted jobs>",
        text.1.as_bytes(),
        &LoadOptions {
            kind: DocKind::Jobs,
            ..lenient
        },
    );
    let index = policy.map(|p| StoreIndex::build(&store, p));
    (store, index)
}

/// How long [`Database::snapshot`] spins for the writer lock before it waits in line.
const SNAPSHOT_SPIN: Duration = Duration::from_micros(200);

/// Snapshots taken before later writes hold the only references to the versions those writes
/// replaced (documents, index postings, bitmaps copied on write); freeing them can take longer
/// than the query that used the snapshot. Such snapshots are handed to a background thread to
/// be dropped, so a query's caller does not wait for it.
impl Drop for Snapshot {
    fn drop(&mut self) {
        if self.overlay.is_latest() && Arc::strong_count(&self.base) > 1 {
            return;
        }
        let parts = (
            Arc::clone(&self.base),
            std::mem::replace(&mut self.overlay, Overlay::empty()),
        );
        drop_later(Box::new(parts));
    }
}

/// Drops `garbage` on the background dropping thread (started on first use), or here if that
/// thread cannot be started.
fn drop_later(garbage: Box<dyn Send>) {
    static DROPPER: OnceLock<Option<Sender<Box<dyn Send>>>> = OnceLock::new();
    let sink = DROPPER.get_or_init(|| {
        let (tx, rx) = std::sync::mpsc::channel::<Box<dyn Send>>();
        std::thread::Builder::new()
            .name("twinql-drop".into())
            .spawn(move || {
                for g in rx {
                    drop(g);
                }
            })
            .ok()
            .map(|_| tx)
    });
    if let Some(tx) = sink {
        // A send fails only if the thread is gone; then the garbage comes back and is dropped here.
        let _ = tx.send(garbage);
    }
}

impl Snapshot {
    fn new(base: Arc<Base>, overlay: Overlay, generation: u64) -> Snapshot {
        Snapshot {
            base,
            overlay,
            generation,
            alive: Default::default(),
        }
    }

    /// The number of writes this snapshot includes.
    pub fn seq(&self) -> u64 {
        self.overlay.seq()
    }

    /// The documents as loaded.
    pub fn store(&self) -> &Store {
        &self.base.store
    }

    /// The writes since loading.
    pub fn overlay(&self) -> &Overlay {
        &self.overlay
    }

    /// The columns built for scans so far: how many, and their heap bytes (see
    /// `twinql_store::columns`).
    pub fn column_stats(&self) -> (usize, usize) {
        let c = self.base.store.columns();
        (c.count(), c.heap_bytes())
    }

    /// Number of live documents in a collection.
    pub fn count(&self, kind: CollectionKind) -> u64 {
        self.overlay.coll(kind).live_count()
    }

    /// The twin (or job record) with this identity as JSON text.
    pub fn get(
        &self,
        kind: CollectionKind,
        device_id: &str,
        sub_id: Option<&str>,
    ) -> Option<String> {
        let coll = self.base.store.collection(kind);
        let live = self.overlay.coll(kind);
        let id = live.find(coll, device_id, sub_id)?;
        let node = live.get(coll, id)?;
        let mut out = Vec::new();
        node.write_json(&mut out);
        String::from_utf8(out).ok()
    }

    /// Parses, validates and plans `text`, resolving its member names against the store.
    pub fn plan(&self, text: &str, functions: FunctionSet) -> Result<Plan, QueryError> {
        let query = parse_query(text).map_err(QueryError::Syntax)?;
        let opts = validate::Options {
            functions,
            ..validate::Options::default()
        };
        let report = validate::validate_query(&query, &opts);
        if report.has_errors() {
            return Err(QueryError::Invalid(
                report.errors().into_iter().cloned().collect(),
            ));
        }
        let mut plan = plan_query(&query, &PlanOptions { functions }).map_err(QueryError::Plan)?;
        let store = &self.base.store;
        let keys = self.overlay.keys();
        plan.for_each_key(&mut |k| keys.resolve(store, k));
        Ok(plan)
    }

    /// `policy` narrowed to the paths of `plan` (its condition, GROUP BY keys and aggregate
    /// arguments) that it covers, spelled as the store spells them. Indexes built under it
    /// answer `plan` exactly as indexes built under `policy` would (same plan, same rows), at
    /// the cost of those paths only: what a process that runs one query wants. A path whose
    /// name has several spellings in the store, or none, is left out (the index could not
    /// serve it either way).
    pub fn index_policy_for(&self, plan: &Plan, policy: &IndexPolicy) -> IndexPolicy {
        policy.for_plan(plan, &self.base.store)
    }

    /// The live documents of a collection where documents were created or deleted (`None`:
    /// exactly the loaded ones), made on first use.
    fn alive(&self, kind: CollectionKind) -> Option<&RoaringBitmap> {
        let live = self.overlay.coll(kind);
        if !live.reshaped() {
            return None;
        }
        Some(self.alive[kind as usize].get_or_init(|| live.alive().bitmap().into_owned()))
    }

    /// The row count of a plan that returns one row per matching document, read off the
    /// postings as a range's length when the filter is one indexed comparison or prefix (or
    /// an `AND` of comparisons of one path) and no write changed that path or created or
    /// deleted documents (see [`Lookup::count`]); no set of documents is built.
    fn count_from_postings(&self, plan: &Plan) -> Option<u64> {
        if matches!(plan.shape, twinql_planner::plan::Shape::Aggregate { .. }) {
            return None;
        }
        self.lookup(kind_of(plan.collection))?
            .count(plan.filter.as_ref()?)
    }

    /// Index lookups over a collection as it is now: the base's postings, with the writes'
    /// delta and the live documents once anything was written. `None` without indexes.
    fn lookup(&self, kind: CollectionKind) -> Option<Lookup<'_, '_>> {
        let coll = self.base.store.collection(kind);
        let live = self.overlay.coll(kind);
        let lookup = Lookup::new(self.base.index.as_ref()?, coll)?;
        Some(if live.is_pristine() {
            lookup
        } else {
            lookup.with_delta(live.delta(), self.alive(kind))
        })
    }

    /// Chooses how to reach the documents of `plan`: an index lookup when the indexes can
    /// narrow the filter down, else a full scan.
    pub fn access(&self, plan: &Plan) -> Access {
        let kind = kind_of(plan.collection);
        let coll = self.base.store.collection(kind);
        let live = self.overlay.coll(kind);
        let Some(lookup) = self.lookup(kind) else {
            return self.column_access(plan, None).unwrap_or(Access::FullScan);
        };
        let alive = self.alive(kind);
        let len = live.live_count();
        let rows_with_top = plan.top.is_some()
            && !matches!(plan.shape, twinql_planner::plan::Shape::Aggregate { .. });
        let lookup = lookup.prefer_residual(rows_with_top);
        if let (twinql_planner::plan::Shape::Aggregate { keys, items, .. }, Some(f)) =
            (&plan.shape, &plan.filter)
            && exec::counts_only(keys, items)
            && let Some(n) = lookup.count(f)
        {
            return Access::IndexCount(n);
        }
        let answer = match &plan.filter {
            Some(f) => lookup.answer(f),
            None => Answer::Exact {
                t: alive.cloned().unwrap_or_else(|| all_ids(coll.len())),
                f: roaring::RoaringBitmap::new(),
            },
        };
        // Base answers hold no deleted and no created documents: intersect only when the
        // collection was reshaped.
        let answer = match (answer, alive) {
            (Answer::Exact { mut t, f }, Some(a)) => {
                t &= a;
                Answer::Exact { t, f }
            }
            (Answer::Candidates(mut c), Some(a)) => {
                c &= a;
                Answer::Candidates(c)
            }
            (a, _) => a,
        };
        match answer {
            Answer::Exact { t, .. } => {
                if let twinql_planner::plan::Shape::Aggregate { keys, .. } = &plan.shape {
                    match keys.as_slice() {
                        [] => return Access::IndexGroups(vec![t]),
                        [k] => {
                            if let Some(groups) = lookup.groups(k, &t) {
                                return Access::IndexGroups(groups);
                            }
                            if let Some(a) = self.column_access(plan, Some(&t)) {
                                return a;
                            }
                        }
                        _ => {}
                    }
                }
                if plan.filter.is_none() {
                    return Access::FullScan;
                }
                Access::IndexScan {
                    ids: t,
                    exact: true,
                }
            }
            // A weak narrowing is not worth the random access: scan instead.
            Answer::Candidates(c) if c.len() * 2 < len => Access::IndexScan {
                ids: c,
                exact: false,
            },
            _ => self.column_access(plan, None).unwrap_or(Access::FullScan),
        }
    }

    /// The columns' answer to `plan` (see `twinql_store::columns`), when the indexes have
    /// none: the filter evaluated once per distinct value of each path it reads, and the
    /// groups of a one-key aggregate split by the key's column. `matched` is the filter's
    /// exact answer if the indexes already gave it. `None` when the columns cannot help:
    /// `TOP n` over rows (a scan stops after `n` matches), rows without a filter, a filter
    /// the columns cannot evaluate at all, or the column budget spent.
    fn column_access(
        &self,
        plan: &Plan,
        matched: Option<&roaring::RoaringBitmap>,
    ) -> Option<Access> {
        use twinql_planner::plan::Shape;
        use twinql_store::columns::ColumnAnswer;
        let aggregate = match &plan.shape {
            Shape::Aggregate { keys, .. } => Some(keys.as_slice()),
            _ => None,
        };
        if aggregate.is_none() && (plan.top.is_some() || plan.filter.is_none()) {
            return None;
        }
        let kind = kind_of(plan.collection);
        let coll = self.base.store.collection(kind);
        let live = self.overlay.coll(kind);
        let columns = self.base.store.columns();
        if let Some(t) = matched {
            // The indexes gave the documents; only the groups are wanted.
            let Some([k]) = aggregate else {
                return None;
            };
            let written = live.written_ids();
            let base = t - &written;
            let extra = written_values(coll, live, t & &written, k)?;
            return columns
                .groups(coll, k, &base, &extra)
                .map(Access::ColumnGroups);
        }
        let (mut ids, exact) = match &plan.filter {
            Some(f) => match columns.answer(coll, f)? {
                ColumnAnswer::Exact(t) => (t, true),
                ColumnAnswer::Candidates(c) => (c, false),
            },
            None => (all_ids(coll.len()), true),
        };
        // The columns hold the store's documents: written ones are checked as they are now.
        let written = live.written_ids();
        let mut passed = roaring::RoaringBitmap::new();
        if !written.is_empty() {
            ids -= &written;
            for id in &written {
                let Some(node) = live.get(coll, id) else {
                    continue;
                };
                let keep = !exact
                    || plan.filter.as_ref().is_none_or(|f| {
                        twinql_planner::eval::matches(f, &twinql_planner::eval::DocContext(node))
                    });
                if keep {
                    passed.insert(id);
                }
            }
        }
        match aggregate {
            Some([]) if exact => Some(Access::ColumnGroups(vec![ids | passed])),
            Some([k]) if exact => {
                let groups = written_values(coll, live, passed.clone(), k)
                    .and_then(|extra| columns.groups(coll, k, &ids, &extra));
                match groups {
                    Some(groups) => Some(Access::ColumnGroups(groups)),
                    None => Some(Access::ColumnScan {
                        ids: ids | passed,
                        exact,
                    }),
                }
            }
            _ => {
                let ids = ids | passed;
                // A weak narrowing is not worth the random access: scan instead.
                (exact || ids.len() * 2 < live.live_count())
                    .then_some(Access::ColumnScan { ids, exact })
            }
        }
    }

    /// The candidates of an access path: a full scan skips deleted documents.
    fn candidates(&self, plan: &Plan, access: &Access) -> Candidates {
        let kind = kind_of(plan.collection);
        match access {
            Access::IndexScan { ids, exact } | Access::ColumnScan { ids, exact } => {
                Candidates::Index {
                    ids: ids.clone(),
                    exact: *exact,
                }
            }
            _ => match self.alive(kind) {
                Some(a) if !self.overlay.coll(kind).deleted().is_empty() => Candidates::Index {
                    ids: a.clone(),
                    exact: plan.filter.is_none(),
                },
                _ => Candidates::Scan,
            },
        }
    }

    fn execute(&self, plan: &Plan, access: &Access, opts: &ExecOptions) -> exec::Output {
        let kind = kind_of(plan.collection);
        let cands = self.candidates(plan, access);
        with_docs!(self, kind, |len, doc| match access {
            Access::IndexGroups(groups) | Access::ColumnGroups(groups) =>
                exec::aggregate_from_groups(plan, groups, doc, opts),
            Access::IndexCount(n) => exec::aggregate_counted(plan, *n, opts)
                .unwrap_or_else(|| exec::execute_with(plan, len, doc, opts, &cands)),
            _ => exec::execute_with(plan, len, doc, opts, &cands),
        })
    }

    /// Runs a planned query to the end through the given access path.
    pub fn run_access(&self, plan: &Plan, access: &Access, parallel: bool) -> Vec<String> {
        self.execute(
            plan,
            access,
            &ExecOptions {
                parallel,
                ..ExecOptions::default()
            },
        )
        .rows
    }

    fn run(&self, plan: &Plan, opts: &ExecOptions) -> exec::Output {
        let access = self.access(plan);
        self.execute(plan, &access, opts)
    }

    /// The logical and physical plan of a query; with `analyze`, runs it and adds the
    /// estimated and actual row counts and the time taken.
    pub fn explain(
        &self,
        text: &str,
        functions: FunctionSet,
        analyze: bool,
    ) -> Result<String, QueryError> {
        let start = Instant::now();
        let plan = self.plan(text, functions)?;
        let plan_time = start.elapsed();
        let start = Instant::now();
        let access = self.access(&plan);
        let access_time = start.elapsed();
        let live = self.overlay.coll(kind_of(plan.collection));
        let docs = live.live_count();
        let estimate = match &access {
            Access::FullScan => docs,
            Access::IndexScan { ids, .. } | Access::ColumnScan { ids, .. } => ids.len(),
            Access::IndexGroups(g) | Access::ColumnGroups(g) => g.len() as u64,
            Access::IndexCount(_) => 1,
        };
        let mut out = String::new();
        out.push_str("Logical plan:\n");
        for line in plan.to_string().lines() {
            out.push_str("  ");
            out.push_str(line);
            out.push('\n');
        }
        out.push_str("Physical plan:\n");
        let detail = match &access {
            Access::FullScan => format!("{docs} documents"),
            Access::IndexScan { ids, exact } | Access::ColumnScan { ids, exact } => format!(
                "{} candidate{}{}",
                ids.len(),
                if ids.len() == 1 { "" } else { "s" },
                if *exact {
                    ", exact"
                } else {
                    ", residual filter"
                }
            ),
            Access::IndexGroups(g) => format!(
                "{} group{} from posting lists",
                g.len(),
                if g.len() == 1 { "" } else { "s" }
            ),
            Access::ColumnGroups(g) => format!(
                "{} group{} from columns",
                g.len(),
                if g.len() == 1 { "" } else { "s" }
            ),
            Access::IndexCount(n) => format!("{n} matching, counted from a range of postings"),
        };
        out.push_str(&format!(
            "  {} on {} ({detail}; est. rows {estimate})\n",
            access.name(),
            plan.collection.name()
        ));
        if live.written() > 0 || !live.deleted().is_empty() {
            out.push_str(&format!(
                "  (overlay: {} written, {} deleted documents; index delta on {} paths)\n",
                live.written(),
                live.deleted().len(),
                live.delta().len()
            ));
        }
        if analyze {
            let start = Instant::now();
            let rows = self.execute(&plan, &access, &ExecOptions::default()).rows;
            let exec_time = start.elapsed();
            out.push_str(&format!(
                "Analyze: est. rows {estimate}, actual rows {}; plan {:.3} ms, access (indexes or columns) {:.3} ms, execute {:.3} ms\n",
                rows.len(),
                plan_time.as_secs_f64() * 1e3,
                access_time.as_secs_f64() * 1e3,
                exec_time.as_secs_f64() * 1e3,
            ));
        }
        Ok(out)
    }

    /// Runs a query to the end and returns every row.
    pub fn query_all(&self, text: &str) -> Result<Vec<String>, QueryError> {
        let plan = self.plan(text, FunctionSet::Twin)?;
        let rows = self.run(&plan, &ExecOptions::default()).rows;
        self.check()?;
        Ok(rows)
    }

    /// `Err` if any document or postings list read from a mapped store so far failed its
    /// checks.
    pub fn check(&self) -> Result<(), QueryError> {
        self.base.store.check().map_err(QueryError::Corrupt)
    }

    /// Runs a planned query to the end.
    pub fn run_plan(&self, plan: &Plan, parallel: bool) -> Vec<String> {
        self.run(
            plan,
            &ExecOptions {
                parallel,
                ..ExecOptions::default()
            },
        )
        .rows
    }

    /// Counts the rows of a planned query without building them.
    pub fn count_plan(&self, plan: &Plan, parallel: bool) -> u64 {
        let kind = kind_of(plan.collection);
        if let Some(n) = self.count_from_postings(plan) {
            return plan.top.map_or(n, |t| n.min(t));
        }
        let access = self.access(plan);
        let cands = self.candidates(plan, &access);
        match access {
            Access::IndexGroups(groups) | Access::ColumnGroups(groups) => {
                let grouped = matches!(
                    &plan.shape,
                    twinql_planner::plan::Shape::Aggregate { keys, .. } if !keys.is_empty()
                );
                let n = if grouped { groups.len() as u64 } else { 1 };
                plan.top.map_or(n, |t| n.min(t))
            }
            // The one row of an ungrouped aggregate.
            Access::IndexCount(_) => plan.top.map_or(1, |t| t.min(1)),
            _ => with_docs!(self, kind, |len, doc| exec::count_with(
                plan, len, doc, parallel, &cands
            )),
        }
    }
}

/// The value of group key `k` in each of the `ids` (written documents of `live`) as they are
/// now; `None` if one is not a scalar the columns can place.
fn written_values<'s>(
    coll: twinql_store::Collection<'s>,
    live: &'s twinql_store::live::LiveColl,
    ids: roaring::RoaringBitmap,
    k: &twinql_planner::eval::CPath,
) -> Option<Vec<(u32, twinql_planner::eval::ScalarRef<'s>)>> {
    use twinql_planner::eval::ScalarRef;
    use twinql_planner::value::Value;
    ids.iter()
        .filter_map(|id| {
            let node = live.get(coll, id)?;
            let v = match k.resolve(Value::Node(node)) {
                Value::Undefined => ScalarRef::Undefined,
                Value::Null => ScalarRef::Null,
                Value::Bool(b) => ScalarRef::Bool(b),
                Value::Number(n) => ScalarRef::Number(n),
                Value::String(std::borrow::Cow::Borrowed(s)) => ScalarRef::String(s),
                // An object, an array or a computed string: the documents decide.
                _ => return Some(None),
            };
            Some(Some((id, v)))
        })
        .collect()
}

/// Every document id of a collection of `len` documents.
fn all_ids(len: usize) -> roaring::RoaringBitmap {
    let mut all = roaring::RoaringBitmap::new();
    all.insert_range(0..len as u32);
    all
}

/// The item type of a plan's rows.
pub fn item_type(plan: &Plan) -> ItemType {
    match plan.item_type() {
        "twin" => ItemType::Twin,
        "deviceJob" => ItemType::DeviceJob,
        _ => ItemType::Raw,
    }
}
