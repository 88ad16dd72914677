//! The [`GradingStore`] in the session table (layout in `DESIGN.md`): rubric versions under
//! `rubric#<tenant>/<name>`, each queue in its own partition `queue#<tenant>/<queue>` (its
//! spec, items, slots, seen markers, drafts and grades), and the tenant's list of queues
//! under `queues#<tenant>`. Key parts are percent-encoded, so no two tenants, queues or
//! graders ever share a key. Claims and submissions are `TransactWriteItems` whose
//! conditions make them atomic: a slot is taken only while it is free, and a grade only
//! from the grader who holds (or last held) its slot.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::Duration;

use agentwire_grading::{
    Claim, Draft, Grade, GradingError, GradingStore, ItemState, QueueItem, QueueSpec, Rubric,
    SlotState,
};
use agentwire_session::path::encode_segment;
use async_trait::async_trait;
use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::error::{DisplayErrorContext, SdkError};
use aws_sdk_dynamodb::types::{
    AttributeValue, ConditionCheck, Delete, Put, TransactWriteItem, Update,
};

use crate::item::Item;

/// Items added per transaction by `add_items` (two writes each: the item and its trace
/// index entry; DynamoDB allows 100 writes per transaction).
const ITEMS_PER_TRANSACTION: usize = 25;
/// Attempts of a claim or submission that keeps losing races to other graders.
const MAX_ATTEMPTS: u32 = 20;

/// Rubrics, queues, claims and grades in the session table.
pub struct DynamoGradingStore {
    client: Client,
    table: String,
}

fn failed(e: impl std::fmt::Display) -> GradingError {
    GradingError::Storage(format!("dynamodb: {e}"))
}

fn s(value: impl Into<String>) -> AttributeValue {
    AttributeValue::S(value.into())
}

fn num(value: impl ToString) -> AttributeValue {
    AttributeValue::N(value.to_string())
}

fn rubric_pk(tenant: &str, name: &str) -> String {
    format!("rubric#{}/{}", encode_segment(tenant), encode_segment(name))
}

/// A rubric version's sort key: 10 digits, so the latest sorts last.
fn rubric_sk(version: u32) -> String {
    format!("v#{version:010}")
}

fn queue_pk(tenant: &str, queue: &str) -> String {
    format!("queue#{}/{}", encode_segment(tenant), encode_segment(queue))
}

fn queues_pk(tenant: &str) -> String {
    format!("queues#{}", encode_segment(tenant))
}

const SPEC_SK: &str = "spec";

fn item_sk(position: u32) -> String {
    format!("item#{position:010}")
}

fn slot_sk(position: u32, slot: u32) -> String {
    format!("slot#{position:010}#{slot:04}")
}

/// A per-grader sort key of an item: `<kind>#<position>#<grader>`.
fn grader_sk(kind: &str, position: u32, grader: &str) -> String {
    format!("{kind}#{position:010}#{}", encode_segment(grader))
}

fn trace_sk(trace_id: &str) -> String {
    format!("trace#{}", encode_segment(trace_id))
}

/// The first and last sort keys of what a claim reads: items, seen markers and slots
/// (`item#` < `seen#` < `slot#`, and `$` sorts after the `#` every slot key continues with).
const SCAN_FROM: &str = "item#";
const SCAN_TO: &str = "slot$";

fn key(pk: &str, sk: &str) -> Item {
    Item::from([("pk".into(), s(pk)), ("sk".into(), s(sk))])
}

fn bad(what: &str) -> GradingError {
    GradingError::Storage(format!("dynamodb: a grading item lacks a valid {what}"))
}

fn get_s<'a>(item: &'a Item, name: &str) -> Result<&'a str, GradingError> {
    match item.get(name) {
        Some(AttributeValue::S(v)) => Ok(v),
        _ => Err(bad(name)),
    }
}

fn get_n<T: std::str::FromStr>(item: &Item, name: &str) -> Result<T, GradingError> {
    match item.get(name) {
        Some(AttributeValue::N(v)) => v.parse().map_err(|_| bad(name)),
        _ => Err(bad(name)),
    }
}

fn get_bool(item: &Item, name: &str) -> Result<bool, GradingError> {
    match item.get(name) {
        Some(AttributeValue::Bool(v)) => Ok(*v),
        _ => Err(bad(name)),
    }
}

fn body<T: serde::de::DeserializeOwned>(item: &Item) -> Result<T, GradingError> {
    serde_json::from_str(get_s(item, "body")?).map_err(|_| bad("body"))
}

