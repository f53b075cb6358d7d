//! Upstream sessions: who opens them, who shares them (nobody), how they are reused.
//!
//! An [`UpstreamSet`] maps a key to one live upstream MCP session, opened lazily
//! (concurrent first calls wait for one `initialize`, they do not race to open
//! several) and replaced transparently when the upstream forgets it (404).
//!
//! - Each downstream MCP session owns a set keyed by gateway id: its upstream
//!   sessions are never shared with another client, and close with it.
//! - `/rpc` carries no session; it uses the worker's pool, keyed by principal and
//!   gateway: reused across calls, never shared between principals.

use crate::gateway::session::{Listener, Session};
use fleetgate_mcp::{
    NoopHandler, RequestOptions, ServerMessageHandler, UpstreamClient, UpstreamError,
    UpstreamSession,
};
use fleetgate_store::Gateway;
use http::{HeaderMap, HeaderName, HeaderValue};
use serde_json::value::RawValue;
use serde_json::Value;
use std::sync::{Arc, Mutex, PoisonError, Weak};
use std::time::{Duration, Instant};
use tokio::sync::OnceCell;

type Cell = Arc<OnceCell<Opened>>;

/// An open upstream session and what it was opened against: a gateway whose
/// URL, transport or auth headers changed since gets a new session (the old
/// one is closed), never requests sent to where it used to point.
#[derive(Clone)]
struct Opened {
    session: Arc<UpstreamSession>,
    url: String,
    transport: fleetgate_store::Transport,
    auth_headers: std::collections::BTreeMap<String, String>,
}

impl Opened {
    fn serves(&self, gateway: &Gateway) -> bool {
        self.url == gateway.url
            && self.transport == gateway.transport
            && self.auth_headers == gateway.auth_headers
    }
}

#[derive(Default)]
pub struct UpstreamSet {
    cells: Mutex<foldhash::HashMap<String, Cell>>,
    /// `(key, uri)` of each resource subscription made through this set,
    /// undone upstream when the set's sessions close.
    subscriptions: Mutex<std::collections::BTreeSet<(String, String)>>,
    /// The client's `logging/setLevel`, passed to every upstream session of
    /// the set that offers logging (those opened later too).
    log_level: Mutex<Option<String>>,
    /// The downstream session these upstream sessions serve: each one's
    /// standalone stream is read for it. `None`: the pool (no client to
    /// reach outside a call).
    listener: Option<Weak<Session>>,
}

impl UpstreamSet {
    /// The set of a downstream session.
    pub fn listening_for(session: Weak<Session>) -> UpstreamSet {
        UpstreamSet {
            cells: Mutex::default(),
            subscriptions: Mutex::default(),
            log_level: Mutex::default(),
            listener: Some(session),
        }
    }

    fn cell(&self, key: &str) -> Cell {
        let mut cells = self.cells.lock().unwrap_or_else(PoisonError::into_inner);
        cells.entry(key.to_owned()).or_default().clone()
    }

    /// Forgets `key` if it still maps to `cell` (a newer session stays).
    fn forget(&self, key: &str, cell: &Cell) {
        let mut cells = self.cells.lock().unwrap_or_else(PoisonError::into_inner);
        if cells.get(key).is_some_and(|c| Arc::ptr_eq(c, cell)) {
            cells.remove(key);
        }
    }

    /// Every open session, removed from the set (to close them).
    pub fn take_all(&self) -> Vec<Closing> {
        let mut cells = self.cells.lock().unwrap_or_else(PoisonError::into_inner);
        let mut subs = self
            .subscriptions
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let all = std::mem::take(&mut *subs);
        cells
            .drain()
            .filter_map(|(key, c)| {
                let session = c.get()?.session.clone();
                let subscribed = all
                    .iter()
                    .filter(|(k, _)| *k == key)
                    .map(|(_, uri)| uri.clone())
                    .collect();
                Some(Closing {
                    session,
                    subscribed,
                })
            })
            .collect()
    }

