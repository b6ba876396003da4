//! Revocation that reaches open connections. An upgraded tunnel (WebSocket) or a streaming
//! response outlives the one decision that let its request through; a watcher judges it again,
//! through the same code as a request, whenever
//!
//! - the watchlist ([`crate::auth::watchlist`]) pokes it: an invalidation of its key, its user
//!   or everything has been applied to this replica's key cache (logout, token deletion,
//!   password change, suspension, deletion, role and membership changes, from any replica);
//! - its key reaches its expiry (a timer at that instant; a key whose expiry slid meanwhile is
//!   judged again at the new one);
//! - `store.cache_ttl` has passed since the last check, in any case: the bound that holds for
//!   the cache when an invalidation is lost holds here too.
//!
//! When the session or the route policy no longer allows the connection, the watcher returns
//! why ([`RevokeReason`], counted in `portcullis_connections_revoked_total`) and the connection
//! is closed: a tunnel by `tunnel` (with a WebSocket close frame when it can), a streaming
//! response by failing its body ([`Watch`]), so that hyper resets the HTTP/2 stream or ends the
//! HTTP/1.1 connection. A check the store cannot answer is retried; after `store.max_stale` of
//! that the connection is closed as `unverified`, as a request would get 503 by then.
//!
//! A streaming response is only put on the watchlist once its body has to wait for the
//! upstream (its first `Pending`): a response that is read whole at once, which most are, costs
//! a [`Ticket`] (four reference counts) and nothing else.

use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll};
use std::time::Duration;

use futures_util::task::AtomicWaker;
use http::{Method, Uri};
use time::OffsetDateTime;
use tokio::task::AbortHandle;
use tokio::time::Instant;

use crate::auth::session::{self, AuthError, Authenticated, Lapsed};
use crate::http::admit;
use crate::http::app::App;
use crate::http::error::Error;
use crate::metrics::RevokeReason;

/// How long a check the store could not answer waits before it is tried again.
const RETRY: Duration = Duration::from_millis(250);

/// What a request that opened a connection was admitted on, to judge it again: the method,
/// the canonical target, and the session.
#[derive(Debug)]
pub struct Ticket {
    app: Arc<App>,
    method: Method,
    uri: Uri,
    auth: Authenticated,
}

/// Why a check did not let the connection stay.
enum Check {
    Ended(RevokeReason),
    Unverified,
}

/// The watch over a streaming response's body: armed with its [`Ticket`] until the body first
/// waits for the upstream, then a watcher task that ends with the body.
#[derive(Debug)]
pub struct Watch {
    state: State,
}

#[derive(Debug)]
enum State {
    Armed(Ticket),
    Watching {
        verdict: Arc<Verdict>,
        task: AbortHandle,
    },
    Done,
}

/// The watcher's answer to the body it watches: set once, with the body's task woken.
#[derive(Debug, Default)]
struct Verdict {
    reason: OnceLock<RevokeReason>,
    waker: AtomicWaker,
}

// === impl Ticket ===

impl Ticket {
    /// The ticket of a request for `method` and `uri` (its canonical target) admitted with
    /// `auth`; `None` without a session (public routes) or with
    /// `session.revoke_open_connections = false`.
    pub fn new(
        app: &Arc<App>,
        method: &Method,
        uri: &Uri,
        auth: Option<&Authenticated>,
    ) -> Option<Ticket> {
        // A public route's request (no session) costs nothing: nothing is cloned for it.
        let auth = auth.filter(|_| app.config.session.revoke_open_connections)?;
        Some(Ticket {
            app: app.clone(),
            method: method.clone(),
            uri: uri.clone(),
            auth: auth.clone(),
        })
    }

    /// Reads the session again and judges the route again, keeping the session as it is now.
    async fn check(&mut self) -> Result<(), Check> {
        let app = &*self.app;
        let auth = session::reauthenticate(&app.store, &app.keys, &self.auth)
            .await
            .map_err(|lapsed| match lapsed {
                Lapsed::Ended(reason) => Check::Ended(reason),
                Lapsed::Store(_) => Check::Unverified,
            })?;
        let auth = app
            .oidc_sessions()
            .follow(auth)
            .await
            .map_err(|e| match e {
                AuthError::Store(_) => Check::Unverified,
                // The provider refused to refresh, and the session was ended.
                _ => Check::Ended(RevokeReason::Revoked),
            })?;
        match admit::readmit(app, &self.method, &self.uri, &auth).await {
            Ok(()) => {
                self.auth = auth;
                Ok(())
            }
            Err(Error::StoreUnavailable(_)) => Err(Check::Unverified),
            Err(_) => Err(Check::Ended(RevokeReason::Forbidden)),
        }
    }

