//! `portcullis doctor`: checks a live deployment with real requests, through Portcullis to the
//! upstream and back, for what a configuration file alone cannot show: that no spelling of an
//! identity header a client sends reaches the application, that `X-Forwarded-*` from an
//! untrusted client is replaced, that the session token never reaches the application, that the
//! upstream cannot be reached around Portcullis, that the admin listener is not on a public
//! interface, and that TLS meets Mozilla's "intermediate" profile.
//!
//! The application must expose a reflection endpoint (`--reflect`, as `portcullis echo` does
//! for every path): it answers `200` with JSON whose `headers` are the request headers it
//! received, as `[[name, value], ...]` or `{name: value}`. Every header the doctor sends carries
//! a marker value of its own, so a leak is found whatever name the header reaches the
//! application under. Requests are written as raw bytes over TCP (or TLS), so that spellings an
//! HTTP client library would normalise (underscores, duplicates, obs-fold) go out as written.
//!
//! Layer 5: it reads the config and speaks to sockets, and decides nothing Portcullis decides.

use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::ServerName;
use serde_json::Value;
use tokio::net::TcpStream;

use crate::config::{Config, CONFIG_ENV};
use crate::headers::IDENTITY_HEADERS;

mod wire;

use wire::{connect, exchange, request, talk};

/// How long one step (connect, handshake, exchange) may take.
const STEP: Duration = Duration::from_secs(5);

/// `portcullis doctor`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The config file of the deployment.
    #[arg(long, env = CONFIG_ENV)]
    pub config: PathBuf,
    /// Where clients reach Portcullis (or the edge in front of it): http://host:port or
    /// https://host:port.
    #[arg(long)]
    pub url: String,
    /// A valid session token or API key (a test user's).
    #[arg(long)]
    pub token: String,
    /// The path of the application's reflection endpoint.
    #[arg(long, default_value = "/")]
    pub reflect: String,
    /// A PEM CA bundle to trust for an https:// URL (default: the system's roots).
    #[arg(long)]
    pub ca_file: Option<PathBuf>,
}

/// A check's result.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// As it should be.
    Pass,
    /// Worth a look, not a failure.
    Warn,
    /// A hole: `doctor` exits 1.
    Fail,
}

/// One row of the table.
#[derive(Debug)]
pub struct Row {
    /// What was checked.
    pub check: &'static str,
    /// How it went.
    pub verdict: Verdict,
    /// What was seen.
    pub detail: String,
}