    /// Sets the logging level on every upstream session open now that
    /// offers logging, and remembers it for those opened later.
    pub async fn set_log_level(&self, level: &str) {
        *self
            .log_level
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = Some(level.to_owned());
        let open: Vec<Arc<UpstreamSession>> = self
            .cells
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .values()
            .filter_map(|c| c.get().map(|o| o.session.clone()))
            .collect();
        futures_util::future::join_all(open.iter().map(|s| send_log_level(s, level))).await;
    }

    /// Records a successful `resources/subscribe` (`on`) or `unsubscribe`
    /// of `uri` through the session `key`.
    pub fn note_subscription(&self, key: &str, uri: &str, on: bool) {
        let mut subs = self
            .subscriptions
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let entry = (key.to_owned(), uri.to_owned());
        if on {
            subs.insert(entry);
        } else {
            subs.remove(&entry);
        }
    }

    /// The session `key` leaves the set (to be closed), with its subscriptions.
    fn take(&self, key: &str, session: Arc<UpstreamSession>) -> Closing {
        let mut subs = self
            .subscriptions
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let subscribed = subs
            .iter()
            .filter(|(k, _)| k == key)
            .map(|(_, uri)| uri.clone())
            .collect::<Vec<_>>();
        subs.retain(|(k, _)| k != key);
        Closing {
            session,
            subscribed,
        }
    }

