//! Single sign-on through an OpenID Connect provider (`[oidc]`): the provider handle
//! ([`Oidc`]), the login flow and its callback ([`flow`]), moving a password account onto the
//! provider ([`convert`], spec/coder-api.md §6), and OIDC sessions: refresh and the sign-in
//! redirect of browsers ([`session`]).
//!
//! The protocol work (discovery, the authorization URL with PKCE S256, the code exchange, ID
//! token verification against the provider's JWKS: signature, `iss`, `aud`, `exp`, `nonce`,
//! and refresh) is the `openidconnect` crate's, driven over Portcullis's own HTTP client
//! ([`http`]).
//!
//! # Availability
//! Nothing about the provider is fetched at start-up: its discovery document and keys are read
//! on first use and kept ([`METADATA_MAX_AGE`]). A provider that cannot be reached makes the
//! login endpoints answer 503 with a Coder body; a failed discovery is not retried for
//! [`RETRY_AFTER`], so an outage is not amplified. An ID token signed with a key id the cached
//! key set does not have makes Portcullis read the key set again (at most once per
//! [`RETRY_AFTER`]) and verify once more: keys rotate without a restart. This holds for the ID
//! token of a login and for one that comes back with a refresh (verified as at login, and it
//! must name the session's `sub`).

use std::collections::BTreeMap;
use std::time::Duration;

use openidconnect::core::{
    CoreClient, CoreIdToken, CoreIdTokenClaims, CoreProviderMetadata, CoreResponseType,
};
use openidconnect::{
    AccessToken, AuthenticationFlow, AuthorizationCode, ClaimsVerificationError, ClientId,
    ClientSecret, CsrfToken, EndpointMaybeSet, EndpointNotSet, EndpointSet, IssuerUrl,
    JsonWebKeySet, Nonce, NonceVerifier, OAuth2TokenResponse, PkceCodeChallenge, PkceCodeVerifier,
    RedirectUrl, RefreshToken, RequestTokenError, Scope, SignatureVerificationError, TokenResponse,
};
use serde_json::{Map, Value};
use time::OffsetDateTime;
use tokio::time::Instant;

use crate::config::OidcConfig;
use crate::tls::TlsError;

pub mod http;
pub mod session;

use self::http::{HttpClient, HttpError};

/// How long discovered provider metadata is used before it is read again.
pub const METADATA_MAX_AGE: Duration = Duration::from_secs(24 * 3600);
/// After a failed discovery, or a key set re-read, the provider is not asked again for this
/// long.
pub const RETRY_AFTER: Duration = Duration::from_secs(10);

/// The provider: its configuration, the HTTP client, and what was discovered about it.
pub struct Oidc {
    /// `[oidc]`.
    pub config: OidcConfig,
    http: HttpClient,
    provider: tokio::sync::Mutex<Discovered>,
    /// Provider token expiries of OIDC sessions, by key id (see [`session`]).
    links: session::Links,
}

#[derive(Default)]
struct Discovered {
    metadata: Option<(CoreProviderMetadata, Instant)>,
    failed_at: Option<Instant>,
    keys_read_at: Option<Instant>,
}

/// Why a step with the provider failed.
#[derive(Debug, thiserror::Error)]
pub enum OidcError {
    /// The provider could not be asked, or did not answer in time: 503.
    #[error("the OpenID Connect provider is unavailable: {0}")]
    Unavailable(String),
    /// The provider refused the request with an OAuth error (`invalid_grant` for a code that
    /// was already used or a refresh token that was revoked).
    #[error("the provider refused: {error}{}", if .description.is_empty() { String::new() } else { format!(" ({})", .description) })]
    Refused {
        /// The OAuth error code.
        error: String,
        /// Its `error_description`, possibly empty.
        description: String,
    },
    /// The token response has no `id_token`.
    #[error("no id_token in the token response")]
    NoIdToken,
    /// The ID token failed verification; the text says which check.
    #[error("{0}")]
    IdToken(String),
    /// The provider answered something Portcullis cannot use.
    #[error("unusable answer from the provider: {0}")]
    Invalid(String),
}

/// What a completed code exchange yields.
pub struct Login {
    /// Who signed in: the verified ID token's `iss` and `sub`.
    pub identity: Identity,
    /// The verified ID token's claims, with the user info endpoint's on top (OpenID Connect
    /// Core §5.3.2: its `sub` must match).
    pub claims: Map<String, Value>,
    /// The provider's refresh token, when it issued one.
    pub refresh_token: Option<String>,
    /// When the provider's access token expires, when it said.
    pub expires_at: Option<OffsetDateTime>,
}

/// An account at the provider: what Portcullis links users by (Coder's `user_links`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    /// The ID token's `iss`: the configured issuer.
    pub issuer: String,
    /// The ID token's `sub`.
    pub subject: String,
}

