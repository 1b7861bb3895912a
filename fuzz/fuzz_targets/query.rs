//! Runs a query over arbitrary twins: the first line of the input is the query, the rest is
//! loaded as JSON Lines (invalid lines skipped). Nothing may panic; the indexed plan, the plan
//! without indexes (columns of the filter's paths), the full scan and the paged API must
//! return the same rows.

#![no_main]

use libfuzzer_sys::fuzz_target;
use twinql::db::Access;
use twinql::{Database, QueryOptions};
use twinql_planner::functions::FunctionSet;
use twinql_store::index::IndexPolicy;
use twinql_store::{LoadOptions, Store};

fuzz_target!(|data: &[u8]| {
    let Some(split) = data.iter().position(|&b| b == b'\n') else {
        return;
    };
    let Ok(query) = std::str::from_utf8(&data[..split]) else {
        return;
    };
    let opts = LoadOptions {
        skip_invalid: true,
        progress: false,
        ..LoadOptions::default()
    };
    let load = || {
        let mut store = Store::new();
        store.load_bytes("fuzz", &data[split + 1..], &opts).ok()?;
        Some(store)
    };
    let (Some(store), Some(unindexed)) = (load(), load()) else {
        return;
    };
    let mut db = Database::from_store(store);
    db.build_index(&IndexPolicy::default());
    let Ok(plan) = db.plan(query, FunctionSet::Extended) else {
        return;
    };
    let access = db.access(&plan);
    let indexed = db.run_access(&plan, &access, true);
    let scanned = db.run_access(&plan, &Access::FullScan, false);
    assert_eq!(indexed, scanned, "index and scan disagree on {query:?}");
    assert_eq!(db.count_plan(&plan, true), scanned.len() as u64);
    let plain = Database::from_store(unindexed);
    if let Ok(plan) = plain.plan(query, FunctionSet::Extended) {
        let access = plain.access(&plan);
        let columns = plain.run_access(&plan, &access, true);
        assert_eq!(
            columns,
            scanned,
            "{} and scan disagree on {query:?}",
            access.name()
        );
        assert_eq!(plain.count_plan(&plan, true), scanned.len() as u64);
    }
    let mut page_opts = QueryOptions {
        page_size: 3,
        functions: FunctionSet::Extended,
        ..QueryOptions::default()
    };
    let mut paged = Vec::new();
    for _ in 0..scanned.len() + 2 {
        let Ok(page) = db.query(query, &page_opts) else {
            return;
        };
        paged.extend(page.items);
        match page.continuation {
            Some(t) => page_opts.continuation = Some(t),
            None => break,
        }
    }
    assert_eq!(
        paged, scanned,
        "pages differ from the whole result for {query:?}"
    );
});
