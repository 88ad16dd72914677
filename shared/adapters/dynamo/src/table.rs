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

/// Like [`ensure_pk_sk_table`], with the session table's global secondary indexes, as
/// `infra/template.yaml` declares them: the `scores` listing (`spk` hash and `ssk` range
/// keys, every attribute projected) and the `keys` listing (`kpk` and `ksk`, keys only).
pub async fn ensure_session_table(client: &Client, table: &str) -> Result<bool, String> {
    ensure_table_with(
        client,
        table,
        &[
            (
                crate::scores::SCORES_INDEX,
                "spk",
                "ssk",
                ProjectionType::All,
            ),
            (KEYS_INDEX, "kpk", "ksk", ProjectionType::KeysOnly),
        ],
    )
    .await
}

/// The session table's keys-only listing index: sparse, so only items that set `kpk` (a
/// stream's meta item: its tenant's streams; a subscription with a lease or retry due:
/// the sweeper's list) are in it. Keys only, so writes that change neither key (a
/// stream's tail on every append) cost the index nothing.
pub const KEYS_INDEX: &str = "keys";

/// Whether `table` has the index `name`; the error says what to do when it does not
/// (DynamoDB Local cannot add an index to an existing table: one added by `UpdateTable`
/// stays `CREATING` and writes to the table then fail).
pub async fn require_index(client: &Client, table: &str, name: &str) -> Result<(), String> {
    let described = client
        .describe_table()
        .table_name(table)
        .send()
        .await
        .map_err(|e| {
            format!(
                "dynamodb: describing table {table}: {}",
                DisplayErrorContext(e)
            )
        })?;
    let found = described.table().is_some_and(|t| {
        t.global_secondary_indexes()
            .iter()
            .any(|i| i.index_name() == Some(name))
    });
    if found {
        return Ok(());
    }
    Err(format!(
        "table {table} has no {name} index (it was created by an older agentwire): delete it \
         or use another table name, and it is created with the index"
    ))
}

/// A table keyed like every agentwire table, with `indexes` as (name, hash, range,
/// projection) of string keys.
async fn ensure_table_with(
    client: &Client,
    table: &str,
    indexes: &[(&str, &str, &str, ProjectionType)],
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
    for (name, hash, range, projection) in indexes {
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
                            .projection_type(projection.clone())
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
