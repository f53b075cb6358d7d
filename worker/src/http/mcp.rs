//! MCP Streamable HTTP at `/mcp` (scope: everything the caller may see) and
//! `/servers/{id}/mcp` (scope: that virtual server; an unknown id is 404 before
//! anything else runs).
//!
//! POST carries one JSON-RPC message (or a batch). The answer is JSON, unless the
//! upstream sends something mid-call (progress, logging, sampling, elicitation)
//! before the result and the client accepts `text/event-stream`: then the answer
//! becomes an SSE stream carrying those messages and, last, the result. GET opens
//! the session's server→client stream; DELETE ends the session.
//!
//! Every SSE event carries an id (`{stream}_{seq}`, see [`events`]); a GET with
//! `Last-Event-ID` resumes that stream. A POST's SSE stream is written by the
//! call's own task, so a dropped connection does not cancel the call.

#![allow(clippy::result_large_err)] // a handler step fails with the Response to send

use crate::gateway::dispatch::{dispatch, Context, Upstreams};
use crate::gateway::error::RpcError;
use crate::gateway::events::{self, EventStore};
use crate::gateway::redis_affinity::{short, Reclaim, RedisAffinity};
use crate::gateway::scope::{Principal, Scope};
use crate::gateway::session::{Relay, Session};
use crate::http::forward::{forward, forward_to, ForwardError, OwnerUnreachable, Target};
use crate::metrics::Metrics;
use crate::state::AppState;
use axum::body::{Body, Bytes};
use axum::extract::Request;
use axum::http::{header, HeaderMap, HeaderName, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use fleetgate_mcp::jsonrpc::{self, ErrorObject, Id, Message, Parsed};
use fleetgate_mcp::protocol::{
    self, meta, methods, LAST_EVENT_ID, MCP_PROTOCOL_VERSION, MCP_SESSION_ID, X_MCP_SESSION_ID,
};
use fleetgate_shared::config::ForwardMode;
use futures_util::stream;
use futures_util::FutureExt;
use serde_json::value::RawValue;
use serde_json::Value;
use std::collections::VecDeque;
use std::convert::Infallible;
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context as TaskContext, Poll};
use tokio::sync::mpsc;

/// `/mcp` (`server: None`: everything the caller may see) and
/// `/servers/{id}/mcp` (that virtual server only; an unknown id is 404 before
/// anything else runs): the scope, then the method's handler.
pub async fn serve(
    st: &AppState,
    server: Option<String>,
    who: Principal,
    req: Request,
) -> Response {
    let scope = match server {
        None => scoped(&who, Scope::All),
        Some(id) => server_scope(st, &who, id),
    };
    let scope = match scope {
        Ok(scope) => scope,
        Err(refused) => return refused,
    };
    let (parts, body) = req.into_parts();
    let h = &parts.headers;
    match parts.method {
        Method::POST => match crate::http::read_body(body, st.gateway_cfg.max_body_bytes).await {
            Ok(body) => handle_post(st, scope, who, h, body, false).await,
            Err(refused) => refused,
        },
        Method::GET => handle_get(st, scope, who, h, false).await,
        Method::DELETE => handle_delete(st, scope, who, h, false).await,
        _ => method_not_allowed("GET, POST, DELETE"),
    }
}

/// 405, with the methods the path takes.
pub fn method_not_allowed(allow: &'static str) -> Response {
    let mut resp = detail(StatusCode::METHOD_NOT_ALLOWED, "Method Not Allowed");
    resp.headers_mut()
        .insert(header::ALLOW, HeaderValue::from_static(allow));
    resp
}

/// The scope the caller gets on this path (a server-scoped token is confined
/// to its server), or 403.
fn scoped(who: &Principal, asked: Scope) -> Result<Scope, Response> {
    who.effective_scope(asked)
        .map_err(|e| rpc_error(StatusCode::FORBIDDEN, &Id::Null, &e.to_error_object()))
}

