//! Reaching a Redis that wants credentials and TLS: `store.username` and `store.password_file`
//! (a password with `/`, `@` and `:` that a URL would mangle), and `rediss://` with a private
//! CA (`store.ca_file`) and a client certificate (`store.cert_file`, `store.key_file`) against
//! a `redis-server` with `tls-auth-clients yes`. Each refusal case proves the setting is what
//! made the difference.

use std::path::Path;

use http::{Method, StatusCode};

use crate::common::*;

/// A Portcullis on the Redis at `url` with `[store]` lines `store`: whether the store works
/// through it (the first user is created, and a login with it works).
async fn store_works(url: &str, store: &str) -> bool {
    let echo = start_echo().await;
    let config = config_with_store(echo, url, &random_key_prefix(), store, "");
    let sidecar = Sidecar::start(&config).await;
    let first = serde_json::json!({
        "email": ADMIN_EMAIL, "username": "admin", "password": PASSWORD,
    });
    let req = api_request(Method::POST, "/api/v2/users/first", Some(&first), None);
    let (status, body, _) = call_json(sidecar.addr, req).await;
    let works = match status {
        StatusCode::CREATED => {
            let (status, _) = login(sidecar.addr, ADMIN_EMAIL, PASSWORD).await;
            status == StatusCode::CREATED
        }
        StatusCode::SERVICE_UNAVAILABLE => false,
        other => panic!("unexpected {other}: {body}"),
    };
    sidecar.shutdown().await;
    works
}

/// A password file holding `secret` and a newline.
fn secret_file(dir: &Path, secret: &str) -> String {
    let path = dir.join("redis-password");
    std::fs::write(&path, format!("{secret}\n")).unwrap();
    path.display().to_string()
}

#[tokio::test]
async fn an_acl_user_and_a_password_file_reach_a_redis_that_requires_them() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let password = "pa/ss@w:rd#1";
    let _redis = RedisServer::start_with(
        port,
        &[
            "--user",
            "default",
            "off",
            "--user",
            "portcullis",
            "on",
            &format!(">{password}"),
            "~*",
            "&*",
            "+@all",
        ],
    )
    .await;
    let url = format!("redis://127.0.0.1:{port}");
    let file = secret_file(dir.path(), password);
    let with = format!("username = \"portcullis\"\npassword_file = \"{file}\"");
    assert!(
        store_works(&url, &with).await,
        "with the user and the password file"
    );
    let wrong = secret_file(dir.path(), "not-it");
    let without = format!("username = \"portcullis\"\npassword_file = \"{wrong}\"");
    assert!(!store_works(&url, &without).await, "with a wrong password");
}

/// A private CA, a server certificate for 127.0.0.1 and a client certificate, made with
/// openssl in `dir`: (ca.pem, server.pem, server.key, client.pem, client.key).
fn private_pki(dir: &Path) {
    make_ca(dir, "Portcullis test Redis CA", 2);
    issue_cert(dir, "server", P256, "serverAuth", "IP:127.0.0.1", 2);
    issue_cert(dir, "client", P256, "clientAuth", "DNS:portcullis", 2);
}

#[tokio::test]
async fn rediss_with_a_private_ca_and_a_client_certificate() {
    let dir = tempfile::tempdir().unwrap();
    private_pki(dir.path());
    let file = |name: &str| dir.path().join(name).display().to_string();
    let port = free_port();
    let _redis = RedisServer::start_with(
        port,
        &[
            "--port",
            "0",
            "--tls-port",
            &port.to_string(),
            "--tls-cert-file",
            &file("server.pem"),
            "--tls-key-file",
            &file("server.key"),
            "--tls-ca-cert-file",
            &file("ca.pem"),
            "--tls-auth-clients",
            "yes",
        ],
    )
    .await;
    let url = format!("rediss://127.0.0.1:{port}");
    let ca = format!("ca_file = \"{}\"", file("ca.pem"));
    let client = format!(
        "cert_file = \"{}\"\nkey_file = \"{}\"",
        file("client.pem"),
        file("client.key")
    );
    assert!(
        store_works(&url, &format!("{ca}\n{client}")).await,
        "with the private CA and the client certificate"
    );
    assert!(
        !store_works(&url, &client).await,
        "the system roots do not know the private CA"
    );
    assert!(
        !store_works(&url, &ca).await,
        "the server requires a client certificate"
    );
}
