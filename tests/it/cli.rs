//! The command line (DESIGN §3.1): `check-config` accepts every shipped example and names the
//! key of a bad one; `serve` refuses a bad config with exit 64 before binding anything;
//! `--version` names the version; `completions` prints scripts that complete the commands.

use std::path::{Path, PathBuf};

use crate::common::*;

/// Runs `portcullis ARGS...` to completion; returns its exit code and stderr.
async fn run(args: &[&str], config: &Path) -> (Option<i32>, String) {
    let out = bounded(
        "portcullis to exit",
        command()
            .args(args)
            .arg("--config")
            .arg(config)
            .env("RUST_LOG", "info")
            .output(),
    )
    .await
    .unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn write_config(dir: &Path, text: &str) -> PathBuf {
    let path = dir.join("portcullis.toml");
    std::fs::write(&path, text).unwrap();
    path
}

#[tokio::test]
async fn check_config_accepts_every_example_in_the_config_folder() {
    let folder = Path::new(env!("CARGO_MANIFEST_DIR")).join("config");
    let mut checked = 0;
    for entry in std::fs::read_dir(&folder).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "toml") {
            let (code, stderr) = run(&["check-config"], &path).await;
            assert_eq!(code, Some(0), "{}: {stderr}", path.display());
            checked += 1;
        }
    }
    assert!(checked > 0, "no .toml files in {}", folder.display());
}

#[tokio::test]
async fn check_config_rejects_an_unknown_key_naming_its_path() {
    let dir = tempfile::tempdir().unwrap();
    let path = write_config(
        dir.path(),
        &config("http://127.0.0.1:3000", "bogus = 1", ""),
    );

    let (code, stderr) = run(&["check-config"], &path).await;

    assert_eq!(code, Some(1), "{stderr}");
    assert!(stderr.contains("server.bogus"), "{stderr}");
}

/// With `policy.head_as_get = false`, a rule listing GET without HEAD is legal but most likely
/// a hole (frameworks answer HEAD with their GET handler): `check-config` says so, and passes.
#[tokio::test]
async fn check_config_warns_about_get_without_head_when_they_are_kept_apart() {
    let dir = tempfile::tempdir().unwrap();
    let rules = "[policy]\ndefault = \"public\"\nhead_as_get = false\n\n\
                 [[policy.route]]\npath = \"/reports/*\"\nmethods = [\"GET\"]\n\
                 require = \"user:create\"\n";
    let text =
        config("http://127.0.0.1:3000", "", "").replace("[policy]\ndefault = \"public\"\n", rules);
    let path = write_config(dir.path(), &text);
    let (code, stderr) = run(&["check-config"], &path).await;
    assert_eq!(code, Some(0), "{stderr}");
    assert!(
        stderr.contains("warning: policy.route[0].methods: lists GET without HEAD"),
        "{stderr}"
    );
    // Kept together (the default), there is nothing to warn about.
    let path = write_config(dir.path(), &text.replace("head_as_get = false\n", ""));
    let (code, stderr) = run(&["check-config"], &path).await;
    assert_eq!(code, Some(0), "{stderr}");
    assert!(!stderr.contains("warning"), "{stderr}");
}

#[tokio::test]
async fn check_config_rejects_a_bad_value_naming_its_key() {
    let dir = tempfile::tempdir().unwrap();
    let path = write_config(
        dir.path(),
        &config("http://127.0.0.1:3000", "idle_timeout = \"soon\"", ""),
    );

    let (code, stderr) = run(&["check-config"], &path).await;

    assert_eq!(code, Some(1), "{stderr}");
    assert!(stderr.contains("server.idle_timeout"), "{stderr}");
}

#[tokio::test]
async fn check_config_rejects_a_route_rule_naming_the_rule() {
    let dir = tempfile::tempdir().unwrap();
    let rules = "[[policy.route]]\npath = \"/ok\"\npublic = true\n\n\
                 [[policy.route]]\npath = \"/api/v2/workspaces/*\"\nrequire = \"workspaces:read\"\n";
    let path = write_config(
        dir.path(),
        &format!("{}\n{rules}", config("http://127.0.0.1:3000", "", "")),
    );

    let (code, stderr) = run(&["check-config"], &path).await;

    assert_eq!(code, Some(1), "{stderr}");
    assert!(
        stderr.contains("policy.route[1].require: unknown resource \"workspaces\""),
        "{stderr}"
    );
}

/// Each bad config is refused with 64 and its key. The main address is held by this test, so a
/// `serve` that bound before judging its config would fail with 1 instead.
#[tokio::test]
async fn serve_with_a_bad_config_exits_64_without_binding() {
    let held = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let listen = held.local_addr().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let server = format!("listen = \"{listen}\"");
    let cases = [
        (
            config("http://127.0.0.1:3000", &format!("{server}\nbogus = 1"), ""),
            "server.bogus",
        ),
        (config("ftp://127.0.0.1:3000", &server, ""), "upstream.url"),
        (
            config(
                "http://127.0.0.1:3000",
                &format!("{server}\n[server.tls]\ncert = \"missing.pem\"\nkey = \"missing.key\""),
                "",
            ),
            "server.tls",
        ),
    ];
    for (text, key) in cases {
        // `config` puts its own listen line first; drop it so the held address is the one used.
        let text = text.replacen("listen = \"127.0.0.1:0\"\n", "", 1);
        let path = write_config(dir.path(), &text);

        let (code, stderr) = run(&["serve"], &path).await;

        assert_eq!(code, Some(64), "{key}: {stderr}");
        assert!(stderr.contains(key), "{key}: {stderr}");
        assert!(!stderr.contains("listening"), "{key}: {stderr}");
    }
    drop(held);
}

