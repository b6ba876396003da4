//! Graceful shutdown of the real binary: on SIGTERM it stops accepting, reports not ready,
//! lets the request in flight finish with its whole body, and exits 0.
//!
//! This is Portcullis's side of the drain order in `deploy/kubernetes/*/deployment.yaml`: until
//! SIGTERM (the `preStop` pause, and in the sidecar pod the app's own drain) it serves as usual;
//! after it, `/readyz` answers 503 while `/healthz` stays 200 (the liveness probe must not
//! restart a draining container), idle keep-alive connections are closed and answers in flight
//! tell their client to close, and the process exits once the last request is done or
//! `server.shutdown_grace` is over, whichever comes first, so that a grace period of the pod
//! above `preStop` plus `shutdown_grace` is always enough.

use std::convert::Infallible;
use std::sync::Arc;

use http::{Request, Response};
use hyper::body::Incoming;
use tokio::net::TcpStream;
use tokio::sync::{mpsc, Notify};

use crate::common::*;

/// 1 MiB of known text, the slow request's answer.
fn slow_body() -> String {
    "slow answer\n".repeat(1024 * 1024 / 12)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_lets_the_request_in_flight_finish_then_exits_0() {
    // The upstream holds its answer until the test releases it, so the request is surely in
    // flight while SIGTERM arrives, however slow the machine.
    let (arrived_tx, mut arrived) = mpsc::unbounded_channel::<()>();
    let release = Arc::new(Notify::new());
    let gate = release.clone();
    let upstream = serve(move |_req: Request<Incoming>| {
        let arrived_tx = arrived_tx.clone();
        let gate = gate.clone();
        async move {
            let _ = arrived_tx.send(());
            gate.notified().await;
            Ok::<_, Infallible>(Response::new(full(slow_body())))
        }
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("portcullis.toml");
    std::fs::write(&path, config(&http_url(upstream), "", "")).unwrap();
    let mut proc = spawn_serve(&path).await;
    let (addr, admin) = (proc.addr, proc.admin);

    let slow = tokio::spawn(async move {
        let resp = send(addr, get("app.test", "/slow")).await;
        let status = resp.status();
        (status, body_string(resp).await)
    });
    bounded("the slow request reaches the upstream", arrived.recv())
        .await
        .unwrap();

    proc.sigterm();

    eventually("/readyz answers 503 while draining", || async move {
        let resp = send(admin, get("admin.test", "/readyz")).await;
        resp.status() == 503
    })
    .await;
    eventually("new connections are refused", || async move {
        TcpStream::connect(addr).await.is_err()
    })
    .await;

    release.notify_one();
    let (status, body) = bounded("the slow response", slow).await.unwrap();
    assert_eq!(status, 200);
    assert!(
        body == slow_body(),
        "the body was cut: {} bytes",
        body.len()
    );

    let exit = bounded("the process to exit", proc.child.wait())
        .await
        .unwrap();
    assert_eq!(exit.code(), Some(0), "stderr:\n{}", proc.log());
}

#[tokio::test]
async fn sigterm_with_nothing_in_flight_exits_0() {
    let echo = start_echo().await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("portcullis.toml");
    std::fs::write(&path, config(&http_url(echo), "", "")).unwrap();
    let mut proc = spawn_serve(&path).await;
    let resp = send(proc.addr, get("app.test", "/")).await;
    assert_eq!(resp.status(), 200);
    body_string(resp).await;

    proc.sigterm();

    let exit = bounded("the process to exit", proc.child.wait())
        .await
        .unwrap();
    assert_eq!(exit.code(), Some(0), "stderr:\n{}", proc.log());
}

/// An upstream that answers `/slow` only once `release` is notified (and reports each arrival
/// on `arrived`), and everything else at once.
async fn gated_upstream() -> (
    std::net::SocketAddr,
    mpsc::UnboundedReceiver<()>,
    Arc<Notify>,
) {
    let (arrived_tx, arrived) = mpsc::unbounded_channel::<()>();
    let release = Arc::new(Notify::new());
    let gate = release.clone();
    let upstream = serve(move |req: Request<Incoming>| {
        let arrived_tx = arrived_tx.clone();
        let gate = gate.clone();
        async move {
            if req.uri().path() == "/slow" {
                let _ = arrived_tx.send(());
                gate.notified().await;
            }
            Ok::<_, Infallible>(Response::new(full("answer\n")))
        }
    })
    .await;
    (upstream, arrived, release)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn during_the_drain_healthz_stays_200_and_keep_alive_clients_are_told_to_close() {
    let (upstream, mut arrived, release) = gated_upstream().await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("portcullis.toml");
    std::fs::write(&path, config(&http_url(upstream), "", "")).unwrap();
    let mut proc = spawn_serve(&path).await;
    let (addr, admin) = (proc.addr, proc.admin);

    // A keep-alive connection that has had its answer and now sits idle.
    let mut idle = h1(addr).await;
    let resp = bounded(
        "the first answer",
        idle.send_request(get("app.test", "/fast")),
    )
    .await
    .unwrap();
    assert_eq!(resp.status(), 200);
    body_string(resp).await;
    assert!(!idle.is_closed());

    // A request in flight on a connection of its own.
    let slow = tokio::spawn(async move { send(addr, get("app.test", "/slow")).await });
    bounded("the slow request reaches the upstream", arrived.recv())
        .await
        .unwrap();

    proc.sigterm();

    eventually("/readyz answers 503 while draining", || async move {
        send(admin, get("admin.test", "/readyz")).await.status() == 503
    })
    .await;
    // The slow request is still held, so the process is surely still draining.
    let health = send(admin, get("admin.test", "/healthz")).await;
    assert_eq!(health.status(), 200, "liveness must hold during the drain");
    eventually("the idle keep-alive connection is closed", || {
        let closed = idle.is_closed();
        async move { closed }
    })
    .await;

    release.notify_one();
    let resp = bounded("the slow response", slow).await.unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(
        resp.headers().get("connection").map(|v| v.as_bytes()),
        Some(&b"close"[..]),
        "an answer during the drain tells its client not to reuse the connection"
    );
    assert_eq!(body_string(resp).await, "answer\n");
    let exit = bounded("the process to exit", proc.child.wait())
        .await
        .unwrap();
    assert_eq!(exit.code(), Some(0), "stderr:\n{}", proc.log());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_still_open_when_shutdown_grace_ends_is_cut_and_the_process_exits_0() {
    // The upstream never answers /slow: only the grace period can end the drain.
    let (upstream, mut arrived, _never_released) = gated_upstream().await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("portcullis.toml");
    std::fs::write(
        &path,
        config(&http_url(upstream), "shutdown_grace = \"1s\"", ""),
    )
    .unwrap();
    let mut proc = spawn_serve(&path).await;
    let addr = proc.addr;

    let slow = tokio::spawn(async move {
        let mut sender = h1(addr).await;
        sender.send_request(get("app.test", "/slow")).await
    });
    bounded("the slow request reaches the upstream", arrived.recv())
        .await
        .unwrap();

    let signalled = tokio::time::Instant::now();
    proc.sigterm();

    let exit = bounded(
        "the process to exit while the request is still open",
        proc.child.wait(),
    )
    .await
    .unwrap();
    let after = signalled.elapsed();
    assert_eq!(exit.code(), Some(0), "stderr:\n{}", proc.log());
    // A timer never fires early: an exit sooner than the grace period did not wait for it.
    assert!(
        after >= std::time::Duration::from_secs(1),
        "exited {after:?} after SIGTERM, within the grace period"
    );
    assert!(
        proc.log().contains("shutdown grace period over"),
        "stderr:\n{}",
        proc.log()
    );
    let cut = bounded("the client to see the connection end", slow)
        .await
        .unwrap();
    assert!(cut.is_err(), "the request got an answer: {cut:?}");
}
