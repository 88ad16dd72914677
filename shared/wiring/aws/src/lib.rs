//! agentwire on AWS: one typed [`Settings`] read from the environment (every missing
//! variable reported at once, and only those the function needs: see [`Needs`]), the SDK
//! clients, and the adapters of `shared/` wired into a [`Stack`]. Each function's `main` is
//! `Settings::from_env` → `Stack::connect_in_lambda` (or `Stack::connect` outside Lambda)
//! → a handler or a job ([`lambda`]).
//!
//! [`Stack::streams_app`] and [`Stack::api_app`] are the streams and HTTP functions' routers
//! (the Durable Streams API; trace ingest, scores, grading and evals), and
//! [`Stack::http_app`] both behind one HTTP API: tests on local engines run these routers
//! (on a stack with delivery; the HTTP function's has none, and its router never asks).
//!
//! Endpoint overrides (`AGENTWIRE_DYNAMODB_ENDPOINT`, `AGENTWIRE_S3_ENDPOINT`) point the
//! same stack at DynamoDB Local and a local S3 server, as `agentwire dev --backend aws` does.

mod http_client;
pub mod judge;
pub mod lambda;

pub use http_client::https_client;

use std::sync::Arc;
use std::time::Duration;

use agentwire_apigw_push::ApiGatewayPush;
use agentwire_archive::Archiver;
use agentwire_auth::{Auth, Signer};
pub use agentwire_dispatch::{Dispatch, Sends, Targets};
use agentwire_dispatch::{DispatchConfig, DispatchObserver};
use agentwire_dynamo::{
    DynamoActivityIndex, DynamoBudgetLedger, DynamoConnectionRegistry, DynamoGradingStore,
    DynamoScoreIndex, DynamoSessionLog, DynamoSubscriptionStore,
};
use agentwire_evals::nightly::Nightly;
use agentwire_evals::{Agent, EvalStore, Launch, Runner, SessionAgent};
use agentwire_grading_http::GradingService;
use agentwire_realtime::{Fanout, Realtime};
use agentwire_s3::S3Bucket;
use agentwire_scorer::ScorerJob;
use agentwire_session::{Sessions, SystemClock};
use agentwire_streams_http::HttpConfig;
use agentwire_trace::TraceArchive;
use agentwire_traces_http::TracesConfig;
use aws_config::BehaviorVersion;
use tracing::info;

/// JSON logs on stderr (CloudWatch adds the time), filtered by `RUST_LOG` (errors only
/// when unset), with payload-logging library targets capped (see `agentwire_logging`).
pub fn init_logging() {
    agentwire_logging::init(agentwire_logging::Format::JsonWithoutTime, "error");
}

/// How often live reads re-read DynamoDB: appends land in other Lambda instances.
pub const POLL_INTERVAL: Duration = Duration::from_millis(250);

/// How often the evals function runs (the template's schedule): runs created over the
/// API start within a minute.
pub const EVALS_EVERY: Duration = Duration::from_secs(60);

/// How often the clusters function runs (the template's schedule); each night is
/// clustered once, by the first run after it ends.
pub const CLUSTERS_EVERY: Duration = Duration::from_secs(60 * 60);

/// Leaves a run created over the API queued for the evals function.
struct Queued;

impl Launch for Queued {
    fn launch(&self, _tenant: &str, _run: &str) {}
}

/// A missing or malformed setting; lists every one at once.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("missing or invalid environment variables: {}", .0.join("; "))]
    Env(Vec<String>),
    #[error("cannot read the token secret {arn}: {message}")]
    Secret { arn: String, message: String },
    #[error("this function was configured without {0}")]
    NotConfigured(&'static str),
}

/// The request body limit of the functions behind API Gateway: Lambda takes at most 6 MB
/// per request, and API Gateway base64-encodes binary bodies (4/3), so 4 MiB keeps every
/// accepted body inside, with a clear 413 above.
pub const MAX_BODY_BYTES: usize = 4 * 1024 * 1024;

/// What a function does, and so which settings it must be given.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Needs {
    /// Pushes to WebSocket clients: the connections table and the management endpoint.
    pub delivery: bool,
    /// Takes requests with tokens: the token secret.
    pub tokens: bool,
}

impl Needs {
    /// The functions that push to WebSocket clients (streams, WebSocket, dispatch, evals):
    /// everything.
    pub const API: Needs = Needs {
        delivery: true,
        tokens: true,
    };
    /// Takes requests with tokens but pushes to no client: the HTTP function (ingest,
    /// scores, grading, evals).
    pub const REQUESTS: Needs = Needs {
        delivery: false,
        tokens: true,
    };
    /// Jobs (the archiver): the session table and the bucket only.
    pub const JOB: Needs = Needs {
        delivery: false,
        tokens: false,
    };
}

