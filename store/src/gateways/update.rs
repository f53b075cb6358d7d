//! [`Store::update_gateway`]: changed fields, and for a new name the new slug carried
//! to the gateway's tools and prompts.

use sea_orm::sea_query::Expr;
use sea_orm::{ActiveModelTrait, ColumnTrait, DatabaseTransaction, EntityTrait, QueryFilter, Set};

use super::discovered::{check_prompt_names_free, check_tool_names_free};
use super::{
    check_gateway_name_free, check_name, check_url, gateway_from, json_or, load_gateway, slug_of,
};
use crate::entity::{gateway, prompt, tool};
use crate::slug::qualified_name;
use crate::types::{Gateway, GatewayUpdate};
use crate::versions::REGISTRY;
use crate::{now, Store, StoreError};

/// Rename every tool and prompt of a gateway for a new slug. Two passes through
/// temporary names, so that renames within the gateway never collide mid-way.
async fn reslug_children(
    txn: &DatabaseTransaction,
    gateway_id: &str,
    slug: &str,
    sep: &str,
) -> Result<(), StoreError> {
    let tools = tool::Entity::find()
        .filter(tool::Column::GatewayId.eq(gateway_id))
        .all(txn)
        .await?;
    let prompts = prompt::Entity::find()
        .filter(prompt::Column::GatewayId.eq(gateway_id))
        .all(txn)
        .await?;
    let tool_names: Vec<(String, String)> = tools
        .iter()
        .map(|t| (t.id.clone(), qualified_name(slug, &t.original_name, sep)))
        .collect();
    let prompt_names: Vec<(String, String)> = prompts
        .iter()
        .map(|p| (p.id.clone(), qualified_name(slug, &p.original_name, sep)))
        .collect();
    let names: Vec<&str> = tool_names.iter().map(|(_, n)| n.as_str()).collect();
    check_tool_names_free(txn, gateway_id, &names).await?;
    let names: Vec<&str> = prompt_names.iter().map(|(_, n)| n.as_str()).collect();
    check_prompt_names_free(txn, gateway_id, &names).await?;

    let ts = now();
    // Pass 1: names that cannot collide with real ones (`~<id>`; `||` is standard SQL).
    tool::Entity::update_many()
        .col_expr(tool::Column::Name, Expr::cust("'~' || id"))
        .filter(tool::Column::GatewayId.eq(gateway_id))
        .exec(txn)
        .await?;
    prompt::Entity::update_many()
        .col_expr(prompt::Column::Name, Expr::cust("'~' || id"))
        .filter(prompt::Column::GatewayId.eq(gateway_id))
        .exec(txn)
        .await?;
    // Pass 2: the real names.
    for (id, name) in tool_names {
        tool::Entity::update_many()
            .col_expr(tool::Column::Name, Expr::value(name))
            .col_expr(tool::Column::UpdatedAt, Expr::value(ts))
            .filter(tool::Column::Id.eq(id))
            .exec(txn)
            .await?;
    }
    for (id, name) in prompt_names {
        prompt::Entity::update_many()
            .col_expr(prompt::Column::Name, Expr::value(name))
            .col_expr(prompt::Column::UpdatedAt, Expr::value(ts))
            .filter(prompt::Column::Id.eq(id))
            .exec(txn)
            .await?;
    }
    Ok(())
}

impl Store {
    /// Change name / url / description / transport / auth / tags. A new name re-slugs
    /// the gateway and renames its tools and prompts (their ids stay).
    pub async fn update_gateway(
        &self,
        id: &str,
        update: GatewayUpdate,
    ) -> Result<Gateway, StoreError> {
        let name = update
            .name
            .as_deref()
            .map(|n| check_name("name", n))
            .transpose()?;
        let slug = name
            .as_deref()
            .map(|n| slug_of(n, self.sep()))
            .transpose()?;
        let url = update.url.as_deref().map(check_url).transpose()?;
        let id = id.to_owned();
        let sep = self.sep().to_owned();
        self.write(REGISTRY, move |txn| {
            Box::pin(async move {
                let current = load_gateway(txn, &id).await?;
                let mut am: gateway::ActiveModel = current.clone().into();
                if let (Some(name), Some(slug)) = (name, slug) {
                    if name != current.name || slug != current.slug {
                        check_gateway_name_free(txn, &name, &slug, Some(&id)).await?;
                        if slug != current.slug {
                            reslug_children(txn, &id, &slug, &sep).await?;
                        }
                        am.name = Set(name);
                        am.slug = Set(slug);
                    }
                }
                if let Some(url) = url {
                    am.url = Set(url);
                }
                if let Some(description) = update.description {
                    am.description = Set(description);
                }
                if let Some(transport) = update.transport {
                    am.transport = Set(transport.as_str().to_owned());
                }
                if let Some(auth_type) = update.auth_type {
                    am.auth_type = Set(auth_type);
                }
                if let Some(headers) = update.auth_headers {
                    am.auth_headers = Set(json_or(&headers));
                }
                if let Some(tags) = update.tags {
                    am.tags = Set(json_or(&tags));
                }
                am.updated_at = Set(now());
                gateway_from(am.update(txn).await?)
            })
        })
        .await
    }
}
