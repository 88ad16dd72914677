//! The session event envelope (docs/ARCHITECTURE.md §3): JSON objects with a `type`, and
//! optionally an `id`, an `agent` path, a `parent` id, a `role` and `data`.
//!
//! [`Envelope`] is the typed form every part of agentwire builds and reads events with.
//! Unknown types and unknown fields pass through untouched: an envelope parsed from JSON
//! serializes back to the same JSON value. [`EventType`] names the known types, so code
//! matches on variants rather than on strings.

use std::borrow::Cow;
use std::fmt;

use serde::de::{self, Deserializer};
use serde::ser::{SerializeMap, Serializer};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

use crate::offset::Offset;

/// Types a client may send as control (`control.<kind>`).
pub const CONTROL_KINDS: [&str; 4] = ["cancel", "steer", "pause", "resume"];

/// The prefix of every control event type.
pub const CONTROL_PREFIX: &str = "control.";

/// The type agents use to acknowledge control.
pub const CONTROL_ACK: &str = "control.ack";

/// The `role` of a message a person wrote.
pub const ROLE_USER: &str = "user";

/// The `role` of a message an agent wrote.
pub const ROLE_ASSISTANT: &str = "assistant";

/// The envelope's own fields, in the order they are written; everything else is `extra`.
pub const ENVELOPE_FIELDS: [&str; 6] = ["type", "id", "agent", "parent", "role", "data"];

/// An event's `type`: one of the types agentwire knows, or any other string.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum EventType {
    /// `message.start`: a message `id` begins (with its `role`).
    MessageStart,
    /// `message.delta`: more of message `id`'s text, in `data.text`.
    MessageDelta,
    /// `message.end`: message `id` is complete (`data.stopped` when a cancel cut it short).
    MessageEnd,
    /// `tool.call`: an agent calls a tool (call `id`, `data.tool` and its arguments).
    ToolCall,
    /// `tool.result`: what tool call `id` returned.
    ToolResult,
    /// `agent.status`: an agent says what it is doing.
    AgentStatus,
    /// `agent.lost`: the worker writing reply `id` (when it said which) lost its lease
    /// mid-work (it died or stalled); the user's message is woken again for another.
    AgentLost,
    /// `control.cancel`: stop (all replies, or the one `data.message_id` names).
    ControlCancel,
    /// `control.steer`: redirect the agent mid-reply.
    ControlSteer,
    /// `control.pause`: hold output until a resume.
    ControlPause,
    /// `control.resume`: continue after a pause.
    ControlResume,
    /// `control.ack`: an agent acted on control (see [`ControlAck`]).
    ControlAck,
    /// `presence.join`: a connection started following the session.
    PresenceJoin,
    /// `presence.leave`: a connection stopped following the session.
    PresenceLeave,
    /// Any other type, kept as written. Never one of the known types' names.
    Other(String),
}

impl EventType {
    /// Every known type, in a stable order (the order of the client fixture).
    pub const KNOWN: [EventType; 14] = [
        EventType::MessageStart,
        EventType::MessageDelta,
        EventType::MessageEnd,
        EventType::ToolCall,
        EventType::ToolResult,
        EventType::AgentStatus,
        EventType::AgentLost,
        EventType::ControlCancel,
        EventType::ControlSteer,
        EventType::ControlPause,
        EventType::ControlResume,
        EventType::ControlAck,
        EventType::PresenceJoin,
        EventType::PresenceLeave,
    ];

    /// The type named `name` (known or not).
    pub fn parse(name: &str) -> EventType {
        EventType::known(name).unwrap_or_else(|| EventType::Other(name.to_owned()))
    }

