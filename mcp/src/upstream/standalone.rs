//! The session's standalone stream: what the upstream sends outside any
//! request (list changes, resource updates, logging, and requests such as
//! sampling or elicitation that a server sends with no related request).
//!
//! Over Streamable HTTP it is the `GET` stream of the session, opened by
//! [`UpstreamSession::listen`] and kept for the session's life: when it ends
//! or breaks it is opened again, with `Last-Event-ID` once the upstream has
//! named an event, after the stream's `retry` delay (or a backoff while the
//! upstream keeps failing). An upstream that answers `405` does not offer
//! one; a `404` means the session is gone (its next request opens another).
//! Over the legacy SSE transport, the one stream the session already reads
//! carries these messages; `listen` only names where they go.
//!
//! Every message is handed to the listener's handler by one pump task:
//! notifications in order, one at a time; each request in a task of its own
//! (a request may wait long for its answer, and must not hold up what
//! follows), its answer POSTed back on the session.

use std::sync::Arc;
use std::time::Duration;

use http::header::{ACCEPT, CONTENT_TYPE};
use http::{HeaderValue, StatusCode};
use tokio::sync::mpsc;

use super::streamable_http::StreamableHttp;
use super::{Inner, Link, ServerMessageHandler, UpstreamSession};
use crate::jsonrpc::{self, Message, Notification, Parsed, Request};
use crate::net;
use crate::protocol;
use crate::sse::SseDecoder;

/// Messages buffered between a stream's reader and its pump.
pub(super) const PUMP_CAPACITY: usize = 256;
/// The wait before reopening a stream that ended and set no `retry`.
const DEFAULT_REOPEN_DELAY: Duration = Duration::from_millis(500);
/// The longest wait between attempts while the upstream keeps failing.
const MAX_BACKOFF: Duration = Duration::from_secs(30);

/// What became of [`UpstreamSession::listen`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Listening {
    /// The stream is open (or, on the legacy transport, was open already).
    Open,
    /// The upstream offers none: `405`, a session the upstream no longer
    /// knows (`404`), or a stateless (2026-07-28) upstream that refused
    /// `subscriptions/listen`.
    NotOffered,
    /// Opening failed for now (why); it is tried again in the background.
    Retrying(String),
}

/// A message for the pump.
#[derive(Debug)]
pub(super) enum Incoming {
    Notification(Notification),
    Request(Request),
}

/// The pump's sending side (shared with the legacy transport's reader).
pub(super) type PumpTx = mpsc::Sender<Incoming>;

impl UpstreamSession {
    /// Opens the standalone stream and hands everything that arrives there
    /// to `handler`, for as long as the session lives (its `close` or drop
    /// ends the stream). Returns once the upstream has answered the first
    /// attempt (or the session's timeout passed), so that a request sent
    /// next finds the stream open. Calling it again replaces the handler.
    /// On a stateless upstream it opens `subscriptions/listen` instead (see
    /// `listen`).
    pub async fn listen(&self, handler: Arc<dyn ServerMessageHandler>) -> Listening {
        if self.inner.stateless {
            return self.listen_stateless(handler).await;
        }
        let (tx, rx) = mpsc::channel(PUMP_CAPACITY);
        let pump = tokio::spawn(pump(self.inner.clone(), rx, handler)).abort_handle();
        let (outcome, reader) = match &self.inner.transport {
            Link::LegacySse(t) => {
                t.listen(tx);
                (Listening::Open, None)
            }
            Link::StreamableHttp(t) => {
                let (first, outcome) =
                    first_attempt(self.timeout, "the GET", t.open_get(&self.inner, None)).await;
                match first {
                    Err(Refusal::Final) => (outcome, None),
                    first => {
                        let inner = self.inner.clone();
                        let task = tokio::spawn(async move { read(&inner, first.ok(), tx).await });
                        (outcome, Some(task.abort_handle()))
                    }
                }
            }
        };
        if outcome == Listening::NotOffered {
            pump.abort();
        }
        self.replace_listening(std::iter::once(pump).chain(reader).collect());
        outcome
    }

