//! `fleetgate-test-upstream`: a small, fast MCP server speaking Streamable HTTP.
//!
//! It is the real upstream behind fleetgate in integration tests and benchmarks, and it
//! passes the MCP conformance suite's server scenarios when run directly.
//!
//! * `POST /mcp`, `GET /mcp`, `DELETE /mcp`: MCP Streamable HTTP, protocol versions
//!   2025-11-25, 2025-06-18, 2025-03-26 (and 2024-11-05) with `Mcp-Session-Id` minted at
//!   `initialize` and required afterwards (400 when missing, 404 when unknown);
//!   notifications and responses are answered 202. Session-less requests of the
//!   stateless 2026-07-28 draft are served too (`server/discover`, version in `_meta`).
//! * Answers are JSON, unless the server runs in SSE mode ([`UpstreamBuilder::sse`]) and the
//!   client's `Accept` allows `text/event-stream`. Tools that talk before answering
//!   (logging, progress, sampling, elicitation) always stream when the client allows it.
//! * Legacy mode ([`UpstreamBuilder::legacy_sse`]): the HTTP+SSE transport of 2024-11-05
//!   as well — `GET /sse` (first event `endpoint`: `/messages?session_id=…`) and
//!   `POST /messages?session_id=…` (202; answers arrive on the stream). A legacy
//!   connection counts as a session once it is initialized.
//! * `GET /stats` (JSON [`StatsSnapshot`]), `DELETE /stats` (reset), `GET /health`.
//! * Streamed POST answers of asynchronous tools are resumable: events carry ids
//!   `STREAM-SEQ`, sessions speaking 2025-11-25 first get a priming event (id, `retry`,
//!   empty data; SEP-1699), and `GET /mcp` with `Last-Event-ID` replays the rest. `GET`
//!   without it opens the session's standalone stream (one per session, else 409). Its
//!   events carry ids `g-N` and are kept for the session's life (also those sent while
//!   no stream is open): `GET` with `Last-Event-ID: g-N` replays what followed.
//! * Host/Origin must name a loopback host (DNS-rebinding protection; configurable).
//!
//! Tools ([`tool_names`]): `echo` {text}, `add` {a, b}, `slow` {ms} (cancellable,
//! progress), `echo_headers`, `notify_resource_updated` {uri}, `notify_list_changed`,
//! `notify_later` {delay_ms?, uri?}, `reveal_tool`, `end_stream`, and the conformance suite's `test_*` tools and
//! `json_schema_2020_12_tool`. Resources `test://static-text`, `test://static-binary`,
//! `test://watched-resource`, template `test://template/{id}/data`; prompts
//! `test_simple_prompt`, `test_prompt_with_arguments`,
//! `test_prompt_with_embedded_resource`, `test_prompt_with_image`; completions for
//! prompt arguments and the template's `{id}`.
//!
//! * `reveal_tool` adds the tool `revealed` to tools/list for every session and sends
//!   `notifications/tools/list_changed` on the caller's standalone stream: a catalog
//!   that really changes.
//! * `notify_later` answers `scheduled` at once; `delay_ms` (default 300) later it sends,
//!   on the session's standalone GET stream and outside any request,
//!   `notifications/message` `{"level":"info","logger":NAME,"data":"notify_later"}`
//!   (unless `logging/setLevel` set a level above `info`) and, if the session subscribed
//!   to `uri` (default `test://watched-resource`), `notifications/resources/updated`
//!   `{"uri"}`. With no standalone stream open at that moment, they are dropped.
//! * Server-to-client requests (`sampling/createMessage` of `test_sampling`,
//!   `elicitation/create` of the three `test_elicitation*` tools) go on the call's own SSE
//!   stream by default. With [`UpstreamBuilder::standalone_requests`] (CLI
//!   `--standalone-requests`) they go on the session's standalone GET stream, unrelated
//!   to the call, as the conformance suite's reference server (the TypeScript SDK) sends
//!   them: then only a client that has `GET /mcp` open can answer them. The conformance
//!   runs use that mode; the default stays so that the tests of mid-call relay keep
//!   testing it.
//!
//! ```no_run
//! # async fn demo() -> Result<(), fleetgate_test_upstream::BuildError> {
//! use fleetgate_test_upstream::Upstream;
//! let up = Upstream::builder().sse(true).name("up-a").tools_prefix("a_")?.spawn().await?;
//! println!("{}", up.url()); // http://127.0.0.1:PORT/mcp
//! let stats = up.stats();
//! assert_eq!(stats.live_sessions, 0);
//! # Ok(()) }
//! ```

mod catalog;
mod http;
mod jobs;
mod legacy;
mod mcp;
mod mrtr;
mod rpc;
mod state;
mod stateless;
mod stats;
mod tasks;

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

