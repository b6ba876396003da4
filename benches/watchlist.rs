//! The cost of revocation reaching open connections (`session.revoke_open_connections`), per
//! watched connection: putting one on the watchlist and taking it off (what a WebSocket or a
//! streaming response that waits for its upstream pays once), with 10,000 other connections
//! already watched; and applying an invalidation (what every logout, token deletion or
//! suspension pays on each replica) of a key, of a user, and of everything, against the same
//! 10,000. A request whose response is read whole never reaches the list (see `http::watch`).
//! Prints nanoseconds per operation.
//!
//! ```sh
//! cargo bench --bench watchlist
//! ```

use std::hint::black_box;
use std::sync::Arc;
use std::time::Instant;

use portcullis::auth::watchlist::Watchlist;
use portcullis::store::Invalidation;
use uuid::Uuid;

const WATCHED: usize = 10_000;

fn main() {
    // `cargo bench` passes `--bench`; `cargo test --all-targets` runs this binary without it,
    // and then one pass of each case is enough to show it still works.
    let timing = std::env::args().any(|a| a == "--bench");
    let list = Arc::new(Watchlist::new());
    let users: Vec<Uuid> = (0..WATCHED / 10).map(|_| Uuid::new_v4()).collect();
    let keys: Vec<String> = (0..WATCHED).map(|i| format!("key{i:010}")).collect();
    let held: Vec<_> = keys
        .iter()
        .enumerate()
        .map(|(i, key)| list.watch(key, users[i % users.len()]))
        .collect();
    assert_eq!(list.len(), WATCHED);

    let n: u32 = if timing { 1_000_000 } else { 1 };
    let user = users[0];
    let started = Instant::now();
    for _ in 0..n {
        drop(black_box(list.watch(black_box("a-new-key-id"), user)));
    }
    report(timing, "watch + drop", started, n);

    let m: u32 = if timing { 100_000 } else { 1 };
    let cases = [
        ("invalidate a key", Invalidation::Key(keys[7].clone())),
        ("invalidate a user", Invalidation::User(user)),
    ];
    for (what, invalidation) in &cases {
        let started = Instant::now();
        for _ in 0..m {
            list.apply(black_box(invalidation));
        }
        report(timing, what, started, m);
    }
    let all: u32 = if timing { 100 } else { 1 };
    let started = Instant::now();
    for _ in 0..all {
        list.apply(black_box(&Invalidation::All));
    }
    report(timing, "invalidate everything", started, all);

    drop(held);
    assert!(list.is_empty());
}

fn report(timing: bool, what: &str, started: Instant, n: u32) {
    let ns = started.elapsed().as_nanos() as f64 / f64::from(n);
    if timing {
        println!("{what:<24} {ns:>12.1} ns ({WATCHED} connections watched)");
    }
}
