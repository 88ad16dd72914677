//! `agentwire-cost`: what 1M streamed tokens cost on AWS.
//!
//! A canned agent streams tokens at a fixed rate through the agent SDK (default
//! coalescing) into the streams function's router; subscribers connect and subscribe through
//! the WebSocket function's handler; the archiver handles what the DynamoDB stream would
//! hand it. All of it runs on the AWS adapters against DynamoDB Local and a local S3
//! server, with every SDK request metered. The counts are scaled to 1M tokens and priced
//! with [`prices::US_EAST_1`]. `tests/bench/cost.sh` starts the engines and runs this.

mod meter;
mod prices;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use agentwire_archive::{Archiver, SessionChange};
use agentwire_auth::{Claims, Role, Signer};
use agentwire_aws_stack::{Clients, Settings, Stack};
use agentwire_realtime::Realtime;
use agentwire_sdk::Coalesce;
use agentwire_streams_http::HttpConfig;
use aws_lambda_events::apigw::ApiGatewayWebsocketProxyRequest;
use axum::extract::{Request, State};
use axum::middleware::{self, Next};
use axum::response::Response;
use clap::Parser;

use meter::{Counts, Meter};
use prices::{US_EAST_1, Usage};

#[derive(Debug, Parser)]
#[command(about = "Cost per 1M streamed tokens on AWS, from counted requests")]
#[command(args_override_self = true)]
struct Args {
    #[arg(long, env = "AGENTWIRE_DYNAMODB_ENDPOINT")]
    dynamodb_endpoint: String,
    #[arg(long, env = "AGENTWIRE_S3_ENDPOINT")]
    s3_endpoint: String,
    /// Tokens each run streams (the figures are scaled to 1M).
    #[arg(long, default_value_t = 1500)]
    tokens: u64,
    /// Token rates to run, tokens per second.
    #[arg(long, value_delimiter = ',', default_value = "50,150")]
    rates: Vec<u64>,
    /// Subscriber counts to run.
    #[arg(long, value_delimiter = ',', default_value = "1,5")]
    subscribers: Vec<usize>,
    /// Coalescing linger in milliseconds instead of the agent SDK's default.
    #[arg(long)]
    linger_ms: Option<u64>,
}

/// The functions' memory sizes in infra/template.yaml.
const HTTP_MB: f64 = 256.0;
const WEBSOCKET_MB: f64 = 256.0;
const ARCHIVER_MB: f64 = 512.0;
/// The stream trigger's `MaximumBatchingWindowInSeconds` in infra/template.yaml: while a
/// session is active, the archiver is invoked about once per window.
const BATCHING_WINDOW: Duration = Duration::from_secs(5);
const SECRET: &str = "agentwire-cost-benchmark-secret-0123456789";

/// One Lambda function's invocations and billed milliseconds (each rounded up to 1 ms).
#[derive(Default)]
struct Function {
    invocations: AtomicU64,
    billed_ms: AtomicU64,
}

impl Function {
    async fn invoke<T>(&self, work: impl Future<Output = T>) -> T {
        let began = Instant::now();
        let out = work.await;
        let ms = began.elapsed().as_micros().div_ceil(1000).max(1) as u64;
        self.invocations.fetch_add(1, Ordering::Relaxed);
        self.billed_ms.fetch_add(ms, Ordering::Relaxed);
        out
    }

    fn take(&self) -> (u64, f64) {
        let invocations = self.invocations.swap(0, Ordering::Relaxed);
        let ms = self.billed_ms.swap(0, Ordering::Relaxed);
        (invocations, ms as f64 / 1000.0)
    }
}

/// Every HTTP request is one HTTP API request and one invocation of the streams function.
async fn http_function(State(f): State<Arc<Function>>, request: Request, next: Next) -> Response {
    f.invoke(next.run(request)).await
}