    fn known(name: &str) -> Option<EventType> {
        Some(match name {
            "message.start" => EventType::MessageStart,
            "message.delta" => EventType::MessageDelta,
            "message.end" => EventType::MessageEnd,
            "tool.call" => EventType::ToolCall,
            "tool.result" => EventType::ToolResult,
            "agent.status" => EventType::AgentStatus,
            "agent.lost" => EventType::AgentLost,
            "control.cancel" => EventType::ControlCancel,
            "control.steer" => EventType::ControlSteer,
            "control.pause" => EventType::ControlPause,
            "control.resume" => EventType::ControlResume,
            CONTROL_ACK => EventType::ControlAck,
            "presence.join" => EventType::PresenceJoin,
            "presence.leave" => EventType::PresenceLeave,
            _ => return None,
        })
    }

    /// The type's name on the wire.
    pub fn as_str(&self) -> &str {
        match self {
            EventType::MessageStart => "message.start",
            EventType::MessageDelta => "message.delta",
            EventType::MessageEnd => "message.end",
            EventType::ToolCall => "tool.call",
            EventType::ToolResult => "tool.result",
            EventType::AgentStatus => "agent.status",
            EventType::AgentLost => "agent.lost",
            EventType::ControlCancel => "control.cancel",
            EventType::ControlSteer => "control.steer",
            EventType::ControlPause => "control.pause",
            EventType::ControlResume => "control.resume",
            EventType::ControlAck => CONTROL_ACK,
            EventType::PresenceJoin => "presence.join",
            EventType::PresenceLeave => "presence.leave",
            EventType::Other(name) => name,
        }
    }

    /// The type of control of `kind`: `control.<kind>`.
    pub fn control(kind: &ControlKind) -> EventType {
        match kind {
            ControlKind::Cancel => EventType::ControlCancel,
            ControlKind::Steer => EventType::ControlSteer,
            ControlKind::Pause => EventType::ControlPause,
            ControlKind::Resume => EventType::ControlResume,
            ControlKind::Other(kind) => EventType::from(format!("{CONTROL_PREFIX}{kind}")),
        }
    }

    /// The kind of control an agent must act on: `control.*` except acknowledgements,
    /// including kinds agentwire does not know (appended over HTTP).
    pub fn control_kind(&self) -> Option<ControlKind> {
        match self {
            EventType::ControlCancel => Some(ControlKind::Cancel),
            EventType::ControlSteer => Some(ControlKind::Steer),
            EventType::ControlPause => Some(ControlKind::Pause),
            EventType::ControlResume => Some(ControlKind::Resume),
            // `control.ack` and the known kinds never parse as `Other`.
            EventType::Other(name) => name
                .strip_prefix(CONTROL_PREFIX)
                .map(|kind| ControlKind::Other(kind.to_owned())),
            _ => None,
        }
    }

    /// True for control an agent must act on (see [`EventType::control_kind`]).
    pub fn is_control_request(&self) -> bool {
        self.control_kind().is_some()
    }

    /// True for `message.start`, `message.delta` and `message.end`.
    pub fn is_message(&self) -> bool {
        matches!(
            self,
            EventType::MessageStart | EventType::MessageDelta | EventType::MessageEnd
        )
    }

    /// The `type` of a raw event, reading nothing else: None unless it is a JSON object
    /// with a string `type`. For scans that only filter by type.
    pub fn peek(json: &[u8]) -> Option<EventType> {
        #[derive(Deserialize)]
        struct TypeOnly<'a> {
            #[serde(rename = "type", borrow)]
            kind: Option<Cow<'a, str>>,
        }
        let kind = serde_json::from_slice::<TypeOnly<'_>>(json).ok()?.kind?;
        Some(match kind {
            Cow::Borrowed(name) => EventType::parse(name),
            Cow::Owned(name) => EventType::from(name),
        })
    }
}

impl From<String> for EventType {
    fn from(name: String) -> EventType {
        EventType::known(&name).unwrap_or(EventType::Other(name))
    }
}

impl From<&str> for EventType {
    fn from(name: &str) -> EventType {
        EventType::parse(name)
    }
}

impl fmt::Display for EventType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for EventType {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for EventType {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<EventType, D::Error> {
        Cow::<'de, str>::deserialize(deserializer).map(|name| match name {
            Cow::Borrowed(name) => EventType::parse(name),
            Cow::Owned(name) => EventType::from(name),
        })
    }
}

