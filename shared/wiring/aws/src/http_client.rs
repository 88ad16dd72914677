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

use aws_smithy_runtime_api::client::connection::{CaptureSmithyConnection, ConnectionMetadata};
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

/// One pooled reqwest client; replaced by a new one (a new pool) when the SDK poisons a
/// connection after a transient error, so the retry does not reuse a connection to a
/// host that just failed (reqwest has no handle on one pooled connection).
#[derive(Debug, Clone)]
struct ReqwestConnector {
    timeouts: Timeouts,
    client: Arc<Mutex<Option<reqwest::Client>>>,
}

impl ReqwestConnector {
    fn new(timeouts: Timeouts) -> Self {
        ReqwestConnector {
            timeouts,
            client: Arc::default(),
        }
    }

    /// The current client, built on first use or after a poisoning. A failed build (no
    /// root certificates could be read, say) is not kept: the next request tries again.
    fn client(&self) -> Result<reqwest::Client, reqwest::Error> {
        let mut slot = self.client.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(client) = slot.as_ref() {
            return Ok(client.clone());
        }
        // reqwest is built without a default crypto provider (aws-lc): ring, linked anyway.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let (connect, read) = self.timeouts;
        let mut builder = reqwest::Client::builder()
            // The SDK sees every answer as sent: an S3 redirect names the bucket's region.
            .redirect(reqwest::redirect::Policy::none());
        if let Some(connect) = connect {
            builder = builder.connect_timeout(connect);
        }
        // reqwest's read timeout also bounds each chunk of the body, not only the wait
        // for the answer's head; the SDK's defaults set none.
        if let Some(read) = read {
            builder = builder.read_timeout(read);
        }
        let client = builder.build()?;
        *slot = Some(client.clone());
        Ok(client)
    }
}

