//! The upstream side: an MCP client speaking Streamable HTTP to one upstream
//! MCP server.
//!
//! - [`UpstreamClient`] holds the HTTP connection pool and what fleetgate says
//!   about itself (`clientInfo`, client capabilities, size limits). Cheap to
//!   clone; share one per process.
//! - [`UpstreamClient::connect`] opens an [`UpstreamSession`]: for a stateful
//!   version (2025-03-26 … 2025-11-25) it sends `initialize` and then
//!   `notifications/initialized`, and keeps the `Mcp-Session-Id`, the
//!   negotiated version and the server's capabilities/`serverInfo`; for the
//!   stateless version (2026-07-28) it sends `server/discover` instead and, if
//!   the upstream turns out to be a legacy server, falls back to `initialize`
//!   with [`LATEST_STATEFUL_PROTOCOL_VERSION`] as the 2026-07-28 spec's
//!   backward-compatibility section describes.
//! - [`UpstreamSession::request`] sends one request and returns its `result`,
//!   whether the upstream answers with `application/json` or with an SSE
//!   stream. Requests on one session may run concurrently (`&self`).
//!
//! # Server → client messages
//! While an SSE answer is streaming, the upstream may send notifications
//! (progress, logging, list changes…) and requests (`sampling/createMessage`,
//! `elicitation/create`, `roots/list`, `ping`) before the final response. Each
//! is handed, in stream order and one at a time, to the
//! [`ServerMessageHandler`] passed to `request`; the stream is not read
//! further until the handler returns. For a request, the handler's
//! `Ok(result)`/`Err(error)` is POSTed back to the upstream on the same session
//! as a JSON-RPC response (the upstream answers 202), and reading resumes.
//! The handler is an object-safe trait whose methods return boxed futures
//! ([`BoxFuture`]); [`channel_handler`] adapts it to an mpsc channel (each
//! request carries a oneshot for the answer) for callers that would rather
//! relay from another task. [`NoopHandler`] drops notifications, answers
//! `ping` with `{}` and everything else with -32601.
//!
//! For a stateless (2026-07-28) upstream there are no server → client
//! requests on streams; instead a `tools/call`, `resources/read` or
//! `prompts/get` can return an `InputRequiredResult` (`resultType:
//! "input_required"`, multi round-trip requests). By default the session
//! resolves it through the same handler: each entry of `inputRequests` is
//! passed to [`ServerMessageHandler::on_request`] with the entry's key as a
//! string id, and the original request is retried (new id) with
//! `inputResponses` and the echoed `requestState`. Turn this off with
//! [`RequestOptions::resolve_input_required`] to get the interim result back.
//!
//! # Errors, time, cancellation
//! Every failure is an [`UpstreamError`] whose message names the upstream URL;
//! see its variants for the mapping. The deadline of a request covers the
//! whole exchange, including the time handlers take. If a request on a
//! stateful session is abandoned before its response (deadline passed or the
//! future dropped) a `notifications/cancelled` is sent to the upstream in the
//! background (best effort, when a tokio runtime is running). On a stateless
//! session closing the stream is the cancellation, which dropping does.
//!
//! If an SSE answer on a stateful session ends without the response after the
//! upstream set an event id, the session resumes it with a GET carrying
//! `Last-Event-ID` (waiting the stream's `retry` delay, at most
//! [`MAX_RESUME_ATTEMPTS`] times in a row without new events), as the
//! 2025-11-25 transport allows.
//!
//! # Not done (yet)
//! - TODO: the standalone GET stream (server messages outside any request)
//!   and the 2026-07-28 `subscriptions/listen` stream are not opened.
//! - TODO: 2026-07-28 `x-mcp-header` tool parameters (`Mcp-Param-*` headers)
//!   are not mirrored: that needs the tool's `inputSchema` at call time.
//!   `Mcp-Method` and `Mcp-Name` are sent.
//! - https upstreams need this crate's `rustls` feature (off by default to
//!   keep the build lean); without it they fail with `Unreachable`.

use std::borrow::Cow;
use std::collections::HashSet;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use http::header::{ACCEPT, CONTENT_TYPE};
use http::{HeaderMap, HeaderValue, StatusCode};
use serde_json::value::RawValue;
use serde_json::{json, Map, Value};
use tokio::sync::{mpsc, oneshot};

use crate::jsonrpc::{
    self, ErrorObject, ErrorResponse, Id, Message, Notification, Parsed, Request, METHOD_NOT_FOUND,
};
use crate::legacy::{self, Legacy, Orphans, LEGACY_PROTOCOL_VERSION};
use crate::net;
use crate::protocol::{
    self, error_codes, meta, methods, LATEST_STATEFUL_PROTOCOL_VERSION, MCP_METHOD, MCP_NAME,
    MCP_PROTOCOL_VERSION, MCP_SESSION_ID, STATEFUL_PROTOCOL_VERSIONS, STATELESS_PROTOCOL_VERSION,
};
use crate::sse::{SseDecoder, SseEvent};

/// A boxed, `Send` future (what [`ServerMessageHandler`] methods return).
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// How many times in a row an SSE answer is resumed without a new event.
pub const MAX_RESUME_ATTEMPTS: u32 = 5;
/// How many `input_required` rounds one request may go through.
pub const MAX_INPUT_ROUNDS: u32 = 16;
/// How many pages [`UpstreamSession::list_all`] follows.
pub const MAX_PAGES: usize = 1000;
const DEFAULT_RESUME_DELAY: Duration = Duration::from_millis(100);
const ERROR_BODY_READ_LIMIT: usize = 64 * 1024;
const BODY_EXCERPT_CHARS: usize = 200;
const CANCEL_NOTIFY_TIMEOUT: Duration = Duration::from_secs(5);

/// Receives what the upstream sends before the final response of a request.
///
/// Both methods have defaults: notifications are dropped; `ping` is answered
/// with `{}` and other requests with -32601 (method not found).
pub trait ServerMessageHandler: Send + Sync {
    /// A notification (`notifications/progress`, `notifications/message`, …).
    fn on_notification(&self, notification: Notification) -> BoxFuture<'_, ()> {
        let _ = notification;
        Box::pin(async {})
    }

    /// A request (`sampling/createMessage`, `elicitation/create`,
    /// `roots/list`, `ping`, or an MRTR input request). What it returns is
    /// sent back as the `result` or the `error` of the response.
    fn on_request(&self, request: Request) -> BoxFuture<'_, Result<Value, ErrorObject>> {
        Box::pin(async move { default_answer(&request) })
    }
}

