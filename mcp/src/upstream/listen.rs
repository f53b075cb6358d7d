//! The stateless era's (2026-07-28) counterpart of the standalone stream:
//! `subscriptions/listen`, one long-lived POST whose SSE answer carries the
//! notifications the request's filter asks for (list changes of tools,
//! prompts and resources; `notifications/resources/updated` of the URIs in
//! `resourceSubscriptions`; `notifications/tasks` of the tasks in `taskIds`,
//! for which the request declares the tasks extension).
//!
//! [`UpstreamSession::listen`] on a stateless session opens it; what arrives
//! goes to the same handler, through the same pump, as a standalone stream's
//! messages, less the protocol's own: the acknowledgement is not passed on,
//! and the subscription id is taken out of each notification's `_meta` (the
//! subscription is this session's business, not the handler's). The filter
//! has no way to grow in place, so a change of the subscribed resources
//! ([`UpstreamSession::subscribe_resource`]) opens a new stream with the new
//! filter, then ends the old one. A stream that ends or breaks is opened
//! again after a delay (streams are not resumable in this era: what was sent
//! in between is lost, as for any client of such a server).

use std::collections::BTreeSet;
use std::sync::{Arc, PoisonError};

use http::{HeaderMap, StatusCode};
use serde_json::{json, Value};
use tokio::sync::mpsc;

use super::standalone::{self, Listening, PumpTx, Refusal};
use super::streamable_http::StreamableHttp;
use super::{stateless, Inner, Link, ServerMessageHandler, UpstreamSession};
use crate::jsonrpc::{self, Id, Notification};
use crate::net;

/// The method that opens the stream.
pub const SUBSCRIPTIONS_LISTEN: &str = "subscriptions/listen";
/// The server's first message on the stream.
const ACKNOWLEDGED: &str = "notifications/subscriptions/acknowledged";
/// The `_meta` key naming the subscription a message belongs to.
const SUBSCRIPTION_ID: &str = "io.modelcontextprotocol/subscriptionId";

/// A stateless session's listening: who gets what arrives, which resources
/// it asks updates of, and a lock that makes reopenings take turns (each
/// reads the filter when its turn comes, so the last one opened has the
/// latest).
#[derive(Default)]
pub(super) struct Listen {
    state: std::sync::Mutex<ListenState>,
    reopening: tokio::sync::Mutex<()>,
}

#[derive(Default)]
struct ListenState {
    handler: Option<Arc<dyn ServerMessageHandler>>,
    resources: BTreeSet<String>,
    tasks: BTreeSet<String>,
}

/// The tasks extension, declared on a listen request asking for tasks.
const TASKS_EXTENSION: &str = "io.modelcontextprotocol/tasks";

impl std::fmt::Debug for Listen {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let st = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        f.debug_struct("Listen")
            .field("listening", &st.handler.is_some())
            .field("resources", &st.resources)
            .finish()
    }
}

impl UpstreamSession {
    /// [`listen`](Self::listen) on a stateless session.
    pub(super) async fn listen_stateless(
        &self,
        handler: Arc<dyn ServerMessageHandler>,
    ) -> Listening {
        self.listen
            .state
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .handler = Some(handler);
        self.reopen_listen().await
    }

    /// Stateless sessions: asks (`on`) or stops asking for
    /// `notifications/resources/updated` of `uri` on the
    /// `subscriptions/listen` stream, which the 2026-07-28 revision uses
    /// instead of `resources/subscribe`. If the session listens, its stream
    /// is opened again with the new filter; the answer is that opening's.
    /// A stateful session has `resources/subscribe` for this: it returns
    /// [`Listening::NotOffered`] and changes nothing.
    pub async fn subscribe_resource(&self, uri: &str, on: bool) -> Listening {
        self.change_filter(|st| &mut st.resources, uri, on).await
    }

    /// Stateless sessions: asks (`on`) or stops asking for
    /// `notifications/tasks` of the upstream's task `task_id` on the
    /// `subscriptions/listen` stream (opened again with the new filter, as
    /// for resources). A stateful session has no such thing:
    /// [`Listening::NotOffered`].
    pub async fn subscribe_task(&self, task_id: &str, on: bool) -> Listening {
        self.change_filter(|st| &mut st.tasks, task_id, on).await
    }

    /// Adds (`on`) or removes `item` in the filter set `which` picks, and
    /// opens the stream again if that changed it.
    async fn change_filter(
        &self,
        which: impl FnOnce(&mut ListenState) -> &mut BTreeSet<String>,
        item: &str,
        on: bool,
    ) -> Listening {
        if !self.inner.stateless {
            return Listening::NotOffered;
        }
        {
            let mut st = self
                .listen
                .state
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            let set = which(&mut st);
            let changed = if on {
                set.insert(item.to_owned())
            } else {
                set.remove(item)
            };
            if !changed {
                return if st.handler.is_some() {
                    Listening::Open
                } else {
                    Listening::NotOffered
                };
            }
        }
        self.reopen_listen().await
    }

    /// The resources a stateless session asks updates of.
    pub fn subscribed_resources(&self) -> Vec<String> {
        let st = self
            .listen
            .state
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        st.resources.iter().cloned().collect()
    }

