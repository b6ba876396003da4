//! The TLS listener against Mozilla's "intermediate" configuration, checked by sslyze (pinned
//! in `tests/tools/requirements.txt`, installed into `.venv-test/` by `scripts/test`): once with
//! an ECDSA P-256 certificate, then again after the pair on disk has been replaced by an RSA
//! 2048 one and reloaded.
//!
//! sslyze's Mozilla check also judges the certificate: key type and size, signature, a lifetime
//! of at most 366 days, and trust. So the test makes its own pairs at run time with openssl
//! (a 90-day P-256 CA and 90-day leaves for `localhost` and `127.0.0.1`) and hands sslyze the
//! CA with `--certinfo_ca_file`; with that every one of sslyze's checks can pass, and the test
//! requires all of them: sslyze's own verdict (`OK - Compliant.`), and from its JSON output the
//! parts named in the issue — TLS 1.2 and 1.3 only, cipher suites and curves within the
//! profile, no compression, secure renegotiation and no client-initiated renegotiation — and
//! that the certificate it judged is the one being served.

use std::path::Path;

use serde_json::Value;

use crate::common::*;

const RELOADS_OK: &str = r#"portcullis_tls_reloads_total{result="ok"}"#;

/// Mozilla "intermediate" (version 5.7), TLS 1.2 cipher suites, IANA names.
const INTERMEDIATE_TLS12: [&str; 9] = [
    "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256",
    "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256",
    "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384",
    "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384",
    "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256",
    "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256",
    "TLS_DHE_RSA_WITH_AES_128_GCM_SHA256",
    "TLS_DHE_RSA_WITH_AES_256_GCM_SHA384",
    "TLS_DHE_RSA_WITH_CHACHA20_POLY1305_SHA256",
];
/// The TLS 1.3 cipher suites of "intermediate".
const INTERMEDIATE_TLS13: [&str; 3] = [
    "TLS_AES_128_GCM_SHA256",
    "TLS_AES_256_GCM_SHA384",
    "TLS_CHACHA20_POLY1305_SHA256",
];
/// Its key exchange groups, as sslyze names them.
const INTERMEDIATE_CURVES: [&str; 3] = ["X25519", "secp256r1", "secp384r1"];

/// Makes in `dir`: `ca.pem` (a 90-day ECDSA P-256 CA), and `ec.pem`/`ec.key` (P-256) and
/// `rsa.pem`/`rsa.key` (RSA 2048), 90-day leaves for `localhost` and `127.0.0.1` that it signed.
fn make_pairs(dir: &Path) {
    make_ca(dir, "Scan Test CA", 90);
    for (name, key) in [("ec", P256), ("rsa", RSA2048)] {
        issue_cert(
            dir,
            name,
            key,
            "serverAuth",
            "DNS:localhost,IP:127.0.0.1",
            90,
        );
    }
}

