//! What an upstream sends outside any request (on its standalone GET
//! stream) reaches the client: on the client's GET stream, else on a call's
//! stream, else held until one opens. Two workers and a fresh connection per
//! request, so the client's GET stream and its calls land on either worker.
#![allow(clippy::unwrap_used)] // a failed unwrap is a failed test

use std::time::Duration;

use fleetgate_test_upstream::{RunningUpstream, Upstream};
use fleetgate_tests::fleet::Fleet;
use fleetgate_tests::gateway;
use fleetgate_tests::mcp::{sse_messages, McpClient};
use fleetgate_tests::redis::RedisServer;
use serde_json::{json, Value};

const WATCHED: &str = "test://watched-resource";

async fn setup(name: &str) -> (RunningUpstream, Fleet, McpClient) {
    setup_on(name, Fleet::builder().env("WORKERS", "2").start(), 2).await
}

async fn setup_on(name: &str, fleet: Fleet, workers: usize) -> (RunningUpstream, Fleet, McpClient) {
    let up = Upstream::builder()
        .stateless_draft(false)
        .name(name)
        .spawn()
        .await
        .unwrap();
    gateway::register(&fleet, name, &up.url()).await;
    let sid = gateway::server_with_everything(&fleet, name).await;
    let url = fleet.url(&format!("/servers/{sid}/mcp"));
    gateway::known_everywhere(&url, workers).await;
    let mut c = McpClient::fresh(url);
    assert_eq!(c.initialize().await.status, 200);
    (up, fleet, c)
}

/// Reads `resp` until a message satisfying `want` arrives (10 s at most);
/// every message read so far.
async fn read_until(resp: &mut reqwest::Response, want: impl Fn(&Value) -> bool) -> Vec<Value> {
    let mut text = String::new();
    loop {
        let got = sse_messages(&text);
        if got.iter().any(&want) {
            return got;
        }
        let chunk = tokio::time::timeout(Duration::from_secs(10), resp.chunk())
            .await
            .unwrap_or_else(|_| panic!("no such message within 10 s; got {got:?}"))
            .expect("the stream broke")
            .expect("the stream ended early");
        text.push_str(std::str::from_utf8(&chunk).unwrap());
    }
}

fn updated(m: &Value) -> bool {
    m["method"] == "notifications/resources/updated" && m["params"]["uri"] == WATCHED
}

/// `tools/call` from a client that accepts only JSON (nothing can ride on its answer).
async fn call_json_only(c: &McpClient, name: &str, args: Value) -> fleetgate_tests::mcp::Answer {
    let resp = c
        .http
        .post(&c.url)
        .header("content-type", "application/json")
        .header("accept", "application/json")
        .header("mcp-protocol-version", &c.protocol_version)
        .header("mcp-session-id", c.session.as_deref().unwrap())
        .body(
            json!({"jsonrpc": "2.0", "id": 9, "method": "tools/call",
                "params": {"name": name, "arguments": args}})
            .to_string(),
        )
        .send()
        .await
        .unwrap();
    fleetgate_tests::mcp::read_answer(resp).await
}

async fn tool_text(c: &McpClient, name: &str, args: Value) -> String {
    let r = c.call_tool(name, args).await;
    r["content"][0]["text"].as_str().unwrap().to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resource_updates_reach_the_clients_get_stream() {
    let (up, fleet, c) = setup("standalone").await;
    updates_reach_the_get_stream(&up, &fleet, &c).await;
}

/// The same across Redis-forwarded workers (pub/sub for calls, HTTP for the
/// GET stream), three workers, a fresh connection per request.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resource_updates_reach_the_clients_get_stream_with_redis() {
    let redis = RedisServer::start();
    let fleet = Fleet::builder()
        .env("WORKERS", "3")
        .env("REDIS_URL", redis.url())
        .env("AFFINITY_FORWARD", "pubsub")
        .env("FLEET_SECRET", "a-shared-fleet-secret-for-tests")
        .start();
    let (up, fleet, c) = setup_on("standalone-redis", fleet, 3).await;
    updates_reach_the_get_stream(&up, &fleet, &c).await;
}