/// What a refresh yields.
pub struct Refreshed {
    /// A new refresh token when the provider rotated it.
    pub refresh_token: Option<String>,
    /// When the new access token expires, when the provider said.
    pub expires_at: Option<OffsetDateTime>,
}

/// The client the `openidconnect` crate builds from discovered metadata.
type Client = CoreClient<
    EndpointSet,
    EndpointNotSet,
    EndpointNotSet,
    EndpointNotSet,
    EndpointMaybeSet,
    EndpointMaybeSet,
>;

// === impl Oidc ===

impl std::fmt::Debug for Oidc {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Oidc")
            .field("issuer", &self.config.issuer)
            .field("client_id", &self.config.client_id)
            .finish_non_exhaustive()
    }
}

impl Oidc {
    /// A handle for `config`; asks the provider nothing yet.
    ///
    /// # Errors
    /// When `ca_file` does not load.
    pub fn new(config: &OidcConfig, cache_ttl: Duration) -> Result<Oidc, TlsError> {
        Ok(Oidc {
            http: HttpClient::new(config.ca_file.as_deref(), config.request_timeout)?,
            config: config.clone(),
            provider: tokio::sync::Mutex::new(Discovered::default()),
            links: session::Links::new(cache_ttl),
        })
    }

    /// The provider's metadata and keys, discovered on first use and kept for
    /// [`METADATA_MAX_AGE`]. One discovery runs at a time; callers meanwhile wait for it.
    async fn metadata(&self) -> Result<CoreProviderMetadata, OidcError> {
        let mut provider = self.provider.lock().await;
        if let Some((metadata, at)) = &provider.metadata {
            if at.elapsed() < METADATA_MAX_AGE {
                return Ok(metadata.clone());
            }
        }
        if provider
            .failed_at
            .is_some_and(|t| t.elapsed() < RETRY_AFTER)
        {
            return Err(OidcError::Unavailable(
                "discovery failed moments ago; retrying shortly".into(),
            ));
        }
        let issuer = IssuerUrl::new(self.config.issuer.clone())
            .map_err(|e| OidcError::Invalid(e.to_string()))?;
        match CoreProviderMetadata::discover_async(issuer, &self.http).await {
            Ok(metadata) => {
                tracing::info!(issuer = %self.config.issuer, "openid connect provider discovered");
                provider.metadata = Some((metadata.clone(), Instant::now()));
                provider.failed_at = None;
                Ok(metadata)
            }
            Err(e) => {
                provider.failed_at = Some(Instant::now());
                let error = error_chain(&e);
                tracing::warn!(issuer = %self.config.issuer, %error, "openid connect discovery failed");
                // A stale copy beats none while the provider is away.
                match &provider.metadata {
                    Some((metadata, _)) => Ok(metadata.clone()),
                    None => Err(OidcError::Unavailable(error)),
                }
            }
        }
    }

    /// Reads the key set again after a token named a key id the cached set lacks; false when
    /// it was read again moments ago (then the token is judged on the keys at hand). The read
    /// of discovery does not count: a rotation right after start is picked up at once.
    async fn reread_keys(&self) -> Result<bool, OidcError> {
        let mut provider = self.provider.lock().await;
        if provider
            .keys_read_at
            .is_some_and(|t| t.elapsed() < RETRY_AFTER)
        {
            return Ok(false);
        }
        let Some(uri) = provider
            .metadata
            .as_ref()
            .map(|(m, _)| m.jwks_uri().clone())
        else {
            return Ok(false);
        };
        provider.keys_read_at = Some(Instant::now());
        let keys = JsonWebKeySet::fetch_async(&uri, &self.http)
            .await
            .map_err(|e| OidcError::Unavailable(error_chain(&e)))?;
        tracing::info!(issuer = %self.config.issuer, "openid connect key set read again");
        if let Some((metadata, _)) = &mut provider.metadata {
            *metadata = metadata.clone().set_jwks(keys);
        }
        Ok(true)
    }

    /// The client for the discovered `metadata`; `redirect_uri` for the authorization and code
    /// legs (a refresh has none).
    fn client(
        &self,
        metadata: CoreProviderMetadata,
        redirect_uri: Option<&str>,
    ) -> Result<Client, OidcError> {
        let client = CoreClient::from_provider_metadata(
            metadata,
            ClientId::new(self.config.client_id.clone()),
            Some(ClientSecret::new(
                self.config.client_secret.expose().to_owned(),
            )),
        );
        match redirect_uri {
            None => Ok(client),
            Some(uri) => RedirectUrl::new(uri.to_owned())
                .map(|r| client.set_redirect_uri(r))
                .map_err(|e| OidcError::Invalid(e.to_string())),
        }
    }

