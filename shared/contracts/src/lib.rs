//! The contracts of the ports, as async tests every implementation runs: the
//! [`SessionLog`] here, the connection registry in [`registry`], the trace archive in
//! [`archive`], the claim-check blob store in [`blobs`], the client push in [`push`], the
//! score index in [`scores`], the grading store in [`grading`], and the judge's budget
//! ledger in [`budget`].
//!
//! A backend's test file calls [`session_log_contract!`] with an async function that returns
//! a fresh [`Subject`]; each case below becomes one `#[tokio::test]` there.

pub mod activity;
pub mod archive;
pub mod blobs;
pub mod budget;
pub mod grading;
pub mod push;
pub mod registry;
pub mod scores;
pub mod subscriptions;

use std::any::Any;
use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use agentwire_session::{
    AppendError, AppendKind, AppendRequest, Clock, CreateError, CreateStream, DeleteError, Expiry,
    ForkFrom, Offset, Payload, ProducerClaim, ReadError, ReadFrom, SessionLog, SystemClock,
    events_of,
};
use bytes::Bytes;

/// A log under test, the clock it reads, and whatever must live as long as it (a temp dir).
pub struct Subject {
    pub log: Arc<dyn SessionLog>,
    pub clock: Arc<ManualClock>,
    pub keep: Box<dyn Any + Send + Sync>,
}

/// A clock that only moves when told to, starting at the real time.
#[derive(Debug)]
pub struct ManualClock(AtomicI64);

impl Default for ManualClock {
    fn default() -> ManualClock {
        ManualClock(AtomicI64::new(SystemClock.now_ms()))
    }
}

impl ManualClock {
    /// A clock standing at `unix_ms`.
    pub fn at(unix_ms: i64) -> ManualClock {
        ManualClock(AtomicI64::new(unix_ms))
    }

