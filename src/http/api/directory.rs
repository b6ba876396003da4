//! The user directory: `GET /users` with Coder's search and paging, `GET /users/{user}/login-type`,
//! `GET /users/{user}/organizations` and `PUT /users/{user}/profile` (Coder's
//! `coderd/users.go`, `coderd/searchquery/search.go`, `coderd/pagination.go`). What a caller
//! sees is the RBAC evaluator's answer (roles ∩ scopes ∩ allow list) for each user object, as
//! Coder's authorized query filters its rows.

use std::sync::Arc;

use futures_util::future::try_join_all;
use http::{Request, StatusCode};
use openidconnect::url::form_urlencoded;
use serde::Deserialize;
use serde_json::json;
use uuid::Uuid;

use crate::coder::Validation;
use crate::http::api::orgs::OrgJson;
use crate::http::api::users::{target, UserJson};
use crate::http::api::{self, ApiResult};
use crate::http::app::App;
use crate::http::body::ReqBody;
use crate::http::error::Error;
use crate::rbac::{Action, Object, Resource};
use crate::store::{LoginType, Organization, UserQuery, UserStatus};
use crate::users::{validate_name, validate_username, UserError};

/// Coder's answer to a bad `q`.
const BAD_SEARCH: &str = "Invalid user search query.";
/// Coder's answer to bad paging parameters.
const BAD_PAGING: &str = "Query parameters have invalid values.";

/// The search keys `q` may use for users (besides free text).
const SEARCH_KEYS: [&str; 6] = [
    "search",
    "username",
    "email",
    "status",
    "role",
    "login_type",
];

/// `codersdk.UpdateUserProfileRequest`.
#[derive(Deserialize)]
struct UpdateProfile {
    #[serde(default)]
    username: String,
    #[serde(default)]
    name: String,
}

/// `GET /users`: `{"users": [...], "count": N}`. A caller whose roles, scopes and allow list
/// let it read any user sees everyone; anyone else sees the users it may read one by one
/// (itself, and the users its allow list names), as Coder's authorized query does.
pub async fn list(app: &Arc<App>, req: Request<impl ReqBody>) -> ApiResult {
    let auth = api::authenticate(app, &req).await?;
    let params: Vec<(String, String)> =
        form_urlencoded::parse(req.uri().query().unwrap_or("").as_bytes())
            .map(|(k, v)| (k.into_owned(), v.into_owned()))
            .collect();
    let first = |name: &str| {
        params
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    };
    let mut query = parse_search(first("q").unwrap_or(""))
        .map_err(|invalid| Error::with_validations(StatusCode::BAD_REQUEST, BAD_SEARCH, invalid))?;
    let mut invalid = Vec::new();
    query.after_id = parse_after_id(first("after_id"), &mut invalid);
    query.limit = parse_count("limit", first("limit"), &mut invalid);
    query.offset = parse_count("offset", first("offset"), &mut invalid);
    if !invalid.is_empty() {
        return Err(Error::with_validations(
            StatusCode::BAD_REQUEST,
            BAD_PAGING,
            invalid,
        ));
    }
    let subject = auth.subject();
    if !subject.allows(Action::READ, &Object::new(Resource::USER)) {
        let session = auth.session();
        let mut only = vec![session.user.id];
        only.extend(session.key.allow_list.iter().filter_map(|e| {
            (e.resource_type == Resource::USER.name())
                .then(|| e.id.parse::<Uuid>().ok())
                .flatten()
        }));
        only.sort();
        only.dedup();
        only.retain(|id| subject.allows(Action::READ, &Object::user(*id)));
        query.only = Some(only);
    }
    let page = app.store.list_users(&query).await?;
    let memberships =
        try_join_all(page.users.iter().map(|u| app.store.memberships_of(u.id))).await?;
    let users: Vec<UserJson> = page
        .users
        .iter()
        .zip(&memberships)
        .map(|(u, m)| UserJson::new(u, m))
        .collect();
    api::json(
        StatusCode::OK,
        &json!({ "users": users, "count": page.count }),
    )
}

