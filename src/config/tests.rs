use std::path::Path;

use super::*;

const MINIMAL: &str = r#"
[upstream]
url = "http://127.0.0.1:3000"
[policy]
default = "public"
"#;

fn parse(text: &str) -> Result<Config, ConfigError> {
    Config::from_toml(text, Vec::new(), Path::new("/etc/portcullis"))
}

fn parse_env(text: &str, env: &[(&str, &str)]) -> Result<Config, ConfigError> {
    let env = env.iter().map(|(k, v)| (k.to_string(), v.to_string()));
    Config::from_toml(text, env, Path::new("/etc/portcullis"))
}

fn key_of(e: ConfigError) -> String {
    match e {
        ConfigError::Invalid { key, .. } => key,
        ConfigError::Env { var, .. } => var,
        other => panic!("unexpected error {other:?}"),
    }
}

#[test]
fn minimal_config_gets_the_documented_defaults() {
    let c = parse(MINIMAL).expect("valid");
    assert_eq!(c.server.listen, "0.0.0.0:8443".parse().unwrap());
    assert_eq!(c.server.admin_listen, "127.0.0.1:9901".parse().unwrap());
    assert!(c.server.tls.is_none());
    assert!(c.server.trusted_proxies.is_empty());
    assert_eq!(c.server.shutdown_grace, Duration::from_secs(10));
    assert_eq!(c.server.max_header_bytes, 65536);
    assert_eq!(c.upstream.scheme, Scheme::HTTP);
    assert_eq!(c.upstream.authority.as_str(), "127.0.0.1:3000");
    assert_eq!(c.upstream.base_path, "");
    assert!(!c.upstream.http2 && !c.upstream.pass_token);
    assert_eq!(c.policy.default, PolicyDefault::Public);
    assert_eq!(c.log.format, LogFormat::Plain);
}

#[test]
fn bad_values_are_reported_with_their_key_path() {
    let cases: &[(&str, &str)] = &[
        ("[server]\nlisten = \"nowhere\"\n", "server.listen"),
        ("[store]\nusername = \"u\"\n", "store.username"),
        (
            "[store]\nurl = \"redis://u@h\"\nusername = \"v\"\n",
            "store.username",
        ),
        (
            "[store]\nurl = \"redis://:p@h\"\npassword_file = \"p\"\n",
            "store.password_file",
        ),
        (
            "[store]\nurl = \"redis://h\"\nca_file = \"ca.pem\"\n",
            "store.ca_file",
        ),
        (
            "[store]\nurl = \"rediss://h\"\ncert_file = \"c.pem\"\n",
            "store.key_file",
        ),
        (
            "[store]\nurl = \"rediss+cluster://h\"\nkey_file = \"c.key\"\n",
            "store.cert_file",
        ),
        ("[server]\nbogus = 1\n", "server.bogus"),
        ("[bogus]\nx = 1\n", "bogus"),
        (
            "[server]\nshutdown_grace = \"soon\"\n",
            "server.shutdown_grace",
        ),
        (
            "[server]\nheader_read_timeout = \"0s\"\n",
            "server.header_read_timeout",
        ),
        ("[server]\nmax_connections = 0\n", "server.max_connections"),
        (
            "[server]\nmax_header_bytes = 10\n",
            "server.max_header_bytes",
        ),
        (
            "[server]\ntrusted_proxies = [\"10.0.0.0/33\"]\n",
            "server.trusted_proxies",
        ),
        ("[server.tls]\ncert = \"a.pem\"\n", "server.tls"),
        (
            "[server.tls]\ncert = \"a\"\nkey = \"b\"\nextra = 1\n",
            "server.tls.extra",
        ),
        ("[server]\nlisten = 8443\n", "server.listen"),
        ("[log]\nformat = \"xml\"\n", "log.format"),
    ];
    for (extra, key) in cases {
        let text = format!("{MINIMAL}{extra}");
        let err = parse(&text).expect_err(extra);
        let got = key_of(err);
        assert!(
            got.starts_with(key),
            "{extra:?}: expected key {key}, got {got}"
        );
    }
}

