//! The judge's [`BudgetLedger`] in the session table (layout in `DESIGN.md`): one item per
//! tenant and day, `pk = budget#<tenant>`, `sk = <day>`, holding the tokens and
//! micro-dollars spent. A reservation is one conditional `UpdateItem` that adds the charge
//! only while the totals after it stay within the caps: DynamoDB evaluates the condition
//! and the addition atomically, so no number of judges in any number of Lambdas can spend
//! past a cap.

use std::time::Duration;

use agentwire_scoring::budget::{BudgetLedger, Caps, Charge, LedgerError};
use agentwire_session::path::encode_segment;
use async_trait::async_trait;
use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::error::{DisplayErrorContext, SdkError};
use aws_sdk_dynamodb::operation::update_item::UpdateItemError;
use aws_sdk_dynamodb::operation::update_item::builders::UpdateItemFluentBuilder;
use aws_sdk_dynamodb::types::AttributeValue;
use tracing::instrument;

use crate::item::Item;

const TOKENS: &str = "tokens";
const MICRO_USD: &str = "micro_usd";
/// Attempts of a release that has to clamp at zero and keeps losing races.
const MAX_ATTEMPTS: u32 = 20;

/// Each tenant's daily judge spend, in the session table.
pub struct DynamoBudgetLedger {
    client: Client,
    table: String,
}

fn failed(e: impl std::fmt::Display) -> LedgerError {
    LedgerError(format!("dynamodb: {e}"))
}

fn num(value: impl ToString) -> AttributeValue {
    AttributeValue::N(value.to_string())
}

fn budget_pk(tenant: &str) -> String {
    format!("budget#{}", encode_segment(tenant))
}

/// An amount as stored. DynamoDB numbers hold 38 digits, so unconditional adds can pass
/// `u64::MAX`; such a total reads as `u64::MAX`.
fn amount(item: &Item, name: &str) -> Result<u64, LedgerError> {
    match item.get(name) {
        None => Ok(0),
        Some(AttributeValue::N(v)) => match v.parse::<u64>() {
            Ok(value) => Ok(value),
            Err(_) if !v.is_empty() && v.bytes().all(|b| b.is_ascii_digit()) => Ok(u64::MAX),
            Err(_) => Err(failed(format!("a budget item's {name} is not a count"))),
        },
        Some(_) => Err(failed(format!("a budget item's {name} is not a number"))),
    }
}

fn is_condition_failed(e: &SdkError<UpdateItemError, impl std::fmt::Debug>) -> bool {
    e.as_service_error()
        .is_some_and(UpdateItemError::is_conditional_check_failed_exception)
}

/// Backs off a little between attempts that lost a race, so racers spread out.
async fn contend(attempt: u32) {
    let ceiling = 2u64 << attempt.min(6);
    tokio::time::sleep(Duration::from_millis(fastrand::u64(0..ceiling))).await;
}

impl DynamoBudgetLedger {
    /// The ledger in `table`, the session table (made by
    /// [`crate::DynamoSessionLog::ensure_table`] locally, by the template on AWS).
    pub fn new(client: Client, table: impl Into<String>) -> DynamoBudgetLedger {
        DynamoBudgetLedger {
            client,
            table: table.into(),
        }
    }

    /// An `UpdateItem` of the day's item, with `#t` and `#u` naming its amounts.
    fn update(&self, tenant: &str, day: &str) -> UpdateItemFluentBuilder {
        self.client
            .update_item()
            .table_name(&self.table)
            .key("pk", AttributeValue::S(budget_pk(tenant)))
            .key("sk", AttributeValue::S(day.to_owned()))
            .expression_attribute_names("#t", TOKENS)
            .expression_attribute_names("#u", MICRO_USD)
    }

