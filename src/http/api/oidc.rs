//! `GET {api.prefix}/users/oidc/callback`: both legs of an OpenID Connect login (authorization
//! code flow with PKCE S256, `state` and `nonce`), as Coder's route of the same name.
//!
//! - **Start** (no `code`): a random `state` (or the `convert-` state named by
//!   `oidc_merge_state`, spec §6.4), a `nonce` and a PKCE verifier are stored server-side under
//!   the state for `oidc.login_timeout`, with the SHA-256 of a random binding secret that goes
//!   to the browser in the [`BINDING_COOKIE`]; the browser is sent (307) to the provider. An
//!   optional `redirect` names where to land afterwards: a path on this site, or a URL on a
//!   host in `session.allowed_redirect_hosts` ([`redirect::safe`]).
//! - **Return** (`code` and `state`): the state's record is taken (single use), and only by
//!   the browser holding its binding cookie, so a state copied into another browser is
//!   useless. The code is exchanged, the ID token verified, the user found by its link to the
//!   provider account (issuer and subject), else on a first login by verified email or created
//!   (`oidc.create_users`) and linked ([`sign_in`]), and a session issued exactly like a password login (the
//!   `coder_session_token` cookie, login type `oidc`); then a 307 to `redirect`. A `convert-`
//!   state completes a login-type conversion instead ([`super::convert`]).
//!
//! Because records live in the store, a login started on one replica completes on any other.
//! Every refusal answers with Coder's body and, where Coder has one, Coder's message.

use std::collections::HashMap;
use std::sync::Arc;

use http::header::{HeaderValue, HOST, LOCATION, SET_COOKIE};
use http::{Request, Response, StatusCode};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use time::OffsetDateTime;

use super::convert;
use crate::auth::token::{self, RngError};
use crate::headers::{X_FORWARDED_HOST, X_FORWARDED_PROTO};
use crate::http::api::login::{
    clear_cookie, new_session_key, session_cookie, set_cookie, wrong_login_type, Failed,
};
use crate::http::api::{self, ApiResult};
use crate::http::app::App;
use crate::http::audit::{self, Audit, Event};
use crate::http::body::{Body, ReqBody};
use crate::http::error::Error;
use crate::http::peer::Peer;
use crate::http::sign_in::redirect;
use crate::metrics::LoginResult;
use crate::oidc::{Identity, Login, Oidc, OidcError};
use crate::store::{keys, LoginType, OidcLink, User, UserStatus};
use crate::users::{NewUser, UserError};

/// The cookie binding a login in progress to the browser that started it.
pub const BINDING_COOKIE: &str = "portcullis_oidc";

/// What the start leg stores under `oidc-flow:<state>`.
#[derive(Serialize, Deserialize)]
struct Flow {
    /// Hex SHA-256 of the binding cookie's value.
    binding: String,
    /// The PKCE verifier.
    verifier: String,
    nonce: String,
    /// The callback URL sent to the provider; the exchange repeats it.
    redirect_uri: String,
    /// Where the browser goes afterwards: a path on this site.
    redirect: String,
}

// === impl Flow ===

impl std::fmt::Debug for Flow {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Flow")
            .field("redirect", &self.redirect)
            .finish_non_exhaustive()
    }
}

/// The handler of `GET /users/oidc/callback`: 404 when OIDC is not configured.
pub async fn callback(app: &Arc<App>, peer: &Peer, req: Request<impl ReqBody>) -> ApiResult {
    let Some(oidc) = app.oidc.as_deref() else {
        return Err(Error::coder(
            StatusCode::NOT_FOUND,
            "OpenID Connect is not configured.",
            "",
        ));
    };
    // Both legs are in the login group (spec §0.5): a start stores a record, a return costs a
    // token exchange with the provider.
    api::limit_login(app, peer, req.headers()).await?;
    let query = query(&req);
    if let Some(error) = query.get("error") {
        // OAuth 2.0 §4.1.2.1: the provider refused (a denied consent, a bad scope). Its state
        // is spent with it.
        if let Some(state) = query.get("state") {
            let _ = app.store.take_ephemeral(&flow_key(state)).await;
        }
        return Err(Error::coder(
            StatusCode::BAD_REQUEST,
            format!("Encountered error in oidc process: {error}"),
            query.get("error_description").cloned().unwrap_or_default(),
        ));
    }
    let Some(code) = query.get("code") else {
        return start(app, oidc, peer, &req, &query).await;
    };
    let mut attempted = String::new();
    let answer = finish(app, oidc, peer, &req, &query, code, &mut attempted).await;
    // A login comes back here; a conversion (§6) is not one.
    if !query
        .get("state")
        .is_some_and(|s| convert::is_convert_state(s))
    {
        app.metrics.login(match &answer {
            Ok(_) => LoginResult::Ok,
            Err(failed) => failed.result(),
        });
        // A success is audited where the user is known.
        if let Err(failed) = &answer {
            let client = peer.client_ip(req.headers(), &app.config.server.trusted_proxies);
            Audit::new(Event::Login, client)
                .method(audit::Method::Oidc)
                .attempted(&attempted)
                .failed(failed.reason())
                .emit();
        }
    }
    answer.map_err(Error::from)
}

