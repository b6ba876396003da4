//! The admin listener's endpoints: `/healthz` (the process answers), `/readyz` (serving, not
//! draining, and the store answers), `/metrics` (Prometheus text). Bind it to loopback: it is not authenticated.

use std::convert::Infallible;
use std::sync::Arc;

use http::header::{HeaderValue, CONTENT_TYPE};
use http::{Method, Request, Response, StatusCode};
use hyper::body::Incoming;

use crate::http::app::App;
use crate::http::body::Body;

const TEXT: HeaderValue = HeaderValue::from_static("text/plain; charset=utf-8");
const OPENMETRICS: HeaderValue =
    HeaderValue::from_static("application/openmetrics-text; version=1.0.0; charset=utf-8");

/// Answers one admin request.
pub async fn handle(app: Arc<App>, req: Request<Incoming>) -> Result<Response<Body>, Infallible> {
    if req.method() != Method::GET && req.method() != Method::HEAD {
        return Ok(text(StatusCode::METHOD_NOT_ALLOWED, "method not allowed\n"));
    }
    Ok(match req.uri().path() {
        "/healthz" => text(StatusCode::OK, "ok\n"),
        "/readyz" if !app.is_ready() => text(
            StatusCode::SERVICE_UNAVAILABLE,
            "not ready: shutting down\n",
        ),
        "/readyz" => match app.store.ping().await {
            Ok(()) => text(StatusCode::OK, "ready\n"),
            Err(_) => text(
                StatusCode::SERVICE_UNAVAILABLE,
                "not ready: store unreachable\n",
            ),
        },
        "/metrics" => {
            let mut resp = Response::new(Body::full(app.metrics.encode()));
            resp.headers_mut().insert(CONTENT_TYPE, OPENMETRICS);
            resp
        }
        _ => text(StatusCode::NOT_FOUND, "not found\n"),
    })
}

fn text(status: StatusCode, body: &'static str) -> Response<Body> {
    let mut resp = Response::new(Body::full(body));
    *resp.status_mut() = status;
    resp.headers_mut().insert(CONTENT_TYPE, TEXT);
    resp
}
