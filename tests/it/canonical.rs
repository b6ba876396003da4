//! One decision for what the upstream sees: every spelling of a path is judged on the one
//! canonical form (or refused), inline and in forward-auth alike; HEAD is GET for matching;
//! override headers never reach the application; only allowed upgrades are tunnelled; a
//! forwarding loop ends at once; and the routes Portcullis owns never reach the upstream.

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};

use http::{Method, Request, StatusCode};
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use crate::common::world::*;
use crate::common::*;

const RULES: &str = r#"
[policy]
default = "authenticated"

[[policy.route]]
path = "/static/**"
public = true

[[policy.route]]
path = "/admin/**"
require = "user:create"

[[policy.route]]
path = "/reports/*"
methods = ["GET"]
require = "deployment_config:update"
"#;

/// A Portcullis on the memory store in front of `upstream`, trusting 127.0.0.1 as its edge,
/// without the API rate limit (these tests make hundreds of calls from one address).
async fn start(upstream: SocketAddr, extra: &str) -> World {
    start_with(upstream, "", extra).await
}

/// [`start`] with extra `[upstream]` lines.
async fn start_with(upstream: SocketAddr, upstream_extra: &str, extra: &str) -> World {
    let prefix = random_key_prefix();
    let url = format!("url = \"http://{upstream}\"\n");
    let extra = format!("{extra}\n[rate_limit]\napi_per_minute = 0\n");
    let config = config_with_store(upstream, MEMORY, &prefix, "", &extra)
        .replacen(
            "[server]\n",
            "[server]\ntrusted_proxies = [\"127.0.0.1\"]\n",
            1,
        )
        .replacen(&url, &format!("{url}{upstream_extra}\n"), 1);
    World::with_first_user(Sidecar::start(&config).await, prefix).await
}

#[derive(Debug, Clone, Copy)]
enum Who {
    Nobody,
    Member,
    Owner,
}

/// Sends `method path` three ways: inline, as an nginx `auth_request` subrequest, and in
/// Envoy's `ext_authz` form. Returns the three statuses and what the upstream saw inline.
async fn three_ways(
    w: &World,
    method: &Method,
    path: &str,
    token: Option<&str>,
) -> ([StatusCode; 3], Value) {
    let with_token = |b: http::request::Builder| match token {
        Some(t) => b.header("coder-session-token", t),
        None => b,
    };
    let inline = with_token(
        Request::builder()
            .method(method.clone())
            .uri(path)
            .header("host", "app.test"),
    )
    .body(empty())
    .unwrap();
    let resp = send(w.sidecar.addr, inline).await;
    let inline = resp.status();
    let text = body_string(resp).await;
    let seen = serde_json::from_str(&text).unwrap_or(Value::String(text));

    let nginx = with_token(
        Request::builder()
            .uri("/.portcullis/verify")
            .header("host", "portcullis.internal")
            .header("x-original-uri", path)
            .header("x-original-method", method.as_str()),
    )
    .body(empty())
    .unwrap();
    let nginx = send(w.sidecar.addr, nginx).await.status();

    let envoy = with_token(
        Request::builder()
            .method(method.clone())
            .uri(format!("/.portcullis/verify/envoy{path}"))
            .header("host", "app.test"),
    )
    .body(empty())
    .unwrap();
    let envoy = send(w.sidecar.addr, envoy).await.status();
    ([inline, nginx, envoy], seen)
}

