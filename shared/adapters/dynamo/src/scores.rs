//! The [`ScoreIndex`] in the session table (layout in `DESIGN.md`): one item per score
//! record under its trace's partition, `pk = score#<tenant>/<trace>`,
//! `sk = <source>#<name>#<span>`, and a sparse global secondary index, `scores`
//! (`spk = scores#<tenant>`, `ssk = <scored_at>#<trace>#<sk>`), that lists a tenant's
//! records newest first. Key parts are percent-encoded (`#`, `/` and `%` included), so no
//! two tenants, traces or names ever share a key.

use std::collections::BTreeMap;
use std::time::Duration;

use agentwire_scoring::{
    IndexError, MAX_PAGE, ScoreFilter, ScoreIndex, ScorePage, ScoreRecord, Source, check_replace,
    check_upsert,
};
use agentwire_session::path::encode_segment;
use async_trait::async_trait;
use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::error::DisplayErrorContext;
use aws_sdk_dynamodb::types::{
    AttributeValue, Delete, DeleteRequest, Put, PutRequest, TransactWriteItem, WriteRequest,
};

use crate::item::Item;

/// The listing index's name (`infra/template.yaml` declares it).
pub const SCORES_INDEX: &str = "scores";
/// A replace of at most this many writes (puts and deletes) is one transaction
/// (DynamoDB's limit); larger ones are batches.
const MAX_TRANSACTION_ITEMS: usize = 100;
/// Attempts of a transaction that keeps conflicting with another writer.
const MAX_ATTEMPTS: u32 = 5;

/// Score records in the session table.
pub struct DynamoScoreIndex {
    client: Client,
    table: String,
}

fn failed(e: impl std::fmt::Display) -> IndexError {
    IndexError::Storage(format!("dynamodb: {e}"))
}

fn s(value: impl Into<String>) -> AttributeValue {
    AttributeValue::S(value.into())
}

/// The trace's partition.
fn trace_pk(tenant: &str, trace_id: &str) -> String {
    format!(
        "score#{}/{}",
        encode_segment(tenant),
        encode_segment(trace_id)
    )
}

/// The tenant's partition of the listing index.
fn tenant_spk(tenant: &str) -> String {
    format!("scores#{}", encode_segment(tenant))
}

/// A record's sort key in its trace's partition: its identity there.
fn record_sk(record: &ScoreRecord) -> String {
    format!(
        "{}#{}#{}",
        record.source.as_str(),
        encode_segment(&record.name),
        encode_segment(record.span_id.as_deref().unwrap_or_default())
    )
}

/// A time as a sort key: signed milliseconds mapped onto 20 digits in order.
fn time_key(ms: i64) -> String {
    format!("{:020}", (ms as u64) ^ (1 << 63))
}

/// The value as a DynamoDB number, for filters; `None` when DynamoDB cannot hold it (NaN,
/// infinities, magnitudes outside 1e-130..1e125): such a record matches no `max_value`.
fn filter_number(value: f64) -> Option<String> {
    if value == 0.0 {
        return Some("0".into());
    }
    (value.is_finite() && (1e-129..1e125).contains(&value.abs())).then(|| format!("{value:e}"))
}

fn record_item(record: &ScoreRecord) -> Result<Item, IndexError> {
    let json = serde_json::to_string(record).map_err(failed)?;
    let sk = record_sk(record);
    let mut item = Item::from([
        ("pk".into(), s(trace_pk(&record.tenant, &record.trace_id))),
        ("sk".into(), s(sk.clone())),
        ("spk".into(), s(tenant_spk(&record.tenant))),
        (
            "ssk".into(),
            s(format!(
                "{}#{}#{sk}",
                time_key(record.scored_at_ms),
                encode_segment(&record.trace_id)
            )),
        ),
        ("nm".into(), s(record.name.clone())),
        ("src".into(), s(record.source.as_str())),
        // The exact value: JSON's float parsing is only best-effort.
        (
            "vb".into(),
            AttributeValue::N(record.value.to_bits().to_string()),
        ),
        ("rec".into(), s(json)),
    ]);
    if let Some(v) = filter_number(record.value) {
        item.insert("v".into(), AttributeValue::N(v));
    }
    if let Some(label) = &record.label {
        item.insert("lb".into(), s(label.clone()));
    }
    Ok(item)
}

