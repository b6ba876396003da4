use std::collections::HashSet;

use jsonwebtoken::{decode, decode_header, Algorithm, DecodingKey, Validation};
use serde_json::Value;
use time::OffsetDateTime;
use uuid::Uuid;

use super::*;
use crate::model::{ApiKey, LoginType, Membership, User};

fn key_file(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/keys")
        .join(name)
}

fn key(name: &str) -> SigningKey {
    let path = key_file(name);
    SigningKey::from_pem(&path, &std::fs::read(&path).unwrap()).unwrap()
}

fn session() -> Session {
    let now = OffsetDateTime::now_utc();
    let user = User {
        name: "Ada \"the first\"".into(),
        ..User::for_test("ada", &["owner"])
    };
    let org = Uuid::new_v4();
    let memberships = vec![Membership {
        user_id: user.id,
        organization_id: org,
        roles: vec!["organization-admin".into()],
        created_at: now,
        updated_at: now,
    }];
    let key = ApiKey {
        id: "abcdefghij".into(),
        hashed_secret: [0; 32],
        user_id: user.id,
        last_used: now,
        expires_at: now + time::Duration::HOUR,
        created_at: now,
        updated_at: now,
        login_type: LoginType::Password,
        lifetime_seconds: 3600,
        ip_address: String::new(),
        token_name: String::new(),
        scopes: vec!["workspace:read".into(), "user:read".into()].into(),
        allow_list: Vec::new().into(),
        not_after: None,
    };
    Session::new(key, user, memberships).expect("a key id")
}

/// Decodes `jwt` with the key the JWKS names in its header, as an upstream would.
fn verify(jwks: &[u8], jwt: &str, aud: &str, iss: &str) -> Value {
    let jwks: Value = serde_json::from_slice(jwks).unwrap();
    let kid = decode_header(jwt).unwrap().kid.expect("a kid");
    let jwk = jwks["keys"]
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["kid"] == kid.as_str())
        .expect("the kid is published");
    let key =
        DecodingKey::from_ec_components(jwk["x"].as_str().unwrap(), jwk["y"].as_str().unwrap())
            .unwrap();
    let mut validation = Validation::new(Algorithm::ES256);
    validation.set_audience(&[aud]);
    validation.set_issuer(&[iss]);
    decode::<Value>(jwt, &key, &validation).unwrap().claims
}

#[test]
fn the_kid_is_the_rfc7638_thumbprint_openssl_works_out() {
    for name in ["assertion-a", "assertion-b"] {
        let want = std::fs::read_to_string(key_file(&format!("{name}.kid"))).unwrap();
        assert_eq!(key(&format!("{name}.pem")).kid(), want.trim(), "{name}");
    }
}

#[test]
fn the_jwks_publishes_every_key_in_order_as_es256_signing_keys() {
    let signer = Signer::new(
        "portcullis",
        vec![key("assertion-a.pem"), key("assertion-b.pem")],
    );
    let jwks: Value = serde_json::from_slice(&signer.jwks()).unwrap();
    let keys = jwks["keys"].as_array().unwrap();
    assert_eq!(keys.len(), 2);
    for (jwk, signing) in keys.iter().zip(signer.keys()) {
        assert_eq!(jwk["kid"], signing.kid());
        assert_eq!(
            (&jwk["kty"], &jwk["crv"], &jwk["use"], &jwk["alg"]),
            (
                &"EC".into(),
                &"P-256".into(),
                &"sig".into(),
                &"ES256".into()
            )
        );
        for coordinate in ["x", "y"] {
            let bytes = Base64UrlUnpadded::decode_vec(jwk[coordinate].as_str().unwrap()).unwrap();
            assert_eq!(bytes.len(), 32, "{coordinate}");
        }
        assert!(jwk.get("d").is_none(), "no private part is published");
    }
}

#[test]
fn an_assertion_verifies_with_the_published_key_and_carries_the_session_claims() {
    let signer = Signer::new(
        "https://auth.example",
        vec![key("assertion-a.pem"), key("assertion-b.pem")],
    );
    let session = session();
    let issued = Issued::default();
    let jwt = issued.get(&signer, &session, "app.example").unwrap();
    let jwt = jwt.to_str().unwrap();
    let header = decode_header(jwt).unwrap();
    assert_eq!(header.alg, Algorithm::ES256);
    assert_eq!(
        header.kid.as_deref(),
        Some(signer.keys()[0].kid()),
        "the first key signs"
    );
    let claims = verify(&signer.jwks(), jwt, "app.example", "https://auth.example");
    let org = session.memberships[0].organization_id;
    assert_eq!(claims["sub"], session.user.id.to_string());
    assert_eq!(claims["email"], "ada@example.com");
    assert_eq!(claims["username"], "ada");
    assert_eq!(
        claims["roles"],
        serde_json::json!(["owner", format!("organization-admin:{org}")])
    );
    assert_eq!(
        claims["scopes"],
        serde_json::json!(["workspace:read", "user:read"])
    );
    let (iat, exp) = (
        claims["iat"].as_u64().unwrap(),
        claims["exp"].as_u64().unwrap(),
    );
    assert_eq!(exp - iat, LIFETIME);
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    assert!(iat <= now && now - iat < 5, "iat {iat}, now {now}");

    // Another audience is refused by a verifier that expects this one.
    let other = issued.get(&signer, &session, "other.example").unwrap();
    let key = DecodingKey::from_ec_components(&signer.keys()[0].x, &signer.keys()[0].y).unwrap();
    let mut validation = Validation::new(Algorithm::ES256);
    validation.set_audience(&["app.example"]);
    assert!(decode::<Value>(other.to_str().unwrap(), &key, &validation).is_err());
}

