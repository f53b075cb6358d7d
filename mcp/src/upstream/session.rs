//! Opening an [`UpstreamSession`] (the handshake steps every transport
//! shares) and using it: requests with their deadline, `input_required`
//! rounds and cancellation, notifications, close. This is the only place
//! that matches on a session's transport (`Link`): for the [`Transport`] it
//! reports, and for each of the three operations every transport offers
//! (`Inner::call`, `Inner::post_message`, `Inner::close`); `request_with`
//! writes out `Inner::call`'s match (see there why).

use std::borrow::Cow;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use http::{HeaderMap, HeaderValue};
use serde_json::value::RawValue;
use serde_json::{json, Value};

use super::stateless::MAX_INPUT_ROUNDS;
use super::{
    check_url, legacy_sse, streamable_http, Inner, Link, NoopHandler, ServerMessageHandler,
    Transport, UpstreamClient, UpstreamError, UpstreamSession,
};
use crate::jsonrpc::{self, Id};
use crate::protocol::{methods, STATEFUL_PROTOCOL_VERSIONS};

/// How long a cancelled request's `notifications/cancelled` may take.
const CANCEL_NOTIFY_TIMEOUT: Duration = Duration::from_secs(5);

/// Per-request options for [`UpstreamSession::request_with`].
#[derive(Debug, Clone)]
pub struct RequestOptions {
    /// The deadline; `None` uses the session's (the `timeout` given to
    /// `connect`).
    pub timeout: Option<Duration>,
    /// Stateless upstreams only: resolve `input_required` results through
    /// the handler and retry (default `true`).
    pub resolve_input_required: bool,
    /// Headers for this request's POSTs only (over Streamable HTTP), on top
    /// of the session's: a tool's `Mcp-Param-*` headers
    /// ([`ParamHeaders`](super::ParamHeaders)). Ignored on the legacy SSE
    /// transport.
    pub headers: HeaderMap,
}

impl Default for RequestOptions {
    fn default() -> Self {
        RequestOptions {
            timeout: None,
            resolve_input_required: true,
            headers: HeaderMap::new(),
        }
    }
}

impl UpstreamClient {
    /// Opens a session with the upstream MCP endpoint `url` over Streamable
    /// HTTP.
    ///
    /// `headers` (authorization, …) go on every HTTP request of the session;
    /// `protocol_version` is the version to ask for; `timeout` bounds the
    /// handshake and is the session's default per-request deadline.
    pub async fn connect(
        &self,
        url: &str,
        headers: HeaderMap,
        protocol_version: &str,
        timeout: Duration,
    ) -> Result<UpstreamSession, UpstreamError> {
        self.connect_with_transport(
            url,
            Transport::StreamableHttp,
            headers,
            protocol_version,
            timeout,
        )
        .await
    }

    /// [`connect`](Self::connect) over the given transport.
    ///
    /// With [`Transport::Sse`], `url` is the upstream's SSE endpoint: the
    /// session opens the GET stream, waits for its `endpoint` event (which
    /// must name a URI on the same origin as `url`, so credentials never
    /// travel elsewhere), then POSTs `initialize` and
    /// `notifications/initialized` there. The stateless version is not
    /// available on that transport: asking for it asks for
    /// [`LATEST_STATEFUL_PROTOCOL_VERSION`](crate::protocol::LATEST_STATEFUL_PROTOCOL_VERSION)
    /// instead, and `2024-11-05` may be asked for and answered. The returned
    /// session works as any other.
    pub async fn connect_with_transport(
        &self,
        url: &str,
        transport: Transport,
        headers: HeaderMap,
        protocol_version: &str,
        timeout: Duration,
    ) -> Result<UpstreamSession, UpstreamError> {
        check_url(url)?;
        let handshake = async {
            match transport {
                Transport::StreamableHttp => {
                    streamable_http::connect(self, url, &headers, protocol_version, timeout).await
                }
                Transport::Sse => {
                    legacy_sse::connect(self, url, &headers, protocol_version, timeout).await
                }
            }
        };
        match tokio::time::timeout(timeout, handshake).await {
            Ok(r) => r,
            Err(_) => Err(UpstreamError::Timeout {
                url: url.to_owned(),
                after: timeout,
            }),
        }
    }

    /// Sends `initialize` and checks the version the upstream chose: one of the
    /// stateful versions, or `also_accept` (the legacy transport's). Returns
    /// the result, the negotiated version and the session id header of the
    /// answer.
    pub(super) async fn send_initialize(
        &self,
        inner: &Inner,
        protocol_version: &str,
        also_accept: Option<&str>,
    ) -> Result<(Value, String, Option<HeaderValue>), UpstreamError> {
        let params = json!({
            "protocolVersion": protocol_version,
            "capabilities": self.capabilities,
            "clientInfo": self.client_info,
        });
        let (raw, session_header) = inner
            .call(
                &Id::Number(0),
                methods::INITIALIZE,
                Some(&params),
                &NoopHandler,
            )
            .await?;
        let result = jsonrpc::value_of(&raw);
        let negotiated = match result.get("protocolVersion").and_then(Value::as_str) {
            Some(v) if STATEFUL_PROTOCOL_VERSIONS.contains(&v) || also_accept == Some(v) => {
                v.to_owned()
            }
            Some(v) => {
                return Err(inner.protocol(format!(
                    "the upstream chose protocol version {v:?}, which fleetgate does not speak (it asked for {protocol_version})"
                )))
            }
            None => {
                return Err(inner.protocol(
                    "the initialize result has no string `protocolVersion`".to_owned(),
                ))
            }
        };
        Ok((result, negotiated, session_header))
    }
}

