//! The legacy HTTP+SSE transport (MCP 2024-11-05), used by
//! [`UpstreamClient::connect_with_transport`] with
//! [`Transport::Sse`](super::Transport::Sse).
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
//!   request in flight, to the session's listener
//!   ([`UpstreamSession::listen`](super::UpstreamSession::listen)), else it
//!   gets the default answer (`ping` → `{}`, else -32601);
//! - a progress notification goes to the request whose progress token it
//!   names; a log message to the oldest request in flight, else the
//!   listener; any other notification (resource updates, list changes)
//!   belongs to no request: to the listener, else the oldest request in
//!   flight, else it is dropped.
//!
//! When the stream ends, requests in flight fail with `Unreachable` and later
//! ones with `SessionExpired`, so callers open a new session.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use http::header::{ACCEPT, CONTENT_TYPE};
use http::{HeaderMap, HeaderValue};
use serde_json::value::RawValue;
use serde_json::Value;
use tokio::sync::mpsc;

use super::session::initialized;
use super::standalone::{Incoming, PumpTx};
use super::{
    default_answer, error, Inner, Link, ServerMessageHandler, UpstreamClient, UpstreamError,
    UpstreamSession,
};
use crate::jsonrpc::{self, ErrorObject, Id, Message, Notification, Parsed, Request};
use crate::net;
use crate::protocol::{self, methods, LATEST_STATEFUL_PROTOCOL_VERSION};
use crate::sse::{SseDecoder, SseEvent};

/// The `event` type of the first event of a legacy stream.
pub const ENDPOINT_EVENT: &str = "endpoint";
/// The protocol version of the legacy transport; a legacy upstream may answer
/// `initialize` with it whatever was asked.
pub const LEGACY_PROTOCOL_VERSION: &str = "2024-11-05";

/// A session's legacy SSE connection: where to POST, and the stream reader.
#[derive(Debug)]
pub(super) struct LegacySse {
    http: net::Client,
    /// The absolute URI of the `endpoint` event.
    endpoint: String,
    /// Caller headers + Accept + Content-Type.
    base_headers: HeaderMap,
    dispatch: Arc<Dispatch>,
    reader: tokio::task::AbortHandle,
}

impl Drop for LegacySse {
    fn drop(&mut self) {
        self.reader.abort();
    }
}

