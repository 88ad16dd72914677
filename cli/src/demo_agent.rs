//! `agentwire demo-agent`: answers each new user message with a scripted reply, token by
//! token, and obeys cancel, pause, resume and steer. With `--session` it follows one
//! session; with `--pattern` it is a worker of a pool serving every matching session,
//! woken through a pull-wake subscription with a lease per session (`agentwire_sdk::Worker`).

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use agentwire_sdk::{
    Client, Coalesce, ControlEvent, ControlKind, Envelope, EventType, Offset, Session, Worker,
    WorkerOptions,
};
use anyhow::Context;
use clap::Args;
use serde_json::json;
use tokio::sync::broadcast;
use tracing::info;

#[derive(Debug, Args)]
#[command(group(clap::ArgGroup::new("serves").required(true).args(["session", "pattern"])))]
pub struct DemoAgentArgs {
    /// The session to answer in (created if missing).
    #[arg(long)]
    session: Option<String>,

    /// Serve every session whose name matches (`chat-*`), as one worker of the pool:
    /// run several and they share the sessions.
    #[arg(long)]
    pattern: Option<String>,

    /// The pool's subscription id (workers of one pool use the same).
    #[arg(long, default_value = "demo-agents")]
    pool: String,

    /// How long a session's lease lasts without a heartbeat: how soon a dead worker's
    /// session is answered by another.
    #[arg(long, default_value_t = 10_000)]
    lease_ttl_ms: u64,

    /// Sessions this worker serves at once.
    #[arg(long, default_value_t = 16)]
    concurrency: usize,

    /// This worker's name (claims and `agent.lost` events give it).
    #[arg(long)]
    worker_name: Option<String>,

    /// agentwire's base URL.
    #[arg(long, env = "AGENTWIRE_URL", default_value = "http://127.0.0.1:8787")]
    url: String,

    /// A writer token for the session (not needed with `agentwire dev --insecure`).
    #[arg(long, env = "AGENTWIRE_TOKEN")]
    token: Option<String>,

    /// Tokens per second.
    #[arg(long, default_value_t = 50.0)]
    rate: f64,

    /// Tokens per reply.
    #[arg(long, default_value_t = 120)]
    tokens: usize,

    /// Coalescing linger, in milliseconds.
    #[arg(long, default_value_t = 100)]
    linger_ms: u64,

    /// Answer worse when the question contains this text (ignoring case): the reply then
    /// does not restate the question. A known regression, for trying evals out.
    #[arg(long, value_name = "TEXT")]
    worse_on: Option<String>,
}

impl DemoAgentArgs {
    /// The agent `agentwire dev` runs for its demo session.
    pub fn for_dev(session: &str, url: String, token: Option<String>) -> DemoAgentArgs {
        DemoAgentArgs {
            session: Some(session.to_owned()),
            pattern: None,
            pool: "demo-agents".into(),
            lease_ttl_ms: 10_000,
            concurrency: 16,
            worker_name: None,
            url,
            token,
            rate: 30.0,
            tokens: 90,
            linger_ms: 100,
            worse_on: None,
        }
    }
}

const SCRIPT: &str = "Durable sessions keep every token of a reply in an ordered log, so a client that \
drops its connection resumes from its last offset, a second device sees the same words, and a \
stop button means exactly one thing. Each append is acknowledged only once it is on disk, and \
every subscriber receives the same events in the same order.";

pub async fn run(args: DemoAgentArgs) -> anyhow::Result<()> {
    anyhow::ensure!(args.rate > 0.0, "--rate must be positive");
    let client = Client::new(&args.url, args.token.clone());
    let coalesce = Coalesce {
        linger: Duration::from_millis(args.linger_ms),
        ..Coalesce::default()
    };
    let name = match (&args.session, &args.pattern) {
        (Some(name), _) => name.clone(),
        (None, Some(pattern)) => return serve_pool(client, pattern.clone(), args, coalesce).await,
        (None, None) => anyhow::bail!("give --session or --pattern"),
    };
    let session = client
        .open(&name)
        .await
        .context("cannot open the session")?;
    let _watch = session.watch_control();
    crate::say(format_args!("demo-agent answering in {name}"));
    // Catch up first: messages sent before this agent started (or while it was down) are
    // answered too, and only those without a finished reply.
    let tail = session.position().await;
    let mut history = Vec::new();
    let mut at = Offset::ZERO;
    while at < tail {
        let (events, next) = client.wait_events(&name, at).await?;
        history.extend(events);
        at = next;
    }
    let messages = agentwire_sdk::user_messages(&history);
    let mut replies = 0u64;
    for message in messages.unanswered {
        replies += 1;
        let reply_id = format!("m_{}_{replies}", std::process::id());
        answer(
            &session,
            &reply_id,
            &message.id,
            &message.text,
            &args,
            coalesce,
        )
        .await?;
    }
    at = at.max(session.position().await);
    // A user message still being written when the history ended goes on live.
    let mut user_text: HashMap<String, String> =
        messages.open.into_iter().map(|m| (m.id, m.text)).collect();
    loop {
        let (events, next) = client.wait_events(&name, at).await?;
        at = next;
        for (_, event) in events {
            let Ok(event) = Envelope::from_value(event) else {
                continue;
            };
            let Some(id) = event.id.as_deref() else {
                continue;
            };
            match event.kind {
                EventType::MessageDelta => {
                    if let Some(buffer) = user_text.get_mut(id) {
                        buffer.push_str(event.text().unwrap_or_default());
                    }
                }
                EventType::MessageStart if event.is_from_user() => {
                    user_text.insert(id.to_owned(), String::new());
                }
                EventType::MessageEnd if event.is_from_user() => {
                    let text = user_text.remove(id).unwrap_or_default();
                    replies += 1;
                    let reply_id = format!("m_{}_{replies}", std::process::id());
                    answer(&session, &reply_id, id, &text, &args, coalesce).await?;
                    at = at.max(session.position().await);
                }
                _ => {}
            }
        }
    }
}

