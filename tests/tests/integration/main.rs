//! The integration tests: the real `fleetgate` binary (built with `test-hooks`),
//! real redis-server and PostgreSQL, real upstreams. One test binary, so the
//! world (tokio, reqwest, hyper, the worker crate) is linked once, not once per
//! file.
//!
//! # Layout
//! - [`affinity`]: session affinity without Redis; forwards between workers.
//! - [`affinity_redis`]: affinity with `REDIS_URL`: ownership keys, HTTP and
//!   pub/sub forwards, dead-owner reclaim, Redis outages, two hosts.
//! - [`clients`]: the official MCP SDK clients (Python `mcp` 2.x, TypeScript
//!   `@modelcontextprotocol/sdk`) in every transport, notifications included
//!   (needs `tests/python/.venv` and `tests/node/node_modules`: scripts/test.sh).
//! - [`external`]: the official MCP conformance suite, stable and alpha lines
//!   (needs Node: `cd tests/node && npm ci`; the suite installs itself).
//! - [`faults`]: whatever dies, a call runs at most once.
//! - [`fleet`]: the supervisor: workers on one socket, signals, respawns, exits.
//! - [`legacy_down`]: downstream clients on the legacy HTTP+SSE transport
//!   (`/sse`, `/message`), across workers and with Redis.
//! - [`legacy_sse`]: upstreams on the legacy HTTP+SSE transport.
//! - [`mcp`]: MCP Streamable HTTP and `/rpc`, federated to upstreams.
//! - [`modern`]: MCP 2026-07-28 downstream beside the 2025 era: per-request
//!   checks, result shapes, `subscriptions/listen`.
//! - [`modern_upstream`]: 2026-07-28 (session-less) upstreams: era
//!   negotiation, discovery, calls, `Mcp-Param-*` headers, `subscriptions/listen`.
//! - [`mrtr`]: input across eras: `input_required` for 2026 clients of 2025
//!   upstreams, input requests on the stream for 2025 clients of modern tools.
//! - [`rest`]: the REST API on SQLite and PostgreSQL, and its OpenAPI document.
//! - [`resume`]: resuming SSE streams with `Last-Event-ID`.
//! - [`resume_redis`]: resuming after the owner's death, events kept in Redis.
//! - [`security`]: the token × request table (and `docs/security.md` from it).
//! - [`standalone`]: what upstreams send outside any request reaches the client.
//! - [`token_cli`]: `fleetgate token` mints tokens the gateway accepts.
//!
//! # Running
//! ```sh
//! cargo build -p fleetgate --features test-hooks
//! FLEETGATE_SKIP_BUILD=1 cargo test -p fleetgate-tests --test integration            # all
//! FLEETGATE_SKIP_BUILD=1 cargo test -p fleetgate-tests --test integration fleet::    # one module
//! ```
//!
//! Tests of every module share this process and run side by side, so none may
//! touch process-wide state (environment, current directory, signal
//! dispositions, limits): each starts its own processes, on port 0 and in its
//! own temporary directory, and signals only the PIDs it started.

mod affinity;
mod affinity_redis;
mod clients;
mod external;
mod faults;
mod fleet;
mod legacy_down;
mod legacy_sse;
mod mcp;
mod modern;
mod modern_upstream;
mod mrtr;
mod rest;
mod resume;
mod resume_redis;
mod security;
mod standalone;
mod token_cli;
