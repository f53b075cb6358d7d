//! Input across eras (MRTR): a 2026-07-28 client's call that a 2025-only
//! upstream asks for input mid-call gets `input_required` and its retry —
//! on whichever worker it lands — brings the answer to the waiting upstream
//! call, which runs once; a 2025 client calling what only the modern era of
//! a dual-era upstream offers gets that tool's input requests on its stream.
//! Two workers, a fresh connection per request, `REUSE_PORT` spreading them.
#![allow(clippy::unwrap_used)] // a failed unwrap is a failed test

use fleetgate_test_upstream::{RunningUpstream, Upstream};
use fleetgate_tests::fleet::Fleet;
use fleetgate_tests::gateway;
use fleetgate_tests::mcp::McpClient;
use fleetgate_tests::redis::RedisServer;
use serde_json::{json, Value};

const V: &str = "2026-07-28";

fn meta_with(capabilities: Value) -> Value {
    json!({
        "io.modelcontextprotocol/protocolVersion": V,
        "io.modelcontextprotocol/clientInfo": {"name": "mrtr-tests", "version": "0"},
        "io.modelcontextprotocol/clientCapabilities": capabilities,
    })
}

async fn fleet_with(up: &RunningUpstream, name: &str, env: &[(&str, &str)]) -> (Fleet, String) {
    let mut b = Fleet::builder()
        .env("WORKERS", "2")
        .env("REUSE_PORT", "true");
    for (k, v) in env {
        b = b.env(k, *v);
    }
    let fleet = b.start();
    fleet.listening().await;
    gateway::register(&fleet, name, &up.url()).await;
    let sid = gateway::server_with_everything(&fleet, name).await;
    let url = fleet.url(&format!("/servers/{sid}/mcp"));
    gateway::known_everywhere(&url, 2).await;
    (fleet, url)
}

fn worker(a: &fleetgate_tests::mcp::Answer) -> String {
    a.headers
        .get("x-fleetgate-worker")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("?")
        .to_owned()
}

/// `test_sampling` of a 2025-only upstream called by a 2026-07-28 client:
/// the call's params, with `extra` set.
fn sampling_call(extra: Value) -> Value {
    let mut p = json!({"name": "test_sampling", "arguments": {"prompt": "capital of France?"},
        "_meta": meta_with(json!({"sampling": {}}))});
    for (k, v) in extra.as_object().unwrap() {
        p[k] = v.clone();
    }
    p
}

