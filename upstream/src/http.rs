//! The Streamable HTTP transport (`POST`/`GET`/`DELETE /mcp`) and the admin endpoints
//! (plus, in legacy mode, the routes of [`crate::legacy`]).

use std::convert::Infallible;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use bytes::Bytes;
use futures_util::future::{AbortHandle, Abortable};
use futures_util::StreamExt;
use http::header::{ACCEPT, CACHE_CONTROL, CONTENT_TYPE, HOST, ORIGIN};
use http::{HeaderMap, HeaderName, HeaderValue, StatusCode};
use serde_json::{Map, Value};
use tokio::sync::{mpsc, oneshot};

use crate::jobs::{self, Ctx, Out};
use crate::legacy;
use crate::mcp::{self, Reply, Req};
use crate::rpc::{self, Incoming, Kind};
use crate::state::{ClientCaps, Resume, Session, Shared, DRAFT_VERSION, STATEFUL_VERSIONS};
use crate::stateless;

pub const MCP_SESSION_ID: HeaderName = HeaderName::from_static("mcp-session-id");
pub const MCP_PROTOCOL_VERSION: HeaderName = HeaderName::from_static("mcp-protocol-version");
const LAST_EVENT_ID: HeaderName = HeaderName::from_static("last-event-id");
const APPLICATION_JSON: HeaderValue = HeaderValue::from_static("application/json");
const TEXT_EVENT_STREAM: HeaderValue = HeaderValue::from_static("text/event-stream");
const NO_CACHE: HeaderValue = HeaderValue::from_static("no-cache");

pub fn router(shared: Arc<Shared>) -> Router {
    let mut r = Router::new()
        .route("/mcp", post(post_mcp).get(get_mcp).delete(delete_mcp))
        .route("/stats", get(get_stats).delete(reset_stats))
        .route("/health", get(|| async { "ok" }));
    if shared.cfg.legacy_sse {
        r = r
            .route(legacy::SSE_PATH, get(legacy::get_sse))
            .route(legacy::MESSAGES_PATH, post(legacy::post_messages));
    }
    r.with_state(shared)
}

/// What the client's `Accept` allows.
#[derive(Clone, Copy)]
pub struct Accept {
    pub json: bool,
    pub sse: bool,
}

impl Accept {
    fn parse(headers: &HeaderMap) -> Self {
        let Some(v) = headers.get(ACCEPT) else {
            // No Accept: JSON is the default representation.
            return Self {
                json: true,
                sse: false,
            };
        };
        let v = v.as_bytes();
        let has = |needle: &[u8]| {
            v.windows(needle.len())
                .any(|w| w.eq_ignore_ascii_case(needle))
        };
        let any = has(b"*/*");
        Self {
            json: any || has(b"application/json") || has(b"application/*"),
            sse: any || has(b"text/event-stream") || has(b"text/*"),
        }
    }
}

fn strip_port(host: &str) -> &str {
    if host.starts_with('[') {
        match host.find(']') {
            Some(i) => &host[..=i],
            None => host,
        }
    } else {
        host.split(':').next().unwrap_or(host)
    }
}

/// DNS-rebinding protection: Host and (if sent) Origin must name an allowed host.
pub(crate) fn host_allowed(shared: &Shared, headers: &HeaderMap) -> bool {
    let Some(allowed) = &shared.cfg.allowed_hosts else {
        return true;
    };
    let ok = |name: &str| allowed.iter().any(|a| a.eq_ignore_ascii_case(name));
    if let Some(h) = headers.get(HOST) {
        match h.to_str() {
            Ok(h) if ok(strip_port(h)) => {}
            _ => return false,
        }
    }
    if let Some(o) = headers.get(ORIGIN) {
        let host = o
            .to_str()
            .ok()
            .and_then(|o| o.split_once("://"))
            .map(|(_, rest)| strip_port(rest.split('/').next().unwrap_or(rest)));
        match host {
            Some(h) if ok(h) => {}
            _ => return false,
        }
    }
    true
}

pub(crate) fn is_json_content(headers: &HeaderMap) -> bool {
    headers.get(CONTENT_TYPE).is_some_and(|v| {
        let v = v.as_bytes();
        v.len() >= 16 && v[..16].eq_ignore_ascii_case(b"application/json")
    })
}

