//! Streamable HTTP (2025-03-26 and later): one endpoint for POST, GET and
//! DELETE. Every message is POSTed; the upstream answers a request with
//! `application/json` or an SSE stream (which may carry its requests and
//! notifications before the response), a notification or a response with
//! 202. The session id minted at `initialize` goes on every request; DELETE
//! ends the session.
//!
//! If an SSE answer on a stateful session ends without the response after
//! the upstream set an event id, the session resumes it with a GET carrying
//! `Last-Event-ID` (waiting the stream's `retry` delay, at most
//! [`MAX_RESUME_ATTEMPTS`] times in a row without new events), as the
//! 2025-11-25 transport allows.

use std::time::Duration;

use http::header::{ACCEPT, CONTENT_TYPE};
use http::{HeaderMap, HeaderValue, StatusCode};
use serde_json::value::RawValue;
use serde_json::Value;

use super::session::initialized;
use super::{
    stateless, Inner, Link, ServerMessageHandler, UpstreamClient, UpstreamError, UpstreamSession,
};
use crate::jsonrpc::{self, Id, Message, Parsed};
use crate::net;
use crate::protocol::{
    self, LATEST_STATEFUL_PROTOCOL_VERSION, MCP_METHOD, MCP_NAME, MCP_PROTOCOL_VERSION,
    MCP_SESSION_ID,
};
use crate::sse::{SseDecoder, SseEvent};

/// How many times in a row an SSE answer is resumed without a new event.
pub const MAX_RESUME_ATTEMPTS: u32 = 5;
/// The wait before resuming a stream that set no `retry`.
const DEFAULT_RESUME_DELAY: Duration = Duration::from_millis(100);

/// A session's Streamable HTTP endpoint.
#[derive(Debug)]
pub(super) struct StreamableHttp {
    pub(super) http: net::Client,
    /// The endpoint, parsed once (not on every request).
    pub(super) target: http::Uri,
    /// Caller headers + Accept + Content-Type + session id + version.
    pub(super) base_headers: HeaderMap,
    /// Sent in a stateless request's `_meta`.
    pub(super) client_info: Value,
    pub(super) client_capabilities: Value,
    max_body_bytes: usize,
    pub(super) max_event_bytes: usize,
}

/// The handshake: `server/discover` for the stateless version (falling back
/// to `initialize` for a server that turns out not to be stateless), else
/// `initialize`.
pub(super) async fn connect(
    client: &UpstreamClient,
    url: &str,
    headers: &HeaderMap,
    protocol_version: &str,
    timeout: Duration,
) -> Result<UpstreamSession, UpstreamError> {
    if !protocol::is_supported_version(protocol_version) {
        return Err(UpstreamError::Protocol {
            url: url.to_owned(),
            reason: format!(
                "fleetgate does not speak MCP protocol version {protocol_version:?} (it speaks {})",
                protocol::SUPPORTED_PROTOCOL_VERSIONS.join(", ")
            ),
        });
    }
    if protocol::is_stateless_version(protocol_version) {
        if let Some(session) = stateless::discover(client, url, headers, timeout).await? {
            return Ok(session);
        }
        tracing::info!(
            upstream = url,
            "upstream is not a stateless (2026-07-28) server; falling back to initialize"
        );
        return initialize(
            client,
            url,
            headers,
            LATEST_STATEFUL_PROTOCOL_VERSION,
            timeout,
        )
        .await;
    }
    initialize(client, url, headers, protocol_version, timeout).await
}

async fn initialize(
    client: &UpstreamClient,
    url: &str,
    headers: &HeaderMap,
    protocol_version: &str,
    timeout: Duration,
) -> Result<UpstreamSession, UpstreamError> {
    let pre = open(client, url, headers, protocol_version, None, false, false)?;
    let (result, negotiated, session_header) =
        client.send_initialize(&pre, protocol_version, None).await?;
    let session_id = match session_header {
        None => None,
        Some(raw) => match raw.to_str() {
            Ok(s) if protocol::is_valid_upstream_session_id(s) => Some(s.to_owned()),
            _ => {
                return Err(pre.protocol(format!(
                    "the session id it minted ({MCP_SESSION_ID}) is not 1-1024 visible ASCII characters"
                )))
            }
        },
    };
    let inner = open(client, url, headers, &negotiated, session_id, false, true)?;
    initialized(result, inner, timeout).await
}

