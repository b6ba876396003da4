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

/// The private PKI of [`private_pki`] in `dir`, and the Redis side of it: TLS-only servers
/// that require a client certificate, and that use TLS (with the client certificate) for
/// what they open themselves — replication, a sentinel's links, the cluster bus.
struct TlsRedis {
    dir: tempfile::TempDir,
}

impl TlsRedis {
    fn new() -> TlsRedis {
        let dir = tempfile::tempdir().unwrap();
        private_pki(dir.path());
        TlsRedis { dir }
    }

    fn file(&self, name: &str) -> String {
        self.dir.path().join(name).display().to_string()
    }

    /// A folder of its own for the server on `port`.
    fn dir_of(&self, port: u16) -> String {
        let dir = self.dir.path().join(port.to_string());
        std::fs::create_dir_all(&dir).unwrap();
        dir.display().to_string()
    }

    /// `redis-server` arguments making it TLS-only on `port`, as above.
    fn args(&self, port: u16) -> Vec<String> {
        let mut args: Vec<String> = ["--port", "0", "--tls-port"]
            .map(String::from)
            .into_iter()
            .chain([port.to_string()])
            .collect();
        for (option, file) in [
            ("--tls-cert-file", "server.pem"),
            ("--tls-key-file", "server.key"),
            ("--tls-client-cert-file", "client.pem"),
            ("--tls-client-key-file", "client.key"),
            ("--tls-ca-cert-file", "ca.pem"),
        ] {
            args.extend([option.to_owned(), self.file(file)]);
        }
        args.extend(["--tls-auth-clients", "yes", "--tls-replication", "yes"].map(String::from));
        args
    }

    /// What `redis-cli` over TLS with the client certificate prints for `commands` (one per
    /// line, on one connection) sent to `port`; "" when it fails.
    fn cli(&self, port: u16, commands: &str) -> String {
        use std::io::Write;
        let mut child = std::process::Command::new("redis-cli")
            .args(["--tls", "--cacert", &self.file("ca.pem")])
            .args([
                "--cert",
                &self.file("client.pem"),
                "--key",
                &self.file("client.key"),
            ])
            .args(["-h", "127.0.0.1", "-p", &port.to_string()])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("redis-cli runs (install redis-tools)");
        child
            .stdin
            .take()
            .unwrap()
            .write_all(commands.as_bytes())
            .unwrap();
        let out = child.wait_with_output().unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// `[store]` lines with the CA and the client certificate, and without each.
    fn settings(&self) -> [(String, &'static str); 3] {
        let ca = format!("ca_file = \"{}\"", self.file("ca.pem"));
        let client = format!(
            "cert_file = \"{}\"\nkey_file = \"{}\"",
            self.file("client.pem"),
            self.file("client.key")
        );
        [
            (
                format!("{ca}\n{client}"),
                "with the CA and the client certificate",
            ),
            (client, "without the private CA"),
            (ca, "without the client certificate"),
        ]
    }

    /// Whether the store works at `url` exactly with both the CA and the client certificate.
    async fn assert_works_only_with_both(&self, url: &str) {
        for (n, (store, what)) in self.settings().into_iter().enumerate() {
            assert_eq!(store_works(url, &store).await, n == 0, "{url} {what}");
        }
    }
}

fn strs(args: &[String]) -> Vec<&str> {
    args.iter().map(String::as_str).collect()
}

/// `rediss+sentinel://`: the sentinel, the master and its replica speak only TLS and require a
/// client certificate. Portcullis asks the sentinel for the master and reaches it, both over
/// TLS with the private CA and its certificate (a Sentinel store's writes also wait for the
/// replica, so replication over TLS is exercised too).
#[tokio::test]
async fn rediss_sentinel_with_a_private_ca_and_a_client_certificate() {
    const SERVICE: &str = "tlsmaster";
    let tls = TlsRedis::new();
    let (master, replica, sentinel) = (free_port(), free_port(), free_port());
    let mut args = tls.args(master);
    args.extend(["--dir".to_owned(), tls.dir_of(master)]);
    let _master = RedisServer::start_with(master, &strs(&args)).await;
    let mut args = tls.args(replica);
    args.extend(["--dir".to_owned(), tls.dir_of(replica)]);
    args.extend(["--replicaof", "127.0.0.1"].map(String::from));
    args.push(master.to_string());
    let _replica = RedisServer::start_with(replica, &strs(&args)).await;
    let dir = tls.dir_of(sentinel);
    let _sentinel = RedisServer::start_sentinel_with(
        sentinel,
        master,
        SERVICE,
        Path::new(&dir),
        &strs(&tls.args(sentinel)),
    )
    .await;
    eventually(
        "the replica to confirm writes, and the sentinel to know it",
        || async {
            let known = tls.cli(sentinel, &format!("SENTINEL replicas {SERVICE}\n"));
            let acked = tls.cli(master, "SET probe 1\nWAIT 1 100\n");
            known.contains(&replica.to_string()) && acked.lines().nth(1) == Some("1")
        },
    )
    .await;
    let url = format!("rediss+sentinel://127.0.0.1:{sentinel}/{SERVICE}");
    tls.assert_works_only_with_both(&url).await;
}

/// `rediss+cluster://`: three TLS-only masters that require a client certificate, their
/// cluster bus over TLS too. Portcullis reaches every node it is redirected to over TLS.
#[tokio::test]
async fn rediss_cluster_with_a_private_ca_and_a_client_certificate() {
    let tls = TlsRedis::new();
    let ports = [free_port(), free_port(), free_port()];
    let mut nodes = Vec::new();
    for port in ports {
        let mut args = tls.args(port);
        args.extend(["--dir".to_owned(), tls.dir_of(port)]);
        args.extend(
            [
                "--cluster-enabled",
                "yes",
                "--tls-cluster",
                "yes",
                "--cluster-config-file",
                "nodes.conf",
                "--cluster-node-timeout",
                "3000",
            ]
            .map(String::from),
        );
        nodes.push(RedisServer::start_with(port, &strs(&args)).await);
    }
    let created = std::process::Command::new("redis-cli")
        .args(["--tls", "--cacert", &tls.file("ca.pem")])
        .args([
            "--cert",
            &tls.file("client.pem"),
            "--key",
            &tls.file("client.key"),
        ])
        .args(["--cluster", "create"])
        .args(ports.map(|p| format!("127.0.0.1:{p}")))
        .args(["--cluster-replicas", "0", "--cluster-yes"])
        .output()
        .expect("redis-cli runs");
    assert!(
        created.status.success(),
        "redis-cli --cluster create: {}",
        String::from_utf8_lossy(&created.stdout)
    );
    eventually("every node to see a healthy cluster", || async {
        ports.iter().all(|&p| {
            let info = tls.cli(p, "CLUSTER INFO\n");
            info.contains("cluster_state:ok") && info.contains("cluster_known_nodes:3")
        })
    })
    .await;
    let url = format!(
        "rediss+cluster://{}",
        ports.map(|p| format!("127.0.0.1:{p}")).join(",")
    );
    tls.assert_works_only_with_both(&url).await;
}
