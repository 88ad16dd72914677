//! The evals API, for a tenant-wide `admin` token (evals read any trace of the tenant and
//! post into its sessions):
//!
//! - `PUT /v1/evals/datasets/{name}`: the body is the dataset as JSON lines; 201 `{"dataset",
//!   "version", "items"}` for a new version, 200 when it is the latest version already.
//! - `POST /v1/evals/datasets/{name}/from-traces` (`{"sessions": "tau-*", "days": [..]}`,
//!   `{"session_names": [..]}`, `{"scores": {"name", "label", "max_value", "since_ms",
//!   "until_ms", "limit"}}` or `{"queue": "answers"}`): a new version of the tenant's
//!   archived traces, each an item to replay (or to run again from its first user
//!   message); from a queue, the graders' majority answers become `expected.labels`.
//! - `GET /v1/evals/datasets`, `GET /v1/evals/datasets/{name}?version=N` (the latest
//!   without one).
//! - `POST /v1/evals/runs` (`{"dataset", "version"?, "mode": "live"|"replay", "pattern":
//!   "eval-*", "timeout_ms"?, "concurrency"?, "label"?}`): 202 `{"run"}`; the run goes
//!   on in the background.
//! - `GET /v1/evals/runs` (newest first), `GET /v1/evals/runs/{id}` (`{"run", "done"}`),
//!   `GET /v1/evals/runs/{id}/items`, `POST /v1/evals/runs/{id}/resume` (202),
//!   `GET /v1/evals/runs/{id}/report`: the finished run's report page (HTML, plots inline).
//! - `GET /v1/evals/compare?a=RUN&b=RUN&min_delta=0.1`: the comparison (see
//!   `agentwire_evals::compare`).
//!
//! - `GET /reports` and `GET /reports/{day}`: the nightly report pages (HTML; the token
//!   may also come as `?token=`, for a browser's address bar), see `agentwire_report::site`.
//!
//! Errors are `{"error": "<message>"}`: 400 a bad dataset line (the message names it) or
//! field, 401/403 the token, 404 no such dataset, version or run (another tenant's are
//! never visible), 409 comparing a run that has not finished or resuming one that has
//! ended, 500 stored data that does not read back, 503 storage unavailable. A refused call changes nothing.

mod reports;

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use agentwire_auth::{Auth, AuthError, Role, bearer};
use agentwire_evals::pick::{Pick, items_from_traces};
use agentwire_evals::{EvalError, Launch, NewRun, Runner, StoreError, compare, parse_jsonl};
use agentwire_grading::GradingStore;
use agentwire_scoring::{ScoreFilter, ScoreIndex};
use agentwire_trace::TraceArchive;
use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Path, Query, State};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use http::{HeaderMap, StatusCode, header};
use serde::Deserialize;
use serde_json::{Value, json};

/// The largest dataset body: 10 000 items of about a kilobyte and a half.
pub const MAX_BODY_BYTES: usize = 16 * 1024 * 1024;

/// What the routes need.
pub struct EvalsApi {
    pub runner: Arc<Runner>,
    /// Where runs are carried out (in this process, or by the evals job).
    pub launch: Arc<dyn Launch>,
    /// The traces datasets are picked from.
    pub archive: Arc<dyn TraceArchive>,
    /// Score records, for picking traces by a score filter.
    pub scores: Arc<dyn ScoreIndex>,
    /// Annotation queues' grades, for datasets of graded traces.
    pub grading: Arc<dyn GradingStore>,
    pub auth: Auth,
}

/// The evals routes.
pub fn router(api: EvalsApi) -> Router {
    Router::new()
        .route("/v1/evals/datasets", get(list_datasets))
        .route(
            "/v1/evals/datasets/{name}",
            put(put_dataset).get(get_dataset),
        )
        .route("/v1/evals/datasets/{name}/from-traces", post(from_traces))
        .route("/v1/evals/runs", post(create_run).get(list_runs))
        .route("/v1/evals/runs/{id}", get(get_run))
        .route("/v1/evals/runs/{id}/items", get(run_items))
        .route("/v1/evals/runs/{id}/resume", post(resume_run))
        .route("/v1/evals/runs/{id}/report", get(run_report))
        .route("/v1/evals/compare", get(compare_runs))
        .route("/reports", get(reports::index))
        .route("/reports/{day}", get(reports::page))
        .with_state(Arc::new(api))
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
}

