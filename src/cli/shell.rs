//! `twinql shell`: an interactive session over twins in memory (or in a store directory,
//! with `--store`, where writes are durable): queries, plans, reads, writes and
//! desired-property notifications.
//!
//! Results go to stdout (rows, twins, acknowledgements, notifications); everything else
//! (banner, timings, errors) goes to stderr, so a script piped into the shell gives parseable
//! output.

use crate::cli::data::{DataArgs, build_indexes, load_database, open_store};
use crate::cli::query::{Functions, RowFormat, print_rows, report_query_error};
use crate::db::{Database, DesiredUpdate, item_type};
use crate::r#gen::{GenOptions, generate_bytes};
use crate::write::{TwinId, WriteAck};
use clap::Args;
use rustyline::DefaultEditor;
use rustyline::error::ReadlineError;
use std::io::{self, BufRead, IsTerminal, Write};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::mpsc::{Receiver, TryRecvError};
use std::time::Instant;
use twinql_planner::functions::FunctionSet;
use twinql_store::twin::HubError;
use twinql_store::{CollectionKind, LoadOptions, Store};

/// Writes one line on stderr, ignoring failures (a closed stderr must not end the session).
macro_rules! note {
    ($($t:tt)*) => {{
        let _ = writeln!(io::stderr(), $($t)*);
    }};
}

/// Arguments of `twinql shell`.
#[derive(Debug, Args)]
pub struct ShellArgs {
    /// A file of twins: JSON Lines or a JSON array of device twins, module twins (with
    /// `moduleId`) and their `jobs`. May be given several times. Without it the shell starts
    /// over generated twins.
    #[arg(long = "data", value_name = "FILE")]
    pub data: Vec<PathBuf>,
    /// A store directory (instead of `--data`): opened (created if missing, with the default
    /// indexes), and every write goes to its log durably. `compact` folds the log into a new
    /// segment.
    #[arg(long, value_name = "DIR", conflicts_with = "data")]
    pub store: Option<PathBuf>,
    /// Without `--data` or `--store`: how many device twins to generate.
    #[arg(long, value_name = "N", conflicts_with_all = ["data", "store"])]
    pub count: Option<u64>,
    /// Without `--data` or `--store`: seed of the generator.
    #[arg(long, value_name = "SEED", conflicts_with_all = ["data", "store"])]
    pub seed: Option<u64>,
    /// Load the valid documents and report the invalid ones instead of failing.
    #[arg(long, conflicts_with = "store")]
    pub skip_invalid: bool,
    /// Index policy as JSON: `{"include": ["tags/*", …], "exclude": […]}`.
    #[arg(long, value_name = "FILE", conflicts_with_all = ["no_index", "store"])]
    pub index_policy: Option<PathBuf>,
    /// Build no indexes: every query scans (the columns of its filter's paths, built on first
    /// use, or whole twins).
    #[arg(long, conflicts_with = "store")]
    pub no_index: bool,
    /// Report the size of the indexes and how long they took to build (on stderr).
    #[arg(long, conflicts_with = "store")]
    pub verbose_index: bool,
    /// How rows are printed at first (`.format` changes it).
    #[arg(long, value_enum, default_value_t = RowFormat::Json)]
    pub format: RowFormat,
    /// Which functions twin queries may use at first (`.functions` changes it).
    #[arg(long, value_enum, default_value_t = Functions::Twin)]
    pub functions: Functions,
}

/// Device twins generated when no `--data` is given.
pub const DEFAULT_COUNT: u64 = 1000;
/// Seed of the generated twins when no `--data` is given.
pub const DEFAULT_SEED: u64 = 42;

