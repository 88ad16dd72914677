//! A subscription and every change to it, as pure transitions: the service loads the
//! state, asks one of these to change it given the streams' tails and the time, saves it
//! conditionally, and carries out the [`Effect`] returned.

use std::collections::BTreeMap;

use agentwire_session::Offset;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use sha2::Digest;

use crate::error::DispatchError;
use crate::glob;
use crate::url_check::{self, Targets};

pub const DEFAULT_LEASE_TTL_MS: u64 = 30_000;
pub const MIN_LEASE_TTL_MS: u64 = 1_000;
pub const MAX_LEASE_TTL_MS: u64 = 600_000;
/// How long one webhook delivery may take, answer included (the webhook client's timeout):
/// a webhook's lease covers it, so no lease runs out under a delivery still in progress.
pub const DELIVERY_TIMEOUT_MS: i64 = 10_000;
/// Webhook retries back off from one second to a minute.
const RETRY_BASE_MS: i64 = 1_000;
const RETRY_MAX_MS: i64 = 60_000;

/// How wakes reach workers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "kebab-case")]
pub enum Delivery {
    /// A signed POST to a worker's URL.
    Webhook { url: String },
    /// A wake event appended to a stream the workers follow; they claim the wake.
    PullWake { wake_stream: String },
}

/// What a client asks for: the body of `PUT …/__ds/subscriptions/{id}`, checked.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Spec {
    #[serde(flatten)]
    pub delivery: Delivery,
    pub pattern: Option<String>,
    /// Explicit streams, sorted and without duplicates.
    pub streams: Vec<String>,
    pub lease_ttl_ms: u64,
    pub description: Option<String>,
    /// agentwire's `"lease_scope": "stream"`: every matching stream gets a subscription of
    /// its own (a child, made on the stream's first append), so a pool of workers holds
    /// one lease per session rather than one for all. Left out of the stored form when
    /// false, so the hashes of protocol subscriptions are the protocol's.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub per_stream: bool,
}

/// A stream path as the protocol's bodies give it: no leading or trailing `/`, not a
/// reserved `__ds` path.
pub fn normalize_path(path: &str) -> Result<String, DispatchError> {
    let path = path.trim_matches('/');
    if path.is_empty() {
        return Err(DispatchError::invalid("a stream path must not be empty"));
    }
    if path == "__ds" || path.starts_with("__ds/") {
        return Err(DispatchError::invalid(format!(
            "`{path}` is a reserved control path, not a stream"
        )));
    }
    if path.split('/').any(str::is_empty) || path.len() > 1024 {
        return Err(DispatchError::invalid(format!(
            "`{path}` is not a stream path"
        )));
    }
    Ok(path.to_owned())
}

