//! The log's operations as synchronous SQL over one connection. Writes run inside the
//! writer thread's transaction; reads inside a reader's snapshot.

use agentwire_session::fork::{self, Segment};
use agentwire_session::rules::{self, AppendPlan, AppendTarget, ForkSource};
use agentwire_session::{
    AppendError, AppendKind, AppendRequest, Appended, CreateError, CreateStream, Created,
    DeleteError, Expiry, Mode, Offset, ProducerClaim, ProducerState, ReadBatch, ReadError,
    ReadFrom, Record, StorageError, StreamInfo,
};
use bytes::Bytes;
use rusqlite::{Connection, OptionalExtension, Row, params};

/// Maps an engine failure to the port's error; rusqlite messages carry no bound values.
pub fn storage(e: rusqlite::Error) -> StorageError {
    StorageError::new(format!("sqlite: {e}"))
}

/// A stream row with its fork source's name.
#[derive(Debug, Clone)]
pub struct StreamRow {
    pub id: i64,
    pub name: String,
    pub content_type: String,
    pub expiry: Expiry,
    pub accessed_ms: i64,
    pub tail: u64,
    pub closed: bool,
    pub closed_by: Option<ProducerClaim>,
    pub last_stream_seq: Option<String>,
    pub fork_source: Option<(i64, String, u64)>,
    pub fork_refs: i64,
    pub deleted: bool,
}

impl StreamRow {
    pub fn info(&self) -> StreamInfo {
        StreamInfo {
            id: self.id as u64,
            name: self.name.clone(),
            content_type: self.content_type.clone(),
            expiry: self.expiry,
            tail: Offset(self.tail),
            closed: self.closed,
            fork: self
                .fork_source
                .as_ref()
                .map(|(_, name, offset)| (name.clone(), Offset(*offset))),
        }
    }

    pub fn expired(&self, now_ms: i64) -> bool {
        self.expiry.has_passed(self.accessed_ms, now_ms)
    }

    fn from_row(row: &Row<'_>) -> rusqlite::Result<StreamRow> {
        let expiry = match (
            row.get::<_, Option<i64>>("ttl_seconds")?,
            row.get::<_, Option<i64>>("expires_at_ms")?,
        ) {
            (Some(seconds), _) => Expiry::Ttl {
                seconds: seconds as u64,
            },
            (None, Some(unix_ms)) => Expiry::At { unix_ms },
            (None, None) => Expiry::Never,
        };
        let closed_by = match row.get::<_, Option<String>>("closed_by_id")? {
            Some(id) => Some(ProducerClaim {
                id,
                epoch: row.get::<_, i64>("closed_by_epoch")? as u64,
                seq: row.get::<_, i64>("closed_by_seq")? as u64,
            }),
            None => None,
        };
        let fork_source = match row.get::<_, Option<i64>>("fork_source")? {
            Some(id) => Some((
                id,
                row.get::<_, String>("source_name")?,
                row.get::<_, i64>("fork_offset")? as u64,
            )),
            None => None,
        };
        Ok(StreamRow {
            id: row.get("id")?,
            name: row.get("name")?,
            content_type: row.get("content_type")?,
            expiry,
            accessed_ms: row.get("accessed_ms")?,
            tail: row.get::<_, i64>("tail")? as u64,
            closed: row.get("closed")?,
            closed_by,
            last_stream_seq: row.get("last_stream_seq")?,
            fork_source,
            fork_refs: row.get("fork_refs")?,
            deleted: row.get("deleted")?,
        })
    }
}

// A subquery, not a LEFT JOIN: SQLite re-prepares a LEFT JOIN with a bound parameter on
// every run (a third of an append's CPU time when it did).
const SELECT_STREAM: &str = "SELECT t.*, \
     (SELECT s.name FROM streams s WHERE s.id = t.fork_source) AS source_name FROM streams t";