const HELP: &str = "\
Commands (the command word is case-insensitive):
  SELECT …                         run a query (end a line with \\ to continue it)
  explain [analyze] SELECT …       show the plan (and run it with analyze)
  get ID                           print a twin (ID is DEVICE or DEVICE/MODULE)
  create ID                        create a device or module identity
  delete ID [ETAG]                 delete an identity (with its modules)
  patch-tags ID JSON [--etag E]    merge-patch the tags
  patch-desired ID JSON [--etag E] merge-patch the desired properties
  patch-reported ID JSON           merge-patch the reported properties (as the device)
  patch-twin ID JSON [--etag E]    merge-patch {\"tags\": …, \"properties\": {\"desired\": …}}
  replace-twin ID JSON [--etag E]  replace tags and desired properties
  subscribe ID                     print the twin's desired-property updates as they happen
  unsubscribe ID                   stop printing them
  count | stats                    number of twins (stats: also writes and subscriptions)
  compact                          fold the log of the store into a new segment (--store)
  .format json|jsonl|table         how rows are printed
  .functions twin|extended         which functions queries may use
  help                             this text
  exit | quit | Ctrl-D             leave
Lines starting with -- are comments.";

const COMMANDS: &str = "SELECT, explain, get, create, delete, patch-tags, patch-desired, \
patch-reported, patch-twin, replace-twin, subscribe, unsubscribe, count, stats, compact, \
.format, .functions, help, exit";

/// Runs `twinql shell`.
pub fn run_shell(args: ShellArgs) -> i32 {
    let start = Instant::now();
    let (db, origin) = match load(&args) {
        Ok(loaded) => loaded,
        Err(code) => return code,
    };
    let snap = db.snapshot();
    let plural = |n: u64, what: &str| format!("{n} {what}{}", if n == 1 { "" } else { "s" });
    note!(
        "twinql shell: {}, {}, {} {origin} in {:.2} s",
        plural(snap.count(CollectionKind::Devices), "device twin"),
        plural(snap.count(CollectionKind::Modules), "module twin"),
        plural(snap.count(CollectionKind::Jobs), "job record"),
        start.elapsed().as_secs_f64()
    );
    if let Some(r) = db.recovery().filter(|r| r.replayed > 0) {
        note!("replayed {} from the log", plural(r.replayed, "write"));
    }
    if args.data.is_empty() && args.store.is_none() {
        note!("(generated data; use --data FILE to load your own twins)");
    }
    drop(snap);
    note!("type `help` for the commands, `exit` or Ctrl-D to leave");
    let mut session = Session {
        db,
        format: args.format,
        functions: args.functions.into(),
        subscriptions: Vec::new(),
        problems_seen: 0,
    };
    let mut input = Input::new();
    match session.repl(&mut input) {
        Ok(()) => 0,
        Err(e) if e.kind() == io::ErrorKind::BrokenPipe => 0,
        Err(e) => {
            note!("error: cannot write the output: {e}");
            0
        }
    }
}

/// Opens the `--store`, loads the `--data` files, or generates twins; returns the database
/// and where its twins came from (for the banner).
fn load(args: &ShellArgs) -> Result<(Arc<Database>, String), i32> {
    if let Some(dir) = &args.store {
        let db = open_store(dir, false)?;
        return Ok((db, format!("opened from store {}", dir.display())));
    }
    if !args.data.is_empty() {
        let data = DataArgs {
            data: args.data.clone(),
            store: None,
            skip_invalid: args.skip_invalid,
            index_policy: args.index_policy.clone(),
            no_index: args.no_index,
            verbose_index: args.verbose_index,
        };
        let db = load_database(&data)?;
        let n = args.data.len();
        return Ok((
            db,
            format!("loaded from {n} file{}", if n == 1 { "" } else { "s" }),
        ));
    }
    let count = args.count.unwrap_or(DEFAULT_COUNT);
    let seed = args.seed.unwrap_or(DEFAULT_SEED);
    let bytes = generate_bytes(&GenOptions {
        count,
        seed,
        ..GenOptions::default()
    });
    let mut store = Store::new();
    if let Err(e) = store.load_bytes("generated", &bytes, &LoadOptions::default()) {
        note!("error: {e}");
        return Err(2);
    }
    drop(bytes);
    let mut db = Database::from_store(store);
    build_indexes(
        &mut db,
        args.no_index,
        args.index_policy.as_deref(),
        args.verbose_index,
    )?;
    Ok((
        Arc::new(db),
        format!("generated in memory (--count {count}, seed {seed})"),
    ))
}

/// Where lines come from: a line editor on a terminal, plain lines otherwise.
enum Input {
    /// A terminal: line editing and in-memory history.
    Editor(Box<DefaultEditor>),
    /// A pipe or file; prompts go to stderr when `prompt` (stdin is a terminal but stdout is
    /// not), else nowhere.
    Plain {
        /// Standard input.
        stdin: io::StdinLock<'static>,
        /// Whether to show prompts (on stderr).
        prompt: bool,
    },
}

/// What reading a line gave.
enum Line {
    /// A line, without its end of line.
    Text(String),
    /// Ctrl-C: drop the line being entered.
    Interrupted,
    /// End of input.
    Eof,
}

impl Input {
    fn new() -> Input {
        let stdin_tty = io::stdin().is_terminal();
        if stdin_tty && io::stdout().is_terminal() {
            match DefaultEditor::new() {
                Ok(editor) => return Input::Editor(Box::new(editor)),
                Err(e) => note!("warning: no line editing: {e}"),
            }
        }
        Input::Plain {
            stdin: io::stdin().lock(),
            prompt: stdin_tty,
        }
    }

    fn read(&mut self, prompt: &str) -> Line {
        match self {
            Input::Editor(editor) => match editor.readline(prompt) {
                Ok(line) => {
                    if !line.trim().is_empty() {
                        let _ = editor.add_history_entry(line.as_str());
                    }
                    Line::Text(line)
                }
                Err(ReadlineError::Interrupted) => Line::Interrupted,
                Err(ReadlineError::Eof) => Line::Eof,
                Err(e) => {
                    note!("error: cannot read the input: {e}");
                    Line::Eof
                }
            },
            Input::Plain {
                stdin,
                prompt: show,
            } => {
                if *show {
                    let mut err = io::stderr();
                    let _ = err.write_all(prompt.as_bytes());
                    let _ = err.flush();
                }
                let mut buf = Vec::new();
                match stdin.read_until(b'\n', &mut buf) {
                    Ok(0) => Line::Eof,
                    Ok(_) => {
                        while buf.last().is_some_and(|b| *b == b'\n' || *b == b'\r') {
                            buf.pop();
                        }
                        Line::Text(String::from_utf8_lossy(&buf).into_owned())
                    }
                    Err(e) => {
                        note!("error: cannot read the input: {e}");
                        Line::Eof
                    }
                }
            }
        }
    }
}

/// Whether to go on after a command.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Flow {
    Continue,
    Quit,
}