/// The start leg: store the flow, bind it to this browser, send the browser to the provider.
async fn start(
    app: &App,
    oidc: &Oidc,
    peer: &Peer,
    req: &Request<impl ReqBody>,
    query: &HashMap<String, String>,
) -> ApiResult {
    let redirect = match query.get("redirect") {
        None => "/".to_owned(),
        Some(r) if redirect::safe(r, &app.config.session.allowed_redirect_hosts).is_some() => {
            r.clone()
        }
        Some(_) => {
            return Err(Error::coder(
                StatusCode::BAD_REQUEST,
                "Invalid redirect.",
                format!(
                    "redirect must be a path on this site, such as /dashboard, or a URL on a \
                     host in session.allowed_redirect_hosts, of at most {} bytes",
                    redirect::MAX_BYTES
                ),
            ))
        }
    };
    let state = match query.get("oidc_merge_state") {
        Some(merge) => {
            convert::check_pending(app, merge).await?;
            merge.clone()
        }
        None => random(32)?,
    };
    let binding = random(32)?;
    let flow = Flow {
        binding: hex_sha256(&binding),
        verifier: random(64)?,
        nonce: random(32)?,
        redirect_uri: redirect_uri(app, oidc, peer, req)?,
        redirect,
    };
    let url = oidc
        .authorize_url(&flow.redirect_uri, &state, &flow.nonce, &flow.verifier)
        .await
        .map_err(provider_error)?;
    let record = serde_json::to_vec(&flow).map_err(Error::internal)?;
    app.store
        .put_ephemeral(&flow_key(&state), &record, oidc.config.login_timeout)
        .await?;
    let mut resp = redirect_to(&url);
    resp.headers_mut().append(
        SET_COOKIE,
        binding_cookie(app, &binding, oidc.config.login_timeout.as_secs()),
    );
    Ok(resp)
}

