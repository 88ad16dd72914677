//! The judge on AWS: its endpoints (OpenAI-compatible ones with a key from the
//! environment or Secrets Manager, and Amazon Bedrock in the function's region), and the
//! job wired onto the stack's adapters.

use std::sync::Arc;

use agentwire_judge::config::{EndpointConfig, EndpointKind};
use agentwire_judge::job::{Endpoints, JudgeJob, openai_endpoint};
use agentwire_judge::{ModelEndpoint, Resilient};
use agentwire_session::SystemClock;
use async_trait::async_trait;

use crate::Stack;

/// Endpoints reachable from Lambda.
pub struct AwsEndpoints {
    sdk: aws_config::SdkConfig,
}

#[async_trait]
impl Endpoints for AwsEndpoints {
    async fn endpoint(&self, config: &EndpointConfig) -> Result<Arc<dyn ModelEndpoint>, String> {
        match config.kind {
            EndpointKind::Bedrock => {
                let client = aws_sdk_bedrockruntime::Client::new(&self.sdk);
                Ok(Arc::new(Resilient::new(
                    Arc::new(agentwire_bedrock::BedrockEndpoint::new(client)),
                    config.retry_policy(),
                    config.concurrency,
                )))
            }
            EndpointKind::Openai => {
                let key = match (&config.api_key_env, &config.api_key_secret) {
                    (Some(var), _) => Some(
                        std::env::var(var)
                            .map_err(|_| format!("environment variable {var} is not set"))?,
                    ),
                    (None, Some(id)) => Some(self.secret(id).await?),
                    (None, None) => None,
                };
                openai_endpoint(config, key)
            }
        }
    }
}

impl AwsEndpoints {
    /// The secret's string: the key itself, never logged.
    async fn secret(&self, id: &str) -> Result<String, String> {
        let found = aws_sdk_secretsmanager::Client::new(&self.sdk)
            .get_secret_value()
            .secret_id(id)
            .send()
            .await
            .map_err(|e| {
                format!(
                    "api_key_secret {id}: {}",
                    aws_sdk_secretsmanager::error::DisplayErrorContext(e)
                )
            })?;
        found
            .secret_string()
            .map(str::to_owned)
            .ok_or_else(|| format!("api_key_secret {id}: the secret has no string value"))
    }
}

impl Stack {
    /// How the judge reaches tenants' endpoints from here.
    pub fn judge_endpoints(&self) -> Arc<dyn Endpoints> {
        Arc::new(AwsEndpoints {
            sdk: self.sdk.clone(),
        })
    }

    /// The judge job on the stack's archive, score index, grading store and budget.
    pub fn judge(&self) -> Arc<JudgeJob> {
        Arc::new(JudgeJob::new(
            self.scorer(),
            self.trace_archive(),
            self.scores.clone(),
            self.grading.clone(),
            self.budget.clone(),
            self.judge_endpoints(),
            Arc::new(SystemClock),
        ))
    }
}
