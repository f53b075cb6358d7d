//! Faults: whatever dies, a call runs at most once, and the client is told
//! at once. A request forwarded to
//! its session's owner, which is killed while serving it, is never run again
//! by anyone: the client is told its outcome is unknown, and the session goes
//! on with its next request. Over each forward transport.
#![allow(clippy::unwrap_used)] // a failed unwrap is a failed test

use fleetgate_test_upstream::{RunningUpstream, Upstream};
use fleetgate_tests::fleet::Fleet;
use fleetgate_tests::mcp::McpClient;
use fleetgate_tests::redis::RedisServer;
use fleetgate_tests::{fresh_client, gateway, proc};
use nix::sys::signal::Signal;
use serde_json::{json, Value};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Reads one HTTP/1.1 answer (head and a `Content-Length` body, or up to
/// the end of the stream): status, `x-fleetgate-worker`, body.
async fn read_answer(s: &mut TcpStream) -> (u16, String, Vec<u8>) {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        let n = s.read(&mut chunk).await.unwrap();
        assert!(n > 0, "the connection closed before an answer");
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&buf[..end]).to_lowercase();
    let status = head[9..12].parse().unwrap();
    let header = |name: &str| {
        head.lines()
            .find_map(|l| l.strip_prefix(&format!("{name}: ")).map(str::trim))
            .map(str::to_owned)
    };
    let worker = header("x-fleetgate-worker").unwrap_or_default();
    let mut body = buf[end..].to_vec();
    match header("content-length").and_then(|l| l.parse::<usize>().ok()) {
        Some(len) => {
            while body.len() < len {
                let n = s.read(&mut chunk).await.unwrap();
                assert!(n > 0, "the body broke off");
                body.extend_from_slice(&chunk[..n]);
            }
        }
        None => {
            s.read_to_end(&mut body).await.unwrap();
        }
    }
    (status, worker, body)
}

/// A connection that a worker other than `owner` accepted (learnt with a
/// `/health` on it).
async fn connection_not_on(addr: &str, owner: &str) -> TcpStream {
    for _ in 0..200 {
        let mut s = TcpStream::connect(addr).await.unwrap();
        s.write_all(b"GET /health HTTP/1.1\r\nhost: 127.0.0.1\r\n\r\n")
            .await
            .unwrap();
        let (status, worker, _) = read_answer(&mut s).await;
        assert_eq!(status, 200);
        if worker != owner {
            return s;
        }
    }
    panic!("no connection landed on a worker other than {owner}");
}

fn pid_of(worker: &str) -> u32 {
    worker.rsplit(':').next().unwrap().parse().unwrap()
}

