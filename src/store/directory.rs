//! The user directory: which users a [`UserQuery`] selects, in Coder's order, one page at a
//! time ([`Store::list_users`](super::Store::list_users)). The meaning of a query is written
//! once here, and both backends answer it the same way: the memory backend by filtering
//! every user, the Redis backend through the directory index (see `redis/directory.rs` and
//! `docs/directory.md` for what each index costs).
//!
//! Coder's `GetUsers` (`coderd/database/queries/users.sql`) orders by lower-cased username;
//! `after_id` keeps the users whose lower-cased username comes after that user's (none when
//! that user does not exist); `count` is the number selected before `offset` and `limit`, and
//! 0 when the page is empty (Postgres computes it with a window over the rows returned).

use uuid::Uuid;

use super::{fold, LoginType, User, UserStatus};

/// The role every user holds implicitly: a role filter made only of it selects everyone.
const MEMBER: &str = "member";

/// What [`Store::list_users`](super::Store::list_users) selects. Empty lists select all.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UserQuery {
    /// Free text: the lower-cased username or email contains it.
    pub search: String,
    /// The username, compared case-insensitively.
    pub username: Option<String>,
    /// The email, compared case-insensitively.
    pub email: Option<String>,
    /// Any of these statuses.
    pub status: Vec<UserStatus>,
    /// Any of these stored site roles (`member` alone selects everyone, as in Coder).
    pub roles: Vec<String>,
    /// Any of these login types.
    pub login_types: Vec<LoginType>,
    /// Only these users (what the caller may see); `None` for no restriction.
    pub only: Option<Vec<Uuid>>,
    /// Only users after this one in the order; none at all when it does not exist.
    pub after_id: Option<Uuid>,
    /// How many selected users to skip.
    pub offset: usize,
    /// At most this many users; 0 for all.
    pub limit: usize,
}

/// One page of a [`UserQuery`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UserPage {
    /// The users of the page, in order.
    pub users: Vec<User>,
    /// How many users the query selects before `offset` and `limit`; 0 when `users` is empty.
    pub count: u64,
}

// === impl UserPage ===

impl UserPage {
    /// A page of `users` out of `count` selected; the count is 0 when the page is empty, as
    /// Coder's is (see the module doc).
    pub(super) fn new(users: Vec<User>, count: u64) -> Self {
        UserPage {
            count: if users.is_empty() { 0 } else { count },
            users,
        }
    }
}

// === impl UserQuery ===

impl UserQuery {
    /// Whether `user` passes the filters (not the cursor, the restriction or the paging).
    pub fn matches(&self, user: &User) -> bool {
        let (username, email) = (fold(&user.username), fold(&user.email));
        (self.search.is_empty()
            || username.contains(&fold(&self.search))
            || email.contains(&fold(&self.search)))
            && self.username.as_ref().is_none_or(|u| fold(u) == username)
            && self.email.as_ref().is_none_or(|e| fold(e) == email)
            && (self.status.is_empty() || self.status.contains(&user.status))
            && (self.role_filter().is_empty()
                || self.role_filter().iter().any(|r| user.roles.contains(r)))
            && (self.login_types.is_empty() || self.login_types.contains(&user.login_type))
    }

    /// The roles to filter by: none when every role asked for is `member`.
    pub(super) fn role_filter(&self) -> &[String] {
        if self.roles.iter().all(|r| r == MEMBER) {
            &[]
        } else {
            &self.roles
        }
    }

    /// Cuts the page out of the users it selects (`selected`, in order, after the cursor).
    pub(super) fn page(&self, selected: Vec<User>) -> UserPage {
        let count = selected.len() as u64;
        UserPage::new(self.window(selected), count)
    }

    /// The `offset`/`limit` window of `selected`.
    pub(super) fn window<T>(&self, selected: Vec<T>) -> Vec<T> {
        let limit = if self.limit == 0 {
            usize::MAX
        } else {
            self.limit
        };
        selected.into_iter().skip(self.offset).take(limit).collect()
    }

    /// Answers the query from `users`, the whole set it may select from: filters, orders,
    /// applies the cursor and the restriction, and pages. `cursor` is the user `after_id`
    /// names, looked up by the caller (`None` when it does not exist).
    pub(super) fn answer(&self, users: Vec<User>, cursor: Option<&User>) -> UserPage {
        if self.after_id.is_some() && cursor.is_none() {
            return UserPage::default();
        }
        let after = cursor.map(|c| fold(&c.username));
        let mut selected: Vec<User> = users
            .into_iter()
            .filter(|u| self.only.as_ref().is_none_or(|only| only.contains(&u.id)))
            .filter(|u| after.as_ref().is_none_or(|a| fold(&u.username) > *a))
            .filter(|u| self.matches(u))
            .collect();
        selected.sort_by_cached_key(|u| fold(&u.username));
        self.page(selected)
    }
}
