//! `portcullis doctor` (the real binary, issue 17) against live set-ups: a leaky one — an edge
//! that strips the dash spellings of the identity headers but passes the underscore ones,
//! straight to an upstream that anyone on this host can reach — must be flagged on both
//! counts and exit 1; Portcullis with TLS in front of an upstream that refuses what did not
//! come through it passes (exit 0).

use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};

use portcullis::store::{LoginType, UserStatus};
use portcullis::users::{NewKey, NewUser};

use crate::common::world::*;
use crate::common::*;

/// Runs `portcullis doctor`: exit code and stdout (the table).
async fn doctor(config: &Path, url: &str, token: &str, extra: &[&str]) -> (Option<i32>, String) {
    let out = bounded(
        "portcullis doctor to exit",
        command()
            .arg("doctor")
            .arg("--config")
            .arg(config)
            .args(["--url", url, "--token", token, "--reflect", "/reflect"])
            .args(extra)
            .output(),
    )
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr);
    (out.status.code(), format!("{stdout}{stderr}"))
}

/// The row of `check` in the table: its result and detail.
fn row<'a>(table: &'a str, check: &str) -> &'a str {
    table
        .lines()
        .find(|l| l.starts_with(check))
        .unwrap_or_else(|| panic!("no row {check:?} in:\n{table}"))[check.len()..]
        .trim_start()
}

/// A careless edge in front of `upstream`: it removes the identity headers spelled with `-`
/// (as `proxy_set_header X-Forwarded-User ""` would) and passes every other line as sent,
/// the `_` spellings included (nginx with `underscores_in_headers on`).
async fn underscore_edge(upstream: SocketAddr) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((client, _)) = listener.accept().await {
            tokio::spawn(async move {
                let (read, mut write_back) = client.into_split();
                let mut lines = BufReader::new(read);
                let mut head = String::new();
                loop {
                    let mut line = String::new();
                    if lines.read_line(&mut line).await.unwrap_or(0) == 0 {
                        return;
                    }
                    let name = line.split(':').next().unwrap_or_default().to_lowercase();
                    if !portcullis::headers::IDENTITY_HEADERS.contains(&name.as_str()) {
                        head.push_str(&line);
                    }
                    if line == "\r\n" {
                        break;
                    }
                }
                let mut app = TcpStream::connect(upstream).await.unwrap();
                app.write_all(head.as_bytes()).await.unwrap();
                let mut answer = Vec::new();
                let _ = app.read_to_end(&mut answer).await;
                let _ = write_back.write_all(&answer).await;
            });
        }
    });
    addr
}

#[tokio::test]
async fn doctor_flags_an_edge_that_passes_underscores_and_an_upstream_reachable_directly() {
    let echo = start_echo().await;
    let edge = underscore_edge(echo).await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("portcullis.toml");
    std::fs::write(&path, config(&http_url(echo), "", "")).unwrap();

    let (code, table) = doctor(&path, &format!("http://{edge}"), "AAAAAAAAAA-doctor", &[]).await;

    assert_eq!(code, Some(1), "{table}");
    let identity = row(&table, "identity header spellings");
    assert!(identity.starts_with("FAIL"), "{table}");
    assert!(identity.contains("X_Forwarded_User"), "{table}");
    assert!(identity.contains("x_forwarded_user"), "{table}");
    // The edge removed the dash spellings: those are not named.
    assert!(!identity.contains("X-Forwarded-User"), "{table}");
    assert!(
        row(&table, "upstream not reachable directly").starts_with("FAIL"),
        "{table}"
    );
    assert!(row(&table, "admin listener not public").starts_with("pass"));
}

/// An upstream that answers with the headers it received only what came through a
/// Portcullis (its `Via`), and `403` to anything else.
async fn guarded_echo() -> SocketAddr {
    serve(|req: Request<Incoming>| async move {
        let through = req
            .headers()
            .get_all("via")
            .iter()
            .any(|v| v.to_str().is_ok_and(|v| v.contains("portcullis-")));
        let headers: Vec<(String, String)> = req
            .headers()
            .iter()
            .map(|(n, v)| {
                (
                    n.to_string(),
                    String::from_utf8_lossy(v.as_bytes()).into_owned(),
                )
            })
            .collect();
        let body = serde_json::json!({"headers": headers, "query": req.uri().query()});
        let status = if through {
            StatusCode::OK
        } else {
            StatusCode::FORBIDDEN
        };
        let resp = Response::builder()
            .status(status)
            .body(Full::new(Bytes::from(body.to_string())))
            .unwrap();
        Ok::<_, Infallible>(resp)
    })
    .await
}

#[tokio::test]
async fn doctor_passes_portcullis_with_tls_in_front_of_an_upstream_that_refuses_the_rest() {
    let upstream = guarded_echo().await;
    let tls = format!(
        "[server.tls]\ncert = \"{}\"\nkey = \"{}\"\n",
        cert_file("a.pem").display(),
        cert_file("a.key").display()
    );
    let text = config_with_store(upstream, MEMORY, &random_key_prefix(), "", &tls);
    let sidecar = Sidecar::start(&text).await;
    let users = sidecar.app.users();
    let (user, _) = users
        .create(NewUser {
            email: "doctor@example.com".into(),
            username: "doctor".into(),
            name: String::new(),
            password: None,
            login_type: LoginType::None,
            status: UserStatus::Active,
            roles: Vec::new(),
            organization_ids: Vec::new(),
        })
        .await
        .unwrap();
    let token = users
        .issue_key(
            &user,
            NewKey {
                login_type: LoginType::Token,
                lifetime: Duration::from_secs(3600),
                scopes: Vec::new(),
                token_name: "doctor".into(),
                ip_address: String::new(),
                allow_list: Vec::new(),
                not_after: None,
            },
        )
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("portcullis.toml");
    std::fs::write(&path, &text).unwrap();
    let url = format!("https://localhost:{}", sidecar.addr.port());

    let ca = cert_file("ca.pem").display().to_string();

    let (code, table) = doctor(&path, &url, &token, &["--ca-file", &ca]).await;

    assert_eq!(code, Some(0), "{table}");
    for check in [
        "reflection endpoint",
        "identity header spellings",
        "identity headers in obs-fold",
        "X-Forwarded-* from an untrusted client",
        "session cookie and token kept from the app",
        "admin listener not public",
        "TLS (Mozilla intermediate)",
    ] {
        assert!(row(&table, check).starts_with("pass"), "{check}:\n{table}");
    }
    assert!(
        row(&table, "TLS (Mozilla intermediate)").contains("TLS13_"),
        "{table}"
    );
    // Reachable from this host, but it refuses what did not come through Portcullis.
    let direct = row(&table, "upstream not reachable directly");
    assert!(direct.starts_with("warn"), "{table}");
    assert!(direct.contains("answered 403"), "{table}");
    sidecar.shutdown().await;
}