/// The handshake: GET the stream, read `endpoint`, start the reader,
/// `initialize`, `notifications/initialized`. The stateless version is asked
/// for as the latest stateful one; `2024-11-05` may be asked for and answered.
pub(super) async fn connect(
    client: &UpstreamClient,
    url: &str,
    headers: &HeaderMap,
    protocol_version: &str,
    timeout: Duration,
) -> Result<UpstreamSession, UpstreamError> {
    let protocol_version = if protocol::is_stateless_version(protocol_version) {
        LATEST_STATEFUL_PROTOCOL_VERSION
    } else {
        protocol_version
    };
    let refused = |reason: String| UpstreamError::Protocol {
        url: url.to_owned(),
        reason,
    };
    if !(protocol::is_supported_version(protocol_version)
        || protocol_version == LEGACY_PROTOCOL_VERSION)
    {
        return Err(refused(format!(
            "fleetgate does not speak MCP protocol version {protocol_version:?} on the SSE transport"
        )));
    }
    let mut get_headers = headers.clone();
    get_headers.insert(ACCEPT, HeaderValue::from_static(protocol::CONTENT_TYPE_SSE));
    let mut resp = client
        .http
        .get(url)
        .headers(get_headers)
        .send()
        .await
        .map_err(|e| error::unreachable(url, &e, "sending the request failed"))?;
    let status = resp.status();
    if !status.is_success() {
        return Err(error::non_2xx(url, None, status, resp, None).await);
    }
    let content_type = resp
        .headers()
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .map(|v| v.trim().to_ascii_lowercase())
        .unwrap_or_default();
    if content_type != protocol::CONTENT_TYPE_SSE {
        return Err(refused(format!(
            "its SSE endpoint answered GET with content type {content_type:?}; expected text/event-stream (is this the server's SSE URL, e.g. http://host/sse?)"
        )));
    }
    let mut decoder = SseDecoder::with_max_event_size(client.max_event_bytes);
    let mut events = Vec::new();
    let (endpoint, rest) = 'found: loop {
        let chunk = resp.chunk().await.map_err(|e| {
            error::unreachable(url, &e, "the SSE stream broke before its endpoint event")
        })?;
        let Some(chunk) = chunk else {
            return Err(refused(
                "its SSE stream ended before the endpoint event".to_owned(),
            ));
        };
        decoder
            .feed(&chunk, &mut events)
            .map_err(|e| refused(format!("its SSE stream: {e}")))?;
        if let Some(i) = events
            .iter()
            .position(|ev| ev.event.as_deref() == Some(ENDPOINT_EVENT))
        {
            let rest = events.split_off(i + 1);
            let endpoint = events.pop().map(|ev| ev.data).unwrap_or_default();
            if i > 0 {
                tracing::warn!(
                    upstream = url,
                    skipped = i,
                    "skipping SSE events sent before the endpoint event"
                );
            }
            break 'found (endpoint, rest);
        }
        if !events.is_empty() {
            tracing::warn!(
                upstream = url,
                skipped = events.len(),
                "skipping SSE events sent before the endpoint event"
            );
            events.clear();
        }
    };
    let base = url::Url::parse(url).map_err(|e| refused(format!("not a valid URL: {e}")))?;
    let endpoint_url = base
        .join(endpoint.trim())
        .map_err(|e| refused(format!("its endpoint event {endpoint:?} is not a URI: {e}")))?;
    if endpoint_url.origin() != base.origin() {
        return Err(refused(format!(
            "its endpoint event names {endpoint_url}, on another origin; fleetgate only posts to the SSE endpoint's origin"
        )));
    }
    let session_id = session_id_of(&endpoint_url);
    let endpoint = endpoint_url.to_string();
    let mut base_headers = headers.clone();
    base_headers.insert(ACCEPT, HeaderValue::from_static(protocol::ACCEPT_POST));
    base_headers.insert(
        CONTENT_TYPE,
        HeaderValue::from_static(protocol::CONTENT_TYPE_JSON),
    );
    let dispatch = Arc::new(Dispatch::default());
    let orphans = Orphans {
        http: client.http.clone(),
        endpoint: endpoint.clone(),
        headers: base_headers.clone(),
        url: url.to_owned(),
    };
    let reader =
        tokio::spawn(read(resp, decoder, rest, Arc::clone(&dispatch), orphans)).abort_handle();
    let mut inner = Inner {
        url: url.to_owned(),
        session_id: Some(session_id),
        protocol_version: protocol_version.to_owned(),
        stateless: false,
        transport: Link::LegacySse(LegacySse {
            http: client.http.clone(),
            endpoint,
            base_headers,
            dispatch,
            reader,
        }),
    };
    let (result, negotiated, _) = client
        .send_initialize(&inner, protocol_version, Some(LEGACY_PROTOCOL_VERSION))
        .await?;
    inner.protocol_version = negotiated;
    initialized(result, inner, timeout).await
}

impl LegacySse {
    /// One exchange: wait for `id` on the stream, POST the request, relay
    /// what the stream hands over.
    pub(super) async fn call(
        &self,
        s: &Inner,
        id: &Id,
        method: &str,
        params: Option<&Value>,
        handler: &dyn ServerMessageHandler,
    ) -> Result<Box<RawValue>, UpstreamError> {
        let token = params
            .and_then(|p| p.get("_meta"))
            .and_then(|m| m.get("progressToken"))
            .filter(|t| !t.is_null())
            .cloned();
        let Some((mut rx, _guard)) = self.dispatch.register(id, token) else {
            return Err(s.expired());
        };
        let body = jsonrpc::encode_request(id, method, params);
        let rb = self
            .http
            .post(&self.endpoint)
            .headers(self.base_headers.clone())
            .body(body);
        let resp = s.send(rb).await?;
        let status = resp.status();
        if !status.is_success() {
            return Err(Box::pin(s.non_2xx(status, resp, Some(id))).await);
        }
        drop(resp);
        loop {
            match rx.recv().await {
                Some(Delivery::Notification(n)) => handler.on_notification(n).await,
                Some(Delivery::Request(r)) => s.answer_server_request(r, handler).await?,
                Some(Delivery::Answer(Ok(result))) => return Ok(result),
                Some(Delivery::Answer(Err(error))) => {
                    return Err(UpstreamError::Rpc {
                        url: s.url.clone(),
                        error,
                    })
                }
                None => {
                    let why = self
                        .dispatch
                        .closed()
                        .unwrap_or_else(|| "its SSE stream ended".to_owned());
                    return Err(UpstreamError::Unreachable {
                        url: s.url.clone(),
                        reason: format!("{why} before the response to request {id} ({method})"),
                    });
                }
            }
        }
    }

