//! The [`ConnectionRegistry`] on DynamoDB: API Gateway's connections and what they follow,
//! shared by every Lambda instance.
//!
//! One table (`pk`, `sk`, TTL on `expires_at`):
//!
//! | item | `pk` | `sk` | attributes |
//! |---|---|---|---|
//! | connection | `conn#<id>` | `meta` | `claims` (JSON), `at` (connected, ms) |
//! | its subscription | `conn#<id>` | `sub#<session>` | |
//! | a session's subscriber | `sess#<session>` | `<id>` | `user`, `exp` (token expiry, s) |
//! | a user's announced presence | `pres#<session>` | `<user>` | `present` (BOOL), `joined_at` (ms) |
//!
//! `exp` on subscriber items lets the fan-out skip expired tokens without reading each
//! connection; items written before it existed lack it, and the fan-out then reads the
//! connection item instead (they are gone within 2 h 15 min anyway). Presence items hold
//! what the session's log says about a user ([`Announce`]), changed only by conditional
//! updates, so concurrent subscribes announce one join, and concurrent leaves one leave.
//!
//! Every item expires with its connection: API Gateway closes a connection after 2 hours,
//! and a connection whose `$disconnect` never ran must not linger. TTL deletion lags, so
//! reads skip expired items themselves.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use agentwire_realtime::{
    Announce, Connection, ConnectionRegistry, Disconnected, Member, PRESENCE_WINDOW_MS,
    RegistryError, Subscriber, Subscription,
};
use agentwire_session::{Clock, SystemClock};
use async_trait::async_trait;
use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError;
use aws_sdk_dynamodb::operation::update_item::UpdateItemError;
use aws_sdk_dynamodb::types::{
    AttributeValue, ConditionCheck, DeleteRequest, Put, ReturnValue, TimeToLiveSpecification,
    TransactWriteItem, WriteRequest,
};
use tracing::instrument;

/// How long API Gateway keeps a WebSocket connection open.
pub const CONNECTION_LIFETIME_SECS: i64 = 2 * 3600;
/// Items outlive the connection a little, so the `$disconnect` API Gateway sends at the
/// 2 h mark still finds them (and announces the leave).
const GRACE_SECS: i64 = 15 * 60;
/// The TTL attribute (Unix seconds).
const EXPIRES_AT: &str = "expires_at";

type Item = HashMap<String, AttributeValue>;

/// Connections and subscriptions in one DynamoDB table.
pub struct DynamoConnectionRegistry {
    client: Client,
    table: String,
    clock: Arc<dyn Clock>,
}

fn failed(e: impl std::fmt::Display) -> RegistryError {
    RegistryError(format!("dynamodb: {e}"))
}

fn s(value: impl Into<String>) -> AttributeValue {
    AttributeValue::S(value.into())
}

fn key(pk: String, sk: String) -> Item {
    HashMap::from([("pk".to_owned(), s(pk)), ("sk".to_owned(), s(sk))])
}

fn text<'a>(item: &'a Item, name: &str) -> Option<&'a str> {
    match item.get(name) {
        Some(AttributeValue::S(v)) => Some(v),
        _ => None,
    }
}

impl DynamoConnectionRegistry {
    pub fn new(client: Client, table: impl Into<String>) -> DynamoConnectionRegistry {
        DynamoConnectionRegistry {
            client,
            table: table.into(),
            clock: Arc::new(SystemClock),
        }
    }

    /// The same registry, telling time (TTLs, presence's rate limit) by `clock`.
    pub fn with_clock(mut self, clock: Arc<dyn Clock>) -> DynamoConnectionRegistry {
        self.clock = clock;
        self
    }

    /// Creates the table with TTL on `expires_at` if it does not exist; for local engines.
    pub async fn ensure_table(&self) -> Result<(), RegistryError> {
        if !crate::table::ensure_pk_sk_table(&self.client, &self.table)
            .await
            .map_err(RegistryError)?
        {
            return Ok(());
        }
        let ttl = TimeToLiveSpecification::builder()
            .attribute_name(EXPIRES_AT)
            .enabled(true)
            .build()
            .map_err(failed)?;
        self.client
            .update_time_to_live()
            .table_name(&self.table)
            .time_to_live_specification(ttl)
            .send()
            .await
            .map_err(failed)?;
        Ok(())
    }

    fn now_secs(&self) -> i64 {
        self.clock.now_ms() / 1000
    }

    fn live(&self, item: &Item) -> bool {
        match item.get(EXPIRES_AT) {
            Some(AttributeValue::N(at)) => at.parse::<i64>().is_ok_and(|at| at > self.now_secs()),
            _ => true,
        }
    }

