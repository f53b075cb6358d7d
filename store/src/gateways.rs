//! Gateways: registration with everything discovered (one transaction), read, update
//! (renames re-slug the gateway's tools and prompts), delete (cascades), enable /
//! disable (cascades to what it offers, as in ContextForge), reachability, and
//! [`Store::replace_discovered`] for refreshes (ids of unchanged names survive).

use std::collections::{BTreeMap, HashMap, HashSet};

use sea_orm::sea_query::Expr;
use sea_orm::{
    ActiveModelTrait, ColumnTrait, ConnectionTrait, DatabaseTransaction, EntityTrait, QueryFilter,
    Set,
};
use serde_json::{json, Value};

use crate::entity::{gateway, prompt, resource, resource_template, tool};
use crate::slug::{qualified_name, slugify};
use crate::types::*;
use crate::versions::REGISTRY;
use crate::{new_id, now, Store, StoreError, CHUNK};

const MAX_NAME: usize = 255;

/// A trimmed, non-empty name of at most 255 characters.
pub(crate) fn check_name(field: &str, value: &str) -> Result<String, StoreError> {
    let v = value.trim();
    if v.is_empty() {
        return Err(StoreError::invalid(field, "must not be empty"));
    }
    if v.chars().count() > MAX_NAME {
        return Err(StoreError::invalid(
            field,
            format!("must be at most {MAX_NAME} characters"),
        ));
    }
    Ok(v.to_owned())
}

fn check_url(value: &str) -> Result<String, StoreError> {
    let v = value.trim();
    match url::Url::parse(v) {
        Ok(u) if matches!(u.scheme(), "http" | "https") && u.host().is_some() => Ok(v.to_owned()),
        Ok(u) => Err(StoreError::invalid(
            "url",
            format!(
                "{v:?} has scheme {:?}: only http:// and https:// URLs with a host are accepted",
                u.scheme()
            ),
        )),
        Err(e) => Err(StoreError::invalid(
            "url",
            format!("{v:?} is not a URL: {e}"),
        )),
    }
}

fn slug_of(name: &str, sep: &str) -> Result<String, StoreError> {
    let slug = slugify(name, sep);
    if slug.is_empty() {
        return Err(StoreError::invalid(
            "name",
            format!("{name:?} has no ASCII letters or digits to make a slug from"),
        ));
    }
    Ok(slug)
}

fn json_or<T: serde::Serialize>(v: &T) -> Value {
    serde_json::to_value(v).unwrap_or(Value::Null)
}

pub(crate) fn gateway_from(m: gateway::Model) -> Result<Gateway, StoreError> {
    let corrupt =
        |what: &str, e: String| StoreError::Internal(format!("gateway {}: bad {what}: {e}", m.id));
    let transport = m
        .transport
        .parse::<Transport>()
        .map_err(|e| corrupt("transport", e))?;
    let auth_headers: BTreeMap<String, String> = match &m.auth_headers {
        Value::Null => BTreeMap::new(),
        v => {
            serde_json::from_value(v.clone()).map_err(|e| corrupt("auth_headers", e.to_string()))?
        }
    };
    let tags: Vec<String> = match &m.tags {
        Value::Null => Vec::new(),
        v => serde_json::from_value(v.clone()).map_err(|e| corrupt("tags", e.to_string()))?,
    };
    Ok(Gateway {
        id: m.id,
        name: m.name,
        slug: m.slug,
        url: m.url,
        description: m.description,
        transport,
        auth_type: m.auth_type,
        auth_headers,
        capabilities: m.capabilities,
        tags,
        enabled: m.enabled,
        reachable: m.reachable,
        created_at: m.created_at,
        updated_at: m.updated_at,
        last_seen: m.last_seen,
    })
}

pub(crate) async fn load_gateway<C: ConnectionTrait>(
    db: &C,
    id: &str,
) -> Result<gateway::Model, StoreError> {
    gateway::Entity::find_by_id(id.to_owned())
        .one(db)
        .await?
        .ok_or_else(|| StoreError::not_found("gateway", id))
}

// ---------------------------------------------------------------------------
// Discovered items, normalised (deduplicated, named, defaults filled in).
// ---------------------------------------------------------------------------

struct PrepTool {
    original_name: String,
    name: String,
    title: Option<String>,
    description: Option<String>,
    input_schema: Value,
    output_schema: Option<Value>,
    annotations: Value,
}

