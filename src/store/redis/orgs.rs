//! Organizations and memberships in Redis.

use uuid::Uuid;

use super::index::Index;
use super::record::json;
use super::RedisStore;
use crate::store::{fold, Membership, Organization, StoreError};

// === impl RedisStore ===

impl RedisStore {
    pub(in crate::store) async fn create_org(&self, org: &Organization) -> Result<(), StoreError> {
        let name = fold(&org.name);
        let name_key = self.keys.org_name(&name);
        let default_key = self.keys.default_org();
        let mut claims = vec![(Index::OrgName, name_key.as_str(), name.as_str())];
        if org.is_default {
            claims.push((Index::DefaultOrg, default_key.as_str(), ""));
        }
        self.insert_indexed(
            &self.keys.org(org.id),
            json(org)?,
            &org.id.to_string(),
            &claims,
            &self.keys.orgs(),
        )
        .await
    }

    /// Replaces the organization's record (its `is_default` stays as stored) and moves its
    /// name index, as `update_user` does a user's.
    pub(in crate::store) async fn update_org(
        &self,
        org: &Organization,
    ) -> Result<bool, StoreError> {
        let Some(old) = self.org(org.id).await? else {
            return Ok(false);
        };
        let mut new = org.clone();
        new.is_default = old.is_default;
        let record = self.keys.org(org.id);
        let written: Option<String> = self
            .query(redis::cmd("SET").arg(&record).arg(json(&new)?).arg("XX"))
            .await?;
        if written.is_none() {
            return Ok(false);
        }
        let changes = [(Index::OrgName, fold(&old.name), fold(&new.name))];
        let old = json(&old)?;
        let restore = async {
            self.query::<Option<String>>(redis::cmd("SET").arg(&record).arg(&old).arg("XX"))
                .await
                .map(drop)
        };
        self.move_indexes(restore, &changes, &org.id.to_string())
            .await?;
        Ok(true)
    }

    /// Deletes an organization: out of `orgs` first (no longer listed), its indexes
    /// released, each membership removed (the record that grants roles first, as
    /// `remove_member` does), then its record and member set. Returns the former members;
    /// `None` when there was no such organization. After a crash part-way, deleting it again
    /// finishes.
    pub(in crate::store) async fn delete_org(
        &self,
        id: Uuid,
    ) -> Result<Option<Vec<Uuid>>, StoreError> {
        let Some(old) = self.org(id).await? else {
            return Ok(None);
        };
        let sid = id.to_string();
        self.query::<i64>(redis::cmd("SREM").arg(self.keys.orgs()).arg(&sid))
            .await?;
        self.release(&self.keys.org_name(&fold(&old.name)), &sid)
            .await?;
        if old.is_default {
            self.release(&self.keys.default_org(), &sid).await?;
        }
        let members: Vec<Uuid> = self
            .members(&self.keys.org_members(id))
            .await?
            .iter()
            .filter_map(|u| u.parse().ok())
            .collect();
        for user in &members {
            self.remove_member(*user, id).await?;
        }
        self.query::<i64>(
            redis::cmd("DEL")
                .arg(self.keys.org_members(id))
                .arg(self.keys.org(id)),
        )
        .await?;
        Ok(Some(members))
    }

    pub(in crate::store) async fn org(&self, id: Uuid) -> Result<Option<Organization>, StoreError> {
        self.get_json(&self.keys.org(id)).await
    }

    pub(in crate::store) async fn org_by_name(
        &self,
        name: &str,
    ) -> Result<Option<Organization>, StoreError> {
        let name = fold(name);
        let Some(id) = self.holder(&self.keys.org_name(&name)).await? else {
            return Ok(None);
        };
        Ok(self.org(id).await?.filter(|o| fold(&o.name) == name))
    }

    pub(in crate::store) async fn default_org(&self) -> Result<Option<Organization>, StoreError> {
        let Some(id) = self.holder(&self.keys.default_org()).await? else {
            return Ok(None);
        };
        Ok(self.org(id).await?.filter(|o| o.is_default))
    }

    pub(in crate::store) async fn orgs(&self) -> Result<Vec<Organization>, StoreError> {
        let ids = self.members(&self.keys.orgs()).await?;
        let (orgs, _) = self
            .records(&ids, |id| id.parse().ok().map(|id| self.keys.org(id)))
            .await?;
        Ok(orgs)
    }

    pub(in crate::store) async fn add_member(&self, m: &Membership) -> Result<(), StoreError> {
        let (user, org) = (m.user_id, m.organization_id);
        self.eval::<i64>(
            &self.scripts.member_put,
            &[&self.keys.member(user, org), &self.keys.user_orgs(user)],
            &[&json(m)?, &org.to_string()],
        )
        .await?;
        self.query::<i64>(
            redis::cmd("SADD")
                .arg(self.keys.org_members(org))
                .arg(user.to_string()),
        )
        .await
        .map(drop)
    }

    pub(in crate::store) async fn membership(
        &self,
        user: Uuid,
        org: Uuid,
    ) -> Result<Option<Membership>, StoreError> {
        self.get_json(&self.keys.member(user, org)).await
    }

    pub(in crate::store) async fn memberships_of(
        &self,
        user: Uuid,
    ) -> Result<Vec<Membership>, StoreError> {
        let orgs = self.members(&self.keys.user_orgs(user)).await?;
        let (found, _) = self
            .records(&orgs, |org| {
                org.parse().ok().map(|org| self.keys.member(user, org))
            })
            .await?;
        Ok(found)
    }

    pub(in crate::store) async fn members_of(
        &self,
        org: Uuid,
    ) -> Result<Vec<Membership>, StoreError> {
        let users = self.members(&self.keys.org_members(org)).await?;
        let (found, _) = self
            .records(&users, |user| {
                user.parse().ok().map(|user| self.keys.member(user, org))
            })
            .await?;
        Ok(found)
    }

    pub(in crate::store) async fn remove_member(
        &self,
        user: Uuid,
        org: Uuid,
    ) -> Result<bool, StoreError> {
        let removed: i64 = self
            .eval(
                &self.scripts.member_delete,
                &[&self.keys.member(user, org), &self.keys.user_orgs(user)],
                &[&org.to_string()],
            )
            .await?;
        self.query::<i64>(
            redis::cmd("SREM")
                .arg(self.keys.org_members(org))
                .arg(user.to_string()),
        )
        .await?;
        Ok(removed > 0)
    }
}
