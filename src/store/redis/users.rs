//! Users in Redis: records, their email and username indexes, and their OpenID Connect links.

use uuid::Uuid;

use super::index::{oidc_link, Index};
use super::record::json;
use super::RedisStore;
use crate::store::{fold, OidcLink, StoreError, User};

// === impl RedisStore ===

impl RedisStore {
    pub(in crate::store) async fn create_user(&self, user: &User) -> Result<(), StoreError> {
        let (email, username) = (fold(&user.email), fold(&user.username));
        let (email_key, username_key) = (self.keys.email(&email), self.keys.username(&username));
        self.insert_indexed(
            &self.keys.user(user.id),
            json(user)?,
            &user.id.to_string(),
            &[
                (Index::Email, email_key.as_str(), email.as_str()),
                (Index::Username, username_key.as_str(), username.as_str()),
            ],
            &self.keys.users(),
        )
        .await?;
        self.sync_directory(user.id).await
    }

    pub(in crate::store) async fn user(&self, id: Uuid) -> Result<Option<User>, StoreError> {
        self.get_json(&self.keys.user(id)).await
    }

    async fn user_by_index(
        &self,
        key: &str,
        matches: impl Fn(&User) -> bool,
    ) -> Result<Option<User>, StoreError> {
        let Some(id) = self.holder(key).await? else {
            return Ok(None);
        };
        Ok(self.user(id).await?.filter(matches))
    }

    pub(in crate::store) async fn user_by_email(
        &self,
        email: &str,
    ) -> Result<Option<User>, StoreError> {
        let email = fold(email);
        self.user_by_index(&self.keys.email(&email), |u| fold(&u.email) == email)
            .await
    }

    pub(in crate::store) async fn user_by_username(
        &self,
        username: &str,
    ) -> Result<Option<User>, StoreError> {
        let username = fold(username);
        self.user_by_index(&self.keys.username(&username), |u| {
            fold(&u.username) == username
        })
        .await
    }

    pub(in crate::store) async fn users(&self) -> Result<Vec<User>, StoreError> {
        let ids = self.members(&self.keys.users()).await?;
        let (users, _) = self
            .records(&ids, |id| id.parse().ok().map(|id| self.keys.user(id)))
            .await?;
        Ok(users)
    }

    pub(in crate::store) async fn has_users(&self) -> Result<bool, StoreError> {
        let n: u64 = self
            .query(redis::cmd("SCARD").arg(self.keys.users()))
            .await?;
        Ok(n > 0)
    }

    pub(in crate::store) async fn modify_user(
        &self,
        id: Uuid,
        mut change: impl FnMut(&mut User) -> bool,
    ) -> Result<Option<User>, StoreError> {
        // Only a change of what the directory indexes needs a sync: a login's `last_seen_at`
        // does not pay for one.
        let mut indexed_changed = false;
        let user = self
            .modify(&self.keys.user(id), |user: &mut User| {
                let before = directory_fields(user);
                let changed = change(user);
                indexed_changed |= changed && directory_fields(user) != before;
                changed.then_some(None)
            })
            .await?;
        if indexed_changed {
            self.sync_directory(id).await?;
        }
        Ok(user)
    }

    pub(in crate::store) async fn update_user(
        &self,
        id: Uuid,
        mut change: impl FnMut(&mut User) -> bool,
    ) -> Result<Option<User>, StoreError> {
        let record = self.keys.user(id);
        // The record is changed (compare-and-replace, so a concurrent suspension or role
        // change is kept) before the new index entries are claimed, so that a concurrent
        // claimer sees them as valid (module doc, "Atomicity").
        let mut before = None;
        let user = self
            .modify(&record, |user: &mut User| {
                before = Some(user.clone());
                change(user).then_some(None)
            })
            .await?;
        let (Some(user), Some(old)) = (user, before) else {
            return Ok(None);
        };
        let changes = [
            (Index::Email, fold(&old.email), fold(&user.email)),
            (Index::Username, fold(&old.username), fold(&user.username)),
        ];
        if changes.iter().all(|(_, before, after)| before == after) {
            self.sync_directory(id).await?;
            return Ok(Some(user));
        }
        // Refused: the record goes back as it was, by compare-and-replace too; if another
        // writer changed it meanwhile (a suspension), only the email and username go back.
        let restore = async {
            self.modify(&record, |u: &mut User| {
                if *u == user {
                    *u = old.clone();
                } else {
                    u.email.clone_from(&old.email);
                    u.username.clone_from(&old.username);
                }
                Some(None)
            })
            .await
            .map(drop)
        };
        if let Err(e) = self.move_indexes(restore, &changes, &id.to_string()).await {
            // A sync in between may have indexed the record that was just put back.
            self.compensate("index the restored user", self.sync_directory(id))
                .await;
            return Err(e);
        }
        self.sync_directory(id).await?;
        Ok(Some(user))
    }

