//! The upstream client over the legacy HTTP+SSE transport (2024-11-05)
//! against the test upstream in legacy mode (`GET /sse`, `POST /messages`).
#![allow(clippy::unwrap_used)] // a failed unwrap is a failed test

use std::sync::Mutex;
use std::time::Duration;

use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;
use fleetgate_mcp::jsonrpc::{ErrorObject, Notification, Request};
use fleetgate_mcp::upstream::BoxFuture;
use fleetgate_mcp::{
    channel_handler, NoopHandler, RequestOptions, ServerMessage, ServerMessageHandler, Transport,
    UpstreamClient, UpstreamError, UpstreamSession,
};
use fleetgate_test_upstream::{RunningUpstream, Upstream};
use http::{HeaderMap, HeaderValue};
use serde_json::{json, Value};

const T: Duration = Duration::from_secs(10);

fn client() -> UpstreamClient {
    UpstreamClient::new()
        .client_info("fleetgate-tests", "0.0.0")
        .capabilities(json!({"sampling": {}, "elicitation": {}}))
}

async fn upstream() -> RunningUpstream {
    Upstream::builder()
        .legacy_sse(true)
        .spawn()
        .await
        .expect("test upstream starts")
}

async fn connect(up: &RunningUpstream) -> UpstreamSession {
    client()
        .connect_with_transport(
            &up.sse_url(),
            Transport::Sse,
            HeaderMap::new(),
            "2025-11-25",
            T,
        )
        .await
        .unwrap()
}

/// Polls `f` until it holds (at most 2 s).
async fn eventually(mut f: impl FnMut() -> bool) -> bool {
    for _ in 0..100 {
        if f() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    false
}

#[derive(Default)]
struct Recorder {
    notifications: Mutex<Vec<Notification>>,
    requests: Mutex<Vec<Request>>,
}

impl ServerMessageHandler for Recorder {
    fn on_notification(&self, n: Notification) -> BoxFuture<'_, ()> {
        self.notifications.lock().unwrap().push(n);
        Box::pin(async {})
    }

    fn on_request(&self, r: Request) -> BoxFuture<'_, Result<Value, ErrorObject>> {
        let answer = match r.method.as_str() {
            "sampling/createMessage" => Ok(json!({
                "role": "assistant",
                "content": {"type": "text", "text": "forty-two"},
                "model": "test-model",
                "stopReason": "endTurn"
            })),
            other => Err(ErrorObject::method_not_found(other)),
        };
        self.requests.lock().unwrap().push(r);
        Box::pin(async move { answer })
    }
}

fn text_of(result: &Value) -> &str {
    result["content"][0]["text"].as_str().unwrap_or_default()
}

async fn call_tool(
    session: &UpstreamSession,
    name: &str,
    args: Value,
    handler: &dyn ServerMessageHandler,
) -> Result<Value, UpstreamError> {
    session
        .request(
            "tools/call",
            Some(json!({"name": name, "arguments": args})),
            handler,
        )
        .await
}

#[tokio::test]
async fn initialize_discover_call_close() {
    let up = upstream().await;
    let session = connect(&up).await;
    assert_eq!(session.transport(), Transport::Sse);
    assert_eq!(session.protocol_version(), "2025-11-25");
    assert_eq!(session.url(), up.sse_url());
    assert_eq!(session.server_info()["name"], "fleetgate-test-upstream");
    assert_eq!(session.session_id().unwrap().len(), 32);
    assert!(session.instructions().is_some());
    let stats = up.stats();
    assert_eq!(stats.sessions_initialized, 1);
    assert_eq!(stats.live_sessions, 1);
    assert_eq!(stats.get_requests, 1);
    assert!(
        eventually(|| up.stats().method("notifications/initialized") == 1).await,
        "{:?}",
        up.stats()
    );

    let found = session.discover().await.unwrap();
    let names: Vec<&str> = found
        .tools
        .iter()
        .filter_map(|t| t["name"].as_str())
        .collect();
    assert_eq!(names, up.tool_names());
    assert!(!found.resources.is_empty());
    assert!(!found.resource_templates.is_empty());
    assert!(!found.prompts.is_empty());

    let r = call_tool(&session, "echo", json!({"text": "hi there"}), &NoopHandler)
        .await
        .unwrap();
    assert_eq!(text_of(&r), "hi there");
    let r = call_tool(&session, "add", json!({"a": 2, "b": 40}), &NoopHandler)
        .await
        .unwrap();
    assert_eq!(r["structuredContent"]["sum"], 42);
    // A JSON-RPC error arrives on the stream and is typed.
    let e = session
        .request(
            "resources/read",
            Some(json!({"uri": "test://nope"})),
            &NoopHandler,
        )
        .await
        .unwrap_err();
    match &e {
        UpstreamError::Rpc { url, error } => {
            assert_eq!(url, &up.sse_url());
            assert_eq!(error.code, -32002);
        }
        other => panic!("expected Rpc, got {other:?}"),
    }
    assert_eq!(up.stats().tool("echo"), 1);

    session.close().await.unwrap();
    assert!(eventually(|| up.stats().live_sessions == 0).await);
    let e = session
        .request("tools/list", None, &NoopHandler)
        .await
        .unwrap_err();
    assert!(e.is_session_expired(), "{e:?}");
    assert!(e.to_string().contains(&up.sse_url()), "{e}");
}

