//! Counts every AWS request the adapters make, through the SDK's own interceptor hook:
//! operations by name, DynamoDB capacity units, and the 32 KB units of WebSocket pushes.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

use aws_sdk_dynamodb::config::interceptors::{
    AfterDeserializationInterceptorContextRef, BeforeSerializationInterceptorContextMut,
    BeforeTransmitInterceptorContextRef,
};
use aws_sdk_dynamodb::config::{ConfigBag, Intercept, RuntimeComponents};
use aws_sdk_dynamodb::operation as op;
use aws_sdk_dynamodb::types::{AttributeValue, ConsumedCapacity, ReturnConsumedCapacity};
use aws_smithy_runtime_api::box_error::BoxError;
use aws_smithy_runtime_api::client::orchestrator::Metadata;
use aws_smithy_types::config_bag::{Storable, StoreReplace};

/// What the metered clients did since the last [`Meter::take`].
#[derive(Debug, Clone, Default)]
pub struct Counts {
    /// Requests sent (retries included: they are billed), by `Service.Operation`.
    pub requests: BTreeMap<String, u64>,
    pub write_units: f64,
    pub read_units: f64,
    /// API Gateway meters messages in 32 KB increments.
    pub push_units: u64,
}

#[derive(Debug, Clone, Default)]
pub struct Meter(Arc<Mutex<Counts>>);

impl Meter {
    pub fn take(&self) -> Counts {
        std::mem::take(&mut *self.0.lock().expect("meter"))
    }

    fn with(&self, f: impl FnOnce(&mut Counts)) {
        f(&mut self.0.lock().expect("meter"))
    }
}

/// Asks DynamoDB for the capacity each plain request consumed.
macro_rules! ask_capacity {
    ($input:expr, $($ty:ty),+) => {
        $(if let Some(input) = $input.downcast_mut::<$ty>() {
            input.return_consumed_capacity = Some(ReturnConsumedCapacity::Total);
        })+
    };
}

fn units(capacity: Option<&ConsumedCapacity>) -> f64 {
    capacity.and_then(|c| c.capacity_units).unwrap_or(0.0)
}

/// Write units AWS bills for a transaction, worked out from its request. DynamoDB Local
/// reports a flat 2 units for any transaction (seen with 1, 2 and 3 items), so its figure
/// cannot be used; AWS bills 2 units per item per started KB.
#[derive(Debug, Clone, Copy)]
struct TransactionUnits(f64);

impl Storable for TransactionUnits {
    type Storer = StoreReplace<Self>;
}

/// DynamoDB's size of an item: attribute names plus values (numbers counted by their
/// text, a slight overestimate).
pub fn item_bytes(item: &HashMap<String, AttributeValue>) -> usize {
    item.iter()
        .map(|(name, value)| name.len() + value_bytes(value))
        .sum()
}

fn value_bytes(value: &AttributeValue) -> usize {
    match value {
        AttributeValue::S(s) | AttributeValue::N(s) => s.len(),
        AttributeValue::B(b) => b.as_ref().len(),
        AttributeValue::Ss(v) | AttributeValue::Ns(v) => v.iter().map(String::len).sum(),
        AttributeValue::Bs(v) => v.iter().map(|b| b.as_ref().len()).sum(),
        AttributeValue::L(v) => 3 + v.iter().map(|x| 1 + value_bytes(x)).sum::<usize>(),
        AttributeValue::M(m) => {
            3 + m
                .iter()
                .map(|(k, x)| 1 + k.len() + value_bytes(x))
                .sum::<usize>()
        }
        _ => 1,
    }
}

/// Puts count by their size; updates, deletes and condition checks here touch the small
/// metadata and producer items (under 1 KB).
fn transaction_units(input: &op::transact_write_items::TransactWriteItemsInput) -> f64 {
    let kilobytes: usize = input
        .transact_items()
        .iter()
        .map(|item| match item.put() {
            Some(put) => item_bytes(put.item()).div_ceil(1024).max(1),
            None => 1,
        })
        .sum();
    2.0 * kilobytes as f64
}