fn to_json(value: &impl serde::Serialize) -> Result<String, GradingError> {
    serde_json::to_string(value).map_err(failed)
}

fn queue_item(item: &Item) -> Result<QueueItem, GradingError> {
    Ok(QueueItem {
        trace_id: get_s(item, "tr")?.to_owned(),
        session: get_s(item, "ss")?.to_owned(),
        position: get_n(item, "pos")?,
        slots: get_n(item, "n")?,
    })
}

/// One slot as stored: the grader holding it, until when, and whether it is graded.
#[derive(Debug, Clone)]
struct Slot {
    holder: String,
    until_ms: i64,
    done: bool,
}

impl Slot {
    fn from_item(item: &Item) -> Result<Slot, GradingError> {
        Ok(Slot {
            holder: get_s(item, "h")?.to_owned(),
            until_ms: get_n(item, "u")?,
            done: get_bool(item, "d")?,
        })
    }

    /// Taken by nobody at `now_ms`: its holder's lease ended before then, ungraded.
    fn free_at(&self, now_ms: i64) -> bool {
        !self.done && self.until_ms < now_ms
    }
}

/// A queue as a claim sees it: its items by position, their taken slots, who saw them.
#[derive(Default)]
struct QueueState {
    items: BTreeMap<u32, QueueItem>,
    slots: BTreeMap<u32, BTreeMap<u32, Slot>>,
    seen: BTreeMap<u32, BTreeSet<String>>,
}

/// How a transaction ended.
enum Outcome {
    Committed,
    /// Cancelled by conditions: each write's cancellation code (`None` for those that
    /// were fine), in the order the writes were given.
    Failed(Vec<Option<String>>),
    /// Another transaction was on the same items at the same time: decide again.
    Contended,
}

/// Backs off a little between attempts that lost a race, so racers spread out.
async fn contend(attempt: u32) {
    let ceiling = 2u64 << attempt.min(6);
    tokio::time::sleep(Duration::from_millis(fastrand::u64(0..ceiling))).await;
}

/// Expression attribute names for the short attribute names used in expressions (some
/// are DynamoDB reserved words, so every expression names them this way).
fn names(list: &[&str]) -> Option<HashMap<String, String>> {
    Some(
        list.iter()
            .map(|n| (format!("#{n}"), (*n).to_owned()))
            .collect(),
    )
}

fn values(list: Vec<(&str, AttributeValue)>) -> Option<HashMap<String, AttributeValue>> {
    Some(list.into_iter().map(|(k, v)| (k.to_owned(), v)).collect())
}

impl DynamoGradingStore {
    /// The store in `table`, the session table (made by
    /// [`crate::DynamoSessionLog::ensure_table`] locally, by the template on AWS).
    pub fn new(client: Client, table: impl Into<String>) -> DynamoGradingStore {
        DynamoGradingStore {
            client,
            table: table.into(),
        }
    }