/// The return leg; `attempted` gets the email the provider vouched for, once it is known. A
/// sign-in is audited here, where its user is known; a failure by the caller.
async fn finish(
    app: &App,
    oidc: &Oidc,
    peer: &Peer,
    req: &Request<impl ReqBody>,
    query: &HashMap<String, String>,
    code: &str,
    attempted: &mut String,
) -> Result<Response<Body>, Failed> {
    let state = query
        .get("state")
        .filter(|s| !s.is_empty())
        .ok_or_else(|| Error::coder(StatusCode::BAD_REQUEST, "State must be provided.", ""))?;
    let binding = token::cookie(req.headers(), BINDING_COOKIE).ok_or_else(|| {
        Error::coder(
            StatusCode::UNAUTHORIZED,
            format!("Cookie {BINDING_COOKIE:?} must be provided."),
            "",
        )
    })?;
    let mismatch = || Error::coder(StatusCode::UNAUTHORIZED, "State mismatched.", "");
    let key = flow_key(state);
    // Read, check the binding, then take: a stranger who learned the state cannot spend it.
    let record = app.store.get_ephemeral(&key).await?.ok_or_else(mismatch)?;
    let flow: Flow = serde_json::from_slice(&record).map_err(Error::internal)?;
    let presented = hex_sha256(&String::from_utf8_lossy(binding));
    if !bool::from(presented.as_bytes().ct_eq(flow.binding.as_bytes())) {
        return Err(mismatch().into());
    }
    if app.store.take_ephemeral(&key).await?.is_none() {
        return Err(mismatch().into());
    }

    // RFC 9207: a provider that names itself in its response must be the configured one.
    if query
        .get("iss")
        .is_some_and(|iss| *iss != oidc.config.issuer)
    {
        return Err(Error::coder(
            StatusCode::BAD_REQUEST,
            "Failed to verify OIDC token.",
            "the authorization response comes from another issuer",
        )
        .into());
    }
    let login = oidc
        .exchange(code, &flow.verifier, &flow.redirect_uri, &flow.nonce)
        .await
        .map_err(exchange_error)?;
    let email = email_of(oidc, &login.claims)?;
    attempted.clone_from(&email);

    let mut resp = if convert::is_convert_state(state) {
        convert::complete(app, oidc, req, state, &login, &email).await?;
        let mut resp = redirect_to(&flow.redirect);
        resp.headers_mut().append(SET_COOKIE, clear_cookie(app));
        resp
    } else {
        let client = peer.client_ip(req.headers(), &app.config.server.trusted_proxies);
        let audit = Audit::new(Event::Login, client).method(audit::Method::Oidc);
        let user = sign_in(app, oidc, &login, &email).await?;
        let token = new_session_key(app, &user, peer, LoginType::Oidc).await?;
        audit.user(user.id, &user.email).emit();
        if let (Some(refresh_token), Some(expires_at)) = (&login.refresh_token, login.expires_at) {
            let subject = &login.identity.subject;
            app.oidc_sessions()
                .remember(oidc, &token, subject, refresh_token, expires_at)
                .await;
        }
        let mut resp = redirect_to(&flow.redirect);
        resp.headers_mut()
            .append(SET_COOKIE, session_cookie(app, &token));
        resp
    };
    resp.headers_mut()
        .append(SET_COOKIE, binding_cookie(app, "", 0));
    Ok(resp)
}

/// The user an OIDC login signs in: the one linked to the login's (issuer, subject), as
/// Coder's `user_links`. Without a link, the email is used once, and only when the provider
/// vouches for it ([`check_verified`]): the user with that email, unless it is linked to
/// another subject of this issuer, or a new user when `create_users` allows; that user is then
/// linked. Refuses users of another login type and suspended users with Coder's messages;
/// activates a dormant user; applies `role_claim` when configured.
async fn sign_in(app: &App, oidc: &Oidc, login: &Login, email: &str) -> Result<User, Failed> {
    let claims = &login.claims;
    let identity = &login.identity;
    let (user, linked) = match app
        .store
        .user_by_oidc(&identity.issuer, &identity.subject)
        .await?
    {
        Some(user) => (user, true),
        None => {
            check_verified(oidc, claims, email)?;
            match app.store.user_by_email(email).await? {
                Some(user) => (user, false),
                None if !oidc.config.create_users => {
                    return Err(Error::coder(
                        StatusCode::FORBIDDEN,
                        "Signups are not allowed for login type \"oidc\"",
                        "",
                    )
                    .into());
                }
                None => {
                    let user = create(app, oidc, claims, email).await?;
                    link(app, &user, identity).await?;
                    return Ok(user);
                }
            }
        }
    };
    if user.login_type != LoginType::Oidc {
        return Err(wrong_login_type(LoginType::Oidc, user.login_type).into());
    }
    if !linked {
        link(app, &user, identity).await?;
    }
    if user.status == UserStatus::Suspended {
        return Err(Failed::suspended());
    }
    // Only the fields meant, on the stored user as it is now: a suspension made meanwhile
    // stays, and refuses the sign-in.
    let roles = oidc
        .config
        .role_claim
        .is_some()
        .then(|| crate::oidc::roles_from(&oidc.config, claims));
    let now = OffsetDateTime::now_utc();
    let mut changed = false;
    let user = app
        .store
        .modify_user(user.id, |stored| {
            changed = false;
            if stored.status == UserStatus::Dormant {
                stored.status = UserStatus::Active;
                changed = true;
            }
            if let Some(roles) = roles.as_ref().filter(|r| **r != stored.roles) {
                stored.roles.clone_from(roles);
                changed = true;
            }
            if changed {
                stored.updated_at = now;
            }
            changed
        })
        .await?
        .ok_or_else(|| Failed::from(Error::NotFound))?;
    if changed {
        app.oidc_sessions().invalidate_user(user.id).await;
    }
    if user.status == UserStatus::Suspended {
        return Err(Failed::suspended());
    }
    Ok(user)
}

