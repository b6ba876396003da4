//! The admin listener's endpoints: `/healthz` (the process answers), `/readyz` (serving, not
//! draining, and the store answers or failed less than `store.max_stale` ago), `/metrics` (Prometheus text). Bind it to loopback: it is not authenticated.

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
        "/readyz" => readyz(&app).await,
        "/metrics" => {
            if let Some(h) = app.store.health() {
                app.metrics.store_state(h.up, h.last_error);
            }
            let mut resp = Response::new(Body::full(app.metrics.encode()));
            resp.headers_mut().insert(CONTENT_TYPE, OPENMETRICS);
            resp
        }
        _ => text(StatusCode::NOT_FOUND, "not found\n"),
    })
}

/// Ready when the store answers. When it does not, still ready while the outage is younger
/// than `store.max_stale`: the replica keeps serving cached sessions through a blip, which is
/// what `max_stale` is for, and taking every replica out of the load balancer at once would
/// defeat it. Not ready once the outage is older, or when the store never answered since start.
/// With `server.ready_requires_upstream`, also not ready while the upstream refuses TCP
/// connections (a sidecar whose application is not up yet should get no traffic).
async fn readyz(app: &App) -> Response<Body> {
    if app.config.server.ready_requires_upstream && !app.upstream.accepts_connections().await {
        return text(
            StatusCode::SERVICE_UNAVAILABLE,
            "not ready: upstream refuses connections\n",
        );
    }
    if app.store.ping().await.is_ok() {
        return text(StatusCode::OK, "ready\n");
    }
    let answered_lately = app
        .store
        .health()
        .and_then(|h| h.last_ok)
        .is_some_and(|ago| ago < app.config.store.max_stale);
    if answered_lately {
        text(
            StatusCode::OK,
            "ready: store unreachable, serving cached sessions within store.max_stale\n",
        )
    } else {
        text(
            StatusCode::SERVICE_UNAVAILABLE,
            "not ready: store unreachable\n",
        )
    }
}

fn text(status: StatusCode, body: &'static str) -> Response<Body> {
    let mut resp = Response::new(Body::full(body));
    *resp.status_mut() = status;
    resp.headers_mut().insert(CONTENT_TYPE, TEXT);
    resp
}
