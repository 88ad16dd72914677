//! The readers' connection pool: bounded, and trimmed of connections left idle, so a burst
//! of reads neither opens a connection (three file descriptors and a page cache) per read
//! nor keeps them all open afterwards.

use std::ops::{Deref, DerefMut};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use agentwire_session::StorageError;
use rusqlite::Connection;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// Size and trimming of the reader connection pool.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReadPool {
    /// Reader connections open at most; reads beyond them wait for one to be free.
    pub max_connections: usize,
    /// A connection unused for this long is closed (checked every half of it).
    pub idle_timeout: Duration,
}

impl Default for ReadPool {
    fn default() -> ReadPool {
        ReadPool {
            max_connections: 8,
            idle_timeout: Duration::from_secs(30),
        }
    }
}

/// The pool: idle connections (most recently used last), permits for open connections,
/// and a thread that closes the idle ones past their time.
pub(crate) struct Readers {
    settings: ReadPool,
    idle: Mutex<Vec<(Pooled, Instant)>>,
    permits: Arc<Semaphore>,
    open: Arc<AtomicUsize>,
    /// Dropped with the pool, which stops the trimming thread.
    _stop: mpsc::Sender<()>,
}

impl Readers {
    /// The pool, with its trimming thread running.
    pub(crate) fn start(settings: ReadPool) -> Result<Arc<Readers>, StorageError> {
        if settings.max_connections == 0 {
            return Err(StorageError::new(
                "the SQLite read pool needs at least one connection (max_connections is 0)",
            ));
        }
        let (stop, stopped) = mpsc::channel::<()>();
        let readers = Arc::new(Readers {
            settings,
            idle: Mutex::default(),
            permits: Arc::new(Semaphore::new(settings.max_connections)),
            open: Arc::default(),
            _stop: stop,
        });
        let pool = Arc::downgrade(&readers);
        let period = (settings.idle_timeout / 2).max(Duration::from_millis(10));
        std::thread::Builder::new()
            .name("sqlite-reader-trim".into())
            .spawn(move || {
                while let Err(RecvTimeoutError::Timeout) = stopped.recv_timeout(period) {
                    match pool.upgrade() {
                        Some(readers) => readers.trim(),
                        None => return,
                    }
                }
            })
            .map_err(|e| {
                StorageError::new(format!("cannot start the reader pool's thread: {e}"))
            })?;
        Ok(readers)
    }

    /// Waits until a connection may be used (one of at most `max_connections`).
    pub(crate) async fn acquire(&self) -> Result<OwnedSemaphorePermit, StorageError> {
        Arc::clone(&self.permits)
            .acquire_owned()
            .await
            .map_err(|_| StorageError::new("the session log is shut down"))
    }

    /// The most recently used idle connection, if any (so the others age out).
    pub(crate) fn take(&self) -> Option<Pooled> {
        self.lock().pop().map(|(conn, _)| conn)
    }

    /// Counts a newly opened connection as open until it is dropped.
    pub(crate) fn track(&self, conn: Connection) -> Pooled {
        self.open.fetch_add(1, Ordering::SeqCst);
        Pooled {
            conn,
            open: Arc::clone(&self.open),
        }
    }

    /// Returns a connection to the pool after a read.
    pub(crate) fn put_back(&self, conn: Pooled) {
        self.lock().push((conn, Instant::now()));
    }

    /// Connections open now, idle or in use.
    pub(crate) fn open(&self) -> usize {
        self.open.load(Ordering::SeqCst)
    }

    /// Closes the connections idle for `idle_timeout` or longer.
    fn trim(&self) {
        let expired: Vec<(Pooled, Instant)> = {
            let mut idle = self.lock();
            let keep_from = idle
                .iter()
                .position(|(_, used)| used.elapsed() < self.settings.idle_timeout)
                .unwrap_or(idle.len());
            idle.drain(..keep_from).collect()
        };
        // Closed outside the lock: closing a connection touches the file system.
        drop(expired);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<(Pooled, Instant)>> {
        self.idle.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// A reader connection, counted as open while it exists.
pub(crate) struct Pooled {
    conn: Connection,
    open: Arc<AtomicUsize>,
}

impl Deref for Pooled {
    type Target = Connection;
    fn deref(&self) -> &Connection {
        &self.conn
    }
}

impl DerefMut for Pooled {
    fn deref_mut(&mut self) -> &mut Connection {
        &mut self.conn
    }
}

impl Drop for Pooled {
    fn drop(&mut self) {
        self.open.fetch_sub(1, Ordering::SeqCst);
    }
}

/// A writer connection on the session log's file for a store kept beside the log, with
/// `schema` applied: WAL, full sync, and a wait for the log's writer, which holds the write
/// lock for a group commit at a time.
pub(crate) fn open_writer(
    path: &std::path::Path,
    schema: &str,
) -> rusqlite::Result<rusqlite::Connection> {
    let conn = rusqlite::Connection::open(path)?;
    conn.busy_timeout(std::time::Duration::from_secs(10))?;
    conn.execute_batch("PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL;")?;
    conn.execute_batch(schema)?;
    Ok(conn)
}
