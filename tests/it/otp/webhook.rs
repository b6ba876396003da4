//! the webhook, on every store

use super::*;

/// The webhook gets `{email, code, expires_at, user_id}` signed with the secret; a new request
/// replaces the earlier code; codes work once; codes are read case-insensitively.
pub(super) async fn webhook_codes(store_url: &str) {
    let w = Hooked::start(store_url, WEBHOOK_SECRET, "", "").await;
    let (sidecar, receiver, user_id) = (&w.sidecar, &w.receiver, &w.user_id);
    let token = login_ok(sidecar.addr, EMAIL, PASSWORD).await;

    let before = time::OffsetDateTime::now_utc();
    assert_eq!(
        request_code(sidecar.addr, EMAIL).await,
        StatusCode::NO_CONTENT
    );
    let first = receiver.code(EMAIL, 1).await;
    let d = receiver.deliveries()[0].clone();
    assert!(d.verified, "{d:?}");
    assert_eq!(d.path, "/hooks/otp?tenant=t1");
    assert_eq!(d.content_type, "application/json");
    assert_eq!(d.payload["user_id"], user_id.as_str());
    let fields: Vec<&String> = d.payload.as_object().unwrap().keys().collect();
    assert_eq!(fields, ["code", "email", "expires_at", "user_id"]);
    let expires = time::OffsetDateTime::parse(
        d.payload["expires_at"].as_str().unwrap(),
        &time::format_description::well_known::Rfc3339,
    )
    .unwrap();
    let lifetime = expires - before;
    assert!(
        lifetime >= time::Duration::minutes(10) && lifetime < time::Duration::minutes(11),
        "{lifetime}"
    );

    // A second request replaces the first code.
    assert_eq!(
        request_code(sidecar.addr, EMAIL).await,
        StatusCode::NO_CONTENT
    );
    let second = receiver.code(EMAIL, 2).await;
    assert_ne!(first, second);
    assert_incorrect(&change(sidecar.addr, EMAIL, &first, NEW_PASSWORD).await);
    // Another email's code is nobody's.
    assert_incorrect(&change(sidecar.addr, "bob@example.com", &second, NEW_PASSWORD).await);
    let got = change(sidecar.addr, EMAIL, &second.to_lowercase(), NEW_PASSWORD).await;
    assert_eq!(got.0, StatusCode::NO_CONTENT, "{}", got.1);
    assert_eq!(
        proxied(sidecar.addr, &token).await,
        StatusCode::UNAUTHORIZED
    );
    assert_incorrect(&change(sidecar.addr, EMAIL, &second, "another passphrase").await);

    // Five wrong codes void the current one.
    assert_eq!(
        request_code(sidecar.addr, EMAIL).await,
        StatusCode::NO_CONTENT
    );
    let third = receiver.code(EMAIL, 3).await;
    for _ in 0..5 {
        assert_incorrect(
            &change(
                sidecar.addr,
                EMAIL,
                "WRONGWRONGWRONGWRONGWRONG0",
                "another passphrase",
            )
            .await,
        );
    }
    assert_incorrect(&change(sidecar.addr, EMAIL, &third, "another passphrase").await);

    eventually("three deliveries counted", || async {
        let metrics = sidecar.metrics().await;
        metric(&metrics, "portcullis_otp_deliveries_total{result=\"sent\"}") == 3.0
    })
    .await;
    let metrics = sidecar.metrics().await;
    for (series, value) in [
        ("portcullis_otp_requests_total{result=\"issued\"}", 3.0),
        ("portcullis_otp_password_changes_total{result=\"ok\"}", 1.0),
        (
            "portcullis_otp_password_changes_total{result=\"bad_code\"}",
            9.0,
        ),
    ] {
        assert_eq!(metric(&metrics, series), value, "{series}");
    }
    w.finish().await;
}

on_every_store!(webhook_codes);

/// A correct code does not lose to itself: of 10 concurrent changes with the one good code,
/// exactly one wins and the others are refused, without voiding anything. Only wrong codes
/// count towards the limit: right codes that change nothing (the current password) use up no
/// attempt, and five wrong ones still void the code.
pub(super) async fn only_wrong_codes_count(store_url: &str) {
    let w = Hooked::start(store_url, WEBHOOK_SECRET, "", "").await;
    let addr = w.sidecar.addr;
    const WRONG: &str = "WRONGWRONGWRONGWRONGWRONG0";

    assert_eq!(request_code(addr, EMAIL).await, StatusCode::NO_CONTENT);
    let code = w.receiver.code(EMAIL, 1).await;
    let racers: Vec<_> = (0..10)
        .map(|_| {
            let code = code.clone();
            tokio::spawn(async move { change(addr, EMAIL, &code, NEW_PASSWORD).await })
        })
        .collect();
    let mut won = 0;
    for racer in racers {
        let got = racer.await.unwrap();
        if got.0 == StatusCode::NO_CONTENT {
            won += 1;
        } else {
            assert_incorrect(&got);
        }
    }
    assert_eq!(won, 1, "exactly one of the 10 changes wins");
    login_ok(addr, EMAIL, NEW_PASSWORD).await;
    assert_incorrect(&change(addr, EMAIL, &code, "another passphrase").await);

    // Four wrong codes, then the right one six times with the current password (refused, the
    // code kept): the right code still works.
    assert_eq!(request_code(addr, EMAIL).await, StatusCode::NO_CONTENT);
    let code = w.receiver.code(EMAIL, 2).await;
    for _ in 0..4 {
        assert_incorrect(&change(addr, EMAIL, WRONG, "another passphrase").await);
    }
    for _ in 0..6 {
        let got = change(addr, EMAIL, &code, NEW_PASSWORD).await;
        assert_eq!(got.0, StatusCode::BAD_REQUEST, "{}", got.1);
        assert_eq!(got.1["message"], "New password cannot match old password.");
    }
    let got = change(addr, EMAIL, &code, "another passphrase").await;
    assert_eq!(got.0, StatusCode::NO_CONTENT, "{}", got.1);

    // Five wrong codes void the code.
    assert_eq!(request_code(addr, EMAIL).await, StatusCode::NO_CONTENT);
    let code = w.receiver.code(EMAIL, 3).await;
    for _ in 0..5 {
        assert_incorrect(&change(addr, EMAIL, WRONG, "a third passphrase").await);
    }
    assert_incorrect(&change(addr, EMAIL, &code, "a third passphrase").await);
    w.finish().await;
}

on_every_store!(only_wrong_codes_count => one_of_ten_parallel_changes_with_a_good_code_wins);

/// A receiver with another secret refuses the deliveries (its check is real); Portcullis
/// counts them failed and still answers 204.
#[tokio::test]
async fn a_receiver_with_another_secret_refuses_the_signature() {
    let w = Hooked::start("memory://", "not-the-receivers-secret", "", "").await;
    let (sidecar, receiver) = (&w.sidecar, &w.receiver);
    assert_eq!(
        request_code(sidecar.addr, EMAIL).await,
        StatusCode::NO_CONTENT
    );
    eventually("the failed delivery to be counted", || async {
        metric(
            &sidecar.metrics().await,
            "portcullis_otp_deliveries_total{result=\"failed\"}",
        ) == 1.0
    })
    .await;
    let got = receiver.deliveries();
    assert_eq!(got.len(), 1);
    assert!(!got[0].verified);
    w.finish().await;
}
