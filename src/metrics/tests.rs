//! The metrics' labels and counts, as the admin listener exposes them.

use super::*;

#[test]
fn requests_are_counted_under_their_outcome_and_status_class() {
    let m = Metrics::new();
    m.request(Outcome::Forwarded, http::StatusCode::OK);
    m.request(Outcome::Forwarded, http::StatusCode::OK);
    m.request(Outcome::UpstreamError, http::StatusCode::BAD_GATEWAY);
    let text = m.encode();
    assert!(
        text.contains(r#"portcullis_http_requests_total{outcome="forwarded",status="2xx"} 2"#),
        "{text}"
    );
    assert!(
        text.contains(r#"portcullis_http_requests_total{outcome="upstream_error",status="5xx"} 1"#)
    );
    assert!(text.contains(r#"portcullis_tls_reloads_total{result="error"} 0"#));
}

#[test]
fn identity_results_are_counted_under_their_labels() {
    let m = Metrics::new();
    m.key_cache(CacheResult::Hit);
    m.key_cache(CacheResult::Hit);
    m.key_cache(CacheResult::Stale);
    m.login(LoginResult::BadCredentials);
    m.login(LoginResult::Ok);
    m.auth(AuthResult::StoreUnavailable);
    m.verify(VerifyDecision::Allow);
    m.verify(VerifyDecision::Allow);
    m.verify(VerifyDecision::BadRequest);
    m.connection_revoked(RevokeReason::Forbidden);
    m.store_call(Duration::from_millis(2), false);
    m.store_call(Duration::from_millis(600), true);
    let text = m.encode();
    for (series, value) in [
        (r#"portcullis_key_cache_total{result="hit"}"#, 2),
        (r#"portcullis_key_cache_total{result="miss"}"#, 0),
        (r#"portcullis_key_cache_total{result="stale"}"#, 1),
        (r#"portcullis_key_cache_total{result="unknown"}"#, 0),
        (r#"portcullis_logins_total{result="ok"}"#, 1),
        (r#"portcullis_logins_total{result="bad_credentials"}"#, 1),
        (r#"portcullis_logins_total{result="limited"}"#, 0),
        (r#"portcullis_logins_total{result="suspended"}"#, 0),
        (r#"portcullis_auth_total{result="store_unavailable"}"#, 1),
        (r#"portcullis_auth_total{result="ok"}"#, 0),
        (r#"portcullis_verify_total{decision="allow"}"#, 2),
        (r#"portcullis_verify_total{decision="bad_request"}"#, 1),
        (r#"portcullis_verify_total{decision="forbidden"}"#, 0),
        (
            r#"portcullis_connections_revoked_total{reason="forbidden"}"#,
            1,
        ),
        (
            r#"portcullis_connections_revoked_total{reason="revoked"}"#,
            0,
        ),
        (r#"portcullis_store_errors_total"#, 1),
        (r#"portcullis_store_call_seconds_count"#, 2),
    ] {
        assert!(
            text.contains(&format!("{series} {value}\n")),
            "{series}: {text}"
        );
    }
    // Every label of every result family exists before anything is recorded.
    for (name, labels) in [
        ("portcullis_key_cache_total", &CACHE_RESULTS[..]),
        ("portcullis_logins_total", &LOGIN_RESULTS[..]),
        ("portcullis_auth_total", &AUTH_RESULTS[..]),
        ("portcullis_otp_requests_total", &OTP_REQUEST_RESULTS[..]),
        ("portcullis_otp_deliveries_total", &OTP_DELIVERY_RESULTS[..]),
        (
            "portcullis_otp_password_changes_total",
            &OTP_CHANGE_RESULTS[..],
        ),
    ] {
        for label in labels {
            let series = format!("{name}{{result=\"{label}\"}} ");
            assert!(Metrics::new().encode().contains(&series), "{series}");
        }
    }
    // The discriminants index the label arrays.
    assert_eq!(CACHE_RESULTS[CacheResult::Unknown as usize], "unknown");
    assert_eq!(LOGIN_RESULTS[LoginResult::Error as usize], "error");
    assert_eq!(
        AUTH_RESULTS[AuthResult::StoreUnavailable as usize],
        "store_unavailable"
    );
    assert_eq!(
        OTP_REQUEST_RESULTS[OtpRequestResult::Error as usize],
        "error"
    );
    assert_eq!(
        OTP_DELIVERY_RESULTS[OtpDeliveryResult::Unconfigured as usize],
        "unconfigured"
    );
    assert_eq!(OTP_CHANGE_RESULTS[OtpChangeResult::Error as usize], "error");
    assert_eq!(VERIFY_DECISIONS[VerifyDecision::Error as usize], "error");
    assert_eq!(
        REVOKE_REASONS[RevokeReason::Unverified as usize],
        "unverified"
    );
    for reason in REVOKE_REASONS {
        let series = format!("portcullis_connections_revoked_total{{reason=\"{reason}\"}} ");
        assert!(Metrics::new().encode().contains(&series), "{series}");
    }
    for decision in VERIFY_DECISIONS {
        let series = format!("portcullis_verify_total{{decision=\"{decision}\"}} ");
        assert!(Metrics::new().encode().contains(&series), "{series}");
    }
}

#[test]
fn build_info_is_one_series_set_to_1_naming_the_version() {
    let text = Metrics::new().encode();
    let series: Vec<&str> = text
        .lines()
        .filter(|l| l.starts_with("portcullis_build_info{"))
        .collect();
    let commit = crate::COMMIT.unwrap_or("unknown");
    assert_eq!(
        series,
        [format!(
            "portcullis_build_info{{version=\"{}\",commit=\"{commit}\"}} 1",
            crate::VERSION
        )],
        "{text}"
    );
}
