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
pub async fn read_response(stream: &mut TcpStream) -> RawResponse {
    let mut buf = Vec::new();
    let head_end = loop {
        if let Some(i) = find(&buf, b"\r\n\r\n") {
            break i + 4;
        }
        if !read_more(stream, &mut buf).await {
            panic!(
                "connection closed before a full response head: {:?}",
                String::from_utf8_lossy(&buf)
            );
        }
    };
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
    let mut rest = buf[head_end..].to_vec();
    let value = |name: &str| {
        headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.clone())
    };
    let body = if let Some(len) = value("content-length") {
        let len: usize = len.parse().unwrap();
        while rest.len() < len {
            assert!(read_more(stream, &mut rest).await, "body cut short");
        }
        rest.truncate(len);
        rest
    } else if value("transfer-encoding").is_some_and(|v| v.eq_ignore_ascii_case("chunked")) {
        let mut body = Vec::new();
        loop {
            let line_end = loop {
                if let Some(i) = find(&rest, b"\r\n") {
                    break i;
                }
                assert!(read_more(stream, &mut rest).await, "chunked body cut short");
            };
            let size_text = String::from_utf8_lossy(&rest[..line_end]).into_owned();
            let size = usize::from_str_radix(size_text.split(';').next().unwrap().trim(), 16)
                .unwrap_or_else(|_| panic!("bad chunk size {size_text:?}"));
            while rest.len() < line_end + 2 + size + 2 {
                assert!(read_more(stream, &mut rest).await, "chunked body cut short");
            }
            body.extend_from_slice(&rest[line_end + 2..line_end + 2 + size]);
            rest.drain(..line_end + 2 + size + 2);
            if size == 0 {
                break body;
            }
        }
    } else if status == 101 || status == 204 || status == 304 || (100..200).contains(&status) {
        Vec::new()
    } else {
        while read_more(stream, &mut rest).await {}
        rest
    };
    RawResponse {
        status,
        headers,
        body,
    }
}

async fn read_more(stream: &mut TcpStream, buf: &mut Vec<u8>) -> bool {
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
