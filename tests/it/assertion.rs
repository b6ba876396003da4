//! The signed identity assertion, checked where it matters: at the upstream. The echo upstream
//! reports the `X-Portcullis-Assertion` it received; the test then does what an application
//! would, fetching `/.portcullis/jwks.json` without credentials and verifying the ES256 JWT with
//! the `jsonwebtoken` crate (signature, `exp`, `aud`, `iss`), and compares the claims with the
//! identity headers of the same request. Also: key rotation (two keys, the first signs, both
//! published), a client's forged assertion never reaching the upstream, none on public routes,
//! and bad key files stopping `check-config`.

use std::net::SocketAddr;
use std::time::{SystemTime, UNIX_EPOCH};

use http::{Method, Request, StatusCode};
use serde_json::Value;

use crate::common::*;

const ISSUER: &str = "https://auth.test";

/// A config that authenticates every proxied request, signs with the test keys `keys` (in
/// order) and names `ISSUER`, plus `extra` TOML.
fn assertion_config(echo: SocketAddr, keys: &[&str], extra: &str) -> String {
    let keys: Vec<String> = keys
        .iter()
        .map(|k| format!("{:?}", key_file(&format!("{k}.pem")).display().to_string()))
        .collect();
    config_with_store(
        echo,
        "memory://",
        &random_key_prefix(),
        "",
        &format!(
            "[identity]\nassertion_key = [{}]\nissuer = \"{ISSUER}\"\n\n{extra}",
            keys.join(", ")
        ),
    )
}

/// A proxied `GET /app` to `host` with `token`, plus forged assertion headers in two
/// spellings; returns the echo report.
async fn proxied(addr: SocketAddr, host: &str, token: &str) -> Value {
    let req = Request::builder()
        .uri("/app")
        .header("host", host)
        .header("coder-session-token", token)
        .header("x-portcullis-assertion", "forged.by.client")
        .header("x_portcullis_assertion", "forged.by.client")
        .body(empty())
        .unwrap();
    let resp = send(addr, req).await;
    assert_eq!(resp.status(), StatusCode::OK);
    body_json(resp).await
}

/// The one assertion the upstream saw.
fn seen_assertion(seen: &Value) -> String {
    let all = seen_header(seen, "x-portcullis-assertion");
    assert_eq!(
        all.len(),
        1,
        "exactly one assertion reaches the upstream: {seen}"
    );
    assert!(
        !seen_header_names(seen).contains(&"x_portcullis_assertion".to_owned()),
        "{seen}"
    );
    assert_ne!(all[0], "forged.by.client");
    all[0].clone()
}

fn list(header: &[String]) -> Value {
    Value::from(
        header[0]
            .split(',')
            .filter(|s| !s.is_empty())
            .collect::<Vec<_>>(),
    )
}

#[tokio::test]
async fn the_upstream_verifies_the_assertion_with_the_published_keys() {
    let echo = start_echo().await;
    let sidecar =
        Sidecar::start(&assertion_config(echo, &["assertion-a", "assertion-b"], "")).await;
    let (user_id, token) = first_user_token(sidecar.addr).await;

    let seen = proxied(sidecar.addr, "App.Test:80", &token).await;
    let jwt = seen_assertion(&seen);
    let (kid, claims) = verify_assertion(sidecar.addr, &jwt, "app.test", ISSUER).await;
    assert_eq!(kid, key_kid("assertion-a"), "the first key signs");
    assert_eq!(claims["sub"], user_id.as_str());
    assert_eq!(claims["username"], "admin");
    assert_eq!(claims["email"], "admin@example.com");
    // The same names as the identity headers of the same request.
    assert_eq!(
        claims["username"],
        seen_header(&seen, "x-forwarded-user")[0].as_str()
    );
    assert_eq!(
        claims["roles"],
        list(&seen_header(&seen, "x-forwarded-roles"))
    );
    assert_eq!(
        claims["scopes"],
        list(&seen_header(&seen, "x-forwarded-scopes"))
    );
    assert!(claims["roles"]
        .as_array()
        .unwrap()
        .contains(&"owner".into()));
    let (iat, exp) = (
        claims["iat"].as_u64().unwrap(),
        claims["exp"].as_u64().unwrap(),
    );
    assert_eq!(exp - iat, 60);
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    assert!(iat <= now && now - iat < 30, "iat {iat}, now {now}");

    // The JWKS is public and cacheable, and lists both keys, the signing one first.
    let resp = send(sidecar.addr, get("app.test", "/.portcullis/jwks.json")).await;
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(resp.headers()["cache-control"], "public, max-age=300");
    assert!(resp.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("application/json"));
    let jwks = body_json(resp).await;
    let kids: Vec<&str> = jwks["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["kid"].as_str().unwrap())
        .collect();
    assert_eq!(kids, [key_kid("assertion-a"), key_kid("assertion-b")]);
    for k in jwks["keys"].as_array().unwrap() {
        assert_eq!((&k["kty"], &k["crv"]), (&"EC".into(), &"P-256".into()));
        assert_eq!((&k["use"], &k["alg"]), (&"sig".into(), &"ES256".into()));
        assert!(k.get("d").is_none(), "no private key material: {k}");
    }
    sidecar.shutdown().await;
}

#[tokio::test]
async fn after_rotation_the_new_first_key_signs_and_the_old_one_stays_published() {
    let echo = start_echo().await;
    let sidecar =
        Sidecar::start(&assertion_config(echo, &["assertion-b", "assertion-a"], "")).await;
    let (_, token) = first_user_token(sidecar.addr).await;
    let jwt = seen_assertion(&proxied(sidecar.addr, "app.test", &token).await);
    let (kid, _) = verify_assertion(sidecar.addr, &jwt, "app.test", ISSUER).await;
    assert_eq!(kid, key_kid("assertion-b"));

    // The signature is B's own: checked with A's published key instead, it fails.
    let jwks = body_json(send(sidecar.addr, get("app.test", "/.portcullis/jwks.json")).await).await;
    assert_eq!(jwks["keys"][1]["kid"], key_kid("assertion-a").as_str());
    let a = &jwks["keys"][1];
    let key = jsonwebtoken::DecodingKey::from_ec_components(
        a["x"].as_str().unwrap(),
        a["y"].as_str().unwrap(),
    )
    .unwrap();
    let mut validation = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::ES256);
    validation.set_audience(&["app.test"]);
    let err = jsonwebtoken::decode::<Value>(&jwt, &key, &validation).unwrap_err();
    assert_eq!(
        err.kind(),
        &jsonwebtoken::errors::ErrorKind::InvalidSignature
    );
    sidecar.shutdown().await;
}

