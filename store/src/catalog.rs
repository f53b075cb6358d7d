//! What gateways offer, as clients see it: tools, resources, resource templates,
//! prompts. List (enabled only, or all), get by id, tools and prompts by name,
//! resources by URI, enable/disable one item.

use std::collections::HashMap;

use sea_orm::sea_query::Expr;
use sea_orm::{ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, QueryOrder};

use crate::entity::{gateway, prompt, resource, resource_template, tool};
use crate::types::*;
use crate::versions::REGISTRY;
use crate::{now, Store, StoreError, CHUNK};

/// What a tool or prompt needs from its gateway.
#[derive(Clone)]
pub(crate) struct GwInfo {
    pub slug: String,
    pub reachable: bool,
}

pub(crate) async fn gateway_infos<C: ConnectionTrait>(
    db: &C,
) -> Result<HashMap<String, GwInfo>, StoreError> {
    Ok(gateway::Entity::find()
        .all(db)
        .await?
        .into_iter()
        .map(|g| {
            (
                g.id,
                GwInfo {
                    slug: g.slug,
                    reachable: g.reachable,
                },
            )
        })
        .collect())
}

async fn gateway_info<C: ConnectionTrait>(db: &C, id: &str) -> Result<GwInfo, StoreError> {
    let g = gateway::Entity::find_by_id(id.to_owned())
        .one(db)
        .await?
        .ok_or_else(|| StoreError::Internal(format!("gateway {id} vanished")))?;
    Ok(GwInfo {
        slug: g.slug,
        reachable: g.reachable,
    })
}

fn missing_gw() -> GwInfo {
    GwInfo {
        slug: String::new(),
        reachable: false,
    }
}

pub(crate) fn tool_from(m: tool::Model, gw: &GwInfo) -> Tool {
    Tool {
        id: m.id,
        gateway_id: m.gateway_id,
        gateway_slug: gw.slug.clone(),
        original_name: m.original_name,
        name: m.name,
        title: m.title,
        description: m.description,
        input_schema: m.input_schema,
        output_schema: m.output_schema,
        annotations: m.annotations,
        enabled: m.enabled,
        reachable: gw.reachable,
        created_at: m.created_at,
        updated_at: m.updated_at,
    }
}

pub(crate) fn prompt_from(m: prompt::Model, gw: &GwInfo) -> Prompt {
    Prompt {
        id: m.id,
        gateway_id: m.gateway_id,
        gateway_slug: gw.slug.clone(),
        original_name: m.original_name,
        name: m.name,
        title: m.title,
        description: m.description,
        arguments: m.arguments,
        enabled: m.enabled,
        created_at: m.created_at,
        updated_at: m.updated_at,
    }
}

pub(crate) fn resource_from(m: resource::Model) -> Resource {
    Resource {
        id: m.id,
        gateway_id: m.gateway_id,
        uri: m.uri,
        name: m.name,
        description: m.description,
        mime_type: m.mime_type,
        size: m.size,
        enabled: m.enabled,
        created_at: m.created_at,
        updated_at: m.updated_at,
    }
}

pub(crate) fn template_from(m: resource_template::Model) -> ResourceTemplate {
    ResourceTemplate {
        id: m.id,
        gateway_id: m.gateway_id,
        uri_template: m.uri_template,
        name: m.name,
        description: m.description,
        mime_type: m.mime_type,
        enabled: m.enabled,
        created_at: m.created_at,
        updated_at: m.updated_at,
    }
}

/// Tools with these ids (unknown ids are skipped), by name.
pub(crate) async fn tools_by_ids<C: ConnectionTrait>(
    db: &C,
    ids: &[String],
) -> Result<Vec<Tool>, StoreError> {
    let mut models = Vec::new();
    for chunk in ids.chunks(CHUNK) {
        models.extend(
            tool::Entity::find()
                .filter(tool::Column::Id.is_in(chunk.iter().cloned()))
                .all(db)
                .await?,
        );
    }
    let gws = gateway_infos(db).await?;
    let mut out: Vec<Tool> = models
        .into_iter()
        .map(|m| {
            let gw = gws.get(&m.gateway_id).cloned().unwrap_or_else(missing_gw);
            tool_from(m, &gw)
        })
        .collect();
    out.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(out)
}

pub(crate) async fn prompts_by_ids<C: ConnectionTrait>(
    db: &C,
    ids: &[String],
) -> Result<Vec<Prompt>, StoreError> {
    let mut models = Vec::new();
    for chunk in ids.chunks(CHUNK) {
        models.extend(
            prompt::Entity::find()
                .filter(prompt::Column::Id.is_in(chunk.iter().cloned()))
                .all(db)
                .await?,
        );
    }
    let gws = gateway_infos(db).await?;
    let mut out: Vec<Prompt> = models
        .into_iter()
        .map(|m| {
            let gw = gws.get(&m.gateway_id).cloned().unwrap_or_else(missing_gw);
            prompt_from(m, &gw)
        })
        .collect();
    out.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(out)
}

