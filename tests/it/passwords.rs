//! Password strength end to end: `POST /users/validate-password` (spec §5) with Coder's
//! verdicts and details, the stricter `[passwords]` policy switched on, and the same validator
//! refusing weak passwords at first-user creation and password change with Coder's messages.
//! The memory store is enough: nothing here depends on the backend.

use std::net::SocketAddr;

use http::{Method, Request, StatusCode};
use serde_json::{json, Value};

use crate::common::*;

const VALIDATE: &str = "/api/v2/users/validate-password";
/// The first user's email.
const EMAIL: &str = "alice.smith@example.com";
const WEAK_DETAIL: &str = "insecure password, try including more special characters, using uppercase letters, using numbers or using a longer password";

fn pw_config(upstream: SocketAddr, passwords_extra: &str) -> String {
    format!(
        "[server]\nlisten = \"127.0.0.1:0\"\nadmin_listen = \"127.0.0.1:0\"\n\n\
         [upstream]\nurl = \"http://{upstream}\"\n\n\
         [store]\nurl = \"memory://\"\n\n\
         [passwords]\nargon2_memory_kib = 1024\nargon2_iterations = 1\n{passwords_extra}\n\n\
         [session]\ncookie_secure = false\n"
    )
}

async fn start(passwords_extra: &str) -> Sidecar {
    let echo = start_echo().await;
    Sidecar::start(&pw_config(echo, passwords_extra)).await
}

