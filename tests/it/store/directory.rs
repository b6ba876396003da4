//! The user directory (`Store::list_users`): Coder's filters, order and paging, the same on
//! every backend, and kept in step with every kind of user write.

use portcullis::store::{UserPage, UserQuery};

use super::*;

/// Five users, created out of order: `(username, email, status, login type, roles)`.
const PEOPLE: [(&str, &str, UserStatus, LoginType, &[&str]); 5] = [
    (
        "dave",
        "d@corp.example",
        UserStatus::Active,
        LoginType::Password,
        &[],
    ),
    (
        "Alice",
        "alice@example.com",
        UserStatus::Active,
        LoginType::Password,
        &["owner"],
    ),
    (
        "carol",
        "carol@corp.example",
        UserStatus::Suspended,
        LoginType::Oidc,
        &["auditor"],
    ),
    (
        "bob-x",
        "BOB@example.com",
        UserStatus::Dormant,
        LoginType::Oidc,
        &[],
    ),
    (
        "bob",
        "robert@example.org",
        UserStatus::Active,
        LoginType::Github,
        &["auditor", "owner"],
    ),
];

async fn people(store: &Store) -> Vec<User> {
    let mut made = Vec::new();
    for (username, email, status, login_type, roles) in PEOPLE {
        let mut u = user(email, username);
        u.status = status;
        u.login_type = login_type;
        u.roles = roles.iter().map(|r| (*r).to_owned()).collect();
        store.create_user(&u).await.expect("create");
        made.push(u);
    }
    made
}

fn names(page: &UserPage) -> Vec<&str> {
    page.users.iter().map(|u| u.username.as_str()).collect()
}

async fn list(store: &Store, query: UserQuery) -> UserPage {
    store.list_users(&query).await.expect("list users")
}

pub(super) async fn the_directory_filters_orders_and_pages_as_coder_does(store: Store) {
    let made = people(&store).await;
    let id = |name: &str| made.iter().find(|u| u.username == name).expect("made").id;
    let all = list(&store, UserQuery::default()).await;
    assert_eq!(names(&all), ["Alice", "bob", "bob-x", "carol", "dave"]);
    assert_eq!(all.count, 5);
    assert_eq!(all.users[0], made[1], "the whole record comes back");

    // Paging: limit and offset; the count is of everything selected.
    let page = list(
        &store,
        UserQuery {
            limit: 2,
            offset: 1,
            ..UserQuery::default()
        },
    )
    .await;
    assert_eq!((names(&page), page.count), (vec!["bob", "bob-x"], 5));
    // A page past the end is empty and, as Coder's window count, counts 0.
    let page = list(
        &store,
        UserQuery {
            offset: 5,
            ..UserQuery::default()
        },
    )
    .await;
    assert_eq!((names(&page), page.count), (vec![], 0));
    // after_id: the users after that one, counted from there; an unknown id selects nobody.
    let q = UserQuery {
        after_id: Some(id("bob")),
        limit: 1,
        ..UserQuery::default()
    };
    let page = list(&store, q).await;
    assert_eq!((names(&page), page.count), (vec!["bob-x"], 3));
    let q = UserQuery {
        after_id: Some(Uuid::new_v4()),
        ..UserQuery::default()
    };
    assert_eq!(list(&store, q).await, UserPage::default());

    // Filters, alone and together.
    let cases: Vec<(UserQuery, Vec<&str>)> = vec![
        (
            UserQuery {
                status: vec![UserStatus::Active],
                ..UserQuery::default()
            },
            vec!["Alice", "bob", "dave"],
        ),
        (
            UserQuery {
                status: vec![UserStatus::Dormant, UserStatus::Suspended],
                ..UserQuery::default()
            },
            vec!["bob-x", "carol"],
        ),
        (
            UserQuery {
                roles: vec!["owner".into()],
                ..UserQuery::default()
            },
            vec!["Alice", "bob"],
        ),
        (
            UserQuery {
                roles: vec!["auditor".into(), "owner".into()],
                ..UserQuery::default()
            },
            vec!["Alice", "bob", "carol"],
        ),
        (
            UserQuery {
                roles: vec!["member".into()],
                ..UserQuery::default()
            },
            vec!["Alice", "bob", "bob-x", "carol", "dave"],
        ),
        (
            UserQuery {
                roles: vec!["template-admin".into()],
                ..UserQuery::default()
            },
            vec![],
        ),
        (
            UserQuery {
                login_types: vec![LoginType::Oidc],
                ..UserQuery::default()
            },
            vec!["bob-x", "carol"],
        ),
        (
            UserQuery {
                status: vec![UserStatus::Active],
                roles: vec!["auditor".into()],
                login_types: vec![LoginType::Github],
                ..UserQuery::default()
            },
            vec!["bob"],
        ),
        (
            UserQuery {
                status: vec![UserStatus::Active],
                login_types: vec![LoginType::Oidc],
                ..UserQuery::default()
            },
            vec![],
        ),
        // Free text: a substring of the username or the email, any case.
        (
            UserQuery {
                search: "bob".into(),
                ..UserQuery::default()
            },
            vec!["bob", "bob-x"],
        ),
        (
            UserQuery {
                search: "CORP".into(),
                ..UserQuery::default()
            },
            vec!["carol", "dave"],
        ),
        (
            UserQuery {
                search: "corp".into(),
                status: vec![UserStatus::Suspended],
                ..UserQuery::default()
            },
            vec!["carol"],
        ),
        (
            UserQuery {
                search: "nobody".into(),
                ..UserQuery::default()
            },
            vec![],
        ),
        // username: and email: name one user, any case.
        (
            UserQuery {
                username: Some("ALICE".into()),
                ..UserQuery::default()
            },
            vec!["Alice"],
        ),
        (
            UserQuery {
                email: Some("bob@EXAMPLE.com".into()),
                ..UserQuery::default()
            },
            vec!["bob-x"],
        ),
        (
            UserQuery {
                email: Some("bob@example.com".into()),
                status: vec![UserStatus::Active],
                ..UserQuery::default()
            },
            vec![],
        ),
        (
            UserQuery {
                only: Some(vec![id("dave"), id("bob")]),
                ..UserQuery::default()
            },
            vec!["bob", "dave"],
        ),
        (
            UserQuery {
                only: Some(vec![id("dave"), id("bob")]),
                status: vec![UserStatus::Dormant],
                ..UserQuery::default()
            },
            vec![],
        ),
    ];
    for (query, want) in cases {
        let page = list(&store, query.clone()).await;
        assert_eq!(names(&page), want, "{query:?}");
        assert_eq!(page.count, want.len() as u64, "{query:?}");
    }
    // Paging within a filter and within a search.
    let q = UserQuery {
        status: vec![UserStatus::Active],
        offset: 1,
        limit: 1,
        ..UserQuery::default()
    };
    let page = list(&store, q).await;
    assert_eq!((names(&page), page.count), (vec!["bob"], 3));
    let q = UserQuery {
        search: "example".into(),
        after_id: Some(id("Alice")),
        limit: 2,
        ..UserQuery::default()
    };
    let page = list(&store, q).await;
    assert_eq!((names(&page), page.count), (vec!["bob", "bob-x"], 4));
}

