//! Sessions at the transport: `initialize` opens one (owned by this worker,
//! bound to the path's scope and to the principal), every later request
//! finds its own (or adopts a genuine one whose owner is gone), DELETE ends
//! it.

use super::{header_str, Admitted, TransportError};
use crate::cluster::redis_owners::short;
use crate::cluster::route::session_id;
use crate::gateway::dispatch::{dispatch, Context};
use crate::gateway::scope::{Principal, Scope};
use crate::gateway::session::Session;
use crate::metrics::Metrics;
use crate::state::AppState;
use crate::wire::{json_body, rpc_error};
use axum::response::{IntoResponse, Response};
use fleetgate_mcp::jsonrpc::{self, Id};
use fleetgate_mcp::protocol::{self, methods, MCP_PROTOCOL_VERSION, MCP_SESSION_ID};
use http::{HeaderValue, StatusCode};
use serde_json::Value;
use std::sync::Arc;

/// The request's session: held here, or adopted when `req.adopt` allows and
/// the id is genuine (its owner restarted or is gone; upstream sessions are
/// reopened on first use).
pub(super) fn resolve(
    st: &AppState,
    req: &Admitted,
    id: Option<&Id>,
) -> Result<Arc<Session>, TransportError> {
    let id = || id.cloned().unwrap_or(Id::Null);
    let Some(sid) = session_id(&req.headers) else {
        return Err(TransportError::SessionIdRequired { id: id() });
    };
    let (scope, principal) = (&req.scope, &req.principal);
    if let Some(s) = st.sessions.get(sid, scope) {
        if !may_use(&s, principal) {
            return Err(TransportError::SessionForbidden { id: id() });
        }
        Metrics::inc(&st.metrics.session_local_hits);
        st.cluster.touch(&s);
        return Ok(s);
    }
    if req.adopt && st.cluster.adoptable(sid, scope, principal) {
        let version = header_str(&req.headers, MCP_PROTOCOL_VERSION)
            .filter(|v| protocol::is_supported_version(v))
            .unwrap_or(protocol::LATEST_STATEFUL_PROTOCOL_VERSION);
        tracing::info!(session = short(sid), "adopting session");
        st.cluster.adopted(sid, principal);
        let s = st
            .sessions
            .create(sid.to_owned(), scope.clone(), principal.clone(), version);
        return Ok(s);
    }
    Err(TransportError::SessionNotFound { id: id() })
}

/// A session belongs to the principal that initialized it (admins excepted).
pub(super) fn may_use(s: &Session, principal: &Principal) -> bool {
    s.principal.subject() == principal.subject() || principal.is_admin()
}

pub(super) async fn initialize(
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
    let ctx = Context::pooled(principal.clone(), scope.clone(), None, Vec::new());
    match dispatch(&st.core, &ctx, methods::INITIALIZE, params).await {
        Ok(result) if !st.gateway_cfg.stateful_sessions => {
            json_body(StatusCode::OK, jsonrpc::encode_response(&id, &result))
        }
        Ok(result) => {
            let sid = st.cluster.mint(&scope, &principal);
            st.cluster.claim(&sid, &principal).await;
            let session = st.sessions.create(sid, scope, principal, version);
            Metrics::inc(&st.metrics.sessions_created);
            tracing::debug!(session = short(&session.id), "session initialized");
            let mut resp = json_body(StatusCode::OK, jsonrpc::encode_response(&id, &result));
            if let Ok(v) = HeaderValue::from_str(&session.id) {
                resp.headers_mut().insert(MCP_SESSION_ID, v);
            }
            resp
        }
        Err(e) => rpc_error(StatusCode::OK, &id, &e.to_error_object()),
    }
}

/// DELETE: ends the session here and in the cluster.
pub(super) async fn delete(st: &AppState, req: Admitted) -> Result<Response, TransportError> {
    let Some(sid) = session_id(&req.headers) else {
        return Err(TransportError::NothingToEnd);
    };
    let held = st.sessions.get(sid, &req.scope);
    if let Some(s) = &held {
        if !may_use(s, &req.principal) {
            return Err(TransportError::SessionForbidden { id: Id::Null });
        }
    }
    let ours =
        held.is_some() || (req.adopt && st.cluster.adoptable(sid, &req.scope, &req.principal));
    if !ours {
        return Err(TransportError::UnknownToEnd);
    }
    st.cluster.release(sid).await;
    Ok(StatusCode::OK.into_response())
}
