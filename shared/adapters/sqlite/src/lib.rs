//! The embedded [`SessionLog`]: one SQLite file in WAL mode.
//!
//! All writes go through one writer thread, which drains every queued request into a single
//! transaction (each request in its own savepoint, so a refused one changes nothing) and
//! commits with `synchronous=FULL` before answering any of them: concurrent appends share
//! one fsync (group commit), and an acknowledged append is always on disk. Reads run on a
//! bounded pool of reader connections ([`ReadPool`]), each in its own WAL snapshot; reads
//! beyond its size wait for a connection, and connections left idle are closed.

mod activity;
mod budget;
mod grading;
mod pool;
mod schema;
mod scores;
mod store;
mod subscriptions;

pub use activity::SqliteActivityIndex;
pub use budget::SqliteBudgetLedger;
pub use grading::SqliteGradingStore;
pub use pool::ReadPool;
pub use scores::SqliteScoreIndex;
pub use subscriptions::SqliteSubscriptionStore;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use agentwire_session::{
    AppendError, AppendRequest, Appended, Clock, CreateError, CreateStream, Created, DeleteError,
    ReadBatch, ReadError, ReadFrom, SessionLog, StorageError, StreamInfo, SystemClock,
};
use async_trait::async_trait;
use rusqlite::Connection;
use tokio::sync::{mpsc, oneshot};
use tracing::{instrument, warn};

/// Requests folded into one transaction at most; bounds the latency of the first one.
const MAX_BATCH: usize = 256;

/// The outcome of one request, delivered once its transaction has committed (or failed).
type Deliver = Box<dyn FnOnce(Result<(), StorageError>) + Send>;
/// One request to the writer: runs inside the open transaction at the given time.
type Job = Box<dyn FnOnce(&Connection, i64) -> Deliver + Send>;

/// The SQLite session log. Cheap to share behind an `Arc`.
pub struct SqliteSessionLog {
    path: PathBuf,
    jobs: Option<mpsc::UnboundedSender<Job>>,
    writer: Mutex<Option<JoinHandle<()>>>,
    readers: Arc<pool::Readers>,
    clock: Arc<dyn Clock>,
}

/// A connection's durability settings, by SQLite's names: `journal_mode` in lower case
/// (`wal`), `synchronous` in upper case (`OFF`, `NORMAL`, `FULL`, `EXTRA`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Durability {
    pub journal_mode: String,
    pub synchronous: String,
}

impl SqliteSessionLog {
    /// Opens (or creates) the log at `path` on the system clock.
    pub fn open(path: impl AsRef<Path>) -> Result<SqliteSessionLog, StorageError> {
        SqliteSessionLog::open_with_clock(path, Arc::new(SystemClock))
    }

    /// Opens (or creates) the log at `path`, reading time from `clock`.
    pub fn open_with_clock(
        path: impl AsRef<Path>,
        clock: Arc<dyn Clock>,
    ) -> Result<SqliteSessionLog, StorageError> {
        SqliteSessionLog::open_with(path, clock, ReadPool::default())
    }

    /// Opens (or creates) the log at `path`, reading time from `clock`, with reads on a
    /// pool sized and trimmed by `pool`.
    pub fn open_with(
        path: impl AsRef<Path>,
        clock: Arc<dyn Clock>,
        pool: ReadPool,
    ) -> Result<SqliteSessionLog, StorageError> {
        let path = path.as_ref().to_path_buf();
        let conn = Connection::open(&path).map_err(store::storage)?;
        schema::open_writer(&conn).map_err(store::storage)?;
        let (jobs, queue) = mpsc::unbounded_channel();
        let writer_clock = Arc::clone(&clock);
        let writer = std::thread::Builder::new()
            .name("sqlite-writer".into())
            .spawn(move || write_loop(conn, queue, writer_clock))
            .map_err(|e| StorageError::new(format!("cannot start the writer thread: {e}")))?;
        Ok(SqliteSessionLog {
            path,
            jobs: Some(jobs),
            writer: Mutex::new(Some(writer)),
            readers: pool::Readers::start(pool)?,
            clock,
        })
    }