async fn updates_reach_the_get_stream(up: &RunningUpstream, _fleet: &Fleet, c: &McpClient) {
    let mut stream = c.get_stream(None).send().await.unwrap();
    assert_eq!(stream.status(), 200);
    let r = c
        .request("resources/subscribe", json!({"uri": WATCHED}))
        .await;
    assert_eq!(r.status, 200, "{r:?}");
    // The upstream sends on its own standalone stream: fleetgate opened it.
    assert_eq!(
        tool_text(c, "notify_resource_updated", json!({"uri": WATCHED})).await,
        "sent"
    );
    let got = read_until(&mut stream, updated).await;
    assert_eq!(got.iter().filter(|m| updated(m)).count(), 1, "{got:?}");
    // One upstream session (one standalone stream) for the session.
    assert_eq!(up.stats().live_sessions, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_wait_for_a_stream_then_take_the_first_that_opens() {
    let (_up, _fleet, c) = setup("held").await;
    let r = c
        .request("resources/subscribe", json!({"uri": WATCHED}))
        .await;
    assert_eq!(r.status, 200, "{r:?}");
    // No GET stream, and a JSON-only call: nothing can take the update now.
    let a = call_json_only(&c, "notify_resource_updated", json!({"uri": WATCHED})).await;
    assert_eq!(a.status, 200, "{a:?}");
    assert_eq!(a.result()["content"][0]["text"], "sent", "{a:?}");
    assert!(a.messages.iter().all(|m| !updated(m)), "{a:?}");
    // The GET stream, when it opens, starts with what was held.
    let mut stream = c.get_stream(None).send().await.unwrap();
    assert_eq!(stream.status(), 200);
    read_until(&mut stream, updated).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_get_stream_a_calls_stream_carries_them() {
    let (_up, _fleet, c) = setup("oncall").await;
    let r = c
        .request("resources/subscribe", json!({"uri": WATCHED}))
        .await;
    assert_eq!(r.status, 200, "{r:?}");
    // A slow call accepting SSE is in progress while the update is sent.
    let slow = {
        let (url, session) = (c.url.clone(), c.session.clone().unwrap());
        tokio::spawn(async move {
            let mut c = McpClient::fresh(url);
            c.session = Some(session);
            c.request(
                "tools/call",
                json!({"name": "slow", "arguments": {"ms": 1500}}),
            )
            .await
        })
    };
    tokio::time::sleep(Duration::from_millis(500)).await;
    let notify = call_json_only(&c, "notify_resource_updated", json!({"uri": WATCHED})).await;
    assert_eq!(notify.result()["content"][0]["text"], "sent", "{notify:?}");
    let a = slow.await.unwrap();
    assert!(a.content_type.starts_with("text/event-stream"), "{a:?}");
    assert!(a.messages.iter().any(updated), "{a:?}");
    assert!(a.result()["content"].is_array(), "{a:?}");
}

/// As the official SDK servers do, the upstream sends its sampling request on
/// its standalone stream, related to no request: the client gets it on its
/// GET stream (fleetgate's id), answers it, and the call completes with it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_requests_outside_calls_are_answered_by_the_client() {
    let up = Upstream::builder()
        .stateless_draft(false)
        .name("asks")
        .standalone_requests(true)
        .spawn()
        .await
        .unwrap();
    let fleet = Fleet::builder().env("WORKERS", "2").start();
    gateway::register(&fleet, "asks", &up.url()).await;
    let sid = gateway::server_with_everything(&fleet, "asks").await;
    let url = fleet.url(&format!("/servers/{sid}/mcp"));
    gateway::known_everywhere(&url, 2).await;
    let mut c = McpClient::fresh(url);
    assert_eq!(c.initialize().await.status, 200);
    let mut stream = c.get_stream(None).send().await.unwrap();
    assert_eq!(stream.status(), 200);
    let c = std::sync::Arc::new(c);
    let call = {
        let c = c.clone();
        tokio::spawn(async move {
            c.request(
                "tools/call",
                json!({"name": "test_sampling", "arguments": {"prompt": "hi"}}),
            )
            .await
        })
    };
    let asked = read_until(&mut stream, |m| m["method"] == "sampling/createMessage").await;
    let request = asked
        .iter()
        .find(|m| m["method"] == "sampling/createMessage")
        .unwrap();
    assert!(
        request["id"].as_str().unwrap().starts_with("fleetgate-"),
        "{request}"
    );
    let answer = c
        .post(json!({"jsonrpc": "2.0", "id": request["id"], "result": {
            "role": "assistant",
            "content": {"type": "text", "text": "from the client"},
            "model": "test",
        }}))
        .await;
    assert_eq!(answer.status, 202, "{answer:?}");
    let done = call.await.unwrap();
    assert_eq!(
        done.result()["content"][0]["text"],
        "LLM response: from the client",
        "{done:?}"
    );
}

/// An upstream whose tools change says so on its stream; fleetgate refreshes
/// its catalog and tells every session whose view changed, on every worker.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upstream_catalog_change_reaches_every_session() {
    let up = Upstream::builder()
        .stateless_draft(false)
        .name("grows")
        .spawn()
        .await
        .unwrap();
    let fleet = Fleet::builder().env("WORKERS", "2").start();
    gateway::register(&fleet, "grows", &up.url()).await;
    let url = fleet.url("/mcp");
    // Every worker knows the gateway, so no session hears of the
    // registration itself as a change: both workers list its tools, by the
    // worker that answered.
    let rpc = fleet.url("/rpc");
    fleetgate_tests::on_every_worker(
        2,
        Duration::from_secs(10),
        "every worker lists the gateway's tools",
        || async {
            let r = fleetgate_tests::fresh_client()
                .post(&rpc)
                .json(&json!({"jsonrpc": "2.0", "id": 1, "method": "tools/list"}))
                .send()
                .await
                .ok()?;
            let worker = fleetgate_tests::worker_of(r.headers())?;
            let listed: Value = r.json().await.ok()?;
            let knows = listed["result"]["tools"]
                .as_array()
                .is_some_and(|t| !t.is_empty());
            Some((worker, knows))
        },
    )
    .await;
    let mut sessions = Vec::new();
    for _ in 0..4 {
        let mut c = McpClient::fresh(url.clone());
        assert_eq!(c.initialize().await.status, 200);
        let stream = c.get_stream(None).send().await.unwrap();
        assert_eq!(stream.status(), 200);
        sessions.push((c, stream));
    }
    let names = |a: &fleetgate_tests::mcp::Answer| -> Vec<String> {
        a.result()["tools"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t["name"].as_str().unwrap().to_owned())
            .collect()
    };
    let before = sessions[0].0.request("tools/list", json!({})).await;
    let reveal = names(&before)
        .into_iter()
        .find(|n| n.ends_with("reveal_tool") || n.ends_with("reveal-tool"))
        .unwrap_or_else(|| panic!("reveal_tool is listed: {before:?}"));
    assert!(!names(&before).iter().any(|n| n.ends_with("revealed")));
    let r = sessions[0].0.call_tool(&reveal, json!({})).await;
    assert_eq!(r["content"][0]["text"], "revealed", "{r}");
    for (c, stream) in &mut sessions {
        read_until(stream, |m| {
            m["method"] == "notifications/tools/list_changed"
        })
        .await;
        let after = c.request("tools/list", json!({})).await;
        let revealed = names(&after)
            .into_iter()
            .find(|n| n.ends_with("revealed"))
            .unwrap_or_else(|| panic!("the new tool is listed: {after:?}"));
        let r = c.call_tool(&revealed, json!({})).await;
        assert_eq!(r["content"][0]["text"], "revealed", "{r}");
    }
}

/// What the client set up through its session is the upstream's too, and is
/// undone with it: the logging level reaches the upstream (and the log
/// messages it then sends outside calls arrive), and ending the session
/// unsubscribes upstream before its upstream session is deleted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logging_level_and_subscriptions_follow_the_session() {
    let (up, _fleet, c) = setup("follows").await;
    let mut stream = c.get_stream(None).send().await.unwrap();
    assert_eq!(stream.status(), 200);
    let r = c
        .request("resources/subscribe", json!({"uri": WATCHED}))
        .await;
    assert_eq!(r.status, 200, "{r:?}");
    let r = c
        .request("logging/setLevel", json!({"level": "info"}))
        .await;
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(up.stats().method("logging/setLevel"), 1);
    assert_eq!(
        tool_text(&c, "notify_later", json!({"delay_ms": 50})).await,
        "scheduled"
    );
    let got = read_until(&mut stream, |m| {
        m["method"] == "notifications/message" && m["params"]["data"] == "notify_later"
    })
    .await;
    read_until(&mut stream, updated).await;
    assert!(got.iter().all(|m| m.get("id").is_none()), "{got:?}");
    // A level above info: the upstream sends no more info messages.
    let r = c
        .request("logging/setLevel", json!({"level": "error"}))
        .await;
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(up.stats().method("logging/setLevel"), 2);
    // (Discovery at registration opened and deleted a session of its own.)
    let deleted = up.stats().sessions_deleted;
    assert_eq!(c.delete().await, 200);
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    loop {
        let s = up.stats();
        if s.method("resources/unsubscribe") == 1 && s.sessions_deleted == deleted + 1 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "unsubscribed, then deleted: {s:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// An upstream that ends its standalone stream gets it opened again: what it
/// sends afterwards still reaches the client.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_ended_upstream_stream_is_opened_again() {
    let (up, _fleet, c) = setup("reopens").await;
    let mut stream = c.get_stream(None).send().await.unwrap();
    assert_eq!(stream.status(), 200);
    let r = c
        .request("resources/subscribe", json!({"uri": WATCHED}))
        .await;
    assert_eq!(r.status, 200, "{r:?}");
    let gets = up.stats().get_requests;
    assert_eq!(tool_text(&c, "end_stream", json!({})).await, "ended");
    fleetgate_tests::eventually(
        Duration::from_secs(5),
        "the stream opened again",
        || async { (up.stats().get_requests > gets).then_some(()) },
    )
    .await;
    fleetgate_tests::eventually(Duration::from_secs(5), "an update sent on it", || async {
        let sent = tool_text(&c, "notify_resource_updated", json!({"uri": WATCHED})).await;
        (sent == "sent").then_some(())
    })
    .await;
    read_until(&mut stream, updated).await;
}

/// What an upstream sends while its standalone stream is down is not lost:
/// fleetgate resumes the stream with `Last-Event-ID` and the upstream
/// replays it (as an SDK server with an event store does).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upstream_stream_is_resumed_with_last_event_id() {
    let (up, _fleet, c) = setup("resumes").await;
    let mut stream = c.get_stream(None).send().await.unwrap();
    assert_eq!(stream.status(), 200);
    let r = c
        .request("resources/subscribe", json!({"uri": WATCHED}))
        .await;
    assert_eq!(r.status, 200, "{r:?}");
    // One event on the stream, so there is an id to resume after.
    assert_eq!(
        tool_text(&c, "notify_resource_updated", json!({"uri": WATCHED})).await,
        "sent"
    );
    read_until(&mut stream, updated).await;
    // The stream ends; the next update is sent while it is down (kept by the
    // upstream, not live), then fleetgate resumes it.
    assert_eq!(tool_text(&c, "end_stream", json!({})).await, "ended");
    let missed = json!({"uri": "test://watched-resource"});
    assert_eq!(
        tool_text(&c, "notify_resource_updated", missed).await,
        "subscribed, but no standalone GET stream is open"
    );
    let got = read_until(&mut stream, updated).await;
    assert!(!got.is_empty());
    let _ = up;
}