    /// The day's item, read consistently.
    async fn item(&self, tenant: &str, day: &str) -> Result<Option<Item>, LedgerError> {
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .key("pk", AttributeValue::S(budget_pk(tenant)))
            .key("sk", AttributeValue::S(day.to_owned()))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| failed(DisplayErrorContext(e)))?;
        Ok(out.item)
    }

    /// Sets the day's spend to `refund` less than it is, clamped at zero per unit: a read,
    /// then a write conditioned on the values read (a reservation in between makes it read
    /// again).
    async fn release_clamped(
        &self,
        tenant: &str,
        day: &str,
        refund: Charge,
    ) -> Result<(), LedgerError> {
        for attempt in 0..MAX_ATTEMPTS {
            let Some(item) = self.item(tenant, day).await? else {
                return Ok(());
            };
            let mut request = self.update(tenant, day);
            let mut sets = Vec::new();
            let mut unchanged = Vec::new();
            for (attribute, name, refund) in [
                (TOKENS, "t", refund.tokens),
                (MICRO_USD, "u", refund.micro_usd),
            ] {
                let spent = amount(&item, attribute)?;
                let left = spent.saturating_sub(refund);
                sets.push(format!("#{name} = :{name}"));
                request = request.expression_attribute_values(format!(":{name}"), num(left));
                match item.get(attribute) {
                    Some(old) => {
                        unchanged.push(format!("#{name} = :old_{name}"));
                        request = request
                            .expression_attribute_values(format!(":old_{name}"), old.clone());
                    }
                    None => unchanged.push(format!("attribute_not_exists(#{name})")),
                }
            }
            let result = request
                .update_expression(format!("SET {}", sets.join(", ")))
                .condition_expression(unchanged.join(" AND "))
                .send()
                .await;
            match result {
                Ok(_) => return Ok(()),
                Err(e) if is_condition_failed(&e) => contend(attempt).await,
                Err(e) => return Err(failed(DisplayErrorContext(e))),
            }
        }
        Err(failed(
            "a release kept losing races with concurrent reservations",
        ))
    }
}

/// `-value`, for subtracting with `ADD`.
fn minus(value: u64) -> AttributeValue {
    match value {
        0 => num(0),
        _ => AttributeValue::N(format!("-{value}")),
    }
}

#[async_trait]
impl BudgetLedger for DynamoBudgetLedger {
    #[instrument(skip_all, fields(tenant = %tenant, day = %day))]
    async fn reserve(
        &self,
        tenant: &str,
        day: &str,
        charge: Charge,
        caps: Caps,
    ) -> Result<bool, LedgerError> {
        // Each capped unit: absent (nothing spent) or at most `cap - charge` before the add.
        let mut conditions = Vec::new();
        let mut request = self
            .update(tenant, day)
            .update_expression("ADD #t :t, #u :u")
            .expression_attribute_values(":t", num(charge.tokens))
            .expression_attribute_values(":u", num(charge.micro_usd));
        for (cap, more, name, max) in [
            (caps.tokens, charge.tokens, "#t", ":tmax"),
            (caps.micro_usd, charge.micro_usd, "#u", ":umax"),
        ] {
            let Some(cap) = cap else { continue };
            let Some(room) = cap.checked_sub(more) else {
                return Ok(false);
            };
            conditions.push(format!("(attribute_not_exists({name}) OR {name} <= {max})"));
            request = request.expression_attribute_values(max, num(room));
        }
        if !conditions.is_empty() {
            request = request.condition_expression(conditions.join(" AND "));
        }
        match request.send().await {
            Ok(_) => Ok(true),
            Err(e) if is_condition_failed(&e) => Ok(false),
            Err(e) => Err(failed(DisplayErrorContext(e))),
        }
    }

    #[instrument(skip_all, fields(tenant = %tenant, day = %day))]
    async fn release(&self, tenant: &str, day: &str, refund: Charge) -> Result<(), LedgerError> {
        if refund == Charge::default() {
            return Ok(());
        }
        // The usual case, a refund of part of a reservation: one conditional subtraction.
        let result = self
            .update(tenant, day)
            .update_expression("ADD #t :t, #u :u")
            .condition_expression("#t >= :rt AND #u >= :ru")
            .expression_attribute_values(":t", minus(refund.tokens))
            .expression_attribute_values(":u", minus(refund.micro_usd))
            .expression_attribute_values(":rt", num(refund.tokens))
            .expression_attribute_values(":ru", num(refund.micro_usd))
            .send()
            .await;
        match result {
            Ok(_) => Ok(()),
            // A unit would go below zero (or nothing was spent): clamp it.
            Err(e) if is_condition_failed(&e) => self.release_clamped(tenant, day, refund).await,
            Err(e) => Err(failed(DisplayErrorContext(e))),
        }
    }

    #[instrument(skip_all, fields(tenant = %tenant, day = %day))]
    async fn add(&self, tenant: &str, day: &str, extra: Charge) -> Result<(), LedgerError> {
        self.update(tenant, day)
            .update_expression("ADD #t :t, #u :u")
            .expression_attribute_values(":t", num(extra.tokens))
            .expression_attribute_values(":u", num(extra.micro_usd))
            .send()
            .await
            .map_err(|e| failed(DisplayErrorContext(e)))?;
        Ok(())
    }

    #[instrument(skip_all, fields(tenant = %tenant, day = %day))]
    async fn spent(&self, tenant: &str, day: &str) -> Result<Charge, LedgerError> {
        let Some(item) = self.item(tenant, day).await? else {
            return Ok(Charge::default());
        };
        Ok(Charge {
            tokens: amount(&item, TOKENS)?,
            micro_usd: amount(&item, MICRO_USD)?,
        })
    }
}