fn from_item(item: &Item) -> Result<ScoreRecord, IndexError> {
    let bad =
        |what: &str| IndexError::Storage(format!("dynamodb: a score item lacks a valid {what}"));
    let Some(AttributeValue::S(json)) = item.get("rec") else {
        return Err(bad("rec"));
    };
    let mut record: ScoreRecord = serde_json::from_str(json).map_err(|_| bad("rec"))?;
    if let Some(AttributeValue::N(bits)) = item.get("vb") {
        record.value = f64::from_bits(bits.parse().map_err(|_| bad("vb"))?);
    }
    Ok(record)
}

fn key_of(item: &Item) -> Item {
    ["pk", "sk"]
        .iter()
        .filter_map(|k| item.get(*k).map(|v| ((*k).to_owned(), v.clone())))
        .collect()
}

/// A listing's cursor: the last returned item's keys in the index (`spk` is the tenant's).
fn encode_cursor(item: &Item) -> Option<String> {
    let get = |k: &str| match item.get(k) {
        Some(AttributeValue::S(v)) => Some(v.clone()),
        _ => None,
    };
    let keys = [get("ssk")?, get("pk")?, get("sk")?];
    Some(agentwire_scoring::encode_cursor(&keys))
}

fn decode_cursor(tenant: &str, text: &str) -> Result<Item, IndexError> {
    let bad = || IndexError::BadCursor(format!("not a score listing cursor: {text:?}"));
    let [ssk, pk, sk]: [String; 3] = agentwire_scoring::decode_cursor(text).ok_or_else(bad)?;
    Ok(Item::from([
        ("spk".into(), s(tenant_spk(tenant))),
        ("ssk".into(), s(ssk)),
        ("pk".into(), s(pk)),
        ("sk".into(), s(sk)),
    ]))
}

impl DynamoScoreIndex {
    pub fn new(client: Client, table: impl Into<String>) -> DynamoScoreIndex {
        DynamoScoreIndex {
            client,
            table: table.into(),
        }
    }

    /// Checks that the table has the listing index: for local engines and tests (the
    /// template declares it on AWS, and [`crate::DynamoSessionLog::ensure_table`] creates
    /// tables with it). A table made before score records lacks it, and is refused with
    /// what to do: DynamoDB Local cannot add an index to an existing table (one added by
    /// `UpdateTable` stays `CREATING` and writes to the table then fail).
    pub async fn ensure_index(&self) -> Result<(), IndexError> {
        let described = self
            .client
            .describe_table()
            .table_name(&self.table)
            .send()
            .await
            .map_err(|e| failed(DisplayErrorContext(e)))?;
        let found = described.table().is_some_and(|t| {
            t.global_secondary_indexes()
                .iter()
                .any(|i| i.index_name() == Some(SCORES_INDEX))
        });
        if found {
            return Ok(());
        }
        Err(IndexError::Storage(format!(
            "table {} has no {SCORES_INDEX} index (it was created before score records): \
             delete it or use another table name, and it is created with the index",
            self.table
        )))
    }

    /// The keys of the trace's current records of `source`.
    async fn keys_of(&self, pk: &str, source: Source) -> Result<Vec<Item>, IndexError> {
        let mut keys = Vec::new();
        let mut start = None;
        loop {
            let page = self
                .client
                .query()
                .table_name(&self.table)
                .key_condition_expression("pk = :pk AND begins_with(sk, :source)")
                .expression_attribute_values(":pk", s(pk))
                .expression_attribute_values(":source", s(format!("{}#", source.as_str())))
                .projection_expression("pk, sk")
                .consistent_read(true)
                .set_exclusive_start_key(start.take())
                .send()
                .await
                .map_err(|e| failed(DisplayErrorContext(e)))?;
            keys.extend(page.items().iter().map(key_of));
            match page.last_evaluated_key {
                Some(key) => start = Some(key),
                None => return Ok(keys),
            }
        }
    }

