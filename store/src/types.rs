//! The plain, serde-serializable structs of the public API. Nothing here depends on
//! sea-orm, so callers (the worker, the supervisor) never see database types.
//!
//! Field names follow ContextForge's `mcpgateway/schemas.py` (`GatewayRead`,
//! `ToolRead`, `ServerRead`, ...) where the concept is the same; the REST layer maps
//! them onto the exact wire shape (camelCase aliases and the like).

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// How fleetgate talks to an upstream MCP server.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
pub enum Transport {
    #[default]
    #[serde(rename = "STREAMABLEHTTP")]
    StreamableHttp,
    #[serde(rename = "SSE")]
    Sse,
}

impl Transport {
    /// The stored / wire spelling: `"STREAMABLEHTTP"` or `"SSE"`.
    pub fn as_str(self) -> &'static str {
        match self {
            Transport::StreamableHttp => "STREAMABLEHTTP",
            Transport::Sse => "SSE",
        }
    }
}

impl std::fmt::Display for Transport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for Transport {
    type Err = String;

    /// Case-insensitive; `"STREAMABLE_HTTP"`/`"streamable-http"`/`"http"` are accepted
    /// as aliases of `STREAMABLEHTTP`.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let norm: String = s
            .chars()
            .filter(|c| !matches!(c, '_' | '-' | ' '))
            .collect::<String>()
            .to_ascii_uppercase();
        match norm.as_str() {
            "STREAMABLEHTTP" | "HTTP" => Ok(Transport::StreamableHttp),
            "SSE" => Ok(Transport::Sse),
            _ => Err(format!(
                "unknown transport {s:?}: expected \"STREAMABLEHTTP\" or \"SSE\""
            )),
        }
    }
}

/// A registered upstream MCP server (ContextForge: `GatewayRead`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Gateway {
    /// uuid4, 32 lowercase hex digits.
    pub id: String,
    pub name: String,
    /// `slugify(name)`; prefix of every tool and prompt name of this gateway.
    pub slug: String,
    pub url: String,
    pub description: Option<String>,
    pub transport: Transport,
    /// `"basic"`, `"bearer"`, `"authheaders"`, ... as given at registration; informative.
    pub auth_type: Option<String>,
    /// Headers sent on every upstream request (already resolved from `auth_type`).
    pub auth_headers: BTreeMap<String, String>,
    /// The upstream's `initialize` result capabilities (`{}` until known).
    pub capabilities: Value,
    pub tags: Vec<String>,
    pub enabled: bool,
    pub reachable: bool,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub last_seen: Option<DateTime<Utc>>,
}

/// What [`crate::Store::register_gateway`] needs from the caller.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct NewGateway {
    /// Unique (also after slugifying).
    pub name: String,
    pub url: String,
    pub description: Option<String>,
    pub transport: Transport,
    pub auth_type: Option<String>,
    pub auth_headers: BTreeMap<String, String>,
    pub tags: Vec<String>,
}

/// A partial update of a gateway: `None` leaves the field as it is.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct GatewayUpdate {
    /// Renaming re-slugs the gateway and renames all its tools and prompts (ids kept).
    pub name: Option<String>,
    pub url: Option<String>,
    /// `Some(None)` clears the description.
    pub description: Option<Option<String>>,
    pub transport: Option<Transport>,
    /// `Some(None)` clears it.
    pub auth_type: Option<Option<String>>,
    pub auth_headers: Option<BTreeMap<String, String>>,
    pub tags: Option<Vec<String>>,
}

/// What a gateway offered when fleetgate last asked it (`tools/list`,
/// `resources/list`, `resources/templates/list`, `prompts/list`, `initialize`).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct Discovered {
    pub tools: Vec<DiscoveredTool>,
    pub resources: Vec<DiscoveredResource>,
    pub resource_templates: Vec<DiscoveredResourceTemplate>,
    pub prompts: Vec<DiscoveredPrompt>,
    /// The `initialize` result's `capabilities`; `None` keeps what is stored
    /// (`{}` on registration).
    pub capabilities: Option<Value>,
}

#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct DiscoveredTool {
    /// The name the upstream uses (`tools/call` is forwarded with it).
    pub name: String,
    pub title: Option<String>,
    pub description: Option<String>,
    /// `inputSchema`; `Null` is stored as `{"type":"object"}`.
    pub input_schema: Value,
    pub output_schema: Option<Value>,
    /// `Null` is stored as `{}`.
    pub annotations: Value,
}