/// Every spelling the review found, and the ones Tomcat, Spring, Express, ASP.NET/IIS, Go's
/// `net/http` and nginx read differently, against `/static/**` public, `/admin/**`
/// `user:create`, `/reports/*` GET-only `deployment_config:update` and a default of
/// "authenticated": inline and both forward-auth forms give the same status, and whatever is
/// forwarded goes with its canonical path.
#[tokio::test]
async fn every_spelling_gets_one_decision_inline_and_in_forward_auth() {
    let (upstream, hits) = counting_echo().await;
    let w = start(upstream, RULES).await;
    let (_, member) = w.member("bob").await;
    use Who::*;
    const OK: u16 = 200;
    let rows: &[(&str, &str, Who, u16, Option<&str>)] = &[
        // The protected prefix, as written and in other cases (Express, ASP.NET).
        ("GET", "/admin/users", Member, 403, None),
        ("GET", "/admin/users", Owner, OK, Some("/admin/users")),
        ("GET", "/ADMIN/users", Member, 403, None),
        ("GET", "/Admin/users", Member, 403, None),
        ("GET", "/aDMIN/users", Owner, OK, Some("/aDMIN/users")),
        ("GET", "/admin/", Member, 403, None),
        // Escaped unreserved characters are decoded, and the decoded path is forwarded.
        ("GET", "/%61dmin/users", Member, 403, None),
        ("GET", "/%41DMIN/users", Member, 403, None),
        ("GET", "/%61dmin/users", Owner, OK, Some("/admin/users")),
        // Repeated slashes are merged (nginx merge_slashes, Go's ServeMux).
        ("GET", "//admin/users", Member, 403, None),
        ("GET", "/admin//users", Member, 403, None),
        ("GET", "//admin//users", Owner, OK, Some("/admin/users")),
        // `;` path parameters (Tomcat, Spring), raw or escaped.
        ("GET", "/admin;x=1/users", Member, 400, None),
        ("GET", "/admin%3Bx/users", Member, 400, None),
        ("GET", "/admin%3bx/users", Member, 400, None),
        ("GET", "/static/..;/admin/users", Nobody, 400, None),
        ("GET", "/static;/../admin/users", Nobody, 400, None),
        // Trailing dots and spaces (IIS, Windows).
        ("GET", "/admin./users", Member, 400, None),
        ("GET", "/admin%2e/users", Member, 400, None),
        ("GET", "/admin%2E/users", Member, 400, None),
        ("GET", "/admin%20/users", Member, 400, None),
        ("GET", "/admin%09/users", Member, 400, None),
        // Dot segments, raw and escaped, in the middle and at the end.
        ("GET", "/static/../admin/users", Nobody, 400, None),
        ("GET", "/static/./../admin/users", Nobody, 400, None),
        ("GET", "/static/%2e%2e/admin/users", Nobody, 400, None),
        ("GET", "/static/.%2E/admin/users", Nobody, 400, None),
        ("GET", "/admin/users/..", Owner, 400, None),
        ("GET", "/static/x/..", Nobody, 400, None),
        // Encoded separators, double encoding, overlong UTF-8, NUL.
        ("GET", "/static%2f..%2fadmin/users", Nobody, 400, None),
        ("GET", "/static/..%5cadmin/users", Nobody, 400, None),
        ("GET", "/static/%252e%252e/admin/users", Nobody, 400, None),
        ("GET", "/%2561dmin/users", Member, 400, None),
        ("GET", "/static/%c0%ae%c0%ae/admin/users", Nobody, 400, None),
        ("GET", "/static/a%00b", Nobody, 400, None),
        // Public stays public when written as its rule says...
        (
            "GET",
            "/static/app.css",
            Nobody,
            OK,
            Some("/static/app.css"),
        ),
        ("GET", "/static", Nobody, OK, Some("/static")),
        // ...but another case of it is also judged as a case-sensitive app reads it: a path
        // of its own, under the default.
        ("GET", "/STATIC/app.css", Nobody, 401, None),
        (
            "GET",
            "/Static/app.css",
            Member,
            OK,
            Some("/Static/app.css"),
        ),
        // HEAD is GET for matching (RFC 9110 §9.3.2).
        ("GET", "/reports/q3", Member, 403, None),
        ("HEAD", "/reports/q3", Member, 403, None),
        ("HEAD", "/REPORTS/q3", Member, 403, None),
        ("HEAD", "/reports/q3", Owner, OK, None),
        ("HEAD", "/admin/users", Member, 403, None),
        // A method the rule does not list falls to the default.
        ("POST", "/reports/q3", Member, OK, Some("/reports/q3")),
        ("GET", "/elsewhere", Nobody, 401, None),
    ];
    let allowed = rows.iter().filter(|row| row.3 == OK).count();
    let mut forwarded = 0;
    for (method, path, who, want, upstream_path) in rows {
        let method = Method::from_bytes(method.as_bytes()).unwrap();
        let token = match who {
            Nobody => None,
            Member => Some(member.as_str()),
            Owner => Some(w.admin.as_str()),
        };
        let before = hits.load(Ordering::SeqCst);
        let (statuses, seen) = three_ways(&w, &method, path, token).await;
        for (way, status) in ["inline", "nginx", "envoy"].iter().zip(statuses) {
            assert_eq!(
                status.as_u16(),
                *want,
                "{way}: {method} {path} as {who:?}: {seen}"
            );
        }
        let reached = hits.load(Ordering::SeqCst) - before;
        assert_eq!(
            reached,
            usize::from(*want == OK),
            "{method} {path}: verify never forwards, inline forwards only what it allows"
        );
        forwarded += reached;
        if let Some(upstream_path) = upstream_path {
            assert_eq!(seen["path"], *upstream_path, "{method} {path}");
        }
    }
    assert_eq!(forwarded, allowed);
    w.finish().await;
}