/// The kind of a control event (`control.<kind>`).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum ControlKind {
    Cancel,
    Steer,
    Pause,
    Resume,
    /// A kind agentwire does not know, kept as written (clients cannot send these over
    /// the WebSocket API, but an HTTP append can). Never a known kind's name.
    Other(String),
}

impl ControlKind {
    /// The kinds clients may send over the WebSocket API, in the order of [`CONTROL_KINDS`].
    pub const KNOWN: [ControlKind; 4] = [
        ControlKind::Cancel,
        ControlKind::Steer,
        ControlKind::Pause,
        ControlKind::Resume,
    ];

    /// The kind named `name` (known or not).
    pub fn parse(name: &str) -> ControlKind {
        match name {
            "cancel" => ControlKind::Cancel,
            "steer" => ControlKind::Steer,
            "pause" => ControlKind::Pause,
            "resume" => ControlKind::Resume,
            other => ControlKind::Other(other.to_owned()),
        }
    }

    /// The kind's name on the wire (`cancel` for `control.cancel`).
    pub fn as_str(&self) -> &str {
        match self {
            ControlKind::Cancel => "cancel",
            ControlKind::Steer => "steer",
            ControlKind::Pause => "pause",
            ControlKind::Resume => "resume",
            ControlKind::Other(name) => name,
        }
    }

    /// False for [`ControlKind::Other`].
    pub fn is_known(&self) -> bool {
        !matches!(self, ControlKind::Other(_))
    }
}

impl fmt::Display for ControlKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What a `control.ack` says in its `data`: which control (`ref`, its offset) of which
/// `kind` was acted on, and where the agent's output stopped (`cut`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ControlAck {
    pub reference: Offset,
    pub kind: ControlKind,
    pub cut: Offset,
}

/// Why bytes or a JSON value are not an [`Envelope`].
#[derive(Debug, thiserror::Error)]
pub enum EnvelopeError {
    #[error("event is not JSON: {0}")]
    Json(#[from] serde_json::Error),
    #[error("event is not a JSON object")]
    NotAnObject,
    #[error("event has no string `type`")]
    NoType,
}

/// One session event. `id`, `agent`, `parent` and `role` are set when the event has them
/// as strings; any other field (or one of those that is not a string) is kept in `extra`,
/// so parsing and serializing again gives the same JSON value.
#[derive(Debug, Clone, PartialEq)]
pub struct Envelope {
    /// `type`.
    pub kind: EventType,
    /// The message or tool call the event belongs to.
    pub id: Option<String>,
    /// The path of the agent that wrote it (`planner/search-1`).
    pub agent: Option<String>,
    /// The id of the event this one works for (a reply's question, a sub-agent's message).
    pub parent: Option<String>,
    /// Who wrote a message: [`ROLE_USER`] or [`ROLE_ASSISTANT`].
    pub role: Option<String>,
    /// The event's payload, whatever JSON it is (`null` included).
    pub data: Option<Value>,
    /// Every other field, as written (`user`, `connection`, `ts`, …).
    pub extra: Map<String, Value>,
}

impl Envelope {
    /// An event of type `kind` with nothing else.
    pub fn new(kind: EventType) -> Envelope {
        Envelope {
            kind,
            id: None,
            agent: None,
            parent: None,
            role: None,
            data: None,
            extra: Map::new(),
        }
    }

    /// `message.start` of message `id` written by `role`.
    pub fn message_start(id: impl Into<String>, role: impl Into<String>) -> Envelope {
        Envelope::new(EventType::MessageStart)
            .with_id(id)
            .with_role(role)
    }

    /// `message.delta`: `text` more of message `id`.
    pub fn message_delta(id: impl Into<String>, text: impl Into<String>) -> Envelope {
        Envelope::new(EventType::MessageDelta)
            .with_id(id)
            .with_data(json!({ "text": text.into() }))
    }