/// The state of one session.
struct Session {
    db: Arc<Database>,
    format: RowFormat,
    functions: FunctionSet,
    subscriptions: Vec<(TwinId, Receiver<DesiredUpdate>)>,
    /// Problems found in the bytes of the store's segment already reported.
    problems_seen: usize,
}

/// Splits off the first whitespace-separated word; the rest is trimmed at the start.
fn split_word(text: &str) -> (&str, &str) {
    let text = text.trim_start();
    match text.split_once(char::is_whitespace) {
        Some((word, rest)) => (word, rest.trim_start()),
        None => (text, ""),
    }
}

/// Whether `text` starts with the keyword `kw` (ASCII, any case) followed by a non-word
/// character or its end.
fn starts_with_keyword(text: &str, kw: &str) -> bool {
    let head = text.get(..kw.len());
    head.is_some_and(|h| h.eq_ignore_ascii_case(kw))
        && text[kw.len()..]
            .chars()
            .next()
            .is_none_or(|c| !(c.is_alphanumeric() || c == '_'))
}

/// A query without the trailing `;` people type out of habit.
fn query_text(text: &str) -> &str {
    let t = text.trim();
    t.strip_suffix(';').map_or(t, str::trim_end)
}

/// Parses `DEVICE` or `DEVICE/MODULE`.
fn parse_id(text: &str) -> Result<TwinId, String> {
    let text = text.trim();
    if text.is_empty() {
        return Err("missing twin id: expected DEVICE or DEVICE/MODULE".to_string());
    }
    if text.contains(char::is_whitespace) {
        return Err(format!(
            "`{text}` is not one twin id: expected DEVICE or DEVICE/MODULE"
        ));
    }
    match text.split_once('/') {
        None => Ok(TwinId::device(text)),
        Some((d, m)) if !d.is_empty() && !m.is_empty() && !m.contains('/') => {
            Ok(TwinId::module(d, m))
        }
        Some(_) => Err(format!(
            "`{text}` is not a twin id: expected DEVICE or DEVICE/MODULE"
        )),
    }
}

