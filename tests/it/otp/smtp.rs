//! SMTP end to end

use super::*;

/// Two `portcullis serve` processes on one Redis, mail over STARTTLS with a login: the code
/// mailed by one changes the password on the other, every session on both ends, the code works
/// once, five wrong codes void a code, four do not.
#[tokio::test]
async fn a_mailed_code_resets_the_password_and_ends_sessions_on_two_processes() {
    let smtp = SmtpServer::start("starttls", Some(("portcullis", "smtp-pass"))).await;
    let dir = tempfile::tempdir().unwrap();
    let password_file = dir.path().join("smtp.pass");
    std::fs::write(&password_file, "smtp-pass\n").unwrap();
    let echo = start_echo().await;
    let prefix = random_key_prefix();
    let otp = smtp_otp(&smtp, "starttls", "").replace(
        "[otp.smtp]\n",
        &format!(
            "[otp.smtp]\nusername = \"portcullis\"\npassword_file = \"{}\"\n",
            password_file.display()
        ),
    );
    let config = config_with_store(echo, REDIS, &prefix, "cache_ttl = \"1h\"\n", &otp);
    let path = dir.path().join("portcullis.toml");
    std::fs::write(&path, &config).unwrap();
    let a = spawn_serve(&path).await;
    let b = spawn_serve(&path).await;

    first_user(a.addr).await;
    let on_a = login_ok(a.addr, EMAIL, PASSWORD).await;
    let on_b = login_ok(b.addr, EMAIL, PASSWORD).await;
    for (addr, token) in [
        (a.addr, &on_a),
        (b.addr, &on_b),
        (a.addr, &on_b),
        (b.addr, &on_a),
    ] {
        assert_eq!(proxied(addr, token).await, StatusCode::OK);
    }

    assert_eq!(request_code(a.addr, EMAIL).await, StatusCode::NO_CONTENT);
    let mail = smtp.mail(1).await;
    assert_eq!(mail["rcpt_tos"], json!([EMAIL]));
    assert_eq!(mail["mail_from"], "noreply@example.com");
    assert_eq!(mail["tls"], true, "STARTTLS was required");
    assert_eq!(mail["login"], "portcullis");
    let data = mail["data"].as_str().unwrap();
    assert!(data.contains("Subject: Your one-time passcode"), "{data}");
    let code = code_in(&mail);

    let got = change(b.addr, EMAIL, &code, NEW_PASSWORD).await;
    assert_eq!(got.0, StatusCode::NO_CONTENT, "{}", got.1);
    for addr in [a.addr, b.addr] {
        for token in [&on_a, &on_b] {
            eventually("the old session to be refused", || async {
                proxied(addr, token).await == StatusCode::UNAUTHORIZED
            })
            .await;
        }
    }
    assert_eq!(
        login(a.addr, EMAIL, PASSWORD).await.0,
        StatusCode::UNAUTHORIZED
    );
    let fresh = login_ok(a.addr, EMAIL, NEW_PASSWORD).await;
    assert_eq!(proxied(b.addr, &fresh).await, StatusCode::OK);

    // Single use, on either process.
    assert_incorrect(&change(a.addr, EMAIL, &code, "yet another passphrase").await);
    assert_incorrect(&change(b.addr, EMAIL, &code, "yet another passphrase").await);

    // Five wrong codes void the code, even spread over both processes.
    assert_eq!(request_code(b.addr, EMAIL).await, StatusCode::NO_CONTENT);
    let second = code_in(&smtp.mail(2).await);
    for i in 0..5 {
        let addr = if i % 2 == 0 { a.addr } else { b.addr };
        assert_incorrect(
            &change(
                addr,
                EMAIL,
                "0000000000000000000000000W",
                "another passphrase 1",
            )
            .await,
        );
    }
    assert_incorrect(&change(a.addr, EMAIL, &second, "another passphrase 1").await);

    // Four wrong ones leave it working.
    assert_eq!(request_code(a.addr, EMAIL).await, StatusCode::NO_CONTENT);
    let third = code_in(&smtp.mail(3).await);
    for _ in 0..4 {
        assert_incorrect(
            &change(
                b.addr,
                EMAIL,
                "0000000000000000000000000W",
                "another passphrase 2",
            )
            .await,
        );
    }
    let got = change(b.addr, EMAIL, &third, "another passphrase 2").await;
    assert_eq!(got.0, StatusCode::NO_CONTENT, "{}", got.1);
    assert_eq!(
        login_ok(a.addr, EMAIL, "another passphrase 2").await.len(),
        33
    );
    assert_eq!(proxied(a.addr, &fresh).await, StatusCode::UNAUTHORIZED);

    drop((a, b));
    delete_redis_keys(REDIS, &prefix).await;
}