pub(super) async fn the_directory_follows_every_kind_of_user_write(store: Store) {
    let made = people(&store).await;
    let (alice, carol) = (made[1].id, made[2].id);
    let active = || UserQuery {
        status: vec![UserStatus::Active],
        ..UserQuery::default()
    };
    // Read once first, so that on Redis the index exists before the writes (a first query
    // builds it from the records, which would hide a write that forgot it).
    assert_eq!(
        names(&list(&store, active()).await),
        ["Alice", "bob", "dave"]
    );

    store
        .modify_user(carol, |u| {
            u.status = UserStatus::Active;
            u.roles = vec!["template-admin".into()];
            true
        })
        .await
        .expect("modify")
        .expect("carol");
    assert_eq!(
        names(&list(&store, active()).await),
        ["Alice", "bob", "carol", "dave"]
    );
    let q = UserQuery {
        roles: vec!["auditor".into()],
        ..UserQuery::default()
    };
    assert_eq!(names(&list(&store, q).await), ["bob"]);
    let q = UserQuery {
        roles: vec!["template-admin".into()],
        ..UserQuery::default()
    };
    assert_eq!(names(&list(&store, q).await), ["carol"]);

    // A new username moves the user in the order and in searches.
    let mut renamed = store.user(alice).await.expect("read").expect("alice");
    renamed.username = "zed".into();
    renamed.email = "zed@example.net".into();
    assert!(replace_user(&store, &renamed).await.expect("update"));
    assert_eq!(
        names(&list(&store, active()).await),
        ["bob", "carol", "dave", "zed"]
    );
    let q = UserQuery {
        search: "alice".into(),
        ..UserQuery::default()
    };
    assert_eq!(list(&store, q).await, UserPage::default());
    let q = UserQuery {
        search: "example.net".into(),
        ..UserQuery::default()
    };
    assert_eq!(names(&list(&store, q).await), ["zed"]);
    // A refused rename leaves the directory as it was.
    renamed.username = "bob".into();
    assert!(replace_user(&store, &renamed).await.is_err());
    assert_eq!(
        names(&list(&store, active()).await),
        ["bob", "carol", "dave", "zed"]
    );

    store.delete_user(alice).await.expect("delete");
    let all = list(&store, UserQuery::default()).await;
    assert_eq!(
        (names(&all), all.count),
        (vec!["bob", "bob-x", "carol", "dave"], 4)
    );
    let q = UserQuery {
        roles: vec!["owner".into()],
        ..UserQuery::default()
    };
    assert_eq!(names(&list(&store, q).await), ["bob"]);
}

