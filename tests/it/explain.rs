//! `portcullis explain` (the real binary) and `POST /api/v2/portcullis/explain` (issue 17):
//! what Portcullis would do with a request — the canonical path, the rule with its line in the
//! config, the subject, the RBAC decision and the headers the upstream would get (the signed
//! assertion's claims included) — for a
//! public route, an authenticated one, a `require` rule allowed and denied, and an ambiguous
//! path. The CLI shares the Redis store of an in-process Portcullis, where the users and
//! tokens are made.

use std::path::{Path, PathBuf};

use http::{Method, StatusCode};
use serde_json::{json, Value};

use crate::common::world::*;
use crate::common::*;

const RULES: &str = "[policy]\ndefault = \"authenticated\"\n\n\
                     [[policy.route]]\npath = \"/health\"\npublic = true\n\n\
                     [[policy.route]]\npath = \"/admin/**\"\nrequire = \"user:create\"\n";

/// A Portcullis on the shared Redis with the rules above, its owner `admin`, a member `alice`
/// and the same config written to a file for the CLI.
struct Setup {
    world: World,
    alice: String,
    config: PathBuf,
    text: String,
    _dir: tempfile::TempDir,
}

impl Setup {
    async fn start() -> Setup {
        let echo = start_echo().await;
        let prefix = random_key_prefix();
        let identity = format!(
            "[identity]\nassertion_key = \"{}\"\n\n",
            key_file("assertion-a.pem").display()
        );
        let text = config_with_store(echo, REDIS, &prefix, "", &format!("{identity}{RULES}"));
        let sidecar = Sidecar::start(&text).await;
        let world = World::with_first_user(sidecar, prefix).await;
        let (_, alice) = world.member("alice").await;
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("portcullis.toml");
        std::fs::write(&config, &text).unwrap();
        Setup {
            world,
            alice,
            config,
            text,
            _dir: dir,
        }
    }

    /// The line of the config file where the rule whose path is `path` starts.
    /// (It starts on its `[[policy.route]]` header, the line above its path: the 1-based
    /// number of that line is the 0-based index of the path's.)
    fn line_of(&self, path: &str) -> usize {
        self.text
            .lines()
            .position(|l| l == format!("path = \"{path}\""))
            .expect("the rule is in the config")
    }
}

/// Runs `portcullis explain --config FILE ARGS...`: exit code and stdout.
async fn explain(config: &Path, args: &[&str]) -> (Option<i32>, String) {
    let out = bounded(
        "portcullis explain to exit",
        command()
            .arg("explain")
            .arg("--config")
            .arg(config)
            .args(args)
            .output(),
    )
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success() || stdout.is_empty(), "{stderr}");
    (out.status.code(), format!("{stdout}{stderr}"))
}

async fn explain_json(config: &Path, args: &[&str]) -> Value {
    let mut all = args.to_vec();
    all.push("--json");
    let (code, out) = explain(config, &all).await;
    assert_eq!(code, Some(0), "{out}");
    serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}"))
}

/// The values of header `name` the upstream would receive.
fn upstream_header(answer: &Value, name: &str) -> Vec<String> {
    answer["upstream"]["headers"]
        .as_array()
        .expect("upstream headers")
        .iter()
        .filter(|pair| pair[0] == name)
        .map(|pair| pair[1].as_str().unwrap().to_owned())
        .collect()
}

