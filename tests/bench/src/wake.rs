//! Dispatch latency: from a user's append to a session to the worker's first delta in
//! it, through a Durable Streams subscription over a pattern. One message at a time, so
//! the figure is the path's latency, not a queue's.
//!
//! The worker is this process, doing the least a worker does: on a pull-wake it claims,
//! appends its delta and acks past it; on a webhook it appends its delta, answers, and
//! calls back with the ack.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use reqwest::{Client, header};
use serde_json::{Value, json};
use tokio::sync::mpsc;

use crate::protocol::{self, Target};
use crate::stats::Latency;

const WARM_UP: u64 = 20;

/// The webhook receiver's state: the server to append to, where to report deltas.
type Receiver = (Target, mpsc::UnboundedSender<(String, Instant)>);
const STEP: Duration = Duration::from_secs(30);

fn unique(what: &str) -> String {
    format!("{what}{}x{:08x}", std::process::id(), fastrand::u32(..))
}

fn user_message(seq: u64) -> String {
    json!({"type": "message.start", "id": format!("u{seq}"), "role": "user", "data": {"text": "hi"}})
        .to_string()
}

/// Appends the worker's first delta; the stream's tail after it.
async fn first_delta(client: &Client, target: &Target, stream: &str) -> anyhow::Result<String> {
    let response = client
        .post(target.stream_url(stream))
        .header(header::CONTENT_TYPE, "application/json")
        .body(json!({"type": "message.delta", "id": "r", "data": {"text": "Hello"}}).to_string())
        .send()
        .await?;
    if !response.status().is_success() {
        bail!("the worker's append: {}", response.status());
    }
    response
        .headers()
        .get("stream-next-offset")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
        .context("an append without Stream-Next-Offset")
}

async fn post_json(
    client: &Client,
    url: &str,
    bearer: Option<&str>,
    body: Value,
) -> anyhow::Result<(u16, Value)> {
    let mut request = client
        .post(url)
        .header(header::CONTENT_TYPE, "application/json")
        .body(body.to_string());
    if let Some(token) = bearer {
        request = request.bearer_auth(token);
    }
    let response = request.send().await?;
    let status = response.status().as_u16();
    let body = serde_json::from_slice(&response.bytes().await?).unwrap_or(Value::Null);
    Ok((status, body))
}

/// Creates `count` sessions one at a time, times each user message to the worker's
/// first delta (reported on `deltas` by stream name).
async fn measure(
    target: &Target,
    prefix: &str,
    count: u64,
    mut deltas: mpsc::UnboundedReceiver<(String, Instant)>,
) -> anyhow::Result<Latency> {
    let client = target.client();
    let mut samples = Vec::new();
    for seq in 0..WARM_UP + count {
        let stream = format!("{prefix}{seq}");
        protocol::create(&client, &target.stream_url(&stream)).await?;
        let sent = Instant::now();
        protocol::append(
            &client,
            &target.stream_url(&stream),
            user_message(seq).into(),
        )
        .await?;
        let at = loop {
            let (got, at) = tokio::time::timeout(STEP, deltas.recv())
                .await
                .with_context(|| format!("no delta in {stream} within 30 s"))?
                .context("the worker stopped")?;
            if got == stream {
                break at;
            }
        };
        if seq >= WARM_UP {
            samples.push(at.saturating_duration_since(sent));
        }
    }
    Latency::of(samples).context("no samples")
}

