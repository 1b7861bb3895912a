//! Continuation tokens: opaque, bound to the query text, and checked.
//!
//! A token is `v2.` followed by URL-safe base64 of six little-endian `u64`s: a hash of the
//! query text, the resume position, the number of rows returned so far, the snapshot the pages
//! read (a generation and a write sequence number), and a check value over the other five. A token used with another query, or altered, is refused with
//! [`TokenError`]. The check value makes accidental or casual tampering detectable; it is not a
//! cryptographic signature.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use twinql_store::exec::Position;

const PREFIX: &str = "v2.";
const WORDS: usize = 6;

/// What a continuation token carries.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Token {
    /// Where the next page starts.
    pub position: Position,
    /// The generation of the loaded documents the pages read.
    pub generation: u64,
    /// The number of writes the snapshot the pages read includes.
    pub seq: u64,
}

/// Why a continuation token was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    /// Not a token this engine issued (bad prefix, encoding or length).
    #[error("malformed continuation token")]
    Malformed,
    /// The check value does not match: the token was altered.
    #[error("continuation token failed its integrity check")]
    Forged,
    /// The token was issued for a different query text.
    #[error("continuation token belongs to a different query")]
    WrongQuery,
    /// The snapshot the token's pages read is no longer kept and the data changed since.
    #[error(
        "continuation token expired: the twins changed since the first page and its snapshot was released; run the query again"
    )]
    Expired,
}

/// 64-bit FNV-1a, a stable hash (unlike `std`'s, which may change between releases).
fn fnv1a(parts: &[&[u8]]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for part in parts {
        for &b in *part {
            h ^= b as u64;
            h = h.wrapping_mul(0x0000_0100_0000_01b3);
        }
        // Separate parts so ("ab","c") and ("a","bc") differ.
        h ^= 0xff;
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

fn check(hash: u64, t: &Token) -> u64 {
    fnv1a(&[
        b"twinql-continuation",
        &hash.to_le_bytes(),
        &t.position.next.to_le_bytes(),
        &t.position.emitted.to_le_bytes(),
        &t.generation.to_le_bytes(),
        &t.seq.to_le_bytes(),
    ])
}

/// Issues the token that resumes `query` as `t` says.
pub fn encode(query: &str, t: Token) -> String {
    let hash = fnv1a(&[query.as_bytes()]);
    let mut bytes = Vec::with_capacity(WORDS * 8);
    for x in [
        hash,
        t.position.next,
        t.position.emitted,
        t.generation,
        t.seq,
        check(hash, &t),
    ] {
        bytes.extend_from_slice(&x.to_le_bytes());
    }
    format!("{PREFIX}{}", URL_SAFE_NO_PAD.encode(bytes))
}

/// Reads a token issued for `query`.
pub fn decode(query: &str, token: &str) -> Result<Token, TokenError> {
    let body = token
        .trim()
        .strip_prefix(PREFIX)
        .ok_or(TokenError::Malformed)?;
    let bytes = URL_SAFE_NO_PAD
        .decode(body)
        .map_err(|_| TokenError::Malformed)?;
    if bytes.len() != WORDS * 8 {
        return Err(TokenError::Malformed);
    }
    let word = |i: usize| {
        let mut b = [0u8; 8];
        b.copy_from_slice(&bytes[i * 8..i * 8 + 8]);
        u64::from_le_bytes(b)
    };
    let (hash, t, sum) = (
        word(0),
        Token {
            position: Position {
                next: word(1),
                emitted: word(2),
            },
            generation: word(3),
            seq: word(4),
        },
        word(5),
    );
    if check(hash, &t) != sum {
        return Err(TokenError::Forged);
    }
    if hash != fnv1a(&[query.as_bytes()]) {
        return Err(TokenError::WrongQuery);
    }
    Ok(t)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_refusals() {
        let q = "SELECT * FROM devices";
        let pos = Token {
            position: Position {
                next: 1234,
                emitted: 100,
            },
            generation: 2,
            seq: 77,
        };
        let t = encode(q, pos);
        assert_eq!(decode(q, &t), Ok(pos));
        assert_eq!(
            decode("SELECT * FROM devices.modules", &t),
            Err(TokenError::WrongQuery)
        );
        assert_eq!(decode(q, "garbage"), Err(TokenError::Malformed));
        assert_eq!(decode(q, "v1.!!!"), Err(TokenError::Malformed));
        // Flip one character of the payload.
        let mut forged: Vec<char> = t.chars().collect();
        let i = PREFIX.len() + 12;
        forged[i] = if forged[i] == 'A' { 'B' } else { 'A' };
        let forged: String = forged.into_iter().collect();
        assert_eq!(decode(q, &forged), Err(TokenError::Forged));
    }
}
