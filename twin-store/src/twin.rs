//! IoT Hub twin write rules, as pure functions.
//!
//! [`new_twin`] builds the twin IoT Hub creates with a device or module identity, and
//! [`apply`] performs one write on a twin — a back-end patch or replacement, or a device's
//! reported-property patch — the way the service does (spec §4.3–§4.4):
//!
//! * merge-patch semantics (RFC 7386): objects merge recursively, `null` deletes a key, any
//!   other value replaces;
//! * the twin `version` and `etag` move on with every write, and each written section
//!   (`properties.desired`, `properties.reported`) gets its `$version` bumped;
//! * `$metadata` mirrors the section tree and dates every key the write set;
//! * the content limits (key characters and length, string length, integer range, depth,
//!   section size) are checked before anything is returned, and a refused write returns a
//!   [`HubError`] in IoT Hub's terms, naming the rule and the offending key path.
//!
//! ```
//! use twinql_store::Doc;
//! use twinql_store::twin::{Update, apply, new_twin};
//!
//! let now = "2026-11-27T05:59:35.1234567Z";
//! let twin = new_twin("dev1", None, now)?;
//! let patch = Doc::parse(r#"{"fan":{"speed":3}}"#).unwrap();
//! let done = apply(&twin, &Update::PatchDesired(&patch), Some("*"), now)?;
//! assert_eq!(done.twin.get_path(&["version"]).and_then(Doc::as_number), Some(2.0));
//! assert_eq!(
//!     done.desired_notification.unwrap().to_json_string(),
//!     r#"{"fan":{"speed":3},"$version":2}"#
//! );
//! # Ok::<(), twinql_store::twin::HubError>(())
//! ```

use std::fmt;

use base64::Engine as _;

use twinql_planner::value::{Kind, Node};

use crate::dict::KeyDict;
use crate::doc::{Doc, Number, Object};
use crate::packed::{self, NameKey, Packed, PackedRef};
use crate::store::Store;

/// Maximum size of `tags`, by [`section_size`] (8 KB).
pub const MAX_TAGS_BYTES: usize = 8 * 1024;
/// Maximum size of `properties.desired`, by [`section_size`] (32 KB).
pub const MAX_DESIRED_BYTES: usize = 32 * 1024;
/// Maximum size of `properties.reported`, by [`section_size`] (32 KB).
pub const MAX_REPORTED_BYTES: usize = 32 * 1024;
/// Maximum nesting below a section root: a value may sit at most this many levels down
/// (`desired.a1.a2…a10` is fine, `desired.a1…a11` is not). Array elements count as a level.
pub const MAX_DEPTH: usize = 10;
/// Maximum length of a property name, in UTF-8 bytes.
pub const MAX_KEY_BYTES: usize = 1024;
/// Maximum length of a string value, in UTF-8 bytes.
pub const MAX_STRING_BYTES: usize = 4 * 1024;
/// Largest integer a twin may hold (2^52 − 1).
pub const MAX_SAFE_INTEGER: i64 = 4_503_599_627_370_495;
/// Smallest integer a twin may hold (−2^52).
pub const MIN_SAFE_INTEGER: i64 = -4_503_599_627_370_496;
/// Maximum length of a device or module id, in characters.
pub const MAX_ID_CHARS: usize = 128;

/// The default of the twin's date members, as IoT Hub writes it.
const DEFAULT_TIME: &str = "0001-01-01T00:00:00Z";
const METADATA: &str = "$metadata";
const VERSION: &str = "$version";
const LAST_UPDATED: &str = "$lastUpdated";
const LAST_UPDATED_VERSION: &str = "$lastUpdatedVersion";

/// IoT Hub error codes (spec §9): name and numeric code.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ErrorCode {
    /// 400004: a malformed or out-of-limits argument (a refused patch, a bad id).
    ArgumentInvalid,
    /// 400005: a required argument is missing.
    ArgumentNull,
    /// 412001: the `If-Match` etag is not the current one.
    PreconditionFailed,
    /// 404001: no such device.
    DeviceNotFound,
    /// 404010: no such module.
    ModuleNotFound,
    /// 409001: the device already exists.
    DeviceAlreadyExists,
    /// 409301: the module already exists.
    ModuleAlreadyExists,
    /// 500001: the write could not be made durable (the store's log could not be written).
    ServerError,
}

impl ErrorCode {
    /// The name, as in the `iothub-errorcode` header (`ArgumentInvalid`).
    pub fn name(self) -> &'static str {
        match self {
            ErrorCode::ArgumentInvalid => "ArgumentInvalid",
            ErrorCode::ArgumentNull => "ArgumentNull",
            ErrorCode::PreconditionFailed => "PreconditionFailed",
            ErrorCode::DeviceNotFound => "DeviceNotFound",
            ErrorCode::ModuleNotFound => "ModuleNotFound",
            ErrorCode::DeviceAlreadyExists => "DeviceAlreadyExists",
            ErrorCode::ModuleAlreadyExists => "ModuleAlreadyExists",
            ErrorCode::ServerError => "ServerError",
        }
    }

    /// The numeric code: the HTTP status followed by three digits (`400004`).
    pub fn code(self) -> u32 {
        match self {
            ErrorCode::ArgumentInvalid => 400_004,
            ErrorCode::ArgumentNull => 400_005,
            ErrorCode::PreconditionFailed => 412_001,
            ErrorCode::DeviceNotFound => 404_001,
            ErrorCode::ModuleNotFound => 404_010,
            ErrorCode::DeviceAlreadyExists => 409_001,
            ErrorCode::ModuleAlreadyExists => 409_301,
            ErrorCode::ServerError => 500_001,
        }
    }

    /// The HTTP status the service answers with (the code's first three digits).
    pub fn http_status(self) -> u16 {
        // Every code is below 1,000,000, so the quotient fits.
        u16::try_from(self.code() / 1000).unwrap_or(500)
    }
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A refused write, in IoT Hub's terms. Display: `"{Name} ({code}): {message}"`.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{} ({}): {}", .code.name(), .code.code(), .message)]
pub struct HubError {
    /// What kind of refusal.
    pub code: ErrorCode,
    /// What was wrong, naming the rule and the key path.
    pub message: String,
}

impl HubError {
    /// An error with a code and a message.
    pub fn new(code: ErrorCode, message: impl Into<String>) -> HubError {
        HubError {
            code,
            message: message.into(),
        }
    }

    fn invalid(message: impl Into<String>) -> HubError {
        HubError::new(ErrorCode::ArgumentInvalid, message)
    }
}

/// The current time as IoT Hub writes it: ISO-8601 UTC with 7 fractional digits, e.g.
/// `2026-11-27T05:59:35.1234567Z`.
pub fn timestamp_now() -> String {
    format_timestamp(chrono::Utc::now())
}

/// `t` as [`timestamp_now`] writes it (every write dates itself: no formatting machinery).
fn format_timestamp(t: chrono::DateTime<chrono::Utc>) -> String {
    use chrono::{Datelike, Timelike};
    fn digits(b: &mut [u8], at: usize, width: usize, mut v: u32) {
        for slot in b[at..at + width].iter_mut().rev() {
            *slot = b'0' + (v % 10) as u8;
            v /= 10;
        }
    }
    let mut b = *b"0000-00-00T00:00:00.0000000Z";
    digits(&mut b, 0, 4, t.year().clamp(0, 9999) as u32);
    digits(&mut b, 5, 2, t.month());
    digits(&mut b, 8, 2, t.day());
    digits(&mut b, 11, 2, t.hour());
    digits(&mut b, 14, 2, t.minute());
    digits(&mut b, 17, 2, t.second());
    // A leap second shows as nanoseconds ≥ 10^9; keep the text well formed.
    digits(&mut b, 20, 7, t.nanosecond().min(999_999_999) / 100);
    b.iter().map(|&c| char::from(c)).collect()
}

