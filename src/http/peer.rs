//! The client connection a request came on, described once per connection.

use std::net::{IpAddr, SocketAddr};

use http::{HeaderMap, HeaderValue};
use ipnet::IpNet;

use crate::headers::X_FORWARDED_FOR;

/// What the proxy knows about the client connection a request came on. Built once per
/// connection.
#[derive(Debug, Clone)]
pub struct Peer {
    /// The client's address as seen on the socket.
    pub addr: SocketAddr,
    /// Whether the connection is TLS (sets `X-Forwarded-Proto`).
    pub tls: bool,
    /// Whether `addr` is in `server.trusted_proxies`.
    pub trusted: bool,
    /// `addr`'s IP as a header value, rendered once per connection for `X-Forwarded-For`.
    pub ip: HeaderValue,
}

// === impl Peer ===

impl Peer {
    /// Describes a client connection from `addr`.
    pub fn new(addr: SocketAddr, tls: bool, trusted: bool) -> Peer {
        let ip = HeaderValue::from_maybe_shared(bytes::Bytes::from(addr.ip().to_string()))
            .expect("an IP address is a valid header value");
        Peer {
            addr,
            tls,
            trusted,
            ip,
        }
    }

    /// The client's address: the socket peer, or, behind trusted proxies (`trusted`, the
    /// networks of `server.trusted_proxies`), the nearest address in `X-Forwarded-For` that is
    /// not one of them.
    pub fn client_ip(&self, headers: &HeaderMap, trusted: &[IpNet]) -> IpAddr {
        if !self.trusted {
            return self.addr.ip();
        }
        let chain: Vec<IpAddr> = headers
            .get_all(&X_FORWARDED_FOR)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .filter_map(|a| a.trim().parse().ok())
            .collect();
        chain
            .iter()
            .rev()
            .find(|ip| !trusted.iter().any(|n| n.contains(*ip)))
            .copied()
            .unwrap_or_else(|| self.addr.ip())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_client_behind_trusted_proxies_is_the_nearest_untrusted_address() {
        let nets: Vec<IpNet> = vec!["10.0.0.0/8".parse().unwrap()];
        let mut h = HeaderMap::new();
        h.insert(
            &X_FORWARDED_FOR,
            "6.6.6.6, 1.2.3.4, 10.0.0.7".parse().unwrap(),
        );
        let trusted = Peer::new("10.0.0.1:5000".parse().unwrap(), false, true);
        assert_eq!(
            trusted.client_ip(&h, &nets),
            "1.2.3.4".parse::<IpAddr>().unwrap()
        );
        let untrusted = Peer::new("8.8.8.8:5000".parse().unwrap(), false, false);
        assert_eq!(
            untrusted.client_ip(&h, &nets),
            "8.8.8.8".parse::<IpAddr>().unwrap()
        );
    }
}
