use std::collections::HashMap;

use http::header::{HeaderMap, HeaderName, HeaderValue};
use http::Uri;

use super::*;

const ID: &str = "AbCdEf0123";
const SECRET: &str = "0123456789abcdefGHIJKL";

fn token_str() -> String {
    format!("{ID}-{SECRET}")
}

fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
    let mut m = HeaderMap::new();
    for (k, v) in pairs {
        m.append(
            HeaderName::from_bytes(k.as_bytes()).unwrap(),
            HeaderValue::from_str(v).unwrap(),
        );
    }
    m
}

#[test]
fn generated_tokens_parse_back_to_themselves() {
    for _ in 0..100 {
        let token = Token::generate().unwrap();
        let id = *token.id();
        let hash = hash_secret(token.secret());
        let s = token.reveal();
        assert_eq!(s.len(), KEY_ID_LEN + 1 + SECRET_LEN);
        assert!(s[..KEY_ID_LEN].bytes().all(|b| b.is_ascii_alphanumeric()));
        let parsed: Token = s.parse().unwrap();
        assert_eq!(*parsed.id(), id);
        assert_eq!(parsed.id().to_string(), s[..KEY_ID_LEN]);
        assert!(verify_secret(parsed.secret(), &hash));
    }
}

#[test]
fn every_malformed_shape_gets_coders_detail() {
    let long_secret = format!("{ID}-{SECRET}x");
    let cases: Vec<(String, &str)> = vec![
        (
            String::new(),
            "Invalid API key format: incorrect amount of API key parts, expected 2 got 1",
        ),
        (
            format!("{ID}{SECRET}"),
            "Invalid API key format: incorrect amount of API key parts, expected 2 got 1",
        ),
        (
            format!("{ID}-{SECRET}-x"),
            "Invalid API key format: incorrect amount of API key parts, expected 2 got 3",
        ),
        (
            "--".into(),
            "Invalid API key format: incorrect amount of API key parts, expected 2 got 3",
        ),
        (
            format!("{}-{SECRET}", &ID[..9]),
            "invalid API key ID length, expected 10 got 9",
        ),
        (
            format!("-{SECRET}"),
            "invalid API key ID length, expected 10 got 0",
        ),
        (
            // Lengths are bytes, as in Go: 9 chars make 10 bytes, so only the symbol check fails.
            format!("é{}-{SECRET}", &ID[..8]),
            "API key is invalid.",
        ),
        (
            long_secret,
            "invalid API key secret length, expected 22 got 23",
        ),
        (
            format!("{ID}-"),
            "invalid API key secret length, expected 22 got 0",
        ),
        (format!("AbCdEf012_-{SECRET}"), "API key is invalid."),
        (
            format!("{ID}-0123456789abcdefGHIJK!"),
            "API key secret is invalid.",
        ),
    ];
    for (input, detail) in cases {
        let err = Token::parse(&input).unwrap_err();
        assert_eq!(err.to_string(), detail, "{input:?}");
    }
    assert_eq!(
        "AbCdEf012".parse::<KeyId>().unwrap_err(),
        TokenError::IdLength(9)
    );
    assert_eq!(Token::parse(&token_str()).unwrap().id().as_str(), ID);
}

#[test]
fn generated_symbols_cover_the_alphabet_evenly() {
    let mut counts: HashMap<u8, usize> = HashMap::new();
    let n = 2000;
    for _ in 0..n {
        let s = Token::generate().unwrap().reveal();
        let (id, secret) = s.split_once('-').unwrap();
        assert_eq!((id.len(), secret.len()), (KEY_ID_LEN, SECRET_LEN));
        for b in id.bytes().chain(secret.bytes()) {
            *counts.entry(b).or_default() += 1;
        }
    }
    assert_eq!(counts.len(), 62, "{counts:?}");
    assert!(counts.keys().all(|b| ALPHABET.contains(b)));
    // 64,000 draws: 1,032 expected per symbol, standard deviation about 32.
    let expected = n * (KEY_ID_LEN + SECRET_LEN) / 62;
    for (symbol, count) in counts {
        assert!(
            count.abs_diff(expected) < expected / 5,
            "{} appeared {count} times, expected about {expected}",
            symbol as char
        );
    }
}

#[test]
fn secrets_verify_only_against_their_own_hash() {
    let a = Token::parse(&token_str()).unwrap();
    let b = Token::parse(&format!("{ID}-0123456789abcdefGHIJKM")).unwrap();
    let hash = hash_secret(a.secret());
    assert!(verify_secret(a.secret(), &hash));
    assert!(!verify_secret(b.secret(), &hash));
    assert!(!verify_secret(a.secret(), &[0; 32]));
    // SHA-256 of the secret's ASCII, as Coder stores it.
    let expected: [u8; 32] = Sha256::digest(SECRET.as_bytes()).into();
    assert_eq!(hash, expected);
}

