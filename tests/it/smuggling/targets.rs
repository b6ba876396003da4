//! Request targets and hosts: absolute-form targets with a `Host` that names another host,
//! authority-form and asterisk-form, userinfo, and `Host` values that are not a host. The
//! route policy must judge the path the upstream receives, and the upstream must receive the
//! host Portcullis used (the identity assertion's audience is made from it).

use super::*;

/// An absolute-form target wins over `Host` (RFC 9112 §3.2.2): the upstream gets the target's
/// path in origin form and the target's host in `Host` and `X-Forwarded-Host`, and the policy
/// judged that same path.
#[tokio::test]
async fn absolute_form_is_judged_and_forwarded_as_its_own_host_and_path() {
    for t in Target::both().await {
        let answers = t
            .probe(b"GET http://other.test/public/x?q=1 HTTP/1.1\r\nHost: app.test\r\n\r\n")
            .await;
        let seen = t.assert_forwarded("absolute-form", &answers);
        assert_eq!(seen.target, "/public/x?q=1");
        assert_eq!(seen.header("host"), ["other.test"]);
        assert_eq!(seen.header("x-forwarded-host"), ["other.test"]);

        // The policy reads the target's path, not the Host's: a private path needs a session
        // whatever Host says, and the spellings that canonical paths refuse are refused here
        // too.
        for (target, status) in [
            ("http://app.test/private/x", 401),
            ("http://app.test//private/x", 401),
            ("https://app.test/private/x", 401),
            ("http://app.test", 401),
            ("http://app.test?x=/public/", 401),
            ("http://app.test/public/../private/x", 400),
            ("http://app.test/public/%2e%2e/private/x", 400),
            ("http://app.test/public%2f..%2fprivate", 400),
        ] {
            let probe = format!("GET {target} HTTP/1.1\r\nHost: app.test\r\n\r\n");
            let answers = t.probe(probe.as_bytes()).await;
            t.assert_judged_alone(target, &answers, status);
        }
    }
}

/// With a session, an absolute-form target without a path reaches the upstream as `/`, the
/// path the policy judged.
#[tokio::test]
async fn absolute_form_without_a_path_is_judged_and_forwarded_as_slash() {
    for t in Target::both().await {
        let token = t.session().await;
        let probe = format!(
            "GET http://app.test HTTP/1.1\r\nHost: other.test\r\nCoder-Session-Token: {token}\r\n\r\n"
        );
        let answers = t.probe(probe.as_bytes()).await;
        let seen = t.assert_forwarded("absolute-form, no path", &answers);
        assert_eq!(seen.target, "/");
        assert_eq!(seen.header("host"), ["app.test"]);
    }
}

/// Userinfo is no part of a host (RFC 9110 §4.2.4, §7.2): `Host: app.test@evil.test` or an
/// absolute-form `http://app.test@evil.test/` names one host to a reader that stops at `@` and
/// another to one that does not. Refused with `400`, like a `Host` that is not a host at all,
/// and a target in authority form (only `CONNECT` has one).
#[tokio::test]
async fn hosts_with_userinfo_or_that_are_no_host_are_a_400() {
    for t in Target::both().await {
        for probe in [
            "GET /public/x HTTP/1.1\r\nHost: app.test@evil.test\r\n\r\n",
            "GET /public/x HTTP/1.1\r\nHost: user:pw@app.test\r\n\r\n",
            "GET http://app.test@evil.test/public/x HTTP/1.1\r\nHost: app.test\r\n\r\n",
            "GET http://user@app.test/public/x HTTP/1.1\r\nHost: app.test\r\n\r\n",
            "GET /public/x HTTP/1.1\r\nHost: app.test/private\r\n\r\n",
            "GET /public/x HTTP/1.1\r\nHost: \r\n\r\n",
            "GET /public/x HTTP/1.1\r\nHost: app.test, evil.test\r\n\r\n",
            "GET app.test:80 HTTP/1.1\r\nHost: app.test\r\n\r\n",
        ] {
            let answers = t.probe(probe.as_bytes()).await;
            t.assert_judged_alone(probe, &answers, 400);
        }
    }
}

/// The asterisk form is only for `OPTIONS` (RFC 9112 §3.2.4). `OPTIONS *` is judged and
/// forwarded as `*`; any other method with `*` is refused, since no route rule can name it and
/// an upstream may route it anywhere.
#[tokio::test]
async fn asterisk_form_is_only_for_options() {
    for t in Target::both().await {
        let answers = t.probe(b"GET * HTTP/1.1\r\nHost: app.test\r\n\r\n").await;
        t.assert_judged_alone("GET *", &answers, 400);

        let token = t.session().await;
        let probe =
            format!("OPTIONS * HTTP/1.1\r\nHost: app.test\r\nCoder-Session-Token: {token}\r\n\r\n");
        let answers = t.probe(probe.as_bytes()).await;
        let seen = t.assert_forwarded("OPTIONS *", &answers);
        assert_eq!(
            (seen.method.as_str(), seen.target.as_str()),
            ("OPTIONS", "*")
        );
    }
}
