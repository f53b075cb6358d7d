//! Downstream clients on the legacy HTTP+SSE transport (MCP 2024-11-05):
//! `GET /sse` and `GET /servers/{id}/sse` open a session whose stream carries
//! every answer; `POST /message?session_id=…` (and
//! `/servers/{id}/message?session_id=…`) carry the client's messages, 202
//! each. With two workers, a POST that lands on the worker not holding the
//! stream is forwarded to the one that does (Unix socket, or over HTTP or
//! pub/sub with Redis). Closing the stream ends the session upstream too.
//!
//! Which worker a POST lands on is made certain with [`Conn`]: one TCP
//! connection, whose worker is known, that every request of it goes over
//! (a pooled client may open another connection at any time).
#![allow(clippy::unwrap_used)] // a failed unwrap is a failed test

use bytes::Bytes;
use fleetgate_test_upstream::{RunningUpstream, Upstream};
use fleetgate_tests::fleet::{binary, Fleet, FleetBuilder, TEST_SECRET};
use fleetgate_tests::redis::RedisServer;
use fleetgate_tests::security::{create_server_as, list_as, register_as, worker_pid};
use fleetgate_tests::{eventually, fresh_client, gateway, proc};
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1;
use hyper_util::rt::TokioIo;
use nix::sys::signal::Signal;
use serde_json::{json, Value};
use std::collections::BTreeSet;
use std::sync::Mutex;
use std::time::Duration;

/// One legacy SSE connection: the session's owner (the worker that took the
/// GET) and the `endpoint` it announced; its events as they come.
struct Stream {
    /// The stream's own client, kept as long as it: no per-request timeout.
    _http: reqwest::Client,
    resp: reqwest::Response,
    buf: String,
    owner: u32,
    endpoint: String,
}

impl Stream {
    async fn open(fleet: &Fleet, path: &str, token: Option<&str>) -> Stream {
        match Stream::try_open(fleet, path, token).await {
            Ok(s) => s,
            Err(status) => panic!("GET {path}: {status}"),
        }
    }

    /// The stream, or the status refusing it.
    async fn try_open(fleet: &Fleet, path: &str, token: Option<&str>) -> Result<Stream, u16> {
        let http = reqwest::Client::builder()
            .pool_max_idle_per_host(0)
            .build()
            .unwrap();
        let mut req = http.get(fleet.url(path));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        let resp = req.send().await.unwrap();
        if resp.status() != 200 {
            return Err(resp.status().as_u16());
        }
        let ct = resp.headers()["content-type"].to_str().unwrap();
        assert!(ct.starts_with("text/event-stream"), "{ct}");
        let owner = worker_pid(resp.headers()["x-fleetgate-worker"].to_str().unwrap()).unwrap();
        let mut s = Stream {
            _http: http,
            resp,
            buf: String::new(),
            owner,
            endpoint: String::new(),
        };
        let (event, data) = s.next_event().await;
        assert_eq!(event, "endpoint", "the first event names the POST URI");
        s.endpoint = data;
        Ok(s)
    }

    /// The session id the endpoint names.
    fn session(&self) -> &str {
        self.endpoint.split("session_id=").nth(1).unwrap()
    }

    /// The next event (type, data); comments (keep-alives) skipped.
    async fn next_event(&mut self) -> (String, String) {
        loop {
            if let Some(i) = self.buf.find("\n\n") {
                let raw: String = self.buf.drain(..i + 2).collect();
                let mut event = "message".to_owned();
                let mut data = Vec::new();
                for line in raw.lines() {
                    if let Some(e) = line.strip_prefix("event:") {
                        event = e.trim().to_owned();
                    } else if let Some(d) = line.strip_prefix("data:") {
                        data.push(d.strip_prefix(' ').unwrap_or(d).to_owned());
                    }
                }
                if data.is_empty() {
                    continue;
                }
                return (event, data.join("\n"));
            }
            let chunk = tokio::time::timeout(Duration::from_secs(10), self.resp.chunk())
                .await
                .expect("an SSE event within 10 s")
                .expect("the stream broke")
                .expect("the stream ended early");
            self.buf.push_str(std::str::from_utf8(&chunk).unwrap());
        }
    }

