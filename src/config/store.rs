//! `[store]`: where users, keys and counters live (`url`: memory or a Redis deployment), the
//! prefix of every key, and how long cached answers may be used. The Redis URL is parsed here,
//! password and all, and never shown with its password. The credential and TLS files are named
//! here and read when the store is opened, so that `check-config` and `serve` report a missing
//! one by its key.

use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use super::{duration, duration_or_zero, ConfigError, Secret};

/// `[store]`: where users, keys and counters live, and how long cached answers may be used.
#[derive(Debug, Clone)]
pub struct StoreConfig {
    /// The backend (`url`, default `memory://`).
    pub url: StoreUrl,
    /// Prefix of every key the store writes (`key_prefix`, default `portcullis:`), so that
    /// several deployments can share one Redis.
    pub key_prefix: String,
    /// How long a validated key stays in the in-process cache (`cache_ttl`, default 30 s).
    pub cache_ttl: Duration,
    /// How long a cached key may still be served while the store is unreachable (`max_stale`,
    /// default 30 s; `0s` serves nothing stale).
    pub max_stale: Duration,
    /// How long an unknown key id is remembered as unknown (`negative_cache_ttl`, default 5 s;
    /// `0s` turns the negative cache off).
    pub negative_cache_ttl: Duration,
    /// The deadline of each store call (`command_timeout`, default 500 ms). A call that misses
    /// it fails as "store unavailable"; this also bounds reconnects.
    pub command_timeout: Duration,
    /// The ACL user (`username`), when not in the URL.
    pub username: Option<String>,
    /// The file holding the Redis password (`password_file`), surrounding white space ignored:
    /// the password never has to sit in the URL (or a ConfigMap). Not with a URL password.
    pub password_file: Option<PathBuf>,
    /// Trust only this CA bundle (PEM) for the Redis servers' certificates (`ca_file`; TLS
    /// URLs only); default: the system roots.
    pub ca_file: Option<PathBuf>,
    /// A client certificate chain and its key (PEM, `cert_file` and `key_file`, both or
    /// neither; TLS URLs only), for servers that require one (`tls-auth-clients yes`).
    pub client_cert: Option<(PathBuf, PathBuf)>,
}

/// `store.url`, parsed. Its `Debug` and `Display` never show the password.
#[derive(Clone, PartialEq, Eq)]
pub enum StoreUrl {
    /// `memory://`: in-process, one replica, lost on restart.
    Memory,
    /// A Redis deployment: `redis://`, `rediss://`, `redis+sentinel://` or `redis+cluster://`.
    Redis(RedisUrl),
}

/// A parsed Redis URL. The forms accepted:
///
/// - `redis://[[user]:password@]host[:port][/db]` and `rediss://…` (TLS, verified against the
///   system roots or `store.ca_file`); port 6379, db 0 by default.
/// - `redis+sentinel://[[user]:password@]host[:port][,host[:port]…]/service[/db]`: the
///   sentinels (port 26379 by default) and the name of the master they watch. The credentials
///   are for the Redis servers; the sentinels are asked without any. `rediss+sentinel://`: TLS
///   to the sentinels and to the master.
/// - `redis+cluster://[[user]:password@]host[:port][,host[:port]…]`: seed nodes of a Redis
///   Cluster (db 0 only); `rediss+cluster://` with TLS to every node.
///
/// User and password are percent-decoded. Query strings are refused.
#[derive(Clone, PartialEq, Eq)]
pub struct RedisUrl {
    /// Standalone, Sentinel-managed, or Cluster.
    pub topology: RedisTopology,
    /// Whether to connect with TLS (`rediss://`).
    pub tls: bool,
    /// Host and port of each node named: the server, the sentinels, or the cluster seeds.
    pub nodes: Vec<(String, u16)>,
    /// The database number.
    pub db: i64,
    /// The ACL user name.
    pub username: Option<String>,
    /// The password.
    pub password: Option<Secret>,
}

/// How a Redis deployment is organized.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RedisTopology {
    /// One server (`redis://`, `rediss://`).
    Standalone,
    /// A master found through sentinels (`redis+sentinel://`).
    Sentinel {
        /// The master's service name.
        service: String,
    },
    /// A Redis Cluster (`redis+cluster://`).
    Cluster,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct FileStore {
    url: Option<String>,
    key_prefix: Option<String>,
    cache_ttl: Option<String>,
    max_stale: Option<String>,
    negative_cache_ttl: Option<String>,
    command_timeout: Option<String>,
    username: Option<String>,
    password_file: Option<PathBuf>,
    ca_file: Option<PathBuf>,
    cert_file: Option<PathBuf>,
    key_file: Option<PathBuf>,
}

