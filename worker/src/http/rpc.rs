//! `POST /rpc`: plain JSON-RPC, ContextForge-compatible, through the same
//! dispatcher as MCP. `params.server_id` selects a virtual server (it becomes the
//! typed scope; the dispatcher never reads it from params). No session: upstream
//! sessions come from the worker's pool, keyed by principal and gateway.

use crate::gateway::dispatch::{dispatch, Context, METHODS};
use crate::gateway::error::RpcError;
use crate::gateway::scope::{Principal, Scope};
use crate::state::AppState;
use crate::wire::{json_body, method_not_allowed, read_body, rpc_error};
use axum::body::Bytes;
use axum::extract::Request;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use fleetgate_mcp::jsonrpc::{self, ErrorObject, Id, Message};
use serde_json::value::RawValue;
use serde_json::{json, Map, Value};

/// ContextForge's older method names.
fn canonical(method: &str) -> &str {
    match method {
        "list_tools" => "tools/list",
        "list_resources" => "resources/list",
        "list_resource_templates" => "resources/templates/list",
        "list_prompts" => "prompts/list",
        "read_resource" => "resources/read",
        "get_prompt" => "prompts/get",
        "call_tool" => "tools/call",
        other => other,
    }
}

/// `POST /rpc` (routed in front of the router, `Endpoint::Rpc`).
pub async fn serve(st: &AppState, who: Principal, req: Request) -> Response {
    if req.method() != axum::http::Method::POST {
        return method_not_allowed("POST");
    }
    // A cross-site page must not run tools through a browser (CSRF), with
    // or without auth: the MCP paths' origin policy, and its refusal.
    if let Err(refused) = crate::http::mcp::check_origin(st, req.headers()) {
        return refused.into_response();
    }
    match read_body(req.into_body(), st.gateway_cfg.max_body_bytes).await {
        Ok(body) => rpc(st, who, body).await,
        Err(e) => e.into_response(),
    }
}

async fn rpc(st: &AppState, who: Principal, body: Bytes) -> Response {
    let req = match jsonrpc::parse_message(&body) {
        Ok(Message::Request(r)) => r,
        Ok(Message::Notification(_)) => return StatusCode::ACCEPTED.into_response(),
        Ok(_) => {
            return rpc_error(
                StatusCode::BAD_REQUEST,
                &Id::Null,
                &ErrorObject::invalid_request(
                    "Invalid Request: /rpc takes requests, not responses",
                ),
            )
        }
        Err(e) => return rpc_error(StatusCode::BAD_REQUEST, &Id::Null, &e.to_error_object()),
    };
    let id = req.id.clone();
    match run(st, who, req).await {
        Ok(result) => json_body(StatusCode::OK, jsonrpc::encode_response(&id, &result)),
        Err(e) => rpc_error(e.http_status(), &id, &e.to_error_object()),
    }
}

async fn run(
    st: &AppState,
    who: Principal,
    req: fleetgate_mcp::Request,
) -> Result<Box<RawValue>, RpcError> {
    let mut params = match req.params {
        None => Map::new(),
        Some(Value::Object(m)) => m,
        Some(_) => return Err(RpcError::InvalidParams("params must be an object".into())),
    };
    let asked = match params.remove("server_id") {
        None | Some(Value::Null) => Scope::All,
        Some(Value::String(id)) => Scope::Server(id.into()),
        Some(_) => return Err(RpcError::InvalidParams("server_id must be a string".into())),
    };
    let scope = who.effective_scope(asked)?;
    let mut method = canonical(&req.method).to_owned();
    // ContextForge's legacy form: the method is a tool's name, params its arguments.
    let snap = st.core.registry.snapshot();
    if let Some(idx) = snap.scope(&scope) {
        if !METHODS.contains(&method.as_str()) && idx.tool(&method).is_some() {
            params = json!({ "name": method, "arguments": Value::Object(params) })
                .as_object()
                .cloned()
                .unwrap_or_default();
            method = "tools/call".into();
        }
    }
    let ctx = Context::pooled(who, scope, None, Vec::new());
    dispatch(&st.core, &ctx, &method, Some(Value::Object(params))).await
}
