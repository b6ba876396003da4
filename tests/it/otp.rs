//! Password reset with one-time passcodes, end to end over real sockets: `POST
//! /users/otp/request` and `POST /users/otp/change-password` against a real SMTP server
//! (aiosmtpd, started per test from the `.venv-test/` that `scripts/test` installs), a webhook
//! receiver that verifies the HMAC signature, and the `log` delivery of the real binary; two
//! `portcullis serve` processes on one Redis; both store backends for the code rules.
//!
//! The Redis runs use `127.0.0.1:6379` (which `.ci/run` starts) under a random key prefix
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
        self.sidecar.shutdown().await;
        delete_redis_keys(REDIS, &self.prefix).await;
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

// === SMTP end to end ===

/// Two `portcullis serve` processes on one Redis, mail over STARTTLS with a login: the code
/// mailed by one changes the password on the other, every session on both ends, the code works
/// once, five wrong codes void a code, four do not.
#[tokio::test]
async fn a_mailed_code_resets_the_password_and_ends_sessions_on_two_processes() {
    let smtp = SmtpServer::start("starttls", Some(("portcullis", "smtp-pass"))).await;
    let dir = tempfile::tempdir().unwrap();
    let password_file = dir.path().join("smtp.pass");
    std::fs::write(&password_file, "smtp-pass\n").unwrap();
    let echo = start_echo().await;
    let prefix = random_key_prefix();
    let otp = smtp_otp(&smtp, "starttls", "").replace(
        "[otp.smtp]\n",
        &format!(
            "[otp.smtp]\nusername = \"portcullis\"\npassword_file = \"{}\"\n",
            password_file.display()
        ),
    );
    let config = config_with_store(echo, REDIS, &prefix, "cache_ttl = \"1h\"\n", &otp);
    let path = dir.path().join("portcullis.toml");
    std::fs::write(&path, &config).unwrap();
    let a = spawn_serve(&path).await;
    let b = spawn_serve(&path).await;

    first_user(a.addr).await;
    let on_a = login_ok(a.addr, EMAIL, PASSWORD).await;
    let on_b = login_ok(b.addr, EMAIL, PASSWORD).await;
    for (addr, token) in [
        (a.addr, &on_a),
        (b.addr, &on_b),
        (a.addr, &on_b),
        (b.addr, &on_a),
    ] {
        assert_eq!(proxied(addr, token).await, StatusCode::OK);
    }

    assert_eq!(request_code(a.addr, EMAIL).await, StatusCode::NO_CONTENT);
    let mail = smtp.mail(1).await;
    assert_eq!(mail["rcpt_tos"], json!([EMAIL]));
    assert_eq!(mail["mail_from"], "noreply@example.com");
    assert_eq!(mail["tls"], true, "STARTTLS was required");
    assert_eq!(mail["login"], "portcullis");
    let data = mail["data"].as_str().unwrap();
    assert!(data.contains("Subject: Your one-time passcode"), "{data}");
    let code = code_in(&mail);

    let got = change(b.addr, EMAIL, &code, NEW_PASSWORD).await;
    assert_eq!(got.0, StatusCode::NO_CONTENT, "{}", got.1);
    for addr in [a.addr, b.addr] {
        for token in [&on_a, &on_b] {
            eventually("the old session to be refused", || async {
                proxied(addr, token).await == StatusCode::UNAUTHORIZED
            })
            .await;
        }
    }
    assert_eq!(
        login(a.addr, EMAIL, PASSWORD).await.0,
        StatusCode::UNAUTHORIZED
    );
    let fresh = login_ok(a.addr, EMAIL, NEW_PASSWORD).await;
    assert_eq!(proxied(b.addr, &fresh).await, StatusCode::OK);

    // Single use, on either process.
    assert_incorrect(&change(a.addr, EMAIL, &code, "yet another passphrase").await);
    assert_incorrect(&change(b.addr, EMAIL, &code, "yet another passphrase").await);

    // Five wrong codes void the code, even spread over both processes.
    assert_eq!(request_code(b.addr, EMAIL).await, StatusCode::NO_CONTENT);
    let second = code_in(&smtp.mail(2).await);
    for i in 0..5 {
        let addr = if i % 2 == 0 { a.addr } else { b.addr };
        assert_incorrect(
            &change(
                addr,
                EMAIL,
                "0000000000000000000000000W",
                "another passphrase 1",
            )
            .await,
        );
    }
    assert_incorrect(&change(a.addr, EMAIL, &second, "another passphrase 1").await);

    // Four wrong ones leave it working.
    assert_eq!(request_code(a.addr, EMAIL).await, StatusCode::NO_CONTENT);
    let third = code_in(&smtp.mail(3).await);
    for _ in 0..4 {
        assert_incorrect(
            &change(
                b.addr,
                EMAIL,
                "0000000000000000000000000W",
                "another passphrase 2",
            )
            .await,
        );
    }
    let got = change(b.addr, EMAIL, &third, "another passphrase 2").await;
    assert_eq!(got.0, StatusCode::NO_CONTENT, "{}", got.1);
    assert_eq!(
        login_ok(a.addr, EMAIL, "another passphrase 2").await.len(),
        33
    );
    assert_eq!(proxied(a.addr, &fresh).await, StatusCode::UNAUTHORIZED);

    drop((a, b));
    delete_redis_keys(REDIS, &prefix).await;
}

