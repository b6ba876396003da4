//! Request smuggling and framing probes (issue 12): raw bytes, written over plain TCP and over
//! TLS, to a Portcullis in front of the recording upstream ([`Recorder`]), which reads what
//! arrives as a strict HTTP/1.1 server would and records it byte for byte.
//!
//! Every probe is followed, in the same write, by a canary (`GET /canary`, `Connection:
//! close`). For each, the test states exactly which acceptable outcome it gets:
//! - refused ([`Target::assert_refused`]): one 4xx (or 501) answer, the connection closed, and
//!   nothing at the upstream (the canary included: after a framing error nothing more on that
//!   connection is read);
//! - forwarded ([`Target::assert_forwarded`]): exactly one well-formed request at the upstream,
//!   with the framing Portcullis read (method, target, headers, body bytes), then the canary as
//!   a request of its own — a leftover byte of the probe would have been glued to the canary's
//!   request line, which the strict upstream refuses;
//! - forwarded, then closed ([`Target::assert_forwarded_then_closed`]): both `Content-Length`
//!   and `Transfer-Encoding`, read as chunked, after which RFC 9112 §6.1 has the connection
//!   closed, so the canary is never read;
//! - judged alone ([`Target::assert_judged_alone`]): a request well framed but refused for what
//!   it asks (its host or target), after which the connection goes on and only the canary
//!   reaches the upstream.
//!
//! The modules: `framing` (Content-Length and Transfer-Encoding), `lines` (line endings,
//! obs-fold, control bytes), `chunks` (chunk sizes and extensions), `pipelining`, `h2` (HTTP/2
//! requests downgraded to the HTTP/1.1 upstream, over raw frames), `targets` (absolute-form
//! and Host), and `scanner` (h2rs, a published HTTP/2 downgrade smuggling scanner).

use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::common::*;

mod chunks;
mod framing;
mod h2;
mod lines;
mod pipelining;
mod scanner;
mod targets;

/// The route policy of every probe: `/public/**` and `/canary` need nothing, everything else a
/// session.
const POLICY: &str = "[policy]\ndefault = \"authenticated\"\n\n\
                      [[policy.route]]\npath = \"/public/**\"\npublic = true\n\n\
                      [[policy.route]]\npath = \"/canary\"\npublic = true\n";

/// Sent after every probe in the same write.
const CANARY: &str = "GET /canary HTTP/1.1\r\nHost: app.test\r\nConnection: close\r\n\r\n";

/// A byte stream to Portcullis: TCP or TLS.
trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

/// One Portcullis (plain or TLS) in front of its own recording upstream.
struct Target {
    sidecar: Sidecar,
    upstream: Recorder,
    tls: bool,
}

impl Target {
    /// A Portcullis with [`POLICY`], plain or with TLS (the test certificate A), and `extra`
    /// config at the end.
    async fn start(tls: bool, extra: &str) -> Target {
        let upstream = Recorder::start().await;
        let tls_table = if tls {
            "[server.tls]\ncert = \"a.pem\"\nkey = \"a.key\"\n"
        } else {
            ""
        };
        let config = config_with_store(
            upstream.addr,
            "memory://",
            &random_key_prefix(),
            "",
            &format!("{POLICY}\n{extra}\n{tls_table}"),
        );
        let sidecar = Sidecar::start_in(&config, &cert_file("")).await;
        Target {
            sidecar,
            upstream,
            tls,
        }
    }

    /// One plain and one TLS Portcullis.
    async fn both() -> [Target; 2] {
        [
            Target::start(false, "").await,
            Target::start(true, "").await,
        ]
    }