/// The scope of `/servers/{id}/…`, or 404.
fn server_scope(st: &AppState, who: &Principal, id: String) -> Result<Scope, Response> {
    let scope = scoped(who, Scope::Server(id.into()))?;
    match st.core.registry.snapshot().scope(&scope) {
        Some(_) => Ok(scope),
        None => Err(detail(StatusCode::NOT_FOUND, "Server not found")),
    }
}

/// A `{"detail": …}` answer (ContextForge's error shape), for every path that
/// does not speak JSON-RPC: REST, and transport-level refusals.
pub fn detail(status: StatusCode, msg: &str) -> Response {
    (status, axum::Json(serde_json::json!({ "detail": msg }))).into_response()
}

/// A JSON-RPC error answer with an HTTP status.
pub fn rpc_error(status: StatusCode, id: &Id, err: &ErrorObject) -> Response {
    json_body(status, jsonrpc::encode_error(id, err))
}

/// A JSON answer, built directly (axum's tuple `IntoResponse` goes through
/// its response-parts machinery: about 900 instructions, on every call).
pub fn json_body(status: StatusCode, body: Vec<u8>) -> Response {
    let mut resp = Response::new(Body::from(body));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(protocol::CONTENT_TYPE_JSON),
    );
    resp
}

/// A header's value as text. Named by a [`HeaderName`] constant: a `&str`
/// name would be parsed on every lookup.
fn header_str(h: &HeaderMap, name: HeaderName) -> Option<&str> {
    h.get(name).and_then(|v| v.to_str().ok())
}

fn accepts(h: &HeaderMap, mime: &str) -> bool {
    header_str(h, header::ACCEPT).is_some_and(|a| a.contains(mime) || a.contains("*/*"))
}

fn session_id(h: &HeaderMap) -> Option<&str> {
    header_str(h, MCP_SESSION_ID).or_else(|| header_str(h, X_MCP_SESSION_ID))
}

/// DNS-rebinding protection: `Origin`, when present, and `Host`, when
/// `MCP_ALLOWED_HOSTS` is set, must be allowed.
fn check_origin(st: &AppState, h: &HeaderMap) -> Result<(), Response> {
    let cfg = &st.gateway_cfg;
    if let Some(origin) = header_str(h, header::ORIGIN) {
        let ok = cfg.allowed_origins.iter().any(|o| {
            o == "*"
                || origin == o
                || origin
                    .strip_prefix(o.as_str())
                    .is_some_and(|r| r.starts_with(':'))
        });
        if !ok {
            return Err(detail(
                StatusCode::FORBIDDEN,
                &format!("Origin {origin} is not allowed (MCP_ALLOWED_ORIGINS)"),
            ));
        }
    }
    if !cfg.allowed_hosts.is_empty() {
        let host = header_str(h, header::HOST).unwrap_or("");
        let bare = host.rsplit_once(':').map_or(host, |(h, _)| h);
        if !cfg.allowed_hosts.iter().any(|a| a == host || a == bare) {
            return Err(detail(
                StatusCode::FORBIDDEN,
                &format!("Host {host} is not allowed (MCP_ALLOWED_HOSTS)"),
            ));
        }
    }
    Ok(())
}

/// The protocol version a request declares: header, or the stateless `_meta` key.
fn declared_version<'a>(h: &'a HeaderMap, params: Option<&'a Value>) -> Option<&'a str> {
    header_str(h, MCP_PROTOCOL_VERSION)
        .or_else(|| params?.get("_meta")?.get(meta::PROTOCOL_VERSION)?.as_str())
}

fn passthrough(st: &AppState, h: &HeaderMap) -> Vec<(HeaderName, HeaderValue)> {
    st.passthrough()
        .iter()
        .filter_map(|name| Some((name.clone(), h.get(name)?.clone())))
        .collect()
}

