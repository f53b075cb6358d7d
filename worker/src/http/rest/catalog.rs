//! `/tools`, `/resources`, `/resources/templates`, `/prompts`: what the registered
//! gateways offer (read, enable, disable; they are created by discovery only).

use crate::gateway::dispatch::{dispatch, Context};
use crate::gateway::scope::{Principal, Scope};
use crate::http::rest::error::{ApiError, ApiResult, FieldError, JsonBody, QueryPairs};
use crate::http::rest::openapi::{Reply, Route, Verb, LIST_QUERY};
use crate::http::rest::shapes::{
    gateway_infos, GatewayInfos, PromptRead, ResourceRead, ResourceTemplateRead, ToolRead,
};
use crate::http::rest::{list_params, page, state_alias, state_routes, Kind};
use crate::state::AppState;
use axum::extract::{Path, State};
use axum::response::Response;
use axum::routing::{get, post};
use axum::Json;
use fleetgate_store::{Store, StoreError};
use serde_json::{json, Map, Value};

pub fn routes() -> Vec<Route> {
    let mut v = vec![
        Route::new(Verb::Get, "/tools", "Tools", "List tools", get(list_tools))
            .query(LIST_QUERY)
            .reply(200, Reply::Many("ToolRead"))
            .errors(&[422, 503])
            .slash(),
        Route::new(
            Verb::Get,
            "/tools/{id}",
            "Tools",
            "Get a tool",
            get(get_tool),
        )
        .reply(200, Reply::One("ToolRead"))
        .errors(&[404, 503]),
        Route::new(
            Verb::Get,
            "/resources",
            "Resources",
            "List resources",
            get(list_resources),
        )
        .query(LIST_QUERY)
        .reply(200, Reply::Many("ResourceRead"))
        .errors(&[422, 503])
        .slash(),
        Route::new(
            Verb::Get,
            "/resources/templates",
            "Resources",
            "List resource templates",
            get(list_templates),
        )
        .query(LIST_QUERY)
        .reply(200, Reply::Many("ResourceTemplateRead"))
        .errors(&[422, 503]),
        Route::new(
            Verb::Get,
            "/resources/templates/list",
            "Resources",
            "Resource templates as MCP's resources/templates/list result (ContextForge's path)",
            get(templates_mcp),
        )
        .reply(200, Reply::One("ResourceTemplateList"))
        .errors(&[503]),
        Route::new(
            Verb::Get,
            "/resources/{id}",
            "Resources",
            "Read a resource's content from its upstream (as ContextForge does)",
            get(read_resource),
        )
        .reply(200, Reply::One("ResourceContent"))
        .errors(&[404, 502, 503, 504]),
        Route::new(
            Verb::Get,
            "/resources/{id}/info",
            "Resources",
            "Get a resource's registration",
            get(get_resource),
        )
        .reply(200, Reply::One("ResourceRead"))
        .errors(&[404, 503]),
        Route::new(
            Verb::Get,
            "/prompts",
            "Prompts",
            "List prompts",
            get(list_prompts),
        )
        .query(LIST_QUERY)
        .reply(200, Reply::Many("PromptRead"))
        .errors(&[422, 503])
        .slash(),
        Route::new(
            Verb::Get,
            "/prompts/{id}",
            "Prompts",
            "Render a prompt without arguments through its upstream (as ContextForge does)",
            get(render_prompt_no_args),
        )
        .reply(200, Reply::One("PromptResult"))
        .errors(&[404, 422, 502, 503, 504]),
        Route::new(
            Verb::Post,
            "/prompts/{id}",
            "Prompts",
            "Render a prompt with the arguments in the body ({\"name\": \"value\", ...})",
            post(render_prompt),
        )
        .body("PromptArgs")
        .reply(200, Reply::One("PromptResult"))
        .errors(&[404, 422, 502, 503, 504]),
        Route::new(
            Verb::Get,
            "/prompts/{id}/info",
            "Prompts",
            "Get a prompt's registration",
            get(get_prompt),
        )
        .reply(200, Reply::One("PromptRead"))
        .errors(&[404, 503]),
    ];
    for (kind, [state, toggle, on, off]) in [
        (
            Kind::Tool,
            [
                "/tools/{id}/state",
                "/tools/{id}/toggle",
                "/tools/{id}/activate",
                "/tools/{id}/deactivate",
            ],
        ),
        (
            Kind::Resource,
            [
                "/resources/{id}/state",
                "/resources/{id}/toggle",
                "/resources/{id}/activate",
                "/resources/{id}/deactivate",
            ],
        ),
        (
            Kind::Prompt,
            [
                "/prompts/{id}/state",
                "/prompts/{id}/toggle",
                "/prompts/{id}/activate",
                "/prompts/{id}/deactivate",
            ],
        ),
    ] {
        v.extend(state_routes(kind, state, toggle));
        v.push(state_alias(kind, on, true));
        v.push(state_alias(kind, off, false));
    }
    v
}