#[tokio::test]
async fn concurrent_requests_are_matched_by_id() {
    let up = upstream().await;
    let session = connect(&up).await;
    let calls = (0..20).map(|i| {
        let s = &session;
        async move {
            let r = call_tool(s, "echo", json!({"text": format!("n{i}")}), &NoopHandler)
                .await
                .unwrap();
            assert_eq!(text_of(&r), format!("n{i}"));
        }
    });
    let slow = call_tool(&session, "slow", json!({"ms": 200}), &NoopHandler);
    let (_, slow) = tokio::join!(one_after_another(calls), slow);
    assert_eq!(text_of(&slow.unwrap()), "slept 200ms");
    assert_eq!(up.stats().live_sessions, 1);
}

async fn one_after_another<F: std::future::Future<Output = ()>>(futs: impl Iterator<Item = F>) {
    let handles: Vec<_> = futs.collect();
    for f in handles {
        f.await;
    }
}

#[tokio::test]
async fn progress_notifications_reach_the_handler() {
    let up = upstream().await;
    let session = connect(&up).await;
    let rec = Recorder::default();
    let r = session
        .request(
            "tools/call",
            Some(json!({"name": "test_tool_with_progress", "arguments": {}, "_meta": {"progressToken": "tok-1"}})),
            &rec,
        )
        .await
        .unwrap();
    assert_eq!(text_of(&r), "tok-1");
    let notes = rec.notifications.lock().unwrap();
    let progress: Vec<&Notification> = notes
        .iter()
        .filter(|n| n.method == "notifications/progress")
        .collect();
    assert_eq!(progress.len(), 3, "{notes:?}");
    assert_eq!(progress[2].params.as_ref().unwrap()["progress"], 100);
    assert_eq!(
        progress[0].params.as_ref().unwrap()["progressToken"],
        "tok-1"
    );
}

#[tokio::test]
async fn sampling_request_is_relayed_and_answered() {
    let up = upstream().await;
    let session = connect(&up).await;
    let rec = Recorder::default();
    let r = call_tool(&session, "test_sampling", json!({"prompt": "6 x 7?"}), &rec)
        .await
        .unwrap();
    assert_eq!(text_of(&r), "LLM response: forty-two", "{r}");
    let methods: Vec<String> = rec
        .requests
        .lock()
        .unwrap()
        .iter()
        .map(|r| r.method.clone())
        .collect();
    assert_eq!(methods, ["sampling/createMessage"]);
    let stats = up.stats();
    assert_eq!(stats.server_requests, 1);
    assert_eq!(stats.client_responses, 1);

    // Through a channel handler, answered from another task.
    let (handler, mut rx) = channel_handler(8);
    let relay = tokio::spawn(async move {
        while let Some(m) = rx.recv().await {
            if let ServerMessage::Request { request, reply } = m {
                assert_eq!(request.method, "sampling/createMessage");
                let _ = reply.send(Ok(json!({
                    "role": "assistant",
                    "content": {"type": "text", "text": "via channel"},
                    "model": "m",
                })));
            }
        }
    });
    let r = call_tool(&session, "test_sampling", json!({"prompt": "p"}), &handler)
        .await
        .unwrap();
    assert_eq!(text_of(&r), "LLM response: via channel", "{r}");
    drop(handler);
    relay.await.unwrap();
}

#[tokio::test]
async fn dropped_stream_expires_the_session() {
    let up = upstream().await;
    let c = client();
    let session = connect(&up).await;
    // A request in flight when the stream goes away fails (Unreachable)…
    let slow = call_tool(&session, "slow", json!({"ms": 5000}), &NoopHandler);
    let drop_later = async {
        tokio::time::sleep(Duration::from_millis(200)).await;
        up.drop_sessions();
    };
    let (e, ()) = tokio::join!(slow, drop_later);
    match e.unwrap_err() {
        UpstreamError::Unreachable { url, reason } => {
            assert_eq!(url, up.sse_url());
            assert!(reason.contains("before the response"), "{reason}");
        }
        other => panic!("expected Unreachable, got {other:?}"),
    }
    // … and later ones say the session is gone, so callers open a new one.
    let e = session
        .request("tools/list", None, &NoopHandler)
        .await
        .unwrap_err();
    match &e {
        UpstreamError::SessionExpired { session_id, url } => {
            assert_eq!(Some(session_id.as_str()), session.session_id());
            assert_eq!(url, &up.sse_url());
        }
        other => panic!("expected SessionExpired, got {other:?}"),
    }
    let again = c
        .connect_with_transport(
            &up.sse_url(),
            Transport::Sse,
            HeaderMap::new(),
            "2025-11-25",
            T,
        )
        .await
        .unwrap();
    assert_ne!(again.session_id(), session.session_id());
    again
        .request("tools/list", None, &NoopHandler)
        .await
        .unwrap();
}