impl Spec {
    /// The request body checked: every field's type and range, a webhook URL that is safe
    /// to call, a wake stream for pull-wake.
    pub fn parse(body: &[u8], targets: Targets) -> Result<Spec, DispatchError> {
        let value: Value = serde_json::from_slice(body)
            .map_err(|e| DispatchError::invalid(format!("the body is not JSON: {e}")))?;
        let Some(object) = value.as_object() else {
            return Err(DispatchError::invalid("the body must be a JSON object"));
        };
        let text = |key: &str| -> Result<Option<String>, DispatchError> {
            match object.get(key) {
                None | Some(Value::Null) => Ok(None),
                Some(Value::String(s)) => Ok(Some(s.clone())),
                Some(_) => Err(DispatchError::invalid(format!("{key} must be a string"))),
            }
        };
        let pattern = text("pattern")?;
        if let Some(p) = &pattern {
            glob::check(p).map_err(DispatchError::invalid)?;
        }
        let mut streams = Vec::new();
        match object.get("streams") {
            None | Some(Value::Null) => {}
            Some(Value::Array(items)) => {
                for item in items {
                    let Some(s) = item.as_str() else {
                        return Err(DispatchError::invalid("streams must be strings"));
                    };
                    streams.push(normalize_path(s)?);
                }
            }
            Some(_) => return Err(DispatchError::invalid("streams must be an array")),
        }
        streams.sort();
        streams.dedup();
        if pattern.is_none() && streams.is_empty() {
            return Err(DispatchError::invalid("give a pattern, streams, or both"));
        }
        let lease_ttl_ms = match object.get("lease_ttl_ms") {
            None | Some(Value::Null) => DEFAULT_LEASE_TTL_MS,
            Some(v) => match v.as_u64() {
                Some(ms) if (MIN_LEASE_TTL_MS..=MAX_LEASE_TTL_MS).contains(&ms) => ms,
                _ => {
                    return Err(DispatchError::invalid(format!(
                        "lease_ttl_ms must be an integer from {MIN_LEASE_TTL_MS} to {MAX_LEASE_TTL_MS}"
                    )));
                }
            },
        };
        let per_stream = match text("lease_scope")?.as_deref() {
            None | Some("subscription") => false,
            Some("stream") => true,
            Some(other) => {
                return Err(DispatchError::invalid(format!(
                    "lease_scope must be subscription or stream, not {other}"
                )));
            }
        };
        let description = text("description")?;
        if description.as_ref().is_some_and(|d| d.len() > 1024) {
            return Err(DispatchError::invalid(
                "description is longer than 1024 bytes",
            ));
        }
        let delivery = match text("type")?.as_deref() {
            Some("webhook") => {
                let url = object
                    .get("webhook")
                    .and_then(|w| w.get("url"))
                    .and_then(Value::as_str)
                    .ok_or_else(|| {
                        DispatchError::invalid("a webhook subscription needs webhook.url")
                    })?;
                let url = url_check::check(url, targets).map_err(DispatchError::UrlRejected)?;
                Delivery::Webhook {
                    url: url.to_string(),
                }
            }
            Some("pull-wake") => {
                let stream = text("wake_stream")?.ok_or_else(|| {
                    DispatchError::invalid("a pull-wake subscription needs wake_stream")
                })?;
                let wake_stream = normalize_path(&stream)?;
                if pattern
                    .as_deref()
                    .is_some_and(|p| glob::matches(p, &wake_stream))
                    || streams.contains(&wake_stream)
                {
                    return Err(DispatchError::invalid(
                        "the wake stream must not be one of the subscription's own streams (each wake would wake it again)",
                    ));
                }
                Delivery::PullWake { wake_stream }
            }
            Some(other) => {
                return Err(DispatchError::invalid(format!(
                    "type must be webhook or pull-wake, not {other}"
                )));
            }
            None => {
                return Err(DispatchError::invalid(
                    "type is required: webhook or pull-wake",
                ));
            }
        };
        Ok(Spec {
            delivery,
            pattern,
            streams,
            lease_ttl_ms,
            description,
            per_stream,
        })
    }

    /// The spec of a per-stream subscription's child for `path`: the same delivery and
    /// lease over that one stream.
    pub fn child(&self, parent: &str, path: &str) -> Spec {
        Spec {
            delivery: self.delivery.clone(),
            pattern: None,
            streams: vec![path.to_owned()],
            lease_ttl_ms: self.lease_ttl_ms,
            description: Some(format!("the lease on {path} for {parent}")),
            per_stream: false,
        }
    }

    /// The hash identical re-confirmations share.
    pub fn hash(&self) -> String {
        let canonical = serde_json::to_vec(self).unwrap_or_default();
        let digest = sha2::Sha256::digest(&canonical);
        digest.iter().map(|b| format!("{b:02x}")).collect()
    }

    /// Whether `path` belongs to the subscription by its pattern.
    pub fn globs(&self, path: &str) -> bool {
        self.pattern
            .as_deref()
            .is_some_and(|p| glob::matches(p, path))
    }
}

/// One linked stream's cursor.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Link {
    pub glob: bool,
    pub explicit: bool,
    /// The offset processed up to: the stream's tail when everything is acked.
    pub acked: Offset,
    /// The linked stream's identity (unique across re-creations of one name), once seen.
    #[serde(default)]
    pub stream_id: Option<u64>,
}

/// The wake in flight.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Wake {
    pub id: String,
    /// The linked streams' tails when the wake was issued: what a `done` webhook acks.
    pub snapshot: BTreeMap<String, Offset>,
    /// The pull-wake worker holding it.
    pub holder: Option<String>,
    /// Until when the holder (or the webhook's handler) has it; `None` while unclaimed, or
    /// while a failed webhook delivery waits for its retry.
    pub lease_until_ms: Option<i64>,
    /// The reply the holder said it is writing (agentwire's `reply` in a heartbeat ack):
    /// named in the `agent.lost` event if the lease runs out.
    #[serde(default)]
    pub reply: Option<String>,
}

/// A worker whose lease ran out while it held a wake: it died, or stalled past its lease.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lost {
    pub worker: String,
    pub reply: Option<String>,
    pub generation: u64,
    /// The streams it was serving that still have work: each gets an `agent.lost` event.
    pub streams: Vec<String>,
}

/// A failed webhook delivery's retry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Retry {
    pub attempts: u32,
    pub next_attempt_at_ms: i64,
}

