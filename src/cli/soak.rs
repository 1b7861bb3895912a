//! `twinql soak`: writes to a durable store without end, printing an acknowledgement line per
//! write, for crash testing (kill it at any moment and check the store).

use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;

use clap::Args;

use crate::durable::StoreOptions;
use crate::wal::SyncPolicy;
use crate::{Database, TwinId};

/// Options of `twinql soak`.
#[derive(Debug, Args)]
pub struct SoakArgs {
    /// The store directory (created if missing).
    #[arg(long, value_name = "DIR")]
    pub store: PathBuf,
    /// Devices each writer thread keeps patching.
    #[arg(long, default_value_t = 20)]
    pub devices: u32,
    /// Writer threads (each owns its devices, so each device's writes are ordered).
    #[arg(long, default_value_t = 2)]
    pub threads: u32,
    /// Writes per thread before stopping (0: until killed).
    #[arg(long, default_value_t = 0)]
    pub writes: u64,
    /// Sync policy: every-write, group, interval:50ms.
    #[arg(long, default_value = "group")]
    pub sync: String,
    /// Compact once the log holds this many bytes.
    #[arg(long, default_value_t = 1 << 20)]
    pub compact_bytes: u64,
}

/// Writes until killed; every acknowledged write prints
/// `ack <device> <n> <version>` (reported patch `n` of that device) or `created <device>` /
/// `deleted <device>`.
pub fn run_soak(args: SoakArgs) -> i32 {
    let sync = match SyncPolicy::parse(&args.sync) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("error: --sync: {e}");
            return 2;
        }
    };
    let db = match Database::open_with(
        &args.store,
        StoreOptions {
            sync,
            compact_log_bytes: args.compact_bytes,
            ..StoreOptions::default()
        },
    ) {
        Ok(db) => db,
        Err(e) => {
            eprintln!("error: {e}");
            return 2;
        }
    };
    let out = Arc::new(std::sync::Mutex::new(std::io::stdout()));
    let say = |out: &std::sync::Mutex<std::io::Stdout>, line: String| {
        if let Ok(mut o) = out.lock() {
            let _ = writeln!(o, "{line}");
            let _ = o.flush();
        }
    };
    say(&out, "ready".into());
    let threads: Vec<_> = (0..args.threads)
        .map(|t| {
            let db = db.clone();
            let out = out.clone();
            let devices = args.devices;
            let limit = args.writes;
            std::thread::spawn(move || -> Result<(), String> {
                let mut rng =
                    0x9e37_79b9_7f4a_7c15u64 ^ (u64::from(t) << 32) ^ u64::from(std::process::id());
                let mut next = || {
                    rng ^= rng << 13;
                    rng ^= rng >> 7;
                    rng ^= rng << 17;
                    rng
                };
                let mut done = 0u64;
                while limit == 0 || done < limit {
                    done += 1;
                    let r = next();
                    let dev = format!("t{t}-d{}", r % u64::from(devices));
                    let id = TwinId::device(&dev);
                    if r % 97 == 0 {
                        // Delete and recreate: the twin starts over at version 1.
                        say(&out, format!("deleting {dev}"));
                        match db.delete_twin(&id, None) {
                            Ok(()) => say(&out, format!("deleted {dev}")),
                            Err(e) if e.code == crate::ErrorCode::DeviceNotFound => {}
                            Err(e) => return Err(e.to_string()),
                        }
                        continue;
                    }
                    let current = match db.get_twin(&id) {
                        Ok(t) => t,
                        Err(_) => {
                            say(&out, format!("creating {dev}"));
                            db.create_twin(&id).map_err(|e| e.to_string())?;
                            say(&out, format!("created {dev}"));
                            continue;
                        }
                    };
                    let v: serde_json::Value =
                        serde_json::from_str(&current).map_err(|e| e.to_string())?;
                    let n = v["properties"]["reported"]["n"].as_u64().unwrap_or(0) + 1;
                    let patch = format!(
                        r#"{{"n":{n},"plant":"p{}","pad":"{}"}}"#,
                        r % 7,
                        "x".repeat((r % 200) as usize)
                    );
                    let ack = db.patch_reported(&id, &patch).map_err(|e| e.to_string())?;
                    say(&out, format!("ack {dev} {n} {}", ack.version));
                }
                Ok(())
            })
        })
        .collect();
    let mut code = 0;
    for t in threads {
        match t.join() {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                eprintln!("error: {e}");
                code = 1;
            }
            Err(_) => code = 1,
        }
    }
    code
}
