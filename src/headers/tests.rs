use http::header::{HeaderMap, HeaderName, HeaderValue};

use super::*;

fn map(pairs: &[(&str, &str)]) -> HeaderMap {
    let mut m = HeaderMap::new();
    for (k, v) in pairs {
        m.append(
            HeaderName::from_bytes(k.as_bytes()).unwrap(),
            HeaderValue::from_str(v).unwrap(),
        );
    }
    m
}

const NO_UPGRADES: &[String] = &[];

fn how(trusted_peer: bool) -> Hygiene<'static> {
    Hygiene {
        trusted_peer,
        upgrade_protocols: WEBSOCKET.get_or_init(|| vec!["websocket".to_owned()]),
        pass_overrides: false,
    }
}

static WEBSOCKET: std::sync::OnceLock<Vec<String>> = std::sync::OnceLock::new();

#[test]
fn override_headers_are_removed_in_every_spelling_unless_passed() {
    let pairs = [
        ("x-http-method-override", "DELETE"),
        ("X-HTTP-Method", "PUT"),
        ("x_method_override", "PATCH"),
        ("X-Original-URL", "/admin"),
        ("x-rewrite-url", "/admin"),
        ("accept", "*/*"),
    ];
    let mut h = map(&pairs);
    let s = sanitize_request(&mut h, how(true));
    assert_eq!(s.overrides, 5);
    assert_eq!(h.len(), 1, "{h:?}");
    assert!(has_override(&map(&pairs)));
    assert!(!has_override(&h));
    let mut h = map(&pairs);
    let passed = Hygiene {
        pass_overrides: true,
        ..how(false)
    };
    assert_eq!(sanitize_request(&mut h, passed).overrides, 0);
    assert_eq!(h.len(), 6);
}

#[test]
fn only_allowed_upgrades_survive_and_h2c_never_does() {
    for (upgrade, connection, kept) in [
        ("websocket", "Upgrade", Some("websocket")),
        ("WebSocket", "keep-alive, upgrade", Some("WebSocket")),
        ("h2c", "Upgrade, HTTP2-Settings", None),
        (
            "h2c, websocket",
            "Upgrade, HTTP2-Settings",
            Some("websocket"),
        ),
        ("HTTP/2.0", "upgrade", None),
        ("websocket", "close", None),
    ] {
        let mut h = map(&[
            ("upgrade", upgrade),
            ("connection", connection),
            ("http2-settings", "AAMAAABkAAQCAAAAAAIAAAAA"),
        ]);
        let s = sanitize_request(&mut h, how(false));
        assert_eq!(
            s.upgrade.as_ref().map(|v| v.to_str().unwrap()),
            kept,
            "{upgrade} / {connection}"
        );
        assert!(!h.contains_key("http2-settings"), "{upgrade}");
        match kept {
            Some(v) => {
                assert_eq!(h.get("upgrade").unwrap(), v);
                assert_eq!(h.get("connection").unwrap(), "upgrade");
            }
            None => {
                assert!(!h.contains_key("upgrade"), "{upgrade}: {h:?}");
                assert!(!h.contains_key("connection"), "{upgrade}: {h:?}");
            }
        }
    }
    let none: &[String] = NO_UPGRADES;
    let mut h = map(&[("upgrade", "websocket"), ("connection", "upgrade")]);
    let s = sanitize_request(
        &mut h,
        Hygiene {
            upgrade_protocols: none,
            ..how(false)
        },
    );
    assert!(s.upgrade.is_none());
}

#[test]
fn a_switch_must_name_an_offered_protocol() {
    let offered = HeaderValue::from_static("websocket");
    assert!(upgrade_agrees(
        &offered,
        Some(&HeaderValue::from_static("WebSocket"))
    ));
    assert!(!upgrade_agrees(
        &offered,
        Some(&HeaderValue::from_static("h2c"))
    ));
    assert!(!upgrade_agrees(&offered, None));
}

