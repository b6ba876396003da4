//! Delivery of one-time passcodes, off the request path: `smtp` ([`super::smtp`]), `webhook`
//! ([`super::webhook`]) or `log`. Each delivery runs in a task of its own under
//! `otp.delivery_timeout`, and starts 20 to 100 ms (at random) after the request that caused
//! it: otherwise its first steps (connect, TLS, the write) would run on the same worker while
//! the `204` is still being written, and make the answer for a known email measurably slower
//! than for an unknown one. Its outcome is logged (target `portcullis::otp::delivery`, never
//! with the code, except by the `log` delivery itself) and counted in
//! `portcullis_otp_deliveries_total{result}`. The caller of the API never learns it.

use std::sync::Arc;
use std::time::Duration;

use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;
use uuid::Uuid;

use super::smtp::Mailer;
use super::webhook::Webhook;
use super::Code;
use crate::config::{ConfigError, OtpDelivery};
use crate::metrics::{Metrics, OtpDeliveryResult};

/// One code for one user.
#[derive(Debug)]
pub struct Message {
    /// Where it goes: the user's stored email address.
    pub email: String,
    /// The code.
    pub code: Code,
    /// When it stops working.
    pub expires_at: OffsetDateTime,
    /// Whose it is.
    pub user_id: Uuid,
}

/// How codes are delivered (`otp.delivery`).
pub enum Delivery {
    /// An email (`smtp`).
    Smtp(Mailer),
    /// A signed POST (`webhook`).
    Webhook(Webhook),
    /// The log at warn (`log`, development only).
    Log,
}

/// Why a delivery failed, in one line for the log. Never holds the code.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct DeliveryError(pub String);

// === impl Message ===

impl Message {
    /// `expires_at` in RFC 3339, as the webhook and the email show it.
    pub fn expires_at_text(&self) -> String {
        self.expires_at
            .format(&Rfc3339)
            .unwrap_or_else(|_| self.expires_at.unix_timestamp().to_string())
    }
}

// === impl Delivery ===

impl std::fmt::Debug for Delivery {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Delivery::Smtp(_) => "Delivery::Smtp",
            Delivery::Webhook(_) => "Delivery::Webhook",
            Delivery::Log => "Delivery::Log",
        })
    }
}

impl Delivery {
    /// Builds the delivery `config` names; `timeout` also bounds each network phase.
    ///
    /// # Errors
    /// [`ConfigError::Invalid`] naming the key whose file or value does not load.
    pub fn new(config: &OtpDelivery, timeout: Duration) -> Result<Delivery, ConfigError> {
        Ok(match config {
            OtpDelivery::Smtp(smtp) => Delivery::Smtp(Mailer::new(smtp, timeout)?),
            OtpDelivery::Webhook(hook) => Delivery::Webhook(Webhook::new(hook, timeout)?),
            OtpDelivery::Log => Delivery::Log,
        })
    }

    /// Delivers one message.
    ///
    /// # Errors
    /// [`DeliveryError`] when the server or the receiver refuses it or cannot be reached.
    pub async fn send(&self, message: &Message) -> Result<(), DeliveryError> {
        match self {
            Delivery::Smtp(mailer) => mailer.send(message).await,
            Delivery::Webhook(hook) => hook.send(message).await,
            Delivery::Log => {
                tracing::warn!(
                    email = %message.email,
                    user_id = %message.user_id,
                    code = message.code.expose(),
                    expires_at = %message.expires_at_text(),
                    "one-time passcode (otp.delivery = \"log\", otp.danger_log_codes = true: development only)"
                );
                Ok(())
            }
        }
    }
}

/// Runs `delivery` of `message` in a task of its own, bounded by `timeout`, and logs and
/// counts the outcome. With no delivery configured, counts `unconfigured` and returns.
pub(super) fn spawn(
    delivery: Option<Arc<Delivery>>,
    message: Message,
    timeout: Duration,
    metrics: Arc<Metrics>,
) {
    let Some(delivery) = delivery else {
        tracing::debug!(user_id = %message.user_id, "no otp.delivery: the one-time passcode was not sent");
        metrics.otp_delivery(OtpDeliveryResult::Unconfigured);
        return;
    };
    tokio::spawn(async move {
        tokio::time::sleep(start_delay()).await;
        let user_id = message.user_id;
        let result = match tokio::time::timeout(timeout, delivery.send(&message)).await {
            Ok(Ok(())) => {
                tracing::debug!(%user_id, "one-time passcode delivered");
                OtpDeliveryResult::Sent
            }
            Ok(Err(error)) => {
                tracing::warn!(%user_id, %error, "could not deliver a one-time passcode");
                OtpDeliveryResult::Failed
            }
            Err(_) => {
                tracing::warn!(%user_id, ?timeout, "one-time passcode delivery timed out (otp.delivery_timeout)");
                OtpDeliveryResult::Timeout
            }
        };
        metrics.otp_delivery(result);
    });
}

/// 20 ms plus up to 80 ms at random (20 ms when there is no randomness to be had).
fn start_delay() -> Duration {
    let mut byte = [0u8; 1];
    let jitter = getrandom::fill(&mut byte).map_or(0, |()| u64::from(byte[0]) * 80 / 255);
    Duration::from_millis(20 + jitter)
}