/// What the functions read from the environment (each only what its [`Needs`] ask).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    /// `AGENTWIRE_SESSIONS_TABLE`: the session log.
    pub sessions_table: String,
    /// `AGENTWIRE_BUCKET`: traces and large payloads.
    pub bucket: String,
    /// Pushes to WebSocket clients, for functions that need them.
    pub delivery: Option<DeliverySettings>,
    /// Where the token secret comes from, for functions that check tokens.
    pub secret: Option<SecretSource>,
    /// `AGENTWIRE_LONG_POLL_TIMEOUT_MS` (default 20000, under API Gateway's 29 s).
    pub long_poll_timeout: Duration,
    /// `AGENTWIRE_IDLE_MINUTES` (default 30): when the archiver treats a session as idle.
    pub idle: Duration,
    /// `AGENTWIRE_DYNAMODB_ENDPOINT`: a local DynamoDB (static credentials) instead of AWS.
    pub dynamodb_endpoint: Option<String>,
    /// `AGENTWIRE_S3_ENDPOINT`: a local S3 server (path-style) instead of AWS.
    pub s3_endpoint: Option<String>,
}

/// Where pushes go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeliverySettings {
    /// `AGENTWIRE_CONNECTIONS_TABLE`: WebSocket connections and subscriptions.
    pub connections_table: String,
    /// `AGENTWIRE_WS_ENDPOINT`: the WebSocket API's management endpoint (`https://…/<stage>`).
    pub ws_endpoint: String,
}

/// The secret that signs and checks tokens.
#[derive(Clone, PartialEq, Eq)]
pub enum SecretSource {
    /// `AGENTWIRE_TOKEN_SECRET_ARN`: read from Secrets Manager at start-up.
    SecretsManager(String),
    /// `AGENTWIRE_SECRET`: given directly (local runs).
    Value(Vec<u8>),
}

impl std::fmt::Debug for SecretSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SecretSource::SecretsManager(arn) => write!(f, "SecretsManager({arn})"),
            SecretSource::Value(_) => f.write_str("Value(<redacted>)"),
        }
    }
}

impl Settings {
    /// Reads the process environment for a function that `needs` these capabilities.
    pub fn from_env(needs: Needs) -> Result<Settings, ConfigError> {
        Settings::from_lookup(needs, |name| std::env::var(name).ok())
    }

    /// Reads settings through `var`, reporting every missing or invalid one together.
    pub fn from_lookup(
        needs: Needs,
        var: impl Fn(&str) -> Option<String>,
    ) -> Result<Settings, ConfigError> {
        let mut problems = Vec::new();
        let mut required = |name: &str| {
            var(name).filter(|v| !v.is_empty()).unwrap_or_else(|| {
                problems.push(format!("{name} is not set"));
                String::new()
            })
        };
        let sessions_table = required("AGENTWIRE_SESSIONS_TABLE");
        let bucket = required("AGENTWIRE_BUCKET");
        let delivery = needs.delivery.then(|| DeliverySettings {
            connections_table: required("AGENTWIRE_CONNECTIONS_TABLE"),
            ws_endpoint: required("AGENTWIRE_WS_ENDPOINT"),
        });
        let secret = needs.tokens.then(|| {
            match (var("AGENTWIRE_SECRET"), var("AGENTWIRE_TOKEN_SECRET_ARN")) {
                (Some(value), _) if value.len() >= 32 => SecretSource::Value(value.into_bytes()),
                (Some(_), _) => {
                    problems.push("AGENTWIRE_SECRET must be at least 32 bytes".into());
                    SecretSource::Value(Vec::new())
                }
                (None, Some(arn)) if !arn.is_empty() => SecretSource::SecretsManager(arn),
                (None, _) => {
                    problems
                        .push("AGENTWIRE_TOKEN_SECRET_ARN (or AGENTWIRE_SECRET) is not set".into());
                    SecretSource::Value(Vec::new())
                }
            }
        });
        let mut number = |name: &str, default: u64| match var(name) {
            None => default,
            Some(v) => v.parse().unwrap_or_else(|_| {
                problems.push(format!("{name} must be a whole number, not {v:?}"));
                default
            }),
        };
        let long_poll_timeout =
            Duration::from_millis(number("AGENTWIRE_LONG_POLL_TIMEOUT_MS", 20_000));
        let idle = Duration::from_secs(60 * number("AGENTWIRE_IDLE_MINUTES", 30));
        if long_poll_timeout >= Duration::from_secs(29) {
            problems.push("AGENTWIRE_LONG_POLL_TIMEOUT_MS must be under API Gateway's 29 s".into());
        }
        if !problems.is_empty() {
            return Err(ConfigError::Env(problems));
        }
        Ok(Settings {
            sessions_table,
            bucket,
            delivery,
            secret,
            long_poll_timeout,
            idle,
            dynamodb_endpoint: var("AGENTWIRE_DYNAMODB_ENDPOINT").filter(|v| !v.is_empty()),
            s3_endpoint: var("AGENTWIRE_S3_ENDPOINT").filter(|v| !v.is_empty()),
        })
    }
}