/// With `policy.case_sensitive = true` (an application known to route by exact case), another
/// case of a rule's literal is simply another path.
#[tokio::test]
async fn case_sensitive_policies_match_exact_case_only() {
    let (upstream, _) = counting_echo().await;
    let rules = RULES.replace(
        "default = \"authenticated\"",
        "default = \"authenticated\"\ncase_sensitive = true",
    );
    let w = start(upstream, &rules).await;
    let (_, member) = w.member("bob").await;
    let (statuses, _) = three_ways(&w, &Method::GET, "/ADMIN/users", Some(&member)).await;
    assert_eq!(statuses, [StatusCode::OK; 3]);
    let (statuses, _) = three_ways(&w, &Method::GET, "/admin/users", Some(&member)).await;
    assert_eq!(statuses, [StatusCode::FORBIDDEN; 3]);
    w.finish().await;
}

/// Refusals say why, in Coder's body.
#[tokio::test]
async fn a_refused_path_is_a_400_in_coders_shape_naming_the_reason() {
    let (upstream, hits) = counting_echo().await;
    let w = start(upstream, RULES).await;
    for (path, reason) in [
        ("/static/..;/admin", "';'"),
        ("/static/%2e%2e/admin", "'..'"),
        ("/admin%2fx", "encoded '/'"),
        ("/a%252e", "twice"),
    ] {
        let (status, body, _) = w.call(Method::GET, path, None, None).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{path}");
        assert_eq!(body["message"], "Invalid request path.", "{path}");
        let detail = body["detail"].as_str().unwrap();
        assert!(detail.contains(reason), "{path}: {detail}");
    }
    assert_eq!(hits.load(Ordering::SeqCst), 0);
    w.finish().await;
}

/// `X-HTTP-Method-Override` and friends never reach the application (any spelling), unless
/// `upstream.danger_pass_override_headers`; forward-auth, which cannot remove them from what
/// the edge forwards, refuses a request that carries one.
#[tokio::test]
async fn override_headers_are_removed_inline_and_refused_in_forward_auth() {
    const OVERRIDES: [(&str, &str); 5] = [
        ("x-http-method-override", "DELETE"),
        ("X-HTTP-Method", "DELETE"),
        ("x_method_override", "DELETE"),
        ("X-Original-URL", "/admin/users"),
        ("X-Rewrite-URL", "/admin/users"),
    ];
    for pass in [false, true] {
        let (upstream, _) = counting_echo().await;
        let pass_key = format!("danger_pass_override_headers = {pass}");
        let w = start_with(upstream, &pass_key, RULES).await;
        let mut req = Request::builder()
            .uri("/static/page")
            .header("host", "app.test");
        for (name, value) in OVERRIDES {
            req = req.header(name, value);
        }
        let resp = send(w.sidecar.addr, req.body(empty()).unwrap()).await;
        assert_eq!(resp.status(), StatusCode::OK);
        let seen = body_json(resp).await;
        let names = seen_header_names(&seen);
        for (name, _) in OVERRIDES {
            let name = name.to_ascii_lowercase();
            assert_eq!(
                names.contains(&name),
                pass,
                "{name} with pass = {pass}: {seen}"
            );
        }
        let verify = Request::builder()
            .uri("/.portcullis/verify")
            .header("host", "portcullis.internal")
            .header("x-original-uri", "/static/page")
            .header("x-original-method", "GET")
            .header("x-http-method-override", "DELETE");
        let (status, body, _) = call_json(w.sidecar.addr, verify.body(empty()).unwrap()).await;
        if pass {
            assert_eq!(status, StatusCode::OK, "{body}");
        } else {
            assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
            assert!(body["detail"].as_str().unwrap().contains("override"));
        }
        w.finish().await;
    }
}

/// What a raw upstream received.
#[derive(Default)]
struct Recording {
    bytes: Vec<u8>,
}