/// POST, whether from a client (`forwarded == false`) or from another worker
/// on the session owner's behalf (then it is never forwarded again).
pub async fn handle_post(
    st: &AppState,
    scope: Scope,
    principal: Principal,
    h: &HeaderMap,
    body: Bytes,
    forwarded: bool,
) -> Response {
    if let Err(r) = check_origin(st, h) {
        return r;
    }
    let adopt = match forwarded {
        true => true,
        false => match route_to_owner(st, Method::POST, &scope, &principal, h, &body).await {
            Route::Answered(r) => return r,
            Route::Here { adopt } => adopt,
        },
    };
    if !header_str(h, header::CONTENT_TYPE)
        .is_some_and(|c| c.starts_with(protocol::CONTENT_TYPE_JSON))
    {
        return rpc_error(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            &Id::Null,
            &ErrorObject::invalid_request(
                "Unsupported Media Type: Content-Type must be application/json",
            ),
        );
    }
    let msg = match jsonrpc::parse(&body) {
        Ok(Parsed::Single(m)) => m,
        Ok(Parsed::Batch(items)) => {
            return Box::pin(handle_batch(st, scope, principal, h, items, adopt)).await
        }
        Err(e) => return rpc_error(StatusCode::BAD_REQUEST, &Id::Null, &e.to_error_object()),
    };
    if let Message::Request(r) = &msg {
        if r.method == methods::INITIALIZE {
            return Box::pin(initialize(
                st,
                scope,
                principal,
                r.id.clone(),
                r.params.clone(),
            ))
            .await;
        }
    }
    let params = match &msg {
        Message::Request(r) => r.params.as_ref(),
        Message::Notification(n) => n.params.as_ref(),
        _ => None,
    };
    let version = declared_version(h, params);
    if let Some(v) = version {
        if !protocol::is_supported_version(v) {
            return rpc_error(
                StatusCode::BAD_REQUEST,
                msg.id().unwrap_or(&Id::Null),
                &ErrorObject::invalid_request(format!(
                    "Bad Request: unsupported MCP-Protocol-Version {v}; supported: {}",
                    protocol::SUPPORTED_PROTOCOL_VERSIONS.join(", ")
                )),
            );
        }
    }
    let stateless = version.is_some_and(protocol::is_stateless_version);
    let session = if stateless {
        None
    } else {
        match resolve_session(st, &scope, &principal, h, msg.id(), adopt) {
            Ok(s) => Some(s),
            Err(r) => return r,
        }
    };
    match msg {
        Message::Notification(_) => StatusCode::ACCEPTED.into_response(),
        Message::Response(r) => {
            if let Some(s) = &session {
                s.answer(&r.id, Ok(jsonrpc::value_of(&r.result)));
            }
            StatusCode::ACCEPTED.into_response()
        }
        Message::Error(e) => {
            if let Some(s) = &session {
                s.answer(&e.id, Err(e.error));
            }
            StatusCode::ACCEPTED.into_response()
        }
        Message::Request(r) => {
            // The request's own principal: a session never lends the rights of
            // the token that opened it to a narrower token of the same user.
            run_request(st, scope, principal, session, h, r).await
        }
    }
}

/// Where a request is served.
enum Route {
    /// Sent to its session's owner (or refused): the answer.
    Answered(Response),
    /// Here. `adopt`: a genuine session id this worker does not hold may be
    /// adopted (its owner is gone, or Redis names this worker its owner).
    Here { adopt: bool },
}

/// Sends the request to the worker owning its session, if that is another one.
/// `Here`: handle it here (no session, ours, or an owner that is gone, whose
/// session this worker then adopts).
async fn route_to_owner(
    st: &AppState,
    method: Method,
    scope: &Scope,
    principal: &Principal,
    h: &HeaderMap,
    body: &Bytes,
) -> Route {
    let Some(sid) = session_id(h) else {
        return Route::Here { adopt: true };
    };
    if let Some(redis) = &st.redis {
        if st.sessions.get(sid, scope).is_some() {
            return Route::Here { adopt: true };
        }
        // Boxed, like every forward below: the common, local request's future
        // stays small (it is moved into place for every request).
        return Box::pin(route_via_redis(
            st, redis, method, scope, principal, h, body, sid,
        ))
        .await;
    }
    // Route by the slot the id names; the owner checks the MAC and the
    // principal (so a stranger gets the owner's 403/404, on every worker).
    let Some(slot) = st.affinity.slot_hint(sid) else {
        return Route::Here { adopt: true };
    };
    if slot == st.affinity.slot || st.sessions.get(sid, scope).is_some() {
        return Route::Here { adopt: true };
    }
    Metrics::inc(&st.metrics.forwards_unix);
    match Box::pin(forward(st, slot, method, scope, principal, h, body.clone())).await {
        Ok(resp) => Route::Answered(resp),
        Err(OwnerUnreachable) => {
            Metrics::inc(&st.metrics.forward_failures);
            tracing::warn!(
                session = short(sid),
                slot,
                "session owner unreachable; adopting the session here"
            );
            Route::Here { adopt: true }
        }
    }
}

