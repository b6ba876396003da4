//! `[oidc]`: single sign-on through an OpenID Connect provider (`docs/oidc.md`). Absent,
//! Portcullis offers password login only.
//!
//! The client secret comes from `client_secret_file` (a file holding it; trailing white space
//! is dropped) or from `client_secret`, which is meant for the environment override
//! `PORTCULLIS_OIDC__CLIENT_SECRET`; exactly one of the two must be set. It is held as a
//! [`Secret`] and never logged.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use http::Uri;
use serde::Deserialize;

use super::{duration, ConfigError, Secret};
use crate::rbac::roles::explicit_site_roles;

/// The longest a `convert-` state may live (spec §6.3: five minutes). `convert_state_ttl` may
/// only shorten it.
pub const MAX_CONVERT_STATE_TTL: Duration = Duration::from_secs(5 * 60);

/// `[oidc]`, validated.
#[derive(Debug, Clone)]
pub struct OidcConfig {
    /// The provider's issuer URL (`issuer`, required): `https://`, or `http://` on a loopback
    /// host. Its `/.well-known/openid-configuration` is read on first use.
    pub issuer: String,
    /// The client id registered with the provider (`client_id`, required).
    pub client_id: String,
    /// The client secret (`client_secret_file` or `client_secret`).
    pub client_secret: Secret,
    /// Scopes asked for (`scopes`, default `["openid", "email", "profile"]`; `openid` is
    /// added when missing).
    pub scopes: Vec<String>,
    /// The claim holding the email address (`email_claim`, default `email`).
    pub email_claim: String,
    /// The claim a new user's username is made from (`username_claim`, default
    /// `preferred_username`).
    pub username_claim: String,
    /// Email domains allowed to sign in, lowercase without `@` (`allowed_domains`, default
    /// empty: any).
    pub allowed_domains: Vec<String>,
    /// Do not check the `email_verified` claim (`ignore_email_verified`, default false, as
    /// Coder's `--oidc-ignore-email-verified`): for a provider that verifies every address
    /// itself and does not send the claim. Otherwise a first login links by email only when
    /// `email_verified` is the JSON boolean `true`.
    pub ignore_email_verified: bool,
    /// Create a user on the first login of an unknown email (`create_users`, default true, as
    /// Coder's `--oidc-allow-signups`).
    pub create_users: bool,
    /// Site roles a created user gets (`default_roles`, default none).
    pub default_roles: Vec<String>,
    /// The claim whose values map to site roles (`role_claim`, default none: roles are not
    /// taken from the provider).
    pub role_claim: Option<String>,
    /// Claim value → site roles (`role_map`; a value is a role name or a list of them).
    pub role_map: BTreeMap<String, Vec<String>>,
    /// The callback URL registered with the provider (`redirect_url`); `None`: built from the
    /// request as `{scheme}://{host}{api.prefix}/users/oidc/callback`.
    pub redirect_url: Option<String>,
    /// The login button's text in `GET /users/authmethods` (`sign_in_text`, default empty).
    pub sign_in_text: String,
    /// The login button's icon in `GET /users/authmethods` (`icon_url`, default empty).
    pub icon_url: String,
    /// Trust only this CA bundle for the provider (`ca_file`); default: the system roots.
    pub ca_file: Option<PathBuf>,
    /// Deadline of each call to the provider: discovery, keys, token, user info
    /// (`request_timeout`, default 10 s).
    pub request_timeout: Duration,
    /// How long a login that went to the provider may take to come back (`login_timeout`,
    /// default 10 m): the life of its `state`.
    pub login_timeout: Duration,
    /// How long a `convert-` state of `POST /users/{user}/convert-login` stays valid
    /// (`convert_state_ttl`, default and maximum 5 m, Coder's fixed value; tests shorten it).
    pub convert_state_ttl: Duration,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct FileOidc {
    issuer: Option<String>,
    client_id: Option<String>,
    client_secret_file: Option<PathBuf>,
    client_secret: Option<String>,
    scopes: Option<Vec<String>>,
    email_claim: Option<String>,
    username_claim: Option<String>,
    #[serde(default)]
    allowed_domains: Vec<String>,
    #[serde(default)]
    ignore_email_verified: bool,
    create_users: Option<bool>,
    #[serde(default)]
    default_roles: Vec<String>,
    role_claim: Option<String>,
    #[serde(default)]
    role_map: BTreeMap<String, OneOrMany>,
    redirect_url: Option<String>,
    #[serde(default)]
    sign_in_text: String,
    #[serde(default)]
    icon_url: String,
    ca_file: Option<PathBuf>,
    request_timeout: Option<String>,
    login_timeout: Option<String>,
    convert_state_ttl: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum OneOrMany {
    One(String),
    Many(Vec<String>),
}

/// Validates `[oidc]`; relative paths resolve against `base`.
pub(super) fn parse(file: FileOidc, base: &Path) -> Result<OidcConfig, ConfigError> {
    let issuer = file
        .issuer
        .ok_or_else(|| ConfigError::invalid("oidc.issuer", "missing: the provider's issuer URL"))?;
    check_issuer(&issuer).map_err(|r| ConfigError::invalid("oidc.issuer", r))?;
    let client_id = file
        .client_id
        .filter(|c| !c.is_empty())
        .ok_or_else(|| ConfigError::invalid("oidc.client_id", "missing"))?;
    let client_secret = match (file.client_secret_file, file.client_secret) {
        (Some(_), Some(_)) => return Err(ConfigError::invalid(
            "oidc.client_secret",
            "set client_secret_file or client_secret (PORTCULLIS_OIDC__CLIENT_SECRET), not both",
        )),
        (None, None) => {
            return Err(ConfigError::invalid(
                "oidc.client_secret_file",
                "missing: set client_secret_file, or PORTCULLIS_OIDC__CLIENT_SECRET",
            ))
        }
        (Some(path), None) => {
            let path = base.join(path);
            let text = std::fs::read_to_string(&path).map_err(|e| {
                ConfigError::invalid(
                    "oidc.client_secret_file",
                    format!("{}: {e}", path.display()),
                )
            })?;
            secret("oidc.client_secret_file", text.trim_end())?
        }
        (None, Some(s)) => secret("oidc.client_secret", &s)?,
    };
    let mut scopes = file
        .scopes
        .unwrap_or_else(|| vec!["openid".into(), "email".into(), "profile".into()]);
    if scopes
        .iter()
        .any(|s| s.is_empty() || s.contains(char::is_whitespace))
    {
        return Err(ConfigError::invalid(
            "oidc.scopes",
            "a scope is empty or contains white space",
        ));
    }
    if !scopes.iter().any(|s| s == "openid") {
        scopes.insert(0, "openid".into());
    }
    let claim = |key: &str, value: Option<String>, default: &str| match value {
        Some(v) if v.is_empty() => Err(ConfigError::invalid(key, "must not be empty")),
        Some(v) => Ok(v),
        None => Ok(default.to_owned()),
    };
    let allowed_domains = file
        .allowed_domains
        .iter()
        .map(|d| d.trim().trim_start_matches('@').to_ascii_lowercase())
        .collect::<Vec<_>>();
    if allowed_domains.iter().any(String::is_empty) {
        return Err(ConfigError::invalid(
            "oidc.allowed_domains",
            "a domain is empty",
        ));
    }
    let default_roles = site_roles("oidc.default_roles", file.default_roles)?;
    let mut role_map = BTreeMap::new();
    for (value, roles) in file.role_map {
        let roles = match roles {
            OneOrMany::One(r) => vec![r],
            OneOrMany::Many(r) => r,
        };
        role_map.insert(value, site_roles("oidc.role_map", roles)?);
    }
    if !role_map.is_empty() && file.role_claim.is_none() {
        return Err(ConfigError::invalid(
            "oidc.role_map",
            "needs role_claim: the claim whose values it maps",
        ));
    }
    let redirect_url = file
        .redirect_url
        .map(|u| check_redirect_url(&u).map(|()| u))
        .transpose()
        .map_err(|r| ConfigError::invalid("oidc.redirect_url", r))?;
    let convert_state_ttl = duration(
        "oidc.convert_state_ttl",
        file.convert_state_ttl.as_deref(),
        "5m",
    )?;
    if convert_state_ttl > MAX_CONVERT_STATE_TTL {
        return Err(ConfigError::invalid(
            "oidc.convert_state_ttl",
            "must be at most 5m (Coder's lifetime of a conversion)",
        ));
    }
    Ok(OidcConfig {
        issuer,
        client_id,
        client_secret,
        scopes,
        email_claim: claim("oidc.email_claim", file.email_claim, "email")?,
        username_claim: claim(
            "oidc.username_claim",
            file.username_claim,
            "preferred_username",
        )?,
        allowed_domains,
        ignore_email_verified: file.ignore_email_verified,
        create_users: file.create_users.unwrap_or(true),
        default_roles,
        role_claim: file
            .role_claim
            .map(|c| claim("oidc.role_claim", Some(c), ""))
            .transpose()?,
        role_map,
        redirect_url,
        sign_in_text: file.sign_in_text,
        icon_url: file.icon_url,
        ca_file: file.ca_file.map(|p| base.join(p)),
        request_timeout: duration(
            "oidc.request_timeout",
            file.request_timeout.as_deref(),
            "10s",
        )?,
        login_timeout: duration("oidc.login_timeout", file.login_timeout.as_deref(), "10m")?,
        convert_state_ttl,
    })
}

fn secret(key: &str, value: &str) -> Result<Secret, ConfigError> {
    if value.is_empty() {
        return Err(ConfigError::invalid(key, "the client secret is empty"));
    }
    Ok(Secret(value.to_owned()))
}

/// `roles`, each a site role a user can hold ([`explicit_site_roles`]); the error lists
/// them.
fn site_roles(key: &str, roles: Vec<String>) -> Result<Vec<String>, ConfigError> {
    for role in &roles {
        if !explicit_site_roles().any(|r| r.name == role) {
            let known: Vec<&str> = explicit_site_roles().map(|r| r.name).collect();
            return Err(ConfigError::invalid(
                key,
                format!("{role:?} is not a site role (one of: {})", known.join(", ")),
            ));
        }
    }
    Ok(roles)
}

/// OpenID Connect Discovery §3 wants `https`; plain `http` is accepted only on a loopback
/// host, where nothing crosses a network.
fn check_issuer(issuer: &str) -> Result<(), String> {
    let uri: Uri = issuer
        .parse()
        .map_err(|e| format!("{issuer:?} is not a URL ({e})"))?;
    let host = uri.host().ok_or("has no host")?;
    if uri.query().is_some() {
        return Err("must not have a query".into());
    }
    match uri.scheme_str() {
        Some("https") => Ok(()),
        Some("http") if is_loopback(host) => Ok(()),
        Some("http") => Err("must be https:// (http:// only on a loopback host)".into()),
        _ => Err("must start with https://".into()),
    }
}

fn check_redirect_url(url: &str) -> Result<(), String> {
    let uri: Uri = url
        .parse()
        .map_err(|e| format!("{url:?} is not a URL ({e})"))?;
    match (uri.scheme_str(), uri.host()) {
        (Some("https" | "http"), Some(_)) if uri.query().is_none() => Ok(()),
        _ => Err("must be an absolute http(s) URL without a query".into()),
    }
}

fn is_loopback(host: &str) -> bool {
    let host = host.trim_start_matches('[').trim_end_matches(']');
    host.eq_ignore_ascii_case("localhost")
        || host.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use crate::config::{Config, ConfigError};

    const BASE: &str = "[upstream]\nurl = \"http://127.0.0.1:3000\"\n";

    fn parse(oidc: &str, env: &[(&str, &str)]) -> Result<Config, ConfigError> {
        let env = env.iter().map(|(k, v)| (k.to_string(), v.to_string()));
        Config::from_toml(
            &format!("{BASE}[oidc]\n{oidc}"),
            env,
            Path::new("/nonexistent"),
        )
    }

    const GOOD: &str = "issuer = \"https://id.example.com\"\nclient_id = \"portcullis\"\n";

    #[test]
    fn defaults_and_the_secret_from_the_environment() {
        let c = parse(GOOD, &[("PORTCULLIS_OIDC__CLIENT_SECRET", "s3cret")])
            .expect("valid")
            .oidc
            .expect("configured");
        assert_eq!(c.client_secret.expose(), "s3cret");
        assert!(
            !format!("{c:?}").contains("s3cret"),
            "the secret is redacted"
        );
        assert_eq!(c.scopes, ["openid", "email", "profile"]);
        assert_eq!(
            (c.email_claim.as_str(), c.username_claim.as_str()),
            ("email", "preferred_username")
        );
        assert!(c.create_users && c.allowed_domains.is_empty() && c.role_claim.is_none());
        assert!(
            !c.ignore_email_verified,
            "email_verified is checked by default"
        );
        assert_eq!(c.convert_state_ttl, super::MAX_CONVERT_STATE_TTL);
        let none = Config::from_toml(BASE, Vec::new(), Path::new("/")).expect("valid");
        assert!(none.oidc.is_none(), "no [oidc]: no single sign-on");
    }

    #[test]
    fn the_secret_comes_from_a_file_trimmed() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join("secret"), "from-file\n").expect("write");
        let text = format!("{BASE}[oidc]\n{GOOD}client_secret_file = \"secret\"\nscopes = [\"email\"]\nallowed_domains = [\"@Example.COM\"]\n");
        let c = Config::from_toml(&text, Vec::new(), dir.path())
            .expect("valid")
            .oidc
            .expect("configured");
        assert_eq!(c.client_secret.expose(), "from-file");
        assert_eq!(c.scopes, ["openid", "email"], "openid is always asked for");
        assert_eq!(c.allowed_domains, ["example.com"]);
    }

