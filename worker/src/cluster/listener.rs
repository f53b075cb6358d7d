//! The owner's side of a forward: whatever carried the sealed frame (the
//! Unix socket, the internal TCP listener, pub/sub), it is opened here, its
//! signature is the only trust, and the request it carries goes to the
//! transport's [`Handler`] as if it had arrived here: it is never forwarded
//! again.

use super::seal::{Kind, FORWARD_PATH, SIGNATURE_HEADER};
use super::Cluster;
use crate::gateway::scope::{Principal, Scope};
use crate::metrics::Metrics;
use crate::wire::{detail, read_body};
use axum::body::Bytes;
use axum::extract::Request;
use axum::response::Response;
use http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode};
use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

/// Room for the envelope (claims, carried headers) around a client body of
/// the public limit.
const ENVELOPE_ROOM: usize = 64 << 10;

/// A request another worker sent to this one, its session's owner: the
/// client's method, headers and body, with the kind of request, the scope
/// and the principal the sender established (sealed, so trusted).
pub struct Forwarded {
    pub method: Method,
    pub kind: Kind,
    pub scope: Scope,
    pub principal: Principal,
    pub headers: HeaderMap,
    pub body: Bytes,
}

/// The transport's "handle here": serves a forwarded request in this worker.
pub trait Handler: Clone + Send + Sync + 'static {
    fn handle(&self, req: Forwarded) -> impl Future<Output = Response> + Send;
}

/// The owner's side: the service on the worker's internal listeners, and
/// what pub/sub deliveries are handed to.
#[derive(Clone)]
pub struct Owner<H> {
    cluster: Arc<Cluster>,
    handler: H,
    /// The largest sealed frame read: the public body limit plus the envelope.
    limit: usize,
}

impl<H: Handler> Owner<H> {
    pub fn new(cluster: Arc<Cluster>, handler: H, max_body_bytes: usize) -> Owner<H> {
        Owner {
            cluster,
            handler,
            limit: max_body_bytes + ENVELOPE_ROOM,
        }
    }

    pub fn cluster(&self) -> &Cluster {
        &self.cluster
    }

    /// Serves a sealed forward: verify, then the transport's handler for the
    /// kind and method the envelope names. The answer names this worker.
    pub async fn serve(&self, sealed: &Bytes, sig: &str) -> Response {
        let c = &self.cluster;
        let (env, body) = match c.seal.open(sealed, sig) {
            Ok(opened) => opened,
            Err(why) => {
                tracing::warn!(why, "refused a forwarded request");
                return detail(StatusCode::UNAUTHORIZED, &format!("forward refused: {why}"));
            }
        };
        let mut headers = HeaderMap::with_capacity(env.headers.len());
        for (k, v) in &env.headers {
            if let (Ok(k), Ok(v)) = (HeaderName::try_from(k.as_str()), HeaderValue::from_str(v)) {
                headers.insert(k, v);
            }
        }
        Metrics::inc(&c.metrics.forwarded_served);
        let method = match env.method.as_str() {
            "POST" => Method::POST,
            "GET" => Method::GET,
            "DELETE" => Method::DELETE,
            _ => return detail(StatusCode::METHOD_NOT_ALLOWED, "Method Not Allowed"),
        };
        let req = Forwarded {
            method,
            scope: env.scope(),
            principal: env.principal(),
            kind: env.kind,
            headers,
            body,
        };
        let mut resp = self.handler.handle(req).await;
        c.worker.name(&mut resp);
        resp
    }

    /// One HTTP request on an internal listener: `POST FORWARD_PATH` with the
    /// sealed frame as its body and its signature in a header.
    async fn serve_http(&self, req: Request) -> Response {
        if req.uri().path() != FORWARD_PATH {
            return detail(StatusCode::NOT_FOUND, "Not Found");
        }
        let (parts, body) = req.into_parts();
        let Some(sig) = parts
            .headers
            .get(SIGNATURE_HEADER)
            .and_then(|v| v.to_str().ok())
        else {
            return detail(StatusCode::UNAUTHORIZED, "forward refused: not signed");
        };
        match read_body(body, self.limit).await {
            Ok(sealed) => self.serve(&sealed, sig).await,
            Err(e) => e.into_response(),
        }
    }
}

/// One route, served by a direct call: no router.
impl<H: Handler> tower::Service<Request> for Owner<H> {
    type Response = Response;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Response, Infallible>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request) -> Self::Future {
        let owner = self.clone();
        Box::pin(async move { Ok(owner.serve_http(req).await) })
    }
}