/// SDK settings for local engines: a fixed region, no credential chain.
pub fn local_sdk_config() -> aws_config::SdkConfig {
    aws_config::SdkConfig::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(aws_config::Region::new("us-east-1"))
        .http_client(https_client())
        .build()
}

/// SDK settings inside Lambda, from its environment (`lookup` reads a variable): the
/// region from `AWS_REGION`, the execution role's credentials from `AWS_ACCESS_KEY_ID`,
/// `AWS_SECRET_ACCESS_KEY` and `AWS_SESSION_TOKEN` (which Lambda sets; the SDK's default
/// chain would take them too, from its first provider, so a function authenticates as
/// before), and
/// `AWS_ENDPOINT_URL` when set: every service at one endpoint, as with LocalStack (the
/// per-service `AWS_ENDPOINT_URL_<SERVICE>` variables are not read).
pub fn lambda_sdk_config(
    lookup: &dyn Fn(&str) -> Option<String>,
) -> Result<aws_config::SdkConfig, ConfigError> {
    use aws_sdk_dynamodb::config::{Credentials, SharedCredentialsProvider};
    let set = |name: &str| lookup(name).filter(|value| !value.is_empty());
    let (region, key, secret) = match (
        set("AWS_REGION"),
        set("AWS_ACCESS_KEY_ID"),
        set("AWS_SECRET_ACCESS_KEY"),
    ) {
        (Some(region), Some(key), Some(secret)) => (region, key, secret),
        _ => {
            let missing = ["AWS_REGION", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"]
                .into_iter()
                .filter(|name| set(name).is_none())
                .map(|name| format!("{name} is not set (Lambda sets it in every function)"));
            return Err(ConfigError::Env(missing.collect()));
        }
    };
    let credentials = Credentials::new(
        key,
        secret,
        set("AWS_SESSION_TOKEN"),
        None,
        "lambda-environment",
    );
    let mut config = aws_config::SdkConfig::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(aws_config::Region::new(region))
        .credentials_provider(SharedCredentialsProvider::new(credentials))
        .http_client(https_client());
    if let Some(endpoint) = set("AWS_ENDPOINT_URL") {
        config = config.endpoint_url(endpoint);
    }
    Ok(config.build())
}

/// The SDK clients a [`Stack`] is built on.
pub struct Clients {
    pub dynamodb: aws_sdk_dynamodb::Client,
    pub s3: aws_sdk_s3::Client,
    /// API Gateway's management API, for pushes to WebSocket clients (functions that push).
    pub management: Option<aws_sdk_apigatewaymanagement::Client>,
}

/// The adapters that push to WebSocket clients.
#[derive(Clone)]
pub struct Delivery {
    pub registry: Arc<DynamoConnectionRegistry>,
    pub push: Arc<ApiGatewayPush>,
}

/// The adapters over one deployment's tables, bucket and WebSocket API.
#[derive(Clone)]
pub struct Stack {
    pub log: Arc<DynamoSessionLog>,
    pub bucket: S3Bucket,
    pub activity: Arc<DynamoActivityIndex>,
    /// Score records, in the session table and its `scores` index.
    pub scores: Arc<DynamoScoreIndex>,
    /// Rubrics, annotation queues, claims and grades, in the session table (its grades
    /// also go into `scores`, as `human` records, through [`Stack::grading_service`]).
    pub grading: Arc<DynamoGradingStore>,
    /// The LLM judge's daily spend per tenant, in the session table.
    pub budget: Arc<DynamoBudgetLedger>,
    /// Durable Streams subscriptions and the stream catalog, in the session table.
    pub subscriptions: Arc<DynamoSubscriptionStore>,
    /// Present when the settings had [`Needs::delivery`].
    pub delivery: Option<Delivery>,
    secret: Option<SecretSource>,
    /// The secret once read from Secrets Manager: the API functions ask for it twice at
    /// init (tokens and the webhook key), and each read is a round trip in a cold start.
    fetched_secret: Arc<tokio::sync::OnceCell<Vec<u8>>>,
    idle: Duration,
    sdk: aws_config::SdkConfig,
}

impl Stack {
    /// Builds the SDK clients (the SDK's default credential chain and region lookup, or
    /// static credentials for local endpoints) and the adapters: for `agentwire dev
    /// --backend aws` and tests, anywhere a profile or SSO may hold the credentials.
    pub async fn connect(settings: &Settings) -> Result<Stack, ConfigError> {
        // Local endpoints need no credential chain or region lookup (which would probe IMDS).
        let sdk = match &settings.dynamodb_endpoint {
            Some(_) => local_sdk_config(),
            None => {
                aws_config::defaults(BehaviorVersion::latest())
                    .http_client(https_client())
                    .load()
                    .await
            }
        };
        Ok(Stack::connect_with(settings, sdk))
    }

    /// [`Stack::connect`] as a Lambda function runs: the region and the execution role's
    /// credentials from the variables Lambda sets ([`lambda_sdk_config`]), not the SDK's
    /// default chain, whose profiles, SSO, STS and IMDS providers a function never uses
    /// (and which would be linked into every bootstrap).
    pub fn connect_in_lambda(settings: &Settings) -> Result<Stack, ConfigError> {
        let sdk = match &settings.dynamodb_endpoint {
            Some(_) => local_sdk_config(),
            None => lambda_sdk_config(&|name| std::env::var(name).ok())?,
        };
        Ok(Stack::connect_with(settings, sdk))
    }

    /// The SDK clients on `sdk` (local engines' clients when the settings name endpoints),
    /// and the adapters.
    fn connect_with(settings: &Settings, sdk: aws_config::SdkConfig) -> Stack {
        // The adapters' local clients too, on this stack's HTTPS client (see `https_client`).
        let http = sdk.http_client().unwrap_or_else(https_client);
        let dynamodb = match &settings.dynamodb_endpoint {
            Some(endpoint) => {
                let config = agentwire_dynamo::local_client(endpoint)
                    .config()
                    .to_builder();
                aws_sdk_dynamodb::Client::from_conf(config.http_client(http.clone()).build())
            }
            None => aws_sdk_dynamodb::Client::new(&sdk),
        };
        let s3 = match &settings.s3_endpoint {
            Some(endpoint) => {
                let config = agentwire_s3::local_client(endpoint).config().to_builder();
                aws_sdk_s3::Client::from_conf(config.http_client(http.clone()).build())
            }
            None => aws_sdk_s3::Client::new(&sdk),
        };
        let management = settings.delivery.as_ref().map(|delivery| {
            if settings.dynamodb_endpoint.is_some() {
                let local = agentwire_apigw_push::local_client(&delivery.ws_endpoint);
                let config = local.config().to_builder().http_client(http.clone());
                aws_sdk_apigatewaymanagement::Client::from_conf(config.build())
            } else {
                let config = aws_sdk_apigatewaymanagement::config::Builder::from(&sdk)
                    .endpoint_url(&delivery.ws_endpoint)
                    .build();
                aws_sdk_apigatewaymanagement::Client::from_conf(config)
            }
        });
        Stack::from_clients(
            settings,
            Clients {
                dynamodb,
                s3,
                management,
            },
            sdk,
        )
    }

    /// The adapters over clients built by the caller (e.g. with interceptors that meter
    /// every request, as the cost benchmark does).
    pub fn from_clients(
        settings: &Settings,
        clients: Clients,
        sdk: aws_config::SdkConfig,
    ) -> Stack {
        let Clients {
            dynamodb,
            s3,
            management,
        } = clients;
        let bucket = S3Bucket::new(s3, &settings.bucket);
        info!(
            sessions = %settings.sessions_table,
            bucket = %settings.bucket,
            "agentwire on AWS"
        );
        let delivery = settings
            .delivery
            .as_ref()
            .zip(management)
            .map(|(delivery, management)| Delivery {
                registry: Arc::new(DynamoConnectionRegistry::new(
                    dynamodb.clone(),
                    &delivery.connections_table,
                )),
                push: Arc::new(ApiGatewayPush::new(management)),
            });
        Stack {
            log: Arc::new(
                DynamoSessionLog::new(dynamodb.clone(), &settings.sessions_table)
                    .with_blobs(Arc::new(bucket.clone())),
            ),
            activity: Arc::new(DynamoActivityIndex::new(
                dynamodb.clone(),
                &settings.sessions_table,
            )),
            scores: Arc::new(DynamoScoreIndex::new(
                dynamodb.clone(),
                &settings.sessions_table,
            )),
            grading: Arc::new(DynamoGradingStore::new(
                dynamodb.clone(),
                &settings.sessions_table,
            )),
            subscriptions: Arc::new(DynamoSubscriptionStore::new(
                dynamodb.clone(),
                &settings.sessions_table,
            )),
            budget: Arc::new(DynamoBudgetLedger::new(dynamodb, &settings.sessions_table)),
            bucket,
            delivery,
            secret: settings.secret.clone(),
            fetched_secret: Arc::default(),
            idle: settings.idle,
            sdk,
        }
    }

    /// The push adapters, or which settings were missing for them.
    pub fn delivery(&self) -> Result<&Delivery, ConfigError> {
        self.delivery.as_ref().ok_or(ConfigError::NotConfigured(
            "WebSocket delivery (Needs::delivery)",
        ))
    }

    /// Token checking with the configured secret (read from Secrets Manager when given as
    /// an ARN): for the functions that take requests.
    pub async fn auth(&self) -> Result<Auth, ConfigError> {
        Ok(Auth::Tokens(Signer::new(self.secret_value().await?)))
    }

    /// Subscriptions on the session table, signing webhooks with a key derived from the
    /// token secret (one secret for the stack; every function derives the same key, and
    /// rotating the secret rotates the key). `sends` says who sends webhook wakes: on
    /// Lambda, [`Sends::ByChangeFeed`] (the dispatch function, fed by the table's stream).
    pub async fn dispatch(&self, sends: Sends) -> Result<Arc<Dispatch>, ConfigError> {
        self.dispatch_with(sends, Targets::Public).await
    }

    /// [`Stack::dispatch`] with webhooks allowed to reach `targets` (tests on this machine
    /// need loopback ones).
    pub async fn dispatch_with(
        &self,
        sends: Sends,
        targets: Targets,
    ) -> Result<Arc<Dispatch>, ConfigError> {
        let key = agentwire_dispatch::signing::WebhookKey::document_from_secret(
            &self.secret_value().await?,
        )
        .map_err(|e| ConfigError::Env(vec![e]))?;
        let webhooks = Arc::new(agentwire_webhook::HttpWebhookClient::new(
            targets,
            Duration::from_millis(agentwire_dispatch::model::DELIVERY_TIMEOUT_MS as u64),
        ));
        Dispatch::new(
            self.subscriptions.clone(),
            self.subscriptions.clone(),
            webhooks,
            &key,
            DispatchConfig {
                targets,
                sends,
                ..DispatchConfig::default()
            },
        )
        .map_err(|e| ConfigError::Env(vec![e]))
    }

    async fn secret_value(&self) -> Result<Vec<u8>, ConfigError> {
        match &self.secret {
            None => Err(ConfigError::NotConfigured("a token secret (Needs::tokens)")),
            Some(SecretSource::Value(value)) => Ok(value.clone()),
            Some(SecretSource::SecretsManager(arn)) => self
                .fetched_secret
                .get_or_try_init(|| self.read_secret(arn))
                .await
                .cloned(),
        }
    }

    async fn read_secret(&self, arn: &str) -> Result<Vec<u8>, ConfigError> {
        let failed = |message: String| ConfigError::Secret {
            arn: arn.to_owned(),
            message,
        };
        let found = aws_sdk_secretsmanager::Client::new(&self.sdk)
            .get_secret_value()
            .secret_id(arn)
            .send()
            .await
            .map_err(|e| {
                failed(aws_sdk_secretsmanager::error::DisplayErrorContext(e).to_string())
            })?;
        found
            .secret_string
            .map(String::into_bytes)
            .ok_or_else(|| failed("the secret has no string value".into()))
    }

    /// The session service as a Lambda runs it: appends push to WebSocket subscribers
    /// before they are acknowledged, and live reads poll for other instances' appends.
    pub fn sessions(&self) -> Result<Sessions, ConfigError> {
        let delivery = self.delivery()?;
        let fanout = Fanout::inline(delivery.registry.clone(), delivery.push.clone());
        Ok(Sessions::new(self.log.clone())
            .with_observer(Arc::new(fanout))
            .with_poll_interval(POLL_INTERVAL))
    }

    /// [`Stack::sessions`] whose appends also wake `dispatch`'s subscriptions.
    pub fn sessions_dispatching(&self, dispatch: &Arc<Dispatch>) -> Result<Sessions, ConfigError> {
        Ok(self
            .sessions()?
            .with_observer(Arc::new(DispatchObserver(dispatch.clone()))))
    }

    /// The WebSocket routes' service; with `dispatch`, what clients write over it wakes
    /// subscriptions as HTTP appends do.
    pub fn realtime(
        &self,
        auth: Auth,
        dispatch: Option<&Arc<Dispatch>>,
    ) -> Result<Realtime, ConfigError> {
        let delivery = self.delivery()?;
        let sessions = match dispatch {
            Some(dispatch) => self.sessions_dispatching(dispatch)?,
            None => self.sessions()?,
        };
        Ok(Realtime::new(
            sessions,
            delivery.registry.clone(),
            delivery.push.clone(),
            auth,
        ))
    }

    /// The trace archive: `traces/…` objects in the bucket, which the archiver and OTLP
    /// ingest (`POST /v1/traces`) write.
    pub fn trace_archive(&self) -> Arc<dyn TraceArchive> {
        Arc::new(self.bucket.clone())
    }

    /// The archiver, writing traces to the bucket.
    pub fn archiver(&self) -> Archiver {
        Archiver::new(
            self.log.clone(),
            self.trace_archive(),
            self.activity.clone(),
            self.idle,
        )
    }

    /// The scorer job: reads traces (and tenants' `config/`) from the bucket, writes
    /// `scores/` there and indexes the records in the session table.
    pub fn scorer(&self) -> Arc<ScorerJob> {
        Arc::new(ScorerJob::new(
            self.trace_archive(),
            self.scores.clone(),
            Arc::new(SystemClock),
        ))
    }

    /// The eval runner: datasets and runs in the bucket, questions posted through this
    /// function's sessions (the table's stream wakes the agent under test through the
    /// dispatch function), sessions archived and scored as the scorer function does.
    /// Each finished run's report page is written by it.
    pub fn evals(&self) -> Result<Arc<Runner>, ConfigError> {
        let agent = SessionAgent::new(self.sessions()?, Arc::new(self.archiver()));
        Ok(Arc::new(
            self.runner(Some(Arc::new(agent)))
                .with_after(Arc::new(agentwire_report::RunReports)),
        ))
    }

    /// A runner on the bucket with the tenants' scoring, asking `agent` (live runs).
    fn runner(&self, agent: Option<Arc<dyn Agent>>) -> Runner {
        Runner::new(
            EvalStore::new(self.trace_archive()),
            agent,
            self.scorer(),
            Arc::new(SystemClock),
        )
    }

    /// The `evals` job as its function runs it: scheduled evals started, and every
    /// unfinished run carried out in the invocation (one cut short by the function's
    /// timeout is resumed by the next).
    pub fn evals_job(&self) -> Result<Nightly, ConfigError> {
        Ok(Nightly::new(
            self.evals()?,
            self.trace_archive(),
            None,
            EVALS_EVERY,
        ))
    }

    /// The `clusters` job: each tenant's last whole day of traces clustered once (read from
    /// and written to the bucket), then its report page (agreement from the grading store).
    /// Embeddings come from `AGENTWIRE_EMBEDDINGS_URL` (OpenAI-compatible; the key in
    /// `AGENTWIRE_EMBEDDINGS_KEY`, the model in `AGENTWIRE_EMBEDDINGS_MODEL`), else the
    /// local TF-IDF.
    pub fn clusters_job(&self) -> Result<agentwire_cluster::ClusterJob, ConfigError> {
        let embedder: Arc<dyn agentwire_cluster::Embedder> =
            match std::env::var("AGENTWIRE_EMBEDDINGS_URL") {
                Ok(url) if !url.is_empty() => {
                    let model = std::env::var("AGENTWIRE_EMBEDDINGS_MODEL")
                        .unwrap_or_else(|_| "text-embedding-3-small".into());
                    Arc::new(
                        agentwire_cluster::OpenAiEmbeddings::new(
                            &url,
                            std::env::var("AGENTWIRE_EMBEDDINGS_KEY").ok(),
                            &model,
                        )
                        .map_err(|e| {
                            ConfigError::Env(vec![format!("AGENTWIRE_EMBEDDINGS_URL: {e}")])
                        })?,
                    )
                }
                _ => Arc::new(agentwire_cluster::LocalTfIdf),
            };
        let agreements = Arc::new(agentwire_grading_http::reports::Agreements(
            self.grading_service(),
        ));
        Ok(agentwire_cluster::ClusterJob::new(
            self.trace_archive(),
            embedder,
            Some(Arc::new(agentwire_report::site::SiteReports::new(
                self.trace_archive(),
                Some(agreements),
            ))),
            CLUSTERS_EVERY,
        ))
    }

    /// The grading API's service: the grading store, the score index its grades join as
    /// `human` records, and the trace archive its item view reads conversations from.
    pub fn grading_service(&self) -> GradingService {
        GradingService::new(
            self.grading.clone(),
            self.scores.clone(),
            self.trace_archive(),
            Arc::new(SystemClock),
        )
    }

    /// The streams function's router: the Durable Streams API (`http`), checking tokens
    /// with `auth`; with `dispatch`, the subscription routes too, and appends wake their
    /// subscriptions.
    pub fn streams_app(
        &self,
        auth: Auth,
        http: HttpConfig,
        dispatch: Option<Arc<Dispatch>>,
    ) -> Result<axum::Router, ConfigError> {
        Ok(match dispatch {
            Some(dispatch) => agentwire_streams_http::router_with_dispatch(
                self.sessions_dispatching(&dispatch)?,
                auth,
                http,
                dispatch,
            ),
            None => agentwire_streams_http::router(self.sessions()?, auth, http),
        })
    }

    /// The API function's router: OTLP/HTTP trace ingest (`POST /v1/traces`, bodies up to
    /// `max_body_bytes`), the scores API, the grading API (`/v1/rubrics`, `/v1/queues`,
    /// bodies up to [`agentwire_grading_http::DEFAULT_MAX_BODY_BYTES`]) and the evals API
    /// with the report pages, all checking tokens with `auth`. It needs no delivery: it
    /// appends to no session, and the runs it creates are carried out by the evals
    /// function (every minute), which also writes their reports.
    pub fn api_app(&self, auth: Auth, max_body_bytes: usize) -> axum::Router {
        let traces = TracesConfig {
            max_body_bytes,
            ..TracesConfig::default()
        };
        // Only creates and reads runs: no agent and no report hook (so no renderer here).
        let runner = self.runner(None).with_live_runs_elsewhere();
        agentwire_traces_http::router(self.trace_archive(), auth.clone(), traces)
            .merge(agentwire_traces_http::scores_router(
                self.scores.clone(),
                auth.clone(),
            ))
            .merge(agentwire_grading_http::router(
                self.grading_service(),
                auth.clone(),
                agentwire_grading_http::DEFAULT_MAX_BODY_BYTES,
            ))
            .merge(agentwire_evals_http::router(
                agentwire_evals_http::EvalsApi {
                    runner: Arc::new(runner),
                    launch: Arc::new(Queued),
                    archive: self.trace_archive(),
                    scores: self.scores.clone(),
                    grading: self.grading.clone(),
                    auth,
                },
            ))
    }

    /// [`Stack::streams_app`] and [`Stack::api_app`] as one router (the API's body limit
    /// is `http`'s): what the two functions serve behind one HTTP API, in one process.
    pub fn http_app(
        &self,
        auth: Auth,
        http: HttpConfig,
        dispatch: Option<Arc<Dispatch>>,
    ) -> Result<axum::Router, ConfigError> {
        let max_body_bytes = http.max_body_bytes;
        Ok(self
            .streams_app(auth.clone(), http, dispatch)?
            .merge(self.api_app(auth, max_body_bytes)))
    }

    /// Creates the tables (with the scores index) and the bucket when missing: for local
    /// engines only.
    pub async fn ensure_local_resources(&self) -> Result<(), String> {
        self.log.ensure_table().await.map_err(|e| e.to_string())?;
        self.scores
            .ensure_index()
            .await
            .map_err(|e| e.to_string())?;
        self.subscriptions
            .ensure_index()
            .await
            .map_err(|e| e.to_string())?;
        if let Some(delivery) = &self.delivery {
            delivery
                .registry
                .ensure_table()
                .await
                .map_err(|e| e.to_string())?;
        }
        self.bucket.ensure_bucket().await.map_err(|e| e.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The S3 client's CRCs come from the workspace's crc-fast: the header values it would
    /// send for the ASCII digits 1 to 9 are the catalogue's check values (CBF43926,
    /// E3069283, AE8B14860A799888), base64 as S3 takes them.
    #[test]
    fn the_s3_clients_crcs_give_the_catalogued_check_values() {
        use aws_smithy_checksums::ChecksumAlgorithm;
        for (algorithm, expected) in [
            (ChecksumAlgorithm::Crc32, "y/Q5Jg=="),
            (ChecksumAlgorithm::Crc32c, "4waSgw=="),
            (ChecksumAlgorithm::Crc64Nvme, "rosUhgp5mIg="),
        ] {
            let mut checksum = algorithm.into_impl();
            checksum.update(b"1234");
            checksum.update(b"56789");
            assert_eq!(checksum.header_value(), expected, "{algorithm:?}");
        }
    }
    use std::collections::HashMap;

    fn lookup(vars: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let vars: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |name| vars.get(name).cloned()
    }

    #[test]
    fn lambda_sdk_settings_name_every_missing_variable() {
        let Err(ConfigError::Env(problems)) =
            lambda_sdk_config(&lookup(&[("AWS_SECRET_ACCESS_KEY", "s")]))
        else {
            panic!("expected a config error");
        };
        let all = problems.join("\n");
        assert!(
            all.contains("AWS_REGION") && all.contains("AWS_ACCESS_KEY_ID"),
            "{all}"
        );
        assert!(!all.contains("AWS_SECRET_ACCESS_KEY"), "{all}");
    }

    #[tokio::test]
    async fn lambda_sdk_settings_are_lambdas_region_credentials_and_endpoint() {
        use aws_sdk_dynamodb::config::ProvideCredentials;
        let vars = [
            ("AWS_REGION", "eu-west-3"),
            ("AWS_ACCESS_KEY_ID", "ASIAEXAMPLE"),
            ("AWS_SECRET_ACCESS_KEY", "secret"),
            ("AWS_SESSION_TOKEN", "token"),
        ];
        let config = lambda_sdk_config(&lookup(&vars)).unwrap();
        assert_eq!(config.region().map(|r| r.as_ref()), Some("eu-west-3"));
        assert_eq!(config.endpoint_url(), None);
        let credentials = config
            .credentials_provider()
            .expect("a credentials provider")
            .provide_credentials()
            .await
            .unwrap();
        assert_eq!(credentials.access_key_id(), "ASIAEXAMPLE");
        assert_eq!(credentials.secret_access_key(), "secret");
        assert_eq!(credentials.session_token(), Some("token"));

        let local = [&vars[..], &[("AWS_ENDPOINT_URL", "http://127.0.0.1:4566")]].concat();
        let config = lambda_sdk_config(&lookup(&local)).unwrap();
        assert_eq!(config.endpoint_url(), Some("http://127.0.0.1:4566"));
    }

    #[test]
    fn every_missing_variable_is_reported_at_once() {
        let Err(ConfigError::Env(problems)) = Settings::from_lookup(
            Needs::API,
            lookup(&[
                ("AGENTWIRE_BUCKET", "b"),
                ("AGENTWIRE_IDLE_MINUTES", "soon"),
            ]),
        ) else {
            panic!("expected a config error");
        };
        let all = problems.join("\n");
        for name in [
            "AGENTWIRE_SESSIONS_TABLE",
            "AGENTWIRE_CONNECTIONS_TABLE",
            "AGENTWIRE_WS_ENDPOINT",
            "AGENTWIRE_TOKEN_SECRET_ARN",
            "AGENTWIRE_IDLE_MINUTES must be a whole number",
        ] {
            assert!(all.contains(name), "{name} not reported in {all}");
        }
        assert!(!all.contains("AGENTWIRE_BUCKET"));
    }

    #[test]
    fn a_job_is_asked_only_for_what_it_uses() {
        let Err(ConfigError::Env(problems)) = Settings::from_lookup(Needs::JOB, lookup(&[])) else {
            panic!("expected a config error");
        };
        let all = problems.join("\n");
        assert!(
            all.contains("AGENTWIRE_SESSIONS_TABLE") && all.contains("AGENTWIRE_BUCKET"),
            "{all}"
        );
        for unused in [
            "AGENTWIRE_WS_ENDPOINT",
            "AGENTWIRE_CONNECTIONS_TABLE",
            "AGENTWIRE_TOKEN_SECRET_ARN",
        ] {
            assert!(!all.contains(unused), "a job was asked for {unused}: {all}");
        }
        let settings = Settings::from_lookup(
            Needs::JOB,
            lookup(&[("AGENTWIRE_SESSIONS_TABLE", "s"), ("AGENTWIRE_BUCKET", "b")]),
        )
        .unwrap();
        assert_eq!((settings.delivery, settings.secret), (None, None));
    }

    /// The HTTP function's environment in the template: the token secret, no delivery.
    #[test]
    fn the_http_function_is_asked_for_the_token_secret_and_no_delivery() {
        let Err(ConfigError::Env(problems)) = Settings::from_lookup(Needs::REQUESTS, lookup(&[]))
        else {
            panic!("expected a config error");
        };
        let all = problems.join("\n");
        assert!(all.contains("AGENTWIRE_TOKEN_SECRET_ARN"), "{all}");
        for unused in ["AGENTWIRE_WS_ENDPOINT", "AGENTWIRE_CONNECTIONS_TABLE"] {
            assert!(!all.contains(unused), "asked for {unused}: {all}");
        }
        let settings = Settings::from_lookup(
            Needs::REQUESTS,
            lookup(&[
                ("AGENTWIRE_SESSIONS_TABLE", "s"),
                ("AGENTWIRE_BUCKET", "b"),
                (
                    "AGENTWIRE_TOKEN_SECRET_ARN",
                    "arn:aws:secretsmanager:us-east-1:1:secret:t",
                ),
            ]),
        )
        .unwrap();
        assert_eq!(settings.delivery, None);
        assert!(settings.secret.is_some());
    }

    #[test]
    fn complete_settings_parse_with_defaults() {
        let settings = Settings::from_lookup(
            Needs::API,
            lookup(&[
                ("AGENTWIRE_SESSIONS_TABLE", "s"),
                ("AGENTWIRE_CONNECTIONS_TABLE", "c"),
                ("AGENTWIRE_BUCKET", "b"),
                (
                    "AGENTWIRE_WS_ENDPOINT",
                    "https://x.execute-api.us-east-1.amazonaws.com/v1",
                ),
                (
                    "AGENTWIRE_TOKEN_SECRET_ARN",
                    "arn:aws:secretsmanager:us-east-1:1:secret:t",
                ),
            ]),
        )
        .unwrap();
        assert_eq!(settings.long_poll_timeout, Duration::from_secs(20));
        assert_eq!(settings.idle, Duration::from_secs(1800));
        assert_eq!(
            settings.secret.unwrap(),
            SecretSource::SecretsManager("arn:aws:secretsmanager:us-east-1:1:secret:t".into())
        );
        // The secret never reaches logs through Debug.
        let shown = format!(
            "{:?}",
            SecretSource::Value(b"0123456789abcdef0123456789abcdef".to_vec())
        );
        assert!(!shown.contains("0123"), "{shown}");
    }

    #[test]
    fn a_long_poll_past_api_gateways_limit_is_refused() {
        let Err(ConfigError::Env(problems)) = Settings::from_lookup(
            Needs::API,
            lookup(&[
                ("AGENTWIRE_SESSIONS_TABLE", "s"),
                ("AGENTWIRE_CONNECTIONS_TABLE", "c"),
                ("AGENTWIRE_BUCKET", "b"),
                ("AGENTWIRE_WS_ENDPOINT", "https://x"),
                ("AGENTWIRE_SECRET", "0123456789abcdef0123456789abcdef"),
                ("AGENTWIRE_LONG_POLL_TIMEOUT_MS", "30000"),
            ]),
        ) else {
            panic!("expected a config error");
        };
        assert!(problems[0].contains("29 s"), "{problems:?}");
    }
}
