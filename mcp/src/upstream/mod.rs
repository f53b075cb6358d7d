//! The upstream side: an MCP client talking to one upstream MCP server.
//!
//! - [`UpstreamClient`] holds the HTTP connection pool and what fleetgate
//!   says about itself (`clientInfo`, client capabilities, size limits). Cheap
//!   to clone; share one per process.
//! - [`UpstreamClient::connect`] opens an [`UpstreamSession`]: for a stateful
//!   version (2025-03-26 … 2025-11-25) it sends `initialize` and then
//!   `notifications/initialized`, and keeps the session id, the negotiated
//!   version and the server's capabilities/`serverInfo`; for the stateless
//!   version (2026-07-28) it sends `server/discover` instead and, if the
//!   upstream turns out to be a legacy server, falls back to `initialize` with
//!   [`LATEST_STATEFUL_PROTOCOL_VERSION`](crate::protocol::LATEST_STATEFUL_PROTOCOL_VERSION)
//!   as the 2026-07-28 spec's backward-compatibility section describes.
//! - [`UpstreamSession::request`] sends one request and returns its `result`,
//!   however the transport carries the answer. Requests on one session may
//!   run concurrently (`&self`).
//!
//! # Layout
//! - this file: the two types callers use, and the transport a session holds.
//! - `session`: opening a session (the handshake steps every transport
//!   shares) and using it: requests with their deadline and cancellation,
//!   notifications, close.
//! - `streamable_http`: Streamable HTTP (2025-03-26 and later), one endpoint
//!   for POST, GET and DELETE; answers in JSON or SSE, SSE answers resumed.
//! - `stateless`: the 2026-07-28 era on Streamable HTTP: `server/discover`,
//!   `_meta` on every request, `input_required` rounds.
//! - `legacy_sse`: the HTTP+SSE transport of 2024-11-05: one GET stream
//!   carries every message from the upstream, requests are POSTed elsewhere.
//! - `standalone`: the standalone stream ([`UpstreamSession::listen`]).
//! - `listen`: its 2026-07-28 counterpart, the `subscriptions/listen` stream.
//! - `params`: `x-mcp-header` tool parameters ([`ParamHeaders`]).
//! - `handler`: server → client messages ([`ServerMessageHandler`],
//!   [`NoopHandler`], [`channel_handler`]) and answering them.
//! - `discover`: paginated discovery of tools, resources, templates, prompts.
//! - `error`: [`UpstreamError`], every variant naming the upstream URL.
//!
//! # Transports
//! A session holds its transport as one variant of the private `Link` enum,
//! one module per variant. Each offers the same three operations: `call` (one
//! request and its answer), `post_message` (a notification or a response)
//! and `close`; the session reaches its transport only through those. A new
//! transport (stdio is next) is one more module and one more variant, and
//! touches neither the other transports nor the session's code.
//!
//! # Server → client messages
//! While an answer is streaming, the upstream may send notifications
//! (progress, logging, list changes…) and requests (`sampling/createMessage`,
//! `elicitation/create`, `roots/list`, `ping`) before the final response. Each
//! is handed, in stream order and one at a time, to the
//! [`ServerMessageHandler`] passed to `request`; the stream is not read
//! further until the handler returns. For a request, the handler's
//! `Ok(result)`/`Err(error)` is POSTed back to the upstream on the same
//! session as a JSON-RPC response, and reading resumes. The handler is an
//! object-safe trait whose methods return boxed futures ([`BoxFuture`]);
//! [`channel_handler`] adapts it to an mpsc channel (each request carries a
//! oneshot for the answer) for callers that would rather relay from another
//! task. [`NoopHandler`] drops notifications, answers `ping` with `{}` and
//! everything else with -32601. A stateless (2026-07-28) upstream asks for
//! input with `input_required` results instead, resolved through the same
//! handler (see [`RequestOptions::resolve_input_required`]).
//!
//! # Errors, time, cancellation
//! Every failure is an [`UpstreamError`] whose message names the upstream URL;
//! a non-2xx answer is read by the crate's one policy, [`crate::http_error`].
//! The deadline of a request covers the whole exchange, including the time
//! handlers take. If a request on a stateful session is abandoned before its
//! response (deadline passed or the future dropped) a
//! `notifications/cancelled` is sent to the upstream in the background (best
//! effort, when a tokio runtime is running). On a stateless session closing
//! the stream is the cancellation, which dropping does.
//!
//! # Outside any request
//! [`UpstreamSession::listen`] opens the session's standalone stream (the
//! `GET` stream; on the legacy transport, the one stream it reads) and hands
//! what arrives there to a handler of its own, for the session's life (see
//! `standalone`).
//!
//! On a stateless (2026-07-28) upstream the same call opens a
//! `subscriptions/listen` stream instead (list changes, and updates of the
//! resources named with [`UpstreamSession::subscribe_resource`]).
//!
//! # Headers
//! `Mcp-Method` and `Mcp-Name` are sent on every stateless request; a tool's
//! `Mcp-Param-*` headers need its `inputSchema`, which the caller holds:
//! [`ParamHeaders`] computes them and
//! [`RequestOptions::headers`] carries them.
//!
//! # Not done yet
//! - https upstreams need this crate's `rustls` feature (off by default to
//!   keep the build lean); without it they fail with `Unreachable`.

