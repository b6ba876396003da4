//! The deployment files of `deploy/`, checked with the tools an operator would run on them (all
//! pinned in `tests/tools/requirements.txt`, run from `.venv-test/`, offline):
//!
//! - every Kubernetes manifest against the API schemas of Kubernetes 1.29 and of the newest
//!   version `kubernetes-validate` knows, strictly (an unknown field fails);
//! - checkov on the manifests and on `deploy/Dockerfile`: no finding, and every skip annotated
//!   in place with its reason;
//! - hadolint on the Dockerfile and yamllint on the manifests;
//! - each kustomization lists every manifest of its folder, so what is validated is what
//!   `kubectl apply -k` applies;
//! - each Portcullis config in a ConfigMap loads (`check-config`) with every file it names
//!   mounted into its container, and nothing it names left unmounted;
//! - each Portcullis container's limits hold: `server.workers` and `passwords.max_concurrent`
//!   are pinned to the CPU limit, and the peak RSS of the real binary running that config's
//!   workers and argon2 parameters, through 16 concurrent logins three times over and then
//!   `server.max_connections` open connections, stays under the memory limit;
//! - the Docker build context (`.dockerignore`) lets in what the Dockerfile copies, and that is
//!   enough for cargo.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::common::*;

/// The folder of the Kubernetes manifests, relative to the repository root.
const KUBERNETES: &str = "deploy/kubernetes";
/// The oldest Kubernetes version the manifests are validated for.
const OLDEST: &str = "1.29.0";
/// Concurrent logins in each round of the sizing test, and the rounds.
const LOGINS: usize = 16;
const ROUNDS: usize = 3;

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// Every file under `dir` whose name ends with one of `endings`, sorted.
fn files_under(dir: &Path, endings: &[&str], out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
        let path = entry.unwrap().path();
        if path.is_dir() {
            files_under(&path, endings, out);
        } else if endings.iter().any(|e| path.to_string_lossy().ends_with(e)) {
            out.push(path);
        }
    }
    out.sort();
}

/// The manifests: every YAML file under [`KUBERNETES`] but the kustomizations.
fn manifest_files() -> Vec<PathBuf> {
    let mut files = Vec::new();
    files_under(&repo().join(KUBERNETES), &[".yaml", ".yml"], &mut files);
    files.retain(|f| f.file_name().is_some_and(|n| n != "kustomization.yaml"));
    assert!(files.len() >= 10, "too few manifests: {files:?}");
    files
}

/// Runs `program` (a path) in the repository root with `args` and `envs`: exit code, stdout,
/// stderr.
async fn run(
    program: &Path,
    args: &[&str],
    envs: &[(&str, &str)],
) -> (Option<i32>, String, String) {
    let mut cmd = tokio::process::Command::new(program);
    cmd.args(args).current_dir(repo());
    for (k, v) in envs {
        cmd.env(k, v);
    }
    // checkov and kubernetes-validate import a great deal of Python: on a loaded machine the
    // first run alone can take longer than the usual hang bound.
    match tokio::time::timeout(TOOL_BOUND, finish_unbounded(cmd)).await {
        Ok(out) => out,
        Err(_) => panic!("{} did not exit within {TOOL_BOUND:?}", program.display()),
    }
}

/// How long one run of a validator may take before the test calls it hung.
const TOOL_BOUND: std::time::Duration = std::time::Duration::from_secs(300);

fn relative(path: &Path) -> String {
    path.strip_prefix(repo())
        .unwrap_or(path)
        .display()
        .to_string()
}

/// What `tests/tools/k8s_manifests.py` reads off the manifests (see its doc).
async fn manifests() -> Value {
    let script = repo().join("tests/tools/k8s_manifests.py");
    let (code, stdout, stderr) = run(
        &venv_program("python"),
        &[&script.display().to_string(), KUBERNETES],
        &[],
    )
    .await;
    assert_eq!(code, Some(0), "{stderr}");
    serde_json::from_str(&stdout).unwrap()
}