fn stream_by_name(conn: &Connection, name: &str) -> rusqlite::Result<Option<StreamRow>> {
    conn.prepare_cached(&format!("{SELECT_STREAM} WHERE t.name = ?1"))?
        .query_row([name], StreamRow::from_row)
        .optional()
}

fn stream_by_id(conn: &Connection, id: i64) -> rusqlite::Result<Option<StreamRow>> {
    conn.prepare_cached(&format!("{SELECT_STREAM} WHERE t.id = ?1"))?
        .query_row([id], StreamRow::from_row)
        .optional()
}

/// What a name refers to in the writer, after expiring it if its time is up.
enum Lookup {
    Live(Box<StreamRow>),
    SoftDeleted,
    Missing,
}

fn lookup(conn: &Connection, name: &str, now_ms: i64) -> rusqlite::Result<Lookup> {
    Ok(match stream_by_name(conn, name)? {
        None => Lookup::Missing,
        Some(row) if row.deleted => Lookup::SoftDeleted,
        Some(row) if row.expired(now_ms) => {
            remove(conn, &row)?;
            match row.fork_refs {
                0 => Lookup::Missing,
                _ => Lookup::SoftDeleted,
            }
        }
        Some(row) => Lookup::Live(Box::new(row)),
    })
}

pub fn create(
    conn: &Connection,
    request: &CreateStream,
    now_ms: i64,
) -> Result<Created, CreateError> {
    let existing = match lookup(conn, &request.name, now_ms).map_err(storage)? {
        Lookup::SoftDeleted => return Err(CreateError::PathRetained(request.name.clone())),
        Lookup::Live(row) => Some(*row),
        Lookup::Missing => None,
    };
    let source = match &request.fork {
        None => None,
        Some(fork) => match lookup(conn, &fork.source, now_ms).map_err(storage)? {
            Lookup::Missing => return Err(CreateError::SourceNotFound(fork.source.clone())),
            Lookup::SoftDeleted => return Err(CreateError::SourceDeleted(fork.source.clone())),
            Lookup::Live(row) => Some(*row),
        },
    };
    let source_info = source.as_ref().map(StreamRow::info);
    let fork_source = match (&request.fork, &source, &source_info) {
        (Some(fork), Some(row), Some(info)) => {
            let at = fork.offset.unwrap_or(info.tail);
            Some(ForkSource {
                info,
                next_record_units: record_units_at(conn, row, at).map_err(storage)?,
            })
        }
        _ => None,
    };
    let plan = rules::plan_create(request, fork_source)?;
    if let Some(existing) = existing {
        let info = existing.info();
        rules::check_same_config(&info, &plan.config)?;
        return Ok(Created {
            info,
            created: false,
        });
    }

    let config = &plan.config;
    let (ttl, expires_at) = match config.expiry {
        Expiry::Never => (None, None),
        Expiry::Ttl { seconds } => (Some(seconds as i64), None),
        Expiry::At { unix_ms } => (None, Some(unix_ms)),
    };
    let fork_offset = config.fork.as_ref().map(|(_, offset)| offset.0);
    let start = fork_offset.unwrap_or(0);
    let tail = start + plan.initial.units;
    conn.prepare_cached(
        "INSERT INTO streams (name, content_type, ttl_seconds, expires_at_ms, accessed_ms, tail, closed, fork_source, fork_offset) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
    )
    .and_then(|mut insert| {
        insert.execute(params![
            request.name,
            config.content_type,
            ttl,
            expires_at,
            now_ms,
            tail as i64,
            config.closed,
            source.as_ref().map(|row| row.id),
            fork_offset.map(|o| o as i64),
        ])
    })
    .map_err(storage)?;
    let id = conn.last_insert_rowid();
    if !plan.initial.is_empty() {
        insert_record(conn, id, (start, tail), &plan.initial.data, now_ms).map_err(storage)?;
    }
    if let Some(row) = &source {
        conn.prepare_cached("UPDATE streams SET fork_refs = fork_refs + 1 WHERE id = ?1")
            .and_then(|mut update| update.execute([row.id]))
            .map_err(storage)?;
    }
    let row = stream_by_id(conn, id)
        .map_err(storage)?
        .ok_or_else(|| StorageError::new("created stream vanished"))?;
    Ok(Created {
        info: row.info(),
        created: true,
    })
}

