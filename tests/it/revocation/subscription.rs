//! A replica that is not subscribed to the invalidation channel cannot hear of a revocation
//! made elsewhere, so it must not answer from its cache.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use super::*;

/// Two replicas on one private Redis, their caches an hour long. `deaf` reaches Redis through
/// a proxy that drops any connection on which it sees `SUBSCRIBE` (as for a replica whose
/// subscriber is still reconnecting after Redis came back, or after a failover, while its
/// commands already work): every look-up it makes reads the store, so a logout through the
/// other replica is refused there at once. Once it can subscribe, and has, its cache answers
/// again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_not_subscribed_to_invalidations_reads_the_store_for_every_request() {
    let port = free_port();
    let _redis = RedisServer::start(port).await;
    let deafened = Arc::new(AtomicBool::new(true));
    let proxy = no_subscribe_proxy(([127, 0, 0, 1], port).into(), deafened.clone()).await;
    let echo = start_echo().await;
    let prefix = random_key_prefix();
    let config = |url: String| replica_config(echo, &url, &prefix);
    let deaf = Sidecar::start(&config(format!("redis://{proxy}"))).await;
    let other = Sidecar::start(&config(format!("redis://127.0.0.1:{port}"))).await;
    let admin = first_user_token(other.addr).await.1;
    let (_, session) = make_member(other.addr, &admin, "member").await;
    let hits = || async {
        let text = deaf.metrics().await;
        metric(&text, r#"portcullis_key_cache_total{result="hit"}"#)
    };

    for _ in 0..3 {
        assert_eq!(proxied(&deaf, &session).await.0, StatusCode::OK);
        assert_eq!(proxied(&deaf, &admin).await.0, StatusCode::OK);
    }
    assert_eq!(hits().await, 0.0, "every look-up read the store");
    let (status, body, _) = call(
        &other,
        Method::POST,
        "/api/v2/users/logout",
        None,
        Some(&session),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(
        proxied(&deaf, &session).await.0,
        StatusCode::UNAUTHORIZED,
        "the logout the deaf replica did not hear of"
    );

    deafened.store(false, Ordering::SeqCst);
    eventually(
        "the deaf replica to subscribe and its cache to answer",
        || async {
            assert_eq!(proxied(&deaf, &admin).await.0, StatusCode::OK);
            hits().await > 0.0
        },
    )
    .await;
    deaf.shutdown().await;
    other.shutdown().await;
}

/// A TCP proxy to `target` that, while `deafened`, drops every connection on which a client
/// sends `SUBSCRIBE`; everything else passes.
async fn no_subscribe_proxy(target: SocketAddr, deafened: Arc<AtomicBool>) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((client, _)) = listener.accept().await {
            let deafened = deafened.clone();
            tokio::spawn(async move {
                let Ok(server) = TcpStream::connect(target).await else {
                    return;
                };
                let (mut from_client, mut to_client) = client.into_split();
                let (mut from_server, mut to_server) = server.into_split();
                let up = async {
                    let mut buf = vec![0; 16 * 1024];
                    loop {
                        let n = match from_client.read(&mut buf).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => n,
                        };
                        let subscribing = buf[..n]
                            .windows(b"SUBSCRIBE".len())
                            .any(|w| w.eq_ignore_ascii_case(b"SUBSCRIBE"));
                        if subscribing && deafened.load(Ordering::SeqCst) {
                            return;
                        }
                        if to_server.write_all(&buf[..n]).await.is_err() {
                            return;
                        }
                    }
                };
                // Whichever way ends first ends the connection.
                tokio::select! {
                    () = up => {}
                    _ = tokio::io::copy(&mut from_server, &mut to_client) => {}
                }
            });
        }
    });
    addr
}
