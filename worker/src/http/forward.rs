//! Worker-to-worker forwarding: a request for a session owned by another worker
//! goes to that worker's Unix socket as the same HTTP request plus a signed
//! [`Envelope`]; the owner runs the one transport/dispatcher in-process and its
//! answer comes back through [`relay`] (SSE streams pass straight through).

use crate::gateway::affinity::{now_ms, Envelope, ENVELOPE_HEADER, FORWARD_PATH, SIGNATURE_HEADER};
use crate::gateway::relay::{relay, OwnerAnswer};
use crate::gateway::scope::{Principal, Scope};
use crate::http::mcp::{self, detail};
use crate::http::WORKER_HEADER;
use crate::state::AppState;
use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderName, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::any;
use axum::Router;
use fleetgate_mcp::jsonrpc;
use http_body_util::{BodyExt, Full, Limited};
use hyper_util::rt::TokioIo;
use std::time::{Duration, Instant};
use tokio::net::UnixStream;

/// How long a forward waits for the owner's socket (a crashed owner's
/// replacement binds it within milliseconds).
const OWNER_WAIT: Duration = Duration::from_secs(2);
/// Largest non-streaming answer relayed.
const MAX_ANSWER: usize = 64 << 20;

/// Client headers the owner needs.
const CARRIED: &[&str] = &[
    "content-type",
    "accept",
    "mcp-session-id",
    "x-mcp-session-id",
    "mcp-protocol-version",
    "last-event-id",
    "origin",
    "host",
];

/// The owner could not be reached at all.
#[derive(Debug)]
pub struct OwnerUnreachable;

pub async fn forward(
    st: &AppState,
    slot: u32,
    method: Method,
    scope: &Scope,
    principal: &Principal,
    h: &HeaderMap,
    body: Bytes,
) -> Result<Response, OwnerUnreachable> {
    let aff = &st.affinity;
    let path = aff.socket_path(slot).ok_or(OwnerUnreachable)?;
    let mut headers: Vec<(String, String)> = Vec::new();
    let passthrough = st
        .gateway_cfg
        .passthrough_headers
        .iter()
        .map(String::as_str);
    for name in CARRIED.iter().copied().chain(passthrough) {
        if let Some(v) = h.get(name).and_then(|v| v.to_str().ok()) {
            headers.push((name.to_owned(), v.to_owned()));
        }
    }
    let env = Envelope {
        method: method.to_string(),
        scope: scope.server_id().map(str::to_owned),
        claims: (*principal.claims).clone(),
        headers,
        deadline_ms: now_ms() + aff.forward_timeout.as_millis() as u64,
        request_id: uuid::Uuid::new_v4().simple().to_string(),
    };
    let (env_hex, sig) = aff.seal(&env, &body);
    let stream = connect(&path).await.ok_or(OwnerUnreachable)?;
    let Ok((mut sender, conn)) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await
    else {
        return Err(OwnerUnreachable);
    };
    tokio::spawn(conn);
    let req = hyper::Request::builder()
        .method(method)
        .uri(FORWARD_PATH)
        .header("host", "fleetgate-owner")
        .header(ENVELOPE_HEADER, env_hex)
        .header(SIGNATURE_HEADER, sig)
        .body(Full::new(body.clone()))
        .map_err(|_| OwnerUnreachable)?;
    let id = jsonrpc::parse_message(&body).ok().and_then(|m| match m {
        jsonrpc::Message::Request(r) => Some(r.id),
        _ => None,
    });
    let timeout = aff.forward_timeout;
    let resp = match tokio::time::timeout(timeout, sender.send_request(req)).await {
        Ok(Ok(resp)) => resp,
        Ok(Err(e)) => {
            tracing::warn!(slot, error = %e, "forward to the session owner failed");
            return Err(OwnerUnreachable);
        }
        Err(_) => {
            crate::metrics::Metrics::inc(&st.metrics.forward_timeouts);
            let a = relay(
                OwnerAnswer::TimedOut {
                    after_ms: timeout.as_millis() as u64,
                },
                id.as_ref(),
            );
            return Ok(build(
                a.status,
                &a.content_type,
                Body::from(a.body),
                None,
                None,
            ));
        }
    };
    let status = resp.status();
    let keep = |n: &str| resp.headers().get(n).cloned();
    let (session, worker) = (keep("mcp-session-id"), keep(WORKER_HEADER));
    let content_type = resp
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    if status.is_success() && content_type.starts_with("text/event-stream") {
        // A stream: relay it as it comes.
        let body = Body::new(resp.into_body());
        return Ok(build(status.as_u16(), &content_type, body, session, worker));
    }
    let bytes = match Limited::new(resp.into_body(), MAX_ANSWER).collect().await {
        Ok(b) => b.to_bytes(),
        Err(_) => Bytes::new(),
    };
    let a = relay(
        OwnerAnswer::Answered {
            status: status.as_u16(),
            content_type,
            body: bytes,
        },
        id.as_ref(),
    );
    Ok(build(
        a.status,
        &a.content_type,
        Body::from(a.body),
        session,
        worker,
    ))
}

