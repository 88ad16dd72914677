//! The handlers: authenticate, parse, call the service, answer JSON. Errors are
//! `{"error": "<message>"}` with the status of their kind (see the crate docs).

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use agentwire_auth::{Action, Auth, AuthError, Principal, Role, bearer};
use agentwire_grading::{GradingError, Rubric};
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::response::{IntoResponse, Response};
use http::{HeaderMap, StatusCode, header};
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

use crate::service::{Actor, CreateQueue, GradingService, SubmitGrade};

pub(crate) struct Api {
    pub(crate) service: GradingService,
    pub(crate) auth: Auth,
}

/// An error answer.
#[derive(Debug)]
pub(crate) struct Failure {
    status: StatusCode,
    message: String,
}

impl Failure {
    fn new(status: StatusCode, message: impl Into<String>) -> Failure {
        Failure {
            status,
            message: message.into(),
        }
    }
}

impl IntoResponse for Failure {
    fn into_response(self) -> Response {
        if self.status.is_server_error() {
            tracing::error!(status = %self.status, error = %self.message, "grading request failed");
        }
        let mut response =
            (self.status, json_body(&json!({"error": self.message}))).into_response();
        if self.status == StatusCode::UNAUTHORIZED {
            response.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                http::HeaderValue::from_static("Bearer"),
            );
        }
        response
    }
}

impl From<GradingError> for Failure {
    fn from(e: GradingError) -> Failure {
        let status = match &e {
            GradingError::Invalid { .. } => StatusCode::BAD_REQUEST,
            GradingError::NotFound(_) => StatusCode::NOT_FOUND,
            GradingError::Conflict(_) | GradingError::NotHeld(_) | GradingError::Closed(_) => {
                StatusCode::CONFLICT
            }
            GradingError::NotAGrader(_) => StatusCode::FORBIDDEN,
            GradingError::Storage(_) => StatusCode::SERVICE_UNAVAILABLE,
        };
        Failure::new(status, e.to_string())
    }
}

impl From<AuthError> for Failure {
    fn from(e: AuthError) -> Failure {
        let status = if e.is_unauthenticated() {
            StatusCode::UNAUTHORIZED
        } else {
            StatusCode::FORBIDDEN
        };
        Failure::new(status, e.to_string())
    }
}

fn json_body(value: &Value) -> ([(header::HeaderName, &'static str); 1], String) {
    (
        [(header::CONTENT_TYPE, "application/json")],
        value.to_string(),
    )
}

fn reply(status: StatusCode, value: Value) -> Response {
    (status, json_body(&value)).into_response()
}

fn to_value(value: impl serde::Serialize) -> Result<Value, Failure> {
    serde_json::to_value(value)
        .map_err(|e| Failure::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))
}

/// A JSON body as `T`; the error names where it went wrong (serde's message names the
/// field and position, never more of the input than the offending token).
fn parse<T: DeserializeOwned>(body: &Bytes) -> Result<T, Failure> {
    serde_json::from_slice(body).map_err(|e| {
        Failure::new(
            StatusCode::BAD_REQUEST,
            format!("the body is not valid here: {e}"),
        )
    })
}

fn now_s() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or_default()
}

/// Owners read any trace of the tenant into a queue, so only a token for every session
/// (`*`) may own queues: an admin of some sessions would otherwise read the others.
fn tenant_wide(sessions: &str) -> Result<(), Failure> {
    if sessions == "*" {
        return Ok(());
    }
    Err(Failure::new(
        StatusCode::FORBIDDEN,
        format!(
            "this admin token covers sessions {sessions:?} only; owning queues needs an admin token for every session of the tenant (*)"
        ),
    ))
}

impl Api {
    fn principal(&self, headers: &HeaderMap) -> Result<Principal, Failure> {
        let token = bearer(
            headers
                .get(header::AUTHORIZATION)
                .and_then(|v| v.to_str().ok()),
        );
        Ok(self.auth.authenticate(token, now_s())?)
    }