/// The etag of twin version `v`: base64 of the 8-byte big-endian integer, so version 7 is
/// `"AAAAAAAAAAc="` (the spec's sample).
pub fn etag_for_version(v: u64) -> String {
    base64::engine::general_purpose::STANDARD.encode(v.to_be_bytes())
}

/// Whether `c` may appear in a device or module id (spec §4.1).
fn is_id_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || "-:.+%_#*?!(),=@;$'".contains(c)
}

/// Checks a device or module id: 1..=128 characters, ASCII alphanumerics plus
/// `- : . + % _ # * ? ! ( ) , = @ ; $ '` (spec §4.1). `ArgumentInvalid` otherwise.
pub fn check_identity_id(id: &str) -> Result<(), HubError> {
    if id.is_empty() {
        return Err(HubError::invalid("the id is empty"));
    }
    let chars = id.chars().count();
    if chars > MAX_ID_CHARS {
        return Err(HubError::invalid(format!(
            "the id is {chars} characters long; at most {MAX_ID_CHARS} are allowed"
        )));
    }
    if let Some(c) = id.chars().find(|&c| !is_id_char(c)) {
        return Err(HubError::invalid(format!(
            "the id {id:?} contains {c:?}; ids may hold ASCII letters, digits and \
             - : . + % _ # * ? ! ( ) , = @ ; $ '"
        )));
    }
    Ok(())
}

fn string(s: &str) -> Doc {
    Doc::String(s.into())
}

fn number(v: u64) -> Doc {
    // Versions stay far below 2^53, where the conversion is exact.
    Doc::Number(Number::new(v as f64))
}

/// An empty section as a new twin has it: `{"$metadata":{"$lastUpdated":now},"$version":1}`.
fn empty_section(now: &str) -> Doc {
    let mut meta = Object::new();
    meta.insert(LAST_UPDATED, string(now));
    let mut s = Object::new();
    s.insert(METADATA, Doc::Object(meta));
    s.insert(VERSION, number(1));
    Doc::Object(s)
}

/// A fresh twin for a new device (`module_id` `None`) or module identity (spec §4.1–4.2).
///
/// Members in order (spec §4.1): `deviceId`, `moduleId` (modules), `etag` (version 1),
/// `deviceEtag`, `status` `"enabled"`, `statusUpdateTime`, `connectionState`
/// `"Disconnected"`, `lastActivityTime`, `cloudToDeviceMessageCount` 0, `authenticationType`
/// `"sas"`, `x509Thumbprint` (both null), `modelId` `""`, `version` 1 (tags, when added, go
/// right after it), `properties` (empty `desired` and `reported`,
/// each with `$metadata.$lastUpdated` = `now` and `$version` 1), and for devices only
/// `capabilities` `{"iotEdge":false}`. There is no `tags` member (it is omitted when empty).
/// The ids are checked with [`check_identity_id`].
pub fn new_twin(device_id: &str, module_id: Option<&str>, now: &str) -> Result<Doc, HubError> {
    check_identity_id(device_id)?;
    if let Some(m) = module_id {
        check_identity_id(m)?;
    }
    let etag = etag_for_version(1);
    let mut t = Object::new();
    t.insert("deviceId", string(device_id));
    if let Some(m) = module_id {
        t.insert("moduleId", string(m));
    }
    t.insert("etag", string(&etag));
    t.insert("deviceEtag", string(&etag));
    t.insert("status", string("enabled"));
    t.insert("statusUpdateTime", string(DEFAULT_TIME));
    t.insert("connectionState", string("Disconnected"));
    t.insert("lastActivityTime", string(DEFAULT_TIME));
    t.insert("cloudToDeviceMessageCount", number(0));
    t.insert("authenticationType", string("sas"));
    let mut x509 = Object::new();
    x509.insert("primaryThumbprint", Doc::Null);
    x509.insert("secondaryThumbprint", Doc::Null);
    t.insert("x509Thumbprint", Doc::Object(x509));
    t.insert("modelId", string(""));
    t.insert("version", number(1));
    let mut props = Object::new();
    props.insert("desired", empty_section(now));
    props.insert("reported", empty_section(now));
    t.insert("properties", Doc::Object(props));
    if module_id.is_none() {
        let mut caps = Object::new();
        caps.insert("iotEdge", Doc::Bool(false));
        t.insert("capabilities", Doc::Object(caps));
    }
    Ok(Doc::Object(t))
}

