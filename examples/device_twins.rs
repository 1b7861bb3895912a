//! The Azure IoT Hub device-twin tutorial ("Get started with device twins"), replayed against
//! an in-memory [`Database`] instead of a hub.
//!
//! The tutorial has two programs talking through the hub: a back-end app that tags a device
//! and sets a desired property, then queries the twins, and a device app that reports its
//! connectivity. Here both sides call the same database, and every step prints what the hub
//! would answer:
//!
//! 1. the device identity `myDeviceId` is created, with a fresh twin (`version` 1);
//! 2. the device subscribes to desired-property updates;
//! 3. the back end reads the twin and its `etag`, then adds the tags
//!    `location = {region: 'US', plant: 'Redmond43'}` and the desired property
//!    `power_level: 1` in one `PATCH` carrying `If-Match: <etag>`;
//! 4. the back end queries the devices of plant `Redmond43` (found) and those of that plant
//!    that report a cellular connection (none yet);
//! 5. the device reports `{"connectivity": "cellular"}` and picks up the desired patch
//!    `{"power_level":1,"$version":2}` its subscription delivered;
//! 6. both queries now find the device;
//! 7. a further back-end update still carrying the etag read in step 3 is refused with
//!    `PreconditionFailed` (412), because the twin has changed since: optimistic concurrency.
//!
//! Run it with `cargo run --release --example device_twins`.

use std::error::Error;

use twinql::{Database, ErrorCode, TwinId};

/// The back end's first query: every device of the Redmond43 plant.
const IN_REDMOND43: &str = "SELECT * FROM devices WHERE tags.location.plant = 'Redmond43'";

/// The back end's second query: the Redmond43 devices that report a cellular connection.
const CELLULAR_IN_REDMOND43: &str = "SELECT * FROM devices WHERE tags.location.plant = 'Redmond43' \
     AND properties.reported.connectivity = 'cellular'";

fn main() -> Result<(), Box<dyn Error>> {
    // An empty hub: no devices, no indexes (every query scans, which is instant at this size).
    let db = Database::new();
    let id = TwinId::device("myDeviceId");

    // Step 1. Registering a device identity creates its twin: version 1, empty desired and
    // reported sections (each with `$metadata` and `$version` 1), and no `tags` member at all.
    step(1, "create the device identity `myDeviceId`");
    let created = db.create_twin(&id)?;
    println!("{}", pretty(&created)?);

    // Step 2. The device connects and registers for desired-property updates. From now on
    // every write that touches `properties.desired` is delivered to it, in order, as the
    // patch with the section's new `$version` appended.
    step(2, "the device subscribes to desired-property updates");
    let updates = db.subscribe_desired(&id)?;
    println!("subscribed");

    // Step 3. The back end reads the twin, keeps its etag, and writes tags and a desired
    // property in ONE patch, conditional on that etag: if anybody changed the twin in
    // between, the hub refuses the write instead of silently overwriting their change.
    step(
        3,
        "the back end reads the twin, then patches tags and desired under If-Match",
    );
    let twin: serde_json::Value = serde_json::from_str(&db.get_twin(&id)?)?;
    let first_etag = twin["etag"]
        .as_str()
        .ok_or("the twin has no etag")?
        .to_string();
    println!(
        "read: version {}, etag {first_etag}",
        twin["version"].as_u64().ok_or("the twin has no version")?
    );
    let patch = r#"{
        "tags": { "location": { "region": "US", "plant": "Redmond43" } },
        "properties": { "desired": { "power_level": 1 } }
    }"#;
    let ack = db.patch_twin(&id, patch, Some(&first_etag))?;
    println!(
        "patched with If-Match {first_etag}: version {}, etag {}",
        ack.version, ack.etag
    );
    let twin = db.get_twin(&id)?;
    println!("{}", pretty(&twin)?);

    // Step 4. The twin is queryable at once (the real hub is eventually consistent; this
    // engine shows every acknowledged write to the queries started after it).
    step(4, "the back end queries the twins");
    show_query(&db, IN_REDMOND43)?;
    show_query(&db, CELLULAR_IN_REDMOND43)?;

    // Step 5. The device reports its connectivity. Reported properties belong to the device:
    // the write takes no etag. The desired patch of step 3 is already waiting in the
    // device's subscription, with the desired section's `$version`.
    step(
        5,
        "the device reports its connectivity and receives the desired patch",
    );
    let ack = db.patch_reported(&id, r#"{"connectivity": "cellular"}"#)?;
    println!(
        "reported {{\"connectivity\":\"cellular\"}}: version {}, etag {}",
        ack.version, ack.etag
    );
    let update = updates.try_recv()?;
    println!(
        "desired update received: $version {}, patch {}",
        update.version, update.patch
    );

    // Step 6. Both queries now find the device.
    step(6, "the back end queries the twins again");
    show_query(&db, IN_REDMOND43)?;
    show_query(&db, CELLULAR_IN_REDMOND43)?;

    // Step 7. The back end tries another update with the etag it read in step 3. The twin
    // has moved on twice since (step 3's patch and step 5's report), so the hub answers
    // 412 PreconditionFailed and leaves the twin untouched. The cure is to read the twin
    // again and retry with its current etag.
    step(7, "a back-end update with the stale etag of step 3");
    let stale = r#"{"properties": {"desired": {"power_level": 2}}}"#;
    match db.patch_twin(&id, stale, Some(&first_etag)) {
        Err(e) if e.code == ErrorCode::PreconditionFailed => {
            println!("refused as expected: {e}");
        }
        Err(e) => return Err(format!("refused for the wrong reason: {e}").into()),
        Ok(ack) => {
            return Err(format!("a stale etag was accepted (version {})", ack.version).into());
        }
    }
    let twin: serde_json::Value = serde_json::from_str(&db.get_twin(&id)?)?;
    println!(
        "the twin is unchanged: version {}, etag {}, desired power_level {}",
        twin["version"], twin["etag"], twin["properties"]["desired"]["power_level"]
    );
    if let Ok(extra) = updates.try_recv() {
        return Err(format!("the refused write notified the device: {}", extra.patch).into());
    }
    println!("and the device received nothing");
    Ok(())
}

/// Prints a step heading.
fn step(n: u32, what: &str) {
    println!("\n== Step {n}: {what}");
}

/// Runs `query` to the end and prints the matching device ids.
fn show_query(db: &Database, query: &str) -> Result<(), Box<dyn Error>> {
    let rows = db.query_all(query)?;
    let mut ids = Vec::with_capacity(rows.len());
    for row in &rows {
        let v: serde_json::Value = serde_json::from_str(row)?;
        ids.push(v["deviceId"].as_str().unwrap_or("?").to_string());
    }
    println!("{query}\n  -> {} row(s): {ids:?}", rows.len());
    Ok(())
}

/// A JSON text re-indented for reading.
fn pretty(json: &str) -> Result<String, Box<dyn Error>> {
    let v: serde_json::Value = serde_json::from_str(json)?;
    Ok(serde_json::to_string_pretty(&v)?)
}
