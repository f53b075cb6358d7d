//! The routes. Every response names the worker that produced it
//! (`x-fleetgate-worker`), and every request counts toward `MAX_REQUESTS`.

pub mod auth;
pub mod forward;
mod health;
pub mod mcp;
pub mod pubsub;
mod rest;
mod rpc;
#[cfg(feature = "test-hooks")]
mod test_hooks;
mod tokens;

use crate::state::AppState;
use axum::extract::{Request, State};
use axum::middleware::{self, Next};
use axum::response::Response;
use axum::Router;
use http::HeaderValue;
use std::sync::atomic::Ordering;

/// A POST's headers and body. axum's `HeaderMap` extractor copies the whole
/// map; this one takes it from the request.
pub struct Posted {
    pub headers: http::HeaderMap,
    pub body: axum::body::Bytes,
}

impl<S: Send + Sync> axum::extract::FromRequest<S> for Posted {
    type Rejection = axum::extract::rejection::BytesRejection;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let (mut parts, body) = req.into_parts();
        // The extensions carry the body limit.
        let mut rest = Request::new(body);
        *rest.extensions_mut() = std::mem::take(&mut parts.extensions);
        let body = axum::body::Bytes::from_request(rest, state).await?;
        Ok(Posted {
            headers: parts.headers,
            body,
        })
    }
}

/// Names the worker on every response.
pub const WORKER_HEADER: &str = "x-fleetgate-worker";

pub fn router(state: AppState) -> Router {
    let app = Router::new()
        .merge(health::routes())
        .merge(mcp::routes())
        .merge(rpc::routes())
        .merge(rest::routes())
        .merge(tokens::routes());
    #[cfg(feature = "test-hooks")]
    let app = app.merge(test_hooks::routes());
    app.layer(axum::extract::DefaultBodyLimit::max(
        state.gateway_cfg.max_body_bytes,
    ))
    .layer(middleware::from_fn_with_state(state.clone(), front))
    .with_state(state)
}

/// The one middleware (one layer, not two: each costs a boxed future and a
/// service clone per request): counts the request toward `MAX_REQUESTS`, runs
/// the auth gate, and tags the response with the worker.
async fn front(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let info = &state.worker;
    let served = info.requests.fetch_add(1, Ordering::Relaxed) + 1;
    crate::metrics::Metrics::inc(&state.metrics.http_requests);
    if info.max_requests > 0 && served >= info.max_requests {
        state.control.request_retirement();
    }
    let mut resp = auth::authenticate(State(state.clone()), req, next).await;
    // A forwarded answer already names the owner that produced it.
    if !resp.headers().contains_key(WORKER_HEADER) {
        if let Ok(v) = HeaderValue::from_str(&info.id) {
            resp.headers_mut().insert(WORKER_HEADER, v);
        }
    }
    resp
}
