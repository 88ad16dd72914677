//! WebSocket sessions end to end, against `agentwire dev` on a random port with real
//! sockets: resume, multi-device, control, fan-in, auth, bad frames and presence.

use std::collections::BTreeMap;
use std::future::Future;
use std::time::{Duration, Instant};

use agentwire_sdk::{Client, Offset, SdkError, SessionFeed};
use agentwire_tests::DevServer;
use serde_json::{Value, json};

const WAIT: Duration = Duration::from_secs(60);

async fn within<T>(what: &str, future: impl Future<Output = T>) -> T {
    match tokio::time::timeout(WAIT, future).await {
        Ok(value) => value,
        Err(_) => panic!("timed out: {what}"),
    }
}

type Transcript = Vec<(Offset, Value)>;

/// Reads events until one matches `stop` (included).
async fn read_until(feed: &mut SessionFeed, stop: impl Fn(&Value) -> bool) -> Transcript {
    let mut events = Vec::new();
    loop {
        let (offset, event) = feed.next_event().await.expect("event");
        let done = stop(&event);
        events.push((offset, event));
        if done {
            return events;
        }
    }
}

fn is_reply_end(event: &Value) -> bool {
    event["type"] == "message.end" && event["role"] != "user"
}

async fn admin(server: &DevServer) -> Client {
    Client::new(&server.url, server.admin_token.clone())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_subscriber_that_keeps_dropping_resumes_without_loss_or_duplicates() -> anyhow::Result<()>
{
    let dir = tempfile::tempdir()?;
    let server = DevServer::start(dir.path(), &[]).await?;
    let client = admin(&server).await;
    let session = client.open("resume").await?;
    let mut steady = SessionFeed::connect(&client, "resume", "-1").await?;
    let mut flaky = SessionFeed::connect(&client, "resume", "-1").await?;

    const EVENTS: usize = 5_000;
    let writer = tokio::spawn(async move {
        let mut i = 0;
        while i < EVENTS {
            let batch: Vec<Value> = (i..(i + 1 + i % 4).min(EVENTS))
                .map(|n| json!({"type": "message.delta", "id": "m1", "data": {"n": n}}))
                .collect();
            i += batch.len();
            session.append(batch).await.expect("append");
        }
        session
            .append(vec![json!({"type": "message.end", "id": "m1"})])
            .await
            .expect("end");
    });

    let steady_reader = tokio::spawn(async move { read_until(&mut steady, is_reply_end).await });
    let mut flaky_events = Vec::new();
    let mut reconnects = 0;
    within("the flaky subscriber reads the reply", async {
        loop {
            let (offset, event) = flaky.next_event().await.expect("event");
            let done = is_reply_end(&event);
            flaky_events.push((offset, event));
            if done {
                break;
            }
            if flaky_events.len() % 50 == 0 {
                flaky.reconnect().await.expect("reconnect");
                reconnects += 1;
            }
        }
    })
    .await;
    writer.await?;
    let steady_events = within("the steady subscriber reads the reply", steady_reader).await?;

    assert!(reconnects >= EVENTS / 50, "only {reconnects} reconnects");
    assert_eq!(
        flaky_events, steady_events,
        "both subscribers end with the same event list"
    );
    let deltas: Vec<u64> = steady_events
        .iter()
        .filter(|(_, e)| e["type"] == "message.delta")
        .map(|(_, e)| e["data"]["n"].as_u64().expect("n"))
        .collect();
    assert_eq!(
        deltas,
        (0..EVENTS as u64).collect::<Vec<_>>(),
        "every event once, in order"
    );
    for (i, (offset, _)) in steady_events.iter().enumerate() {
        assert_eq!(*offset, Offset(i as u64), "offsets are gapless");
    }
    println!("resume: {EVENTS} events, {reconnects} reconnects, identical transcripts");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn three_devices_joining_at_different_times_see_the_same_transcript() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let server = DevServer::start(dir.path(), &[]).await?;
    let client = admin(&server).await;
    client.open("devices").await?;
    let _agent = server.demo_agent(
        "devices",
        server.admin_token.as_deref(),
        &["--rate", "400", "--tokens", "300"],
    )?;

    let mut phone = SessionFeed::connect(&client, "devices", "-1").await?;
    // The agent follows new messages only; give it a moment to start listening.
    tokio::time::sleep(Duration::from_millis(500)).await;
    phone.send_message("What makes a session durable?").await?;
    let phone_reader = tokio::spawn(async move { read_until(&mut phone, is_reply_end).await });

    // A device that goes away mid-reply cancels nothing.
    let mut watch = SessionFeed::connect(&client, "devices", "-1").await?;
    within(
        "the watch sees the reply start",
        read_until(&mut watch, |e| e["role"] == "assistant"),
    )
    .await;
    watch.disconnect().await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut laptop = SessionFeed::connect(&client, "devices", "-1").await?;
    let laptop_reader = tokio::spawn(async move { read_until(&mut laptop, is_reply_end).await });

    let phone_events = within("phone reads the reply", phone_reader).await?;
    let laptop_events = within("laptop reads the reply", laptop_reader).await?;
    let mut tablet = SessionFeed::connect(&client, "devices", "-1").await?;
    let tablet_events = within(
        "tablet reads the finished reply",
        read_until(&mut tablet, is_reply_end),
    )
    .await;

    let deltas = phone_events
        .iter()
        .filter(|(_, e)| e["type"] == "message.delta")
        .count();
    assert!(
        deltas >= 2,
        "the reply streamed in several deltas ({deltas})"
    );
    let joins_mid_reply = phone_events
        .iter()
        .filter(|(_, e)| e["type"] == "presence.join")
        .count();
    // One user on three devices: presence records the user's first device only, and no
    // leave while another device stays (docs/ARCHITECTURE.md §3).
    assert_eq!(joins_mid_reply, 1, "one join for the one user");
    assert!(
        !phone_events
            .iter()
            .any(|(_, e)| e["type"] == "presence.leave"),
        "the watch left, but the user is still there"
    );
    assert!(
        !phone_events.iter().any(|(_, e)| e["type"]
            .as_str()
            .is_some_and(|t| t.starts_with("control."))),
        "closing a socket is never a cancel"
    );
    let end = &phone_events.last().expect("events").1;
    assert_eq!(
        end["data"]["stopped"],
        Value::Null,
        "the reply ran to its end"
    );
    assert_eq!(phone_events, laptop_events);
    assert_eq!(phone_events, tablet_events);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn cancel_stops_the_agent_and_every_device_sees_the_cut() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let server = DevServer::start(dir.path(), &[]).await?;
    let client = admin(&server).await;
    client.open("cancel").await?;
    let _agent = server.demo_agent(
        "cancel",
        server.admin_token.as_deref(),
        &["--rate", "100", "--tokens", "5000"],
    )?;
    let mut phone = SessionFeed::connect(&client, "cancel", "-1").await?;
    let mut laptop = SessionFeed::connect(&client, "cancel", "-1").await?;
    tokio::time::sleep(Duration::from_millis(500)).await;
    phone.send_message("Tell me everything.").await?;

    let mut before = within(
        "the reply starts streaming",
        read_until(&mut phone, |e| {
            e["type"] == "message.delta"
                && e["role"] != "user"
                && e["data"]["text"]
                    .as_str()
                    .is_some_and(|t| t.contains("Durable"))
        }),
    )
    .await;
    let sent = Instant::now();
    let cancel_offset = laptop
        .control("cancel", json!({"reason": "user pressed stop"}))
        .await?;
    let is_ack = |e: &Value| e["type"] == "control.ack";
    before.extend(within("the phone sees the ack", read_until(&mut phone, is_ack)).await);
    let cancel_to_ack = sent.elapsed();
    let laptop_events = within("the laptop sees the ack", read_until(&mut laptop, is_ack)).await;

    for (device, events) in [("phone", &before), ("laptop", &laptop_events)] {
        let find = |kind: &str| events.iter().find(|(_, e)| e["type"] == kind).cloned();
        let (cancel_at, _) =
            find("control.cancel").unwrap_or_else(|| panic!("{device} saw no cancel"));
        let (ack_at, ack) = find("control.ack").unwrap_or_else(|| panic!("{device} saw no ack"));
        assert_eq!(cancel_at, cancel_offset);
        assert!(cancel_at < ack_at, "{device}: the ack follows the cancel");
        assert_eq!(ack["data"]["ref"], cancel_offset.to_string());
        let cut = Offset::parse(ack["data"]["cut"].as_str().expect("cut")).expect("offset");
        let reply_id = events
            .iter()
            .find(|(_, e)| e["type"] == "message.start" && e["role"] == "assistant")
            .map(|(_, e)| e["id"].clone())
            .expect("reply start");
        let last_delta = events
            .iter()
            .filter(|(_, e)| e["type"] == "message.delta" && e["id"] == reply_id)
            .map(|(o, _)| *o)
            .max()
            .expect("deltas");
        assert!(
            last_delta < cut,
            "{device}: no delta of the reply after the cut"
        );
        let end = events
            .iter()
            .find(|(_, e)| e["type"] == "message.end" && e["id"] == reply_id);
        assert_eq!(
            end.map(|(_, e)| e["data"]["stopped"].clone()),
            Some(json!(true)),
            "{device}: reply marked stopped"
        );
    }

    // The agent emits nothing more for that reply.
    tokio::time::sleep(Duration::from_millis(700)).await;
    let http = server.admin_client()?;
    let all: Vec<Value> = http
        .get(format!("{}?offset=-1", server.stream("cancel")))
        .send()
        .await?
        .json()
        .await?;
    let ack_index = all
        .iter()
        .position(|e| e["type"] == "control.ack")
        .expect("ack stored");
    let reply_id = all
        .iter()
        .find(|e| e["role"] == "assistant")
        .map(|e| e["id"].clone())
        .expect("reply");
    assert!(
        all[ack_index..].iter().all(|e| e["id"] != reply_id),
        "nothing of the reply after the ack"
    );
    println!(
        "control: cancel to ack seen by another device in {:.1} ms",
        cancel_to_ack.as_secs_f64() * 1000.0
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sixteen_sub_agents_fan_in_to_one_gapless_order() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let server = DevServer::start(dir.path(), &[]).await?;
    let client = admin(&server).await;
    let session = client.open("fan-in").await?;
    let mut feeds = Vec::new();
    for _ in 0..3 {
        feeds.push(SessionFeed::connect(&client, "fan-in", "-1").await?);
    }
    const AGENTS: usize = 16;
    const EACH: usize = 25;
    let agents: Vec<_> = (0..AGENTS)
        .map(|i| {
            let sub = session.sub_agent(&format!("planner/search-{i}"), Some("m_plan"));
            tokio::spawn(async move {
                for j in 0..EACH {
                    let event =
                        json!({"type": "tool.result", "id": format!("t{i}-{j}"), "data": {"j": j}});
                    sub.append(vec![event]).await.expect("sub-agent append");
                }
            })
        })
        .collect();
    for agent in agents {
        agent.await?;
    }
    session
        .append(vec![
            json!({"type": "agent.status", "data": {"done": true}}),
        ])
        .await?;
    let done = |e: &Value| e["type"] == "agent.status";
    let mut transcripts = Vec::new();
    for feed in &mut feeds {
        transcripts.push(within("a subscriber reads the fan-in", read_until(feed, done)).await);
    }
    assert_eq!(transcripts[0], transcripts[1]);
    assert_eq!(transcripts[0], transcripts[2]);
    let events = &transcripts[0];
    for (i, (offset, _)) in events.iter().enumerate() {
        assert_eq!(*offset, Offset(i as u64), "one gapless order");
    }
    let mut per_agent: BTreeMap<String, Vec<u64>> = BTreeMap::new();
    for (_, event) in events.iter().filter(|(_, e)| e["type"] == "tool.result") {
        let agent = event["agent"]
            .as_str()
            .expect("agent path stamped")
            .to_owned();
        assert_eq!(event["parent"], "m_plan", "parent id stamped");
        per_agent
            .entry(agent)
            .or_default()
            .push(event["data"]["j"].as_u64().expect("j"));
    }
    assert_eq!(per_agent.len(), AGENTS);
    for (agent, js) in per_agent {
        assert_eq!(
            js,
            (0..EACH as u64).collect::<Vec<_>>(),
            "{agent}: every append once, in order"
        );
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn tokens_are_checked_on_connect_on_every_route_and_over_http() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let server = DevServer::start(dir.path(), &[]).await?;
    admin(&server).await.open("a").await?;
    admin(&server).await.open("b").await?;
    let ws = |token: Option<&str>| match token {
        Some(token) => format!(
            "{}/ws?token={token}",
            server.url.replace("http://", "ws://")
        ),
        None => format!("{}/ws", server.url.replace("http://", "ws://")),
    };
    let refused_status = |result: Result<_, tokio_tungstenite::tungstenite::Error>| match result {
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => response.status().as_u16(),
        Err(other) => panic!("expected an HTTP refusal, got {other}"),
        Ok(_) => panic!("the connection was accepted"),
    };

    assert_eq!(
        refused_status(tokio_tungstenite::connect_async(ws(None)).await),
        401,
        "no token"
    );
    let expired = DevServer::token(
        dir.path(),
        &["--session", "a", "--role", "reader", "--ttl=-10"],
    )?;
    assert_eq!(
        refused_status(tokio_tungstenite::connect_async(ws(Some(&expired))).await),
        401,
        "expired"
    );
    let reader_a = DevServer::token(dir.path(), &["--session", "a", "--role", "reader"])?;
    let mut tampered = reader_a.clone();
    tampered.replace_range(10..11, if &reader_a[10..11] == "x" { "y" } else { "x" });
    assert_eq!(
        refused_status(tokio_tungstenite::connect_async(ws(Some(&tampered))).await),
        401,
        "tampered"
    );

    let reader = Client::new(&server.url, Some(reader_a.clone()));
    let mut feed = SessionFeed::connect(&reader, "a", "-1").await?;
    match feed.control("cancel", json!({})).await {
        Err(SdkError::Frame { code, message }) => {
            assert_eq!(code, "forbidden");
            assert!(message.contains("reader may not control"), "{message}");
        }
        other => panic!("a reader controlled the session: {other:?}"),
    }
    match feed
        .request(json!({"action": "subscribe", "session": "b"}))
        .await
    {
        Err(SdkError::Frame { code, message }) => {
            assert_eq!(code, "forbidden");
            assert!(
                message.contains("does not cover session \"b\""),
                "{message}"
            );
        }
        other => panic!("a token for a read b: {other:?}"),
    }
    let pong = feed.request(json!({"action": "ping"})).await?;
    assert_eq!(pong["type"], "pong", "refusals leave the connection usable");

    let http = reqwest::Client::new();
    let append = http
        .post(server.stream("a"))
        .bearer_auth(&reader_a)
        .header("content-type", "application/json")
        .body(r#"{"type":"message.delta"}"#)
        .send()
        .await?;
    assert_eq!(append.status(), 403);
    assert!(append.text().await?.contains("reader may not append"));
    let other = http
        .get(server.stream("b"))
        .bearer_auth(&reader_a)
        .send()
        .await?;
    assert_eq!(other.status(), 403);
    let tampered_http = http
        .get(server.stream("a"))
        .bearer_auth(&tampered)
        .send()
        .await?;
    assert_eq!(tampered_http.status(), 401);
    let expired_http = http
        .get(server.stream("a"))
        .bearer_auth(&expired)
        .send()
        .await?;
    assert_eq!(expired_http.status(), 401);
    assert!(expired_http.text().await?.contains("expired"));
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn bad_frames_get_error_frames_and_harm_nobody() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let server = DevServer::start(dir.path(), &[]).await?;
    let client = admin(&server).await;
    let session = client.open("frames").await?;
    let mut victim = SessionFeed::connect(&client, "frames", "now").await?;
    let mut bystander = SessionFeed::connect(&client, "frames", "now").await?;

    let oversized = format!(r#"{{"action":"ping","pad":"{}"}}"#, "x".repeat(200 * 1024));
    let cases = [
        ("not json at all".to_owned(), "bad_request", "not JSON"),
        ("[1,2,3]".to_owned(), "bad_request", "JSON object"),
        (
            r#"{"session":"frames"}"#.to_owned(),
            "bad_request",
            "missing string field `action`",
        ),
        (
            r#"{"action":"dance"}"#.to_owned(),
            "bad_request",
            "unknown action \"dance\"",
        ),
        (
            r#"{"action":"subscribe"}"#.to_owned(),
            "bad_request",
            "missing field `session`",
        ),
        (
            r#"{"action":"control","session":"frames","kind":"explode"}"#.to_owned(),
            "bad_request",
            "unknown control kind",
        ),
        (
            r#"{"action":"subscribe","session":"frames","offset":"yesterday"}"#.to_owned(),
            "bad_request",
            "malformed offset",
        ),
        (
            r#"{"action":"subscribe","session":"nowhere"}"#.to_owned(),
            "not_found",
            "does not exist",
        ),
        (oversized, "too_large", "exceeds the 131072-byte limit"),
    ];
    for (frame, code, mentions) in cases {
        victim.send_raw(&frame).await?;
        let reply = within("an error frame", victim.next_reply()).await?;
        assert_eq!(reply["type"], "error", "for {:.40}", frame);
        assert_eq!(reply["code"], code, "for {:.40}: {reply}", frame);
        let message = reply["message"].as_str().unwrap_or_default();
        assert!(message.contains(mentions), "for {:.40}: {message}", frame);
    }
    assert_eq!(
        victim.request(json!({"action": "ping"})).await?["type"],
        "pong"
    );
    session
        .append(vec![
            json!({"type": "agent.status", "data": {"still": "here"}}),
        ])
        .await?;
    let is_status = |e: &Value| e["type"] == "agent.status";
    let seen_by_victim = within(
        "the victim still receives",
        read_until(&mut victim, is_status),
    )
    .await;
    let seen_by_bystander = within(
        "the bystander still receives",
        read_until(&mut bystander, is_status),
    )
    .await;
    assert_eq!(seen_by_victim.last(), seen_by_bystander.last());
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn presence_tracks_who_is_connected() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let server = DevServer::start(dir.path(), &[]).await?;
    admin(&server).await.open("room").await?;
    let as_user = |user: &str| -> anyhow::Result<Client> {
        let token = DevServer::token(
            dir.path(),
            &["--session", "room", "--role", "controller", "--user", user],
        )?;
        Ok(Client::new(&server.url, Some(token)))
    };
    let mut ana = SessionFeed::connect(&as_user("ana")?, "room", "-1").await?;
    let mut ana_phone = SessionFeed::connect(&as_user("ana")?, "room", "-1").await?;
    let mut bob = SessionFeed::connect(&as_user("bob")?, "room", "-1").await?;
    let members = ana.presence().await?;
    assert_eq!(
        members,
        json!([{"user": "ana", "connections": 2}, {"user": "bob", "connections": 1}])
    );
    bob.disconnect().await;
    ana_phone.disconnect().await;
    let leaves = within(
        "two leaves",
        read_until(&mut ana, |e| {
            e["type"] == "presence.leave" && e["data"]["user"] == "bob"
        }),
    )
    .await;
    let joined: Vec<_> = leaves
        .iter()
        .filter(|(_, e)| e["type"] == "presence.join")
        .map(|(_, e)| e["data"]["user"].as_str().unwrap_or_default().to_owned())
        .collect();
    // One join per user while connected: ana's second device adds none.
    assert_eq!(joined, ["ana", "bob"]);
    // Leaves are appended as the sockets close; wait for both before asking.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let members = ana.presence().await?;
        if members == json!([{"user": "ana", "connections": 1}]) {
            break;
        }
        assert!(Instant::now() < deadline, "presence still {members}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_api_gateway_adapter_pushes_to_real_sockets_and_sees_them_go() -> anyhow::Result<()> {
    use agentwire_apigw_push::{ApiGatewayPush, local_client};
    use agentwire_realtime::{ClientPush, PushError};

    let dir = tempfile::tempdir()?;
    let server = DevServer::start(dir.path(), &["--management-api"]).await?;
    let client = admin(&server).await;
    client.open("managed").await?;
    let mut feed = SessionFeed::connect(&client, "managed", "-1").await?;
    // The connection's id is in its own presence.join.
    let joined = within(
        "the join",
        read_until(&mut feed, |e| e["type"] == "presence.join"),
    )
    .await;
    let id = joined.last().expect("join").1["data"]["connection"]
        .as_str()
        .expect("connection id")
        .to_owned();

    let push = ApiGatewayPush::new(local_client(&server.url));
    push.post(
        &id,
        bytes::Bytes::from_static(br#"{"type":"notice","text":"through the management API"}"#),
    )
    .await
    .map_err(|e| anyhow::anyhow!("{e}"))?;
    let notice = within("the pushed frame", feed.next_reply()).await?;
    assert_eq!(notice["text"], "through the management API");

    feed.disconnect().await;
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match push.post(&id, bytes::Bytes::from_static(b"{}")).await {
            Err(PushError::Gone(gone)) => {
                assert_eq!(gone, id);
                break;
            }
            other => {
                assert!(Instant::now() < deadline, "still not gone: {other:?}");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
    let unknown = push
        .post("bm90LWEtY29ubmVjdGlvbg==", bytes::Bytes::from_static(b"{}"))
        .await;
    assert!(matches!(unknown, Err(PushError::Gone(_))), "{unknown:?}");
    Ok(())
}