    /// Moves time forward.
    pub fn advance(&self, by: Duration) {
        self.0.fetch_add(by.as_millis() as i64, Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now_ms(&self) -> i64 {
        self.0.load(Ordering::SeqCst)
    }
}

/// Generates one `#[tokio::test]` per contract case. `$subject` is an async fn returning a
/// fresh [`Subject`].
#[macro_export]
macro_rules! session_log_contract {
    ($subject:path) => {
        $crate::session_log_contract!(@cases $subject;
            gapless_offsets_under_16_concurrent_writers,
            producer_retries_apply_once_and_stale_epochs_are_fenced,
            resume_from_any_offset_returns_exactly_the_later_data,
            json_batches_keep_message_offsets,
            refused_appends_change_nothing,
            ttl_expires_idle_streams_and_reads_renew_it,
            absolute_expiry_is_not_renewed,
            close_is_durable_and_final,
            create_is_idempotent_only_for_the_same_config,
            forks_inherit_up_to_the_fork_point_and_diverge,
            deleting_a_forked_source_keeps_it_for_its_forks,
            records_carry_their_commit_time,
            producers_taking_turns_each_stay_exactly_once,
            retries_racing_other_writers_apply_once,
            a_close_racing_appends_is_the_last_write,
        );
    };
    (@cases $subject:path; $($case:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn $case() {
                let subject = $subject().await;
                $crate::$case(&subject).await;
            }
        )*
    };
}

/// `len` bytes: every byte value first, then a pseudo-random run from `seed` (xorshift, to
/// keep this crate free of a random number dependency).
fn binary(len: usize, seed: u64) -> Bytes {
    let mut state = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    (0..len)
        .map(|i| {
            if i < 256 {
                return i as u8;
            }
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state as u8
        })
        .collect()
}

const TEXT: &str = "text/plain";
const JSON: &str = "application/json";

fn stream(name: &str, content_type: &str) -> CreateStream {
    CreateStream {
        name: name.to_owned(),
        content_type: Some(content_type.to_owned()),
        expiry: Expiry::Never,
        closed: false,
        fork: None,
        body: Bytes::new(),
    }
}

fn text(data: &str) -> AppendRequest {
    AppendRequest {
        content_type: Some(TEXT.to_owned()),
        payload: Payload {
            data: Bytes::copy_from_slice(data.as_bytes()),
            units: data.len() as u64,
        },
        ..AppendRequest::default()
    }
}

fn json(body: &str) -> AppendRequest {
    let payload = Payload::frame(
        agentwire_session::Mode::Json,
        Bytes::copy_from_slice(body.as_bytes()),
        false,
    )
    .expect("test JSON is valid");
    AppendRequest {
        content_type: Some(JSON.to_owned()),
        payload,
        ..AppendRequest::default()
    }
}

fn with_producer(mut request: AppendRequest, id: &str, epoch: u64, seq: u64) -> AppendRequest {
    request.producer = Some(ProducerClaim {
        id: id.to_owned(),
        epoch,
        seq,
    });
    request
}

/// Everything a stream holds from `from`, following the log's chunking to the end.
async fn read_all(
    log: &dyn SessionLog,
    name: &str,
    from: Offset,
) -> (Vec<u8>, Vec<(Offset, Offset)>) {
    let (mut data, mut spans, mut at) = (Vec::new(), Vec::new(), from);
    loop {
        let batch = log
            .read(name, ReadFrom::At(at), 64 * 1024)
            .await
            .expect("read");
        for record in &batch.records {
            spans.push((record.start, record.end));
            data.extend_from_slice(&record.data);
        }
        if batch.up_to_date() {
            return (data, spans);
        }
        assert!(
            batch.next > at,
            "a read that is not up to date must make progress"
        );
        at = batch.next;
    }
}

async fn text_of(log: &dyn SessionLog, name: &str) -> String {
    String::from_utf8(read_all(log, name, Offset::ZERO).await.0).expect("utf-8")
}

/// docs/ARCHITECTURE.md §4.1 and §4.5: 16 writers appending at once get one gapless total
/// order.
pub async fn gapless_offsets_under_16_concurrent_writers(subject: &Subject) {
    const WRITERS: usize = 16;
    const EACH: usize = 40;
    let log = &subject.log;
    log.create(stream("fan-in", JSON)).await.expect("create");
    let tasks: Vec<_> = (0..WRITERS)
        .map(|w| {
            let log = Arc::clone(log);
            tokio::spawn(async move {
                let mut acked = Vec::new();
                for i in 0..EACH {
                    // Mix single messages and batches of two.
                    let body = if i % 3 == 0 {
                        format!(r#"[{{"w":{w},"i":{i},"p":0}},{{"w":{w},"i":{i},"p":1}}]"#)
                    } else {
                        format!(r#"{{"w":{w},"i":{i},"p":0}}"#)
                    };
                    let appended = log.append("fan-in", json(&body)).await.expect("append");
                    acked.push((appended.start, appended.tail));
                }
                acked
            })
        })
        .collect();
    let mut acked = Vec::new();
    for task in tasks {
        acked.extend(task.await.expect("writer task"));
    }
    acked.sort();
    let mut expected_start = Offset::ZERO;
    for (start, tail) in &acked {
        assert_eq!(
            *start, expected_start,
            "acknowledged ranges must tile the log without gaps"
        );
        expected_start = *tail;
    }
    let batch = log
        .read("fan-in", ReadFrom::Start, usize::MAX)
        .await
        .expect("read");
    assert_eq!(batch.info.tail, expected_start);
    let spans: Vec<_> = batch.records.iter().map(|r| (r.start, r.end)).collect();
    assert_eq!(
        spans, acked,
        "the log holds exactly the acknowledged appends, in offset order"
    );
    let messages: Vec<serde_like::Msg> = batch
        .records
        .iter()
        .flat_map(|r| {
            agentwire_session::content::json_messages(&r.data)
                .into_iter()
                .map(serde_like::parse)
        })
        .collect();
    let unique: BTreeSet<_> = messages.iter().cloned().collect();
    assert_eq!(unique.len(), messages.len(), "no message is stored twice");
    assert_eq!(messages.len(), WRITERS * (EACH + EACH.div_ceil(3)));
    for w in 0..WRITERS {
        let order: Vec<_> = messages
            .iter()
            .filter(|m| m.0 == w)
            .map(|m| (m.1, m.2))
            .collect();
        let mut sorted = order.clone();
        sorted.sort();
        assert_eq!(order, sorted, "each writer's appends keep their order");
    }
}

/// docs/ARCHITECTURE.md §4.2: a retried append with the same producer id, epoch and seq
/// applies once.
pub async fn producer_retries_apply_once_and_stale_epochs_are_fenced(subject: &Subject) {
    let log = &subject.log;
    log.create(stream("producer", TEXT)).await.expect("create");
    let first = log
        .append("producer", with_producer(text("a"), "p", 0, 0))
        .await
        .expect("seq 0");
    assert_eq!(first.kind, AppendKind::Written);
    for _ in 0..3 {
        let retry = log
            .append("producer", with_producer(text("a"), "p", 0, 0))
            .await
            .expect("retry");
        assert_eq!(retry.kind, AppendKind::Duplicate);
        assert_eq!(retry.tail, Offset(1));
    }
    log.append("producer", with_producer(text("b"), "p", 0, 1))
        .await
        .expect("seq 1");
    let gap = log
        .append("producer", with_producer(text("x"), "p", 0, 3))
        .await;
    assert_eq!(
        gap,
        Err(AppendError::SeqGap {
            expected: 2,
            received: 3
        })
    );
    let bump_bad = log
        .append("producer", with_producer(text("x"), "p", 1, 1))
        .await;
    assert_eq!(bump_bad, Err(AppendError::EpochMustStartAtZero(1)));
    let bumped = log
        .append("producer", with_producer(text("c"), "p", 1, 0))
        .await
        .expect("epoch 1");
    assert_eq!(bumped.producer.map(|p| p.epoch), Some(1));
    let zombie = log
        .append("producer", with_producer(text("z"), "p", 0, 2))
        .await;
    assert_eq!(
        zombie,
        Err(AppendError::StaleEpoch {
            received: 0,
            current: 1
        })
    );
    // Producers are independent of each other.
    log.append("producer", with_producer(text("d"), "q", 0, 0))
        .await
        .expect("other producer");
    assert_eq!(text_of(log.as_ref(), "producer").await, "abcd");
}

/// A second producer (and a writer with none) arriving, an epoch bump after them, and
/// retries of each: a log that keeps a producer's state with its newest record must still
/// know it once another writer's record is newer.
pub async fn producers_taking_turns_each_stay_exactly_once(subject: &Subject) {
    let log = &subject.log;
    log.create(stream("turns", TEXT)).await.expect("create");
    let kind = |r: Result<agentwire_session::Appended, AppendError>| r.map(|a| a.kind);
    let append = |body: &'static str, producer: Option<(&'static str, u64, u64)>| {
        let log = Arc::clone(log);
        async move {
            let request = match producer {
                Some((id, epoch, seq)) => with_producer(text(body), id, epoch, seq),
                None => text(body),
            };
            log.append("turns", request).await
        }
    };
    assert_eq!(
        kind(append("a", Some(("A", 0, 0))).await),
        Ok(AppendKind::Written)
    );
    assert_eq!(
        kind(append("a", Some(("A", 0, 0))).await),
        Ok(AppendKind::Duplicate)
    );
    assert_eq!(
        kind(append("b", Some(("B", 0, 0))).await),
        Ok(AppendKind::Written)
    );
    assert_eq!(
        kind(append("a", Some(("A", 0, 0))).await),
        Ok(AppendKind::Duplicate),
        "A's retry after B took over"
    );
    assert_eq!(
        kind(append("c", Some(("A", 0, 1))).await),
        Ok(AppendKind::Written)
    );
    assert_eq!(kind(append("d", None).await), Ok(AppendKind::Written));
    assert_eq!(
        kind(append("b", Some(("B", 0, 0))).await),
        Ok(AppendKind::Duplicate),
        "B's retry two writers later"
    );
    assert_eq!(
        kind(append("e", Some(("B", 0, 1))).await),
        Ok(AppendKind::Written)
    );
    assert_eq!(
        kind(append("c", Some(("A", 0, 1))).await),
        Ok(AppendKind::Duplicate),
        "A's retry after a plain write and B"
    );
    assert_eq!(
        append("x", Some(("A", 0, 3))).await,
        Err(AppendError::SeqGap {
            expected: 2,
            received: 3
        })
    );
    let bumped = append("f", Some(("A", 1, 0))).await.expect("epoch bump");
    assert_eq!(
        (bumped.kind, bumped.producer.map(|p| p.epoch)),
        (AppendKind::Written, Some(1))
    );
    assert_eq!(
        append("z", Some(("A", 0, 2))).await,
        Err(AppendError::StaleEpoch {
            received: 0,
            current: 1
        })
    );
    assert_eq!(
        kind(append("g", Some(("B", 0, 2))).await),
        Ok(AppendKind::Written)
    );
    assert_eq!(
        append("z", Some(("A", 0, 2))).await,
        Err(AppendError::StaleEpoch {
            received: 0,
            current: 1
        }),
        "the bumped epoch holds once B is newest"
    );
    let mut close = with_producer(AppendRequest::default(), "A", 1, 1);
    close.close = true;
    assert_eq!(
        kind(log.append("turns", close.clone()).await),
        Ok(AppendKind::Written)
    );
    assert_eq!(
        kind(log.append("turns", close).await),
        Ok(AppendKind::Duplicate)
    );
    assert_eq!(
        append("h", Some(("B", 0, 3))).await,
        Err(AppendError::Closed { tail: Offset(7) })
    );
    assert_eq!(text_of(log.as_ref(), "turns").await, "abcdefg");
}

/// Each producer's appends sent three times at once (a client retrying while its first
/// attempt is still in flight), three producers and a plain writer at the same time: each
/// append is written exactly once, the others are duplicates, in each producer's order.
pub async fn retries_racing_other_writers_apply_once(subject: &Subject) {
    const EACH: u64 = 12;
    let log = &subject.log;
    log.create(stream("racing", JSON)).await.expect("create");
    let producers: Vec<_> = (0..4usize)
        .map(|w| {
            let log = Arc::clone(log);
            tokio::spawn(async move {
                let mut written = 0;
                for i in 0..EACH {
                    let body = format!(r#"{{"w":{w},"i":{i},"p":0}}"#);
                    if w == 3 {
                        // The plain writer: no producer, no retries.
                        log.append("racing", json(&body))
                            .await
                            .expect("plain append");
                        written += 1;
                        continue;
                    }
                    let id = format!("p{w}");
                    let attempts: Vec<_> = (0..3)
                        .map(|_| {
                            let (log, request) =
                                (Arc::clone(&log), with_producer(json(&body), &id, 0, i));
                            tokio::spawn(async move { log.append("racing", request).await })
                        })
                        .collect();
                    let mut kinds = Vec::new();
                    for attempt in attempts {
                        kinds.push(attempt.await.expect("task").expect("append").kind);
                    }
                    kinds.sort_by_key(|k| *k != AppendKind::Written);
                    assert_eq!(
                        kinds,
                        [
                            AppendKind::Written,
                            AppendKind::Duplicate,
                            AppendKind::Duplicate
                        ],
                        "{id} seq {i}: one attempt writes, the others are duplicates"
                    );
                    written += 1;
                }
                written
            })
        })
        .collect();
    let mut total = 0;
    for producer in producers {
        total += producer.await.expect("writer task");
    }
    let batch = log
        .read("racing", ReadFrom::Start, usize::MAX)
        .await
        .expect("read");
    let messages: Vec<serde_like::Msg> = events_of(&batch)
        .iter()
        .map(|e| serde_like::parse(&e.json))
        .collect();
    assert_eq!(
        messages.len() as u64,
        total,
        "each append is stored exactly once"
    );
    for w in 0..4 {
        let order: Vec<_> = messages.iter().filter(|m| m.0 == w).map(|m| m.1).collect();
        assert_eq!(
            order,
            (0..EACH as usize).collect::<Vec<_>>(),
            "writer {w}'s order"
        );
    }
}

/// A close racing other appends: appends acknowledged before it are kept, everything after
/// it is refused, and nothing lands past the tail it reported.
pub async fn a_close_racing_appends_is_the_last_write(subject: &Subject) {
    let log = &subject.log;
    log.create(stream("race-close", TEXT))
        .await
        .expect("create");
    let writers: Vec<_> = (0..6)
        .map(|w| {
            let log = Arc::clone(log);
            tokio::spawn(async move {
                let mut acked = Vec::new();
                for _ in 0..10 {
                    match log.append("race-close", text(&w.to_string())).await {
                        Ok(appended) => acked.push(appended.tail),
                        Err(AppendError::Closed { .. }) => break,
                        Err(e) => panic!("append: {e}"),
                    }
                }
                acked
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(5)).await;
    let close = AppendRequest {
        close: true,
        ..AppendRequest::default()
    };
    let closed = log.append("race-close", close).await.expect("close");
    assert!(closed.closed);
    let mut acked = Vec::new();
    for writer in writers {
        acked.extend(writer.await.expect("writer task"));
    }
    assert!(
        acked.iter().all(|tail| *tail <= closed.tail),
        "an append acknowledged past the close's tail {:?}: {acked:?}",
        closed.tail
    );
    let (data, _) = read_all(log.as_ref(), "race-close", Offset::ZERO).await;
    assert_eq!(
        data.len() as u64,
        closed.tail.0,
        "the log ends where the close said"
    );
    assert_eq!(data.len(), acked.len(), "exactly the acknowledged appends");
    assert_eq!(
        log.append("race-close", text("late")).await,
        Err(AppendError::Closed { tail: closed.tail })
    );
}

/// docs/ARCHITECTURE.md §4.3: reading from any offset returns exactly what follows it.
pub async fn resume_from_any_offset_returns_exactly_the_later_data(subject: &Subject) {
    let log = &subject.log;
    log.create(stream("resume", TEXT)).await.expect("create");
    let mut full = String::new();
    for i in 0..30 {
        let chunk = format!("<{i}:{}>", "x".repeat(i % 7));
        log.append("resume", text(&chunk)).await.expect("append");
        full.push_str(&chunk);
    }
    for at in 0..=full.len() {
        let (data, _) = read_all(log.as_ref(), "resume", Offset(at as u64)).await;
        assert_eq!(
            String::from_utf8(data).expect("utf-8"),
            full[at..],
            "resume from {at}"
        );
    }
    let now = log
        .read("resume", ReadFrom::Now, usize::MAX)
        .await
        .expect("read now");
    assert!(now.records.is_empty() && now.from == Offset(full.len() as u64));
}

/// JSON offsets count messages, so a reader can resume inside a batch.
pub async fn json_batches_keep_message_offsets(subject: &Subject) {
    let log = &subject.log;
    log.create(stream("json", JSON)).await.expect("create");
    let batch = log
        .append("json", json(r#"[{"n":0},{"n":1},{"n":2}]"#))
        .await
        .expect("batch");
    assert_eq!((batch.start, batch.tail), (Offset(0), Offset(3)));
    log.append("json", json(r#"{"n":3}"#))
        .await
        .expect("single");
    let from_one = log
        .read("json", ReadFrom::At(Offset(1)), usize::MAX)
        .await
        .expect("read");
    let data: Vec<_> = from_one.records.iter().map(|r| r.data.clone()).collect();
    assert_eq!(
        data,
        vec![
            Bytes::from_static(br#"{"n":1},{"n":2}"#),
            Bytes::from_static(br#"{"n":3}"#)
        ]
    );
    assert_eq!(from_one.next, Offset(4));
}

/// docs/ARCHITECTURE.md §4.6: refused input changes nothing.
pub async fn refused_appends_change_nothing(subject: &Subject) {
    let log = &subject.log;
    log.create(stream("strict", TEXT)).await.expect("create");
    let mut seq_one = text("a");
    seq_one.stream_seq = Some("001".into());
    log.append("strict", seq_one).await.expect("append");
    let mut wrong_type = text("b");
    wrong_type.content_type = Some(JSON.into());
    assert!(matches!(
        log.append("strict", wrong_type).await,
        Err(AppendError::ContentTypeMismatch { .. })
    ));
    let mut regress = text("c");
    regress.stream_seq = Some("001".into());
    assert!(matches!(
        log.append("strict", regress).await,
        Err(AppendError::SeqRegression { .. })
    ));
    let gap = log
        .append("strict", with_producer(text("d"), "p", 0, 5))
        .await;
    assert!(matches!(gap, Err(AppendError::SeqGap { .. })));
    // The gap was refused, so the producer has no state and seq 0 is still its first.
    let first = log
        .append("strict", with_producer(text("e"), "p", 0, 0))
        .await
        .expect("first");
    assert_eq!(first.kind, AppendKind::Written);
    assert_eq!(
        log.append("missing", text("x")).await,
        Err(AppendError::NotFound("missing".into()))
    );
    assert_eq!(text_of(log.as_ref(), "strict").await, "ae");
}

/// TTL streams expire when idle; reads and writes renew them, HEAD does not.
pub async fn ttl_expires_idle_streams_and_reads_renew_it(subject: &Subject) {
    let (log, clock) = (&subject.log, &subject.clock);
    let mut request = stream("ttl", TEXT);
    request.expiry = Expiry::Ttl { seconds: 10 };
    log.create(request).await.expect("create");
    clock.advance(Duration::from_secs(8));
    log.read("ttl", ReadFrom::Start, usize::MAX)
        .await
        .expect("read renews");
    clock.advance(Duration::from_secs(8));
    log.head("ttl").await.expect("alive: renewed 8 s ago");
    clock.advance(Duration::from_secs(3));
    assert_eq!(
        log.head("ttl").await,
        Err(ReadError::NotFound("ttl".into())),
        "HEAD does not renew"
    );
    assert_eq!(
        log.append("ttl", text("late")).await,
        Err(AppendError::NotFound("ttl".into()))
    );
    // The name is free again.
    let again = log.create(stream("ttl", JSON)).await.expect("re-create");
    assert!(again.created && again.info.tail == Offset::ZERO);
}

/// An absolute expiry holds whatever is read or written.
pub async fn absolute_expiry_is_not_renewed(subject: &Subject) {
    let (log, clock) = (&subject.log, &subject.clock);
    let mut request = stream("deadline", TEXT);
    request.expiry = Expiry::At {
        unix_ms: clock.now_ms() + 5_000,
    };
    log.create(request).await.expect("create");
    clock.advance(Duration::from_secs(4));
    log.append("deadline", text("a"))
        .await
        .expect("append before the deadline");
    log.read("deadline", ReadFrom::Start, usize::MAX)
        .await
        .expect("read");
    clock.advance(Duration::from_secs(1));
    assert!(matches!(
        log.read("deadline", ReadFrom::Start, 1).await,
        Err(ReadError::NotFound(_))
    ));
}

/// Closing is atomic with a final append, idempotent, and refuses further data.
pub async fn close_is_durable_and_final(subject: &Subject) {
    let log = &subject.log;
    log.create(stream("closing", TEXT)).await.expect("create");
    let mut last = with_producer(text("end"), "p", 0, 0);
    last.close = true;
    let closed = log
        .append("closing", last.clone())
        .await
        .expect("append and close");
    assert!(closed.closed && closed.tail == Offset(3));
    assert_eq!(
        log.append("closing", last).await.map(|a| a.kind),
        Ok(AppendKind::Duplicate)
    );
    assert_eq!(
        log.append("closing", text("more")).await,
        Err(AppendError::Closed { tail: Offset(3) })
    );
    let close_again = AppendRequest {
        close: true,
        ..AppendRequest::default()
    };
    assert_eq!(
        log.append("closing", close_again).await.map(|a| a.kind),
        Ok(AppendKind::AlreadyClosed)
    );
    let batch = log
        .read("closing", ReadFrom::Start, usize::MAX)
        .await
        .expect("read");
    assert!(batch.end_of_stream());
    assert_eq!(text_of(log.as_ref(), "closing").await, "end");
}

/// PUT semantics: the same config is a no-op, a different one a conflict.
pub async fn create_is_idempotent_only_for_the_same_config(subject: &Subject) {
    let log = &subject.log;
    let first = log.create(stream("config", TEXT)).await.expect("create");
    assert!(first.created);
    let mut same = stream("config", "TEXT/plain; charset=utf-8");
    same.body = Bytes::from_static(b"ignored");
    assert!(!log.create(same).await.expect("same config").created);
    let conflict = log.create(stream("config", JSON)).await;
    assert!(matches!(
        conflict,
        Err(CreateError::ConfigMismatch {
            field: "content type",
            ..
        })
    ));
    let mut with_body = stream("seeded", JSON);
    with_body.body = Bytes::from_static(br#"[1,2]"#);
    assert_eq!(
        log.create(with_body)
            .await
            .expect("create with body")
            .info
            .tail,
        Offset(2)
    );
}

/// Forks read their source up to the fork point, then only their own appends.
pub async fn forks_inherit_up_to_the_fork_point_and_diverge(subject: &Subject) {
    let log = &subject.log;
    log.create(stream("source", TEXT)).await.expect("create");
    log.append("source", text("hello")).await.expect("append");
    log.append("source", text(" world")).await.expect("append");
    let fork = |name: &str, source: &str, offset, sub_offset| CreateStream {
        name: name.to_owned(),
        content_type: None,
        expiry: Expiry::Never,
        closed: false,
        fork: Some(ForkFrom {
            source: source.to_owned(),
            offset,
            sub_offset,
        }),
        body: Bytes::new(),
    };
    let whole = log
        .create(fork("fork-tail", "source", None, 0))
        .await
        .expect("fork at tail");
    assert_eq!(
        (whole.info.tail, whole.info.content_type.as_str()),
        (Offset(11), TEXT)
    );
    let mid = log
        .create(fork("fork-mid", "source", Some(Offset(5)), 3))
        .await
        .expect("fork mid record");
    assert_eq!(mid.info.tail, Offset(8));
    assert!(matches!(
        log.create(fork("fork-far", "source", Some(Offset(5)), 7))
            .await,
        Err(CreateError::SubOffsetPastBoundary { .. })
    ));
    assert!(matches!(
        log.create(fork("fork-beyond", "source", Some(Offset(12)), 0))
            .await,
        Err(CreateError::ForkOffsetBeyondTail { .. })
    ));
    assert!(matches!(
        log.create(fork("fork-none", "nowhere", None, 0)).await,
        Err(CreateError::SourceNotFound(_))
    ));
    log.append("source", text("!"))
        .await
        .expect("source moves on");
    log.append("fork-mid", text("k"))
        .await
        .expect("fork moves on");
    let chained = log
        .create(fork("fork-chain", "fork-mid", Some(Offset(5)), 2))
        .await
        .expect("chain");
    log.append("fork-chain", text("!"))
        .await
        .expect("chain moves on");
    assert_eq!(text_of(log.as_ref(), "source").await, "hello world!");
    assert_eq!(text_of(log.as_ref(), "fork-tail").await, "hello world");
    assert_eq!(text_of(log.as_ref(), "fork-mid").await, "hello wok");
    assert_eq!(text_of(log.as_ref(), "fork-chain").await, "hello w!");
    assert_eq!(chained.info.fork, Some(("fork-mid".to_owned(), Offset(7))));
    let resumed = read_all(log.as_ref(), "fork-mid", Offset(7)).await.0;
    assert_eq!(resumed, b"ok");
}

/// A source deleted while forks read from it is soft-deleted; the last fork's delete frees it.
pub async fn deleting_a_forked_source_keeps_it_for_its_forks(subject: &Subject) {
    let log = &subject.log;
    log.create(stream("parent", TEXT)).await.expect("create");
    log.append("parent", text("abc")).await.expect("append");
    let mut child = stream("child", TEXT);
    child.fork = Some(ForkFrom {
        source: "parent".into(),
        offset: None,
        sub_offset: 0,
    });
    log.create(child).await.expect("fork");
    log.delete("parent").await.expect("soft delete");
    assert_eq!(
        log.head("parent").await,
        Err(ReadError::Gone("parent".into()))
    );
    assert_eq!(
        log.delete("parent").await,
        Err(DeleteError::Gone("parent".into()))
    );
    assert!(matches!(
        log.create(stream("parent", TEXT)).await,
        Err(CreateError::PathRetained(_))
    ));
    assert_eq!(text_of(log.as_ref(), "child").await, "abc");
    log.delete("child").await.expect("delete fork");
    assert_eq!(
        log.head("parent").await,
        Err(ReadError::NotFound("parent".into()))
    );
    assert!(
        log.create(stream("parent", TEXT))
            .await
            .expect("path is free")
            .created
    );
    assert_eq!(text_of(log.as_ref(), "parent").await, "");
}

/// Every record carries when its append was committed, by the log's clock (the wall clock
/// outside tests), without changing its bytes: one time for all messages of an append, never
/// decreasing across appends, and the source's for records read through a fork.
pub async fn records_carry_their_commit_time(subject: &Subject) {
    let (log, clock) = (&subject.log, &subject.clock);
    log.create(stream("timed", JSON)).await.expect("create");
    let mut windows = Vec::new();
    for body in [
        r#"[{"n":0},{"n":1},{"n":2}]"#,
        r#"{"n":3}"#,
        r#"[{"n":4},{"n":5}]"#,
    ] {
        let before = clock.now_ms();
        log.append("timed", json(body)).await.expect("append");
        windows.push((before, clock.now_ms()));
        clock.advance(Duration::from_millis(1500));
    }
    // Which append wrote each event.
    let append_of = [0, 0, 0, 1, 2, 2];
    let check = |batch: &agentwire_session::ReadBatch, first: u64| {
        let events = events_of(batch);
        assert_eq!(events.len() as u64, 6 - first);
        for event in &events {
            let n = event.offset.0 as usize;
            assert_eq!(event.json, format!(r#"{{"n":{n}}}"#), "bytes unchanged");
            let (before, after) = windows[append_of[n]];
            assert!(
                (before..=after).contains(&event.at_ms),
                "event {n} committed at {}, outside its append's [{before}, {after}]",
                event.at_ms
            );
        }
        for pair in events.windows(2) {
            let same_append =
                append_of[pair[0].offset.0 as usize] == append_of[pair[1].offset.0 as usize];
            assert!(
                pair[0].at_ms <= pair[1].at_ms,
                "commit times never decrease"
            );
            if same_append {
                assert_eq!(pair[0].at_ms, pair[1].at_ms, "one time per append");
            }
        }
        events
    };
    let all = log
        .read("timed", ReadFrom::Start, usize::MAX)
        .await
        .expect("read");
    let times: Vec<i64> = check(&all, 0).iter().map(|e| e.at_ms).collect();
    // A read from inside a record gets the same time for its part.
    let part = log
        .read("timed", ReadFrom::At(Offset(1)), usize::MAX)
        .await
        .expect("read from 1");
    check(&part, 1);

    log.create(CreateStream {
        fork: Some(ForkFrom {
            source: "timed".to_owned(),
            offset: None,
            sub_offset: 0,
        }),
        ..stream("timed-fork", JSON)
    })
    .await
    .expect("fork");
    let before = clock.now_ms();
    log.append("timed-fork", json(r#"{"n":6}"#))
        .await
        .expect("fork append");
    let after = clock.now_ms();
    let forked = log
        .read("timed-fork", ReadFrom::Start, usize::MAX)
        .await
        .expect("read fork");
    let forked: Vec<i64> = events_of(&forked).iter().map(|e| e.at_ms).collect();
    assert_eq!(
        forked[..6],
        times[..],
        "inherited records keep their source's time"
    );
    assert!((before..=after).contains(&forked[6]));
}

/// A tiny parser for the fan-in test's messages, to keep this crate free of serde.
mod serde_like {
    /// (writer, index, part)
    #[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
    pub struct Msg(pub usize, pub usize, pub usize);

    pub fn parse(raw: &[u8]) -> Msg {
        let text = std::str::from_utf8(raw).expect("utf-8");
        let field = |key: &str| -> usize {
            let start = text.find(&format!("\"{key}\":")).expect("field") + key.len() + 3;
            let rest = &text[start..];
            let end = rest.find([',', '}']).expect("end of number");
            rest[..end].parse().expect("number")
        };
        Msg(field("w"), field("i"), field("p"))
    }
}
