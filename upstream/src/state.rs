//! Server state: configuration, sessions, SSE streams (with replay for resumption) and
//! the routing of server-to-client requests.

use std::collections::hash_map::RandomState;
use std::collections::{HashMap, HashSet};
use std::hash::{BuildHasher, Hasher};
use std::sync::atomic::{AtomicU64, AtomicU8, Ordering::Relaxed};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use bytes::Bytes;
use futures_util::future::AbortHandle;
use serde_json::Value;
use tokio::sync::{broadcast, mpsc, oneshot, watch, Notify};

use crate::catalog::Catalog;
use crate::rpc;
use crate::stats::Stats;
use crate::{lock, read, write};

/// Protocol versions served with the stateful (initialize + session) lifecycle, newest first.
pub const STATEFUL_VERSIONS: &[&str] = &["2025-11-25", "2025-06-18", "2025-03-26", "2024-11-05"];
/// The stateless draft revision (SEP-2575).
pub const DRAFT_VERSION: &str = "2026-07-28";

pub const LOG_LEVELS: &[&str] = &[
    "debug",
    "info",
    "notice",
    "warning",
    "error",
    "critical",
    "alert",
    "emergency",
];

#[derive(Clone, Debug)]
pub struct Config {
    pub name: String,
    pub version: String,
    pub sse: bool,
    /// Also serve the legacy HTTP+SSE transport (`GET /sse`, `POST /messages`).
    pub legacy_sse: bool,
    pub tools_prefix: String,
    /// `None`: no Host/Origin check. `Some(list)`: allowed host names (without port).
    pub allowed_hosts: Option<Vec<String>>,
    pub sse_retry_ms: u64,
    pub client_request_timeout: Duration,
    pub stateless: bool,
    /// Also serve the `initialize`-based era (default). Off: a 2026-07-28-only
    /// server, which refuses `initialize` and lists only that version.
    pub stateful: bool,
    /// Server-to-client requests of tools go on the session's standalone GET stream,
    /// unrelated to the call (as the reference TypeScript SDK server sends them).
    pub standalone_requests: bool,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            name: "fleetgate-test-upstream".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            sse: false,
            legacy_sse: false,
            tools_prefix: String::new(),
            allowed_hosts: Some(vec!["localhost".into(), "127.0.0.1".into(), "[::1]".into()]),
            sse_retry_ms: 500,
            client_request_timeout: Duration::from_secs(60),
            stateless: true,
            stateful: true,
            standalone_requests: false,
        }
    }
}

/// A change announced to `subscriptions/listen` streams (stateless draft):
/// a list, or a resource (to the streams subscribed to its URI).
#[derive(Clone, Debug)]
pub enum ListChange {
    Tools,
    Prompts,
    Resources,
    Updated(Arc<str>),
    /// A task's new status, as `tasks/get` would give it (to the streams
    /// whose `taskIds` hold it).
    Task(Arc<str>, Arc<serde_json::Value>),
}

pub struct Shared {
    pub cfg: Config,
    pub list_changes: broadcast::Sender<ListChange>,
    /// Becomes `true` when the server stops: long-lived streams end.
    pub stopping: watch::Sender<bool>,
    /// Key for signing MRTR `requestState`s.
    pub mac_key: RandomState,
    pub catalog: Catalog,
    /// `reveal_tool` was called: tools/list carries [`crate::catalog::REVEALED`].
    pub revealed: std::sync::atomic::AtomicBool,
    pub stats: Stats,
    /// Tasks (the tasks extension, 2026-07-28 era).
    pub tasks: crate::tasks::Store,
    pub sessions: RwLock<HashMap<Arc<str>, Arc<Session>>>,
    /// Legacy SSE connections whose `initialize` has not arrived yet: their streams.
    pub legacy_pending: Mutex<HashMap<Arc<str>, StreamTx>>,
    ids: Mutex<IdGen>,
}

struct IdGen {
    counter: u64,
    seed: RandomState,
}

