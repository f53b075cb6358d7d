//! Virtual servers: a named selection of tools, resources and prompts, associated by
//! id (`server_tool_association`, ...). Associations go away with either side.

use std::collections::{BTreeSet, HashMap, HashSet};

use sea_orm::sea_query::Expr;
use sea_orm::{
    ActiveModelTrait, ColumnTrait, ConnectionTrait, DatabaseTransaction, EntityTrait, QueryFilter,
    QuerySelect, Set,
};
use serde_json::Value;

use crate::catalog::{prompts_by_ids, resources_by_ids, tools_by_ids};
use crate::entity::{prompt, resource, server, server_prompt, server_resource, server_tool, tool};
use crate::gateways::check_name;
use crate::types::*;
use crate::versions::REGISTRY;
use crate::{new_id, now, Store, StoreError, CHUNK};

fn check_server_id(id: &str) -> Result<String, StoreError> {
    let id = id.trim();
    let ok = !id.is_empty()
        && id.len() <= 36
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
    if !ok {
        return Err(StoreError::invalid(
            "id",
            format!("{id:?}: a server id is 1 to 36 characters of A-Z, a-z, 0-9, '-' and '_'"),
        ));
    }
    Ok(id.to_owned())
}

/// Deduplicated, sorted ids.
fn unique(ids: Vec<String>) -> Vec<String> {
    ids.into_iter()
        .map(|s| s.trim().to_owned())
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect()
}

/// Fail with `Invalid { field, .. }` naming the first id in `ids` that is not a row of
/// `E`.
macro_rules! check_exist {
    ($txn:expr, $module:ident, $ids:expr, $field:expr, $kind:expr) => {{
        let ids: &[String] = $ids;
        let mut found: HashSet<String> = HashSet::new();
        for chunk in ids.chunks(CHUNK) {
            let rows: Vec<String> = $module::Entity::find()
                .select_only()
                .column($module::Column::Id)
                .filter($module::Column::Id.is_in(chunk.iter().cloned()))
                .into_tuple()
                .all($txn)
                .await?;
            found.extend(rows);
        }
        if let Some(missing) = ids.iter().find(|id| !found.contains(*id)) {
            return Err(StoreError::invalid(
                $field,
                format!("unknown {} id {missing:?}", $kind),
            ));
        }
    }};
}

async fn check_server_name_free(
    txn: &DatabaseTransaction,
    name: &str,
    except_id: Option<&str>,
) -> Result<(), StoreError> {
    let mut q = server::Entity::find().filter(server::Column::Name.eq(name));
    if let Some(id) = except_id {
        q = q.filter(server::Column::Id.ne(id));
    }
    if q.one(txn).await?.is_some() {
        return Err(StoreError::Conflict(format!(
            "server name {name:?} already exists"
        )));
    }
    Ok(())
}

async fn set_tools(
    txn: &DatabaseTransaction,
    server_id: &str,
    ids: &[String],
) -> Result<(), StoreError> {
    server_tool::Entity::delete_many()
        .filter(server_tool::Column::ServerId.eq(server_id))
        .exec(txn)
        .await?;
    let rows: Vec<server_tool::ActiveModel> = ids
        .iter()
        .map(|t| server_tool::ActiveModel {
            server_id: Set(server_id.to_owned()),
            tool_id: Set(t.clone()),
        })
        .collect();
    for chunk in rows.chunks(CHUNK) {
        server_tool::Entity::insert_many(chunk.to_vec())
            .exec_without_returning(txn)
            .await?;
    }
    Ok(())
}

async fn set_resources(
    txn: &DatabaseTransaction,
    server_id: &str,
    ids: &[String],
) -> Result<(), StoreError> {
    server_resource::Entity::delete_many()
        .filter(server_resource::Column::ServerId.eq(server_id))
        .exec(txn)
        .await?;
    let rows: Vec<server_resource::ActiveModel> = ids
        .iter()
        .map(|r| server_resource::ActiveModel {
            server_id: Set(server_id.to_owned()),
            resource_id: Set(r.clone()),
        })
        .collect();
    for chunk in rows.chunks(CHUNK) {
        server_resource::Entity::insert_many(chunk.to_vec())
            .exec_without_returning(txn)
            .await?;
    }
    Ok(())
}

async fn set_prompts(
    txn: &DatabaseTransaction,
    server_id: &str,
    ids: &[String],
) -> Result<(), StoreError> {
    server_prompt::Entity::delete_many()
        .filter(server_prompt::Column::ServerId.eq(server_id))
        .exec(txn)
        .await?;
    let rows: Vec<server_prompt::ActiveModel> = ids
        .iter()
        .map(|p| server_prompt::ActiveModel {
            server_id: Set(server_id.to_owned()),
            prompt_id: Set(p.clone()),
        })
        .collect();
    for chunk in rows.chunks(CHUNK) {
        server_prompt::Entity::insert_many(chunk.to_vec())
            .exec_without_returning(txn)
            .await?;
    }
    Ok(())
}

#[derive(Default)]
struct Assoc {
    tools: Vec<String>,
    resources: Vec<String>,
    prompts: Vec<String>,
}