    /// Every live item under `pk`, read consistently.
    async fn query(&self, pk: String) -> Result<Vec<Item>, RegistryError> {
        let mut items = Vec::new();
        let mut start = None;
        loop {
            let page = self
                .client
                .query()
                .table_name(&self.table)
                .key_condition_expression("pk = :pk")
                .expression_attribute_values(":pk", s(&pk))
                .consistent_read(true)
                .set_exclusive_start_key(start.take())
                .send()
                .await
                .map_err(failed)?;
            items.extend(
                page.items
                    .unwrap_or_default()
                    .into_iter()
                    .filter(|i| self.live(i)),
            );
            match page.last_evaluated_key {
                Some(key) => start = Some(key),
                None => return Ok(items),
            }
        }
    }

    /// The connection's item, if it is live.
    async fn connection_item(&self, connection_id: &str) -> Result<Option<Item>, RegistryError> {
        let found = self
            .client
            .get_item()
            .table_name(&self.table)
            .set_key(Some(key(format!("conn#{connection_id}"), "meta".into())))
            .consistent_read(true)
            .send()
            .await
            .map_err(failed)?;
        Ok(found.item.filter(|item| self.live(item)))
    }

    fn connection_of(item: &Item, id: &str) -> Result<Connection, RegistryError> {
        let claims = text(item, "claims")
            .and_then(|json| serde_json::from_str(json).ok())
            .ok_or_else(|| RegistryError(format!("connection {id} has no valid claims")))?;
        let connected_at_ms = match item.get("at") {
            Some(AttributeValue::N(at)) => at.parse().unwrap_or_default(),
            _ => 0,
        };
        Ok(Connection {
            id: id.to_owned(),
            claims,
            connected_at_ms,
        })
    }

    /// Brings what the log says about `user` in `session` in line with the live
    /// subscriptions (read after the caller's write, so of two racing changes at least
    /// one sees the other), within the rate limit; returns what to append.
    async fn reconcile(
        &self,
        session: &str,
        user: &str,
    ) -> Result<Option<Announce>, RegistryError> {
        let present = self
            .query(format!("sess#{session}"))
            .await?
            .iter()
            .any(|item| text(item, "user").unwrap_or("anonymous") == user);
        let now_ms = self.clock.now_ms();
        let now_s = now_ms / 1000;
        let update = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(key(format!("pres#{session}"), user.to_owned())))
            .expression_attribute_names("#p", "present")
            .expression_attribute_names("#e", EXPIRES_AT)
            .expression_attribute_values(":t", AttributeValue::Bool(true))
            .expression_attribute_values(":now", AttributeValue::N(now_s.to_string()))
            .expression_attribute_values(
                ":exp",
                AttributeValue::N((now_s + CONNECTION_LIFETIME_SECS + GRACE_SECS).to_string()),
            );
        let (update, announce) = if present {
            // Not announced (or expired), and no join announced within the window.
            let update = update
                .expression_attribute_names("#j", "joined_at")
                .expression_attribute_values(":f", AttributeValue::Bool(false))
                .expression_attribute_values(":at", AttributeValue::N(now_ms.to_string()))
                .expression_attribute_values(
                    ":cutoff",
                    AttributeValue::N((now_ms - PRESENCE_WINDOW_MS).to_string()),
                )
                .update_expression("SET #p = :t, #j = :at, #e = :exp")
                .condition_expression(
                    "attribute_not_exists(pk) OR #e <= :now OR (#p = :f AND #j <= :cutoff)",
                );
            (update, Announce::Join)
        } else {
            let update = update
                .expression_attribute_values(":f", AttributeValue::Bool(false))
                .update_expression("SET #p = :f, #e = :exp")
                .condition_expression("#p = :t AND #e > :now");
            (update, Announce::Leave)
        };
        match update.send().await {
            Ok(_) => Ok(Some(announce)),
            Err(e)
                if e.as_service_error()
                    .is_some_and(UpdateItemError::is_conditional_check_failed_exception) =>
            {
                Ok(None)
            }
            Err(e) => Err(failed(aws_sdk_dynamodb::error::DisplayErrorContext(e))),
        }
    }

    async fn delete_all(&self, keys: Vec<Item>) -> Result<(), RegistryError> {
        for chunk in keys.chunks(25) {
            let mut requests: Vec<WriteRequest> = chunk
                .iter()
                .map(|key| {
                    let delete = DeleteRequest::builder()
                        .set_key(Some(key.clone()))
                        .build()
                        .map_err(failed)?;
                    Ok(WriteRequest::builder().delete_request(delete).build())
                })
                .collect::<Result<_, RegistryError>>()?;
            // BatchWriteItem may hand back what it could not write yet.
            for _ in 0..8 {
                if requests.is_empty() {
                    break;
                }
                let out = self
                    .client
                    .batch_write_item()
                    .request_items(&self.table, requests)
                    .send()
                    .await
                    .map_err(failed)?;
                requests = out
                    .unprocessed_items
                    .and_then(|mut left| left.remove(&self.table))
                    .unwrap_or_default();
            }
        }
        Ok(())
    }
}