fn build(
    status: u16,
    content_type: &str,
    body: Body,
    session: Option<HeaderValue>,
    worker: Option<HeaderValue>,
) -> Response {
    let mut resp = Response::new(body);
    *resp.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_GATEWAY);
    let h = resp.headers_mut();
    if let Ok(v) = HeaderValue::from_str(content_type) {
        if !content_type.is_empty() {
            h.insert(header::CONTENT_TYPE, v);
        }
    }
    if content_type.starts_with("text/event-stream") {
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    }
    if let Some(s) = session {
        h.insert("mcp-session-id", s);
    }
    if let Some(w) = worker {
        h.insert(WORKER_HEADER, w);
    }
    resp
}

/// Connects to the owner's socket, waiting briefly for a replacement to bind it.
async fn connect(path: &std::path::Path) -> Option<UnixStream> {
    // No socket at all: no worker ever held that slot (a made-up id).
    if !path.exists() {
        return None;
    }
    let deadline = Instant::now() + OWNER_WAIT;
    loop {
        match UnixStream::connect(path).await {
            Ok(s) => return Some(s),
            Err(_) if Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            Err(e) => {
                tracing::warn!(socket = %path.display(), error = %e, "session owner unreachable");
                return None;
            }
        }
    }
}

/// The owner's side: the internal router on the worker's Unix socket.
pub fn internal_routes(state: AppState) -> Router {
    Router::new()
        .route(FORWARD_PATH, any(forwarded))
        .with_state(state)
}

async fn forwarded(
    State(st): State<AppState>,
    method: Method,
    h: HeaderMap,
    body: Bytes,
) -> Response {
    let get = |n: &str| h.get(n).and_then(|v| v.to_str().ok());
    let (Some(env_hex), Some(sig)) = (get(ENVELOPE_HEADER), get(SIGNATURE_HEADER)) else {
        return detail(StatusCode::UNAUTHORIZED, "forward refused: not signed");
    };
    let env = match st.affinity.open(env_hex, sig, &body) {
        Ok(env) => env,
        Err(why) => {
            tracing::warn!(why, "refused a forwarded request");
            return detail(StatusCode::UNAUTHORIZED, &format!("forward refused: {why}"));
        }
    };
    let mut headers = HeaderMap::new();
    for (k, v) in &env.headers {
        if let (Ok(k), Ok(v)) = (HeaderName::try_from(k.as_str()), HeaderValue::from_str(v)) {
            headers.insert(k, v);
        }
    }
    crate::metrics::Metrics::inc(&st.metrics.forwarded_served);
    let (scope, principal) = (env.scope(), env.principal());
    let mut resp = match method {
        Method::POST => mcp::handle_post(&st, scope, principal, &headers, body, true).await,
        Method::GET => mcp::handle_get(&st, scope, principal, &headers, true).await,
        Method::DELETE => mcp::handle_delete(&st, scope, principal, &headers, true).await,
        _ => StatusCode::METHOD_NOT_ALLOWED.into_response(),
    };
    if let Ok(v) = HeaderValue::from_str(&st.worker.id) {
        resp.headers_mut().insert(WORKER_HEADER, v);
    }
    resp
}
