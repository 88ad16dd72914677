//! Serving the app over HTTP/1.1 on a TCP listener, within bounds: how long a client may
//! take to send a request's head, how long a connection may sit idle between requests,
//! and how many connections are open at once (each holds a file descriptor). Built on
//! hyper's HTTP/1 server; WebSocket upgrades keep their connection's slot.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use http::Request;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc, watch};
use tower::Service;
use tracing::{debug, warn};

/// The bounds of [`serve`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ServeLimits {
    /// A client must send a request's complete head within this long of opening the
    /// connection, or of the previous response ending; otherwise the connection is closed.
    pub header_timeout: Duration,
    /// A connection with no request in progress for this long is closed. Long-polls, SSE
    /// and WebSockets are requests in progress (or upgraded), so this never cuts them.
    /// (Between requests the header timeout runs too, so the shorter of the two applies.)
    pub idle_timeout: Duration,
    /// Connections open at most, WebSockets included. At the limit the server stops
    /// accepting until one closes: new connections wait in the kernel's listen backlog,
    /// and half-sent requests holding slots are closed by the header timeout.
    pub max_connections: usize,
}

impl Default for ServeLimits {
    fn default() -> ServeLimits {
        ServeLimits {
            header_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(5),
            max_connections: default_max_connections(),
        }
    }
}

/// File descriptors kept back from connections: SQLite's files (three per connection),
/// the trace archive's files, standard streams.
const RESERVED_FDS: u64 = 128;

/// 1024, or the process's open-file limit less [`RESERVED_FDS`] when that is lower (at
/// least 16), so that reaching the connection limit never starves the database of file
/// descriptors.
pub fn default_max_connections() -> usize {
    match open_file_limit() {
        Some(limit) => limit.saturating_sub(RESERVED_FDS).clamp(16, 1024) as usize,
        None => 1024,
    }
}

#[cfg(unix)]
#[allow(clippy::unnecessary_cast)] // rlim_t is u64 on Linux, not on every Unix
fn open_file_limit() -> Option<u64> {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes only into the struct it is given, which outlives the call.
    let ok = unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } == 0;
    ok.then_some(limit.rlim_cur as u64)
}

#[cfg(not(unix))]
fn open_file_limit() -> Option<u64> {
    None
}

