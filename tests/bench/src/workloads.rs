//! The workloads, each run the same way against every target.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use bytes::Bytes;
use tokio::sync::{Notify, Semaphore, mpsc};
use tokio::task::{JoinHandle, JoinSet};

use crate::protocol::{self, Socket, Sse, Target, message, seq_of};
use crate::stats::Latency;

/// How a live reader follows the session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Live {
    LongPoll,
    Sse,
    WebSocket,
}

impl Live {
    pub fn label(self) -> &'static str {
        match self {
            Live::LongPoll => "long-poll",
            Live::Sse => "SSE",
            Live::WebSocket => "WebSocket",
        }
    }
}

/// How long any one step may take before the workload fails rather than hangs.
const STEP: Duration = Duration::from_secs(30);

/// A spawned task, aborted when dropped: a workload that fails leaves no reader running
/// to load the server during the next one.
struct Task<T>(JoinHandle<T>);

impl<T> Task<T> {
    fn spawn(future: impl Future<Output = T> + Send + 'static) -> Task<T>
    where
        T: Send + 'static,
    {
        Task(tokio::spawn(future))
    }

    async fn join(&mut self) -> anyhow::Result<T> {
        Ok((&mut self.0).await?)
    }
}

impl<T> Drop for Task<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// A fresh stream name per workload, so runs never see each other's data.
fn stream_name(workload: &str) -> String {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let run = std::process::id();
    format!(
        "bench-{run}-{workload}-{}",
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}

/// Follows `name` from the start, sending `(seq, received at)` for every bench message,
/// until `last` has been seen (or nobody listens any more).
async fn follow(
    target: Target,
    name: String,
    live: Live,
    last: u64,
    seen: mpsc::UnboundedSender<(u64, Instant)>,
) -> anyhow::Result<()> {
    let report = |messages: Vec<serde_json::Value>| -> bool {
        let at = Instant::now();
        let mut done = false;
        for seq in messages.iter().filter_map(seq_of) {
            done |= seen.send((seq, at)).is_err() || seq >= last;
        }
        done
    };
    match live {
        Live::LongPoll => {
            let client = target.client();
            let url = target.stream_url(&name);
            let mut offset = "-1".to_owned();
            loop {
                let read = protocol::read(&client, &url, &offset, Some("long-poll")).await?;
                offset = read.next;
                if report(read.messages) {
                    return Ok(());
                }
            }
        }
        Live::Sse => {
            let client = target.client();
            let url = target.stream_url(&name);
            let mut sse = Sse::open(&client, &url, "-1").await?;
            loop {
                while let Some(messages) = sse.next().await? {
                    if report(messages) {
                        return Ok(());
                    }
                }
                // Servers end SSE responses now and then; reconnect where it stopped.
                sse = Sse::open(&client, &url, &sse.offset).await?;
            }
        }
        Live::WebSocket => {
            let mut socket = Socket::connect(&target).await?;
            socket.subscribe(&name, "-1").await?;
            while let Some(events) = socket.events().await? {
                if report(events) {
                    return Ok(());
                }
            }
            bail!("the WebSocket closed before message {last}")
        }
    }
}

/// Append-to-live-read latency: one append at a time, timed from just before the POST to
/// the moment the reader holds the message.
pub async fn latency(target: &Target, live: Live, appends: u64) -> anyhow::Result<Latency> {
    const WARM_UP: u64 = 50;
    let client = target.client();
    let name = stream_name("latency");
    let url = target.stream_url(&name);
    protocol::create(&client, &url).await?;
    let total = WARM_UP + appends;
    let (tx, mut rx) = mpsc::unbounded_channel();
    let mut reader = Task::spawn(follow(target.clone(), name, live, total - 1, tx));
    let mut samples = Vec::with_capacity(appends as usize);
    for seq in 0..total {
        let sent = Instant::now();
        protocol::append(&client, &url, message(seq)).await?;
        let received = loop {
            let (got, at) = tokio::time::timeout(STEP, rx.recv())
                .await
                .context("no live delivery within 30 s")?
                .context("the reader stopped")?;
            if got == seq {
                break at;
            }
        };
        if seq >= WARM_UP {
            samples.push(received.saturating_duration_since(sent));
        }
    }
    reader.join().await??;
    Latency::of(samples).context("no samples")
}

/// Appends per second by `writers` connections, each appending one message at a time
/// for `duration`, to one session or (with `sessions`) to one session each.
/// Also the server's CPU time per append, in µs, when its pid is known: user plus system
/// time of all its threads over the run, which noise from the load generator sharing the
/// machine disturbs less than the rate.
pub async fn throughput(
    target: &Target,
    writers: usize,
    separate_sessions: bool,
    duration: Duration,
) -> anyhow::Result<(f64, Option<f64>)> {
    let setup = target.client();
    let shared = stream_name("throughput");
    let mut urls = Vec::with_capacity(writers);
    for _ in 0..writers {
        let name = if separate_sessions {
            stream_name("throughput")
        } else {
            shared.clone()
        };
        let url = target.stream_url(&name);
        if urls.is_empty() || separate_sessions {
            protocol::create(&setup, &url).await?;
        }
        urls.push(url);
    }
    let start = Arc::new(tokio::sync::Barrier::new(writers + 1));
    let mut tasks = JoinSet::new();
    for (writer, url) in urls.into_iter().enumerate() {
        let client = target.client();
        let start = start.clone();
        tasks.spawn(async move {
            // Connect before the clock starts (and reach the barrier even on failure).
            let connected = protocol::append(&client, &url, message(writer as u64)).await;
            start.wait().await;
            connected?;
            let deadline = Instant::now() + duration;
            let mut count = 0u64;
            while Instant::now() < deadline {
                protocol::append(&client, &url, message(count)).await?;
                count += 1;
            }
            anyhow::Ok(count)
        });
    }
    start.wait().await;
    let cpu_before = target.pid.map(cpu_seconds).transpose()?;
    let began = Instant::now();
    let mut total = 0;
    while let Some(count) = tasks.join_next().await {
        total += count??;
    }
    let rate = total as f64 / began.elapsed().as_secs_f64();
    let cpu = match (target.pid, cpu_before) {
        (Some(pid), Some(before)) => Some((cpu_seconds(pid)? - before) * 1e6 / total as f64),
        _ => None,
    };
    Ok((rate, cpu))
}

/// A process's CPU time so far (user + system, all threads), in seconds.
fn cpu_seconds(pid: u32) -> anyhow::Result<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .with_context(|| format!("reading /proc/{pid}/stat"))?;
    // Fields after the parenthesised command name (which may hold spaces): utime and
    // stime are the 14th and 15th fields overall.
    let rest = stat.rsplit_once(')').context("a /proc stat line")?.1;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| -> anyhow::Result<f64> {
        Ok(fields
            .get(i)
            .context("a short /proc stat line")?
            .parse::<f64>()?)
    };
    // SAFETY: sysconf reads a constant of the running system.
    let per_second = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    Ok((ticks(11)? + ticks(12)?) / per_second)
}

/// How many 4 KB write + fdatasync rounds a second a file in `dir` takes, one after
/// another: what one connection of any server that acknowledges after its own fsync can
/// reach at most on this disk.
pub fn fsyncs_per_second(dir: &std::path::Path, duration: Duration) -> anyhow::Result<f64> {
    use std::io::Write;
    let path = dir.join(format!("fsync-probe-{}", std::process::id()));
    let mut file = std::fs::File::create(&path)?;
    let block = [0u8; 4096];
    let began = Instant::now();
    let mut rounds = 0u64;
    while began.elapsed() < duration {
        file.write_all(&block)?;
        file.sync_data()?;
        rounds += 1;
    }
    let rate = rounds as f64 / began.elapsed().as_secs_f64();
    drop(file);
    std::fs::remove_file(&path)?;
    Ok(rate)
}

/// One session, `subscribers` live readers, `appends` appends one after another (each
/// once every subscriber holds the previous one): delivery latency over all deliveries.
pub async fn fanout(
    target: &Target,
    live: Live,
    subscribers: usize,
    appends: u64,
) -> anyhow::Result<Latency> {
    let client = target.client();
    let name = stream_name("fanout");
    let url = target.stream_url(&name);
    protocol::create(&client, &url).await?;
    // Message 0 is a warm-up every subscriber waits for before the clock starts.
    let last = appends;
    let delivered: Arc<Vec<AtomicUsize>> =
        Arc::new((0..=last).map(|_| AtomicUsize::new(0)).collect());
    let progress = Arc::new(Notify::new());
    let (ready_tx, mut ready_rx) = mpsc::unbounded_channel::<anyhow::Result<()>>();
    // Connecting a thousand sockets at once overflows the listen backlog; 64 at a time.
    let connecting = Arc::new(Semaphore::new(64));
    let mut tasks = JoinSet::new();
    for _ in 0..subscribers {
        let (target, name) = (target.clone(), name.clone());
        let (delivered, progress, ready) = (delivered.clone(), progress.clone(), ready_tx.clone());
        let connecting = connecting.clone();
        tasks.spawn(async move {
            let (tx, mut rx) = mpsc::unbounded_channel();
            let permit = connecting.acquire_owned().await?;
            let mut reader = Task::spawn(follow(target, name, live, last, tx));
            // Follow's first action is to subscribe; seeing the warm-up message proves it.
            // Longer than the handshake's and the subscribe's own timeouts (30 s each), so
            // that a stalled step fails with its own error, naming it.
            let first = tokio::time::timeout(2 * STEP + Duration::from_secs(5), rx.recv()).await;
            drop(permit);
            let failure = match first {
                Err(_) => Some("subscribed, but no warm-up message within 65 s".to_owned()),
                Ok(Some((0, _))) => None,
                Ok(Some((seq, _))) => Some(format!("first message seen was {seq}")),
                Ok(None) => Some(match reader.join().await {
                    Ok(Err(e)) => format!("subscriber failed: {e:#}"),
                    _ => "subscriber stopped".to_owned(),
                }),
            };
            if let Some(failure) = failure {
                let _ = ready.send(Err(anyhow::anyhow!("{failure}")));
                anyhow::bail!(failure);
            }
            let _ = ready.send(Ok(()));
            let mut received = Vec::with_capacity(appends as usize);
            while let Some((seq, at)) = rx.recv().await {
                if seq == 0 {
                    continue;
                }
                received.push((seq, at));
                if delivered[seq as usize].fetch_add(1, Ordering::AcqRel) + 1 == subscribers {
                    progress.notify_waiters();
                }
            }
            reader.join().await??;
            anyhow::Ok(received)
        });
    }
    drop(ready_tx);
    protocol::append(&client, &url, message(0)).await?;
    for _ in 0..subscribers {
        tokio::time::timeout(STEP, ready_rx.recv())
            .await
            .context("subscribers not ready within 30 s")?
            .context("a subscriber vanished")??;
    }
    let mut sent = vec![Instant::now(); last as usize + 1];
    for seq in 1..=last {
        let notified = progress.notified();
        tokio::pin!(notified);
        notified.as_mut().enable();
        sent[seq as usize] = Instant::now();
        protocol::append(&client, &url, message(seq)).await?;
        while delivered[seq as usize].load(Ordering::Acquire) < subscribers {
            tokio::time::timeout(STEP, notified.as_mut())
                .await
                .with_context(|| format!("message {seq} not delivered to all within 30 s"))?;
            notified.set(progress.notified());
            notified.as_mut().enable();
        }
    }
    let mut samples = Vec::with_capacity(subscribers * appends as usize);
    while let Some(received) = tasks.join_next().await {
        for (seq, at) in received?? {
            samples.push(at.saturating_duration_since(sent[seq as usize]));
        }
    }
    Latency::of(samples).context("no deliveries")
}

/// A reader catching up `events` messages from offset 0 (written beforehand in appends of
/// ten, like coalesced agent output): messages per second.
pub async fn resume(target: &Target, live: Option<Live>, events: u64) -> anyhow::Result<f64> {
    let client = target.client();
    let name = stream_name("resume");
    let url = target.stream_url(&name);
    protocol::create(&client, &url).await?;
    fill(target, &url, events).await?;
    let began = Instant::now();
    let count = match live {
        None => {
            let mut offset = "-1".to_owned();
            let mut count = 0;
            loop {
                let read = protocol::read(&client, &url, &offset, None).await?;
                count += read.messages.iter().filter_map(seq_of).count() as u64;
                offset = read.next;
                if read.up_to_date {
                    break count;
                }
            }
        }
        Some(live) => {
            let (tx, mut rx) = mpsc::unbounded_channel();
            let mut reader = Task::spawn(follow(target.clone(), name, live, events - 1, tx));
            tokio::time::timeout(Duration::from_secs(300), reader.join())
                .await
                .context("not caught up within 300 s")???;
            let mut count = 0;
            while rx.recv().await.is_some() {
                count += 1;
            }
            count
        }
    };
    let elapsed = began.elapsed();
    anyhow::ensure!(count == events, "caught up {count} of {events} messages");
    Ok(count as f64 / elapsed.as_secs_f64())
}

/// Writes `events` messages in appends of ten.
async fn fill(target: &Target, url: &str, events: u64) -> anyhow::Result<()> {
    const BATCH: u64 = 10;
    let client = target.client();
    for first in (0..events).step_by(BATCH as usize) {
        let last = (first + BATCH).min(events);
        let items: Vec<String> = (first..last)
            .map(|seq| String::from_utf8_lossy(&message(seq)).into_owned())
            .collect();
        protocol::append(&client, url, Bytes::from(format!("[{}]", items.join(",")))).await?;
    }
    Ok(())
}