struct PrepPrompt {
    original_name: String,
    name: String,
    title: Option<String>,
    description: Option<String>,
    arguments: Value,
}

struct Prepared {
    tools: Vec<PrepTool>,
    resources: Vec<DiscoveredResource>,
    templates: Vec<DiscoveredResourceTemplate>,
    prompts: Vec<PrepPrompt>,
    capabilities: Option<Value>,
}

/// Keep the first of each key; drop items with an empty key.
fn dedup<T>(items: Vec<T>, kind: &str, key: impl Fn(&T) -> &str) -> Vec<T> {
    let mut seen = HashSet::new();
    let mut out = Vec::with_capacity(items.len());
    for item in items {
        let k = key(&item).to_owned();
        if k.trim().is_empty() {
            tracing::warn!(kind, "ignoring a discovered {kind} with an empty name/uri");
            continue;
        }
        if seen.insert(k.clone()) {
            out.push(item);
        } else {
            tracing::warn!(kind, key = %k, "ignoring a duplicate discovered {kind}");
        }
    }
    out
}

/// Two different upstream names that slugify to the same qualified name.
fn check_unique_names<'a>(
    kind: &str,
    pairs: impl Iterator<Item = (&'a str, &'a str)>,
) -> Result<(), StoreError> {
    let mut by_name: HashMap<&str, &str> = HashMap::new();
    for (name, original) in pairs {
        if let Some(first) = by_name.insert(name, original) {
            return Err(StoreError::Conflict(format!(
                "{kind} name {name:?} is produced by both {first:?} and {original:?}"
            )));
        }
    }
    Ok(())
}

fn prepare(d: Discovered, slug: &str, sep: &str) -> Result<Prepared, StoreError> {
    let tools: Vec<PrepTool> = dedup(d.tools, "tool", |t| t.name.as_str())
        .into_iter()
        .map(|t| PrepTool {
            name: qualified_name(slug, &t.name, sep),
            original_name: t.name,
            title: t.title,
            description: t.description,
            input_schema: if t.input_schema.is_null() {
                json!({"type": "object"})
            } else {
                t.input_schema
            },
            output_schema: t.output_schema.filter(|v| !v.is_null()),
            annotations: if t.annotations.is_null() {
                json!({})
            } else {
                t.annotations
            },
        })
        .collect();
    check_unique_names(
        "tool",
        tools
            .iter()
            .map(|t| (t.name.as_str(), t.original_name.as_str())),
    )?;
    let prompts: Vec<PrepPrompt> = dedup(d.prompts, "prompt", |p| p.name.as_str())
        .into_iter()
        .map(|p| PrepPrompt {
            name: qualified_name(slug, &p.name, sep),
            original_name: p.name,
            title: p.title,
            description: p.description,
            arguments: if p.arguments.is_null() {
                json!([])
            } else {
                p.arguments
            },
        })
        .collect();
    check_unique_names(
        "prompt",
        prompts
            .iter()
            .map(|p| (p.name.as_str(), p.original_name.as_str())),
    )?;
    Ok(Prepared {
        tools,
        resources: dedup(d.resources, "resource", |r| r.uri.as_str()),
        templates: dedup(d.resource_templates, "resource template", |t| {
            t.uri_template.as_str()
        }),
        prompts,
        capabilities: d.capabilities,
    })
}

/// Fail with `Conflict` if another gateway already has a tool named like one of `names`.
async fn check_tool_names_free(
    txn: &DatabaseTransaction,
    gateway_id: &str,
    names: &[&str],
) -> Result<(), StoreError> {
    for chunk in names.chunks(CHUNK) {
        if let Some(t) = tool::Entity::find()
            .filter(tool::Column::Name.is_in(chunk.iter().copied()))
            .filter(tool::Column::GatewayId.ne(gateway_id))
            .one(txn)
            .await?
        {
            return Err(StoreError::Conflict(format!(
                "tool name {:?} is already used by a tool of gateway {}",
                t.name, t.gateway_id
            )));
        }
    }
    Ok(())
}

