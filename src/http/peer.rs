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
    /// not one of them. Entries are read as proxies write them: `ip`, `ip:port`, `[v6]`,
    /// `[v6]:port`. The walk from the right stops at an entry that is none of these (or at a
    /// header that is not text): everything left of it came through a hop that cannot be read,
    /// so the answer is the last address known to be a proxy's, never an entry the client
    /// could have written.
    pub fn client_ip(&self, headers: &HeaderMap, trusted: &[IpNet]) -> IpAddr {
        if !self.trusted {
            return self.addr.ip();
        }
        let mut nearest = self.addr.ip();
        let values: Vec<&HeaderValue> = headers.get_all(&X_FORWARDED_FOR).iter().collect();
        for value in values.into_iter().rev() {
            let Ok(text) = value.to_str() else {
                return nearest;
            };
            for entry in text.rsplit(',') {
                let Some(ip) = forwarded_for_entry(entry.trim()) else {
                    return nearest;
                };
                if !trusted.iter().any(|n| n.contains(&ip)) {
                    return ip;
                }
                nearest = ip;
            }
        }
        nearest
    }
}

/// One `X-Forwarded-For` entry: `ip`, `ip:port`, `[v6]` or `[v6]:port`.
fn forwarded_for_entry(entry: &str) -> Option<IpAddr> {
    if let Ok(ip) = entry.parse::<IpAddr>() {
        return Some(ip);
    }
    if let Some(rest) = entry.strip_prefix('[') {
        let (v6, after) = rest.split_once(']')?;
        let port_ok = after.is_empty()
            || after
                .strip_prefix(':')
                .is_some_and(|p| p.parse::<u16>().is_ok());
        if !port_ok {
            return None;
        }
        return v6.parse::<std::net::Ipv6Addr>().ok().map(IpAddr::V6);
    }
    entry.parse::<SocketAddr>().ok().map(|a| a.ip())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forwarded_for_entries_are_read_with_ports_and_brackets_and_nonsense_is_none() {
        let ip = |s: &str| Some(s.parse::<IpAddr>().unwrap());
        assert_eq!(forwarded_for_entry("203.0.113.7"), ip("203.0.113.7"));
        assert_eq!(forwarded_for_entry("203.0.113.7:4711"), ip("203.0.113.7"));
        assert_eq!(forwarded_for_entry("2001:db8::1"), ip("2001:db8::1"));
        assert_eq!(forwarded_for_entry("[2001:db8::1]"), ip("2001:db8::1"));
        assert_eq!(forwarded_for_entry("[2001:db8::1]:443"), ip("2001:db8::1"));
        for bad in [
            "",
            "unknown",
            "_hidden",
            "[2001:db8::1",
            "[1.2.3.4]",
            "[::1]:x",
            "1.2.3.4:",
        ] {
            assert_eq!(forwarded_for_entry(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn an_entry_that_cannot_be_read_ends_the_walk_at_the_last_proxy() {
        let nets: Vec<IpNet> = vec!["10.0.0.0/8".parse().unwrap()];
        let peer = Peer::new("10.0.0.1:5000".parse().unwrap(), false, true);
        let chain = |v: &'static str| {
            let mut h = HeaderMap::new();
            h.insert(&X_FORWARDED_FOR, HeaderValue::from_static(v));
            h
        };
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        // Ports and brackets are read, not skipped.
        assert_eq!(
            peer.client_ip(&chain("6.6.6.6, 1.2.3.4:999, 10.0.0.7"), &nets),
            ip("1.2.3.4")
        );
        assert_eq!(
            peer.client_ip(&chain("6.6.6.6, [2001:db8::9]:1, 10.0.0.7"), &nets),
            ip("2001:db8::9")
        );
        // A spoofed entry left of an unreadable one is never chosen.
        assert_eq!(
            peer.client_ip(&chain("6.6.6.6, unknown, 10.0.0.7"), &nets),
            ip("10.0.0.7")
        );
        assert_eq!(
            peer.client_ip(&chain("6.6.6.6, garbage"), &nets),
            ip("10.0.0.1")
        );
    }

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
