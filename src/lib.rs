//! Portcullis: a reverse-proxy authorization sidecar.
//!
//! It terminates TLS, serves a Coder-compatible authentication API, checks every proxied
//! request against the route policy, and forwards authorized traffic upstream with identity
//! headers the application can trust. See `DESIGN.md` in the shared folder for the contract.
//!
//! # Layout
//! - [`config`]: the TOML schema and the validated [`config::Config`].
//! - [`server`]: listeners, TLS accept, HTTP/1.1 and HTTP/2, limits, idle timer, shutdown.
//! - [`tls`]: rustls configs and certificate reload.
//! - [`upstream`]: the connection pool to the upstream.
//! - [`router`]: which handler answers a request on the main listener.
//! - [`policy`]: the canonical form of a request path, and the route policy for proxied
//!   traffic.
//! - [`proxy`]: forwarding, host checks, upgrades.
//! - [`rbac`]: roles, scopes, allow lists and the permission evaluator.
//! - [`headers`]: hop-by-hop, identity and forwarded header hygiene.
//! - [`assertion`]: the signed identity assertion (ES256 JWT) and its JWKS.
//! - [`verify`]: forward-auth (`/.portcullis/verify`) for nginx, Traefik, Caddy and Envoy.
//! - [`auth`]: session tokens (format, extraction, stripping) and password hashing.
//! - [`api`]: the Coder-compatible API under `api.prefix`.
//! - [`csrf`]: the CSRF defence for cookie-authenticated writes (double submit, same site).
//! - [`limits`]: login abuse limits (per IP, per account).
//! - [`oidc`]: single sign-on through an OpenID Connect provider, OIDC session refresh, and
//!   moving password accounts onto it (convert-login).
//! - [`otp`]: one-time passcodes for password reset, and their delivery (SMTP, webhook, log).
//! - [`admin`]: `/healthz`, `/readyz`, `/metrics`.
//! - [`app`]: the shared state.
//! - [`body`]: the response body type.
//! - [`error`]: the request-path error and its one mapping to a response.
//! - [`metrics`]: Prometheus metrics.
//! - [`signal`]: the shutdown signal (SIGTERM, SIGINT).
//! - [`store`]: users, organizations, API keys, counters and invalidation; memory or Redis.
//! - [`users`]: user management shared by the API and the command line (create, password,
//!   status, delete, issue keys), with the invalidations each publishes.
//! - [`echo`]: `portcullis echo`, the inspection upstream.
//! - [`logging`]: tracing set-up.

#![forbid(unsafe_code)]
#![deny(rust_2018_idioms)]
#![warn(missing_docs)]

pub mod admin;
pub mod api;
pub mod app;
pub mod assertion;
pub mod auth;
pub mod body;
pub mod config;
pub mod csrf;
pub mod echo;
pub mod error;
pub mod headers;
pub mod limits;
pub mod logging;
pub mod metrics;
pub mod oidc;
pub mod otp;
pub mod policy;
pub mod proxy;
pub mod rbac;
pub mod router;
pub mod server;
pub mod signal;
pub mod store;
pub mod tls;
pub mod upstream;
pub mod users;
pub mod verify;

pub use app::App;
pub use config::Config;
pub use error::{Error, Result};