/// An upstream that answers every request head with `101 Switching Protocols` to `protocol`
/// (whatever was asked) and records every byte it receives, tunnel included.
async fn switching_upstream(protocol: &'static str) -> (SocketAddr, Arc<Mutex<Recording>>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let seen = Arc::new(Mutex::new(Recording::default()));
    let record = seen.clone();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            let record = record.clone();
            tokio::spawn(async move {
                let mut buf = [0u8; 4096];
                let mut answered = false;
                while let Ok(n) = stream.read(&mut buf).await {
                    if n == 0 {
                        return;
                    }
                    record.lock().unwrap().bytes.extend_from_slice(&buf[..n]);
                    if !answered {
                        answered = true;
                        let head = format!(
                            "HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\n\
                             Upgrade: {protocol}\r\n\r\n"
                        );
                        let _ = stream.write_all(head.as_bytes()).await;
                    }
                }
            });
        }
    });
    (addr, seen)
}

/// `h2c` (and any protocol off `upstream.upgrade_protocols`) is never tunnelled: `Upgrade`,
/// `HTTP2-Settings` and their `Connection` tokens are removed, and an upstream that switches
/// anyway gets no tunnel — so no request inside one can reach it unjudged.
#[tokio::test]
async fn h2c_is_never_tunnelled_even_when_the_upstream_answers_101() {
    let (upstream, recording) = switching_upstream("h2c").await;
    let w = start(upstream, "[policy]\ndefault = \"public\"\n").await;
    let mut client = TcpStream::connect(w.sidecar.addr).await.unwrap();
    client
        .write_all(
            b"GET /page HTTP/1.1\r\nHost: app.test\r\nConnection: Upgrade, HTTP2-Settings\r\n\
              Upgrade: h2c\r\nHTTP2-Settings: AAMAAABkAAQCAAAAAAIAAAAA\r\n\r\n",
        )
        .await
        .unwrap();
    let first = bounded("the first answer", read_response(&mut client)).await;
    assert_ne!(first.status, 101, "{first:?}");
    assert_eq!(first.status, 502, "{first:?}");
    // The same connection is still an HTTP connection: a second request is judged (and
    // cleaned) like any other, never relayed raw.
    let _ = client
        .write_all(b"GET /again HTTP/1.1\r\nHost: app.test\r\nX-Forwarded-User: forged\r\n\r\n")
        .await;
    let mut rest = Vec::new();
    let _ = bounded(
        "the connection's end",
        tokio::time::timeout(
            std::time::Duration::from_secs(2),
            client.read_to_end(&mut rest),
        ),
    )
    .await;
    let seen = String::from_utf8_lossy(&recording.lock().unwrap().bytes).to_ascii_lowercase();
    assert!(seen.contains("get /page http/1.1"), "{seen}");
    assert!(!seen.contains("upgrade"), "{seen}");
    assert!(!seen.contains("http2-settings"), "{seen}");
    assert!(!seen.contains("x-forwarded-user: forged"), "{seen}");
    w.finish().await;
}

/// A WebSocket upgrade is allowed, but an upstream that switches to another protocol than the
/// one offered gets no tunnel either.
#[tokio::test]
async fn a_switch_to_a_protocol_the_client_did_not_offer_is_a_502() {
    let (upstream, recording) = switching_upstream("h2c").await;
    let w = start(upstream, "[policy]\ndefault = \"public\"\n").await;
    let got = raw(
        w.sidecar.addr,
        b"GET /ws HTTP/1.1\r\nHost: app.test\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\
          Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n",
    )
    .await;
    assert_eq!(got.status, 502, "{got:?}");
    let seen = String::from_utf8_lossy(&recording.lock().unwrap().bytes).to_ascii_lowercase();
    assert!(seen.contains("upgrade: websocket"), "{seen}");
    w.finish().await;
}

/// A TCP relay from a new port to `target` (set once the target is known).
async fn relay(target: Arc<Mutex<Option<SocketAddr>>>) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut inbound, _)) = listener.accept().await {
            let Some(to) = *target.lock().unwrap() else {
                continue;
            };
            tokio::spawn(async move {
                if let Ok(mut outbound) = TcpStream::connect(to).await {
                    let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                }
            });
        }
    });
    addr
}