#[test]
fn identity_headers_are_recognised_in_every_spelling() {
    let cases = [
        ("x-forwarded-user", true),
        ("X-Forwarded-User", true),
        ("x_forwarded_user", true),
        ("X_FORWARDED_EMAIL", true),
        ("x-forwarded_user-id", true),
        ("remote-user", true),
        ("Remote_Groups", true),
        ("x-portcullis-assertion", true),
        ("x-forwarded-for", false),
        ("x-forwarded-users", false),
        ("user", false),
        ("authorization", false),
    ];
    for (name, expected) in cases {
        let name = HeaderName::from_bytes(name.as_bytes()).unwrap();
        assert_eq!(is_identity_header(&name), expected, "{name}");
    }
}

#[test]
fn spoofed_identity_headers_are_removed_whoever_sends_them() {
    for trusted in [false, true] {
        let mut h = map(&[
            ("x-forwarded-user", "admin"),
            ("X_Forwarded_Email", "a@b"),
            ("remote-user", "root"),
            ("remote-groups", "owner"),
            ("x-portcullis-assertion", "forged"),
            ("accept", "*/*"),
        ]);
        let s = sanitize_request(&mut h, how(trusted));
        assert_eq!(s.spoofed_identity, 5);
        assert_eq!(h.len(), 1, "{h:?}");
        assert!(h.contains_key("accept"));
    }
}

#[test]
fn hop_by_hop_headers_and_those_named_in_connection_are_removed() {
    let mut h = map(&[
        ("connection", "keep-alive, X-Secret, close"),
        ("keep-alive", "timeout=5"),
        ("x-secret", "1"),
        ("proxy-connection", "keep-alive"),
        ("proxy-authorization", "Basic x"),
        ("transfer-encoding", "chunked"),
        ("trailer", "x-checksum"),
        ("te", "gzip"),
        ("upgrade", "h2c"),
        ("x-keep", "yes"),
    ]);
    let s = sanitize_request(&mut h, how(false));
    assert!(s.upgrade.is_none());
    assert_eq!(h.len(), 1, "{h:?}");
    assert_eq!(h["x-keep"], "yes");
}

#[test]
fn headers_named_in_a_connection_value_that_is_not_text_are_removed() {
    let not_text = HeaderValue::from_bytes(b"x-secret, \xef").unwrap();
    for response in [false, true] {
        let mut h = map(&[("x-secret", "1"), ("x-keep", "yes")]);
        h.insert(http::header::CONNECTION, not_text.clone());
        if response {
            sanitize_response(&mut h, false);
        } else {
            sanitize_request(&mut h, how(false));
        }
        assert_eq!(h.len(), 1, "{h:?}");
        assert_eq!(h["x-keep"], "yes");
    }
}

#[test]
fn te_trailers_survives_for_grpc() {
    let mut h = map(&[("te", "trailers, gzip")]);
    sanitize_request(&mut h, how(false));
    assert_eq!(h["te"], "trailers");
}

#[test]
fn an_upgrade_request_keeps_upgrade_and_connection_upgrade() {
    let mut h = map(&[
        ("connection", "Upgrade, x-private"),
        ("upgrade", "websocket"),
        ("x-private", "1"),
        ("sec-websocket-key", "abc"),
    ]);
    let s = sanitize_request(&mut h, how(false));
    assert_eq!(
        s.upgrade.as_ref().map(|v| v.as_bytes()),
        Some(&b"websocket"[..])
    );
    assert_eq!(h["connection"], "upgrade");
    assert_eq!(h["upgrade"], "websocket");
    assert!(!h.contains_key("x-private"));
    assert!(h.contains_key("sec-websocket-key"));
}

#[test]
fn forwarded_headers_from_untrusted_peers_are_replaced() {
    let mut h = map(&[
        ("x-forwarded-for", "6.6.6.6"),
        ("x-forwarded-proto", "https"),
        ("x-forwarded-host", "evil.example"),
        ("x_forwarded_for", "6.6.6.6"),
        ("forwarded", "for=6.6.6.6"),
        ("x-real-ip", "6.6.6.6"),
    ]);
    sanitize_request(&mut h, how(false));
    let host = HeaderValue::from_static("app.example");
    set_forwarded(
        &mut h,
        &HeaderValue::from_static("10.1.2.3"),
        "http",
        Some(&host),
    );
    assert_eq!(h["x-forwarded-for"], "10.1.2.3");
    assert_eq!(h["x-forwarded-proto"], "http");
    assert_eq!(h["x-forwarded-host"], "app.example");
    assert!(!h.contains_key("forwarded"));
    assert!(!h.contains_key("x-real-ip"));
    assert!(!h.contains_key("x_forwarded_for"));
}