/// A subscription's whole state, as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Subscription {
    pub tenant: String,
    pub id: String,
    pub spec: Spec,
    pub hash: String,
    /// Where callbacks and the key set are reached: the server's URL as its client saw it.
    pub base_url: String,
    pub created_at_ms: i64,
    pub links: BTreeMap<String, Link>,
    /// Increments with every wake.
    pub generation: u64,
    pub wake: Option<Wake>,
    pub retry: Option<Retry>,
    /// Counts webhook sends asked for ([`Effect::Deliver`]): a change feed of stored
    /// subscriptions (DynamoDB Streams) sends when this grew, and only then.
    #[serde(default)]
    pub deliveries: u64,
    /// For a per-stream subscription's child, the parent's id.
    #[serde(default)]
    pub parent: Option<String>,
}

/// What the service must do after a transition was saved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Effect {
    None,
    /// Send the wake of this generation to the webhook.
    Deliver {
        wake_id: String,
        generation: u64,
    },
    /// Append a wake event for this generation, naming `stream` (one with pending work),
    /// to the wake stream.
    WakeEvent {
        wake_stream: String,
        stream: String,
        generation: u64,
    },
    /// Tell the streams a worker was lost, then carry out `then` (the work's new wake).
    Lost {
        lost: Lost,
        then: Box<Effect>,
    },
}

/// A webhook's answer to a delivery.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Delivered {
    /// 2xx with `{"done": true}`: the snapshot is acked.
    Done,
    /// 2xx otherwise: the handler calls back.
    Accepted,
    /// Anything else, or no answer: retried with backoff.
    Failed,
}

/// An ack, callback or release request's body.
#[derive(Debug, Clone, Deserialize)]
pub struct AckRequest {
    pub wake_id: String,
    pub generation: u64,
    #[serde(default)]
    pub acks: Vec<Ack>,
    #[serde(default)]
    pub done: bool,
    /// agentwire: the reply the worker is writing, named if it is lost.
    #[serde(default)]
    pub reply: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Ack {
    pub stream: String,
    pub offset: String,
}

/// The tails of streams, by path (absent: not created yet, tail zero).
pub type Tails = BTreeMap<String, Offset>;

fn tail_of(tails: &Tails, path: &str) -> Offset {
    tails.get(path).copied().unwrap_or(Offset::ZERO)
}

/// A fresh wake id.
pub fn wake_id() -> String {
    let mut bytes = [0u8; 12];
    // Unpredictability is not needed (the token is what authenticates), only uniqueness.
    for b in &mut bytes {
        *b = fastrand::u8(..);
    }
    format!(
        "w_{}",
        bytes.iter().map(|b| format!("{b:02x}")).collect::<String>()
    )
}

impl Subscription {
    /// A new subscription: explicit streams and the pattern's existing streams (`tails`
    /// holds every stream of the tenant the pattern matches) linked at their tails, so
    /// nothing already there is replayed.
    pub fn new(
        tenant: &str,
        id: &str,
        spec: Spec,
        base_url: &str,
        tails: &Tails,
        now_ms: i64,
    ) -> Subscription {
        let mut links = BTreeMap::new();
        for (path, tail) in tails {
            if spec.globs(path) {
                links.insert(
                    path.clone(),
                    Link {
                        glob: true,
                        explicit: false,
                        acked: *tail,
                        stream_id: None,
                    },
                );
            }
        }
        for path in &spec.streams {
            let link = links.entry(path.clone()).or_insert(Link {
                glob: false,
                explicit: true,
                acked: tail_of(tails, path),
                stream_id: None,
            });
            link.explicit = true;
        }
        Subscription {
            tenant: tenant.to_owned(),
            id: id.to_owned(),
            hash: spec.hash(),
            spec,
            base_url: base_url.trim_end_matches('/').to_owned(),
            created_at_ms: now_ms,
            links,
            generation: 0,
            wake: None,
            retry: None,
            deliveries: 0,
            parent: None,
        }
    }

    /// `active`, or `failed` while a webhook retry is scheduled.
    pub fn status(&self) -> &'static str {
        if self.retry.is_some() {
            "failed"
        } else {
            "active"
        }
    }

    pub fn is_pull_wake(&self) -> bool {
        matches!(self.spec.delivery, Delivery::PullWake { .. })
    }

    /// Links explicit streams at their tails (an already linked one keeps its cursor).
    pub fn add_streams(&mut self, streams: &[String], tails: &Tails) {
        for path in streams {
            let link = self.links.entry(path.clone()).or_insert(Link {
                glob: false,
                explicit: true,
                acked: tail_of(tails, path),
                stream_id: None,
            });
            link.explicit = true;
        }
    }

