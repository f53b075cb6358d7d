//! The legacy HTTP+SSE transport of MCP 2024-11-05, at ContextForge's paths.
//!
//! `GET /sse` (scope: everything the caller may see) or `GET /servers/{id}/sse`
//! (that virtual server) opens a session whose SSE stream is the connection.
//! Its first event, `endpoint`, names where the client POSTs its messages: the
//! message path of the session's scope, relative (`/message?session_id=…` or
//! `/servers/{id}/message?session_id=…`). Each POST is answered 202 at once;
//! what it asks is answered on the stream (`message` events), as are the
//! notifications and requests upstreams send during its calls.
//!
//! One session model: the stream's session is a downstream [`Session`] like
//! the one `initialize` opens on `/mcp` (minted and claimed through the
//! cluster, so its id names its owner and Redis knows it), and the SSE
//! connection is its GET stream. A POST may land on any worker or host: it is
//! routed like an MCP request, by the session its query names, and a worker
//! that does not hold the session forwards it to the owner
//! ([`Kind::LegacyMessage`] in the sealed frame), whose 202 comes back. The
//! session lives as long as its stream: closing the connection ends it (its
//! upstream sessions are closed, as DELETE does on `/mcp`), and it is never
//! adopted by another worker (the stream it answers on is gone with its owner).

use super::run::{sse_response, Call};
use super::session::may_use;
use super::{check_origin, passthrough, path_scope, TransportError};
use crate::cluster::forward::Inbound;
use crate::cluster::redis_owners::short;
use crate::cluster::{Kind, Route};
use crate::gateway::dispatch::Context;
use crate::gateway::scope::{Principal, Scope};
use crate::gateway::session::Session;
use crate::metrics::Metrics;
use crate::state::AppState;
use crate::wire::read_body;
use axum::body::{Body, Bytes};
use axum::extract::Request;
use axum::response::{IntoResponse, Response};
use fleetgate_mcp::jsonrpc::{self, Id, Message, Parsed};
use fleetgate_mcp::protocol::methods;
use fleetgate_mcp::sse;
use futures_util::stream;
use http::{HeaderMap, Method, StatusCode};
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC};
use serde_json::Value;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;

/// The protocol version of this transport. A client asking for it in
/// `initialize` gets it; any other ask is negotiated as on `/mcp`.
pub const LEGACY_PROTOCOL_VERSION: &str = "2024-11-05";

/// How often an idle stream carries a comment: a client gone without a word
/// is noticed by the failed write (and its session ended), and the session's
/// ownership in Redis is refreshed meanwhile.
const KEEPALIVE: Duration = Duration::from_secs(30);

/// The query parameter naming the session (`sessionId` is the TypeScript
/// SDK's spelling, also accepted).
const SESSION_PARAMS: [&str; 2] = ["session_id", "sessionId"];

/// A server id as one path segment (RFC 3986 unreserved characters stay).
const SEGMENT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// `GET /sse`, `GET /servers/{id}/sse`: a new session, its stream.
pub async fn open(st: &AppState, server: Option<String>, who: Principal, req: Request) -> Response {
    open_stream(st, server, who, req)
        .await
        .unwrap_or_else(TransportError::into_response)
}

async fn open_stream(
    st: &AppState,
    server: Option<String>,
    who: Principal,
    req: Request,
) -> Result<Response, TransportError> {
    if req.method() != Method::GET {
        return Err(TransportError::MethodNotAllowed { allow: "GET" });
    }
    let scope = path_scope(st, &who, server).await?;
    check_origin(st, req.headers())?;
    let sid = st.cluster.mint(&scope, &who);
    st.cluster.claim(&sid, &who).await;
    let session = st.sessions.create(sid, scope, who, LEGACY_PROTOCOL_VERSION);
    Metrics::inc(&st.metrics.sessions_created);
    let (tx, rx) = mpsc::channel::<Bytes>(64);
    // A session created just now has no stream yet: this one is installed.
    session.open_stream(tx);
    tracing::debug!(session = short(&session.id), "legacy SSE session opened");
    let endpoint = sse::encode_event(
        None,
        Some("endpoint"),
        &message_uri(&session.scope, &session.id),
    );
    // The stream holds no `Arc<Session>`: the session's own sender must go
    // when the session does, so the stream ends with it.
    let live = Live {
        rx,
        ticks: tokio::time::interval_at(tokio::time::Instant::now() + KEEPALIVE, KEEPALIVE),
        end: EndOnClose {
            st: st.clone(),
            sid: session.id.clone(),
            scope: session.scope.clone(),
        },
    };
    let head = stream::once(async move { Ok::<_, Infallible>(Bytes::from(endpoint)) });
    let tail = stream::unfold(live, |mut live| async move {
        let event = tokio::select! {
            m = live.rx.recv() => {
                let m = m?;
                sse::encode_message_event(None, std::str::from_utf8(&m).unwrap_or("{}"))
            }
            _ = live.ticks.tick() => {
                live.end.keep_owned();
                sse::encode_comment("keepalive")
            }
        };
        Some((Ok(Bytes::from(event)), live))
    });
    Ok(sse_response(Body::from_stream(
        futures_util::StreamExt::chain(head, tail),
    )))
}

