//! POST: one JSON-RPC message or a batch. A 2026-07-28 message is checked
//! ([`super::modern`]) and served without a session (`subscriptions/listen`
//! by [`super::listen`]; a retry of a parked call by its holder,
//! [`crate::gateway::mrtr`]); otherwise `initialize` opens a session and every
//! other message needs its session (`Mcp-Session-Id`) unless sessions are
//! off. Notifications and responses are accepted (202); requests are run
//! ([`super::run`]).

use super::modern::{self, Era};
use super::run::{self, Call};
use super::session::{initialize, resolve};
use super::{header_str, listen, Admitted, TransportError};
use crate::gateway::dispatch::Context;
use crate::gateway::mrtr;
use crate::state::AppState;
use crate::wire::json_body;
use axum::response::{IntoResponse, Response};
use fleetgate_mcp::jsonrpc::{self, ErrorObject, Id, Message, Parsed};
use fleetgate_mcp::protocol::{self, methods};
use http::{header, StatusCode};

pub(super) async fn handle(st: &AppState, req: Admitted) -> Result<Response, TransportError> {
    let h = &req.headers;
    if !header_str(h, header::CONTENT_TYPE)
        .is_some_and(|c| c.starts_with(protocol::CONTENT_TYPE_JSON))
    {
        return Err(TransportError::UnsupportedMediaType);
    }
    let msg = match jsonrpc::parse(&req.body)? {
        Parsed::Single(m) => m,
        Parsed::Batch(_) if modern::is_modern_batch(h) => {
            return Err(TransportError::Refused {
                status: StatusCode::BAD_REQUEST,
                id: Id::Null,
                error: ErrorObject::invalid_request(
                    "a 2026-07-28 POST carries one JSON-RPC message, not a batch",
                ),
            })
        }
        Parsed::Batch(items) => return Box::pin(batch(st, &req, items)).await,
    };
    if let Era::Modern(m) = modern::classify(h, &msg)? {
        if let Message::Request(r) = &msg {
            modern::check_param_headers(st, &req.scope, h, r)?;
        }
        // Sessionless: an `Mcp-Session-Id` it may carry is ignored.
        return Ok(match msg {
            Message::Request(r) if r.method == methods::SUBSCRIPTIONS_LISTEN => {
                listen::open(st, req.scope, &req.principal, r)
            }
            // A retry bringing the input a parked call waits for.
            Message::Request(r) if mrtr::token_session(r.params.as_ref()).is_some() => {
                Box::pin(run::resume(st, req.scope, req.principal, r)).await
            }
            Message::Request(r) => {
                run::single(st, req.scope, req.principal, None, h, r, Some(m)).await
            }
            _ => StatusCode::ACCEPTED.into_response(),
        });
    }
    if let Message::Request(r) = &msg {
        if r.method == methods::INITIALIZE {
            let (id, params) = (r.id.clone(), r.params.clone());
            return Ok(Box::pin(initialize(st, req.scope, req.principal, id, params)).await);
        }
    }
    let session = match st.gateway_cfg.stateful_sessions {
        true => Some(resolve(st, &req, msg.id())?),
        false => None,
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
        Message::Request(r) => run::single(st, req.scope, req.principal, session, h, r, None).await,
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
