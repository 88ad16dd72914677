//! The SessionLog contract, on DynamoDB Local (started by `tests/run-all.sh`; set
//! AGENTWIRE_DYNAMODB_ENDPOINT to use another).

use std::sync::Arc;

use agentwire_contracts::{ManualClock, Subject, session_log_contract};
use agentwire_dynamo::{DynamoSessionLog, local_client};

async fn subject() -> Subject {
    let endpoint = std::env::var("AGENTWIRE_DYNAMODB_ENDPOINT")
        .unwrap_or_else(|_| "http://127.0.0.1:8000".into());
    let clock = Arc::new(ManualClock::default());
    let table = format!("contract-{:016x}", fastrand::u64(..));
    let log = DynamoSessionLog::with_clock(local_client(&endpoint), table, clock.clone());
    log.ensure_table().await.unwrap_or_else(|e| {
        panic!("DynamoDB Local must be running at {endpoint} (tests/run-all.sh starts it): {e}")
    });
    Subject {
        log: Arc::new(log),
        clock,
        keep: Box::new(()),
    }
}

session_log_contract!(subject);

/// The ActivityIndex contract, on DynamoDB Local (in the session table, `pk = activity`).
mod activity_index {
    use std::sync::Arc;

    use agentwire_contracts::activity_index_contract;
    use agentwire_dynamo::{DynamoActivityIndex, DynamoSessionLog, local_client};
    use agentwire_trace::ActivityIndex;

    async fn index() -> (Arc<dyn ActivityIndex>, ()) {
        let endpoint = std::env::var("AGENTWIRE_DYNAMODB_ENDPOINT")
            .unwrap_or_else(|_| "http://127.0.0.1:8000".into());
        let table = format!("activity-{:016x}", fastrand::u64(..));
        // The index lives in the session table, which the log creates.
        DynamoSessionLog::new(local_client(&endpoint), &table)
            .ensure_table()
            .await
            .unwrap_or_else(|e| panic!("DynamoDB Local must be running at {endpoint}: {e}"));
        (
            Arc::new(DynamoActivityIndex::new(local_client(&endpoint), table)),
            (),
        )
    }

    activity_index_contract!(index);
}

/// The ScoreIndex contract, on DynamoDB Local (in the session table, with its `scores`
/// index).
mod score_index {
    use std::sync::Arc;

    use agentwire_contracts::score_index_contract;
    use agentwire_dynamo::{DynamoScoreIndex, DynamoSessionLog, local_client};
    use agentwire_scoring::ScoreIndex;

    async fn index() -> (Arc<dyn ScoreIndex>, ()) {
        let endpoint = std::env::var("AGENTWIRE_DYNAMODB_ENDPOINT")
            .unwrap_or_else(|_| "http://127.0.0.1:8000".into());
        let table = format!("scores-{:016x}", fastrand::u64(..));
        DynamoSessionLog::new(local_client(&endpoint), &table)
            .ensure_table()
            .await
            .unwrap_or_else(|e| panic!("DynamoDB Local must be running at {endpoint}: {e}"));
        let index = DynamoScoreIndex::new(local_client(&endpoint), table);
        index.ensure_index().await.expect("the scores index");
        (Arc::new(index), ())
    }

    score_index_contract!(index);

    /// A session table from before score records (no `scores` index) is refused with what
    /// to do, rather than failing on the first listing.
    #[tokio::test]
    async fn an_older_table_without_the_index_is_refused_clearly() {
        use agentwire_dynamo::DynamoConnectionRegistry;

        let endpoint = std::env::var("AGENTWIRE_DYNAMODB_ENDPOINT")
            .unwrap_or_else(|_| "http://127.0.0.1:8000".into());
        let table = format!("old-{:016x}", fastrand::u64(..));
        // A plain pk/sk table, as every table was before the index.
        DynamoConnectionRegistry::new(local_client(&endpoint), &table)
            .ensure_table()
            .await
            .unwrap_or_else(|e| panic!("DynamoDB Local must be running at {endpoint}: {e}"));
        let error = DynamoScoreIndex::new(local_client(&endpoint), &table)
            .ensure_index()
            .await
            .expect_err("no index");
        let message = error.to_string();
        assert!(
            message.contains(&table) && message.contains("no scores index"),
            "{error}"
        );
    }
}

/// The GradingStore contract, on DynamoDB Local (in the session table: rubrics, queues,
/// claims and grades under their own partitions).
mod grading_store {
    use std::sync::Arc;

    use agentwire_contracts::grading_store_contract;
    use agentwire_dynamo::{DynamoGradingStore, DynamoSessionLog, local_client};
    use agentwire_grading::GradingStore;