/// The handshake's last step on every stateful transport:
/// `notifications/initialized`, then the session.
pub(super) async fn initialized(
    result: Value,
    inner: Inner,
    timeout: Duration,
) -> Result<UpstreamSession, UpstreamError> {
    inner
        .post_message(
            &jsonrpc::encode_notification(methods::INITIALIZED, None),
            methods::INITIALIZED,
            None,
        )
        .await?;
    Ok(UpstreamSession::new(result, inner, timeout))
}

impl UpstreamSession {
    /// A session from an `initialize` result.
    fn new(result: Value, inner: Inner, timeout: Duration) -> UpstreamSession {
        let server_info = result.get("serverInfo").cloned().unwrap_or(Value::Null);
        UpstreamSession::with_identity(result, server_info, inner, timeout)
    }

    /// A session whose server identity is `server_info`, with capabilities
    /// and instructions from `result`.
    pub(super) fn with_identity(
        result: Value,
        server_info: Value,
        inner: Inner,
        timeout: Duration,
    ) -> UpstreamSession {
        UpstreamSession {
            server_capabilities: result
                .get("capabilities")
                .cloned()
                .unwrap_or_else(|| json!({})),
            server_info,
            instructions: result
                .get("instructions")
                .and_then(Value::as_str)
                .map(str::to_owned),
            init_result: result,
            inner: Arc::new(inner),
            timeout,
            next_id: AtomicI64::new(1),
            standalone: Default::default(),
            listen: Default::default(),
        }
    }

    /// The upstream MCP endpoint (for the SSE transport: the SSE URL).
    pub fn url(&self) -> &str {
        &self.inner.url
    }

    /// The upstream's session id, if it minted one (for the SSE transport:
    /// the `session_id` of its endpoint URI).
    pub fn session_id(&self) -> Option<&str> {
        self.inner.session_id.as_deref()
    }

    /// The version in use (negotiated, or the stateless one).
    pub fn protocol_version(&self) -> &str {
        &self.inner.protocol_version
    }

    /// How the session talks to its upstream.
    pub fn transport(&self) -> Transport {
        match self.inner.transport {
            Link::StreamableHttp(_) => Transport::StreamableHttp,
            Link::LegacySse(_) => Transport::Sse,
        }
    }

    /// `true` for a stateless (2026-07-28) upstream.
    pub fn is_stateless(&self) -> bool {
        self.inner.stateless
    }

    /// The server's `capabilities`.
    pub fn server_capabilities(&self) -> &Value {
        &self.server_capabilities
    }

    /// The server's `serverInfo` (`Value::Null` if it sent none).
    pub fn server_info(&self) -> &Value {
        &self.server_info
    }

    /// The server's `instructions`.
    pub fn instructions(&self) -> Option<&str> {
        self.instructions.as_deref()
    }

    /// The whole `initialize` (or `server/discover`) result.
    pub fn init_result(&self) -> &Value {
        &self.init_result
    }

