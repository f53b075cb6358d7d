//! MCP 2026-07-28 served downstream beside the 2025 era on the same endpoint:
//! the per-request checks (statuses and JSON-RPC codes the spec names), the
//! shape of results (`resultType`, `ttlMs`, `cacheScope`) for 2026 requests
//! only, both eras across workers, and `subscriptions/listen` fed by registry
//! changes.
#![allow(clippy::unwrap_used)] // a failed unwrap is a failed test

use fleetgate_test_upstream::{RunningUpstream, Upstream};
use fleetgate_tests::fleet::Fleet;
use fleetgate_tests::gateway;
use fleetgate_tests::mcp::{read_answer, McpClient};
use serde_json::{json, Value};
use std::time::Duration;

const V: &str = "2026-07-28";

async fn upstream(name: &str) -> RunningUpstream {
    Upstream::builder().name(name).spawn().await.unwrap()
}

/// The name `/mcp` exposes for `original` of the gateway registered as `gw`.
async fn exposed(fleet: &Fleet, gw: &Value, original: &str) -> String {
    let all = gateway::list(fleet, "/tools?limit=0").await;
    let t = all
        .iter()
        .find(|t| t["gatewayId"] == gw["id"] && t["originalName"] == original)
        .unwrap_or_else(|| panic!("{original} not registered: {all:?}"));
    t["name"].as_str().unwrap().to_owned()
}

fn meta() -> Value {
    json!({
        "io.modelcontextprotocol/protocolVersion": V,
        "io.modelcontextprotocol/clientInfo": {"name": "modern-tests", "version": "0"},
        "io.modelcontextprotocol/clientCapabilities": {},
    })
}

/// POSTs `body` with `headers` (plus content type and accept); status and
/// the answer's last JSON-RPC message.
async fn raw(url: &str, headers: &[(&str, &str)], body: Value) -> (u16, Value) {
    let mut req = fleetgate_tests::fresh_client()
        .post(url)
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
        .body(body.to_string());
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let a = read_answer(req.send().await.unwrap()).await;
    (a.status, a.response().clone())
}

