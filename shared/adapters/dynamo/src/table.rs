//! Table creation for local engines and tests: every agentwire table has the same key.

use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::error::DisplayErrorContext;
use aws_sdk_dynamodb::types::{
    AttributeDefinition, BillingMode, GlobalSecondaryIndex, KeySchemaElement, KeyType, Projection,
    ProjectionType, ScalarAttributeType,
};

/// Creates `table` (string `pk` hash key and `sk` range key, pay per request) unless it
/// exists; true when it was created. The error names what failed.
pub async fn ensure_pk_sk_table(client: &Client, table: &str) -> Result<bool, String> {
    ensure_table_with(client, table, &[]).await
}

/// Like [`ensure_pk_sk_table`], with the session table's global secondary indexes (the
/// `scores` listing: `spk` hash and `ssk` range keys, every attribute projected), as
/// `infra/template.yaml` declares them.
pub async fn ensure_session_table(client: &Client, table: &str) -> Result<bool, String> {
    ensure_table_with(
        client,
        table,
        &[(crate::scores::SCORES_INDEX, "spk", "ssk")],
    )
    .await
}

/// A table keyed like every agentwire table, with `indexes` as (name, hash, range) of
/// string keys.
async fn ensure_table_with(
    client: &Client,
    table: &str,
    indexes: &[(&str, &str, &str)],
) -> Result<bool, String> {
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
    let mut create = client
        .create_table()
        .table_name(table)
        .billing_mode(BillingMode::PayPerRequest)
        .key_schema(key("pk", KeyType::Hash)?)
        .key_schema(key("sk", KeyType::Range)?)
        .attribute_definitions(attribute("pk")?)
        .attribute_definitions(attribute("sk")?);
    for (name, hash, range) in indexes {
        create = create
            .attribute_definitions(attribute(hash)?)
            .attribute_definitions(attribute(range)?)
            .global_secondary_indexes(
                GlobalSecondaryIndex::builder()
                    .index_name(*name)
                    .key_schema(key(hash, KeyType::Hash)?)
                    .key_schema(key(range, KeyType::Range)?)
                    .projection(
                        Projection::builder()
                            .projection_type(ProjectionType::All)
                            .build(),
                    )
                    .build()
                    .map_err(|e| failed(&e))?,
            );
    }
    create
        .send()
        .await
        .map_err(|e| failed(&DisplayErrorContext(e)))?;
    Ok(true)
}
