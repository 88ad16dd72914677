//! The connection settings shared by agents and feeds.

use agentwire_session::Offset;
use reqwest::StatusCode;
use serde_json::Value;

use crate::error::SdkError;

/// Where agentwire is and which token to present.
#[derive(Clone, Debug)]
pub struct Client {
    pub(crate) http: reqwest::Client,
    base: String,
    pub(crate) token: Option<String>,
}

/// Events read over HTTP, with their offsets.
pub(crate) struct Page {
    pub events: Vec<(Offset, Value)>,
    pub next: Offset,
    pub up_to_date: bool,
}

impl Client {
    /// A client for the server at `base_url` (e.g. `http://127.0.0.1:8787`).
    pub fn new(base_url: impl Into<String>, token: Option<String>) -> Client {
        Client {
            http: reqwest::Client::new(),
            base: base_url.into().trim_end_matches('/').to_owned(),
            token,
        }
    }

    pub(crate) fn stream_url(&self, session: &str) -> String {
        format!("{}/v1/stream/{session}", self.base)
    }

    pub(crate) fn ws_url(&self) -> String {
        let base = self
            .base
            .replacen("https://", "wss://", 1)
            .replacen("http://", "ws://", 1);
        match &self.token {
            Some(token) => format!("{base}/ws?token={token}"),
            None => format!("{base}/ws"),
        }
    }

    pub(crate) fn authorized(&self, request: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
        match &self.token {
            Some(token) => request.bearer_auth(token),
            None => request,
        }
    }

    /// Creates the JSON session if it does not exist yet; returns its tail.
    pub(crate) async fn ensure(&self, session: &str) -> Result<Offset, SdkError> {
        let request = self
            .http
            .put(self.stream_url(session))
            .header("content-type", "application/json");
        let response = self.authorized(request).send().await?;
        let response = refuse_unless_ok(response).await?;
        next_offset(&response)
    }

    /// Reads the events from `from` (one page).
    pub(crate) async fn read(&self, session: &str, from: Offset) -> Result<Page, SdkError> {
        self.page(session, from, false).await
    }

    /// Events from `from`, waiting (long-poll) when there are none yet; returns them with
    /// the offset to continue from (no events: none came in time).
    pub async fn wait_events(
        &self,
        session: &str,
        from: Offset,
    ) -> Result<(Vec<(Offset, Value)>, Offset), SdkError> {
        let page = self.wait(session, from).await?;
        Ok((page.events, page.next))
    }

    /// Waits (long-poll) for events from `from`; an empty page means none came in time.
    pub(crate) async fn wait(&self, session: &str, from: Offset) -> Result<Page, SdkError> {
        self.page(session, from, true).await
    }

    async fn page(&self, session: &str, from: Offset, live: bool) -> Result<Page, SdkError> {
        let mode = if live { "&live=long-poll" } else { "" };
        let url = format!("{}?offset={from}{mode}", self.stream_url(session));
        let response = refuse_unless_ok(self.authorized(self.http.get(url)).send().await?).await?;
        let next = next_offset(&response)?;
        // A long-poll answers only when caught up; a catch-up read says so in a header.
        let up_to_date = live || response.headers().contains_key("stream-up-to-date");
        let events: Vec<Value> = if response.status() == StatusCode::NO_CONTENT {
            Vec::new()
        } else {
            response.json().await?
        };
        Ok(Page {
            events: events
                .into_iter()
                .enumerate()
                .map(|(i, event)| (from.advance(i as u64), event))
                .collect(),
            next,
            up_to_date,
        })
    }
}

pub(crate) async fn refuse_unless_ok(
    response: reqwest::Response,
) -> Result<reqwest::Response, SdkError> {
    if response.status().is_success() {
        return Ok(response);
    }
    let status = response.status().as_u16();
    let message = response.text().await.unwrap_or_default().trim().to_owned();
    Err(SdkError::Refused { status, message })
}

pub(crate) fn next_offset(response: &reqwest::Response) -> Result<Offset, SdkError> {
    let header = response
        .headers()
        .get("stream-next-offset")
        .and_then(|v| v.to_str().ok())
        .ok_or_else(|| SdkError::Protocol("response without Stream-Next-Offset".into()))?;
    Offset::parse(header).map_err(|e| SdkError::Protocol(e.to_string()))
}
