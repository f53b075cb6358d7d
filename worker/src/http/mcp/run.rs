//! The request runner. A request's call (the dispatcher) runs as a
//! [`Call`]: a panic becomes a JSON-RPC internal error, and a client going
//! away does not cancel it (MCP: a disconnect is not a cancellation). A
//! single request's answer is JSON unless the upstream speaks before its
//! result and the client accepts SSE; then it becomes an SSE stream written
//! by the call's own task into the session's event store, which the
//! connection only follows (a dropped connection loses nothing: the client
//! resumes with `GET` + `Last-Event-ID`).

use super::accepts;
use crate::gateway::dispatch::{dispatch, Context};
use crate::gateway::error::RpcError;
use crate::gateway::events::{self, EventStore};
use crate::gateway::scope::{Principal, Scope};
use crate::gateway::session::Session;
use crate::state::AppState;
use crate::wire::json_body;
use axum::body::{Body, Bytes};
use axum::response::{IntoResponse, Response};
use fleetgate_mcp::jsonrpc::{self, ErrorObject, Id};
use fleetgate_mcp::protocol;
use futures_util::FutureExt;
use http::{header, HeaderMap, HeaderValue, StatusCode};
use serde_json::value::RawValue;
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context as TaskContext, Poll};
use tokio::sync::mpsc;

/// One request's call, polled by the connection's own task (no task of its
/// own per request); dropped unfinished, it goes on in a new task. Its
/// output is the encoded answer.
pub(super) struct Call(Option<Pin<Box<dyn Future<Output = Vec<u8>> + Send>>>);

impl Call {
    pub(super) fn new(st: &AppState, ctx: Context, req: fleetgate_mcp::Request) -> Call {
        let core = st.core.clone();
        let id = req.id.clone();
        let call = AssertUnwindSafe(async move {
            let res = dispatch(&core, &ctx, &req.method, req.params).await;
            answer_bytes(&req.id, res)
        })
        .catch_unwind()
        .map(move |done| done.unwrap_or_else(|_| internal(&id)));
        Call(Some(Box::pin(call)))
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
    let mut call = Call::new(st, ctx, req);
    // `biased`, messages first: whatever the upstream sent before its result
    // must reach the client before the result does (and turns the answer into
    // an SSE stream). The call can send its last messages and finish in one
    // poll (they came in one read from the upstream), so a finished call's
    // messages are drained from the channel before its result is used.
    let (first, finished) = tokio::select! {
        biased;
        Some(first) = rx.recv(), if sse_ok => (first, None),
        body = &mut call => {
            drop(attached.take());
            match rx.try_recv() {
                Ok(first) if sse_ok => (first, Some(body)),
                _ => return json_body(StatusCode::OK, body),
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
                    Some(m) = rx.recv() => {
                        w.append(&n, m);
                    }
                    body = &mut call => break body,
                }
            },
        };
        drop(attached);
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
