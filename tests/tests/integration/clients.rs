//! The official MCP SDK clients, installed from their registries, against
//! fleetgate federating the test upstream:
//!
//! - the Python SDK (`mcp` 2.x, PyPI; `tests/python/sdk_client.py`) in legacy
//!   mode (the 2025-era Streamable HTTP client with sessions) and its HTTP+SSE
//!   client of 2024-11-05;
//! - the TypeScript SDK (`@modelcontextprotocol/sdk`, npm;
//!   `tests/node/sdk-client.mjs`) with `StreamableHTTPClientTransport` (which
//!   opens the standalone GET stream) and `SSEClientTransport`.
//!
//! Each client lists and calls tools, subscribes to a resource, and must
//! receive a `notifications/resources/updated` and a `notifications/message`
//! that the upstream sends on its standalone stream, outside any request
//! (its `notify_later` tool). Every client runs first directly against the
//! upstream: that proves the script and the upstream, so a failure through
//! fleetgate is fleetgate's.
//!
//! `scripts/test.sh` installs both SDKs: `npm ci` in `tests/node`, and a venv
//! at `tests/python/.venv` from `tests/python/requirements.txt`.
#![allow(clippy::unwrap_used)] // a failed unwrap is a failed test

use fleetgate_test_upstream::{RunningUpstream, Upstream};
use fleetgate_tests::fleet::Fleet;
use fleetgate_tests::gateway;
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use serde_json::Value;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Duration;

/// The resource the clients subscribe to (the upstream's subscribable one).
const WATCHED: &str = "test://watched-resource";

/// Longest a client may run: its own waits are bounded (10 s for the
/// notifications), this only stops a client stuck on a request.
const CLIENT_DEADLINE: Duration = Duration::from_secs(60);

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

#[derive(Clone, Copy, Debug)]
enum Sdk {
    Python,
    TypeScript,
}

#[derive(Clone, Copy, Debug)]
enum Transport {
    /// Streamable HTTP with a session and its standalone GET stream.
    Streamable,
    /// The HTTP+SSE transport of 2024-11-05.
    Sse,
}

impl Transport {
    fn arg(self) -> &'static str {
        match self {
            Transport::Streamable => "streamable",
            Transport::Sse => "sse",
        }
    }
}

fn command(sdk: Sdk) -> Command {
    match sdk {
        Sdk::Python => {
            let python = repo().join("tests/python/.venv/bin/python");
            assert!(
                python.exists(),
                "{} missing: scripts/test.sh installs the Python SDK there",
                python.display()
            );
            let mut c = Command::new(python);
            c.env("PYTHONDONTWRITEBYTECODE", "1")
                .arg(repo().join("tests/python/sdk_client.py"));
            c
        }
        Sdk::TypeScript => {
            let mut c = Command::new("node");
            c.arg(repo().join("tests/node/sdk-client.mjs"));
            c
        }
    }
}

/// What one client run printed: its JSON line (`Null` if none), whether it
/// exited 0, and all its output for failure messages.
struct Run {
    ok: bool,
    got: Value,
    output: String,
}

