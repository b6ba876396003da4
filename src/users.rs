//! User management: creating users, setting passwords, suspending and re-activating, deleting,
//! and issuing API keys. The API (`api::users`, `api::password`, `api::tokens`) and the command
//! line (`portcullis user …`, `portcullis token create`) both call these, so both apply the
//! same rules and revoke the same way.
//!
//! Who may do what is not decided here. The API checks its caller first
//! (`api::users::may`); the command line is the operator, allowed whatever its store access
//! allows.
//!
//! # Revocation
//! A change that must end sessions (a new password, a suspension, a deletion) is written to the
//! store first; then an [`Invalidation`] is published, which every replica on the same store
//! applies to its key cache at once. When a [`Users`] is given this process's cache, the cache
//! is also cleared directly, so the caller's next request sees the change even if publishing
//! failed. A change that takes access away answers success only once its invalidation is
//! published: when publishing fails, the change is stored but the call answers an error (other
//! replicas would serve the old state until their cache expires), and trying it again publishes
//! again. After a change that grants access, a failed publication is only logged (target
//! `portcullis::users`).

use std::sync::Arc;
use std::time::Duration;

use time::OffsetDateTime;
use uuid::Uuid;

use crate::auth::session::KEY_RETENTION;
use crate::auth::token::{self, Token};
use crate::auth::{PasswordError, PasswordPolicy, Passwords, UserInfo};
use crate::coder::go_duration;
use crate::coder::tag_failed;
use crate::config::TokensConfig;
use crate::rbac::roles::{explicit_site_roles, OWNER};
use crate::rbac::scopes as scope;
use crate::store::cache::KeyCache;
use crate::store::{
    AllowListEntry, ApiKey, Invalidation, LoginType, Membership, Organization, Store, StoreError,
    User, UserStatus,
};

/// `roles` without repeats and without the `implicit` one; the first that `known` refuses is
/// an error.
fn clean_roles(
    roles: &[String],
    known: impl Fn(&str) -> bool,
    implicit: &str,
    unknown: fn(String) -> UserError,
) -> Result<Vec<String>, UserError> {
    let mut kept: Vec<String> = Vec::with_capacity(roles.len());
    for role in roles {
        if role == implicit || kept.contains(role) {
            continue;
        }
        if !known(role) {
            return Err(unknown(role.clone()));
        }
        kept.push(role.clone());
    }
    Ok(kept)
}

/// The user `text` names: a user id, or else a username (case-insensitively). The one
/// resolution of a `{user}` (the route policy's `{owner}`, the API's `{user}`; `me` is the
/// caller's and resolved by whoever knows the caller).
pub async fn user_by_id_or_name(store: &Store, text: &str) -> Result<Option<User>, StoreError> {
    match text.parse::<Uuid>() {
        Ok(id) => store.user(id).await,
        Err(_) => store.user_by_username(text).await,
    }
}

/// The organization `text` names: an id, `default` (the default organization), or else a
/// name. The one resolution of an `{organization}` (the route policy's `{org}` and the API's).
pub async fn org_by_id_or_name(
    store: &Store,
    text: &str,
) -> Result<Option<Organization>, StoreError> {
    match (text, text.parse::<Uuid>()) {
        (_, Ok(id)) => store.org(id).await,
        ("default", _) => store.default_org().await,
        (name, _) => store.org_by_name(name).await,
    }
}

/// A user to create.
#[derive(Clone)]
pub struct NewUser {
    /// Email address; unique case-insensitively.
    pub email: String,
    /// Username (Coder's rule: 1-32 of `[a-zA-Z0-9]`, single `-` between groups).
    pub username: String,
    /// Display name (may be empty).
    pub name: String,
    /// The password: required when `login_type` is `Password`, refused otherwise.
    pub password: Option<String>,
    /// How the user logs in.
    pub login_type: LoginType,
    /// The initial status (the API's default is `Dormant`, until the first login).
    pub status: UserStatus,
    /// Site roles, each one of [`explicit_site_roles`].
    pub roles: Vec<String>,
    /// Organizations to join; empty (or the nil UUID) means the default organization, which is
    /// created if there is none yet.
    pub organization_ids: Vec<Uuid>,
}

