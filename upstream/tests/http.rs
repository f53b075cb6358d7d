//! End-to-end tests of the test upstream over real HTTP (reqwest), JSON and SSE modes.

#![allow(clippy::unwrap_used)] // test helpers: a failed unwrap is a failed test

use std::time::Duration;

use fleetgate_test_upstream::{RunningUpstream, Upstream};
use futures_util::StreamExt;
use reqwest::header::{HeaderMap, HeaderValue, ACCEPT, CONTENT_TYPE};
use reqwest::{Client, Response, StatusCode};
use serde_json::{json, Value};

const BOTH: &str = "application/json, text/event-stream";

struct Conn {
    http: Client,
    url: String,
    session: Option<String>,
    accept: &'static str,
}

impl Conn {
    fn new(up: &RunningUpstream) -> Self {
        Self {
            http: Client::new(),
            url: up.url(),
            session: None,
            accept: BOTH,
        }
    }

    fn headers(&self) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        h.insert(ACCEPT, HeaderValue::from_static(self.accept));
        if let Some(s) = &self.session {
            h.insert("mcp-session-id", HeaderValue::from_str(s).unwrap());
        }
        h
    }

    async fn post(&self, body: Value) -> Response {
        self.http
            .post(&self.url)
            .headers(self.headers())
            .body(body.to_string())
            .send()
            .await
            .unwrap()
    }

    async fn initialize(&mut self, version: &str, caps: Value) -> Value {
        let r = self
            .post(json!({
                "jsonrpc": "2.0", "id": 0, "method": "initialize",
                "params": { "protocolVersion": version, "capabilities": caps,
                            "clientInfo": { "name": "test", "version": "1" } }
            }))
            .await;
        assert_eq!(r.status(), StatusCode::OK);
        self.session = Some(r.headers()["mcp-session-id"].to_str().unwrap().to_owned());
        let msgs = messages(r).await;
        let r2 = self
            .post(json!({ "jsonrpc": "2.0", "method": "notifications/initialized" }))
            .await;
        assert_eq!(r2.status(), StatusCode::ACCEPTED);
        msgs.into_iter().last().unwrap()
    }

    /// A request; returns the JSON-RPC response message.
    async fn call(&self, id: i64, method: &str, params: Value) -> Value {
        let r = self
            .post(json!({ "jsonrpc": "2.0", "id": id, "method": method, "params": params }))
            .await;
        assert_eq!(r.status(), StatusCode::OK, "{method}");
        let msgs = messages(r).await;
        msgs.into_iter().find(|m| m["id"] == json!(id)).unwrap()
    }
}

/// The JSON-RPC messages of a response, JSON or SSE.
async fn messages(r: Response) -> Vec<Value> {
    let sse = is_sse(&r);
    let text = r.text().await.unwrap();
    if sse {
        parse_sse(&text)
            .into_iter()
            .filter_map(|e| e.data)
            .collect()
    } else {
        vec![serde_json::from_str(&text).unwrap()]
    }
}

fn is_sse(r: &Response) -> bool {
    r.headers()
        .get(CONTENT_TYPE)
        .is_some_and(|v| v.to_str().unwrap().starts_with("text/event-stream"))
}

#[derive(Debug)]
struct Event {
    id: Option<String>,
    retry: Option<u64>,
    data: Option<Value>,
}

fn parse_sse(text: &str) -> Vec<Event> {
    text.split("\n\n")
        .filter(|b| !b.trim().is_empty())
        .map(|block| {
            let mut ev = Event {
                id: None,
                retry: None,
                data: None,
            };
            let mut data = String::new();
            for line in block.lines() {
                if let Some(v) = line.strip_prefix("id: ") {
                    ev.id = Some(v.to_owned());
                } else if let Some(v) = line.strip_prefix("retry: ") {
                    ev.retry = v.parse().ok();
                } else if let Some(v) = line.strip_prefix("data:") {
                    data.push_str(v.trim_start());
                }
            }
            if !data.is_empty() {
                ev.data = Some(serde_json::from_str(&data).unwrap());
            }
            ev
        })
        .collect()
}