async fn call(
    sidecar: &Sidecar,
    method: Method,
    path: &str,
    body: Option<String>,
    token: Option<&str>,
) -> (StatusCode, Value) {
    let mut b = Request::builder()
        .method(method)
        .uri(path)
        .header("host", "app.test")
        .header("content-type", "application/json");
    if let Some(t) = token {
        b = b.header("coder-session-token", t);
    }
    let req = b
        .body(match body {
            Some(text) => full(text),
            None => empty(),
        })
        .unwrap();
    let resp = send(sidecar.addr, req).await;
    let status = resp.status();
    let text = body_string(resp).await;
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

async fn validate(sidecar: &Sidecar, body: Value, token: Option<&str>) -> (StatusCode, Value) {
    call(
        sidecar,
        Method::POST,
        VALIDATE,
        Some(body.to_string()),
        token,
    )
    .await
}

async fn first_user(sidecar: &Sidecar, password: &str) -> (StatusCode, Value) {
    let body = json!({"email": EMAIL, "username": "alice", "password": password});
    call(
        sidecar,
        Method::POST,
        "/api/v2/users/first",
        Some(body.to_string()),
        None,
    )
    .await
}

#[tokio::test]
async fn validate_password_answers_coders_verdicts_without_a_session() {
    let sidecar = start("").await;
    for (password, valid, details) in [
        ("password", false, WEAK_DETAIL),
        (
            "hunter2",
            false,
            "insecure password, try including more special characters, using uppercase letters or using a longer password",
        ),
        ("Password1234", true, ""),
        ("MySecurePassword!", true, ""),
        ("PasswordSecured123!", true, ""),
        ("日本語のパスワード", true, ""),
    ] {
        let (status, got) = validate(&sidecar, json!({ "password": password }), None).await;
        assert_eq!(status, StatusCode::OK, "{password}: {got}");
        assert_eq!(got, json!({"valid": valid, "details": details}), "{password}");
    }
    // 65 × `a`: the entropy error, not the length one; a strong 65-character one: the length.
    let (status, got) = validate(&sidecar, json!({"password": "a".repeat(65)}), None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(got, json!({"valid": false, "details": WEAK_DETAIL}));
    let long = "Kx8#mQ2$vL9@".repeat(5) + "Kx8#!";
    let (_, got) = validate(&sidecar, json!({ "password": long }), None).await;
    assert_eq!(
        got,
        json!({"valid": false, "details": "password must be no more than 64 characters"})
    );
    // Off by default: a common password or one holding the username is Coder-valid.
    let (_, got) = validate(
        &sidecar,
        json!({"password": "TrustNo1TrustNo1", "username": "trustno1"}),
        None,
    )
    .await;
    assert_eq!(got, json!({"valid": true, "details": ""}));
}

#[tokio::test]
async fn validate_password_refuses_only_a_missing_or_undecodable_body() {
    let sidecar = start("").await;
    let (status, got) = call(&sidecar, Method::POST, VALIDATE, None, None).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{got}");
    assert_eq!(got["message"], "Request body must be valid JSON.");
    let (status, got) = call(
        &sidecar,
        Method::POST,
        VALIDATE,
        Some("{\"password\":".into()),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{got}");
    assert_eq!(got["message"], "Request body must be valid JSON.");
    let (status, got) = validate(&sidecar, json!({}), None).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{got}");
    assert_eq!(got["message"], "Validation failed.");
    assert_eq!(
        got["validations"],
        json!([{"field": "password", "detail": "Validation failed for tag \"required\" with value: \"\""}])
    );
    // An invalid session does not matter: the endpoint needs none.
    let (status, got) = validate(
        &sidecar,
        json!({"password": "Password1234"}),
        Some("bogus-token"),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{got}");
    assert_eq!(got["valid"], true);
}

#[tokio::test]
async fn the_stricter_policy_applies_when_configured() {
    let sidecar = start("min_length = 14\nblocklist = true\nreject_user_info = true").await;
    let verdict = |got: &Value| (got["valid"].clone(), got["details"].clone());
    // Coder's rule first.
    let (_, got) = validate(&sidecar, json!({"password": "password"}), None).await;
    assert_eq!(verdict(&got), (json!(false), json!(WEAK_DETAIL)));
    let (_, got) = validate(&sidecar, json!({"password": "Summer2024!"}), None).await;
    assert_eq!(
        verdict(&got),
        (
            json!(false),
            json!("password must be at least 14 characters")
        )
    );
    let (_, got) = validate(&sidecar, json!({"password": "TrustNo1TrustNo1"}), None).await;
    assert_eq!(got["valid"], true, "{got}");
    let (_, got) = validate(&sidecar, json!({"password": "Password1234"}), None).await;
    assert_eq!(
        verdict(&got),
        (
            json!(false),
            json!("password must be at least 14 characters")
        )
    );
    // On the bundled list, yet long enough and Coder-valid; compared case-insensitively.
    let (_, got) = validate(&sidecar, json!({"password": "ChickenWing101"}), None).await;
    assert_eq!(
        verdict(&got),
        (
            json!(false),
            json!("password is too common: it is on the list of most used passwords")
        )
    );

    // The user context from the body, then from the signed-in caller.
    let with_name = "Alice-Walnut-1234!";
    let (_, got) = validate(&sidecar, json!({ "password": with_name }), None).await;
    assert_eq!(got["valid"], true, "no user known: {got}");
    let (_, got) = validate(
        &sidecar,
        json!({"password": with_name, "username": "alice"}),
        None,
    )
    .await;
    assert_eq!(
        verdict(&got),
        (
            json!(false),
            json!("password must not contain the username")
        )
    );

    // First-user creation applies the same policy, with Coder's message.
    let (status, got) = first_user(&sidecar, with_name).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{got}");
    assert_eq!(got["message"], "Password not strong enough!");
    assert_eq!(
        got["validations"],
        json!([{"field": "password", "detail": "password must not contain the username"}])
    );
    let (status, got) = first_user(&sidecar, PASSWORD).await;
    assert_eq!(status, StatusCode::CREATED, "{got}");
    let token = login_ok(sidecar.addr, EMAIL, PASSWORD).await;
    // No username in the body: it comes from the session (the email local part, holding the
    // username, is refused for it first; the email rule itself is a unit test).
    let (_, got) = validate(
        &sidecar,
        json!({"password": "Pass-ALICE.SMITH-99"}),
        Some(&token),
    )
    .await;
    assert_eq!(
        verdict(&got),
        (
            json!(false),
            json!("password must not contain the username")
        )
    );

    // And so does a password change.
    let (status, got) = call(
        &sidecar,
        Method::PUT,
        "/api/v2/users/me/password",
        Some(json!({"old_password": PASSWORD, "password": "1qaz2wsx3edc4rfv"}).to_string()),
        Some(&token),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{got}");
    assert_eq!(
        got,
        json!({"message": "Invalid password.",
               "validations": [{"field": "password", "detail": "password is too common: it is on the list of most used passwords"}]})
    );
}

#[tokio::test]
async fn weak_passwords_are_refused_with_coders_messages() {
    let sidecar = start("").await;
    let (status, got) = first_user(&sidecar, "password").await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{got}");
    assert_eq!(
        got,
        json!({"message": "Password not strong enough!",
               "validations": [{"field": "password", "detail": WEAK_DETAIL}]})
    );
    let (status, got) = first_user(&sidecar, PASSWORD).await;
    assert_eq!(status, StatusCode::CREATED, "{got}");
    let token = login_ok(sidecar.addr, EMAIL, PASSWORD).await;
    let (status, got) = call(
        &sidecar,
        Method::PUT,
        "/api/v2/users/me/password",
        Some(json!({"old_password": PASSWORD, "password": "hunter2"}).to_string()),
        Some(&token),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{got}");
    assert_eq!(
        got,
        json!({"message": "Invalid password.",
               "validations": [{"field": "password", "detail": "insecure password, try including more special characters, using uppercase letters or using a longer password"}]})
    );
    // A strong one is accepted.
    let (status, got) = call(
        &sidecar,
        Method::PUT,
        "/api/v2/users/me/password",
        Some(json!({"old_password": PASSWORD, "password": "PasswordSecured123!"}).to_string()),
        Some(&token),
    )
    .await;
    assert_eq!(status, StatusCode::NO_CONTENT, "{got}");
}

/// `convert-login` checks a password, so it is counted in the login group's per-client limit
/// like a login: with `login_per_minute = 3`, the calls after the login run into `429`.
#[tokio::test]
async fn convert_login_is_counted_in_the_login_rate_limit() {
    let echo = start_echo().await;
    let config = config(
        &http_url(echo),
        "",
        "\n[rate_limit]\nlogin_per_minute = 3\n",
    );
    let sidecar = Sidecar::start(&config).await;
    let addr = sidecar.addr;
    create_admin(addr).await;
    let token = admin_token(addr).await;
    let body = json!({"to_type": "oidc", "password": PASSWORD});
    let mut statuses = Vec::new();
    for _ in 0..3 {
        let req = api_request(
            Method::POST,
            "/api/v2/users/me/convert-login",
            Some(&body),
            Some(&token),
        );
        statuses.push(call_json(addr, req).await.0);
    }
    assert!(
        statuses.contains(&StatusCode::TOO_MANY_REQUESTS),
        "{statuses:?}"
    );
    sidecar.shutdown().await;
}

/// Coder's test vector (spec §9): the password `tomato` as Coder stores it.
const CODER_TOMATO: &str = "$pbkdf2-sha256$65535$z8c1p1C2ru9EImBP1I+ZNA$pNjE3Yk0oG0PmJ0Je+y7ENOVlSkn/b0BEqqdKsq6Y97wQBq0xT+lD5bWJpyIKJqQICuPZcEaGDKrXJn8+SIHRg";

/// A user imported from Coder with a `$pbkdf2-sha256$` hash signs in with its password, and
/// from then on its stored hash is argon2id with the configured parameters: the same password
/// still works, a wrong one still fails, and the old hash is gone. A wrong password does not
/// upgrade anything.
#[tokio::test]
async fn a_coder_pbkdf2_hash_is_replaced_by_argon2id_at_the_next_good_login() {
    let sidecar = start("").await;
    let (status, body) = first_user(&sidecar, "a long and solid passphrase").await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let id: uuid::Uuid = body["user_id"].as_str().unwrap().parse().unwrap();
    let store = &sidecar.app.store;
    let stored_hash = || async {
        store
            .user(id)
            .await
            .unwrap()
            .expect("the user")
            .hashed_password
            .expect("a hash")
    };
    store
        .modify_user(id, |u| {
            u.hashed_password = Some(CODER_TOMATO.to_owned());
            true
        })
        .await
        .unwrap();

    let (status, _) = login(sidecar.addr, EMAIL, "potato").await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(
        stored_hash().await,
        CODER_TOMATO,
        "a failed login changed the hash"
    );

    login_ok(sidecar.addr, EMAIL, "tomato").await;
    let upgraded = stored_hash().await;
    assert!(
        upgraded.starts_with("$argon2id$v=19$m=1024,t=1,p=1$"),
        "{upgraded}"
    );
    login_ok(sidecar.addr, EMAIL, "tomato").await;
    assert_eq!(
        stored_hash().await,
        upgraded,
        "hashed again at a later login"
    );
    let (status, _) = login(sidecar.addr, EMAIL, "potato").await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
}
