//! A small MCP Streamable HTTP client for tests: enough to initialize, call, read
//! JSON or SSE answers, and answer server→client requests.

use serde_json::{json, Value};
use std::sync::atomic::{AtomicU64, Ordering};

/// One downstream MCP session against `url` (`…/mcp` or `…/servers/{id}/mcp`).
pub struct McpClient {
    pub http: reqwest::Client,
    pub url: String,
    pub session: Option<String>,
    pub protocol_version: String,
    pub headers: Vec<(String, String)>,
    next_id: AtomicU64,
}

/// What one POST answered.
#[derive(Debug)]
pub struct Answer {
    pub status: u16,
    pub content_type: String,
    /// Every JSON-RPC message in the body (one for JSON, all events for SSE).
    pub messages: Vec<Value>,
    pub headers: reqwest::header::HeaderMap,
}

impl Answer {
    /// The last message: the response to the request.
    pub fn response(&self) -> &Value {
        self.messages.last().unwrap_or(&Value::Null)
    }
    pub fn result(&self) -> &Value {
        &self.response()["result"]
    }
    pub fn error_code(&self) -> Option<i64> {
        self.response()["error"]["code"].as_i64()
    }
    /// The JSON-RPC error's message ("" when there is none).
    pub fn error_message(&self) -> &str {
        self.response()["error"]["message"].as_str().unwrap_or("")
    }
}

impl McpClient {
    pub fn new(url: impl Into<String>) -> McpClient {
        McpClient {
            http: reqwest::Client::new(),
            url: url.into(),
            session: None,
            protocol_version: "2025-06-18".into(),
            headers: Vec::new(),
            next_id: AtomicU64::new(1),
        }
    }

    /// A client that opens a fresh connection for every request (so requests
    /// land on any worker).
    pub fn fresh(url: impl Into<String>) -> McpClient {
        let mut c = McpClient::new(url);
        c.http = crate::fresh_client();
        c
    }

    /// `GET` on the session's SSE stream, resuming after `last_event_id` if given.
    pub fn get_stream(&self, last_event_id: Option<&str>) -> reqwest::RequestBuilder {
        let mut req = self
            .http
            .get(&self.url)
            .header("accept", "text/event-stream")
            .header("mcp-protocol-version", &self.protocol_version)
            .header(
                "mcp-session-id",
                self.session.as_deref().unwrap_or_default(),
            );
        if let Some(id) = last_event_id {
            req = req.header("last-event-id", id);
        }
        req
    }

    pub fn header(mut self, k: &str, v: &str) -> Self {
        self.headers.push((k.into(), v.into()));
        self
    }

    /// `initialize` + `notifications/initialized`; keeps the session id.
    pub async fn initialize(&mut self) -> Answer {
        let a = self
            .request(
                "initialize",
                json!({
                    "protocolVersion": self.protocol_version,
                    "capabilities": {"sampling": {}, "elicitation": {}},
                    "clientInfo": {"name": "fleetgate-tests", "version": "0"},
                }),
            )
            .await;
        self.session = a
            .headers
            .get("mcp-session-id")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        if a.status == 200 {
            let n = self
                .post(json!({"jsonrpc": "2.0", "method": "notifications/initialized"}))
                .await;
            assert_eq!(n.status, 202, "notifications/initialized → 202");
        }
        a
    }

