//! Frames the server pushes to clients. Every frame is one JSON object with a `type`.
//!
//! `events` frames carry the session, each event with its offset, the offset of the first
//! (`from`) and the offset after the last (`next`), so a client can order, dedupe and spot
//! gaps. No frame exceeds [`MAX_FRAME_BYTES`]: larger batches are split, and an event that
//! cannot fit at all is announced by an `oversize` frame for the client to fetch over HTTP.

use agentwire_session::{Event, Offset};
use bytes::Bytes;
use serde_json::{Value, json};

/// API Gateway's WebSocket message limit.
pub const MAX_FRAME_BYTES: usize = 128 * 1024;

/// Room kept for the envelope around the events of a frame.
const ENVELOPE_BYTES: usize = 512;

/// Frames carrying `events` (in offset order) of `session`.
pub fn event_frames(session: &str, events: &[Event]) -> Vec<Bytes> {
    let session_json = Value::from(session).to_string();
    let mut frames = Vec::new();
    let mut body = String::new();
    let mut first: Option<Offset> = None;
    let mut last = Offset::ZERO;
    let flush = |frames: &mut Vec<Bytes>,
                 body: &mut String,
                 first: &mut Option<Offset>,
                 last: Offset| {
        if let Some(from) = first.take() {
            frames.push(Bytes::from(format!(
                r#"{{"type":"events","session":{session_json},"from":"{from}","next":"{}","events":[{body}]}}"#,
                last.advance(1)
            )));
            body.clear();
        }
    };
    for event in events {
        let item = format!(
            r#"{{"offset":"{}","event":{}}}"#,
            event.offset,
            String::from_utf8_lossy(&event.json)
        );
        if item.len() + session_json.len() + ENVELOPE_BYTES > MAX_FRAME_BYTES {
            flush(&mut frames, &mut body, &mut first, last);
            frames.push(Bytes::from(
                json!({
                    "type": "oversize",
                    "session": session,
                    "offset": event.offset.to_string(),
                    "next": event.offset.advance(1).to_string(),
                    "bytes": event.json.len(),
                })
                .to_string(),
            ));
            continue;
        }
        if body.len() + item.len() + session_json.len() + ENVELOPE_BYTES > MAX_FRAME_BYTES {
            flush(&mut frames, &mut body, &mut first, last);
        }
        if first.is_none() {
            first = Some(event.offset);
        } else {
            body.push(',');
        }
        body.push_str(&item);
        last = event.offset;
    }
    flush(&mut frames, &mut body, &mut first, last);
    frames
}

/// An error answering a client request, naming the problem.
pub fn error(code: &str, message: &str, action: Option<&str>, id: Option<&Value>) -> Bytes {
    let mut frame = json!({ "type": "error", "code": code, "message": message });
    if let Some(action) = action {
        frame["action"] = json!(action);
    }
    if let Some(id) = id {
        frame["id"] = id.clone();
    }
    Bytes::from(frame.to_string())
}

/// A reply to a request, echoing its `id`.
pub fn reply(mut frame: Value, id: Option<&Value>) -> Bytes {
    if let Some(id) = id {
        frame["id"] = id.clone();
    }
    Bytes::from(frame.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(offset: u64, size: usize) -> Event {
        Event {
            offset: Offset(offset),
            json: Bytes::from(format!(
                r#"{{"type":"message.delta","data":{{"text":"{}"}}}}"#,
                "x".repeat(size)
            )),
            at_ms: 0,
        }
    }

    #[test]
    fn small_batches_fit_one_frame() {
        let frames = event_frames("s", &[event(3, 1), event(4, 1)]);
        assert_eq!(frames.len(), 1);
        let frame: Value = serde_json::from_slice(&frames[0]).unwrap();
        assert_eq!(frame["from"], "0000000000000000_0000000000000003");
        assert_eq!(frame["next"], "0000000000000000_0000000000000005");
        assert_eq!(
            frame["events"][1]["offset"],
            "0000000000000000_0000000000000004"
        );
        assert_eq!(frame["events"][1]["event"]["type"], "message.delta");
    }

    #[test]
    fn large_batches_split_and_oversized_events_are_announced() {
        let events: Vec<_> = (0..10)
            .map(|i| event(i, 30_000))
            .chain([event(10, 200_000), event(11, 5)])
            .collect();
        let frames = event_frames("s", &events);
        let mut seen = Vec::new();
        for frame in &frames {
            assert!(
                frame.len() <= MAX_FRAME_BYTES,
                "frame of {} bytes",
                frame.len()
            );
            let frame: Value = serde_json::from_slice(frame).unwrap();
            match frame["type"].as_str().unwrap() {
                "events" => seen.extend(
                    frame["events"]
                        .as_array()
                        .unwrap()
                        .iter()
                        .map(|e| e["offset"].clone()),
                ),
                "oversize" => {
                    assert_eq!(frame["bytes"], event(10, 200_000).json.len());
                    seen.push(frame["offset"].clone());
                }
                other => panic!("unexpected frame {other}"),
            }
        }
        let expected: Vec<Value> = (0..12)
            .map(|i| Value::from(Offset(i).to_string()))
            .collect();
        assert_eq!(seen, expected, "every event once, in order");
        assert!(frames.len() >= 4);
    }
}
