//! Durable Streams subscriptions through `agentwire dev`'s app on a real socket, with
//! tokens: a webhook receiver that fails before it recovers, callbacks fenced by
//! generation, pull-wake leases that expire and wake the work again, tenants kept apart,
//! and bad input refused without changing anything.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use agentwire_auth::{Auth, Claims, Role, Signer};
use agentwire_local_stack::{LocalSettings, LocalStack};
use agentwire_session::Offset;
use agentwire_streams_http::HttpConfig;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use serde_json::{Value, json};

const SECRET: &[u8] = b"a test secret of at least 32 bytes!!";

fn token(tenant: &str, sessions: &str, role: Role) -> String {
    Signer::new(SECRET).mint(&Claims {
        tenant: tenant.into(),
        sessions: sessions.into(),
        role,
        user: Some("agent".into()),
        exp: i64::MAX,
    })
}

struct Server {
    base: String,
    http: reqwest::Client,
    _dir: tempfile::TempDir,
    _stack: LocalStack,
}

async fn serve() -> Server {
    let dir = tempfile::tempdir().expect("temp dir");
    let stack = LocalStack::open(&LocalSettings::new(dir.path())).expect("stack");
    let app = stack.app(Auth::Tokens(Signer::new(SECRET)), HttpConfig::default());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("address");
    tokio::spawn(async move { axum::serve(listener, app).await });
    Server {
        base: format!("http://{addr}/v1/stream"),
        http: reqwest::Client::new(),
        _dir: dir,
        _stack: stack,
    }
}

impl Server {
    async fn send(
        &self,
        method: &str,
        path: &str,
        token: &str,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let method = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
        let mut request = self
            .http
            .request(method, format!("{}/{path}", self.base))
            .bearer_auth(token);
        if let Some(body) = body {
            request = request
                .header("content-type", "application/json")
                .body(body.to_string());
        }
        let response = request.send().await.expect("the server answers");
        let status = StatusCode::from_u16(response.status().as_u16()).unwrap();
        let text = response.text().await.unwrap_or_default();
        (status, serde_json::from_str(&text).unwrap_or(Value::Null))
    }

    async fn append(&self, path: &str, token: &str, event: Value) {
        let (status, _) = self.send("POST", path, token, Some(event.clone())).await;
        if status == StatusCode::NOT_FOUND {
            let (status, _) = self.send("PUT", path, token, Some(json!([event]))).await;
            assert_eq!(status, StatusCode::CREATED);
        } else {
            assert!(status.is_success(), "append to {path}: {status}");
        }
    }
}

/// A webhook receiver: answers 500 to its first `failures` requests, then `{}` (the
/// handler calls back later); records each request's body and signature.
#[derive(Clone, Default)]
struct Receiver {
    /// Answer `{"done": true}` once up.
    done: bool,
    /// Each request's signature header and raw body.
    seen: Arc<Mutex<Vec<(String, String)>>>,
    failures: usize,
}