type Api = State<Arc<EvalsApi>>;

struct Failure(StatusCode, String);

impl IntoResponse for Failure {
    fn into_response(self) -> Response {
        if self.0.is_server_error() {
            tracing::error!(status = %self.0, error = %self.1, "evals request failed");
        }
        let mut response = reply(self.0, json!({"error": self.1}));
        if self.0 == StatusCode::UNAUTHORIZED {
            response.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                http::HeaderValue::from_static("Bearer"),
            );
        }
        response
    }
}

impl From<EvalError> for Failure {
    fn from(e: EvalError) -> Failure {
        let status = match &e {
            EvalError::Invalid(_) => StatusCode::BAD_REQUEST,
            EvalError::NotFound(_) => StatusCode::NOT_FOUND,
            // Damaged data does not heal with a retry.
            EvalError::Store(StoreError::Corrupt { .. }) => StatusCode::INTERNAL_SERVER_ERROR,
            EvalError::Store(StoreError::Storage(_)) => StatusCode::SERVICE_UNAVAILABLE,
        };
        Failure(status, e.to_string())
    }
}

impl From<StoreError> for Failure {
    fn from(e: StoreError) -> Failure {
        EvalError::Store(e).into()
    }
}

fn reply(status: StatusCode, value: Value) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "application/json")],
        value.to_string(),
    )
        .into_response()
}

fn bad(message: impl Into<String>) -> Failure {
    Failure(StatusCode::BAD_REQUEST, message.into())
}

fn to_value(value: impl serde::Serialize) -> Value {
    serde_json::to_value(value).unwrap_or(Value::Null)
}

impl EvalsApi {
    /// The tenant of a call: a tenant-wide admin token is needed.
    fn tenant(&self, headers: &HeaderMap) -> Result<String, Failure> {
        let token = bearer(
            headers
                .get(header::AUTHORIZATION)
                .and_then(|v| v.to_str().ok()),
        );
        self.tenant_of(token)
    }

    /// The tenant of a token given any way (the report pages also take `?token=`).
    fn tenant_of(&self, token: Option<&str>) -> Result<String, Failure> {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs() as i64)
            .unwrap_or_default();
        let principal = self.auth.authenticate(token, now).map_err(|e: AuthError| {
            let status = if e.is_unauthenticated() {
                StatusCode::UNAUTHORIZED
            } else {
                StatusCode::FORBIDDEN
            };
            Failure(status, e.to_string())
        })?;
        if principal.claims.role != Role::Admin || principal.claims.sessions != "*" {
            return Err(Failure(
                StatusCode::FORBIDDEN,
                format!(
                    "evals need an admin token for every session of the tenant (*); this is a {} token for {:?}",
                    principal.claims.role, principal.claims.sessions
                ),
            ));
        }
        Ok(principal.claims.tenant)
    }
}

fn check_name(name: &str) -> Result<(), Failure> {
    agentwire_evals::dataset::validate_name("dataset", name).map_err(bad)
}

