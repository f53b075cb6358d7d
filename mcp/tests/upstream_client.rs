//! The upstream client against real servers on loopback: the workspace's
//! test upstream (`fleetgate-test-upstream`, JSON and SSE modes, stateful and
//! stateless) and, for what it does not do (multi round-trip results, broken
//! answers), small axum fixtures defined here.
#![allow(clippy::unwrap_used)] // a failed unwrap is a failed test

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::http::{HeaderMap as AxumHeaders, StatusCode};
use axum::response::IntoResponse;
use axum::routing::post;
use axum::Router;
use fleetgate_mcp::jsonrpc::{ErrorObject, Notification, Request, METHOD_NOT_FOUND};
use fleetgate_mcp::upstream::BoxFuture;
use fleetgate_mcp::{
    channel_handler, discover, NoopHandler, RequestOptions, ServerMessage, ServerMessageHandler,
    UpstreamClient, UpstreamError,
};
use fleetgate_test_upstream::{RunningUpstream, Upstream};
use http::HeaderMap;
use serde_json::{json, Value};

const T: Duration = Duration::from_secs(10);

fn client() -> UpstreamClient {
    UpstreamClient::new()
        .client_info("fleetgate-tests", "0.0.0")
        .capabilities(json!({"sampling": {}, "elicitation": {}, "roots": {}}))
}

async fn upstream(sse: bool) -> RunningUpstream {
    Upstream::builder()
        .sse(sse)
        .spawn()
        .await
        .expect("test upstream starts")
}

/// Records notifications; answers sampling, elicitation and roots.
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
            "elicitation/create" => Ok(json!({
                "action": "accept",
                "content": {"username": "octocat", "email": "o@example.com"}
            })),
            "roots/list" => Ok(json!({"roots": []})),
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
    session: &fleetgate_mcp::UpstreamSession,
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