/// The open stream's state.
struct Live {
    rx: mpsc::Receiver<Bytes>,
    ticks: tokio::time::Interval,
    end: EndOnClose,
}

/// Ends the session when its stream goes (the client closed the connection,
/// or the session ended and its sender with it).
struct EndOnClose {
    st: AppState,
    sid: String,
    scope: Scope,
}

impl EndOnClose {
    /// With Redis: refreshes the session's ownership (throttled), so a quiet
    /// stream keeps its session findable by every worker.
    fn keep_owned(&self) {
        if let Some(s) = self.st.sessions.get(&self.sid, &self.scope) {
            self.st.cluster.touch(&s);
        }
    }
}

impl Drop for EndOnClose {
    fn drop(&mut self) {
        let (st, sid) = (self.st.clone(), std::mem::take(&mut self.sid));
        tracing::debug!(
            session = short(&sid),
            "legacy SSE stream closed; ending its session"
        );
        match tokio::runtime::Handle::try_current() {
            Ok(rt) => {
                rt.spawn(async move { st.cluster.release(&sid).await });
            }
            Err(_) => {
                st.sessions.remove(&sid);
            }
        }
    }
}

/// Where the client of a session in `scope` POSTs its messages.
fn message_uri(scope: &Scope, sid: &str) -> String {
    match scope.server_id() {
        None => format!("/message?session_id={sid}"),
        Some(id) => format!(
            "/servers/{}/message?session_id={sid}",
            percent_encoding::utf8_percent_encode(id, SEGMENT)
        ),
    }
}

/// The session a message names in its query string.
fn session_param(query: Option<&str>) -> Option<String> {
    query?.split('&').find_map(|pair| {
        let (k, v) = pair.split_once('=')?;
        if !SESSION_PARAMS.contains(&k) || v.is_empty() {
            return None;
        }
        let v = percent_encoding::percent_decode_str(v).decode_utf8().ok()?;
        Some(v.into_owned())
    })
}

/// `POST /message`, `POST /servers/{id}/message`: scope → origin → route →
/// here (or the owner's answer).
pub async fn message(
    st: &AppState,
    server: Option<String>,
    who: Principal,
    req: Request,
) -> Response {
    post(st, server, who, req)
        .await
        .unwrap_or_else(TransportError::into_response)
}

async fn post(
    st: &AppState,
    server: Option<String>,
    who: Principal,
    req: Request,
) -> Result<Response, TransportError> {
    if req.method() != Method::POST {
        return Err(TransportError::MethodNotAllowed { allow: "POST" });
    }
    let scope = path_scope(st, &who, server).await?;
    check_origin(st, req.headers())?;
    let Some(session) = session_param(req.uri().query()) else {
        return Err(TransportError::SessionParamRequired);
    };
    let (parts, body) = req.into_parts();
    let body = read_body(body, st.gateway_cfg.max_body_bytes).await?;
    let kind = Kind::LegacyMessage {
        session: session.clone(),
    };
    let inbound = Inbound {
        method: &parts.method,
        kind: &kind,
        scope: &scope,
        principal: &who,
        headers: &parts.headers,
        body: &body,
    };
    match st.cluster.route(&inbound).await {
        Ok(Route::Answered(resp)) => return Ok(resp),
        // Never adopted: a session this worker does not hold is unknown here.
        Ok(Route::Here { .. }) => {}
        Err(why) => return Err(TransportError::owner(&body, why)),
    }
    let posted = Posted {
        scope,
        principal: who,
        session,
        headers: parts.headers,
        body,
    };
    here(st, posted).await
}

/// A message for a session, to be served by the worker holding it.
pub(crate) struct Posted {
    pub scope: Scope,
    pub principal: Principal,
    pub session: String,
    pub headers: HeaderMap,
    pub body: Bytes,
}

