//! The lines of a request head: obs-fold, bare CR and bare LF line endings, and control bytes
//! in the request line, in header names and in header values. A byte that one parser takes as
//! the end of a line and another as part of a value is how a header hides from one of them.

use super::*;

/// Refused, closed, nothing forwarded, for every head in `heads` on both transports.
async fn all_refused(heads: &[&[u8]]) {
    for t in Target::both().await {
        for head in heads {
            let answers = t.probe(head).await;
            t.assert_refused(
                &format!("{:?}", String::from_utf8_lossy(head)),
                &answers,
                400,
            );
        }
    }
}

/// obs-fold (a field line starting with a space or a tab, RFC 9112 §5.2) continues the previous
/// header for one parser and starts a new one for another: refused, whatever header it folds.
#[tokio::test]
async fn obs_fold_is_a_400() {
    all_refused(&[
        b"GET /public/a HTTP/1.1\r\nHost: app.test\r\nX-Note: a\r\n b\r\n\r\n",
        b"GET /public/a HTTP/1.1\r\nHost: app.test\r\nX-Note: a\r\n\tb\r\n\r\n",
        b"POST /public/a HTTP/1.1\r\nHost: app.test\r\nTransfer-Encoding:\r\n chunked\r\n\r\n\
          0\r\n\r\n",
        b"POST /public/a HTTP/1.1\r\nHost: app.test\r\nContent-Length: 0\r\n 5\r\n\r\nhello",
        b"GET /public/a HTTP/1.1\r\n Host: app.test\r\n\r\n",
        b"GET /public/a HTTP/1.1\r\nHost: app.test\r\n Transfer-Encoding: chunked\r\n\r\n",
    ])
    .await;
}

/// A bare CR is no line ending (RFC 9112 §2.2): a head that uses one, or carries one inside a
/// value, is refused.
#[tokio::test]
async fn bare_cr_is_a_400() {
    all_refused(&[
        b"GET /public/a HTTP/1.1\rHost: app.test\r\n\r\n",
        b"GET /public/a HTTP/1.1\r\nHost: app.test\rX-A: 1\r\n\r\n",
        b"GET /public/a HTTP/1.1\r\nHost: app.test\r\nX-A: a\rTransfer-Encoding: chunked\r\n\r\n",
        b"GET /public/a HTTP/1.1\r\nHost: app.test\r\n\r\r\n",
    ])
    .await;
}

/// A bare LF ends a line for Portcullis (RFC 9112 §2.2 lets a recipient read it so), and what
/// goes upstream is Portcullis's own CRLF lines: the upstream reads exactly the headers
/// Portcullis read, and a header after a bare LF frames the body for both.
#[tokio::test]
async fn bare_lf_lines_reach_the_upstream_as_the_crlf_lines_portcullis_read() {
    for t in Target::both().await {
        let answers = t
            .probe(b"GET /public/lf HTTP/1.1\nHost: app.test\nX-A: 1\n\n")
            .await;
        let seen = t.assert_forwarded("LF only", &answers);
        assert_eq!(seen.target, "/public/lf");
        assert_eq!(seen.header("x-a"), ["1"]);
        assert_eq!(seen.header("host"), ["app.test"]);

        // A Content-Length after a bare LF is a Content-Length: the body is its 5 bytes.
        let answers = t
            .probe(
                b"POST /public/lf HTTP/1.1\r\nHost: app.test\r\nX-A: 1\nContent-Length: 5\r\n\r\n\
                  hello",
            )
            .await;
        let seen = t.assert_forwarded("LF before Content-Length", &answers);
        assert_eq!(seen.header("x-a"), ["1"]);
        assert_eq!(seen.header("content-length"), ["5"]);
        assert_eq!(seen.body, b"hello");
    }
}

/// NUL and the other control bytes (besides tab in values) are allowed nowhere in a head: not
/// in the request line, not in a header name, not in a header value.
#[tokio::test]
async fn control_bytes_in_the_head_are_a_400() {
    let mut heads: Vec<Vec<u8>> = Vec::new();
    for byte in [0x00u8, 0x01, 0x08, 0x0b, 0x0c, 0x1b, 0x7f] {
        let b = char::from(byte);
        heads
            .push(format!("GET /public/a HTTP/1.1\r\nHost: app.test\r\nX-A: a{b}b\r\n\r\n").into());
        heads.push(format!("GET /public/a HTTP/1.1\r\nHost: app.test\r\nX-A{b}: 1\r\n\r\n").into());
        heads.push(format!("GET /public/a{b} HTTP/1.1\r\nHost: app.test\r\n\r\n").into());
        heads.push(format!("GET /public/a HTTP/1.1\r\nHost: app.test{b}\r\n\r\n").into());
    }
    for odd in [
        "GET /public/a HTTP/1.1\r\nHost: app.test\r\nX A: 1\r\n\r\n",
        "GET /public/a HTTP/1.1\r\nHost: app.test\r\nX-A\t: 1\r\n\r\n",
        "GET /public/a HTTP/1.1\r\nHost: app.test\r\n: no name\r\n\r\n",
        "GET /public/a HTTP/1.1\r\nHost: app.test\r\nno colon\r\n\r\n",
        "GET /public/a\tb HTTP/1.1\r\nHost: app.test\r\n\r\n",
        "GET /public/a b HTTP/1.1\r\nHost: app.test\r\n\r\n",
        "GET /public/a HTTP/1.1 \r\nHost: app.test\r\n\r\n",
        "GET /public/a HTTP/1.2\r\nHost: app.test\r\n\r\n",
        "GET /public/a HTTP/1.1\r\nHost: app.test\r\nX-A: a\0Transfer-Encoding: chunked\r\n\r\n",
    ] {
        heads.push(odd.into());
    }
    let refs: Vec<&[u8]> = heads.iter().map(Vec::as_slice).collect();
    all_refused(&refs).await;
}

/// Bytes above 0x7f (obs-text, RFC 9110 §5.5) are allowed in values: they reach the upstream
/// unchanged, and nothing else changes with them.
#[tokio::test]
async fn obs_text_in_values_reaches_the_upstream_unchanged() {
    for t in Target::both().await {
        let probe =
            b"GET /public/a HTTP/1.1\r\nHost: app.test\r\nX-A: caf\xc3\xa9 \xff\x80\r\n\r\n";
        let answers = t.probe(probe).await;
        let seen = t.assert_forwarded("obs-text", &answers);
        let value = seen
            .headers
            .iter()
            .find(|(n, _)| n == "x-a")
            .map(|(_, v)| v.clone());
        assert_eq!(value.as_deref(), Some(&b"caf\xc3\xa9 \xff\x80"[..]));
    }
}
