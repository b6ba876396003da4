//! TLS: the main listener's rustls server config with a certificate that can be swapped on
//! disk without a restart, and the client config used to reach an `https://` upstream.
//!
//! One crypto provider (ring) serves everything. The server speaks TLS 1.2 and 1.3 only and
//! offers ALPN `h2` and `http/1.1`.
//!
//! Reload: a background task reads the certificate and key files every `watch_interval` and,
//! when their bytes change, builds a new [`CertifiedKey`]. New handshakes get the new pair;
//! connections already open keep theirs. A pair that does not load (half-written files, a key
//! that does not match the certificate) is logged and counted, and the last good pair keeps
//! serving. Reading the files rather than watching inode events also follows Kubernetes secret
//! volumes, which swap a symlink.

use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;

use crate::config::TlsConfig;
use crate::metrics::Metrics;

/// Why a TLS configuration could not be built.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A file could not be read.
    #[error("{path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The io error.
        source: std::io::Error,
    },
    /// A file holds no usable PEM item of the expected kind.
    #[error("{path}: {reason}")]
    Pem {
        /// The file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// rustls refused the material (key does not match certificate, unsupported key type...).
    #[error("{0}")]
    Rustls(#[from] rustls::Error),
}

/// The provider used for every TLS context in the process.
pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Serves the current certificate to every handshake; swapped by [`watch`].
#[derive(Debug)]
pub struct CertResolver {
    current: RwLock<Arc<CertifiedKey>>,
}

impl ResolvesServerCert for CertResolver {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        // A poisoned lock still holds a valid pair (writers only assign a whole Arc).
        let guard = self.current.read().unwrap_or_else(|e| e.into_inner());
        Some(Arc::clone(&guard))
    }
}

/// Loads the pair named in `tls` and builds the listener's server config. The returned
/// resolver is what [`watch`] updates.
pub fn server_config(
    tls: &TlsConfig,
) -> Result<(Arc<rustls::ServerConfig>, Arc<CertResolver>), TlsError> {
    let provider = provider();
    let (cert_pem, key_pem) = read_both(&tls.cert, &tls.key)?;
    let pair = pair_from_bytes(&tls.cert, &cert_pem, &tls.key, &key_pem, &provider)?;
    let resolver = Arc::new(CertResolver {
        current: RwLock::new(Arc::new(pair)),
    });
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])?
        .with_no_client_auth()
        .with_cert_resolver(resolver.clone());
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok((Arc::new(config), resolver))
}

/// Re-reads the certificate and key every `tls.watch_interval` and swaps in a changed pair
/// that loads. Runs until the task is dropped or aborted.
pub async fn watch(tls: TlsConfig, resolver: Arc<CertResolver>, metrics: Arc<Metrics>) {
    let provider = provider();
    let mut last = read_both(&tls.cert, &tls.key).ok();
    let mut tick = tokio::time::interval(tls.watch_interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tick.tick().await;
    loop {
        tick.tick().await;
        let Ok(bytes) = read_both(&tls.cert, &tls.key) else {
            // Mid-swap or briefly missing: try again next tick, keep serving the old pair.
            continue;
        };
        if last.as_ref() == Some(&bytes) {
            continue;
        }
        match pair_from_bytes(&tls.cert, &bytes.0, &tls.key, &bytes.1, &provider) {
            Ok(pair) => {
                *resolver.current.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(pair);
                metrics.tls_reload(true);
                tracing::info!(cert = %tls.cert.display(), "tls certificate reloaded");
            }
            Err(error) => {
                metrics.tls_reload(false);
                tracing::error!(%error, "new tls certificate rejected; still serving the previous one");
            }
        }
        last = Some(bytes);
    }
}

fn read_both(cert: &Path, key: &Path) -> Result<(Vec<u8>, Vec<u8>), TlsError> {
    let read = |p: &Path| {
        std::fs::read(p).map_err(|source| TlsError::Read {
            path: p.to_owned(),
            source,
        })
    };
    Ok((read(cert)?, read(key)?))
}

fn pair_from_bytes(
    cert_path: &Path,
    cert_pem: &[u8],
    key_path: &Path,
    key_pem: &[u8],
    provider: &CryptoProvider,
) -> Result<CertifiedKey, TlsError> {
    let chain = certs_from_pem(cert_path, cert_pem)?;
    let key = PrivateKeyDer::from_pem_slice(key_pem).map_err(|e| TlsError::Pem {
        path: key_path.to_owned(),
        reason: format!("no usable private key ({e})"),
    })?;
    Ok(CertifiedKey::from_der(chain, key, provider)?)
}

fn certs_from_pem(path: &Path, pem: &[u8]) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let chain = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| TlsError::Pem {
            path: path.to_owned(),
            reason: format!("bad certificate PEM ({e})"),
        })?;
    if chain.is_empty() {
        return Err(TlsError::Pem {
            path: path.to_owned(),
            reason: "no certificate found".into(),
        });
    }
    Ok(chain)
}

/// The client config for an `https://` upstream: the CA bundle in `ca_file` if given (and only
/// it), else the system's roots. ALPN is set by the connector from the upstream's protocol.
pub fn upstream_client_config(ca_file: Option<&Path>) -> Result<rustls::ClientConfig, TlsError> {
    let mut roots = rustls::RootCertStore::empty();
    match ca_file {
        Some(path) => {
            let pem = std::fs::read(path).map_err(|source| TlsError::Read {
                path: path.to_owned(),
                source,
            })?;
            for cert in certs_from_pem(path, &pem)? {
                roots.add(cert)?;
            }
        }
        None => {
            let found = rustls_native_certs::load_native_certs();
            for error in &found.errors {
                tracing::warn!(%error, "could not load some system root certificates");
            }
            let (added, ignored) = roots.add_parsable_certificates(found.certs);
            tracing::debug!(added, ignored, "system root certificates loaded");
        }
    }
    Ok(rustls::ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])?
        .with_root_certificates(roots)
        .with_no_client_auth())
}
