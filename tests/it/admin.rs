//! The admin listener: liveness, readiness and Prometheus metrics that move with the traffic on
//! the main listener.

use crate::common::*;

const FORWARDED_2XX: &str = r#"portcullis_http_requests_total{outcome="forwarded",status="2xx"}"#;
const REJECTED_4XX: &str = r#"portcullis_http_requests_total{outcome="rejected",status="4xx"}"#;

#[tokio::test]
async fn healthz_and_readyz_answer_200_while_serving() {
    let echo = start_echo().await;
    let sidecar = Sidecar::start(&config(&http_url(echo), "", "")).await;

    for path in ["/healthz", "/readyz"] {
        let resp = send(sidecar.admin, get("admin.test", path)).await;
        assert_eq!(resp.status(), 200, "{path}");
    }
    let resp = send(sidecar.admin, get("admin.test", "/nope")).await;
    assert_eq!(resp.status(), 404);
}

#[tokio::test]
async fn metrics_count_forwarded_requests_by_status_class() {
    let echo = start_echo().await;
    let sidecar = Sidecar::start(&config(&http_url(echo), "", "")).await;

    let before = sidecar.metrics().await;
    assert!(
        before.contains("portcullis_http_requests_total"),
        "{before}"
    );

    let resp = send(sidecar.addr, get("app.test", "/counted")).await;
    assert_eq!(resp.status(), 200);
    body_string(resp).await;
    let resp = send(sidecar.addr, request_without_host()).await;
    assert_eq!(resp.status(), 400);
    body_string(resp).await;

    let after = sidecar.metrics().await;
    assert_eq!(
        metric(&after, FORWARDED_2XX),
        metric(&before, FORWARDED_2XX) + 1.0,
        "{after}"
    );
    assert_eq!(
        metric(&after, REJECTED_4XX),
        metric(&before, REJECTED_4XX) + 1.0,
        "{after}"
    );
}

#[tokio::test]
async fn metrics_name_the_build_in_one_series_set_to_1() {
    let echo = start_echo().await;
    let sidecar = Sidecar::start(&config(&http_url(echo), "", "")).await;

    let text = sidecar.metrics().await;
    let build: Vec<&str> = text
        .lines()
        .filter(|l| l.starts_with("portcullis_build_info{"))
        .collect();
    assert_eq!(build.len(), 1, "{text}");
    let version = format!("version=\"{}\"", env!("CARGO_PKG_VERSION"));
    assert!(build[0].contains(&version), "{}", build[0]);
    assert!(build[0].contains("commit=\""), "{}", build[0]);
    assert!(build[0].ends_with("} 1"), "{}", build[0]);
    assert!(
        text.contains("# TYPE portcullis_build_info gauge"),
        "{text}"
    );
}

/// An HTTP/1.1 request with no `Host`, which Portcullis rejects with 400.
fn request_without_host() -> http::Request<TestBody> {
    http::Request::builder().uri("/").body(empty()).unwrap()
}

#[tokio::test]
async fn metrics_report_open_connections() {
    let echo = start_echo().await;
    let sidecar = Sidecar::start(&config(&http_url(echo), "", "")).await;

    // A keep-alive connection that stays open after its request.
    let mut client = h1(sidecar.addr).await;
    let resp = client.send_request(get("app.test", "/")).await.unwrap();
    assert_eq!(resp.status(), 200);
    body_string(resp).await;

    let text = sidecar.metrics().await;
    assert!(
        metric(&text, "portcullis_open_connections") >= 1.0,
        "{text}"
    );
    drop(client);
}
