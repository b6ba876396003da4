//! What the fuzz targets share: reading an input as the lines of a request, and a Portcullis on
//! the memory store with one owner whose session token is known ([`OWNER_TOKEN`], which the
//! seeds carry), called through its public API handler with no socket.

use std::sync::Arc;

use bytes::Bytes;
use http::header::{HeaderMap, HeaderName, HeaderValue, CONTENT_TYPE, HOST};
use http::{Method, Request, StatusCode};
use http_body_util::Full;
use portcullis::auth::session::{self, KEY_RETENTION};
use portcullis::auth::token::{hash_secret, Token};
use portcullis::http::api;
use portcullis::http::peer::Peer;
use portcullis::{App, Config};

/// The owner's session token in every [`Sidecar`]: a key planted beside the one its login made.
pub const OWNER_TOKEN: &str = "FuzzOwner0-fuzzSecret000000000000";
/// The second user, a plain member, by username (the API takes it wherever it takes a user id).
pub const MEMBER: &str = "member";

/// The API prefix of [`SIDECAR_CONFIG`].
const PREFIX: &str = "/api/v2";

/// The memory store, argon2 at its cheapest (8 KiB, one pass: an exec is microseconds, not tens
/// of milliseconds) and no login limits, so that every input reaches the handler's own checks.
const SIDECAR_CONFIG: &str = r#"
[upstream]
url = "http://127.0.0.1:9"
[store]
url = "memory://"
[passwords]
argon2_memory_kib = 8
argon2_iterations = 1
[rate_limit]
login_per_minute = 0
account_failures = 0
"#;

/// The input split at `\n`: its first line, and the rest as lines.
pub fn lines(data: &[u8]) -> (&[u8], impl Iterator<Item = &[u8]>) {
    let mut lines = data.split(|&b| b == b'\n');
    let first = lines.next().unwrap_or_default();
    (first, lines)
}

/// `name: value` lines as a header map, in order (repeated names append). A line that is not a
/// valid header is skipped; a leading space of the value is dropped as an HTTP parser would.
pub fn header_map<'a>(lines: impl Iterator<Item = &'a [u8]>) -> HeaderMap {
    let mut headers = HeaderMap::new();
    for line in lines {
        let Some(colon) = line.iter().position(|&b| b == b':') else {
            continue;
        };
        let (name, value) = (&line[..colon], line[colon + 1..].trim_ascii_start());
        if let (Ok(name), Ok(value)) =
            (HeaderName::from_bytes(name), HeaderValue::from_bytes(value))
        {
            headers.append(name, value);
        }
    }
    headers
}

/// A Portcullis with the memory store: an owner (who holds [`OWNER_TOKEN`]) and a member
/// ([`MEMBER`]), made through the API itself.
pub struct Sidecar {
    /// A current-thread runtime that every call blocks on.
    pub runtime: tokio::runtime::Runtime,
    /// The state.
    pub app: Arc<App>,
    config: Config,
    peer: Peer,
}

impl Sidecar {
    /// Builds the state and its two users.
    ///
    /// # Panics
    /// When the set-up itself fails: every input would be meaningless.
    pub fn new() -> Sidecar {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a runtime");
        let config = Config::from_toml(SIDECAR_CONFIG, Vec::new(), std::path::Path::new("."))
            .expect("the fuzz config is valid");
        let app = Sidecar::app(&runtime, &config);
        let sidecar = Sidecar {
            runtime,
            app,
            config,
            peer: Peer::new("127.0.0.1:40000".parse().expect("an address"), false, false),
        };
        sidecar.runtime.block_on(sidecar.users());
        sidecar
    }

    /// Starts again from an empty store with the same two users, on the same runtime.
    pub fn renew(&mut self) {
        self.app = Sidecar::app(&self.runtime, &self.config);
        self.runtime.block_on(self.users());
    }

    /// Whether [`OWNER_TOKEN`] still authenticates (an input may have changed the owner's
    /// password, which ends every session).
    pub fn owner_signed_in(&self) -> bool {
        let mut headers = HeaderMap::new();
        headers.insert("coder-session-token", HeaderValue::from_static(OWNER_TOKEN));
        let uri = http::Uri::from_static("/");
        let auth = session::authenticate(&self.app.store, &self.app.keys, &headers, &uri);
        self.runtime.block_on(auth).is_ok()
    }

    fn app(runtime: &tokio::runtime::Runtime, config: &Config) -> Arc<App> {
        let _entered = runtime.enter();
        App::new(config.clone()).expect("an app")
    }

    async fn users(&self) {
        let owner = br#"{"email":"owner@example.com","username":"owner","name":"Owner","password":"Fuzzing-the-sidecar-7"}"#;
        let (status, _) = self.send(Method::POST, "/users/first", None, owner).await;
        assert_eq!(status, StatusCode::CREATED, "first user");
        let login = br#"{"email":"owner@example.com","password":"Fuzzing-the-sidecar-7"}"#;
        let (status, body) = self.send(Method::POST, "/users/login", None, login).await;
        assert_eq!(status, StatusCode::CREATED, "login");
        let body: serde_json::Value = serde_json::from_slice(&body).expect("a login body");
        let issued = body["session_token"].as_str().expect("a session token");
        let store = &self.app.store;
        let id = Token::parse(issued).expect("an issued token parses");
        let mut key = store
            .key(id.id().as_str())
            .await
            .expect("the memory store answers")
            .expect("the issued key");
        let planted = Token::parse(OWNER_TOKEN).expect("OWNER_TOKEN is a token");
        key.id = planted.id().to_string();
        key.hashed_secret = hash_secret(planted.secret());
        store
            .insert_key(&key, key.expires_at + KEY_RETENTION)
            .await
            .expect("the planted key is stored");
        let member = br#"{"email":"member@example.com","username":"member","name":"Member","password":"Fuzzing-the-sidecar-8","login_type":"password","user_status":"active"}"#;
        let (status, _) = self
            .send(Method::POST, "/users", Some(OWNER_TOKEN), member)
            .await;
        assert_eq!(status, StatusCode::CREATED, "member");
    }

    /// Calls the API handler with `method` on `path` (under the API prefix), the session token
    /// `token` in `Coder-Session-Token`, and `body`: its status and body.
    ///
    /// # Panics
    /// When the handler does not take the path (every path sent here is the API's), or the
    /// response body is not one it made in full.
    pub async fn send(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        body: &[u8],
    ) -> (StatusCode, Bytes) {
        let mut req = Request::builder()
            .method(method)
            .uri(format!("{PREFIX}{path}"))
            .header(HOST, "portcullis.test")
            .header(CONTENT_TYPE, "application/json");
        if let Some(token) = token {
            req = req.header("coder-session-token", token);
        }
        let req = req
            .body(Full::new(Bytes::copy_from_slice(body)))
            .expect("a request");
        let resp = match api::handle(&self.app, &self.peer, req, path).await {
            Ok(resp) => resp,
            Err(_) => panic!("{path} is not the API's"),
        };
        let status = resp.status();
        let body = resp
            .into_body()
            .into_full_bytes()
            .expect("an API body is whole");
        (status, body)
    }
}

impl Default for Sidecar {
    fn default() -> Self {
        Sidecar::new()
    }
}