#[tokio::test]
async fn each_host_gets_its_own_audience_and_a_host_reuses_its_assertion() {
    let echo = start_echo().await;
    let sidecar = Sidecar::start(&assertion_config(echo, &["assertion-a"], "")).await;
    let (_, token) = first_user_token(sidecar.addr).await;
    let first = seen_assertion(&proxied(sidecar.addr, "app.test", &token).await);
    let again = seen_assertion(&proxied(sidecar.addr, "app.test", &token).await);
    assert_eq!(first, again, "signed once, served from the session's cache");
    let other = seen_assertion(&proxied(sidecar.addr, "other.test:8443", &token).await);
    verify_assertion(sidecar.addr, &other, "other.test:8443", ISSUER).await;
    // Verifying `other` for app.test fails on its audience.
    let jwks = body_json(send(sidecar.addr, get("app.test", "/.portcullis/jwks.json")).await).await;
    let key = jsonwebtoken::DecodingKey::from_ec_components(
        jwks["keys"][0]["x"].as_str().unwrap(),
        jwks["keys"][0]["y"].as_str().unwrap(),
    )
    .unwrap();
    let mut validation = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::ES256);
    validation.set_audience(&["app.test"]);
    let err = jsonwebtoken::decode::<Value>(&other, &key, &validation).unwrap_err();
    assert_eq!(
        err.kind(),
        &jsonwebtoken::errors::ErrorKind::InvalidAudience
    );
    sidecar.shutdown().await;
}

#[tokio::test]
async fn public_routes_carry_no_assertion_and_forged_ones_are_removed() {
    let echo = start_echo().await;
    let sidecar = Sidecar::start(&assertion_config(
        echo,
        &["assertion-a"],
        "[policy]\ndefault = \"public\"\n",
    ))
    .await;
    let (_, token) = first_user_token(sidecar.addr).await;
    // A valid token on a public route: no identity of any kind reaches the upstream.
    let seen = proxied(sidecar.addr, "app.test", &token).await;
    let names = seen_header_names(&seen);
    for name in [
        "x-portcullis-assertion",
        "x_portcullis_assertion",
        "x-forwarded-user",
    ] {
        assert!(!names.contains(&name.to_owned()), "{name} in {seen}");
    }
    sidecar.shutdown().await;
}

#[tokio::test]
async fn the_jwks_answers_404_without_keys_and_405_to_other_methods() {
    let echo = start_echo().await;
    let without = Sidecar::start(&config_with_store(echo, "memory://", "p:", "", "")).await;
    let (status, body, _) =
        call_json(without.addr, get("app.test", "/.portcullis/jwks.json")).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    assert!(body["detail"]
        .as_str()
        .unwrap()
        .contains("identity.assertion_key"));
    without.shutdown().await;

    let with = Sidecar::start(&assertion_config(echo, &["assertion-a"], "")).await;
    let req = request(Method::POST, "app.test", "/.portcullis/jwks.json", empty());
    let resp = send(with.addr, req).await;
    assert_eq!(resp.status(), StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(resp.headers()["allow"], "GET, HEAD");
    with.shutdown().await;
}

#[tokio::test]
async fn check_config_refuses_a_key_that_is_not_pkcs8_p256_naming_the_key_and_file() {
    let dir = tempfile::tempdir().unwrap();
    for (key, reason) in [
        ("ec-sec1.pem", "no PKCS#8 \"PRIVATE KEY\" PEM block"),
        ("p384.pem", "not an ECDSA P-256"),
    ] {
        let config = dir.path().join("portcullis.toml");
        std::fs::write(
            &config,
            format!(
                "[upstream]\nurl = \"http://127.0.0.1:3000\"\n\n[identity]\nassertion_key = {:?}\n",
                key_file(key).display().to_string()
            ),
        )
        .unwrap();
        let out = bounded(
            "check-config",
            command()
                .arg("check-config")
                .arg("--config")
                .arg(&config)
                .output(),
        )
        .await
        .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{stderr}");
        assert!(stderr.contains("identity.assertion_key"), "{stderr}");
        assert!(stderr.contains(key) && stderr.contains(reason), "{stderr}");
    }
}
