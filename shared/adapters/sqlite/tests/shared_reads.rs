//! Reads of the SQLite log: live readers woken by one append share one read of the log;
//! the reader pool is bounded and closes idle connections; a read returns at most its
//! byte budget however large the appends were.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use agentwire_session::{
    AppendError, AppendRequest, Appended, CreateError, CreateStream, Created, DeleteError, Mode,
    Payload, ReadBatch, ReadError, ReadFrom, SessionLog, Sessions, StreamInfo, SystemClock,
};
use agentwire_sqlite::{ReadPool, SqliteSessionLog};
use async_trait::async_trait;
use bytes::Bytes;

/// The SQLite log, counting reads.
struct Counting {
    log: SqliteSessionLog,
    reads: AtomicUsize,
}

#[async_trait]
impl SessionLog for Counting {
    async fn create(&self, request: CreateStream) -> Result<Created, CreateError> {
        self.log.create(request).await
    }
    async fn append(&self, name: &str, request: AppendRequest) -> Result<Appended, AppendError> {
        self.log.append(name, request).await
    }
    async fn read(&self, name: &str, from: ReadFrom, max: usize) -> Result<ReadBatch, ReadError> {
        self.reads.fetch_add(1, Ordering::SeqCst);
        self.log.read(name, from, max).await
    }
    async fn head(&self, name: &str) -> Result<StreamInfo, ReadError> {
        self.log.head(name).await
    }
    async fn delete(&self, name: &str) -> Result<(), DeleteError> {
        self.log.delete(name).await
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readers_woken_by_one_append_share_one_read() {
    const READERS: usize = 50;
    let dir = tempfile::tempdir().unwrap();
    let log = Arc::new(Counting {
        log: SqliteSessionLog::open(dir.path().join("s.db")).unwrap(),
        reads: AtomicUsize::new(0),
    });
    let sessions = Sessions::new(log.clone());
    sessions
        .create(CreateStream {
            name: "s".into(),
            content_type: Some("text/plain".into()),
            ..CreateStream::default()
        })
        .await
        .unwrap();

    let mut readers = Vec::new();
    for _ in 0..READERS {
        let sessions = sessions.clone();
        readers.push(tokio::spawn(async move {
            sessions
                .read_live(
                    "s",
                    ReadFrom::At(Default::default()),
                    1024,
                    Duration::from_secs(10),
                )
                .await
        }));
    }
    // Every reader has made its first (empty) read and is waiting.
    while log.reads.load(Ordering::SeqCst) < READERS {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    tokio::time::sleep(Duration::from_millis(50)).await;

    let data = Bytes::from_static(b"hello");
    let request = AppendRequest {
        content_type: Some("text/plain".into()),
        payload: Payload {
            data: data.clone(),
            units: data.len() as u64,
        },
        ..AppendRequest::default()
    };
    sessions.append("s", request).await.unwrap();
    for reader in readers {
        let batch = reader.await.unwrap().unwrap();
        assert_eq!(batch.records.len(), 1);
        assert_eq!(batch.records[0].data, data);
    }
    // One shared read, give or take a few: the shared batch is held weakly, so a reader
    // the scheduler runs only after the others finished with it (a loaded CI machine)
    // reads for itself. Without sharing, every one of the 50 would.
    let reads_after_wake = log.reads.load(Ordering::SeqCst) - READERS;
    assert!(
        (1..=5).contains(&reads_after_wake),
        "{READERS} woken readers made {reads_after_wake} reads"
    );
}

async fn stream_of(log: &SqliteSessionLog, name: &str, content_type: &str, bodies: &[Bytes]) {
    log.create(CreateStream {
        name: name.into(),
        content_type: Some(content_type.into()),
        ..CreateStream::default()
    })
    .await
    .unwrap();
    for body in bodies {
        let request = AppendRequest {
            content_type: Some(content_type.into()),
            payload: Payload::frame(Mode::of(content_type), body.clone(), false).unwrap(),
            ..AppendRequest::default()
        };
        log.append(name, request).await.unwrap();
    }
}

/// Reads `name` from the start in pages of `max` bytes; every page must hold at most
/// `max` bytes (`allow` more for a single message larger than that) and start where the
/// last one ended.
async fn pages(log: &SqliteSessionLog, name: &str, max: usize) -> Vec<ReadBatch> {
    let mut pages = Vec::new();
    let mut from = ReadFrom::Start;
    loop {
        let batch = log.read(name, from, max).await.unwrap();
        assert!(
            batch.data_len() <= max,
            "a read of at most {max} bytes returned {} bytes",
            batch.data_len()
        );
        if let Some(last) = pages.last() {
            let last: &ReadBatch = last;
            assert_eq!(batch.from, last.next);
        }
        from = ReadFrom::At(batch.next);
        let done = batch.up_to_date();
        assert!(
            done || !batch.records.is_empty(),
            "an empty page before the tail"
        );
        pages.push(batch);
        if done {
            return pages;
        }
    }
}

#[tokio::test]
async fn a_read_returns_at_most_its_budget_of_large_appends_and_pages_to_the_end() {
    let dir = tempfile::tempdir().unwrap();
    let log = SqliteSessionLog::open(dir.path().join("s.db")).unwrap();

    // Raw bytes: three appends of 300 KB, read 100 KB at a time.
    let bodies: Vec<Bytes> = (0..3u8)
        .map(|i| Bytes::from(vec![b'a' + i; 300_000]))
        .collect();
    stream_of(&log, "bytes", "application/octet-stream", &bodies).await;
    let read = pages(&log, "bytes", 100_000).await;
    assert!(read.len() >= 9, "{} pages", read.len());
    let got: Vec<u8> = read
        .iter()
        .flat_map(|b| b.records.iter().flat_map(|r| r.data.to_vec()))
        .collect();
    assert_eq!(got, bodies.concat());

    // Text: pages never split a character, so each is valid UTF-8 on its own.
    let text = Bytes::from("é€😀".repeat(20_000));
    stream_of(&log, "text", "text/plain", std::slice::from_ref(&text)).await;
    let read = pages(&log, "text", 10_001).await;
    let mut got = Vec::new();
    for batch in &read {
        for record in &batch.records {
            std::str::from_utf8(&record.data).expect("a page split a character");
            got.extend_from_slice(&record.data);
        }
    }
    assert_eq!(got, text.to_vec());

    // JSON: one append of 2,000 messages of about 1 KB, read 64 KB at a time, cut
    // between messages.
    let messages: Vec<String> = (0..2_000)
        .map(|i| format!(r#"{{"i":{i},"pad":"{}"}}"#, "x".repeat(1_000)))
        .collect();
    let body = Bytes::from(format!("[{}]", messages.join(",")));
    stream_of(
        &log,
        "json",
        "application/json",
        std::slice::from_ref(&body),
    )
    .await;
    let read = pages(&log, "json", 64 * 1024).await;
    assert!(read.len() >= 30, "{} pages", read.len());
    let mut got = Vec::new();
    for batch in &read {
        for record in &batch.records {
            let page: Vec<serde_json::Value> =
                serde_json::from_slice(&[b"[", &record.data[..], b"]"].concat()).unwrap();
            assert_eq!(page.len() as u64, record.end.0 - record.start.0);
            got.extend(page);
        }
    }
    assert_eq!(got.len(), messages.len());
    assert!(got.iter().enumerate().all(|(i, m)| m["i"] == i));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_reader_pool_is_bounded_and_closes_idle_connections() {
    let dir = tempfile::tempdir().unwrap();
    let pool = ReadPool {
        max_connections: 3,
        idle_timeout: Duration::from_millis(300),
    };
    let log = Arc::new(
        SqliteSessionLog::open_with(dir.path().join("s.db"), Arc::new(SystemClock), pool).unwrap(),
    );
    stream_of(&log, "s", "text/plain", &[Bytes::from(vec![b'x'; 100_000])]).await;

    let reads: Vec<_> = (0..100)
        .map(|_| {
            let log = log.clone();
            tokio::spawn(async move { log.read("s", ReadFrom::Start, 1 << 20).await })
        })
        .collect();
    let mut most = 0;
    let mut done = 0;
    for read in reads {
        most = most.max(log.open_readers());
        assert_eq!(read.await.unwrap().unwrap().data_len(), 100_000);
        done += 1;
    }
    assert_eq!(done, 100);
    assert!(most <= 3, "{most} reader connections open at once");
    // Every connection the burst opened is idle in the pool now: at most the bound.
    let pooled = log.open_readers();
    assert!(
        (1..=3).contains(&pooled),
        "{pooled} reader connections pooled"
    );

    // Idle for the timeout (and the trimmer's period): every connection is closed.
    tokio::time::sleep(Duration::from_millis(700)).await;
    assert_eq!(
        log.open_readers(),
        0,
        "idle reader connections were not closed"
    );
    // And reads go on, on a fresh connection.
    assert_eq!(
        log.read("s", ReadFrom::Start, 1 << 20)
            .await
            .unwrap()
            .data_len(),
        100_000
    );
    assert_eq!(log.open_readers(), 1);
}
