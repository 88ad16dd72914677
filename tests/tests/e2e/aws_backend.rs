//! `agentwire dev --backend aws`: the Lambda functions' wiring (DynamoDB log and connection
//! registry, S3 blobs, pushes through API Gateway's management API) against DynamoDB Local
//! and a local S3 server, with real WebSocket clients and the demo agent.

use std::future::Future;
use std::time::Duration;

use agentwire_dynamo::{DynamoConnectionRegistry, local_client};
use agentwire_realtime::ConnectionRegistry;
use agentwire_sdk::{Client, SessionFeed};
use agentwire_tests::DevServer;
use serde_json::Value;

async fn within<T>(what: &str, future: impl Future<Output = T>) -> T {
    match tokio::time::timeout(Duration::from_secs(60), future).await {
        Ok(value) => value,
        Err(_) => panic!("timed out: {what}"),
    }
}

async fn read_reply(feed: &mut SessionFeed) -> Vec<Value> {
    let mut events = Vec::new();
    loop {
        let (_, event) = feed.next_event().await.expect("event");
        let done = event["type"] == "message.end" && event["role"] != "user";
        events.push(event);
        if done {
            return events;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn devices_follow_a_reply_through_the_management_api_and_dynamodb() -> anyhow::Result<()> {
    let dynamodb = std::env::var("AGENTWIRE_DYNAMODB_ENDPOINT")
        .unwrap_or_else(|_| "http://127.0.0.1:8000".into());
    let s3 =
        std::env::var("AGENTWIRE_S3_ENDPOINT").unwrap_or_else(|_| "http://127.0.0.1:9000".into());
    let table = format!("e2e-{:012x}", fastrand::u64(..) >> 16);
    let dir = tempfile::tempdir()?;
    let server = DevServer::start(
        dir.path(),
        &[
            "--backend",
            "aws",
            "--dynamodb-endpoint",
            &dynamodb,
            "--s3-endpoint",
            &s3,
            "--dynamodb-table",
            &table,
            "--no-demo-agent",
        ],
    )
    .await?;
    let client = Client::new(&server.url, server.admin_token.clone());
    client.open("devices").await?;
    let _agent = server.demo_agent(
        "devices",
        server.admin_token.as_deref(),
        &["--rate", "400", "--tokens", "200"],
    )?;
    let mut phone = SessionFeed::connect(&client, "devices", "-1").await?;
    let mut laptop = SessionFeed::connect(&client, "devices", "-1").await?;

    // Both subscriptions are in the DynamoDB registry the functions share.
    let registry =
        DynamoConnectionRegistry::new(local_client(&dynamodb), format!("{table}-connections"));
    let subscribers = registry.subscribers("local/devices").await?;
    assert_eq!(subscribers.len(), 2, "{subscribers:?}");
    let presence = registry.presence("local/devices").await?;
    assert_eq!(presence.iter().map(|m| m.connections).sum::<usize>(), 2);

    tokio::time::sleep(Duration::from_millis(500)).await;
    phone.send_message("Where does this reply live?").await?;
    let laptop_reader = tokio::spawn(async move {
        let events = read_reply(&mut laptop).await;
        (events, laptop)
    });
    let phone_events = within("the phone reads the reply", read_reply(&mut phone)).await;
    let (laptop_events, _laptop) = within("the laptop reads the reply", laptop_reader).await?;
    let deltas = phone_events
        .iter()
        .filter(|e| e["type"] == "message.delta")
        .count();
    assert!(
        deltas >= 2,
        "the reply streamed in several deltas ({deltas})"
    );
    assert_eq!(
        phone_events, laptop_events,
        "both devices saw one transcript"
    );

    // A closed socket leaves the registry ($disconnect), and the rest keep their place.
    phone.disconnect().await;
    let mut left = Vec::new();
    for _ in 0..50 {
        left = registry.subscribers("local/devices").await?;
        if left.len() == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(left.len(), 1, "{left:?}");
    server.kill().await
}
