//! Error paths DynamoDB Local will not produce on demand, with the SDK's own mock client:
//! throttling, lost races, server errors. Each refuses cleanly or recovers, never half-writes.

use agentwire_dynamo::DynamoSessionLog;
use agentwire_session::{
    AppendError, AppendKind, AppendRequest, Mode, Offset, Payload, SessionLog,
};
use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::operation::get_item::{GetItemError, GetItemOutput};
use aws_sdk_dynamodb::operation::transact_write_items::{
    TransactWriteItemsError, TransactWriteItemsOutput,
};
use aws_sdk_dynamodb::types::error::{
    InternalServerError, ProvisionedThroughputExceededException, TransactionCanceledException,
};
use aws_sdk_dynamodb::types::{AttributeValue, CancellationReason};
use aws_smithy_mocks::{RuleMode, mock, mock_client};
use bytes::Bytes;

fn append() -> AppendRequest {
    AppendRequest {
        content_type: Some("application/json".into()),
        payload: Payload::frame(
            Mode::Json,
            Bytes::from_static(br#"{"type":"message.delta"}"#),
            false,
        )
        .unwrap(),
        ..AppendRequest::default()
    }
}

/// The `meta` item of an open JSON stream `s` with nothing in it.
fn meta() -> GetItemOutput {
    let n = |v: &str| AttributeValue::N(v.into());
    GetItemOutput::builder()
        .item("pk", AttributeValue::S("stream#s".into()))
        .item("sk", AttributeValue::S("meta".into()))
        .item("gen", n("7"))
        .item("ct", AttributeValue::S("application/json".into()))
        .item("acc", n("0"))
        .item("tail", n("0"))
        .item("closed", AttributeValue::Bool(false))
        .item("refs", n("0"))
        .item("del", AttributeValue::Bool(false))
        .build()
}

fn conflict() -> TransactWriteItemsError {
    TransactWriteItemsError::TransactionCanceledException(
        TransactionCanceledException::builder()
            .message("Transaction cancelled")
            .cancellation_reasons(
                CancellationReason::builder()
                    .code("ConditionalCheckFailed")
                    .build(),
            )
            .cancellation_reasons(CancellationReason::builder().code("None").build())
            .build(),
    )
}

#[tokio::test]
async fn throttling_refuses_the_append_and_writes_nothing() {
    let throttled = mock!(Client::get_item).then_error(|| {
        GetItemError::ProvisionedThroughputExceededException(
            ProvisionedThroughputExceededException::builder()
                .message("Rate of requests exceeds the allowed throughput")
                .build(),
        )
    });
    let writes = mock!(Client::transact_write_items)
        .then_output(|| TransactWriteItemsOutput::builder().build());
    let client = mock_client!(aws_sdk_dynamodb, RuleMode::MatchAny, [&throttled, &writes]);
    let log = DynamoSessionLog::new(client, "sessions");
    match log.append("s", append()).await {
        Err(AppendError::Storage(e)) => assert!(e.message.contains("dynamodb"), "{e}"),
        other => panic!("expected a storage error, got {other:?}"),
    }
    assert_eq!(writes.num_calls(), 0, "nothing was written");
}

#[tokio::test]
async fn an_append_that_loses_a_race_is_decided_again() {
    let reads = mock!(Client::get_item).then_output(meta);
    let writes = mock!(Client::transact_write_items)
        .sequence()
        .error(conflict)
        .times(2)
        .output(|| TransactWriteItemsOutput::builder().build())
        .build();
    let client = mock_client!(aws_sdk_dynamodb, RuleMode::MatchAny, [&reads, &writes]);
    let log = DynamoSessionLog::new(client, "sessions");
    let appended = log
        .append("s", append())
        .await
        .expect("the third attempt commits");
    assert_eq!(
        (appended.kind, appended.start, appended.tail),
        (AppendKind::Written, Offset(0), Offset(1))
    );
    assert_eq!(writes.num_calls(), 3);
    assert_eq!(
        reads.num_calls(),
        3,
        "each attempt re-reads the stream before deciding"
    );
}

#[tokio::test]
async fn a_server_error_on_commit_is_a_storage_error() {
    let reads = mock!(Client::get_item).then_output(meta);
    let failing = mock!(Client::transact_write_items).then_error(|| {
        TransactWriteItemsError::InternalServerError(
            InternalServerError::builder()
                .message("internal failure")
                .build(),
        )
    });
    let client = mock_client!(aws_sdk_dynamodb, RuleMode::MatchAny, [&reads, &failing]);
    let log = DynamoSessionLog::new(client, "sessions");
    assert!(matches!(
        log.append("s", append()).await,
        Err(AppendError::Storage(_))
    ));
}