/// Portcullis needs Redis's `maxmemory-policy` to be `noeviction`: any other may evict rate-limit
/// and attempt counters under memory pressure. `check-config` warns (and passes) on a Redis
/// with `allkeys-lru`, and says nothing on one with `noeviction`.
#[tokio::test]
async fn check_config_warns_when_redis_may_evict_keys() {
    let dir = tempfile::tempdir().unwrap();
    for (policy, warned) in [("allkeys-lru", true), ("noeviction", false)] {
        let port = free_port();
        let _redis = RedisServer::start_with(port, &["--maxmemory-policy", policy]).await;
        let text = config_with_store(
            dead_port(),
            &format!("redis://127.0.0.1:{port}"),
            &random_key_prefix(),
            "",
            "",
        );
        let path = write_config(dir.path(), &text);
        let (code, stderr) = run(&["check-config"], &path).await;
        assert_eq!(code, Some(0), "{policy}: {stderr}");
        assert_eq!(
            stderr.contains("maxmemory-policy"),
            warned,
            "{policy}: {stderr}"
        );
        if warned {
            assert!(
                stderr.contains("allkeys-lru") && stderr.contains("noeviction"),
                "{stderr}"
            );
        }
    }
}

/// Runs `portcullis ARGS...` with no config: exit code, stdout, stderr.
async fn run_bare(args: &[&str]) -> (Option<i32>, String, String) {
    let mut cmd = command();
    cmd.args(args);
    finish(cmd).await
}

#[tokio::test]
async fn version_prints_the_crate_version_and_exits_0() {
    for flag in ["--version", "-V"] {
        let (code, stdout, stderr) = run_bare(&[flag]).await;
        assert_eq!(code, Some(0), "{flag}: {stderr}");
        let line = stdout.trim_end();
        let version = format!("portcullis {}", env!("CARGO_PKG_VERSION"));
        // "portcullis 0.1.0", or "portcullis 0.1.0 (commit …)" from a build that named it.
        assert!(
            line == version || line.starts_with(&format!("{version} (commit ")),
            "{flag}: {stdout:?}"
        );
    }
}

/// Completes `words` (the last one being typed) with the bash script `script`, the way bash
/// calls a completion function: the candidates offered.
async fn bash_complete(script: &Path, words: &[&str]) -> Vec<String> {
    let line = words.join(" ");
    let program = format!(
        "source {script}\n\
         COMP_WORDS=({line})\n\
         COMP_CWORD={cword}\n\
         COMP_LINE='{line}'\n\
         COMP_POINT=${{#COMP_LINE}}\n\
         _portcullis portcullis '{cur}' '{prev}'\n\
         printf '%s\\n' \"${{COMPREPLY[@]}}\"\n",
        script = script.display(),
        cword = words.len() - 1,
        cur = words[words.len() - 1],
        prev = words[words.len() - 2],
    );
    let mut bash = tokio::process::Command::new("bash");
    bash.args(["--norc", "--noprofile", "-c", &program]);
    let (code, stdout, stderr) = finish(bash).await;
    assert_eq!(code, Some(0), "bash: {stderr}");
    stdout.split_whitespace().map(str::to_owned).collect()
}

#[tokio::test]
async fn bash_completion_offers_the_subcommands_and_their_flags() {
    let (code, script, stderr) = run_bare(&["completions", "bash"]).await;
    assert_eq!(code, Some(0), "{stderr}");
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("portcullis.bash");
    std::fs::write(&path, &script).unwrap();

    let commands = bash_complete(&path, &["portcullis", ""]).await;
    for command in [
        "serve",
        "check-config",
        "user",
        "token",
        "echo",
        "explain",
        "doctor",
        "health",
        "completions",
    ] {
        assert!(
            commands.iter().any(|c| c == command),
            "{command}: {commands:?}"
        );
    }
    assert_eq!(
        bash_complete(&path, &["portcullis", "che"]).await,
        ["check-config"]
    );
    let flags = bash_complete(&path, &["portcullis", "health", "--"]).await;
    for flag in ["--admin", "--config", "--ready", "--timeout"] {
        assert!(flags.iter().any(|f| f == flag), "{flag}: {flags:?}");
    }
}

#[tokio::test]
async fn completions_exist_for_zsh_fish_elvish_and_powershell_and_no_other_shell() {
    for shell in ["zsh", "fish", "elvish", "powershell"] {
        let (code, script, stderr) = run_bare(&["completions", shell]).await;
        assert_eq!(code, Some(0), "{shell}: {stderr}");
        assert!(
            script.contains("check-config") && script.contains("set-password"),
            "{shell}: {script}"
        );
    }
    let (code, _, stderr) = run_bare(&["completions", "tcsh"]).await;
    assert_eq!(code, Some(2), "{stderr}");
}