    /// POSTs a notification or a response to the endpoint (the upstream
    /// answers 202); once the stream is closed the session is gone.
    pub(super) async fn post_message(&self, s: &Inner, body: &[u8]) -> Result<(), UpstreamError> {
        if self.dispatch.closed().is_some() {
            return Err(s.expired());
        }
        let rb = self
            .http
            .post(&self.endpoint)
            .headers(self.base_headers.clone())
            .body(body.to_vec());
        let resp = s.send(rb).await?;
        let status = resp.status();
        if status.is_success() {
            Ok(())
        } else {
            Err(s.non_2xx(status, resp, None).await)
        }
    }

    /// Ends the stream (the upstream sees the connection close), which ends
    /// the session.
    /// Sends what belongs to no request to `tx` from now on.
    pub(super) fn listen(&self, tx: PumpTx) {
        *self
            .dispatch
            .standalone
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = Some(tx);
    }

    pub(super) fn close(&self, s: &Inner) {
        self.reader.abort();
        self.dispatch.close("the session was closed".to_owned());
        tracing::debug!(upstream = %s.url, "legacy SSE session closed");
    }
}

/// What the stream reader hands to a waiting request.
#[derive(Debug)]
enum Delivery {
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
struct Dispatch {
    state: Mutex<State>,
    /// The session's listener, once it has one.
    standalone: Mutex<Option<PumpTx>>,
}

impl Dispatch {
    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Waits for `id`; `None` if the stream is already closed.
    fn register(
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
    fn closed(&self) -> Option<String> {
        self.lock().closed.clone()
    }

    /// Marks the stream closed; waiting requests see their channel end.
    fn close(&self, reason: String) {
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

    /// Hands a message to the session's listener; gives it back if there is
    /// none (or its queue is full).
    fn to_listener(&self, m: Incoming) -> Result<(), Incoming> {
        let tx = self
            .standalone
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        match tx {
            Some(tx) => tx.try_send(m).map_err(|e| match e {
                mpsc::error::TrySendError::Full(m) | mpsc::error::TrySendError::Closed(m) => m,
            }),
            None => Err(m),
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
struct WaiterGuard {
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

/// What the reader needs to answer a server request nobody waits for.
struct Orphans {
    http: net::Client,
    endpoint: String,
    headers: HeaderMap,
    url: String,
}

/// The session id in an endpoint URI (`session_id`/`sessionId` query
/// parameter), else the endpoint's path and query.
fn session_id_of(endpoint: &url::Url) -> String {
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
async fn read(
    mut resp: net::Response,
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
                let unrelated = n.method != methods::PROGRESS && n.method != methods::LOG_MESSAGE;
                let n = match unrelated {
                    true => match dispatch.to_listener(Incoming::Notification(n)) {
                        Ok(()) => continue,
                        Err(Incoming::Notification(n)) => n,
                        Err(Incoming::Request(_)) => continue,
                    },
                    false => n,
                };
                let token = (n.method == methods::PROGRESS)
                    .then(|| n.params.as_ref()?.get("progressToken").cloned())
                    .flatten();
                match dispatch.route(Delivery::Notification(n), token.as_ref()) {
                    Ok(()) => {}
                    Err(Delivery::Notification(n)) if !unrelated => {
                        let _ = dispatch.to_listener(Incoming::Notification(n));
                    }
                    Err(_) => {
                        tracing::debug!(upstream = %orphans.url, "dropping a notification nobody listens for");
                    }
                }
            }
            Message::Request(r) => {
                if let Err(Delivery::Request(r)) = dispatch.route(Delivery::Request(r), None) {
                    if let Err(Incoming::Request(r)) = dispatch.to_listener(Incoming::Request(r)) {
                        answer_orphan(r, orphans);
                    }
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