    /// A request; on 2026-07-28 a well-formed one: the `_meta` every request
    /// of that revision carries (unless `params` has its own) and the
    /// `Mcp-Method`/`Mcp-Name` headers mirroring the body.
    pub async fn request(&self, method: &str, mut params: Value) -> Answer {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        if self.protocol_version != "2026-07-28" {
            return self
                .post(json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params}))
                .await;
        }
        if params.get("_meta").is_none() {
            params["_meta"] = json!({
                "io.modelcontextprotocol/protocolVersion": self.protocol_version,
                "io.modelcontextprotocol/clientInfo": {"name": "fleetgate-tests", "version": "0"},
                "io.modelcontextprotocol/clientCapabilities": {},
            });
        }
        let name = match method {
            "tools/call" | "prompts/get" => params["name"].as_str(),
            "resources/read" => params["uri"].as_str(),
            "tasks/get" | "tasks/update" | "tasks/cancel" => params["taskId"].as_str(),
            _ => None,
        };
        let mut extra = vec![("mcp-method".to_owned(), method.to_owned())];
        if let Some(n) = name {
            extra.push(("mcp-name".to_owned(), n.to_owned()));
        }
        let body = json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params});
        self.post_with(body.to_string(), "application/json", &extra)
            .await
    }

    /// `tools/call` and its result (panics on a JSON-RPC error).
    pub async fn call_tool(&self, name: &str, args: Value) -> Value {
        let a = self
            .request("tools/call", json!({"name": name, "arguments": args}))
            .await;
        assert_eq!(a.status, 200, "{a:?}");
        assert!(
            a.response().get("error").is_none(),
            "tools/call {name}: {a:?}"
        );
        a.result().clone()
    }

    pub async fn post(&self, body: Value) -> Answer {
        self.post_raw(body.to_string(), "application/json").await
    }

    pub async fn post_raw(&self, body: String, content_type: &str) -> Answer {
        self.post_with(body, content_type, &[]).await
    }

    /// [`Self::post_raw`] with `extra` headers.
    pub async fn post_with(
        &self,
        body: String,
        content_type: &str,
        extra: &[(String, String)],
    ) -> Answer {
        let mut req = self
            .http
            .post(&self.url)
            .header("content-type", content_type)
            .header("accept", "application/json, text/event-stream")
            .header("mcp-protocol-version", &self.protocol_version)
            .body(body);
        if let Some(s) = &self.session {
            req = req.header("mcp-session-id", s);
        }
        for (k, v) in self.headers.iter().chain(extra) {
            req = req.header(k, v);
        }
        let resp = req.send().await.expect("POST to the gateway");
        read_answer(resp).await
    }

    /// Calls `tool` and answers the first server→client request named `method`
    /// that the gateway relays mid-call with `result`, as a client would: read
    /// the SSE answer until the request arrives, POST the answer, read the rest.
    /// Returns the call's content type and its final message.
    pub async fn call_answering(
        &self,
        tool: &str,
        args: Value,
        method: &str,
        result: Value,
    ) -> (String, Value) {
        use futures_util::StreamExt;
        let mut req = self
            .http
            .post(&self.url)
            .header("content-type", "application/json")
            .header("accept", "application/json, text/event-stream")
            .header("mcp-protocol-version", &self.protocol_version)
            .json(&json!({"jsonrpc": "2.0", "id": 7, "method": "tools/call",
                "params": {"name": tool, "arguments": args}}));
        if let Some(s) = &self.session {
            req = req.header("mcp-session-id", s);
        }
        let resp = req.send().await.expect("POST tools/call");
        let content_type = resp
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_owned();
        let mut body = resp.bytes_stream();
        let mut text = String::new();
        let request = loop {
            let chunk = body.next().await.expect("stream open").expect("chunk");
            text.push_str(std::str::from_utf8(&chunk).expect("utf-8"));
            if let Some(m) = sse_messages(&text)
                .into_iter()
                .find(|m| m["method"] == method)
            {
                break m;
            }
        };
        let answer = self
            .post(json!({"jsonrpc": "2.0", "id": request["id"], "result": result}))
            .await;
        assert_eq!(answer.status, 202, "the client's answer is accepted");
        while let Some(chunk) = body.next().await {
            text.push_str(std::str::from_utf8(&chunk.expect("chunk")).expect("utf-8"));
        }
        let last = sse_messages(&text).pop().unwrap_or(Value::Null);
        (content_type, last)
    }

    pub async fn delete(&self) -> u16 {
        let mut req = self.http.delete(&self.url);
        if let Some(s) = &self.session {
            req = req.header("mcp-session-id", s);
        }
        req.send().await.expect("DELETE").status().as_u16()
    }
}

pub async fn read_answer(resp: reqwest::Response) -> Answer {
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    let content_type = headers
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    let text = resp.text().await.unwrap_or_default();
    let messages = if content_type.starts_with("text/event-stream") {
        sse_messages(&text)
    } else if text.is_empty() {
        Vec::new()
    } else {
        vec![serde_json::from_str(&text).unwrap_or(Value::String(text))]
    };
    Answer {
        status,
        content_type,
        messages,
        headers,
    }
}

/// Reads `resp` until `n` whole SSE events arrived; their raw text.
pub async fn read_events(resp: &mut reqwest::Response, n: usize) -> Vec<String> {
    let mut buf = String::new();
    loop {
        let events: Vec<String> = buf
            .split("\n\n")
            .filter(|e| !e.trim().is_empty())
            .map(str::to_owned)
            .collect();
        let whole = if buf.ends_with("\n\n") {
            events.len()
        } else {
            events.len().saturating_sub(1)
        };
        if whole >= n {
            return events.into_iter().take(n).collect();
        }
        let chunk = tokio::time::timeout(std::time::Duration::from_secs(10), resp.chunk())
            .await
            .expect("an SSE event within 10 s")
            .expect("the stream broke")
            .expect("the stream ended early");
        buf.push_str(std::str::from_utf8(&chunk).expect("UTF-8 events"));
    }
}

/// The JSON `data:` payloads of an SSE body.
pub fn sse_messages(text: &str) -> Vec<Value> {
    text.split("\n\n")
        .filter_map(|event| {
            let data: Vec<&str> = event
                .lines()
                .filter_map(|l| l.strip_prefix("data:").map(str::trim_start))
                .collect();
            (!data.is_empty()).then(|| data.join("\n"))
        })
        .filter_map(|d| serde_json::from_str(&d).ok())
        .collect()
}
