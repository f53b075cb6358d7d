//! MCP Streamable HTTP at `/mcp` (scope: everything the caller may see) and
//! `/servers/{id}/mcp` (scope: that virtual server; an unknown id is 404
//! before anything else runs).
//!
//! A request's way: [`serve`] settles its scope, checks its origin, asks the
//! cluster where it is served ([`crate::cluster::Cluster::route`]) and, when
//! that is here, hands it to [`here`] — where a request another worker
//! forwarded to this one (the session's owner) also enters, through
//! [`Here`]. Nothing is forwarded twice.
//!
//! # Layout
//! - [`post`]: POST: one JSON-RPC message or a batch.
//! - [`run`]: the request runner: JSON answer, or an SSE stream once the
//!   upstream speaks before its result.
//! - [`stream`]: GET: the session's standalone stream, and resuming streams
//!   (`Last-Event-ID`).
//! - [`session`]: `initialize`, finding (or adopting) the request's session,
//!   DELETE.
//! - [`modern`]: which era a POST speaks; the per-request checks of
//!   2026-07-28 (sessionless; results shaped by [`run`]).
//! - [`listen`]: `subscriptions/listen` (2026-07-28), a long-lived stream of
//!   list changes.
//! - [`error`]: [`TransportError`], every refusal, mapped to the wire in one
//!   place.
//! - [`legacy`]: the legacy HTTP+SSE transport (2024-11-05): `GET …/sse`,
//!   `POST …/message?session_id=…`, on the same sessions, gate and cluster.

mod error;
pub mod legacy;
mod listen;
mod modern;
mod post;
mod run;
mod session;
mod stream;

pub use error::TransportError;

use crate::cluster::{Forwarded, Handler, Kind, Route};
use crate::gateway::scope::{Principal, Scope};
use crate::state::AppState;
use crate::wire::read_body;
use axum::body::Bytes;
use axum::extract::Request;
use axum::response::Response;
use http::{header, HeaderMap, HeaderName, HeaderValue, Method};
use std::future::Future;

/// A request admitted to be served in this worker.
pub(crate) struct Admitted {
    pub method: Method,
    pub scope: Scope,
    pub principal: Principal,
    pub headers: HeaderMap,
    pub body: Bytes,
    /// A genuine session id this worker does not hold may be adopted (its
    /// owner is gone, or Redis names this worker its owner).
    pub adopt: bool,
}

/// `/mcp` and `/servers/{id}/mcp`: scope → origin → route → here.
pub async fn serve(
    st: &AppState,
    server: Option<String>,
    who: Principal,
    req: Request,
) -> Response {
    admit(st, server, who, req)
        .await
        .unwrap_or_else(TransportError::into_response)
}

async fn admit(
    st: &AppState,
    server: Option<String>,
    who: Principal,
    req: Request,
) -> Result<Response, TransportError> {
    let scope = path_scope(st, &who, server).await?;
    let (parts, body) = req.into_parts();
    let stateful = st.gateway_cfg.stateful_sessions;
    match parts.method {
        Method::POST => {}
        Method::GET | Method::DELETE if stateful => {}
        _ => {
            return Err(TransportError::MethodNotAllowed {
                allow: allowed(stateful),
            })
        }
    }
    check_origin(st, &parts.headers)?;
    let body = match parts.method {
        Method::POST => read_body(body, st.gateway_cfg.max_body_bytes).await?,
        _ => Bytes::new(),
    };
    let inbound = crate::cluster::forward::Inbound {
        method: &parts.method,
        kind: &Kind::Mcp,
        scope: &scope,
        principal: &who,
        headers: &parts.headers,
        body: &body,
    };
    // Sessionless, every request stands alone: served where it landed.
    let routed = match stateful {
        true => st.cluster.route(&inbound).await,
        false => Ok(Route::Here { adopt: false }),
    };
    let adopt = match routed {
        Ok(Route::Here { adopt }) => adopt,
        Ok(Route::Answered(resp)) => return Ok(resp),
        Err(why) => return Err(TransportError::owner(&body, why)),
    };
    let req = Admitted {
        method: parts.method,
        scope,
        principal: who,
        headers: parts.headers,
        body,
        adopt,
    };
    Ok(here(st, req).await)
}

/// Serves a request in this worker, whoever routed it here.
pub(crate) async fn here(st: &AppState, req: Admitted) -> Response {
    let served = match req.method {
        Method::POST => post::handle(st, req).await,
        // Boxed: the common POST's future stays small.
        Method::GET => Box::pin(stream::open(st, req)).await,
        Method::DELETE => Box::pin(session::delete(st, req)).await,
        _ => Err(TransportError::MethodNotAllowed {
            allow: allowed(st.gateway_cfg.stateful_sessions),
        }),
    };
    served.unwrap_or_else(TransportError::into_response)
}

