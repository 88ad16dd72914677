//! The embedding port, and its two implementations here: the local hashed TF-IDF (no
//! model, no network, no key) and any OpenAI-compatible `/v1/embeddings` endpoint. Every
//! result records which one ran ([`Embedder::name`]).

use std::time::Duration;

use async_trait::async_trait;
use serde::Deserialize;

use crate::features::{DIM, Sparse, tfidf};

/// Why texts could not be embedded, without the texts.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EmbedError {
    /// The endpoint was unreachable, slow or busy: a later run may succeed.
    #[error("embedding endpoint unavailable: {0}")]
    Unavailable(String),
    /// The endpoint refused the request or answered something else than embeddings.
    #[error("embedding endpoint: {0}")]
    Refused(String),
}

/// Turns a night's texts into feature vectors, one per text, all in one space.
#[async_trait]
pub trait Embedder: Send + Sync {
    /// What ran, as results record it.
    fn name(&self) -> String;

    /// Whether texts leave the process (and so pass the tenant's redaction first).
    fn remote(&self) -> bool;

    /// The HDBSCAN epsilon its vectors are clustered with unless a tenant sets one: how
    /// far apart rewordings of one request land depends on the embedding. Zero (HDBSCAN's
    /// own selection) unless measured otherwise.
    fn default_epsilon(&self) -> f64 {
        0.0
    }

    async fn embed(&self, texts: &[String]) -> Result<Vec<Sparse>, EmbedError>;
}

/// The local default: hashed TF-IDF over words and word pairs.
pub struct LocalTfIdf;

#[async_trait]
impl Embedder for LocalTfIdf {
    fn name(&self) -> String {
        format!("tfidf-hashed-{DIM}")
    }

    fn remote(&self) -> bool {
        false
    }

    /// Measured on tau-bench and RAGTruth (BENCHMARKS.md): see [`DEFAULT_EPSILON`].
    fn default_epsilon(&self) -> f64 {
        crate::night::DEFAULT_EPSILON
    }

    async fn embed(&self, texts: &[String]) -> Result<Vec<Sparse>, EmbedError> {
        Ok(tfidf(texts))
    }
}

/// Texts per request to an endpoint.
pub const BATCH: usize = 64;

/// An OpenAI-compatible embeddings endpoint (OpenAI, vLLM, Ollama, LiteLLM, TEI, …).
pub struct OpenAiEmbeddings {
    http: reqwest::Client,
    url: String,
    api_key: Option<String>,
    model: String,
}

impl OpenAiEmbeddings {
    /// `base_url` ends before `/embeddings` (`https://api.openai.com/v1`).
    pub fn new(
        base_url: &str,
        api_key: Option<String>,
        model: &str,
    ) -> Result<OpenAiEmbeddings, EmbedError> {
        let url = reqwest::Url::parse(base_url.trim_end_matches('/'))
            .map_err(|e| EmbedError::Refused(format!("not a URL: {e}")))?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(EmbedError::Refused("the URL must be http or https".into()));
        }
        // reqwest is built without its default crypto (aws-lc): ring, which is linked anyway.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(60))
            .build()
            .map_err(|e| EmbedError::Unavailable(e.to_string()))?;
        Ok(OpenAiEmbeddings {
            http,
            url: format!("{}/embeddings", base_url.trim_end_matches('/')),
            api_key,
            model: model.to_owned(),
        })
    }
}

#[derive(Deserialize)]
struct Reply {
    data: Vec<Datum>,
}

#[derive(Deserialize)]
struct Datum {
    index: usize,
    embedding: Vec<f32>,
}

#[async_trait]
impl Embedder for OpenAiEmbeddings {
    fn name(&self) -> String {
        format!("openai:{}", self.model)
    }

    fn remote(&self) -> bool {
        true
    }

    async fn embed(&self, texts: &[String]) -> Result<Vec<Sparse>, EmbedError> {
        let mut out = Vec::with_capacity(texts.len());
        for batch in texts.chunks(BATCH) {
            let mut request = self
                .http
                .post(&self.url)
                .json(&serde_json::json!({"model": self.model, "input": batch}));
            if let Some(key) = &self.api_key {
                request = request.bearer_auth(key);
            }
            let response = request
                .send()
                .await
                .map_err(|e| EmbedError::Unavailable(e.without_url().to_string()))?;
            let status = response.status();
            if status.as_u16() == 429 || status.is_server_error() {
                return Err(EmbedError::Unavailable(format!("status {status}")));
            }
            if !status.is_success() {
                return Err(EmbedError::Refused(format!("status {status}")));
            }
            let mut reply: Reply = response
                .json()
                .await
                .map_err(|e| EmbedError::Refused(format!("not an embeddings reply: {e}")))?;
            reply.data.sort_by_key(|d| d.index);
            let dims = reply.data.first().map_or(0, |d| d.embedding.len());
            let in_order = reply.data.iter().enumerate().all(|(i, d)| d.index == i);
            if reply.data.len() != batch.len() || !in_order || dims == 0 {
                return Err(EmbedError::Refused(format!(
                    "{} embeddings for {} inputs",
                    reply.data.len(),
                    batch.len()
                )));
            }
            if reply.data.iter().any(|d| d.embedding.len() != dims) {
                return Err(EmbedError::Refused(
                    "embeddings of different lengths".into(),
                ));
            }
            out.extend(
                reply
                    .data
                    .into_iter()
                    .map(|d| Sparse::from_dense(&d.embedding).normalized()),
            );
        }
        Ok(out)
    }
}