#[test]
fn an_assertion_is_reused_until_it_is_half_way_through_its_life() {
    let signer = Signer::new("portcullis", vec![key("assertion-a.pem")]);
    let session = session();
    let issued = Issued::default();
    let t0 = 1_900_000_000;
    let first = issued.get_at(&signer, &session, "app.example", t0).unwrap();
    let again = issued
        .get_at(&signer, &session, "app.example", t0 + REFRESH - 1)
        .unwrap();
    assert_eq!(first, again);
    let renewed = issued
        .get_at(&signer, &session, "app.example", t0 + REFRESH)
        .unwrap();
    assert_ne!(first, renewed);
    let payload = renewed.to_str().unwrap().split('.').nth(1).unwrap();
    let claims: Value =
        serde_json::from_slice(&Base64UrlUnpadded::decode_vec(payload).unwrap()).unwrap();
    assert_eq!(claims["iat"], t0 + REFRESH);
    assert_eq!(claims["exp"], t0 + REFRESH + LIFETIME);
}

#[test]
fn a_session_keeps_assertions_for_a_bounded_number_of_audiences() {
    let signer = Signer::new("portcullis", vec![key("assertion-a.pem")]);
    let session = session();
    let issued = Issued::default();
    let t0 = 1_900_000_000;
    let mut values = HashSet::new();
    for i in 0..(AUDIENCES as u64 + 2) {
        let v = issued
            .get_at(&signer, &session, &format!("host{i}.example"), t0 + i)
            .unwrap();
        values.insert(v);
    }
    assert_eq!(values.len(), AUDIENCES + 2, "one assertion per audience");
    assert_eq!(issued.signed.get().expect("signed").lock().len(), AUDIENCES);
    // The newest are kept; the oldest was replaced.
    let newest = format!("host{}.example", AUDIENCES + 1);
    assert!(issued
        .signed
        .get()
        .expect("signed")
        .lock()
        .iter()
        .any(|s| *s.aud == newest));
    assert!(!issued
        .signed
        .get()
        .expect("signed")
        .lock()
        .iter()
        .any(|s| &*s.aud == "host0.example"));
}

#[test]
fn the_audience_is_the_lower_case_host_without_the_default_port() {
    let cases: [(&str, bool, &str); 8] = [
        ("app.example", false, "app.example"),
        ("App.Example", false, "app.example"),
        ("app.example:80", false, "app.example"),
        ("app.example:443", true, "app.example"),
        ("app.example:443", false, "app.example:443"),
        ("app.example:80", true, "app.example:80"),
        ("app.example:8443", true, "app.example:8443"),
        ("[::1]:80", false, "[::1]"),
    ];
    for (host, https, want) in cases {
        assert_eq!(
            audience(host.as_bytes(), https),
            want,
            "{host} https={https}"
        );
    }
    assert!(matches!(audience(b"app.example", false), Cow::Borrowed(_)));
}

#[test]
fn refused_key_files_say_why() {
    let sec1 = key_file("ec-sec1.pem");
    let err = SigningKey::from_pem(&sec1, &std::fs::read(&sec1).unwrap()).unwrap_err();
    assert!(matches!(err, KeyError::Pem(_)), "{err}");
    let p384 = key_file("p384.pem");
    let err = SigningKey::from_pem(&p384, &std::fs::read(&p384).unwrap()).unwrap_err();
    assert!(matches!(err, KeyError::NotP256(_)), "{err}");
    let err = SigningKey::from_pem(&sec1, b"not a pem file").unwrap_err();
    assert!(matches!(err, KeyError::Pem(_)), "{err}");
}

#[test]
fn debug_output_shows_no_key_material_and_no_assertion() {
    let signer = Signer::new("portcullis", vec![key("assertion-a.pem")]);
    let text = format!("{signer:?}");
    assert!(text.contains(signer.keys()[0].kid()), "{text}");
    assert!(!text.contains(&signer.keys()[0].x), "{text}");
    let issued = Issued::default();
    let jwt = issued.get(&signer, &session(), "app.example").unwrap();
    let text = format!("{issued:?}");
    assert!(!text.contains(jwt.to_str().unwrap()), "{text}");
}

#[test]
fn asserted_roles_are_capped_so_the_header_stays_small() {
    let mut session = session();
    let template = session.memberships[0].clone();
    session.memberships = (0..100)
        .map(|_| Membership {
            organization_id: Uuid::new_v4(),
            ..template.clone()
        })
        .collect();
    let claims: Value = serde_json::from_str(&format!("{{{}}}", session_claims(&session))).unwrap();
    let roles = claims["roles"].as_array().unwrap();
    assert_eq!(roles.len(), MAX_ROLE_CLAIMS);
    assert_eq!(roles[0], "owner");
    assert_eq!(
        claims["scopes"],
        serde_json::json!(["workspace:read", "user:read"])
    );
}

/// A session that is never given an assertion holds one pointer's room for them, not the
/// claims and slots (issue 18: memory per cached session).
#[test]
fn a_session_without_assertions_holds_only_a_pointer_for_them() {
    assert!(std::mem::size_of::<Issued>() <= 16);
    let issued = Issued::default();
    assert!(issued.signed.get().is_none());
}
