//! Abuse limits of the login group (spec/coder-api.md §0.3): requests per client IP per minute,
//! and failed logins per account. Counters live in the store so that every replica shares
//! them; a store that cannot count fails the request closed (503), never open.

use std::net::IpAddr;
use std::time::Duration;

use http::{HeaderMap, StatusCode};
use ipnet::IpNet;

use crate::api::ApiError;
use crate::config::RateLimitConfig;
use crate::headers::X_FORWARDED_FOR;
use crate::proxy::Peer;
use crate::store::{keys, Store};

const LOGIN_WINDOW: Duration = Duration::from_secs(60);

/// The limits, from `[rate_limit]`.
#[derive(Debug, Clone)]
pub struct Limits {
    login_per_minute: u64,
    account_failures: u64,
    account_window: Duration,
    trusted: Vec<IpNet>,
}

// === impl Limits ===

impl Limits {
    /// Limits from the config; `trusted` are the proxies whose `X-Forwarded-For` is believed.
    pub fn new(cfg: &RateLimitConfig, trusted: Vec<IpNet>) -> Self {
        Limits {
            login_per_minute: cfg.login_per_minute,
            account_failures: cfg.account_failures,
            account_window: cfg.account_window,
            trusted,
        }
    }

    /// Counts a login-group request from the client and refuses it past the per-minute limit.
    pub async fn login(
        &self,
        store: &Store,
        peer: &Peer,
        headers: &HeaderMap,
    ) -> Result<(), ApiError> {
        if self.login_per_minute == 0 {
            return Ok(());
        }
        let ip = self.client_ip(peer, headers);
        let n = store
            .incr_window(&keys::login_requests(ip), LOGIN_WINDOW)
            .await?;
        if n > self.login_per_minute {
            return Err(limited(self.login_per_minute, LOGIN_WINDOW));
        }
        Ok(())
    }

    /// Refuses a login for an account that failed too often lately. The answer is the same
    /// for accounts that do not exist, so it reveals nothing.
    pub async fn account_allowed(&self, store: &Store, account: &str) -> Result<(), ApiError> {
        if self.account_failures == 0 {
            return Ok(());
        }
        if store.counter(&account_key(account)).await? >= self.account_failures {
            return Err(limited(self.account_failures, self.account_window));
        }
        Ok(())
    }

    /// Counts a failed login for `account`.
    pub async fn account_failed(&self, store: &Store, account: &str) {
        if let Err(error) = store
            .incr_window(&account_key(account), self.account_window)
            .await
        {
            tracing::warn!(%error, "could not count a failed login");
        }
    }

    /// Clears `account`'s failures after a good login.
    pub async fn account_succeeded(&self, store: &Store, account: &str) {
        if let Err(error) = store.reset_counter(&account_key(account)).await {
            tracing::debug!(%error, "could not reset a login failure counter");
        }
    }

    /// The client's address: the socket peer, or, behind trusted proxies, the nearest address
    /// in `X-Forwarded-For` that is not one of them.
    pub fn client_ip(&self, peer: &Peer, headers: &HeaderMap) -> IpAddr {
        if !peer.trusted {
            return peer.addr.ip();
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
            .find(|ip| !self.trusted.iter().any(|n| n.contains(*ip)))
            .copied()
            .unwrap_or_else(|| peer.addr.ip())
    }
}

fn account_key(account: &str) -> String {
    keys::login_failures(account)
}

fn limited(n: u64, window: Duration) -> ApiError {
    ApiError::new(
        StatusCode::TOO_MANY_REQUESTS,
        &format!(
            "You've been rate limited for sending more than {n} requests in {}.",
            go_duration(window)
        ),
        "",
    )
}

/// Formats a duration as Go's `time.Duration.String` does for whole seconds (`1m0s`, `5m0s`,
/// `1h0m0s`, `30s`), since Coder's 429 message embeds it.
pub fn go_duration(d: Duration) -> String {
    let s = d.as_secs();
    let (h, m, sec) = (s / 3600, (s % 3600) / 60, s % 60);
    if h > 0 {
        format!("{h}h{m}m{sec}s")
    } else if m > 0 {
        format!("{m}m{sec}s")
    } else {
        format!("{sec}s")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_are_formatted_like_go() {
        for (secs, text) in [
            (60, "1m0s"),
            (300, "5m0s"),
            (3600, "1h0m0s"),
            (30, "30s"),
            (90, "1m30s"),
        ] {
            assert_eq!(go_duration(Duration::from_secs(secs)), text);
        }
    }

    #[test]
    fn the_client_behind_trusted_proxies_is_the_nearest_untrusted_address() {
        let limits = Limits {
            login_per_minute: 60,
            account_failures: 10,
            account_window: Duration::from_secs(300),
            trusted: vec!["10.0.0.0/8".parse().unwrap()],
        };
        let mut h = HeaderMap::new();
        h.insert(
            &X_FORWARDED_FOR,
            "6.6.6.6, 1.2.3.4, 10.0.0.7".parse().unwrap(),
        );
        let trusted = Peer::new("10.0.0.1:5000".parse().unwrap(), false, true);
        assert_eq!(
            limits.client_ip(&trusted, &h),
            "1.2.3.4".parse::<IpAddr>().unwrap()
        );
        let untrusted = Peer::new("8.8.8.8:5000".parse().unwrap(), false, false);
        assert_eq!(
            limits.client_ip(&untrusted, &h),
            "8.8.8.8".parse::<IpAddr>().unwrap()
        );
    }
}
