//! The dispatch service: subscription requests, the streams' appends, webhook deliveries
//! and the sweeper (leases that expired, retries that fell due), each a conditional
//! update of one subscription followed by the effect it calls for.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use agentwire_session::{
    AppendObserver, AppendRequest, Appended, Created, Offset, Payload, ReadError, Sessions,
};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use bytes::Bytes;
use ring::hmac;
use serde_json::{Value, json};
use sha2::Digest;
use tracing::{debug, warn};

use crate::error::DispatchError;
use crate::model::{AckRequest, Effect, Spec, Subscription, Tails, normalize_path};
use crate::signing::WebhookKey;
use crate::store::{StoreError, StreamCatalog, SubscriptionStore, WebhookClient};
use crate::url_check::Targets;

/// Conditional writes tried before a request gives up (the subscription kept changing).
const MAX_ATTEMPTS: usize = 32;

/// Settings of the service.
#[derive(Debug, Clone)]
pub struct DispatchConfig {
    /// Which webhook targets subscriptions may name (the client checks again on delivery).
    pub targets: Targets,
    /// How often the sweeper looks for expired leases and due retries.
    pub sweep_every: Duration,
    pub sends: Sends,
}

/// Who sends the webhook wakes a transition asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sends {
    /// This process, in a task of its own (`agentwire dev`, a long-running server).
    Inline,
    /// Whoever follows the stored subscriptions' changes and calls
    /// [`Dispatch::send_changed`] (on AWS, a function fed by the table's stream): a Lambda
    /// handler cannot keep working after it answered.
    ByChangeFeed,
}

impl Default for DispatchConfig {
    fn default() -> DispatchConfig {
        DispatchConfig {
            targets: Targets::Public,
            sweep_every: Duration::from_millis(200),
            sends: Sends::Inline,
        }
    }
}

/// Subscriptions over a store, signing with the server's key.
pub struct Dispatch {
    store: Arc<dyn SubscriptionStore>,
    catalog: Arc<dyn StreamCatalog>,
    key: WebhookKey,
    tokens: hmac::Key,
    config: DispatchConfig,
    webhooks: Arc<dyn WebhookClient>,
}

impl From<StoreError> for DispatchError {
    fn from(e: StoreError) -> DispatchError {
        DispatchError::Unavailable(e.to_string())
    }
}

fn stored(tenant: &str, path: &str) -> String {
    agentwire_auth::stored_name(tenant, path)
}

impl Dispatch {
    /// The callback and claim tokens are keyed from the signing key, so one secret is kept.
    pub fn new(
        store: Arc<dyn SubscriptionStore>,
        catalog: Arc<dyn StreamCatalog>,
        webhooks: Arc<dyn WebhookClient>,
        key_pkcs8: &[u8],
        config: DispatchConfig,
    ) -> Result<Arc<Dispatch>, String> {
        let key = WebhookKey::from_pkcs8(key_pkcs8)?;
        let mut seed = sha2::Sha256::new();
        seed.update(b"agentwire dispatch tokens\n");
        seed.update(key_pkcs8);
        let tokens = hmac::Key::new(hmac::HMAC_SHA256, &seed.finalize());
        Ok(Arc::new(Dispatch {
            store,
            catalog,
            key,
            tokens,
            config,
            webhooks,
        }))
    }

    pub fn jwks(&self) -> Value {
        self.key.jwks()
    }

    /// A wake's token: `<tenant>.<holder>.<HMAC of its scope>` (base64url each), so a token
    /// works only for its tenant, subscription, generation, wake and holder (empty for a
    /// webhook's callback), and can be checked before anything is read.
    fn token(
        &self,
        tenant: &str,
        id: &str,
        generation: u64,
        wake_id: &str,
        holder: &str,
    ) -> String {
        let tag = hmac::sign(
            &self.tokens,
            token_scope(tenant, id, generation, wake_id, holder).as_bytes(),
        );
        format!(
            "{}.{}.{}",
            URL_SAFE_NO_PAD.encode(tenant.as_bytes()),
            URL_SAFE_NO_PAD.encode(holder.as_bytes()),
            URL_SAFE_NO_PAD.encode(tag.as_ref())
        )
    }

