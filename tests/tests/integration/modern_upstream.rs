//! fleetgate as a client of 2026-07-28 (modern, session-less) upstreams:
//! the era is negotiated per upstream (`server/discover`, else
//! `initialize`), a modern upstream's own tools are discovered and called
//! without any upstream session, a tool's `x-mcp-header` parameters reach
//! it as `Mcp-Param-*` headers, its `subscriptions/listen` stream is opened
//! for a downstream session and read, and a 2025-only upstream works as
//! before. The clients are 2025-era (sessions on `/servers/{id}/mcp`) and
//! `/rpc`; two workers, a fresh connection per request.
#![allow(clippy::unwrap_used)] // a failed unwrap is a failed test

use std::time::Duration;

use fleetgate_test_upstream::{RunningUpstream, Upstream};
use fleetgate_tests::fleet::Fleet;
use fleetgate_tests::gateway;
use fleetgate_tests::mcp::McpClient;
use serde_json::{json, Value};

const WORKERS: usize = 2;

/// A fleet of two workers with one upstream registered, a virtual server
/// holding all of it (tools under their upstream names), and a 2025 client
/// with a session there.
async fn setup(up: &RunningUpstream, name: &str) -> (Fleet, McpClient) {
    let fleet = Fleet::builder().env("WORKERS", WORKERS.to_string()).start();
    gateway::register(&fleet, name, &up.url()).await;
    let sid = gateway::server_with_everything(&fleet, name).await;
    let url = fleet.url(&format!("/servers/{sid}/mcp"));
    gateway::known_everywhere(&url, WORKERS).await;
    let mut c = McpClient::fresh(url);
    assert_eq!(c.initialize().await.status, 200);
    (fleet, c)
}

async fn registered_tools(fleet: &Fleet) -> Vec<String> {
    gateway::list(fleet, "/tools?limit=0")
        .await
        .iter()
        .filter_map(|t| t["originalName"].as_str().map(str::to_owned))
        .collect()
}

