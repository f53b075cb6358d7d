//! The wire shapes: ContextForge's `GatewayRead`, `ToolRead`, `ResourceRead`,
//! `PromptRead`, `ServerRead` (camelCase, as FastAPI serialises them by alias),
//! built from the store's types, and their JSON Schemas for `/openapi.json`.
//!
//! Fields fleetgate has no concept of (teams, metrics, audit fields, ...) are left
//! out rather than faked, except for the few constants clients rely on
//! (`visibility: "public"`, `integrationType: "MCP"`, ...). Tags are
//! `[{"id", "label"}]` as in ContextForge 1.x. Auth secrets are never echoed: the
//! header names are, with masked values.
//!
//! # Layout
//! One file per resource, each holding its `*Read` shapes and the JSON Schemas of
//! what it reads and writes, so a field changes in one place:
//! - `common`: tags, the masked secret, timestamps, the schema-building helpers
//!   and the shared schemas (`Tag`, `Detail`, `FieldError`, `Status`, `StateChange`).
//! - `gateways`: [`GatewayRead`] and the gateway schemas.
//! - `catalog`: [`ToolRead`], [`ResourceRead`], [`ResourceTemplateRead`],
//!   [`PromptRead`] (what gateways offer) and their schemas.
//! - `servers`: [`ServerRead`] and the virtual-server schemas.
//! - this file: [`schemas`], every component in one map.

mod catalog;
mod common;
mod gateways;
mod servers;

pub use catalog::{
    gateway_infos, GatewayInfos, PromptRead, ResourceRead, ResourceTemplateRead, ToolRead,
};
pub use gateways::{Counts, GatewayRead};
pub use servers::ServerRead;

use serde_json::Value;

/// Every schema the API names, by component name.
pub fn schemas() -> Value {
    let mut out = serde_json::Map::new();
    let mut add = |name: &str, v: Value| {
        out.insert(name.to_owned(), v);
    };
    common::add_schemas(&mut add);
    gateways::add_schemas(&mut add);
    catalog::add_schemas(&mut add);
    servers::add_schemas(&mut add);
    Value::Object(out)
}