#[async_trait]
impl ConnectionRegistry for DynamoConnectionRegistry {
    #[instrument(skip_all, fields(connection = %connection.id))]
    async fn connect(&self, connection: Connection) -> Result<(), RegistryError> {
        let claims = serde_json::to_string(&connection.claims).map_err(failed)?;
        let expires_at = connection.connected_at_ms / 1000 + CONNECTION_LIFETIME_SECS + GRACE_SECS;
        let mut item = key(format!("conn#{}", connection.id), "meta".into());
        item.insert("claims".into(), s(claims));
        item.insert(
            "at".into(),
            AttributeValue::N(connection.connected_at_ms.to_string()),
        );
        item.insert(EXPIRES_AT.into(), AttributeValue::N(expires_at.to_string()));
        self.client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(item))
            .send()
            .await
            .map_err(failed)?;
        Ok(())
    }

    #[instrument(skip_all, fields(connection = %connection_id))]
    async fn disconnect(&self, connection_id: &str) -> Result<Option<Disconnected>, RegistryError> {
        let items = self.query(format!("conn#{connection_id}")).await?;
        let connection = match items.iter().find(|i| text(i, "sk") == Some("meta")) {
            Some(meta) => Some(Self::connection_of(meta, connection_id)?),
            None => None,
        };
        let sessions: Vec<String> = items
            .iter()
            .filter_map(|i| text(i, "sk")?.strip_prefix("sub#").map(str::to_owned))
            .collect();
        let mut keys: Vec<Item> = sessions
            .iter()
            .map(|session| key(format!("sess#{session}"), connection_id.to_owned()))
            .collect();
        keys.extend(
            items
                .iter()
                .filter_map(|i| Some(key(text(i, "pk")?.to_owned(), text(i, "sk")?.to_owned()))),
        );
        // Even without its connection item (a subscribe that raced a `$disconnect`), the
        // subscriptions go, or pushes would keep finding a ghost.
        self.delete_all(keys).await?;
        let Some(connection) = connection else {
            return Ok(None);
        };
        let user = connection
            .claims
            .user
            .clone()
            .unwrap_or_else(|| "anonymous".into());
        let mut leaves = Vec::new();
        for session in &sessions {
            if self.reconcile(session, &user).await? == Some(Announce::Leave) {
                leaves.push(session.clone());
            }
        }
        Ok(Some(Disconnected {
            connection,
            sessions,
            leaves,
        }))
    }

    async fn get(&self, connection_id: &str) -> Result<Option<Connection>, RegistryError> {
        match self.connection_item(connection_id).await? {
            Some(item) => Self::connection_of(&item, connection_id).map(Some),
            None => Ok(None),
        }
    }

    #[instrument(skip_all, fields(connection = %connection_id, session = %session))]
    async fn subscribe(
        &self,
        connection_id: &str,
        session: &str,
    ) -> Result<Subscription, RegistryError> {
        let Some(item) = self.connection_item(connection_id).await? else {
            return Err(RegistryError(format!("unknown connection {connection_id}")));
        };
        let connection = Self::connection_of(&item, connection_id)?;
        let token_exp = connection.claims.exp;
        let user = connection.claims.user.unwrap_or_else(|| "anonymous".into());
        // Subscriptions expire with their connection.
        let expires_at = match item.get(EXPIRES_AT) {
            Some(AttributeValue::N(at)) => at.clone(),
            _ => (self.now_secs() + CONNECTION_LIFETIME_SECS + GRACE_SECS).to_string(),
        };
        let mut subscription = key(format!("conn#{connection_id}"), format!("sub#{session}"));
        subscription.insert(EXPIRES_AT.into(), AttributeValue::N(expires_at.clone()));
        let mut subscriber = key(format!("sess#{session}"), connection_id.to_owned());
        subscriber.insert("user".into(), s(user.clone()));
        subscriber.insert("exp".into(), AttributeValue::N(token_exp.to_string()));
        subscriber.insert(EXPIRES_AT.into(), AttributeValue::N(expires_at));
        // The connection must still exist, and the subscription must be new: both or neither.
        let still_connected = ConditionCheck::builder()
            .table_name(&self.table)
            .set_key(Some(key(format!("conn#{connection_id}"), "meta".into())))
            .condition_expression("attribute_exists(pk)")
            .build()
            .map_err(failed)?;
        let new_subscription = Put::builder()
            .table_name(&self.table)
            .set_item(Some(subscription))
            .condition_expression("attribute_not_exists(pk)")
            .build()
            .map_err(failed)?;
        let listed = Put::builder()
            .table_name(&self.table)
            .set_item(Some(subscriber))
            .build()
            .map_err(failed)?;
        let result = self
            .client
            .transact_write_items()
            .transact_items(
                TransactWriteItem::builder()
                    .condition_check(still_connected)
                    .build(),
            )
            .transact_items(TransactWriteItem::builder().put(new_subscription).build())
            .transact_items(TransactWriteItem::builder().put(listed).build())
            .send()
            .await;
        let changed = match result {
            Ok(_) => true,
            Err(e) => {
                let reasons: Vec<Option<String>> = e
                    .as_service_error()
                    .and_then(|e| match e {
                        TransactWriteItemsError::TransactionCanceledException(c) => Some(c),
                        _ => None,
                    })
                    .map(|c| {
                        c.cancellation_reasons()
                            .iter()
                            .map(|r| r.code.clone())
                            .collect()
                    })
                    .unwrap_or_default();
                let failed_check = |i: usize| {
                    reasons.get(i).and_then(|c| c.as_deref()) == Some("ConditionalCheckFailed")
                };
                if failed_check(0) {
                    return Err(RegistryError(format!("unknown connection {connection_id}")));
                } else if failed_check(1) {
                    false
                } else {
                    return Err(failed(aws_sdk_dynamodb::error::DisplayErrorContext(e)));
                }
            }
        };
        let announce = self.reconcile(session, &user).await?;
        Ok(Subscription { changed, announce })
    }

    #[instrument(skip_all, fields(connection = %connection_id, session = %session))]
    async fn unsubscribe(
        &self,
        connection_id: &str,
        session: &str,
    ) -> Result<Subscription, RegistryError> {
        let removed = self
            .client
            .delete_item()
            .table_name(&self.table)
            .set_key(Some(key(
                format!("conn#{connection_id}"),
                format!("sub#{session}"),
            )))
            .return_values(ReturnValue::AllOld)
            .send()
            .await
            .map_err(failed)?;
        let listed = self
            .client
            .delete_item()
            .table_name(&self.table)
            .set_key(Some(key(
                format!("sess#{session}"),
                connection_id.to_owned(),
            )))
            .return_values(ReturnValue::AllOld)
            .send()
            .await
            .map_err(failed)?;
        let changed = removed.attributes.is_some_and(|old| self.live(&old));
        // The user is on the subscriber item; without one there was nothing to leave.
        let announce = match listed.attributes.as_ref() {
            Some(old) => {
                let user = text(old, "user").unwrap_or("anonymous").to_owned();
                self.reconcile(session, &user).await?
            }
            None => None,
        };
        Ok(Subscription { changed, announce })
    }

    async fn subscribers(&self, session: &str) -> Result<Vec<Subscriber>, RegistryError> {
        Ok(self
            .query(format!("sess#{session}"))
            .await?
            .iter()
            .filter_map(|i| {
                let token_exp = match i.get("exp") {
                    Some(AttributeValue::N(exp)) => exp.parse().ok(),
                    _ => None,
                };
                Some(Subscriber {
                    id: text(i, "sk")?.to_owned(),
                    token_exp,
                })
            })
            .collect())
    }

    async fn subscriptions(&self, connection_id: &str) -> Result<Vec<String>, RegistryError> {
        Ok(self
            .query(format!("conn#{connection_id}"))
            .await?
            .iter()
            .filter_map(|i| text(i, "sk")?.strip_prefix("sub#").map(str::to_owned))
            .collect())
    }

    async fn presence(&self, session: &str) -> Result<Vec<Member>, RegistryError> {
        let mut users: BTreeMap<String, usize> = BTreeMap::new();
        for item in self.query(format!("sess#{session}")).await? {
            let user = text(&item, "user").unwrap_or("anonymous").to_owned();
            *users.entry(user).or_default() += 1;
        }
        Ok(users
            .into_iter()
            .map(|(user, connections)| Member { user, connections })
            .collect())
    }
}