/// An etag as typed: with or without the quotes of an `If-Match` header.
fn unquote(etag: &str) -> &str {
    etag.strip_prefix('"')
        .and_then(|e| e.strip_suffix('"'))
        .unwrap_or(etag)
}

/// Splits `JSON [--etag E]` (or `--etag E JSON`, or `--etag=E`) into the JSON text and the
/// etag.
fn split_etag(body: &str) -> (&str, Option<&str>) {
    let body = body.trim();
    if serde_json::from_str::<serde::de::IgnoredAny>(body).is_ok() {
        return (body, None);
    }
    if let Some(rest) = body.strip_prefix("--etag=") {
        let (etag, json) = split_word(rest);
        return (json, Some(unquote(etag)));
    }
    if starts_with_keyword(body, "--etag") {
        let (_, rest) = split_word(body);
        let (etag, json) = split_word(rest);
        return (json, Some(unquote(etag)));
    }
    if let Some((before, last)) = body.rsplit_once(char::is_whitespace) {
        if let Some(etag) = last.strip_prefix("--etag=") {
            return (before.trim_end(), Some(unquote(etag)));
        }
        let before = before.trim_end();
        if let Some((json, flag)) = before.rsplit_once(char::is_whitespace)
            && flag == "--etag"
        {
            return (json.trim_end(), Some(unquote(last)));
        }
        if before == "--etag" {
            return ("", Some(unquote(last)));
        }
    }
    (body, None)
}

/// JSON text pretty-printed (as it is when it does not parse).
fn pretty(text: &str) -> String {
    serde_json::from_str::<serde_json::Value>(text)
        .ok()
        .and_then(|v| serde_json::to_string_pretty(&v).ok())
        .unwrap_or_else(|| text.to_string())
}

/// Writes text and a line end on stdout.
fn out(text: &str) -> io::Result<()> {
    let mut stdout = io::stdout().lock();
    stdout.write_all(text.as_bytes())?;
    if !text.ends_with('\n') {
        stdout.write_all(b"\n")?;
    }
    stdout.flush()
}

fn hub_error(e: &HubError) {
    note!("error: {e}");
}

/// The patch commands: name, and whether the command takes an etag.
#[derive(Clone, Copy)]
enum Patch {
    Tags,
    Desired,
    Reported,
    Twin,
    Replace,
}

impl Patch {
    fn name(self) -> &'static str {
        match self {
            Patch::Tags => "patch-tags",
            Patch::Desired => "patch-desired",
            Patch::Reported => "patch-reported",
            Patch::Twin => "patch-twin",
            Patch::Replace => "replace-twin",
        }
    }
}

