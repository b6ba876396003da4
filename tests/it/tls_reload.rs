//! Certificate reload: a pair replaced on disk is served to new TLS connections without a
//! restart (files written in place, renamed over, or swapped through a Kubernetes Secret
//! volume's `..data` symlink), connections opened before keep serving, and a pair that does not
//! load leaves the last good one serving.

use std::path::Path;

use crate::common::*;

const RELOAD_ERRORS: &str = r#"portcullis_tls_reloads_total{result="error"}"#;
const RELOADS_OK: &str = r#"portcullis_tls_reloads_total{result="ok"}"#;

/// Portcullis serving `tls.crt`/`tls.key` in `dir` (a copy of pair A), checked every 100 ms.
async fn start_with_pair_a(dir: &Path) -> Sidecar {
    std::fs::copy(cert_file("a.pem"), dir.join("tls.crt")).unwrap();
    std::fs::copy(cert_file("a.key"), dir.join("tls.key")).unwrap();
    let echo = start_echo().await;
    let server = "[server.tls]\ncert = \"tls.crt\"\nkey = \"tls.key\"\nwatch_interval = \"100ms\"";
    let sidecar = Sidecar::start_in(&config(&http_url(echo), server, ""), dir).await;
    assert_eq!(
        served_cert(sidecar.addr).await,
        cert_der(&cert_file("a.pem"))
    );
    sidecar
}

