//! Header hygiene on the way to the upstream and back: hop-by-hop headers (RFC 9110 §7.6.1),
//! spoofed identity headers, and the `X-Forwarded-*` family.
//!
//! Everything here is one pass over the client's headers that only allocates when it has
//! something to remove, because it runs on every proxied request.

use std::net::IpAddr;

use http::header::{HeaderMap, HeaderName, HeaderValue, CONNECTION, TE, UPGRADE};

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

/// What [`sanitize_request`] found and kept aside.
#[derive(Debug, Default)]
pub struct Sanitized {
    /// How many spoofed identity headers were removed.
    pub spoofed_identity: usize,
    /// The `Upgrade` value of a request asking for a protocol upgrade.
    pub upgrade: Option<HeaderValue>,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Class {
    Keep,
    /// Hop-by-hop (RFC 9110 §7.6.1): meaningful for one connection only.
    HopByHop,
    /// Identity headers a client must never be able to set.
    Identity,
    /// Proxy-chain headers believed only from trusted proxies.
    Forwarded,
}

fn classify(name: &HeaderName) -> Class {
    let name = name.as_str();
    if name.contains('_') {
        // Several servers and CGI-style frameworks fold `_` into `-`, so `x_forwarded_user`
        // can reach an application as `X-Forwarded-User`: treat it as that header.
        return match classify_lower(&name.replace('_', "-")) {
            Class::HopByHop => Class::Keep,
            class => class,
        };
    }
    classify_lower(name)
}

fn classify_lower(name: &str) -> Class {
    match name {
        "connection"
        | "keep-alive"
        | "proxy-connection"
        | "te"
        | "trailer"
        | "transfer-encoding"
        | "upgrade"
        | "proxy-authenticate"
        | "proxy-authorization" => Class::HopByHop,
        "x-forwarded-for" | "x-forwarded-proto" | "x-forwarded-host" | "x-forwarded-port"
        | "x-forwarded-prefix" | "x-forwarded-uri" | "x-forwarded-method" | "forwarded"
        | "x-real-ip" => Class::Forwarded,
        n if IDENTITY_HEADERS.contains(&n) => Class::Identity,
        _ => Class::Keep,
    }
}

/// True for any spelling of an identity header (any case, `_` for `-`).
pub fn is_identity_header(name: &HeaderName) -> bool {
    classify(name) == Class::Identity
}

/// Cleans a client's request headers before they go upstream.
///
/// - Removes hop-by-hop headers and every header named in `Connection` (RFC 9110 §7.6.1).
///   A request for a protocol upgrade keeps `Upgrade` and gets `Connection: upgrade` back
///   (RFC 9110 §7.8); `TE: trailers` survives, since gRPC upstreams require it.
/// - Removes every spelling of every identity header.
/// - Unless `trusted_peer`, removes the client's `X-Forwarded-*`, `Forwarded` and `X-Real-IP`.
pub fn sanitize_request(headers: &mut HeaderMap, trusted_peer: bool) -> Sanitized {
    let mut out = Sanitized::default();
    let mut hop = false;
    let mut remove: Vec<HeaderName> = Vec::new();
    for name in headers.keys() {
        match classify(name) {
            Class::Keep => {}
            Class::HopByHop => hop = true,
            Class::Identity => {
                out.spoofed_identity += 1;
                remove.push(name.clone());
            }
            Class::Forwarded if !trusted_peer => remove.push(name.clone()),
            Class::Forwarded => {}
        }
    }
    for name in &remove {
        headers.remove(name);
    }
    if hop {
        let te_trailers = headers.get_all(TE).iter().any(|v| {
            v.to_str().is_ok_and(|s| {
                s.split(',')
                    .any(|t| t.trim().eq_ignore_ascii_case("trailers"))
            })
        });
        let wants_upgrade = connection_has(headers, "upgrade");
        let upgrade = if wants_upgrade {
            headers.get(UPGRADE).cloned()
        } else {
            None
        };
        strip_hop_by_hop(headers);
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
    if !headers.keys().any(|n| classify(n) == Class::HopByHop) {
        return;
    }
    let upgrade = switching_protocols
        .then(|| headers.get(UPGRADE).cloned())
        .flatten();
    strip_hop_by_hop(headers);
    if let Some(up) = upgrade {
        headers.insert(CONNECTION, HeaderValue::from_static("upgrade"));
        headers.insert(UPGRADE, up);
    }
}

/// Removes the fixed hop-by-hop set and every header `Connection` names.
fn strip_hop_by_hop(headers: &mut HeaderMap) {
    let named: Vec<HeaderName> = headers
        .get_all(CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|t| HeaderName::from_bytes(t.trim().as_bytes()).ok())
        .collect();
    for name in named {
        headers.remove(name);
    }
    let fixed: Vec<HeaderName> = headers
        .keys()
        .filter(|n| classify(n) == Class::HopByHop)
        .cloned()
        .collect();
    for name in fixed {
        headers.remove(name);
    }
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
    peer: IpAddr,
    proto: &'static str,
    host: Option<&HeaderValue>,
) {
    let peer_text = peer.to_string();
    let xff = match headers.get_all(&X_FORWARDED_FOR).iter().count() {
        0 => HeaderValue::from_str(&peer_text),
        _ => {
            let mut chain = String::new();
            for v in headers.get_all(&X_FORWARDED_FOR) {
                if let Ok(s) = v.to_str() {
                    chain.push_str(s);
                    chain.push_str(", ");
                }
            }
            chain.push_str(&peer_text);
            HeaderValue::from_str(&chain)
        }
    };
    if let Ok(v) = xff {
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

#[cfg(test)]
mod tests;
