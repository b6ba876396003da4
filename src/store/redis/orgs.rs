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