/// A code past `otp.lifetime` is refused; a fresh one used in time works. Mail over SMTPS
/// (TLS from the first byte).
#[tokio::test]
async fn an_expired_code_is_refused() {
    let smtp = SmtpServer::start("tls", None).await;
    let echo = start_echo().await;
    let otp = smtp_otp(&smtp, "tls", "lifetime = \"2s\"");
    let sidecar = Sidecar::start(&config_with_store(echo, "memory://", "p:", "", &otp)).await;
    first_user(sidecar.addr).await;

    assert_eq!(
        request_code(sidecar.addr, EMAIL).await,
        StatusCode::NO_CONTENT
    );
    let mail = smtp.mail(1).await;
    assert_eq!(mail["tls"], true);
    let stale = code_in(&mail);
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert_incorrect(&change(sidecar.addr, EMAIL, &stale, NEW_PASSWORD).await);

    assert_eq!(
        request_code(sidecar.addr, EMAIL).await,
        StatusCode::NO_CONTENT
    );
    let fresh = code_in(&smtp.mail(2).await);
    let got = change(sidecar.addr, EMAIL, &fresh, NEW_PASSWORD).await;
    assert_eq!(got.0, StatusCode::NO_CONTENT, "{}", got.1);
    sidecar.shutdown().await;
}

// === the webhook, on both stores ===

