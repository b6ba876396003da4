//! The test's OpenID Connect provider (`tests/oidc/provider.mjs`, the `oidc-provider`
//! package on Node.js, installed in `tests/oidc/node_modules` by `scripts/test`) and a
//! browser-like client that keeps cookies and follows redirects.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::Stdio;

use http::header::{COOKIE, HOST, LOCATION, SET_COOKIE};
use http::{Method, Request, StatusCode, Uri};
use serde_json::Value;
use tokio::io::{AsyncBufReadExt, BufReader};

use crate::common::{body_string, bounded, empty, full, send, TestBody};

/// The client registered with every test provider.
pub const CLIENT_ID: &str = "portcullis";
/// Its secret.
pub const CLIENT_SECRET: &str = "portcullis-secret";

/// How a test provider is set up.
pub struct Options {
    /// Account id → claims.
    pub accounts: Value,
    /// Lifetime of the access tokens it issues, in seconds, until
    /// [`Provider::set_access_token_ttl`].
    pub access_token_ttl: u64,
    /// Shift of its clock, in seconds.
    pub clock_skew: i64,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            accounts: serde_json::json!({}),
            access_token_ttl: 3600,
            clock_skew: 0,
        }
    }
}

/// A running provider, killed (by its PID, through tokio's `kill_on_drop`) when dropped.
pub struct Provider {
    /// Its issuer URL, `http://127.0.0.1:PORT`.
    pub issuer: String,
    /// Its address.
    pub addr: SocketAddr,
    options: Options,
    child: tokio::process::Child,
}

impl Provider {
    /// Starts one and waits until it serves.
    pub async fn start(options: Options) -> Provider {
        let (child, port) = spawn(&options, 0).await;
        Provider {
            issuer: format!("http://127.0.0.1:{port}"),
            addr: SocketAddr::from(([127, 0, 0, 1], port)),
            options,
            child,
        }
    }

    /// Restarts it on the same port (the same issuer) with `accounts`: it then signs with a
    /// new key under a new key id, and has forgotten its sessions and grants.
    pub async fn restart(&mut self, accounts: Value) {
        self.child.kill().await.expect("the provider is killed");
        self.options.accounts = accounts;
        let (child, port) = spawn(&self.options, self.addr.port()).await;
        assert_eq!(port, self.addr.port());
        self.child = child;
    }

    /// The key id it signs with now (the first of its key set).
    pub async fn signing_kid(&self) -> String {
        self.get_json("/jwks").await["keys"][0]["kid"]
            .as_str()
            .expect("a key id")
            .to_owned()
    }

    /// Makes the ID token of every later refresh answer `mode`: `other-sub`, `bad-signature`
    /// or `none` (untouched); see provider.mjs.
    pub async fn tamper_refresh_id_tokens(&self, mode: &str) {
        self.post(&format!("/test/refresh-id-token/{mode}")).await;
    }

    /// `[oidc]` lines for Portcullis to use this provider, plus `extra` lines.
    pub fn config(&self, extra: &str) -> String {
        format!(
            "[oidc]\nissuer = \"{}\"\nclient_id = \"{CLIENT_ID}\"\nclient_secret = \"{CLIENT_SECRET}\"\n{extra}\n",
            self.issuer
        )
    }

    /// Removes an account: its refresh tokens stop working.
    pub async fn delete_account(&self, id: &str) {
        self.post(&format!("/test/accounts/{id}/delete")).await;
    }

    /// How many refresh grants it has served.
    pub async fn refreshes(&self) -> u64 {
        self.stat("refreshes").await
    }

    /// How many requests have reached its token endpoint (code exchanges and refreshes, each
    /// counted as it arrives, whatever the answer).
    pub async fn token_requests(&self) -> u64 {
        self.stat("token_requests").await
    }

    /// How many times its key set (`/jwks`) has been read, by anyone (the tests' own
    /// [`Provider::signing_kid`] included), since it started.
    pub async fn jwks_requests(&self) -> u64 {
        self.stat("jwks_requests").await
    }

    /// How many requests to its token endpoint are waiting for [`Provider::release_token`].
    pub async fn held_token_requests(&self) -> u64 {
        self.stat("held").await
    }

    /// Makes every later request to its token endpoint wait until [`Provider::release_token`].
    pub async fn hold_token(&self) {
        self.post("/test/token/hold").await;
    }

    /// Lets the requests [`Provider::hold_token`] holds through, and later ones at once.
    pub async fn release_token(&self) {
        self.post("/test/token/release").await;
    }

    /// Sets the lifetime of the access tokens it issues from now on, in seconds.
    pub async fn set_access_token_ttl(&self, seconds: u64) {
        self.post(&format!("/test/access-token-ttl/{seconds}"))
            .await;
    }

    async fn stat(&self, name: &str) -> u64 {
        self.get_json("/test/stats").await[name]
            .as_u64()
            .expect("a count")
    }