/// `GET /users/{user}/login-type`: `{"login_type": ...}`, for whoever may read the user's
/// personal details (`user:read_personal`); anyone else finds no such user.
pub async fn login_type(app: &Arc<App>, req: Request<impl ReqBody>, param: &str) -> ApiResult {
    let (auth, user) = target(app, &req, param).await?;
    if !api::allowed(&auth, Action::READ_PERSONAL, &Object::user(user.id)) {
        return Err(Error::NotFound);
    }
    api::json(
        StatusCode::OK,
        &json!({ "login_type": user.login_type.as_str() }),
    )
}

/// `GET /users/{user}/organizations`: the user's organizations that the caller may read.
pub async fn organizations(app: &Arc<App>, req: Request<impl ReqBody>, param: &str) -> ApiResult {
    let (auth, user) = target(app, &req, param).await?;
    let memberships = app.store.memberships_of(user.id).await?;
    let orgs = try_join_all(memberships.iter().map(|m| app.store.org(m.organization_id))).await?;
    let mut orgs: Vec<Organization> = orgs
        .into_iter()
        .flatten()
        .filter(|o| api::allowed(&auth, Action::READ, &Object::organization(o.id)))
        .collect();
    orgs.sort_by_key(|o| o.created_at);
    let orgs: Vec<OrgJson> = orgs.iter().map(OrgJson::new).collect();
    api::json(StatusCode::OK, &orgs)
}

/// `PUT /users/{user}/profile`: a new username and display name, with Coder's validation;
/// `409 User already exists.` when another user has the username. A new username needs
/// `user:update` (user admins), a new name `user:update_personal` (the user itself). The
/// user's sessions keep working.
pub async fn update_profile(app: &Arc<App>, req: Request<impl ReqBody>, param: &str) -> ApiResult {
    let (auth, user) = target(app, &req, param).await?;
    let (parts, body) = req.into_parts();
    let body: UpdateProfile = api::json_body(Request::from_parts(parts, body)).await?;
    let mut invalid = Vec::new();
    validate_username(&body.username, &mut invalid);
    validate_name(&body.name, &mut invalid);
    if !invalid.is_empty() {
        return Err(Error::validation(invalid));
    }
    if body.username != user.username
        && !api::allowed(&auth, Action::UPDATE, &Object::user(user.id))
    {
        return Err(Error::NotFound);
    }
    if !api::allowed(&auth, Action::UPDATE_PERSONAL, &Object::user(user.id)) {
        return Err(Error::Forbidden);
    }
    let taken = |field: &'static str| {
        Error::with_validations(
            StatusCode::CONFLICT,
            "User already exists.",
            vec![Validation {
                field: field.to_owned(),
                detail: "this value is already in use and should be unique".to_owned(),
            }],
        )
    };
    if let Some(other) = app.store.user_by_username(&body.username).await? {
        if other.id != user.id {
            return Err(taken("username"));
        }
    }
    let updated = match app
        .users()
        .update_profile(user.id, &body.username, &body.name)
        .await
    {
        Err(UserError::Conflict(field)) => return Err(taken(field)),
        other => other?,
    };
    let memberships = app.store.memberships_of(updated.id).await?;
    api::json(StatusCode::OK, &UserJson::new(&updated, &memberships))
}

// === parsing ===

