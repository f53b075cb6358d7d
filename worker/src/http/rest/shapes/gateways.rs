//! Gateways: [`GatewayRead`] and the schemas of gateway requests and answers.

use super::common::{
    b, dt, int, ns, obj, object, s, strs, tag_list, tags, tags_in, time, TagRead, MASKED,
};
use fleetgate_store::Gateway;
use serde::Serialize;
use serde_json::{json, Value};

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

/// `GatewayCreate`, `GatewayUpdate`, `GatewayRead`, `GatewayRefresh`.
pub(super) fn add_schemas(add: &mut impl FnMut(&str, Value)) {
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
}
