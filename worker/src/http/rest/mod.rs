//! The REST API (ContextForge-compatible paths and JSON shapes).
//!
//! - [`openapi`]: the route table type; [`table`] lists every route once, and both
//!   [`routes`] (the axum router) and `/openapi.json` are built from it.
//! - [`gateways`], [`catalog`] (tools, resources, prompts), [`servers`]: handlers.
//! - [`shapes`]: the `*Read` wire shapes and their JSON Schemas.
//! - [`error`]: `ApiError` (every status decided in one place), body/query extractors.
//!
//! Every mutation reloads this worker's registry snapshot at once
//! (`registry.refresh(true)`); other workers see it at their next poll.

mod catalog;
mod error;
mod gateways;
mod openapi;
mod servers;
mod shapes;

use crate::state::AppState;
use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use error::{ApiError, ApiResult, QueryPairs};
use openapi::{Reply, Route, Verb};
use serde::Serialize;
use serde_json::{json, Value};

pub fn routes() -> Router<AppState> {
    let mut router = Router::new();
    for r in table() {
        if r.slash {
            router = router.route(&format!("{}/", r.path), r.handler.clone());
        }
        router = router.route(r.path, r.handler);
    }
    router
}

/// Every REST route, once.
pub(crate) fn table() -> Vec<Route> {
    let mut t = Vec::new();
    t.extend(gateways::routes());
    t.extend(catalog::routes());
    t.extend(servers::routes());
    t.push(
        Route::new(
            Verb::Get,
            "/openapi.json",
            "Meta",
            "This document",
            get(openapi::openapi_json),
        )
        .reply(200, Reply::Any),
    );
    t.push(
        Route::new(
            Verb::Get,
            "/docs",
            "Meta",
            "A page listing this API",
            get(openapi::docs),
        )
        .reply(200, Reply::Html),
    );
    t
}

/// After a mutation: reload this worker's registry now.
async fn changed(st: &AppState) {
    if let Err(e) = st.core.registry.refresh(true).await {
        tracing::warn!(error = %e, "could not reload the registry after a change; the next poll will");
    }
}

/// ContextForge's list parameters.
#[derive(Debug, Clone)]
struct ListParams {
    include_inactive: bool,
    /// `None`: everything.
    limit: Option<usize>,
    offset: usize,
    include_pagination: bool,
    gateway_id: Option<String>,
    /// Tag ids; an item matches if it has any of them.
    tags: Vec<String>,
}

const DEFAULT_PAGE: usize = 50;
const MAX_PAGE: usize = 500;

fn list_params(q: &QueryPairs) -> ApiResult<ListParams> {
    let limit = match q.usize("limit")? {
        None => Some(DEFAULT_PAGE),
        Some(0) => None,
        Some(n) => Some(n.min(MAX_PAGE)),
    };
    let offset = match q.get("cursor") {
        None | Some("") => 0,
        Some(c) => c.parse::<usize>().map_err(|_| {
            ApiError::Validation(vec![error::FieldError::new(
                &["query", "cursor"],
                "value_error",
                format!("cursor: {c:?} is not a cursor this server returned"),
            )])
        })?,
    };
    Ok(ListParams {
        include_inactive: q.bool("include_inactive", false)?,
        limit,
        offset,
        include_pagination: q.bool("include_pagination", false)?,
        gateway_id: q
            .get("gateway_id")
            .filter(|s| !s.is_empty())
            .map(str::to_owned),
        tags: q
            .get("tags")
            .map(|t| {
                t.split(',')
                    .map(error::tag_id)
                    .filter(|t| !t.is_empty())
                    .collect()
            })
            .unwrap_or_default(),
    })
}

impl ListParams {
    fn has_tags(&self, labels: &[String]) -> bool {
        self.tags.is_empty() || labels.iter().any(|l| self.tags.contains(&error::tag_id(l)))
    }
}

/// One page of `items`: an array, or `{key: [...], "nextCursor": ...}` with
/// `include_pagination=true`.
fn page<T: Serialize>(items: Vec<T>, p: &ListParams, key: &str) -> ApiResult<Response> {
    let total = items.len();
    let start = p.offset.min(total);
    let end = p
        .limit
        .map_or(total, |l| start.saturating_add(l).min(total));
    let next = (end < total).then(|| end.to_string());
    let slice: Vec<T> = items.into_iter().skip(start).take(end - start).collect();
    if p.include_pagination {
        Ok(Json(json!({ key: slice, "nextCursor": next })).into_response())
    } else {
        Ok(Json(slice).into_response())
    }
}

/// What a state endpoint changes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Gateway,
    Tool,
    Resource,
    Prompt,
    Server,
}

impl Kind {
    fn label(self) -> &'static str {
        match self {
            Kind::Gateway => "Gateway",
            Kind::Tool => "Tool",
            Kind::Resource => "Resource",
            Kind::Prompt => "Prompt",
            Kind::Server => "Server",
        }
    }

    fn key(self) -> &'static str {
        match self {
            Kind::Gateway => "gateway",
            Kind::Tool => "tool",
            Kind::Resource => "resource",
            Kind::Prompt => "prompt",
            Kind::Server => "server",
        }
    }

    fn tag(self) -> &'static str {
        match self {
            Kind::Gateway => "Gateways",
            Kind::Tool => "Tools",
            Kind::Resource => "Resources",
            Kind::Prompt => "Prompts",
            Kind::Server => "Servers",
        }
    }
}

