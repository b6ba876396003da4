use super::*;

use crate::auth::PasswordParams;

const HOUR: Duration = Duration::from_secs(3600);

struct Fixture {
    store: Store,
    passwords: Passwords,
    tokens: TokensConfig,
}

impl Fixture {
    fn new() -> Self {
        Fixture {
            store: Store::memory(),
            passwords: Passwords::new(PasswordParams {
                memory_kib: 64,
                iterations: 1,
                parallelism: 1,
                max_concurrent: 2,
                queue: 16,
            })
            .expect("small argon2 parameters are valid"),
            tokens: TokensConfig {
                default_lifetime: 168 * HOUR,
                max_lifetime: 876_600 * HOUR,
                max_admin_lifetime: 168 * HOUR,
            },
        }
    }

    fn users(&self) -> Users<'_> {
        Users::new(&self.store, &self.passwords, &self.tokens)
    }

    async fn create(&self, email: &str, username: &str, roles: &[&str]) -> User {
        self.users()
            .create(new_user(email, username, roles))
            .await
            .expect("created")
            .0
    }

    async fn key(&self, user: &User) -> String {
        self.users()
            .issue_key(
                user,
                NewKey {
                    login_type: LoginType::Password,
                    lifetime: HOUR,
                    scopes: Vec::new(),
                    token_name: String::new(),
                    ip_address: String::new(),
                    allow_list: Vec::new(),
                    not_after: None,
                },
            )
            .await
            .expect("issued")
    }
}

fn new_user(email: &str, username: &str, roles: &[&str]) -> NewUser {
    NewUser {
        email: email.into(),
        username: username.into(),
        name: String::new(),
        password: Some("a fine passphrase".into()),
        login_type: LoginType::Password,
        status: UserStatus::Dormant,
        roles: roles.iter().map(|r| r.to_string()).collect(),
        organization_ids: Vec::new(),
    }
}

#[tokio::test]
async fn a_new_user_is_stored_hashed_in_the_default_organization() {
    let f = Fixture::new();
    let (user, memberships) = f
        .users()
        .create(new_user("Ann@Example.com", "ann", &["owner", "owner"]))
        .await
        .expect("created");
    assert_eq!(user.status, UserStatus::Dormant);
    assert_eq!(user.roles, vec!["owner".to_owned()]);
    let hash = user.hashed_password.as_deref().expect("has a hash");
    assert!(hash.starts_with("$argon2id$"), "{hash}");
    let default = f.store.default_org().await.unwrap().expect("created");
    assert_eq!(memberships.len(), 1);
    assert_eq!(memberships[0].organization_id, default.id);
    // A nil id is the default organization too, and a second user joins the same one.
    let mut second = new_user("bob@example.com", "bob", &[]);
    second.organization_ids = vec![Uuid::nil()];
    let (_, memberships) = f.users().create(second).await.expect("created");
    assert_eq!(memberships[0].organization_id, default.id);
    assert_eq!(f.store.orgs().await.unwrap().len(), 1);
}

#[tokio::test]
async fn creation_refuses_what_coder_refuses() {
    let f = Fixture::new();
    f.create("ann@example.com", "ann", &[]).await;
    let no_password = NewUser {
        password: None,
        ..new_user("c@example.com", "cee", &[])
    };
    let oidc_with_password = NewUser {
        login_type: LoginType::Oidc,
        ..new_user("d@example.com", "dee", &[])
    };
    let unknown_org = NewUser {
        organization_ids: vec![Uuid::new_v4()],
        ..new_user("e@example.com", "eee", &[])
    };
    let weak = NewUser {
        password: Some("x".repeat(65)),
        ..new_user("f@example.com", "eff", &[])
    };
    let cases: Vec<(NewUser, &str)> = vec![
        (
            new_user("ANN@example.com", "other", &[]),
            "Conflict(\"email\")",
        ),
        (
            new_user("x@example.com", "ANN", &[]),
            "Conflict(\"username\")",
        ),
        (new_user("not-an-email", "bad name", &[]), "Invalid"),
        (no_password, "Invalid"),
        (oidc_with_password, "PasswordNotAllowed(Oidc)"),
        (new_user("g@example.com", "gee", &["member"]), "UnknownRole"),
        (unknown_org, "NoSuchOrg"),
        (weak, "WeakPassword"),
    ];
    for (new, want) in cases {
        let err = f.users().create(new).await.expect_err(want);
        assert!(format!("{err:?}").starts_with(want), "{want}: {err:?}");
    }
    // A user without a password login needs no password.
    let none = NewUser {
        password: None,
        login_type: LoginType::None,
        ..new_user("h@example.com", "aitch", &[])
    };
    let (user, _) = f.users().create(none).await.expect("created");
    assert!(user.hashed_password.is_none());
}

#[tokio::test]
async fn a_new_password_revokes_every_key_and_tells_every_replica() {
    let f = Fixture::new();
    let user = f.create("ann@example.com", "ann", &[]).await;
    let other = f.create("bob@example.com", "bob", &[]).await;
    f.key(&user).await;
    f.key(&user).await;
    let kept = f.key(&other).await;
    let mut rx = f.store.subscribe();

    let revoked = f
        .users()
        .set_password(user.id, "another fine passphrase")
        .await
        .expect("set");

    assert_eq!(revoked, 2);
    assert!(f.store.keys_of(user.id).await.unwrap().is_empty());
    assert_eq!(f.store.keys_of(other.id).await.unwrap().len(), 1, "{kept}");
    assert_eq!(
        rx.try_recv().expect("published"),
        Invalidation::User(user.id)
    );
    let stored = f.store.user(user.id).await.unwrap().expect("exists");
    let hash = stored.hashed_password.expect("hash");
    assert!(
        f.passwords
            .verify("another fine passphrase", &hash)
            .await
            .expect("checks")
            .ok
    );
}