pub(crate) async fn resources_by_ids<C: ConnectionTrait>(
    db: &C,
    ids: &[String],
) -> Result<Vec<Resource>, StoreError> {
    let mut out = Vec::new();
    for chunk in ids.chunks(CHUNK) {
        out.extend(
            resource::Entity::find()
                .filter(resource::Column::Id.is_in(chunk.iter().cloned()))
                .all(db)
                .await?
                .into_iter()
                .map(resource_from),
        );
    }
    out.sort_by(|a, b| a.uri.cmp(&b.uri).then_with(|| a.id.cmp(&b.id)));
    Ok(out)
}

impl Store {
    // ----- tools -----

    /// Tools by name; disabled ones only with `include_disabled`.
    pub async fn list_tools(&self, include_disabled: bool) -> Result<Vec<Tool>, StoreError> {
        let mut q = tool::Entity::find();
        if !include_disabled {
            q = q.filter(tool::Column::Enabled.eq(true));
        }
        let models = q.all(&self.db).await?;
        let gws = gateway_infos(&self.db).await?;
        let mut out: Vec<Tool> = models
            .into_iter()
            .map(|m| {
                let gw = gws.get(&m.gateway_id).cloned().unwrap_or_else(missing_gw);
                tool_from(m, &gw)
            })
            .collect();
        // Sorted here, not in SQL: byte order on both backends, whatever the collation.
        out.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(out)
    }

    pub async fn get_tool(&self, id: &str) -> Result<Tool, StoreError> {
        let m = tool::Entity::find_by_id(id.to_owned())
            .one(&self.db)
            .await?
            .ok_or_else(|| StoreError::not_found("tool", id))?;
        let gw = gateway_info(&self.db, &m.gateway_id).await?;
        Ok(tool_from(m, &gw))
    }

    /// By the qualified name clients use (`{gateway_slug}{sep}{tool_slug}`), enabled or not.
    pub async fn get_tool_by_name(&self, name: &str) -> Result<Tool, StoreError> {
        let m = tool::Entity::find()
            .filter(tool::Column::Name.eq(name))
            .one(&self.db)
            .await?
            .ok_or_else(|| StoreError::not_found("tool", name))?;
        let gw = gateway_info(&self.db, &m.gateway_id).await?;
        Ok(tool_from(m, &gw))
    }

    pub async fn set_tool_enabled(&self, id: &str, enabled: bool) -> Result<Tool, StoreError> {
        let id = id.to_owned();
        self.write(REGISTRY, move |txn| {
            Box::pin(async move {
                let res = tool::Entity::update_many()
                    .col_expr(tool::Column::Enabled, Expr::value(enabled))
                    .col_expr(tool::Column::UpdatedAt, Expr::value(now()))
                    .filter(tool::Column::Id.eq(id.as_str()))
                    .exec(txn)
                    .await?;
                if res.rows_affected == 0 {
                    return Err(StoreError::not_found("tool", id));
                }
                tools_by_ids(txn, std::slice::from_ref(&id))
                    .await?
                    .pop()
                    .ok_or_else(|| StoreError::not_found("tool", id))
            })
        })
        .await
    }

    // ----- resources -----

    /// Resources by URI; disabled ones only with `include_disabled`.
    pub async fn list_resources(
        &self,
        include_disabled: bool,
    ) -> Result<Vec<Resource>, StoreError> {
        let mut q = resource::Entity::find();
        if !include_disabled {
            q = q.filter(resource::Column::Enabled.eq(true));
        }
        let mut out: Vec<Resource> = q
            .all(&self.db)
            .await?
            .into_iter()
            .map(resource_from)
            .collect();
        out.sort_by(|a, b| a.uri.cmp(&b.uri).then_with(|| a.id.cmp(&b.id)));
        Ok(out)
    }

    pub async fn get_resource(&self, id: &str) -> Result<Resource, StoreError> {
        resource::Entity::find_by_id(id.to_owned())
            .one(&self.db)
            .await?
            .map(resource_from)
            .ok_or_else(|| StoreError::not_found("resource", id))
    }

