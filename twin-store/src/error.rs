//! Load errors. Positions are data (line, column), rendered only by `Display`.

use std::path::PathBuf;

use crate::CollectionKind;

/// What is wrong with one document.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DocErrorKind {
    /// The text ended inside a value.
    #[error("unexpected end of input, expected {expected}")]
    UnexpectedEnd {
        /// What the parser was looking for.
        expected: &'static str,
    },
    /// A character that cannot stand here.
    #[error("unexpected {found:?}, expected {expected}")]
    Unexpected {
        /// The character found.
        found: char,
        /// What the parser was looking for.
        expected: &'static str,
    },
    /// Bytes that are not UTF-8.
    #[error("invalid UTF-8")]
    InvalidUtf8,
    /// A raw control character inside a string (JSON requires an escape).
    #[error("control character U+{0:04X} in a string")]
    ControlCharacter(u8),
    /// A backslash escape JSON does not have.
    #[error("invalid escape sequence")]
    InvalidEscape,
    /// A `\u` escape of half a surrogate pair.
    #[error("invalid \\u escape: lone surrogate")]
    LoneSurrogate,
    /// A malformed number (`01`, `1.`, `-`, `1e`).
    #[error("invalid number")]
    InvalidNumber,
    /// Arrays and objects nested deeper than the limit.
    #[error("nesting deeper than {limit} levels")]
    TooDeep {
        /// The limit ([`LoadOptions::max_depth`](crate::LoadOptions::max_depth)).
        limit: u32,
    },
    /// Text after the end of the document.
    #[error("trailing characters after the document")]
    TrailingCharacters,
    /// A document that is not an object.
    #[error("a document must be a JSON object, found {found}")]
    NotAnObject {
        /// The kind of value found.
        found: &'static str,
    },
    /// A required identity member is missing.
    #[error("missing string member `{member}`")]
    MissingMember {
        /// `deviceId` or `jobId`.
        member: &'static str,
    },
    /// An identity member that is not a string.
    #[error("member `{member}` must be a string")]
    NotAString {
        /// `deviceId`, `moduleId` or `jobId`.
        member: &'static str,
    },
    /// A device twin's `jobs` member is not an array.
    #[error("member `jobs` must be an array of job records")]
    JobsNotArray,
    /// A device twin has two `jobs` members.
    #[error("duplicate member `jobs`")]
    DuplicateJobs,
    /// An element of a device twin's `jobs` array is not a valid job record.
    #[error("job record {index} of `jobs`: {problem}")]
    BadJob {
        /// 0-based index in the array.
        index: usize,
        /// What is wrong.
        problem: &'static str,
    },
    /// A module twin with a `jobs` member (job records belong to device twins).
    #[error("a module twin cannot have a `jobs` member")]
    JobsOnModule,
    /// A second document with the identity of an earlier one.
    #[error("duplicate {collection} {identity}{}", match first_line {
        Some(l) => format!(" (first at line {l})"),
        None => " (loaded earlier)".to_string(),
    })]
    Duplicate {
        /// The collection.
        collection: CollectionKind,
        /// The identity, e.g. `deviceId "d1", moduleId "m1"`.
        identity: String,
        /// Line of the first document if it came from the same load.
        first_line: Option<u64>,
    },
    /// A single document too large for the store (4 GiB of tape).
    #[error("document too large")]
    TooLarge,
}

/// One rejected document: where (1-based line and column, counted in characters) and why.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("line {line}, column {column}: {kind}")]
pub struct DocError {
    /// 1-based line.
    pub line: u64,
    /// 1-based column in characters.
    pub column: u64,
    /// What is wrong.
    pub kind: DocErrorKind,
}

/// Why a load failed. A failed load leaves the store as it was.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LoadError {
    /// The input could not be read.
    #[error("cannot read {}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// A document was rejected (and `skip_invalid` was off), or the array around the
    /// documents is malformed.
    #[error("{file}:{}:{}: {}", error.line, error.column, error.kind)]
    Document {
        /// Name of the input.
        file: String,
        /// The error.
        error: DocError,
    },
    /// The store holds as many documents as it can address.
    #[error("too many documents")]
    TooManyDocuments,
}

impl LoadError {
    /// The document error, if this is one.
    pub fn doc_error(&self) -> Option<&DocError> {
        match self {
            LoadError::Document { error, .. } => Some(error),
            _ => None,
        }
    }
}