/// Serves `app` on `listener` within `limits` until `shutdown` completes; then stops
/// accepting, lets every connection finish its request in progress (idle ones close at
/// once) and returns when all have closed. WebSockets already upgraded are not waited for.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    limits: ServeLimits,
    shutdown: impl Future<Output = ()>,
) {
    let slots = Arc::new(Semaphore::new(limits.max_connections.max(1)));
    let (stop, stopping) = watch::channel(false);
    // Every connection task holds a clone; `recv` returns once the last one has ended.
    let (open, mut all_closed) = mpsc::channel::<()>(1);
    tokio::pin!(shutdown);
    let mut warned_at: Option<tokio::time::Instant> = None;
    loop {
        let slot = match Arc::clone(&slots).try_acquire_owned() {
            Ok(slot) => slot,
            Err(_) => {
                // Once a minute at most: under a flood this would be every accept.
                if warned_at.is_none_or(|at| at.elapsed() >= Duration::from_secs(60)) {
                    warned_at = Some(tokio::time::Instant::now());
                    warn!(
                        max_connections = limits.max_connections,
                        "at the connection limit: new connections wait until one closes"
                    );
                }
                tokio::select! {
                    slot = Arc::clone(&slots).acquire_owned() => match slot {
                        Ok(slot) => slot,
                        Err(_) => break,
                    },
                    () = &mut shutdown => break,
                }
            }
        };
        let stream = tokio::select! {
            accepted = accept(&listener) => match accepted {
                Ok(stream) => stream,
                Err(e) => {
                    accept_failed(&e).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        tokio::spawn(connection(
            stream,
            slot,
            app.clone(),
            limits,
            stopping.clone(),
            open.clone(),
        ));
    }
    drop(listener);
    let _ = stop.send(true);
    drop(open);
    let _ = all_closed.recv().await;
}

/// Accepts the next connection and sets it up: `TCP_NODELAY`, since responses and pushed
/// frames are small writes that must not wait for the peer's delayed ACK (Nagle).
pub async fn accept(listener: &TcpListener) -> std::io::Result<TcpStream> {
    let (stream, _) = listener.accept().await?;
    stream.set_nodelay(true)?;
    Ok(stream)
}

/// A failed accept: a connection reset before it was accepted is nothing to wait for;
/// anything else (out of file descriptors) is retried after a pause, not in a hot loop.
async fn accept_failed(e: &std::io::Error) {
    use std::io::ErrorKind::*;
    if matches!(
        e.kind(),
        ConnectionAborted | ConnectionReset | ConnectionRefused | InvalidInput
    ) {
        debug!(error = %e, "a connection failed before it was accepted");
        return;
    }
    warn!(error = %e, "cannot accept connections; retrying in 100 ms");
    tokio::time::sleep(Duration::from_millis(100)).await;
}

/// Serves one connection until it closes, the server stops, or it idles out.
async fn connection(
    stream: TcpStream,
    slot: OwnedSemaphorePermit,
    app: Router,
    limits: ServeLimits,
    mut stopping: watch::Receiver<bool>,
    _open: mpsc::Sender<()>,
) {
    let io = TokioIo::new(Slotted {
        stream,
        _slot: slot,
    });
    let (requests, mut in_progress) = watch::channel(0usize);
    let requests = Arc::new(requests);
    let service = hyper::service::service_fn(move |request: Request<Incoming>| {
        let request_done = InProgress::start(&requests);
        let call = app.clone().call(request);
        async move {
            let response = call.await?;
            // The request is in progress until its whole response body is sent.
            Ok::<_, Infallible>(response.map(|body| {
                Body::new(Tracked {
                    body,
                    _done: request_done,
                })
            }))
        }
    });
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout);
    let conn = http.serve_connection(io, service).with_upgrades();
    tokio::pin!(conn);
    let mut closing = false;
    loop {
        tokio::select! {
            ended = conn.as_mut() => {
                if let Err(e) = ended {
                    // Header timeouts, resets, malformed requests: the client's doing.
                    debug!(error = %e, "connection closed");
                }
                return;
            }
            _ = stopping.wait_for(|stop| *stop), if !closing => {
                conn.as_mut().graceful_shutdown();
                closing = true;
            }
            () = idle_for(&mut in_progress, limits.idle_timeout), if !closing => {
                debug!(idle_ms = limits.idle_timeout.as_millis() as u64, "closing an idle connection");
                conn.as_mut().graceful_shutdown();
                closing = true;
            }
        }
    }
}

/// Completes once no request has been in progress for `timeout` without a break.
async fn idle_for(in_progress: &mut watch::Receiver<usize>, timeout: Duration) {
    loop {
        if in_progress.wait_for(|n| *n == 0).await.is_err() {
            return std::future::pending().await;
        }
        let busy = tokio::time::timeout(timeout, in_progress.wait_for(|n| *n > 0))
            .await
            .map(|woke| woke.is_ok());
        match busy {
            Err(_) => return,
            Ok(true) => continue,
            Ok(false) => return std::future::pending().await,
        }
    }
}

/// Counts a request as in progress until dropped.
struct InProgress(Arc<watch::Sender<usize>>);

impl InProgress {
    fn start(requests: &Arc<watch::Sender<usize>>) -> InProgress {
        requests.send_modify(|n| *n += 1);
        InProgress(Arc::clone(requests))
    }
}

impl Drop for InProgress {
    fn drop(&mut self) {
        self.0.send_modify(|n| *n = n.saturating_sub(1));
    }
}

/// A response body that ends its request's [`InProgress`] when sent or dropped.
struct Tracked {
    body: Body,
    _done: InProgress,
}

impl http_body::Body for Tracked {
    type Data = axum::body::Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Self::Data>, Self::Error>>> {
        Pin::new(&mut self.body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.body.size_hint()
    }
}

/// The socket with its connection slot: the slot is freed when the socket closes, also
/// when a WebSocket took it over.
struct Slotted {
    stream: TcpStream,
    _slot: OwnedSemaphorePermit,
}

impl AsyncRead for Slotted {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.stream).poll_read(cx, buf)
    }
}

impl AsyncWrite for Slotted {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn accepted_sockets_have_tcp_nodelay() {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let client = tokio::spawn(TcpStream::connect(addr));
        let accepted = accept(&listener).await.expect("accept");
        assert!(
            accepted.nodelay().expect("getsockopt"),
            "TCP_NODELAY is off"
        );
        drop(client.await);
    }

    #[test]
    fn the_default_connection_limit_leaves_file_descriptors_for_the_database() {
        let limit = default_max_connections();
        assert!((16..=1024).contains(&limit), "{limit}");
        if let Some(fds) = open_file_limit() {
            assert!(
                limit as u64 <= fds.saturating_sub(RESERVED_FDS).max(16),
                "{limit} of {fds}"
            );
        }
    }
}