/// A session's [`Inner`] over Streamable HTTP: the headers every request
/// carries (`send_version`: the `MCP-Protocol-Version` header, once a
/// version is agreed or for the stateless version), the endpoint parsed.
pub(super) fn open(
    client: &UpstreamClient,
    url: &str,
    headers: &HeaderMap,
    protocol_version: &str,
    session_id: Option<String>,
    stateless: bool,
    send_version: bool,
) -> Result<Inner, UpstreamError> {
    let mut base = headers.clone();
    base.insert(ACCEPT, HeaderValue::from_static(protocol::ACCEPT_POST));
    base.insert(
        CONTENT_TYPE,
        HeaderValue::from_static(protocol::CONTENT_TYPE_JSON),
    );
    if send_version {
        let v = HeaderValue::from_str(protocol_version).map_err(|_| UpstreamError::Protocol {
            url: url.to_owned(),
            reason: format!("protocol version {protocol_version:?} is not a valid header value"),
        })?;
        base.insert(MCP_PROTOCOL_VERSION, v);
    }
    if let Some(sid) = &session_id {
        let v = HeaderValue::from_str(sid).map_err(|_| UpstreamError::Protocol {
            url: url.to_owned(),
            reason: "the session id is not a valid header value".to_owned(),
        })?;
        base.insert(MCP_SESSION_ID, v);
    }
    let target = net::parse_uri(url).map_err(|e| UpstreamError::Unreachable {
        url: url.to_owned(),
        reason: e.to_string(),
    })?;
    Ok(Inner {
        url: url.to_owned(),
        session_id,
        protocol_version: protocol_version.to_owned(),
        stateless,
        transport: Link::StreamableHttp(StreamableHttp {
            http: client.http.clone(),
            target,
            base_headers: base,
            client_info: client.client_info.clone(),
            client_capabilities: client.capabilities.clone(),
            max_body_bytes: client.max_body_bytes,
            max_event_bytes: client.max_event_bytes,
        }),
    })
}

impl StreamableHttp {
    /// Headers for a POST: base + (stateless) `Mcp-Method`/`Mcp-Name` +
    /// the request's own.
    pub(super) fn post_headers(
        &self,
        s: &Inner,
        method: &str,
        params: Option<&Value>,
        extra: &HeaderMap,
    ) -> HeaderMap {
        let mut h = self.base_headers.clone();
        for (k, v) in extra {
            h.insert(k.clone(), v.clone());
        }
        if s.stateless {
            if let Ok(v) = HeaderValue::from_str(&protocol::encode_header_value(method)) {
                h.insert(MCP_METHOD, v);
            }
            if let Some(name) = protocol::mcp_name_of(method, params) {
                if let Ok(v) = HeaderValue::from_str(&protocol::encode_header_value(name)) {
                    h.insert(MCP_NAME, v);
                }
            }
        }
        h
    }

    /// POSTs a notification or a response; the upstream answers 202.
    pub(super) async fn post_message(
        &self,
        s: &Inner,
        body: &[u8],
        method: &str,
        params: Option<&Value>,
    ) -> Result<(), UpstreamError> {
        let rb = self
            .http
            .post(&self.target)
            .headers(self.post_headers(s, method, params, &HeaderMap::new()))
            .body(body.to_vec());
        let resp = s.send(rb).await?;
        let status = resp.status();
        if status.is_success() {
            Ok(())
        } else {
            Err(s.non_2xx(status, resp, None).await)
        }
    }

    /// DELETE, if the upstream minted a session id; 404 (already gone) and
    /// 405 (not allowed) count as done.
    pub(super) async fn close(&self, s: &Inner) -> Result<(), UpstreamError> {
        let Some(session_id) = &s.session_id else {
            return Ok(());
        };
        let resp = s
            .send(
                self.http
                    .delete(&self.target)
                    .headers(self.base_headers.clone()),
            )
            .await?;
        let status = resp.status();
        if status.is_success()
            || status == StatusCode::NOT_FOUND
            || status == StatusCode::METHOD_NOT_ALLOWED
        {
            tracing::debug!(upstream = %s.url, session = %session_id, "upstream session closed");
            Ok(())
        } else {
            Err(s.non_2xx(status, resp, None).await)
        }
    }