fn json_response(status: StatusCode, body: Bytes) -> Response {
    let mut r = Response::new(Body::from(body));
    *r.status_mut() = status;
    r.headers_mut().insert(CONTENT_TYPE, APPLICATION_JSON);
    r
}

/// An HTTP error carrying a JSON-RPC error body.
pub fn rpc_http_error(status: StatusCode, id: &Value, code: i64, message: &str) -> Response {
    json_response(status, rpc::error_msg(id, code, message, None))
}

pub(crate) fn sse_headers(r: &mut Response) {
    r.headers_mut().insert(CONTENT_TYPE, TEXT_EVENT_STREAM);
    r.headers_mut().insert(CACHE_CONTROL, NO_CACHE);
}

/// A complete response as a one-event SSE stream.
fn sse_once(msg: &[u8]) -> Response {
    let mut r = Response::new(Body::from(rpc::sse_frame(None, msg)));
    sse_headers(&mut r);
    r
}

/// An SSE response: `first` frames, then whatever arrives on `rx` until it closes.
pub fn sse_stream(first: Vec<Bytes>, rx: Option<mpsc::UnboundedReceiver<Bytes>>) -> Response {
    let head = futures_util::stream::iter(first);
    let tail = futures_util::stream::unfold(rx, |rx| async move {
        let mut rx = rx?;
        let b = rx.recv().await?;
        Some((b, Some(rx)))
    });
    let body = Body::from_stream(head.chain(tail).map(Ok::<Bytes, Infallible>));
    let mut r = Response::new(body);
    sse_headers(&mut r);
    r
}

/// A complete JSON-RPC message, as JSON or SSE depending on mode and Accept.
fn reply_now(shared: &Shared, acc: Accept, msg: Bytes) -> Response {
    if acc.sse && (shared.cfg.sse || !acc.json) {
        sse_once(&msg)
    } else {
        json_response(StatusCode::OK, msg)
    }
}

pub(crate) fn accepted() -> Response {
    StatusCode::ACCEPTED.into_response()
}

/// Largest accepted POST body.
pub(crate) const MAX_BODY: usize = 4 * 1024 * 1024;

async fn post_mcp(State(shared): State<Arc<Shared>>, req: Request) -> Response {
    shared.stats.post_requests.fetch_add(1, Relaxed);
    // Take the parts apart instead of using the HeaderMap extractor, which clones.
    let (parts, body) = req.into_parts();
    let headers = parts.headers;
    let body = match axum::body::to_bytes(body, MAX_BODY).await {
        Ok(b) => b,
        Err(_) => {
            return rpc_http_error(
                StatusCode::PAYLOAD_TOO_LARGE,
                &Value::Null,
                rpc::SERVER_ERROR,
                "request body too large or unreadable",
            )
        }
    };
    if !host_allowed(&shared, &headers) {
        return rpc_http_error(
            StatusCode::FORBIDDEN,
            &Value::Null,
            rpc::SERVER_ERROR,
            "Forbidden: Host/Origin header not allowed",
        );
    }
    if !is_json_content(&headers) {
        return rpc_http_error(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            &Value::Null,
            rpc::SERVER_ERROR,
            "Unsupported Media Type: Content-Type must be application/json",
        );
    }
    let acc = Accept::parse(&headers);
    if !acc.json && !acc.sse {
        return rpc_http_error(
            StatusCode::NOT_ACCEPTABLE,
            &Value::Null,
            rpc::SERVER_ERROR,
            "Not Acceptable: Accept must allow application/json or text/event-stream",
        );
    }
    let version = headers
        .get(MCP_PROTOCOL_VERSION)
        .and_then(|v| v.to_str().ok());
    let session_id = headers.get(MCP_SESSION_ID).and_then(|v| v.to_str().ok());

    if body.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'[') {
        return batch(&shared, &headers, &body, acc, version, session_id).await;
    }
    let mut msg: Incoming<'_> = match serde_json::from_slice(&body) {
        Ok(m) => m,
        Err(_) => {
            return rpc_http_error(
                StatusCode::BAD_REQUEST,
                &Value::Null,
                rpc::PARSE_ERROR,
                "Parse error",
            )
        }
    };

    if shared.cfg.stateless && session_id.is_none() && stateless::is_draft(version, &msg) {
        return stateless::handle(&shared, &headers, msg, acc, version).await;
    }
    if msg.method.as_deref() == Some("initialize") && msg.id.is_some() {
        if !shared.cfg.stateful {
            let id = msg.id.take().unwrap_or(Value::Null);
            let text = format!("this server speaks only {DRAFT_VERSION}: use server/discover");
            return rpc_http_error(StatusCode::BAD_REQUEST, &id, -32022, &text);
        }
        return initialize(&shared, msg, acc);
    }
    if let Some(v) = version {
        if !STATEFUL_VERSIONS.contains(&v) {
            let id = msg.id.take().unwrap_or(Value::Null);
            let text = format!(
                "Bad Request: unsupported MCP-Protocol-Version {v:?} (supported: {})",
                STATEFUL_VERSIONS.join(", ")
            );
            return rpc_http_error(StatusCode::BAD_REQUEST, &id, rpc::SERVER_ERROR, &text);
        }
    }
    let session = match lookup_session(&shared, session_id) {
        Ok(s) => s,
        Err(r) => return *r,
    };
    let params = msg.params.take();
    match msg.kind() {
        Kind::Request { id, method } => {
            shared.stats.count_method(method);
            let reply = mcp::handle(Req {
                shared: &shared,
                session: Some(&session),
                id,
                method,
                params,
                headers: &headers,
            });
            match reply {
                Reply::Now(m) => reply_now(&shared, acc, m),
                Reply::Job(job) => run_job(&shared, &session, job, acc).await,
            }
        }
        Kind::Notification { method } => {
            shared.stats.count_method(method);
            notification(&session, method, params.as_ref());
            accepted()
        }
        Kind::Response { id, result, error } => {
            client_response(&shared, &session, &id, result, error);
            accepted()
        }
        Kind::Invalid { id, why } => {
            rpc_http_error(StatusCode::BAD_REQUEST, &id, rpc::INVALID_REQUEST, why)
        }
    }
}

