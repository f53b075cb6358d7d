//! Keeping what clients see true to the upstreams.
//!
//! - An upstream's `notifications/{tools,prompts,resources}/list_changed`
//!   (on any of its sessions' streams) makes this worker discover that
//!   gateway again ([`spawn_refresher`]) and write what it found to the
//!   store: every worker of every host reloads it from there.
//! - Every change of the registry this worker sees, whoever made it (a
//!   refresh, the REST API, another host), is compared per scope with what
//!   came before ([`spawn_view_watch`]): each live session whose list of
//!   tools, prompts or resources changed gets that kind's `list_changed`.
//!   The upstream's own notice is not passed on: the client re-lists from
//!   fleetgate, which must have the new catalog first.
//! - The same per-scope comparison feeds the 2026-07-28
//!   `subscriptions/listen` streams open in this worker ([`LISTENERS`]),
//!   each with the kinds it opted in to, tagged with its subscription id.

use crate::gateway::discovery::discover;
use crate::gateway::dispatch::{self, Core};
use crate::gateway::registry::{Registry, ScopeIndex, Snapshot};
use crate::gateway::scope::Scope;
use crate::gateway::session::{Sessions, HELD_TTL};
use bytes::Bytes;
use fleetgate_mcp::jsonrpc;
use serde_json::Value;
use std::collections::{BTreeSet, HashMap};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::mpsc;

/// How long list changes are gathered before a refresh runs: an upstream
/// announcing tools, prompts and resources at once is discovered once.
const GATHER: Duration = Duration::from_millis(200);

/// The list-change methods, and the kind each names.
pub const LIST_CHANGED: [(&str, Kind); 3] = [
    ("notifications/tools/list_changed", Kind::Tools),
    ("notifications/prompts/list_changed", Kind::Prompts),
    ("notifications/resources/list_changed", Kind::Resources),
];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Tools,
    Prompts,
    Resources,
}

/// Starts the task that re-discovers gateways whose upstreams announced a
/// list change; send it their ids.
pub fn spawn_refresher(core: Arc<Core>) -> mpsc::UnboundedSender<String> {
    let (tx, mut rx) = mpsc::unbounded_channel::<String>();
    tokio::spawn(async move {
        while let Some(first) = rx.recv().await {
            tokio::time::sleep(GATHER).await;
            let mut ids = BTreeSet::from([first]);
            while let Ok(id) = rx.try_recv() {
                ids.insert(id);
            }
            for id in ids {
                refresh(&core, &id).await;
            }
        }
    });
    tx
}

/// Discovers `gateway_id` again and stores what it offers now.
async fn refresh(core: &Core, gateway_id: &str) {
    let Some(g) = core.registry.snapshot().gateway(gateway_id).cloned() else {
        return;
    };
    let store = &core.registry.store;
    let found = match discover(&core.federation, &g.url, g.transport, &g.auth_headers).await {
        Ok(f) => f,
        Err(e) => {
            tracing::warn!(gateway = %g.name, error = %e, "the upstream announced a list change, but discovering it again failed");
            return;
        }
    };
    let stored = async {
        let summary = store
            .replace_discovered(gateway_id, found.discovered)
            .await?;
        store.set_gateway_reachable(gateway_id, true).await?;
        core.registry.refresh(true).await?;
        Ok::<_, fleetgate_store::StoreError>(summary)
    };
    match stored.await {
        Ok(s) => tracing::info!(
            gateway = %g.name,
            added = s.added,
            updated = s.updated,
            removed = s.removed,
            "catalog refreshed after the upstream announced a list change"
        ),
        Err(e) => {
            tracing::warn!(gateway = %g.name, error = %e, "could not store the refreshed catalog")
        }
    }
}

/// Watches the registry and tells sessions whose view changed.
pub fn spawn_view_watch(registry: Arc<Registry>, sessions: Arc<Sessions>, every: Duration) {
    tokio::spawn(async move {
        let mut seen = registry.snapshot();
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            let now = registry.snapshot();
            if Arc::ptr_eq(&now, &seen) {
                continue;
            }
            notify_views(&sessions, &seen, &now);
            seen = now;
        }
    });
}