#[tokio::test]
async fn every_manifest_passes_kubernetes_validate_strictly_for_1_29_and_the_newest_version() {
    let (code, newest, stderr) = run(
        &venv_program("python"),
        &[
            "-c",
            "import kubernetes_validate.utils as u; print(u.latest_version())",
        ],
        &[],
    )
    .await;
    assert_eq!(code, Some(0), "{stderr}");
    let newest = newest.trim().to_owned();
    let minor = |v: &str| -> u32 { v.split('.').nth(1).unwrap().parse().unwrap() };
    assert!(minor(&newest) > minor(OLDEST), "newest known: {newest}");

    let files: Vec<String> = manifest_files().iter().map(|f| relative(f)).collect();
    let mut args = vec!["--strict", "-k", OLDEST, "-k", &newest];
    args.extend(files.iter().map(String::as_str));
    let (code, stdout, stderr) = run(&venv_program("kubernetes-validate"), &args, &[]).await;
    assert_eq!(code, Some(0), "{stdout}{stderr}");
    let problems: Vec<&str> = stdout
        .lines()
        .filter(|l| !l.starts_with("INFO"))
        // The Prometheus Operator's PodMonitor is a custom resource: no schema to check against.
        .filter(|l| !(l.starts_with("WARN") && l.contains("for kind PodMonitor with api version")))
        .collect();
    assert!(problems.is_empty(), "{}", problems.join("\n"));

    let resources = manifests().await["resources"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["kind"] != "PodMonitor")
        .count();
    for version in [OLDEST, &newest] {
        let against = format!("against version 1.{}", minor(version));
        let passed = stdout
            .lines()
            .filter(|l| l.starts_with("INFO") && l.contains(" passed ") && l.ends_with(&against))
            .count();
        assert_eq!(passed, resources, "{against}:\n{stdout}");
    }
}

/// checkov's JSON report(s): one object per framework.
fn checkov_reports(stdout: &str) -> Vec<Value> {
    match serde_json::from_str::<Value>(stdout).unwrap_or_else(|e| panic!("{e}: {stdout}")) {
        Value::Array(reports) => reports,
        report => vec![report],
    }
}

#[tokio::test]
async fn checkov_passes_the_manifests_and_the_dockerfile_and_every_skip_says_why() {
    // Offline: no download of policies or check metadata, no version check.
    let offline = [
        ("BC_SKIP_MAPPING", "TRUE"),
        ("CKV_SKIP_PACKAGE_UPDATE_CHECK", "TRUE"),
    ];
    let mut skipped = BTreeSet::new();
    for (target, framework) in [
        (["-d", KUBERNETES], "kubernetes"),
        (["-f", "deploy/Dockerfile"], "dockerfile"),
    ] {
        let mut args = target.to_vec();
        args.extend(["--framework", framework, "--skip-download", "-o", "json"]);
        let (code, stdout, stderr) = run(&venv_program("checkov"), &args, &offline).await;
        let reports = checkov_reports(&stdout);
        assert_eq!(reports.len(), 1, "{framework}: {stdout}");
        let report = &reports[0];
        let failed: Vec<String> = report["results"]["failed_checks"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| format!("{} {} {}", c["check_id"], c["resource"], c["file_path"]))
            .collect();
        assert!(failed.is_empty(), "{framework}:\n{}", failed.join("\n"));
        assert_eq!(code, Some(0), "{framework}: {stderr}");
        let summary = &report["summary"];
        assert_eq!(summary["parsing_errors"], 0, "{framework}: {summary}");
        assert!(
            summary["passed"].as_u64().unwrap() > 20,
            "{framework}: {summary}"
        );
        for check in report["results"]["skipped_checks"].as_array().unwrap() {
            skipped.insert(check["check_id"].as_str().unwrap().to_owned());
        }
    }

    // Every skip is an annotation `checkov.io/skipN: CHECK_ID=why`, with a reason that says
    // something, and every annotated skip is one checkov applied.
    let mut annotated = BTreeSet::new();
    for resource in manifests().await["resources"].as_array().unwrap() {
        for (key, value) in resource["annotations"].as_object().unwrap() {
            if !key.starts_with("checkov.io/skip") {
                continue;
            }
            let value = value.as_str().unwrap();
            let (id, why) = value
                .split_once('=')
                .unwrap_or_else(|| panic!("{key} has no reason: {value}"));
            assert!(
                why.split_whitespace().count() >= 8,
                "{key}: say why in the annotation: {value}"
            );
            annotated.insert(id.to_owned());
        }
    }
    let dockerfile = std::fs::read_to_string(repo().join("deploy/Dockerfile")).unwrap();
    for line in dockerfile.lines().filter(|l| l.contains("checkov:skip=")) {
        let (_, rest) = line.split_once("checkov:skip=").unwrap();
        let (id, why) = rest.split_once(':').unwrap_or((rest, ""));
        assert!(why.split_whitespace().count() >= 8, "say why: {line}");
        annotated.insert(id.trim().to_owned());
    }
    assert_eq!(skipped, annotated);
}