    /// Reader connections open now (idle in the pool or reading): at most
    /// [`ReadPool::max_connections`], and 0 once reads have stopped for
    /// [`ReadPool::idle_timeout`] (plus up to half of it, the trimmer's period).
    pub fn open_readers(&self) -> usize {
        self.readers.open()
    }

    /// Deletes every stream whose TTL or expiry has passed; returns how many.
    pub async fn expire_due(&self) -> Result<usize, StorageError> {
        self.write(|conn, now| store::expire_due(conn, now).map_err(store::storage))
            .await
    }

    /// How the writer connection, the one every write commits on, is set to commit, as it
    /// reports it. "Acknowledged means on disk" rests on this, and no crash of the process
    /// can tell `synchronous=OFF` from `FULL` (only a crash of the machine can).
    pub async fn durability(&self) -> Result<Durability, StorageError> {
        self.write(|conn, _| {
            let pragma = |name: &str| {
                conn.query_row(&format!("PRAGMA {name}"), [], |row| {
                    row.get::<_, rusqlite::types::Value>(0)
                })
                .map_err(store::storage)
            };
            let journal_mode = match pragma("journal_mode")? {
                rusqlite::types::Value::Text(mode) => mode.to_ascii_lowercase(),
                other => format!("{other:?}"),
            };
            let synchronous = match pragma("synchronous")? {
                rusqlite::types::Value::Integer(0) => "OFF".to_owned(),
                rusqlite::types::Value::Integer(1) => "NORMAL".to_owned(),
                rusqlite::types::Value::Integer(2) => "FULL".to_owned(),
                rusqlite::types::Value::Integer(3) => "EXTRA".to_owned(),
                other => format!("{other:?}"),
            };
            Ok(Durability {
                journal_mode,
                synchronous,
            })
        })
        .await
    }

    /// Runs `op` in the writer's next transaction and waits until that transaction commits.
    async fn write<T, E>(
        &self,
        op: impl FnOnce(&Connection, i64) -> Result<T, E> + Send + 'static,
    ) -> Result<T, E>
    where
        T: Send + 'static,
        E: From<StorageError> + Send + 'static,
    {
        let (reply, answer) = oneshot::channel();
        let job: Job = Box::new(move |conn, now| {
            let result = in_savepoint(conn, |conn| op(conn, now));
            Box::new(move |committed| {
                let _ = reply.send(match (result, committed) {
                    (Ok(value), Ok(())) => Ok(value),
                    (Err(refused), _) => Err(refused),
                    (Ok(_), Err(failed)) => Err(E::from(failed)),
                });
            })
        });
        self.send(job)?;
        answer
            .await
            .map_err(|_| E::from(StorageError::new("the write was not committed")))?
    }

    fn send(&self, job: Job) -> Result<(), StorageError> {
        let gone = || StorageError::new("the session log is shut down");
        let jobs = self.jobs.as_ref().ok_or_else(gone)?;
        jobs.send(job).map_err(|_| gone())
    }

    /// Runs `op` on a pooled reader connection off the async runtime, once one is free.
    async fn read<T: Send + 'static>(
        &self,
        op: impl FnOnce(&Connection, i64) -> Result<T, ReadError> + Send + 'static,
    ) -> Result<T, ReadError> {
        let permit = self.readers.acquire().await?;
        let readers = Arc::clone(&self.readers);
        let path = self.path.clone();
        let now = self.clock.now_ms();
        tokio::task::spawn_blocking(move || {
            let _permit = permit;
            let mut conn = match readers.take() {
                Some(conn) => conn,
                None => readers.track(open_reader(&path)?),
            };
            let result = conn
                .transaction()
                .map_err(store::storage)
                .map_err(ReadError::from)
                .and_then(|snapshot| op(&snapshot, now));
            readers.put_back(conn);
            result
        })
        .await
        .map_err(|e| ReadError::from(StorageError::new(format!("reader task failed: {e}"))))?
    }
}

fn open_reader(path: &Path) -> Result<Connection, ReadError> {
    let conn = Connection::open(path).map_err(store::storage)?;
    schema::open_reader(&conn).map_err(store::storage)?;
    Ok(conn)
}