struct World {
    url: String,
    token: String,
    realtime: Realtime,
    archiver: Archiver,
    meter: Meter,
    http: Arc<Function>,
    websocket: Function,
    archive: Function,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let world = world(&args).await?;
    let coalesce = match args.linger_ms {
        Some(ms) => Coalesce {
            linger: Duration::from_millis(ms),
            ..Coalesce::default()
        },
        None => Coalesce::default(),
    };
    let which = if args.linger_ms.is_some() {
        "custom"
    } else {
        "the agent SDK's default"
    };
    println!(
        "Cost per 1M streamed tokens on AWS (us-east-1 list prices): one session of {} tokens \
         per run, scaled; {which} coalescing ({} ms linger)",
        args.tokens,
        coalesce.linger.as_millis()
    );
    let mut rows = Vec::new();
    for &rate in &args.rates {
        for &subscribers in &args.subscribers {
            eprintln!(
                "streaming {} tokens at {rate}/s to {subscribers} subscriber(s)",
                args.tokens
            );
            let (usage, counts) =
                scenario(&world, args.tokens, rate, subscribers, coalesce).await?;
            eprintln!("  requests: {:?}", counts.requests);
            let per_million = usage.scaled(1e6 / args.tokens as f64);
            rows.push((rate, subscribers, per_million));
        }
    }
    print_table(&rows);
    Ok(())
}

async fn world(args: &Args) -> anyhow::Result<World> {
    let meter = Meter::default();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("http://{}", listener.local_addr()?);
    let run = std::process::id();
    let vars = [
        ("AGENTWIRE_SESSIONS_TABLE", format!("cost-sessions-{run}")),
        (
            "AGENTWIRE_CONNECTIONS_TABLE",
            format!("cost-connections-{run}"),
        ),
        ("AGENTWIRE_BUCKET", "agentwire-cost".to_owned()),
        // Pushes go to the stub management API below, which accepts every message.
        ("AGENTWIRE_WS_ENDPOINT", url.clone()),
        ("AGENTWIRE_SECRET", SECRET.to_owned()),
        (
            "AGENTWIRE_DYNAMODB_ENDPOINT",
            args.dynamodb_endpoint.clone(),
        ),
        ("AGENTWIRE_S3_ENDPOINT", args.s3_endpoint.clone()),
    ];
    let settings = Settings::from_lookup(agentwire_aws_stack::Needs::API, |name| {
        vars.iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| v.clone())
    })?;
    // The same client each adapter would get, plus the meter (one macro: each SDK crate
    // has its own `Client` and `Config` types).
    macro_rules! metered {
        ($sdk:ident, $client:expr) => {
            $sdk::Client::from_conf(
                $client
                    .config()
                    .to_builder()
                    .interceptor(meter.clone())
                    .build(),
            )
        };
    }
    let clients = Clients {
        dynamodb: metered!(
            aws_sdk_dynamodb,
            agentwire_dynamo::local_client(&args.dynamodb_endpoint)
        ),
        s3: metered!(aws_sdk_s3, agentwire_s3::local_client(&args.s3_endpoint)),
        management: Some(metered!(
            aws_sdk_apigatewaymanagement,
            agentwire_apigw_push::local_client(&url)
        )),
    };
    let stack = Stack::from_clients(&settings, clients, agentwire_aws_stack::local_sdk_config());
    stack
        .ensure_local_resources()
        .await
        .map_err(|e| anyhow::anyhow!("cannot create the tables and bucket: {e}"))?;
    let auth = stack.auth().await?;
    let http = Arc::new(Function::default());
    let config = HttpConfig {
        sse: false,
        ..HttpConfig::default()
    };
    let app = agentwire_streams_http::router(stack.sessions()?, auth.clone(), config)
        .layer(middleware::from_fn_with_state(http.clone(), http_function))
        .route(
            "/@connections/{id}",
            axum::routing::post(|| async { axum::http::StatusCode::OK }),
        );
    tokio::spawn(async move { axum::serve(listener, app).await });
    let token = Signer::new(SECRET.as_bytes().to_vec()).mint(&Claims {
        tenant: "cost".into(),
        sessions: "*".into(),
        role: Role::Admin,
        user: Some("agent".into()),
        exp: now_ms() / 1000 + 3600,
    });
    meter.take();
    Ok(World {
        url,
        token,
        realtime: stack.realtime(auth, None)?,
        archiver: stack.archiver(),
        meter,
        http,
        websocket: Function::default(),
        archive: Function::default(),
    })
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_millis() as i64
}

