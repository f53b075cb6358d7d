//! The request runner. A request's call (the dispatcher) runs as a
//! [`Call`]: a panic becomes a JSON-RPC internal error, and a client going
//! away does not cancel it (MCP: a disconnect is not a cancellation). A
//! single request's answer is JSON unless the upstream speaks before its
//! result and the client accepts SSE; then it becomes an SSE stream written
//! by the call's own task into the session's event store, which the
//! connection only follows (a dropped connection loses nothing: the client
//! resumes with `GET` + `Last-Event-ID`).

use super::accepts;
use super::modern::{missing_capability, CapabilityGate, Modern};
use crate::gateway::dispatch::{dispatch, Context};
use crate::gateway::error::RpcError;
use crate::gateway::events::{self, EventStore};
use crate::gateway::mrtr;
use crate::gateway::scope::{Principal, Scope};
use crate::gateway::session::Session;
use crate::state::AppState;
use crate::wire::json_body;
use axum::body::{Body, Bytes};
use axum::response::{IntoResponse, Response};
use fleetgate_mcp::jsonrpc::{self, ErrorObject, Id};
use fleetgate_mcp::protocol::{self, error_codes};
use futures_util::FutureExt;
use http::{header, HeaderMap, HeaderValue, StatusCode};
use serde_json::value::RawValue;
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::sync::atomic::{AtomicU16, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context as TaskContext, Poll};
use tokio::sync::mpsc;

/// One request's call, polled by the connection's own task (no task of its
/// own per request); dropped unfinished, it goes on in a new task. Its
/// output is the encoded answer.
pub(super) struct Call(Option<Pin<Box<dyn Future<Output = Vec<u8>> + Send>>>);

impl Call {
    pub(super) fn new(st: &AppState, ctx: Context, req: fleetgate_mcp::Request) -> Call {
        Call::shaped(st, ctx, req, None).0
    }

    /// A call whose answer, for a 2026-07-28 request (`modern`), is shaped
    /// as that revision wants ([`shape_result`]), and which is parked when
    /// its upstream asks for input mid-call ([`crate::gateway::mrtr`]); the
    /// returned cell holds the HTTP status its answer needs once it is done.
    pub(super) fn shaped(
        st: &AppState,
        mut ctx: Context,
        req: fleetgate_mcp::Request,
        modern: Option<(u64, &Modern)>,
    ) -> (Call, Arc<AtomicU16>) {
        let status = Arc::new(AtomicU16::new(200));
        let id = req.id.clone();
        // One allocation per call: the future, its panic guard included.
        let guarded =
            move |done: std::thread::Result<Vec<u8>>| done.unwrap_or_else(|_| internal(&id));
        let call: Pin<Box<dyn Future<Output = Vec<u8>> + Send>> = match modern {
            None => {
                let core = st.core.clone();
                let call = AssertUnwindSafe(async move {
                    let res = dispatch(&core, &ctx, &req.method, req.params).await;
                    answer_bytes(&req.id, res)
                });
                Box::pin(call.catch_unwind().map(guarded))
            }
            Some((ttl_ms, m)) => {
                let missing = Arc::new(Mutex::new(None));
                let (asks_tx, asks) = mpsc::unbounded_channel();
                ctx.handler = Arc::new(CapabilityGate {
                    inner: ctx.handler.clone(),
                    declared: m.capabilities.clone(),
                    missing: missing.clone(),
                    asks: asks_tx,
                });
                let shape = Shape {
                    ttl_ms,
                    missing,
                    status: status.clone(),
                };
                let call = AssertUnwindSafe(modern_call(st.clone(), ctx, req, shape, asks));
                Box::pin(call.catch_unwind().map(guarded))
            }
        };
        (Call(Some(call)), status)
    }
}

/// How a 2026-07-28 call's answer is finished.
struct Shape {
    /// `ttlMs` of list results.
    ttl_ms: u64,
    /// A capability the upstream needed and the client had not declared.
    missing: Arc<Mutex<Option<&'static str>>>,
    /// The answer's HTTP status.
    status: Arc<AtomicU16>,
}

