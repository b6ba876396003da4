//! Content-Length and Transfer-Encoding: the two ways an HTTP/1.1 body is framed, and every
//! way of sending both or bending one (RFC 9112 §6). Whatever the client wrote, the upstream
//! must see one framing, Portcullis's own, and exactly the body bytes Portcullis read.

use super::*;

/// `POST /public/p` with `Host: app.test`, the extra header lines `fields` (CRLF-terminated),
/// and `body`.
fn post(fields: &str, body: &str) -> Vec<u8> {
    format!("POST /public/p HTTP/1.1\r\nHost: app.test\r\n{fields}\r\n{body}").into_bytes()
}

/// CL.TE: the client frames by Transfer-Encoding, a front end that trusts Content-Length
/// would not. Transfer-Encoding wins (RFC 9112 §6.3), the `G` that a CL reader would see as
/// the start of the next request is never read, and the connection is closed after the answer
/// (RFC 9112 §6.1), canary and all.
#[tokio::test]
async fn cl_te_is_read_as_chunked_and_the_connection_closed() {
    for t in Target::both().await {
        let probe = post(
            "Content-Length: 6\r\nTransfer-Encoding: chunked\r\n",
            "0\r\n\r\nG",
        );
        let answers = t.probe(&probe).await;
        let seen = t.assert_forwarded_then_closed("CL.TE", &answers);
        assert_eq!(seen.target, "/public/p");
        assert!(seen.body.is_empty(), "{seen:?}");
        assert!(seen.header("content-length").len() <= 1, "{seen:?}");
    }
}

/// TE.CL: the client frames by Transfer-Encoding with a Content-Length that would end the body
/// early. The chunked body is read whole and nothing after it is.
#[tokio::test]
async fn te_cl_is_read_as_chunked_and_the_connection_closed() {
    for t in Target::both().await {
        let probe = post(
            "Transfer-Encoding: chunked\r\nContent-Length: 4\r\n",
            "8\r\nSMUGGLED\r\n0\r\n\r\n",
        );
        let answers = t.probe(&probe).await;
        let seen = t.assert_forwarded_then_closed("TE.CL", &answers);
        assert_eq!(seen.body, b"SMUGGLED");
    }
}

/// The same Content-Length twice is one Content-Length (RFC 9110 §8.6 allows a recipient to
/// accept identical values); the upstream gets it once.
#[tokio::test]
async fn duplicate_identical_content_length_is_forwarded_once() {
    for t in Target::both().await {
        let probe = post("Content-Length: 5\r\nContent-Length: 5\r\n", "hello");
        let answers = t.probe(&probe).await;
        let seen = t.assert_forwarded("two identical CL", &answers);
        assert_eq!(seen.header("content-length"), ["5"], "{seen:?}");
        assert_eq!(seen.body, b"hello");
    }
}

/// Content-Lengths that disagree, or that are not plain digits, are refused: `400`, closed.
#[tokio::test]
async fn conflicting_or_malformed_content_length_is_a_400() {
    for t in Target::both().await {
        for fields in [
            "Content-Length: 5\r\nContent-Length: 6\r\n",
            "Content-Length: 6\r\nContent-Length: 5\r\n",
            "Content-Length: 5, 5\r\n",
            "Content-Length: 5, 6\r\n",
            "Content-Length: +5\r\n",
            "Content-Length: -5\r\n",
            "Content-Length: 0x5\r\n",
            "Content-Length: 5 5\r\n",
            "Content-Length: 99999999999999999999999\r\n",
            "Content-Length: \r\n",
        ] {
            let answers = t.probe(&post(fields, "hello")).await;
            t.assert_refused(fields, &answers, 400);
        }
    }
}

/// Transfer-Encoding spellings that still mean chunked: white space around the value (spaces
/// and tabs, which RFC 9110 §5.5 trims), and any case (codings are case-insensitive, RFC 9112
/// §7). Forwarded as chunked, and the upstream sees Portcullis's own `chunked`.
#[tokio::test]
async fn chunked_with_surrounding_white_space_or_in_any_case_is_forwarded_as_chunked() {
    for t in Target::both().await {
        for te in [
            "Transfer-Encoding:  chunked",
            "Transfer-Encoding: chunked ",
            "Transfer-Encoding:\tchunked",
            "Transfer-Encoding: chunked\t",
            "Transfer-Encoding: Chunked",
            "Transfer-Encoding: CHUNKED",
            "transfer-encoding: chunked",
        ] {
            let probe = post(&format!("{te}\r\n"), "5\r\nhello\r\n0\r\n\r\n");
            let answers = t.probe(&probe).await;
            let seen = t.assert_forwarded(te, &answers);
            assert!(seen.chunked, "{te}: {seen:?}");
            assert_eq!(seen.header("transfer-encoding"), ["chunked"], "{te}");
            assert_eq!(seen.body, b"hello", "{te}");
        }
    }
}

