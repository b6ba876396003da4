//! API keys of a user: `POST /users/{user}/keys` (spec/coder-api.md §7.5), a new `coder:all`
//! key for the CLI-style login, with the default token lifetime and no cookie.

use std::sync::Arc;

use http::{Request, StatusCode};
use hyper::body::Incoming;
use serde_json::json;

use crate::api::users;
use crate::api::{self, ApiResult};
use crate::app::App;
use crate::proxy::Peer;
use crate::rbac::scopes as scope;
use crate::rbac::Object;
use crate::store::LoginType;
use crate::users::{NewKey, Users};

/// `POST /users/{user}/keys`: `201 {"key": "<id>-<secret>"}`, a `coder:all` key with login
/// type `password` lasting `tokens.default_lifetime`. Yourself, or anyone for an `owner`;
/// for everyone else the user does not exist (404), as in Coder.
pub async fn create_key(
    app: &Arc<App>,
    peer: &Peer,
    req: Request<Incoming>,
    param: &str,
) -> ApiResult {
    let (auth, user) = users::target(app, &req, param).await?;
    if !api::allowed(&auth, "create", &Object::api_key(user.id)) {
        return Err(api::not_found());
    }
    let ops = Users::of(app);
    let key = ops
        .issue_key(
            &user,
            NewKey {
                login_type: LoginType::Password,
                lifetime: ops.default_token_lifetime(),
                scopes: vec![scope::ALL.to_owned()],
                token_name: String::new(),
                ip_address: peer.addr.ip().to_string(),
            },
        )
        .await?;
    api::json(StatusCode::CREATED, &json!({ "key": key }))
}
