//! Offsets: opaque, lexicographically sortable positions in a stream.
//!
//! An offset is the count of units before a position: messages for JSON streams, bytes for
//! every other content type. On the wire it is that count as 32 zero-padded decimal digits in
//! two groups of 16 (`0000000000000000_0000000000000042`, the shape Durable Streams servers
//! conventionally use), so byte-wise string order is numeric order and `-1`/`now` can never
//! be minted.

use std::fmt;

use crate::error::ProtocolError;

const GROUP: usize = 16;
const SPLIT: u64 = 10_000_000_000_000_000;

/// A position in a stream: the number of units (messages or bytes) before it.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    Default,
    serde::Serialize,
    serde::Deserialize,
)]
#[serde(transparent)]
pub struct Offset(pub u64);

impl Offset {
    /// The beginning of every stream.
    pub const ZERO: Offset = Offset(0);

    /// The offset `units` after this one.
    pub fn advance(self, units: u64) -> Offset {
        Offset(self.0 + units)
    }

    /// Parses a server-minted offset token; sentinels are handled by [`ReadFrom::parse`].
    pub fn parse(token: &str) -> Result<Offset, ProtocolError> {
        let malformed = || ProtocolError::MalformedOffset(truncate(token));
        let group = |g: &str| {
            (g.len() == GROUP && g.bytes().all(|b| b.is_ascii_digit()))
                .then(|| g.parse::<u64>().ok())
                .flatten()
        };
        let (hi, lo) = token.split_once('_').ok_or_else(malformed)?;
        let (hi, lo) = group(hi).zip(group(lo)).ok_or_else(malformed)?;
        hi.checked_mul(SPLIT)
            .and_then(|n| n.checked_add(lo))
            .map(Offset)
            .ok_or_else(malformed)
    }
}

impl fmt::Display for Offset {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:016}_{:016}", self.0 / SPLIT, self.0 % SPLIT)
    }
}

/// Where a read starts: the `offset` query parameter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReadFrom {
    /// `-1` or no offset: the first unit of the stream.
    Start,
    /// `now`: the tail at the time the request is served.
    Now,
    /// A server-minted offset.
    At(Offset),
}

impl ReadFrom {
    /// Parses the `offset` query parameter (absent means the start).
    pub fn parse(param: Option<&str>) -> Result<ReadFrom, ProtocolError> {
        match param {
            None | Some("-1") => Ok(ReadFrom::Start),
            Some("now") => Ok(ReadFrom::Now),
            Some(token) => Offset::parse(token).map(ReadFrom::At),
        }
    }

    /// The concrete offset, given the stream's current tail.
    pub fn resolve(self, tail: Offset) -> Offset {
        match self {
            ReadFrom::Start => Offset::ZERO,
            ReadFrom::Now => tail,
            ReadFrom::At(offset) => offset,
        }
    }
}

/// Keeps error messages short when a client sends a huge token.
pub(crate) fn truncate(value: &str) -> String {
    const KEEP: usize = 64;
    if value.len() <= KEEP {
        return value.to_owned();
    }
    let mut end = KEEP;
    while !value.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &value[..end])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_sorts_lexicographically() {
        let offsets = [
            0u64,
            9,
            10,
            99,
            100,
            12_345_678,
            SPLIT - 1,
            SPLIT,
            SPLIT + 1,
            u64::MAX,
        ];
        let tokens: Vec<String> = offsets.iter().map(|&n| Offset(n).to_string()).collect();
        assert_eq!(tokens[0], "0000000000000000_0000000000000000");
        for (n, token) in offsets.iter().zip(&tokens) {
            assert_eq!(token.len(), 2 * GROUP + 1);
            assert_eq!(Offset::parse(token).unwrap(), Offset(*n));
        }
        let mut sorted = tokens.clone();
        sorted.sort();
        assert_eq!(sorted, tokens);
    }

    #[test]
    fn sentinels_and_malformed_tokens() {
        assert_eq!(ReadFrom::parse(None).unwrap(), ReadFrom::Start);
        assert_eq!(ReadFrom::parse(Some("-1")).unwrap(), ReadFrom::Start);
        assert_eq!(ReadFrom::parse(Some("now")).unwrap(), ReadFrom::Now);
        let bad_tokens = [
            "",
            "abc",
            "-2",
            "12",
            "0_0",
            "0000000000000000",
            "0000000000000000_000000000000000a",
            "0000000000000000_0000000000000000 ",
            "0000000000000000-0000000000000000",
            "+000000000000000_0000000000000000",
            "9999999999999999_9999999999999999",
            "0,1",
            "now2",
        ];
        for bad in bad_tokens {
            assert!(
                matches!(
                    ReadFrom::parse(Some(bad)),
                    Err(ProtocolError::MalformedOffset(_))
                ),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn resolve_uses_tail_only_for_now() {
        let tail = Offset(42);
        assert_eq!(ReadFrom::Start.resolve(tail), Offset::ZERO);
        assert_eq!(ReadFrom::Now.resolve(tail), tail);
        assert_eq!(ReadFrom::At(Offset(7)).resolve(tail), Offset(7));
    }
}
