//! The one JSON-RPC dispatcher. `/rpc`, `/mcp`, `/servers/{id}/mcp` and
//! requests forwarded from another worker all end here, with a typed [`Context`]:
//! who asks, which scope they see, where their upstream sessions live, and where
//! messages the upstream sends mid-call go.

use crate::gateway::error::RpcError;
use crate::gateway::federation::{Federation, UpstreamSet};
use crate::gateway::registry::{Registry, ScopeIndex, Snapshot};
use crate::gateway::scope::{Principal, Scope};
use crate::gateway::session::{ClientChannel, Session};
use crate::gateway::tasks;
use bytes::Bytes;
use fleetgate_mcp::jsonrpc::raw;
use fleetgate_mcp::protocol;
use fleetgate_mcp::ServerMessageHandler;
use fleetgate_store::Gateway;
use http::{HeaderName, HeaderValue};
use serde_json::value::RawValue;
use serde_json::{json, Map, Value};
use std::sync::Arc;
use tokio::sync::mpsc;

/// Items per page of `*/list` results.
pub const PAGE_SIZE: usize = 500;

/// What the dispatcher needs from the worker, shared by every request.
pub struct Core {
    pub registry: Arc<Registry>,
    pub federation: Federation,
}

/// Where a request's upstream sessions live.
pub enum Upstreams {
    /// The downstream session's own set, keyed by gateway id.
    Session(Arc<UpstreamSet>),
    /// The worker's pool, keyed by principal and gateway (`/rpc`, stateless MCP).
    Pool,
}

/// Everything about one request the dispatcher may use.
pub struct Context {
    pub principal: Principal,
    pub scope: Scope,
    pub upstreams: Upstreams,
    /// Receives what upstreams send during the call (progress, logging,
    /// sampling, elicitation) and answers their requests.
    pub handler: Arc<dyn ServerMessageHandler>,
    /// Client headers allowed through to upstreams.
    pub passthrough: Vec<(HeaderName, HeaderValue)>,
}

impl Context {
    /// A request of a downstream session: its own upstream sessions; what
    /// upstreams send mid-call goes to `to_client` (the POST's SSE stream or
    /// the session's GET stream), and their requests are answered by the
    /// session's client.
    pub fn session(
        principal: Principal,
        scope: Scope,
        session: Arc<Session>,
        to_client: Option<mpsc::Sender<Bytes>>,
        passthrough: Vec<(HeaderName, HeaderValue)>,
    ) -> Context {
        let upstreams = Upstreams::Session(session.upstreams.clone());
        let channel = ClientChannel {
            tx: to_client,
            session: Some(session),
        };
        Context::new(principal, scope, upstreams, channel, passthrough)
    }

    /// A request without a session (`/rpc`, `initialize`, stateless MCP):
    /// pooled upstream sessions; mid-call notifications go to `to_client`
    /// if there is one, and upstream requests cannot reach the client.
    pub fn pooled(
        principal: Principal,
        scope: Scope,
        to_client: Option<mpsc::Sender<Bytes>>,
        passthrough: Vec<(HeaderName, HeaderValue)>,
    ) -> Context {
        let channel = ClientChannel {
            tx: to_client,
            session: None,
        };
        Context::new(principal, scope, Upstreams::Pool, channel, passthrough)
    }

    fn new(
        principal: Principal,
        scope: Scope,
        upstreams: Upstreams,
        channel: ClientChannel,
        passthrough: Vec<(HeaderName, HeaderValue)>,
    ) -> Context {
        Context {
            principal,
            scope,
            upstreams,
            handler: Arc::new(channel),
            passthrough,
        }
    }
}

/// The methods [`dispatch`] answers.
pub const METHODS: &[&str] = &[
    "initialize",
    "server/discover",
    "ping",
    "tools/list",
    "tools/call",
    "prompts/list",
    "prompts/get",
    "resources/list",
    "resources/templates/list",
    "resources/read",
    "resources/subscribe",
    "resources/unsubscribe",
    "completion/complete",
    "logging/setLevel",
    "tasks/get",
    "tasks/update",
    "tasks/cancel",
];

