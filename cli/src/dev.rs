//! `agentwire dev`: arguments → [`LocalStack`] → serve. The Durable Streams API, the
//! WebSocket gateway and the jobs on their schedules, on one port.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use agentwire_auth::{Auth, Role, Signer};
use agentwire_local_stack::{LocalSettings, LocalStack, ServeLimits};
use agentwire_session::SessionLog;
use agentwire_streams_http::HttpConfig;
use agentwire_trace::ActivityIndex;

use crate::demo_agent::DemoAgentArgs;
use crate::job::JobSettings;
use anyhow::Context;
use clap::{Args, ValueEnum};
use tokio::net::TcpListener;
use tracing::{info, warn};

#[derive(Debug, Args)]
pub struct DevArgs {
    /// Address to listen on (port 0 picks a free port).
    #[arg(long, env = "AGENTWIRE_LISTEN", default_value = "127.0.0.1:8787")]
    listen: SocketAddr,

    /// Directory holding the session database.
    #[arg(long, env = "AGENTWIRE_DATA_DIR", default_value = ".agentwire")]
    data_dir: PathBuf,

    /// Largest request body accepted, in bytes.
    #[arg(long, env = "AGENTWIRE_MAX_BODY_BYTES", default_value_t = 8 * 1024 * 1024)]
    max_body_bytes: usize,

    /// How long a long-poll read waits for new data, in milliseconds.
    #[arg(long, env = "AGENTWIRE_LONG_POLL_TIMEOUT_MS", default_value_t = 20_000)]
    long_poll_timeout_ms: u64,

    /// How long an SSE response stays open before clients must reconnect, in seconds.
    #[arg(long, env = "AGENTWIRE_SSE_MAX_SECONDS", default_value_t = 60)]
    sse_max_seconds: u64,

    /// Tenant of the token printed at start-up (and of every request with --insecure):
    /// 1 to 64 characters of A-Z a-z 0-9 . _ -
    #[arg(long, env = "AGENTWIRE_TENANT", default_value = "local", value_parser = crate::token::tenant)]
    tenant: String,

    /// Turn authentication off: every request acts as an admin of the tenant. Local only.
    #[arg(long, env = "AGENTWIRE_INSECURE")]
    insecure: bool,

    /// Directory of the demo page served at `/` (built by `npm run build --prefix clients`).
    #[arg(long, env = "AGENTWIRE_WEB_DIR", default_value = "clients/demo/dist")]
    web_dir: PathBuf,

