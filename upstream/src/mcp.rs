//! MCP request handling, independent of the HTTP transport.

use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;

use bytes::Bytes;
use http::HeaderMap;
use serde::Serialize;
use serde_json::{json, Map, Value};

use crate::catalog::{self, PromptError, Tool, TOOLS};
use crate::jobs;
use crate::rpc::{self, INVALID_PARAMS, METHOD_NOT_FOUND, RESOURCE_NOT_FOUND};
use crate::state::{ListChange, Session, Shared, DRAFT_VERSION, LOG_LEVELS, STATEFUL_VERSIONS};

/// Longest wait `notify_later` accepts (longer ones are shortened to it).
const MAX_DELAY_MS: u64 = 600_000;

/// What a request produced.
pub enum Reply {
    /// The complete JSON-RPC response message.
    Now(Bytes),
    /// A tool that runs asynchronously (sleeps, notifies, asks the client).
    Job(Job),
}

pub struct Job {
    pub id: Value,
    pub tool: Tool,
    pub args: Value,
    pub progress_token: Option<Value>,
    /// Whether the job sends messages before its response (so a streamed answer is
    /// preferred even in JSON mode).
    pub talks: bool,
}

pub struct Req<'a> {
    pub shared: &'a Arc<Shared>,
    /// `None` for stateless (draft) requests.
    pub session: Option<&'a Arc<Session>>,
    pub id: Value,
    pub method: &'a str,
    pub params: Option<Value>,
    pub headers: &'a HeaderMap,
}

#[derive(Serialize)]
struct TextContent<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    text: &'a str,
}

#[derive(Serialize)]
struct TextResult<'a> {
    content: [TextContent<'a>; 1],
    #[serde(rename = "isError", skip_serializing_if = "std::ops::Not::not")]
    is_error: bool,
}

#[derive(Serialize)]
struct SumResult<'a> {
    content: [TextContent<'a>; 1],
    #[serde(rename = "structuredContent")]
    structured: Sum,
}

#[derive(Serialize)]
struct Sum {
    sum: Value,
}

#[derive(Serialize)]
struct Empty {}

pub fn text_result(id: &Value, text: &str, is_error: bool) -> Bytes {
    rpc::result_msg(
        id,
        &TextResult {
            content: [TextContent { kind: "text", text }],
            is_error,
        },
    )
}

/// Pick the protocol version answered to an `initialize` asking for `requested`.
pub fn negotiate(requested: Option<&str>) -> &'static str {
    requested
        .and_then(|r| STATEFUL_VERSIONS.iter().find(|v| **v == r).copied())
        .unwrap_or(STATEFUL_VERSIONS[0])
}

pub fn capabilities() -> Value {
    json!({
        "tools": { "listChanged": true },
        "resources": { "subscribe": true, "listChanged": true },
        "prompts": { "listChanged": true },
        "logging": {},
        "completions": {}
    })
}

pub fn initialize_result(shared: &Shared, version: &str) -> Value {
    json!({
        "protocolVersion": version,
        "capabilities": capabilities(),
        "serverInfo": { "name": shared.cfg.name, "version": shared.cfg.version },
        "instructions": "fleetgate test upstream: conformance tools (test_*), plus echo, add, slow, echo_headers."
    })
}

/// `server/discover` (2026-07-28 draft).
pub fn discover_result(shared: &Shared) -> Value {
    let mut versions = vec![DRAFT_VERSION];
    if shared.cfg.stateful {
        versions.extend_from_slice(STATEFUL_VERSIONS);
    }
    let mut caps = capabilities();
    caps["extensions"] = json!({ crate::tasks::EXTENSION: {} });
    json!({
        "supportedVersions": versions,
        "capabilities": caps,
        "serverInfo": { "name": shared.cfg.name, "version": shared.cfg.version },
        "_meta": { "io.modelcontextprotocol/serverInfo": { "name": shared.cfg.name, "version": shared.cfg.version } }
    })
}

fn str_param<'p>(params: &'p Option<Value>, key: &str) -> Option<&'p str> {
    params.as_ref()?.get(key)?.as_str()
}

