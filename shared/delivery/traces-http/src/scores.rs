//! Reading scores: `GET /v1/traces/{trace_id}/scores` (one trace's records) and
//! `GET /v1/scores?…` (a filtered listing, newest first, paged), from the score index.
//!
//! Any role that may read sessions may read their scores, within its tenant and the
//! sessions its token covers: a trace of an uncovered session is answered like a missing
//! one (404), and a listing leaves uncovered sessions' records out.

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use agentwire_auth::{Action, Auth, AuthError, Principal, bearer};
use agentwire_scoring::{IndexError, MAX_PAGE, ScoreFilter, ScoreIndex, ScoreRecord, Source};
use axum::extract::{Path, Query, State};
use axum::response::{IntoResponse, Response};
use http::{HeaderMap, StatusCode, header};
use serde_json::json;

/// A listing's page size when the request names none.
pub const DEFAULT_PAGE: usize = 100;

pub(crate) struct Scores {
    index: Arc<dyn ScoreIndex>,
    auth: Auth,
}

impl Scores {
    pub(crate) fn new(index: Arc<dyn ScoreIndex>, auth: Auth) -> Scores {
        Scores { index, auth }
    }

    fn principal(&self, headers: &HeaderMap) -> Result<Principal, Failure> {
        let token = bearer(
            headers
                .get(header::AUTHORIZATION)
                .and_then(|v| v.to_str().ok()),
        );
        let principal = self
            .auth
            .authenticate(token, now_s())
            .map_err(auth_failure)?;
        if !principal.claims.role.allows(Action::Read) {
            return Err(auth_failure(AuthError::RoleForbids {
                role: principal.claims.role,
                action: Action::Read,
            }));
        }
        Ok(principal)
    }
}

/// An error answer: a status and a message naming the problem, as plain text.
pub(crate) struct Failure {
    status: StatusCode,
    message: String,
}

impl IntoResponse for Failure {
    fn into_response(self) -> Response {
        if self.status.is_server_error() {
            tracing::error!(status = %self.status, error = %self.message, "scores request failed");
        }
        (
            self.status,
            [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
            format!("{}\n", self.message),
        )
            .into_response()
    }
}

fn auth_failure(e: AuthError) -> Failure {
    let status = if e.is_unauthenticated() {
        StatusCode::UNAUTHORIZED
    } else {
        StatusCode::FORBIDDEN
    };
    Failure {
        status,
        message: e.to_string(),
    }
}

fn bad_request(message: String) -> Failure {
    Failure {
        status: StatusCode::BAD_REQUEST,
        message,
    }
}

fn unavailable(e: impl ToString) -> Failure {
    Failure {
        status: StatusCode::SERVICE_UNAVAILABLE,
        message: e.to_string(),
    }
}

fn json_ok(body: serde_json::Value) -> Response {
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "application/json")],
        body.to_string(),
    )
        .into_response()
}

/// `GET /v1/traces/{trace_id}/scores`.
pub(crate) async fn trace(
    State(scores): State<Arc<Scores>>,
    Path(trace_id): Path<String>,
    headers: HeaderMap,
) -> Result<Response, Failure> {
    let principal = scores.principal(&headers)?;
    if trace_id.len() != 32 || !trace_id.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(bad_request(format!(
            "trace id {trace_id:?} is not 32 hex digits"
        )));
    }
    let trace_id = trace_id.to_ascii_lowercase();
    let records = scores
        .index
        .trace(&principal.claims.tenant, &trace_id)
        .await
        .map_err(unavailable)?;
    let records: Vec<ScoreRecord> = records
        .into_iter()
        .filter(|r| principal.claims.covers(&r.session))
        .collect();
    if records.is_empty() {
        return Err(Failure {
            status: StatusCode::NOT_FOUND,
            message: format!("no scores for trace {trace_id}"),
        });
    }
    Ok(json_ok(json!({"trace_id": trace_id, "scores": records})))
}

/// `GET /v1/scores?name=&label=&source=&since=&until=&max_value=&limit=&after=`.
pub(crate) async fn list(
    State(scores): State<Arc<Scores>>,
    Query(query): Query<Vec<(String, String)>>,
    headers: HeaderMap,
) -> Result<Response, Failure> {
    let principal = scores.principal(&headers)?;
    let filter = filter(&query)?;
    let page = scores
        .index
        .list(&principal.claims.tenant, &filter)
        .await
        .map_err(|e| match e {
            IndexError::BadCursor(message) => bad_request(format!("after: {message}")),
            other => unavailable(other),
        })?;
    let records: Vec<&ScoreRecord> = page
        .records
        .iter()
        .filter(|r| principal.claims.covers(&r.session))
        .collect();
    Ok(json_ok(json!({"scores": records, "next": page.next})))
}

/// The listing's filter from its query parameters; an unknown parameter or a bad value
/// is an error naming it.
fn filter(query: &[(String, String)]) -> Result<ScoreFilter, Failure> {
    let mut filter = ScoreFilter {
        limit: DEFAULT_PAGE,
        ..ScoreFilter::default()
    };
    let number = |name: &str, value: &str| {
        value
            .parse::<i64>()
            .map_err(|_| bad_request(format!("{name}={value:?} is not an integer")))
    };
    for (name, value) in query {
        match name.as_str() {
            "name" => filter.name = Some(value.clone()),
            "label" => filter.label = Some(value.clone()),
            "source" => {
                filter.source = Some(match value.as_str() {
                    "code" => Source::Code,
                    "judge" => Source::Judge,
                    "human" => Source::Human,
                    _ => {
                        return Err(bad_request(format!(
                            "source={value:?} is not one of code, judge, human"
                        )));
                    }
                })
            }
            "since" => filter.since_ms = Some(number(name, value)?),
            "until" => filter.until_ms = Some(number(name, value)?),
            "max_value" => {
                let max = value
                    .parse::<f64>()
                    .ok()
                    .filter(|v| v.is_finite())
                    .ok_or_else(|| bad_request(format!("max_value={value:?} is not a number")))?;
                filter.max_value = Some(max);
            }
            "limit" => {
                let limit = value
                    .parse::<usize>()
                    .ok()
                    .filter(|&n| (1..=MAX_PAGE).contains(&n))
                    .ok_or_else(|| {
                        bad_request(format!(
                            "limit={value:?} is not a number from 1 to {MAX_PAGE}"
                        ))
                    })?;
                filter.limit = limit;
            }
            "after" => filter.after = Some(value.clone()),
            _ => {
                return Err(bad_request(format!(
                    "unknown parameter {name:?}: expected name, label, source, since, until, max_value, limit or after"
                )));
            }
        }
    }
    Ok(filter)
}

fn now_s() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or_default()
}
