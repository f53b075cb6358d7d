//! The one authentication gate, in front of every public route.
//!
//! bearer → verify (signature, iss, aud, exp, jti) → revocation → the token's
//! scopes against the request (server, IP, time, REST permission) → a typed
//! [`Principal`] in the request's extensions. Handlers take the principal as an
//! extractor, so a handler that needs one cannot run without this gate. What a
//! principal may do per JSON-RPC method is checked once more, in the dispatcher.
//!
//! Errors: REST paths answer `{"detail": …}`; MCP paths and `/rpc` answer a
//! JSON-RPC error -32003; both with 401 (and `WWW-Authenticate: Bearer`) or 403.

use crate::auth::{
    anonymous_allowed, authorize_rest, bearer, client_ip, unix_now, AuthError, RequestFacts,
};
use crate::endpoint::Endpoint;
use crate::gateway::scope::Principal;
use crate::state::AppState;
use axum::extract::{ConnectInfo, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{header, HeaderName, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use fleetgate_mcp::jsonrpc::{self, ErrorObject, Id};

const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
use std::net::{IpAddr, Ipv4Addr, SocketAddr};

/// The gate: `Ok(None)` for an open path, `Ok(Some(principal))` for a caller
/// who may make this request, else the response refusing it.
#[allow(clippy::result_large_err)] // refused: the Response to send, built once per refusal
pub fn authenticate(
    st: &AppState,
    endpoint: &Endpoint,
    req: &Request,
) -> Result<Option<Principal>, Response> {
    if *endpoint == Endpoint::Open {
        return Ok(None);
    }
    let path = req.uri().path();
    let jsonrpc = endpoint.speaks_jsonrpc();
    let gate = &st.gate;
    let authz = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    let claims = match bearer(authz) {
        Err(e) => return Err(refuse(jsonrpc, &e)),
        Ok(None) if anonymous_allowed(&gate.cfg, endpoint.is_mcp()) => gate.anonymous.clone(),
        Ok(None) => return Err(refuse(jsonrpc, &AuthError::Missing)),
        Ok(Some(token)) => match gate.verifier.verify_cached(token, unix_now()) {
            Err(e) => return Err(refuse(jsonrpc, &e)),
            Ok(c) if c.jti.as_deref().is_some_and(|j| gate.is_revoked(j)) => {
                return Err(refuse(jsonrpc, &AuthError::Revoked))
            }
            Ok(c) => c,
        },
    };
    let peer = req
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map_or(IpAddr::V4(Ipv4Addr::LOCALHOST), |c| c.0.ip());
    let xff: Vec<&str> = req
        .headers()
        .get_all(X_FORWARDED_FOR)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .collect();
    let xff = xff.join(",");
    let facts = RequestFacts {
        method: req.method().as_str(),
        path,
        transport: jsonrpc,
        client_ip: client_ip(
            peer,
            (!xff.is_empty()).then_some(xff.as_str()),
            &gate.cfg.trusted_proxies,
        ),
        now: unix_now(),
    };
    if let Err(denied) = authorize_rest(&claims, &facts, &gate.cfg) {
        return Err(deny(jsonrpc, StatusCode::FORBIDDEN, &denied.to_string()));
    }
    Ok(Some(Principal { claims }))
}

/// 401 for a missing or bad credential, with the RFC 6750 challenge.
fn refuse(jsonrpc: bool, e: &AuthError) -> Response {
    let mut resp = deny(jsonrpc, e.status(), &e.to_string());
    if e.status() == StatusCode::UNAUTHORIZED {
        if let Ok(v) = HeaderValue::from_str(e.www_authenticate()) {
            resp.headers_mut().insert(header::WWW_AUTHENTICATE, v);
        }
    }
    resp
}

fn deny(jsonrpc: bool, status: StatusCode, why: &str) -> Response {
    if jsonrpc {
        crate::wire::rpc_error(status, &Id::Null, &ErrorObject::forbidden(why))
    } else {
        crate::wire::detail(status, why)
    }
}

/// A handler taking a `Principal` only runs behind [`authenticate`]; without
/// it (a wiring mistake) the request is refused, never served anonymously.
impl<S: Send + Sync> FromRequestParts<S> for Principal {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        parts
            .extensions
            .get::<Principal>()
            .cloned()
            .ok_or_else(not_authenticated)
    }
}

/// 401 for a route that needs a principal on a request the gate let through
/// without one.
pub fn not_authenticated() -> Response {
    let err = ErrorObject::forbidden("not authenticated");
    (
        StatusCode::UNAUTHORIZED,
        jsonrpc::encode_error(&Id::Null, &err),
    )
        .into_response()
}
