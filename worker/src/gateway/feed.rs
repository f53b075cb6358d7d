//! What upstreams tell a 2026-07-28 `subscriptions/listen` stream.
//!
//! A listen stream that asks for list changes hears of every change of its
//! scope's view ([`crate::gateway::catalog`]); for fleetgate to learn of an
//! upstream's change as it happens, each gateway of the scope is listened
//! to for as long as the stream is open (its `subscriptions/listen`, or a
//! 2025-era upstream's standalone stream), and what it announces refreshes
//! the catalog. `resourceSubscriptions` go to the gateway serving each URI
//! (the modern era's listen filter, the 2025 era's `resources/subscribe`),
//! and its `notifications/resources/updated` of those URIs reach the stream
//! tagged with its subscription id; `taskIds` (the tasks extension) go to
//! the gateway each task id names, whose `notifications/tasks` come back
//! with the id the client knows.
//!
//! Invariants: the upstream streams opened for a listen stream close with
//! it (what was subscribed in the 2025 era is unsubscribed first); nothing
//! but the URIs it asked for and the list changes of its view reach it.

use crate::gateway::catalog::LIST_CHANGED;
use crate::gateway::dispatch::{resource_gateway, Core};
use crate::gateway::scope::Scope;
use crate::gateway::tasks;
use bytes::Bytes;
use fleetgate_mcp::jsonrpc::{self, ErrorObject};
use fleetgate_mcp::protocol::{meta, methods};
use fleetgate_mcp::upstream::BoxFuture;
use fleetgate_mcp::{
    NoopHandler, Notification, Request, RequestOptions, ServerMessageHandler, UpstreamSession,
};
use serde_json::{json, Value};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use tokio::sync::mpsc;

/// A task's status, pushed (the tasks extension).
const TASKS_NOTIFICATION: &str = "notifications/tasks";

/// The `uris` this scope serves, by the gateway serving each.
pub fn resolve(core: &Core, scope: &Scope, uris: &[String]) -> BTreeMap<String, BTreeSet<String>> {
    let snap = core.registry.snapshot();
    let mut by_gateway: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    if let Some(idx) = snap.scope(scope) {
        for uri in uris {
            if let Ok(gw) = resource_gateway(idx, uri) {
                by_gateway.entry(gw).or_default().insert(uri.clone());
            }
        }
    }
    by_gateway
}

/// The client's task ids (`{gateway}:{upstream id}`) that name a gateway of
/// the scope: the upstream's ids, by gateway.
pub fn resolve_tasks(
    core: &Core,
    scope: &Scope,
    task_ids: &[String],
) -> BTreeMap<String, BTreeSet<String>> {
    let snap = core.registry.snapshot();
    let mut by_gateway: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    if let Some(idx) = snap.scope(scope) {
        for id in task_ids {
            if let Some((gw, task)) =
                tasks::split(id).filter(|(gw, _)| idx.gateway_ids.contains(*gw))
            {
                by_gateway
                    .entry(gw.to_owned())
                    .or_default()
                    .insert(task.to_owned());
            }
        }
    }
    by_gateway
}

/// What a listen stream asked of the upstreams, by gateway.
pub struct Wanted {
    /// List changes of the whole scope.
    pub list_changes: bool,
    /// `resourceSubscriptions`.
    pub uris: BTreeMap<String, BTreeSet<String>>,
    /// `taskIds`, as the upstreams know them.
    pub tasks: BTreeMap<String, BTreeSet<String>>,
}