#[test]
fn upstream_url_must_be_http_or_https_with_a_host() {
    for (url, ok) in [
        ("http://127.0.0.1:3000", true),
        ("https://app.internal", true),
        ("http://app:8080/base/", true),
        ("ftp://app", false),
        ("app:3000", false),
        ("http://user:pw@app", false),
        ("http://app/?q=1", false),
        ("/relative", false),
    ] {
        let text = format!("[upstream]\nurl = \"{url}\"\n[policy]\ndefault = \"public\"\n");
        match parse(&text) {
            Ok(c) => assert!(ok, "{url} accepted: {:?}", c.upstream),
            Err(e) => {
                assert!(!ok, "{url} refused: {e}");
                assert_eq!(key_of(e), "upstream.url");
            }
        }
    }
    let c = parse("[upstream]\nurl = \"http://app:8080/base/\"\n[policy]\ndefault = \"public\"\n")
        .unwrap();
    assert_eq!(c.upstream.base_path, "/base");
}

#[test]
fn missing_upstream_is_an_error() {
    let err = parse("[policy]\ndefault = \"public\"\n").expect_err("no upstream");
    assert_eq!(key_of(err), "upstream.url");
}

#[test]
fn policy_default_is_authenticated() {
    let c = parse("[upstream]\nurl = \"http://a\"\n").expect("valid");
    assert_eq!(c.policy.default, PolicyDefault::Authenticated);
    let err = parse("[upstream]\nurl = \"http://a\"\n[policy]\ndefault = \"allow\"\n")
        .expect_err("unknown policy");
    assert_eq!(key_of(err), "policy.default");
    let c = parse("[upstream]\nurl = \"http://a\"\n[policy]\ndefault = \"deny\"\n").unwrap();
    assert_eq!(c.policy.default, PolicyDefault::Deny);
}

#[test]
fn policy_routes_are_validated_at_load_naming_the_rule() {
    let c = parse(
        "[upstream]\nurl = \"http://a\"\n\
         [[policy.route]]\npath = \"/health\"\npublic = true\n\
         [[policy.route]]\npath = \"/api/v2/users/{owner}/workspaces\"\nmethods = [\"GET\"]\n\
         require = \"workspace:read\"\n",
    )
    .expect("valid");
    assert!(!c.policy.routes.is_empty());
    let err = parse(
        "[upstream]\nurl = \"http://a\"\n\
         [[policy.route]]\npath = \"/ok\"\nauthenticated = true\n\
         [[policy.route]]\npath = \"/x\"\nrequire = \"workspace:fly\"\n",
    )
    .expect_err("unknown action");
    assert_eq!(
        err.to_string(),
        "policy.route[1].require: unknown action \"fly\""
    );
    let err =
        parse("[upstream]\nurl = \"http://a\"\n[[policy.route]]\npath = \"/x\"\nallow = true\n")
            .expect_err("unknown key");
    assert_eq!(key_of(err), "policy.route[0].allow");
}

#[test]
fn a_key_toml_cannot_write_bare_is_named_quoted_on_one_line() {
    for (text, key) in [
        ("\"\" = 5", "\"\""),
        (
            "[upstream]\nurl = \"http://a\"\n\"x\\ny\" = 1",
            "upstream.\"x\\ny\"",
        ),
        (
            "[upstream]\nurl = \"http://a\"\n[server]\n\"a.b\" = 1",
            "server.\"a.b\"",
        ),
    ] {
        assert_eq!(key_of(parse(text).expect_err(text)), key, "{text}");
    }
}

#[test]
fn redirect_hosts_and_the_cookie_domain_are_lower_cased_host_names() {
    let c = parse(&format!(
        "{MINIMAL}[session]\nallowed_redirect_hosts = [\"App.Example.com\", \"*.Corp.example\"]\n\
         cookie_domain = \".Example.COM\"\n"
    ))
    .unwrap();
    assert_eq!(
        c.session.allowed_redirect_hosts,
        ["app.example.com", "*.corp.example"]
    );
    assert_eq!(c.session.cookie_domain.as_deref(), Some("example.com"));
}