/// An API key to issue.
#[derive(Debug, Clone)]
pub struct NewKey {
    /// `Password` for sessions and `POST /users/{user}/keys`, `Token` for named tokens.
    pub login_type: LoginType,
    /// How long the key lasts (and the window of its sliding refresh).
    pub lifetime: Duration,
    /// Scope names, as given: aliases are resolved and anything not external is refused.
    /// Empty means `coder:all`.
    pub scopes: Vec<String>,
    /// The token's name; empty for sessions. Unique per user when not empty.
    pub token_name: String,
    /// The client address recorded on the key (empty when there is none, as on the command
    /// line).
    pub ip_address: String,
    /// The allow list, normalized (see [`crate::http::api::tokens`]); empty means `*:*`.
    pub allow_list: Vec<AllowListEntry>,
    /// The latest the key may ever expire (a token made with a restricted key); the expiry is
    /// capped at it, now and by every sliding refresh.
    pub not_after: Option<OffsetDateTime>,
}

/// User operations on one store. Cheap: it only borrows.
#[derive(Clone, Copy)]
pub struct Users<'a> {
    store: &'a Store,
    passwords: &'a Passwords,
    tokens: &'a TokensConfig,
    policy: &'a PasswordPolicy,
    cache: Option<&'a KeyCache>,
}

// === impl Users ===

impl std::fmt::Debug for Users<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Users")
            .field("store", self.store)
            .field("cache", &self.cache.is_some())
            .finish_non_exhaustive()
    }
}

impl<'a> Users<'a> {
    /// Operations on `store` without a local cache (the command line), judging new passwords
    /// by Coder's rule alone until [`with_policy`](Self::with_policy) says otherwise.
    pub fn new(store: &'a Store, passwords: &'a Passwords, tokens: &'a TokensConfig) -> Self {
        Users {
            store,
            passwords,
            tokens,
            policy: &PasswordPolicy::CODER,
            cache: None,
        }
    }

    /// The same operations, judging new passwords by `policy` (`[passwords]`).
    pub fn with_policy(self, policy: &'a PasswordPolicy) -> Self {
        Users { policy, ..self }
    }

    /// The same operations, clearing `cache` (a running Portcullis's own) directly too.
    pub fn with_cache(self, cache: &'a KeyCache) -> Self {
        Users {
            cache: Some(cache),
            ..self
        }
    }

    /// The user named by `who`: a user id, an email (anything with an `@`) or a username;
    /// emails and usernames match case-insensitively.
    pub async fn find(&self, who: &str) -> Result<Option<User>, StoreError> {
        if who.contains('@') && who.parse::<Uuid>().is_err() {
            return self.store.user_by_email(who).await;
        }
        user_by_id_or_name(self.store, who).await
    }

    /// The default organization, created (as Coder's `coder`) when there is none yet. Of
    /// concurrent creators one wins and the others use its organization.
    pub async fn default_org(&self) -> Result<Organization, UserError> {
        if let Some(org) = self.store.default_org().await? {
            return Ok(org);
        }
        let now = OffsetDateTime::now_utc();
        let org = Organization {
            id: Uuid::new_v4(),
            name: "coder".into(),
            display_name: "Coder".into(),
            description: "Builtin default organization.".into(),
            is_default: true,
            created_at: now,
            updated_at: now,
        };
        match self.store.create_org(&org).await {
            Ok(()) => Ok(org),
            Err(StoreError::Conflict { .. }) => self
                .store
                .default_org()
                .await?
                .ok_or_else(|| StoreError::corrupt("a default organization vanished"))
                .map_err(UserError::from),
            Err(e) => Err(e.into()),
        }
    }

