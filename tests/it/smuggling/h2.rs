//! HTTP/2 requests downgraded to the HTTP/1.1 upstream (h2c prior knowledge on the plain
//! listener, ALPN `h2` over TLS). HTTP/2 frames bodies by DATA frames, so whatever an HTTP/2
//! request says about framing (`transfer-encoding`, `content-length`, a CR or LF that would end
//! an HTTP/1.1 header line) must be refused or re-framed before it is written as HTTP/1.1.
//!
//! hyper's HTTP/2 client strips or refuses what these probes send, so they are written as raw
//! frames: HPACK literals without indexing or Huffman coding, which carry any bytes.

use std::sync::{Arc, Mutex};

use super::*;
use tokio::io::AsyncReadExt;

/// What the server did with stream 1.
#[derive(Debug, Default)]
struct H2Answer {
    /// The response's `:status`, when it was answered.
    status: Option<u16>,
    body: Vec<u8>,
    /// The `RST_STREAM` error code, when the stream was reset.
    reset: Option<u32>,
    /// The `GOAWAY` error code, when the connection was ended.
    goaway: Option<u32>,
}

impl H2Answer {
    /// Refused by the HTTP/2 layer: reset (or the connection ended) without an answer.
    fn refused(&self) -> bool {
        self.status.is_none() && (self.reset.is_some() || self.goaway.is_some())
    }
}

fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let len = payload.len();
    let mut f = vec![(len >> 16) as u8, (len >> 8) as u8, len as u8, kind, flags];
    f.extend_from_slice(&stream.to_be_bytes());
    f.extend_from_slice(payload);
    f
}

/// An HPACK integer with a 7-bit prefix (RFC 7541 §5.1), H bit clear.
fn hpack_int(out: &mut Vec<u8>, n: usize) {
    if n < 127 {
        out.push(n as u8);
        return;
    }
    out.push(127);
    let mut n = n - 127;
    while n >= 128 {
        out.push((n % 128 + 128) as u8);
        n /= 128;
    }
    out.push(n as u8);
}

/// A header block of literal fields without indexing, new names (RFC 7541 §6.2.2).
fn header_block(fields: &[(&str, &str)]) -> Vec<u8> {
    let mut out = Vec::new();
    for (name, value) in fields {
        out.push(0x00);
        hpack_int(&mut out, name.len());
        out.extend_from_slice(name.as_bytes());
        hpack_int(&mut out, value.len());
        out.extend_from_slice(value.as_bytes());
    }
    out
}

/// The `:status` at the start of a response header block, as hyper's HPACK encoder writes it:
/// an indexed static entry, or a literal with the `:status` name (Huffman-coded digits).
fn status_of(block: &[u8]) -> Option<u16> {
    let first = *block.first()?;
    let statuses = [200, 204, 206, 304, 400, 404, 500];
    if first & 0x80 != 0 {
        return statuses
            .get(usize::from(first & 0x7f).checked_sub(8)?)
            .copied();
    }
    let index = if first & 0xc0 == 0x40 {
        first & 0x3f
    } else {
        first & 0x0f
    };
    if !(8..=14).contains(&index) {
        return None;
    }
    let len = usize::from(block.get(1)? & 0x7f);
    let raw = block.get(2..2 + len)?;
    let digits = if block[1] & 0x80 == 0 {
        String::from_utf8_lossy(raw).into_owned()
    } else {
        huffman_digits(raw)?
    };
    digits.parse().ok()
}

/// Decodes HPACK Huffman codes of the digits `0`-`9` (RFC 7541 Appendix B: 5-bit codes for
/// 0-2, 6-bit codes 0x19-0x1f for 3-9); EOS padding is ones.
fn huffman_digits(raw: &[u8]) -> Option<String> {
    let bits: Vec<u8> = raw
        .iter()
        .flat_map(|b| (0..8).rev().map(move |i| (b >> i) & 1))
        .collect();
    let value = |from: usize, n: usize| {
        bits.get(from..from + n)
            .map(|b| b.iter().fold(0u8, |acc, bit| acc << 1 | bit))
    };
    let (mut at, mut out) = (0, String::new());
    while bits.len() - at >= 5 {
        if bits[at..].iter().all(|b| *b == 1) {
            break;
        }
        match (value(at, 5)?, value(at, 6)) {
            (v @ 0..=2, _) => {
                out.push(char::from(b'0' + v));
                at += 5;
            }
            (_, Some(w @ 0x19..=0x1f)) => {
                out.push(char::from(b'0' + w - 0x16));
                at += 6;
            }
            _ => return None,
        }
    }
    Some(out)
}

