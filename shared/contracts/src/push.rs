//! The contract of the `ClientPush` port: [`client_push_contract!`] expands to one
//! `#[tokio::test]` per case, given an async fn returning a [`PushHarness`]: the push under
//! test, and a way to connect real clients it can reach and read what they receive.

use std::future::Future;
use std::time::{Duration, Instant};

use agentwire_realtime::frames::MAX_FRAME_BYTES;
use agentwire_realtime::{ClientPush, PushError};
use bytes::Bytes;

/// Generates one `#[tokio::test]` per case. `$harness` is an async fn returning a fresh
/// [`PushHarness`].
#[macro_export]
macro_rules! client_push_contract {
    ($harness:path) => {
        $crate::client_push_contract!(@cases $harness;
            a_push_reaches_exactly_its_client,
            the_largest_frame_arrives_whole,
            pushes_to_one_connection_arrive_in_order,
            an_unknown_connection_is_gone,
            a_closed_connection_is_gone_and_stays_gone,
            a_close_ends_the_connection_after_what_it_accepted,
            a_client_that_stops_reading_is_behind_never_skipped,
        );
    };
    (@cases $harness:path; $($case:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $case() {
                $crate::push::$case(&$harness().await).await;
            }
        )*
    };
}

/// What the suite needs around a [`ClientPush`]: clients connected where it pushes.
pub trait PushHarness {
    type Client: PushClient;

    /// The push under test.
    fn push(&self) -> &dyn ClientPush;

    /// A new client, connected: a push to its id must reach it once this returns.
    fn connect(&self) -> impl Future<Output = Self::Client>;
}

/// One connected client, as the suite sees it.
pub trait PushClient {
    /// The connection id pushes address it by.
    fn id(&self) -> &str;

    /// The next WebSocket text message it received, as bytes; `None` once the connection
    /// closed. A binary message breaks the port's promise: implementations panic on one.
    fn next_frame(&mut self) -> impl Future<Output = Option<Bytes>>;

    /// Closes the connection from the client's side, as a browser tab closing would.
    fn close(&mut self) -> impl Future<Output = ()>;
}

/// Ample for a loopback push; the cases wait this long for what must arrive.
const WAIT: Duration = Duration::from_secs(10);

async fn next(client: &mut impl PushClient) -> Bytes {
    let id = client.id().to_owned();
    match tokio::time::timeout(WAIT, client.next_frame()).await {
        Ok(Some(frame)) => frame,
        Ok(None) => panic!("{id} closed while a frame was due"),
        Err(_) => panic!("no frame reached {id} within {WAIT:?}"),
    }
}

async fn post(harness: &impl PushHarness, id: &str, frame: &Bytes) {
    harness
        .push()
        .post(id, frame.clone())
        .await
        .unwrap_or_else(|e| panic!("push to {id}: {e}"));
}

