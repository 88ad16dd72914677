//! Items and attributes: the only place that knows how a stream looks in DynamoDB.

use std::collections::HashMap;

use agentwire_session::{Expiry, Offset, ProducerClaim, StorageError, StreamInfo};
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

/// The key of the record that ends at `end` in generation `gen_`.
pub fn record_key(gen_: u64, end: u64) -> Item {
    Item::from([
        ("pk".into(), s(&format!("data#{gen_}"))),
        ("sk".into(), s(&pad(end))),
    ])
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
}

impl Meta {
    pub fn pk(name: &str) -> String {
        format!("stream#{name}")
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
        let closed_by = match opt_s(item, "cb_id")? {
            Some(id) => Some(ProducerClaim {
                id,
                epoch: get_n(item, "cb_ep")?,
                seq: get_n(item, "cb_seq")?,
            }),
            None => None,
        };
        let source = match opt_s(item, "src")? {
            Some(source) => Some((source, get_n(item, "src_gen")?, get_n(item, "fork")?)),
            None => None,
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
