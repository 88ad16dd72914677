//! [`ClientPush`] on API Gateway's WebSocket management API: `PostToConnection`, where
//! `GoneException` (HTTP 410) means the client is gone and must be forgotten and
//! `LimitExceededException` (HTTP 429) that it is behind; `DeleteConnection` closes
//! (API Gateway cannot send a close code, so callers send an `error` frame first).

use agentwire_realtime::{ClientPush, PushError};
use async_trait::async_trait;
use aws_sdk_apigatewaymanagement::Client;
use aws_sdk_apigatewaymanagement::primitives::Blob;
use bytes::Bytes;
use tracing::instrument;

/// Pushes frames through API Gateway to its WebSocket clients.
pub struct ApiGatewayPush {
    client: Client,
}

impl ApiGatewayPush {
    /// Pushes through `client`, whose endpoint is the API's
    /// `https://{api-id}.execute-api.{region}.amazonaws.com/{stage}` (or a local gateway).
    pub fn new(client: Client) -> ApiGatewayPush {
        ApiGatewayPush { client }
    }
}

/// A client for a management endpoint with static credentials (the local gateway ignores
/// signatures; on AWS use the Lambda's role instead).
pub fn local_client(endpoint: &str) -> Client {
    use aws_sdk_apigatewaymanagement::config::{BehaviorVersion, Credentials, Region};
    let config = aws_sdk_apigatewaymanagement::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .endpoint_url(endpoint)
        .region(Region::new("us-east-1"))
        .credentials_provider(Credentials::new(
            "local",
            "local",
            None,
            None,
            "agentwire-local",
        ))
        .build();
    Client::from_conf(config)
}

#[async_trait]
impl ClientPush for ApiGatewayPush {
    #[instrument(skip_all, fields(connection = %connection_id))]
    async fn post(&self, connection_id: &str, frame: Bytes) -> Result<(), PushError> {
        let sent = self
            .client
            .post_to_connection()
            .connection_id(connection_id)
            .data(Blob::new(frame.to_vec()))
            .send()
            .await;
        match sent {
            Ok(_) => Ok(()),
            Err(e) if e.as_service_error().is_some_and(|e| e.is_gone_exception()) => {
                Err(PushError::Gone(connection_id.to_owned()))
            }
            // Throttled (after the SDK's own retries): the client misses this frame.
            Err(e)
                if e.as_service_error()
                    .is_some_and(|e| e.is_limit_exceeded_exception())
                    || e.raw_response().is_some_and(|r| r.status().as_u16() == 429) =>
            {
                Err(PushError::Behind(connection_id.to_owned()))
            }
            Err(e) => Err(PushError::Failed(format!(
                "PostToConnection: {}",
                e.into_service_error()
            ))),
        }
    }

    /// `DeleteConnection`; `code` and `reason` cannot travel (API Gateway closes itself).
    #[instrument(skip_all, fields(connection = %connection_id))]
    async fn close(&self, connection_id: &str, _code: u16, _reason: &str) -> Result<(), PushError> {
        let deleted = self
            .client
            .delete_connection()
            .connection_id(connection_id)
            .send()
            .await;
        match deleted {
            Ok(_) => Ok(()),
            Err(e) if e.as_service_error().is_some_and(|e| e.is_gone_exception()) => {
                Err(PushError::Gone(connection_id.to_owned()))
            }
            Err(e) => Err(PushError::Failed(format!(
                "DeleteConnection: {}",
                e.into_service_error()
            ))),
        }
    }
}
