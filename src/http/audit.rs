//! The audit log: who signed in, failed to, signed out, or set a password, and from where. One
//! line per event, always on, at `info` on the tracing target [`TARGET`] (filter on it to keep
//! it apart: `portcullis::audit=info`).
//!
//! Every line has the same fields: `event`, `outcome` (`success` or `failure`), `reason` (why a
//! failure failed), `method` (`password` or `oidc`, for logins), `user_id` when the user is
//! known, `actor_id` when someone else acted on that user, `email` (the user's, or the one a login attempted: an email is not a secret, and it
//! is only logged when it looks like one, so a password typed into the email field is not),
//! and `client_ip` (the client's address, behind `server.trusted_proxies` the one they
//! forwarded). A password, a passcode, a token or a cookie is never a field.

use std::fmt;
use std::net::IpAddr;

use uuid::Uuid;

use crate::coder::looks_like_email;

/// The tracing target of audit lines.
pub const TARGET: &str = "portcullis::audit";

/// What happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Event {
    /// A sign-in: `POST /users/login` or the return leg of an OIDC login.
    Login,
    /// `POST /users/logout`.
    Logout,
    /// A password set with a one-time passcode (`POST /users/otp/change-password`).
    PasswordReset,
    /// A password changed by its user or an administrator (`PUT /users/{user}/password`).
    PasswordChange,
    /// `POST {api.prefix}/portcullis/explain`.
    Explain,
}

/// How a sign-in was attempted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    /// Email and password.
    Password,
    /// OpenID Connect.
    Oidc,
}

/// Why an event failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    /// A user with that email exists, and the password is not theirs.
    WrongPassword,
    /// No user has that email.
    UnknownUser,
    /// The user is suspended.
    Suspended,
    /// Too many attempts from the client or for the account (429).
    RateLimited,
    /// Password login is disabled (`passwords.disable_password_auth`).
    Disabled,
    /// The user signs in another way.
    WrongLoginType,
    /// The one-time passcode was wrong, expired, used or replaced, or the email unknown.
    BadCode,
    /// The request was malformed or refused by a check (a missing field, a weak password, a
    /// mismatched OIDC state).
    Invalid,
    /// The user or the provider's answer is not allowed to sign in (OIDC: signups off, an
    /// unverified email, a domain not allowed).
    Forbidden,
    /// The store or the password hashing could not answer in time (503).
    Unavailable,
    /// Portcullis's own fault.
    Error,
}

/// One audit line (see the module doc); [`Audit::emit`] writes it.
#[derive(Debug, Clone, Copy)]
pub struct Audit<'a> {
    /// What happened.
    pub event: Event,
    /// `None`: it succeeded.
    pub failure: Option<Reason>,
    /// How a sign-in was attempted.
    pub method: Option<Method>,
    /// The user, when known.
    pub user_id: Option<Uuid>,
    /// Who acted on `user_id`, when that is someone else (a password an administrator sets,
    /// the caller of `explain`).
    pub actor_id: Option<Uuid>,
    /// The user's email, or the one attempted.
    pub email: Option<&'a str>,
    /// The client.
    pub client_ip: IpAddr,
}

// === impl Event ===

impl Event {
    /// Its name in the log.
    pub fn as_str(self) -> &'static str {
        match self {
            Event::Login => "login",
            Event::Logout => "logout",
            Event::PasswordReset => "password_reset",
            Event::PasswordChange => "password_change",
            Event::Explain => "explain",
        }
    }
}

// === impl Method ===

impl Method {
    /// Its name in the log.
    pub fn as_str(self) -> &'static str {
        match self {
            Method::Password => "password",
            Method::Oidc => "oidc",
        }
    }
}

// === impl Reason ===

impl Reason {
    /// Its name in the log.
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::WrongPassword => "wrong_password",
            Reason::UnknownUser => "unknown_user",
            Reason::Suspended => "suspended",
            Reason::RateLimited => "rate_limited",
            Reason::Disabled => "disabled",
            Reason::WrongLoginType => "wrong_login_type",
            Reason::BadCode => "bad_code",
            Reason::Invalid => "invalid",
            Reason::Forbidden => "forbidden",
            Reason::Unavailable => "unavailable",
            Reason::Error => "error",
        }
    }

    /// The reason an answer with `status` tells, for a failure no step named more precisely.
    pub fn of_status(status: http::StatusCode) -> Reason {
        match status.as_u16() {
            429 => Reason::RateLimited,
            400 | 401 | 404 | 409 => Reason::Invalid,
            403 => Reason::Forbidden,
            503 => Reason::Unavailable,
            _ => Reason::Error,
        }
    }
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

// === impl Audit ===

impl<'a> Audit<'a> {
    /// A successful `event` by `user_id` from `client_ip`.
    pub fn new(event: Event, client_ip: IpAddr) -> Audit<'a> {
        Audit {
            event,
            failure: None,
            method: None,
            user_id: None,
            actor_id: None,
            email: None,
            client_ip,
        }
    }

    /// Names who acted.
    pub fn by(self, actor_id: Uuid) -> Audit<'a> {
        Audit {
            actor_id: Some(actor_id),
            ..self
        }
    }

    /// Names the user.
    pub fn user(self, user_id: Uuid, email: &'a str) -> Audit<'a> {
        Audit {
            user_id: Some(user_id),
            email: Some(email),
            ..self
        }
    }

    /// Names the email an attempt gave, when it looks like an email.
    pub fn attempted(self, email: &'a str) -> Audit<'a> {
        Audit {
            email: looks_like_email(email).then_some(email),
            ..self
        }
    }

    /// How a sign-in was attempted.
    pub fn method(self, method: Method) -> Audit<'a> {
        Audit {
            method: Some(method),
            ..self
        }
    }

    /// The event failed, for `reason`.
    pub fn failed(self, reason: Reason) -> Audit<'a> {
        Audit {
            failure: Some(reason),
            ..self
        }
    }

    /// Writes the line.
    pub fn emit(&self) {
        let (outcome, reason) = match self.failure {
            None => ("success", None),
            Some(reason) => ("failure", Some(reason.as_str())),
        };
        tracing::info!(
            target: TARGET,
            event = self.event.as_str(),
            outcome,
            reason,
            method = self.method.map(Method::as_str),
            user_id = self.user_id.map(tracing::field::display),
            actor_id = self.actor_id.map(tracing::field::display),
            email = self.email,
            client_ip = %self.client_ip,
            "{}",
            self.event.as_str()
        );
    }
}
