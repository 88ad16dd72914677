//! The [`SessionLog`] on DynamoDB. See `DESIGN.md` beside this crate for the key schema and
//! why appends are gapless and exactly-once.

mod activity;
mod budget;
mod connections;
mod grading;
mod item;
mod scores;
mod stream;
mod subscriptions;
mod table;

pub use activity::DynamoActivityIndex;
pub use budget::DynamoBudgetLedger;
pub use connections::{CONNECTION_LIFETIME_SECS, DynamoConnectionRegistry};
pub use grading::DynamoGradingStore;
pub use scores::{DynamoScoreIndex, SCORES_INDEX};
pub use stream::session_changes;
pub use subscriptions::{DynamoSubscriptionStore, subscription_changes};
pub use table::KEYS_INDEX;

use std::sync::Arc;
use std::time::Duration;

use agentwire_session::content::json_messages;
use agentwire_session::fork;
use agentwire_session::rules::{self, AppendPlan, AppendTarget, ForkSource};
use agentwire_session::{
    AppendError, AppendKind, AppendRequest, Appended, BlobStore, Clock, CreateError, CreateStream,
    Created, DeleteError, Expiry, Mode, Offset, ProducerState, ProtocolError, ReadBatch, ReadError,
    ReadFrom, Record, SessionLog, StorageError, StreamInfo, SystemClock,
};
use async_trait::async_trait;
use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::operation::put_item::PutItemError;
use aws_sdk_dynamodb::types::{AttributeValue, Put, TransactWriteItem, Update};
use bytes::Bytes;
use tracing::{debug, instrument};

use crate::item::{Item, Last, Layout, Meta, n, s};

/// Parts of one append are stored as items of at most this many bytes (DynamoDB's item
/// limit is 400 KB).
const PART_BYTES: usize = 300 * 1024;
/// A transaction holds at most 100 items and 4 MB.
const MAX_TRANSACTION_BYTES: usize = 3_500_000;
/// With a blob store, appends larger than this go to it whole and the log keeps the key
/// (a claim check): cheaper than hundreds of write units, and no transaction size limit.
pub const CLAIM_CHECK_BYTES: usize = 256 * 1024;
/// Attempts of one operation that keeps losing races to concurrent writers.
const MAX_ATTEMPTS: u32 = 200;

/// The session log in one DynamoDB table.
pub struct DynamoSessionLog {
    client: Client,
    table: String,
    clock: Arc<dyn Clock>,
    blobs: Option<Arc<dyn BlobStore>>,
    /// The layout new streams get (existing ones keep theirs).
    layout: Layout,
}

/// What a name refers to, after expiring it if its time is up.
enum Lookup {
    Live(Box<Meta>),
    SoftDeleted,
    Missing,
}

/// A write that lost a race: decide again against the new state.
struct Conflict;

/// Which records a query of a generation returns, by sort key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Direction {
    After,
    From,
    Before,
}

/// Records gathered for one read.
struct Batch {
    records: Vec<Record>,
    bytes: usize,
    max_bytes: usize,
}

/// What reading one more record item led to.
enum Take {
    More,
    /// It lies past the segment: go on with the next one.
    SegmentDone,
    /// The batch is full.
    Full,
}

/// A client for a DynamoDB-compatible endpoint (DynamoDB Local) with static credentials.
pub fn local_client(endpoint: &str) -> Client {
    use aws_sdk_dynamodb::config::{BehaviorVersion, Credentials, Region};
    let config = aws_sdk_dynamodb::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .endpoint_url(endpoint)
        .region(Region::new("us-east-1"))
        .credentials_provider(Credentials::new(
            "local",
            "local",
            None,
            None,
            "agentwire-local",
        ))
        .build();
    Client::from_conf(config)
}

impl DynamoSessionLog {
    /// The log in `table`, on the system clock.
    pub fn new(client: Client, table: impl Into<String>) -> DynamoSessionLog {
        DynamoSessionLog::with_clock(client, table, Arc::new(SystemClock))
    }

    /// The log in `table`, reading time from `clock`.
    pub fn with_clock(
        client: Client,
        table: impl Into<String>,
        clock: Arc<dyn Clock>,
    ) -> DynamoSessionLog {
        DynamoSessionLog {
            client,
            table: table.into(),
            clock,
            blobs: None,
            layout: Layout::Log,
        }
    }

    /// Creates new streams in the transactional layout earlier versions wrote, for tests
    /// that a table written by them keeps working.
    #[doc(hidden)]
    pub fn creating_transact_streams(mut self) -> DynamoSessionLog {
        self.layout = Layout::Transact;
        self
    }

    /// Keeps appends over [`CLAIM_CHECK_BYTES`] in `blobs` instead of the table.
    pub fn with_blobs(mut self, blobs: Arc<dyn BlobStore>) -> DynamoSessionLog {
        self.blobs = Some(blobs);
        self
    }

