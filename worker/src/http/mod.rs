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
use axum::extract::{DefaultBodyLimit, Request};
use axum::response::Response;
use axum::Router;
use std::sync::atomic::Ordering;
use tower::{Layer, ServiceExt};

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

/// The public app: the front (request count, the auth gate, the worker
/// header) around the routes. The front is a plain call in front of the
/// router, not a `Router::layer`: each route layer wraps every route in one
/// more boxed service, cloned and boxed again on every request.
#[derive(Clone)]
pub struct App {
    state: AppState,
    routes: Router,
}

pub fn router(state: AppState) -> App {
    let routes = Router::new()
        .merge(health::routes())
        .merge(mcp::routes())
        .merge(rpc::routes())
        .merge(rest::routes())
        .merge(tokens::routes());
    #[cfg(feature = "test-hooks")]
    let routes = routes.merge(test_hooks::routes());
    App {
        routes: routes.with_state(state.clone()),
        state,
    }
}

impl App {
    /// Serves one request: counts it toward `MAX_REQUESTS`, runs the auth
    /// gate, routes it with the configured body limit, and tags the response
    /// with the worker.
    pub async fn call(self, mut req: Request) -> Response {
        let App { state, routes } = self;
        let info = &state.worker;
        let served = info.requests.fetch_add(1, Ordering::Relaxed) + 1;
        crate::metrics::Metrics::inc(&state.metrics.http_requests);
        if info.max_requests > 0 && served >= info.max_requests {
            state.control.request_retirement();
        }
        let mut resp = match auth::authenticate(&state, &req) {
            Err(refused) => refused,
            Ok(principal) => {
                if let Some(p) = principal {
                    req.extensions_mut().insert(p);
                }
                let limit = DefaultBodyLimit::max(state.gateway_cfg.max_body_bytes);
                match limit.layer(routes).oneshot(req).await {
                    Ok(resp) => resp,
                    Err(never) => match never {},
                }
            }
        };
        name_worker(&state, &mut resp);
        resp
    }
}

/// Names this worker on `resp`, unless it names one already: a forwarded
/// answer names the owner that produced it.
pub fn name_worker(st: &AppState, resp: &mut Response) {
    if let Some(w) = &st.worker.id_header {
        if !resp.headers().contains_key(WORKER_HEADER) {
            resp.headers_mut().insert(WORKER_HEADER, w.clone());
        }
    }
}