    /// Puts and deletes in one transaction; false when another writer got in the way.
    async fn transact(&self, puts: &[Item], deletes: &[Item]) -> Result<bool, IndexError> {
        let mut items = Vec::with_capacity(puts.len() + deletes.len());
        for item in puts {
            let put = Put::builder()
                .table_name(&self.table)
                .set_item(Some(item.clone()))
                .build()
                .map_err(failed)?;
            items.push(TransactWriteItem::builder().put(put).build());
        }
        for key in deletes {
            let delete = Delete::builder()
                .table_name(&self.table)
                .set_key(Some(key.clone()))
                .build()
                .map_err(failed)?;
            items.push(TransactWriteItem::builder().delete(delete).build());
        }
        match self
            .client
            .transact_write_items()
            .set_transact_items(Some(items))
            .send()
            .await
        {
            Ok(_) => Ok(true),
            Err(e) => {
                use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError;
                // Another transaction on the same items: read the keys again and retry.
                let conflict = matches!(
                    e.as_service_error(),
                    Some(TransactWriteItemsError::TransactionCanceledException(c))
                        if c.cancellation_reasons().iter().any(|r| r.code() == Some("TransactionConflict"))
                );
                if conflict {
                    Ok(false)
                } else {
                    Err(failed(DisplayErrorContext(e)))
                }
            }
        }
    }

    /// Puts, then deletes, 25 at a time, retrying what DynamoDB hands back.
    async fn batch(&self, puts: Vec<Item>, deletes: Vec<Item>) -> Result<(), IndexError> {
        let mut requests = Vec::with_capacity(puts.len() + deletes.len());
        for item in puts {
            let put = PutRequest::builder()
                .set_item(Some(item))
                .build()
                .map_err(failed)?;
            requests.push(WriteRequest::builder().put_request(put).build());
        }
        for key in deletes {
            let delete = DeleteRequest::builder()
                .set_key(Some(key))
                .build()
                .map_err(failed)?;
            requests.push(WriteRequest::builder().delete_request(delete).build());
        }
        for chunk in requests.chunks(25) {
            let mut pending = chunk.to_vec();
            for attempt in 0..10u32 {
                if pending.is_empty() {
                    break;
                }
                if attempt > 0 {
                    tokio::time::sleep(Duration::from_millis(50 << attempt.min(5))).await;
                }
                let out = self
                    .client
                    .batch_write_item()
                    .request_items(&self.table, pending)
                    .send()
                    .await
                    .map_err(|e| failed(DisplayErrorContext(e)))?;
                pending = out
                    .unprocessed_items
                    .and_then(|mut left| left.remove(&self.table))
                    .unwrap_or_default();
            }
            if !pending.is_empty() {
                return Err(failed(
                    "writes left unprocessed after 10 attempts (throttled)",
                ));
            }
        }
        Ok(())
    }
}

#[async_trait]
impl ScoreIndex for DynamoScoreIndex {
    async fn replace(
        &self,
        tenant: &str,
        trace_id: &str,
        source: Source,
        records: &[ScoreRecord],
    ) -> Result<(), IndexError> {
        check_replace(tenant, trace_id, source, records)?;
        // By identity: a record given twice is written once, the last one winning.
        let mut new = BTreeMap::new();
        for record in records {
            new.insert(record_sk(record), record_item(record)?);
        }
        let pk = trace_pk(tenant, trace_id);
        let puts: Vec<Item> = new.values().cloned().collect();
        for _ in 0..MAX_ATTEMPTS {
            let deletes: Vec<Item> = self
                .keys_of(&pk, source)
                .await?
                .into_iter()
                .filter(|key| match key.get("sk") {
                    Some(AttributeValue::S(sk)) => !new.contains_key(sk),
                    _ => false,
                })
                .collect();
            if puts.is_empty() && deletes.is_empty() {
                return Ok(());
            }
            if puts.len() + deletes.len() > MAX_TRANSACTION_ITEMS {
                // Not atomic: readers may see new and old records side by side until the
                // deletes land; a failure part-way leaves that until the next replace.
                return self.batch(puts, deletes).await;
            }
            if self.transact(&puts, &deletes).await? {
                return Ok(());
            }
        }
        Err(failed(format!(
            "replacing the scores of a trace conflicted with other writers {MAX_ATTEMPTS} times"
        )))
    }