    #[test]
    fn bad_oidc_values_name_their_key() {
        let cases: &[(&str, &str)] = &[
            ("client_id = \"c\"\nclient_secret = \"s\"\n", "oidc.issuer"),
            ("issuer = \"http://id.example.com\"\nclient_id = \"c\"\nclient_secret = \"s\"\n", "oidc.issuer"),
            ("issuer = \"ftp://127.0.0.1\"\nclient_id = \"c\"\nclient_secret = \"s\"\n", "oidc.issuer"),
            ("issuer = \"https://id.example.com\"\nclient_secret = \"s\"\n", "oidc.client_id"),
            (GOOD, "oidc.client_secret_file"),
            ("issuer = \"https://id.example.com\"\nclient_id = \"c\"\nclient_secret = \"\"\n", "oidc.client_secret"),
            ("issuer = \"https://id.example.com\"\nclient_id = \"c\"\nclient_secret = \"s\"\nclient_secret_file = \"f\"\n", "oidc.client_secret"),
            ("issuer = \"https://id.example.com\"\nclient_id = \"c\"\nclient_secret_file = \"missing\"\n", "oidc.client_secret_file"),
            ("issuer = \"https://id.example.com\"\nclient_id = \"c\"\nclient_secret = \"s\"\ndefault_roles = [\"admin\"]\n", "oidc.default_roles"),
            ("issuer = \"https://id.example.com\"\nclient_id = \"c\"\nclient_secret = \"s\"\nrole_map = { a = \"owner\" }\n", "oidc.role_map"),
            ("issuer = \"https://id.example.com\"\nclient_id = \"c\"\nclient_secret = \"s\"\nrole_claim = \"g\"\nrole_map = { a = [\"owner\", \"root\"] }\n", "oidc.role_map"),
            ("issuer = \"https://id.example.com\"\nclient_id = \"c\"\nclient_secret = \"s\"\nredirect_url = \"/relative\"\n", "oidc.redirect_url"),
            ("issuer = \"https://id.example.com\"\nclient_id = \"c\"\nclient_secret = \"s\"\nconvert_state_ttl = \"6m\"\n", "oidc.convert_state_ttl"),
            ("issuer = \"https://id.example.com\"\nclient_id = \"c\"\nclient_secret = \"s\"\nscopes = [\"a b\"]\n", "oidc.scopes"),
            ("issuer = \"https://id.example.com\"\nclient_id = \"c\"\nclient_secret = \"s\"\nbogus = 1\n", "oidc.bogus"),
        ];
        for (text, key) in cases {
            match parse(text, &[]) {
                Err(ConfigError::Invalid { key: got, .. }) => assert_eq!(&got, key, "{text}"),
                other => panic!("{text}: expected an error on {key}, got {other:?}"),
            }
        }
        let loopback = "issuer = \"http://127.0.0.1:8080\"\nclient_id = \"c\"\nclient_secret = \"s\"\nrole_claim = \"groups\"\nrole_map = { admins = \"owner\", ops = [\"auditor\", \"user-admin\"] }\n";
        let c = parse(loopback, &[])
            .expect("http on loopback is allowed")
            .oidc
            .unwrap();
        assert_eq!(c.role_map["ops"], ["auditor", "user-admin"]);
    }
}