impl Shape {
    /// The answer to the call `method` `id`; `asker` names the gateway the
    /// call reached, should the answer have to say it.
    fn answer(
        &self,
        id: &Id,
        method: &str,
        res: Result<Box<RawValue>, RpcError>,
        asker: impl FnOnce() -> Option<String>,
    ) -> Vec<u8> {
        let lacked = *self.missing.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(cap) = lacked {
            self.status
                .store(StatusCode::BAD_REQUEST.as_u16(), Ordering::Relaxed);
            return jsonrpc::encode_error(id, &missing_capability(cap, asker().as_deref()));
        }
        match res {
            Ok(v) => jsonrpc::encode_response(id, &shape_result(method, v, self.ttl_ms)),
            Err(e) => {
                self.status
                    .store(modern_status(&e).as_u16(), Ordering::Relaxed);
                jsonrpc::encode_error(id, &modern_error(&e))
            }
        }
    }
}

/// The error object of a 2026-07-28 answer: that revision names an unknown
/// tool or resource with -32602 (Invalid Params), where fleetgate answers
/// earlier revisions as they were answered (-32601, -32002).
fn modern_error(e: &RpcError) -> ErrorObject {
    let mut obj = e.to_error_object();
    if matches!(e, RpcError::ToolNotFound(_) | RpcError::ResourceNotFound(_)) {
        obj.code = jsonrpc::INVALID_PARAMS;
    }
    obj
}

/// A 2026-07-28 request's call: its answer, or — when its upstream asks
/// for input before answering — `input_required`, the call going on parked.
async fn modern_call(
    st: AppState,
    ctx: Context,
    req: fleetgate_mcp::Request,
    shape: Shape,
    mut asks: mpsc::UnboundedReceiver<mrtr::Ask>,
) -> Vec<u8> {
    let fleetgate_mcp::Request { id, method, params } = req;
    let name = protocol::mcp_name_of(&method, params.as_ref()).map(str::to_owned);
    let (scope, principal) = (ctx.scope.clone(), ctx.principal.clone());
    let core = st.core.clone();
    let m = method.clone();
    let mut run = Box::pin(async move { dispatch(&core, &ctx, &m, params).await });
    let first = tokio::select! {
        biased;
        res = &mut run => {
            let asker = || asker(&st, &scope, &method, name.as_deref());
            return shape.answer(&id, &method, res, asker);
        }
        Some(first) = asks.recv() => first,
    };
    // Parked: held by a session of its own, so that the retry finds this
    // worker the way a session's request finds its owner.
    let (steps, steps_rx) = mpsc::unbounded_channel();
    let parked = Arc::new(mrtr::Parked::new(method, name, steps_rx));
    parked.wait_on(first);
    while let Ok(more) = asks.try_recv() {
        parked.wait_on(more);
    }
    let sid = st.cluster.mint(&scope, &principal);
    st.cluster.claim(&sid, &principal).await;
    let session = st.sessions.create(
        sid.clone(),
        scope,
        principal,
        protocol::STATELESS_PROTOCOL_VERSION,
    );
    session.park(parked.clone());
    let cluster = st.cluster.clone();
    let held = sid.clone();
    tokio::spawn(async move {
        let res = loop {
            tokio::select! {
                biased;
                Some(more) = asks.recv() => {
                    let _ = steps.send(mrtr::Step::Ask(more));
                }
                res = &mut run => break res,
            }
        };
        let _ = steps.send(mrtr::Step::Done(res));
        drop(session);
        tokio::time::sleep(mrtr::DONE_KEPT).await;
        cluster.release(&held).await;
    });
    input_required(&id, &parked, &sid)
}

/// The gateway a call of `method` on `name` reaches in `scope`, as an error
/// message names it: `gateway "NAME" (URL)`.
fn asker(st: &AppState, scope: &Scope, method: &str, name: Option<&str>) -> Option<String> {
    let snap = st.core.registry.snapshot();
    let idx = snap.scope(scope)?;
    let name = name?;
    let gateway_id = match method {
        "tools/call" => idx.tool(name)?.item.gateway_id.clone(),
        "prompts/get" => idx.prompt(name)?.item.gateway_id.clone(),
        "resources/read" => crate::gateway::dispatch::resource_gateway(idx, name).ok()?,
        _ => return None,
    };
    let g = snap.gateway(&gateway_id)?;
    Some(format!("gateway {:?} ({})", g.name, g.url))
}