impl Session {
    /// Reads and runs commands until `exit` or the end of the input.
    fn repl(&mut self, input: &mut Input) -> io::Result<()> {
        let mut pending = String::new();
        loop {
            let prompt = if pending.is_empty() {
                "twinql> "
            } else {
                "   ...> "
            };
            let line = match input.read(prompt) {
                Line::Text(line) => line,
                Line::Interrupted => {
                    pending.clear();
                    continue;
                }
                Line::Eof => break,
            };
            if pending.is_empty() && line.trim_start().starts_with("--") {
                continue;
            }
            if let Some(head) = line.trim_end().strip_suffix('\\') {
                pending.push_str(head);
                pending.push('\n');
                continue;
            }
            pending.push_str(&line);
            let command = std::mem::take(&mut pending);
            if self.run_guarded(&command)? == Flow::Quit {
                return Ok(());
            }
        }
        if !pending.trim().is_empty() {
            self.run_guarded(&pending)?;
        }
        Ok(())
    }

    /// Runs one command, then prints the notifications it caused. A panic in the engine is
    /// reported and the session goes on.
    fn run_guarded(&mut self, command: &str) -> io::Result<Flow> {
        let flow = match catch_unwind(AssertUnwindSafe(|| self.run(command))) {
            Ok(result) => result?,
            Err(_) => {
                note!("error: internal error while running this command; the session goes on");
                Flow::Continue
            }
        };
        self.drain_notifications()?;
        self.report_problems();
        Ok(flow)
    }

    /// Runs one command (possibly several lines joined).
    fn run(&mut self, command: &str) -> io::Result<Flow> {
        let text = command.trim();
        if text.is_empty() || text.starts_with("--") {
            return Ok(Flow::Continue);
        }
        if starts_with_keyword(text, "select") {
            return self.query(query_text(text)).map(|()| Flow::Continue);
        }
        let (word, rest) = split_word(text);
        let result = match word.to_ascii_lowercase().as_str() {
            "explain" => {
                let (next, after) = split_word(rest);
                if next.eq_ignore_ascii_case("analyze") {
                    self.explain(query_text(after), true)
                } else {
                    self.explain(query_text(rest), false)
                }
            }
            "get" => self.get(rest),
            "create" => self.create(rest),
            "delete" => self.delete(rest),
            "patch-tags" => self.patch(Patch::Tags, rest),
            "patch-desired" => self.patch(Patch::Desired, rest),
            "patch-reported" => self.patch(Patch::Reported, rest),
            "patch-twin" => self.patch(Patch::Twin, rest),
            "replace-twin" => self.patch(Patch::Replace, rest),
            "subscribe" => self.subscribe(rest),
            "unsubscribe" => self.unsubscribe(rest),
            "count" => self.count(false),
            "stats" => self.count(true),
            "compact" => self.compact(rest),
            ".format" | "format" => self.set_format(rest),
            ".functions" | "functions" => self.set_functions(rest),
            "help" | ".help" | "?" | "\\h" => out(HELP),
            "exit" | "quit" | ".exit" | ".quit" | "\\q" => return Ok(Flow::Quit),
            _ => {
                let shown: String = word.chars().take(40).collect();
                note!("error: unknown command `{shown}`");
                note!("  commands: {COMMANDS}");
                note!("  type `help` for details");
                Ok(())
            }
        };
        result.map(|()| Flow::Continue)
    }

    fn query(&self, text: &str) -> io::Result<()> {
        let start = Instant::now();
        let plan = match self.db.plan(text, self.functions) {
            Ok(plan) => plan,
            Err(e) => {
                report_query_error(text, &e);
                return Ok(());
            }
        };
        let rows = self.db.run_plan(&plan, true);
        let ms = start.elapsed().as_secs_f64() * 1000.0;
        self.print(&rows)?;
        note!(
            "{} row{} ({}) in {ms:.2} ms",
            rows.len(),
            if rows.len() == 1 { "" } else { "s" },
            item_type(&plan)
        );
        Ok(())
    }

