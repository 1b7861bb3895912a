//! An in-memory store of Azure IoT Hub device twins, module twins and job records, laid out
//! for fast scanning by the twinql query evaluator.
//!
//! Documents are parsed straight into compact byte tapes (one per chunk of input) with member
//! names interned store-wide; nothing builds a `serde_json::Value` per document. Each
//! document is reached through a [`NodeRef`], a copyable handle that implements the
//! evaluator's [`Node`](twinql_planner::value::Node) trait without allocating. Loading
//! takes JSON Lines or a JSON array, runs in parallel on rayon, and reports malformed
//! documents by line and column. The layout is described in `DESIGN.md`.
//!
//! Twins that change after loading live in an overlay beside the tapes: [`twin`] holds IoT
//! Hub's write rules over owned [`Doc`] trees, [`live`] the persistent overlay (O(1)
//! snapshots) and [`delta`] the index changes that keep [`index`] answers exact.
//! Scans that read one path of every document use [`columns`]: dictionary-encoded values
//! of a path, built on first use and kept with the store.
//!
//! ```
//! use twinql_planner::value::{Key, Node};
//! use twinql_store::{LoadOptions, Store};
//!
//! let text = br#"{"deviceId":"d1","tags":{"Region":"US"},"properties":{"reported":{"temp":21.5}}}
//! {"deviceId":"d2","tags":{"region":"EU"}}
//! "#;
//! let mut store = Store::new();
//! let report = store.load_bytes("twins.jsonl", text, &LoadOptions::default())?;
//! assert_eq!(report.devices, 2);
//!
//! // Keys are resolved once per query; lookups then compare integer ids.
//! let mut tags = Key::new("tags");
//! let mut region = Key::new("region");
//! store.resolve_key(&mut tags);
//! store.resolve_key(&mut region);
//!
//! let devices = store.devices();
//! let regions: Vec<&str> = devices
//!     .iter()
//!     .filter_map(|twin| twin.member(&tags)?.member(&region)?.as_str())
//!     .collect();
//! // `Region` matches `region` ignoring case; an exact-case member would be preferred.
//! assert_eq!(regions, ["US", "EU"]);
//!
//! // Documents are written back exactly as stored.
//! let mut out = Vec::new();
//! devices.doc(1).write_json(&mut out);
//! assert_eq!(out, br#"{"deviceId":"d2","tags":{"region":"EU"}}"#);
//! # Ok::<(), twinql_store::LoadError>(())
//! ```

pub mod codec;
pub mod columns;
pub mod delta;
mod dict;
pub mod doc;
mod error;
pub mod exec;
pub mod index;
pub mod live;
mod load;
pub mod mapped;
pub mod packed;
mod parse;
pub mod segment;
mod store;
mod tape;
pub mod twin;

pub use doc::{Doc, JsonError, NameCache, Number, Object};
pub use error::{DocError, DocErrorKind, LoadError};
pub use load::{DocKind, LoadOptions, LoadReport};
pub use store::{ABSENT_KEY, Collection, CollectionKind, DocId, MemoryUsage, Store};
pub use tape::{Elements, Members, NodeRef};