impl HttpConnector for ReqwestConnector {
    fn call(&self, request: HttpRequest) -> HttpConnectorFuture {
        let connector = self.clone();
        HttpConnectorFuture::new(async move {
            let client = connector
                .client()
                .map_err(|e| ConnectorError::other(Box::new(e), None))?;
            let request = request
                .try_into_http1x()
                .map_err(|e| ConnectorError::user(Box::new(e)))?;
            let (parts, body) = request.into_parts();
            if let Some(capture) = parts.extensions.get::<CaptureSmithyConnection>() {
                let slot = connector.client.clone();
                capture.set_connection_retriever(move || {
                    let slot = slot.clone();
                    Some(
                        ConnectionMetadata::builder()
                            .proxied(false)
                            .poison_fn(move || {
                                *slot.lock().unwrap_or_else(|e| e.into_inner()) = None;
                            })
                            .build(),
                    )
                });
            }
            let uri = parts.uri.clone();
            let request = reqwest::Request::try_from(http::Request::from_parts(
                parts,
                reqwest::Body::wrap(body),
            ))
            .map_err(|e| ConnectorError::user(Box::new(e)))?;
            // reqwest sends a `url::Url`, which resolves `.` and `..` segments (plain or
            // percent-encoded): the request would reach another key than the one it was
            // signed for. Refused instead.
            let sent = request.url();
            if sent.path() != uri.path() || sent.query() != uri.query() {
                return Err(ConnectorError::user(
                    format!(
                        "{uri} would be sent as {sent} (`.` and `..` segments are resolved \
                         by the HTTP client), so it is refused"
                    )
                    .into(),
                ));
            }
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
    use std::sync::atomic::{AtomicUsize, Ordering};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// A keep-alive HTTP/1.1 server answering every bodiless request `200 ok`; counts the
    /// connections it accepts and the paths it is asked for.
    async fn server() -> (u16, Arc<AtomicUsize>, Arc<Mutex<Vec<String>>>) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let accepted = Arc::new(AtomicUsize::new(0));
        let paths = Arc::new(Mutex::new(Vec::new()));
        let (counter, seen) = (accepted.clone(), paths.clone());
        tokio::spawn(async move {
            while let Ok((mut socket, _)) = listener.accept().await {
                counter.fetch_add(1, Ordering::SeqCst);
                let seen = seen.clone();
                tokio::spawn(async move {
                    let mut buf = Vec::new();
                    let mut chunk = [0u8; 1024];
                    while let Ok(n @ 1..) = socket.read(&mut chunk).await {
                        buf.extend_from_slice(&chunk[..n]);
                        while let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                            let head = String::from_utf8_lossy(&buf[..end]).into_owned();
                            let path = head.split(' ').nth(1).unwrap_or_default().to_owned();
                            seen.lock().unwrap().push(path);
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
        (port, accepted, paths)
    }

    fn get(port: u16, path: &str) -> HttpRequest {
        HttpRequest::try_from(
            http::Request::get(format!("http://127.0.0.1:{port}{path}"))
                .body(SdkBody::empty())
                .unwrap(),
        )
        .unwrap()
    }

    async fn body_of(response: HttpResponse) -> Vec<u8> {
        let body = aws_smithy_types::byte_stream::ByteStream::new(response.into_body());
        body.collect().await.unwrap().into_bytes().to_vec()
    }

    fn connector_of(client: &SharedHttpClient) -> SharedHttpConnector {
        let components = RuntimeComponentsBuilder::for_tests().build().unwrap();
        let settings = HttpConnectorSettings::builder()
            .connect_timeout(Duration::from_secs(2))
            .build();
        client.http_connector(&settings, &components)
    }

    /// Lets the client's pool take a finished connection back (hyper does it in a task).
    async fn settle() {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    #[tokio::test]
    async fn a_refused_connection_is_an_io_error_the_sdk_retries() {
        // A port nothing listens on: bind one, note it, and close it.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .unwrap();
        let connector = ReqwestConnector::new((Some(Duration::from_secs(2)), None));
        let err = connector.call(get(port, "/")).await.unwrap_err();
        assert!(err.is_io(), "{err:?}");
    }

    /// A server that reads one request's head, then does `then` with the socket.
    async fn one_shot(then: fn(tokio::net::TcpStream)) -> u16 {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        tokio::spawn(async move {
            if let Ok((mut socket, _)) = listener.accept().await {
                let mut head = Vec::new();
                let mut chunk = [0u8; 1024];
                while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                    match socket.read(&mut chunk).await {
                        Ok(n @ 1..) => head.extend_from_slice(&chunk[..n]),
                        _ => return,
                    }
                }
                then(socket);
            }
        });
        port
    }

    #[tokio::test]
    async fn a_connection_closed_before_the_answer_is_a_transient_error() {
        let port = one_shot(drop).await;
        let connector = ReqwestConnector::new((Some(Duration::from_secs(2)), None));
        let err = connector.call(get(port, "/")).await.unwrap_err();
        let transient = err.is_io() || err.as_other() == Some(ErrorKind::TransientError);
        assert!(transient, "{err:?}");
    }

    #[tokio::test]
    async fn no_answer_within_the_read_timeout_is_a_timeout() {
        // The socket is kept open and never answered.
        let port = one_shot(|socket| {
            tokio::spawn(async move {
                tokio::time::sleep(Duration::from_secs(30)).await;
                drop(socket);
            });
        })
        .await;
        let connector = ReqwestConnector::new((None, Some(Duration::from_millis(200))));
        let err = connector.call(get(port, "/")).await.unwrap_err();
        assert!(err.is_timeout(), "{err:?}");
    }

    #[tokio::test]
    async fn requests_with_the_same_timeouts_share_a_pooled_connection() {
        let (port, accepted, _) = server().await;
        let client = https_client();
        for _ in 0..3 {
            let response = connector_of(&client).call(get(port, "/")).await.unwrap();
            assert_eq!(response.status().as_u16(), 200);
            assert_eq!(body_of(response).await, b"ok");
            settle().await;
        }
        assert_eq!(accepted.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn a_poisoned_connection_is_not_reused() {
        let (port, accepted, _) = server().await;
        let connector = connector_of(&https_client());
        let capture = CaptureSmithyConnection::new();
        let mut request = get(port, "/");
        request.add_extension(capture.clone());
        body_of(connector.call(request).await.unwrap()).await;
        settle().await;
        // What the SDK's interceptor does after a transient error.
        capture
            .get()
            .expect("the connector names its connection")
            .poison();
        body_of(connector.call(get(port, "/")).await.unwrap()).await;
        assert_eq!(accepted.load(Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn a_path_with_dot_segments_is_refused_not_sent_elsewhere() {
        let (port, _, paths) = server().await;
        let connector = connector_of(&https_client());
        // `url` resolves percent-encoded dots too.
        for path in ["/bucket/a/../b", "/bucket/./b", "/bucket/a/%2E%2E/b"] {
            let err = connector.call(get(port, path)).await.unwrap_err();
            assert!(err.is_user(), "{path}: {err:?}");
            assert!(format!("{err:?}").contains("`..` segments"), "{err:?}");
        }
        // Empty segments go as they are.
        body_of(connector.call(get(port, "/bucket/a//b/")).await.unwrap()).await;
        assert_eq!(*paths.lock().unwrap(), ["/bucket/a//b/"]);
    }
}