    /// The next JSON-RPC message on the stream.
    async fn next_message(&mut self) -> Value {
        let (event, data) = self.next_event().await;
        assert_eq!(event, "message", "{data}");
        serde_json::from_str(&data).unwrap()
    }

    /// The messages up to the response to `id`: (those before it, it).
    async fn until_response(&mut self, id: u64) -> (Vec<Value>, Value) {
        let mut before = Vec::new();
        loop {
            let m = self.next_message().await;
            if m["id"] == id && (m.get("result").is_some() || m.get("error").is_some()) {
                return (before, m);
            }
            before.push(m);
        }
    }
}

/// One TCP connection to the fleet, and the worker that accepted it.
struct Conn {
    send: tokio::sync::Mutex<http1::SendRequest<Full<Bytes>>>,
    host: String,
    pid: u32,
}

impl Conn {
    async fn open(fleet: &Fleet) -> Conn {
        let tcp = tokio::net::TcpStream::connect(&fleet.addr).await.unwrap();
        let (send, conn) = http1::handshake(TokioIo::new(tcp)).await.unwrap();
        tokio::spawn(conn);
        let mut c = Conn {
            send: tokio::sync::Mutex::new(send),
            host: fleet.addr.clone(),
            pid: 0,
        };
        let (_, health) = c.send("GET", "/health", "", None).await;
        c.pid = u32::try_from(health["pid"].as_u64().unwrap()).unwrap();
        c
    }

    /// A connection to a worker `wanted` accepts (by pid).
    async fn to(fleet: &Fleet, what: &str, wanted: impl Fn(u32) -> bool) -> Conn {
        for _ in 0..200 {
            let c = Conn::open(fleet).await;
            if wanted(c.pid) {
                return c;
            }
        }
        panic!("no connection to {what} in 200 tries");
    }

    async fn send(
        &self,
        method: &str,
        path: &str,
        body: &str,
        token: Option<&str>,
    ) -> (u16, Value) {
        let mut send = self.send.lock().await;
        send.ready().await.expect("the connection is still open");
        let mut req = hyper::Request::builder()
            .method(method)
            .uri(path)
            .header("host", &self.host)
            .header("content-type", "application/json");
        if let Some(t) = token {
            req = req.header("authorization", format!("Bearer {t}"));
        }
        let req = req.body(Full::new(Bytes::from(body.to_owned()))).unwrap();
        let resp = send.send_request(req).await.unwrap();
        let status = resp.status().as_u16();
        let bytes = resp.into_body().collect().await.unwrap().to_bytes();
        (
            status,
            serde_json::from_slice(&bytes).unwrap_or(Value::Null),
        )
    }
}

/// How a request travels: on a fresh connection (any worker), or on a
/// [`Conn`] (its worker).
enum Via {
    Fresh(reqwest::Client),
    Conn(Conn),
}

impl Via {
    fn fresh() -> Via {
        Via::Fresh(fresh_client())
    }

    async fn send(
        &self,
        fleet: &Fleet,
        method: &str,
        path: &str,
        body: &str,
        token: Option<&str>,
    ) -> (u16, Value) {
        match self {
            Via::Conn(c) => c.send(method, path, body, token).await,
            Via::Fresh(http) => {
                let mut req = http
                    .request(method.parse().unwrap(), fleet.url(path))
                    .header("content-type", "application/json")
                    .body(body.to_owned());
                if let Some(t) = token {
                    req = req.bearer_auth(t);
                }
                let r = req.send().await.unwrap();
                let status = r.status().as_u16();
                (status, r.json().await.unwrap_or(Value::Null))
            }
        }
    }

    /// A POST's status and JSON body (`Null` when there is none).
    async fn post(
        &self,
        fleet: &Fleet,
        path: &str,
        body: &str,
        token: Option<&str>,
    ) -> (u16, Value) {
        self.send(fleet, "POST", path, body, token).await
    }