/// Pull-wake: the worker long-polls the wake stream and claims each wake.
pub async fn pull_wake(target: &Target, count: u64) -> anyhow::Result<Latency> {
    let client = target.client();
    let prefix = unique("pw");
    let wakes = format!("{prefix}-wakes");
    protocol::create(&client, &target.stream_url(&wakes)).await?;
    let id = format!("{prefix}-pool");
    let subscription = format!("{}/v1/stream/__ds/subscriptions/{id}", target.url);
    let response = client
        .put(&subscription)
        .header(header::CONTENT_TYPE, "application/json")
        .body(json!({"type": "pull-wake", "pattern": format!("{prefix}/*"), "wake_stream": wakes, "lease_ttl_ms": 30000}).to_string())
        .send()
        .await?;
    if !response.status().is_success() {
        bail!("creating the subscription: {}", response.status());
    }
    let (tx, rx) = mpsc::unbounded_channel();
    // From the wake stream's tail as it is now: a wake written before the worker's first
    // long-poll arrives is still read.
    let mut at = protocol::read(&client, &target.stream_url(&wakes), "-1", None)
        .await?
        .next;
    let worker = {
        let (target, client, subscription) =
            (target.clone(), target.client(), subscription.clone());
        tokio::spawn(async move {
            loop {
                let read =
                    protocol::read(&client, &target.stream_url(&wakes), &at, Some("long-poll"))
                        .await?;
                at = read.next;
                for wake in read.messages {
                    if wake["type"] != "wake" {
                        continue;
                    }
                    let (status, claim) = post_json(
                        &client,
                        &format!("{subscription}/claim"),
                        None,
                        json!({"worker": "bench"}),
                    )
                    .await?;
                    if status != 200 {
                        continue;
                    }
                    let mut acks = Vec::new();
                    for stream in claim["streams"].as_array().cloned().unwrap_or_default() {
                        let path = stream["path"].as_str().unwrap_or_default().to_owned();
                        if stream["has_pending"] != true {
                            continue;
                        }
                        let tail = first_delta(&client, &target, &path).await?;
                        let _ = tx.send((path.clone(), Instant::now()));
                        acks.push(json!({"stream": path, "offset": tail}));
                    }
                    let token = claim["token"].as_str().unwrap_or_default();
                    post_json(
                        &client,
                        &format!("{subscription}/ack"),
                        Some(token),
                        json!({"wake_id": claim["wake_id"], "generation": claim["generation"], "acks": acks, "done": true}),
                    )
                    .await?;
                }
            }
            #[allow(unreachable_code)]
            Ok::<(), anyhow::Error>(())
        })
    };
    let result = measure(target, &format!("{prefix}/s"), count, rx).await;
    if worker.is_finished() {
        // The worker's own failure says more than the timeout it caused.
        return Err(worker
            .await?
            .err()
            .unwrap_or_else(|| anyhow::anyhow!("the worker stopped")));
    }
    worker.abort();
    let _ = client.delete(&subscription).send().await;
    result
}

/// Webhook: a receiver on loopback appends its delta, answers, then calls back with the
/// ack past it (a `done` answer would ack only the wake's snapshot, before the delta).
pub async fn webhook(target: &Target, count: u64) -> anyhow::Result<Latency> {
    let client = target.client();
    let prefix = unique("wh");
    let (tx, rx) = mpsc::unbounded_channel::<(String, Instant)>();
    let state = Arc::new((target.clone(), tx));
    let app = axum::Router::new().route(
        "/hook",
        axum::routing::post(
            |axum::extract::State(state): axum::extract::State<Arc<Receiver>>,
             body: axum::body::Bytes| async move {
                let (target, tx) = &*state;
                let wake: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
                let client = target.client();
                let mut acks = Vec::new();
                for stream in wake["streams"].as_array().cloned().unwrap_or_default() {
                    let path = stream["path"].as_str().unwrap_or_default().to_owned();
                    if stream["has_pending"] != true {
                        continue;
                    }
                    if let Ok(tail) = first_delta(&client, target, &path).await {
                        let _ = tx.send((path.clone(), Instant::now()));
                        acks.push(json!({"stream": path, "offset": tail}));
                    }
                }
                let callback = wake["callback_url"].as_str().unwrap_or_default().to_owned();
                let token = wake["callback_token"].as_str().unwrap_or_default().to_owned();
                let body = json!({"wake_id": wake["wake_id"], "generation": wake["generation"], "acks": acks, "done": true});
                tokio::spawn(async move {
                    let _ = post_json(&client, &callback, Some(&token), body).await;
                });
                (
                    [(header::CONTENT_TYPE, "application/json")],
                    "{}".to_owned(),
                )
            },
        ),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let hook = format!("http://{}/hook", listener.local_addr()?);
    let server = tokio::spawn(async move { axum::serve(listener, app.with_state(state)).await });
    let id = format!("{prefix}-hook");
    let subscription = format!("{}/v1/stream/__ds/subscriptions/{id}", target.url);
    let response = client
        .put(&subscription)
        .header(header::CONTENT_TYPE, "application/json")
        .body(json!({"type": "webhook", "pattern": format!("{prefix}/*"), "webhook": {"url": hook}, "lease_ttl_ms": 30000}).to_string())
        .send()
        .await?;
    if !response.status().is_success() {
        bail!(
            "creating the subscription: {} {}",
            response.status(),
            response.text().await.unwrap_or_default()
        );
    }
    let result = measure(target, &format!("{prefix}/s"), count, rx).await;
    server.abort();
    let _ = client.delete(&subscription).send().await;
    result
}
