//! Session tokens: their format, how their secrets are stored and compared, where a request
//! carries them, and how they are removed before the request goes upstream
//! (spec/coder-api.md §8).
//!
//! A token is `<key id>-<secret>`: a 10-symbol id and a 22-symbol secret over `0-9A-Za-z`
//! (≈131 bits of entropy in the secret). Only SHA-256 of the secret is ever stored, and the
//! comparison against it is constant-time (§8.2).
//!
//! [`extract`] and [`strip_credentials`] run on every proxied request, so neither allocates
//! unless the token sits in a percent-encoded query value or there is something to remove.

use std::borrow::Cow;
use std::fmt;
use std::str::FromStr;

use http::header::{HeaderMap, HeaderName, HeaderValue, AUTHORIZATION, COOKIE};
use http::uri::{PathAndQuery, Uri};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

pub use crate::model::{KeyId, KEY_ID_LEN};

/// The cookie that carries the session token (spec §3.4).
pub const SESSION_COOKIE: &str = "coder_session_token";
/// The header that carries the session token (spec §8.3).
pub static SESSION_TOKEN_HEADER: HeaderName = HeaderName::from_static("coder-session-token");
/// The query parameter that carries the session token, beside [`SESSION_COOKIE`]'s name.
pub const SESSION_TOKEN_QUERY: &str = SESSION_COOKIE;
/// The OAuth2-style query parameter that carries a token, read last (spec §8.3).
pub const ACCESS_TOKEN_QUERY: &str = "access_token";

/// Length of a [`Secret`].
pub const SECRET_LEN: usize = 22;

/// The 62 symbols of ids and secrets.
const ALPHABET: &[u8; 62] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

/// The secret half of a token. It has no `Display`, its `Debug` is redacted, and it compares
/// only through [`verify_secret`].
pub struct Secret([u8; SECRET_LEN]);

/// A whole session token. Its `Debug` shows the id only; the full string comes out once,
/// through [`Token::reveal`].
#[derive(Debug)]
pub struct Token {
    id: KeyId,
    secret: Secret,
}

/// Why a presented token was refused before any look-up. `Display` is the 401 `detail`
/// (spec §8.4).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    /// The token does not split on `-` into exactly two parts; holds the number of parts.
    #[error("Invalid API key format: incorrect amount of API key parts, expected 2 got {0}")]
    Parts(usize),
    /// The id is not 10 bytes long; holds its length.
    #[error("invalid API key ID length, expected 10 got {0}")]
    IdLength(usize),
    /// The secret is not 22 bytes long; holds its length.
    #[error("invalid API key secret length, expected 22 got {0}")]
    SecretLength(usize),
    /// The id has a symbol outside `0-9A-Za-z`, so no stored key can have it: Coder answers
    /// such a token with its unknown-id detail.
    #[error("API key is invalid.")]
    IdSymbol,
    /// The secret has a symbol outside `0-9A-Za-z`, so it can match no stored hash: Coder
    /// answers such a token with its mismatch detail.
    #[error("API key secret is invalid.")]
    SecretSymbol,
}

