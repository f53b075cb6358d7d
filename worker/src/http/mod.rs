//! The routes. Every response names the worker that produced it
//! (`x-fleetgate-worker`), and every request counts toward `MAX_REQUESTS`.

pub mod auth;
mod health;
pub mod mcp;
mod rest;
mod rpc;
#[cfg(feature = "test-hooks")]
mod test_hooks;
mod tokens;

use crate::endpoint::Endpoint;
use crate::gateway::scope::Principal;
use crate::state::AppState;
use axum::extract::{DefaultBodyLimit, Request};
use axum::response::Response;
use axum::Router;
use std::sync::atomic::Ordering;
use tower::{Layer, ServiceExt};

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
    pub async fn call(self, req: Request) -> Response {
        let App { state, routes } = self;
        let info = &state.worker;
        let served = info.requests.fetch_add(1, Ordering::Relaxed) + 1;
        crate::metrics::Metrics::inc(&state.metrics.http_requests);
        if info.max_requests > 0 && served >= info.max_requests {
            state.control.request_retirement();
        }
        let endpoint = Endpoint::of(req.uri().path());
        let mut resp = match auth::authenticate(&state, &endpoint, &req) {
            Err(refused) => refused,
            Ok(principal) => route(&state, routes, endpoint, principal, req).await,
        };
        info.name(&mut resp);
        resp
    }
}

/// An admitted request to its handler: a transport path here, the rest
/// through the router (with the configured body limit). The transport paths
/// skip the router's per-request work (a matchit lookup, path parameters
/// stored and extracted again, a boxed service and future).
async fn route(
    st: &AppState,
    routes: Router,
    endpoint: Endpoint,
    principal: Option<Principal>,
    mut req: Request,
) -> Response {
    match (endpoint, principal) {
        (
            Endpoint::Mcp(_)
            | Endpoint::LegacySse(_)
            | Endpoint::LegacyMessage(_)
            | Endpoint::BadServerId
            | Endpoint::Rpc,
            None,
        ) => auth::not_authenticated(),
        (Endpoint::BadServerId, Some(_)) => crate::wire::detail(
            http::StatusCode::BAD_REQUEST,
            "the server id in the path is not UTF-8 once percent-decoded",
        ),
        (Endpoint::Mcp(server), Some(who)) => mcp::serve(st, server, who, req).await,
        (Endpoint::Rpc, Some(who)) => rpc::serve(st, who, req).await,
        // Boxed: the common request's future stays small.
        (Endpoint::LegacySse(server), Some(who)) => {
            Box::pin(mcp::legacy::open(st, server, who, req)).await
        }
        (Endpoint::LegacyMessage(server), Some(who)) => {
            Box::pin(mcp::legacy::message(st, server, who, req)).await
        }
        (Endpoint::Open | Endpoint::OtherMcp | Endpoint::Rest, principal) => {
            if let Some(p) = principal {
                req.extensions_mut().insert(p);
            }
            let limit = DefaultBodyLimit::max(st.gateway_cfg.max_body_bytes);
            match limit.layer(routes).oneshot(req).await {
                Ok(resp) => resp,
                Err(never) => match never {},
            }
        }
    }
}