/// `POST /{kind}s/{id}/state?activate=…` (and the `/activate`, `/deactivate`
/// aliases, which pass `fixed`). Servers answer their `ServerRead`; the others
/// ContextForge's `{"status", "message", "<kind>": {...}}`.
async fn set_state(
    kind: Kind,
    State(st): State<AppState>,
    Path(id): Path<String>,
    q: QueryPairs,
    fixed: Option<bool>,
) -> ApiResult<Response> {
    let activate = match fixed {
        Some(a) => a,
        None => q.bool("activate", true)?,
    };
    let store = &st.core.registry.store;
    let sep = store.tool_name_separator().to_owned();
    let obj: Value = match kind {
        Kind::Gateway => {
            let g = store.set_gateway_enabled(&id, activate).await?;
            if !activate {
                crate::gateway::federation::close_all(st.core.federation.pool.take_all());
            }
            to_json(gateways::gateway_read(store, &g).await?)
        }
        Kind::Tool => {
            let t = store.set_tool_enabled(&id, activate).await?;
            let gws = catalog::infos_for(store, &t.gateway_id).await?;
            to_json(shapes::ToolRead::new(&t, &gws, &sep))
        }
        Kind::Resource => to_json(shapes::ResourceRead::new(
            &store.set_resource_enabled(&id, activate).await?,
        )),
        Kind::Prompt => to_json(shapes::PromptRead::new(
            &store.set_prompt_enabled(&id, activate).await?,
            &sep,
        )),
        Kind::Server => {
            let s = store.set_server_enabled(&id, activate).await?;
            changed(&st).await;
            let names = servers::tool_names(store).await?;
            return Ok(Json(shapes::ServerRead::new(&s, &names)).into_response());
        }
    };
    changed(&st).await;
    let verb = if activate { "activated" } else { "deactivated" };
    Ok(Json(json!({
        "status": "success",
        "message": format!("{} {id} {verb}", kind.label()),
        kind.key(): obj,
    }))
    .into_response())
}

fn to_json<T: Serialize>(v: T) -> Value {
    serde_json::to_value(v).unwrap_or(Value::Null)
}

/// `POST {path}` with a fixed `activate` (the `/activate` and `/deactivate` aliases).
fn state_alias(kind: Kind, path: &'static str, activate: bool) -> Route {
    let handler = post(move |st, id, q| set_state(kind, st, id, q, Some(activate)));
    let summary = match (kind, activate) {
        (Kind::Gateway, true) => "Enable a gateway (same as /state?activate=true)",
        (Kind::Gateway, false) => "Disable a gateway (same as /state?activate=false)",
        (Kind::Tool, true) => "Enable a tool (same as /state?activate=true)",
        (Kind::Tool, false) => "Disable a tool (same as /state?activate=false)",
        (Kind::Resource, true) => "Enable a resource (same as /state?activate=true)",
        (Kind::Resource, false) => "Disable a resource (same as /state?activate=false)",
        (Kind::Prompt, true) => "Enable a prompt (same as /state?activate=true)",
        (Kind::Prompt, false) => "Disable a prompt (same as /state?activate=false)",
        (Kind::Server, true) => "Enable a virtual server (same as /state?activate=true)",
        (Kind::Server, false) => "Disable a virtual server (same as /state?activate=false)",
    };
    let reply = if kind == Kind::Server {
        Reply::One("ServerRead")
    } else {
        Reply::One("StateChange")
    };
    Route::new(Verb::Post, path, kind.tag(), summary, handler)
        .reply(200, reply)
        .errors(&[404, 503])
}

/// The `/state` route and its deprecated `/toggle` alias.
fn state_routes(kind: Kind, state: &'static str, toggle: &'static str) -> [Route; 2] {
    let reply = if kind == Kind::Server {
        Reply::One("ServerRead")
    } else {
        Reply::One("StateChange")
    };
    let summary = match kind {
        Kind::Gateway => "Enable or disable a gateway",
        Kind::Tool => "Enable (activate=true) or disable a tool",
        Kind::Resource => "Enable (activate=true) or disable a resource",
        Kind::Prompt => "Enable (activate=true) or disable a prompt",
        Kind::Server => "Enable (activate=true) or disable a virtual server",
    };
    [
        Route::new(
            Verb::Post,
            state,
            kind.tag(),
            summary,
            post(move |st, id, q| set_state(kind, st, id, q, None)),
        )
        .query(openapi::STATE_QUERY)
        .reply(200, reply)
        .errors(&[404, 422, 503]),
        Route::new(
            Verb::Post,
            toggle,
            kind.tag(),
            "Deprecated alias of /state",
            post(move |st, id, q| set_state(kind, st, id, q, None)),
        )
        .hidden(),
    ]
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_router_builds() {
        // Route insertion panics on conflicts: building is the test.
        let _ = super::routes();
    }
}