/// A code past `otp.lifetime` is refused (a sleep is never shorter than asked, so it has
/// surely expired); a fresh one used in time works, which is asserted only when it surely was
/// used in time (a loaded machine may take longer than the lifetime to use it). Mail over
/// SMTPS (TLS from the first byte).
#[tokio::test]
async fn an_expired_code_is_refused() {
    let lifetime = Duration::from_secs(2);
    let smtp = SmtpServer::start("tls", None).await;
    let echo = start_echo().await;
    let otp = smtp_otp(&smtp, "tls", "lifetime = \"2s\"");
    let sidecar = Sidecar::start(&config_with_store(echo, "memory://", "p:", "", &otp)).await;
    first_user(sidecar.addr).await;

    assert_eq!(
        request_code(sidecar.addr, EMAIL).await,
        StatusCode::NO_CONTENT
    );
    let mail = smtp.mail(1).await;
    assert_eq!(mail["tls"], true);
    let stale = code_in(&mail);
    tokio::time::sleep(lifetime + Duration::from_millis(500)).await;
    assert_incorrect(&change(sidecar.addr, EMAIL, &stale, NEW_PASSWORD).await);

    let requesting = Instant::now();
    assert_eq!(
        request_code(sidecar.addr, EMAIL).await,
        StatusCode::NO_CONTENT
    );
    let fresh = code_in(&smtp.mail(2).await);
    let got = change(sidecar.addr, EMAIL, &fresh, NEW_PASSWORD).await;
    if requesting.elapsed() < lifetime {
        assert_eq!(got.0, StatusCode::NO_CONTENT, "{}", got.1);
    } else {
        eprintln!("the fresh code was used after its lifetime; its success is not asserted");
    }
    sidecar.shutdown().await;
}

/// `otp.smtp.tls = "none"` (a relay in the same pod or host) mails the code in plain text, and
/// it works. `"starttls"` never falls back to plain text: to the same server, which offers no
/// STARTTLS, nothing is sent, the delivery counts as failed, and the request still answers 204.
#[tokio::test]
async fn smtp_without_tls_mails_in_plain_text_and_starttls_never_falls_back_to_it() {
    let smtp = SmtpServer::start("none", None).await;
    let echo = start_echo().await;
    let plain = smtp_otp(&smtp, "none", "");
    let sidecar = Sidecar::start(&config_with_store(echo, "memory://", "p:", "", &plain)).await;
    first_user(sidecar.addr).await;
    assert_eq!(
        request_code(sidecar.addr, EMAIL).await,
        StatusCode::NO_CONTENT
    );
    let mail = smtp.mail(1).await;
    assert_eq!(mail["tls"], false, "{mail}");
    let got = change(sidecar.addr, EMAIL, &code_in(&mail), NEW_PASSWORD).await;
    assert_eq!(got.0, StatusCode::NO_CONTENT, "{}", got.1);

    let strict = smtp_otp(&smtp, "starttls", "");
    let sidecar = Sidecar::start(&config_with_store(echo, "memory://", "p:", "", &strict)).await;
    first_user(sidecar.addr).await;
    assert_eq!(
        request_code(sidecar.addr, EMAIL).await,
        StatusCode::NO_CONTENT
    );
    let failed = r#"portcullis_otp_deliveries_total{result="failed"}"#;
    eventually("the delivery to fail", || async {
        metric(&sidecar.metrics().await, failed) == 1.0
    })
    .await;
    let text = sidecar.metrics().await;
    assert_eq!(
        metric(&text, r#"portcullis_otp_deliveries_total{result="sent"}"#),
        0.0,
        "{text}"
    );
    assert_eq!(smtp.mails().len(), 1, "a mail went out without STARTTLS");
}
