//! Chunked bodies: chunk sizes (too many digits, leading zeros, signs, garbage), chunk
//! extensions, chunks longer or shorter than their size, and trailer fields.
//!
//! Portcullis streams bodies: a request's head goes upstream before its body has been read,
//! so a body that turns out malformed can only be cut off. What must hold then: the client
//! gets `400` (its body, not the upstream, is at fault) and the connection is closed, and the
//! upstream never gets a whole request — at most a head and part of a chunked body on a
//! connection that then ends, which no server acts on.

use super::*;

/// `POST /public/c`, chunked, with `chunks` as the body bytes.
fn chunked(chunks: &str) -> Vec<u8> {
    format!(
        "POST /public/c HTTP/1.1\r\nHost: app.test\r\nTransfer-Encoding: chunked\r\n\r\n{chunks}"
    )
    .into_bytes()
}

/// Asserts the outcome for a malformed chunked body: one `400`, closed, no whole request at
/// the upstream, and what it got cut off (if anything) is this request and nothing after it.
fn assert_cut_off(t: &Target, what: &str, answers: &[RawResponse]) {
    t.assert_refused(what, answers, 400);
    let body = answers[0].json();
    assert_eq!(body["message"], "Invalid request body.", "{what}: {body}");
    for cut in t.upstream.incomplete() {
        assert_eq!(cut, "POST /public/c", "{what}");
    }
}

/// Chunk sizes that are not a hex number that fits in 64 bits: more digits than fit, a sign,
/// a `0x`, a letter past `f`, leading white space, nothing at all.
#[tokio::test]
async fn chunk_sizes_that_are_not_hex_numbers_are_a_400() {
    for t in Target::both().await {
        for size in [
            "10000000000000000",
            "ffffffffffffffffffffffffffffffff",
            "-5",
            "+5",
            "0x5",
            "5g",
            " 5",
            "",
        ] {
            let answers = t
                .probe(&chunked(&format!("{size}\r\nhello\r\n0\r\n\r\n")))
                .await;
            assert_cut_off(&t, size, &answers);
        }
    }
}

/// Leading zeros, white space after the size, and chunk extensions are valid (RFC 9112 §7.1):
/// the body is read as Portcullis read it, and the upstream gets it in Portcullis's own chunks,
/// without the extensions.
#[tokio::test]
async fn leading_zeros_trailing_white_space_and_extensions_are_read_and_dropped() {
    for t in Target::both().await {
        for body in [
            "0000000000000000000000000000005\r\nhello\r\n0\r\n\r\n",
            "5 \r\nhello\r\n0\r\n\r\n",
            "5\t\r\nhello\r\n0\r\n\r\n",
            "5;name=value\r\nhello\r\n0;last\r\n\r\n",
            "5;a=\"quoted; value\"\r\nhello\r\n0\r\n\r\n",
        ] {
            let answers = t.probe(&chunked(body)).await;
            let seen = t.assert_forwarded(body, &answers);
            assert!(seen.chunked, "{body:?}: {seen:?}");
            assert_eq!(seen.body, b"hello", "{body:?}");
        }
    }
}

/// A chunk longer or shorter than its size, a bare LF where a chunk line ends, an LF inside
/// an extension: cut off with `400`.
#[tokio::test]
async fn chunks_that_disagree_with_their_size_or_line_endings_are_a_400() {
    for t in Target::both().await {
        for body in [
            "3\r\nhello\r\n0\r\n\r\n",
            "9\r\nhello\r\n0\r\n\r\n",
            "5\nhello\n0\n\n",
            "5\r\nhello\n0\r\n\r\n",
            "5;a=\"x\ny\"\r\nhello\r\n0\r\n\r\n",
            "5\r\nhello\r\n0\r\n",
        ] {
            let answers = t.probe(&chunked(body)).await;
            assert_cut_off(&t, body, &answers);
        }
    }
}

/// Trailer fields after the last chunk are read and dropped: they never reach an HTTP/1.1
/// upstream, as trailers or as headers, so a `Content-Length` or an identity header there is
/// nothing.
#[tokio::test]
async fn trailer_fields_are_dropped() {
    for t in Target::both().await {
        let body = "5\r\nhello\r\n0\r\nX-Forwarded-User: admin\r\nContent-Length: 50\r\n\
                    Transfer-Encoding: chunked\r\n\r\n";
        let answers = t.probe(&chunked(body)).await;
        let seen = t.assert_forwarded("trailers", &answers);
        assert_eq!(seen.body, b"hello");
        assert!(seen.trailers.is_empty(), "{seen:?}");
        assert!(seen.header("x-forwarded-user").is_empty(), "{seen:?}");
        assert!(seen.header("content-length").is_empty(), "{seen:?}");
    }
}
