//! The nightly report pages: `GET /reports` lists the tenant's days, `GET /reports/{day}`
//! is one day's page as the clusters job stored it. A browser opens them from a link, so
//! the token may come as `?token=` as well as in `Authorization`; the index's links carry
//! it on. Pages are self-contained and served with a CSP that lets nothing load or run.

use std::sync::Arc;

use agentwire_auth::bearer;
use agentwire_session::path::encode_segment;
use axum::extract::{Path, Query, State};
use axum::response::{IntoResponse, Response};
use http::{HeaderMap, StatusCode, header};
use serde::Deserialize;

use crate::{EvalsApi, Failure};

#[derive(Deserialize)]
pub(crate) struct TokenQuery {
    token: Option<String>,
}

const CSP: &str = "default-src 'none'; style-src 'unsafe-inline'";

fn html(body: Vec<u8>) -> Response {
    (
        StatusCode::OK,
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (header::CONTENT_SECURITY_POLICY, CSP),
            // The token may be in the address: never send it on as a referrer.
            (header::REFERRER_POLICY, "no-referrer"),
            (header::CACHE_CONTROL, "private, no-store"),
        ],
        body,
    )
        .into_response()
}

fn tenant(api: &EvalsApi, headers: &HeaderMap, query: &TokenQuery) -> Result<String, Failure> {
    let header = bearer(
        headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok()),
    );
    api.tenant_of(header.or(query.token.as_deref()))
}

fn is_day(day: &str) -> bool {
    day.len() == 10
        && day.bytes().enumerate().all(|(i, b)| {
            if i == 4 || i == 7 {
                b == b'-'
            } else {
                b.is_ascii_digit()
            }
        })
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

pub(crate) async fn index(
    State(api): State<Arc<EvalsApi>>,
    headers: HeaderMap,
    Query(query): Query<TokenQuery>,
) -> Result<Response, Failure> {
    let tenant = tenant(&api, &headers, &query)?;
    let suffix = format!("/tenant={}/index.html", encode_segment(&tenant));
    let mut days: Vec<String> = api
        .archive
        .list("reports/dt=")
        .await
        .map_err(|e| Failure(StatusCode::SERVICE_UNAVAILABLE, e.to_string()))?
        .into_iter()
        .filter_map(|k| {
            k.strip_suffix(&suffix)?
                .strip_prefix("reports/dt=")
                .map(str::to_owned)
        })
        .collect();
    days.reverse();
    let carry = query
        .token
        .as_deref()
        .map(|t| format!("?token={}", encode_segment(t)))
        .unwrap_or_default();
    let items: String = days
        .iter()
        .map(|d| {
            format!(
                "<li><a href=\"/reports/{d}{}\">{d}</a></li>",
                escape(&carry)
            )
        })
        .collect();
    let body = format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><meta name=\"viewport\" content=\"width=device-width, initial-scale=1\"><title>Reports: {t}</title><style>body{{margin:0 auto;max-width:40rem;padding:1rem;font:16px/1.5 system-ui,sans-serif}}a:focus{{outline:3px solid #0969da}}</style></head><body><main><h1>Reports of {t}</h1>{list}</main></body></html>",
        t = escape(&tenant),
        list = if days.is_empty() {
            "<p>No report yet: the clusters job writes one after each night it clusters.</p>"
                .to_owned()
        } else {
            format!("<p>Newest first.</p><ul>{items}</ul>")
        }
    );
    Ok(html(body.into_bytes()))
}

pub(crate) async fn page(
    State(api): State<Arc<EvalsApi>>,
    Path(day): Path<String>,
    headers: HeaderMap,
    Query(query): Query<TokenQuery>,
) -> Result<Response, Failure> {
    let tenant = tenant(&api, &headers, &query)?;
    if !is_day(&day) {
        return Err(Failure(
            StatusCode::BAD_REQUEST,
            format!("{day:?} is not a day (YYYY-MM-DD)"),
        ));
    }
    let key = format!(
        "reports/dt={day}/tenant={}/index.html",
        encode_segment(&tenant)
    );
    match api
        .archive
        .get(&key)
        .await
        .map_err(|e| Failure(StatusCode::SERVICE_UNAVAILABLE, e.to_string()))?
    {
        Some(page) => Ok(html(page.to_vec())),
        None => Err(Failure(
            StatusCode::NOT_FOUND,
            format!("no report for {day}: the clusters job writes it after clustering that night"),
        )),
    }
}
