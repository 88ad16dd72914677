//! Durable Streams subscriptions in the session table, and the stream catalog they link.
//!
//! One item per tenant and id: `pk = sub#<tenant>`, `sk = <id>`, the state as JSON in
//! `body`, its version in `v`. Every write is one `UpdateItem` conditioned on `v` (or on
//! there being no `body`), so concurrent Lambda instances never undo each other. A
//! deleted subscription keeps its item without `body` (a tombstone) whose `v` keeps
//! counting, so a write prepared before the delete cannot land on a re-creation.
//!
//! While a lease or retry is due, the item also carries `kpk = sub-due` and `ksk =` the
//! zero-padded due time: the sweeper queries the keys-only `keys` index for what is due
//! by now. The catalog queries the same index for `kpk = streams#<tenant>`, which every
//! stream's meta item carries from its creation, and reads the tails from the meta items.

use agentwire_dispatch::{StoreError, StreamCatalog, Subscription, SubscriptionStore};
use agentwire_session::{Clock, Offset, SystemClock};
use async_trait::async_trait;
use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::error::{DisplayErrorContext, SdkError};
use aws_sdk_dynamodb::types::{AttributeValue, KeysAndAttributes};

use crate::item::{Item, Meta, n, pad, s};
use crate::table::KEYS_INDEX;

const DUE: &str = "sub-due";
/// BatchGetItem's limit.
const BATCH: usize = 100;

/// Subscriptions and the stream catalog, in the session table.
pub struct DynamoSubscriptionStore {
    client: Client,
    table: String,
}

fn failed(e: impl std::fmt::Display) -> StoreError {
    StoreError(format!("dynamodb: {e}"))
}

fn pk(tenant: &str) -> String {
    format!("sub#{tenant}")
}

fn decode(item: &Item) -> Result<Option<Subscription>, StoreError> {
    match item.get("body") {
        None => Ok(None),
        Some(AttributeValue::S(body)) => serde_json::from_str(body)
            .map(Some)
            .map_err(|e| failed(format!("a stored subscription does not parse: {e}"))),
        Some(_) => Err(failed("a subscription's body is not a string")),
    }
}

fn version(item: &Item) -> Result<u64, StoreError> {
    match item.get("v") {
        Some(AttributeValue::N(v)) => v.parse().map_err(failed),
        _ => Err(failed("a subscription item lacks its version")),
    }
}

/// A lost condition is an answer (somebody wrote first), anything else a failure.
fn lost_race<E, R>(e: &SdkError<E, R>) -> bool
where
    E: aws_sdk_dynamodb::error::ProvideErrorMetadata,
{
    e.as_service_error()
        .and_then(|e| e.code())
        .is_some_and(|code| code == "ConditionalCheckFailedException")
}

impl DynamoSubscriptionStore {
    pub fn new(client: Client, table: impl Into<String>) -> DynamoSubscriptionStore {
        DynamoSubscriptionStore {
            client,
            table: table.into(),
        }
    }

    /// Fails, saying what to do, when the table lacks the `keys` index (made by an older
    /// agentwire).
    pub async fn ensure_index(&self) -> Result<(), StoreError> {
        crate::table::require_index(&self.client, &self.table, KEYS_INDEX)
            .await
            .map_err(StoreError)
    }

    /// Every key under `kpk = partition` of the keys index with `ksk <= upto` (all when
    /// `None`), as (pk, sk) pairs.
    async fn listed(
        &self,
        partition: &str,
        upto: Option<String>,
    ) -> Result<Vec<(String, String)>, StoreError> {
        let mut keys = Vec::new();
        let mut start = None;
        loop {
            let mut query = self
                .client
                .query()
                .table_name(&self.table)
                .index_name(KEYS_INDEX)
                .expression_attribute_values(":p", s(partition))
                .set_exclusive_start_key(start.take());
            query = match &upto {
                Some(upto) => query
                    .key_condition_expression("kpk = :p AND ksk <= :u")
                    .expression_attribute_values(":u", s(upto)),
                None => query.key_condition_expression("kpk = :p"),
            };
            let page = query
                .send()
                .await
                .map_err(|e| failed(DisplayErrorContext(e)))?;
            for item in page.items() {
                if let (Some(AttributeValue::S(pk)), Some(AttributeValue::S(sk))) =
                    (item.get("pk"), item.get("sk"))
                {
                    keys.push((pk.clone(), sk.clone()));
                }
            }
            match page.last_evaluated_key {
                Some(key) if !key.is_empty() => start = Some(key),
                _ => return Ok(keys),
            }
        }
    }

