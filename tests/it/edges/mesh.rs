//! The recipes for a mesh and a Gateway API implementation, which no test here can run (no
//! cluster): `deploy/istio/portcullis.yaml`'s AuthorizationPolicy and EnvoyFilter objects are
//! checked against Istio's CRD schemas (`tests/tools/validate_istio.py`, on the models
//! `cloudcoil-models-istio` generates from them; its IstioOperator has no model), and the
//! EnvoyFilter's patch, merged into the Envoy recipe in place of its own identity hygiene
//! (`tests/tools/istio_hygiene_envoy.py`), passes the edge scenario on a real Envoy. Nothing
//! checks `deploy/envoy-gateway/`: no validator with the Gateway API or Envoy Gateway schemas
//! installs here.

use std::net::SocketAddr;
use std::process::Command;

use super::envoy::{envoy_config, spawn_envoy};

use super::*;

/// Runs the Istio check on `path`: whether it passed, and what it printed.
fn validate_istio(path: &Path) -> (bool, String) {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/tools/validate_istio.py");
    let out = Command::new(venv_program("python"))
        .arg(script)
        .arg(path)
        .output()
        .expect("the venv's python runs");
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    (out.status.success(), text)
}

#[test]
fn the_istio_recipe_objects_match_istio_crd_schemas() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/istio/portcullis.yaml");
    let (passed, text) = validate_istio(&path);
    assert!(passed, "{text}");
    for checked in [
        "ok: AuthorizationPolicy portcullis\n",
        "ok: EnvoyFilter portcullis-identity-hygiene\n",
        "ok: AuthorizationPolicy portcullis-verify-only-from-the-gateway\n",
    ] {
        assert!(text.contains(checked), "{text}");
    }
}

#[test]
fn the_istio_check_refuses_a_field_the_schema_does_not_know() {
    let dir = tempfile::tempdir().unwrap();
    let shipped = recipe("deploy/istio/portcullis.yaml");
    let misspelt = replaced(
        "deploy/istio/portcullis.yaml",
        shipped,
        &[("  action: CUSTOM", "  actoin: CUSTOM".to_owned())],
    );
    let (passed, text) = validate_istio(&write(&dir, "portcullis.yaml", &misspelt));
    assert!(!passed, "{text}");
    assert!(
        text.contains("FAIL AuthorizationPolicy portcullis:"),
        "{text}"
    );
}

/// Envoy on its recipe with the Istio EnvoyFilter's patch in place of its own hygiene.
fn start_with_istio_hygiene(app: SocketAddr, portcullis: SocketAddr) -> Edge {
    let dir = edge_dir();
    let addr = edge_addr();
    let plain = write(&dir, "envoy.yaml", &envoy_config(app, portcullis, addr));
    let merged = dir.path().join("envoy-istio.yaml");
    let repo = Path::new(env!("CARGO_MANIFEST_DIR"));
    let out = Command::new(venv_program("python"))
        .arg(repo.join("tests/tools/istio_hygiene_envoy.py"))
        .arg(&plain)
        .arg(repo.join("deploy/istio/portcullis.yaml"))
        .arg(&merged)
        .output()
        .expect("the venv's python runs");
    assert!(out.status.success(), "{out:?}");
    spawn_envoy(&merged, addr, dir)
}

#[tokio::test]
async fn the_istio_envoy_filter_keeps_spoofed_identity_from_the_app_on_a_real_envoy() {
    judged(start_with_istio_hygiene, Refusals::Coder).await;
}