pub fn append(
    conn: &Connection,
    name: &str,
    request: &AppendRequest,
    now_ms: i64,
) -> Result<Appended, AppendError> {
    let row = match lookup(conn, name, now_ms).map_err(storage)? {
        Lookup::Live(row) => row,
        Lookup::SoftDeleted => return Err(AppendError::Gone(name.to_owned())),
        Lookup::Missing => return Err(AppendError::NotFound(name.to_owned())),
    };
    let producer_state = match &request.producer {
        Some(claim) => producer(conn, row.id, &claim.id).map_err(storage)?,
        None => None,
    };
    let target = AppendTarget {
        content_type: &row.content_type,
        tail: Offset(row.tail),
        closed: row.closed,
        last_stream_seq: row.last_stream_seq.as_deref(),
        closed_by: row.closed_by.as_ref(),
    };
    let tail = Offset(row.tail);
    let plan = rules::decide_append(&target, producer_state, request)?;
    if !matches!(plan, AppendPlan::Write { .. }) {
        // Accepted without writing: still an access that resets a TTL.
        touch(conn, row.id, now_ms).map_err(storage)?;
    }
    let producer = match plan {
        AppendPlan::AlreadyClosed => {
            return Ok(Appended {
                kind: AppendKind::AlreadyClosed,
                start: tail,
                tail,
                closed: true,
                producer: None,
            });
        }
        AppendPlan::Duplicate { producer } => {
            return Ok(Appended {
                kind: AppendKind::Duplicate,
                start: tail,
                tail,
                closed: row.closed,
                producer,
            });
        }
        AppendPlan::Write { producer } => producer,
    };

    let new_tail = row.tail + request.payload.units;
    if !request.payload.is_empty() {
        insert_record(
            conn,
            row.id,
            (row.tail, new_tail),
            &request.payload.data,
            now_ms,
        )
        .map_err(storage)?;
    }
    let closed_by = request.producer.as_ref().filter(|_| request.close);
    conn.prepare_cached(
        "UPDATE streams SET tail = ?2, accessed_ms = ?3, \
           last_stream_seq = COALESCE(?4, last_stream_seq), \
           closed = closed OR ?5, \
           closed_by_id = COALESCE(?6, closed_by_id), \
           closed_by_epoch = COALESCE(?7, closed_by_epoch), \
           closed_by_seq = COALESCE(?8, closed_by_seq) \
         WHERE id = ?1",
    )
    .and_then(|mut update| {
        update.execute(params![
            row.id,
            new_tail as i64,
            now_ms,
            request.stream_seq,
            request.close,
            closed_by.map(|c| &c.id),
            closed_by.map(|c| c.epoch as i64),
            closed_by.map(|c| c.seq as i64),
        ])
    })
    .map_err(storage)?;
    if let (Some(claim), Some(state)) = (&request.producer, producer) {
        conn.prepare_cached(
            "INSERT INTO producers (stream_id, producer_id, epoch, last_seq) VALUES (?1, ?2, ?3, ?4) \
             ON CONFLICT (stream_id, producer_id) DO UPDATE SET epoch = excluded.epoch, last_seq = excluded.last_seq",
        )
        .and_then(|mut upsert| upsert.execute(params![row.id, claim.id, state.epoch as i64, state.last_seq as i64]))
        .map_err(storage)?;
    }
    Ok(Appended {
        kind: AppendKind::Written,
        start: tail,
        tail: Offset(new_tail),
        closed: row.closed || request.close,
        producer,
    })
}