/// The session named by the request: missing header is 400, unknown session 404.
fn lookup_session(
    shared: &Shared,
    session_id: Option<&str>,
) -> Result<Arc<Session>, Box<Response>> {
    let Some(sid) = session_id else {
        return Err(Box::new(rpc_http_error(
            StatusCode::BAD_REQUEST,
            &Value::Null,
            rpc::SERVER_ERROR,
            "Bad Request: Mcp-Session-Id header is required",
        )));
    };
    shared.session(sid).ok_or_else(|| {
        Box::new(rpc_http_error(
            StatusCode::NOT_FOUND,
            &Value::Null,
            rpc::SESSION_NOT_FOUND,
            "Session not found",
        ))
    })
}

fn initialize(shared: &Arc<Shared>, mut msg: Incoming<'_>, acc: Accept) -> Response {
    shared.stats.count_method("initialize");
    let id = msg.id.take().unwrap_or(Value::Null);
    if !(id.is_string() || id.is_number()) {
        return rpc_http_error(
            StatusCode::BAD_REQUEST,
            &Value::Null,
            rpc::INVALID_REQUEST,
            "request id must be a string or a number",
        );
    }
    let params = msg.params.take().unwrap_or(Value::Null);
    let version = mcp::negotiate(params.get("protocolVersion").and_then(Value::as_str));
    let caps = ClientCaps::from_value(params.get("capabilities"));
    let sid: Arc<str> = shared.new_session_id().into();
    let session = Arc::new(Session::new(version, caps));
    crate::write(&shared.sessions).insert(sid.clone(), session);
    shared.stats.sessions_initialized.fetch_add(1, Relaxed);
    let body = rpc::result_msg(&id, &mcp::initialize_result(shared, version));
    let mut r = reply_now(shared, acc, body);
    if let Ok(v) = HeaderValue::from_str(&sid) {
        r.headers_mut().insert(MCP_SESSION_ID, v);
    }
    r
}

pub(crate) fn notification(session: &Session, method: &str, params: Option<&Value>) {
    if method == "notifications/cancelled" {
        if let Some(rid) = params.and_then(|p| p.get("requestId")) {
            session.cancel(&rpc::id_key(rid));
        }
    }
}