/// The methods the MCP paths take: sessionless, there is no session to
/// stream on or to end.
fn allowed(stateful: bool) -> &'static str {
    match stateful {
        true => "GET, POST, DELETE",
        false => "POST",
    }
}

/// The transport's side of a forward: a request another worker sent to
/// this one, its session's owner, is served here, as the sealed kind says (an
/// MCP request may adopt; a legacy message needs its session's stream here).
#[derive(Clone)]
pub struct Here(pub AppState);

impl Handler for Here {
    fn handle(&self, f: Forwarded) -> impl Future<Output = Response> + Send {
        let st = self.0.clone();
        async move {
            // This host's origin policy holds for what it serves, whichever
            // worker the request entered through.
            if let Err(e) = check_origin(&st, &f.headers) {
                return e.into_response();
            }
            match f.kind {
                Kind::Mcp => {
                    let req = Admitted {
                        method: f.method,
                        scope: f.scope,
                        principal: f.principal,
                        headers: f.headers,
                        body: f.body,
                        adopt: true,
                    };
                    here(&st, req).await
                }
                Kind::LegacyMessage { session } => {
                    let m = legacy::Posted {
                        scope: f.scope,
                        principal: f.principal,
                        session,
                        headers: f.headers,
                        body: f.body,
                    };
                    Box::pin(legacy::here(&st, m))
                        .await
                        .unwrap_or_else(TransportError::into_response)
                }
            }
        }
    }
}

/// The scope of the path: `None` (everything the caller may see) or the
/// virtual server `/servers/{id}/…` names.
async fn path_scope(
    st: &AppState,
    who: &Principal,
    server: Option<String>,
) -> Result<Scope, TransportError> {
    match server {
        None => scoped(who, Scope::All),
        Some(id) => server_scope(st, who, id).await,
    }
}

/// The scope the caller gets on this path (a server-scoped token is confined
/// to its server), or 403.
fn scoped(who: &Principal, asked: Scope) -> Result<Scope, TransportError> {
    who.effective_scope(asked)
        .map_err(|e| TransportError::ScopeDenied(e.to_error_object()))
}

/// The scope of `/servers/{id}/…`, or 404.
/// A server this worker does not know may have been created a moment ago
/// through another: the store is asked before 404 is answered.
async fn server_scope(st: &AppState, who: &Principal, id: String) -> Result<Scope, TransportError> {
    let scope = scoped(who, Scope::Server(id.into()))?;
    let registry = &st.core.registry;
    let known = |r: &crate::gateway::registry::Registry| r.snapshot().scope(&scope).is_some();
    if known(registry) || (registry.refresh_on_miss().await && known(registry)) {
        return Ok(scope);
    }
    Err(TransportError::ServerNotFound)
}

/// A header's value as text. Named by a [`HeaderName`] constant: a `&str`
/// name would be parsed on every lookup.
fn header_str(h: &HeaderMap, name: HeaderName) -> Option<&str> {
    h.get(name).and_then(|v| v.to_str().ok())
}

fn accepts(h: &HeaderMap, mime: &str) -> bool {
    header_str(h, header::ACCEPT).is_some_and(|a| a.contains(mime) || a.contains("*/*"))
}

/// DNS-rebinding and cross-site protection, the one origin policy of every
/// browser-reachable JSON-RPC path (the MCP paths, legacy messages, `/rpc`):
/// `Origin`, when present, and `Host`, when `MCP_ALLOWED_HOSTS` is set, must
/// be allowed.
pub(crate) fn check_origin(st: &AppState, h: &HeaderMap) -> Result<(), TransportError> {
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
            return Err(TransportError::OriginNotAllowed(origin.to_owned()));
        }
    }
    if !cfg.allowed_hosts.is_empty() {
        let host = header_str(h, header::HOST).unwrap_or("");
        let bare = host.rsplit_once(':').map_or(host, |(h, _)| h);
        if !cfg.allowed_hosts.iter().any(|a| a == host || a == bare) {
            return Err(TransportError::HostNotAllowed(host.to_owned()));
        }
    }
    Ok(())
}

/// The client headers passed on to upstreams.
fn passthrough(st: &AppState, h: &HeaderMap) -> Vec<(HeaderName, HeaderValue)> {
    st.passthrough
        .iter()
        .filter_map(|name| Some((name.clone(), h.get(name)?.clone())))
        .collect()
}
