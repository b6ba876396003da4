//! The row a run sums up to: how each answer counts, the figures, and what explains them.

use super::*;

/// The figures of one fault, as the matrix prints them.
pub struct Row {
    pub fault: String,
    pub requests: usize,
    pub let_through: usize,
    pub revoked_accepted: [usize; 2],
    /// Revoked tokens accepted by the other replica within [`PROPAGATION`] of the answer.
    pub propagating: usize,
    pub valid_refused: usize,
    pub other: usize,
    pub max_latency: Duration,
    pub unavailable: usize,
    pub revocations: usize,
    pub revocation_failures: usize,
    pub max_revocation_latency: Duration,
    pub fault_length: Duration,
    pub recovery: Duration,
    /// Invalidations the replicas could not publish, and times their subscription was lost
    /// (from their logs).
    pub unpublished: usize,
    pub resubscribed: usize,
}

/// How an answer counts.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Verdict {
    /// What its kind must get: 200 for a valid token, 401 or 403 for the others, or 503.
    Expected,
    /// A 2xx for a token that is not valid (bogus, unscoped, or revoked: on the replica that
    /// served the revocation from its answer on, on the other from [`PROPAGATION`] after it).
    LetThrough,
    /// A 2xx for a revoked token on the replica that did not serve the revocation, sent
    /// within [`PROPAGATION`] of its answer: the invalidation was still on its way.
    Propagating,
    /// A 4xx for a valid token.
    ValidRefused,
    /// Anything else: no answer, a 5xx other than 503, another status.
    Other,
}

/// How long after a revocation has answered the other replicas may still accept what it
/// revoked: the invalidation travels over Redis pub/sub (on a Cluster, also over the cluster
/// bus), and the docs' bound for it is 100 ms (`key_cache::INVALIDATION_BOUND`).
const PROPAGATION: Duration = Duration::from_millis(100);

fn verdict(a: &Answer, revoked_at: &HashMap<String, (Instant, usize)>) -> Verdict {
    let Some(status) = a.status else {
        return Verdict::Other;
    };
    match (a.kind, status.as_u16()) {
        (_, 503) | (Kind::Valid, 200) | (Kind::Bogus | Kind::Revoked, 401) => Verdict::Expected,
        (Kind::Unscoped, 403) => Verdict::Expected,
        (Kind::Valid, 400..=499) => Verdict::ValidRefused,
        (Kind::Revoked, 200..=299) => match revoked_at.get(&a.token) {
            Some((at, via)) if *via != a.replica && a.sent < *at + PROPAGATION => {
                Verdict::Propagating
            }
            _ => Verdict::LetThrough,
        },
        (_, 200..=299) => Verdict::LetThrough,
        _ => Verdict::Other,
    }
}

// === impl Row ===

impl Row {
    pub(super) fn sum(name: &str, shared: &Shared, window: &Window, logs: [&str; 2]) -> Row {
        let recovery = last_failure(shared, Some(window.cleared)).map_or(Duration::ZERO, |t| {
            t.saturating_duration_since(window.cleared)
        });
        let answers = shared.answers.lock().unwrap();
        let attempts = shared.attempts.lock().unwrap();
        let revoked_at = shared.revoked_at.lock().unwrap();
        let mut verdicts = [0; 5];
        let mut revoked_accepted = [0; 2];
        for a in answers.iter() {
            let verdict = verdict(a, &revoked_at);
            verdicts[verdict as usize] += 1;
            if verdict == Verdict::LetThrough && a.kind == Kind::Revoked {
                revoked_accepted[a.replica] += 1;
            }
        }
        let in_logs = |what: &str| logs.iter().map(|log| log.matches(what).count()).sum();
        Row {
            fault: name.to_owned(),
            requests: answers.len(),
            let_through: verdicts[Verdict::LetThrough as usize],
            revoked_accepted,
            propagating: verdicts[Verdict::Propagating as usize],
            valid_refused: verdicts[Verdict::ValidRefused as usize],
            other: verdicts[Verdict::Other as usize],
            max_latency: answers.iter().map(|a| a.took).max().unwrap_or_default(),
            unavailable: answers
                .iter()
                .filter(|a| a.status == Some(StatusCode::SERVICE_UNAVAILABLE))
                .count(),
            revocations: attempts.iter().filter(|a| a.answered.is_ok()).count(),
            revocation_failures: attempts.iter().filter(|a| a.answered.is_err()).count(),
            max_revocation_latency: attempts.iter().map(|a| a.took).max().unwrap_or_default(),
            fault_length: window.cleared - window.began,
            recovery,
            unpublished: in_logs("could not publish an invalidation"),
            resubscribed: in_logs("invalidation channel lost"),
        }
    }