/// Validates `[store]`; relative paths are resolved against `base`.
pub(super) fn parse(st: FileStore, base: &Path) -> Result<StoreConfig, ConfigError> {
    let url = parse_store_url(st.url.as_deref().unwrap_or("memory://"))
        .map_err(|reason| ConfigError::invalid("store.url", reason))?;
    let (is_redis, tls, url_user, url_password) = match &url {
        StoreUrl::Memory => (false, false, false, false),
        StoreUrl::Redis(r) => (true, r.tls, r.username.is_some(), r.password.is_some()),
    };
    let needs_redis = |key: &str, set: bool| {
        if set && !is_redis {
            return Err(ConfigError::invalid(
                key,
                "applies to a Redis store.url only",
            ));
        }
        Ok(())
    };
    needs_redis("store.username", st.username.is_some())?;
    needs_redis("store.password_file", st.password_file.is_some())?;
    if st.username.is_some() && url_user {
        return Err(ConfigError::invalid(
            "store.username",
            "the URL names a user too: set it in one place",
        ));
    }
    if st.password_file.is_some() && url_password {
        return Err(ConfigError::invalid(
            "store.password_file",
            "the URL holds a password too: set it in one place (the file keeps it out of the URL)",
        ));
    }
    for (key, set) in [
        ("store.ca_file", st.ca_file.is_some()),
        ("store.cert_file", st.cert_file.is_some()),
        ("store.key_file", st.key_file.is_some()),
    ] {
        if set && !tls {
            return Err(ConfigError::invalid(
                key,
                "applies to TLS only: use rediss://, rediss+sentinel:// or rediss+cluster://",
            ));
        }
    }
    let client_cert = match (st.cert_file, st.key_file) {
        (Some(cert), Some(key)) => Some((base.join(cert), base.join(key))),
        (None, None) => None,
        (Some(_), None) => {
            return Err(ConfigError::invalid(
                "store.key_file",
                "is required with store.cert_file",
            ))
        }
        (None, Some(_)) => {
            return Err(ConfigError::invalid(
                "store.cert_file",
                "is required with store.key_file",
            ))
        }
    };
    Ok(StoreConfig {
        url,
        key_prefix: match st.key_prefix {
            None => "portcullis:".to_owned(),
            Some(p) if p.is_empty() => {
                return Err(ConfigError::invalid(
                    "store.key_prefix",
                    "must not be empty",
                ))
            }
            Some(p) if p.chars().any(|c| c.is_whitespace() || c.is_control()) => {
                return Err(ConfigError::invalid(
                    "store.key_prefix",
                    "must not contain spaces or control characters",
                ))
            }
            Some(p) => p,
        },
        cache_ttl: duration("store.cache_ttl", st.cache_ttl.as_deref(), "30s")?,
        max_stale: duration_or_zero("store.max_stale", st.max_stale.as_deref(), "30s")?,
        negative_cache_ttl: duration_or_zero(
            "store.negative_cache_ttl",
            st.negative_cache_ttl.as_deref(),
            "5s",
        )?,
        command_timeout: duration(
            "store.command_timeout",
            st.command_timeout.as_deref(),
            "500ms",
        )?,
        username: st.username,
        password_file: st.password_file.map(|p| base.join(p)),
        ca_file: st.ca_file.map(|p| base.join(p)),
        client_cert,
    })
}

/// Parses `store.url`; the error is the reason, in one line, without the password.
fn parse_store_url(url: &str) -> Result<StoreUrl, String> {
    const SCHEMES: &str = "must start with memory://, redis://, rediss://, redis+sentinel://, \
                           rediss+sentinel://, redis+cluster:// or rediss+cluster://";
    let (scheme, rest) = url.split_once("://").ok_or(SCHEMES)?;
    let (topology, tls, default_port) = match scheme {
        "memory" if rest.is_empty() => return Ok(StoreUrl::Memory),
        "memory" => return Err("memory:// takes nothing after the scheme".into()),
        "redis" => (RedisTopology::Standalone, false, 6379),
        "rediss" => (RedisTopology::Standalone, true, 6379),
        "redis+sentinel" | "rediss+sentinel" => (
            RedisTopology::Sentinel {
                service: String::new(),
            },
            scheme == "rediss+sentinel",
            26379,
        ),
        "redis+cluster" => (RedisTopology::Cluster, false, 6379),
        "rediss+cluster" => (RedisTopology::Cluster, true, 6379),
        _ => return Err(SCHEMES.into()),
    };
    if rest.contains(['?', '#']) {
        return Err("must not have a query or a fragment".into());
    }
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i + 1..]),
        None => (rest, ""),
    };
    let (userinfo, hosts) = match authority.rsplit_once('@') {
        Some((u, h)) => (Some(u), h),
        None => (None, authority),
    };
    let (username, password) = match userinfo {
        None => (None, None),
        Some(u) => {
            let (user, pass) = match u.split_once(':') {
                Some((user, pass)) => (user, Some(pass)),
                None => (u, None),
            };
            let user = percent_decode(user).map_err(|e| format!("user name: {e}"))?;
            let pass = pass
                .map(|p| percent_decode(p).map_err(|e| format!("password: {e}")))
                .transpose()?;
            (
                Some(user).filter(|u| !u.is_empty()),
                pass.filter(|p| !p.is_empty()).map(Secret),
            )
        }
    };
    let nodes = hosts
        .split(',')
        .map(|h| host_port(h, default_port))
        .collect::<Result<Vec<_>, _>>()?;
    let db_of = |s: &str| -> Result<i64, String> {
        s.parse::<i64>()
            .ok()
            .filter(|db| *db >= 0)
            .ok_or_else(|| format!("{s:?} is not a database number"))
    };
    let segments: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    let (topology, db) = match (topology, segments.as_slice()) {
        (RedisTopology::Standalone, _) if nodes.len() > 1 => {
            return Err(
                "names more than one host; use redis+sentinel:// or redis+cluster://".into(),
            )
        }
        (RedisTopology::Standalone, []) => (RedisTopology::Standalone, 0),
        (RedisTopology::Standalone, [db]) => (RedisTopology::Standalone, db_of(db)?),
        (RedisTopology::Sentinel { .. }, [service]) => (
            RedisTopology::Sentinel {
                service: (*service).to_owned(),
            },
            0,
        ),
        (RedisTopology::Sentinel { .. }, [service, db]) => (
            RedisTopology::Sentinel {
                service: (*service).to_owned(),
            },
            db_of(db)?,
        ),
        (RedisTopology::Sentinel { .. }, []) => {
            return Err(
                "must name the master service, as in redis+sentinel://host:26379/mymaster".into(),
            )
        }
        (RedisTopology::Cluster, []) => (RedisTopology::Cluster, 0),
        (RedisTopology::Cluster, [db]) if db_of(db)? == 0 => (RedisTopology::Cluster, 0),
        (RedisTopology::Cluster, _) => {
            return Err("a Redis Cluster has only database 0; drop the path".into())
        }
        (_, _) => return Err("has too many path segments".into()),
    };
    Ok(StoreUrl::Redis(RedisUrl {
        topology,
        tls,
        nodes,
        db,
        username,
        password,
    }))
}

