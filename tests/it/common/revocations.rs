//! the ways to revoke access, made through the API

use serde_json::json;

use super::world::{make_member, make_token};
use super::*;

/// One way to revoke access, with the tokens it ends.
pub enum Revocation {
    /// `POST /users/logout` with a session, which also ends its user's application_connect key.
    Logout { session: String, app: String },
    /// `DELETE /users/me/keys/{id}` of one of the admin's tokens.
    Delete { token: String },
    /// `PUT /users/{id}/status/suspend`, which ends the user's session.
    Suspend { user: String, session: String },
}

impl Revocation {
    /// Makes one of each kind at `addr` as `admin`, for `name` (a fresh member, and a token of
    /// the admin's).
    pub async fn each(addr: SocketAddr, admin: &str, name: &str) -> [Revocation; 3] {
        let (_, session) = make_member(addr, admin, &format!("{name}-out")).await;
        let app = make_token(
            addr,
            &session,
            json!({"token_name": "app", "scope": "application_connect"}),
        )
        .await;
        let token = make_token(addr, admin, json!({"token_name": format!("{name}-token")})).await;
        let (user, suspended) = make_member(addr, admin, &format!("{name}-suspended")).await;
        [
            Revocation::Logout { session, app },
            Revocation::Delete { token },
            Revocation::Suspend {
                user: user["id"].as_str().expect("an id").to_owned(),
                session: suspended,
            },
        ]
    }

    /// The tokens it ends.
    pub fn tokens(&self) -> Vec<String> {
        match self {
            Revocation::Logout { session, app } => vec![session.clone(), app.clone()],
            Revocation::Delete { token } => vec![token.clone()],
            Revocation::Suspend { session, .. } => vec![session.clone()],
        }
    }

    /// Makes the call at `addr`, as `admin` where it takes one: `Ok` with the status when it
    /// answered success, or `Err` with the 5xx that leaves it undone as far as the caller knows. Anything else fails the
    /// test, but on a `retry` the answer of a call whose earlier attempt did its work though
    /// it answered an error (a logout whose session is gone: 401; a deletion of a deleted
    /// token: 404) counts as success.
    pub async fn run(
        &self,
        addr: SocketAddr,
        admin: &str,
        retry: bool,
    ) -> Result<StatusCode, StatusCode> {
        let (method, path, token) = match self {
            Revocation::Logout { session, .. } => (
                Method::POST,
                "/api/v2/users/logout".to_owned(),
                session.as_str(),
            ),
            Revocation::Delete { token } => {
                let id = token.split('-').next().expect("a key id");
                (Method::DELETE, format!("/api/v2/users/me/keys/{id}"), admin)
            }
            Revocation::Suspend { user, .. } => (
                Method::PUT,
                format!("/api/v2/users/{user}/status/suspend"),
                admin,
            ),
        };
        let (status, body, _) =
            call_json(addr, api_request(method, &path, None, Some(token))).await;
        let done_before = match self {
            Revocation::Logout { .. } => StatusCode::UNAUTHORIZED,
            Revocation::Delete { .. } => StatusCode::NOT_FOUND,
            Revocation::Suspend { .. } => StatusCode::OK,
        };
        if (retry && status == done_before) || status.is_success() {
            return Ok(status);
        }
        assert!(status.is_server_error(), "{path}: {status} {body}");
        Err(status)
    }
}