    /// POSTs a message that must be accepted: 202 at once, nothing in the body.
    async fn accepted(&self, fleet: &Fleet, path: &str, body: &str, token: Option<&str>) {
        let (status, answer) = self.post(fleet, path, body, token).await;
        assert_eq!((status, &answer), (202, &Value::Null), "{body}");
    }
}

fn request(id: u64, method: &str, params: Value) -> String {
    json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params}).to_string()
}

fn initialize(id: u64, version: &str) -> String {
    request(
        id,
        "initialize",
        json!({
            "protocolVersion": version,
            "capabilities": {"sampling": {}},
            "clientInfo": {"name": "legacy-client", "version": "0"},
        }),
    )
}

const INITIALIZED: &str = r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#;

/// A fleet of `workers` with one upstream registered and a virtual server
/// holding all of it, known to every worker.
async fn fleet_with_upstream(
    builder: FleetBuilder,
    workers: usize,
) -> (Fleet, RunningUpstream, String) {
    let up = Upstream::builder()
        .stateless_draft(false)
        .name("ld")
        .spawn()
        .await
        .unwrap();
    let fleet = builder.env("WORKERS", workers.to_string()).start();
    gateway::register(&fleet, "ld", &up.url()).await;
    let sid = gateway::server_with_everything(&fleet, "ld").await;
    gateway::known_everywhere(&fleet.url(&format!("/servers/{sid}/mcp")), workers).await;
    (fleet, up, sid)
}

