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
