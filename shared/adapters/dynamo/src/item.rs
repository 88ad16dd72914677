//! Items and attributes: the only place that knows how a stream looks in DynamoDB.

use std::collections::HashMap;

use agentwire_session::{Expiry, Offset, ProducerClaim, ProducerState, StorageError, StreamInfo};
use aws_sdk_dynamodb::types::AttributeValue;

/// A DynamoDB item.
pub type Item = HashMap<String, AttributeValue>;

pub fn s(value: &str) -> AttributeValue {
    AttributeValue::S(value.to_owned())
}

pub fn n(value: u64) -> AttributeValue {
    AttributeValue::N(value.to_string())
}

/// Offsets as sort keys: zero-padded so string order is numeric order.
pub fn pad(offset: u64) -> String {
    format!("{offset:020}")
}

/// How a stream's records are kept. A stream keeps the layout it was created with, so
/// tables written before [`Layout::Log`] existed keep working.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layout {
    /// `data#<gen>`, keyed by end offset; every append is a transaction that also moves
    /// the `meta` item's tail and writes the producer item.
    Transact,
    /// `log#<gen>`, keyed by start offset: the record's own key sequences it, so an append
    /// is one conditional put (`lv = 2` on the `meta` item).
    Log,
}

impl Layout {
    /// The partition of a generation's records.
    pub fn partition(self, gen_: u64) -> String {
        match self {
            Layout::Transact => format!("data#{gen_}"),
            Layout::Log => format!("log#{gen_}"),
        }
    }

    /// The key of the record `[start, end)` in generation `gen_`.
    pub fn record_key(self, gen_: u64, (start, end): (u64, u64)) -> Item {
        let sk = match self {
            Layout::Transact => end,
            Layout::Log => start,
        };
        let mut item = Item::from([
            ("pk".into(), s(&self.partition(gen_))),
            ("sk".into(), s(&pad(sk))),
            ("start".into(), n(start)),
        ]);
        if self == Layout::Log {
            item.insert("end".into(), n(end));
        }
        item
    }

    /// A record item's `[start, end)`.
    pub fn span(self, item: &Item) -> Result<(u64, u64), StorageError> {
        Ok(match self {
            Layout::Transact => (get_n(item, "start")?, get_n(item, "sk")?),
            Layout::Log => (get_n(item, "sk")?, get_n(item, "end")?),
        })
    }
}

/// What the newest record of a [`Layout::Log`] stream says about the stream: it carries
/// the state a transaction used to keep in `meta` and the producer item.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Last {
    pub end: u64,
    pub at_ms: i64,
    /// The producer that wrote it, and its state after this append.
    pub producer: Option<(String, ProducerState)>,
    /// The stream's last `Stream-Seq` (carried forward from record to record).
    pub stream_seq: Option<String>,
    /// This append closed the stream (the tuple that closed it, if a producer did).
    pub closed: Option<Option<ProducerClaim>>,
}

impl Last {
    pub fn from_item(item: &Item) -> Result<Last, StorageError> {
        let producer = match opt_s(item, "pid")? {
            Some(id) => Some((
                id,
                ProducerState {
                    epoch: get_n(item, "ep")?,
                    last_seq: get_n(item, "seq")?,
                },
            )),
            None => None,
        };
        Ok(Last {
            end: get_n(item, "end")?,
            at_ms: record_at(item)?,
            producer,
            stream_seq: opt_s(item, "sseq")?,
            closed: get_bool(item, "cl").then(|| closed_by(item)).transpose()?,
        })
    }

    /// The attributes an appended record carries for the next append to decide on.
    pub fn write(&self, item: &mut Item) {
        if let Some((id, state)) = &self.producer {
            item.insert("pid".into(), s(id));
            item.insert("ep".into(), n(state.epoch));
            item.insert("seq".into(), n(state.last_seq));
        }
        if let Some(seq) = &self.stream_seq {
            item.insert("sseq".into(), s(seq));
        }
        if let Some(by) = &self.closed {
            item.insert("cl".into(), AttributeValue::Bool(true));
            if let Some(claim) = by {
                item.insert("cb_id".into(), s(&claim.id));
                item.insert("cb_ep".into(), n(claim.epoch));
                item.insert("cb_seq".into(), n(claim.seq));
            }
        }
    }
}

fn closed_by(item: &Item) -> Result<Option<ProducerClaim>, StorageError> {
    Ok(match opt_s(item, "cb_id")? {
        Some(id) => Some(ProducerClaim {
            id,
            epoch: get_n(item, "cb_ep")?,
            seq: get_n(item, "cb_seq")?,
        }),
        None => None,
    })
}

/// A record item's commit time, `at` (unix ms); 0, "unknown", for items written before
/// records carried one.
pub fn record_at(item: &Item) -> Result<i64, StorageError> {
    match item.get("at") {
        None => Ok(0),
        Some(AttributeValue::N(ms)) => ms.parse().map_err(|_| missing("at")),
        Some(_) => Err(missing("at")),
    }
}

fn missing(name: &str) -> StorageError {
    StorageError::new(format!("dynamodb item lacks a valid {name}"))
}

/// A number attribute (or a zero-padded string one, as sort keys are).
pub fn get_n(item: &Item, name: &str) -> Result<u64, StorageError> {
    match item.get(name) {
        Some(AttributeValue::N(v) | AttributeValue::S(v)) => v.parse().map_err(|_| missing(name)),
        _ => Err(missing(name)),
    }
}

fn opt_n(item: &Item, name: &str) -> Result<Option<u64>, StorageError> {
    item.get(name).map(|_| get_n(item, name)).transpose()
}

