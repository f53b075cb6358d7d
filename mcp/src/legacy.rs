//! The client side of the legacy HTTP+SSE transport (MCP 2024-11-05), used by
//! [`UpstreamClient::connect_with_transport`](crate::UpstreamClient::connect_with_transport)
//! with [`Transport::Sse`](crate::Transport::Sse).
//!
//! The session keeps one `GET` stream open. Its first event, `endpoint`, names
//! the URI every client message is POSTed to (the upstream answers 202);
//! everything the upstream sends (responses, notifications, requests) arrives
//! as `message` events on that one stream. A background task reads the stream
//! and dispatches each message:
//!
//! - a response (or error) goes to the request waiting for its id;
//! - a server → client request goes to the handler of the oldest request in
//!   flight (the transport does not say which request it belongs to); with no
//!   request in flight it gets the default answer (`ping` → `{}`, else -32601);
//! - a notification goes to the request whose `_meta.progressToken` it names
//!   (progress), else to the oldest request in flight, else it is dropped.
//!
//! When the stream ends, requests in flight fail with `Unreachable` and later
//! ones with `SessionExpired`, so callers open a new session.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use http::HeaderMap;
use serde_json::value::RawValue;
use serde_json::Value;
use tokio::sync::mpsc;

use crate::client::default_answer;
use crate::jsonrpc::{self, ErrorObject, Id, Message, Notification, Parsed, Request};
use crate::protocol::methods;
use crate::sse::{SseDecoder, SseEvent};

/// The `event` type of the first event of a legacy stream.
pub const ENDPOINT_EVENT: &str = "endpoint";
/// The protocol version of the legacy transport; a legacy upstream may answer
/// `initialize` with it whatever was asked.
pub const LEGACY_PROTOCOL_VERSION: &str = "2024-11-05";

/// What the stream reader hands to a waiting request.
#[derive(Debug)]
pub(crate) enum Delivery {
    Notification(Notification),
    Request(Request),
    Answer(Result<Box<RawValue>, ErrorObject>),
}

#[derive(Debug)]
struct Waiter {
    seq: u64,
    progress_token: Option<Value>,
    tx: mpsc::UnboundedSender<Delivery>,
}

#[derive(Debug, Default)]
struct State {
    closed: Option<String>,
    next_seq: u64,
    waiters: HashMap<Id, Waiter>,
}

/// The requests waiting for the stream, shared with its reader.
#[derive(Debug, Default)]
pub(crate) struct Dispatch {
    state: Mutex<State>,
}

impl Dispatch {
    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Waits for `id`; `None` if the stream is already closed.
    pub(crate) fn register(
        self: &Arc<Self>,
        id: &Id,
        progress_token: Option<Value>,
    ) -> Option<(mpsc::UnboundedReceiver<Delivery>, WaiterGuard)> {
        let mut st = self.lock();
        if st.closed.is_some() {
            return None;
        }
        let (tx, rx) = mpsc::unbounded_channel();
        st.next_seq += 1;
        let seq = st.next_seq;
        st.waiters.insert(
            id.clone(),
            Waiter {
                seq,
                progress_token,
                tx,
            },
        );
        Some((
            rx,
            WaiterGuard {
                dispatch: Arc::clone(self),
                id: id.clone(),
                seq,
            },
        ))
    }

    /// Why the stream is closed, if it is.
    pub(crate) fn closed(&self) -> Option<String> {
        self.lock().closed.clone()
    }

    /// Marks the stream closed; waiting requests see their channel end.
    pub(crate) fn close(&self, reason: String) {
        let mut st = self.lock();
        if st.closed.is_none() {
            st.closed = Some(reason);
        }
        st.waiters.clear();
    }

    fn answer(&self, id: &Id, answer: Result<Box<RawValue>, ErrorObject>) -> bool {
        let st = self.lock();
        match st.waiters.get(id) {
            Some(w) => w.tx.send(Delivery::Answer(answer)).is_ok(),
            None => false,
        }
    }