    /// The provider's authorization URL for a code flow with `state`, `nonce` and the PKCE
    /// challenge of `verifier` (S256), coming back to `redirect_uri`.
    pub async fn authorize_url(
        &self,
        redirect_uri: &str,
        state: &str,
        nonce: &str,
        verifier: &str,
    ) -> Result<String, OidcError> {
        let client = self.client(self.metadata().await?, Some(redirect_uri))?;
        let challenge = PkceCodeChallenge::from_code_verifier_sha256(&PkceCodeVerifier::new(
            verifier.to_owned(),
        ));
        let (state, nonce) = (state.to_owned(), nonce.to_owned());
        let (url, _, _) = client
            .authorize_url(
                AuthenticationFlow::<CoreResponseType>::AuthorizationCode,
                move || CsrfToken::new(state),
                move || Nonce::new(nonce),
            )
            .add_scopes(
                self.config
                    .scopes
                    .iter()
                    .filter(|s| *s != "openid")
                    .map(|s| Scope::new(s.clone())),
            )
            .set_pkce_challenge(challenge)
            .url();
        Ok(url.into())
    }

    /// Exchanges an authorization code (with its PKCE verifier), verifies the ID token against
    /// `nonce`, and reads the user info endpoint when the provider has one.
    pub async fn exchange(
        &self,
        code: &str,
        verifier: &str,
        redirect_uri: &str,
        nonce: &str,
    ) -> Result<Login, OidcError> {
        let client = self.client(self.metadata().await?, Some(redirect_uri))?;
        let token = client
            .exchange_code(AuthorizationCode::new(code.to_owned()))
            .map_err(|e| OidcError::Invalid(e.to_string()))?
            .set_pkce_verifier(PkceCodeVerifier::new(verifier.to_owned()))
            .request_async(&self.http)
            .await
            .map_err(token_error)?;
        let id_token = token.id_token().ok_or(OidcError::NoIdToken)?;
        let nonce = Nonce::new(nonce.to_owned());
        let identity = self.verify(&client, id_token, &nonce).await?;
        // The signature and the checks passed: the payload is the provider's word.
        let mut claims = jwt_payload(&id_token.to_string())?;
        if let Some(endpoint) = client.user_info_url() {
            let info = self
                .user_info(endpoint.url().as_str(), token.access_token())
                .await?;
            if let Some(info) = info {
                if info.get("sub").and_then(Value::as_str) != Some(identity.subject.as_str()) {
                    return Err(OidcError::Invalid(
                        "the user info's sub is not the ID token's".into(),
                    ));
                }
                claims.extend(info);
            }
        }
        Ok(Login {
            identity,
            claims,
            refresh_token: token.refresh_token().map(|t| t.secret().clone()),
            expires_at: expiry(token.expires_in()),
        })
    }

    /// Verifies `id_token` with `client`'s verifier (the signature against the provider's
    /// keys, `iss`, `aud`, `azp`, `exp`) and `nonce`; on a key id the cached key set lacks, reads
    /// the key set again and verifies once more. Returns who it names.
    async fn verify<N: NonceVerifier + Copy>(
        &self,
        client: &Client,
        id_token: &CoreIdToken,
        nonce: N,
    ) -> Result<Identity, OidcError> {
        let identity = |claims: &CoreIdTokenClaims| Identity {
            issuer: claims.issuer().to_string(),
            subject: claims.subject().to_string(),
        };
        match id_token.claims(&client.id_token_verifier(), nonce) {
            Ok(claims) => Ok(identity(claims)),
            Err(ClaimsVerificationError::SignatureVerification(
                SignatureVerificationError::NoMatchingKey,
            )) if self.reread_keys().await? => {
                let metadata = self.metadata().await?;
                let client = self.client(metadata, None)?;
                let verified = id_token
                    .claims(&client.id_token_verifier(), nonce)
                    .map(identity)
                    .map_err(|e| OidcError::IdToken(error_chain(&e)));
                verified
            }
            Err(e) => Err(OidcError::IdToken(error_chain(&e))),
        }
    }

    /// The user info endpoint's JSON claims; `None` when it answers in a form other than
    /// JSON (a signed or encrypted JWT), in which case the ID token's claims stand alone.
    async fn user_info(
        &self,
        url: &str,
        access_token: &AccessToken,
    ) -> Result<Option<Map<String, Value>>, OidcError> {
        let req = ::http::Request::get(url)
            .header(::http::header::ACCEPT, "application/json")
            .header(
                ::http::header::AUTHORIZATION,
                format!("Bearer {}", access_token.secret()),
            )
            .body(Vec::new())
            .map_err(|e| OidcError::Invalid(e.to_string()))?;
        let resp = self.http.send(req).await.map_err(unavailable)?;
        if !resp.status().is_success() {
            return Err(OidcError::Invalid(format!(
                "the user info endpoint answered {}",
                resp.status()
            )));
        }
        let json = resp
            .headers()
            .get(::http::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.starts_with("application/json"));
        if !json {
            tracing::debug!("user info is not plain JSON; using the ID token's claims");
            return Ok(None);
        }
        serde_json::from_slice(resp.body())
            .map(Some)
            .map_err(|e| OidcError::Invalid(format!("user info: {e}")))
    }