pub fn delete(conn: &Connection, name: &str, now_ms: i64) -> Result<(), DeleteError> {
    match lookup(conn, name, now_ms).map_err(storage)? {
        Lookup::Live(row) => remove(conn, &row)
            .map_err(storage)
            .map_err(DeleteError::from),
        Lookup::SoftDeleted => Err(DeleteError::Gone(name.to_owned())),
        Lookup::Missing => Err(DeleteError::NotFound(name.to_owned())),
    }
}

/// Resets a TTL stream's idle clock.
pub fn touch(conn: &Connection, id: i64, now_ms: i64) -> rusqlite::Result<()> {
    conn.prepare_cached(
        "UPDATE streams SET accessed_ms = MAX(accessed_ms, ?2) WHERE id = ?1 AND deleted = 0",
    )?
    .execute(params![id, now_ms])?;
    Ok(())
}

/// Deletes every stream whose expiry has passed; returns how many.
pub fn expire_due(conn: &Connection, now_ms: i64) -> rusqlite::Result<usize> {
    let due: Vec<i64> = conn
        .prepare_cached(
            "SELECT id FROM streams WHERE deleted = 0 AND ( \
               (ttl_seconds IS NOT NULL AND accessed_ms + ttl_seconds * 1000 <= ?1) \
               OR (expires_at_ms IS NOT NULL AND expires_at_ms <= ?1))",
        )?
        .query_map([now_ms], |row| row.get(0))?
        .collect::<rusqlite::Result<_>>()?;
    for id in &due {
        if let Some(row) = stream_by_id(conn, *id)? {
            remove(conn, &row)?;
        }
    }
    Ok(due.len())
}

/// Deletes a stream: soft while forks still read from it, else for good, releasing its
/// source in turn (which may cascade up a chain of soft-deleted sources).
fn remove(conn: &Connection, row: &StreamRow) -> rusqlite::Result<()> {
    if row.fork_refs > 0 {
        conn.prepare_cached("UPDATE streams SET deleted = 1 WHERE id = ?1")?
            .execute([row.id])?;
        return Ok(());
    }
    let mut next = Some(row.id);
    while let Some(id) = next.take() {
        let source: Option<i64> = conn
            .prepare_cached("SELECT fork_source FROM streams WHERE id = ?1")?
            .query_row([id], |r| r.get(0))
            .optional()?
            .flatten();
        conn.prepare_cached("DELETE FROM records WHERE stream_id = ?1")?
            .execute([id])?;
        conn.prepare_cached("DELETE FROM producers WHERE stream_id = ?1")?
            .execute([id])?;
        conn.prepare_cached("DELETE FROM streams WHERE id = ?1")?
            .execute([id])?;
        if let Some(source) = source {
            conn.prepare_cached("UPDATE streams SET fork_refs = fork_refs - 1 WHERE id = ?1")?
                .execute([source])?;
            let orphaned: bool = conn
                .prepare_cached("SELECT deleted AND fork_refs = 0 FROM streams WHERE id = ?1")?
                .query_row([source], |r| r.get(0))
                .optional()?
                .unwrap_or(false);
            if orphaned {
                next = Some(source);
            }
        }
    }
    Ok(())
}

fn producer(
    conn: &Connection,
    stream_id: i64,
    producer_id: &str,
) -> rusqlite::Result<Option<ProducerState>> {
    conn.prepare_cached(
        "SELECT epoch, last_seq FROM producers WHERE stream_id = ?1 AND producer_id = ?2",
    )?
    .query_row(params![stream_id, producer_id], |row| {
        Ok(ProducerState {
            epoch: row.get::<_, i64>(0)? as u64,
            last_seq: row.get::<_, i64>(1)? as u64,
        })
    })
    .optional()
}

/// Stores units `[start, end)` committed at `at_ms`: the writer's time for its whole group
/// commit, so every request of one transaction shares it.
fn insert_record(
    conn: &Connection,
    stream_id: i64,
    (start, end): (u64, u64),
    data: &[u8],
    at_ms: i64,
) -> rusqlite::Result<()> {
    conn.prepare_cached(
        "INSERT INTO records (stream_id, start_offset, end_offset, data, at_ms) \
         VALUES (?1, ?2, ?3, ?4, ?5)",
    )?
    .execute(params![stream_id, start as i64, end as i64, data, at_ms])?;
    Ok(())
}

