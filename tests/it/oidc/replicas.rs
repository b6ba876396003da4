//! a login that completes on another replica

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use tokio::net::{TcpListener, TcpStream};

use super::*;

/// A TCP load balancer: every new connection goes to the replica it is set to at the time.
struct Front {
    addr: SocketAddr,
    to: Arc<Mutex<SocketAddr>>,
}

impl Front {
    async fn start(to: SocketAddr) -> Front {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let target = Arc::new(Mutex::new(to));
        let to = target.clone();
        tokio::spawn(async move {
            while let Ok((mut client, _)) = listener.accept().await {
                let replica = *to.lock().unwrap();
                tokio::spawn(async move {
                    if let Ok(mut server) = TcpStream::connect(replica).await {
                        let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
                    }
                });
            }
        });
        Front { addr, to: target }
    }

    fn route_to(&self, replica: SocketAddr) {
        *self.to.lock().unwrap() = replica;
    }
}

/// Two replicas on one Redis behind one address (no `redirect_url` configured, so both take
/// it from the `Host` the browser sent): a login started on replica A is sent back by the
/// provider to the address, where replica B takes the callback and completes it, from the
/// state A stored. The session works on both.
#[tokio::test]
async fn a_login_started_on_one_replica_completes_on_another() {
    let w = World::with_accounts(REDIS, "").await;
    let echo = start_echo().await;
    let toml = config_with_store(echo, REDIS, &w.prefix, "", &w.provider.config(""));
    let b = Sidecar::start(&toml).await;
    let front = Front::start(w.sidecar.addr).await;
    let base = format!("http://{}", front.addr);

    let mut browser = Browser::new();
    let form = browser
        .open(&format!("{base}/api/v2/users/oidc/callback"))
        .await;
    assert!(
        form.url
            .starts_with(&format!("{}/interaction/", w.provider.issuer)),
        "expected the provider's login form, got {form:?}"
    );
    let back = browser.sign_in_at_provider(&form, "alice").await;
    assert!(
        back.starts_with(&format!("{base}/api/v2/users/oidc/callback?code=")),
        "{back}"
    );

    front.route_to(b.addr);
    let page = browser.open(&back).await;
    assert_eq!(page.status, StatusCode::OK, "{page:?}");
    let ok = r#"portcullis_logins_total{result="ok"}"#;
    assert_eq!(metric(&b.metrics().await, ok), 1.0, "B completed the login");
    assert_eq!(metric(&w.sidecar.metrics().await, ok), 0.0);

    let token = session_of(&browser);
    for replica in [w.sidecar.addr, b.addr] {
        let me = api_request(Method::GET, "/api/v2/users/me", None, Some(&token));
        let (status, me, _) = call_json(replica, me).await;
        assert_eq!(status, StatusCode::OK, "{me}");
        assert_eq!(me["username"], "alice");
    }
    b.shutdown().await;
    w.finish().await;
}