    /// The meta items of `pks`, by batches, retrying what DynamoDB leaves unprocessed.
    async fn metas(&self, pks: Vec<String>) -> Result<Vec<Meta>, StoreError> {
        let mut metas = Vec::new();
        for chunk in pks.chunks(BATCH) {
            let mut keys: Vec<Item> = chunk
                .iter()
                .map(|pk| Item::from([("pk".into(), s(pk)), ("sk".into(), s("meta"))]))
                .collect();
            while !keys.is_empty() {
                let request = KeysAndAttributes::builder()
                    .set_keys(Some(std::mem::take(&mut keys)))
                    .consistent_read(true)
                    .build()
                    .map_err(failed)?;
                let output = self
                    .client
                    .batch_get_item()
                    .request_items(&self.table, request)
                    .send()
                    .await
                    .map_err(|e| failed(DisplayErrorContext(e)))?;
                for item in output
                    .responses
                    .unwrap_or_default()
                    .remove(&self.table)
                    .unwrap_or_default()
                {
                    metas.push(Meta::from_item(&item).map_err(failed)?);
                }
                if let Some(left) = output
                    .unprocessed_keys
                    .and_then(|mut left| left.remove(&self.table))
                {
                    keys = left.keys;
                }
            }
        }
        Ok(metas)
    }
}

#[async_trait]
impl SubscriptionStore for DynamoSubscriptionStore {
    async fn get(&self, tenant: &str, id: &str) -> Result<Option<(Subscription, u64)>, StoreError> {
        let output = self
            .client
            .get_item()
            .table_name(&self.table)
            .key("pk", s(&pk(tenant)))
            .key("sk", s(id))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| failed(DisplayErrorContext(e)))?;
        let Some(item) = output.item else {
            return Ok(None);
        };
        match decode(&item)? {
            Some(sub) => Ok(Some((sub, version(&item)?))),
            None => Ok(None),
        }
    }

    async fn put(
        &self,
        subscription: &Subscription,
        expected: Option<u64>,
    ) -> Result<bool, StoreError> {
        let body = serde_json::to_string(subscription).map_err(failed)?;
        let mut update = self
            .client
            .update_item()
            .table_name(&self.table)
            .key("pk", s(&pk(&subscription.tenant)))
            .key("sk", s(&subscription.id))
            .expression_attribute_values(":body", s(&body))
            .expression_attribute_values(":one", n(1));
        let (set_version, condition) = match expected {
            // A tombstone's count continues; a new item starts at 1.
            None => (
                "v = if_not_exists(v, :zero) + :one",
                "attribute_not_exists(body)",
            ),
            Some(v) => {
                update = update.expression_attribute_values(":v", n(v));
                ("v = v + :one", "v = :v AND attribute_exists(body)")
            }
        };
        if expected.is_none() {
            update = update.expression_attribute_values(":zero", n(0));
        }
        let expression = match subscription.next_due_ms() {
            Some(due) => {
                update = update
                    .expression_attribute_values(":due", s(DUE))
                    .expression_attribute_values(":at", s(&pad(due.max(0) as u64)));
                format!("SET body = :body, {set_version}, kpk = :due, ksk = :at")
            }
            None => format!("SET body = :body, {set_version} REMOVE kpk, ksk"),
        };
        match update
            .update_expression(expression)
            .condition_expression(condition)
            .send()
            .await
        {
            Ok(_) => Ok(true),
            Err(e) if lost_race(&e) => Ok(false),
            Err(e) => Err(failed(DisplayErrorContext(e))),
        }
    }

    async fn delete(&self, tenant: &str, id: &str) -> Result<bool, StoreError> {
        match self
            .client
            .update_item()
            .table_name(&self.table)
            .key("pk", s(&pk(tenant)))
            .key("sk", s(id))
            .update_expression("SET v = v + :one REMOVE body, kpk, ksk")
            .condition_expression("attribute_exists(body)")
            .expression_attribute_values(":one", n(1))
            .send()
            .await
        {
            Ok(_) => Ok(true),
            Err(e) if lost_race(&e) => Ok(false),
            Err(e) => Err(failed(DisplayErrorContext(e))),
        }
    }

    async fn list(&self, tenant: &str) -> Result<Vec<Subscription>, StoreError> {
        let mut subs = Vec::new();
        let mut start = None;
        loop {
            let page = self
                .client
                .query()
                .table_name(&self.table)
                .key_condition_expression("pk = :pk")
                .expression_attribute_values(":pk", s(&pk(tenant)))
                .consistent_read(true)
                .set_exclusive_start_key(start.take())
                .send()
                .await
                .map_err(|e| failed(DisplayErrorContext(e)))?;
            for item in page.items() {
                subs.extend(decode(item)?);
            }
            match page.last_evaluated_key {
                Some(key) if !key.is_empty() => start = Some(key),
                _ => return Ok(subs),
            }
        }
    }

    async fn due(&self, by_ms: i64) -> Result<Vec<(String, String)>, StoreError> {
        // The index is eventually consistent: the sweeper reads each one again before
        // changing it, so an entry a moment out of date costs one read.
        let keys = self.listed(DUE, Some(pad(by_ms.max(0) as u64))).await?;
        Ok(keys
            .into_iter()
            .filter_map(|(pk, id)| Some((pk.strip_prefix("sub#")?.to_owned(), id)))
            .collect())
    }
}

