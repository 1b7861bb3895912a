//! Running the real `twinql` binary from the CLI tests.

use std::io::Write;
use std::process::{Command, Output, Stdio};

/// The binary under test.
pub const BIN: &str = env!("CARGO_BIN_EXE_twinql");
/// The fixture of twins the CLI tests run over.
pub const TWINS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/twins.jsonl");

/// Runs the binary in the package root with `args`.
pub fn run<S: AsRef<std::ffi::OsStr>>(args: &[S]) -> Output {
    Command::new(BIN)
        .args(args)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("run twinql")
}

/// Runs `twinql shell ARGS` with `script` on stdin.
pub fn shell(args: &[&str], script: &str) -> Output {
    let mut child = Command::new(BIN)
        .arg("shell")
        .args(args)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run twinql shell");
    let mut stdin = child.stdin.take().expect("stdin");
    // The shell may stop reading early (`exit`); a broken pipe is fine then.
    let _ = stdin.write_all(script.as_bytes());
    drop(stdin);
    child.wait_with_output().expect("wait for twinql shell")
}

/// Standard output as text.
pub fn out(o: &Output) -> String {
    String::from_utf8(o.stdout.clone()).expect("UTF-8 stdout")
}

/// Standard error as text.
pub fn err(o: &Output) -> String {
    String::from_utf8(o.stderr.clone()).expect("UTF-8 stderr")
}
