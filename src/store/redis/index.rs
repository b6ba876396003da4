//! Uniqueness indexes (`email:`, `username:`, `org_name:`, `default_org`, `oidc:`): claimed
//! with `SET NX` after the record they point to, taken over from invalid holders, released by
//! compare-and-delete (see the parent module doc, "Atomicity").

use uuid::Uuid;

use super::RedisStore;
use crate::store::keys::Keys;
use crate::store::{fold, StoreError};

/// Of a `SET NX` loop against invalid index entries: how many takeovers to try before giving
/// up with a conflict (each retry means another writer raced this one).
pub(super) const CLAIM_ATTEMPTS: usize = 4;

/// Which uniqueness index a claim is about, to check whether its holder is still valid.
#[derive(Clone, Copy)]
pub(super) enum Index {
    Email,
    Username,
    OrgName,
    DefaultOrg,
    /// The value is `issuer` + `\n` + `subject`.
    OidcSubject,
}

// === impl RedisStore ===

impl RedisStore {
    /// Writes a new record (`SET NX`: an existing id is a conflict), claims its uniqueness
    /// indexes in order, and adds its id to the `all` set; if a step fails, the claims made and
    /// the record are undone, so nothing half-created stays behind.
    pub(super) async fn insert_indexed(
        &self,
        record: &str,
        value: String,
        id: &str,
        claims: &[(Index, &str, &str)],
        all: &str,
    ) -> Result<(), StoreError> {
        let written: Option<String> = self
            .query(redis::cmd("SET").arg(record).arg(value).arg("NX"))
            .await?;
        if written.is_none() {
            return Err(StoreError::Conflict { field: "id" });
        }
        let mut claimed: Vec<&str> = Vec::new();
        let outcome = async {
            for &(index, key, folded) in claims {
                self.claim(index, key, folded, id).await?;
                claimed.push(key);
            }
            self.query::<i64>(redis::cmd("SADD").arg(all).arg(id))
                .await
                .map(drop)
        }
        .await;
        if let Err(e) = outcome {
            for key in claimed {
                self.compensate("release index", self.release(key, id))
                    .await;
            }
            self.compensate("delete record", async {
                self.query::<i64>(redis::cmd("DEL").arg(record))
                    .await
                    .map(drop)
            })
            .await;
            return Err(e);
        }
        Ok(())
    }

    /// After a record of `id` was replaced: claims the index entries of the values that
    /// changed (`(index, before, after)`, folded) and releases the old ones. When a claim is
    /// refused, runs `restore` (which puts the old values back in the record), releases the
    /// claims made, and fails.
    pub(super) async fn move_indexes(
        &self,
        restore: impl std::future::Future<Output = Result<(), StoreError>>,
        changes: &[(Index, String, String)],
        id: &str,
    ) -> Result<(), StoreError> {
        let mut claimed: Vec<String> = Vec::new();
        let mut released: Vec<String> = Vec::new();
        let mut outcome = Ok(());
        for (index, before, after) in changes {
            if before == after {
                continue;
            }
            let key = index.key(&self.keys, after);
            match self.claim(*index, &key, after, id).await {
                Ok(()) => {
                    claimed.push(key);
                    released.push(index.key(&self.keys, before));
                }
                Err(e) => {
                    outcome = Err(e);
                    break;
                }
            }
        }
        if let Err(e) = outcome {
            self.compensate("restore record", restore).await;
            for key in &claimed {
                self.compensate("release index", self.release(key, id))
                    .await;
            }
            return Err(e);
        }
        for key in &released {
            self.compensate("release old index", self.release(key, id))
                .await;
        }
        Ok(())
    }

    /// Claims the uniqueness index `key` for `id`; see the module doc.
    pub(super) async fn claim(
        &self,
        index: Index,
        key: &str,
        value: &str,
        id: &str,
    ) -> Result<(), StoreError> {
        for _ in 0..CLAIM_ATTEMPTS {
            let set: Option<String> = self
                .query(redis::cmd("SET").arg(key).arg(id).arg("NX"))
                .await?;
            if set.is_some() {
                return Ok(());
            }
            let holder: Option<String> = self.query(redis::cmd("GET").arg(key)).await?;
            let Some(holder) = holder else { continue };
            if holder == id {
                return Ok(());
            }
            if self.holds(index, &holder, value).await? {
                return Err(StoreError::Conflict {
                    field: index.field(),
                });
            }
            let swapped: i64 = self
                .eval(&self.scripts.compare_and_set, &[key], &[&holder, id])
                .await?;
            if swapped == 1 {
                return Ok(());
            }
        }
        Err(StoreError::Conflict {
            field: index.field(),
        })
    }

    /// Whether `holder` validly holds the index entry for `value`.
    pub(super) async fn holds(
        &self,
        index: Index,
        holder: &str,
        value: &str,
    ) -> Result<bool, StoreError> {
        let Ok(id) = holder.parse::<Uuid>() else {
            return Ok(false);
        };
        Ok(match index {
            Index::Email => self
                .user(id)
                .await?
                .is_some_and(|u| fold(&u.email) == value),
            Index::Username => self
                .user(id)
                .await?
                .is_some_and(|u| fold(&u.username) == value),
            Index::OrgName => self.org(id).await?.is_some_and(|o| fold(&o.name) == value),
            Index::DefaultOrg => self.org(id).await?.is_some_and(|o| o.is_default),
            Index::OidcSubject => {
                let Some((issuer, subject)) = value.split_once('\n') else {
                    return Ok(false);
                };
                let linked: Option<String> = self
                    .query(redis::cmd("HGET").arg(self.keys.user_oidc(id)).arg(issuer))
                    .await?;
                linked.as_deref() == Some(subject) && self.user(id).await?.is_some()
            }
        })
    }

    /// The id that the index entry `key` names, if it names one; whether that is still valid
    /// is for the caller to check on the record (see the module doc).
    pub(super) async fn holder(&self, key: &str) -> Result<Option<Uuid>, StoreError> {
        let holder: Option<String> = self.query(redis::cmd("GET").arg(key)).await?;
        Ok(holder.and_then(|h| h.parse().ok()))
    }

    /// Releases the index `key` if `id` holds it.
    pub(super) async fn release(&self, key: &str, id: &str) -> Result<(), StoreError> {
        self.eval::<i64>(&self.scripts.compare_and_delete, &[key], &[id])
            .await
            .map(drop)
    }
}

// === impl Index ===

impl Index {
    /// The index entry for `value` (for [`Index::OidcSubject`], the issuer, a newline and
    /// the subject).
    pub(super) fn key(self, keys: &Keys, value: &str) -> String {
        match self {
            Index::Email => keys.email(value),
            Index::Username => keys.username(value),
            Index::OrgName => keys.org_name(value),
            Index::DefaultOrg => keys.default_org(),
            Index::OidcSubject => keys.oidc(value),
        }
    }

    pub(super) fn field(self) -> &'static str {
        match self {
            Index::Email => "email",
            Index::Username => "username",
            Index::OrgName => "name",
            Index::DefaultOrg => "is_default",
            Index::OidcSubject => "oidc_subject",
        }
    }
}

// === helpers ===

/// The value of an OpenID Connect subject's index entry: `issuer`, a newline, `subject`.
pub(super) fn oidc_link(issuer: &str, subject: &str) -> String {
    format!("{issuer}\n{subject}")
}