    /// Removes an explicit link; a stream the pattern matches stays linked by it.
    pub fn remove_stream(&mut self, path: &str) {
        if let Some(link) = self.links.get_mut(path) {
            link.explicit = false;
            if !link.glob {
                self.links.remove(path);
            }
        }
    }

    /// An append of `[start, …)` to `path`: a stream the pattern matches and is not
    /// linked yet is linked before the append. Whether `path` is linked.
    pub fn saw_append(&mut self, path: &str, start: Offset) -> bool {
        if self.spec.globs(path) {
            let link = self.links.entry(path.to_owned()).or_insert(Link {
                glob: true,
                explicit: false,
                acked: start,
                stream_id: None,
            });
            link.glob = true;
        }
        self.links.contains_key(path)
    }

    /// Notes each linked stream's identity: a stream deleted and created again under a
    /// linked name starts over at zero (the old cursor is the old stream's).
    pub fn reconcile(&mut self, ids: &BTreeMap<String, u64>) {
        for (path, link) in &mut self.links {
            match (link.stream_id, ids.get(path)) {
                (Some(old), Some(&new)) if old != new => {
                    link.acked = Offset::ZERO;
                    link.stream_id = Some(new);
                }
                (None, Some(&new)) => link.stream_id = Some(new),
                _ => {}
            }
        }
    }

    /// Whether any linked stream has events past its cursor.
    pub fn pending(&self, tails: &Tails) -> bool {
        self.links
            .iter()
            .any(|(path, link)| tail_of(tails, path) > link.acked)
    }

    fn first_pending(&self, tails: &Tails) -> Option<String> {
        self.links
            .iter()
            .find(|(path, link)| tail_of(tails, path) > link.acked)
            .map(|(path, _)| path.clone())
    }

    /// Starts a wake when there is pending work and none is in flight.
    pub fn wake_if_idle(&mut self, tails: &Tails, now_ms: i64) -> Effect {
        // A per-stream parent only matches: its children are woken.
        if self.wake.is_some() || self.spec.per_stream {
            return Effect::None;
        }
        let Some(first) = self.first_pending(tails) else {
            return Effect::None;
        };
        self.generation += 1;
        let id = wake_id();
        let snapshot = self
            .links
            .keys()
            .map(|path| (path.clone(), tail_of(tails, path)))
            .collect();
        // A webhook's lease covers its delivery; an unclaimed pull-wake's runs out too, so a
        // wake event that was lost (or a pool that was down) is woken again.
        let allowance = if self.is_pull_wake() {
            0
        } else {
            DELIVERY_TIMEOUT_MS
        };
        self.wake = Some(Wake {
            id: id.clone(),
            snapshot,
            holder: None,
            lease_until_ms: Some(now_ms + self.spec.lease_ttl_ms as i64 + allowance),
            reply: None,
        });
        match &self.spec.delivery {
            Delivery::Webhook { .. } => {
                self.deliveries += 1;
                Effect::Deliver {
                    wake_id: id,
                    generation: self.generation,
                }
            }
            Delivery::PullWake { wake_stream } => Effect::WakeEvent {
                wake_stream: wake_stream.clone(),
                stream: first,
                generation: self.generation,
            },
        }
    }

    /// Ends the wake in flight; another starts if work is pending.
    fn finish(&mut self, tails: &Tails, now_ms: i64) -> Effect {
        self.wake = None;
        self.retry = None;
        self.wake_if_idle(tails, now_ms)
    }

    /// A pull-wake worker claims the subscription's wake (one is started if work is
    /// pending and none is in flight). The effect is an expired lease's new wake.
    pub fn claim(
        &mut self,
        worker: &str,
        tails: &Tails,
        now_ms: i64,
    ) -> Result<Effect, DispatchError> {
        if !self.is_pull_wake() {
            return Err(DispatchError::invalid("this subscription is not pull-wake"));
        }
        if worker.is_empty() || worker.len() > 256 {
            return Err(DispatchError::invalid("worker must be 1 to 256 characters"));
        }
        let effect = self.expire(tails, now_ms).unwrap_or(Effect::None);
        if let Some(wake) = &self.wake
            && let Some(holder) = &wake.holder
        {
            return Err(DispatchError::AlreadyClaimed {
                holder: holder.clone(),
                generation: self.generation,
            });
        }
        if self.wake.is_none() {
            if !self.pending(tails) {
                return Err(DispatchError::NoPendingWork);
            }
            // The wake starts here; its event is not needed, the claimer has it.
            self.wake_if_idle(tails, now_ms);
        }
        let lease = now_ms + self.spec.lease_ttl_ms as i64;
        if let Some(wake) = &mut self.wake {
            wake.holder = Some(worker.to_owned());
            wake.lease_until_ms = Some(lease);
        }
        Ok(effect)
    }