    /// The line `benches/faults.sh` reads.
    pub(super) fn print(&self) {
        let ms = |d: Duration| d.as_millis();
        println!(
            "FAULT-ROW|{}|{}|{}|{}|{}|{}|{}|{}|{}|{}|{}|{}|{}|{}|{}|{}|{}",
            self.fault,
            self.requests,
            self.let_through,
            self.revoked_accepted[0],
            self.revoked_accepted[1],
            ms(self.max_latency),
            self.unavailable,
            ms(self.recovery),
            self.valid_refused,
            self.other,
            self.revocations,
            self.revocation_failures,
            ms(self.max_revocation_latency),
            ms(self.fault_length),
            self.propagating,
            self.unpublished,
            self.resubscribed,
        );
    }
}

/// What explains a row, relative to the fault's start: the slowest requests and revocations,
/// and every answer that let a request through, by token.
pub(super) fn diagnose(shared: &Shared, window: &Window) -> String {
    let at = |t: Instant| {
        let ms = |d: Duration| i64::try_from(d.as_millis()).unwrap_or(i64::MAX);
        if t >= window.began {
            ms(t - window.began)
        } else {
            -ms(window.began - t)
        }
    };
    let mut out = String::new();
    let answers = shared.answers.lock().unwrap();
    let mut slowest: Vec<&Answer> = answers.iter().collect();
    slowest.sort_by_key(|a| std::cmp::Reverse(a.took));
    for a in slowest.iter().take(5) {
        out += &format!(
            "  slow: {:?} on {} sent at {} ms took {} ms: {:?}\n",
            a.kind,
            ["A", "B"][a.replica],
            at(a.sent),
            a.took.as_millis(),
            a.status
        );
    }
    let attempts = shared.attempts.lock().unwrap();
    if let Some(a) = attempts.iter().max_by_key(|a| a.took) {
        out += &format!(
            "  slowest revocation: sent at {} ms took {} ms: {:?}\n",
            at(a.sent),
            a.took.as_millis(),
            a.answered
        );
    }
    let mut failed: BTreeMap<(&str, u16), usize> = BTreeMap::new();
    for a in attempts.iter() {
        if let Err(status) = a.answered {
            *failed.entry((a.what, status.as_u16())).or_default() += 1;
        }
    }
    if !failed.is_empty() {
        let each: Vec<String> = failed
            .iter()
            .map(|((what, status), n)| format!("{what} {status} × {n}"))
            .collect();
        out += &format!("  failed revocation attempts: {}\n", each.join(", "));
    }
    let revoked_at = shared.revoked_at.lock().unwrap();
    let mut through: BTreeMap<(String, usize), Vec<i64>> = BTreeMap::new();
    for a in answers.iter() {
        if verdict(a, &revoked_at) == Verdict::LetThrough {
            through
                .entry((a.token.clone(), a.replica))
                .or_default()
                .push(at(a.sent));
        }
    }
    for ((token, replica), sent) in through {
        let revoked = revoked_at
            .get(&token)
            .map(|(t, via)| format!("revoked through {} at {} ms", ["A", "B"][*via], at(*t)))
            .unwrap_or_default();
        out += &format!(
            "  let through on {}: {}… {revoked}, {} times, sent {} to {} ms\n",
            ["A", "B"][replica],
            &token[..10],
            sent.len(),
            sent.first().unwrap_or(&0),
            sent.last().unwrap_or(&0)
        );
        for a in attempts.iter().filter(|a| a.tokens.contains(&token)) {
            out += &format!(
                "    {}{} through {} sent at {} ms took {} ms: {:?}\n",
                a.what,
                if a.retry { " (retry)" } else { "" },
                ["A", "B"][a.via],
                at(a.sent),
                a.took.as_millis(),
                a.answered
            );
        }
    }
    out
}
