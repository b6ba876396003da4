//! the recording upstream: a raw HTTP/1.1 server that reads what Portcullis sends it as a
//! strict RFC 9112 server would, and records every request exactly as it arrived on the wire

use super::*;

/// One request as the recording upstream read it off the wire.
#[derive(Debug, Clone)]
pub struct Recorded {
    /// The method, as sent.
    pub method: String,
    /// The request target, as sent.
    pub target: String,
    /// Header names (lowercase) and values (surrounding white space removed), in order.
    pub headers: Vec<(String, Vec<u8>)>,
    /// The body, de-chunked when it was chunked.
    pub body: Vec<u8>,
    /// Whether the body came chunked (else `Content-Length` or no body).
    pub chunked: bool,
    /// Trailer fields after a chunked body.
    pub trailers: Vec<(String, Vec<u8>)>,
}

impl Recorded {
    /// Every value of header `name` (any case), as text.
    pub fn header(&self, name: &str) -> Vec<String> {
        self.headers
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| String::from_utf8_lossy(v).into_owned())
            .collect()
    }
}

#[derive(Debug, Default)]
struct Log {
    requests: Vec<Recorded>,
    /// What a strict server would refuse: anything here fails [`Recorder::requests`].
    problems: Vec<String>,
    /// Requests whose head arrived but whose body did not end before the connection did.
    incomplete: Vec<String>,
}

/// A raw upstream on `127.0.0.1:0` that answers every complete request `200` with the body
/// `recorded METHOD TARGET`, keeps connections open, and records what it received. It is
/// strict: bare CR or LF, obs-fold, a malformed header line, a framing header it cannot read
/// unambiguously (both `Content-Length` and `Transfer-Encoding`, two of either, any coding but
/// `chunked`), or a chunk line with anything but hex digits is recorded as a problem, answered
/// `400` and the connection closed, as a careful server would. An HTTP/1.1 upstream that is
/// lenient where this one is strict is exactly where a smuggled request would hide.
pub struct Recorder {
    /// Where it listens.
    pub addr: SocketAddr,
    log: Arc<Mutex<Log>>,
}

impl Recorder {
    /// Starts one.
    pub async fn start() -> Recorder {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let log = Arc::new(Mutex::new(Log::default()));
        let shared = log.clone();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                tokio::spawn(serve_recording(stream, shared.clone()));
            }
        });
        Recorder { addr, log }
    }

    /// The requests received so far, in order. Fails the test if anything arrived that a
    /// strict server would have refused.
    pub fn requests(&self) -> Vec<Recorded> {
        let log = self.log.lock().unwrap();
        assert!(
            log.problems.is_empty(),
            "the upstream received what a strict server refuses: {:?}\nrequests: {:?}",
            log.problems,
            log.requests
        );
        log.requests.clone()
    }

    /// [`Recorder::requests`], forgetting them: the next call sees only what arrives after.
    pub fn take(&self) -> Vec<Recorded> {
        let seen = self.requests();
        self.log.lock().unwrap().requests.clear();
        seen
    }

    /// Requests (`METHOD TARGET`) whose body was cut off by the end of the connection.
    pub fn incomplete(&self) -> Vec<String> {
        self.log.lock().unwrap().incomplete.clone()
    }
}

/// Why reading a request stopped.
enum Stop {
    /// The connection ended cleanly between requests.
    Closed,
    /// The connection ended inside a request (`METHOD TARGET`, or the head so far).
    Cut(String),
    /// A strict server refuses this.
    Bad(String),
}

async fn serve_recording(mut stream: TcpStream, log: Arc<Mutex<Log>>) {
    let mut wire = Wire {
        buf: Vec::new(),
        stream: &mut stream,
    };
    loop {
        match read_request(&mut wire).await {
            Ok(req) => {
                let body = format!("recorded {} {}", req.method, req.target);
                log.lock().unwrap().requests.push(req);
                let resp = format!(
                    "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: {}\r\n\r\n{body}",
                    body.len()
                );
                if wire.stream.write_all(resp.as_bytes()).await.is_err() {
                    return;
                }
            }
            Err(Stop::Closed) => return,
            Err(Stop::Cut(what)) => {
                log.lock().unwrap().incomplete.push(what);
                return;
            }
            Err(Stop::Bad(why)) => {
                log.lock().unwrap().problems.push(why);
                let _ = wire
                    .stream
                    .write_all(b"HTTP/1.1 400 Bad Request\r\nConnection: close\r\nContent-Length: 0\r\n\r\n")
                    .await;
                return;
            }
        }
    }
}

struct Wire<'a> {
    buf: Vec<u8>,
    stream: &'a mut TcpStream,
}

