//! `/servers`: virtual servers (a named selection of tools, resources and prompts,
//! served at `/servers/{id}/mcp`).

use crate::gateway::scope::Scope;
use crate::http::rest::error::{ApiResult, Fields, JsonBody, QueryPairs};
use crate::http::rest::openapi::{Reply, Route, Verb, LIST_QUERY};
use crate::http::rest::shapes::{gateway_infos, PromptRead, ResourceRead, ServerRead, ToolRead};
use crate::http::rest::{changed, list_params, page, state_alias, state_routes, Kind};
use crate::state::AppState;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post, put};
use axum::Json;
use fleetgate_store::{NewServer, ServerUpdate, Store, StoreError};
use serde_json::{json, Value};
use std::collections::HashMap;

pub fn routes() -> Vec<Route> {
    let [state, toggle] = state_routes(Kind::Server, "/servers/{id}/state", "/servers/{id}/toggle");
    vec![
        Route::new(
            Verb::Get,
            "/servers",
            "Servers",
            "List virtual servers",
            get(list),
        )
        .query(LIST_QUERY)
        .reply(200, Reply::Many("ServerRead"))
        .errors(&[422, 503])
        .slash(),
        Route::new(
            Verb::Post,
            "/servers",
            "Servers",
            "Create a virtual server",
            post(create),
        )
        .body("ServerCreate")
        .reply(201, Reply::One("ServerRead"))
        .errors(&[409, 422, 503])
        .slash(),
        Route::new(
            Verb::Get,
            "/servers/{id}",
            "Servers",
            "Get a virtual server",
            get(read),
        )
        .reply(200, Reply::One("ServerRead"))
        .errors(&[404, 503]),
        Route::new(
            Verb::Put,
            "/servers/{id}",
            "Servers",
            "Update a virtual server",
            put(update),
        )
        .body("ServerUpdate")
        .reply(200, Reply::One("ServerRead"))
        .errors(&[404, 409, 422, 503]),
        Route::new(
            Verb::Delete,
            "/servers/{id}",
            "Servers",
            "Delete a virtual server (its tools stay)",
            delete(remove),
        )
        .reply(200, Reply::One("Status"))
        .errors(&[404, 503]),
        state,
        toggle,
        state_alias(Kind::Server, "/servers/{id}/activate", true),
        state_alias(Kind::Server, "/servers/{id}/deactivate", false),
        Route::new(
            Verb::Get,
            "/servers/{id}/tools",
            "Servers",
            "The server's tools, each with the name the server exposes it under (serverToolName)",
            get(tools),
        )
        .query(&[("include_inactive", "boolean", "Include disabled tools")])
        .reply(200, Reply::Many("ToolRead"))
        .errors(&[404, 422, 503]),
        Route::new(
            Verb::Get,
            "/servers/{id}/resources",
            "Servers",
            "The server's resources",
            get(resources),
        )
        .query(&[("include_inactive", "boolean", "Include disabled resources")])
        .reply(200, Reply::Many("ResourceRead"))
        .errors(&[404, 422, 503]),
        Route::new(
            Verb::Get,
            "/servers/{id}/prompts",
            "Servers",
            "The server's prompts",
            get(prompts),
        )
        .query(&[("include_inactive", "boolean", "Include disabled prompts")])
        .reply(200, Reply::Many("PromptRead"))
        .errors(&[404, 422, 503]),
    ]
}

/// Tool id → qualified name, for `associatedTools`.
pub async fn tool_names(store: &Store) -> Result<HashMap<String, String>, StoreError> {
    Ok(store
        .list_tools(true)
        .await?
        .into_iter()
        .map(|t| (t.id, t.name))
        .collect())
}

async fn list(State(st): State<AppState>, q: QueryPairs) -> ApiResult<Response> {
    let p = list_params(&q)?;
    let store = &st.core.registry.store;
    let names = tool_names(store).await?;
    let items: Vec<ServerRead> = store
        .list_servers(p.include_inactive)
        .await?
        .iter()
        .filter(|s| p.has_tags(&s.tags))
        .map(|s| ServerRead::new(s, &names))
        .collect();
    page(items, &p, "servers")
}

