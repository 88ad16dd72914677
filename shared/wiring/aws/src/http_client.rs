//! The HTTP client under every SDK client the stack makes: reqwest (HTTP/1.1, rustls on
//! ring), behind the SDK's `HttpClient` port.
//!
//! The SDK's own client (`aws-smithy-http-client`) always links an HTTP/2 stack (`h2`, and
//! hyper's HTTP/2 half: about 0.5 MB a bootstrap), which none of the APIs the stack calls
//! needs: DynamoDB, S3, Secrets Manager, Bedrock's Converse and API Gateway's management
//! API all speak HTTP/1.1. reqwest is linked anyway (webhooks, the judge's and the
//! clusters' model endpoints), built without HTTP/2.

use std::error::Error as StdError;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use aws_smithy_runtime_api::client::http::{
    HttpClient, HttpConnector, HttpConnectorFuture, HttpConnectorSettings, SharedHttpClient,
    SharedHttpConnector,
};
use aws_smithy_runtime_api::client::orchestrator::{HttpRequest, HttpResponse};
use aws_smithy_runtime_api::client::result::ConnectorError;
use aws_smithy_runtime_api::client::retries::ErrorKind;
use aws_smithy_runtime_api::client::runtime_components::RuntimeComponents;
use aws_smithy_types::body::SdkBody;

/// The stack's SDK HTTP client (see the module's documentation). Clients are kept per
/// timeout setting, so connections are pooled across requests as with the SDK's own.
pub fn https_client() -> SharedHttpClient {
    SharedHttpClient::new(ReqwestClient::default())
}

type Timeouts = (Option<Duration>, Option<Duration>);

#[derive(Debug, Default)]
struct ReqwestClient {
    connectors: Mutex<Vec<(Timeouts, SharedHttpConnector)>>,
}

impl HttpClient for ReqwestClient {
    fn http_connector(
        &self,
        settings: &HttpConnectorSettings,
        _components: &RuntimeComponents,
    ) -> SharedHttpConnector {
        let key = (settings.connect_timeout(), settings.read_timeout());
        let mut connectors = self.connectors.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((_, connector)) = connectors.iter().find(|(k, _)| *k == key) {
            return connector.clone();
        }
        let connector = SharedHttpConnector::new(ReqwestConnector::new(key));
        connectors.push((key, connector.clone()));
        connector
    }
}

#[derive(Debug, Clone)]
struct ReqwestConnector {
    client: Result<reqwest::Client, Arc<reqwest::Error>>,
}

impl ReqwestConnector {
    fn new((connect, read): Timeouts) -> Self {
        // reqwest is built without a default crypto provider (aws-lc): ring, linked anyway.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let mut builder = reqwest::Client::builder()
            // The SDK sees every answer as sent: an S3 redirect names the bucket's region.
            .redirect(reqwest::redirect::Policy::none());
        if let Some(connect) = connect {
            builder = builder.connect_timeout(connect);
        }
        if let Some(read) = read {
            builder = builder.read_timeout(read);
        }
        ReqwestConnector {
            client: builder.build().map_err(Arc::new),
        }
    }
}

impl HttpConnector for ReqwestConnector {
    fn call(&self, request: HttpRequest) -> HttpConnectorFuture {
        let client = self.client.clone();
        HttpConnectorFuture::new(async move {
            let client = client.map_err(|e| ConnectorError::user(Box::new(e)))?;
            let request = request
                .try_into_http1x()
                .map_err(|e| ConnectorError::user(Box::new(e)))?;
            let (parts, body) = request.into_parts();
            // An in-memory body (every DynamoDB call) goes as one buffer; streams stream.
            let body = match body.bytes() {
                Some(bytes) => reqwest::Body::from(bytes.to_vec()),
                None => reqwest::Body::wrap(body),
            };
            let request = reqwest::Request::try_from(http::Request::from_parts(parts, body))
                .map_err(|e| ConnectorError::user(Box::new(e)))?;
            let response = client.execute(request).await.map_err(connector_error)?;
            let response: http::Response<reqwest::Body> = response.into();
            let (parts, body) = response.into_parts();
            let response = http::Response::from_parts(parts, SdkBody::from_body_1_x(body));
            HttpResponse::try_from(response).map_err(|e| ConnectorError::other(Box::new(e), None))
        })
    }
}

