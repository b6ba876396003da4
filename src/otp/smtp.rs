//! `otp.delivery = "smtp"`: codes as plain-text email through an SMTP server, with lettre
//! (rustls on ring). `tls = "starttls"` requires the upgrade (no fallback to plain text),
//! `tls = "tls"` speaks TLS from the first byte, `none` speaks none. The server's certificate
//! is checked against `ca_file` when given, else the system roots, for the name `host`.

use std::time::Duration;

use lettre::message::header::ContentType;
use lettre::message::Mailbox;
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::{Certificate, CertificateStore, Tls, TlsParameters};
use lettre::{AsyncSmtpTransport, AsyncTransport, Message as Email, Tokio1Executor};

use super::delivery::{DeliveryError, Message};
use crate::config::{read_secret_file, ConfigError, SmtpConfig, SmtpTls};

/// The subject of every code email.
pub const SUBJECT: &str = "Your one-time passcode";

/// Sends code emails through one SMTP server; a connection per message.
pub struct Mailer {
    transport: AsyncSmtpTransport<Tokio1Executor>,
    from: Mailbox,
}

// === impl Mailer ===

impl Mailer {
    /// Reads the password file and the CA bundle and builds the transport. `timeout` bounds
    /// each SMTP exchange (and the whole delivery is bounded by the same value).
    pub fn new(config: &SmtpConfig, timeout: Duration) -> Result<Mailer, ConfigError> {
        let tls = |params| match config.tls {
            SmtpTls::StartTls => Tls::Required(params),
            SmtpTls::Tls => Tls::Wrapper(params),
            SmtpTls::None => Tls::None,
        };
        let mut params = TlsParameters::builder(config.host.clone());
        if let Some(ca) = &config.ca_file {
            let invalid = |reason: String| ConfigError::Invalid {
                key: "otp.smtp.ca_file".into(),
                reason: format!("{}: {reason}", ca.display()),
            };
            let pem = std::fs::read(ca).map_err(|e| invalid(e.to_string()))?;
            let cert = Certificate::from_pem(&pem).map_err(|e| invalid(e.to_string()))?;
            params = params
                .certificate_store(CertificateStore::None)
                .add_root_certificate(cert);
        }
        let params = params.build_rustls().map_err(|e| ConfigError::Invalid {
            key: "otp.smtp.tls".into(),
            reason: e.to_string(),
        })?;
        let mut builder = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(&config.host)
            .port(config.port)
            .tls(tls(params))
            .timeout(Some(timeout));
        if let (Some(user), Some(file)) = (&config.username, &config.password_file) {
            let password = read_secret_file("otp.smtp.password_file", file)?;
            builder =
                builder.credentials(Credentials::new(user.clone(), password.expose().to_owned()));
        }
        Ok(Mailer {
            transport: builder.build(),
            from: config.from.clone(),
        })
    }

    /// Sends the code to `message.email`.
    pub async fn send(&self, message: &Message) -> Result<(), DeliveryError> {
        let to: Mailbox = message
            .email
            .parse()
            .map_err(|e| DeliveryError(format!("the user's email is not an address: {e}")))?;
        let text = format!(
            "A password reset was asked for the account {email}.\n\n\
             Your one-time passcode is:\n\n    {code}\n\n\
             It works once, until {expires} (UTC). If you did not ask for it, ignore this \
             message: your password stays as it is.\n",
            email = message.email,
            code = message.code.expose(),
            expires = message.expires_at_text(),
        );
        let email = Email::builder()
            .from(self.from.clone())
            .to(to)
            .subject(SUBJECT)
            .header(ContentType::TEXT_PLAIN)
            .body(text)
            .map_err(|e| DeliveryError(format!("could not build the email: {e}")))?;
        self.transport
            .send(email)
            .await
            .map(drop)
            .map_err(|e| DeliveryError(format!("smtp: {e}")))
    }
}