#[test]
fn identity_sections_have_the_documented_defaults_and_name_bad_keys() {
    let c = parse(MINIMAL).unwrap();
    assert_eq!(c.api.prefix, "/api/v2");
    assert_eq!(c.session.lifetime, Duration::from_secs(86400));
    assert!(c.session.cookie_secure);
    assert_eq!(c.session.cookie_same_site, "Lax");
    assert!(c.session.revoke_open_connections);
    assert!(c.session.allowed_redirect_hosts.is_empty());
    assert_eq!(c.session.cookie_domain, None);
    assert_eq!(c.identity.headers, crate::headers::IdentityStyle::Forwarded);
    assert!(!c.passwords.disable_password_auth);
    assert_eq!(c.passwords.params.memory_kib, 19456);
    assert_eq!(c.rate_limit.api_per_minute, 512);
    assert_eq!(c.rate_limit.login_per_minute, 60);
    assert_eq!(c.rate_limit.account_failures, 10);
    assert_eq!(c.rate_limit.account_window, Duration::from_secs(300));
    for (extra, key) in [
        ("[api]\nprefix = \"api/v2\"\n", "api.prefix"),
        ("[api]\nprefix = \"/api/v2/\"\n", "api.prefix"),
        (
            "[session]\ncookie_same_site = \"sometimes\"\n",
            "session.cookie_same_site",
        ),
        ("[session]\nlifetime = \"forever\"\n", "session.lifetime"),
        (
            "[session]\nallowed_redirect_hosts = [\"https://app.example.com\"]\n",
            "session.allowed_redirect_hosts",
        ),
        (
            "[session]\nallowed_redirect_hosts = [\"app.example.com:8443\"]\n",
            "session.allowed_redirect_hosts",
        ),
        (
            "[session]\nallowed_redirect_hosts = [\"*\"]\n",
            "session.allowed_redirect_hosts",
        ),
        (
            "[session]\nallowed_redirect_hosts = [\"a..b\"]\n",
            "session.allowed_redirect_hosts",
        ),
        ("[session]\ncookie_domain = \"\"\n", "session.cookie_domain"),
        (
            "[session]\ncookie_domain = \"example.com; Secure\"\n",
            "session.cookie_domain",
        ),
        (
            "[session]\nrevoke_open_connections = \"yes\"\n",
            "session.revoke_open_connections",
        ),
        ("[identity]\nheaders = \"x\"\n", "identity.headers"),
        ("[passwords]\nargon2_memory_kib = 1\n", "passwords"),
        (
            "[passwords]\nmax_concurrent = 0\n",
            "passwords.max_concurrent",
        ),
        (
            "[rate_limit]\naccount_window = \"0s\"\n",
            "rate_limit.account_window",
        ),
        ("[rate_limit]\nbogus = 1\n", "rate_limit.bogus"),
    ] {
        let err = parse(&format!("{MINIMAL}{extra}")).expect_err(extra);
        assert_eq!(key_of(err), key, "{extra}");
    }
}

#[test]
fn environment_overrides_win_over_the_file() {
    let c = parse_env(
        &format!("{MINIMAL}[server]\nlisten = \"127.0.0.1:1\"\n"),
        &[
            ("PORTCULLIS_SERVER__LISTEN", "127.0.0.1:2"),
            ("PORTCULLIS_SERVER__MAX_CONNECTIONS", "7"),
            (
                "PORTCULLIS_SERVER__TRUSTED_PROXIES",
                "[\"10.0.0.0/8\", \"192.168.1.1\"]",
            ),
            ("PORTCULLIS_UPSTREAM__HTTP2", "true"),
            ("PORTCULLIS_SERVER__TLS__CERT", "c.pem"),
            ("PORTCULLIS_SERVER__TLS__KEY", "k.pem"),
            ("PORTCULLIS_CONFIG", "ignored.toml"),
            ("OTHER", "ignored"),
        ],
    )
    .expect("valid");
    assert_eq!(c.server.listen, "127.0.0.1:2".parse().unwrap());
    assert_eq!(c.server.max_connections, 7);
    assert_eq!(c.server.trusted_proxies.len(), 2);
    assert!(c.upstream.http2);
    let tls = c.server.tls.expect("tls from env");
    assert_eq!(tls.cert, Path::new("/etc/portcullis/c.pem"));
}

#[test]
fn malformed_or_unknown_environment_overrides_are_errors() {
    let err = parse_env(MINIMAL, &[("PORTCULLIS___LISTEN", "x")]).expect_err("empty section");
    assert_eq!(key_of(err), "PORTCULLIS___LISTEN");
    let err = parse_env(MINIMAL, &[("PORTCULLIS_SERVER__NOPE", "1")]).expect_err("unknown key");
    assert_eq!(key_of(err), "server.nope");
    let err = parse_env(MINIMAL, &[("PORTCULLIS_UPSTREAM__URL__X", "1")]).expect_err("not a table");
    assert_eq!(key_of(err), "PORTCULLIS_UPSTREAM__URL__X");
}

