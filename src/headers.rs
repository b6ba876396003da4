//! Header hygiene on the way to the upstream and back: hop-by-hop headers (RFC 9110 §7.6.1),
//! spoofed identity headers, and the `X-Forwarded-*` family.
//!
//! Everything here is one pass over the client's headers that only allocates when it has
//! something to remove, because it runs on every proxied request.

use std::sync::Arc;

use http::header::{
    HeaderMap, HeaderName, HeaderValue, CONNECTION, TE, TRANSFER_ENCODING, UPGRADE,
};

/// `X-Forwarded-For`: the chain of client addresses.
pub static X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
/// `X-Forwarded-Proto`: the scheme the client used.
pub static X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
/// `X-Forwarded-Host`: the host the client asked for.
pub static X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");

/// Identity headers of both families and the assertion (DESIGN §3.4), in canonical spelling.
/// Every spelling of these (any case, `_` for `-`) is removed from every client request,
/// whatever `identity.headers` says.
pub const IDENTITY_HEADERS: [&str; 10] = [
    "x-forwarded-user",
    "x-forwarded-email",
    "x-forwarded-user-id",
    "x-forwarded-roles",
    "x-forwarded-scopes",
    "remote-user",
    "remote-email",
    "remote-name",
    "remote-groups",
    "x-portcullis-assertion",
];

/// Headers that make frameworks run another method or path than the request line says
/// (Express `method-override`, Symfony, Laravel, Spring's `HiddenHttpMethodFilter` variants,
/// IIS URL Rewrite, Zend): removed from every request, whatever the route, unless
/// `upstream.danger_pass_override_headers`, because Portcullis judged the request line.
pub const OVERRIDE_HEADERS: [&str; 5] = [
    "x-http-method-override",
    "x-http-method",
    "x-method-override",
    "x-original-url",
    "x-rewrite-url",
];

/// How [`sanitize_request`] treats one request.
#[derive(Debug, Clone, Copy)]
pub struct Hygiene<'a> {
    /// The peer is in `server.trusted_proxies`: its `X-Forwarded-*` are kept.
    pub trusted_peer: bool,
    /// `upstream.upgrade_protocols`, lower case.
    pub upgrade_protocols: &'a [String],
    /// `upstream.danger_pass_override_headers`.
    pub pass_overrides: bool,
}

/// What [`sanitize_request`] found and kept aside.
#[derive(Debug, Default)]
pub struct Sanitized {
    /// How many spoofed identity headers were removed.
    pub spoofed_identity: usize,
    /// How many method or path override headers were removed.
    pub overrides: usize,
    /// The `Upgrade` value of a request asking for a protocol upgrade Portcullis allows: only
    /// the allowed protocols of what the client offered.
    pub upgrade: Option<HeaderValue>,
}

/// Why [`sanitize_request_traced`] removed a header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Removed {
    /// A spelling of an identity header or the assertion (DESIGN §3.4): only Portcullis sets
    /// these.
    Identity,
    /// A method or path override ([`OVERRIDE_HEADERS`]).
    Override,
    /// A forwarded header (`X-Forwarded-*`, `Forwarded`, `X-Real-IP`) from a peer outside
    /// `server.trusted_proxies`.
    UntrustedForwarded,
    /// Hop-by-hop (RFC 9110 §7.6.1).
    HopByHop,
    /// Named in `Connection`, so hop-by-hop for this connection (RFC 9110 §7.6.1).
    NamedByConnection,
    /// It carried Portcullis's own session token (`upstream.pass_token = false`).
    Credentials,
}

