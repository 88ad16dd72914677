//! `agentwire dev` stops cleanly on Ctrl-C and keeps every session across restarts.

use std::time::Duration;

use agentwire_tests::DevServer;

#[tokio::test]
async fn ctrl_c_stops_cleanly_and_a_restart_keeps_every_session() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let mut server = DevServer::start(dir.path(), &[]).await?;
    let http = server.admin_client()?;
    for name in ["one", "two"] {
        let put = http
            .put(server.stream(name))
            .header("content-type", "text/plain")
            .body("hi ")
            .send()
            .await?;
        assert_eq!(put.status(), 201);
        let post = http
            .post(server.stream(name))
            .header("content-type", "text/plain")
            .body(name)
            .send()
            .await?;
        assert_eq!(post.status(), 204);
    }
    // A live reader must not hold shutdown hostage.
    let sse = http
        .get(format!("{}?offset=now&live=sse", server.stream("one")))
        .send()
        .await?;
    assert_eq!(sse.status(), 200);

    let pid = server.child.id().expect("running").to_string();
    let sent = std::process::Command::new("kill")
        .args(["-INT", &pid])
        .status()?;
    assert!(sent.success());
    let exit = tokio::time::timeout(Duration::from_secs(15), server.child.wait()).await??;
    assert!(exit.success(), "agentwire dev exited with {exit}");
    drop(sse);

    let server = DevServer::start(dir.path(), &[]).await?;
    for name in ["one", "two"] {
        let body = http.get(server.stream(name)).send().await?.text().await?;
        assert_eq!(body, format!("hi {name}"));
    }
    Ok(())
}

/// Every file under `dir` ending in `.jsonl.gz`, relative to `root`.
fn traces(root: &std::path::Path, dir: &std::path::Path, found: &mut Vec<String>) {
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let path = entry.path();
        if path.is_dir() {
            traces(root, &path, found);
        } else if path.to_string_lossy().ends_with(".jsonl.gz") {
            found.push(path.strip_prefix(root).unwrap().display().to_string());
        }
    }
}

#[tokio::test]
async fn a_session_the_demo_agent_answered_is_archived_when_it_closes() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let server = DevServer::start(dir.path(), &["--demo-session", "trip"]).await?;
    let http = server.admin_client()?;
    let user = serde_json::json!([
        {"type": "message.start", "id": "u1", "role": "user"},
        {"type": "message.delta", "id": "u1", "data": {"text": "hi"}},
        {"type": "message.end", "id": "u1", "role": "user"},
    ]);
    let put = http
        .put(server.stream("trip"))
        .header("content-type", "application/json")
        .send()
        .await?;
    assert!(put.status().is_success(), "{}", put.status());
    let post = http
        .post(server.stream("trip"))
        .header("content-type", "application/json")
        .body(user.to_string())
        .send()
        .await?;
    assert!(post.status().is_success(), "{}", post.status());
    // The demo agent streams its reply token by token, then ends it.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let events: Vec<serde_json::Value> = http
            .get(format!("{}?offset=-1", server.stream("trip")))
            .send()
            .await?
            .json()
            .await?;
        let replied = events
            .iter()
            .any(|e| e["type"] == "message.end" && e["role"] != "user" && e["id"] != "u1");
        if replied {
            break;
        }
        anyhow::ensure!(
            tokio::time::Instant::now() < deadline,
            "the demo agent did not reply"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        std::fs::read_dir(dir.path().join("traces")).is_err(),
        "archived before it closed"
    );
    let close = http
        .post(server.stream("trip"))
        .header("Stream-Closed", "true")
        .send()
        .await?;
    assert!(close.status().is_success(), "{}", close.status());

    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    let key = loop {
        let mut found = Vec::new();
        traces(dir.path(), &dir.path().join("traces"), &mut found);
        if let Some(key) = found.pop() {
            break key;
        }
        anyhow::ensure!(
            tokio::time::Instant::now() < deadline,
            "no trace 5 s after the close"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(
        key.starts_with("traces/dt=") && key.ends_with("/tenant=local/trip.jsonl.gz"),
        "{key}"
    );
    Ok(())
}