impl Shared {
    pub fn new(cfg: Config) -> Self {
        let catalog = Catalog::new(&cfg.tools_prefix);
        let stats = Stats::new(catalog.tool_names.len());
        Self {
            cfg,
            list_changes: broadcast::channel(64).0,
            stopping: watch::channel(false).0,
            mac_key: RandomState::new(),
            tasks: crate::tasks::Store::default(),
            catalog,
            revealed: std::sync::atomic::AtomicBool::new(false),
            stats,
            sessions: RwLock::new(HashMap::new()),
            legacy_pending: Mutex::new(HashMap::new()),
            ids: Mutex::new(IdGen {
                counter: 0,
                seed: RandomState::new(),
            }),
        }
    }

    /// A fresh, unguessable-enough session id: 32 lower-case hex characters.
    pub fn new_session_id(&self) -> String {
        let mut g = lock(&self.ids);
        g.counter += 1;
        let mut out = String::with_capacity(32);
        for salt in [0x9e37_79b9_7f4a_7c15u64, 0xc2b2_ae3d_27d4_eb4f] {
            let mut h = g.seed.build_hasher();
            h.write_u64(g.counter);
            h.write_u64(salt);
            h.write_u128(
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map(|d| d.as_nanos())
                    .unwrap_or(0),
            );
            out.push_str(&format!("{:016x}", h.finish()));
        }
        out
    }

    #[inline]
    pub fn session(&self, id: &str) -> Option<Arc<Session>> {
        read(&self.sessions).get(id).cloned()
    }

    pub fn live_sessions(&self) -> usize {
        read(&self.sessions).len()
    }

    pub fn remove_session(&self, id: &str) -> Option<Arc<Session>> {
        let s = write(&self.sessions).remove(id);
        if let Some(s) = &s {
            s.close();
        }
        s
    }

    /// End every session: their streams end, their tasks are aborted.
    pub fn close_all(&self) {
        lock(&self.legacy_pending).clear();
        let all: Vec<_> = write(&self.sessions).drain().map(|(_, s)| s).collect();
        for s in all {
            s.close();
        }
    }
}

#[derive(Clone, Copy, Debug, Default)]
pub struct ClientCaps {
    pub sampling: bool,
    pub elicitation: bool,
}

impl ClientCaps {
    pub fn from_value(caps: Option<&Value>) -> Self {
        let has = |k: &str| caps.and_then(|c| c.get(k)).is_some_and(|v| !v.is_null());
        Self {
            sampling: has("sampling"),
            elicitation: has("elicitation"),
        }
    }
}

pub type StreamTx = mpsc::UnboundedSender<Bytes>;

pub struct Session {
    pub version: &'static str,
    pub caps: ClientCaps,
    /// Index into [`LOG_LEVELS`] of the minimum level sent.
    pub log_level: AtomicU8,
    next: AtomicU64,
    state: Mutex<SessionState>,
    /// Woken whenever a standalone stream is opened or attached.
    standalone_opened: Notify,
}

#[derive(Default)]
struct SessionState {
    closed: bool,
    standalone: Option<StreamTx>,
    /// Every message sent on the standalone stream (ids `g-N`, N = index + 1),
    /// kept for a client resuming it with `Last-Event-ID`, as an SDK server
    /// with an event store does; a message sent while no stream is open is
    /// kept too.
    standalone_log: Vec<Bytes>,
    streams: HashMap<u64, StreamLog>,
    pending: HashMap<String, oneshot::Sender<Value>>,
    inflight: HashMap<String, (AbortHandle, Option<u64>)>,
    subscriptions: HashSet<String>,
}

/// A resumable SSE stream (one per streamed POST response): the events sent so far (their
/// ids are `STREAM-SEQ`, SEQ = index + 1), and the connection currently receiving them.
struct StreamLog {
    events: Vec<Bytes>,
    live: Option<StreamTx>,
    done: bool,
}

pub enum Resume {
    /// Replay these frames, then keep receiving on the returned channel (if `Some`).
    Stream(Vec<Bytes>, Option<mpsc::UnboundedReceiver<Bytes>>),
    Unknown,
}

impl Session {
    pub fn new(version: &'static str, caps: ClientCaps) -> Self {
        Self {
            version,
            caps,
            log_level: AtomicU8::new(0),
            next: AtomicU64::new(1),
            state: Mutex::new(SessionState::default()),
            standalone_opened: Notify::new(),
        }
    }

