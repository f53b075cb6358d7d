//! The cluster: everything about a session that spans workers and hosts.
//!
//! A stateful MCP session lives in one worker, its owner. A request for it may
//! land on any worker of any host; this module decides where it is served and
//! carries it there, and nothing outside it knows how:
//!
//! ```text
//! transport ─► Cluster::route ─► Here { adopt }            (serve it in this worker)
//!                              └► forward ─► owner's listener ─► Handler::handle
//!                                   ▲                                 │
//!                                   └──────── relay (the answer) ◄────┘
//! ```
//!
//! # Layout
//! - [`seal`]: session ids that name their owner's slot (MAC-protected) and the
//!   sealed frame a forward travels in (one HMAC over envelope and body).
//! - [`route`]: the routing decision, embedded (by slot) or with Redis (by
//!   lookup, with reclaim of a dead owner's sessions).
//! - [`forward`]: the sending side, over each transport: Unix socket
//!   (embedded), internal TCP listener or Redis pub/sub (`AFFINITY_FORWARD`).
//! - [`listener`]: the owner's side: opens a sealed frame, whatever carried it,
//!   and hands the request to the transport's [`Handler`] ("handle here").
//! - [`relay`]: the owner's answer to the client, faithfully (seed 002).
//! - [`redis_owners`]: session ownership and worker heartbeats in Redis, on
//!   the worker's one multiplexed Redis connection (the `redis` crate's).
//! - [`pubsub`]: forwarding over Redis pub/sub, both sides: `PUBLISH` on that
//!   connection, a subscription of its own (`redis::aio::PubSub`), and the
//!   clock that watches the owners of waiting forwards.
//! - [`redis_events`]: the sessions' SSE events copied to Redis, so an adopter
//!   can replay them.
//! - [`quiet_unix`]: Unix streams registered for readability only (the
//!   worker-to-worker Unix forward).
//!
//! The transport calls in through [`Cluster`] alone; nothing here imports the
//! HTTP layer (the owner-side listener reaches it through [`Handler`]).

pub mod forward;
pub mod listener;
pub mod pubsub;
pub mod quiet_unix;
pub mod redis_events;
pub mod redis_owners;
pub mod relay;
pub mod route;
pub mod seal;

pub use forward::ForwardError;
pub use listener::{Forwarded, Handler};
pub use route::Route;
pub use seal::Kind;

use crate::gateway::scope::{Principal, Scope};
use crate::gateway::session::{Session, Sessions};
use crate::metrics::Metrics;
use crate::state::WorkerInfo;
use fleetgate_http1::IdleConnections;
use http::HeaderName;
use pubsub::PubSub;
use redis_owners::{short, RedisOwners};
use seal::Seal;
use std::sync::Arc;

/// The largest non-streaming answer an owner's answer may be, on every
/// forward transport.
const MAX_ANSWER: usize = 64 << 20;

/// Idle keep-alive connections kept per owner (more are closed after use).
pub const MAX_IDLE_PER_OWNER: usize = 64;

/// This worker's view of the cluster: ownership (embedded slots, or Redis),
/// the forward clients and their connection pools.
pub struct Cluster {
    pub seal: Seal,
    redis: Option<RedisLink>,
    sessions: Arc<Sessions>,
    metrics: Arc<Metrics>,
    worker: Arc<WorkerInfo>,
    /// Client headers carried to the owner besides the protocol's own.
    passthrough: Arc<[HeaderName]>,
    /// Keep-alive connections to other workers.
    owners: Arc<IdleConnections>,
}

/// Ownership in Redis and the pub/sub forward (`REDIS_URL`).
struct RedisLink {
    ownership: Arc<RedisOwners>,
    pubsub: Arc<PubSub>,
}

impl Cluster {
    pub fn new(
        seal: Seal,
        redis: Option<Arc<RedisOwners>>,
        sessions: Arc<Sessions>,
        metrics: Arc<Metrics>,
        worker: Arc<WorkerInfo>,
        passthrough: Arc<[HeaderName]>,
    ) -> Cluster {
        Cluster {
            seal,
            redis: redis.map(|ownership| RedisLink {
                ownership,
                pubsub: Arc::default(),
            }),
            sessions,
            metrics,
            worker,
            passthrough,
            owners: Arc::new(IdleConnections::new(MAX_IDLE_PER_OWNER)),
        }
    }

    /// Session ownership in Redis; `None`: embedded mode.
    pub fn redis(&self) -> Option<&Arc<RedisOwners>> {
        self.redis.as_ref().map(|r| &r.ownership)
    }

    /// A new session id owned by this worker.
    pub fn mint(&self, scope: &Scope, principal: &Principal) -> String {
        self.seal.mint(scope, principal)
    }

    /// Records a new session's owner (with Redis) before the client learns
    /// its id, so every worker finds it.
    pub async fn claim(&self, sid: &str, principal: &Principal) {
        if let Some(redis) = self.redis() {
            if let Err(e) = redis.claim(sid, principal.subject()).await {
                tracing::warn!(session = short(sid), error = %e, "cannot record the session's owner");
            }
        }
    }

    /// Whether `sid` is a genuine id this worker may adopt: minted in this
    /// fleet for this scope and principal, and not ended.
    pub fn adoptable(&self, sid: &str, scope: &Scope, principal: &Principal) -> bool {
        self.seal.owner(sid, scope, principal).is_some() && !self.sessions.is_deleted(sid)
    }

    /// Notes that this worker adopted `sid` (with Redis: its ownership is
    /// kept fresh from now on).
    pub fn adopted(&self, sid: &str, principal: &Principal) {
        Metrics::inc(&self.metrics.sessions_adopted);
        if let Some(redis) = self.redis() {
            redis.track(sid, principal.subject());
        }
    }

    /// With Redis: refreshes the ownership of a session used here (throttled,
    /// in the background). If Redis names another owner (this worker was
    /// taken for dead), the local copy goes and later requests follow Redis.
    pub fn touch(&self, s: &Session) {
        let Some(redis) = self.redis() else {
            return;
        };
        let subject = s.principal.subject().to_owned();
        if !redis.refresh_due(&s.id, &subject) {
            return;
        }
        let (redis, sessions, sid) = (redis.clone(), self.sessions.clone(), s.id.clone());
        tokio::spawn(async move {
            if let Ok(Some(other)) = redis.refresh(&sid, &subject).await {
                tracing::warn!(
                    session = short(&sid),
                    owner = other,
                    "another worker owns this session now; dropping the local copy"
                );
                sessions.remove(&sid);
            }
        });
    }

    /// Ends a session here and wherever the cluster keeps a trace of it
    /// (its copied events, its ownership in Redis).
    pub async fn release(&self, sid: &str) {
        self.sessions.remove(sid);
        if let Some(events) = self.sessions.redis_events() {
            events.drop_session(sid);
        }
        if let Some(redis) = self.redis() {
            if let Err(e) = redis.release(sid).await {
                tracing::warn!(session = short(sid), error = %e, "cannot release the session in Redis");
            }
        }
    }
}

impl Cluster {
    /// With Redis: keeps this worker subscribed to its forwarding channel,
    /// serving what arrives through `owner`.
    pub fn spawn_subscriber<H: Handler>(&self, owner: listener::Owner<H>) {
        if let Some(r) = &self.redis {
            pubsub::spawn_subscriber(owner, r.ownership.clone(), r.pubsub.clone());
        }
    }
}