/// With Redis, Redis is the truth for a session that is not local: one script
/// call names the owner and its heartbeat. A live owner gets the request (over
/// HTTP or pub/sub, `AFFINITY_FORWARD`); a dead one (no heartbeat, connection
/// refused, nobody subscribed) loses the session to an atomic reclaim, and
/// this worker adopts it. An id Redis does not know is not adopted (404).
#[allow(clippy::too_many_arguments)]
async fn route_via_redis(
    st: &AppState,
    redis: &RedisAffinity,
    method: Method,
    scope: &Scope,
    principal: &Principal,
    h: &HeaderMap,
    body: &Bytes,
    sid: &str,
) -> Route {
    // Owners are answered from memory only while Redis is up: no command has
    // failed, and the forwarding subscription (which drops the moment Redis
    // goes away, before any command fails) is in place.
    let redis_up = redis.reachable() && st.pubsub.as_ref().is_some_and(|p| p.is_subscribed());
    for attempt in 0..3 {
        let looked = if attempt == 0 && redis_up {
            redis.lookup_remembered(sid).await
        } else {
            redis.forget_owner(sid);
            redis.lookup(sid).await
        };
        let owner = match looked {
            Ok(Some(o)) => o,
            Ok(None) => return Route::Here { adopt: false },
            Err(_) => return Route::Answered(owner_unknown(body)),
        };
        if owner.worker == redis.worker_id {
            stage_events(st, sid).await;
            return Route::Here { adopt: true };
        }
        if let Some(hb) = &owner.heartbeat {
            let target = match redis.mode {
                // A GET stream never ends: it cannot be buffered into one message.
                ForwardMode::PubSub if method != Method::GET => {
                    Metrics::inc(&st.metrics.forwards_pubsub);
                    Target::PubSub(&owner.worker)
                }
                _ => {
                    Metrics::inc(&st.metrics.forwards_http);
                    Target::Http(&hb.addr)
                }
            };
            let sent = forward_to(
                st,
                target,
                method.clone(),
                scope,
                principal,
                h,
                body.clone(),
            )
            .await;
            match sent {
                Ok(resp) => return Route::Answered(resp),
                Err(ForwardError::RedisDown) => return Route::Answered(owner_unknown(body)),
                Err(ForwardError::Refused(why)) => {
                    let why = format!("cannot forward to the session's owner: {why}");
                    return Route::Answered(owner_unavailable(body, &why));
                }
                Err(ForwardError::Unreachable) => {
                    redis.forget_owner(sid);
                    Metrics::inc(&st.metrics.forward_failures);
                    tracing::warn!(
                        session = short(sid),
                        owner = owner.worker,
                        "session owner unreachable; taking the session over"
                    );
                }
            }
        }
        // The owner is dead: take its session over (only if it still is its owner).
        match redis.reclaim(sid, &owner.worker).await {
            Ok(Reclaim::Taken) => {
                Metrics::inc(&st.metrics.reclaims);
                tracing::info!(
                    session = short(sid),
                    dead = owner.worker,
                    "took over the session of a dead owner"
                );
                stage_events(st, sid).await;
                return Route::Here { adopt: true };
            }
            Ok(Reclaim::Gone) => return Route::Here { adopt: false },
            Ok(Reclaim::Other(_)) => continue, // someone else was faster: ask again
            Err(_) => return Route::Answered(owner_unknown(body)),
        }
    }
    Route::Answered(owner_unknown(body))
}

