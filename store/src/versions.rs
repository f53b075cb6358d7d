//! Change counters: one row per subject (`registry`, `revocations`) in
//! `change_counters`, bumped as the first statement of every mutating transaction.

use sea_orm::sea_query::Expr;
use sea_orm::{ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter};

use crate::entity::change_counter;
use crate::migration::{COUNTER_REGISTRY, COUNTER_REVOCATIONS};
use crate::{Store, StoreError, Versions};

pub(crate) const REGISTRY: &str = COUNTER_REGISTRY;
pub(crate) const REVOCATIONS: &str = COUNTER_REVOCATIONS;

pub(crate) async fn bump<C: ConnectionTrait>(db: &C, counter: &str) -> Result<(), StoreError> {
    let res = change_counter::Entity::update_many()
        .col_expr(
            change_counter::Column::Version,
            Expr::col(change_counter::Column::Version).add(1),
        )
        .col_expr(change_counter::Column::UpdatedAt, Expr::value(crate::now()))
        .filter(change_counter::Column::Name.eq(counter))
        .exec(db)
        .await
        .map_err(|e| match StoreError::from(e) {
            StoreError::Internal(m) if m.contains("change_counters") => {
                StoreError::Internal(format!(
                    "the database has no fleetgate schema ({m}): run migrations first \
                 (`Store::migrate`, done by the supervisor at start-up)"
                ))
            }
            other => other,
        })?;
    if res.rows_affected == 0 {
        return Err(StoreError::Internal(format!(
            "change counter {counter:?} is missing: has the database been migrated \
             (`Store::migrate`)?"
        )));
    }
    Ok(())
}

impl Store {
    /// Both change counters, in one cheap query. Poll this to invalidate caches.
    pub async fn versions(&self) -> Result<Versions, StoreError> {
        let rows = change_counter::Entity::find().all(&self.db).await?;
        let mut v = Versions::default();
        for row in rows {
            match row.name.as_str() {
                REGISTRY => v.registry = row.version,
                REVOCATIONS => v.revocations = row.version,
                _ => {}
            }
        }
        Ok(v)
    }

    /// The registry counter alone (gateways, tools, resources, prompts, servers).
    pub async fn registry_version(&self) -> Result<i64, StoreError> {
        Ok(self.versions().await?.registry)
    }

    /// `Some(current)` if anything changed since `seen` was read, `None` if not.
    pub async fn changed_since(&self, seen: Versions) -> Result<Option<Versions>, StoreError> {
        let now = self.versions().await?;
        Ok((now != seen).then_some(now))
    }
}
