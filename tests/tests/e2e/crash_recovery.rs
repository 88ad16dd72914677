//! SIGKILL `agentwire dev` in the middle of a stream of appends, restart it, and find every
//! acknowledged append, once, in a gapless log, and nothing that was never sent.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use agentwire_tests::DevServer;
use serde_json::Value;

const WRITERS: usize = 8;

#[derive(Default, Debug)]
struct Writer {
    acked: Vec<usize>,
    /// An append whose answer never came: it may or may not have been stored.
    in_flight: Option<usize>,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sigkill_during_appends_loses_nothing_acknowledged() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let server = DevServer::start(dir.path(), &[]).await?;
    let http = server.admin_client()?;
    let stream = server.stream("crash");
    let created = http
        .put(&stream)
        .header("content-type", "application/json")
        .send()
        .await?;
    assert_eq!(created.status(), 201);

    let acks = Arc::new(AtomicUsize::new(0));
    let writers: Vec<_> = (0..WRITERS)
        .map(|w| {
            let (http, stream, acks) = (http.clone(), stream.clone(), acks.clone());
            tokio::spawn(async move {
                let mut writer = Writer::default();
                for i in 0.. {
                    let body = format!(r#"{{"w":{w},"i":{i}}}"#);
                    let sent = http
                        .post(&stream)
                        .header("content-type", "application/json")
                        .body(body)
                        .timeout(Duration::from_secs(5))
                        .send()
                        .await;
                    match sent {
                        Ok(reply) if reply.status() == 204 => {
                            writer.acked.push(i);
                            acks.fetch_add(1, Ordering::Relaxed);
                        }
                        Ok(reply) => panic!("append refused: {}", reply.status()),
                        Err(_) => {
                            writer.in_flight = Some(i);
                            return writer;
                        }
                    }
                }
                writer
            })
        })
        .collect();

    // Let a good number of appends land, then pull the plug mid-stream.
    while acks.load(Ordering::Relaxed) < 400 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    server.kill().await?;
    let mut outcome = BTreeMap::new();
    for (w, writer) in writers.into_iter().enumerate() {
        outcome.insert(w, writer.await?);
    }
    let acked_total: usize = outcome.values().map(|w| w.acked.len()).sum();
    assert!(acked_total >= 400);

    let server = DevServer::start(dir.path(), &[]).await?;
    let read = http.get(server.stream("crash")).send().await?;
    assert_eq!(read.status(), 200);
    let tail = read.headers()["stream-next-offset"].to_str()?.to_owned();
    let messages: Vec<Value> = read.json().await?;
    assert_eq!(
        tail,
        format!("0000000000000000_{:016}", messages.len()),
        "offsets are gapless"
    );

    let mut seen: BTreeMap<usize, Vec<usize>> = BTreeMap::new();
    for m in &messages {
        let (w, i) = (
            m["w"].as_u64().expect("w") as usize,
            m["i"].as_u64().expect("i") as usize,
        );
        seen.entry(w).or_default().push(i);
    }
    for (w, writer) in &outcome {
        let stored = seen.remove(w).unwrap_or_default();
        let unique: BTreeSet<_> = stored.iter().collect();
        assert_eq!(
            unique.len(),
            stored.len(),
            "writer {w}: no append stored twice"
        );
        // Each writer waits for every answer, so what is stored is its acknowledged appends,
        // in order, plus at most the one it had in flight when the server died.
        let (acked, extra) = stored.split_at(writer.acked.len().min(stored.len()));
        assert_eq!(
            acked,
            writer.acked.as_slice(),
            "writer {w}: every acknowledged append survives, in order"
        );
        match extra {
            [] => {}
            [i] => assert_eq!(
                Some(*i),
                writer.in_flight,
                "writer {w}: only the in-flight append may appear"
            ),
            more => panic!("writer {w}: appends that were never sent: {more:?}"),
        }
    }
    assert!(seen.is_empty(), "messages from unknown writers: {seen:?}");
    println!(
        "crash recovery: {acked_total} acknowledged appends from {WRITERS} writers survived SIGKILL; {} stored in total",
        messages.len()
    );
    Ok(())
}