    /// Puts a large payload in the blob store before it is appended, so every attempt of
    /// the append refers to the same blob. `None`: the payload goes inline.
    async fn stash(&self, data: &Bytes) -> Result<Option<String>, StorageError> {
        let Some(blobs) = &self.blobs else {
            return Ok(None);
        };
        if data.len() <= CLAIM_CHECK_BYTES {
            return Ok(None);
        }
        let key = format!("blobs/{:016x}{:016x}", fastrand::u64(..), fastrand::u64(..));
        blobs.put(&key, data.clone()).await?;
        Ok(Some(key))
    }

    /// Removes a blob that no record refers to (its append was refused or failed).
    async fn unstash(&self, key: Option<String>) {
        if let (Some(blobs), Some(key)) = (&self.blobs, key)
            && let Err(e) = blobs.delete(&key).await
        {
            debug!(error = %e, "cannot remove an unused blob; it stays as an orphan");
        }
    }

    /// Creates the table (pay per request, with the `scores` index) if it does not exist;
    /// for local engines and tests.
    pub async fn ensure_table(&self) -> Result<(), StorageError> {
        // The session table also holds score records, listed through its `scores` index.
        table::ensure_session_table(&self.client, &self.table)
            .await
            .map(drop)
            .map_err(StorageError::new)
    }

    async fn get(&self, pk: &str, sk: &str) -> Result<Option<Item>, StorageError> {
        let output = self
            .client
            .get_item()
            .table_name(&self.table)
            .key("pk", s(pk))
            .key("sk", s(sk))
            .consistent_read(true)
            .send()
            .await
            .map_err(storage)?;
        Ok(output.item)
    }

    /// A stream's `meta` item as stored (for a [`Layout::Log`] stream, its state at
    /// creation).
    async fn stored_meta(&self, name: &str) -> Result<Option<Meta>, StorageError> {
        match self.get(&Meta::pk(name), "meta").await? {
            Some(item) => Meta::from_item(&item).map(Some),
            None => Ok(None),
        }
    }

    /// A stream's current state: its `meta` item, and for a [`Layout::Log`] stream what
    /// its newest record adds (tail, close, producer, `Stream-Seq`, last write).
    async fn meta(&self, name: &str) -> Result<Option<Meta>, StorageError> {
        let Some(mut meta) = self.stored_meta(name).await? else {
            return Ok(None);
        };
        if meta.layout == Layout::Log
            && !meta.deleted
            && let Some(last) = self.last_record(meta.gen_).await?
        {
            meta.follow(last);
        }
        Ok(Some(meta))
    }

    /// The newest record of a [`Layout::Log`] generation: one consistent query of one item.
    async fn last_record(&self, gen_: u64) -> Result<Option<Last>, StorageError> {
        let page = self
            .client
            .query()
            .table_name(&self.table)
            .key_condition_expression("pk = :pk")
            .expression_attribute_values(":pk", s(&Layout::Log.partition(gen_)))
            .scan_index_forward(false)
            .limit(1)
            .consistent_read(true)
            .projection_expression(
                "sk, #end, #at, #pid, #ep, #seq, #sseq, #cl, #cb_id, #cb_ep, #cb_seq",
            )
            .set_expression_attribute_names(Some(
                [
                    "end", "at", "pid", "ep", "seq", "sseq", "cl", "cb_id", "cb_ep", "cb_seq",
                ]
                .into_iter()
                .map(|name| (format!("#{name}"), name.to_owned()))
                .collect(),
            ))
            .send()
            .await
            .map_err(storage)?;
        page.items().first().map(Last::from_item).transpose()
    }

    async fn lookup(&self, name: &str, now: i64) -> Result<Lookup, StorageError> {
        Ok(match self.meta(name).await? {
            None => Lookup::Missing,
            Some(meta) if meta.deleted => Lookup::SoftDeleted,
            Some(meta) if meta.expired(now) => {
                let refs = meta.refs;
                self.remove(meta).await?;
                if refs == 0 {
                    Lookup::Missing
                } else {
                    Lookup::SoftDeleted
                }
            }
            Some(meta) => Lookup::Live(Box::new(meta)),
        })
    }

    async fn transact(
        &self,
        items: Vec<TransactWriteItem>,
    ) -> Result<Result<(), Conflict>, StorageError> {
        let result = self
            .client
            .transact_write_items()
            .set_transact_items(Some(items))
            .send()
            .await;
        match result {
            Ok(_) => Ok(Ok(())),
            Err(e) => {
                let service = e.into_service_error();
                if let aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError::TransactionCanceledException(
                    cancelled,
                ) = &service
                {
                    let conflict = cancelled
                        .cancellation_reasons()
                        .iter()
                        .any(|r| matches!(r.code(), Some("ConditionalCheckFailed" | "TransactionConflict")));
                    if conflict {
                        return Ok(Err(Conflict));
                    }
                }
                Err(storage(service))
            }
        }
    }

    fn put(
        &self,
        item: Item,
        condition: Option<&str>,
        values: Item,
    ) -> Result<TransactWriteItem, StorageError> {
        let mut put = Put::builder().table_name(&self.table).set_item(Some(item));
        if let Some(condition) = condition {
            put = put.condition_expression(condition);
        }
        if !values.is_empty() {
            put = put.set_expression_attribute_values(Some(values));
        }
        Ok(TransactWriteItem::builder()
            .put(put.build().map_err(storage)?)
            .build())
    }

