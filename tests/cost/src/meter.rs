//! Counts every AWS request the adapters make, through the SDK's own interceptor hook:
//! operations by name, DynamoDB capacity units as the engine reports them, and the
//! 32 KB units of WebSocket pushes.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use aws_sdk_dynamodb::config::interceptors::{
    AfterDeserializationInterceptorContextRef, BeforeSerializationInterceptorContextMut,
    BeforeTransmitInterceptorContextRef,
};
use aws_sdk_dynamodb::config::{ConfigBag, Intercept, RuntimeComponents};
use aws_sdk_dynamodb::operation as op;
use aws_sdk_dynamodb::types::{ConsumedCapacity, ReturnConsumedCapacity};
use aws_smithy_runtime_api::box_error::BoxError;
use aws_smithy_runtime_api::client::orchestrator::Metadata;

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
pub struct Meter {
    counts: Arc<Mutex<Counts>>,
    /// What to multiply a transaction's reported units by to get AWS's bill: AWS charges
    /// transactions twice over ("2 units per item"); DynamoDB Local 3.x reports plain
    /// units, 2.x reported them doubled. Set by [`Meter::calibrate`].
    transaction_factor: Arc<Mutex<Option<f64>>>,
}

impl Meter {
    pub fn take(&self) -> Counts {
        std::mem::take(&mut *self.counts.lock().expect("meter"))
    }

    /// `reported`: the units the engine reported for a one-item transaction of a small
    /// item, which AWS bills as 2.
    pub fn calibrate(&self, reported: f64) -> anyhow::Result<()> {
        anyhow::ensure!(
            reported == 1.0 || reported == 2.0,
            "a one-item transaction reported {reported} units; expected 1 or 2"
        );
        *self.transaction_factor.lock().expect("meter") = Some(2.0 / reported);
        Ok(())
    }

    fn transaction_factor(&self) -> f64 {
        self.transaction_factor
            .lock()
            .expect("meter")
            .expect("Meter::calibrate runs before any transaction is metered")
    }

    fn with(&self, f: impl FnOnce(&mut Counts)) {
        f(&mut self.counts.lock().expect("meter"))
    }
}

/// Asks DynamoDB for the capacity each request consumed.
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

fn all_units(capacity: &[ConsumedCapacity]) -> f64 {
    capacity.iter().map(|c| units(Some(c))).sum()
}

impl Intercept for Meter {
    fn name(&self) -> &'static str {
        "agentwire-cost-meter"
    }

    fn modify_before_serialization(
        &self,
        context: &mut BeforeSerializationInterceptorContextMut<'_>,
        _: &RuntimeComponents,
        _: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        let input = context.input_mut();
        ask_capacity!(
            input,
            op::put_item::PutItemInput,
            op::update_item::UpdateItemInput,
            op::delete_item::DeleteItemInput,
            op::get_item::GetItemInput,
            op::query::QueryInput,
            op::batch_write_item::BatchWriteItemInput,
            op::transact_write_items::TransactWriteItemsInput,
            op::transact_get_items::TransactGetItemsInput
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
        _: &mut ConfigBag,
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
            (all_units(o.consumed_capacity()), 0.0)
        } else if let Some(o) =
            output.downcast_ref::<op::transact_write_items::TransactWriteItemsOutput>()
        {
            (
                self.transaction_factor() * all_units(o.consumed_capacity()),
                0.0,
            )
        } else if let Some(o) = output.downcast_ref::<op::get_item::GetItemOutput>() {
            (0.0, units(o.consumed_capacity()))
        } else if let Some(o) = output.downcast_ref::<op::query::QueryOutput>() {
            (0.0, units(o.consumed_capacity()))
        } else if let Some(o) =
            output.downcast_ref::<op::transact_get_items::TransactGetItemsOutput>()
        {
            (
                0.0,
                self.transaction_factor() * all_units(o.consumed_capacity()),
            )
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