    async fn get(&self, pk: &str, sk: &str) -> Result<Option<Item>, GradingError> {
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .set_key(Some(key(pk, sk).into_iter().collect()))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| failed(DisplayErrorContext(e)))?;
        Ok(out.item)
    }

    /// Every item of partition `pk` whose sort key lies in `[from, to]`, in order, with a
    /// strongly consistent read.
    async fn range(&self, pk: &str, from: &str, to: &str) -> Result<Vec<Item>, GradingError> {
        self.query(pk, Some((from, to))).await
    }

    /// Every item of partition `pk`, in order, with a strongly consistent read.
    async fn partition(&self, pk: &str) -> Result<Vec<Item>, GradingError> {
        self.query(pk, None).await
    }

    async fn query(
        &self,
        pk: &str,
        bounds: Option<(&str, &str)>,
    ) -> Result<Vec<Item>, GradingError> {
        let mut items = Vec::new();
        let mut start = None;
        loop {
            let mut query = self
                .client
                .query()
                .table_name(&self.table)
                .key_condition_expression("pk = :pk")
                .expression_attribute_values(":pk", s(pk));
            if let Some((from, to)) = bounds {
                query = query
                    .key_condition_expression("pk = :pk AND sk BETWEEN :from AND :to")
                    .expression_attribute_values(":from", s(from))
                    .expression_attribute_values(":to", s(to));
            }
            let page = query
                .consistent_read(true)
                .set_exclusive_start_key(start.take())
                .send()
                .await
                .map_err(|e| failed(DisplayErrorContext(e)))?;
            items.extend(page.items().iter().cloned());
            match page.last_evaluated_key {
                Some(key) => start = Some(key),
                None => return Ok(items),
            }
        }
    }

    /// Every item of `pk` whose sort key starts with `prefix` (which ends with `#`).
    async fn prefixed(&self, pk: &str, prefix: &str) -> Result<Vec<Item>, GradingError> {
        // `$` sorts right after `#`: the prefix's keys all lie before `<prefix-without-#>$`.
        let to = format!("{}$", prefix.trim_end_matches('#'));
        self.range(pk, prefix, &to).await
    }

    async fn spec(&self, tenant: &str, queue: &str) -> Result<Option<QueueSpec>, GradingError> {
        self.get(&queue_pk(tenant, queue), SPEC_SK)
            .await?
            .map(|item| body(&item))
            .transpose()
    }

    async fn existing_spec(&self, tenant: &str, queue: &str) -> Result<QueueSpec, GradingError> {
        self.spec(tenant, queue)
            .await?
            .ok_or_else(|| GradingError::NotFound(format!("no queue named {queue}")))
    }

    /// The position of the queue's item for `trace_id`.
    async fn position(
        &self,
        tenant: &str,
        queue: &str,
        trace_id: &str,
    ) -> Result<Option<u32>, GradingError> {
        self.get(&queue_pk(tenant, queue), &trace_sk(trace_id))
            .await?
            .map(|item| get_n(&item, "pos"))
            .transpose()
    }

    async fn existing_position(
        &self,
        tenant: &str,
        queue: &str,
        trace_id: &str,
    ) -> Result<u32, GradingError> {
        self.position(tenant, queue, trace_id)
            .await?
            .ok_or_else(|| {
                GradingError::NotFound(format!("queue {queue} has no item for trace {trace_id}"))
            })
    }

    /// The queue's items, taken slots and seen markers, read consistently.
    async fn state(&self, pk: &str) -> Result<QueueState, GradingError> {
        let mut state = QueueState::default();
        for item in self.range(pk, SCAN_FROM, SCAN_TO).await? {
            let sk = get_s(&item, "sk")?;
            if sk.starts_with("item#") {
                let it = queue_item(&item)?;
                state.items.insert(it.position, it);
            } else if sk.starts_with("slot#") {
                let position = get_n(&item, "pos")?;
                let slot = get_n(&item, "slot")?;
                state
                    .slots
                    .entry(position)
                    .or_default()
                    .insert(slot, Slot::from_item(&item)?);
            } else if sk.starts_with("seen#") {
                let position = get_n(&item, "pos")?;
                state
                    .seen
                    .entry(position)
                    .or_default()
                    .insert(get_s(&item, "g")?.to_owned());
            }
        }
        Ok(state)
    }

    async fn transact(&self, writes: Vec<TransactWriteItem>) -> Result<Outcome, GradingError> {
        use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError;
        match self
            .client
            .transact_write_items()
            .set_transact_items(Some(writes))
            .send()
            .await
        {
            Ok(_) => Ok(Outcome::Committed),
            Err(e) => {
                let codes = match e.as_service_error() {
                    Some(TransactWriteItemsError::TransactionCanceledException(c)) => c
                        .cancellation_reasons()
                        .iter()
                        .map(|r| r.code().filter(|c| *c != "None").map(str::to_owned))
                        .collect::<Vec<_>>(),
                    _ => return Err(failed(DisplayErrorContext(e))),
                };
                if codes
                    .iter()
                    .flatten()
                    .any(|c| c == "TransactionConflict" || c == "ThrottlingError")
                {
                    Ok(Outcome::Contended)
                } else if codes
                    .iter()
                    .flatten()
                    .all(|c| c == "ConditionalCheckFailed")
                {
                    Ok(Outcome::Failed(codes))
                } else {
                    Err(failed(DisplayErrorContext(e)))
                }
            }
        }
    }

    fn put(&self, item: Item, condition: Option<&str>) -> Result<TransactWriteItem, GradingError> {
        let put = Put::builder()
            .table_name(&self.table)
            .set_item(Some(item.into_iter().collect()))
            .set_condition_expression(condition.map(str::to_owned))
            .build()
            .map_err(failed)?;
        Ok(TransactWriteItem::builder().put(put).build())
    }

    /// A conditional update of one item, its attribute names all given as `#name`.
    fn update(
        &self,
        key: Item,
        expression: &str,
        condition: &str,
        attribute_names: &[&str],
        attribute_values: Vec<(&str, AttributeValue)>,
    ) -> Result<TransactWriteItem, GradingError> {
        let update = Update::builder()
            .table_name(&self.table)
            .set_key(Some(key.into_iter().collect()))
            .update_expression(expression)
            .condition_expression(condition)
            .set_expression_attribute_names(names(attribute_names))
            .set_expression_attribute_values(values(attribute_values))
            .build()
            .map_err(failed)?;
        Ok(TransactWriteItem::builder().update(update).build())
    }

    fn delete(&self, key: Item) -> Result<TransactWriteItem, GradingError> {
        let delete = Delete::builder()
            .table_name(&self.table)
            .set_key(Some(key.into_iter().collect()))
            .build()
            .map_err(failed)?;
        Ok(TransactWriteItem::builder().delete(delete).build())
    }

    /// Renews the grader's hold of a slot, lapsed or not; false when it is no longer
    /// theirs (another grader took it) or is graded.
    async fn renew(
        &self,
        pk: &str,
        position: u32,
        slot: u32,
        grader: &str,
        until_ms: i64,
    ) -> Result<bool, GradingError> {
        use aws_sdk_dynamodb::operation::update_item::UpdateItemError;
        let result = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(
                key(pk, &slot_sk(position, slot)).into_iter().collect(),
            ))
            .update_expression("SET #u = :until")
            .condition_expression("#h = :g AND #d = :false")
            .set_expression_attribute_names(names(&["u", "h", "d"]))
            .set_expression_attribute_values(values(vec![
                (":until", num(until_ms)),
                (":g", s(grader)),
                (":false", AttributeValue::Bool(false)),
            ]))
            .send()
            .await;
        match result {
            Ok(_) => Ok(true),
            Err(SdkError::ServiceError(e))
                if matches!(e.err(), UpdateItemError::ConditionalCheckFailedException(_)) =>
            {
                Ok(false)
            }
            Err(e) => Err(failed(DisplayErrorContext(e))),
        }
    }

    /// Takes slot `slot` of the item at `position` for `grader` and marks the item seen by
    /// them, in one transaction.
    async fn take(
        &self,
        pk: &str,
        position: u32,
        slot: u32,
        grader: &str,
        now_ms: i64,
        until_ms: i64,
    ) -> Result<Outcome, GradingError> {
        let take = self.update(
            key(pk, &slot_sk(position, slot)),
            "SET #h = :g, #u = :until, #d = :false, #pos = :pos, #slot = :slot",
            // Free: never taken, or its holder's lease ended before now, ungraded.
            "attribute_not_exists(pk) OR (#d = :false AND #u < :now)",
            &["h", "u", "d", "pos", "slot"],
            vec![
                (":g", s(grader)),
                (":until", num(until_ms)),
                (":false", AttributeValue::Bool(false)),
                (":pos", num(position)),
                (":slot", num(slot)),
                (":now", num(now_ms)),
            ],
        )?;
        let mut seen = key(pk, &grader_sk("seen", position, grader));
        seen.insert("pos".into(), num(position));
        seen.insert("g".into(), s(grader));
        seen.insert("at".into(), num(now_ms));
        let seen = self.put(seen, Some("attribute_not_exists(pk)"))?;
        self.transact(vec![take, seen]).await
    }

    /// Adds `items` (distinct traces and positions) in transactions of
    /// [`ITEMS_PER_TRANSACTION`]; an item whose trace is already there is skipped.
    async fn insert_items(
        &self,
        pk: &str,
        queue: &str,
        items: &[QueueItem],
    ) -> Result<(), GradingError> {
        for chunk in items.chunks(ITEMS_PER_TRANSACTION) {
            let mut pending: Vec<&QueueItem> = chunk.iter().collect();
            let mut attempt = 0;
            while !pending.is_empty() {
                let mut writes = Vec::with_capacity(pending.len() * 2);
                for it in &pending {
                    let mut index = key(pk, &trace_sk(&it.trace_id));
                    index.insert("pos".into(), num(it.position));
                    writes.push(self.put(index, Some("attribute_not_exists(pk)"))?);
                    let mut item = key(pk, &item_sk(it.position));
                    item.insert("tr".into(), s(&it.trace_id));
                    item.insert("ss".into(), s(&it.session));
                    item.insert("pos".into(), num(it.position));
                    item.insert("n".into(), num(it.slots));
                    writes.push(self.put(item, Some("attribute_not_exists(pk)"))?);
                }
                match self.transact(writes).await? {
                    Outcome::Committed => break,
                    Outcome::Contended => {
                        attempt += 1;
                        if attempt >= MAX_ATTEMPTS {
                            return Err(failed("adding items kept conflicting with other writers"));
                        }
                        contend(attempt).await;
                    }
                    Outcome::Failed(codes) => {
                        let failed_at = |i: usize| codes.get(i).is_some_and(Option::is_some);
                        let mut left = Vec::with_capacity(pending.len());
                        for (i, it) in pending.iter().enumerate() {
                            if failed_at(2 * i) {
                                // Its trace is there already: left as it is.
                                continue;
                            }
                            if failed_at(2 * i + 1) {
                                return Err(GradingError::Conflict(format!(
                                    "queue {queue} already has another trace at position {}",
                                    it.position
                                )));
                            }
                            left.push(*it);
                        }
                        if left.len() == pending.len() {
                            return Err(failed("adding items was refused without a reason"));
                        }
                        pending = left;
                    }
                }
            }
        }
        Ok(())
    }
}

