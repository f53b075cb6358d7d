//! Session affinity without Redis (embedded mode): whichever worker a request
//! lands on, its session's owner does the work.
#![allow(clippy::unwrap_used)] // a failed unwrap is a failed test

use fleetgate_test_upstream::Upstream;
use fleetgate_tests::fleet::Fleet;
use fleetgate_tests::mcp::McpClient;
use fleetgate_tests::{eventually, fresh_client, gateway, proc};
use nix::sys::signal::Signal;
use serde_json::json;
use std::collections::BTreeSet;
use std::time::Duration;

/// Starts a fleet whose every worker knows the registered gateway.
async fn fleet_with_upstream(
    workers: &str,
) -> (Fleet, fleetgate_test_upstream::RunningUpstream, String) {
    let up = Upstream::builder()
        .stateless_draft(false)
        .name("aff")
        .spawn()
        .await
        .unwrap();
    let fleet = Fleet::builder().env("WORKERS", workers).start();
    gateway::register(&fleet, "aff", &up.url()).await;
    let sid = gateway::server_with_everything(&fleet, "aff").await;
    // Every worker polls the registry: wait until all of them know the server.
    let n: usize = workers.parse().unwrap();
    let url = fleet.url(&format!("/servers/{sid}/mcp"));
    gateway::known_everywhere(&url, n).await;
    (fleet, up, sid)
}

/// Sums the named counters over all `n` workers' `/metrics`.
async fn metric_sums(fleet: &Fleet, n: usize, names: &[&str; 2]) -> (u64, u64) {
    let sums = fleet.metric_sums(n, names).await;
    (sums[0], sums[1])
}

