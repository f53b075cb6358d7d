//! The wire shapes: ContextForge's `GatewayRead`, `ToolRead`, `ResourceRead`,
//! `PromptRead`, `ServerRead` (camelCase, as FastAPI serialises them by alias),
//! built from the store's types, and their JSON Schemas for `/openapi.json`.
//!
//! Fields fleetgate has no concept of (teams, metrics, audit fields, ...) are left
//! out rather than faked, except for the few constants clients rely on
//! (`visibility: "public"`, `integrationType: "MCP"`, ...). Tags are
//! `[{"id", "label"}]` as in ContextForge 1.x. Auth secrets are never echoed: the
//! header names are, with masked values.

use crate::http::rest::error::tag_id;
use fleetgate_store::{Gateway, Prompt, Resource, ResourceTemplate, Server, Tool};
use serde::Serialize;
use serde_json::{json, Value};
use std::collections::HashMap;

/// ContextForge's `settings.masked_auth_value`.
pub const MASKED: &str = "*****";

#[derive(Debug, Clone, Serialize)]
pub struct TagRead {
    pub id: String,
    pub label: String,
}

pub fn tags(labels: &[String]) -> Vec<TagRead> {
    labels
        .iter()
        .map(|l| TagRead {
            id: tag_id(l),
            label: l.clone(),
        })
        .collect()
}

