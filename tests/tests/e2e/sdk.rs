//! The agent SDK and the client commands against a real `agentwire dev`.

use std::process::Stdio;
use std::time::Duration;

use agentwire_sdk::Client;
use agentwire_tests::{DevServer, agentwire_bin};
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, BufReader};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sdk_appends_ride_out_a_server_crash_exactly_once() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let listen = format!("127.0.0.1:{port}");
    let server = DevServer::start(dir.path(), &["--listen", &listen]).await?;
    let client = Client::new(&server.url, server.admin_token.clone());
    let session = client.open("crashy").await?;

    const APPENDS: u64 = 300;
    let (acked_tx, mut acked) = tokio::sync::watch::channel(0u64);
    let writer = tokio::spawn(async move {
        for n in 0..APPENDS {
            session
                .append(vec![
                    json!({"type": "message.delta", "id": "m", "data": {"n": n}}),
                ])
                .await
                .expect("the SDK retries until the server is back");
            acked_tx.send_replace(n + 1);
        }
    });
    acked.wait_for(|n| *n >= 100).await?;
    server.kill().await?;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let server = DevServer::start(dir.path(), &["--listen", &listen]).await?;
    tokio::time::timeout(Duration::from_secs(60), writer).await??;

    let http = server.admin_client()?;
    let events: Vec<Value> = http
        .get(format!("{}?offset=-1", server.stream("crashy")))
        .send()
        .await?
        .json()
        .await?;
    let ns: Vec<u64> = events
        .iter()
        .filter_map(|e| e["data"]["n"].as_u64())
        .collect();
    assert_eq!(
        ns,
        (0..APPENDS).collect::<Vec<_>>(),
        "every append exactly once, in order"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn tail_prints_a_session_as_it_grows() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let server = DevServer::start(dir.path(), &[]).await?;
    let client = Client::new(&server.url, server.admin_token.clone());
    let session = client.open("tailed").await?;
    session
        .append(vec![json!({"type": "message.start", "id": "m"})])
        .await?;
    let reader = DevServer::token(dir.path(), &["--session", "tailed", "--role", "reader"])?;
    let mut tail = tokio::process::Command::new(agentwire_bin()?)
        .args(["tail", "tailed", "--url", &server.url, "--token", &reader])
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()?;
    let mut lines = BufReader::new(tail.stdout.take().expect("stdout")).lines();
    let mut types = Vec::new();
    while types.len() < 3 {
        if types.len() == 2 {
            // Replayed history and its own join are out; now the session grows.
            session
                .append(vec![json!({"type": "message.end", "id": "m"})])
                .await?;
        }
        let line = tokio::time::timeout(Duration::from_secs(10), lines.next_line())
            .await??
            .expect("a line");
        let (offset, event) = line.split_once(' ').expect("offset and event");
        assert_eq!(offset.len(), 33, "{offset}");
        let event: Value = serde_json::from_str(event)?;
        types.push(event["type"].as_str().unwrap_or_default().to_owned());
    }
    assert_eq!(types, ["message.start", "presence.join", "message.end"]);
    Ok(())
}

/// A `Worker` whose handler fails gives the session back itself: no `agent.lost` (the
/// worker is alive), and the message is answered once on the next try.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_worker_whose_handler_fails_gives_the_session_back_and_it_is_answered_once()
-> anyhow::Result<()> {
    use agentwire_sdk::{Coalesce, Envelope, SdkError, Worker, WorkerOptions};
    use std::sync::atomic::{AtomicUsize, Ordering};

    let dir = tempfile::tempdir()?;
    let server = DevServer::start(dir.path(), &[]).await?;
    let client = Client::new(&server.url, server.admin_token.clone());
    let mut options = WorkerOptions::new("flaky", "ask-*");
    options.lease_ttl = Duration::from_secs(2);
    let worker = Worker::start(&client, options).await?;
    let attempts = std::sync::Arc::new(AtomicUsize::new(0));
    let seen = attempts.clone();
    let serving = tokio::spawn(async move {
        worker
            .run(move |job| {
                let attempts = seen.clone();
                async move {
                    for message in job.unanswered() {
                        if attempts.fetch_add(1, Ordering::SeqCst) == 0 {
                            return Err(SdkError::Protocol("the model endpoint is down".into()));
                        }
                        let reply_id = format!("r_{}", message.id);
                        job.working_on(&reply_id).await?;
                        let reply =
                            job.session
                                .reply(&reply_id, Some(&message.id), Coalesce::default());
                        reply.delta("answered");
                        reply.end(&job.session).await?;
                    }
                    Ok(())
                }
            })
            .await
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    let session = client.open("ask-1").await?;
    session
        .append_envelopes(Envelope::user_message("u1", "ann", "hello").to_vec())
        .await?;
    let http = server.admin_client()?;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    let events = loop {
        let events: Vec<Value> = http
            .get(format!("{}?offset=-1", server.stream("ask-1")))
            .send()
            .await?
            .json()
            .await?;
        if events
            .iter()
            .any(|e| e["type"] == "message.end" && e["id"] == "r_u1")
        {
            break events;
        }
        anyhow::ensure!(
            tokio::time::Instant::now() < deadline,
            "never answered: {events:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    // Settled: nothing more comes.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let later: Vec<Value> = http
        .get(format!("{}?offset=-1", server.stream("ask-1")))
        .send()
        .await?
        .json()
        .await?;
    assert_eq!(
        later.len(),
        events.len(),
        "nothing after the answer: {later:?}"
    );
    assert_eq!(
        attempts.load(Ordering::SeqCst),
        2,
        "one failure, one answer"
    );
    assert!(
        later.iter().all(|e| e["type"] != "agent.lost"),
        "a live worker is not lost: {later:?}"
    );
    let starts = later
        .iter()
        .filter(|e| e["type"] == "message.start" && e["role"] == "assistant")
        .count();
    assert_eq!(starts, 1, "answered once");
    serving.abort();
    Ok(())
}