    /// One request/response exchange. Returns the result and the session id
    /// header of the POST's answer.
    pub(super) async fn call(
        &self,
        s: &Inner,
        id: &Id,
        method: &str,
        params: Option<&Value>,
        handler: &dyn ServerMessageHandler,
        extra: &HeaderMap,
    ) -> Result<(Box<RawValue>, Option<HeaderValue>), UpstreamError> {
        let with_meta;
        let params = if s.stateless {
            with_meta = stateless::with_meta(self, &s.protocol_version, params);
            with_meta.as_ref()
        } else {
            params
        };
        let body = jsonrpc::encode_request(id, method, params);
        let rb = self
            .http
            .post(&self.target)
            .headers(self.post_headers(s, method, params, extra))
            .body(body);
        let resp = s.send(rb).await?;
        let status = resp.status();
        let session_header = resp.headers().get(MCP_SESSION_ID).cloned();
        if !status.is_success() {
            return Err(Box::pin(s.non_2xx(status, resp, Some(id))).await);
        }
        if status == StatusCode::ACCEPTED || status == StatusCode::NO_CONTENT {
            return Err(s.protocol(format!(
                "it answered request {id} ({method}) with HTTP {} and no response",
                status.as_u16()
            )));
        }
        let content_type = resp
            .headers()
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(';').next())
            .map(|v| v.trim().to_ascii_lowercase())
            .unwrap_or_default();
        let result = match content_type.as_str() {
            protocol::CONTENT_TYPE_JSON => self.read_json_answer(s, resp, id).await,
            protocol::CONTENT_TYPE_SSE => {
                Box::pin(self.read_sse_answer(s, resp, id, handler)).await
            }
            other => Err(s.protocol(format!(
                "it answered request {id} ({method}) with content type {other:?}; expected application/json or text/event-stream"
            ))),
        }?;
        Ok((result, session_header))
    }

    async fn read_json_answer(
        &self,
        s: &Inner,
        mut resp: net::Response,
        id: &Id,
    ) -> Result<Box<RawValue>, UpstreamError> {
        let too_large = || {
            s.protocol(format!(
                "its response body is larger than {} bytes",
                self.max_body_bytes
            ))
        };
        if resp
            .content_length()
            .is_some_and(|n| n > self.max_body_bytes as u64)
        {
            return Err(too_large());
        }
        let body = resp.bytes(self.max_body_bytes).await.map_err(|e| match e {
            net::BodyError::TooLarge => too_large(),
            net::BodyError::Broken(e) => {
                s.network_error(&e, "the connection broke while reading the response")
            }
        })?;
        let parsed = jsonrpc::parse(&body).map_err(|e| {
            s.protocol(format!(
                "its JSON answer to request {id} is not JSON-RPC: {e}"
            ))
        })?;
        let found = match parsed {
            Parsed::Single(m) => answer_of(s, m, id),
            Parsed::Batch(items) => items
                .into_iter()
                .flatten()
                .find_map(|m| answer_of(s, m, id)),
        };
        found.unwrap_or_else(|| {
            Err(s.protocol(format!(
                "its JSON answer does not contain the response to request {id}"
            )))
        })
    }

    async fn read_sse_answer(
        &self,
        s: &Inner,
        mut resp: net::Response,
        id: &Id,
        handler: &dyn ServerMessageHandler,
    ) -> Result<Box<RawValue>, UpstreamError> {
        let mut decoder = SseDecoder::with_max_event_size(self.max_event_bytes);
        let mut events = Vec::new();
        let mut resumes = 0u32;
        loop {
            // Read this stream to its end.
            let broken = loop {
                match resp.chunk().await {
                    Ok(Some(chunk)) => {
                        decoder
                            .feed(&chunk, &mut events)
                            .map_err(|e| s.protocol(format!("its SSE stream: {e}")))?;
                        if !events.is_empty() {
                            resumes = 0;
                        }
                        for ev in events.drain(..) {
                            if let Some(answer) = on_event(s, ev, id, handler).await? {
                                return answer;
                            }
                        }
                    }
                    Ok(None) => {
                        if let Some(ev) = decoder.finish() {
                            if let Some(answer) = on_event(s, ev, id, handler).await? {
                                return answer;
                            }
                        }
                        break None;
                    }
                    Err(e) => {
                        decoder.finish();
                        break Some(s.network_error(
                            &e,
                            "the connection broke while reading the SSE stream",
                        ));
                    }
                }
            };
            // The stream ended without our response.
            let last_id = decoder.last_event_id().map(str::to_owned);
            match last_id {
                Some(last_id) if !s.stateless && resumes < MAX_RESUME_ATTEMPTS => {
                    resumes += 1;
                    tokio::time::sleep(decoder.retry().unwrap_or(DEFAULT_RESUME_DELAY)).await;
                    resp = self.resume(s, &last_id, id).await?;
                }
                _ => {
                    return Err(broken.unwrap_or_else(|| {
                        s.protocol(format!(
                            "its SSE stream ended before the response to request {id}"
                        ))
                    }))
                }
            }
        }
    }

    /// GET with `Last-Event-ID` to resume an SSE answer.
    async fn resume(
        &self,
        s: &Inner,
        last_event_id: &str,
        id: &Id,
    ) -> Result<net::Response, UpstreamError> {
        tracing::debug!(upstream = %s.url, %last_event_id, request = %id, "resuming an SSE answer");
        let mut headers = self.base_headers.clone();
        headers.insert(ACCEPT, HeaderValue::from_static(protocol::CONTENT_TYPE_SSE));
        headers.remove(CONTENT_TYPE);
        let value = HeaderValue::from_str(last_event_id)
            .map_err(|_| s.protocol("its SSE event id is not a valid header value".to_owned()))?;
        headers.insert(protocol::LAST_EVENT_ID, value);
        let resp = s.send(self.http.get(&self.target).headers(headers)).await?;
        let status = resp.status();
        if !status.is_success() {
            return Err(match s.non_2xx(status, resp, None).await {
                UpstreamError::Http { status, body, .. } => s.protocol(format!(
                    "its SSE stream ended before the response to request {id}, and resuming it was refused (HTTP {status}: {body})"
                )),
                other => other,
            });
        }
        Ok(resp)
    }
}

