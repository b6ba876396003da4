//! The black-box tests, in one test binary (`cargo test --test it`; one module with
//! `cargo test --test it edges::`): Portcullis in-process on `127.0.0.1:0` or as the real
//! binary, over real sockets, with the helpers all of them share in [`common`].
//!
//! All the tests of this binary share one process and run in parallel, so none may change
//! what the others see: no environment variables are set (a child process gets its own
//! environment through [`common::command`]), no global tracing subscriber is installed, no
//! port is fixed (and [`common::free_port`] never hands one out twice), and every test on the
//! shared Redis works under a key prefix of its own ([`common::random_key_prefix`]) and
//! deletes only that. Fixtures stay beside this folder:
//! `tests/certs`, `tests/keys`, `tests/oidc` (the provider's Node.js side) and `tests/smtp`.

mod common;

mod abuse;
mod admin;
mod assertion;
mod atomic_writes;
mod authz;
mod browser;
mod canonical;
mod cli;
mod coder_client;
mod connection_limits;
mod csrf;
mod deploy;
mod directory_bench;
mod docs;
mod doctor;
mod edges;
mod explain;
mod faults;
mod forwarding;
mod header_hygiene;
mod health;
mod identity;
mod idle;
mod key_cache;
mod logs;
mod oidc;
mod otp;
mod passwords;
mod policy;
mod protocols;
mod request_errors;
mod revocation;
mod shutdown;
mod sign_in;
mod smuggling;
mod store;
mod store_access;
mod store_outage;
mod streaming;
mod timeouts;
mod tls_reload;
mod tls_scan;
mod tokens;
mod users;
mod users_cli;
mod verify;