    /// Checks a token against the subscription and wake a request names (constant time);
    /// the tenant and holder it was minted for.
    fn verify_token(
        &self,
        token: &str,
        id: &str,
        generation: u64,
        wake_id: &str,
    ) -> Result<(String, String), DispatchError> {
        let mut parts = token.split('.');
        let (Some(tenant), Some(holder), Some(tag), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(DispatchError::TokenInvalid);
        };
        let text = |part: &str| {
            URL_SAFE_NO_PAD
                .decode(part)
                .ok()
                .and_then(|b| String::from_utf8(b).ok())
                .ok_or(DispatchError::TokenInvalid)
        };
        let (tenant, holder) = (text(tenant)?, text(holder)?);
        let tag = URL_SAFE_NO_PAD
            .decode(tag)
            .map_err(|_| DispatchError::TokenInvalid)?;
        let scope = token_scope(&tenant, id, generation, wake_id, &holder);
        hmac::verify(&self.tokens, scope.as_bytes(), &tag)
            .map_err(|_| DispatchError::TokenInvalid)?;
        Ok((tenant, holder))
    }

    /// The tails and stream ids of `paths` that exist.
    async fn heads<'p>(
        &self,
        sessions: &Sessions,
        tenant: &str,
        paths: impl IntoIterator<Item = &'p String>,
    ) -> Result<(Tails, BTreeMap<String, u64>), DispatchError> {
        let (mut tails, mut ids) = (Tails::new(), BTreeMap::new());
        for path in paths {
            match sessions.head(&stored(tenant, path)).await {
                Ok(info) => {
                    tails.insert(path.clone(), info.tail);
                    ids.insert(path.clone(), info.id);
                }
                Err(ReadError::NotFound(_) | ReadError::Gone(_)) => {}
                Err(e) => return Err(DispatchError::Unavailable(e.to_string())),
            }
        }
        Ok((tails, ids))
    }

    /// Loads, changes and conditionally saves one subscription, then carries out the
    /// effect; `change` is given the linked streams' tails and may be called again when
    /// another writer came first.
    async fn update<T>(
        self: &Arc<Self>,
        sessions: &Sessions,
        tenant: &str,
        id: &str,
        mut change: impl FnMut(&mut Subscription, &Tails, i64) -> Result<(T, Effect), DispatchError>,
    ) -> Result<(T, Subscription), DispatchError> {
        for _ in 0..MAX_ATTEMPTS {
            let Some((mut sub, version)) = self.store.get(tenant, id).await? else {
                return Err(DispatchError::NotFound);
            };
            let (tails, ids) = self.heads(sessions, tenant, sub.links.keys()).await?;
            sub.reconcile(&ids);
            let now = agentwire_session::Clock::now_ms(&agentwire_session::SystemClock);
            let (out, effect) = change(&mut sub, &tails, now)?;
            if self.store.put(&sub, Some(version)).await? {
                self.carry_out(sessions, &sub, effect).await;
                return Ok((out, sub));
            }
        }
        Err(DispatchError::Unavailable(
            "the subscription kept changing; try again".into(),
        ))
    }

    /// `PUT`: creates the subscription (`true`) or re-confirms an identical one.
    pub async fn put(
        self: &Arc<Self>,
        sessions: &Sessions,
        tenant: &str,
        id: &str,
        body: &[u8],
        base_url: &str,
    ) -> Result<(bool, Value), DispatchError> {
        check_id(id)?;
        let spec = Spec::parse(body, self.config.targets)?;
        if let Some((parent, _)) = id.rsplit_once(':')
            && let Some((existing, _)) = self.store.get(tenant, parent).await?
            && existing.spec.per_stream
        {
            return Err(DispatchError::invalid(format!(
                "`{id}` is the name of one of pool `{parent}`'s sessions; choose another id"
            )));
        }
        if spec.per_stream && id.len() > 200 {
            // Its children's ids add 17 characters and must stay valid ids.
            return Err(DispatchError::invalid(
                "a subscription with lease_scope stream has an id of at most 200 characters",
            ));
        }
        for _ in 0..MAX_ATTEMPTS {
            if let Some((existing, _)) = self.store.get(tenant, id).await? {
                if existing.hash != spec.hash() {
                    return Err(DispatchError::Exists);
                }
                return Ok((false, existing.view(self.key.kid())));
            }
            let mut tails = Tails::new();
            if spec.pattern.is_some() {
                for (path, tail) in self.catalog.streams(tenant).await? {
                    if spec.globs(&path) {
                        tails.insert(path, tail);
                    }
                }
            }
            tails.extend(self.heads(sessions, tenant, &spec.streams).await?.0);
            let now = agentwire_session::Clock::now_ms(&agentwire_session::SystemClock);
            let sub = Subscription::new(tenant, id, spec.clone(), base_url, &tails, now);
            if self.store.put(&sub, None).await? {
                // Appends made while it was being created saw no subscription: link streams
                // created meanwhile from their start, and wake what is pending.
                let listed: Vec<String> = tails.keys().cloned().collect();
                let created = match spec.pattern {
                    Some(_) => self.catalog.streams(tenant).await?,
                    None => Vec::new(),
                };
                let (_, sub) = self
                    .update(sessions, tenant, id, |sub, tails, now| {
                        let mut tails = tails.clone();
                        for (path, tail) in &created {
                            if !listed.contains(path)
                                && !sub.links.contains_key(path)
                                && sub.saw_append(path, Offset::ZERO)
                            {
                                tails.insert(path.clone(), *tail);
                            }
                        }
                        Ok(((), sub.wake_if_idle(&tails, now)))
                    })
                    .await?;
                if sub.spec.per_stream {
                    // A pool wakes its sessions' children, not itself: sessions with
                    // events past their links (appended while the pool was being made)
                    // get theirs now.
                    let (now_tails, _) = self
                        .heads(
                            sessions,
                            tenant,
                            &sub.links.keys().cloned().collect::<Vec<_>>(),
                        )
                        .await?;
                    for (path, link) in &sub.links {
                        let tail = now_tails.get(path).copied().unwrap_or(link.acked);
                        if tail > link.acked {
                            let child = child_id(&sub.id, path);
                            self.adopt(sessions, &sub, &child, path, link.acked, tail)
                                .await?;
                        }
                    }
                }
                return Ok((true, sub.view(self.key.kid())));
            }
        }
        Err(DispatchError::Unavailable(
            "the subscription kept changing; try again".into(),
        ))
    }

    pub async fn get(&self, tenant: &str, id: &str) -> Result<Value, DispatchError> {
        let (sub, _) = self
            .store
            .get(tenant, id)
            .await?
            .ok_or(DispatchError::NotFound)?;
        Ok(sub.view(self.key.kid()))
    }

    /// `DELETE`: later callbacks, acks and releases find nothing and change nothing.
    pub async fn delete(&self, tenant: &str, id: &str) -> Result<(), DispatchError> {
        let (sub, _) = self
            .store
            .get(tenant, id)
            .await?
            .ok_or(DispatchError::NotFound)?;
        if sub.spec.per_stream {
            // Its children go with it: their leases are its workers'.
            for child in self.store.list(tenant).await? {
                if child.parent.as_deref() == Some(id) {
                    self.store.delete(tenant, &child.id).await?;
                }
            }
        }
        self.store.delete(tenant, id).await?;
        Ok(())
    }

    pub async fn add_streams(
        self: &Arc<Self>,
        sessions: &Sessions,
        tenant: &str,
        id: &str,
        body: &[u8],
    ) -> Result<(), DispatchError> {
        let value: Value = serde_json::from_slice(body)
            .map_err(|e| DispatchError::invalid(format!("the body is not JSON: {e}")))?;
        let streams = value["streams"]
            .as_array()
            .filter(|s| !s.is_empty())
            .ok_or_else(|| {
                DispatchError::invalid("streams must be a non-empty array of stream paths")
            })?;
        let mut paths = Vec::with_capacity(streams.len());
        for s in streams {
            let s = s
                .as_str()
                .ok_or_else(|| DispatchError::invalid("streams must be strings"))?;
            paths.push(normalize_path(s)?);
        }
        let (tails, _) = self.heads(sessions, tenant, &paths).await?;
        self.update(sessions, tenant, id, |sub, _, _| {
            if let crate::model::Delivery::PullWake { wake_stream } = &sub.spec.delivery
                && paths.contains(wake_stream)
            {
                return Err(DispatchError::invalid(
                    "the wake stream must not be one of the subscription's own streams (each wake would wake it again)",
                ));
            }
            sub.add_streams(&paths, &tails);
            Ok(((), Effect::None))
        })
        .await?;
        Ok(())
    }

    pub async fn remove_stream(
        self: &Arc<Self>,
        sessions: &Sessions,
        tenant: &str,
        id: &str,
        path: &str,
    ) -> Result<(), DispatchError> {
        let path = normalize_path(path)?;
        self.update(sessions, tenant, id, |sub, _, _| {
            sub.remove_stream(&path);
            Ok(((), Effect::None))
        })
        .await?;
        Ok(())
    }

    /// A webhook handler's callback, authenticated by the wake's token.
    pub async fn callback(
        self: &Arc<Self>,
        sessions: &Sessions,
        id: &str,
        token: &str,
        body: &[u8],
    ) -> Result<Value, DispatchError> {
        self.acknowledge(sessions, id, token, body, false).await
    }

    /// A pull-wake worker's ack (a heartbeat without `done`), authenticated by its claim.
    pub async fn ack(
        self: &Arc<Self>,
        sessions: &Sessions,
        id: &str,
        token: &str,
        body: &[u8],
    ) -> Result<Value, DispatchError> {
        self.acknowledge(sessions, id, token, body, true).await
    }

    async fn acknowledge(
        self: &Arc<Self>,
        sessions: &Sessions,
        id: &str,
        token: &str,
        body: &[u8],
        pull: bool,
    ) -> Result<Value, DispatchError> {
        let request: AckRequest = serde_json::from_slice(body).map_err(|e| {
            DispatchError::invalid(format!(
                "not an ack {{wake_id, generation, acks, done}}: {e}"
            ))
        })?;
        // The token first: a request without a valid one learns nothing of the subscription.
        let (tenant, holder) =
            self.verify_token(token, id, request.generation, &request.wake_id)?;
        let (next, _) = self
            .update(sessions, &tenant, id, |sub, tails, now| {
                if sub.is_pull_wake() != pull {
                    return Err(DispatchError::invalid(if pull {
                        "this subscription is a webhook one: its handler calls back at …/callback"
                    } else {
                        "this subscription is pull-wake: its workers ack at …/ack"
                    }));
                }
                held_by(sub, &holder)?;
                sub.ack(&request, tails, now)
            })
            .await?;
        Ok(json!({"ok": true, "next_wake": next}))
    }

    /// A pull-wake worker's claim of the subscription's wake.
    pub async fn claim(
        self: &Arc<Self>,
        sessions: &Sessions,
        tenant: &str,
        id: &str,
        body: &[u8],
    ) -> Result<Value, DispatchError> {
        let value: Value = serde_json::from_slice(body)
            .map_err(|e| DispatchError::invalid(format!("the body is not JSON: {e}")))?;
        let worker = value["worker"]
            .as_str()
            .ok_or_else(|| {
                DispatchError::invalid("worker is required: the claiming worker's name")
            })?
            .to_owned();
        let (tails, sub) = self
            .update(sessions, tenant, id, |sub, tails, now| {
                let effect = sub.claim(&worker, tails, now)?;
                Ok((tails.clone(), effect))
            })
            .await?;
        let wake = sub.wake.as_ref().ok_or(DispatchError::NoPendingWork)?;
        Ok(json!({
            "wake_id": wake.id,
            "generation": sub.generation,
            "token": self.token(tenant, id, sub.generation, &wake.id, &worker),
            "streams": sub.stream_infos(&tails),
            "lease_ttl_ms": sub.spec.lease_ttl_ms,
        }))
    }

    /// A pull-wake worker gives its claim back.
    pub async fn release(
        self: &Arc<Self>,
        sessions: &Sessions,
        id: &str,
        token: &str,
        body: &[u8],
    ) -> Result<(), DispatchError> {
        let request: AckRequest = serde_json::from_slice(body).map_err(|e| {
            DispatchError::invalid(format!("not a release {{wake_id, generation}}: {e}"))
        })?;
        let (tenant, holder) =
            self.verify_token(token, id, request.generation, &request.wake_id)?;
        self.update(sessions, &tenant, id, |sub, tails, now| {
            if !sub.is_pull_wake() {
                return Err(DispatchError::invalid("this subscription is not pull-wake"));
            }
            held_by(sub, &holder)?;
            Ok((
                (),
                sub.release(&request.wake_id, request.generation, tails, now)?,
            ))
        })
        .await?;
        Ok(())
    }

    /// An append to `name` (a stored name): each subscription of its tenant that links the
    /// stream is woken if idle.
    async fn on_append(
        self: &Arc<Self>,
        sessions: &Sessions,
        name: &str,
        start: agentwire_session::Offset,
        tail: agentwire_session::Offset,
    ) -> Result<(), DispatchError> {
        let Some((tenant, path)) = agentwire_auth::split_stored_name(name) else {
            return Ok(());
        };
        if path == "__ds" || path.starts_with("__ds/") {
            return Ok(());
        }
        let subs = self.store.list(tenant).await?;
        for sub in &subs {
            let matches = sub.links.contains_key(path) || sub.spec.globs(path);
            if !matches {
                continue;
            }
            if sub.spec.per_stream {
                // The parent only matches: the stream's own child is woken (made now if
                // this is the stream's first append since the parent was).
                let child = child_id(&sub.id, path);
                if !subs.iter().any(|s| s.id == child)
                    && let Err(e) = self.adopt(sessions, sub, &child, path, start, tail).await
                {
                    warn!(subscription = %child, error = %e, "append not dispatched");
                }
                continue;
            }
            // Always a write, even when the wake is in flight: the conditional write is
            // what makes a concurrent `done` see this append (its transition re-reads the
            // tails), so skipping "unchanged" writes would lose wakes.
            let result = self
                .update(sessions, tenant, &sub.id, |sub, tails, now| {
                    Ok(((), appended(sub, tails, path, start, tail, now)))
                })
                .await;
            if let Err(e) = result
                && e != DispatchError::NotFound
            {
                warn!(subscription = %sub.id, error = %e, "append not dispatched");
            }
        }
        Ok(())
    }

    /// Makes `parent`'s child for `path` (unless a concurrent append made it first) and
    /// wakes it for the append `start..tail`. The child's cursor starts where the parent's
    /// link for the stream was (a stream that existed when the parent was made), or at
    /// the stream's start: the same for every racer, so no append is skipped.
    async fn adopt(
        self: &Arc<Self>,
        sessions: &Sessions,
        parent: &Subscription,
        id: &str,
        path: &str,
        start: agentwire_session::Offset,
        tail: agentwire_session::Offset,
    ) -> Result<(), DispatchError> {
        let from = parent
            .links
            .get(path)
            .map_or(agentwire_session::Offset::ZERO, |link| link.acked);
        let tails: Tails = [(path.to_owned(), from)].into();
        let now = agentwire_session::Clock::now_ms(&agentwire_session::SystemClock);
        let spec = parent.spec.child(&parent.id, path);
        let mut child = Subscription::new(&parent.tenant, id, spec, &parent.base_url, &tails, now);
        child.parent = Some(parent.id.clone());
        if !self.store.put(&child, None).await? {
            // Lost to a concurrent append (whose child is the same) or taken: only the
            // pool's own child is woken.
            match self.store.get(&parent.tenant, id).await? {
                Some((existing, _)) if existing.parent.as_deref() == Some(&parent.id) => {}
                _ => return Ok(()),
            }
        } else if self.store.get(&parent.tenant, &parent.id).await?.is_none() {
            // The pool was deleted meanwhile: its children go with it.
            self.store.delete(&parent.tenant, id).await?;
            return Ok(());
        }
        self.update(sessions, &parent.tenant, id, |sub, tails, now| {
            Ok(((), appended(sub, tails, path, start, tail, now)))
        })
        .await?;
        Ok(())
    }

    /// One pass of the sweeper: expired leases cleared (and their work woken again), due
    /// webhook retries sent.
    pub async fn sweep(self: &Arc<Self>, sessions: &Sessions) -> Result<(), DispatchError> {
        let now = agentwire_session::Clock::now_ms(&agentwire_session::SystemClock);
        for (tenant, id) in self.store.due(now).await? {
            let result = self
                .update(sessions, &tenant, &id, |sub, tails, now| {
                    if let Some(effect) = sub.expire(tails, now) {
                        return Ok(((), effect));
                    }
                    Ok(((), sub.retry_due(now)))
                })
                .await;
            if let Err(e) = result
                && e != DispatchError::NotFound
            {
                warn!(subscription = %id, error = %e, "sweep failed");
            }
        }
        Ok(())
    }

    /// Runs [`Dispatch::sweep`] every [`DispatchConfig::sweep_every`] until `sessions`
    /// stops its live reads (the server is shutting down).
    pub async fn run_sweeper(self: Arc<Self>, sessions: Sessions) {
        loop {
            tokio::time::sleep(self.config.sweep_every).await;
            if sessions.is_stopping() {
                return;
            }
            if let Err(e) = self.sweep(&sessions).await {
                warn!(error = %e, "subscription sweep failed");
            }
        }
    }

    /// Boxed: a delivery's answer can call for another delivery.
    fn carry_out<'a>(
        self: &'a Arc<Self>,
        sessions: &'a Sessions,
        sub: &'a Subscription,
        effect: Effect,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send + 'a>> {
        Box::pin(async move { self.carry_out_now(sessions, sub, effect).await })
    }

    async fn carry_out_now(
        self: &Arc<Self>,
        sessions: &Sessions,
        sub: &Subscription,
        effect: Effect,
    ) {
        match effect {
            Effect::None => {}
            Effect::WakeEvent {
                wake_stream,
                stream,
                generation,
            } => {
                let event = json!({
                    "type": "wake",
                    "subscription_id": sub.id,
                    "stream": stream,
                    "generation": generation,
                    "ts": agentwire_session::Clock::now_ms(&agentwire_session::SystemClock),
                });
                // A wake stream that is missing leaves the wake claimable: workers that
                // claim on a timer still get it.
                if let Err(e) = append_json(sessions, &sub.tenant, &wake_stream, &event).await {
                    warn!(subscription = %sub.id, error = %e, "wake event not written");
                }
            }
            Effect::Lost { lost, then } => {
                // The session hears its agent is gone (clients mark the reply), before
                // another worker is woken to answer again.
                let event = agentwire_session::events::Envelope::agent_lost(
                    lost.reply.as_deref(),
                    &lost.worker,
                    &sub.id,
                    lost.generation,
                );
                let event = serde_json::to_value(event).unwrap_or_default();
                for stream in &lost.streams {
                    if let Err(e) = append_json(sessions, &sub.tenant, stream, &event).await {
                        warn!(subscription = %sub.id, error = %e, "agent.lost not written");
                    }
                }
                self.carry_out(sessions, sub, *then).await;
            }
            Effect::Deliver { .. } if self.config.sends == Sends::ByChangeFeed => {}
            Effect::Deliver { wake_id, .. } => {
                let this = self.clone();
                let sessions = sessions.clone();
                let (tenant, id) = (sub.tenant.clone(), sub.id.clone());
                tokio::spawn(async move {
                    this.deliver(&sessions, &tenant, &id, &wake_id).await;
                });
            }
        }
    }

    /// Sends the wake a stored change asked for, if it did (its delivery count grew): a
    /// change feed delivers at least once, and a repeated record sends the same wake
    /// again, which its generation makes harmless.
    pub async fn send_changed(
        self: &Arc<Self>,
        sessions: &Sessions,
        old: Option<&Subscription>,
        new: &Subscription,
    ) {
        let asked = new.deliveries > old.map_or(0, |old| old.deliveries);
        if let (true, Some(wake)) = (asked, &new.wake) {
            self.deliver(sessions, &new.tenant, &new.id, &wake.id).await;
        }
    }

    /// Sends one wake to its webhook and records the answer.
    async fn deliver(self: &Arc<Self>, sessions: &Sessions, tenant: &str, id: &str, wake_id: &str) {
        let Ok(Some((sub, _))) = self.store.get(tenant, id).await else {
            return;
        };
        let (Some(wake), crate::model::Delivery::Webhook { url }) = (&sub.wake, &sub.spec.delivery)
        else {
            return;
        };
        if wake.id != wake_id {
            return;
        }
        let body = json!({
            "subscription_id": sub.id,
            "wake_id": wake.id,
            "generation": sub.generation,
            "streams": sub.stream_infos(&wake.snapshot.iter().map(|(k, v)| (k.clone(), *v)).collect()),
            "callback_url": sub.callback_url(),
            "callback_token": self.token(tenant, id, sub.generation, &wake.id, ""),
        })
        .to_string();
        let now_s = agentwire_session::Clock::now_ms(&agentwire_session::SystemClock) / 1000;
        let signature = self.key.signature(now_s, body.as_bytes());
        let outcome = self.webhooks.post(url, &signature, body.into_bytes()).await;
        debug!(subscription = %id, ?outcome, "webhook delivered");
        let result = self
            .update(sessions, tenant, id, |sub, tails, now| {
                Ok(((), sub.delivered(wake_id, outcome, tails, now)))
            })
            .await;
        if let Err(e) = result
            && e != DispatchError::NotFound
        {
            warn!(subscription = %id, error = %e, "webhook answer not recorded");
        }
    }
}