/// The operating system's random number generator failed.
#[derive(Debug, thiserror::Error)]
#[error("the operating system's random number generator failed: {0}")]
pub struct RngError(#[from] getrandom::Error);

// === impl KeyId ===

impl FromStr for KeyId {
    type Err = TokenError;

    /// Accepts exactly 10 symbols of `0-9A-Za-z`.
    fn from_str(s: &str) -> Result<Self, TokenError> {
        let bytes: [u8; KEY_ID_LEN] = s
            .as_bytes()
            .try_into()
            .map_err(|_| TokenError::IdLength(s.len()))?;
        KeyId::new(bytes).ok_or(TokenError::IdSymbol)
    }
}

// === impl Secret ===

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

// === impl Token ===

impl Token {
    /// A new token from the operating system's CSPRNG.
    ///
    /// Each symbol is drawn by rejection sampling: a random byte's low six bits are used when
    /// they are below 62 and discarded otherwise, so every symbol is equally likely.
    ///
    /// # Errors
    /// [`RngError`] when the operating system cannot supply randomness.
    pub fn generate() -> Result<Self, RngError> {
        let mut symbols = [0u8; KEY_ID_LEN + SECRET_LEN];
        fill_symbols(&mut symbols)?;
        let (id, secret) = symbols.split_at(KEY_ID_LEN);
        Ok(Token {
            id: KeyId::new(id.try_into().expect("split at KEY_ID_LEN"))
                .expect("ALPHABET is alphanumeric"),
            secret: Secret(secret.try_into().expect("the rest is SECRET_LEN long")),
        })
    }

    /// Parses a presented token with Coder's checks, in Coder's order: two parts, the id's
    /// length, the secret's length (spec §8.1). Lengths are counted in bytes, as Go does.
    ///
    /// # Errors
    /// The [`TokenError`] whose `Display` is the detail Coder sends with its 401.
    pub fn parse(s: &str) -> Result<Self, TokenError> {
        let (id, secret) = match s.split_once('-') {
            Some((id, secret)) if !secret.contains('-') => (id, secret),
            _ => return Err(TokenError::Parts(s.matches('-').count() + 1)),
        };
        if id.len() != KEY_ID_LEN {
            return Err(TokenError::IdLength(id.len()));
        }
        let secret: [u8; SECRET_LEN] = secret
            .as_bytes()
            .try_into()
            .map_err(|_| TokenError::SecretLength(secret.len()))?;
        let id = id.parse()?;
        if !secret.iter().all(u8::is_ascii_alphanumeric) {
            return Err(TokenError::SecretSymbol);
        }
        Ok(Token {
            id,
            secret: Secret(secret),
        })
    }

    /// The key id, to look the stored key up by.
    pub fn id(&self) -> &KeyId {
        &self.id
    }

    /// The secret, to hash or verify.
    pub fn secret(&self) -> &Secret {
        &self.secret
    }

    /// The full `<id>-<secret>` string, for the one response that hands a new token to its
    /// user (the login body and its cookie). Consumes the token so that this happens once;
    /// never log the result.
    pub fn reveal(self) -> String {
        let mut s = String::with_capacity(KEY_ID_LEN + 1 + SECRET_LEN);
        s.push_str(self.id.as_str());
        s.push('-');
        s.push_str(std::str::from_utf8(&self.secret.0).expect("a Secret holds only ASCII"));
        s
    }
}

impl FromStr for Token {
    type Err = TokenError;

    /// See [`Token::parse`].
    fn from_str(s: &str) -> Result<Self, TokenError> {
        Token::parse(s)
    }
}

/// `len` random symbols of `0-9A-Za-z` from the operating system's CSPRNG, drawn as
/// [`Token::generate`] draws them: for single-use values such as OAuth `state`s.
///
/// # Errors
/// [`RngError`] when the operating system cannot supply randomness.
pub fn random_string(len: usize) -> Result<String, RngError> {
    let mut symbols = vec![0u8; len];
    fill_symbols(&mut symbols)?;
    Ok(symbols.into_iter().map(char::from).collect())
}

/// Fills `out` with symbols of [`ALPHABET`] by rejection sampling: a random byte's low six
/// bits are used when they are below 62 and discarded otherwise, so every symbol is equally
/// likely.
fn fill_symbols(out: &mut [u8]) -> Result<(), RngError> {
    let mut filled = 0;
    // 62/64 of bytes are kept, so one batch of 48 almost always fills 32 symbols.
    let mut batch = [0u8; 48];
    while filled < out.len() {
        getrandom::fill(&mut batch)?;
        for b in batch {
            let v = usize::from(b & 0x3f);
            if let (Some(&symbol), Some(slot)) = (ALPHABET.get(v), out.get_mut(filled)) {
                *slot = symbol;
                filled += 1;
            }
        }
    }
    Ok(())
}

/// The value of the first non-empty cookie `name` in the request's `Cookie` headers.
pub fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a [u8]> {
    headers
        .get_all(COOKIE)
        .iter()
        .flat_map(|v| cookies(v.as_bytes()))
        .find(|(n, v)| *n == name.as_bytes() && !v.is_empty())
        .map(|(_, v)| v)
}

/// SHA-256 of the secret: the only form in which a secret is stored (spec §8.2).
pub fn hash_secret(secret: &Secret) -> [u8; 32] {
    Sha256::digest(secret.0).into()
}

/// Whether `secret` hashes to `stored`, compared in constant time.
pub fn verify_secret(secret: &Secret, stored: &[u8; 32]) -> bool {
    hash_secret(secret).ct_eq(stored).into()
}

/// The token a request presents, from the first of these that is present and non-empty, in
/// Coder's order (spec §8.3):
///
/// 1. the `coder_session_token` cookie (any `Cookie` header, any position);
/// 2. the `coder_session_token` query parameter;
/// 3. the `Coder-Session-Token` header;
/// 4. `Authorization: Bearer <token>`, the scheme matched case-insensitively;
/// 5. the `access_token` query parameter.
///
/// The cookie beats the header, as in Coder: a stale cookie masks a valid header. Query keys
/// and values are percent-decoded (`+` is a space) as Go's `url.ParseQuery` does, and a pair
/// with a bad escape is skipped like Go skips it; bytes that are not UTF-8 become U+FFFD, so
/// such a token is still found and then fails to parse. Only a value that needed decoding is
/// allocated.
pub fn extract<'a>(headers: &'a HeaderMap, uri: &'a Uri) -> Option<Cow<'a, str>> {
    if let Some(value) = cookie(headers, SESSION_COOKIE) {
        return Some(String::from_utf8_lossy(value));
    }
    if let Some(value) = query_value(uri, SESSION_TOKEN_QUERY) {
        return Some(value);
    }
    if let Some(value) = headers.get(&SESSION_TOKEN_HEADER) {
        if !value.is_empty() {
            return Some(String::from_utf8_lossy(value.as_bytes()));
        }
    }
    if let Some(token) = headers.get(AUTHORIZATION).and_then(bearer) {
        return Some(String::from_utf8_lossy(token));
    }
    query_value(uri, ACCESS_TOKEN_QUERY)
}

/// Removes every place a Portcullis token can travel so that none reaches the upstream:
///
/// - the `coder_session_token` cookie from every `Cookie` header. The other cookies are kept
///   byte-for-byte, rejoined with `; ` (RFC 6265 §4.2.1), and a header left empty is dropped;
/// - the `Coder-Session-Token` header in every spelling (any case, `_` for `-`, as some
///   frameworks fold one into the other);
/// - every `Authorization` header with the `Bearer` scheme (other schemes are kept);
/// - the `coder_session_token` and `access_token` query parameters, percent-encoded keys
///   included; the rest of the query is kept as it was. A pair that hides one of them behind
///   a `;` (a separator to some frameworks) is removed whole.
///
/// Allocates only when there is something to remove.
pub fn strip_credentials(headers: &mut HeaderMap, uri: &mut Uri) {
    strip_cookie(headers);
    while let Some(name) = headers
        .keys()
        .find(|n| is_session_token_header(n.as_str()))
        .cloned()
    {
        headers.remove(&name);
    }
    if headers
        .get_all(AUTHORIZATION)
        .iter()
        .any(|v| is_bearer(v.as_bytes()))
    {
        let kept: Vec<HeaderValue> = headers
            .get_all(AUTHORIZATION)
            .iter()
            .filter(|v| !is_bearer(v.as_bytes()))
            .cloned()
            .collect();
        headers.remove(AUTHORIZATION);
        for v in kept {
            headers.append(AUTHORIZATION, v);
        }
    }
    strip_query(uri);
}

/// The `(name, value)` cookies of one `Cookie` header, trimmed and unquoted as Go's
/// `readCookies` does.
fn cookies(header: &[u8]) -> impl Iterator<Item = (&[u8], &[u8])> {
    header.split(|&b| b == b';').filter_map(|part| {
        let part = part.trim_ascii();
        if part.is_empty() {
            return None;
        }
        let (name, value) = match part.iter().position(|&b| b == b'=') {
            Some(i) => (&part[..i], &part[i + 1..]),
            None => (part, &[][..]),
        };
        let value = value.trim_ascii();
        let value = match value {
            [b'"', inner @ .., b'"'] => inner,
            v => v,
        };
        Some((name.trim_ascii(), value))
    })
}

fn strip_cookie(headers: &mut HeaderMap) {
    let ours = |v: &HeaderValue| cookies(v.as_bytes()).any(|(n, _)| n == SESSION_COOKIE.as_bytes());
    if !headers.get_all(COOKIE).iter().any(ours) {
        return;
    }
    let kept: Vec<HeaderValue> = headers
        .get_all(COOKIE)
        .iter()
        .filter_map(|v| {
            if !ours(v) {
                return Some(v.clone());
            }
            let mut out = Vec::with_capacity(v.len());
            for part in v.as_bytes().split(|&b| b == b';') {
                let part = part.trim_ascii();
                let name = part.split(|&b| b == b'=').next().unwrap_or(part);
                if part.is_empty() || name.trim_ascii() == SESSION_COOKIE.as_bytes() {
                    continue;
                }
                if !out.is_empty() {
                    out.extend_from_slice(b"; ");
                }
                out.extend_from_slice(part);
            }
            // Trimmed pieces of a valid value form a valid value; were it not so, dropping the
            // header fails closed.
            HeaderValue::from_bytes(&out).ok().filter(|v| !v.is_empty())
        })
        .collect();
    headers.remove(COOKIE);
    for v in kept {
        headers.append(COOKIE, v);
    }
}

/// `coder-session-token`, also when spelled with `_` for `-` (names are already lowercase).
fn is_session_token_header(name: &str) -> bool {
    let want = SESSION_TOKEN_HEADER.as_str().as_bytes();
    name.len() == want.len()
        && name
            .bytes()
            .zip(want)
            .all(|(a, &b)| a == b || (a == b'_' && b == b'-'))
}

/// The token of an `Authorization: Bearer <token>` value, when non-empty.
fn bearer(value: &HeaderValue) -> Option<&[u8]> {
    let v = value.as_bytes();
    let space = v.iter().position(|&b| b == b' ')?;
    let (scheme, token) = (&v[..space], v[space..].trim_ascii());
    (scheme.eq_ignore_ascii_case(b"bearer") && !token.is_empty()).then_some(token)
}

/// Whether a value uses the `Bearer` scheme, token or not. Wider than [`bearer`] (any
/// whitespace ends the scheme) so that no lenient upstream can read a token we leave behind.
fn is_bearer(value: &[u8]) -> bool {
    let value = value.trim_ascii_start();
    let scheme = value.split(u8::is_ascii_whitespace).next().unwrap_or(value);
    scheme.eq_ignore_ascii_case(b"bearer")
}

/// The first non-empty value of query parameter `key`, decoded.
pub fn query_value<'a>(uri: &'a Uri, key: &str) -> Option<Cow<'a, str>> {
    uri.query()?.split('&').find_map(|pair| {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        // Go (since 1.17) skips a pair that contains `;`.
        if v.is_empty() || pair.contains(';') || !decodes_to(k, key) {
            return None;
        }
        if !v.contains(['%', '+']) {
            return Some(Cow::Borrowed(v));
        }
        let bytes = Decoded(v.as_bytes())
            .collect::<Result<Vec<u8>, BadEscape>>()
            .ok()?;
        let value = match String::from_utf8(bytes) {
            Ok(s) => s,
            Err(e) => String::from_utf8_lossy(e.as_bytes()).into_owned(),
        };
        (!value.is_empty()).then_some(Cow::Owned(value))
    })
}

