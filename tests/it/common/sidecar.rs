//! in-process Portcullis

use super::*;

/// A Portcullis running in this process, serving on `127.0.0.1:0`.
pub struct Sidecar {
    /// The main listener.
    pub addr: SocketAddr,
    /// The admin listener.
    pub admin: SocketAddr,
    /// The running app.
    pub app: Arc<portcullis::App>,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<()>>,
}

impl Sidecar {
    /// Starts Portcullis with the config `toml` (relative paths resolve against the current
    /// directory).
    pub async fn start(toml: &str) -> Sidecar {
        Sidecar::start_in(toml, Path::new(".")).await
    }

    /// Starts Portcullis with the config `toml`, resolving relative paths against `base`.
    pub async fn start_in(toml: &str, base: &Path) -> Sidecar {
        let config = portcullis::Config::from_toml(toml, Vec::<(String, String)>::new(), base)
            .unwrap_or_else(|e| panic!("test config does not load: {e}\n{toml}"));
        let app = portcullis::App::new(config).unwrap_or_else(|e| panic!("App::new: {e}"));
        let main = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let admin = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = main.local_addr().unwrap();
        let admin_addr = admin.local_addr().unwrap();
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(portcullis::server::run(
            app.clone(),
            portcullis::server::Listeners { main, admin },
            async move {
                let _ = stopped.await;
            },
        ));
        Sidecar {
            addr,
            admin: admin_addr,
            app,
            stop: Some(stop),
            task: Some(task),
        }
    }

    /// Tells the server to shut down and waits until `run` returns.
    pub async fn shutdown(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            bounded("server::run to return after shutdown", task)
                .await
                .unwrap();
        }
    }

    /// The store URL it runs on (a password shown as `***`), for [`delete_redis_keys`].
    pub fn store_url(&self) -> String {
        self.app.config.store.url.to_string()
    }

    /// The admin listener's `/metrics` text.
    pub async fn metrics(&self) -> String {
        let resp = send(self.admin, get("admin.test", "/metrics")).await;
        assert_eq!(resp.status(), StatusCode::OK);
        body_string(resp).await
    }
}

impl Drop for Sidecar {
    fn drop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

/// The value of one series (`name{labels}` exactly as exposed) in Prometheus text.
pub fn metric(text: &str, series: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
        .unwrap_or_else(|| panic!("no series {series} in:\n{text}"))
        .trim()
        .parse()
        .unwrap()
}