/// Reads an SSE body incrementally, event by event.
struct SseReader {
    stream:
        std::pin::Pin<Box<dyn futures_util::Stream<Item = reqwest::Result<bytes::Bytes>> + Send>>,
    buf: String,
}

impl SseReader {
    fn new(r: Response) -> Self {
        assert!(is_sse(&r), "expected an SSE response");
        Self {
            stream: Box::pin(r.bytes_stream()),
            buf: String::new(),
        }
    }

    /// The next event, or `None` at the end of the stream.
    async fn next(&mut self) -> Option<Event> {
        loop {
            if let Some(i) = self.buf.find("\n\n") {
                let block: String = self.buf.drain(..i + 2).collect();
                return parse_sse(&block).into_iter().next();
            }
            let chunk = tokio::time::timeout(Duration::from_secs(10), self.stream.next())
                .await
                .expect("SSE stream stalled")?;
            self.buf
                .push_str(std::str::from_utf8(&chunk.unwrap()).unwrap());
        }
    }
}

#[tokio::test]
async fn json_initialize_list_call_delete() {
    let up = Upstream::builder().name("up-json").spawn().await.unwrap();
    let mut c = Conn::new(&up);
    let init = c.initialize("2025-06-18", json!({})).await;
    assert_eq!(init["result"]["protocolVersion"], "2025-06-18");
    assert_eq!(init["result"]["serverInfo"]["name"], "up-json");
    assert!(init["result"]["capabilities"]["tools"].is_object());

    let list = c.call(1, "tools/list", json!({})).await;
    let names: Vec<&str> = list["result"]["tools"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap())
        .collect();
    for n in ["echo", "add", "slow", "test_simple_text", "test_sampling"] {
        assert!(names.contains(&n), "{n} missing from {names:?}");
    }

    let echo = c
        .call(
            2,
            "tools/call",
            json!({ "name": "echo", "arguments": { "text": "héllo" } }),
        )
        .await;
    assert_eq!(echo["result"]["content"][0]["text"], "héllo");
    assert!(echo["result"].get("isError").is_none());

    let add = c
        .call(
            3,
            "tools/call",
            json!({ "name": "add", "arguments": { "a": 2, "b": 40 } }),
        )
        .await;
    assert_eq!(add["result"]["structuredContent"]["sum"], 42);
    assert_eq!(add["result"]["content"][0]["text"], "42");

    let unknown = c.call(4, "tools/call", json!({ "name": "nope" })).await;
    assert_eq!(unknown["error"]["code"], -32602);
    let missing = c.call(5, "no/such/method", json!({})).await;
    assert_eq!(missing["error"]["code"], -32601);

    let s = up.stats();
    assert_eq!(s.sessions_initialized, 1);
    assert_eq!(s.live_sessions, 1);
    assert_eq!(s.method("tools/call"), 3);
    assert_eq!(s.method("tools/list"), 1);
    assert_eq!(s.method("notifications/initialized"), 1);
    assert_eq!(s.tool("echo"), 1);
    assert_eq!(s.tool("add"), 1);

    // The same counters over HTTP.
    let over_http: Value = reqwest::get(format!("{}/stats", up.base_url()))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(over_http["sessions_initialized"], 1);
    assert_eq!(over_http["methods"]["tools/call"], 3);

    let del = c
        .http
        .delete(&c.url)
        .headers(c.headers())
        .send()
        .await
        .unwrap();
    assert_eq!(del.status(), StatusCode::OK);
    let after = c
        .post(json!({ "jsonrpc": "2.0", "id": 9, "method": "ping" }))
        .await;
    assert_eq!(after.status(), StatusCode::NOT_FOUND);
    let s = up.stats();
    assert_eq!((s.sessions_deleted, s.live_sessions), (1, 0));
}