    async fn store() -> (Arc<dyn GradingStore>, ()) {
        let endpoint = std::env::var("AGENTWIRE_DYNAMODB_ENDPOINT")
            .unwrap_or_else(|_| "http://127.0.0.1:8000".into());
        let table = format!("grading-{:016x}", fastrand::u64(..));
        DynamoSessionLog::new(local_client(&endpoint), &table)
            .ensure_table()
            .await
            .unwrap_or_else(|e| panic!("DynamoDB Local must be running at {endpoint}: {e}"));
        (
            Arc::new(DynamoGradingStore::new(local_client(&endpoint), table)),
            (),
        )
    }

    grading_store_contract!(store);
}

/// The BudgetLedger contract, on DynamoDB Local (in the session table, one item per tenant
/// and day under `budget#<tenant>`).
mod budget_ledger {
    use std::sync::Arc;

    use agentwire_contracts::budget_ledger_contract;
    use agentwire_dynamo::{DynamoBudgetLedger, DynamoSessionLog, local_client};
    use agentwire_scoring::budget::BudgetLedger;

    async fn ledger() -> (Arc<dyn BudgetLedger>, ()) {
        let endpoint = std::env::var("AGENTWIRE_DYNAMODB_ENDPOINT")
            .unwrap_or_else(|_| "http://127.0.0.1:8000".into());
        let table = format!("budget-{:016x}", fastrand::u64(..));
        DynamoSessionLog::new(local_client(&endpoint), &table)
            .ensure_table()
            .await
            .unwrap_or_else(|e| panic!("DynamoDB Local must be running at {endpoint}: {e}"));
        (
            Arc::new(DynamoBudgetLedger::new(local_client(&endpoint), table)),
            (),
        )
    }

    budget_ledger_contract!(ledger);
}

/// The SubscriptionStore contract, on DynamoDB Local (in the session table, with its
/// `keys` index), and the stream catalog beside it.
mod subscription_store {
    use std::sync::Arc;

    use agentwire_contracts::subscription_store_contract;
    use agentwire_dispatch::{StreamCatalog, SubscriptionStore};
    use agentwire_dynamo::{DynamoSessionLog, DynamoSubscriptionStore, local_client};
    use agentwire_session::{CreateStream, Expiry, Offset, SessionLog};
    use bytes::Bytes;

    async fn table() -> (String, String) {
        let endpoint = std::env::var("AGENTWIRE_DYNAMODB_ENDPOINT")
            .unwrap_or_else(|_| "http://127.0.0.1:8000".into());
        let table = format!("subscriptions-{:016x}", fastrand::u64(..));
        DynamoSessionLog::new(local_client(&endpoint), &table)
            .ensure_table()
            .await
            .unwrap_or_else(|e| panic!("DynamoDB Local must be running at {endpoint}: {e}"));
        (endpoint, table)
    }

    async fn store() -> (Arc<dyn SubscriptionStore>, ()) {
        let (endpoint, table) = table().await;
        let store = DynamoSubscriptionStore::new(local_client(&endpoint), table);
        store.ensure_index().await.expect("the keys index");
        (Arc::new(store), ())
    }

    subscription_store_contract!(store);

    fn stream(name: &str, body: &'static [u8]) -> CreateStream {
        CreateStream {
            name: name.to_owned(),
            content_type: Some("application/octet-stream".into()),
            expiry: Expiry::Never,
            closed: false,
            fork: None,
            body: Bytes::from_static(body),
        }
    }

    /// What a new pattern subscription links: the tenant's live streams at their tails,
    /// never another tenant's, never a deleted one.
    #[tokio::test]
    async fn the_catalog_lists_one_tenants_live_streams_with_their_tails() {
        let (endpoint, table) = table().await;
        let log = DynamoSessionLog::new(local_client(&endpoint), &table);
        log.create(stream("acme/chat-1", b"abc"))
            .await
            .expect("create");
        log.create(stream("acme/team/chat-2", b""))
            .await
            .expect("create");
        log.create(stream("acme/gone", b"x")).await.expect("create");
        log.delete("acme/gone").await.expect("delete");
        log.create(stream("acme-other/chat-9", b"x"))
            .await
            .expect("create");
        let catalog = DynamoSubscriptionStore::new(local_client(&endpoint), &table);
        let mut listed = catalog.streams("acme").await.expect("list");
        listed.sort();
        assert_eq!(
            listed,
            [
                ("chat-1".to_owned(), Offset(3)),
                ("team/chat-2".to_owned(), Offset(0))
            ]
        );
        assert_eq!(catalog.streams("nobody").await.expect("list"), []);
    }
}

/// The same contract on streams in the transactional layout that versions before the log
/// layout created: tables written by them keep working.
mod transact_layout {
    use super::*;

