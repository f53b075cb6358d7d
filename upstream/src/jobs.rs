//! Tools that run asynchronously: they sleep, send notifications and ask the client
//! (sampling, elicitation) before answering.

use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use serde_json::{json, Value};
use tokio::sync::mpsc;

use crate::catalog::Tool;
use crate::mcp::{text_result, Job};
use crate::rpc;
use crate::state::{Session, Shared, LOG_LEVELS};

/// How long a server-to-client request waits for a standalone GET stream to open (with
/// [`crate::UpstreamBuilder::standalone_requests`]). Clients open that stream without
/// waiting for it after `notifications/initialized`, so a call made right after
/// connecting can arrive first.
const STANDALONE_WAIT: Duration = Duration::from_secs(2);

/// Where the job's messages go.
pub enum Out {
    /// A resumable stream of the session (the POST was answered with SSE).
    Stream(Arc<Session>, u64),
    /// The POST is answered with JSON: notifications and requests go on the session's
    /// standalone GET stream, if one is open.
    Detached(Arc<Session>),
    /// A stream with no session behind it (stateless requests).
    Direct(mpsc::UnboundedSender<Bytes>),
}

pub struct Ctx {
    pub shared: Arc<Shared>,
    pub out: Out,
    pub progress_token: Option<Value>,
    /// Minimum log level when there is no session (stateless requests opt in per
    /// request; `None`: no log messages at all).
    pub log_level: Option<u8>,
}

impl Ctx {
    fn session(&self) -> Option<&Arc<Session>> {
        match &self.out {
            Out::Stream(s, _) | Out::Detached(s) => Some(s),
            Out::Direct(_) => None,
        }
    }

    fn send(&self, msg: &[u8]) -> bool {
        match &self.out {
            Out::Stream(s, sid) => {
                s.stream_send(*sid, msg, false);
                true
            }
            Out::Detached(s) => s.send_standalone(msg),
            Out::Direct(tx) => tx.send(rpc::sse_frame(None, msg)).is_ok(),
        }
    }

    /// Deliver the final response: on a stream it is the last event.
    pub fn finish(&self, msg: Bytes) -> Option<Bytes> {
        match &self.out {
            Out::Stream(s, sid) => {
                s.stream_send(*sid, &msg, true);
                None
            }
            Out::Direct(tx) => {
                let msg = crate::stateless::finalize(msg, false);
                let _ = tx.send(rpc::sse_frame(None, &msg));
                None
            }
            Out::Detached(_) => Some(msg),
        }
    }

    pub fn notify(&self, method: &str, params: Value) {
        self.send(&rpc::message(None, method, &params));
    }

    fn log(&self, level: &str, data: &str) {
        let idx = LOG_LEVELS.iter().position(|l| *l == level).unwrap_or(0);
        let passes = match self.session() {
            Some(s) => s.logs(idx),
            None => self
                .log_level
                .is_some_and(|floor| idx >= usize::from(floor)),
        };
        if !passes {
            return;
        }
        self.notify(
            "notifications/message",
            json!({ "level": level, "logger": self.shared.cfg.name, "data": data }),
        );
    }

    fn progress(&self, progress: u64, total: u64, message: &str) {
        if let Some(token) = &self.progress_token {
            self.notify(
                "notifications/progress",
                json!({ "progressToken": token, "progress": progress, "total": total, "message": message }),
            );
        }
    }

    /// Send a request to the client and wait for its answer (the whole response message).
    async fn ask(&self, method: &str, params: Value) -> Result<Value, String> {
        let Some(session) = self.session() else {
            return Err("server-to-client requests need a session".into());
        };
        let (id, rx) = session.register_pending();
        self.shared.stats.server_requests.fetch_add(1, Relaxed);
        let msg = rpc::message(Some(&id), method, &params);
        if self.shared.cfg.standalone_requests {
            if !session.send_standalone_within(&msg, STANDALONE_WAIT).await {
                session.drop_pending(&id);
                return Err(format!(
                    "{method} is sent on the standalone GET stream, and the session had none open within {STANDALONE_WAIT:?}"
                ));
            }
        } else if !self.send(&msg) {
            session.drop_pending(&id);
            return Err(
                "no stream to the client: send Accept: text/event-stream or open the GET stream"
                    .into(),
            );
        }
        match tokio::time::timeout(self.shared.cfg.client_request_timeout, rx).await {
            Ok(Ok(msg)) => match msg.get("error") {
                Some(e) => Err(format!("client answered with an error: {e}")),
                None => Ok(msg.get("result").cloned().unwrap_or(Value::Null)),
            },
            Ok(Err(_)) => Err("session closed".into()),
            Err(_) => {
                session.drop_pending(&id);
                Err("timed out waiting for the client's answer".into())
            }
        }
    }
}