/// Links `user` to the provider account `identity`; 403 when the user is linked to another
/// subject of the issuer, or the subject to another user.
pub async fn link(app: &App, user: &User, identity: &Identity) -> Result<(), Error> {
    let refused = |detail: &str| {
        Error::coder(
            StatusCode::FORBIDDEN,
            format!(
                "The user with the email {:?} is linked to another account of the OIDC provider.",
                user.email
            ),
            detail.to_owned(),
        )
    };
    match app
        .store
        .link_oidc(user.id, &identity.issuer, &identity.subject)
        .await?
    {
        OidcLink::Linked => Ok(()),
        OidcLink::UserHasOtherSubject => Err(refused(
            "The provider account that signed in has the same email address but another subject. Sign in with the account first linked, or ask an administrator.",
        )),
        OidcLink::SubjectTaken => Err(Error::coder(
            StatusCode::FORBIDDEN,
            "This account of the OIDC provider is linked to another user.",
            "",
        )),
        OidcLink::NoSuchUser => Err(Error::NotFound),
    }
}

/// Whether the provider vouches for the email of a login: `email_verified` must be the JSON
/// boolean `true` (OpenID Connect Core §5.1). False, missing, or anything else (the strings
/// `"true"` and `"false"` included) is refused with Coder's message, unless
/// `oidc.ignore_email_verified` is set (Coder's `--oidc-ignore-email-verified`), which skips
/// the check.
pub fn check_verified(oidc: &Oidc, claims: &Map<String, Value>, email: &str) -> Result<(), Error> {
    let detail = match claims.get("email_verified") {
        _ if oidc.config.ignore_email_verified => return Ok(()),
        Some(Value::Bool(true)) => return Ok(()),
        Some(Value::Bool(false)) => String::new(),
        None => "The provider did not send the email_verified claim. If it never does, set oidc.ignore_email_verified = true.".to_owned(),
        Some(other) => format!("email_verified must be the JSON boolean true; the provider sent {other}."),
    };
    Err(Error::coder(
        StatusCode::FORBIDDEN,
        format!("Verify the {email:?} email address on your OIDC provider to authenticate!"),
        detail,
    ))
}

/// Creates the user of a first OIDC login: active, login type `oidc`, no password, in the
/// default organization, with `default_roles` and the mapped roles. The username comes from
/// `username_claim` (else the email's local part), shaped to Coder's rule; a taken one gets a
/// random suffix.
async fn create(
    app: &App,
    oidc: &Oidc,
    claims: &Map<String, Value>,
    email: &str,
) -> Result<User, Error> {
    let wanted = claims
        .get(&oidc.config.username_claim)
        .and_then(Value::as_str)
        .unwrap_or_else(|| email.split('@').next().unwrap_or(""));
    let base = username_from(wanted);
    let name: String = claims
        .get("name")
        .and_then(Value::as_str)
        .unwrap_or("")
        .trim()
        .chars()
        .take(128)
        .collect();
    let mut username = base.clone();
    for _ in 0..10 {
        let new = NewUser {
            email: email.to_owned(),
            username: username.clone(),
            name: name.trim().to_owned(),
            password: None,
            login_type: LoginType::Oidc,
            status: UserStatus::Active,
            roles: crate::oidc::roles_from(&oidc.config, claims),
            organization_ids: Vec::new(),
        };
        match app.users().create(new).await {
            Ok((user, _)) => return Ok(user),
            Err(UserError::Conflict("username")) => {
                let suffix = random(4)?.to_ascii_lowercase();
                let stem: String = base.chars().take(32 - 5).collect();
                username = format!("{}-{suffix}", stem.trim_end_matches('-'));
            }
            // Another login of the same new user won the race: sign that user in.
            Err(UserError::Conflict("email")) => {
                return app
                    .store
                    .user_by_email(email)
                    .await?
                    .ok_or_else(|| Error::internal("a user vanished after an email conflict"))
            }
            Err(e) => return Err(e.into()),
        }
    }
    Err(Error::coder(
        StatusCode::CONFLICT,
        format!("exhausted alternatives for taken username {base:?}"),
        "",
    ))
}

