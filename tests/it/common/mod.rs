//! Shared helpers for the black-box tests: Portcullis in-process on `127.0.0.1:0`, the real
//! binary as a child process, upstreams served in-process by hyper (the echo upstream and
//! purpose-built ones), HTTP/1.1, HTTP/2 and raw-socket clients, and the test TLS material in
//! `tests/certs/` (see `gen.sh` there).
//!
//! Nothing here uses a fixed port but the shared Redis servers `scripts/test` starts (see
//! `fixed_redis`). Every wait is bounded by [`BOUND`] so that a hung test fails
//! instead of hanging CI; no assertion is made about how fast anything is.

use std::collections::BTreeSet;
use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::process::Stdio;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::header::HOST;
use http::{HeaderMap, Method, Request, Response, StatusCode};
use http_body::{Frame, SizeHint};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Empty, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use serde_json::Value;
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tokio_rustls::client::TlsStream;

pub mod world;

/// The longest any single step of a test may take before the test is failed as hung.
pub const BOUND: Duration = Duration::from_secs(30);

/// 256 MiB, the size of the streamed transfers.
pub const BIG: u64 = 256 * 1024 * 1024;

/// The request and response body type the test clients and upstreams use.
pub type TestBody = BoxBody<Bytes, Infallible>;

/// Fails the test with `what` if `fut` does not finish within [`BOUND`].
pub async fn bounded<T>(what: &str, fut: impl Future<Output = T>) -> T {
    match tokio::time::timeout(BOUND, fut).await {
        Ok(v) => v,
        Err(_) => panic!("timed out after {BOUND:?}: {what}"),
    }
}

/// Polls `check` every 50 ms until it holds; fails the test after [`BOUND`].
pub async fn eventually<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    bounded(what, async {
        while !check().await {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await;
}

/// A program in `.venv-test/bin`, which `scripts/test` fills from the lock files in
/// `tests/smtp/` and `tests/tools/`; the tests that use one never skip.
pub fn venv_program(name: &str) -> PathBuf {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join(".venv-test/bin")
        .join(name);
    assert!(
        path.exists(),
        "{} is missing: run scripts/test, which installs it",
        path.display()
    );
    path
}

mod config;
pub use config::*;
mod sidecar;
pub use sidecar::*;
mod upstreams;
pub use upstreams::*;
mod bodies;
pub use bodies::*;
mod seen;
pub use seen::*;
mod h1;
pub use h1::*;
mod h2;
pub use h2::*;
mod websocket;
pub use websocket::*;
mod raw;
pub use raw::*;
mod recorder;
pub use recorder::*;
mod tls;
pub use tls::*;
mod binary;
pub use binary::*;
mod api;
pub use api::*;
mod redis_server;
pub use redis_server::*;
mod sentinel_set;
pub use sentinel_set::*;
mod redis_cluster;
pub use redis_cluster::*;
mod revocations;
pub use revocations::*;
mod fixed_redis;
pub use fixed_redis::*;
mod first_user;
pub use first_user::*;