#[tokio::test]
async fn session_header_required_and_checked() {
    let up = Upstream::builder().spawn().await.unwrap();
    let mut c = Conn::new(&up);
    let r = c
        .post(json!({ "jsonrpc": "2.0", "id": 1, "method": "tools/list" }))
        .await;
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    c.session = Some("not-a-session".into());
    let r = c
        .post(json!({ "jsonrpc": "2.0", "id": 1, "method": "tools/list" }))
        .await;
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    // Unsupported MCP-Protocol-Version header.
    c.initialize("2025-11-25", json!({})).await;
    let r = c
        .http
        .post(&c.url)
        .headers(c.headers())
        .header("mcp-protocol-version", "1999-01-01")
        .body(json!({ "jsonrpc": "2.0", "id": 1, "method": "ping" }).to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    // Unknown versions negotiate to the latest.
    let mut c2 = Conn::new(&up);
    let init = c2.initialize("1999-01-01", json!({})).await;
    assert_eq!(init["result"]["protocolVersion"], "2025-11-25");
}

#[tokio::test]
async fn sse_mode_answers_with_event_streams() {
    let up = Upstream::builder().sse(true).spawn().await.unwrap();
    let mut c = Conn::new(&up);
    let init = c.initialize("2025-11-25", json!({})).await;
    assert_eq!(init["result"]["protocolVersion"], "2025-11-25");

    let r = c
        .post(json!({ "jsonrpc": "2.0", "id": 7, "method": "tools/call",
                      "params": { "name": "echo", "arguments": { "text": "sse" } } }))
        .await;
    assert!(is_sse(&r));
    let msgs = messages(r).await;
    assert_eq!(msgs.len(), 1);
    assert_eq!(msgs[0]["result"]["content"][0]["text"], "sse");

    // A client accepting only JSON gets JSON even in SSE mode.
    c.accept = "application/json";
    let r = c
        .post(json!({ "jsonrpc": "2.0", "id": 8, "method": "tools/list" }))
        .await;
    assert!(!is_sse(&r));
    let list: Value = r.json().await.unwrap();
    assert!(list["result"]["tools"].is_array());
}

#[tokio::test]
async fn tools_prefix_renames_tools() {
    assert!(Upstream::builder().tools_prefix("bad prefix!").is_err());
    let up = Upstream::builder()
        .tools_prefix("a_")
        .unwrap()
        .spawn()
        .await
        .unwrap();
    assert_eq!(up.tool_names()[0], "a_echo");
    let mut c = Conn::new(&up);
    c.initialize("2025-06-18", json!({})).await;
    let r = c
        .call(
            1,
            "tools/call",
            json!({ "name": "a_echo", "arguments": { "text": "x" } }),
        )
        .await;
    assert_eq!(r["result"]["content"][0]["text"], "x");
    let r = c
        .call(2, "tools/call", json!({ "name": "echo", "arguments": {} }))
        .await;
    assert_eq!(r["error"]["code"], -32602);
    assert_eq!(up.stats().tool("a_echo"), 1);
}

#[tokio::test]
async fn progress_streams_even_in_json_mode() {
    let up = Upstream::builder().spawn().await.unwrap();
    let mut c = Conn::new(&up);
    c.initialize("2025-11-25", json!({})).await;
    let r = c
        .post(json!({ "jsonrpc": "2.0", "id": 3, "method": "tools/call",
                      "params": { "name": "test_tool_with_progress", "arguments": {},
                                  "_meta": { "progressToken": "tok" } } }))
        .await;
    assert!(is_sse(&r));
    let events = parse_sse(&r.text().await.unwrap());
    // Priming event first (2025-11-25): an id, a retry hint, no data.
    assert!(events[0].id.is_some() && events[0].data.is_none());
    assert_eq!(events[0].retry, Some(500));
    let progress: Vec<&Value> = events
        .iter()
        .filter_map(|e| e.data.as_ref())
        .filter(|d| d["method"] == "notifications/progress")
        .collect();
    assert_eq!(progress.len(), 3);
    assert!(progress
        .iter()
        .all(|p| p["params"]["progressToken"] == "tok"));
    let last = events.last().unwrap().data.as_ref().unwrap();
    assert_eq!(last["id"], 3);
    assert_eq!(last["result"]["content"][0]["text"], "tok");
}

#[tokio::test]
async fn sampling_round_trip_over_the_post_stream() {
    let up = Upstream::builder().spawn().await.unwrap();
    let mut c = Conn::new(&up);
    c.initialize("2025-11-25", json!({ "sampling": {} })).await;
    let r = c
        .post(json!({ "jsonrpc": "2.0", "id": 11, "method": "tools/call",
                      "params": { "name": "test_sampling", "arguments": { "prompt": "2+2?" } } }))
        .await;
    let mut sse = SseReader::new(r);
    let request = loop {
        let ev = sse
            .next()
            .await
            .expect("stream ended before the sampling request");
        if let Some(d) = ev.data {
            break d;
        }
    };
    assert_eq!(request["method"], "sampling/createMessage");
    assert_eq!(request["params"]["messages"][0]["content"]["text"], "2+2?");
    let answer = c
        .post(json!({ "jsonrpc": "2.0", "id": request["id"], "result": {
            "role": "assistant", "content": { "type": "text", "text": "four" }, "model": "m"
        } }))
        .await;
    assert_eq!(answer.status(), StatusCode::ACCEPTED);
    let result = sse.next().await.unwrap().data.unwrap();
    assert_eq!(result["id"], 11);
    assert_eq!(result["result"]["content"][0]["text"], "LLM response: four");
    assert!(
        sse.next().await.is_none(),
        "stream should end after the response"
    );
    let s = up.stats();
    assert_eq!((s.server_requests, s.client_responses), (1, 1));
}

#[tokio::test]
async fn sampling_without_capability_is_a_tool_error() {
    let up = Upstream::builder().spawn().await.unwrap();
    let mut c = Conn::new(&up);
    c.initialize("2025-11-25", json!({})).await;
    let r = c
        .call(
            1,
            "tools/call",
            json!({ "name": "test_sampling", "arguments": { "prompt": "x" } }),
        )
        .await;
    assert_eq!(r["result"]["isError"], true);
}

#[tokio::test]
async fn reconnection_resumes_with_last_event_id() {
    let up = Upstream::builder().spawn().await.unwrap();
    let mut c = Conn::new(&up);
    c.initialize("2025-11-25", json!({})).await;
    let r = c
        .post(json!({ "jsonrpc": "2.0", "id": 5, "method": "tools/call",
                      "params": { "name": "test_reconnection", "arguments": {} } }))
        .await;
    // The server closes the POST stream after the priming event, before answering.
    let events = parse_sse(&r.text().await.unwrap());
    assert_eq!(events.len(), 1);
    let last_id = events[0].id.clone().unwrap();
    let g = c
        .http
        .get(&c.url)
        .header(ACCEPT, "text/event-stream")
        .header("mcp-session-id", c.session.clone().unwrap())
        .header("last-event-id", last_id)
        .send()
        .await
        .unwrap();
    let mut sse = SseReader::new(g);
    let result = sse.next().await.unwrap().data.unwrap();
    assert_eq!(result["id"], 5);
    assert!(result["result"]["content"][0]["text"]
        .as_str()
        .unwrap()
        .starts_with("Reconnection test completed"));
}

#[tokio::test]
async fn standalone_get_stream_carries_notifications() {
    let up = Upstream::builder().spawn().await.unwrap();
    let mut c = Conn::new(&up);
    c.initialize("2025-11-25", json!({})).await;
    let g = c
        .http
        .get(&c.url)
        .header(ACCEPT, "text/event-stream")
        .header("mcp-session-id", c.session.clone().unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(g.status(), StatusCode::OK);
    let mut sse = SseReader::new(g);
    // Only one standalone stream per session.
    let g2 = c
        .http
        .get(&c.url)
        .header(ACCEPT, "text/event-stream")
        .header("mcp-session-id", c.session.clone().unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(g2.status(), StatusCode::CONFLICT);
    c.call(
        1,
        "resources/subscribe",
        json!({ "uri": "test://watched-resource" }),
    )
    .await;
    let r = c
        .call(
            2,
            "tools/call",
            json!({ "name": "notify_resource_updated", "arguments": {} }),
        )
        .await;
    assert_eq!(r["result"]["content"][0]["text"], "sent");
    let n = sse.next().await.unwrap().data.unwrap();
    assert_eq!(n["method"], "notifications/resources/updated");
    assert_eq!(n["params"]["uri"], "test://watched-resource");
    // Deleting the session ends the stream.
    c.http
        .delete(&c.url)
        .headers(c.headers())
        .send()
        .await
        .unwrap();
    assert!(sse.next().await.is_none());
}

#[tokio::test]
async fn slow_can_be_cancelled() {
    let up = Upstream::builder().spawn().await.unwrap();
    let mut c = Conn::new(&up);
    c.accept = "application/json";
    c.initialize("2025-06-18", json!({})).await;
    let started = std::time::Instant::now();
    let call = c.post(
        json!({ "jsonrpc": "2.0", "id": "slow-1", "method": "tools/call",
                              "params": { "name": "slow", "arguments": { "ms": 30000 } } }),
    );
    let cancel = async {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let r = c
            .post(
                json!({ "jsonrpc": "2.0", "method": "notifications/cancelled",
                          "params": { "requestId": "slow-1", "reason": "test" } }),
            )
            .await;
        assert_eq!(r.status(), StatusCode::ACCEPTED);
    };
    let (r, ()) = tokio::join!(call, cancel);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["error"]["code"], -32800);
    assert!(started.elapsed() < Duration::from_secs(10));

    let done = c
        .call(
            2,
            "tools/call",
            json!({ "name": "slow", "arguments": { "ms": 20 } }),
        )
        .await;
    assert_eq!(done["result"]["content"][0]["text"], "slept 20ms");
}

#[tokio::test]
async fn rejects_foreign_host_and_origin() {
    let up = Upstream::builder().spawn().await.unwrap();
    let c = Conn::new(&up);
    let init = json!({ "jsonrpc": "2.0", "id": 1, "method": "initialize",
        "params": { "protocolVersion": "2025-11-25", "capabilities": {},
                    "clientInfo": { "name": "t", "version": "1" } } });
    let r = c
        .http
        .post(&c.url)
        .headers(c.headers())
        .header("origin", "http://evil.example.com")
        .body(init.to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    let r = c
        .http
        .post(&c.url)
        .headers(c.headers())
        .header("origin", format!("http://localhost:{}", up.addr.port()))
        .body(init.to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
}

#[tokio::test]
async fn batch_of_requests_2025_03_26() {
    let up = Upstream::builder().spawn().await.unwrap();
    let mut c = Conn::new(&up);
    c.initialize("2025-03-26", json!({})).await;
    let r = c
        .post(json!([
            { "jsonrpc": "2.0", "id": 1, "method": "ping" },
            { "jsonrpc": "2.0", "method": "notifications/initialized" },
            { "jsonrpc": "2.0", "id": 2, "method": "tools/call",
              "params": { "name": "echo", "arguments": { "text": "b" } } }
        ]))
        .await;
    let arr: Value = r.json().await.unwrap();
    assert_eq!(arr.as_array().unwrap().len(), 2);
    assert_eq!(arr[1]["result"]["content"][0]["text"], "b");
}

#[tokio::test]
async fn stateless_draft_discover_and_call() {
    let up = Upstream::builder().spawn().await.unwrap();
    let http = Client::new();
    let meta = json!({
        "io.modelcontextprotocol/protocolVersion": "2026-07-28",
        "io.modelcontextprotocol/clientCapabilities": {}
    });
    let send = |method: &str, params: Value| {
        let mut h = HeaderMap::new();
        h.insert("mcp-method", HeaderValue::from_str(method).unwrap());
        if let Some(n) = params.get("name").and_then(Value::as_str) {
            h.insert("mcp-name", HeaderValue::from_str(n).unwrap());
        }
        http.post(up.url())
            .headers(h)
            .header(CONTENT_TYPE, "application/json")
            .header(ACCEPT, BOTH)
            .header("mcp-protocol-version", "2026-07-28")
            .body(
                json!({ "jsonrpc": "2.0", "id": 1, "method": method, "params": params })
                    .to_string(),
            )
            .send()
    };
    let r = send("server/discover", json!({ "_meta": meta }))
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let d: Value = r.json().await.unwrap();
    assert!(d["result"]["supportedVersions"]
        .as_array()
        .unwrap()
        .contains(&json!("2026-07-28")));
    assert_eq!(d["result"]["resultType"], "complete");
    let r = send(
        "tools/call",
        json!({ "name": "echo", "arguments": { "text": "nosession" }, "_meta": meta }),
    )
    .await
    .unwrap();
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["result"]["content"][0]["text"], "nosession");
    let r = send("initialize", json!({ "_meta": meta })).await.unwrap();
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    let r = send("server/discover", json!({})).await.unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    // Mcp-Method must mirror the body (SEP-2243).
    let r = http
        .post(up.url())
        .header(CONTENT_TYPE, "application/json")
        .header("mcp-protocol-version", "2026-07-28")
        .header("mcp-method", "prompts/list")
        .body(json!({ "jsonrpc": "2.0", "id": 3, "method": "tools/list", "params": { "_meta": meta } }).to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["error"]["code"], -32020);
    assert_eq!(up.stats().live_sessions, 0);
}

#[tokio::test]
async fn shutdown_ends_open_streams() {
    let up = Upstream::builder().spawn().await.unwrap();
    let mut c = Conn::new(&up);
    c.initialize("2025-11-25", json!({})).await;
    let g = c
        .http
        .get(&c.url)
        .header(ACCEPT, "text/event-stream")
        .header("mcp-session-id", c.session.clone().unwrap())
        .send()
        .await
        .unwrap();
    let mut sse = SseReader::new(g);
    tokio::time::timeout(Duration::from_secs(5), up.shutdown())
        .await
        .expect("shutdown waited on an open stream");
    assert!(sse.next().await.is_none());
}

#[tokio::test]
async fn stateless_listen_gets_list_changes() {
    let up = Upstream::builder().spawn().await.unwrap();
    let http = Client::new();
    let meta = json!({
        "io.modelcontextprotocol/protocolVersion": "2026-07-28",
        "io.modelcontextprotocol/clientCapabilities": {}
    });
    let send = |id: i64, method: &str, params: Value| {
        let mut h = HeaderMap::new();
        h.insert("mcp-method", HeaderValue::from_str(method).unwrap());
        if let Some(n) = params.get("name").and_then(Value::as_str) {
            h.insert("mcp-name", HeaderValue::from_str(n).unwrap());
        }
        http.post(up.url())
            .headers(h)
            .header(CONTENT_TYPE, "application/json")
            .header(ACCEPT, BOTH)
            .header("mcp-protocol-version", "2026-07-28")
            .body(
                json!({ "jsonrpc": "2.0", "id": id, "method": method, "params": params })
                    .to_string(),
            )
            .send()
    };
    let listen = send(
        77,
        "subscriptions/listen",
        json!({ "_meta": meta, "notifications": { "toolsListChanged": true } }),
    )
    .await
    .unwrap();
    let mut sse = SseReader::new(listen);
    let ack = sse.next().await.unwrap().data.unwrap();
    assert_eq!(ack["method"], "notifications/subscriptions/acknowledged");
    assert_eq!(
        ack["params"]["_meta"]["io.modelcontextprotocol/subscriptionId"],
        77
    );
    // A prompt change is filtered out; a tool change comes through.
    for tool in ["test_trigger_prompt_change", "test_trigger_tool_change"] {
        let r = send(
            1,
            "tools/call",
            json!({ "name": tool, "arguments": {}, "_meta": meta }),
        )
        .await
        .unwrap();
        assert_eq!(r.status(), StatusCode::OK);
        r.text().await.unwrap();
    }
    let n = sse.next().await.unwrap().data.unwrap();
    assert_eq!(n["method"], "notifications/tools/list_changed");
    assert_eq!(
        n["params"]["_meta"]["io.modelcontextprotocol/subscriptionId"],
        77
    );
}

#[tokio::test]
async fn dropped_sessions_answer_404() {
    let up = Upstream::builder().spawn().await.unwrap();
    let mut c = Conn::new(&up);
    c.initialize("2025-11-25", json!({})).await;
    up.drop_sessions();
    let r = c
        .post(json!({ "jsonrpc": "2.0", "id": 1, "method": "ping" }))
        .await;
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    let s = up.stats();
    assert_eq!((s.live_sessions, s.sessions_deleted), (0, 0));
}

#[tokio::test]
async fn stateless_input_required_round_trip() {
    let up = Upstream::builder().spawn().await.unwrap();
    let http = Client::new();
    let meta = json!({
        "io.modelcontextprotocol/protocolVersion": "2026-07-28",
        "io.modelcontextprotocol/clientCapabilities": { "elicitation": {} }
    });
    let call = |params: Value| {
        let mut p = params;
        p["_meta"] = meta.clone();
        http.post(up.url())
            .header(CONTENT_TYPE, "application/json")
            .header(ACCEPT, BOTH)
            .header("mcp-protocol-version", "2026-07-28")
            .header("mcp-method", "tools/call")
            .header("mcp-name", p["name"].as_str().unwrap().to_owned())
            .body(
                json!({ "jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": p })
                    .to_string(),
            )
            .send()
    };
    let name = "test_input_required_result_request_state";
    let r1: Value = call(json!({ "name": name, "arguments": {} }))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(r1["result"]["resultType"], "input_required");
    assert_eq!(
        r1["result"]["inputRequests"]["confirm"]["method"],
        "elicitation/create"
    );
    let state = r1["result"]["requestState"].as_str().unwrap().to_owned();
    let answer = json!({ "confirm": { "action": "accept", "content": { "ok": true } } });
    let r2: Value = call(
        json!({ "name": name, "arguments": {}, "inputResponses": answer, "requestState": state }),
    )
    .await
    .unwrap()
    .json()
    .await
    .unwrap();
    assert_eq!(r2["result"]["resultType"], "complete");
    assert!(r2["result"]["content"][0]["text"]
        .as_str()
        .unwrap()
        .contains("state-ok"));
    let r3: Value = call(
        json!({ "name": name, "arguments": {}, "inputResponses": answer,
                                 "requestState": format!("{state}-TAMPERED") }),
    )
    .await
    .unwrap()
    .json()
    .await
    .unwrap();
    assert_eq!(r3["error"]["code"], -32602);
}

/// Opens the session's standalone GET stream.
async fn open_get(c: &Conn) -> SseReader {
    let g = c
        .http
        .get(&c.url)
        .header(ACCEPT, "text/event-stream")
        .header("mcp-session-id", c.session.clone().unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(g.status(), StatusCode::OK);
    SseReader::new(g)
}

/// The next event carrying a message.
async fn next_message(sse: &mut SseReader) -> Value {
    loop {
        let ev = sse.next().await.expect("the stream ended");
        if let Some(d) = ev.data {
            return d;
        }
    }
}

#[tokio::test]
async fn standalone_requests_go_on_the_get_stream_unrelated_to_the_call() {
    let up = Upstream::builder()
        .standalone_requests(true)
        .spawn()
        .await
        .unwrap();
    let mut c = Conn::new(&up);
    c.initialize("2025-11-25", json!({ "elicitation": {}, "sampling": {} }))
        .await;

    // No GET stream opens: the request has nowhere to go, the call fails.
    let r = c
        .call(
            1,
            "tools/call",
            json!({ "name": "test_sampling", "arguments": { "prompt": "x" } }),
        )
        .await;
    assert_eq!(r["result"]["isError"], true, "{r}");
    assert!(
        r["result"]["content"][0]["text"]
            .as_str()
            .unwrap()
            .contains("standalone GET stream"),
        "{r}"
    );

    // A GET stream opened while the call waits (as clients open it without waiting
    // after `notifications/initialized`) gets the request.
    let post = c
        .post(json!({ "jsonrpc": "2.0", "id": 2, "method": "tools/call",
                      "params": { "name": "test_elicitation", "arguments": { "message": "who?" } } }))
        .await;
    let mut call = SseReader::new(post);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut get = open_get(&c).await;
    let request = next_message(&mut get).await;
    assert_eq!(request["method"], "elicitation/create", "{request}");
    assert_eq!(request["params"]["message"], "who?");
    let answer = c
        .post(json!({ "jsonrpc": "2.0", "id": request["id"], "result": {
            "action": "accept", "content": { "username": "u", "email": "e" }
        } }))
        .await;
    assert_eq!(answer.status(), StatusCode::ACCEPTED);
    // The call's own stream carries only its response (after the priming event).
    let result = next_message(&mut call).await;
    assert_eq!(result["id"], 2, "{result}");
    assert!(
        result["result"]["content"][0]["text"]
            .as_str()
            .unwrap()
            .starts_with("User response: action=accept"),
        "{result}"
    );
    assert!(call.next().await.is_none());
}

#[tokio::test]
async fn notify_later_sends_on_the_get_stream_outside_any_request() {
    let up = Upstream::builder().name("later").spawn().await.unwrap();
    let mut c = Conn::new(&up);
    c.initialize("2025-11-25", json!({})).await;
    let watched = json!({ "uri": "test://watched-resource" });
    c.call(1, "resources/subscribe", watched.clone()).await;

    // Without a GET stream the messages are dropped, not kept for a later stream.
    let r = c
        .call(
            2,
            "tools/call",
            json!({ "name": "notify_later", "arguments": { "delay_ms": 20 } }),
        )
        .await;
    assert_eq!(r["result"]["content"][0]["text"], "scheduled", "{r}");
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut get = open_get(&c).await;
    c.call(
        3,
        "tools/call",
        json!({ "name": "notify_resource_updated", "arguments": {} }),
    )
    .await;
    let first = next_message(&mut get).await;
    assert_eq!(
        first["method"], "notifications/resources/updated",
        "{first}"
    );

    // With the stream open: the log message, then the update; the answer came first.
    let r = c
        .call(
            4,
            "tools/call",
            json!({ "name": "notify_later", "arguments": {} }),
        )
        .await;
    assert_eq!(r["result"]["content"][0]["text"], "scheduled", "{r}");
    let log = next_message(&mut get).await;
    assert_eq!(log["method"], "notifications/message", "{log}");
    assert_eq!(
        log["params"],
        json!({ "level": "info", "logger": "later", "data": "notify_later" })
    );
    let update = next_message(&mut get).await;
    assert_eq!(update["method"], "notifications/resources/updated");
    assert_eq!(update["params"], watched);

    // Above the session's log level and for an unsubscribed uri: nothing is sent.
    c.call(5, "logging/setLevel", json!({ "level": "warning" }))
        .await;
    c.call(
        6,
        "tools/call",
        json!({ "name": "notify_later", "arguments": { "delay_ms": 10, "uri": "test://static-text" } }),
    )
    .await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    c.call(
        7,
        "tools/call",
        json!({ "name": "notify_resource_updated", "arguments": {} }),
    )
    .await;
    let next = next_message(&mut get).await;
    assert_eq!(next["method"], "notifications/resources/updated", "{next}");
    assert_eq!(next["params"], watched);

    let bad = c
        .call(
            8,
            "tools/call",
            json!({ "name": "notify_later", "arguments": { "delay_ms": "soon" } }),
        )
        .await;
    assert_eq!(bad["result"]["isError"], true, "{bad}");
}
