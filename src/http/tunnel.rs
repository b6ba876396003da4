//! Upgraded connections (WebSocket and the like), relayed as raw bytes between the client and
//! the upstream once both sides switched protocols: the idle timer, the connection permit, and
//! the end of a tunnel whose session no longer allows it ([`crate::http::watch`]) — with a
//! WebSocket close frame toward the client when it can be sent.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::sync::OwnedSemaphorePermit;
use tokio::time::Instant;

use crate::http::watch::{self, Ticket};
use crate::metrics::{Metrics, RevokeReason};

/// How long a revoked tunnel may take to send its close frame to the client and see the
/// client close its side, before the connection is dropped anyway.
const CLOSE_LINGER: Duration = Duration::from_millis(500);

/// WebSocket status 1008, "policy violation" (RFC 6455 §7.4.1): the endpoint received a
/// message that violates its policy — here, the session no longer allows the connection.
const POLICY_VIOLATION: u16 = 1008;

/// An upgraded connection being relayed. It holds a connection permit and shows in the
/// open-connections gauge while it lives, and it is closed after `server.idle_timeout` without
/// a byte in either direction (nginx's `proxy_read_timeout` does the same to WebSocket
/// tunnels; WebSocket clients ping to stay open). With a [`Ticket`], it is watched and closed
/// when its session no longer allows it.
pub struct Tunnel {
    idle: Duration,
    metrics: Arc<Metrics>,
    permit: OwnedSemaphorePermit,
    ticket: Option<Ticket>,
    websocket: bool,
}

/// How a relay ended.
enum End {
    /// A side closed, failed, or the tunnel went idle.
    Over,
    /// The session no longer allows the tunnel.
    Revoked(RevokeReason),
}

/// An IO stream that counts the reads and writes that moved bytes, and, toward a WebSocket
/// client, where the bytes written stand in the frame sequence.
struct Counted<IO> {
    io: IO,
    moved: Arc<AtomicU64>,
    frames: Option<Frames>,
}

/// Where the bytes sent so far stand in a sequence of WebSocket frames (RFC 6455 §5.2): the
/// header bytes of the next frame seen so far, or the payload bytes still to come. Only at a
/// boundary can another frame (our close frame) follow.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
struct Frames {
    head: [u8; 14],
    have: usize,
    payload: u64,
}

// === impl Tunnel ===

impl Tunnel {
    /// A tunnel that closes after `idle` without traffic, holding `permit`; watched with
    /// `ticket` when given. `websocket`: the protocol switched to is WebSocket, so a revoked
    /// tunnel tells the client why with a close frame.
    pub fn new(
        idle: Duration,
        metrics: Arc<Metrics>,
        permit: OwnedSemaphorePermit,
        ticket: Option<Ticket>,
        websocket: bool,
    ) -> Self {
        Tunnel {
            idle,
            metrics,
            permit,
            ticket,
            websocket,
        }
    }

    /// Copies bytes both ways until either side closes, the tunnel goes idle, or its session
    /// no longer allows it.
    pub async fn run(self, client: hyper::upgrade::OnUpgrade, upstream: hyper::upgrade::OnUpgrade) {
        let (client, upstream) = match tokio::try_join!(client, upstream) {
            Ok(pair) => pair,
            Err(error) => {
                tracing::debug!(%error, "protocol upgrade did not complete");
                return;
            }
        };
        let Tunnel {
            idle,
            metrics,
            permit,
            ticket,
            websocket,
        } = self;
        metrics.connection_opened();
        let moved = Arc::new(AtomicU64::new(0));
        let frames = websocket.then(Frames::default);
        let mut client = Counted::new(TokioIo::new(client), moved.clone(), frames);
        let mut upstream = Counted::new(TokioIo::new(upstream), moved.clone(), None);
        let revoked = async move {
            match ticket {
                Some(ticket) => watch::watch(ticket).await,
                None => std::future::pending().await,
            }
        };
        let end = relay(&mut client, &mut upstream, idle, &moved, revoked).await;
        if let End::Revoked(reason) = end {
            drop(upstream);
            close(client, reason).await;
        }
        metrics.connection_closed();
        drop(permit);
    }
}