/// Replaces `path` in one step (write a sibling, rename over), as a secret volume update does.
fn replace_atomically(path: &Path, contents: &[u8]) {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, contents).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn certificate_swapped_on_disk_is_served_to_new_connections() {
    let dir = tempfile::tempdir().unwrap();
    let sidecar = start_with_pair_a(dir.path()).await;
    let b = cert_der(&cert_file("b.pem"));

    // Overwrite the files in place, certificate first: the watcher may see B's certificate with
    // A's key for a moment, which it must reject, before it sees the whole new pair.
    std::fs::write(
        dir.path().join("tls.crt"),
        std::fs::read(cert_file("b.pem")).unwrap(),
    )
    .unwrap();
    std::fs::write(
        dir.path().join("tls.key"),
        std::fs::read(cert_file("b.key")).unwrap(),
    )
    .unwrap();

    let addr = sidecar.addr;
    eventually("a new connection is served certificate B", || {
        let b = b.clone();
        async move { served_cert(addr).await == b }
    })
    .await;
    assert!(metric(&sidecar.metrics().await, RELOADS_OK) >= 1.0);

    // Requests work on a connection that got the new certificate.
    let tls = tls_connect(addr, &[b"h2"]).await;
    let mut client = h2(tls).await;
    let req = http::Request::builder()
        .uri(format!("https://localhost:{}/after-reload", addr.port()))
        .body(empty())
        .unwrap();
    let resp = bounded("request after reload", client.send_request(req))
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broken_pair_on_disk_keeps_the_last_good_certificate_serving() {
    let dir = tempfile::tempdir().unwrap();
    let sidecar = start_with_pair_a(dir.path()).await;
    let a = cert_der(&cert_file("a.pem"));
    let crt = dir.path().join("tls.crt");
    let key = dir.path().join("tls.key");

    // 1. A certificate file that is not PEM at all.
    let s = &sidecar;
    replace_atomically(&crt, b"this is not a certificate\n");
    eventually(
        "the watcher rejects the unparsable certificate",
        || async move { metric(&s.metrics().await, RELOAD_ERRORS) >= 1.0 },
    )
    .await;
    assert_eq!(served_cert(sidecar.addr).await, a);

    // 2. A valid certificate whose key is not the one on disk (B's certificate, A's key).
    replace_atomically(&crt, &std::fs::read(cert_file("b.pem")).unwrap());
    eventually("the watcher rejects the mismatched pair", || async move {
        metric(&s.metrics().await, RELOAD_ERRORS) >= 2.0
    })
    .await;
    assert_eq!(served_cert(sidecar.addr).await, a);
    assert_eq!(metric(&sidecar.metrics().await, RELOADS_OK), 0.0);

    // 3. Completing the pair recovers: B is served.
    replace_atomically(&key, &std::fs::read(cert_file("b.key")).unwrap());
    let b = cert_der(&cert_file("b.pem"));
    let addr = sidecar.addr;
    eventually("the completed pair B is served", || {
        let b = b.clone();
        async move { served_cert(addr).await == b }
    })
    .await;
}

/// A Kubernetes Secret volume as the kubelet writes it: the files are `..data/<name>`
/// symlinks, `..data` is a symlink to a timestamped folder holding the pair, and an update
/// writes a new folder, points a new symlink at it, renames that over `..data` (the one atomic
/// step) and removes the old folder.
struct SecretVolume {
    dir: std::path::PathBuf,
    generation: u32,
}

impl SecretVolume {
    /// A volume in `dir` holding `tls.crt` and `tls.key` from the test pair `name`.
    fn new(dir: &Path, name: &str) -> SecretVolume {
        let mut volume = SecretVolume {
            dir: dir.to_owned(),
            generation: 0,
        };
        volume.update(name);
        for file in ["tls.crt", "tls.key"] {
            std::os::unix::fs::symlink(Path::new("..data").join(file), dir.join(file)).unwrap();
        }
        volume
    }

    /// Swaps the pair for the test pair `name`.
    fn update(&mut self, name: &str) {
        self.generation += 1;
        let folder = format!(
            "..2026_01_01_00_00_{:02}.{}",
            self.generation,
            1000 + self.generation
        );
        let path = self.dir.join(&folder);
        std::fs::create_dir(&path).unwrap();
        std::fs::copy(cert_file(&format!("{name}.pem")), path.join("tls.crt")).unwrap();
        std::fs::copy(cert_file(&format!("{name}.key")), path.join("tls.key")).unwrap();
        let tmp = self.dir.join("..data_tmp");
        std::os::unix::fs::symlink(&folder, &tmp).unwrap();
        let old = std::fs::read_link(self.dir.join("..data")).ok();
        std::fs::rename(&tmp, self.dir.join("..data")).unwrap();
        if let Some(old) = old {
            std::fs::remove_dir_all(self.dir.join(old)).unwrap();
        }
    }
}

/// A request on an open HTTP/2 connection answers 200.
async fn answers_on(client: &mut hyper::client::conn::http2::SendRequest<TestBody>, port: u16) {
    let req = http::Request::builder()
        .uri(format!("https://localhost:{port}/on-an-open-connection"))
        .body(empty())
        .unwrap();
    let resp = bounded("a request on the open connection", client.send_request(req))
        .await
        .expect("the open connection still serves");
    assert_eq!(resp.status(), 200);
}

/// The certificate a Kubernetes Secret volume update swaps in (through the `..data` symlink)
/// reaches new connections, while a connection opened before keeps its certificate and goes
/// on serving requests.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secret_volume_update_reaches_new_connections_and_open_ones_keep_theirs() {
    let dir = tempfile::tempdir().unwrap();
    let mut volume = SecretVolume::new(dir.path(), "a");
    let echo = start_echo().await;
    let server = "[server.tls]\ncert = \"tls.crt\"\nkey = \"tls.key\"\nwatch_interval = \"100ms\"";
    let sidecar = Sidecar::start_in(&config(&http_url(echo), server, ""), dir.path()).await;
    let (addr, a, b) = (
        sidecar.addr,
        cert_der(&cert_file("a.pem")),
        cert_der(&cert_file("b.pem")),
    );

    let open = tls_connect(addr, &[b"h2"]).await;
    let open_cert = open.get_ref().1.peer_certificates().unwrap()[0].clone();
    assert_eq!(open_cert, a);
    let mut open = h2(open).await;
    answers_on(&mut open, addr.port()).await;

    volume.update("b");
    eventually("a new connection is served certificate B", || {
        let b = b.clone();
        async move { served_cert(addr).await == b }
    })
    .await;
    // (A tick that read the certificate before the swap and the key after it counts one
    // rejected pair; the next tick loads the whole new one.)
    assert!(metric(&sidecar.metrics().await, RELOADS_OK) >= 1.0);

    // The connection opened before the reload still serves, on its TLS session with A.
    answers_on(&mut open, addr.port()).await;

    // And a second update is followed as well.
    volume.update("a");
    eventually("a new connection is served certificate A again", || {
        let a = a.clone();
        async move { served_cert(addr).await == a }
    })
    .await;
}