    /// Directory of the grading page served at `/grade/` (built by `npm run build --prefix
    /// clients`); graders open it with their token as `#token=…`.
    #[arg(
        long,
        env = "AGENTWIRE_GRADING_DIR",
        default_value = "clients/grading/dist"
    )]
    grading_dir: PathBuf,

    /// Session the built-in demo agent answers in (the demo page's default).
    #[arg(long, env = "AGENTWIRE_DEMO_SESSION", default_value = "demo")]
    demo_session: String,

    /// Do not run the built-in demo agent.
    #[arg(long)]
    no_demo_agent: bool,

    /// Where sessions are stored: `sqlite` (embedded, in --data-dir); `dynamodb` (the log
    /// only); or `aws`: every AWS adapter the Lambda functions use (DynamoDB log and
    /// connection registry, S3 blobs, pushes through the management API served here).
    #[arg(long, env = "AGENTWIRE_BACKEND", value_enum, default_value_t = Backend::Sqlite)]
    backend: Backend,

    /// DynamoDB endpoint for `--backend dynamodb` (e.g. DynamoDB Local at http://127.0.0.1:8000).
    #[arg(long, env = "AGENTWIRE_DYNAMODB_ENDPOINT")]
    dynamodb_endpoint: Option<String>,

    /// S3-compatible endpoint for `--backend aws` (e.g. a local S3 server).
    #[arg(long, env = "AGENTWIRE_S3_ENDPOINT")]
    s3_endpoint: Option<String>,

    /// Bucket for `--backend aws` (created if missing).
    #[arg(long, env = "AGENTWIRE_BUCKET", default_value = "agentwire-local")]
    bucket: String,

    /// DynamoDB table for `--backend dynamodb|aws` (created if missing; `aws` adds
    /// `<table>-connections`).
    #[arg(
        long,
        env = "AGENTWIRE_DYNAMODB_TABLE",
        default_value = "agentwire-sessions"
    )]
    dynamodb_table: String,

    /// Also serve API Gateway's management API (`/@connections/{id}`) for the WebSocket
    /// connections, as the AWS SDK calls it. It trusts every caller: local testing only.
    #[arg(long, env = "AGENTWIRE_MANAGEMENT_API")]
    management_api: bool,

    /// Log format.
    #[arg(long, env = "AGENTWIRE_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,

    /// A client must send a request's whole head within this long of connecting (or of
    /// the previous response), in milliseconds; otherwise its connection is closed.
    #[arg(long, env = "AGENTWIRE_HEADER_TIMEOUT_MS", default_value_t = 10_000, value_parser = clap::value_parser!(u64).range(1..))]
    header_timeout_ms: u64,

    /// A connection with no request in progress for this long is closed, in milliseconds
    /// (long-polls, SSE and WebSockets are in progress, so never cut).
    #[arg(long, env = "AGENTWIRE_IDLE_TIMEOUT_MS", default_value_t = 5_000, value_parser = clap::value_parser!(u64).range(1..))]
    idle_timeout_ms: u64,

    /// Connections open at once, WebSockets included; at the limit new ones wait to be
    /// accepted until one closes. Default: 1024, or the open-file limit less 128 if lower.
    #[arg(long, env = "AGENTWIRE_MAX_CONNECTIONS", value_parser = clap::value_parser!(u64).range(1..))]
    max_connections: Option<u64>,

    /// Data returned by one read at most, in bytes; larger sessions are read in pages
    /// (each answers the Stream-Next-Offset to read on from).
    #[arg(long, env = "AGENTWIRE_READ_CHUNK_BYTES", default_value_t = 1024 * 1024, value_parser = clap::value_parser!(u64).range(1..))]
    read_chunk_bytes: u64,

    /// Catch-up reads served at once; more wait up to --read-queue-ms, then get 503 with
    /// Retry-After: 1.
    #[arg(long, env = "AGENTWIRE_MAX_CONCURRENT_READS", default_value_t = 64, value_parser = clap::value_parser!(u64).range(1..))]
    max_concurrent_reads: u64,

    /// How long a catch-up read waits for a slot when --max-concurrent-reads are running,
    /// in milliseconds.
    #[arg(long, env = "AGENTWIRE_READ_QUEUE_MS", default_value_t = 5_000)]
    read_queue_ms: u64,

    /// Longest pause between two parts of a request body, in milliseconds; a stalled
    /// upload gets 408.
    #[arg(long, env = "AGENTWIRE_BODY_TIMEOUT_MS", default_value_t = 10_000, value_parser = clap::value_parser!(u64).range(1..))]
    body_timeout_ms: u64,

    /// SQLite reader connections open at most (reads beyond them wait for one).
    #[arg(long, env = "AGENTWIRE_SQLITE_READERS", default_value_t = 8, value_parser = clap::value_parser!(u64).range(1..))]
    sqlite_readers: u64,

    /// SQLite reader connections unused for this long are closed, in seconds.
    #[arg(
        long,
        env = "AGENTWIRE_SQLITE_READER_IDLE_SECONDS",
        default_value_t = 30
    )]
    sqlite_reader_idle_seconds: u64,

    #[command(flatten)]
    jobs: JobSettings,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Backend {
    Sqlite,
    Dynamodb,
    Aws,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

/// In-flight requests get this long to finish after Ctrl-C; live reads are then cut.
const DRAIN: Duration = Duration::from_secs(5);
/// Then the archiver gets this long to write the traces of sessions that just closed.
const FLUSH: Duration = Duration::from_secs(10);

pub async fn run(args: DevArgs) -> anyhow::Result<()> {
    init_logging(args.log_format);
    let listener = TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("cannot listen on {}", args.listen))?;
    let addr = listener.local_addr()?;
    // With tokens on, the secret also signs the admin token and the demo link printed below.
    let secret = if args.insecure {
        warn!(
            "AUTHENTICATION IS OFF (--insecure): anyone who can reach {} can read and write every session",
            args.listen
        );
        None
    } else {
        std::fs::create_dir_all(&args.data_dir)
            .with_context(|| format!("cannot create data directory {}", args.data_dir.display()))?;
        Some(crate::secret::load_or_create(&args.data_dir)?)
    };
    let auth = match &secret {
        None => Auth::insecure(args.tenant.clone())?,
        Some(secret) => Auth::Tokens(Signer::new(secret.clone())),
    };
    let mut settings = args.jobs.local(&args.data_dir);
    settings.read_pool = agentwire_sqlite::ReadPool {
        max_connections: args.sqlite_readers as usize,
        idle_timeout: Duration::from_secs(args.sqlite_reader_idle_seconds),
    };
    let stack = stack(&args, &settings, addr).await?;
    let config = HttpConfig {
        max_body_bytes: args.max_body_bytes,
        long_poll_timeout: Duration::from_millis(args.long_poll_timeout_ms),
        sse_max_duration: Duration::from_secs(args.sse_max_seconds),
        read_chunk_bytes: args.read_chunk_bytes as usize,
        max_concurrent_reads: args.max_concurrent_reads as usize,
        read_queue_timeout: Duration::from_millis(args.read_queue_ms),
        body_timeout: Duration::from_millis(args.body_timeout_ms),
        ..HttpConfig::default()
    };
    let mut app = stack.app(auth, config);
    if args.management_api || args.backend == Backend::Aws {
        warn!(
            "serving API Gateway's management API at /@connections: anyone who can reach it can push to any client"
        );
        app = app.merge(agentwire_local_gateway::management_router(
            stack.sockets.clone(),
        ));
    }
    let app = app
        .merge(grading_page(&args.grading_dir))
        .fallback_service(web_page(&args.web_dir));

    // Stdout carries this one line first so scripts and tests can find the port.
    crate::say(format_args!("agentwire dev listening on http://{addr}"));
    info!(websocket = %format!("ws://{addr}/ws"), "WebSocket gateway ready");
    let admin_token = secret
        .as_ref()
        .map(|secret| {
            crate::token::mint(
                secret,
                &args.tenant,
                "*",
                Role::Admin,
                Some("dev".into()),
                24 * 3600,
            )
        })
        .transpose()?;
    if let Some(token) = &admin_token {
        crate::say(format_args!(
            "admin token for tenant {:?}, valid 24 h (mint others with `agentwire token`):",
            args.tenant
        ));
        crate::say(format_args!("{token}"));
    }
    crate::say(format_args!(
        "demo chat: {}",
        demo_link(&args, addr, secret.as_deref())?
    ));
    let demo_agent = (!args.no_demo_agent).then(|| {
        let agent = DemoAgentArgs::for_dev(
            &args.demo_session,
            format!("http://{addr}"),
            admin_token.clone(),
        );
        tokio::spawn(async move {
            if let Err(e) = crate::demo_agent::run(agent).await {
                warn!(error = %e, "the demo agent stopped");
            }
        })
    });
    let jobs = stack.start_jobs();
    for job in &stack.jobs {
        info!(job = job.name(), schedule = %job.schedule().expression(), "job scheduled");
    }
    info!(%addr, backend = ?args.backend, traces = %settings.data_dir.join("traces").display(), "agentwire dev started");

    let limits = ServeLimits {
        header_timeout: Duration::from_millis(args.header_timeout_ms),
        idle_timeout: Duration::from_millis(args.idle_timeout_ms),
        max_connections: args
            .max_connections
            .map_or_else(agentwire_local_stack::default_max_connections, |n| {
                n as usize
            }),
    };
    info!(
        header_timeout_ms = args.header_timeout_ms,
        idle_timeout_ms = args.idle_timeout_ms,
        max_connections = limits.max_connections,
        "connection limits"
    );
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let server = agentwire_local_stack::serve(listener, app, limits, {
        let mut stop_rx = stop_rx.clone();
        async move {
            let _ = stop_rx.wait_for(|stop| *stop).await;
        }
    });
    let server = tokio::spawn(async move {
        server.await;
        anyhow::Ok(())
    });
    shutdown_signal().await;
    info!("shutting down: finishing in-flight requests");
    let _ = stop_tx.send(true);
    stack.stop_live_reads();
    match tokio::time::timeout(DRAIN, server).await {
        Ok(joined) => joined??,
        Err(_) => warn!("live reads still open after {DRAIN:?}; closing them"),
    }
    jobs.stop();
    // After the last append: what closed just now is archived before the process ends.
    if tokio::time::timeout(FLUSH, stack.close()).await.is_err() {
        warn!(
            "the archiver was still busy after {FLUSH:?}; the idle sweep catches up after a restart"
        );
    }
    if let Some(agent) = demo_agent {
        agent.abort();
    }
    // Dropping the last handle lets the SQLite writer commit what is queued and stop.
    drop(stack);
    info!("stopped");
    Ok(())
}