    /// Checks that a request is for the wake in flight, of this generation.
    pub fn fence(
        &self,
        wake_id: &str,
        generation: u64,
        now_ms: i64,
    ) -> Result<&Wake, DispatchError> {
        match &self.wake {
            Some(wake)
                if wake.id == wake_id
                    && generation == self.generation
                    && wake.lease_until_ms.is_none_or(|until| until >= now_ms) =>
            {
                Ok(wake)
            }
            _ => Err(DispatchError::Fenced),
        }
    }

    /// A callback (webhook) or ack (pull-wake): applies the acks, extends the lease, and
    /// with `done` ends the wake. Returns whether more work is pending, and the effect.
    pub fn ack(
        &mut self,
        request: &AckRequest,
        tails: &Tails,
        now_ms: i64,
    ) -> Result<(bool, Effect), DispatchError> {
        self.fence(&request.wake_id, request.generation, now_ms)?;
        let mut moves = Vec::with_capacity(request.acks.len());
        for ack in &request.acks {
            let path = normalize_path(&ack.stream)?;
            if !self.links.contains_key(&path) {
                return Err(DispatchError::InvalidOffset(format!(
                    "stream `{path}` is not linked to this subscription"
                )));
            }
            let offset = Offset::parse(&ack.offset).map_err(|_| {
                DispatchError::InvalidOffset(format!("`{}` is not an offset", ack.offset))
            })?;
            if offset > tail_of(tails, &path) {
                return Err(DispatchError::InvalidOffset(format!(
                    "offset {} is past the tail of `{path}`",
                    ack.offset
                )));
            }
            moves.push((path, offset));
        }
        for (path, offset) in moves {
            if let Some(link) = self.links.get_mut(&path)
                && offset > link.acked
            {
                link.acked = offset;
            }
        }
        if request.done {
            let effect = self.finish(tails, now_ms);
            let next = self.wake.is_some();
            return Ok((next, effect));
        }
        let lease = now_ms + self.spec.lease_ttl_ms as i64;
        if let Some(wake) = &mut self.wake {
            wake.lease_until_ms = Some(lease);
            if let Some(reply) = &request.reply {
                if reply.is_empty() || reply.len() > 256 {
                    return Err(DispatchError::invalid(
                        "reply must be a message id of 1 to 256 characters",
                    ));
                }
                wake.reply = Some(reply.clone());
            }
        }
        Ok((self.pending(tails), Effect::None))
    }

    /// A pull-wake worker gives the wake back without acking.
    pub fn release(
        &mut self,
        wake_id: &str,
        generation: u64,
        tails: &Tails,
        now_ms: i64,
    ) -> Result<Effect, DispatchError> {
        self.fence(wake_id, generation, now_ms)?;
        Ok(self.finish(tails, now_ms))
    }

    /// A lease past its time is cleared, and the work woken again. Whether it expired.
    pub fn expire(&mut self, tails: &Tails, now_ms: i64) -> Option<Effect> {
        let wake = self.wake.as_ref()?;
        if wake.lease_until_ms.is_none_or(|until| until >= now_ms) {
            return None;
        }
        // A claimed lease of an agent pool's session that ran out: its worker is gone
        // mid-work. (Only pools' sessions are told: other subscriptions' streams are the
        // application's own, of any content type.)
        let lost = match (&wake.holder, self.is_pull_wake() && self.parent.is_some()) {
            (Some(worker), true) => Some(Lost {
                worker: worker.clone(),
                reply: wake.reply.clone(),
                generation: self.generation,
                streams: self
                    .links
                    .keys()
                    .filter(|path| tail_of(tails, path) > self.links[*path].acked)
                    .cloned()
                    .collect(),
            }),
            _ => None,
        };
        let then = self.finish(tails, now_ms);
        Some(match lost {
            Some(lost) => Effect::Lost {
                lost,
                then: Box::new(then),
            },
            None => then,
        })
    }