/// Runs sslyze's Mozilla "intermediate" check on `addr` and returns its JSON result for the one
/// server, after asserting its verdict: exit status 0 and `OK - Compliant.`.
async fn sslyze_intermediate(dir: &Path, addr: std::net::SocketAddr) -> Value {
    let json = dir.join("sslyze.json");
    let out = bounded(
        "sslyze",
        tokio::process::Command::new(venv_program("python"))
            .args(["-m", "sslyze", "--mozilla_config=intermediate"])
            .arg(format!(
                "--certinfo_ca_file={}",
                dir.join("ca.pem").display()
            ))
            .arg(format!("--json_out={}", json.display()))
            .arg(format!("localhost:{}{{{}}}", addr.port(), addr.ip()))
            .kill_on_drop(true)
            .output(),
    )
    .await
    .expect("sslyze runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && stdout.contains("OK - Compliant."),
        "sslyze: not compliant with Mozilla intermediate ({}):\n{stdout}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    let text = std::fs::read_to_string(&json).unwrap();
    let doc: Value = serde_json::from_str(&quote_long_numbers(&text)).unwrap();
    doc["server_scan_results"][0]["scan_result"].clone()
}

/// sslyze writes key numbers (an RSA modulus) as JSON integers past what a float can hold:
/// turns every integer of more than 30 digits outside a string into a string.
fn quote_long_numbers(json: &str) -> String {
    let (mut out, mut run) = (String::with_capacity(json.len()), String::new());
    let (mut in_string, mut escaped) = (false, false);
    for c in json.chars() {
        if !in_string && c.is_ascii_digit() {
            run.push(c);
            continue;
        }
        if !run.is_empty() {
            if run.len() > 30 {
                out.push('"');
                out.push_str(&run);
                out.push('"');
            } else {
                out.push_str(&run);
            }
            run.clear();
        }
        if in_string {
            in_string = escaped || c != '"';
            escaped = !escaped && c == '\\';
        } else {
            in_string = c == '"';
        }
        out.push(c);
    }
    out.push_str(&run);
    out
}

fn accepted(scan: &Value, command: &str) -> Vec<String> {
    let result = &scan[command]["result"];
    result["accepted_cipher_suites"]
        .as_array()
        .unwrap_or_else(|| panic!("no {command} result: {result}"))
        .iter()
        .map(|c| c["cipher_suite"]["name"].as_str().unwrap().to_owned())
        .collect()
}

/// The parts of the profile the issue names, read from sslyze's JSON, and the leaf's key.
fn assert_intermediate(scan: &Value, key: (&str, u64)) {
    for old in [
        "ssl_2_0_cipher_suites",
        "ssl_3_0_cipher_suites",
        "tls_1_0_cipher_suites",
        "tls_1_1_cipher_suites",
    ] {
        assert_eq!(
            scan[old]["result"]["is_tls_version_supported"], false,
            "{old} is spoken"
        );
    }
    let tls12 = accepted(scan, "tls_1_2_cipher_suites");
    let tls13 = accepted(scan, "tls_1_3_cipher_suites");
    assert!(
        !tls12.is_empty() && !tls13.is_empty(),
        "{tls12:?} {tls13:?}"
    );
    for suite in &tls12 {
        assert!(
            INTERMEDIATE_TLS12.contains(&suite.as_str()),
            "TLS 1.2 {suite}"
        );
    }
    for suite in &tls13 {
        assert!(
            INTERMEDIATE_TLS13.contains(&suite.as_str()),
            "TLS 1.3 {suite}"
        );
    }
    for curve in scan["elliptic_curves"]["result"]["supported_curves"]
        .as_array()
        .unwrap()
    {
        let name = curve["name"].as_str().unwrap();
        assert!(INTERMEDIATE_CURVES.contains(&name), "curve {name}");
    }
    assert_eq!(
        scan["tls_compression"]["result"]["supports_compression"],
        false
    );
    let reneg = &scan["session_renegotiation"]["result"];
    assert_eq!(reneg["supports_secure_renegotiation"], true, "{reneg}");
    assert_eq!(
        reneg["is_vulnerable_to_client_renegotiation_dos"], false,
        "{reneg}"
    );
    let deployment = &scan["certificate_info"]["result"]["certificate_deployments"][0];
    let leaf_key = &deployment["received_certificate_chain"][0]["public_key"];
    assert_eq!(
        (
            leaf_key["algorithm"].as_str().unwrap(),
            leaf_key["key_size"].as_u64().unwrap()
        ),
        key,
        "{leaf_key}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_listener_is_mozilla_intermediate_before_and_after_a_certificate_reload() {
    let dir = tempfile::tempdir().unwrap();
    make_pairs(dir.path());
    std::fs::copy(dir.path().join("ec.pem"), dir.path().join("tls.crt")).unwrap();
    std::fs::copy(dir.path().join("ec.key"), dir.path().join("tls.key")).unwrap();
    let echo = start_echo().await;
    let server = "[server.tls]\ncert = \"tls.crt\"\nkey = \"tls.key\"\nwatch_interval = \"100ms\"";
    let sidecar = Sidecar::start_in(&config(&http_url(echo), server, ""), dir.path()).await;

    let scan = sslyze_intermediate(dir.path(), sidecar.addr).await;
    assert_intermediate(&scan, ("ECPublicKey", 256));

    // The RSA pair replaces the ECDSA one on disk, key first, then the certificate.
    for (from, to) in [("rsa.key", "tls.key"), ("rsa.pem", "tls.crt")] {
        let tmp = dir.path().join(format!("{to}.tmp"));
        std::fs::copy(dir.path().join(from), &tmp).unwrap();
        std::fs::rename(&tmp, dir.path().join(to)).unwrap();
    }
    let s = &sidecar;
    eventually("the RSA pair is reloaded", || async move {
        metric(&s.metrics().await, RELOADS_OK) >= 1.0
    })
    .await;

    let scan = sslyze_intermediate(dir.path(), sidecar.addr).await;
    assert_intermediate(&scan, ("RSAPublicKey", 2048));
}