#[test]
fn forwarded_headers_from_trusted_proxies_are_kept_and_extended() {
    let mut h = map(&[
        ("x-forwarded-for", "1.1.1.1"),
        ("x-forwarded-for", "2.2.2.2"),
        ("x-forwarded-proto", "https"),
        ("x-forwarded-host", "public.example"),
    ]);
    sanitize_request(&mut h, how(true));
    let host = HeaderValue::from_static("internal:8443");
    set_forwarded(
        &mut h,
        &HeaderValue::from_static("10.0.0.5"),
        "http",
        Some(&host),
    );
    assert_eq!(h["x-forwarded-for"], "1.1.1.1, 2.2.2.2, 10.0.0.5");
    assert_eq!(h["x-forwarded-proto"], "https");
    assert_eq!(h["x-forwarded-host"], "public.example");
}

#[test]
fn responses_lose_hop_by_hop_headers_except_on_a_switch() {
    let mut h = map(&[
        ("connection", "keep-alive, x-internal"),
        ("x-internal", "1"),
        ("keep-alive", "timeout=5"),
        ("content-type", "text/plain"),
    ]);
    sanitize_response(&mut h, false);
    assert_eq!(h.len(), 1);
    let mut h = map(&[("connection", "Upgrade"), ("upgrade", "websocket")]);
    sanitize_response(&mut h, true);
    assert_eq!(h["upgrade"], "websocket");
    assert_eq!(h["connection"], "upgrade");
}

#[test]
fn framing_is_one_chunked_or_none_and_never_spelled_with_underscores() {
    for ok in [
        map(&[]),
        map(&[("transfer-encoding", "chunked")]),
        map(&[("transfer-encoding", "CHUNKED")]),
        map(&[("content-length", "5"), ("x_content", "1")]),
        map(&[("x-content_length", "5")]),
    ] {
        assert_eq!(check_framing(&ok), Ok(()), "{ok:?}");
    }
    for te in [
        map(&[("transfer-encoding", "identity, chunked")]),
        map(&[("transfer-encoding", "gzip, chunked")]),
        map(&[
            ("transfer-encoding", "chunked"),
            ("transfer-encoding", "chunked"),
        ]),
    ] {
        assert_eq!(
            check_framing(&te),
            Err(FramingError::UnsupportedCoding),
            "{te:?}"
        );
    }
    for name in [
        "content_length",
        "Content_Length",
        "transfer_encoding",
        "transfer-encoding_",
    ] {
        let m = map(&[(name, "1")]);
        let expect = if name.ends_with('_') {
            Ok(())
        } else {
            Err(FramingError::UnderscoreSpelling)
        };
        assert_eq!(check_framing(&m), expect, "{name}");
    }
}

#[test]
fn the_traced_sanitizer_names_each_removal_and_removes_what_the_plain_one_removes() {
    let pairs = [
        ("X_Forwarded_User", "mallory"),
        ("remote-groups", "admins"),
        ("x-http-method-override", "DELETE"),
        ("x-forwarded-for", "10.9.9.9"),
        ("connection", "close, x-secret, keep-alive"),
        ("x-secret", "1"),
        ("keep-alive", "5"),
        ("accept", "*/*"),
    ];
    let mut plain = map(&pairs);
    sanitize_request(&mut plain, how(false));
    let mut traced = map(&pairs);
    let mut seen: Vec<(String, Removed)> = Vec::new();
    struct Keep<'a>(&'a mut Vec<(String, Removed)>);
    impl Removals for Keep<'_> {
        fn removed(&mut self, name: &HeaderName, why: Removed) {
            self.0.push((name.as_str().to_owned(), why));
        }
    }
    sanitize_request_traced(&mut traced, how(false), &mut Keep(&mut seen));
    assert_eq!(plain, traced);
    seen.sort_by(|a, b| a.0.cmp(&b.0));
    let want = [
        ("connection", Removed::HopByHop),
        ("keep-alive", Removed::HopByHop),
        ("remote-groups", Removed::Identity),
        ("x-forwarded-for", Removed::UntrustedForwarded),
        ("x-http-method-override", Removed::Override),
        ("x-secret", Removed::NamedByConnection),
        ("x_forwarded_user", Removed::Identity),
    ];
    let got: Vec<(&str, Removed)> = seen.iter().map(|(n, w)| (n.as_str(), *w)).collect();
    assert_eq!(got, want);
    assert_eq!(
        traced.keys().map(|k| k.as_str()).collect::<Vec<_>>(),
        ["accept"]
    );
}

