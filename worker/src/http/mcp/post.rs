//! POST: one JSON-RPC message or a batch. `initialize` opens a session;
//! every other message needs its session (`Mcp-Session-Id`) unless it
//! declares the stateless protocol version. Notifications and responses are
//! accepted (202); requests are run ([`super::run`]).

use super::run::{self, Call};
use super::session::{initialize, resolve};
use super::{header_str, Admitted, TransportError};
use crate::gateway::dispatch::Context;
use crate::state::AppState;
use crate::wire::json_body;
use axum::response::{IntoResponse, Response};
use fleetgate_mcp::jsonrpc::{self, Id, Message, Parsed};
use fleetgate_mcp::protocol::{self, meta, methods, MCP_PROTOCOL_VERSION};
use http::{header, HeaderMap, StatusCode};
use serde_json::Value;

pub(super) async fn handle(st: &AppState, req: Admitted) -> Result<Response, TransportError> {
    let h = &req.headers;
    if !header_str(h, header::CONTENT_TYPE)
        .is_some_and(|c| c.starts_with(protocol::CONTENT_TYPE_JSON))
    {
        return Err(TransportError::UnsupportedMediaType);
    }
    let msg = match jsonrpc::parse(&req.body)? {
        Parsed::Single(m) => m,
        Parsed::Batch(items) => return Box::pin(batch(st, &req, items)).await,
    };
    if let Message::Request(r) = &msg {
        if r.method == methods::INITIALIZE {
            let (id, params) = (r.id.clone(), r.params.clone());
            return Ok(Box::pin(initialize(st, req.scope, req.principal, id, params)).await);
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
            return Err(TransportError::UnsupportedVersion {
                id: msg.id().cloned().unwrap_or(Id::Null),
                version: v.to_owned(),
            });
        }
    }
    let standalone =
        version.is_some_and(protocol::is_stateless_version) || !st.gateway_cfg.stateful_sessions;
    let session = match standalone {
        true => None,
        false => Some(resolve(st, &req, msg.id())?),
    };
    Ok(match msg {
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
        // The request's own principal: a session never lends the rights of
        // the token that opened it to a narrower token of the same user.
        Message::Request(r) => run::single(st, req.scope, req.principal, session, h, r).await,
    })
}

/// A batch: every request through the same runner as a single one, one
/// after the other; the answers as one JSON array (mid-call messages go to
/// the session's GET stream).
async fn batch(
    st: &AppState,
    req: &Admitted,
    items: Vec<Result<Message, jsonrpc::ParseError>>,
) -> Result<Response, TransportError> {
    let session = match st.gateway_cfg.stateful_sessions {
        true => Some(resolve(st, req, None)?),
        false => None,
    };
    let mut answers: Vec<Vec<u8>> = Vec::new();
    for item in items {
        match item {
            Err(e) => answers.push(jsonrpc::encode_error(&Id::Null, &e.to_error_object())),
            Ok(Message::Request(r)) => {
                let (who, scope) = (req.principal.clone(), req.scope.clone());
                let passthrough = super::passthrough(st, &req.headers);
                let ctx = match &session {
                    Some(s) => Context::session(who, scope, s.clone(), s.stream(), passthrough),
                    None => Context::pooled(who, scope, None, passthrough),
                };
                answers.push(Call::new(st, ctx, r).await);
            }
            Ok(Message::Response(r)) => {
                if let Some(s) = &session {
                    s.answer(&r.id, Ok(jsonrpc::value_of(&r.result)));
                }
            }
            Ok(Message::Error(e)) => {
                if let Some(s) = &session {
                    s.answer(&e.id, Err(e.error));
                }
            }
            Ok(Message::Notification(_)) => {}
        }
    }
    if answers.is_empty() {
        return Ok(StatusCode::ACCEPTED.into_response());
    }
    let mut out = Vec::with_capacity(answers.iter().map(|a| a.len() + 1).sum::<usize>() + 1);
    out.push(b'[');
    for (i, a) in answers.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        out.extend_from_slice(a);
    }
    out.push(b']');
    Ok(json_body(StatusCode::OK, out))
}

/// The protocol version a request declares: header, or the stateless `_meta` key.
fn declared_version<'a>(h: &'a HeaderMap, params: Option<&'a Value>) -> Option<&'a str> {
    header_str(h, MCP_PROTOCOL_VERSION)
        .or_else(|| params?.get("_meta")?.get(meta::PROTOCOL_VERSION)?.as_str())
}
