//! Session tokens: parsing a presented token, finding it in a request (cookie, query, header,
//! `Authorization: Bearer`), stripping every copy before the request goes upstream, and
//! authenticating it against a store that holds one real key.
//!
//! Input: the first line is the request target (`/path?query`; `/` when it is not a URI), the
//! other lines `name: value` headers. The whole input is also parsed as a bare token.
//!
//! Properties, beyond no panic:
//! - a token that parses prints back as the same text, and its secret verifies against its hash;
//! - after `strip_credentials` no token can be found in the request, the path is unchanged, the
//!   query keeps the pairs it kept in order, and headers other than `Cookie`, `Authorization` and
//!   the token header are untouched, as are `Authorization` values of other schemes;
//! - the request authenticates exactly when the token found in it is the real one.

#![no_main]

use std::sync::OnceLock;

use http::header::{HeaderMap, AUTHORIZATION, COOKIE};
use http::Uri;
use libfuzzer_sys::fuzz_target;
use portcullis::auth::session;
use portcullis::auth::token::{extract, hash_secret, strip_credentials, verify_secret, Token};
use portcullis_fuzz::{header_map, lines, Sidecar, OWNER_TOKEN};

fn sidecar() -> &'static Sidecar {
    static SIDECAR: OnceLock<Sidecar> = OnceLock::new();
    SIDECAR.get_or_init(Sidecar::new)
}

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        round_trip(text);
    }
    let (target, rest) = lines(data);
    let uri = Uri::try_from(target).unwrap_or_else(|_| Uri::from_static("/"));
    let headers = header_map(rest);

    let found = extract(&headers, &uri).map(|t| t.into_owned());
    if let Some(found) = &found {
        round_trip(found);
    }

    let sidecar = sidecar();
    let app = &sidecar.app;
    let result = sidecar
        .runtime
        .block_on(session::authenticate(&app.store, &app.keys, &headers, &uri));
    assert_eq!(
        result.is_ok(),
        found.as_deref() == Some(OWNER_TOKEN),
        "authenticated {:?} with {found:?}",
        result.map(|_| ()),
    );

    let (mut stripped, mut stripped_uri) = (headers.clone(), uri.clone());
    strip_credentials(&mut stripped, &mut stripped_uri);
    assert_eq!(
        extract(&stripped, &stripped_uri),
        None,
        "a token survived stripping"
    );
    assert_eq!(stripped_uri.path(), uri.path());
    let pairs = |u: &Uri| -> Vec<String> {
        u.query()
            .map(|q| q.split('&').map(str::to_owned).collect())
            .unwrap_or_default()
    };
    assert!(
        is_subsequence(&pairs(&stripped_uri), &pairs(&uri)),
        "the query gained or reordered pairs: {uri} -> {stripped_uri}"
    );
    assert_others_untouched(&headers, &stripped);
});

/// A token that parses is the text it came from, and its secret matches its own hash.
fn round_trip(text: &str) {
    let Ok(token) = Token::parse(text) else {
        return;
    };
    assert_eq!(token.id().as_str(), &text[..10]);
    assert!(verify_secret(token.secret(), &hash_secret(token.secret())));
    assert_eq!(token.reveal(), text);
}

fn is_subsequence(short: &[String], long: &[String]) -> bool {
    let mut long = long.iter();
    short.iter().all(|s| long.any(|l| l == s))
}

/// Every header but the three that carry tokens is as it was, and so is every `Authorization`
/// value whose scheme is not `Bearer`.
fn assert_others_untouched(before: &HeaderMap, after: &HeaderMap) {
    let carries_token = |name: &str| {
        name == COOKIE.as_str()
            || name == AUTHORIZATION.as_str()
            || name.replace('_', "-") == "coder-session-token"
    };
    for name in before.keys().chain(after.keys()) {
        if !carries_token(name.as_str()) {
            assert!(
                before.get_all(name).iter().eq(after.get_all(name).iter()),
                "{name} changed"
            );
        }
    }
    let not_bearer = |v: &&http::HeaderValue| {
        let v = v.as_bytes().trim_ascii_start();
        let scheme = v.split(u8::is_ascii_whitespace).next().unwrap_or(v);
        !scheme.eq_ignore_ascii_case(b"bearer")
    };
    assert!(
        before
            .get_all(AUTHORIZATION)
            .iter()
            .filter(not_bearer)
            .eq(after.get_all(AUTHORIZATION).iter()),
        "Authorization values of other schemes changed"
    );
}
