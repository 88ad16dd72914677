//! The archiver's Lambda events: DynamoDB Stream records of the session table, and the
//! EventBridge schedule of the idle sweep.

use aws_lambda_events::dynamodb::{Event as StreamEvent, EventRecord};
use aws_lambda_events::eventbridge::EventBridgeEvent;
use serde_dynamo::AttributeValue;

/// What invoked the archiver.
#[derive(Debug)]
pub enum ArchiverEvent {
    /// Changes to the session table.
    Stream(Box<StreamEvent>),
    /// The schedule: sweep sessions idle for long enough.
    Schedule(Box<EventBridgeEvent>),
}

impl ArchiverEvent {
    /// Tells the two event shapes apart; anything else is refused with what it was.
    pub fn parse(event: serde_json::Value) -> Result<ArchiverEvent, String> {
        if event.get("Records").is_some() {
            return serde_json::from_value(event)
                .map(|e| ArchiverEvent::Stream(Box::new(e)))
                .map_err(|e| format!("not a DynamoDB Stream event: {e}"));
        }
        if event.get("detail-type").is_some() {
            return serde_json::from_value(event)
                .map(|e| ArchiverEvent::Schedule(Box::new(e)))
                .map_err(|e| format!("not an EventBridge event: {e}"));
        }
        Err(
            "expected a DynamoDB Stream event (Records) or an EventBridge schedule (detail-type)"
                .into(),
        )
    }
}

/// What one stream record says about a session (a stored, tenant-scoped name).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SessionChange {
    /// Appended to at `at_ms`.
    Active { session: String, at_ms: i64 },
    /// Closed just now: nothing more will be appended, archive it.
    Closed { session: String },
    /// Deleted (or expired): its data is gone, there is nothing to archive.
    Deleted { session: String },
}

/// The session changes in a stream batch, in order. Records of other items (data,
/// producers) are skipped: the template's filter already keeps them away.
pub fn changes_of(event: &StreamEvent) -> Vec<SessionChange> {
    event.records.iter().filter_map(change_of).collect()
}

fn text<'a>(image: &'a serde_dynamo::Item, name: &str) -> Option<&'a str> {
    match image.get(name) {
        Some(AttributeValue::S(v)) => Some(v),
        _ => None,
    }
}

fn flag(image: &serde_dynamo::Item, name: &str) -> bool {
    matches!(image.get(name), Some(AttributeValue::Bool(true)))
}

fn change_of(record: &EventRecord) -> Option<SessionChange> {
    let keys = &record.change.keys;
    if text(keys, "sk") != Some("meta") {
        return None;
    }
    let session = text(keys, "pk")?.strip_prefix("stream#")?.to_owned();
    let (new, old) = (&record.change.new_image, &record.change.old_image);
    if record.event_name == "REMOVE" || flag(new, "del") {
        return Some(SessionChange::Deleted { session });
    }
    if flag(new, "closed") {
        // Archived when it closed; later changes are reads (TTL renewals), not activity.
        return (!flag(old, "closed")).then_some(SessionChange::Closed { session });
    }
    // Only appends are activity: reads renew a TTL and would otherwise re-archive forever.
    if new.get("tail") == old.get("tail") {
        return None;
    }
    let at_ms = match new.get("acc") {
        Some(AttributeValue::N(at)) => at.parse().ok()?,
        _ => return None,
    };
    Some(SessionChange::Active { session, at_ms })
}
