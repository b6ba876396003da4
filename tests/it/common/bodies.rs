//! bodies

use super::*;

/// A full body.
pub fn full(bytes: impl Into<Bytes>) -> TestBody {
    Full::new(bytes.into()).boxed()
}

/// An empty body.
pub fn empty() -> TestBody {
    Empty::new().boxed()
}

/// A body of `total` bytes produced lazily in 64 KiB chunks (one shared buffer), so that a
/// 256 MiB transfer never holds more than one chunk in memory.
pub fn pattern(total: u64) -> TestBody {
    Pattern {
        remaining: total,
        chunk: Bytes::from(vec![0x5a; 64 * 1024]),
    }
    .boxed()
}

struct Pattern {
    remaining: u64,
    chunk: Bytes,
}

impl http_body::Body for Pattern {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        if self.remaining == 0 {
            return Poll::Ready(None);
        }
        let n = self.remaining.min(self.chunk.len() as u64);
        self.remaining -= n;
        let data = self.chunk.slice(..n as usize);
        Poll::Ready(Some(Ok(Frame::data(data))))
    }

    fn is_end_stream(&self) -> bool {
        self.remaining == 0
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::with_exact(self.remaining)
    }
}

/// Reads a body to its end, counting bytes without keeping them.
pub async fn count_body(mut body: Incoming) -> u64 {
    let mut n = 0u64;
    while let Some(frame) = body.frame().await {
        let frame = frame.expect("response body frame");
        if let Some(data) = frame.data_ref() {
            n += data.len() as u64;
        }
    }
    n
}

/// The whole body as text.
pub async fn body_string(resp: Response<Incoming>) -> String {
    let bytes = bounded("reading a response body", resp.into_body().collect())
        .await
        .expect("response body")
        .to_bytes();
    String::from_utf8(bytes.to_vec()).expect("utf-8 body")
}

/// The whole body as JSON.
pub async fn body_json(resp: Response<Incoming>) -> Value {
    let text = body_string(resp).await;
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("body is not JSON ({e}): {text}"))
}
