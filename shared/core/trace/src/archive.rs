//! The archive format: gzip JSON lines, one span per line, under a date-partitioned key.

use std::io::{Read, Write};

use flate2::Compression;
use flate2::read::MultiGzDecoder;
use flate2::write::GzEncoder;
use time::OffsetDateTime;

use agentwire_session::path::{encode_segment, percent_decode};

use crate::span::Span;

/// Why an archive could not be written or read.
#[derive(Debug, thiserror::Error)]
pub enum TraceError {
    #[error("span {span_id} cannot be encoded as JSON: {source}")]
    Encode {
        span_id: String,
        source: serde_json::Error,
    },
    #[error("the archive cannot be compressed: {0}")]
    Compress(#[source] std::io::Error),
    #[error("the archive is not valid gzip: {0}")]
    Decompress(#[source] std::io::Error),
    #[error("line {line} of the archive is not a span: {source}")]
    Decode {
        /// 1-based.
        line: usize,
        source: serde_json::Error,
    },
}

/// The spans as gzip JSON lines: one JSON object per line, each line ending in `\n`.
pub fn encode_jsonl_gz(spans: &[Span]) -> Result<Vec<u8>, TraceError> {
    let mut gzip = GzEncoder::new(Vec::new(), Compression::default());
    for span in spans {
        let mut line = serde_json::to_vec(span).map_err(|source| TraceError::Encode {
            span_id: span.span_id.clone(),
            source,
        })?;
        line.push(b'\n');
        gzip.write_all(&line).map_err(TraceError::Compress)?;
    }
    gzip.finish().map_err(TraceError::Compress)
}

/// The spans of an archive written by [`encode_jsonl_gz`]. Blank lines are ignored, and
/// concatenated gzip members are read as one archive.
pub fn decode_jsonl_gz(bytes: &[u8]) -> Result<Vec<Span>, TraceError> {
    let mut text = Vec::new();
    MultiGzDecoder::new(bytes)
        .read_to_end(&mut text)
        .map_err(TraceError::Decompress)?;
    text.split(|&b| b == b'\n')
        .enumerate()
        .filter(|(_, line)| !line.trim_ascii().is_empty())
        .map(|(index, line)| {
            serde_json::from_slice(line).map_err(|source| TraceError::Decode {
                line: index + 1,
                source,
            })
        })
        .collect()
}

/// Where a session's trace is archived:
/// `traces/dt=YYYY-MM-DD/tenant=<tenant>/<session>.jsonl.gz`, dated by `archived_at_ms` in
/// UTC (the archiver passes the session's start, so a re-archive replaces the object) (Hive-style partitions for Athena and DuckDB). Tenant and session are
/// percent-escaped except for `A-Z a-z 0-9 - _ . ~`, so a `/`, `=` or any other character
/// in a name cannot add or change a partition.
pub fn object_key(tenant: &str, session: &str, archived_at_ms: i64) -> String {
    format!(
        "traces/dt={}/tenant={}/{}.jsonl.gz",
        utc_day(archived_at_ms),
        encode_segment(tenant),
        encode_segment(session),
    )
}

/// The UTC day of `ms` (unix milliseconds), `YYYY-MM-DD`: the `dt` of keys, and the day a
/// daily budget counts in.
pub fn utc_day(ms: i64) -> String {
    let date = OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .unwrap_or(OffsetDateTime::UNIX_EPOCH)
        .date();
    format!(
        "{:04}-{:02}-{:02}",
        date.year(),
        u8::from(date.month()),
        date.day()
    )
}

/// The parts of a key [`object_key`] made, under any prefix (`traces/`, `scores/`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectKey {
    /// `traces`, `scores`, ….
    pub prefix: String,
    /// `YYYY-MM-DD`.
    pub day: String,
    /// Decoded.
    pub tenant: String,
    /// Decoded.
    pub session: String,
}

impl ObjectKey {
    /// Reads `<prefix>/dt=<day>/tenant=<tenant>/<session>.jsonl.gz`; `None` for any other
    /// shape, or a name that does not decode.
    pub fn parse(key: &str) -> Option<ObjectKey> {
        let mut parts = key.split('/');
        let prefix = parts.next()?;
        let day = parts.next()?.strip_prefix("dt=")?;
        let tenant = parts.next()?.strip_prefix("tenant=")?;
        let session = parts.next()?.strip_suffix(".jsonl.gz")?;
        let valid_day = day.len() == 10
            && day.bytes().enumerate().all(|(i, b)| {
                if i == 4 || i == 7 {
                    b == b'-'
                } else {
                    b.is_ascii_digit()
                }
            });
        if parts.next().is_some() || prefix.is_empty() || !valid_day || session.is_empty() {
            return None;
        }
        Some(ObjectKey {
            prefix: prefix.to_owned(),
            day: day.to_owned(),
            tenant: percent_decode(tenant).filter(|t| !t.is_empty())?,
            session: percent_decode(session)?,
        })
    }