async fn check_prompt_names_free(
    txn: &DatabaseTransaction,
    gateway_id: &str,
    names: &[&str],
) -> Result<(), StoreError> {
    for chunk in names.chunks(CHUNK) {
        if let Some(p) = prompt::Entity::find()
            .filter(prompt::Column::Name.is_in(chunk.iter().copied()))
            .filter(prompt::Column::GatewayId.ne(gateway_id))
            .one(txn)
            .await?
        {
            return Err(StoreError::Conflict(format!(
                "prompt name {:?} is already used by a prompt of gateway {}",
                p.name, p.gateway_id
            )));
        }
    }
    Ok(())
}

async fn check_gateway_name_free(
    txn: &DatabaseTransaction,
    name: &str,
    slug: &str,
    except_id: Option<&str>,
) -> Result<(), StoreError> {
    let mut q = gateway::Entity::find().filter(
        gateway::Column::Name
            .eq(name)
            .or(gateway::Column::Slug.eq(slug)),
    );
    if let Some(id) = except_id {
        q = q.filter(gateway::Column::Id.ne(id));
    }
    if let Some(other) = q.one(txn).await? {
        return Err(if other.name == name {
            StoreError::Conflict(format!("gateway name {name:?} already exists"))
        } else {
            StoreError::Conflict(format!(
                "gateway name {name:?} makes the slug {slug:?}, which gateway {:?} already has",
                other.name
            ))
        });
    }
    Ok(())
}

async fn insert_tools(
    txn: &DatabaseTransaction,
    gateway_id: &str,
    enabled: bool,
    tools: Vec<PrepTool>,
) -> Result<(), StoreError> {
    let ts = now();
    let models: Vec<tool::ActiveModel> = tools
        .into_iter()
        .map(|t| tool::ActiveModel {
            id: Set(new_id()),
            gateway_id: Set(gateway_id.to_owned()),
            original_name: Set(t.original_name),
            name: Set(t.name),
            title: Set(t.title),
            description: Set(t.description),
            input_schema: Set(t.input_schema),
            output_schema: Set(t.output_schema),
            annotations: Set(t.annotations),
            enabled: Set(enabled),
            created_at: Set(ts),
            updated_at: Set(ts),
        })
        .collect();
    for chunk in models.chunks(CHUNK) {
        tool::Entity::insert_many(chunk.to_vec())
            .exec_without_returning(txn)
            .await?;
    }
    Ok(())
}

async fn insert_prompts(
    txn: &DatabaseTransaction,
    gateway_id: &str,
    enabled: bool,
    prompts: Vec<PrepPrompt>,
) -> Result<(), StoreError> {
    let ts = now();
    let models: Vec<prompt::ActiveModel> = prompts
        .into_iter()
        .map(|p| prompt::ActiveModel {
            id: Set(new_id()),
            gateway_id: Set(gateway_id.to_owned()),
            original_name: Set(p.original_name),
            name: Set(p.name),
            title: Set(p.title),
            description: Set(p.description),
            arguments: Set(p.arguments),
            enabled: Set(enabled),
            created_at: Set(ts),
            updated_at: Set(ts),
        })
        .collect();
    for chunk in models.chunks(CHUNK) {
        prompt::Entity::insert_many(chunk.to_vec())
            .exec_without_returning(txn)
            .await?;
    }
    Ok(())
}

async fn insert_resources(
    txn: &DatabaseTransaction,
    gateway_id: &str,
    enabled: bool,
    resources: Vec<DiscoveredResource>,
) -> Result<(), StoreError> {
    let ts = now();
    let models: Vec<resource::ActiveModel> = resources
        .into_iter()
        .map(|r| resource::ActiveModel {
            id: Set(new_id()),
            gateway_id: Set(gateway_id.to_owned()),
            uri: Set(r.uri),
            name: Set(r.name),
            description: Set(r.description),
            mime_type: Set(r.mime_type),
            size: Set(r.size),
            enabled: Set(enabled),
            created_at: Set(ts),
            updated_at: Set(ts),
        })
        .collect();
    for chunk in models.chunks(CHUNK) {
        resource::Entity::insert_many(chunk.to_vec())
            .exec_without_returning(txn)
            .await?;
    }
    Ok(())
}

