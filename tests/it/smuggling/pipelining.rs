//! Pipelined requests: several in one write. Each is judged on its own — an authorised
//! request never carries an unauthorised one — they reach the upstream in order, and nothing
//! written after a request that broke the framing is read at all.

use super::*;

/// After a request whose framing is refused, the rest of the write (here a second request) is
/// never read: one answer, the close, nothing at the upstream.
#[tokio::test]
async fn a_request_after_a_refused_framing_never_reaches_the_upstream() {
    for t in Target::both().await {
        for (first, status) in [
            (
                "POST /public/a HTTP/1.1\r\nHost: app.test\r\nContent-Length: 5\r\n\
                 Content-Length: 6\r\n\r\nhello",
                400,
            ),
            (
                "POST /public/a HTTP/1.1\r\nHost: app.test\r\nTransfer-Encoding: gzip, chunked\r\n\
                 \r\n0\r\n\r\n",
                501,
            ),
            (
                "POST /public/a HTTP/1.1\r\nHost: app.test\r\nContent-Length: 0\r\n\
                 Content_Length: 40\r\n\r\n",
                400,
            ),
            (
                "GET /public/a HTTP/1.1\r\nHost: app.test\r\nX-A: a\r\n b\r\n\r\n",
                400,
            ),
        ] {
            let probe = format!("{first}GET /public/second HTTP/1.1\r\nHost: app.test\r\n\r\n");
            let answers = t.probe(probe.as_bytes()).await;
            t.assert_refused(first, &answers, status);
        }
    }
}

/// Valid requests pipelined in one write all reach the upstream, in order, each with its own
/// body, and each answer comes back in order.
#[tokio::test]
async fn pipelined_valid_requests_reach_the_upstream_in_order() {
    for t in Target::both().await {
        let answers = t
            .probe(
                b"GET /public/1 HTTP/1.1\r\nHost: app.test\r\n\r\n\
                  POST /public/2 HTTP/1.1\r\nHost: app.test\r\nContent-Length: 3\r\n\r\nabc\
                  POST /public/3 HTTP/1.1\r\nHost: app.test\r\nTransfer-Encoding: chunked\r\n\r\n\
                  2\r\nde\r\n0\r\n\r\n",
            )
            .await;
        let bodies: Vec<String> = answers
            .iter()
            .map(|a| String::from_utf8_lossy(&a.body).into_owned())
            .collect();
        assert_eq!(
            bodies,
            [
                "recorded GET /public/1",
                "recorded POST /public/2",
                "recorded POST /public/3",
                "recorded GET /canary",
            ],
            "{}",
            t.name()
        );
        let seen = t.upstream.take();
        let got: Vec<(&str, &str, &[u8])> = seen
            .iter()
            .map(|r| (r.method.as_str(), r.target.as_str(), r.body.as_slice()))
            .collect();
        assert_eq!(
            got,
            [
                ("GET", "/public/1", &b""[..]),
                ("POST", "/public/2", b"abc"),
                ("POST", "/public/3", b"de"),
                ("GET", "/canary", b""),
            ]
        );
    }
}

/// Each pipelined request is authenticated and authorised on its own: a request without a
/// token between two with one is refused with `401` and never reaches the upstream, and the
/// ones with the token do, each with its own identity headers and without the token.
#[tokio::test]
async fn each_pipelined_request_is_authorised_on_its_own() {
    for t in Target::both().await {
        let token = t.session().await;
        let with = |path: &str| {
            format!("GET {path} HTTP/1.1\r\nHost: app.test\r\nCoder-Session-Token: {token}\r\n\r\n")
        };
        let without = |path: &str| format!("GET {path} HTTP/1.1\r\nHost: app.test\r\n\r\n");
        let probe = [
            with("/private/a"),
            without("/private/b"),
            with("/private/c"),
            without("/private/d"),
        ]
        .concat();
        let answers = t.probe(probe.as_bytes()).await;
        let statuses: Vec<u16> = answers.iter().map(|a| a.status).collect();
        assert_eq!(statuses, [200, 401, 200, 401, 200], "{}", t.name());
        let seen = t.upstream.take();
        let targets: Vec<&str> = seen.iter().map(|r| r.target.as_str()).collect();
        assert_eq!(targets, ["/private/a", "/private/c", "/canary"]);
        for r in &seen[..2] {
            assert_eq!(r.header("x-forwarded-user"), ["admin"], "{r:?}");
            assert!(r.header("coder-session-token").is_empty(), "{r:?}");
        }
        assert!(seen[2].header("x-forwarded-user").is_empty());
    }
}

/// A body that reads like a request is a body: with a token, the upstream gets one request
/// whose body is those bytes; without one, the `401` answer drains the body and the next
/// request on the connection is the canary, never the one in the body.
#[tokio::test]
async fn a_request_inside_a_body_is_only_ever_a_body() {
    let inner = "GET /private/inner HTTP/1.1\r\nHost: app.test\r\n\r\n";
    for t in Target::both().await {
        let token = t.session().await;
        let authorised = format!(
            "POST /private/upload HTTP/1.1\r\nHost: app.test\r\nCoder-Session-Token: {token}\r\n\
             Content-Length: {}\r\n\r\n{inner}",
            inner.len()
        );
        let answers = t.probe(authorised.as_bytes()).await;
        let seen = t.assert_forwarded("request in an authorised body", &answers);
        assert_eq!(seen.target, "/private/upload");
        assert_eq!(seen.body, inner.as_bytes());

        let unauthorised = format!(
            "POST /private/upload HTTP/1.1\r\nHost: app.test\r\nContent-Length: {}\r\n\r\n{inner}",
            inner.len()
        );
        let answers = t.probe(unauthorised.as_bytes()).await;
        let statuses: Vec<u16> = answers.iter().map(|a| a.status).collect();
        assert_eq!(statuses, [401, 200], "{}", t.name());
        let seen = t.upstream.take();
        assert_eq!(seen.len(), 1, "{seen:?}");
        assert_canary(&seen[0]);
    }
}