fn demo_link(
    args: &DevArgs,
    addr: SocketAddr,
    secret: Option<&[u8]>,
) -> Result<String, agentwire_auth::InvalidTenant> {
    match secret {
        Some(secret) => {
            let sessions = format!("{}*", args.demo_session);
            let token = crate::token::mint(
                secret,
                &args.tenant,
                &sessions,
                Role::Controller,
                Some("you".into()),
                24 * 3600,
            )?;
            Ok(format!(
                "http://{addr}/?session={}&token={token}",
                args.demo_session
            ))
        }
        None => Ok(format!("http://{addr}/?session={}", args.demo_session)),
    }
}

/// The stack `--backend` names.
async fn stack(
    args: &DevArgs,
    settings: &LocalSettings,
    addr: SocketAddr,
) -> anyhow::Result<LocalStack> {
    match args.backend {
        Backend::Sqlite => Ok(LocalStack::open(settings)?),
        Backend::Dynamodb => {
            let (log, activity) = dynamodb(args).await?;
            Ok(LocalStack::open_on_log(settings, log, activity)?)
        }
        Backend::Aws => aws(args, settings, addr).await,
    }
}

/// The Lambda functions' wiring (`agentwire_aws_stack::Stack`) against local endpoints,
/// with the local gateway's sockets reached through the management API served here.
#[cfg(feature = "aws")]
async fn aws(
    args: &DevArgs,
    local: &LocalSettings,
    addr: SocketAddr,
) -> anyhow::Result<LocalStack> {
    let (Some(dynamodb), Some(s3)) = (&args.dynamodb_endpoint, &args.s3_endpoint) else {
        anyhow::bail!(
            "--backend aws needs --dynamodb-endpoint (DynamoDB Local) and --s3-endpoint (a local S3 server)"
        );
    };
    let settings = agentwire_aws_stack::Settings {
        sessions_table: args.dynamodb_table.clone(),
        bucket: args.bucket.clone(),
        delivery: Some(agentwire_aws_stack::DeliverySettings {
            connections_table: format!("{}-connections", args.dynamodb_table),
            ws_endpoint: format!("http://{addr}"),
        }),
        // The handlers get this process's `Auth` (tokens or --insecure), not the stack's.
        secret: None,
        long_poll_timeout: Duration::from_millis(args.long_poll_timeout_ms),
        idle: local.idle,
        dynamodb_endpoint: Some(dynamodb.clone()),
        s3_endpoint: Some(s3.clone()),
    };
    let stack = agentwire_aws_stack::Stack::connect(&settings).await?;
    let delivery = stack.delivery()?;
    stack
        .ensure_local_resources()
        .await
        .map_err(|e| anyhow::anyhow!("cannot reach DynamoDB at {dynamodb} or S3 at {s3}: {e}"))?;
    info!(dynamodb, s3, table = %args.dynamodb_table, bucket = %args.bucket, "sessions on the AWS adapters");
    let parts = agentwire_local_stack::Parts {
        log: stack.log.clone(),
        registry: delivery.registry.clone(),
        client_push: delivery.push.clone(),
        inline_fanout: true,
        poll: Some(agentwire_aws_stack::POLL_INTERVAL),
        archive: Arc::new(stack.bucket.clone()),
        activity: stack.activity.clone(),
        scores: stack.scores.clone(),
        // Grades on the session table, as the HTTP function keeps them.
        grading: stack.grading.clone(),
        budget: stack.budget.clone(),
        endpoints: stack.judge_endpoints(),
        sqlite: None,
        // Subscriptions on the session table, sent from this process (the streams and
        // dispatch functions split that work on Lambda).
        dispatch: Some(agentwire_local_stack::local_dispatch(
            stack.subscriptions.clone(),
            stack.subscriptions.clone(),
            &local.data_dir,
        )?),
    };
    Ok(LocalStack::assemble(
        parts,
        Arc::new(agentwire_local_gateway::LocalPush::default()),
        local,
        Arc::new(agentwire_session::SystemClock),
    ))
}

