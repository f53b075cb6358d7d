//! Upstreams registered with `"transport": "SSE"` (the legacy HTTP+SSE
//! transport of MCP 2024-11-05), through the real binary. As ContextForge
//! users do, the gateway is registered with the upstream's SSE endpoint
//! (`http://host:port/sse`); fleetgate opens that stream, reads the
//! `endpoint` event and POSTs its messages there.
#![allow(clippy::unwrap_used)] // a failed unwrap is a failed test

use std::time::Duration;

use fleetgate_test_upstream::{RunningUpstream, Upstream};
use fleetgate_tests::fleet::Fleet;
use fleetgate_tests::gateway;
use fleetgate_tests::mcp::McpClient;
use serde_json::{json, Value};

async fn legacy_upstream(name: &str) -> RunningUpstream {
    Upstream::builder()
        .name(name)
        .legacy_sse(true)
        .spawn()
        .await
        .unwrap()
}

fn one_worker() -> Fleet {
    Fleet::builder().env("WORKERS", "1").start()
}

/// `POST /gateways` with `"transport": "SSE"` and the upstream's `/sse` URL.
async fn register_sse(fleet: &Fleet, name: &str, url: &str) -> (u16, Value) {
    let r = reqwest::Client::new()
        .post(fleet.url("/gateways"))
        .json(&json!({"name": name, "url": url, "transport": "SSE"}))
        .send()
        .await
        .unwrap();
    (r.status().as_u16(), r.json().await.unwrap_or_default())
}

/// The name `/mcp` exposes for an upstream tool (qualified and slugified).
async fn exposed(fleet: &Fleet, gateway: &Value, original: &str) -> String {
    let all = gateway::list(fleet, "/tools?limit=0").await;
    let t = all
        .iter()
        .find(|t| t["gatewayId"] == gateway["id"] && t["originalName"] == original)
        .unwrap_or_else(|| panic!("{original} not registered: {all:?}"));
    t["name"].as_str().unwrap().to_owned()
}

fn names(list: &Value) -> Vec<String> {
    list["tools"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sse_gateways_register_list_and_call_over_mcp_and_rpc() {
    let fleet = one_worker();
    let up = legacy_upstream("old").await;
    let (status, gw) = register_sse(&fleet, "old", &up.sse_url()).await;
    assert_eq!(status, 200, "{gw}");
    assert_eq!(gw["transport"], "SSE", "{gw}");
    assert_eq!(gw["url"], up.sse_url());
    // Registration discovered over the legacy transport, then closed its stream.
    assert_eq!(up.stats().sessions_initialized, 1);
    fleetgate_tests::eventually(
        Duration::from_secs(5),
        "discovery stream closed",
        || async { (up.stats().live_sessions == 0).then_some(()) },
    )
    .await;
    let registered = gateway::list(&fleet, "/tools?limit=0").await;
    assert!(
        registered.iter().any(|t| t["name"] == "old-echo"),
        "{registered:?}"
    );

    // /mcp: tools/list and tools/call federated over SSE.
    let mut c = McpClient::new(fleet.url("/mcp"));
    assert_eq!(c.initialize().await.status, 200);
    let listed = names(c.request("tools/list", json!({})).await.result());
    assert!(listed.contains(&"old-echo".to_owned()), "{listed:?}");
    let r = c
        .call_tool("old-echo", json!({"text": "over legacy sse"}))
        .await;
    assert_eq!(r["content"][0]["text"], "over legacy sse", "{r}");
    let r = c.call_tool("old-add", json!({"a": 40, "b": 2})).await;
    assert_eq!(r["structuredContent"]["sum"], 42, "{r}");
    assert_eq!(
        up.stats().live_sessions,
        1,
        "one upstream session per downstream one"
    );

    // Progress from the upstream's stream reaches the client as SSE.
    let name = exposed(&fleet, &gw, "test_tool_with_progress").await;
    let a = c
        .request(
            "tools/call",
            json!({"name": name, "arguments": {}, "_meta": {"progressToken": "p1"}}),
        )
        .await;
    let progress: Vec<&Value> = a
        .messages
        .iter()
        .filter(|m| m["method"] == "notifications/progress")
        .collect();
    assert_eq!(progress.len(), 3, "{a:?}");
    assert_eq!(progress[0]["params"]["progressToken"], "p1");
    assert!(a.response()["result"].is_object(), "{a:?}");

    // /rpc: tools/call through the worker's pool.
    let rpc = reqwest::Client::new()
        .post(fleet.url("/rpc"))
        .json(&json!({"jsonrpc": "2.0", "id": 1, "method": "tools/call",
            "params": {"name": "old-echo", "arguments": {"text": "via rpc"}}}))
        .send()
        .await
        .unwrap();
    assert_eq!(rpc.status(), 200);
    let v: Value = rpc.json().await.unwrap();
    assert_eq!(v["result"]["content"][0]["text"], "via rpc", "{v}");

    // The upstream forgets its sessions (streams close): the next calls open
    // new ones transparently.
    up.drop_sessions();
    let r = c.call_tool("old-echo", json!({"text": "again"})).await;
    assert_eq!(r["content"][0]["text"], "again", "{r}");
    let rpc = reqwest::Client::new()
        .post(fleet.url("/rpc"))
        .json(&json!({"jsonrpc": "2.0", "id": 2, "method": "tools/call",
            "params": {"name": "old-echo", "arguments": {"text": "rpc again"}}}))
        .send()
        .await
        .unwrap();
    let v: Value = rpc.json().await.unwrap();
    assert_eq!(v["result"]["content"][0]["text"], "rpc again", "{v}");

    // Refresh rediscovers over SSE too.
    let r = reqwest::Client::new()
        .post(fleet.url(&format!("/gateways/{}/refresh", gw["id"].as_str().unwrap())))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "{:?}", r.text().await);

    // DELETE of the downstream session closes the upstream stream.
    assert_eq!(c.delete().await, 200);
    fleetgate_tests::eventually(
        Duration::from_secs(5),
        "upstream streams closed",
        || async { (up.stats().live_sessions <= 1).then_some(()) },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sampling_is_relayed_over_sse_gateways() {
    let fleet = one_worker();
    let up = legacy_upstream("ask").await;
    let (status, gw) = register_sse(&fleet, "ask", &up.sse_url()).await;
    assert_eq!(status, 200, "{gw}");
    let name = exposed(&fleet, &gw, "test_sampling").await;
    let mut c = McpClient::new(fleet.url("/mcp"));
    c.initialize().await;
    let (_, last) = c
        .call_answering(
            &name,
            json!({"prompt": "hello?"}),
            "sampling/createMessage",
            json!({"role": "assistant", "content": {"type": "text", "text": "sampled answer"},
                "model": "m", "stopReason": "endTurn"}),
        )
        .await;
    assert_eq!(last["id"], 7);
    assert!(
        last["result"].to_string().contains("sampled answer"),
        "{last}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_url_that_is_not_an_sse_endpoint_is_a_502_naming_it() {
    let fleet = one_worker();
    let up = legacy_upstream("wrong").await;
    // The Streamable HTTP endpoint registered as SSE.
    let (status, v) = register_sse(&fleet, "wrong", &up.url()).await;
    assert_eq!(status, 502, "{v}");
    assert!(v.to_string().contains(&up.url()), "{v}");
    // And a Streamable HTTP gateway still works next to SSE ones.
    gateway::register(&fleet, "modern", &up.url()).await;
    let (status, v) = register_sse(&fleet, "legacy", &up.sse_url()).await;
    assert_eq!(status, 200, "{v}");
}