/// Transfer-Encoding that is not exactly one `chunked`: another coding after it, a coding
/// Portcullis does not implement before it (it would have to decode it, or pass it on, and
/// Transfer-Encoding is hop-by-hop), a look-alike, or two header lines. A front end and an
/// upstream can each read these differently, so none is forwarded: `400` when hyper cannot
/// read the framing at all, `501 Not Implemented` (RFC 9112 §6.1) for a coding Portcullis does
/// not implement, closed either way.
#[tokio::test]
async fn transfer_encoding_other_than_one_chunked_is_refused() {
    for t in Target::both().await {
        for (te, status) in [
            ("Transfer-Encoding: chunked, identity\r\n", 400),
            ("Transfer-Encoding: xchunked\r\n", 400),
            ("Transfer-Encoding: chunkedx\r\n", 400),
            ("Transfer-Encoding: identity\r\n", 400),
            (
                "Transfer-Encoding: chunked\r\nTransfer-Encoding: identity\r\n",
                400,
            ),
            ("Transfer-Encoding : chunked\r\n", 400),
            ("Transfer-Encoding: identity, chunked\r\n", 501),
            ("Transfer-Encoding: gzip, chunked\r\n", 501),
            ("Transfer-Encoding: chunked, chunked\r\n", 501),
            (
                "Transfer-Encoding: identity\r\nTransfer-Encoding: chunked\r\n",
                501,
            ),
            (
                "Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n",
                501,
            ),
        ] {
            let probe = post(te, "5\r\nhello\r\n0\r\n\r\n");
            let answers = t.probe(&probe).await;
            t.assert_refused(te, &answers, status);
        }
    }
}

/// Transfer-Encoding in an HTTP/1.0 request, where chunked does not exist: refused.
#[tokio::test]
async fn transfer_encoding_on_http10_is_a_400() {
    for t in Target::both().await {
        let probe = b"POST /public/p HTTP/1.0\r\nHost: app.test\r\n\
                      Transfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n";
        let answers = t.probe(probe).await;
        t.assert_refused("TE on HTTP/1.0", &answers, 400);
    }
}

/// `Content_Length` and `Transfer_Encoding`: not framing headers to Portcullis, but servers and
/// gateways that fold `_` into `-` (CGI-style environments, some WSGI servers) read them as
/// framing. Forwarded beside Portcullis's own framing they would give the upstream two
/// framings, and a request hidden in the body: refused with `400`, closed.
#[tokio::test]
async fn framing_headers_spelled_with_underscores_are_a_400() {
    for t in Target::both().await {
        for (fields, body) in [
            (
                "Transfer_Encoding: chunked\r\n",
                "0\r\n\r\nGET /private HTTP/1.1\r\nHost: app.test\r\n\r\n",
            ),
            ("Content_Length: 0\r\n", "hello"),
            ("content_length: 50\r\n", "hello"),
            ("TRANSFER_ENCODING: chunked\r\n", "hello"),
        ] {
            let fields = format!("Content-Length: {}\r\n{fields}", body.len());
            let answers = t.probe(&post(&fields, body)).await;
            t.assert_refused(&fields, &answers, 400);
        }
    }
}

/// `Connection` may name headers to remove (RFC 9110 §7.6.1), framing and `Host` included:
/// removing them changes nothing the upstream relies on, since Portcullis writes its own
/// framing from the body it read and its own `Host`.
#[tokio::test]
async fn connection_naming_framing_or_host_leaves_the_request_whole() {
    for t in Target::both().await {
        for connection in [
            "Connection: Content-Length\r\n",
            "Connection: Content-Length, Host, X-Forwarded-For\r\n",
            "Connection: Transfer-Encoding\r\n",
        ] {
            let probe = post(&format!("Content-Length: 5\r\n{connection}"), "hello");
            let answers = t.probe(&probe).await;
            let seen = t.assert_forwarded(connection, &answers);
            assert_eq!(seen.body, b"hello", "{connection}");
            assert_eq!(seen.header("content-length"), ["5"], "{connection}");
            assert_eq!(seen.header("host"), ["app.test"], "{connection}");
            assert_eq!(
                seen.header("x-forwarded-for"),
                ["127.0.0.1"],
                "{connection}"
            );
        }
    }
}
