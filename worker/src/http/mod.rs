//! The routes. Every response names the worker that produced it
//! (`x-fleetgate-worker`), and every request counts toward `MAX_REQUESTS`.

pub mod auth;
pub mod forward;
mod health;
pub mod mcp;
pub mod pubsub;
pub mod quiet_unix;
mod rest;
mod rpc;
#[cfg(feature = "test-hooks")]
mod test_hooks;
mod tokens;

use crate::gateway::scope::Principal;
use crate::state::AppState;
use axum::extract::{DefaultBodyLimit, Request};
use axum::response::Response;
use axum::Router;
use std::sync::atomic::Ordering;
use tower::{Layer, ServiceExt};

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
        let mut resp = match auth::authenticate(&state, &req) {
            Err(refused) => refused,
            Ok(principal) => route(&state, routes, principal, req).await,
        };
        name_worker(&state, &mut resp);
        resp
    }
}

/// The transport routes: MCP Streamable HTTP and JSON-RPC.
enum Transport {
    /// `/mcp` (`None`) or `/servers/{id}/mcp` (the id, percent-decoded).
    Mcp(Option<String>),
    /// `/rpc`.
    Rpc,
}

/// Matches the transport routes, each with or without one trailing slash.
/// They are routed here, in front of the router, and only here: the hot
/// path skips the router's per-request work (a matchit lookup, the path
/// parameters stored and extracted again, a boxed service and future per
/// request), about 5% of a worker's instructions per `tools/call`.
fn transport(path: &str) -> Option<Result<Transport, Response>> {
    let p = path.strip_suffix('/').unwrap_or(path);
    match p {
        "/mcp" => return Some(Ok(Transport::Mcp(None))),
        "/rpc" => return Some(Ok(Transport::Rpc)),
        _ => {}
    }
    let id = p.strip_prefix("/servers/")?.strip_suffix("/mcp")?;
    if id.is_empty() || id.contains('/') {
        return None;
    }
    Some(
        match percent_encoding::percent_decode_str(id).decode_utf8() {
            Ok(id) => Ok(Transport::Mcp(Some(id.into_owned()))),
            Err(_) => Err(mcp::detail(
                http::StatusCode::BAD_REQUEST,
                "the server id in the path is not UTF-8 once percent-decoded",
            )),
        },
    )
}

/// A POST's body, up to `limit` bytes: 413 (as a JSON-RPC error, these
/// being the JSON-RPC routes) beyond it.
pub async fn read_body(
    body: axum::body::Body,
    limit: usize,
) -> Result<axum::body::Bytes, Response> {
    use http_body_util::BodyExt;
    match http_body_util::Limited::new(body, limit).collect().await {
        Ok(b) => Ok(b.to_bytes()),
        Err(e) => {
            let (status, msg) = if e.is::<http_body_util::LengthLimitError>() {
                (
                    http::StatusCode::PAYLOAD_TOO_LARGE,
                    format!("request body larger than the limit of {limit} bytes (MAX_REQUEST_BODY_BYTES)"),
                )
            } else {
                (
                    http::StatusCode::BAD_REQUEST,
                    format!("cannot read the request body: {e}"),
                )
            };
            Err(mcp::rpc_error(
                status,
                &fleetgate_mcp::jsonrpc::Id::Null,
                &fleetgate_mcp::jsonrpc::ErrorObject::invalid_request(msg),
            ))
        }
    }
}

/// An admitted request to its handler: a transport path here, the rest
/// through the router (with the configured body limit).
async fn route(
    st: &AppState,
    routes: Router,
    principal: Option<Principal>,
    mut req: Request,
) -> Response {
    match (transport(req.uri().path()), principal) {
        (Some(_), None) => auth::not_authenticated(),
        (Some(Err(bad)), Some(_)) => bad,
        (Some(Ok(Transport::Mcp(server))), Some(who)) => mcp::serve(st, server, who, req).await,
        (Some(Ok(Transport::Rpc)), Some(who)) => rpc::serve(st, who, req).await,
        (None, principal) => {
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

/// Names this worker on `resp`, unless it names one already: a forwarded
/// answer names the owner that produced it.
pub fn name_worker(st: &AppState, resp: &mut Response) {
    static NAME: http::HeaderName = http::HeaderName::from_static(WORKER_HEADER);
    if let Some(w) = &st.worker.id_header {
        resp.headers_mut().entry(&NAME).or_insert_with(|| w.clone());
    }
}