#[tokio::test]
async fn timeout_cancels_upstream_and_the_session_goes_on() {
    let up = upstream().await;
    let session = connect(&up).await;
    let opts = RequestOptions {
        timeout: Some(Duration::from_millis(200)),
        ..RequestOptions::default()
    };
    let e = session
        .request_with(
            "tools/call",
            Some(&json!({"name": "slow", "arguments": {"ms": 5000}})),
            &NoopHandler,
            &opts,
        )
        .await
        .unwrap_err();
    assert!(matches!(e, UpstreamError::Timeout { .. }), "{e:?}");
    assert!(eventually(|| up.stats().method("notifications/cancelled") == 1).await);
    let r = call_tool(
        &session,
        "echo",
        json!({"text": "still here"}),
        &NoopHandler,
    )
    .await
    .unwrap();
    assert_eq!(text_of(&r), "still here");
}

#[tokio::test]
async fn headers_versions_and_bad_endpoints() {
    let up = upstream().await;
    // Caller headers reach the upstream on the POSTs.
    let mut headers = HeaderMap::new();
    headers.insert("x-tenant", HeaderValue::from_static("acme"));
    let session = client()
        .connect_with_transport(&up.sse_url(), Transport::Sse, headers, "2024-11-05", T)
        .await
        .unwrap();
    assert_eq!(session.protocol_version(), "2024-11-05");
    let r = call_tool(&session, "echo_headers", json!({}), &NoopHandler)
        .await
        .unwrap();
    assert_eq!(r["structuredContent"]["headers"]["x-tenant"], "acme", "{r}");
    // The stateless version is not spoken on this transport: initialize asks
    // for the latest stateful one.
    let s = client()
        .connect_with_transport(
            &up.sse_url(),
            Transport::Sse,
            HeaderMap::new(),
            "2026-07-28",
            T,
        )
        .await
        .unwrap();
    assert_eq!(s.protocol_version(), "2025-11-25");

    // A Streamable HTTP endpoint is not an SSE endpoint: a typed error naming the URL.
    let e = client()
        .connect_with_transport(&up.url(), Transport::Sse, HeaderMap::new(), "2025-11-25", T)
        .await
        .unwrap_err();
    assert!(e.to_string().contains(&up.url()), "{e}");
    // Nobody listening.
    let e = client()
        .connect_with_transport(
            "http://127.0.0.1:9/sse",
            Transport::Sse,
            HeaderMap::new(),
            "2025-11-25",
            T,
        )
        .await
        .unwrap_err();
    assert!(matches!(e, UpstreamError::Unreachable { .. }), "{e:?}");

    // An endpoint on another origin is refused; a stream without one times out.
    let evil = serve(Router::new().route(
        "/sse",
        get(|| async {
            sse("event: endpoint\ndata: http://198.51.100.7/messages?session_id=x\n\n")
        }),
    ))
    .await;
    let e = client()
        .connect_with_transport(
            &format!("http://{evil}/sse"),
            Transport::Sse,
            HeaderMap::new(),
            "2025-11-25",
            T,
        )
        .await
        .unwrap_err();
    match &e {
        UpstreamError::Protocol { reason, .. } => {
            assert!(reason.contains("another origin"), "{reason}")
        }
        other => panic!("expected Protocol, got {other:?}"),
    }
    let silent = serve(Router::new().route("/sse", get(|| async { sse(": hello\n\n") }))).await;
    let e = client()
        .connect_with_transport(
            &format!("http://{silent}/sse"),
            Transport::Sse,
            HeaderMap::new(),
            "2025-11-25",
            Duration::from_millis(300),
        )
        .await
        .unwrap_err();
    assert!(
        matches!(
            e,
            UpstreamError::Timeout { .. } | UpstreamError::Protocol { .. }
        ),
        "{e:?}"
    );
}

fn sse(body: &'static str) -> axum::response::Response {
    ([(http::header::CONTENT_TYPE, "text/event-stream")], body).into_response()
}

async fn serve(app: Router) -> std::net::SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    addr
}