#[tokio::test]
async fn the_dockerfile_passes_hadolint_and_each_ignored_rule_says_why() {
    let (code, stdout, stderr) = run(&venv_program("hadolint"), &["deploy/Dockerfile"], &[]).await;
    assert_eq!((code, stdout.as_str()), (Some(0), ""), "{stderr}");
    let dockerfile = std::fs::read_to_string(repo().join("deploy/Dockerfile")).unwrap();
    let lines: Vec<&str> = dockerfile.lines().collect();
    for (n, line) in lines.iter().enumerate() {
        if line.contains("hadolint ignore") {
            let before = n.checked_sub(1).map(|p| lines[p]).unwrap_or("");
            assert!(
                before.starts_with('#') && !before.contains("hadolint"),
                "line {}: a comment above an ignore says why",
                n + 1
            );
        }
    }
}

#[tokio::test]
async fn every_manifest_passes_yamllint() {
    let (code, stdout, stderr) = run(
        &venv_program("yamllint"),
        &["--strict", "-c", ".yamllint.yaml", KUBERNETES],
        &[],
    )
    .await;
    assert_eq!(code, Some(0), "{stdout}{stderr}");
}

#[test]
fn each_kustomization_lists_every_manifest_of_its_folder() {
    let mut kustomizations = Vec::new();
    files_under(
        &repo().join(KUBERNETES),
        &["kustomization.yaml"],
        &mut kustomizations,
    );
    assert!(kustomizations.len() >= 2, "{kustomizations:?}");
    let mut covered = BTreeSet::new();
    for k in &kustomizations {
        let text = std::fs::read_to_string(k).unwrap();
        let listed: BTreeSet<String> = text
            .lines()
            .skip_while(|l| *l != "resources:")
            .skip(1)
            .take_while(|l| l.starts_with("  - "))
            .map(|l| l.trim_start_matches("  - ").to_owned())
            .collect();
        let folder = k.parent().unwrap();
        let present: BTreeSet<String> = std::fs::read_dir(folder)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.ends_with(".yaml") && n != "kustomization.yaml")
            .collect();
        assert_eq!(listed, present, "{}", relative(k));
        covered.extend(present.iter().map(|n| folder.join(n)));
    }
    // And every manifest belongs to a kustomization.
    let all: BTreeSet<PathBuf> = manifest_files().into_iter().collect();
    assert_eq!(covered, all);
}

/// The Portcullis containers of the manifests, each with its config's text: the container's
/// JSON (see `k8s_manifests.py`) and the `portcullis.toml` it mounts.
async fn portcullis_containers() -> Vec<(Value, String)> {
    let m = manifests().await;
    let mut out = Vec::new();
    for c in m["containers"].as_array().unwrap() {
        if c["name"] != "portcullis" {
            continue;
        }
        let source = c["sources"]["/etc/portcullis/portcullis.toml"]
            .as_str()
            .unwrap_or_else(|| panic!("{}: no /etc/portcullis/portcullis.toml", c["workload"]));
        // "<namespace>/configMap/<name>/<key>"
        let parts: Vec<&str> = source.split('/').collect();
        assert_eq!(parts[1], "configMap", "{source}");
        let config = m["configs"][format!("{}/{}", parts[0], parts[2])][parts[3]]
            .as_str()
            .unwrap_or_else(|| panic!("no ConfigMap data for {source}"))
            .to_owned();
        out.push((c.clone(), config));
    }
    assert_eq!(out.len(), 2, "a sidecar and a forward-auth Deployment");
    out
}

/// Every string in `value` (a TOML tree).
fn strings<'a>(value: &'a toml::Value, out: &mut Vec<&'a str>) {
    match value {
        toml::Value::String(s) => out.push(s),
        toml::Value::Array(items) => items.iter().for_each(|v| strings(v, out)),
        toml::Value::Table(t) => t.values().for_each(|v| strings(v, out)),
        _ => {}
    }
}