/// The email address of a login, checked (Coder's messages): a string in `email_claim` (or,
/// as Coder, an email-shaped `username_claim`), and a domain in `allowed_domains` when that
/// is set. Whether it is verified matters only where the email links an account
/// ([`check_verified`]).
pub fn email_of(oidc: &Oidc, claims: &Map<String, Value>) -> Result<String, Error> {
    let config = &oidc.config;
    let raw = match claims.get(&config.email_claim) {
        Some(v) => v,
        None => match claims.get(&config.username_claim) {
            Some(Value::String(u)) if crate::coder::looks_like_email(u) => {
                &claims[&config.username_claim]
            }
            _ => {
                return Err(Error::coder(
                    StatusCode::BAD_REQUEST,
                    "No email found in OIDC payload!",
                    "",
                ))
            }
        },
    };
    let Value::String(email) = raw else {
        return Err(Error::coder(
            StatusCode::BAD_REQUEST,
            format!("Email in OIDC payload isn't a string. Got: {raw}"),
            "",
        ));
    };
    if !config.allowed_domains.is_empty() {
        let domain = email.rsplit_once('@').map(|(_, d)| d.to_ascii_lowercase());
        if !domain.is_some_and(|d| config.allowed_domains.contains(&d)) {
            let list: Vec<String> = config
                .allowed_domains
                .iter()
                .map(|d| format!("{d:?}"))
                .collect();
            return Err(Error::coder(
                StatusCode::FORBIDDEN,
                format!(
                    "Your email {email:?} is not in domains [{}]!",
                    list.join(" ")
                ),
                "",
            ));
        }
    }
    Ok(email.clone())
}

/// Coder's `UsernameFrom`: lowercase, runs of characters outside `[a-z0-9]` become one `-`,
/// no `-` at either end, at most 32 characters; something random when nothing is left.
fn username_from(wanted: &str) -> String {
    let mut out = String::new();
    for c in wanted.chars().flat_map(char::to_lowercase) {
        if c.is_ascii_alphanumeric() {
            out.push(c);
        } else if !out.is_empty() && !out.ends_with('-') {
            out.push('-');
        }
    }
    let out: String = out.chars().take(32).collect();
    let out = out.trim_matches('-').to_owned();
    if out.is_empty() || matches!(out.as_str(), "new" | "create") {
        format!(
            "user-{}",
            random(8).unwrap_or_default().to_ascii_lowercase()
        )
    } else {
        out
    }
}

/// The callback URL: `oidc.redirect_url`, else built from what the client asked for. Behind
/// trusted proxies their `X-Forwarded-Proto`/`-Host` count.
fn redirect_uri(
    app: &App,
    oidc: &Oidc,
    peer: &Peer,
    req: &Request<impl ReqBody>,
) -> Result<String, Error> {
    if let Some(url) = &oidc.config.redirect_url {
        return Ok(url.clone());
    }
    let forwarded = |name| {
        peer.trusted
            .then(|| req.headers().get(name))
            .flatten()
            .and_then(|v: &HeaderValue| v.to_str().ok())
            .and_then(|v| v.split(',').next())
            .map(|v| v.trim().to_owned())
    };
    let scheme = match forwarded(&X_FORWARDED_PROTO) {
        Some(p) if p.eq_ignore_ascii_case("https") => "https",
        Some(p) if p.eq_ignore_ascii_case("http") => "http",
        _ if peer.tls => "https",
        _ => "http",
    };
    let host = forwarded(&X_FORWARDED_HOST)
        .or_else(|| {
            req.headers()
                .get(HOST)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned)
        })
        .or_else(|| req.uri().authority().map(|a| a.to_string()))
        .filter(|h| h.parse::<http::uri::Authority>().is_ok())
        .ok_or_else(|| {
            Error::coder(
                StatusCode::BAD_REQUEST,
                "Request is missing the Host header.",
                "",
            )
        })?;
    Ok(format!(
        "{scheme}://{host}{}/users/oidc/callback",
        app.config.api.prefix
    ))
}