/// `rounds` calls that the upstream asks for input, each answered through
/// `input_required` and a retry on a fresh connection; every call runs
/// upstream once, and a finished call's state is not honoured again.
/// Returns how many forwards over `transport` the retries took.
async fn parked_rounds(fleet: &Fleet, c: &McpClient, up: &RunningUpstream, transport: &str) -> u64 {
    let call = sampling_call;
    let counter = format!("fleetgate_forwards_{transport}_total");
    let before = fleet.metric_sums(2, &[counter.as_str()]).await[0];
    up.reset_stats();
    // Enough that some retry lands on the other worker (each does with
    // probability 1/2): all 16 missing it is a 1-in-65,536 chance.
    let rounds = 16;
    for i in 0..rounds {
        let first = c.request("tools/call", call(json!({}))).await;
        assert_eq!(first.status, 200, "{first:?}");
        let r = first.result();
        assert_eq!(r["resultType"], "input_required", "{first:?}");
        let asks = r["inputRequests"].as_object().unwrap();
        assert_eq!(asks.len(), 1, "{first:?}");
        let (key, asked) = asks.iter().next().unwrap();
        assert_eq!(asked["method"], "sampling/createMessage", "{first:?}");
        assert!(asked["params"]["messages"].is_array(), "{first:?}");
        let state = r["requestState"].as_str().unwrap().to_owned();
        let answer = json!({"role": "assistant", "model": "test",
            "content": {"type": "text", "text": format!("Paris {i}")}});
        let retry = c
            .request(
                "tools/call",
                call(json!({"inputResponses": {key.clone(): answer}, "requestState": state})),
            )
            .await;
        assert_eq!(retry.status, 200, "{retry:?}");
        assert_eq!(retry.result()["resultType"], "complete", "{retry:?}");
        assert_eq!(
            retry.result()["content"][0]["text"],
            format!("LLM response: Paris {i}"),
            "{retry:?}"
        );
        // The retry was answered by the worker holding the call.
        assert_eq!(worker(&first), worker(&retry), "{retry:?}");
        // The finished call's state is not honoured again (nothing reruns).
        let again = c
            .request(
                "tools/call",
                call(json!({"inputResponses": {key.clone(): {}}, "requestState": state})),
            )
            .await;
        assert_eq!(again.error_code(), Some(-32602), "{again:?}");
        assert!(
            again.error_message().contains("no longer waiting"),
            "{again:?}"
        );
    }
    // Each call ran upstream once, whichever worker took its retry.
    assert_eq!(up.stats().method("tools/call"), rounds, "{:?}", up.stats());
    fleet.metric_sums(2, &[counter.as_str()]).await[0] - before
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_2026_client_answers_a_2025_upstreams_mid_call_request_through_input_required() {
    let up = Upstream::builder()
        .name("asks")
        .stateless_draft(false)
        .spawn()
        .await
        .unwrap();
    let (fleet, url) = fleet_with(&up, "asks", &[]).await;
    let mut c = McpClient::fresh(url);
    c.protocol_version = V.into();
    let call = sampling_call;
    let forwarded = parked_rounds(&fleet, &c, &up, "unix").await;
    assert!(
        forwarded > 0,
        "some retry landed on the other worker and was forwarded"
    );

    // A state is honoured only on the call it was given for, and only as
    // fleetgate minted it.
    let first = c.request("tools/call", call(json!({}))).await;
    let state = first.result()["requestState"].as_str().unwrap().to_owned();
    let key = first.result()["inputRequests"]
        .as_object()
        .unwrap()
        .keys()
        .next()
        .unwrap()
        .clone();
    let other = c
        .request(
            "tools/call",
            json!({"name": "echo", "arguments": {"text": "x"}, "requestState": state,
                "inputResponses": {}, "_meta": meta_with(json!({"sampling": {}}))}),
        )
        .await;
    assert_eq!(other.error_code(), Some(-32602), "{other:?}");
    let forged = format!("{}x", &state[..state.len() - 1]);
    let tampered = c
        .request(
            "tools/call",
            call(json!({"inputResponses": {}, "requestState": forged})),
        )
        .await;
    assert_eq!(tampered.error_code(), Some(-32602), "{tampered:?}");
    // Without the answer it waits for, the client is asked again.
    let empty = c
        .request(
            "tools/call",
            call(json!({"inputResponses": {}, "requestState": state})),
        )
        .await;
    assert_eq!(empty.result()["resultType"], "input_required", "{empty:?}");
    assert!(
        empty.result()["inputRequests"][&key].is_object(),
        "{empty:?}"
    );
    let done = c
        .request(
            "tools/call",
            call(
                json!({"inputResponses": {key: {"role": "assistant", "model": "m",
                "content": {"type": "text", "text": "late"}}}, "requestState": state}),
            ),
        )
        .await;
    assert_eq!(
        done.result()["content"][0]["text"],
        "LLM response: late",
        "{done:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_2025_client_answers_a_modern_only_tools_input_requests_on_its_stream() {
    // Both eras: a 2025 session keeps its upstream session; what only the
    // modern era offers is called there, its input requests relayed.
    let up = Upstream::builder().name("both").spawn().await.unwrap();
    let (_fleet, url) = fleet_with(&up, "both", &[]).await;
    let mut c = McpClient::fresh(url);
    assert_eq!(c.initialize().await.status, 200);
    let (_, last) = c
        .call_answering(
            "test_input_required_result_elicitation",
            json!({}),
            "elicitation/create",
            json!({"action": "accept", "content": {"name": "Ada"}}),
        )
        .await;
    assert_eq!(
        last["result"]["content"][0]["text"], "Hello, Ada!",
        "{last}"
    );
    // A 2025-era tool of the same upstream still goes through the 2025 session.
    let r = c.call_tool("echo", json!({"text": "hi"})).await;
    assert!(
        r["content"][0]["text"].as_str().unwrap().contains("hi"),
        "{r}"
    );
    let stats = up.stats();
    assert_eq!(stats.sessions_initialized, 1, "{stats:?}");
}

/// The same with Redis (what hosts sharing it do): the retry reaches the
/// worker holding the call over its internal HTTP listener, or through
/// Redis pub/sub.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_parked_call_is_reached_over_every_redis_forward_transport() {
    let redis = RedisServer::start();
    let up = Upstream::builder()
        .name("asks")
        .stateless_draft(false)
        .spawn()
        .await
        .unwrap();
    for transport in ["http", "pubsub"] {
        let env = [
            ("REDIS_URL", redis.url()),
            ("AFFINITY_FORWARD", transport.to_owned()),
            ("FLEET_SECRET", "a-shared-fleet-secret-for-tests".to_owned()),
        ];
        let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let (fleet, url) = fleet_with(&up, "asks", &env).await;
        let mut c = McpClient::fresh(url);
        c.protocol_version = V.into();
        let forwarded = parked_rounds(&fleet, &c, &up, transport).await;
        assert!(
            forwarded > 0,
            "{transport}: some retry was forwarded to the holder"
        );
    }
}