    /// The tenant of an owner's call: a tenant-wide admin token is needed.
    fn owner(&self, headers: &HeaderMap) -> Result<String, Failure> {
        let principal = self.principal(headers)?;
        if principal.claims.role != Role::Admin {
            return Err(Failure::new(
                StatusCode::FORBIDDEN,
                format!(
                    "role {} may not manage rubrics and queues: an admin token of the tenant is needed",
                    principal.claims.role
                ),
            ));
        }
        tenant_wide(&principal.claims.sessions)?;
        Ok(principal.claims.tenant)
    }

    /// Who acts on `queue`: an admin (its owner; grading as their `u`, if any), or a grader
    /// whose token's scope covers the queue. Scope is checked before the queue is looked
    /// up, so another queue is refused alike whether it exists or not.
    fn actor(&self, headers: &HeaderMap, queue: &str) -> Result<Actor, Failure> {
        let principal = self.principal(headers)?;
        let claims = principal.claims.clone();
        match claims.role {
            Role::Admin => tenant_wide(&claims.sessions).map(|()| Actor {
                tenant: claims.tenant,
                grader: claims.user.filter(|u| !u.is_empty()),
                owner: true,
            }),
            Role::Grader => {
                principal
                    .authorize(queue, Action::Grade)
                    .map_err(|e| match e {
                        AuthError::OutOfScope(_) => Failure::new(
                            StatusCode::FORBIDDEN,
                            format!("this grader token does not cover queue {queue:?}"),
                        ),
                        other => other.into(),
                    })?;
                Ok(Actor {
                    tenant: claims.tenant,
                    grader: claims.user,
                    owner: false,
                })
            }
            role => Err(AuthError::RoleForbids {
                role,
                action: Action::Grade,
            }
            .into()),
        }
    }
}

type Api_ = State<Arc<Api>>;