pub fn handle(req: Req<'_>) -> Reply {
    let id = &req.id;
    let p = &req.params;
    let msg = match req.method {
        "tools/call" => return call_tool(req),
        "tools/list" => match req.shared.revealed.load(Relaxed) {
            true => rpc::raw_result_msg(id, &req.shared.catalog.revealed_tools_list),
            false => rpc::raw_result_msg(id, &req.shared.catalog.tools_list),
        },
        "ping" => rpc::result_msg(id, &Empty {}),
        "resources/list" => rpc::raw_result_msg(id, &req.shared.catalog.resources_list),
        "resources/templates/list" => rpc::raw_result_msg(id, &req.shared.catalog.templates_list),
        "prompts/list" => rpc::raw_result_msg(id, &req.shared.catalog.prompts_list),
        "resources/read" => match str_param(p, "uri") {
            None => rpc::error_msg(id, INVALID_PARAMS, "missing params.uri", None),
            Some(uri) => match catalog::read_resource(uri) {
                Some(r) => rpc::result_msg(id, &r),
                None => rpc::error_msg(
                    id,
                    RESOURCE_NOT_FOUND,
                    "Resource not found",
                    Some(&json!({ "uri": uri })),
                ),
            },
        },
        "resources/subscribe" | "resources/unsubscribe" => match (str_param(p, "uri"), req.session)
        {
            (None, _) => rpc::error_msg(id, INVALID_PARAMS, "missing params.uri", None),
            (Some(_), None) => rpc::error_msg(
                id,
                METHOD_NOT_FOUND,
                "resources/subscribe needs a session",
                None,
            ),
            (Some(uri), Some(s)) => {
                s.subscribe(uri, req.method == "resources/subscribe");
                rpc::result_msg(id, &Empty {})
            }
        },
        "prompts/get" => match str_param(p, "name") {
            None => rpc::error_msg(id, INVALID_PARAMS, "missing params.name", None),
            Some(name) => {
                match catalog::get_prompt(name, p.as_ref().and_then(|p| p.get("arguments"))) {
                    Ok(r) => rpc::result_msg(id, &r),
                    Err(PromptError::Unknown) => {
                        rpc::error_msg(id, INVALID_PARAMS, &format!("Unknown prompt: {name}"), None)
                    }
                    Err(PromptError::MissingArgument(a)) => rpc::error_msg(
                        id,
                        INVALID_PARAMS,
                        &format!("Missing required argument: {a}"),
                        None,
                    ),
                }
            }
        },
        "completion/complete" => match p {
            Some(p) if p.get("ref").is_some() && p.get("argument").is_some() => {
                rpc::result_msg(id, &catalog::complete(p))
            }
            _ => rpc::error_msg(
                id,
                INVALID_PARAMS,
                "missing params.ref / params.argument",
                None,
            ),
        },
        "logging/setLevel" => {
            match str_param(p, "level").and_then(|l| LOG_LEVELS.iter().position(|x| *x == l)) {
                None => rpc::error_msg(id, INVALID_PARAMS, "invalid or missing params.level", None),
                Some(level) => {
                    if let Some(s) = req.session {
                        s.log_level.store(level as u8, Relaxed);
                    }
                    rpc::result_msg(id, &Empty {})
                }
            }
        }
        "initialize" => rpc::error_msg(
            id,
            rpc::INVALID_REQUEST,
            "initialize must be sent on its own, without a session",
            None,
        ),
        "server/discover" => rpc::result_msg(id, &discover_result(req.shared)),
        other => rpc::error_msg(
            id,
            METHOD_NOT_FOUND,
            &format!("Method not found: {other}"),
            None,
        ),
    };
    Reply::Now(msg)
}