async fn full_cycle(sse: bool) {
    let up = upstream(sse).await;
    let session = client()
        .connect(&up.url(), HeaderMap::new(), "2025-11-25", T)
        .await
        .unwrap();
    assert_eq!(session.protocol_version(), "2025-11-25");
    assert!(!session.is_stateless());
    assert!(session.session_id().is_some());
    assert_eq!(session.server_info()["name"], "fleetgate-test-upstream");
    assert!(session.server_capabilities().get("tools").is_some());
    assert_eq!(up.stats().sessions_initialized, 1);
    assert_eq!(up.stats().method("notifications/initialized"), 1);

    // tools/list (paginated or not) through discover.
    let found = discover(&session).await.unwrap();
    let names: Vec<&str> = found
        .tools
        .iter()
        .map(|t| t["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, up.tool_names());
    if session.server_capabilities().get("prompts").is_some() {
        assert!(!found.prompts.is_empty());
    }

    // tools/call
    let r = call_tool(&session, "echo", json!({"text": "hi there"}), &NoopHandler)
        .await
        .unwrap();
    assert_eq!(text_of(&r), "hi there");

    // A JSON-RPC error from the upstream.
    let e = session
        .request("no/such/method", None, &NoopHandler)
        .await
        .unwrap_err();
    match &e {
        UpstreamError::Rpc { error, url } => {
            assert_eq!(error.code, METHOD_NOT_FOUND);
            assert_eq!(url, &up.url());
        }
        other => panic!("expected an Rpc error, got {other:?}"),
    }
    assert!(e.to_string().contains(&up.url()));

    // notify
    session
        .notify("notifications/roots/list_changed", None)
        .await
        .unwrap();

    // close: DELETE, then the session is gone.
    session.close().await.unwrap();
    assert_eq!(up.stats().sessions_deleted, 1);
    let e = session
        .request("tools/list", None, &NoopHandler)
        .await
        .unwrap_err();
    assert!(e.is_session_expired(), "{e:?}");
    assert!(e.to_string().contains(&up.url()));
}

#[tokio::test]
async fn json_mode_initialize_list_call_close() {
    full_cycle(false).await;
}

#[tokio::test]
async fn sse_mode_initialize_list_call_close() {
    full_cycle(true).await;
}

#[tokio::test]
async fn sse_notifications_and_server_requests_reach_the_handler() {
    let up = upstream(true).await;
    let session = client()
        .connect(&up.url(), HeaderMap::new(), "2025-06-18", T)
        .await
        .unwrap();
    assert_eq!(session.protocol_version(), "2025-06-18");
    let rec = Recorder::default();

    // Progress notifications arrive before the result.
    let r = session
        .request(
            "tools/call",
            Some(json!({"name": "test_tool_with_progress", "arguments": {}, "_meta": {"progressToken": "tok-1"}})),
            &rec,
        )
        .await
        .unwrap();
    assert_eq!(text_of(&r), "tok-1");
    {
        let notes = rec.notifications.lock().unwrap();
        let progress: Vec<&Notification> = notes
            .iter()
            .filter(|n| n.method == "notifications/progress")
            .collect();
        assert_eq!(progress.len(), 3, "{notes:?}");
        assert_eq!(progress[2].params.as_ref().unwrap()["progress"], 100);
    }

    // Logging notifications once a level is set.
    session
        .request("logging/setLevel", Some(json!({"level": "debug"})), &rec)
        .await
        .unwrap();
    call_tool(&session, "test_tool_with_logging", json!({}), &rec)
        .await
        .unwrap();
    assert!(rec
        .notifications
        .lock()
        .unwrap()
        .iter()
        .any(|n| n.method == "notifications/message"));

    // Server → client requests mid-call, answered on the same session.
    let r = call_tool(&session, "test_sampling", json!({"prompt": "6 x 7?"}), &rec)
        .await
        .unwrap();
    assert_eq!(text_of(&r), "LLM response: forty-two", "{r}");
    let r = call_tool(
        &session,
        "test_elicitation",
        json!({"message": "who?"}),
        &rec,
    )
    .await
    .unwrap();
    assert!(text_of(&r).contains("action=accept"), "{r}");
    assert!(text_of(&r).contains("octocat"), "{r}");
    let methods: Vec<String> = rec
        .requests
        .lock()
        .unwrap()
        .iter()
        .map(|r| r.method.clone())
        .collect();
    assert_eq!(methods, ["sampling/createMessage", "elicitation/create"]);
    let stats = up.stats();
    assert_eq!(stats.server_requests, 2);
    assert_eq!(stats.client_responses, 2);
    session.close().await.unwrap();
}

#[tokio::test]
async fn channel_handler_relays_from_another_task() {
    let up = upstream(true).await;
    let session = client()
        .connect(&up.url(), HeaderMap::new(), "2025-11-25", T)
        .await
        .unwrap();
    let (handler, mut rx) = channel_handler(8);
    let relay = tokio::spawn(async move {
        let mut seen = Vec::new();
        while let Some(msg) = rx.recv().await {
            match msg {
                ServerMessage::Notification(n) => seen.push(n.method),
                ServerMessage::Request { request, reply } => {
                    seen.push(request.method.clone());
                    let _ = reply.send(Ok(json!({
                        "role": "assistant",
                        "content": {"type": "text", "text": "via channel"},
                        "model": "m",
                        "stopReason": "endTurn"
                    })));
                }
            }
        }
        seen
    });
    let r = call_tool(&session, "test_sampling", json!({"prompt": "p"}), &handler)
        .await
        .unwrap();
    assert_eq!(text_of(&r), "LLM response: via channel");
    drop(handler);
    assert_eq!(relay.await.unwrap(), ["sampling/createMessage"]);
}

#[tokio::test]
async fn sse_answer_is_resumed_with_last_event_id() {
    let up = Upstream::builder()
        .sse(true)
        .sse_retry_ms(20)
        .spawn()
        .await
        .unwrap();
    let session = client()
        .connect(&up.url(), HeaderMap::new(), "2025-11-25", T)
        .await
        .unwrap();
    let r = call_tool(&session, "test_reconnection", json!({}), &NoopHandler)
        .await
        .unwrap();
    assert!(text_of(&r).contains("properly reconnected"), "{r}");
    assert!(up.stats().get_requests >= 1);
}

#[tokio::test]
async fn expired_session_is_reported_and_a_new_one_works() {
    let up = upstream(false).await;
    let c = client();
    let session = c
        .connect(&up.url(), HeaderMap::new(), "2025-11-25", T)
        .await
        .unwrap();
    up.drop_sessions();
    let e = session
        .request("tools/list", None, &NoopHandler)
        .await
        .unwrap_err();
    match &e {
        UpstreamError::SessionExpired { session_id, .. } => {
            assert_eq!(Some(session_id.as_str()), session.session_id())
        }
        other => panic!("expected SessionExpired, got {other:?}"),
    }
    let again = c
        .connect(&up.url(), HeaderMap::new(), "2025-11-25", T)
        .await
        .unwrap();
    assert_ne!(again.session_id(), session.session_id());
    again
        .request("tools/list", None, &NoopHandler)
        .await
        .unwrap();
}

#[tokio::test]
async fn deadline_gives_timeout_and_cancels_upstream() {
    let up = upstream(true).await;
    let session = client()
        .connect(&up.url(), HeaderMap::new(), "2025-11-25", T)
        .await
        .unwrap();
    let opts = RequestOptions {
        timeout: Some(Duration::from_millis(200)),
        ..RequestOptions::default()
    };
    let started = std::time::Instant::now();
    let e = session
        .request_with(
            "tools/call",
            Some(&json!({"name": "slow", "arguments": {"ms": 5000}})),
            &NoopHandler,
            &opts,
        )
        .await
        .unwrap_err();
    assert!(started.elapsed() < Duration::from_secs(3));
    match &e {
        UpstreamError::Timeout { after, url } => {
            assert_eq!(*after, Duration::from_millis(200));
            assert_eq!(url, &up.url());
        }
        other => panic!("expected Timeout, got {other:?}"),
    }
    assert!(e.to_string().contains("200 ms"));
    // notifications/cancelled reaches the upstream in the background.
    let mut cancelled = 0;
    for _ in 0..100 {
        cancelled = up.stats().method("notifications/cancelled");
        if cancelled > 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(cancelled, 1);
}

#[tokio::test]
async fn concurrent_requests_share_a_session() {
    let up = upstream(true).await;
    let session = client()
        .connect(&up.url(), HeaderMap::new(), "2025-11-25", T)
        .await
        .unwrap();
    let calls = (0..16).map(|i| {
        let session = &session;
        async move {
            let r = call_tool(
                session,
                "echo",
                json!({"text": format!("n{i}")}),
                &NoopHandler,
            )
            .await
            .unwrap();
            assert_eq!(text_of(&r), format!("n{i}"));
        }
    });
    for c in calls.collect::<Vec<_>>() {
        c.await;
    }
    let (a, b) = tokio::join!(
        call_tool(&session, "slow", json!({"ms": 150}), &NoopHandler),
        call_tool(&session, "echo", json!({"text": "fast"}), &NoopHandler),
    );
    a.unwrap();
    assert_eq!(text_of(&b.unwrap()), "fast");
}

#[tokio::test]
async fn unreachable_and_http_errors_name_the_url() {
    // A port nobody listens on.
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let url = format!("http://127.0.0.1:{port}/mcp");
    let e = client()
        .connect(&url, HeaderMap::new(), "2025-11-25", T)
        .await
        .unwrap_err();
    assert!(matches!(e, UpstreamError::Unreachable { .. }), "{e:?}");
    assert!(e.to_string().contains(&url), "{e}");
    // The cause is said, not just "client error".
    assert!(e.to_string().to_lowercase().contains("refused"), "{e}");

    // A redirect is not followed: the upstream is called at the URL registered.
    let up = upstream(false).await;
    let target = up.url();
    let app = Router::new().route(
        "/mcp",
        post(move || {
            let target = target.clone();
            async move {
                (
                    StatusCode::TEMPORARY_REDIRECT,
                    [(http::header::LOCATION, target)],
                )
            }
        }),
    );
    let moved = format!("http://{}/mcp", serve(app).await);
    let e = client()
        .connect(&moved, HeaderMap::new(), "2025-11-25", T)
        .await
        .unwrap_err();
    assert!(
        matches!(e, UpstreamError::Http { status: 307, .. }),
        "{e:?}"
    );
    assert!(e.to_string().contains(&moved), "{e}");

    // A wrong path on a live server: HTTP 404 without a session.
    let url = format!("{}/nope", up.base_url());
    let e = client()
        .connect(&url, HeaderMap::new(), "2025-11-25", T)
        .await
        .unwrap_err();
    match &e {
        UpstreamError::Http { status, body, .. } => {
            assert_eq!(*status, 404);
            assert!(body.chars().count() <= 200);
        }
        other => panic!("expected Http, got {other:?}"),
    }
    assert!(e.to_string().contains(&url), "{e}");

    // An unsupported version is refused before anything is sent.
    let e = client()
        .connect(&up.url(), HeaderMap::new(), "2024-01-01", T)
        .await
        .unwrap_err();
    assert!(matches!(e, UpstreamError::Protocol { .. }), "{e:?}");
}

#[tokio::test]
async fn caller_headers_reach_the_upstream() {
    let up = upstream(false).await;
    let mut headers = HeaderMap::new();
    headers.insert("authorization", "Bearer t0ken".parse().unwrap());
    headers.insert("accept", "text/plain".parse().unwrap()); // overridden
    let session = client()
        .connect(&up.url(), headers, "2025-11-25", T)
        .await
        .unwrap();
    let r = call_tool(&session, "echo_headers", json!({}), &NoopHandler)
        .await
        .unwrap();
    let h = &r["structuredContent"];
    let h = h.get("headers").unwrap_or(h);
    assert_eq!(h["authorization"], "Bearer t0ken", "{r}");
    assert_eq!(h["mcp-protocol-version"], "2025-11-25", "{r}");
    assert_eq!(h["mcp-session-id"], session.session_id().unwrap(), "{r}");
    let accept = h["accept"].as_str().unwrap_or_default();
    assert!(
        accept.contains("application/json") && accept.contains("text/event-stream"),
        "{r}"
    );
}

#[tokio::test]
async fn stateless_upstream_needs_no_initialize() {
    let up = upstream(false).await;
    let session = client()
        .connect(&up.url(), HeaderMap::new(), "2026-07-28", T)
        .await
        .unwrap();
    assert!(session.is_stateless());
    assert_eq!(session.protocol_version(), "2026-07-28");
    assert_eq!(session.session_id(), None);
    assert_eq!(session.server_info()["name"], "fleetgate-test-upstream");
    assert_eq!(up.stats().sessions_initialized, 0);
    let found = session.discover().await.unwrap();
    // The stateless listing may add draft-only tools to the stateful ones.
    for name in up.tool_names() {
        assert!(
            found.tools.iter().any(|t| t["name"] == name.as_str()),
            "{name}"
        );
    }
    let r = call_tool(&session, "echo", json!({"text": "stateless"}), &NoopHandler)
        .await
        .unwrap();
    assert_eq!(text_of(&r), "stateless");
    let r = call_tool(&session, "echo_headers", json!({}), &NoopHandler)
        .await
        .unwrap();
    let h = &r["structuredContent"];
    let h = h.get("headers").unwrap_or(h);
    assert_eq!(h["mcp-method"], "tools/call", "{r}");
    assert_eq!(h["mcp-name"], "echo_headers", "{r}");
    assert_eq!(h["mcp-protocol-version"], "2026-07-28", "{r}");
    assert!(up.stats().stateless_requests >= 3);
    session.close().await.unwrap(); // nothing to delete
    assert_eq!(up.stats().delete_requests, 0);

    // In SSE mode too.
    let up = upstream(true).await;
    let session = client()
        .connect(&up.url(), HeaderMap::new(), "2026-07-28", T)
        .await
        .unwrap();
    let r = call_tool(&session, "echo", json!({"text": "sse"}), &NoopHandler)
        .await
        .unwrap();
    assert_eq!(text_of(&r), "sse");
}

#[tokio::test]
async fn stateless_request_falls_back_to_initialize_on_a_legacy_upstream() {
    let up = Upstream::builder()
        .stateless_draft(false)
        .spawn()
        .await
        .unwrap();
    let session = client()
        .connect(&up.url(), HeaderMap::new(), "2026-07-28", T)
        .await
        .unwrap();
    assert!(!session.is_stateless());
    assert_eq!(session.protocol_version(), "2025-11-25");
    assert!(session.session_id().is_some());
    let r = call_tool(&session, "echo", json!({"text": "legacy"}), &NoopHandler)
        .await
        .unwrap();
    assert_eq!(text_of(&r), "legacy");
}

// ---------------------------------------------------------------------------
// Fixtures for what the test upstream does not do.

async fn serve(app: Router) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    addr
}

fn json_response(v: Value) -> axum::response::Response {
    (
        StatusCode::OK,
        [("content-type", "application/json")],
        v.to_string(),
    )
        .into_response()
}

/// A stateless (2026-07-28) server whose `tools/call` needs an elicitation
/// answer first (multi round-trip requests).
#[tokio::test]
async fn stateless_input_required_is_resolved_through_the_handler() {
    let rounds = Arc::new(AtomicUsize::new(0));
    let seen_headers = Arc::new(Mutex::new(Vec::<(String, String)>::new()));
    let app = {
        let rounds = rounds.clone();
        let seen_headers = seen_headers.clone();
        Router::new().route(
            "/mcp",
            post(move |headers: AxumHeaders, body: String| {
                let rounds = rounds.clone();
                let seen_headers = seen_headers.clone();
                async move {
                    let req: Value = serde_json::from_str(&body).unwrap();
                    let id = req["id"].clone();
                    let meta = &req["params"]["_meta"];
                    assert_eq!(meta["io.modelcontextprotocol/protocolVersion"], "2026-07-28");
                    assert_eq!(meta["io.modelcontextprotocol/clientInfo"]["name"], "fleetgate-tests");
                    seen_headers.lock().unwrap().push((
                        headers["mcp-method"].to_str().unwrap().to_owned(),
                        headers
                            .get("mcp-name")
                            .map(|v| v.to_str().unwrap().to_owned())
                            .unwrap_or_default(),
                    ));
                    let result = match req["method"].as_str().unwrap() {
                        "server/discover" => json!({
                            "resultType": "complete",
                            "supportedVersions": ["2026-07-28"],
                            "capabilities": {"tools": {}},
                            "_meta": {"io.modelcontextprotocol/serverInfo": {"name": "mrtr", "version": "1"}}
                        }),
                        "tools/call" => {
                            let n = rounds.fetch_add(1, Ordering::SeqCst);
                            let params = &req["params"];
                            if n == 0 {
                                assert!(params.get("inputResponses").is_none());
                                assert!(params.get("requestState").is_none());
                                json!({
                                    "resultType": "input_required",
                                    "inputRequests": {
                                        "who": {"method": "elicitation/create", "params": {
                                            "mode": "form", "message": "name?",
                                            "requestedSchema": {"type": "object", "properties": {"username": {"type": "string"}}}
                                        }}
                                    },
                                    "requestState": "opaque-1"
                                })
                            } else {
                                assert_eq!(params["requestState"], "opaque-1");
                                assert_eq!(params["arguments"]["x"], 1);
                                let name = &params["inputResponses"]["who"]["content"]["username"];
                                json!({
                                    "resultType": "complete",
                                    "content": [{"type": "text", "text": format!("hello {}", name.as_str().unwrap())}]
                                })
                            }
                        }
                        other => panic!("unexpected {other}"),
                    };
                    json_response(json!({"jsonrpc": "2.0", "id": id, "result": result}))
                }
            }),
        )
    };
    let addr = serve(app).await;
    let session = client()
        .connect(
            &format!("http://{addr}/mcp"),
            HeaderMap::new(),
            "2026-07-28",
            T,
        )
        .await
        .unwrap();
    assert_eq!(session.server_info()["name"], "mrtr");
    let rec = Recorder::default();
    let r = call_tool(&session, "greet", json!({"x": 1}), &rec)
        .await
        .unwrap();
    assert_eq!(text_of(&r), "hello octocat");
    assert_eq!(rounds.load(Ordering::SeqCst), 2);
    {
        let reqs = rec.requests.lock().unwrap();
        assert_eq!(reqs.len(), 1);
        assert_eq!(reqs[0].method, "elicitation/create");
        assert_eq!(reqs[0].id, fleetgate_mcp::Id::String("who".into()));
        let headers = seen_headers.lock().unwrap();
        assert_eq!(headers[0], ("server/discover".to_owned(), String::new()));
        assert_eq!(headers[1], ("tools/call".to_owned(), "greet".to_owned()));
    }

    // Without resolution the interim result comes back as is.
    let opts = RequestOptions {
        resolve_input_required: false,
        ..RequestOptions::default()
    };
    rounds.store(0, Ordering::SeqCst);
    let r = session
        .request_with(
            "tools/call",
            Some(&json!({"name": "greet", "arguments": {"x": 1}})),
            &rec,
            &opts,
        )
        .await
        .unwrap();
    let r = fleetgate_mcp::jsonrpc::value_of(&r);
    assert_eq!(r["resultType"], "input_required");
}

/// Answers that break the protocol or fail over HTTP.
#[tokio::test]
async fn broken_answers_are_typed_errors() {
    let app = Router::new().route(
        "/mcp",
        post(|body: String| async move {
            let req: Value = serde_json::from_str(&body).unwrap();
            let id = req["id"].clone();
            let sse = |s: String| {
                (StatusCode::OK, [("content-type", "text/event-stream")], s).into_response()
            };
            match req["method"].as_str().unwrap_or("") {
                "initialize" => (
                    StatusCode::OK,
                    [("content-type", "application/json"), ("mcp-session-id", "s-1")],
                    json!({"jsonrpc": "2.0", "id": id, "result": {
                        "protocolVersion": "2025-06-18", "capabilities": {}, "serverInfo": {"name": "broken", "version": "0"}
                    }})
                    .to_string(),
                )
                    .into_response(),
                "notifications/initialized" => StatusCode::ACCEPTED.into_response(),
                // The stream ends without a response and without event ids.
                "sse/truncated" => sse(
                    "event: message\ndata: {\"jsonrpc\":\"2.0\",\"method\":\"notifications/message\",\"params\":{}}\n\n"
                        .to_owned(),
                ),
                // An error inside an SSE stream, after junk and a stray response.
                "sse/error" => sse(format!(
                    ": hi\n\ndata: not json\n\ndata: {{\"jsonrpc\":\"2.0\",\"id\":999,\"result\":{{}}}}\n\nevent: message\ndata: {}\n\n",
                    json!({"jsonrpc":"2.0","id":id,"error":{"code":-32042,"message":"nope","data":{"k":1}}})
                )),
                // The final event lacks its blank line.
                "sse/no-blank-line" => sse(format!(
                    "data: {}",
                    json!({"jsonrpc":"2.0","id":id,"result":{"ok":true}})
                )),
                "http/500" => (StatusCode::INTERNAL_SERVER_ERROR, "x".repeat(5000)).into_response(),
                "wrong/content-type" => (StatusCode::OK, [("content-type", "text/html")], "<html>").into_response(),
                "wrong/id" => json_response(json!({"jsonrpc":"2.0","id":"other","result":{}})),
                "accepted" => StatusCode::ACCEPTED.into_response(),
                _ => json_response(json!({"jsonrpc":"2.0","id":id,"result":{}})),
            }
        }),
    );
    let addr = serve(app).await;
    let url = format!("http://{addr}/mcp");
    let session = client()
        .connect(&url, HeaderMap::new(), "2025-11-25", T)
        .await
        .unwrap();
    assert_eq!(session.protocol_version(), "2025-06-18"); // the server's choice
    assert_eq!(session.session_id(), Some("s-1"));

    let rec = Recorder::default();
    let e = session
        .request("sse/truncated", None, &rec)
        .await
        .unwrap_err();
    assert!(matches!(e, UpstreamError::Protocol { .. }), "{e:?}");
    assert!(e.to_string().contains("ended before the response"), "{e}");
    assert_eq!(rec.notifications.lock().unwrap().len(), 1);

    let e = session.request("sse/error", None, &rec).await.unwrap_err();
    match e {
        UpstreamError::Rpc { error, .. } => {
            assert_eq!(error.code, -32042);
            assert_eq!(error.data, Some(json!({"k": 1})));
        }
        other => panic!("expected Rpc, got {other:?}"),
    }

    let r = session
        .request("sse/no-blank-line", None, &rec)
        .await
        .unwrap();
    assert_eq!(r, json!({"ok": true}));

    let e = session.request("http/500", None, &rec).await.unwrap_err();
    match &e {
        UpstreamError::Http { status, body, .. } => {
            assert_eq!(*status, 500);
            assert_eq!(body.chars().count(), 200);
        }
        other => panic!("expected Http, got {other:?}"),
    }
    assert!(e.to_string().contains(&url));

    for method in ["wrong/content-type", "wrong/id", "accepted"] {
        let e = session.request(method, None, &rec).await.unwrap_err();
        assert!(
            matches!(e, UpstreamError::Protocol { .. }),
            "{method}: {e:?}"
        );
        assert!(e.to_string().contains(&url), "{e}");
    }
    // 404 on close is fine (already gone) — this fixture has no DELETE route: 405.
    session.close().await.unwrap();
}