/// An `input_required` answer listing what the parked call held by session
/// `sid` waits for.
fn input_required(id: &Id, parked: &mrtr::Parked, sid: &str) -> Vec<u8> {
    let result = serde_json::json!({
        "resultType": "input_required",
        "inputRequests": parked.input_requests(),
        "requestState": mrtr::token(sid),
    });
    jsonrpc::encode_response(id, &jsonrpc::raw(&result))
}

/// A 2026-07-28 retry whose `requestState` names a parked call: the
/// client's `inputResponses` go to the requests waiting for them, and the
/// answer is what the call does next.
pub(super) async fn resume(
    st: &AppState,
    scope: Scope,
    principal: Principal,
    req: fleetgate_mcp::Request,
) -> Response {
    let status = Arc::new(AtomicU16::new(200));
    let shape = Shape {
        ttl_ms: st.gateway_cfg.registry_poll.as_millis() as u64,
        missing: Arc::default(),
        status: status.clone(),
    };
    let refuse = |msg: &str| {
        json_body(
            StatusCode::OK,
            jsonrpc::encode_error(&req.id, &ErrorObject::invalid_params(msg)),
        )
    };
    let params = req.params.as_ref();
    let sid = mrtr::token_session(params).unwrap_or_default();
    let held = st
        .sessions
        .get(sid, &scope)
        .filter(|s| super::session::may_use(s, &principal));
    let Some(parked) = held.as_ref().and_then(|s| s.parked()) else {
        return refuse(
            "requestState names a call that is no longer waiting for input (it ended, timed out, or the worker holding it restarted); call again without requestState",
        );
    };
    if parked.method != req.method
        || parked.name.as_deref() != protocol::mcp_name_of(&req.method, params)
    {
        return refuse("requestState belongs to another request");
    }
    let responses = match params.and_then(|p| p.get("inputResponses")) {
        None => serde_json::Map::new(),
        Some(serde_json::Value::Object(r)) => r.clone(),
        Some(_) => return refuse("inputResponses must be an object"),
    };
    let body =
        if parked.answer(&responses) {
            input_required(&req.id, parked, sid)
        } else {
            // The parked call's own upstream timeout ends it first.
            let wait = st.core.federation.timeout + std::time::Duration::from_secs(5);
            match parked.next(wait).await {
                mrtr::Next::Input => input_required(&req.id, parked, sid),
                mrtr::Next::Done(res) => {
                    st.cluster.release(sid).await;
                    shape.answer(&req.id, &req.method, res, || None)
                }
                mrtr::Next::Gone => return refuse(
                    "the call waiting for this input has ended; call again without requestState",
                ),
            }
        };
    let status = StatusCode::from_u16(status.load(Ordering::Relaxed)).unwrap_or(StatusCode::OK);
    json_body(status, body)
}

/// The HTTP status of a 2026-07-28 error answer: 404 for a method fleetgate
/// does not serve, 400 for the errors the revision ties to it (a missing
/// client capability, header mismatch, unsupported version, whoever raised
/// them), 200 otherwise (a JSON-RPC error about the call itself).
fn modern_status(e: &RpcError) -> StatusCode {
    if matches!(e, RpcError::MethodNotFound(_)) {
        return StatusCode::NOT_FOUND;
    }
    match e.to_error_object().code {
        error_codes::HEADER_MISMATCH
        | error_codes::MISSING_REQUIRED_CLIENT_CAPABILITY
        | error_codes::UNSUPPORTED_PROTOCOL_VERSION => StatusCode::BAD_REQUEST,
        _ => StatusCode::OK,
    }
}

