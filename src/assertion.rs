//! The signed identity assertion: `X-Portcullis-Assertion`, a short-lived ES256 JWT (RFC 7519;
//! JWS compact form, RFC 7515 §7.1; ES256, RFC 7518 §3.4) that tells the upstream who the caller
//! is in a form it can check with the public keys Portcullis publishes at
//! `/.portcullis/jwks.json` (RFC 7517), instead of believing headers because of where they came
//! from.
//!
//! Claims: `iss` (`identity.issuer`), `aud` (the host the client asked for, without a default
//! port), `sub` (user id), `email`, `username`, `roles` and `scopes` (the same names as the
//! identity headers), `iat`, and `exp` = `iat` + [`LIFETIME`]. The header's `kid` is the signing
//! key's RFC 7638 JWK thumbprint.
//!
//! Cost: one P-256 signature takes tens of microseconds, too much for every request. Each cached
//! session ([`crate::store::cache::Entry`]) keeps the assertions it was given, one per audience
//! for at most [`AUDIENCES`] audiences, and one is signed again only once it is [`REFRESH`]
//! seconds old: the upstream always gets an assertion with between 30 and 60 seconds to live.

use std::borrow::Cow;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock, PoisonError};
use std::time::{SystemTime, UNIX_EPOCH};

use base64ct::{Base64UrlUnpadded, Encoding};
use bytes::Bytes;
use http::header::{HeaderName, HeaderValue};
use ring::rand::SystemRandom;
use ring::signature::{EcdsaKeyPair, KeyPair, ECDSA_P256_SHA256_FIXED_SIGNING};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::PrivatePkcs8KeyDer;
use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::model::Session;

/// `X-Portcullis-Assertion`.
pub static HEADER: HeaderName = HeaderName::from_static("x-portcullis-assertion");

/// Where the public keys are published, on the main listener.
pub const JWKS_PATH: &str = "/.portcullis/jwks.json";

/// Seconds an assertion is valid for (`exp - iat`).
pub const LIFETIME: u64 = 60;

/// Seconds after which a session's cached assertion is replaced by a new one.
pub const REFRESH: u64 = 30;

/// Audiences (hosts) one session keeps an assertion for at once; a further one replaces the
/// oldest. Requests name their host, so this bounds what a client can make a session hold.
pub const AUDIENCES: usize = 4;

/// The keys and issuer that sign assertions: the first key signs, all are published.
pub struct Signer {
    /// `identity.issuer`, as a JSON string literal.
    issuer: String,
    keys: Vec<SigningKey>,
    jwks: Bytes,
}

/// One P-256 private key, read from a PKCS#8 PEM file.
pub struct SigningKey {
    path: PathBuf,
    kid: String,
    /// The JWS protected header, base64url-encoded.
    header: String,
    x: String,
    y: String,
    pair: EcdsaKeyPair,
}

/// Why a key file was refused.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    /// No PKCS#8 `PRIVATE KEY` PEM block.
    #[error(
        "no PKCS#8 \"PRIVATE KEY\" PEM block ({0}); an \"EC PRIVATE KEY\" converts with \
         `openssl pkcs8 -topk8 -nocrypt`"
    )]
    Pem(String),
    /// A PKCS#8 key that is not an ECDSA P-256 key.
    #[error("not an ECDSA P-256 (prime256v1) private key: {0}")]
    NotP256(String),
}

/// The assertions one session has been given, by audience. Empty (one pointer's room in each
/// cached session) until the first assertion is signed, so that a deployment without
/// `identity.assertion_key` pays nothing per session for it.
#[derive(Default)]
pub struct Issued {
    signed: OnceLock<Box<Signed>>,
}

struct Signed {
    /// The claims that do not change while the session is cached, as JSON members (no braces).
    claims: String,
    slots: Mutex<Vec<Slot>>,
}

struct Slot {
    aud: Box<str>,
    iat: u64,
    value: HeaderValue,
}

#[derive(Serialize)]
struct SessionClaims<'a> {
    sub: String,
    email: &'a str,
    username: &'a str,
    roles: Vec<String>,
    scopes: &'a [String],
}

