//! `GET /auth/scopes` (spec/coder-api.md §1): the scopes a new API key may carry.

use http::StatusCode;
use serde_json::json;

use crate::http::api::{self, ApiResult};
use crate::rbac::scopes;

/// `200 {"external": [...]}`: the external scope names, sorted. No session needed.
pub fn list() -> ApiResult {
    let mut names: Vec<&str> = scopes::external().collect();
    names.sort_unstable();
    api::json(StatusCode::OK, &json!({ "external": names }))
}
