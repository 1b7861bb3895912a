//! Parser for the Azure IoT Hub twin query language.
//!
//! Three entry points share one grammar: [`parse_query`] for full queries
//! (`SELECT … FROM devices …`), [`parse_condition`] for configuration target conditions and job
//! `queryCondition`s (`*`, a bare expression, or `FROM devices.modules WHERE …`), and
//! [`parse_routing`] for message-routing conditions. Every node carries a byte span; errors are
//! typed values with a span, never strings.
//!
//! The text is first split into tokens by the [`lexer`] (keywords in any case; note its rule that
//! `a-b` is one identifier while `a - b` is a subtraction), then parsed by recursive descent with
//! precedence climbing (the [`parser`] module). Every tree prints back to canonical text through
//! `Display`, and parsing that text gives an equal tree.
//!
//! ```
//! use twinql_parser::parse_query;
//!
//! let q = parse_query("select * from devices where tags.location.plant = 'Redmond43'").unwrap();
//! assert_eq!(
//!     q.to_string(),
//!     "SELECT * FROM devices WHERE tags.location.plant = 'Redmond43'"
//! );
//!
//! let err = twinql_parser::parse_query("SELECT * FROM modules").unwrap_err();
//! assert_eq!(err.0[0].kind, twinql_parser::ErrorKind::UnknownCollection);
//! assert_eq!(err.0[0].help.as_deref(), Some("did you mean `devices.modules`?"));
//! ```

pub mod ast;
pub mod error;
pub mod lexer;
pub mod parser;

pub use ast::*;
pub use error::{ErrorKind, ParseError, ParseErrors, line_col};
pub use parser::{
    Dialect, MAX_CHARS, MAX_DEPTH, MAX_HEIGHT, parse_condition, parse_expression, parse_query,
    parse_routing,
};