/// The stretches that make up a stream, oldest source first.
fn segments(conn: &Connection, row: &StreamRow) -> rusqlite::Result<Vec<Segment<i64>>> {
    let mut chain = Vec::new();
    let mut current = Some(row.clone());
    while let Some(stream) = current.take() {
        let fork = stream
            .fork_source
            .as_ref()
            .map(|(id, _, offset)| (*id, *offset));
        chain.push((stream.id, fork.map(|(_, offset)| offset)));
        if let Some((source_id, _)) = fork {
            current = stream_by_id(conn, source_id)?;
        }
    }
    Ok(fork::segments(chain, row.tail))
}

/// Units from `at` to the end of the record that holds it (0 at the tail).
fn record_units_at(conn: &Connection, row: &StreamRow, at: Offset) -> rusqlite::Result<u64> {
    let first = read_records(conn, row, at.0, 1, Cut::WholeRecords)?;
    Ok(first
        .first()
        .map_or(0, |record| record.end.0 - record.start.0))
}

/// How [`read_records`] treats a record that does not fit in what is left of `max_bytes`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Cut {
    /// Keep it whole, then stop (to learn a stored record's extent).
    WholeRecords,
    /// Keep only its head that fits (at least one unit when nothing was read yet), so a
    /// read's data never exceeds `max_bytes` however large its appends were, except by a
    /// single JSON message larger than `max_bytes`.
    ToBudget,
}

/// Records from `from`, clipped to each segment, until `max_bytes` (see [`Cut`]).
fn read_records(
    conn: &Connection,
    row: &StreamRow,
    from: u64,
    max_bytes: usize,
    cut: Cut,
) -> rusqlite::Result<Vec<Record>> {
    let mode = Mode::of(&row.content_type);
    let mut records = Vec::new();
    let mut bytes = 0usize;
    let mut query = conn.prepare_cached(
        "SELECT start_offset, end_offset, data, at_ms FROM records \
         WHERE stream_id = ?1 AND end_offset > ?2 AND start_offset < ?3 ORDER BY end_offset",
    )?;
    for segment in segments(conn, row)? {
        if segment.to <= from || bytes >= max_bytes {
            continue;
        }
        let lo = from.max(segment.from);
        let mut rows = query.query(params![segment.stream, lo as i64, segment.to as i64])?;
        while let Some(r) = rows.next()? {
            let (start, end) = (r.get::<_, i64>(0)? as u64, r.get::<_, i64>(1)? as u64);
            let data = Bytes::from(r.get::<_, Vec<u8>>(2)?);
            // A fork's inherited records are its source's rows: they keep their own time.
            let at_ms = r.get::<_, i64>(3)?;
            let Some(record) = fork::clip(mode, (start, end), data, at_ms, (lo, segment.to)) else {
                continue;
            };
            let record = match cut {
                Cut::WholeRecords => record,
                Cut::ToBudget => {
                    let budget = max_bytes.saturating_sub(bytes);
                    match fit(mode, record, budget, records.is_empty()) {
                        Some(record) => record,
                        None => break,
                    }
                }
            };
            bytes += record.data.len();
            records.push(record);
            if bytes >= max_bytes {
                break;
            }
        }
    }
    Ok(records)
}

