//! Downstream MCP sessions owned by this worker, and the [`ClientChannel`] that carries
//! what an upstream sends mid-call to the client and the client's answers back.
//!
//! A session holds: the scope it was initialized on (a session opened on
//! `/servers/A/mcp` does not exist anywhere else), its principal, its upstream
//! sessions (one per gateway, never shared), its GET stream, and the server→client
//! requests waiting for the client's answer.

use crate::cluster::redis_events::RedisEvents;
use crate::gateway::events::{self, EventStore};
use crate::gateway::federation::{close_all, UpstreamSet};
use crate::gateway::scope::{Principal, Scope};
use bytes::Bytes;
use fleetgate_mcp::jsonrpc::{self, ErrorObject, Id};
use fleetgate_mcp::upstream::BoxFuture;
use fleetgate_mcp::{Notification, Request, ServerMessageHandler};
use serde_json::{json, Value};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, PoisonError, RwLock};
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};

type Answer = Result<Value, ErrorObject>;

pub struct Session {
    pub id: String,
    pub scope: Scope,
    pub principal: Principal,
    pub protocol_version: String,
    pub upstreams: Arc<UpstreamSet>,
    /// The events sent on this session's SSE streams, for resumption.
    pub events: Arc<EventStore>,
    pending: Mutex<foldhash::HashMap<String, oneshot::Sender<Answer>>>,
    get_stream: Mutex<Option<mpsc::Sender<Bytes>>>,
    next_client_request: AtomicU64,
    /// Unix seconds of the last request that used this session.
    last_used: AtomicU64,
}

fn unix_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

impl Session {
    /// Idle: no request for `max_idle`, no open GET stream, nothing waiting
    /// for the client.
    fn idle(&self, now: u64, max_idle: u64) -> bool {
        now.saturating_sub(self.last_used.load(Ordering::Relaxed)) >= max_idle
            && self.stream().is_none()
            && self
                .pending
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .is_empty()
    }

    /// Delivers the client's answer to a request sent to it; false if nobody waits.
    pub fn answer(&self, id: &Id, answer: Answer) -> bool {
        let key = pending_key(id);
        let waiter = self
            .pending
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&key);
        waiter.is_some_and(|w| w.send(answer).is_ok())
    }

    /// Installs the GET stream's sender; false if one is already open.
    pub fn open_stream(&self, tx: mpsc::Sender<Bytes>) -> bool {
        let mut s = self
            .get_stream
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if s.as_ref().is_some_and(|old| !old.is_closed()) {
            return false;
        }
        *s = Some(tx);
        true
    }

    /// Installs the GET stream's sender for a client resuming it
    /// (`Last-Event-ID`): the old connection, if the server has not noticed it
    /// is gone yet, stops receiving new messages.
    pub fn replace_stream(&self, tx: mpsc::Sender<Bytes>) {
        *self
            .get_stream
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = Some(tx);
    }

    /// The GET stream, if the client holds one open.
    pub fn stream(&self) -> Option<mpsc::Sender<Bytes>> {
        self.get_stream
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
            .filter(|s| !s.is_closed())
    }
}

fn pending_key(id: &Id) -> String {
    match id {
        Id::String(s) => s.clone(),
        other => serde_json::to_string(other).unwrap_or_default(),
    }
}

/// Deleted session ids remembered, so a DELETEd session cannot be adopted back.
const DELETED_KEPT: usize = 100_000;

/// This worker's sessions.
#[derive(Default)]
pub struct Sessions {
    map: RwLock<foldhash::HashMap<String, Arc<Session>>>,
    deleted: Mutex<std::collections::VecDeque<String>>,
    /// Per stream: how many events are kept, and how long (`None`: defaults).
    event_limits: Option<(usize, Duration)>,
    /// With Redis: every session's events are copied there, and an adopted
    /// session starts with what its previous owner stored.
    redis_events: OnceLock<Arc<RedisEvents>>,
}

impl Sessions {
    /// Sessions whose streams keep `max_events` events each, for `ttl`.
    pub fn with_event_limits(max_events: usize, ttl: Duration) -> Sessions {
        Sessions {
            event_limits: Some((max_events, ttl)),
            ..Sessions::default()
        }
    }

    /// Copies the events of the sessions created from now on to Redis (set
    /// once, at boot; without it: memory only).
    pub fn mirror_events(&self, redis_events: Arc<RedisEvents>) {
        let _ = self.redis_events.set(redis_events);
    }

    /// The Redis copy of the sessions' events, if any.
    pub fn redis_events(&self) -> Option<&Arc<RedisEvents>> {
        self.redis_events.get()
    }

