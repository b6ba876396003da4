//! A Coder API client from the package registries, unchanged, against Portcullis: `coder-api`
//! (PyPI, "Python bindings for the Coder API", pinned in tests/tools/requirements.txt and
//! installed by scripts/test), driven by tests/coder_client/drive.py as a new user of that
//! library would drive it. The script reports every call's status and whether Portcullis or
//! the application behind it answered; this test holds each call to what Coder answers, and
//! the calls about things Portcullis does not hold (SSH keys, workspaces, templates) to the
//! application.

use std::path::Path;

use serde_json::Value;

use crate::common::world::World;
use crate::common::*;

/// Each call of drive.py: the status Coder answers it with, and whether the application (not
/// Portcullis) answers it.
const EXPECTED: &[(&str, u16, bool)] = &[
    ("User.auth_methods", 200, false),
    ("User.list", 200, false),
    ("Organization.list", 200, false),
    ("Organization.get", 200, false),
    ("User.create", 201, false),
    ("User.get_or_create (exists)", 200, false),
    ("User.get", 200, false),
    ("User.get_organizations", 200, false),
    ("User.suspend", 200, false),
    ("User.activate", 200, false),
    ("User.create_session_key", 201, false),
    ("User.create_token", 201, false),
    ("User.get_tokens", 200, false),
    ("User.get_token (by name)", 200, false),
    ("User.get_token (by id)", 200, false),
    ("User.delete_token", 204, false),
    ("Organization.create", 201, false),
    ("Organization.get (new)", 200, false),
    ("Organization.delete", 200, false),
    ("Organization.delete (default)", 400, false),
    ("User.delete", 200, false),
    ("User.get (deleted)", 404, false),
    ("User.ssh_key", 200, true),
    ("Workspace.list", 200, true),
    ("Template.list", 200, true),
];

async fn a_python_coder_client_works_unchanged(store_url: &str) {
    let w = World::start(store_url, "").await;
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/coder_client/drive.py");
    let mut cmd = tokio::process::Command::new(venv_program("python"));
    cmd.arg(&script)
        .arg(format!("http://{}", w.sidecar.addr))
        .arg(&w.admin);
    let (code, stdout, stderr) = finish(cmd).await;
    // The library prints some answers itself: only the script's report lines count.
    let report: Vec<Value> = stdout
        .lines()
        .filter(|l| l.starts_with(r#"{"call""#))
        .map(|l| serde_json::from_str(l).expect("a report line"))
        .collect();
    let got: Vec<(String, u64, bool)> = report
        .iter()
        .map(|r| {
            let call = r["call"].as_str().unwrap_or_default().to_owned();
            let status = r["status"].as_u64().unwrap_or_default();
            (call, status, r["forwarded"] == true)
        })
        .collect();
    for r in &report {
        eprintln!("{} {} {}", r["call"], r["status"], r["body"]);
    }
    assert_eq!(code, Some(0), "drive.py failed: {stderr}");
    let want: Vec<(String, u64, bool)> = EXPECTED
        .iter()
        .map(|(call, status, fwd)| ((*call).to_owned(), u64::from(*status), *fwd))
        .collect();
    assert_eq!(got, want, "(call, status, answered by the application)");

    // What the library made is really there: the user it created lists, and is a member of
    // the default organization; the token it deleted is gone.
    let by_call = |name: &str| &report.iter().find(|r| r["call"] == name).unwrap()["body"];
    assert_eq!(by_call("User.create")["username"], "dana");
    assert_eq!(by_call("User.create")["login_type"], "none");
    assert_eq!(by_call("User.get_organizations")[0]["id"], w.org.as_str());
    assert_eq!(by_call("User.suspend")["status"], "suspended");
    assert_eq!(by_call("User.activate")["status"], "active");
    assert_eq!(by_call("User.get_token (by name)")["token_name"], "ci");
    assert!(by_call("User.list")["users"].is_array());
}

on_every_store!(a_python_coder_client_works_unchanged);