/// Writers racing on one user, each changing a different indexed field: once they are done,
/// the directory answers from the record as it ended, whatever order their index updates ran in.
pub(super) async fn concurrent_writes_leave_the_directory_as_the_record_is(store: Store) {
    let made = people(&store).await;
    let dave = made[0].id;
    for round in 0..8 {
        let statuses = [
            UserStatus::Dormant,
            UserStatus::Suspended,
            UserStatus::Active,
        ];
        let writers = (0..6).map(|i| {
            let store = store.clone();
            async move {
                store
                    .modify_user(dave, |u| {
                        if i % 2 == 0 {
                            u.status = statuses[(i + round) % 3];
                        } else {
                            u.roles = vec![format!("role-{}", (i + round) % 4)];
                        }
                        true
                    })
                    .await
                    .expect("modify")
            }
        });
        futures_util::future::join_all(writers).await;
        let now = store.user(dave).await.expect("read").expect("dave");
        let q = UserQuery {
            status: vec![now.status],
            roles: now.roles.clone(),
            login_types: vec![now.login_type],
            ..UserQuery::default()
        };
        assert_eq!(
            names(&list(&store, q).await),
            ["dave"],
            "round {round}: {now:?}"
        );
        for other in statuses.iter().filter(|s| **s != now.status) {
            let q = UserQuery {
                status: vec![*other],
                roles: now.roles.clone(),
                ..UserQuery::default()
            };
            assert_eq!(list(&store, q).await, UserPage::default(), "round {round}");
        }
    }
}

pub(super) async fn organizations_are_renamed_and_deleted_with_their_memberships(store: Store) {
    let home = org("home", true);
    let acme = org("acme", false);
    let other = org("other", false);
    for o in [&home, &acme, &other] {
        store.create_org(o).await.expect("create org");
    }
    let alice = Uuid::new_v4();
    for o in [&home, &acme] {
        store
            .add_member(&member(alice, o.id, &[]))
            .await
            .expect("add");
    }

    // A rename moves the name index; a taken name is refused and changes nothing.
    let mut renamed = acme.clone();
    renamed.name = "Acme-2".into();
    renamed.is_default = true;
    assert!(store.update_org(&renamed).await.expect("rename"));
    let stored = store.org(acme.id).await.expect("read").expect("acme");
    assert_eq!(stored.name, "Acme-2");
    assert!(
        !stored.is_default,
        "a rename cannot make an organization the default"
    );
    assert_eq!(store.org_by_name("acme").await.expect("by name"), None);
    assert_eq!(
        store.org_by_name("ACME-2").await.expect("by name"),
        Some(stored.clone())
    );
    let mut clash = stored.clone();
    clash.name = "OTHER".into();
    assert!(matches!(
        store.update_org(&clash).await,
        Err(StoreError::Conflict { field: "name" })
    ));
    assert_eq!(
        store.org(acme.id).await.expect("read"),
        Some(stored.clone())
    );
    assert_eq!(
        store.org_by_name("other").await.expect("by name"),
        Some(other.clone())
    );
    let mut ghost = org("ghost", false);
    assert!(!store
        .update_org(&ghost)
        .await
        .expect("update a missing org"));
    ghost.name = "acme-2".into();
    assert!(!store
        .update_org(&ghost)
        .await
        .expect("update a missing org"));

    // A deletion takes the memberships and frees the name.
    assert_eq!(
        store.delete_org(acme.id).await.expect("delete"),
        Some(vec![alice])
    );
    assert_eq!(store.delete_org(acme.id).await.expect("delete again"), None);
    assert_eq!(store.org(acme.id).await.expect("read"), None);
    assert_eq!(store.org_by_name("acme-2").await.expect("by name"), None);
    assert_eq!(
        store.membership(alice, acme.id).await.expect("membership"),
        None
    );
    let left: Vec<Uuid> = store
        .memberships_of(alice)
        .await
        .expect("memberships")
        .into_iter()
        .map(|m| m.organization_id)
        .collect();
    assert_eq!(left, vec![home.id]);
    assert_eq!(store.orgs().await.expect("orgs").len(), 2);
    store
        .create_org(&org("acme-2", false))
        .await
        .expect("the name is free again");
}