/// Serves a message in this worker, whoever routed it here: 202, and every
/// request it carries run with its answer going on the session's stream.
pub(crate) async fn here(st: &AppState, m: Posted) -> Result<Response, TransportError> {
    let id = || jsonrpc::request_id(&m.body).unwrap_or(Id::Null);
    // A session exists only in the scope it was opened in, and only while
    // its stream is open.
    let Some(session) = st.sessions.get(&m.session, &m.scope) else {
        return Err(TransportError::SessionNotFound { id: id() });
    };
    let Some(stream) = session.stream() else {
        return Err(TransportError::SessionNotFound { id: id() });
    };
    if !may_use(&session, &m.principal) {
        return Err(TransportError::SessionForbidden { id: id() });
    }
    st.cluster.touch(&session);
    let items = match jsonrpc::parse(&m.body)? {
        Parsed::Single(msg) => vec![Ok(msg)],
        Parsed::Batch(items) => items,
    };
    for item in items {
        match item {
            Err(e) => {
                let err = e.to_error_response();
                let err = jsonrpc::encode_error(&err.id, &err.error);
                let _ = stream.send(Bytes::from(err)).await;
            }
            Ok(Message::Request(r)) => run(st, &m, &session, stream.clone(), r),
            Ok(Message::Response(r)) => {
                session.answer(&r.id, Ok(jsonrpc::value_of(&r.result)));
            }
            Ok(Message::Error(e)) => {
                session.answer(&e.id, Err(e.error));
            }
            Ok(Message::Notification(_)) => {}
        }
    }
    Ok(StatusCode::ACCEPTED.into_response())
}

/// Runs one request in its own task (the POST is answered at once); its
/// answer, and whatever upstreams send during it, go on the stream. The
/// request's own principal: a session never lends the rights of the token
/// that opened it to a narrower token of the same user.
fn run(
    st: &AppState,
    m: &Posted,
    session: &Arc<Session>,
    stream: mpsc::Sender<Bytes>,
    r: fleetgate_mcp::Request,
) {
    let legacy_init =
        r.method == methods::INITIALIZE && asked_version(&r) == Some(LEGACY_PROTOCOL_VERSION);
    let ctx = Context::session(
        m.principal.clone(),
        m.scope.clone(),
        session.clone(),
        Some(stream.clone()),
        passthrough(st, &m.headers),
    );
    let call = Call::new(st, ctx, r);
    tokio::spawn(async move {
        let mut answer = call.await;
        if legacy_init {
            answer = with_version(answer, LEGACY_PROTOCOL_VERSION);
        }
        let _ = stream.send(Bytes::from(answer)).await;
    });
}

/// The protocol version an `initialize` asks for.
fn asked_version(r: &fleetgate_mcp::Request) -> Option<&str> {
    r.params.as_ref()?.get("protocolVersion")?.as_str()
}

/// An `initialize` answer agreeing on `version`: the dispatcher negotiates
/// among the Streamable HTTP versions
/// ([`fleetgate_mcp::protocol::negotiate_version`]), and
/// this transport's own version is not one of them.
fn with_version(answer: Vec<u8>, version: &str) -> Vec<u8> {
    let Ok(mut v) = serde_json::from_slice::<Value>(&answer) else {
        return answer;
    };
    match v.pointer_mut("/result/protocolVersion") {
        Some(pv) => *pv = Value::from(version),
        None => return answer, // an error: as it is
    }
    serde_json::to_vec(&v).unwrap_or(answer)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_endpoint_names_the_message_path_of_the_sessions_scope() {
        assert_eq!(
            message_uri(&Scope::All, "0_ab_cd"),
            "/message?session_id=0_ab_cd"
        );
        assert_eq!(
            message_uri(&Scope::Server("a b/c".into()), "1_ab_cd"),
            "/servers/a%20b%2Fc/message?session_id=1_ab_cd"
        );
    }

    #[test]
    fn the_session_is_read_from_the_query() {
        assert_eq!(
            session_param(Some("session_id=0_a_b")).as_deref(),
            Some("0_a_b")
        );
        assert_eq!(
            session_param(Some("x=1&sessionId=0_a_b")).as_deref(),
            Some("0_a_b")
        );
        assert_eq!(
            session_param(Some("session_id=a%5Fb")).as_deref(),
            Some("a_b")
        );
        assert_eq!(session_param(Some("session_id=")), None);
        assert_eq!(session_param(Some("session=0_a_b")), None);
        assert_eq!(session_param(None), None);
    }

    #[test]
    fn a_legacy_initialize_is_answered_in_its_version() {
        let answer = br#"{"jsonrpc":"2.0","id":1,"result":{"protocolVersion":"2025-11-25","capabilities":{}}}"#;
        let v: Value =
            serde_json::from_slice(&with_version(answer.to_vec(), LEGACY_PROTOCOL_VERSION))
                .unwrap();
        assert_eq!(v["result"]["protocolVersion"], LEGACY_PROTOCOL_VERSION);
        assert_eq!(v["id"], 1);
        let error = br#"{"jsonrpc":"2.0","id":1,"error":{"code":-32603,"message":"x"}}"#;
        assert_eq!(
            with_version(error.to_vec(), LEGACY_PROTOCOL_VERSION),
            error.to_vec()
        );
    }
}