/// The wake in flight must be held by the token's holder (a claim that expired and was
/// taken by another worker is fenced, as a stale generation is).
fn held_by(sub: &Subscription, holder: &str) -> Result<(), DispatchError> {
    match &sub.wake {
        Some(wake) if wake.holder.as_deref().unwrap_or_default() == holder => Ok(()),
        _ => Err(DispatchError::Fenced),
    }
}

/// The transition of an append `start..tail` to `path`: linked if the subscription takes
/// it, woken if idle. The link may be new, so its tail is taken from the append.
fn appended(
    sub: &mut Subscription,
    tails: &Tails,
    path: &str,
    start: agentwire_session::Offset,
    tail: agentwire_session::Offset,
    now: i64,
) -> Effect {
    if !sub.saw_append(path, start) {
        return Effect::None;
    }
    let mut tails = tails.clone();
    let known = tails.entry(path.to_owned()).or_insert(tail);
    *known = (*known).max(tail);
    sub.wake_if_idle(&tails, now)
}

/// Appends one JSON event to `tenant`'s stream `path`.
async fn append_json(
    sessions: &Sessions,
    tenant: &str,
    path: &str,
    event: &Value,
) -> Result<(), String> {
    let payload = Payload::frame(
        agentwire_session::content::Mode::Json,
        Bytes::from(event.to_string()),
        false,
    )
    .map_err(|e| e.to_string())?;
    let request = AppendRequest {
        content_type: Some("application/json".into()),
        payload,
        ..AppendRequest::default()
    };
    sessions
        .append(&stored(tenant, path), request)
        .await
        .map(drop)
        .map_err(|e| e.to_string())
}