#[async_trait]
impl StreamCatalog for DynamoSubscriptionStore {
    async fn streams(&self, tenant: &str) -> Result<Vec<(String, Offset)>, StoreError> {
        let pks = self
            .listed(&format!("streams#{tenant}"), None)
            .await?
            .into_iter()
            .map(|(pk, _)| pk)
            .collect();
        let now = SystemClock.now_ms();
        let prefix = format!("{tenant}/");
        Ok(self
            .metas(pks)
            .await?
            .into_iter()
            .filter(|meta| !meta.deleted && !meta.expired(now))
            .filter_map(|meta| {
                let name = meta.name.strip_prefix(&prefix)?.to_owned();
                Some((name, Offset(meta.tail)))
            })
            .collect())
    }
}

/// The subscription writes in a batch of the session table's stream, as (before, after)
/// pairs in order; deletes and other items are skipped (the template's filter already
/// keeps other items away). Decoded by the same reader the store uses.
pub fn subscription_changes(
    event: &aws_lambda_events::dynamodb::Event,
) -> Vec<(Option<Subscription>, Subscription)> {
    let image = crate::stream::item;
    event
        .records
        .iter()
        .filter_map(|record| {
            let keys = image(&record.change.keys);
            let pk = keys.get("pk")?.as_s().ok()?;
            pk.strip_prefix("sub#")?;
            let new = match decode(&image(&record.change.new_image)) {
                Ok(new) => new?,
                Err(e) => {
                    // Visible: a body this reader cannot parse would stop its webhooks.
                    tracing::warn!(%pk, error = %e, "a stream record of a subscription this adapter cannot read");
                    return None;
                }
            };
            let old = decode(&image(&record.change.old_image)).ok().flatten();
            Some((old, new))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use agentwire_dispatch::{Spec, Targets};
    use aws_lambda_events::dynamodb::{Event, EventRecord, StreamRecord};

    fn sub(deliveries: u64) -> Subscription {
        let spec = Spec::parse(
            br#"{"type": "webhook", "pattern": "chat-*", "webhook": {"url": "https://agent.example/wake"}}"#,
            Targets::Public,
        )
        .expect("a spec");
        let mut sub = Subscription::new(
            "acme",
            "pool",
            spec,
            "https://s.example",
            &Default::default(),
            1,
        );
        sub.deliveries = deliveries;
        sub
    }

    /// An image as the store writes it (`body` absent: a tombstone).
    fn image(pk: &str, sk: &str, sub: Option<&Subscription>) -> serde_dynamo::Item {
        let mut item = Item::from([
            ("pk".into(), s(pk)),
            ("sk".into(), s(sk)),
            ("v".into(), n(1)),
        ]);
        if let Some(sub) = sub {
            item.insert("body".into(), s(&serde_json::to_string(sub).unwrap()));
        }
        item.into_iter()
            .map(|(k, v)| (k, serde_dynamo::AttributeValue::from(v)))
            .collect::<std::collections::HashMap<_, _>>()
            .into()
    }

    fn record(pk: &str, old: Option<&Subscription>, new: Option<&Subscription>) -> EventRecord {
        let mut change = StreamRecord::default();
        change.keys = image(pk, "pool", None);
        change.keys.retain(|k, _| k == "pk" || k == "sk");
        change.old_image = old.map(|o| image(pk, "pool", Some(o))).unwrap_or_default();
        change.new_image = image(pk, "pool", new);
        let mut record = EventRecord::default();
        record.event_name = "MODIFY".into();
        record.change = change;
        record
    }

    #[test]
    fn the_stores_writes_decode_into_before_and_after_pairs() {
        let mut event = Event::default();
        event.records = vec![
            record("sub#acme", None, Some(&sub(0))),
            record("sub#acme", Some(&sub(0)), Some(&sub(1))),
            // A delete leaves a tombstone: nothing to send.
            record("sub#acme", Some(&sub(1)), None),
            // Not a subscription.
            record("stream#acme/chat-1", None, Some(&sub(3))),
        ];
        let changes = subscription_changes(&event);
        assert_eq!(changes.len(), 2, "{changes:?}");
        assert_eq!(changes[0], (None, sub(0)));
        assert_eq!(changes[1], (Some(sub(0)), sub(1)));
    }
}
