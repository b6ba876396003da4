//! The response body type every handler returns: nothing, bytes Portcullis made, or a body
//! streamed from the upstream. One enum rather than a boxed trait object keeps the hot path free
//! of an allocation per response.

use std::future::Future as _;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Body as _, Frame, SizeHint};
use hyper::body::Incoming;

use crate::http::activity::InFlight;
use crate::http::watch::Watch;
use crate::metrics::RevokeReason;
use crate::upstream::Lease;

/// A request body a handler can read: any body of [`Bytes`] frames whose error is a real error
/// (hyper's `Incoming` on the wire, `http_body_util::Full` in a unit test without sockets).
pub trait ReqBody:
    http_body::Body<Data = Bytes, Error: std::error::Error + Send + Sync + 'static> + Send + Unpin
{
}

impl<B> ReqBody for B where
    B: http_body::Body<Data = Bytes, Error: std::error::Error + Send + Sync + 'static>
        + Send
        + Unpin
{
}

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
    Stream(Stream),
}

/// An upstream response body and the pooled connection it arrived on: the connection goes
/// back to the pool when the body has been read to its end, and is closed if the body is
/// dropped before that. A session's response is watched once it streams ([`Watch`]).
#[derive(Debug)]
struct Stream {
    body: Incoming,
    lease: Option<Lease>,
    watch: Option<Watch>,
}

/// Why a response body failed: the upstream's body failed, or the session that opened the
/// response no longer allows it. Either way hyper resets the HTTP/2 stream, or ends the
/// HTTP/1.1 connection, since the response cannot be completed.
#[derive(Debug, thiserror::Error)]
pub enum BodyError {
    /// The upstream's body failed.
    #[error(transparent)]
    Upstream(#[from] hyper::Error),
    /// The session no longer allows the response (see [`crate::http::watch`]).
    #[error("the session no longer allows this response ({})", .0.label())]
    Revoked(RevokeReason),
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

    /// A body streamed from the upstream; `lease` is the pooled connection it arrives on.
    pub fn stream(body: Incoming, lease: Option<Lease>) -> Self {
        Body {
            kind: Kind::Stream(Stream {
                body,
                lease,
                watch: None,
            }),
            _in_flight: None,
        }
    }

    /// Watches a streamed body with `watch` once it streams: it fails with
    /// [`BodyError::Revoked`] when its session no longer allows it.
    pub fn watched(mut self, watch: Watch) -> Self {
        if let Kind::Stream(s) = &mut self.kind {
            s.watch = Some(watch);
        }
        self
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
    type Error = BodyError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BodyError>>> {
        match &mut self.get_mut().kind {
            Kind::Empty => Poll::Ready(None),
            Kind::Full(b) => Poll::Ready(b.take().map(|b| Ok(Frame::data(b)))),
            Kind::Stream(s) => {
                if let Some(watch) = &s.watch {
                    if let Poll::Ready(reason) = watch.poll_revoked(cx) {
                        return Poll::Ready(Some(Err(BodyError::Revoked(reason))));
                    }
                }
                let frame = Pin::new(&mut s.body).poll_frame(cx);
                match &frame {
                    Poll::Ready(None) => {
                        if let Some(lease) = s.lease.take() {
                            lease.release();
                        }
                    }
                    // It streams: from now on it is watched.
                    Poll::Pending => {
                        if let Some(watch) = &mut s.watch {
                            watch.start(cx);
                        }
                    }
                    Poll::Ready(Some(_)) => {}
                }
                frame.map(|f| f.map(|f| f.map_err(BodyError::from)))
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        match &self.kind {
            Kind::Empty => true,
            Kind::Full(b) => b.is_none(),
            Kind::Stream(s) => s.body.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.kind {
            Kind::Empty => SizeHint::with_exact(0),
            Kind::Full(b) => SizeHint::with_exact(b.as_ref().map_or(0, |b| b.len() as u64)),
            Kind::Stream(s) => s.body.size_hint(),
        }
    }
}

impl Drop for Stream {
    fn drop(&mut self) {
        if let Some(lease) = self.lease.take() {
            // hyper may never poll a body it knows is empty (HEAD, 204, 304).
            if self.body.is_end_stream() {
                lease.release();
            } else {
                lease.discard();
            }
        }
    }
}

/// A request body that must arrive whole by a deadline: past it, the next read fails with
/// [`BodyDeadline`]. The API reads its small JSON bodies through one, so a client trickling a
/// body cannot hold a connection (and a handler) for as long as it likes.
#[derive(Debug)]
pub struct Deadline<B> {
    inner: B,
    sleep: Pin<Box<tokio::time::Sleep>>,
}

/// Why a [`Deadline`] body failed: the deadline passed, or the body itself failed.
#[derive(Debug, thiserror::Error)]
pub enum DeadlineError<E> {
    /// The body had not arrived whole by the deadline.
    #[error("request body deadline")]
    Elapsed(#[from] BodyDeadline),
    /// The body failed.
    #[error(transparent)]
    Body(E),
}

/// The request body did not arrive within its deadline.
#[derive(Debug, thiserror::Error)]
#[error("the request body did not arrive in time")]
pub struct BodyDeadline;

// === impl Deadline ===

impl<B> Deadline<B> {
    /// `inner`, which must have arrived whole within `within` from now.
    pub fn new(inner: B, within: std::time::Duration) -> Self {
        Deadline {
            inner,
            sleep: Box::pin(tokio::time::sleep(within)),
        }
    }
}

impl<B> http_body::Body for Deadline<B>
where
    B: http_body::Body + Unpin,
{
    type Data = B::Data;
    type Error = DeadlineError<B::Error>;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<B::Data>, Self::Error>>> {
        let this = self.get_mut();
        if let Poll::Ready(frame) = Pin::new(&mut this.inner).poll_frame(cx) {
            return Poll::Ready(frame.map(|f| f.map_err(DeadlineError::Body)));
        }
        match this.sleep.as_mut().poll(cx) {
            Poll::Ready(()) => Poll::Ready(Some(Err(BodyDeadline.into()))),
            Poll::Pending => Poll::Pending,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
