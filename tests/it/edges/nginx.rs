//! A real nginx in front of the echo upstream, asking Portcullis about every request through
//! `auth_request` → `/.portcullis/verify`, with the configuration shipped in
//! `deploy/nginx/nginx.conf` (only its addresses, port and file paths replaced): the shared
//! scenario ([`judged`], [`outage`]: a verify `503` reaches the client as `503`, not nginx's
//! `500`), and what is particular to nginx: the token in a cookie, a `Bearer` or the query, a
//! `Bearer` kept from the app and another scheme passed, the verify location internal, the API
//! and the keys reachable through nginx.
//!
//! nginx comes from the `nginx` Debian package (`scripts/test` installs it); the test fails,
//! rather than skips, when it is missing.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::Command;

use super::*;

/// Starts nginx (`daemon off`, one worker) on the configuration `conf`, already written for
/// `addr` and `dir`, whose `error.log` is where nginx logs.
fn start_nginx(conf: &str, addr: SocketAddr, dir: tempfile::TempDir) -> Edge {
    let conf_path = write(&dir, "nginx.conf", conf);
    let mut command = Command::new(nginx_binary());
    command
        .arg("-p")
        .arg(dir.path())
        .arg("-e")
        .arg(dir.path().join("error.log"))
        .arg("-c")
        .arg(&conf_path)
        .args(["-g", "daemon off;"]);
    Edge::spawn(command, addr, dir)
}

/// What the shipped files name as the pid file, logs and listener, replaced by places under
/// `dir` and `addr` (temporary paths included: nginx's defaults need root).
fn nginx_places(dir: &tempfile::TempDir, addr: SocketAddr) -> Vec<(&'static str, String)> {
    let prefix = dir.path().display().to_string();
    vec![
        ("listen 80;", format!("listen {addr};")),
        ("worker_processes auto;", "worker_processes 1;".to_owned()),
        (
            "pid /run/nginx-portcullis.pid;",
            format!("pid {prefix}/nginx.pid;"),
        ),
        (
            "error_log /var/log/nginx/portcullis-error.log warn;",
            format!("error_log {prefix}/error.log info;"),
        ),
        (
            "access_log /var/log/nginx/portcullis-access.log;",
            format!(
                "access_log {prefix}/access.log;\n    \
                 client_body_temp_path {prefix}/body;\n    \
                 proxy_temp_path {prefix}/proxy;\n    \
                 fastcgi_temp_path {prefix}/fastcgi;\n    \
                 uwsgi_temp_path {prefix}/uwsgi;\n    \
                 scgi_temp_path {prefix}/scgi;"
            ),
        ),
    ]
}

/// nginx on the recipe `path` (an nginx.conf naming the app `server 127.0.0.1:3000;` and
/// Portcullis `server 127.0.0.1:8443;`), with the app at `app`, Portcullis at `portcullis`, and
/// the replacements `more`.
pub fn start_recipe(
    path: &str,
    app: SocketAddr,
    portcullis: SocketAddr,
    more: Vec<(&'static str, String)>,
) -> Edge {
    let dir = edge_dir();
    let addr = edge_addr();
    let mut pairs = vec![
        ("server 127.0.0.1:8443;", format!("server {portcullis};")),
        ("server 127.0.0.1:3000;", format!("server {app};")),
    ];
    pairs.extend(more);
    pairs.extend(nginx_places(&dir, addr));
    start_nginx(&replaced(path, recipe(path), &pairs), addr, dir)
}

/// nginx on `deploy/nginx/nginx.conf`.
pub fn start(app: SocketAddr, portcullis: SocketAddr) -> Edge {
    start_recipe("deploy/nginx/nginx.conf", app, portcullis, vec![])
}

/// `nginx` from `PATH`, or Debian's `/usr/sbin/nginx` (not on a normal user's `PATH`).
fn nginx_binary() -> PathBuf {
    let on_path = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|p| p.join("nginx"))
            .find(|p| p.is_file())
    });
    on_path
        .or_else(|| Some(PathBuf::from("/usr/sbin/nginx")).filter(|p| p.is_file()))
        .expect("nginx is not installed: scripts/test installs the Debian package `nginx`")
}