async fn a_killed_owner_never_runs_a_call_twice(fleet: Fleet, workers: usize) {
    let up: RunningUpstream = Upstream::builder().name("once").spawn().await.unwrap();
    fleet.listening().await;
    gateway::register(&fleet, "once", &up.url()).await;
    let sid = gateway::server_with_everything(&fleet, "once").await;
    let path = format!("/servers/{sid}/mcp");
    gateway::known_everywhere(&fleet.url(&path), workers).await;
    let mut c = McpClient::new(fleet.url(&path));
    c.http = fresh_client();
    let init = c.initialize().await;
    let owner = init.headers["x-fleetgate-worker"]
        .to_str()
        .unwrap()
        .to_owned();
    c.call_tool("echo", json!({"text": "warm"})).await;
    let session = c.session.clone().unwrap();
    let mut conn = connection_not_on(&fleet.addr, &owner).await;
    let body = json!({"jsonrpc": "2.0", "id": 42, "method": "tools/call",
        "params": {"name": "slow", "arguments": {"ms": 3000}}})
    .to_string();
    let request = format!(
        "POST {path} HTTP/1.1\r\nhost: 127.0.0.1\r\ncontent-type: application/json\r\n\
         accept: application/json, text/event-stream\r\nmcp-protocol-version: 2025-06-18\r\n\
         mcp-session-id: {session}\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    );
    conn.write_all(request.as_bytes()).await.unwrap();
    let answer = tokio::spawn(async move { read_answer(&mut conn).await });
    // The owner is killed one second into the call.
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(up.stats().tool("slow"), 1, "the owner started the call");
    proc::signal(pid_of(&owner), Signal::SIGKILL);
    let killed = Instant::now();
    let (status, _, body) = answer.await.unwrap();
    let took = killed.elapsed();
    let msg: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(status, 503, "{msg}");
    assert_eq!(msg["id"], 42, "{msg}");
    assert_eq!(msg["error"]["code"], -32001, "{msg}");
    let text = msg["error"]["message"].as_str().unwrap();
    assert!(text.contains("tools/call"), "names the method: {text}");
    assert!(text.contains(&session[..12]), "names the session: {text}");
    assert!(text.contains("not run again"), "{text}");
    // Noticed at once: the connection ends (Unix, HTTP), or pub/sub's owner
    // check finds nobody listening within a tick or two (200 ms each).
    assert!(
        took < Duration::from_secs(1),
        "answered when the owner died: {took:?}"
    );
    // Nobody ran it again: long after the call would have ended, one call.
    tokio::time::sleep(Duration::from_millis(3500)).await;
    assert_eq!(up.stats().tool("slow"), 1, "the call ran once");
    // The session goes on with its next request.
    let r = c.call_tool("echo", json!({"text": "after"})).await;
    assert_eq!(r["content"][0]["text"], "after");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_whose_owner_dies_runs_once_embedded() {
    // REUSE_PORT: fresh connections spread over the workers by the kernel.
    let fleet = Fleet::builder()
        .env("WORKERS", "2")
        .env("REUSE_PORT", "true")
        .start();
    a_killed_owner_never_runs_a_call_twice(fleet, 2).await;
}

fn redis_fleet(redis: &RedisServer, mode: &str) -> Fleet {
    Fleet::builder()
        .env("WORKERS", "2")
        .env("REUSE_PORT", "true")
        .env("REDIS_URL", redis.url())
        .env("AFFINITY_FORWARD", mode)
        .env("FLEET_SECRET", "a-shared-fleet-secret-for-tests")
        .start()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_whose_owner_dies_runs_once_over_http() {
    let redis = RedisServer::start();
    a_killed_owner_never_runs_a_call_twice(redis_fleet(&redis, "http"), 2).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_whose_owner_dies_runs_once_over_pubsub() {
    let redis = RedisServer::start();
    a_killed_owner_never_runs_a_call_twice(redis_fleet(&redis, "pubsub"), 2).await;
}

/// Sends `head` (and `body`) on a fresh connection and reads the answer,
/// waiting at most `within`.
async fn raw_exchange(addr: &str, head: &str, body: &[u8], within: Duration) -> (u16, Vec<u8>) {
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(head.as_bytes()).await.unwrap();
    s.write_all(body).await.unwrap();
    let (status, _, body) = tokio::time::timeout(within, read_answer(&mut s))
        .await
        .expect("an answer in time");
    (status, body)
}

/// Bodies that never finish arriving, or could never fit, do not hold their
/// connection, and the worker keeps answering others at once; connections
/// beyond `MAX_CONNECTIONS` are told 503 and closed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_huge_and_too_many_connections_are_bounded() {
    let fleet = Fleet::builder()
        .env("WORKERS", "1")
        .env("AUTH_REQUIRED", "false")
        .env("REQUEST_BODY_TIMEOUT", "1")
        .env("MAX_CONNECTIONS", "40")
        .start();
    fleetgate_tests::eventually(Duration::from_secs(10), "the worker up", || async {
        let r = fresh_client().get(fleet.url("/health")).send().await.ok()?;
        r.status().is_success().then_some(())
    })
    .await;
    let addr = fleet.addr.clone();
    let post = |len: &str| {
        format!("POST /rpc HTTP/1.1\r\nhost: 127.0.0.1\r\ncontent-type: application/json\r\ncontent-length: {len}\r\n\r\n")
    };
    // Declared larger than MAX_REQUEST_BODY_BYTES: 413 before any of it is read.
    let started = Instant::now();
    let (status, _) = raw_exchange(&addr, &post("1000000000"), b"{", Duration::from_secs(5)).await;
    assert_eq!(status, 413);
    assert!(started.elapsed() < Duration::from_millis(500));
    // A body that stops arriving, by length or by chunk: 408 at its deadline.
    let (status, _) = raw_exchange(&addr, &post("1000"), b"{", Duration::from_secs(5)).await;
    assert_eq!(status, 408);
    let chunked = "POST /rpc HTTP/1.1\r\nhost: 127.0.0.1\r\ncontent-type: application/json\r\ntransfer-encoding: chunked\r\n\r\n";
    let (status, _) = raw_exchange(&addr, chunked, b"ffffffff\r\n{", Duration::from_secs(5)).await;
    assert!(status == 408 || status == 413, "{status}");
    // Twenty slow bodies held open: others are still answered at once.
    let mut slow = Vec::new();
    for _ in 0..20 {
        let mut s = TcpStream::connect(&addr).await.unwrap();
        s.write_all(post("1000").as_bytes()).await.unwrap();
        slow.push(s);
    }
    let started = Instant::now();
    let r = fresh_client()
        .get(fleet.url("/health"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert!(
        started.elapsed() < Duration::from_millis(100),
        "{:?}",
        started.elapsed()
    );
    // Over the cap: 503 at once, closed; under it again once they go.
    let mut idle = Vec::new();
    for _ in 0..30 {
        idle.push(TcpStream::connect(&addr).await.unwrap());
    }
    let (status, body) = raw_exchange(
        &addr,
        "GET /health HTTP/1.1\r\nhost: 127.0.0.1\r\n\r\n",
        b"",
        Duration::from_secs(2),
    )
    .await;
    assert_eq!(status, 503);
    let v: Value = serde_json::from_slice(&body).unwrap();
    assert!(
        v["detail"].as_str().unwrap().contains("MAX_CONNECTIONS"),
        "{v}"
    );
    drop(idle);
    drop(slow);
    fleetgate_tests::eventually(Duration::from_secs(5), "served again", || async {
        let r = fresh_client().get(fleet.url("/health")).send().await.ok()?;
        r.status().is_success().then_some(())
    })
    .await;
}
