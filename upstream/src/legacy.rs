//! The legacy HTTP+SSE transport of MCP 2024-11-05 (served when
//! [`crate::UpstreamBuilder::legacy_sse`] is on, next to Streamable HTTP on `/mcp`).
//!
//! * `GET /sse` opens the connection's SSE stream. Its first event is
//!   `event: endpoint` whose data is the URI to POST to:
//!   `/messages?session_id=<32 hex>`.
//! * `POST /messages?session_id=…` takes one JSON-RPC message (or a batch) and
//!   answers `202 Accepted`; every response, notification and server → client request
//!   goes out as an `event: message` on the stream. `initialize` creates the session
//!   (counted in the stats like a Streamable HTTP session); an unknown `session_id` is
//!   404, a missing one 400.
//! * Closing the stream (the client disconnecting) ends the session; ending the session
//!   ([`crate::RunningUpstream::drop_sessions`]) closes the stream.

use std::convert::Infallible;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use futures_util::future::{AbortHandle, Abortable};
use futures_util::StreamExt;
use http::StatusCode;
use serde_json::Value;
use tokio::sync::mpsc;

use crate::http::{
    accepted, client_response, host_allowed, is_json_content, notification, rpc_http_error,
    sse_headers, MAX_BODY,
};
use crate::jobs::{self, Ctx, Out};
use crate::mcp::{self, Reply, Req};
use crate::rpc::{self, Incoming, Kind};
use crate::state::{ClientCaps, Session, Shared};

/// The path of the stream.
pub const SSE_PATH: &str = "/sse";
/// The path messages are POSTed to.
pub const MESSAGES_PATH: &str = "/messages";

/// Removes the connection's session when its stream is dropped (client gone).
struct OnDisconnect {
    shared: Arc<Shared>,
    sid: Arc<str>,
}

impl Drop for OnDisconnect {
    fn drop(&mut self) {
        crate::lock(&self.shared.legacy_pending).remove(&self.sid);
        self.shared.remove_session(&self.sid);
    }
}

pub async fn get_sse(State(shared): State<Arc<Shared>>, req: Request) -> Response {
    shared.stats.get_requests.fetch_add(1, Relaxed);
    if !host_allowed(&shared, req.headers()) {
        return rpc_http_error(
            StatusCode::FORBIDDEN,
            &Value::Null,
            rpc::SERVER_ERROR,
            "Forbidden: Host/Origin header not allowed",
        );
    }
    if *shared.stopping.borrow() {
        return StatusCode::SERVICE_UNAVAILABLE.into_response();
    }
    let sid: Arc<str> = shared.new_session_id().into();
    let (tx, rx) = mpsc::unbounded_channel::<Bytes>();
    crate::lock(&shared.legacy_pending).insert(sid.clone(), tx);
    let endpoint = Bytes::from(format!(
        "event: endpoint\ndata: {MESSAGES_PATH}?session_id={sid}\n\n"
    ));
    let guard = OnDisconnect { shared, sid };
    let head = futures_util::stream::iter([endpoint]);
    let tail = futures_util::stream::unfold((rx, guard), |(mut rx, guard)| async move {
        let b = rx.recv().await?;
        Some((b, (rx, guard)))
    });
    let mut r = Response::new(Body::from_stream(
        head.chain(tail).map(Ok::<Bytes, Infallible>),
    ));
    sse_headers(&mut r);
    r
}

fn session_id_of(query: Option<&str>) -> Option<String> {
    query?.split('&').find_map(|pair| {
        let (k, v) = pair.split_once('=')?;
        (k == "session_id" || k == "sessionId").then(|| v.to_owned())
    })
}

pub async fn post_messages(State(shared): State<Arc<Shared>>, req: Request) -> Response {
    shared.stats.post_requests.fetch_add(1, Relaxed);
    let (parts, body) = req.into_parts();
    let headers = parts.headers;
    let Some(sid) = session_id_of(parts.uri.query()) else {
        return rpc_http_error(
            StatusCode::BAD_REQUEST,
            &Value::Null,
            rpc::SERVER_ERROR,
            "Bad Request: the session_id query parameter is required",
        );
    };
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
    let known = shared.session(&sid).is_some()
        || crate::lock(&shared.legacy_pending).contains_key(sid.as_str());
    if !known {
        return rpc_http_error(
            StatusCode::NOT_FOUND,
            &Value::Null,
            rpc::SESSION_NOT_FOUND,
            "Session not found",
        );
    }
    let msgs: Vec<Incoming<'_>> = if body.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'[') {
        match serde_json::from_slice(&body) {
            Ok(m) => m,
            Err(_) => return parse_error(),
        }
    } else {
        match serde_json::from_slice(&body) {
            Ok(m) => vec![m],
            Err(_) => return parse_error(),
        }
    };
    for msg in msgs {
        if let Err(r) = one(&shared, &sid, &headers, msg) {
            return *r;
        }
    }
    accepted()
}

