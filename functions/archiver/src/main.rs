//! The archiver on Lambda: DynamoDB Stream batches of the session table (closes, and
//! activity for the idle sweep) and the EventBridge schedule (the sweep itself).

use agentwire_archive::ArchiverEvent;
use agentwire_aws::{Settings, Stack};
use lambda_runtime::{LambdaEvent, service_fn};
use serde_json::{Value, json};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    agentwire_aws::init_logging();
    let settings = Settings::from_env()?;
    let archiver = Stack::connect(&settings).await?.archiver(&settings);
    let archiver = &archiver;
    let handler = service_fn(move |event: LambdaEvent<Value>| async move {
        let event = ArchiverEvent::parse(event.payload)?;
        // An error fails the whole batch, so the stream retries (and bisects) it.
        let report = archiver.handle(event).await?;
        Ok::<_, lambda_runtime::Error>(json!({
            "archived": report.archived.iter().map(|a| &a.key).collect::<Vec<_>>(),
            "touched": report.touched,
        }))
    });
    lambda_runtime::run(handler)
        .await
        .map_err(|e| anyhow::anyhow!(e))
}
