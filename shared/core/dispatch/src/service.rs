//! The dispatch service: subscription requests, the streams' appends, webhook deliveries
//! and the sweeper (leases that expired, retries that fell due), each a conditional
//! update of one subscription followed by the effect it calls for.

use std::sync::Arc;
use std::time::Duration;

use agentwire_session::{
    AppendObserver, AppendRequest, Appended, Created, Payload, ReadError, Sessions,
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
}

impl Default for DispatchConfig {
    fn default() -> DispatchConfig {
        DispatchConfig {
            targets: Targets::Public,
            sweep_every: Duration::from_millis(200),
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

    /// A wake's token: `<tenant, base64url>.<HMAC of its scope>`, so a token works only
    /// for its tenant, subscription, generation, wake and (for a claim) holder.
    fn token(&self, sub: &Subscription, wake_id: &str, holder: &str) -> String {
        let scope = format!(
            "{}\n{}\n{}\n{wake_id}\n{holder}",
            sub.tenant, sub.id, sub.generation
        );
        let tag = hmac::sign(&self.tokens, scope.as_bytes());
        format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(sub.tenant.as_bytes()),
            URL_SAFE_NO_PAD.encode(tag.as_ref())
        )
    }

    /// The tenant a wake token names (checked against the subscription afterwards).
    pub fn token_tenant(token: &str) -> Result<String, DispatchError> {
        let (tenant, _) = token.split_once('.').ok_or(DispatchError::TokenInvalid)?;
        let bytes = URL_SAFE_NO_PAD
            .decode(tenant)
            .map_err(|_| DispatchError::TokenInvalid)?;
        String::from_utf8(bytes).map_err(|_| DispatchError::TokenInvalid)
    }

    fn check_token(&self, sub: &Subscription, token: &str) -> Result<(), DispatchError> {
        let Some(wake) = &sub.wake else {
            return Err(DispatchError::Fenced);
        };
        let holder = wake.holder.as_deref().unwrap_or_default();
        let want = self.token(sub, &wake.id, holder);
        // Both are MACs' encodings: comparing them leaks nothing about the key.
        if want.as_bytes() == token.as_bytes() {
            Ok(())
        } else {
            Err(DispatchError::TokenInvalid)
        }
    }

    async fn tails(
        &self,
        sessions: &Sessions,
        tenant: &str,
        sub: &Subscription,
    ) -> Result<Tails, DispatchError> {
        let mut tails = Tails::new();
        for path in sub.links.keys() {
            if let Some(tail) = self.tail(sessions, tenant, path).await? {
                tails.insert(path.clone(), tail);
            }
        }
        Ok(tails)
    }

    async fn tail(
        &self,
        sessions: &Sessions,
        tenant: &str,
        path: &str,
    ) -> Result<Option<agentwire_session::Offset>, DispatchError> {
        match sessions.head(&stored(tenant, path)).await {
            Ok(info) => Ok(Some(info.tail)),
            Err(ReadError::NotFound(_) | ReadError::Gone(_)) => Ok(None),
            Err(e) => Err(DispatchError::Unavailable(e.to_string())),
        }
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
            let tails = self.tails(sessions, tenant, &sub).await?;
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
            for path in &spec.streams {
                if let Some(tail) = self.tail(sessions, tenant, path).await? {
                    tails.insert(path.clone(), tail);
                }
            }
            let now = agentwire_session::Clock::now_ms(&agentwire_session::SystemClock);
            let sub = Subscription::new(tenant, id, spec.clone(), base_url, &tails, now);
            if self.store.put(&sub, None).await? {
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
        let mut tails = Tails::new();
        for path in &paths {
            if let Some(tail) = self.tail(sessions, tenant, path).await? {
                tails.insert(path.clone(), tail);
            }
        }
        self.update(sessions, tenant, id, |sub, _, _| {
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
        let tenant = Dispatch::token_tenant(token)?;
        let (next, _) = self
            .update(sessions, &tenant, id, |sub, tails, now| {
                if sub.is_pull_wake() != pull {
                    return Err(DispatchError::invalid(if pull {
                        "this subscription is a webhook one: its handler calls back at …/callback"
                    } else {
                        "this subscription is pull-wake: its workers ack at …/ack"
                    }));
                }
                sub.fence(&request.wake_id, request.generation, now)?;
                self.check_token(sub, token)?;
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
            "token": self.token(&sub, &wake.id, &worker),
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
        let tenant = Dispatch::token_tenant(token)?;
        self.update(sessions, &tenant, id, |sub, tails, now| {
            if !sub.is_pull_wake() {
                return Err(DispatchError::invalid("this subscription is not pull-wake"));
            }
            sub.fence(&request.wake_id, request.generation, now)?;
            self.check_token(sub, token)?;
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
        for sub in self.store.list(tenant).await? {
            if !(sub.links.contains_key(path) || sub.spec.globs(path)) {
                continue;
            }
            let result = self
                .update(sessions, tenant, &sub.id, |sub, tails, now| {
                    if !sub.saw_append(path, start) {
                        return Ok(((), Effect::None));
                    }
                    let mut tails = tails.clone();
                    // The link may be new: its tail was not read.
                    let known = tails.entry(path.to_owned()).or_insert(tail);
                    *known = (*known).max(tail);
                    Ok(((), sub.wake_if_idle(&tails, now)))
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

    /// Runs [`Dispatch::sweep`] until `stop` is dropped or set.
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
                let payload = match Payload::frame(
                    agentwire_session::content::Mode::Json,
                    Bytes::from(event.to_string()),
                    false,
                ) {
                    Ok(payload) => payload,
                    Err(e) => {
                        warn!(error = %e, "wake event not framed");
                        return;
                    }
                };
                let request = AppendRequest {
                    content_type: Some("application/json".into()),
                    payload,
                    ..AppendRequest::default()
                };
                // A wake stream that is missing leaves the wake claimable: workers that
                // claim on a timer still get it.
                if let Err(e) = sessions
                    .append(&stored(&sub.tenant, &wake_stream), request)
                    .await
                {
                    warn!(subscription = %sub.id, error = %e, "wake event not written");
                }
            }
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
            "callback_token": self.token(&sub, &wake.id, ""),
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
    async fn appended(&self, sessions: &Sessions, name: &str, appended: &Appended) {
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