/// One worker of the pool over `pattern`: each woken session's unanswered messages get a
/// scripted reply, named to the lease first so a death mid-reply is reported.
async fn serve_pool(
    client: Client,
    pattern: String,
    args: DemoAgentArgs,
    coalesce: Coalesce,
) -> anyhow::Result<()> {
    let mut options = WorkerOptions::new(&args.pool, &pattern);
    options.lease_ttl = Duration::from_millis(args.lease_ttl_ms);
    options.concurrency = args.concurrency;
    if let Some(name) = &args.worker_name {
        options.name = name.clone();
    }
    let worker = Worker::start(&client, options)
        .await
        .context("cannot join the pool (create its subscription)")?;
    crate::say(format_args!(
        "demo-agent {} serving {pattern} in pool {}",
        worker.name(),
        args.pool
    ));
    let name = worker.name().to_owned();
    let args = Arc::new(args);
    let replies = Arc::new(AtomicU64::new(0));
    worker
        .run(move |job| {
            let (args, replies, name) = (args.clone(), replies.clone(), name.clone());
            async move {
                let unanswered = job.unanswered();
                if unanswered.is_empty() {
                    return Ok(());
                }
                let watch = job.session.watch_control();
                for message in unanswered {
                    let n = replies.fetch_add(1, Ordering::Relaxed) + 1;
                    let reply_id = format!("m_{name}_{n}");
                    job.working_on(&reply_id).await?;
                    let answered = answer(
                        &job.session,
                        &reply_id,
                        &message.id,
                        &message.text,
                        &args,
                        coalesce,
                    )
                    .await;
                    if let Err(e) = answered {
                        watch.abort();
                        return Err(agentwire_sdk::SdkError::Protocol(e.to_string()));
                    }
                }
                watch.abort();
                Ok(())
            }
        })
        .await
        .context("the worker stopped")
}

/// Streams one scripted reply, obeying control as it comes.
async fn answer(
    session: &Session,
    reply_id: &str,
    question_id: &str,
    question: &str,
    args: &DemoAgentArgs,
    coalesce: Coalesce,
) -> anyhow::Result<()> {
    let mut controls = session.controls();
    // A sub-agent looks something up first: its events carry its own agent path.
    let research = session.sub_agent("demo/research", Some(reply_id));
    let call_id = format!("{reply_id}_search");
    research
        .append_envelopes(vec![
            Envelope::tool_call(
                &call_id,
                json!({"tool": "search_notes", "query": question.trim()}),
            ),
            Envelope::tool_result(&call_id, json!({"hits": 3})),
        ])
        .await?;
    let replier = session.sub_agent("demo", None);
    let reply = replier.reply(reply_id, Some(question_id), coalesce);
    let cancel = reply.cancelled();
    let worse = args
        .worse_on
        .as_deref()
        .is_some_and(|text| question.to_lowercase().contains(&text.to_lowercase()));
    let opening = if worse {
        "I am not sure what you mean. ".to_owned()
    } else {
        format!("You said: “{}”. ", question.trim())
    };
    let words = opening
        .split_inclusive(' ')
        .chain(SCRIPT.split_inclusive(' ').cycle())
        .take(args.tokens.max(1));
    let mut ticker = tokio::time::interval(Duration::from_secs_f64(1.0 / args.rate));
    for word in words {
        tokio::select! {
            biased;
            _ = cancel.cancelled() => break,
            _ = ticker.tick() => {}
        }
        if !obey(&replier, &mut controls, &cancel).await? {
            break;
        }
        reply.delta(word);
    }
    let outcome = reply.end(&replier).await?;
    if let Some(cancel) = outcome.cancelled_by {
        info!(reply = reply_id, cancel = %cancel.offset, cut = %outcome.cut, "reply cancelled");
    }
    Ok(())
}

/// Handles pause (wait for resume), resume and steer; false once cancelled.
async fn obey(
    session: &Session,
    controls: &mut broadcast::Receiver<ControlEvent>,
    cancel: &agentwire_sdk::CancelSignal,
) -> anyhow::Result<bool> {
    let mut paused = false;
    loop {
        let control = if paused {
            tokio::select! {
                _ = cancel.cancelled() => return Ok(false),
                control = controls.recv() => control,
            }
        } else {
            match controls.try_recv() {
                Ok(control) => Ok(control),
                Err(broadcast::error::TryRecvError::Empty) => return Ok(cancel.get().is_none()),
                Err(e) => Err(match e {
                    broadcast::error::TryRecvError::Lagged(n) => {
                        broadcast::error::RecvError::Lagged(n)
                    }
                    _ => broadcast::error::RecvError::Closed,
                }),
            }
        };
        let Ok(control) = control else { continue };
        let here = session.position().await;
        match control.kind {
            ControlKind::Pause => {
                paused = true;
                session.ack(&control, here).await?;
            }
            ControlKind::Resume => {
                paused = false;
                session.ack(&control, here).await?;
            }
            ControlKind::Steer => {
                let status = Envelope::agent_status(json!({"steered": control.data}));
                session.append_envelopes(vec![status]).await?;
                session.ack(&control, here).await?;
            }
            // A cancel reaches the reply through its signal; unknown kinds are not ours.
            ControlKind::Cancel | ControlKind::Other(_) => {}
        }
        if !paused {
            return Ok(cancel.get().is_none());
        }
    }
}
