//! The ConnectionRegistry contract, on DynamoDB Local (started by `tests/run-all.sh`).

use std::sync::Arc;

use agentwire_contracts::{ManualClock, connection_registry_contract};
use agentwire_dynamo::{DynamoConnectionRegistry, local_client};
use agentwire_realtime::ConnectionRegistry;
use aws_sdk_dynamodb::types::AttributeValue;

async fn registry(clock: Arc<ManualClock>) -> Arc<dyn ConnectionRegistry> {
    let endpoint = std::env::var("AGENTWIRE_DYNAMODB_ENDPOINT")
        .unwrap_or_else(|_| "http://127.0.0.1:8000".into());
    let table = format!("connections-{:016x}", fastrand::u64(..));
    let registry = DynamoConnectionRegistry::new(local_client(&endpoint), table).with_clock(clock);
    registry.ensure_table().await.unwrap_or_else(|e| {
        panic!("DynamoDB Local must be running at {endpoint} (tests/run-all.sh starts it): {e}")
    });
    Arc::new(registry)
}

connection_registry_contract!(registry);

#[tokio::test]
async fn connections_past_api_gateways_two_hour_limit_are_forgotten() {
    let r = registry(Arc::default()).await;
    let mut old = agentwire_contracts::registry::connection("c-old", Some("bob"));
    // Past the 2 h limit and the grace that lets a late `$disconnect` find it.
    old.connected_at_ms -= (agentwire_dynamo::CONNECTION_LIFETIME_SECS + 3600) * 1000;
    r.connect(old).await.unwrap();
    // TTL deletion lags by up to days, so reads must skip expired items themselves.
    assert_eq!(r.get("c-old").await.unwrap(), None);
    assert!(r.subscribe("c-old", "acme/chat-1").await.is_err());
    assert!(r.subscribers("acme/chat-1").await.unwrap().is_empty());
}

#[tokio::test]
async fn a_subscription_that_raced_its_disconnect_is_still_cleaned_up() {
    let endpoint = std::env::var("AGENTWIRE_DYNAMODB_ENDPOINT")
        .unwrap_or_else(|_| "http://127.0.0.1:8000".into());
    let table = format!("connections-{:016x}", fastrand::u64(..));
    let registry = DynamoConnectionRegistry::new(local_client(&endpoint), &table);
    registry.ensure_table().await.unwrap();
    let c = agentwire_contracts::registry::connection("c-1", Some("ana"));
    registry.connect(c).await.unwrap();
    registry.subscribe("c-1", "acme/chat-1").await.unwrap();
    // `$disconnect` removed the connection item before the subscription committed.
    local_client(&endpoint)
        .delete_item()
        .table_name(&table)
        .key(
            "pk",
            aws_sdk_dynamodb::types::AttributeValue::S("conn#c-1".into()),
        )
        .key(
            "sk",
            aws_sdk_dynamodb::types::AttributeValue::S("meta".into()),
        )
        .send()
        .await
        .unwrap();
    // A push then finds the socket gone and disconnects it: no ghost subscriber remains.
    assert_eq!(registry.disconnect("c-1").await.unwrap(), None);
    assert!(
        registry
            .subscribers("acme/chat-1")
            .await
            .unwrap()
            .is_empty()
    );
}

#[tokio::test]
async fn subscriber_items_from_before_the_expiry_attribute_read_as_unknown() {
    let endpoint = std::env::var("AGENTWIRE_DYNAMODB_ENDPOINT")
        .unwrap_or_else(|_| "http://127.0.0.1:8000".into());
    let table = format!("connections-{:016x}", fastrand::u64(..));
    let registry = DynamoConnectionRegistry::new(local_client(&endpoint), &table);
    registry.ensure_table().await.unwrap();
    // An item as the registry wrote them before `exp`: the fan-out must look it up.
    local_client(&endpoint)
        .put_item()
        .table_name(&table)
        .item("pk", AttributeValue::S("sess#acme/chat-1".into()))
        .item("sk", AttributeValue::S("c-old".into()))
        .item("user", AttributeValue::S("ana".into()))
        .send()
        .await
        .unwrap();
    assert_eq!(
        registry.subscribers("acme/chat-1").await.unwrap(),
        vec![agentwire_realtime::Subscriber {
            id: "c-old".into(),
            token_exp: None,
        }]
    );
}
