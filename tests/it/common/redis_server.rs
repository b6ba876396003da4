//! a private redis-server

use super::*;

/// A port nothing listens on now, for a server to start on (bound, then released).
pub fn free_port() -> u16 {
    dead_port().port()
}

/// When a started server counts as ready.
#[derive(Clone, Copy)]
enum Ready {
    /// It answers, and says it is the process started (another one may have taken the port).
    Ours,
    /// It accepts a TCP connection and is still running: for servers that speak only TLS or
    /// refuse the default user, which cannot be asked who they are.
    Accepting,
}

/// A private `redis-server` on `127.0.0.1:PORT`, killed by PID when dropped.
pub struct RedisServer {
    child: Option<std::process::Child>,
}

impl RedisServer {
    /// Starts one keeping nothing on disk: started again after a kill, it is empty.
    pub async fn start(port: u16) -> RedisServer {
        RedisServer::spawn(port, &["--save", "", "--appendonly", "no"], None).await
    }

    /// Starts one keeping nothing on disk, with extra command-line `args` (later ones win, so
    /// `--port 0 --tls-port PORT` makes it a TLS-only server on `port`). Such a server may
    /// speak only TLS or refuse the default user, so it counts as started once it accepts a
    /// TCP connection and is still running, not by asking it who it is.
    pub async fn start_with(port: u16, args: &[&str]) -> RedisServer {
        let mut all = vec!["--save", "", "--appendonly", "no"];
        all.extend_from_slice(args);
        RedisServer::spawn_with(None, port, &all, None, Ready::Accepting).await
    }

    /// Starts one persisting every write in `dir` (append-only file, fsync on every write),
    /// so that a server started again on `dir` after a kill has the same data.
    pub async fn start_persistent(port: u16, dir: &Path) -> RedisServer {
        let args = [
            "--save",
            "",
            "--appendonly",
            "yes",
            "--appendfsync",
            "always",
        ];
        RedisServer::spawn(port, &args, Some(dir)).await
    }

    /// As [`RedisServer::start`], for a server that may become a replica (a failed-over
    /// master): the copy of the master's data that a replica receives is written to `dir`.
    pub async fn start_in(port: u16, dir: &Path) -> RedisServer {
        RedisServer::spawn(port, &["--save", "", "--appendonly", "no"], Some(dir)).await
    }

    /// As [`RedisServer::start_in`], with extra command-line `args` (later ones win, so
    /// `--appendonly yes` makes it persistent).
    pub async fn start_in_with(port: u16, dir: &Path, args: &[&str]) -> RedisServer {
        let mut all = vec!["--save", "", "--appendonly", "no"];
        all.extend_from_slice(args);
        RedisServer::spawn(port, &all, Some(dir)).await
    }

    /// Starts one keeping nothing on disk, as a replica of the server on `master`; the copy
    /// of the master's data that a replica receives on syncing is written to `dir`.
    pub async fn start_replica(port: u16, master: u16, dir: &Path) -> RedisServer {
        let master = master.to_string();
        let args = [
            "--save",
            "",
            "--appendonly",
            "no",
            "--replicaof",
            "127.0.0.1",
            &master,
        ];
        RedisServer::spawn(port, &args, Some(dir)).await
    }

    /// Starts a sentinel watching the master on `master` as `service` (quorum 1), its config
    /// file (which a sentinel rewrites) in `dir`.
    pub async fn start_sentinel(port: u16, master: u16, service: &str, dir: &Path) -> RedisServer {
        RedisServer::sentinel(port, master, service, dir, &[], Ready::Ours).await
    }

    /// As [`RedisServer::start_sentinel`], with extra command-line `args` that may make it
    /// TLS-only (see [`RedisServer::start_with`]).
    pub async fn start_sentinel_with(
        port: u16,
        master: u16,
        service: &str,
        dir: &Path,
        args: &[&str],
    ) -> RedisServer {
        RedisServer::sentinel(port, master, service, dir, args, Ready::Accepting).await
    }

    async fn sentinel(
        port: u16,
        master: u16,
        service: &str,
        dir: &Path,
        args: &[&str],
        ready: Ready,
    ) -> RedisServer {
        let conf = dir.join(format!("sentinel-{port}.conf"));
        std::fs::write(
            &conf,
            format!(
                "sentinel monitor {service} 127.0.0.1 {master} 1\n\
                 sentinel down-after-milliseconds {service} 2000\n\
                 sentinel failover-timeout {service} 10000\n"
            ),
        )
        .expect("the sentinel config is written");
        let conf = conf.to_str().expect("a UTF-8 path").to_owned();
        let mut all = vec!["--sentinel"];
        all.extend_from_slice(args);
        RedisServer::spawn_with(Some(&conf), port, &all, Some(dir), ready).await
    }

    async fn spawn(port: u16, args: &[&str], dir: Option<&Path>) -> RedisServer {
        RedisServer::spawn_with(None, port, args, dir, Ready::Ours).await
    }

    /// Starts `redis-server [config_file] --port PORT --bind 127.0.0.1 ARGS [--dir DIR]` and
    /// waits until it is `ready`.
    async fn spawn_with(
        config_file: Option<&str>,
        port: u16,
        args: &[&str],
        dir: Option<&Path>,
        ready: Ready,
    ) -> RedisServer {
        let mut cmd = std::process::Command::new("redis-server");
        cmd.args(config_file)
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(args);
        if let Some(dir) = dir {
            cmd.arg("--dir").arg(dir);
        }
        let child = cmd
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server runs (install the redis-server package)");
        let pid = child.id();
        let mut server = RedisServer { child: Some(child) };
        let started = tokio::time::Instant::now();
        // Another process (tests of another checkout, say) may have taken the free port in the
        // meantime: then ours exits, and what answers there is not ours.
        loop {
            let child = server.child.as_mut().expect("just started");
            if let Ok(Some(status)) = child.try_wait() {
                panic!("redis-server on {port} exited at start ({status}): port taken?");
            }
            match ready {
                Ready::Ours => {
                    if let Some(answering) = process_id(port).await {
                        assert_eq!(
                            answering, pid,
                            "another redis-server answers on {port}, not the one started"
                        );
                        return server;
                    }
                }
                Ready::Accepting => {
                    if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                        return server;
                    }
                }
            }
            assert!(
                started.elapsed() < BOUND,
                "redis-server did not listen on {port}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Sends `signal` (`STOP`, `CONT`) to the server by PID: a stopped server keeps its
    /// sockets open and answers nothing, like a hung or partitioned Redis.
    pub fn signal(&self, signal: &str) {
        let pid = self.child.as_ref().expect("the server runs").id();
        let status = std::process::Command::new("kill")
            .arg(format!("-{signal}"))
            .arg(pid.to_string())
            .status()
            .expect("kill runs");
        assert!(status.success(), "kill -{signal} {pid}");
    }

    /// SIGKILL: no goodbye to the clients, as in a crash.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            // A stopped process dies of SIGKILL too.
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// The `process_id` that the Redis server (or sentinel) on `port` reports, once it answers.
async fn process_id(port: u16) -> Option<u32> {
    let client = redis::Client::open(format!("redis://127.0.0.1:{port}")).ok()?;
    let mut conn = client.get_multiplexed_async_connection().await.ok()?;
    let info: String = redis::cmd("INFO")
        .arg("server")
        .query_async(&mut conn)
        .await
        .ok()?;
    info.lines()
        .find_map(|l| l.strip_prefix("process_id:"))
        .and_then(|pid| pid.trim().parse().ok())
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
    }
}