/// A per-stream subscription's child for `path`: `<parent>:<16 hex of the path's
/// SHA-256>`, a valid id of bounded length whatever the path.
pub fn child_id(parent: &str, path: &str) -> String {
    let digest = sha2::Sha256::digest(path.as_bytes());
    let hex: String = digest[..8].iter().map(|b| format!("{b:02x}")).collect();
    format!("{parent}:{hex}")
}

fn token_scope(tenant: &str, id: &str, generation: u64, wake_id: &str, holder: &str) -> String {
    format!("{tenant}\n{id}\n{generation}\n{wake_id}\n{holder}")
}

fn check_id(id: &str) -> Result<(), DispatchError> {
    let ok = !id.is_empty()
        && id.len() <= 256
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.:".contains(&b));
    if ok {
        Ok(())
    } else {
        Err(DispatchError::invalid(
            "a subscription id is 1 to 256 letters, digits, `-`, `_`, `.` and `:`",
        ))
    }
}

/// The observer that feeds appends to the service (the service needs its own `Arc`).
pub struct DispatchObserver(pub Arc<Dispatch>);

#[async_trait::async_trait]
impl AppendObserver for DispatchObserver {
    async fn appended(
        &self,
        sessions: &Sessions,
        name: &str,
        appended: &Appended,
        _: Option<&Payload>,
    ) {
        if let Err(e) = self
            .0
            .on_append(sessions, name, appended.start, appended.tail)
            .await
        {
            warn!(error = %e, "append not dispatched");
        }
    }

    /// A stream created with data is its first append.
    async fn created(&self, sessions: &Sessions, created: &Created) {
        let info = &created.info;
        if info.tail == agentwire_session::Offset::ZERO {
            return;
        }
        let start = info
            .fork
            .as_ref()
            .map_or(agentwire_session::Offset::ZERO, |(_, at)| *at);
        if let Err(e) = self
            .0
            .on_append(sessions, &info.name, start, info.tail)
            .await
        {
            warn!(error = %e, "append not dispatched");
        }
    }
}
