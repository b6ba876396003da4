//! The `user` and `token` commands end to end (DESIGN §3.1): the real binary works on the Redis
//! a running Portcullis (in this process) shares, under a random key prefix. A user created on
//! the command line logs in through Portcullis; a token it prints is accepted by the proxy;
//! `user list` shows the user; `user suspend` and `user set-password` end that user's sessions
//! on the running Portcullis at once. Failures are one line on stderr and exit code 1.
//!
//! The Redis at `127.0.0.1:6379` must answer (`.ci/run` starts it); nothing is skipped.

use std::path::{Path, PathBuf};
use std::process::Stdio;

use http::{Method, StatusCode};
use tokio::io::AsyncWriteExt;

use crate::common::world::call;
use crate::common::*;

const PASSWORD: &str = "an operator's passphrase";

struct Output {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

/// Runs `portcullis ARGS... --config CONFIG`, writing `stdin` (when given) to its stdin.
async fn portcullis(args: &[&str], config: &Path, stdin: Option<&str>) -> Output {
    let mut cmd = command();
    cmd.args(args)
        .arg("--config")
        .arg(config)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    if stdin.is_some() {
        cmd.stdin(Stdio::piped());
    }
    let mut child = cmd.spawn().unwrap();
    if let Some(input) = stdin {
        let mut pipe = child.stdin.take().unwrap();
        pipe.write_all(input.as_bytes()).await.unwrap();
        drop(pipe);
    }
    let out = bounded("portcullis to exit", child.wait_with_output())
        .await
        .unwrap();
    Output {
        code: out.status.code(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

fn ok(out: &Output) -> &str {
    assert_eq!(out.code, Some(0), "stderr: {}", out.stderr);
    &out.stdout
}

/// Exit 1 with one line on stderr.
fn failed(out: &Output) -> &str {
    assert_eq!(
        out.code,
        Some(1),
        "stdout: {} stderr: {}",
        out.stdout,
        out.stderr
    );
    assert_eq!(out.stderr.lines().count(), 1, "{}", out.stderr);
    assert!(out.stdout.is_empty(), "{}", out.stdout);
    out.stderr.trim_end()
}

/// Waits (bounded, naming `what`) until a proxied request with `token` gets `status`.
async fn proxied_until(sidecar: &Sidecar, token: &str, status: StatusCode, what: &str) {
    eventually(what, || async {
        call(sidecar, Method::GET, "/app", None, Some(token))
            .await
            .0
            == status
    })
    .await;
}

struct Setup {
    _dir: tempfile::TempDir,
    config: PathBuf,
    sidecar: Sidecar,
    prefix: String,
}

/// A config file on Redis under a fresh prefix (cache entries live an hour, so only an
/// invalidation can end a session quickly), and a Portcullis running on it.
async fn setup() -> Setup {
    let echo = start_echo().await;
    let prefix = random_key_prefix();
    let text = config_with_store(echo, REDIS, &prefix, "cache_ttl = \"1h\"", "");
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("portcullis.toml");
    std::fs::write(&config, &text).unwrap();
    let sidecar = Sidecar::start(&text).await;
    Setup {
        _dir: dir,
        config,
        sidecar,
        prefix,
    }
}

#[tokio::test]
async fn users_and_tokens_made_on_the_command_line_work_through_portcullis() {
    let s = setup().await;
    let cfg = s.config.as_path();

    // user create: the password from stdin; then a login through Portcullis with it.
    let out = portcullis(
        &[
            "user",
            "create",
            "--email",
            "Ops@Example.com",
            "--username",
            "ops",
            "--role",
            "owner",
        ],
        cfg,
        Some(&format!("{PASSWORD}\nignored second line\n")),
    )
    .await;
    let line = ok(&out).trim_end().to_owned();
    let fields: Vec<&str> = line.split('\t').collect();
    assert_eq!(
        fields[1..],
        ["ops", "Ops@Example.com", "dormant", "owner"],
        "{line}"
    );
    let ops_id = fields[0].to_owned();
    let (status, body) = login(s.sidecar.addr, "ops@example.com", PASSWORD).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let session = body["session_token"].as_str().unwrap().to_owned();
    let (status, me, _) = call(
        &s.sidecar,
        Method::GET,
        "/api/v2/users/me",
        None,
        Some(&session),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{me}");
    assert_eq!(me["id"], ops_id.as_str());
    assert_eq!(me["status"], "active");
    assert_eq!(me["roles"][0]["name"], "owner");
    assert_eq!(me["organization_ids"].as_array().map(Vec::len), Some(1));

    // token create: the token alone on stdout, accepted by the proxy; --user by any name.
    let mut tokens = Vec::new();
    for who in ["ops", "OPS@example.com", ops_id.as_str()] {
        let out = portcullis(&["token", "create", "--user", who], cfg, None).await;
        let token = ok(&out).to_owned();
        assert!(
            token.ends_with('\n') && token.lines().count() == 1,
            "{token:?}"
        );
        let token = token.trim_end().to_owned();
        assert_eq!(token.len(), 33, "{token}");
        let (status, seen, _) = call(&s.sidecar, Method::GET, "/app", None, Some(&token)).await;
        assert_eq!(status, StatusCode::OK, "{seen}");
        assert_eq!(seen_header(&seen, "x-forwarded-user"), vec!["ops"]);
        assert_eq!(seen_header(&seen, "x-forwarded-scopes"), vec!["coder:all"]);
        tokens.push(token);
    }
    let key = s
        .sidecar
        .app
        .store
        .key(&tokens[0][..10])
        .await
        .unwrap()
        .unwrap();
    assert_eq!(key.login_type.as_str(), "password");
    assert_eq!(key.lifetime_seconds, 168 * 3600);

    // A named, scoped token with a lifetime.
    let out = portcullis(
        &[
            "token",
            "create",
            "--user",
            "ops",
            "--name",
            "ci",
            "--scope",
            "workspace:read",
            "--scope",
            "template:read",
            "--lifetime",
            "24h",
        ],
        cfg,
        None,
    )
    .await;
    let named = ok(&out).trim_end().to_owned();
    let (status, seen, _) = call(&s.sidecar, Method::GET, "/app", None, Some(&named)).await;
    assert_eq!(status, StatusCode::OK, "{seen}");
    assert_eq!(
        seen_header(&seen, "x-forwarded-scopes"),
        vec!["workspace:read,template:read"]
    );
    let key = s
        .sidecar
        .app
        .store
        .key(&named[..10])
        .await
        .unwrap()
        .unwrap();
    assert_eq!(key.login_type.as_str(), "token");
    assert_eq!(key.token_name, "ci");
    assert_eq!(key.lifetime_seconds, 24 * 3600);
    tokens.push(named);

    // user list: one line per user.
    let out = portcullis(
        &[
            "user",
            "create",
            "--email",
            "dev@example.com",
            "--username",
            "dev",
        ],
        cfg,
        Some(PASSWORD),
    )
    .await;
    ok(&out);
    let out = portcullis(&["user", "list"], cfg, None).await;
    let listed: Vec<&str> = ok(&out).lines().collect();
    assert_eq!(listed.len(), 2, "{listed:?}");
    assert_eq!(
        listed[0].split('\t').collect::<Vec<_>>()[1..],
        ["dev", "dev@example.com", "dormant", "-"]
    );
    assert_eq!(
        listed[1],
        format!("{ops_id}\tops\tOps@Example.com\tactive\towner")
    );
    // user list --search: Coder's user search.
    for (search, want) in [
        ("status:dormant", vec!["dev"]),
        ("role:owner", vec!["ops"]),
        ("EXAMPLE", vec!["dev", "ops"]),
        ("username:OPS status:suspended", vec![]),
    ] {
        let out = portcullis(&["user", "list", "--search", search], cfg, None).await;
        let names: Vec<&str> = ok(&out)
            .lines()
            .map(|l| l.split('\t').nth(1).unwrap())
            .collect();
        assert_eq!(names, want, "{search}");
    }

    // org list and org create.
    let out = portcullis(&["org", "list"], cfg, None).await;
    let orgs: Vec<Vec<String>> = ok(&out)
        .lines()
        .map(|l| l.split('\t').map(str::to_owned).collect())
        .collect();
    assert_eq!(orgs.len(), 1, "{orgs:?}");
    assert_eq!(orgs[0][1..], ["coder", "Coder", "default"]);
    let out = portcullis(&["org", "create", "--name", "acme"], cfg, None).await;
    let acme = ok(&out).trim().to_owned();
    let got = call(
        &s.sidecar,
        Method::GET,
        "/api/v2/organizations/acme",
        None,
        Some(&session),
    )
    .await;
    assert_eq!(
        (got.0, got.1["id"].as_str()),
        (StatusCode::OK, Some(&*acme))
    );
    let out = portcullis(&["org", "list"], cfg, None).await;
    assert_eq!(
        ok(&out).lines().nth(1),
        Some(&*format!("{acme}\tacme\tacme\t-"))
    );

    // user suspend: every token and the session fail at once on the running Portcullis.
    let out = portcullis(&["user", "suspend", "--user", "ops"], cfg, None).await;
    assert!(ok(&out).contains("\tsuspended\t"), "{}", out.stdout);
    let suspended =
        "User is not active (status = \"suspended\"). Contact an admin to reactivate your account.";
    for token in tokens.iter().chain([&session]) {
        proxied_until(
            &s.sidecar,
            token,
            StatusCode::UNAUTHORIZED,
            "the suspended user's token to fail",
        )
        .await;
        let (_, body, _) = call(&s.sidecar, Method::GET, "/app", None, Some(token)).await;
        assert_eq!(body["detail"], suspended);
    }
    let (status, body) = login(s.sidecar.addr, "ops@example.com", PASSWORD).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");

    // user activate: the tokens work again; user set-password: they all die, the new one
    // logs in and the old one does not.
    let out = portcullis(&["user", "activate", "--user", "ops"], cfg, None).await;
    assert!(ok(&out).contains("\tactive\t"), "{}", out.stdout);
    proxied_until(
        &s.sidecar,
        &tokens[0],
        StatusCode::OK,
        "the re-activated user's token to work",
    )
    .await;
    let out = portcullis(
        &["user", "set-password", "--user", "ops@example.com"],
        cfg,
        Some("a brand new passphrase\r\n"),
    )
    .await;
    assert_eq!(
        ok(&out).trim_end(),
        format!(
            "password set for ops; {} API key(s) revoked",
            tokens.len() + 1
        )
    );
    for token in tokens.iter().chain([&session]) {
        proxied_until(
            &s.sidecar,
            token,
            StatusCode::UNAUTHORIZED,
            "a token to die with the password change",
        )
        .await;
    }
    let (status, _) = login(s.sidecar.addr, "ops@example.com", PASSWORD).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, body) = login(s.sidecar.addr, "ops@example.com", "a brand new passphrase").await;
    assert_eq!(status, StatusCode::CREATED, "{body}");

    s.sidecar.shutdown().await;
    delete_redis_keys(REDIS, &s.prefix).await;
}

#[tokio::test]
async fn command_line_failures_are_one_line_and_exit_1() {
    let s = setup().await;
    let cfg = s.config.as_path();
    ok(&portcullis(
        &[
            "user",
            "create",
            "--email",
            "ops@example.com",
            "--username",
            "ops",
        ],
        cfg,
        Some(PASSWORD),
    )
    .await);

    let cases: Vec<(Vec<&str>, Option<&str>, &str)> = vec![
        (
            vec![
                "user",
                "create",
                "--email",
                "OPS@example.com",
                "--username",
                "other",
            ],
            Some(PASSWORD),
            "a user with this email already exists",
        ),
        (
            vec![
                "user",
                "create",
                "--email",
                "x@example.com",
                "--username",
                "x",
            ],
            Some(""),
            "no password on stdin",
        ),
        (
            vec![
                "user",
                "create",
                "--email",
                "x@example.com",
                "--username",
                "no spaces",
            ],
            Some(PASSWORD),
            "username: Validation failed for tag \"username\"",
        ),
        (
            vec![
                "user",
                "create",
                "--email",
                "x@example.com",
                "--username",
                "x",
                "--role",
                "admin",
            ],
            Some(PASSWORD),
            "\"admin\" is not a site role",
        ),
        (
            vec!["user", "suspend", "--user", "nobody"],
            None,
            "no user matches \"nobody\"",
        ),
        (
            vec!["user", "set-password", "--user", "ops"],
            Some(PASSWORD),
            "the new password cannot match the old password",
        ),
        (
            vec!["token", "create", "--user", "ops", "--scope", "*:*"],
            None,
            "invalid or unsupported API key scope: \"*:*\"",
        ),
        (
            vec!["token", "create", "--user", "ops", "--lifetime", "900000h"],
            None,
            "lifetime must be less than 876600h0m0s",
        ),
    ];
    for (args, stdin, want) in cases {
        let out = portcullis(&args, cfg, stdin).await;
        let line = failed(&out);
        assert!(line.contains(want), "{args:?}: {line}");
        assert!(!line.contains(PASSWORD), "{line}");
    }
    ok(&portcullis(
        &["token", "create", "--user", "ops", "--name", "ci"],
        cfg,
        None,
    )
    .await);
    let line = failed(
        &portcullis(
            &["token", "create", "--user", "ops", "--name", "ci"],
            cfg,
            None,
        )
        .await,
    )
    .to_owned();
    assert!(
        line.contains("a token with name \"ci\" already exists"),
        "{line}"
    );

    // A config that does not load: one line naming the key.
    let bad = s.config.with_file_name("bad.toml");
    std::fs::write(
        &bad,
        "[store]\nurl = \"nowhere://\"\n[upstream]\nurl = \"http://a\"\n",
    )
    .unwrap();
    let out = portcullis(&["user", "list", "--search", "colour:red"], &s.config, None).await;
    assert_eq!(
        failed(&out),
        "user list: --search: colour: Query param \"colour\" is not a valid query param"
    );
    let out = portcullis(&["org", "create", "--name", "default"], &s.config, None).await;
    assert!(
        failed(&out).starts_with("org create: --name"),
        "{}",
        out.stderr
    );
    let line = failed(&portcullis(&["user", "list"], &bad, None).await).to_owned();
    assert!(line.contains("store.url"), "{line}");

    s.sidecar.shutdown().await;
    delete_redis_keys(REDIS, &s.prefix).await;
}

/// `--help` says where the commands act, memory:// included.
#[tokio::test]
async fn help_says_the_commands_act_on_the_configured_store() {
    for args in [["user", "--help"], ["token", "--help"]] {
        let out = bounded("portcullis --help", command().args(args).output())
            .await
            .unwrap();
        assert_eq!(out.status.code(), Some(0));
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(text.contains("memory://"), "{text}");
        assert!(text.contains("store.url"), "{text}");
    }
}