/// Pushes `mark` to `client` and checks it is the next thing it reads: whatever came
/// before has all been read.
async fn nothing_else_arrived(harness: &impl PushHarness, client: &mut impl PushClient) {
    let mark = Bytes::from(format!(r#"{{"type":"mark","for":"{}"}}"#, client.id()));
    post(harness, client.id(), &mark).await;
    assert_eq!(
        next(client).await,
        mark,
        "{} read an unexpected frame",
        client.id()
    );
}

pub async fn a_push_reaches_exactly_its_client(harness: &impl PushHarness) {
    let mut a = harness.connect().await;
    let mut b = harness.connect().await;
    assert_ne!(a.id(), b.id(), "each connection has its own id");
    // Not ASCII, and JSON that looks like a frame of the protocol.
    let frame = Bytes::from(r#"{"type":"notice","text":"héllo ✓ 🦀","n":[1,2]}"#);
    post(harness, a.id(), &frame).await;
    assert_eq!(next(&mut a).await, frame, "the frame, byte for byte");
    nothing_else_arrived(harness, &mut a).await;
    nothing_else_arrived(harness, &mut b).await;
}

/// The handlers never send more than `MAX_FRAME_BYTES`; that much must arrive as one frame.
pub async fn the_largest_frame_arrives_whole(harness: &impl PushHarness) {
    let mut client = harness.connect().await;
    let envelope = r#"{"type":"notice","pad":""}"#;
    let pad: String = (0..MAX_FRAME_BYTES - envelope.len())
        .map(|i| char::from(b'a' + (i % 26) as u8))
        .collect();
    let frame = Bytes::from(format!(r#"{{"type":"notice","pad":"{pad}"}}"#));
    assert_eq!(frame.len(), MAX_FRAME_BYTES);
    post(harness, client.id(), &frame).await;
    let read = next(&mut client).await;
    assert!(
        read == frame,
        "{} bytes back for {}",
        read.len(),
        frame.len()
    );
    nothing_else_arrived(harness, &mut client).await;
}

/// Fan-out posts a session's frames one after another; clients rely on their order.
pub async fn pushes_to_one_connection_arrive_in_order(harness: &impl PushHarness) {
    const FRAMES: usize = 200;
    let mut client = harness.connect().await;
    let frames: Vec<Bytes> = (0..FRAMES)
        .map(|n| Bytes::from(format!(r#"{{"type":"event","n":{n}}}"#)))
        .collect();
    for frame in &frames {
        post(harness, client.id(), frame).await;
    }
    let mut read = Vec::with_capacity(FRAMES);
    for _ in 0..FRAMES {
        read.push(next(&mut client).await);
    }
    assert_eq!(read, frames, "every frame once, in the order pushed");
    nothing_else_arrived(harness, &mut client).await;
}

/// An id that never connected (in API Gateway's format) is gone, so callers forget it.
pub async fn an_unknown_connection_is_gone(harness: &impl PushHarness) {
    let unknown = "bm90LWEtY29ubmVjdGlvbg==";
    assert_eq!(
        harness
            .push()
            .post(unknown, Bytes::from_static(b"{}"))
            .await,
        Err(PushError::Gone(unknown.to_owned()))
    );
}

/// Once a client has closed, pushes to it report it gone (after at most a short delay
/// while the close travels) and keep doing so; other clients are unaffected.
pub async fn a_closed_connection_is_gone_and_stays_gone(harness: &impl PushHarness) {
    let mut leaving = harness.connect().await;
    let mut staying = harness.connect().await;
    let id = leaving.id().to_owned();
    leaving.close().await;
    let frame = Bytes::from_static(br#"{"type":"notice"}"#);
    let deadline = Instant::now() + WAIT;
    loop {
        match harness.push().post(&id, frame.clone()).await {
            Err(PushError::Gone(gone)) => {
                assert_eq!(gone, id, "the gone connection is named");
                break;
            }
            Ok(()) if Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            Ok(()) => panic!("{id} closed {WAIT:?} ago and pushes still succeed"),
            Err(e) => panic!("a closed connection is gone, not {e}"),
        }
    }
    assert_eq!(
        harness.push().post(&id, frame).await,
        Err(PushError::Gone(id.clone())),
        "gone is final"
    );
    nothing_else_arrived(harness, &mut staying).await;
}

/// The server ends a connection (token expired, client behind): the client first reads
/// what was accepted before, then the connection ends; pushes to it are then gone.
pub async fn a_close_ends_the_connection_after_what_it_accepted(harness: &impl PushHarness) {
    let mut closing = harness.connect().await;
    let mut staying = harness.connect().await;
    let id = closing.id().to_owned();
    let last = Bytes::from_static(br#"{"type":"error","code":"token_expired"}"#);
    post(harness, &id, &last).await;
    harness
        .push()
        .close(&id, 4001, "token expired")
        .await
        .unwrap_or_else(|e| panic!("close {id}: {e}"));
    assert_eq!(next(&mut closing).await, last, "accepted before the close");
    match tokio::time::timeout(WAIT, closing.next_frame()).await {
        Ok(None) => {}
        Ok(Some(frame)) => panic!("{id} read {frame:?} after its close"),
        Err(_) => panic!("{id} still open {WAIT:?} after its close"),
    }
    let deadline = Instant::now() + WAIT;
    loop {
        match harness.push().post(&id, last.clone()).await {
            Err(PushError::Gone(_)) => break,
            other if Instant::now() < deadline => {
                let _ = other;
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            other => panic!("{id} closed {WAIT:?} ago and a push gives {other:?}"),
        }
    }
    nothing_else_arrived(harness, &mut staying).await;
}

/// A client that stops reading is reported `Behind` after a bounded amount of pushes (its
/// outbox is bounded), every later push too, and a close still ends it: what it reads
/// is a gapless prefix of what was pushed, never frames after a skipped one.
pub async fn a_client_that_stops_reading_is_behind_never_skipped(harness: &impl PushHarness) {
    // Far above any bounded outbox plus the kernel's socket buffers on loopback.
    const MAX_PUSHES: usize = 2048;
    let mut stalled = harness.connect().await;
    let id = stalled.id().to_owned();
    let pad = "x".repeat(MAX_FRAME_BYTES - 64);
    let frame = |n: usize| Bytes::from(format!(r#"{{"type":"event","n":{n},"pad":"{pad}"}}"#));
    let mut accepted = 0;
    loop {
        assert!(
            accepted < MAX_PUSHES,
            "{accepted} frames of 128 KB accepted for a client that reads nothing"
        );
        match harness.push().post(&id, frame(accepted)).await {
            Ok(()) => accepted += 1,
            Err(PushError::Behind(behind)) => {
                assert_eq!(behind, id, "the slow connection is named");
                break;
            }
            Err(e) => panic!("a client that does not read is behind, not {e}"),
        }
    }
    assert!(
        matches!(
            harness.push().post(&id, frame(accepted)).await,
            Err(PushError::Behind(_))
        ),
        "once behind, stays behind: a later frame would follow a gap"
    );
    harness
        .push()
        .close(&id, 4002, "behind")
        .await
        .unwrap_or_else(|e| panic!("close {id}: {e}"));
    let mut read = 0;
    loop {
        match tokio::time::timeout(WAIT, stalled.next_frame()).await {
            Ok(Some(got)) => {
                assert_eq!(got, frame(read), "frames whole, in order, none skipped");
                read += 1;
            }
            Ok(None) => break,
            Err(_) => panic!("{id} still open {WAIT:?} after its close"),
        }
    }
    assert!(read <= accepted, "{read} read of {accepted} accepted");
}
