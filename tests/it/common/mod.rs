//! Helpers shared by the test modules: query strategies for the differential tests, and
//! running the binary ([`cli`]).

#![allow(dead_code)]

pub mod cli;

use proptest::prelude::*;
use twinql::Database;
use twinql_store::index::IndexPolicy;
use twinql_store::{LoadOptions, Store};

/// A database of `bytes` (JSON Lines of twins) with the default indexes.
pub fn indexed_db(bytes: &[u8]) -> Database {
    let mut store = Store::new();
    store
        .load_bytes("generated", bytes, &LoadOptions::default())
        .expect("generated twins load");
    let mut db = Database::from_store(store);
    db.build_index(&IndexPolicy::default());
    db
}

pub fn path() -> impl Strategy<Value = &'static str> {
    prop::sample::select(vec![
        "tags.location.region",
        "tags.location.plant",
        "tags.Location.Region",
        "tags.Environment",
        "tags.location",
        "tags.environment",
        "tags.floor",
        "tags.maintenanceWindow",
        "properties.reported.temperature",
        "properties.reported.battery",
        "properties.reported.connectivity.type",
        "properties.reported.telemetryConfig.status",
        "properties.desired.telemetryConfig.sendFrequencyInSecs",
        "properties.reported.$metadata.$lastUpdated",
        "status",
        "connectionState",
        "deviceId",
        "devices.deviceId",
        "capabilities.iotEdge",
        "version",
        "nothing.here",
    ])
}

pub fn literal() -> impl Strategy<Value = String> {
    prop_oneof![
        prop::sample::select(vec![
            "'EU'",
            "'US'",
            "'Redmond43'",
            "'production'",
            "'enabled'",
            "'Connected'",
            "'Error'",
            "'cellular'",
            "'sensor-1'",
            "'31'",
            "''",
            "'zzz'",
        ])
        .prop_map(str::to_string),
        (-5i64..120).prop_map(|n| n.to_string()),
        prop::sample::select(vec!["25.5", "30", "1e1", "0x10", "-0"]).prop_map(str::to_string),
        prop::sample::select(vec!["true", "false", "null", "undefined"]).prop_map(str::to_string),
    ]
}

pub fn atom() -> impl Strategy<Value = String> {
    let ops = prop::sample::select(vec!["=", "!=", "<>", "<", "<=", ">", ">="]);
    prop_oneof![
        4 => (path(), ops.clone(), literal()).prop_map(|(p, o, l)| format!("{p} {o} {l}")),
        1 => (literal(), ops, path()).prop_map(|(l, o, p)| format!("{l} {o} {p}")),
        1 => (path(), prop::collection::vec(literal(), 0..4), any::<bool>()).prop_map(
            |(p, items, neg)| format!("{p} {} [{}]", if neg { "NIN" } else { "IN" }, items.join(", "))
        ),
        1 => path().prop_map(|p| format!("IS_DEFINED({p})")),
        1 => (prop::sample::select(vec!["IS_STRING", "IS_NUMBER", "IS_BOOL", "IS_NULL", "IS_OBJECT", "IS_PRIMITIVE"]), path())
            .prop_map(|(f, p)| format!("{f}({p})")),
        1 => (path(), prop::sample::select(vec!["'sensor-1'", "'Red'", "'E'", "''", "'meter'"]))
            .prop_map(|(p, s)| format!("STARTSWITH({p}, {s})")),
        1 => (path(), prop::sample::select(vec!["'1'", "'s'"]))
            .prop_map(|(p, s)| format!("ENDSWITH({p}, {s})")),
        1 => (path(), path()).prop_map(|(a, b)| format!("{a} = {b}")),
        1 => path().prop_map(|p| format!("{p} + 1 > 30")),
        1 => path().prop_map(str::to_string),
    ]
}

pub fn condition() -> impl Strategy<Value = String> {
    atom().prop_recursive(3, 12, 3, |inner| {
        prop_oneof![
            inner.clone().prop_map(|c| format!("NOT ({c})")),
            (inner.clone(), inner.clone()).prop_map(|(a, b)| format!("({a}) AND ({b})")),
            (inner.clone(), inner).prop_map(|(a, b)| format!("({a}) OR ({b})")),
        ]
    })
}

pub fn query() -> impl Strategy<Value = String> {
    let select = prop_oneof![
        Just("SELECT *".to_string()),
        Just("SELECT deviceId, tags.location.plant AS plant".to_string()),
        Just("SELECT COUNT() AS n".to_string()),
        (1u32..50).prop_map(|n| format!("SELECT TOP {n} deviceId")),
    ];
    let grouped = prop::sample::select(vec![
        "tags.location.region",
        "properties.reported.telemetryConfig.status",
        "tags.environment",
        "capabilities.iotEdge",
        "nothing.here",
    ]);
    prop_oneof![
        3 => (select, condition()).prop_map(|(s, c)| format!("{s} FROM devices WHERE {c}")),
        1 => (grouped, condition()).prop_map(|(g, c)| {
            format!("SELECT {g} AS k, COUNT() AS n, MAX(properties.reported.battery) AS b FROM devices WHERE {c} GROUP BY {g}")
        }),
        1 => condition().prop_map(|c| format!("SELECT * FROM devices.modules WHERE {c}")),
    ]
}
