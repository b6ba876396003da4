//! raw sockets

use super::*;

/// A response read off a raw socket.
#[derive(Debug)]
pub struct RawResponse {
    /// The status code.
    pub status: u16,
    /// Header names (lowercase) and values, in order.
    pub headers: Vec<(String, String)>,
    /// The body (de-chunked).
    pub body: Vec<u8>,
}

impl RawResponse {
    /// Every value of header `name`.
    pub fn header(&self, name: &str) -> Vec<&str> {
        self.headers
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
            .collect()
    }

    /// The body as JSON.
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!(
                "body is not JSON ({e}): {}",
                String::from_utf8_lossy(&self.body)
            )
        })
    }
}

/// Writes `request` as-is on a new connection to `addr` and reads one response. Write errors
/// are ignored (a server may answer and close before reading everything we send).
pub async fn raw(addr: SocketAddr, request: &[u8]) -> RawResponse {
    let mut stream = bounded("connecting", TcpStream::connect(addr))
        .await
        .unwrap();
    let _ = stream.write_all(request).await;
    bounded("reading a raw response", read_response(&mut stream)).await
}

/// Reads one HTTP/1.x response from `stream`: the head, then a body delimited by
/// `Content-Length`, chunked encoding, or the end of the stream.
pub async fn read_response<S: AsyncRead + Unpin>(stream: &mut S) -> RawResponse {
    let mut buf = Vec::new();
    loop {
        let more = read_more(stream, &mut buf).await;
        if let Some((resp, _)) = parse_response(&buf, !more) {
            return resp;
        }
        assert!(
            more,
            "connection closed before a whole response: {:?}",
            String::from_utf8_lossy(&buf)
        );
    }
}

/// Reads from `stream` until the server closes it, then every response in what it sent, in
/// order (pipelined answers included). Bounded by [`BOUND`]: a server that never closes fails
/// the test.
pub async fn read_until_closed<S: AsyncRead + Unpin>(stream: &mut S) -> Vec<RawResponse> {
    let mut buf = Vec::new();
    bounded("the server to close the connection", async {
        while read_more(stream, &mut buf).await {}
    })
    .await;
    let mut out = Vec::new();
    let mut rest = &buf[..];
    while !rest.is_empty() {
        let (resp, used) = parse_response(rest, true).unwrap_or_else(|| {
            panic!(
                "a partial response before the close: {:?}",
                String::from_utf8_lossy(rest)
            )
        });
        out.push(resp);
        rest = &rest[used..];
    }
    out
}

/// Parses one response at the start of `buf`: the response and the bytes it took, or `None`
/// when more bytes are needed. `closed`: nothing more will come (a body without length runs to
/// the end).
fn parse_response(buf: &[u8], closed: bool) -> Option<(RawResponse, usize)> {
    let head_end = find(buf, b"\r\n\r\n")? + 4;
    let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap();
    let status: u16 = status_line
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("bad status line {status_line:?}"));
    let headers: Vec<(String, String)> = lines
        .filter(|l| !l.is_empty())
        .map(|l| {
            let (n, v) = l.split_once(':').expect("header line");
            (n.trim().to_ascii_lowercase(), v.trim().to_owned())
        })
        .collect();
    let rest = &buf[head_end..];
    let value = |name: &str| {
        headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.clone())
    };
    let (body, used) = if status == 101 || status == 204 || status == 304 || status < 200 {
        (Vec::new(), 0)
    } else if let Some(len) = value("content-length") {
        let len: usize = len.parse().unwrap();
        (rest.get(..len)?.to_vec(), len)
    } else if value("transfer-encoding").is_some_and(|v| v.eq_ignore_ascii_case("chunked")) {
        let mut body = Vec::new();
        let mut at = 0;
        loop {
            let line_end = at + find(&rest[at..], b"\r\n")?;
            let size_text = String::from_utf8_lossy(&rest[at..line_end]).into_owned();
            let size = usize::from_str_radix(size_text.split(';').next().unwrap().trim(), 16)
                .unwrap_or_else(|_| panic!("bad chunk size {size_text:?}"));
            let data = rest.get(line_end + 2..line_end + 2 + size + 2)?;
            body.extend_from_slice(&data[..size]);
            at = line_end + 2 + size + 2;
            if size == 0 {
                break (body, at);
            }
        }
    } else if closed {
        (rest.to_vec(), rest.len())
    } else {
        return None;
    };
    let resp = RawResponse {
        status,
        headers,
        body,
    };
    Some((resp, head_end + used))
}

async fn read_more<S: AsyncRead + Unpin>(stream: &mut S, buf: &mut Vec<u8>) -> bool {
    let mut chunk = [0u8; 16 * 1024];
    match stream.read(&mut chunk).await {
        Ok(0) | Err(_) => false,
        Ok(n) => {
            buf.extend_from_slice(&chunk[..n]);
            true
        }
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// Reads from `stream` until the server closes it (EOF, or a reset); any bytes sent before are
/// ignored, and any other read error fails the test. Unbounded: wrap it in a timeout.
pub async fn closed_by_server<S: AsyncRead + Unpin>(stream: &mut S) {
    let mut buf = [0u8; 1024];
    loop {
        match stream.read(&mut buf).await {
            Ok(0) => return,
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return,
            Err(e) => panic!("reading until the server closes: {e}"),
            Ok(_) => {}
        }
    }
}

/// Fails the test unless the server closes `stream` (EOF or reset) within `bound`, and no
/// sooner than `timeout` after `since`, an instant at or before the timer under test could
/// start ([`assert_not_sooner`]).
pub async fn assert_closed_after<S: AsyncRead + Unpin>(
    stream: &mut S,
    since: tokio::time::Instant,
    timeout: Duration,
    bound: Duration,
    what: &str,
) {
    let closed = tokio::time::timeout(bound, closed_by_server(stream)).await;
    assert!(closed.is_ok(), "{what}: still open after {bound:?}");
    assert_not_sooner(since, timeout, what);
}

/// Fails the test if less than `timeout` has passed since `since`: what a timer of `timeout`
/// ended must not end sooner. A timer never fires early and a loaded machine only makes it
/// later, so this holds however slow the machine is (only a hang is caught by a bound).
pub fn assert_not_sooner(since: tokio::time::Instant, timeout: Duration, what: &str) {
    let after = since.elapsed();
    assert!(
        after >= timeout,
        "{what}: ended {after:?} after it began, before its timeout ({timeout:?})"
    );
}

/// A connection to `addr` that has had one `GET /` answered `200` and is kept alive; and an
/// instant taken before the request was written (so at or before anything the server starts
/// after it).
pub async fn kept_alive_after_one_request(addr: SocketAddr) -> (TcpStream, tokio::time::Instant) {
    let mut stream = bounded("connecting", TcpStream::connect(addr))
        .await
        .unwrap();
    let sending = tokio::time::Instant::now();
    stream
        .write_all(b"GET / HTTP/1.1\r\nHost: app.test\r\n\r\n")
        .await
        .unwrap();
    let resp = bounded("the response", read_response(&mut stream)).await;
    assert_eq!(resp.status, 200, "{resp:?}");
    (stream, sending)
}
