//! Targets over the real handlers: the WebSocket service (`Realtime::handle`) and the Durable
//! Streams router, each on a SQLite log in a temporary folder, with no sockets.

use std::sync::Arc;
use std::time::Duration;

use agentwire_auth::{Auth, Claims, Role, Signer};
use agentwire_realtime::frames::MAX_FRAME_BYTES;
use agentwire_realtime::{
    ClientPush, ConnectionRegistry, Fanout, InMemoryConnectionRegistry, PushError, Realtime,
};
use agentwire_session::{CreateStream, Expiry, Sessions};
use agentwire_sqlite::SqliteSessionLog;
use agentwire_streams_http::HttpConfig;
use async_trait::async_trait;
use aws_lambda_events::apigw::ApiGatewayWebsocketProxyRequest;
use bytes::Bytes;
use tower::ServiceExt;

use crate::harness::{self, INPUT_TIMEOUT, Runner};

const SECRET: &[u8] = b"fuzzing secret for the stack, 32+ bytes";
/// The connection the `ws_message` target's messages come from.
const CONNECTION: &str = "CtFqpcOFvHcCIhw=";
/// Inputs between fresh worlds, so logs stay small and every input costs about the same.
const INPUTS_PER_WORLD: usize = 500;
/// Seeds write `$TOKEN` where a valid token goes (a writer of `chat-*`/admin of `acme`).
const TOKEN_PLACEHOLDER: &str = "$TOKEN";

/// A push port that checks what clients would receive and keeps none of it.
struct CheckingPush;

#[async_trait]
impl ClientPush for CheckingPush {
    async fn post(&self, _connection_id: &str, frame: Bytes) -> Result<(), PushError> {
        assert!(
            frame.len() <= MAX_FRAME_BYTES,
            "a pushed frame of {} bytes",
            frame.len()
        );
        let parsed: Result<serde_json::Value, _> = serde_json::from_slice(&frame);
        assert!(parsed.is_ok(), "a pushed frame is not JSON");
        Ok(())
    }

    async fn close(&self, _connection_id: &str, code: u16, _reason: &str) -> Result<(), PushError> {
        // WebSocket close codes an application may send (RFC 6455 §7.4).
        assert!((1000..=4999).contains(&code), "close code {code}");
        Ok(())
    }
}

fn token(sessions: &str, role: Role) -> String {
    Signer::new(SECRET).mint(&Claims {
        tenant: "acme".into(),
        sessions: sessions.into(),
        role,
        user: Some("ana".into()),
        exp: i64::MAX,
    })
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime")
}

/// Runs `future` on `rt`, failing the input as a hang past the harness's time bound.
fn block_on<F: std::future::Future>(rt: &tokio::runtime::Runtime, future: F) -> F::Output {
    rt.block_on(async {
        match tokio::time::timeout(INPUT_TIMEOUT, future).await {
            Ok(output) => output,
            Err(_) => panic!("no answer within {INPUT_TIMEOUT:?}"),
        }
    })
}

async fn sessions(dir: &tempfile::TempDir, fanout: Option<Fanout>) -> Sessions {
    let log = SqliteSessionLog::open(dir.path().join("s.db")).expect("a SQLite log");
    let mut sessions = Sessions::new(Arc::new(log));
    if let Some(fanout) = fanout {
        sessions = sessions.with_observer(Arc::new(fanout));
    }
    for (name, content_type) in [
        ("acme/chat-1", "application/json"),
        ("acme/chat-2", "application/json"),
        ("acme/bytes-1", "text/plain"),
    ] {
        sessions
            .create(CreateStream {
                name: name.into(),
                content_type: Some(content_type.into()),
                expiry: Expiry::Never,
                closed: false,
                fork: None,
                body: Bytes::new(),
            })
            .await
            .expect("creating a seed session");
    }
    sessions
}

struct WsWorld {
    rt: tokio::runtime::Runtime,
    realtime: Realtime,
    registry: Arc<InMemoryConnectionRegistry>,
    connect: ApiGatewayWebsocketProxyRequest,
    message: ApiGatewayWebsocketProxyRequest,
    token: String,
    inputs: usize,
    _dir: tempfile::TempDir,
}

