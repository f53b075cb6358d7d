//! The stateless 2026-07-28 draft (SEP-2575): no `initialize`, no session; every request
//! carries the protocol version, client capabilities (and optionally client info and log
//! level) in `params._meta`, and the `MCP-Protocol-Version`, `Mcp-Method` and `Mcp-Name`
//! headers must match the body (SEP-2243).
//!
//! Implemented: `server/discover`, per-request `_meta` validation, version negotiation
//! errors, header mismatch, undeclared client capabilities, the removed methods,
//! `resultType` and caching hints (SEP-2549) on results, `subscriptions/listen`,
//! input-required results (SEP-2322, see [`crate::mrtr`]), the draft's diagnostic tools,
//! and the ordinary tools/resources/prompts/completion calls.
//! Not implemented: the tasks extension, `x-mcp-header` custom headers.

use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;

use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use futures_util::StreamExt;
use http::{HeaderMap, StatusCode};
use serde_json::{json, Value};
use tokio::sync::{broadcast, mpsc};

use crate::catalog::{Tool, DRAFT_TOOLS};
use crate::http::{rpc_http_error, sse_stream, Accept};
use crate::jobs::{self, Ctx, Out};
use crate::mcp::{self, Reply, Req};
use crate::mrtr;
use crate::rpc::{self, Incoming, Kind};
use crate::state::{ListChange, Shared, DRAFT_VERSION, LOG_LEVELS, STATEFUL_VERSIONS};
use crate::stats::KNOWN_METHODS;

pub const META_PROTOCOL_VERSION: &str = "io.modelcontextprotocol/protocolVersion";
pub const META_CLIENT_CAPABILITIES: &str = "io.modelcontextprotocol/clientCapabilities";
pub const META_LOG_LEVEL: &str = "io.modelcontextprotocol/logLevel";

pub const HEADER_MISMATCH: i64 = -32020;
pub const MISSING_REQUIRED_CLIENT_CAPABILITY: i64 = -32021;
pub const UNSUPPORTED_PROTOCOL_VERSION: i64 = -32022;

/// Methods of the stateful revisions that the draft removed.
const REMOVED: &[&str] = &[
    "initialize",
    "ping",
    "logging/setLevel",
    "resources/subscribe",
    "resources/unsubscribe",
];

/// A session-less request speaking the draft: the header says so, or `_meta` carries a
/// protocol version (whatever its value, so that unsupported versions get the draft's
/// error).
pub fn is_draft(version_header: Option<&str>, msg: &Incoming<'_>) -> bool {
    version_header == Some(DRAFT_VERSION)
        || msg
            .params
            .as_ref()
            .and_then(|p| p.get("_meta"))
            .and_then(|m| m.get(META_PROTOCOL_VERSION))
            .is_some()
}

fn supported_versions() -> Vec<&'static str> {
    let mut v = vec![DRAFT_VERSION];
    v.extend_from_slice(STATEFUL_VERSIONS);
    v
}

fn error(
    status: StatusCode,
    id: &Value,
    code: i64,
    message: &str,
    data: Option<&Value>,
) -> Response {
    let mut r = rpc_http_error(status, id, code, message);
    if data.is_some() {
        *r.body_mut() = axum::body::Body::from(rpc::error_msg(id, code, message, data));
    }
    r
}

/// Draft results carry `resultType` (SEP-2322); cacheable ones (SEP-2549) also carry
/// `ttlMs` and `cacheScope`. Applied to a complete JSON-RPC message.
pub fn finalize(msg: Bytes, cacheable: bool) -> Bytes {
    let Ok(mut v) = serde_json::from_slice::<Value>(&msg) else {
        return msg;
    };
    let Some(r) = v.get_mut("result").and_then(Value::as_object_mut) else {
        return msg;
    };
    r.entry("resultType").or_insert_with(|| json!("complete"));
    if cacheable {
        r.insert("ttlMs".into(), json!(0));
        r.insert("cacheScope".into(), json!("public"));
    }
    Bytes::from(serde_json::to_vec(&v).unwrap_or_default())
}

