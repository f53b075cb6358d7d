//! Revoked JWTs (`token_revocations`, keyed by `jti`). Each revocation bumps the
//! `revocations` counter of [`crate::Versions`].

use chrono::{DateTime, Utc};
use sea_orm::sea_query::OnConflict;
use sea_orm::{ColumnTrait, EntityTrait, PaginatorTrait, QueryFilter, Set};

use crate::entity::token_revocation;
use crate::types::RevokedToken;
use crate::versions::REVOCATIONS;
use crate::{now, Store, StoreError};

fn from(m: token_revocation::Model) -> RevokedToken {
    RevokedToken {
        jti: m.jti,
        revoked_at: m.revoked_at,
        revoked_by: m.revoked_by,
        reason: m.reason,
    }
}

impl Store {
    /// Revoke the token with this `jti`. Idempotent: revoking it again returns the
    /// first revocation unchanged.
    pub async fn revoke(
        &self,
        jti: &str,
        by: &str,
        reason: Option<&str>,
    ) -> Result<RevokedToken, StoreError> {
        let jti = jti.trim().to_owned();
        if jti.is_empty() {
            return Err(StoreError::invalid("jti", "must not be empty"));
        }
        let by = by.to_owned();
        let reason = reason.map(str::to_owned);
        self.write(REVOCATIONS, move |txn| {
            Box::pin(async move {
                token_revocation::Entity::insert(token_revocation::ActiveModel {
                    jti: Set(jti.clone()),
                    revoked_at: Set(now()),
                    revoked_by: Set(by),
                    reason: Set(reason),
                })
                .on_conflict(
                    OnConflict::column(token_revocation::Column::Jti)
                        .do_nothing()
                        .to_owned(),
                )
                .exec_without_returning(txn)
                .await?;
                token_revocation::Entity::find_by_id(jti.clone())
                    .one(txn)
                    .await?
                    .map(from)
                    .ok_or_else(|| StoreError::Internal(format!("revocation of {jti} vanished")))
            })
        })
        .await
    }

    pub async fn is_revoked(&self, jti: &str) -> Result<bool, StoreError> {
        Ok(token_revocation::Entity::find()
            .filter(token_revocation::Column::Jti.eq(jti))
            .count(&self.db)
            .await?
            > 0)
    }

    /// Revocations with `revoked_at >= since`, oldest first. To poll without gaps,
    /// pass the previous poll's start time minus a few seconds (a revocation's time is
    /// taken just before its commit) and treat the result as a set.
    pub async fn revoked_since(
        &self,
        since: DateTime<Utc>,
    ) -> Result<Vec<RevokedToken>, StoreError> {
        let mut out: Vec<RevokedToken> = token_revocation::Entity::find()
            .filter(token_revocation::Column::RevokedAt.gte(since))
            .all(&self.db)
            .await?
            .into_iter()
            .map(from)
            .collect();
        out.sort_by(|a, b| {
            a.revoked_at
                .cmp(&b.revoked_at)
                .then_with(|| a.jti.cmp(&b.jti))
        });
        Ok(out)
    }
}