fn strip_query(uri: &mut Uri) {
    let Some(query) = uri.query() else { return };
    // Also look past `;`, which some upstream frameworks treat as a pair separator.
    let is_credential = |pair: &str| {
        pair.split(';').any(|p| {
            let k = p.split('=').next().unwrap_or(p);
            decodes_to(k, SESSION_TOKEN_QUERY) || decodes_to(k, ACCESS_TOKEN_QUERY)
        })
    };
    if !query.split('&').any(is_credential) {
        return;
    }
    let kept: Vec<&str> = query.split('&').filter(|p| !is_credential(p)).collect();
    let path = uri.path();
    let target = if kept.is_empty() {
        path.to_owned()
    } else {
        format!("{path}?{}", kept.join("&"))
    };
    // Only part of a valid query was removed, so the first attempt succeeds; the fallbacks
    // fail closed by dropping the whole query.
    *uri = with_path_and_query(uri, target)
        .or_else(|| with_path_and_query(uri, path.to_owned()))
        .unwrap_or_else(|| Uri::from_static("/"));
}

fn with_path_and_query(uri: &Uri, target: String) -> Option<Uri> {
    let mut parts = uri.clone().into_parts();
    parts.path_and_query = Some(PathAndQuery::try_from(target).ok()?);
    Uri::from_parts(parts).ok()
}