/// An upstream that leads back to Portcullis: every request is answered `508` after one extra
/// hop (it carries our `Via`), and the process stays healthy.
#[tokio::test]
async fn a_forwarding_loop_ends_at_once_with_508() {
    let target = Arc::new(Mutex::new(None));
    let upstream = relay(target.clone()).await;
    let w = start(upstream, "[policy]\ndefault = \"public\"\n").await;
    *target.lock().unwrap() = Some(w.sidecar.addr);
    for _ in 0..50 {
        let (status, body, headers) = w.call(Method::GET, "/loop", None, None).await;
        assert_eq!(status, StatusCode::LOOP_DETECTED, "{body}");
        assert_eq!(body["message"], "Forwarding loop detected.");
        // The answer went through us twice: the inner hop's and the outer hop's `Via`.
        let via: Vec<_> = headers.get_all("via").iter().collect();
        assert_eq!(via.len(), 1, "{via:?}");
    }
    let health = send(w.sidecar.admin, get("admin", "/healthz")).await;
    assert_eq!(health.status(), StatusCode::OK);
    w.finish().await;
}

/// Every message Portcullis forwards carries its `Via` (RFC 9110 §7.6.3): the request, with
/// the client's protocol version and a pseudonym that names no version, and the response.
#[tokio::test]
async fn forwarded_messages_carry_via_with_a_pseudonym() {
    let (upstream, _) = counting_echo().await;
    let w = start(upstream, "[policy]\ndefault = \"public\"\n").await;
    let mut req = get("app.test", "/x");
    req.headers_mut()
        .insert("via", "1.1 edge.example".parse().unwrap());
    let resp = send(w.sidecar.addr, req).await;
    let response_via: Vec<String> = resp
        .headers()
        .get_all("via")
        .iter()
        .map(|v| v.to_str().unwrap().to_owned())
        .collect();
    let seen = body_json(resp).await;
    let via = seen_header(&seen, "via");
    assert_eq!(via.len(), 2, "{via:?}");
    assert_eq!(via[0], "1.1 edge.example");
    let ours = via[1].strip_prefix("1.1 portcullis-").expect("our entry");
    assert!(ours.chars().all(|c| c.is_ascii_hexdigit()), "{ours}");
    assert_eq!(response_via, vec![via[1].clone()]);
    w.finish().await;
}

/// The routes Portcullis serves (spec §0.5 and DESIGN §3.3), walked with every method and
/// with parameter values that name nobody: each is answered by Portcullis in Coder's body
/// shape, and nothing reaches the upstream. Paths of the application's (`/users/me/workspaces`,
/// `/workspaces`) still do.
#[tokio::test]
async fn no_owned_route_reaches_the_upstream_whatever_the_method_or_value() {
    let (upstream, hits) = counting_echo().await;
    let w = start(upstream, "").await;
    let nobody = "7f0b3a35-0000-4000-8000-000000000000";
    let routes = [
        "/auth/scopes",
        "/authcheck",
        "/users",
        "/users/first",
        "/users/authmethods",
        "/users/login",
        "/users/validate-password",
        "/users/otp/request",
        "/users/otp/change-password",
        "/users/oidc/callback",
        "/users/oauth2/github/callback",
        "/users/{user}",
        "/users/{user}/password",
        "/users/{user}/status/suspend",
        "/users/{user}/status/activate",
        "/users/{user}/roles",
        "/users/{user}/convert-login",
        "/users/{user}/keys",
        "/users/{user}/keys/tokens",
        "/users/{user}/keys/tokens/tokenconfig",
        "/users/{user}/keys/tokens/{name}",
        "/users/{user}/keys/{id}",
        "/users/{user}/keys/{id}/expire",
        "/users/{user}/keys/{id}/expire/more",
        "/organizations/{org}/members",
        "/organizations/{org}/members/{user}",
        "/organizations/{org}/members/{user}/roles",
        "/auth/unknown",
        "/users/otp",
        // Last: it ends the session the walk uses.
        "/users/logout",
    ];
    let methods = [
        "GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "QUERY",
    ];
    let values = ["me", "0", "nosuchuser", nobody];
    let mut answered = 0;
    for route in routes {
        for value in values {
            let path = format!(
                "/api/v2{}",
                route
                    .replace("{user}", value)
                    .replace("{org}", value)
                    .replace("{name}", value)
                    .replace("{id}", value)
            );
            for method in methods {
                for token in [None, Some(w.admin.as_str())] {
                    let method = Method::from_bytes(method.as_bytes()).unwrap();
                    let (status, body, _) = w
                        .call(method.clone(), &path, Some(serde_json::json!({})), token)
                        .await;
                    let what = format!("{method} {path} (token: {})", token.is_some());
                    assert_ne!(status, StatusCode::BAD_GATEWAY, "{what}: {body}");
                    assert_eq!(
                        hits.load(Ordering::SeqCst),
                        0,
                        "{what} reached the upstream"
                    );
                    if method != Method::HEAD && !status.is_success() {
                        assert!(body["message"].is_string(), "{what}: {status} {body}");
                    }
                    answered += 1;
                }
            }
        }
    }
    assert_eq!(answered, routes.len() * values.len() * methods.len() * 2);
    let admin = login_ok(w.sidecar.addr, ADMIN_EMAIL, PASSWORD).await;
    // A method a route does not serve: 405 with `Allow`.
    let (status, body, headers) = w
        .call(Method::PATCH, "/api/v2/users/me", None, Some(&admin))
        .await;
    assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED, "{body}");
    assert_eq!(headers["allow"], "GET, HEAD, DELETE");
    // A static segment wins over `{user}`, as in Coder's router.
    let (status, _, headers) = w.call(Method::GET, "/api/v2/users/login", None, None).await;
    assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(headers["allow"], "POST");
    // A path in an owned family that no route has: Coder's 404.
    let (status, body, _) = w
        .call(
            Method::GET,
            "/api/v2/users/me/keys/a/b/c",
            None,
            Some(&admin),
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(body["message"], "Route not found.");
    // Portcullis's own namespace is never forwarded either.
    let (status, _, _) = w
        .call(Method::GET, "/.portcullis/other", None, Some(&admin))
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(hits.load(Ordering::SeqCst), 0);
    // The application's routes under the prefix still reach it.
    for path in ["/api/v2/users/me/workspaces", "/api/v2/workspaces"] {
        let (status, seen, _) = w.call(Method::GET, path, None, Some(&admin)).await;
        assert_eq!(status, StatusCode::OK, "{path}: {seen}");
        assert_eq!(seen["path"], path);
    }
    assert_eq!(hits.load(Ordering::SeqCst), 2);
    w.finish().await;
}

