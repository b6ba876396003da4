//! unknown emails, the per-email limit, failures

use super::*;

/// Medians of 200 `otp/request`s for [`EMAIL`] and 200 for unknown emails, interleaved on
/// one connection; every answer must be 204.
pub(super) async fn median_request_times(addr: SocketAddr) -> (Duration, Duration) {
    let mut conn = h1(addr).await;
    let (mut known, mut unknown) = (Vec::new(), Vec::new());
    for i in 0..200 {
        for (email, times) in [
            (EMAIL.to_owned(), &mut known),
            (format!("nobody-{i}@example.com"), &mut unknown),
        ] {
            let req = api_request(
                Method::POST,
                "/api/v2/users/otp/request",
                Some(&json!({ "email": email })),
                None,
            );
            let started = Instant::now();
            let resp = bounded("an otp request", conn.send_request(req))
                .await
                .unwrap();
            let status = resp.status();
            resp.into_body().collect().await.unwrap();
            times.push(started.elapsed());
            assert_eq!(status, StatusCode::NO_CONTENT, "{email}");
        }
    }
    let median = |mut v: Vec<Duration>| {
        v.sort();
        v[v.len() / 2]
    };
    (median(known), median(unknown))
}

/// Unknown emails get the same 204 and nothing is delivered. Reports the median times of
/// requests for a known and for unknown emails on Redis, with the webhook delivery (which
/// runs on the same single-threaded test runtime as the server and the receiver, so its work
/// lands between requests) and with no delivery (the handler's own work alone); asserts
/// nothing about time.
#[tokio::test]
async fn unknown_emails_get_204_and_no_delivery_and_the_timing_is_reported() {
    let unlimited = "[rate_limit]\nlogin_per_minute = 0\n";
    let w = Hooked::start(REDIS, WEBHOOK_SECRET, "requests_per_email = 0", unlimited).await;
    let (sidecar, receiver) = (&w.sidecar, &w.receiver);
    let (known, unknown) = median_request_times(sidecar.addr).await;
    println!(
        "otp/request median of 200, Redis, webhook delivery: known email {known:?}, unknown email {unknown:?} (reported, not asserted)"
    );

    eventually("200 deliveries for the known email", || async {
        receiver.count_for(EMAIL) == 200
    })
    .await;
    assert_eq!(
        receiver.deliveries().len(),
        200,
        "an unknown email got a delivery"
    );
    let metrics = sidecar.metrics().await;
    assert_eq!(
        metric(&metrics, "portcullis_otp_requests_total{result=\"issued\"}"),
        200.0
    );
    assert_eq!(
        metric(
            &metrics,
            "portcullis_otp_requests_total{result=\"unknown\"}"
        ),
        200.0
    );
    w.finish().await;

    let echo = start_echo().await;
    let prefix = random_key_prefix();
    let extra = format!("[otp]\nrequests_per_email = 0\n{unlimited}");
    let sidecar = Sidecar::start(&config_with_store(echo, REDIS, &prefix, "", &extra)).await;
    first_user(sidecar.addr).await;
    let (known, unknown) = median_request_times(sidecar.addr).await;
    println!(
        "otp/request median of 200, Redis, no delivery: known email {known:?}, unknown email {unknown:?} (reported, not asserted)"
    );
    let metrics = sidecar.metrics().await;
    assert_eq!(
        metric(
            &metrics,
            "portcullis_otp_deliveries_total{result=\"unconfigured\"}"
        ),
        200.0
    );
    sidecar.shutdown().await;
    delete_redis_keys(REDIS, &prefix).await;
}

/// The fourth request for one email within `otp.request_window` is answered 204 but sends
/// nothing and leaves the third code in place; other emails are not affected.
#[tokio::test]
async fn the_fourth_request_for_an_email_within_the_window_sends_nothing() {
    let w = Hooked::start("memory://", WEBHOOK_SECRET, "", "").await;
    let (sidecar, receiver) = (&w.sidecar, &w.receiver);

    for _ in 0..4 {
        assert_eq!(
            request_code(sidecar.addr, EMAIL).await,
            StatusCode::NO_CONTENT
        );
    }
    let third = receiver.code(EMAIL, 3).await;
    let metrics = sidecar.metrics().await;
    assert_eq!(
        metric(&metrics, "portcullis_otp_requests_total{result=\"issued\"}"),
        3.0
    );
    assert_eq!(
        metric(
            &metrics,
            "portcullis_otp_requests_total{result=\"limited\"}"
        ),
        1.0
    );
    eventually("the three deliveries to be counted", || async {
        metric(
            &sidecar.metrics().await,
            "portcullis_otp_deliveries_total{result=\"sent\"}",
        ) == 3.0
    })
    .await;
    assert_eq!(receiver.count_for(EMAIL), 3);
    // The limit is per address, case-insensitively, and counts unknown ones the same way.
    assert_eq!(
        request_code(sidecar.addr, "ALICE@example.com").await,
        StatusCode::NO_CONTENT
    );
    for _ in 0..4 {
        assert_eq!(
            request_code(sidecar.addr, "nobody@example.com").await,
            StatusCode::NO_CONTENT
        );
    }
    let metrics = sidecar.metrics().await;
    assert_eq!(
        metric(
            &metrics,
            "portcullis_otp_requests_total{result=\"limited\"}"
        ),
        3.0
    );
    assert_eq!(
        metric(
            &metrics,
            "portcullis_otp_requests_total{result=\"unknown\"}"
        ),
        3.0
    );
    assert_eq!(receiver.count_for(EMAIL), 3);
    let got = change(sidecar.addr, EMAIL, &third, NEW_PASSWORD).await;
    assert_eq!(got.0, StatusCode::NO_CONTENT, "{}", got.1);
    w.finish().await;
}

/// A receiver that is down, one that answers 500, and one that never answers: each request is
/// still 204, and each delivery is counted failed or timed out.
#[tokio::test]
async fn failed_and_slow_deliveries_are_counted_and_never_revealed() {
    let dir = tempfile::tempdir().unwrap();
    let key = secret_file(dir.path(), WEBHOOK_SECRET);
    let broken = Receiver::start(WEBHOOK_SECRET, StatusCode::INTERNAL_SERVER_ERROR).await;
    let silent = serve(|_req: Request<Incoming>| async {
        tokio::time::sleep(Duration::from_secs(3600)).await;
        Ok::<_, Infallible>(Response::new(Full::new(Bytes::new())))
    })
    .await;
    for (target, result) in [
        (dead_port(), "failed"),
        (broken.addr, "failed"),
        (silent, "timeout"),
    ] {
        let echo = start_echo().await;
        let otp = webhook_otp(target, &key, "delivery_timeout = \"300ms\"");
        let sidecar = Sidecar::start(&config_with_store(echo, "memory://", "p:", "", &otp)).await;
        first_user(sidecar.addr).await;
        assert_eq!(
            request_code(sidecar.addr, EMAIL).await,
            StatusCode::NO_CONTENT
        );
        let series = format!("portcullis_otp_deliveries_total{{result=\"{result}\"}}");
        eventually("the delivery outcome to be counted", || async {
            metric(&sidecar.metrics().await, &series) == 1.0
        })
        .await;
        let metrics = sidecar.metrics().await;
        assert_eq!(
            metric(&metrics, "portcullis_otp_deliveries_total{result=\"sent\"}"),
            0.0
        );
        assert_eq!(
            metric(&metrics, "portcullis_otp_requests_total{result=\"issued\"}"),
            1.0
        );
        sidecar.shutdown().await;
    }
    assert_eq!(broken.deliveries().len(), 1);
}