#[test]
fn portcullis_variables_that_are_not_overrides_are_ignored() {
    // What Kubernetes injects for a Service named "portcullis".
    let c = parse_env(
        MINIMAL,
        &[
            ("PORTCULLIS_SERVICE_HOST", "10.0.0.1"),
            ("PORTCULLIS_PORT_8443_TCP_ADDR", "10.0.0.1"),
        ],
    )
    .expect("ignored");
    assert_eq!(c.server.listen, "0.0.0.0:8443".parse().unwrap());
}

#[test]
fn relative_paths_resolve_against_the_config_folder() {
    let c = parse(&format!(
        "{MINIMAL}[server.tls]\ncert = \"tls/c.pem\"\nkey = \"/abs/k.pem\"\n"
    ))
    .unwrap();
    let tls = c.server.tls.unwrap();
    assert_eq!(tls.cert, Path::new("/etc/portcullis/tls/c.pem"));
    assert_eq!(tls.key, Path::new("/abs/k.pem"));
}

#[test]
fn toml_syntax_errors_are_one_line() {
    let err = parse("[server\nlisten=").expect_err("syntax");
    let text = err.to_string();
    assert!(matches!(err, ConfigError::Syntax { .. }));
    assert!(!text.contains('\n'), "{text}");
}

#[test]
fn every_file_in_config_parses() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("config");
    let mut seen = 0;
    for entry in std::fs::read_dir(&dir).expect("config/ exists") {
        let path = entry.expect("entry").path();
        if path.extension().and_then(|e| e.to_str()) != Some("toml") {
            continue;
        }
        Config::load(&path, Vec::new()).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        seen += 1;
    }
    assert!(seen > 0, "no config examples found");
}

/// `config/portcullis.toml` says it sets every key to its default: each section it sets (its
/// route rules aside, which are examples) equals that of a config that sets nothing.
#[test]
fn the_reference_config_sets_every_key_to_its_default() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("config/portcullis.toml");
    let reference = Config::load(&path, Vec::new()).expect("the reference config loads");
    let defaults = parse("[upstream]\nurl = \"http://127.0.0.1:3000\"\n").expect("valid");
    let same = |section: &str, ours: &dyn std::fmt::Debug, default: &dyn std::fmt::Debug| {
        let (ours, default) = (format!("{ours:?}"), format!("{default:?}"));
        assert_eq!(
            ours, default,
            "config/portcullis.toml [{section}] is not the default"
        );
    };
    let (r, d) = (&reference, &defaults);
    same("server", &r.server, &d.server);
    same("upstream", &r.upstream, &d.upstream);
    same("policy", &r.policy.default, &d.policy.default);
    same("log", &r.log, &d.log);
    same("store", &r.store, &d.store);
    same("api", &r.api, &d.api);
    same("session", &r.session, &d.session);
    same("identity", &r.identity, &d.identity);
    same("passwords", &r.passwords, &d.passwords);
    same("rate_limit", &r.rate_limit, &d.rate_limit);
    same("tokens", &r.tokens, &d.tokens);
    same("oidc", &r.oidc, &d.oidc);
    same("otp", &r.otp, &d.otp);
}

#[test]
fn store_defaults_to_memory_with_the_documented_timings() {
    let s = parse(MINIMAL).expect("valid").store;
    assert_eq!(s.url, StoreUrl::Memory);
    assert_eq!(s.key_prefix, "portcullis:");
    assert_eq!(s.cache_ttl, Duration::from_secs(30));
    assert_eq!(s.max_stale, Duration::from_secs(30));
    assert_eq!(s.negative_cache_ttl, Duration::from_secs(5));
    assert_eq!(s.command_timeout, Duration::from_millis(500));
}

