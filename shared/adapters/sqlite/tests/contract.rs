//! The SessionLog contract, on SQLite.

use std::sync::Arc;

use agentwire_contracts::{ManualClock, Subject, session_log_contract};
use agentwire_sqlite::SqliteSessionLog;

async fn subject() -> Subject {
    let dir = tempfile::tempdir().expect("temp dir");
    let clock = Arc::new(ManualClock::default());
    let log = SqliteSessionLog::open_with_clock(dir.path().join("sessions.db"), clock.clone())
        .expect("open");
    Subject {
        log: Arc::new(log),
        clock,
        keep: Box::new(dir),
    }
}

session_log_contract!(subject);

/// The ActivityIndex contract, on SQLite (in the session log's file).
mod activity_index {
    use std::sync::Arc;

    use agentwire_contracts::activity_index_contract;
    use agentwire_sqlite::SqliteActivityIndex;
    use agentwire_trace::ActivityIndex;

    async fn index() -> (Arc<dyn ActivityIndex>, tempfile::TempDir) {
        let dir = tempfile::tempdir().expect("temp dir");
        let index = SqliteActivityIndex::open(dir.path().join("sessions.db")).expect("open");
        (Arc::new(index), dir)
    }

    activity_index_contract!(index);
}

/// The ScoreIndex contract, on SQLite (in the session log's file, beside the sessions).
mod score_index {
    use std::sync::Arc;

    use agentwire_contracts::score_index_contract;
    use agentwire_scoring::ScoreIndex;
    use agentwire_sqlite::{SqliteScoreIndex, SqliteSessionLog};

    async fn index() -> (Arc<dyn ScoreIndex>, (tempfile::TempDir, SqliteSessionLog)) {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("sessions.db");
        // The log opens the file first, as `agentwire dev` does.
        let log = SqliteSessionLog::open(&path).expect("open the log");
        let index = SqliteScoreIndex::open(&path).expect("open");
        (Arc::new(index), (dir, log))
    }

    score_index_contract!(index);
}

/// The GradingStore contract, on SQLite (in the session log's file, beside the sessions).
mod grading_store {
    use std::sync::Arc;

    use agentwire_contracts::grading_store_contract;
    use agentwire_grading::GradingStore;
    use agentwire_sqlite::{SqliteGradingStore, SqliteSessionLog};

    async fn store() -> (Arc<dyn GradingStore>, (tempfile::TempDir, SqliteSessionLog)) {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("sessions.db");
        // The log opens the file first, as `agentwire dev` does.
        let log = SqliteSessionLog::open(&path).expect("open the log");
        let store = SqliteGradingStore::open(&path).expect("open");
        (Arc::new(store), (dir, log))
    }

    grading_store_contract!(store);
}

/// Claims stay atomic across connections: two stores (two writer connections, as two
/// processes would have) on one file, graders claiming the one slot through both at once.
mod grading_across_connections {
    use std::sync::Arc;

    use agentwire_grading::{GradingStore, QueueItem, QueueSpec, RubricRef};
    use agentwire_sqlite::SqliteGradingStore;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn two_connections_never_give_one_slot_twice() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("sessions.db");
        let stores: Vec<Arc<dyn GradingStore>> = (0..2)
            .map(|_| Arc::new(SqliteGradingStore::open(&path).expect("open")) as _)
            .collect();
        let graders: Vec<String> = (0..8).map(|g| format!("g{g}")).collect();
        let spec = QueueSpec {
            name: "q".into(),
            title: String::new(),
            rubric: RubricRef {
                name: "r".into(),
                version: 1,
            },
            graders: graders.clone(),
            per_item: 1,
            shared_share: 0.0,
            blind: false,
            deadline_ms: None,
            lease_ms: 60_000,
            adjudication: None,
            source: serde_json::Value::Null,
            created_ms: 0,
        };
        let items: Vec<QueueItem> = (0..3)
            .map(|i| QueueItem {
                trace_id: format!("{i:032x}"),
                session: format!("s{i}"),
                position: i,
                slots: 1,
            })
            .collect();
        stores[0]
            .create_queue("acme", &spec, &items)
            .await
            .expect("create");
        for round in 0..5i64 {
            // Each round, every slot's lease from the round before has run out.
            let now = 1_000_000 + round * 120_000;
            let start = Arc::new(tokio::sync::Barrier::new(graders.len()));
            let mut tasks = tokio::task::JoinSet::new();
            for (i, grader) in graders.iter().enumerate() {
                let store = Arc::clone(&stores[i % 2]);
                let (grader, start) = (grader.clone(), Arc::clone(&start));
                tasks.spawn(async move {
                    start.wait().await;
                    store.claim("acme", "q", &grader, now).await
                });
            }
            let mut won = Vec::new();
            while let Some(result) = tasks.join_next().await {
                if let Some(claim) = result.expect("task").expect("a claim fails only by losing") {
                    won.push(claim.item.position);
                }
            }
            won.sort();
            assert_eq!(won, [0, 1, 2], "round {round}: each slot given once");
        }
    }
}