/// The whole exchange on a stream of `/servers/{sid}/sse`: initialize,
/// tools/list, tools/call (plain, with progress, with sampling answered by
/// the client), POSTed from fresh connections and from a connection to the
/// worker that does not hold the stream; then the stream closes and the
/// session ends, upstream too.
async fn served_by_the_owner(fleet: &Fleet, up: &RunningUpstream, sid: &str) {
    up.reset_stats();
    let mut s = Stream::open(fleet, &format!("/servers/{sid}/sse"), None).await;
    let prefix = format!("/servers/{sid}/message?session_id=");
    assert!(s.endpoint.starts_with(&prefix), "{}", s.endpoint);
    let at = s.endpoint.clone();
    let owner = s.owner;
    let other = Via::Conn(Conn::to(fleet, "the worker without the stream", |p| p != owner).await);
    let fresh = Via::fresh();

    fresh
        .accepted(fleet, &at, &initialize(1, "2024-11-05"), None)
        .await;
    let (_, init) = s.until_response(1).await;
    assert_eq!(init["result"]["protocolVersion"], "2024-11-05", "{init}");
    assert!(init["result"]["serverInfo"].is_object(), "{init}");
    other.accepted(fleet, &at, INITIALIZED, None).await;

    other
        .accepted(fleet, &at, &request(2, "tools/list", json!({})), None)
        .await;
    let (_, list) = s.until_response(2).await;
    let names: Vec<&str> = list["result"]["tools"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap())
        .collect();
    assert!(names.contains(&"echo"), "{list}");

    for i in 0..10u64 {
        let via = if i % 2 == 0 { &other } else { &fresh };
        let text = format!("m{i}");
        let args = json!({"name": "echo", "arguments": {"text": text}});
        via.accepted(fleet, &at, &request(10 + i, "tools/call", args), None)
            .await;
        let (_, answer) = s.until_response(10 + i).await;
        assert_eq!(answer["result"]["content"][0]["text"], text, "{answer}");
    }

    // What the upstream sends during a call goes on the stream, before the answer.
    let args = json!({"name": "test_tool_with_progress", "arguments": {}, "_meta": {"progressToken": "p1"}});
    other
        .accepted(fleet, &at, &request(30, "tools/call", args), None)
        .await;
    let (before, answer) = s.until_response(30).await;
    assert!(
        before.iter().any(
            |m| m["method"] == "notifications/progress" && m["params"]["progressToken"] == "p1"
        ),
        "progress before the answer: {before:?}"
    );
    assert!(answer["result"].is_object(), "{answer}");

    // A server→client request arrives on the stream; the client's answer,
    // POSTed to the worker without the stream, reaches the call waiting for it.
    let args = json!({"name": "test_sampling", "arguments": {"prompt": "hi?"}});
    fresh
        .accepted(fleet, &at, &request(31, "tools/call", args), None)
        .await;
    let asked = s.next_message().await;
    assert_eq!(asked["method"], "sampling/createMessage", "{asked}");
    let reply = json!({"jsonrpc": "2.0", "id": asked["id"], "result": {
        "role": "assistant", "content": {"type": "text", "text": "sampled answer"},
        "model": "m", "stopReason": "endTurn"}});
    other.accepted(fleet, &at, &reply.to_string(), None).await;
    let (_, answer) = s.until_response(31).await;
    assert!(
        answer["result"].to_string().contains("sampled answer"),
        "{answer}"
    );

    let stats = up.stats();
    assert_eq!(
        stats.sessions_initialized, 1,
        "one upstream session: {stats:?}"
    );
    assert_eq!(stats.live_sessions, 1, "{stats:?}");

    // Closing the stream ends the session: upstream, and for later messages.
    drop(s);
    eventually(
        Duration::from_secs(10),
        "the upstream session closed",
        || async { (up.stats().live_sessions == 0).then_some(()) },
    )
    .await;
    let at_owner =
        Via::Conn(Conn::to(fleet, "the worker that had the stream", |p| p == owner).await);
    for via in [&other, &at_owner, &fresh] {
        let (status, body) = via
            .post(fleet, &at, &request(40, "ping", json!({})), None)
            .await;
        assert_eq!(status, 404, "{body}");
        assert_eq!(body["error"]["code"], -32002, "{body}");
        assert_eq!(body["id"], 40, "{body}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_legacy_session_is_served_by_its_owner_wherever_its_posts_land() {
    let (fleet, up, sid) = fleet_with_upstream(Fleet::builder(), 2).await;
    served_by_the_owner(&fleet, &up, &sid).await;
}

/// A killed owner takes its stream, and with it the session: its messages
/// are 404 at once on whichever worker they land (the session is not adopted:
/// there is no stream left to answer on), and new streams work.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_owners_session_is_gone_not_adopted() {
    let (fleet, _up, sid) = fleet_with_upstream(Fleet::builder(), 2).await;
    let mut s = Stream::open(&fleet, &format!("/servers/{sid}/sse"), None).await;
    let fresh = Via::fresh();
    fresh
        .accepted(&fleet, &s.endpoint, &initialize(1, "2024-11-05"), None)
        .await;
    s.until_response(1).await;
    proc::signal(s.owner, Signal::SIGKILL);
    let ended = tokio::time::timeout(Duration::from_secs(10), s.resp.chunk()).await;
    assert!(
        matches!(ended, Ok(Err(_) | Ok(None))),
        "the stream ends with its owner: {ended:?}"
    );
    let ping = request(2, "ping", json!({}));
    for _ in 0..6 {
        let started = std::time::Instant::now();
        let (status, body) = fresh.post(&fleet, &s.endpoint, &ping, None).await;
        assert_eq!(
            (status, &body["error"]["code"]),
            (404, &json!(-32002)),
            "{body}"
        );
        assert!(started.elapsed() < Duration::from_secs(5), "no hang");
    }
    let mut again = eventually(Duration::from_secs(15), "a new stream", || async {
        Stream::try_open(&fleet, &format!("/servers/{sid}/sse"), None)
            .await
            .ok()
    })
    .await;
    fresh
        .accepted(&fleet, &again.endpoint, &initialize(1, "2024-11-05"), None)
        .await;
    assert!(again.until_response(1).await.1["result"].is_object());
}

fn with_redis(redis: &RedisServer, forward: &str) -> FleetBuilder {
    Fleet::builder()
        .env("REDIS_URL", redis.url())
        .env("AFFINITY_FORWARD", forward)
        .env("FLEET_SECRET", "a-shared-fleet-secret-for-tests")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_redis_posts_reach_the_owner_over_http() {
    let redis = RedisServer::start();
    let (fleet, up, sid) = fleet_with_upstream(with_redis(&redis, "http"), 2).await;
    served_by_the_owner(&fleet, &up, &sid).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_redis_posts_reach_the_owner_over_pubsub() {
    let redis = RedisServer::start();
    let (fleet, up, sid) = fleet_with_upstream(with_redis(&redis, "pubsub"), 2).await;
    served_by_the_owner(&fleet, &up, &sid).await;
}

/// `/sse` is scoped to everything; sessions exist only in their own scope;
/// unknown sessions, bad JSON, a missing session and wrong methods are
/// refused on both workers, whichever holds the session.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sse_on_all_and_refusals() {
    let (fleet, _up, sid) = fleet_with_upstream(Fleet::builder(), 2).await;
    let mut all = Stream::open(&fleet, "/sse", None).await;
    assert!(
        all.endpoint.starts_with("/message?session_id="),
        "{}",
        all.endpoint
    );
    let at = all.endpoint.clone();
    let fresh = Via::fresh();
    fresh
        .accepted(&fleet, &at, &initialize(1, "2025-06-18"), None)
        .await;
    let (_, init) = all.until_response(1).await;
    assert_eq!(
        init["result"]["protocolVersion"], "2025-06-18",
        "other versions are negotiated as on /mcp"
    );
    let tools = gateway::list(&fleet, "/tools?limit=0").await;
    let echo = tools.iter().find(|t| t["originalName"] == "echo").unwrap();
    let args = json!({"name": echo["name"], "arguments": {"text": "all"}});
    fresh
        .accepted(&fleet, &at, &request(2, "tools/call", args), None)
        .await;
    let (_, answer) = all.until_response(2).await;
    assert_eq!(answer["result"]["content"][0]["text"], "all", "{answer}");

    let server = Stream::open(&fleet, &format!("/servers/{sid}/sse"), None).await;
    let one = Conn::open(&fleet).await;
    let first = one.pid;
    let two = Conn::to(&fleet, "the other worker", |p| p != first).await;
    let ping = request(7, "ping", json!({}));
    for via in [Via::Conn(one), Via::Conn(two)] {
        // Unknown session: 404, a JSON-RPC error carrying the request's id.
        let bogus =
            "/message?session_id=0_00000000000000000000000000000000_000000000000000000000000";
        let (status, body) = via.post(&fleet, bogus, &ping, None).await;
        assert_eq!(status, 404, "{body}");
        assert_eq!(
            (&body["error"]["code"], &body["id"]),
            (&json!(-32002), &json!(7)),
            "{body}"
        );
        // A session exists only in the scope of the path it was opened on.
        let crossed = [
            format!("/servers/{sid}/message?session_id={}", all.session()),
            format!("/message?session_id={}", server.session()),
        ];
        for path in crossed {
            let (status, body) = via.post(&fleet, &path, &ping, None).await;
            assert_eq!(status, 404, "{path}: {body}");
            assert_eq!(body["error"]["code"], -32002, "{path}: {body}");
        }
        // Bad JSON: 400 -32700.
        for path in [&at, &server.endpoint] {
            let (status, body) = via.post(&fleet, path, "{not json", None).await;
            assert_eq!(
                (status, &body["error"]["code"]),
                (400, &json!(-32700)),
                "{body}"
            );
        }
        // No session named: 400.
        let (status, body) = via.post(&fleet, "/message", &ping, None).await;
        assert_eq!(
            (status, &body["error"]["code"]),
            (400, &json!(-32600)),
            "{body}"
        );
        // An unknown server: 404 before anything else.
        let path = format!("/servers/nope/message?session_id={}", server.session());
        assert_eq!(via.post(&fleet, &path, &ping, None).await.0, 404);
        // Each path takes its one method.
        assert_eq!(via.send(&fleet, "GET", &at, "", None).await.0, 405);
        assert_eq!(via.send(&fleet, "POST", "/sse", "", None).await.0, 405);
        // And the sessions still work.
        via.accepted(&fleet, &at, &ping, None).await;
        let (_, pong) = all.until_response(7).await;
        assert_eq!(pong["result"], json!({}), "{pong}");
    }
}

/// `fleetgate token …`: a JWT for the test secret.
fn mint(args: &[&str]) -> String {
    let out = std::process::Command::new(binary())
        .arg("token")
        .args(["--exp", "10"])
        .args(args)
        .env_clear()
        .env("JWT_SECRET_KEY", TEST_SECRET)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
}

/// The same gate as the MCP paths: no token, no stream and no message; a
/// session is its user's, on either worker; a token scoped to a server gets
/// that server's message path from `/sse`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_gate_and_the_sessions_user_hold() {
    let up = Upstream::builder()
        .stateless_draft(false)
        .name("ld")
        .spawn()
        .await
        .unwrap();
    let fleet = Fleet::builder()
        .env("WORKERS", "2")
        .env("AUTH_REQUIRED", "true")
        .env("MCP_REQUIRE_AUTH", "true")
        .start();
    let admin = mint(&["--username", "admin@example.com", "--admin"]);
    let gw = register_as(&fleet, &admin, "ld", &up.url()).await;
    let tools = list_as(&fleet, &admin, "/tools?limit=0").await;
    let ids: Vec<String> = tools
        .iter()
        .filter(|t| t["gatewayId"] == gw["id"])
        .map(|t| t["id"].as_str().unwrap().to_owned())
        .collect();
    let sid = create_server_as(&fleet, &admin, "srv-legacy", "legacy", &ids).await;
    let alice = mint(&["--username", "alice@example.com"]);
    let bob = mint(&["--username", "bob@example.com"]);
    let scoped = mint(&["--username", "carol@example.com", "--server-id", &sid]);

    let fresh = Via::fresh();
    assert_eq!(fresh.send(&fleet, "GET", "/sse", "", None).await.0, 401);
    assert_eq!(
        fresh
            .post(&fleet, "/message?session_id=x", "{}", None)
            .await
            .0,
        401
    );

    // Every worker polls the registry: wait until both serve the new server.
    let path = format!("/servers/{sid}/sse");
    let serving = Mutex::new(BTreeSet::new());
    let mut s = eventually(
        Duration::from_secs(15),
        "the server known to both workers",
        || async {
            let s = Stream::try_open(&fleet, &path, Some(&alice)).await.ok()?;
            let mut seen = serving.lock().unwrap();
            seen.insert(s.owner);
            (seen.len() == 2).then_some(s)
        },
    )
    .await;
    let owner = s.owner;
    let there = Conn::to(&fleet, "the stream's worker", |p| p == owner).await;
    let elsewhere = Conn::to(&fleet, "the other worker", |p| p != owner).await;
    for via in [Via::Conn(there), Via::Conn(elsewhere)] {
        let (status, body) = via
            .post(
                &fleet,
                &s.endpoint,
                &request(1, "ping", json!({})),
                Some(&bob),
            )
            .await;
        assert_eq!(status, 403, "another user's session: {body}");
    }
    fresh
        .accepted(
            &fleet,
            &s.endpoint,
            &initialize(1, "2024-11-05"),
            Some(&alice),
        )
        .await;
    assert_eq!(
        s.until_response(1).await.1["result"]["protocolVersion"],
        "2024-11-05"
    );

    let mut own = Stream::open(&fleet, "/sse", Some(&scoped)).await;
    let prefix = format!("/servers/{sid}/message?session_id=");
    assert!(own.endpoint.starts_with(&prefix), "{}", own.endpoint);
    fresh
        .accepted(
            &fleet,
            &own.endpoint,
            &request(2, "tools/list", json!({})),
            Some(&scoped),
        )
        .await;
    let (_, tools) = own.until_response(2).await;
    assert!(
        tools["result"]["tools"]
            .as_array()
            .is_some_and(|t| !t.is_empty()),
        "{tools}"
    );
}
