//! Counters, exposed per worker at `GET /metrics` in Prometheus' text format
//! (each line labelled with the worker id; scrape every worker, or sum).

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};

macro_rules! counters {
    ($($name:ident: $help:literal),* $(,)?) => {
        /// Every counter a worker keeps.
        #[derive(Debug, Default)]
        pub struct Metrics {
            $(pub $name: AtomicU64,)*
        }

        impl Metrics {
            /// Prometheus text exposition.
            pub fn render(&self, worker: &str) -> String {
                let mut out = String::new();
                $(
                    let name = concat!("fleetgate_", stringify!($name), "_total");
                    let _ = writeln!(out, "# HELP {name} {}", $help);
                    let _ = writeln!(out, "# TYPE {name} counter");
                    let _ = writeln!(out, "{name}{{worker=\"{worker}\"}} {}", self.$name.load(Ordering::Relaxed));
                )*
                out
            }
        }
    };
}

counters! {
    http_requests: "HTTP requests served by this worker",
    sessions_created: "MCP sessions initialized here",
    sessions_adopted: "sessions taken over from an owner that was gone (reclaims)",
    session_local_hits: "session requests served by this worker as their owner",
    forwards_unix: "requests forwarded to their session's owner over the worker Unix sockets",
    forward_failures: "forwards whose owner could not be reached",
    forward_timeouts: "forwards that got no answer within MCPGATEWAY_POOL_RPC_FORWARD_TIMEOUT",
    forwarded_served: "requests served here on behalf of another worker",
    forwards_http: "requests forwarded to their session's owner over its internal HTTP listener (Redis mode)",
    forwards_pubsub: "requests forwarded to their session's owner through Redis pub/sub",
    reclaims: "sessions taken over in Redis from a dead owner (atomic Lua reclaim)",
    redis_errors: "Redis commands that failed or timed out",
    event_copies_dropped: "SSE event copies not written to Redis (queue full, or the write failed twice); the owner's memory still has them",
}

impl Metrics {
    pub fn inc(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }

    pub fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }
}
