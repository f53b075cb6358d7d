//! Worker-to-worker forwarding: a request for a session owned by another worker
//! goes to that worker as the same HTTP request plus a signed envelope
//! ([`crate::gateway::affinity::Envelope`]) — over its Unix socket (embedded
//! mode), its internal TCP listener or Redis pub/sub (with `REDIS_URL`); the owner runs the one transport/dispatcher
//! in-process and its answer comes back through [`relay`] (SSE streams pass
//! straight through).

use crate::gateway::affinity::{Outgoing, FORWARD_PATH, SIGNATURE_HEADER};
use crate::gateway::relay::{relay, OwnerAnswer};
use crate::gateway::scope::{Principal, Scope};
use crate::http::mcp::{self, detail};
use crate::http::pubsub::PubSendError;
use crate::http::quiet_unix::QuietUnix;
use crate::http::{name_worker, WORKER_HEADER};
use crate::state::AppState;
use axum::body::{Body, Bytes};
use axum::http::{header, HeaderMap, HeaderName, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use fleetgate_http1 as net;
use fleetgate_mcp::protocol;
use std::future::Future;
use std::time::{Duration, Instant};
use tokio::net::{TcpStream, UnixStream};

/// How long a forward waits for the owner's socket (a crashed owner's
/// replacement binds it within milliseconds).
const OWNER_WAIT: Duration = Duration::from_secs(2);
/// How long a connection to another worker's internal listener may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);
/// Largest non-streaming answer relayed.
const MAX_ANSWER: usize = 64 << 20;

/// Client headers the owner needs.
static CARRIED: [HeaderName; 8] = [
    header::CONTENT_TYPE,
    header::ACCEPT,
    protocol::MCP_SESSION_ID,
    protocol::X_MCP_SESSION_ID,
    protocol::MCP_PROTOCOL_VERSION,
    protocol::LAST_EVENT_ID,
    header::ORIGIN,
    header::HOST,
];

/// The owner could not be reached at all.
#[derive(Debug)]
pub struct OwnerUnreachable;

/// Where a forwarded request goes.
pub enum Target<'a> {
    /// A sibling on this host, by slot, over its Unix socket (embedded mode).
    Unix(u32),
    /// A worker's internal HTTP listener (`host:port` from its heartbeat).
    Http(&'a str),
    /// A worker's Redis pub/sub channel, by worker id.
    PubSub(&'a str),
}

/// Why a forward did not reach the owner.
#[derive(Debug)]
pub enum ForwardError {
    /// Nothing answers there (connection refused, no subscriber): the owner is gone.
    Unreachable,
    /// Redis is down, so the request cannot travel (pub/sub).
    RedisDown,
    /// Redis is up but refuses what the transport needs (pub/sub): why.
    Refused(std::sync::Arc<str>),
}

impl From<OwnerUnreachable> for ForwardError {
    fn from(_: OwnerUnreachable) -> ForwardError {
        ForwardError::Unreachable
    }
}

/// Sends a request to its session's owner over the Unix sockets (embedded mode).
pub async fn forward(
    st: &AppState,
    slot: u32,
    method: Method,
    scope: &Scope,
    principal: &Principal,
    h: &HeaderMap,
    body: Bytes,
) -> Result<Response, OwnerUnreachable> {
    forward_to(st, Target::Unix(slot), method, scope, principal, h, body)
        .await
        .map_err(|_| OwnerUnreachable)
}

/// Sends a request to its session's owner and relays the answer.
pub async fn forward_to(
    st: &AppState,
    target: Target<'_>,
    method: Method,
    scope: &Scope,
    principal: &Principal,
    h: &HeaderMap,
    body: Bytes,
) -> Result<Response, ForwardError> {
    let aff = &st.affinity;
    // One pass over the request's headers (not a hashed lookup per carried
    // name); the first value of a name, as `HeaderMap::get` would give.
    let mut headers: Vec<(&str, &str)> = Vec::with_capacity(CARRIED.len());
    for (name, v) in h {
        let carried = CARRIED.iter().chain(st.passthrough()).any(|c| c == name);
        if carried && !headers.iter().any(|(n, _)| *n == name.as_str()) {
            if let Ok(v) = v.to_str() {
                headers.push((name.as_str(), v));
            }
        }
    }
    let out = Outgoing {
        method: method.as_str(),
        scope,
        principal,
        headers,
    };
    let (sealed, sig) = aff.seal(&out, &body);
    let sent = match target {
        Target::Unix(slot) => {
            // The socket's path only for a new connection (most forwards
            // reuse an idle one).
            let key = format!("unix:{slot}");
            let open = || async { Some(net::Conn::new(connect(&aff.socket_path(slot)?).await?)) };
            exchange(st, key, open, sealed, sig).await?
        }
        Target::Http(addr) => {
            let key = format!("tcp:{addr}");
            let open = || async { Some(net::Conn::new(connect_tcp(addr).await?)) };
            exchange(st, key, open, sealed, sig).await?
        }
        Target::PubSub(owner) => {
            let (Some(redis), Some(ps)) = (&st.redis, &st.pubsub) else {
                return Err(ForwardError::RedisDown);
            };
            let timeout = aff.forward_timeout;
            match ps.request(redis, owner, &sealed, &sig, timeout).await {
                Ok(Some((a, body))) => Sent::Answer {
                    status: a.status,
                    content_type: a.content_type,
                    body,
                    session: a.session.and_then(|v| HeaderValue::from_str(&v).ok()),
                    worker: a.worker.and_then(|v| HeaderValue::from_str(&v).ok()),
                },
                Ok(None) => Sent::TimedOut,
                Err(PubSendError::NoSubscriber) => return Err(ForwardError::Unreachable),
                Err(PubSendError::RedisDown) => return Err(ForwardError::RedisDown),
                Err(PubSendError::Refused(why)) => return Err(ForwardError::Refused(why)),
            }
        }
    };
    Ok(match sent {
        Sent::Stream(resp) => resp,
        Sent::TimedOut => {
            crate::metrics::Metrics::inc(&st.metrics.forward_timeouts);
            let a = relay(
                OwnerAnswer::TimedOut {
                    after_ms: aff.forward_timeout.as_millis() as u64,
                },
                &body,
            );
            build(a.status, &a.content_type, Body::from(a.body), None, None)
        }
        Sent::Answer {
            status,
            content_type,
            body: answer,
            session,
            worker,
        } => {
            let a = relay(
                OwnerAnswer::Answered {
                    status,
                    content_type,
                    body: answer,
                },
                &body,
            );
            build(
                a.status,
                &a.content_type,
                Body::from(a.body),
                session,
                worker,
            )
        }
    })
}

/// What came back from the owner.
enum Sent {
    /// A 2xx SSE stream, passed through as it comes.
    Stream(Response),
    Answer {
        status: u16,
        content_type: String,
        body: Bytes,
        session: Option<HeaderValue>,
        worker: Option<HeaderValue>,
    },
    TimedOut,
}

/// Idle keep-alive connections kept per owner (more are closed after use).
pub const MAX_IDLE_PER_OWNER: usize = 64;

/// One HTTP/1.1 exchange with the owner's internal router, on a pooled
/// connection (keyed `unix:{slot}` or `tcp:{addr}`) when one is idle, else on
/// a new one from `open`: `POST` of the sealed bytes, whatever the client's
/// method (the envelope names it).
async fn exchange<F, Fut>(
    st: &AppState,
    key: String,
    open: F,
    sealed: Bytes,
    sig: String,
) -> Result<Sent, OwnerUnreachable>
where
    F: FnOnce() -> Fut,
    Fut: Future<Output = Option<net::Conn>>,
{
    let sig = HeaderValue::try_from(sig).map_err(|_| OwnerUnreachable)?;
    let mut headers = HeaderMap::with_capacity(2);
    headers.insert(header::HOST, HeaderValue::from_static("fleetgate-owner"));
    headers.insert(SIGNATURE_HEADER, sig);
    let request = net::Request {
        method: &Method::POST,
        target: FORWARD_PATH,
        headers: &headers,
        body: &sealed,
    };
    // Boxed: connecting is needed only when no pooled connection is idle.
    let open = || Box::pin(async { open().await.ok_or(OwnerUnreachable) });
    let pool = &st.owner_connections;
    let timeout = st.affinity.forward_timeout;
    let mut resp = match tokio::time::timeout(timeout, net::send(pool, key, open, &request)).await {
        Ok(Ok(sent)) => sent,
        Ok(Err(net::SendError::Connect(e))) => return Err(e),
        Ok(Err(net::SendError::Http(e))) => {
            tracing::warn!(error = %e, "forward to the session owner failed");
            return Err(OwnerUnreachable);
        }
        Err(_) => return Ok(Sent::TimedOut),
    };
    let status = resp.status();
    let session = resp.headers().get(protocol::MCP_SESSION_ID).cloned();
    let worker = resp.headers().get(WORKER_HEADER).cloned();
    let content_type = resp
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    if status.is_success() && content_type.starts_with("text/event-stream") {
        // A stream: relay it as it comes.
        let body = Body::new(resp);
        return Ok(Sent::Stream(build(
            status.as_u16(),
            &content_type,
            body,
            session,
            worker,
        )));
    }
    let bytes = resp.bytes(MAX_ANSWER).await.unwrap_or_default();
    Ok(Sent::Answer {
        status: status.as_u16(),
        content_type,
        body: bytes,
        session,
        worker,
    })
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
async fn connect(path: &std::path::Path) -> Option<QuietUnix> {
    // No socket at all: no worker ever held that slot (a made-up id).
    if !path.exists() {
        return None;
    }
    let deadline = Instant::now() + OWNER_WAIT;
    loop {
        match UnixStream::connect(path).await.and_then(QuietUnix::new) {
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

/// Connects to another worker's internal TCP listener.
async fn connect_tcp(addr: &str) -> Option<TcpStream> {
    match tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(addr)).await {
        Ok(Ok(s)) => {
            let _ = s.set_nodelay(true);
            Some(s)
        }
        Ok(Err(e)) => {
            tracing::warn!(owner = addr, error = %e, "session owner unreachable");
            None
        }
        Err(_) => {
            tracing::warn!(owner = addr, "session owner did not accept within 1 s");
            None
        }
    }
}

/// The owner's side: the service on the worker's Unix socket (and, with
/// Redis, on its internal TCP listener: the envelope's signature is the only
/// trust). One route, `FORWARD_PATH`, served by a direct call: no router.
#[derive(Clone)]
pub struct Internal(pub AppState);

impl tower::Service<axum::extract::Request> for Internal {
    type Response = Response;
    type Error = std::convert::Infallible;
    type Future = std::pin::Pin<Box<dyn Future<Output = Result<Response, Self::Error>> + Send>>;

    fn poll_ready(
        &mut self,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), Self::Error>> {
        std::task::Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: axum::extract::Request) -> Self::Future {
        let st = self.0.clone();
        Box::pin(async move { Ok(forwarded(&st, req).await) })
    }
}

/// Room for the envelope (claims, carried headers) around a client body of
/// the public limit.
const ENVELOPE_ROOM: usize = 64 << 10;

async fn forwarded(st: &AppState, req: axum::extract::Request) -> Response {
    if req.uri().path() != FORWARD_PATH {
        return detail(StatusCode::NOT_FOUND, "Not Found");
    }
    let (parts, body) = req.into_parts();
    let Some(sig) = parts
        .headers
        .get(SIGNATURE_HEADER)
        .and_then(|v| v.to_str().ok())
    else {
        return detail(StatusCode::UNAUTHORIZED, "forward refused: not signed");
    };
    let limit = st.gateway_cfg.max_body_bytes + ENVELOPE_ROOM;
    match crate::http::read_body(body, limit).await {
        Ok(sealed) => serve_forwarded(st, &sealed, sig).await,
        Err(refused) => refused,
    }
}

/// Serves a sealed forward (whatever carried it: a Unix socket, the internal
/// TCP listener or pub/sub): verify, then the one transport handler with
/// `forwarded = true`, for the method the envelope names.
pub async fn serve_forwarded(st: &AppState, sealed: &Bytes, sig: &str) -> Response {
    let (env, body) = match st.affinity.open(sealed, sig) {
        Ok(opened) => opened,
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
    let mut resp = match env.method.as_str() {
        "POST" => mcp::handle_post(st, scope, principal, &headers, body, true).await,
        "GET" => Box::pin(mcp::handle_get(st, scope, principal, &headers, true)).await,
        "DELETE" => Box::pin(mcp::handle_delete(st, scope, principal, &headers, true)).await,
        _ => StatusCode::METHOD_NOT_ALLOWED.into_response(),
    };
    name_worker(st, &mut resp);
    resp
}