#[test]
fn store_keys_are_parsed_and_bad_ones_name_their_key() {
    let c = parse(&format!(
        "{MINIMAL}[store]\nkey_prefix = \"pc:{{a}}:\"\ncache_ttl = \"1m\"\nmax_stale = \"0s\"\n\
         negative_cache_ttl = \"0s\"\ncommand_timeout = \"250ms\"\n"
    ))
    .expect("valid");
    assert_eq!(c.store.key_prefix, "pc:{a}:");
    assert_eq!(c.store.cache_ttl, Duration::from_secs(60));
    assert_eq!(c.store.max_stale, Duration::ZERO);
    assert_eq!(c.store.negative_cache_ttl, Duration::ZERO);
    assert_eq!(c.store.command_timeout, Duration::from_millis(250));

    let cases: &[(&str, &str)] = &[
        ("url = \"postgres://db\"", "store.url"),
        ("url = \"memory://x\"", "store.url"),
        ("url = 6379", "store.url"),
        ("bogus = 1", "store.bogus"),
        ("key_prefix = \"\"", "store.key_prefix"),
        ("key_prefix = \"a b\"", "store.key_prefix"),
        ("cache_ttl = \"0s\"", "store.cache_ttl"),
        ("max_stale = \"soon\"", "store.max_stale"),
        ("negative_cache_ttl = \"-1s\"", "store.negative_cache_ttl"),
        ("command_timeout = \"0ms\"", "store.command_timeout"),
        ("command_timeout = \"fast\"", "store.command_timeout"),
    ];
    for (line, key) in cases {
        let err = parse(&format!("{MINIMAL}[store]\n{line}\n")).expect_err(line);
        assert_eq!(key_of(err), *key, "{line}");
    }
}

#[test]
fn store_urls_are_parsed_into_their_topology() {
    // (url, how it is shown, or None when refused)
    let cases: &[(&str, Option<&str>)] = &[
        ("memory://", Some("memory://")),
        ("redis://127.0.0.1", Some("redis://127.0.0.1:6379/0")),
        ("redis://redis:6380/2", Some("redis://redis:6380/2")),
        ("redis://:s3cret@redis/", Some("redis://:***@redis:6379/0")),
        (
            "redis://app:s%40cret@redis",
            Some("redis://app:***@redis:6379/0"),
        ),
        ("redis://[::1]:7000", Some("redis://[::1]:7000/0")),
        (
            "rediss://cache.internal",
            Some("rediss://cache.internal:6379/0"),
        ),
        (
            "redis+sentinel://s1,s2:26380/mymaster",
            Some("redis+sentinel://s1:26379,s2:26380/mymaster/0"),
        ),
        (
            "redis+sentinel://:pw@s1/mymaster/3",
            Some("redis+sentinel://:***@s1:26379/mymaster/3"),
        ),
        (
            "redis+cluster://n1:7000,n2:7001",
            Some("redis+cluster://n1:7000,n2:7001"),
        ),
        ("redis+cluster://n1/0", Some("redis+cluster://n1:6379")),
        ("redis://", None),
        ("redis://host:0", None),
        ("redis://host:99999", None),
        ("redis://host/db", None),
        ("redis://host/-1", None),
        ("redis://a,b", None),
        ("redis://host?timeout=1", None),
        ("redis://:%zz@host", None),
        ("redis+sentinel://s1", None),
        ("redis+cluster://n1/1", None),
        ("redis+cluster://n1/a/b", None),
        ("unix:///tmp/redis.sock", None),
        ("127.0.0.1:6379", None),
    ];
    for (url, shown) in cases {
        let text = format!("{MINIMAL}[store]\nurl = \"{url}\"\n");
        match (parse(&text), shown) {
            (Ok(c), Some(shown)) => assert_eq!(c.store.url.to_string(), *shown, "{url}"),
            (Ok(c), None) => panic!("{url} accepted as {}", c.store.url),
            (Err(e), Some(_)) => panic!("{url} refused: {e}"),
            (Err(e), None) => {
                assert!(!e.to_string().contains("s3cret"), "{e}");
                assert_eq!(key_of(e), "store.url", "{url}");
            }
        }
    }

    let c = parse(&format!(
        "{MINIMAL}[store]\nurl = \"redis+sentinel://user:p%40ss@s1:1,s2/main/4\"\n"
    ))
    .unwrap();
    let StoreUrl::Redis(r) = &c.store.url else {
        panic!("not redis: {:?}", c.store.url)
    };
    assert_eq!(
        r.topology,
        RedisTopology::Sentinel {
            service: "main".into()
        }
    );
    assert_eq!(r.nodes, vec![("s1".into(), 1), ("s2".into(), 26379)]);
    assert_eq!(r.db, 4);
    assert_eq!(r.username.as_deref(), Some("user"));
    assert_eq!(r.password.as_ref().map(Secret::expose), Some("p@ss"));
    assert!(!r.tls);
}

