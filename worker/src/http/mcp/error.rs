//! Every way the MCP transport refuses a request, and the one mapping from
//! each to its HTTP status and body (a JSON-RPC error carrying the request's
//! id, or ContextForge's `{"detail": …}` where the answer concerns the path
//! or the HTTP exchange rather than a JSON-RPC message).

use crate::cluster::ForwardError;
use crate::wire::{detail, method_not_allowed, rpc_error, BodyError};
use axum::response::Response;
use fleetgate_mcp::jsonrpc::{ErrorObject, Id, ParseError};
use fleetgate_mcp::protocol;
use http::StatusCode;

#[derive(Debug, thiserror::Error)]
pub enum TransportError {
    /// The caller's token does not reach this scope.
    #[error("{}", .0.message)]
    ScopeDenied(ErrorObject),
    #[error("Server not found")]
    ServerNotFound,
    #[error("Origin {0} is not allowed (MCP_ALLOWED_ORIGINS)")]
    OriginNotAllowed(String),
    #[error("Host {0} is not allowed (MCP_ALLOWED_HOSTS)")]
    HostNotAllowed(String),
    /// The method is not served on this path; `allow`: the ones that are.
    #[error("Method Not Allowed")]
    MethodNotAllowed { allow: &'static str },
    #[error(transparent)]
    Body(#[from] BodyError),
    #[error("Unsupported Media Type: Content-Type must be application/json")]
    UnsupportedMediaType,
    #[error("{}", .0.to_error_object().message)]
    Parse(#[from] ParseError),
    #[error("Bad Request: unsupported MCP-Protocol-Version {version}; supported: {}", protocol::SUPPORTED_PROTOCOL_VERSIONS.join(", "))]
    UnsupportedVersion { id: Id, version: String },
    /// A 2026-07-28 request the spec says to refuse with this status and
    /// JSON-RPC error ([`super::modern`]).
    #[error("{}", .error.message)]
    Refused {
        status: StatusCode,
        id: Id,
        error: ErrorObject,
    },
    #[error("Bad Request: Mcp-Session-Id header is required")]
    SessionIdRequired { id: Id },
    /// A legacy message without the session it is for.
    #[error("Bad Request: the session_id query parameter is required")]
    SessionParamRequired,
    #[error("Session access denied")]
    SessionForbidden { id: Id },
    #[error("Session not found")]
    SessionNotFound { id: Id },
    /// DELETE without a session id (answered in ContextForge's `detail`
    /// shape: DELETE carries no JSON-RPC message).
    #[error("Bad Request: Mcp-Session-Id header is required")]
    NothingToEnd,
    /// DELETE of a session that is not known here.
    #[error("Session not found")]
    UnknownToEnd,
    #[error("Not Acceptable: GET needs Accept: text/event-stream")]
    NotAcceptable,
    #[error("Conflict: this session already has a GET stream open")]
    StreamConflict,
    /// The session's owner cannot serve it now (Redis down, or refusing
    /// what the forward needs).
    #[error("{why}")]
    Owner { id: Id, why: ForwardError },
}

impl TransportError {
    /// The session's owner could not serve the request `body` (why): the
    /// answer carries the request's id.
    pub fn owner(body: &[u8], why: ForwardError) -> TransportError {
        let id = fleetgate_mcp::jsonrpc::request_id(body).unwrap_or(Id::Null);
        TransportError::Owner { id, why }
    }

    /// The answer: status and body, per variant (no catch-all: a new
    /// variant needs its own decision).
    pub fn into_response(self) -> Response {
        let msg = self.to_string();
        match self {
            TransportError::ScopeDenied(e) => rpc_error(StatusCode::FORBIDDEN, &Id::Null, &e),
            TransportError::ServerNotFound => detail(StatusCode::NOT_FOUND, &msg),
            TransportError::OriginNotAllowed(_) | TransportError::HostNotAllowed(_) => {
                detail(StatusCode::FORBIDDEN, &msg)
            }
            TransportError::MethodNotAllowed { allow } => method_not_allowed(allow),
            TransportError::Body(e) => e.into_response(),
            TransportError::UnsupportedMediaType => rpc_error(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                &Id::Null,
                &ErrorObject::invalid_request(msg),
            ),
            TransportError::Parse(e) => {
                rpc_error(StatusCode::BAD_REQUEST, &Id::Null, &e.to_error_object())
            }
            // Every era: 400 (2025-06-18 on) with 2026-07-28's
            // UnsupportedProtocolVersionError, which names what is spoken.
            TransportError::UnsupportedVersion { id, version } => rpc_error(
                StatusCode::BAD_REQUEST,
                &id,
                &super::modern::unsupported_version(&version),
            ),
            TransportError::Refused { status, id, error } => rpc_error(status, &id, &error),
            TransportError::SessionIdRequired { id } => rpc_error(
                StatusCode::BAD_REQUEST,
                &id,
                &ErrorObject::invalid_request(msg),
            ),
            TransportError::SessionParamRequired => rpc_error(
                StatusCode::BAD_REQUEST,
                &Id::Null,
                &ErrorObject::invalid_request(msg),
            ),
            TransportError::SessionForbidden { id } => {
                rpc_error(StatusCode::FORBIDDEN, &id, &ErrorObject::forbidden(msg))
            }
            TransportError::SessionNotFound { id } => rpc_error(
                StatusCode::NOT_FOUND,
                &id,
                &ErrorObject::session_not_found(msg),
            ),
            TransportError::NothingToEnd => detail(StatusCode::BAD_REQUEST, &msg),
            TransportError::UnknownToEnd => detail(StatusCode::NOT_FOUND, &msg),
            TransportError::NotAcceptable => detail(StatusCode::NOT_ACCEPTABLE, &msg),
            TransportError::StreamConflict => detail(StatusCode::CONFLICT, &msg),
            TransportError::Owner { id, .. } => rpc_error(
                StatusCode::SERVICE_UNAVAILABLE,
                &id,
                &ErrorObject::upstream_unavailable(msg),
            ),
        }
    }
}