#[tokio::test]
async fn each_kubernetes_config_loads_with_every_file_it_names_mounted() {
    for (container, text) in portcullis_containers().await {
        let workload = container["workload"].as_str().unwrap();
        let mounted: BTreeSet<&str> = container["files"]
            .as_array()
            .unwrap()
            .iter()
            .map(|f| f.as_str().unwrap())
            .collect();
        let parsed: toml::Value = toml::from_str(&text).unwrap();
        let mut named = Vec::new();
        strings(&parsed, &mut named);
        // File paths, as opposed to routes ("/healthz") and URLs: every file is under /etc.
        let named: BTreeSet<&str> = named
            .into_iter()
            .filter(|s| s.starts_with("/etc/"))
            .collect();
        let missing: Vec<&&str> = named.difference(&mounted).collect();
        assert!(
            missing.is_empty(),
            "{workload}: named but not mounted: {missing:?}"
        );
        // Every secret the manifest mounts is used by the config (no forgotten wiring).
        let unused: Vec<&&str> = mounted
            .iter()
            .filter(|f| !f.ends_with("/portcullis.toml") && !named.contains(*f))
            .collect();
        assert!(
            unused.is_empty(),
            "{workload}: mounted but not used: {unused:?}"
        );

        // The mounted files, stand-ins with the right shape, under a folder of our own.
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().display().to_string();
        for file in &mounted {
            let path = PathBuf::from(file.replace("/etc/portcullis", &root));
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            let from = match Path::new(file).file_name().unwrap().to_str().unwrap() {
                "portcullis.toml" => None,
                "tls.crt" => Some(repo().join("tests/certs/a.pem")),
                "tls.key" => Some(repo().join("tests/certs/a.key")),
                "assertion.pem" => Some(key_file("assertion-a.pem")),
                _ => {
                    std::fs::write(&path, "a-secret\n").unwrap();
                    None
                }
            };
            if let Some(from) = from {
                std::fs::copy(&from, &path).unwrap();
            }
        }
        let config = dir.path().join("portcullis.toml");
        std::fs::write(&config, text.replace("/etc/portcullis", &root)).unwrap();
        // The cluster's Redis is not here: the test's (the password file is sent, and refused).
        let out = bounded(
            "check-config",
            command()
                .args(["check-config", "--config"])
                .arg(&config)
                .env("PORTCULLIS_STORE__URL", "redis://127.0.0.1:6379/0")
                .output(),
        )
        .await
        .unwrap();
        assert_eq!(
            out.status.code(),
            Some(0),
            "{workload}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

/// A Kubernetes CPU quantity ("1", "2", "500m") in whole CPUs, rounded up.
fn cpus(quantity: &str) -> usize {
    match quantity.strip_suffix('m') {
        Some(milli) => milli.parse::<usize>().unwrap().div_ceil(1000),
        None => quantity.parse().unwrap(),
    }
}

/// A Kubernetes memory quantity ("96Mi", "1Gi") in KiB.
fn kib(quantity: &str) -> u64 {
    let (n, unit) = quantity.split_at(quantity.find(|c: char| !c.is_ascii_digit()).unwrap());
    let n: u64 = n.parse().unwrap();
    match unit {
        "Ki" => n,
        "Mi" => n * 1024,
        "Gi" => n * 1024 * 1024,
        other => panic!("write memory in Ki, Mi or Gi, not {other}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_portcullis_container_holds_its_measured_peak_within_its_limits() {
    for (container, text) in portcullis_containers().await {
        let workload = container["workload"].as_str().unwrap();
        let limits = &container["limits"];
        let cpu = cpus(limits["cpu"].as_str().expect("a CPU limit"));
        let memory = kib(limits["memory"].as_str().expect("a memory limit"));
        let parsed: toml::Table = toml::from_str(&text).unwrap();
        let server = parsed["server"].as_table().unwrap();
        let passwords = parsed["passwords"].as_table().unwrap();
        let int = |t: &toml::Table, key: &str| -> i64 {
            t.get(key)
                .and_then(toml::Value::as_integer)
                .unwrap_or_else(|| panic!("{workload}: {key} is to be pinned in the config"))
        };
        let workers = int(server, "workers");
        let max_connections = int(server, "max_connections");
        assert_eq!(
            workers as usize, cpu,
            "{workload}: server.workers is the CPU limit"
        );
        assert_eq!(
            int(passwords, "max_concurrent") as usize,
            cpu,
            "{workload}: passwords.max_concurrent is the CPU limit"
        );
        for key in [
            "argon2_memory_kib",
            "argon2_iterations",
            "argon2_parallelism",
        ] {
            int(passwords, key);
        }

        // The real binary with those workers, connections and [passwords], in front of the
        // echo upstream, with no login limit (all logins come from one address).
        let mut section = String::new();
        for (key, value) in passwords {
            // Its keys are numbers and booleans (the toml crate is built here without its writer).
            let value = match value {
                toml::Value::Integer(n) => n.to_string(),
                toml::Value::Boolean(b) => b.to_string(),
                other => panic!("{workload}: passwords.{key} = {other:?}"),
            };
            section.push_str(&format!("{key} = {value}\n"));
        }
        let echo = start_echo().await;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("portcullis.toml");
        let server_lines = format!("workers = {workers}\nmax_connections = {max_connections}");
        std::fs::write(
            &path,
            format!(
                "{}\n[rate_limit]\nlogin_per_minute = 0\n\n[passwords]\n{section}",
                config(&http_url(echo), &server_lines, "")
            ),
        )
        .unwrap();
        let proc = spawn_serve(&path).await;
        let addr = proc.addr;
        create_admin(addr).await;
        for _ in 0..ROUNDS {
            let logins: Vec<_> = (0..LOGINS)
                .map(|_| tokio::spawn(async move { login(addr, ADMIN_EMAIL, PASSWORD).await }))
                .collect();
            for l in logins {
                let (status, body) = bounded("a login", l).await.unwrap();
                assert_eq!(status, 201, "{body}");
            }
        }
        let after_logins = proc.peak_rss_kib();
        let mut open = Vec::new();
        for _ in 0..max_connections {
            let mut sender = h1(addr).await;
            let resp = bounded("an answer", sender.send_request(get("app.test", "/")))
                .await
                .unwrap();
            assert_eq!(resp.status(), 200);
            body_string(resp).await;
            open.push(sender);
        }
        let peak = proc.peak_rss_kib();
        eprintln!(
            "{workload}: peak RSS {} KiB after {ROUNDS}x{LOGINS} concurrent logins, {} KiB with \
             {max_connections} connections open; limit {memory} KiB",
            after_logins, peak
        );
        assert!(
            peak <= memory,
            "{workload}: peak RSS {peak} KiB is over the memory limit of {memory} KiB"
        );
    }
}

#[tokio::test]
async fn the_docker_build_context_lets_in_what_the_dockerfile_copies_and_cargo_needs() {
    // .dockerignore is an allowlist: "*", then "!path" for each file or folder let in.
    let ignore = std::fs::read_to_string(repo().join(".dockerignore")).unwrap();
    let mut lines = ignore
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'));
    assert_eq!(
        lines.next(),
        Some("*"),
        "an allowlist starts by excluding everything"
    );
    let allowed: BTreeSet<String> = lines
        .map(|l| {
            l.strip_prefix('!')
                .unwrap_or_else(|| panic!("only !path lines follow: {l}"))
                .trim_end_matches('/')
                .to_owned()
        })
        .collect();

    let dockerfile = std::fs::read_to_string(repo().join("deploy/Dockerfile")).unwrap();
    let mut copied = BTreeSet::new();
    for line in dockerfile.lines().filter(|l| l.starts_with("COPY ")) {
        let words: Vec<&str> = line.split_whitespace().skip(1).collect();
        if words.iter().any(|w| w.starts_with("--from")) {
            continue;
        }
        let sources = &words[..words.len() - 1];
        for source in sources.iter().filter(|w| !w.starts_with("--")) {
            copied.insert(
                source
                    .trim_start_matches("./")
                    .trim_end_matches('/')
                    .to_owned(),
            );
        }
    }
    let missing: Vec<&String> = copied.difference(&allowed).collect();
    assert!(
        missing.is_empty(),
        "copied but not in the context: {missing:?}"
    );
    let unused: Vec<&String> = allowed.difference(&copied).collect();
    assert!(unused.is_empty(), "let in but never copied: {unused:?}");

    // The context alone: enough for cargo to read the package and its lock (a missing target
    // file, such as the bench that Cargo.toml names, fails here as it would in the build).
    let dir = tempfile::tempdir().unwrap();
    for entry in &allowed {
        let (from, to) = (repo().join(entry), dir.path().join(entry));
        std::fs::create_dir_all(to.parent().unwrap()).unwrap();
        let status = std::process::Command::new("cp")
            .arg("-R")
            .arg(&from)
            .arg(&to)
            .status()
            .unwrap();
        assert!(status.success(), "cp {}", from.display());
    }
    let mut cargo = tokio::process::Command::new(env!("CARGO"));
    cargo
        .args(["fetch", "--locked", "--offline"])
        .current_dir(dir.path());
    let (code, _, stderr) = finish(cargo).await;
    assert_eq!(code, Some(0), "cargo fetch in the build context: {stderr}");
}
