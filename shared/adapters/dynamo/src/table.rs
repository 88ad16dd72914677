//! Table creation for local engines and tests: every agentwire table has the same key.

use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::error::DisplayErrorContext;
use aws_sdk_dynamodb::types::{
    AttributeDefinition, BillingMode, KeySchemaElement, KeyType, ScalarAttributeType,
};

/// Creates `table` (string `pk` hash key and `sk` range key, pay per request) unless it
/// exists; true when it was created. The error names what failed.
pub async fn ensure_pk_sk_table(client: &Client, table: &str) -> Result<bool, String> {
    if client
        .describe_table()
        .table_name(table)
        .send()
        .await
        .is_ok()
    {
        return Ok(false);
    }
    let failed = |e: &dyn std::fmt::Display| format!("dynamodb: creating table {table}: {e}");
    let key = |name: &str, kind| {
        KeySchemaElement::builder()
            .attribute_name(name)
            .key_type(kind)
            .build()
            .map_err(|e| failed(&e))
    };
    let attribute = |name: &str| {
        AttributeDefinition::builder()
            .attribute_name(name)
            .attribute_type(ScalarAttributeType::S)
            .build()
            .map_err(|e| failed(&e))
    };
    client
        .create_table()
        .table_name(table)
        .billing_mode(BillingMode::PayPerRequest)
        .key_schema(key("pk", KeyType::Hash)?)
        .key_schema(key("sk", KeyType::Range)?)
        .attribute_definitions(attribute("pk")?)
        .attribute_definitions(attribute("sk")?)
        .send()
        .await
        .map_err(|e| failed(&DisplayErrorContext(e)))?;
    Ok(true)
}