/// The methods whose answer is built from the whole catalog of a scope.
const LISTS: [&str; 6] = [
    "initialize",
    "server/discover",
    "tools/list",
    "prompts/list",
    "resources/list",
    "resources/templates/list",
];

/// Dispatches one request. `initialize` is answered here too; creating a
/// session for it is the transport's business. The result is JSON text: what
/// an upstream answered passes through as it came.
pub async fn dispatch(
    core: &Core,
    ctx: &Context,
    method: &str,
    params: Option<Value>,
) -> Result<Box<RawValue>, RpcError> {
    if let Err(denied) = crate::auth::authorize_mcp(&ctx.principal.claims, method) {
        return Err(RpcError::Forbidden(denied.to_string()));
    }
    let params = match params {
        None => Map::new(),
        Some(Value::Object(m)) => m,
        Some(_) => return Err(RpcError::InvalidParams("params must be an object".into())),
    };
    // Read your writes: an answer built from the whole catalog (a list)
    // first checks that this worker has the store's version.
    if LISTS.contains(&method) {
        core.registry.fresh().await;
    }
    let mut snap = core.registry.snapshot();
    // What this worker does not know may have been registered a moment ago
    // through another worker; the store says so before "not found" is
    // answered.
    if !knows(&snap, &ctx.scope, method, &params) && core.registry.refresh_on_miss().await {
        snap = core.registry.snapshot();
    }
    let idx = snap
        .scope(&ctx.scope)
        .ok_or_else(|| RpcError::ServerNotFound(ctx.scope.server_id().unwrap_or("").to_owned()))?;
    match method {
        "initialize" => Ok(raw(&initialize_result(&snap, &ctx.scope, &params))),
        "server/discover" => Ok(raw(&discover_result(&snap, &ctx.scope))),
        "ping" => Ok(raw(&json!({}))),
        "tools/list" => list(
            &params,
            "tools",
            idx.tools.iter().map(|t| tool_json(&t.name, &t.item)),
        ),
        "tools/call" => {
            let name = str_param(&params, "name", method)?;
            let tool = idx
                .tool(name)
                .ok_or_else(|| RpcError::ToolNotFound(name.to_owned()))?;
            let mut up = params; // moved, not copied: arguments can be large
            up.insert("name".into(), tool.item.original_name.clone().into());
            let gw = &tool.item.gateway_id;
            // Only a client that declared the extension can be given a task.
            let may_be_task = tasks::declared(&up);
            let done = call_upstream(core, ctx, &snap, gw, method, up).await?;
            match may_be_task {
                true => tasks::name_task(done, gw),
                false => Ok(done),
            }
        }
        "tasks/get" | "tasks/update" | "tasks/cancel" => {
            if !tasks::declared(&params) {
                return Err(RpcError::MissingExtension(tasks::EXTENSION));
            }
            let task = str_param(&params, "taskId", method)?;
            let unknown = || RpcError::InvalidParams(format!("Unknown taskId {task:?}"));
            let (gw, upstream_task) = tasks::split(task)
                .filter(|(gw, _)| idx.gateway_ids.contains(*gw))
                .ok_or_else(unknown)?;
            let (gw, upstream_task) = (gw.to_owned(), upstream_task.to_owned());
            let mut up = params;
            up.insert("taskId".into(), upstream_task.into());
            tasks::name_task(call_upstream(core, ctx, &snap, &gw, method, up).await?, &gw)
        }
        "prompts/list" => list(
            &params,
            "prompts",
            idx.prompts.iter().map(|p| prompt_json(&p.name, &p.item)),
        ),
        "prompts/get" => {
            let name = str_param(&params, "name", method)?;
            let prompt = idx
                .prompt(name)
                .ok_or_else(|| RpcError::PromptNotFound(name.to_owned()))?;
            let mut up = params;
            up.insert("name".into(), prompt.item.original_name.clone().into());
            call_upstream(core, ctx, &snap, &prompt.item.gateway_id, method, up).await
        }
        "resources/list" => list(
            &params,
            "resources",
            idx.resources.iter().map(|r| resource_json(r)),
        ),
        "resources/templates/list" => list(
            &params,
            "resourceTemplates",
            idx.templates.iter().map(|t| template_json(t)),
        ),
        "resources/read" => {
            let gw = resource_gateway(idx, str_param(&params, "uri", method)?)?;
            call_upstream(core, ctx, &snap, &gw, method, params).await
        }
        "resources/subscribe" | "resources/unsubscribe" => {
            let uri = str_param(&params, "uri", method)?.to_owned();
            let gw = resource_gateway(idx, &uri)?;
            let done = call_upstream(core, ctx, &snap, &gw, method, params).await?;
            // Remembered, so that ending the session undoes it upstream.
            if let Upstreams::Session(set) = &ctx.upstreams {
                set.note_subscription(&gw, &uri, method == "resources/subscribe");
            }
            Ok(done)
        }
        "completion/complete" => {
            let r = params
                .get("ref")
                .and_then(Value::as_object)
                .ok_or_else(|| {
                    RpcError::InvalidParams("completion/complete needs params.ref".into())
                })?;
            let mut up = params.clone();
            let gw = match r.get("type").and_then(Value::as_str) {
                Some("ref/prompt") => {
                    let name = str_param(r, "name", "ref/prompt")?;
                    let p = idx
                        .prompt(name)
                        .ok_or_else(|| RpcError::PromptNotFound(name.to_owned()))?;
                    let mut r = r.clone();
                    r.insert("name".into(), p.item.original_name.clone().into());
                    up.insert("ref".into(), Value::Object(r));
                    p.item.gateway_id.clone()
                }
                Some("ref/resource") => {
                    resource_gateway(idx, str_param(r, "uri", "ref/resource")?)?
                }
                _ => {
                    return Err(RpcError::InvalidParams(
                        "params.ref.type must be \"ref/prompt\" or \"ref/resource\"".into(),
                    ))
                }
            };
            call_upstream(core, ctx, &snap, &gw, method, up).await
        }
        "logging/setLevel" => {
            let level = str_param(&params, "level", method)?;
            if let Upstreams::Session(set) = &ctx.upstreams {
                set.set_log_level(level).await;
            }
            Ok(raw(&json!({})))
        }
        other => Err(RpcError::MethodNotFound(other.to_owned())),
    }
}

