//! `POST /portcullis/explain` (under `api.prefix`): [`crate::http::explain`] for owners, for a
//! UI or support tooling. The body is an [`explain::Question`]; the answer is the JSON form of
//! `portcullis explain --json`.
//!
//! Only a caller allowed `debug_info:read` (owners; a key whose scopes cover it) may ask:
//! others get `403`, callers without a session `401`. Each call is logged at `info` on the
//! tracing target `portcullis::audit` with the caller's user id: Portcullis has no audit log
//! of its own yet, and that target is where one will read from.

use std::sync::Arc;

use http::{Request, StatusCode};

use crate::http::api::{self, ApiResult};
use crate::http::app::App;
use crate::http::body::ReqBody;
use crate::http::error::Error;
use crate::http::explain::{self, Question};
use crate::rbac::{Action, Object, Resource};

/// `POST /portcullis/explain`: `200` with the explanation.
pub async fn explain(app: &Arc<App>, req: Request<impl ReqBody>) -> ApiResult {
    let auth = api::authenticate(app, &req).await?;
    if !api::allowed(&auth, Action::READ, &Object::new(Resource::DEBUG_INFO)) {
        return Err(Error::Forbidden);
    }
    let question: Question = api::json_body(req).await?;
    tracing::info!(
        target: "portcullis::audit",
        user_id = %auth.session().user.id,
        method = %question.method,
        path = question.path.split('?').next().unwrap_or_default(),
        as_user = question.user.as_deref().unwrap_or(""),
        with_token = question.token.is_some(),
        "explain"
    );
    let answer = explain::explain(app, &question).await?;
    api::json(StatusCode::OK, &answer)
}
