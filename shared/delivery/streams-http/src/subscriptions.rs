//! The reserved control routes under `/v1/stream/__ds/`: the webhook key set, and
//! subscriptions (create, read, delete, explicit streams, webhook callbacks, and
//! pull-wake claims, acks and releases). Thin: auth and parsing here, the rest in
//! [`agentwire_dispatch::Dispatch`]. Errors are the protocol's `{"error": {"code", …}}`.

use agentwire_auth::{Action, Principal, bearer};
use agentwire_dispatch::{DispatchError, glob};
use agentwire_session::{Clock, SystemClock};
use axum::body::Body;
use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};
use http::{HeaderMap, Method, StatusCode, header};
use serde_json::Value;

use crate::AppState;
use crate::error::ApiError;

/// A JSON response (axum's `Json` would need its `json` feature for this alone).
fn json(status: StatusCode, value: Value) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "application/json")],
        value.to_string(),
    )
        .into_response()
}

fn refused(e: DispatchError) -> Response {
    let status = StatusCode::from_u16(e.status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    if status.is_server_error() {
        tracing::error!(error = %e, "subscription request failed");
    }
    json(status, e.body())
}

fn not_found(message: &str) -> Response {
    let body = serde_json::json!({"error": {"code": "SUBSCRIPTION_NOT_FOUND", "message": message}});
    json(StatusCode::NOT_FOUND, body)
}

/// The server's URL as the client reached it: where callbacks and the key set are.
fn base_url(headers: &HeaderMap) -> Result<String, DispatchError> {
    let host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .ok_or_else(|| DispatchError::invalid("the request has no Host header"))?;
    let scheme = headers
        .get("x-forwarded-proto")
        .and_then(|h| h.to_str().ok())
        .filter(|p| *p == "https" || *p == "http")
        .unwrap_or("http");
    Ok(format!("{scheme}://{host}"))
}

/// Managing a subscription takes a role that may append (an agent's or an owner's), and
/// a scope covering its streams: the explicit ones and the wake stream by name, the
/// pattern as a whole (a prefix scope must be a prefix of the pattern's literal start; an
/// exact scope covers only that name).
fn check_scope(principal: &Principal, body: &[u8]) -> Result<(), ApiError> {
    check_role(principal, Action::Append)?;
    let Ok(value) = serde_json::from_slice::<Value>(body) else {
        return Ok(()); // The service refuses it with the reason.
    };
    check_scope_of(principal, &value, Action::Append)
}

/// [`check_scope`] of a request body or of a stored subscription's view (whose streams
/// are objects with a `path`).
fn check_scope_of(principal: &Principal, value: &Value, action: Action) -> Result<(), ApiError> {
    if let Some(pattern) = value["pattern"].as_str() {
        let scope = &principal.claims.sessions;
        let covered = match scope.strip_suffix('*') {
            Some(prefix) => glob::literal_prefix(pattern).starts_with(prefix),
            None => !pattern.contains('*') && pattern == scope,
        };
        if !covered {
            return Err(agentwire_auth::AuthError::OutOfScope(pattern.to_owned()).into());
        }
    }
    for name in value["streams"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|s| s.as_str().or_else(|| s["path"].as_str()))
    {
        principal.authorize(name.trim_matches('/'), action)?;
    }
    if let Some(wake) = value["wake_stream"].as_str() {
        principal.authorize(wake.trim_matches('/'), action)?;
    }
    Ok(())
}

fn check_role(principal: &Principal, action: Action) -> Result<(), ApiError> {
    if principal.claims.role.allows(action) {
        Ok(())
    } else {
        Err(agentwire_auth::AuthError::RoleForbids {
            role: principal.claims.role,
            action,
        }
        .into())
    }
}

pub(crate) async fn handle(
    State(app): State<AppState>,
    Path(rest): Path<String>,
    method: Method,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let Some(dispatch) = app.dispatch.clone() else {
        return Ok(not_found("subscriptions are not enabled on this server"));
    };
    if rest == "jwks.json" {
        if method != Method::GET {
            return Ok((StatusCode::METHOD_NOT_ALLOWED, [(header::ALLOW, "GET")]).into_response());
        }
        let mut response = json(StatusCode::OK, dispatch.jwks());
        let h = response.headers_mut();
        h.insert(
            header::CONTENT_TYPE,
            http::HeaderValue::from_static("application/jwk-set+json"),
        );
        h.insert(
            header::CACHE_CONTROL,
            http::HeaderValue::from_static("public, max-age=300"),
        );
        return Ok(response);
    }
    let Some(route) = rest.strip_prefix("subscriptions/") else {
        return Ok(not_found("no such Durable Streams control route"));
    };
    let (id, action) = route.split_once('/').unwrap_or((route, ""));
    let body =
        crate::stream::read_body(body, app.config.max_body_bytes, app.config.body_timeout).await?;
    let sessions = &app.sessions;
    let token = bearer(
        headers
            .get(header::AUTHORIZATION)
            .and_then(|h| h.to_str().ok()),
    );

    // A wake's own token authenticates its callback, ack and release.
    if let ("callback" | "ack" | "release", &Method::POST) = (action, &method) {
        let token = token.ok_or_else(|| ApiError::from(agentwire_auth::AuthError::Missing))?;
        let result = match action {
            "callback" => dispatch
                .callback(sessions, id, token, &body)
                .await
                .map(|v| json(StatusCode::OK, v)),
            "ack" => dispatch
                .ack(sessions, id, token, &body)
                .await
                .map(|v| json(StatusCode::OK, v)),
            _ => dispatch
                .release(sessions, id, token, &body)
                .await
                .map(|()| StatusCode::NO_CONTENT.into_response()),
        };
        return Ok(result.unwrap_or_else(refused));
    }

    let principal = app.auth.authenticate(token, SystemClock.now_ms() / 1000)?;
    let tenant = principal.claims.tenant.clone();
    let no_content = |()| StatusCode::NO_CONTENT.into_response();
    if !(action.is_empty() && method == Method::PUT) {
        // An existing subscription is the token's to use only if its scope covers it.
        let need = if method == Method::GET {
            Action::Read
        } else {
            Action::Append
        };
        check_role(&principal, need)?;
        match dispatch.get(&tenant, id).await {
            Ok(view) => check_scope_of(&principal, &view, need)?,
            // Deleting what is not there is done already.
            Err(DispatchError::NotFound) if action.is_empty() && method == Method::DELETE => {
                return Ok(StatusCode::NO_CONTENT.into_response());
            }
            Err(e) => return Ok(refused(e)),
        }
    }
    let result = match (action, &method) {
        ("", &Method::PUT) => {
            check_scope(&principal, &body)?;
            let base = base_url(&headers);
            match base {
                Err(e) => Err(e),
                Ok(base) => dispatch.put(sessions, &tenant, id, &body, &base).await.map(
                    |(created, view)| {
                        let status = if created {
                            StatusCode::CREATED
                        } else {
                            StatusCode::OK
                        };
                        json(status, view)
                    },
                ),
            }
        }
        ("", &Method::GET) => {
            check_role(&principal, Action::Read)?;
            dispatch
                .get(&tenant, id)
                .await
                .map(|v| json(StatusCode::OK, v))
        }
        ("", &Method::DELETE) => {
            check_role(&principal, Action::Append)?;
            dispatch.delete(&tenant, id).await.map(no_content)
        }
        ("streams", &Method::POST) => {
            check_scope(&principal, &body)?;
            dispatch
                .add_streams(sessions, &tenant, id, &body)
                .await
                .map(no_content)
        }
        (a, &Method::DELETE) if a.starts_with("streams/") => {
            check_role(&principal, Action::Append)?;
            let path = &a["streams/".len()..];
            dispatch
                .remove_stream(sessions, &tenant, id, path)
                .await
                .map(no_content)
        }
        ("claim", &Method::POST) => {
            check_role(&principal, Action::Append)?;
            dispatch
                .claim(sessions, &tenant, id, &body)
                .await
                .map(|v| json(StatusCode::OK, v))
        }
        _ => return Ok(not_found("no such subscription route")),
    };
    Ok(result.unwrap_or_else(refused))
}