/// Receives what [`sanitize_request_traced`] removes. `()` ignores it (every proxied
/// request); `portcullis explain` keeps the list.
pub trait Removals {
    /// Whether anything is listening: when not, nothing is computed for the trace.
    const ACTIVE: bool = true;
    /// `name` was removed, for `why`.
    fn removed(&mut self, name: &HeaderName, why: Removed);
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Class {
    Keep,
    /// Hop-by-hop (RFC 9110 §7.6.1), meaningful for one connection only: the index into
    /// [`HOP_BY_HOP`].
    HopByHop(usize),
    /// Identity headers a client must never be able to set.
    Identity,
    /// Proxy-chain headers believed only from trusted proxies.
    Forwarded,
    /// Method and path overrides ([`OVERRIDE_HEADERS`]).
    Override,
}

/// The fixed hop-by-hop set (RFC 9110 §7.6.1, plus the de-facto `Keep-Alive`,
/// `Proxy-Connection`, the proxy authentication pair, and `HTTP2-Settings`, which only means
/// something to the connection that asks for `h2c` (RFC 9113 §3.2.1).
static HOP_BY_HOP: [HeaderName; 10] = [
    CONNECTION,
    HeaderName::from_static("keep-alive"),
    HeaderName::from_static("proxy-connection"),
    TE,
    http::header::TRAILER,
    http::header::TRANSFER_ENCODING,
    UPGRADE,
    http::header::PROXY_AUTHENTICATE,
    http::header::PROXY_AUTHORIZATION,
    HeaderName::from_static("http2-settings"),
];

fn classify(name: &HeaderName) -> Class {
    let name = name.as_str();
    // Only the identity, forwarded and override families need the `_` spelling checked, and
    // all of them start with x, r or f: other names skip the scan.
    if matches!(name.as_bytes().first(), Some(b'x' | b'r' | b'f'))
        && name.as_bytes().contains(&b'_')
    {
        // Several servers and CGI-style frameworks fold `_` into `-`, so `x_forwarded_user`
        // can reach an application as `X-Forwarded-User`: treat it as that header.
        return match classify_lower(&name.replace('_', "-")) {
            Class::HopByHop(_) => Class::Keep,
            class => class,
        };
    }
    classify_lower(name)
}

fn classify_lower(name: &str) -> Class {
    // Every name below starts with one of these; most request headers (accept, authorization,
    // cookie, host, user-agent, ...) are told apart by their first byte or their length.
    if !matches!(
        name.as_bytes().first(),
        Some(b'c' | b'f' | b'h' | b'k' | b'p' | b'r' | b't' | b'u' | b'x')
    ) {
        return Class::Keep;
    }
    match name {
        "connection" => Class::HopByHop(0),
        "keep-alive" => Class::HopByHop(1),
        "proxy-connection" => Class::HopByHop(2),
        "te" => Class::HopByHop(3),
        "trailer" => Class::HopByHop(4),
        "transfer-encoding" => Class::HopByHop(5),
        "upgrade" => Class::HopByHop(6),
        "proxy-authenticate" => Class::HopByHop(7),
        "proxy-authorization" => Class::HopByHop(8),
        "http2-settings" => Class::HopByHop(9),
        "x-forwarded-for" | "x-forwarded-proto" | "x-forwarded-host" | "x-forwarded-port"
        | "x-forwarded-prefix" | "x-forwarded-uri" | "x-forwarded-method" | "forwarded"
        | "x-real-ip" => Class::Forwarded,
        n if !n.starts_with(['x', 'r']) => Class::Keep,
        n if IDENTITY_HEADERS.contains(&n) => Class::Identity,
        n if OVERRIDE_HEADERS.contains(&n) => Class::Override,
        _ => Class::Keep,
    }
}

/// Whether `headers` carry a method or path override ([`OVERRIDE_HEADERS`], any spelling).
pub fn has_override(headers: &HeaderMap) -> bool {
    headers.keys().any(is_override)
}

/// True for any spelling of a method or path override header ([`OVERRIDE_HEADERS`]).
pub fn is_override(name: &HeaderName) -> bool {
    classify(name) == Class::Override
}

/// True for any spelling of an identity header (any case, `_` for `-`).
pub fn is_identity_header(name: &HeaderName) -> bool {
    classify(name) == Class::Identity
}

/// Why a request's framing is refused before anything is done with it ([`check_framing`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum FramingError {
    /// `Transfer-Encoding` other than one `chunked`: a coding Portcullis does not implement
    /// (RFC 9112 §6.1: `501`).
    #[error("a transfer coding other than chunked")]
    UnsupportedCoding,
    /// A header that reads as `Content-Length` or `Transfer-Encoding` with `_` for `-`.
    #[error("a framing header spelled with '_'")]
    UnderscoreSpelling,
}

