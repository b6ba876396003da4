//! The one driver every fault runs under: two `portcullis serve` processes on one store,
//! steady traffic and revocations through both, the fault, and the row that sums it up.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::future::Future;
use std::net::SocketAddr;
use std::process::Stdio;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use http::{Method, StatusCode};
use serde_json::json;

use crate::common::world::{make_member, make_token};
use crate::common::*;

mod row;
mod setup;

use row::diagnose;
pub use row::Row;
use setup::{Fleet, Tokens};

/// `store.command_timeout` of both replicas; the other store settings are the defaults
/// (`cache_ttl` 30 s, `max_stale` 30 s, `negative_cache_ttl` 5 s).
pub const COMMAND_TIMEOUT: Duration = Duration::from_millis(500);
/// How far past `store.command_timeout` a request may take before the row fails: a fault test
/// run on demand, on a shared machine, so generous.
pub const LATENCY_MARGIN: Duration = Duration::from_secs(1);
/// Traffic loops, each sending one request every [`TICK`] (about 400 requests a second in all).
const LOOPS: usize = 6;
const TICK: Duration = Duration::from_millis(15);
/// A revocation is made this often, through each replica in turn.
const REVOKE_EVERY: Duration = Duration::from_millis(200);
/// Revocations of each kind made ready before the run (three kinds: 120 in all, enough for
/// 24 s of revoking).
const POOL: usize = 40;
/// Traffic before the fault.
const BEFORE: Duration = Duration::from_secs(2);
/// After the fault has cleared, the run ends once no request has failed for this long and
/// every revocation has succeeded.
const QUIET: Duration = Duration::from_secs(3);
/// The run fails if it has not recovered within this long of the fault clearing.
const RECOVERY_LIMIT: Duration = Duration::from_secs(60);
/// A request not answered within this long is counted as hung.
const REQUEST_LIMIT: Duration = Duration::from_secs(10);
/// The route the route policy guards with `workspace:read`; every other path needs a session.
const GUARDED: &str = "/guarded/x";

/// When the fault began and when it cleared (the server back, the failover done, the network
/// whole again).
pub struct Window {
    pub began: Instant,
    pub cleared: Instant,
}

impl Window {
    /// A fault that began at `began` and has just cleared.
    pub fn since(began: Instant) -> Window {
        Window {
            began,
            cleared: Instant::now(),
        }
    }
}

/// What a traffic request carries, and so what it must get.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    /// A valid token on a route it may use: 200, or 503 while the store cannot answer.
    Valid,
    /// A token that is not one (unknown id, wrong secret): 401 or 503.
    Bogus,
    /// A valid token without the route's scope: 403 or 503.
    Unscoped,
    /// A token whose revocation answered success before the request was sent: 401 or 503.
    Revoked,
}

/// One answered (or hung) request.
struct Answer {
    replica: usize,
    kind: Kind,
    token: String,
    sent: Instant,
    took: Duration,
    /// `None`: no answer within [`REQUEST_LIMIT`], or the connection failed.
    status: Option<StatusCode>,
}

/// One revocation attempt.
struct Attempt {
    /// What it revoked, how, and through which replica.
    tokens: Vec<String>,
    what: &'static str,
    via: usize,
    retry: bool,
    sent: Instant,
    took: Duration,
    /// The answer: what counted as done, or the 5xx.
    answered: Result<StatusCode, StatusCode>,
}

/// A request that must be answered a certain way.
#[derive(Clone)]
struct Probe {
    token: String,
    path: &'static str,
    kind: Kind,
}

/// What the traffic and the revoker share.
#[derive(Default)]
struct Shared {
    answers: Mutex<Vec<Answer>>,
    attempts: Mutex<Vec<Attempt>>,
    /// Tokens whose revocation answered success.
    revoked: Mutex<Vec<String>>,
    /// When each of them was revoked, and through which replica.
    revoked_at: Mutex<HashMap<String, (Instant, usize)>>,
    /// Revocations that answered an error, to be tried again once the fault has cleared.
    pending: Mutex<VecDeque<Revocation>>,
    cleared: AtomicBool,
    stop: AtomicBool,
}