/// The head of `record` with at most `budget` bytes of data: raw bytes are cut anywhere
/// (before a UTF-8 continuation byte, so text read as SSE is never split inside a
/// character), JSON between messages. `None` when not even one unit fits, unless
/// `at_least_one`: then one unit (one message, or one character's bytes) anyway.
fn fit(mode: Mode, record: Record, budget: usize, at_least_one: bool) -> Option<Record> {
    if record.data.len() <= budget {
        return Some(record);
    }
    let units = match mode {
        Mode::Bytes => {
            let data = &record.data;
            let continues = |i: usize| i < data.len() && data[i] & 0b1100_0000 == 0b1000_0000;
            // UTF-8 needs at most 3 bytes of back-off; binary data is cut where it falls.
            let n = (budget.saturating_sub(3)..=budget)
                .rev()
                .find(|&i| i > 0 && !continues(i))
                .unwrap_or(budget);
            match n {
                0 if at_least_one => (1..=4).find(|&i| !continues(i)).unwrap_or(4),
                n => n,
            }
        }
        Mode::Json => {
            let mut used = 0usize;
            let mut n = 0usize;
            for message in agentwire_session::content::json_messages(&record.data) {
                let cost = message.len() + usize::from(n > 0);
                if used + cost > budget && !(n == 0 && at_least_one) {
                    break;
                }
                used += cost;
                n += 1;
            }
            n
        }
    };
    if units == 0 {
        return None;
    }
    // A copy, not a slice: the response must not keep the whole stored record alive.
    let data = match mode {
        Mode::Bytes => Bytes::copy_from_slice(&record.data[..units]),
        Mode::Json => agentwire_session::content::slice_record(mode, &record.data, 0, units as u64),
    };
    Some(Record {
        start: record.start,
        end: Offset(record.start.0 + units as u64),
        data,
        at_ms: record.at_ms,
    })
}

/// The result of a read in a reader's snapshot, with whether a TTL should be reset.
pub struct Read {
    pub batch: ReadBatch,
    pub touch: Option<i64>,
}

pub fn read(
    conn: &Connection,
    name: &str,
    from: ReadFrom,
    max_bytes: usize,
    now_ms: i64,
) -> Result<Read, ReadError> {
    let row = live_row(conn, name, now_ms)?;
    let info = row.info();
    let from = from.resolve(info.tail);
    // An offset past the tail names data that does not exist yet: read nothing from the tail.
    let from = from.min(info.tail);
    let records = read_records(conn, &row, from.0, max_bytes, Cut::ToBudget).map_err(storage)?;
    let next = records.last().map_or(from, |r| r.end);
    let touch = matches!(row.expiry, Expiry::Ttl { .. }).then_some(row.id);
    Ok(Read {
        batch: ReadBatch {
            info,
            from,
            records,
            next,
        },
        touch,
    })
}

pub fn head(conn: &Connection, name: &str, now_ms: i64) -> Result<StreamInfo, ReadError> {
    live_row(conn, name, now_ms).map(|row| row.info())
}

fn live_row(conn: &Connection, name: &str, now_ms: i64) -> Result<StreamRow, ReadError> {
    match stream_by_name(conn, name).map_err(storage)? {
        None => Err(ReadError::NotFound(name.to_owned())),
        Some(row) if row.deleted => Err(ReadError::Gone(name.to_owned())),
        Some(row) if row.expired(now_ms) => match row.fork_refs {
            0 => Err(ReadError::NotFound(name.to_owned())),
            _ => Err(ReadError::Gone(name.to_owned())),
        },
        Some(row) => Ok(row),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rusqlite::StatementStatus;

    /// The lookup every append and read starts with stays prepared: a statement SQLite
    /// re-prepares on each run costs more than the rest of a small append.
    #[test]
    fn stream_lookup_is_not_reprepared() {
        let dir = tempfile::tempdir().unwrap();
        let conn = Connection::open(dir.path().join("s.db")).unwrap();
        crate::schema::open_writer(&conn).unwrap();
        let request = CreateStream {
            name: "a".into(),
            ..CreateStream::default()
        };
        create(&conn, &request, 0).unwrap();
        for _ in 0..3 {
            assert!(stream_by_name(&conn, "a").unwrap().is_some());
        }
        let sql = format!("{SELECT_STREAM} WHERE t.name = ?1");
        let statement = conn.prepare_cached(&sql).unwrap();
        assert_eq!(statement.get_status(StatementStatus::RePrepare), 0);
    }
}
