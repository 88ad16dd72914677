//! `agentwire tail`: follow a session over the WebSocket API and print its events.

use agentwire_sdk::{Client, SdkError, SessionFeed};
use clap::Args;

#[derive(Debug, Args)]
pub struct TailArgs {
    /// The session to follow.
    session: String,

    /// Where to start: -1 (the beginning), now, or an offset.
    #[arg(long, default_value = "-1")]
    from: String,

    /// agentwire's base URL.
    #[arg(long, env = "AGENTWIRE_URL", default_value = "http://127.0.0.1:8787")]
    url: String,

    /// A reader token for the session (not needed with `agentwire dev --insecure`).
    #[arg(long, env = "AGENTWIRE_TOKEN")]
    token: Option<String>,
}

/// Prints `<offset> <event JSON>` lines until interrupted; reconnects and resumes by offset.
pub async fn run(args: TailArgs) -> anyhow::Result<()> {
    let client = Client::new(&args.url, args.token);
    let mut feed = SessionFeed::connect(&client, &args.session, &args.from).await?;
    loop {
        match feed.next_event().await {
            Ok((offset, event)) => println!("{offset} {event}"),
            Err(SdkError::Closed | SdkError::Network(_)) => {
                tokio::time::sleep(std::time::Duration::from_millis(500)).await;
                if let Err(e) = feed.reconnect().await {
                    eprintln!("reconnecting: {e}");
                }
            }
            Err(e) => return Err(e.into()),
        }
    }
}