pub(crate) fn default_answer(request: &Request) -> Result<Value, ErrorObject> {
    if request.method == methods::PING {
        Ok(json!({}))
    } else {
        Err(ErrorObject::method_not_found(&request.method))
    }
}

/// Drops notifications, answers `ping`, refuses other requests.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoopHandler;

impl ServerMessageHandler for NoopHandler {}

/// A server → client message relayed through [`channel_handler`].
#[derive(Debug)]
pub enum ServerMessage {
    /// A notification; nothing to answer.
    Notification(Notification),
    /// A request; send the answer on `reply` (dropping it answers -32603).
    Request {
        /// The upstream's request.
        request: Request,
        /// Where the answer goes.
        reply: oneshot::Sender<Result<Value, ErrorObject>>,
    },
}

/// A [`ServerMessageHandler`] that forwards every message into a channel.
#[derive(Debug, Clone)]
pub struct ChannelHandler {
    tx: mpsc::Sender<ServerMessage>,
}

/// A handler and the receiving end of its channel (bounded to `capacity`).
/// If the receiver is gone, notifications are dropped and requests get the
/// default answers of [`NoopHandler`].
pub fn channel_handler(capacity: usize) -> (ChannelHandler, mpsc::Receiver<ServerMessage>) {
    let (tx, rx) = mpsc::channel(capacity.max(1));
    (ChannelHandler { tx }, rx)
}

impl ServerMessageHandler for ChannelHandler {
    fn on_notification(&self, notification: Notification) -> BoxFuture<'_, ()> {
        Box::pin(async move {
            let _ = self
                .tx
                .send(ServerMessage::Notification(notification))
                .await;
        })
    }

    fn on_request(&self, request: Request) -> BoxFuture<'_, Result<Value, ErrorObject>> {
        Box::pin(async move {
            let (reply, answer) = oneshot::channel();
            match self
                .tx
                .send(ServerMessage::Request { request, reply })
                .await
            {
                Ok(()) => answer.await.unwrap_or_else(|_| {
                    Err(ErrorObject::internal_error(
                        "the client went away before answering this request",
                    ))
                }),
                Err(mpsc::error::SendError(ServerMessage::Request { request, .. })) => {
                    default_answer(&request)
                }
                Err(_) => Err(ErrorObject::internal_error("handler channel closed")),
            }
        })
    }
}

/// Everything that can go wrong talking to an upstream. Every message names
/// the upstream URL.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum UpstreamError {
    /// The upstream answered with a JSON-RPC error (forward `error` as is).
    #[error("upstream {url} answered with an error: {error}")]
    Rpc {
        /// The upstream URL.
        url: String,
        /// The upstream's error object.
        error: ErrorObject,
    },
    /// The upstream answered with a non-2xx HTTP status.
    #[error("upstream {url} answered HTTP {status}: {body}")]
    Http {
        /// The upstream URL.
        url: String,
        /// The HTTP status.
        status: u16,
        /// The start of the body (at most 200 characters).
        body: String,
    },
    /// No connection could be made, or it broke.
    #[error("upstream {url} is unreachable: {reason}")]
    Unreachable {
        /// The upstream URL.
        url: String,
        /// What the network stack said.
        reason: String,
    },
    /// The deadline passed.
    #[error("upstream {url} did not answer within {} ms", .after.as_millis())]
    Timeout {
        /// The upstream URL.
        url: String,
        /// The deadline that passed.
        after: Duration,
    },
    /// The upstream answered 404 to a request carrying its session id (or,
    /// on the legacy SSE transport, the session's stream closed): the session
    /// is gone and a new one must be initialized.
    #[error("upstream {url} no longer knows session {session_id} (HTTP 404, or its SSE stream closed); a new session must be initialized")]
    SessionExpired {
        /// The upstream URL.
        url: String,
        /// The expired session id.
        session_id: String,
    },
    /// The upstream broke the protocol (bad JSON, wrong content type, a
    /// stream without a response, an unsupported version, …).
    #[error("upstream {url} broke the MCP protocol: {reason}")]
    Protocol {
        /// The upstream URL.
        url: String,
        /// What was wrong.
        reason: String,
    },
}

impl UpstreamError {
    /// The upstream URL.
    pub fn url(&self) -> &str {
        match self {
            UpstreamError::Rpc { url, .. }
            | UpstreamError::Http { url, .. }
            | UpstreamError::Unreachable { url, .. }
            | UpstreamError::Timeout { url, .. }
            | UpstreamError::SessionExpired { url, .. }
            | UpstreamError::Protocol { url, .. } => url,
        }
    }

    /// `true` for [`UpstreamError::SessionExpired`].
    pub fn is_session_expired(&self) -> bool {
        matches!(self, UpstreamError::SessionExpired { .. })
    }

    /// The JSON-RPC error to give a downstream client: the upstream's own
    /// error for [`UpstreamError::Rpc`], else [`UPSTREAM_UNAVAILABLE`](crate::jsonrpc::UPSTREAM_UNAVAILABLE) with
    /// this error's message (which names the upstream URL).
    pub fn to_error_object(&self) -> ErrorObject {
        match self {
            UpstreamError::Rpc { error, .. } => error.clone(),
            other => ErrorObject::upstream_unavailable(other.to_string()),
        }
    }
}

/// Per-request options for [`UpstreamSession::request_with`].
#[derive(Debug, Clone)]
pub struct RequestOptions {
    /// The deadline; `None` uses the session's (the `timeout` given to
    /// `connect`).
    pub timeout: Option<Duration>,
    /// Stateless upstreams only: resolve `input_required` results through
    /// the handler and retry (default `true`).
    pub resolve_input_required: bool,
}

impl Default for RequestOptions {
    fn default() -> Self {
        RequestOptions {
            timeout: None,
            resolve_input_required: true,
        }
    }
}

/// What [`UpstreamSession::discover`] found: the raw objects, in upstream
/// order, across all pages.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Discovered {
    /// `tools/list` → `tools`.
    pub tools: Vec<Value>,
    /// `resources/list` → `resources`.
    pub resources: Vec<Value>,
    /// `resources/templates/list` → `resourceTemplates`.
    pub resource_templates: Vec<Value>,
    /// `prompts/list` → `prompts`.
    pub prompts: Vec<Value>,
}