/// Whether `snap` knows the scope and the item `method` names (a tool,
/// prompt or resource), when it names one.
fn knows(snap: &Snapshot, scope: &Scope, method: &str, params: &Map<String, Value>) -> bool {
    let Some(idx) = snap.scope(scope) else {
        return false;
    };
    let named = |key| params.get(key).and_then(Value::as_str);
    match method {
        "tools/call" => named("name").is_none_or(|n| idx.tool(n).is_some()),
        "prompts/get" => named("name").is_none_or(|n| idx.prompt(n).is_some()),
        "resources/read" | "resources/subscribe" | "resources/unsubscribe" => {
            named("uri").is_none_or(|u| resource_gateway(idx, u).is_ok())
        }
        _ => true,
    }
}

fn str_param<'a>(p: &'a Map<String, Value>, key: &str, method: &str) -> Result<&'a str, RpcError> {
    p.get(key)
        .and_then(Value::as_str)
        .ok_or_else(|| RpcError::InvalidParams(format!("{method} needs params.{key} (a string)")))
}

/// The gateway serving `uri`: a listed resource, or the first template matching it.
pub(crate) fn resource_gateway(idx: &ScopeIndex, uri: &str) -> Result<String, RpcError> {
    if let Some(r) = idx.resource(uri) {
        return Ok(r.gateway_id.clone());
    }
    idx.templates
        .iter()
        .find(|t| template_matches(&t.uri_template, uri))
        .map(|t| t.gateway_id.clone())
        .ok_or_else(|| RpcError::ResourceNotFound(uri.to_owned()))
}

