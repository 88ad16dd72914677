//! The judge on AWS: its endpoints (OpenAI-compatible ones with a key from the
//! environment or Secrets Manager, and Amazon Bedrock in the function's region), and the
//! job wired onto the stack's adapters.

use std::sync::Arc;

use agentwire_judge::config::{EndpointConfig, EndpointKind};
use agentwire_judge::job::{Endpoints, JudgeJob, openai_endpoint};
use agentwire_judge::{EndpointError, ModelEndpoint, Resilient};
use agentwire_session::SystemClock;
use async_trait::async_trait;

use crate::Stack;

/// Endpoints reachable from Lambda.
pub struct AwsEndpoints {
    sdk: aws_config::SdkConfig,
}

/// On AWS a key named by `api_key_env` must be in a variable under this prefix, so a
/// tenant's file can never send the function's own credentials to its endpoint.
pub const KEY_ENV_PREFIX: &str = "AGENTWIRE_JUDGE_KEY";

/// A tenant's `api_key_secret` must be under `agentwire/judge/<tenant>/`: no tenant can
/// name another's key.
pub fn secret_prefix(tenant: &str) -> String {
    format!("agentwire/judge/{tenant}/")
}

#[async_trait]
impl Endpoints for AwsEndpoints {
    async fn endpoint(
        &self,
        tenant: &str,
        config: &EndpointConfig,
    ) -> Result<Arc<dyn ModelEndpoint>, EndpointError> {
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
                    (Some(var), _) => {
                        if !var.starts_with(KEY_ENV_PREFIX) {
                            return Err(EndpointError::Config(format!(
                                "api_key_env {var}: on AWS the key must be in a variable named {KEY_ENV_PREFIX}…"
                            )));
                        }
                        Some(std::env::var(var).map_err(|_| {
                            EndpointError::Config(format!("environment variable {var} is not set"))
                        })?)
                    }
                    (None, Some(id)) => {
                        let prefix = secret_prefix(tenant);
                        if !id.starts_with(&prefix) {
                            return Err(EndpointError::Config(format!(
                                "api_key_secret {id}: a tenant's secrets are under {prefix}"
                            )));
                        }
                        Some(self.secret(id).await?)
                    }
                    (None, None) => None,
                };
                openai_endpoint(config, key)
            }
        }
    }
}

impl AwsEndpoints {
    /// The secret's string: the key itself, never logged. A secret that does not exist
    /// or is not readable is the configuration's fault; anything else may pass.
    async fn secret(&self, id: &str) -> Result<String, EndpointError> {
        let found = aws_sdk_secretsmanager::Client::new(&self.sdk)
            .get_secret_value()
            .secret_id(id)
            .send()
            .await
            .map_err(|e| {
                let refused = e.as_service_error().is_some_and(|s| {
                    s.is_resource_not_found_exception() || s.is_invalid_request_exception()
                }) || e.raw_response().is_some_and(|r| r.status().as_u16() == 403);
                let message = format!(
                    "api_key_secret {id}: {}",
                    aws_sdk_secretsmanager::error::DisplayErrorContext(e)
                );
                if refused {
                    EndpointError::Config(message)
                } else {
                    EndpointError::Transport(message)
                }
            })?;
        found.secret_string().map(str::to_owned).ok_or_else(|| {
            EndpointError::Config(format!(
                "api_key_secret {id}: the secret has no string value"
            ))
        })
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