/// Loads from Redis what the session's previous owner stored of its SSE
/// events, for the adoption that follows (its streams go on where they were).
async fn stage_events(st: &AppState, sid: &str) {
    if let Some(events) = st.sessions.redis_events() {
        events.stage(sid).await;
    }
}

/// JSON-RPC -32001: the session's owner cannot be known (Redis is down).
fn owner_unknown(body: &Bytes) -> Response {
    owner_unavailable(body, "session owner unknown: Redis unavailable")
}

/// -32001 (503) for a request its session's owner cannot get, with the
/// request's id.
fn owner_unavailable(body: &Bytes, why: &str) -> Response {
    let id = match jsonrpc::parse_message(body) {
        Ok(Message::Request(r)) => r.id,
        _ => Id::Null,
    };
    rpc_error(
        StatusCode::SERVICE_UNAVAILABLE,
        &id,
        &ErrorObject::upstream_unavailable(why),
    )
}

/// With Redis: refreshes the ownership of a session used here (throttled, in
/// the background). If Redis names another owner (this worker was taken for
/// dead), the local copy goes and later requests follow Redis.
fn touch(st: &AppState, s: &Session) {
    let Some(redis) = &st.redis else {
        return;
    };
    let subject = s.principal.subject().to_owned();
    if !redis.refresh_due(&s.id, &subject) {
        return;
    }
    let (redis, sessions, sid) = (redis.clone(), st.sessions.clone(), s.id.clone());
    tokio::spawn(async move {
        if let Ok(Some(other)) = redis.refresh(&sid, &subject).await {
            tracing::warn!(
                session = short(&sid),
                owner = other,
                "another worker owns this session now; dropping the local copy"
            );
            sessions.remove(&sid);
        }
    });
}

fn resolve_session(
    st: &AppState,
    scope: &Scope,
    principal: &Principal,
    h: &HeaderMap,
    id: Option<&Id>,
    adopt: bool,
) -> Result<Arc<Session>, Response> {
    let id = id.unwrap_or(&Id::Null);
    let Some(sid) = session_id(h) else {
        return Err(rpc_error(
            StatusCode::BAD_REQUEST,
            id,
            &ErrorObject::invalid_request("Bad Request: Mcp-Session-Id header is required"),
        ));
    };
    if let Some(s) = st.sessions.get(sid, scope) {
        // A session belongs to the principal that initialized it (admins excepted).
        if s.principal.subject() != principal.subject() && !principal.is_admin() {
            return Err(rpc_error(
                StatusCode::FORBIDDEN,
                id,
                &ErrorObject::forbidden("Session access denied"),
            ));
        }
        Metrics::inc(&st.metrics.session_local_hits);
        touch(st, &s);
        return Ok(s);
    }
    // A genuine id this worker does not hold: its owner restarted (or is gone).
    // Adopt it; upstream sessions are reopened on first use.
    if adopt && st.affinity.owner(sid, scope, principal).is_some() && !st.sessions.is_deleted(sid) {
        let version = header_str(h, MCP_PROTOCOL_VERSION)
            .filter(|v| protocol::is_supported_version(v))
            .unwrap_or(protocol::LATEST_STATEFUL_PROTOCOL_VERSION);
        tracing::info!(session = short(sid), "adopting session");
        Metrics::inc(&st.metrics.sessions_adopted);
        if let Some(redis) = &st.redis {
            redis.track(sid, principal.subject());
        }
        return Ok(st
            .sessions
            .create(sid.to_owned(), scope.clone(), principal.clone(), version));
    }
    Err({
        rpc_error(
            StatusCode::NOT_FOUND,
            id,
            &ErrorObject::session_not_found("Session not found"),
        )
    })
}