/// The webhook gets `{email, code, expires_at, user_id}` signed with the secret; a new request
/// replaces the earlier code; codes work once; codes are read case-insensitively.
async fn webhook_codes(store_url: &str) {
    let w = Hooked::start(store_url, WEBHOOK_SECRET, "", "").await;
    let (sidecar, receiver, user_id) = (&w.sidecar, &w.receiver, &w.user_id);
    let token = login_ok(sidecar.addr, EMAIL, PASSWORD).await;

    let before = time::OffsetDateTime::now_utc();
    assert_eq!(
        request_code(sidecar.addr, EMAIL).await,
        StatusCode::NO_CONTENT
    );
    let first = receiver.code(EMAIL, 1).await;
    let d = receiver.deliveries()[0].clone();
    assert!(d.verified, "{d:?}");
    assert_eq!(d.path, "/hooks/otp?tenant=t1");
    assert_eq!(d.content_type, "application/json");
    assert_eq!(d.payload["user_id"], user_id.as_str());
    let fields: Vec<&String> = d.payload.as_object().unwrap().keys().collect();
    assert_eq!(fields, ["code", "email", "expires_at", "user_id"]);
    let expires = time::OffsetDateTime::parse(
        d.payload["expires_at"].as_str().unwrap(),
        &time::format_description::well_known::Rfc3339,
    )
    .unwrap();
    let lifetime = expires - before;
    assert!(
        lifetime >= time::Duration::minutes(10) && lifetime < time::Duration::minutes(11),
        "{lifetime}"
    );

    // A second request replaces the first code.
    assert_eq!(
        request_code(sidecar.addr, EMAIL).await,
        StatusCode::NO_CONTENT
    );
    let second = receiver.code(EMAIL, 2).await;
    assert_ne!(first, second);
    assert_incorrect(&change(sidecar.addr, EMAIL, &first, NEW_PASSWORD).await);
    // Another email's code is nobody's.
    assert_incorrect(&change(sidecar.addr, "bob@example.com", &second, NEW_PASSWORD).await);
    let got = change(sidecar.addr, EMAIL, &second.to_lowercase(), NEW_PASSWORD).await;
    assert_eq!(got.0, StatusCode::NO_CONTENT, "{}", got.1);
    assert_eq!(
        proxied(sidecar.addr, &token).await,
        StatusCode::UNAUTHORIZED
    );
    assert_incorrect(&change(sidecar.addr, EMAIL, &second, "another passphrase").await);

    // Five wrong codes void the current one.
    assert_eq!(
        request_code(sidecar.addr, EMAIL).await,
        StatusCode::NO_CONTENT
    );
    let third = receiver.code(EMAIL, 3).await;
    for _ in 0..5 {
        assert_incorrect(
            &change(
                sidecar.addr,
                EMAIL,
                "WRONGWRONGWRONGWRONGWRONG0",
                "another passphrase",
            )
            .await,
        );
    }
    assert_incorrect(&change(sidecar.addr, EMAIL, &third, "another passphrase").await);

    eventually("three deliveries counted", || async {
        let metrics = sidecar.metrics().await;
        metric(&metrics, "portcullis_otp_deliveries_total{result=\"sent\"}") == 3.0
    })
    .await;
    let metrics = sidecar.metrics().await;
    for (series, value) in [
        ("portcullis_otp_requests_total{result=\"issued\"}", 3.0),
        ("portcullis_otp_password_changes_total{result=\"ok\"}", 1.0),
        (
            "portcullis_otp_password_changes_total{result=\"bad_code\"}",
            9.0,
        ),
    ] {
        assert_eq!(metric(&metrics, series), value, "{series}");
    }
    w.finish().await;
}

on_both_stores!(webhook_codes => webhook_codes_memory, webhook_codes_redis);

/// A correct code does not lose to itself: of 10 concurrent changes with the one good code,
/// exactly one wins and the others are refused, without voiding anything. Only wrong codes
/// count towards the limit: right codes that change nothing (the current password) use up no
/// attempt, and five wrong ones still void the code.
async fn only_wrong_codes_count(store_url: &str) {
    let w = Hooked::start(store_url, WEBHOOK_SECRET, "", "").await;
    let addr = w.sidecar.addr;
    const WRONG: &str = "WRONGWRONGWRONGWRONGWRONG0";

    assert_eq!(request_code(addr, EMAIL).await, StatusCode::NO_CONTENT);
    let code = w.receiver.code(EMAIL, 1).await;
    let racers: Vec<_> = (0..10)
        .map(|_| {
            let code = code.clone();
            tokio::spawn(async move { change(addr, EMAIL, &code, NEW_PASSWORD).await })
        })
        .collect();
    let mut won = 0;
    for racer in racers {
        let got = racer.await.unwrap();
        if got.0 == StatusCode::NO_CONTENT {
            won += 1;
        } else {
            assert_incorrect(&got);
        }
    }
    assert_eq!(won, 1, "exactly one of the 10 changes wins");
    login_ok(addr, EMAIL, NEW_PASSWORD).await;
    assert_incorrect(&change(addr, EMAIL, &code, "another passphrase").await);

    // Four wrong codes, then the right one six times with the current password (refused, the
    // code kept): the right code still works.
    assert_eq!(request_code(addr, EMAIL).await, StatusCode::NO_CONTENT);
    let code = w.receiver.code(EMAIL, 2).await;
    for _ in 0..4 {
        assert_incorrect(&change(addr, EMAIL, WRONG, "another passphrase").await);
    }
    for _ in 0..6 {
        let got = change(addr, EMAIL, &code, NEW_PASSWORD).await;
        assert_eq!(got.0, StatusCode::BAD_REQUEST, "{}", got.1);
        assert_eq!(got.1["message"], "New password cannot match old password.");
    }
    let got = change(addr, EMAIL, &code, "another passphrase").await;
    assert_eq!(got.0, StatusCode::NO_CONTENT, "{}", got.1);

    // Five wrong codes void the code.
    assert_eq!(request_code(addr, EMAIL).await, StatusCode::NO_CONTENT);
    let code = w.receiver.code(EMAIL, 3).await;
    for _ in 0..5 {
        assert_incorrect(&change(addr, EMAIL, WRONG, "a third passphrase").await);
    }
    assert_incorrect(&change(addr, EMAIL, &code, "a third passphrase").await);
    w.finish().await;
}