    fn update(
        &self,
        pk: String,
        sk: &str,
        expression: &str,
        condition: &str,
        values: Item,
    ) -> Result<TransactWriteItem, StorageError> {
        let update = Update::builder()
            .table_name(&self.table)
            .key("pk", s(&pk))
            .key("sk", s(sk))
            .update_expression(expression)
            .condition_expression(condition)
            .set_expression_attribute_values(Some(values))
            .build()
            .map_err(storage)?;
        Ok(TransactWriteItem::builder().update(update).build())
    }

    /// Record items for `data` (units `[start, start + units)`) in `layout`, split into
    /// parts that fit, each stamped with the append's commit time `at_ms`. A
    /// [`Layout::Log`] record also names its stream, for the archiver's change feed.
    #[allow(clippy::too_many_arguments)]
    fn record_items(
        &self,
        (layout, gen_): (Layout, u64),
        name: &str,
        mode: Mode,
        (start, units): (u64, u64),
        data: &Bytes,
        blob: Option<&str>,
        at_ms: i64,
    ) -> Result<Vec<Item>, StorageError> {
        let at = AttributeValue::N(at_ms.to_string());
        let record = |span: (u64, u64)| {
            let mut item = layout.record_key(gen_, span);
            item.insert("at".into(), at.clone());
            if layout == Layout::Log {
                item.insert("nm".into(), s(name));
            }
            item
        };
        if let Some(key) = blob {
            let mut item = record((start, start + units));
            item.insert("blob".into(), s(key));
            return Ok(vec![item]);
        }
        if data.len() > MAX_TRANSACTION_BYTES {
            return Err(StorageError::new(format!(
                "an append of {} bytes exceeds what one DynamoDB transaction holds ({MAX_TRANSACTION_BYTES} bytes)",
                data.len()
            )));
        }
        let mut parts = Vec::new();
        match mode {
            Mode::Bytes => {
                let mut at = 0usize;
                while at < data.len() {
                    let end = (at + PART_BYTES).min(data.len());
                    parts.push((start + at as u64, start + end as u64, data.slice(at..end)));
                    at = end;
                }
            }
            Mode::Json => {
                let messages = json_messages(data);
                let (mut first, mut bytes, mut part_start) = (0usize, 0usize, start);
                for (i, message) in messages.iter().enumerate() {
                    if bytes > 0 && bytes + message.len() > PART_BYTES {
                        let joined = Bytes::from(messages[first..i].join(&b","[..]));
                        parts.push((part_start, start + i as u64, joined));
                        (first, bytes, part_start) = (i, 0, start + i as u64);
                    }
                    bytes += message.len() + 1;
                }
                let joined = Bytes::from(messages[first..].join(&b","[..]));
                parts.push((part_start, start + units, joined));
            }
        }
        Ok(parts
            .into_iter()
            .map(|(from, to, bytes)| {
                let mut item = record((from, to));
                item.insert("data".into(), AttributeValue::B(bytes.to_vec().into()));
                item
            })
            .collect())
    }

    async fn producer(&self, gen_: u64, id: &str) -> Result<Option<ProducerState>, StorageError> {
        let Some(item) = self.get(&format!("producer#{gen_}"), id).await? else {
            return Ok(None);
        };
        Ok(Some(ProducerState {
            epoch: item::get_n(&item, "ep")?,
            last_seq: item::get_n(&item, "seq")?,
        }))
    }

    /// Resets a TTL stream's idle clock; losing the race to a later access is fine.
    async fn touch(&self, meta: &Meta, now: i64) -> Result<(), StorageError> {
        if !matches!(meta.expiry, Expiry::Ttl { .. }) {
            return Ok(());
        }
        let result = self
            .client
            .update_item()
            .table_name(&self.table)
            .key("pk", s(&Meta::pk(&meta.name)))
            .key("sk", s("meta"))
            .update_expression("SET acc = :now")
            .condition_expression("gen = :gen AND acc < :now")
            .expression_attribute_values(":now", n(now as u64))
            .expression_attribute_values(":gen", n(meta.gen_))
            .send()
            .await;
        match result {
            Ok(_) => Ok(()),
            Err(e)
                if e.as_service_error()
                    .is_some_and(|e| e.is_conditional_check_failed_exception()) =>
            {
                Ok(())
            }
            Err(e) => Err(storage(e)),
        }
    }

