//! MCP Streamable HTTP and /rpc through the gateway, federated to real upstreams.
#![allow(clippy::unwrap_used)] // a failed unwrap is a failed test

use fleetgate_test_upstream::{RunningUpstream, Upstream};
use fleetgate_tests::fleet::Fleet;
use fleetgate_tests::gateway;
use fleetgate_tests::mcp::McpClient;
use serde_json::{json, Value};

async fn upstream(name: &str) -> RunningUpstream {
    Upstream::builder()
        .stateless_draft(false)
        .name(name)
        .spawn()
        .await
        .unwrap()
}

async fn register(fleet: &Fleet, name: &str, up: &RunningUpstream) -> Value {
    gateway::register(fleet, name, &up.url()).await
}

async fn tools(fleet: &Fleet) -> Vec<Value> {
    gateway::list(fleet, "/tools?limit=0").await
}

async fn create_server(fleet: &Fleet, name: &str, tool_ids: &[String]) -> String {
    gateway::create_server(fleet, name, tool_ids, &[], &[]).await
}

fn ids_of(tools: &[Value], gateway_id: &str, names: &[&str]) -> Vec<String> {
    tools
        .iter()
        .filter(|t| {
            t["gatewayId"] == gateway_id && names.contains(&t["originalName"].as_str().unwrap())
        })
        .map(|t| t["id"].as_str().unwrap().to_owned())
        .collect()
}

/// The name `/mcp` exposes for an upstream tool (qualified and slugified).
async fn exposed(fleet: &Fleet, gateway: &Value, original: &str) -> String {
    let all = tools(fleet).await;
    let t = all
        .iter()
        .find(|t| t["gatewayId"] == gateway["id"] && t["originalName"] == original)
        .unwrap_or_else(|| panic!("{original} not registered: {all:?}"));
    t["name"].as_str().unwrap().to_owned()
}

fn names(list: &Value) -> Vec<String> {
    let mut v: Vec<String> = list["tools"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap().to_owned())
        .collect();
    v.sort();
    v
}

