//! Content types and the framing of appended bodies.
//!
//! JSON streams keep message boundaries: a POST body that is an array is flattened one level
//! and every element becomes a message. A stored JSON record holds its messages joined by
//! commas (the inside of an array), so a read concatenates records without re-encoding.
//! Every other content type is an opaque byte stream.

use bytes::{Bytes, BytesMut};
use serde_json::value::RawValue;

use crate::error::ProtocolError;

/// How a stream's bytes are framed, decided by its content type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// `application/json`: units are messages.
    Json,
    /// Anything else: units are bytes.
    Bytes,
}

impl Mode {
    /// The mode of a stream with this content type.
    pub fn of(content_type: &str) -> Mode {
        if media_type(content_type) == "application/json" {
            Mode::Json
        } else {
            Mode::Bytes
        }
    }
}

/// The deepest nesting of arrays and objects a JSON body may have, counted from its root
/// (`[[1]]` is 2): HTTP bodies of JSON streams and WebSocket requests alike; deeper is
/// refused with [`ProtocolError::JsonTooDeep`]. Below serde_json's own limit (128) with
/// room to spare, so every event stored can still be parsed inside the envelopes it is
/// later sent in (push frames, control responses, read arrays), by any client.
pub const MAX_JSON_DEPTH: usize = 100;

/// Checks that `json` nests arrays and objects at most [`MAX_JSON_DEPTH`] levels deep,
/// without parsing it (one pass; brackets inside strings do not count). Says nothing
/// about whether it is valid JSON otherwise.
pub fn check_depth(json: &[u8]) -> Result<(), ProtocolError> {
    let mut depth = 0usize;
    for (_, b) in outside_strings(json) {
        match b {
            b'[' | b'{' => {
                depth += 1;
                if depth > MAX_JSON_DEPTH {
                    return Err(ProtocolError::JsonTooDeep {
                        limit: MAX_JSON_DEPTH,
                    });
                }
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    Ok(())
}

/// The bytes of `json` that are not inside a string, with their index: what its structure
/// (brackets, commas) is read from without parsing it.
fn outside_strings(json: &[u8]) -> impl Iterator<Item = (usize, u8)> + '_ {
    let (mut in_string, mut escaped) = (false, false);
    json.iter().enumerate().filter_map(move |(i, &b)| {
        if in_string {
            match b {
                _ if escaped => escaped = false,
                b'\\' => escaped = true,
                b'"' => in_string = false,
                _ => {}
            }
            return None;
        }
        if b == b'"' {
            in_string = true;
            return None;
        }
        Some((i, b))
    })
}

/// The content type a stream gets when the creator names none.
pub const DEFAULT_CONTENT_TYPE: &str = "application/octet-stream";

/// The media type alone, lower-cased, without parameters: what two content types must share
/// to match (`Application/JSON; charset=utf-8` matches `application/json`).
pub fn media_type(content_type: &str) -> String {
    content_type
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase()
}

/// Whether an append's content type may go into a stream of `stream_type`.
pub fn content_types_match(stream_type: &str, request_type: &str) -> bool {
    media_type(stream_type) == media_type(request_type)
}

/// Checks that a request's `Content-Type` is a syntactically valid media type.
pub fn validate_content_type(value: &str) -> Result<(), ProtocolError> {
    let media = media_type(value);
    let valid_token = |s: &str| {
        !s.is_empty()
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"!#$&-^_.+".contains(&b))
    };
    match media.split_once('/') {
        Some((kind, sub)) if valid_token(kind) && valid_token(sub) => Ok(()),
        _ => Err(ProtocolError::InvalidContentType(crate::offset::truncate(
            value,
        ))),
    }
}

/// An append body, framed for its stream: the data to store and how many units it holds.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Payload {
    /// Bytes as stored: raw bytes, or JSON messages joined by commas.
    pub data: Bytes,
    /// Units in `data`: messages for JSON, bytes otherwise.
    pub units: u64,
}

impl Payload {
    /// Frames a request body for a stream in `mode`. An empty body is an empty payload; for
    /// JSON, `allow_empty_array` admits `[]` (creation) where an append must reject it.
    pub fn frame(
        mode: Mode,
        body: Bytes,
        allow_empty_array: bool,
    ) -> Result<Payload, ProtocolError> {
        match mode {
            Mode::Bytes => Ok(Payload {
                units: body.len() as u64,
                data: body,
            }),
            Mode::Json if body.is_empty() => Ok(Payload::default()),
            Mode::Json => frame_json(&body, allow_empty_array),
        }
    }

    /// True when there is nothing to append.
    pub fn is_empty(&self) -> bool {
        self.units == 0
    }
}

fn frame_json(body: &[u8], allow_empty_array: bool) -> Result<Payload, ProtocolError> {
    // First: serde_json skips the inside of a raw value without any depth limit.
    check_depth(body)?;
    let invalid = |e: serde_json::Error| ProtocolError::InvalidJson(e.to_string());
    let value: &RawValue = serde_json::from_slice(body).map_err(invalid)?;
    let text = value.get();
    if !text.starts_with('[') {
        return Ok(Payload {
            data: Bytes::copy_from_slice(text.as_bytes()),
            units: 1,
        });
    }
    let messages: Vec<&RawValue> = serde_json::from_str(text).map_err(invalid)?;
    if messages.is_empty() {
        return if allow_empty_array {
            Ok(Payload::default())
        } else {
            Err(ProtocolError::EmptyJsonArray)
        };
    }
    let mut data = BytesMut::with_capacity(text.len());
    for (i, message) in messages.iter().enumerate() {
        if i > 0 {
            data.extend_from_slice(b",");
        }
        data.extend_from_slice(message.get().as_bytes());
    }
    Ok(Payload {
        data: data.freeze(),
        units: messages.len() as u64,
    })
}

