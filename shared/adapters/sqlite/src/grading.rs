//! The [`GradingStore`] beside the sessions, in the same SQLite file (`agentwire dev`'s
//! database), in tables prefixed `grading_`: rubric versions, queues (their spec as JSON),
//! items, the slots graders have taken, who has seen which item, drafts and grades.
//!
//! Every write runs in one `BEGIN IMMEDIATE` transaction on the store's writer connection:
//! IMMEDIATE takes SQLite's write lock before the first read, so a claim reads the free
//! slots and takes one with no other writer (another connection, another process) in
//! between; two graders never come away holding one slot. Reads run on a small pool of
//! reader connections, each listing in one WAL snapshot.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use agentwire_grading::{
    Claim, Draft, Grade, GradingError, GradingStore, ItemState, QueueItem, QueueSpec, Rubric,
    SlotState,
};
use async_trait::async_trait;
use rusqlite::{Connection, OptionalExtension, Transaction, TransactionBehavior, params};

use crate::pool::{ReadPool, Readers};

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS grading_rubrics (
    tenant  TEXT NOT NULL,
    name    TEXT NOT NULL,
    version INTEGER NOT NULL,
    body    TEXT NOT NULL,
    PRIMARY KEY (tenant, name, version)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS grading_queues (
    tenant TEXT NOT NULL,
    name   TEXT NOT NULL,
    spec   TEXT NOT NULL,
    PRIMARY KEY (tenant, name)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS grading_items (
    tenant   TEXT NOT NULL,
    queue    TEXT NOT NULL,
    position INTEGER NOT NULL,
    trace_id TEXT NOT NULL,
    session  TEXT NOT NULL,
    slots    INTEGER NOT NULL,
    PRIMARY KEY (tenant, queue, position)
) WITHOUT ROWID;
CREATE UNIQUE INDEX IF NOT EXISTS grading_items_by_trace
    ON grading_items (tenant, queue, trace_id);
-- A slot has a row once taken; free again when not done and until_ms has passed.
CREATE TABLE IF NOT EXISTS grading_slots (
    tenant   TEXT NOT NULL,
    queue    TEXT NOT NULL,
    position INTEGER NOT NULL,
    slot     INTEGER NOT NULL,
    holder   TEXT NOT NULL,
    until_ms INTEGER NOT NULL,
    done     INTEGER NOT NULL,
    PRIMARY KEY (tenant, queue, position, slot)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS grading_slots_by_holder
    ON grading_slots (tenant, queue, holder, done, until_ms);
CREATE TABLE IF NOT EXISTS grading_seen (
    tenant   TEXT NOT NULL,
    queue    TEXT NOT NULL,
    grader   TEXT NOT NULL,
    position INTEGER NOT NULL,
    PRIMARY KEY (tenant, queue, grader, position)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS grading_drafts (
    tenant   TEXT NOT NULL,
    queue    TEXT NOT NULL,
    position INTEGER NOT NULL,
    grader   TEXT NOT NULL,
    draft    TEXT NOT NULL,
    PRIMARY KEY (tenant, queue, position, grader)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS grading_grades (
    tenant   TEXT NOT NULL,
    queue    TEXT NOT NULL,
    position INTEGER NOT NULL,
    grader   TEXT NOT NULL,
    grade    TEXT NOT NULL,
    PRIMARY KEY (tenant, queue, position, grader)
) WITHOUT ROWID;
";

/// Rubrics, queues and grades per tenant, in SQLite.
pub struct SqliteGradingStore {
    path: PathBuf,
    writer: Arc<Mutex<Connection>>,
    readers: Arc<Readers>,
}

fn failed(e: impl std::fmt::Display) -> GradingError {
    GradingError::Storage(format!("sqlite: {e}"))
}

fn to_json<T: serde::Serialize>(value: &T) -> Result<String, GradingError> {
    serde_json::to_string(value).map_err(failed)
}

fn from_json<T: serde::de::DeserializeOwned>(text: &str) -> Result<T, GradingError> {
    serde_json::from_str(text).map_err(|e| failed(format!("a stored row does not parse: {e}")))
}

impl SqliteGradingStore {
    /// Opens (or creates) the store in the database at `path` (the session log's file),
    /// with reads on a pool of two connections.
    pub fn open(path: impl AsRef<Path>) -> Result<SqliteGradingStore, GradingError> {
        SqliteGradingStore::open_with(
            path,
            ReadPool {
                max_connections: 2,
                ..ReadPool::default()
            },
        )
    }

    /// Opens (or creates) the store at `path`, reading on a pool sized by `pool`.
    pub fn open_with(
        path: impl AsRef<Path>,
        pool: ReadPool,
    ) -> Result<SqliteGradingStore, GradingError> {
        let path = path.as_ref().to_path_buf();
        let conn = crate::pool::open_writer(&path, SCHEMA).map_err(failed)?;
        Ok(SqliteGradingStore {
            path,
            writer: Arc::new(Mutex::new(conn)),
            readers: Readers::start(pool).map_err(failed)?,
        })
    }

    /// Runs `op` in one IMMEDIATE transaction, committed when it succeeds and rolled back
    /// (changing nothing) when it refuses.
    async fn write<T: Send + 'static>(
        &self,
        op: impl FnOnce(&Transaction) -> Result<T, GradingError> + Send + 'static,
    ) -> Result<T, GradingError> {
        let conn = self.writer.clone();
        tokio::task::spawn_blocking(move || {
            let mut conn = conn
                .lock()
                .map_err(|_| failed("the connection's lock is poisoned"))?;
            let tx = conn
                .transaction_with_behavior(TransactionBehavior::Immediate)
                .map_err(failed)?;
            let value = op(&tx)?;
            tx.commit().map_err(failed)?;
            Ok(value)
        })
        .await
        .map_err(failed)?
    }

    /// Runs `op` on a pooled reader connection, in one snapshot.
    async fn read<T: Send + 'static>(
        &self,
        op: impl FnOnce(&Connection) -> Result<T, GradingError> + Send + 'static,
    ) -> Result<T, GradingError> {
        let permit = self.readers.acquire().await.map_err(failed)?;
        let readers = Arc::clone(&self.readers);
        let path = self.path.clone();
        tokio::task::spawn_blocking(move || {
            let _permit = permit;
            let conn = match readers.take() {
                Some(conn) => conn,
                None => {
                    let conn = Connection::open(&path).map_err(failed)?;
                    crate::schema::open_reader(&conn).map_err(failed)?;
                    readers.track(conn)
                }
            };
            let result = conn
                .unchecked_transaction()
                .map_err(failed)
                .and_then(|snapshot| op(&snapshot));
            readers.put_back(conn);
            result
        })
        .await
        .map_err(failed)?
    }
}

/// The queue's spec, or `NotFound`.
fn spec_of(conn: &Connection, tenant: &str, queue: &str) -> Result<QueueSpec, GradingError> {
    let text: Option<String> = conn
        .query_row(
            "SELECT spec FROM grading_queues WHERE tenant = ?1 AND name = ?2",
            params![tenant, queue],
            |row| row.get(0),
        )
        .optional()
        .map_err(failed)?;
    match text {
        Some(text) => from_json(&text),
        None => Err(GradingError::NotFound(format!("no queue {queue:?}"))),
    }
}

/// The item with `trace_id`, or `NotFound`.
fn item_of(
    conn: &Connection,
    tenant: &str,
    queue: &str,
    trace_id: &str,
) -> Result<QueueItem, GradingError> {
    conn.query_row(
        "SELECT position, session, slots FROM grading_items
         WHERE tenant = ?1 AND queue = ?2 AND trace_id = ?3",
        params![tenant, queue, trace_id],
        |row| {
            Ok(QueueItem {
                trace_id: trace_id.to_owned(),
                position: row.get(0)?,
                session: row.get(1)?,
                slots: row.get(2)?,
            })
        },
    )
    .optional()
    .map_err(failed)?
    .ok_or_else(|| GradingError::NotFound(format!("queue {queue:?} has no item {trace_id:?}")))
}

/// Adds the items whose trace ids the queue lacks; a taken position is a conflict.
fn insert_items(
    tx: &Transaction,
    tenant: &str,
    queue: &str,
    items: &[QueueItem],
) -> Result<(), GradingError> {
    let mut known = tx
        .prepare_cached(
            "SELECT trace_id FROM grading_items WHERE tenant = ?1 AND queue = ?2
               AND (trace_id = ?3 OR position = ?4)",
        )
        .map_err(failed)?;
    let mut insert = tx
        .prepare_cached(
            "INSERT INTO grading_items (tenant, queue, position, trace_id, session, slots)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        )
        .map_err(failed)?;
    for item in items {
        let there: Vec<String> = known
            .query_map(
                params![tenant, queue, item.trace_id, item.position],
                |row| row.get(0),
            )
            .map_err(failed)?
            .collect::<rusqlite::Result<_>>()
            .map_err(failed)?;
        if there.contains(&item.trace_id) {
            continue;
        }
        if !there.is_empty() {
            return Err(GradingError::Conflict(format!(
                "position {} of queue {queue:?} holds another trace",
                item.position
            )));
        }
        insert
            .execute(params![
                tenant,
                queue,
                item.position,
                item.trace_id,
                item.session,
                item.slots
            ])
            .map_err(failed)?;
    }
    Ok(())
}

/// The claim of `grader`, at the given item and slot, leased until `until_ms`.
fn claim_at(queue: &str, grader: &str, item: QueueItem, slot: u32, until_ms: i64) -> Claim {
    Claim {
        queue: queue.to_owned(),
        item,
        grader: grader.to_owned(),
        slot,
        lease_until_ms: until_ms,
    }
}

fn claim_in(
    tx: &Transaction,
    tenant: &str,
    queue: &str,
    grader: &str,
    now_ms: i64,
) -> Result<Option<Claim>, GradingError> {
    let spec = spec_of(tx, tenant, queue)?;
    if !spec.graders.iter().any(|g| g == grader) {
        return Err(GradingError::NotAGrader(format!(
            "{grader:?} is not a grader of queue {queue:?}"
        )));
    }
    let until_ms = now_ms.saturating_add(spec.lease_ms);
    let item_row = |row: &rusqlite::Row| -> rusqlite::Result<(QueueItem, u32)> {
        Ok((
            QueueItem {
                position: row.get(0)?,
                trace_id: row.get(1)?,
                session: row.get(2)?,
                slots: row.get(3)?,
            },
            row.get(4)?,
        ))
    };
    // The slot they hold or last held, ungraded, first (even lapsed, even past the
    // deadline): another grader taking it made them no longer its holder.
    let live = tx
        .query_row(
            "SELECT i.position, i.trace_id, i.session, i.slots, s.slot
             FROM grading_slots s JOIN grading_items i
               ON i.tenant = s.tenant AND i.queue = s.queue AND i.position = s.position
             WHERE s.tenant = ?1 AND s.queue = ?2 AND s.holder = ?3 AND s.done = 0
             ORDER BY s.position LIMIT 1",
            params![tenant, queue, grader],
            item_row,
        )
        .optional()
        .map_err(failed)?;
    if let Some((item, slot)) = live {
        tx.execute(
            "UPDATE grading_slots SET until_ms = ?5
             WHERE tenant = ?1 AND queue = ?2 AND position = ?3 AND slot = ?4",
            params![tenant, queue, item.position, slot, until_ms],
        )
        .map_err(failed)?;
        return Ok(Some(claim_at(queue, grader, item, slot, until_ms)));
    }
    if spec.deadline_ms.is_some_and(|deadline| now_ms > deadline) {
        return Err(GradingError::Closed(format!(
            "queue {queue:?} is past its deadline: no new items are given"
        )));
    }
    // The first item they never saw with fewer busy (done or live) slots than it has.
    let next = tx
        .query_row(
            "SELECT i.position, i.trace_id, i.session, i.slots, 0 FROM grading_items i
             WHERE i.tenant = ?1 AND i.queue = ?2
               AND NOT EXISTS (SELECT 1 FROM grading_seen v
                   WHERE v.tenant = ?1 AND v.queue = ?2 AND v.grader = ?3
                     AND v.position = i.position)
               AND (SELECT COUNT(*) FROM grading_slots s
                   WHERE s.tenant = ?1 AND s.queue = ?2 AND s.position = i.position
                     AND (s.done = 1 OR s.until_ms >= ?4)) < i.slots
             ORDER BY i.position LIMIT 1",
            params![tenant, queue, grader, now_ms],
            item_row,
        )
        .optional()
        .map_err(failed)?;
    let Some((item, _)) = next else {
        return Ok(None);
    };
    let busy: Vec<u32> = tx
        .prepare_cached(
            "SELECT slot FROM grading_slots
             WHERE tenant = ?1 AND queue = ?2 AND position = ?3
               AND (done = 1 OR until_ms >= ?4)",
        )
        .map_err(failed)?
        .query_map(params![tenant, queue, item.position, now_ms], |row| {
            row.get(0)
        })
        .map_err(failed)?
        .collect::<rusqlite::Result<_>>()
        .map_err(failed)?;
    let slot = (0..item.slots)
        .find(|s| !busy.contains(s))
        .ok_or_else(|| failed("no free slot where the count said one was"))?;
    tx.execute(
        "INSERT INTO grading_slots (tenant, queue, position, slot, holder, until_ms, done)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, 0)
         ON CONFLICT (tenant, queue, position, slot)
         DO UPDATE SET holder = excluded.holder, until_ms = excluded.until_ms, done = 0",
        params![tenant, queue, item.position, slot, grader, until_ms],
    )
    .map_err(failed)?;
    tx.execute(
        "INSERT INTO grading_seen (tenant, queue, grader, position) VALUES (?1, ?2, ?3, ?4)",
        params![tenant, queue, grader, item.position],
    )
    .map_err(failed)?;
    Ok(Some(claim_at(queue, grader, item, slot, until_ms)))
}

fn submit_in(tx: &Transaction, tenant: &str, grade: &Grade) -> Result<(), GradingError> {
    let queue = grade.queue.as_str();
    spec_of(tx, tenant, queue)?;
    let item = item_of(tx, tenant, queue, &grade.trace_id)?;
    // The grader's slot of the item, if it is still theirs: another grader taking it after
    // the lease ran out replaced the holder.
    let slot: Option<(u32, bool)> = tx
        .query_row(
            "SELECT slot, done FROM grading_slots
             WHERE tenant = ?1 AND queue = ?2 AND position = ?3 AND holder = ?4
             ORDER BY done LIMIT 1",
            params![tenant, queue, item.position, grade.grader],
            |row| Ok((row.get(0)?, row.get(1)?)),
        )
        .optional()
        .map_err(failed)?;
    let slot = match slot {
        Some((slot, false)) => slot,
        Some((_, true)) => {
            return Err(GradingError::NotHeld(format!(
                "{:?} has already graded this item of queue {queue:?}",
                grade.grader
            )));
        }
        None => {
            return Err(GradingError::NotHeld(format!(
                "{:?} does not hold this item of queue {queue:?}: claim it first (a lease \
                 that ran out may have been given to another grader)",
                grade.grader
            )));
        }
    };
    tx.execute(
        "UPDATE grading_slots SET done = 1
         WHERE tenant = ?1 AND queue = ?2 AND position = ?3 AND slot = ?4",
        params![tenant, queue, item.position, slot],
    )
    .map_err(failed)?;
    tx.execute(
        "INSERT INTO grading_grades (tenant, queue, position, grader, grade)
         VALUES (?1, ?2, ?3, ?4, ?5)",
        params![tenant, queue, item.position, grade.grader, to_json(grade)?],
    )
    .map_err(failed)?;
    tx.execute(
        "DELETE FROM grading_drafts
         WHERE tenant = ?1 AND queue = ?2 AND position = ?3 AND grader = ?4",
        params![tenant, queue, item.position, grade.grader],
    )
    .map_err(failed)?;
    Ok(())
}

fn items_in(conn: &Connection, tenant: &str, queue: &str) -> Result<Vec<ItemState>, GradingError> {
    spec_of(conn, tenant, queue)?;
    let mut states: BTreeMap<u32, ItemState> = BTreeMap::new();
    let mut items = conn
        .prepare_cached(
            "SELECT position, trace_id, session, slots FROM grading_items
             WHERE tenant = ?1 AND queue = ?2",
        )
        .map_err(failed)?;
    let rows = items
        .query_map(params![tenant, queue], |row| {
            Ok(QueueItem {
                position: row.get(0)?,
                trace_id: row.get(1)?,
                session: row.get(2)?,
                slots: row.get(3)?,
            })
        })
        .map_err(failed)?;
    for item in rows {
        let item = item.map_err(failed)?;
        states.insert(
            item.position,
            ItemState {
                item,
                slots: Vec::new(),
                seen_by: Vec::new(),
            },
        );
    }
    let mut slots = conn
        .prepare_cached(
            "SELECT position, slot, holder, until_ms, done FROM grading_slots
             WHERE tenant = ?1 AND queue = ?2 ORDER BY position, slot",
        )
        .map_err(failed)?;
    let rows = slots
        .query_map(params![tenant, queue], |row| {
            let (position, slot, grader): (u32, u32, String) =
                (row.get(0)?, row.get(1)?, row.get(2)?);
            let state = if row.get::<_, bool>(4)? {
                SlotState::Done { grader }
            } else {
                SlotState::Held {
                    grader,
                    until_ms: row.get(3)?,
                }
            };
            Ok((position, slot, state))
        })
        .map_err(failed)?;
    for row in rows {
        let (position, slot, state) = row.map_err(failed)?;
        if let Some(item) = states.get_mut(&position) {
            item.slots.push((slot, state));
        }
    }
    let mut seen = conn
        .prepare_cached(
            "SELECT position, grader FROM grading_seen
             WHERE tenant = ?1 AND queue = ?2 ORDER BY grader",
        )
        .map_err(failed)?;
    let rows = seen
        .query_map(params![tenant, queue], |row| {
            Ok((row.get::<_, u32>(0)?, row.get::<_, String>(1)?))
        })
        .map_err(failed)?;
    for row in rows {
        let (position, grader) = row.map_err(failed)?;
        if let Some(item) = states.get_mut(&position) {
            item.seen_by.push(grader);
        }
    }
    Ok(states.into_values().collect())
}

#[async_trait]
impl GradingStore for SqliteGradingStore {
    async fn put_rubric(&self, tenant: &str, rubric: &Rubric) -> Result<(), GradingError> {
        let body = to_json(rubric)?;
        let (tenant, name, version) = (tenant.to_owned(), rubric.name.clone(), rubric.version);
        self.write(move |tx| {
            let stored: Option<String> = tx
                .query_row(
                    "SELECT body FROM grading_rubrics
                     WHERE tenant = ?1 AND name = ?2 AND version = ?3",
                    params![tenant, name, version],
                    |row| row.get(0),
                )
                .optional()
                .map_err(failed)?;
            match stored {
                // Serialization is deterministic, so the same rubric is the same text.
                Some(stored) if stored == body => Ok(()),
                Some(_) => Err(GradingError::Conflict(format!(
                    "rubric {name:?} version {version} exists with a different body; \
                     versions never change: store this one as a new version"
                ))),
                None => {
                    tx.execute(
                        "INSERT INTO grading_rubrics (tenant, name, version, body)
                         VALUES (?1, ?2, ?3, ?4)",
                        params![tenant, name, version, body],
                    )
                    .map_err(failed)?;
                    Ok(())
                }
            }
        })
        .await
    }

    async fn rubric(
        &self,
        tenant: &str,
        name: &str,
        version: Option<u32>,
    ) -> Result<Option<Rubric>, GradingError> {
        let (tenant, name) = (tenant.to_owned(), name.to_owned());
        self.read(move |conn| {
            let body: Option<String> = conn
                .query_row(
                    "SELECT body FROM grading_rubrics
                     WHERE tenant = ?1 AND name = ?2 AND (?3 IS NULL OR version = ?3)
                     ORDER BY version DESC LIMIT 1",
                    params![tenant, name, version],
                    |row| row.get(0),
                )
                .optional()
                .map_err(failed)?;
            body.as_deref().map(from_json).transpose()
        })
        .await
    }

    async fn create_queue(
        &self,
        tenant: &str,
        spec: &QueueSpec,
        items: &[QueueItem],
    ) -> Result<(), GradingError> {
        let text = to_json(spec)?;
        let (tenant, name, items) = (tenant.to_owned(), spec.name.clone(), items.to_vec());
        self.write(move |tx| {
            let stored: Option<String> = tx
                .query_row(
                    "SELECT spec FROM grading_queues WHERE tenant = ?1 AND name = ?2",
                    params![tenant, name],
                    |row| row.get(0),
                )
                .optional()
                .map_err(failed)?;
            match stored {
                Some(stored) if stored == text => {}
                Some(_) => {
                    return Err(GradingError::Conflict(format!(
                        "a queue named {name:?} already exists with a different definition"
                    )));
                }
                None => {
                    tx.execute(
                        "INSERT INTO grading_queues (tenant, name, spec) VALUES (?1, ?2, ?3)",
                        params![tenant, name, text],
                    )
                    .map_err(failed)?;
                }
            }
            insert_items(tx, &tenant, &name, &items)
        })
        .await
    }

    async fn add_items(
        &self,
        tenant: &str,
        queue: &str,
        items: &[QueueItem],
    ) -> Result<(), GradingError> {
        let (tenant, queue, items) = (tenant.to_owned(), queue.to_owned(), items.to_vec());
        self.write(move |tx| {
            spec_of(tx, &tenant, &queue)?;
            insert_items(tx, &tenant, &queue, &items)
        })
        .await
    }

    async fn queue(&self, tenant: &str, name: &str) -> Result<Option<QueueSpec>, GradingError> {
        let (tenant, name) = (tenant.to_owned(), name.to_owned());
        self.read(move |conn| match spec_of(conn, &tenant, &name) {
            Ok(spec) => Ok(Some(spec)),
            Err(GradingError::NotFound(_)) => Ok(None),
            Err(e) => Err(e),
        })
        .await
    }

    async fn queues(&self, tenant: &str) -> Result<Vec<QueueSpec>, GradingError> {
        let tenant = tenant.to_owned();
        self.read(move |conn| {
            let mut query = conn
                .prepare_cached("SELECT spec FROM grading_queues WHERE tenant = ?1 ORDER BY name")
                .map_err(failed)?;
            let texts = query
                .query_map(params![tenant], |row| row.get::<_, String>(0))
                .map_err(failed)?
                .collect::<rusqlite::Result<Vec<_>>>()
                .map_err(failed)?;
            texts.iter().map(|t| from_json(t)).collect()
        })
        .await
    }

    async fn items(&self, tenant: &str, queue: &str) -> Result<Vec<ItemState>, GradingError> {
        let (tenant, queue) = (tenant.to_owned(), queue.to_owned());
        self.read(move |conn| items_in(conn, &tenant, &queue)).await
    }

    async fn claim(
        &self,
        tenant: &str,
        queue: &str,
        grader: &str,
        now_ms: i64,
    ) -> Result<Option<Claim>, GradingError> {
        let (tenant, queue, grader) = (tenant.to_owned(), queue.to_owned(), grader.to_owned());
        self.write(move |tx| claim_in(tx, &tenant, &queue, &grader, now_ms))
            .await
    }

    async fn submit(&self, tenant: &str, grade: &Grade, _now_ms: i64) -> Result<(), GradingError> {
        // Time does not decide: the slot is the grader's while they are its holder (live
        // or expired) and not done; another grader's claim replaces the holder.
        let (tenant, grade) = (tenant.to_owned(), grade.clone());
        self.write(move |tx| submit_in(tx, &tenant, &grade)).await
    }

    async fn save_draft(&self, tenant: &str, draft: &Draft) -> Result<(), GradingError> {
        let text = to_json(draft)?;
        let (tenant, draft) = (tenant.to_owned(), draft.clone());
        self.write(move |tx| {
            let queue = draft.queue.as_str();
            spec_of(tx, &tenant, queue)?;
            let item = item_of(tx, &tenant, queue, &draft.trace_id)?;
            let seen = tx
                .query_row(
                    "SELECT 1 FROM grading_seen
                     WHERE tenant = ?1 AND queue = ?2 AND grader = ?3 AND position = ?4",
                    params![tenant, queue, draft.grader, item.position],
                    |_| Ok(()),
                )
                .optional()
                .map_err(failed)?;
            if seen.is_none() {
                return Err(GradingError::NotHeld(format!(
                    "{:?} has not claimed this item of queue {queue:?}",
                    draft.grader
                )));
            }
            // In the same transaction as the write: a late autosave after submit must not
            // bring back the draft that submit deleted.
            let graded = tx
                .query_row(
                    "SELECT 1 FROM grading_grades
                     WHERE tenant = ?1 AND queue = ?2 AND position = ?3 AND grader = ?4",
                    params![tenant, queue, item.position, draft.grader],
                    |_| Ok(()),
                )
                .optional()
                .map_err(failed)?;
            if graded.is_some() {
                return Err(GradingError::NotHeld(format!(
                    "{:?} has already graded this item of queue {queue:?}: the draft is not kept",
                    draft.grader
                )));
            }
            tx.execute(
                "INSERT INTO grading_drafts (tenant, queue, position, grader, draft)
                 VALUES (?1, ?2, ?3, ?4, ?5)
                 ON CONFLICT (tenant, queue, position, grader) DO UPDATE SET draft = excluded.draft",
                params![tenant, queue, item.position, draft.grader, text],
            )
            .map_err(failed)?;
            Ok(())
        })
        .await
    }

    async fn draft(
        &self,
        tenant: &str,
        queue: &str,
        trace_id: &str,
        grader: &str,
    ) -> Result<Option<Draft>, GradingError> {
        let (tenant, queue, trace_id, grader) = (
            tenant.to_owned(),
            queue.to_owned(),
            trace_id.to_owned(),
            grader.to_owned(),
        );
        self.read(move |conn| {
            let text: Option<String> = conn
                .query_row(
                    "SELECT d.draft FROM grading_drafts d JOIN grading_items i
                       ON i.tenant = d.tenant AND i.queue = d.queue AND i.position = d.position
                     WHERE d.tenant = ?1 AND d.queue = ?2 AND i.trace_id = ?3 AND d.grader = ?4",
                    params![tenant, queue, trace_id, grader],
                    |row| row.get(0),
                )
                .optional()
                .map_err(failed)?;
            text.as_deref().map(from_json).transpose()
        })
        .await
    }

    async fn grades(&self, tenant: &str, queue: &str) -> Result<Vec<Grade>, GradingError> {
        let (tenant, queue) = (tenant.to_owned(), queue.to_owned());
        self.read(move |conn| {
            spec_of(conn, &tenant, &queue)?;
            let mut query = conn
                .prepare_cached(
                    "SELECT grade FROM grading_grades WHERE tenant = ?1 AND queue = ?2
                     ORDER BY position, grader",
                )
                .map_err(failed)?;
            let texts = query
                .query_map(params![tenant, queue], |row| row.get::<_, String>(0))
                .map_err(failed)?
                .collect::<rusqlite::Result<Vec<_>>>()
                .map_err(failed)?;
            texts.iter().map(|t| from_json(t)).collect()
        })
        .await
    }
}