    /// The webhook's answer to the delivery of `wake_id`.
    pub fn delivered(
        &mut self,
        wake_id: &str,
        outcome: Delivered,
        tails: &Tails,
        now_ms: i64,
    ) -> Effect {
        let Some(wake) = &mut self.wake else {
            return Effect::None;
        };
        if wake.id != wake_id {
            return Effect::None;
        }
        match outcome {
            Delivered::Done => {
                let snapshot = wake.snapshot.clone();
                for (path, tail) in snapshot {
                    if let Some(link) = self.links.get_mut(&path)
                        && tail > link.acked
                    {
                        link.acked = tail;
                    }
                }
                self.finish(tails, now_ms)
            }
            Delivered::Accepted => {
                // The handler has it from its answer: the lease runs from now.
                wake.lease_until_ms = Some(now_ms + self.spec.lease_ttl_ms as i64);
                self.retry = None;
                Effect::None
            }
            Delivered::Failed => {
                let attempts = self.retry.as_ref().map_or(0, |r| r.attempts) + 1;
                let base = (RETRY_BASE_MS << (attempts - 1).min(6)).min(RETRY_MAX_MS);
                let jitter = (base as f64 * 0.2 * (fastrand::f64() * 2.0 - 1.0)) as i64;
                wake.lease_until_ms = None;
                self.retry = Some(Retry {
                    attempts,
                    next_attempt_at_ms: now_ms + base + jitter,
                });
                Effect::None
            }
        }
    }

    /// A scheduled webhook retry that is due: the same wake, its lease running again.
    pub fn retry_due(&mut self, now_ms: i64) -> Effect {
        let due = self
            .retry
            .as_ref()
            .is_some_and(|r| r.next_attempt_at_ms <= now_ms);
        let Some(wake) = &mut self.wake else {
            self.retry = None;
            return Effect::None;
        };
        if !due {
            return Effect::None;
        }
        wake.lease_until_ms = Some(now_ms + self.spec.lease_ttl_ms as i64 + DELIVERY_TIMEOUT_MS);
        if let Some(retry) = &mut self.retry {
            // Not due again until this attempt's answer reschedules it.
            retry.next_attempt_at_ms = i64::MAX;
        }
        self.deliveries += 1;
        Effect::Deliver {
            wake_id: wake.id.clone(),
            generation: self.generation,
        }
    }

    /// When the sweeper should next look at this subscription.
    pub fn next_due_ms(&self) -> Option<i64> {
        let lease = self.wake.as_ref().and_then(|w| w.lease_until_ms);
        let retry = self
            .retry
            .as_ref()
            .map(|r| r.next_attempt_at_ms)
            .filter(|at| *at < i64::MAX);
        match (lease, retry) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Each linked stream with its cursor, tail and whether it has pending events.
    pub fn stream_infos(&self, tails: &Tails) -> Vec<Value> {
        self.links
            .iter()
            .map(|(path, link)| {
                let tail = tail_of(tails, path);
                json!({
                    "path": path,
                    "link_type": link_type(link),
                    "acked_offset": link.acked.to_string(),
                    "tail_offset": tail.to_string(),
                    "has_pending": tail > link.acked,
                })
            })
            .collect()
    }

    pub fn jwks_url(&self) -> String {
        format!("{}/v1/stream/__ds/jwks.json", self.base_url)
    }

    pub fn callback_url(&self) -> String {
        format!(
            "{}/v1/stream/__ds/subscriptions/{}/callback",
            self.base_url, self.id
        )
    }

    /// The subscription as `GET` shows it; never a secret.
    pub fn view(&self, kid: &str) -> Value {
        let streams: Vec<Value> = self
            .links
            .iter()
            .map(|(path, link)| {
                json!({
                    "path": path,
                    "link_type": link_type(link),
                    "acked_offset": link.acked.to_string(),
                })
            })
            .collect();
        let (kind, webhook, wake_stream) = match &self.spec.delivery {
            Delivery::Webhook { url } => (
                "webhook",
                json!({
                    "url": url,
                    "signing": {"alg": "ed25519", "kid": kid, "jwks_url": self.jwks_url()},
                }),
                Value::Null,
            ),
            Delivery::PullWake { wake_stream } => ("pull-wake", Value::Null, json!(wake_stream)),
        };
        json!({
            "id": self.id,
            "subscription_id": self.id,
            "type": kind,
            "pattern": self.spec.pattern,
            "streams": streams,
            "webhook": webhook,
            "wake_stream": wake_stream,
            "lease_ttl_ms": self.spec.lease_ttl_ms,
            "created_at": rfc3339(self.created_at_ms),
            "status": self.status(),
            "description": self.spec.description,
            "generation": self.generation,
        })
    }
}

fn link_type(link: &Link) -> &'static str {
    if link.explicit { "explicit" } else { "glob" }
}