/// Runs one fault: starts two replicas on `store_url` under `prefix`, makes the tokens and
/// warms both caches with them, runs the traffic and the revocations for [`BEFORE`], then
/// `fault` (which injects the fault, waits, clears it, and says when it did each), then waits
/// until the replicas have recovered (every failed revocation retried with success, no failure
/// for [`QUIET`]). Prints the row (`FAULT-ROW|…`) and fails the test if a request was let
/// through that should not have been, a revoked token was accepted, a valid one refused, any
/// other answer came, or a request took longer than [`COMMAND_TIMEOUT`] + [`LATENCY_MARGIN`].
pub async fn run_fault(
    name: &str,
    store_url: &str,
    prefix: &str,
    fault: impl Future<Output = Window>,
) -> Row {
    let fleet = Fleet::start(store_url, prefix).await;
    let addrs = [fleet.replicas[0].addr, fleet.replicas[1].addr];
    let (tokens, pool) = Tokens::make(addrs[0]).await;
    tokens.warm(&addrs, &pool).await;

    let shared = Arc::new(Shared::default());
    let tokens = Arc::new(tokens);
    let mut tasks: Vec<_> = (0..LOOPS)
        .map(|n| tokio::spawn(traffic(n, addrs, tokens.clone(), shared.clone())))
        .collect();
    tasks.push(tokio::spawn(revoker(
        addrs,
        tokens.admin.clone(),
        pool,
        shared.clone(),
    )));

    tokio::time::sleep(BEFORE).await;
    let window = fault.await;
    shared.cleared.store(true, Ordering::SeqCst);
    let recovered = await_recovery(&shared, window.cleared).await;
    shared.stop.store(true, Ordering::SeqCst);
    for task in tasks {
        task.await.expect("a traffic task ran without a surprise");
    }
    if !recovered {
        panic!(
            "{name}: not recovered {RECOVERY_LIMIT:?} after the fault cleared\nreplica A:\n{}\nreplica B:\n{}",
            fleet.replicas[0].log(),
            fleet.replicas[1].log()
        );
    }
    // Last, every revoked token once more on each replica.
    let revoked = shared.revoked.lock().unwrap().clone();
    ask_revoked(addrs, &revoked, &shared).await;

    let logs = [fleet.replicas[0].log(), fleet.replicas[1].log()];
    let row = Row::sum(name, &shared, &window, [&logs[0], &logs[1]]);
    row.print();
    eprint!("{}", diagnose(&shared, &window));
    let bound = COMMAND_TIMEOUT + LATENCY_MARGIN;
    let logs = || {
        format!(
            "replica A:\n{}\nreplica B:\n{}",
            fleet.replicas[0].log(),
            fleet.replicas[1].log()
        )
    };
    assert_eq!(
        row.let_through,
        0,
        "{name}: requests let through\n{}",
        logs()
    );
    assert_eq!(
        row.revoked_accepted,
        [0, 0],
        "{name}: revoked tokens accepted (A, B)\n{}",
        logs()
    );
    assert_eq!(row.valid_refused, 0, "{name}: valid tokens refused");
    assert_eq!(
        row.other,
        0,
        "{name}: answers other than 200/401/403/503\n{}",
        logs()
    );
    assert!(
        row.max_latency < bound && row.max_revocation_latency < bound,
        "{name}: a request took {:?}, a revocation {:?} (bound {bound:?})",
        row.max_latency,
        row.max_revocation_latency
    );
    row
}

/// Waits until every failed revocation has been retried with success and nothing has failed
/// for [`QUIET`] (and at least that long has passed since `cleared`); false after
/// [`RECOVERY_LIMIT`].
async fn await_recovery(shared: &Shared, cleared: Instant) -> bool {
    while cleared.elapsed() < RECOVERY_LIMIT {
        tokio::time::sleep(Duration::from_millis(100)).await;
        if !shared.pending.lock().unwrap().is_empty() {
            continue;
        }
        let last_failure = last_failure(shared, None).unwrap_or(cleared).max(cleared);
        if last_failure.elapsed() >= QUIET {
            return true;
        }
    }
    false
}

/// When the last failed request or revocation (sent at or after `since`, when given) ended.
fn last_failure(shared: &Shared, since: Option<Instant>) -> Option<Instant> {
    let after = |sent: Instant| since.is_none_or(|since| sent >= since);
    let requests = shared
        .answers
        .lock()
        .unwrap()
        .iter()
        .filter(|a| after(a.sent) && a.status.is_none_or(|s| s.is_server_error()))
        .map(|a| a.sent + a.took)
        .max();
    let revocations = shared
        .attempts
        .lock()
        .unwrap()
        .iter()
        .filter(|a| after(a.sent) && a.answered.is_err())
        .map(|a| a.sent + a.took)
        .max();
    requests.max(revocations)
}

