//! `AppState`: what every route gets; one `Arc`, so a clone (axum makes
//! several per request) is one atomic increment.

use crate::auth::Gate;
use crate::cluster::Cluster;
use crate::control::Control;
use crate::gateway::dispatch::Core;
use crate::gateway::session::Sessions;
use crate::metrics::Metrics;
use fleetgate_shared::config::GatewayConfig;
use http::{HeaderName, HeaderValue};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

#[derive(Clone)]
pub struct AppState(Arc<Inner>);

struct Inner {
    shared: Shared,
}

impl AppState {
    pub fn new(shared: Shared) -> AppState {
        AppState(Arc::new(Inner { shared }))
    }
}

/// The client headers passed on to upstreams (`PASSTHROUGH_HEADERS`); a name
/// that is not a header name is dropped.
pub fn passthrough_headers(names: &[String]) -> Arc<[HeaderName]> {
    names
        .iter()
        .filter_map(|n| HeaderName::try_from(n.as_str()).ok())
        .collect()
}

impl std::ops::Deref for AppState {
    type Target = Shared;

    fn deref(&self) -> &Shared {
        &self.0.shared
    }
}

/// The worker's shared handles.
pub struct Shared {
    pub worker: Arc<WorkerInfo>,
    pub control: Arc<Control>,
    pub core: Arc<Core>,
    pub sessions: Arc<Sessions>,
    pub gateway_cfg: Arc<GatewayConfig>,
    pub gate: Arc<Gate>,
    pub metrics: Arc<Metrics>,
    /// Sessions across workers and hosts: ownership, forwarding, relay.
    pub cluster: Arc<Cluster>,
    /// The client headers passed on to upstreams (`PASSTHROUGH_HEADERS`).
    pub passthrough: Arc<[HeaderName]>,
}

/// Names the worker that produced a response.
pub const WORKER_HEADER: HeaderName = HeaderName::from_static("x-fleetgate-worker");

/// Who this worker is and how it is doing.
#[derive(Debug)]
pub struct WorkerInfo {
    /// `{hostname}:{pid}`.
    pub id: String,
    /// `id` as the value of the `x-fleetgate-worker` header (none if the
    /// hostname cannot be a header value).
    pub id_header: Option<HeaderValue>,
    pub pid: u32,
    /// The supervisor's slot number for this worker.
    pub slot: u32,
    pub draining: AtomicBool,
    pub requests: AtomicU64,
    /// Requests after which the worker asks to be recycled (0 = never).
    pub max_requests: u64,
}

impl WorkerInfo {
    pub fn new(pid: u32, slot: u32, max_requests: u64) -> WorkerInfo {
        let id = fleetgate_shared::contract::worker_identity(pid);
        WorkerInfo {
            id_header: HeaderValue::from_str(&id).ok(),
            id,
            pid,
            slot,
            draining: AtomicBool::new(false),
            requests: AtomicU64::new(0),
            max_requests,
        }
    }

    pub fn is_draining(&self) -> bool {
        self.draining.load(Ordering::Acquire)
    }

    /// Names this worker on `resp`, unless it names one already: a forwarded
    /// answer names the owner that produced it.
    pub fn name(&self, resp: &mut axum::response::Response) {
        if let Some(w) = &self.id_header {
            resp.headers_mut()
                .entry(WORKER_HEADER)
                .or_insert_with(|| w.clone());
        }
    }
}