/// Splits a stored JSON record (messages joined by commas) into its messages.
pub fn json_messages(record: &[u8]) -> Vec<&[u8]> {
    if record.is_empty() {
        return Vec::new();
    }
    // Records were validated when appended; a split on top-level commas is all that's needed.
    let mut messages = Vec::new();
    let (mut depth, mut start) = (0i32, 0);
    for (i, b) in outside_strings(record) {
        match b {
            b'[' | b'{' => depth += 1,
            b']' | b'}' => depth -= 1,
            b',' if depth == 0 => {
                messages.push(&record[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    messages.push(&record[start..]);
    messages
}

/// Slices units `[from, to)` (relative to the record's start) out of a stored record.
pub fn slice_record(mode: Mode, data: &Bytes, from: u64, to: u64) -> Bytes {
    match mode {
        Mode::Bytes => data.slice(from as usize..to as usize),
        Mode::Json => {
            let messages = json_messages(data);
            let picked = &messages[from as usize..to as usize];
            Bytes::from(picked.join(&b","[..]))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn json(body: &str) -> Result<Payload, ProtocolError> {
        Payload::frame(Mode::Json, Bytes::from(body.to_owned()), false)
    }

    #[test]
    fn modes_and_matching_ignore_case_and_parameters() {
        assert_eq!(Mode::of("Application/JSON; charset=utf-8"), Mode::Json);
        assert_eq!(Mode::of("application/ndjson"), Mode::Bytes);
        assert!(content_types_match(
            "text/plain",
            "TEXT/PLAIN;charset=utf-8"
        ));
        assert!(!content_types_match("text/plain", "application/json"));
        assert!(validate_content_type("application/vnd.api+json").is_ok());
        assert!(validate_content_type("nonsense").is_err());
        assert!(validate_content_type("a b/c").is_err());
    }

    #[test]
    fn json_arrays_flatten_one_level() {
        assert_eq!(json(r#"{"a":1}"#).unwrap().units, 1);
        let two = json(r#"[{"a":1}, {"b":[2,3]}]"#).unwrap();
        assert_eq!(
            (two.units, &two.data[..]),
            (2, &br#"{"a":1},{"b":[2,3]}"#[..])
        );
        assert_eq!(json("[[1,2],[3,4]]").unwrap().units, 2);
        let nested = json("[[[1,2,3]]]").unwrap();
        assert_eq!((nested.units, &nested.data[..]), (1, &b"[[1,2,3]]"[..]));
    }

    #[test]
    fn json_rejects_invalid_and_empty_arrays() {
        assert!(matches!(json("{nope"), Err(ProtocolError::InvalidJson(_))));
        assert!(matches!(json("[]"), Err(ProtocolError::EmptyJsonArray)));
        let created = Payload::frame(Mode::Json, Bytes::from_static(b"[]"), true).unwrap();
        assert!(created.is_empty());
    }

    #[test]
    fn json_deeper_than_the_limit_is_refused() {
        let nested = |depth: usize| format!("{}{}", "[".repeat(depth), "]".repeat(depth));
        assert_eq!(check_depth(nested(MAX_JSON_DEPTH).as_bytes()), Ok(()));
        assert!(json(&nested(MAX_JSON_DEPTH)).is_ok());
        let too_deep = ProtocolError::JsonTooDeep {
            limit: MAX_JSON_DEPTH,
        };
        assert_eq!(json(&nested(MAX_JSON_DEPTH + 1)), Err(too_deep.clone()));
        assert_eq!(json(&nested(100_000)), Err(too_deep.clone()));
        let objects = format!(
            "{}1{}",
            r#"{"a":"#.repeat(MAX_JSON_DEPTH + 1),
            "}".repeat(MAX_JSON_DEPTH + 1)
        );
        assert_eq!(json(&objects), Err(too_deep));
        assert!(too_deep_message_names_the_limit());
        // Brackets in strings are text, not nesting.
        let text = format!(r#"{{"t":"{}\"{}"}}"#, "[".repeat(500), "{".repeat(500));
        assert_eq!(check_depth(text.as_bytes()), Ok(()));
        assert!(json(&text).is_ok());
    }

    fn too_deep_message_names_the_limit() -> bool {
        ProtocolError::JsonTooDeep {
            limit: MAX_JSON_DEPTH,
        }
        .to_string()
        .contains("100 levels")
    }

    #[test]
    fn stored_records_split_back_into_messages() {
        let p = json(r#"[{"t":"a,b]"},"x\"y,",[1,[2]],3]"#).unwrap();
        let messages = json_messages(&p.data);
        assert_eq!(
            messages,
            vec![&br#"{"t":"a,b]"}"#[..], br#""x\"y,""#, b"[1,[2]]", b"3"]
        );
        assert_eq!(
            &slice_record(Mode::Json, &p.data, 1, 3)[..],
            br#""x\"y,",[1,[2]]"#
        );
        assert_eq!(
            &slice_record(Mode::Bytes, &Bytes::from_static(b"hello"), 1, 3)[..],
            b"el"
        );
    }
}
