//! The judge's [`BudgetLedger`] beside the sessions, in the same SQLite file, in the table
//! `judge_budget`: one row per tenant and day, its tokens and micro-dollars spent.
//!
//! Every operation runs in one `BEGIN IMMEDIATE` transaction: IMMEDIATE takes SQLite's
//! write lock before the read, so a reservation reads the day's spend, checks the caps and
//! writes the new total with no other writer (another connection, another process) in
//! between; two judges never both take the last of a budget.

use std::path::Path;
use std::sync::{Arc, Mutex};

use agentwire_scoring::budget::{BudgetLedger, Caps, Charge, LedgerError};
use async_trait::async_trait;
use rusqlite::{Connection, OptionalExtension, Transaction, TransactionBehavior, params};
use tracing::instrument;

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS judge_budget (
    tenant    TEXT NOT NULL,
    day       TEXT NOT NULL,
    tokens    INTEGER NOT NULL,
    micro_usd INTEGER NOT NULL,
    PRIMARY KEY (tenant, day)
) WITHOUT ROWID;
";

/// Each tenant's daily judge spend, in SQLite.
pub struct SqliteBudgetLedger {
    writer: Arc<Mutex<Connection>>,
}

fn failed(e: impl std::fmt::Display) -> LedgerError {
    LedgerError(format!("sqlite: {e}"))
}

impl SqliteBudgetLedger {
    /// Opens (or creates) the ledger in the database at `path` (the session log's file).
    pub fn open(path: impl AsRef<Path>) -> Result<SqliteBudgetLedger, LedgerError> {
        let conn = crate::pool::open_writer(path.as_ref(), SCHEMA).map_err(failed)?;
        Ok(SqliteBudgetLedger {
            writer: Arc::new(Mutex::new(conn)),
        })
    }

    /// Runs `op` on the day's spend in one IMMEDIATE transaction: it returns the new spend
    /// to store (`None`: leave the row as it is) and its answer.
    async fn change<T: Send + 'static>(
        &self,
        tenant: &str,
        day: &str,
        op: impl FnOnce(Charge) -> (Option<Charge>, T) + Send + 'static,
    ) -> Result<T, LedgerError> {
        let (tenant, day) = (tenant.to_owned(), day.to_owned());
        let conn = Arc::clone(&self.writer);
        tokio::task::spawn_blocking(move || {
            let mut conn = conn
                .lock()
                .map_err(|_| failed("the connection's lock is poisoned"))?;
            let tx = conn
                .transaction_with_behavior(TransactionBehavior::Immediate)
                .map_err(failed)?;
            let (new, answer) = op(read(&tx, &tenant, &day)?);
            if let Some(new) = new {
                write(&tx, &tenant, &day, new)?;
            }
            tx.commit().map_err(failed)?;
            Ok(answer)
        })
        .await
        .map_err(failed)?
    }
}

/// SQLite integers are signed 64-bit: amounts past `i64::MAX` (never reached by a day of
/// judging) are kept at it.
fn to_sql(amount: u64) -> i64 {
    i64::try_from(amount).unwrap_or(i64::MAX)
}

fn read(conn: &Connection, tenant: &str, day: &str) -> Result<Charge, LedgerError> {
    let row: Option<(i64, i64)> = conn
        .query_row(
            "SELECT tokens, micro_usd FROM judge_budget WHERE tenant = ?1 AND day = ?2",
            params![tenant, day],
            |row| Ok((row.get(0)?, row.get(1)?)),
        )
        .optional()
        .map_err(failed)?;
    let Some((tokens, micro_usd)) = row else {
        return Ok(Charge::default());
    };
    let amount = |value: i64, name: &str| {
        u64::try_from(value).map_err(|_| failed(format!("a stored {name} is negative")))
    };
    Ok(Charge {
        tokens: amount(tokens, "token count")?,
        micro_usd: amount(micro_usd, "dollar amount")?,
    })
}

fn write(tx: &Transaction, tenant: &str, day: &str, spent: Charge) -> Result<(), LedgerError> {
    tx.execute(
        "INSERT INTO judge_budget (tenant, day, tokens, micro_usd) VALUES (?1, ?2, ?3, ?4)
         ON CONFLICT (tenant, day)
         DO UPDATE SET tokens = excluded.tokens, micro_usd = excluded.micro_usd",
        params![tenant, day, to_sql(spent.tokens), to_sql(spent.micro_usd)],
    )
    .map_err(failed)?;
    Ok(())
}

#[async_trait]
impl BudgetLedger for SqliteBudgetLedger {
    #[instrument(skip_all, fields(tenant = %tenant, day = %day))]
    async fn reserve(
        &self,
        tenant: &str,
        day: &str,
        charge: Charge,
        caps: Caps,
    ) -> Result<bool, LedgerError> {
        self.change(tenant, day, move |spent| {
            if caps.allow(spent, charge) {
                (Some(spent.plus(charge)), true)
            } else {
                (None, false)
            }
        })
        .await
    }

    #[instrument(skip_all, fields(tenant = %tenant, day = %day))]
    async fn release(&self, tenant: &str, day: &str, refund: Charge) -> Result<(), LedgerError> {
        self.change(tenant, day, move |spent| {
            let left = spent.minus(refund);
            ((left != spent).then_some(left), ())
        })
        .await
    }

    #[instrument(skip_all, fields(tenant = %tenant, day = %day))]
    async fn add(&self, tenant: &str, day: &str, extra: Charge) -> Result<(), LedgerError> {
        self.change(tenant, day, move |spent| (Some(spent.plus(extra)), ()))
            .await
    }

    #[instrument(skip_all, fields(tenant = %tenant, day = %day))]
    async fn spent(&self, tenant: &str, day: &str) -> Result<Charge, LedgerError> {
        // One SELECT reads one snapshot; the write lock is not needed.
        let (tenant, day) = (tenant.to_owned(), day.to_owned());
        let conn = Arc::clone(&self.writer);
        tokio::task::spawn_blocking(move || {
            let conn = conn
                .lock()
                .map_err(|_| failed("the connection's lock is poisoned"))?;
            read(&conn, &tenant, &day)
        })
        .await
        .map_err(failed)?
    }
}