async fn read(State(st): State<AppState>, Path(id): Path<String>) -> ApiResult<Json<ServerRead>> {
    let store = &st.core.registry.store;
    let s = store.get_server(&id).await?;
    Ok(Json(ServerRead::new(&s, &tool_names(store).await?)))
}

/// A server body, create or update, bare or wrapped in `{"server": {...}}`.
#[derive(Debug, Default)]
struct Input {
    id: Option<String>,
    name: Option<String>,
    description: Option<Option<String>>,
    icon: Option<Option<String>>,
    tags: Option<Vec<String>>,
    tools: Option<Vec<String>>,
    resources: Option<Vec<String>>,
    prompts: Option<Vec<String>>,
}

fn parse(body: Value, create: bool) -> ApiResult<Input> {
    let wrapped = body.get("server").filter(|v| v.is_object()).cloned();
    let mut f = match wrapped {
        // ContextForge 1.x: {"server": {...}, "team_id": ..., "visibility": ...}.
        Some(inner) => Fields::new(inner, &["body", "server"])?,
        None => Fields::new(body, &["body"])?,
    };
    let mut input = Input {
        id: if create { f.opt_str("id") } else { None },
        ..Input::default()
    };
    input.name = if create {
        Some(f.req_str("name"))
    } else {
        match f.patch_str("name") {
            Some(None) => {
                f.reject("name", "must not be null");
                None
            }
            Some(Some(n)) if n.trim().is_empty() => {
                f.reject("name", "must not be empty");
                None
            }
            other => other.flatten(),
        }
    };
    input.description = f.patch_str("description");
    input.icon = f.patch_str("icon");
    input.tags = f.opt_tags("tags");
    input.tools = ids(&mut f, "associated_tools");
    input.resources = ids(&mut f, "associated_resources");
    input.prompts = ids(&mut f, "associated_prompts");
    f.finish()?;
    Ok(input)
}

/// A list of ids, or ContextForge's comma-separated string form.
fn ids(f: &mut Fields, field: &str) -> Option<Vec<String>> {
    let clean = |x: &str| Some(x.trim().to_owned()).filter(|x| !x.is_empty());
    match f.take(field)? {
        Value::Null => None,
        Value::String(s) => Some(s.split(',').filter_map(clean).collect()),
        Value::Array(items) => {
            let mut out = Vec::with_capacity(items.len());
            for (i, item) in items.iter().enumerate() {
                match item.as_str() {
                    Some(x) => out.extend(clean(x)),
                    None => f.reject(&format!("{field}.{i}"), "must be an id (a string)"),
                }
            }
            Some(out)
        }
        _ => {
            f.reject(field, "must be a list of ids");
            None
        }
    }
}

/// Resolves qualified names (tools, prompts) and URIs (resources) given where ids
/// are expected; unknown entries stay as they are for the store to reject by name.
async fn resolve(store: &Store, input: &mut Input) -> Result<(), StoreError> {
    if let Some(list) = &mut input.tools {
        let tools = store.list_tools(true).await?;
        let by_name: HashMap<&str, &str> = tools
            .iter()
            .map(|t| (t.name.as_str(), t.id.as_str()))
            .collect();
        let known = |x: &str| tools.iter().any(|t| t.id == x);
        for x in list.iter_mut() {
            if !known(x) {
                if let Some(id) = by_name.get(x.as_str()) {
                    *x = (*id).to_owned();
                }
            }
        }
    }
    if let Some(list) = &mut input.prompts {
        let prompts = store.list_prompts(true).await?;
        let by_name: HashMap<&str, &str> = prompts
            .iter()
            .map(|p| (p.name.as_str(), p.id.as_str()))
            .collect();
        for x in list.iter_mut() {
            if !prompts.iter().any(|p| p.id == *x) {
                if let Some(id) = by_name.get(x.as_str()) {
                    *x = (*id).to_owned();
                }
            }
        }
    }
    if let Some(list) = &mut input.resources {
        let resources = store.list_resources(true).await?;
        let by_uri: HashMap<&str, &str> = resources
            .iter()
            .map(|r| (r.uri.as_str(), r.id.as_str()))
            .collect();
        for x in list.iter_mut() {
            if !resources.iter().any(|r| r.id == *x) {
                if let Some(id) = by_uri.get(x.as_str()) {
                    *x = (*id).to_owned();
                }
            }
        }
    }
    Ok(())
}