/// A 2026-07-28 result: `resultType` (absent means `"complete"`, so it is
/// added as that), and for complete results of the cacheable methods
/// `ttlMs`/`cacheScope` unless present. What an upstream already put there
/// stays as it sent it; the fields are spliced in after the opening brace,
/// nothing else is re-encoded.
///
/// The hints fleetgate adds say what it knows: `ttl_ms` is how often every
/// worker reloads the registry its lists come from (a client keeping a list
/// that long is no staler than the fleet itself may be, and changes are
/// announced on `subscriptions/listen` streams); `cacheScope` is
/// `"private"` because what a caller sees depends on the scope its token
/// reaches, so no cache may share it across tokens. A `resources/read` an
/// upstream answered without hints gets `ttlMs: 0`: fleetgate does not
/// cache upstream content and cannot tell how long it stays fresh.
pub(super) fn shape_result(method: &str, v: Box<RawValue>, ttl_ms: u64) -> Box<RawValue> {
    #[derive(serde::Deserialize)]
    struct Probe {
        #[serde(rename = "resultType")]
        result_type: Option<String>,
        #[serde(rename = "ttlMs")]
        ttl: Option<serde::de::IgnoredAny>,
        #[serde(rename = "cacheScope")]
        scope: Option<serde::de::IgnoredAny>,
    }
    let text = v.get();
    let Some(body) = text.trim_start().strip_prefix('{') else {
        return v; // not an object: nothing to add to
    };
    let Ok(p) = serde_json::from_str::<Probe>(text) else {
        return v;
    };
    let mut add = String::new();
    let complete = match &p.result_type {
        None => {
            add.push_str(r#""resultType":"complete","#);
            true
        }
        Some(t) => t == protocol::result_type::COMPLETE,
    };
    if complete && protocol::CACHEABLE_METHODS.contains(&method) {
        if p.ttl.is_none() {
            let ttl = if method == protocol::methods::RESOURCES_READ {
                0
            } else {
                ttl_ms
            };
            add.push_str(&format!(r#""ttlMs":{ttl},"#));
        }
        if p.scope.is_none() {
            add.push_str(r#""cacheScope":"private","#);
        }
    }
    if add.is_empty() {
        return v;
    }
    if body.trim_start().starts_with('}') {
        add.pop(); // `{}`: no member follows
    }
    let out = format!("{{{add}{body}");
    match RawValue::from_string(out) {
        Ok(shaped) => shaped,
        Err(_) => v,
    }
}

impl Future for Call {
    type Output = Vec<u8>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<Vec<u8>> {
        let Some(f) = self.0.as_mut() else {
            return Poll::Pending; // finished: never polled again
        };
        let out = std::task::ready!(f.as_mut().poll(cx));
        self.0 = None;
        Poll::Ready(out)
    }
}

impl Drop for Call {
    fn drop(&mut self) {
        if let (Some(f), Ok(rt)) = (self.0.take(), tokio::runtime::Handle::try_current()) {
            rt.spawn(f);
        }
    }
}

/// Runs one request; answers JSON unless the upstream speaks first and the
/// client accepts SSE.
pub(super) async fn single(
    st: &AppState,
    scope: Scope,
    principal: Principal,
    session: Option<Arc<Session>>,
    h: &HeaderMap,
    req: fleetgate_mcp::Request,
    modern: Option<Modern>,
) -> Response {
    let sse_ok = accepts(h, protocol::CONTENT_TYPE_SSE);
    let (tx, mut rx) = mpsc::channel::<Bytes>(32);
    // While the call runs, its stream may also carry what belongs to no call.
    let mut attached = match (&session, sse_ok) {
        (Some(s), true) => Some(s.attach_call(&tx)),
        _ => None,
    };
    let to_client = if sse_ok {
        Some(tx)
    } else {
        session.as_ref().and_then(|s| s.stream())
    };
    let passthrough = super::passthrough(st, h);
    let ctx = match &session {
        Some(s) => Context::session(principal, scope, s.clone(), to_client, passthrough),
        None => Context::pooled(principal, scope, to_client, passthrough),
    };
    let ttl_ms = st.gateway_cfg.registry_poll.as_millis() as u64;
    let (mut call, status) = Call::shaped(st, ctx, req, modern.as_ref().map(|m| (ttl_ms, m)));
    let keep = move |m: &Bytes| modern.as_ref().is_none_or(|md| allowed_modern(md, m));
    // `biased`, messages first: whatever the upstream sent before its result
    // must reach the client before the result does (and turns the answer into
    // an SSE stream). The call can send its last messages and finish in one
    // poll (they came in one read from the upstream), so a finished call's
    // messages are drained from the channel before its result is used.
    let (first, finished) = tokio::select! {
        biased;
        Some(first) = next_kept(&mut rx, &keep), if sse_ok => (first, None),
        body = &mut call => {
            drop(attached.take());
            let status = StatusCode::from_u16(status.load(Ordering::Relaxed)).unwrap_or(StatusCode::OK);
            match drain_kept(&mut rx, &keep) {
                Some(first) if sse_ok => (first, Some(body)),
                _ => return json_body(status, body),
            }
        }
    };
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
                    Some(m) = next_kept(&mut rx, &keep) => {
                        w.append(&n, m);
                    }
                    body = &mut call => break body,
                }
            },
        };
        drop(attached);
        while let Some(m) = drain_kept(&mut rx, &keep) {
            w.append(&n, m);
        }
        w.append(&n, Bytes::from(body));
        w.finish(&n);
    });
    sse_response(Body::from_stream(events::follow(store, name, 0)))
}