/// What a write does.
#[derive(Clone, Copy, Debug)]
pub enum Update<'a> {
    /// Back end, PATCH twin: a JSON merge patch (RFC 7386) whose top level may hold only
    /// `tags` (object or null) and `properties` holding only `desired` (object or null).
    /// `null` deletes a key; `tags: null` / `desired: null` delete every tag / desired
    /// property. Any other member is refused with `ArgumentInvalid`, and so is
    /// `properties.reported` (reported properties are written by the device).
    PatchTwin(&'a Doc),
    /// Back end, PUT/replace: tags and desired are replaced wholesale by the given document's
    /// `tags` and `properties.desired` (a missing or null one becomes empty). Other members
    /// (`deviceId`, `etag`, `properties.reported`, …) and the read-only `$metadata` /
    /// `$version` of the given desired are ignored, so a twin read back can be sent as is.
    /// Nulls are not allowed as member values inside (`ArgumentInvalid`).
    ReplaceTwin(&'a Doc),
    /// Back end: merge patch of tags only (the body is the tags patch object itself).
    PatchTags(&'a Doc),
    /// Back end: merge patch of `properties.desired` only (the body is the desired patch
    /// object itself).
    PatchDesired(&'a Doc),
    /// Device: merge patch of `properties.reported` (the body is the reported patch object
    /// itself).
    PatchReported(&'a Doc),
}

/// The outcome of a successful write.
#[derive(Clone, Debug, PartialEq)]
pub struct Applied {
    /// The twin after the write.
    pub twin: Doc,
    /// The desired-property patch to deliver to the device, with its `"$version"` member
    /// appended (as IoT Hub sends it), whenever the write targeted the desired section.
    /// For a patch it is the patch as given (nulls included, so the device deletes too);
    /// for `desired: null` it is a null for every deleted key; for
    /// [`ReplaceTwin`](Update::ReplaceTwin) it is the whole new desired section (without
    /// `$metadata`).
    pub desired_notification: Option<Doc>,
}

/// How one section is written.
#[derive(Clone, Copy)]
enum Write<'a> {
    /// Merge patch.
    Merge(&'a Object),
    /// `null` for the whole section: every user key is deleted.
    Delete,
    /// Replaced by these members (read-only `$` members at the root skipped), or by nothing.
    Replace(Option<&'a Object>),
}

/// What a validated update writes, per section.
#[derive(Default)]
struct Plan<'a> {
    tags: Option<Write<'a>>,
    desired: Option<Write<'a>>,
    reported: Option<Write<'a>>,
}

const TAGS: &str = "tags";
const DESIRED: &str = "properties.desired";
const REPORTED: &str = "properties.reported";

/// One step of a key path, for error messages.
#[derive(Clone, Copy)]
enum Seg<'a> {
    Key(&'a str),
    Index(usize),
}

/// Walks a patch or replacement body and checks the content rules of spec §4.4. The path is
/// kept as borrowed segments and rendered only when something is refused.
struct Validator<'a> {
    section: &'static str,
    segs: Vec<Seg<'a>>,
    /// Whether `null` member values are allowed (a patch: they delete).
    nulls: bool,
    /// Whether the read-only `$metadata` / `$version` members at the root are skipped.
    skip_read_only: bool,
}

/// Renders at most this many characters of one key in an error path.
const KEY_SHOWN: usize = 64;

impl<'a> Validator<'a> {
    fn check(
        section: &'static str,
        o: &'a Object,
        nulls: bool,
        skip_read_only: bool,
    ) -> Result<(), HubError> {
        let mut v = Validator {
            section,
            segs: Vec::with_capacity(MAX_DEPTH + 1),
            nulls,
            skip_read_only,
        };
        v.object(o, 0, false)
    }

    fn path(&self) -> String {
        let mut p = String::from(self.section);
        for s in &self.segs {
            match s {
                Seg::Key(k) => {
                    p.push('.');
                    match k.char_indices().nth(KEY_SHOWN) {
                        Some((cut, _)) => {
                            p.push_str(&k[..cut]);
                            p.push('…');
                        }
                        None => p.push_str(k),
                    }
                }
                Seg::Index(i) => {
                    p.push('[');
                    p.push_str(&i.to_string());
                    p.push(']');
                }
            }
        }
        p
    }

    fn refuse(&self, rule: &str, detail: impl fmt::Display) -> HubError {
        HubError::invalid(format!(
            "'{rule}' rule violated at '{}': {detail}",
            self.path()
        ))
    }

    /// The members of `o`, an object at `level` (the section root is level 0).
    fn object(&mut self, o: &'a Object, level: usize, in_array: bool) -> Result<(), HubError> {
        for (k, v) in o.iter() {
            if level == 0 && self.skip_read_only && (k == METADATA || k == VERSION) {
                continue;
            }
            self.segs.push(Seg::Key(k));
            self.key(k)?;
            if matches!(v, Doc::Null) && !self.nulls && !in_array {
                return Err(self.refuse(
                    "Value types",
                    "null is not a property value; it is only allowed in a patch, to delete a key",
                ));
            }
            self.value(v, level + 1, in_array)?;
            self.segs.pop();
        }
        Ok(())
    }

    fn key(&self, k: &str) -> Result<(), HubError> {
        if k.is_empty() {
            return Err(self.refuse("Key length", "property names must not be empty"));
        }
        if k.len() > MAX_KEY_BYTES {
            return Err(self.refuse(
                "Key length",
                format_args!(
                    "the property name is {} bytes long (UTF-8); at most {MAX_KEY_BYTES} are allowed",
                    k.len()
                ),
            ));
        }
        let bad = if k.is_ascii() {
            k.bytes()
                .find(|&b| b < 0x20 || b == 0x7f || b == b'.' || b == b'$' || b == b' ')
                .map(char::from)
        } else {
            k.chars()
                .find(|&c| c.is_control() || c == '.' || c == '$' || c == ' ')
        };
        match bad {
            None => Ok(()),
            Some(c) => Err(self.refuse(
                "Key characters",
                format_args!(
                    "the property name contains {c:?}; names must not contain control \
                     characters, '.', '$' or spaces"
                ),
            )),
        }
    }

    /// Any value at `level`.
    fn value(&mut self, v: &'a Doc, level: usize, in_array: bool) -> Result<(), HubError> {
        if level > MAX_DEPTH {
            return Err(self.refuse(
                "Object depth",
                format_args!(
                    "values may be nested at most {MAX_DEPTH} levels below {}",
                    self.section
                ),
            ));
        }
        match v {
            Doc::Null | Doc::Bool(_) => Ok(()),
            Doc::Number(n) => {
                let x = n.value;
                if !x.is_finite() {
                    Err(self.refuse("Value types", "numbers must be finite"))
                } else if x.fract() == 0.0
                    && (x > MAX_SAFE_INTEGER as f64 || x < MIN_SAFE_INTEGER as f64)
                    && written_as_integer(n)
                {
                    Err(self.refuse(
                        "Integer range",
                        format_args!(
                            "integers must lie within {MIN_SAFE_INTEGER}..={MAX_SAFE_INTEGER}"
                        ),
                    ))
                } else {
                    Ok(())
                }
            }
            Doc::String(s) => {
                if s.len() > MAX_STRING_BYTES {
                    Err(self.refuse(
                        "String value length",
                        format_args!(
                            "the string is {} bytes long (UTF-8); at most {MAX_STRING_BYTES} are allowed",
                            s.len()
                        ),
                    ))
                } else {
                    Ok(())
                }
            }
            Doc::Array(a) => {
                for (i, e) in a.iter().enumerate() {
                    self.segs.push(Seg::Index(i));
                    self.value(e, level + 1, true)?;
                    self.segs.pop();
                }
                Ok(())
            }
            Doc::Object(o) => self.object(o, level, in_array),
        }
    }
}

/// Whether a number is an integer as JSON writes it: its text has no fraction and no exponent
/// (`4503599627370496` is an integer, `4503599627370496.0` and `1.5e300` are not). A number
/// without kept text is written in its shortest form, which for an integral value is an
/// integer.
fn written_as_integer(n: &Number) -> bool {
    match &n.text {
        Some(t) => !t.contains(['.', 'e', 'E']),
        None => n.value.fract() == 0.0,
    }
}

fn body_object<'a>(body: &'a Doc, what: &str) -> Result<&'a Object, HubError> {
    match body {
        Doc::Object(o) => Ok(o),
        other => Err(HubError::invalid(format!(
            "{what} must be a JSON object, not {}",
            kind_name(other)
        ))),
    }
}

fn kind_name(d: &Doc) -> &'static str {
    match d {
        Doc::Null => "null",
        Doc::Bool(_) => "a Boolean",
        Doc::Number(_) => "a number",
        Doc::String(_) => "a string",
        Doc::Array(_) => "an array",
        Doc::Object(_) => "an object",
    }
}

/// A section of a [`PatchTwin`](Update::PatchTwin): an object (checked) or null.
fn patch_member<'a>(v: &'a Doc, section: &'static str) -> Result<Write<'a>, HubError> {
    match v {
        Doc::Null => Ok(Write::Delete),
        Doc::Object(o) => {
            Validator::check(section, o, true, false)?;
            Ok(Write::Merge(o))
        }
        other => Err(HubError::invalid(format!(
            "'{section}' in a twin patch must be an object or null, not {}",
            kind_name(other)
        ))),
    }
}

/// A section of a [`ReplaceTwin`](Update::ReplaceTwin): an object (checked), or missing/null.
fn replace_member<'a>(v: Option<&'a Doc>, section: &'static str) -> Result<Write<'a>, HubError> {
    match v {
        None | Some(Doc::Null) => Ok(Write::Replace(None)),
        Some(Doc::Object(o)) => {
            Validator::check(section, o, false, section == DESIRED)?;
            Ok(Write::Replace(Some(o)))
        }
        Some(other) => Err(HubError::invalid(format!(
            "'{section}' in a twin replacement must be an object, not {}",
            kind_name(other)
        ))),
    }
}

impl<'a> Plan<'a> {
    /// Checks the shape and content of `update` (everything that does not depend on the
    /// twin) and says what it writes.
    fn of(update: &Update<'a>) -> Result<Plan<'a>, HubError> {
        let mut plan = Plan::default();
        match *update {
            Update::PatchTwin(body) => {
                let b = body_object(body, "a twin patch")?;
                for (k, v) in b.iter() {
                    match k {
                        "tags" => plan.tags = Some(patch_member(v, TAGS)?),
                        "properties" => {
                            let p = match v {
                                Doc::Object(p) => p,
                                other => {
                                    return Err(HubError::invalid(format!(
                                        "'properties' in a twin patch must be an object, not {}",
                                        kind_name(other)
                                    )));
                                }
                            };
                            for (pk, pv) in p.iter() {
                                match pk {
                                    "desired" => plan.desired = Some(patch_member(pv, DESIRED)?),
                                    "reported" => {
                                        return Err(HubError::invalid(
                                            "'properties.reported' cannot be patched by the back \
                                             end: reported properties are written by the device",
                                        ));
                                    }
                                    other => {
                                        return Err(HubError::invalid(format!(
                                            "'properties.{other}' cannot be written by a twin \
                                             patch: only 'tags' and 'properties.desired' can"
                                        )));
                                    }
                                }
                            }
                        }
                        other => {
                            return Err(HubError::invalid(format!(
                                "'{other}' cannot be written by a twin patch: only 'tags' and \
                                 'properties.desired' can"
                            )));
                        }
                    }
                }
            }
            Update::ReplaceTwin(body) => {
                let b = body_object(body, "a twin replacement")?;
                plan.tags = Some(replace_member(b.get("tags"), TAGS)?);
                let desired = match b.get("properties") {
                    None | Some(Doc::Null) => None,
                    Some(Doc::Object(p)) => p.get("desired"),
                    Some(other) => {
                        return Err(HubError::invalid(format!(
                            "'properties' in a twin replacement must be an object, not {}",
                            kind_name(other)
                        )));
                    }
                };
                plan.desired = Some(replace_member(desired, DESIRED)?);
            }
            Update::PatchTags(body) => {
                let o = body_object(body, "a tags patch")?;
                Validator::check(TAGS, o, true, false)?;
                plan.tags = Some(Write::Merge(o));
            }
            Update::PatchDesired(body) => {
                let o = body_object(body, "a desired-properties patch")?;
                Validator::check(DESIRED, o, true, false)?;
                plan.desired = Some(Write::Merge(o));
            }
            Update::PatchReported(body) => {
                let o = body_object(body, "a reported-properties patch")?;
                Validator::check(REPORTED, o, true, false)?;
                plan.reported = Some(Write::Merge(o));
            }
        }
        Ok(plan)
    }
}

/// What `$metadata` entries are dated with.
struct Stamp<'a> {
    now: &'a str,
    /// The section's new `$version`, for `$lastUpdatedVersion` (desired only).
    version: Option<u64>,
}