impl Intercept for Meter {
    fn name(&self) -> &'static str {
        "agentwire-cost-meter"
    }

    fn modify_before_serialization(
        &self,
        context: &mut BeforeSerializationInterceptorContextMut<'_>,
        _: &RuntimeComponents,
        cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        let input = context.input_mut();
        if let Some(tx) = input.downcast_ref::<op::transact_write_items::TransactWriteItemsInput>()
        {
            let units = TransactionUnits(transaction_units(tx));
            cfg.interceptor_state().store_put(units);
        }
        ask_capacity!(
            input,
            op::put_item::PutItemInput,
            op::update_item::UpdateItemInput,
            op::delete_item::DeleteItemInput,
            op::get_item::GetItemInput,
            op::query::QueryInput,
            op::batch_write_item::BatchWriteItemInput
        );
        Ok(())
    }

    fn read_before_transmit(
        &self,
        context: &BeforeTransmitInterceptorContextRef<'_>,
        _: &RuntimeComponents,
        cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        let name = cfg
            .load::<Metadata>()
            .map(|m| format!("{}.{}", m.service(), m.name()))
            .unwrap_or_else(|| "unknown".into());
        let push_bytes = (name.ends_with(".PostToConnection"))
            .then(|| context.request().body().bytes().map_or(0, <[u8]>::len));
        self.with(|counts| {
            *counts.requests.entry(name).or_default() += 1;
            if let Some(bytes) = push_bytes {
                counts.push_units += bytes.div_ceil(32 * 1024).max(1) as u64;
            }
        });
        Ok(())
    }

    fn read_after_deserialization(
        &self,
        context: &AfterDeserializationInterceptorContextRef<'_>,
        _: &RuntimeComponents,
        cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        let Ok(output) = context.output_or_error() else {
            return Ok(());
        };
        let (write, read) = if let Some(o) = output.downcast_ref::<op::put_item::PutItemOutput>() {
            (units(o.consumed_capacity()), 0.0)
        } else if let Some(o) = output.downcast_ref::<op::update_item::UpdateItemOutput>() {
            (units(o.consumed_capacity()), 0.0)
        } else if let Some(o) = output.downcast_ref::<op::delete_item::DeleteItemOutput>() {
            (units(o.consumed_capacity()), 0.0)
        } else if let Some(o) = output.downcast_ref::<op::batch_write_item::BatchWriteItemOutput>()
        {
            let all = o.consumed_capacity().iter().map(|c| units(Some(c))).sum();
            (all, 0.0)
        } else if output
            .downcast_ref::<op::transact_write_items::TransactWriteItemsOutput>()
            .is_some()
        {
            (cfg.load::<TransactionUnits>().map_or(0.0, |u| u.0), 0.0)
        } else if let Some(o) = output.downcast_ref::<op::get_item::GetItemOutput>() {
            (0.0, units(o.consumed_capacity()))
        } else if let Some(o) = output.downcast_ref::<op::query::QueryOutput>() {
            (0.0, units(o.consumed_capacity()))
        } else {
            return Ok(());
        };
        self.with(|counts| {
            counts.write_units += write;
            counts.read_units += read;
        });
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_sdk_dynamodb::types::{Put, TransactWriteItem, Update};

    fn s(v: &str) -> AttributeValue {
        AttributeValue::S(v.to_owned())
    }

    #[test]
    fn transactions_cost_two_units_per_item_and_started_kilobyte() {
        let small = Put::builder()
            .table_name("t")
            .item("pk", s("a"))
            .build()
            .unwrap();
        let big = Put::builder()
            .table_name("t")
            .item("pk", s("b"))
            .item("data", s(&"x".repeat(1500)))
            .build()
            .unwrap();
        let update = Update::builder()
            .table_name("t")
            .key("pk", s("meta"))
            .update_expression("SET tail = :t")
            .build()
            .unwrap();
        let input = op::transact_write_items::TransactWriteItemsInput::builder()
            .transact_items(TransactWriteItem::builder().put(small).build())
            .transact_items(TransactWriteItem::builder().put(big).build())
            .transact_items(TransactWriteItem::builder().update(update).build())
            .build()
            .unwrap();
        // 1 KB + 2 KB + 1 KB, twice over.
        assert_eq!(transaction_units(&input), 8.0);
    }

    #[test]
    fn item_size_counts_names_and_values() {
        let item = HashMap::from([
            ("pk".to_owned(), s("abc")),
            ("n".to_owned(), AttributeValue::N("42".into())),
        ]);
        assert_eq!(item_bytes(&item), 2 + 3 + 1 + 2);
    }
}