pub use crate::state::{DRAFT_VERSION, STATEFUL_VERSIONS as PROTOCOL_VERSIONS};
pub use crate::stats::StatsSnapshot;

use crate::state::{Config, Shared};

/// Names of the tools served (without any prefix), in listing order.
pub fn tool_names() -> Vec<&'static str> {
    catalog::TOOLS.iter().map(|t| t.name).collect()
}

/// Errors building or starting an upstream.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    /// A tools prefix must keep tool names within 1-64 characters of `[A-Za-z0-9_./-]`.
    #[error(
        "invalid tools prefix {0:?}: tool names must stay within 64 characters of [A-Za-z0-9_./-]"
    )]
    InvalidToolsPrefix(String),
    /// The listening socket could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
}

/// Entry point: `Upstream::builder()`.
pub struct Upstream;

impl Upstream {
    pub fn builder() -> UpstreamBuilder {
        UpstreamBuilder {
            cfg: Config::default(),
            bind: SocketAddr::from((Ipv4Addr::LOCALHOST, 0)),
        }
    }
}

/// Configures an upstream; [`UpstreamBuilder::spawn`] starts it.
#[derive(Clone, Debug)]
#[must_use]
pub struct UpstreamBuilder {
    cfg: Config,
    bind: SocketAddr,
}

impl UpstreamBuilder {
    /// Answer requests as SSE streams when the client's `Accept` allows it (default: JSON).
    pub fn sse(mut self, on: bool) -> Self {
        self.cfg.sse = on;
        self
    }

    /// Also serve the legacy HTTP+SSE transport of MCP 2024-11-05 (default: off):
    /// `GET /sse` opens a stream whose first event (`endpoint`) names
    /// `/messages?session_id=…`, where the client POSTs its messages (202); everything
    /// the server sends arrives as `message` events on the stream. See
    /// [`RunningUpstream::sse_url`].
    pub fn legacy_sse(mut self, on: bool) -> Self {
        self.cfg.legacy_sse = on;
        self
    }

    /// `serverInfo.name` (default `fleetgate-test-upstream`); also the logger name.
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.cfg.name = name.into();
        self
    }

    /// `serverInfo.version` (default: the crate version).
    pub fn version(mut self, version: impl Into<String>) -> Self {
        self.cfg.version = version.into();
        self
    }

    /// Prefix every tool name with `prefix` (e.g. `a_` serves `a_echo`).
    pub fn tools_prefix(mut self, prefix: impl Into<String>) -> Result<Self, BuildError> {
        let prefix = prefix.into();
        let longest = catalog::TOOLS
            .iter()
            .map(|t| t.name.len())
            .max()
            .unwrap_or(0);
        let valid = prefix
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'/' | b'-'));
        if !valid || prefix.len() + longest > 64 {
            return Err(BuildError::InvalidToolsPrefix(prefix));
        }
        self.cfg.tools_prefix = prefix;
        Ok(self)
    }

    /// Listening address (default `127.0.0.1:0`, an ephemeral port).
    pub fn bind(mut self, addr: SocketAddr) -> Self {
        self.bind = addr;
        self
    }

    /// Port on 127.0.0.1 (0: ephemeral).
    pub fn port(mut self, port: u16) -> Self {
        self.bind.set_port(port);
        self
    }

    /// Reject requests whose Host/Origin is not a loopback name (default: on). Off: any.
    pub fn dns_rebinding_protection(mut self, on: bool) -> Self {
        self.cfg.allowed_hosts = if on {
            Some(Config::default().allowed_hosts.unwrap_or_default())
        } else {
            None
        };
        self
    }

    /// Also accept this host name (without port) in Host/Origin.
    pub fn allow_host(mut self, host: impl Into<String>) -> Self {
        self.cfg
            .allowed_hosts
            .get_or_insert_with(Vec::new)
            .push(host.into());
        self
    }

    /// The `retry` hint (ms) sent in SSE priming events (default 500).
    pub fn sse_retry_ms(mut self, ms: u64) -> Self {
        self.cfg.sse_retry_ms = ms;
        self
    }

    /// How long a tool waits for the client to answer sampling/elicitation (default 60 s).
    pub fn client_request_timeout(mut self, timeout: Duration) -> Self {
        self.cfg.client_request_timeout = timeout;
        self
    }

    /// Send the server-to-client requests of `test_sampling` and the `test_elicitation*`
    /// tools on the session's standalone GET stream, unrelated to the `tools/call`
    /// (default: off, they go on the call's own SSE stream).
    ///
    /// This is what the conformance suite's reference server (the MCP TypeScript SDK)
    /// does: its tools issue these requests without a related request id, and the SDK
    /// puts such messages on the standalone stream. A client (or gateway) that never
    /// opens `GET /mcp` then never sees them. When no standalone stream is open, the
    /// reference server drops the request and the call waits for its timeout; this
    /// server waits up to 2 s for the client to open one (the TypeScript SDK client
    /// opens it without waiting after `notifications/initialized`, so a call made right
    /// after connecting can get there first), then answers the call with a tool error
    /// (`isError`) saying that no standalone stream was open. Progress and log
    /// notifications of a call stay on the call's stream either way.
    pub fn standalone_requests(mut self, on: bool) -> Self {
        self.cfg.standalone_requests = on;
        self
    }

    /// Serve session-less 2026-07-28 draft requests (default: on).
    pub fn stateless_draft(mut self, on: bool) -> Self {
        self.cfg.stateless = on;
        self
    }

    /// Serve the `initialize`-based eras too (default: on). Off: a
    /// 2026-07-28-only server: `server/discover` lists only that version and
    /// `initialize` is refused (400, -32022).
    pub fn stateful(mut self, on: bool) -> Self {
        self.cfg.stateful = on;
        self
    }

    /// The axum router, for embedding in another server. Stats are reachable through the
    /// router's `/stats` only.
    pub fn router(self) -> axum::Router {
        http::router(Arc::new(Shared::new(self.cfg)))
    }

    /// Bind and serve on the current tokio runtime. The server stops when the returned
    /// handle is dropped (or on [`RunningUpstream::shutdown`]).
    pub async fn spawn(self) -> Result<RunningUpstream, BuildError> {
        let listener = TcpListener::bind(self.bind)
            .await
            .map_err(|source| BuildError::Bind {
                addr: self.bind,
                source,
            })?;
        let addr = listener.local_addr().map_err(|source| BuildError::Bind {
            addr: self.bind,
            source,
        })?;
        let shared = Arc::new(Shared::new(self.cfg));
        let app = http::router(shared.clone());
        let (stop_tx, stop_rx) = oneshot::channel::<()>();
        let listener = axum::serve::ListenerExt::tap_io(listener, |tcp| {
            let _ = tcp.set_nodelay(true);
        });
        let on_stop = shared.clone();
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app)
                .with_graceful_shutdown(async move {
                    let _ = stop_rx.await;
                    // End every SSE stream so that graceful shutdown does not wait on them.
                    on_stop.stopping.send_replace(true);
                    on_stop.close_all();
                })
                .await;
        });
        Ok(RunningUpstream {
            addr,
            shared,
            stop: Some(stop_tx),
            task: Some(task),
        })
    }
}