    /// `POST path` of a test route, which answers 204.
    async fn post(&self, path: &str) {
        let req = Request::builder()
            .method(Method::POST)
            .uri(path)
            .header(HOST, self.addr.to_string())
            .body(empty())
            .unwrap();
        assert_eq!(send(self.addr, req).await.status(), StatusCode::NO_CONTENT);
    }

    /// `GET path` as JSON.
    async fn get_json(&self, path: &str) -> Value {
        let req = Request::builder()
            .uri(path)
            .header(HOST, self.addr.to_string())
            .body(empty())
            .unwrap();
        let text = body_string(send(self.addr, req).await).await;
        serde_json::from_str(&text).unwrap_or_else(|_| panic!("{path} is not JSON: {text}"))
    }
}

/// Starts provider.mjs with `options` on `port` (0: a free one); returns it and its port once
/// it serves.
async fn spawn(options: &Options, port: u16) -> (tokio::process::Child, u16) {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/oidc");
    assert!(
        dir.join("node_modules/oidc-provider").is_dir(),
        "tests/oidc/node_modules is missing: run scripts/test, which installs it (npm ci)"
    );
    let mut child = tokio::process::Command::new("node")
        .arg("provider.mjs")
        .current_dir(&dir)
        .env("ACCOUNTS", options.accounts.to_string())
        .env("CLIENT_ID", CLIENT_ID)
        .env("CLIENT_SECRET", CLIENT_SECRET)
        .env("ACCESS_TOKEN_TTL", options.access_token_ttl.to_string())
        .env("CLOCK_SKEW_SECONDS", options.clock_skew.to_string())
        .env("PORT", port.to_string())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("node runs (install nodejs)");
    let stdout = child.stdout.take().expect("piped stdout");
    let mut lines = BufReader::new(stdout).lines();
    let line = bounded("the provider starts", lines.next_line())
        .await
        .expect("provider stdout")
        .expect("the provider printed its port");
    let port: u16 = line
        .strip_prefix("listening ")
        .and_then(|p| p.trim().parse().ok())
        .unwrap_or_else(|| panic!("unexpected provider output {line:?}"));
    (child, port)
}

/// One response as a browser sees it.
#[derive(Debug)]
pub struct Page {
    /// Its URL.
    pub url: String,
    /// The status.
    pub status: StatusCode,
    /// Its `Location`, if any.
    pub location: Option<String>,
    /// Its `Set-Cookie` headers.
    pub set_cookies: Vec<String>,
    /// The body as text.
    pub body: String,
}

impl Page {
    /// The body as JSON.
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.body)
            .unwrap_or_else(|_| panic!("{} did not answer JSON: {}", self.url, self.body))
    }
}

#[derive(Debug, Clone)]
struct Cookie {
    host: String,
    path: String,
    name: String,
    value: String,
}

/// A cookie-keeping HTTP/1.1 client that sends `Accept: text/html` like a browser loading a
/// page. Cookies are kept per host (not port, as browsers do) and path; `Max-Age=0` deletes.
#[derive(Default)]
pub struct Browser {
    cookies: Vec<Cookie>,
}

impl Browser {
    /// A browser with no cookies.
    pub fn new() -> Browser {
        Browser::default()
    }

    /// Sets a cookie for `host` and path `/` as a server would have.
    pub fn set_cookie(&mut self, host: &str, name: &str, value: &str) {
        self.set_cookie_at(host, "/", name, value);
    }

    /// Sets a cookie for `host` and `path` as a server would have.
    pub fn set_cookie_at(&mut self, host: &str, path: &str, name: &str, value: &str) {
        self.store(host, &format!("{name}={value}; Path={path}"));
    }

    /// The value of cookie `name` for `host`, if kept.
    pub fn cookie(&self, host: &str, name: &str) -> Option<String> {
        self.cookies
            .iter()
            .find(|c| c.host == host && c.name == name)
            .map(|c| c.value.clone())
    }