#[tokio::test]
async fn a_password_change_refuses_the_current_password_and_other_login_types() {
    let f = Fixture::new();
    let user = f.create("ann@example.com", "ann", &[]).await;
    let err = f
        .users()
        .set_password(user.id, "a fine passphrase")
        .await
        .expect_err("same password");
    assert!(matches!(err, UserError::SamePassword), "{err:?}");
    let err = f
        .users()
        .set_password(user.id, "")
        .await
        .expect_err("empty");
    assert!(matches!(err, UserError::Invalid(_)), "{err:?}");
    let none = NewUser {
        password: None,
        login_type: LoginType::None,
        ..new_user("n@example.com", "nobody", &[])
    };
    let (none, _) = f.users().create(none).await.expect("created");
    let err = f
        .users()
        .set_password(none.id, "a fine passphrase")
        .await
        .expect_err("not a password user");
    assert!(matches!(err, UserError::NotPasswordUser), "{err:?}");
    let err = f
        .users()
        .set_password(Uuid::new_v4(), "whatever it is")
        .await
        .expect_err("no such user");
    assert!(matches!(err, UserError::NoSuchUser), "{err:?}");
}

#[tokio::test]
async fn status_changes_and_deletion_publish_the_user_invalidation() {
    let f = Fixture::new();
    let user = f.create("ann@example.com", "ann", &[]).await;
    f.key(&user).await;
    let mut rx = f.store.subscribe();

    let suspended = f
        .users()
        .set_status(user.id, UserStatus::Suspended)
        .await
        .expect("suspended");
    assert_eq!(suspended.status, UserStatus::Suspended);
    assert_eq!(
        rx.try_recv().expect("published"),
        Invalidation::User(user.id)
    );
    let stored = f.store.user(user.id).await.unwrap().expect("exists");
    assert_eq!(stored.status, UserStatus::Suspended);

    f.users().delete(user.id).await.expect("deleted");
    assert_eq!(
        rx.try_recv().expect("published"),
        Invalidation::User(user.id)
    );
    assert!(f.store.user(user.id).await.unwrap().is_none());
    assert!(f.store.keys_of(user.id).await.unwrap().is_empty());
    assert!(f.store.memberships_of(user.id).await.unwrap().is_empty());
    let err = f.users().delete(user.id).await.expect_err("gone");
    assert!(matches!(err, UserError::NoSuchUser), "{err:?}");
}

#[tokio::test]
async fn find_takes_a_username_an_email_or_an_id() {
    let f = Fixture::new();
    let user = f.create("Ann@Example.com", "ann", &[]).await;
    for who in ["ann", "ANN", "ann@example.com", &user.id.to_string()] {
        let found = f.users().find(who).await.unwrap().expect(who);
        assert_eq!(found.id, user.id, "{who}");
    }
    assert!(f.users().find("nobody").await.unwrap().is_none());
}

#[tokio::test]
async fn token_lifetimes_follow_the_tokens_section() {
    let f = Fixture::new();
    let member = f.create("ann@example.com", "ann", &[]).await;
    let owner = f.create("own@example.com", "own", &["owner"]).await;
    let users = f.users();
    assert_eq!(users.token_lifetime(&member, None).unwrap(), 168 * HOUR);
    assert_eq!(
        users.token_lifetime(&member, Some(Duration::ZERO)).unwrap(),
        168 * HOUR
    );
    assert_eq!(
        users.token_lifetime(&member, Some(1000 * HOUR)).unwrap(),
        1000 * HOUR
    );
    let err = users
        .token_lifetime(&owner, Some(169 * HOUR))
        .expect_err("over the admin maximum");
    assert_eq!(err.to_string(), "lifetime must be less than 168h0m0s");
    let err = users
        .token_lifetime(&member, Some(876_601 * HOUR))
        .expect_err("over the maximum");
    assert_eq!(err.to_string(), "lifetime must be less than 876600h0m0s");
}

#[tokio::test]
async fn issued_keys_carry_canonical_scopes_and_unique_names() {
    let f = Fixture::new();
    let user = f.create("ann@example.com", "ann", &[]).await;
    let named = |name: &str, scopes: &[&str]| NewKey {
        login_type: LoginType::Token,
        lifetime: HOUR,
        scopes: scopes.iter().map(|s| s.to_string()).collect(),
        token_name: name.into(),
        ip_address: String::new(),
        allow_list: Vec::new(),
        not_after: None,
    };
    let token = f
        .users()
        .issue_key(&user, named("ci", &["all", "workspace:read", "coder:all"]))
        .await
        .expect("issued");
    let key = f
        .store
        .key(&token[..10])
        .await
        .unwrap()
        .expect("stored under its id");
    assert_eq!(*key.scopes, ["coder:all", "workspace:read"]);
    assert_eq!(key.login_type, LoginType::Token);
    assert_eq!(key.lifetime_seconds, 3600);
    assert_eq!(key.last_used, OffsetDateTime::UNIX_EPOCH);
    assert_eq!(key.hashed_secret, {
        let t = Token::parse(&token).expect("well formed");
        token::hash_secret(t.secret())
    });
    let err = f
        .users()
        .issue_key(&user, named("ci", &[]))
        .await
        .expect_err("name taken");
    assert!(
        matches!(err, UserError::TokenNameTaken(ref n) if n == "ci"),
        "{err:?}"
    );
    let err = f
        .users()
        .issue_key(&user, named("other", &["*:*"]))
        .await
        .expect_err("not external");
    assert_eq!(
        err.to_string(),
        "invalid or unsupported API key scope: \"*:*\""
    );
}