/// Url and transport of one gateway, for tool reads.
pub async fn infos_for(store: &Store, gateway_id: &str) -> Result<GatewayInfos, StoreError> {
    match store.get_gateway(gateway_id).await {
        Ok(g) => Ok(gateway_infos(std::slice::from_ref(&g))),
        Err(StoreError::NotFound { .. }) => Ok(GatewayInfos::new()),
        Err(e) => Err(e),
    }
}

async fn list_tools(State(st): State<AppState>, q: QueryPairs) -> ApiResult<Response> {
    let p = list_params(&q)?;
    let store = &st.core.registry.store;
    let gws = gateway_infos(&store.list_gateways(true).await?);
    let sep = store.tool_name_separator();
    let items: Vec<ToolRead> = store
        .list_tools(p.include_inactive)
        .await?
        .iter()
        .filter(|t| p.gateway_id.as_ref().is_none_or(|g| *g == t.gateway_id))
        .filter(|_| p.tags.is_empty())
        .map(|t| ToolRead::new(t, &gws, sep))
        .collect();
    page(items, &p, "tools")
}

async fn get_tool(State(st): State<AppState>, Path(id): Path<String>) -> ApiResult<Json<ToolRead>> {
    let store = &st.core.registry.store;
    let t = store.get_tool(&id).await?;
    let gws = infos_for(store, &t.gateway_id).await?;
    Ok(Json(ToolRead::new(&t, &gws, store.tool_name_separator())))
}

async fn list_resources(State(st): State<AppState>, q: QueryPairs) -> ApiResult<Response> {
    let p = list_params(&q)?;
    let items: Vec<ResourceRead> = st
        .core
        .registry
        .store
        .list_resources(p.include_inactive)
        .await?
        .iter()
        .filter(|r| p.gateway_id.as_ref().is_none_or(|g| *g == r.gateway_id))
        .filter(|_| p.tags.is_empty())
        .map(ResourceRead::new)
        .collect();
    page(items, &p, "resources")
}

async fn get_resource(
    State(st): State<AppState>,
    Path(id): Path<String>,
) -> ApiResult<Json<ResourceRead>> {
    let r = st.core.registry.store.get_resource(&id).await?;
    Ok(Json(ResourceRead::new(&r)))
}

async fn list_templates(State(st): State<AppState>, q: QueryPairs) -> ApiResult<Response> {
    let p = list_params(&q)?;
    let items: Vec<ResourceTemplateRead> = st
        .core
        .registry
        .store
        .list_resource_templates(p.include_inactive)
        .await?
        .iter()
        .filter(|t| p.gateway_id.as_ref().is_none_or(|g| *g == t.gateway_id))
        .filter(|_| p.tags.is_empty())
        .map(ResourceTemplateRead::new)
        .collect();
    page(items, &p, "resourceTemplates")
}

async fn templates_mcp(State(st): State<AppState>) -> ApiResult<Json<Value>> {
    let items: Vec<Value> = st
        .core
        .registry
        .store
        .list_resource_templates(false)
        .await?
        .iter()
        .map(ResourceTemplateRead::mcp)
        .collect();
    Ok(Json(json!({ "resourceTemplates": items })))
}