fn parse_error() -> Response {
    rpc_http_error(
        StatusCode::BAD_REQUEST,
        &Value::Null,
        rpc::PARSE_ERROR,
        "Parse error",
    )
}

/// Handles one message of connection `sid`; answers go on its stream.
fn one(
    shared: &Arc<Shared>,
    sid: &str,
    headers: &http::HeaderMap,
    mut msg: Incoming<'_>,
) -> Result<(), Box<Response>> {
    let params = msg.params.take();
    let session = shared.session(sid);
    match msg.kind() {
        Kind::Request { id, method } if method == "initialize" && session.is_none() => {
            shared.stats.count_method(method);
            let Some(tx) = crate::lock(&shared.legacy_pending).remove(sid) else {
                return Err(Box::new(rpc_http_error(
                    StatusCode::NOT_FOUND,
                    &Value::Null,
                    rpc::SESSION_NOT_FOUND,
                    "Session not found",
                )));
            };
            let version = mcp::negotiate(
                params
                    .as_ref()
                    .and_then(|p| p.get("protocolVersion"))
                    .and_then(Value::as_str),
            );
            let caps = ClientCaps::from_value(params.as_ref().and_then(|p| p.get("capabilities")));
            let session = Arc::new(Session::new(version, caps));
            session.attach_standalone(tx);
            crate::write(&shared.sessions).insert(sid.into(), session.clone());
            shared.stats.sessions_initialized.fetch_add(1, Relaxed);
            session.send_standalone(&rpc::result_msg(
                &id,
                &mcp::initialize_result(shared, version),
            ));
            Ok(())
        }
        kind => {
            let Some(session) = session else {
                // The stream is open but `initialize` has not been sent yet.
                return match kind {
                    Kind::Notification { .. } | Kind::Response { .. } => Ok(()),
                    Kind::Request { id, .. } | Kind::Invalid { id, .. } => {
                        Err(Box::new(rpc_http_error(
                            StatusCode::BAD_REQUEST,
                            &id,
                            rpc::INVALID_REQUEST,
                            "Bad Request: the session is not initialized yet",
                        )))
                    }
                };
            };
            match kind {
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
                    match reply {
                        Reply::Now(m) => {
                            session.send_standalone(&m);
                        }
                        Reply::Job(job) => spawn_job(shared, &session, job),
                    }
                }
                Kind::Notification { method } => {
                    shared.stats.count_method(method);
                    notification(&session, method, params.as_ref());
                }
                Kind::Response { id, result, error } => {
                    client_response(shared, &session, &id, result, error)
                }
                Kind::Invalid { id, why } => {
                    session.send_standalone(&rpc::error_msg(&id, rpc::INVALID_REQUEST, why, None));
                }
            }
            Ok(())
        }
    }
}

/// Runs an asynchronous tool; its messages and its response go on the stream (a
/// cancelled job sends no response).
fn spawn_job(shared: &Arc<Shared>, session: &Arc<Session>, job: mcp::Job) {
    let key = rpc::id_key(&job.id);
    let (handle, registration) = AbortHandle::new_pair();
    session.register_inflight(key.clone(), handle, None);
    let ctx = Ctx {
        shared: shared.clone(),
        out: Out::Detached(session.clone()),
        progress_token: job.progress_token.clone(),
        log_level: None,
    };
    let s = session.clone();
    tokio::spawn(async move {
        let work = async {
            let msg = jobs::run(&ctx, job).await;
            if let Some(m) = ctx.finish(msg) {
                s.send_standalone(&m);
            }
        };
        let _ = Abortable::new(work, registration).await;
        s.finish_inflight(&key);
    });
}

#[cfg(test)]
mod tests {
    use super::session_id_of;

    #[test]
    fn session_id_from_query() {
        assert_eq!(session_id_of(Some("session_id=ab")), Some("ab".into()));
        assert_eq!(session_id_of(Some("x=1&sessionId=cd")), Some("cd".into()));
        assert_eq!(session_id_of(Some("x=1")), None);
        assert_eq!(session_id_of(None), None);
    }
}