/// `notify_later`: after `delay_ms`, an info log message and (if the session subscribed
/// to `uri`) `notifications/resources/updated` on the session's standalone GET stream,
/// outside any request. Messages that find no stream are dropped, as a server does
/// with messages unrelated to a request when the client has no GET stream open.
pub fn notify_later(shared: &Arc<Shared>, session: &Arc<Session>, delay_ms: u64, uri: String) {
    let (shared, session) = (shared.clone(), session.clone());
    let mut stopping = shared.stopping.subscribe();
    tokio::spawn(async move {
        tokio::select! {
            _ = sleep(delay_ms) => {}
            _ = stopping.wait_for(|s| *s) => return,
        }
        let info = LOG_LEVELS.iter().position(|l| *l == "info").unwrap_or(0);
        if session.logs(info) {
            session.send_standalone(&rpc::message(
                None,
                "notifications/message",
                &json!({ "level": "info", "logger": shared.cfg.name, "data": "notify_later" }),
            ));
        }
        if session.is_subscribed(&uri) {
            session.send_standalone(&rpc::message(
                None,
                "notifications/resources/updated",
                &json!({ "uri": uri }),
            ));
        }
    });
}

fn sleep(ms: u64) -> tokio::time::Sleep {
    tokio::time::sleep(Duration::from_millis(ms))
}

/// Run a job to its JSON-RPC response message.
pub async fn run(ctx: &Ctx, job: Job) -> Bytes {
    let id = &job.id;
    match job.tool {
        Tool::Slow => {
            let ms = job
                .args
                .get("ms")
                .and_then(Value::as_u64)
                .unwrap_or(100)
                .min(600_000);
            ctx.progress(0, ms, "sleeping");
            sleep(ms).await;
            ctx.progress(ms, ms, "done");
            text_result(id, &format!("slept {ms}ms"), false)
        }
        Tool::WithLogging => {
            ctx.log("info", "Tool execution started");
            sleep(20).await;
            ctx.log("info", "Tool processing data");
            sleep(20).await;
            ctx.log("info", "Tool execution completed");
            text_result(id, "Tool with logging executed successfully", false)
        }
        Tool::WithProgress => {
            for (i, p) in [0u64, 50, 100].into_iter().enumerate() {
                if i > 0 {
                    sleep(20).await;
                }
                ctx.progress(p, 100, &format!("Completed step {p} of 100"));
            }
            let token = ctx
                .progress_token
                .as_ref()
                .map(|t| match t {
                    Value::String(s) => s.clone(),
                    other => other.to_string(),
                })
                .unwrap_or_else(|| "no progress token".into());
            text_result(id, &token, false)
        }
        Tool::Reconnection => {
            // SEP-1699: end the POST's SSE connection before answering; the client resumes
            // with GET + Last-Event-ID and gets the response there.
            if let Out::Stream(s, sid) = &ctx.out {
                s.stream_detach(*sid);
            }
            sleep(100).await;
            text_result(
                id,
                "Reconnection test completed successfully. If you received this, the client properly reconnected after stream closure.",
                false,
            )
        }
        Tool::Sampling => {
            if !ctx.session().is_some_and(|s| s.caps.sampling) {
                return text_result(
                    id,
                    "The client does not support sampling (no `sampling` capability)",
                    true,
                );
            }
            let prompt = job.args.get("prompt").and_then(Value::as_str).unwrap_or("");
            let params = json!({
                "messages": [{ "role": "user", "content": { "type": "text", "text": prompt } }],
                "maxTokens": 100
            });
            match ctx.ask("sampling/createMessage", params).await {
                Ok(r) => {
                    let answer = r["content"]["text"].as_str().unwrap_or("No response");
                    text_result(id, &format!("LLM response: {answer}"), false)
                }
                Err(e) => text_result(id, &format!("Sampling failed: {e}"), true),
            }
        }
        Tool::Elicitation | Tool::ElicitationDefaults | Tool::ElicitationEnums => {
            if !ctx.session().is_some_and(|s| s.caps.elicitation) {
                return text_result(
                    id,
                    "The client does not support elicitation (no `elicitation` capability)",
                    true,
                );
            }
            let (params, prefix) = match job.tool {
                Tool::Elicitation => (
                    json!({
                        "message": job.args.get("message").and_then(Value::as_str).unwrap_or("Please provide your information"),
                        "requestedSchema": {
                            "type": "object",
                            "properties": {
                                "username": { "type": "string", "description": "User's response" },
                                "email": { "type": "string", "description": "User's email address" }
                            },
                            "required": ["username", "email"]
                        }
                    }),
                    "User response",
                ),
                Tool::ElicitationDefaults => (elicitation_defaults(), "Elicitation completed"),
                _ => (elicitation_enums(), "Elicitation completed"),
            };
            match ctx.ask("elicitation/create", params).await {
                Ok(r) => {
                    let action = r["action"].as_str().unwrap_or("unknown");
                    let content = r.get("content").cloned().unwrap_or_else(|| json!({}));
                    text_result(
                        id,
                        &format!("{prefix}: action={action}, content={content}"),
                        false,
                    )
                }
                Err(e) => text_result(id, &format!("Elicitation failed: {e}"), true),
            }
        }
        _ => rpc::error_msg(id, rpc::INTERNAL_ERROR, "not an asynchronous tool", None),
    }
}