/// How an upstream is reached.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Transport {
    /// Streamable HTTP (2025-03-26 and later): one endpoint for POST, GET and
    /// DELETE.
    #[default]
    StreamableHttp,
    /// The legacy HTTP+SSE transport of 2024-11-05: the URL is the SSE
    /// endpoint (by convention `http://host/sse`); its first event names the
    /// endpoint messages are POSTed to. See [`crate::legacy`].
    Sse,
}

/// Connection pool plus fleetgate's identity towards upstreams.
#[derive(Debug, Clone)]
pub struct UpstreamClient {
    http: net::Client,
    client_info: Value,
    capabilities: Value,
    max_body_bytes: usize,
    max_event_bytes: usize,
}

impl Default for UpstreamClient {
    fn default() -> Self {
        Self::new()
    }
}

impl UpstreamClient {
    /// A client with its own connection pool, `clientInfo`
    /// `{"name":"fleetgate","version":<crate version>}`, capabilities `{}` and
    /// 16 MiB limits for a JSON body and for one SSE event.
    pub fn new() -> Self {
        Self::with_http_client(net::Client::new())
    }

    /// The same, sharing another client's connection pool.
    pub fn with_http_client(http: net::Client) -> Self {
        UpstreamClient {
            http,
            client_info: json!({"name": "fleetgate", "version": env!("CARGO_PKG_VERSION")}),
            capabilities: json!({}),
            max_body_bytes: 16 * 1024 * 1024,
            max_event_bytes: 16 * 1024 * 1024,
        }
    }

    /// Sets `clientInfo`.
    pub fn client_info(mut self, name: &str, version: &str) -> Self {
        self.client_info = json!({"name": name, "version": version});
        self
    }

    /// Sets the client capabilities sent in `initialize` (or in each
    /// stateless request's `_meta`). Advertise `sampling`, `elicitation` or
    /// `roots` only if your handler answers them.
    pub fn capabilities(mut self, capabilities: Value) -> Self {
        self.capabilities = capabilities;
        self
    }

    /// Sets the largest JSON body and the largest SSE event accepted.
    pub fn limits(mut self, max_body_bytes: usize, max_event_bytes: usize) -> Self {
        self.max_body_bytes = max_body_bytes;
        self.max_event_bytes = max_event_bytes;
        self
    }

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
    /// [`LATEST_STATEFUL_PROTOCOL_VERSION`] instead, and `2024-11-05` may be
    /// asked for and answered. The returned session works as any other.
    pub async fn connect_with_transport(
        &self,
        url: &str,
        transport: Transport,
        headers: HeaderMap,
        protocol_version: &str,
        timeout: Duration,
    ) -> Result<UpstreamSession, UpstreamError> {
        check_url(url)?;
        if transport == Transport::Sse {
            let version = if protocol::is_stateless_version(protocol_version) {
                LATEST_STATEFUL_PROTOCOL_VERSION
            } else {
                protocol_version
            };
            if !(protocol::is_supported_version(version) || version == LEGACY_PROTOCOL_VERSION) {
                return Err(UpstreamError::Protocol {
                    url: url.to_owned(),
                    reason: format!(
                        "fleetgate does not speak MCP protocol version {version:?} on the SSE transport"
                    ),
                });
            }
            return match tokio::time::timeout(
                timeout,
                self.connect_legacy(url, &headers, version, timeout),
            )
            .await
            {
                Ok(r) => r,
                Err(_) => Err(UpstreamError::Timeout {
                    url: url.to_owned(),
                    after: timeout,
                }),
            };
        }
        if !protocol::is_supported_version(protocol_version) {
            return Err(UpstreamError::Protocol {
                url: url.to_owned(),
                reason: format!(
                    "fleetgate does not speak MCP protocol version {protocol_version:?} (it speaks {})",
                    protocol::SUPPORTED_PROTOCOL_VERSIONS.join(", ")
                ),
            });
        }
        let handshake = async {
            if protocol::is_stateless_version(protocol_version) {
                match self.discover_stateless(url, &headers, timeout).await? {
                    Some(session) => return Ok(session),
                    None => {
                        tracing::info!(
                            upstream = url,
                            "upstream is not a stateless (2026-07-28) server; falling back to initialize"
                        );
                        return self
                            .initialize(url, &headers, LATEST_STATEFUL_PROTOCOL_VERSION, timeout)
                            .await;
                    }
                }
            }
            self.initialize(url, &headers, protocol_version, timeout)
                .await
        };
        match tokio::time::timeout(timeout, handshake).await {
            Ok(r) => r,
            Err(_) => Err(UpstreamError::Timeout {
                url: url.to_owned(),
                after: timeout,
            }),
        }
    }

    fn inner(
        &self,
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
            let v =
                HeaderValue::from_str(protocol_version).map_err(|_| UpstreamError::Protocol {
                    url: url.to_owned(),
                    reason: format!(
                        "protocol version {protocol_version:?} is not a valid header value"
                    ),
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
            http: self.http.clone(),
            url: url.to_owned(),
            target,
            base_headers: base,
            session_id,
            protocol_version: protocol_version.to_owned(),
            stateless,
            client_info: self.client_info.clone(),
            client_capabilities: self.capabilities.clone(),
            max_body_bytes: self.max_body_bytes,
            max_event_bytes: self.max_event_bytes,
            legacy: None,
        })
    }