#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct DiscoveredResource {
    pub uri: String,
    pub name: String,
    pub description: Option<String>,
    pub mime_type: Option<String>,
    pub size: Option<i64>,
}

#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct DiscoveredResourceTemplate {
    pub uri_template: String,
    pub name: String,
    pub description: Option<String>,
    pub mime_type: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct DiscoveredPrompt {
    pub name: String,
    pub title: Option<String>,
    pub description: Option<String>,
    /// The MCP `arguments` array (`[{name, description, required}]`); `Null` → `[]`.
    pub arguments: Value,
}

/// A tool offered through fleetgate (ContextForge: `ToolRead`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Tool {
    pub id: String,
    pub gateway_id: String,
    /// The gateway's slug (denormalised for the wire shape and routing).
    pub gateway_slug: String,
    /// The upstream's own name for it.
    pub original_name: String,
    /// `{gateway_slug}{separator}{slugify(original_name)}`; unique.
    pub name: String,
    pub title: Option<String>,
    pub description: Option<String>,
    pub input_schema: Value,
    pub output_schema: Option<Value>,
    pub annotations: Value,
    pub enabled: bool,
    /// The gateway's `reachable` flag.
    pub reachable: bool,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// A concrete resource of a gateway (ContextForge: `ResourceRead`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Resource {
    pub id: String,
    pub gateway_id: String,
    pub uri: String,
    pub name: String,
    pub description: Option<String>,
    pub mime_type: Option<String>,
    pub size: Option<i64>,
    pub enabled: bool,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// A parameterised resource (`resources/templates/list`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ResourceTemplate {
    pub id: String,
    pub gateway_id: String,
    pub uri_template: String,
    pub name: String,
    pub description: Option<String>,
    pub mime_type: Option<String>,
    pub enabled: bool,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// A prompt of a gateway (ContextForge: `PromptRead`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Prompt {
    pub id: String,
    pub gateway_id: String,
    pub gateway_slug: String,
    pub original_name: String,
    /// `{gateway_slug}{separator}{slugify(original_name)}`; unique.
    pub name: String,
    pub title: Option<String>,
    pub description: Option<String>,
    pub arguments: Value,
    pub enabled: bool,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// A virtual server: a named selection of tools, resources and prompts
/// (ContextForge: `ServerRead`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Server {
    pub id: String,
    pub name: String,
    pub description: Option<String>,
    pub icon: Option<String>,
    pub tags: Vec<String>,
    pub enabled: bool,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    /// Ids of the associated tools, sorted.
    pub associated_tools: Vec<String>,
    pub associated_resources: Vec<String>,
    pub associated_prompts: Vec<String>,
}

/// What [`crate::Store::create_server`] needs.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct NewServer {
    /// A caller-chosen id (1..=36 characters of `[A-Za-z0-9_-]`); generated if `None`.
    pub id: Option<String>,
    pub name: String,
    pub description: Option<String>,
    pub icon: Option<String>,
    pub tags: Vec<String>,
    pub tool_ids: Vec<String>,
    pub resource_ids: Vec<String>,
    pub prompt_ids: Vec<String>,
}

/// A partial update of a server: `None` leaves the field (or association list) as it is;
/// `Some(vec![])` empties an association list.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct ServerUpdate {
    pub name: Option<String>,
    /// `Some(None)` clears it.
    pub description: Option<Option<String>>,
    /// `Some(None)` clears it.
    pub icon: Option<Option<String>>,
    pub tags: Option<Vec<String>>,
    pub tool_ids: Option<Vec<String>>,
    pub resource_ids: Option<Vec<String>>,
    pub prompt_ids: Option<Vec<String>>,
}

/// A revoked JWT (by its `jti`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RevokedToken {
    pub jti: String,
    pub revoked_at: DateTime<Utc>,
    pub revoked_by: String,
    pub reason: Option<String>,
}

/// The change counters, read together in one query. Each only ever grows; a worker
/// that remembers the last value it saw knows whether its cache is stale.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
pub struct Versions {
    /// Bumped by every change to gateways, tools, resources, templates, prompts or servers.
    pub registry: i64,
    /// Bumped by every new token revocation.
    pub revocations: i64,
}

/// What [`crate::Store::replace_discovered`] changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct RefreshSummary {
    pub added: usize,
    pub updated: usize,
    pub removed: usize,
}
