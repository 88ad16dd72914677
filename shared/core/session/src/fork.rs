//! How a fork's history is stitched from its source chain, for any backend.

use bytes::Bytes;

use crate::content::{Mode, slice_record};
use crate::model::Record;
use crate::offset::Offset;

/// One stretch of a stream's history, `[from, to)`, stored under `stream`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Segment<K> {
    pub stream: K,
    pub from: u64,
    pub to: u64,
}

/// The stretches of a stream whose chain is `chain` (the stream itself first, then its
/// source, its source's source…, each with the offset where it forked from the next), up
/// to `tail`. Returned oldest first: a fork reads its source below its fork offset.
pub fn segments<K>(chain: Vec<(K, Option<u64>)>, tail: u64) -> Vec<Segment<K>> {
    let mut segments = Vec::with_capacity(chain.len());
    let mut to = tail;
    for (stream, fork_offset) in chain {
        // A fork may diverge inside its source's own inherited stretch (sub-offsets).
        let from = fork_offset.map_or(0, |offset| offset.min(to));
        segments.push(Segment { stream, from, to });
        to = from;
    }
    segments.reverse();
    segments
}

/// The part of a stored record (`[start, end)`, raw `data`, committed at `at_ms`) inside
/// `[lo, hi)`, if any.
pub fn clip(
    mode: Mode,
    (start, end): (u64, u64),
    data: Bytes,
    at_ms: i64,
    (lo, hi): (u64, u64),
) -> Option<Record> {
    let (from, to) = (start.max(lo), end.min(hi));
    if from >= to {
        return None;
    }
    let data = if (from, to) == (start, end) {
        data
    } else {
        slice_record(mode, &data, from - start, to - start)
    };
    Some(Record {
        start: Offset(from),
        end: Offset(to),
        data,
        at_ms,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chains_split_at_fork_offsets() {
        // c forked from b at 7; b forked from a at 5 (b's own data starts at 5).
        let got = segments(vec![("c", Some(7)), ("b", Some(5)), ("a", None)], 9);
        let want = vec![
            Segment {
                stream: "a",
                from: 0,
                to: 5,
            },
            Segment {
                stream: "b",
                from: 5,
                to: 7,
            },
            Segment {
                stream: "c",
                from: 7,
                to: 9,
            },
        ];
        assert_eq!(got, want);
        // A sub-offset fork of a fork that itself inherits only up to 4.
        let nested = segments(vec![("l2", Some(2)), ("l1", Some(4)), ("l0", None)], 2);
        assert_eq!(
            nested[0],
            Segment {
                stream: "l0",
                from: 0,
                to: 2
            }
        );
    }

    #[test]
    fn clipping_cuts_bytes_and_json_messages() {
        let bytes = clip(
            Mode::Bytes,
            (10, 16),
            Bytes::from_static(b"abcdef"),
            7,
            (12, 15),
        )
        .unwrap();
        assert_eq!(
            (bytes.start, bytes.end, &bytes.data[..]),
            (Offset(12), Offset(15), &b"cde"[..])
        );
        assert_eq!(bytes.at_ms, 7, "a part keeps its record's commit time");
        let json = clip(
            Mode::Json,
            (0, 3),
            Bytes::from_static(b"1,[2,3],4"),
            7,
            (1, 9),
        )
        .unwrap();
        assert_eq!(&json.data[..], b"[2,3],4");
        assert!(clip(Mode::Bytes, (0, 3), Bytes::from_static(b"abc"), 7, (3, 9)).is_none());
    }
}
