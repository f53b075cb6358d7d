//! `AppState`: what every route gets; one `Arc`, so a clone (axum makes
//! several per request) is one atomic increment.

use crate::control::Control;
use crate::gateway::affinity::Affinity;
use crate::gateway::dispatch::Core;
use crate::gateway::redis_affinity::RedisAffinity;
use crate::gateway::session::Sessions;
use crate::http::auth::Gate;
use crate::http::pubsub::PubSub;
use crate::metrics::Metrics;
use fleetgate_shared::config::GatewayConfig;
use http::{HeaderName, HeaderValue};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

#[derive(Clone)]
pub struct AppState(Arc<Inner>);

struct Inner {
    shared: Shared,
    passthrough: Vec<HeaderName>,
}

impl AppState {
    pub fn new(shared: Shared) -> AppState {
        let passthrough = shared
            .gateway_cfg
            .passthrough_headers
            .iter()
            .filter_map(|n| HeaderName::try_from(n.as_str()).ok())
            .collect();
        AppState(Arc::new(Inner {
            shared,
            passthrough,
        }))
    }

    /// The client headers passed on to upstreams (`PASSTHROUGH_HEADERS`),
    /// parsed once.
    pub fn passthrough(&self) -> &[HeaderName] {
        &self.0.passthrough
    }
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
    pub affinity: Arc<Affinity>,
    pub gate: Arc<Gate>,
    pub metrics: Arc<Metrics>,
    /// Session ownership in Redis (`REDIS_URL`); `None`: embedded mode.
    pub redis: Option<Arc<RedisAffinity>>,
    /// Pub/sub forwarding (with Redis).
    pub pubsub: Option<Arc<PubSub>>,
    /// Keep-alive connections to other workers, for forwarding.
    pub owner_connections: std::sync::Arc<fleetgate_http1::IdleConnections>,
}

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
}
