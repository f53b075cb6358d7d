//! The gateway's settings: database, MCP transport limits and DNS-rebinding
//! protection, federation timeouts.

use super::Loader;
use serde::{Deserialize, Serialize};
use std::time::Duration;

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct GatewayConfig {
    /// `DATABASE_URL`: unset → SQLite `fleetgate.db` in the working directory;
    /// `sqlite:…` or `postgres://…`.
    pub database_url: Option<String>,
    /// `MAX_REQUEST_BODY_BYTES` (default 4 MiB): larger bodies get 413.
    pub max_body_bytes: usize,
    /// `REQUEST_BODY_TIMEOUT` (s, default 30): a request body still arriving
    /// after this gets 408 and its connection is closed.
    #[serde(default = "default_body_timeout")]
    pub request_body_timeout: Duration,
    /// `MAX_CONNECTIONS` (per worker; default 0: three quarters of the
    /// open-files limit): connections beyond it get 503 and are closed.
    #[serde(default)]
    pub max_connections: usize,
    /// `UPSTREAM_TIMEOUT` (s, default 30; ContextForge: `FEDERATION_TIMEOUT`): an
    /// upstream call slower than this is JSON-RPC -32001.
    pub upstream_timeout: Duration,
    /// `MCP_ALLOWED_HOSTS`: comma-separated `Host` values accepted on MCP paths
    /// (empty: any). Guards against DNS rebinding when set.
    pub allowed_hosts: Vec<String>,
    /// `MCP_ALLOWED_ORIGINS`: comma-separated origins accepted when a request
    /// carries `Origin` (default: loopback origins only; `*` accepts any).
    pub allowed_origins: Vec<String>,
    /// `PASSTHROUGH_HEADERS` (ContextForge's `DEFAULT_PASSTHROUGH_HEADERS`):
    /// client headers copied to upstream calls, by allowlist.
    pub passthrough_headers: Vec<String>,
    /// `GATEWAY_TOOL_NAME_SEPARATOR` (default `-`): between gateway slug and tool name.
    pub tool_name_separator: String,
    /// `SESSION_IDLE_TIMEOUT` (s, default 3600): a downstream MCP session
    /// unused this long (and with no open stream) is ended, with its upstream
    /// sessions.
    pub session_idle_timeout: Duration,
    /// `REGISTRY_POLL_INTERVAL` (s, default 0.5): how often a worker checks the
    /// database for registry changes made by other workers.
    pub registry_poll: Duration,
    /// `STREAMABLE_HTTP_MAX_EVENTS_PER_STREAM` (default 100): SSE events kept
    /// per stream of a session, for clients resuming with `Last-Event-ID`.
    pub max_events_per_stream: usize,
    /// `STREAMABLE_HTTP_EVENT_TTL` (s, default 3600): how long they are kept.
    pub event_ttl: Duration,
    /// `USE_STATEFUL_SESSIONS` (default true; ContextForge's name, whose
    /// default is false): `false` serves MCP sessionless: `initialize` issues
    /// no `Mcp-Session-Id`, every request stands alone on pooled upstream
    /// sessions (as `/rpc` does), and there is no GET stream or DELETE.
    pub stateful_sessions: bool,
}

impl GatewayConfig {
    pub fn load(l: &mut Loader<'_>) -> GatewayConfig {
        let list = |l: &mut Loader<'_>, name: &'static str, default: &str| -> Vec<String> {
            l.string(name, default)
                .split(',')
                .map(|s| s.trim().to_owned())
                .filter(|s| !s.is_empty())
                .collect()
        };
        let database_url = l.opt_string("DATABASE_URL");
        if let Some(url) = &database_url {
            let ok = ["sqlite:", "postgres://", "postgresql://"]
                .iter()
                .any(|p| url.starts_with(p));
            if !ok {
                let shown = url.split('@').next_back().unwrap_or(url).to_owned();
                l.error(
                    "DATABASE_URL",
                    &shown,
                    "expected sqlite:PATH or postgres://USER@HOST/DB",
                );
            }
        }
        let upstream_default = l
            .raw("FEDERATION_TIMEOUT")
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(30.0);
        GatewayConfig {
            database_url,
            max_body_bytes: l.parse("MAX_REQUEST_BODY_BYTES", 4 << 20, "a number of bytes"),
            request_body_timeout: l.secs("REQUEST_BODY_TIMEOUT", 30.0),
            max_connections: l.parse("MAX_CONNECTIONS", 0, "a number of connections (0: automatic)"),
            upstream_timeout: l.secs("UPSTREAM_TIMEOUT", upstream_default),
            allowed_hosts: list(l, "MCP_ALLOWED_HOSTS", ""),
            allowed_origins: list(
                l,
                "MCP_ALLOWED_ORIGINS",
                "http://localhost,http://127.0.0.1,http://[::1],https://localhost,https://127.0.0.1",
            ),
            passthrough_headers: list(l, "PASSTHROUGH_HEADERS", "x-tenant-id,x-trace-id")
                .into_iter()
                .map(|h| h.to_ascii_lowercase())
                .collect(),
            tool_name_separator: l.string("GATEWAY_TOOL_NAME_SEPARATOR", "-"),
            registry_poll: l.secs("REGISTRY_POLL_INTERVAL", 0.5),
            session_idle_timeout: l.secs("SESSION_IDLE_TIMEOUT", 3600.0),
            max_events_per_stream: l.parse(
                "STREAMABLE_HTTP_MAX_EVENTS_PER_STREAM",
                100,
                "a number of events",
            ),
            event_ttl: l.secs("STREAMABLE_HTTP_EVENT_TTL", 3600.0),
            stateful_sessions: l.bool("USE_STATEFUL_SESSIONS", true),
        }
    }
}

fn default_body_timeout() -> Duration {
    Duration::from_secs(30)
}