/// Parses Coder's user search (`searchquery.Users`): lower-cased; `key:value` elements, the
/// rest joined with spaces into one free-text term; `status` and `login_type` are
/// comma-separated lists of known values, `role` a comma-separated list. The first error of
/// the element syntax is the only one reported; otherwise every bad value is.
pub fn parse_search(q: &str) -> Result<UserQuery, Vec<Validation>> {
    let q = q.to_lowercase();
    let tokens = split_outside_quotes(&q, ' ', true);
    let (mut elements, free): (Vec<String>, Vec<String>) =
        tokens.into_iter().partition(|t| t.contains(':'));
    if !free.is_empty() {
        elements.push(free.join(" "));
    }
    let mut values: Vec<(String, String)> = Vec::new();
    for element in &elements {
        if element.starts_with(':') || element.ends_with(':') {
            return Err(vec![validation(
                "q",
                format!("Query element {element:?} cannot start or end with ':'"),
            )]);
        }
        match split_outside_quotes(element, ':', false).as_slice() {
            [term] => values.push(("search".to_owned(), term.clone())),
            [key, value] => values.push((key.to_lowercase(), value.clone())),
            _ => {
                return Err(vec![validation(
                    "q",
                    format!("Query element {element:?} can only contain 1 ':'"),
                )])
            }
        }
    }
    let first = |key: &str| {
        values
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
            .filter(|v| !v.is_empty())
    };
    let mut invalid = Vec::new();
    let mut query = UserQuery {
        search: first("search").unwrap_or("").to_owned(),
        username: first("username").map(str::to_owned),
        email: first("email").map(str::to_owned),
        ..UserQuery::default()
    };
    query.status = parse_list(first("status"), "status", &mut invalid, |v| match v {
        "active" => Some(UserStatus::Active),
        "dormant" => Some(UserStatus::Dormant),
        "suspended" => Some(UserStatus::Suspended),
        _ => None,
    });
    query.roles = parse_list(first("role"), "role", &mut invalid, |v| Some(v.to_owned()));
    query.login_types = parse_list(
        first("login_type"),
        "login_type",
        &mut invalid,
        |v| match v {
            "password" => Some(LoginType::Password),
            "github" => Some(LoginType::Github),
            "oidc" => Some(LoginType::Oidc),
            "token" => Some(LoginType::Token),
            "none" => Some(LoginType::None),
            _ => None,
        },
    );
    let mut excess: Vec<&str> = values
        .iter()
        .map(|(k, _)| k.as_str())
        .filter(|k| !SEARCH_KEYS.contains(k))
        .collect();
    excess.sort_unstable();
    excess.dedup();
    for key in excess {
        invalid.push(validation(
            key,
            format!("Query param {key:?} is not a valid query param"),
        ));
    }
    if invalid.is_empty() {
        Ok(query)
    } else {
        Err(invalid)
    }
}

/// Go's `strings.FieldsFunc` on `delimiter` outside double quotes (empty fields dropped),
/// keeping the quotes or trimming them from each field's ends.
fn split_outside_quotes(text: &str, delimiter: char, keep_quotes: bool) -> Vec<String> {
    let mut fields = Vec::new();
    let mut field = String::new();
    let mut quoted = false;
    for c in text.chars() {
        if c == '"' {
            quoted = !quoted;
        }
        if !quoted && c == delimiter {
            if !field.is_empty() {
                fields.push(std::mem::take(&mut field));
            }
        } else {
            field.push(c);
        }
    }
    if !field.is_empty() {
        fields.push(field);
    }
    if !keep_quotes {
        for f in &mut fields {
            *f = f.trim_matches('"').to_owned();
        }
    }
    fields
}

/// A comma-separated list of values (`ParseCustomList`): every bad value is named in one error.
fn parse_list<T>(
    raw: Option<&str>,
    key: &str,
    invalid: &mut Vec<Validation>,
    parse: impl Fn(&str) -> Option<T>,
) -> Vec<T> {
    let Some(raw) = raw else { return Vec::new() };
    let mut good = Vec::new();
    let mut bad = Vec::new();
    for term in raw.split(',') {
        match parse(term) {
            Some(v) => good.push(v),
            None => bad.push(term),
        }
    }
    if bad.is_empty() {
        good
    } else {
        invalid.push(validation(
            key,
            format!("Query param {key:?} has invalid values: {}", bad.join(",")),
        ));
        Vec::new()
    }
}

/// `after_id`: a UUID, or absent/empty.
fn parse_after_id(raw: Option<&str>, invalid: &mut Vec<Validation>) -> Option<Uuid> {
    let raw = raw.filter(|r| !r.is_empty())?;
    match raw.parse::<Uuid>() {
        Ok(id) if !id.is_nil() => Some(id),
        Ok(_) => None,
        Err(_) => {
            invalid.push(validation(
                "after_id",
                "Query param \"after_id\" must be a valid uuid".to_owned(),
            ));
            None
        }
    }
}

