//! The store-wide key dictionary: every member name seen, with a dense `u32` id.

use std::collections::HashMap;
/// The hasher of the store's maps: FxHash (the `rustc-hash` crate), fast for short keys.
/// Inputs are member names and ids from the loaded data; a crafted input can only make loading
/// slower, never wrong.
pub(crate) type FxBuild = rustc_hash::FxBuildHasher;

/// Names every twin write reads and writes: their ids are kept as they are interned, so a
/// write finds them without hashing.
pub(crate) const KNOWN: [&str; 7] = [
    "version",
    "etag",
    "properties",
    "reported",
    "$metadata",
    "$version",
    "$lastUpdated",
];

/// Member names of a store. Ids are dense and never reused; `folded` maps a lower-cased name
/// to every id with that folding, in id order.
#[derive(Debug, Default)]
pub(crate) struct KeyDict {
    names: Vec<Box<str>>,
    /// `"name":` with JSON escaping, ready to copy into output.
    json_names: Vec<Box<[u8]>>,
    /// `,"name":` padded to 32 bytes with its length in the last byte when it fits in 31
    /// (else that byte is 0xFF): output copies it whole, with no call for a short copy.
    json_short: Vec<[u8; 32]>,
    exact: HashMap<Box<str>, u32, FxBuild>,
    folded: HashMap<Box<str>, Vec<u32>, FxBuild>,
    /// The ids of the [`KNOWN`] names, once interned.
    known: [Option<u32>; KNOWN.len()],
}

impl KeyDict {
    /// The id of `name`, adding it if new.
    pub(crate) fn intern(&mut self, name: &str) -> u32 {
        if let Some(&id) = self.exact.get(name) {
            return id;
        }
        let id = self.names.len() as u32;
        self.names.push(name.into());
        let mut json = Vec::with_capacity(name.len() + 3);
        twinql_planner::value::write_json_bytes(name.as_bytes(), &mut json);
        json.push(b':');
        let mut short = [0u8; 32];
        short[31] = match short.get_mut(1..json.len() + 1) {
            Some(head) if json.len() < 31 => {
                head.copy_from_slice(&json);
                json.len() as u8 + 1
            }
            _ => 0xFF,
        };
        short[0] = b',';
        self.json_short.push(short);
        self.json_names.push(json.into_boxed_slice());
        self.exact.insert(name.into(), id);
        if let Some(i) = KNOWN.iter().position(|k| *k == name) {
            self.known[i] = Some(id);
        }
        self.folded
            .entry(name.to_lowercase().into_boxed_str())
            .or_default()
            .push(id);
        id
    }

    /// The id of `name`, if known.
    pub(crate) fn get(&self, name: &str) -> Option<u32> {
        self.exact.get(name).copied()
    }

    /// The id of `KNOWN[i]`, if interned.
    #[inline]
    pub(crate) fn known(&self, i: usize) -> Option<u32> {
        self.known.get(i).copied().flatten()
    }

    /// Ids of every name equal to `folded` (a lower-cased name) ignoring case.
    pub(crate) fn folded(&self, folded: &str) -> &[u32] {
        self.folded
            .get(folded)
            .map(Vec::as_slice)
            .unwrap_or_default()
    }

    /// The name with id `id` (empty for an unknown id).
    #[inline]
    pub(crate) fn name(&self, id: u32) -> &str {
        self.names
            .get(id as usize)
            .map(|s| &**s)
            .unwrap_or_default()
    }

    /// `"name":` for id `id`.
    #[inline]
    pub(crate) fn json_name(&self, id: u32) -> &[u8] {
        self.json_names
            .get(id as usize)
            .map(|s| &**s)
            .unwrap_or(b"\"\":")
    }

    /// Appends `,"name":` for id `id` to `out`.
    #[inline]
    pub(crate) fn write_json_name_after_comma(&self, id: u32, out: &mut Vec<u8>) {
        match self.json_short.get(id as usize) {
            Some(short) if short[31] < 32 => {
                let len = out.len() + usize::from(short[31]);
                out.extend_from_slice(short);
                out.truncate(len);
            }
            _ => {
                out.push(b',');
                out.extend_from_slice(self.json_name(id));
            }
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.names.len()
    }

    /// Approximate heap bytes held.
    pub(crate) fn heap_bytes(&self) -> usize {
        let names: usize = self.names.iter().map(|n| n.len()).sum();
        let json: usize = self.json_names.iter().map(|n| n.len()).sum();
        let folded: usize = self
            .folded
            .iter()
            .map(|(k, v)| k.len() + v.len() * 4 + 24)
            .sum();
        // names, exact-map keys, JSON names, folded names; plus table slots.
        names * 2 + json + folded + self.names.len() * (16 + 16 + 24 + 8)
    }
}