/// Associations of the given servers (all servers if `None`), ids sorted.
async fn associations<C: ConnectionTrait>(
    db: &C,
    server_id: Option<&str>,
) -> Result<HashMap<String, Assoc>, StoreError> {
    let mut map: HashMap<String, Assoc> = HashMap::new();
    let mut q = server_tool::Entity::find();
    if let Some(id) = server_id {
        q = q.filter(server_tool::Column::ServerId.eq(id));
    }
    for r in q.all(db).await? {
        map.entry(r.server_id).or_default().tools.push(r.tool_id);
    }
    let mut q = server_resource::Entity::find();
    if let Some(id) = server_id {
        q = q.filter(server_resource::Column::ServerId.eq(id));
    }
    for r in q.all(db).await? {
        map.entry(r.server_id)
            .or_default()
            .resources
            .push(r.resource_id);
    }
    let mut q = server_prompt::Entity::find();
    if let Some(id) = server_id {
        q = q.filter(server_prompt::Column::ServerId.eq(id));
    }
    for r in q.all(db).await? {
        map.entry(r.server_id)
            .or_default()
            .prompts
            .push(r.prompt_id);
    }
    for a in map.values_mut() {
        a.tools.sort();
        a.resources.sort();
        a.prompts.sort();
    }
    Ok(map)
}

fn server_from(m: server::Model, assoc: Assoc) -> Result<Server, StoreError> {
    let tags: Vec<String> = match &m.tags {
        Value::Null => Vec::new(),
        v => serde_json::from_value(v.clone())
            .map_err(|e| StoreError::Internal(format!("server {}: bad tags: {e}", m.id)))?,
    };
    Ok(Server {
        id: m.id,
        name: m.name,
        description: m.description,
        icon: m.icon,
        tags,
        enabled: m.enabled,
        created_at: m.created_at,
        updated_at: m.updated_at,
        associated_tools: assoc.tools,
        associated_resources: assoc.resources,
        associated_prompts: assoc.prompts,
    })
}

async fn load_server<C: ConnectionTrait>(db: &C, id: &str) -> Result<Server, StoreError> {
    let m = server::Entity::find_by_id(id.to_owned())
        .one(db)
        .await?
        .ok_or_else(|| StoreError::not_found("server", id))?;
    let assoc = associations(db, Some(id))
        .await?
        .remove(id)
        .unwrap_or_default();
    server_from(m, assoc)
}

async fn ensure_server<C: ConnectionTrait>(db: &C, id: &str) -> Result<(), StoreError> {
    server::Entity::find_by_id(id.to_owned())
        .one(db)
        .await?
        .map(|_| ())
        .ok_or_else(|| StoreError::not_found("server", id))
}

impl Store {
    /// Create a virtual server. Errors: `Invalid` (bad name or id, or an unknown
    /// associated id — `field` is `associated_tools` / `associated_resources` /
    /// `associated_prompts` and the message names the id), `Conflict` (name or id taken).
    pub async fn create_server(&self, new: NewServer) -> Result<Server, StoreError> {
        let name = check_name("name", &new.name)?;
        let id = match new.id.as_deref() {
            Some(id) => check_server_id(id)?,
            None => new_id(),
        };
        let tool_ids = unique(new.tool_ids);
        let resource_ids = unique(new.resource_ids);
        let prompt_ids = unique(new.prompt_ids);
        let tags = serde_json::to_value(&new.tags).unwrap_or(Value::Null);
        self.write(REGISTRY, move |txn| {
            Box::pin(async move {
                check_server_name_free(txn, &name, None).await?;
                if server::Entity::find_by_id(id.clone())
                    .one(txn)
                    .await?
                    .is_some()
                {
                    return Err(StoreError::Conflict(format!(
                        "server id {id:?} already exists"
                    )));
                }
                check_exist!(txn, tool, &tool_ids, "associated_tools", "tool");
                check_exist!(
                    txn,
                    resource,
                    &resource_ids,
                    "associated_resources",
                    "resource"
                );
                check_exist!(txn, prompt, &prompt_ids, "associated_prompts", "prompt");
                let ts = now();
                server::Entity::insert(server::ActiveModel {
                    id: Set(id.clone()),
                    name: Set(name),
                    description: Set(new.description),
                    icon: Set(new.icon),
                    tags: Set(tags),
                    enabled: Set(true),
                    created_at: Set(ts),
                    updated_at: Set(ts),
                })
                .exec_without_returning(txn)
                .await?;
                set_tools(txn, &id, &tool_ids).await?;
                set_resources(txn, &id, &resource_ids).await?;
                set_prompts(txn, &id, &prompt_ids).await?;
                load_server(txn, &id).await
            })
        })
        .await
    }

    pub async fn get_server(&self, id: &str) -> Result<Server, StoreError> {
        load_server(&self.db, id).await
    }