    /// Deletes a stream: soft while forks still read it, else for good, releasing its
    /// source (which may cascade up a chain of soft-deleted sources).
    async fn remove(&self, meta: Meta) -> Result<(), StorageError> {
        let mut next = Some(meta);
        while let Some(meta) = next.take() {
            let pk = Meta::pk(&meta.name);
            if meta.refs > 0 {
                self.client
                    .update_item()
                    .table_name(&self.table)
                    .key("pk", s(&pk))
                    .key("sk", s("meta"))
                    .update_expression("SET del = :true")
                    .condition_expression("gen = :gen")
                    .expression_attribute_values(":true", AttributeValue::Bool(true))
                    .expression_attribute_values(":gen", n(meta.gen_))
                    .send()
                    .await
                    .map_err(storage)?;
                return Ok(());
            }
            let deleted = self
                .client
                .delete_item()
                .table_name(&self.table)
                .key("pk", s(&pk))
                .key("sk", s("meta"))
                .condition_expression("gen = :gen AND refs = :zero")
                .expression_attribute_values(":gen", n(meta.gen_))
                .expression_attribute_values(":zero", n(0))
                .send()
                .await;
            if let Err(e) = deleted {
                if e.as_service_error()
                    .is_some_and(|e| e.is_conditional_check_failed_exception())
                {
                    // A fork appeared, or someone else removed it first: look again.
                    next = match self.meta(&meta.name).await? {
                        Some(current) if current.gen_ == meta.gen_ && !current.deleted => {
                            Some(current)
                        }
                        _ => None,
                    };
                    continue;
                }
                return Err(storage(e));
            }
            self.purge(meta.gen_).await;
            if let Some((source, source_gen, _)) = &meta.source {
                let released = self
                    .client
                    .update_item()
                    .table_name(&self.table)
                    .key("pk", s(&Meta::pk(source)))
                    .key("sk", s("meta"))
                    .update_expression("SET refs = refs - :one")
                    .condition_expression("gen = :gen")
                    .expression_attribute_values(":one", n(1))
                    .expression_attribute_values(":gen", n(*source_gen))
                    .return_values(aws_sdk_dynamodb::types::ReturnValue::AllNew)
                    .send()
                    .await;
                if let Ok(output) = released
                    && let Some(attributes) = output.attributes
                {
                    let source = Meta::from_item(&attributes)?;
                    if source.deleted && source.refs == 0 {
                        next = Some(source);
                    }
                }
            }
        }
        Ok(())
    }

    /// Deletes a generation's records and producers, best effort (they are unreachable).
    async fn purge(&self, gen_: u64) {
        for pk in [
            Layout::Transact.partition(gen_),
            Layout::Log.partition(gen_),
            format!("producer#{gen_}"),
        ] {
            let mut start = None;
            loop {
                let page = self
                    .client
                    .query()
                    .table_name(&self.table)
                    .key_condition_expression("pk = :pk")
                    .expression_attribute_values(":pk", s(&pk))
                    .projection_expression("pk, sk, blob")
                    .set_exclusive_start_key(start.take())
                    .send()
                    .await;
                let Ok(page) = page else { break };
                for found in page.items() {
                    let mut key = found.clone();
                    if let Some(AttributeValue::S(blob)) = key.remove("blob") {
                        self.unstash(Some(blob)).await;
                    }
                    let _ = self
                        .client
                        .delete_item()
                        .table_name(&self.table)
                        .set_key(Some(key))
                        .send()
                        .await;
                }
                match page.last_evaluated_key {
                    Some(key) => start = Some(key),
                    None => break,
                }
            }
        }
    }

    /// The stretches of a stream's history: its own, then its sources', oldest first, each
    /// with its generation's layout.
    async fn segments(
        &self,
        meta: &Meta,
    ) -> Result<Vec<fork::Segment<(u64, Layout)>>, StorageError> {
        let mut chain = vec![(
            (meta.gen_, meta.layout),
            meta.source.as_ref().map(|(_, _, offset)| *offset),
        )];
        let mut source = meta.source.clone();
        while let Some((name, gen_, _)) = source.take() {
            // Only the stored item: a source is read below the fork offset, not to its tail.
            let Some(parent) = self.stored_meta(&name).await?.filter(|m| m.gen_ == gen_) else {
                break;
            };
            chain.push((
                (parent.gen_, parent.layout),
                parent.source.as_ref().map(|(_, _, offset)| *offset),
            ));
            source = parent.source;
        }
        Ok(fork::segments(chain, meta.tail))
    }

    /// One page of a generation's records after sort key `from` (or from it on), or the
    /// one record before it.
    async fn record_page(
        &self,
        (gen_, layout): (u64, Layout),
        from: u64,
        direction: Direction,
        start_key: Option<Item>,
    ) -> Result<aws_sdk_dynamodb::operation::query::QueryOutput, StorageError> {
        let condition = match direction {
            Direction::After => "pk = :pk AND sk > :from",
            Direction::From => "pk = :pk AND sk >= :from",
            Direction::Before => "pk = :pk AND sk < :from",
        };
        let mut query = self
            .client
            .query()
            .table_name(&self.table)
            .key_condition_expression(condition)
            .expression_attribute_values(":pk", s(&layout.partition(gen_)))
            .expression_attribute_values(":from", s(&item::pad(from)))
            .consistent_read(true)
            .set_exclusive_start_key(start_key);
        if direction == Direction::Before {
            query = query.scan_index_forward(false).limit(1);
        }
        query.send().await.map_err(storage)
    }

