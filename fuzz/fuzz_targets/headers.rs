//! Header hygiene (`headers::sanitize_request`, `headers::sanitize_response`): identity,
//! override, forwarded and hop-by-hop headers in every spelling.
//!
//! Input: the first line holds flags (`trusted`: the peer is a trusted proxy; `overrides`:
//! `upstream.danger_pass_override_headers`; `101`: the response switches protocols), the other
//! lines are `name: value` headers. `upstream.upgrade_protocols` is `["websocket"]`.
//!
//! Properties of the request, beyond no panic: no header whose name normalises (lower case, `_`
//! for `-`) to an identity header remains, nor an override header unless they pass, nor a
//! forwarded header from an untrusted peer; no hop-by-hop header remains but `TE: trailers` and
//! an allowed upgrade's `Connection: upgrade` and `Upgrade`; no header that `Connection` named
//! remains; every other header is untouched; the counts of removed identity and override headers
//! are right. Of the response: no hop-by-hop header but a `101`'s upgrade pair, nothing that
//! `Connection` named, the rest untouched.

#![no_main]

use http::header::{HeaderMap, HeaderName, HeaderValue, CONNECTION, UPGRADE};
use libfuzzer_sys::fuzz_target;
use portcullis::headers::{
    has_override, is_identity_header, sanitize_request, sanitize_response, Hygiene,
    IDENTITY_HEADERS, OVERRIDE_HEADERS,
};
use portcullis_fuzz::{header_map, lines};

/// The forwarded family, as the README lists it.
const FORWARDED: [&str; 9] = [
    "x-forwarded-for",
    "x-forwarded-proto",
    "x-forwarded-host",
    "x-forwarded-port",
    "x-forwarded-prefix",
    "x-forwarded-uri",
    "x-forwarded-method",
    "forwarded",
    "x-real-ip",
];

/// Hop-by-hop headers (RFC 9110 §7.6.1 and the de-facto ones), exactly spelled.
const HOP_BY_HOP: [&str; 10] = [
    "connection",
    "keep-alive",
    "proxy-connection",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "proxy-authenticate",
    "proxy-authorization",
    "http2-settings",
];

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Class {
    Identity,
    Override,
    Forwarded,
    HopByHop,
    Other,
}

fn class(name: &HeaderName) -> Class {
    let normal = name.as_str().replace('_', "-");
    let normal = normal.as_str();
    if IDENTITY_HEADERS.contains(&normal) {
        Class::Identity
    } else if OVERRIDE_HEADERS.contains(&normal) {
        Class::Override
    } else if FORWARDED.contains(&normal) {
        Class::Forwarded
    } else if HOP_BY_HOP.contains(&name.as_str()) {
        Class::HopByHop
    } else {
        Class::Other
    }
}

/// The header names the `Connection` headers list, lower case (RFC 9110 §7.6.1), read as bytes.
fn connection_named(headers: &HeaderMap) -> Vec<HeaderName> {
    headers
        .get_all(CONNECTION)
        .iter()
        .flat_map(|v| v.as_bytes().split(|&b| b == b','))
        .filter_map(|t| HeaderName::from_bytes(t.trim_ascii()).ok())
        .collect()
}

fuzz_target!(|data: &[u8]| {
    let (flags, rest) = lines(data);
    let has = |flag: &[u8]| flags.windows(flag.len()).any(|w| w == flag);
    let (trusted, pass_overrides, switching) = (has(b"trusted"), has(b"overrides"), has(b"101"));
    let before = header_map(rest);

    let mut request = before.clone();
    let protocols = ["websocket".to_owned()];
    let how = Hygiene {
        trusted_peer: trusted,
        upgrade_protocols: &protocols,
        pass_overrides,
    };
    let sanitized = sanitize_request(&mut request, how);
    let named = connection_named(&before);
    let removed_as_named = |name: &HeaderName| {
        named.contains(name) && !matches!(name.as_str(), "connection" | "upgrade" | "te" | "close")
    };

    for name in request.keys() {
        let c = class(name);
        assert_eq!(is_identity_header(name), c == Class::Identity, "{name}");
        assert_ne!(c, Class::Identity, "identity header {name} survived");
        assert!(
            pass_overrides || c != Class::Override,
            "override {name} survived"
        );
        assert!(
            trusted || c != Class::Forwarded,
            "forwarded {name} survived from an untrusted peer"
        );
        assert!(
            !removed_as_named(name),
            "{name}, named by Connection, survived"
        );
    }
    assert!(pass_overrides || !has_override(&request));
    assert_hop_by_hop(&request, |name, values| match name {
        "te" => values == [HeaderValue::from_static("trailers")],
        "connection" => {
            sanitized.upgrade.is_some() && values == [HeaderValue::from_static("upgrade")]
        }
        "upgrade" => sanitized
            .upgrade
            .as_ref()
            .is_some_and(|u| values == [u.clone()]),
        _ => false,
    });
    let kept = |name: &HeaderName| match class(name) {
        Class::Other => true,
        Class::Forwarded => trusted,
        Class::Override => pass_overrides,
        Class::Identity | Class::HopByHop => false,
    };
    assert_untouched(&before, &request, |name| {
        kept(name) && !removed_as_named(name)
    });
    let distinct = |c: Class| before.keys().filter(|n| class(n) == c).count();
    assert_eq!(sanitized.spoofed_identity, distinct(Class::Identity));
    if !pass_overrides {
        assert_eq!(sanitized.overrides, distinct(Class::Override));
    }

    let mut response = before.clone();
    sanitize_response(&mut response, switching);
    for name in response.keys() {
        assert!(
            !removed_as_named(name),
            "{name}, named by Connection, survived in a response"
        );
    }
    let offered = before.get(UPGRADE).filter(|_| switching);
    assert_hop_by_hop(&response, |name, values| match name {
        "connection" => offered.is_some() && values == [HeaderValue::from_static("upgrade")],
        "upgrade" => offered.is_some_and(|u| values == [u.clone()]),
        _ => false,
    });
    assert_untouched(&before, &response, |name| {
        class(name) != Class::HopByHop && !removed_as_named(name)
    });
});

/// Every exactly-spelled hop-by-hop header left in `headers` is one `allowed` lets stay with
/// those values.
fn assert_hop_by_hop(headers: &HeaderMap, allowed: impl Fn(&str, &[HeaderValue]) -> bool) {
    for name in HOP_BY_HOP {
        let values: Vec<HeaderValue> = headers.get_all(name).iter().cloned().collect();
        if !values.is_empty() {
            assert!(
                allowed(name, &values),
                "hop-by-hop {name}: {values:?} survived"
            );
        }
    }
}

/// The headers `keep` selects have the same values, in the same order, before and after.
fn assert_untouched(before: &HeaderMap, after: &HeaderMap, keep: impl Fn(&HeaderName) -> bool) {
    for name in before.keys() {
        if keep(name) {
            assert!(
                before.get_all(name).iter().eq(after.get_all(name).iter()),
                "{name} changed"
            );
        }
    }
}