on_both_stores!(only_wrong_codes_count =>
    one_of_ten_parallel_changes_with_a_good_code_wins_on_memory,
    one_of_ten_parallel_changes_with_a_good_code_wins_on_redis
);

/// A receiver with another secret refuses the deliveries (its check is real); Portcullis
/// counts them failed and still answers 204.
#[tokio::test]
async fn a_receiver_with_another_secret_refuses_the_signature() {
    let w = Hooked::start("memory://", "not-the-receivers-secret", "", "").await;
    let (sidecar, receiver) = (&w.sidecar, &w.receiver);
    assert_eq!(
        request_code(sidecar.addr, EMAIL).await,
        StatusCode::NO_CONTENT
    );
    eventually("the failed delivery to be counted", || async {
        metric(
            &sidecar.metrics().await,
            "portcullis_otp_deliveries_total{result=\"failed\"}",
        ) == 1.0
    })
    .await;
    let got = receiver.deliveries();
    assert_eq!(got.len(), 1);
    assert!(!got[0].verified);
    w.finish().await;
}

// === unknown emails, the per-email limit, failures ===

/// Medians of 200 `otp/request`s for [`EMAIL`] and 200 for unknown emails, interleaved on
/// one connection; every answer must be 204.
async fn median_request_times(addr: SocketAddr) -> (Duration, Duration) {
    let mut conn = h1(addr).await;
    let (mut known, mut unknown) = (Vec::new(), Vec::new());
    for i in 0..200 {
        for (email, times) in [
            (EMAIL.to_owned(), &mut known),
            (format!("nobody-{i}@example.com"), &mut unknown),
        ] {
            let req = api_request(
                Method::POST,
                "/api/v2/users/otp/request",
                Some(&json!({ "email": email })),
                None,
            );
            let started = Instant::now();
            let resp = bounded("an otp request", conn.send_request(req))
                .await
                .unwrap();
            let status = resp.status();
            resp.into_body().collect().await.unwrap();
            times.push(started.elapsed());
            assert_eq!(status, StatusCode::NO_CONTENT, "{email}");
        }
    }
    let median = |mut v: Vec<Duration>| {
        v.sort();
        v[v.len() / 2]
    };
    (median(known), median(unknown))
}

/// Unknown emails get the same 204 and nothing is delivered. Reports the median times of
/// requests for a known and for unknown emails on Redis, with the webhook delivery (which
/// runs on the same single-threaded test runtime as the server and the receiver, so its work
/// lands between requests) and with no delivery (the handler's own work alone); asserts
/// nothing about time.
#[tokio::test]
async fn unknown_emails_get_204_and_no_delivery_and_the_timing_is_reported() {
    let unlimited = "[rate_limit]\nlogin_per_minute = 0\n";
    let w = Hooked::start(REDIS, WEBHOOK_SECRET, "requests_per_email = 0", unlimited).await;
    let (sidecar, receiver) = (&w.sidecar, &w.receiver);
    let (known, unknown) = median_request_times(sidecar.addr).await;
    println!(
        "otp/request median of 200, Redis, webhook delivery: known email {known:?}, unknown email {unknown:?} (reported, not asserted)"
    );

    eventually("200 deliveries for the known email", || async {
        receiver.count_for(EMAIL) == 200
    })
    .await;
    assert_eq!(
        receiver.deliveries().len(),
        200,
        "an unknown email got a delivery"
    );
    let metrics = sidecar.metrics().await;
    assert_eq!(
        metric(&metrics, "portcullis_otp_requests_total{result=\"issued\"}"),
        200.0
    );
    assert_eq!(
        metric(
            &metrics,
            "portcullis_otp_requests_total{result=\"unknown\"}"
        ),
        200.0
    );
    w.finish().await;

    let echo = start_echo().await;
    let prefix = random_key_prefix();
    let extra = format!("[otp]\nrequests_per_email = 0\n{unlimited}");
    let sidecar = Sidecar::start(&config_with_store(echo, REDIS, &prefix, "", &extra)).await;
    first_user(sidecar.addr).await;
    let (known, unknown) = median_request_times(sidecar.addr).await;
    println!(
        "otp/request median of 200, Redis, no delivery: known email {known:?}, unknown email {unknown:?} (reported, not asserted)"
    );
    let metrics = sidecar.metrics().await;
    assert_eq!(
        metric(
            &metrics,
            "portcullis_otp_deliveries_total{result=\"unconfigured\"}"
        ),
        200.0
    );
    sidecar.shutdown().await;
    delete_redis_keys(REDIS, &prefix).await;
}