#[test]
fn debug_never_shows_the_secret() {
    let token = Token::parse(&token_str()).unwrap();
    let all = format!("{token:?} {:?} {:#?}", token.secret(), token);
    assert!(!all.contains(SECRET), "{all}");
    assert!(!all.contains(&SECRET[..8]), "{all}");
    assert!(all.contains(ID), "the id is not secret: {all}");
}

/// Asserts what [`extract`] finds in a request with these headers and this target.
fn finds(pairs: &[(&str, &str)], uri: &str, want: Option<&str>) {
    let u: Uri = uri.parse().unwrap();
    let got = extract(&headers(pairs), &u).map(Cow::into_owned);
    assert_eq!(got.as_deref(), want, "{pairs:?} {uri}");
}

#[test]
fn extract_reads_every_source_in_coders_order() {
    let t = token_str();
    let t = t.as_str();
    let q = |k: &str| format!("/?{k}={t}");
    finds(&[], "/", None);
    finds(
        &[("cookie", &format!("coder_session_token={t}"))],
        "/",
        Some(t),
    );
    finds(&[], &q("coder_session_token"), Some(t));
    finds(&[("coder-session-token", t)], "/", Some(t));
    finds(&[("authorization", &format!("Bearer {t}"))], "/", Some(t));
    finds(&[], &q("access_token"), Some(t));

    // Precedence: cookie, query, header, bearer, access_token. The cookie beats the header,
    // as in Coder.
    let all = "/?coder_session_token=query&access_token=access";
    let header = ("coder-session-token", "header");
    let bearer = ("authorization", "Bearer bearer");
    finds(
        &[header, bearer, ("cookie", "coder_session_token=c")],
        all,
        Some("c"),
    );
    finds(&[header, bearer], all, Some("query"));
    finds(&[bearer, header], "/?access_token=access", Some("header"));
    finds(&[bearer], "/?access_token=access", Some("bearer"));

    // Bearer's scheme is case-insensitive; other schemes carry no token.
    finds(&[("authorization", "bEaReR x")], "/", Some("x"));
    finds(&[("authorization", "BEARER x")], "/", Some("x"));
    finds(&[("authorization", "Basic dTpw")], "/", None);
    finds(&[("authorization", "Bearer")], "/", None);
    finds(&[("authorization", "Bearerx y")], "/", None);

    // Empty values are skipped in favour of the next source.
    let empty = "/?coder_session_token=&access_token=";
    let empty_cookie = ("cookie", "coder_session_token=");
    finds(
        &[empty_cookie, ("coder-session-token", "h")],
        empty,
        Some("h"),
    );
    let quoted_empty = ("cookie", "coder_session_token=\"\"");
    let blank_bearer = ("authorization", "Bearer  ");
    finds(&[quoted_empty, blank_bearer], "/?access_token=a", Some("a"));

    // Several cookies, several Cookie headers, any order, quoted values.
    let two = [
        ("cookie", "a=1; b=2"),
        ("cookie", "c=3;coder_session_token=two ; d=4"),
    ];
    finds(&two, "/", Some("two"));
    let quoted = (
        "cookie",
        "xcoder_session_token=no; coder_session_token=\"q\"",
    );
    finds(&[quoted], "/", Some("q"));
    let others = ("cookie", "coder_session_token_x=no; Coder_Session_Token=no");
    finds(&[others], "/", None);

    // Query keys and values are percent-decoded; a pair with a bad escape or a `;` is skipped.
    finds(&[], "/?a=b&coder_session_token=a%2Db+c", Some("a-b c"));
    finds(&[], "/?coder%5Fsession%5Ftoken=k", Some("k"));
    finds(&[], "/?coder_session_token=%zz&access_token=ok", Some("ok"));
    finds(&[], "/?x=1;coder_session_token=k", None);
    finds(&[], "/?access_tokens=x&xaccess_token=y", None);
}

#[test]
fn extract_borrows_unless_a_query_value_needs_decoding() {
    let t = token_str();
    let h = headers(&[("cookie", &format!("a=b; coder_session_token={t}"))]);
    let u: Uri = "/".parse().unwrap();
    assert!(matches!(extract(&h, &u), Some(Cow::Borrowed(_))));
    let h = headers(&[("authorization", &format!("Bearer {t}"))]);
    assert!(matches!(extract(&h, &u), Some(Cow::Borrowed(_))));
    let u: Uri = format!("/?q=a%20b&access_token={t}").parse().unwrap();
    assert!(matches!(
        extract(&HeaderMap::new(), &u),
        Some(Cow::Borrowed(_))
    ));
    let u: Uri = "/?access_token=a%2Db".parse().unwrap();
    assert!(matches!(
        extract(&HeaderMap::new(), &u),
        Some(Cow::Owned(_))
    ));
}