#[test]
fn store_url_password_never_shows_in_debug_or_display() {
    let c = parse(&format!(
        "{MINIMAL}[store]\nurl = \"rediss://admin:hunter2-secret@cache:6380/1\"\n"
    ))
    .unwrap();
    for shown in [
        format!("{c:?}"),
        format!("{:?}", c.store),
        c.store.url.to_string(),
    ] {
        assert!(!shown.contains("hunter2"), "{shown}");
    }
    assert_eq!(c.store.url.to_string(), "rediss://admin:***@cache:6380/1");
}

#[test]
fn store_url_can_come_from_the_environment() {
    let c = parse_env(
        MINIMAL,
        &[
            ("PORTCULLIS_STORE__URL", "redis://10.0.0.5:6379/1"),
            ("PORTCULLIS_STORE__COMMAND_TIMEOUT", "1s"),
        ],
    )
    .expect("valid");
    assert_eq!(c.store.url.to_string(), "redis://10.0.0.5:6379/1");
    assert_eq!(c.store.command_timeout, Duration::from_secs(1));
}

#[test]
fn tokens_have_coders_default_lifetimes() {
    let c = parse(MINIMAL).expect("valid");
    assert_eq!(c.tokens.default_lifetime, Duration::from_secs(168 * 3600));
    assert_eq!(c.tokens.max_lifetime, Duration::from_secs(876_600 * 3600));
    assert_eq!(c.tokens.max_admin_lifetime, Duration::from_secs(168 * 3600));
    let c = parse(&format!(
        "{MINIMAL}[tokens]\ndefault_lifetime = \"24h\"\nmax_lifetime = \"720h\"\nmax_admin_lifetime = \"1h\"\n"
    ))
    .expect("valid");
    assert_eq!(c.tokens.default_lifetime, Duration::from_secs(24 * 3600));
    assert_eq!(c.tokens.max_lifetime, Duration::from_secs(720 * 3600));
    assert_eq!(c.tokens.max_admin_lifetime, Duration::from_secs(3600));
    let c = parse_env(MINIMAL, &[("PORTCULLIS_TOKENS__DEFAULT_LIFETIME", "2h")]).expect("valid");
    assert_eq!(c.tokens.default_lifetime, Duration::from_secs(7200));
}

#[test]
fn bad_token_lifetimes_name_their_key() {
    for (extra, key) in [
        (
            "[tokens]\ndefault_lifetime = \"a week\"\n",
            "tokens.default_lifetime",
        ),
        ("[tokens]\nmax_lifetime = \"0s\"\n", "tokens.max_lifetime"),
        (
            "[tokens]\nmax_admin_lifetime = 3\n",
            "tokens.max_admin_lifetime",
        ),
        (
            "[tokens]\ndefault_lifetime = \"200h\"\nmax_lifetime = \"100h\"\n",
            "tokens.default_lifetime",
        ),
        (
            "[tokens]\nmax_lifetime = \"9000000h\"\n",
            "tokens.max_lifetime",
        ),
        ("[tokens]\nlifetime = \"1h\"\n", "tokens.lifetime"),
    ] {
        let err = parse(&format!("{MINIMAL}{extra}")).expect_err(extra);
        assert_eq!(key_of(err), key, "{extra}");
    }
}

#[test]
fn password_policy_keys_default_off_and_name_bad_values() {
    let c = parse(MINIMAL).unwrap();
    assert_eq!(c.passwords.policy, PasswordPolicy::CODER);
    let c = parse(&format!(
        "{MINIMAL}[passwords]\nmin_length = 12\nblocklist = true\nreject_user_info = true\n"
    ))
    .unwrap();
    assert_eq!(
        c.passwords.policy,
        PasswordPolicy {
            min_length: 12,
            blocklist: true,
            reject_user_info: true,
        }
    );
    for (extra, key) in [
        ("[passwords]\nmin_length = 65\n", "passwords.min_length"),
        ("[passwords]\nmin_length = -1\n", "passwords.min_length"),
        ("[passwords]\nblocklist = \"yes\"\n", "passwords.blocklist"),
        (
            "[passwords]\nreject_user_info = 1\n",
            "passwords.reject_user_info",
        ),
    ] {
        let err = parse(&format!("{MINIMAL}{extra}")).expect_err(extra);
        assert_eq!(key_of(err), key, "{extra}");
    }
}

