//! Layer 4: HTTP. Everything that knows about requests and responses: the response body, the
//! one error type and its renderer, the client connection ([`peer`]), authentication and the
//! route decision ([`admit`]), forwarding ([`proxy`]) and its upgraded tunnels ([`tunnel`]),
//! the watch that closes open connections a revocation reaches ([`watch`]), forward-auth
//! ([`verify`]), the sign-in and sign-out pages ([`sign_in`]), the JWKS, the admin listener, the
//! echo upstream, the router, CSRF, and the Coder API ([`api`]); the access log ([`access`]) and
//! the audit log ([`audit`]).
//! It calls the services of layer 3 and never the server of layer 5.

pub mod access;
pub mod activity;
pub mod admin;
pub mod admit;
pub mod api;
pub mod app;
pub mod audit;
pub mod body;
pub mod csrf;
pub mod echo;
pub mod error;
pub mod explain;
pub mod jwks;
pub mod peer;
pub mod proxy;
pub mod router;
pub mod sign_in;
pub mod tunnel;
pub mod verify;
pub mod watch;