/// `/rpc` `tools/call` of `name` (its name on `/rpc`: qualified).
async fn rpc_call(fleet: &Fleet, name: &str, args: Value) -> Value {
    let r = fleetgate_tests::fresh_client()
        .post(fleet.url("/rpc"))
        .json(&json!({"jsonrpc": "2.0", "id": 1, "method": "tools/call",
            "params": {"name": name, "arguments": args}}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    r.json().await.unwrap()
}

/// The name `/rpc` (everything) exposes the upstream tool `original` under.
async fn rpc_name(fleet: &Fleet, original: &str) -> String {
    gateway::list(fleet, "/tools?limit=0")
        .await
        .iter()
        .find(|t| t["originalName"] == original)
        .and_then(|t| t["name"].as_str().map(str::to_owned))
        .unwrap_or_else(|| panic!("{original} is not registered"))
}

fn text(result: &Value) -> &str {
    result["content"][0]["text"].as_str().unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_modern_upstreams_own_tools_are_discovered_and_called_without_any_initialize() {
    let up = Upstream::builder()
        .name("modern")
        .stateful(false)
        .spawn()
        .await
        .unwrap();
    let (fleet, c) = setup(&up, "modern").await;
    // Tools and prompts it offers only in the 2026-07-28 era.
    let tools = registered_tools(&fleet).await;
    for t in ["test_logging_tool", "test_trigger_tool_change", "echo"] {
        assert!(tools.iter().any(|n| n == t), "{t} not in {tools:?}");
    }
    // Through a 2025 client's session, on either worker.
    for _ in 0..4 {
        let r = c.call_tool("test_logging_tool", json!({})).await;
        assert_eq!(text(&r), "Logging evaluated", "{r}");
        let r = c.call_tool("echo", json!({"text": "hi"})).await;
        assert!(text(&r).contains("hi"), "{r}");
    }
    // Through /rpc (the worker's pool).
    let name = rpc_name(&fleet, "test_logging_tool").await;
    for _ in 0..4 {
        let r = rpc_call(&fleet, &name, json!({})).await;
        assert_eq!(text(&r["result"]), "Logging evaluated", "{r}");
    }
    let stats = up.stats();
    assert_eq!(stats.method("initialize"), 0, "{stats:?}");
    assert_eq!(stats.sessions_initialized, 0, "{stats:?}");
    assert!(stats.method("server/discover") >= 1, "{stats:?}");
    assert!(stats.method("tools/call") >= 12, "{stats:?}");
    // Every call and listing went out session-less, in the 2026 era.
    assert_eq!(stats.stateless_requests, stats.post_requests, "{stats:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn x_mcp_header_parameters_reach_a_modern_upstream_as_mcp_param_headers() {
    let up = Upstream::builder()
        .name("params")
        .stateful(false)
        .spawn()
        .await
        .unwrap();
    let (fleet, c) = setup(&up, "params").await;
    let r = c
        .call_tool("echo_headers", json!({"region": "us-west1"}))
        .await;
    let h = &r["structuredContent"]["headers"];
    assert_eq!(h["mcp-param-region"], "us-west1", "{r}");
    assert_eq!(h["mcp-method"], "tools/call", "{r}");
    assert_eq!(h["mcp-name"], "echo_headers", "{r}");
    assert_eq!(h["mcp-protocol-version"], "2026-07-28", "{r}");
    // A value that is not plain ASCII goes base64-encoded.
    let r = c
        .call_tool("echo_headers", json!({"region": "Hello, 世界"}))
        .await;
    assert_eq!(
        r["structuredContent"]["headers"]["mcp-param-region"], "=?base64?SGVsbG8sIOS4lueVjA==?=",
        "{r}"
    );
    // No value, no header; and /rpc mirrors it too.
    let r = c.call_tool("echo_headers", json!({})).await;
    assert!(
        r["structuredContent"]["headers"]
            .get("mcp-param-region")
            .is_none(),
        "{r}"
    );
    let name = rpc_name(&fleet, "echo_headers").await;
    let r = rpc_call(&fleet, &name, json!({"region": "eu"})).await;
    assert_eq!(
        r["result"]["structuredContent"]["headers"]["mcp-param-region"], "eu",
        "{r}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_2025_only_upstream_is_reached_with_initialize_as_before() {
    let up = Upstream::builder()
        .name("legacy-only")
        .stateless_draft(false)
        .spawn()
        .await
        .unwrap();
    let (fleet, c) = setup(&up, "legacy-only").await;
    let tools = registered_tools(&fleet).await;
    assert!(tools.iter().any(|n| n == "echo"), "{tools:?}");
    assert!(
        !tools.iter().any(|n| n == "test_logging_tool"),
        "a 2025-only upstream has no 2026 tools: {tools:?}"
    );
    for _ in 0..4 {
        let r = c.call_tool("echo", json!({"text": "old"})).await;
        assert!(text(&r).contains("old"), "{r}");
    }
    // The legacy era: no Mcp-Param-* mirroring, a session of its own.
    let r = c
        .call_tool("echo_headers", json!({"region": "us-west1"}))
        .await;
    let h = &r["structuredContent"]["headers"];
    assert!(h.get("mcp-param-region").is_none(), "{r}");
    assert!(h.get("mcp-session-id").is_some(), "{r}");
    let name = rpc_name(&fleet, "echo").await;
    let r = rpc_call(&fleet, &name, json!({"text": "rpc"})).await;
    assert!(text(&r["result"]).contains("rpc"), "{r}");
    let stats = up.stats();
    assert!(stats.method("initialize") >= 2, "{stats:?}");
    assert_eq!(stats.method("tools/call"), 6, "{stats:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_modern_upstreams_listen_stream_is_opened_for_a_session_and_read() {
    let up = Upstream::builder()
        .name("listen")
        .stateful(false)
        .spawn()
        .await
        .unwrap();
    let (_fleet, c) = setup(&up, "listen").await;
    // The first call through the session opens its upstream listen stream.
    let r = c.call_tool("echo", json!({"text": "x"})).await;
    assert!(text(&r).contains('x'), "{r}");
    fleetgate_tests::eventually(
        Duration::from_secs(10),
        "subscriptions/listen opened upstream",
        || async { (up.stats().method("subscriptions/listen") >= 1).then_some(()) },
    )
    .await;
    // A list change announced on it makes fleetgate list the tools again.
    let listed = up.stats().method("tools/list");
    let r = c.call_tool("test_trigger_tool_change", json!({})).await;
    assert_eq!(text(&r), "Mutation triggered", "{r}");
    fleetgate_tests::eventually(
        Duration::from_secs(10),
        "the tools listed again after the upstream's list change",
        || async { (up.stats().method("tools/list") > listed).then_some(()) },
    )
    .await;
    // A 2025 client's resources/subscribe becomes the stream's filter (the
    // stream is opened again with it); the removed method never goes out.
    let opened = up.stats().method("subscriptions/listen");
    let a = c
        .request(
            "resources/subscribe",
            json!({"uri": "test://watched-resource"}),
        )
        .await;
    assert_eq!(a.status, 200, "{a:?}");
    assert_eq!(a.result(), &json!({}), "{a:?}");
    let stats = up.stats();
    assert!(stats.method("subscriptions/listen") > opened, "{stats:?}");
    assert_eq!(stats.method("resources/subscribe"), 0, "{stats:?}");
    assert_eq!(stats.method("initialize"), 0, "{stats:?}");
}