    async fn upsert(
        &self,
        tenant: &str,
        trace_id: &str,
        records: &[ScoreRecord],
    ) -> Result<(), IndexError> {
        check_upsert(tenant, trace_id, records)?;
        // By key, with the same item (listing-index attributes included) `replace` writes;
        // a key given twice is written once, the last one winning.
        let mut new = BTreeMap::new();
        for record in records {
            new.insert(record_sk(record), record_item(record)?);
        }
        let puts: Vec<Item> = new.into_values().collect();
        if puts.is_empty() {
            return Ok(());
        }
        if puts.len() > MAX_TRANSACTION_ITEMS {
            // Each put is whole on its own; only the group is not atomic.
            return self.batch(puts, Vec::new()).await;
        }
        for _ in 0..MAX_ATTEMPTS {
            if self.transact(&puts, &[]).await? {
                return Ok(());
            }
        }
        Err(failed(format!(
            "upserting scores of a trace conflicted with other writers {MAX_ATTEMPTS} times"
        )))
    }

    async fn trace(&self, tenant: &str, trace_id: &str) -> Result<Vec<ScoreRecord>, IndexError> {
        let pk = trace_pk(tenant, trace_id);
        let mut records = Vec::new();
        let mut start = None;
        loop {
            let page = self
                .client
                .query()
                .table_name(&self.table)
                .key_condition_expression("pk = :pk")
                .expression_attribute_values(":pk", s(pk.clone()))
                .consistent_read(true)
                .set_exclusive_start_key(start.take())
                .send()
                .await
                .map_err(|e| failed(DisplayErrorContext(e)))?;
            for item in page.items() {
                records.push(from_item(item)?);
            }
            match page.last_evaluated_key {
                Some(key) => start = Some(key),
                None => break,
            }
        }
        records
            .sort_by(|a, b| (a.source, &a.name, &a.span_id).cmp(&(b.source, &b.name, &b.span_id)));
        Ok(records)
    }