/// The response to request `id` in a message, if it is one.
fn answer_of(s: &Inner, msg: Message, id: &Id) -> Option<Result<Box<RawValue>, UpstreamError>> {
    match msg {
        Message::Response(r) if r.id == *id => Some(Ok(r.result)),
        Message::Error(e) if e.id == *id || e.id.is_null() => Some(Err(UpstreamError::Rpc {
            url: s.url.clone(),
            error: e.error,
        })),
        _ => None,
    }
}

/// Handles one SSE event of an answer; `Some(answer)` once the response
/// arrived.
async fn on_event(
    s: &Inner,
    ev: SseEvent,
    id: &Id,
    handler: &dyn ServerMessageHandler,
) -> Result<Option<Result<Box<RawValue>, UpstreamError>>, UpstreamError> {
    if !ev.is_message() || ev.data.trim().is_empty() {
        return Ok(None);
    }
    let messages = match jsonrpc::parse(ev.data.as_bytes()) {
        Ok(Parsed::Single(m)) => vec![m],
        Ok(Parsed::Batch(items)) => items.into_iter().flatten().collect(),
        Err(e) => {
            tracing::warn!(upstream = %s.url, error = %e, "skipping an SSE event that is not JSON-RPC");
            return Ok(None);
        }
    };
    for msg in messages {
        match msg {
            Message::Notification(n) => handler.on_notification(n).await,
            Message::Request(r) => s.answer_server_request(r, handler).await?,
            other => {
                if let Some(answer) = answer_of(s, other, id) {
                    return Ok(Some(answer));
                }
                tracing::warn!(upstream = %s.url, request = %id, "skipping a response to another request on an SSE stream");
            }
        }
    }
    Ok(None)
}