#[test]
fn otp_defaults_are_ten_minutes_three_requests_per_fifteen_and_no_delivery() {
    let otp = parse(MINIMAL).unwrap().otp;
    assert_eq!(otp.lifetime, Duration::from_secs(600));
    assert!(otp.delivery.is_none());
    assert_eq!(otp.requests_per_email, 3);
    assert_eq!(otp.request_window, Duration::from_secs(900));
    assert_eq!(otp.delivery_timeout, Duration::from_secs(10));
}

#[test]
fn otp_deliveries_are_parsed_with_their_defaults() {
    let c = parse(&format!(
        "{MINIMAL}[otp]\ndelivery = \"webhook\"\nlifetime = \"2m\"\n\
         [otp.webhook]\nurl = \"https://app.internal/hooks/otp?v=1\"\nsecret_file = \"hook.key\"\n"
    ))
    .unwrap();
    assert_eq!(c.otp.lifetime, Duration::from_secs(120));
    let Some(OtpDelivery::Webhook(w)) = c.otp.delivery else {
        panic!("not a webhook: {:?}", c.otp.delivery)
    };
    assert_eq!(w.scheme, Scheme::HTTPS);
    assert_eq!(w.authority.as_str(), "app.internal");
    assert_eq!(w.path.as_str(), "/hooks/otp?v=1");
    assert_eq!(
        w.secret_file.as_deref(),
        Some(Path::new("/etc/portcullis/hook.key"))
    );

    for (tls, port, want_tls, want_port) in [
        ("", "", SmtpTls::StartTls, 587),
        ("tls = \"tls\"\n", "", SmtpTls::Tls, 465),
        ("tls = \"none\"\n", "", SmtpTls::None, 25),
        ("tls = \"none\"\n", "port = 2525\n", SmtpTls::None, 2525),
    ] {
        let c = parse(&format!(
            "{MINIMAL}[otp]\ndelivery = \"smtp\"\n[otp.smtp]\nhost = \"mail.internal\"\n\
             from = \"Portcullis <noreply@example.com>\"\n{tls}{port}"
        ))
        .unwrap();
        let Some(OtpDelivery::Smtp(s)) = c.otp.delivery else {
            panic!("not smtp: {:?}", c.otp.delivery)
        };
        assert_eq!((s.tls, s.port), (want_tls, want_port), "{tls}{port}");
        assert_eq!(s.from.email.to_string(), "noreply@example.com");
        assert!(s.username.is_none() && s.password_file.is_none());
    }
}

#[test]
fn log_delivery_is_refused_without_danger_log_codes() {
    let err = parse(&format!("{MINIMAL}[otp]\ndelivery = \"log\"\n")).expect_err("log refused");
    let text = err.to_string();
    assert_eq!(key_of(err), "otp.delivery");
    assert!(text.contains("otp.danger_log_codes = true"), "{text}");
    let err = parse(&format!(
        "{MINIMAL}[otp]\ndelivery = \"log\"\ndanger_log_codes = false\n"
    ))
    .expect_err("log refused");
    assert_eq!(key_of(err), "otp.delivery");
    let c = parse(&format!(
        "{MINIMAL}[otp]\ndelivery = \"log\"\ndanger_log_codes = true\n"
    ))
    .unwrap();
    assert!(matches!(c.otp.delivery, Some(OtpDelivery::Log)));
}

