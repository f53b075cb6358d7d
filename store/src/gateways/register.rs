//! [`Store::register_gateway`]: a gateway and everything discovered on it, stored
//! together or not at all.

use sea_orm::{EntityTrait, Set};
use serde_json::json;

use super::discovered::{
    check_prompt_names_free, check_tool_names_free, insert_prompts, insert_resources,
    insert_templates, insert_tools, prepare,
};
use super::{
    check_gateway_name_free, check_name, check_url, gateway_from, json_or, load_gateway, slug_of,
};
use crate::entity::gateway;
use crate::types::{Discovered, Gateway, NewGateway};
use crate::versions::REGISTRY;
use crate::{new_id, now, Store, StoreError};

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
}