/// Runs `sdk`'s client script with `args`, killing it after [`CLIENT_DEADLINE`].
async fn run(sdk: Sdk, args: Vec<String>) -> Run {
    let mut cmd = command(sdk);
    cmd.args(&args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let child = cmd
        .spawn()
        .unwrap_or_else(|e| panic!("start the {sdk:?} client (scripts/test.sh installs it): {e}"));
    let pid = Pid::from_raw(child.id() as i32);
    let mut waiting = tokio::task::spawn_blocking(move || child.wait_with_output());
    let out = match tokio::time::timeout(CLIENT_DEADLINE, &mut waiting).await {
        Ok(done) => done.unwrap().unwrap(),
        Err(_) => {
            let _ = kill(pid, Signal::SIGKILL);
            let out = waiting.await.unwrap().unwrap();
            panic!(
                "the {sdk:?} client {args:?} ran past {CLIENT_DEADLINE:?}:\n{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
    };
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let got = stdout
        .lines()
        .last()
        .and_then(|l| serde_json::from_str(l).ok())
        .unwrap_or(Value::Null);
    Run {
        ok: out.status.success(),
        got,
        output: format!(
            "{sdk:?} {args:?}: {}\nstdout:\n{stdout}\nstderr:\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        ),
    }
}

/// The text of a tool result's first content item.
fn text(result: &Value) -> &Value {
    &result["content"][0]["text"]
}

/// Asserts that a full client run (tools, resource update, log message) passed.
fn assert_notified(r: &Run, where_: &str) {
    let v = &r.got;
    assert!(
        r.ok,
        "{where_}: the client failed at step {} (error {}; resource updates {}, log messages {}):\n{}",
        v["step"], v["error"], v["updated"], v["logs"], r.output
    );
    let tools = v["tools"].as_array().unwrap();
    for t in ["echo", "notify_later"] {
        assert!(tools.iter().any(|n| n == t), "{where_}: no {t}: {v}");
    }
    assert_eq!(text(&v["result"]), "from the sdk", "{where_}: {v}");
    assert_eq!(text(&v["notify"]), "scheduled", "{where_}: {v}");
    assert!(
        v["updated"]
            .as_array()
            .unwrap()
            .iter()
            .any(|u| u == WATCHED),
        "{where_}: no notifications/resources/updated for {WATCHED}: {v}"
    );
    assert!(
        v["logs"]
            .as_array()
            .unwrap()
            .iter()
            .any(|l| l["data"] == "notify_later" && l["level"] == "info"),
        "{where_}: no notifications/message from notify_later: {v}"
    );
}

/// A fleet of two workers federating `up`, and the MCP path of a virtual
/// server holding everything, known to both workers.
async fn fleet_with_server(up: &RunningUpstream) -> (Fleet, String) {
    let fleet = Fleet::builder().env("WORKERS", "2").start();
    gateway::register(&fleet, up.name(), &up.url()).await;
    let sid = gateway::server_with_everything(&fleet, up.name()).await;
    gateway::known_everywhere(&fleet.url(&format!("/servers/{sid}/mcp")), 2).await;
    (fleet, sid)
}

/// Runs `sdk` over `transport` directly against the upstream (the baseline),
/// then through a two-worker fleet at `/servers/{id}/mcp` or `/servers/{id}/sse`.
async fn notifications_reach(sdk: Sdk, transport: Transport) {
    let up = Upstream::builder()
        .name("sdk")
        .legacy_sse(true)
        .spawn()
        .await
        .unwrap();
    let direct_url = match transport {
        Transport::Streamable => up.url(),
        Transport::Sse => up.sse_url(),
    };
    let direct = run(sdk, vec![transport.arg().into(), direct_url]).await;
    assert_notified(&direct, "directly against the upstream");
    assert_eq!(direct.got["logs"][0]["logger"], "sdk", "{}", direct.got);

    let (fleet, sid) = fleet_with_server(&up).await;
    let path = match transport {
        Transport::Streamable => format!("/servers/{sid}/mcp"),
        Transport::Sse => format!("/servers/{sid}/sse"),
    };
    let via = run(sdk, vec![transport.arg().into(), fleet.url(&path)]).await;
    assert_notified(&via, &format!("through fleetgate ({path})"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_sdk_legacy_streamable_http_receives_notifications_outside_requests() {
    notifications_reach(Sdk::Python, Transport::Streamable).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_sdk_sse_client_receives_notifications_outside_requests() {
    notifications_reach(Sdk::Python, Transport::Sse).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn typescript_sdk_streamable_http_get_stream_receives_notifications_outside_requests() {
    notifications_reach(Sdk::TypeScript, Transport::Streamable).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn typescript_sdk_sse_client_receives_notifications_outside_requests() {
    notifications_reach(Sdk::TypeScript, Transport::Sse).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn official_typescript_sdk_lists_and_calls_tools() {
    let up = Upstream::builder().name("sdk").spawn().await.unwrap();
    let fleet = Fleet::builder().env("WORKERS", "1").start();
    gateway::register(&fleet, "sdk", &up.url()).await;
    let sid = gateway::server_with_everything(&fleet, "sdk").await;
    for (url, tool) in [
        (fleet.url("/mcp"), "sdk-echo"),
        (fleet.url(&format!("/servers/{sid}/mcp")), "echo"),
    ] {
        // "-": no notify tool, the run ends after the call (and its DELETE).
        let r = run(
            Sdk::TypeScript,
            vec!["streamable".into(), url, tool.into(), "-".into()],
        )
        .await;
        let v = &r.got;
        assert!(r.ok, "sdk client failed:\n{}", r.output);
        assert!(
            v["tools"].as_array().unwrap().iter().any(|t| t == tool),
            "{v}"
        );
        assert_eq!(text(&v["result"]), "from the sdk", "{v}");
        assert!(v["sessionId"].is_string(), "{v}");
    }
    assert!(
        up.stats().sessions_deleted >= 2,
        "the SDK's DELETE closed upstream sessions too"
    );
}

/// The Python SDK in its default mode (`auto`: `server/discover` first) and
/// in 2026-07-28 mode lists and calls tools through fleetgate, which it
/// speaks 2026-07-28 with (fleetgate's `server/discover` offers it), as it
/// does directly against the upstream; on both workers, fresh connections.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_sdk_default_and_2026_modes_list_and_call_tools() {
    let up = Upstream::builder().name("sdk").spawn().await.unwrap();
    let (fleet, sid) = fleet_with_server(&up).await;
    for mode in ["auto", "2026-07-28"] {
        for (where_, url) in [
            ("directly", up.url()),
            (
                "through fleetgate",
                fleet.url(&format!("/servers/{sid}/mcp")),
            ),
        ] {
            let r = run(Sdk::Python, vec![mode.into(), url]).await;
            let v = &r.got;
            assert!(
                r.ok,
                "{mode} {where_}: failed at {}:\n{}",
                v["step"], r.output
            );
            assert_eq!(v["protocolVersion"], "2026-07-28", "{mode} {where_}: {v}");
            assert!(
                v["tools"].as_array().unwrap().iter().any(|t| t == "echo"),
                "{mode} {where_}: {v}"
            );
            assert_eq!(text(&v["result"]), "from the sdk", "{mode} {where_}: {v}");
        }
    }
}

/// Tools that ask the client for input while they run, through the official
/// SDKs in every mode, across eras: a tool only the modern era of a dual-era
/// upstream offers (`input_required` rounds: a 2025 client answers them as
/// requests on its stream) and a 2025-only upstream's mid-call elicitation
/// (a 2026-07-28 client answers it through `input_required`). Each upstream
/// is a virtual server of its own on a two-worker fleet.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sdk_clients_answer_input_requests_of_either_era() {
    let both = Upstream::builder().name("both").spawn().await.unwrap();
    let old = Upstream::builder()
        .name("old")
        .stateless_draft(false)
        .spawn()
        .await
        .unwrap();
    let fleet = Fleet::builder().env("WORKERS", "2").start();
    let mut servers = Vec::new();
    for up in [&both, &old] {
        let gw = gateway::register(&fleet, up.name(), &up.url()).await;
        let mut of_gateway = Vec::new();
        for path in ["/tools?limit=0", "/resources", "/prompts"] {
            let ids: Vec<String> = gateway::list(&fleet, path)
                .await
                .iter()
                .filter(|t| t["gatewayId"] == gw["id"])
                .map(|t| t["id"].as_str().unwrap().to_owned())
                .collect();
            of_gateway.push(ids);
        }
        let [tools, resources, prompts] = &of_gateway[..] else {
            unreachable!()
        };
        let sid = gateway::create_server(&fleet, up.name(), tools, resources, prompts).await;
        let url = fleet.url(&format!("/servers/{sid}/mcp"));
        gateway::known_everywhere(&url, 2).await;
        servers.push(url);
    }
    let cases = [
        (
            &servers[0],
            "test_input_required_result_elicitation",
            "Hello, sdk!",
        ),
        (
            &servers[1],
            "test_elicitation",
            "User response: action=accept",
        ),
    ];
    let modes = [
        (Sdk::Python, "streamable", "notify_later"),
        (Sdk::Python, "auto", "-"),
        (Sdk::Python, "2026-07-28", "-"),
        (Sdk::TypeScript, "streamable", "-"),
    ];
    for (url, tool, expected) in cases {
        for (sdk, mode, notify) in modes {
            let args = [mode, url, "echo", notify, tool]
                .map(str::to_owned)
                .to_vec();
            let r = run(sdk, args).await;
            let v = &r.got;
            assert!(
                r.ok,
                "{sdk:?} {mode} {tool}: failed at {}:\n{}",
                v["step"], r.output
            );
            let said = v["inputs"][tool].as_str().unwrap_or_default();
            assert!(said.contains(expected), "{sdk:?} {mode} {tool}: {v}");
            assert!(
                said.contains("sdk"),
                "the client's answer reached the tool: {v}"
            );
            if mode != "streamable" {
                assert_eq!(v["protocolVersion"], "2026-07-28", "{sdk:?} {mode}: {v}");
            }
        }
    }
}