/// Whether the query key `raw` percent-decodes to `want`, without allocating.
fn decodes_to(raw: &str, want: &str) -> bool {
    if raw == want {
        return true;
    }
    raw.contains(['%', '+'])
        && Decoded(raw.as_bytes())
            .map(Result::ok)
            .eq(want.bytes().map(Some))
}

struct BadEscape;

/// The bytes of a query component with `+` as a space and `%XX` decoded
/// (`application/x-www-form-urlencoded`).
struct Decoded<'a>(&'a [u8]);

impl Iterator for Decoded<'_> {
    type Item = Result<u8, BadEscape>;

    fn next(&mut self) -> Option<Self::Item> {
        let (&first, rest) = self.0.split_first()?;
        let (byte, rest) = match (first, rest) {
            (b'+', rest) => (Ok(b' '), rest),
            (b'%', [hi, lo, rest @ ..]) => match (hex(*hi), hex(*lo)) {
                (Some(hi), Some(lo)) => (Ok((hi << 4) | lo), rest),
                _ => (Err(BadEscape), &[][..]),
            },
            (b'%', _) => (Err(BadEscape), &[][..]),
            (b, rest) => (Ok(b), rest),
        };
        self.0 = rest;
        Some(byte)
    }
}

fn hex(b: u8) -> Option<u8> {
    (b as char).to_digit(16).map(|d| d as u8)
}

#[cfg(test)]
mod tests;
