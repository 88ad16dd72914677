//! The session table's DynamoDB Stream, told as domain changes: a stream record carries
//! the `meta` item before and after a write, or a new `log#` record (an append to a stream
//! in the log layout), decoded by the same functions the log reads with, so the item
//! layout has one decoder and the archiver sees only [`SessionChange`]s.

use agentwire_session::SessionChange;
use aws_lambda_events::dynamodb::{Event, EventRecord};

use tracing::warn;

use crate::item::{Item, Meta, record_at};

/// The session changes in a stream batch, in order. Records of other items (producers,
/// activity, the transactional layout's data) are skipped; the template's filter already
/// keeps them away.
pub fn session_changes(event: &Event) -> Vec<SessionChange> {
    event.records.iter().filter_map(change_of).collect()
}

/// A stream image as the SDK's item type.
pub(crate) fn item(image: &serde_dynamo::Item) -> Item {
    image
        .iter()
        .map(|(name, value)| (name.clone(), value.clone().into()))
        .collect()
}

fn change_of(record: &EventRecord) -> Option<SessionChange> {
    let keys = item(&record.change.keys);
    if keys
        .get("pk")
        .and_then(|pk| pk.as_s().ok())
        .is_some_and(|pk| pk.starts_with("log#"))
    {
        return appended(record);
    }
    if keys
        .get("sk")
        .and_then(|sk| sk.as_s().ok())
        .map(String::as_str)
        != Some("meta")
    {
        return None;
    }
    let pk = keys.get("pk")?.as_s().ok()?;
    let session = pk.strip_prefix("stream#")?.to_owned();
    if record.event_name == "REMOVE" {
        return Some(SessionChange::Deleted { session });
    }
    let new = match Meta::from_item(&item(&record.change.new_image)) {
        Ok(new) => new,
        Err(e) => {
            // Visible, since a layout the decoder cannot read would stop all archiving.
            warn!(session, error = %e, "a stream record of a meta item this adapter cannot read");
            return None;
        }
    };
    // A new stream has no old image: everything about it is new.
    let old = Meta::from_item(&item(&record.change.old_image)).ok();
    if new.deleted {
        return Some(SessionChange::Deleted { session });
    }
    if new.closed {
        // Archived when it closed; later changes are reads (TTL renewals), not activity.
        return (!old.is_some_and(|old| old.closed)).then_some(SessionChange::Closed { session });
    }
    // Only appends are activity: reads renew a TTL and would otherwise re-archive forever.
    if old.is_some_and(|old| old.tail == new.tail) {
        return None;
    }
    Some(SessionChange::Active {
        session,
        at_ms: new.accessed_ms,
    })
}