fn call_tool(req: Req<'_>) -> Reply {
    let id = req.id;
    let mut params = match req.params {
        Some(Value::Object(m)) => m,
        _ => return Reply::Now(rpc::error_msg(&id, INVALID_PARAMS, "missing params", None)),
    };
    let Some(name) = params.get("name").and_then(Value::as_str) else {
        return Reply::Now(rpc::error_msg(
            &id,
            INVALID_PARAMS,
            "missing params.name",
            None,
        ));
    };
    let revealed = name
        .strip_prefix(req.shared.cfg.tools_prefix.as_str())
        .is_some_and(|n| n == crate::catalog::REVEALED);
    if revealed && req.shared.revealed.load(Relaxed) {
        return Reply::Now(text_result(&id, "revealed", false));
    }
    let Some(index) = req.shared.catalog.tool_index(name) else {
        let msg = format!("Unknown tool: {name}");
        return Reply::Now(rpc::error_msg(&id, INVALID_PARAMS, &msg, None));
    };
    req.shared.stats.count_tool(index);
    let tool = TOOLS[index].tool;
    let args = match params.remove("arguments") {
        Some(v @ Value::Object(_)) => v,
        None | Some(Value::Null) => Value::Object(Map::new()),
        Some(_) => {
            return Reply::Now(rpc::error_msg(
                &id,
                INVALID_PARAMS,
                "params.arguments must be an object",
                None,
            ))
        }
    };
    let msg = match tool {
        Tool::Echo => match args.get("text") {
            Some(Value::String(t)) => text_result(&id, t, false),
            _ => text_result(&id, "echo: missing string argument `text`", true),
        },
        Tool::Add => match add(args.get("a"), args.get("b")) {
            Some(sum) => {
                let text = sum.to_string();
                rpc::result_msg(
                    &id,
                    &SumResult {
                        content: [TextContent {
                            kind: "text",
                            text: &text,
                        }],
                        structured: Sum { sum },
                    },
                )
            }
            None => text_result(&id, "add: arguments `a` and `b` must be numbers", true),
        },
        Tool::SimpleText => text_result(&id, "This is a simple text response for testing.", false),
        Tool::ImageContent => rpc::result_msg(
            &id,
            &json!({ "content": [{ "type": "image", "data": catalog::TEST_IMAGE_BASE64, "mimeType": "image/png" }] }),
        ),
        Tool::AudioContent => rpc::result_msg(
            &id,
            &json!({ "content": [{ "type": "audio", "data": catalog::TEST_AUDIO_BASE64, "mimeType": "audio/wav" }] }),
        ),
        Tool::EmbeddedResource => rpc::result_msg(
            &id,
            &json!({ "content": [{ "type": "resource", "resource": {
                "uri": "test://embedded-resource",
                "mimeType": "text/plain",
                "text": "This is an embedded resource content."
            } }] }),
        ),
        Tool::MultipleContentTypes => rpc::result_msg(
            &id,
            &json!({ "content": [
                { "type": "text", "text": "Multiple content types test:" },
                { "type": "image", "data": catalog::TEST_IMAGE_BASE64, "mimeType": "image/png" },
                { "type": "resource", "resource": {
                    "uri": "test://mixed-content-resource",
                    "mimeType": "application/json",
                    "text": "{\"test\":\"data\",\"value\":123}"
                } }
            ] }),
        ),
        Tool::ErrorHandling => text_result(
            &id,
            "This tool intentionally returns an error for testing",
            true,
        ),
        Tool::JsonSchema2020 => {
            let text = format!(
                "JSON Schema 2020-12 tool called with: {}",
                serde_json::to_string(&args).unwrap_or_default()
            );
            text_result(&id, &text, false)
        }
        Tool::EchoHeaders => {
            let mut map = Map::new();
            for (k, v) in req.headers {
                map.insert(
                    k.as_str().to_owned(),
                    Value::String(String::from_utf8_lossy(v.as_bytes()).into_owned()),
                );
            }
            let headers = Value::Object(map);
            rpc::result_msg(
                &id,
                &json!({
                    "content": [{ "type": "text", "text": headers.to_string() }],
                    "structuredContent": { "headers": headers }
                }),
            )
        }
        Tool::NotifyResourceUpdated => {
            let uri = args
                .get("uri")
                .and_then(Value::as_str)
                .unwrap_or("test://watched-resource");
            let text = match req.session {
                Some(s) if s.is_subscribed(uri) => {
                    let m = rpc::message(
                        None,
                        "notifications/resources/updated",
                        &json!({ "uri": uri }),
                    );
                    if s.send_standalone(&m) {
                        "sent"
                    } else {
                        "subscribed, but no standalone GET stream is open"
                    }
                }
                Some(_) => "not subscribed",
                // Session-less (2026-07-28): to every listen stream that
                // subscribed to it.
                None => {
                    let _ = req
                        .shared
                        .list_changes
                        .send(ListChange::Updated(uri.into()));
                    "announced"
                }
            };
            text_result(&id, text, false)
        }
        Tool::EndStream => {
            let ended = req.session.is_some_and(|s| s.end_standalone());
            text_result(
                &id,
                if ended {
                    "ended"
                } else {
                    "no standalone GET stream is open"
                },
                false,
            )
        }
        Tool::Reveal => {
            req.shared.revealed.store(true, Relaxed);
            let _ = req.shared.list_changes.send(ListChange::Tools);
            let m = rpc::message(None, "notifications/tools/list_changed", &json!({}));
            let sent = req.session.is_some_and(|s| s.send_standalone(&m));
            text_result(
                &id,
                if sent {
                    "revealed"
                } else {
                    "revealed; no standalone GET stream is open"
                },
                false,
            )
        }
        Tool::NotifyListChanged => {
            for change in [
                ListChange::Tools,
                ListChange::Prompts,
                ListChange::Resources,
            ] {
                let _ = req.shared.list_changes.send(change);
            }
            let sent = req.session.is_some_and(|s| {
                [
                    "notifications/tools/list_changed",
                    "notifications/resources/list_changed",
                    "notifications/prompts/list_changed",
                ]
                .iter()
                .all(|m| s.send_standalone(&rpc::message(None, m, &json!({}))))
            });
            text_result(
                &id,
                if sent {
                    "sent"
                } else {
                    "no standalone GET stream is open"
                },
                false,
            )
        }
        Tool::NotifyLater => {
            let delay = match args.get("delay_ms") {
                None | Some(Value::Null) => Some(300),
                Some(v) => v.as_u64().map(|ms| ms.min(MAX_DELAY_MS)),
            };
            let uri = match args.get("uri") {
                None | Some(Value::Null) => Some("test://watched-resource"),
                Some(v) => v.as_str(),
            };
            match (delay, uri) {
                (Some(delay), Some(uri)) => {
                    if let Some(s) = req.session {
                        jobs::notify_later(req.shared, s, delay, uri.to_owned());
                    }
                    text_result(&id, "scheduled", false)
                }
                (None, _) => text_result(
                    &id,
                    "notify_later: `delay_ms` must be a non-negative integer",
                    true,
                ),
                (_, None) => text_result(&id, "notify_later: `uri` must be a string", true),
            }
        }
        Tool::Slow
        | Tool::WithLogging
        | Tool::WithProgress
        | Tool::Reconnection
        | Tool::Sampling
        | Tool::Elicitation
        | Tool::ElicitationDefaults
        | Tool::ElicitationEnums => {
            let progress_token = params
                .get("_meta")
                .and_then(|m| m.get("progressToken"))
                .filter(|t| !t.is_null())
                .cloned();
            let talks = tool != Tool::Slow || progress_token.is_some();
            return Reply::Job(Job {
                id,
                tool,
                args,
                progress_token,
                talks,
            });
        }
    };
    Reply::Now(msg)
}

fn add(a: Option<&Value>, b: Option<&Value>) -> Option<Value> {
    let (a, b) = (a?, b?);
    if let (Some(x), Some(y)) = (a.as_i64(), b.as_i64()) {
        if let Some(s) = x.checked_add(y) {
            return Some(Value::from(s));
        }
    }
    let s = a.as_f64()? + b.as_f64()?;
    serde_json::Number::from_f64(s).map(Value::Number)
}