/// Whether `r` is a path on this site ([`redirect::safe`] with no other host allowed).
pub fn is_local_path(r: &str) -> bool {
    redirect::safe(r, &[]).is_some()
}

fn flow_key(state: &str) -> String {
    keys::oidc_flow(state)
}

fn query(req: &Request<impl ReqBody>) -> HashMap<String, String> {
    let mut out = HashMap::new();
    let raw = req.uri().query().unwrap_or("");
    for (k, v) in openidconnect::url::form_urlencoded::parse(raw.as_bytes()) {
        out.entry(k.into_owned()).or_insert_with(|| v.into_owned());
    }
    out
}

/// `n` random symbols of `0-9A-Za-z`.
pub fn random(n: usize) -> Result<String, Error> {
    token::random_string(n).map_err(|e: RngError| Error::internal(e))
}

fn hex_sha256(s: &str) -> String {
    Sha256::digest(s.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// A 307 to `location` (Coder's status for both legs).
pub fn redirect_to(location: &str) -> Response<Body> {
    let mut resp = Response::new(Body::empty());
    *resp.status_mut() = StatusCode::TEMPORARY_REDIRECT;
    if let Ok(v) = HeaderValue::from_str(location) {
        resp.headers_mut().insert(LOCATION, v);
    }
    resp
}

/// The binding cookie: scoped to the callback path, `SameSite=Lax` so that it comes back on
/// the provider's top-level redirect. An empty value with `max_age` 0 clears it.
fn binding_cookie(app: &App, value: &str, max_age: u64) -> HeaderValue {
    set_cookie(
        app,
        &format!(
            "{BINDING_COOKIE}={value}; Path={}/users/oidc/callback; Max-Age={max_age}; HttpOnly; SameSite=Lax",
            app.config.api.prefix
        ),
    )
}

/// A provider step that failed before any user was involved: 503 when the provider cannot be
/// reached, 502 when its answer is unusable.
pub fn provider_error(e: OidcError) -> Error {
    match e {
        e @ OidcError::Unavailable(_) => Error::coder(
            StatusCode::SERVICE_UNAVAILABLE,
            "Service unavailable.",
            "The OpenID Connect provider is not reachable. Try again shortly.",
        )
        .with_cause(e),
        other => Error::coder(
            StatusCode::BAD_GATEWAY,
            "Bad gateway.",
            "The OpenID Connect provider's answer could not be used.",
        )
        .with_cause(other),
    }
}

/// The code exchange's failures, with Coder's messages.
fn exchange_error(e: OidcError) -> Error {
    match e {
        OidcError::Refused { .. } => Error::coder(
            StatusCode::BAD_REQUEST,
            "Failed exchanging Oauth code.",
            e.to_string(),
        ),
        OidcError::NoIdToken => Error::coder(
            StatusCode::BAD_REQUEST,
            "id_token not found in response payload. Ensure your OIDC callback is configured correctly!",
            "",
        ),
        OidcError::IdToken(detail) => Error::coder(
            StatusCode::BAD_REQUEST,
            "Failed to verify OIDC token.",
            detail,
        ),
        other => provider_error(other),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_paths_on_this_site_are_redirect_targets() {
        for ok in ["/", "/dashboard", "/a/b?c=d&e=%2F", "/api/v2/users/me"] {
            assert!(is_local_path(ok), "{ok}");
        }
        for bad in [
            "",
            "dashboard",
            "//evil.example/",
            "/\\evil.example",
            "https://evil.example/",
            "/a\nb",
            "/a b",
        ] {
            assert!(!is_local_path(bad), "{bad:?}");
        }
    }

    #[test]
    fn usernames_are_shaped_to_coders_rule() {
        assert_eq!(
            username_from("Alice.Smith@Example.com"),
            "alice-smith-example-com"
        );
        assert_eq!(username_from("--bob--"), "bob");
        assert_eq!(username_from(&"x".repeat(40)), "x".repeat(32));
        let random = username_from("...");
        assert!(
            random.starts_with("user-") && random.len() == 13,
            "{random}"
        );
        let mut invalid = Vec::new();
        crate::users::validate_username(&username_from("Ünïcode_名前 user"), &mut invalid);
        assert!(invalid.is_empty(), "{invalid:?}");
    }
}