async fn put_dataset(
    State(api): Api,
    Path(name): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, Failure> {
    let tenant = api.tenant(&headers)?;
    check_name(&name)?;
    let text = std::str::from_utf8(&body).map_err(|e| {
        bad(format!(
            "the dataset is not UTF-8 (byte {})",
            e.valid_up_to()
        ))
    })?;
    let items = parse_jsonl(text).map_err(|e| bad(format!("dataset {name}: {e}")))?;
    // A replay item names a trace of this tenant, never another's.
    for item in &items {
        if let Some(trace) = &item.trace {
            agentwire_evals::runner::check_trace_key(trace, &tenant)
                .map_err(|e| bad(format!("dataset {name}: item {}: {e}", item.id)))?;
        }
    }
    stored_version(&api, &tenant, &name, &items).await
}

async fn stored_version(
    api: &EvalsApi,
    tenant: &str,
    name: &str,
    items: &[agentwire_evals::Item],
) -> Result<Response, Failure> {
    let (version, created) = api.runner.store().add_version(tenant, name, items).await?;
    let status = if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok(reply(
        status,
        json!({"dataset": name, "version": version, "items": items.len()}),
    ))
}

async fn from_traces(
    State(api): Api,
    Path(name): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, Failure> {
    let tenant = api.tenant(&headers)?;
    check_name(&name)?;
    let mut pick: Pick =
        serde_json::from_slice(&body).map_err(|e| bad(format!("the body is not a pick: {e}")))?;
    if let Some(queue) = &pick.queue {
        // The expert grade becomes the expectation: per trace, the graders' majority answer.
        let grades = api
            .grading
            .grades(&tenant, queue)
            .await
            .map_err(|e| match e {
                agentwire_grading::GradingError::NotFound(m) => Failure(StatusCode::NOT_FOUND, m),
                other => Failure(StatusCode::SERVICE_UNAVAILABLE, other.to_string()),
            })?;
        let mut by_session: std::collections::BTreeMap<
            String,
            Vec<std::collections::BTreeMap<String, String>>,
        > = Default::default();
        for grade in grades {
            let answers = grade
                .answers
                .into_iter()
                .map(|(k, a)| (k, a.value))
                .collect();
            by_session.entry(grade.session).or_default().push(answers);
        }
        for (session, answers) in by_session {
            let refs: Vec<_> = answers.iter().collect();
            pick.labels
                .insert(session.clone(), agentwire_evals::pick::labels_of(&refs));
            pick.session_names.push(session);
        }
    }
    if let Some(filter) = &pick.scores {
        let page = api
            .scores
            .list(
                &tenant,
                &ScoreFilter {
                    name: filter.name.clone(),
                    label: filter.label.clone(),
                    max_value: filter.max_value,
                    since_ms: filter.since_ms,
                    until_ms: filter.until_ms,
                    limit: filter
                        .limit
                        .unwrap_or(agentwire_scoring::MAX_PAGE)
                        .min(agentwire_scoring::MAX_PAGE),
                    ..ScoreFilter::default()
                },
            )
            .await
            .map_err(|e| Failure(StatusCode::SERVICE_UNAVAILABLE, e.to_string()))?;
        for record in page.records {
            if !pick.session_names.contains(&record.session) {
                pick.session_names.push(record.session);
            }
        }
    }
    let items = items_from_traces(&*api.archive, &tenant, &pick).await?;
    stored_version(&api, &tenant, &name, &items).await
}

async fn list_datasets(State(api): Api, headers: HeaderMap) -> Result<Response, Failure> {
    let tenant = api.tenant(&headers)?;
    let datasets: Vec<Value> = api
        .runner
        .store()
        .datasets(&tenant)
        .await?
        .into_iter()
        .map(|(name, versions)| json!({"name": name, "latest": versions.last(), "versions": versions}))
        .collect();
    Ok(reply(StatusCode::OK, json!({"datasets": datasets})))
}

#[derive(Deserialize)]
struct VersionQuery {
    version: Option<u32>,
}

async fn get_dataset(
    State(api): Api,
    Path(name): Path<String>,
    Query(query): Query<VersionQuery>,
    headers: HeaderMap,
) -> Result<Response, Failure> {
    let tenant = api.tenant(&headers)?;
    check_name(&name)?;
    let dataset = api
        .runner
        .store()
        .dataset(&tenant, &name, query.version)
        .await?
        .ok_or_else(|| {
            Failure(
                StatusCode::NOT_FOUND,
                match query.version {
                    Some(v) => format!("dataset {name}@{v} does not exist"),
                    None => format!("dataset {name:?} does not exist"),
                },
            )
        })?;
    Ok(reply(
        StatusCode::OK,
        json!({"dataset": dataset.name, "version": dataset.version, "items": to_value(&dataset.items)}),
    ))
}

async fn create_run(State(api): Api, headers: HeaderMap, body: Bytes) -> Result<Response, Failure> {
    let tenant = api.tenant(&headers)?;
    let new: NewRun =
        serde_json::from_slice(&body).map_err(|e| bad(format!("the body is not a run: {e}")))?;
    let run = api.runner.create(&tenant, new, "api").await?;
    api.launch.launch(&tenant, &run.spec.id);
    Ok(reply(StatusCode::ACCEPTED, json!({"run": to_value(&run)})))
}

async fn list_runs(State(api): Api, headers: HeaderMap) -> Result<Response, Failure> {
    let tenant = api.tenant(&headers)?;
    let store = api.runner.store();
    let mut runs = Vec::new();
    for id in store.run_ids(&tenant).await?.iter().rev().take(100) {
        if let Some(run) = store.run(&tenant, id).await? {
            runs.push(to_value(&run));
        }
    }
    Ok(reply(StatusCode::OK, json!({"runs": runs})))
}

async fn load_run(api: &EvalsApi, tenant: &str, id: &str) -> Result<agentwire_evals::Run, Failure> {
    if agentwire_evals::dataset::validate_name("run", id).is_err() {
        return Err(Failure(
            StatusCode::NOT_FOUND,
            format!("run {id:?} does not exist"),
        ));
    }
    api.runner
        .store()
        .run(tenant, id)
        .await?
        .ok_or_else(|| Failure(StatusCode::NOT_FOUND, format!("run {id:?} does not exist")))
}

async fn get_run(
    State(api): Api,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Result<Response, Failure> {
    let tenant = api.tenant(&headers)?;
    let run = load_run(&api, &tenant, &id).await?;
    let done = api.runner.store().items_done(&tenant, &id).await?;
    Ok(reply(
        StatusCode::OK,
        json!({"run": to_value(&run), "done": done}),
    ))
}

async fn run_items(
    State(api): Api,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Result<Response, Failure> {
    let tenant = api.tenant(&headers)?;
    load_run(&api, &tenant, &id).await?;
    let items = api.runner.store().items(&tenant, &id).await?;
    Ok(reply(StatusCode::OK, json!({"items": to_value(&items)})))
}

async fn resume_run(
    State(api): Api,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Result<Response, Failure> {
    let tenant = api.tenant(&headers)?;
    let run = load_run(&api, &tenant, &id).await?;
    if matches!(
        run.status,
        agentwire_evals::Status::Finished | agentwire_evals::Status::Failed
    ) {
        return Err(Failure(
            StatusCode::CONFLICT,
            format!(
                "run {id} is {}: only a queued or interrupted run can be resumed; start a new run",
                run.status.as_str()
            ),
        ));
    }
    api.launch.launch(&tenant, &id);
    Ok(reply(StatusCode::ACCEPTED, json!({"run": to_value(&run)})))
}

async fn run_report(
    State(api): Api,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Result<Response, Failure> {
    let tenant = api.tenant(&headers)?;
    load_run(&api, &tenant, &id).await?;
    let page = api
        .runner
        .store()
        .report(&tenant, &id)
        .await?
        .ok_or_else(|| {
            Failure(
                StatusCode::NOT_FOUND,
                format!("run {id} has no report yet: it is written when the run finishes"),
            )
        })?;
    Ok((
        StatusCode::OK,
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            // Self-contained: nothing on the page loads or runs anything.
            (
                header::CONTENT_SECURITY_POLICY,
                "default-src 'none'; style-src 'unsafe-inline'",
            ),
        ],
        page,
    )
        .into_response())
}

#[derive(Deserialize)]
struct CompareQuery {
    a: String,
    b: String,
    min_delta: Option<f64>,
}

async fn compare_runs(
    State(api): Api,
    Query(query): Query<CompareQuery>,
    headers: HeaderMap,
) -> Result<Response, Failure> {
    let tenant = api.tenant(&headers)?;
    let min_delta = query
        .min_delta
        .unwrap_or(agentwire_evals::compare::DEFAULT_MIN_DELTA);
    if !(min_delta.is_finite() && min_delta > 0.0) {
        return Err(bad("min_delta must be a positive number"));
    }
    let mut sides = Vec::new();
    for id in [&query.a, &query.b] {
        let run = load_run(&api, &tenant, id).await?;
        if run.status != agentwire_evals::Status::Finished {
            return Err(Failure(
                StatusCode::CONFLICT,
                format!(
                    "run {id} is {}, not finished: only finished runs compare",
                    run.status.as_str()
                ),
            ));
        }
        // A finished run's results are one object; older runs fall back to the items.
        let store = api.runner.store();
        let items = match store.results(&tenant, id).await? {
            Some(items) => items,
            None => store.items(&tenant, id).await?,
        };
        sides.push((run, items));
    }
    let comparison = compare(
        &sides[0].0,
        &sides[0].1,
        &sides[1].0,
        &sides[1].1,
        min_delta,
    );
    Ok(reply(StatusCode::OK, to_value(&comparison)))
}