    pub(in crate::store) async fn user_by_oidc(
        &self,
        issuer: &str,
        subject: &str,
    ) -> Result<Option<User>, StoreError> {
        let value = oidc_link(issuer, subject);
        let key = Index::OidcSubject.key(&self.keys, &value);
        let holder: Option<String> = self.query(redis::cmd("GET").arg(&key)).await?;
        let Some(holder) = holder else {
            return Ok(None);
        };
        match holder.parse::<Uuid>() {
            Ok(id) if self.holds(Index::OidcSubject, &holder, &value).await? => self.user(id).await,
            _ => Ok(None),
        }
    }

    /// Writes the user's side of the link first (`HSETNX`: a user keeps its subject), then
    /// claims the subject's index as the email index is claimed; a lost claim undoes the
    /// user's side when this call wrote it.
    pub(in crate::store) async fn link_oidc(
        &self,
        user: Uuid,
        issuer: &str,
        subject: &str,
    ) -> Result<OidcLink, StoreError> {
        if self.user(user).await?.is_none() {
            return Ok(OidcLink::NoSuchUser);
        }
        let links = self.keys.user_oidc(user);
        let wrote: i64 = self
            .query(redis::cmd("HSETNX").arg(&links).arg(issuer).arg(subject))
            .await?;
        if wrote == 0 {
            let linked: Option<String> = self
                .query(redis::cmd("HGET").arg(&links).arg(issuer))
                .await?;
            if linked.as_deref() != Some(subject) {
                return Ok(OidcLink::UserHasOtherSubject);
            }
        }
        let value = oidc_link(issuer, subject);
        let key = Index::OidcSubject.key(&self.keys, &value);
        match self
            .claim(Index::OidcSubject, &key, &value, &user.to_string())
            .await
        {
            Ok(()) => Ok(OidcLink::Linked),
            Err(e) => {
                if wrote == 1 {
                    self.compensate("unlink oidc subject", async {
                        self.query::<i64>(redis::cmd("HDEL").arg(&links).arg(issuer))
                            .await
                            .map(drop)
                    })
                    .await;
                }
                match e {
                    StoreError::Conflict { .. } => Ok(OidcLink::SubjectTaken),
                    e => Err(e),
                }
            }
        }
    }

    pub(in crate::store) async fn delete_user(&self, id: Uuid) -> Result<Vec<String>, StoreError> {
        let old = self.user(id).await?;
        let sid = id.to_string();
        self.query::<i64>(redis::cmd("SREM").arg(self.keys.users()).arg(&sid))
            .await?;
        if let Some(old) = &old {
            self.release(&self.keys.email(&fold(&old.email)), &sid)
                .await?;
            self.release(&self.keys.username(&fold(&old.username)), &sid)
                .await?;
        }
        let links: Vec<(String, String)> = self
            .query(redis::cmd("HGETALL").arg(self.keys.user_oidc(id)))
            .await?;
        for (issuer, subject) in links {
            let key = Index::OidcSubject.key(&self.keys, &oidc_link(&issuer, &subject));
            self.release(&key, &sid).await?;
        }
        let deleted = self.delete_keys_of(id).await?;
        let orgs = self.members(&self.keys.user_orgs(id)).await?;
        for org in orgs.iter().filter_map(|o| o.parse::<Uuid>().ok()) {
            self.remove_member(id, org).await?;
        }
        // One slot (`{u:<id>}`): one command. The key list goes too, with the ids of any key
        // stored meanwhile: such a key is dead anyway, its user being gone.
        self.query::<i64>(
            redis::cmd("DEL")
                .arg(self.keys.user_keys(id))
                .arg(self.keys.user_key_names(id))
                .arg(self.keys.user_orgs(id))
                .arg(self.keys.user_oidc(id))
                .arg(self.keys.user(id)),
        )
        .await?;
        self.sync_directory(id).await?;
        Ok(deleted)
    }
}

// === helpers ===

/// What the directory index holds of a user (see `directory`): whether a change needs a sync.
fn directory_fields(user: &User) -> (String, String, &'static str, &'static str, Vec<String>) {
    (
        fold(&user.username),
        fold(&user.email),
        user.status.as_str(),
        user.login_type.as_str(),
        user.roles.clone(),
    )
}
