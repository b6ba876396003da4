//! Graceful shutdown of the real binary: on SIGTERM it stops accepting, reports not ready,
//! lets the request in flight finish with its whole body, and exits 0; a request still in flight
//! when `server.shutdown_grace` has passed is cut, and the process exits 0 then.

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

/// A request still in flight when `server.shutdown_grace` (1 s here) has passed does not hold
/// the process: it exits 0 no sooner than the grace period after SIGTERM, and the request is
/// cut. (Its upstream never answers.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_exits_0_after_the_grace_period_cutting_what_is_still_in_flight() {
    let grace = std::time::Duration::from_secs(1);
    let (arrived_tx, mut arrived) = mpsc::unbounded_channel::<()>();
    let upstream = serve(move |_req: Request<Incoming>| {
        let arrived_tx = arrived_tx.clone();
        async move {
            let _ = arrived_tx.send(());
            std::future::pending::<()>().await;
            Ok::<_, Infallible>(Response::new(empty()))
        }
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("portcullis.toml");
    std::fs::write(
        &path,
        config(&http_url(upstream), "shutdown_grace = \"1s\"", ""),
    )
    .unwrap();
    let mut proc = spawn_serve(&path).await;
    let addr = proc.addr;

    let stuck = tokio::spawn(async move {
        let mut sender = h1(addr).await;
        sender
            .send_request(get("app.test", "/never"))
            .await
            .map(|resp| resp.status())
    });
    bounded("the request reaches the upstream", arrived.recv())
        .await
        .unwrap();

    let signalled = tokio::time::Instant::now();
    proc.sigterm();
    let exit = bounded("the process to exit", proc.child.wait())
        .await
        .unwrap();
    let after = signalled.elapsed();
    assert_eq!(exit.code(), Some(0), "stderr:\n{}", proc.log());
    assert!(
        after >= grace,
        "exited {after:?} after SIGTERM, within the grace period"
    );
    let cut = bounded("the request in flight to end", stuck)
        .await
        .unwrap();
    assert!(cut.is_err(), "the request in flight got {cut:?}");
}
