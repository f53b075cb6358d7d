//! Virtual servers: [`ServerRead`] and the schemas of server requests and answers.

use super::common::{b, dt, ns, object, s, strs, tag_list, tags, tags_in, time, TagRead};
use fleetgate_store::Server;
use serde::Serialize;
use serde_json::{json, Value};
use std::collections::HashMap;

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ServerRead {
    pub id: String,
    pub name: String,
    pub description: Option<String>,
    pub icon: Option<String>,
    pub created_at: Value,
    pub updated_at: Value,
    pub enabled: bool,
    /// The tools' names (ContextForge 1.x); their ids are in `associatedToolIds`.
    pub associated_tools: Vec<String>,
    pub associated_tool_ids: Vec<String>,
    pub associated_resources: Vec<String>,
    pub associated_prompts: Vec<String>,
    pub tags: Vec<TagRead>,
    pub visibility: &'static str,
}

impl ServerRead {
    /// `tool_names`: tool id → qualified name (ids without an entry are shown as is).
    pub fn new(s: &Server, tool_names: &HashMap<String, String>) -> ServerRead {
        ServerRead {
            id: s.id.clone(),
            name: s.name.clone(),
            description: s.description.clone(),
            icon: s.icon.clone(),
            created_at: time(&s.created_at),
            updated_at: time(&s.updated_at),
            enabled: s.enabled,
            associated_tools: s
                .associated_tools
                .iter()
                .map(|id| tool_names.get(id).cloned().unwrap_or_else(|| id.clone()))
                .collect(),
            associated_tool_ids: s.associated_tools.clone(),
            associated_resources: s.associated_resources.clone(),
            associated_prompts: s.associated_prompts.clone(),
            tags: tags(&s.tags),
            visibility: "public",
        }
    }
}

/// `ServerCreate`, `ServerUpdate`, `ServerRead`.
pub(super) fn add_schemas(add: &mut impl FnMut(&str, Value)) {
    let server_fields = vec![
        (
            "id",
            json!({"type": "string", "description": "Optional on create: 1-36 characters of [A-Za-z0-9_-]"}),
        ),
        ("name", s()),
        ("description", ns()),
        ("icon", ns()),
        ("tags", tags_in()),
        (
            "associated_tools",
            json!({"type": "array", "items": {"type": "string"}, "description": "Tool ids (a tool's qualified name is accepted too)"}),
        ),
        (
            "associated_resources",
            json!({"type": "array", "items": {"type": "string"}, "description": "Resource ids"}),
        ),
        (
            "associated_prompts",
            json!({"type": "array", "items": {"type": "string"}, "description": "Prompt ids (a prompt's qualified name is accepted too)"}),
        ),
    ];
    let mut server_create = object(server_fields.clone(), &["name"]);
    server_create["description"] = json!(
        "Bare, or wrapped as ContextForge 1.x sends it: {\"server\": {...}, \"team_id\": ..., \"visibility\": ...} (team_id and visibility are ignored). Keys in snake_case or camelCase."
    );
    add("ServerCreate", server_create);
    let mut server_update = object(
        server_fields
            .into_iter()
            .filter(|(k, _)| *k != "id")
            .collect(),
        &[],
    );
    server_update["description"] =
        json!("Every field optional; association lists given replace the old ones. Wrapped or bare, like ServerCreate.");
    add("ServerUpdate", server_update);
    add(
        "ServerRead",
        object(
            vec![
                ("id", s()),
                ("name", s()),
                ("description", ns()),
                ("icon", ns()),
                ("createdAt", dt()),
                ("updatedAt", dt()),
                ("enabled", b()),
                (
                    "associatedTools",
                    json!({"type": "array", "items": {"type": "string"}, "description": "The tools' qualified names"}),
                ),
                ("associatedToolIds", strs()),
                ("associatedResources", strs()),
                ("associatedPrompts", strs()),
                ("tags", tag_list()),
                ("visibility", s()),
            ],
            &[
                "id",
                "name",
                "enabled",
                "associatedTools",
                "associatedToolIds",
            ],
        ),
    );
}