pub(crate) fn client_response(
    shared: &Shared,
    session: &Session,
    id: &Value,
    result: Option<Value>,
    error: Option<Value>,
) {
    shared.stats.client_responses.fetch_add(1, Relaxed);
    let mut m = Map::new();
    if let Some(r) = result {
        m.insert("result".into(), r);
    }
    if let Some(e) = error {
        m.insert("error".into(), e);
    }
    session.deliver_response(id, Value::Object(m));
}

/// Run an asynchronous tool: streamed (SSE) when the client accepts it and the server is
/// in SSE mode or the tool sends messages before answering; otherwise answered with JSON
/// once done.
async fn run_job(
    shared: &Arc<Shared>,
    session: &Arc<Session>,
    job: mcp::Job,
    acc: Accept,
) -> Response {
    let key = rpc::id_key(&job.id);
    let (handle, registration) = AbortHandle::new_pair();
    let progress_token = job.progress_token.clone();
    if acc.sse && (shared.cfg.sse || job.talks || !acc.json) {
        let (sid, rx) = session.open_stream(shared.cfg.sse_retry_ms);
        session.register_inflight(key.clone(), handle, Some(sid));
        let ctx = Ctx {
            shared: shared.clone(),
            out: Out::Stream(session.clone(), sid),
            progress_token,
            log_level: None,
        };
        let s = session.clone();
        tokio::spawn(async move {
            let work = async {
                let msg = jobs::run(&ctx, job).await;
                ctx.finish(msg);
            };
            let _ = Abortable::new(work, registration).await;
            s.finish_inflight(&key);
        });
        sse_stream(Vec::new(), Some(rx))
    } else {
        let id = job.id.clone();
        session.register_inflight(key.clone(), handle, None);
        let ctx = Ctx {
            shared: shared.clone(),
            out: Out::Detached(session.clone()),
            progress_token,
            log_level: None,
        };
        let (tx, rx) = oneshot::channel();
        let s = session.clone();
        tokio::spawn(async move {
            let work = async {
                let msg = jobs::run(&ctx, job).await;
                if let Some(m) = ctx.finish(msg) {
                    let _ = tx.send(m);
                }
            };
            let _ = Abortable::new(work, registration).await;
            s.finish_inflight(&key);
        });
        match rx.await {
            Ok(m) => reply_now(shared, acc, m),
            Err(_) => reply_now(
                shared,
                acc,
                rpc::error_msg(&id, rpc::REQUEST_CANCELLED, "Request cancelled", None),
            ),
        }
    }
}

/// A JSON-RPC batch (2025-03-26): answered with a JSON array of the responses.
async fn batch(
    shared: &Arc<Shared>,
    headers: &HeaderMap,
    body: &[u8],
    acc: Accept,
    version: Option<&str>,
    session_id: Option<&str>,
) -> Response {
    let msgs: Vec<Incoming<'_>> = match serde_json::from_slice(body) {
        Ok(m) => m,
        Err(_) => {
            return rpc_http_error(
                StatusCode::BAD_REQUEST,
                &Value::Null,
                rpc::PARSE_ERROR,
                "Parse error",
            )
        }
    };
    if msgs.is_empty() {
        return rpc_http_error(
            StatusCode::BAD_REQUEST,
            &Value::Null,
            rpc::INVALID_REQUEST,
            "empty batch",
        );
    }
    if let Some(v) = version {
        if !STATEFUL_VERSIONS.contains(&v) || v == DRAFT_VERSION {
            return rpc_http_error(
                StatusCode::BAD_REQUEST,
                &Value::Null,
                rpc::SERVER_ERROR,
                "Bad Request: unsupported MCP-Protocol-Version",
            );
        }
    }
    let session = match lookup_session(shared, session_id) {
        Ok(s) => s,
        Err(r) => return *r,
    };
    let mut out: Vec<Bytes> = Vec::new();
    for mut msg in msgs {
        let params = msg.params.take();
        match msg.kind() {
            Kind::Request { id, method } => {
                shared.stats.count_method(method);
                let reply = mcp::handle(Req {
                    shared,
                    session: Some(&session),
                    id,
                    method,
                    params,
                    headers,
                });
                out.push(match reply {
                    Reply::Now(m) => m,
                    Reply::Job(job) => {
                        let ctx = Ctx {
                            shared: shared.clone(),
                            out: Out::Detached(session.clone()),
                            progress_token: job.progress_token.clone(),
                            log_level: None,
                        };
                        jobs::run(&ctx, job).await
                    }
                });
            }
            Kind::Notification { method } => {
                shared.stats.count_method(method);
                notification(&session, method, params.as_ref());
            }
            Kind::Response { id, result, error } => {
                client_response(shared, &session, &id, result, error)
            }
            Kind::Invalid { id, why } => {
                out.push(rpc::error_msg(&id, rpc::INVALID_REQUEST, why, None))
            }
        }
    }
    if out.is_empty() {
        return accepted();
    }
    let mut buf = Vec::with_capacity(out.iter().map(|m| m.len() + 1).sum::<usize>() + 2);
    buf.push(b'[');
    for (i, m) in out.iter().enumerate() {
        if i > 0 {
            buf.push(b',');
        }
        buf.extend_from_slice(m);
    }
    buf.push(b']');
    reply_now(shared, acc, Bytes::from(buf))
}

