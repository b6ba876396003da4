//! the real binary

use super::*;

/// The `portcullis` binary under test.
pub fn binary() -> &'static str {
    env!("CARGO_BIN_EXE_portcullis")
}

/// A `portcullis` command with a clean environment for its config: no `PORTCULLIS_*` override
/// and no `RUST_LOG` from the caller.
pub fn command() -> tokio::process::Command {
    clean(tokio::process::Command::new(binary()))
}

/// `cmd` without the caller's `PORTCULLIS_*` overrides and `RUST_LOG`, stdin closed, killed
/// when dropped.
fn clean(mut cmd: tokio::process::Command) -> tokio::process::Command {
    for (key, _) in std::env::vars() {
        if key.starts_with("PORTCULLIS_") || key == "RUST_LOG" {
            cmd.env_remove(key);
        }
    }
    cmd.stdin(Stdio::null()).kill_on_drop(true);
    cmd
}

/// Runs `cmd` to completion (within [`BOUND`]): its exit code, stdout and stderr.
pub async fn finish(cmd: tokio::process::Command) -> (Option<i32>, String, String) {
    let what = format!("{:?} to exit", cmd.as_std().get_program());
    bounded(&what, finish_unbounded(cmd)).await
}

/// [`finish`] without a bound: the caller sets its own (killed when dropped).
pub async fn finish_unbounded(mut cmd: tokio::process::Command) -> (Option<i32>, String, String) {
    let what = format!("{:?}", cmd.as_std().get_program());
    let out = cmd
        .kill_on_drop(true)
        .output()
        .await
        .unwrap_or_else(|e| panic!("{what}: {e}"));
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// A running `portcullis serve` process.
pub struct Process {
    /// The child.
    pub child: tokio::process::Child,
    /// Its main listener.
    pub addr: SocketAddr,
    /// Its admin listener.
    pub admin: SocketAddr,
    /// Everything it wrote to stderr so far.
    pub log: Arc<Mutex<String>>,
}

impl Process {
    /// The child's process id.
    pub fn pid(&self) -> u32 {
        self.child.id().expect("child is running")
    }

    /// Its peak resident set size (`VmHWM`), in KiB.
    pub fn peak_rss_kib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid())).unwrap();
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmHWM:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap_or_else(|| panic!("no VmHWM in {status}"))
    }

    /// Sends SIGTERM, with the shell's own `kill` (no extra package needed).
    pub fn sigterm(&self) {
        let status = std::process::Command::new("sh")
            .arg("-c")
            .arg(format!("kill -TERM {}", self.pid()))
            .status()
            .unwrap();
        assert!(status.success(), "kill -TERM failed");
    }

    /// Its stderr so far.
    pub fn log(&self) -> String {
        self.log.lock().unwrap().clone()
    }
}

/// Runs `portcullis serve --config CONFIG` and waits until both listeners log `listening`.
pub async fn spawn_serve(config: &Path) -> Process {
    let mut cmd = command();
    cmd.arg("serve").arg("--config").arg(config);
    start_serve(cmd).await
}

/// [`spawn_serve`], with the process allowed at most `open_files` file descriptors (the
/// shell's `ulimit -n`, then `exec`, so the child is Portcullis itself).
pub async fn spawn_serve_limited(config: &Path, open_files: u32) -> Process {
    let mut cmd = clean(tokio::process::Command::new("sh"));
    cmd.arg("-c")
        .arg(r#"ulimit -n "$1" && exec "$0" serve --config "$2""#)
        .arg(binary())
        .arg(open_files.to_string())
        .arg(config);
    start_serve(cmd).await
}

/// Starts `cmd` (a `portcullis serve`) and waits until both listeners log `listening`.
async fn start_serve(mut cmd: tokio::process::Command) -> Process {
    let mut child = cmd
        .env("RUST_LOG", "info")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let log = Arc::new(Mutex::new(String::new()));
    let (tx, rx) = oneshot::channel();
    let log2 = log.clone();
    tokio::spawn(async move {
        let mut lines = BufReader::new(stderr).lines();
        let (mut main, mut admin) = (None, None);
        let mut tx = Some(tx);
        while let Ok(Some(line)) = lines.next_line().await {
            match listening(&line) {
                Some(("main", addr)) => main = Some(addr),
                Some(("admin", addr)) => admin = Some(addr),
                _ => {}
            }
            log2.lock().unwrap().push_str(&line);
            log2.lock().unwrap().push('\n');
            if let (Some(m), Some(a)) = (main, admin) {
                if let Some(tx) = tx.take() {
                    let _ = tx.send((m, a));
                }
            }
        }
    });
    match tokio::time::timeout(BOUND, rx).await {
        Ok(Ok((addr, admin))) => Process {
            child,
            addr,
            admin,
            log,
        },
        _ => {
            let _ = child.start_kill();
            panic!(
                "portcullis serve did not log its listeners; stderr:\n{}",
                log.lock().unwrap()
            );
        }
    }
}

/// The listener and address a `listening` line names, in either `log.format`: plain
/// (`listener="main" addr=127.0.0.1:1234`) or JSON (`"fields":{"message":"listening",...}`).
fn listening(line: &str) -> Option<(&'static str, SocketAddr)> {
    let (name, addr) = if line.starts_with('{') {
        let event: Value = serde_json::from_str(line).ok()?;
        let fields = &event["fields"];
        if fields["message"] != "listening" {
            return None;
        }
        let name = fields["listener"].as_str()?.to_owned();
        (name, fields["addr"].as_str()?.parse().ok()?)
    } else {
        if !line.contains("listening") {
            return None;
        }
        let rest = &line[line.find("listener=")? + "listener=".len()..];
        let name = rest.split_whitespace().next()?.trim_matches('"').to_owned();
        let rest = &line[line.find("addr=")? + "addr=".len()..];
        let addr = rest
            .split_whitespace()
            .next()?
            .trim_matches('"')
            .parse()
            .ok()?;
        (name, addr)
    };
    match name.as_str() {
        "main" => Some(("main", addr)),
        "admin" => Some(("admin", addr)),
        _ => None,
    }
}

/// The JSON lines (`log.format = "json"`) of `log` on tracing target `target`.
pub fn json_events(log: &str, target: &str) -> Vec<Value> {
    log.lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|e| e["target"] == target)
        .collect()
}