impl Stamp<'_> {
    /// Dates a metadata object in place (existing members keep their position).
    fn mark(&self, meta: &mut Object) {
        meta.insert(LAST_UPDATED, string(self.now));
        if let Some(v) = self.version {
            meta.insert(LAST_UPDATED_VERSION, number(v));
        }
    }

    /// A metadata object holding only the dates.
    fn leaf(&self) -> Object {
        let mut m = Object::new();
        self.mark(&mut m);
        m
    }

    /// The metadata of an object's members, all dated now.
    fn tree(&self, o: &Object) -> Object {
        let mut m = self.leaf();
        for (k, v) in o.iter() {
            m.insert(k, self.entry(v));
        }
        m
    }

    /// The metadata entry of one value, dated now.
    fn entry(&self, v: &Doc) -> Doc {
        Doc::Object(match v {
            Doc::Object(o) => self.tree(o),
            _ => self.leaf(),
        })
    }
}

/// A copy of an object patch with `null` members dropped at every object level (RFC 7386,
/// patching a missing or non-object target). Arrays are kept as they are.
fn strip_nulls(o: &Object) -> Object {
    let mut out = Object::new();
    for (k, v) in o.iter() {
        match v {
            Doc::Null => {}
            Doc::Object(inner) => {
                out.insert(k, Doc::Object(strip_nulls(inner)));
            }
            other => {
                out.insert(k, other.clone());
            }
        }
    }
    out
}

/// The metadata entry of `k` in `meta` as an object, rebuilt from `existing` if it is missing
/// or not an object.
fn child_meta<'m>(
    meta: &'m mut Object,
    k: &str,
    existing: &Object,
    st: &Stamp<'_>,
) -> &'m mut Object {
    if !matches!(meta.get(k), Some(Doc::Object(_))) {
        meta.insert(k, Doc::Object(st.tree(existing)));
    }
    match meta.get_mut(k) {
        Some(Doc::Object(m)) => m,
        _ => unreachable!("the entry was just made an object"),
    }
}

/// RFC 7386 merge of `patch` into `target`, keeping `meta` (the metadata object mirroring
/// `target`, if the section has one) in step: every key the patch sets gets a fresh entry
/// (or, for an object merged into an object, a re-dated one), deleted keys lose theirs.
fn merge(target: &mut Object, mut meta: Option<&mut Object>, patch: &Object, st: &Stamp<'_>) {
    for (k, pv) in patch.iter() {
        match pv {
            Doc::Null => {
                target.remove(k);
                if let Some(m) = meta.as_deref_mut() {
                    m.remove(k);
                }
            }
            Doc::Object(po) => {
                if let Some(Doc::Object(to)) = target.get_mut(k) {
                    match meta.as_deref_mut() {
                        Some(m) => {
                            let mk = child_meta(m, k, to, st);
                            st.mark(mk);
                            merge(to, Some(mk), po, st);
                        }
                        None => merge(to, None, po, st),
                    }
                } else {
                    let v = strip_nulls(po);
                    if let Some(m) = meta.as_deref_mut() {
                        m.insert(k, Doc::Object(st.tree(&v)));
                    }
                    target.insert(k, Doc::Object(v));
                }
            }
            leaf => {
                target.insert(k, leaf.clone());
                if let Some(m) = meta.as_deref_mut() {
                    m.insert(k, Doc::Object(st.leaf()));
                }
            }
        }
    }
}

/// Member `name` of `o` as an object; a missing or non-object member becomes `{}`.
fn member_object<'o>(o: &'o mut Object, name: &str) -> &'o mut Object {
    if !matches!(o.get(name), Some(Doc::Object(_))) {
        o.insert(name, Doc::object());
    }
    match o.get_mut(name) {
        Some(Doc::Object(m)) => m,
        _ => unreachable!("the member was just made an object"),
    }
}

/// A non-negative integer member, or 0.
fn read_version(d: Option<&Doc>) -> u64 {
    match d {
        Some(Doc::Number(n)) if n.value >= 0.0 && n.value.fract() == 0.0 && n.value < 1.8e19 => {
            n.value as u64
        }
        _ => 0,
    }
}

fn check_size(section: &'static str, o: &Object, limit: usize) -> Result<(), HubError> {
    let size = object_size(o, true);
    if size > limit {
        return Err(size_error(section, size, limit));
    }
    Ok(())
}

fn size_error(section: &str, size: usize, limit: usize) -> HubError {
    HubError::invalid(format!(
        "'Section size' rule violated at '{section}': the section would be {size} bytes; \
         at most {limit} are allowed"
    ))
}

/// Inserts `name` right before member `before` (or at the end if there is none).
fn insert_before(o: &mut Object, before: &str, name: &str, value: Doc) {
    let Some(pos) = o.iter().position(|(k, _)| k == before) else {
        o.insert(name, value);
        return;
    };
    let tail: Vec<String> = o.iter().skip(pos).map(|(k, _)| k.to_owned()).collect();
    let moved: Vec<(String, Doc)> = tail
        .into_iter()
        .filter_map(|k| o.remove(&k).map(|v| (k, v)))
        .collect();
    o.insert(name, value);
    for (k, v) in moved {
        o.insert(&k, v);
    }
}

/// Writes `tags`, keeping the member absent when empty and placing a new one before
/// `properties`.
fn write_tags(root: &mut Object, w: Write<'_>) -> Result<(), HubError> {
    let st = Stamp {
        now: "",
        version: None,
    };
    match w {
        Write::Delete | Write::Replace(None) => {
            root.remove("tags");
            return Ok(());
        }
        Write::Merge(p) => {
            if let Some(Doc::Object(t)) = root.get_mut("tags") {
                merge(t, None, p, &st);
            } else {
                let mut t = Object::new();
                merge(&mut t, None, p, &st);
                place_tags(root, t);
            }
        }
        Write::Replace(Some(o)) => place_tags(root, o.clone()),
    }
    match root.get("tags") {
        Some(Doc::Object(t)) if t.is_empty() => {
            root.remove("tags");
            Ok(())
        }
        Some(Doc::Object(t)) => check_size(TAGS, t, MAX_TAGS_BYTES),
        _ => Ok(()),
    }
}

fn place_tags(root: &mut Object, t: Object) {
    if root.get("tags").is_some() {
        root.insert("tags", Doc::Object(t));
    } else if !t.is_empty() {
        insert_before(root, "properties", "tags", Doc::Object(t));
    }
}

