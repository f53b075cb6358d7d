//! Resumability across an owner's death (`REDIS_URL`): every SSE event is
//! copied to Redis under ContextForge's `mcpgw:eventstore:` keys, and the
//! worker that takes a session over after `kill -9` replays what the client
//! missed (`Last-Event-ID`), then carries on with the old numbering.
#![allow(clippy::unwrap_used)] // a failed unwrap is a failed test

use fleetgate_test_upstream::{RunningUpstream, Upstream};
use fleetgate_tests::fleet::Fleet;
use fleetgate_tests::mcp::{read_events, sse_messages, McpClient};
use fleetgate_tests::redis::RedisServer;
use fleetgate_tests::{eventually, gateway, proc};
use nix::sys::signal::Signal;
use serde_json::{json, Value};
use std::time::Duration;

const SECRET: &str = "a-shared-fleet-secret-for-tests";

fn fleet(redis: &RedisServer) -> Fleet {
    Fleet::builder()
        .env("WORKERS", "2")
        .env("REDIS_URL", redis.url())
        .env("FLEET_SECRET", SECRET)
        .env("MCPGATEWAY_POOL_RPC_FORWARD_TIMEOUT", "10")
        .start()
}

/// An upstream behind a virtual server every worker knows; the server's MCP URL.
async fn with_upstream(fleet: &Fleet) -> (RunningUpstream, String) {
    let up = Upstream::builder()
        .stateless_draft(false)
        .name("res")
        .spawn()
        .await
        .unwrap();
    gateway::register(fleet, "res", &up.url()).await;
    let sid = gateway::server_with_everything(fleet, "res").await;
    let url = fleet.url(&format!("/servers/{sid}/mcp"));
    gateway::known_everywhere(&url, 2).await;
    (up, url)
}

fn worker(h: &reqwest::header::HeaderMap) -> String {
    h["x-fleetgate-worker"].to_str().unwrap().to_owned()
}

/// The ids of the events of an SSE body.
fn event_ids(text: &str) -> Vec<String> {
    text.split("\n\n")
        .filter_map(|e| e.lines().find_map(|l| l.strip_prefix("id:")))
        .map(|id| id.trim().to_owned())
        .collect()
}

/// `slow` with a progress token; `accept` decides whether the answer may stream.
fn slow_call(c: &McpClient, id: u64, accept: &str) -> reqwest::RequestBuilder {
    c.http
        .post(&c.url)
        .header("content-type", "application/json")
        .header("accept", accept)
        .header("mcp-protocol-version", &c.protocol_version)
        .header("mcp-session-id", c.session.as_deref().unwrap())
        .body(
            json!({"jsonrpc": "2.0", "id": id, "method": "tools/call", "params": {
                "name": "slow", "arguments": {"ms": 50}, "_meta": {"progressToken": id}}})
            .to_string(),
        )
}

/// A streamed call answered by `owner`; its SSE body.
async fn streamed_call(c: &McpClient, id: u64, owner: &str) -> String {
    let resp = slow_call(c, id, "application/json, text/event-stream")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(worker(resp.headers()), owner);
    resp.text().await.unwrap()
}

/// `HGET key field` on the test's Redis (`None`: missing).
fn hget(redis: &RedisServer, key: &str, field: &str) -> Option<String> {
    let raw = redis.command(&["HGET", key, field])?;
    let (_, rest) = raw.split_once("\r\n")?;
    (!raw.starts_with("$-1")).then(|| rest.trim_end_matches("\r\n").to_owned())
}