pub async fn handle(
    shared: &Arc<Shared>,
    headers: &HeaderMap,
    mut msg: Incoming<'_>,
    acc: Accept,
    version_header: Option<&str>,
) -> Response {
    shared.stats.stateless_requests.fetch_add(1, Relaxed);
    let params = msg.params.take();
    let (id, method) = match msg.kind() {
        Kind::Request { id, method } => (id, method),
        Kind::Notification { method } => {
            shared.stats.count_method(method);
            return StatusCode::ACCEPTED.into_response();
        }
        Kind::Response { .. } => return StatusCode::ACCEPTED.into_response(),
        Kind::Invalid { id, why } => {
            return rpc_http_error(StatusCode::BAD_REQUEST, &id, rpc::INVALID_REQUEST, why)
        }
    };
    shared.stats.count_method(method);

    // SEP-2243: the standard headers must mirror the body.
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(|v| v.trim_matches([' ', '\t']))
    };
    let body_name = match method {
        "tools/call" | "prompts/get" => params.as_ref().and_then(|p| p.get("name")),
        "resources/read" => params.as_ref().and_then(|p| p.get("uri")),
        "tasks/get" | "tasks/update" | "tasks/cancel" => {
            params.as_ref().and_then(|p| p.get("taskId"))
        }
        _ => None,
    }
    .and_then(Value::as_str);
    let mismatch = if header("mcp-method") != Some(method) {
        Some("Header mismatch: Mcp-Method must be present and equal the body's method")
    } else if body_name.is_some() && header("mcp-name") != body_name {
        Some("Header mismatch: Mcp-Name must be present and equal the body's name/uri")
    } else {
        None
    };
    if let Some(why) = mismatch {
        return error(StatusCode::BAD_REQUEST, &id, HEADER_MISMATCH, why, None);
    }

    let meta = params.as_ref().and_then(|p| p.get("_meta"));
    let Some(meta) = meta.filter(|m| m.is_object()) else {
        return error(
            StatusCode::BAD_REQUEST,
            &id,
            rpc::INVALID_PARAMS,
            "Invalid params: missing _meta",
            None,
        );
    };
    let Some(requested) = meta.get(META_PROTOCOL_VERSION).and_then(Value::as_str) else {
        return error(
            StatusCode::BAD_REQUEST,
            &id,
            rpc::INVALID_PARAMS,
            &format!("Invalid params: _meta is missing {META_PROTOCOL_VERSION}"),
            None,
        );
    };
    let Some(caps) = meta.get(META_CLIENT_CAPABILITIES).filter(|c| c.is_object()) else {
        return error(
            StatusCode::BAD_REQUEST,
            &id,
            rpc::INVALID_PARAMS,
            &format!("Invalid params: _meta is missing {META_CLIENT_CAPABILITIES}"),
            None,
        );
    };
    if version_header != Some(requested) {
        return error(
            StatusCode::BAD_REQUEST,
            &id,
            HEADER_MISMATCH,
            "Header mismatch: MCP-Protocol-Version must equal _meta protocolVersion",
            Some(&json!({ "header": version_header, "meta": requested })),
        );
    }
    if requested != DRAFT_VERSION {
        return error(
            StatusCode::BAD_REQUEST,
            &id,
            UNSUPPORTED_PROTOCOL_VERSION,
            "Unsupported protocol version",
            Some(&json!({ "supported": supported_versions(), "requested": requested })),
        );
    }
    if REMOVED.contains(&method) {
        return error(
            StatusCode::NOT_FOUND,
            &id,
            rpc::METHOD_NOT_FOUND,
            &format!("Method not found: {method} (removed in {DRAFT_VERSION})"),
            None,
        );
    }
    if !KNOWN_METHODS.contains(&method) || method.starts_with("notifications/") {
        return error(
            StatusCode::NOT_FOUND,
            &id,
            rpc::METHOD_NOT_FOUND,
            &format!("Method not found: {method}"),
            None,
        );
    }

    let catalog = &shared.catalog;
    let cacheable = matches!(
        method,
        "server/discover"
            | "tools/list"
            | "prompts/list"
            | "resources/list"
            | "resources/templates/list"
            | "resources/read"
    );
    let tool_name = params
        .as_ref()
        .and_then(|p| p.get("name"))
        .and_then(Value::as_str)
        .and_then(|n| n.strip_prefix(shared.cfg.tools_prefix.as_str()));
    let log_level = meta
        .get(META_LOG_LEVEL)
        .and_then(Value::as_str)
        .and_then(|l| LOG_LEVELS.iter().position(|x| *x == l))
        .map(|i| i as u8);
    let msg = match method {
        "server/discover" => rpc::result_msg(&id, &mcp::discover_result(shared)),
        "tools/list" => match shared.revealed.load(std::sync::atomic::Ordering::Relaxed) {
            true => rpc::raw_result_msg(&id, &catalog.revealed_draft_tools_list),
            false => rpc::raw_result_msg(&id, &catalog.draft_tools_list),
        },
        // SEP-2164: an unknown resource is invalid params (-32602), not -32002.
        "resources/read"
            if body_name.is_some_and(|u| crate::catalog::read_resource(u).is_none()) =>
        {
            rpc::error_msg(
                &id,
                rpc::INVALID_PARAMS,
                "Resource not found",
                Some(&json!({ "uri": body_name })),
            )
        }
        "prompts/list" => rpc::raw_result_msg(&id, &catalog.draft_prompts_list),
        "prompts/get"
            if params
                .as_ref()
                .and_then(|p| p.get("name"))
                .and_then(Value::as_str)
                == Some(mrtr::PROMPT) =>
        {
            mrtr::get_prompt(&id, params.as_ref().unwrap_or(&Value::Null))
        }
        "tools/call" if tool_name.is_some_and(|n| mrtr::TOOLS.iter().any(|(t, _)| *t == n)) => {
            let p = params.as_ref().unwrap_or(&Value::Null);
            mrtr::call_tool(shared, &id, tool_name.unwrap_or_default(), p, caps)
        }
        "subscriptions/listen"
            if params
                .as_ref()
                .and_then(|p| p.get("notifications"))
                .is_some_and(|n| n.get("taskIds").is_some())
                && !crate::tasks::declared(caps) =>
        {
            return error(
                StatusCode::BAD_REQUEST,
                &id,
                MISSING_REQUIRED_CLIENT_CAPABILITY,
                "Missing required client capability: taskIds need the tasks extension",
                Some(
                    &json!({ "requiredCapabilities": { "extensions": { crate::tasks::EXTENSION: {} } } }),
                ),
            );
        }
        "subscriptions/listen" => return listen(shared, id, params.as_ref()),
        // A tool that can only run as a task, for a client that cannot take one.
        "tools/call" if tool_name == Some("failing_job") && !crate::tasks::declared(caps) => {
            return error(
                StatusCode::BAD_REQUEST,
                &id,
                MISSING_REQUIRED_CLIENT_CAPABILITY,
                "Missing required client capability: failing_job runs only as a task",
                Some(
                    &json!({ "requiredCapabilities": { "extensions": { crate::tasks::EXTENSION: {} } } }),
                ),
            );
        }
        "tools/call"
            if tool_name.is_some_and(|n| crate::tasks::TOOLS.iter().any(|(t, _)| *t == n)) =>
        {
            let p = params.as_ref().unwrap_or(&Value::Null);
            crate::tasks::call_tool(shared, &id, tool_name.unwrap_or_default(), p, caps).await
        }
        "tasks/get" | "tasks/update" | "tasks/cancel" if !crate::tasks::declared(caps) => {
            return error(
                StatusCode::BAD_REQUEST,
                &id,
                MISSING_REQUIRED_CLIENT_CAPABILITY,
                "Missing required client capability: the tasks extension",
                Some(
                    &json!({ "requiredCapabilities": { "extensions": { crate::tasks::EXTENSION: {} } } }),
                ),
            );
        }
        "tasks/get" | "tasks/update" | "tasks/cancel" => {
            crate::tasks::handle(shared, &id, method, params.as_ref())
        }
        "tools/call" if tool_name.is_some_and(|n| DRAFT_TOOLS.iter().any(|(t, _)| *t == n)) => {
            return draft_tool(shared, id, tool_name.unwrap_or_default(), caps, log_level);
        }
        _ => {
            let tool = params
                .as_ref()
                .and_then(|p| p.get("name"))
                .and_then(Value::as_str)
                .and_then(|n| catalog.tool_index(n))
                .map(|i| crate::catalog::TOOLS[i].tool);
            let needs = match tool {
                Some(Tool::Sampling) => Some("sampling"),
                Some(Tool::Elicitation | Tool::ElicitationDefaults | Tool::ElicitationEnums) => {
                    Some("elicitation")
                }
                _ => None,
            };
            if method == "tools/call" {
                if let Some(cap) = needs.filter(|c| caps.get(*c).is_none()) {
                    return error(
                        StatusCode::BAD_REQUEST,
                        &id,
                        MISSING_REQUIRED_CLIENT_CAPABILITY,
                        &format!("Missing required client capability: {cap}"),
                        Some(&json!({ "requiredCapabilities": { cap: {} } })),
                    );
                }
            }
            let reply = mcp::handle(Req {
                shared,
                session: None,
                id: id.clone(),
                method,
                params,
                headers,
            });
            match reply {
                Reply::Now(m) => m,
                Reply::Job(job) => return run_job(shared, job, acc, log_level).await,
            }
        }
    };
    reply(acc, finalize(msg, cacheable))
}

