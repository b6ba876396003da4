//! Portcullis: a reverse-proxy authorization sidecar.
//!
//! It terminates TLS, serves a Coder-compatible authentication API, checks every proxied
//! request against the route policy, and forwards authorized traffic upstream with identity
//! headers the application can trust. See `DESIGN.md` in the shared folder for the contract.
//!
//! # Module map
//!
//! The crate is built in layers. A module may import its own layer and the layers below it,
//! never one above; `layering::imports_only_point_down_the_layers` (part of `cargo test`) reads
//! `src/` and fails on an import that points up.
//!
//! **L0 — vocabulary** (imports nothing of the crate but other L0 modules)
//! - [`model`]: the stored records (users, organizations, API keys, memberships, sessions),
//!   their ids, statuses and login types.
//! - [`rbac`]: the only lists of roles, resource types and actions (as types), scopes, allow
//!   lists, and the permission evaluator.
//! - [`policy`]: the canonical form of a request path, and the compiled route policy.
//! - [`headers`]: hop-by-hop, identity and forwarded header hygiene.
//! - [`coder`]: Coder's wire texts (messages, details) and validation helpers.
//! - [`assertion`]: session claims → the signed identity assertion (ES256 JWT) and its JWKS.
//! - [`metrics`]: the Prometheus registry and every metric's labels.
//! - [`report`]: an error and its source chain on one log line.
//!
//! **L1 — configuration**
//! - [`config`]: the TOML schema, parsed and validated section by section into plain data. It
//!   builds no live object (no pools, no tasks); L0 only.
//!
//! **L2 — infrastructure** (L0, L1)
//! - [`store`]: users, organizations, keys, counters and invalidation on memory or Redis, with
//!   its key names in one place, its own error, and the key cache in front of it.
//! - [`tls`]: rustls server and client configs, certificate reload.
//! - [`upstream`]: the connection pool to the upstream, with its own error.
//!
//! **L3 — services** (L0–L2; no request or response types)
//! - [`auth`]: session tokens (format, extraction, stripping), password hashing off the async
//!   threads, password strength, authenticating a token against the cache and store, and the
//!   watchlist of open connections by key and user that invalidations reach.
//! - [`limits`]: login abuse limits, keyed by client IP and account.
//! - [`users`]: user management shared by the API and the command line (create, password,
//!   status, roles, membership, delete, keys), the id-or-name lookups, and the invalidations
//!   each change publishes.
//! - [`otp`]: one-time passcodes for password reset and their delivery (SMTP, webhook, log).
//! - [`oidc`]: the OpenID Connect provider (discovery, code exchange, ID token checks, refresh)
//!   and the OIDC session bookkeeping.
//!
//! **L4 — HTTP** (L0–L3)
//! - [`http`]: the response body, the one error type and its renderer, the client connection,
//!   the one `authenticate` and `admit`, forwarding and its upgraded tunnels, the watch that
//!   closes open connections a revocation reaches, forward-auth, the JWKS, the admin
//!   listener, the echo upstream, the router, CSRF, the shared state ([`App`]), `explain`
//!   (a traced route decision and upstream head, never sent), and the
//!   Coder-compatible API ([`http::api`]).
//!
//! **L5 — process** (everything)
//! - [`server`]: listeners, TLS accept, HTTP/1.1 and HTTP/2, connection limits, idle timer,
//!   shutdown.
//! - [`signal`]: the shutdown signal (SIGTERM, SIGINT).
//! - [`logging`]: tracing set-up.
//! - [`doctor`]: `portcullis doctor`, live checks of a deployment through real requests.
//! - `main.rs`, `cli.rs`, `health.rs` (the binary): the command line.
//!
//! [`VERSION`] and [`COMMIT`] say which build this is (`portcullis --version`, the
//! `portcullis_build_info` metric).

#![forbid(unsafe_code)]
#![deny(rust_2018_idioms)]
#![warn(missing_docs)]

pub mod assertion;
pub mod auth;
pub mod coder;
pub mod config;
pub mod doctor;
pub mod headers;
pub mod http;
pub mod limits;
pub mod logging;
pub mod metrics;
pub mod model;
pub mod oidc;
pub mod otp;
pub mod policy;
pub mod rbac;
pub mod report;
pub mod server;
pub mod signal;
pub mod store;
pub mod tls;
pub mod upstream;
pub mod users;

#[cfg(test)]
mod layering;

pub use config::Config;
pub use http::app::App;
pub use http::error::{Error, Result};

/// This build's version: the crate's.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// The commit this binary was built from, when the build named one: `PORTCULLIS_COMMIT` in the
/// environment of `cargo build` (deploy/Dockerfile passes its `VCS_REF` build argument). `None`
/// for a plain `cargo build`: there is no build script to ask git, so that a build from a tarball
/// or without git works the same.
pub const COMMIT: Option<&str> = match option_env!("PORTCULLIS_COMMIT") {
    Some(commit) if !commit.is_empty() => Some(commit),
    _ => None,
};
