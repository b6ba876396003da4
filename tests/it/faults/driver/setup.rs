//! What a run starts with: the replicas, the tokens, and both caches warm.

use super::*;

/// Two `portcullis serve` processes on one store and key prefix, and the `portcullis echo`
/// they forward to; all killed when dropped.
pub(super) struct Fleet {
    pub(super) replicas: [Process; 2],
    _echo: tokio::process::Child,
    _dir: tempfile::TempDir,
}

/// The tokens of a run.
pub(super) struct Tokens {
    pub(super) admin: String,
    /// Valid tokens on routes they may use.
    pub(super) valid: Vec<Probe>,
    /// A token on the guarded route without `workspace:read`, and one with a wrong secret.
    pub(super) refused: Vec<Probe>,
}

// === impl Fleet ===

impl Fleet {
    pub(super) async fn start(store_url: &str, prefix: &str) -> Fleet {
        let dir = tempfile::tempdir().unwrap();
        let echo_addr: SocketAddr = ([127, 0, 0, 1], free_port()).into();
        let echo = command()
            .arg("echo")
            .arg("--listen")
            .arg(echo_addr.to_string())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("portcullis echo starts");
        eventually("portcullis echo to listen", || async {
            tokio::net::TcpStream::connect(echo_addr).await.is_ok()
        })
        .await;
        let store = format!("command_timeout = \"{}ms\"", COMMAND_TIMEOUT.as_millis());
        // Neither rate limit: the revocations and setup are many API calls from one address.
        let extra = "[rate_limit]\napi_per_minute = 0\nlogin_per_minute = 0\n\n\
                     [[policy.route]]\npath = \"/guarded/**\"\nrequire = \"workspace:read\"\n";
        let toml = config_with_store(echo_addr, store_url, prefix, &store, extra);
        let config = dir.path().join("portcullis.toml");
        std::fs::write(&config, toml).unwrap();
        let replicas = [spawn_serve(&config).await, spawn_serve(&config).await];
        for replica in &replicas {
            eventually("the replica to be ready (its store answers)", || async {
                send(replica.admin, get("admin.test", "/readyz"))
                    .await
                    .status()
                    == StatusCode::OK
            })
            .await;
        }
        Fleet {
            replicas,
            _echo: echo,
            _dir: dir,
        }
    }
}

// === impl Tokens ===

impl Tokens {
    /// Makes the first user (an owner) at `addr`, its tokens and a member, and [`POOL`]
    /// revocations of each kind.
    pub(super) async fn make(addr: SocketAddr) -> (Tokens, Vec<Revocation>) {
        let admin = first_user_token(addr).await.1;
        let token = |name: &str, scope: &str| {
            make_token(addr, &admin, json!({"token_name": name, "scopes": [scope]}))
        };
        let scoped = token("scoped", "workspace:read").await;
        let unscoped = token("unscoped", "user:read").await;
        let (_, keeper) = make_member(addr, &admin, "keeper").await;
        let (id, _) = admin.split_once('-').expect("a token");
        let wrong_secret = format!("{id}-{}", "x".repeat(22));
        let probe = |token: &str, path, kind| Probe {
            token: token.to_owned(),
            path,
            kind,
        };
        let valid = vec![
            probe(&admin, "/app", Kind::Valid),
            probe(&admin, GUARDED, Kind::Valid),
            probe(&scoped, GUARDED, Kind::Valid),
            probe(&keeper, "/app", Kind::Valid),
        ];
        let refused = vec![
            probe(&unscoped, GUARDED, Kind::Unscoped),
            probe(&wrong_secret, "/app", Kind::Bogus),
        ];
        let mut pool = Vec::new();
        for n in 0..POOL {
            pool.extend(Revocation::each(addr, &admin, &format!("r{n}")).await);
        }
        (
            Tokens {
                admin,
                valid,
                refused,
            },
            pool,
        )
    }

    /// Asks for every token on every replica once, so that both caches hold them all (a lost
    /// invalidation then shows as a revoked token served from a cache), and checks the answers.
    pub(super) async fn warm(&self, addrs: &[SocketAddr], pool: &[Revocation]) {
        let revocable = pool.iter().flat_map(Revocation::tokens).map(|token| Probe {
            token,
            path: "/app",
            kind: Kind::Valid,
        });
        for (replica, &addr) in addrs.iter().enumerate() {
            let mut conn = None;
            for probe in self
                .valid
                .iter()
                .chain(&self.refused)
                .cloned()
                .chain(revocable.clone())
            {
                let answer = ask(&mut conn, addr, replica, &probe).await;
                let expected = match probe.kind {
                    Kind::Valid => StatusCode::OK,
                    Kind::Unscoped => StatusCode::FORBIDDEN,
                    Kind::Bogus | Kind::Revoked => StatusCode::UNAUTHORIZED,
                };
                assert_eq!(
                    answer.status,
                    Some(expected),
                    "{} before the fault",
                    probe.path
                );
            }
        }
    }
}
