//! What gateways offer: [`ToolRead`], [`ResourceRead`], [`ResourceTemplateRead`],
//! [`PromptRead`] and their schemas.

use super::common::{b, dt, ns, obj, object, s, tag_list, time, TagRead};
use fleetgate_store::{Gateway, Prompt, Resource, ResourceTemplate, Tool};
use serde::Serialize;
use serde_json::{json, Value};
use std::collections::HashMap;

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

/// The tool, resource, resource template and prompt schemas.
pub(super) fn add_schemas(add: &mut impl FnMut(&str, Value)) {
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
}