    fn print(&self, rows: &[String]) -> io::Result<()> {
        if self.format != RowFormat::Json {
            return print_rows(rows, self.format);
        }
        let mut text = String::from("[");
        for (i, row) in rows.iter().enumerate() {
            text.push_str(if i == 0 { "\n" } else { ",\n" });
            for (j, line) in pretty(row).lines().enumerate() {
                if j > 0 {
                    text.push('\n');
                }
                text.push_str("  ");
                text.push_str(line);
            }
        }
        text.push_str(if rows.is_empty() { "]" } else { "\n]" });
        out(&text)
    }

    fn explain(&self, text: &str, analyze: bool) -> io::Result<()> {
        if text.is_empty() {
            note!("error: usage: explain [analyze] SELECT …");
            return Ok(());
        }
        match self.db.explain(text, self.functions, analyze) {
            Ok(plan) => out(&plan),
            Err(e) => {
                report_query_error(text, &e);
                Ok(())
            }
        }
    }

    fn id_arg(&self, command: &str, rest: &str) -> Option<TwinId> {
        match parse_id(rest) {
            Ok(id) => Some(id),
            Err(e) => {
                note!("error: {e}");
                note!("  usage: {command} DEVICE[/MODULE]");
                None
            }
        }
    }

    fn get(&self, rest: &str) -> io::Result<()> {
        let Some(id) = self.id_arg("get", rest) else {
            return Ok(());
        };
        match self.db.get_twin(&id) {
            Ok(twin) => out(&pretty(&twin)),
            Err(e) => {
                hub_error(&e);
                Ok(())
            }
        }
    }

    fn create(&self, rest: &str) -> io::Result<()> {
        let Some(id) = self.id_arg("create", rest) else {
            return Ok(());
        };
        match self.db.create_twin(&id) {
            Ok(twin) => {
                let v: serde_json::Value = serde_json::from_str(&twin).unwrap_or_default();
                let version = v.get("version").and_then(|v| v.as_u64()).unwrap_or(0);
                let etag = v.get("etag").and_then(|v| v.as_str()).unwrap_or_default();
                out(&format!("ok: created {id}, version {version}, etag {etag}"))
            }
            Err(e) => {
                hub_error(&e);
                Ok(())
            }
        }
    }

    fn delete(&self, rest: &str) -> io::Result<()> {
        let (id_text, etag) = split_word(rest);
        let etag = etag.trim();
        if etag.contains(char::is_whitespace) {
            note!("error: usage: delete DEVICE[/MODULE] [ETAG]");
            return Ok(());
        }
        let Some(id) = self.id_arg("delete", id_text) else {
            return Ok(());
        };
        let etag = (!etag.is_empty()).then(|| unquote(etag));
        match self.db.delete_twin(&id, etag) {
            Ok(()) => out(&format!("ok: deleted {id}")),
            Err(e) => {
                hub_error(&e);
                Ok(())
            }
        }
    }

    fn patch(&self, kind: Patch, rest: &str) -> io::Result<()> {
        let usage = match kind {
            Patch::Reported => "DEVICE[/MODULE] JSON",
            _ => "DEVICE[/MODULE] JSON [--etag E]",
        };
        let (id_text, body) = split_word(rest);
        let (json, etag) = split_etag(body);
        if id_text.is_empty() || json.is_empty() {
            note!("error: usage: {} {usage}", kind.name());
            return Ok(());
        }
        let Some(id) = self.id_arg(kind.name(), id_text) else {
            return Ok(());
        };
        let result = match kind {
            Patch::Tags => self.db.patch_tags(&id, json, etag),
            Patch::Desired => self.db.patch_desired(&id, json, etag),
            Patch::Twin => self.db.patch_twin(&id, json, etag),
            Patch::Replace => self.db.replace_twin(&id, json, etag),
            Patch::Reported => {
                if etag.is_some() {
                    note!(
                        "error: patch-reported takes no --etag (a device writes its reported properties unconditionally)"
                    );
                    return Ok(());
                }
                self.db.patch_reported(&id, json)
            }
        };
        match result {
            Ok(WriteAck { version, etag }) => out(&format!("ok: version {version}, etag {etag}")),
            Err(e) => {
                hub_error(&e);
                Ok(())
            }
        }
    }