    /// Creates a user (spec §7.8) and its memberships, and returns both.
    ///
    /// # Errors
    /// [`UserError::Invalid`] for a bad email, username or name, or a missing password;
    /// [`UserError::PasswordNotAllowed`], [`UserError::UnknownRole`],
    /// [`UserError::Conflict`] when the email or username is taken, [`UserError::NoSuchOrg`],
    /// [`UserError::WeakPassword`], and store or hashing failures.
    pub async fn create(&self, new: NewUser) -> Result<(User, Vec<Membership>), UserError> {
        let mut invalid = Vec::new();
        validate_email(&new.email, &mut invalid);
        validate_username(&new.username, &mut invalid);
        validate_name(&new.name, &mut invalid);
        let password = match (new.login_type, new.password.as_deref()) {
            (LoginType::Password, None | Some("")) => {
                invalid.push(tag_failed("password", "required", ""));
                None
            }
            (LoginType::Password, Some(p)) => Some(p),
            (_, None | Some("")) => None,
            (other, Some(_)) => return Err(UserError::PasswordNotAllowed(other)),
        };
        if !invalid.is_empty() {
            return Err(UserError::Invalid(invalid));
        }
        let roles = clean_roles(
            &new.roles,
            |r| explicit_site_roles().any(|role| role.name == r),
            "",
            UserError::UnknownRole,
        )?;
        if self.store.user_by_email(&new.email).await?.is_some() {
            return Err(UserError::Conflict("email"));
        }
        if self.store.user_by_username(&new.username).await?.is_some() {
            return Err(UserError::Conflict("username"));
        }
        let orgs = self.organizations(&new.organization_ids).await?;
        let hashed_password = match password {
            Some(p) => {
                let user = UserInfo {
                    username: &new.username,
                    email: &new.email,
                };
                if let Some(weak) = self.password_weakness(p, Some(user)) {
                    return Err(UserError::WeakPassword(weak));
                }
                Some(self.passwords.hash(p).await?)
            }
            None => None,
        };
        let now = OffsetDateTime::now_utc();
        let user = User {
            id: Uuid::new_v4(),
            username: new.username,
            email: new.email,
            name: new.name,
            avatar_url: String::new(),
            created_at: now,
            updated_at: now,
            last_seen_at: now,
            status: new.status,
            login_type: new.login_type,
            hashed_password,
            roles,
            theme_preference: String::new(),
        };
        // The look-ups above give the usual answer; the store's own uniqueness settles a race.
        self.store.create_user(&user).await.map_err(|e| match e {
            StoreError::Conflict { field } => UserError::Conflict(field),
            other => other.into(),
        })?;
        let mut memberships = Vec::with_capacity(orgs.len());
        for org in orgs {
            let membership = Membership {
                user_id: user.id,
                organization_id: org,
                roles: Vec::new(),
                created_at: now,
                updated_at: now,
            };
            self.store.add_member(&membership).await?;
            memberships.push(membership);
        }
        Ok((user, memberships))
    }

    /// The organizations a new user joins: the default one for an empty list or a nil id.
    async fn organizations(&self, ids: &[Uuid]) -> Result<Vec<Uuid>, UserError> {
        let mut orgs: Vec<Uuid> = Vec::new();
        if ids.is_empty() {
            orgs.push(self.default_org().await?.id);
        }
        for id in ids {
            let org = if id.is_nil() {
                self.default_org().await?.id
            } else {
                self.store
                    .org(*id)
                    .await?
                    .ok_or(UserError::NoSuchOrg(*id))?
                    .id
            };
            if !orgs.contains(&org) {
                orgs.push(org);
            }
        }
        Ok(orgs)
    }