#[cfg(not(feature = "aws"))]
async fn aws(_: &DevArgs, _: &LocalSettings, _: SocketAddr) -> anyhow::Result<LocalStack> {
    anyhow::bail!(
        "this agentwire was built without the AWS adapters: cargo build -p agentwire --features aws"
    )
}

/// The DynamoDB session log and the archiver's index beside it, for `--backend dynamodb`.
#[cfg(feature = "aws")]
async fn dynamodb(args: &DevArgs) -> anyhow::Result<(Arc<dyn SessionLog>, Arc<dyn ActivityIndex>)> {
    let endpoint = args
        .dynamodb_endpoint
        .as_deref()
        .context("--backend dynamodb needs --dynamodb-endpoint (for example DynamoDB Local)")?;
    let client = agentwire_dynamo::local_client(endpoint);
    let log = agentwire_dynamo::DynamoSessionLog::new(client.clone(), &args.dynamodb_table);
    log.ensure_table()
        .await
        .with_context(|| format!("cannot reach DynamoDB at {endpoint}"))?;
    info!(endpoint, table = %args.dynamodb_table, "sessions on DynamoDB");
    let activity = agentwire_dynamo::DynamoActivityIndex::new(client, &args.dynamodb_table);
    Ok((Arc::new(log), Arc::new(activity)))
}

