//! Abuse resistance, black-box: what a client can make Portcullis hold, count or store.
//!
//! - [`slow_bodies`]: a trickled API body is cut off at its deadline, trickling clients do not
//!   starve the next one, and a proxied upload that stops sending is closed after
//!   `server.idle_timeout` (while a slow but steady one goes through);
//! - [`api_limit`]: `rate_limit.api_per_minute`, per user or per client, and the login group's
//!   IPv6 /64 buckets;
//! - [`bounded_input`]: attacker-sized fields are refused before they reach the store.

mod api_limit;
mod bounded_input;
mod slow_bodies;

use std::net::{IpAddr, SocketAddr};

use hyper_util::rt::TokioIo;

use crate::common::*;

/// Opens an HTTP/1.1 connection to `addr` from the local address `from`: every address of
/// 127.0.0.0/8 is this host on Linux, so one test can be many clients.
async fn h1_from(
    addr: SocketAddr,
    from: IpAddr,
) -> hyper::client::conn::http1::SendRequest<TestBody> {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind(SocketAddr::new(from, 0)).unwrap();
    let stream = bounded("connecting", socket.connect(addr)).await.unwrap();
    let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .unwrap();
    tokio::spawn(conn);
    sender
}
