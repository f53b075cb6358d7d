//! A gateway's flags: `enabled` (set by an operator, cascades to what it offers) and
//! `reachable` (set by health checks).

use sea_orm::sea_query::Expr;
use sea_orm::{ColumnTrait, EntityTrait, QueryFilter};

use super::{gateway_from, load_gateway};
use crate::entity::{gateway, prompt, resource, resource_template, tool};
use crate::types::Gateway;
use crate::versions::REGISTRY;
use crate::{now, Store, StoreError};

impl Store {
    /// Enable or disable a gateway; like ContextForge, the same flag is set on all its
    /// tools, resources, resource templates and prompts.
    pub async fn set_gateway_enabled(
        &self,
        id: &str,
        enabled: bool,
    ) -> Result<Gateway, StoreError> {
        let id = id.to_owned();
        self.write(REGISTRY, move |txn| {
            Box::pin(async move {
                load_gateway(txn, &id).await?;
                let ts = now();
                gateway::Entity::update_many()
                    .col_expr(gateway::Column::Enabled, Expr::value(enabled))
                    .col_expr(gateway::Column::UpdatedAt, Expr::value(ts))
                    .filter(gateway::Column::Id.eq(id.as_str()))
                    .exec(txn)
                    .await?;
                tool::Entity::update_many()
                    .col_expr(tool::Column::Enabled, Expr::value(enabled))
                    .col_expr(tool::Column::UpdatedAt, Expr::value(ts))
                    .filter(tool::Column::GatewayId.eq(id.as_str()))
                    .filter(tool::Column::Enabled.ne(enabled))
                    .exec(txn)
                    .await?;
                resource::Entity::update_many()
                    .col_expr(resource::Column::Enabled, Expr::value(enabled))
                    .col_expr(resource::Column::UpdatedAt, Expr::value(ts))
                    .filter(resource::Column::GatewayId.eq(id.as_str()))
                    .filter(resource::Column::Enabled.ne(enabled))
                    .exec(txn)
                    .await?;
                resource_template::Entity::update_many()
                    .col_expr(resource_template::Column::Enabled, Expr::value(enabled))
                    .col_expr(resource_template::Column::UpdatedAt, Expr::value(ts))
                    .filter(resource_template::Column::GatewayId.eq(id.as_str()))
                    .filter(resource_template::Column::Enabled.ne(enabled))
                    .exec(txn)
                    .await?;
                prompt::Entity::update_many()
                    .col_expr(prompt::Column::Enabled, Expr::value(enabled))
                    .col_expr(prompt::Column::UpdatedAt, Expr::value(ts))
                    .filter(prompt::Column::GatewayId.eq(id.as_str()))
                    .filter(prompt::Column::Enabled.ne(enabled))
                    .exec(txn)
                    .await?;
                gateway_from(load_gateway(txn, &id).await?)
            })
        })
        .await
    }

    /// Record a health-check result. `reachable = true` also sets `last_seen`. Only a
    /// change of the flag bumps the registry version (so periodic health checks do not
    /// invalidate every worker's cache).
    pub async fn set_gateway_reachable(
        &self,
        id: &str,
        reachable: bool,
    ) -> Result<Gateway, StoreError> {
        let current = load_gateway(&self.db, id).await?;
        if current.reachable == reachable {
            if reachable {
                gateway::Entity::update_many()
                    .col_expr(gateway::Column::LastSeen, Expr::value(Some(now())))
                    .filter(gateway::Column::Id.eq(id))
                    .exec(&self.db)
                    .await?;
            }
            return self.get_gateway(id).await;
        }
        let id = id.to_owned();
        self.write(REGISTRY, move |txn| {
            Box::pin(async move {
                let ts = now();
                let mut q = gateway::Entity::update_many()
                    .col_expr(gateway::Column::Reachable, Expr::value(reachable))
                    .col_expr(gateway::Column::UpdatedAt, Expr::value(ts));
                if reachable {
                    q = q.col_expr(gateway::Column::LastSeen, Expr::value(Some(ts)));
                }
                let res = q
                    .filter(gateway::Column::Id.eq(id.as_str()))
                    .exec(txn)
                    .await?;
                if res.rows_affected == 0 {
                    return Err(StoreError::not_found("gateway", id));
                }
                gateway_from(load_gateway(txn, &id).await?)
            })
        })
        .await
    }
}