async fn get_mcp(State(shared): State<Arc<Shared>>, req: Request) -> Response {
    let headers = req.headers();
    shared.stats.get_requests.fetch_add(1, Relaxed);
    if !host_allowed(&shared, headers) {
        return rpc_http_error(
            StatusCode::FORBIDDEN,
            &Value::Null,
            rpc::SERVER_ERROR,
            "Forbidden: Host/Origin header not allowed",
        );
    }
    if headers.contains_key(ACCEPT) && !Accept::parse(headers).sse {
        return rpc_http_error(
            StatusCode::NOT_ACCEPTABLE,
            &Value::Null,
            rpc::SERVER_ERROR,
            "Not Acceptable: Accept must allow text/event-stream",
        );
    }
    let session_id = headers.get(MCP_SESSION_ID).and_then(|v| v.to_str().ok());
    if session_id.is_none() && shared.cfg.stateless {
        let version = headers
            .get(MCP_PROTOCOL_VERSION)
            .and_then(|v| v.to_str().ok());
        if version == Some(DRAFT_VERSION) {
            return StatusCode::METHOD_NOT_ALLOWED.into_response();
        }
    }
    let session = match lookup_session(&shared, session_id) {
        Ok(s) => s,
        Err(r) => return *r,
    };
    if let Some(last) = headers.get(LAST_EVENT_ID).and_then(|v| v.to_str().ok()) {
        if let Some((replay, rx)) = session.resume_standalone(last) {
            return sse_stream(replay, Some(rx));
        }
        if let Resume::Stream(replay, rx) = session.resume(last) {
            return sse_stream(replay, rx);
        }
    }
    match session.open_standalone() {
        Some(rx) => sse_stream(Vec::new(), Some(rx)),
        None => rpc_http_error(
            StatusCode::CONFLICT,
            &Value::Null,
            rpc::SERVER_ERROR,
            "Conflict: only one standalone SSE stream is allowed per session",
        ),
    }
}

async fn delete_mcp(State(shared): State<Arc<Shared>>, req: Request) -> Response {
    let headers = req.headers();
    shared.stats.delete_requests.fetch_add(1, Relaxed);
    if !host_allowed(&shared, headers) {
        return rpc_http_error(
            StatusCode::FORBIDDEN,
            &Value::Null,
            rpc::SERVER_ERROR,
            "Forbidden: Host/Origin header not allowed",
        );
    }
    let session_id = match headers.get(MCP_SESSION_ID).and_then(|v| v.to_str().ok()) {
        Some(s) => s,
        None => {
            return rpc_http_error(
                StatusCode::BAD_REQUEST,
                &Value::Null,
                rpc::SERVER_ERROR,
                "Bad Request: Mcp-Session-Id header is required",
            )
        }
    };
    match shared.remove_session(session_id) {
        Some(_) => {
            shared.stats.sessions_deleted.fetch_add(1, Relaxed);
            StatusCode::OK.into_response()
        }
        None => rpc_http_error(
            StatusCode::NOT_FOUND,
            &Value::Null,
            rpc::SESSION_NOT_FOUND,
            "Session not found",
        ),
    }
}

async fn get_stats(State(shared): State<Arc<Shared>>) -> Response {
    Json(crate::snapshot(&shared)).into_response()
}

async fn reset_stats(State(shared): State<Arc<Shared>>) -> Response {
    shared.stats.reset();
    StatusCode::NO_CONTENT.into_response()
}