async fn list_prompts(State(st): State<AppState>, q: QueryPairs) -> ApiResult<Response> {
    let p = list_params(&q)?;
    let store = &st.core.registry.store;
    let sep = store.tool_name_separator();
    let items: Vec<PromptRead> = store
        .list_prompts(p.include_inactive)
        .await?
        .iter()
        .filter(|x| p.gateway_id.as_ref().is_none_or(|g| *g == x.gateway_id))
        .filter(|_| p.tags.is_empty())
        .map(|x| PromptRead::new(x, sep))
        .collect();
    page(items, &p, "prompts")
}

async fn get_prompt(
    State(st): State<AppState>,
    Path(id): Path<String>,
) -> ApiResult<Json<PromptRead>> {
    let store = &st.core.registry.store;
    let p = store.get_prompt(&id).await?;
    Ok(Json(PromptRead::new(&p, store.tool_name_separator())))
}

/// Runs one MCP request through the dispatcher, on everything this worker exposes,
/// with the worker's pooled upstream sessions (as `/rpc` does).
async fn call(st: &AppState, method: &str, params: Value) -> ApiResult<Value> {
    let ctx = Context::pooled(Principal::anonymous(), Scope::All, None, Vec::new());
    let result = dispatch(&st.core, &ctx, method, Some(params)).await?;
    Ok(fleetgate_mcp::jsonrpc::value_of(&result))
}

/// A disabled item is not served (the dispatcher only knows enabled ones).
fn disabled(kind: &str, id: &str) -> ApiError {
    ApiError::Detail(
        axum::http::StatusCode::NOT_FOUND,
        format!("{kind} {id} is disabled"),
    )
}

async fn read_resource(
    State(st): State<AppState>,
    Path(id): Path<String>,
) -> ApiResult<Json<Value>> {
    let r = st.core.registry.store.get_resource(&id).await?;
    if !r.enabled {
        return Err(disabled("Resource", &id));
    }
    let result = call(&st, "resources/read", json!({ "uri": r.uri })).await?;
    let contents = result["contents"].as_array().cloned().unwrap_or_default();
    let mut out = json!({ "type": "resource", "id": id, "uri": r.uri });
    if let Some(Value::Object(first)) = contents.first() {
        for (k, v) in first {
            out[k] = v.clone();
        }
    }
    if contents.len() > 1 {
        out["contents"] = Value::Array(contents);
    }
    Ok(Json(out))
}

async fn render(st: &AppState, id: &str, args: Map<String, Value>) -> ApiResult<Json<Value>> {
    let p = st.core.registry.store.get_prompt(id).await?;
    if !p.enabled {
        return Err(disabled("Prompt", id));
    }
    let result = call(
        st,
        "prompts/get",
        json!({ "name": p.name, "arguments": args }),
    )
    .await?;
    Ok(Json(result))
}

async fn render_prompt_no_args(
    State(st): State<AppState>,
    Path(id): Path<String>,
) -> ApiResult<Json<Value>> {
    render(&st, &id, Map::new()).await
}

async fn render_prompt(
    State(st): State<AppState>,
    Path(id): Path<String>,
    JsonBody(body): JsonBody,
) -> ApiResult<Json<Value>> {
    // ContextForge takes the arguments as the body, or wrapped as {"args": {...}}.
    let body = match body.get("args") {
        Some(inner) if inner.is_object() && body.as_object().is_some_and(|o| o.len() == 1) => {
            inner.clone()
        }
        _ => body,
    };
    let Value::Object(map) = body else {
        return Err(ApiError::Validation(vec![FieldError::new(
            &["body"],
            "model_type",
            "Input should be a JSON object of prompt arguments",
        )]));
    };
    let mut args = Map::new();
    let mut errors = Vec::new();
    for (k, v) in map {
        match v {
            Value::String(_) => {
                args.insert(k, v);
            }
            // MCP prompt arguments are strings; numbers and booleans are sent as text.
            Value::Number(_) | Value::Bool(_) => {
                args.insert(k, Value::String(v.to_string()));
            }
            Value::Null => {}
            Value::Array(_) | Value::Object(_) => errors.push(FieldError::new(
                &["body", &k],
                "string_type",
                format!("{k}: prompt arguments must be strings"),
            )),
        }
    }
    if !errors.is_empty() {
        return Err(ApiError::Validation(errors));
    }
    render(&st, &id, args).await
}