    async fn list(&self, tenant: &str, filter: &ScoreFilter) -> Result<ScorePage, IndexError> {
        let limit = filter.limit.clamp(1, MAX_PAGE);
        let mut start = filter
            .after
            .as_deref()
            .map(|cursor| decode_cursor(tenant, cursor))
            .transpose()?;
        if let (Some(since), Some(until)) = (filter.since_ms, filter.until_ms)
            && since >= until
        {
            return Ok(ScorePage::default());
        }
        let mut values = BTreeMap::from([(":spk".to_owned(), s(tenant_spk(tenant)))]);
        let mut names = BTreeMap::new();
        let key_condition = match (filter.since_ms, filter.until_ms) {
            (Some(since), Some(until)) => {
                values.insert(":lo".into(), s(time_key(since)));
                // No key equals a bare time (each continues with `#`): `until` is excluded.
                values.insert(":hi".into(), s(time_key(until)));
                "spk = :spk AND ssk BETWEEN :lo AND :hi"
            }
            (Some(since), None) => {
                values.insert(":lo".into(), s(time_key(since)));
                "spk = :spk AND ssk >= :lo"
            }
            (None, Some(until)) => {
                values.insert(":hi".into(), s(time_key(until)));
                "spk = :spk AND ssk < :hi"
            }
            (None, None) => "spk = :spk",
        };
        let mut conditions = Vec::new();
        if let Some(name) = &filter.name {
            names.insert("#nm".to_owned(), "nm".to_owned());
            values.insert(":nm".into(), s(name.clone()));
            conditions.push("#nm = :nm");
        }
        if let Some(label) = &filter.label {
            names.insert("#lb".to_owned(), "lb".to_owned());
            values.insert(":lb".into(), s(label.clone()));
            conditions.push("#lb = :lb");
        }
        if let Some(source) = filter.source {
            names.insert("#src".to_owned(), "src".to_owned());
            values.insert(":src".into(), s(source.as_str()));
            conditions.push("#src = :src");
        }
        if let Some(max) = filter.max_value {
            names.insert("#v".to_owned(), "v".to_owned());
            // A bound DynamoDB cannot hold matches everything (above) or nothing (below).
            let bound = filter_number(max).unwrap_or_else(|| {
                if max > 0.0 {
                    "9.9e124".into()
                } else {
                    "-9.9e124".into()
                }
            });
            values.insert(":max".into(), AttributeValue::N(bound));
            conditions.push("#v <= :max");
        }
        let filter_expression = (!conditions.is_empty()).then(|| conditions.join(" AND "));
        let mut found: Vec<Item> = Vec::new();
        loop {
            // Unfiltered, read just past the page; filtered, whole pages (the limit counts
            // items read, not items that match).
            let read_limit = filter_expression
                .is_none()
                .then(|| (limit + 1 - found.len()) as i32);
            let page = self
                .client
                .query()
                .table_name(&self.table)
                .index_name(SCORES_INDEX)
                .key_condition_expression(key_condition)
                .set_filter_expression(filter_expression.clone())
                .set_expression_attribute_names(
                    (!names.is_empty()).then(|| names.clone().into_iter().collect()),
                )
                .set_expression_attribute_values(Some(values.clone().into_iter().collect()))
                .scan_index_forward(false)
                .set_limit(read_limit)
                .set_exclusive_start_key(start.take())
                .send()
                .await
                .map_err(|e| failed(DisplayErrorContext(e)))?;
            found.extend(page.items().iter().cloned());
            if found.len() > limit {
                break;
            }
            match page.last_evaluated_key {
                Some(key) => start = Some(key),
                None => break,
            }
        }
        let next = if found.len() > limit {
            found.truncate(limit);
            found.last().and_then(encode_cursor)
        } else {
            None
        };
        let records = found.iter().map(from_item).collect::<Result<Vec<_>, _>>()?;
        Ok(ScorePage { records, next })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn time_keys_sort_as_the_times_do() {
        let times = [i64::MIN, -5, -1, 0, 1, 999, 1_764_547_200_123, i64::MAX];
        let keys: Vec<String> = times.iter().map(|&t| time_key(t)).collect();
        let mut sorted = keys.clone();
        sorted.sort();
        assert_eq!(keys, sorted);
        assert!(keys.iter().all(|k| k.len() == 20));
    }

    #[test]
    fn cursors_round_trip_and_garbage_is_refused() {
        let item = Item::from([
            ("spk".into(), s("scores#acme")),
            ("ssk".into(), s("x#y")),
            ("pk".into(), s("score#acme/t")),
            ("sk".into(), s("code#n#")),
        ]);
        let cursor = encode_cursor(&item).expect("a cursor");
        assert_eq!(decode_cursor("acme", &cursor), Ok(item));
        for bad in ["", "zz", "abc", "5b5d", "ünï"] {
            assert!(decode_cursor("acme", bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn keys_never_run_together() {
        assert_ne!(trace_pk("a#b", "c"), trace_pk("a", "b#c"));
        assert_ne!(trace_pk("a/b", "c"), trace_pk("a", "b/c"));
        assert_ne!(tenant_spk("a#"), tenant_spk("a%23"));
    }
}
