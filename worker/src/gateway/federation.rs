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
//!
//! # Eras
//! Each upstream's era is negotiated once and remembered per worker
//! ([`Federation::eras`], keyed by what reaches it: URL, transport, auth
//! headers): `server/discover` first, falling back to `initialize` on the
//! errors the 2026-07-28 spec names. An upstream that speaks both eras is
//! used in the era of each caller: a 2025 client keeps its own upstream
//! session (its state, its standalone stream, its requests mid-call), a
//! 2026-07-28 client goes stateless; what only the modern era offers (the
//! 2025 era answers "not found") is called there for a 2025 client too,
//! its `input_required` rounds resolved through that client. Discovery
//! lists such an upstream in the modern era, whose catalog holds both.
//! Discovery (registration, refresh, re-registration) always probes
//! afresh and records what it found; a call
//! whose answer says the era changed forgets it and is retried once after a
//! new probe. A modern (2026-07-28) upstream has no session: "opening" one
//! costs no request (the session object carries the remembered
//! `server/discover` answer, `_meta` goes on every request), its standalone
//! stream is a `subscriptions/listen` stream, `resources/subscribe` becomes
//! that stream's filter, and a tool's `x-mcp-header` parameters (from its
//! `inputSchema` in the registry) go out as `Mcp-Param-*` headers.

use crate::gateway::registry::Registry;
use crate::gateway::scope::Scope;
use crate::gateway::session::{Listener, Session};
use fleetgate_mcp::jsonrpc::{self, ErrorObject};
use fleetgate_mcp::protocol::{
    error_codes, LATEST_STATEFUL_PROTOCOL_VERSION, STATELESS_PROTOCOL_VERSION,
};
use fleetgate_mcp::upstream::{Listening, ParamHeaders};
use fleetgate_mcp::{
    NoopHandler, RequestOptions, ServerMessageHandler, UpstreamClient, UpstreamError,
    UpstreamSession,
};
use fleetgate_store::Gateway;
use http::{HeaderMap, HeaderName, HeaderValue};
use serde_json::value::RawValue;
use serde_json::Value;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
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
    /// The upstream speaks both eras (this session is in one of them).
    dual: bool,
    /// [`Federation::era_epoch`] when it was opened.
    era_epoch: u64,
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

/// What an upstream speaks.
#[derive(Debug, Clone)]
pub enum Era {
    /// 2026-07-28 and later: no sessions; its `server/discover` answer.
    Modern(Arc<Value>),
    /// `initialize`-based (2025-11-25 and earlier, or the legacy SSE
    /// transport).
    Legacy,
}

/// Whether a `server/discover` answer lists an `initialize`-based version.
fn speaks_2025(discovered: &Value) -> bool {
    discovered
        .get("supportedVersions")
        .and_then(Value::as_array)
        .is_some_and(|v| {
            v.iter()
                .filter_map(Value::as_str)
                .any(|v| fleetgate_mcp::protocol::STATEFUL_PROTOCOL_VERSIONS.contains(&v))
        })
}

/// Where an era is remembered: what reaches the upstream.
fn era_key(
    url: &str,
    transport: fleetgate_store::Transport,
    auth_headers: &BTreeMap<String, String>,
) -> String {
    let mut key = format!("{transport:?}\0{url}");
    for (k, v) in auth_headers {
        key.push('\0');
        key.push_str(k);
        key.push('\0');
        key.push_str(v);
    }
    key
}

