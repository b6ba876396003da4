//! identity: the store, Redis, JSON API calls

use super::*;

/// The shared test Redis, which `scripts/test` starts. Tests on it (and on [`SENTINEL`] and
/// [`CLUSTER`]) use a key prefix of their own ([`random_key_prefix`]) and delete it afterwards
/// ([`delete_redis_keys`]).
pub const REDIS: &str = "redis://127.0.0.1:6379";

/// A fresh key prefix, `portcullis-test:UUID:`, so that tests sharing one Redis never see one
/// another's keys.
pub fn random_key_prefix() -> String {
    format!("portcullis-test:{}:", uuid::Uuid::new_v4().simple())
}

/// A config for an in-process Portcullis on the store at `store_url` under key prefix
/// `prefix`, forwarding to `upstream`: `policy.default = "authenticated"`, extra `[store]`
/// lines `store_extra`, fast argon2 parameters (the tests are about behaviour, not hashing
/// cost), insecure session cookies, and extra TOML `extra` at the end.
pub fn config_with_store(
    upstream: SocketAddr,
    store_url: &str,
    prefix: &str,
    store_extra: &str,
    extra: &str,
) -> String {
    format!(
        "[server]\nlisten = \"127.0.0.1:0\"\nadmin_listen = \"127.0.0.1:0\"\n\n\
         [upstream]\nurl = \"http://{upstream}\"\n\n\
         [store]\nurl = \"{store_url}\"\nkey_prefix = \"{prefix}\"\n{store_extra}\n\n\
         [passwords]\nargon2_memory_kib = 1024\nargon2_iterations = 1\n\n\
         [session]\ncookie_secure = false\n\n\
         {extra}\n"
    )
}

/// Declares a module of four tests running `async fn $scenario(store_url: &str)`, one on each
/// store: `memory`, `redis` (the shared test Redis, [`REDIS`]), `sentinel`
/// ([`SENTINEL`]) and `cluster` ([`CLUSTER`]). The module is named `$tests` when given, else
/// after the scenario (a module and a function may share a name).
macro_rules! on_every_store {
    ($scenario:ident) => {
        $crate::common::on_every_store!($scenario => $scenario);
    };
    ($scenario:ident => $tests:ident) => {
        mod $tests {
            #[tokio::test]
            async fn memory() {
                super::$scenario("memory://").await;
            }

            #[tokio::test]
            async fn redis() {
                super::$scenario($crate::common::REDIS).await;
            }

            #[tokio::test]
            async fn sentinel() {
                super::$scenario($crate::common::SENTINEL).await;
            }

            #[tokio::test]
            async fn cluster() {
                super::$scenario($crate::common::CLUSTER).await;
            }
        }
    };
}
pub(crate) use on_every_store;

/// How many clients are subscribed to `channel` on the Redis behind `conn` (`PUBSUB NUMSUB`).
pub async fn subscribers(conn: &mut redis::aio::MultiplexedConnection, channel: &str) -> i64 {
    let counts: Vec<(String, i64)> = redis::cmd("PUBSUB")
        .arg("NUMSUB")
        .arg(channel)
        .query_async(conn)
        .await
        .expect("PUBSUB NUMSUB");
    counts.first().map_or(0, |(_, n)| *n)
}

/// A request to `app.test` for `path`, carrying `token` in `Coder-Session-Token` when given,
/// and `body` as JSON when given (no body otherwise).
pub fn api_request(
    method: Method,
    path: &str,
    body: Option<&Value>,
    token: Option<&str>,
) -> Request<TestBody> {
    let mut b = Request::builder()
        .method(method)
        .uri(path)
        .header(HOST, "app.test");
    if let Some(t) = token {
        b = b.header("coder-session-token", t);
    }
    match body {
        Some(body) => b
            .header("content-type", "application/json")
            .body(full(body.to_string()))
            .unwrap(),
        None => b.body(empty()).unwrap(),
    }
}

/// A request to `app.test` with `headers` as given, and `body` with its content type when given.
pub fn request_with(
    method: Method,
    path: &str,
    headers: &[(&str, &str)],
    body: Option<(&str, String)>,
) -> Request<TestBody> {
    let mut b = Request::builder()
        .method(method)
        .uri(path)
        .header(HOST, "app.test");
    for (name, value) in headers {
        b = b.header(*name, *value);
    }
    match body {
        Some((content_type, body)) => b
            .header("content-type", content_type)
            .body(full(body))
            .unwrap(),
        None => b.body(empty()).unwrap(),
    }
}

/// Sends `req` to `addr` on a new connection: the status, the body as JSON (a JSON string
/// when it is not JSON), and the response headers.
pub async fn call_json(addr: SocketAddr, req: Request<TestBody>) -> (StatusCode, Value, HeaderMap) {
    let resp = send(addr, req).await;
    let status = resp.status();
    let headers = resp.headers().clone();
    let text = body_string(resp).await;
    let value = serde_json::from_str(&text).unwrap_or(Value::String(text));
    (status, value, headers)
}