/// Refuses a request whose body framing a front end, Portcullis and the upstream could each
/// read differently. hyper has already refused what it cannot read at all (`Content-Length`s
/// that disagree or are not digits, a last coding other than `chunked`, obs-fold, bare CR).
/// Left to refuse:
/// - `Transfer-Encoding` other than exactly one `chunked` (`identity, chunked`,
///   `gzip, chunked`, two header lines): hyper reads the last `chunked` and would hand on the
///   body still in the other codings, with `Transfer-Encoding` (hop-by-hop) removed, so the
///   upstream would read another body than the client sent; and a front end may have framed
///   such a request otherwise.
/// - `Content_Length`, `transfer_encoding` (any case): servers and gateways that fold `_` into
///   `-` (CGI-style environments, some WSGI servers) read them as framing. Forwarded beside
///   Portcullis's own `Content-Length` or `chunked`, they would give the upstream two framings,
///   and a request hidden in the body that Portcullis never judged.
pub fn check_framing(headers: &HeaderMap) -> Result<(), FramingError> {
    let mut codings = headers.get_all(TRANSFER_ENCODING).iter();
    if let Some(first) = codings.next() {
        let chunked = first
            .as_bytes()
            .trim_ascii()
            .eq_ignore_ascii_case(b"chunked");
        if !chunked || codings.next().is_some() {
            return Err(FramingError::UnsupportedCoding);
        }
    }
    for name in headers.keys() {
        let n = name.as_str().as_bytes();
        // Only names as long as the two framing headers need the closer look.
        if (n.len() == 14 || n.len() == 17) && n.contains(&b'_') {
            let folded: Vec<u8> = n
                .iter()
                .map(|b| if *b == b'_' { b'-' } else { *b })
                .collect();
            if folded == b"content-length" || folded == b"transfer-encoding" {
                return Err(FramingError::UnderscoreSpelling);
            }
        }
    }
    Ok(())
}

/// Cleans a client's request headers before they go upstream.
///
/// - Removes hop-by-hop headers and every header named in `Connection` (RFC 9110 §7.6.1).
///   A request for an upgrade to a protocol in `upgrade_protocols` keeps those protocols in
///   `Upgrade` and gets `Connection: upgrade` back (RFC 9110 §7.8); any other upgrade (`h2c`
///   above all, whose tunnel would carry requests nobody judged) is dropped, and the request
///   goes on as plain HTTP/1.1. `TE: trailers` survives, since gRPC upstreams require it.
/// - Removes every spelling of every identity header.
/// - Removes the method and path override headers, unless `pass_overrides`.
/// - Unless `trusted_peer`, removes the client's `X-Forwarded-*`, `Forwarded` and `X-Real-IP`.
pub fn sanitize_request(headers: &mut HeaderMap, how: Hygiene<'_>) -> Sanitized {
    sanitize_request_traced(headers, how, &mut ())
}

