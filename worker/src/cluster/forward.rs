//! The sending side of a forward: a request for a session another worker
//! owns goes to that worker sealed ([`super::seal`]), over its Unix socket
//! (embedded mode), its internal TCP listener or Redis pub/sub (with
//! `REDIS_URL`); the owner's answer comes back through [`relay`] (SSE streams
//! pass straight through).

use super::quiet_unix::QuietUnix;
use super::redis_owners::short;
use super::relay::{relay, ClientAnswer, OwnerAnswer};
use super::route::session_id;
use super::seal::{Kind, Outgoing, FORWARD_PATH, SIGNATURE_HEADER};
use super::{Cluster, MAX_ANSWER};
use crate::gateway::mrtr;
use crate::gateway::scope::{Principal, Scope};
use crate::metrics::Metrics;
use crate::state::WORKER_HEADER;
use axum::body::{Body, Bytes};
use axum::response::Response;
use fleetgate_http1 as net;
use fleetgate_mcp::protocol::{MCP_METHOD, MCP_NAME, MCP_PROTOCOL_VERSION};
use fleetgate_mcp::{jsonrpc, protocol};
use http::{header, HeaderMap, HeaderName, HeaderValue, Method, StatusCode};
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::net::{TcpStream, UnixStream};

/// How long a forward waits for the owner's socket (a crashed owner's
/// replacement binds it within milliseconds).
const OWNER_WAIT: Duration = Duration::from_secs(2);
/// How long a connection to another worker's internal listener may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);

/// Client headers the owner needs.
static CARRIED: [HeaderName; 10] = [
    header::CONTENT_TYPE,
    header::ACCEPT,
    protocol::MCP_SESSION_ID,
    protocol::X_MCP_SESSION_ID,
    protocol::MCP_PROTOCOL_VERSION,
    MCP_METHOD,
    MCP_NAME,
    protocol::LAST_EVENT_ID,
    header::ORIGIN,
    header::HOST,
];

/// A client's request as the transport received it, to be served here or by
/// its session's owner.
pub struct Inbound<'a> {
    pub method: &'a Method,
    pub kind: &'a Kind,
    pub scope: &'a Scope,
    pub principal: &'a Principal,
    pub headers: &'a HeaderMap,
    pub body: &'a Bytes,
}

impl Inbound<'_> {
    /// The session the request names, if any: a legacy message names it in
    /// its query string (carried in its [`Kind`]), an MCP request in
    /// `Mcp-Session-Id` or, a 2026-07-28 retry of a parked call, in its
    /// `requestState` ([`crate::gateway::mrtr`]).
    pub fn session(&self) -> Option<&str> {
        match self.kind {
            Kind::Mcp => session_id(self.headers).or_else(|| self.parked_call()),
            Kind::LegacyMessage { session } => Some(session),
        }
    }

    /// The session holding the parked call a 2026-07-28 POST retries: only
    /// a modern POST of a method that may be parked is looked into.
    fn parked_call(&self) -> Option<&str> {
        let h = |name| {
            self.headers
                .get(name)
                .and_then(|v: &http::HeaderValue| v.to_str().ok())
        };
        let modern =
            h(MCP_PROTOCOL_VERSION).is_some_and(|v| protocol::is_stateless_version(v.trim()));
        let may_ask = h(MCP_METHOD).is_some_and(|m| mrtr::MAY_ASK.contains(&m.trim()));
        if *self.method != Method::POST || !modern || !may_ask {
            return None;
        }
        mrtr::routed_session(self.body)
    }
}

