//! The archiver's [`ActivityIndex`] in the session table: one item per session with
//! appends not yet archived, under one partition (`pk = activity`, `sk = <session>`).
//!
//! Written at most once per session per stream batch (not per append), and its `sk` is
//! never `meta`, so the stream filter does not send these writes back to the archiver.

use agentwire_trace::{ActivityIndex, ArchiveError};
use async_trait::async_trait;
use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::error::DisplayErrorContext;
use aws_sdk_dynamodb::types::AttributeValue;

const PK: &str = "activity";

/// Sessions awaiting their idle archive, in the session table.
pub struct DynamoActivityIndex {
    client: Client,
    table: String,
}

impl DynamoActivityIndex {
    pub fn new(client: Client, table: impl Into<String>) -> DynamoActivityIndex {
        DynamoActivityIndex {
            client,
            table: table.into(),
        }
    }
}

fn failed(e: impl std::fmt::Display) -> ArchiveError {
    ArchiveError(format!("dynamodb: {e}"))
}

#[async_trait]
impl ActivityIndex for DynamoActivityIndex {
    async fn touch(&self, session: &str, at_ms: i64) -> Result<(), ArchiveError> {
        let result = self
            .client
            .update_item()
            .table_name(&self.table)
            .key("pk", AttributeValue::S(PK.into()))
            .key("sk", AttributeValue::S(session.into()))
            .update_expression("SET #at = :at")
            .condition_expression("attribute_not_exists(#at) OR #at < :at")
            .expression_attribute_names("#at", "at")
            .expression_attribute_values(":at", AttributeValue::N(at_ms.to_string()))
            .send()
            .await;
        match result {
            // A lost condition means a later time is already recorded.
            Err(e)
                if !e
                    .as_service_error()
                    .is_some_and(|e| e.is_conditional_check_failed_exception()) =>
            {
                Err(failed(DisplayErrorContext(e)))
            }
            _ => Ok(()),
        }
    }

    async fn idle_since(&self, before_ms: i64) -> Result<Vec<(String, i64)>, ArchiveError> {
        let mut due = Vec::new();
        let mut start = None;
        loop {
            let page = self
                .client
                .query()
                .table_name(&self.table)
                .key_condition_expression("pk = :pk")
                .filter_expression("#at < :before")
                .expression_attribute_names("#at", "at")
                .expression_attribute_values(":pk", AttributeValue::S(PK.into()))
                .expression_attribute_values(":before", AttributeValue::N(before_ms.to_string()))
                .consistent_read(true)
                .set_exclusive_start_key(start.take())
                .send()
                .await
                .map_err(failed)?;
            for item in page.items() {
                if let (Some(AttributeValue::S(session)), Some(AttributeValue::N(at))) =
                    (item.get("sk"), item.get("at"))
                {
                    due.push((session.clone(), at.parse().unwrap_or_default()));
                }
            }
            match page.last_evaluated_key {
                Some(key) => start = Some(key),
                None => return Ok(due),
            }
        }
    }

    async fn archived(&self, session: &str, at_ms: i64) -> Result<(), ArchiveError> {
        let result = self
            .client
            .delete_item()
            .table_name(&self.table)
            .key("pk", AttributeValue::S(PK.into()))
            .key("sk", AttributeValue::S(session.into()))
            .condition_expression("attribute_not_exists(#at) OR #at <= :at")
            .expression_attribute_names("#at", "at")
            .expression_attribute_values(":at", AttributeValue::N(at_ms.to_string()))
            .send()
            .await;
        match result {
            // A lost condition means activity arrived since: it stays due.
            Err(e)
                if !e
                    .as_service_error()
                    .is_some_and(|e| e.is_conditional_check_failed_exception()) =>
            {
                Err(failed(DisplayErrorContext(e)))
            }
            _ => Ok(()),
        }
    }
}
