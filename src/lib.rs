//! twinql: the Azure IoT Hub twin query language, without a hub.
//!
//! This crate is the facade over the workspace: parse and validate queries offline, load twins,
//! and run queries with IoT Hub semantics and paging.
//!
//! ```
//! let report = twinql::check("SELECT * FROM devices WHERE tags.location.plant = 'Redmond43'", twinql::Dialect::Query);
//! assert!(report.ok());
//! ```

pub mod cli;
pub mod db;
pub mod diagnostics;
pub mod r#gen;
pub mod token;
pub mod write;

pub use db::{Database, DesiredUpdate, ItemType, Page, QueryError, QueryOptions, Snapshot};
pub use diagnostics::{CheckReport, Dialect, check};
pub use twinql_parser as parser;
pub use twinql_planner as planner;
pub use twinql_store as store;
pub use twinql_store::twin::{ErrorCode, HubError, Update};
pub use write::{TwinId, WriteAck};