    /// Opens a `subscriptions/listen` stream with the current filter and
    /// ends the previous one (if any) once it is open.
    async fn reopen_listen(&self) -> Listening {
        let Link::StreamableHttp(t) = &self.inner.transport else {
            return Listening::NotOffered;
        };
        let _turn = self.listen.reopening.lock().await;
        let (handler, resources, tasks) = {
            let st = self
                .listen
                .state
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            let resources: Vec<String> = st.resources.iter().cloned().collect();
            let tasks: Vec<String> = st.tasks.iter().cloned().collect();
            (st.handler.clone(), resources, tasks)
        };
        let Some(handler) = handler else {
            return Listening::NotOffered;
        };
        let id = self.next_id();
        let mut params = json!({
            "notifications": {
                "toolsListChanged": true,
                "promptsListChanged": true,
                "resourcesListChanged": true,
                "resourceSubscriptions": resources,
            }
        });
        if !tasks.is_empty() {
            params["notifications"]["taskIds"] = json!(tasks);
            // Asking for tasks needs the extension declared: the client's
            // capabilities, and it.
            let mut caps = t.client_capabilities.clone();
            caps["extensions"][TASKS_EXTENSION] = json!({});
            params["_meta"] = json!({ crate::protocol::meta::CLIENT_CAPABILITIES: caps });
        }
        let opening = t.open_listen(&self.inner, &id, &params);
        let (first, outcome) =
            standalone::first_attempt(self.timeout, SUBSCRIPTIONS_LISTEN, opening).await;
        let mut tasks = Vec::new();
        if outcome != Listening::NotOffered {
            let (tx, rx) = mpsc::channel(standalone::PUMP_CAPACITY);
            let inner = self.inner.clone();
            tasks.push(tokio::spawn(standalone::pump(inner.clone(), rx, handler)).abort_handle());
            let reader =
                tokio::spawn(async move { read(&inner, first.ok(), id, params, tx).await });
            tasks.push(reader.abort_handle());
        }
        self.replace_listening(tasks);
        outcome
    }
}

/// A notification of the listen stream as the handler gets it: `None` for
/// the acknowledgement, else without the subscription id.
pub(super) fn tidy(mut n: Notification) -> Option<Notification> {
    if n.method == ACKNOWLEDGED {
        return None;
    }
    if let Some(Value::Object(params)) = &mut n.params {
        if let Some(Value::Object(meta)) = params.get_mut("_meta") {
            meta.remove(SUBSCRIPTION_ID);
            if meta.is_empty() {
                params.remove("_meta");
            }
        }
    }
    Some(n)
}

impl StreamableHttp {
    /// POSTs `subscriptions/listen`; the stream is the answer.
    pub(super) async fn open_listen(
        &self,
        s: &Inner,
        id: &Id,
        params: &Value,
    ) -> Result<net::Response, Refusal> {
        let params = stateless::with_meta(self, &s.protocol_version, Some(params));
        let body = jsonrpc::encode_request(id, SUBSCRIPTIONS_LISTEN, params.as_ref());
        let headers =
            self.post_headers(s, SUBSCRIPTIONS_LISTEN, params.as_ref(), &HeaderMap::new());
        let resp = s
            .send(self.http.post(&self.target).headers(headers).body(body))
            .await
            .map_err(|e| Refusal::Retry(e.to_string()))?;
        let status = resp.status();
        match status {
            s if s.is_success() && standalone::is_sse(&resp) => Ok(resp),
            // An answer at once (an error, or a result that ends it): the
            // upstream does not keep such a stream.
            s if s.is_success() => Err(Refusal::Final),
            StatusCode::BAD_REQUEST | StatusCode::NOT_FOUND | StatusCode::METHOD_NOT_ALLOWED => {
                tracing::debug!(upstream = %s.url, status = status.as_u16(), "the upstream refused subscriptions/listen");
                Err(Refusal::Final)
            }
            s => Err(Refusal::Retry(format!("HTTP {}", s.as_u16()))),
        }
    }
}

/// Reads the listen stream for the session's life, reopening it (a listen
/// stream is a new request each time: no event id carries over).
async fn read(s: &Inner, first: Option<net::Response>, id: Id, params: Value, tx: PumpTx) {
    let Link::StreamableHttp(t) = &s.transport else {
        return;
    };
    let (id, params) = (&id, &params);
    standalone::keep_reading(s, "subscriptions/listen", first, tx, |_| {
        t.open_listen(s, id, params)
    })
    .await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_acknowledgement_is_not_passed_on_and_the_subscription_id_goes() {
        let ack = Notification {
            method: ACKNOWLEDGED.into(),
            params: Some(json!({"_meta": {SUBSCRIPTION_ID: 1}})),
        };
        assert!(tidy(ack).is_none());
        let n = Notification {
            method: "notifications/resources/updated".into(),
            params: Some(json!({"_meta": {SUBSCRIPTION_ID: 1, "k": 2}, "uri": "u"})),
        };
        assert_eq!(
            tidy(n).unwrap().params,
            Some(json!({"_meta": {"k": 2}, "uri": "u"}))
        );
        let n = Notification {
            method: "notifications/tools/list_changed".into(),
            params: Some(json!({"_meta": {SUBSCRIPTION_ID: 1}})),
        };
        assert_eq!(tidy(n).unwrap().params, Some(json!({})));
    }
}