fn one_worker() -> Fleet {
    Fleet::builder().env("WORKERS", "1").start()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mcp_lists_prefixed_tools_and_federates_calls() {
    let fleet = one_worker();
    let up = upstream("alpha").await;
    let gw = register(&fleet, "alpha", &up).await;
    assert_eq!(gw["name"], "alpha");

    let mut c = McpClient::new(fleet.url("/mcp"));
    let init = c.initialize().await;
    assert_eq!(init.status, 200, "{init:?}");
    assert!(c.session.is_some(), "initialize mints Mcp-Session-Id");
    assert_eq!(init.result()["protocolVersion"], "2025-06-18");

    let list = c.request("tools/list", json!({})).await;
    let listed = names(list.result());
    assert!(listed.contains(&"alpha-echo".to_owned()), "{listed:?}");
    assert!(!listed.contains(&"echo".to_owned()));

    let r = c
        .call_tool("alpha-echo", json!({"text": "through the gateway"}))
        .await;
    assert_eq!(r["content"][0]["text"], "through the gateway", "{r}");

    let unknown = c
        .request("tools/call", json!({"name": "alpha-nope", "arguments": {}}))
        .await;
    assert_eq!(unknown.error_code(), Some(-32601), "{unknown:?}");

    // One downstream session → one upstream session, however many calls
    // (the other one was registration's discovery).
    for i in 0..5 {
        c.call_tool("alpha-add", json!({"a": i, "b": 1})).await;
    }
    assert_eq!(up.stats().sessions_initialized, 2);

    // DELETE ends the session here and upstream.
    let deleted = up.stats().sessions_deleted;
    assert_eq!(c.delete().await, 200);
    let after = c.request("tools/list", json!({})).await;
    assert_eq!(after.status, 404, "a deleted session is unknown");
    fleetgate_tests::eventually(
        std::time::Duration::from_secs(5),
        "upstream session closed",
        || async { (up.stats().sessions_deleted == deleted + 1).then_some(()) },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_downstream_session_gets_its_own_upstream_session() {
    let fleet = one_worker();
    let up = upstream("solo").await;
    register(&fleet, "solo", &up).await;
    up.reset_stats();
    let mut a = McpClient::new(fleet.url("/mcp"));
    let mut b = McpClient::new(fleet.url("/mcp"));
    a.initialize().await;
    b.initialize().await;
    assert_ne!(a.session, b.session);
    a.call_tool("solo-echo", json!({"text": "a"})).await;
    b.call_tool("solo-echo", json!({"text": "b"})).await;
    a.call_tool("solo-echo", json!({"text": "a2"})).await;
    assert_eq!(
        up.stats().sessions_initialized,
        2,
        "never shared between clients"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_are_required_and_checked() {
    let fleet = one_worker();
    let c = McpClient::new(fleet.url("/mcp"));
    let missing = c.request("tools/list", json!({})).await;
    assert_eq!(missing.status, 400, "{missing:?}");
    let mut bogus = McpClient::new(fleet.url("/mcp"));
    bogus.session = Some("no-such-session".into());
    let unknown = bogus.request("tools/list", json!({})).await;
    assert_eq!(unknown.status, 404, "{unknown:?}");
    let mut bad_version = McpClient::new(fleet.url("/mcp"));
    bad_version.initialize().await;
    bad_version.protocol_version = "1999-01-01".into();
    let r = bad_version.request("ping", json!({})).await;
    assert_eq!(r.status, 400, "unsupported MCP-Protocol-Version: {r:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn virtual_servers_expose_short_names_and_prefix_only_collisions() {
    let fleet = one_worker();
    let (ua, ub) = (upstream("a").await, upstream("b").await);
    let ga = register(&fleet, "gw-a", &ua).await;
    let gb = register(&fleet, "gw-b", &ub).await;
    let all = tools(&fleet).await;
    let mut picked = ids_of(&all, ga["id"].as_str().unwrap(), &["echo", "add"]);
    picked.extend(ids_of(&all, gb["id"].as_str().unwrap(), &["echo", "slow"]));
    let sid = create_server(&fleet, "mixed", &picked).await;

    let mut c = McpClient::new(fleet.url(&format!("/servers/{sid}/mcp")));
    assert_eq!(c.initialize().await.status, 200);
    let listed = names(c.request("tools/list", json!({})).await.result());
    assert_eq!(listed, ["add", "gw-a-echo", "gw-b-echo", "slow"]);
    let r = c.call_tool("add", json!({"a": 2, "b": 3})).await;
    assert_eq!(r["content"][0]["text"], "5", "{r}");
    // Only this server's tools: another gateway tool is unknown here.
    let outside = c
        .request(
            "tools/call",
            json!({"name": "gw-a-slow", "arguments": {"ms": 1}}),
        )
        .await;
    assert_eq!(outside.error_code(), Some(-32601));

    // A session belongs to the scope it was opened in.
    let mut elsewhere = McpClient::new(fleet.url("/mcp"));
    elsewhere.session = c.session.clone();
    assert_eq!(elsewhere.request("tools/list", json!({})).await.status, 404);

    let gone = McpClient::new(fleet.url("/servers/no-such-server/mcp"));
    assert_eq!(gone.request("tools/list", json!({})).await.status, 404);

    // The id in the path is percent-decoded, and one trailing slash is the
    // same path: the same server, the same session.
    let encoded: String = sid.bytes().map(|b| format!("%{b:02X}")).collect();
    let mut same = McpClient::new(fleet.url(&format!("/servers/{encoded}/mcp/")));
    same.session = c.session.clone();
    let again = names(same.request("tools/list", json!({})).await.result());
    assert_eq!(again, listed);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rpc_reuses_one_pooled_upstream_session_and_honours_server_id() {
    let fleet = one_worker();
    let up = upstream("pool").await;
    let gw = register(&fleet, "pool", &up).await;
    let http = reqwest::Client::new();
    let rpc = |body: Value| {
        let (http, url) = (http.clone(), fleet.url("/rpc"));
        async move {
            let r = http.post(url).json(&body).send().await.unwrap();
            (r.status().as_u16(), r.json::<Value>().await.unwrap())
        }
    };
    let (st, list) = rpc(json!({"jsonrpc":"2.0","id":1,"method":"tools/list"})).await;
    assert_eq!(st, 200);
    assert!(names(&list["result"]).contains(&"pool-echo".to_owned()));
    up.reset_stats();
    for i in 0..10 {
        let (st, r) = rpc(json!({"jsonrpc":"2.0","id":i,"method":"tools/call",
            "params":{"name":"pool-echo","arguments":{"text":"x"}}}))
        .await;
        assert_eq!(st, 200);
        assert_eq!(r["result"]["content"][0]["text"], "x", "{r}");
    }
    let s = up.stats();
    assert!(
        s.sessions_initialized <= 1,
        "pooled, not one session per call: {s:?}"
    );
    assert!(
        s.post_requests <= 12,
        "≈1 upstream request per call, not 7: {s:?}"
    );

    // Legacy ContextForge form: the method is the tool name.
    let (_, legacy) =
        rpc(json!({"jsonrpc":"2.0","id":99,"method":"pool-echo","params":{"text":"old"}})).await;
    assert_eq!(legacy["result"]["content"][0]["text"], "old", "{legacy}");

    // params.server_id scopes the call.
    let ids = ids_of(&tools(&fleet).await, gw["id"].as_str().unwrap(), &["add"]);
    let sid = create_server(&fleet, "only-add", &ids).await;
    let (_, scoped) =
        rpc(json!({"jsonrpc":"2.0","id":2,"method":"tools/list","params":{"server_id": sid}}))
            .await;
    assert_eq!(names(&scoped["result"]), ["add"]);
    let (_, refused) = rpc(json!({"jsonrpc":"2.0","id":3,"method":"tools/call",
        "params":{"server_id": sid, "name":"echo","arguments":{"text":"x"}}}))
    .await;
    assert_eq!(refused["error"]["code"], -32601, "{refused}");
    let (st, missing) =
        rpc(json!({"jsonrpc":"2.0","id":4,"method":"tools/list","params":{"server_id":"nope"}}))
            .await;
    assert_eq!(st, 404, "{missing}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_gets_the_right_error() {
    let fleet = Fleet::builder()
        .env("WORKERS", "1")
        .env("MAX_REQUEST_BODY_BYTES", "4096")
        .start();
    let mut c = McpClient::new(fleet.url("/mcp"));
    c.initialize().await;
    let parse = c.post_raw("{not json".into(), "application/json").await;
    assert_eq!(
        (parse.status, parse.error_code()),
        (400, Some(-32700)),
        "{parse:?}"
    );
    let shape = c
        .post(json!({"jsonrpc": "1.0", "id": 1, "method": 5}))
        .await;
    assert_eq!(
        (shape.status, shape.error_code()),
        (400, Some(-32600)),
        "{shape:?}"
    );
    let params = c.request("tools/call", json!({"arguments": {}})).await;
    assert_eq!(params.error_code(), Some(-32602), "{params:?}");
    let method = c.request("no/such/method", json!({})).await;
    assert_eq!(method.error_code(), Some(-32601));
    let media = c.post_raw("{}".into(), "text/plain").await;
    assert_eq!(media.status, 415);
    let big = format!(
        "{{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"ping\",\"params\":{{\"x\":\"{}\"}}}}",
        "a".repeat(10_000)
    );
    let too_big = c.post_raw(big.clone(), "application/json").await;
    assert_eq!(too_big.status, 413);
    assert_eq!(too_big.error_code(), Some(-32600), "{too_big:?}");
    let why = too_big.error_message();
    assert!(
        why.contains("MAX_REQUEST_BODY_BYTES"),
        "names the setting: {why}"
    );
    let http = reqwest::Client::new();
    let rpc_big = http
        .post(fleet.url("/rpc/"))
        .header("content-type", "application/json")
        .body(big)
        .send()
        .await
        .unwrap();
    assert_eq!(rpc_big.status(), 413, "/rpc/ is /rpc");
    // The transport paths take their own methods; the rest is 405 with Allow.
    for (path, method, allow) in [
        ("/mcp", reqwest::Method::PUT, "GET, POST, DELETE"),
        ("/mcp/", reqwest::Method::PATCH, "GET, POST, DELETE"),
        ("/rpc", reqwest::Method::GET, "POST"),
    ] {
        let r = http
            .request(method.clone(), fleet.url(path))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 405, "{method} {path}");
        assert_eq!(r.headers()["allow"], allow, "{method} {path}");
    }
    let rpc = reqwest::Client::new()
        .post(fleet.url("/rpc"))
        .header("content-type", "application/json")
        .body("[")
        .send()
        .await
        .unwrap();
    assert_eq!(rpc.status(), 400);
    let v: Value = rpc.json().await.unwrap();
    assert_eq!(v["error"]["code"], -32700);
    // And the worker is still there.
    assert_eq!(c.request("ping", json!({})).await.status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_messages_mid_call_reach_the_client_as_sse() {
    let fleet = one_worker();
    let up = upstream("talk").await;
    let gw = register(&fleet, "talk", &up).await;
    let name = exposed(&fleet, &gw, "test_tool_with_progress").await;
    let mut c = McpClient::new(fleet.url("/mcp"));
    c.initialize().await;
    let a = c
        .request(
            "tools/call",
            json!({"name": name, "arguments": {}, "_meta": {"progressToken": "p1"}}),
        )
        .await;
    assert!(a.content_type.starts_with("text/event-stream"), "{a:?}");
    let progress: Vec<&Value> = a
        .messages
        .iter()
        .filter(|m| m["method"] == "notifications/progress")
        .collect();
    assert!(!progress.is_empty(), "progress relayed: {a:?}");
    assert_eq!(progress[0]["params"]["progressToken"], "p1");
    assert!(
        a.response()["result"].is_object(),
        "the result comes last: {a:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sampling_requests_are_relayed_and_answered() {
    let fleet = one_worker();
    let up = upstream("ask").await;
    let gw = register(&fleet, "ask", &up).await;
    let name = exposed(&fleet, &gw, "test_sampling").await;
    let mut c = McpClient::new(fleet.url("/mcp"));
    c.initialize().await;
    let (content_type, last) = c
        .call_answering(
            &name,
            json!({"prompt": "hello?"}),
            "sampling/createMessage",
            json!({"role": "assistant", "content": {"type": "text", "text": "sampled answer"},
                "model": "test-model", "stopReason": "endTurn"}),
        )
        .await;
    assert!(
        content_type.starts_with("text/event-stream"),
        "{content_type}"
    );
    assert_eq!(last["id"], 7);
    assert!(
        last["result"].to_string().contains("sampled answer"),
        "{last}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_timeouts_and_outages_are_32001_naming_the_upstream() {
    let fleet = Fleet::builder()
        .env("WORKERS", "1")
        .env("UPSTREAM_TIMEOUT", "0.5")
        .start();
    let up = upstream("lazy").await;
    let url = up.url();
    register(&fleet, "lazy", &up).await;
    let mut c = McpClient::new(fleet.url("/mcp"));
    c.initialize().await;
    let slow = c
        .request(
            "tools/call",
            json!({"name":"lazy-slow","arguments":{"ms": 3000}}),
        )
        .await;
    assert_eq!(slow.error_code(), Some(-32001), "{slow:?}");
    assert!(slow.error_message().contains(&url), "{slow:?}");
    up.shutdown().await;
    let down = c
        .request(
            "tools/call",
            json!({"name":"lazy-echo","arguments":{"text":"x"}}),
        )
        .await;
    assert_eq!(down.error_code(), Some(-32001), "{down:?}");
    assert!(down.error_message().contains(&url), "{down:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stateless_2026_07_28_needs_no_session() {
    let fleet = one_worker();
    let up = upstream("nosession").await;
    register(&fleet, "nosession", &up).await;
    let mut c = McpClient::new(fleet.url("/mcp"));
    c.protocol_version = "2026-07-28".into();
    let d = c.request("server/discover", json!({})).await;
    assert_eq!(d.status, 200, "{d:?}");
    let versions = d.result()["supportedVersions"].as_array().unwrap();
    assert!(versions.iter().any(|v| v == "2026-07-28"), "{d:?}");
    assert!(
        d.headers.get("mcp-session-id").is_none(),
        "no session is minted"
    );
    let listed = names(c.request("tools/list", json!({})).await.result());
    assert!(listed.contains(&"nosession-echo".to_owned()), "{listed:?}");
    let r = c
        .call_tool("nosession-echo", json!({"text": "stateless"}))
        .await;
    assert_eq!(r["content"][0]["text"], "stateless");
    // The version may also travel in _meta instead of the header.
    c.protocol_version = "2025-06-18".into();
    let meta = c
        .post_raw(
            json!({"jsonrpc": "2.0", "id": 9, "method": "tools/list",
                "params": {"_meta": {"io.modelcontextprotocol/protocolVersion": "2026-07-28"}}})
            .to_string(),
            "application/json",
        )
        .await;
    assert_eq!(
        meta.status, 400,
        "the header (2025-06-18, sessionful) wins and needs a session: {meta:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn allowlisted_headers_pass_through_to_the_upstream() {
    let fleet = one_worker();
    let up = upstream("hdr").await;
    let gw = register(&fleet, "hdr", &up).await;
    let name = exposed(&fleet, &gw, "echo_headers").await;
    let mut c = McpClient::new(fleet.url("/mcp"))
        .header("x-tenant-id", "tenant-42")
        .header("x-not-allowed", "secret");
    c.initialize().await;
    let r = c.call_tool(&name, json!({})).await.to_string();
    assert!(
        r.contains("tenant-42"),
        "x-tenant-id is on the allowlist: {r}"
    );
    assert!(
        !r.contains("secret"),
        "other headers are not forwarded: {r}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_sessions_are_ended_with_their_upstream_sessions() {
    let fleet = Fleet::builder()
        .env("WORKERS", "1")
        .env("SESSION_IDLE_TIMEOUT", "1")
        .start();
    let up = upstream("idle").await;
    register(&fleet, "idle", &up).await;
    up.reset_stats();
    let mut c = McpClient::new(fleet.url("/mcp"));
    c.initialize().await;
    c.call_tool("idle-echo", json!({"text": "x"})).await;
    assert_eq!(up.stats().sessions_initialized, 1);
    // Nobody uses it: the sweeper ends it, and its upstream session with it.
    fleetgate_tests::eventually(
        std::time::Duration::from_secs(10),
        "the idle session's upstream session closed",
        || async { (up.stats().sessions_deleted == 1).then_some(()) },
    )
    .await;
    // A client that comes back later carries on, on a new upstream session.
    let r = c.call_tool("idle-echo", json!({"text": "back"})).await;
    assert_eq!(r["content"][0]["text"], "back");
    assert_eq!(up.stats().sessions_initialized, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn open_sessions_follow_a_gateway_moved_to_another_url() {
    let fleet = one_worker();
    let old = upstream("moving").await;
    let new = upstream("moving").await;
    let gw = register(&fleet, "moving", &old).await;
    old.reset_stats();
    let mut client = McpClient::new(fleet.url("/mcp"));
    client.initialize().await;
    client
        .call_tool("moving-echo", json!({"text": "before"}))
        .await;
    assert_eq!(old.stats().sessions_initialized, 1);
    let r = reqwest::Client::new()
        .put(fleet.url(&format!("/gateways/{}", gw["id"].as_str().unwrap())))
        .json(&json!({"url": new.url()}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
    new.reset_stats();
    // Every worker sees the change within its registry poll.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while new.stats().post_requests == 0 {
        assert!(
            std::time::Instant::now() < deadline,
            "the session still calls the old URL"
        );
        let before = old.stats().post_requests;
        client
            .call_tool("moving-echo", json!({"text": "after"}))
            .await;
        if new.stats().post_requests == 0 {
            assert_eq!(old.stats().post_requests, before + 1);
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
    }
    assert_eq!(
        new.stats().sessions_initialized,
        1,
        "the same downstream session got a new upstream session at the new URL"
    );
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while old.stats().sessions_deleted == 0 {
        assert!(
            std::time::Instant::now() < deadline,
            "the upstream session at the old URL was not closed"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_going_away_does_not_cancel_its_call() {
    let fleet = one_worker();
    let up = upstream("gone").await;
    register(&fleet, "gone", &up).await;
    let mut c = McpClient::new(fleet.url("/mcp"));
    c.initialize().await;
    up.reset_stats();
    // JSON only (the answer cannot turn into a stream to resume): the call
    // runs in the request's own task, and the client drops the connection.
    let send = fleetgate_tests::fresh_client()
        .post(fleet.url("/mcp"))
        .header("accept", "application/json")
        .header("content-type", "application/json")
        .header("mcp-protocol-version", &c.protocol_version)
        .header("mcp-session-id", c.session.clone().unwrap())
        .body(
            json!({"jsonrpc": "2.0", "id": 9, "method": "tools/call",
                   "params": {"name": "gone-slow", "arguments": {"ms": 400}}})
            .to_string(),
        )
        .send();
    let early = tokio::time::timeout(std::time::Duration::from_millis(100), send).await;
    assert!(early.is_err(), "the call is still running: {early:?}");
    // MCP: a disconnect is not a cancellation. The upstream runs the call to
    // its end and is never told to cancel it.
    tokio::time::sleep(std::time::Duration::from_millis(800)).await;
    let s = up.stats();
    assert_eq!(s.tools.get("slow"), Some(&1), "{s:?}");
    assert!(
        !s.methods.contains_key("notifications/cancelled"),
        "the upstream was told to cancel: {s:?}"
    );
    // The session goes on.
    let r = c
        .call_tool("gone-echo", json!({"text": "still here"}))
        .await;
    assert_eq!(r["content"][0]["text"], "still here", "{r}");
}

/// The `result` member of a JSON-RPC answer, as the text that carried it.
fn raw_result(body: &str) -> String {
    #[derive(serde::Deserialize)]
    struct Answer {
        result: Box<serde_json::value::RawValue>,
    }
    match serde_json::from_str::<Answer>(body) {
        Ok(a) => a.result.get().to_owned(),
        Err(e) => panic!("{e}: {body}"),
    }
}

/// What an upstream answers reaches the client as the upstream wrote it: the
/// gateway relays a result without reading it, so keys keep their order and
/// strings their escapes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tool_result_reaches_the_client_as_the_upstream_wrote_it() {
    let fleet = one_worker();
    let up = upstream("bytes").await;
    let gw = register(&fleet, "bytes", &up).await;
    let http = reqwest::Client::new();
    let args = json!({"text": "h\u{e9}llo \"x\" \u{1f600}"});

    let mut direct = McpClient::new(up.url());
    assert_eq!(direct.initialize().await.status, 200);
    let from_upstream = http
        .post(up.url())
        .header("mcp-session-id", direct.session.clone().unwrap())
        .header("mcp-protocol-version", direct.protocol_version.clone())
        .header("accept", "application/json, text/event-stream")
        .json(&json!({"jsonrpc":"2.0","id":1,"method":"tools/call",
            "params":{"name":"echo","arguments": args}}))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();

    let name = exposed(&fleet, &gw, "echo").await;
    let through_gateway = http
        .post(fleet.url("/rpc"))
        .json(&json!({"jsonrpc":"2.0","id":2,"method":"tools/call",
            "params":{"name": name, "arguments": args}}))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert_eq!(raw_result(&through_gateway), raw_result(&from_upstream));
    // Not alphabetical: the upstream's own order.
    assert!(
        raw_result(&from_upstream).contains(r#"{"type":"text","text""#),
        "{from_upstream}"
    );
}

/// `USE_STATEFUL_SESSIONS=false` (ContextForge's default): `initialize`
/// issues no session id, and every later request stands alone on any worker,
/// served on pooled upstream sessions (one per principal and gateway per
/// worker, not one per request); there is no GET stream or DELETE.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessionless_serving_needs_no_session_id() {
    let fleet = Fleet::builder()
        .env("WORKERS", "2")
        .env("USE_STATEFUL_SESSIONS", "false")
        .start();
    let up = upstream("loose").await;
    register(&fleet, "loose", &up).await;
    up.reset_stats();
    let mut c = McpClient::fresh(fleet.url("/mcp"));
    let init = c.initialize().await;
    assert_eq!(init.status, 200, "{init:?}");
    assert!(init.result()["serverInfo"].is_object(), "{init:?}");
    assert!(
        init.headers.get("mcp-session-id").is_none(),
        "sessionless: no session id is issued: {init:?}"
    );
    assert_eq!(c.session, None);
    // Both workers list the new tool, by the worker that answered.
    fleetgate_tests::on_every_worker(
        2,
        std::time::Duration::from_secs(10),
        "every worker lists the new gateway's tools",
        || async {
            let listed = c.request("tools/list", json!({})).await;
            let knows = names(listed.result()).contains(&"loose-echo".to_owned());
            Some((fleetgate_tests::worker_of(&listed.headers)?, knows))
        },
    )
    .await;
    // Fresh connections spread the requests over both workers.
    let mut workers = std::collections::BTreeSet::new();
    for i in 0..12 {
        let listed = c.request("tools/list", json!({})).await;
        assert_eq!(listed.status, 200, "{listed:?}");
        assert!(
            names(listed.result()).contains(&"loose-echo".to_owned()),
            "{listed:?}"
        );
        let r = c
            .call_tool("loose-echo", json!({"text": format!("call {i}")}))
            .await;
        assert_eq!(r["content"][0]["text"], format!("call {i}"));
        if let Some(w) = listed.headers.get("x-fleetgate-worker") {
            workers.insert(w.to_str().unwrap().to_owned());
        }
    }
    let batch = c
        .post(json!([
            {"jsonrpc": "2.0", "id": "a", "method": "tools/list"},
            {"jsonrpc": "2.0", "id": "b", "method": "tools/call",
             "params": {"name": "loose-echo", "arguments": {"text": "in a batch"}}},
        ]))
        .await;
    assert_eq!(batch.status, 200, "{batch:?}");
    let answers = batch.messages[0].as_array().unwrap();
    assert_eq!(answers.len(), 2, "{batch:?}");
    let b = answers.iter().find(|a| a["id"] == "b").unwrap();
    assert_eq!(b["result"]["content"][0]["text"], "in a batch", "{batch:?}");
    // Pooled upstream sessions: at most one per worker, whatever the count
    // of requests.
    let opened = up.stats().sessions_initialized;
    assert!(
        (1..=2).contains(&opened),
        "{opened} upstream sessions for 25 requests on {} workers",
        workers.len()
    );
    // No session: nothing to stream on or to end.
    for method in [reqwest::Method::GET, reqwest::Method::DELETE] {
        let r = reqwest::Client::new()
            .request(method.clone(), fleet.url("/mcp"))
            .header("accept", "text/event-stream")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 405, "{method}");
        assert_eq!(r.headers()["allow"], "POST", "{method}");
    }
}

/// DELETE carries no JSON-RPC message: its refusals are `{"detail": …}`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delete_refusals_are_detail_answers() {
    let fleet = one_worker();
    let http = reqwest::Client::new();
    for (sid, status, detail) in [
        (None, 400, "Bad Request: Mcp-Session-Id header is required"),
        (Some("0_nosuch_session"), 404, "Session not found"),
    ] {
        let mut req = http.delete(fleet.url("/mcp"));
        if let Some(s) = sid {
            req = req.header("mcp-session-id", s);
        }
        let r = req.send().await.unwrap();
        assert_eq!(r.status(), status, "{sid:?}");
        let body: Value = r.json().await.unwrap();
        assert_eq!(body, json!({ "detail": detail }), "{sid:?}");
    }
}