/// Sends a request every [`TICK`], to each replica in turn, going round the kinds of token
/// (valid ones most often), until `stop`; each on a kept-alive connection per replica.
async fn traffic(n: usize, addrs: [SocketAddr; 2], tokens: Arc<Tokens>, shared: Arc<Shared>) {
    // Valid, revoked, bogus (a fresh unknown id), valid, refused, revoked, …
    const ROUND: [Option<Kind>; 6] = [
        Some(Kind::Valid),
        Some(Kind::Revoked),
        Some(Kind::Bogus),
        Some(Kind::Valid),
        None,
        Some(Kind::Revoked),
    ];
    let mut conns = [None, None];
    let mut tick = tokio::time::interval(TICK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut i = n;
    while !shared.stop.load(Ordering::SeqCst) {
        tick.tick().await;
        i += 1;
        let replica = i % 2;
        let probe = match ROUND[(i / 2) % ROUND.len()] {
            Some(Kind::Valid) => tokens.valid[(i / 3) % tokens.valid.len()].clone(),
            Some(Kind::Revoked) => {
                let revoked = shared.revoked.lock().unwrap();
                match revoked.len() {
                    0 => tokens.valid[0].clone(),
                    len => Probe {
                        token: revoked[(i / 5) % len].clone(),
                        path: "/app",
                        kind: Kind::Revoked,
                    },
                }
            }
            Some(Kind::Bogus) => Probe {
                token: unknown_token(),
                path: "/app",
                kind: Kind::Bogus,
            },
            _ => tokens.refused[(i / 7) % tokens.refused.len()].clone(),
        };
        let answer = ask(&mut conns[replica], addrs[replica], replica, &probe).await;
        shared.answers.lock().unwrap().push(answer);
    }
}

/// Makes a revocation every [`REVOKE_EVERY`], through each replica in turn, until `stop`:
/// a new one from `pool`, or, once the fault has cleared, the oldest that failed. On success
/// its tokens count as revoked, and are at once asked for on both replicas.
async fn revoker(
    addrs: [SocketAddr; 2],
    admin: String,
    pool: Vec<Revocation>,
    shared: Arc<Shared>,
) {
    let mut pool = pool.into_iter();
    let mut tick = tokio::time::interval(REVOKE_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut n = 0;
    while !shared.stop.load(Ordering::SeqCst) {
        tick.tick().await;
        let retry = if shared.cleared.load(Ordering::SeqCst) {
            shared.pending.lock().unwrap().pop_front()
        } else {
            None
        };
        let is_retry = retry.is_some();
        let Some(revocation) = retry.or_else(|| pool.next()) else {
            continue;
        };
        n += 1;
        let via = addrs[n % 2];
        let sent = Instant::now();
        let outcome = tokio::time::timeout(REQUEST_LIMIT, revocation.run(via, &admin, is_retry))
            .await
            .unwrap_or(Err(StatusCode::GATEWAY_TIMEOUT));
        let failed = outcome.is_err();
        shared.attempts.lock().unwrap().push(Attempt {
            tokens: revocation.tokens(),
            what: match revocation {
                Revocation::Logout { .. } => "logout",
                Revocation::Delete { .. } => "delete",
                Revocation::Suspend { .. } => "suspend",
            },
            via: n % 2,
            retry: is_retry,
            sent,
            took: sent.elapsed(),
            answered: outcome,
        });
        if failed {
            shared.pending.lock().unwrap().push_back(revocation);
            continue;
        }
        let tokens = revocation.tokens();
        let at = (Instant::now(), n % 2);
        shared
            .revoked_at
            .lock()
            .unwrap()
            .extend(tokens.iter().map(|t| (t.clone(), at)));
        shared
            .revoked
            .lock()
            .unwrap()
            .extend(tokens.iter().cloned());
        ask_revoked(addrs, &tokens, &shared).await;
    }
}

/// Asks for each of `tokens`, revoked, on each replica, each on a new connection.
async fn ask_revoked(addrs: [SocketAddr; 2], tokens: &[String], shared: &Shared) {
    for (replica, &addr) in addrs.iter().enumerate() {
        for token in tokens {
            let probe = Probe {
                token: token.clone(),
                path: "/app",
                kind: Kind::Revoked,
            };
            let answer = ask(&mut None, addr, replica, &probe).await;
            shared.answers.lock().unwrap().push(answer);
        }
    }
}

/// Sends `probe` to `addr` on `conn` (connecting first when there is none; a connection that
/// failed is dropped), timed.
async fn ask(
    conn: &mut Option<hyper::client::conn::http1::SendRequest<TestBody>>,
    addr: SocketAddr,
    replica: usize,
    probe: &Probe,
) -> Answer {
    let sent = Instant::now();
    let request = async {
        if conn.as_ref().is_none_or(|c| c.is_closed()) {
            let stream = tokio::net::TcpStream::connect(addr).await.ok()?;
            let (sender, connection) =
                hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
                    .await
                    .ok()?;
            tokio::spawn(connection);
            *conn = Some(sender);
        }
        let sender = conn.as_mut()?;
        sender.ready().await.ok()?;
        let req = api_request(Method::GET, probe.path, None, Some(&probe.token));
        let resp = sender.send_request(req).await.ok()?;
        let status = resp.status();
        // The whole answer, so that the next request can use the connection.
        http_body_util::BodyExt::collect(resp.into_body())
            .await
            .ok()?;
        Some(status)
    };
    let status = tokio::time::timeout(REQUEST_LIMIT, request)
        .await
        .ok()
        .flatten();
    if status.is_none() {
        *conn = None;
    }
    Answer {
        replica,
        kind: probe.kind,
        token: probe.token.clone(),
        sent,
        took: sent.elapsed(),
        status,
    }
}

/// A well-formed token whose key id no store has.
fn unknown_token() -> String {
    let (a, b) = (uuid::Uuid::new_v4().simple(), uuid::Uuid::new_v4().simple());
    format!("{}-{}", &a.to_string()[..10], &b.to_string()[..22])
}
