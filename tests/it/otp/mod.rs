//! Password reset with one-time passcodes, end to end over real sockets: `POST
//! /users/otp/request` and `POST /users/otp/change-password` against a real SMTP server
//! (aiosmtpd, started per test from the `.venv-test/` that `scripts/test` installs), a webhook
//! receiver that verifies the HMAC signature, and the `log` delivery of the real binary; two
//! `portcullis serve` processes on one Redis; every store for the code rules.
//!
//! The Redis runs use the servers `scripts/test` starts, under a random key prefix
//! each, and fail loudly when it does not answer.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use hmac::{Hmac, Mac};
use http::{Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use serde_json::{json, Value};
use sha2::Sha256;
use tokio::io::{AsyncBufReadExt, BufReader};

use crate::common::*;

const NEW_PASSWORD: &str = "a brand new passphrase";
const EMAIL: &str = "alice@example.com";
const WEBHOOK_SECRET: &str = "webhook-secret-for-tests";
const INCORRECT: &str = "Incorrect email or one-time passcode.";

// === the API ===

async fn post(addr: SocketAddr, path: &str, body: Value) -> (StatusCode, Value) {
    let (status, value, _) = call_json(
        addr,
        api_request(Method::POST, &format!("/api/v2{path}"), Some(&body), None),
    )
    .await;
    (status, value)
}

/// Creates the first user (an owner) with [`EMAIL`] and [`PASSWORD`].
async fn first_user(addr: SocketAddr) -> String {
    let (status, body) = post(
        addr,
        "/users/first",
        json!({"email": EMAIL, "username": "alice", "password": PASSWORD}),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    body["user_id"].as_str().expect("user_id").to_owned()
}

/// The status of a proxied request carrying `token` (the policy is `authenticated`).
async fn proxied(addr: SocketAddr, token: &str) -> StatusCode {
    call_json(addr, api_request(Method::GET, "/app", None, Some(token)))
        .await
        .0
}

async fn request_code(addr: SocketAddr, email: &str) -> StatusCode {
    let (status, body) = post(addr, "/users/otp/request", json!({ "email": email })).await;
    assert!(
        status != StatusCode::NO_CONTENT || body == Value::String(String::new()),
        "a 204 with a body: {body}"
    );
    status
}

async fn change(addr: SocketAddr, email: &str, code: &str, password: &str) -> (StatusCode, Value) {
    post(
        addr,
        "/users/otp/change-password",
        json!({"email": email, "one_time_passcode": code, "password": password}),
    )
    .await
}

fn assert_incorrect(got: &(StatusCode, Value)) {
    assert_eq!(got.0, StatusCode::BAD_REQUEST, "{}", got.1);
    assert_eq!(got.1["message"], INCORRECT, "{}", got.1);
}

// === a webhook receiver ===

/// An HTTP server that takes webhook POSTs, checks `X-Portcullis-Signature` against
/// HMAC-SHA256 of the body under its secret (constant-time), answers `status` to good ones
/// and 401 to badly signed ones, and keeps every delivery it saw.
struct Receiver {
    addr: SocketAddr,
    got: Arc<Mutex<Vec<Delivery>>>,
}

#[derive(Clone, Debug)]
struct Delivery {
    payload: Value,
    verified: bool,
    path: String,
    content_type: String,
}

impl Receiver {
    async fn start(secret: &'static str, status: StatusCode) -> Receiver {
        let got = Arc::new(Mutex::new(Vec::new()));
        let kept = got.clone();
        let addr = serve(move |req: Request<Incoming>| {
            let kept = kept.clone();
            async move {
                let signature = req
                    .headers()
                    .get("x-portcullis-signature")
                    .map(|v| v.as_bytes().to_vec());
                let content_type = req
                    .headers()
                    .get("content-type")
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or_default()
                    .to_owned();
                let path = req.uri().to_string();
                let body = req.into_body().collect().await.unwrap().to_bytes();
                let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).unwrap();
                mac.update(&body);
                let verified = signature
                    .as_deref()
                    .and_then(|s| s.strip_prefix(b"sha256="))
                    .and_then(|hex_sig| hex::decode(hex_sig).ok())
                    .is_some_and(|sig| mac.verify_slice(&sig).is_ok());
                kept.lock().unwrap().push(Delivery {
                    payload: serde_json::from_slice(&body).expect("the webhook body is JSON"),
                    verified,
                    path,
                    content_type,
                });
                let status = if verified {
                    status
                } else {
                    StatusCode::UNAUTHORIZED
                };
                Ok::<_, Infallible>(
                    Response::builder()
                        .status(status)
                        .body(Full::new(Bytes::new()))
                        .unwrap(),
                )
            }
        })
        .await;
        Receiver { addr, got }
    }

    fn deliveries(&self) -> Vec<Delivery> {
        self.got.lock().unwrap().clone()
    }

    fn count_for(&self, email: &str) -> usize {
        self.deliveries()
            .iter()
            .filter(|d| d.payload["email"] == email)
            .count()
    }

    /// Once `n` deliveries to `email` have arrived, the code of the newest of them (the
    /// latest `expires_at`): deliveries start after a random delay, so they may arrive out of
    /// order.
    async fn code(&self, email: &str, n: usize) -> String {
        eventually("the webhook delivery", || async {
            self.count_for(email) >= n
        })
        .await;
        let d = self
            .deliveries()
            .into_iter()
            .filter(|d| d.payload["email"] == email)
            .max_by_key(|d| d.payload["expires_at"].as_str().unwrap().to_owned())
            .unwrap();
        assert!(d.verified, "badly signed delivery: {d:?}");
        d.payload["code"].as_str().unwrap().to_owned()
    }
}

/// A Portcullis whose codes go to a [`Receiver`] (checking [`WEBHOOK_SECRET`]), with the first
/// user ([`EMAIL`]) created.
struct Hooked {
    sidecar: Sidecar,
    receiver: Receiver,
    prefix: String,
    user_id: String,
    _dir: tempfile::TempDir,
}

impl Hooked {
    /// Portcullis signs with `signed_with`; `otp` adds lines to `[otp]`, `extra` more TOML.
    async fn start(store_url: &str, signed_with: &str, otp: &str, extra: &str) -> Hooked {
        let receiver = Receiver::start(WEBHOOK_SECRET, StatusCode::NO_CONTENT).await;
        let dir = tempfile::tempdir().unwrap();
        let key = secret_file(dir.path(), signed_with);
        let echo = start_echo().await;
        let prefix = random_key_prefix();
        let toml = format!("{}\n{extra}", webhook_otp(receiver.addr, &key, otp));
        let sidecar = Sidecar::start(&config_with_store(echo, store_url, &prefix, "", &toml)).await;
        let user_id = first_user(sidecar.addr).await;
        Hooked {
            sidecar,
            receiver,
            prefix,
            user_id,
            _dir: dir,
        }
    }

    async fn finish(self) {
        let url = self.sidecar.store_url();
        self.sidecar.shutdown().await;
        delete_redis_keys(&url, &self.prefix).await;
    }
}

/// `[otp]` for a webhook to `receiver` signed with the secret in `secret_file`, plus `extra`
/// lines in `[otp]`.
fn webhook_otp(receiver: SocketAddr, secret_file: &Path, extra: &str) -> String {
    format!(
        "[otp]\ndelivery = \"webhook\"\n{extra}\n\
         [otp.webhook]\nurl = \"http://{receiver}/hooks/otp?tenant=t1\"\nsecret_file = \"{}\"\n",
        secret_file.display()
    )
}

fn secret_file(dir: &Path, secret: &str) -> PathBuf {
    let path = dir.join("webhook.key");
    std::fs::write(&path, format!("{secret}\n")).unwrap();
    path
}

// === a real SMTP server ===

/// `tests/smtp/server.py` (aiosmtpd) on a free port, writing each message it accepts as a JSON
/// file in a temporary folder. Killed when dropped.
struct SmtpServer {
    port: u16,
    maildir: tempfile::TempDir,
    _child: tokio::process::Child,
}

impl SmtpServer {
    /// `tls`: `none`, `starttls` or `tls` (the test certificate for `localhost`); `user`:
    /// credentials it requires.
    async fn start(tls: &str, user: Option<(&str, &str)>) -> SmtpServer {
        let root = Path::new(env!("CARGO_MANIFEST_DIR"));
        let python = root.join(".venv-test/bin/python");
        assert!(
            python.exists(),
            "{} is missing: run scripts/test, which installs the SMTP test server \
             (tests/smtp/requirements.txt) — these tests never skip",
            python.display()
        );
        let maildir = tempfile::tempdir().unwrap();
        let port = free_port();
        let mut cmd = tokio::process::Command::new(python);
        cmd.arg(root.join("tests/smtp/server.py"))
            .args(["--port", &port.to_string(), "--tls", tls])
            .arg("--maildir")
            .arg(maildir.path())
            .arg("--cert")
            .arg(cert_file("a.pem"))
            .arg("--key")
            .arg(cert_file("a.key"));
        if let Some((u, p)) = user {
            cmd.args(["--user", u, "--password", p]);
        }
        let mut child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("python runs");
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let first = bounded("the SMTP server to start", lines.next_line()).await;
        assert_eq!(first.unwrap().as_deref(), Some("ready"));
        SmtpServer {
            port,
            maildir,
            _child: child,
        }
    }

    fn mails(&self) -> Vec<Value> {
        let mut found: Vec<(std::time::SystemTime, Value)> = std::fs::read_dir(self.maildir.path())
            .unwrap()
            .filter_map(|e| e.ok())
            .filter(|e| e.path().extension().is_some_and(|x| x == "json"))
            .map(|e| {
                let modified = e.metadata().unwrap().modified().unwrap();
                let text = std::fs::read_to_string(e.path()).unwrap();
                (modified, serde_json::from_str(&text).unwrap())
            })
            .collect();
        found.sort_by_key(|(t, _)| *t);
        found.into_iter().map(|(_, v)| v).collect()
    }

    /// The `n`th mail (1-based), waiting for it.
    async fn mail(&self, n: usize) -> Value {
        eventually("a mail to arrive", || async { self.mails().len() >= n }).await;
        self.mails()[n - 1].clone()
    }
}

/// The code in a mail's text: the 26-symbol word after "passcode is:".
fn code_in(mail: &Value) -> String {
    let data = mail["data"].as_str().unwrap();
    let after = &data[data.find("passcode is:").expect("the code line") + 12..];
    let code = after.split_whitespace().next().unwrap().to_owned();
    assert_eq!(code.len(), 26, "{data}");
    code
}

fn smtp_otp(server: &SmtpServer, tls: &str, extra: &str) -> String {
    format!(
        "[otp]\ndelivery = \"smtp\"\n{extra}\n\
         [otp.smtp]\nhost = \"localhost\"\nport = {}\ntls = \"{tls}\"\n\
         from = \"Portcullis <noreply@example.com>\"\nca_file = \"{}\"\n",
        server.port,
        cert_file("ca.pem").display()
    )
}

mod checks;
mod limits;
mod log_delivery;
mod smtp;
mod webhook;