/// One open `subscriptions/listen` stream.
pub struct Listen {
    pub scope: Scope,
    /// The list kinds the client opted in to (and was acknowledged).
    pub kinds: Vec<Kind>,
    /// The listen request's JSON-RPC id: every notification's
    /// `_meta["io.modelcontextprotocol/subscriptionId"]`.
    pub subscription: Value,
    /// The registry version the stream started on: it saw that one whole.
    pub since: i64,
    pub tx: mpsc::Sender<Bytes>,
}

/// The `subscriptions/listen` streams open in this worker process (each
/// worker is its own process and watches the registry itself, so a stream
/// is told about changes by the worker that holds it). Resource updates
/// reach a stream from the upstreams it listens to ([`crate::gateway::feed`]).
pub static LISTENERS: Listeners = Listeners(Mutex::new(Vec::new()));

pub struct Listeners(Mutex<Vec<Listen>>);

impl Listeners {
    pub fn add(&self, l: Listen) {
        let mut all = self.lock();
        all.retain(|l| !l.tx.is_closed());
        all.push(l);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Listen>> {
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// The notification `kind`'s change sends on the listen stream of
/// `subscription`.
pub fn listen_notice(kind: Kind, subscription: &Value) -> Bytes {
    let params = serde_json::json!({"_meta": {
        fleetgate_mcp::protocol::meta::SUBSCRIPTION_ID: subscription
    }});
    Bytes::from(jsonrpc::encode_notification(method_of(kind), Some(&params)))
}

fn method_of(kind: Kind) -> &'static str {
    LIST_CHANGED
        .iter()
        .find(|(_, k)| *k == kind)
        .map_or("", |(m, _)| *m)
}

/// Sends each session and listen stream the `list_changed` of every kind
/// its scope's view changed in between `old` and `new`.
fn notify_views(sessions: &Sessions, old: &Snapshot, new: &Snapshot) {
    let mut by_scope: HashMap<Scope, Vec<Kind>> = HashMap::new();
    {
        let mut listeners = LISTENERS.lock();
        listeners.retain(|l| !l.tx.is_closed());
        for l in listeners.iter_mut() {
            if l.since >= new.version {
                continue;
            }
            l.since = new.version;
            let changed = by_scope
                .entry(l.scope.clone())
                .or_insert_with(|| changed_kinds(old.scope(&l.scope), new.scope(&l.scope)));
            for kind in changed.iter().filter(|k| l.kinds.contains(k)) {
                // A stream too slow to take it misses a notice, never
                // blocks the watch: the next list it asks for is current.
                let _ = l.tx.try_send(listen_notice(*kind, &l.subscription));
            }
        }
    }
    for s in sessions.all() {
        // A session that started on this version (or a later one) saw it all.
        if s.view_version.swap(new.version, Ordering::Relaxed) >= new.version {
            continue;
        }
        let changed = by_scope
            .entry(s.scope.clone())
            .or_insert_with(|| changed_kinds(old.scope(&s.scope), new.scope(&s.scope)));
        for kind in changed.iter() {
            let msg = jsonrpc::encode_notification(method_of(*kind), None);
            s.deliver(Bytes::from(msg), Instant::now() + HELD_TTL);
        }
    }
}

/// The kinds whose listing differs between two views of one scope (a scope
/// that is gone tells nothing: its requests are refused).
fn changed_kinds(old: Option<&ScopeIndex>, new: Option<&ScopeIndex>) -> Vec<Kind> {
    let (Some(old), Some(new)) = (old, new) else {
        return Vec::new();
    };
    [Kind::Tools, Kind::Prompts, Kind::Resources]
        .into_iter()
        .filter(|k| listing(old, *k) != listing(new, *k))
        .collect()
}

/// What a client listing `kind` in this view gets.
fn listing(idx: &ScopeIndex, kind: Kind) -> Vec<Value> {
    match kind {
        Kind::Tools => idx
            .tools
            .iter()
            .map(|t| dispatch::tool_json(&t.name, &t.item))
            .collect(),
        Kind::Prompts => idx
            .prompts
            .iter()
            .map(|p| dispatch::prompt_json(&p.name, &p.item))
            .collect(),
        Kind::Resources => idx
            .resources
            .iter()
            .map(|r| dispatch::resource_json(r))
            .chain(idx.templates.iter().map(|t| dispatch::template_json(t)))
            .collect(),
    }
}
