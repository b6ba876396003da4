//! the log delivery and no delivery, in the real binary

use super::*;

/// `delivery = "log"` with `danger_log_codes`: the code is in the log at WARN and works;
/// without any delivery, start-up warns that password reset is unavailable and a request is
/// still 204; `check-config` refuses `log` without `danger_log_codes`, naming the key.
#[tokio::test]
async fn the_log_delivery_writes_a_working_code_and_no_delivery_warns_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let echo = start_echo().await;
    let write = |name: &str, otp: &str| {
        let path = dir.path().join(name);
        std::fs::write(&path, config_with_store(echo, "memory://", "p:", "", otp)).unwrap();
        path
    };

    let refused = write("refused.toml", "[otp]\ndelivery = \"log\"\n");
    let out = command()
        .args(["check-config", "--config"])
        .arg(&refused)
        .output()
        .await
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("otp.delivery") && stderr.contains("danger_log_codes"),
        "{stderr}"
    );

    let logged = spawn_serve(&write(
        "log.toml",
        "[otp]\ndelivery = \"log\"\ndanger_log_codes = true\n",
    ))
    .await;
    first_user(logged.addr).await;
    assert_eq!(
        request_code(logged.addr, EMAIL).await,
        StatusCode::NO_CONTENT
    );
    let marker = "one-time passcode (otp.delivery";
    eventually("the code in the log", || async {
        logged.log().contains(marker)
    })
    .await;
    let log = logged.log();
    let line = log.lines().find(|l| l.contains(marker)).unwrap();
    assert!(line.contains("WARN"), "{line}");
    let code = line[line.find("code=").unwrap() + 5..]
        .split_whitespace()
        .next()
        .unwrap()
        .trim_matches('"')
        .to_owned();
    let got = change(logged.addr, EMAIL, &code, NEW_PASSWORD).await;
    assert_eq!(got.0, StatusCode::NO_CONTENT, "{}", got.1);

    let silent = spawn_serve(&write("none.toml", "")).await;
    assert!(
        silent.log().contains("password reset is unavailable"),
        "{}",
        silent.log()
    );
    first_user(silent.addr).await;
    assert_eq!(
        request_code(silent.addr, EMAIL).await,
        StatusCode::NO_CONTENT
    );
    let resp = send(silent.admin, get("admin.test", "/metrics")).await;
    let metrics = body_string(resp).await;
    assert_eq!(
        metric(
            &metrics,
            "portcullis_otp_deliveries_total{result=\"unconfigured\"}"
        ),
        1.0
    );
}