    fn subscribe(&mut self, rest: &str) -> io::Result<()> {
        let Some(id) = self.id_arg("subscribe", rest) else {
            return Ok(());
        };
        if self.subscriptions.iter().any(|(s, _)| *s == id) {
            return out(&format!("ok: already subscribed to {id}"));
        }
        match self.db.subscribe_desired(&id) {
            Ok(rx) => {
                self.subscriptions.push((id.clone(), rx));
                out(&format!("ok: subscribed to desired updates of {id}"))
            }
            Err(e) => {
                hub_error(&e);
                Ok(())
            }
        }
    }

    fn unsubscribe(&mut self, rest: &str) -> io::Result<()> {
        let Some(id) = self.id_arg("unsubscribe", rest) else {
            return Ok(());
        };
        let before = self.subscriptions.len();
        self.subscriptions.retain(|(s, _)| *s != id);
        if self.subscriptions.len() < before {
            out(&format!("ok: unsubscribed from {id}"))
        } else {
            note!("error: not subscribed to {id}");
            Ok(())
        }
    }

    /// Prints the desired updates received since the last command; forgets subscriptions
    /// whose twin was deleted.
    fn drain_notifications(&mut self) -> io::Result<()> {
        let mut lines = Vec::new();
        self.subscriptions.retain(|(id, rx)| {
            loop {
                match rx.try_recv() {
                    Ok(u) => lines.push(format!(
                        "desired update for {id}: $version {}: {}",
                        u.version, u.patch
                    )),
                    Err(TryRecvError::Empty) => return true,
                    Err(TryRecvError::Disconnected) => {
                        note!("note: subscription to {id} ended (the twin was deleted)");
                        return false;
                    }
                }
            }
        });
        for line in lines {
            out(&line)?;
        }
        Ok(())
    }

    /// Reports corruption met in the store's segment since the last command: the documents
    /// in a corrupt part read as empty, so the output of that command is not to be trusted.
    fn report_problems(&mut self) {
        let problems = self.db.snapshot().store().problems();
        if problems.len() > self.problems_seen {
            for p in &problems[self.problems_seen..] {
                note!("error: the store is corrupt: {p}");
            }
            note!("  the output of this command may be incomplete");
            self.problems_seen = problems.len();
        }
    }

    fn count(&self, stats: bool) -> io::Result<()> {
        let snap = self.db.snapshot();
        let mut text = format!(
            "devices: {}\nmodules: {}\njobs: {}",
            snap.count(CollectionKind::Devices),
            snap.count(CollectionKind::Modules),
            snap.count(CollectionKind::Jobs)
        );
        if stats {
            text.push_str(&format!(
                "\nwrites: {}\nindexed: {}\nsubscriptions: {}\nformat: {}\nfunctions: {}",
                snap.seq(),
                if self.db.has_index() { "yes" } else { "no" },
                self.subscriptions.len(),
                format_name(self.format),
                functions_name(self.functions)
            ));
            if let Some(dir) = self.db.store_dir() {
                text.push_str(&format!(
                    "\nstore: {}, log: {} bytes",
                    dir.display(),
                    self.db.log_bytes().unwrap_or(0)
                ));
            }
        }
        out(&text)
    }