    /// Sets a password-login user's password and revokes every API key of the user (spec §7.7:
    /// every session and token ends), publishing [`Invalidation::User`]. Returns how many keys
    /// were revoked. Checking an old password is the caller's business.
    ///
    /// # Errors
    /// [`UserError::NoSuchUser`], [`UserError::NotPasswordUser`], [`UserError::Invalid`] for
    /// an empty password, [`UserError::WeakPassword`], [`UserError::SamePassword`] (as Coder,
    /// the current password cannot be set again), and store or hashing failures.
    pub async fn set_password(&self, id: Uuid, password: &str) -> Result<usize, UserError> {
        let user = self.store.user(id).await?.ok_or(UserError::NoSuchUser)?;
        if user.login_type != LoginType::Password {
            return Err(UserError::NotPasswordUser);
        }
        if password.is_empty() {
            return Err(UserError::Invalid(vec![tag_failed(
                "password", "required", "",
            )]));
        }
        let info = UserInfo {
            username: &user.username,
            email: &user.email,
        };
        if let Some(weak) = self.password_weakness(password, Some(info)) {
            return Err(UserError::WeakPassword(weak));
        }
        if self.is_current_password(&user, password).await? {
            // Perhaps set by an earlier call that could not tell the other replicas that the
            // user's keys are gone: tell them.
            self.forget(Invalidation::User(id)).await?;
            return Err(UserError::SamePassword);
        }
        self.replace_password(user, password).await
    }

    /// Whether `password` is `user`'s current password (spec §7.7, §4.2: a new password must
    /// differ). A stored hash that cannot be checked matches nothing.
    ///
    /// # Errors
    /// Hashing failures ([`PasswordError::Busy`] when the hashing queue is full).
    pub async fn is_current_password(
        &self,
        user: &User,
        password: &str,
    ) -> Result<bool, UserError> {
        let Some(current) = user.hashed_password.as_deref().filter(|h| !h.is_empty()) else {
            return Ok(false);
        };
        match self.passwords.verify(password, current).await {
            Ok(v) => Ok(v.ok),
            // A stored hash that cannot be checked cannot match either; it is replaced.
            Err(PasswordError::Malformed(_)) => Ok(false),
            Err(e) => Err(e.into()),
        }
    }

    /// Stores `password`'s hash for `user`, then deletes every API key of the user (even when
    /// storing the hash failed) and publishes [`Invalidation::User`], so that every session and
    /// token ends on every replica. Returns how many keys were revoked. No check is made: callers judge the
    /// password first ([`Users::set_password`], the one-time passcode change).
    ///
    /// # Errors
    /// [`UserError::NoSuchUser`] when the user is gone, and store or hashing failures.
    pub async fn replace_password(&self, user: User, password: &str) -> Result<usize, UserError> {
        let id = user.id;
        let hashed = self.passwords.hash(password).await?;
        let now = OffsetDateTime::now_utc();
        let stored = self
            .store
            .modify_user(id, |user| {
                user.hashed_password = Some(hashed.clone());
                user.updated_at = now;
                true
            })
            .await;
        // The keys go even when the hash write failed: it may still have happened, and a retry
        // would then be refused as the current password, leaving the keys alive.
        let revoked = self
            .revoking(Invalidation::User(id), self.store.delete_keys_of(id))
            .await;
        if stored?.is_none() {
            return Err(UserError::NoSuchUser);
        }
        Ok(revoked?.len())
    }

    /// Sets a user's status and publishes [`Invalidation::User`], so that a suspension stops
    /// every session of the user at once (they then get 401, spec §8.4) and an activation is
    /// seen at once. Returns the updated user.
    ///
    /// # Errors
    /// [`UserError::NoSuchUser`] and store failures.
    pub async fn set_status(&self, id: Uuid, status: UserStatus) -> Result<User, UserError> {
        let now = OffsetDateTime::now_utc();
        let write = self.store.modify_user(id, |user| {
            let change = user.status != status;
            if change {
                user.status = status;
                user.updated_at = now;
            }
            change
        });
        let user = self
            .revoking(Invalidation::User(id), write)
            .await?
            .ok_or(UserError::NoSuchUser)?;
        Ok(user)
    }

