//! Session affinity with Redis (`REDIS_URL`): ownership in Redis under
//! ContextForge's key names, forwarding over HTTP or pub/sub, dead-owner
//! reclaim, Redis outages, and two hosts sharing one Redis and one database.
#![allow(clippy::unwrap_used)] // a failed unwrap is a failed test

use fleetgate_test_upstream::{RunningUpstream, Upstream};
use fleetgate_tests::fleet::Fleet;
use fleetgate_tests::mcp::{Answer, McpClient};
use fleetgate_tests::redis::RedisServer;
use fleetgate_tests::{eventually, fresh_client, gateway, proc};
use nix::sys::signal::Signal;
use serde_json::{json, Value};
use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

const SECRET: &str = "a-shared-fleet-secret-for-tests";

fn fleet(redis: &RedisServer, workers: usize, mode: &str) -> Fleet {
    fleet_at(&redis.url(), workers, mode)
}

fn fleet_at(redis_url: &str, workers: usize, mode: &str) -> Fleet {
    Fleet::builder()
        .env("WORKERS", workers.to_string())
        .env("REDIS_URL", redis_url)
        .env("AFFINITY_FORWARD", mode)
        .env("FLEET_SECRET", SECRET)
        .env("MCPGATEWAY_POOL_RPC_FORWARD_TIMEOUT", "10")
        .start()
}

async fn with_upstream(fleet: &Fleet, n: usize) -> (RunningUpstream, String) {
    let up = Upstream::builder()
        .stateless_draft(false)
        .name("aff")
        .spawn()
        .await
        .unwrap();
    gateway::register(fleet, "aff", &up.url()).await;
    let sid = gateway::server_with_everything(fleet, "aff").await;
    gateway::known_everywhere(&fleet.url(&format!("/servers/{sid}/mcp")), n).await;
    (up, sid)
}

fn fresh_mcp(url: String) -> McpClient {
    let mut c = McpClient::new(url);
    c.http = fresh_client();
    c
}

/// `tools/call echo {text}` on `c`.
async fn echo(c: &McpClient, text: &str) -> Answer {
    c.request(
        "tools/call",
        json!({"name": "echo", "arguments": {"text": text}}),
    )
    .await
}

fn worker_of(a: &Answer) -> String {
    a.headers["x-fleetgate-worker"].to_str().unwrap().to_owned()
}

/// 40 echo calls through fresh connections, none of them hanging: the owner
/// serves those it gets; every other worker refuses at once with -32001, as
/// `refused` checks further. Some of each must happen.
async fn owner_serves_others_refuse(
    c: &McpClient,
    owner: &str,
    tag: &str,
    refused: impl Fn(&Answer),
) {
    let (mut served, mut refusals) = (0, 0);
    for i in 0..40 {
        let text = format!("{tag}{i}");
        let started = Instant::now();
        let a = echo(c, &text).await;
        let took = started.elapsed();
        assert!(took < Duration::from_millis(1500), "no hang: {took:?}");
        if worker_of(&a) == owner {
            assert_eq!(a.status, 200, "{a:?}");
            assert_eq!(a.result()["content"][0]["text"], text, "{a:?}");
            served += 1;
        } else {
            assert_eq!(a.error_code(), Some(-32001), "{a:?}");
            refused(&a);
            refusals += 1;
        }
    }
    assert!(
        served > 0 && refusals > 0,
        "served {served}, refused {refusals}"
    );
}

/// Opens `c`'s session with `initialize` alone (no `notifications/initialized`,
/// which may land on a worker that cannot forward it); returns its owner.
async fn initialize_only(c: &mut McpClient) -> String {
    let init = c
        .request(
            "initialize",
            json!({"protocolVersion": "2025-06-18", "capabilities": {},
                   "clientInfo": {"name": "t", "version": "0"}}),
        )
        .await;
    assert_eq!(init.status, 200, "{init:?}");
    c.session = Some(init.headers["mcp-session-id"].to_str().unwrap().to_owned());
    worker_of(&init)
}

