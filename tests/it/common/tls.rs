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