    /// Ends the stream's current tasks, and keeps `tasks` instead.
    pub(super) fn replace_listening(&self, tasks: Vec<tokio::task::AbortHandle>) {
        let mut current = self
            .standalone
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        for old in current.drain(..) {
            old.abort();
        }
        current.extend(tasks);
    }

    /// Ends the standalone stream's tasks.
    pub(super) fn stop_listening(&self) {
        self.replace_listening(Vec::new());
    }
}

/// The first attempt to open a long-lived stream, bounded by `timeout`
/// (`what`: for the message), and what it means for the caller.
pub(super) async fn first_attempt(
    timeout: Duration,
    what: &str,
    open: impl std::future::Future<Output = Result<net::Response, Refusal>>,
) -> (Result<net::Response, Refusal>, Listening) {
    let first = tokio::time::timeout(timeout, open)
        .await
        .unwrap_or_else(|_| {
            Err(Refusal::Retry(format!(
                "no answer to {what} within {} ms",
                timeout.as_millis()
            )))
        });
    let outcome = match &first {
        Ok(_) => Listening::Open,
        Err(Refusal::Final) => Listening::NotOffered,
        Err(Refusal::Retry(why)) => Listening::Retrying(why.clone()),
    };
    (first, outcome)
}

/// Whether an answer is an SSE stream.
pub(super) fn is_sse(resp: &net::Response) -> bool {
    resp.headers()
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.trim_start().starts_with(protocol::CONTENT_TYPE_SSE))
}

/// Why a `GET` gave no stream.
#[derive(Debug)]
pub(super) enum Refusal {
    /// Never again on this session (405, 404).
    Final,
    /// Try again later (why).
    Retry(String),
}

impl StreamableHttp {
    /// One `GET` for the standalone stream (resuming after `last_event_id`).
    pub(super) async fn open_get(
        &self,
        s: &Inner,
        last_event_id: Option<&str>,
    ) -> Result<net::Response, Refusal> {
        let mut headers = self.base_headers.clone();
        headers.insert(ACCEPT, HeaderValue::from_static(protocol::CONTENT_TYPE_SSE));
        headers.remove(CONTENT_TYPE);
        if let Some(v) = last_event_id.and_then(|id| HeaderValue::from_str(id).ok()) {
            headers.insert(protocol::LAST_EVENT_ID, v);
        }
        let resp = s
            .send(self.http.get(&self.target).headers(headers))
            .await
            .map_err(|e| Refusal::Retry(e.to_string()))?;
        let status = resp.status();
        match status {
            StatusCode::METHOD_NOT_ALLOWED | StatusCode::NOT_FOUND => Err(Refusal::Final),
            s if s.is_success() && is_sse(&resp) => Ok(resp),
            s if s.is_success() => Err(Refusal::Retry(format!(
                "HTTP {} without an SSE stream",
                s.as_u16()
            ))),
            s => Err(Refusal::Retry(format!("HTTP {}", s.as_u16()))),
        }
    }
}

/// Reads the standalone stream for the session's life, reopening it.
async fn read(s: &Inner, first: Option<net::Response>, tx: PumpTx) {
    let Link::StreamableHttp(t) = &s.transport else {
        return;
    };
    keep_reading(s, "standalone", first, tx, |last_event_id| async move {
        t.open_get(s, last_event_id.as_deref()).await
    })
    .await;
}