/// The next message the call sent that may reach the client.
async fn next_kept(
    rx: &mut mpsc::Receiver<Bytes>,
    keep: &impl Fn(&Bytes) -> bool,
) -> Option<Bytes> {
    loop {
        let m = rx.recv().await?;
        if keep(&m) {
            return Some(m);
        }
    }
}

/// [`next_kept`] without waiting.
fn drain_kept(rx: &mut mpsc::Receiver<Bytes>, keep: &impl Fn(&Bytes) -> bool) -> Option<Bytes> {
    loop {
        let m = rx.try_recv().ok()?;
        if keep(&m) {
            return Some(m);
        }
    }
}

/// What a 2026-07-28 request's response stream may carry: notifications
/// only (the revision sends no requests on it), and `notifications/message`
/// only at or above the level the request asked for in `_meta` (none
/// without it).
fn allowed_modern(m: &Modern, msg: &Bytes) -> bool {
    #[derive(serde::Deserialize)]
    struct Probe {
        method: Option<String>,
        id: Option<serde::de::IgnoredAny>,
        params: Option<LogParams>,
    }
    #[derive(serde::Deserialize)]
    struct LogParams {
        level: Option<String>,
    }
    let Ok(p) = serde_json::from_slice::<Probe>(msg) else {
        return true;
    };
    match (p.method.as_deref(), p.id) {
        (Some(_), Some(_)) => false,
        (Some(protocol::methods::LOG_MESSAGE), None) => {
            let level = p.params.and_then(|l| l.level).unwrap_or_default();
            m.wants_log(&level)
        }
        _ => true,
    }
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

pub(super) fn sse_response(body: Body) -> Response {
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

#[cfg(test)]
mod tests {
    use super::shape_result;
    use serde_json::value::RawValue;
    use serde_json::{json, Value};

    fn shaped(method: &str, text: &str) -> Value {
        let raw = RawValue::from_string(text.to_owned()).unwrap();
        serde_json::from_str(shape_result(method, raw, 500).get()).unwrap()
    }

    #[test]
    fn results_get_what_2026_needs_and_keep_the_rest() {
        assert_eq!(
            shaped("tools/call", r#"{"content":[]}"#),
            json!({"resultType": "complete", "content": []})
        );
        assert_eq!(
            shaped("tools/call", "{ }"),
            json!({"resultType": "complete"})
        );
        assert_eq!(
            shaped("tools/list", r#"{"tools":[]}"#),
            json!({"resultType": "complete", "ttlMs": 500, "cacheScope": "private", "tools": []})
        );
        // An upstream read without hints: fleetgate cannot tell its freshness.
        assert_eq!(shaped("resources/read", "{}")["ttlMs"], 0);
        // What a 2026 upstream sent stays as it sent it.
        let up = r#"{"resultType":"complete","ttlMs":9,"cacheScope":"public","contents":[]}"#;
        let raw = RawValue::from_string(up.to_owned()).unwrap();
        assert_eq!(shape_result("resources/read", raw, 500).get(), up);
        // An interim MRTR result carries no caching hints.
        let mrtr = r#"{"resultType":"input_required","inputRequests":{}}"#;
        let raw = RawValue::from_string(mrtr.to_owned()).unwrap();
        assert_eq!(shape_result("tools/list", raw, 500).get(), mrtr);
        // Not an object: nothing to add to.
        let raw = RawValue::from_string("[1]".to_owned()).unwrap();
        assert_eq!(shape_result("tools/call", raw, 500).get(), "[1]");
    }
}
