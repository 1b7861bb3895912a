//! `twinql query`: run a query over files of twins.

use crate::cli::data::{DataArgs, check_store, load_database_for};
use crate::db::{Database, QueryError, QueryOptions};
use clap::{Args, ValueEnum};
use std::io::Write;
use twinql_planner::functions::FunctionSet;

/// How rows are printed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum RowFormat {
    /// One JSON array of all rows.
    Json,
    /// One row per line.
    Jsonl,
    /// An aligned text table (one column per top-level member).
    Table,
}

/// Which functions twin queries may use.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Functions {
    /// What the service accepts.
    Twin,
    /// Also the routing scalar functions (`CONTAINS`, `LOWER`, …).
    Extended,
}

impl From<Functions> for FunctionSet {
    fn from(f: Functions) -> FunctionSet {
        match f {
            Functions::Twin => FunctionSet::Twin,
            Functions::Extended => FunctionSet::Extended,
        }
    }
}

/// Arguments of `twinql query`.
#[derive(Debug, Args)]
pub struct QueryArgs {
    /// Where the twins come from (`--data FILE…` or `--store DIR`).
    #[command(flatten)]
    pub data: DataArgs,
    /// Output format.
    #[arg(long, value_enum, default_value_t = RowFormat::Json)]
    pub format: RowFormat,
    /// Return one page of at most N rows (1–100) and print its continuation token on stderr.
    #[arg(long, value_name = "N")]
    pub page_size: Option<usize>,
    /// Fetch the page after the one that returned TOKEN (same query text).
    #[arg(long, value_name = "TOKEN")]
    pub continuation: Option<String>,
    /// Which functions twin queries may use.
    #[arg(long, value_enum, default_value_t = Functions::Twin)]
    pub functions: Functions,
    /// The query.
    pub query: String,
}

/// Runs `twinql query`.
pub fn run_query(args: QueryArgs) -> i32 {
    let db = match load_database_for(&args.data, &args.query, args.functions.into()) {
        Ok(db) => db,
        Err(code) => return code,
    };
    let paged = args.page_size.is_some() || args.continuation.is_some();
    let result = if paged {
        let opts = QueryOptions {
            page_size: args.page_size.unwrap_or(crate::db::MAX_PAGE_SIZE),
            continuation: args.continuation.clone(),
            functions: args.functions.into(),
            parallel: true,
        };
        db.query(&args.query, &opts).map(|page| {
            if let Some(t) = &page.continuation {
                eprintln!("continuation: {t}");
            }
            page.items
        })
    } else {
        all_rows(&db, &args.query, args.functions.into())
    };
    if let Err(code) = check_store(&db) {
        return code;
    }
    match result {
        Ok(rows) => match print_rows(&rows, args.format) {
            Ok(()) => 0,
            Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => 0,
            Err(e) => {
                eprintln!("error: {e}");
                2
            }
        },
        Err(e) => {
            report_query_error(&args.query, &e);
            1
        }
    }
}

fn all_rows(db: &Database, text: &str, functions: FunctionSet) -> Result<Vec<String>, QueryError> {
    let plan = db.plan(text, functions)?;
    Ok(db.run_plan(&plan, true))
}

/// Prints why a query was not run, with the query's diagnostics where there are any.
pub fn report_query_error(text: &str, e: &QueryError) {
    match e {
        QueryError::Syntax(_) | QueryError::Invalid(_) => {
            let report = crate::diagnostics::check(text, crate::diagnostics::Dialect::Query);
            eprint!("{}", crate::diagnostics::render_human(&report, false));
            if report.ok() {
                eprintln!("error: {e}");
            }
        }
        other => eprintln!("error: {other}"),
    }
}

/// Prints rows in the chosen format.
pub fn print_rows(rows: &[String], format: RowFormat) -> std::io::Result<()> {
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    match format {
        RowFormat::Json => {
            out.write_all(b"[")?;
            for (i, r) in rows.iter().enumerate() {
                if i > 0 {
                    out.write_all(b",\n")?;
                } else {
                    out.write_all(b"\n")?;
                }
                out.write_all(r.as_bytes())?;
            }
            out.write_all(if rows.is_empty() { b"]\n" } else { b"\n]\n" })?;
        }
        RowFormat::Jsonl => {
            for r in rows {
                out.write_all(r.as_bytes())?;
                out.write_all(b"\n")?;
            }
        }
        RowFormat::Table => write_table(&mut out, rows)?,
    }
    out.flush()
}

fn cell(v: &serde_json::Value) -> String {
    let s = match v {
        serde_json::Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    if s.chars().count() > 48 {
        format!("{}…", s.chars().take(47).collect::<String>())
    } else {
        s
    }
}

fn write_table(out: &mut impl Write, rows: &[String]) -> std::io::Result<()> {
    let values: Vec<serde_json::Map<String, serde_json::Value>> = rows
        .iter()
        .map(|r| match serde_json::from_str(r) {
            Ok(serde_json::Value::Object(m)) => m,
            _ => serde_json::Map::new(),
        })
        .collect();
    let mut columns: Vec<String> = Vec::new();
    for m in &values {
        for k in m.keys() {
            if !columns.contains(k) {
                columns.push(k.clone());
            }
        }
    }
    let cells: Vec<Vec<String>> = values
        .iter()
        .map(|m| {
            columns
                .iter()
                .map(|c| m.get(c).map(cell).unwrap_or_default())
                .collect()
        })
        .collect();
    let widths: Vec<usize> = columns
        .iter()
        .enumerate()
        .map(|(i, c)| {
            cells
                .iter()
                .map(|r| r[i].chars().count())
                .chain([c.chars().count()])
                .max()
                .unwrap_or(0)
        })
        .collect();
    let line = |out: &mut dyn Write, items: &[String]| -> std::io::Result<()> {
        let mut s = String::new();
        for (i, item) in items.iter().enumerate() {
            if i > 0 {
                s.push_str(" | ");
            }
            s.push_str(item);
            if i + 1 < items.len() {
                s.push_str(&" ".repeat(widths[i].saturating_sub(item.chars().count())));
            }
        }
        writeln!(out, "{}", s.trim_end())
    };
    line(out, &columns)?;
    let rule: Vec<String> = widths.iter().map(|w| "-".repeat(*w)).collect();
    writeln!(out, "{}", rule.join("-+-"))?;
    for r in &cells {
        line(out, r)?;
    }
    writeln!(
        out,
        "({} row{})",
        rows.len(),
        if rows.len() == 1 { "" } else { "s" }
    )
}
