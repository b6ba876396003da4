//! TLS

use super::*;

/// A file in `tests/certs/`.
pub fn cert_file(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/certs")
        .join(name)
}

/// The first certificate in a PEM file, as DER.
pub fn cert_der(path: &Path) -> CertificateDer<'static> {
    CertificateDer::from_pem_file(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// A rustls client config (ring) that trusts only the test CA and offers `alpn`.
pub fn tls_client_config(alpn: &[&[u8]]) -> Arc<rustls::ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(cert_der(&cert_file("ca.pem"))).unwrap();
    let mut config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Arc::new(config)
}

/// Connects to `addr` with TLS as `localhost`, offering `alpn`, verifying against the test CA.
pub async fn tls_connect(addr: SocketAddr, alpn: &[&[u8]]) -> TlsStream<TcpStream> {
    let tcp = bounded("connecting", TcpStream::connect(addr))
        .await
        .unwrap();
    let connector = tokio_rustls::TlsConnector::from(tls_client_config(alpn));
    bounded(
        "TLS handshake",
        connector.connect(ServerName::try_from("localhost").unwrap(), tcp),
    )
    .await
    .expect("TLS handshake")
}

/// The certificate a new TLS connection to `addr` is served.
pub async fn served_cert(addr: SocketAddr) -> CertificateDer<'static> {
    let tls = tls_connect(addr, &[b"http/1.1"]).await;
    tls.get_ref()
        .1
        .peer_certificates()
        .expect("server sent a certificate")[0]
        .clone()
        .into_owned()
}

/// Runs `openssl ARGS` in `dir`, failing the test with openssl's stderr if it fails.
pub fn openssl(dir: &Path, args: &[&str]) {
    let out = std::process::Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("openssl runs (install the openssl package)");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The key of a certificate made by [`issue_cert`]: openssl's algorithm and its option.
pub const P256: [&str; 2] = ["ec", "ec_paramgen_curve:P-256"];
/// An RSA 2048 key, for [`issue_cert`].
pub const RSA2048: [&str; 2] = ["rsa", "rsa_keygen_bits:2048"];

/// Makes a test CA in `dir` (`ca.pem`, `ca.key`: ECDSA P-256, valid `days`) named `cn`, for
/// certificates made at run time (a fixed one cannot meet a scanner's lifetime rules).
pub fn make_ca(dir: &Path, cn: &str, days: u32) {
    let days = days.to_string();
    openssl(
        dir,
        &[
            "req",
            "-x509",
            "-newkey",
            P256[0],
            "-pkeyopt",
            P256[1],
            "-nodes",
            "-keyout",
            "ca.key",
            "-out",
            "ca.pem",
            "-days",
            &days,
            "-subj",
            &format!("/CN={cn}"),
            "-addext",
            "basicConstraints=critical,CA:TRUE",
            "-addext",
            "keyUsage=critical,keyCertSign,cRLSign",
        ],
    );
}

/// Issues `NAME.pem` and `NAME.key` in `dir`, signed by the CA of [`make_ca`]: a `key` key
/// ([`P256`], [`RSA2048`]), extended key usage `usage` (`serverAuth`, `clientAuth`), subject
/// alternative names `san` (`DNS:localhost,IP:127.0.0.1`), valid `days`.
pub fn issue_cert(dir: &Path, name: &str, key: [&str; 2], usage: &str, san: &str, days: u32) {
    let (keyfile, csr, pem, ext) = (
        format!("{name}.key"),
        format!("{name}.csr"),
        format!("{name}.pem"),
        format!("{name}.ext"),
    );
    std::fs::write(
        dir.join(&ext),
        format!(
            "basicConstraints=critical,CA:FALSE\n\
             keyUsage=critical,digitalSignature,keyEncipherment\n\
             extendedKeyUsage={usage}\nsubjectAltName={san}\n"
        ),
    )
    .unwrap();
    openssl(
        dir,
        &[
            "req",
            "-new",
            "-newkey",
            key[0],
            "-pkeyopt",
            key[1],
            "-nodes",
            "-keyout",
            &keyfile,
            "-out",
            &csr,
            "-subj",
            &format!("/CN={name}"),
        ],
    );
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            &csr,
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-sha256",
            "-days",
            &days.to_string(),
            "-extfile",
            &ext,
            "-out",
            &pem,
        ],
    );
}