fn modern_client(fleet: &Fleet) -> McpClient {
    let mut c = McpClient::fresh(fleet.url("/mcp"));
    c.protocol_version = V.into();
    c
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_are_checked_as_the_spec_says() {
    let fleet = Fleet::builder().env("WORKERS", "1").start();
    let up = upstream("chk").await;
    let gw = gateway::register(&fleet, "chk", &up.url()).await;
    let echo = exposed(&fleet, &gw, "echo").await;
    let url = fleet.url("/mcp");
    let list = |id: u64, params: Value| json!({"jsonrpc":"2.0","id":id,"method":"tools/list","params":params});
    let good = [("mcp-protocol-version", V), ("mcp-method", "tools/list")];

    // A well-formed request is served (clientInfo is optional).
    let mut no_info = meta();
    no_info
        .as_object_mut()
        .unwrap()
        .remove("io.modelcontextprotocol/clientInfo");
    let (s, r) = raw(&url, &good, list(1, json!({"_meta": no_info}))).await;
    assert_eq!(s, 200, "{r}");
    assert!(r["result"]["tools"].is_array(), "{r}");

    // `_meta` or its required keys missing: 400, -32602, the request's id.
    let mut no_version = meta();
    no_version
        .as_object_mut()
        .unwrap()
        .remove("io.modelcontextprotocol/protocolVersion");
    let mut no_caps = meta();
    no_caps
        .as_object_mut()
        .unwrap()
        .remove("io.modelcontextprotocol/clientCapabilities");
    for (id, params) in [
        (11, json!({})),
        (12, json!({"_meta": no_version})),
        (13, json!({"_meta": no_caps})),
    ] {
        let (s, r) = raw(&url, &good, list(id, params.clone())).await;
        assert_eq!(
            (s, r["error"]["code"].as_i64()),
            (400, Some(-32602)),
            "{params}: {r}"
        );
        assert_eq!(r["id"], id, "{r}");
    }

    // A version fleetgate does not speak: 400, -32022 naming both.
    let mut v999 = meta();
    v999["io.modelcontextprotocol/protocolVersion"] = "v999.0.0".into();
    let (s, r) = raw(
        &url,
        &[
            ("mcp-protocol-version", "v999.0.0"),
            ("mcp-method", "tools/list"),
        ],
        list(21, json!({"_meta": v999.clone()})),
    )
    .await;
    assert_eq!((s, r["error"]["code"].as_i64()), (400, Some(-32022)), "{r}");
    assert_eq!(r["error"]["data"]["requested"], "v999.0.0", "{r}");
    let supported = r["error"]["data"]["supported"].as_array().unwrap();
    assert!(supported.contains(&json!(V)), "{r}");
    assert_eq!(r["id"], 21);

    // Header and body disagree, or the header is missing: 400, -32020.
    let mismatches: Vec<(Vec<(&str, &str)>, Value)> = vec![
        (good.to_vec(), list(31, json!({"_meta": v999}))),
        (
            vec![("mcp-method", "tools/list")],
            list(32, json!({"_meta": meta()})),
        ),
        (
            vec![("mcp-protocol-version", V)],
            list(33, json!({"_meta": meta()})),
        ),
        (
            vec![("mcp-protocol-version", V), ("mcp-method", "prompts/list")],
            list(34, json!({"_meta": meta()})),
        ),
        (
            vec![("mcp-protocol-version", V), ("mcp-method", "TOOLS/LIST")],
            list(35, json!({"_meta": meta()})),
        ),
    ];
    for (headers, body) in mismatches {
        let (s, r) = raw(&url, &headers, body).await;
        assert_eq!(
            (s, r["error"]["code"].as_i64()),
            (400, Some(-32020)),
            "{headers:?}: {r}"
        );
    }

    // Mcp-Name: must be there and match params.name (base64 sentinel decoded,
    // surrounding whitespace ignored).
    let call = |id: u64| {
        json!({"jsonrpc":"2.0","id":id,"method":"tools/call",
            "params":{"name": echo, "arguments":{"text":"x"}, "_meta": meta()}})
    };
    let b64 = format!("=?base64?{}?=", base64(&echo));
    let padded = format!("  {echo}  ");
    for (name, ok) in [
        (Some(echo.as_str()), true),
        (Some(b64.as_str()), true),
        (Some(padded.as_str()), true),
        (Some("wrong_tool_name"), false),
        (None, false),
    ] {
        let mut h = vec![("mcp-protocol-version", V), ("mcp-method", "tools/call")];
        if let Some(n) = name {
            h.push(("mcp-name", n));
        }
        let (s, r) = raw(&url, &h, call(41)).await;
        if ok {
            assert_eq!(s, 200, "{name:?}: {r}");
            assert_eq!(r["result"]["content"][0]["text"], "x", "{name:?}: {r}");
        } else {
            assert_eq!(
                (s, r["error"]["code"].as_i64()),
                (400, Some(-32020)),
                "{name:?}: {r}"
            );
        }
    }

    // Methods 2026-07-28 removed, and unknown ones: 404, -32601, same id.
    for m in [
        "initialize",
        "ping",
        "logging/setLevel",
        "resources/subscribe",
        "resources/unsubscribe",
        "unknown/method",
    ] {
        let mut params = json!({"_meta": meta()});
        if m.starts_with("resources/") {
            params["uri"] = "test://static/resource".into();
        }
        let h = [("mcp-protocol-version", V), ("mcp-method", m)];
        let (s, r) = raw(
            &url,
            &h,
            json!({"jsonrpc":"2.0","id":500,"method":m,"params":params}),
        )
        .await;
        assert_eq!(
            (s, r["error"]["code"].as_i64()),
            (404, Some(-32601)),
            "{m}: {r}"
        );
        assert_eq!(r["id"], 500, "{m}: {r}");
    }

    // A notification: 202; a batch: refused.
    let (s, _) = raw(
        &url,
        &[("mcp-protocol-version", V)],
        json!({"jsonrpc":"2.0","method":"notifications/cancelled","params":{"requestId":1}}),
    )
    .await;
    assert_eq!(s, 202);
    let (s, _) = raw(&url, &good, json!([list(51, json!({"_meta": meta()}))])).await;
    assert_eq!(s, 400);
}

/// A capability the client did not declare is named, with the gateway that
/// needed it: checked by a modern upstream itself, or by fleetgate when an
/// `initialize`-era upstream asks for it mid-call.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_capability_the_client_did_not_declare_is_named() {
    let fleet = Fleet::builder().env("WORKERS", "1").start();
    let modern = upstream("cap").await;
    let old = Upstream::builder()
        .name("oldcap")
        .stateless_draft(false)
        .spawn()
        .await
        .unwrap();
    let c = modern_client(&fleet);
    for (name, up) in [("cap", &modern), ("oldcap", &old)] {
        let gw = gateway::register(&fleet, name, &up.url()).await;
        let tool = exposed(&fleet, &gw, "test_sampling").await;
        // Without `sampling` declared, the upstream's sampling request is
        // not relied on: 400, -32021, requiredCapabilities as a
        // ClientCapabilities, and the gateway named.
        let a = c
            .request(
                "tools/call",
                json!({"name": tool, "arguments": {"prompt": "hi"}}),
            )
            .await;
        assert_eq!(a.status, 400, "{name}: {a:?}");
        assert_eq!(a.error_code(), Some(-32021), "{name}: {a:?}");
        assert!(
            a.response()["error"]["data"]["requiredCapabilities"]["sampling"].is_object(),
            "{name}: {a:?}"
        );
        assert!(
            a.error_message().contains(&format!("gateway \"{name}\""))
                && a.error_message().contains("sampling"),
            "{name}: {a:?}"
        );
        // Declared, it is not that error (the request goes on upstream).
        let mut m = meta();
        m["io.modelcontextprotocol/clientCapabilities"] = json!({"sampling": {}});
        let a = c
            .request(
                "tools/call",
                json!({"name": tool, "arguments": {"prompt": "hi"}, "_meta": m}),
            )
            .await;
        assert_ne!(a.error_code(), Some(-32021), "{name}: {a:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn results_are_shaped_for_2026_requests_only() {
    let fleet = Fleet::builder()
        .env("WORKERS", "1")
        .env("REGISTRY_POLL_INTERVAL", "0.25")
        .start();
    let up = upstream("shape").await;
    let gw = gateway::register(&fleet, "shape", &up.url()).await;
    let echo = exposed(&fleet, &gw, "echo").await;
    let c = modern_client(&fleet);

    for m in [
        "tools/list",
        "prompts/list",
        "resources/list",
        "resources/templates/list",
    ] {
        let a = c.request(m, json!({})).await;
        assert_eq!(a.status, 200, "{a:?}");
        let r = a.result();
        assert_eq!(r["resultType"], "complete", "{m}: {r}");
        assert_eq!(r["ttlMs"], 250, "{m}: the registry poll interval: {r}");
        assert_eq!(r["cacheScope"], "private", "{m}: {r}");
    }
    let d = c.request("server/discover", json!({})).await;
    let r = d.result();
    assert_eq!(r["resultType"], "complete", "{r}");
    assert!(
        r["supportedVersions"]
            .as_array()
            .unwrap()
            .contains(&json!(V)),
        "{r}"
    );
    assert!(r["capabilities"]["tools"].is_object(), "{r}");
    assert_eq!(
        r["_meta"]["io.modelcontextprotocol/serverInfo"]["name"], "fleetgate",
        "{r}"
    );
    assert!(r["ttlMs"].is_u64() && r["cacheScope"] == "private", "{r}");

    let call = c
        .request(
            "tools/call",
            json!({"name": echo, "arguments": {"text": "t"}}),
        )
        .await;
    let r = call.result();
    assert_eq!(r["resultType"], "complete", "{r}");
    assert_eq!(r["content"][0]["text"], "t", "{r}");
    assert!(
        r.get("ttlMs").is_none() && r.get("cacheScope").is_none(),
        "not cacheable: {r}"
    );

    let resources = c.request("resources/list", json!({})).await;
    let uri = resources.result()["resources"][0]["uri"]
        .as_str()
        .unwrap()
        .to_owned();
    let read = c.request("resources/read", json!({"uri": uri})).await;
    let r = read.result();
    assert_eq!(r["resultType"], "complete", "{r}");
    assert!(r["contents"].is_array(), "{r}");
    assert!(r["ttlMs"].is_u64() && r["cacheScope"].is_string(), "{r}");

    // The 2025 era gets exactly what it always got.
    let mut old = McpClient::new(fleet.url("/mcp"));
    old.initialize().await;
    for m in ["tools/list", "prompts/list", "resources/list"] {
        let r = old.request(m, json!({})).await.result().clone();
        for k in ["resultType", "ttlMs", "cacheScope"] {
            assert!(r.get(k).is_none(), "{m} (2025) has no {k}: {r}");
        }
    }
    let r = old.call_tool(&echo, json!({"text": "o"})).await;
    assert!(r.get("resultType").is_none(), "{r}");

    // An unknown tool or resource: -32602 in 2026-07-28 (SEP-2164), the
    // codes of earlier revisions for them.
    let unknown = [
        (
            "tools/call",
            json!({"name": "no-such-tool", "arguments": {}}),
            -32601,
        ),
        (
            "resources/read",
            json!({"uri": "test://no-such-resource"}),
            -32002,
        ),
    ];
    for (m, params, earlier) in unknown {
        let a = c.request(m, params.clone()).await;
        assert_eq!(
            (a.status, a.error_code()),
            (200, Some(-32602)),
            "{m}: {a:?}"
        );
        let a = old.request(m, params).await;
        assert_eq!(a.error_code(), Some(earlier), "{m} (2025): {a:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn both_eras_share_one_endpoint_across_workers() {
    let fleet = Fleet::builder().env("WORKERS", "2").start();
    let up = upstream("both").await;
    let gw = gateway::register(&fleet, "both", &up.url()).await;
    let echo = exposed(&fleet, &gw, "echo").await;
    let mut old = McpClient::fresh(fleet.url("/mcp"));
    assert_eq!(old.initialize().await.status, 200);
    let new = modern_client(&fleet);
    for i in 0..12 {
        let text = format!("m{i}");
        let a = new
            .request(
                "tools/call",
                json!({"name": echo, "arguments": {"text": text}}),
            )
            .await;
        assert_eq!(a.status, 200, "{a:?}");
        assert_eq!(a.result()["content"][0]["text"], text, "{a:?}");
        assert_eq!(a.result()["resultType"], "complete", "{a:?}");
        assert!(
            a.headers.get("mcp-session-id").is_none(),
            "no session: {a:?}"
        );
        let text = format!("l{i}");
        let r = old.call_tool(&echo, json!({"text": text})).await;
        assert_eq!(r["content"][0]["text"], text);
        assert!(r.get("resultType").is_none(), "{r}");
    }
}

/// Reads SSE events from `resp` until `pred` holds for one (its message);
/// every message read on the way is returned too.
async fn read_until(
    resp: &mut reqwest::Response,
    buf: &mut String,
    within: Duration,
    pred: impl Fn(&Value) -> bool,
) -> (Vec<Value>, Option<Value>) {
    let mut seen = Vec::new();
    let deadline = tokio::time::Instant::now() + within;
    loop {
        while let Some(end) = buf.find("\n\n") {
            let event: String = buf.drain(..end + 2).collect();
            let data: String = event
                .lines()
                .filter_map(|l| l.strip_prefix("data:"))
                .map(str::trim_start)
                .collect();
            if data.is_empty() {
                continue;
            }
            let m: Value = serde_json::from_str(&data).unwrap();
            if pred(&m) {
                return (seen, Some(m));
            }
            seen.push(m);
        }
        match tokio::time::timeout_at(deadline, resp.chunk()).await {
            Ok(Ok(Some(c))) => buf.push_str(std::str::from_utf8(&c).unwrap()),
            _ => return (seen, None),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn listen_streams_hear_of_list_changes() {
    let fleet = Fleet::builder().env("WORKERS", "1").start();
    let first = upstream("first").await;
    gateway::register(&fleet, "first", &first.url()).await;
    let mut resp = listen(
        &fleet.url("/mcp"),
        "sub-1",
        meta(),
        json!({"toolsListChanged": true, "resourceSubscriptions": ["test://static/resource"]}),
    )
    .await;
    assert!(resp.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/event-stream"));
    let mut buf = String::new();
    let (before, ack) = read_until(&mut resp, &mut buf, Duration::from_secs(5), |_| true).await;
    assert!(before.is_empty());
    let ack = ack.expect("the acknowledgment comes first");
    assert_eq!(
        ack["method"], "notifications/subscriptions/acknowledged",
        "{ack}"
    );
    assert_eq!(
        ack["params"]["_meta"]["io.modelcontextprotocol/subscriptionId"],
        "sub-1"
    );
    assert_eq!(
        ack["params"]["notifications"],
        json!({"toolsListChanged": true, "resourceSubscriptions": []}),
        "what is honoured: no gateway serves that URI: {ack}"
    );

    // A second upstream registered: the tools this scope lists change.
    let second = upstream("second").await;
    gateway::register(&fleet, "second", &second.url()).await;
    let (others, changed) = read_until(&mut resp, &mut buf, Duration::from_secs(10), |m| {
        m["method"] == "notifications/tools/list_changed"
    })
    .await;
    let changed = changed.expect("tools/list_changed on the listen stream");
    assert_eq!(
        changed["params"]["_meta"]["io.modelcontextprotocol/subscriptionId"],
        "sub-1"
    );
    // Only what was asked for: prompts and resources changed too, unasked.
    let (more, _) = read_until(&mut resp, &mut buf, Duration::from_secs(2), |_| false).await;
    for m in others.iter().chain(&more) {
        assert_ne!(m["method"], "notifications/prompts/list_changed", "{m}");
        assert_ne!(m["method"], "notifications/resources/list_changed", "{m}");
    }
}

/// Opens a `subscriptions/listen` stream on `url` with `_meta` and
/// `notifications` (200 asserted).
async fn listen(url: &str, id: &str, meta: Value, notifications: Value) -> reqwest::Response {
    let body = json!({"jsonrpc":"2.0","id": id,"method":"subscriptions/listen",
        "params":{"_meta": meta, "notifications": notifications}});
    let resp = fleetgate_tests::fresh_client()
        .post(url)
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
        .header("mcp-protocol-version", V)
        .header("mcp-method", "subscriptions/listen")
        .body(body.to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    resp
}

/// What an upstream announces reaches a listen stream as it happens: its
/// tool list really changing (the upstream's own listen stream, read by
/// fleetgate for the stream), and updates of the resources the stream
/// subscribed to, with the URI it knows and its subscription id.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn listen_streams_hear_what_upstreams_announce() {
    let fleet = Fleet::builder().env("WORKERS", "1").start();
    let up = upstream("announces").await;
    let gw = gateway::register(&fleet, "announces", &up.url()).await;
    let watched = "test://watched-resource";
    let mut resp = listen(
        &fleet.url("/mcp"),
        "sub-2",
        meta(),
        json!({"toolsListChanged": true, "resourceSubscriptions": [watched, "test://nobody"]}),
    )
    .await;
    let mut buf = String::new();
    let (_, ack) = read_until(&mut resp, &mut buf, Duration::from_secs(5), |_| true).await;
    let ack = ack.expect("the acknowledgment");
    assert_eq!(
        ack["params"]["notifications"],
        json!({"toolsListChanged": true, "resourceSubscriptions": [watched]}),
        "{ack}"
    );
    // fleetgate listens to the upstream for the stream.
    fleetgate_tests::eventually(
        Duration::from_secs(10),
        "subscriptions/listen opened upstream",
        || async { (up.stats().method("subscriptions/listen") >= 1).then_some(()) },
    )
    .await;
    let c = modern_client(&fleet);
    let notify = exposed(&fleet, &gw, "notify_resource_updated").await;
    let a = c
        .request(
            "tools/call",
            json!({"name": notify, "arguments": {"uri": watched}}),
        )
        .await;
    assert_eq!(a.result()["content"][0]["text"], "announced", "{a:?}");
    let (_, updated) = read_until(&mut resp, &mut buf, Duration::from_secs(10), |m| {
        m["method"] == "notifications/resources/updated"
    })
    .await;
    let updated = updated.expect("resources/updated on the listen stream");
    assert_eq!(updated["params"]["uri"], watched, "{updated}");
    assert_eq!(
        updated["params"]["_meta"]["io.modelcontextprotocol/subscriptionId"],
        "sub-2"
    );
    // The upstream's tool list changes (no registry write by anyone): the
    // stream hears of it once fleetgate lists the new tool.
    let trigger = exposed(&fleet, &gw, "test_trigger_tool_change").await;
    c.request("tools/call", json!({"name": trigger, "arguments": {}}))
        .await;
    let (_, changed) = read_until(&mut resp, &mut buf, Duration::from_secs(10), |m| {
        m["method"] == "notifications/tools/list_changed"
    })
    .await;
    assert!(changed.is_some(), "tools/list_changed on the listen stream");
    let tools = c.request("tools/list", json!({})).await;
    assert!(
        tools.result()["tools"]
            .as_array()
            .unwrap()
            .iter()
            .any(|t| t["name"].as_str().unwrap().ends_with("revealed")),
        "{tools:?}"
    );
    // Closing the stream ends what was opened upstream for it.
    drop(resp);
}

/// The tasks extension passes through: fleetgate offers it when a gateway
/// of the scope does, a task's id names its gateway, and `tasks/get` and
/// `tasks/cancel` reach the upstream running it from either worker.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tasks_pass_through_to_the_gateway_running_them() {
    let fleet = Fleet::builder().env("WORKERS", "2").start();
    let up = upstream("tasks").await;
    let gw = gateway::register(&fleet, "tasks", &up.url()).await;
    let slow = exposed(&fleet, &gw, "slow_compute").await;
    let c = modern_client(&fleet);
    // Both workers offer the extension, by the worker that answered.
    fleetgate_tests::on_every_worker(
        2,
        Duration::from_secs(10),
        "both workers offer the tasks extension",
        || async {
            let d = c.request("server/discover", json!({})).await;
            let offers = d.result()["capabilities"]["extensions"]["io.modelcontextprotocol/tasks"]
                .is_object();
            Some((fleetgate_tests::worker_of(&d.headers)?, offers))
        },
    )
    .await;
    let mut with_tasks = meta();
    with_tasks["io.modelcontextprotocol/clientCapabilities"] =
        json!({"extensions": {"io.modelcontextprotocol/tasks": {}}});
    let call = |seconds: u64| json!({"name": slow, "arguments": {"seconds": seconds, "label": "x"}, "_meta": with_tasks});
    let created = c.request("tools/call", call(1)).await;
    let r = created.result();
    assert_eq!(r["resultType"], "task", "{created:?}");
    assert_eq!(r["status"], "working", "{created:?}");
    let task = r["taskId"].as_str().unwrap().to_owned();
    assert!(
        task.starts_with(&format!("{}:", gw["id"].as_str().unwrap())),
        "{task}"
    );
    let get = json!({"taskId": task, "_meta": with_tasks});
    let done = fleetgate_tests::eventually(Duration::from_secs(10), "the task completed", || {
        let (c, get) = (&c, get.clone());
        async move {
            let a = c.request("tasks/get", get).await;
            (a.result()["status"] == "completed").then(|| a.result().clone())
        }
    })
    .await;
    assert_eq!(done["taskId"], task.as_str(), "{done}");
    assert_eq!(done["resultType"], "complete", "{done}");
    assert_eq!(done["result"]["content"][0]["text"], "computed x", "{done}");

    let long = c.request("tools/call", call(60)).await;
    let long_task = long.result()["taskId"].as_str().unwrap().to_owned();
    let cancel = json!({"taskId": long_task, "_meta": with_tasks});
    let a = c.request("tasks/cancel", cancel.clone()).await;
    assert_eq!(
        (a.status, a.result()["resultType"].clone()),
        (200, json!("complete")),
        "{a:?}"
    );
    let a = c.request("tasks/get", cancel).await;
    assert_eq!(a.result()["status"], "cancelled", "{a:?}");

    // A listen stream asking for a task hears of it as it settles, with the
    // id the client knows.
    let pushed = c.request("tools/call", call(2)).await;
    let pushed_task = pushed.result()["taskId"].as_str().unwrap().to_owned();
    let mut resp = listen(
        &fleet.url("/mcp"),
        "sub-t",
        with_tasks.clone(),
        json!({"taskIds": [pushed_task]}),
    )
    .await;
    let mut buf = String::new();
    let (_, ack) = read_until(&mut resp, &mut buf, Duration::from_secs(5), |_| true).await;
    let ack = ack.expect("the acknowledgment");
    assert_eq!(
        ack["params"]["notifications"]["taskIds"],
        json!([pushed_task]),
        "{ack}"
    );
    let (_, settled) = read_until(&mut resp, &mut buf, Duration::from_secs(10), |m| {
        m["method"] == "notifications/tasks"
    })
    .await;
    let settled = settled.expect("notifications/tasks on the listen stream");
    assert_eq!(
        settled["params"]["taskId"],
        pushed_task.as_str(),
        "{settled}"
    );
    assert_eq!(settled["params"]["status"], "completed", "{settled}");
    assert_eq!(
        settled["params"]["result"]["content"][0]["text"], "computed x",
        "{settled}"
    );
    assert_eq!(
        settled["params"]["_meta"]["io.modelcontextprotocol/subscriptionId"],
        "sub-t"
    );
    drop(resp);

    // Without the extension declared: -32021 naming it.
    let (status, a) = raw(
        &fleet.url("/mcp"),
        &[
            ("mcp-protocol-version", V),
            ("mcp-method", "subscriptions/listen"),
        ],
        json!({"jsonrpc":"2.0","id":9,"method":"subscriptions/listen",
            "params":{"_meta": meta(), "notifications": {"taskIds": [task]}}}),
    )
    .await;
    assert_eq!(
        (status, a["error"]["code"].clone()),
        (400, json!(-32021)),
        "{a}"
    );
    let a = c.request("tasks/get", json!({"taskId": task})).await;
    assert_eq!((a.status, a.error_code()), (400, Some(-32021)), "{a:?}");
    assert!(
        a.response()["error"]["data"]["requiredCapabilities"]["extensions"]
            ["io.modelcontextprotocol/tasks"]
            .is_object(),
        "{a:?}"
    );
    // A task id of no gateway of the scope: unknown.
    let a = c
        .request(
            "tasks/get",
            json!({"taskId": "nobody:task-1", "_meta": with_tasks}),
        )
        .await;
    assert_eq!(a.error_code(), Some(-32602), "{a:?}");
    // A client that did not declare the extension gets no task.
    let a = c
        .request(
            "tools/call",
            json!({"name": slow, "arguments": {"seconds": 0, "label": "now"}}),
        )
        .await;
    assert_eq!(a.result()["resultType"], "complete", "{a:?}");
    assert_eq!(a.result()["content"][0]["text"], "computed now", "{a:?}");
}

fn base64(s: &str) -> String {
    const B64: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in s.as_bytes().chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for (i, shift) in [18, 12, 6, 0].into_iter().enumerate() {
            if i <= chunk.len() {
                out.push(char::from(B64[((n >> shift) & 63) as usize]));
            } else {
                out.push('=');
            }
        }
    }
    out
}