/// Where clients reach the deployment.
struct Target {
    host: String,
    addr: String,
    tls: Option<(tokio_rustls::TlsConnector, ServerName<'static>)>,
    roots: Arc<rustls::RootCertStore>,
}

/// A response read off the wire.
#[derive(Debug, Default)]
struct Answer {
    status: u16,
    body: Vec<u8>,
}

/// Runs every check against the deployment of `config` and prints the table; exit 1 when any
/// check fails.
pub async fn run(config: &Config, args: &Args) -> ExitCode {
    let rows = match check(config, args).await {
        Ok(rows) => rows,
        Err(e) => {
            eprintln!("doctor: {e}");
            return ExitCode::from(1);
        }
    };
    print!("{}", Table(&rows));
    if rows.iter().any(|r| r.verdict == Verdict::Fail) {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    }
}

/// Every check, in table order. `Err` when the deployment cannot be asked at all (a bad URL).
pub async fn check(config: &Config, args: &Args) -> Result<Vec<Row>, String> {
    let target = Target::new(&args.url, args.ca_file.as_deref())?;
    let marker = marker();
    let mut rows = Vec::new();
    let reflected = reflect(&target, args, &[], None).await;
    rows.push(match &reflected {
        Ok(seen) => row(
            "reflection endpoint",
            Verdict::Pass,
            format!("GET {} answered with {} headers", args.reflect, seen.len()),
        ),
        Err(e) => row("reflection endpoint", Verdict::Fail, e.clone()),
    });
    if reflected.is_ok() {
        rows.push(identity_spellings(&target, args, &marker).await);
        rows.push(obs_fold(&target, args, &marker).await);
        rows.push(forwarded(config, &target, args, &marker).await);
        rows.push(credentials(config, &target, args).await);
    }
    rows.push(upstream_direct(config, args, &marker).await);
    rows.push(admin_listener(config));
    rows.push(tls(config, &target).await);
    Ok(rows)
}

fn row(check: &'static str, verdict: Verdict, detail: impl Into<String>) -> Row {
    Row {
        check,
        verdict,
        detail: detail.into(),
    }
}

/// A value no application produces by itself.
fn marker() -> String {
    let mut bytes = [0u8; 6];
    let _ = getrandom::fill(&mut bytes);
    format!("doctor{}", hex::encode(bytes))
}

/// Every spelling of every identity header, each with a marker of its own: lower, title and
/// upper case, `_` for `-` (whole and partial), and a duplicate.
async fn identity_spellings(target: &Target, args: &Args, marker: &str) -> Row {
    let mut lines = Vec::new();
    let mut spelled = Vec::new();
    for name in IDENTITY_HEADERS {
        let title = title_case(name);
        let spellings = [
            name.to_owned(),
            title.clone(),
            name.to_ascii_uppercase(),
            name.replace('-', "_"),
            title.replace('-', "_"),
            name.replacen('-', "_", 1),
            title.clone(),
        ];
        for spelling in spellings {
            // The dot ends the marker: `-1.` is no part of `-10.`.
            let value = format!("{marker}-{}.", spelled.len());
            lines.push(format!("{spelling}: {value}"));
            spelled.push((spelling, value));
        }
    }
    let check = "identity header spellings";
    match reflect(target, args, &lines, None).await {
        Err(e) => row(check, Verdict::Fail, e),
        Ok(seen) => {
            let leaked: Vec<String> = spelled
                .iter()
                .filter(|(_, value)| seen.iter().any(|(_, v)| v.contains(value.as_str())))
                .map(|(name, _)| name.clone())
                .collect();
            if leaked.is_empty() {
                row(
                    check,
                    Verdict::Pass,
                    format!("{} spellings sent, none reached the app", spelled.len()),
                )
            } else {
                row(
                    check,
                    Verdict::Fail,
                    format!("reached the app: {}", dedup(leaked).join(", ")),
                )
            }
        }
    }
}

/// Identity headers in obs-fold continuation lines (RFC 9112 §5.2): refused, or removed.
async fn obs_fold(target: &Target, args: &Args, marker: &str) -> Row {
    let lines = [
        format!("X-Forwarded-User: {marker}-fold-a\r\n {marker}-fold-b"),
        format!("X-Doctor-Fold: x\r\n X-Forwarded-User: {marker}-fold-c"),
    ];
    let check = "identity headers in obs-fold";
    let answer = match exchange(target, &request(target, args, &args.reflect, &lines)).await {
        Ok(a) => a,
        Err(e) => return row(check, Verdict::Warn, format!("no answer: {e}")),
    };
    if !(200..300).contains(&answer.status) {
        return row(
            check,
            Verdict::Pass,
            format!("refused with {}", answer.status),
        );
    }
    if String::from_utf8_lossy(&answer.body).contains(&format!("{marker}-fold")) {
        row(
            check,
            Verdict::Fail,
            "a folded identity header reached the app",
        )
    } else {
        row(
            check,
            Verdict::Pass,
            "accepted, nothing folded reached the app",
        )
    }
}

/// `X-Forwarded-*`, `Forwarded` and `X-Real-IP` from this (untrusted) client are replaced.
async fn forwarded(config: &Config, target: &Target, args: &Args, marker: &str) -> Row {
    let check = "X-Forwarded-* from an untrusted client";
    let ip = "203.0.113.66";
    let lines = [
        format!("X-Forwarded-For: {ip}"),
        format!("X-Forwarded-Host: {marker}.invalid"),
        format!("X-Forwarded-Proto: {marker}"),
        format!("X-Forwarded-Prefix: /{marker}"),
        format!("Forwarded: for={ip};host={marker}.invalid"),
        format!("X-Real-IP: {ip}"),
    ];
    match reflect(target, args, &lines, None).await {
        Err(e) => row(check, Verdict::Fail, e),
        Ok(seen) => {
            let leaked: Vec<String> = seen
                .iter()
                .filter(|(_, v)| v.contains(ip) || v.contains(marker))
                .map(|(n, _)| n.clone())
                .collect();
            let trusted_here = local_ip(target).await.is_some_and(|me| {
                config
                    .server
                    .trusted_proxies
                    .iter()
                    .any(|n| n.contains(&me))
            });
            match (leaked.is_empty(), trusted_here) {
                (true, _) => row(check, Verdict::Pass, "replaced by what Portcullis saw"),
                (false, true) => row(
                    check,
                    Verdict::Warn,
                    format!(
                        "kept ({}): this host is in server.trusted_proxies, so that is expected",
                        dedup(leaked).join(", ")
                    ),
                ),
                (false, false) => row(
                    check,
                    Verdict::Fail,
                    format!(
                        "client values reached the app: {}",
                        dedup(leaked).join(", ")
                    ),
                ),
            }
        }
    }
}

/// The token in every place a client may carry it, and the app must see it in none.
async fn credentials(config: &Config, target: &Target, args: &Args) -> Row {
    let check = "session cookie and token kept from the app";
    let token = args.token.as_str();
    let lines = [
        format!("Cookie: coder_session_token={token}; doctor=1"),
        format!("Authorization: Bearer {token}"),
    ];
    let sep = if args.reflect.contains('?') { '&' } else { '?' };
    let path = format!("{}{sep}coder_session_token={token}", args.reflect);
    let answer = match exchange(target, &request(target, args, &path, &lines)).await {
        Ok(a) => a,
        Err(e) => return row(check, Verdict::Fail, format!("no answer: {e}")),
    };
    let secret = token.split_once('-').map_or(token, |(_, s)| s);
    let body = String::from_utf8_lossy(&answer.body);
    if !(200..300).contains(&answer.status) {
        row(
            check,
            Verdict::Fail,
            format!("the request with the token was answered {}", answer.status),
        )
    } else if body.contains(secret) {
        let verdict = if config.upstream.pass_token {
            Verdict::Warn
        } else {
            Verdict::Fail
        };
        row(
            check,
            verdict,
            "the token reached the app (upstream.pass_token must be false unless it needs it)",
        )
    } else {
        row(
            check,
            Verdict::Pass,
            "cookie, Coder-Session-Token, Bearer and query: none reached the app",
        )
    }
}

/// Connects to the configured upstream address itself: if it answers here, anyone on this
/// network can skip Portcullis and write identity headers of their choosing.
async fn upstream_direct(config: &Config, args: &Args, marker: &str) -> Row {
    let check = "upstream not reachable directly";
    let authority = &config.upstream.authority;
    let https = config.upstream.scheme == http::uri::Scheme::HTTPS;
    let port = authority.port_u16().unwrap_or(if https { 443 } else { 80 });
    let addr = format!("{}:{port}", authority.host());
    let stream = match tokio::time::timeout(STEP, TcpStream::connect(&addr)).await {
        Ok(Ok(s)) => s,
        Ok(Err(e)) => return row(check, Verdict::Pass, format!("{addr}: {e}")),
        Err(_) => return row(check, Verdict::Pass, format!("{addr}: no answer")),
    };
    if https {
        return row(
            check,
            Verdict::Warn,
            format!("{addr} accepts TCP connections from this host (TLS not probed)"),
        );
    }
    let raw = format!(
        "GET {} HTTP/1.1\r\nHost: {}\r\nX-Forwarded-User: {marker}\r\nConnection: close\r\n\r\n",
        args.reflect,
        authority.as_str()
    );
    match talk(stream, raw.as_bytes()).await {
        Ok(a) if (200..300).contains(&a.status) => row(
            check,
            Verdict::Fail,
            format!(
                "{addr} answered {} to a request that did not go through Portcullis",
                a.status
            ),
        ),
        Ok(a) => row(
            check,
            Verdict::Warn,
            format!(
                "{addr} is reachable from this host but answered {} without Portcullis",
                a.status
            ),
        ),
        Err(e) => row(
            check,
            Verdict::Warn,
            format!("{addr} accepts TCP connections from this host ({e})"),
        ),
    }
}

/// The admin listener (`/metrics`, `/readyz`, unauthenticated) on loopback, or at most a
/// private network.
fn admin_listener(config: &Config) -> Row {
    let check = "admin listener not public";
    let addr = config.server.admin_listen;
    let ip = addr.ip();
    if ip.is_loopback() {
        return row(check, Verdict::Pass, format!("{addr} (loopback)"));
    }
    if ip.is_unspecified() {
        return row(
            check,
            Verdict::Fail,
            format!("{addr} listens on every interface, public ones included"),
        );
    }
    let private = match ip {
        IpAddr::V4(v4) => v4.is_private() || v4.is_link_local(),
        IpAddr::V6(v6) => {
            (v6.segments()[0] & 0xfe00) == 0xfc00 || (v6.segments()[0] & 0xffc0) == 0xfe80
        }
    };
    if private {
        row(
            check,
            Verdict::Warn,
            format!("{addr}: a private network can read /metrics; firewall it"),
        )
    } else {
        row(check, Verdict::Fail, format!("{addr} is a public address"))
    }
}

/// Mozilla "intermediate": TLS 1.2 and 1.3 only, ECDHE with AEAD ciphers. Portcullis's
/// listener is rustls with exactly those versions and its default (AEAD, ECDHE) suites, so
/// the config passes when `[server.tls]` is set; an https:// URL is then handshaken with TLS
/// 1.3 and with TLS 1.2, and the suites agreed are checked. rustls cannot offer TLS 1.0/1.1 or
/// weak suites, so their refusal is not probed here (`tests/it/tls_scan.rs` runs sslyze).
async fn tls(config: &Config, target: &Target) -> Row {
    let check = "TLS (Mozilla intermediate)";
    if target.tls.is_none() {
        return if config.server.tls.is_some() {
            row(
                check,
                Verdict::Warn,
                "[server.tls] is set but --url is http://: the handshake was not checked",
            )
        } else {
            row(
                check,
                Verdict::Warn,
                "plain HTTP: TLS must be terminated in front of Portcullis (not checked)",
            )
        };
    }
    let mut seen = Vec::new();
    for version in [&rustls::version::TLS13, &rustls::version::TLS12] {
        match handshake(target, version).await {
            Ok(suite) => seen.push(suite),
            Err(e) => {
                return row(
                    check,
                    Verdict::Fail,
                    format!("{:?} handshake failed: {e}", version.version),
                )
            }
        }
    }
    const INTERMEDIATE: [&str; 9] = [
        "TLS13_AES_128_GCM_SHA256",
        "TLS13_AES_256_GCM_SHA384",
        "TLS13_CHACHA20_POLY1305_SHA256",
        "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256",
        "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256",
        "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384",
        "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384",
        "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256",
        "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256",
    ];
    match seen.iter().find(|s| !INTERMEDIATE.contains(&s.as_str())) {
        Some(weak) => row(check, Verdict::Fail, format!("agreed {weak}")),
        None => row(
            check,
            Verdict::Pass,
            format!("TLS 1.3 and 1.2: {}", seen.join(", ")),
        ),
    }
}

async fn handshake(
    target: &Target,
    version: &'static rustls::SupportedProtocolVersion,
) -> Result<String, String> {
    let (_, name) = target.tls.as_ref().ok_or("not TLS")?;
    let roots = target.roots.clone();
    let config = rustls::ClientConfig::builder_with_protocol_versions(&[version])
        .with_root_certificates(roots)
        .with_no_client_auth();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let tcp = connect(&target.addr).await?;
    let tls = tokio::time::timeout(STEP, connector.connect(name.clone(), tcp))
        .await
        .map_err(|_| "handshake timed out".to_owned())?
        .map_err(|e| e.to_string())?;
    let suite = tls
        .get_ref()
        .1
        .negotiated_cipher_suite()
        .ok_or("no suite agreed")?;
    Ok(format!("{:?}", suite.suite()))
}

/// GETs the reflection endpoint with `lines` added (and the token), and returns the headers
/// the application saw.
async fn reflect(
    target: &Target,
    args: &Args,
    lines: &[String],
    path: Option<&str>,
) -> Result<Vec<(String, String)>, String> {
    let path = path.unwrap_or(&args.reflect);
    let answer = exchange(target, &request(target, args, path, lines))
        .await
        .map_err(|e| format!("GET {path}: {e}"))?;
    if !(200..300).contains(&answer.status) {
        return Err(format!("GET {path} answered {}", answer.status));
    }
    let json: Value = serde_json::from_slice(&answer.body)
        .map_err(|_| format!("GET {path}: the answer is not JSON"))?;
    let pairs = match json.get("headers") {
        Some(Value::Array(list)) => list
            .iter()
            .filter_map(|pair| {
                let name = pair.get(0)?.as_str()?;
                let value = pair.get(1)?.as_str()?;
                Some((name.to_owned(), value.to_owned()))
            })
            .collect(),
        Some(Value::Object(map)) => map
            .iter()
            .map(|(k, v)| (k.clone(), v.as_str().map_or(v.to_string(), str::to_owned)))
            .collect(),
        _ => return Err(format!("GET {path}: the answer has no \"headers\"")),
    };
    Ok(pairs)
}

async fn local_ip(target: &Target) -> Option<IpAddr> {
    let tcp = connect(&target.addr).await.ok()?;
    tcp.local_addr().ok().map(|a: SocketAddr| a.ip())
}

fn title_case(name: &str) -> String {
    name.split('-')
        .map(|part| {
            let mut chars = part.chars();
            match chars.next() {
                Some(first) => first.to_ascii_uppercase().to_string() + chars.as_str(),
                None => String::new(),
            }
        })
        .collect::<Vec<_>>()
        .join("-")
}

fn dedup(mut names: Vec<String>) -> Vec<String> {
    let mut seen = std::collections::HashSet::new();
    names.retain(|n| seen.insert(n.clone()));
    names
}

/// The pass/fail table.
struct Table<'a>(&'a [Row]);

impl fmt::Display for Table<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let width = self.0.iter().map(|r| r.check.len()).max().unwrap_or(5);
        writeln!(f, "{:width$}  {:6}  DETAIL", "CHECK", "RESULT")?;
        for r in self.0 {
            let verdict = match r.verdict {
                Verdict::Pass => "pass",
                Verdict::Warn => "warn",
                Verdict::Fail => "FAIL",
            };
            writeln!(f, "{:width$}  {verdict:6}  {}", r.check, r.detail)?;
        }
        Ok(())
    }
}
