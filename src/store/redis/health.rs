//! The command path's view of Redis: up, or down since a command got no answer within its
//! deadline (a hang; a refused or reset connection fails fast by itself). While down,
//! commands fail at once for a short back-off instead of each spending a whole
//! `store.command_timeout`; then one command at a time goes through as a probe, and its answer
//! brings the store back up (or starts another back-off). So during a hang every request is
//! answered within one deadline, and a recovered Redis is noticed by the next request after the
//! back-off.
//!
//! It also remembers when Redis last answered and last failed, for `/readyz` and `/metrics`.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use tokio::time::Instant;

/// How long commands fail fast after one got no answer.
pub(super) const BACKOFF: Duration = Duration::from_millis(500);

/// Up or down, and when things last happened (nanoseconds after `epoch`; 0: never).
#[derive(Debug)]
pub(super) struct Health {
    epoch: Instant,
    /// While non-zero, the store is down: before this, commands fail fast; after it, one
    /// probe may go.
    down_until: AtomicU64,
    probing: AtomicBool,
    last_ok: AtomicU64,
    last_error: AtomicU64,
}

/// What a command may do now.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Admit {
    /// The store is up: go.
    Go,
    /// The store is down and the back-off is over: go, as the one probe.
    Probe,
    /// The store is down: fail now.
    FailFast,
}

/// A snapshot for `/readyz` and `/metrics`.
#[derive(Debug, Clone, Copy)]
pub struct HealthReport {
    /// Whether the last command got an answer (or none has failed since the last answer).
    pub up: bool,
    /// How long ago Redis last answered a command; `None`: never.
    pub last_ok: Option<Duration>,
    /// How long ago a command last got no answer; `None`: never.
    pub last_error: Option<Duration>,
}

// === impl Health ===

impl Health {
    pub(super) fn new() -> Health {
        Health {
            epoch: Instant::now(),
            down_until: AtomicU64::new(0),
            probing: AtomicBool::new(false),
            last_ok: AtomicU64::new(0),
            last_error: AtomicU64::new(0),
        }
    }

    fn now(&self) -> u64 {
        // Never 0, which means "never".
        u64::try_from(self.epoch.elapsed().as_nanos())
            .unwrap_or(u64::MAX)
            .max(1)
    }

    /// Whether a command may go now.
    pub(super) fn admit(&self) -> Admit {
        let until = self.down_until.load(Ordering::Acquire);
        if until == 0 {
            return Admit::Go;
        }
        if self.now() < until {
            return Admit::FailFast;
        }
        match self
            .probing
            .compare_exchange(false, true, Ordering::AcqRel, Ordering::Acquire)
        {
            Ok(_) => Admit::Probe,
            Err(_) => Admit::FailFast,
        }
    }

    /// Redis answered a command (an error reply is an answer too): it is up, whichever
    /// command noticed.
    pub(super) fn answered(&self, admitted: &Admit) {
        self.last_ok.store(self.now(), Ordering::Release);
        self.down_until.store(0, Ordering::Release);
        if *admitted == Admit::Probe {
            self.probing.store(false, Ordering::Release);
        }
    }

    /// A command got no answer within its deadline: down for [`BACKOFF`].
    pub(super) fn failed(&self, admitted: &Admit) {
        let now = self.now();
        self.last_error.store(now, Ordering::Release);
        let backoff = u64::try_from(BACKOFF.as_nanos()).unwrap_or(u64::MAX);
        self.down_until
            .store(now.saturating_add(backoff), Ordering::Release);
        if *admitted == Admit::Probe {
            self.probing.store(false, Ordering::Release);
        }
    }

    /// The connection failed fast (refused, reset): counted as an error, but Redis is not
    /// marked down (the next command's connect may well work, and a refusal costs no wait).
    pub(super) fn failed_fast(&self, admitted: &Admit) {
        self.last_error.store(self.now(), Ordering::Release);
        self.abandoned(admitted);
    }

    /// The command ended without telling whether Redis hangs (its future was dropped): a
    /// probe's slot is free again.
    pub(super) fn abandoned(&self, admitted: &Admit) {
        if *admitted == Admit::Probe {
            self.probing.store(false, Ordering::Release);
        }
    }

    /// How it looks now.
    pub(super) fn report(&self) -> HealthReport {
        let now = self.now();
        let ago = |t: &AtomicU64| match t.load(Ordering::Acquire) {
            0 => None,
            at => Some(Duration::from_nanos(now.saturating_sub(at))),
        };
        HealthReport {
            up: self.down_until.load(Ordering::Acquire) == 0,
            last_ok: ago(&self.last_ok),
            last_error: ago(&self.last_error),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn after_a_failure_commands_fail_fast_then_one_probe_goes_and_its_answer_restores() {
        let h = Health::new();
        assert_eq!(h.admit(), Admit::Go);
        h.failed(&Admit::Go);
        assert!(!h.report().up);
        assert_eq!(h.admit(), Admit::FailFast);
        tokio::time::advance(BACKOFF + Duration::from_millis(1)).await;
        assert_eq!(h.admit(), Admit::Probe);
        assert_eq!(h.admit(), Admit::FailFast, "one probe at a time");
        h.answered(&Admit::Probe);
        assert!(h.report().up);
        assert_eq!(h.admit(), Admit::Go);
    }

    #[tokio::test(start_paused = true)]
    async fn a_failed_probe_starts_another_backoff_and_an_abandoned_one_frees_the_slot() {
        let h = Health::new();
        h.failed(&Admit::Go);
        tokio::time::advance(BACKOFF * 2).await;
        assert_eq!(h.admit(), Admit::Probe);
        h.abandoned(&Admit::Probe);
        assert_eq!(h.admit(), Admit::Probe);
        h.failed(&Admit::Probe);
        assert_eq!(h.admit(), Admit::FailFast);
        assert!(h.report().last_error.is_some());
        assert!(h.report().last_ok.is_none(), "never answered");
    }
}