/// Writes `properties.desired` (`desired`) or `properties.reported`; returns the device
/// notification for desired.
fn write_section(
    root: &mut Object,
    desired: bool,
    w: Write<'_>,
    now: &str,
) -> Result<Option<Doc>, HubError> {
    let (name, path, limit) = if desired {
        ("desired", DESIRED, MAX_DESIRED_BYTES)
    } else {
        ("reported", REPORTED, MAX_REPORTED_BYTES)
    };
    let sec = member_object(member_object(root, "properties"), name);
    let old_meta = sec.remove(METADATA);
    let version = read_version(sec.remove(VERSION).as_ref()) + 1;
    let st = Stamp {
        now,
        version: desired.then_some(version),
    };
    let mut notification: Option<Object> = None;
    let meta = match w {
        Write::Merge(p) => {
            let mut meta = match old_meta {
                Some(Doc::Object(m)) => m,
                _ => st.tree(sec),
            };
            st.mark(&mut meta);
            merge(sec, Some(&mut meta), p, &st);
            if desired {
                notification = Some(p.clone());
            }
            meta
        }
        Write::Delete => {
            if desired {
                notification = Some(sec.iter().map(|(k, _)| (k.to_owned(), Doc::Null)).collect());
            }
            *sec = Object::new();
            st.leaf()
        }
        Write::Replace(o) => {
            *sec = o
                .into_iter()
                .flat_map(Object::iter)
                .filter(|(k, _)| *k != METADATA && *k != VERSION)
                .map(|(k, v)| (k.to_owned(), v.clone()))
                .collect();
            if desired {
                notification = Some(sec.clone());
            }
            st.tree(sec)
        }
    };
    check_size(path, sec, limit)?;
    sec.insert(METADATA, Doc::Object(meta));
    sec.insert(VERSION, number(version));
    Ok(notification.map(|mut n| {
        n.insert(VERSION, number(version));
        Doc::Object(n)
    }))
}

/// Strips one pair of double quotes, as HTTP sends etags (`"AAAAAAAAAAc="`).
fn unquote(etag: &str) -> &str {
    etag.strip_prefix('"')
        .and_then(|e| e.strip_suffix('"'))
        .unwrap_or(etag)
}

fn check_if_match(root: &Object, if_match: Option<&str>) -> Result<(), HubError> {
    let Some(wanted) = if_match else {
        return Ok(());
    };
    precondition(wanted, root.get("etag").and_then(Doc::as_string))
}

/// Whether the `If-Match` etag `wanted` lets a write to a twin whose etag is `etag` go on.
fn precondition(wanted: &str, etag: Option<&str>) -> Result<(), HubError> {
    let wanted = unquote(wanted.trim());
    if wanted == "*" {
        return Ok(());
    }
    match etag {
        Some(current) if unquote(current) == wanted => Ok(()),
        Some(current) => Err(HubError::new(
            ErrorCode::PreconditionFailed,
            format!("the If-Match etag \"{wanted}\" does not match the twin's etag \"{current}\""),
        )),
        None => Err(HubError::new(
            ErrorCode::PreconditionFailed,
            format!("the If-Match etag \"{wanted}\" does not match: the twin has no etag"),
        )),
    }
}

/// Applies `update` to `twin` (which is not modified) under an optional `If-Match` etag
/// (`*` matches any; surrounding double quotes are ignored; a different etag, or a twin
/// without one, gives `PreconditionFailed` naming both).
///
/// The update is checked first (shape and content limits, `ArgumentInvalid` naming the rule
/// and key path), then applied to one copy of the twin, then the resulting sections' sizes
/// are checked, and only then the etag condition (so, as HTTP prescribes, a request that
/// would fail anyway reports its own error rather than 412). On success the twin `version`
/// goes up by one (a missing one counts as 0) and `etag` follows it.
pub fn apply(
    twin: &Doc,
    update: &Update<'_>,
    if_match: Option<&str>,
    now: &str,
) -> Result<Applied, HubError> {
    let Doc::Object(root) = twin else {
        return Err(not_a_twin());
    };
    let plan = Plan::of(update)?;
    finish(root.clone(), plan, if_match, now)
}

/// [`apply`] on a twin the caller owns and no longer needs (one copied out of a tape, say):
/// the write edits it in place instead of copying it again. Same rules and results; on an
/// error the twin is dropped.
pub fn apply_owned(
    twin: Doc,
    update: &Update<'_>,
    if_match: Option<&str>,
    now: &str,
) -> Result<Applied, HubError> {
    let Doc::Object(root) = twin else {
        return Err(not_a_twin());
    };
    let plan = Plan::of(update)?;
    finish(root, plan, if_match, now)
}

/// Whether [`apply_packed`] can make `update` (on a twin of the usual shape): a merge patch
/// of reported properties.
pub fn packed_write(update: &Update<'_>) -> bool {
    matches!(update, Update::PatchReported(Doc::Object(_)))
}

/// [`apply`] on a packed twin, made on the packed bytes without a tree, for the write a
/// device sends most: a reported-properties merge patch, on a twin whose
/// `properties.reported` and its `$metadata` are objects, and whose `$metadata` entries are
/// objects wherever the patch merges an object into an object. Returns `None` for any other
/// write or twin (the caller unpacks and calls [`apply_owned`]); otherwise exactly what
/// packing `apply`'s twin gives, or the error `apply` gives.
///
/// Every member the patch does not name is copied as bytes; the patched members, their
/// `$metadata` entries, the section's `$version` and the twin's `version` and `etag` are
/// written anew, in the positions the tree rules give them.
pub fn apply_packed(
    twin: &Packed,
    store: &Store,
    update: &Update<'_>,
    if_match: Option<&str>,
    now: &str,
) -> Option<Result<Packed, HubError>> {
    let Update::PatchReported(Doc::Object(patch)) = *update else {
        return None;
    };
    let names = &Names::new(&store.dict);
    let root = twin.root(store);
    if root.kind() != Kind::Object {
        return None;
    }
    let (mut version_node, mut etag_node, mut props) = (None, None, None);
    for (k, v) in root.raw_members() {
        if k.is(&names.version) {
            version_node = Some(v);
        } else if k.is(&names.etag) {
            etag_node = Some(v);
        } else if k.is(&names.properties) {
            props = Some(v);
        }
    }
    let props = props.filter(|p| p.kind() == Kind::Object)?;
    let sec = props
        .member_named(&names.reported)
        .filter(|v| v.kind() == Kind::Object)?;
    let (mut meta, mut sec_version_node) = (None, None);
    for (k, v) in sec.raw_members() {
        if k.is(&names.metadata) {
            meta = Some(v);
        } else if k.is(&names.sec_version) {
            sec_version_node = Some(v);
        }
    }
    let meta = meta.filter(|m| m.kind() == Kind::Object)?;
    if let Err(e) = Plan::of(update) {
        return Some(Err(e));
    }
    let precondition = match if_match {
        None => Ok(()),
        Some(wanted) => precondition(wanted, etag_node.and_then(Node::as_str)),
    };
    let version = packed_version(version_node) + 1;
    let sec_version = packed_version(sec_version_node) + 1;
    let etag = etag_for_version(version);
    let st = Stamp { now, version: None };

    let write_version = |out: &mut Vec<u8>| {
        names.version.pack(out);
        packed::pack_number(version as f64, None, out);
    };
    let write_etag = |out: &mut Vec<u8>| {
        names.etag.pack(out);
        packed::pack_str(&etag, out);
    };
    let mut size = 0usize;
    let packed = Packed::try_build(|out| {
        let at = packed::open(out, packed::OBJ, 0);
        let mut count = 0;
        for (bytes, name, value) in root.member_bytes() {
            count += 1;
            if name.is(&names.version) {
                write_version(out);
            } else if name.is(&names.etag) {
                write_etag(out);
            } else if name.is(&names.properties) {
                names.properties.pack(out);
                size = write_properties(names, value, sec, meta, patch, sec_version, &st, out)?;
            } else {
                out.extend_from_slice(bytes);
            }
        }
        if version_node.is_none() {
            count += 1;
            write_version(out);
        }
        if etag_node.is_none() {
            count += 1;
            write_etag(out);
        }
        packed::finish(out, at, count)
    })?;
    if size > MAX_REPORTED_BYTES {
        return Some(Err(size_error(REPORTED, size, MAX_REPORTED_BYTES)));
    }
    if let Err(e) = precondition {
        return Some(Err(e));
    }
    Some(Ok(packed))
}