/// Does `uri` match the RFC 6570 template (literal parts in order, each
/// `{expression}` standing for a non-empty run of characters)?
pub fn template_matches(template: &str, uri: &str) -> bool {
    let mut literals = Vec::new();
    let mut rest = template;
    while let Some(open) = rest.find('{') {
        literals.push(&rest[..open]);
        let Some(close) = rest[open..].find('}') else {
            return false;
        };
        rest = &rest[open + close + 1..];
    }
    literals.push(rest);
    if literals.len() == 1 {
        return template == uri;
    }
    let Some(mut cur) = uri.strip_prefix(literals[0]) else {
        return false;
    };
    let last = literals.len() - 1;
    for (i, lit) in literals.iter().enumerate().skip(1) {
        // The expression before `lit` takes at least one character.
        let mut chars = cur.chars();
        if chars.next().is_none() {
            return false;
        }
        let after = chars.as_str();
        if i == last {
            return after.ends_with(lit);
        }
        match after.find(lit) {
            Some(k) => cur = &after[k + lit.len()..],
            None => return false,
        }
    }
    false
}

async fn call_upstream(
    core: &Core,
    ctx: &Context,
    snap: &Snapshot,
    gateway_id: &str,
    method: &str,
    params: Map<String, Value>,
) -> Result<Box<RawValue>, RpcError> {
    let gw: &Arc<Gateway> = snap
        .gateway(gateway_id)
        .ok_or_else(|| RpcError::Internal(format!("gateway {gateway_id} is gone")))?;
    let (set, key) = match &ctx.upstreams {
        Upstreams::Session(set) => (set.as_ref(), gw.id.clone()),
        Upstreams::Pool => (
            &core.federation.pool,
            format!("{}\0{}", ctx.principal.subject(), gw.id),
        ),
    };
    Ok(core
        .federation
        .call(
            set,
            &key,
            gw,
            &ctx.passthrough,
            method,
            Some(Value::Object(params)),
            ctx.handler.as_ref(),
        )
        .await?)
}

/// Cursor pagination over a listing: the cursor is the decimal offset.
fn list(
    params: &Map<String, Value>,
    key: &str,
    items: impl Iterator<Item = Value>,
) -> Result<Box<RawValue>, RpcError> {
    let offset = match params.get("cursor") {
        None | Some(Value::Null) => 0,
        Some(Value::String(c)) => c
            .parse::<usize>()
            .map_err(|_| RpcError::InvalidParams(format!("invalid cursor {c:?}")))?,
        Some(_) => return Err(RpcError::InvalidParams("cursor must be a string".into())),
    };
    let mut page: Vec<Value> = items.skip(offset).take(PAGE_SIZE + 1).collect();
    let more = page.len() > PAGE_SIZE;
    page.truncate(PAGE_SIZE);
    let mut out = Map::new();
    out.insert(key.into(), Value::Array(page));
    if more {
        out.insert("nextCursor".into(), (offset + PAGE_SIZE).to_string().into());
    }
    Ok(raw(&Value::Object(out)))
}

fn put_opt(m: &mut Map<String, Value>, k: &str, v: &Option<impl Into<Value> + Clone>) {
    if let Some(v) = v {
        m.insert(k.into(), v.clone().into());
    }
}

pub(crate) fn tool_json(name: &str, t: &fleetgate_store::Tool) -> Value {
    let mut m = Map::new();
    m.insert("name".into(), name.into());
    put_opt(&mut m, "title", &t.title);
    put_opt(&mut m, "description", &t.description);
    m.insert("inputSchema".into(), t.input_schema.clone());
    put_opt(&mut m, "outputSchema", &t.output_schema);
    if t.annotations.as_object().is_some_and(|a| !a.is_empty()) {
        m.insert("annotations".into(), t.annotations.clone());
    }
    Value::Object(m)
}

pub(crate) fn prompt_json(name: &str, p: &fleetgate_store::Prompt) -> Value {
    let mut m = Map::new();
    m.insert("name".into(), name.into());
    put_opt(&mut m, "title", &p.title);
    put_opt(&mut m, "description", &p.description);
    if p.arguments.as_array().is_some_and(|a| !a.is_empty()) {
        m.insert("arguments".into(), p.arguments.clone());
    }
    Value::Object(m)
}