    /// The legacy SSE handshake: GET the stream, read `endpoint`, start the
    /// reader, `initialize`, `notifications/initialized`.
    async fn connect_legacy(
        &self,
        url: &str,
        headers: &HeaderMap,
        protocol_version: &str,
        timeout: Duration,
    ) -> Result<UpstreamSession, UpstreamError> {
        let mut inner = self.inner(url, headers, protocol_version, None, false, false)?;
        let mut get_headers = headers.clone();
        get_headers.insert(ACCEPT, HeaderValue::from_static(protocol::CONTENT_TYPE_SSE));
        let mut resp = inner.send(self.http.get(url).headers(get_headers)).await?;
        let status = resp.status();
        if !status.is_success() {
            return Err(inner.http_error(status, resp).await);
        }
        let content_type = resp
            .headers()
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(';').next())
            .map(|v| v.trim().to_ascii_lowercase())
            .unwrap_or_default();
        if content_type != protocol::CONTENT_TYPE_SSE {
            return Err(inner.protocol(format!(
                "its SSE endpoint answered GET with content type {content_type:?}; expected text/event-stream (is this the server's SSE URL, e.g. http://host/sse?)"
            )));
        }
        let mut decoder = SseDecoder::with_max_event_size(self.max_event_bytes);
        let mut events = Vec::new();
        let (endpoint, rest) = 'found: loop {
            let chunk = resp.chunk().await.map_err(|e| {
                inner.network_error(&e, "the SSE stream broke before its endpoint event")
            })?;
            let Some(chunk) = chunk else {
                return Err(
                    inner.protocol("its SSE stream ended before the endpoint event".to_owned())
                );
            };
            decoder
                .feed(&chunk, &mut events)
                .map_err(|e| inner.protocol(format!("its SSE stream: {e}")))?;
            if let Some(i) = events
                .iter()
                .position(|ev| ev.event.as_deref() == Some(legacy::ENDPOINT_EVENT))
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
        let base =
            url::Url::parse(url).map_err(|e| inner.protocol(format!("not a valid URL: {e}")))?;
        let endpoint_url = base.join(endpoint.trim()).map_err(|e| {
            inner.protocol(format!("its endpoint event {endpoint:?} is not a URI: {e}"))
        })?;
        if endpoint_url.origin() != base.origin() {
            return Err(inner.protocol(format!(
                "its endpoint event names {endpoint_url}, on another origin; fleetgate only posts to the SSE endpoint's origin"
            )));
        }
        let session_id = legacy::session_id_of(&endpoint_url);
        let endpoint = endpoint_url.to_string();
        let dispatch = Arc::new(legacy::Dispatch::default());
        let orphans = Orphans {
            http: self.http.clone(),
            endpoint: endpoint.clone(),
            headers: inner.base_headers.clone(),
            url: url.to_owned(),
        };
        let reader = tokio::spawn(legacy::read(
            resp,
            decoder,
            rest,
            Arc::clone(&dispatch),
            orphans,
        ))
        .abort_handle();
        inner.session_id = Some(session_id);
        inner.legacy = Some(Legacy {
            endpoint,
            dispatch,
            reader,
        });
        let (result, negotiated, _) = self
            .send_initialize(&inner, protocol_version, Some(LEGACY_PROTOCOL_VERSION))
            .await?;
        inner.protocol_version = negotiated;
        initialized(result, inner, timeout).await
    }

    async fn initialize(
        &self,
        url: &str,
        headers: &HeaderMap,
        protocol_version: &str,
        timeout: Duration,
    ) -> Result<UpstreamSession, UpstreamError> {
        let pre = self.inner(url, headers, protocol_version, None, false, false)?;
        let (result, negotiated, session_header) =
            self.send_initialize(&pre, protocol_version, None).await?;
        let session_id = match session_header {
            None => None,
            Some(raw) => match raw.to_str() {
                Ok(s) if protocol::is_valid_upstream_session_id(s) => Some(s.to_owned()),
                _ => {
                    return Err(pre.protocol(
                        "the Mcp-Session-Id it minted is not 1-1024 visible ASCII characters"
                            .to_owned(),
                    ))
                }
            },
        };
        let inner = self.inner(url, headers, &negotiated, session_id, false, true)?;
        initialized(result, inner, timeout).await
    }

    /// Sends `initialize` and checks the version the upstream chose: one of the
    /// stateful versions, or `also_accept` (the legacy transport's). Returns
    /// the result, the negotiated version and the `Mcp-Session-Id` header.
    async fn send_initialize(
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

    /// `Ok(None)`: the upstream is a legacy (initialize-based) server.
    async fn discover_stateless(
        &self,
        url: &str,
        headers: &HeaderMap,
        timeout: Duration,
    ) -> Result<Option<UpstreamSession>, UpstreamError> {
        let inner = self.inner(url, headers, STATELESS_PROTOCOL_VERSION, None, true, true)?;
        let params = json!({});
        match inner
            .call(
                &Id::Number(0),
                methods::SERVER_DISCOVER,
                Some(&params),
                &NoopHandler,
            )
            .await
        {
            Ok((raw, _)) => {
                let result = jsonrpc::value_of(&raw);
                let supported: Vec<&str> = result
                    .get("supportedVersions")
                    .and_then(Value::as_array)
                    .map(|a| a.iter().filter_map(Value::as_str).collect())
                    .unwrap_or_default();
                if supported.contains(&STATELESS_PROTOCOL_VERSION) {
                    let server_info = result
                        .get("_meta")
                        .and_then(|m| m.get(meta::SERVER_INFO))
                        .cloned()
                        .unwrap_or(Value::Null);
                    return Ok(Some(UpstreamSession {
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
                    }));
                }
                if supported
                    .iter()
                    .any(|v| STATEFUL_PROTOCOL_VERSIONS.contains(v))
                {
                    return Ok(None);
                }
                Err(inner.protocol(format!(
                    "server/discover lists versions {supported:?}, none of which fleetgate speaks"
                )))
            }
            Err(UpstreamError::Rpc { error, .. })
                if error.code == error_codes::UNSUPPORTED_PROTOCOL_VERSION =>
            {
                let stateful = error
                    .data
                    .as_ref()
                    .and_then(|d| d.get("supported"))
                    .and_then(Value::as_array)
                    .is_some_and(|a| {
                        a.iter()
                            .filter_map(Value::as_str)
                            .any(|v| STATEFUL_PROTOCOL_VERSIONS.contains(&v))
                    });
                if stateful {
                    Ok(None)
                } else {
                    Err(UpstreamError::Rpc {
                        url: url.to_owned(),
                        error,
                    })
                }
            }
            // Recognized modern errors: the server is modern, do not fall back.
            Err(e @ UpstreamError::Rpc { .. })
                if matches!(&e, UpstreamError::Rpc { error, .. }
                    if error.code == error_codes::HEADER_MISMATCH
                        || error.code == error_codes::MISSING_REQUIRED_CLIENT_CAPABILITY) =>
            {
                Err(e)
            }
            // A JSON-RPC error to server/discover (which modern servers MUST
            // implement) or a 400/404/405: a legacy server.
            Err(UpstreamError::Rpc { .. }) => Ok(None),
            Err(UpstreamError::Http {
                status: 400 | 404 | 405,
                ..
            }) => Ok(None),
            Err(e) => Err(e),
        }
    }
}

/// The handshake's last step on either transport: `notifications/initialized`,
/// then the session.
async fn initialized(
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
    Ok(UpstreamSession::from_init(result, inner, timeout))
}

