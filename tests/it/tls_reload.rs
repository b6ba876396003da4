//! Certificate reload: a pair replaced on disk is served to new TLS connections without a
//! restart, and a pair that does not load leaves the last good one serving.

use std::path::Path;

use crate::common::*;

const RELOAD_ERRORS: &str = r#"portcullis_tls_reloads_total{result="error"}"#;
const RELOADS_OK: &str = r#"portcullis_tls_reloads_total{result="ok"}"#;

/// Portcullis serving `tls.crt`/`tls.key` in `dir` (a copy of pair A), checked every 100 ms.
async fn start_with_pair_a(dir: &Path) -> Sidecar {
    std::fs::copy(cert_file("a.pem"), dir.join("tls.crt")).unwrap();
    std::fs::copy(cert_file("a.key"), dir.join("tls.key")).unwrap();
    let echo = start_echo().await;
    let server = "[server.tls]\ncert = \"tls.crt\"\nkey = \"tls.key\"\nwatch_interval = \"100ms\"";
    let sidecar = Sidecar::start_in(&config(&http_url(echo), server, ""), dir).await;
    assert_eq!(
        served_cert(sidecar.addr).await,
        cert_der(&cert_file("a.pem"))
    );
    sidecar
}

/// Replaces `path` in one step (write a sibling, rename over), as a secret volume update does.
fn replace_atomically(path: &Path, contents: &[u8]) {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, contents).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn certificate_swapped_on_disk_is_served_to_new_connections() {
    let dir = tempfile::tempdir().unwrap();
    let sidecar = start_with_pair_a(dir.path()).await;
    let b = cert_der(&cert_file("b.pem"));

    // Overwrite the files in place, certificate first: the watcher may see B's certificate with
    // A's key for a moment, which it must reject, before it sees the whole new pair.
    std::fs::write(
        dir.path().join("tls.crt"),
        std::fs::read(cert_file("b.pem")).unwrap(),
    )
    .unwrap();
    std::fs::write(
        dir.path().join("tls.key"),
        std::fs::read(cert_file("b.key")).unwrap(),
    )
    .unwrap();

    let addr = sidecar.addr;
    eventually("a new connection is served certificate B", || {
        let b = b.clone();
        async move { served_cert(addr).await == b }
    })
    .await;
    assert!(metric(&sidecar.metrics().await, RELOADS_OK) >= 1.0);

    // Requests work on a connection that got the new certificate.
    let tls = tls_connect(addr, &[b"h2"]).await;
    let mut client = h2(tls).await;
    let req = http::Request::builder()
        .uri(format!("https://localhost:{}/after-reload", addr.port()))
        .body(empty())
        .unwrap();
    let resp = bounded("request after reload", client.send_request(req))
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broken_pair_on_disk_keeps_the_last_good_certificate_serving() {
    let dir = tempfile::tempdir().unwrap();
    let sidecar = start_with_pair_a(dir.path()).await;
    let a = cert_der(&cert_file("a.pem"));
    let crt = dir.path().join("tls.crt");
    let key = dir.path().join("tls.key");

    // 1. A certificate file that is not PEM at all.
    let s = &sidecar;
    replace_atomically(&crt, b"this is not a certificate\n");
    eventually(
        "the watcher rejects the unparsable certificate",
        || async move { metric(&s.metrics().await, RELOAD_ERRORS) >= 1.0 },
    )
    .await;
    assert_eq!(served_cert(sidecar.addr).await, a);

    // 2. A valid certificate whose key is not the one on disk (B's certificate, A's key).
    replace_atomically(&crt, &std::fs::read(cert_file("b.pem")).unwrap());
    eventually("the watcher rejects the mismatched pair", || async move {
        metric(&s.metrics().await, RELOAD_ERRORS) >= 2.0
    })
    .await;
    assert_eq!(served_cert(sidecar.addr).await, a);
    assert_eq!(metric(&sidecar.metrics().await, RELOADS_OK), 0.0);

    // 3. Completing the pair recovers: B is served.
    replace_atomically(&key, &std::fs::read(cert_file("b.key")).unwrap());
    let b = cert_der(&cert_file("b.pem"));
    let addr = sidecar.addr;
    eventually("the completed pair B is served", || {
        let b = b.clone();
        async move { served_cert(addr).await == b }
    })
    .await;
}