fn reply(acc: Accept, msg: Bytes) -> Response {
    if acc.json {
        let mut r = Response::new(axum::body::Body::from(msg));
        r.headers_mut().insert(
            http::header::CONTENT_TYPE,
            http::HeaderValue::from_static("application/json"),
        );
        r
    } else {
        sse_stream(vec![rpc::sse_frame(None, &msg)], None)
    }
}

async fn run_job(
    shared: &Arc<Shared>,
    job: mcp::Job,
    acc: Accept,
    log_level: Option<u8>,
) -> Response {
    let (tx, rx) = mpsc::unbounded_channel();
    let ctx = Ctx {
        shared: shared.clone(),
        out: Out::Direct(tx.clone()),
        progress_token: job.progress_token.clone(),
        log_level,
    };
    if acc.sse {
        tokio::spawn(async move {
            let msg = jobs::run(&ctx, job).await;
            ctx.finish(msg);
        });
        drop(tx);
        sse_stream(Vec::new(), Some(rx))
    } else {
        let msg = jobs::run(&ctx, job).await;
        reply(acc, finalize(msg, false))
    }
}

/// The draft's diagnostic tools (see [`DRAFT_TOOLS`]).
fn draft_tool(
    shared: &Shared,
    id: Value,
    name: &str,
    caps: &Value,
    log_level: Option<u8>,
) -> Response {
    let text = |t: &str| finalize(mcp::text_result(&id, t, false), false);
    let frames = match name {
        "test_missing_capability" => {
            if caps.get("sampling").is_none() {
                return error(
                    StatusCode::BAD_REQUEST,
                    &id,
                    MISSING_REQUIRED_CLIENT_CAPABILITY,
                    "Missing required client capability: sampling",
                    Some(&json!({ "requiredCapabilities": { "sampling": {} } })),
                );
            }
            vec![text("Success")]
        }
        "test_streaming_elicitation" => vec![
            rpc::message(
                None,
                "notifications/progress",
                &json!({ "progressToken": "streaming", "progress": 50, "total": 100 }),
            ),
            text("Streaming complete"),
        ],
        "test_logging_tool" => {
            let mut f = Vec::new();
            if log_level.is_some_and(|l| l <= 1) {
                f.push(rpc::message(
                    None,
                    "notifications/message",
                    &json!({ "level": "info", "logger": shared.cfg.name, "data": "Diagnostic trace logging activated" }),
                ));
            }
            f.push(text("Logging evaluated"));
            f
        }
        "test_trigger_tool_change" | "test_trigger_prompt_change" => {
            let change = if name == "test_trigger_tool_change" {
                // A real change, as the reference server makes: the tool
                // `revealed` is listed from now on.
                shared
                    .revealed
                    .store(true, std::sync::atomic::Ordering::Relaxed);
                ListChange::Tools
            } else {
                ListChange::Prompts
            };
            let _ = shared.list_changes.send(change);
            vec![text("Mutation triggered")]
        }
        _ => vec![rpc::error_msg(
            &id,
            rpc::INTERNAL_ERROR,
            "unknown draft tool",
            None,
        )],
    };
    sse_stream(
        frames.iter().map(|f| rpc::sse_frame(None, f)).collect(),
        None,
    )
}