    /// The oldest waiter, or the one whose progress token is `token`.
    fn route(&self, delivery: Delivery, token: Option<&Value>) -> Result<(), Delivery> {
        let st = self.lock();
        let by_token = token.and_then(|t| {
            st.waiters
                .values()
                .find(|w| w.progress_token.as_ref() == Some(t))
        });
        match by_token.or_else(|| st.waiters.values().min_by_key(|w| w.seq)) {
            Some(w) => w.tx.send(delivery).map_err(|e| e.0),
            None => Err(delivery),
        }
    }
}

/// Stops waiting for a request when its caller goes away.
#[derive(Debug)]
pub(crate) struct WaiterGuard {
    dispatch: Arc<Dispatch>,
    id: Id,
    seq: u64,
}

impl Drop for WaiterGuard {
    fn drop(&mut self) {
        let mut st = self.dispatch.lock();
        if st.waiters.get(&self.id).is_some_and(|w| w.seq == self.seq) {
            st.waiters.remove(&self.id);
        }
    }
}

/// A live legacy connection: where to POST, and the stream reader.
#[derive(Debug)]
pub(crate) struct Legacy {
    /// The absolute URI of the `endpoint` event.
    pub(crate) endpoint: String,
    pub(crate) dispatch: Arc<Dispatch>,
    pub(crate) reader: tokio::task::AbortHandle,
}

impl Legacy {
    /// Ends the stream (the upstream sees the connection close).
    pub(crate) fn shut(&self, reason: &str) {
        self.reader.abort();
        self.dispatch.close(reason.to_owned());
    }
}

impl Drop for Legacy {
    fn drop(&mut self) {
        self.reader.abort();
    }
}

/// What the reader needs to answer a server request nobody waits for.
pub(crate) struct Orphans {
    pub(crate) http: crate::net::Client,
    pub(crate) endpoint: String,
    pub(crate) headers: HeaderMap,
    pub(crate) url: String,
}

/// The session id in an endpoint URI (`session_id`/`sessionId` query
/// parameter), else the endpoint's path and query.
pub(crate) fn session_id_of(endpoint: &url::Url) -> String {
    endpoint
        .query_pairs()
        .find(|(k, _)| k == "session_id" || k == "sessionId" || k == "sessionid")
        .map(|(_, v)| v.into_owned())
        .filter(|v| !v.is_empty())
        .unwrap_or_else(|| match endpoint.query() {
            Some(q) => format!("{}?{q}", endpoint.path()),
            None => endpoint.path().to_owned(),
        })
}

/// Reads the stream to its end, dispatching every message; then closes
/// `dispatch`.
pub(crate) async fn read(
    mut resp: crate::net::Response,
    mut decoder: SseDecoder,
    first: Vec<SseEvent>,
    dispatch: Arc<Dispatch>,
    orphans: Orphans,
) {
    for ev in first {
        on_event(ev, &dispatch, &orphans);
    }
    let mut events = Vec::new();
    let reason = loop {
        match resp.chunk().await {
            Ok(Some(chunk)) => {
                if let Err(e) = decoder.feed(&chunk, &mut events) {
                    break format!("its SSE stream: {e}");
                }
                for ev in events.drain(..) {
                    on_event(ev, &dispatch, &orphans);
                }
            }
            Ok(None) => {
                if let Some(ev) = decoder.finish() {
                    on_event(ev, &dispatch, &orphans);
                }
                break "its SSE stream ended".to_owned();
            }
            Err(e) => break format!("its SSE stream broke: {e}"),
        }
    };
    tracing::debug!(upstream = %orphans.url, %reason, "legacy SSE stream closed");
    dispatch.close(reason);
}