/// `GET path` through nginx as `app.test`, with extra headers: the status and the body.
async fn through(nginx: &Edge, path: &str, headers: &[(&str, &str)]) -> (StatusCode, Value) {
    let resp = get(nginx, path, headers).await;
    let body = serde_json::from_slice(&resp.body)
        .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&resp.body).into_owned()));
    (StatusCode::from_u16(resp.status).unwrap(), body)
}

#[tokio::test]
async fn nginx_auth_request_passes_only_portcullis_identity_in_any_spelling() {
    judged(start, Refusals::Coder).await;
}

#[tokio::test]
async fn nginx_passes_a_store_outage_on_as_503_not_its_own_500() {
    outage(start).await;
}

/// What the shared scenario does not cover: the token in a cookie, a `Bearer` (removed before
/// the app) beside another scheme (kept), the query; a verify `400` reaches the client as `400`;
/// the verify location is internal; the API and the keys are reachable through nginx.
#[tokio::test]
async fn nginx_reads_every_token_place_passes_a_verify_400_on_and_keeps_verify_internal() {
    let echo = start_echo().await;
    let sidecar = portcullis(echo, "memory://").await;
    let nginx = start(echo, sidecar.addr).ready().await;
    // The API through nginx: the first user and a login.
    let (_, token) = first_user_token(nginx.addr).await;

    // The cookie, a Bearer token and a token in the query (nginx passes the original URI). A
    // Bearer Authorization is Portcullis's and is removed; another scheme is the app's.
    let cookie = format!("coder_session_token={token}");
    let (status, seen) = through(
        &nginx,
        "/app",
        &[("cookie", &cookie), ("authorization", "Basic YXBwOnVzZXI=")],
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{seen}\n{}", nginx.log());
    assert_eq!(seen_header(&seen, "x-forwarded-user"), ["admin"]);
    assert_eq!(seen_header(&seen, "authorization"), ["Basic YXBwOnVzZXI="]);
    let bearer = format!("Bearer {token}");
    let (status, seen) = through(&nginx, "/app", &[("authorization", &bearer)]).await;
    assert_eq!(status, StatusCode::OK, "{seen}");
    assert_eq!(seen_header(&seen, "x-forwarded-user"), ["admin"]);
    assert!(seen_header(&seen, "authorization").is_empty(), "{seen}");
    let (status, seen) = through(&nginx, &format!("/app?coder_session_token={token}"), &[]).await;
    assert_eq!(status, StatusCode::OK, "{seen}");
    assert_eq!(seen_header(&seen, "x-forwarded-user"), ["admin"]);
    let (status, seen) = through(&nginx, "/app", &[("coder-session-token", &token)]).await;
    assert_eq!(status, StatusCode::OK, "{seen}");
    assert!(
        seen_header(&seen, "coder-session-token").is_empty(),
        "{seen}"
    );

    // A request verify refuses (it carries a method override the app could act on) is a 400
    // at the client, not nginx's 500.
    let (status, body) = through(
        &nginx,
        "/app",
        &[
            ("coder-session-token", &token),
            ("x-http-method-override", "DELETE"),
        ],
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}\n{}", nginx.log());
    assert_eq!(body["message"], "Invalid forward-auth request.");

    // The subrequest location is internal, and the keys are published through nginx.
    let (status, _) = through(
        &nginx,
        "/.portcullis/verify",
        &[("coder-session-token", &token)],
    )
    .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, jwks) = through(&nginx, "/.portcullis/jwks.json", &[]).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(jwks["keys"][0]["kid"], key_kid("assertion-a").as_str());

    let metrics = sidecar.metrics().await;
    assert_eq!(
        metric(&metrics, r#"portcullis_verify_total{decision="allow"}"#),
        4.0
    );
    drop(nginx);
    sidecar.shutdown().await;
}