fn ws_event(fixture: &str, connection: &str) -> ApiGatewayWebsocketProxyRequest {
    let mut event: ApiGatewayWebsocketProxyRequest =
        serde_json::from_str(fixture).expect("fixture is an API Gateway event");
    event.request_context.connection_id = Some(connection.to_owned());
    event
}

const CONNECT: &str = include_str!("../../../events/apigw-ws-connect.json");
const MESSAGE: &str = include_str!("../../../events/apigw-ws-message.json");
const DISCONNECT: &str = include_str!("../../../events/apigw-ws-disconnect.json");

/// One agent reply of `tokens` tokens at `rate` per second into a fresh session, watched
/// by `subscribers` WebSocket clients; then the session is closed and archived.
async fn scenario(
    w: &World,
    tokens: u64,
    rate: u64,
    subscribers: usize,
    coalesce: Coalesce,
) -> anyhow::Result<(Usage, Counts)> {
    let name = format!(
        "cost-{}-{rate}-{subscribers}-{}",
        std::process::id(),
        coalesce.linger.as_millis()
    );
    let stored = format!("cost/{name}");
    let client = agentwire_sdk::Client::new(&w.url, Some(w.token.clone()));
    let session = client.open(&name).await?;

    let connections: Vec<String> = (0..subscribers).map(|i| format!("{name}-c{i}")).collect();
    for id in &connections {
        let mut connect = ws_event(CONNECT, id);
        connect.query_string_parameters = format!("token={}", w.token).parse()?;
        let reply = w.websocket.invoke(w.realtime.handle(connect)).await;
        anyhow::ensure!(
            reply.status_code == 200,
            "$connect refused: {:?}",
            reply.body
        );
        let mut subscribe = ws_event(MESSAGE, id);
        subscribe.body =
            Some(serde_json::json!({"action": "subscribe", "session": name}).to_string());
        w.websocket.invoke(w.realtime.handle(subscribe)).await;
    }

    let began = Instant::now();
    let reply = session.reply("m1", None, coalesce);
    let mut tick = tokio::time::interval(Duration::from_secs_f64(1.0 / rate as f64));
    let mut window = began + BATCHING_WINDOW;
    for _ in 0..tokens {
        tick.tick().await;
        reply.delta(" tok");
        if Instant::now() >= window {
            let active = SessionChange::Active {
                session: stored.clone(),
                at_ms: now_ms(),
            };
            w.archive
                .invoke(w.archiver.on_changes(vec![active]))
                .await?;
            window += BATCHING_WINDOW;
        }
    }
    reply.end(&session).await?;
    let streamed = began.elapsed();

    // The app closes the session; the stream's close record gets it archived.
    let closed = reqwest::Client::new()
        .post(format!("{}/v1/stream/{name}", w.url))
        .bearer_auth(&w.token)
        .header("Stream-Closed", "true")
        .send()
        .await?;
    anyhow::ensure!(closed.status().is_success(), "close: {}", closed.status());
    let report = w
        .archive
        .invoke(
            w.archiver
                .on_changes(vec![SessionChange::Closed { session: stored }]),
        )
        .await?;
    anyhow::ensure!(!report.archived.is_empty(), "the session was not archived");
    for id in &connections {
        w.websocket
            .invoke(w.realtime.handle(ws_event(DISCONNECT, id)))
            .await;
    }

    let counts = w.meter.take();
    let (http, http_s) = w.http.take();
    let (websocket, websocket_s) = w.websocket.take();
    let (archiver, archiver_s) = w.archive.take();
    let requests = |suffix: &str| -> u64 {
        counts
            .requests
            .iter()
            .filter(|(name, _)| name.ends_with(suffix))
            .map(|(_, n)| n)
            .sum()
    };
    // Messages in: one subscribe per client. Out: every push (replies and events).
    let usage = Usage {
        lambda_requests: http + websocket + archiver,
        lambda_gb_seconds: (http_s * HTTP_MB
            + websocket_s * WEBSOCKET_MB
            + archiver_s * ARCHIVER_MB)
            / 1024.0,
        http_api_requests: http,
        websocket_messages: subscribers as u64 + counts.push_units,
        websocket_connection_minutes: subscribers as f64 * streamed.as_secs_f64() / 60.0,
        dynamodb_write_units: counts.write_units,
        dynamodb_read_units: counts.read_units,
        s3_puts: requests(".PutObject"),
        s3_gets: requests(".GetObject"),
    };
    Ok((usage, counts))
}