/// A record put by an append in the log layout: the append itself (records never change;
/// their removal is the purge of a deleted session, told by its `meta` item).
fn appended(record: &EventRecord) -> Option<SessionChange> {
    if record.event_name != "INSERT" {
        return None;
    }
    let new = item(&record.change.new_image);
    let Some(session) = new.get("nm").and_then(|nm| nm.as_s().ok()).cloned() else {
        warn!("a log record without its session's name; the idle sweep cannot see it");
        return None;
    };
    if new
        .get("cl")
        .is_some_and(|cl| cl.as_bool().is_ok_and(|c| *c))
    {
        return Some(SessionChange::Closed { session });
    }
    Some(SessionChange::Active {
        session,
        at_ms: record_at(&new).unwrap_or(0),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use agentwire_session::Expiry;
    use aws_lambda_events::dynamodb::StreamRecord;

    fn meta(tail: u64, closed: bool, deleted: bool, accessed_ms: i64) -> Meta {
        Meta {
            name: "acme/chat-7".into(),
            gen_: 7,
            content_type: "application/json".into(),
            expiry: Expiry::Never,
            accessed_ms,
            tail,
            closed,
            closed_by: None,
            last_stream_seq: None,
            source: None,
            refs: 0,
            deleted,
            layout: crate::item::Layout::Transact,
            last_producer: None,
        }
    }

    /// A stream record of the adapter's own `meta` items, as DynamoDB Streams sends it
    /// with NEW_AND_OLD_IMAGES.
    fn record(name: &str, old: Option<&Meta>, new: Option<&Meta>) -> EventRecord {
        let image = |meta: Option<&Meta>| -> serde_dynamo::Item {
            meta.map(|m| {
                m.to_item()
                    .into_iter()
                    .map(|(k, v)| (k, serde_dynamo::AttributeValue::from(v)))
                    .collect::<std::collections::HashMap<_, _>>()
                    .into()
            })
            .unwrap_or_default()
        };
        let any = new.or(old).expect("an image");
        let mut keys = image(Some(any));
        keys.retain(|k, _| k == "pk" || k == "sk");
        let mut change = StreamRecord::default();
        change.keys = keys;
        change.new_image = image(new);
        change.old_image = image(old);
        let mut record = EventRecord::default();
        record.event_name = name.into();
        record.change = change;
        record
    }

    fn changes(records: Vec<EventRecord>) -> Vec<SessionChange> {
        let mut event = Event::default();
        event.records = records;
        session_changes(&event)
    }

    #[test]
    fn the_adapters_own_items_decode_into_changes() {
        let session = || "acme/chat-7".to_string();
        assert_eq!(
            changes(vec![
                record("INSERT", None, Some(&meta(0, false, false, 1))),
                record(
                    "MODIFY",
                    Some(&meta(0, false, false, 1)),
                    Some(&meta(3, false, false, 5))
                ),
                // A read renewing a TTL moves `acc` but not the tail: not activity.
                record(
                    "MODIFY",
                    Some(&meta(3, false, false, 5)),
                    Some(&meta(3, false, false, 9))
                ),
                record(
                    "MODIFY",
                    Some(&meta(3, false, false, 9)),
                    Some(&meta(4, true, false, 10))
                ),
                // Reads of a closed session are not a second close.
                record(
                    "MODIFY",
                    Some(&meta(4, true, false, 10)),
                    Some(&meta(4, true, false, 11))
                ),
                record(
                    "MODIFY",
                    Some(&meta(4, true, false, 11)),
                    Some(&meta(4, true, true, 12))
                ),
                record("REMOVE", Some(&meta(4, true, true, 12)), None),
            ]),
            vec![
                SessionChange::Active {
                    session: session(),
                    at_ms: 1
                },
                SessionChange::Active {
                    session: session(),
                    at_ms: 5
                },
                SessionChange::Closed { session: session() },
                SessionChange::Deleted { session: session() },
                SessionChange::Deleted { session: session() },
            ]
        );
    }

    #[test]
    fn other_items_are_not_session_changes() {
        let mut data = record("INSERT", None, Some(&meta(1, false, false, 1)));
        for image in [&mut data.change.keys, &mut data.change.new_image] {
            image.insert(
                "sk".into(),
                serde_dynamo::AttributeValue::S("00000000000000000001".into()),
            );
        }
        assert_eq!(changes(vec![data]), vec![]);
    }

    /// The fixtures the archiver's handler tests replay must be items this adapter writes:
    /// renaming an attribute in the layout fails here, not silently on AWS.
    #[test]
    fn the_stream_fixtures_are_the_adapters_items() {
        for name in [
            "dynamodb-stream-session-appended.json",
            "dynamodb-stream-session-closed.json",
        ] {
            let path = format!("{}/../../../events/{name}", env!("CARGO_MANIFEST_DIR"));
            let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
            let event: Event =
                serde_json::from_str(&text).unwrap_or_else(|e| panic!("{name}: {e}"));
            for record in &event.records {
                for image in [&record.change.new_image, &record.change.old_image] {
                    if image.is_empty() {
                        continue;
                    }
                    let meta = Meta::from_item(&item(image))
                        .unwrap_or_else(|e| panic!("{name}: not a meta item of this adapter: {e}"));
                    assert_eq!(
                        item(image),
                        meta.to_item(),
                        "{name}: attributes this adapter does not write"
                    );
                }
            }
            assert!(
                !session_changes(&event).is_empty(),
                "{name} tells no change"
            );
        }
    }

    /// The log layout's records: an append is activity, a close marker a close; the
    /// fixture holds the attributes the log writes (the same keys, with `nm`).
    #[test]
    fn new_log_records_are_appends_and_closes() {
        let name = "dynamodb-stream-session-records.json";
        let path = format!("{}/../../../events/{name}", env!("CARGO_MANIFEST_DIR"));
        let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
        let event: Event = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(
            session_changes(&event),
            vec![
                SessionChange::Active {
                    session: "acme/chat-7".into(),
                    at_ms: 1_795_694_430_000
                },
                SessionChange::Closed {
                    session: "acme/chat-8".into()
                },
            ]
        );
        for record in &event.records {
            let image = item(&record.change.new_image);
            let layout = crate::item::Layout::Log;
            let span = layout.span(&image).expect("a log record's span");
            let gen_ = image["pk"].as_s().unwrap()["log#".len()..].parse().unwrap();
            let key = layout.record_key(gen_, span);
            for (attribute, value) in key {
                assert_eq!(image.get(&attribute), Some(&value), "{name}: {attribute}");
            }
            let last = crate::item::Last::from_item(&image).expect("the record's state");
            let mut written = Item::new();
            last.write(&mut written);
            for (attribute, value) in written {
                assert_eq!(image.get(&attribute), Some(&value), "{name}: {attribute}");
            }
        }
        // Its removal (a deleted session's purge) is told by the meta item, not again.
        let mut removed = event.records[0].clone();
        removed.event_name = "REMOVE".into();
        assert_eq!(changes(vec![removed]), vec![]);
    }
}