fn check_url(url: &str) -> Result<(), UpstreamError> {
    let parsed = url::Url::parse(url).map_err(|e| UpstreamError::Unreachable {
        url: url.to_owned(),
        reason: format!("not a valid URL: {e}"),
    })?;
    match parsed.scheme() {
        "http" => Ok(()),
        "https" if cfg!(feature = "rustls") => Ok(()),
        "https" => Err(UpstreamError::Unreachable {
            url: url.to_owned(),
            reason: "https upstreams need a fleetgate built with the `rustls` feature (cargo build --release --features rustls)".to_owned(),
        }),
        other => Err(UpstreamError::Unreachable {
            url: url.to_owned(),
            reason: format!("unsupported URL scheme {other:?} (use http or https)"),
        }),
    }
}

/// One MCP session with one upstream (or, for a stateless upstream, the
/// agreed version and the server's identity).
#[derive(Debug)]
pub struct UpstreamSession {
    inner: Arc<Inner>,
    timeout: Duration,
    next_id: AtomicI64,
    server_capabilities: Value,
    server_info: Value,
    instructions: Option<String>,
    init_result: Value,
}

impl UpstreamSession {
    /// A session from an `initialize` result.
    fn from_init(result: Value, inner: Inner, timeout: Duration) -> UpstreamSession {
        UpstreamSession {
            server_capabilities: result
                .get("capabilities")
                .cloned()
                .unwrap_or_else(|| json!({})),
            server_info: result.get("serverInfo").cloned().unwrap_or(Value::Null),
            instructions: result
                .get("instructions")
                .and_then(Value::as_str)
                .map(str::to_owned),
            init_result: result,
            inner: Arc::new(inner),
            timeout,
            next_id: AtomicI64::new(1),
        }
    }

    /// The upstream MCP endpoint (for the SSE transport: the SSE URL).
    pub fn url(&self) -> &str {
        &self.inner.url
    }

    /// The upstream's `Mcp-Session-Id`, if it minted one (for the SSE
    /// transport: the `session_id` of its endpoint URI).
    pub fn session_id(&self) -> Option<&str> {
        self.inner.session_id.as_deref()
    }

    /// The version in use (negotiated, or the stateless one).
    pub fn protocol_version(&self) -> &str {
        &self.inner.protocol_version
    }