/// `GET /users/{user}/roles` (Coder's `UserRoles`): stored site roles and the stored roles of
/// each organization, to whoever may read the user.
async fn user_roles(store_url: &str) {
    let w = World::start(store_url, "").await;
    let (bob, bob_token) = w.member("bob").await;
    let bob_id = bob["id"].as_str().unwrap();
    let (status, roles, _) = w
        .call(Method::GET, "/api/v2/users/me/roles", None, Some(&w.admin))
        .await;
    assert_eq!(status, StatusCode::OK, "{roles}");
    assert_eq!(roles["roles"], serde_json::json!(["owner"]));
    assert_eq!(roles["organization_roles"][&w.org], serde_json::json!([]));
    for who in [bob_id, "bob", "BOB"] {
        let path = format!("/api/v2/users/{who}/roles");
        let (status, roles, _) = w.call(Method::GET, &path, None, Some(&w.admin)).await;
        assert_eq!(status, StatusCode::OK, "{who}: {roles}");
        assert_eq!(roles["roles"], serde_json::json!([]));
    }
    let (status, _, _) = w
        .call(
            Method::GET,
            "/api/v2/users/me/roles",
            None,
            Some(&bob_token),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let (status, body, _) = w
        .call(
            Method::GET,
            "/api/v2/users/nosuchuser/roles",
            None,
            Some(&w.admin),
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    let (status, _, _) = w
        .call(Method::GET, "/api/v2/users/me/roles", None, None)
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    w.finish().await;
}

on_every_store!(user_roles);

/// `portcullis echo` reports the body it got: its text, or its SHA-256 and length.
#[tokio::test]
async fn echo_reports_the_body_as_text_or_digest() {
    let echo = start_echo().await;
    let post = |body: Vec<u8>| {
        Request::builder()
            .method(Method::POST)
            .uri("/b")
            .header("host", "echo.test")
            .body(full(body))
            .unwrap()
    };
    let seen = body_json(send(echo, post(b"hello".to_vec())).await).await;
    assert_eq!(seen["body"], "hello");
    assert_eq!(seen["body_bytes"], 5);
    assert_eq!(
        seen["body_sha256"],
        "2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824"
    );
    let seen = body_json(send(echo, post(vec![0xff, 0xfe])).await).await;
    assert_eq!(seen["body"], Value::Null);
    assert_eq!(seen["body_bytes"], 2);
    let big = vec![b'a'; portcullis::http::echo::MAX_BODY_TEXT + 1];
    let seen = body_json(send(echo, post(big)).await).await;
    assert_eq!(seen["body"], Value::Null);
    assert_eq!(seen["body_bytes"], 64 * 1024 + 1);
}