async fn insert_templates(
    txn: &DatabaseTransaction,
    gateway_id: &str,
    enabled: bool,
    templates: Vec<DiscoveredResourceTemplate>,
) -> Result<(), StoreError> {
    let ts = now();
    let models: Vec<resource_template::ActiveModel> = templates
        .into_iter()
        .map(|t| resource_template::ActiveModel {
            id: Set(new_id()),
            gateway_id: Set(gateway_id.to_owned()),
            uri_template: Set(t.uri_template),
            name: Set(t.name),
            description: Set(t.description),
            mime_type: Set(t.mime_type),
            enabled: Set(enabled),
            created_at: Set(ts),
            updated_at: Set(ts),
        })
        .collect();
    for chunk in models.chunks(CHUNK) {
        resource_template::Entity::insert_many(chunk.to_vec())
            .exec_without_returning(txn)
            .await?;
    }
    Ok(())
}

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
    /// Register a gateway together with everything discovered on it, in one
    /// transaction: either all of it is stored or nothing is.
    ///
    /// Errors: `Invalid` (empty/long name, name without letters or digits, non-http URL),
    /// `Conflict` (name or slug taken — message `gateway name "…" already exists` —, or a
    /// tool/prompt name already used by another gateway).
    pub async fn register_gateway(
        &self,
        new: NewGateway,
        discovered: Discovered,
    ) -> Result<Gateway, StoreError> {
        let name = check_name("name", &new.name)?;
        let slug = slug_of(&name, self.sep())?;
        let url = check_url(&new.url)?;
        let prepared = prepare(discovered, &slug, self.sep())?;
        self.write(REGISTRY, move |txn| {
            Box::pin(async move {
                check_gateway_name_free(txn, &name, &slug, None).await?;
                let id = new_id();
                let tool_names: Vec<&str> =
                    prepared.tools.iter().map(|t| t.name.as_str()).collect();
                check_tool_names_free(txn, &id, &tool_names).await?;
                let prompt_names: Vec<&str> =
                    prepared.prompts.iter().map(|p| p.name.as_str()).collect();
                check_prompt_names_free(txn, &id, &prompt_names).await?;

                let ts = now();
                let model = gateway::ActiveModel {
                    id: Set(id.clone()),
                    name: Set(name),
                    slug: Set(slug),
                    url: Set(url),
                    description: Set(new.description),
                    transport: Set(new.transport.as_str().to_owned()),
                    auth_type: Set(new.auth_type),
                    auth_headers: Set(json_or(&new.auth_headers)),
                    capabilities: Set(prepared.capabilities.unwrap_or_else(|| json!({}))),
                    tags: Set(json_or(&new.tags)),
                    enabled: Set(true),
                    reachable: Set(true),
                    created_at: Set(ts),
                    updated_at: Set(ts),
                    last_seen: Set(Some(ts)),
                };
                gateway::Entity::insert(model)
                    .exec_without_returning(txn)
                    .await?;
                insert_tools(txn, &id, true, prepared.tools).await?;
                insert_resources(txn, &id, true, prepared.resources).await?;
                insert_templates(txn, &id, true, prepared.templates).await?;
                insert_prompts(txn, &id, true, prepared.prompts).await?;
                gateway_from(load_gateway(txn, &id).await?)
            })
        })
        .await
    }

    pub async fn get_gateway(&self, id: &str) -> Result<Gateway, StoreError> {
        gateway_from(load_gateway(&self.db, id).await?)
    }

    /// All gateways, by name; disabled ones only with `include_disabled`.
    pub async fn list_gateways(&self, include_disabled: bool) -> Result<Vec<Gateway>, StoreError> {
        let mut q = gateway::Entity::find();
        if !include_disabled {
            q = q.filter(gateway::Column::Enabled.eq(true));
        }
        let mut out = q
            .all(&self.db)
            .await?
            .into_iter()
            .map(gateway_from)
            .collect::<Result<Vec<_>, _>>()?;
        out.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(out)
    }

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

    /// Delete a gateway and (by cascade) its tools, resources, templates, prompts and
    /// their virtual-server associations.
    pub async fn delete_gateway(&self, id: &str) -> Result<(), StoreError> {
        let id = id.to_owned();
        self.write(REGISTRY, move |txn| {
            Box::pin(async move {
                let res = gateway::Entity::delete_by_id(id.clone()).exec(txn).await?;
                if res.rows_affected == 0 {
                    return Err(StoreError::not_found("gateway", id));
                }
                Ok(())
            })
        })
        .await
    }

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