#[derive(Serialize)]
struct Jwk<'a> {
    kty: &'static str,
    crv: &'static str,
    x: &'a str,
    y: &'a str,
    kid: &'a str,
    #[serde(rename = "use")]
    use_: &'static str,
    alg: &'static str,
}

#[derive(Serialize)]
struct Jwks<'a> {
    keys: Vec<Jwk<'a>>,
}

// === impl SigningKey ===

impl SigningKey {
    /// Reads a PKCS#8 P-256 private key from PEM text; `path` is kept for messages.
    pub fn from_pem(path: &Path, pem: &[u8]) -> Result<SigningKey, KeyError> {
        let der =
            PrivatePkcs8KeyDer::from_pem_slice(pem).map_err(|e| KeyError::Pem(e.to_string()))?;
        let pair = EcdsaKeyPair::from_pkcs8(
            &ECDSA_P256_SHA256_FIXED_SIGNING,
            der.secret_pkcs8_der(),
            &SystemRandom::new(),
        )
        .map_err(|e| KeyError::NotP256(e.to_string()))?;
        // An uncompressed SEC1 point: 0x04 || x (32 bytes) || y (32 bytes).
        let point = pair.public_key().as_ref();
        let (x, y) = (
            Base64UrlUnpadded::encode_string(&point[1..33]),
            Base64UrlUnpadded::encode_string(&point[33..65]),
        );
        // RFC 7638 §3.2: the required members in lexicographic order, no whitespace.
        let canonical = format!(r#"{{"crv":"P-256","kty":"EC","x":"{x}","y":"{y}"}}"#);
        let kid = Base64UrlUnpadded::encode_string(&Sha256::digest(canonical.as_bytes()));
        let header = Base64UrlUnpadded::encode_string(
            format!(r#"{{"alg":"ES256","typ":"JWT","kid":"{kid}"}}"#).as_bytes(),
        );
        Ok(SigningKey {
            path: path.to_owned(),
            kid,
            header,
            x,
            y,
            pair,
        })
    }

    /// The key's id: its RFC 7638 JWK thumbprint (SHA-256, base64url).
    pub fn kid(&self) -> &str {
        &self.kid
    }

    /// The file the key was read from.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl std::fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SigningKey")
            .field("path", &self.path)
            .field("kid", &self.kid)
            .finish_non_exhaustive()
    }
}

// === impl Signer ===

impl Signer {
    /// A signer for `issuer` with `keys`, the first of which signs. `keys` must not be empty
    /// (the config refuses an empty list).
    pub fn new(issuer: &str, keys: Vec<SigningKey>) -> Signer {
        let jwks = Jwks {
            keys: keys
                .iter()
                .map(|k| Jwk {
                    kty: "EC",
                    crv: "P-256",
                    x: &k.x,
                    y: &k.y,
                    kid: &k.kid,
                    use_: "sig",
                    alg: "ES256",
                })
                .collect(),
        };
        let jwks = Bytes::from(serde_json::to_vec(&jwks).expect("plain strings serialize"));
        Signer {
            issuer: serde_json::to_string(issuer).expect("a string serializes"),
            keys,
            jwks,
        }
    }

    /// The keys, the signing one first.
    pub fn keys(&self) -> &[SigningKey] {
        &self.keys
    }

    /// The JSON Web Key Set of every key (RFC 7517 §5), as served at [`JWKS_PATH`].
    pub fn jwks(&self) -> Bytes {
        self.jwks.clone()
    }