/// The fourth request for one email within `otp.request_window` is answered 204 but sends
/// nothing and leaves the third code in place; other emails are not affected.
#[tokio::test]
async fn the_fourth_request_for_an_email_within_the_window_sends_nothing() {
    let w = Hooked::start("memory://", WEBHOOK_SECRET, "", "").await;
    let (sidecar, receiver) = (&w.sidecar, &w.receiver);

    for _ in 0..4 {
        assert_eq!(
            request_code(sidecar.addr, EMAIL).await,
            StatusCode::NO_CONTENT
        );
    }
    let third = receiver.code(EMAIL, 3).await;
    let metrics = sidecar.metrics().await;
    assert_eq!(
        metric(&metrics, "portcullis_otp_requests_total{result=\"issued\"}"),
        3.0
    );
    assert_eq!(
        metric(
            &metrics,
            "portcullis_otp_requests_total{result=\"limited\"}"
        ),
        1.0
    );
    eventually("the three deliveries to be counted", || async {
        metric(
            &sidecar.metrics().await,
            "portcullis_otp_deliveries_total{result=\"sent\"}",
        ) == 3.0
    })
    .await;
    assert_eq!(receiver.count_for(EMAIL), 3);
    // The limit is per address, case-insensitively, and counts unknown ones the same way.
    assert_eq!(
        request_code(sidecar.addr, "ALICE@example.com").await,
        StatusCode::NO_CONTENT
    );
    for _ in 0..4 {
        assert_eq!(
            request_code(sidecar.addr, "nobody@example.com").await,
            StatusCode::NO_CONTENT
        );
    }
    let metrics = sidecar.metrics().await;
    assert_eq!(
        metric(
            &metrics,
            "portcullis_otp_requests_total{result=\"limited\"}"
        ),
        3.0
    );
    assert_eq!(
        metric(
            &metrics,
            "portcullis_otp_requests_total{result=\"unknown\"}"
        ),
        3.0
    );
    assert_eq!(receiver.count_for(EMAIL), 3);
    let got = change(sidecar.addr, EMAIL, &third, NEW_PASSWORD).await;
    assert_eq!(got.0, StatusCode::NO_CONTENT, "{}", got.1);
    w.finish().await;
}