    /// `message.end` of message `id`.
    pub fn message_end(id: impl Into<String>) -> Envelope {
        Envelope::new(EventType::MessageEnd).with_id(id)
    }

    /// `message.end` of message `id`, cut short by a cancel (`data.stopped`).
    pub fn message_stopped(id: impl Into<String>) -> Envelope {
        Envelope::message_end(id).with_data(json!({ "stopped": true }))
    }

    /// A whole message `user` wrote: `message.start` (role `user`, naming the `user`),
    /// one `message.delta` with `text`, and `message.end` (role `user`).
    pub fn user_message(id: &str, user: &str, text: impl Into<String>) -> [Envelope; 3] {
        [
            Envelope::message_start(id, ROLE_USER).with_extra("user", user),
            Envelope::message_delta(id, text),
            Envelope::message_end(id).with_role(ROLE_USER),
        ]
    }

    /// `control.<kind>` with `data` (e.g. `{"message_id": …}` for a cancel of one reply).
    pub fn control(kind: &ControlKind, data: Value) -> Envelope {
        Envelope::new(EventType::control(kind)).with_data(data)
    }

    /// `control.ack`: the control at `reference` of `kind` was acted on; this agent's
    /// output stopped at `cut`.
    pub fn control_ack(reference: Offset, kind: &ControlKind, cut: Offset) -> Envelope {
        Envelope::new(EventType::ControlAck).with_data(json!({
            "ref": reference.to_string(),
            "kind": kind.as_str(),
            "cut": cut.to_string(),
        }))
    }

    /// `presence.join`: `connection` of `user` follows the session.
    pub fn presence_join(user: &str, connection: &str) -> Envelope {
        Envelope::new(EventType::PresenceJoin)
            .with_data(json!({ "user": user, "connection": connection }))
    }

    /// `presence.leave`: `connection` of `user` stopped following the session.
    pub fn presence_leave(user: &str, connection: &str) -> Envelope {
        Envelope::new(EventType::PresenceLeave)
            .with_data(json!({ "user": user, "connection": connection }))
    }

    /// `tool.call` `id` with `data` (`{"tool": name, …arguments}`).
    pub fn tool_call(id: impl Into<String>, data: Value) -> Envelope {
        Envelope::new(EventType::ToolCall)
            .with_id(id)
            .with_data(data)
    }

    /// `tool.result` of call `id`, with `data`.
    pub fn tool_result(id: impl Into<String>, data: Value) -> Envelope {
        Envelope::new(EventType::ToolResult)
            .with_id(id)
            .with_data(data)
    }

    /// `agent.status` with `data`.
    pub fn agent_status(data: Value) -> Envelope {
        Envelope::new(EventType::AgentStatus).with_data(data)
    }

    /// `agent.lost`: `worker` lost its lease (of `subscription`, in `generation`) while
    /// writing `reply`, if it had said which.
    pub fn agent_lost(
        reply: Option<&str>,
        worker: &str,
        subscription: &str,
        generation: u64,
    ) -> Envelope {
        let event = Envelope::new(EventType::AgentLost).with_data(json!({
            "worker": worker,
            "subscription": subscription,
            "generation": generation,
        }));
        match reply {
            Some(reply) => event.with_id(reply),
            None => event,
        }
    }

    /// The same event with `id`.
    pub fn with_id(mut self, id: impl Into<String>) -> Envelope {
        self.id = Some(id.into());
        self
    }

    /// The same event with `agent`.
    pub fn with_agent(mut self, agent: impl Into<String>) -> Envelope {
        self.agent = Some(agent.into());
        self
    }

    /// The same event with `parent`.
    pub fn with_parent(mut self, parent: impl Into<String>) -> Envelope {
        self.parent = Some(parent.into());
        self
    }

    /// The same event with `role`.
    pub fn with_role(mut self, role: impl Into<String>) -> Envelope {
        self.role = Some(role.into());
        self
    }

    /// The same event with `data`.
    pub fn with_data(mut self, data: Value) -> Envelope {
        self.data = Some(data);
        self
    }