/// Sorts a transport error as the SDK's own client does, so its retry policy treats it
/// the same: timeouts and broken connections are transient, a malformed request is not.
fn connector_error(err: reqwest::Error) -> ConnectorError {
    if err.is_timeout() {
        return ConnectorError::timeout(Box::new(err));
    }
    if err.is_builder() {
        return ConnectorError::user(Box::new(err));
    }
    let hyper = find_source::<hyper::Error>(&err);
    if let Some(hyper) = hyper {
        if hyper.is_user() {
            return ConnectorError::user(Box::new(err));
        }
        // S3 sometimes closes a connection mid-answer.
        if hyper.is_incomplete_message() {
            return ConnectorError::other(Box::new(err), Some(ErrorKind::TransientError));
        }
    }
    if err.is_connect()
        || hyper.is_some_and(|h| h.is_closed() || h.is_canceled())
        || find_source::<std::io::Error>(&err).is_some()
    {
        return ConnectorError::io(Box::new(err));
    }
    ConnectorError::other(Box::new(err), None)
}

fn find_source<'a, E: StdError + 'static>(err: &'a (dyn StdError + 'static)) -> Option<&'a E> {
    let mut next = Some(err);
    while let Some(err) = next {
        if let Some(found) = err.downcast_ref::<E>() {
            return Some(found);
        }
        next = err.source();
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_smithy_runtime_api::client::runtime_components::RuntimeComponentsBuilder;

    #[tokio::test]
    async fn a_refused_connection_is_an_io_error_the_sdk_retries() {
        // A port nothing listens on: bind one, note it, and close it.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .unwrap();
        let connector = ReqwestConnector::new((Some(Duration::from_secs(2)), None));
        let request = HttpRequest::try_from(
            http::Request::get(format!("http://127.0.0.1:{port}/"))
                .body(SdkBody::empty())
                .unwrap(),
        )
        .unwrap();
        let err = connector.call(request).await.unwrap_err();
        assert!(err.is_io(), "{err:?}");
    }

    #[tokio::test]
    async fn requests_with_the_same_timeouts_share_a_pooled_connection() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let accepted = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let counter = accepted.clone();
        tokio::spawn(async move {
            while let Ok((mut socket, _)) = listener.accept().await {
                counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                tokio::spawn(async move {
                    let mut buf = Vec::new();
                    let mut chunk = [0u8; 1024];
                    while let Ok(n @ 1..) = socket.read(&mut chunk).await {
                        buf.extend_from_slice(&chunk[..n]);
                        // Bodiless requests: each ends at its blank line.
                        while let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                            buf.drain(..end + 4);
                            let answer = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok";
                            if socket.write_all(answer).await.is_err() {
                                return;
                            }
                        }
                    }
                });
            }
        });
        let client = https_client();
        let components = RuntimeComponentsBuilder::for_tests().build().unwrap();
        let settings = HttpConnectorSettings::builder()
            .connect_timeout(Duration::from_secs(2))
            .build();
        for _ in 0..3 {
            let connector = client.http_connector(&settings, &components);
            let request = HttpRequest::try_from(
                http::Request::get(format!("http://127.0.0.1:{port}/"))
                    .body(SdkBody::empty())
                    .unwrap(),
            )
            .unwrap();
            let response = connector.call(request).await.unwrap();
            assert_eq!(response.status().as_u16(), 200);
            let body = aws_smithy_types::byte_stream::ByteStream::new(response.into_body());
            assert_eq!(&body.collect().await.unwrap().into_bytes()[..], b"ok");
        }
        assert_eq!(accepted.load(std::sync::atomic::Ordering::SeqCst), 1);
    }
}