impl Wire<'_> {
    /// Reads more bytes; false at the end of the stream.
    async fn more(&mut self) -> bool {
        let mut chunk = [0u8; 16 * 1024];
        match self.stream.read(&mut chunk).await {
            Ok(0) | Err(_) => false,
            Ok(n) => {
                self.buf.extend_from_slice(&chunk[..n]);
                true
            }
        }
    }

    /// One CRLF-terminated line (without the CRLF); a bare CR or LF is refused.
    async fn line(&mut self, cut: &str) -> Result<Vec<u8>, Stop> {
        loop {
            if let Some(i) = self.buf.iter().position(|b| *b == b'\n') {
                if i == 0 || self.buf[i - 1] != b'\r' {
                    return Err(Stop::Bad(format!("bare LF in {:?}", lossy(&self.buf[..i]))));
                }
                let line: Vec<u8> = self.buf.drain(..=i).take(i - 1).collect();
                if line.contains(&b'\r') {
                    return Err(Stop::Bad(format!("bare CR in {:?}", lossy(&line))));
                }
                return Ok(line);
            }
            if !self.more().await {
                return Err(if self.buf.is_empty() && cut.is_empty() {
                    Stop::Closed
                } else {
                    Stop::Cut(format!("{cut}{}", lossy(&self.buf)))
                });
            }
        }
    }

    /// Exactly `n` bytes.
    async fn exact(&mut self, n: usize, cut: &str) -> Result<Vec<u8>, Stop> {
        while self.buf.len() < n {
            if !self.more().await {
                return Err(Stop::Cut(cut.to_owned()));
            }
        }
        Ok(self.buf.drain(..n).collect())
    }
}

fn lossy(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// A field line `name: value` (RFC 9112 §5): a token name, no space before the colon, a value
/// of visible characters, spaces, tabs and obs-text.
fn field(line: &[u8]) -> Result<(String, Vec<u8>), Stop> {
    let bad = |why: &str| Stop::Bad(format!("{why}: {:?}", lossy(line)));
    if matches!(line.first(), Some(b' ' | b'\t')) {
        return Err(bad("obs-fold"));
    }
    let colon = line
        .iter()
        .position(|b| *b == b':')
        .ok_or_else(|| bad("no colon"))?;
    let name = &line[..colon];
    if name.is_empty() || !name.iter().all(|b| is_tchar(*b)) {
        return Err(bad("bad field name"));
    }
    let value = line[colon + 1..].trim_ascii();
    if value
        .iter()
        .any(|b| (*b < 0x20 && *b != b'\t') || *b == 0x7f)
    {
        return Err(bad("control character in a field value"));
    }
    Ok((lossy(name).to_ascii_lowercase(), value.to_vec()))
}

async fn read_request(wire: &mut Wire<'_>) -> Result<Recorded, Stop> {
    let line = wire.line("").await?;
    let text = lossy(&line);
    let parts: Vec<&str> = text.split(' ').collect();
    let [method, target, version] = parts[..] else {
        return Err(Stop::Bad(format!("bad request line {text:?}")));
    };
    if version != "HTTP/1.1" || method.is_empty() || !method.bytes().all(is_tchar) {
        return Err(Stop::Bad(format!("bad request line {text:?}")));
    }
    let what = format!("{method} {target}");
    let mut headers = Vec::new();
    loop {
        let line = wire.line(&what).await?;
        if line.is_empty() {
            break;
        }
        headers.push(field(&line)?);
    }
    let values = |name: &str| -> Vec<&Vec<u8>> {
        headers
            .iter()
            .filter(|(n, _)| n == name)
            .map(|(_, v)| v)
            .collect()
    };
    let (te, cl) = (values("transfer-encoding"), values("content-length"));
    let framing = |why: &str| Stop::Bad(format!("{why} in {what}: {headers:?}"));
    if !te.is_empty() && !cl.is_empty() {
        return Err(framing("both Transfer-Encoding and Content-Length"));
    }
    if te.len() > 1 || cl.len() > 1 {
        return Err(framing("a framing header twice"));
    }
    let mut req = Recorded {
        method: method.to_owned(),
        target: target.to_owned(),
        body: Vec::new(),
        chunked: !te.is_empty(),
        trailers: Vec::new(),
        headers: Vec::new(),
    };
    if let Some(te) = te.first() {
        if te.as_slice() != b"chunked" {
            return Err(framing("a transfer coding other than chunked"));
        }
        loop {
            let line = wire.line(&what).await?;
            let size = chunk_size(&line)
                .ok_or_else(|| Stop::Bad(format!("bad chunk line {:?}", lossy(&line))))?;
            if size == 0 {
                break;
            }
            let data = wire.exact(size + 2, &what).await?;
            if !data.ends_with(b"\r\n") {
                return Err(Stop::Bad(format!("chunk of {size} not followed by CRLF")));
            }
            req.body.extend_from_slice(&data[..size]);
        }
        loop {
            let line = wire.line(&what).await?;
            if line.is_empty() {
                break;
            }
            req.trailers.push(field(&line)?);
        }
    } else if let Some(cl) = cl.first() {
        if cl.is_empty() || !cl.iter().all(u8::is_ascii_digit) || cl.len() > 18 {
            return Err(framing("a Content-Length that is not digits"));
        }
        let len: usize = lossy(cl).parse().unwrap();
        req.body = wire.exact(len, &what).await?;
    }
    req.headers = headers;
    Ok(req)
}

/// A chunk-size line as hyper writes one: 1 to 16 hex digits, no extension.
fn chunk_size(line: &[u8]) -> Option<usize> {
    if line.is_empty() || line.len() > 16 || !line.iter().all(u8::is_ascii_hexdigit) {
        return None;
    }
    usize::from_str_radix(std::str::from_utf8(line).ok()?, 16).ok()
}
