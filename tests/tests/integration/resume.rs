//! Resumability of fleetgate's own SSE streams: every event has an id; a
//! client that lost a stream GETs with `Last-Event-ID` and gets the rest, even
//! from another worker than the session's owner.
#![allow(clippy::unwrap_used)] // a failed unwrap is a failed test

use fleetgate_test_upstream::Upstream;
use fleetgate_tests::fleet::Fleet;
use fleetgate_tests::gateway;
use fleetgate_tests::mcp::{read_events, sse_messages, McpClient};
use serde_json::{json, Value};
use std::time::Duration;

fn event_id(event: &str) -> String {
    event
        .lines()
        .find_map(|l| l.strip_prefix("id:"))
        .expect("the event has an id")
        .trim()
        .to_owned()
}

/// Calls `slow` with a progress token, reads the first event, disconnects, and
/// resumes with GET + `Last-Event-ID`: the rest arrives, the response last.
/// The worker that answered the GET.
async fn call_disconnect_resume(c: &McpClient, tool: &str) -> (String, String) {
    let resp = c
        .http
        .post(&c.url)
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
        .header("mcp-protocol-version", &c.protocol_version)
        .header("mcp-session-id", c.session.as_deref().unwrap())
        .body(
            json!({"jsonrpc": "2.0", "id": 77, "method": "tools/call", "params": {
                "name": tool, "arguments": {"ms": 1500}, "_meta": {"progressToken": "t1"}}})
            .to_string(),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert!(resp.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/event-stream"));
    let owner = resp.headers()["x-fleetgate-worker"]
        .to_str()
        .unwrap()
        .to_owned();
    let mut resp = resp;
    let first = read_events(&mut resp, 1).await.remove(0);
    let id = event_id(&first);
    assert_eq!(
        sse_messages(&first)[0]["method"],
        "notifications/progress",
        "{first}"
    );
    drop(resp); // the client goes away mid-call
    let again = c.get_stream(Some(&id)).send().await.unwrap();
    assert_eq!(again.status(), 200);
    let worker = again.headers()["x-fleetgate-worker"]
        .to_str()
        .unwrap()
        .to_owned();
    assert_eq!(worker, owner, "the owner replays");
    let text = tokio::time::timeout(Duration::from_secs(20), again.text())
        .await
        .expect("the resumed stream ends after the response")
        .unwrap();
    let messages = sse_messages(&text);
    let last: &Value = messages.last().unwrap();
    assert_eq!(last["id"], 77, "{text}");
    assert!(last["result"].is_object(), "{text}");
    assert!(
        messages[..messages.len() - 1]
            .iter()
            .all(|m| m["method"] == "notifications/progress"),
        "{text}"
    );
    // Every replayed event has an id on the same stream, after the one given.
    let (stream, seq) = id.rsplit_once('_').unwrap();
    let seq: u64 = seq.parse().unwrap();
    for ev in text.split("\n\n").filter(|e| e.contains("data:")) {
        let eid = event_id(ev);
        let (s, n) = eid.rsplit_once('_').unwrap();
        assert_eq!(s, stream, "{text}");
        assert!(n.parse::<u64>().unwrap() > seq, "{text}");
    }
    (owner, worker)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_dropped_post_stream_is_resumed_with_last_event_id() {
    let up = Upstream::builder()
        .stateless_draft(false)
        .name("res")
        .spawn()
        .await
        .unwrap();
    let fleet = Fleet::builder().env("WORKERS", "1").start();
    gateway::register(&fleet, "res", &up.url()).await;
    let mut c = McpClient::fresh(fleet.url("/mcp"));
    assert_eq!(c.initialize().await.status, 200);
    call_disconnect_resume(&c, "res-slow").await;
    // The session goes on.
    let r = c.call_tool("res-echo", json!({"text": "after"})).await;
    assert_eq!(r["content"][0]["text"], "after");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_owner_replays_whichever_worker_the_get_lands_on() {
    let up = Upstream::builder()
        .stateless_draft(false)
        .name("res")
        .spawn()
        .await
        .unwrap();
    let fleet = Fleet::builder().env("WORKERS", "3").start();
    gateway::register(&fleet, "res", &up.url()).await;
    let sid = gateway::server_with_everything(&fleet, "res").await;
    let url = fleet.url(&format!("/servers/{sid}/mcp"));
    gateway::known_everywhere(&url, 3).await;
    let mut c = McpClient::fresh(url.clone());
    assert_eq!(c.initialize().await.status, 200);
    for _ in 0..3 {
        call_disconnect_resume(&c, "slow").await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_get_stream_has_ids_and_resumes() {
    let up = Upstream::builder()
        .stateless_draft(false)
        .name("res")
        .spawn()
        .await
        .unwrap();
    let fleet = Fleet::builder().env("WORKERS", "1").start();
    gateway::register(&fleet, "res", &up.url()).await;
    let mut c = McpClient::fresh(fleet.url("/mcp"));
    assert_eq!(c.initialize().await.status, 200);
    let mut stream = c.get_stream(None).send().await.unwrap();
    assert_eq!(stream.status(), 200);
    // A JSON-only POST: its progress goes to the GET stream.
    let a = c
        .http
        .post(&c.url)
        .header("content-type", "application/json")
        .header("accept", "application/json")
        .header("mcp-protocol-version", &c.protocol_version)
        .header("mcp-session-id", c.session.as_deref().unwrap())
        .body(
            json!({"jsonrpc": "2.0", "id": 5, "method": "tools/call", "params": {
                "name": "res-slow", "arguments": {"ms": 50}, "_meta": {"progressToken": 9}}})
            .to_string(),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(a.status(), 200);
    let answer: Value = a.json().await.unwrap();
    assert!(answer["result"].is_object(), "{answer}");
    let events = read_events(&mut stream, 2).await;
    assert_eq!(event_id(&events[0]), "g_1");
    assert_eq!(event_id(&events[1]), "g_2");
    drop(stream);
    // Resuming after g_1 replays g_2, and the stream stays open (live).
    let mut again = c.get_stream(Some("g_1")).send().await.unwrap();
    assert_eq!(again.status(), 200);
    let replayed = read_events(&mut again, 1).await;
    assert_eq!(event_id(&replayed[0]), "g_2");
    assert_eq!(
        sse_messages(&replayed[0])[0]["method"],
        "notifications/progress"
    );
    drop(again);
    // An id a session never sent: a fresh GET stream (not an error).
    let mut other = McpClient::fresh(fleet.url("/mcp"));
    assert_eq!(other.initialize().await.status, 200);
    let fresh = other.get_stream(Some("p999_1")).send().await.unwrap();
    assert_eq!(fresh.status(), 200);
}