    /// Whether streams opened for this session get a priming event (SEP-1699); only
    /// clients speaking 2025-11-25 or later expect an event with empty data.
    pub fn primes(&self) -> bool {
        self.version >= "2025-11-25"
    }

    fn next_id(&self) -> u64 {
        self.next.fetch_add(1, Relaxed)
    }

    fn close(&self) {
        let mut st = lock(&self.state);
        st.closed = true;
        st.standalone = None;
        st.streams.clear();
        st.pending.clear();
        for (_, (h, _)) in st.inflight.drain() {
            h.abort();
        }
    }

    /// Open the standalone GET stream. `None` if one is already open (409).
    pub fn open_standalone(&self) -> Option<mpsc::UnboundedReceiver<Bytes>> {
        let mut st = lock(&self.state);
        if st.closed || st.standalone.as_ref().is_some_and(|tx| !tx.is_closed()) {
            return None;
        }
        let (tx, rx) = mpsc::unbounded_channel();
        st.standalone = Some(tx);
        self.standalone_opened.notify_waiters();
        Some(rx)
    }

    /// Ends the standalone GET stream (the client may open another).
    pub fn end_standalone(&self) -> bool {
        lock(&self.state).standalone.take().is_some()
    }

    /// Use `tx` as the standalone stream (a legacy SSE connection's stream).
    pub fn attach_standalone(&self, tx: StreamTx) {
        let mut st = lock(&self.state);
        if !st.closed {
            st.standalone = Some(tx);
            self.standalone_opened.notify_waiters();
        }
    }

    /// Send a message on the standalone GET stream, if one is open (kept
    /// for a resuming client either way). True if a live stream took it.
    pub fn send_standalone(&self, msg: &[u8]) -> bool {
        let mut st = lock(&self.state);
        // Kept for the session's life: a test server's sessions are short.
        st.standalone_log.push(Bytes::copy_from_slice(msg));
        let id = format!("g-{}", st.standalone_log.len());
        match &st.standalone {
            Some(tx) => tx.send(rpc::sse_frame(Some(&id), msg)).is_ok(),
            None => false,
        }
    }

    /// Resume the standalone stream after event `last_event_id` (`g-N`): the
    /// messages sent since, then the stream goes on live. `None`: not such
    /// an id (or a stream is open).
    pub fn resume_standalone(
        &self,
        last_event_id: &str,
    ) -> Option<(Vec<Bytes>, mpsc::UnboundedReceiver<Bytes>)> {
        let seen: usize = last_event_id.strip_prefix("g-")?.parse().ok()?;
        let mut st = lock(&self.state);
        if st.closed || st.standalone.as_ref().is_some_and(|tx| !tx.is_closed()) {
            return None;
        }
        let replay = st
            .standalone_log
            .iter()
            .enumerate()
            .skip(seen)
            .map(|(i, m)| rpc::sse_frame(Some(&format!("g-{}", i + 1)), m))
            .collect();
        let (tx, rx) = mpsc::unbounded_channel();
        st.standalone = Some(tx);
        self.standalone_opened.notify_waiters();
        Some((replay, rx))
    }