    /// When to check without being poked: at the key's expiry, or a cache TTL from now.
    fn next_check(&self) -> Instant {
        let now = Instant::now();
        let left = self.auth.session().key.expires_at - OffsetDateTime::now_utc();
        // Just past the expiry, so that the check sees it reached.
        let expiry = Duration::try_from(left).unwrap_or(Duration::ZERO) + Duration::from_millis(1);
        now + expiry.min(self.app.config.store.cache_ttl)
    }

    /// Counts and logs the end of the connection.
    fn closing(&self, reason: RevokeReason) -> RevokeReason {
        self.app.metrics.connection_revoked(reason);
        tracing::info!(
            reason = reason.label(),
            user = %self.auth.session().user.id,
            method = %self.method,
            path = self.uri.path(),
            "closing an open connection: its session no longer allows it"
        );
        reason
    }
}

/// Watches the connection `ticket` admitted, for as long as the returned future is polled,
/// and returns why it must close once its session or the route policy no longer allows it
/// (counted and logged already). See the module doc for when it checks.
pub async fn watch(mut ticket: Ticket) -> RevokeReason {
    let app = ticket.app.clone();
    let session = ticket.auth.session();
    let watched = app
        .watchlist
        .watch(session.key.id.as_str(), session.user.id);
    // An invalidation applied between the admission and now poked nobody.
    let mut due = !ticket.auth.is_current(&app.keys);
    let mut unverified_since = None;
    loop {
        if !due {
            let at = ticket.next_check();
            tokio::select! {
                () = watched.poked() => {}
                () = tokio::time::sleep_until(at) => {}
            }
        }
        due = false;
        match ticket.check().await {
            Ok(()) => unverified_since = None,
            Err(Check::Ended(reason)) => return ticket.closing(reason),
            Err(Check::Unverified) => {
                let since = *unverified_since.get_or_insert_with(Instant::now);
                if since.elapsed() >= app.config.store.max_stale {
                    return ticket.closing(RevokeReason::Unverified);
                }
                tokio::time::sleep(RETRY).await;
                due = true;
            }
        }
    }
}

// === impl Watch ===

impl Watch {
    /// A watch armed with `ticket`; nothing runs until [`Watch::start`].
    pub fn new(ticket: Ticket) -> Self {
        Watch {
            state: State::Armed(ticket),
        }
    }

    /// Starts watching (once): a task runs [`watch`] and wakes the body's task (`cx`) with the
    /// verdict. Called when the body first waits for the upstream.
    pub fn start(&mut self, cx: &mut Context<'_>) {
        let State::Armed(_) = self.state else {
            return;
        };
        let State::Armed(ticket) = std::mem::replace(&mut self.state, State::Done) else {
            return;
        };
        let verdict = Arc::new(Verdict::default());
        verdict.waker.register(cx.waker());
        let told = verdict.clone();
        let task = tokio::spawn(async move {
            let reason = watch(ticket).await;
            let _ = told.reason.set(reason);
            told.waker.wake();
        })
        .abort_handle();
        self.state = State::Watching { verdict, task };
    }

    /// `Ready(reason)` once the watcher found that the body must end; otherwise `Pending`,
    /// with `cx` woken when that happens.
    pub fn poll_revoked(&self, cx: &mut Context<'_>) -> Poll<RevokeReason> {
        let State::Watching { verdict, .. } = &self.state else {
            return Poll::Pending;
        };
        verdict.waker.register(cx.waker());
        match verdict.reason.get() {
            Some(reason) => Poll::Ready(*reason),
            None => Poll::Pending,
        }
    }
}

impl Drop for Watch {
    fn drop(&mut self) {
        if let State::Watching { task, .. } = &self.state {
            // The body is gone: its watcher, and its place on the watchlist, go too.
            task.abort();
        }
    }
}
