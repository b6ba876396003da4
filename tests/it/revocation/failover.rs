//! a Sentinel failover under traffic

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::*;

/// The status of a proxied request with `token` to the Portcullis at `addr`.
async fn status_of(addr: SocketAddr, token: &str) -> StatusCode {
    call_json(addr, api_request(Method::GET, "/app", None, Some(token)))
        .await
        .0
}

/// What the traffic saw: every revoked token that was let through (must stay empty), and how
/// many requests with a valid token were answered, and how many of those with 503.
#[derive(Default)]
struct Seen {
    revoked_accepted: BTreeSet<String>,
    valid: usize,
    unavailable: usize,
}

/// Requests in a loop to every replica in `addrs` until `stop`: with each of `valid` (answered
/// 200, or 503 while the store fails over) and each token in `revoked` (never 200).
fn traffic(
    addrs: Vec<SocketAddr>,
    valid: Vec<String>,
    revoked: Arc<Mutex<Vec<String>>>,
    seen: Arc<Mutex<Seen>>,
    stop: Arc<AtomicBool>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        while !stop.load(Ordering::Relaxed) {
            for &addr in &addrs {
                for token in &valid {
                    let status = status_of(addr, token).await;
                    let mut seen = seen.lock().unwrap();
                    seen.valid += 1;
                    match status {
                        StatusCode::OK => {}
                        StatusCode::SERVICE_UNAVAILABLE => seen.unavailable += 1,
                        other => panic!("a valid token got {other} on {addr}"),
                    }
                }
                let revoked = revoked.lock().unwrap().clone();
                for token in revoked {
                    let status = status_of(addr, &token).await;
                    if status == StatusCode::OK {
                        seen.lock().unwrap().revoked_accepted.insert(token);
                    }
                }
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
}

/// Two replicas on a Sentinel set, under steady traffic with valid tokens and with every token
/// revoked so far. Tokens are revoked in every way there is (logout with its
/// application_connect key, token deletion, suspension): before the failover, and while it
/// runs (the replica promoted, the old master not yet demoted: both take writes then). A
/// revocation counts once it has answered success; one that answers an error is retried after
/// the failover, as a client would. No revoked token is ever let through by either replica;
/// both recover without a restart, and a revocation after the failover holds too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sentinel_failover_under_traffic_loses_no_revocation() {
    let set = SentinelSet::start().await;
    let (w, b) = World::with_replica(&set.url()).await;
    let b = b.expect("a shared store");
    let addrs = vec![w.sidecar.addr, b.addr];
    let before = Revocation::each(w.sidecar.addr, &w.admin, "before").await;
    let during = Revocation::each(w.sidecar.addr, &w.admin, "during").await;
    let (_, late) = w.member("late").await;
    let after = Revocation::Logout {
        app: w
            .token(
                &late,
                json!({"token_name": "app", "scope": "application_connect"}),
            )
            .await,
        session: late,
    };
    let (_, keeper) = w.member("keeper").await;
    let valid = vec![w.admin.clone(), keeper];
    let mut everyone: Vec<String> = valid.clone();
    for r in before.iter().chain(&during).chain([&after]) {
        everyone.extend(r.tokens());
    }
    for &addr in &addrs {
        for token in &everyone {
            assert_eq!(status_of(addr, token).await, StatusCode::OK);
        }
    }

    let revoked = Arc::new(Mutex::new(Vec::<String>::new()));
    let seen = Arc::new(Mutex::new(Seen::default()));
    let stop = Arc::new(AtomicBool::new(false));
    let load = traffic(
        addrs.clone(),
        valid.clone(),
        revoked.clone(),
        seen.clone(),
        stop.clone(),
    );
    let revoke = |r: &Revocation| revoked.lock().unwrap().extend(r.tokens());

    // Before the failover: every revocation answers success.
    for (n, r) in before.iter().enumerate() {
        let via = if n % 2 == 0 { &w.sidecar } else { &b };
        assert!(
            r.run(via.addr, &w.admin, false).await.is_ok(),
            "a revocation before the failover"
        );
        revoke(r);
    }

    // During it: success means revoked for good; an error, that it did not happen.
    set.start_failover().await;
    let mut retry = Vec::new();
    let mut in_window = 0;
    for r in &during {
        in_window += usize::from(set.old_master_writable());
        if r.run(b.addr, &w.admin, false).await.is_ok() {
            revoke(r);
        } else {
            retry.push(r);
        }
    }
    assert!(
        in_window > 0,
        "a revocation was made while both were masters"
    );
    set.await_demotion().await;

    // Both replicas recover by themselves: the valid tokens work again, and the revocations
    // that failed during the failover succeed when tried again, as does one made after it.
    for &addr in &addrs {
        for token in &valid {
            eventually("a valid token to work again after the failover", || async {
                status_of(addr, token).await == StatusCode::OK
            })
            .await;
        }
    }
    for r in retry.into_iter().chain([&after]) {
        eventually("a revocation after the failover to succeed", || async {
            r.run(w.sidecar.addr, &w.admin, true).await.is_ok()
        })
        .await;
        revoke(r);
    }
    for &addr in &addrs {
        for token in after.tokens() {
            eventually(
                "the revocation after the failover to reach every replica",
                || async { status_of(addr, &token).await == StatusCode::UNAUTHORIZED },
            )
            .await;
        }
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    stop.store(true, Ordering::Relaxed);
    load.await.expect("the traffic ran without a surprise");

    let seen = std::mem::take(&mut *seen.lock().unwrap());
    assert!(
        seen.revoked_accepted.is_empty(),
        "revoked tokens let through: {:?}",
        seen.revoked_accepted
    );
    assert!(seen.valid > 0, "the traffic ran");
    eprintln!(
        "failover: {} requests with valid tokens, {} answered 503",
        seen.valid, seen.unavailable
    );
    let revoked = revoked.lock().unwrap().clone();
    for &addr in &addrs {
        for token in &revoked {
            assert_eq!(status_of(addr, token).await, StatusCode::UNAUTHORIZED);
        }
    }
    b.shutdown().await;
    w.sidecar.shutdown().await;
}
