//! Bodies stream through Portcullis in both directions: 256 MiB uploads and downloads, produced
//! lazily and counted as they arrive (the test never holds a whole body), and, against the
//! real binary, a bound on how much the proxy's peak memory grows while they pass.

use std::convert::Infallible;

use bytes::Bytes;
use http::{Method, Request, Response};
use http_body_util::combinators::BoxBody;
use http_body_util::BodyExt;
use hyper::body::Incoming;
use portcullis::http::body::BodyError;

use crate::common::*;

/// Peak RSS may grow by less than this while 256 MiB pass through in each direction.
const RSS_GROWTH_LIMIT_KIB: u64 = 64 * 1024;

/// The upstream for these tests: `GET /download` answers `BIG` bytes generated as they are
/// sent; anything else is answered by the echo upstream, which counts the body it receives.
async fn echo_or_download(
    req: Request<Incoming>,
) -> Result<Response<BoxBody<Bytes, BodyError>>, Infallible> {
    if req.uri().path() == "/download" {
        return Ok(Response::new(
            pattern(BIG).map_err(|never| match never {}).boxed(),
        ));
    }
    Ok(portcullis::http::echo::handle(req)
        .await?
        .map(BodyExt::boxed))
}

async fn upload(addr: std::net::SocketAddr) {
    let resp = send(
        addr,
        request(Method::POST, "app.test", "/upload", pattern(BIG)),
    )
    .await;
    assert_eq!(resp.status(), 200);
    let seen = body_json(resp).await;
    assert_eq!(seen["body_bytes"], 268_435_456u64);
}

async fn download(addr: std::net::SocketAddr) {
    let resp = send(addr, get("app.test", "/download")).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(
        resp.headers()["content-length"],
        BIG.to_string().as_str(),
        "the upstream's length is passed on"
    );
    let n = bounded("256 MiB download", count_body(resp.into_body())).await;
    assert_eq!(n, BIG);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upload_of_256_mib_streams_through_to_the_upstream() {
    let upstream = serve(echo_or_download).await;
    let sidecar = Sidecar::start(&config(&http_url(upstream), "", "")).await;
    upload(sidecar.addr).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn download_of_256_mib_streams_through_to_the_client() {
    let upstream = serve(echo_or_download).await;
    let sidecar = Sidecar::start(&config(&http_url(upstream), "", "")).await;
    download(sidecar.addr).await;
}

/// A proxy that buffered bodies would grow by at least 256 MiB here.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_binary_streams_256_mib_each_way_with_bounded_memory() {
    let upstream = serve(echo_or_download).await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("portcullis.toml");
    std::fs::write(&path, config(&http_url(upstream), "", "")).unwrap();
    let proc = spawn_serve(&path).await;

    // Warm up: the first request sets up the upstream pool and the connection machinery.
    let resp = send(proc.addr, get("app.test", "/warm-up")).await;
    assert_eq!(resp.status(), 200);
    body_string(resp).await;
    let before = proc.peak_rss_kib();

    upload(proc.addr).await;
    download(proc.addr).await;

    let after = proc.peak_rss_kib();
    assert!(
        after.saturating_sub(before) < RSS_GROWTH_LIMIT_KIB,
        "peak RSS grew from {before} KiB to {after} KiB while streaming 256 MiB each way"
    );
}