impl WsWorld {
    fn new() -> WsWorld {
        let rt = runtime();
        let dir = tempfile::tempdir().expect("a temporary folder");
        let registry = Arc::new(InMemoryConnectionRegistry::default());
        let push = Arc::new(CheckingPush);
        let fanout = Fanout::new(registry.clone(), push.clone());
        let sessions = rt.block_on(sessions(&dir, Some(fanout)));
        let auth = Auth::Tokens(Signer::new(SECRET));
        let realtime = Realtime::new(sessions, registry.clone(), push, auth);
        let token = token("chat-*", Role::Writer);
        let mut connect: ApiGatewayWebsocketProxyRequest = serde_json::from_str(
            &include_str!("../../events/apigw-ws-connect.json").replace("REPLACED-BY-TEST", &token),
        )
        .expect("the connect fixture parses");
        connect.request_context.connection_id = Some(CONNECTION.into());
        let mut message: ApiGatewayWebsocketProxyRequest =
            serde_json::from_str(include_str!("../../events/apigw-ws-message.json"))
                .expect("the message fixture parses");
        message.request_context.route_key = Some("$default".into());
        message.request_context.connection_id = Some(CONNECTION.into());
        WsWorld {
            rt,
            realtime,
            registry,
            connect,
            message,
            token,
            inputs: 0,
            _dir: dir,
        }
    }

    fn renew(&mut self) {
        self.inputs += 1;
        if self.inputs > INPUTS_PER_WORLD {
            *self = WsWorld::new();
            self.inputs = 1;
        }
    }
}

/// `ws_message`: the bytes are the body of a `$default` message event from a connected
/// writer of `chat-*` (frames over the WebSocket are text, so invalid UTF-8 is replaced).
pub fn ws_message() -> Runner {
    let mut world = WsWorld::new();
    Box::new(move |data| {
        world.renew();
        let w = &world;
        block_on(&w.rt, async {
            let connected = w.registry.get(CONNECTION).await.ok().flatten().is_some();
            if !connected {
                let answer = w.realtime.handle(w.connect.clone()).await;
                assert_eq!(answer.status_code, 200, "the fuzzer's own connect");
            }
            let mut event = w.message.clone();
            event.body = Some(String::from_utf8_lossy(data).into_owned());
            let answer = w.realtime.handle(event).await;
            assert_eq!(
                answer.status_code, 200,
                "messages are answered over the push port"
            );
        });
    })
}

/// `ws_event`: the bytes are an API Gateway WebSocket event as the websocket function
/// receives it (`$TOKEN` becomes a valid token); those that deserialize are handled.
pub fn ws_event() -> Runner {
    let mut world = WsWorld::new();
    Box::new(move |data| {
        world.renew();
        let text = String::from_utf8_lossy(data).replace(TOKEN_PLACEHOLDER, &world.token);
        let Ok(event) = serde_json::from_str::<ApiGatewayWebsocketProxyRequest>(&text) else {
            return;
        };
        let w = &world;
        let answer = block_on(&w.rt, w.realtime.handle(event));
        assert!(
            matches!(answer.status_code, 200 | 400 | 401 | 403),
            "status {}",
            answer.status_code
        );
    })
}

struct HttpWorld {
    rt: tokio::runtime::Runtime,
    router: axum::Router,
    token: String,
    inputs: usize,
    _dir: tempfile::TempDir,
}

impl HttpWorld {
    fn new() -> HttpWorld {
        let rt = runtime();
        let dir = tempfile::tempdir().expect("a temporary folder");
        let sessions = rt.block_on(sessions(&dir, None));
        // Short waits: a live read must end well inside the harness's time bound.
        let config = HttpConfig {
            max_body_bytes: 1 << 20,
            long_poll_timeout: Duration::from_millis(20),
            sse_max_duration: Duration::from_millis(50),
            ..HttpConfig::default()
        };
        let router =
            agentwire_streams_http::router(sessions, Auth::Tokens(Signer::new(SECRET)), config);
        HttpWorld {
            rt,
            router,
            token: token("*", Role::Admin),
            inputs: 0,
            _dir: dir,
        }
    }