    /// The enabled resource with this URI (the oldest, if several gateways offer it).
    pub async fn get_resource_by_uri(&self, uri: &str) -> Result<Resource, StoreError> {
        resource::Entity::find()
            .filter(resource::Column::Uri.eq(uri))
            .filter(resource::Column::Enabled.eq(true))
            .order_by_asc(resource::Column::CreatedAt)
            .order_by_asc(resource::Column::Id)
            .one(&self.db)
            .await?
            .map(resource_from)
            .ok_or_else(|| StoreError::not_found("resource", uri))
    }

    pub async fn set_resource_enabled(
        &self,
        id: &str,
        enabled: bool,
    ) -> Result<Resource, StoreError> {
        let id = id.to_owned();
        self.write(REGISTRY, move |txn| {
            Box::pin(async move {
                let res = resource::Entity::update_many()
                    .col_expr(resource::Column::Enabled, Expr::value(enabled))
                    .col_expr(resource::Column::UpdatedAt, Expr::value(now()))
                    .filter(resource::Column::Id.eq(id.as_str()))
                    .exec(txn)
                    .await?;
                if res.rows_affected == 0 {
                    return Err(StoreError::not_found("resource", id));
                }
                resource::Entity::find_by_id(id.clone())
                    .one(txn)
                    .await?
                    .map(resource_from)
                    .ok_or_else(|| StoreError::not_found("resource", id))
            })
        })
        .await
    }

    // ----- resource templates -----

    /// Resource templates by URI template; disabled ones only with `include_disabled`.
    pub async fn list_resource_templates(
        &self,
        include_disabled: bool,
    ) -> Result<Vec<ResourceTemplate>, StoreError> {
        let mut q = resource_template::Entity::find();
        if !include_disabled {
            q = q.filter(resource_template::Column::Enabled.eq(true));
        }
        let mut out: Vec<ResourceTemplate> = q
            .all(&self.db)
            .await?
            .into_iter()
            .map(template_from)
            .collect();
        out.sort_by(|a, b| {
            a.uri_template
                .cmp(&b.uri_template)
                .then_with(|| a.id.cmp(&b.id))
        });
        Ok(out)
    }

    pub async fn get_resource_template(&self, id: &str) -> Result<ResourceTemplate, StoreError> {
        resource_template::Entity::find_by_id(id.to_owned())
            .one(&self.db)
            .await?
            .map(template_from)
            .ok_or_else(|| StoreError::not_found("resource template", id))
    }

    // ----- prompts -----

    /// Prompts by name; disabled ones only with `include_disabled`.
    pub async fn list_prompts(&self, include_disabled: bool) -> Result<Vec<Prompt>, StoreError> {
        let mut q = prompt::Entity::find();
        if !include_disabled {
            q = q.filter(prompt::Column::Enabled.eq(true));
        }
        let models = q.all(&self.db).await?;
        let gws = gateway_infos(&self.db).await?;
        let mut out: Vec<Prompt> = models
            .into_iter()
            .map(|m| {
                let gw = gws.get(&m.gateway_id).cloned().unwrap_or_else(missing_gw);
                prompt_from(m, &gw)
            })
            .collect();
        out.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(out)
    }

    pub async fn get_prompt(&self, id: &str) -> Result<Prompt, StoreError> {
        let m = prompt::Entity::find_by_id(id.to_owned())
            .one(&self.db)
            .await?
            .ok_or_else(|| StoreError::not_found("prompt", id))?;
        let gw = gateway_info(&self.db, &m.gateway_id).await?;
        Ok(prompt_from(m, &gw))
    }

    /// By the qualified name clients use, enabled or not.
    pub async fn get_prompt_by_name(&self, name: &str) -> Result<Prompt, StoreError> {
        let m = prompt::Entity::find()
            .filter(prompt::Column::Name.eq(name))
            .one(&self.db)
            .await?
            .ok_or_else(|| StoreError::not_found("prompt", name))?;
        let gw = gateway_info(&self.db, &m.gateway_id).await?;
        Ok(prompt_from(m, &gw))
    }

    pub async fn set_prompt_enabled(&self, id: &str, enabled: bool) -> Result<Prompt, StoreError> {
        let id = id.to_owned();
        self.write(REGISTRY, move |txn| {
            Box::pin(async move {
                let res = prompt::Entity::update_many()
                    .col_expr(prompt::Column::Enabled, Expr::value(enabled))
                    .col_expr(prompt::Column::UpdatedAt, Expr::value(now()))
                    .filter(prompt::Column::Id.eq(id.as_str()))
                    .exec(txn)
                    .await?;
                if res.rows_affected == 0 {
                    return Err(StoreError::not_found("prompt", id));
                }
                prompts_by_ids(txn, std::slice::from_ref(&id))
                    .await?
                    .pop()
                    .ok_or_else(|| StoreError::not_found("prompt", id))
            })
        })
        .await
    }
}