    /// Changes a user's username and display name (`PUT /users/{user}/profile`) and publishes
    /// [`Invalidation::User`], so that every replica's sessions of the user carry the new
    /// names at once (the sessions themselves stay valid: keys name the user by id). A new
    /// username moves the uniqueness index; both are changed on the record as it is stored
    /// ([`Store::update_user`]), so a suspension racing the change is kept.
    ///
    /// # Errors
    /// [`UserError::Conflict`] (`username`) when another user has the username,
    /// [`UserError::NoSuchUser`] and store failures.
    pub async fn update_profile(
        &self,
        id: Uuid,
        username: &str,
        name: &str,
    ) -> Result<User, UserError> {
        let now = OffsetDateTime::now_utc();
        let write = self.store.update_user(id, |user| {
            let change = user.username != username || user.name != name;
            if change {
                user.username = username.to_owned();
                user.name = name.to_owned();
                user.updated_at = now;
            }
            change
        });
        match self.revoking(Invalidation::User(id), write).await {
            Ok(Some(user)) => Ok(user),
            Ok(None) => Err(UserError::NoSuchUser),
            Err(StoreError::Conflict { field }) => Err(UserError::Conflict(field)),
            Err(e) => Err(e.into()),
        }
    }

    /// Replaces a user's stored site roles (`member` is implicit and dropped; repeats removed)
    /// and publishes [`Invalidation::User`], so every replica sees the change at once.
    ///
    /// # Errors
    /// [`UserError::UnknownRole`], [`UserError::NoSuchUser`] and store failures.
    pub async fn set_roles(&self, id: Uuid, roles: &[String]) -> Result<User, UserError> {
        let roles = clean_roles(
            roles,
            |r| explicit_site_roles().any(|role| role.name == r),
            crate::rbac::roles::MEMBER,
            UserError::UnknownRole,
        )?;
        let now = OffsetDateTime::now_utc();
        let write = self.store.modify_user(id, |user| {
            user.roles.clone_from(&roles);
            user.updated_at = now;
            true
        });
        let user = self
            .revoking(Invalidation::User(id), write)
            .await?
            .ok_or(UserError::NoSuchUser)?;
        Ok(user)
    }

    /// Replaces a membership's stored organization roles (`organization-member` is implicit
    /// and dropped) and publishes [`Invalidation::User`] for the member.
    ///
    /// # Errors
    /// [`UserError::UnknownOrgRole`] and store failures.
    pub async fn set_org_roles(
        &self,
        mut membership: Membership,
        roles: &[String],
    ) -> Result<Membership, UserError> {
        use crate::rbac::roles::{self, Kind};
        membership.roles = clean_roles(
            roles,
            |r| roles::find(r, Kind::Org).is_some(),
            roles::ORG_MEMBER,
            UserError::UnknownOrgRole,
        )?;
        membership.updated_at = OffsetDateTime::now_utc();
        let what = Invalidation::User(membership.user_id);
        self.revoking(what, self.store.add_member(&membership))
            .await?;
        Ok(membership)
    }

    /// Makes `user` a member of `org` with no stored roles; [`UserError::Conflict`] (`member`)
    /// when it already is one.
    pub async fn add_member(&self, user: Uuid, org: Uuid) -> Result<Membership, UserError> {
        if self.store.membership(user, org).await?.is_some() {
            return Err(UserError::Conflict("member"));
        }
        let now = OffsetDateTime::now_utc();
        let membership = Membership {
            user_id: user,
            organization_id: org,
            roles: Vec::new(),
            created_at: now,
            updated_at: now,
        };
        self.store.add_member(&membership).await?;
        self.invalidate(Invalidation::User(user)).await;
        Ok(membership)
    }

    /// Ends `user`'s membership of `org`; false when there was none.
    pub async fn remove_member(&self, user: Uuid, org: Uuid) -> Result<bool, UserError> {
        let removed = self
            .revoking(
                Invalidation::User(user),
                self.store.remove_member(user, org),
            )
            .await?;
        Ok(removed)
    }