#[test]
fn strip_removes_our_cookie_and_keeps_the_others_byte_for_byte() {
    let cases = [
        (
            vec!["a=1; coder_session_token=t; b=\"x y\""],
            vec!["a=1; b=\"x y\""],
        ),
        (vec!["coder_session_token=t;c=3"], vec!["c=3"]),
        (vec!["c=3 ;  coder_session_token = t"], vec!["c=3"]),
        (vec!["coder_session_token=t"], vec![]),
        (
            vec![
                "a=1",
                "coder_session_token=t; z=%7B",
                "coder_session_token=u",
            ],
            vec!["a=1", "z=%7B"],
        ),
        (
            vec!["xcoder_session_token=1;coder_session_token_x=2"],
            vec!["xcoder_session_token=1;coder_session_token_x=2"],
        ),
    ];
    for (before, after) in cases {
        let pairs: Vec<(&str, &str)> = before.iter().map(|v| ("cookie", *v)).collect();
        let mut h = headers(&pairs);
        let mut u: Uri = "/p".parse().unwrap();
        strip_credentials(&mut h, &mut u);
        let got: Vec<&str> = h
            .get_all("cookie")
            .iter()
            .map(|v| v.to_str().unwrap())
            .collect();
        assert_eq!(got, after, "{before:?}");
        assert_eq!(u, "/p");
    }
}

#[test]
fn strip_removes_token_query_parameters_and_keeps_the_rest() {
    let cases = [
        ("/p?coder_session_token=t", "/p"),
        ("/p?access_token=t&coder_session_token=u", "/p"),
        ("/p?a=1&coder_session_token=t&b=2", "/p?a=1&b=2"),
        ("/p?a=%20+x&access_token=t", "/p?a=%20+x"),
        ("/p?coder%5fsession_token=t&b=", "/p?b="),
        ("/p?a=1;access_token=t&b=2", "/p?b=2"),
        (
            "/p?access_tokenx=1&x_access_token=2",
            "/p?access_tokenx=1&x_access_token=2",
        ),
        ("/p?a=access_token", "/p?a=access_token"),
        (
            "http://h.example/p/q?access_token=t&z",
            "http://h.example/p/q?z",
        ),
    ];
    for (before, after) in cases {
        let mut h = HeaderMap::new();
        let mut u: Uri = before.parse().unwrap();
        strip_credentials(&mut h, &mut u);
        assert_eq!(u.to_string(), after, "{before}");
        assert!(extract(&h, &u).is_none() || after.contains("access_tokenx"));
    }
}

#[test]
fn strip_removes_token_headers_and_only_bearer_authorization() {
    let mut h = headers(&[
        ("coder-session-token", "a"),
        ("coder_session_token", "b"),
        ("Coder_Session-Token", "c"),
        ("authorization", "Bearer x"),
        ("authorization", "Basic dTpw"),
        ("authorization", "bearer"),
        ("authorization", "BEARER\ty"),
        ("x-other", "kept"),
    ]);
    let mut u: Uri = "/".parse().unwrap();
    strip_credentials(&mut h, &mut u);
    let names: Vec<&str> = h.keys().map(HeaderName::as_str).collect();
    assert!(!names.iter().any(|n| n.contains("session")), "{names:?}");
    let auth: Vec<&str> = h
        .get_all("authorization")
        .iter()
        .map(|v| v.to_str().unwrap())
        .collect();
    assert_eq!(auth, ["Basic dTpw"]);
    assert_eq!(h["x-other"], "kept");
    assert!(extract(&h, &u).is_none());
}

#[test]
fn strip_changes_nothing_when_there_is_nothing_to_strip() {
    let pairs = [
        ("cookie", "a=1;b=2 ;  c=3"),
        ("cookie", "d=4"),
        ("authorization", "Basic dTpw"),
        ("x-coder-session-token", "not ours"),
        ("accept", "*/*"),
    ];
    let mut h = headers(&pairs);
    let before_headers = h.clone();
    for uri in [
        "/",
        "/p?a=1&&b=%20;c",
        "http://h.example/x?access_tokens=1",
        "*",
    ] {
        let mut u: Uri = uri.parse().unwrap();
        let before = u.clone();
        strip_credentials(&mut h, &mut u);
        assert_eq!(u, before);
        assert_eq!(h, before_headers);
    }
}

#[test]
fn strip_keeps_headers_that_only_resemble_the_token_header() {
    for name in [
        "coder-session-tokex",
        "coder-session-tokens",
        "coderxsessionxtoken",
        "_oder-session-token",
        "coder-session",
    ] {
        let mut h = headers(&[(name, "v"), ("coder_session_token", "t")]);
        let mut uri: Uri = "/".parse().unwrap();
        strip_credentials(&mut h, &mut uri);
        let left: Vec<&str> = h.keys().map(HeaderName::as_str).collect();
        assert_eq!(left, [name]);
    }
}