/// Sends one request on a new HTTP/2 connection to `t`: `fields` (pseudo-headers included) in
/// one HEADERS frame, then `body` in one DATA frame if given, then `trailers` if given, and
/// reads until stream 1 ends, is reset, or the connection ends.
async fn h2_send(
    t: &Target,
    fields: &[(&str, &str)],
    body: Option<&[u8]>,
    trailers: Option<&[(&str, &str)]>,
) -> H2Answer {
    h2_send_on(t.connect(&[b"h2"]).await, fields, body, trailers).await
}

/// [`h2_send`] on a connection already open.
async fn h2_send_on(
    mut io: Box<dyn Io>,
    fields: &[(&str, &str)],
    body: Option<&[u8]>,
    trailers: Option<&[(&str, &str)]>,
) -> H2Answer {
    let mut out = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec();
    out.extend(frame(0x4, 0, 0, &[]));
    let headers_end = if body.is_none() && trailers.is_none() {
        0x5
    } else {
        0x4
    };
    out.extend(frame(0x1, headers_end, 1, &header_block(fields)));
    if let Some(body) = body {
        out.extend(frame(0x0, u8::from(trailers.is_none()), 1, body));
    }
    if let Some(trailers) = trailers {
        out.extend(frame(0x1, 0x5, 1, &header_block(trailers)));
    }
    let _ = io.write_all(&out).await;
    bounded("the HTTP/2 answer", read_stream_1(&mut io)).await
}

