//! `POST /portcullis/explain` (under `api.prefix`): [`crate::http::explain`] for owners, for a
//! UI or support tooling. The body is an [`explain::Question`]; the answer is the JSON form of
//! `portcullis explain --json`.
//!
//! Only a caller allowed `debug_info:read` (owners; a key whose scopes cover it) may ask:
//! others get `403`, callers without a session `401`. Each call is written to the audit log
//! ([`crate::http::audit`], `event="explain"`) with the caller as `actor_id`, the client's
//! address, and what was asked: the method, the path without its query, the user judged as
//! (`as_user`) and whether a token was given (never the token).

use std::sync::Arc;

use http::{Request, StatusCode};

use crate::http::api::{self, ApiResult};
use crate::http::app::App;
use crate::http::audit::{self, Event};
use crate::http::body::ReqBody;
use crate::http::error::Error;
use crate::http::explain::{self, Question};
use crate::http::peer::Peer;
use crate::rbac::{Action, Object, Resource};

/// `POST /portcullis/explain`: `200` with the explanation.
pub async fn explain(app: &Arc<App>, peer: &Peer, req: Request<impl ReqBody>) -> ApiResult {
    let auth = api::authenticate(app, &req).await?;
    if !api::allowed(&auth, Action::READ, &Object::new(Resource::DEBUG_INFO)) {
        return Err(Error::Forbidden);
    }
    let client = peer.client_ip(req.headers(), &app.config.server.trusted_proxies);
    let question: Question = api::json_body(req).await?;
    // The common fields, then what was asked; every text the caller wrote is recorded as a
    // string (quoted and escaped in plain lines), never as a Display value.
    tracing::info!(
        target: audit::TARGET,
        event = Event::Explain.as_str(),
        outcome = "success",
        actor_id = %auth.session().user.id,
        client_ip = %client,
        request_method = question.method.as_str(),
        request_path = question.path.split('?').next().unwrap_or_default(),
        as_user = question.user.as_deref(),
        with_token = question.token.is_some(),
        "{}",
        Event::Explain.as_str()
    );
    let answer = explain::explain(app, &question).await?;
    api::json(StatusCode::OK, &answer)
}