/// The names a reported patch on a packed twin reads and writes, looked up once.
struct Names<'d> {
    dict: &'d KeyDict,
    version: NameKey<'static>,
    etag: NameKey<'static>,
    properties: NameKey<'static>,
    reported: NameKey<'static>,
    metadata: NameKey<'static>,
    sec_version: NameKey<'static>,
    last_updated: NameKey<'static>,
}

impl<'d> Names<'d> {
    fn new(dict: &'d KeyDict) -> Names<'d> {
        // In the order of `dict::KNOWN`.
        Names {
            dict,
            version: NameKey::known(dict, 0),
            etag: NameKey::known(dict, 1),
            properties: NameKey::known(dict, 2),
            reported: NameKey::known(dict, 3),
            metadata: NameKey::known(dict, 4),
            sec_version: NameKey::known(dict, 5),
            last_updated: NameKey::known(dict, 6),
        }
    }
}

/// Writes the packed `properties` object with `patch` merged into its reported section
/// `sec` (whose metadata object is `meta`) and the section's `$version` set to
/// `sec_version`; returns the section's size after the write. `None` as [`merge_packed`].
#[allow(clippy::too_many_arguments)]
fn write_properties(
    names: &Names<'_>,
    props: PackedRef<'_>,
    sec: PackedRef<'_>,
    meta: PackedRef<'_>,
    patch: &Object,
    sec_version: u64,
    st: &Stamp<'_>,
    out: &mut Vec<u8>,
) -> Option<usize> {
    let at = packed::open(out, packed::OBJ, 0);
    let mut n = 0;
    let mut size = 0;
    for (bytes, name, _) in props.member_bytes() {
        n += 1;
        if !name.is(&names.reported) {
            out.extend_from_slice(bytes);
            continue;
        }
        names.reported.pack(out);
        let at = packed::open(out, packed::OBJ, 0);
        // Most reported sections' metadata fit (no growth steps).
        let mut meta_out = Vec::with_capacity(2048);
        let (members, s) = merge_packed(names, sec, meta, patch, true, st, out, &mut meta_out)?;
        size = s;
        names.metadata.pack(out);
        out.extend_from_slice(&meta_out);
        names.sec_version.pack(out);
        packed::pack_number(sec_version as f64, None, out);
        packed::finish(out, at, members + 2)?;
    }
    packed::finish(out, at, n)?;
    Some(size)
}

/// [`merge`] of `patch` into the packed object `target` whose metadata object is `meta`:
/// writes the merged object's members to `out` and its whole metadata object to `meta_out`;
/// returns the number of members written and the merged object's size (by
/// [`object_size`]; `root` for a section, whose `$metadata` and `$version` are left out,
/// for the caller to write). `None` where the tree rules would rebuild metadata (an object
/// merged into an object whose metadata entry is not one).
#[allow(clippy::too_many_arguments)]
fn merge_packed(
    names: &Names<'_>,
    target: PackedRef<'_>,
    meta: PackedRef<'_>,
    patch: &Object,
    root: bool,
    st: &Stamp<'_>,
    out: &mut Vec<u8>,
    meta_out: &mut Vec<u8>,
) -> Option<(usize, usize)> {
    let dict = names.dict;
    // The patch's names, looked up once: a member name of the target compares as an integer.
    let keys: Vec<NameKey<'_>> = patch.iter().map(|(k, _)| NameKey::new(dict, k)).collect();
    let position = |name: packed::Name<'_>| keys.iter().position(|k| name.is(k));
    // Per patch member: whether the target has it, whether its metadata entry was placed,
    // and where in `entries` its new metadata entry is (none for `null`).
    #[derive(Clone, Copy, Default)]
    struct Seen {
        in_target: bool,
        placed: bool,
        entry: Option<(usize, usize)>,
    }
    let mut seen = vec![Seen::default(); patch.len()];
    let mut entries: Vec<u8> = Vec::with_capacity(256);
    let (mut count, mut size) = (0usize, 0usize);
    // A value the patch sets whole: written with its name; its metadata entry goes to
    // `entries`. Returns the entry's place and the member's size.
    let write_new = |name: &NameKey<'_>,
                     pv: &Doc,
                     out: &mut Vec<u8>,
                     entries: &mut Vec<u8>|
     -> Option<((usize, usize), usize)> {
        let start = entries.len();
        name.pack(out);
        let v_size = match pv {
            Doc::Object(po) => {
                let v = strip_nulls(po);
                packed::pack_into(&Doc::Object(st.tree(&v)), dict, entries)?;
                let v_size = object_size(&v, false);
                packed::pack_into(&Doc::Object(v), dict, out)?;
                v_size
            }
            leaf => {
                packed::pack_into(leaf, dict, out)?;
                let at = packed::open(entries, packed::OBJ, 1);
                names.last_updated.pack(entries);
                packed::pack_str(st.now, entries);
                packed::close(entries, at)?;
                value_size(leaf)
            }
        };
        Some(((start, entries.len()), text_size(name.text) + v_size))
    };
    for (bytes, name, value) in target.member_bytes() {
        if root && (name.is(&names.metadata) || name.is(&names.sec_version)) {
            continue;
        }
        let Some(i) = position(name) else {
            count += 1;
            let text = target.text(name);
            if !(root && text.starts_with('$')) {
                size += text_size(text) + packed_size(value);
            }
            out.extend_from_slice(bytes);
            continue;
        };
        seen[i].in_target = true;
        let key = &keys[i];
        let pv = patch.at(i).map(|(_, v)| v)?;
        match pv {
            Doc::Null => {}
            Doc::Object(po) if value.kind() == Kind::Object => {
                let mk = meta
                    .member_named(key)
                    .filter(|v| v.kind() == Kind::Object)?;
                key.pack(out);
                let at = packed::open(out, packed::OBJ, 0);
                let start = entries.len();
                let (n, s) = merge_packed(names, value, mk, po, false, st, out, &mut entries)?;
                packed::finish(out, at, n)?;
                seen[i].entry = Some((start, entries.len()));
                count += 1;
                size += text_size(key.text) + s;
            }
            _ => {
                let (entry, s) = write_new(key, pv, out, &mut entries)?;
                seen[i].entry = Some(entry);
                count += 1;
                size += s;
            }
        }
    }
    for (i, (_, pv)) in patch.iter().enumerate() {
        if !seen[i].in_target && !matches!(pv, Doc::Null) {
            let (entry, s) = write_new(&keys[i], pv, out, &mut entries)?;
            seen[i].entry = Some(entry);
            count += 1;
            size += s;
        }
    }

    // The metadata object: dated now, entries of patched members replaced in place (or
    // appended after the date), deleted members' entries gone.
    let at = packed::open(meta_out, packed::OBJ, 0);
    let mut n = 0;
    let mut dated = false;
    for (bytes, name, _) in meta.member_bytes() {
        if name.is(&names.last_updated) {
            dated = true;
            n += 1;
            names.last_updated.pack(meta_out);
            packed::pack_str(st.now, meta_out);
            continue;
        }
        match position(name) {
            None => {
                n += 1;
                meta_out.extend_from_slice(bytes);
            }
            Some(i) => {
                seen[i].placed = true;
                if let Some((from, to)) = seen[i].entry {
                    n += 1;
                    keys[i].pack(meta_out);
                    meta_out.extend_from_slice(entries.get(from..to)?);
                }
            }
        }
    }
    if !dated {
        n += 1;
        names.last_updated.pack(meta_out);
        packed::pack_str(st.now, meta_out);
    }
    for (i, key) in keys.iter().enumerate() {
        if let (false, Some((from, to))) = (seen[i].placed, seen[i].entry) {
            n += 1;
            key.pack(meta_out);
            meta_out.extend_from_slice(entries.get(from..to)?);
        }
    }
    packed::finish(meta_out, at, n)?;
    Some((count, size))
}

/// [`read_version`] of a packed node.
fn packed_version(d: Option<PackedRef<'_>>) -> u64 {
    match d
        .filter(|n| n.kind() == Kind::Number)
        .and_then(Node::as_f64)
    {
        Some(v) if v >= 0.0 && v.fract() == 0.0 && v < 1.8e19 => v as u64,
        _ => 0,
    }
}

/// [`value_size`] of a packed node.
fn packed_size(v: PackedRef<'_>) -> usize {
    match v.kind() {
        Kind::Null => 0,
        Kind::Bool => 4,
        Kind::Number => 8,
        Kind::String => text_size(v.as_str().unwrap_or("")),
        Kind::Array => v.elements().map(packed_size).sum(),
        Kind::Object => v
            .members()
            .map(|(k, m)| text_size(k) + packed_size(m))
            .sum(),
    }
}

fn not_a_twin() -> HubError {
    HubError::invalid("the twin is not a JSON object")
}

/// Performs a validated write on `out`, the twin's own copy.
fn finish(
    mut out: Object,
    plan: Plan<'_>,
    if_match: Option<&str>,
    now: &str,
) -> Result<Applied, HubError> {
    // Read before the write; reported after the other errors, as HTTP prescribes.
    let precondition = check_if_match(&out, if_match);
    let version = read_version(out.get("version")) + 1;
    if let Some(w) = plan.tags {
        write_tags(&mut out, w)?;
    }
    let mut desired_notification = None;
    if let Some(w) = plan.desired {
        desired_notification = write_section(&mut out, true, w, now)?;
    }
    if let Some(w) = plan.reported {
        write_section(&mut out, false, w, now)?;
    }
    precondition?;
    out.insert("version", number(version));
    out.insert("etag", Doc::String(etag_for_version(version).into()));
    Ok(Applied {
        twin: Doc::Object(out),
        desired_notification,
    })
}

/// The size of a section per spec §4.4: the sum over all properties of key size plus value
/// size, where keys and strings count their characters (Unicode scalar values) other than
/// control characters, numbers count 8, Booleans 4 and `null` 0; arrays and nested objects
/// add up their contents (array positions count nothing). Members of the section root whose
/// names start with `$` (`$metadata`, `$version`, the legacy `$etag`) are read-only and not
/// counted. A non-object `section` counts as a single value.
pub fn section_size(section: &Doc) -> usize {
    match section {
        Doc::Object(o) => object_size(o, true),
        other => value_size(other),
    }
}

fn object_size(o: &Object, root: bool) -> usize {
    o.iter()
        .filter(|(k, _)| !(root && k.starts_with('$')))
        .map(|(k, v)| text_size(k) + value_size(v))
        .sum()
}

fn value_size(v: &Doc) -> usize {
    match v {
        Doc::Null => 0,
        Doc::Bool(_) => 4,
        Doc::Number(_) => 8,
        Doc::String(s) => text_size(s),
        Doc::Array(a) => a.iter().map(value_size).sum(),
        Doc::Object(o) => object_size(o, false),
    }
}

fn text_size(s: &str) -> usize {
    if s.is_ascii() {
        s.bytes().filter(|&b| b >= 0x20 && b != 0x7f).count()
    } else {
        s.chars().filter(|c| !c.is_control()).count()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const NOW: &str = "2026-11-28T10:00:00.0000000Z";

    fn value() -> impl Strategy<Value = String> {
        let leaf = prop_oneof![
            prop::sample::select(vec![
                "null",
                "true",
                "false",
                "0",
                "-0",
                "21.50",
                "1e3",
                "7",
                "-3.25",
                "\"on\"",
                "\"\"",
                "\"caf\\u00e9\"",
                "\"a\\u0001b\"",
            ])
            .prop_map(str::to_string),
            Just(format!("\"{}\"", "x".repeat(4000))),
            // 16,000 bytes by the section rule: two or three of them pass the limit.
            Just(format!(
                "[{}]",
                vec![format!("\"{}\"", "y".repeat(4000)); 4].join(",")
            )),
        ];
        leaf.prop_recursive(2, 12, 3, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..3)
                    .prop_map(|v| format!("[{}]", v.join(","))),
                prop::collection::vec(
                    (prop::sample::select(vec!["p", "q", "$lastUpdated"]), inner),
                    0..3
                )
                .prop_map(|kv: Vec<(&str, String)>| object(&kv)),
            ]
        })
    }

    fn object(members: &[(&str, String)]) -> String {
        let body: Vec<String> = members
            .iter()
            .map(|(k, v)| format!("{}:{v}", serde_json::to_string(k).unwrap_or_default()))
            .collect();
        format!("{{{}}}", body.join(","))
    }

    /// Unique names, as a twin's objects have them (the first of a repeated name kept).
    fn unique<T: Clone>(members: Vec<(&'static str, T)>) -> Vec<(&'static str, T)> {
        let mut out: Vec<(&'static str, T)> = Vec::new();
        for (k, v) in members {
            if !out.iter().any(|(o, _)| *o == k) {
                out.push((k, v));
            }
        }
        out
    }

    const NAMES: [&str; 8] = ["temp", "battery", "mode", "a", "b", "c", "d", "e"];

    /// Twins in the usual shape and around it: `version`, `etag`, `$version` missing or odd,
    /// `$metadata` with and without dates, entries that are not objects, legacy `$` members,
    /// member orders of every kind.
    fn twin() -> impl Strategy<Value = String> {
        let scalar = prop::sample::select(vec!["3", "0", "-1", "1.5", "\"7\"", "1e3"]);
        let section = prop::collection::vec(
            (
                prop::sample::select(
                    NAMES
                        .to_vec()
                        .into_iter()
                        .chain(["$etag"])
                        .collect::<Vec<_>>(),
                ),
                value(),
            ),
            0..6,
        );
        let meta = prop::collection::vec(
            (
                prop::sample::select(
                    NAMES
                        .to_vec()
                        .into_iter()
                        .chain(["$lastUpdated", "$lastUpdatedVersion"])
                        .collect::<Vec<_>>(),
                ),
                prop_oneof![
                    Just(r#"{"$lastUpdated":"2020-01-01T00:00:00Z"}"#.to_string()),
                    Just(
                        r#"{"$lastUpdated":"2020-01-01T00:00:00Z","x":{"$lastUpdated":"2020"}}"#
                            .to_string()
                    ),
                    Just(r#"{"$lastUpdated":"2020","p":{"$lastUpdated":"2020","q":{"$lastUpdated":"2020"}},"q":5}"#.to_string()),
                    Just(r#"{"q":{"$lastUpdated":"2020"},"p":{"p":{}}}"#.to_string()),
                    Just("\"2020-01-01T00:00:00Z\"".to_string()),
                    Just("5".to_string()),
                ],
            ),
            0..6,
        );
        (
            section,
            meta,
            prop::option::of(scalar.clone()),
            prop::option::of(scalar.clone()),
            prop::option::of(prop::sample::select(vec!["\"AAAAAAAAAAE=\"", "7"])),
            0..4usize,
            0..3usize,
        )
            .prop_map(
                |(members, meta, sec_version, version, etag, meta_at, order)| {
                    let mut sec: Vec<(&str, String)> = unique(members);
                    let at = meta_at.min(sec.len());
                    sec.insert(at, ("$metadata", object(&unique(meta))));
                    if let Some(v) = sec_version {
                        sec.push(("$version", v.to_string()));
                    }
                    let props = object(&[
                        (
                            "desired",
                            r#"{"$metadata":{"$lastUpdated":"2020"},"$version":1}"#.into(),
                        ),
                        ("reported", object(&sec)),
                    ]);
                    let mut root: Vec<(&str, String)> = vec![("deviceId", "\"d1\"".into())];
                    if let Some(v) = version {
                        root.push(("version", v.to_string()));
                    }
                    root.push(("tags", r#"{"x":1}"#.into()));
                    root.push(("properties", props));
                    if let Some(e) = etag {
                        root.insert(order.min(root.len()), ("etag", e.to_string()));
                    }
                    object(&root)
                },
            )
    }

    /// Reported patches: existing and new names, `null`s, arrays, long strings (past the
    /// section limit when several meet), names the rules refuse, and now and then an object
    /// (which the packed write leaves to the tree).
    fn patch() -> impl Strategy<Value = String> {
        let name = prop::sample::select(
            NAMES
                .to_vec()
                .into_iter()
                .chain(["$x", "a.b", "f", "g", "h"])
                .collect::<Vec<_>>(),
        );
        let nested =
            prop::collection::vec((prop::sample::select(vec!["p", "q", "r"]), value()), 0..4)
                .prop_map(|kv| object(&unique(kv)));
        prop::collection::vec((name, prop_oneof![5 => value(), 2 => nested]), 0..9)
            .prop_map(|kv| object(&unique(kv)))
    }

    /// Whether every object `patch` merges into an object of `target` has an object as its
    /// metadata entry in `meta`, at every depth (else the tree rules rebuild the entry).
    fn metadata_kept(target: &Object, meta: &Object, patch: &Object) -> bool {
        patch.iter().all(|(k, v)| match (v, target.get(k)) {
            (Doc::Object(p), Some(Doc::Object(t))) => match meta.get(k) {
                Some(Doc::Object(m)) => metadata_kept(t, m, p),
                _ => false,
            },
            _ => true,
        })
    }

    /// A store whose dictionary holds the names of a twin's system fields and sections, and
    /// some the generated twins and patches use.
    fn store_knowing_twin_names() -> Store {
        let mut store = Store::new();
        let twin = r#"{"deviceId":"n","etag":"e","version":1,"properties":{"desired":{},"reported":{"a":{"x":1,"y":2},"f":0,"$metadata":{"$lastUpdated":"t","$lastUpdatedVersion":1},"$version":1}}}"#;
        store
            .load_bytes("names", twin.as_bytes(), &crate::LoadOptions::default())
            .expect("twin");
        store
    }

    #[test]
    fn the_names_a_packed_write_uses_are_the_dictionarys() {
        for store in [Store::new(), store_knowing_twin_names()] {
            let names = Names::new(&store.dict);
            for (key, text) in [
                (names.version, "version"),
                (names.etag, "etag"),
                (names.properties, "properties"),
                (names.reported, "reported"),
                (names.metadata, METADATA),
                (names.sec_version, VERSION),
                (names.last_updated, LAST_UPDATED),
            ] {
                assert_eq!(key.text, text);
                assert_eq!(key.id(), store.dict.get(text), "{text}");
            }
        }
    }

    #[test]
    fn a_new_object_in_a_packed_patch_loses_its_nulls() {
        let twin = Doc::parse(
            r#"{"deviceId":"d","properties":{"reported":{"a":{"x":1},"$metadata":{"a":{"x":{}}}}}}"#,
        )
        .expect("twin");
        for text in [
            r#"{"f":{"p":null,"q":{"r":null,"s":[null]}}}"#,
            r#"{"a":{"x":null,"y":{"z":null}}}"#,
        ] {
            let patch = Doc::parse(text).expect("patch");
            let update = Update::PatchReported(&patch);
            let tree = apply(&twin, &update, None, NOW).expect("tree");
            for store in [Store::new(), store_knowing_twin_names()] {
                let packed = apply_packed(&Packed::pack(&twin, &store), &store, &update, None, NOW)
                    .expect("made packed")
                    .expect("accepted");
                assert_eq!(packed, Packed::pack(&tree.twin, &store), "{text}");
            }
        }
    }

    fn if_match() -> impl Strategy<Value = Option<&'static str>> {
        prop::option::of(prop::sample::select(vec![
            "*",
            "\"AAAAAAAAAAE=\"",
            "AAAAAAAAAAI=",
        ]))
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]

        #[test]
        fn reported_patches_made_packed_equal_the_tree_rules(
            twin in twin(),
            patch in patch(),
            if_match in if_match(),
            known_names in any::<bool>(),
        ) {
            let twin = Doc::parse(&twin).expect("generated twin");
            let patch = Doc::parse(&patch).expect("generated patch");
            let update = Update::PatchReported(&patch);
            // Names packed inline (a store that knows none) or as key ids (most of them).
            let store = if known_names { store_knowing_twin_names() } else { Store::new() };
            let packed = Packed::pack(&twin, &store);
            let tree = apply(&twin, &update, if_match, NOW);
            let reported = twin.get_path(&["properties", "reported"]);
            let usual = reported.and_then(|r| r.as_object()).is_some_and(|r| {
                match (r.get(METADATA), patch.as_object()) {
                    (Some(Doc::Object(m)), Some(p)) => metadata_kept(r, m, p),
                    _ => false,
                }
            });
            match apply_packed(&packed, &store, &update, if_match, NOW) {
                None => prop_assert!(
                    !usual || !packed_write(&update),
                    "a reported patch on a usual twin was left to the tree"
                ),
                Some(Ok(p)) => {
                    let done = tree.map_err(|e| TestCaseError::fail(format!("tree refused: {e}")))?;
                    prop_assert_eq!(p, Packed::pack(&done.twin, &store));
                }
                Some(Err(e)) => match tree {
                    Ok(_) => prop_assert!(false, "packed refused what the tree took: {e}"),
                    Err(t) => {
                        prop_assert_eq!(e.code, t.code);
                        prop_assert_eq!(e.message, t.message);
                    }
                },
            }
        }
    }

    #[test]
    fn timestamps_are_written_as_iot_hub_writes_them() {
        use chrono::TimeZone;
        let t = chrono::Utc
            .with_ymd_and_hms(2026, 1, 7, 5, 9, 3)
            .single()
            .expect("a time")
            + chrono::Duration::nanoseconds(123_456_789);
        assert_eq!(format_timestamp(t), "2026-01-07T05:09:03.1234567Z");
        let leap = chrono::NaiveDate::from_ymd_opt(2016, 12, 31)
            .and_then(|d| d.and_hms_nano_opt(23, 59, 59, 1_500_000_000))
            .expect("a leap second")
            .and_utc();
        assert_eq!(format_timestamp(leap), "2016-12-31T23:59:59.9999999Z");
    }

    #[test]
    fn timestamp_has_seven_fraction_digits() {
        let t = timestamp_now();
        assert_eq!(t.len(), "2026-11-27T05:59:35.1234567Z".len(), "{t}");
        assert_eq!(&t[10..11], "T");
        assert_eq!(&t[19..20], ".");
        assert!(t.ends_with('Z'));
        assert!(t[20..27].bytes().all(|b| b.is_ascii_digit()));
    }

    #[test]
    fn long_keys_are_shortened_in_paths() {
        let key = "k".repeat(200);
        let o: Object = [(key, Doc::Bool(true))].into_iter().collect();
        let mut v = Validator {
            section: TAGS,
            segs: Vec::new(),
            nulls: true,
            skip_read_only: false,
        };
        v.segs.push(Seg::Key(o.at(0).map(|(k, _)| k).unwrap_or("")));
        v.segs.push(Seg::Index(3));
        let p = v.path();
        assert_eq!(p, format!("tags.{}…[3]", "k".repeat(KEY_SHOWN)));
    }

    #[test]
    fn error_display_and_status() {
        let e = HubError::new(ErrorCode::PreconditionFailed, "stale");
        assert_eq!(e.to_string(), "PreconditionFailed (412001): stale");
        assert_eq!(ErrorCode::ModuleAlreadyExists.http_status(), 409);
        assert_eq!(ErrorCode::ModuleNotFound.http_status(), 404);
    }
}