    /// Servers by name; disabled ones only with `include_disabled`.
    pub async fn list_servers(&self, include_disabled: bool) -> Result<Vec<Server>, StoreError> {
        let mut q = server::Entity::find();
        if !include_disabled {
            q = q.filter(server::Column::Enabled.eq(true));
        }
        let models = q.all(&self.db).await?;
        let mut assoc = associations(&self.db, None).await?;
        let mut out = models
            .into_iter()
            .map(|m| {
                let a = assoc.remove(&m.id).unwrap_or_default();
                server_from(m, a)
            })
            .collect::<Result<Vec<_>, _>>()?;
        out.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(out)
    }

    /// Partial update; association lists given replace the old ones entirely.
    pub async fn update_server(
        &self,
        id: &str,
        update: ServerUpdate,
    ) -> Result<Server, StoreError> {
        let name = update
            .name
            .as_deref()
            .map(|n| check_name("name", n))
            .transpose()?;
        let tool_ids = update.tool_ids.map(unique);
        let resource_ids = update.resource_ids.map(unique);
        let prompt_ids = update.prompt_ids.map(unique);
        let id = id.to_owned();
        self.write(REGISTRY, move |txn| {
            Box::pin(async move {
                let current = server::Entity::find_by_id(id.clone())
                    .one(txn)
                    .await?
                    .ok_or_else(|| StoreError::not_found("server", id.as_str()))?;
                let mut am: server::ActiveModel = current.clone().into();
                if let Some(name) = name {
                    if name != current.name {
                        check_server_name_free(txn, &name, Some(&id)).await?;
                        am.name = Set(name);
                    }
                }
                if let Some(d) = update.description {
                    am.description = Set(d);
                }
                if let Some(i) = update.icon {
                    am.icon = Set(i);
                }
                if let Some(tags) = update.tags {
                    am.tags = Set(serde_json::to_value(&tags).unwrap_or(Value::Null));
                }
                if let Some(ids) = &tool_ids {
                    check_exist!(txn, tool, ids, "associated_tools", "tool");
                    set_tools(txn, &id, ids).await?;
                }
                if let Some(ids) = &resource_ids {
                    check_exist!(txn, resource, ids, "associated_resources", "resource");
                    set_resources(txn, &id, ids).await?;
                }
                if let Some(ids) = &prompt_ids {
                    check_exist!(txn, prompt, ids, "associated_prompts", "prompt");
                    set_prompts(txn, &id, ids).await?;
                }
                am.updated_at = Set(now());
                am.update(txn).await?;
                load_server(txn, &id).await
            })
        })
        .await
    }

    /// Delete a server (its associations go with it; the tools etc. stay).
    pub async fn delete_server(&self, id: &str) -> Result<(), StoreError> {
        let id = id.to_owned();
        self.write(REGISTRY, move |txn| {
            Box::pin(async move {
                let res = server::Entity::delete_by_id(id.clone()).exec(txn).await?;
                if res.rows_affected == 0 {
                    return Err(StoreError::not_found("server", id));
                }
                Ok(())
            })
        })
        .await
    }

    pub async fn set_server_enabled(&self, id: &str, enabled: bool) -> Result<Server, StoreError> {
        let id = id.to_owned();
        self.write(REGISTRY, move |txn| {
            Box::pin(async move {
                let res = server::Entity::update_many()
                    .col_expr(server::Column::Enabled, Expr::value(enabled))
                    .col_expr(server::Column::UpdatedAt, Expr::value(now()))
                    .filter(server::Column::Id.eq(id.as_str()))
                    .exec(txn)
                    .await?;
                if res.rows_affected == 0 {
                    return Err(StoreError::not_found("server", id));
                }
                load_server(txn, &id).await
            })
        })
        .await
    }

    /// The server's tools (enabled or not: filter on [`Tool::enabled`]), by name.
    pub async fn server_tools(&self, server_id: &str) -> Result<Vec<Tool>, StoreError> {
        ensure_server(&self.db, server_id).await?;
        let ids: Vec<String> = server_tool::Entity::find()
            .select_only()
            .column(server_tool::Column::ToolId)
            .filter(server_tool::Column::ServerId.eq(server_id))
            .into_tuple()
            .all(&self.db)
            .await?;
        tools_by_ids(&self.db, &ids).await
    }

    /// The server's resources (enabled or not), by URI.
    pub async fn server_resources(&self, server_id: &str) -> Result<Vec<Resource>, StoreError> {
        ensure_server(&self.db, server_id).await?;
        let ids: Vec<String> = server_resource::Entity::find()
            .select_only()
            .column(server_resource::Column::ResourceId)
            .filter(server_resource::Column::ServerId.eq(server_id))
            .into_tuple()
            .all(&self.db)
            .await?;
        resources_by_ids(&self.db, &ids).await
    }

    /// The server's prompts (enabled or not), by name.
    pub async fn server_prompts(&self, server_id: &str) -> Result<Vec<Prompt>, StoreError> {
        ensure_server(&self.db, server_id).await?;
        let ids: Vec<String> = server_prompt::Entity::find()
            .select_only()
            .column(server_prompt::Column::PromptId)
            .filter(server_prompt::Column::ServerId.eq(server_id))
            .into_tuple()
            .all(&self.db)
            .await?;
        prompts_by_ids(&self.db, &ids).await
    }
}