/// Relays until a side closes or fails, nothing moves for `idle`, or `revoked` resolves.
async fn relay<C, U>(
    client: &mut C,
    upstream: &mut U,
    idle: Duration,
    moved: &AtomicU64,
    revoked: impl Future<Output = RevokeReason>,
) -> End
where
    C: AsyncRead + AsyncWrite + Unpin,
    U: AsyncRead + AsyncWrite + Unpin,
{
    let copy = tokio::io::copy_bidirectional(client, upstream);
    tokio::pin!(copy, revoked);
    let mut tick = tokio::time::interval(idle);
    tick.tick().await;
    let mut last = 0;
    loop {
        tokio::select! {
            res = &mut copy => {
                match res {
                    Ok((up, down)) => tracing::debug!(up, down, "upgraded connection closed"),
                    Err(error) => tracing::debug!(%error, "upgraded connection ended with an error"),
                }
                return End::Over;
            }
            reason = &mut revoked => return End::Revoked(reason),
            _ = tick.tick() => {
                let now = moved.load(Ordering::Relaxed);
                if now == last {
                    tracing::debug!("closing idle upgraded connection");
                    return End::Over;
                }
                last = now;
            }
        }
    }
}

/// Ends the client side of a tunnel whose session no longer allows it (the upstream side is
/// closed already): a WebSocket close frame with status 1008 and the reason, when the bytes
/// sent so far end on a frame boundary (a frame cut short cannot be followed by another, so a
/// tunnel revoked in the middle of one is only closed); then the end of the stream; then a
/// short wait for the client to close its side (RFC 6455 §7.1.1: the server closes the TCP
/// connection first), so that the client reads the close frame rather than a reset.
async fn close<IO: AsyncRead + AsyncWrite + Unpin>(mut client: Counted<IO>, reason: RevokeReason) {
    let deadline = Instant::now() + CLOSE_LINGER;
    if client.frames.as_ref().is_some_and(Frames::at_boundary) {
        let frame = close_frame(reason);
        let sent = async {
            client.write_all(&frame).await?;
            client.flush().await
        };
        let _ = tokio::time::timeout_at(deadline, sent).await;
    }
    let _ = tokio::time::timeout_at(deadline, client.shutdown()).await;
    let mut buf = [0u8; 1024];
    let drained = async { while let Ok(1..) = client.read(&mut buf).await {} };
    let _ = tokio::time::timeout_at(deadline, drained).await;
}

/// A server's close frame (unmasked, RFC 6455 §5.5.1): status 1008 and the reason's label as
/// the UTF-8 reason text.
fn close_frame(reason: RevokeReason) -> Vec<u8> {
    let label = reason.label().as_bytes();
    // A control frame's payload is at most 125 bytes; labels are short words.
    let text = &label[..label.len().min(123)];
    let mut frame = Vec::with_capacity(4 + text.len());
    frame.push(0x88); // FIN, opcode 0x8 (close)
    frame.push(u8::try_from(2 + text.len()).unwrap_or(125));
    frame.extend_from_slice(&POLICY_VIOLATION.to_be_bytes());
    frame.extend_from_slice(text);
    frame
}

// === impl Frames ===

impl Frames {
    /// Whether the bytes so far end exactly where a frame does.
    fn at_boundary(&self) -> bool {
        self.have == 0 && self.payload == 0
    }

    /// Follows `bytes`, the next ones sent: header bytes one at a time, payload in bulk.
    fn advance(&mut self, mut bytes: &[u8]) {
        while let Some((&first, rest)) = bytes.split_first() {
            if self.payload > 0 {
                let n = usize::try_from(self.payload).map_or(bytes.len(), |p| p.min(bytes.len()));
                self.payload -= n as u64;
                bytes = &bytes[n..];
                continue;
            }
            self.head[self.have] = first;
            self.have += 1;
            bytes = rest;
            if let Some(len) = self.payload_len() {
                self.have = 0;
                self.payload = len;
            }
        }
    }