/// `subscriptions/listen`: an acknowledgement, then the requested list changes, each
/// tagged with the listen request's id, until the client goes away or the server stops.
fn listen(shared: &Shared, id: Value, params: Option<&Value>) -> Response {
    let filter = params.and_then(|p| p.get("notifications"));
    let want = |k: &str| filter.and_then(|f| f.get(k)).and_then(Value::as_bool) == Some(true);
    let (tools, prompts, resources) = (
        want("toolsListChanged"),
        want("promptsListChanged"),
        want("resourcesListChanged"),
    );
    let mut honored = serde_json::Map::new();
    for (k, on) in [
        ("toolsListChanged", tools),
        ("promptsListChanged", prompts),
        ("resourcesListChanged", resources),
    ] {
        if on {
            honored.insert(k.into(), Value::Bool(true));
        }
    }
    // The filter's string arrays, honoured as asked.
    let mut strings = |key: &str| {
        let Some(v) = filter.and_then(|f| f.get(key)) else {
            return Vec::new();
        };
        let items: Vec<String> = v
            .as_array()
            .map_or(&[][..], Vec::as_slice)
            .iter()
            .filter_map(Value::as_str)
            .map(str::to_owned)
            .collect();
        honored.insert(key.into(), json!(items));
        items
    };
    let watched = strings("resourceSubscriptions");
    let task_ids = strings("taskIds");
    let meta = json!({ "io.modelcontextprotocol/subscriptionId": id });
    let ack = rpc::message(
        None,
        "notifications/subscriptions/acknowledged",
        &json!({ "notifications": honored, "_meta": meta }),
    );
    let rx = shared.list_changes.subscribe();
    let stop = shared.stopping.subscribe();
    let tail = futures_util::stream::unfold((rx, stop, meta), move |(mut rx, mut stop, meta)| {
        let watched = watched.clone();
        let task_ids = task_ids.clone();
        async move {
            loop {
                let change = tokio::select! {
                    c = rx.recv() => c,
                    _ = stop.wait_for(|s| *s) => return None,
                };
                let (method, params) = match change {
                    Ok(ListChange::Tools) if tools => {
                        ("notifications/tools/list_changed", json!({ "_meta": meta }))
                    }
                    Ok(ListChange::Prompts) if prompts => (
                        "notifications/prompts/list_changed",
                        json!({ "_meta": meta }),
                    ),
                    Ok(ListChange::Resources) if resources => (
                        "notifications/resources/list_changed",
                        json!({ "_meta": meta }),
                    ),
                    Ok(ListChange::Updated(uri)) if watched.iter().any(|w| **w == *uri) => (
                        "notifications/resources/updated",
                        json!({ "_meta": meta, "uri": &*uri }),
                    ),
                    Ok(ListChange::Task(task, detailed))
                        if task_ids.iter().any(|t| **t == *task) =>
                    {
                        let mut p = (*detailed).clone();
                        p["_meta"] = meta.clone();
                        ("notifications/tasks", p)
                    }
                    Ok(_) | Err(broadcast::error::RecvError::Lagged(_)) => continue,
                    Err(broadcast::error::RecvError::Closed) => return None,
                };
                let frame = rpc::sse_frame(None, &rpc::message(None, method, &params));
                return Some((frame, (rx, stop, meta)));
            }
        }
    });
    let head = futures_util::stream::iter([rpc::sse_frame(None, &ack)]);
    let body =
        axum::body::Body::from_stream(head.chain(tail).map(Ok::<Bytes, std::convert::Infallible>));
    let mut r = Response::new(body);
    r.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("text/event-stream"),
    );
    r
}