/// How one usage row is shown.
type Figure = fn(&Usage) -> String;

fn print_table(rows: &[(u64, usize, Usage)]) {
    let mut header = vec!["per 1M tokens".to_owned()];
    header.extend(
        rows.iter()
            .map(|(rate, subs, _)| format!("{rate} tok/s, {subs} sub")),
    );
    println!("| {} |", header.join(" | "));
    println!("|{}", "---|".repeat(header.len()));
    let usage_rows: [(&str, Figure); 10] = [
        ("Lambda invocations", |u| u.lambda_requests.to_string()),
        ("Lambda GB-s", |u| format!("{:.1}", u.lambda_gb_seconds)),
        ("HTTP API requests", |u| u.http_api_requests.to_string()),
        ("WebSocket messages (32 KB units)", |u| {
            u.websocket_messages.to_string()
        }),
        ("WebSocket connection minutes", |u| {
            format!("{:.0}", u.websocket_connection_minutes)
        }),
        ("DynamoDB write units", |u| {
            format!("{:.0}", u.dynamodb_write_units)
        }),
        ("DynamoDB read units", |u| {
            format!("{:.0}", u.dynamodb_read_units)
        }),
        ("S3 PUT / GET", |u| format!("{} / {}", u.s3_puts, u.s3_gets)),
        // Nearly every request is an append (plus one create and one close per session).
        ("DynamoDB write units per HTTP request", |u| {
            format!(
                "{:.2}",
                u.dynamodb_write_units / u.http_api_requests.max(1) as f64
            )
        }),
        ("DynamoDB read units per HTTP request", |u| {
            format!(
                "{:.2}",
                u.dynamodb_read_units / u.http_api_requests.max(1) as f64
            )
        }),
    ];
    for (label, value) in usage_rows {
        let mut cells = vec![label.to_owned()];
        cells.extend(rows.iter().map(|(_, _, u)| value(u)));
        println!("| {} |", cells.join(" | "));
    }
    let costs: Vec<Vec<(&str, f64)>> = rows.iter().map(|(_, _, u)| u.cost(&US_EAST_1)).collect();
    for line in 0..costs[0].len() {
        let mut cells = vec![format!("$ {}", costs[0][line].0)];
        cells.extend(costs.iter().map(|c| format!("{:.4}", c[line].1)));
        println!("| {} |", cells.join(" | "));
    }
    // Agents append through the HTTP API, or through the streams function's URL, which has
    // no per-request charge of its own (the invocation is billed either way).
    for (label, via_url) in [
        ("**$ total, agents via the HTTP API**", false),
        ("**$ total, agents via the function URL**", true),
    ] {
        let mut total = vec![label.to_owned()];
        total.extend(costs.iter().map(|c| {
            let sum: f64 = c
                .iter()
                .filter(|(name, _)| !(via_url && *name == "HTTP API requests"))
                .map(|(_, v)| v)
                .sum();
            format!("**{sum:.3}**")
        }));
        println!("| {} |", total.join(" | "));
    }
}
