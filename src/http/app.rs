//! The shared state of a running Portcullis: one [`App`] behind an `Arc`, cloned into every
//! connection.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use tokio::sync::Semaphore;
use tokio_rustls::TlsAcceptor;

use crate::auth::watchlist::Watchlist;
use crate::auth::Passwords;
use crate::config::{Config, ConfigError};
use crate::http::proxy::Upstream;
use crate::limits::Limits;
use crate::metrics::Metrics;
use crate::otp::Otp;
use crate::store::cache::KeyCache;
use crate::store::Store;
use crate::tls::{self, CertResolver};
use crate::users::{Logins, Users};

/// Everything a request handler may need.
pub struct App {
    /// The validated configuration.
    pub config: Config,
    /// The upstream client.
    pub upstream: Upstream,
    /// Metrics.
    pub metrics: Arc<Metrics>,
    /// TLS for the main listener, when configured.
    pub tls: Option<(TlsAcceptor, Arc<CertResolver>)>,
    /// Permits for client connections (`server.max_connections`): one per accepted connection
    /// and one per upgraded tunnel.
    pub connections: Arc<Semaphore>,
    /// Users, keys, counters.
    pub store: Store,
    /// Validated keys in front of the store.
    pub keys: Arc<KeyCache>,
    /// The open connections sessions opened, for invalidations to reach
    /// (`session.revoke_open_connections`).
    pub watchlist: Arc<Watchlist>,
    /// Password hashing, off the async threads.
    pub passwords: Passwords,
    /// Login abuse limits.
    pub limits: Limits,
    /// The OpenID Connect provider, when `[oidc]` is configured.
    pub oidc: Option<Arc<crate::oidc::Oidc>>,
    /// One-time passcodes for password reset.
    pub otp: Otp,
    ready: AtomicBool,
}

// === impl App ===

impl std::fmt::Debug for App {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("App")
            .field("config", &self.config)
            .field("tls", &self.tls.is_some())
            .field("ready", &self.is_ready())
            .finish_non_exhaustive()
    }
}

impl App {
    /// Builds the state. Fails, naming the config key, on TLS material that does not load, so
    /// that `serve` stops before binding anything and `check-config` can report it. Call it
    /// inside a Tokio runtime: the store starts its background tasks here (it never waits for
    /// Redis).
    pub fn new(config: Config) -> Result<Arc<App>, ConfigError> {
        let tls = match &config.server.tls {
            Some(t) => {
                let (server, resolver) =
                    tls::server_config(t).map_err(|e| ConfigError::Invalid {
                        key: "server.tls".into(),
                        reason: e.to_string(),
                    })?;
                Some((TlsAcceptor::from(server), resolver))
            }
            None => None,
        };
        let upstream = Upstream::new(&config.upstream).map_err(|e| ConfigError::Invalid {
            key: "upstream.ca_file".into(),
            reason: e.to_string(),
        })?;
        let connections = Arc::new(Semaphore::new(config.server.max_connections));
        let metrics = Arc::new(Metrics::new());
        let store = Store::open_observed(&config.store, metrics.clone()).map_err(|e| {
            ConfigError::Invalid {
                key: "store.url".into(),
                reason: e.to_string(),
            }
        })?;
        let keys = Arc::new(KeyCache::new(&config.store, metrics.clone()));
        let passwords =
            Passwords::new(config.passwords.params).map_err(|e| ConfigError::Invalid {
                key: "passwords".into(),
                reason: e.to_string(),
            })?;
        let limits = Limits::new(&config.rate_limit);
        let oidc = config
            .oidc
            .as_ref()
            .map(|o| crate::oidc::Oidc::new(o, config.store.cache_ttl).map(Arc::new))
            .transpose()
            .map_err(|e| ConfigError::Invalid {
                key: "oidc.ca_file".into(),
                reason: e.to_string(),
            })?;
        let otp = Otp::new(&config.otp, metrics.clone())?;
        Ok(Arc::new(App {
            oidc,
            upstream,
            store,
            keys,
            watchlist: Arc::new(Watchlist::new()),
            passwords,
            limits,
            otp,
            metrics,
            tls,
            connections,
            config,
            ready: AtomicBool::new(false),
        }))
    }

    /// User management on this process's store, clearing its own key cache directly too.
    pub fn users(&self) -> Users<'_> {
        Users::new(&self.store, &self.passwords, &self.config.tokens)
            .with_policy(&self.config.passwords.policy)
            .with_cache(&self.keys)
    }

    /// Password login on this process's store, hashing and limits.
    pub fn logins(&self) -> Logins<'_> {
        Logins {
            store: &self.store,
            passwords: &self.passwords,
            limits: &self.limits,
            disabled: self.config.passwords.disable_password_auth,
        }
    }

    /// The OIDC session bookkeeping (refresh, logout, invalidation) on this process's store.
    pub fn oidc_sessions(&self) -> crate::oidc::session::Sessions<'_> {
        crate::oidc::session::Sessions {
            store: &self.store,
            keys: &self.keys,
            oidc: self.oidc.as_deref(),
            session_lifetime: self.config.session.lifetime,
        }
    }

    /// Whether `/readyz` answers 200: listeners are serving and shutdown has not begun.
    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Acquire)
    }

    /// Sets the readiness latch (true once serving; false when draining).
    pub fn set_ready(&self, ready: bool) {
        self.ready.store(ready, Ordering::Release);
    }
}
