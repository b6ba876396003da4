//! The response body type every handler returns: nothing, bytes Portcullis made, or a body
//! streamed from the upstream. One enum rather than a boxed trait object keeps the hot path free
//! of an allocation per response.

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Frame, SizeHint};
use hyper::body::Incoming;

use crate::server::InFlight;

/// A response body. While it lives, its connection counts a request in flight (so the idle
/// timer never closes a connection that is still streaming).
#[derive(Debug)]
pub struct Body {
    kind: Kind,
    _in_flight: Option<InFlight>,
}

#[derive(Debug)]
enum Kind {
    Empty,
    Full(Option<Bytes>),
    Stream(Incoming),
}

// === impl Body ===

impl Body {
    /// No body.
    pub fn empty() -> Self {
        Body {
            kind: Kind::Empty,
            _in_flight: None,
        }
    }

    /// A body of known bytes.
    pub fn full(bytes: impl Into<Bytes>) -> Self {
        let bytes = bytes.into();
        Body {
            kind: if bytes.is_empty() {
                Kind::Empty
            } else {
                Kind::Full(Some(bytes))
            },
            _in_flight: None,
        }
    }

    /// A body streamed from elsewhere (the upstream's response).
    pub fn stream(incoming: Incoming) -> Self {
        Body {
            kind: Kind::Stream(incoming),
            _in_flight: None,
        }
    }

    /// Marks the body as part of an in-flight request until it is dropped.
    pub fn with_in_flight(mut self, in_flight: InFlight) -> Self {
        self._in_flight = Some(in_flight);
        self
    }

    /// The bytes of a body made by Portcullis; `None` for a streamed body.
    pub fn into_full_bytes(self) -> Option<Bytes> {
        match self.kind {
            Kind::Empty => Some(Bytes::new()),
            Kind::Full(b) => Some(b.unwrap_or_default()),
            Kind::Stream(_) => None,
        }
    }
}

impl http_body::Body for Body {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        match &mut self.get_mut().kind {
            Kind::Empty => Poll::Ready(None),
            Kind::Full(b) => Poll::Ready(b.take().map(|b| Ok(Frame::data(b)))),
            Kind::Stream(s) => Pin::new(s).poll_frame(cx),
        }
    }

    fn is_end_stream(&self) -> bool {
        match &self.kind {
            Kind::Empty => true,
            Kind::Full(b) => b.is_none(),
            Kind::Stream(s) => s.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.kind {
            Kind::Empty => SizeHint::with_exact(0),
            Kind::Full(b) => SizeHint::with_exact(b.as_ref().map_or(0, |b| b.len() as u64)),
            Kind::Stream(s) => s.size_hint(),
        }
    }
}
