//! The WebSocket routes on Lambda: every route goes to `Realtime::handle`, the handler the
//! local gateway calls too.

use agentwire_aws_stack::{Needs, Sends, Settings, Stack};
use aws_lambda_events::apigw::ApiGatewayWebsocketProxyRequest;
use lambda_runtime::{LambdaEvent, service_fn};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    agentwire_aws_stack::init_logging();
    let settings = Settings::from_env(Needs::API)?;
    let stack = Stack::connect_in_lambda(&settings)?;
    // Messages written over the socket wake subscriptions too; the dispatch function sends.
    let dispatch = stack.dispatch(Sends::ByChangeFeed).await?;
    let realtime = stack.realtime(stack.auth().await?, Some(&dispatch))?;
    let handler = service_fn(|event: LambdaEvent<ApiGatewayWebsocketProxyRequest>| {
        let realtime = realtime.clone();
        async move { Ok::<_, lambda_runtime::Error>(realtime.handle(event.payload).await) }
    });
    lambda_runtime::run(handler)
        .await
        .map_err(|e| anyhow::anyhow!(e))
}