    fn compact(&self, rest: &str) -> io::Result<()> {
        if !rest.trim().is_empty() {
            note!("error: usage: compact");
            return Ok(());
        }
        if self.db.store_dir().is_none() {
            note!("error: compact needs a store: start the shell with --store DIR");
            return Ok(());
        }
        let before = self.db.log_bytes().unwrap_or(0);
        let start = Instant::now();
        match self.db.compact_store() {
            Ok(true) => out(&format!(
                "ok: compacted {before} bytes of log into a new segment in {:.2} s",
                start.elapsed().as_secs_f64()
            )),
            Ok(false) => out("ok: nothing to compact (the log is empty)"),
            Err(e) => {
                note!("error: {e}");
                Ok(())
            }
        }
    }

    fn set_format(&mut self, rest: &str) -> io::Result<()> {
        self.format = match rest.trim().to_ascii_lowercase().as_str() {
            "json" => RowFormat::Json,
            "jsonl" => RowFormat::Jsonl,
            "table" => RowFormat::Table,
            "" => return out(&format!("format: {}", format_name(self.format))),
            other => {
                note!("error: unknown format `{other}`: expected json, jsonl or table");
                return Ok(());
            }
        };
        note!("rows are printed as {}", format_name(self.format));
        Ok(())
    }

    fn set_functions(&mut self, rest: &str) -> io::Result<()> {
        self.functions = match rest.trim().to_ascii_lowercase().as_str() {
            "twin" => FunctionSet::Twin,
            "extended" => FunctionSet::Extended,
            "" => return out(&format!("functions: {}", functions_name(self.functions))),
            other => {
                note!("error: unknown function set `{other}`: expected twin or extended");
                return Ok(());
            }
        };
        note!("functions: {}", rest.trim().to_ascii_lowercase());
        Ok(())
    }
}

fn functions_name(f: FunctionSet) -> &'static str {
    match f {
        FunctionSet::Twin => "twin",
        FunctionSet::Extended => "extended",
        FunctionSet::Routing => "routing",
    }
}

fn format_name(f: RowFormat) -> &'static str {
    match f {
        RowFormat::Json => "json",
        RowFormat::Jsonl => "jsonl",
        RowFormat::Table => "table",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn etags_are_split_off_the_json() {
        assert_eq!(split_etag(r#"{"a": 1}"#), (r#"{"a": 1}"#, None));
        assert_eq!(
            split_etag(r#"{"a": 1} --etag AAAA="#),
            (r#"{"a": 1}"#, Some("AAAA="))
        );
        assert_eq!(
            split_etag(r#"--etag "AAAA=" {"a": 1}"#),
            (r#"{"a": 1}"#, Some("AAAA="))
        );
        assert_eq!(
            split_etag(r#"{"a": 1} --etag=AAAA="#),
            (r#"{"a": 1}"#, Some("AAAA="))
        );
        assert_eq!(split_etag("--etag X"), ("", Some("X")));
        assert_eq!(split_etag(""), ("", None));
        assert_eq!(
            split_etag(r#"{"a": "x --etag y"}"#),
            (r#"{"a": "x --etag y"}"#, None)
        );
    }

    #[test]
    fn ids_parse() {
        assert_eq!(parse_id("d1"), Ok(TwinId::device("d1")));
        assert_eq!(
            parse_id("d1/$edgeHub"),
            Ok(TwinId::module("d1", "$edgeHub"))
        );
        assert!(parse_id("").is_err());
        assert!(parse_id("/m").is_err());
        assert!(parse_id("d/").is_err());
        assert!(parse_id("a/b/c").is_err());
        assert!(parse_id("a b").is_err());
    }

    #[test]
    fn keywords_need_a_word_boundary() {
        assert!(starts_with_keyword("select * from devices", "select"));
        assert!(starts_with_keyword("SELECT*FROM devices", "select"));
        assert!(starts_with_keyword("select", "select"));
        assert!(!starts_with_keyword("selection", "select"));
        assert!(!starts_with_keyword("sé", "select"));
        assert_eq!(
            query_text("SELECT * FROM devices ; "),
            "SELECT * FROM devices"
        );
    }
}