fn rfc3339(ms: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(body: Value) -> Spec {
        Spec::parse(body.to_string().as_bytes(), Targets::PublicAndLoopback).unwrap()
    }

    fn tails(pairs: &[(&str, u64)]) -> Tails {
        pairs
            .iter()
            .map(|(p, t)| (p.to_string(), Offset(*t)))
            .collect()
    }

    fn webhook() -> Subscription {
        let spec = spec(
            json!({"type": "webhook", "pattern": "chat-*", "streams": ["ops/log"], "webhook": {"url": "http://127.0.0.1:9/h"}, "lease_ttl_ms": 1000}),
        );
        Subscription::new(
            "acme",
            "s",
            spec,
            "http://h",
            &tails(&[("chat-1", 5), ("other", 9)]),
            0,
        )
    }

    #[test]
    fn existing_streams_are_linked_at_their_tails_and_new_ones_before_their_first_append() {
        let mut sub = webhook();
        assert_eq!(sub.links.keys().collect::<Vec<_>>(), ["chat-1", "ops/log"]);
        assert_eq!(sub.links["chat-1"].acked, Offset(5), "nothing replayed");
        assert!(!sub.pending(&tails(&[("chat-1", 5)])));
        assert!(sub.saw_append("chat-2", Offset(0)));
        assert_eq!(sub.links["chat-2"].acked, Offset(0));
        assert!(!sub.saw_append("nope", Offset(0)));
        assert!(sub.pending(&tails(&[("chat-1", 5), ("chat-2", 1)])));
        // Explicit wins in views; removing it leaves a glob link.
        sub.add_streams(&["chat-1".into()], &Tails::new());
        assert!(sub.links["chat-1"].explicit && sub.links["chat-1"].glob);
        sub.remove_stream("chat-1");
        assert!(sub.links["chat-1"].glob && !sub.links["chat-1"].explicit);
        sub.remove_stream("ops/log");
        assert!(!sub.links.contains_key("ops/log"));
    }

    #[test]
    fn a_done_webhook_acks_its_snapshot_and_later_events_wake_again() {
        let mut sub = webhook();
        let t = tails(&[("chat-1", 7)]);
        let Effect::Deliver {
            wake_id,
            generation,
        } = sub.wake_if_idle(&t, 100)
        else {
            panic!("a wake");
        };
        assert_eq!(generation, 1);
        assert_eq!(
            sub.wake_if_idle(&t, 100),
            Effect::None,
            "one wake in flight"
        );
        // Events arrived after the snapshot: acked to the snapshot, woken again.
        let later = tails(&[("chat-1", 9)]);
        let next = sub.delivered(&wake_id, Delivered::Done, &later, 200);
        assert_eq!(sub.links["chat-1"].acked, Offset(7));
        assert!(
            matches!(next, Effect::Deliver { generation: 2, .. }),
            "{next:?}"
        );
    }

    #[test]
    fn failed_deliveries_back_off_from_one_second_to_a_minute_and_keep_the_wake() {
        let mut sub = webhook();
        let t = tails(&[("chat-1", 7)]);
        let Effect::Deliver { wake_id, .. } = sub.wake_if_idle(&t, 0) else {
            panic!("a wake");
        };
        let mut delays = Vec::new();
        let mut now = 0;
        for _ in 0..9 {
            sub.delivered(&wake_id, Delivered::Failed, &t, now);
            assert_eq!(sub.status(), "failed");
            let at = sub.retry.as_ref().unwrap().next_attempt_at_ms;
            delays.push(at - now);
            assert_eq!(sub.retry_due(at - 1), Effect::None, "not before its time");
            assert!(matches!(
                sub.retry_due(at),
                Effect::Deliver { generation: 1, .. }
            ));
            now = at;
        }
        for (i, delay) in delays.iter().enumerate() {
            let base = (1000i64 << i.min(6)).min(60_000) as f64;
            assert!(
                (*delay as f64 - base).abs() <= base * 0.2 + 1.0,
                "{i}: {delay} vs {base}"
            );
        }
        assert_eq!(
            sub.wake.as_ref().unwrap().id,
            wake_id,
            "the same wake is retried"
        );
        sub.delivered(&wake_id, Delivered::Accepted, &t, now);
        assert_eq!(sub.status(), "active");
    }

    #[test]
    fn a_request_for_another_wake_generation_or_an_expired_lease_is_fenced() {
        let mut sub = webhook();
        let t = tails(&[("chat-1", 7)]);
        let Effect::Deliver { wake_id, .. } = sub.wake_if_idle(&t, 0) else {
            panic!("a wake");
        };
        // The lease covers the delivery (up to its timeout) and then the TTL.
        let end = 1000 + DELIVERY_TIMEOUT_MS;
        assert!(sub.fence(&wake_id, 1, end).is_ok());
        let fenced = |r: Result<&Wake, DispatchError>| r.unwrap_err() == DispatchError::Fenced;
        assert!(fenced(sub.fence("w_other", 1, 500)));
        assert!(fenced(sub.fence(&wake_id, 2, 500)));
        assert!(fenced(sub.fence(&wake_id, 1, end + 1)));
        // An ack past the tail changes nothing.
        let bad = AckRequest {
            wake_id: wake_id.clone(),
            generation: 1,
            acks: vec![Ack {
                stream: "chat-1".into(),
                offset: Offset(8).to_string(),
            }],
            done: true,
            reply: None,
        };
        let before = sub.clone();
        let refused = sub.ack(&bad, &t, 500);
        assert!(matches!(refused, Err(DispatchError::InvalidOffset(_))));
        assert_eq!(sub, before);
        // The lease expires: the work is woken again in a new generation.
        assert_eq!(sub.expire(&t, end), None);
        let again = sub.expire(&t, end + 1);
        assert!(matches!(again, Some(Effect::Deliver { generation: 2, .. })));
        // Once the handler accepted it, the lease is the TTL from its answer.
        let id = sub.wake.as_ref().expect("woken again").id.clone();
        sub.delivered(&id, Delivered::Accepted, &t, end + 100);
        assert_eq!(sub.wake.as_ref().unwrap().lease_until_ms, Some(end + 1100));
    }

    #[test]
    fn a_claimed_lease_that_runs_out_names_the_lost_worker_and_its_reply_and_wakes_again() {
        let spec = spec(
            json!({"type": "pull-wake", "streams": ["chat-1"], "wake_stream": "pool", "lease_ttl_ms": 1000}),
        );
        let mut sub = Subscription::new("acme", "s", spec, "http://h", &tails(&[("chat-1", 0)]), 0);
        sub.parent = Some("pool".into());
        let t = tails(&[("chat-1", 4)]);
        assert!(sub.saw_append("chat-1", Offset(0)));
        assert!(matches!(
            sub.wake_if_idle(&t, 0),
            Effect::WakeEvent { generation: 1, .. }
        ));
        sub.claim("w1", &t, 10).expect("claimed");
        let wake_id = sub.wake.as_ref().unwrap().id.clone();
        let beat = AckRequest {
            wake_id,
            generation: 1,
            acks: vec![],
            done: false,
            reply: Some("m_7".into()),
        };
        sub.ack(&beat, &t, 500).expect("a heartbeat");
        assert_eq!(
            sub.expire(&t, 1500),
            None,
            "the heartbeat extended the lease"
        );
        let Some(Effect::Lost { lost, then }) = sub.expire(&t, 1501) else {
            panic!("lost");
        };
        assert_eq!(
            lost,
            Lost {
                worker: "w1".into(),
                reply: Some("m_7".into()),
                generation: 1,
                streams: vec!["chat-1".into()],
            }
        );
        assert!(
            matches!(*then, Effect::WakeEvent { generation: 2, .. }),
            "{then:?}"
        );
        assert_eq!(
            sub.wake.as_ref().unwrap().holder,
            None,
            "for another worker"
        );
        // An unclaimed wake that runs out is woken again, and nobody was lost.
        assert!(matches!(
            sub.expire(&t, 10_000),
            Some(Effect::WakeEvent { generation: 3, .. })
        ));
    }

    #[test]
    fn lease_scope_stream_is_kept_apart_from_the_protocols_hash() {
        let plain = json!({"type": "pull-wake", "pattern": "chat-*", "wake_stream": "pool"});
        let mut scoped = plain.clone();
        scoped["lease_scope"] = json!("stream");
        let (plain, scoped) = (spec(plain), spec(scoped));
        assert!(!plain.per_stream && scoped.per_stream);
        assert_ne!(plain.hash(), scoped.hash());
        assert!(
            !serde_json::to_string(&plain)
                .unwrap()
                .contains("per_stream")
        );
        let child = scoped.child("pool-sub", "chat-9");
        assert_eq!(child.streams, ["chat-9"]);
        assert!(!child.per_stream && child.pattern.is_none());
        assert!(
            Spec::parse(
                br#"{"type": "pull-wake", "pattern": "c", "wake_stream": "p", "lease_scope": "x"}"#,
                Targets::Public
            )
            .is_err()
        );
    }
}