#[test]
fn bad_otp_keys_name_their_key_path() {
    const SMTP: &str = "[otp.smtp]\nhost = \"mail\"\nfrom = \"a@example.com\"\n";
    for (extra, key) in [
        ("[otp]\nlifetime = \"0s\"\n", "otp.lifetime"),
        ("[otp]\nlifetime = \"25h\"\n", "otp.lifetime"),
        ("[otp]\nrequest_window = \"soon\"\n", "otp.request_window"),
        ("[otp]\nrequests_per_email = -1\n", "otp.requests_per_email"),
        ("[otp]\ndelivery_timeout = \"0s\"\n", "otp.delivery_timeout"),
        ("[otp]\ndelivery = \"pigeon\"\n", "otp.delivery"),
        ("[otp]\ndelivery = \"webhook\"\n", "otp.webhook"),
        ("[otp]\ndelivery = \"smtp\"\n", "otp.smtp"),
        ("[otp]\nbogus = 1\n", "otp.bogus"),
        ("[otp.webhook]\nurl = \"ftp://x\"\n", "otp.webhook.url"),
        ("[otp.webhook]\nurl = \"/relative\"\n", "otp.webhook.url"),
        (
            "[otp.webhook]\nurl = \"http://u:p@x/\"\n",
            "otp.webhook.url",
        ),
        ("[otp.webhook]\nsecret_file = \"k\"\n", "otp.webhook.url"),
        (
            "[otp.webhook]\nurl = \"http://x\"\nsecret = \"k\"\n",
            "otp.webhook.secret",
        ),
        ("[otp.smtp]\nfrom = \"a@example.com\"\n", "otp.smtp.host"),
        ("[otp.smtp]\nhost = \"mail\"\n", "otp.smtp.from"),
        (
            "[otp.smtp]\nhost = \"mail\"\nfrom = \"not an address\"\n",
            "otp.smtp.from",
        ),
        (&format!("{SMTP}tls = \"ssl\"\n"), "otp.smtp.tls"),
        (&format!("{SMTP}port = 0\n"), "otp.smtp.port"),
        (&format!("{SMTP}port = 70000\n"), "otp.smtp.port"),
        (
            &format!("{SMTP}username = \"u\"\n"),
            "otp.smtp.password_file",
        ),
        (
            &format!("{SMTP}password_file = \"p\"\n"),
            "otp.smtp.username",
        ),
        (
            "[otp.smtp]\nhost = \"\"\nfrom = \"a@example.com\"\n",
            "otp.smtp.host",
        ),
    ] {
        let err = parse(&format!("{MINIMAL}{extra}")).expect_err(extra);
        assert_eq!(key_of(err), key, "{extra}");
    }
}

#[test]
fn secret_files_are_trimmed_and_must_not_be_empty() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("key");
    std::fs::write(&path, "s3cret-value\n").unwrap();
    let secret = read_secret_file("otp.webhook.secret_file", &path).unwrap();
    assert_eq!(secret.expose(), "s3cret-value");
    assert!(!format!("{secret:?}").contains("s3cret"));
    std::fs::write(&path, " \n").unwrap();
    let err = read_secret_file("otp.webhook.secret_file", &path).expect_err("empty");
    assert_eq!(key_of(err), "otp.webhook.secret_file");
    let err = read_secret_file("otp.smtp.password_file", &dir.path().join("missing"))
        .expect_err("missing");
    assert_eq!(key_of(err), "otp.smtp.password_file");
}

#[test]
fn named_values_list_the_allowed_names_and_refuse_other_types() {
    const BASE: &str = "[upstream]\nurl = \"http://a\"\n";
    let c = parse(&format!(
        "{BASE}[log]\nformat = \"json\"\n[identity]\nheaders = \"remote\"\n"
    ))
    .expect("valid");
    assert_eq!(c.log.format, LogFormat::Json);
    assert_eq!(c.identity.headers, crate::headers::IdentityStyle::Remote);
    for (extra, want) in [
        (
            "[policy]\ndefault = \"allow\"\n",
            "policy.default: unknown variant `allow`, expected one of `public`, `deny`, `authenticated`",
        ),
        (
            "[log]\nformat = \"xml\"\n",
            "log.format: unknown variant `xml`, expected `plain` or `json`",
        ),
        (
            "[identity]\nheaders = \"x\"\n",
            "identity.headers: unknown variant `x`, expected one of `forwarded`, `remote`, `none`",
        ),
        (
            "[otp]\ndelivery = \"pigeon\"\n",
            "otp.delivery: unknown variant `pigeon`, expected one of `smtp`, `webhook`, `log`",
        ),
        (
            "[otp.smtp]\nhost = \"mail\"\nfrom = \"a@example.com\"\ntls = \"ssl\"\n",
            "otp.smtp.tls: unknown variant `ssl`, expected one of `starttls`, `tls`, `none`",
        ),
        (
            "[policy]\ndefault = 1\n",
            "policy.default: invalid type: integer `1`, expected a string",
        ),
        (
            "[log]\nformat = true\n",
            "log.format: invalid type: boolean `true`, expected a string",
        ),
        (
            "[identity]\nheaders = [\"forwarded\"]\n",
            "identity.headers: invalid type: sequence, expected a string",
        ),
        (
            "[otp]\ndelivery = 3\n",
            "otp.delivery: invalid type: integer `3`, expected a string",
        ),
    ] {
        let err = parse(&format!("{BASE}{extra}")).expect_err(extra).to_string();
        assert!(err.starts_with(want), "{extra}: {err}");
    }
}