    /// A record item's data, fetched from the blob store when it holds a claim check.
    async fn record_data(&self, found: &Item) -> Result<Bytes, StorageError> {
        match (found.get("data"), found.get("blob")) {
            (Some(AttributeValue::B(data)), _) => Ok(Bytes::copy_from_slice(data.as_ref())),
            (_, Some(AttributeValue::S(key))) => {
                let blobs = self.blobs.as_ref().ok_or_else(|| {
                    StorageError::new("a record is in the blob store, which is not configured")
                })?;
                blobs.get(key).await
            }
            // A close without data: a marker that holds no units.
            _ if found.contains_key("cl") => Ok(Bytes::new()),
            _ => Err(StorageError::new("record without data")),
        }
    }

    /// Records from `from`, clipped to each segment, until about `max_bytes`.
    async fn records(
        &self,
        meta: &Meta,
        from: u64,
        max_bytes: usize,
    ) -> Result<Vec<Record>, StorageError> {
        let mode = Mode::of(&meta.content_type);
        let mut batch = Batch {
            records: Vec::new(),
            bytes: 0,
            max_bytes,
        };
        'segments: for segment in self.segments(meta).await? {
            if segment.to <= from {
                continue;
            }
            let lo = from.max(segment.from);
            let (_, layout) = segment.stream;
            let span = (lo, segment.to);
            // Keyed by end, `sk > lo` starts with the record holding `lo`. Keyed by start,
            // that record is found by `sk >= lo` when `lo` starts one (a reader resuming
            // where it stopped, the usual case), else it is the one before.
            let (direction, mut first) = match layout {
                Layout::Transact => (Direction::After, None),
                Layout::Log => {
                    let page = self
                        .record_page(segment.stream, lo, Direction::From, None)
                        .await?;
                    let starts_at_lo = match page.items().first() {
                        Some(first) => layout.span(first)?.0 == lo,
                        None => false,
                    };
                    if !starts_at_lo {
                        let before = self
                            .record_page(segment.stream, lo, Direction::Before, None)
                            .await?;
                        if let Some(found) = before.items().first() {
                            match self.take(found, layout, mode, span, &mut batch).await? {
                                Take::More => {}
                                Take::SegmentDone => continue 'segments,
                                Take::Full => break 'segments,
                            }
                        }
                    }
                    (Direction::From, Some(page))
                }
            };
            let mut start_key = None;
            loop {
                let page = match first.take() {
                    Some(page) => page,
                    None => {
                        self.record_page(segment.stream, lo, direction, start_key.take())
                            .await?
                    }
                };
                for found in page.items() {
                    match self.take(found, layout, mode, span, &mut batch).await? {
                        Take::More => {}
                        Take::SegmentDone => continue 'segments,
                        Take::Full => break 'segments,
                    }
                }
                match page.last_evaluated_key {
                    Some(key) => start_key = Some(key),
                    None => break,
                }
            }
        }
        Ok(batch.records)
    }

    /// Adds one record item, clipped to the segment `(lo, to)`, to `batch`.
    async fn take(
        &self,
        found: &Item,
        layout: Layout,
        mode: Mode,
        (lo, to): (u64, u64),
        batch: &mut Batch,
    ) -> Result<Take, StorageError> {
        let (start, end) = layout.span(found)?;
        if start >= to {
            return Ok(Take::SegmentDone);
        }
        if end <= lo {
            // The record before `lo`, when `lo` is where it ends; or a close marker.
            return Ok(Take::More);
        }
        let data = self.record_data(found).await?;
        // A fork's inherited records are its source's items: they keep their time.
        let at_ms = item::record_at(found)?;
        let Some(record) = fork::clip(mode, (start, end), data, at_ms, (lo, to)) else {
            return Ok(Take::More);
        };
        // A record that would overflow a non-empty batch waits for the next read: a large
        // (claim-checked) record comes back alone, which keeps responses under Lambda's
        // 6 MB payload limit.
        if !batch.records.is_empty() && batch.bytes + record.data.len() > batch.max_bytes {
            return Ok(Take::Full);
        }
        batch.bytes += record.data.len();
        batch.records.push(record);
        Ok(if batch.bytes >= batch.max_bytes {
            Take::Full
        } else {
            Take::More
        })
    }

    fn live(name: &str, meta: Option<Meta>, now: i64) -> Result<Meta, ReadError> {
        match meta {
            None => Err(ReadError::NotFound(name.to_owned())),
            Some(meta) if meta.deleted => Err(ReadError::Gone(name.to_owned())),
            Some(meta) if meta.expired(now) => match meta.refs {
                0 => Err(ReadError::NotFound(name.to_owned())),
                _ => Err(ReadError::Gone(name.to_owned())),
            },
            Some(meta) => Ok(meta),
        }
    }

    async fn try_create(
        &self,
        request: &CreateStream,
        now: i64,
    ) -> Result<Result<Created, Conflict>, CreateError> {
        let existing = match self.lookup(&request.name, now).await? {
            Lookup::SoftDeleted => return Err(CreateError::PathRetained(request.name.clone())),
            Lookup::Live(meta) => Some(*meta),
            Lookup::Missing => None,
        };
        let source = match &request.fork {
            None => None,
            Some(fork) => match self.lookup(&fork.source, now).await? {
                Lookup::Missing => return Err(CreateError::SourceNotFound(fork.source.clone())),
                Lookup::SoftDeleted => return Err(CreateError::SourceDeleted(fork.source.clone())),
                Lookup::Live(meta) => Some(*meta),
            },
        };
        let source_info = source.as_ref().map(Meta::info);
        let fork_source = match (&request.fork, &source, &source_info) {
            (Some(fork), Some(meta), Some(info)) => {
                let at = fork.offset.unwrap_or(info.tail);
                let first = self.records(meta, at.0, 1).await?;
                Some(ForkSource {
                    info,
                    next_record_units: first.first().map_or(0, |r| r.end.0 - r.start.0),
                })
            }
            _ => None,
        };
        let plan = rules::plan_create(request, fork_source)?;
        if let Some(existing) = existing {
            let info = existing.info();
            rules::check_same_config(&info, &plan.config)?;
            return Ok(Ok(Created {
                info,
                created: false,
            }));
        }
        let gen_ = fastrand::u64(1..u64::MAX >> 11);
        let fork_offset = plan.config.fork.as_ref().map(|(_, offset)| offset.0);
        let start = fork_offset.unwrap_or(0);
        let meta = Meta {
            name: request.name.clone(),
            gen_,
            content_type: plan.config.content_type.clone(),
            expiry: plan.config.expiry,
            accessed_ms: now,
            tail: start + plan.initial.units,
            closed: plan.config.closed,
            closed_by: None,
            last_stream_seq: None,
            source: source.as_ref().map(|m| (m.name.clone(), m.gen_, start)),
            refs: 0,
            deleted: false,
            layout: self.layout,
            last_producer: None,
        };
        let mut items = vec![self.put(
            meta.to_item(),
            Some("attribute_not_exists(pk)"),
            Item::new(),
        )?];
        let mut blob = None;
        if !plan.initial.is_empty() {
            blob = self.stash(&plan.initial.data).await?;
            let mode = Mode::of(&meta.content_type);
            for record in self.record_items(
                (meta.layout, gen_),
                &meta.name,
                mode,
                (start, plan.initial.units),
                &plan.initial.data,
                blob.as_deref(),
                now,
            )? {
                items.push(self.put(record, None, Item::new())?);
            }
        }
        if let Some(source) = &source {
            let mut values = Item::new();
            values.insert(":one".into(), n(1));
            values.insert(":gen".into(), n(source.gen_));
            values.insert(":false".into(), AttributeValue::Bool(false));
            items.push(self.update(
                Meta::pk(&source.name),
                "meta",
                "SET refs = refs + :one",
                "gen = :gen AND del = :false",
                values,
            )?);
        }
        Ok(match self.transact(items).await? {
            Ok(()) => Ok(Created {
                info: meta.info(),
                created: true,
            }),
            Err(conflict) => {
                // Cancelled, so nothing refers to the blob.
                self.unstash(blob).await;
                Err(conflict)
            }
        })
    }

    async fn try_append(
        &self,
        name: &str,
        request: &AppendRequest,
        now: i64,
        blob: Option<&str>,
    ) -> Result<Result<Appended, Conflict>, AppendError> {
        let meta = match self.lookup(name, now).await? {
            Lookup::Live(meta) => *meta,
            Lookup::SoftDeleted => return Err(AppendError::Gone(name.to_owned())),
            Lookup::Missing => return Err(AppendError::NotFound(name.to_owned())),
        };
        let producer_state = match (&request.producer, &meta.last_producer) {
            (None, _) => None,
            // The newest record is this producer's: it carries the producer's state.
            (Some(claim), Some((id, state))) if *id == claim.id => Some(*state),
            (Some(claim), _) => self.producer(meta.gen_, &claim.id).await?,
        };
        let target = AppendTarget {
            content_type: &meta.content_type,
            tail: Offset(meta.tail),
            closed: meta.closed,
            last_stream_seq: meta.last_stream_seq.as_deref(),
            closed_by: meta.closed_by.as_ref(),
        };
        let tail = Offset(meta.tail);
        let producer = match rules::decide_append(&target, producer_state, request)? {
            AppendPlan::AlreadyClosed => {
                self.touch(&meta, now).await?;
                return Ok(Ok(Appended {
                    kind: AppendKind::AlreadyClosed,
                    start: tail,
                    tail,
                    closed: true,
                    producer: None,
                }));
            }
            AppendPlan::Duplicate { producer } => {
                self.touch(&meta, now).await?;
                return Ok(Ok(Appended {
                    kind: AppendKind::Duplicate,
                    start: tail,
                    tail,
                    closed: meta.closed,
                    producer,
                }));
            }
            AppendPlan::Write { producer } => producer,
        };
        match meta.layout {
            Layout::Transact => {
                self.write_transact(&meta, request, (producer_state, producer), now, blob)
                    .await
            }
            Layout::Log => self.write_log(&meta, request, producer, now, blob).await,
        }
    }

    /// Writes a decided append to a [`Layout::Log`] stream: its record is put at its start
    /// offset if nothing is there yet, which makes the record's own key the sequencer (see
    /// DESIGN.md). One item, no transaction, unless the append is split into parts or
    /// takes over from another producer, whose state then moves to its producer item.
    async fn write_log(
        &self,
        meta: &Meta,
        request: &AppendRequest,
        producer: Option<ProducerState>,
        now: i64,
        blob: Option<&str>,
    ) -> Result<Result<Appended, Conflict>, AppendError> {
        let (tail, units) = (meta.tail, request.payload.units);
        let mut items = if request.payload.is_empty() {
            if !request.close {
                return Err(ProtocolError::EmptyBody.into());
            }
            // A close without data is a marker at the tail that holds no units: an append
            // racing it claims the same key, so nothing lands after a close.
            let mut marker = Layout::Log.record_key(meta.gen_, (tail, tail));
            marker.insert("at".into(), AttributeValue::N(now.to_string()));
            marker.insert("nm".into(), s(&meta.name));
            vec![marker]
        } else {
            self.record_items(
                (Layout::Log, meta.gen_),
                &meta.name,
                Mode::of(&meta.content_type),
                (tail, units),
                &request.payload.data,
                blob,
                now,
            )?
        };
        let last = Last {
            end: tail + units,
            at_ms: now,
            producer: request
                .producer
                .as_ref()
                .zip(producer)
                .map(|(claim, state)| (claim.id.clone(), state)),
            stream_seq: request
                .stream_seq
                .clone()
                .or_else(|| meta.last_stream_seq.clone()),
            closed: request.close.then(|| request.producer.clone()),
        };
        if let Some(item) = items.last_mut() {
            last.write(item);
        }
        // The newest record stops being the previous producer's, so its state moves to
        // that producer's item; written unconditionally, since only the append that
        // claims this start offset commits it, with the state as of the record it follows.
        let handoff = match (&meta.last_producer, &request.producer) {
            (Some((id, _)), Some(claim)) if *id == claim.id => None,
            (previous, _) => previous.as_ref(),
        };
        let appended = Appended {
            kind: AppendKind::Written,
            start: Offset(tail),
            tail: Offset(tail + units),
            closed: meta.closed || request.close,
            producer,
        };
        if items.len() == 1 && handoff.is_none() {
            let item = items.pop().expect("one item");
            let result = self
                .client
                .put_item()
                .table_name(&self.table)
                .set_item(Some(item))
                .condition_expression("attribute_not_exists(pk)")
                .send()
                .await;
            return match result {
                Ok(_) => Ok(Ok(appended)),
                Err(e) => match e.into_service_error() {
                    PutItemError::ConditionalCheckFailedException(_) => Ok(Err(Conflict)),
                    e => Err(storage(e).into()),
                },
            };
        }
        let mut writes = Vec::with_capacity(items.len() + 1);
        for item in items {
            writes.push(self.put(item, Some("attribute_not_exists(pk)"), Item::new())?);
        }
        if let Some((id, state)) = handoff {
            let mut item = Item::new();
            item.insert("pk".into(), s(&format!("producer#{}", meta.gen_)));
            item.insert("sk".into(), s(id));
            item.insert("ep".into(), n(state.epoch));
            item.insert("seq".into(), n(state.last_seq));
            writes.push(self.put(item, None, Item::new())?);
        }
        Ok(match self.transact(writes).await? {
            Ok(()) => Ok(appended),
            Err(conflict) => Err(conflict),
        })
    }

    /// Writes a decided append to a [`Layout::Transact`] stream: one transaction moves the
    /// `meta` item's tail (the sequencer), puts the record and the producer's state.
    async fn write_transact(
        &self,
        meta: &Meta,
        request: &AppendRequest,
        (producer_state, producer): (Option<ProducerState>, Option<ProducerState>),
        now: i64,
        blob: Option<&str>,
    ) -> Result<Result<Appended, Conflict>, AppendError> {
        let name = &meta.name;
        let tail = Offset(meta.tail);
        let new_tail = meta.tail + request.payload.units;
        let mut values = Item::new();
        values.insert(":new".into(), n(new_tail));
        values.insert(":old".into(), n(meta.tail));
        values.insert(":now".into(), n(now as u64));
        values.insert(":gen".into(), n(meta.gen_));
        values.insert(":false".into(), AttributeValue::Bool(false));
        let mut set = vec!["tail = :new", "acc = :now"];
        if let Some(seq) = &request.stream_seq {
            values.insert(":sseq".into(), s(seq));
            set.push("sseq = :sseq");
        }
        if request.close {
            values.insert(":true".into(), AttributeValue::Bool(true));
            set.push("closed = :true");
            if let Some(claim) = &request.producer {
                values.insert(":cb_id".into(), s(&claim.id));
                values.insert(":cb_ep".into(), n(claim.epoch));
                values.insert(":cb_seq".into(), n(claim.seq));
                set.extend(["cb_id = :cb_id", "cb_ep = :cb_ep", "cb_seq = :cb_seq"]);
            }
        }
        let expression = format!("SET {}", set.join(", "));
        let mut items = vec![self.update(
            Meta::pk(name),
            "meta",
            &expression,
            // `closed` too: a close moves no tail, so an append decided before it would
            // otherwise still find its tail and land after the close.
            "tail = :old AND gen = :gen AND del = :false AND closed = :false",
            values,
        )?];
        if !request.payload.is_empty() {
            let mode = Mode::of(&meta.content_type);
            for record in self.record_items(
                (Layout::Transact, meta.gen_),
                name,
                mode,
                (meta.tail, request.payload.units),
                &request.payload.data,
                blob,
                // The time this attempt decided on; the write that carries it commits or
                // is retried with a fresh one.
                now,
            )? {
                items.push(self.put(record, None, Item::new())?);
            }
        }
        if let (Some(claim), Some(state)) = (&request.producer, producer) {
            let mut item = Item::new();
            item.insert("pk".into(), s(&format!("producer#{}", meta.gen_)));
            item.insert("sk".into(), s(&claim.id));
            item.insert("ep".into(), n(state.epoch));
            item.insert("seq".into(), n(state.last_seq));
            let (condition, values) = match producer_state {
                None => ("attribute_not_exists(pk)", Item::new()),
                Some(old) => {
                    let mut values = Item::new();
                    values.insert(":ep".into(), n(old.epoch));
                    values.insert(":seq".into(), n(old.last_seq));
                    ("ep = :ep AND seq = :seq", values)
                }
            };
            items.push(self.put(item, Some(condition), values)?);
        }
        Ok(match self.transact(items).await? {
            Ok(()) => Ok(Appended {
                kind: AppendKind::Written,
                start: tail,
                tail: Offset(new_tail),
                closed: meta.closed || request.close,
                producer,
            }),
            Err(conflict) => Err(conflict),
        })
    }
}