    fn renew(&mut self) {
        self.inputs += 1;
        if self.inputs > INPUTS_PER_WORLD {
            *self = HttpWorld::new();
            self.inputs = 1;
        }
    }

    /// Sends `request` through the router and reads the whole answer.
    fn send(&self, request: http::Request<axum::body::Body>) {
        let router = self.router.clone();
        let status = block_on(&self.rt, async move {
            let response = router
                .oneshot(request)
                .await
                .expect("routers are infallible");
            let status = response.status();
            let verbose = std::env::var_os("AGENTWIRE_FUZZ_VERBOSE").is_some();
            let next = response.headers().get("stream-next-offset").cloned();
            let body = axum::body::to_bytes(response.into_body(), 64 << 20).await;
            assert!(body.is_ok(), "the response body could not be read");
            if verbose {
                // For replaying sequences by hand: the status and how the answer starts.
                let body = body.unwrap_or_default();
                let head = String::from_utf8_lossy(&body[..body.len().min(160)]).into_owned();
                eprintln!("{status} next={next:?} {head:?}");
            }
            status
        });
        // Bad input is the client's fault: a 4xx with a reason, never a server error.
        assert!(
            !status.is_server_error() || status == http::StatusCode::SERVICE_UNAVAILABLE,
            "status {status}"
        );
    }
}

/// Parses `METHOD URI\nname: value\n…\n\nbody` into a request; `None` when the http crate
/// itself refuses the method, URI or a header (those never reach our code). Without an
/// `authorization` line, the request carries an admin token.
fn http_request(data: &[u8], token: &str) -> Option<http::Request<axum::body::Body>> {
    let split = data
        .windows(2)
        .position(|w| w == b"\n\n")
        .map_or((data, &data[..0]), |i| (&data[..i], &data[i + 2..]));
    let (head, body) = split;
    let head = String::from_utf8_lossy(head).replace(TOKEN_PLACEHOLDER, token);
    let mut lines = head.split('\n');
    let (method, uri) = lines.next()?.split_once(' ')?;
    let mut builder = http::Request::builder().method(method).uri(uri);
    let mut authorized = false;
    for line in lines {
        let (name, value) = line.split_once(':')?;
        authorized |= name.trim().eq_ignore_ascii_case("authorization");
        builder = builder.header(name.trim(), value.trim_start());
    }
    if !authorized {
        builder = builder.header("authorization", format!("Bearer {token}"));
    }
    builder.body(axum::body::Body::from(body.to_vec())).ok()
}

/// `http_router`: the Durable Streams router end to end, on arbitrary method, path, query,
/// headers and body (see [`http_request`] for the input's shape).
pub fn http_router() -> Runner {
    let mut world = HttpWorld::new();
    Box::new(move |data| {
        world.renew();
        if let Some(request) = http_request(data, &world.token) {
            world.send(request);
        }
    })
}

/// `http_event`: the bytes are an API Gateway HTTP API event (payload 2.0, or REST 1.0) as
/// the streams function receives it (`$TOKEN` becomes a valid token); those that deserialize
/// become a request exactly as `lambda_http` builds it, which the router answers.
pub fn http_event() -> Runner {
    let mut world = HttpWorld::new();
    Box::new(move |data| {
        world.renew();
        let text = String::from_utf8_lossy(data).replace(TOKEN_PLACEHOLDER, &world.token);
        let Ok(event) = serde_json::from_str::<lambda_http::request::LambdaRequest>(&text) else {
            return;
        };
        // lambda_http 1.3 unwraps `Url::parse` of the Host header, X-Forwarded-Proto and
        // path: an invalid one panics there, before the function's code (reported upstream
        // finding; API Gateway itself sends valid ones).
        let Some(request) = harness::upstream(|| lambda_http::Request::from(event)) else {
            return;
        };
        let (parts, body) = request.into_parts();
        let request = http::Request::from_parts(parts, axum::body::Body::from(body.to_vec()));
        world.send(request);
    })
}