/// `limit` or `offset`: a whole number, 0 when absent. Coder passes a negative one on to
/// Postgres, which fails (a 500); the fault is the client's, so this answers 400.
fn parse_count(key: &str, raw: Option<&str>, invalid: &mut Vec<Validation>) -> usize {
    let Some(raw) = raw.filter(|r| !r.is_empty()) else {
        return 0;
    };
    match raw.parse::<i64>() {
        Ok(n) if n < 0 => {
            invalid.push(validation(
                key,
                format!(
                    "Query param {key:?} must be a valid integer (a negative value is not allowed)"
                ),
            ));
            0
        }
        Ok(n) => usize::try_from(n).unwrap_or(usize::MAX),
        Err(e) => {
            let why = match e.kind() {
                std::num::IntErrorKind::PosOverflow | std::num::IntErrorKind::NegOverflow => {
                    "value out of range"
                }
                _ => "invalid syntax",
            };
            invalid.push(validation(
                key,
                format!("Query param {key:?} must be a valid integer (strconv.Atoi: parsing {raw:?}: {why})"),
            ));
            0
        }
    }
}

fn validation(field: &str, detail: String) -> Validation {
    Validation {
        field: field.to_owned(),
        detail,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn search_terms_parse_as_coder_parses_them() {
        let q = parse_search("status:active,dormant role:owner login_type:oidc Bob").unwrap();
        assert_eq!(q.search, "bob");
        assert_eq!(q.status, vec![UserStatus::Active, UserStatus::Dormant]);
        assert_eq!(q.roles, vec!["owner".to_owned()]);
        assert_eq!(q.login_types, vec![LoginType::Oidc]);
        let q = parse_search("hello there username:\"Al\" email:a@b.c").unwrap();
        assert_eq!(q.search, "hello there");
        assert_eq!(q.username.as_deref(), Some("al"));
        assert_eq!(q.email.as_deref(), Some("a@b.c"));
        assert_eq!(parse_search("").unwrap(), UserQuery::default());
    }

    #[test]
    fn bad_search_terms_are_named_in_coders_words() {
        let cases: [(&str, &str, &str); 5] = [
            (
                "status:",
                "q",
                "Query element \"status:\" cannot start or end with ':'",
            ),
            (
                "a:b:c",
                "q",
                "Query element \"a:b:c\" can only contain 1 ':'",
            ),
            (
                "status:gone,active,x",
                "status",
                "Query param \"status\" has invalid values: gone,x",
            ),
            (
                "login_type:saml",
                "login_type",
                "Query param \"login_type\" has invalid values: saml",
            ),
            (
                "colour:red",
                "colour",
                "Query param \"colour\" is not a valid query param",
            ),
        ];
        for (q, field, detail) in cases {
            let invalid = parse_search(q).expect_err(q);
            assert_eq!(invalid, vec![validation(field, detail.to_owned())], "{q}");
        }
    }

    #[test]
    fn paging_parameters_refuse_what_is_not_a_whole_number() {
        let mut invalid = Vec::new();
        assert_eq!(parse_count("limit", Some("25"), &mut invalid), 25);
        assert_eq!(parse_count("limit", None, &mut invalid), 0);
        assert!(invalid.is_empty());
        parse_count("limit", Some("ten"), &mut invalid);
        parse_count("offset", Some("-1"), &mut invalid);
        parse_after_id(Some("nope"), &mut invalid);
        let fields: Vec<&str> = invalid.iter().map(|v| v.field.as_str()).collect();
        assert_eq!(fields, ["limit", "offset", "after_id"]);
        assert_eq!(
            invalid[0].detail,
            "Query param \"limit\" must be a valid integer (strconv.Atoi: parsing \"ten\": invalid syntax)"
        );
    }
}
