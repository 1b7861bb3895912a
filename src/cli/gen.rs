//! `twinql gen`: write deterministic synthetic twins as JSON Lines.
//!
//! Exit status: 0 on success (also when the reader of stdout goes away early, as with
//! `twinql gen --count 1000000 | head`), 2 for I/O errors.

use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::path::PathBuf;

use clap::Args;

use crate::r#gen::{GenOptions, write_jsonl};

/// Arguments of `twinql gen`.
#[derive(Debug, Args)]
pub struct GenArgs {
    /// Number of device twins.
    #[arg(long, short = 'n')]
    pub count: u64,
    /// Seed; the same seed always produces the same bytes.
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// Module twins per device (0–50), written after all device twins; edge devices get
    /// `$edgeAgent` and `$edgeHub` first.
    #[arg(long, default_value_t = 0, value_parser = clap::value_parser!(u32).range(0..=50))]
    pub modules: u32,
    /// Give some device twins a `jobs` array of per-device job records.
    #[arg(long)]
    pub jobs: bool,
    /// Write to FILE (written whole, then renamed into place) instead of stdout.
    #[arg(long, short = 'o', value_name = "FILE")]
    pub output: Option<PathBuf>,
}

/// Runs `twinql gen`; returns the process exit status.
pub fn run_gen(args: GenArgs) -> i32 {
    let opts = GenOptions {
        count: args.count,
        seed: args.seed,
        modules: args.modules,
        jobs: args.jobs,
    };
    let result = match &args.output {
        Some(path) => to_file(&opts, path),
        None => {
            let mut out = BufWriter::with_capacity(1 << 20, io::stdout().lock());
            write_jsonl(&opts, &mut out).and_then(|_| out.flush())
        }
    };
    match result {
        Ok(()) => 0,
        Err(e) if e.kind() == io::ErrorKind::BrokenPipe => 0,
        Err(e) => {
            eprintln!("error: {e}");
            2
        }
    }
}

fn to_file(opts: &GenOptions, path: &PathBuf) -> io::Result<()> {
    let mut tmp = path.clone().into_os_string();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    let write = || -> io::Result<()> {
        let mut out = BufWriter::with_capacity(1 << 20, File::create(&tmp)?);
        write_jsonl(opts, &mut out)?;
        out.into_inner().map_err(|e| e.into_error())?.sync_all()?;
        std::fs::rename(&tmp, path)
    };
    let result = write();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}
