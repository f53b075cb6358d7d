//! Test support: start the real `fleetgate` binary (and later redis-server,
//! Postgres and upstreams), wait on facts with deadlines, never on sleeps.
//! The tests themselves are one test binary, `tests/integration/` (its
//! `main.rs` maps the modules and says how to run one).
//!
//! # Layout
//! - [`fleet`]: the supervisor as a subprocess in its own process group, its
//!   address read from its machine-readable line, TERM then KILL on drop.
//! - [`proc`]: what `/proc` says about processes (children, liveness, start order).
//! - [`gateway`]: REST calls that set the gateway up (register, servers).
//! - [`mcp`]: a small MCP Streamable HTTP client (JSON and SSE answers).
//! - [`security`]: set-up calls carrying a token; connections pinned to a worker.
//! - [`redis`]: a throwaway redis-server per test (killed by PID on drop).
//! - [`proxy`]: a reverse proxy opening a new connection per request (spreads a
//!   client's requests over a fleet's workers).
//! - [`eventually`]: poll a condition until a deadline.

pub mod fleet;
pub mod gateway;
pub mod mcp;
pub mod proc;
pub mod proxy;
pub mod redis;
pub mod security;

use std::future::Future;
use std::time::{Duration, Instant};

/// Polls `f` every 20 ms until it returns `Some`, or panics with `what` after `within`.
pub async fn eventually<T, F, Fut>(within: Duration, what: &str, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = Instant::now() + within;
    loop {
        if let Some(t) = f().await {
            return t;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {within:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Polls `probe` (which answers with the worker that answered, from its
/// `x-fleetgate-worker` header, and whether the answer was as wanted) until
/// `n` distinct workers have each last answered as wanted, or panics with
/// `what` after `within`. Fresh connections may land on one worker many
/// times running: counting answers is not enough.
pub async fn on_every_worker<F, Fut>(n: usize, within: Duration, what: &str, mut probe: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<(String, bool)>>,
{
    let deadline = Instant::now() + within;
    let mut seen = std::collections::BTreeMap::new();
    loop {
        if let Some((worker, ok)) = probe().await {
            seen.insert(worker, ok);
            if seen.len() == n && seen.values().all(|v| *v) {
                return;
            }
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {within:?} waiting for {what}: {seen:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The worker that answered (`x-fleetgate-worker`).
pub fn worker_of(headers: &reqwest::header::HeaderMap) -> Option<String> {
    Some(headers.get("x-fleetgate-worker")?.to_str().ok()?.to_owned())
}

/// A client that opens a fresh connection for every request.
pub fn fresh_client() -> reqwest::Client {
    reqwest::Client::builder()
        .pool_max_idle_per_host(0)
        .timeout(Duration::from_secs(30))
        .build()
        .expect("reqwest client")
}