mod discover;
mod error;
mod handler;
mod legacy_sse;
mod listen;
mod params;
mod session;
mod standalone;
mod stateless;
mod streamable_http;

use std::sync::atomic::AtomicI64;
use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Value};

use crate::net;

pub use discover::{discover, Discovered, MAX_PAGES};
pub use error::UpstreamError;
pub(crate) use handler::default_answer;
pub use handler::{
    channel_handler, BoxFuture, ChannelHandler, NoopHandler, ServerMessage, ServerMessageHandler,
};
pub use legacy_sse::{ENDPOINT_EVENT, LEGACY_PROTOCOL_VERSION};
pub use listen::SUBSCRIPTIONS_LISTEN;
pub use params::{ParamHeaders, PARAM_HEADER_PREFIX, X_MCP_HEADER};
pub use session::RequestOptions;
pub use standalone::Listening;
pub use stateless::MAX_INPUT_ROUNDS;
pub use streamable_http::MAX_RESUME_ATTEMPTS;

/// How an upstream is reached.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Transport {
    /// Streamable HTTP (2025-03-26 and later): one endpoint for POST, GET and
    /// DELETE.
    #[default]
    StreamableHttp,
    /// The legacy HTTP+SSE transport of 2024-11-05: the URL is the SSE
    /// endpoint (by convention `http://host/sse`); its first event names the
    /// endpoint messages are POSTed to.
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
}

/// One MCP session with one upstream (or, for a stateless upstream, the
/// agreed version and the server's identity), over any transport.
#[derive(Debug)]
pub struct UpstreamSession {
    inner: Arc<Inner>,
    timeout: Duration,
    next_id: AtomicI64,
    server_capabilities: Value,
    server_info: Value,
    instructions: Option<String>,
    init_result: Value,
    /// The standalone stream's tasks ([`UpstreamSession::listen`]), ended
    /// with the session.
    standalone: std::sync::Mutex<Vec<tokio::task::AbortHandle>>,
    /// A stateless session's `subscriptions/listen`: its handler and the
    /// resources it asks updates of (see `listen`).
    listen: listen::Listen,
}

impl Drop for UpstreamSession {
    fn drop(&mut self) {
        self.stop_listening();
    }
}

/// What a session knows of its upstream and the transport that reaches it;
/// shared with background tasks (a cancelled request's notice).
#[derive(Debug)]
struct Inner {
    /// The upstream, as errors name it (for the SSE transport: the SSE URL).
    url: String,
    /// The upstream's session id, if it minted one.
    session_id: Option<String>,
    protocol_version: String,
    /// A stateless (2026-07-28) upstream: no server → client requests on
    /// streams, `input_required` results instead, no cancellation notice.
    stateless: bool,
    transport: Link,
}

/// The transports, one module each (see the module docs).
#[derive(Debug)]
enum Link {
    StreamableHttp(streamable_http::StreamableHttp),
    LegacySse(legacy_sse::LegacySse),
}

/// Refuses, before anything is sent, a URL no transport can reach.
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

#[cfg(test)]
mod tests {
    use super::*;

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
