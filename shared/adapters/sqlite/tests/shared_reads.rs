//! Live readers woken by one append share one read of the log.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use agentwire_session::{
    AppendError, AppendRequest, Appended, CreateError, CreateStream, Created, DeleteError, Payload,
    ReadBatch, ReadError, ReadFrom, SessionLog, Sessions, StreamInfo,
};
use agentwire_sqlite::SqliteSessionLog;
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