    /// How the session talks to its upstream.
    pub fn transport(&self) -> Transport {
        if self.inner.legacy.is_some() {
            Transport::Sse
        } else {
            Transport::StreamableHttp
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

    fn next_id(&self) -> Id {
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
                let outcome = self
                    .inner
                    .call(&id, method, params.as_deref(), handler)
                    .await;
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

    /// Ends the session with an HTTP DELETE. A 404 (already gone) or 405 (the
    /// upstream does not allow it) counts as done. Nothing is sent for a
    /// stateless upstream or one that minted no session id. On the SSE
    /// transport, closing the stream ends the session.
    pub async fn close(&self) -> Result<(), UpstreamError> {
        if let Some(legacy) = &self.inner.legacy {
            legacy.shut("the session was closed");
            tracing::debug!(upstream = %self.inner.url, "legacy SSE session closed");
            return Ok(());
        }
        let Some(session_id) = &self.inner.session_id else {
            return Ok(());
        };
        let inner = &self.inner;
        let delete = async {
            let resp = inner
                .send(
                    inner
                        .http
                        .delete(&inner.url)
                        .headers(inner.base_headers.clone()),
                )
                .await?;
            let status = resp.status();
            if status.is_success()
                || status == StatusCode::NOT_FOUND
                || status == StatusCode::METHOD_NOT_ALLOWED
            {
                Ok(())
            } else {
                Err(inner.http_error(status, resp).await)
            }
        };
        match tokio::time::timeout(self.timeout, delete).await {
            Ok(r) => r.map(|()| tracing::debug!(upstream = %inner.url, session = %session_id, "upstream session closed")),
            Err(_) => Err(UpstreamError::Timeout {
                url: inner.url.clone(),
                after: self.timeout,
            }),
        }
    }

    /// Lists tools, resources, resource templates and prompts, following
    /// `nextCursor`. Only what the server's capabilities announce is asked
    /// for; a -32601 to a list is read as an empty list. The four lists are
    /// fetched concurrently, each page with the session's deadline.
    pub async fn discover(&self) -> Result<Discovered, UpstreamError> {
        let caps = &self.server_capabilities;
        let has = |k: &str| caps.get(k).is_some_and(|v| !v.is_null());
        let (tools, resources, resource_templates, prompts) = tokio::try_join!(
            self.list_if(has("tools"), methods::TOOLS_LIST, "tools"),
            self.list_if(has("resources"), methods::RESOURCES_LIST, "resources"),
            self.list_if(
                has("resources"),
                methods::RESOURCE_TEMPLATES_LIST,
                "resourceTemplates"
            ),
            self.list_if(has("prompts"), methods::PROMPTS_LIST, "prompts"),
        )?;
        Ok(Discovered {
            tools,
            resources,
            resource_templates,
            prompts,
        })
    }

    async fn list_if(
        &self,
        wanted: bool,
        method: &str,
        key: &str,
    ) -> Result<Vec<Value>, UpstreamError> {
        if !wanted {
            return Ok(Vec::new());
        }
        match self.list_all(method, key).await {
            Err(UpstreamError::Rpc { error, .. }) if error.code == METHOD_NOT_FOUND => {
                Ok(Vec::new())
            }
            other => other,
        }
    }

    /// Calls a paginated list method until `nextCursor` runs out and returns
    /// the concatenated `key` arrays. A repeated cursor or more than
    /// [`MAX_PAGES`] pages is a protocol error.
    pub async fn list_all(&self, method: &str, key: &str) -> Result<Vec<Value>, UpstreamError> {
        let mut items = Vec::new();
        let mut seen = HashSet::new();
        let mut cursor: Option<String> = None;
        for _ in 0..MAX_PAGES {
            let params = cursor.as_ref().map(|c| json!({ "cursor": c }));
            let mut result = self.request(method, params, &NoopHandler).await?;
            match result.get_mut(key).map(Value::take) {
                Some(Value::Array(page)) => items.extend(page),
                Some(Value::Null) | None => {}
                Some(_) => {
                    return Err(self
                        .inner
                        .protocol(format!("the {method} result's `{key}` is not an array")))
                }
            }
            match result.get("nextCursor").and_then(Value::as_str) {
                Some(next) if !next.is_empty() => {
                    if !seen.insert(next.to_owned()) {
                        return Err(self.inner.protocol(format!(
                            "{method} pagination loops (cursor {next:?} came back)"
                        )));
                    }
                    cursor = Some(next.to_owned());
                }
                _ => return Ok(items),
            }
        }
        Err(self
            .inner
            .protocol(format!("{method} returned more than {MAX_PAGES} pages")))
    }
}

/// [`UpstreamSession::discover`] as a free function.
pub async fn discover(session: &UpstreamSession) -> Result<Discovered, UpstreamError> {
    session.discover().await
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

/// What a session needs to talk HTTP; shared with background tasks.
#[derive(Debug)]
struct Inner {
    http: net::Client,
    url: String,
    /// `url`, parsed once (not on every request).
    target: http::Uri,
    /// Caller headers + Accept + Content-Type + session id + version.
    base_headers: HeaderMap,
    session_id: Option<String>,
    protocol_version: String,
    stateless: bool,
    client_info: Value,
    client_capabilities: Value,
    max_body_bytes: usize,
    max_event_bytes: usize,
    /// The legacy SSE transport's stream and endpoint.
    legacy: Option<Legacy>,
}

impl Inner {
    /// Where messages are POSTed.
    fn post_url(&self) -> &str {
        match &self.legacy {
            Some(l) => &l.endpoint,
            None => &self.url,
        }
    }

    fn expired(&self) -> UpstreamError {
        UpstreamError::SessionExpired {
            url: self.url.clone(),
            session_id: self.session_id.clone().unwrap_or_default(),
        }
    }

    fn protocol(&self, reason: String) -> UpstreamError {
        UpstreamError::Protocol {
            url: self.url.clone(),
            reason,
        }
    }

    fn network_error(&self, e: &net::Error, during: &str) -> UpstreamError {
        let mut reason = format!("{during}: {e}");
        let mut source = std::error::Error::source(e);
        while let Some(s) = source {
            reason.push_str(": ");
            reason.push_str(&s.to_string());
            source = s.source();
        }
        UpstreamError::Unreachable {
            url: self.url.clone(),
            reason,
        }
    }

    /// Headers for a POST: base + (stateless) `Mcp-Method`/`Mcp-Name`.
    fn post_headers(&self, method: &str, params: Option<&Value>) -> HeaderMap {
        let mut h = self.base_headers.clone();
        if self.stateless {
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

    async fn send(&self, rb: net::RequestBuilder) -> Result<net::Response, UpstreamError> {
        rb.send()
            .await
            .map_err(|e| self.network_error(&e, "sending the request failed"))
    }

    /// The error for a non-2xx answer (404 on a session → SessionExpired).
    async fn http_error(&self, status: StatusCode, resp: net::Response) -> UpstreamError {
        if status == StatusCode::NOT_FOUND {
            if let Some(sid) = &self.session_id {
                return UpstreamError::SessionExpired {
                    url: self.url.clone(),
                    session_id: sid.clone(),
                };
            }
        }
        let body = read_limited(resp, ERROR_BODY_READ_LIMIT)
            .await
            .unwrap_or_default();
        UpstreamError::Http {
            url: self.url.clone(),
            status: status.as_u16(),
            body: excerpt(&body),
        }
    }

    /// POSTs a notification or a response; the upstream answers 202.
    async fn post_message(
        &self,
        body: &[u8],
        method: &str,
        params: Option<&Value>,
    ) -> Result<(), UpstreamError> {
        if self
            .legacy
            .as_ref()
            .is_some_and(|l| l.dispatch.closed().is_some())
        {
            return Err(self.expired());
        }
        let rb = self
            .http
            .post(self.post_url())
            .headers(self.post_headers(method, params))
            .body(body.to_vec());
        let resp = self.send(rb).await?;
        let status = resp.status();
        if status.is_success() {
            Ok(())
        } else {
            Err(self.http_error(status, resp).await)
        }
    }

    /// Stateless requests carry version, identity and capabilities in `_meta`.
    fn with_meta(&self, params: Option<&Value>) -> Option<Value> {
        let mut map = match params {
            None => Map::new(),
            Some(Value::Object(m)) => m.clone(),
            Some(other) => return Some(other.clone()),
        };
        let meta_entry = map
            .entry("_meta")
            .or_insert_with(|| Value::Object(Map::new()));
        if !meta_entry.is_object() {
            *meta_entry = Value::Object(Map::new());
        }
        if let Value::Object(m) = meta_entry {
            m.insert(
                meta::PROTOCOL_VERSION.to_owned(),
                Value::String(self.protocol_version.clone()),
            );
            m.entry(meta::CLIENT_INFO)
                .or_insert_with(|| self.client_info.clone());
            m.entry(meta::CLIENT_CAPABILITIES)
                .or_insert_with(|| self.client_capabilities.clone());
        }
        Some(Value::Object(map))
    }

    /// One request/response exchange (no deadline: callers apply it).
    /// Returns the result and the `Mcp-Session-Id` of the POST's answer.
    async fn call(
        &self,
        id: &Id,
        method: &str,
        params: Option<&Value>,
        handler: &dyn ServerMessageHandler,
    ) -> Result<(Box<RawValue>, Option<HeaderValue>), UpstreamError> {
        if let Some(legacy) = &self.legacy {
            return Box::pin(self.legacy_call(legacy, id, method, params, handler))
                .await
                .map(|v| (v, None));
        }
        let with_meta;
        let params = if self.stateless {
            with_meta = self.with_meta(params);
            with_meta.as_ref()
        } else {
            params
        };
        let body = jsonrpc::encode_request(id, method, params);
        let rb = self
            .http
            .post(&self.target)
            .headers(self.post_headers(method, params))
            .body(body);
        let resp = self.send(rb).await?;
        let status = resp.status();
        let session_header = resp.headers().get(MCP_SESSION_ID).cloned();
        if !status.is_success() {
            return Err(Box::pin(self.non_2xx(status, resp, id)).await);
        }
        if status == StatusCode::ACCEPTED || status == StatusCode::NO_CONTENT {
            return Err(self.protocol(format!(
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
            protocol::CONTENT_TYPE_JSON => self.read_json_answer(resp, id).await,
            protocol::CONTENT_TYPE_SSE => Box::pin(self.read_sse_answer(resp, id, handler)).await,
            other => Err(self.protocol(format!(
                "it answered request {id} ({method}) with content type {other:?}; expected application/json or text/event-stream"
            ))),
        }?;
        Ok((result, session_header))
    }

    /// One exchange on the legacy SSE transport: wait for `id` on the
    /// stream, POST the request, relay what the stream hands over.
    async fn legacy_call(
        &self,
        legacy: &Legacy,
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
        let Some((mut rx, _guard)) = legacy.dispatch.register(id, token) else {
            return Err(self.expired());
        };
        let body = jsonrpc::encode_request(id, method, params);
        let rb = self
            .http
            .post(&legacy.endpoint)
            .headers(self.base_headers.clone())
            .body(body);
        let resp = self.send(rb).await?;
        let status = resp.status();
        if !status.is_success() {
            return Err(Box::pin(self.non_2xx(status, resp, id)).await);
        }
        drop(resp);
        loop {
            match rx.recv().await {
                Some(legacy::Delivery::Notification(n)) => handler.on_notification(n).await,
                Some(legacy::Delivery::Request(r)) => {
                    self.answer_server_request(r, handler).await?
                }
                Some(legacy::Delivery::Answer(Ok(result))) => return Ok(result),
                Some(legacy::Delivery::Answer(Err(error))) => {
                    return Err(UpstreamError::Rpc {
                        url: self.url.clone(),
                        error,
                    })
                }
                None => {
                    let why = legacy
                        .dispatch
                        .closed()
                        .unwrap_or_else(|| "its SSE stream ended".to_owned());
                    return Err(UpstreamError::Unreachable {
                        url: self.url.clone(),
                        reason: format!("{why} before the response to request {id} ({method})"),
                    });
                }
            }
        }
    }

    /// A non-2xx answer to a request: a JSON-RPC error for this very request
    /// (stateless servers send -32601 with 404, -32022 with 400) is an
    /// [`UpstreamError::Rpc`]; anything else is `Http`/`SessionExpired`.
    async fn non_2xx(&self, status: StatusCode, resp: net::Response, id: &Id) -> UpstreamError {
        if status == StatusCode::NOT_FOUND && self.session_id.is_some() {
            return self.http_error(status, resp).await;
        }
        let body = read_limited(resp, ERROR_BODY_READ_LIMIT)
            .await
            .unwrap_or_default();
        if let Ok(Message::Error(ErrorResponse { id: eid, error })) = jsonrpc::parse_message(&body)
        {
            if eid == *id {
                return UpstreamError::Rpc {
                    url: self.url.clone(),
                    error,
                };
            }
        }
        UpstreamError::Http {
            url: self.url.clone(),
            status: status.as_u16(),
            body: excerpt(&body),
        }
    }

    fn answer_of(&self, msg: Message, id: &Id) -> Option<Result<Box<RawValue>, UpstreamError>> {
        match msg {
            Message::Response(r) if r.id == *id => Some(Ok(r.result)),
            Message::Error(e) if e.id == *id || e.id.is_null() => Some(Err(UpstreamError::Rpc {
                url: self.url.clone(),
                error: e.error,
            })),
            _ => None,
        }
    }

    async fn read_json_answer(
        &self,
        resp: net::Response,
        id: &Id,
    ) -> Result<Box<RawValue>, UpstreamError> {
        if resp
            .content_length()
            .is_some_and(|n| n > self.max_body_bytes as u64)
        {
            return Err(self.protocol(format!(
                "its response body is larger than {} bytes",
                self.max_body_bytes
            )));
        }
        let body = self.read_body(resp).await?;
        let parsed = jsonrpc::parse(&body).map_err(|e| {
            self.protocol(format!(
                "its JSON answer to request {id} is not JSON-RPC: {e}"
            ))
        })?;
        let found = match parsed {
            Parsed::Single(m) => self.answer_of(m, id),
            Parsed::Batch(items) => items
                .into_iter()
                .flatten()
                .find_map(|m| self.answer_of(m, id)),
        };
        found.unwrap_or_else(|| {
            Err(self.protocol(format!(
                "its JSON answer does not contain the response to request {id}"
            )))
        })
    }

    async fn read_body(&self, mut resp: net::Response) -> Result<bytes::Bytes, UpstreamError> {
        resp.bytes(self.max_body_bytes).await.map_err(|e| match e {
            net::BodyError::TooLarge => self.protocol(format!(
                "its response body is larger than {} bytes",
                self.max_body_bytes
            )),
            net::BodyError::Broken(e) => {
                self.network_error(&e, "the connection broke while reading the response")
            }
        })
    }

    async fn read_sse_answer(
        &self,
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
                            .map_err(|e| self.protocol(format!("its SSE stream: {e}")))?;
                        if !events.is_empty() {
                            resumes = 0;
                        }
                        for ev in events.drain(..) {
                            if let Some(answer) = self.on_event(ev, id, handler).await? {
                                return answer;
                            }
                        }
                    }
                    Ok(None) => {
                        if let Some(ev) = decoder.finish() {
                            if let Some(answer) = self.on_event(ev, id, handler).await? {
                                return answer;
                            }
                        }
                        break None;
                    }
                    Err(e) => {
                        decoder.finish();
                        break Some(self.network_error(
                            &e,
                            "the connection broke while reading the SSE stream",
                        ));
                    }
                }
            };
            // The stream ended without our response.
            let last_id = decoder.last_event_id().map(str::to_owned);
            match last_id {
                Some(last_id) if !self.stateless && resumes < MAX_RESUME_ATTEMPTS => {
                    resumes += 1;
                    tokio::time::sleep(decoder.retry().unwrap_or(DEFAULT_RESUME_DELAY)).await;
                    resp = self.resume(&last_id, id).await?;
                }
                _ => {
                    return Err(broken.unwrap_or_else(|| {
                        self.protocol(format!(
                            "its SSE stream ended before the response to request {id}"
                        ))
                    }))
                }
            }
        }
    }

    /// GET with `Last-Event-ID` to resume an SSE answer.
    async fn resume(&self, last_event_id: &str, id: &Id) -> Result<net::Response, UpstreamError> {
        tracing::debug!(upstream = %self.url, %last_event_id, request = %id, "resuming an SSE answer");
        let mut headers = self.base_headers.clone();
        headers.insert(ACCEPT, HeaderValue::from_static(protocol::CONTENT_TYPE_SSE));
        headers.remove(CONTENT_TYPE);
        let value = HeaderValue::from_str(last_event_id).map_err(|_| {
            self.protocol("its SSE event id is not a valid header value".to_owned())
        })?;
        headers.insert(protocol::LAST_EVENT_ID, value);
        let resp = self.send(self.http.get(&self.url).headers(headers)).await?;
        let status = resp.status();
        if !status.is_success() {
            let e = self.http_error(status, resp).await;
            return Err(match e {
                UpstreamError::Http { status, body, .. } => self.protocol(format!(
                    "its SSE stream ended before the response to request {id}, and resuming it was refused (HTTP {status}: {body})"
                )),
                other => other,
            });
        }
        Ok(resp)
    }

    /// Handles one SSE event; `Some(answer)` once the response arrived.
    async fn on_event(
        &self,
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
                tracing::warn!(upstream = %self.url, error = %e, "skipping an SSE event that is not JSON-RPC");
                return Ok(None);
            }
        };
        for msg in messages {
            match msg {
                Message::Notification(n) => handler.on_notification(n).await,
                Message::Request(r) => self.answer_server_request(r, handler).await?,
                other => {
                    if let Some(answer) = self.answer_of(other, id) {
                        return Ok(Some(answer));
                    }
                    tracing::warn!(upstream = %self.url, request = %id, "skipping a response to another request on an SSE stream");
                }
            }
        }
        Ok(None)
    }

    async fn answer_server_request(
        &self,
        request: Request,
        handler: &dyn ServerMessageHandler,
    ) -> Result<(), UpstreamError> {
        if self.stateless {
            tracing::warn!(upstream = %self.url, method = %request.method,
                "ignoring a server-to-client request: stateless upstreams must use input_required results");
            return Ok(());
        }
        let rid = request.id.clone();
        let body = match handler.on_request(request).await {
            Ok(result) => jsonrpc::encode_response(&rid, &result),
            Err(error) => jsonrpc::encode_error(&rid, &error),
        };
        match self.post_message(&body, "", None).await {
            Ok(()) => Ok(()),
            Err(e @ (UpstreamError::SessionExpired { .. } | UpstreamError::Unreachable { .. })) => {
                Err(e)
            }
            Err(e) => {
                tracing::warn!(error = %e, request = %rid, "the upstream refused our answer to its request");
                Ok(())
            }
        }
    }

    /// Builds the retry params for an `input_required` result.
    async fn resolve_input(
        &self,
        params: Option<Value>,
        result: &Value,
        handler: &dyn ServerMessageHandler,
    ) -> Result<Value, UpstreamError> {
        let mut responses = Map::new();
        if let Some(requests) = result.get("inputRequests") {
            let Some(requests) = requests.as_object() else {
                return Err(self.protocol("`inputRequests` is not an object".to_owned()));
            };
            for (key, req) in requests {
                let Some(method) = req.get("method").and_then(Value::as_str) else {
                    return Err(self.protocol(format!("input request {key:?} has no `method`")));
                };
                let request = Request {
                    id: Id::String(key.clone()),
                    method: method.to_owned(),
                    params: req.get("params").cloned(),
                };
                let answer =
                    handler
                        .on_request(request)
                        .await
                        .map_err(|error| UpstreamError::Rpc {
                            url: self.url.clone(),
                            error,
                        })?;
                responses.insert(key.clone(), answer);
            }
        }
        let mut map = match params {
            None => Map::new(),
            Some(Value::Object(m)) => m,
            Some(_) => {
                return Err(self.protocol(
                    "it asked for input on a request whose params are not an object".to_owned(),
                ))
            }
        };
        map.remove("inputResponses");
        map.remove("requestState");
        if !responses.is_empty() {
            map.insert("inputResponses".to_owned(), Value::Object(responses));
        }
        if let Some(state) = result.get("requestState") {
            map.insert("requestState".to_owned(), state.clone());
        }
        Ok(Value::Object(map))
    }
}

async fn read_limited(mut resp: net::Response, limit: usize) -> Option<Vec<u8>> {
    let mut buf = Vec::new();
    while let Ok(Some(chunk)) = resp.chunk().await {
        let room = limit.saturating_sub(buf.len());
        buf.extend_from_slice(&chunk[..chunk.len().min(room)]);
        if buf.len() >= limit {
            break;
        }
    }
    Some(buf)
}

/// At most [`BODY_EXCERPT_CHARS`] characters of a body, whitespace collapsed.
fn excerpt(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(body);
    let mut out = String::new();
    let mut count = 0;
    for word in text.split_whitespace() {
        for (i, c) in std::iter::once(' ').chain(word.chars()).enumerate() {
            if i == 0 && out.is_empty() {
                continue;
            }
            if count == BODY_EXCERPT_CHARS {
                out.pop();
                out.push('…');
                return out;
            }
            out.push(c);
            count += 1;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::jsonrpc::UPSTREAM_UNAVAILABLE;

    #[test]
    fn excerpt_is_short_and_collapsed() {
        assert_eq!(excerpt(b"  a\n\n b  "), "a b");
        let long = "x".repeat(500);
        let e = excerpt(long.as_bytes());
        assert_eq!(e.chars().count(), BODY_EXCERPT_CHARS);
        assert!(e.ends_with('…'));
        assert_eq!(excerpt("é".repeat(300).as_bytes()).chars().count(), 200);
        assert_eq!(excerpt(b""), "");
    }

    #[test]
    fn error_messages_name_the_url() {
        let url = "http://127.0.0.1:9/mcp".to_owned();
        let errs = [
            UpstreamError::Rpc {
                url: url.clone(),
                error: ErrorObject::new(-1, "boom"),
            },
            UpstreamError::Http {
                url: url.clone(),
                status: 500,
                body: "x".into(),
            },
            UpstreamError::Unreachable {
                url: url.clone(),
                reason: "refused".into(),
            },
            UpstreamError::Timeout {
                url: url.clone(),
                after: Duration::from_millis(5),
            },
            UpstreamError::SessionExpired {
                url: url.clone(),
                session_id: "s".into(),
            },
            UpstreamError::Protocol {
                url: url.clone(),
                reason: "r".into(),
            },
        ];
        for e in errs {
            assert!(e.to_string().contains(&url), "{e}");
            assert_eq!(e.url(), url);
            let o = e.to_error_object();
            match e {
                UpstreamError::Rpc { .. } => assert_eq!(o.code, -1),
                _ => assert_eq!(o.code, UPSTREAM_UNAVAILABLE),
            }
        }
    }

    #[test]
    fn bad_urls() {
        assert!(matches!(
            check_url("nope"),
            Err(UpstreamError::Unreachable { .. })
        ));
        assert!(matches!(
            check_url("ftp://x/"),
            Err(UpstreamError::Unreachable { .. })
        ));
        assert!(check_url("http://127.0.0.1:1/mcp").is_ok());
    }
}
