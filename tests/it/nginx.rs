//! A real nginx in front of the echo upstream, asking Portcullis about every request through
//! `auth_request` → `/.portcullis/verify`, with the configuration shipped in
//! `deploy/nginx/nginx.conf` (only its addresses, port and file paths replaced). It proves the
//! example works as its comments say: an allowed request reaches the upstream with the identity
//! nginx copied from the verify answer (the assertion verifies against the JWKS), identity
//! headers a client sends never reach the upstream, no or a bad token is a 401 at the client,
//! `policy.default = "deny"` a 403, and the API is reachable through nginx.
//!
//! nginx comes from the `nginx` Debian package (`scripts/test` installs it); the test fails,
//! rather than skips, when it is missing.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use http::{Request, StatusCode};
use serde_json::Value;

use crate::common::world::SIGNED_OUT;
use crate::common::*;

const ISSUER: &str = "portcullis";

/// An nginx master process (`daemon off`) on a config in its own temporary prefix, stopped by
/// PID when dropped.
struct Nginx {
    child: Child,
    addr: SocketAddr,
    dir: tempfile::TempDir,
}

impl Nginx {
    /// Writes `deploy/nginx/nginx.conf` with the app at `app`, Portcullis at `portcullis`, a
    /// free loopback port to listen on, and every file under a temporary prefix; then starts
    /// nginx and waits until it accepts connections.
    fn start(app: SocketAddr, portcullis: SocketAddr) -> Nginx {
        let dir = tempfile::tempdir().unwrap();
        // Workers drop to `nobody` when nginx starts as root; let them into the prefix.
        set_mode(dir.path(), 0o755);
        let addr: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
        let example = std::fs::read_to_string(
            Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/nginx/nginx.conf"),
        )
        .unwrap();
        let prefix = dir.path().display().to_string();
        let mut conf = example;
        for (from, to) in [
            ("server 127.0.0.1:8443;", format!("server {portcullis};")),
            ("server 127.0.0.1:3000;", format!("server {app};")),
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
        ] {
            assert!(
                conf.contains(from),
                "deploy/nginx/nginx.conf no longer has {from:?}: update this test"
            );
            conf = conf.replace(from, &to);
        }
        let conf_path = dir.path().join("nginx.conf");
        std::fs::write(&conf_path, conf).unwrap();
        let child = Command::new(nginx_binary())
            .arg("-p")
            .arg(dir.path())
            .arg("-e")
            .arg(dir.path().join("error.log"))
            .arg("-c")
            .arg(&conf_path)
            .args(["-g", "daemon off;"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("nginx runs");
        let mut nginx = Nginx { child, addr, dir };
        let started = std::time::Instant::now();
        while std::net::TcpStream::connect(addr).is_err() {
            if let Ok(Some(status)) = nginx.child.try_wait() {
                panic!("nginx exited with {status}:\n{}", nginx.log());
            }
            assert!(started.elapsed() < BOUND, "nginx did not listen on {addr}");
            std::thread::sleep(Duration::from_millis(20));
        }
        nginx
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("error.log")).unwrap_or_default()
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        // SIGTERM lets the master stop its workers; SIGKILL if it does not exit in time.
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(self.child.id().to_string())
            .status();
        let started = std::time::Instant::now();
        while started.elapsed() < Duration::from_secs(5) {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn set_mode(path: &Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
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

/// A Portcullis that trusts nginx (127.0.0.1), signs assertions and forwards API routes it does
/// not serve to `app`, with extra TOML `extra`.
async fn portcullis(app: SocketAddr, extra: &str) -> Sidecar {
    let key = key_file("assertion-a.pem").display().to_string();
    let config = config_with_store(
        app,
        "memory://",
        "p:",
        "",
        &format!("[identity]\nassertion_key = {key:?}\n\n{extra}"),
    )
    .replacen(
        "[server]\n",
        "[server]\ntrusted_proxies = [\"127.0.0.1\"]\n",
        1,
    );
    Sidecar::start(&config).await
}

/// `GET path` through nginx as `app.test`, with extra headers.
async fn through(nginx: &Nginx, path: &str, headers: &[(&str, &str)]) -> (StatusCode, Value) {
    let mut b = Request::builder().uri(path).header("host", "app.test");
    for (n, v) in headers {
        b = b.header(*n, *v);
    }
    let (status, body, _) = call_json(nginx.addr, b.body(empty()).unwrap()).await;
    (status, body)
}

#[tokio::test]
async fn nginx_auth_request_to_portcullis_lets_sessions_through_with_identity_only_from_verify() {
    let echo = start_echo().await;
    let sidecar = portcullis(echo, "").await;
    let nginx = Nginx::start(echo, sidecar.addr);

    // The API through nginx: the first user and a login.
    let (user_id, token) = first_user_token(nginx.addr).await;

    // An allowed request, with every kind of forged identity the client can think of.
    let (status, seen) = through(
        &nginx,
        "/app/page?x=1",
        &[
            ("coder-session-token", &token),
            ("x-forwarded-user", "mallory"),
            ("X-Forwarded-Roles", "owner"),
            ("x_forwarded_user", "mallory"),
            ("remote-user", "mallory"),
            ("x-portcullis-assertion", "forged"),
        ],
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{seen}\n{}", nginx.log());
    assert_eq!(seen["path"], "/app/page");
    assert_eq!(seen["query"], "x=1");
    assert_eq!(seen_header(&seen, "x-forwarded-user"), ["admin"]);
    assert_eq!(
        seen_header(&seen, "x-forwarded-email"),
        ["admin@example.com"]
    );
    assert_eq!(
        seen_header(&seen, "x-forwarded-user-id"),
        [user_id.as_str()]
    );
    assert_eq!(seen_header(&seen, "x-forwarded-scopes"), ["coder:all"]);
    let roles = seen_header(&seen, "x-forwarded-roles");
    assert_eq!(roles.len(), 1);
    assert!(roles[0].split(',').any(|r| r == "owner"), "{roles:?}");
    let names = seen_header_names(&seen);
    for absent in ["x_forwarded_user", "remote-user", "coder-session-token"] {
        assert!(
            !names.contains(&absent.to_owned()),
            "{absent} reached the upstream: {seen}"
        );
    }
    let assertion = seen_header(&seen, "x-portcullis-assertion");
    assert_eq!(assertion.len(), 1, "{seen}");
    let (_, claims) = verify_assertion(sidecar.addr, &assertion[0], "app.test", ISSUER).await;
    assert_eq!(claims["sub"], user_id.as_str());

    // The cookie, a Bearer token and a token in the query work too (nginx passes the original
    // URI). A Bearer Authorization is Portcullis's and is removed; another scheme is the app's.
    let cookie = format!("coder_session_token={token}");
    let (status, seen) = through(
        &nginx,
        "/app",
        &[("cookie", &cookie), ("authorization", "Basic YXBwOnVzZXI=")],
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{seen}");
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

    // No token, or a bad one: 401 at the client, with Coder's message.
    for headers in [
        &[][..],
        &[("coder-session-token", "AAAAAAAAAA-bbbbbbbbbbbbbbbbbbbbbb")][..],
        &[("x-forwarded-user", "admin")][..],
    ] {
        let (status, body) = through(&nginx, "/app", headers).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{headers:?}: {body}");
        assert_eq!(body["message"], SIGNED_OUT);
    }

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
    assert_eq!(
        metric(
            &metrics,
            r#"portcullis_verify_total{decision="unauthenticated"}"#
        ),
        3.0
    );
    drop(nginx);
    sidecar.shutdown().await;
}

#[tokio::test]
async fn nginx_answers_403_when_the_route_policy_denies() {
    let echo = start_echo().await;
    let sidecar = portcullis(echo, "[policy]\ndefault = \"deny\"\n").await;
    let nginx = Nginx::start(echo, sidecar.addr);
    let (_, token) = first_user_token(nginx.addr).await;
    let (status, body) = through(&nginx, "/app", &[("coder-session-token", &token)]).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}\n{}", nginx.log());
    assert_eq!(body["message"], "Forbidden.");
    let metrics = sidecar.metrics().await;
    assert_eq!(
        metric(&metrics, r#"portcullis_verify_total{decision="forbidden"}"#),
        1.0
    );
    drop(nginx);
    sidecar.shutdown().await;
}