/// Kills the worker `owner` (`host:pid`) with SIGKILL and waits until it is gone.
async fn kill(owner: &str) {
    let pid: u32 = owner.rsplit(':').next().unwrap().parse().unwrap();
    proc::signal(pid, Signal::SIGKILL);
    eventually(Duration::from_secs(5), "the owner gone", || async {
        (!proc::alive(pid)).then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn post_streams_are_replayed_by_each_new_owner_after_a_kill() {
    let redis = RedisServer::start();
    let fleet = fleet(&redis);
    let (_up, url) = with_upstream(&fleet).await;
    let mut c = McpClient::fresh(url);
    let owner = worker(&c.initialize().await.headers);
    let session = c.session.clone().unwrap();

    // A call that streams: progress, progress, result, as p1_1..p1_3.
    let text = streamed_call(&c, 41, &owner).await;
    assert_eq!(event_ids(&text), ["p1_1", "p1_2", "p1_3"], "{text}");

    // Copied behind to Redis, under ContextForge's layout, the stream marked complete.
    let meta = format!("mcpgw:eventstore:{session}:p1:meta");
    eventually(
        Duration::from_secs(5),
        "the stream complete in Redis",
        || {
            let done = hget(&redis, &meta, "done");
            async move { (done.as_deref() == Some("1")).then_some(()) }
        },
    )
    .await;
    assert_eq!(hget(&redis, &meta, "next_seq").as_deref(), Some("3"));
    let streams = format!("mcpgw:eventstore:{session}:streams");
    assert_eq!(hget(&redis, &streams, "p1").as_deref(), Some("3"));
    let messages = format!("mcpgw:eventstore:{session}:p1:messages");
    let last: Value = serde_json::from_str(&hget(&redis, &messages, "p1_3").unwrap()).unwrap();
    assert_eq!(last["id"], 41, "{last}");
    let ttl = redis
        .command(&["TTL", &format!("mcpgw:eventstore:{session}:p1:events")])
        .unwrap();
    assert!(ttl.starts_with(':') && !ttl.starts_with(":-"), "{ttl}");

    kill(&owner).await;

    // The client lost everything after p1_1: another worker adopts the
    // session and replays the rest from Redis, then ends the stream.
    let again = tokio::time::timeout(Duration::from_secs(20), c.get_stream(Some("p1_1")).send())
        .await
        .expect("an answer")
        .unwrap();
    assert_eq!(again.status(), 200);
    let new_owner = worker(again.headers());
    assert_ne!(new_owner, owner);
    let text = tokio::time::timeout(Duration::from_secs(10), again.text())
        .await
        .expect("the replayed stream ends")
        .unwrap();
    assert_eq!(event_ids(&text), ["p1_2", "p1_3"], "{text}");
    let replayed = sse_messages(&text);
    assert_eq!(replayed[0]["method"], "notifications/progress", "{text}");
    assert_eq!(replayed[1]["id"], 41, "{text}");
    assert!(replayed[1]["result"].is_object(), "{text}");

    // The session goes on at the new owner; its next stream does not reuse p1.
    let text = streamed_call(&c, 42, &new_owner).await;
    assert_eq!(event_ids(&text), ["p2_1", "p2_2", "p2_3"], "{text}");
    eventually(Duration::from_secs(5), "p2 copied to Redis", || {
        let n = hget(&redis, &streams, "p2");
        async move { (n.as_deref() == Some("3")).then_some(()) }
    })
    .await;

    // Once more, the adoption made by a POST this time: the third owner
    // loaded the session's streams before its first stream, which is p3.
    eventually(Duration::from_secs(10), "a replacement worker", || async {
        (fleet.workers().len() == 2).then_some(())
    })
    .await;
    kill(&new_owner).await;
    // A ping first (it adopts the session): a call that a dying owner may
    // still have taken is not run again (at most once), a ping may be.
    let ping = c.request("ping", json!({})).await;
    assert_eq!(ping.status, 200, "{ping:?}");
    let resp = slow_call(&c, 43, "application/json, text/event-stream")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let third = worker(resp.headers());
    assert!(third != owner && third != new_owner, "{third}");
    let text = resp.text().await.unwrap();
    assert_eq!(event_ids(&text), ["p3_1", "p3_2", "p3_3"], "{text}");
    let again = c.get_stream(Some("p2_2")).send().await.unwrap();
    assert_eq!(again.status(), 200);
    assert_eq!(worker(again.headers()), third);
    let text = again.text().await.unwrap();
    assert_eq!(event_ids(&text), ["p2_3"], "{text}");
    assert_eq!(sse_messages(&text)[0]["id"], 42, "{text}");

    // DELETE drops every event key of the session.
    assert_eq!(c.delete().await, 200);
    let pattern = format!("mcpgw:eventstore:{session}:*");
    eventually(Duration::from_secs(5), "the event keys gone", || {
        let keys = redis.command(&["KEYS", &pattern]);
        async move { keys.is_some_and(|k| k.starts_with("*0")).then_some(()) }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_get_stream_goes_on_at_the_new_owner_after_a_kill() {
    let redis = RedisServer::start();
    let fleet = fleet(&redis);
    let (_up, url) = with_upstream(&fleet).await;
    let mut c = McpClient::fresh(url);
    let owner = worker(&c.initialize().await.headers);
    let session = c.session.clone().unwrap();

    let mut stream = c.get_stream(None).send().await.unwrap();
    assert_eq!(stream.status(), 200);
    // A JSON-only call: its progress goes to the GET stream (g_1, g_2).
    let a = slow_call(&c, 5, "application/json").send().await.unwrap();
    assert_eq!(a.status(), 200);
    assert!(a.json::<Value>().await.unwrap()["result"].is_object());
    let events = read_events(&mut stream, 2).await;
    assert_eq!(event_ids(&events.join("\n\n")), ["g_1", "g_2"]);
    let streams = format!("mcpgw:eventstore:{session}:streams");
    eventually(Duration::from_secs(5), "g copied to Redis", || {
        let n = hget(&redis, &streams, "g");
        async move { (n.as_deref() == Some("2")).then_some(()) }
    })
    .await;
    drop(stream);

    kill(&owner).await;

    // Resuming after g_1 at whichever worker: g_2 is replayed from Redis …
    let mut again = tokio::time::timeout(Duration::from_secs(20), c.get_stream(Some("g_1")).send())
        .await
        .expect("an answer")
        .unwrap();
    assert_eq!(again.status(), 200);
    let new_owner = worker(again.headers());
    assert_ne!(new_owner, owner);
    let replayed = read_events(&mut again, 1).await;
    assert_eq!(event_ids(&replayed[0]), ["g_2"]);
    assert_eq!(
        sse_messages(&replayed[0])[0]["method"],
        "notifications/progress"
    );
    // … and the stream stays live at the new owner, its ids after the old ones.
    let a = slow_call(&c, 6, "application/json").send().await.unwrap();
    assert_eq!(a.status(), 200);
    assert_eq!(worker(a.headers()), new_owner);
    let live = read_events(&mut again, 2).await;
    assert_eq!(event_ids(&live.join("\n\n")), ["g_3", "g_4"]);
    assert_eq!(sse_messages(&live[0])[0]["params"]["progressToken"], 6);
}
