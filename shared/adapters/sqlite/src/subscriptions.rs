//! Subscriptions beside the sessions, in the same SQLite file: the table `subscriptions`,
//! one row per tenant and id with the state as JSON, its version for conditional writes,
//! and when its lease or retry falls due (indexed, for the sweeper). A deleted
//! subscription's row stays as a tombstone (empty body) whose version keeps counting, so a
//! write prepared before the delete can never land on a re-created subscription. Also the stream
//! catalog a new pattern subscription backfills from: the `streams` table itself.

use std::collections::HashMap;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use agentwire_dispatch::{StoreError, StreamCatalog, Subscription, SubscriptionStore};
use agentwire_session::Offset;
use async_trait::async_trait;
use rusqlite::{Connection, OptionalExtension, params};

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS subscriptions (
    tenant  TEXT NOT NULL,
    id      TEXT NOT NULL,
    version INTEGER NOT NULL,
    due_ms  INTEGER,
    body    TEXT NOT NULL,
    PRIMARY KEY (tenant, id)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS subscriptions_due ON subscriptions (due_ms) WHERE due_ms IS NOT NULL;
";

/// Subscriptions and the stream catalog, in SQLite.
pub struct SqliteSubscriptionStore {
    conn: Arc<Mutex<Connection>>,
    /// Each tenant's subscriptions as last listed, with the write count they were read at.
    /// Dispatch lists them on every append; without this, each append waited for a
    /// blocking thread and a query (a tenth of the server's CPU per append). This store is
    /// the table's only writer (its connection is private and the file is one process's).
    listed: Mutex<HashMap<String, (u64, Vec<Subscription>)>>,
    /// Bumped before and after every write, so a list that overlapped one is never kept.
    writes: Arc<AtomicU64>,
}

fn failed(e: impl std::fmt::Display) -> StoreError {
    StoreError(format!("sqlite: {e}"))
}

impl SqliteSubscriptionStore {
    /// Opens (or creates) the table in the database at `path` (the session log's file).
    pub fn open(path: impl AsRef<Path>) -> Result<SqliteSubscriptionStore, StoreError> {
        let conn = crate::pool::open_writer(path.as_ref(), SCHEMA).map_err(failed)?;
        Ok(SqliteSubscriptionStore {
            conn: Arc::new(Mutex::new(conn)),
            listed: Mutex::new(HashMap::new()),
            writes: Arc::new(AtomicU64::new(0)),
        })
    }

    /// Runs a write, with the write count bumped on both sides of it: the second bump on
    /// the blocking thread, right after the write, so a caller that stops waiting cannot
    /// skip it.
    async fn writing<T: Send + 'static>(
        &self,
        op: impl FnOnce(&Connection) -> rusqlite::Result<T> + Send + 'static,
    ) -> Result<T, StoreError> {
        self.writes.fetch_add(1, Ordering::SeqCst);
        let writes = Arc::clone(&self.writes);
        self.with(move |c| {
            let result = op(c);
            writes.fetch_add(1, Ordering::SeqCst);
            result
        })
        .await
    }

    fn listed(&self) -> std::sync::MutexGuard<'_, HashMap<String, (u64, Vec<Subscription>)>> {
        self.listed.lock().unwrap_or_else(|p| p.into_inner())
    }

    async fn with<T: Send + 'static>(
        &self,
        op: impl FnOnce(&Connection) -> rusqlite::Result<T> + Send + 'static,
    ) -> Result<T, StoreError> {
        let conn = Arc::clone(&self.conn);
        tokio::task::spawn_blocking(move || {
            let conn = conn
                .lock()
                .map_err(|_| failed("the connection's lock is poisoned"))?;
            op(&conn).map_err(failed)
        })
        .await
        .map_err(failed)?
    }
}

fn decode(body: &str) -> Result<Subscription, StoreError> {
    serde_json::from_str(body)
        .map_err(|e| failed(format!("a stored subscription does not parse: {e}")))
}