/// The BudgetLedger contract, on SQLite (in the session log's file, beside the sessions).
mod budget_ledger {
    use std::sync::Arc;

    use agentwire_contracts::budget_ledger_contract;
    use agentwire_scoring::budget::{BudgetLedger, Caps, Charge};
    use agentwire_sqlite::{SqliteBudgetLedger, SqliteSessionLog};

    async fn ledger() -> (Arc<dyn BudgetLedger>, (tempfile::TempDir, SqliteSessionLog)) {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("sessions.db");
        // The log opens the file first, as `agentwire dev` does.
        let log = SqliteSessionLog::open(&path).expect("open the log");
        let ledger = SqliteBudgetLedger::open(&path).expect("open");
        (Arc::new(ledger), (dir, log))
    }

    budget_ledger_contract!(ledger);

    /// Reservations stay atomic across connections: two ledgers (two writer connections,
    /// as two processes would have) on one file, judges reserving through both at once.
    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn two_connections_never_pass_the_cap() {
        const CAP: u64 = 301;
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("sessions.db");
        let ledgers: Vec<Arc<dyn BudgetLedger>> = (0..2)
            .map(|_| Arc::new(SqliteBudgetLedger::open(&path).expect("open")) as _)
            .collect();
        let caps = Caps {
            tokens: Some(CAP),
            micro_usd: None,
        };
        let mut tasks = tokio::task::JoinSet::new();
        for i in 0..8u64 {
            let ledger = Arc::clone(&ledgers[i as usize % 2]);
            let amount = Charge {
                tokens: 4 + i % 3,
                micro_usd: 1,
            };
            tasks.spawn(async move {
                let mut accepted = 0;
                while ledger
                    .reserve("acme", "2026-03-14", amount, caps)
                    .await
                    .expect("reserve")
                {
                    accepted += amount.tokens;
                }
                accepted
            });
        }
        let mut accepted = 0;
        while let Some(result) = tasks.join_next().await {
            accepted += result.expect("task");
        }
        let spent = ledgers[1].spent("acme", "2026-03-14").await.expect("spent");
        assert_eq!(spent.tokens, accepted);
        assert!(CAP - 4 < spent.tokens && spent.tokens <= CAP, "{spent:?}");
    }
}

/// The SubscriptionStore contract, on SQLite (in the session log's file).
mod subscription_store {
    use std::sync::Arc;

    use agentwire_contracts::subscription_store_contract;
    use agentwire_dispatch::SubscriptionStore;
    use agentwire_sqlite::{SqliteSessionLog, SqliteSubscriptionStore};

    async fn store() -> (
        Arc<dyn SubscriptionStore>,
        (tempfile::TempDir, SqliteSessionLog),
    ) {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("sessions.db");
        let log = SqliteSessionLog::open(&path).expect("open the log");
        let store = SqliteSubscriptionStore::open(&path).expect("open");
        (Arc::new(store), (dir, log))
    }

    subscription_store_contract!(store);

    /// Lists come from memory until this store writes: a row put in by another connection
    /// is not seen (the store is the table's only writer), and the store's next write
    /// makes the next list read the table again.
    #[tokio::test]
    async fn lists_are_served_from_memory_until_the_store_writes() {
        use agentwire_contracts::subscriptions::subscription as sub;
        let (store, keep) = store().await;
        assert!(store.list("acme").await.unwrap().is_empty());
        let other = rusqlite::Connection::open(keep.0.path().join("sessions.db")).expect("open");
        other
            .execute(
                "INSERT INTO subscriptions (tenant, id, version, body) VALUES ('acme', 'outside', 1, ?1)",
                [serde_json::to_string(&sub("acme", "outside")).expect("json")],
            )
            .expect("insert");
        assert!(
            store.list("acme").await.unwrap().is_empty(),
            "served from memory"
        );
        assert!(store.put(&sub("acme", "inside"), None).await.unwrap());
        let mut ids: Vec<String> = store
            .list("acme")
            .await
            .unwrap()
            .into_iter()
            .map(|s| s.id)
            .collect();
        ids.sort();
        assert_eq!(ids, ["inside", "outside"]);
    }
}