/// A running upstream; dropping it stops the server.
pub struct RunningUpstream {
    /// The bound address (127.0.0.1:PORT by default).
    pub addr: SocketAddr,
    shared: Arc<Shared>,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<()>>,
}

impl RunningUpstream {
    /// The bound address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The MCP endpoint: `http://127.0.0.1:PORT/mcp`.
    pub fn url(&self) -> String {
        format!("http://{}/mcp", self.addr)
    }

    /// The legacy SSE endpoint: `http://127.0.0.1:PORT/sse` (served only with
    /// [`UpstreamBuilder::legacy_sse`]).
    pub fn sse_url(&self) -> String {
        format!("http://{}/sse", self.addr)
    }

    /// `http://127.0.0.1:PORT` (for `/stats`, `/health`).
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// `serverInfo.name`.
    pub fn name(&self) -> &str {
        &self.shared.cfg.name
    }

    /// The tool names as listed (with prefix), in listing order.
    pub fn tool_names(&self) -> &[String] {
        &self.shared.catalog.tool_names
    }

    /// The counters now (same as `GET /stats`).
    pub fn stats(&self) -> StatsSnapshot {
        snapshot(&self.shared)
    }

    /// Zero the counters (live sessions are kept).
    pub fn reset_stats(&self) {
        self.shared.stats.reset();
    }

    /// End every session now (their streams close), as if the server had restarted
    /// without losing its port: later requests with old session ids get 404.
    pub fn drop_sessions(&self) {
        self.shared.close_all();
    }

    /// Stop the server and wait until it has stopped.
    pub async fn shutdown(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}

impl Drop for RunningUpstream {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        self.shared.stopping.send_replace(true);
        self.shared.close_all();
    }
}

pub(crate) fn snapshot(shared: &Shared) -> StatsSnapshot {
    shared
        .stats
        .snapshot(shared.live_sessions(), &shared.catalog.tool_names)
}

pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

pub(crate) fn read<T>(m: &RwLock<T>) -> RwLockReadGuard<'_, T> {
    m.read().unwrap_or_else(PoisonError::into_inner)
}

pub(crate) fn write<T>(m: &RwLock<T>) -> RwLockWriteGuard<'_, T> {
    m.write().unwrap_or_else(PoisonError::into_inner)
}
