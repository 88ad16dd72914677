//! Webhook signatures: Ed25519 over `<unix seconds>.<raw body>`, sent as
//! `Webhook-Signature: t=<seconds>,kid=<key id>,ed25519=<base64url signature>`, with the
//! public key published as a JWK Set. The key id is `ds_` and the key's RFC 7638
//! thumbprint, so it is stable for the key's lifetime and derived from it alone.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ring::signature::{ED25519, Ed25519KeyPair, KeyPair, UnparsedPublicKey};
use serde_json::{Value, json};
use sha2::Digest;

/// The server's signing key.
pub struct WebhookKey {
    pair: Ed25519KeyPair,
    kid: String,
}

impl std::fmt::Debug for WebhookKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebhookKey")
            .field("kid", &self.kid)
            .finish_non_exhaustive()
    }
}

impl WebhookKey {
    /// A new key and its PKCS#8 document, to be kept secret and loaded on restart.
    pub fn generate() -> Result<(WebhookKey, Vec<u8>), String> {
        let random = ring::rand::SystemRandom::new();
        let document = Ed25519KeyPair::generate_pkcs8(&random)
            .map_err(|_| "cannot generate an Ed25519 key".to_owned())?;
        let bytes = document.as_ref().to_vec();
        Ok((WebhookKey::from_pkcs8(&bytes)?, bytes))
    }

    /// The PKCS#8 document of the key derived from `secret` (32 random bytes or more are
    /// advised, as for the token secret; a shorter one is as weak as the tokens it signs):
    /// where the stack already keeps one secret (the token secret in Secrets Manager), the
    /// webhook key needs no second one, and every function derives the same key.
    pub fn document_from_secret(secret: &[u8]) -> Result<Vec<u8>, String> {
        if secret.is_empty() {
            return Err("a webhook key needs a secret".into());
        }
        let mut seed = sha2::Sha256::new();
        seed.update(b"agentwire webhook key\n");
        seed.update(secret);
        // RFC 8410's PKCS#8 v1 encoding of an Ed25519 private key: a fixed prefix, then
        // the 32-byte seed.
        let mut document = vec![
            0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22,
            0x04, 0x20,
        ];
        document.extend_from_slice(&seed.finalize());
        Ok(document)
    }

    /// The key a [`WebhookKey::generate`] or [`WebhookKey::document_from_secret`] document
    /// holds (a v2 document's public key is checked against its private key).
    pub fn from_pkcs8(document: &[u8]) -> Result<WebhookKey, String> {
        let pair = Ed25519KeyPair::from_pkcs8_maybe_unchecked(document)
            .map_err(|e| format!("not an Ed25519 PKCS#8 key: {e}"))?;
        let x = URL_SAFE_NO_PAD.encode(pair.public_key().as_ref());
        // RFC 7638: the required members in lexicographic order, no whitespace.
        let canonical = format!(r#"{{"crv":"Ed25519","kty":"OKP","x":"{x}"}}"#);
        let kid = format!(
            "ds_{}",
            URL_SAFE_NO_PAD.encode(sha2::Sha256::digest(canonical.as_bytes()))
        );
        Ok(WebhookKey { pair, kid })
    }

    pub fn kid(&self) -> &str {
        &self.kid
    }

    /// The public key as a JWK.
    pub fn jwk(&self) -> Value {
        json!({
            "kty": "OKP",
            "crv": "Ed25519",
            "kid": self.kid,
            "use": "sig",
            "alg": "EdDSA",
            "x": URL_SAFE_NO_PAD.encode(self.pair.public_key().as_ref()),
        })
    }

    /// The JWK Set served at `__ds/jwks.json`.
    pub fn jwks(&self) -> Value {
        json!({ "keys": [self.jwk()] })
    }

    /// The `Webhook-Signature` header value for `body` sent at `unix_seconds`.
    pub fn signature(&self, unix_seconds: i64, body: &[u8]) -> String {
        let mut message = format!("{unix_seconds}.").into_bytes();
        message.extend_from_slice(body);
        let signature = self.pair.sign(&message);
        format!(
            "t={unix_seconds},kid={},ed25519={}",
            self.kid,
            URL_SAFE_NO_PAD.encode(signature.as_ref())
        )
    }
}

/// Checks a `Webhook-Signature` header against a JWK Set, as a receiver does: the key
/// named by `kid`, the signature over `t.body`, and `t` within `window_s` of `now_s`.
pub fn verify(header: &str, body: &[u8], jwks: &Value, now_s: i64, window_s: i64) -> bool {
    let mut t = None;
    let mut kid = None;
    let mut sig = None;
    for part in header.split(',') {
        match part.split_once('=') {
            Some(("t", v)) => t = v.parse::<i64>().ok(),
            Some(("kid", v)) => kid = Some(v),
            Some(("ed25519", v)) => sig = URL_SAFE_NO_PAD.decode(v).ok(),
            _ => {}
        }
    }
    let (Some(t), Some(kid), Some(sig)) = (t, kid, sig) else {
        return false;
    };
    if (now_s - t).abs() > window_s {
        return false;
    }
    let Some(x) = jwks["keys"]
        .as_array()
        .and_then(|keys| keys.iter().find(|k| k["kid"] == kid))
        .and_then(|k| k["x"].as_str())
        .and_then(|x| URL_SAFE_NO_PAD.decode(x).ok())
    else {
        return false;
    };
    let mut message = format!("{t}.").into_bytes();
    message.extend_from_slice(body);
    UnparsedPublicKey::new(&ED25519, x)
        .verify(&message, &sig)
        .is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_signature_verifies_with_the_published_key_only_for_its_body_and_time() {
        let (key, document) = WebhookKey::generate().unwrap();
        let again = WebhookKey::from_pkcs8(&document).unwrap();
        assert_eq!(key.kid(), again.kid(), "the key id is the key's");
        assert!(key.kid().starts_with("ds_"));
        let body = br#"{"wake_id":"w_1"}"#;
        let header = key.signature(1_700_000_000, body);
        let jwks = key.jwks();
        assert!(verify(&header, body, &jwks, 1_700_000_010, 300));
        assert!(!verify(&header, b"{}", &jwks, 1_700_000_010, 300));
        assert!(
            !verify(&header, body, &jwks, 1_700_001_000, 300),
            "replayed late"
        );
        let (other, _) = WebhookKey::generate().unwrap();
        assert!(!verify(&header, body, &other.jwks(), 1_700_000_010, 300));
        assert_eq!(jwks["keys"][0]["crv"], "Ed25519");
        assert!(WebhookKey::from_pkcs8(b"nope").is_err());
    }

    #[test]
    fn a_key_derived_from_a_secret_is_the_same_everywhere_and_the_secrets_own() {
        let secret = b"0123456789abcdef0123456789abcdef";
        let one = WebhookKey::from_pkcs8(&WebhookKey::document_from_secret(secret).unwrap());
        let two = WebhookKey::from_pkcs8(&WebhookKey::document_from_secret(secret).unwrap());
        let (one, two) = (one.unwrap(), two.unwrap());
        assert_eq!(one.kid(), two.kid(), "every function derives the same key");
        let body = b"{}";
        assert!(verify(
            &one.signature(100, body),
            body,
            &two.jwks(),
            100,
            300
        ));
        let other =
            WebhookKey::document_from_secret(b"another secret, also 32 bytes long").unwrap();
        assert_ne!(WebhookKey::from_pkcs8(&other).unwrap().kid(), one.kid());
        assert!(WebhookKey::document_from_secret(b"").is_err());
    }
}