/// `PUT /v1/rubrics/{name}/{version}`.
pub(crate) async fn put_rubric(
    State(api): Api_,
    Path((name, version)): Path<(String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, Failure> {
    let tenant = api.owner(&headers)?;
    let version: u32 = version.parse().map_err(|_| {
        Failure::new(
            StatusCode::BAD_REQUEST,
            format!("version {version:?} is not a number from 1"),
        )
    })?;
    let rubric: Rubric = parse(&body)?;
    let created = api
        .service
        .put_rubric(&tenant, &name, version, &rubric)
        .await?;
    let status = if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok(reply(status, json!({"rubric": rubric})))
}

/// `GET /v1/rubrics/{name}?version=`: a version, or the latest.
pub(crate) async fn get_rubric(
    State(api): Api_,
    Path(name): Path<String>,
    Query(query): Query<Vec<(String, String)>>,
    headers: HeaderMap,
) -> Result<Response, Failure> {
    let tenant = api.owner(&headers)?;
    let mut version = None;
    for (key, value) in &query {
        match key.as_str() {
            "version" => {
                version = Some(value.parse::<u32>().map_err(|_| {
                    Failure::new(
                        StatusCode::BAD_REQUEST,
                        format!("version={value:?} is not a number from 1"),
                    )
                })?)
            }
            other => {
                return Err(Failure::new(
                    StatusCode::BAD_REQUEST,
                    format!("unknown parameter {other:?}: expected version"),
                ));
            }
        }
    }
    let rubric = api
        .service
        .store()
        .rubric(&tenant, &name, version)
        .await?
        .ok_or_else(|| {
            GradingError::NotFound(match version {
                Some(v) => format!("no rubric {name:?} version {v}"),
                None => format!("no rubric {name:?}"),
            })
        })?;
    Ok(reply(StatusCode::OK, json!({"rubric": rubric})))
}

/// `POST /v1/queues`.
pub(crate) async fn create_queue(
    State(api): Api_,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, Failure> {
    let tenant = api.owner(&headers)?;
    let request: CreateQueue = parse(&body)?;
    let (spec, items, created) = api.service.create_queue(&tenant, request).await?;
    let status = if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok(reply(status, json!({"queue": spec, "items": items})))
}

/// `GET /v1/queues`.
pub(crate) async fn list_queues(State(api): Api_, headers: HeaderMap) -> Result<Response, Failure> {
    let tenant = api.owner(&headers)?;
    let queues = api.service.store().queues(&tenant).await?;
    Ok(reply(StatusCode::OK, json!({"queues": queues})))
}

/// `GET /v1/queues/{q}`: the spec and its progress.
pub(crate) async fn get_queue(
    State(api): Api_,
    Path(queue): Path<String>,
    headers: HeaderMap,
) -> Result<Response, Failure> {
    let tenant = api.owner(&headers)?;
    let spec = api.service.queue(&tenant, &queue).await?;
    let progress = api.service.progress(&tenant, &spec).await?;
    Ok(reply(
        StatusCode::OK,
        json!({"queue": spec, "progress": to_value(progress)?}),
    ))
}

/// `GET /v1/queues/{q}/grades`.
pub(crate) async fn grades(
    State(api): Api_,
    Path(queue): Path<String>,
    headers: HeaderMap,
) -> Result<Response, Failure> {
    let tenant = api.owner(&headers)?;
    api.service.queue(&tenant, &queue).await?;
    let grades = api.service.store().grades(&tenant, &queue).await?;
    Ok(reply(StatusCode::OK, json!({"grades": grades})))
}

/// `POST /v1/queues/{q}/claim`.
pub(crate) async fn claim(
    State(api): Api_,
    Path(queue): Path<String>,
    headers: HeaderMap,
) -> Result<Response, Failure> {
    let actor = api.actor(&headers, &queue)?;
    let (claim, progress) = api.service.claim(&actor, &queue).await?;
    Ok(reply(
        StatusCode::OK,
        json!({"claim": claim, "progress": to_value(progress)?}),
    ))
}

/// `GET /v1/queues/{q}/items/{trace_id}`.
pub(crate) async fn item(
    State(api): Api_,
    Path((queue, trace_id)): Path<(String, String)>,
    headers: HeaderMap,
) -> Result<Response, Failure> {
    let actor = api.actor(&headers, &queue)?;
    let view = api.service.item(&actor, &queue, &trace_id).await?;
    Ok(reply(StatusCode::OK, to_value(view)?))
}

/// `PUT /v1/queues/{q}/items/{trace_id}/draft`: any JSON, kept verbatim.
pub(crate) async fn draft(
    State(api): Api_,
    Path((queue, trace_id)): Path<(String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, Failure> {
    let actor = api.actor(&headers, &queue)?;
    let max = agentwire_grading::grade::MAX_DRAFT;
    if body.len() > max {
        return Err(Failure::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("the draft is {} bytes: at most {max}", body.len()),
        ));
    }
    let body: Value = parse(&body)?;
    api.service
        .save_draft(&actor, &queue, &trace_id, body)
        .await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// `POST /v1/queues/{q}/items/{trace_id}/grade`.
pub(crate) async fn grade(
    State(api): Api_,
    Path((queue, trace_id)): Path<(String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, Failure> {
    let actor = api.actor(&headers, &queue)?;
    let request: SubmitGrade = parse(&body)?;
    let submitted = api
        .service
        .submit(&actor, &queue, &trace_id, request)
        .await?;
    Ok(reply(StatusCode::CREATED, to_value(submitted)?))
}

/// `GET /v1/queues/{q}/agreement`.
pub(crate) async fn agreement(
    State(api): Api_,
    Path(queue): Path<String>,
    headers: HeaderMap,
) -> Result<Response, Failure> {
    let tenant = api.owner(&headers)?;
    let agreement = api.service.agreement(&tenant, &queue).await?;
    Ok(reply(StatusCode::OK, to_value(agreement)?))
}
