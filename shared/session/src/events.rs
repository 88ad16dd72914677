//! The session event envelope (DESIGN §3): JSON objects with a `type`, and optionally an
//! `id`, an `agent` path, a `parent` id and `data`. Unknown types pass through untouched;
//! this module only reads what the service itself acts on.

use serde::Deserialize;

/// Types a client may send as control (`control.<kind>`).
pub const CONTROL_KINDS: [&str; 4] = ["cancel", "steer", "pause", "resume"];

/// The prefix of every control event type.
pub const CONTROL_PREFIX: &str = "control.";

/// The type agents use to acknowledge control.
pub const CONTROL_ACK: &str = "control.ack";

#[derive(Deserialize)]
struct Envelope<'a> {
    #[serde(rename = "type", borrow)]
    kind: Option<std::borrow::Cow<'a, str>>,
}

/// The `type` of an event, when it is a JSON object with a string `type`.
pub fn event_type(message: &[u8]) -> Option<String> {
    serde_json::from_slice::<Envelope<'_>>(message)
        .ok()
        .and_then(|e| e.kind)
        .map(|k| k.into_owned())
}

/// True for control an agent must act on: `control.*` except its own acknowledgements.
pub fn is_control_request(event_type: &str) -> bool {
    event_type.starts_with(CONTROL_PREFIX) && event_type != CONTROL_ACK
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_only_the_type() {
        assert_eq!(
            event_type(br#"{"type":"control.cancel","data":{"x":[1]}}"#).as_deref(),
            Some("control.cancel")
        );
        assert_eq!(event_type(br#"{"data":1}"#), None);
        assert_eq!(event_type(br#"[1,2]"#), None);
        assert_eq!(
            event_type(br#"{"type":"a\u002eb"}"#).as_deref(),
            Some("a.b")
        );
        assert!(is_control_request("control.steer"));
        assert!(!is_control_request("control.ack"));
        assert!(!is_control_request("message.delta"));
    }
}