pub(crate) fn resource_json(r: &fleetgate_store::Resource) -> Value {
    let mut m = Map::new();
    m.insert("uri".into(), r.uri.clone().into());
    m.insert("name".into(), r.name.clone().into());
    put_opt(&mut m, "description", &r.description);
    put_opt(&mut m, "mimeType", &r.mime_type);
    put_opt(&mut m, "size", &r.size);
    Value::Object(m)
}

pub(crate) fn template_json(t: &fleetgate_store::ResourceTemplate) -> Value {
    let mut m = Map::new();
    m.insert("uriTemplate".into(), t.uri_template.clone().into());
    m.insert("name".into(), t.name.clone().into());
    put_opt(&mut m, "description", &t.description);
    put_opt(&mut m, "mimeType", &t.mime_type);
    Value::Object(m)
}

fn capabilities() -> Value {
    json!({
        "tools": {"listChanged": true},
        "resources": {"subscribe": true, "listChanged": true},
        "prompts": {"listChanged": true},
        "logging": {},
        "completions": {},
    })
}

fn server_info(snap: &Snapshot, scope: &Scope) -> Value {
    let name = match scope {
        Scope::All => "fleetgate".to_owned(),
        Scope::Server(id) => snap
            .servers
            .get(id.as_ref())
            .map(|s| s.name.clone())
            .unwrap_or_else(|| "fleetgate".into()),
    };
    json!({"name": name, "version": env!("CARGO_PKG_VERSION")})
}

fn initialize_result(snap: &Snapshot, scope: &Scope, params: &Map<String, Value>) -> Value {
    let asked = params
        .get("protocolVersion")
        .and_then(Value::as_str)
        .unwrap_or(protocol::DEFAULT_PROTOCOL_VERSION_WITHOUT_HEADER);
    json!({
        "protocolVersion": protocol::negotiate_version(asked),
        "capabilities": capabilities(),
        "serverInfo": server_info(snap, scope),
    })
}

/// `DiscoverResult` (2026-07-28 `server/discover`): the server's identity in
/// `_meta`. The capabilities are the 2026 ones: list changes and resource
/// updates (`listChanged`, `subscribe`) are served by `subscriptions/listen`. `resultType` and the
/// caching hints are added with every 2026 result's
/// (`http::mcp::run::shape_result`).
fn discover_result(snap: &Snapshot, scope: &Scope) -> Value {
    let mut caps = capabilities();
    caps["resources"] = json!({"listChanged": true, "subscribe": true});
    // Tasks pass through to the gateways that run them.
    let tasks = snap.scope(scope).is_some_and(|idx| {
        idx.gateway_ids.iter().any(|id| {
            snap.gateway(id).is_some_and(|g| {
                g.capabilities
                    .get("extensions")
                    .and_then(|e| e.get(tasks::EXTENSION))
                    .is_some()
            })
        })
    });
    if tasks {
        caps["extensions"] = json!({ tasks::EXTENSION: {} });
    }
    json!({
        "supportedVersions": protocol::SUPPORTED_PROTOCOL_VERSIONS,
        "capabilities": caps,
        "_meta": {protocol::meta::SERVER_INFO: server_info(snap, scope)},
    })
}

#[cfg(test)]
mod tests {
    use super::template_matches;

    #[test]
    fn templates_match_uris() {
        assert!(template_matches(
            "test://template/{id}/data",
            "test://template/123/data"
        ));
        assert!(!template_matches(
            "test://template/{id}/data",
            "test://template//data"
        ));
        assert!(!template_matches(
            "test://template/{id}/data",
            "test://other/1/data"
        ));
        assert!(template_matches("file:///{path}", "file:///a/b.txt"));
        assert!(template_matches("plain://x", "plain://x"));
        assert!(!template_matches("plain://x", "plain://y"));
        assert!(template_matches("a://{x}-{y}", "a://1-2"));
        assert!(!template_matches("a://{x}-{y}", "a://1-"));
    }
}