fn time<T: Serialize>(t: &T) -> Value {
    serde_json::to_value(t).unwrap_or(Value::Null)
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AuthHeaderRead {
    pub key: String,
    pub value: &'static str,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct GatewayRead {
    pub id: String,
    pub name: String,
    pub slug: String,
    pub url: String,
    pub description: Option<String>,
    pub transport: &'static str,
    pub capabilities: Value,
    pub created_at: Value,
    pub updated_at: Value,
    pub enabled: bool,
    pub reachable: bool,
    pub last_seen: Value,
    pub auth_type: Option<String>,
    pub auth_value: Option<&'static str>,
    pub auth_headers: Option<Vec<AuthHeaderRead>>,
    pub tags: Vec<TagRead>,
    pub visibility: &'static str,
    pub status: &'static str,
    pub gateway_mode: &'static str,
    pub tool_count: usize,
    pub resource_count: usize,
    pub prompt_count: usize,
}

/// How many tools, resources and prompts each gateway has.
#[derive(Debug, Clone, Copy, Default)]
pub struct Counts {
    pub tools: usize,
    pub resources: usize,
    pub prompts: usize,
}

impl GatewayRead {
    pub fn new(g: &Gateway, counts: Counts) -> GatewayRead {
        let headers: Vec<AuthHeaderRead> = g
            .auth_headers
            .keys()
            .map(|k| AuthHeaderRead {
                key: k.clone(),
                value: MASKED,
            })
            .collect();
        GatewayRead {
            id: g.id.clone(),
            name: g.name.clone(),
            slug: g.slug.clone(),
            url: g.url.clone(),
            description: g.description.clone(),
            transport: g.transport.as_str(),
            capabilities: g.capabilities.clone(),
            created_at: time(&g.created_at),
            updated_at: time(&g.updated_at),
            enabled: g.enabled,
            reachable: g.reachable,
            last_seen: time(&g.last_seen),
            auth_type: g.auth_type.clone(),
            auth_value: (!headers.is_empty()).then_some(MASKED),
            auth_headers: (!headers.is_empty()).then_some(headers),
            tags: tags(&g.tags),
            visibility: "public",
            status: "active",
            gateway_mode: "cache",
            tool_count: counts.tools,
            resource_count: counts.resources,
            prompt_count: counts.prompts,
        }
    }
}

/// What a tool read needs to know about its gateway.
#[derive(Debug, Clone, Default)]
pub struct GatewayInfo {
    pub url: Option<String>,
    pub transport: &'static str,
}

pub type GatewayInfos = HashMap<String, GatewayInfo>;

pub fn gateway_infos(gateways: &[Gateway]) -> GatewayInfos {
    gateways
        .iter()
        .map(|g| {
            (
                g.id.clone(),
                GatewayInfo {
                    url: Some(g.url.clone()),
                    transport: g.transport.as_str(),
                },
            )
        })
        .collect()
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ToolRead {
    pub id: String,
    pub name: String,
    pub original_name: String,
    pub custom_name: String,
    pub custom_name_slug: String,
    pub display_name: String,
    pub title: Option<String>,
    pub url: Option<String>,
    pub description: Option<String>,
    pub original_description: Option<String>,
    pub request_type: &'static str,
    pub integration_type: &'static str,
    pub headers: Value,
    pub input_schema: Value,
    pub output_schema: Option<Value>,
    pub annotations: Value,
    pub jsonpath_filter: &'static str,
    pub auth: Option<Value>,
    pub created_at: Value,
    pub updated_at: Value,
    pub enabled: bool,
    pub deprecated: bool,
    pub reachable: bool,
    pub gateway_id: String,
    pub gateway_slug: String,
    pub tags: Vec<TagRead>,
    pub visibility: &'static str,
    /// The name a virtual server exposes it under (only in `/servers/{id}/tools`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub server_tool_name: Option<String>,
}

impl ToolRead {
    pub fn new(t: &Tool, gws: &GatewayInfos, sep: &str) -> ToolRead {
        let gw = gws.get(&t.gateway_id).cloned().unwrap_or_default();
        ToolRead {
            id: t.id.clone(),
            name: t.name.clone(),
            original_name: t.original_name.clone(),
            custom_name: t.original_name.clone(),
            custom_name_slug: fleetgate_store::slugify(&t.original_name, sep),
            display_name: t.title.clone().unwrap_or_else(|| t.original_name.clone()),
            title: t.title.clone(),
            url: gw.url,
            description: t.description.clone(),
            original_description: t.description.clone(),
            request_type: if gw.transport.is_empty() {
                "STREAMABLEHTTP"
            } else {
                gw.transport
            },
            integration_type: "MCP",
            headers: json!({}),
            input_schema: t.input_schema.clone(),
            output_schema: t.output_schema.clone(),
            annotations: t.annotations.clone(),
            jsonpath_filter: "",
            auth: None,
            created_at: time(&t.created_at),
            updated_at: time(&t.updated_at),
            enabled: t.enabled,
            deprecated: false,
            reachable: t.reachable,
            gateway_id: t.gateway_id.clone(),
            gateway_slug: t.gateway_slug.clone(),
            tags: Vec::new(),
            visibility: "public",
            server_tool_name: None,
        }
    }
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ResourceRead {
    pub id: String,
    pub uri: String,
    pub name: String,
    pub title: Option<String>,
    pub description: Option<String>,
    pub mime_type: Option<String>,
    pub uri_template: Option<String>,
    pub size: Option<i64>,
    pub gateway_id: String,
    pub created_at: Value,
    pub updated_at: Value,
    pub enabled: bool,
    pub tags: Vec<TagRead>,
    pub visibility: &'static str,
}

impl ResourceRead {
    pub fn new(r: &Resource) -> ResourceRead {
        ResourceRead {
            id: r.id.clone(),
            uri: r.uri.clone(),
            name: r.name.clone(),
            title: None,
            description: r.description.clone(),
            mime_type: r.mime_type.clone(),
            uri_template: None,
            size: r.size,
            gateway_id: r.gateway_id.clone(),
            created_at: time(&r.created_at),
            updated_at: time(&r.updated_at),
            enabled: r.enabled,
            tags: Vec::new(),
            visibility: "public",
        }
    }
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ResourceTemplateRead {
    pub id: String,
    pub uri_template: String,
    pub name: String,
    pub description: Option<String>,
    pub mime_type: Option<String>,
    pub gateway_id: String,
    pub created_at: Value,
    pub updated_at: Value,
    pub enabled: bool,
}

impl ResourceTemplateRead {
    pub fn new(t: &ResourceTemplate) -> ResourceTemplateRead {
        ResourceTemplateRead {
            id: t.id.clone(),
            uri_template: t.uri_template.clone(),
            name: t.name.clone(),
            description: t.description.clone(),
            mime_type: t.mime_type.clone(),
            gateway_id: t.gateway_id.clone(),
            created_at: time(&t.created_at),
            updated_at: time(&t.updated_at),
            enabled: t.enabled,
        }
    }

    /// The MCP `ResourceTemplate` object (`/resources/templates/list`).
    pub fn mcp(t: &ResourceTemplate) -> Value {
        let mut v = json!({ "uriTemplate": t.uri_template, "name": t.name });
        if let Some(d) = &t.description {
            v["description"] = json!(d);
        }
        if let Some(m) = &t.mime_type {
            v["mimeType"] = json!(m);
        }
        v
    }
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PromptRead {
    pub id: String,
    pub name: String,
    pub original_name: String,
    pub custom_name: String,
    pub custom_name_slug: String,
    pub display_name: String,
    pub title: Option<String>,
    pub description: Option<String>,
    pub template: &'static str,
    pub arguments: Value,
    pub gateway_id: String,
    pub gateway_slug: String,
    pub created_at: Value,
    pub updated_at: Value,
    pub enabled: bool,
    pub tags: Vec<TagRead>,
    pub visibility: &'static str,
}

impl PromptRead {
    pub fn new(p: &Prompt, sep: &str) -> PromptRead {
        PromptRead {
            id: p.id.clone(),
            name: p.name.clone(),
            original_name: p.original_name.clone(),
            custom_name: p.original_name.clone(),
            custom_name_slug: fleetgate_store::slugify(&p.original_name, sep),
            display_name: p.title.clone().unwrap_or_else(|| p.original_name.clone()),
            title: p.title.clone(),
            description: p.description.clone(),
            template: "",
            arguments: p.arguments.clone(),
            gateway_id: p.gateway_id.clone(),
            gateway_slug: p.gateway_slug.clone(),
            created_at: time(&p.created_at),
            updated_at: time(&p.updated_at),
            enabled: p.enabled,
            tags: Vec::new(),
            visibility: "public",
        }
    }
}

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

// ---------------------------------------------------------------------------
// JSON Schemas (OpenAPI 3.0 components).
// ---------------------------------------------------------------------------

fn s() -> Value {
    json!({"type": "string"})
}
fn ns() -> Value {
    json!({"type": "string", "nullable": true})
}
fn b() -> Value {
    json!({"type": "boolean"})
}
fn int() -> Value {
    json!({"type": "integer"})
}
fn dt() -> Value {
    json!({"type": "string", "format": "date-time"})
}
fn obj() -> Value {
    json!({"type": "object", "additionalProperties": true})
}
fn strs() -> Value {
    json!({"type": "array", "items": {"type": "string"}})
}
fn tag_list() -> Value {
    json!({"type": "array", "items": {"$ref": "#/components/schemas/Tag"}})
}
fn tags_in() -> Value {
    json!({"type": "array", "items": {"oneOf": [{"type": "string"}, {"$ref": "#/components/schemas/Tag"}]}})
}

fn object(props: Vec<(&str, Value)>, required: &[&str]) -> Value {
    let map: serde_json::Map<String, Value> =
        props.into_iter().map(|(k, v)| (k.to_owned(), v)).collect();
    json!({"type": "object", "properties": map, "required": required})
}

/// Every schema the API names, by component name.
pub fn schemas() -> Value {
    let mut out = serde_json::Map::new();
    let mut add = |name: &str, v: Value| {
        out.insert(name.to_owned(), v);
    };
    add(
        "Tag",
        object(vec![("id", s()), ("label", s())], &["id", "label"]),
    );
    add(
        "Detail",
        object(
            vec![(
                "detail",
                json!({"oneOf": [{"type": "string"}, {"type": "array", "items": {"$ref": "#/components/schemas/FieldError"}}]}),
            )],
            &["detail"],
        ),
    );
    add(
        "FieldError",
        object(
            vec![("type", s()), ("loc", strs()), ("msg", s())],
            &["type", "loc", "msg"],
        ),
    );
    add(
        "Status",
        object(
            vec![("status", s()), ("message", s())],
            &["status", "message"],
        ),
    );
    add(
        "StateChange",
        json!({
            "type": "object",
            "description": "ContextForge's state-change answer: status, message and the changed object under `gateway`, `tool`, `resource` or `prompt`.",
            "properties": {"status": s(), "message": s()},
            "required": ["status", "message"],
            "additionalProperties": true
        }),
    );
    let auth_in = vec![
        (
            "auth_type",
            json!({"type": "string", "nullable": true, "enum": ["basic", "bearer", "authheaders", "none", null]}),
        ),
        ("auth_username", ns()),
        ("auth_password", ns()),
        ("auth_token", ns()),
        ("auth_header_key", ns()),
        ("auth_header_value", ns()),
        (
            "auth_headers",
            json!({"type": "array", "nullable": true, "items": {"type": "object", "properties": {"key": s(), "value": s()}}}),
        ),
    ];
    let mut create = vec![
        ("name", s()),
        ("url", json!({"type": "string", "format": "uri"})),
        ("description", ns()),
        (
            "transport",
            json!({"type": "string", "enum": ["STREAMABLEHTTP", "SSE"], "default": "STREAMABLEHTTP", "description": "SSE: the legacy HTTP+SSE transport (2024-11-05); the url is the server's SSE endpoint, e.g. http://host:port/sse"}),
        ),
        ("tags", tags_in()),
    ];
    create.extend(auth_in.clone());
    let mut gw_create = object(create.clone(), &["name", "url"]);
    gw_create["description"] =
        json!("Keys are accepted in snake_case or camelCase. fleetgate connects, initializes and discovers everything before anything is stored.");
    add("GatewayCreate", gw_create);
    let mut gw_update = object(create, &[]);
    gw_update["description"] =
        json!("Every field optional. A new url or new auth re-discovers the gateway first.");
    add("GatewayUpdate", gw_update);
    add(
        "GatewayRead",
        object(
            vec![
                ("id", s()),
                ("name", s()),
                ("slug", s()),
                ("url", s()),
                ("description", ns()),
                ("transport", s()),
                ("capabilities", obj()),
                ("createdAt", dt()),
                ("updatedAt", dt()),
                ("enabled", b()),
                ("reachable", b()),
                (
                    "lastSeen",
                    json!({"type": "string", "format": "date-time", "nullable": true}),
                ),
                ("authType", ns()),
                ("authValue", ns()),
                (
                    "authHeaders",
                    json!({"type": "array", "nullable": true, "items": {"type": "object", "properties": {"key": s(), "value": s()}}}),
                ),
                ("tags", tag_list()),
                ("visibility", s()),
                ("status", s()),
                ("gatewayMode", s()),
                ("toolCount", int()),
                ("resourceCount", int()),
                ("promptCount", int()),
            ],
            &[
                "id",
                "name",
                "slug",
                "url",
                "transport",
                "enabled",
                "reachable",
            ],
        ),
    );
    add(
        "GatewayRefresh",
        object(
            vec![
                ("gatewayId", s()),
                ("success", b()),
                ("error", ns()),
                ("toolsAdded", int()),
                ("toolsUpdated", int()),
                ("toolsRemoved", int()),
                ("resourcesAdded", int()),
                ("resourcesUpdated", int()),
                ("resourcesRemoved", int()),
                ("promptsAdded", int()),
                ("promptsUpdated", int()),
                ("promptsRemoved", int()),
                ("added", int()),
                ("updated", int()),
                ("removed", int()),
                ("validationErrors", strs()),
                ("durationMs", json!({"type": "number"})),
                ("refreshedAt", dt()),
            ],
            &["gatewayId", "success"],
        ),
    );
    add(
        "ToolRead",
        object(
            vec![
                ("id", s()),
                (
                    "name",
                    json!({"type": "string", "description": "{gatewaySlug}{separator}{slug of originalName}: the name on /mcp"}),
                ),
                ("originalName", s()),
                ("customName", s()),
                ("customNameSlug", s()),
                ("displayName", s()),
                ("title", ns()),
                ("url", ns()),
                ("description", ns()),
                ("originalDescription", ns()),
                ("requestType", s()),
                ("integrationType", s()),
                ("headers", obj()),
                ("inputSchema", obj()),
                ("outputSchema", json!({"type": "object", "nullable": true})),
                ("annotations", obj()),
                ("jsonpathFilter", s()),
                ("auth", json!({"type": "object", "nullable": true})),
                ("createdAt", dt()),
                ("updatedAt", dt()),
                ("enabled", b()),
                ("deprecated", b()),
                ("reachable", b()),
                ("gatewayId", s()),
                ("gatewaySlug", s()),
                ("tags", tag_list()),
                ("visibility", s()),
                (
                    "serverToolName",
                    json!({"type": "string", "description": "Only under /servers/{id}/tools: the name that virtual server exposes the tool under (absent when it does not expose it now)"}),
                ),
            ],
            &[
                "id",
                "name",
                "originalName",
                "gatewayId",
                "gatewaySlug",
                "inputSchema",
                "enabled",
            ],
        ),
    );
    add(
        "ResourceRead",
        object(
            vec![
                ("id", s()),
                ("uri", s()),
                ("name", s()),
                ("title", ns()),
                ("description", ns()),
                ("mimeType", ns()),
                ("uriTemplate", ns()),
                ("size", json!({"type": "integer", "nullable": true})),
                ("gatewayId", s()),
                ("createdAt", dt()),
                ("updatedAt", dt()),
                ("enabled", b()),
                ("tags", tag_list()),
                ("visibility", s()),
            ],
            &["id", "uri", "name", "enabled"],
        ),
    );
    add(
        "ResourceTemplateRead",
        object(
            vec![
                ("id", s()),
                ("uriTemplate", s()),
                ("name", s()),
                ("description", ns()),
                ("mimeType", ns()),
                ("gatewayId", s()),
                ("createdAt", dt()),
                ("updatedAt", dt()),
                ("enabled", b()),
            ],
            &["id", "uriTemplate", "name", "enabled"],
        ),
    );
    add(
        "ResourceTemplateList",
        object(
            vec![(
                "resourceTemplates",
                json!({"type": "array", "items": obj()}),
            )],
            &["resourceTemplates"],
        ),
    );
    add(
        "ResourceContent",
        json!({
            "type": "object",
            "description": "The resource's (first) content as its upstream answered resources/read, with `type` and `id` added; `contents` holds all of them when there are several.",
            "properties": {
                "type": s(),
                "id": s(),
                "uri": s(),
                "mimeType": s(),
                "text": s(),
                "blob": json!({"type": "string", "format": "byte"}),
                "contents": json!({"type": "array", "items": obj()})
            },
            "required": ["type", "id", "uri"],
            "additionalProperties": true
        }),
    );
    add(
        "PromptArgs",
        json!({
            "type": "object",
            "description": "The prompt's arguments by name (strings; numbers and booleans are sent as text). {\"args\": {...}} is accepted too.",
            "additionalProperties": {"type": "string"}
        }),
    );
    add(
        "PromptResult",
        json!({
            "type": "object",
            "description": "MCP's GetPromptResult as the upstream answered it.",
            "properties": {
                "description": s(),
                "messages": json!({"type": "array", "items": obj()})
            },
            "required": ["messages"],
            "additionalProperties": true
        }),
    );
    add(
        "PromptRead",
        object(
            vec![
                ("id", s()),
                ("name", s()),
                ("originalName", s()),
                ("customName", s()),
                ("customNameSlug", s()),
                ("displayName", s()),
                ("title", ns()),
                ("description", ns()),
                ("template", s()),
                ("arguments", json!({"type": "array", "items": obj()})),
                ("gatewayId", s()),
                ("gatewaySlug", s()),
                ("createdAt", dt()),
                ("updatedAt", dt()),
                ("enabled", b()),
                ("tags", tag_list()),
                ("visibility", s()),
            ],
            &["id", "name", "originalName", "enabled"],
        ),
    );
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
    Value::Object(out)
}