    /// One request, no redirect followed.
    pub async fn request(&mut self, method: Method, url: &str, form: Option<&str>) -> Page {
        let uri: Uri = url.parse().unwrap_or_else(|e| panic!("{url}: {e}"));
        let authority = uri.authority().expect("absolute URL").clone();
        let addr: SocketAddr = authority.as_str().parse().expect("an IP:port authority");
        let host = authority.host().to_owned();
        let path = uri.path_and_query().map_or("/", |p| p.as_str()).to_owned();
        // RFC 6265 §5.4: longer paths first.
        let mut matching: Vec<&Cookie> = self
            .cookies
            .iter()
            .filter(|c| c.host == host && uri.path().starts_with(&c.path))
            .collect();
        matching.sort_by_key(|c| std::cmp::Reverse(c.path.len()));
        let cookies: Vec<String> = matching
            .iter()
            .map(|c| format!("{}={}", c.name, c.value))
            .collect();
        let mut builder = Request::builder()
            .method(method)
            .uri(&path)
            .header(HOST, authority.as_str())
            .header("accept", "text/html,application/xhtml+xml,*/*;q=0.8");
        if !cookies.is_empty() {
            builder = builder.header(COOKIE, cookies.join("; "));
        }
        let body: TestBody = match form {
            Some(f) => {
                builder = builder.header("content-type", "application/x-www-form-urlencoded");
                full(f.to_owned())
            }
            None => empty(),
        };
        let resp = send(addr, builder.body(body).unwrap()).await;
        let status = resp.status();
        let set_cookies: Vec<String> = resp
            .headers()
            .get_all(SET_COOKIE)
            .iter()
            .map(|v| v.to_str().expect("ASCII cookie").to_owned())
            .collect();
        for c in &set_cookies {
            self.store(&host, c);
        }
        let location = resp
            .headers()
            .get(LOCATION)
            .map(|v| resolve(&uri, v.to_str().expect("ASCII location")));
        Page {
            url: url.to_owned(),
            status,
            location,
            set_cookies,
            body: body_string(resp).await,
        }
    }

    /// Loads `url` and follows redirects (at most 20) until a page that is not a redirect, or
    /// until the next URL satisfies `stop` (that URL is then returned unvisited, as `Err`).
    pub async fn follow(&mut self, url: &str, stop: impl Fn(&str) -> bool) -> Result<Page, String> {
        let mut url = url.to_owned();
        for _ in 0..20 {
            let page = self.request(Method::GET, &url, None).await;
            match (&page.location, page.status.is_redirection()) {
                (Some(next), true) => {
                    if stop(next) {
                        return Err(next.clone());
                    }
                    url = next.clone();
                }
                _ => return Ok(page),
            }
        }
        panic!("more than 20 redirects from {url}");
    }

    /// Loads `url` and follows every redirect.
    pub async fn open(&mut self, url: &str) -> Page {
        self.follow(url, |_| false).await.expect("no stop")
    }

    /// Signs in as `account` on the provider's login form `page` (what [`Browser::open`] of an
    /// authorization URL shows) and returns the URL the provider sends the browser back to,
    /// unvisited (it contains `code=`).
    pub async fn sign_in_at_provider(&mut self, page: &Page, account: &str) -> String {
        assert_eq!(page.status, StatusCode::OK, "login form expected: {page:?}");
        let action = page
            .body
            .split("action=\"")
            .nth(1)
            .and_then(|rest| rest.split('"').next())
            .unwrap_or_else(|| panic!("no form in {}", page.body));
        let base: Uri = page.url.parse().unwrap();
        let post = resolve(&base, action);
        let done = self
            .request(Method::POST, &post, Some(&format!("login={account}")))
            .await;
        assert!(done.status.is_redirection(), "login refused: {done:?}");
        let next = done.location.clone().expect("a redirect after login");
        self.follow(&next, |u| u.contains("code="))
            .await
            .expect_err("the provider sends the browser back with a code")
    }
}

impl Browser {
    fn store(&mut self, host: &str, set_cookie: &str) {
        let mut parts = set_cookie.split(';');
        let Some((name, value)) = parts.next().and_then(|nv| nv.trim().split_once('=')) else {
            return;
        };
        let mut path = "/".to_owned();
        let mut delete = value.is_empty();
        for attr in parts {
            let attr = attr.trim();
            let (k, v) = attr.split_once('=').unwrap_or((attr, ""));
            match k.to_ascii_lowercase().as_str() {
                "path" => path = v.to_owned(),
                "max-age" if v.trim().parse::<i64>().is_ok_and(|n| n <= 0) => delete = true,
                _ => {}
            }
        }
        self.cookies
            .retain(|c| !(c.host == host && c.name == name && c.path == path));
        if !delete {
            self.cookies.push(Cookie {
                host: host.to_owned(),
                path,
                name: name.to_owned(),
                value: value.to_owned(),
            });
        }
    }
}

/// `location` resolved against `base` (absolute, or an absolute path).
pub fn resolve(base: &Uri, location: &str) -> String {
    if location.starts_with("http://") || location.starts_with("https://") {
        return location.to_owned();
    }
    let authority = base.authority().expect("absolute base");
    format!("http://{authority}{location}")
}

/// The query parameters of `url`.
pub fn query_of(url: &str) -> HashMap<String, String> {
    let uri: Uri = url.parse().expect("a URL");
    uri.query()
        .unwrap_or("")
        .split('&')
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| (k.to_owned(), percent_decode(v)))
        .collect()
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' if i + 3 <= bytes.len() => {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).expect("ASCII");
                out.push(u8::from_str_radix(hex, 16).expect("hex escape"));
                i += 3;
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8(out).expect("UTF-8")
}