/// Refuses a list of items naming one trace or one position twice (one transaction may
/// not write one item twice, and the queue could not hold both).
fn check_items(items: &[QueueItem]) -> Result<(), GradingError> {
    let mut traces = BTreeSet::new();
    let mut positions = BTreeSet::new();
    for (i, it) in items.iter().enumerate() {
        if !traces.insert(it.trace_id.as_str()) {
            return Err(GradingError::Invalid {
                field: format!("items[{i}].trace_id"),
                message: format!("trace {} is given twice", it.trace_id),
            });
        }
        if !positions.insert(it.position) {
            return Err(GradingError::Invalid {
                field: format!("items[{i}].position"),
                message: format!("position {} is given twice", it.position),
            });
        }
    }
    Ok(())
}

#[async_trait]
impl GradingStore for DynamoGradingStore {
    async fn put_rubric(&self, tenant: &str, rubric: &Rubric) -> Result<(), GradingError> {
        use aws_sdk_dynamodb::operation::put_item::PutItemError;
        let pk = rubric_pk(tenant, &rubric.name);
        let sk = rubric_sk(rubric.version);
        let mut item = key(&pk, &sk);
        item.insert("body".into(), s(to_json(rubric)?));
        let result = self
            .client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(item.into_iter().collect()))
            .condition_expression("attribute_not_exists(pk)")
            .send()
            .await;
        match result {
            Ok(_) => Ok(()),
            Err(SdkError::ServiceError(e))
                if matches!(e.err(), PutItemError::ConditionalCheckFailedException(_)) =>
            {
                let stored: Option<Rubric> = self
                    .get(&pk, &sk)
                    .await?
                    .map(|item| body(&item))
                    .transpose()?;
                if stored.as_ref() == Some(rubric) {
                    Ok(())
                } else {
                    Err(GradingError::Conflict(format!(
                        "rubric {} version {} exists with a different body (versions never \
                         change: store a new version)",
                        rubric.name, rubric.version
                    )))
                }
            }
            Err(e) => Err(failed(DisplayErrorContext(e))),
        }
    }

    async fn rubric(
        &self,
        tenant: &str,
        name: &str,
        version: Option<u32>,
    ) -> Result<Option<Rubric>, GradingError> {
        let pk = rubric_pk(tenant, name);
        let item = match version {
            Some(version) => self.get(&pk, &rubric_sk(version)).await?,
            None => self
                .client
                .query()
                .table_name(&self.table)
                .key_condition_expression("pk = :pk AND begins_with(sk, :v)")
                .expression_attribute_values(":pk", s(pk))
                .expression_attribute_values(":v", s("v#"))
                .scan_index_forward(false)
                .limit(1)
                .consistent_read(true)
                .send()
                .await
                .map_err(|e| failed(DisplayErrorContext(e)))?
                .items
                .and_then(|items| items.into_iter().next()),
        };
        item.map(|item| body(&item)).transpose()
    }

    async fn create_queue(
        &self,
        tenant: &str,
        spec: &QueueSpec,
        items: &[QueueItem],
    ) -> Result<(), GradingError> {
        check_items(items)?;
        let pk = queue_pk(tenant, &spec.name);
        let json = to_json(spec)?;
        let mut stored = key(&pk, SPEC_SK);
        stored.insert("body".into(), s(json.clone()));
        // The tenant's list holds the (immutable) spec too, so listing is one query.
        let mut listed = key(&queues_pk(tenant), &encode_segment(&spec.name));
        listed.insert("body".into(), s(json));
        let writes = vec![
            self.put(stored, Some("attribute_not_exists(pk)"))?,
            self.put(listed, None)?,
        ];
        let mut attempt = 0;
        loop {
            match self.transact(writes.clone()).await? {
                Outcome::Committed => break,
                Outcome::Failed(_) => {
                    if self.spec(tenant, &spec.name).await?.as_ref() != Some(spec) {
                        return Err(GradingError::Conflict(format!(
                            "a queue named {} exists with a different definition",
                            spec.name
                        )));
                    }
                    // A retried create: add what the first attempt may have missed.
                    break;
                }
                Outcome::Contended => {
                    attempt += 1;
                    if attempt >= MAX_ATTEMPTS {
                        return Err(failed(
                            "creating a queue kept conflicting with other writers",
                        ));
                    }
                    contend(attempt).await;
                }
            }
        }
        self.insert_items(&pk, &spec.name, items).await
    }

    async fn add_items(
        &self,
        tenant: &str,
        queue: &str,
        items: &[QueueItem],
    ) -> Result<(), GradingError> {
        check_items(items)?;
        self.existing_spec(tenant, queue).await?;
        self.insert_items(&queue_pk(tenant, queue), queue, items)
            .await
    }

    async fn queue(&self, tenant: &str, name: &str) -> Result<Option<QueueSpec>, GradingError> {
        self.spec(tenant, name).await
    }

    async fn queues(&self, tenant: &str) -> Result<Vec<QueueSpec>, GradingError> {
        let mut specs = self
            .partition(&queues_pk(tenant))
            .await?
            .iter()
            .map(body::<QueueSpec>)
            .collect::<Result<Vec<_>, _>>()?;
        specs.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(specs)
    }

    async fn items(&self, tenant: &str, queue: &str) -> Result<Vec<ItemState>, GradingError> {
        self.existing_spec(tenant, queue).await?;
        let mut state = self.state(&queue_pk(tenant, queue)).await?;
        Ok(state
            .items
            .into_values()
            .map(|item| {
                let slots = state
                    .slots
                    .remove(&item.position)
                    .unwrap_or_default()
                    .into_iter()
                    .map(|(k, slot)| {
                        let state = if slot.done {
                            SlotState::Done {
                                grader: slot.holder,
                            }
                        } else {
                            SlotState::Held {
                                grader: slot.holder,
                                until_ms: slot.until_ms,
                            }
                        };
                        (k, state)
                    })
                    .collect();
                let seen_by = state
                    .seen
                    .remove(&item.position)
                    .unwrap_or_default()
                    .into_iter()
                    .collect();
                ItemState {
                    item,
                    slots,
                    seen_by,
                }
            })
            .collect())
    }

    async fn claim(
        &self,
        tenant: &str,
        queue: &str,
        grader: &str,
        now_ms: i64,
    ) -> Result<Option<Claim>, GradingError> {
        let spec = self.existing_spec(tenant, queue).await?;
        if !spec.graders.iter().any(|g| g == grader) {
            return Err(GradingError::NotAGrader(format!(
                "{grader} is not a grader of queue {queue}"
            )));
        }
        let pk = queue_pk(tenant, queue);
        let until_ms = now_ms.saturating_add(spec.lease_ms);
        let claim = |item: &QueueItem, slot: u32| Claim {
            queue: queue.to_owned(),
            item: item.clone(),
            grader: grader.to_owned(),
            slot,
            lease_until_ms: until_ms,
        };
        for attempt in 0..MAX_ATTEMPTS {
            if attempt > 0 {
                contend(attempt).await;
            }
            let state = self.state(&pk).await?;
            // The slot they hold or last held, ungraded, comes first (even lapsed, even past
            // the deadline), renewed: another grader taking it replaced the holder.
            let held = state.slots.iter().find_map(|(position, slots)| {
                slots.iter().find_map(|(k, slot)| {
                    (slot.holder == grader && !slot.done).then_some((*position, *k))
                })
            });
            if let Some((position, slot)) = held {
                let item = state.items.get(&position).ok_or_else(|| bad("item"))?;
                if self.renew(&pk, position, slot, grader, until_ms).await? {
                    return Ok(Some(claim(item, slot)));
                }
                // Taken by another grader (or graded) since the read: decide again.
                continue;
            }
            if spec.deadline_ms.is_some_and(|deadline| now_ms > deadline) {
                return Err(GradingError::Closed(format!(
                    "queue {queue} is past its deadline: no new claims"
                )));
            }
            // Every free slot of each item they never claimed, by position then slot: a
            // slot lost to another grader may leave another of the same item free.
            let mut candidates = Vec::new();
            for item in state.items.values() {
                if state
                    .seen
                    .get(&item.position)
                    .is_some_and(|seen| seen.contains(grader))
                {
                    continue;
                }
                let taken = state.slots.get(&item.position);
                for k in 0..item.slots {
                    if taken
                        .and_then(|t| t.get(&k))
                        .is_none_or(|slot| slot.free_at(now_ms))
                    {
                        candidates.push((item, k));
                    }
                }
            }
            let mut again = false;
            for (item, slot) in candidates {
                match self
                    .take(&pk, item.position, slot, grader, now_ms, until_ms)
                    .await?
                {
                    Outcome::Committed => return Ok(Some(claim(item, slot))),
                    // Another grader took that slot since the read: the next candidate.
                    Outcome::Failed(codes) if codes.get(1).is_none_or(Option::is_none) => {}
                    // They claimed this item concurrently (another tab), or the item was
                    // raced: read again, which finds that hold to resume.
                    Outcome::Failed(_) | Outcome::Contended => {
                        again = true;
                        break;
                    }
                }
            }
            if !again {
                return Ok(None);
            }
        }
        Err(failed(format!(
            "claiming in queue {queue} kept losing races with other graders {MAX_ATTEMPTS} times"
        )))
    }

    async fn submit(&self, tenant: &str, grade: &Grade, now_ms: i64) -> Result<(), GradingError> {
        let queue = &grade.queue;
        let grader = &grade.grader;
        self.existing_spec(tenant, queue).await?;
        let position = self
            .existing_position(tenant, queue, &grade.trace_id)
            .await?;
        let pk = queue_pk(tenant, queue);
        let not_held = |why: &str| {
            GradingError::NotHeld(format!(
                "{grader} does not hold trace {} of queue {queue}: {why}",
                grade.trace_id
            ))
        };
        let json = to_json(grade)?;
        for attempt in 0..MAX_ATTEMPTS {
            if attempt > 0 {
                contend(attempt).await;
            }
            let mut slot = None;
            for item in self.prefixed(&pk, &format!("slot#{position:010}#")).await? {
                let found = Slot::from_item(&item)?;
                if found.holder == *grader {
                    slot = Some((get_n::<u32>(&item, "slot")?, found));
                }
            }
            let Some((k, found)) = slot else {
                return Err(not_held(
                    "they never claimed it, or their lease ran out and another grader took it",
                ));
            };
            if found.done {
                return Err(not_held("they graded it already"));
            }
            // Still theirs (live, or ran out with nobody else taking it) and ungraded.
            let fill = self.update(
                key(&pk, &slot_sk(position, k)),
                "SET #d = :true, #at = :now",
                "#h = :g AND #d = :false",
                &["d", "at", "h"],
                vec![
                    (":true", AttributeValue::Bool(true)),
                    (":false", AttributeValue::Bool(false)),
                    (":now", num(now_ms)),
                    (":g", s(grader)),
                ],
            )?;
            let mut stored = key(&pk, &grader_sk("grade", position, grader));
            stored.insert("pos".into(), num(position));
            stored.insert("g".into(), s(grader));
            stored.insert("body".into(), s(json.clone()));
            let keep = self.put(stored, Some("attribute_not_exists(pk)"))?;
            let forget = self.delete(key(&pk, &grader_sk("draft", position, grader)))?;
            match self.transact(vec![fill, keep, forget]).await? {
                Outcome::Committed => return Ok(()),
                // Taken or graded since the read, or raced: read again, which says which.
                Outcome::Failed(_) | Outcome::Contended => continue,
            }
        }
        Err(failed(format!(
            "submitting to queue {queue} kept losing races {MAX_ATTEMPTS} times"
        )))
    }

    async fn save_draft(&self, tenant: &str, draft: &Draft) -> Result<(), GradingError> {
        let queue = &draft.queue;
        self.existing_spec(tenant, queue).await?;
        let position = self
            .existing_position(tenant, queue, &draft.trace_id)
            .await?;
        let pk = queue_pk(tenant, queue);
        let seen = grader_sk("seen", position, &draft.grader);
        if self.get(&pk, &seen).await?.is_none() {
            return Err(GradingError::NotHeld(format!(
                "{} never claimed trace {} of queue {queue}",
                draft.grader, draft.trace_id
            )));
        }
        let mut item = key(&pk, &grader_sk("draft", position, &draft.grader));
        item.insert("pos".into(), num(position));
        item.insert("g".into(), s(&draft.grader));
        item.insert("body".into(), s(to_json(draft)?));
        // Seen markers are never deleted, so the check above cannot be undone by a race.
        // A grade can appear at any time, so its absence is checked in the transaction
        // with the put: a late autosave after submit never brings the draft back.
        let ungraded = ConditionCheck::builder()
            .table_name(&self.table)
            .set_key(Some(
                key(&pk, &grader_sk("grade", position, &draft.grader))
                    .into_iter()
                    .collect(),
            ))
            .condition_expression("attribute_not_exists(pk)")
            .build()
            .map_err(failed)?;
        let writes = vec![
            TransactWriteItem::builder()
                .condition_check(ungraded)
                .build(),
            self.put(item, None)?,
        ];
        for attempt in 0..MAX_ATTEMPTS {
            if attempt > 0 {
                contend(attempt).await;
            }
            match self.transact(writes.clone()).await? {
                Outcome::Committed => return Ok(()),
                Outcome::Failed(_) => {
                    return Err(GradingError::NotHeld(format!(
                        "{} has already graded trace {} of queue {queue}: the draft is not kept",
                        draft.grader, draft.trace_id
                    )));
                }
                // A submit or another save on the same items at once: try again.
                Outcome::Contended => {}
            }
        }
        Err(failed(format!(
            "saving a draft in queue {queue} kept conflicting {MAX_ATTEMPTS} times"
        )))
    }

    async fn draft(
        &self,
        tenant: &str,
        queue: &str,
        trace_id: &str,
        grader: &str,
    ) -> Result<Option<Draft>, GradingError> {
        let Some(position) = self.position(tenant, queue, trace_id).await? else {
            return Ok(None);
        };
        self.get(
            &queue_pk(tenant, queue),
            &grader_sk("draft", position, grader),
        )
        .await?
        .map(|item| body(&item))
        .transpose()
    }

    async fn grades(&self, tenant: &str, queue: &str) -> Result<Vec<Grade>, GradingError> {
        self.existing_spec(tenant, queue).await?;
        let mut grades = self
            .prefixed(&queue_pk(tenant, queue), "grade#")
            .await?
            .iter()
            .map(|item| Ok((get_n::<u32>(item, "pos")?, body::<Grade>(item)?)))
            .collect::<Result<Vec<_>, GradingError>>()?;
        grades.sort_by(|(a, ga), (b, gb)| (a, &ga.grader).cmp(&(b, &gb.grader)));
        Ok(grades.into_iter().map(|(_, grade)| grade).collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_never_run_together() {
        assert_ne!(queue_pk("a/b", "c"), queue_pk("a", "b/c"));
        assert_ne!(queue_pk("a#b", "c"), queue_pk("a", "b#c"));
        assert_ne!(rubric_pk("a/b", "c"), rubric_pk("a", "b/c"));
        assert_ne!(grader_sk("seen", 1, "a#b"), grader_sk("seen", 1, "a%23b"));
        assert_ne!(queues_pk("a#"), queues_pk("a%23"));
    }

    #[test]
    fn a_claim_scan_covers_items_seen_markers_and_slots_only() {
        let inside = [
            item_sk(0),
            item_sk(u32::MAX),
            grader_sk("seen", 3, "~~~"),
            grader_sk("seen", u32::MAX, "\u{10ffff}"),
            slot_sk(0, 0),
            slot_sk(u32::MAX, 9999),
        ];
        for sk in &inside {
            assert!(SCAN_FROM <= sk.as_str() && sk.as_str() <= SCAN_TO, "{sk}");
        }
        let outside = [
            SPEC_SK.to_owned(),
            trace_sk("0af7651916cd43dd8448eb211c80319c"),
            grader_sk("draft", 0, "a"),
            grader_sk("grade", 0, "a"),
        ];
        for sk in &outside {
            assert!(
                !(SCAN_FROM <= sk.as_str() && sk.as_str() <= SCAN_TO),
                "{sk}"
            );
        }
    }

    #[test]
    fn rubric_versions_sort_in_order() {
        let keys: Vec<String> = [0, 1, 9, 10, 99, u32::MAX]
            .into_iter()
            .map(rubric_sk)
            .collect();
        let mut sorted = keys.clone();
        sorted.sort();
        assert_eq!(keys, sorted);
    }
}