    /// Uses a refresh token (the redirect URI is not part of a refresh) of the session of
    /// `subject`. An ID token in the answer is verified as at login (OpenID Connect Core
    /// §12.2), except for its nonce, and must name the same `sub`: [`OidcError::IdToken`]
    /// otherwise, and also when the session's subject is not known (`None`: a session
    /// recorded before subjects were).
    pub async fn refresh(
        &self,
        refresh_token: &str,
        subject: Option<&str>,
    ) -> Result<Refreshed, OidcError> {
        let client = self.client(self.metadata().await?, None)?;
        let refresh = RefreshToken::new(refresh_token.to_owned());
        let token = client
            .exchange_refresh_token(&refresh)
            .map_err(|e| OidcError::Invalid(e.to_string()))?
            .request_async(&self.http)
            .await
            .map_err(token_error)?;
        if let Some(id_token) = token.id_token() {
            // The login's nonce is not kept; the refreshed token may repeat it or not.
            let any_nonce = |_: Option<&Nonce>| -> Result<(), String> { Ok(()) };
            let identity = self.verify(&client, id_token, any_nonce).await?;
            if Some(identity.subject.as_str()) != subject {
                return Err(OidcError::IdToken(
                    "the refreshed ID token names another subject".into(),
                ));
            }
        }
        Ok(Refreshed {
            refresh_token: token.refresh_token().map(|t| t.secret().clone()),
            expires_at: expiry(token.expires_in()),
        })
    }
}

fn expiry(expires_in: Option<Duration>) -> Option<OffsetDateTime> {
    let secs = i64::try_from(expires_in?.as_secs()).ok()?;
    OffsetDateTime::now_utc().checked_add(time::Duration::seconds(secs))
}

fn unavailable(e: HttpError) -> OidcError {
    OidcError::Unavailable(e.to_string())
}

/// Sorts a token endpoint failure: the provider's OAuth error, no answer, or nonsense.
fn token_error<T>(e: RequestTokenError<HttpError, T>) -> OidcError
where
    T: openidconnect::ErrorResponse + 'static,
{
    match e {
        RequestTokenError::ServerResponse(r) => {
            // The standard error response serializes as {"error", "error_description"?}.
            let value = serde_json::to_value(&r).unwrap_or(Value::Null);
            let text = |k: &str| {
                value
                    .get(k)
                    .and_then(Value::as_str)
                    .unwrap_or("")
                    .to_owned()
            };
            OidcError::Refused {
                error: text("error"),
                description: text("error_description"),
            }
        }
        RequestTokenError::Request(e) => unavailable(e),
        other => OidcError::Invalid(error_chain(&other)),
    }
}

/// The claims of a compact JWS, decoded without checking anything: call it only on a token
/// whose signature and claims were verified.
fn jwt_payload(jwt: &str) -> Result<Map<String, Value>, OidcError> {
    use base64ct::{Base64UrlUnpadded, Encoding};
    let payload = jwt
        .split('.')
        .nth(1)
        .ok_or_else(|| OidcError::IdToken("not a compact JWS".into()))?;
    let bytes = Base64UrlUnpadded::decode_vec(payload.trim_end_matches('='))
        .map_err(|e| OidcError::IdToken(format!("payload: {e}")))?;
    serde_json::from_slice(&bytes).map_err(|e| OidcError::IdToken(format!("payload: {e}")))
}

/// An error with its sources, on one line.
fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    crate::report::ErrorChain(e).to_string()
}

/// Claim value → site roles, and the roles a user gets from the claims (`default_roles`, then
/// the mapped values of `role_claim`, without repeats).
pub fn roles_from(config: &OidcConfig, claims: &Map<String, Value>) -> Vec<String> {
    let mut roles: Vec<String> = Vec::new();
    let mut add = |role: &String| {
        if !roles.contains(role) {
            roles.push(role.clone());
        }
    };
    config.default_roles.iter().for_each(&mut add);
    let Some(claim) = &config.role_claim else {
        return roles;
    };
    let values: Vec<&str> = match claims.get(claim) {
        Some(Value::String(s)) => vec![s.as_str()],
        Some(Value::Array(items)) => items.iter().filter_map(Value::as_str).collect(),
        _ => Vec::new(),
    };
    let map: &BTreeMap<String, Vec<String>> = &config.role_map;
    for value in values {
        if let Some(mapped) = map.get(value) {
            mapped.iter().for_each(&mut add);
        }
    }
    roles
}