async fn initialize(
    st: &AppState,
    scope: Scope,
    principal: Principal,
    id: Id,
    params: Option<Value>,
) -> Response {
    let asked = params
        .as_ref()
        .and_then(|p| p.get("protocolVersion"))
        .and_then(Value::as_str)
        .unwrap_or(protocol::DEFAULT_PROTOCOL_VERSION_WITHOUT_HEADER);
    let version = protocol::negotiate_version(asked);
    let ctx = Context {
        principal: principal.clone(),
        scope: scope.clone(),
        upstreams: Upstreams::Pool,
        handler: Arc::new(Relay {
            tx: None,
            session: None,
        }),
        passthrough: Vec::new(),
    };
    match dispatch(&st.core, &ctx, methods::INITIALIZE, params).await {
        Ok(result) => {
            let sid = st.affinity.mint(&scope, &principal);
            if let Some(redis) = &st.redis {
                // Claimed before the client learns the id, so any worker finds it.
                if let Err(e) = redis.claim(&sid, principal.subject()).await {
                    tracing::warn!(session = short(&sid), error = %e, "cannot record the session's owner");
                }
            }
            let session = st.sessions.create(sid, scope, principal, version);
            Metrics::inc(&st.metrics.sessions_created);
            tracing::debug!(session = &session.id[..8], "session initialized");
            let mut resp = json_body(StatusCode::OK, jsonrpc::encode_response(&id, &result));
            if let Ok(v) = HeaderValue::from_str(&session.id) {
                resp.headers_mut().insert("mcp-session-id", v);
            }
            resp
        }
        Err(e) => rpc_error(StatusCode::OK, &id, &e.to_error_object()),
    }
}

/// A request's call, polled by the connection's own task (no task of its own
/// per request). A client going away does not cancel it (MCP: a disconnect is
/// not a cancellation): dropped unfinished, the call goes on in a new task.
struct Detached<F: Future + Send + 'static>(Option<Pin<Box<F>>>)
where
    F::Output: Send;

impl<F: Future + Send + 'static> Detached<F>
where
    F::Output: Send,
{
    fn new(f: F) -> Self {
        Detached(Some(Box::pin(f)))
    }
}