/// The mirrored parameters of the tools that have some, by
/// `(gateway id, upstream tool name)`, for one registry version.
#[derive(Default)]
struct ParamIndex {
    version: Option<i64>,
    tools: foldhash::HashMap<(String, String), Arc<ParamHeaders>>,
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
    /// Each upstream's era (see the module docs).
    eras: Mutex<foldhash::HashMap<String, Era>>,
    /// Moves whenever a remembered era changes or is forgotten: a call
    /// looks its upstream's era up again only then (not on every call).
    era_epoch: AtomicU64,
    /// The registry, whose tools' `inputSchema`s say which call arguments
    /// go out as `Mcp-Param-*` headers (set once at boot; without it none
    /// do).
    pub registry: std::sync::OnceLock<Arc<Registry>>,
    params: Mutex<ParamIndex>,
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
            eras: Mutex::default(),
            era_epoch: AtomicU64::new(0),
            registry: std::sync::OnceLock::new(),
            params: Mutex::default(),
        }
    }

    /// The era remembered for what `gateway` points at.
    pub fn era(&self, gateway: &Gateway) -> Option<Era> {
        let key = era_key(&gateway.url, gateway.transport, &gateway.auth_headers);
        self.eras
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&key)
            .cloned()
    }

    fn forget_era(&self, gateway: &Gateway) {
        let key = era_key(&gateway.url, gateway.transport, &gateway.auth_headers);
        let forgotten = self
            .eras
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&key);
        if forgotten.is_some() {
            self.era_epoch.fetch_add(1, Ordering::AcqRel);
        }
    }

    /// Connects to an upstream whose era is not known: `server/discover`
    /// first, `initialize` if it is a legacy server (the client library's
    /// probe); the era found is remembered. An upstream that speaks both
    /// eras is remembered as modern and connected in the era `modern` asks
    /// for (discovery asks for the modern one: it offers everything).
    pub async fn connect_probing(
        &self,
        url: &str,
        transport: fleetgate_store::Transport,
        auth_headers: &BTreeMap<String, String>,
        headers: HeaderMap,
        modern: bool,
    ) -> Result<UpstreamSession, UpstreamError> {
        let probed = self
            .client
            .connect_with_transport(
                url,
                upstream_transport(transport),
                headers.clone(),
                STATELESS_PROTOCOL_VERSION,
                self.timeout,
            )
            .await?;
        let era = if probed.is_stateless() {
            Era::Modern(Arc::new(probed.init_result().clone()))
        } else {
            Era::Legacy
        };
        let session = if probed.is_stateless() && !modern && speaks_2025(probed.init_result()) {
            self.client
                .connect_with_transport(
                    url,
                    upstream_transport(transport),
                    headers,
                    LATEST_STATEFUL_PROTOCOL_VERSION,
                    self.timeout,
                )
                .await?
        } else {
            probed
        };
        tracing::debug!(
            upstream = url,
            era = if matches!(era, Era::Modern(_)) {
                "modern"
            } else {
                "legacy"
            },
            version = session.protocol_version(),
            "upstream era negotiated"
        );
        let is_modern = matches!(era, Era::Modern(_));
        let before = self
            .eras
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(era_key(url, transport, auth_headers), era);
        if before.is_some_and(|b| matches!(b, Era::Modern(_)) != is_modern) {
            self.era_epoch.fetch_add(1, Ordering::AcqRel);
        }
        Ok(session)
    }

    /// Opens a session to `gateway` (its auth headers plus the caller's
    /// passthrough headers), in the era remembered for it (probing it if
    /// none is); one that speaks both eras, in the era `modern` asks for. A
    /// legacy upstream that refuses `initialize` may have become modern: it
    /// is probed again.
    pub async fn open(
        &self,
        gateway: &Gateway,
        extra: &[(HeaderName, HeaderValue)],
        modern: bool,
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
        let probe = |headers| {
            self.connect_probing(
                &gateway.url,
                gateway.transport,
                &gateway.auth_headers,
                headers,
                modern,
            )
        };
        let opened = match self.era(gateway) {
            None => probe(headers).await,
            Some(Era::Modern(discovered)) if modern || !speaks_2025(&discovered) => self
                .client
                .stateless_session(&gateway.url, &headers, &discovered, self.timeout),
            Some(Era::Modern(_) | Era::Legacy) => {
                let connected = self
                    .client
                    .connect_with_transport(
                        &gateway.url,
                        upstream_transport(gateway.transport),
                        headers.clone(),
                        LATEST_STATEFUL_PROTOCOL_VERSION,
                        self.timeout,
                    )
                    .await;
                match connected {
                    Err(e) if refused_by_era(&e) => {
                        tracing::info!(gateway = %gateway.name, error = %e, "a legacy upstream refused initialize; probing its era again");
                        self.forget_era(gateway);
                        probe(headers).await
                    }
                    other => other,
                }
            }
        };
        opened.map_err(|e| name_gateway(e, gateway))
    }

    /// Whether `gateway` is remembered as speaking both eras.
    fn dual(&self, gateway: &Gateway) -> bool {
        matches!(self.era(gateway), Some(Era::Modern(d)) if speaks_2025(&d))
    }

    /// The `Mcp-Param-*` headers of a `tools/call` of `gateway`'s tool
    /// (from its `inputSchema` in the registry).
    fn param_headers(&self, gateway: &Gateway, params: Option<&Value>) -> HeaderMap {
        let Some(params) = params else {
            return HeaderMap::new();
        };
        let Some(name) = params.get("name").and_then(Value::as_str) else {
            return HeaderMap::new();
        };
        self.mirrored(&gateway.id, name)
            .map_or_else(HeaderMap::new, |p| p.headers(params.get("arguments")))
    }

    /// The mirrored (`x-mcp-header`) parameters of the tool `tool` (its
    /// upstream name) of the gateway `gateway_id`, if it has some: read
    /// from the registry once per registry version.
    pub fn mirrored(&self, gateway_id: &str, tool: &str) -> Option<Arc<ParamHeaders>> {
        let registry = self.registry.get()?;
        let snap = registry.snapshot();
        let mut index = self.params.lock().unwrap_or_else(PoisonError::into_inner);
        if index.version != Some(snap.version) {
            index.version = Some(snap.version);
            index.tools.clear();
            for t in snap.scope(&Scope::All).map_or(&[][..], |i| &i.tools[..]) {
                if let Ok(p) = ParamHeaders::of(&t.item.input_schema) {
                    if !p.is_empty() {
                        let key = (t.item.gateway_id.clone(), t.item.original_name.clone());
                        index.tools.insert(key, Arc::new(p));
                    }
                }
            }
        }
        index
            .tools
            .get(&(gateway_id.to_owned(), tool.to_owned()))
            .cloned()
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
        // The era the caller speaks; a 2025 caller's call of what only the
        // modern era of a dual-era upstream offers goes there (its input
        // requests resolved through the caller).
        let mut modern = handler.takes_input_required();
        // A dual-era upstream's sessions of the era a caller does not speak
        // live under another key of the same set (made only when needed).
        let mut other_key = None;
        let mut k: &str = key;
        loop {
            let cell = set.cell(k);
            let epoch = self.era_epoch.load(Ordering::Acquire);
            let wants_modern = modern;
            let opening = cell.get_or_try_init(|| async move {
                // Boxed: opening is a large future, run once per session;
                // inline, every call's future would carry (and move) it.
                let session = Box::pin(self.open(gateway, extra, wants_modern)).await?;
                let dual = self.dual(gateway);
                // A dual-era upstream's updates come once, on its 2025-era
                // session's stream.
                let listens = !(dual && session.is_stateless());
                if let (Some(owner), true) = (&set.listener, listens) {
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
                    dual,
                    era_epoch: epoch,
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
            let era_moved = opened.era_epoch != self.era_epoch.load(Ordering::Acquire)
                && self.era(gateway).is_some_and(|era| match era {
                    Era::Modern(d) => !speaks_2025(&d) && !opened.session.is_stateless(),
                    Era::Legacy => opened.session.is_stateless(),
                });
            if !opened.serves(gateway) || era_moved {
                tracing::info!(upstream = %gateway.url, "gateway changed; opening a new upstream session");
                set.forget(k, &cell);
                close_all(vec![set.take(k, opened.session)]);
                continue;
            }
            let stateless = opened.session.is_stateless();
            if opened.dual && stateless != modern {
                if k == key {
                    k = other_key.insert(format!("{key}\0other-era"));
                } else {
                    // Both keys hold the same era (one was reopened by a
                    // caller of the other): this one is reopened in ours.
                    set.forget(k, &cell);
                    close_all(vec![set.take(k, opened.session)]);
                }
                continue;
            }
            if stateless && matches!(method, "resources/subscribe" | "resources/unsubscribe") {
                return self
                    .listen_for(set, &opened.session, gateway, method, params.as_ref())
                    .await;
            }
            let options = RequestOptions {
                timeout: Some(deadline.saturating_duration_since(Instant::now())),
                headers: if stateless && method == "tools/call" {
                    self.param_headers(gateway, params.as_ref())
                } else {
                    HeaderMap::new()
                },
                resolve_input_required: !handler.takes_input_required(),
            };
            match opened
                .session
                .request_with(method, params.as_ref(), handler, &options)
                .await
            {
                Err(e) if e.is_session_expired() && !retried => {
                    tracing::info!(upstream = %gateway.url, "upstream session expired; opening a new one");
                    set.forget(k, &cell);
                    retried = true;
                }
                Err(e) if stateless && !retried && answered_by_legacy(&e) => {
                    tracing::info!(upstream = %gateway.url, error = %e, "a modern upstream answered as a legacy one; probing its era again");
                    self.forget_era(gateway);
                    set.forget(k, &cell);
                    retried = true;
                }
                // Refused, so not run: what the 2025 era does not know may
                // be the modern era's alone.
                Err(e) if opened.dual && !modern && only_in_modern_era(method, &e) => {
                    modern = true;
                }
                Err(UpstreamError::Timeout { url, .. }) => {
                    return Err(UpstreamError::Timeout {
                        url,
                        after: self.timeout,
                    })
                }
                Err(e) => {
                    if stateless && code_of(&e) == Some(error_codes::HEADER_MISMATCH) {
                        // The spec's remedy: list the tools again (their
                        // `x-mcp-header`s may have changed).
                        if let Some(tx) = self.list_changed.get() {
                            let _ = tx.send(gateway.id.clone());
                        }
                    }
                    return Err(name_gateway(e, gateway));
                }
                ok => return ok,
            }
        }
    }
}

impl Federation {
    /// `resources/subscribe`/`unsubscribe` of a downstream client, for a
    /// modern upstream: the 2026-07-28 revision removed them, and the
    /// session's `subscriptions/listen` filter carries the URI instead.
    /// Answered `{}` as the legacy methods are; pooled sessions (no client
    /// to deliver to) only remember it.
    async fn listen_for(
        &self,
        set: &UpstreamSet,
        session: &UpstreamSession,
        gateway: &Gateway,
        method: &str,
        params: Option<&Value>,
    ) -> Result<Box<RawValue>, UpstreamError> {
        let Some(uri) = params.and_then(|p| p.get("uri")).and_then(Value::as_str) else {
            return Err(UpstreamError::Rpc {
                url: gateway.url.clone(),
                error: ErrorObject::new(
                    jsonrpc::INVALID_PARAMS,
                    format!("{method} needs params.uri (a string)"),
                ),
            });
        };
        let on = method == "resources/subscribe";
        let listening = session.subscribe_resource(uri, on).await;
        if on && set.listener.is_some() && listening == Listening::NotOffered {
            return Err(UpstreamError::Rpc {
                url: gateway.url.clone(),
                error: ErrorObject::new(
                    jsonrpc::METHOD_NOT_FOUND,
                    format!(
                        "gateway {:?} ({}) speaks MCP {} and does not offer subscriptions/listen, so updates of {uri} cannot be subscribed to",
                        gateway.name,
                        gateway.url,
                        session.protocol_version()
                    ),
                ),
            });
        }
        Ok(jsonrpc::raw(&serde_json::json!({})))
    }
}

/// Whether `e`, a 2025-era answer to `method`, says the name asked for is
/// unknown there (as SDK servers answer an unknown tool, prompt or
/// resource): it may exist in the modern era of the same upstream.
fn only_in_modern_era(method: &str, e: &UpstreamError) -> bool {
    crate::gateway::mrtr::MAY_ASK.contains(&method)
        && matches!(
            code_of(e),
            Some(
                jsonrpc::METHOD_NOT_FOUND
                    | jsonrpc::INVALID_PARAMS
                    | crate::gateway::error::RESOURCE_NOT_FOUND
            )
        )
}

/// The JSON-RPC error code of an upstream's error answer.
fn code_of(e: &UpstreamError) -> Option<i64> {
    match e {
        UpstreamError::Rpc { error, .. } => Some(error.code),
        _ => None,
    }
}

/// An answer to a modern request that a legacy server gives: a `400`,
/// `404` or `405` without a JSON-RPC error (as the spec's backward
/// compatibility reads it), or an unsupported-version error whose
/// `supported` versions no longer hold the modern one. Such answers come
/// before anything is run, so the request may be sent again.
fn answered_by_legacy(e: &UpstreamError) -> bool {
    match e {
        UpstreamError::Http {
            status: 400 | 404 | 405,
            ..
        } => true,
        UpstreamError::Rpc { error, .. } => {
            error.code == error_codes::UNSUPPORTED_PROTOCOL_VERSION
                && !supported_versions(error).contains(&STATELESS_PROTOCOL_VERSION)
        }
        _ => false,
    }
}

/// A failed `initialize` that a modern-only server would give.
fn refused_by_era(e: &UpstreamError) -> bool {
    matches!(
        e,
        UpstreamError::Rpc { .. }
            | UpstreamError::Http {
                status: 400..=499,
                ..
            }
    )
}

/// The `supported` versions of an unsupported-version error.
fn supported_versions(error: &ErrorObject) -> Vec<&str> {
    error
        .data
        .as_ref()
        .and_then(|d| d.get("supported"))
        .and_then(Value::as_array)
        .map(|a| a.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default()
}

/// Names the gateway (and what is missing) in the errors a client can act
/// on: the upstream's era or version refusals, a client capability it
/// requires, a header mismatch, a protocol breach. The code and `data` stay
/// the upstream's.
fn name_gateway(e: UpstreamError, gateway: &Gateway) -> UpstreamError {
    let who = format!("gateway {:?} ({})", gateway.name, gateway.url);
    match e {
        UpstreamError::Rpc { url, mut error } => {
            let what = match error.code {
                error_codes::MISSING_REQUIRED_CLIENT_CAPABILITY => {
                    let caps: Vec<String> = error
                        .data
                        .as_ref()
                        .and_then(|d| d.get("requiredCapabilities"))
                        .and_then(Value::as_object)
                        .map(|m| m.keys().cloned().collect())
                        .unwrap_or_default();
                    let caps = if caps.is_empty() {
                        "a client capability".to_owned()
                    } else {
                        format!("the client capabilities {}", caps.join(", "))
                    };
                    Some(format!(
                        "{who} requires {caps}, which the client did not declare"
                    ))
                }
                error_codes::UNSUPPORTED_PROTOCOL_VERSION => Some(format!(
                    "{who} does not speak MCP {}; it supports {:?}",
                    error
                        .data
                        .as_ref()
                        .and_then(|d| d.get("requested"))
                        .and_then(Value::as_str)
                        .unwrap_or("(the version asked for)"),
                    supported_versions(&error),
                )),
                error_codes::HEADER_MISMATCH => Some(format!(
                    "{who} refused the request's headers (its tool list is being read again)"
                )),
                _ => None,
            };
            if let Some(what) = what {
                error.message = format!("{what}: {}", error.message);
            }
            UpstreamError::Rpc { url, error }
        }
        UpstreamError::Protocol { url, reason } => UpstreamError::Protocol {
            reason: format!("{who}: {reason}"),
            url,
        },
        other => other,
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
    // The modern era removed `logging/setLevel` (the level travels in each
    // request's `_meta` instead).
    if s.is_stateless() || s.server_capabilities().get("logging").is_none() {
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
    tokio::spawn(close_now(sessions));
}

/// [`close_all`], waited for: a few sessions at a time.
pub async fn close_now(sessions: Vec<Closing>) {
    use futures_util::StreamExt;
    futures_util::stream::iter(sessions)
        .for_each_concurrent(CLOSING_AT_ONCE, |c| async move {
            // A modern upstream's subscriptions end with its listen stream.
            let subscribed = if c.session.is_stateless() {
                Vec::new()
            } else {
                c.subscribed
            };
            for uri in subscribed {
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
        })
        .await;
}

/// How many upstream sessions [`close_now`] closes at once.
const CLOSING_AT_ONCE: usize = 32;