    /// The payload length, once the header is whole: two bytes, an extended length of 2 or 8
    /// bytes when the 7-bit length says 126 or 127, and a 4-byte mask when the mask bit is set.
    fn payload_len(&self) -> Option<u64> {
        if self.have < 2 {
            return None;
        }
        let short = self.head[1] & 0x7f;
        let extended = match short {
            126 => 2,
            127 => 8,
            _ => 0,
        };
        let mask = if self.head[1] & 0x80 != 0 { 4 } else { 0 };
        if self.have < 2 + extended + mask {
            return None;
        }
        let h = &self.head;
        Some(match extended {
            2 => u64::from(u16::from_be_bytes([h[2], h[3]])),
            8 => u64::from_be_bytes([h[2], h[3], h[4], h[5], h[6], h[7], h[8], h[9]]),
            _ => u64::from(short),
        })
    }
}

// === impl Counted ===

impl<IO> Counted<IO> {
    fn new(io: IO, moved: Arc<AtomicU64>, frames: Option<Frames>) -> Self {
        Counted { io, moved, frames }
    }

    fn count<T>(&self, res: &Poll<std::io::Result<T>>) {
        if matches!(res, Poll::Ready(Ok(_))) {
            self.moved.fetch_add(1, Ordering::Relaxed);
        }
    }
}

impl<IO: AsyncRead + Unpin> AsyncRead for Counted<IO> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let res = Pin::new(&mut self.io).poll_read(cx, buf);
        self.count(&res);
        res
    }
}

impl<IO: AsyncWrite + Unpin> AsyncWrite for Counted<IO> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let res = Pin::new(&mut self.io).poll_write(cx, buf);
        self.count(&res);
        if let (Poll::Ready(Ok(n)), Some(frames)) = (&res, &mut self.frames) {
            frames.advance(&buf[..*n]);
        }
        res
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The frames a server may send, written whole and in every split.
    fn frames() -> Vec<Vec<u8>> {
        let mut out = vec![
            vec![0x81, 0x05, b'h', b'e', b'l', b'l', b'o'], // text, 7-bit length
            vec![0x89, 0x00],                               // ping, empty
        ];
        let mut medium = vec![0x82, 126];
        medium.extend_from_slice(&300u16.to_be_bytes());
        medium.extend(std::iter::repeat_n(7u8, 300));
        out.push(medium);
        let mut long = vec![0x82, 127];
        long.extend_from_slice(&70_000u64.to_be_bytes());
        long.extend(std::iter::repeat_n(9u8, 70_000));
        out.push(long);
        // A masked frame (as a client sends them).
        out.push(vec![0x81, 0x82, 1, 2, 3, 4, b'h' ^ 1, b'i' ^ 2]);
        out
    }

    #[test]
    fn frame_boundaries_are_found_whatever_the_writes_split() {
        let stream: Vec<u8> = frames().concat();
        let ends: Vec<usize> = frames()
            .iter()
            .scan(0, |at, f| {
                *at += f.len();
                Some(*at)
            })
            .collect();
        for chunk in [1, 2, 3, 5, 13, 1000, stream.len()] {
            let mut f = Frames::default();
            let mut at = 0;
            for piece in stream.chunks(chunk) {
                f.advance(piece);
                at += piece.len();
                assert_eq!(
                    f.at_boundary(),
                    ends.contains(&at),
                    "chunk {chunk}, at {at}"
                );
            }
            assert!(f.at_boundary());
        }
        // Inside a header and inside a payload: not a boundary.
        let mut f = Frames::default();
        f.advance(&[0x82, 126, 1]);
        assert!(!f.at_boundary());
        f.advance(&[44, 0]);
        assert!(!f.at_boundary());
    }

    #[test]
    fn the_close_frame_carries_1008_and_the_reason() {
        let frame = close_frame(RevokeReason::Suspended);
        assert_eq!(&frame[..4], &[0x88, 2 + 9, 0x03, 0xf0]);
        assert_eq!(&frame[4..], b"suspended");
        let mut f = Frames::default();
        f.advance(&frame);
        assert!(f.at_boundary());
    }
}
