//! Whether a client connection is in use, for the server's idle timer: the handler marks each
//! request in flight ([`InFlight`]) and the response body holds the mark until it is sent.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;

/// Whether a connection is being used: requests started and requests in flight.
///
/// Idle means no request in flight and none started: bytes alone do not count, so an HTTP/2
/// connection kept alive by PINGs, or a client trickling frames that never make a request,
/// is still idle. The idle timer samples the counter every half `idle_timeout` and closes the
/// connection after two quiet samples in a row, that is after between one and one and a half
/// `idle_timeout`s without a request.
#[derive(Debug, Default)]
pub struct Activity {
    requests: AtomicU64,
    in_flight: AtomicUsize,
}

/// Counts one request as in flight on its connection until dropped (the response body holds
/// it, so a streaming response keeps the connection from looking idle).
#[derive(Debug)]
pub struct InFlight(Arc<Activity>);

// === impl Activity ===

impl Activity {
    /// Requests started and finished so far (each counts twice: once at each end).
    pub fn requests(&self) -> u64 {
        self.requests.load(Ordering::Relaxed)
    }

    /// Whether a request is in flight.
    pub fn busy(&self) -> bool {
        self.in_flight.load(Ordering::Acquire) > 0
    }
}

// === impl InFlight ===

impl InFlight {
    /// Marks a request in flight on the connection `activity` belongs to.
    pub fn new(activity: &Arc<Activity>) -> Self {
        activity.requests.fetch_add(1, Ordering::Relaxed);
        activity.in_flight.fetch_add(1, Ordering::AcqRel);
        InFlight(activity.clone())
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::AcqRel);
        self.0.requests.fetch_add(1, Ordering::Relaxed);
    }
}