    /// The same event with the extra field `key`. The envelope's own fields, when set,
    /// take precedence over an extra field of the same name.
    pub fn with_extra(mut self, key: impl Into<String>, value: impl Into<Value>) -> Envelope {
        self.extra.insert(key.into(), value.into());
        self
    }

    /// Parses one event's JSON.
    pub fn parse(json: &[u8]) -> Result<Envelope, EnvelopeError> {
        Envelope::from_value(serde_json::from_slice(json)?)
    }

    /// The envelope of a JSON value, taking it apart without copying.
    pub fn from_value(value: Value) -> Result<Envelope, EnvelopeError> {
        match value {
            Value::Object(map) => Envelope::from_map(map),
            _ => Err(EnvelopeError::NotAnObject),
        }
    }

    fn from_map(mut extra: Map<String, Value>) -> Result<Envelope, EnvelopeError> {
        let kind = match extra.remove("type") {
            Some(Value::String(kind)) => EventType::from(kind),
            _ => return Err(EnvelopeError::NoType),
        };
        // Only strings are taken: anything else stays in `extra`, written back as it was.
        let mut text = |field: &str| {
            if !matches!(extra.get(field), Some(Value::String(_))) {
                return None;
            }
            match extra.remove(field) {
                Some(Value::String(s)) => Some(s),
                _ => None,
            }
        };
        let (id, agent, parent, role) = (text("id"), text("agent"), text("parent"), text("role"));
        let data = extra.remove("data");
        Ok(Envelope {
            kind,
            id,
            agent,
            parent,
            role,
            data,
            extra,
        })
    }

    /// The event as a JSON value.
    pub fn to_value(&self) -> Value {
        let mut map = Map::new();
        map.insert("type".into(), self.kind.as_str().into());
        for (key, value) in self.strings() {
            if let Some(value) = value {
                map.insert(key.into(), value.as_str().into());
            }
        }
        if let Some(data) = &self.data {
            map.insert("data".into(), data.clone());
        }
        for (key, value) in &self.extra {
            if !self.shadows(key) {
                map.insert(key.clone(), value.clone());
            }
        }
        Value::Object(map)
    }

    /// The event's JSON text.
    pub fn to_json(&self) -> String {
        // Infallible: keys are strings and values are JSON already.
        serde_json::to_string(self).unwrap_or_default()
    }

    fn strings(&self) -> [(&'static str, &Option<String>); 4] {
        [
            ("id", &self.id),
            ("agent", &self.agent),
            ("parent", &self.parent),
            ("role", &self.role),
        ]
    }

    /// True when the extra field `key` is hidden by one of the envelope's own fields.
    fn shadows(&self, key: &str) -> bool {
        match key {
            "type" => true,
            "id" => self.id.is_some(),
            "agent" => self.agent.is_some(),
            "parent" => self.parent.is_some(),
            "role" => self.role.is_some(),
            "data" => self.data.is_some(),
            _ => false,
        }
    }

    /// The kind of control an agent must act on, if this is such control.
    pub fn control_kind(&self) -> Option<ControlKind> {
        self.kind.control_kind()
    }

    /// True when a person wrote this (role `user`).
    pub fn is_from_user(&self) -> bool {
        self.role.as_deref() == Some(ROLE_USER)
    }

    /// A string field of `data` (`text` of a delta, `message_id` of a cancel).
    pub fn data_str(&self, field: &str) -> Option<&str> {
        self.data.as_ref()?.get(field)?.as_str()
    }

    /// `data.text`: the text of a `message.delta`.
    pub fn text(&self) -> Option<&str> {
        self.data_str("text")
    }

    /// True for a `message.end` cut short by a cancel (`data.stopped`).
    pub fn is_stopped(&self) -> bool {
        self.data
            .as_ref()
            .and_then(|d| d.get("stopped"))
            .and_then(Value::as_bool)
            .unwrap_or(false)
    }

    /// What a well-formed `control.ack` says; None for any other event.
    pub fn ack(&self) -> Option<ControlAck> {
        if self.kind != EventType::ControlAck {
            return None;
        }
        let offset = |field| Offset::parse(self.data_str(field)?).ok();
        Some(ControlAck {
            reference: offset("ref")?,
            kind: ControlKind::parse(self.data_str("kind")?),
            cut: offset("cut")?,
        })
    }
}

impl TryFrom<Value> for Envelope {
    type Error = EnvelopeError;