fn on_event(ev: SseEvent, dispatch: &Dispatch, orphans: &Orphans) {
    if !ev.is_message() || ev.data.trim().is_empty() {
        return;
    }
    let messages = match jsonrpc::parse(ev.data.as_bytes()) {
        Ok(Parsed::Single(m)) => vec![m],
        Ok(Parsed::Batch(items)) => items.into_iter().flatten().collect(),
        Err(e) => {
            tracing::warn!(upstream = %orphans.url, error = %e, "skipping an SSE event that is not JSON-RPC");
            return;
        }
    };
    for msg in messages {
        match msg {
            Message::Response(r) => {
                if !dispatch.answer(&r.id, Ok(r.result)) {
                    tracing::debug!(upstream = %orphans.url, id = %r.id, "a response nobody waits for");
                }
            }
            Message::Error(e) => {
                if e.id.is_null() || !dispatch.answer(&e.id, Err(e.error.clone())) {
                    tracing::warn!(upstream = %orphans.url, error = ?e.error, "an error response nobody waits for");
                }
            }
            Message::Notification(n) => {
                let token = (n.method == methods::PROGRESS)
                    .then(|| n.params.as_ref()?.get("progressToken").cloned())
                    .flatten();
                if dispatch
                    .route(Delivery::Notification(n), token.as_ref())
                    .is_err()
                {
                    tracing::debug!(upstream = %orphans.url, "dropping a notification outside any request");
                }
            }
            Message::Request(r) => {
                if let Err(Delivery::Request(r)) = dispatch.route(Delivery::Request(r), None) {
                    answer_orphan(r, orphans);
                }
            }
        }
    }
}

/// Answers a server request with no request in flight (default answers).
fn answer_orphan(request: Request, orphans: &Orphans) {
    let body = match default_answer(&request) {
        Ok(result) => jsonrpc::encode_response(&request.id, &result),
        Err(error) => jsonrpc::encode_error(&request.id, &error),
    };
    let rb = orphans
        .http
        .post(&orphans.endpoint)
        .headers(orphans.headers.clone())
        .body(body);
    let url = orphans.url.clone();
    tokio::spawn(async move {
        if let Err(e) = rb.send().await {
            tracing::debug!(upstream = %url, error = %e, "could not answer a server request");
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn session_ids_from_endpoints() {
        let u = |s: &str| url::Url::parse(s).unwrap();
        assert_eq!(session_id_of(&u("http://h/messages?session_id=ab")), "ab");
        assert_eq!(session_id_of(&u("http://h/m/?x=1&sessionId=cd")), "cd");
        assert_eq!(session_id_of(&u("http://h/m/abc")), "/m/abc");
        assert_eq!(session_id_of(&u("http://h/m?x=1")), "/m?x=1");
    }

    #[tokio::test]
    async fn routing() {
        let d = Arc::new(Dispatch::default());
        let (mut rx1, g1) = d.register(&Id::Number(1), None).unwrap();
        let (mut rx2, _g2) = d.register(&Id::Number(2), Some(Value::from("t2"))).unwrap();
        d.route(
            Delivery::Notification(Notification {
                method: "x".into(),
                params: None,
            }),
            Some(&Value::from("t2")),
        )
        .unwrap();
        assert!(matches!(rx2.try_recv(), Ok(Delivery::Notification(_))));
        d.route(
            Delivery::Notification(Notification {
                method: "y".into(),
                params: None,
            }),
            None,
        )
        .unwrap();
        assert!(matches!(rx1.try_recv(), Ok(Delivery::Notification(_))));
        assert!(d.answer(&Id::Number(1), Ok(jsonrpc::raw(&Value::Null))));
        drop(g1);
        assert!(!d.answer(&Id::Number(1), Ok(jsonrpc::raw(&Value::Null))));
        d.close("gone".into());
        assert!(rx2.recv().await.is_none());
        assert!(d.register(&Id::Number(3), None).is_none());
        assert_eq!(d.closed().as_deref(), Some("gone"));
    }
}