    /// Send a message on the standalone GET stream, waiting up to `wait` for the client
    /// to open one if none is open yet.
    pub async fn send_standalone_within(&self, msg: &[u8], wait: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            // Registered before the attempt, so an opening between the two is not missed.
            let opened = self.standalone_opened.notified();
            tokio::pin!(opened);
            opened.as_mut().enable();
            if self.send_standalone(msg) {
                return true;
            }
            if tokio::time::timeout_at(deadline, opened).await.is_err() {
                return false;
            }
        }
    }

    /// Open a resumable stream for a POST response; returns its id and receiver.
    pub fn open_stream(&self, retry_ms: u64) -> (u64, mpsc::UnboundedReceiver<Bytes>) {
        let sid = self.next_id();
        let (tx, rx) = mpsc::unbounded_channel();
        if self.primes() {
            let _ = tx.send(rpc::sse_priming(&format!("{sid}-0"), retry_ms));
        }
        lock(&self.state).streams.insert(
            sid,
            StreamLog {
                events: Vec::new(),
                live: Some(tx),
                done: false,
            },
        );
        (sid, rx)
    }

    /// Append a message to stream `sid` and deliver it if a connection is attached.
    /// With `last`, the stream is complete: its connection is ended.
    pub fn stream_send(&self, sid: u64, msg: &[u8], last: bool) {
        let mut st = lock(&self.state);
        let Some(log) = st.streams.get_mut(&sid) else {
            return;
        };
        let seq = log.events.len() + 1;
        let frame = rpc::sse_frame(Some(&format!("{sid}-{seq}")), msg);
        let delivered = match &log.live {
            Some(tx) => tx.send(frame.clone()).is_ok(),
            None => false,
        };
        if !delivered {
            log.live = None;
        }
        if last {
            log.done = true;
            log.live = None;
            if delivered {
                // Everything reached a connection; nothing left to resume.
                st.streams.remove(&sid);
                return;
            }
        }
        log.events.push(frame);
    }

    /// End the connection carrying stream `sid` without completing the stream: the
    /// client is expected to resume it with `Last-Event-ID`.
    pub fn stream_detach(&self, sid: u64) {
        if let Some(log) = lock(&self.state).streams.get_mut(&sid) {
            log.live = None;
        }
    }

    /// Resume from `Last-Event-ID: STREAM-SEQ`.
    pub fn resume(&self, last_event_id: &str) -> Resume {
        let parsed = last_event_id
            .split_once('-')
            .and_then(|(s, n)| Some((s.parse::<u64>().ok()?, n.parse::<usize>().ok()?)));
        let Some((sid, seq)) = parsed else {
            return Resume::Unknown;
        };
        let mut st = lock(&self.state);
        let Some(log) = st.streams.get_mut(&sid) else {
            return Resume::Unknown;
        };
        let replay: Vec<Bytes> = log.events.iter().skip(seq).cloned().collect();
        if log.done {
            st.streams.remove(&sid);
            return Resume::Stream(replay, None);
        }
        let (tx, rx) = mpsc::unbounded_channel();
        log.live = Some(tx);
        Resume::Stream(replay, Some(rx))
    }

    /// Register a server-to-client request; returns its id.
    pub fn register_pending(&self) -> (Value, oneshot::Receiver<Value>) {
        let id = Value::String(format!("srv-{}", self.next_id()));
        let (tx, rx) = oneshot::channel();
        lock(&self.state).pending.insert(rpc::id_key(&id), tx);
        (id, rx)
    }

    pub fn drop_pending(&self, id: &Value) {
        lock(&self.state).pending.remove(&rpc::id_key(id));
    }

    /// Route a client's response (the whole message) to the waiting request.
    pub fn deliver_response(&self, id: &Value, message: Value) -> bool {
        let tx = lock(&self.state).pending.remove(&rpc::id_key(id));
        match tx {
            Some(tx) => tx.send(message).is_ok(),
            None => false,
        }
    }

    pub fn register_inflight(&self, key: String, handle: AbortHandle, stream: Option<u64>) {
        let mut st = lock(&self.state);
        if st.closed {
            handle.abort();
        } else {
            st.inflight.insert(key, (handle, stream));
        }
    }

    pub fn finish_inflight(&self, key: &str) {
        lock(&self.state).inflight.remove(key);
    }

    /// `notifications/cancelled`: abort the task; its stream (if any) ends with no response.
    pub fn cancel(&self, key: &str) {
        let mut st = lock(&self.state);
        if let Some((h, stream)) = st.inflight.remove(key) {
            h.abort();
            if let Some(sid) = stream {
                st.streams.remove(&sid);
            }
        }
    }

    pub fn subscribe(&self, uri: &str, on: bool) {
        let mut st = lock(&self.state);
        if on {
            st.subscriptions.insert(uri.to_owned());
        } else {
            st.subscriptions.remove(uri);
        }
    }

    /// Whether a log message at `level` (an index into [`LOG_LEVELS`]) passes the
    /// session's `logging/setLevel` floor.
    pub fn logs(&self, level: usize) -> bool {
        level >= usize::from(self.log_level.load(Relaxed))
    }

    pub fn is_subscribed(&self, uri: &str) -> bool {
        lock(&self.state).subscriptions.contains(uri)
    }
}
