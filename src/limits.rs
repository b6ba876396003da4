//! Abuse limits (spec/coder-api.md §0.3): API requests per user (per client when anonymous)
//! per minute, login-group requests per client per minute, and failed logins per account.
//! Counters live in the store so that every replica shares them; a store that cannot count
//! fails the request closed (503), never open.

use std::net::IpAddr;
use std::time::Duration;

use uuid::Uuid;

use crate::config::RateLimitConfig;
use crate::report::ErrorChain;
use crate::store::{keys, Store, StoreError};

/// The window of the per-minute limits.
const MINUTE: Duration = Duration::from_secs(60);

/// The limits, from `[rate_limit]`.
#[derive(Debug, Clone)]
pub struct Limits {
    api_per_minute: u64,
    login_per_minute: u64,
    account_failures: u64,
    account_window: Duration,
}

/// Who an API request is counted for: its user when it carries a valid credential (as Coder
/// keys its limiter), else its client address.
#[derive(Debug, Clone, Copy)]
pub enum ApiClient {
    /// An authenticated user.
    User(Uuid),
    /// A caller without a valid credential, at this address.
    Anonymous(IpAddr),
}

/// Why a request is refused by a limit.
#[derive(Debug, thiserror::Error)]
pub enum LimitError {
    /// More than `limit` requests in `window`.
    #[error("more than {limit} requests in {window:?}")]
    Limited {
        /// The most requests allowed in `window`.
        limit: u64,
        /// The window the limit counts over.
        window: Duration,
    },
    /// The store could not count: the request fails closed.
    #[error("the store could not count")]
    Store(#[from] StoreError),
}

// === impl Limits ===

impl Limits {
    /// Limits from the config.
    pub fn new(cfg: &RateLimitConfig) -> Self {
        Limits {
            api_per_minute: cfg.api_per_minute,
            login_per_minute: cfg.login_per_minute,
            account_failures: cfg.account_failures,
            account_window: cfg.account_window,
        }
    }

    /// Whether API requests are counted at all (`rate_limit.api_per_minute` is not 0).
    pub fn counts_api(&self) -> bool {
        self.api_per_minute != 0
    }

    /// Counts an API request from `client` and refuses it past the per-minute limit.
    pub async fn api(&self, store: &Store, client: ApiClient) -> Result<(), LimitError> {
        if self.api_per_minute == 0 {
            return Ok(());
        }
        let name = match client {
            ApiClient::User(id) => keys::api_requests(&format!("u:{id}")),
            ApiClient::Anonymous(ip) => keys::api_requests(&client_bucket(ip)),
        };
        if store.incr_window(&name, MINUTE).await? > self.api_per_minute {
            return Err(limited(self.api_per_minute, MINUTE));
        }
        Ok(())
    }

    /// Counts a login-group request from the client at `ip` and refuses it past the per-minute
    /// limit.
    pub async fn login(&self, store: &Store, ip: IpAddr) -> Result<(), LimitError> {
        if self.login_per_minute == 0 {
            return Ok(());
        }
        let n = store
            .incr_window(&keys::login_requests(&client_bucket(ip)), MINUTE)
            .await?;
        if n > self.login_per_minute {
            return Err(limited(self.login_per_minute, MINUTE));
        }
        Ok(())
    }

    /// Refuses a login for an account that failed too often lately. The answer is the same
    /// for accounts that do not exist, so it reveals nothing.
    pub async fn account_allowed(&self, store: &Store, account: &str) -> Result<(), LimitError> {
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
            tracing::warn!(error = %ErrorChain(&error), "could not count a failed login");
        }
    }

    /// Clears `account`'s failures after a good login.
    pub async fn account_succeeded(&self, store: &Store, account: &str) {
        if let Err(error) = store.reset_counter(&account_key(account)).await {
            tracing::debug!(error = %ErrorChain(&error), "could not reset a login failure counter");
        }
    }
}

fn account_key(account: &str) -> String {
    keys::login_failures(account)
}

fn limited(limit: u64, window: Duration) -> LimitError {
    LimitError::Limited { limit, window }
}

/// The bucket a client address is counted in: an IPv4 address itself, an IPv6 address by its
/// /64 (one subscriber's network; a client that owns a /64 can use any of its 2^64 addresses,
/// so per-address buckets would limit nothing). An IPv4-mapped IPv6 address counts as IPv4.
pub fn client_bucket(ip: IpAddr) -> String {
    match ip {
        IpAddr::V4(v4) => v4.to_string(),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => v4.to_string(),
            None => {
                let s = v6.segments();
                let net = std::net::Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0);
                format!("{net}/64")
            }
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ipv6_clients_are_counted_by_their_64_and_ipv4_by_address() {
        let bucket = |s: &str| client_bucket(s.parse().expect("an address"));
        assert_eq!(bucket("203.0.113.7"), "203.0.113.7");
        assert_eq!(bucket("::ffff:203.0.113.7"), "203.0.113.7");
        assert_eq!(bucket("2001:db8:1:2:aaaa::1"), "2001:db8:1:2::/64");
        assert_eq!(
            bucket("2001:db8:1:2:ffff:ffff:ffff:ffff"),
            "2001:db8:1:2::/64"
        );
        assert_ne!(bucket("2001:db8:1:3::1"), bucket("2001:db8:1:2::1"));
    }
}