    pub fn len(&self) -> usize {
        self.cells
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .values()
            .filter(|c| c.initialized())
            .count()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Talks to upstream gateways.
pub struct Federation {
    pub client: UpstreamClient,
    pub timeout: Duration,
    /// `/rpc`'s pool: `{principal}\0{gateway id}` → session.
    pub pool: UpstreamSet,
    /// Where upstreams' list changes are reported (set once at boot:
    /// [`crate::gateway::catalog::spawn_refresher`]).
    pub list_changed: std::sync::OnceLock<tokio::sync::mpsc::UnboundedSender<String>>,
}

impl Federation {
    pub fn new(timeout: Duration) -> Federation {
        Federation {
            // fleetgate relays sampling, elicitation and roots to its clients, so it
            // declares them; a client that lacks one answers the relayed request
            // with an error, which reaches the upstream as such.
            client: UpstreamClient::new()
                .client_info("fleetgate", env!("CARGO_PKG_VERSION"))
                .capabilities(serde_json::json!({
                    "sampling": {},
                    "elicitation": {},
                    "roots": {"listChanged": false},
                })),
            timeout,
            pool: UpstreamSet::default(),
            list_changed: std::sync::OnceLock::new(),
        }
    }

    /// Opens a session to `gateway` (its auth headers plus the caller's
    /// passthrough headers).
    pub async fn open(
        &self,
        gateway: &Gateway,
        extra: &[(HeaderName, HeaderValue)],
    ) -> Result<UpstreamSession, UpstreamError> {
        let mut headers = HeaderMap::new();
        for (k, v) in &gateway.auth_headers {
            if let (Ok(k), Ok(v)) = (HeaderName::try_from(k.as_str()), HeaderValue::from_str(v)) {
                headers.insert(k, v);
            }
        }
        for (k, v) in extra {
            headers.insert(k.clone(), v.clone());
        }
        self.client
            .connect_with_transport(
                &gateway.url,
                upstream_transport(gateway.transport),
                headers,
                fleetgate_mcp::protocol::LATEST_STATEFUL_PROTOCOL_VERSION,
                self.timeout,
            )
            .await
    }

    /// Calls `method` on `gateway` through the session `set[key]`, opening it if
    /// needed and re-opening it once if the upstream forgot it. The whole of
    /// it (opening included) takes at most the upstream timeout: a request
    /// forwarded to this worker is answered before its forward gives up.
    #[allow(clippy::too_many_arguments)]
    pub async fn call(
        &self,
        set: &UpstreamSet,
        key: &str,
        gateway: &Gateway,
        extra: &[(HeaderName, HeaderValue)],
        method: &str,
        params: Option<Value>,
        handler: &dyn ServerMessageHandler,
    ) -> Result<Box<RawValue>, UpstreamError> {
        let deadline = Instant::now() + self.timeout;
        let timed_out = || UpstreamError::Timeout {
            url: gateway.url.clone(),
            after: self.timeout,
        };
        let mut retried = false;
        loop {
            let cell = set.cell(key);
            let opening = cell.get_or_try_init(|| async {
                // Boxed: opening is a large future, run once per session;
                // inline, every call's future would carry (and move) it.
                let session = Box::pin(self.open(gateway, extra)).await?;
                if let Some(owner) = &set.listener {
                    let listener = Listener {
                        session: owner.clone(),
                        wait: self.timeout,
                        gateway_id: gateway.id.clone(),
                        list_changed: self.list_changed.get().cloned(),
                    };
                    let listening = session.listen(Arc::new(listener)).await;
                    tracing::debug!(upstream = %gateway.url, ?listening, "upstream standalone stream");
                    let level = set.log_level.lock().unwrap_or_else(PoisonError::into_inner).clone();
                    if let Some(level) = level {
                        send_log_level(&session, &level).await;
                    }
                }
                Ok::<_, UpstreamError>(Opened {
                    session: Arc::new(session),
                    url: gateway.url.clone(),
                    transport: gateway.transport,
                    auth_headers: gateway.auth_headers.clone(),
                })
            });
            let opened = match cell.get() {
                Some(o) => o,
                None => tokio::time::timeout_at(deadline.into(), opening)
                    .await
                    .map_err(|_| timed_out())??,
            }
            .clone();
            if !opened.serves(gateway) {
                tracing::info!(upstream = %gateway.url, "gateway changed; opening a new upstream session");
                set.forget(key, &cell);
                close_all(vec![set.take(key, opened.session)]);
                continue;
            }
            let options = RequestOptions {
                timeout: Some(deadline.saturating_duration_since(Instant::now())),
                ..RequestOptions::default()
            };
            match opened
                .session
                .request_with(method, params.as_ref(), handler, &options)
                .await
            {
                Err(e) if e.is_session_expired() && !retried => {
                    tracing::info!(upstream = %gateway.url, "upstream session expired; opening a new one");
                    set.forget(key, &cell);
                    retried = true;
                }
                Err(UpstreamError::Timeout { url, .. }) => {
                    return Err(UpstreamError::Timeout {
                        url,
                        after: self.timeout,
                    })
                }
                other => return other,
            }
        }
    }
}

/// The client's name for a stored transport. For `SSE` the gateway's URL is
/// the upstream's SSE endpoint (`http://host/sse`, as ContextForge users
/// register it).
pub fn upstream_transport(t: fleetgate_store::Transport) -> fleetgate_mcp::Transport {
    match t {
        fleetgate_store::Transport::StreamableHttp => fleetgate_mcp::Transport::StreamableHttp,
        fleetgate_store::Transport::Sse => fleetgate_mcp::Transport::Sse,
    }
}

/// `logging/setLevel` to an upstream that offers logging (a refusal is
/// only logged: the client's own request succeeded at the gateway).
async fn send_log_level(s: &UpstreamSession, level: &str) {
    if s.server_capabilities().get("logging").is_none() {
        return;
    }
    let params = serde_json::json!({ "level": level });
    if let Err(e) = s
        .request("logging/setLevel", Some(params), &NoopHandler)
        .await
    {
        tracing::debug!(upstream = s.url(), error = %e, "logging/setLevel refused upstream");
    }
}

/// An upstream session on its way out, and the resources subscribed through it.
pub struct Closing {
    pub session: Arc<UpstreamSession>,
    pub subscribed: Vec<String>,
}

/// Closes upstream sessions in the background: each subscription is undone
/// (`resources/unsubscribe`), then the session ends (DELETE).
pub fn close_all(sessions: Vec<Closing>) {
    if sessions.is_empty() {
        return;
    }
    tokio::spawn(async move {
        for c in sessions {
            for uri in c.subscribed {
                let params = serde_json::json!({ "uri": uri });
                let undone = c
                    .session
                    .request("resources/unsubscribe", Some(params), &NoopHandler)
                    .await;
                if let Err(e) = undone {
                    tracing::debug!(upstream = c.session.url(), %uri, error = %e, "resources/unsubscribe at session end failed");
                }
            }
            let _ = c.session.close().await;
        }
    });
}