async fn receive(
    State(r): State<Receiver>,
    headers: HeaderMap,
    body: String,
) -> (StatusCode, String) {
    let signature = headers
        .get("webhook-signature")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    let mut seen = r.seen.lock().unwrap();
    seen.push((signature, body));
    if seen.len() <= r.failures {
        (StatusCode::INTERNAL_SERVER_ERROR, "down".into())
    } else if r.done {
        (StatusCode::OK, r#"{"done": true}"#.into())
    } else {
        (StatusCode::OK, "{}".into())
    }
}

async fn receiver(failures: usize) -> (String, Receiver) {
    receiver_with(Receiver {
        failures,
        ..Receiver::default()
    })
    .await
}

async fn receiver_with(state: Receiver) -> (String, Receiver) {
    let app = axum::Router::new()
        .route("/hook", axum::routing::post(receive))
        .with_state(state.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("address");
    tokio::spawn(async move { axum::serve(listener, app).await });
    (format!("http://{addr}/hook"), state)
}

async fn wait_for<T>(what: &str, within: Duration, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        if let Some(t) = f() {
            return t;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{what} within {within:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn a_webhook_that_fails_twice_gets_the_wake_once_it_recovers_and_stale_callbacks_are_fenced()
{
    let server = serve().await;
    let admin = token("acme", "*", Role::Admin);
    let (url, hook) = receiver(2).await;
    let (status, created) = server
        .send(
            "PUT",
            "__ds/subscriptions/replies",
            &admin,
            Some(json!({"type": "webhook", "pattern": "chat-*", "webhook": {"url": url}, "lease_ttl_ms": 60000})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    server
        .append(
            "chat-1",
            &admin,
            json!({"type": "user.message", "text": "hi"}),
        )
        .await;

    // Retried after about 1 s and 2 s: the third attempt is answered.
    let seen = wait_for("the third delivery", Duration::from_secs(10), || {
        let seen = hook.seen.lock().unwrap();
        (seen.len() >= 3).then(|| seen.clone())
    })
    .await;
    let (_, jwks) = server.send("GET", "__ds/jwks.json", &admin, None).await;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let bodies: Vec<Value> = seen
        .iter()
        .map(|(_, b)| serde_json::from_str(b).unwrap())
        .collect();
    let first = &bodies[0];
    for ((signature, raw), body) in seen.iter().zip(&bodies) {
        assert_eq!(body["wake_id"], first["wake_id"], "one wake, retried");
        assert_eq!(body["generation"], 1);
        assert!(
            agentwire_dispatch::signing::verify(signature, raw.as_bytes(), &jwks, now, 300),
            "signed with the published key: {signature}"
        );
        assert!(!agentwire_dispatch::signing::verify(
            signature, b"{}", &jwks, now, 300
        ));
    }
    // The server records the answer after the receiver has seen the request: poll for it.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        let (_, sub) = server
            .send("GET", "__ds/subscriptions/replies", &admin, None)
            .await;
        if sub["status"] == "active" {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the answered delivery ends the retries: {sub}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    let stream = &first["streams"][0];
    assert_eq!(stream["path"], "chat-1");
    assert_eq!(stream["has_pending"], true);
    let ack = json!({
        "wake_id": first["wake_id"],
        "generation": 1,
        "acks": [{"stream": "chat-1", "offset": stream["tail_offset"]}],
        "done": true,
    });
    let callback = first["callback_url"].as_str().unwrap();
    let callback = callback.split("/v1/stream/").nth(1).unwrap();
    let token = first["callback_token"].as_str().unwrap();

    // A token that is not this wake's changes nothing.
    let forged = format!("{}x", &token[..token.len() - 1]);
    let (status, body) = server
        .send("POST", callback, &forged, Some(ack.clone()))
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
    assert_eq!(body["error"]["code"], "TOKEN_INVALID");

    let (status, body) = server
        .send("POST", callback, token, Some(ack.clone()))
        .await;
    assert_eq!(
        (status, body.clone()),
        (StatusCode::OK, json!({"ok": true, "next_wake": false})),
        "{body}"
    );
    let (_, sub) = server
        .send("GET", "__ds/subscriptions/replies", &admin, None)
        .await;
    assert_eq!(sub["streams"][0]["acked_offset"], stream["tail_offset"]);

    // The same callback again is for a wake that ended.
    let (status, body) = server.send("POST", callback, token, Some(ack)).await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert_eq!(body["error"]["code"], "FENCED");

    // The next append is a new generation.
    server
        .append(
            "chat-1",
            &admin,
            json!({"type": "user.message", "text": "again"}),
        )
        .await;
    let next = wait_for("the next wake", Duration::from_secs(5), || {
        let seen = hook.seen.lock().unwrap();
        (seen.len() >= 4).then(|| serde_json::from_str::<Value>(&seen[3].1).unwrap())
    })
    .await;
    assert_eq!(next["generation"], 2);
    assert_ne!(next["wake_id"], first["wake_id"]);
}

#[tokio::test]
async fn a_pull_wake_lease_that_expires_is_claimed_again_and_the_old_holder_is_fenced() {
    let server = serve().await;
    let agent = token("acme", "*", Role::Writer);
    let (status, _) = server
        .send("PUT", "wake/pool", &agent, Some(json!([])))
        .await;
    assert_eq!(status, StatusCode::CREATED);
    let (status, body) = server
        .send(
            "PUT",
            "__ds/subscriptions/pool",
            &agent,
            Some(json!({"type": "pull-wake", "pattern": "chat-*", "wake_stream": "wake/pool", "lease_ttl_ms": 1000})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let (status, body) = server
        .send(
            "POST",
            "__ds/subscriptions/pool/claim",
            &agent,
            Some(json!({"worker": "w1"})),
        )
        .await;
    assert_eq!(
        (status, body["error"]["code"].clone()),
        (StatusCode::CONFLICT, json!("NO_PENDING_WORK"))
    );

    server
        .append(
            "chat-9",
            &agent,
            json!({"type": "user.message", "text": "hi"}),
        )
        .await;
    let (_, events) = server
        .send("GET", "wake/pool?offset=-1", &agent, None)
        .await;
    assert_eq!(events[0]["type"], "wake");
    assert_eq!(events[0]["subscription_id"], "pool");
    assert_eq!(events[0]["stream"], "chat-9");

    let (status, first) = server
        .send(
            "POST",
            "__ds/subscriptions/pool/claim",
            &agent,
            Some(json!({"worker": "w1"})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{first}");
    let (status, busy) = server
        .send(
            "POST",
            "__ds/subscriptions/pool/claim",
            &agent,
            Some(json!({"worker": "w2"})),
        )
        .await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert_eq!(busy["error"]["current_holder"], "w1");

    // w1 goes quiet: its lease expires, the work is woken again, and w2 claims it.
    let second = {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        loop {
            let (status, body) = server
                .send(
                    "POST",
                    "__ds/subscriptions/pool/claim",
                    &agent,
                    Some(json!({"worker": "w2"})),
                )
                .await;
            if status == StatusCode::OK {
                break body;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "no claim after the lease: {body}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    };
    assert!(
        second["generation"].as_u64() > first["generation"].as_u64(),
        "{second}"
    );
    let (_, events) = server
        .send("GET", "wake/pool?offset=-1", &agent, None)
        .await;
    assert!(
        events.as_array().unwrap().len() >= 2,
        "woken again: {events}"
    );

    let tail = second["streams"][0]["tail_offset"].clone();
    let ack = |claim: &Value, done: bool| {
        json!({
            "wake_id": claim["wake_id"],
            "generation": claim["generation"],
            "acks": [{"stream": "chat-9", "offset": tail}],
            "done": done,
        })
    };
    let stale_token = first["token"].as_str().unwrap();
    let (status, body) = server
        .send(
            "POST",
            "__ds/subscriptions/pool/ack",
            stale_token,
            Some(ack(&first, true)),
        )
        .await;
    assert_eq!(
        (status, body["error"]["code"].clone()),
        (StatusCode::CONFLICT, json!("FENCED"))
    );

    // A heartbeat keeps w2's lease past its TTL; then done.
    let live = second["token"].as_str().unwrap();
    for _ in 0..3 {
        tokio::time::sleep(Duration::from_millis(500)).await;
        let (status, body) = server
            .send(
                "POST",
                "__ds/subscriptions/pool/ack",
                live,
                Some(ack(&second, false)),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "heartbeat: {body}");
    }
    let (status, body) = server
        .send(
            "POST",
            "__ds/subscriptions/pool/ack",
            live,
            Some(ack(&second, true)),
        )
        .await;
    assert_eq!(
        (status, body),
        (StatusCode::OK, json!({"ok": true, "next_wake": false}))
    );
}

#[tokio::test]
async fn one_tenants_subscription_never_sees_another_tenants_streams() {
    let server = serve().await;
    let acme = token("acme", "*", Role::Admin);
    let globex = token("globex", "*", Role::Admin);
    let (url, hook) = receiver(0).await;
    server
        .append("chat-1", &globex, json!({"type": "user.message"}))
        .await;
    let (status, created) = server
        .send(
            "PUT",
            "__ds/subscriptions/all",
            &acme,
            Some(json!({"type": "webhook", "pattern": "**", "webhook": {"url": url}})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED);
    assert_eq!(
        created["streams"],
        json!([]),
        "another tenant's streams are not linked"
    );
    server
        .append("chat-2", &globex, json!({"type": "user.message"}))
        .await;
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert!(
        hook.seen.lock().unwrap().is_empty(),
        "no wake for another tenant's append"
    );
    let (status, _) = server
        .send("GET", "__ds/subscriptions/all", &globex, None)
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    // acme's own append wakes it; globex cannot use the wake's token.
    server
        .append("chat-3", &acme, json!({"type": "user.message"}))
        .await;
    let wake = wait_for("acme's wake", Duration::from_secs(5), || {
        hook.seen
            .lock()
            .unwrap()
            .first()
            .map(|(_, b)| serde_json::from_str::<Value>(b).unwrap())
    })
    .await;
    let links: Vec<&str> = wake["streams"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["path"].as_str().unwrap())
        .collect();
    assert_eq!(links, ["chat-3"]);
    let (status, _) = server
        .send(
            "PUT",
            "__ds/subscriptions/all",
            &globex,
            Some(json!({"type": "webhook", "pattern": "**", "webhook": {"url": url}})),
        )
        .await;
    assert_eq!(
        status,
        StatusCode::CREATED,
        "the same id in another tenant is another subscription"
    );
}

#[tokio::test]
async fn bad_requests_are_refused_by_name_and_change_nothing() {
    let server = serve().await;
    let admin = token("acme", "*", Role::Admin);
    let cases = [
        (
            json!({"type": "webhook", "pattern": "a//b", "webhook": {"url": "https://example.com/h"}}),
            400,
            "INVALID_REQUEST",
            "empty segment",
        ),
        (
            json!({"type": "webhook", "pattern": "a/*", "webhook": {"url": "https://example.com/h"}, "lease_ttl_ms": 10}),
            400,
            "INVALID_REQUEST",
            "lease_ttl_ms",
        ),
        (
            json!({"type": "carrier-pigeon", "pattern": "a/*"}),
            400,
            "INVALID_REQUEST",
            "webhook or pull-wake",
        ),
        (
            json!({"type": "webhook", "webhook": {"url": "https://example.com/h"}}),
            400,
            "INVALID_REQUEST",
            "pattern, streams",
        ),
        (
            json!({"type": "webhook", "pattern": "a/*", "webhook": {"url": "https://169.254.169.254/"}}),
            400,
            "WEBHOOK_URL_REJECTED",
            "link-local",
        ),
        (
            json!({"type": "pull-wake", "pattern": "wake/*", "wake_stream": "wake/pool"}),
            400,
            "INVALID_REQUEST",
            "wake stream",
        ),
        (
            json!({"type": "webhook", "streams": ["__ds/x"], "webhook": {"url": "https://example.com/h"}}),
            400,
            "INVALID_REQUEST",
            "reserved",
        ),
    ];
    for (body, status, code, words) in cases {
        let (got, answer) = server
            .send("PUT", "__ds/subscriptions/bad", &admin, Some(body.clone()))
            .await;
        assert_eq!(got.as_u16(), status, "{body} -> {answer}");
        assert_eq!(answer["error"]["code"], code, "{body} -> {answer}");
        assert!(
            answer["error"]["message"].as_str().unwrap().contains(words),
            "{answer}"
        );
    }
    let (status, _) = server
        .send("GET", "__ds/subscriptions/bad", &admin, None)
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND, "nothing was created");

    let good = json!({"type": "webhook", "pattern": "chat-*", "webhook": {"url": "https://example.com/h"}});
    let (status, _) = server
        .send("PUT", "__ds/subscriptions/s", &admin, Some(good.clone()))
        .await;
    assert_eq!(status, StatusCode::CREATED);
    let mut other = good.clone();
    other["pattern"] = json!("chats/*");
    let (status, body) = server
        .send("PUT", "__ds/subscriptions/s", &admin, Some(other))
        .await;
    assert_eq!(
        (status, body["error"]["code"].clone()),
        (StatusCode::CONFLICT, json!("SUBSCRIPTION_ALREADY_EXISTS"))
    );
    let (_, kept) = server
        .send("GET", "__ds/subscriptions/s", &admin, None)
        .await;
    assert_eq!(kept["pattern"], "chat-*");
    let (status, body) = server
        .send(
            "POST",
            "__ds/subscriptions/s/claim",
            &admin,
            Some(json!({"worker": "w"})),
        )
        .await;
    assert_eq!(
        (status, body["error"]["code"].clone()),
        (StatusCode::BAD_REQUEST, json!("INVALID_REQUEST"))
    );
    let (status, _) = server
        .send(
            "POST",
            "__ds/subscriptions/nope/claim",
            &admin,
            Some(json!({"worker": "w"})),
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    // Roles and scopes: a reader cannot subscribe; a token for chat-* cannot reach past it.
    let reader = token("acme", "*", Role::Reader);
    let (status, _) = server
        .send("PUT", "__ds/subscriptions/r", &reader, Some(good.clone()))
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let narrow = token("acme", "chat-*", Role::Writer);
    let mut wide = good.clone();
    wide["pattern"] = json!("**");
    let (status, _) = server
        .send("PUT", "__ds/subscriptions/w", &narrow, Some(wide))
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, _) = server
        .send("PUT", "__ds/subscriptions/n", &narrow, Some(good))
        .await;
    assert_eq!(status, StatusCode::CREATED, "within its scope");
    let (status, _) = server
        .send("GET", "__ds/subscriptions/s", "not a token", None)
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
}

fn body(seen: &Receiver, n: usize) -> Option<Value> {
    let seen = seen.seen.lock().unwrap();
    seen.get(n).map(|(_, b)| serde_json::from_str(b).unwrap())
}

#[tokio::test]
async fn a_done_answer_acks_the_snapshot_and_an_append_during_a_wake_is_woken_after_it() {
    let server = serve().await;
    let admin = token("acme", "*", Role::Admin);
    let (url, hook) = receiver_with(Receiver {
        done: true,
        ..Receiver::default()
    })
    .await;
    let spec = json!({"type": "webhook", "pattern": "chat-*", "webhook": {"url": url}});
    let (status, _) = server
        .send("PUT", "__ds/subscriptions/sync", &admin, Some(spec))
        .await;
    assert_eq!(status, StatusCode::CREATED);
    server.append("chat-1", &admin, json!({"n": 1})).await;
    let first = wait_for("the wake", Duration::from_secs(5), || body(&hook, 0)).await;
    let tail = first["streams"][0]["tail_offset"].clone();
    let mut ok = false;
    for _ in 0..50 {
        let (_, sub) = server
            .send("GET", "__ds/subscriptions/sync", &admin, None)
            .await;
        if sub["streams"][0]["acked_offset"] == tail {
            ok = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(ok, "the snapshot's tail is acked");

    // A handler that calls back: an append while its wake is in flight is not lost.
    let (url, slow) = receiver(0).await;
    let spec = json!({"type": "webhook", "pattern": "chat-*", "webhook": {"url": url}});
    server
        .send("PUT", "__ds/subscriptions/async", &admin, Some(spec))
        .await;
    server.append("chat-2", &admin, json!({"n": 1})).await;
    let wake = wait_for("the wake", Duration::from_secs(5), || body(&slow, 0)).await;
    server.append("chat-2", &admin, json!({"n": 2})).await;
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(
        slow.seen.lock().unwrap().len(),
        1,
        "one wake in flight at a time"
    );
    let snapshot = wake["streams"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["path"] == "chat-2")
        .unwrap()["tail_offset"]
        .clone();
    let callback = wake["callback_url"]
        .as_str()
        .unwrap()
        .split("/v1/stream/")
        .nth(1)
        .unwrap()
        .to_owned();
    let ack = json!({"wake_id": wake["wake_id"], "generation": wake["generation"], "acks": [{"stream": "chat-2", "offset": snapshot}], "done": true});
    let (status, answer) = server
        .send(
            "POST",
            &callback,
            wake["callback_token"].as_str().unwrap(),
            Some(ack),
        )
        .await;
    assert_eq!(
        (status, answer),
        (StatusCode::OK, json!({"ok": true, "next_wake": true}))
    );
    let next = wait_for("the next wake", Duration::from_secs(5), || body(&slow, 1)).await;
    assert_eq!(
        next["generation"].as_u64(),
        wake["generation"].as_u64().map(|g| g + 1)
    );
    let chat2 = next["streams"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["path"] == "chat-2")
        .unwrap()
        .clone();
    assert_eq!(chat2["acked_offset"], snapshot);
    assert_eq!(chat2["has_pending"], true);
}

#[tokio::test]
async fn a_released_claim_is_woken_again_and_narrow_tokens_cannot_touch_wider_subscriptions() {
    let server = serve().await;
    let admin = token("acme", "*", Role::Admin);
    server
        .send("PUT", "wake/pool", &admin, Some(json!([])))
        .await;
    let spec = json!({"type": "pull-wake", "pattern": "chat-*", "wake_stream": "wake/pool"});
    let (status, _) = server
        .send("PUT", "__ds/subscriptions/all", &admin, Some(spec))
        .await;
    assert_eq!(status, StatusCode::CREATED);
    server.append("chat-1", &admin, json!({"n": 1})).await;
    let (status, claim) = server
        .send(
            "POST",
            "__ds/subscriptions/all/claim",
            &admin,
            Some(json!({"worker": "w1"})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{claim}");
    let release = json!({"wake_id": claim["wake_id"], "generation": claim["generation"]});
    let (status, _) = server
        .send(
            "POST",
            "__ds/subscriptions/all/release",
            claim["token"].as_str().unwrap(),
            Some(release.clone()),
        )
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (_, events) = server
        .send("GET", "wake/pool?offset=-1", &admin, None)
        .await;
    let generations: Vec<u64> = events
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["generation"].as_u64().unwrap())
        .collect();
    assert_eq!(
        generations,
        [1, 2],
        "released with work pending: woken again"
    );
    let (status, body) = server
        .send(
            "POST",
            "__ds/subscriptions/all/release",
            claim["token"].as_str().unwrap(),
            Some(release),
        )
        .await;
    assert_eq!(
        (status, body["error"]["code"].clone()),
        (StatusCode::CONFLICT, json!("FENCED"))
    );

    // A token for chat-1* cannot read, claim or delete a subscription over all of chat-*.
    let narrow = token("acme", "chat-1*", Role::Writer);
    for (method, path, body) in [
        ("GET", "__ds/subscriptions/all", None),
        (
            "POST",
            "__ds/subscriptions/all/claim",
            Some(json!({"worker": "w9"})),
        ),
        ("DELETE", "__ds/subscriptions/all", None),
        ("DELETE", "__ds/subscriptions/all/streams/chat-1", None),
    ] {
        let (status, _) = server.send(method, path, &narrow, body).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{method} {path}");
    }
    let (status, _) = server
        .send("GET", "__ds/subscriptions/all", &admin, None)
        .await;
    assert_eq!(status, StatusCode::OK, "still there");

    // A token minted for one tenant does not verify for another, whatever its text says.
    let (tenant, rest) = claim["token"].as_str().unwrap().split_once('.').unwrap();
    assert!(!tenant.is_empty());
    let globex = format!("{}.{rest}", base64_url("globex"));
    let ack = json!({"wake_id": claim["wake_id"], "generation": claim["generation"], "done": true});
    let (status, body) = server
        .send("POST", "__ds/subscriptions/all/ack", &globex, Some(ack))
        .await;
    assert_eq!(
        (status, body["error"]["code"].clone()),
        (StatusCode::UNAUTHORIZED, json!("TOKEN_INVALID"))
    );

    // `__ds` names no stream.
    let (status, _) = server.send("PUT", "__ds", &admin, Some(json!([]))).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
}

fn base64_url(text: &str) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let bytes = text.as_bytes();
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |n, (i, b)| n | (u32::from(*b) << (16 - 8 * i)));
        for i in 0..=chunk.len() {
            out.push(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize] as char);
        }
    }
    out
}

/// `lease_scope: "stream"`: each matching session gets a subscription of its own on its
/// first append, so two workers hold two sessions' leases at once; deleting the pool
/// deletes them.
#[tokio::test]
async fn a_per_stream_pool_gives_each_session_its_own_lease() {
    let server = serve().await;
    let agent = token("acme", "*", Role::Writer);
    server
        .send("PUT", "wake/pool", &agent, Some(json!([])))
        .await;
    let (status, body) = server
        .send(
            "PUT",
            "__ds/subscriptions/pool",
            &agent,
            Some(json!({"type": "pull-wake", "pattern": "chat-*", "wake_stream": "wake/pool", "lease_scope": "stream"})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    for chat in ["chat-1", "chat-2"] {
        server
            .append(chat, &agent, json!({"type": "user.message", "text": "hi"}))
            .await;
    }
    let (_, wakes) = server
        .send("GET", "wake/pool?offset=-1", &agent, None)
        .await;
    let wakes = wakes.as_array().expect("wake events").clone();
    assert_eq!(wakes.len(), 2, "one wake per session: {wakes:?}");
    let mut children = Vec::new();
    for (wake, chat) in wakes.iter().zip(["chat-1", "chat-2"]) {
        assert_eq!(wake["stream"], chat);
        let child = wake["subscription_id"].as_str().unwrap().to_owned();
        assert!(child.starts_with("pool:"), "{child}");
        children.push(child);
    }
    assert_ne!(children[0], children[1]);
    // A pool's session names are the pool's: nobody else can take one first.
    let squat = format!("pool:{}", "0".repeat(16));
    let (status, body) = server
        .send(
            "PUT",
            &format!("__ds/subscriptions/{squat}"),
            &agent,
            Some(json!({"type": "pull-wake", "streams": ["chat-3"], "wake_stream": "wake/pool"})),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    // Two workers, two leases, at once.
    for (child, worker) in children.iter().zip(["w1", "w2"]) {
        let (status, claim) = server
            .send(
                "POST",
                &format!("__ds/subscriptions/{child}/claim"),
                &agent,
                Some(json!({"worker": worker})),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{claim}");
        assert_eq!(
            claim["streams"][0]["acked_offset"],
            Offset::ZERO.to_string(),
            "from the session's start"
        );
    }
    // The pool itself never wakes.
    let (status, _) = server
        .send(
            "POST",
            "__ds/subscriptions/pool/claim",
            &agent,
            Some(json!({"worker": "w3"})),
        )
        .await;
    assert_eq!(status, StatusCode::CONFLICT);
    let (status, _) = server
        .send("DELETE", "__ds/subscriptions/pool", &agent, None)
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    for child in &children {
        let (status, _) = server
            .send("GET", &format!("__ds/subscriptions/{child}"), &agent, None)
            .await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{child} went with its pool");
    }
}