/// A receiver that is down, one that answers 500, and one that never answers: each request is
/// still 204, and each delivery is counted failed or timed out.
#[tokio::test]
async fn failed_and_slow_deliveries_are_counted_and_never_revealed() {
    let dir = tempfile::tempdir().unwrap();
    let key = secret_file(dir.path(), WEBHOOK_SECRET);
    let broken = Receiver::start(WEBHOOK_SECRET, StatusCode::INTERNAL_SERVER_ERROR).await;
    let silent = serve(|_req: Request<Incoming>| async {
        tokio::time::sleep(Duration::from_secs(3600)).await;
        Ok::<_, Infallible>(Response::new(Full::new(Bytes::new())))
    })
    .await;
    for (target, result) in [
        (dead_port(), "failed"),
        (broken.addr, "failed"),
        (silent, "timeout"),
    ] {
        let echo = start_echo().await;
        let otp = webhook_otp(target, &key, "delivery_timeout = \"300ms\"");
        let sidecar = Sidecar::start(&config_with_store(echo, "memory://", "p:", "", &otp)).await;
        first_user(sidecar.addr).await;
        assert_eq!(
            request_code(sidecar.addr, EMAIL).await,
            StatusCode::NO_CONTENT
        );
        let series = format!("portcullis_otp_deliveries_total{{result=\"{result}\"}}");
        eventually("the delivery outcome to be counted", || async {
            metric(&sidecar.metrics().await, &series) == 1.0
        })
        .await;
        let metrics = sidecar.metrics().await;
        assert_eq!(
            metric(&metrics, "portcullis_otp_deliveries_total{result=\"sent\"}"),
            0.0
        );
        assert_eq!(
            metric(&metrics, "portcullis_otp_requests_total{result=\"issued\"}"),
            1.0
        );
        sidecar.shutdown().await;
    }
    assert_eq!(broken.deliveries().len(), 1);
}

// === checks and messages ===

/// Coder's order of checks and its messages (spec §4.2), and the validation of both bodies.
#[tokio::test]
async fn change_password_checks_in_coders_order_with_coders_messages() {
    let w = Hooked::start("memory://", WEBHOOK_SECRET, "", "").await;
    let (sidecar, receiver) = (&w.sidecar, &w.receiver);
    let addr = sidecar.addr;

    let (status, body) = post(addr, "/users/otp/request", json!({})).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(body["message"], "Validation failed.");
    assert_eq!(body["validations"][0]["field"], "email");
    let (status, body) = post(addr, "/users/otp/request", json!({"email": "not-an-email"})).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(
        body["validations"][0]["detail"],
        "Validation failed for tag \"email\" with value: \"not-an-email\""
    );
    let (status, body, _) = call_json(
        addr,
        request(
            Method::POST,
            "app.test",
            "/api/v2/users/otp/request",
            full("{"),
        ),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(body["message"], "Request body must be valid JSON.");

    let (status, body) = post(addr, "/users/otp/change-password", json!({})).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(body["message"], "Validation failed.");
    assert_eq!(
        validation_fields(&body),
        ["email", "password", "one_time_passcode"]
    );

    assert_eq!(request_code(addr, EMAIL).await, StatusCode::NO_CONTENT);
    let code = receiver.code(EMAIL, 1).await;
    // A weak password is refused before the code is looked at, even with a wrong code.
    for c in [code.as_str(), "WRONG"] {
        let (status, body) = change(addr, EMAIL, c, "password").await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
        assert_eq!(body["message"], "Invalid password.");
        assert_eq!(body["validations"][0]["field"], "password");
        assert!(body["validations"][0]["detail"]
            .as_str()
            .unwrap()
            .starts_with("insecure password"));
    }
    assert_incorrect(&change(addr, EMAIL, "WRONG", NEW_PASSWORD).await);
    assert_incorrect(&change(addr, "nobody@example.com", &code, NEW_PASSWORD).await);
    // The right code with the current password: refused, and the code is not used up.
    let (status, body) = change(addr, EMAIL, &code, PASSWORD).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(body["message"], "New password cannot match old password.");
    let got = change(addr, EMAIL, &code, NEW_PASSWORD).await;
    assert_eq!(got.0, StatusCode::NO_CONTENT, "{}", got.1);
    w.finish().await;
}

/// With `disable_password_auth`, both endpoints answer 403 with Coder's message.
#[tokio::test]
async fn both_endpoints_refuse_when_password_auth_is_disabled() {
    let echo = start_echo().await;
    let toml = config_with_store(
        echo,
        "memory://",
        "p:",
        "",
        "[otp]\ndelivery = \"log\"\ndanger_log_codes = true\n",
    )
    .replace(
        "[passwords]\n",
        "[passwords]\ndisable_password_auth = true\n",
    );
    let sidecar = Sidecar::start(&toml).await;
    for (path, body) in [
        ("/users/otp/request", json!({"email": EMAIL})),
        (
            "/users/otp/change-password",
            json!({"email": EMAIL, "password": NEW_PASSWORD, "one_time_passcode": "X"}),
        ),
    ] {
        let (status, body) = post(sidecar.addr, path, body).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{path}");
        assert_eq!(body["message"], "Password authentication is disabled.");
    }
    sidecar.shutdown().await;
}

/// Both endpoints count in the login group's per-IP limit with the login itself.
#[tokio::test]
async fn both_endpoints_count_in_the_login_rate_limit() {
    let echo = start_echo().await;
    let sidecar = Sidecar::start(&config_with_store(
        echo,
        "memory://",
        "p:",
        "",
        "[rate_limit]\nlogin_per_minute = 3\n",
    ))
    .await;
    let addr = sidecar.addr;
    assert_eq!(request_code(addr, EMAIL).await, StatusCode::NO_CONTENT);
    assert_incorrect(&change(addr, EMAIL, "WRONG", NEW_PASSWORD).await);
    assert_eq!(
        login(addr, EMAIL, PASSWORD).await.0,
        StatusCode::UNAUTHORIZED
    );
    for (path, body) in [
        ("/users/otp/request", json!({"email": EMAIL})),
        (
            "/users/otp/change-password",
            json!({"email": EMAIL, "password": NEW_PASSWORD, "one_time_passcode": "X"}),
        ),
    ] {
        let (status, body) = post(addr, path, body).await;
        assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "{path}: {body}");
        assert_eq!(
            body["message"],
            "You've been rate limited for sending more than 3 requests in 1m0s."
        );
    }
    sidecar.shutdown().await;
}