/// [`sanitize_request`], telling `trace` each header it removes and why.
#[inline]
pub fn sanitize_request_traced<T: Removals>(
    headers: &mut HeaderMap,
    how: Hygiene<'_>,
    trace: &mut T,
) -> Sanitized {
    let mut out = Sanitized::default();
    let mut hop = 0u16;
    let mut remove: Vec<HeaderName> = Vec::new();
    for name in headers.keys() {
        match classify(name) {
            Class::Keep => {}
            Class::HopByHop(i) => hop |= 1 << i,
            Class::Identity => {
                out.spoofed_identity += 1;
                trace.removed(name, Removed::Identity);
                remove.push(name.clone());
            }
            Class::Override if !how.pass_overrides => {
                out.overrides += 1;
                trace.removed(name, Removed::Override);
                remove.push(name.clone());
            }
            Class::Forwarded if !how.trusted_peer => {
                trace.removed(name, Removed::UntrustedForwarded);
                remove.push(name.clone());
            }
            Class::Forwarded | Class::Override => {}
        }
    }
    for name in &remove {
        headers.remove(name);
    }
    if hop != 0 {
        let te_trailers = headers.get_all(TE).iter().any(|v| {
            v.to_str().is_ok_and(|s| {
                s.split(',')
                    .any(|t| t.trim().eq_ignore_ascii_case("trailers"))
            })
        });
        let wants_upgrade = connection_has(headers, "upgrade");
        let upgrade = if wants_upgrade {
            allowed_upgrade(headers, how.upgrade_protocols)
        } else {
            None
        };
        strip_hop_by_hop(headers, hop, trace);
        if te_trailers {
            headers.insert(TE, HeaderValue::from_static("trailers"));
        }
        if let Some(up) = &upgrade {
            headers.insert(CONNECTION, HeaderValue::from_static("upgrade"));
            headers.insert(UPGRADE, up.clone());
        }
        out.upgrade = upgrade;
    }
    out
}

/// Cleans an upstream response's headers before they go to the client. A `101 Switching
/// Protocols` keeps its `Upgrade` and `Connection: upgrade`.
pub fn sanitize_response(headers: &mut HeaderMap, switching_protocols: bool) {
    let mut hop = 0u16;
    for name in headers.keys() {
        if let Class::HopByHop(i) = classify(name) {
            hop |= 1 << i;
        }
    }
    if hop == 0 {
        return;
    }
    let upgrade = switching_protocols
        .then(|| headers.get(UPGRADE).cloned())
        .flatten();
    strip_hop_by_hop(headers, hop, &mut ());
    if let Some(up) = upgrade {
        headers.insert(CONNECTION, HeaderValue::from_static("upgrade"));
        headers.insert(UPGRADE, up);
    }
}

/// Removes every header `Connection` names, then the members of the fixed set marked present
/// in `present` (a bit per index of [`HOP_BY_HOP`]).
fn strip_hop_by_hop<T: Removals>(headers: &mut HeaderMap, present: u16, trace: &mut T) {
    // Tokens that name a header outside the fixed set are rare; only they are collected. The
    // values are split as bytes: a value with a byte that is not text (obs-text) still names
    // the headers it lists, and they go.
    let named: Vec<HeaderName> = headers
        .get_all(CONNECTION)
        .iter()
        .flat_map(|v| v.as_bytes().split(|&b| b == b','))
        .map(<[u8]>::trim_ascii)
        .filter(|t| {
            !t.eq_ignore_ascii_case(b"close")
                && !HOP_BY_HOP
                    .iter()
                    .any(|h| t.eq_ignore_ascii_case(h.as_str().as_bytes()))
        })
        .filter_map(|t| HeaderName::from_bytes(t).ok())
        .collect();
    for name in named {
        if headers.remove(&name).is_some() {
            trace.removed(&name, Removed::NamedByConnection);
        }
    }
    for (i, name) in HOP_BY_HOP.iter().enumerate() {
        if present & (1 << i) != 0 {
            trace.removed(name, Removed::HopByHop);
            headers.remove(name);
        }
    }
}

/// The protocols of the request's `Upgrade` (RFC 9110 §7.8: a list of `name[/version]`) that
/// are in `allowed`, as one header value; `None` when there are none, or more than one
/// `Upgrade` header.
fn allowed_upgrade(headers: &HeaderMap, allowed: &[String]) -> Option<HeaderValue> {
    let mut all = headers.get_all(UPGRADE).iter();
    let (Some(value), None) = (all.next(), all.next()) else {
        return None;
    };
    let text = value.to_str().ok()?;
    let is_allowed = |offer: &&str| {
        let name = offer.split('/').next().unwrap_or_default().trim();
        allowed.iter().any(|a| a.eq_ignore_ascii_case(name))
    };
    let mut offers = text.split(',').map(str::trim).filter(|o| !o.is_empty());
    if offers.clone().all(|o| is_allowed(&o)) {
        return Some(value.clone());
    }
    let kept: Vec<&str> = offers.by_ref().filter(is_allowed).collect();
    if kept.is_empty() {
        return None;
    }
    HeaderValue::from_str(&kept.join(", ")).ok()
}