    /// Signs an assertion for audience `aud`, issued at `iat` (Unix seconds), carrying
    /// `claims` (JSON object members without the braces). `None` only if the system random
    /// number generator fails.
    fn sign(&self, claims: &str, aud: &str, iat: u64) -> Option<HeaderValue> {
        let key = self.keys.first()?;
        let aud = serde_json::to_string(aud).ok()?;
        let payload = format!(
            r#"{{"iss":{},"aud":{aud},"iat":{iat},"exp":{},{claims}}}"#,
            self.issuer,
            iat + LIFETIME
        );
        let mut jwt = String::with_capacity(key.header.len() + payload.len() * 4 / 3 + 100);
        jwt.push_str(&key.header);
        jwt.push('.');
        jwt.push_str(&Base64UrlUnpadded::encode_string(payload.as_bytes()));
        let signature = key.pair.sign(&SystemRandom::new(), jwt.as_bytes()).ok()?;
        jwt.push('.');
        jwt.push_str(&Base64UrlUnpadded::encode_string(signature.as_ref()));
        HeaderValue::from_maybe_shared(Bytes::from(jwt)).ok()
    }
}

impl std::fmt::Debug for Signer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Signer")
            .field("issuer", &self.issuer)
            .field("keys", &self.keys)
            .finish_non_exhaustive()
    }
}

// === impl Issued ===

impl Issued {
    /// The assertion for `session` and audience `aud`: the cached one while it is younger
    /// than [`REFRESH`], else a new one. `None` only if signing fails.
    pub fn get(&self, signer: &Signer, session: &Session, aud: &str) -> Option<HeaderValue> {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        self.get_at(signer, session, aud, now)
    }

    /// [`Issued::get`] at `now` (Unix seconds).
    fn get_at(
        &self,
        signer: &Signer,
        session: &Session,
        aud: &str,
        now: u64,
    ) -> Option<HeaderValue> {
        let signed = self.signed.get_or_init(|| {
            Box::new(Signed {
                claims: session_claims(session),
                slots: Mutex::default(),
            })
        });
        if let Some(slot) = signed.lock().iter().find(|s| &*s.aud == aud) {
            if now.saturating_sub(slot.iat) < REFRESH {
                return Some(slot.value.clone());
            }
        }
        // Signed outside the lock: two requests that miss together both sign, and one wins.
        let value = signer.sign(&signed.claims, aud, now)?;
        let fresh = Slot {
            aud: aud.into(),
            iat: now,
            value: value.clone(),
        };
        let mut slots = signed.lock();
        if let Some(i) = slots.iter().position(|s| &*s.aud == aud) {
            slots[i] = fresh;
        } else if slots.len() < AUDIENCES {
            slots.push(fresh);
        } else if let Some(oldest) = slots.iter_mut().min_by_key(|s| s.iat) {
            *oldest = fresh;
        }
        Some(value)
    }
}

impl Signed {
    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Slot>> {
        // A panic elsewhere cannot leave the slots half-written: each is replaced whole.
        self.slots.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl std::fmt::Debug for Issued {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Issued")
            .field(
                "audiences",
                &self.signed.get().map_or(0, |s| s.lock().len()),
            )
            .finish()
    }
}

/// At most this many roles are asserted (site roles first, then organization roles), so that a
/// user in very many organizations cannot make the header unbounded. Scopes need no cap: a key
/// holds each external scope at most once (60 names).
pub const MAX_ROLE_CLAIMS: usize = 32;

/// The session's claims as JSON object members: `sub`, `email`, `username`, `roles`, `scopes`.
fn session_claims(session: &Session) -> String {
    let claims = SessionClaims {
        sub: session.user.id.to_string(),
        email: &session.user.email,
        username: &session.user.username,
        roles: session.role_names().take(MAX_ROLE_CLAIMS).collect(),
        scopes: &session.key.scopes,
    };
    let json = serde_json::to_string(&claims).expect("plain strings serialize");
    json[1..json.len() - 1].to_owned()
}

/// The audience for a request to `host` (a `Host` value): lower case, without the scheme's
/// default port (`:443` when `https`, `:80` otherwise). Borrows when nothing changes.
pub fn audience(host: &[u8], https: bool) -> Cow<'_, str> {
    let default_port: &[u8] = if https { b":443" } else { b":80" };
    let host = host.strip_suffix(default_port).unwrap_or(host);
    match std::str::from_utf8(host) {
        Ok(h) if !h.bytes().any(|b| b.is_ascii_uppercase()) => Cow::Borrowed(h),
        _ => Cow::Owned(String::from_utf8_lossy(host).to_ascii_lowercase()),
    }
}

#[cfg(test)]
mod tests;