// === the log delivery and no delivery, in the real binary ===

/// `delivery = "log"` with `danger_log_codes`: the code is in the log at WARN and works;
/// without any delivery, start-up warns that password reset is unavailable and a request is
/// still 204; `check-config` refuses `log` without `danger_log_codes`, naming the key.
#[tokio::test]
async fn the_log_delivery_writes_a_working_code_and_no_delivery_warns_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let echo = start_echo().await;
    let write = |name: &str, otp: &str| {
        let path = dir.path().join(name);
        std::fs::write(&path, config_with_store(echo, "memory://", "p:", "", otp)).unwrap();
        path
    };

    let refused = write("refused.toml", "[otp]\ndelivery = \"log\"\n");
    let out = command()
        .args(["check-config", "--config"])
        .arg(&refused)
        .output()
        .await
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("otp.delivery") && stderr.contains("danger_log_codes"),
        "{stderr}"
    );

    let logged = spawn_serve(&write(
        "log.toml",
        "[otp]\ndelivery = \"log\"\ndanger_log_codes = true\n",
    ))
    .await;
    first_user(logged.addr).await;
    assert_eq!(
        request_code(logged.addr, EMAIL).await,
        StatusCode::NO_CONTENT
    );
    let marker = "one-time passcode (otp.delivery";
    eventually("the code in the log", || async {
        logged.log().contains(marker)
    })
    .await;
    let log = logged.log();
    let line = log.lines().find(|l| l.contains(marker)).unwrap();
    assert!(line.contains("WARN"), "{line}");
    let code = line[line.find("code=").unwrap() + 5..]
        .split_whitespace()
        .next()
        .unwrap()
        .trim_matches('"')
        .to_owned();
    let got = change(logged.addr, EMAIL, &code, NEW_PASSWORD).await;
    assert_eq!(got.0, StatusCode::NO_CONTENT, "{}", got.1);

    let silent = spawn_serve(&write("none.toml", "")).await;
    assert!(
        silent.log().contains("password reset is unavailable"),
        "{}",
        silent.log()
    );
    first_user(silent.addr).await;
    assert_eq!(
        request_code(silent.addr, EMAIL).await,
        StatusCode::NO_CONTENT
    );
    let resp = send(silent.admin, get("admin.test", "/metrics")).await;
    let metrics = body_string(resp).await;
    assert_eq!(
        metric(
            &metrics,
            "portcullis_otp_deliveries_total{result=\"unconfigured\"}"
        ),
        1.0
    );
}