    /// The default per-request deadline.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    pub(super) fn next_id(&self) -> Id {
        Id::Number(self.next_id.fetch_add(1, Ordering::Relaxed))
    }

    /// Sends a request and returns its `result` (see the module docs for
    /// how server → client messages reach `handler`).
    pub async fn request(
        &self,
        method: &str,
        params: Option<Value>,
        handler: &dyn ServerMessageHandler,
    ) -> Result<Value, UpstreamError> {
        let result = self
            .request_with(method, params.as_ref(), handler, &RequestOptions::default())
            .await?;
        Ok(jsonrpc::value_of(&result))
    }

    /// [`request`](Self::request) with options; the params are borrowed (a
    /// caller that may send them again keeps them without a copy) and the
    /// result comes back as the upstream wrote it.
    pub async fn request_with(
        &self,
        method: &str,
        params: Option<&Value>,
        handler: &dyn ServerMessageHandler,
        options: &RequestOptions,
    ) -> Result<Box<RawValue>, UpstreamError> {
        let timeout = options.timeout.unwrap_or(self.timeout);
        let exchange = async {
            let mut params = params.map(Cow::Borrowed);
            let mut rounds = 0;
            loop {
                let id = self.next_id();
                let mut guard = CancelOnDrop {
                    inner: &self.inner,
                    id: &id,
                    armed: !self.inner.stateless,
                };
                // `Inner::call`'s match, written out: the transport's future
                // sits in this one directly, not inside another that would
                // store the same arguments again (the exchange is moved into
                // its box on every request).
                let outcome = match &self.inner.transport {
                    Link::StreamableHttp(t) => {
                        t.call(
                            &self.inner,
                            &id,
                            method,
                            params.as_deref(),
                            handler,
                            &options.headers,
                        )
                        .await
                    }
                    Link::LegacySse(t) => {
                        Box::pin(t.call(&self.inner, &id, method, params.as_deref(), handler))
                            .await
                            .map(|v| (v, None))
                    }
                };
                guard.armed = false;
                let (raw, _) = outcome?;
                if !(self.inner.stateless && options.resolve_input_required) {
                    return Ok(raw);
                }
                let result = jsonrpc::value_of(&raw);
                if result.get("resultType").and_then(Value::as_str) != Some("input_required") {
                    return Ok(raw);
                }
                rounds += 1;
                if rounds > MAX_INPUT_ROUNDS {
                    return Err(self.inner.protocol(format!(
                        "{method} still needs input after {MAX_INPUT_ROUNDS} rounds"
                    )));
                }
                let asked = params.map(Cow::into_owned);
                params = Some(Cow::Owned(
                    Box::pin(self.inner.resolve_input(asked, &result, handler)).await?,
                ));
            }
        };
        // Boxed: the exchange is a large future, and `timeout` would move it.
        match tokio::time::timeout(timeout, Box::pin(exchange)).await {
            Ok(r) => r,
            Err(_) => Err(UpstreamError::Timeout {
                url: self.inner.url.clone(),
                after: timeout,
            }),
        }
    }

    /// Sends a notification (the upstream answers 202).
    pub async fn notify(&self, method: &str, params: Option<Value>) -> Result<(), UpstreamError> {
        let body = jsonrpc::encode_notification(method, params.as_ref());
        let send = self.inner.post_message(&body, method, params.as_ref());
        match tokio::time::timeout(self.timeout, send).await {
            Ok(r) => r,
            Err(_) => Err(UpstreamError::Timeout {
                url: self.inner.url.clone(),
                after: self.timeout,
            }),
        }
    }

    /// Ends the session. Over Streamable HTTP that is a DELETE, and a 404
    /// (already gone) or 405 (the upstream does not allow it) counts as done;
    /// nothing is sent for a stateless upstream or one that minted no
    /// session id. On the SSE transport, closing the stream ends the session.
    pub async fn close(&self) -> Result<(), UpstreamError> {
        self.stop_listening();
        match tokio::time::timeout(self.timeout, self.inner.close()).await {
            Ok(r) => r,
            Err(_) => Err(UpstreamError::Timeout {
                url: self.inner.url.clone(),
                after: self.timeout,
            }),
        }
    }
}

impl Inner {
    /// One request/response exchange (no deadline: callers apply it).
    /// Returns the result and, over Streamable HTTP, the session id header
    /// of the POST's answer.
    pub(super) async fn call(
        &self,
        id: &Id,
        method: &str,
        params: Option<&Value>,
        handler: &dyn ServerMessageHandler,
    ) -> Result<(Box<RawValue>, Option<HeaderValue>), UpstreamError> {
        match &self.transport {
            Link::StreamableHttp(t) => {
                t.call(self, id, method, params, handler, &HeaderMap::new())
                    .await
            }
            // Boxed: the legacy exchange is rare and would grow every call.
            Link::LegacySse(t) => Box::pin(t.call(self, id, method, params, handler))
                .await
                .map(|v| (v, None)),
        }
    }

    /// Sends a notification or a response (the upstream answers 202).
    pub(super) async fn post_message(
        &self,
        body: &[u8],
        method: &str,
        params: Option<&Value>,
    ) -> Result<(), UpstreamError> {
        match &self.transport {
            Link::StreamableHttp(t) => t.post_message(self, body, method, params).await,
            Link::LegacySse(t) => t.post_message(self, body).await,
        }
    }

    /// Ends the session on the upstream's side.
    async fn close(&self) -> Result<(), UpstreamError> {
        match &self.transport {
            Link::StreamableHttp(t) => t.close(self).await,
            Link::LegacySse(t) => {
                t.close(self);
                Ok(())
            }
        }
    }
}

/// Sends `notifications/cancelled` if a request is dropped mid-flight.
struct CancelOnDrop<'a> {
    inner: &'a Arc<Inner>,
    id: &'a Id,
    armed: bool,
}

impl Drop for CancelOnDrop<'_> {
    fn drop(&mut self) {
        if !self.armed {
            return;
        }
        let Ok(rt) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let inner = Arc::clone(self.inner);
        let params = json!({
            "requestId": self.id,
            "reason": "the gateway stopped waiting for this request",
        });
        rt.spawn(async move {
            let body = jsonrpc::encode_notification(methods::CANCELLED, Some(&params));
            let send = inner.post_message(&body, methods::CANCELLED, None);
            if let Ok(Err(e)) = tokio::time::timeout(CANCEL_NOTIFY_TIMEOUT, send).await {
                tracing::debug!(error = %e, "could not send notifications/cancelled upstream");
            }
        });
    }
}