/// Every live worker's `/metrics`, by worker id (scraped through fresh connections).
async fn scrape(fleet: &Fleet, n: usize) -> BTreeMap<String, String> {
    let client = fresh_client();
    let mut per_worker = BTreeMap::new();
    for _ in 0..(n * 40) {
        let text = client
            .get(fleet.url("/metrics"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        let worker = text
            .lines()
            .find_map(|l| l.split("worker=\"").nth(1))
            .unwrap()
            .split('"')
            .next()
            .unwrap()
            .to_owned();
        per_worker.insert(worker, text);
        if per_worker.len() == n {
            break;
        }
    }
    per_worker
}

fn sum(per_worker: &BTreeMap<String, String>, name: &str) -> u64 {
    per_worker
        .values()
        .flat_map(|t| t.lines())
        .filter(|l| l.starts_with(&format!("fleetgate_{name}_total{{")))
        .map(|l| l.rsplit(' ').next().unwrap().parse::<u64>().unwrap())
        .sum()
}

async fn owner_serves_everything(mode: &str) {
    let redis = RedisServer::start();
    owner_serves_everything_at(&redis, &redis.url(), mode).await;
}

async fn owner_serves_everything_at(redis: &RedisServer, redis_url: &str, mode: &str) {
    let fleet = fleet_at(redis_url, 4, mode);
    let (up, sid) = with_upstream(&fleet, 4).await;
    let url = fleet.url(&format!("/servers/{sid}/mcp"));
    up.reset_stats();
    let mut c = fresh_mcp(url.clone());
    let init = c.initialize().await;
    assert_eq!(init.status, 200, "{init:?}");
    let owner = worker_of(&init);
    let session = c.session.clone().unwrap();
    // Redis has the owner and the principal, under ContextForge's names.
    assert_eq!(
        redis.get(&format!("mcpgw:pool_owner:{session}")).as_deref(),
        Some(owner.as_str())
    );
    assert!(redis.get(&format!("mcp:session_owner:{session}")).is_some());
    let hb: Value = serde_json::from_str(
        &redis
            .get(&format!("mcpgw:worker_heartbeat:{owner}"))
            .unwrap(),
    )
    .unwrap();
    assert!(
        hb["addr"].as_str().unwrap().starts_with("127.0.0.1:"),
        "{hb}"
    );

    let mut answered = BTreeSet::new();
    for i in 0..40 {
        let a = echo(&c, &format!("m{i}")).await;
        assert_eq!(a.status, 200, "{a:?}");
        assert_eq!(a.result()["content"][0]["text"], format!("m{i}"), "{a:?}");
        answered.insert(worker_of(&a));
    }
    assert_eq!(
        answered,
        BTreeSet::from([owner.clone()]),
        "only the owner answers"
    );
    // A streamed answer (buffered over pub/sub) and a GET stream reach the owner too.
    for _ in 0..4 {
        let a = c
            .request(
                "tools/call",
                json!({"name": "test_tool_with_progress", "arguments": {}, "_meta": {"progressToken": 1}}),
            )
            .await;
        assert_eq!(a.status, 200, "{a:?}");
        assert!(a.content_type.starts_with("text/event-stream"), "{a:?}");
        assert!(a.messages.len() >= 2, "{a:?}");
        assert_eq!(worker_of(&a), owner);
    }
    assert_eq!(
        up.stats().sessions_initialized,
        1,
        "one upstream session for one downstream session"
    );
    // Enough traffic landed on non-owners (the kernel spreads connections
    // unevenly under load): more pings until ten were forwarded.
    let counter = if mode == "pubsub" {
        "forwards_pubsub"
    } else {
        "forwards_http"
    };
    let mut m = scrape(&fleet, 4).await;
    for _ in 0..10 {
        if sum(&m, counter) >= 10 {
            break;
        }
        for _ in 0..20 {
            let a = c.request("ping", json!({})).await;
            assert_eq!((a.status, worker_of(&a)), (200, owner.clone()), "{a:?}");
        }
        m = scrape(&fleet, 4).await;
    }
    assert_eq!(m.len(), 4, "scraped every worker");
    let forwards = sum(&m, counter);
    assert!(forwards >= 10, "requests were forwarded: {forwards}");
    assert_eq!(
        sum(&m, "forwards_unix"),
        0,
        "Redis decides, not the slot hint"
    );
    assert_eq!(
        forwards,
        sum(&m, "forwarded_served"),
        "every forward was served"
    );
    assert_eq!(sum(&m, "reclaims"), 0);

    // DELETE (through whichever worker) ends it and releases it in Redis.
    assert_eq!(c.delete().await, 200);
    assert_eq!(redis.get(&format!("mcpgw:pool_owner:{session}")), None);
    for _ in 0..8 {
        let a = c.request("ping", json!({})).await;
        assert_eq!(a.status, 404, "{a:?}");
        assert_eq!(a.error_code(), Some(-32002), "{a:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_request_reaches_its_owner_over_http() {
    owner_serves_everything("http").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_request_reaches_its_owner_over_pubsub() {
    owner_serves_everything("pubsub").await;
}

/// `REDIS_URL=unix://…`, a Redis on the gateway's own host: ownership,
/// heartbeats and pub/sub forwards all go over its Unix socket.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_request_reaches_its_owner_through_a_unix_socket_redis() {
    let redis = RedisServer::start();
    owner_serves_everything_at(&redis, &redis.unix_url(), "pubsub").await;
}

/// A Redis whose ACL denies a command pub/sub forwarding needs (as some
/// managed services do) cannot carry the forwards: a forward fails at once
/// with -32001 naming the refusal and what to change, the log says it once
/// per worker that met it (not once per forward), and requests the owner
/// gets are served as ever.
async fn a_refused_command_is_named(denied: &str, logged_by: usize) {
    let redis = RedisServer::start();
    assert_eq!(
        redis
            .command(&["ACL", "SETUSER", "default", &format!("-{denied}")])
            .as_deref(),
        Some("+OK\r\n")
    );
    let fleet = fleet(&redis, 2, "pubsub");
    let (_up, sid) = with_upstream(&fleet, 2).await;
    let mut c = fresh_mcp(fleet.url(&format!("/servers/{sid}/mcp")));
    let owner = initialize_only(&mut c).await;
    owner_serves_others_refuse(&c, &owner, "c", |a| {
        let msg = a.error_message();
        assert!(
            msg.contains(&denied.to_uppercase()) && msg.contains("AFFINITY_FORWARD=http"),
            "names the refusal and what to change: {msg}"
        );
    })
    .await;
    let log = eventually(Duration::from_secs(5), "the reason logged", || async {
        let log = fleet.stderr();
        (log.matches("AFFINITY_FORWARD=http").count() >= logged_by).then_some(log)
    })
    .await;
    assert!(log.contains("NOPERM"), "{log}");
    assert_eq!(
        log.matches("AFFINITY_FORWARD=http").count(),
        logged_by,
        "{log}"
    );
    // Redis is not reported down: it answers.
    assert!(!log.contains("Redis unavailable"), "{log}");
}

/// Only the worker that forwards meets the refusal.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_redis_that_refuses_publish_is_named_not_hung_on() {
    a_refused_command_is_named("publish", 1).await;
}

/// Every worker subscribes, and each meets the refusal.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_redis_that_refuses_subscribe_is_named_not_hung_on() {
    a_refused_command_is_named("subscribe", 2).await;
}

/// Seeds 001 and 002 through both transports: a forwarded request keeps its
/// server scope, and the owner's errors reach the client as the owner made them.
async fn forwarded_scope_and_errors(mode: &str) {
    let redis = RedisServer::start();
    let fleet = fleet(&redis, 3, mode);
    let a = Upstream::builder()
        .stateless_draft(false)
        .name("a")
        .tools_prefix("a_")
        .unwrap()
        .spawn()
        .await
        .unwrap();
    let b = Upstream::builder()
        .stateless_draft(false)
        .name("b")
        .tools_prefix("b_")
        .unwrap()
        .spawn()
        .await
        .unwrap();
    gateway::register(&fleet, "a", &a.url()).await;
    gateway::register(&fleet, "b", &b.url()).await;
    let tools = gateway::list(&fleet, "/tools?limit=0").await;
    let of = |p: &str| -> Vec<String> {
        tools
            .iter()
            .filter(|t| t["originalName"].as_str().unwrap_or("").starts_with(p))
            .map(|t| t["id"].as_str().unwrap().to_owned())
            .collect()
    };
    let (a_ids, b_ids) = (of("a_"), of("b_"));
    assert!(!a_ids.is_empty() && !b_ids.is_empty());
    let server_a = gateway::create_server(&fleet, "A", &a_ids, &[], &[]).await;
    let _server_b = gateway::create_server(&fleet, "B", &b_ids, &[], &[]).await;
    let url = fleet.url(&format!("/servers/{server_a}/mcp"));
    gateway::known_everywhere(&url, 3).await;

    let mut c = fresh_mcp(url.clone());
    let owner = worker_of(&c.initialize().await);
    let before = sum(&scrape(&fleet, 3).await, "forwarded_served");
    let mut rounds = 0;
    loop {
        for _ in 0..15 {
            let l = c.request("tools/list", json!({})).await;
            assert_eq!(l.status, 200, "{l:?}");
            assert_eq!(worker_of(&l), owner);
            let names: BTreeSet<String> = l.result()["tools"]
                .as_array()
                .unwrap()
                .iter()
                .map(|t| t["name"].as_str().unwrap().to_owned())
                .collect();
            assert_eq!(names.len(), a_ids.len(), "{names:?}");
            assert!(
                names.iter().all(|n| n.starts_with("a_")),
                "B leaked: {names:?}"
            );
            // Seed 002: an owner-side JSON-RPC error passes with the request's id.
            let e = c
                .post(json!({"jsonrpc": "2.0", "id": 4242, "method": "tools/call",
                              "params": {"name": "b_echo", "arguments": {"text": "x"}}}))
                .await;
            assert_eq!(worker_of(&e), owner);
            assert_eq!(e.error_code(), Some(-32601), "{e:?}");
            assert_eq!(e.response()["id"], 4242, "{e:?}");
        }
        let after = sum(&scrape(&fleet, 3).await, "forwarded_served");
        rounds += 1;
        if after - before >= 10 {
            break;
        }
        assert!(
            rounds < 10,
            "hardly anything was forwarded: {}",
            after - before
        );
    }

    // Seed 002: "session not found" from the owner is relayed as 404 -32002.
    // Redis names a live owner for an id that owner cannot have.
    let fake = "0_00000000000000000000000000000000_000000000000000000000000";
    redis.command(&["SET", &format!("mcpgw:pool_owner:{fake}"), &owner]);
    let mut f = fresh_mcp(url);
    f.session = Some(fake.to_owned());
    let mut relayed = 0;
    for _ in 0..12 {
        let r = f
            .post(json!({"jsonrpc": "2.0", "id": 77, "method": "tools/list"}))
            .await;
        assert_eq!(r.status, 404, "{r:?}");
        assert_eq!(r.error_code(), Some(-32002), "{r:?}");
        assert_eq!(r.response()["id"], 77, "{r:?}");
        assert_eq!(worker_of(&r), owner, "the owner produced it");
        relayed += 1;
    }
    assert_eq!(relayed, 12);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn forwarded_requests_keep_scope_and_errors_over_http() {
    forwarded_scope_and_errors("http").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn forwarded_requests_keep_scope_and_errors_over_pubsub() {
    forwarded_scope_and_errors("pubsub").await;
}

async fn killed_owner(mode: &str) {
    let redis = RedisServer::start();
    let fleet = fleet(&redis, 3, mode);
    let (up, sid) = with_upstream(&fleet, 3).await;
    let mut c = fresh_mcp(fleet.url(&format!("/servers/{sid}/mcp")));
    let owner = worker_of(&c.initialize().await);
    let session = c.session.clone().unwrap();
    c.call_tool("echo", json!({"text": "before"})).await;
    let before = up.stats().sessions_initialized;
    let pid: u32 = owner.rsplit(':').next().unwrap().parse().unwrap();
    proc::signal(pid, Signal::SIGKILL);
    eventually(Duration::from_secs(5), "the owner gone", || async {
        (!proc::alive(pid)).then_some(())
    })
    .await;
    // The very next request succeeds, quickly: reclaimed, adopted, no 30 s
    // hang. (A `ping`: a call that a dying owner may still have taken is
    // not run again, and its answer would say so; a ping may run again.)
    let started = Instant::now();
    let a = c.request("ping", json!({})).await;
    let took = started.elapsed();
    assert_eq!(a.status, 200, "{a:?}");
    let a = echo(&c, "after").await;
    assert_eq!(a.result()["content"][0]["text"], "after", "{a:?}");
    // Noticed at once (HTTP: refused; pub/sub: the request reaches no
    // subscriber), not when its heartbeat expires (2 s).
    assert!(took < Duration::from_millis(1000), "took {took:?}");
    let new_owner = worker_of(&a);
    assert_ne!(new_owner, owner);
    assert_eq!(
        redis.get(&format!("mcpgw:pool_owner:{session}")).as_deref(),
        Some(new_owner.as_str()),
        "Redis names the new owner"
    );
    assert_eq!(up.stats().sessions_initialized, before + 1);
    // And it stays there.
    for _ in 0..10 {
        let a = c.request("ping", json!({})).await;
        assert_eq!(a.status, 200, "{a:?}");
        assert_eq!(worker_of(&a), new_owner);
    }
    let reclaims = eventually(Duration::from_secs(10), "the reclaim counted", || async {
        let n = sum(&scrape(&fleet, 3).await, "reclaims");
        (n >= 1).then_some(n)
    })
    .await;
    assert!(reclaims >= 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_killed_owner_is_reclaimed_over_http() {
    killed_owner("http").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_killed_owner_is_reclaimed_over_pubsub() {
    killed_owner("pubsub").await;
}

/// How often Redis ran `command` (`INFO commandstats`; a subcommand as
/// `pubsub|numsub`).
fn command_calls(redis: &RedisServer, command: &str) -> u64 {
    let info = redis.command(&["INFO", "commandstats"]).unwrap();
    let prefix = format!("cmdstat_{command}:calls=");
    info.lines()
        .find_map(|l| l.strip_prefix(&prefix))
        .map_or(0, |rest| rest.split(',').next().unwrap().parse().unwrap())
}

/// Pub/sub forwards waiting for one owner share its liveness check: 16 slow
/// calls in flight for 1.2 s cost one `PUBSUB NUMSUB` per 200 ms, not one
/// per forward per 200 ms (which would be dozens).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn waiting_pubsub_forwards_share_their_owner_check() {
    let redis = RedisServer::start();
    let fleet = fleet(&redis, 2, "pubsub");
    let (_up, sid) = with_upstream(&fleet, 2).await;
    let mut c = fresh_mcp(fleet.url(&format!("/servers/{sid}/mcp")));
    let owner = initialize_only(&mut c).await;
    let forwards = || async { sum(&scrape(&fleet, 2).await, "forwards_pubsub") };
    // Rounds of 16 calls on fresh connections, until at least 4 were
    // forwarded (a shared socket may hand one worker most connections).
    let (mut forwarded, mut checks, mut ticks) = (0, 0, 0);
    for _ in 0..6 {
        let (checks_before, forwards_before) =
            (command_calls(&redis, "pubsub|numsub"), forwards().await);
        let started = Instant::now();
        let calls = (0..16).map(|_| {
            c.request(
                "tools/call",
                json!({"name": "slow", "arguments": {"ms": 1200}}),
            )
        });
        for a in futures_util::future::join_all(calls).await {
            assert_eq!(a.status, 200, "{a:?}");
            assert_eq!(worker_of(&a), owner);
        }
        // One owner: at most one check per 200 ms tick while calls waited.
        ticks += started.elapsed().as_millis() as u64 / 200 + 1;
        forwarded += forwards().await - forwards_before;
        checks += command_calls(&redis, "pubsub|numsub") - checks_before;
        if forwarded >= 4 {
            break;
        }
    }
    assert!(forwarded >= 4, "only {forwarded} calls were forwarded");
    assert!(
        (1..=ticks).contains(&checks),
        "{checks} owner checks for {forwarded} forwards ({ticks} ticks)"
    );
}

/// `n` clients of `c`'s session, each holding one keep-alive connection that
/// worker `pid` accepted.
async fn clients_on(fleet: &Fleet, c: &McpClient, pid: u32, n: usize) -> Vec<McpClient> {
    let mut on = Vec::new();
    for _ in 0..400 {
        if on.len() == n {
            return on;
        }
        if let Some((http, p)) = fleetgate_tests::security::pinned(fleet).await {
            if p == pid {
                let mut m = McpClient::new(c.url.clone());
                m.http = http;
                m.session = c.session.clone();
                on.push(m);
            }
        }
    }
    panic!(
        "only {} of {n} connections landed on worker {pid}",
        on.len()
    );
}

/// A Redis that hangs (SIGSTOP) while forwards are being published: the
/// write of large `PUBLISH`es blocks until the command deadline cuts the
/// forward off halfway. Once Redis goes on (SIGCONT), forwards work again at
/// once: no later command is swallowed as the rest of a cut-off one's
/// payload (which would leave its forward waiting out the 10 s timeout).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_publish_cut_off_halfway_does_not_garble_the_next() {
    let redis = RedisServer::start();
    let fleet = fleet(&redis, 2, "pubsub");
    let (_up, sid) = with_upstream(&fleet, 2).await;
    let mut c = fresh_mcp(fleet.url(&format!("/servers/{sid}/mcp")));
    let owner = initialize_only(&mut c).await;
    let owner_pid = fleetgate_tests::security::worker_pid(&owner).unwrap();
    let other = *fleet.workers().iter().find(|p| **p != owner_pid).unwrap();
    let far = clients_on(&fleet, &c, other, 6).await;
    // The other worker learns the owner (remembered for a second) ...
    let a = echo(&far[0], "warm").await;
    assert_eq!((a.status, worker_of(&a)), (200, owner.clone()), "{a:?}");
    // ... then Redis hangs, and six 3 MiB forwards pile up in its publishing
    // connection: more than the socket buffers hold, so the write blocks
    // and is cut off at the 800 ms command deadline (-32001 at once).
    let pid = redis.pid();
    proc::signal(pid, Signal::SIGSTOP);
    let big = "x".repeat(3 << 20);
    let mut pending: futures_util::stream::FuturesUnordered<_> =
        far.iter().map(|f| echo(f, &big)).collect();
    let first = futures_util::StreamExt::next(&mut pending).await.unwrap();
    // Redis goes on as soon as the first forward is cut off: well before
    // the owner's heartbeat (2 s) could expire.
    proc::signal(pid, Signal::SIGCONT);
    assert_eq!(first.error_code(), Some(-32001), "{first:?}");
    while let Some(a) = futures_util::StreamExt::next(&mut pending).await {
        assert!(a.status == 200 || a.error_code() == Some(-32001), "{a:?}");
    }
    // Forwards work again, at once.
    let forwarded = || async { sum(&scrape(&fleet, 2).await, "forwards_pubsub") };
    let before = forwarded().await;
    eventually(
        Duration::from_secs(10),
        "forwards after Redis went on",
        || async {
            for (i, f) in far.iter().enumerate() {
                let started = Instant::now();
                let a = echo(f, &format!("after{i}")).await;
                if a.status != 200 || started.elapsed() > Duration::from_secs(2) {
                    return None;
                }
                assert_eq!(worker_of(&a), owner, "{a:?}");
                assert_eq!(a.result()["content"][0]["text"], format!("after{i}"));
            }
            Some(())
        },
    )
    .await;
    assert!(forwarded().await >= before + 6, "they were forwarded");
}

/// A Redis that freezes while a forwarded call waits for its answer (which
/// would come back through it): the client is told within about a second
/// that the outcome is unknown (-32001), not after the forward timeout (10 s
/// here), and the call ran at most once.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_frozen_redis_fails_a_waiting_pubsub_forward_within_seconds() {
    let redis = RedisServer::start();
    let fleet = fleet(&redis, 2, "pubsub");
    let (up, sid) = with_upstream(&fleet, 2).await;
    let mut c = fresh_mcp(fleet.url(&format!("/servers/{sid}/mcp")));
    let owner = initialize_only(&mut c).await;
    let owner_pid = fleetgate_tests::security::worker_pid(&owner).unwrap();
    let other = *fleet.workers().iter().find(|p| **p != owner_pid).unwrap();
    let far = clients_on(&fleet, &c, other, 1).await;
    let a = echo(&far[0], "warm").await;
    assert_eq!((a.status, worker_of(&a)), (200, owner.clone()), "{a:?}");
    up.reset_stats();
    let pid = redis.pid();
    let started = Instant::now();
    let freeze = tokio::spawn(async move {
        // Once the call has been delivered to the owner.
        tokio::time::sleep(Duration::from_millis(300)).await;
        proc::signal(pid, Signal::SIGSTOP);
    });
    let a = far[0]
        .request(
            "tools/call",
            json!({"name": "slow", "arguments": {"ms": 2000}}),
        )
        .await;
    let took = started.elapsed();
    freeze.await.unwrap();
    proc::signal(pid, Signal::SIGCONT);
    assert_eq!(a.error_code(), Some(-32001), "{a:?}");
    assert!(took < Duration::from_secs(4), "told after {took:?}");
    assert!(up.stats().method("tools/call") <= 1, "{:?}", up.stats());
}

async fn redis_down(mode: &str) {
    let mut redis = RedisServer::start();
    // Forwards give up after 10 s (UPSTREAM_TIMEOUT + 5): a pub/sub forward
    // published while Redis comes back can wait that long for its answer.
    // REUSE_PORT: the kernel spreads fresh connections over both workers
    // (on one shared socket, one worker may take all forty).
    let fleet = Fleet::builder()
        .env("WORKERS", "2")
        .env("REUSE_PORT", "true")
        .env("REDIS_URL", redis.url())
        .env("AFFINITY_FORWARD", mode)
        .env("FLEET_SECRET", SECRET)
        .env("UPSTREAM_TIMEOUT", "5")
        .env("MCPGATEWAY_POOL_RPC_FORWARD_TIMEOUT", "10")
        .start();
    fleet.listening().await;
    let (_up, sid) = with_upstream(&fleet, 2).await;
    let url = fleet.url(&format!("/servers/{sid}/mcp"));
    let mut c = fresh_mcp(url.clone());
    let owner = worker_of(&c.initialize().await);
    c.call_tool("echo", json!({"text": "up"})).await;

    redis.kill();
    owner_serves_others_refuse(&c, &owner, "d", |a| {
        assert!(a.error_message().contains("Redis unavailable"), "{a:?}");
        assert!(a.response()["id"].is_u64(), "the request's id: {a:?}");
    })
    .await;
    // A call that streams (progress, then its result) still works at the owner;
    // the copies of its events that cannot reach Redis are counted as lost.
    let mut streamed = false;
    for i in 0..40 {
        let a = c
            .request(
                "tools/call",
                json!({"name": "slow", "arguments": {"ms": 20}, "_meta": {"progressToken": i}}),
            )
            .await;
        if worker_of(&a) == owner {
            assert_eq!(a.status, 200, "{a:?}");
            assert!(a.result()["content"].is_array(), "{a:?}");
            streamed = true;
            break;
        }
    }
    assert!(streamed, "no streamed call reached the owner");
    let dropped = eventually(Duration::from_secs(10), "lost copies counted", || async {
        let n = sum(&scrape(&fleet, 2).await, "event_copies_dropped");
        (n >= 1).then_some(n)
    })
    .await;
    assert!(dropped >= 1);
    // Stateless JSON-RPC still works; /ready says why it is not ready.
    let rpc: Value = fresh_client()
        .post(fleet.url("/rpc"))
        .json(&json!({"jsonrpc": "2.0", "id": 1, "method": "tools/list"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(rpc["result"]["tools"].is_array(), "{rpc}");
    let r = fresh_client()
        .get(fleet.url("/ready"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 503);
    let body: Value = r.json().await.unwrap();
    assert!(
        body["checks"]["redis"]
            .as_str()
            .unwrap()
            .starts_with("unavailable"),
        "{body}"
    );

    // A new session can still start (its owner records it once Redis is back).
    // (Its `notifications/initialized` may land on a worker that cannot tell.)
    let mut c2 = fresh_mcp(url.clone());
    let owner2 = initialize_only(&mut c2).await;

    // Redis comes back (empty): the owners claim their sessions again, by themselves.
    redis.restart();
    eventually(Duration::from_secs(15), "recovery", || async {
        for _ in 0..10 {
            let a = c.request("ping", json!({})).await;
            if a.status != 200 || worker_of(&a) != owner {
                return None;
            }
        }
        Some(())
    })
    .await;
    eventually(
        Duration::from_secs(15),
        "the new session everywhere",
        || async {
            for _ in 0..10 {
                let a = c2.request("ping", json!({})).await;
                if a.status != 200 || worker_of(&a) != owner2 {
                    return None;
                }
            }
            Some(())
        },
    )
    .await;
    eventually(Duration::from_secs(10), "every worker ready", || async {
        let client = fresh_client();
        for _ in 0..10 {
            let r = client.get(fleet.url("/ready")).send().await.ok()?;
            if r.status() != 200 {
                return None;
            }
        }
        Some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn redis_down_serves_what_is_local_and_recovers_over_http() {
    redis_down("http").await;
}

// The pub/sub subscription is a connection of its own: it too must notice
// Redis going away and come back with it.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn redis_down_serves_what_is_local_and_recovers_over_pubsub() {
    redis_down("pubsub").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_hosts_share_one_redis_and_one_database() {
    if fleetgate_store::testing::pg_skip_requested() {
        eprintln!("FLEETGATE_TEST_PG=skip: skipped");
        return;
    }
    let pg = fleetgate_store::testing::PgCluster::start().unwrap();
    let db = pg.fresh_database().unwrap();
    let redis = RedisServer::start();
    let host = |ip: &str| {
        Fleet::builder()
            .env("HOST", ip)
            .env("WORKERS", "2")
            .env("REDIS_URL", redis.url())
            .env("FLEET_SECRET", SECRET)
            .env("DATABASE_URL", db.clone())
            .start()
    };
    let a = host("127.0.0.2");
    let b = host("127.0.0.3");
    let up = Upstream::builder()
        .stateless_draft(false)
        .name("aff")
        .spawn()
        .await
        .unwrap();
    gateway::register(&a, "aff", &up.url()).await;
    let sid = gateway::server_with_everything(&a, "aff").await;
    let path = format!("/servers/{sid}/mcp");
    gateway::known_everywhere(&a.url(&path), 2).await;
    gateway::known_everywhere(&b.url(&path), 2).await;
    up.reset_stats();

    let mut c = fresh_mcp(a.url(&path));
    let owner = worker_of(&c.initialize().await);
    let hb: Value = serde_json::from_str(
        &redis
            .get(&format!("mcpgw:worker_heartbeat:{owner}"))
            .unwrap(),
    )
    .unwrap();
    assert!(
        hb["addr"].as_str().unwrap().starts_with("127.0.0.2:"),
        "{hb}"
    );
    // The same session, used through the other host.
    c.url = b.url(&path);
    for i in 0..12 {
        let r = echo(&c, &format!("h{i}")).await;
        assert_eq!(r.status, 200, "{r:?}");
        assert_eq!(r.result()["content"][0]["text"], format!("h{i}"));
        assert_eq!(worker_of(&r), owner, "served by its owner on host A");
    }
    assert_eq!(up.stats().sessions_initialized, 1);
    assert_eq!(c.delete().await, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_whose_identity_is_taken_is_not_ready() {
    let redis = RedisServer::start();
    let fleet = fleet(&redis, 1, "auto");
    let client = fresh_client();
    let health: Value = client
        .get(fleet.url("/health"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let id = health["worker_id"].as_str().unwrap().to_owned();
    let key = format!("mcpgw:worker_heartbeat:{id}");
    assert!(redis.get(&key).is_some(), "the worker beats");
    assert_eq!(
        client
            .get(fleet.url("/ready"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    // Another live process claims the same identity.
    let other = r#"{"addr":"127.0.0.1:1","host":"elsewhere","pid":1,"instance":"other"}"#;
    redis.command(&["SET", &key, other, "PX", "60000"]);
    let body: Value = eventually(Duration::from_secs(5), "not ready", || async {
        let r = client.get(fleet.url("/ready")).send().await.ok()?;
        (r.status() == 503).then_some(())?;
        r.json().await.ok()
    })
    .await;
    assert!(
        body["checks"]["redis"]
            .as_str()
            .unwrap()
            .contains("identity conflict"),
        "{body}"
    );
    assert_eq!(redis.get(&key).as_deref(), Some(other), "never overwritten");
    // Once the other one is gone, the identity is ours again.
    redis.command(&["DEL", &key]);
    eventually(Duration::from_secs(5), "ready again", || async {
        let r = client.get(fleet.url("/ready")).send().await.ok()?;
        (r.status() == 200).then_some(())
    })
    .await;
}

/// The owner serves forwarded requests concurrently (never one at a time), and
/// a forwarded call slower than the upstream timeout gets the owner's
/// JSON-RPC -32001, even with `MCPGATEWAY_POOL_RPC_FORWARD_TIMEOUT` set
/// shorter: the forward always outlives the owner's upstream timeout.
async fn concurrent_and_timed_out(mode: &str) {
    let redis = RedisServer::start();
    let fleet = Fleet::builder()
        .env("WORKERS", "3")
        .env("REDIS_URL", redis.url())
        .env("AFFINITY_FORWARD", mode)
        .env("FLEET_SECRET", SECRET)
        .env("MCPGATEWAY_POOL_RPC_FORWARD_TIMEOUT", "1")
        .env("UPSTREAM_TIMEOUT", "2")
        .start();
    let (_up, sid) = with_upstream(&fleet, 3).await;
    let mut c = fresh_mcp(fleet.url(&format!("/servers/{sid}/mcp")));
    let owner = worker_of(&c.initialize().await);
    let c = std::sync::Arc::new(c);
    let calls = |n: usize, ms: u64| {
        let c = c.clone();
        async move {
            let all = (0..n).map(|_| {
                let c = c.clone();
                async move {
                    let started = Instant::now();
                    let a = c
                        .request(
                            "tools/call",
                            json!({"name": "slow", "arguments": {"ms": ms}}),
                        )
                        .await;
                    (a, started.elapsed())
                }
            });
            futures_util::future::join_all(all).await
        }
    };
    let before = sum(&scrape(&fleet, 3).await, "forwarded_served");
    let started = Instant::now();
    let answers = calls(12, 700).await;
    let took = started.elapsed();
    let forwarded = sum(&scrape(&fleet, 3).await, "forwarded_served") - before;
    for (a, _) in &answers {
        assert_eq!(a.status, 200, "{a:?}");
        assert_eq!(worker_of(a), owner);
    }
    assert!(
        took < Duration::from_millis(700 * 3),
        "{forwarded} forwarded calls of 700 ms took {took:?} together"
    );
    // Slower than the upstream timeout, from a connection another worker
    // holds (so forwarded): the owner's -32001, not the forward's 504.
    let owner_pid = fleetgate_tests::security::worker_pid(&owner).unwrap();
    let other = *fleet.workers().iter().find(|p| **p != owner_pid).unwrap();
    // One connection each: a client's concurrent requests would open more.
    let far = clients_on(&fleet, &c, other, 3).await;
    let before = sum(&scrape(&fleet, 3).await, "forwarded_served");
    let answers = futures_util::future::join_all(far.iter().map(|far| async move {
        let started = Instant::now();
        let a = far
            .request(
                "tools/call",
                json!({"name": "slow", "arguments": {"ms": 4000}}),
            )
            .await;
        (a, started.elapsed())
    }))
    .await;
    let forwarded = sum(&scrape(&fleet, 3).await, "forwarded_served") - before;
    for (a, took) in &answers {
        assert_eq!(worker_of(a), owner, "the owner answered: {a:?}");
        assert_eq!(a.error_code(), Some(-32001), "{a:?}");
        assert!(
            a.error_message().contains("did not answer within 2000 ms"),
            "the owner's upstream timeout: {a:?}"
        );
        assert!(a.response()["id"].is_u64(), "{a:?}");
        assert!(*took < Duration::from_millis(3500), "{took:?}");
    }
    assert_eq!(forwarded, 3, "the calls were forwarded");
    let m = scrape(&fleet, 3).await;
    assert_eq!(sum(&m, "forward_timeouts"), 0, "no forward gave up");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn forwards_are_concurrent_and_time_out_over_http() {
    concurrent_and_timed_out("http").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn forwards_are_concurrent_and_time_out_over_pubsub() {
    concurrent_and_timed_out("pubsub").await;
}

/// Pub/sub forwarding asks nothing of Redis beyond `PUBLISH` and
/// `(P)SUBSCRIBE`: on a Redis whose ACL denies `CLIENT` (as some managed
/// services do), every request still reaches its session's owner over pub/sub.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn pubsub_forwards_need_no_client_command() {
    let redis = RedisServer::start();
    assert_eq!(
        redis
            .command(&["ACL", "SETUSER", "default", "on", "nopass", "~*", "&*", "+@all", "-client"])
            .as_deref(),
        Some("+OK\r\n")
    );
    let refused = redis.command(&["CLIENT", "ID"]).unwrap();
    assert!(
        refused.starts_with("-NOPERM"),
        "CLIENT is denied: {refused}"
    );
    owner_serves_everything_at(&redis, &redis.url(), "pubsub").await;
}