fn get_s(item: &Item, name: &str) -> Result<String, StorageError> {
    match item.get(name) {
        Some(AttributeValue::S(v)) => Ok(v.clone()),
        _ => Err(missing(name)),
    }
}

fn opt_s(item: &Item, name: &str) -> Result<Option<String>, StorageError> {
    item.get(name).map(|_| get_s(item, name)).transpose()
}

fn get_bool(item: &Item, name: &str) -> bool {
    matches!(item.get(name), Some(AttributeValue::Bool(true)))
}

/// A stream's `meta` item.
#[derive(Debug, Clone)]
pub struct Meta {
    pub name: String,
    /// Random per creation: records and producers hang off it.
    pub gen_: u64,
    pub content_type: String,
    pub expiry: Expiry,
    pub accessed_ms: i64,
    pub tail: u64,
    pub closed: bool,
    pub closed_by: Option<ProducerClaim>,
    pub last_stream_seq: Option<String>,
    /// Fork source: its name, generation, and the fork offset.
    pub source: Option<(String, u64, u64)>,
    pub refs: u64,
    pub deleted: bool,
    pub layout: Layout,
    /// For [`Layout::Log`]: who wrote the newest record, and their state after it.
    pub last_producer: Option<(String, ProducerState)>,
}

impl Meta {
    pub fn pk(name: &str) -> String {
        format!("stream#{name}")
    }

    /// Brings a [`Layout::Log`] stream's `meta` (its state at creation, and reads' TTL
    /// renewals) up to date with its newest record.
    pub fn follow(&mut self, last: Last) {
        self.tail = self.tail.max(last.end);
        self.accessed_ms = self.accessed_ms.max(last.at_ms);
        if last.stream_seq.is_some() {
            self.last_stream_seq = last.stream_seq;
        }
        if let Some(by) = last.closed {
            self.closed = true;
            self.closed_by = by;
        }
        self.last_producer = last.producer;
    }

    pub fn expired(&self, now_ms: i64) -> bool {
        self.expiry.has_passed(self.accessed_ms, now_ms)
    }

    pub fn info(&self) -> StreamInfo {
        StreamInfo {
            id: self.gen_,
            name: self.name.clone(),
            content_type: self.content_type.clone(),
            expiry: self.expiry,
            tail: Offset(self.tail),
            closed: self.closed,
            fork: self
                .source
                .as_ref()
                .map(|(name, _, offset)| (name.clone(), Offset(*offset))),
        }
    }

    pub fn from_item(item: &Item) -> Result<Meta, StorageError> {
        let pk = get_s(item, "pk")?;
        let name = pk
            .strip_prefix("stream#")
            .ok_or_else(|| missing("pk"))?
            .to_owned();
        let expiry = match (opt_n(item, "ttl")?, item.get("exp")) {
            (Some(seconds), _) => Expiry::Ttl { seconds },
            (None, Some(AttributeValue::N(ms))) => Expiry::At {
                unix_ms: ms.parse().map_err(|_| missing("exp"))?,
            },
            _ => Expiry::Never,
        };
        let closed_by = closed_by(item)?;
        let source = match opt_s(item, "src")? {
            Some(source) => Some((source, get_n(item, "src_gen")?, get_n(item, "fork")?)),
            None => None,
        };
        let layout = match opt_n(item, "lv")? {
            None => Layout::Transact,
            Some(2) => Layout::Log,
            Some(v) => {
                return Err(StorageError::new(format!(
                    "stream {name} has record layout {v}, which this version cannot read"
                )));
            }
        };
        Ok(Meta {
            name,
            gen_: get_n(item, "gen")?,
            content_type: get_s(item, "ct")?,
            expiry,
            accessed_ms: match item.get("acc") {
                Some(AttributeValue::N(v)) => v.parse().map_err(|_| missing("acc"))?,
                _ => return Err(missing("acc")),
            },
            tail: get_n(item, "tail")?,
            closed: get_bool(item, "closed"),
            closed_by,
            last_stream_seq: opt_s(item, "sseq")?,
            source,
            refs: get_n(item, "refs")?,
            deleted: get_bool(item, "del"),
            layout,
            last_producer: None,
        })
    }

    pub fn to_item(&self) -> Item {
        let mut item = Item::from([
            ("pk".into(), s(&Meta::pk(&self.name))),
            ("sk".into(), s("meta")),
            ("gen".into(), n(self.gen_)),
            ("ct".into(), s(&self.content_type)),
            (
                "acc".into(),
                AttributeValue::N(self.accessed_ms.to_string()),
            ),
            ("tail".into(), n(self.tail)),
            ("closed".into(), AttributeValue::Bool(self.closed)),
            ("refs".into(), n(self.refs)),
            ("del".into(), AttributeValue::Bool(self.deleted)),
        ]);
        if self.layout == Layout::Log {
            item.insert("lv".into(), n(2));
        }
        // Listed under its tenant in the keys index: the streams a new pattern
        // subscription links (set once, at creation; no stored name lacks a tenant).
        if let Some((tenant, session)) = agentwire_auth::split_stored_name(&self.name) {
            item.insert("kpk".into(), s(&format!("streams#{tenant}")));
            item.insert("ksk".into(), s(session));
        }
        match self.expiry {
            Expiry::Never => {}
            Expiry::Ttl { seconds } => {
                item.insert("ttl".into(), n(seconds));
            }
            Expiry::At { unix_ms } => {
                item.insert("exp".into(), AttributeValue::N(unix_ms.to_string()));
            }
        }
        if let Some((source, gen_, offset)) = &self.source {
            item.insert("src".into(), s(source));
            item.insert("src_gen".into(), n(*gen_));
            item.insert("fork".into(), n(*offset));
        }
        item
    }
}