/// Whether a `101` answer's `Upgrade` names a protocol the request offered (`offered` is the
/// request's allowed `Upgrade`): an upstream may not switch to anything else.
pub fn upgrade_agrees(offered: &HeaderValue, answered: Option<&HeaderValue>) -> bool {
    let Some(answered) = answered.and_then(|a| a.to_str().ok()) else {
        return false;
    };
    let name = |p: &str| {
        p.split('/')
            .next()
            .unwrap_or_default()
            .trim()
            .to_ascii_lowercase()
    };
    let answered = name(answered);
    offered
        .to_str()
        .is_ok_and(|o| o.split(',').any(|p| name(p) == answered))
}

// === impl Removed ===

impl Removed {
    /// Why, in a few words.
    pub fn reason(self) -> &'static str {
        match self {
            Removed::Identity => "identity header sent by the client (only Portcullis sets these)",
            Removed::Override => {
                "method/path override (upstream.danger_pass_override_headers = false)"
            }
            Removed::UntrustedForwarded => {
                "forwarded header from a peer outside server.trusted_proxies"
            }
            Removed::HopByHop => "hop-by-hop (RFC 9110 §7.6.1)",
            Removed::NamedByConnection => "named in Connection (RFC 9110 §7.6.1)",
            Removed::Credentials => {
                "carries the Portcullis session token (upstream.pass_token = false)"
            }
        }
    }
}

impl Removals for () {
    const ACTIVE: bool = false;

    #[inline(always)]
    fn removed(&mut self, _: &HeaderName, _: Removed) {}
}

fn connection_has(headers: &HeaderMap, token: &str) -> bool {
    headers.get_all(CONNECTION).iter().any(|v| {
        v.to_str()
            .is_ok_and(|s| s.split(',').any(|t| t.trim().eq_ignore_ascii_case(token)))
    })
}

/// Sets `X-Forwarded-For/-Proto/-Host` from what Portcullis saw. A trusted peer's values are
/// kept (its address is appended to `X-Forwarded-For`); an untrusted peer's were already
/// removed by [`sanitize_request`].
pub fn set_forwarded(
    headers: &mut HeaderMap,
    peer_ip: &HeaderValue,
    proto: &'static str,
    host: Option<&HeaderValue>,
) {
    let xff = if headers.contains_key(&X_FORWARDED_FOR) {
        let mut chain = Vec::new();
        for v in headers.get_all(&X_FORWARDED_FOR) {
            chain.extend_from_slice(v.as_bytes());
            chain.extend_from_slice(b", ");
        }
        chain.extend_from_slice(peer_ip.as_bytes());
        HeaderValue::from_bytes(&chain).ok()
    } else {
        Some(peer_ip.clone())
    };
    if let Some(v) = xff {
        headers.insert(X_FORWARDED_FOR.clone(), v);
    }
    if !headers.contains_key(&X_FORWARDED_PROTO) {
        headers.insert(X_FORWARDED_PROTO.clone(), HeaderValue::from_static(proto));
    }
    if let Some(host) = host {
        if !headers.contains_key(&X_FORWARDED_HOST) {
            headers.insert(X_FORWARDED_HOST.clone(), host.clone());
        }
    }
}

/// Whether the client spoke HTTPS: the first `X-Forwarded-Proto` (only a trusted proxy's
/// survives [`sanitize_request`]) when there is one, else whether the connection is TLS.
pub fn forwarded_https(headers: &HeaderMap, tls: bool) -> bool {
    match headers.get(&X_FORWARDED_PROTO) {
        Some(v) => {
            let first = v
                .as_bytes()
                .split(|b| *b == b',')
                .next()
                .unwrap_or_default();
            first.trim_ascii().eq_ignore_ascii_case(b"https")
        }
        None => tls,
    }
}

