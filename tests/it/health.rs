//! `portcullis health`, the image's HEALTHCHECK (distroless has no curl): exit 0 when the admin
//! listener answers 2xx, 1 when it answers anything else, refuses the connection, or says nothing
//! within the timeout; the listener comes from `--admin`, or from the config.

use std::net::SocketAddr;
use std::path::Path;

use crate::common::*;

/// Runs `portcullis health ARGS...` with `envs`: exit code, stdout, stderr.
async fn health(args: &[&str], envs: &[(&str, &Path)]) -> (Option<i32>, String, String) {
    let mut cmd = command();
    cmd.arg("health").args(args);
    for (key, value) in envs {
        cmd.env(key, value);
    }
    finish(cmd).await
}

#[tokio::test]
async fn health_exits_0_while_the_admin_listener_answers_and_1_when_nothing_listens() {
    let echo = start_echo().await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("portcullis.toml");
    std::fs::write(&path, config(&http_url(echo), "", "")).unwrap();
    let proc = spawn_serve(&path).await;
    let admin = proc.admin.to_string();

    let (code, stdout, stderr) = health(&["--admin", &admin], &[]).await;
    assert_eq!((code, stdout.as_str()), (Some(0), "ok\n"), "{stderr}");
    let (code, stdout, stderr) = health(&["--admin", &admin, "--ready"], &[]).await;
    assert_eq!((code, stdout.as_str()), (Some(0), "ready\n"), "{stderr}");

    let dead = dead_port().to_string();
    let (code, stdout, stderr) = health(&["--admin", &dead], &[]).await;
    assert_eq!(code, Some(1), "{stdout}");
    assert!(
        stderr.contains(&format!("http://{dead}/healthz")),
        "{stderr}"
    );
}

#[tokio::test]
async fn health_ready_exits_1_with_the_reason_while_healthz_still_passes() {
    // Not ready: the upstream refuses connections and the config asks for it to accept them.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("portcullis.toml");
    let text = config(&http_url(dead_port()), "ready_requires_upstream = true", "");
    std::fs::write(&path, text).unwrap();
    let proc = spawn_serve(&path).await;
    let admin = proc.admin.to_string();

    let (code, _, stderr) = health(&["--admin", &admin, "--ready"], &[]).await;
    assert_eq!(code, Some(1), "{stderr}");
    assert!(
        stderr.contains("503 not ready: upstream refuses connections"),
        "{stderr}"
    );
    let (code, _, stderr) = health(&["--admin", &admin], &[]).await;
    assert_eq!(code, Some(0), "{stderr}");
}

#[tokio::test]
async fn health_asks_the_admin_listener_of_the_config_on_loopback_when_it_listens_on_all_addresses()
{
    let echo = start_echo().await;
    let port = free_port();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("portcullis.toml");
    let text = config(&http_url(echo), "", "").replace(
        "admin_listen = \"127.0.0.1:0\"",
        &format!("admin_listen = \"0.0.0.0:{port}\""),
    );
    std::fs::write(&path, text).unwrap();
    let _proc = spawn_serve(&path).await;

    // Through PORTCULLIS_CONFIG, as the image's HEALTHCHECK finds it, and through --config.
    let (code, stdout, stderr) = health(&[], &[("PORTCULLIS_CONFIG", &path)]).await;
    assert_eq!((code, stdout.as_str()), (Some(0), "ok\n"), "{stderr}");
    let (code, _, stderr) = health(&["--config", &path.display().to_string()], &[]).await;
    assert_eq!(code, Some(0), "{stderr}");

    // A config that does not load is a failed check, naming the problem.
    let bad = dir.path().join("bad.toml");
    std::fs::write(&bad, "[server]\nbogus = 1\n").unwrap();
    let (code, _, stderr) = health(&[], &[("PORTCULLIS_CONFIG", &bad)]).await;
    assert_eq!(code, Some(1), "{stderr}");
    assert!(stderr.contains("server.bogus"), "{stderr}");
}

#[tokio::test]
async fn health_gives_up_with_exit_1_on_a_listener_that_never_answers() {
    // Accepts connections and reads nothing: only the timeout can end the check.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr: SocketAddr = listener.local_addr().unwrap();
    let held = tokio::spawn(async move {
        let mut open = Vec::new();
        while let Ok((stream, _)) = listener.accept().await {
            open.push(stream);
        }
    });

    let (code, _, stderr) =
        health(&["--admin", &addr.to_string(), "--timeout", "300ms"], &[]).await;
    assert_eq!(code, Some(1), "{stderr}");
    assert!(stderr.contains("no answer within 300ms"), "{stderr}");
    held.abort();
}