    fn try_from(value: Value) -> Result<Envelope, EnvelopeError> {
        Envelope::from_value(value)
    }
}

impl From<Envelope> for Value {
    fn from(envelope: Envelope) -> Value {
        envelope.to_value()
    }
}

impl Serialize for Envelope {
    /// The envelope's fields in [`ENVELOPE_FIELDS`] order, then the extra fields.
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(None)?;
        map.serialize_entry("type", &self.kind)?;
        for (key, value) in self.strings() {
            if let Some(value) = value {
                map.serialize_entry(key, value)?;
            }
        }
        if let Some(data) = &self.data {
            map.serialize_entry("data", data)?;
        }
        for (key, value) in &self.extra {
            if !self.shadows(key) {
                map.serialize_entry(key, value)?;
            }
        }
        map.end()
    }
}

impl<'de> Deserialize<'de> for Envelope {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Envelope, D::Error> {
        Envelope::from_map(Map::deserialize(deserializer)?).map_err(de::Error::custom)
    }
}

/// The `type` of an event, when it is a JSON object with a string `type`.
pub fn event_type(message: &[u8]) -> Option<String> {
    EventType::peek(message).map(|kind| match kind {
        EventType::Other(name) => name,
        known => known.as_str().to_owned(),
    })
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
        assert_eq!(
            EventType::peek(br#"{"type":"control\u002eack"}"#),
            Some(EventType::ControlAck)
        );
        assert!(is_control_request("control.steer"));
        assert!(!is_control_request("control.ack"));
        assert!(!is_control_request("message.delta"));
    }

    #[test]
    fn known_types_and_kinds_round_trip_their_names() {
        for kind in EventType::KNOWN {
            assert_eq!(EventType::parse(kind.as_str()), kind);
            assert_eq!(EventType::from(kind.as_str().to_owned()), kind);
            assert_eq!(
                kind.is_control_request(),
                is_control_request(kind.as_str()),
                "{kind}"
            );
        }
        for (kind, name) in ControlKind::KNOWN.iter().zip(CONTROL_KINDS) {
            assert_eq!(kind.as_str(), name);
            assert_eq!(&ControlKind::parse(name), kind);
            let event_type = EventType::control(kind);
            assert!(EventType::KNOWN.contains(&event_type));
            assert_eq!(event_type.control_kind().as_ref(), Some(kind));
        }
        let custom = EventType::parse("control.reboot");
        assert_eq!(
            custom.control_kind(),
            Some(ControlKind::Other("reboot".into()))
        );
        assert_eq!(
            EventType::control(&ControlKind::Other("reboot".into())),
            custom
        );
        assert!(!EventType::ControlAck.is_control_request());
        assert!(!EventType::parse("message.delta.v2").is_message());
    }

    #[test]
    fn unknown_types_and_fields_round_trip_exactly() {
        let cases = [
            r#"{"type":"custom.thing","id":"x","data":[1,{"a":null}],"ts":1700000000000,"nested":{"k":"v"}}"#,
            r#"{"type":"message.start","id":"m","role":"user","user":"ann"}"#,
            // Envelope fields of other types than string, and null data, stay as written.
            r#"{"type":"message.delta","id":7,"agent":null,"parent":["p"],"role":false,"data":null}"#,
            r#"{"type":"control.cancel","data":{},"user":"ann","connection":"c1"}"#,
            r#"{"type":""}"#,
        ];
        for case in cases {
            let value: Value = serde_json::from_str(case).unwrap();
            let envelope = Envelope::parse(case.as_bytes()).unwrap();
            assert_eq!(envelope.to_value(), value, "{case}");
            let written: Value = serde_json::from_str(&envelope.to_json()).unwrap();
            assert_eq!(written, value, "{case}");
            let via_serde: Envelope = serde_json::from_str(case).unwrap();
            assert_eq!(via_serde, envelope);
        }
        let odd = Envelope::parse(cases[2].as_bytes()).unwrap();
        assert_eq!((odd.id, odd.data), (None, Some(Value::Null)));
        assert_eq!(odd.extra["id"], 7);
    }

    #[test]
    fn not_envelopes() {
        assert!(matches!(
            Envelope::parse(b"[1]"),
            Err(EnvelopeError::NotAnObject)
        ));
        assert!(matches!(
            Envelope::parse(br#"{"type":1}"#),
            Err(EnvelopeError::NoType)
        ));
        assert!(matches!(
            Envelope::parse(br#"{"data":{}}"#),
            Err(EnvelopeError::NoType)
        ));
        assert!(matches!(Envelope::parse(b"{"), Err(EnvelopeError::Json(_))));
    }

    #[test]
    fn own_fields_win_over_extra_fields_of_the_same_name() {
        let envelope = Envelope::message_end("m")
            .with_extra("id", "shadowed")
            .with_extra("type", "shadowed")
            .with_extra("agent", 1);
        assert_eq!(
            envelope.to_json(),
            r#"{"type":"message.end","id":"m","agent":1}"#
        );
        assert_eq!(
            envelope.to_value(),
            json!({"type": "message.end", "id": "m", "agent": 1})
        );
    }

    #[test]
    fn accessors_read_what_the_constructors_wrote() {
        let ack = Envelope::control_ack(Offset(3), &ControlKind::Pause, Offset(9));
        assert_eq!(
            ack.ack(),
            Some(ControlAck {
                reference: Offset(3),
                kind: ControlKind::Pause,
                cut: Offset(9)
            })
        );
        assert_eq!(ack.control_kind(), None);
        let [start, delta, end] = Envelope::user_message("u", "ann", "hi");
        assert!(start.is_from_user() && end.is_from_user());
        assert_eq!(delta.text(), Some("hi"));
        assert!(Envelope::message_stopped("m").is_stopped());
        assert!(!Envelope::message_end("m").is_stopped());
        let cancel = Envelope::control(&ControlKind::Cancel, json!({"message_id": "m"}));
        assert_eq!(cancel.control_kind(), Some(ControlKind::Cancel));
        assert_eq!(cancel.data_str("message_id"), Some("m"));
    }

    /// The clients' copy of the envelope (`clients/js`) is checked against this fixture.
    const FIXTURE: &str = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../../clients/js/test/fixtures/envelopes.json"
    );

    /// One example of every constructor, every known type, and the names they use.
    fn fixture() -> Value {
        let examples: Vec<(&str, Envelope)> = vec![
            (
                "message_start",
                Envelope::message_start("m_1", ROLE_ASSISTANT).with_parent("u_1"),
            ),
            ("message_delta", Envelope::message_delta("m_1", "Hello")),
            ("message_end", Envelope::message_end("m_1")),
            ("message_stopped", Envelope::message_stopped("m_1")),
            (
                "tool_call",
                Envelope::tool_call("c_1", json!({"tool": "search", "query": "q"}))
                    .with_agent("planner/search-1")
                    .with_parent("m_1"),
            ),
            (
                "tool_result",
                Envelope::tool_result("c_1", json!({"hits": 3})).with_agent("planner/search-1"),
            ),
            (
                "agent_status",
                Envelope::agent_status(json!({"state": "working"})).with_agent("planner"),
            ),
            (
                "agent_lost",
                Envelope::agent_lost(Some("m_1"), "worker-2", "agents:0123456789abcdef", 4),
            ),
            (
                "control",
                Envelope::control(&ControlKind::Cancel, json!({"message_id": "m_1"})),
            ),
            (
                "control",
                Envelope::control(&ControlKind::Steer, json!({"instruction": "shorter"})),
            ),
            ("control", Envelope::control(&ControlKind::Pause, json!({}))),
            (
                "control",
                Envelope::control(&ControlKind::Resume, json!({})),
            ),
            (
                "control_ack",
                Envelope::control_ack(Offset(7), &ControlKind::Cancel, Offset(12)),
            ),
            ("presence_join", Envelope::presence_join("ann", "c_1")),
            ("presence_leave", Envelope::presence_leave("ann", "c_1")),
        ]
        .into_iter()
        .chain(Envelope::user_message("u_1", "ann", "Hi there").map(|e| ("user_message", e)))
        .collect();
        let seen: Vec<&EventType> = examples.iter().map(|(_, e)| &e.kind).collect();
        for kind in &EventType::KNOWN {
            assert!(seen.contains(&kind), "the fixture has no example of {kind}");
        }
        let examples: Vec<Value> = examples
            .into_iter()
            .map(|(constructor, event)| json!({"constructor": constructor, "event": event}))
            .collect();
        json!({
            "about": "Generated from agentwire_session::events (Rust). Regenerate with: \
                AGENTWIRE_UPDATE_FIXTURES=1 cargo test -p agentwire-session --lib events",
            "fields": ENVELOPE_FIELDS,
            "types": EventType::KNOWN.iter().map(EventType::as_str).collect::<Vec<_>>(),
            "control_kinds": CONTROL_KINDS,
            "roles": [ROLE_USER, ROLE_ASSISTANT],
            "examples": examples,
        })
    }

    /// Sorted keys at every level, so the file does not depend on serde_json's features.
    fn sorted(value: Value) -> Value {
        match value {
            Value::Object(map) => {
                let mut entries: Vec<_> = map.into_iter().collect();
                entries.sort_by(|a, b| a.0.cmp(&b.0));
                Value::Object(entries.into_iter().map(|(k, v)| (k, sorted(v))).collect())
            }
            Value::Array(items) => Value::Array(items.into_iter().map(sorted).collect()),
            other => other,
        }
    }

    #[test]
    fn constructors_produce_the_client_fixture() {
        let expected = fixture();
        if std::env::var_os("AGENTWIRE_UPDATE_FIXTURES").is_some() {
            let text = serde_json::to_string_pretty(&sorted(expected)).unwrap() + "\n";
            let path = std::path::Path::new(FIXTURE);
            std::fs::create_dir_all(path.parent().expect("a directory")).unwrap();
            std::fs::write(path, text).unwrap();
            return;
        }
        let stale = "clients/js/test/fixtures/envelopes.json no longer matches the Rust \
            envelope. If the change is intended, regenerate it with \
            `AGENTWIRE_UPDATE_FIXTURES=1 cargo test -p agentwire-session --lib events`, \
            then bring clients/js/src/events.ts in step and run `npm test --prefix clients`";
        let text = std::fs::read_to_string(FIXTURE)
            .unwrap_or_else(|e| panic!("cannot read {FIXTURE}: {e}. {stale}"));
        let actual: Value = serde_json::from_str(&text).expect("the fixture is JSON");
        if actual != expected {
            // Name the first difference, so the fix is obvious from the failure alone.
            let key = (expected.as_object().into_iter().flat_map(|o| o.keys()))
                .find(|k| actual[k.as_str()] != expected[k.as_str()]);
            let at = key.map_or(String::from("its top level"), |k| match k.as_str() {
                "examples" => (0..)
                    .find(|&i| actual[k.as_str()][i] != expected[k.as_str()][i])
                    .map_or(k.clone(), |i| {
                        format!("examples[{i}]: {}", expected[k.as_str()][i])
                    }),
                _ => format!("{k}: {}", expected[k.as_str()]),
            });
            panic!("{stale}. First difference at {at}");
        }
        for example in actual["examples"].as_array().into_iter().flatten() {
            let event = &example["event"];
            let envelope = Envelope::from_value(event.clone()).unwrap();
            assert_eq!(&envelope.to_value(), event, "round trip");
        }
    }
}