    /// Deletes a user with every API key and membership, and publishes
    /// [`Invalidation::User`] so that every replica drops the user's cached keys.
    ///
    /// # Errors
    /// [`UserError::NoSuchUser`] and store failures.
    pub async fn delete(&self, id: Uuid) -> Result<(), UserError> {
        if self.store.user(id).await?.is_none() {
            // Perhaps deleted by an earlier call that could not tell the other replicas: tell
            // them.
            self.forget(Invalidation::User(id)).await?;
            return Err(UserError::NoSuchUser);
        }
        self.revoking(Invalidation::User(id), self.store.delete_user(id))
            .await?;
        Ok(())
    }

    /// The lifetime of a new token for `user`: `tokens.default_lifetime` when none (or zero) is
    /// asked for; otherwise the request, at most `tokens.max_lifetime`, or
    /// `tokens.max_admin_lifetime` when the user holds `owner` (spec §7.3).
    ///
    /// # Errors
    /// [`UserError::Lifetime`] with Coder's detail.
    pub fn token_lifetime(
        &self,
        user: &User,
        requested: Option<Duration>,
    ) -> Result<Duration, UserError> {
        let Some(lifetime) = requested.filter(|d| !d.is_zero()) else {
            return Ok(self.tokens.default_lifetime);
        };
        let max = self.max_token_lifetime(user);
        if lifetime > max {
            return Err(UserError::Lifetime(format!(
                "lifetime must be less than {}",
                go_duration(max)
            )));
        }
        Ok(lifetime)
    }

    /// The longest token `user` may have: `tokens.max_admin_lifetime` for an `owner` (yes,
    /// stricter), `tokens.max_lifetime` for everyone else (§7.3).
    pub fn max_token_lifetime(&self, user: &User) -> Duration {
        if user.roles.iter().any(|r| r == OWNER) {
            self.tokens.max_admin_lifetime
        } else {
            self.tokens.max_lifetime
        }
    }

    /// Deletes the API key `id` and drops it from every replica's cache; false when there was
    /// no such key.
    pub async fn delete_key(&self, id: &str) -> Result<bool, UserError> {
        let what = Invalidation::Key(id.to_owned());
        let existed = self.revoking(what, self.store.delete_key(id)).await?;
        Ok(existed)
    }

    /// Makes `key` expire now (unless it already has) and drops it from every replica's cache;
    /// false when the key no longer exists.
    pub async fn expire_key(&self, key: ApiKey) -> Result<bool, UserError> {
        let now = OffsetDateTime::now_utc();
        if key.expires_at <= now {
            // Perhaps by an earlier call that could not tell the other replicas: tell them.
            self.forget(Invalidation::Key(key.id.clone())).await?;
            return Ok(true);
        }
        // An atomic change of the stored key: it only ever moves the expiry earlier.
        let write = self.store.modify_key(&key.id, KEY_RETENTION, |key| {
            let change = key.expires_at > now;
            if change {
                key.expires_at = now;
                key.updated_at = now;
            }
            change
        });
        let stored = self
            .revoking(Invalidation::Key(key.id.clone()), write)
            .await?;
        Ok(stored.is_some())
    }

    /// The default lifetime of keys that are not sessions (`tokens.default_lifetime`).
    pub fn default_token_lifetime(&self) -> Duration {
        self.tokens.default_lifetime
    }