async fn read_stream_1(io: &mut Box<dyn Io>) -> H2Answer {
    let mut answer = H2Answer::default();
    let mut buf = Vec::new();
    let mut chunk = [0u8; 16 * 1024];
    loop {
        while buf.len() >= 9 {
            let len = usize::from(buf[0]) << 16 | usize::from(buf[1]) << 8 | usize::from(buf[2]);
            if buf.len() < 9 + len {
                break;
            }
            let (kind, flags) = (buf[3], buf[4]);
            let stream = u32::from_be_bytes([buf[5], buf[6], buf[7], buf[8]]) & 0x7fff_ffff;
            let payload: Vec<u8> = buf[9..9 + len].to_vec();
            buf.drain(..9 + len);
            let end = flags & 0x1 != 0;
            match (kind, stream) {
                (0x4, 0) if flags & 0x1 == 0 => {
                    let _ = io.write_all(&frame(0x4, 0x1, 0, &[])).await;
                }
                (0x1, 1) => {
                    if answer.status.is_none() {
                        answer.status = status_of(&payload);
                    }
                    if end {
                        return answer;
                    }
                }
                (0x0, 1) => {
                    answer.body.extend_from_slice(&payload);
                    if end {
                        return answer;
                    }
                }
                (0x3, 1) => {
                    answer.reset = Some(u32::from_be_bytes(payload[..4].try_into().unwrap()));
                    return answer;
                }
                (0x7, _) => {
                    answer.goaway = Some(u32::from_be_bytes(payload[4..8].try_into().unwrap()));
                    return answer;
                }
                _ => {}
            }
        }
        match io.read(&mut chunk).await {
            Ok(0) | Err(_) => return answer,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
}

/// The pseudo-headers of a request for `path` on `app.test`, plus `extra`.
fn request<'a>(
    t: &Target,
    method: &'a str,
    path: &'a str,
    extra: &[(&'a str, &'a str)],
) -> Vec<(&'a str, &'a str)> {
    let scheme = if t.tls { "https" } else { "http" };
    let mut fields = vec![
        (":method", method),
        (":scheme", scheme),
        (":path", path),
        (":authority", "app.test"),
    ];
    fields.extend_from_slice(extra);
    fields
}

/// Connection-specific fields are malformed in HTTP/2 (RFC 9113 §8.2.2): a request carrying
/// `transfer-encoding`, `connection`, `upgrade`, `keep-alive`, `proxy-connection`, or a `te`
/// other than `trailers`, is reset and nothing reaches the upstream.
#[tokio::test]
async fn connection_specific_fields_are_refused() {
    for t in Target::both().await {
        for field in [
            ("transfer-encoding", "chunked"),
            ("connection", "keep-alive"),
            ("connection", "close"),
            ("upgrade", "websocket"),
            ("keep-alive", "timeout=5"),
            ("proxy-connection", "keep-alive"),
            ("te", "gzip"),
            ("te", "trailers, gzip"),
        ] {
            let fields = request(&t, "POST", "/public/h2", &[field]);
            let answer = h2_send(&t, &fields, Some(b"5\r\nhello\r\n0\r\n\r\n"), None).await;
            assert!(answer.refused(), "{} {field:?}: {answer:?}", t.name());
            assert!(t.upstream.take().is_empty(), "{field:?}");
        }
    }
}

/// `te: trailers` is the one TE an HTTP/2 request may carry; it reaches the upstream, and the
/// body is framed by Portcullis from the DATA frames.
#[tokio::test]
async fn te_trailers_is_forwarded_with_the_body_reframed() {
    for t in Target::both().await {
        let fields = request(&t, "POST", "/public/h2", &[("te", "trailers")]);
        let answer = h2_send(
            &t,
            &fields,
            Some(b"0\r\n\r\nGET /private/x HTTP/1.1\r\n\r\n"),
            None,
        )
        .await;
        assert_eq!(answer.status, Some(200), "{} {answer:?}", t.name());
        let seen = t.upstream.take();
        assert_eq!(seen.len(), 1, "{seen:?}");
        assert_eq!(seen[0].target, "/public/h2");
        assert_eq!(seen[0].header("te"), ["trailers"]);
        // The body is the bytes of the DATA frame, whatever they look like.
        assert_eq!(seen[0].body, b"0\r\n\r\nGET /private/x HTTP/1.1\r\n\r\n");
    }
}

/// A CR, LF or NUL in a field value or name, an uppercase name, a name that is a whole
/// HTTP/1.1 header line, or a `:path` carrying a request line: each would split or end a line
/// when written as HTTP/1.1. All are reset; nothing reaches the upstream.
#[tokio::test]
async fn line_breaks_and_odd_names_in_fields_are_refused() {
    for t in Target::both().await {
        for (name, value) in [
            ("x-a", "a\r\ntransfer-encoding: chunked"),
            ("x-a", "a\nb"),
            ("x-a", "a\rb"),
            ("x-a", "a\0b"),
            ("x-a\r\nx-b", "1"),
            (
                "x-a: x\r\n\r\nGET /private/x HTTP/1.1\r\nhost: app.test\r\n\r\n",
                "x",
            ),
            ("Transfer-Encoding", "chunked"),
            ("X-Upper", "1"),
            ("x a", "1"),
        ] {
            let fields = request(&t, "GET", "/public/h2", &[(name, value)]);
            let answer = h2_send(&t, &fields, None, None).await;
            assert!(answer.refused(), "{} {name:?}: {answer:?}", t.name());
            assert!(t.upstream.take().is_empty(), "{name:?}");
        }
        for path in [
            "/public/h2 HTTP/1.1\r\nHost: app.test\r\n\r\nGET /private/x",
            "/public/h2\r\nx: y",
            "/public/h2 x",
        ] {
            let fields = request(&t, "GET", path, &[]);
            let answer = h2_send(&t, &fields, None, None).await;
            assert!(answer.refused(), "{} {path:?}: {answer:?}", t.name());
            assert!(t.upstream.take().is_empty(), "{path:?}");
        }
    }
}

/// A `content-length` that disagrees with the DATA frames is malformed (RFC 9113 §8.1.1): the
/// stream is reset, and the upstream never gets a whole request.
#[tokio::test]
async fn content_length_that_disagrees_with_the_data_is_refused() {
    for t in Target::both().await {
        for (length, body) in [("3", &b"hello"[..]), ("10", b"hello"), ("5, 5", b"hello")] {
            let fields = request(&t, "POST", "/public/h2", &[("content-length", length)]);
            let answer = h2_send(&t, &fields, Some(body), None).await;
            assert_ne!(
                answer.status,
                Some(200),
                "{} {length}: {answer:?}",
                t.name()
            );
            assert!(t.upstream.take().is_empty(), "{length}");
        }
    }
}

/// `:authority` and `host` must agree (RFC 9113 §8.3.1): when they do not, `400` and nothing
/// forwarded; a request with only `host` is forwarded to that host; userinfo is refused in
/// either; `Content_Length` is refused as on HTTP/1.1.
#[tokio::test]
async fn authority_and_host_must_agree_and_name_a_host() {
    for t in Target::both().await {
        for extra in [
            [("host", "other.test")],
            [("host", "app.test@other.test")],
            [("content_length", "0")],
        ] {
            let fields = request(&t, "GET", "/public/h2", &extra);
            let answer = h2_send(&t, &fields, None, None).await;
            assert_eq!(
                answer.status,
                Some(400),
                "{} {extra:?}: {answer:?}",
                t.name()
            );
            assert!(t.upstream.take().is_empty(), "{extra:?}");
        }
        let mut fields = request(&t, "GET", "/public/h2", &[]);
        fields[3] = (":authority", "user@app.test");
        let answer = h2_send(&t, &fields, None, None).await;
        assert!(answer.status == Some(400) || answer.refused(), "{answer:?}");
        assert!(t.upstream.take().is_empty());

        let fields = request(&t, "GET", "/public/h2", &[("host", "app.test")]);
        let answer = h2_send(&t, &fields, None, None).await;
        assert_eq!(answer.status, Some(200), "{answer:?}");
        let seen = t.upstream.take();
        assert_eq!(seen[0].header("host"), ["app.test"]);

        let mut fields = request(&t, "GET", "/public/h2", &[("host", "only-host.test")]);
        fields.retain(|(n, _)| *n != ":authority");
        let answer = h2_send(&t, &fields, None, None).await;
        assert_eq!(answer.status, Some(200), "{answer:?}");
        let seen = t.upstream.take();
        assert_eq!(seen[0].header("host"), ["only-host.test"]);
        assert_eq!(seen[0].header("x-forwarded-host"), ["only-host.test"]);
    }
}

/// Request trailers (a HEADERS frame after the DATA) never reach the HTTP/1.1 upstream, as
/// trailers or as headers: an identity header there is nothing.
#[tokio::test]
async fn request_trailers_do_not_reach_an_http1_upstream() {
    for t in Target::both().await {
        let fields = request(&t, "POST", "/public/h2", &[("te", "trailers")]);
        let trailers = [("x-forwarded-user", "admin"), ("content-length", "50")];
        let answer = h2_send(&t, &fields, Some(b"hello"), Some(&trailers)).await;
        assert_eq!(answer.status, Some(200), "{} {answer:?}", t.name());
        let seen = t.upstream.take();
        assert_eq!(seen.len(), 1, "{seen:?}");
        assert_eq!(seen[0].body, b"hello");
        assert!(seen[0].trailers.is_empty(), "{seen:?}");
        assert!(seen[0].header("x-forwarded-user").is_empty(), "{seen:?}");
    }
}

/// With an HTTP/2 upstream (`upstream.http2`), request trailers would travel on as a trailing
/// HEADERS frame: none of them reaches it, so an identity header there is nothing there either.
#[tokio::test]
async fn request_trailers_do_not_reach_an_http2_upstream() {
    use http_body_util::BodyExt;
    let seen: Arc<Mutex<Vec<http::HeaderMap>>> = Arc::default();
    let record = seen.clone();
    let upstream = serve_h2_only(move |req: http::Request<hyper::body::Incoming>| {
        let record = record.clone();
        async move {
            let collected = req.into_body().collect().await.expect("request body");
            let trailers = collected.trailers().cloned().unwrap_or_default();
            record.lock().unwrap().push(trailers);
            Ok::<_, std::convert::Infallible>(http::Response::new(empty()))
        }
    })
    .await;
    let sidecar = Sidecar::start(&config(&http_url(upstream), "", "http2 = true")).await;
    let io = Box::new(TcpStream::connect(sidecar.addr).await.unwrap());
    let fields = [
        (":method", "POST"),
        (":scheme", "http"),
        (":path", "/grpc.Service/Method"),
        (":authority", "app.test"),
        ("te", "trailers"),
    ];
    let trailers = [("x-forwarded-user", "admin"), ("x-checksum", "1")];
    let answer = h2_send_on(io, &fields, Some(b"hello"), Some(&trailers)).await;
    assert_eq!(answer.status, Some(200), "{answer:?}");
    let seen = seen.lock().unwrap();
    assert_eq!(seen.len(), 1);
    assert!(
        seen[0].is_empty(),
        "trailers reached the upstream: {:?}",
        seen[0]
    );
}
