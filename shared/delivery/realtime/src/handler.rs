//! The WebSocket routes: `$connect`, `$disconnect`, and messages by `action`.

use std::sync::Arc;

use agentwire_auth::{Action, Auth, AuthError, Principal, bearer};
use agentwire_session::events::{ControlKind, Envelope};
use agentwire_session::{
    AppendError, Clock, Mode, ReadError, ReadFrom, Sessions, SystemClock, events_of,
};
use aws_lambda_events::apigw::{ApiGatewayProxyResponse, ApiGatewayWebsocketProxyRequest};
use aws_lambda_events::encodings::Body;
use bytes::Bytes;
use serde::Deserialize;
use serde_json::{Value, json};
use tracing::{debug, instrument};

use crate::closing;
use crate::frames::{self, MAX_FRAME_BYTES};
use crate::ports::{ClientPush, Connection, ConnectionRegistry, PushError};
use crate::presence::{self, append_events};
use crate::{client_name, fanout};

/// The longest `client_message_id` a `send` may carry.
const MAX_CLIENT_MESSAGE_ID: usize = 256;

/// The WebSocket service: one instance serves every connection.
#[derive(Clone)]
pub struct Realtime {
    sessions: Sessions,
    registry: Arc<dyn ConnectionRegistry>,
    push: Arc<dyn ClientPush>,
    auth: Auth,
}

/// Why a request was refused: a code for programs and a message for people.
#[derive(Debug)]
struct Refusal {
    code: &'static str,
    message: String,
}

impl Refusal {
    fn new(code: &'static str, message: impl Into<String>) -> Refusal {
        Refusal {
            code,
            message: message.into(),
        }
    }
}

impl From<AuthError> for Refusal {
    fn from(e: AuthError) -> Refusal {
        let code = if e.is_unauthenticated() {
            "unauthorized"
        } else {
            "forbidden"
        };
        Refusal::new(code, e.to_string())
    }
}

impl From<ReadError> for Refusal {
    fn from(e: ReadError) -> Refusal {
        let code = match &e {
            ReadError::NotFound(_) | ReadError::Gone(_) => "not_found",
            ReadError::Protocol(_) => "bad_request",
            ReadError::Storage(_) => "unavailable",
        };
        Refusal::new(code, e.to_string())
    }
}

impl From<AppendError> for Refusal {
    fn from(e: AppendError) -> Refusal {
        let code = match &e {
            AppendError::NotFound(_) | AppendError::Gone(_) => "not_found",
            AppendError::Storage(_) => "unavailable",
            AppendError::Protocol(_) => "bad_request",
            _ => "conflict",
        };
        Refusal::new(code, e.to_string())
    }
}

