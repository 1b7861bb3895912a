//! twinql: the Azure IoT Hub twin query language, without a hub.
//!
//! This crate is the facade over the workspace: parse and validate queries offline, load twins,
//! and run queries with IoT Hub semantics and paging.
//!
//! ```
//! let report = twinql::check("SELECT * FROM devices WHERE tags.location.plant = 'Redmond43'", twinql::Dialect::Query);
//! assert!(report.ok());
//! ```
//!
//! Twins live: writes follow IoT Hub's rules and queries see them at once.
//!
//! ```
//! use twinql::{Database, ErrorCode, TwinId};
//!
//! let db = Database::new();
//! let dev = TwinId::device("myDeviceId");
//! db.create_twin(&dev)?;
//! let updates = db.subscribe_desired(&dev)?;
//! let ack = db.patch_twin(
//!     &dev,
//!     r#"{"tags":{"location":{"plant":"Redmond43"}},"properties":{"desired":{"power_level":1}}}"#,
//!     Some("AAAAAAAAAAE="), // If-Match: the etag of version 1
//! )?;
//! assert_eq!(ack.version, 2);
//! db.patch_reported(&dev, r#"{"connectivity":"cellular"}"#)?;
//! assert_eq!(updates.recv()?.patch, r#"{"power_level":1,"$version":2}"#);
//!
//! let q = "SELECT deviceId FROM devices WHERE tags.location.plant = 'Redmond43' \
//!          AND properties.reported.connectivity = 'cellular'";
//! assert_eq!(db.query_all(q)?, [r#"{"deviceId":"myDeviceId"}"#]);
//!
//! // The first etag is stale now.
//! let err = db.patch_tags(&dev, r#"{"floor":3}"#, Some("AAAAAAAAAAE=")).unwrap_err();
//! assert_eq!(err.code, ErrorCode::PreconditionFailed);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

pub mod cli;
pub mod db;
pub mod diagnostics;
pub mod durable;
pub mod r#gen;
pub mod token;
pub mod wal;
pub mod write;

pub use db::{Database, DesiredUpdate, ItemType, Page, QueryError, QueryOptions, Snapshot};
pub use diagnostics::{CheckReport, Dialect, check};
pub use durable::{Recovery, StoreError, StoreOptions};
pub use twinql_parser as parser;
pub use twinql_planner as planner;
pub use twinql_store as store;
pub use twinql_store::twin::{ErrorCode, HubError, Update};
pub use write::{BatchWrite, TwinId, WriteAck, WriteOp};