/// Runs `op` inside a savepoint, rolled back if `op` refuses the request.
fn in_savepoint<T, E: From<StorageError>>(
    conn: &Connection,
    op: impl FnOnce(&Connection) -> Result<T, E>,
) -> Result<T, E> {
    // Cached statements: `execute_batch` would parse these again for every request.
    let run = |sql: &str| {
        conn.prepare_cached(sql)
            .and_then(|mut statement| statement.execute([]))
            .map_err(store::storage)
    };
    run("SAVEPOINT op")?;
    let result = op(conn);
    if result.is_err() {
        run("ROLLBACK TO op")?;
    }
    run("RELEASE op")?;
    result
}

fn write_loop(
    mut conn: Connection,
    mut queue: mpsc::UnboundedReceiver<Job>,
    clock: Arc<dyn Clock>,
) {
    let mut batch = Vec::with_capacity(MAX_BATCH);
    while let Some(first) = queue.blocking_recv() {
        batch.push(first);
        while batch.len() < MAX_BATCH {
            match queue.try_recv() {
                Ok(job) => batch.push(job),
                Err(_) => break,
            }
        }
        let now = clock.now_ms();
        let committed = run_batch(&mut conn, &mut batch, now);
        if let Err(e) = &committed.0 {
            warn!(error = %e, requests = committed.1.len(), "group commit failed");
        }
        for deliver in committed.1 {
            deliver(committed.0.clone());
        }
    }
}

fn run_batch(
    conn: &mut Connection,
    batch: &mut Vec<Job>,
    now: i64,
) -> (Result<(), StorageError>, Vec<Deliver>) {
    let tx = match conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate) {
        Ok(tx) => tx,
        Err(e) => {
            // Nothing ran. Dropping the jobs drops their reply channels, so every waiting
            // request fails with a storage error and none is acknowledged.
            batch.clear();
            return (Err(store::storage(e)), Vec::new());
        }
    };
    let delivers: Vec<Deliver> = batch.drain(..).map(|job| job(&tx, now)).collect();
    (tx.commit().map_err(store::storage), delivers)
}

impl Drop for SqliteSessionLog {
    fn drop(&mut self) {
        // Closing the queue lets the writer finish what it has, then exit.
        self.jobs.take();
        if let Some(writer) = self.writer.lock().unwrap_or_else(|p| p.into_inner()).take() {
            let _ = writer.join();
        }
    }
}

#[async_trait]
impl SessionLog for SqliteSessionLog {
    #[instrument(skip_all, fields(session = %request.name))]
    async fn create(&self, request: CreateStream) -> Result<Created, CreateError> {
        self.write(move |conn, now| store::create(conn, &request, now))
            .await
    }

    #[instrument(skip_all, fields(session = %name))]
    async fn append(&self, name: &str, request: AppendRequest) -> Result<Appended, AppendError> {
        let name = name.to_owned();
        self.write(move |conn, now| store::append(conn, &name, &request, now))
            .await
    }

    #[instrument(skip_all, fields(session = %name))]
    async fn read(
        &self,
        name: &str,
        from: ReadFrom,
        max_bytes: usize,
    ) -> Result<ReadBatch, ReadError> {
        let name = name.to_owned();
        let read = self
            .read(move |conn, now| store::read(conn, &name, from, max_bytes, now))
            .await?;
        if let Some(id) = read.touch {
            // A read renews a sliding TTL; wait for it so the renewal is as durable as the read.
            let read_at = self.clock.now_ms();
            self.write(move |conn, _| store::touch(conn, id, read_at).map_err(store::storage))
                .await
                .map_err(ReadError::from)?;
        }
        Ok(read.batch)
    }

    #[instrument(skip_all, fields(session = %name))]
    async fn head(&self, name: &str) -> Result<StreamInfo, ReadError> {
        let name = name.to_owned();
        self.read(move |conn, now| store::head(conn, &name, now))
            .await
    }

    #[instrument(skip_all, fields(session = %name))]
    async fn delete(&self, name: &str) -> Result<(), DeleteError> {
        let name = name.to_owned();
        self.write(move |conn, now| store::delete(conn, &name, now))
            .await
    }
}