impl From<crate::ports::RegistryError> for Refusal {
    fn from(e: crate::ports::RegistryError) -> Refusal {
        Refusal::new("unavailable", e.to_string())
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SubscribeRequest {
    session: String,
    offset: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SessionRequest {
    session: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ControlRequest {
    session: String,
    kind: String,
    data: Option<Value>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SendRequest {
    session: String,
    text: String,
    /// The client's correlation id, echoed in the ack; never the stored message id (which
    /// would let a user write into another author's message). `message_id` is its old name.
    #[serde(alias = "message_id")]
    client_message_id: Option<String>,
}

fn response(status: i64, body: Option<String>) -> ApiGatewayProxyResponse {
    let mut response = ApiGatewayProxyResponse::default();
    response.status_code = status;
    response.body = body.map(Body::Text);
    response
}

fn now_s() -> i64 {
    SystemClock.now_ms() / 1000
}

impl Realtime {
    pub fn new(
        sessions: Sessions,
        registry: Arc<dyn ConnectionRegistry>,
        push: Arc<dyn ClientPush>,
        auth: Auth,
    ) -> Realtime {
        Realtime {
            sessions,
            registry,
            push,
            auth,
        }
    }

    /// Handles one API Gateway WebSocket event.
    pub async fn handle(&self, event: ApiGatewayWebsocketProxyRequest) -> ApiGatewayProxyResponse {
        let context = &event.request_context;
        let Some(connection_id) = context.connection_id.clone() else {
            return response(400, Some("event has no connectionId".into()));
        };
        match context.route_key.as_deref() {
            Some("$connect") => self.connect(connection_id, &event).await,
            Some("$disconnect") => self.disconnect(&connection_id).await,
            _ => {
                self.message(&connection_id, event.body.as_deref().unwrap_or_default())
                    .await;
                response(200, None)
            }
        }
    }

    /// `$connect`: a valid token is the price of a connection.
    #[instrument(skip_all, fields(connection = %connection_id))]
    async fn connect(
        &self,
        connection_id: String,
        event: &ApiGatewayWebsocketProxyRequest,
    ) -> ApiGatewayProxyResponse {
        let query = &event.query_string_parameters;
        let header = event
            .headers
            .get("authorization")
            .and_then(|v| v.to_str().ok());
        // The header wins, as over HTTP: a URL (and so its token) is more often logged.
        let token = bearer(header).or_else(|| query.first("token"));
        let mut principal = match self.auth.authenticate(token, now_s()) {
            Ok(principal) => principal,
            Err(e) => {
                let status = if e.is_unauthenticated() { 401 } else { 403 };
                return response(status, Some(e.to_string()));
            }
        };
        // A connection is for following sessions: a role that may read none (`ingest`)
        // has no use for one, so it is refused up front rather than holding a socket.
        if !principal.claims.role.allows(Action::Read) {
            let refused = AuthError::RoleForbids {
                role: principal.claims.role,
                action: Action::Read,
            };
            return response(403, Some(refused.to_string()));
        }
        if let (Auth::Insecure { .. }, Some(user)) = (&self.auth, query.first("user")) {
            // Without tokens there is no identity; let local clients name themselves.
            principal.claims.user = Some(user.to_owned());
        }
        let connection = Connection {
            id: connection_id,
            claims: principal.claims,
            connected_at_ms: SystemClock.now_ms(),
        };
        match self.registry.connect(connection).await {
            Ok(()) => response(200, None),
            Err(e) => response(500, Some(e.to_string())),
        }
    }

    /// `$disconnect`: forget the connection and say it left. Never a cancel.
    #[instrument(skip_all, fields(connection = %connection_id))]
    async fn disconnect(&self, connection_id: &str) -> ApiGatewayProxyResponse {
        if let Ok(Some(gone)) = self.registry.disconnect(connection_id).await {
            presence::disconnected(&self.sessions, &gone).await;
        }
        response(200, None)
    }

    async fn send(&self, connection_id: &str, frame: Bytes) -> Result<(), PushError> {
        self.push.post(connection_id, frame).await
    }

    /// A client message: parse, check, act, and answer through the push port.
    #[instrument(skip_all, fields(connection = %connection_id))]
    async fn message(&self, connection_id: &str, body: &str) {
        let parsed: Result<Value, _> = if body.len() > MAX_FRAME_BYTES {
            Err(Refusal::new(
                "too_large",
                format!(
                    "message of {} bytes exceeds the {MAX_FRAME_BYTES}-byte limit",
                    body.len()
                ),
            ))
        } else if let Err(e) = agentwire_session::check_depth(body.as_bytes()) {
            // The same nesting limit as HTTP appends, checked before parsing.
            Err(Refusal::new("bad_request", e.to_string()))
        } else {
            serde_json::from_str(body)
                .map_err(|e| Refusal::new("bad_request", format!("message is not JSON: {e}")))
        };
        let request = match parsed {
            Ok(Value::Object(request)) => request,
            Ok(_) => {
                let frame =
                    frames::error("bad_request", "message must be a JSON object", None, None);
                let _ = self.send(connection_id, frame).await;
                return;
            }
            Err(refusal) => {
                let _ = self
                    .send(
                        connection_id,
                        frames::error(refusal.code, &refusal.message, None, None),
                    )
                    .await;
                return;
            }
        };
        let id = request.get("id").cloned();
        let action = request
            .get("action")
            .and_then(Value::as_str)
            .map(str::to_owned);
        let mut fields = request;
        fields.remove("id");
        fields.remove("action");
        let result = match action.as_deref() {
            None => Err(Refusal::new("bad_request", "missing string field `action`")),
            Some(action) => {
                self.dispatch(connection_id, action, Value::Object(fields), id.as_ref())
                    .await
            }
        };
        if let Err(refusal) = result {
            debug!(code = refusal.code, "request refused");
            let frame = frames::error(
                refusal.code,
                &refusal.message,
                action.as_deref(),
                id.as_ref(),
            );
            let _ = self.send(connection_id, frame).await;
        }
    }

    async fn dispatch(
        &self,
        connection_id: &str,
        action: &str,
        fields: Value,
        id: Option<&Value>,
    ) -> Result<(), Refusal> {
        let connection = self
            .registry
            .get(connection_id)
            .await?
            .ok_or_else(|| Refusal::new("unauthorized", "unknown connection: connect again"))?;
        if connection.claims.exp <= now_s() {
            let exp = connection.claims.exp;
            if closing::expire(self.push.as_ref(), connection_id, exp, Some(action), id)
                .await
                .is_err()
            {
                fanout::forget(&self.sessions, self.registry.as_ref(), connection_id).await;
            }
            return Ok(());
        }
        // A connection admitted before tenant names were checked must not act on one.
        connection
            .claims
            .validate()
            .map_err(|e| Refusal::from(AuthError::InvalidTenant(e)))?;
        let principal = Principal {
            claims: connection.claims.clone(),
        };
        let parse = |e: serde_json::Error| {
            Refusal::new("bad_request", format!("invalid {action} request: {e}"))
        };
        match action {
            "subscribe" => {
                let request: SubscribeRequest = serde_json::from_value(fields).map_err(parse)?;
                self.subscribe(&connection, &principal, request, id).await
            }
            "unsubscribe" => {
                let request: SessionRequest = serde_json::from_value(fields).map_err(parse)?;
                self.unsubscribe(&connection, &principal, request, id).await
            }
            "control" => {
                let request: ControlRequest = serde_json::from_value(fields).map_err(parse)?;
                self.control(&connection, &principal, request, id).await
            }
            "send" => {
                let request: SendRequest = serde_json::from_value(fields).map_err(parse)?;
                self.user_message(&connection, &principal, request, id)
                    .await
            }
            "presence" => {
                let request: SessionRequest = serde_json::from_value(fields).map_err(parse)?;
                self.presence(&connection, &principal, request, id).await
            }
            "ping" => self.ping(&connection, id).await,
            other => Err(Refusal::new(
                "bad_request",
                format!(
                    "unknown action {other:?}: expected subscribe, unsubscribe, control, send, presence or ping"
                ),
            )),
        }
    }

    /// Resolves a client's session name to the stored one, checking the principal's rights.
    fn session(principal: &Principal, session: &str, action: Action) -> Result<String, Refusal> {
        if session.is_empty() || session.chars().any(char::is_control) {
            return Err(Refusal::new(
                "bad_request",
                format!("invalid session name {session:?}"),
            ));
        }
        principal.authorize(session, action)?;
        Ok(principal.stored_name(session))
    }

    /// Subscribe first, then replay: an event appended in between is pushed live or
    /// replayed (maybe both; clients dedupe by offset), never lost.
    async fn subscribe(
        &self,
        connection: &Connection,
        principal: &Principal,
        request: SubscribeRequest,
        id: Option<&Value>,
    ) -> Result<(), Refusal> {
        let stored = Self::session(principal, &request.session, Action::Read)?;
        let from = ReadFrom::parse(Some(request.offset.as_deref().unwrap_or("-1")))
            .map_err(|e| Refusal::new("bad_request", e.to_string()))?;
        let info = self.sessions.head(&stored).await?;
        if Mode::of(&info.content_type) != Mode::Json {
            return Err(Refusal::new(
                "bad_request",
                format!(
                    "session {:?} is not a JSON session ({})",
                    request.session, info.content_type
                ),
            ));
        }
        let start = from.resolve(info.tail);
        let subscribed = self.registry.subscribe(&connection.id, &stored).await?;
        presence::announce(&self.sessions, &stored, connection, subscribed.announce).await;
        let subscribed =
            json!({"type": "subscribed", "session": request.session, "from": start.to_string()});
        if self
            .send(&connection.id, frames::reply(subscribed, id))
            .await
            .is_err()
        {
            return Ok(());
        }
        let mut at = start;
        loop {
            let batch = self
                .sessions
                .read(&stored, ReadFrom::At(at), 1024 * 1024)
                .await?;
            for frame in frames::event_frames(&request.session, &events_of(&batch)) {
                // A long replay may outlive the token: nothing goes out after expiry.
                let ended = if connection.claims.exp <= now_s() {
                    let exp = connection.claims.exp;
                    closing::expire(self.push.as_ref(), &connection.id, exp, None, None).await
                } else {
                    match self.send(&connection.id, frame).await {
                        Ok(()) => continue,
                        Err(PushError::Gone(id)) => Err(PushError::Gone(id)),
                        // A missed frame is never skipped silently: the client resumes.
                        Err(_) => closing::behind(self.push.as_ref(), &connection.id).await,
                    }
                };
                if ended.is_err() {
                    fanout::forget(&self.sessions, self.registry.as_ref(), &connection.id).await;
                }
                return Ok(());
            }
            if batch.up_to_date() || batch.next <= at {
                return Ok(());
            }
            at = batch.next;
        }
    }

    async fn unsubscribe(
        &self,
        connection: &Connection,
        principal: &Principal,
        request: SessionRequest,
        id: Option<&Value>,
    ) -> Result<(), Refusal> {
        let stored = principal.stored_name(&request.session);
        let unsubscribed = self.registry.unsubscribe(&connection.id, &stored).await?;
        presence::announce(&self.sessions, &stored, connection, unsubscribed.announce).await;
        let reply = json!({"type": "unsubscribed", "session": request.session});
        let _ = self.send(&connection.id, frames::reply(reply, id)).await;
        Ok(())
    }

    /// Control goes into the session's log, ordered with the output it refers to.
    async fn control(
        &self,
        connection: &Connection,
        principal: &Principal,
        request: ControlRequest,
        id: Option<&Value>,
    ) -> Result<(), Refusal> {
        let kind = ControlKind::parse(&request.kind);
        if !kind.is_known() {
            return Err(Refusal::new(
                "bad_request",
                format!(
                    "unknown control kind {:?}: expected cancel, steer, pause or resume",
                    request.kind
                ),
            ));
        }
        let stored = Self::session(principal, &request.session, Action::Control)?;
        let event = Envelope::control(&kind, request.data.unwrap_or_else(|| json!({})))
            .with_extra("user", principal.user())
            .with_extra("connection", connection.id.as_str());
        let appended = append_events(&self.sessions, &stored, &[event]).await?;
        let ack = json!({"type": "ack", "action": "control", "session": request.session, "offset": appended.start.to_string()});
        let _ = self.send(&connection.id, frames::reply(ack, id)).await;
        Ok(())
    }

    /// A user message: `message.start`, `message.delta` and `message.end` in one append.
    async fn user_message(
        &self,
        connection: &Connection,
        principal: &Principal,
        request: SendRequest,
        id: Option<&Value>,
    ) -> Result<(), Refusal> {
        let stored = Self::session(principal, &request.session, Action::Control)?;
        if let Some(client_id) = &request.client_message_id
            && (client_id.len() > MAX_CLIENT_MESSAGE_ID || client_id.chars().any(char::is_control))
        {
            return Err(Refusal::new(
                "bad_request",
                format!(
                    "invalid client_message_id: at most {MAX_CLIENT_MESSAGE_ID} bytes, no control characters"
                ),
            ));
        }
        // Always the server's id, so a user can never write into another author's message.
        let message_id = format!("u_{:016x}{:016x}", fastrand::u64(..), fastrand::u64(..));
        let events = Envelope::user_message(&message_id, principal.user(), request.text);
        let appended = append_events(&self.sessions, &stored, &events).await?;
        let mut ack = json!({
            "type": "ack",
            "action": "send",
            "session": request.session,
            "message_id": message_id,
            "offset": appended.start.to_string(),
        });
        if let Some(client_id) = request.client_message_id {
            ack["client_message_id"] = json!(client_id);
        }
        let _ = self.send(&connection.id, frames::reply(ack, id)).await;
        Ok(())
    }

    /// `pong` with the tail of every session the connection follows.
    async fn ping(&self, connection: &Connection, id: Option<&Value>) -> Result<(), Refusal> {
        let mut tails = serde_json::Map::new();
        for stored in self.registry.subscriptions(&connection.id).await? {
            // A session deleted since has no tail; the client learns that when it reads.
            if let Ok(info) = self.sessions.head(&stored).await {
                tails.insert(
                    client_name(&stored).to_owned(),
                    json!(info.tail.to_string()),
                );
            }
        }
        let pong = json!({"type": "pong", "tails": tails});
        let _ = self.send(&connection.id, frames::reply(pong, id)).await;
        Ok(())
    }

    async fn presence(
        &self,
        connection: &Connection,
        principal: &Principal,
        request: SessionRequest,
        id: Option<&Value>,
    ) -> Result<(), Refusal> {
        let stored = Self::session(principal, &request.session, Action::Read)?;
        let members = self.registry.presence(&stored).await?;
        let reply = json!({"type": "presence", "session": request.session, "members": members});
        let _ = self.send(&connection.id, frames::reply(reply, id)).await;
        Ok(())
    }
}