/// Which identity headers an authenticated request carries upstream (`identity.headers`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IdentityStyle {
    /// `X-Forwarded-User/-Email/-User-Id/-Roles/-Scopes`.
    Forwarded,
    /// `Remote-User/-Email/-Name/-Groups`.
    Remote,
    /// None.
    None,
}

/// A session's identity, rendered once as header values (when it is cached), so that adding
/// it to a request is a few reference-count increments. What comes from the user is one
/// [`UserIdentity`] that every cached key of the user can share; the scopes are the key's.
#[derive(Debug, Clone)]
pub struct Identity {
    user: Arc<UserIdentity>,
    scopes: Arc<HeaderValue>,
}

/// The identity header values that come from the user (all but the scopes): its username,
/// email, id, display name and role names.
#[derive(Debug, PartialEq, Eq)]
pub struct UserIdentity {
    username: HeaderValue,
    email: HeaderValue,
    user_id: HeaderValue,
    name: HeaderValue,
    roles: HeaderValue,
}

/// A header value of `s`, or an empty one when `s` cannot be one (a control character).
fn value(s: &str) -> HeaderValue {
    HeaderValue::from_bytes(s.as_bytes()).unwrap_or_else(|_| HeaderValue::from_static(""))
}

// === impl Identity ===

impl Identity {
    /// An identity of a user's values and a key's scopes value ([`Identity::scopes_value`]),
    /// either of which may be shared with other identities.
    pub fn from_parts(user: Arc<UserIdentity>, scopes: Arc<HeaderValue>) -> Self {
        Identity { user, scopes }
    }

    /// The `X-Forwarded-Scopes` value of a key's scope list.
    pub fn scopes_value(scopes: &[String]) -> HeaderValue {
        value(&scopes.join(","))
    }

    /// The values that come from the user.
    pub fn user(&self) -> &Arc<UserIdentity> {
        &self.user
    }

    /// The scopes value.
    pub fn scopes(&self) -> &Arc<HeaderValue> {
        &self.scopes
    }

    /// Adds the identity headers of `style` (the client's own copies were removed by
    /// [`sanitize_request`]).
    pub fn apply(&self, headers: &mut HeaderMap, style: IdentityStyle) {
        // Names made at compile time: `from_static` at run time parses its argument each call.
        const FORWARDED: [HeaderName; 5] = [
            HeaderName::from_static("x-forwarded-user"),
            HeaderName::from_static("x-forwarded-email"),
            HeaderName::from_static("x-forwarded-user-id"),
            HeaderName::from_static("x-forwarded-roles"),
            HeaderName::from_static("x-forwarded-scopes"),
        ];
        const REMOTE: [HeaderName; 4] = [
            HeaderName::from_static("remote-user"),
            HeaderName::from_static("remote-email"),
            HeaderName::from_static("remote-name"),
            HeaderName::from_static("remote-groups"),
        ];
        let user = &*self.user;
        match style {
            IdentityStyle::None => {}
            IdentityStyle::Forwarded => {
                let values = [
                    &user.username,
                    &user.email,
                    &user.user_id,
                    &user.roles,
                    &*self.scopes,
                ];
                for (name, value) in FORWARDED.into_iter().zip(values) {
                    headers.insert(name, value.clone());
                }
            }
            IdentityStyle::Remote => {
                let values = [&user.username, &user.email, &user.name, &user.roles];
                for (name, value) in REMOTE.into_iter().zip(values) {
                    headers.insert(name, value.clone());
                }
            }
        }
    }
}

// === impl UserIdentity ===

impl UserIdentity {
    /// Renders a user's values. Role names are the stored site roles, then organization roles
    /// as `<role>:<organization id>`.
    pub fn new(
        username: &str,
        email: &str,
        user_id: &str,
        name: &str,
        roles: impl Iterator<Item = String>,
    ) -> Self {
        UserIdentity {
            username: value(username),
            email: value(email),
            user_id: value(user_id),
            name: value(name),
            roles: value(&roles.collect::<Vec<_>>().join(",")),
        }
    }
}

#[cfg(test)]
mod tests;