    /// The key of the same trace's object under `prefix` (its scores under `scores`).
    pub fn under(&self, prefix: &str) -> String {
        format!(
            "{prefix}/dt={}/tenant={}/{}.jsonl.gz",
            self.day,
            encode_segment(&self.tenant),
            encode_segment(&self.session)
        )
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn days_are_utc_calendar_days() {
        use super::utc_day;
        assert_eq!(utc_day(0), "1970-01-01");
        assert_eq!(utc_day(86_400_000 - 1), "1970-01-01");
        assert_eq!(utc_day(1_764_547_200_000), "2025-12-01");
        assert_eq!(utc_day(951_782_400_000), "2000-02-29");
        assert_eq!(utc_day(-1), "1969-12-31");
    }

    use serde_json::{Map, json};

    use super::*;
    use crate::{SpanEvent, SpanKind, SpanStatus};

    fn spans() -> Vec<Span> {
        let mut attributes = Map::new();
        attributes.insert("gen_ai.operation.name".into(), json!("chat"));
        attributes.insert("gen_ai.usage.output_tokens".into(), json!(30));
        attributes.insert("text".into(), json!("line one\nline two ✓"));
        let span = Span {
            trace_id: "0123456789abcdef0123456789abcdef".into(),
            span_id: "0123456789abcdef".into(),
            parent_span_id: None,
            name: "invoke_agent planner".into(),
            kind: SpanKind::Internal,
            start_time_unix_nano: 1_750_000_000_000_000_000,
            end_time_unix_nano: 1_750_000_000_123_000_000,
            attributes: attributes.clone(),
            events: vec![SpanEvent {
                name: "control.cancel".into(),
                time_unix_nano: 1_750_000_000_100_000_000,
                attributes,
            }],
            status: SpanStatus::Unset,
        };
        let child = Span {
            span_id: "fedcba9876543210".into(),
            parent_span_id: Some(span.span_id.clone()),
            kind: SpanKind::Client,
            status: SpanStatus::Error,
            events: Vec::new(),
            ..span.clone()
        };
        vec![span, child]
    }

    #[test]
    fn spans_round_trip_through_gzip_json_lines() {
        let bytes = encode_jsonl_gz(&spans()).unwrap();
        assert_eq!(&bytes[..2], [0x1f, 0x8b], "gzip magic");
        assert_eq!(decode_jsonl_gz(&bytes).unwrap(), spans());

        let mut text = String::new();
        MultiGzDecoder::new(&bytes[..])
            .read_to_string(&mut text)
            .unwrap();
        assert!(text.ends_with('\n'));
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 2);
        for line in lines {
            let object: serde_json::Value = serde_json::from_str(line).unwrap();
            assert!(object.is_object());
            assert_eq!(object["start_time_unix_nano"], 1_750_000_000_000_000_000u64);
        }
        assert!(
            decode_jsonl_gz(&encode_jsonl_gz(&[]).unwrap())
                .unwrap()
                .is_empty()
        );
    }

    #[test]
    fn bad_archives_are_errors() {
        assert!(matches!(
            decode_jsonl_gz(b"plain"),
            Err(TraceError::Decompress(_))
        ));
        let mut gzip = GzEncoder::new(Vec::new(), Compression::default());
        gzip.write_all(b"{\"a\":1}\n").unwrap();
        let bytes = gzip.finish().unwrap();
        assert!(matches!(
            decode_jsonl_gz(&bytes),
            Err(TraceError::Decode { line: 1, .. })
        ));
    }

    #[test]
    fn keys_parse_back_into_their_parts() {
        let key = object_key("a/b=c", "../x/y z é", 1_750_031_999_999);
        let parsed = ObjectKey::parse(&key).unwrap();
        assert_eq!(
            parsed,
            ObjectKey {
                prefix: "traces".into(),
                day: "2025-06-15".into(),
                tenant: "a/b=c".into(),
                session: "../x/y z é".into(),
            }
        );
        assert_eq!(parsed.under("traces"), key);
        assert_eq!(
            parsed.under("scores"),
            "scores/dt=2025-06-15/tenant=a%2Fb%3Dc/..%2Fx%2Fy%20z%20%C3%A9.jsonl.gz"
        );
        for bad in [
            "traces/dt=2025-06-15/tenant=acme/s.jsonl",
            "traces/dt=2025-6-15/tenant=acme/s.jsonl.gz",
            "traces/tenant=acme/s.jsonl.gz",
            "traces/dt=2025-06-15/tenant=/s.jsonl.gz",
            "traces/dt=2025-06-15/tenant=acme/x/s.jsonl.gz",
            "traces/dt=2025-06-15/tenant=acme/.jsonl.gz",
        ] {
            assert_eq!(ObjectKey::parse(bad), None, "{bad}");
        }
    }

    #[test]
    fn keys_partition_by_utc_date_and_escape_names() {
        // 2025-06-15T23:59:59.999Z, and a millisecond later.
        let late = 1_750_031_999_999;
        assert_eq!(
            object_key("acme", "s-1", late),
            "traces/dt=2025-06-15/tenant=acme/s-1.jsonl.gz"
        );
        assert_eq!(
            object_key("acme", "s-1", late + 1),
            "traces/dt=2025-06-16/tenant=acme/s-1.jsonl.gz"
        );
        assert_eq!(
            object_key("a/b=c", "../x/y z é", 0),
            "traces/dt=1970-01-01/tenant=a%2Fb%3Dc/..%2Fx%2Fy%20z%20%C3%A9.jsonl.gz"
        );
        assert_eq!(
            object_key("t", "s", i64::MAX),
            "traces/dt=1970-01-01/tenant=t/s.jsonl.gz",
            "out of range falls back to the epoch"
        );
    }
}