    async fn subject() -> Subject {
        let mut subject = super::subject().await;
        let endpoint = std::env::var("AGENTWIRE_DYNAMODB_ENDPOINT")
            .unwrap_or_else(|_| "http://127.0.0.1:8000".into());
        let table = format!("contract-{:016x}", fastrand::u64(..));
        let log =
            DynamoSessionLog::with_clock(local_client(&endpoint), table, subject.clock.clone())
                .creating_transact_streams();
        log.ensure_table().await.expect("table");
        subject.log = Arc::new(log);
        subject
    }

    session_log_contract!(subject);
}

/// Upgrading: streams an earlier version wrote (transactional layout) are appended to,
/// deduplicated, forked, closed and deleted by this one, and new streams get the log layout.
mod upgrade {
    use super::*;
    use agentwire_session::{
        AppendError, AppendKind, AppendRequest, CreateStream, Expiry, ForkFrom, Offset, Payload,
        ProducerClaim, ReadFrom, SessionLog,
    };
    use bytes::Bytes;

    fn text(data: &str, producer: Option<(&str, u64)>) -> AppendRequest {
        AppendRequest {
            content_type: Some("text/plain".into()),
            payload: Payload {
                data: Bytes::copy_from_slice(data.as_bytes()),
                units: data.len() as u64,
            },
            producer: producer.map(|(id, seq)| ProducerClaim {
                id: id.into(),
                epoch: 0,
                seq,
            }),
            ..AppendRequest::default()
        }
    }

    fn stream(name: &str, fork: Option<ForkFrom>) -> CreateStream {
        CreateStream {
            name: name.into(),
            content_type: Some("text/plain".into()),
            expiry: Expiry::Never,
            closed: false,
            fork,
            body: Bytes::new(),
        }
    }

    async fn text_of(log: &DynamoSessionLog, name: &str) -> String {
        let batch = log
            .read(name, ReadFrom::Start, usize::MAX)
            .await
            .expect("read");
        batch
            .records
            .iter()
            .map(|r| String::from_utf8(r.data.to_vec()).expect("utf-8"))
            .collect()
    }

    #[tokio::test]
    async fn streams_written_before_the_log_layout_keep_working() {
        let endpoint = std::env::var("AGENTWIRE_DYNAMODB_ENDPOINT")
            .unwrap_or_else(|_| "http://127.0.0.1:8000".into());
        let table = format!("upgrade-{:016x}", fastrand::u64(..));
        let before =
            DynamoSessionLog::new(local_client(&endpoint), &table).creating_transact_streams();
        before.ensure_table().await.expect("table");
        before.create(stream("old", None)).await.expect("create");
        before
            .append("old", text("ab", Some(("p", 0))))
            .await
            .expect("seq 0");

        let now = DynamoSessionLog::new(local_client(&endpoint), &table);
        let retry = now
            .append("old", text("ab", Some(("p", 0))))
            .await
            .expect("retry");
        assert_eq!(
            retry.kind,
            AppendKind::Duplicate,
            "the old producer item is read"
        );
        let next = now
            .append("old", text("cd", Some(("p", 1))))
            .await
            .expect("seq 1");
        assert_eq!((next.start, next.tail), (Offset(2), Offset(4)));
        assert_eq!(text_of(&now, "old").await, "abcd");
        assert_eq!(
            text_of(&before, "old").await,
            "abcd",
            "the old version reads it too"
        );

        // A fork made now (log layout) of the old stream, from the middle of a record.
        let fork = ForkFrom {
            source: "old".into(),
            offset: Some(Offset(2)),
            sub_offset: 1,
        };
        now.create(stream("new", Some(fork))).await.expect("fork");
        now.append("new", text("xy", Some(("q", 0))))
            .await
            .expect("fork append");
        assert_eq!(text_of(&now, "new").await, "abcxy");
        let mid = now
            .read("new", ReadFrom::At(Offset(4)), usize::MAX)
            .await
            .expect("read");
        let tail: String = mid
            .records
            .iter()
            .map(|r| String::from_utf8_lossy(&r.data).into_owned())
            .collect();
        assert_eq!(tail, "y", "a read from inside a log record");

        let close = AppendRequest {
            close: true,
            ..AppendRequest::default()
        };
        now.append("old", close.clone()).await.expect("close old");
        assert_eq!(
            before.append("old", text("e", None)).await,
            Err(AppendError::Closed { tail: Offset(4) }),
            "closed for both versions"
        );
        now.append("new", close).await.expect("close new");
        assert!(now.head("new").await.expect("head").closed);
        now.delete("new").await.expect("delete fork");
        now.delete("old").await.expect("delete old");
        assert!(now.head("old").await.is_err());
    }
}