fn removed(answer: &Value) -> Vec<(String, String)> {
    answer["upstream"]["removed"]
        .as_array()
        .expect("removed headers")
        .iter()
        .map(|r| {
            (
                r["name"].as_str().unwrap().to_owned(),
                r["reason"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

#[tokio::test]
async fn explain_shows_rule_line_subject_rbac_and_upstream_headers_for_each_kind_of_route() {
    let s = Setup::start().await;
    let config = s.config.as_path();

    // A public route: its rule and line; a spoofed identity header removed, and why; no
    // identity added.
    let (code, text) = explain(
        config,
        &["--path", "/health", "--header", "X_Forwarded_User: mallory"],
    )
    .await;
    assert_eq!(code, Some(0), "{text}");
    let line = s.line_of("/health");
    assert!(
        text.contains(&format!(
            "rule       policy.route[0] (line {line}) path \"/health\" → public"
        )),
        "{text}"
    );
    assert!(
        text.contains("decision   allowed: forwarded upstream"),
        "{text}"
    );
    assert!(
        text.contains("removed    x_forwarded_user: identity header sent by the client"),
        "{text}"
    );
    let public = explain_json(
        config,
        &["--path", "/health", "--header", "X_Forwarded_User: mallory"],
    )
    .await;
    assert_eq!(public["rules"][0]["line"], line);
    assert_eq!(public["decision"]["allowed"], true);
    assert!(upstream_header(&public, "x_forwarded_user").is_empty());
    assert!(upstream_header(&public, "x-forwarded-user").is_empty());
    assert!(public["subject"].is_null());

    // An authenticated route (policy.default), with alice's token: her identity goes up, her
    // token does not.
    let authed = explain_json(config, &["--path", "/app/page", "--token", &s.alice]).await;
    assert_eq!(authed["rules"][0]["source"], "policy.default");
    assert_eq!(authed["subject"]["username"], "alice");
    assert_eq!(authed["subject"]["source"], "token");
    assert_eq!(upstream_header(&authed, "x-forwarded-user"), ["alice"]);
    // The assertion it would carry, and its claims (`identity.assertion_key` is set).
    assert_eq!(upstream_header(&authed, "x-portcullis-assertion").len(), 1);
    let claims = &authed["upstream"]["assertion_claims"];
    assert_eq!(claims["username"], "alice", "{authed}");
    assert_eq!(claims["aud"], "localhost");
    assert!(upstream_header(&authed, "coder-session-token").is_empty());
    assert!(
        removed(&authed)
            .iter()
            .any(|(n, why)| n == "coder-session-token" && why.contains("session token")),
        "{authed}"
    );
    let (_, text) = explain(config, &["--path", "/app/page", "--token", &s.alice]).await;
    assert!(text.contains("subject    alice ("), "{text}");
    assert!(text.contains("  x-forwarded-user: alice"), "{text}");

    // A `require` rule: the owner (as a user, full scope) is allowed, by the owner role...
    let line = s.line_of("/admin/**");
    let allowed = explain_json(config, &["--path", "/admin/users", "--user", "admin"]).await;
    assert_eq!(allowed["rules"][0]["needs"], "require user:create");
    assert_eq!(allowed["rules"][0]["line"], line);
    assert_eq!(allowed["decision"]["allowed"], true);
    assert_eq!(allowed["subject"]["source"], "user");
    let check = &allowed["checks"][0];
    assert_eq!(check["permission"], "user:create");
    assert_eq!(check["allowed"], true);
    let steps = check["steps"].to_string();
    assert!(
        steps.contains("site permissions allows user:create (by owner)"),
        "{steps}"
    );
    // ... and the member is refused with 403, no role granting it.
    let denied = explain_json(config, &["--path", "/admin/users", "--token", &s.alice]).await;
    assert_eq!(denied["decision"]["allowed"], false);
    assert_eq!(denied["decision"]["status"], 403);
    assert_eq!(denied["checks"][0]["allowed"], false);
    assert!(denied["upstream"].is_null());
    let (_, text) = explain(config, &["--path", "/admin/users", "--token", &s.alice]).await;
    assert!(text.contains("rbac       user:create on {"), "{text}");
    assert!(text.contains(": denied"), "{text}");
    assert!(text.contains("decision   refused: 403"), "{text}");

    // An ambiguous path is refused before any rule, saying why.
    let ambiguous = explain_json(config, &["--path", "/admin/%2e%2e/health"]).await;
    assert_eq!(ambiguous["handled_by"], "refused");
    assert_eq!(ambiguous["decision"]["status"], 400);
    assert!(
        ambiguous["decision"]["detail"]
            .as_str()
            .is_some_and(|d| d.contains("'..'")),
        "{ambiguous}"
    );
    assert!(ambiguous["rules"].as_array().unwrap().is_empty());
    let (_, text) = explain(config, &["--path", "/admin/%2e%2e/health"]).await;
    assert!(
        text.contains("refused: 400 Invalid request path."),
        "{text}"
    );

    s.world.finish().await;
}

#[tokio::test]
async fn the_explain_endpoint_answers_owners_only() {
    let s = Setup::start().await;
    let question = json!({"method": "GET", "path": "/admin/users", "user": "alice"});
    let path = "/api/v2/portcullis/explain";
    let (status, body, _) = s
        .world
        .call(
            Method::POST,
            path,
            Some(question.clone()),
            Some(&s.world.admin),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["subject"]["username"], "alice");
    assert_eq!(body["decision"]["status"], 403);
    assert_eq!(body["checks"][0]["permission"], "user:create");
    // The same answer as the command line's.
    let cli = explain_json(&s.config, &["--path", "/admin/users", "--user", "alice"]).await;
    assert_eq!(body["checks"], cli["checks"]);
    assert_eq!(body["decision"], cli["decision"]);

    let member = s
        .world
        .call(Method::POST, path, Some(question.clone()), Some(&s.alice))
        .await;
    assert_message(&member, StatusCode::FORBIDDEN, "Forbidden.");
    let anonymous = s.world.call(Method::POST, path, Some(question), None).await;
    assert_eq!(anonymous.0, StatusCode::UNAUTHORIZED, "{}", anonymous.1);
    assert_eq!(anonymous.1["message"], SIGNED_OUT);
    s.world.finish().await;
}