    /// Issues an API key for `user` and returns its token, the only time the secret exists in
    /// the clear (only its SHA-256 is stored, spec §8.2).
    ///
    /// # Errors
    /// [`UserError::UnknownScope`], [`UserError::TokenNameTaken`], [`UserError::Lifetime`]
    /// when the expiry is not a representable time, and store or randomness failures.
    pub async fn issue_key(&self, user: &User, new: NewKey) -> Result<String, UserError> {
        let mut scopes: Vec<String> = Vec::new();
        for name in &new.scopes {
            let canonical =
                scope::canonical(name).ok_or_else(|| UserError::UnknownScope(name.clone()))?;
            if !scopes.iter().any(|s| s == canonical) {
                scopes.push(canonical.to_owned());
            }
        }
        if scopes.is_empty() {
            scopes.push(scope::ALL.to_owned());
        }
        let too_long = || UserError::Lifetime("lifetime is too long".into());
        let lifetime = time::Duration::try_from(new.lifetime).map_err(|_| too_long())?;
        let now = OffsetDateTime::now_utc();
        let mut expires_at = now.checked_add(lifetime).ok_or_else(too_long)?;
        if let Some(cap) = new.not_after {
            expires_at = expires_at.min(cap);
        }
        let keep_until = expires_at.checked_add(KEY_RETENTION).ok_or_else(too_long)?;
        let token = Token::generate()?;
        let key = ApiKey {
            id: token.id().as_str().to_owned(),
            hashed_secret: token::hash_secret(token.secret()),
            user_id: user.id,
            // Named tokens start as never used (spec §7.3); sessions are used as they are made.
            last_used: if new.login_type == LoginType::Token {
                OffsetDateTime::UNIX_EPOCH
            } else {
                now
            },
            expires_at,
            created_at: now,
            updated_at: now,
            login_type: new.login_type,
            lifetime_seconds: lifetime.whole_seconds(),
            ip_address: new.ip_address,
            token_name: new.token_name,
            scopes: scopes.into(),
            allow_list: if new.allow_list.is_empty() {
                Arc::new([AllowListEntry {
                    resource_type: "*".into(),
                    id: "*".into(),
                }])
            } else {
                new.allow_list.into()
            },
            not_after: new.not_after,
        };
        self.store
            .insert_key(&key, keep_until)
            .await
            .map_err(|e| match e {
                StoreError::Conflict { field: "name" } => {
                    UserError::TokenNameTaken(key.token_name.clone())
                }
                other => other.into(),
            })?;
        Ok(token.reveal())
    }

    /// Why a new password is refused, or `None`: Coder's rule (spec §5.1), then this
    /// `Users`'s stricter `[passwords]` policy; `user` is who the password is for, when known
    /// (`reject_user_info` needs it). The one strength check for first-user creation, admin
    /// create, password change and `POST /users/validate-password`. The text is safe to show
    /// the caller: it never contains the password.
    pub fn password_weakness(&self, password: &str, user: Option<UserInfo<'_>>) -> Option<String> {
        self.policy.check(password, user).err()
    }

    /// Runs `write`, a store change that takes access away from what `what` names, then drops
    /// `what` from every replica's cache whether or not `write` answered success: a write
    /// that failed (a lost connection, one no replica confirmed during a failover) may still
    /// have happened, and an invalidation costs only a reload. Success means both: a change
    /// that was stored but could not be published is an error, since the other replicas keep
    /// the old state until their cache expires; the caller's retry publishes again.
    async fn revoking<T>(
        &self,
        what: Invalidation,
        write: impl std::future::Future<Output = Result<T, StoreError>>,
    ) -> Result<T, StoreError> {
        let outcome = write.await;
        let told = self.forget(what).await;
        let done = outcome?;
        told.map(|()| done)
    }

    /// Drops `what` from this process's cache (when there is one) at once, and from every
    /// other replica's through the store's invalidation channel.
    ///
    /// # Errors
    /// The store's, when the invalidation could not be published.
    pub async fn forget(&self, what: Invalidation) -> Result<(), StoreError> {
        if let Some(cache) = self.cache {
            cache.apply(&what);
        }
        self.store.publish(what).await
    }

    /// [`Users::forget`] after a change that grants access: when publishing fails, other
    /// replicas grant less than they should until their cache expires, which is logged.
    async fn invalidate(&self, what: Invalidation) {
        if let Err(error) = self.forget(what).await {
            tracing::warn!(
                %error,
                "could not publish an invalidation; other replicas may keep the old state for up to store.cache_ttl"
            );
        }
    }
}

mod error;
mod login;
mod validate;

pub use error::UserError;
pub use login::{LoginError, Logins, Unmatched};

pub use validate::{is_name, validate_email, validate_name, validate_username};

#[cfg(test)]
mod tests;
