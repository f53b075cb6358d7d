//! Gateways in the store: registration with everything discovered (one transaction),
//! read, update (renames re-slug the gateway's tools and prompts), delete (cascades),
//! enable / disable (cascades to what it offers, as in ContextForge), reachability,
//! and [`Store::replace_discovered`] for refreshes (ids of unchanged names survive).
//!
//! # Layout
//! - this file: input checks shared by every write (name, URL, slug, a free gateway
//!   name), the row → [`Gateway`] conversion, and the small operations: get, list,
//!   delete.
//! - `discovered`: what an upstream offers, normalised (deduplicated, named, defaults
//!   filled in), checked against other gateways' names, and inserted.
//! - `register`: [`Store::register_gateway`].
//! - `update`: [`Store::update_gateway`] and the re-slugging of tools and prompts.
//! - `state`: [`Store::set_gateway_enabled`], [`Store::set_gateway_reachable`].
//! - `refresh`: [`Store::replace_discovered`].

mod discovered;
mod refresh;
mod register;
mod state;
mod update;

use std::collections::BTreeMap;

use sea_orm::{ColumnTrait, ConnectionTrait, DatabaseTransaction, EntityTrait, QueryFilter};
use serde_json::Value;

use crate::entity::gateway;
use crate::slug::slugify;
use crate::types::{Gateway, Transport};
use crate::versions::REGISTRY;
use crate::{Store, StoreError};

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

pub(super) fn check_url(value: &str) -> Result<String, StoreError> {
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

pub(super) fn slug_of(name: &str, sep: &str) -> Result<String, StoreError> {
    let slug = slugify(name, sep);
    if slug.is_empty() {
        return Err(StoreError::invalid(
            "name",
            format!("{name:?} has no ASCII letters or digits to make a slug from"),
        ));
    }
    Ok(slug)
}

pub(super) fn json_or<T: serde::Serialize>(v: &T) -> Value {
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

pub(super) async fn check_gateway_name_free(
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

impl Store {
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
}