/// Backs off a little between attempts that lost a race, so racers spread out.
async fn contend(attempt: u32) {
    let ceiling = 2u64 << attempt.min(6);
    tokio::time::sleep(Duration::from_millis(fastrand::u64(0..ceiling))).await;
}

fn storage(e: impl std::fmt::Display) -> StorageError {
    StorageError::new(format!("dynamodb: {e}"))
}

#[async_trait]
impl SessionLog for DynamoSessionLog {
    #[instrument(skip_all, fields(session = %request.name))]
    async fn create(&self, request: CreateStream) -> Result<Created, CreateError> {
        for attempt in 0..MAX_ATTEMPTS {
            if let Ok(created) = self.try_create(&request, self.clock.now_ms()).await? {
                return Ok(created);
            }
            debug!(attempt, "create lost a race; deciding again");
            contend(attempt).await;
        }
        Err(StorageError::new("create kept losing races with concurrent writers").into())
    }

    #[instrument(skip_all, fields(session = %name))]
    async fn append(&self, name: &str, request: AppendRequest) -> Result<Appended, AppendError> {
        let blob = self.stash(&request.payload.data).await?;
        let mut outcome =
            Err(StorageError::new("append kept losing races with concurrent writers").into());
        for attempt in 0..MAX_ATTEMPTS {
            match self
                .try_append(name, &request, self.clock.now_ms(), blob.as_deref())
                .await
            {
                Ok(Err(Conflict)) => contend(attempt).await,
                Ok(Ok(appended)) => {
                    outcome = Ok(appended);
                    break;
                }
                Err(e) => {
                    outcome = Err(e);
                    break;
                }
            }
        }
        // Only when the append surely did not commit: a storage error may hide a commit.
        let unused = match &outcome {
            Ok(appended) => appended.kind != AppendKind::Written,
            Err(e) => !matches!(e, AppendError::Storage(_)),
        };
        if unused {
            self.unstash(blob).await;
        }
        outcome
    }