#[async_trait]
impl SubscriptionStore for SqliteSubscriptionStore {
    async fn get(&self, tenant: &str, id: &str) -> Result<Option<(Subscription, u64)>, StoreError> {
        let (tenant, id) = (tenant.to_owned(), id.to_owned());
        let row = self
            .with(move |c| {
                c.query_row(
                    "SELECT body, version FROM subscriptions WHERE tenant = ?1 AND id = ?2 AND body != ''",
                    params![tenant, id],
                    |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?)),
                )
                .optional()
            })
            .await?;
        row.map(|(body, version)| Ok((decode(&body)?, version as u64)))
            .transpose()
    }

    async fn put(
        &self,
        subscription: &Subscription,
        expected: Option<u64>,
    ) -> Result<bool, StoreError> {
        let body = serde_json::to_string(subscription).map_err(failed)?;
        let due = subscription.next_due_ms();
        let (tenant, id) = (subscription.tenant.clone(), subscription.id.clone());
        self.writing(move |c| {
            // One statement each way: the condition and the write are atomic.
            let changed = match expected {
                None => c.execute(
                    "INSERT INTO subscriptions (tenant, id, version, due_ms, body) VALUES (?1, ?2, 1, ?3, ?4)
                     ON CONFLICT (tenant, id) DO UPDATE SET version = version + 1, due_ms = excluded.due_ms, body = excluded.body
                     WHERE body = ''",
                    params![tenant, id, due, body],
                )?,
                Some(v) => c.execute(
                    "UPDATE subscriptions SET version = version + 1, due_ms = ?3, body = ?4 WHERE tenant = ?1 AND id = ?2 AND version = ?5",
                    params![tenant, id, due, body, v as i64],
                )?,
            };
            Ok(changed == 1)
        })
        .await
    }

    async fn delete(&self, tenant: &str, id: &str) -> Result<bool, StoreError> {
        let (tenant, id) = (tenant.to_owned(), id.to_owned());
        self.writing(move |c| {
            Ok(c.execute(
                "UPDATE subscriptions SET version = version + 1, due_ms = NULL, body = '' WHERE tenant = ?1 AND id = ?2 AND body != ''",
                params![tenant, id],
            )? == 1)
        })
        .await
    }

    async fn list(&self, tenant: &str) -> Result<Vec<Subscription>, StoreError> {
        let seen = self.writes.load(Ordering::SeqCst);
        if let Some((at, subscriptions)) = self.listed().get(tenant)
            && *at == seen
        {
            return Ok(subscriptions.clone());
        }
        let name = tenant.to_owned();
        let bodies = self
            .with(move |c| {
                let mut statement = c.prepare_cached(
                    "SELECT body FROM subscriptions WHERE tenant = ?1 AND body != ''",
                )?;
                let rows = statement.query_map(params![name], |r| r.get::<_, String>(0))?;
                rows.collect::<rusqlite::Result<Vec<String>>>()
            })
            .await?;
        let subscriptions = bodies
            .iter()
            .map(|b| decode(b))
            .collect::<Result<Vec<_>, _>>()?;
        if self.writes.load(Ordering::SeqCst) == seen {
            self.listed()
                .insert(tenant.to_owned(), (seen, subscriptions.clone()));
        }
        Ok(subscriptions)
    }

    async fn due(&self, by_ms: i64) -> Result<Vec<(String, String)>, StoreError> {
        self.with(move |c| {
            let mut statement = c.prepare_cached(
                "SELECT tenant, id FROM subscriptions WHERE due_ms IS NOT NULL AND due_ms <= ?1",
            )?;
            let rows = statement.query_map(params![by_ms], |r| Ok((r.get(0)?, r.get(1)?)))?;
            rows.collect()
        })
        .await
    }
}

#[async_trait]
impl StreamCatalog for SqliteSubscriptionStore {
    async fn streams(&self, tenant: &str) -> Result<Vec<(String, Offset)>, StoreError> {
        let prefix = format!("{tenant}/");
        let upper = format!("{tenant}0");
        let now = agentwire_session::Clock::now_ms(&agentwire_session::SystemClock);
        self.with(move |c| {
            // Stored names are `<tenant>/<name>`; the range keeps to one tenant's.
            let mut statement = c.prepare_cached(
                "SELECT name, tail FROM streams WHERE name >= ?1 AND name < ?2 AND deleted = 0 AND (expires_at_ms IS NULL OR expires_at_ms > ?3)",
            )?;
            let rows = statement.query_map(params![prefix, upper, now], |r| {
                Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?))
            })?;
            let mut out = Vec::new();
            for row in rows {
                let (name, tail) = row?;
                if let Some(name) = name.strip_prefix(&prefix) {
                    out.push((name.to_owned(), Offset(tail as u64)));
                }
            }
            Ok(out)
        })
        .await
    }
}