#[cfg(not(feature = "aws"))]
async fn dynamodb(_: &DevArgs) -> anyhow::Result<(Arc<dyn SessionLog>, Arc<dyn ActivityIndex>)> {
    anyhow::bail!(
        "this agentwire was built without DynamoDB: cargo build -p agentwire --features aws"
    )
}

/// The demo page, or a note on how to build it.
fn web_page(dir: &std::path::Path) -> axum::routing::MethodRouter {
    if dir.join("index.html").exists() {
        return axum::routing::get_service(tower_http::services::ServeDir::new(dir));
    }
    let note = format!(
        "agentwire dev is running; the demo page is not built ({} has no index.html).\n\
         Build it with `npm ci --prefix clients && npm run build --prefix clients`, or point --web-dir at it.\n",
        dir.display()
    );
    axum::routing::get(move || async move { note })
}

/// The grading page at `/grade/` (`/grade` redirects there, so its relative links
/// resolve), or a note on how to build it.
fn grading_page(dir: &std::path::Path) -> axum::Router {
    let redirect = axum::routing::get(|| async { axum::response::Redirect::permanent("/grade/") });
    let page = if dir.join("index.html").exists() {
        axum::routing::get_service(tower_http::services::ServeDir::new(dir))
    } else {
        let note = format!(
            "agentwire dev is running; the grading page is not built ({} has no index.html).\n\
             Build it with `npm ci --prefix clients && npm run build --prefix clients`, or point --grading-dir at it.\n",
            dir.display()
        );
        axum::routing::get(move || async move { note })
    };
    axum::Router::new()
        .route("/grade", redirect)
        .nest_service("/grade/", page)
}

fn init_logging(format: LogFormat) {
    let format = match format {
        LogFormat::Text => agentwire_logging::Format::Text,
        LogFormat::Json => agentwire_logging::Format::Json,
    };
    agentwire_logging::init(format, "info");
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(term) => term,
                Err(e) => {
                    warn!(error = %e, "cannot watch SIGTERM; Ctrl-C still stops the server");
                    let _ = ctrl_c.await;
                    return;
                }
            };
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
}