    fn name(&self) -> &'static str {
        if self.tls {
            "tls"
        } else {
            "tcp"
        }
    }

    /// A new connection: TCP, or TLS offering `alpn`.
    async fn connect(&self, alpn: &[&[u8]]) -> Box<dyn Io> {
        if self.tls {
            Box::new(tls_connect(self.sidecar.addr, alpn).await)
        } else {
            Box::new(
                bounded("connecting", TcpStream::connect(self.sidecar.addr))
                    .await
                    .unwrap(),
            )
        }
    }

    /// Writes `bytes` on a new HTTP/1.1 connection in one write, then reads every answer
    /// until the server closes the connection.
    async fn send(&self, bytes: &[u8]) -> Vec<RawResponse> {
        let mut io = self.connect(&[b"http/1.1"]).await;
        // A server may answer and close before reading everything.
        let _ = io.write_all(bytes).await;
        let _ = io.flush().await;
        read_until_closed(&mut io).await
    }

    /// [`Target::send`] of `probe` followed by the [`CANARY`].
    async fn probe(&self, probe: &[u8]) -> Vec<RawResponse> {
        let mut bytes = probe.to_vec();
        bytes.extend_from_slice(CANARY.as_bytes());
        self.send(&bytes).await
    }

    /// Creates the first user and logs in over this target's own transport: a session token.
    async fn session(&self) -> String {
        let first =
            format!(r#"{{"email":"{ADMIN_EMAIL}","username":"admin","password":"{PASSWORD}"}}"#);
        let answers = self.send(&api_post("/api/v2/users/first", &first)).await;
        assert_eq!(answers[0].status, 201, "{answers:?}");
        let login = format!(r#"{{"email":"{ADMIN_EMAIL}","password":"{PASSWORD}"}}"#);
        let answers = self.send(&api_post("/api/v2/users/login", &login)).await;
        assert_eq!(answers[0].status, 201, "{answers:?}");
        answers[0].json()["session_token"]
            .as_str()
            .expect("a token")
            .to_owned()
    }

    /// Asserts the refused outcome: one answer with `status`, the connection closed after it,
    /// and nothing at the upstream. `what` names the probe in failures.
    fn assert_refused(&self, what: &str, answers: &[RawResponse], status: u16) {
        let name = self.name();
        assert_eq!(answers.len(), 1, "{name} {what}: {answers:?}");
        assert_eq!(answers[0].status, status, "{name} {what}: {answers:?}");
        let seen = self.upstream.take();
        assert!(
            seen.is_empty(),
            "{name} {what}: reached the upstream: {seen:?}"
        );
    }

    /// Asserts the forwarded outcome: two answers (the probe's `200`, the canary's `200`), and
    /// exactly two requests at the upstream, the probe's then the canary. Returns the probe's
    /// request as the upstream read it.
    fn assert_forwarded(&self, what: &str, answers: &[RawResponse]) -> Recorded {
        let name = self.name();
        let statuses: Vec<u16> = answers.iter().map(|a| a.status).collect();
        assert_eq!(statuses, [200, 200], "{name} {what}: {answers:?}");
        let seen = self.upstream.take();
        assert_eq!(seen.len(), 2, "{name} {what}: {seen:?}");
        assert_canary(&seen[1]);
        seen[0].clone()
    }

    /// Asserts the outcome of a request Portcullis refuses for what it says, not for how it is
    /// framed: its answer is `status`, nothing of it reaches the upstream, and the connection
    /// goes on — the canary is answered and is all the upstream got.
    fn assert_judged_alone(&self, what: &str, answers: &[RawResponse], status: u16) {
        let name = self.name();
        let statuses: Vec<u16> = answers.iter().map(|a| a.status).collect();
        assert_eq!(statuses, [status, 200], "{name} {what}: {answers:?}");
        let seen = self.upstream.take();
        assert_eq!(seen.len(), 1, "{name} {what}: {seen:?}");
        assert_canary(&seen[0]);
    }

    /// Asserts the forwarded outcome for a request after which Portcullis must close the
    /// connection (RFC 9112 §6.1: one with both `Transfer-Encoding` and `Content-Length`): one
    /// `200`, then the close, and exactly that one request at the upstream.
    fn assert_forwarded_then_closed(&self, what: &str, answers: &[RawResponse]) -> Recorded {
        let name = self.name();
        let statuses: Vec<u16> = answers.iter().map(|a| a.status).collect();
        assert_eq!(statuses, [200], "{name} {what}: {answers:?}");
        let seen = self.upstream.take();
        assert_eq!(seen.len(), 1, "{name} {what}: {seen:?}");
        seen[0].clone()
    }
}

/// The canary arrived as itself: `GET /canary`, no body.
fn assert_canary(seen: &Recorded) {
    assert_eq!(
        (seen.method.as_str(), seen.target.as_str()),
        ("GET", "/canary"),
        "{seen:?}"
    );
    assert!(seen.body.is_empty(), "{seen:?}");
}

/// A JSON POST to the API, closing the connection after the answer.
fn api_post(path: &str, json: &str) -> Vec<u8> {
    format!(
        "POST {path} HTTP/1.1\r\nHost: app.test\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{json}",
        json.len()
    )
    .into_bytes()
}