    /// Creates (or adopts) the session `id`.
    pub fn create(
        &self,
        id: String,
        scope: Scope,
        principal: Principal,
        protocol_version: &str,
    ) -> Arc<Session> {
        let (max, ttl) = self
            .event_limits
            .unwrap_or((events::DEFAULT_MAX_EVENTS, events::DEFAULT_TTL));
        let store = EventStore::new(max, ttl);
        if let Some(r) = self.redis_events.get() {
            for stream in r.take_staged(&id) {
                store.import(stream);
            }
            store.mirror_to(r.sink(&id, max, ttl));
        }
        let s = Arc::new(Session {
            id,
            scope,
            principal,
            protocol_version: protocol_version.to_owned(),
            upstreams: Arc::default(),
            events: Arc::new(store),
            pending: Mutex::default(),
            get_stream: Mutex::default(),
            next_client_request: AtomicU64::new(1),
            last_used: AtomicU64::new(unix_secs()),
        });
        self.map
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(s.id.clone(), s.clone());
        s
    }

    /// The session `id` as seen from `scope`: a session exists only in the scope
    /// it was initialized in.
    pub fn get(&self, id: &str, scope: &Scope) -> Option<Arc<Session>> {
        let s = self
            .map
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(id)
            .filter(|s| &s.scope == scope)
            .cloned()?;
        s.last_used.store(unix_secs(), Ordering::Relaxed);
        Some(s)
    }

    /// Ends the sessions idle for `max_idle` (closing their upstream sessions).
    /// They are not marked deleted: a client that comes back later gets its
    /// session adopted afresh, like after an owner restart.
    pub fn expire_idle(&self, max_idle: std::time::Duration) -> usize {
        let now = unix_secs();
        let idle: Vec<Arc<Session>> = {
            let mut map = self.map.write().unwrap_or_else(PoisonError::into_inner);
            let ids: Vec<String> = map
                .values()
                .filter(|s| s.idle(now, max_idle.as_secs()))
                .map(|s| s.id.clone())
                .collect();
            ids.iter().filter_map(|id| map.remove(id)).collect()
        };
        for s in &idle {
            s.events.stop_mirroring();
            close_all(s.upstreams.take_all());
        }
        idle.len()
    }

    /// Was `id` deleted (recently enough to remember)?
    pub fn is_deleted(&self, id: &str) -> bool {
        self.deleted
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .any(|d| d == id)
    }

    /// Ends a session and closes its upstream sessions.
    pub fn remove(&self, id: &str) -> Option<Arc<Session>> {
        {
            let mut d = self.deleted.lock().unwrap_or_else(PoisonError::into_inner);
            if d.len() >= DELETED_KEPT {
                d.pop_front();
            }
            d.push_back(id.to_owned());
        }
        let s = self
            .map
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(id)?;
        s.events.stop_mirroring();
        close_all(s.upstreams.take_all());
        Some(s)
    }

    pub fn len(&self) -> usize {
        self.map
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Carries an upstream's mid-call messages to the client as JSON-RPC messages
/// on `tx` (the POST's SSE stream, or the session's GET stream).
pub struct ClientChannel {
    pub tx: Option<mpsc::Sender<Bytes>>,
    pub session: Option<Arc<Session>>,
}

impl ServerMessageHandler for ClientChannel {
    fn on_notification(&self, n: Notification) -> BoxFuture<'_, ()> {
        Box::pin(async move {
            if let Some(tx) = &self.tx {
                let msg = jsonrpc::encode_notification(&n.method, n.params.as_ref());
                let _ = tx.send(Bytes::from(msg)).await;
            }
        })
    }

    fn on_request(&self, r: Request) -> BoxFuture<'_, Answer> {
        Box::pin(async move {
            if r.method == fleetgate_mcp::protocol::methods::PING {
                return Ok(json!({}));
            }
            let (Some(tx), Some(session)) = (&self.tx, &self.session) else {
                return Err(ErrorObject::new(
                    jsonrpc::METHOD_NOT_FOUND,
                    format!(
                        "{} cannot reach this client: it has no session and no open stream",
                        r.method
                    ),
                ));
            };
            let n = session.next_client_request.fetch_add(1, Ordering::Relaxed);
            let id = Id::String(format!("fleetgate-{n}"));
            let (answer_tx, answer_rx) = oneshot::channel();
            session
                .pending
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .insert(pending_key(&id), answer_tx);
            let msg = jsonrpc::encode_request(&id, &r.method, r.params.as_ref());
            if tx.send(Bytes::from(msg)).await.is_err() {
                session.answer(&id, Err(ErrorObject::internal_error("")));
                return Err(ErrorObject::internal_error("the client's stream closed"));
            }
            answer_rx
                .await
                .unwrap_or_else(|_| Err(ErrorObject::internal_error("the client did not answer")))
        })
    }
}
