//! `otp.delivery = "webhook"`: codes POSTed as JSON `{"email", "code", "expires_at",
//! "user_id"}` to `otp.webhook.url`, over the same hyper client and rustls set-up as the
//! upstream ([`crate::upstream::Pool`]). With `secret_file`, the POST carries
//! `X-Portcullis-Signature: sha256=<hex HMAC-SHA256 of the body under the secret>`, so the
//! receiver can tell that Portcullis sent it; it should compare in constant time. Any 2xx
//! answer is a delivery.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use hmac::{Hmac, Mac};
use http::header::{CONTENT_TYPE, HOST, USER_AGENT};
use http::uri::PathAndQuery;
use http::{HeaderValue, Method, Request};
use http_body_util::{BodyExt, Limited};
use serde_json::json;
use sha2::Sha256;

use super::delivery::{DeliveryError, Message};
use crate::config::{read_secret_file, ConfigError, Secret, UpstreamConfig, WebhookConfig};
use crate::upstream::{Pool, RequestBody};

/// The header that carries the signature.
pub const SIGNATURE_HEADER: &str = "x-portcullis-signature";

/// How much of the receiver's answer is read (and ignored), so the connection can be reused.
const MAX_ANSWER: usize = 64 * 1024;

/// Posts codes to one URL.
pub struct Webhook {
    pool: Arc<Pool>,
    path: PathAndQuery,
    host: HeaderValue,
    secret: Option<Secret>,
}

// === impl Webhook ===

impl Webhook {
    /// Reads the secret file and the CA bundle and builds the client. `timeout` bounds the
    /// connect (the whole delivery is bounded by the same value).
    pub fn new(config: &WebhookConfig, timeout: Duration) -> Result<Webhook, ConfigError> {
        let secret = config
            .secret_file
            .as_deref()
            .map(|f| read_secret_file("otp.webhook.secret_file", f))
            .transpose()?;
        let target = UpstreamConfig {
            scheme: config.scheme.clone(),
            authority: config.authority.clone(),
            base_path: String::new(),
            http2: false,
            ca_file: config.ca_file.clone(),
            connect_timeout: timeout,
            response_timeout: timeout,
            pool_idle_timeout: Duration::from_secs(90),
            pool_max_idle: 4,
            pass_token: false,
            upgrade_protocols: Vec::new(),
            danger_pass_override_headers: false,
        };
        let key = if config.ca_file.is_some() {
            "otp.webhook.ca_file"
        } else {
            "otp.webhook.url"
        };
        let pool = Pool::new(&target).map_err(|e| ConfigError::Invalid {
            key: key.into(),
            reason: e.to_string(),
        })?;
        let host =
            HeaderValue::from_str(config.authority.as_str()).map_err(|e| ConfigError::Invalid {
                key: "otp.webhook.url".into(),
                reason: e.to_string(),
            })?;
        Ok(Webhook {
            pool: Arc::new(pool),
            path: config.path.clone(),
            host,
            secret,
        })
    }

    /// POSTs the message; a 2xx answer is a delivery.
    pub async fn send(&self, message: &Message) -> Result<(), DeliveryError> {
        let body = json!({
            "email": message.email,
            "code": message.code.expose(),
            "expires_at": message.expires_at_text(),
            "user_id": message.user_id,
        })
        .to_string();
        let mut req = Request::builder()
            .method(Method::POST)
            .uri(self.path.as_str())
            .header(HOST, &self.host)
            .header(CONTENT_TYPE, "application/json")
            .header(USER_AGENT, "portcullis");
        if let Some(secret) = &self.secret {
            req = req.header(
                SIGNATURE_HEADER,
                sign(secret.expose().as_bytes(), body.as_bytes()),
            );
        }
        let req = req
            .body(RequestBody::full(Bytes::from(body)))
            .map_err(|e| DeliveryError(format!("webhook request: {e}")))?;
        let (resp, lease) = self
            .pool
            .send(req)
            .await
            .map_err(|e| DeliveryError(format!("webhook: {e}")))?;
        let status = resp.status();
        let read = Limited::new(resp.into_body(), MAX_ANSWER).collect().await;
        if let (Ok(_), Some(lease)) = (read, lease) {
            lease.release();
        }
        if !status.is_success() {
            return Err(DeliveryError(format!("the webhook answered {status}")));
        }
        Ok(())
    }
}

/// `sha256=<hex HMAC-SHA256 of body under key>`.
fn sign(key: &[u8], body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes a key of any length");
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signatures_are_rfc_4231_hmac_sha256() {
        // RFC 4231, test case 2.
        assert_eq!(
            sign(b"Jefe", b"what do ya want for nothing?"),
            "sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }
}
