//! Which part of Portcullis handles a request on the main listener. Straight-line: check the
//! method, apply the route policy, forward, record.

use std::convert::Infallible;
use std::sync::Arc;

use http::{Request, Response};
use hyper::body::Incoming;

use crate::app::App;
use crate::body::Body;
use crate::config::PolicyDefault;
use crate::error::{Error, Result};
use crate::metrics::Outcome;
use crate::proxy::{self, Peer};
use crate::server::InFlight;

/// Handles one request from the main listener. Never fails: every error becomes a response.
pub async fn handle(
    app: Arc<App>,
    peer: Arc<Peer>,
    in_flight: InFlight,
    req: Request<Incoming>,
) -> Result<Response<Body>, Infallible> {
    let (resp, outcome) = match route(&app, &peer, req).await {
        Ok(answer) => answer,
        Err(e) => {
            let outcome = match e {
                Error::UpstreamUnavailable(_) | Error::UpstreamTimeout(_) => Outcome::UpstreamError,
                _ => Outcome::Rejected,
            };
            (e.into_response(), outcome)
        }
    };
    app.metrics.request(outcome, resp.status());
    Ok(resp.map(|b| b.with_in_flight(in_flight)))
}

async fn route(
    app: &App,
    peer: &Peer,
    req: Request<Incoming>,
) -> Result<(Response<Body>, Outcome)> {
    proxy::check_method(req.method())?;
    proxy::check_head_size(&req, app.config.server.max_header_bytes)?;
    match app.config.policy.default {
        PolicyDefault::Public => {}
        PolicyDefault::Deny => return Err(Error::Forbidden),
    }
    app.upstream.forward(req, peer, app).await
}