    #[instrument(skip_all, fields(session = %name))]
    async fn read(
        &self,
        name: &str,
        from: ReadFrom,
        max_bytes: usize,
    ) -> Result<ReadBatch, ReadError> {
        let now = self.clock.now_ms();
        let meta = Self::live(name, self.meta(name).await?, now)?;
        let info = meta.info();
        let from = from.resolve(info.tail).min(info.tail);
        let records = self.records(&meta, from.0, max_bytes).await?;
        let next = records.last().map_or(from, |r| r.end);
        self.touch(&meta, now).await?;
        Ok(ReadBatch {
            info,
            from,
            records,
            next,
        })
    }

    #[instrument(skip_all, fields(session = %name))]
    async fn head(&self, name: &str) -> Result<StreamInfo, ReadError> {
        let now = self.clock.now_ms();
        Ok(Self::live(name, self.meta(name).await?, now)?.info())
    }

    #[instrument(skip_all, fields(session = %name))]
    async fn delete(&self, name: &str) -> Result<(), DeleteError> {
        match self.lookup(name, self.clock.now_ms()).await? {
            Lookup::Live(meta) => Ok(self.remove(*meta).await?),
            Lookup::SoftDeleted => Err(DeleteError::Gone(name.to_owned())),
            Lookup::Missing => Err(DeleteError::NotFound(name.to_owned())),
        }
    }
}
