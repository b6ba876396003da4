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
fn policy_default_is_authenticated_which_this_build_refuses_rather_than_opening_up() {
    let err = parse("[upstream]\nurl = \"http://a\"\n").expect_err("no identity layer yet");
    assert_eq!(key_of(err), "policy.default");
    let err = parse("[upstream]\nurl = \"http://a\"\n[policy]\ndefault = \"allow\"\n")
        .expect_err("unknown policy");
    assert_eq!(key_of(err), "policy.default");
    let c = parse("[upstream]\nurl = \"http://a\"\n[policy]\ndefault = \"deny\"\n").unwrap();
    assert_eq!(c.policy.default, PolicyDefault::Deny);
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
