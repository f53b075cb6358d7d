//! [`Store::replace_discovered`]: a fresh discovery replaces what a gateway offers,
//! matching items by upstream name or URI so that unchanged ones keep their ids.

use std::collections::HashMap;

use sea_orm::{ActiveModelTrait, ColumnTrait, EntityTrait, QueryFilter, Set};

use super::discovered::{
    check_prompt_names_free, check_tool_names_free, insert_prompts, insert_resources,
    insert_templates, insert_tools, prepare,
};
use super::load_gateway;
use crate::entity::{gateway, prompt, resource, resource_template, tool};
use crate::types::{Discovered, RefreshSummary};
use crate::versions::REGISTRY;
use crate::{now, Store, StoreError, CHUNK};

/// Delete rows of `E` whose primary key is in `ids`.
macro_rules! delete_ids {
    ($txn:expr, $module:ident, $ids:expr) => {{
        let ids: &[String] = $ids;
        for chunk in ids.chunks(CHUNK) {
            $module::Entity::delete_many()
                .filter($module::Column::Id.is_in(chunk.iter().cloned()))
                .exec($txn)
                .await?;
        }
    }};
}

impl Store {
    /// Replace what a gateway offers with a fresh discovery, in one transaction.
    /// Items are matched by upstream name (tools, prompts), URI (resources) or URI
    /// template (templates): matched ones keep their id, `enabled` flag, creation time
    /// and virtual-server associations and get the new description/schema; the rest
    /// are added (enabled like the gateway) or removed.
    pub async fn replace_discovered(
        &self,
        gateway_id: &str,
        discovered: Discovered,
    ) -> Result<RefreshSummary, StoreError> {
        let id = gateway_id.to_owned();
        let sep = self.sep().to_owned();
        self.write(REGISTRY, move |txn| {
            Box::pin(async move {
                let gw = load_gateway(txn, &id).await?;
                let p = prepare(discovered, &gw.slug, &sep)?;
                let mut summary = RefreshSummary::default();
                let ts = now();

                // --- tools ---
                let tool_names: Vec<&str> = p.tools.iter().map(|t| t.name.as_str()).collect();
                check_tool_names_free(txn, &id, &tool_names).await?;
                let prompt_names: Vec<&str> = p.prompts.iter().map(|x| x.name.as_str()).collect();
                check_prompt_names_free(txn, &id, &prompt_names).await?;

                let mut existing: HashMap<String, tool::Model> = tool::Entity::find()
                    .filter(tool::Column::GatewayId.eq(id.as_str()))
                    .all(txn)
                    .await?
                    .into_iter()
                    .map(|t| (t.original_name.clone(), t))
                    .collect();
                let mut updates = Vec::new();
                let mut added = Vec::new();
                for t in p.tools {
                    match existing.remove(&t.original_name) {
                        Some(old) => updates.push((old, t)),
                        None => added.push(t),
                    }
                }
                let gone: Vec<String> = existing.into_values().map(|t| t.id).collect();
                summary.removed += gone.len();
                delete_ids!(txn, tool, &gone);
                for (old, t) in updates {
                    if old.name == t.name
                        && old.title == t.title
                        && old.description == t.description
                        && old.input_schema == t.input_schema
                        && old.output_schema == t.output_schema
                        && old.annotations == t.annotations
                    {
                        continue;
                    }
                    summary.updated += 1;
                    let mut am: tool::ActiveModel = old.into();
                    am.name = Set(t.name);
                    am.title = Set(t.title);
                    am.description = Set(t.description);
                    am.input_schema = Set(t.input_schema);
                    am.output_schema = Set(t.output_schema);
                    am.annotations = Set(t.annotations);
                    am.updated_at = Set(ts);
                    am.update(txn).await?;
                }
                summary.added += added.len();
                insert_tools(txn, &id, gw.enabled, added).await?;

                // --- prompts ---
                let mut existing: HashMap<String, prompt::Model> = prompt::Entity::find()
                    .filter(prompt::Column::GatewayId.eq(id.as_str()))
                    .all(txn)
                    .await?
                    .into_iter()
                    .map(|x| (x.original_name.clone(), x))
                    .collect();
                let mut updates = Vec::new();
                let mut added = Vec::new();
                for x in p.prompts {
                    match existing.remove(&x.original_name) {
                        Some(old) => updates.push((old, x)),
                        None => added.push(x),
                    }
                }
                let gone: Vec<String> = existing.into_values().map(|x| x.id).collect();
                summary.removed += gone.len();
                delete_ids!(txn, prompt, &gone);
                for (old, x) in updates {
                    if old.name == x.name
                        && old.title == x.title
                        && old.description == x.description
                        && old.arguments == x.arguments
                    {
                        continue;
                    }
                    summary.updated += 1;
                    let mut am: prompt::ActiveModel = old.into();
                    am.name = Set(x.name);
                    am.title = Set(x.title);
                    am.description = Set(x.description);
                    am.arguments = Set(x.arguments);
                    am.updated_at = Set(ts);
                    am.update(txn).await?;
                }
                summary.added += added.len();
                insert_prompts(txn, &id, gw.enabled, added).await?;

                // --- resources ---
                let mut existing: HashMap<String, resource::Model> = resource::Entity::find()
                    .filter(resource::Column::GatewayId.eq(id.as_str()))
                    .all(txn)
                    .await?
                    .into_iter()
                    .map(|x| (x.uri.clone(), x))
                    .collect();
                let mut updates = Vec::new();
                let mut added = Vec::new();
                for x in p.resources {
                    match existing.remove(&x.uri) {
                        Some(old) => updates.push((old, x)),
                        None => added.push(x),
                    }
                }
                let gone: Vec<String> = existing.into_values().map(|x| x.id).collect();
                summary.removed += gone.len();
                delete_ids!(txn, resource, &gone);
                for (old, x) in updates {
                    if old.name == x.name
                        && old.description == x.description
                        && old.mime_type == x.mime_type
                        && old.size == x.size
                    {
                        continue;
                    }
                    summary.updated += 1;
                    let mut am: resource::ActiveModel = old.into();
                    am.name = Set(x.name);
                    am.description = Set(x.description);
                    am.mime_type = Set(x.mime_type);
                    am.size = Set(x.size);
                    am.updated_at = Set(ts);
                    am.update(txn).await?;
                }
                summary.added += added.len();
                insert_resources(txn, &id, gw.enabled, added).await?;

                // --- resource templates ---
                let mut existing: HashMap<String, resource_template::Model> =
                    resource_template::Entity::find()
                        .filter(resource_template::Column::GatewayId.eq(id.as_str()))
                        .all(txn)
                        .await?
                        .into_iter()
                        .map(|x| (x.uri_template.clone(), x))
                        .collect();
                let mut updates = Vec::new();
                let mut added = Vec::new();
                for x in p.templates {
                    match existing.remove(&x.uri_template) {
                        Some(old) => updates.push((old, x)),
                        None => added.push(x),
                    }
                }
                let gone: Vec<String> = existing.into_values().map(|x| x.id).collect();
                summary.removed += gone.len();
                delete_ids!(txn, resource_template, &gone);
                for (old, x) in updates {
                    if old.name == x.name
                        && old.description == x.description
                        && old.mime_type == x.mime_type
                    {
                        continue;
                    }
                    summary.updated += 1;
                    let mut am: resource_template::ActiveModel = old.into();
                    am.name = Set(x.name);
                    am.description = Set(x.description);
                    am.mime_type = Set(x.mime_type);
                    am.updated_at = Set(ts);
                    am.update(txn).await?;
                }
                summary.added += added.len();
                insert_templates(txn, &id, gw.enabled, added).await?;

                let mut am: gateway::ActiveModel = gw.into();
                if let Some(caps) = p.capabilities {
                    am.capabilities = Set(caps);
                }
                am.updated_at = Set(ts);
                am.update(txn).await?;
                Ok(summary)
            })
        })
        .await
    }
}
