//! Downstream MCP sessions owned by this worker, and the [`ClientChannel`] that carries
//! what an upstream sends mid-call to the client and the client's answers back.
//!
//! A session holds: the scope it was initialized on (a session opened on
//! `/servers/A/mcp` does not exist anywhere else), its principal, its upstream
//! sessions (one per gateway, never shared), its GET stream, and the server→client
//! requests waiting for the client's answer.
//!
//! # What upstreams send outside a call
//! Each upstream session's standalone stream is read for the session's life
//! ([`Listener`]); what arrives there reaches the client through
//! [`Session::deliver`]: on the GET stream when one is open, else on the
//! stream of a call in progress, else it is held (at most [`HELD_MAX`]
//! messages, each for [`HELD_TTL`], or a request for as long as its upstream
//! waits) until one of those opens. Requests get a session-unique id
//! (`fleetgate-N`) and the client's answer goes back to the upstream that
//! asked; one nobody takes in time is answered with an error.

use crate::cluster::redis_events::RedisEvents;
use crate::gateway::catalog;
use crate::gateway::events::{self, EventStore};
use crate::gateway::federation::{close_all, UpstreamSet};
use crate::gateway::scope::{Principal, Scope};
use bytes::Bytes;
use fleetgate_mcp::jsonrpc::{self, ErrorObject, Id};
use fleetgate_mcp::upstream::BoxFuture;
use fleetgate_mcp::{Notification, Request, ServerMessageHandler};
use serde_json::{json, Value};
use std::collections::VecDeque;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, PoisonError, RwLock, Weak};
use std::time::{Duration, Instant};
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
    /// The SSE streams of calls in progress, by call number.
    calls: Mutex<Vec<(u64, mpsc::Sender<Bytes>)>>,
    /// Messages no stream could take yet, oldest first.
    held: Mutex<VecDeque<Held>>,
    next_client_request: AtomicU64,
    /// The registry version whose view this session's client last had:
    /// changes after it are announced (`list_changed`), those before not.
    pub view_version: AtomicI64,
    /// Unix seconds of the last request that used this session.
    last_used: AtomicU64,
    /// The call this session holds for a 2026-07-28 client's retry, if it
    /// was opened for one ([`crate::gateway::mrtr`]).
    parked: OnceLock<Arc<crate::gateway::mrtr::Parked>>,
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

    /// Makes this session the holder of a parked call (once).
    pub fn park(&self, call: Arc<crate::gateway::mrtr::Parked>) {
        let _ = self.parked.set(call);
    }

    /// The parked call this session holds, if any.
    pub fn parked(&self) -> Option<&Arc<crate::gateway::mrtr::Parked>> {
        self.parked.get()
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

    /// Installs the GET stream's sender; false if one is already open. What
    /// was held for the client goes out on it first.
    pub fn open_stream(&self, tx: mpsc::Sender<Bytes>) -> bool {
        let mut held = self.held();
        let mut s = self
            .get_stream
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if s.as_ref().is_some_and(|old| !old.is_closed()) {
            return false;
        }
        flush(&mut held, &tx);
        *s = Some(tx);
        true
    }

    /// Installs the GET stream's sender for a client resuming it
    /// (`Last-Event-ID`): the old connection, if the server has not noticed it
    /// is gone yet, stops receiving new messages.
    pub fn replace_stream(&self, tx: mpsc::Sender<Bytes>) {
        let mut held = self.held();
        flush(&mut held, &tx);
        *self
            .get_stream
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = Some(tx);
    }

    fn held(&self) -> std::sync::MutexGuard<'_, VecDeque<Held>> {
        self.held.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Offers a call's SSE stream for messages that belong to no call (while
    /// no GET stream is open), until the returned guard is dropped.
    pub fn attach_call(self: &Arc<Self>, tx: &mpsc::Sender<Bytes>) -> AttachedCall {
        let n = self.next_client_request.fetch_add(1, Ordering::Relaxed);
        let mut held = self.held();
        if self.stream().is_none() {
            flush(&mut held, tx);
        }
        self.calls
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push((n, tx.clone()));
        AttachedCall {
            session: Arc::downgrade(self),
            n,
        }
    }

    /// Sends a message that belongs to no call to the client (see the
    /// module docs), holding it until `until` if no stream can take it now.
    pub fn deliver(&self, msg: Bytes, until: Instant) {
        let mut held = self.held();
        // Sent under the lock: a call whose stream is withdrawn
        // ([`AttachedCall`]'s drop) gets nothing after that.
        let calls = self.calls.lock().unwrap_or_else(PoisonError::into_inner);
        let get = self.stream();
        let mut msg = Some(msg);
        for tx in get.iter().chain(calls.iter().map(|c| &c.1)) {
            flush(&mut held, tx);
            if !held.is_empty() {
                continue;
            }
            match msg.take().map(|m| tx.try_send(m)) {
                Some(Err(e)) => msg = Some(e.into_inner()),
                _ => return,
            }
        }
        drop(calls);
        let Some(msg) = msg else { return };
        if held.len() >= HELD_MAX {
            held.pop_front();
            tracing::warn!(
                session = %crate::cluster::redis_owners::short(&self.id),
                "no stream of the session takes messages: dropping the oldest one held for it"
            );
        }
        held.push_back(Held { until, msg });
    }

    /// Sends a server→client request to the client under a session-unique
    /// id, on `via` (a call's stream) or else as [`deliver`](Self::deliver)
    /// does, and waits up to `wait` for the client's answer.
    pub async fn ask(
        &self,
        r: Request,
        via: Option<&mpsc::Sender<Bytes>>,
        wait: Duration,
    ) -> Answer {
        let n = self.next_client_request.fetch_add(1, Ordering::Relaxed);
        let id = Id::String(format!("fleetgate-{n}"));
        let (answer_tx, answer_rx) = oneshot::channel();
        let key = pending_key(&id);
        self.pending
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(key.clone(), answer_tx);
        let msg = Bytes::from(jsonrpc::encode_request(&id, &r.method, r.params.as_ref()));
        let until = Instant::now() + wait;
        match via {
            Some(tx) => {
                if tx.send(msg).await.is_err() {
                    self.forget(&key);
                    return Err(ErrorObject::internal_error("the client's stream closed"));
                }
            }
            None => self.deliver(msg, until),
        }
        match tokio::time::timeout(wait, answer_rx).await {
            Ok(Ok(answer)) => answer,
            Ok(Err(_)) => Err(ErrorObject::internal_error("the client did not answer")),
            Err(_) => {
                self.forget(&key);
                Err(ErrorObject::internal_error(format!(
                    "the client did not answer {} within {} s (no stream of session {} took it, or the client was slow)",
                    r.method,
                    wait.as_secs(),
                    crate::cluster::redis_owners::short(&self.id)
                )))
            }
        }
    }

    fn forget(&self, key: &str) {
        self.pending
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(key);
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

/// At most this many messages wait for a client that has no stream open.
pub const HELD_MAX: usize = 64;
/// How long a held notification waits for a stream.
pub const HELD_TTL: Duration = Duration::from_secs(60);

/// A message waiting for a stream.
struct Held {
    until: Instant,
    msg: Bytes,
}

/// Moves what is held (and still wanted) onto `tx`, in order, while it has room.
fn flush(held: &mut VecDeque<Held>, tx: &mpsc::Sender<Bytes>) {
    let now = Instant::now();
    while let Some(h) = held.pop_front() {
        if h.until < now {
            continue;
        }
        if let Err(e) = tx.try_send(h.msg) {
            held.push_front(Held {
                until: h.until,
                msg: e.into_inner(),
            });
            return;
        }
    }
}

/// A call's stream offered to [`Session::deliver`]; withdrawn on drop.
pub struct AttachedCall {
    session: Weak<Session>,
    n: u64,
}

impl Drop for AttachedCall {
    fn drop(&mut self) {
        if let Some(s) = self.session.upgrade() {
            s.calls
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .retain(|c| c.0 != self.n);
        }
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

/// The most recent [`DELETED_KEPT`] deleted ids: looked up in O(1), the
/// oldest forgotten first.
#[derive(Default)]
struct Deleted {
    order: VecDeque<String>,
    ids: foldhash::HashSet<String>,
}

impl Deleted {
    fn insert(&mut self, id: &str) {
        if !self.ids.insert(id.to_owned()) {
            return;
        }
        if self.order.len() >= DELETED_KEPT {
            if let Some(old) = self.order.pop_front() {
                self.ids.remove(&old);
            }
        }
        self.order.push_back(id.to_owned());
    }
}

/// This worker's sessions.
#[derive(Default)]
pub struct Sessions {
    map: RwLock<foldhash::HashMap<String, Arc<Session>>>,
    deleted: Mutex<Deleted>,
    /// Per stream: how many events are kept, and how long (`None`: defaults).
    event_limits: Option<(usize, Duration)>,
    /// With Redis: every session's events are copied there, and an adopted
    /// session starts with what its previous owner stored.
    redis_events: OnceLock<Arc<RedisEvents>>,
    /// The registry, whose version a new session starts from (set at boot).
    registry: OnceLock<Arc<crate::gateway::registry::Registry>>,
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

    /// The registry new sessions see (set once, at boot).
    pub fn watch_registry(&self, registry: Arc<crate::gateway::registry::Registry>) {
        let _ = self.registry.set(registry);
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
        let s = Arc::new_cyclic(|me| Session {
            id,
            scope,
            principal,
            protocol_version: protocol_version.to_owned(),
            upstreams: Arc::new(UpstreamSet::listening_for(me.clone())),
            events: Arc::new(store),
            pending: Mutex::default(),
            get_stream: Mutex::default(),
            calls: Mutex::default(),
            held: Mutex::default(),
            next_client_request: AtomicU64::new(1),
            view_version: AtomicI64::new(
                self.registry
                    .get()
                    .map_or(i64::MIN, |r| r.snapshot().version),
            ),
            last_used: AtomicU64::new(unix_secs()),
            parked: OnceLock::new(),
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
            .ids
            .contains(id)
    }

    /// Ends a session and closes its upstream sessions.
    pub fn remove(&self, id: &str) -> Option<Arc<Session>> {
        {
            self.deleted
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .insert(id);
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

    /// Every live session.
    pub fn all(&self) -> Vec<Arc<Session>> {
        self.map
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .values()
            .cloned()
            .collect()
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

/// How long a mid-call request may wait for the client's answer: the call's
/// own deadline (the upstream timeout) ends the wait first.
const MID_CALL_WAIT: Duration = Duration::from_secs(3600);

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
            let Some(session) = &self.session else {
                return Err(ErrorObject::new(
                    jsonrpc::METHOD_NOT_FOUND,
                    format!("{} cannot reach this client: it has no session", r.method),
                ));
            };
            session.ask(r, self.tx.as_ref(), MID_CALL_WAIT).await
        })
    }
}

/// Receives what one upstream sends on its standalone stream for one
/// downstream session, and passes it on to the session's client.
pub struct Listener {
    pub session: Weak<Session>,
    /// How long the upstream's request may wait for the client's answer.
    pub wait: Duration,
    /// The gateway the upstream is, and where its list changes are reported
    /// ([`crate::gateway::catalog`]).
    pub gateway_id: String,
    pub list_changed: Option<mpsc::UnboundedSender<String>>,
}

impl ServerMessageHandler for Listener {
    fn on_notification(&self, n: Notification) -> BoxFuture<'_, ()> {
        if catalog::LIST_CHANGED.iter().any(|(m, _)| *m == n.method) {
            if let Some(tx) = &self.list_changed {
                let _ = tx.send(self.gateway_id.clone());
            }
        } else if let Some(session) = self.session.upgrade() {
            let msg = jsonrpc::encode_notification(&n.method, n.params.as_ref());
            session.deliver(Bytes::from(msg), Instant::now() + HELD_TTL);
        }
        Box::pin(async {})
    }

    fn on_request(&self, r: Request) -> BoxFuture<'_, Answer> {
        Box::pin(async move {
            if r.method == fleetgate_mcp::protocol::methods::PING {
                return Ok(json!({}));
            }
            let Some(session) = self.session.upgrade() else {
                return Err(ErrorObject::internal_error(format!(
                    "{}: the client's session has ended",
                    r.method
                )));
            };
            session.ask(r, None, self.wait).await
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn session() -> Arc<Session> {
        Sessions::default().create(
            "s1".into(),
            Scope::All,
            Principal::anonymous(),
            "2025-11-25",
        )
    }

    fn later() -> Instant {
        Instant::now() + HELD_TTL
    }

    fn b(s: &str) -> Bytes {
        Bytes::from(s.to_owned())
    }

    #[test]
    fn deleted_ids_are_remembered_up_to_the_bound_oldest_forgotten_first() {
        let mut d = Deleted::default();
        for i in 0..DELETED_KEPT + 2 {
            d.insert(&i.to_string());
        }
        d.insert("5"); // again: no second entry
        assert_eq!(d.order.len(), DELETED_KEPT);
        assert_eq!(d.ids.len(), DELETED_KEPT);
        assert!(!d.ids.contains("0") && !d.ids.contains("1"));
        assert!(d.ids.contains("2") && d.ids.contains(&(DELETED_KEPT + 1).to_string()));
    }

    #[test]
    fn messages_are_held_until_a_stream_opens_then_come_first_in_order() {
        let s = session();
        s.deliver(b("1"), later());
        s.deliver(b("2"), Instant::now() - Duration::from_secs(1)); // expired
        s.deliver(b("3"), later());
        let (tx, mut rx) = mpsc::channel(8);
        assert!(s.open_stream(tx));
        s.deliver(b("4"), later());
        let got: Vec<Bytes> = std::iter::from_fn(|| rx.try_recv().ok()).collect();
        assert_eq!(got, vec![b("1"), b("3"), b("4")]);
    }

    #[test]
    fn a_calls_stream_takes_them_while_no_get_stream_is_open_and_not_after_it_ends() {
        let s = session();
        let (tx, mut rx) = mpsc::channel(8);
        let attached = s.attach_call(&tx);
        s.deliver(b("during"), later());
        assert_eq!(rx.try_recv().ok(), Some(b("during")));
        drop(attached);
        s.deliver(b("after"), later());
        assert!(
            rx.try_recv().is_err(),
            "a finished call's stream gets nothing"
        );
        // Held for the next stream instead.
        let (get, mut get_rx) = mpsc::channel(8);
        assert!(s.open_stream(get));
        assert_eq!(get_rx.try_recv().ok(), Some(b("after")));
    }

    #[test]
    fn the_held_queue_is_bounded_oldest_dropped() {
        let s = session();
        for i in 0..HELD_MAX + 3 {
            s.deliver(Bytes::from(i.to_string()), later());
        }
        let (tx, mut rx) = mpsc::channel(HELD_MAX * 2);
        assert!(s.open_stream(tx));
        let got: Vec<Bytes> = std::iter::from_fn(|| rx.try_recv().ok()).collect();
        assert_eq!(got.len(), HELD_MAX);
        assert_eq!(got[0], b("3"));
    }

    #[tokio::test]
    async fn a_request_gets_a_session_id_and_the_clients_answer_or_an_error_in_time() {
        let s = session();
        let (tx, mut rx) = mpsc::channel(8);
        assert!(s.open_stream(tx));
        let req = |m: &str| Request {
            id: Id::Number(5),
            method: m.into(),
            params: None,
        };
        let asking = {
            let s = s.clone();
            tokio::spawn(
                async move { s.ask(req("roots/list"), None, Duration::from_secs(5)).await },
            )
        };
        let sent: Value = serde_json::from_slice(&rx.recv().await.unwrap()).unwrap();
        assert_eq!(sent["method"], "roots/list");
        let id = Id::String(sent["id"].as_str().unwrap().to_owned());
        assert!(matches!(&id, Id::String(i) if i.starts_with("fleetgate-")));
        assert!(s.answer(&id, Ok(json!({"roots": []}))));
        assert_eq!(asking.await.unwrap().unwrap(), json!({"roots": []}));
        // Nobody answers: an error naming the method, and nothing left waiting.
        let e = s
            .ask(req("elicitation/create"), None, Duration::from_millis(50))
            .await
            .unwrap_err();
        assert!(e.message.contains("elicitation/create"), "{e:?}");
        assert!(s.pending.lock().unwrap().is_empty());
    }
}