#[test]
fn every_fixed_hop_by_hop_header_is_removed_from_requests_and_responses() {
    // One at a time, so that no other member's removal (Connection's above all) hides a
    // missing one.
    for name in [
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
    ] {
        let mut h = map(&[(name, "x"), ("accept", "*/*")]);
        sanitize_request(&mut h, how(false));
        let left: Vec<&str> = h.keys().map(HeaderName::as_str).collect();
        assert_eq!(left, ["accept"], "the request kept {name}");
        let mut h = map(&[(name, "x"), ("content-type", "text/plain")]);
        sanitize_response(&mut h, false);
        let left: Vec<&str> = h.keys().map(HeaderName::as_str).collect();
        assert_eq!(left, ["content-type"], "the response kept {name}");
    }
}

#[test]
fn https_is_the_first_forwarded_proto_or_else_the_connection() {
    // (X-Forwarded-Proto, TLS connection, HTTPS)
    let cases = [
        (None, false, false),
        (None, true, true),
        (Some("https"), false, true),
        (Some(" HTTPS , http"), false, true),
        (Some("http, https"), true, false),
    ];
    for (proto, tls, want) in cases {
        let pairs: Vec<(&str, &str)> = proto
            .map(|p| ("x-forwarded-proto", p))
            .into_iter()
            .collect();
        assert_eq!(
            forwarded_https(&map(&pairs), tls),
            want,
            "{proto:?} tls={tls}"
        );
    }
}

#[test]
fn an_identity_is_added_in_the_style_asked_for() {
    let user = UserIdentity::new(
        "alice",
        "a@example.com",
        "u-1",
        "Alice A",
        ["owner".to_owned(), "admin:o-1".to_owned()].into_iter(),
    );
    let scopes = Identity::scopes_value(&["all".to_owned()]);
    let id = Identity::from_parts(Arc::new(user), Arc::new(scopes));
    let mut h = HeaderMap::new();
    id.apply(&mut h, IdentityStyle::Forwarded);
    assert_eq!(h.len(), 5, "{h:?}");
    assert_eq!(h["x-forwarded-user"], "alice");
    assert_eq!(h["x-forwarded-email"], "a@example.com");
    assert_eq!(h["x-forwarded-user-id"], "u-1");
    assert_eq!(h["x-forwarded-roles"], "owner,admin:o-1");
    assert_eq!(h["x-forwarded-scopes"], "all");
    let mut h = HeaderMap::new();
    id.apply(&mut h, IdentityStyle::Remote);
    assert_eq!(h.len(), 4, "{h:?}");
    assert_eq!(h["remote-user"], "alice");
    assert_eq!(h["remote-email"], "a@example.com");
    assert_eq!(h["remote-name"], "Alice A");
    assert_eq!(h["remote-groups"], "owner,admin:o-1");
    let mut h = HeaderMap::new();
    id.apply(&mut h, IdentityStyle::None);
    assert!(h.is_empty());
}

/// `classify_lower` skips names by their first byte before comparing: every name it knows must
/// get past that filter.
#[test]
fn every_header_the_hygiene_knows_gets_past_the_first_byte_filter() {
    let forwarded = [
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
    for name in forwarded {
        assert!(classify_lower(name) == Class::Forwarded, "{name}");
    }
    for name in IDENTITY_HEADERS {
        assert!(classify_lower(name) == Class::Identity, "{name}");
    }
    for name in OVERRIDE_HEADERS {
        assert!(classify_lower(name) == Class::Override, "{name}");
    }
    for (i, name) in HOP_BY_HOP.iter().enumerate() {
        assert!(
            classify_lower(name.as_str()) == Class::HopByHop(i),
            "{name}"
        );
    }
    for name in [
        "accept",
        "authorization",
        "cookie",
        "host",
        "user-agent",
        "x-request-id",
    ] {
        assert!(classify_lower(name) == Class::Keep, "{name}");
    }
}
