//! The root crate's integration tests, linked as one test binary (`cargo test --test it`)
//! instead of one binary per file.
//!
//! Each module is a former `tests/<name>.rs`; run one with `cargo test --test it <name>::`.
//! Insta snapshots live in `tests/it/snapshots/` as `it__<name>__<snapshot>.snap`.
//! Proptest keeps failure seeds in `tests/proptest-regressions/<name>.txt` (its default
//! place once the test crate has a `main.rs`).

mod common;

mod batch;
mod cli_check;
mod cli_query;
mod cli_shell;
mod cli_store;
mod conformance_twin;
mod durable;
mod durable_crash;
mod r#gen;
mod index_differential;
mod live_differential;
mod live_stress;
mod notifications;
mod tutorial;