/// Listens, for the stream `tx` and until it closes, to the scope's
/// gateways (list changes) and to those serving what it asked for.
pub fn spawn(
    core: Arc<Core>,
    scope: Scope,
    wanted: Wanted,
    subscription: Value,
    tx: mpsc::Sender<Bytes>,
) {
    let Wanted {
        list_changes,
        uris,
        tasks,
    } = wanted;
    let snap = core.registry.snapshot();
    let mut gateways: BTreeSet<String> = uris.keys().chain(tasks.keys()).cloned().collect();
    if list_changes {
        if let Some(idx) = snap.scope(&scope) {
            gateways.extend(idx.gateway_ids.iter().cloned());
        }
    }
    if gateways.is_empty() {
        return;
    }
    tokio::spawn(async move {
        let fed = &core.federation;
        let mut open: Vec<(Arc<UpstreamSession>, BTreeSet<String>)> = Vec::new();
        for id in gateways {
            let Some(g) = snap.gateway(&id).cloned() else {
                continue;
            };
            let session = match fed.open(&g, &[], true).await {
                Ok(s) => Arc::new(s),
                Err(e) => {
                    tracing::warn!(gateway = %g.name, error = %e, "cannot listen to the upstream for a subscriptions/listen stream");
                    continue;
                }
            };
            let wanted = uris.get(&id).cloned().unwrap_or_default();
            let task_ids = tasks.get(&id).cloned().unwrap_or_default();
            let feed = Feed {
                tx: tx.clone(),
                subscription: subscription.clone(),
                uris: wanted.clone(),
                tasks: task_ids.clone(),
                gateway_id: id.clone(),
                list_changed: fed.list_changed.get().cloned(),
            };
            session.listen(Arc::new(feed)).await;
            for uri in &wanted {
                subscribe(&session, uri, true).await;
            }
            for task in &task_ids {
                session.subscribe_task(task, true).await;
            }
            open.push((session, wanted));
        }
        tx.closed().await;
        for (session, wanted) in open {
            for uri in &wanted {
                subscribe(&session, uri, false).await;
            }
            if let Err(e) = session.close().await {
                tracing::debug!(error = %e, "closing an upstream listened to for a listen stream");
            }
        }
    });
}

/// Asks (`on`) or stops asking `session`'s upstream for updates of `uri`,
/// in its era's way.
async fn subscribe(session: &UpstreamSession, uri: &str, on: bool) {
    if session.is_stateless() {
        session.subscribe_resource(uri, on).await;
        return;
    }
    let method = match on {
        true => methods::RESOURCES_SUBSCRIBE,
        false => methods::RESOURCES_UNSUBSCRIBE,
    };
    let params = json!({ "uri": uri });
    let options = RequestOptions::default();
    if let Err(e) = session
        .request_with(method, Some(&params), &NoopHandler, &options)
        .await
    {
        tracing::debug!(uri, error = %e, "{method} for a listen stream failed");
    }
}

/// Hands one upstream's announcements to a listen stream.
struct Feed {
    tx: mpsc::Sender<Bytes>,
    subscription: Value,
    uris: BTreeSet<String>,
    /// The upstream's ids of the tasks asked for.
    tasks: BTreeSet<String>,
    gateway_id: String,
    list_changed: Option<mpsc::UnboundedSender<String>>,
}

impl ServerMessageHandler for Feed {
    fn on_notification(&self, n: Notification) -> BoxFuture<'_, ()> {
        if LIST_CHANGED.iter().any(|(m, _)| *m == n.method) {
            // The stream hears of it from the catalog, once fleetgate's
            // view has changed.
            if let Some(tx) = &self.list_changed {
                let _ = tx.send(self.gateway_id.clone());
            }
        } else if n.method == TASKS_NOTIFICATION {
            let mut params = n.params.unwrap_or(Value::Null);
            let task = params
                .get("taskId")
                .and_then(Value::as_str)
                .map(str::to_owned);
            if let (Some(task), Value::Object(p)) =
                (task.filter(|t| self.tasks.contains(t)), &mut params)
            {
                p.insert(
                    "taskId".into(),
                    json!(format!("{}:{task}", self.gateway_id)),
                );
                p.insert(
                    "_meta".into(),
                    json!({meta::SUBSCRIPTION_ID: self.subscription}),
                );
                let msg = jsonrpc::encode_notification(TASKS_NOTIFICATION, Some(&params));
                let _ = self.tx.try_send(Bytes::from(msg));
            }
        } else if n.method == methods::RESOURCES_UPDATED {
            let uri = n
                .params
                .as_ref()
                .and_then(|p| p.get("uri"))
                .and_then(Value::as_str);
            if let Some(uri) = uri.filter(|u| self.uris.contains(*u)) {
                let params = json!({
                    "_meta": {meta::SUBSCRIPTION_ID: self.subscription},
                    "uri": uri,
                });
                let msg = jsonrpc::encode_notification(methods::RESOURCES_UPDATED, Some(&params));
                // A stream that cannot keep up misses updates, never blocks
                // the upstream's reader.
                let _ = self.tx.try_send(Bytes::from(msg));
            }
        }
        Box::pin(async {})
    }

    fn on_request(&self, r: Request) -> BoxFuture<'_, Result<Value, ErrorObject>> {
        Box::pin(async move {
            match r.method.as_str() {
                methods::PING => Ok(json!({})),
                _ => Err(ErrorObject::method_not_found(&r.method)),
            }
        })
    }
}