/// Reads a long-lived stream (`what`: for logs) for the session's life:
/// each response to its end, then opens it again with `open` (given the
/// last event id seen, for a resumable stream), after the stream's `retry`
/// or [`DEFAULT_REOPEN_DELAY`], backing off to [`MAX_BACKOFF`] while opening
/// fails. Ends when the pump is gone or the upstream refuses for good.
pub(super) async fn keep_reading<'a, F, Fut>(
    s: &'a Inner,
    what: &str,
    mut resp: Option<net::Response>,
    tx: PumpTx,
    mut open: F,
) where
    F: FnMut(Option<String>) -> Fut,
    Fut: std::future::Future<Output = Result<net::Response, Refusal>> + 'a,
{
    let max_event_bytes = match &s.transport {
        Link::StreamableHttp(t) => t.max_event_bytes,
        Link::LegacySse(_) => return,
    };
    let mut last_event_id: Option<String> = None;
    let mut retry = DEFAULT_REOPEN_DELAY;
    let mut failures = 0u32;
    loop {
        if let Some(r) = resp.take() {
            let mut decoder = SseDecoder::with_max_event_size(max_event_bytes);
            if !drain(s, r, &mut decoder, &tx).await {
                return; // nobody listens any more
            }
            if let Some(id) = decoder.last_event_id() {
                last_event_id = Some(id.to_owned());
            }
            retry = decoder.retry().unwrap_or(retry);
            tracing::debug!(upstream = %s.url, stream = what, "the stream ended; reopening it");
        }
        let wait = if failures == 0 {
            retry
        } else {
            (retry * 2u32.saturating_pow(failures.min(6))).min(MAX_BACKOFF)
        };
        tokio::time::sleep(wait).await;
        match open(last_event_id.clone()).await {
            Ok(r) => {
                failures = 0;
                resp = Some(r);
            }
            Err(Refusal::Final) => {
                tracing::debug!(upstream = %s.url, stream = what, "the upstream no longer offers the stream");
                return;
            }
            Err(Refusal::Retry(why)) => {
                failures += 1;
                if failures == 1 || failures.is_multiple_of(10) {
                    tracing::warn!(upstream = %s.url, stream = what, reason = %why, "could not reopen the upstream's stream; retrying");
                }
            }
        }
    }
}

/// Reads one response of the stream to its end; `false` once the pump is gone.
pub(super) async fn drain(
    s: &Inner,
    mut resp: net::Response,
    decoder: &mut SseDecoder,
    tx: &PumpTx,
) -> bool {
    let mut events = Vec::new();
    loop {
        let done = match resp.chunk().await {
            Ok(Some(chunk)) => {
                if let Err(e) = decoder.feed(&chunk, &mut events) {
                    tracing::warn!(upstream = %s.url, error = %e, "the standalone stream is not SSE; reopening it");
                    true
                } else {
                    false
                }
            }
            Ok(None) => {
                events.extend(decoder.finish());
                true
            }
            Err(e) => {
                tracing::debug!(upstream = %s.url, error = %e, "the standalone stream broke");
                true
            }
        };
        for ev in events.drain(..) {
            if !ev.is_message() || ev.data.trim().is_empty() {
                continue;
            }
            let messages = match jsonrpc::parse(ev.data.as_bytes()) {
                Ok(Parsed::Single(m)) => vec![m],
                Ok(Parsed::Batch(items)) => items.into_iter().flatten().collect(),
                Err(e) => {
                    tracing::warn!(upstream = %s.url, error = %e, "skipping an SSE event that is not JSON-RPC");
                    continue;
                }
            };
            for m in messages {
                let incoming = match m {
                    Message::Notification(n) => Incoming::Notification(n),
                    Message::Request(r) => Incoming::Request(r),
                    _ => {
                        tracing::debug!(upstream = %s.url, "skipping a response on the standalone stream");
                        continue;
                    }
                };
                if tx.send(incoming).await.is_err() {
                    return false;
                }
            }
        }
        if done {
            return true;
        }
    }
}

/// Hands the stream's messages to `handler`.
pub(super) async fn pump(
    inner: Arc<Inner>,
    mut rx: mpsc::Receiver<Incoming>,
    handler: Arc<dyn ServerMessageHandler>,
) {
    while let Some(m) = rx.recv().await {
        match m {
            Incoming::Notification(n) if inner.stateless => {
                if let Some(n) = super::listen::tidy(n) {
                    handler.on_notification(n).await;
                }
            }
            Incoming::Notification(n) => handler.on_notification(n).await,
            Incoming::Request(r) => {
                let (inner, handler) = (inner.clone(), handler.clone());
                tokio::spawn(async move {
                    let method = r.method.clone();
                    if let Err(e) = inner.answer_server_request(r, handler.as_ref()).await {
                        tracing::warn!(upstream = %inner.url, %method, error = %e, "could not answer the upstream's request");
                    }
                });
            }
        }
    }
}