fn host_port(s: &str, default_port: u16) -> Result<(String, u16), String> {
    let (host, port) = if let Some(v6) = s.strip_prefix('[') {
        let (host, after) = v6
            .split_once(']')
            .ok_or_else(|| format!("{s:?} is not a host"))?;
        match after {
            "" => (host, None),
            _ => match after.strip_prefix(':') {
                Some(port) => (host, Some(port)),
                None => return Err(format!("{s:?} is not a host")),
            },
        }
    } else {
        match s.split_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (s, None),
        }
    };
    if host.is_empty() {
        return Err("has no host".into());
    }
    if host.contains(|c: char| c.is_whitespace() || c.is_control() || c == '@') {
        return Err(format!("{host:?} is not a host"));
    }
    let port = match port {
        None => default_port,
        Some(p) => p
            .parse::<u16>()
            .ok()
            .filter(|p| *p != 0)
            .ok_or_else(|| format!("{p:?} is not a port"))?,
    };
    Ok((host.to_owned(), port))
}

fn percent_decode(s: &str) -> Result<String, String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = bytes
                .get(i + 1..i + 3)
                .and_then(|h| std::str::from_utf8(h).ok())
                .and_then(|h| u8::from_str_radix(h, 16).ok())
                .ok_or("bad percent-encoding")?;
            out.push(hex);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| "not UTF-8 after percent-decoding".to_owned())
}

// === impl StoreUrl ===

impl fmt::Display for StoreUrl {
    /// The URL with the password replaced by `***`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let r = match self {
            StoreUrl::Memory => return f.write_str("memory://"),
            StoreUrl::Redis(r) => r,
        };
        let scheme = match (&r.topology, r.tls) {
            (RedisTopology::Standalone, false) => "redis",
            (RedisTopology::Standalone, true) => "rediss",
            (RedisTopology::Sentinel { .. }, false) => "redis+sentinel",
            (RedisTopology::Sentinel { .. }, true) => "rediss+sentinel",
            (RedisTopology::Cluster, false) => "redis+cluster",
            (RedisTopology::Cluster, true) => "rediss+cluster",
        };
        write!(f, "{scheme}://")?;
        if r.username.is_some() || r.password.is_some() {
            f.write_str(r.username.as_deref().unwrap_or(""))?;
            if r.password.is_some() {
                f.write_str(":***")?;
            }
            f.write_str("@")?;
        }
        for (i, (host, port)) in r.nodes.iter().enumerate() {
            let sep = if i == 0 { "" } else { "," };
            if host.contains(':') {
                write!(f, "{sep}[{host}]:{port}")?;
            } else {
                write!(f, "{sep}{host}:{port}")?;
            }
        }
        match &r.topology {
            RedisTopology::Standalone => write!(f, "/{}", r.db),
            RedisTopology::Sentinel { service } => write!(f, "/{service}/{}", r.db),
            RedisTopology::Cluster => Ok(()),
        }
    }
}

impl fmt::Debug for StoreUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "StoreUrl({self})")
    }
}

impl fmt::Debug for RedisUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisUrl")
            .field("topology", &self.topology)
            .field("tls", &self.tls)
            .field("nodes", &self.nodes)
            .field("db", &self.db)
            .field("username", &self.username)
            .field("password", &self.password)
            .finish()
    }
}
