//! Discovered items, normalised (deduplicated, named, defaults filled in), checked
//! against the names other gateways use, and inserted. Shared by registration and
//! refresh.

use std::collections::{HashMap, HashSet};

use sea_orm::{ColumnTrait, DatabaseTransaction, EntityTrait, QueryFilter, Set};
use serde_json::{json, Value};

use crate::entity::{prompt, resource, resource_template, tool};
use crate::slug::qualified_name;
use crate::types::{Discovered, DiscoveredResource, DiscoveredResourceTemplate};
use crate::{new_id, now, StoreError, CHUNK};

pub(super) struct PrepTool {
    pub(super) original_name: String,
    pub(super) name: String,
    pub(super) title: Option<String>,
    pub(super) description: Option<String>,
    pub(super) input_schema: Value,
    pub(super) output_schema: Option<Value>,
    pub(super) annotations: Value,
}

pub(super) struct PrepPrompt {
    pub(super) original_name: String,
    pub(super) name: String,
    pub(super) title: Option<String>,
    pub(super) description: Option<String>,
    pub(super) arguments: Value,
}

pub(super) struct Prepared {
    pub(super) tools: Vec<PrepTool>,
    pub(super) resources: Vec<DiscoveredResource>,
    pub(super) templates: Vec<DiscoveredResourceTemplate>,
    pub(super) prompts: Vec<PrepPrompt>,
    pub(super) capabilities: Option<Value>,
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

pub(super) fn prepare(d: Discovered, slug: &str, sep: &str) -> Result<Prepared, StoreError> {
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
pub(super) async fn check_tool_names_free(
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

pub(super) async fn check_prompt_names_free(
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

pub(super) async fn insert_tools(
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

pub(super) async fn insert_prompts(
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

pub(super) async fn insert_resources(
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

pub(super) async fn insert_templates(
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
