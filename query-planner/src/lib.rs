//! Validation, semantics and plans for the IoT Hub query language.
//!
//! - [`validate`] checks a parsed query against the rules of its dialect and returns every
//!   error and warning it finds.
//! - [`value`] and [`eval`] are the one implementation of the language's semantics (values,
//!   Undefined, three-valued logic, type-strict comparison, functions), generic over how a store
//!   lays out its documents.
//! - [`functions`] holds the function tables of twin queries and routing conditions.
//!
//! ```
//! use twinql_planner::validate::{validate_query, Options};
//!
//! let q = twinql_parser::parse_query("SELECT * FROM devices WHERE STARTS_WITH(deviceId, 'a')").unwrap();
//! let report = validate_query(&q, &Options::default());
//! assert!(report.has_errors());
//! assert_eq!(report.errors()[0].help.as_deref(), Some("did you mean `STARTSWITH`?"));
//! ```

pub mod eval;
pub mod functions;
pub mod plan;
pub mod routing;
pub mod validate;
pub mod value;
