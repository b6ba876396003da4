//! The paging benchmark of the user directory (issue 19), run by `benches/directory.sh`:
//! `GET /users?limit=50` over `DIRECTORY_BENCH_USERS` users (default 100,000) on the Redis at
//! `127.0.0.1:6379`, one request in flight, through a real socket; p50 and p99 of a few
//! query shapes, and the time of the first query, which builds the directory index from the
//! records (the users are written as a version without the index would have left them).
//!
//! Ignored in the regular suite: it writes 100,000 users and takes a while. The figures come
//! from whatever build runs it (a debug build with `cargo test`): indicative only.

use std::time::{Duration, Instant};

use http::{Method, StatusCode};
use portcullis::store::{LoginType, User, UserStatus};
use time::OffsetDateTime;
use uuid::Uuid;

use crate::common::world::World;
use crate::common::REDIS;

/// How many requests each query shape gets.
const SAMPLES: usize = 300;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "benchmark: benches/directory.sh"]
async fn directory_paging_benchmark() {
    let users: usize = std::env::var("DIRECTORY_BENCH_USERS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(100_000);
    let w = World::start(
        REDIS,
        "[rate_limit]\napi_per_minute = 0\nlogin_per_minute = 0\n",
    )
    .await;
    seed(&w.prefix, users).await;

    let started = Instant::now();
    let (status, body, _) = w
        .call(Method::GET, "/api/v2/users?limit=50", None, Some(&w.admin))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let build = started.elapsed();
    assert_eq!(body["count"], users + 1, "every user is listed");

    println!("DIRECTORY-BENCH|users|{}", users + 1);
    println!("DIRECTORY-BENCH|first query (builds the index)|{build:?}");
    let last_offset = users.saturating_sub(50);
    // Each shape makes the query of request `i`; `last` is the last full page's offset.
    let shapes: [(&str, Query); 5] = [
        ("limit=50, first page", Query(|_, _| "limit=50".to_owned())),
        (
            "limit=50, random offset",
            Query(|i, last| format!("limit=50&offset={}", (i * 7919) % last.max(1))),
        ),
        (
            "limit=50, q=status:active (one tag set)",
            Query(|i, _| format!("limit=50&offset={}&q=status:active", (i * 50) % 3000)),
        ),
        (
            "limit=50, q=status:active,dormant role:auditor (union + intersection)",
            Query(|_, _| "limit=50&q=status:active,dormant%20role:auditor".to_owned()),
        ),
        (
            "limit=50, q=<free text> (scans the entries)",
            Query(|i, _| format!("limit=50&q=user{}", i % 1000)),
        ),
    ];
    for (name, path) in &shapes {
        let mut took = Vec::with_capacity(SAMPLES);
        for i in 0..SAMPLES {
            let path = format!("/api/v2/users?{}", (path.0)(i, last_offset));
            let t = Instant::now();
            let (status, body, _) = w.call(Method::GET, &path, None, Some(&w.admin)).await;
            took.push(t.elapsed());
            assert_eq!(status, StatusCode::OK, "{path}: {body}");
        }
        took.sort();
        println!(
            "DIRECTORY-BENCH|{name}|p50 {:?}|p99 {:?}",
            pct(&took, 50),
            pct(&took, 99)
        );
    }
    // Paging through with after_id, 20 pages.
    let mut after = String::new();
    let mut took = Vec::new();
    for _ in 0..20 {
        let path = format!("/api/v2/users?limit=50{after}");
        let t = Instant::now();
        let (_, body, _) = w.call(Method::GET, &path, None, Some(&w.admin)).await;
        took.push(t.elapsed());
        let last = body["users"][49]["id"]
            .as_str()
            .expect("a full page")
            .to_owned();
        after = format!("&after_id={last}");
    }
    took.sort();
    println!(
        "DIRECTORY-BENCH|limit=50, after_id walk|p50 {:?}|p99 {:?}",
        pct(&took, 50),
        pct(&took, 99)
    );
    w.finish().await;
}

/// Makes the query string of request `i`, given the last full page's offset.
struct Query(fn(usize, usize) -> String);

fn pct(sorted: &[Duration], p: usize) -> Duration {
    sorted[(sorted.len() * p / 100).min(sorted.len() - 1)]
}

/// Writes `n` users straight into Redis under `prefix` (records, the id set and the
/// uniqueness indexes; no directory index), pipelined.
pub(crate) async fn seed(prefix: &str, n: usize) {
    let client = redis::Client::open(REDIS).expect("redis url");
    let mut conn = client
        .get_multiplexed_async_connection()
        .await
        .expect("the test Redis answers");
    let now = OffsetDateTime::now_utc();
    let statuses = [
        UserStatus::Active,
        UserStatus::Dormant,
        UserStatus::Suspended,
    ];
    for chunk in (0..n).collect::<Vec<_>>().chunks(1000) {
        let mut pipe = redis::pipe();
        for &i in chunk {
            let id = Uuid::new_v4();
            let user = User {
                id,
                username: format!("user{i}"),
                email: format!("user{i}@bench.example"),
                name: String::new(),
                avatar_url: String::new(),
                created_at: now,
                updated_at: now,
                last_seen_at: now,
                status: statuses[i % 3],
                login_type: LoginType::Password,
                hashed_password: None,
                roles: if i % 100 == 0 {
                    vec!["auditor".into()]
                } else {
                    Vec::new()
                },
                theme_preference: String::new(),
            };
            let json = serde_json::to_string(&user).expect("json");
            pipe.cmd("SET")
                .arg(format!("{prefix}{{u:{id}}}:user"))
                .arg(json)
                .ignore();
            pipe.cmd("SET")
                .arg(format!("{prefix}username:user{i}"))
                .arg(id.to_string())
                .ignore();
            pipe.cmd("SET")
                .arg(format!("{prefix}email:user{i}@bench.example"))
                .arg(id.to_string())
                .ignore();
            pipe.cmd("SADD")
                .arg(format!("{prefix}users"))
                .arg(id.to_string())
                .ignore();
        }
        let () = pipe.query_async(&mut conn).await.expect("seed");
    }
    // As data from before the index: the index holds none of them, and is not marked built.
    let () = redis::cmd("DEL")
        .arg(format!("{prefix}{{dir}}:built"))
        .query_async(&mut conn)
        .await
        .expect("del");
}