fn elicitation_defaults() -> Value {
    json!({
        "message": "Please review and update the form fields with defaults",
        "requestedSchema": {
            "type": "object",
            "properties": {
                "name": { "type": "string", "description": "User name", "default": "John Doe" },
                "age": { "type": "integer", "description": "User age", "default": 30 },
                "score": { "type": "number", "description": "User score", "default": 95.5 },
                "status": {
                    "type": "string",
                    "description": "User status",
                    "enum": ["active", "inactive", "pending"],
                    "default": "active"
                },
                "verified": { "type": "boolean", "description": "Verification status", "default": true }
            },
            "required": []
        }
    })
}

fn elicitation_enums() -> Value {
    json!({
        "message": "Please select options from the enum fields",
        "requestedSchema": {
            "type": "object",
            "properties": {
                "untitledSingle": {
                    "type": "string",
                    "description": "Select one option",
                    "enum": ["option1", "option2", "option3"]
                },
                "titledSingle": {
                    "type": "string",
                    "description": "Select one option with titles",
                    "oneOf": [
                        { "const": "value1", "title": "First Option" },
                        { "const": "value2", "title": "Second Option" },
                        { "const": "value3", "title": "Third Option" }
                    ]
                },
                "legacyEnum": {
                    "type": "string",
                    "description": "Select one option (legacy)",
                    "enum": ["opt1", "opt2", "opt3"],
                    "enumNames": ["Option One", "Option Two", "Option Three"]
                },
                "untitledMulti": {
                    "type": "array",
                    "description": "Select multiple options",
                    "minItems": 1,
                    "maxItems": 3,
                    "items": { "type": "string", "enum": ["option1", "option2", "option3"] }
                },
                "titledMulti": {
                    "type": "array",
                    "description": "Select multiple options with titles",
                    "minItems": 1,
                    "maxItems": 3,
                    "items": {
                        "anyOf": [
                            { "const": "value1", "title": "First Choice" },
                            { "const": "value2", "title": "Second Choice" },
                            { "const": "value3", "title": "Third Choice" }
                        ]
                    }
                }
            },
            "required": []
        }
    })
}