/// Where a forwarded request goes.
pub enum Target<'a> {
    /// A sibling on this host, by slot, over its Unix socket (embedded mode).
    Unix(u32),
    /// A worker's internal HTTP listener (`host:port` from its heartbeat).
    Http(&'a str),
    /// A worker's Redis pub/sub channel, by worker id.
    PubSub(&'a str),
}

/// Why a request could not be served by its session's owner.
#[derive(Debug, thiserror::Error)]
pub enum ForwardError {
    /// Nothing answers there (connection refused, no subscriber): the owner
    /// is gone, and its session may be taken over.
    #[error("session owner unreachable")]
    Unreachable,
    /// The owner cannot be known, or the request cannot travel: Redis is down.
    #[error("session owner unknown: Redis unavailable")]
    OwnerUnknown,
    /// Redis is up but refuses what the transport needs (pub/sub): why.
    #[error("cannot forward to the session's owner: {0}")]
    Refused(Arc<str>),
    /// The owner took the request (or may have) and stopped before
    /// answering: whether it ran is unknown, so it is not sent again. What
    /// was asked, for the client (`tools/call (session 1a2b…)`).
    #[error("the session's owner stopped while serving {0}: whether it ran is unknown, and it was not run again; the session goes on with its next request")]
    Lost(Arc<str>),
}

impl ForwardError {
    /// [`ForwardError::Lost`], naming what `req` asked.
    fn lost(req: &Inbound<'_>) -> ForwardError {
        let what = match jsonrpc::request_method(req.body) {
            Some(m) => m,
            None => req.method.as_str().to_owned(),
        };
        let session = req.session().map(short).unwrap_or("-");
        ForwardError::Lost(Arc::from(format!("{what} (session {session})")))
    }
}

impl Cluster {
    pub(super) fn pubsub(&self) -> Option<&super::pubsub::PubSub> {
        self.redis.as_ref().map(|r| &*r.pubsub)
    }

    /// Sends a request to its session's owner and relays the answer.
    pub(super) async fn forward(
        &self,
        target: Target<'_>,
        req: &Inbound<'_>,
    ) -> Result<Response, ForwardError> {
        // One pass over the request's headers (not a hashed lookup per carried
        // name); the first value of a name, as `HeaderMap::get` would give.
        let mut headers: Vec<(&str, &str)> = Vec::with_capacity(CARRIED.len());
        for (name, v) in req.headers {
            let carried = CARRIED
                .iter()
                .chain(self.passthrough.iter())
                .any(|c| c == name);
            if carried && !headers.iter().any(|(n, _)| *n == name.as_str()) {
                if let Ok(v) = v.to_str() {
                    headers.push((name.as_str(), v));
                }
            }
        }
        let out = Outgoing {
            method: req.method.as_str(),
            kind: req.kind,
            scope: req.scope,
            principal: req.principal,
            headers,
        };
        let (sealed, sig) = self.seal.seal(&out, req.body);
        let sending = async {
            Ok::<_, ForwardError>(match target {
                Target::Unix(slot) => {
                    // The socket's path only for a new connection (most forwards
                    // reuse an idle one).
                    let key = format!("unix:{slot}");
                    let open = || async {
                        Some(net::Conn::new(
                            connect(&self.seal.socket_path(slot)?).await?,
                        ))
                    };
                    self.exchange(key, open, sealed, sig).await?
                }
                Target::Http(addr) => {
                    let key = format!("tcp:{addr}");
                    let open = || async { Some(net::Conn::new(connect_tcp(addr).await?)) };
                    self.exchange(key, open, sealed, sig).await?
                }
                Target::PubSub(owner) => {
                    let Some(link) = &self.redis else {
                        return Err(ForwardError::OwnerUnknown);
                    };
                    let timeout = self.seal.forward_timeout;
                    let asked = link
                        .pubsub
                        .request(&link.ownership, owner, &sealed, &sig, timeout)
                        .await;
                    match asked? {
                        Some((a, body)) => Sent::Answer {
                            status: a.status,
                            content_type: a.content_type,
                            body,
                            session: a.session.and_then(|v| HeaderValue::from_str(&v).ok()),
                            worker: a.worker.and_then(|v| HeaderValue::from_str(&v).ok()),
                        },
                        None => Sent::TimedOut,
                    }
                }
            })
        };
        let sent = match sending.await {
            Err(ForwardError::Lost(_)) => return Err(ForwardError::lost(req)),
            other => other?,
        };
        Ok(match sent {
            Sent::Stream(resp) => resp,
            Sent::TimedOut => {
                Metrics::inc(&self.metrics.forward_timeouts);
                let a = relay(
                    OwnerAnswer::TimedOut {
                        after_ms: self.seal.forward_timeout.as_millis() as u64,
                    },
                    req.body,
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
                let a = match (req.kind, status) {
                    // A legacy message is answered on its session's stream:
                    // the owner's 202 is the whole success, passed as it is.
                    (Kind::LegacyMessage { .. }, 202) => ClientAnswer {
                        status,
                        content_type,
                        body: answer,
                    },
                    _ => relay(
                        OwnerAnswer::Answered {
                            status,
                            content_type,
                            body: answer,
                        },
                        req.body,
                    ),
                };
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

    /// One HTTP/1.1 exchange with the owner's internal listener, on a pooled
    /// connection (keyed `unix:{slot}` or `tcp:{addr}`) when one is idle, else
    /// on a new one from `open`: `POST` of the sealed bytes, whatever the
    /// client's method (the envelope names it).
    async fn exchange<F, Fut>(
        &self,
        key: String,
        open: F,
        sealed: Bytes,
        sig: String,
    ) -> Result<Sent, ForwardError>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Option<net::Conn>>,
    {
        let sig = HeaderValue::try_from(sig).map_err(|_| ForwardError::Unreachable)?;
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
        let open = || Box::pin(async { open().await.ok_or(ForwardError::Unreachable) });
        let timeout = self.seal.forward_timeout;
        // At most once: a forward the owner may have taken is never sent
        // again, here or to whoever takes the session over.
        let sending = net::send_once(&self.owners, key, open, &request);
        let mut resp = match tokio::time::timeout(timeout, sending).await {
            Ok(Ok(sent)) => sent,
            Ok(Err(net::SendError::Connect(e))) => return Err(e),
            Ok(Err(net::SendError::Http(e))) => {
                tracing::warn!(error = %e, "forward to the session owner failed before it was delivered");
                return Err(ForwardError::Unreachable);
            }
            Ok(Err(net::SendError::Unanswered(e))) => {
                tracing::warn!(error = %e, "the session owner stopped after taking a forwarded request");
                return Err(ForwardError::Lost(Arc::from("")));
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
        if status.is_success() && content_type.starts_with(protocol::CONTENT_TYPE_SSE) {
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
    if content_type.starts_with(protocol::CONTENT_TYPE_SSE) {
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    }
    if let Some(s) = session {
        h.insert(protocol::MCP_SESSION_ID, s);
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
