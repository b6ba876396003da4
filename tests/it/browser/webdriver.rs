//! A small WebDriver client (W3C WebDriver, the JSON wire protocol over HTTP/1.1) driving
//! headless Chromium through Debian's `chromedriver`: the few commands the sign-in tests use.

use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use http::{Method, Request};
use serde_json::{json, Value};

use crate::common::*;

/// The key under which WebDriver names an element.
const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

/// A running `chromedriver`, stopped on drop.
pub struct Driver {
    addr: SocketAddr,
    child: Child,
    profile: tempfile::TempDir,
}

/// One browser (a WebDriver session), closed on [`Browser::quit`].
pub struct Browser {
    addr: SocketAddr,
    id: String,
}

/// Whether Chromium and its driver are installed; `scripts/test` installs both.
pub fn installed() -> bool {
    Path::new("/usr/bin/chromium").exists() && Path::new("/usr/bin/chromedriver").exists()
}

impl Driver {
    /// Starts `chromedriver` on a free port and waits until it is ready.
    pub async fn start() -> Driver {
        use std::os::unix::process::CommandExt;
        let port = free_port();
        // A process group of its own, with the browsers it starts: a test that fails before
        // it quits its browser still stops them all (see the drop).
        let child = Command::new("/usr/bin/chromedriver")
            .arg(format!("--port={port}"))
            .process_group(0)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("chromedriver runs");
        let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
        let driver = Driver {
            addr,
            child,
            profile: tempfile::tempdir().unwrap(),
        };
        let started = Instant::now();
        loop {
            if std::net::TcpStream::connect(addr).is_ok() {
                let status = command(addr, Method::GET, "/status", None).await;
                if status["ready"] == true {
                    return driver;
                }
            }
            assert!(started.elapsed() < BOUND, "chromedriver did not start");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// A new headless browser with an empty profile, 1280 by 900.
    pub async fn browser(&self) -> Browser {
        let profile = self
            .profile
            .path()
            .join(uuid::Uuid::new_v4().simple().to_string());
        let caps = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": "/usr/bin/chromium",
                "args": [
                    "--headless=new", "--no-sandbox", "--disable-gpu",
                    "--disable-dev-shm-usage", "--window-size=1280,900",
                    "--no-first-run", "--no-default-browser-check",
                    format!("--user-data-dir={}", profile.display()),
                ],
            },
        }}});
        let value = command(self.addr, Method::POST, "/session", Some(caps)).await;
        let id = value["sessionId"]
            .as_str()
            .unwrap_or_else(|| panic!("no session: {value}"))
            .to_owned();
        Browser {
            addr: self.addr,
            id,
        }
    }
}

