//! The [`WebhookClient`] over HTTP: a signed `POST`, answered `{"done": true}` (done), any
//! other 2xx (accepted: the handler calls back), or anything else (failed, retried).
//!
//! The target is checked again at delivery: the URL as at creation, then every address
//! its host resolves to, and the connection goes to the checked addresses only (no second
//! lookup a rebinding name could answer differently), without following redirects.

use std::time::Duration;

use agentwire_dispatch::WebhookClient;
use agentwire_dispatch::model::Delivered;
use agentwire_dispatch::url_check::{self, Targets};
use async_trait::async_trait;
use serde_json::Value;
use tracing::warn;

/// The most of a webhook's answer read (a `done` answer is a few bytes).
const MAX_ANSWER_BYTES: usize = 64 * 1024;

/// Webhook deliveries over reqwest (rustls).
pub struct HttpWebhookClient {
    targets: Targets,
    timeout: Duration,
}

impl HttpWebhookClient {
    /// `timeout` bounds a whole delivery, answer included.
    pub fn new(targets: Targets, timeout: Duration) -> HttpWebhookClient {
        HttpWebhookClient { targets, timeout }
    }
}

#[async_trait]
impl WebhookClient for HttpWebhookClient {
    async fn post(&self, url: &str, signature: &str, body: Vec<u8>) -> Delivered {
        let Ok(parsed) = url_check::check(url, self.targets) else {
            return Delivered::Failed;
        };
        let host = parsed
            .host_str()
            .unwrap_or_default()
            .trim_matches(['[', ']'])
            .to_owned();
        let port = parsed.port_or_known_default().unwrap_or(443);
        let Ok(Ok(addrs)) =
            tokio::time::timeout(self.timeout, tokio::net::lookup_host((host.as_str(), port)))
                .await
        else {
            return Delivered::Failed;
        };
        let addrs: Vec<std::net::SocketAddr> = addrs.collect();
        if addrs.is_empty()
            || !addrs
                .iter()
                .all(|a| url_check::allowed(a.ip(), self.targets))
        {
            // The origin only: a path or query can carry a receiver's secret.
            warn!(target_origin = %parsed.origin().ascii_serialization(), "webhook address refused");
            return Delivered::Failed;
        }
        // reqwest is built without its default crypto (aws-lc): ring, which is linked anyway.
        let _ = rustls::crypto::ring::default_provider().install_default();
        // A client per delivery: its resolver is pinned to the addresses just checked.
        let client = match reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            // A proxy from the environment would connect where nothing was checked.
            .no_proxy()
            .timeout(self.timeout)
            .resolve_to_addrs(&host, &addrs)
            .build()
        {
            Ok(client) => client,
            Err(e) => {
                warn!(error = %e, "webhook client not built");
                return Delivered::Failed;
            }
        };
        let response = client
            .post(parsed)
            .header("content-type", "application/json")
            .header("webhook-signature", signature)
            .body(body)
            .send()
            .await;
        let Ok(response) = response else {
            return Delivered::Failed;
        };
        if !response.status().is_success() {
            return Delivered::Failed;
        }
        // Only the answer's start is read: `{"done": true}` is short.
        let mut answer = Vec::new();
        let mut response = response;
        while let Ok(Some(chunk)) = response.chunk().await {
            answer.extend_from_slice(&chunk);
            if answer.len() > MAX_ANSWER_BYTES {
                return Delivered::Accepted;
            }
        }
        let done = serde_json::from_slice::<Value>(&answer).is_ok_and(|v| v["done"] == true);
        if done {
            Delivered::Done
        } else {
            Delivered::Accepted
        }
    }
}