impl<F: Future + Send + 'static> Future for Detached<F>
where
    F::Output: Send,
{
    type Output = F::Output;

    fn poll(mut self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<F::Output> {
        let Some(f) = self.0.as_mut() else {
            return Poll::Pending; // finished: never polled again
        };
        let out = std::task::ready!(f.as_mut().poll(cx));
        self.0 = None;
        Poll::Ready(out)
    }
}

impl<F: Future + Send + 'static> Drop for Detached<F>
where
    F::Output: Send,
{
    fn drop(&mut self) {
        if let (Some(f), Ok(rt)) = (self.0.take(), tokio::runtime::Handle::try_current()) {
            rt.spawn(f);
        }
    }
}

/// Runs one request; answers JSON unless the upstream speaks first and the
/// client accepts SSE.
async fn run_request(
    st: &AppState,
    scope: Scope,
    principal: Principal,
    session: Option<Arc<Session>>,
    h: &HeaderMap,
    req: fleetgate_mcp::Request,
) -> Response {
    let sse_ok = accepts(h, protocol::CONTENT_TYPE_SSE);
    let (tx, mut rx) = mpsc::channel::<Bytes>(32);
    let relay_tx = if sse_ok {
        Some(tx)
    } else {
        session.as_ref().and_then(|s| s.stream())
    };
    let ctx = Context {
        principal,
        scope,
        upstreams: match &session {
            Some(s) => Upstreams::Session(s.upstreams.clone()),
            None => Upstreams::Pool,
        },
        handler: Arc::new(Relay {
            tx: relay_tx,
            session: session.clone(),
        }),
        passthrough: passthrough(st, h),
    };
    let core = st.core.clone();
    let id = req.id.clone();
    let mut call = Detached::new(
        AssertUnwindSafe(async move {
            let res = dispatch(&core, &ctx, &req.method, req.params).await;
            answer_bytes(&req.id, res)
        })
        .catch_unwind(),
    );
    // `biased`, messages first: whatever the upstream sent before its result
    // must reach the client before the result does (and turns the answer into
    // an SSE stream). The call can send its last messages and finish in one
    // poll (they came in one read from the upstream), so a finished call's
    // messages are drained from the channel before its result is used.
    let (first, finished) = tokio::select! {
        biased;
        Some(first) = rx.recv(), if sse_ok => (first, None),
        done = &mut call => {
            let body = done.unwrap_or_else(|_| internal(&id));
            match rx.try_recv() {
                Ok(first) if sse_ok => (first, Some(body)),
                _ => return json_body(StatusCode::OK, body),
            }
        }
    };
    // From here on the call's own task writes the stream into the session's
    // event store; the connection only follows it. A client that drops the
    // connection does not cancel the call: it resumes with GET +
    // Last-Event-ID.
    let store = match &session {
        Some(s) => s.events.clone(),
        None => Arc::new(EventStore::default()),
    };
    let name = store.open_post_stream();
    let (w, n) = (store.clone(), name.clone());
    tokio::spawn(async move {
        w.append(&n, first);
        let body = match finished {
            Some(body) => body,
            None => loop {
                tokio::select! {
                    biased;
                    Some(m) = rx.recv() => {
                        w.append(&n, m);
                    }
                    done = &mut call => break done.unwrap_or_else(|_| internal(&id)),
                }
            },
        };
        while let Ok(m) = rx.try_recv() {
            w.append(&n, m);
        }
        w.append(&n, Bytes::from(body));
        w.finish(&n);
    });
    sse_response(Body::from_stream(events::follow(store, name, 0)))
}

fn answer_bytes(id: &Id, res: Result<Box<RawValue>, RpcError>) -> Vec<u8> {
    match res {
        Ok(v) => jsonrpc::encode_response(id, &v),
        Err(e) => jsonrpc::encode_error(id, &e.to_error_object()),
    }
}

fn internal(id: &Id) -> Vec<u8> {
    jsonrpc::encode_error(
        id,
        &ErrorObject::internal_error("the request failed inside the gateway"),
    )
}

fn sse_response(body: Body) -> Response {
    (
        StatusCode::OK,
        [
            (
                header::CONTENT_TYPE,
                HeaderValue::from_static(protocol::CONTENT_TYPE_SSE),
            ),
            (header::CACHE_CONTROL, HeaderValue::from_static("no-cache")),
        ],
        body,
    )
        .into_response()
}

async fn handle_batch(
    st: &AppState,
    scope: Scope,
    principal: Principal,
    h: &HeaderMap,
    items: Vec<Result<Message, jsonrpc::ParseError>>,
    adopt: bool,
) -> Response {
    let session = match resolve_session(st, &scope, &principal, h, None, adopt) {
        Ok(s) => s,
        Err(r) => return r,
    };
    let mut out: Vec<Value> = Vec::new();
    for item in items {
        match item {
            Err(e) => out.push(
                serde_json::from_slice(&jsonrpc::encode_error(&Id::Null, &e.to_error_object()))
                    .unwrap_or_default(),
            ),
            Ok(Message::Request(r)) => {
                let ctx = Context {
                    principal: principal.clone(),
                    scope: scope.clone(),
                    upstreams: Upstreams::Session(session.upstreams.clone()),
                    handler: Arc::new(Relay {
                        tx: session.stream(),
                        session: Some(session.clone()),
                    }),
                    passthrough: passthrough(st, h),
                };
                let res = dispatch(&st.core, &ctx, &r.method, r.params).await;
                out.push(serde_json::from_slice(&answer_bytes(&r.id, res)).unwrap_or_default());
            }
            Ok(Message::Response(r)) => {
                session.answer(&r.id, Ok(jsonrpc::value_of(&r.result)));
            }
            Ok(Message::Error(e)) => {
                session.answer(&e.id, Err(e.error));
            }
            Ok(Message::Notification(_)) => {}
        }
    }
    if out.is_empty() {
        return StatusCode::ACCEPTED.into_response();
    }
    json_body(StatusCode::OK, serde_json::to_vec(&out).unwrap_or_default())
}

pub async fn handle_get(
    st: &AppState,
    scope: Scope,
    principal: Principal,
    h: &HeaderMap,
    forwarded: bool,
) -> Response {
    if let Err(r) = check_origin(st, h) {
        return r;
    }
    let adopt = match forwarded {
        true => true,
        false => {
            match route_to_owner(st, Method::GET, &scope, &principal, h, &Bytes::new()).await {
                Route::Answered(r) => return r,
                Route::Here { adopt } => adopt,
            }
        }
    };
    if !accepts(h, protocol::CONTENT_TYPE_SSE) {
        return detail(
            StatusCode::NOT_ACCEPTABLE,
            "Not Acceptable: GET needs Accept: text/event-stream",
        );
    }
    let session = match resolve_session(st, &scope, &principal, h, None, adopt) {
        Ok(s) => s,
        Err(r) => return r,
    };
    // Resuming (`Last-Event-ID`): a POST stream is replayed from the store
    // and followed until it completes; the GET stream is replayed, then goes
    // on live. A stream memory lacks is looked for in Redis (a previous owner
    // stored it). An id this session does not know (never sent, or expired)
    // opens a fresh GET stream, as a plain GET would.
    let asked = header_str(h, LAST_EVENT_ID).and_then(events::parse_id);
    if let (Some((stream, _)), Some(redis_events)) = (asked, st.sessions.redis_events()) {
        redis_events
            .load_missing(&session.id, &session.events, stream)
            .await;
    }
    let resume = asked.filter(|(stream, _)| session.events.knows(stream));
    let mut replay = VecDeque::new();
    if let Some((stream, seq)) = resume {
        if stream != events::GET_STREAM {
            let body = events::follow(session.events.clone(), stream.to_owned(), seq);
            return sse_response(Body::from_stream(body));
        }
        if let Some((stored, _)) = session.events.after(stream, seq) {
            replay.extend(stored.into_iter().map(|(seq, json)| {
                events::encode(&format!("{}_{seq}", events::GET_STREAM), &json)
            }));
        }
    }
    let (tx, rx) = mpsc::channel::<Bytes>(64);
    if resume.is_some() {
        session.replace_stream(tx);
    } else if !session.open_stream(tx) {
        return detail(
            StatusCode::CONFLICT,
            "Conflict: this session already has a GET stream open",
        );
    }
    let store = session.events.clone();
    let body = stream::unfold(
        (replay, rx, store),
        |(mut replay, mut rx, store)| async move {
            if let Some(ev) = replay.pop_front() {
                return Some((Ok::<_, Infallible>(ev), (replay, rx, store)));
            }
            let m = rx.recv().await?;
            let id = store.append(events::GET_STREAM, m.clone());
            Some((Ok(events::encode(&id, &m)), (replay, rx, store)))
        },
    );
    sse_response(Body::from_stream(body))
}

pub async fn handle_delete(
    st: &AppState,
    scope: Scope,
    principal: Principal,
    h: &HeaderMap,
    forwarded: bool,
) -> Response {
    if let Err(r) = check_origin(st, h) {
        return r;
    }
    let adopt = match forwarded {
        true => true,
        false => {
            match route_to_owner(st, Method::DELETE, &scope, &principal, h, &Bytes::new()).await {
                Route::Answered(r) => return r,
                Route::Here { adopt } => adopt,
            }
        }
    };
    let Some(sid) = session_id(h) else {
        return detail(
            StatusCode::BAD_REQUEST,
            "Bad Request: Mcp-Session-Id header is required",
        );
    };
    if let Some(s) = st.sessions.get(sid, &scope) {
        if s.principal.subject() != principal.subject() && !principal.is_admin() {
            return rpc_error(
                StatusCode::FORBIDDEN,
                &Id::Null,
                &ErrorObject::forbidden("Session access denied"),
            );
        }
    }
    let ours = st.sessions.get(sid, &scope).is_some()
        || (adopt
            && st.affinity.owner(sid, &scope, &principal).is_some()
            && !st.sessions.is_deleted(sid));
    if !ours {
        return detail(StatusCode::NOT_FOUND, "Session not found");
    }
    st.sessions.remove(sid);
    if let Some(redis_events) = st.sessions.redis_events() {
        redis_events.drop_session(sid);
    }
    if let Some(redis) = &st.redis {
        if let Err(e) = redis.release(sid).await {
            tracing::warn!(session = short(sid), error = %e, "cannot release the session in Redis");
        }
    }
    StatusCode::OK.into_response()
}
