//! checks and messages

use super::*;

/// Coder's order of checks and its messages (spec §4.2), and the validation of both bodies.
#[tokio::test]
async fn change_password_checks_in_coders_order_with_coders_messages() {
    let w = Hooked::start("memory://", WEBHOOK_SECRET, "", "").await;
    let (sidecar, receiver) = (&w.sidecar, &w.receiver);
    let addr = sidecar.addr;

    let (status, body) = post(addr, "/users/otp/request", json!({})).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(body["message"], "Validation failed.");
    assert_eq!(body["validations"][0]["field"], "email");
    let (status, body) = post(addr, "/users/otp/request", json!({"email": "not-an-email"})).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(
        body["validations"][0]["detail"],
        "Validation failed for tag \"email\" with value: \"not-an-email\""
    );
    let (status, body, _) = call_json(
        addr,
        request(
            Method::POST,
            "app.test",
            "/api/v2/users/otp/request",
            full("{"),
        ),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(body["message"], "Request body must be valid JSON.");

    let (status, body) = post(addr, "/users/otp/change-password", json!({})).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(body["message"], "Validation failed.");
    assert_eq!(
        validation_fields(&body),
        ["email", "password", "one_time_passcode"]
    );

    assert_eq!(request_code(addr, EMAIL).await, StatusCode::NO_CONTENT);
    let code = receiver.code(EMAIL, 1).await;
    // A weak password is refused before the code is looked at, even with a wrong code.
    for c in [code.as_str(), "WRONG"] {
        let (status, body) = change(addr, EMAIL, c, "password").await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
        assert_eq!(body["message"], "Invalid password.");
        assert_eq!(body["validations"][0]["field"], "password");
        assert!(body["validations"][0]["detail"]
            .as_str()
            .unwrap()
            .starts_with("insecure password"));
    }
    assert_incorrect(&change(addr, EMAIL, "WRONG", NEW_PASSWORD).await);
    assert_incorrect(&change(addr, "nobody@example.com", &code, NEW_PASSWORD).await);
    // The right code with the current password: refused, and the code is not used up.
    let (status, body) = change(addr, EMAIL, &code, PASSWORD).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(body["message"], "New password cannot match old password.");
    let got = change(addr, EMAIL, &code, NEW_PASSWORD).await;
    assert_eq!(got.0, StatusCode::NO_CONTENT, "{}", got.1);
    w.finish().await;
}

/// With `disable_password_auth`, both endpoints answer 403 with Coder's message.
#[tokio::test]
async fn both_endpoints_refuse_when_password_auth_is_disabled() {
    let echo = start_echo().await;
    let toml = config_with_store(
        echo,
        "memory://",
        "p:",
        "",
        "[otp]\ndelivery = \"log\"\ndanger_log_codes = true\n",
    )
    .replace(
        "[passwords]\n",
        "[passwords]\ndisable_password_auth = true\n",
    );
    let sidecar = Sidecar::start(&toml).await;
    for (path, body) in [
        ("/users/otp/request", json!({"email": EMAIL})),
        (
            "/users/otp/change-password",
            json!({"email": EMAIL, "password": NEW_PASSWORD, "one_time_passcode": "X"}),
        ),
    ] {
        let (status, body) = post(sidecar.addr, path, body).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{path}");
        assert_eq!(body["message"], "Password authentication is disabled.");
    }
    sidecar.shutdown().await;
}

/// Both endpoints count in the login group's per-IP limit with the login itself.
#[tokio::test]
async fn both_endpoints_count_in_the_login_rate_limit() {
    let echo = start_echo().await;
    let sidecar = Sidecar::start(&config_with_store(
        echo,
        "memory://",
        "p:",
        "",
        "[rate_limit]\nlogin_per_minute = 3\n",
    ))
    .await;
    let addr = sidecar.addr;
    assert_eq!(request_code(addr, EMAIL).await, StatusCode::NO_CONTENT);
    assert_incorrect(&change(addr, EMAIL, "WRONG", NEW_PASSWORD).await);
    assert_eq!(
        login(addr, EMAIL, PASSWORD).await.0,
        StatusCode::UNAUTHORIZED
    );
    for (path, body) in [
        ("/users/otp/request", json!({"email": EMAIL})),
        (
            "/users/otp/change-password",
            json!({"email": EMAIL, "password": NEW_PASSWORD, "one_time_passcode": "X"}),
        ),
    ] {
        let (status, body) = post(addr, path, body).await;
        assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "{path}: {body}");
        assert_eq!(
            body["message"],
            "You've been rate limited for sending more than 3 requests in 1m0s."
        );
    }
    sidecar.shutdown().await;
}