fn fresh_mcp(url: String) -> McpClient {
    let mut c = McpClient::new(url);
    c.http = fresh_client();
    c
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_request_of_a_session_is_served_by_its_owner() {
    let (fleet, up, sid) = fleet_with_upstream("4").await;
    let url = fleet.url(&format!("/servers/{sid}/mcp"));
    up.reset_stats();
    let mut c = fresh_mcp(url.clone());
    let init = c.initialize().await;
    let owner = init.headers["x-fleetgate-worker"]
        .to_str()
        .unwrap()
        .to_owned();
    let mut answered = BTreeSet::new();
    for i in 0..60 {
        let a = c
            .request(
                "tools/call",
                json!({"name": "echo", "arguments": {"text": format!("m{i}")}}),
            )
            .await;
        assert_eq!(a.status, 200, "{a:?}");
        assert_eq!(a.result()["content"][0]["text"], format!("m{i}"), "{a:?}");
        answered.insert(a.headers["x-fleetgate-worker"].to_str().unwrap().to_owned());
    }
    assert_eq!(
        answered,
        BTreeSet::from([owner.clone()]),
        "only the owner answers"
    );
    // /metrics agrees: other workers forwarded, the owner served.
    // Keep the session busy until some requests landed on other workers (how
    // the kernel spreads fresh connections is not ours to decide).
    let mut extra = 0;
    let (forwards, served) = eventually(Duration::from_secs(20), "forwarded requests", || {
        let (c, owner, fleet) = (&c, &owner, &fleet);
        extra += 1;
        let round = extra;
        async move {
            for i in 0..10 {
                let a = c
                    .request(
                        "tools/call",
                        json!({"name": "echo", "arguments": {"text": format!("r{round}-{i}")}}),
                    )
                    .await;
                assert_eq!(
                    a.headers["x-fleetgate-worker"].to_str().unwrap(),
                    owner.as_str()
                );
            }
            let sums = metric_sums(
                fleet,
                4,
                &[
                    "fleetgate_forwards_unix_total",
                    "fleetgate_forwarded_served_total",
                ],
            )
            .await;
            (sums.0 >= 5).then_some(sums)
        }
    })
    .await;
    assert_eq!(forwards, served, "every forward was served by the owner");
    assert_eq!(
        up.stats().sessions_initialized,
        1,
        "one upstream session for one downstream session"
    );
    // Streams and DELETE reach the owner too.
    let a = c
        .request("tools/call", json!({"name": "test_tool_with_progress", "arguments": {}, "_meta": {"progressToken": 1}}))
        .await;
    assert!(a.content_type.starts_with("text/event-stream"), "{a:?}");
    assert_eq!(c.delete().await, 200);
    assert_eq!(c.request("ping", json!({})).await.status, 404);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn conformance_style_traffic_works_with_many_workers() {
    let (fleet, _up, sid) = fleet_with_upstream("3").await;
    let url = fleet.url(&format!("/servers/{sid}/mcp"));
    let mut clients = Vec::new();
    for _ in 0..6 {
        let mut c = fresh_mcp(url.clone());
        assert_eq!(c.initialize().await.status, 200);
        clients.push(c);
    }
    for (i, c) in clients.iter().enumerate() {
        for _ in 0..5 {
            let r = c.call_tool("add", json!({"a": i, "b": 1})).await;
            assert_eq!(r["content"][0]["text"], (i + 1).to_string());
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_killed_owner_is_replaced_and_its_session_goes_on() {
    let (fleet, up, sid) = fleet_with_upstream("2").await;
    let url = fleet.url(&format!("/servers/{sid}/mcp"));
    let mut c = fresh_mcp(url);
    let init = c.initialize().await;
    let owner: u32 = init.headers["x-fleetgate-worker"]
        .to_str()
        .unwrap()
        .rsplit(':')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    c.call_tool("echo", json!({"text": "before"})).await;
    let before = up.stats().sessions_initialized;
    proc::signal(owner, Signal::SIGKILL);
    eventually(Duration::from_secs(5), "the owner gone", || async {
        (!proc::alive(owner)).then_some(())
    })
    .await;
    // The session goes on: no "Session not found", no 30 s hang. (A `ping`
    // first: a call a dying owner may still have taken is not run again,
    // and its answer says so; a ping may run again.)
    let started = std::time::Instant::now();
    let p = c.request("ping", json!({})).await;
    assert_eq!(p.status, 200, "{p:?}");
    let r = c.call_tool("echo", json!({"text": "after"})).await;
    assert_eq!(r["content"][0]["text"], "after");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "took {:?}",
        started.elapsed()
    );
    assert_eq!(
        up.stats().sessions_initialized,
        before + 1,
        "a new upstream session, opened transparently"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_or_foreign_session_ids_are_unknown() {
    let (fleet, _up, sid) = fleet_with_upstream("2").await;
    let url = fleet.url(&format!("/servers/{sid}/mcp"));
    let mut c = fresh_mcp(url);
    c.initialize().await;
    let real = c.session.clone().unwrap();
    // Same id on another scope: unknown there.
    let mut other = fresh_mcp(fleet.url("/mcp"));
    other.session = Some(real.clone());
    assert_eq!(other.request("tools/list", json!({})).await.status, 404);
    // Tampered slot or MAC: unknown.
    let mut parts: Vec<&str> = real.splitn(3, '_').collect();
    let flipped = if parts[0] == "0" { "1" } else { "0" };
    parts[0] = flipped;
    let mut forged = fresh_mcp(fleet.url(&format!("/servers/{sid}/mcp")));
    forged.session = Some(parts.join("_"));
    for _ in 0..10 {
        assert_eq!(forged.request("tools/list", json!({})).await.status, 404);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forwarding_is_authenticated_not_trusted() {
    let (fleet, _up, _sid) = fleet_with_upstream("2").await;
    // Not on the public port at all, whatever headers say.
    let forged = "{\"method\":\"POST\"}\n{}";
    let r = reqwest::Client::new()
        .post(fleet.url("/__fleetgate/forward"))
        .header("x-forwarded-internally", "true")
        .header("x-fleetgate-signature", "00")
        .body(forged)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    // On a worker's own socket, a sealed forward with a forged signature is refused.
    let sock = std::env::temp_dir()
        .join(format!("fleetgate-{}", fleet.pid))
        .join("worker-0.sock");
    let answer = tokio::task::spawn_blocking(move || {
        use std::io::{Read, Write};
        let mut s = std::os::unix::net::UnixStream::connect(&sock).unwrap();
        write!(
            s,
            "POST /__fleetgate/forward HTTP/1.1\r\nhost: x\r\nx-fleetgate-signature: {}\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{forged}",
            "ab".repeat(32),
            forged.len()
        )
        .unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).unwrap();
        out
    })
    .await
    .unwrap();
    assert!(answer.starts_with("HTTP/1.1 401"), "{answer}");
    assert!(answer.contains("bad signature"), "{answer}");
}

/// A forwarded request may be as large as one the owner would take directly
/// (`MAX_REQUEST_BODY_BYTES`, 4 MiB by default): the owner's internal route
/// reads the sealed frame up to that limit plus room for the envelope. (It
/// used to stop at axum's default of 2 MiB: a 3 MiB request that landed on a
/// non-owner was refused with 413.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_large_request_is_forwarded_whole() {
    let (fleet, _up, sid) = fleet_with_upstream("2").await;
    let mut c = fresh_mcp(fleet.url(&format!("/servers/{sid}/mcp")));
    let owner = c.initialize().await.headers["x-fleetgate-worker"]
        .to_str()
        .unwrap()
        .to_owned();
    let big = "x".repeat(3 << 20);
    // Fresh connections, until some have landed on the other worker.
    eventually(Duration::from_secs(30), "large forwards", || async {
        for _ in 0..8 {
            let a = c.request("ping", json!({"padding": big})).await;
            assert_eq!(a.status, 200, "{:?}", a.response());
            assert_eq!(a.headers["x-fleetgate-worker"], owner.as_str());
        }
        let names = [
            "fleetgate_forwards_unix_total",
            "fleetgate_forwarded_served_total",
        ];
        let (forwards, served) = metric_sums(&fleet, 2, &names).await;
        (forwards >= 2 && served >= 2).then_some(())
    })
    .await;
}
