//! A published scanner: h2rs 0.0.1 (PyPI, pinned in `tests/tools/requirements.txt`), which
//! looks for request smuggling through HTTP/2 downgrades (H2.CL, H2.TE, the same through CRLF
//! injection in a header value, and request tunnelling through a CR/LF in a header name or
//! `:path`) by timing: a downgrade that leaves the HTTP/1.1 upstream waiting for a body shows
//! as a timeout on one probe but not on its control.
//!
//! It is a weak oracle on its own: it treats a stream reset like no answer, so its verdict
//! rests on the control requests being answered. So the test also requires what the scanner
//! cannot see: the recording upstream read nothing a strict server would refuse, and got no
//! request but the scanner's plain ones.

use super::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn h2rs_finds_no_http2_downgrade_smuggling() {
    // h2rs only asks for `/`: make it public so that its requests reach the upstream.
    let t = Target::start(true, "[[policy.route]]\npath = \"/\"\npublic = true\n").await;
    let port = t.sidecar.addr.port().to_string();
    let script =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/tools/h2rs_checks.py");
    let out = bounded(
        "h2rs",
        tokio::process::Command::new(venv_program("python"))
            .arg(script)
            .args(["localhost", &port, "2"])
            .kill_on_drop(true)
            .output(),
    )
    .await
    .expect("h2rs runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "h2rs failed: {stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    eprintln!("h2rs verdicts:\n{stdout}");
    let verdicts: Vec<(&str, &str)> = stdout.lines().filter_map(|l| l.split_once(' ')).collect();
    let checks: Vec<&str> = verdicts.iter().map(|(c, _)| *c).collect();
    assert_eq!(
        checks,
        ["H2.CL", "H2.CL-CRLF", "H2.TE", "H2.TE-CRLF", "H2-tunnel"],
        "{stdout}"
    );
    for (check, verdict) in &verdicts {
        assert!(
            *verdict == "clean" || *verdict == "closed",
            "h2rs finds {check} {verdict}:\n{stdout}"
        );
    }

    // Only well-formed requests for `/` reached the upstream, none with a body or framing of
    // its own (the upstream would have refused, and failed this, on anything else).
    let seen = t.upstream.take();
    assert!(!seen.is_empty(), "{stdout}");
    for r in &seen {
        assert_eq!(r.target, "/", "{r:?}");
        assert!(r.body.is_empty(), "{r:?}");
    }
}