impl Drop for Driver {
    /// Stops chromedriver and every browser it started (its process group).
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-KILL", "--", &format!("-{}", self.child.id())])
            .status();
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Browser {
    async fn call(&self, method: Method, path: &str, body: Option<Value>) -> Value {
        let path = format!("/session/{}{path}", self.id);
        command(self.addr, method, &path, body).await
    }

    /// Loads `url` and waits for it to load.
    pub async fn open(&self, url: &str) {
        self.call(Method::POST, "/url", Some(json!({ "url": url })))
            .await;
    }

    /// The address of the page shown.
    pub async fn url(&self) -> String {
        let v = self.call(Method::GET, "/url", None).await;
        v.as_str().expect("a URL").to_owned()
    }

    /// Waits until the page's address is `want`; fails the test after [`BOUND`].
    pub async fn wait_for_url(&self, want: &str) {
        let started = Instant::now();
        loop {
            let url = self.url().await;
            if url == want {
                return;
            }
            assert!(
                started.elapsed() < BOUND,
                "the browser is at {url}, not {want}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The element the CSS `selector` finds first; fails the test when there is none.
    pub async fn find(&self, selector: &str) -> String {
        let v = self
            .call(
                Method::POST,
                "/element",
                Some(json!({"using": "css selector", "value": selector})),
            )
            .await;
        v[ELEMENT]
            .as_str()
            .unwrap_or_else(|| panic!("no element {selector}: {v}"))
            .to_owned()
    }

    /// How many elements the CSS `selector` finds.
    pub async fn count(&self, selector: &str) -> usize {
        let v = self
            .call(
                Method::POST,
                "/elements",
                Some(json!({"using": "css selector", "value": selector})),
            )
            .await;
        v.as_array().map_or(0, Vec::len)
    }

    /// Waits until the CSS `selector` finds an element; fails the test after [`BOUND`].
    pub async fn wait_for(&self, selector: &str) {
        let started = Instant::now();
        while self.count(selector).await == 0 {
            assert!(
                started.elapsed() < BOUND,
                "no {selector} on {}",
                self.url().await
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Types `text` into the element `selector` finds.
    pub async fn fill(&self, selector: &str, text: &str) {
        let el = self.find(selector).await;
        self.call(
            Method::POST,
            &format!("/element/{el}/value"),
            Some(json!({ "text": text })),
        )
        .await;
    }

    /// Clicks the element `selector` finds.
    pub async fn click(&self, selector: &str) {
        let el = self.find(selector).await;
        self.call(
            Method::POST,
            &format!("/element/{el}/click"),
            Some(json!({})),
        )
        .await;
    }

    /// The rendered text of the element `selector` finds.
    pub async fn text(&self, selector: &str) -> String {
        let el = self.find(selector).await;
        let v = self
            .call(Method::GET, &format!("/element/{el}/text"), None)
            .await;
        v.as_str().unwrap_or_default().to_owned()
    }

    /// The value of the attribute `name` of the element `selector` finds.
    pub async fn attribute(&self, selector: &str, name: &str) -> Option<String> {
        let el = self.find(selector).await;
        let v = self
            .call(
                Method::GET,
                &format!("/element/{el}/attribute/{name}"),
                None,
            )
            .await;
        v.as_str().map(str::to_owned)
    }

    /// The page's body as JSON (what the echo upstream answered, as Chromium shows it).
    pub async fn json(&self) -> Value {
        let text = self.text("body").await;
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"))
    }

    /// The cookie `name` of the page shown, with its attributes (`value`, `httpOnly`, ...).
    pub async fn cookie(&self, name: &str) -> Option<Value> {
        let v = self.call(Method::GET, "/cookie", None).await;
        v.as_array()?.iter().find(|c| c["name"] == name).cloned()
    }

    /// Sets the window's outer size.
    pub async fn resize(&self, width: u32, height: u32) {
        self.call(
            Method::POST,
            "/window/rect",
            Some(json!({"width": width, "height": height})),
        )
        .await;
    }

    /// A PNG of the viewport.
    pub async fn screenshot(&self) -> Vec<u8> {
        use base64ct::Encoding;
        let v = self.call(Method::GET, "/screenshot", None).await;
        base64ct::Base64::decode_vec(v.as_str().expect("base64")).expect("a PNG in base64")
    }

    /// Ends the session (closes the browser).
    pub async fn quit(self) {
        command(
            self.addr,
            Method::DELETE,
            &format!("/session/{}", self.id),
            None,
        )
        .await;
    }
}

/// One WebDriver command: its `value`; fails the test on a WebDriver error.
async fn command(addr: SocketAddr, method: Method, path: &str, body: Option<Value>) -> Value {
    let req = Request::builder()
        .method(method)
        .uri(path)
        .header("host", addr.to_string())
        .header("content-type", "application/json; charset=utf-8");
    let req = match body {
        Some(b) => req.body(full(b.to_string())).unwrap(),
        None => req.body(empty()).unwrap(),
    };
    let resp = send(addr, req).await;
    let status = resp.status();
    let text = body_string(resp).await;
    let v: Value = serde_json::from_str(&text).unwrap_or_else(|_| panic!("{path}: {text}"));
    assert!(status.is_success(), "WebDriver {path}: {status} {v}");
    v["value"].clone()
}