async fn create(State(st): State<AppState>, JsonBody(body): JsonBody) -> ApiResult<Response> {
    let mut input = parse(body, true)?;
    let store = &st.core.registry.store;
    resolve(store, &mut input).await?;
    let s = store
        .create_server(NewServer {
            id: input.id,
            name: input.name.unwrap_or_default(),
            description: input.description.flatten(),
            icon: input.icon.flatten(),
            tags: input.tags.unwrap_or_default(),
            tool_ids: input.tools.unwrap_or_default(),
            resource_ids: input.resources.unwrap_or_default(),
            prompt_ids: input.prompts.unwrap_or_default(),
        })
        .await?;
    changed(&st).await;
    let read = ServerRead::new(&s, &tool_names(store).await?);
    Ok((StatusCode::CREATED, Json(read)).into_response())
}

async fn update(
    State(st): State<AppState>,
    Path(id): Path<String>,
    JsonBody(body): JsonBody,
) -> ApiResult<Json<ServerRead>> {
    let store = &st.core.registry.store;
    store.get_server(&id).await?;
    let mut input = parse(body, false)?;
    resolve(store, &mut input).await?;
    let s = store
        .update_server(
            &id,
            ServerUpdate {
                name: input.name,
                description: input.description,
                icon: input.icon,
                tags: input.tags,
                tool_ids: input.tools,
                resource_ids: input.resources,
                prompt_ids: input.prompts,
            },
        )
        .await?;
    changed(&st).await;
    Ok(Json(ServerRead::new(&s, &tool_names(store).await?)))
}

async fn remove(State(st): State<AppState>, Path(id): Path<String>) -> ApiResult<Json<Value>> {
    st.core.registry.store.delete_server(&id).await?;
    changed(&st).await;
    Ok(Json(json!({
        "status": "success",
        "message": format!("Server {id} deleted successfully"),
    })))
}

async fn tools(
    State(st): State<AppState>,
    Path(id): Path<String>,
    q: QueryPairs,
) -> ApiResult<Json<Vec<ToolRead>>> {
    let include_inactive = q.bool("include_inactive", false)?;
    let store = &st.core.registry.store;
    let tools = store.server_tools(&id).await?;
    let gws = gateway_infos(&store.list_gateways(true).await?);
    let sep = store.tool_name_separator();
    // The names this worker's registry exposes the tools under on /servers/{id}/mcp.
    let snap = st.core.registry.snapshot();
    let exposed: HashMap<&str, &str> = snap
        .scope(&Scope::Server(id.as_str().into()))
        .map(|idx| {
            idx.tools
                .iter()
                .map(|e| (e.item.id.as_str(), e.name.as_str()))
                .collect()
        })
        .unwrap_or_default();
    Ok(Json(
        tools
            .iter()
            .filter(|t| include_inactive || t.enabled)
            .map(|t| {
                let mut r = ToolRead::new(t, &gws, sep);
                r.server_tool_name = exposed.get(t.id.as_str()).map(|n| (*n).to_owned());
                r
            })
            .collect(),
    ))
}

async fn resources(
    State(st): State<AppState>,
    Path(id): Path<String>,
    q: QueryPairs,
) -> ApiResult<Json<Vec<ResourceRead>>> {
    let include_inactive = q.bool("include_inactive", false)?;
    let items = st.core.registry.store.server_resources(&id).await?;
    Ok(Json(
        items
            .iter()
            .filter(|r| include_inactive || r.enabled)
            .map(ResourceRead::new)
            .collect(),
    ))
}

async fn prompts(
    State(st): State<AppState>,
    Path(id): Path<String>,
    q: QueryPairs,
) -> ApiResult<Json<Vec<PromptRead>>> {
    let include_inactive = q.bool("include_inactive", false)?;
    let store = &st.core.registry.store;
    let items = store.server_prompts(&id).await?;
    let sep = store.tool_name_separator();
    Ok(Json(
        items
            .iter()
            .filter(|p| include_inactive || p.enabled)
            .map(|p| PromptRead::new(p, sep))
            .collect(),
    ))
}
