//! the first user, logins, and the identity assertion

use super::*;

/// The password of the users the tests create.
pub const PASSWORD: &str = "correct horse battery";
/// The email of the first user the tests create, `admin`.
pub const ADMIN_EMAIL: &str = "admin@example.com";

/// Creates the first user (`admin`, an owner: [`ADMIN_EMAIL`], [`PASSWORD`]) through the API
/// at `addr` (Portcullis itself, or an edge in front of it): the answer (`user_id`,
/// `organization_id`).
pub async fn create_admin(addr: SocketAddr) -> Value {
    let first = serde_json::json!({
        "email": ADMIN_EMAIL, "username": "admin", "password": PASSWORD,
    });
    let (status, body, _) = call_json(
        addr,
        api_request(Method::POST, "/api/v2/users/first", Some(&first), None),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    body
}

/// `POST /api/v2/users/login` at `addr`: the status and the body.
pub async fn login(addr: SocketAddr, email: &str, password: &str) -> (StatusCode, Value) {
    let body = serde_json::json!({"email": email, "password": password});
    let (status, body, _) = call_json(
        addr,
        api_request(Method::POST, "/api/v2/users/login", Some(&body), None),
    )
    .await;
    (status, body)
}

/// Logs in at `addr`, which must succeed: the session token.
pub async fn login_ok(addr: SocketAddr, email: &str, password: &str) -> String {
    let (status, body) = login(addr, email, password).await;
    assert_eq!(status, StatusCode::CREATED, "login {email}: {body}");
    body["session_token"].as_str().expect("a token").to_owned()
}

/// Logs in at `addr` as the first user ([`create_admin`]): the session token.
pub async fn admin_token(addr: SocketAddr) -> String {
    login_ok(addr, ADMIN_EMAIL, PASSWORD).await
}

/// Creates the first user ([`create_admin`]) at `addr` and logs in as them: the user's id and
/// the session token.
pub async fn first_user_token(addr: SocketAddr) -> (String, String) {
    let body = create_admin(addr).await;
    let user_id = body["user_id"].as_str().expect("a user id").to_owned();
    (user_id, admin_token(addr).await)
}

/// The `field` of each entry of a 400's `validations`, in order.
pub fn validation_fields(body: &Value) -> Vec<&str> {
    body["validations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["field"].as_str().unwrap())
        .collect()
}

/// A file in `tests/keys/` (see `gen.sh` there).
pub fn key_file(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/keys")
        .join(name)
}

/// The RFC 7638 thumbprint of a test key, as `tests/keys/gen.sh` worked it out with openssl.
pub fn key_kid(name: &str) -> String {
    std::fs::read_to_string(key_file(&format!("{name}.kid")))
        .unwrap()
        .trim()
        .to_owned()
}

/// Checks an identity assertion as an upstream would: fetches the JWKS from the Portcullis at
/// `addr` (no credentials), picks the key the JWT's `kid` names, and verifies the ES256
/// signature, `exp`, `aud` and `iss` with the `jsonwebtoken` crate. Returns the `kid` and the
/// claims; fails the test if anything does not verify.
pub async fn verify_assertion(
    addr: SocketAddr,
    jwt: &str,
    aud: &str,
    iss: &str,
) -> (String, Value) {
    use jsonwebtoken::{decode, decode_header, Algorithm, DecodingKey, Validation};
    let resp = send(addr, get("app.test", "/.portcullis/jwks.json")).await;
    assert_eq!(resp.status(), StatusCode::OK);
    let jwks = body_json(resp).await;
    let header = decode_header(jwt).unwrap_or_else(|e| panic!("not a JWT ({e}): {jwt}"));
    assert_eq!(header.alg, Algorithm::ES256);
    let kid = header.kid.expect("the assertion names its key");
    let jwk = jwks["keys"]
        .as_array()
        .expect("a key set")
        .iter()
        .find(|k| k["kid"] == kid.as_str())
        .unwrap_or_else(|| panic!("kid {kid} is not in the JWKS {jwks}"));
    let key =
        DecodingKey::from_ec_components(jwk["x"].as_str().unwrap(), jwk["y"].as_str().unwrap())
            .expect("an EC public key");
    let mut validation = Validation::new(Algorithm::ES256);
    validation.set_audience(&[aud]);
    validation.set_issuer(&[iss]);
    validation.set_required_spec_claims(&["exp", "iat", "aud", "iss", "sub"]);
    let claims = decode::<Value>(jwt, &key, &validation)
        .unwrap_or_else(|e| panic!("the assertion does not verify ({e}): {jwt}"))
        .claims;
    (kid, claims)
}
